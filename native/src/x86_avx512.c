/* x86_avx512.c: the AVX-512F fp32 GEMM microkernel, a 6x32 tile over two 16-column panels. Compiled
 * for avx512f in this translation unit only; chosen at run time when the CPU (and OS) have it.
 * It reads the same packed layout as the AVX2 and generic kernels (6-row and 16-column panels). */
#if defined(__x86_64__)
#pragma GCC target("avx512f,avx2,fma")
#include <immintrin.h>

#include "pn_internal.h"

#if PN_MR != 6 || PN_NR != 16
#error "the AVX-512 microkernel is written for 6-row and 16-column panels"
#endif

static inline __m512 pn_epi512(__m512 v, const pn_epi *e, __m512 lo, __m512 hi, __m512 slope) {
    if (e->clamp) {
        /* max(lo, v)/min(hi, v) return v (the second operand) when v is NaN: NaN propagates. */
        v = _mm512_max_ps(lo, v);
        v = _mm512_min_ps(hi, v);
    } else if (e->kind == PN_ACT_LEAKY_RELU) {
        const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
        v = _mm512_mask_mul_ps(v, neg, v, slope);
    }
    return v;
}

/* The body for MR_ rows (1..12) and TWO_ panels (0: one, 1: two), both compile-time constants at
   every call, so that absent rows and panels vanish. Columns beyond args->cols are masked off at
   every load and store of C (and of the column bias): an edge tile (16 output channels are
   6 + 6 + 4 rows; a 7x7 map is 49 = 32 + 17 columns) is computed in place, with no tile copy and
   no FMAs for absent rows. Absent columns are computed on B's zero padding and dropped. */
static inline __attribute__((always_inline)) void pn_avx512_tile(
    const int MR_, const int TWO_, int64_t kc, const float *a, const float *b, int64_t ldb,
    float *c, int64_t ldc, const pn_ukr_args *args) {
    const int64_t bs = args->bstride; /* second panel */
    const int cols = args->cols;
    const __mmask16 m0 = cols >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << cols) - 1u);
    const __mmask16 m1 =
        !TWO_ || cols <= 16 ? 0 : cols >= 32 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - 16)) - 1u);
    __m512 acc[12][2];
    const float *a2 = args->a2; /* rows 6.. (MR_ > 6) */
    if (args->first) {
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        if (args->bias_col) {
            b0 = _mm512_maskz_loadu_ps(m0, args->bias_col);
            if (TWO_) b1 = _mm512_maskz_loadu_ps(m1, args->bias_col + 16);
        }
        for (int i = 0; i < MR_; i++) {
            const __m512 r = _mm512_set1_ps(args->bias_row ? args->bias_row[i] : 0.0f);
            acc[i][0] = _mm512_add_ps(b0, r);
            if (TWO_) acc[i][1] = _mm512_add_ps(b1, r);
        }
    } else {
        for (int i = 0; i < MR_; i++) {
            acc[i][0] = _mm512_maskz_loadu_ps(m0, c + i * ldc);
            if (TWO_) acc[i][1] = _mm512_maskz_loadu_ps(m1, c + i * ldc + 16);
        }
    }
#define PN_STEP(BK)                                                              \
    do {                                                                         \
        const float *bk_ = (BK);                                                 \
        const __m512 b0 = _mm512_loadu_ps(bk_);                                  \
        const __m512 b1 = TWO_ ? _mm512_loadu_ps(bk_ + bs) : b0;                 \
        for (int i = 0; i < MR_; i++) {                                          \
            const __m512 t = _mm512_set1_ps(i < PN_MR ? a[i] : a2[i - PN_MR]);    \
            acc[i][0] = _mm512_fmadd_ps(t, b0, acc[i][0]);                       \
            if (TWO_) acc[i][1] = _mm512_fmadd_ps(t, b1, acc[i][1]);             \
        }                                                                        \
        a += PN_MR;                                                              \
        if (MR_ > PN_MR) a2 += PN_MR;                                            \
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
            const __m512 lo = _mm512_set1_ps(e->lo), hi = _mm512_set1_ps(e->hi);
            const __m512 s = _mm512_set1_ps(e->alpha);
            for (int i = 0; i < MR_; i++) {
                acc[i][0] = pn_epi512(acc[i][0], e, lo, hi, s);
                if (TWO_) acc[i][1] = pn_epi512(acc[i][1], e, lo, hi, s);
            }
        }
    }
    for (int i = 0; i < MR_; i++) {
        _mm512_mask_storeu_ps(c + i * ldc, m0, acc[i][0]);
        if (TWO_) _mm512_mask_storeu_ps(c + i * ldc + 16, m1, acc[i][1]);
    }
}

/* args->rows rows (up to 12: rows 6.. from the panel at args->a2), args->cols <= 32 columns
   (more than 16: the second panel of B is read). */
void pn_sgemm_ukr_avx512(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                         int64_t ldc, const pn_ukr_args *args) {
    const int two = args->cols > 16;
#define PN_CASE(R)                                                         \
    case R:                                                                \
        if (two)                                                           \
            pn_avx512_tile(R, 1, kc, a, b, ldb, c, ldc, args);             \
        else                                                               \
            pn_avx512_tile(R, 0, kc, a, b, ldb, c, ldc, args);             \
        break;
    switch (args->rows) {
        PN_CASE(1)
        PN_CASE(2)
        PN_CASE(3)
        PN_CASE(4)
        PN_CASE(5)
        PN_CASE(7)
        PN_CASE(8)
        PN_CASE(9)
        PN_CASE(10)
        PN_CASE(11)
        PN_CASE(12)
        default:
            PN_CASE(6)
    }
#undef PN_CASE
}

#endif /* __x86_64__ */
