/* quant.c: int8 kernels after the TFLite int8 spec: quantize/dequantize, the int8 GEMM driver,
 * pn_qconv2d (GEMM per group, or direct for depthwise) and pn_qgemm.
 *
 * Zero points: the operands are multiplied raw (x, w) and the activation zero point is taken out
 * afterwards with the weight sums: sum (x - zx) w = sum x w - zx sum w. Padding therefore holds
 * zx itself (the real value 0). Weights are symmetric (zero point 0), as the spec requires.
 * Packed weights start with the per-output-channel weight sums (int32), then the panels.
 */
#include <math.h>
#include <string.h>

#include "pn_internal.h"

/* ---- quantize / dequantize (ONNX QuantizeLinear / DequantizeLinear) ---- */

void pn_quantize(const float *x, int8_t *y, int64_t n, float scale, int32_t zero_point) {
    /* ONNX: saturate(round_half_even(x / scale) + zero_point); the division (not a reciprocal)
       matches the reference bit for bit. NaN becomes the zero point. */
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / scale;
        if (v != v) {
            y[i] = (int8_t)(zero_point < -128 ? -128 : zero_point > 127 ? 127 : zero_point);
            continue;
        }
        v = nearbyintf(v) + (float)zero_point;
        v = v < -128.0f ? -128.0f : v;
        v = v > 127.0f ? 127.0f : v;
        y[i] = (int8_t)v;
    }
}

void pn_dequantize(const int8_t *x, float *y, int64_t n, float scale, int32_t zero_point) {
    for (int64_t i = 0; i < n; i++) y[i] = (float)((int32_t)x[i] - zero_point) * scale;
}

/* ---- requantisation ---- */

static inline int32_t pn_add_wrap(int32_t a, int32_t b) {
    /* The exact sum when it fits in int32 (which the spec guarantees for acc); no signed
       overflow in the intermediate steps. */
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

void pn_requant_generic(const int32_t *acc, int64_t n, const pn_requant_args *r, int8_t *y) {
    for (int64_t j = 0; j < n; j++) {
        const int32_t s = pn_add_wrap(acc[j], r->add[j * r->add_stride]);
        float v = (float)s * r->mul[j * r->mul_stride];
        /* Clamp before converting: the result is clamped to int8 anyway. */
        v = v < -1073741824.0f ? -1073741824.0f : v;
        v = v > 1073741824.0f ? 1073741824.0f : v;
        int32_t q = (int32_t)roundf(v) + r->zp; /* roundf: half away from zero */
        q = q < r->lo ? r->lo : q;
        q = q > r->hi ? r->hi : q;
        y[j] = (int8_t)q;
    }
}

/* ---- int8 microkernel (generic) ---- */

void pn_qgemm_ukr_generic(int64_t kq, const pn_qv *a, const pn_qv *b, int32_t *acc, int64_t ldacc,
                          int32_t first) {
    int32_t t[PN_QMR][PN_QNR];
    memset(t, 0, sizeof t);
    for (int64_t p = 0; p < kq; p++) {
        for (int i = 0; i < PN_QMR; i++)
            for (int j = 0; j < PN_QNR; j++) {
                int32_t s = 0;
                for (int u = 0; u < PN_QKU; u++)
                    s += (int32_t)a[i * PN_QKU + u] * (int32_t)b[j * PN_QKU + u];
                t[i][j] += s;
            }
        a += PN_QMR * PN_QKU;
        b += PN_QNR * PN_QKU;
    }
    for (int i = 0; i < PN_QMR; i++)
        for (int j = 0; j < PN_QNR; j++)
            acc[i * ldacc + j] = first ? t[i][j] : acc[i * ldacc + j] + t[i][j];
}

/* ---- packed layouts ---- */

static inline int64_t pn_qkpad(int64_t k) { return pn_round_up(k, PN_QKU); }
/* Bytes before the panels: weight sums for `channels` outputs, rounded to 64 bytes. */
static inline int64_t pn_qheader(int64_t channels) { return pn_round_up(channels * 4, 64); }

/* Packs rows [row, row+QMR) x depth [0, kpad) of a row-major int8 matrix (zero outside). */
static void pn_qpack_rows(const int8_t *src, int64_t rows_total, int64_t k, int64_t ld, int64_t row,
                          int64_t pc, int64_t kc, pn_qv *dst) {
    for (int64_t i = 0; i < PN_QMR; i++) {
        const int64_t r = row + i;
        for (int64_t kk = 0; kk < kc; kk++) {
            const int64_t kx = pc + kk;
            const int8_t v = r < rows_total && kx < k ? src[r * ld + kx] : 0;
            dst[(kk / PN_QKU) * PN_QMR * PN_QKU + i * PN_QKU + kk % PN_QKU] = (pn_qv)v;
        }
    }
}

static int pn_qconv_is_depthwise(const pn_conv2d_desc *d) {
    return d->groups == d->in_channels && d->groups == d->out_channels;
}

int64_t pn_qconv2d_packed_bytes(const pn_conv2d_desc *d) {
    const int64_t khw = (int64_t)d->kernel_h * d->kernel_w;
    if (pn_qconv_is_depthwise(d))
        return (int64_t)d->out_channels * khw * (pn_qdw_supported(d) ? (int64_t)sizeof(float) : 1);
    const int64_t co_g = d->out_channels / d->groups, ci_g = d->in_channels / d->groups;
    const int64_t kpad = pn_qkpad(ci_g * khw);
    return pn_qheader(d->out_channels) +
           (int64_t)d->groups * pn_round_up(co_g, PN_QMR) * kpad * (int64_t)sizeof(pn_qv);
}

void pn_qconv2d_pack(const pn_conv2d_desc *d, const int8_t *weight, int8_t *packed) {
    const int64_t khw = (int64_t)d->kernel_h * d->kernel_w;
    if (pn_qconv_is_depthwise(d)) {
        if (!pn_qdw_supported(d)) {
            memcpy(packed, weight, (size_t)(d->out_channels * khw));
            return;
        }
        /* as floats, for the float depthwise kernels (exact on these integers) */
        float *w = (float *)(void *)packed;
        for (int64_t i = 0; i < d->out_channels * khw; i++) {
            const float v = (float)weight[i];
            memcpy(w + i, &v, sizeof v);
        }
        return;
    }
    const int64_t co_g = d->out_channels / d->groups, ci_g = d->in_channels / d->groups;
    const int64_t K = ci_g * khw, kpad = pn_qkpad(K), panels = pn_ceil_div(co_g, PN_QMR);
    int32_t *wsum = (int32_t *)(void *)packed;
    for (int64_t o = 0; o < d->out_channels; o++) {
        int32_t s = 0;
        for (int64_t k = 0; k < K; k++) s += weight[o * K + k];
        memcpy(wsum + o, &s, sizeof s);
    }
    pn_qv *base = (pn_qv *)(void *)(packed + pn_qheader(d->out_channels));
    for (int64_t g = 0; g < d->groups; g++)
        for (int64_t q = 0; q < panels; q++)
            pn_qpack_rows(weight + g * co_g * K, co_g, K, K, q * PN_QMR, 0, kpad,
                          base + (g * panels + q) * PN_QMR * kpad);
}

int64_t pn_qconv2d_scratch_bytes(const pn_conv2d_desc *d, int32_t threads) {
    (void)d;
    (void)threads;
    return 0;
}

int64_t pn_qgemm_packed_bytes(int32_t k, int32_t n) {
    return pn_qheader(n) + pn_round_up(n, PN_QNR) * pn_qkpad(k) * (int64_t)sizeof(pn_qv);
}

void pn_qgemm_pack(int32_t k, int32_t n, const int8_t *b, int32_t trans_b, int8_t *packed) {
    const int64_t kpad = pn_qkpad(k), panels = pn_ceil_div(n, PN_QNR);
    int32_t *wsum = (int32_t *)(void *)packed;
    for (int64_t j = 0; j < n; j++) {
        int32_t s = 0;
        for (int64_t kk = 0; kk < k; kk++) s += trans_b ? b[j * k + kk] : b[kk * n + j];
        memcpy(wsum + j, &s, sizeof s);
    }
    pn_qv *base = (pn_qv *)(void *)(packed + pn_qheader(n));
    for (int64_t q = 0; q < panels; q++) {
        pn_qv *dst = base + q * PN_QNR * kpad;
        for (int64_t kk = 0; kk < kpad; kk++)
            for (int64_t jj = 0; jj < PN_QNR; jj++) {
                const int64_t j = q * PN_QNR + jj;
                int8_t v = 0;
                if (j < n && kk < k) v = trans_b ? b[j * k + kk] : b[kk * n + j];
                dst[(kk / PN_QKU) * PN_QNR * PN_QKU + jj * PN_QKU + kk % PN_QKU] = (pn_qv)v;
            }
    }
}

/* ---- int8 GEMM driver ---- */

typedef struct {
    const int8_t *x; /* channel 0 of this group in this image */
    int32_t in_h, in_w, out_h, out_w;
    int32_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
    int8_t pad_value; /* the activation zero point */
} pn_qim2col_geom;

typedef struct {
    int64_t m, n, k, kpad;
    /* left: packed weights (qconv) or raw activations (qgemm) */
    const pn_qv *a_packed;
    const int8_t *a;
    int64_t lda;
    /* right: packed weights (qgemm) or im2col of the image (qconv) */
    const pn_qv *b_packed;
    pn_qim2col_geom im;
    int8_t *y;
    int64_t ldy;
    /* requantisation per output channel: rows (qconv) or columns (qgemm) */
    int32_t per_row;
    const int32_t *bias, *wsum; /* indexed by channel (already offset to this group) */
    const float *mul;
    int32_t x_zp, y_zp, lo, hi;
} pn_qgemm_problem;

/* Writes rows [pc, pc+kc) x columns [jb, jb+nb) of the int8 Xcol into QNR panels. */
static void pn_qim2col_pack(const pn_qim2col_geom *g, int64_t K, int64_t pc, int64_t kc, int64_t jb,
                            int64_t nb, pn_qv *dst) {
    if (g->kernel_h == 1 && g->kernel_w == 1 && g->stride_h == 1 && g->stride_w == 1 &&
        g->pad_top == 0 && g->pad_left == 0 && g->out_h == g->in_h && g->out_w == g->in_w) {
        /* 1x1: Xcol is the image itself; interleave QKU channel rows per panel, column by column
           (contiguous writes, QKU sequential reads). */
        const int64_t hw = (int64_t)g->in_h * g->in_w;
        for (int64_t kq = 0; kq < kc / PN_QKU; kq++) {
            const int8_t *rows[PN_QKU];
            for (int u = 0; u < PN_QKU; u++) {
                const int64_t k = pc + kq * PN_QKU + u;
                rows[u] = k < K ? g->x + k * hw + jb : NULL;
            }
            for (int64_t q = 0; q * PN_QNR < nb; q++) {
                pn_qv *d = dst + q * kc * PN_QNR + kq * PN_QNR * PN_QKU;
                const int64_t cols = PN_MIN((int64_t)PN_QNR, nb - q * PN_QNR);
                for (int u = 0; u < PN_QKU; u++) {
                    const int8_t *src = rows[u] ? rows[u] + q * PN_QNR : NULL;
                    for (int64_t j = 0; j < PN_QNR; j++)
                        d[j * PN_QKU + u] = (pn_qv)(src && j < cols ? src[j] : 0);
                }
            }
        }
        return;
    }
    const int64_t khw = (int64_t)g->kernel_h * g->kernel_w;
    const int64_t plane_size = (int64_t)g->in_h * g->in_w;
    const int64_t panel_stride = kc * PN_QNR;
    const int64_t npanels = pn_ceil_div(nb, PN_QNR);
    const pn_qv padv = (pn_qv)g->pad_value;
    const int64_t sw = g->stride_w;
    for (int64_t kk = 0; kk < kc; kk++) {
        pn_qv *p = dst + (kk / PN_QKU) * PN_QNR * PN_QKU + kk % PN_QKU;
        const int64_t k = pc + kk;
        if (k >= K) {
            for (int64_t t = 0; t < npanels * PN_QNR; t++)
                p[(t / PN_QNR) * panel_stride + (t % PN_QNR) * PN_QKU] = 0;
            continue;
        }
        const int64_t c = k / khw, r = k % khw, ky = r / g->kernel_w, kx = r % g->kernel_w;
        const int8_t *plane = g->x + c * plane_size;
        const int64_t yoff = ky * g->dilation_h - g->pad_top;
        const int64_t xoff = kx * g->dilation_w - g->pad_left;
        int64_t ox_lo = xoff >= 0 ? 0 : (-xoff + sw - 1) / sw;
        int64_t ox_hi = g->in_w - 1 - xoff < 0 ? 0 : (g->in_w - 1 - xoff) / sw + 1;
        ox_hi = PN_MIN(ox_hi, (int64_t)g->out_w);
        ox_lo = PN_MIN(ox_lo, ox_hi);
        int64_t lane = 0;
#define PN_QPUT(v)                    \
    do {                              \
        p[lane * PN_QKU] = (v);       \
        if (++lane == PN_QNR) {       \
            lane = 0;                 \
            p += panel_stride;        \
        }                             \
    } while (0)
        int64_t oy = jb / g->out_w, ox = jb % g->out_w, t = 0;
        while (t < nb) {
            const int64_t end = PN_MIN((int64_t)g->out_w, ox + (nb - t));
            const int64_t iy = oy * g->stride_h + yoff;
            t += end - ox;
            if (iy < 0 || iy >= g->in_h) {
                for (; ox < end; ox++) PN_QPUT(padv);
            } else {
                const int8_t *row = plane + iy * g->in_w + xoff;
                const int64_t a = PN_MIN(end, PN_MAX(ox, ox_lo));
                const int64_t b = PN_MIN(end, PN_MAX(a, ox_hi));
                for (; ox < a; ox++) PN_QPUT(padv);
                for (; ox < b; ox++) PN_QPUT((pn_qv)row[ox * sw]);
                for (; ox < end; ox++) PN_QPUT(padv);
            }
            if (ox == g->out_w) {
                ox = 0;
                oy++;
            }
        }
        if (lane != 0)
            for (; lane < PN_QNR; lane++) p[lane * PN_QKU] = 0;
#undef PN_QPUT
    }
}

static void pn_qgemm_block(const pn_qgemm_problem *p, int64_t m0, int64_t m1, int64_t n0,
                           int64_t n1, void *workspace, size_t ws_bytes) {
    const pn_kernels *kern = pn_kernels_active();
    const size_t e = sizeof(pn_qv);
    /* Blocks: depth QKC, columns ncb, rows mcb; acc is an mcb x ncb int32 tile of sums. */
    int64_t ncb = PN_QNCB, mcb = PN_QMCB;
    size_t need = (size_t)PN_QKC * ncb * e + (p->a_packed ? 0 : (size_t)mcb * PN_QKC * e) +
                  (size_t)mcb * ncb * 4 + 128;
    if (need > ws_bytes) {
        ncb = PN_QNR;
        mcb = PN_QMR;
    } else if (p->a_packed) {
        /* Weights already packed: the room for an A block goes to more rows of sums, so that
           each im2col block serves more output channels. */
        const size_t room = ws_bytes - (size_t)PN_QKC * ncb * e - 128;
        mcb = (int64_t)(room / ((size_t)ncb * 4)) / PN_QMR * PN_QMR;
    }
    unsigned char *w = (unsigned char *)workspace;
    pn_qv *bbuf = (pn_qv *)(void *)w;
    w += pn_round_up((int64_t)PN_QKC * ncb * (int64_t)e, 64);
    pn_qv *abuf = (pn_qv *)(void *)w;
    if (!p->a_packed) w += pn_round_up((int64_t)mcb * PN_QKC * (int64_t)e, 64);
    int32_t *acc = (int32_t *)(void *)w;
    const int64_t ldacc = ncb;

    int32_t add[PN_QNCB > PN_QMCB ? PN_QNCB : PN_QMCB];
    for (int64_t ib = m0; ib < m1; ib += mcb) {
        const int64_t mb = PN_MIN(mcb, m1 - ib), mpanels = pn_ceil_div(mb, PN_QMR);
        for (int64_t jb = n0; jb < n1; jb += ncb) {
            const int64_t nb = PN_MIN(ncb, n1 - jb), npanels = pn_ceil_div(nb, PN_QNR);
            for (int64_t pc = 0; pc < p->kpad; pc += PN_QKC) {
                const int64_t kc = PN_MIN((int64_t)PN_QKC, p->kpad - pc);
                if (!p->b_packed) pn_qim2col_pack(&p->im, p->k, pc, kc, jb, nb, bbuf);
                if (!p->a_packed)
                    for (int64_t r = 0; r < mpanels; r++)
                        pn_qpack_rows(p->a, p->m, p->k, p->lda, ib + r * PN_QMR, pc, kc,
                                      abuf + r * PN_QMR * kc);
                for (int64_t q = 0; q < npanels; q++) {
                    const int64_t col = jb + q * PN_QNR;
                    const pn_qv *bp = p->b_packed ? p->b_packed + (col / PN_QNR) * PN_QNR * p->kpad +
                                                        pc * PN_QNR
                                                  : bbuf + q * PN_QNR * kc;
                    for (int64_t r = 0; r < mpanels; r++) {
                        const int64_t row = ib + r * PN_QMR;
                        const pn_qv *ap = p->a_packed ? p->a_packed + (row / PN_QMR) * PN_QMR * p->kpad +
                                                            pc * PN_QMR
                                                      : abuf + r * PN_QMR * kc;
                        kern->qgemm_ukr(kc / PN_QKU, ap, bp, acc + r * PN_QMR * ldacc + q * PN_QNR,
                                        ldacc, pc == 0);
                    }
                }
            }
            /* Requantise the finished block. */
            pn_requant_args ra;
            ra.zp = p->y_zp;
            ra.lo = p->lo;
            ra.hi = p->hi;
            if (p->per_row) {
                ra.add_stride = 0;
                ra.mul_stride = 0;
                for (int64_t i = 0; i < mb; i++) {
                    const int64_t ch = ib + i;
                    const int32_t b = p->bias ? p->bias[ch] : 0;
                    add[0] = (int32_t)((uint32_t)b - (uint32_t)p->x_zp * (uint32_t)p->wsum[ch]);
                    ra.add = add;
                    ra.mul = p->mul + ch;
                    kern->requant(acc + i * ldacc, nb, &ra, p->y + ch * p->ldy + jb);
                }
            } else {
                for (int64_t j = 0; j < nb; j++) {
                    const int64_t ch = jb + j;
                    const int32_t b = p->bias ? p->bias[ch] : 0;
                    add[j] = (int32_t)((uint32_t)b - (uint32_t)p->x_zp * (uint32_t)p->wsum[ch]);
                }
                ra.add = add;
                ra.add_stride = 1;
                ra.mul = p->mul + jb;
                ra.mul_stride = 1;
                for (int64_t i = 0; i < mb; i++)
                    kern->requant(acc + i * ldacc, nb, &ra, p->y + (ib + i) * p->ldy + jb);
            }
        }
    }
}

/* ---- pn_qconv2d ---- */

typedef struct {
    const pn_qconv2d_desc *d;
    const int8_t *x, *packed;
    const int32_t *bias;
    const float *mul;
    int8_t *y;
    pn_split s;
    int64_t planes, per_task; /* depthwise */
} pn_qconv_ctx;

static void pn_qconv_task(void *ctx, int64_t task, void *ws, size_t ws_bytes) {
    const pn_qconv_ctx *cx = (const pn_qconv_ctx *)ctx;
    const pn_qconv2d_desc *qd = cx->d;
    const pn_conv2d_desc *d = &qd->conv;
    const int64_t per = cx->s.row_chunks * cx->s.col_chunks;
    const int64_t ng = task / per, rest = task % per;
    const int64_t n = ng / d->groups, g = ng % d->groups;
    const int64_t rc = rest / cx->s.col_chunks, cc = rest % cx->s.col_chunks;
    const int64_t co_g = d->out_channels / d->groups, ci_g = d->in_channels / d->groups;
    const int64_t K = ci_g * d->kernel_h * d->kernel_w, kpad = pn_qkpad(K);
    const int64_t in_hw = (int64_t)d->in_h * d->in_w, out_hw = (int64_t)d->out_h * d->out_w;

    pn_qgemm_problem p;
    memset(&p, 0, sizeof p);
    p.m = co_g;
    p.n = out_hw;
    p.k = K;
    p.kpad = kpad;
    const pn_qv *panels = (const pn_qv *)(const void *)(cx->packed + pn_qheader(d->out_channels));
    p.a_packed = panels + g * pn_round_up(co_g, PN_QMR) * kpad;
    pn_qim2col_geom *im = &p.im;
    im->x = cx->x + (n * d->in_channels + g * ci_g) * in_hw;
    im->in_h = d->in_h;
    im->in_w = d->in_w;
    im->out_h = d->out_h;
    im->out_w = d->out_w;
    im->kernel_h = d->kernel_h;
    im->kernel_w = d->kernel_w;
    im->stride_h = d->stride_h;
    im->stride_w = d->stride_w;
    im->dilation_h = d->dilation_h;
    im->dilation_w = d->dilation_w;
    im->pad_top = d->pad_top;
    im->pad_left = d->pad_left;
    im->pad_value = (int8_t)qd->x_zero_point;
    p.y = cx->y + (n * d->out_channels + g * co_g) * out_hw;
    p.ldy = out_hw;
    p.per_row = 1;
    p.bias = cx->bias ? cx->bias + g * co_g : NULL;
    p.wsum = (const int32_t *)(const void *)cx->packed + g * co_g;
    p.mul = cx->mul + g * co_g;
    p.x_zp = qd->x_zero_point;
    p.y_zp = qd->y_zero_point;
    p.lo = qd->act_min;
    p.hi = qd->act_max;
    const int64_t m0 = rc * cx->s.rows_per_chunk, n0 = cc * cx->s.cols_per_chunk;
    pn_qgemm_block(&p, m0, PN_MIN(p.m, m0 + cx->s.rows_per_chunk), n0,
                   PN_MIN(p.n, n0 + cx->s.cols_per_chunk), ws, ws_bytes);
}

static void pn_qdw_task(void *ctx, int64_t task, void *ws, size_t ws_bytes) {
    (void)ws;
    (void)ws_bytes;
    const pn_qconv_ctx *cx = (const pn_qconv_ctx *)ctx;
    const pn_qconv2d_desc *qd = cx->d;
    const pn_conv2d_desc *d = &qd->conv;
    const pn_kernels *kern = pn_kernels_active();
    const int64_t in_hw = (int64_t)d->in_h * d->in_w, out_hw = (int64_t)d->out_h * d->out_w;
    const int64_t khw = (int64_t)d->kernel_h * d->kernel_w, zx = qd->x_zero_point;
    const int64_t p0 = task * cx->per_task, p1 = PN_MIN(cx->planes, p0 + cx->per_task);
    enum { CHUNK = 256 };
    int32_t acc[CHUNK];
    for (int64_t plane = p0; plane < p1; plane++) {
        const int64_t c = plane % d->out_channels;
        const int8_t *x = cx->x + plane * in_hw;
        const int8_t *w = cx->packed + c * khw;
        int8_t *y = cx->y + plane * out_hw;
        const int32_t bias = cx->bias ? cx->bias[c] : 0;
        pn_requant_args ra;
        ra.add = &bias;
        ra.add_stride = 0;
        ra.mul = cx->mul + c;
        ra.mul_stride = 0;
        ra.zp = qd->y_zero_point;
        ra.lo = qd->act_min;
        ra.hi = qd->act_max;
        for (int64_t oy = 0; oy < d->out_h; oy++) {
            const int64_t iy0 = oy * d->stride_h - d->pad_top;
            for (int64_t ox0 = 0; ox0 < d->out_w; ox0 += CHUNK) {
                const int64_t nw = PN_MIN((int64_t)CHUNK, d->out_w - ox0);
                for (int64_t t = 0; t < nw; t++) acc[t] = 0;
                for (int64_t ky = 0; ky < d->kernel_h; ky++) {
                    const int64_t iy = iy0 + ky * d->dilation_h;
                    if (iy < 0 || iy >= d->in_h) continue;
                    const int8_t *row = x + iy * d->in_w;
                    for (int64_t kx = 0; kx < d->kernel_w; kx++) {
                        const int32_t wv = w[ky * d->kernel_w + kx];
                        const int64_t off = kx * d->dilation_w - d->pad_left;
                        for (int64_t t = 0; t < nw; t++) {
                            const int64_t ix = (ox0 + t) * d->stride_w + off;
                            if (ix >= 0 && ix < d->in_w)
                                acc[t] += ((int32_t)row[ix] - (int32_t)zx) * wv;
                        }
                    }
                }
                kern->requant(acc, nw, &ra, y + oy * d->out_w + ox0);
            }
        }
    }
}

void pn_qconv2d(pn_pool *pool, const pn_qconv2d_desc *qd, const int8_t *x, const int8_t *packed,
                const int32_t *bias, const float *multiplier, int8_t *y, void *scratch) {
    (void)scratch;
    const pn_conv2d_desc *d = &qd->conv;
    if (d->batch <= 0 || d->out_channels <= 0 || d->out_h <= 0 || d->out_w <= 0) return;
    pn_qconv_ctx cx;
    memset(&cx, 0, sizeof cx);
    cx.d = qd;
    cx.x = x;
    cx.packed = packed;
    cx.bias = bias;
    cx.mul = multiplier;
    cx.y = y;
    const int32_t threads = pn_pool_effective_threads(pool);
    if (pn_qconv_is_depthwise(d) && pn_qdw_supported(d)) {
        pn_qconv2d_depthwise(pool, qd, x, (const float *)(const void *)packed, bias, multiplier, y);
        return;
    }
    if (pn_qconv_is_depthwise(d)) { /* kernels of more than 518 taps: exact int32 loops */
        cx.planes = (int64_t)d->batch * d->out_channels;
        const int64_t work = cx.planes * d->out_h * d->out_w * d->kernel_h * d->kernel_w;
        const int64_t tasks = threads == 1 || work < 65536 ? 1 : PN_MIN(cx.planes, threads * 4);
        cx.per_task = pn_ceil_div(cx.planes, tasks);
        pn_parallel_for(pool, pn_ceil_div(cx.planes, cx.per_task), pn_qdw_task, &cx);
        return;
    }
    const int64_t groups_total = (int64_t)d->batch * d->groups;
    const int64_t co_g = d->out_channels / d->groups, ci_g = d->in_channels / d->groups;
    const int64_t K = ci_g * d->kernel_h * d->kernel_w;
    cx.s = pn_split_2d(co_g, (int64_t)d->out_h * d->out_w, K,
                       groups_total >= 2 * threads ? 1 : threads, PN_QMR, PN_QNR);
    pn_parallel_for(pool, groups_total * cx.s.row_chunks * cx.s.col_chunks, pn_qconv_task, &cx);
}

/* ---- pn_qgemm ---- */

typedef struct {
    pn_qgemm_problem p;
    pn_split s;
} pn_qgemm_ctx;

static void pn_qgemm_task(void *ctx, int64_t task, void *ws, size_t ws_bytes) {
    const pn_qgemm_ctx *g = (const pn_qgemm_ctx *)ctx;
    const int64_t rc = task / g->s.col_chunks, cc = task % g->s.col_chunks;
    const int64_t m0 = rc * g->s.rows_per_chunk, n0 = cc * g->s.cols_per_chunk;
    pn_qgemm_block(&g->p, m0, PN_MIN(g->p.m, m0 + g->s.rows_per_chunk), n0,
                   PN_MIN(g->p.n, n0 + g->s.cols_per_chunk), ws, ws_bytes);
}

void pn_qgemm(pn_pool *pool, const pn_qgemm_desc *d, const int8_t *a, const int8_t *packed,
              const int32_t *bias, const float *multiplier, int8_t *y) {
    if (d->m <= 0 || d->n <= 0) return;
    pn_qgemm_ctx g;
    memset(&g, 0, sizeof g);
    pn_qgemm_problem *p = &g.p;
    p->m = d->m;
    p->n = d->n;
    p->k = d->k;
    p->kpad = pn_qkpad(d->k);
    p->a = a;
    p->lda = d->k;
    p->b_packed = (const pn_qv *)(const void *)(packed + pn_qheader(d->n));
    p->y = y;
    p->ldy = d->n;
    p->per_row = 0;
    p->bias = bias;
    p->wsum = (const int32_t *)(const void *)packed;
    p->mul = multiplier;
    p->x_zp = d->x_zero_point;
    p->y_zp = d->y_zero_point;
    p->lo = d->act_min;
    p->hi = d->act_max;
    g.s = pn_split_2d(d->m, d->n, d->k, pn_pool_effective_threads(pool), PN_QMR, PN_QNR);
    pn_parallel_for(pool, g.s.row_chunks * g.s.col_chunks, pn_qgemm_task, &g);
}
