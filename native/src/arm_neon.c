/* arm_neon.c: Advanced SIMD (NEON) kernels for aarch64, where NEON is part of the base architecture:
 * fp32 GEMM 8x12, int8 GEMM by widening multiplies (for CPUs without sdot, e.g. the Pi 4's
 * Cortex-A72), requantisation, depthwise rows and activations. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "pn_internal.h"

#if PN_MR != 8 || PN_NR != 12
#error "the NEON microkernel is written for an 8x12 tile"
#endif

static inline float32x4_t pn_epi_neon(float32x4_t v, const pn_epi *e, float32x4_t lo,
                                      float32x4_t hi, float32x4_t slope) {
    if (e->clamp) {
        /* vmaxq/vminq (not the maxnm forms) return NaN when either operand is NaN. */
        v = vmaxq_f32(lo, v);
        v = vminq_f32(hi, v);
    } else if (e->kind == PN_ACT_LEAKY_RELU) {
        const uint32x4_t neg = vcltq_f32(v, vdupq_n_f32(0.0f));
        v = vbslq_f32(neg, vmulq_f32(v, slope), v);
    }
    return v;
}

void pn_sgemm_ukr_neon(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                       int64_t ldc, const pn_ukr_args *args) {
    float32x4_t acc[8][3];
    if (args->first) {
        float32x4_t b0 = vdupq_n_f32(0.0f), b1 = b0, b2 = b0;
        if (args->bias_col) {
            b0 = vld1q_f32(args->bias_col);
            b1 = vld1q_f32(args->bias_col + 4);
            b2 = vld1q_f32(args->bias_col + 8);
        }
        for (int i = 0; i < 8; i++) {
            const float32x4_t r = vdupq_n_f32(args->bias_row ? args->bias_row[i] : 0.0f);
            acc[i][0] = vaddq_f32(b0, r);
            acc[i][1] = vaddq_f32(b1, r);
            acc[i][2] = vaddq_f32(b2, r);
        }
    } else {
        for (int i = 0; i < 8; i++) {
            acc[i][0] = vld1q_f32(c + i * ldc);
            acc[i][1] = vld1q_f32(c + i * ldc + 4);
            acc[i][2] = vld1q_f32(c + i * ldc + 8);
        }
    }
    const int64_t *off = args->boff;
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = off ? b + off[k] : b + k * ldb;
        const float32x4_t b0 = vld1q_f32(bk), b1 = vld1q_f32(bk + 4), b2 = vld1q_f32(bk + 8);
        const float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
#define PN_ROW(I, AV, L)                                         \
    acc[I][0] = vfmaq_laneq_f32(acc[I][0], b0, AV, L);           \
    acc[I][1] = vfmaq_laneq_f32(acc[I][1], b1, AV, L);           \
    acc[I][2] = vfmaq_laneq_f32(acc[I][2], b2, AV, L);
        PN_ROW(0, a0, 0)
        PN_ROW(1, a0, 1)
        PN_ROW(2, a0, 2)
        PN_ROW(3, a0, 3)
        PN_ROW(4, a1, 0)
        PN_ROW(5, a1, 1)
        PN_ROW(6, a1, 2)
        PN_ROW(7, a1, 3)
#undef PN_ROW
        a += 8;
    }
    if (args->last) {
        const pn_epi *e = args->epi;
        if (e->clamp || e->kind == PN_ACT_LEAKY_RELU) {
            const float32x4_t lo = vdupq_n_f32(e->lo), hi = vdupq_n_f32(e->hi);
            const float32x4_t s = vdupq_n_f32(e->alpha);
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 3; j++) acc[i][j] = pn_epi_neon(acc[i][j], e, lo, hi, s);
        }
    }
    for (int i = 0; i < 8; i++) {
        vst1q_f32(c + i * ldc, acc[i][0]);
        vst1q_f32(c + i * ldc + 4, acc[i][1]);
        vst1q_f32(c + i * ldc + 8, acc[i][2]);
    }
}

/* ---- int8 without sdot: products by vmull_s8 (int16, exact: |x w| <= 128 * 128), summed in
   pairs into int32 by vpadalq_s16. Four rows at a time keep 24 accumulators in registers. ---- */

#if PN_QMR != 8 || PN_QNR != 12 || PN_QKU != 4
#error "the NEON int8 microkernels are written for an 8x12 tile of int8 quads"
#endif

static void pn_qgemm_half_neon(int64_t kq, const int8_t *a, const int8_t *b, int32_t *acc,
                               int64_t ldacc, int32_t first) {
    /* rows 0..3 of the a pointer's panel (quads at a + i*4 within each 32-byte depth step) */
    int32x4_t s[4][6];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++) s[i][j] = vdupq_n_s32(0);
    for (int64_t p = 0; p < kq; p++) {
        const int8x16_t b0 = vld1q_s8(b), b1 = vld1q_s8(b + 16), b2 = vld1q_s8(b + 32);
        const int32x4_t av = vreinterpretq_s32_s8(vld1q_s8(a));
        /* Row I's quad, twice, lines up with the quads of two columns in half a B vector. */
#define PN_QROW(I)                                                                         \
    do {                                                                                   \
        const int8x8_t q = vreinterpret_s8_s32(vdup_laneq_s32(av, I));                     \
        s[I][0] = vpadalq_s16(s[I][0], vmull_s8(vget_low_s8(b0), q));                      \
        s[I][1] = vpadalq_s16(s[I][1], vmull_s8(vget_high_s8(b0), q));                     \
        s[I][2] = vpadalq_s16(s[I][2], vmull_s8(vget_low_s8(b1), q));                      \
        s[I][3] = vpadalq_s16(s[I][3], vmull_s8(vget_high_s8(b1), q));                     \
        s[I][4] = vpadalq_s16(s[I][4], vmull_s8(vget_low_s8(b2), q));                      \
        s[I][5] = vpadalq_s16(s[I][5], vmull_s8(vget_high_s8(b2), q));                     \
    } while (0)
        PN_QROW(0);
        PN_QROW(1);
        PN_QROW(2);
        PN_QROW(3);
#undef PN_QROW
        a += PN_QMR * PN_QKU;
        b += PN_QNR * PN_QKU;
    }
    for (int i = 0; i < 4; i++) {
        /* s[i][2g] = [c0 k01, c0 k23, c1 k01, c1 k23], s[i][2g+1] likewise for c2, c3 */
        for (int g = 0; g < 3; g++) {
            const int32x4_t v = vpaddq_s32(s[i][2 * g], s[i][2 * g + 1]);
            int32_t *dst = acc + i * ldacc + 4 * g;
            vst1q_s32(dst, first ? v : vaddq_s32(vld1q_s32(dst), v));
        }
    }
}

void pn_qgemm_ukr_neon(int64_t kq, const pn_qv *a, const pn_qv *b, int32_t *acc, int64_t ldacc,
                       int32_t first) {
    pn_qgemm_half_neon(kq, a, b, acc, ldacc, first);
    pn_qgemm_half_neon(kq, a + 16, b, acc + 4 * ldacc, ldacc, first);
}

void pn_requant_neon(const int32_t *acc, int64_t n, const pn_requant_args *r, int8_t *y) {
    const float32x4_t lim = vdupq_n_f32(1073741824.0f), nlim = vdupq_n_f32(-1073741824.0f);
    const int32x4_t zp = vdupq_n_s32(r->zp), lo = vdupq_n_s32(r->lo), hi = vdupq_n_s32(r->hi);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        int32x4_t q[2];
        for (int h = 0; h < 2; h++) {
            const int64_t o = j + 4 * h;
            const int32x4_t ad = r->add_stride ? vld1q_s32(r->add + o) : vdupq_n_s32(r->add[0]);
            const float32x4_t m = r->mul_stride ? vld1q_f32(r->mul + o) : vdupq_n_f32(r->mul[0]);
            float32x4_t v = vmulq_f32(vcvtq_f32_s32(vaddq_s32(vld1q_s32(acc + o), ad)), m);
            v = vminq_f32(vmaxq_f32(v, nlim), lim);
            /* vcvtaq: round to nearest, ties away from zero, exactly the spec's rounding */
            q[h] = vminq_s32(vmaxq_s32(vaddq_s32(vcvtaq_s32_f32(v), zp), lo), hi);
        }
        const int16x8_t w = vcombine_s16(vqmovn_s32(q[0]), vqmovn_s32(q[1]));
        vst1_s8(y + j, vqmovn_s16(w));
    }
    if (j < n) {
        /* the last few through the same vector code, padded */
        int32_t a8[8] = {0}, d8[8] = {0};
        float m8[8] = {0};
        int8_t y8[8];
        const int64_t rest = n - j;
        for (int64_t i = 0; i < rest; i++) {
            a8[i] = acc[j + i];
            d8[i] = r->add[r->add_stride ? j + i : 0];
            m8[i] = r->mul[r->mul_stride ? j + i : 0];
        }
        const pn_requant_args tail = {d8, 1, m8, 1, r->zp, r->lo, r->hi};
        pn_requant_neon(a8, 8, &tail, y8);
        for (int64_t i = 0; i < rest; i++) y[j + i] = y8[i];
    }
}

/* ---- depthwise rows ---- */

void pn_dw_row_neon(int32_t taps, const float *const *src, const float *w, float bias,
                    const pn_epi *e, float *out, int64_t n) {
    const float32x4_t vb = vdupq_n_f32(bias);
    const float32x4_t lo = vdupq_n_f32(e->lo), hi = vdupq_n_f32(e->hi);
    const int clamp = e->clamp;
    int64_t ox = 0;
    for (; ox + 16 <= n; ox += 16) {
        float32x4_t a0 = vb, a1 = vb, a2 = vb, a3 = vb;
        for (int32_t t = 0; t < taps; t++) {
            const float32x4_t wv = vdupq_n_f32(w[t]);
            const float *p = src[t] + ox;
            a0 = vfmaq_f32(a0, wv, vld1q_f32(p));
            a1 = vfmaq_f32(a1, wv, vld1q_f32(p + 4));
            a2 = vfmaq_f32(a2, wv, vld1q_f32(p + 8));
            a3 = vfmaq_f32(a3, wv, vld1q_f32(p + 12));
        }
        if (clamp) {
            a0 = vminq_f32(hi, vmaxq_f32(lo, a0));
            a1 = vminq_f32(hi, vmaxq_f32(lo, a1));
            a2 = vminq_f32(hi, vmaxq_f32(lo, a2));
            a3 = vminq_f32(hi, vmaxq_f32(lo, a3));
        }
        vst1q_f32(out + ox, a0);
        vst1q_f32(out + ox + 4, a1);
        vst1q_f32(out + ox + 8, a2);
        vst1q_f32(out + ox + 12, a3);
    }
    for (; ox < n; ox += 8) {
        float32x4_t a0 = vb, a1 = vb;
        for (int32_t t = 0; t < taps; t++) {
            const float32x4_t wv = vdupq_n_f32(w[t]);
            a0 = vfmaq_f32(a0, wv, vld1q_f32(src[t] + ox));
            a1 = vfmaq_f32(a1, wv, vld1q_f32(src[t] + ox + 4));
        }
        if (clamp) {
            a0 = vminq_f32(hi, vmaxq_f32(lo, a0));
            a1 = vminq_f32(hi, vmaxq_f32(lo, a1));
        }
        vst1q_f32(out + ox, a0);
        vst1q_f32(out + ox + 4, a1);
    }
}

void pn_deint2_neon(const float *src, float *even, float *odd, int64_t pairs) {
    int64_t j = 0;
    for (; j + 4 <= pairs; j += 4) {
        const float32x4x2_t v = vld2q_f32(src + 2 * j); /* deinterleaves as it loads */
        vst1q_f32(even + j, v.val[0]);
        vst1q_f32(odd + j, v.val[1]);
    }
    if (j < pairs) pn_deint2_generic(src + 2 * j, even + j, odd + j, pairs - j);
}

/* ---- activations ---- */

void pn_activation_neon(const pn_act *act, const float *x, float *y, int64_t n) {
    const int32_t kind = act ? act->kind : PN_ACT_NONE;
    int64_t i = 0;
    switch (kind) {
        case PN_ACT_RELU:
        case PN_ACT_CLIP: {
            const float32x4_t lo = vdupq_n_f32(kind == PN_ACT_RELU ? 0.0f : act->alpha);
            const float32x4_t hi = vdupq_n_f32(kind == PN_ACT_RELU ? INFINITY : act->beta);
            for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vminq_f32(hi, vmaxq_f32(lo, vld1q_f32(x + i))));
            break;
        }
        case PN_ACT_LEAKY_RELU: {
            const float32x4_t s = vdupq_n_f32(act->alpha), z = vdupq_n_f32(0.0f);
            for (; i + 4 <= n; i += 4) {
                const float32x4_t v = vld1q_f32(x + i);
                vst1q_f32(y + i, vbslq_f32(vcltq_f32(v, z), vmulq_f32(v, s), v));
            }
            break;
        }
        case PN_ACT_HARD_SWISH: {
            const float32x4_t k = vdupq_n_f32(1.0f / 6.0f), h = vdupq_n_f32(0.5f);
            const float32x4_t z = vdupq_n_f32(0.0f), one = vdupq_n_f32(1.0f);
            for (; i + 4 <= n; i += 4) {
                const float32x4_t v = vld1q_f32(x + i);
                /* mul then add (not fma): the same rounding as the generic code */
                float32x4_t g = vaddq_f32(vmulq_f32(v, k), h);
                g = vminq_f32(one, vmaxq_f32(z, g));
                vst1q_f32(y + i, vmulq_f32(v, g));
            }
            break;
        }
        default:
            break; /* sigmoid, tanh, none: the generic code (libm) */
    }
    if (i < n) pn_activation_generic(act, x + i, y + i, n - i);
}

#endif /* __aarch64__ */
