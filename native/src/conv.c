/* conv.c: fp32 Conv 2-D: weight packing, im2col into GEMM panels (the depthwise kernel is in
 * depthwise.c).
 *
 * NCHW as a GEMM per image and group: Y[co, hw] = W[co, K] x Xcol[K, hw], K = ci_g * kh * kw, so
 * the weight is the left operand (packed once in MR-row panels) and the image the right one:
 * read in place for 1x1 stride-1 unpadded convolutions, otherwise gathered block by block
 * (im2col) straight into NR-column panels in the thread's workspace, never a whole Xcol.
 */
#include <string.h>

#include "pn_internal.h"


static int pn_conv_is_depthwise(const pn_conv2d_desc *d) {
    return d->groups == d->in_channels && d->groups == d->out_channels;
}

static int pn_conv_is_pointwise(const pn_conv2d_desc *d) {
    return d->kernel_h == 1 && d->kernel_w == 1 && d->stride_h == 1 && d->stride_w == 1 &&
           d->pad_top == 0 && d->pad_left == 0 && d->out_h == d->in_h && d->out_w == d->in_w;
}

int64_t pn_conv2d_packed_floats(const pn_conv2d_desc *d) {
    const int64_t khw = (int64_t)d->kernel_h * d->kernel_w;
    if (pn_conv_is_depthwise(d)) return (int64_t)d->out_channels * khw;
    const int64_t co_g = d->out_channels / d->groups, ci_g = d->in_channels / d->groups;
    return (int64_t)d->groups * pn_round_up(co_g, PN_MR) * ci_g * khw;
}

void pn_conv2d_pack(const pn_conv2d_desc *d, const float *weight, float *packed) {
    const int64_t khw = (int64_t)d->kernel_h * d->kernel_w;
    if (pn_conv_is_depthwise(d)) {
        memcpy(packed, weight, (size_t)(d->out_channels * khw) * sizeof(float));
        return;
    }
    const int64_t co_g = d->out_channels / d->groups, ci_g = d->in_channels / d->groups;
    const int64_t K = ci_g * khw, panels = pn_ceil_div(co_g, PN_MR);
    for (int64_t g = 0; g < d->groups; g++) {
        const float *w = weight + g * co_g * K;
        float *dst = packed + g * panels * PN_MR * K;
        for (int64_t q = 0; q < panels; q++)
            for (int64_t k = 0; k < K; k++)
                for (int64_t i = 0; i < PN_MR; i++) {
                    const int64_t row = q * PN_MR + i;
                    dst[(q * K + k) * PN_MR + i] = row < co_g ? w[row * K + k] : 0.0f;
                }
    }
}

int64_t pn_conv2d_scratch_floats(const pn_conv2d_desc *d, int32_t threads) {
    (void)d;
    (void)threads;
    return 0;
}

/* Writes rows [pc, pc+kc) x columns [jb, jb+nb) of Xcol into NR-column panels of kc rows each
   (zero beyond nb up to the panel edge). Row k is (channel, ky, kx); column j is (oy, ox). */
void pn_im2col_pack(const pn_im2col_geom *g, int64_t pc, int64_t kc, int64_t jb, int64_t nb,
                    float *dst) {
    const int64_t khw = (int64_t)g->kernel_h * g->kernel_w;
    const int64_t plane_size = (int64_t)g->in_h * g->in_w;
    const int64_t panel_stride = kc * PN_NR;
    const int64_t sw = g->stride_w;
    for (int64_t kk = 0; kk < kc; kk++) {
        const int64_t k = pc + kk;
        const int64_t c = k / khw, r = k % khw, ky = r / g->kernel_w, kx = r % g->kernel_w;
        const float *plane = g->x + c * plane_size;
        const int64_t yoff = ky * g->dilation_h - g->pad_top;
        const int64_t xoff = kx * g->dilation_w - g->pad_left;
        /* Outputs ox whose input column ox * sw + xoff lies inside the row: [ox_lo, ox_hi). */
        int64_t ox_lo = xoff >= 0 ? 0 : (-xoff + sw - 1) / sw;
        int64_t ox_hi = g->in_w - 1 - xoff < 0 ? 0 : (g->in_w - 1 - xoff) / sw + 1;
        ox_hi = PN_MIN(ox_hi, (int64_t)g->out_w);
        ox_lo = PN_MIN(ox_lo, ox_hi);
        float *p = dst + kk * PN_NR;
        int64_t lane = 0;
        int64_t oy = jb / g->out_w, ox = jb % g->out_w, t = 0;
#define PN_PUT(v)                     \
    do {                              \
        p[lane] = (v);                \
        if (++lane == PN_NR) {        \
            lane = 0;                 \
            p += panel_stride;        \
        }                             \
    } while (0)
        while (t < nb) {
            const int64_t end = PN_MIN((int64_t)g->out_w, ox + (nb - t));
            const int64_t iy = oy * g->stride_h + yoff;
            t += end - ox;
            if (iy < 0 || iy >= g->in_h) {
                for (; ox < end; ox++) PN_PUT(0.0f);
            } else {
                const float *row = plane + iy * g->in_w + xoff;
                const int64_t a = PN_MIN(end, PN_MAX(ox, ox_lo));
                const int64_t b = PN_MIN(end, PN_MAX(a, ox_hi));
                for (; ox < a; ox++) PN_PUT(0.0f);
                if (sw == 1)
                    for (; ox < b; ox++) PN_PUT(row[ox]);
                else
                    for (; ox < b; ox++) PN_PUT(row[ox * sw]);
                for (; ox < end; ox++) PN_PUT(0.0f);
            }
            if (ox == g->out_w) {
                ox = 0;
                oy++;
            }
        }
        if (lane != 0)
            for (; lane < PN_NR; lane++) p[lane] = 0.0f;
#undef PN_PUT
    }
}

/* ---- GEMM-based convolution ---- */

typedef struct {
    const pn_conv2d_desc *d;
    const float *x, *packed, *bias;
    float *y;
    int64_t groups_total; /* batch x groups */
    pn_split s;
    int32_t pointwise;
} pn_conv_ctx;

static void pn_conv_task(void *ctx, int64_t task, void *ws, size_t ws_bytes) {
    const pn_conv_ctx *cx = (const pn_conv_ctx *)ctx;
    const pn_conv2d_desc *d = cx->d;
    const int64_t per = cx->s.row_chunks * cx->s.col_chunks;
    const int64_t ng = task / per, rest = task % per;
    const int64_t n = ng / d->groups, g = ng % d->groups;
    const int64_t rc = rest / cx->s.col_chunks, cc = rest % cx->s.col_chunks;
    const int64_t co_g = d->out_channels / d->groups, ci_g = d->in_channels / d->groups;
    const int64_t khw = (int64_t)d->kernel_h * d->kernel_w, K = ci_g * khw;
    const int64_t in_hw = (int64_t)d->in_h * d->in_w, out_hw = (int64_t)d->out_h * d->out_w;
    const float *x = cx->x + (n * d->in_channels + g * ci_g) * in_hw;

    pn_sgemm_problem p;
    memset(&p, 0, sizeof p);
    p.m = co_g;
    p.n = out_hw;
    p.k = K;
    p.a_packed = cx->packed + g * pn_round_up(co_g, PN_MR) * K;
    if (cx->pointwise) {
        p.b_kind = PN_B_RAW;
        p.b = x;
        p.b_rs = in_hw;
        p.b_cs = 1;
    } else {
        p.b_kind = PN_B_IM2COL;
        p.im.x = x;
        p.im.in_h = d->in_h;
        p.im.in_w = d->in_w;
        p.im.out_h = d->out_h;
        p.im.out_w = d->out_w;
        p.im.kernel_h = d->kernel_h;
        p.im.kernel_w = d->kernel_w;
        p.im.stride_h = d->stride_h;
        p.im.stride_w = d->stride_w;
        p.im.dilation_h = d->dilation_h;
        p.im.dilation_w = d->dilation_w;
        p.im.pad_top = d->pad_top;
        p.im.pad_left = d->pad_left;
    }
    p.c = cx->y + (n * d->out_channels + g * co_g) * out_hw;
    p.ldc = out_hw;
    p.bias_row = cx->bias ? cx->bias + g * co_g : NULL;
    p.act = &d->act;
    const int64_t m0 = rc * cx->s.rows_per_chunk, n0 = cc * cx->s.cols_per_chunk;
    pn_sgemm_block(&p, m0, PN_MIN(p.m, m0 + cx->s.rows_per_chunk), n0,
                   PN_MIN(p.n, n0 + cx->s.cols_per_chunk), ws, ws_bytes);
}

void pn_conv2d(pn_pool *pool, const pn_conv2d_desc *d, const float *x, const float *packed,
               const float *bias, float *y, float *scratch) {
    (void)scratch;
    if (d->batch <= 0 || d->out_channels <= 0 || d->out_h <= 0 || d->out_w <= 0) return;
    if (pn_conv_is_depthwise(d)) {
        pn_conv2d_depthwise(pool, d, x, packed, bias, y);
        return;
    }
    pn_conv_ctx cx;
    cx.d = d;
    cx.x = x;
    cx.packed = packed;
    cx.bias = bias;
    cx.y = y;
    cx.groups_total = (int64_t)d->batch * d->groups;
    cx.pointwise = pn_conv_is_pointwise(d);
    const int64_t co_g = d->out_channels / d->groups, ci_g = d->in_channels / d->groups;
    const int64_t K = ci_g * d->kernel_h * d->kernel_w;
    const int32_t threads = pn_pool_effective_threads(pool);
    /* Many images or groups: one task each; otherwise cut each GEMM into tiles. */
    cx.s = pn_split_2d(co_g, (int64_t)d->out_h * d->out_w, K,
                       cx.groups_total >= 2 * threads ? 1 : threads, PN_MR, pn_sgemm_task_cols());
    pn_parallel_for(pool, cx.groups_total * cx.s.row_chunks * cx.s.col_chunks, pn_conv_task, &cx);
}
