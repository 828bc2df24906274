/* x86_avx2.c: AVX2+FMA kernels (fp32 GEMM 6x16, depthwise rows, activations). Compiled for
 * avx2,fma in this translation unit only and reached through pn_kernels_active(), which picks
 * them only when the CPU has both; the rest of the library stays baseline x86-64. */
#if defined(__x86_64__)
#pragma GCC target("avx2,fma")
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "pn_internal.h"

#if PN_MR != 6 || PN_NR != 16
#error "the AVX2 microkernel is written for a 6x16 tile"
#endif

static inline __m256 pn_epi_apply(__m256 v, const pn_epi *e, __m256 lo, __m256 hi, __m256 slope) {
    if (e->clamp) {
        /* max(lo, v)/min(hi, v) return v (the second operand) when v is NaN: NaN propagates. */
        v = _mm256_max_ps(lo, v);
        v = _mm256_min_ps(hi, v);
    } else if (e->kind == PN_ACT_LEAKY_RELU) {
        __m256 neg = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ);
        v = _mm256_blendv_ps(v, _mm256_mul_ps(v, slope), neg);
    }
    return v;
}

/* The body for MR_ rows (1..6), specialised at compile time (see x86_avx512.c). */
static inline __attribute__((always_inline)) void pn_avx2_rows(const int MR_, int64_t kc,
                                                               const float *a, const float *b,
                                                               int64_t ldb, float *c, int64_t ldc,
                                                               const pn_ukr_args *args) {
    __m256 acc[6][2];
    if (args->first) {
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
        if (args->bias_col) {
            b0 = _mm256_loadu_ps(args->bias_col);
            b1 = _mm256_loadu_ps(args->bias_col + 8);
        }
        for (int i = 0; i < MR_; i++) {
            const __m256 r = _mm256_set1_ps(args->bias_row ? args->bias_row[i] : 0.0f);
            acc[i][0] = _mm256_add_ps(b0, r);
            acc[i][1] = _mm256_add_ps(b1, r);
        }
    } else {
        for (int i = 0; i < MR_; i++) {
            acc[i][0] = _mm256_loadu_ps(c + i * ldc);
            acc[i][1] = _mm256_loadu_ps(c + i * ldc + 8);
        }
    }
#define PN_STEP(BK)                                                             \
    do {                                                                        \
        const float *bk_ = (BK);                                                \
        const __m256 b0 = _mm256_loadu_ps(bk_), b1 = _mm256_loadu_ps(bk_ + 8);  \
        for (int i = 0; i < MR_; i++) {                                         \
            const __m256 t = _mm256_broadcast_ss(a + i);                        \
            acc[i][0] = _mm256_fmadd_ps(t, b0, acc[i][0]);                      \
            acc[i][1] = _mm256_fmadd_ps(t, b1, acc[i][1]);                      \
        }                                                                       \
        a += PN_MR;                                                             \
    } while (0)
    if (args->boff) {
        const int64_t *off = args->boff;
        for (int64_t k = 0; k < kc; k++) PN_STEP(b + off[k]);
    } else {
        int64_t k = 0;
        for (; k + 4 <= kc; k += 4) {
            PN_STEP(b);
            PN_STEP(b + ldb);
            PN_STEP(b + 2 * ldb);
            PN_STEP(b + 3 * ldb);
            b += 4 * ldb;
        }
        for (; k < kc; k++, b += ldb) PN_STEP(b);
    }
#undef PN_STEP
    if (args->last) {
        const pn_epi *e = args->epi;
        if (e->clamp || e->kind == PN_ACT_LEAKY_RELU) {
            const __m256 lo = _mm256_set1_ps(e->lo), hi = _mm256_set1_ps(e->hi);
            const __m256 s = _mm256_set1_ps(e->alpha);
            for (int i = 0; i < MR_; i++) {
                acc[i][0] = pn_epi_apply(acc[i][0], e, lo, hi, s);
                acc[i][1] = pn_epi_apply(acc[i][1], e, lo, hi, s);
            }
        }
    }
    for (int i = 0; i < MR_; i++) {
        _mm256_storeu_ps(c + i * ldc, acc[i][0]);
        _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
    }
}

void pn_sgemm_ukr_avx2(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                       int64_t ldc, const pn_ukr_args *args) {
    switch (args->rows) {
        case 1: pn_avx2_rows(1, kc, a, b, ldb, c, ldc, args); break;
        case 2: pn_avx2_rows(2, kc, a, b, ldb, c, ldc, args); break;
        case 3: pn_avx2_rows(3, kc, a, b, ldb, c, ldc, args); break;
        case 4: pn_avx2_rows(4, kc, a, b, ldb, c, ldc, args); break;
        case 5: pn_avx2_rows(5, kc, a, b, ldb, c, ldc, args); break;
        default: pn_avx2_rows(6, kc, a, b, ldb, c, ldc, args); break;
    }
}

/* ---- int8: 6x16 tile over int16 pairs with pmaddwd ---- */

#if PN_QMR != 6 || PN_QNR != 16 || PN_QKU != 2
#error "the AVX2 int8 microkernel is written for a 6x16 tile of int16 pairs"
#endif

static inline __m256i pn_bcast_pair(const int16_t *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

void pn_qgemm_ukr_avx2(int64_t kq, const pn_qv *a, const pn_qv *b, int32_t *acc, int64_t ldacc,
                       int32_t first) {
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t p = 0; p < kq; p++) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(const void *)b);
        const __m256i b1 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 16));
        __m256i t;
        t = pn_bcast_pair(a + 0);
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(t, b0));
        c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(t, b1));
        t = pn_bcast_pair(a + 2);
        c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(t, b0));
        c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(t, b1));
        t = pn_bcast_pair(a + 4);
        c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(t, b0));
        c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(t, b1));
        t = pn_bcast_pair(a + 6);
        c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(t, b0));
        c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(t, b1));
        t = pn_bcast_pair(a + 8);
        c40 = _mm256_add_epi32(c40, _mm256_madd_epi16(t, b0));
        c41 = _mm256_add_epi32(c41, _mm256_madd_epi16(t, b1));
        t = pn_bcast_pair(a + 10);
        c50 = _mm256_add_epi32(c50, _mm256_madd_epi16(t, b0));
        c51 = _mm256_add_epi32(c51, _mm256_madd_epi16(t, b1));
        a += 12;
        b += 32;
    }
#define PN_QSTORE(ptr, v)                                                                     \
    do {                                                                                      \
        __m256i *q_ = (__m256i *)(void *)(ptr);                                               \
        _mm256_storeu_si256(q_, first ? (v) : _mm256_add_epi32(_mm256_loadu_si256(q_), (v))); \
    } while (0)
    PN_QSTORE(acc + 0 * ldacc, c00); PN_QSTORE(acc + 0 * ldacc + 8, c01);
    PN_QSTORE(acc + 1 * ldacc, c10); PN_QSTORE(acc + 1 * ldacc + 8, c11);
    PN_QSTORE(acc + 2 * ldacc, c20); PN_QSTORE(acc + 2 * ldacc + 8, c21);
    PN_QSTORE(acc + 3 * ldacc, c30); PN_QSTORE(acc + 3 * ldacc + 8, c31);
    PN_QSTORE(acc + 4 * ldacc, c40); PN_QSTORE(acc + 4 * ldacc + 8, c41);
    PN_QSTORE(acc + 5 * ldacc, c50); PN_QSTORE(acc + 5 * ldacc + 8, c51);
#undef PN_QSTORE
}

/* Eight sums: y = clamp(round_half_away((float)(acc + add) * mul) + zp), exactly as the generic
   code (the same float32 product; the rounding by truncation and a step away from zero when the
   dropped part is >= 0.5, which is exact). */
static inline __m128i pn_requant8(__m256i s, __m256 m, __m256i zp, __m256i lo, __m256i hi) {
    const __m256 lim = _mm256_set1_ps(1073741824.0f), nlim = _mm256_set1_ps(-1073741824.0f);
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(s), m);
    v = _mm256_min_ps(_mm256_max_ps(v, nlim), lim);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 step = _mm256_and_ps(_mm256_cmp_ps(frac, half, _CMP_GE_OQ),
                                      _mm256_or_ps(one, _mm256_and_ps(v, sign)));
    __m256i q = _mm256_cvtps_epi32(_mm256_add_ps(t, step));
    q = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(q, zp), lo), hi);
    return _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
}

void pn_requant_avx2(const int32_t *acc, int64_t n, const pn_requant_args *r, int8_t *y) {
    /* the arguments in locals: stores through y (int8_t, which may alias anything) would
       otherwise make the compiler reload them at every step */
    const int32_t *add = r->add, *const acc0 = acc;
    const float *mul = r->mul;
    const int add_vec = r->add_stride != 0, mul_vec = r->mul_stride != 0;
    const __m256i zp = _mm256_set1_epi32(r->zp), lo = _mm256_set1_epi32(r->lo),
                  hi = _mm256_set1_epi32(r->hi);
    const __m256i add1 = _mm256_set1_epi32(add[0]);
    const __m256 mul1 = _mm256_set1_ps(mul[0]);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)(const void *)(acc0 + j));
        const __m256i a1 = _mm256_loadu_si256((const __m256i *)(const void *)(acc0 + j + 8));
        const __m256i d0 = add_vec ? _mm256_loadu_si256((const __m256i *)(const void *)(add + j)) : add1;
        const __m256i d1 = add_vec ? _mm256_loadu_si256((const __m256i *)(const void *)(add + j + 8)) : add1;
        const __m256 m0 = mul_vec ? _mm256_loadu_ps(mul + j) : mul1;
        const __m256 m1 = mul_vec ? _mm256_loadu_ps(mul + j + 8) : mul1;
        const __m128i w0 = pn_requant8(_mm256_add_epi32(a0, d0), m0, zp, lo, hi);
        const __m128i w1 = pn_requant8(_mm256_add_epi32(a1, d1), m1, zp, lo, hi);
        _mm_storeu_si128((__m128i *)(void *)(y + j), _mm_packs_epi16(w0, w1));
    }
    for (; j + 8 <= n; j += 8) {
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)(const void *)(acc0 + j));
        const __m256i d0 = add_vec ? _mm256_loadu_si256((const __m256i *)(const void *)(add + j)) : add1;
        const __m256 m0 = mul_vec ? _mm256_loadu_ps(mul + j) : mul1;
        const __m128i w0 = pn_requant8(_mm256_add_epi32(a0, d0), m0, zp, lo, hi);
        _mm_storel_epi64((__m128i *)(void *)(y + j), _mm_packs_epi16(w0, w0));
    }
    if (j < n) {
        /* the last few through the same vector code, padded (no roundf call per element) */
        int32_t a8[8] = {0}, d8[8] = {0};
        float m8[8] = {0};
        int8_t y8[16];
        const int64_t rest = n - j;
        for (int64_t i = 0; i < rest; i++) {
            a8[i] = acc0[j + i];
            d8[i] = add[add_vec ? j + i : 0];
            m8[i] = mul[mul_vec ? j + i : 0];
        }
        const __m128i w0 = pn_requant8(
            _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(const void *)a8),
                             _mm256_loadu_si256((const __m256i *)(const void *)d8)),
            _mm256_loadu_ps(m8), zp, lo, hi);
        _mm_storeu_si128((__m128i *)(void *)y8, _mm_packs_epi16(w0, w0));
        for (int64_t i = 0; i < rest; i++) y[j + i] = y8[i];
    }
}

/* ---- depthwise rows ---- */

void pn_dw_row_avx2(int32_t taps, const float *const *src, const float *w, float bias,
                    const pn_epi *e, float *out, int64_t n) {
    const __m256 vb = _mm256_set1_ps(bias);
    const __m256 lo = _mm256_set1_ps(e->lo), hi = _mm256_set1_ps(e->hi);
    const int clamp = e->clamp;
    int64_t ox = 0;
    /* Four independent accumulators hide the FMA latency (a chain of taps per vector). */
    for (; ox + 32 <= n; ox += 32) {
        __m256 a0 = vb, a1 = vb, a2 = vb, a3 = vb;
        for (int32_t t = 0; t < taps; t++) {
            const __m256 wv = _mm256_set1_ps(w[t]);
            const float *p = src[t] + ox;
            a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p), a0);
            a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 8), a1);
            a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 16), a2);
            a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(p + 24), a3);
        }
        if (clamp) {
            a0 = _mm256_min_ps(hi, _mm256_max_ps(lo, a0));
            a1 = _mm256_min_ps(hi, _mm256_max_ps(lo, a1));
            a2 = _mm256_min_ps(hi, _mm256_max_ps(lo, a2));
            a3 = _mm256_min_ps(hi, _mm256_max_ps(lo, a3));
        }
        _mm256_storeu_ps(out + ox, a0);
        _mm256_storeu_ps(out + ox + 8, a1);
        _mm256_storeu_ps(out + ox + 16, a2);
        _mm256_storeu_ps(out + ox + 24, a3);
    }
    for (; ox < n; ox += 8) {
        __m256 a0 = vb;
        for (int32_t t = 0; t < taps; t++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(w[t]), _mm256_loadu_ps(src[t] + ox), a0);
        if (clamp) a0 = _mm256_min_ps(hi, _mm256_max_ps(lo, a0));
        _mm256_storeu_ps(out + ox, a0);
    }
}

void pn_deint2_avx2(const float *src, float *even, float *odd, int64_t pairs) {
    const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    int64_t j = 0;
    for (; j + 8 <= pairs; j += 8) {
        /* [e0 e1 e2 e3 | o0 o1 o2 o3] and [e4 .. e7 | o4 .. o7], then the halves regrouped */
        const __m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(src + 2 * j), idx);
        const __m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(src + 2 * j + 8), idx);
        _mm256_storeu_ps(even + j, _mm256_permute2f128_ps(a, b, 0x20));
        _mm256_storeu_ps(odd + j, _mm256_permute2f128_ps(a, b, 0x31));
    }
    if (j < pairs) pn_deint2_generic(src + 2 * j, even + j, odd + j, pairs - j);
}

/* ---- activations ---- */

void pn_activation_avx2(const pn_act *act, const float *x, float *y, int64_t n) {
    const int32_t kind = act ? act->kind : PN_ACT_NONE;
    int64_t i = 0;
    switch (kind) {
        case PN_ACT_RELU:
        case PN_ACT_CLIP: {
            const __m256 lo = _mm256_set1_ps(kind == PN_ACT_RELU ? 0.0f : act->alpha);
            const __m256 hi = _mm256_set1_ps(kind == PN_ACT_RELU ? INFINITY : act->beta);
            for (; i + 8 <= n; i += 8)
                _mm256_storeu_ps(y + i, _mm256_min_ps(hi, _mm256_max_ps(lo, _mm256_loadu_ps(x + i))));
            break;
        }
        case PN_ACT_LEAKY_RELU: {
            const __m256 s = _mm256_set1_ps(act->alpha), z = _mm256_setzero_ps();
            for (; i + 8 <= n; i += 8) {
                const __m256 v = _mm256_loadu_ps(x + i);
                const __m256 neg = _mm256_cmp_ps(v, z, _CMP_LT_OQ);
                _mm256_storeu_ps(y + i, _mm256_blendv_ps(v, _mm256_mul_ps(v, s), neg));
            }
            break;
        }
        case PN_ACT_HARD_SWISH: {
            const __m256 k = _mm256_set1_ps(1.0f / 6.0f), h = _mm256_set1_ps(0.5f);
            const __m256 z = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
            for (; i + 8 <= n; i += 8) {
                const __m256 v = _mm256_loadu_ps(x + i);
                /* mul then add (not fma): the same rounding as the generic code */
                __m256 g = _mm256_add_ps(_mm256_mul_ps(v, k), h);
                g = _mm256_min_ps(one, _mm256_max_ps(z, g));
                _mm256_storeu_ps(y + i, _mm256_mul_ps(v, g));
            }
            break;
        }
        default:
            break; /* sigmoid, tanh, none: the generic code (libm) */
    }
    if (i < n) pn_activation_generic(act, x + i, y + i, n - i);
}

#endif /* __x86_64__ */
