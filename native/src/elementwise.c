/* elementwise.c: broadcasting binary ops, pooling, softmax, transpose and concat (fp32, generic C99
 * written so that the compiler vectorises the inner loops). */
#include <math.h>
#include <string.h>

#include "pn_internal.h"

/* ---- binary with broadcast strides ---- */

#define PN_BIN_LOOP(EXPR)                                                                 \
    do {                                                                                  \
        if (sa == 1 && sb == 1)                                                           \
            for (int64_t i = 0; i < n; i++) {                                             \
                const float u = a[i], v = b[i];                                           \
                y[i] = (EXPR);                                                            \
            }                                                                             \
        else if (sa == 1 && sb == 0) {                                                    \
            const float v = b[0];                                                         \
            for (int64_t i = 0; i < n; i++) {                                             \
                const float u = a[i];                                                     \
                y[i] = (EXPR);                                                            \
            }                                                                             \
        } else if (sa == 0 && sb == 1) {                                                  \
            const float u = a[0];                                                         \
            for (int64_t i = 0; i < n; i++) {                                             \
                const float v = b[i];                                                     \
                y[i] = (EXPR);                                                            \
            }                                                                             \
        } else                                                                            \
            for (int64_t i = 0; i < n; i++) {                                             \
                const float u = a[i * sa], v = b[i * sb];                                 \
                y[i] = (EXPR);                                                            \
            }                                                                             \
    } while (0)

static void pn_binary_row(int32_t op, int64_t n, const float *a, int64_t sa, const float *b,
                          int64_t sb, float *y) {
    switch (op) {
        case PN_ADD: PN_BIN_LOOP(u + v); break;
        case PN_MUL: PN_BIN_LOOP(u * v); break;
        case PN_SUB: PN_BIN_LOOP(u - v); break;
        case PN_DIV: PN_BIN_LOOP(u / v); break;
        default: break;
    }
}

void pn_binary(int32_t op, int32_t ndim, const int64_t *out_shape, const float *a,
               const int64_t *a_strides, const float *b, const int64_t *b_strides, float *y,
               const pn_act *act) {
    /* Collapse: drop size-1 axes, merge an axis into the next when every operand steps through
       both as through one (so a bias over [N, C, 1, 1] becomes one long inner loop per channel). */
    int64_t shape[PN_MAX_DIMS], sa[PN_MAX_DIMS], sb[PN_MAX_DIMS], sy[PN_MAX_DIMS];
    int64_t total = 1;
    int nd = 0;
    if (ndim > PN_MAX_DIMS) return;
    for (int d = 0; d < ndim; d++) {
        if (out_shape[d] <= 0) return;
        total *= out_shape[d];
    }
    /* contiguous strides of y */
    int64_t ys[PN_MAX_DIMS];
    {
        int64_t s = 1;
        for (int d = ndim - 1; d >= 0; d--) {
            ys[d] = s;
            s *= out_shape[d];
        }
    }
    for (int d = 0; d < ndim; d++) {
        if (out_shape[d] == 1) continue;
        if (nd > 0 && sa[nd - 1] == a_strides[d] * out_shape[d] &&
            sb[nd - 1] == b_strides[d] * out_shape[d] && sy[nd - 1] == ys[d] * out_shape[d]) {
            shape[nd - 1] *= out_shape[d];
            sa[nd - 1] = a_strides[d];
            sb[nd - 1] = b_strides[d];
            sy[nd - 1] = ys[d];
            continue;
        }
        shape[nd] = out_shape[d];
        sa[nd] = a_strides[d];
        sb[nd] = b_strides[d];
        sy[nd] = ys[d];
        nd++;
    }
    if (nd == 0) {
        shape[0] = 1;
        sa[0] = sb[0] = 0;
        sy[0] = 1;
        nd = 1;
    }
    const int64_t inner = shape[nd - 1];
    const int64_t rows = total / inner;
    const int need_act = act && act->kind != PN_ACT_NONE;
    const pn_kernels *kern = pn_kernels_active();
    int64_t idx[PN_MAX_DIMS] = {0};
    int64_t oa = 0, ob = 0, oy = 0;
    for (int64_t r = 0; r < rows; r++) {
        float *yr = y + oy;
        pn_binary_row(op, inner, a + oa, sa[nd - 1], b + ob, sb[nd - 1], yr);
        if (need_act) kern->act(act, yr, yr, inner);
        for (int d = nd - 2; d >= 0; d--) {
            idx[d]++;
            oa += sa[d];
            ob += sb[d];
            oy += sy[d];
            if (idx[d] < shape[d]) break;
            oa -= sa[d] * shape[d];
            ob -= sb[d] * shape[d];
            oy -= sy[d] * shape[d];
            idx[d] = 0;
        }
    }
}

/* ---- pooling ---- */

typedef struct {
    const pn_pool2d_desc *d;
    const float *x;
    float *y;
    int64_t planes, per_task;
    int32_t avg;
} pn_pool_ctx;

/* One output with bounds checks (the borders). */
static float pn_pool_one(const pn_pool2d_desc *d, const float *x, int64_t oy, int64_t ox, int avg) {
    const int64_t iy0 = oy * d->stride_h - d->pad_top, ix0 = ox * d->stride_w - d->pad_left;
    float m = -INFINITY, s = 0.0f;
    int64_t count = 0;
    for (int64_t ky = 0; ky < d->kernel_h; ky++) {
        const int64_t iy = iy0 + ky * d->dilation_h;
        if (iy < 0 || iy >= d->in_h) continue;
        for (int64_t kx = 0; kx < d->kernel_w; kx++) {
            const int64_t ix = ix0 + kx * d->dilation_w;
            if (ix < 0 || ix >= d->in_w) continue;
            const float v = x[iy * d->in_w + ix];
            s += v;
            count++;
            m = v > m || v != v ? v : m;
            if (m != m && !avg) return m; /* NaN wins, as in NumPy's max */
        }
    }
    if (!avg) return m;
    const int64_t div = d->count_include_pad ? (int64_t)d->kernel_h * d->kernel_w : count;
    return div > 0 ? s / (float)div : NAN;
}

/* A plane: border outputs one by one; for the interior columns of each output row, whole rows of
   taps at a time (branch-free inner loops the compiler vectorises) into `acc` (capacity floats;
   rows wider than that go one by one too). */
static void pn_pool_plane(const pn_pool2d_desc *d, const float *x, float *y, int avg, float *acc,
                          int64_t capacity) {
    const int64_t sw = d->stride_w, dw = d->dilation_w, pl = d->pad_left;
    /* interior columns: ox * sw - pl >= 0 and ox * sw - pl + (kw - 1) * dw <= in_w - 1 */
    int64_t lo = pn_ceil_div(pl, sw);
    const int64_t last = (int64_t)d->in_w - 1 - (int64_t)(d->kernel_w - 1) * dw + pl;
    int64_t hi = last < 0 ? 0 : last / sw + 1;
    hi = PN_MIN(hi, (int64_t)d->out_w);
    lo = PN_MIN(lo, hi);
    if (hi - lo > capacity) hi = lo;
    for (int64_t oy = 0; oy < d->out_h; oy++) {
        float *yr = y + oy * d->out_w;
        for (int64_t ox = 0; ox < lo; ox++) yr[ox] = pn_pool_one(d, x, oy, ox, avg);
        for (int64_t ox = hi; ox < d->out_w; ox++) yr[ox] = pn_pool_one(d, x, oy, ox, avg);
        if (hi <= lo) continue;
        const int64_t n = hi - lo;
        for (int64_t i = 0; i < n; i++) acc[i] = avg ? 0.0f : -INFINITY;
        int64_t rows = 0;
        for (int64_t ky = 0; ky < d->kernel_h; ky++) {
            const int64_t iy = oy * d->stride_h - d->pad_top + ky * d->dilation_h;
            if (iy < 0 || iy >= d->in_h) continue;
            rows++;
            for (int64_t kx = 0; kx < d->kernel_w; kx++) {
                const float *src = x + iy * d->in_w + lo * sw - pl + kx * dw;
                if (avg)
                    for (int64_t i = 0; i < n; i++) acc[i] += src[i * sw];
                else
                    for (int64_t i = 0; i < n; i++) {
                        const float v = src[i * sw];
                        acc[i] = v > acc[i] || v != v ? v : acc[i];
                    }
            }
        }
        if (avg) {
            const int64_t div = d->count_include_pad ? (int64_t)d->kernel_h * d->kernel_w
                                                     : rows * d->kernel_w;
            for (int64_t i = 0; i < n; i++) yr[lo + i] = div > 0 ? acc[i] / (float)div : NAN;
        } else {
            for (int64_t i = 0; i < n; i++) yr[lo + i] = acc[i];
        }
    }
}

static void pn_pool_task(void *ctx, int64_t task, void *ws, size_t ws_bytes) {
    const pn_pool_ctx *cx = (const pn_pool_ctx *)ctx;
    const pn_pool2d_desc *d = cx->d;
    const int64_t in_hw = (int64_t)d->in_h * d->in_w, out_hw = (int64_t)d->out_h * d->out_w;
    const int64_t p0 = task * cx->per_task, p1 = PN_MIN(cx->planes, p0 + cx->per_task);
    const int64_t capacity = (int64_t)(ws_bytes / sizeof(float));
    for (int64_t p = p0; p < p1; p++)
        pn_pool_plane(d, cx->x + p * in_hw, cx->y + p * out_hw, cx->avg, (float *)ws, capacity);
}

static void pn_pool2d(pn_pool *pool, const pn_pool2d_desc *d, const float *x, float *y, int avg) {
    if (d->batch <= 0 || d->channels <= 0 || d->out_h <= 0 || d->out_w <= 0) return;
    pn_pool_ctx cx;
    cx.d = d;
    cx.x = x;
    cx.y = y;
    cx.avg = avg;
    cx.planes = (int64_t)d->batch * d->channels;
    const int32_t threads = pn_pool_effective_threads(pool);
    const int64_t work = cx.planes * d->out_h * d->out_w * d->kernel_h * d->kernel_w;
    const int64_t tasks = threads == 1 || work < 65536 ? 1 : PN_MIN(cx.planes, threads * 4);
    cx.per_task = pn_ceil_div(cx.planes, tasks);
    pn_parallel_for(pool, pn_ceil_div(cx.planes, cx.per_task), pn_pool_task, &cx);
}

void pn_maxpool2d(pn_pool *pool, const pn_pool2d_desc *d, const float *x, float *y) {
    pn_pool2d(pool, d, x, y, 0);
}

void pn_avgpool2d(pn_pool *pool, const pn_pool2d_desc *d, const float *x, float *y) {
    pn_pool2d(pool, d, x, y, 1);
}

void pn_global_avgpool(int64_t planes, int64_t plane_size, const float *x, float *y) {
    for (int64_t p = 0; p < planes; p++) {
        const float *v = x + p * plane_size;
        /* Eight partial sums: vectorisable without reassociation flags, and more accurate. */
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 8 <= plane_size; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += v[i + j];
        float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; i < plane_size; i++) s += v[i];
        y[p] = plane_size > 0 ? s / (float)plane_size : NAN;
    }
}

/* ---- softmax ---- */

void pn_softmax(int64_t outer, int64_t axis, int64_t inner, const float *x, float *y) {
    if (axis <= 0 || inner <= 0) return;
    enum { CHUNK = 64 };
    for (int64_t o = 0; o < outer; o++) {
        const float *xo = x + o * axis * inner;
        float *yo = y + o * axis * inner;
        for (int64_t i0 = 0; i0 < inner; i0 += CHUNK) {
            const int64_t w = PN_MIN((int64_t)CHUNK, inner - i0);
            float mx[CHUNK], sum[CHUNK];
            for (int64_t i = 0; i < w; i++) {
                mx[i] = -INFINITY;
                sum[i] = 0.0f;
            }
            for (int64_t a = 0; a < axis; a++) {
                const float *r = xo + a * inner + i0;
                for (int64_t i = 0; i < w; i++) mx[i] = r[i] > mx[i] || r[i] != r[i] ? r[i] : mx[i];
            }
            for (int64_t a = 0; a < axis; a++) {
                const float *r = xo + a * inner + i0;
                float *q = yo + a * inner + i0;
                for (int64_t i = 0; i < w; i++) {
                    q[i] = expf(r[i] - mx[i]);
                    sum[i] += q[i];
                }
            }
            for (int64_t i = 0; i < w; i++) sum[i] = 1.0f / sum[i];
            for (int64_t a = 0; a < axis; a++) {
                float *q = yo + a * inner + i0;
                for (int64_t i = 0; i < w; i++) q[i] *= sum[i];
            }
        }
    }
}

/* ---- transpose ---- */

static inline void pn_copy_elem(char *dst, const char *src, int32_t es) {
    switch (es) {
        case 1: *dst = *src; break;
        case 2: memcpy(dst, src, 2); break;
        case 4: memcpy(dst, src, 4); break;
        case 8: memcpy(dst, src, 8); break;
        default: memcpy(dst, src, (size_t)es); break;
    }
}

void pn_transpose(int32_t ndim, const int64_t *in_shape, const int32_t *perm, const void *x,
                  void *y, int32_t element_size) {
    if (ndim < 0 || ndim > PN_MAX_DIMS) return;
    if (ndim == 0) { /* a scalar */
        memcpy(y, x, (size_t)element_size);
        return;
    }
    int64_t in_stride[PN_MAX_DIMS];
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        in_stride[d] = s;
        s *= in_shape[d];
    }
    const int64_t total = s;
    if (total <= 0) return;
    /* Output axes with their input strides; size-1 axes dropped, and an output axis merged into
       the previous one when the input walks them as one. */
    int64_t shape[PN_MAX_DIMS], istr[PN_MAX_DIMS], ostr[PN_MAX_DIMS] = {0};
    int nd = 0;
    for (int d = 0; d < ndim; d++) {
        const int64_t n = in_shape[perm[d]], st = in_stride[perm[d]];
        if (n == 1) continue;
        if (nd > 0 && istr[nd - 1] == st * n) {
            shape[nd - 1] *= n;
            istr[nd - 1] = st;
            continue;
        }
        shape[nd] = n;
        istr[nd] = st;
        nd++;
    }
    const char *src = (const char *)x;
    char *dst = (char *)y;
    const int32_t es = element_size;
    if (nd == 0 || (nd == 1 && istr[0] == 1)) {
        memcpy(dst, src, (size_t)(total * es));
        return;
    }
    s = 1;
    for (int d = nd - 1; d >= 0; d--) {
        ostr[d] = s;
        s *= shape[d];
    }
    /* The inner loop runs along the output's last axis, unless that axis is short and another one
       is contiguous in the input (a pixel shuffle's axes of 2): then along that one, reading
       contiguously and writing with a stride. */
    int inner = nd - 1;
    if (shape[inner] < 16)
        for (int d = 0; d < nd; d++)
            if (istr[d] == 1 && shape[d] > shape[inner]) inner = d;
    const int64_t n = shape[inner], is = istr[inner], os = ostr[inner];
    int64_t oshape[PN_MAX_DIMS], oi[PN_MAX_DIMS], oo[PN_MAX_DIMS];
    int outer = 0;
    for (int d = 0; d < nd; d++)
        if (d != inner) {
            oshape[outer] = shape[d];
            oi[outer] = istr[d];
            oo[outer] = ostr[d];
            outer++;
        }
    int64_t idx[PN_MAX_DIMS] = {0};
    int64_t in_off = 0, out_off = 0;
    for (int64_t r = 0; r < total / n; r++) {
        if (is == 1 && os == 1) {
            memcpy(dst + out_off * es, src + in_off * es, (size_t)(n * es));
        } else if (es == 4) {
            const uint32_t *sp = (const uint32_t *)(const void *)(src + in_off * 4);
            uint32_t *dp = (uint32_t *)(void *)(dst + out_off * 4);
            for (int64_t i = 0; i < n; i++) dp[i * os] = sp[i * is];
        } else if (es == 1) {
            const char *sp = src + in_off;
            char *dp = dst + out_off;
            for (int64_t i = 0; i < n; i++) dp[i * os] = sp[i * is];
        } else {
            for (int64_t i = 0; i < n; i++)
                pn_copy_elem(dst + (out_off + i * os) * es, src + (in_off + i * is) * es, es);
        }
        for (int d = outer - 1; d >= 0; d--) {
            idx[d]++;
            in_off += oi[d];
            out_off += oo[d];
            if (idx[d] < oshape[d]) break;
            in_off -= oi[d] * oshape[d];
            out_off -= oo[d] * oshape[d];
            idx[d] = 0;
        }
    }
}

/* ---- concat ---- */

void pn_concat(int32_t count, const void *const *inputs, const int64_t *axis_sizes, int64_t outer,
               int64_t inner, void *y, int32_t element_size) {
    char *dst = (char *)y;
    for (int64_t o = 0; o < outer; o++)
        for (int32_t i = 0; i < count; i++) {
            const size_t bytes = (size_t)(axis_sizes[i] * inner * element_size);
            memcpy(dst, (const char *)inputs[i] + (size_t)o * bytes, bytes);
            dst += bytes;
        }
}
