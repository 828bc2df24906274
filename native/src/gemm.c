/* gemm.c: the fp32 GEMM driver (packing, cache blocking, tasks), the generic microkernel, and
 * pn_gemm / pn_matmul.
 *
 * Layout (Goto/BLIS): the left operand is read from MR-row panels, [k][MR] contiguous; the right
 * operand from NR-column panels, [k][NR] (or straight from a row-major matrix when a whole panel
 * fits). Constant operands (conv weights on the left, Gemm weights on the right) are packed once
 * over their whole depth, so any depth block pc..pc+kc of a panel is at panel + pc * width.
 */
#include <string.h>

#include "pn_internal.h"

/* Strips and edge tiles copy runs of a few dozen floats: plain (vectorised) loops beat calls to
   memcpy/memset, into which GCC would otherwise turn them. */
#pragma GCC optimize("no-tree-loop-distribute-patterns")

void pn_sgemm_ukr_generic(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                          int64_t ldc, const pn_ukr_args *args) {
    float acc[PN_MR][PN_NR];
    if (args->first) {
        for (int i = 0; i < PN_MR; i++)
            for (int j = 0; j < PN_NR; j++)
                acc[i][j] = (args->bias_row ? args->bias_row[i] : 0.0f) +
                            (args->bias_col ? args->bias_col[j] : 0.0f);
    } else {
        for (int i = 0; i < PN_MR; i++)
            for (int j = 0; j < PN_NR; j++) acc[i][j] = c[i * ldc + j];
    }
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = args->boff ? b + args->boff[k] : b + k * ldb;
        for (int i = 0; i < PN_MR; i++) {
            const float av = a[i];
            for (int j = 0; j < PN_NR; j++) acc[i][j] += av * bk[j];
        }
        a += PN_MR;
    }
    if (args->last) {
        const pn_epi *e = args->epi;
        if (e->clamp) {
            for (int i = 0; i < PN_MR; i++)
                for (int j = 0; j < PN_NR; j++) {
                    float v = acc[i][j];
                    v = v < e->lo ? e->lo : v;
                    acc[i][j] = v > e->hi ? e->hi : v;
                }
        } else if (e->kind == PN_ACT_LEAKY_RELU) {
            for (int i = 0; i < PN_MR; i++)
                for (int j = 0; j < PN_NR; j++)
                    acc[i][j] = acc[i][j] < 0.0f ? acc[i][j] * e->alpha : acc[i][j];
        }
    }
    for (int i = 0; i < PN_MR; i++)
        for (int j = 0; j < PN_NR; j++) c[i * ldc + j] = acc[i][j];
}

void pn_im2col_pack(const pn_im2col_geom *g, int64_t pc, int64_t kc, int64_t jb, int64_t nb,
                    float *dst);

/* Packs rows [row, row+MR) x depth [pc, pc+kc) of a raw left operand into one MR panel. */
static void pn_pack_a_panel(const pn_sgemm_problem *p, int64_t row, int64_t pc, int64_t kc,
                            float *dst) {
    const int64_t rows = PN_MIN((int64_t)PN_MR, p->m - row);
    const float *a = p->a + row * p->a_rs + pc * p->a_cs;
    if (p->a_rs == 1) {
        for (int64_t kk = 0; kk < kc; kk++) {
            const float *src = a + kk * p->a_cs;
            int64_t i = 0;
            for (; i < rows; i++) dst[kk * PN_MR + i] = src[i];
            for (; i < PN_MR; i++) dst[kk * PN_MR + i] = 0.0f;
        }
        return;
    }
    for (int64_t i = 0; i < PN_MR; i++) {
        if (i < rows) {
            const float *src = a + i * p->a_rs;
            for (int64_t kk = 0; kk < kc; kk++) dst[kk * PN_MR + i] = src[kk * p->a_cs];
        } else {
            for (int64_t kk = 0; kk < kc; kk++) dst[kk * PN_MR + i] = 0.0f;
        }
    }
}

/* Packs columns [col, col+NR) x depth [pc, pc+kc) of a raw right operand into one NR panel. */
static void pn_pack_b_panel(const pn_sgemm_problem *p, int64_t col, int64_t pc, int64_t kc,
                            float *dst) {
    const int64_t cols = PN_MIN((int64_t)PN_NR, p->n - col);
    const float *b = p->b + pc * p->b_rs + col * p->b_cs;
    for (int64_t kk = 0; kk < kc; kk++) {
        const float *src = b + kk * p->b_rs;
        float *d = dst + kk * PN_NR;
        int64_t j = 0;
        if (p->b_cs == 1)
            for (; j < cols; j++) d[j] = src[j];
        else
            for (; j < cols; j++) d[j] = src[j * p->b_cs];
        for (; j < PN_NR; j++) d[j] = 0.0f;
    }
}

/* Implicit im2col for stride-1 convolutions: a group of output columns that lies in one output row
   reads row k = (c, ky, kx) of Xcol as a contiguous run of the image (interior groups), or of a
   small zero-padded copy of the rows it needs (a "strip", for groups touching the padding): kw
   times less copying than im2col, which remains for the rest (rows straddled, strided). */
static int pn_group_in_row(const pn_im2col_geom *g, int64_t col, int64_t width) {
    return col % g->out_w + width <= g->out_w;
}

/* The image itself, when every tap of the group is inside it. */
static int pn_implicit_base(const pn_im2col_geom *g, int64_t col, int64_t width, const float **base) {
    const int64_t oy = col / g->out_w, ox0 = col % g->out_w;
    const int64_t ix0 = ox0 - g->pad_left;
    if (ix0 < 0 || ix0 + width - 1 + (int64_t)(g->kernel_w - 1) * g->dilation_w >= g->in_w) return 0;
    const int64_t iy0 = oy * g->stride_h - g->pad_top;
    if (iy0 < 0 || iy0 + (int64_t)(g->kernel_h - 1) * g->dilation_h >= g->in_h) return 0;
    *base = g->x + iy0 * g->in_w + ix0;
    return 1;
}

/* Rows (c, ky) for c in [c0, c1) of the group, each `stripw` wide, zero outside the image. */
static void pn_build_strip(const pn_im2col_geom *g, int64_t col, int64_t c0, int64_t c1,
                           int64_t stripw, float *strip) {
    const int64_t oy = col / g->out_w, ox0 = col % g->out_w;
    const int64_t ix0 = ox0 - g->pad_left;
    const int64_t lo = PN_MIN(stripw, PN_MAX((int64_t)0, -ix0));
    const int64_t hi = PN_MAX(lo, PN_MIN(stripw, (int64_t)g->in_w - ix0));
    for (int64_t c = c0; c < c1; c++)
        for (int64_t ky = 0; ky < g->kernel_h; ky++) {
            float *dst = strip + ((c - c0) * g->kernel_h + ky) * stripw;
            const int64_t iy = oy * g->stride_h - g->pad_top + ky * g->dilation_h;
            if (iy < 0 || iy >= g->in_h) {
                for (int64_t t = 0; t < stripw; t++) dst[t] = 0.0f;
                continue;
            }
            const float *src = g->x + (c * g->in_h + iy) * g->in_w + ix0;
            for (int64_t t = 0; t < lo; t++) dst[t] = 0.0f;
            for (int64_t t = lo; t < hi; t++) dst[t] = src[t];
            for (int64_t t = hi; t < stripw; t++) dst[t] = 0.0f;
        }
}

/* A raw right operand is read in place (no packing) when at most this many row panels use each
   of its panels; with more, packing once is cheaper than strided reads over and over. */
#define PN_DIRECT_MAX_ROW_PANELS 16

/* Where one group of panels of the right operand is read from, for the current depth block. */
typedef struct {
    const float *b;
    int64_t ldb, bstride;
    const int64_t *boff;
} pn_bgroup;

void pn_sgemm_block(const pn_sgemm_problem *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                    void *workspace, size_t workspace_bytes) {
    const pn_kernels *kern = pn_kernels_active();
    const int64_t np = kern->sgemm_panels;
    const int64_t gw = np * PN_NR; /* columns of a whole group */
    pn_epi epi;
    pn_epi_from_act(p->act, &epi);

    /* The workspace (the pool's, or a NULL pool's small stack buffer) holds a packed block of the
       right operand (bbuf) and one of the left operand or the strips (abuf). */
    const size_t floats = workspace_bytes / sizeof(float);
    const int small = (size_t)PN_KC * (PN_NCB + PN_MCB) > floats;
    const int64_t bbuf_floats = small ? PN_KC * gw : (int64_t)PN_KC * PN_NCB;
    const int64_t mcb = small ? PN_MR : PN_MCB;
    float *bbuf = (float *)workspace;
    float *abuf = bbuf + bbuf_floats;
    const int64_t abuf_floats = mcb * PN_KC;

    const int64_t K = p->k;
    const int64_t row_panels = pn_ceil_div(m1 - m0, PN_MR);
    const int implicit = p->b_kind == PN_B_IM2COL && p->im.stride_w == 1;
    const int64_t khw = (int64_t)p->im.kernel_h * p->im.kernel_w;
    /* Strips go where a raw left operand would be packed (conv weights never are), one per
       group of the block; a depth block spans at most KC / khw + 2 channels. */
    const int64_t stripw = gw + (int64_t)(p->im.kernel_w - 1) * p->im.dilation_w;
    const int64_t strip_floats =
        pn_round_up((PN_KC / PN_MAX(khw, 1) + 2) * p->im.kernel_h * stripw, 16);
    const int strips = implicit && p->a_packed && strip_floats <= abuf_floats;
    const int direct =
        p->b_kind == PN_B_RAW && p->b_cs == 1 && row_panels <= PN_DIRECT_MAX_ROW_PANELS;
    const int packs_b = p->b_kind == PN_B_IM2COL || (p->b_kind == PN_B_RAW && !direct);
    int64_t boffs[PN_KC], soffs[PN_KC];
    pn_bgroup groups[PN_NCB_MAX / PN_NR];

    for (int64_t pc = 0; pc < K; pc += PN_KC) {
        const int64_t kc = PN_MIN((int64_t)PN_KC, K - pc);
        /* Columns per block: what every row panel sweeps while this depth block of B stays in
           L2 (the shallower the depth, the wider: C then goes out in long runs per row), within
           the buffers that hold packed panels or strips. */
        int64_t ncb = PN_MIN((int64_t)PN_NCB_MAX, PN_L2_FLOATS / kc);
        if (packs_b) ncb = PN_MIN(ncb, bbuf_floats / kc);
        if (strips) ncb = PN_MIN(ncb, abuf_floats / strip_floats * gw);
        ncb = PN_MAX(gw, ncb / gw * gw);
        pn_ukr_args args;
        args.first = pc == 0;
        args.last = pc + kc == K;
        args.epi = &epi;
        const int64_t c0 = implicit ? pc / khw : 0, c1 = implicit ? (pc + kc - 1) / khw + 1 : 0;
        if (implicit) {
            const pn_im2col_geom *g = &p->im;
            for (int64_t kk = 0; kk < kc; kk++) {
                const int64_t k = pc + kk, c = k / khw, r = k % khw;
                const int64_t ky = r / g->kernel_w, kx = r % g->kernel_w;
                boffs[kk] = c * g->in_h * g->in_w + ky * g->dilation_h * g->in_w + kx * g->dilation_w;
                soffs[kk] = ((c - c0) * g->kernel_h + ky) * stripw + kx * g->dilation_w;
            }
        }
        for (int64_t jb = n0; jb < n1; jb += ncb) {
            const int64_t nb = PN_MIN(ncb, n1 - jb);
            const int64_t npanels = pn_ceil_div(nb, PN_NR);
            const int64_t ngroups = pn_ceil_div(npanels, np);
            /* Where each group of this block comes from (gathering what must be gathered). */
            for (int64_t gi = 0; gi < ngroups; gi++) {
                const int64_t q = gi * np, w = PN_MIN(np, npanels - q);
                const int64_t col = jb + q * PN_NR, nr = PN_MIN(w * PN_NR, p->n - col);
                pn_bgroup *bg = &groups[gi];
                /* Reading B in place, only the ragged last group is packed: into the first slot. */
                float *slot = direct ? bbuf : bbuf + q * kc * PN_NR;
                const float *base;
                bg->b = slot;
                bg->ldb = PN_NR;
                bg->bstride = kc * PN_NR;
                bg->boff = NULL;
                if (p->b_kind == PN_B_PACKED) {
                    bg->b = p->b_packed + (col / PN_NR) * K * PN_NR + pc * PN_NR;
                    bg->bstride = K * PN_NR;
                } else if (p->b_kind == PN_B_IM2COL) {
                    const int whole = w == np && pn_group_in_row(&p->im, col, gw);
                    if (implicit && whole && pn_implicit_base(&p->im, col, gw, &base)) {
                        bg->b = base;
                        bg->boff = boffs;
                        bg->bstride = PN_NR;
                    } else if (strips && whole) {
                        float *strip = abuf + gi * strip_floats;
                        pn_build_strip(&p->im, col, c0, c1, stripw, strip);
                        bg->b = strip;
                        bg->boff = soffs;
                        bg->bstride = PN_NR;
                    } else {
                        pn_im2col_pack(&p->im, pc, kc, col, nr, slot);
                    }
                } else if (direct && nr == w * PN_NR) {
                    bg->b = p->b + pc * p->b_rs + col;
                    bg->ldb = p->b_rs;
                    bg->bstride = PN_NR;
                } else {
                    for (int64_t v = 0; v < w; v++)
                        pn_pack_b_panel(p, col + v * PN_NR, pc, kc, slot + v * kc * PN_NR);
                }
            }
            for (int64_t ib = m0; ib < m1; ib += mcb) {
                const int64_t mb = PN_MIN(mcb, m1 - ib);
                const int64_t mpanels = pn_ceil_div(mb, PN_MR);
                if (!p->a_packed)
                    for (int64_t r = 0; r < mpanels; r++)
                        pn_pack_a_panel(p, ib + r * PN_MR, pc, kc, abuf + r * kc * PN_MR);
                /* Rows outer: one row panel (in L1) sweeps every group of the block (in L2), so
                   C is written in long runs per row; measured faster than groups outer, most of
                   all for shallow depths where the tile stores dominate. */
                /* Kernels with two_panels take two row panels at once where both exist (twice
                   the FMAs per load of B). */
                for (int64_t r = 0; r < mpanels; r += 1 + (kern->two_row_panels && r + 1 < mpanels))
                    for (int64_t gi = 0; gi < ngroups; gi++) {
                        const pn_bgroup *bg = &groups[gi];
                        const int64_t q = gi * np, w = PN_MIN(np, npanels - q);
                        const int64_t col = jb + q * PN_NR, nr = PN_MIN(w * PN_NR, p->n - col);
                        const pn_sgemm_ukr_fn ukr =
                            w == np || kern->cols_partial ? kern->sgemm_ukr : kern->sgemm_ukr1;
                        const int64_t row = ib + r * PN_MR;
                        const int64_t panels = kern->two_row_panels && r + 1 < mpanels ? 2 : 1;
                        const int64_t mr = PN_MIN(panels * PN_MR, p->m - row);
                        const float *ap = p->a_packed
                                              ? p->a_packed + (row / PN_MR) * K * PN_MR + pc * PN_MR
                                              : abuf + r * kc * PN_MR;
                        args.a2 = p->a_packed ? ap + K * PN_MR : ap + kc * PN_MR;
                        float *c = p->c + row * p->ldc + col;
                        args.boff = bg->boff;
                        args.bstride = bg->bstride;
                        args.rows = PN_MR;
                        args.cols = (int32_t)(w * PN_NR);
                        if ((mr == PN_MR || kern->rows_partial) &&
                            (nr == w * PN_NR || kern->cols_partial)) {
                            args.rows = (int32_t)mr;
                            args.cols = (int32_t)nr;
                            args.bias_row = p->bias_row ? p->bias_row + row : NULL;
                            args.bias_col = p->bias_col ? p->bias_col + col : NULL;
                            ukr(kc, ap, bg->b, bg->ldb, c, p->ldc, &args);
                        } else {
                            /* Edge tile: compute a whole tile aside, keep the part that exists. */
                            enum { TW = 2 * PN_NR };
                            float tile[PN_MR * TW] __attribute__((aligned(PN_ALIGN)));
                            float brow[PN_MR], bcol[TW];
                            const int64_t tw = w * PN_NR;
                            if (!args.first)
                                for (int64_t t = 0; t < mr; t++)
                                    for (int64_t j = 0; j < nr; j++) tile[t * tw + j] = c[t * p->ldc + j];
                            args.bias_row = NULL;
                            args.bias_col = NULL;
                            if (p->bias_row) {
                                for (int64_t t = 0; t < PN_MR; t++)
                                    brow[t] = t < mr ? p->bias_row[row + t] : 0.0f;
                                args.bias_row = brow;
                            }
                            if (p->bias_col) {
                                for (int64_t t = 0; t < tw; t++)
                                    bcol[t] = t < nr ? p->bias_col[col + t] : 0.0f;
                                args.bias_col = bcol;
                            }
                            ukr(kc, ap, bg->b, bg->ldb, tile, tw, &args);
                            for (int64_t t = 0; t < mr; t++)
                                for (int64_t j = 0; j < nr; j++) c[t * p->ldc + j] = tile[t * tw + j];
                        }
                        if (args.last && epi.post) pn_act_rows(p->act, c, p->ldc, mr, nr);
                    }
            }
        }
    }
}

pn_split pn_split_2d(int64_t m, int64_t n, int64_t k, int32_t threads, int64_t mr, int64_t nr) {
    pn_split s;
    const int64_t mp = pn_ceil_div(m, mr), np = pn_ceil_div(n, nr);
    s.row_chunks = s.col_chunks = 1;
    s.rows_per_chunk = mp * mr;
    s.cols_per_chunk = np * nr;
    /* Below ~64k multiply-adds a wake-up of the workers costs more than it saves. */
    if (threads <= 1 || m * n * k < 65536) return s;
    /* A few tasks per thread balance the load when a core is shared with something else. Wide
       outputs are cut into column chunks (each task then gathers only its own columns of B);
       narrow ones (7x7, 14x14 feature maps) into row chunks over all columns, since a column
       chunk of a narrow output would be a ragged edge group. */
    const int64_t target = (int64_t)threads * 3;
    int64_t cc, rc;
    if (np >= 2 * (int64_t)threads) {
        cc = PN_MIN(np, target);
        rc = PN_MIN(mp, pn_ceil_div(target, cc));
    } else {
        cc = 1;
        rc = PN_MIN(mp, target);
    }
    s.rows_per_chunk = pn_ceil_div(mp, rc) * mr;
    s.cols_per_chunk = pn_ceil_div(np, cc) * nr;
    s.row_chunks = pn_ceil_div(m, s.rows_per_chunk);
    s.col_chunks = pn_ceil_div(n, s.cols_per_chunk);
    return s;
}

/* Column granularity of tasks: whole groups of panels, as the active kernel consumes them. */
int64_t pn_sgemm_task_cols(void) { return pn_kernels_active()->sgemm_panels * (int64_t)PN_NR; }

/* ---- pn_gemm: constant right operand ---- */

int64_t pn_gemm_packed_floats(int32_t k, int32_t n) {
    return pn_round_up(n, PN_NR) * (int64_t)k;
}

void pn_gemm_pack(int32_t k, int32_t n, const float *b, int32_t trans_b, float *packed) {
    const int64_t panels = pn_ceil_div(n, PN_NR);
    for (int64_t q = 0; q < panels; q++) {
        float *dst = packed + q * (int64_t)k * PN_NR;
        for (int64_t kk = 0; kk < k; kk++)
            for (int64_t j = 0; j < PN_NR; j++) {
                const int64_t col = q * PN_NR + j;
                float v = 0.0f;
                if (col < n) v = trans_b ? b[col * k + kk] : b[kk * n + col];
                dst[kk * PN_NR + j] = v;
            }
    }
}

typedef struct {
    pn_sgemm_problem p; /* batch 0; the others are offsets from it */
    pn_split s;
    int64_t a_batch_stride, b_batch_stride, c_batch_stride;
} pn_gemm_ctx;

static void pn_gemm_task(void *ctx, int64_t task, void *ws, size_t ws_bytes) {
    const pn_gemm_ctx *g = (const pn_gemm_ctx *)ctx;
    const int64_t per_batch = g->s.row_chunks * g->s.col_chunks;
    const int64_t batch = task / per_batch, rest = task % per_batch;
    const int64_t rc = rest / g->s.col_chunks, cc = rest % g->s.col_chunks;
    pn_sgemm_problem p = g->p;
    p.a += batch * g->a_batch_stride;
    if (p.b) p.b += batch * g->b_batch_stride;
    p.c += batch * g->c_batch_stride;
    const int64_t m0 = rc * g->s.rows_per_chunk, n0 = cc * g->s.cols_per_chunk;
    pn_sgemm_block(&p, m0, PN_MIN(p.m, m0 + g->s.rows_per_chunk), n0,
                   PN_MIN(p.n, n0 + g->s.cols_per_chunk), ws, ws_bytes);
}

static void pn_fill_act(float *y, int64_t m, int64_t n, const float *bias, const pn_act *act) {
    /* k == 0: the product is empty, Y is bias (then the activation). */
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) y[i * n + j] = bias ? bias[j] : 0.0f;
    pn_act_rows(act, y, n, m, n);
}

void pn_gemm(pn_pool *pool, const pn_gemm_desc *d, const float *a, const float *packed,
             const float *bias, float *y) {
    if (d->m <= 0 || d->n <= 0) return;
    if (d->k <= 0) {
        pn_fill_act(y, d->m, d->n, bias, &d->act);
        return;
    }
    pn_gemm_ctx g;
    memset(&g, 0, sizeof g);
    g.p.m = d->m;
    g.p.n = d->n;
    g.p.k = d->k;
    g.p.a = a;
    g.p.a_rs = d->trans_a ? 1 : d->k;
    g.p.a_cs = d->trans_a ? d->m : 1;
    g.p.b_kind = PN_B_PACKED;
    g.p.b_packed = packed;
    g.p.c = y;
    g.p.ldc = d->n;
    g.p.bias_col = bias;
    g.p.act = &d->act;
    g.s = pn_split_2d(d->m, d->n, d->k, pn_pool_effective_threads(pool), PN_MR,
                      pn_sgemm_task_cols());
    pn_parallel_for(pool, g.s.row_chunks * g.s.col_chunks, pn_gemm_task, &g);
}

void pn_matmul(pn_pool *pool, int64_t batch, int32_t m, int32_t n, int32_t k, const float *a,
               int64_t a_batch_stride, const float *b, int64_t b_batch_stride, float *y) {
    if (batch <= 0 || m <= 0 || n <= 0) return;
    if (k <= 0) {
        memset(y, 0, (size_t)(batch * m * n) * sizeof(float));
        return;
    }
    static const pn_act none = {PN_ACT_NONE, 0.0f, 0.0f};
    pn_gemm_ctx g;
    memset(&g, 0, sizeof g);
    g.p.m = m;
    g.p.n = n;
    g.p.k = k;
    g.p.a = a;
    g.p.a_rs = k;
    g.p.a_cs = 1;
    g.p.b_kind = PN_B_RAW;
    g.p.b = b;
    g.p.b_rs = n;
    g.p.b_cs = 1;
    g.p.c = y;
    g.p.ldc = n;
    g.p.act = &none;
    g.a_batch_stride = a_batch_stride;
    g.b_batch_stride = b_batch_stride;
    g.c_batch_stride = (int64_t)m * n;
    const int32_t threads = pn_pool_effective_threads(pool);
    /* With enough matrices, one task per matrix; otherwise cut each one. */
    g.s = pn_split_2d(m, n, k, batch >= 2 * threads ? 1 : threads, PN_MR, pn_sgemm_task_cols());
    pn_parallel_for(pool, batch * g.s.row_chunks * g.s.col_chunks, pn_gemm_task, &g);
}
