/* depthwise.c: the direct depthwise convolution, fp32 and int8.
 *
 * Per channel plane, in bands of output rows. The input a band needs is copied into the thread's
 * workspace as sh x sw "phase" sub-images, zero-padded: sub-image (rp, cp) holds padded rows
 * rp, rp + sh, ... and of those the columns cp, cp + sw, ... With every sub-image pwp floats wide,
 * output (oy, ox) is sum_t w[t] * S_t[oy*pwp + ox] where S_t starts at the sub-image and offset of
 * tap t; so ONE branch-free kernel call computes the whole band over the flat range
 * [0, (rows-1)*pwp + out_w), whatever the stride, dilation or padding (the pwp - out_w columns
 * between rows are computed and dropped), and each input element is copied once.
 *
 * int8 runs the same float kernels on exact integers: (x - x_zero_point) is in [-255, 255] and
 * |w| <= 127, so every partial sum of up to PN_QDW_MAX_TAPS taps stays below 2^24 and float32
 * represents it exactly (FMA included); the int32 sum then goes through the usual requantisation.
 */
#include <math.h>
#include <string.h>

#include "pn_internal.h"

/* This path copies many short rows (56 floats, 7 floats): as plain loops (vectorised) they cost
   less than calls to memcpy/memset, into which GCC would otherwise turn them. */
#pragma GCC optimize("no-tree-loop-distribute-patterns")

/* 518 * 255 * 127 < 2^24: sums of at most this many int8 products are exact in float32. */
#define PN_QDW_MAX_TAPS 518

void pn_dw_row_generic(int32_t taps, const float *const *src, const float *w, float bias,
                       const pn_epi *e, float *out, int64_t n) {
    for (int64_t ox = 0; ox < n; ox++) {
        float acc = bias;
        for (int32_t t = 0; t < taps; t++) acc += w[t] * src[t][ox];
        if (e->clamp) {
            acc = acc < e->lo ? e->lo : acc;
            acc = acc > e->hi ? e->hi : acc;
        }
        out[ox] = acc;
    }
}

void pn_deint2_generic(const float *src, float *even, float *odd, int64_t pairs) {
    for (int64_t j = 0; j < pairs; j++) {
        even[j] = src[2 * j];
        odd[j] = src[2 * j + 1];
    }
}

typedef struct {
    const pn_conv2d_desc *d;
    const float *w; /* taps per channel, as floats (int8 weights converted at pack time) */
    /* fp32 */
    const float *x, *bias;
    float *y;
    /* int8 (q != NULL) */
    const pn_qconv2d_desc *q;
    const int8_t *xq;
    const int32_t *qbias;
    const float *mul;
    int8_t *yq;
    int64_t planes, per_task;
    int64_t pwp; /* width of a sub-image: out_w + (kw-1)*dw / sw */
} pn_dw_ctx;

static inline void pn_fill0(float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = 0.0f;
}

static inline void pn_copyf(float *restrict dst, const float *restrict src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = src[i];
}

/* Sub-image rows per row phase for a band of `rows` output rows. */
static inline int64_t pn_dw_sub_rows(const pn_conv2d_desc *d, int64_t rows) {
    return rows + ((int64_t)(d->kernel_h - 1) * d->dilation_h) / d->stride_h;
}

/* Floats of workspace a band of `rows` output rows needs: sub-images (+ slack), output, tables
   (tap pointers and offsets, 8 bytes each), and for int8 a row of int32 sums. */
static int64_t pn_dw_band_floats(const pn_conv2d_desc *d, int64_t pwp, int64_t rows) {
    const int64_t sub = pn_dw_sub_rows(d, rows) * pwp;
    const int64_t khw = (int64_t)d->kernel_h * d->kernel_w;
    return (int64_t)d->stride_h * d->stride_w * sub + 16 + rows * pwp + 16 + 4 * khw + 64 +
           pn_round_up(d->out_w, 16);
}

/* Copies the input of output rows [oy0, oy0 + rows) into the phase sub-images at buf: from the
   float plane x, or (xq != NULL) from the int8 plane xq as exact floats xq - zp. */
static void pn_dw_fill_band(const pn_kernels *kern, const pn_conv2d_desc *d, const float *x,
                            const int8_t *xq, int32_t zp, int64_t oy0, int64_t rows, int64_t pwp,
                            float *buf) {
    const int64_t sh = d->stride_h, sw = d->stride_w, pl = d->pad_left, iw = d->in_w;
    const int64_t R = pn_dw_sub_rows(d, rows), sub = R * pwp;
    const int64_t iy_base = oy0 * sh - d->pad_top;
    const float fzp = (float)zp;
    for (int64_t r = 0; r < R; r++)
        for (int64_t rp = 0; rp < sh; rp++) {
            const int64_t iy = iy_base + r * sh + rp;
            float *row0 = buf + (rp * sw) * sub + r * pwp; /* phase (rp, 0); (rp, cp) is + cp*sub */
            if (iy < 0 || iy >= d->in_h) {
                for (int64_t cp = 0; cp < sw; cp++) pn_fill0(row0 + cp * sub, pwp);
                continue;
            }
            if (xq) {
                const int8_t *src = xq + iy * iw;
                for (int64_t cp = 0; cp < sw; cp++) {
                    float *dst = row0 + cp * sub;
                    /* column j: input column j*sw + cp - pl, inside for j in [lo, hi) */
                    const int64_t off = cp - pl;
                    int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                    int64_t hi = iw - off <= 0 ? 0 : (iw - off + sw - 1) / sw;
                    hi = PN_MIN(hi, pwp);
                    lo = PN_MIN(lo, hi);
                    pn_fill0(dst, lo);
                    if (sw == 1) {
                        const int8_t *s1 = src + off;
                        for (int64_t j = lo; j < hi; j++) dst[j] = (float)s1[j] - fzp;
                    } else {
                        for (int64_t j = lo; j < hi; j++) dst[j] = (float)src[j * sw + off] - fzp;
                    }
                    pn_fill0(dst + hi, pwp - hi);
                }
                continue;
            }
            const float *src = x + iy * iw;
            if (sw == 1) {
                const int64_t lo = PN_MIN(pl, pwp), hi = PN_MIN(pl + iw, pwp);
                pn_fill0(row0, lo);
                pn_copyf(row0 + lo, src + (lo - pl), hi - lo);
                pn_fill0(row0 + hi, pwp - hi);
                continue;
            }
            /* column j of phase cp is input column j*sw + cp - pl; the middle, where both phases
               of stride 2 are inside the row, goes through the deinterleaving kernel */
            int64_t j0 = 0, j1 = 0;
            if (sw == 2) {
                j0 = PN_MIN(pwp, (pl + 1) / 2);
                j1 = PN_MAX(j0, PN_MIN(pwp, (iw + pl - 1) / 2));
                if (j1 > j0) kern->deint2(src + 2 * j0 - pl, row0 + j0, row0 + sub + j0, j1 - j0);
            }
            for (int64_t cp = 0; cp < sw; cp++) {
                float *dst = row0 + cp * sub;
                for (int64_t j = 0; j < pwp; j++) {
                    if (j == j0 && j1 > j0) j = j1;
                    if (j >= pwp) break;
                    const int64_t ix = j * sw + cp - pl;
                    dst[j] = ix >= 0 && ix < iw ? src[ix] : 0.0f;
                }
            }
        }
}

/* One plane with bounds checks and no workspace: for rows too wide for even one band row. */
static void pn_dw_plane_direct(const pn_dw_ctx *cx, int64_t plane) {
    const pn_conv2d_desc *d = cx->d;
    const int64_t c = plane % d->out_channels, khw = (int64_t)d->kernel_h * d->kernel_w;
    const int64_t in_hw = (int64_t)d->in_h * d->in_w, out_hw = (int64_t)d->out_h * d->out_w;
    const float *w = cx->w + c * khw;
    for (int64_t oy = 0; oy < d->out_h; oy++)
        for (int64_t ox = 0; ox < d->out_w; ox++) {
            float acc = 0.0f;
            for (int64_t ky = 0; ky < d->kernel_h; ky++) {
                const int64_t iy = oy * d->stride_h - d->pad_top + ky * d->dilation_h;
                if (iy < 0 || iy >= d->in_h) continue;
                for (int64_t kx = 0; kx < d->kernel_w; kx++) {
                    const int64_t ix = ox * d->stride_w - d->pad_left + kx * d->dilation_w;
                    if (ix < 0 || ix >= d->in_w) continue;
                    const int64_t at = plane * in_hw + iy * d->in_w + ix;
                    const float v = cx->q ? (float)(cx->xq[at] - cx->q->x_zero_point) : cx->x[at];
                    acc += w[ky * d->kernel_w + kx] * v;
                }
            }
            const int64_t o = plane * out_hw + oy * d->out_w + ox;
            if (cx->q) {
                const int32_t sum = (int32_t)acc, bias = cx->qbias ? cx->qbias[c] : 0;
                pn_requant_args ra = {&bias, 0, cx->mul + c, 0, cx->q->y_zero_point,
                                      cx->q->act_min, cx->q->act_max};
                pn_requant_generic(&sum, 1, &ra, cx->yq + o);
            } else {
                cx->y[o] = acc + (cx->bias ? cx->bias[c] : 0.0f);
            }
        }
    if (!cx->q) pn_activation(&d->act, cx->y + plane * out_hw, cx->y + plane * out_hw, out_hw);
}

static void pn_dw_task(void *ctx, int64_t task, void *ws, size_t ws_bytes) {
    const pn_dw_ctx *cx = (const pn_dw_ctx *)ctx;
    const pn_conv2d_desc *d = cx->d;
    const pn_kernels *kern = pn_kernels_active();
    const int64_t p0 = task * cx->per_task, p1 = PN_MIN(cx->planes, p0 + cx->per_task);
    const int64_t in_hw = (int64_t)d->in_h * d->in_w, out_hw = (int64_t)d->out_h * d->out_w;
    const int64_t kh = d->kernel_h, kw = d->kernel_w, khw = kh * kw;
    const int64_t sh = d->stride_h, sw = d->stride_w, dh = d->dilation_h, dw = d->dilation_w;
    const int64_t pwp = cx->pwp;
    /* as many output rows per band as this workspace holds */
    int64_t rows = d->out_h;
    while (rows > 1 && pn_dw_band_floats(d, pwp, rows) * (int64_t)sizeof(float) > (int64_t)ws_bytes)
        rows = (rows + 1) / 2;
    if (pn_dw_band_floats(d, pwp, rows) * (int64_t)sizeof(float) > (int64_t)ws_bytes) {
        for (int64_t plane = p0; plane < p1; plane++) pn_dw_plane_direct(cx, plane);
        return;
    }
    const int64_t R = pn_dw_sub_rows(d, rows), sub = R * pwp;
    float *band = (float *)ws;
    float *out = band + pn_round_up(sh * sw * sub + 16, 16);
    const float **src = (const float **)(void *)(out + pn_round_up(rows * pwp + 16, 16));
    int64_t *tap_off = (int64_t *)(void *)(src + pn_round_up(khw, 8));
    int32_t *sums = (int32_t *)(void *)(tap_off + pn_round_up(khw, 8));
    /* fp32: bias, Relu and Clip in the row kernel, other activations after it; int8: plain
       sums (the bias is added exactly in int32 by the requantisation) */
    pn_epi epi;
    pn_epi_from_act(cx->q ? NULL : &d->act, &epi);
    const int need_act = !cx->q && d->act.kind != PN_ACT_NONE && !epi.clamp;
    for (int64_t ky = 0; ky < kh; ky++)
        for (int64_t kx = 0; kx < kw; kx++) {
            const int64_t rp = (ky * dh) % sh, cp = (kx * dw) % sw;
            tap_off[ky * kw + kx] = (rp * sw + cp) * sub + ((ky * dh) / sh) * pwp + (kx * dw) / sw;
        }
    for (int64_t t = 0; t < khw; t++) src[t] = band + tap_off[t];
    pn_fill0(band + sh * sw * sub, 16); /* the last flat vector may read past the sub-images */
    for (int64_t plane = p0; plane < p1; plane++) {
        const int64_t c = plane % d->out_channels;
        const float *w = cx->w + c * khw;
        const float bias = !cx->q && cx->bias ? cx->bias[c] : 0.0f;
        pn_requant_args ra;
        int32_t qbias = 0;
        if (cx->q) {
            qbias = cx->qbias ? cx->qbias[c] : 0;
            ra.add = &qbias;
            ra.add_stride = 0;
            ra.mul = cx->mul + c;
            ra.mul_stride = 0;
            ra.zp = cx->q->y_zero_point;
            ra.lo = cx->q->act_min;
            ra.hi = cx->q->act_max;
        }
        for (int64_t oy0 = 0; oy0 < d->out_h; oy0 += rows) {
            const int64_t nr = PN_MIN(rows, (int64_t)d->out_h - oy0);
            pn_dw_fill_band(kern, d, cx->q ? NULL : cx->x + plane * in_hw,
                            cx->q ? cx->xq + plane * in_hw : NULL,
                            cx->q ? cx->q->x_zero_point : 0, oy0, rows, pwp, band);
            const int64_t n = pn_round_up((nr - 1) * pwp + d->out_w, 8);
            kern->dw_row((int32_t)khw, src, w, bias, &epi, out, n);
            for (int64_t r = 0; r < nr; r++) {
                const float *o = out + r * pwp;
                const int64_t at = plane * out_hw + (oy0 + r) * d->out_w;
                if (cx->q) {
                    for (int64_t t = 0; t < d->out_w; t++) sums[t] = (int32_t)o[t]; /* exact */
                    kern->requant(sums, d->out_w, &ra, cx->yq + at);
                } else {
                    pn_copyf(cx->y + at, o, d->out_w);
                }
            }
        }
        if (need_act) {
            float *y = cx->y + plane * out_hw;
            kern->act(&d->act, y, y, out_hw);
        }
    }
}

static void pn_dw_run(pn_pool *pool, pn_dw_ctx *cx) {
    const pn_conv2d_desc *d = cx->d;
    cx->planes = (int64_t)d->batch * d->out_channels;
    cx->pwp = d->out_w + (int64_t)(d->kernel_w - 1) * d->dilation_w / d->stride_w;
    const int32_t threads = pn_pool_effective_threads(pool);
    const int64_t work = cx->planes * d->out_h * d->out_w * d->kernel_h * d->kernel_w;
    const int64_t tasks = threads == 1 || work < 65536 ? 1 : PN_MIN(cx->planes, threads * 4);
    cx->per_task = pn_ceil_div(cx->planes, tasks);
    pn_parallel_for(pool, pn_ceil_div(cx->planes, cx->per_task), pn_dw_task, cx);
}

void pn_conv2d_depthwise(pn_pool *pool, const pn_conv2d_desc *d, const float *x, const float *w,
                         const float *bias, float *y) {
    pn_dw_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.d = d;
    cx.x = x;
    cx.w = w;
    cx.bias = bias;
    cx.y = y;
    pn_dw_run(pool, &cx);
}

int pn_qdw_supported(const pn_conv2d_desc *d) {
    return (int64_t)d->kernel_h * d->kernel_w <= PN_QDW_MAX_TAPS;
}

void pn_qconv2d_depthwise(pn_pool *pool, const pn_qconv2d_desc *q, const int8_t *x,
                          const float *w, const int32_t *bias, const float *multiplier,
                          int8_t *y) {
    pn_dw_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.d = &q->conv;
    cx.w = w;
    cx.q = q;
    cx.xq = x;
    cx.qbias = bias;
    cx.mul = multiplier;
    cx.yq = y;
    pn_dw_run(pool, &cx);
}
