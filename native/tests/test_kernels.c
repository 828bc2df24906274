/* test_kernels.c: the C core's kernels against golden outputs computed by NumPy (golden.h, from
 * make_golden.py) and against naive C references over many shapes, at every SIMD level this CPU
 * runs (generic included). Built natively and cross-compiled for aarch64 (run under qemu-aarch64)
 * by native/tests/run.sh. Exit status 0 when every check passes; failures are printed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "penumbra_nn.h"

static int failures = 0, checks = 0;

#define FAIL(...)                          \
    do {                                   \
        failures++;                        \
        if (failures <= 30) {              \
            fprintf(stderr, "FAIL: ");     \
            fprintf(stderr, __VA_ARGS__);  \
            fprintf(stderr, "\n");         \
        }                                  \
    } while (0)

/* ---- the LCG shared with make_golden.py ---- */

typedef struct {
    uint64_t state;
} lcg;

static lcg lcg_seed(uint64_t seed) {
    lcg r;
    r.state = seed * 0x9E3779B97F4A7C15ULL + 1;
    return r;
}
static uint64_t lcg_next(lcg *r) {
    r->state = r->state * 6364136223846793005ULL + 1442695040888963407ULL;
    return r->state;
}
static void lcg_floats(lcg *r, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)((double)((lcg_next(r) >> 40) & 0xFFFFFF) / 8388608.0 - 1.0);
}
static void lcg_int8s(lcg *r, int8_t *out, int64_t n, int low) {
    for (int64_t i = 0; i < n; i++) {
        int v = (int)((lcg_next(r) >> 56) & 0xFF);
        v = v > 127 ? v - 256 : v;
        out[i] = (int8_t)(v < low ? low : v);
    }
}
static void lcg_int32s(lcg *r, int32_t *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = (int32_t)((lcg_next(r) >> 40) % 20001) - 10000;
}
static void lcg_multipliers(lcg *r, float *out, int64_t n) {
    lcg_floats(r, out, n);
    for (int64_t i = 0; i < n; i++) out[i] = (out[i] + 1.0f) * 1e-3f + 1e-5f;
}

static void *xalloc(size_t bytes) {
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* fp32 comparison: |y - want| <= 2e-5 * sqrt(depth) * (1 + |want|) (inputs are in [-1, 1)) */
static void expect_close(const char *what, const float *y, const float *want, int64_t n,
                         int64_t depth) {
    checks++;
    const double tol = 2e-5 * sqrt((double)(depth > 1 ? depth : 1));
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)y[i] - (double)want[i]);
        if (isnan(want[i]) ? !isnan(y[i]) : !(d <= tol * (1.0 + fabs((double)want[i])))) {
            FAIL("%s: element %lld is %.9g, want %.9g", what, (long long)i, y[i], want[i]);
            return;
        }
    }
}

static void expect_equal_q(const char *what, const int8_t *y, const int8_t *want, int64_t n) {
    checks++;
    for (int64_t i = 0; i < n; i++)
        if (y[i] != want[i]) {
            FAIL("%s: element %lld is %d, want %d", what, (long long)i, y[i], want[i]);
            return;
        }
}

/* ---- naive references (independent of the library: plain loops, double sums) ---- */

static float ref_act(double v, int kind, float a, float b) {
    switch (kind) {
        case PN_ACT_RELU: return (float)(v < 0 ? 0 : v);
        case PN_ACT_CLIP: return (float)(v < a ? a : v > b ? b : v);
        case PN_ACT_LEAKY_RELU: return (float)(v < 0 ? v * a : v);
        case PN_ACT_SIGMOID: return (float)(1.0 / (1.0 + exp(-v)));
        case PN_ACT_TANH: return (float)tanh(v);
        case PN_ACT_HARD_SWISH: {
            double g = v / 6.0 + 0.5;
            g = g < 0 ? 0 : g > 1 ? 1 : g;
            return (float)(v * g);
        }
        default: return (float)v;
    }
}

static void ref_conv(const pn_conv2d_desc *d, const float *x, const float *w, const float *bias,
                     float *y) {
    const int cig = d->in_channels / d->groups, cog = d->out_channels / d->groups;
    for (int n = 0; n < d->batch; n++)
        for (int o = 0; o < d->out_channels; o++)
            for (int oy = 0; oy < d->out_h; oy++)
                for (int ox = 0; ox < d->out_w; ox++) {
                    double s = bias ? bias[o] : 0.0;
                    const int g = o / cog;
                    for (int c = 0; c < cig; c++)
                        for (int ky = 0; ky < d->kernel_h; ky++)
                            for (int kx = 0; kx < d->kernel_w; kx++) {
                                const int iy = oy * d->stride_h - d->pad_top + ky * d->dilation_h;
                                const int ix = ox * d->stride_w - d->pad_left + kx * d->dilation_w;
                                if (iy < 0 || iy >= d->in_h || ix < 0 || ix >= d->in_w) continue;
                                s += (double)x[((n * d->in_channels + g * cig + c) * d->in_h + iy) * d->in_w + ix] *
                                     w[((o * cig + c) * d->kernel_h + ky) * d->kernel_w + kx];
                            }
                    y[((n * d->out_channels + o) * d->out_h + oy) * d->out_w + ox] =
                        ref_act(s, d->act.kind, d->act.alpha, d->act.beta);
                }
}

static int8_t ref_requant(int64_t acc, float mul, int zp, int lo, int hi) {
    float v = (float)acc * mul;
    if (v > 1073741824.0f) v = 1073741824.0f;
    if (v < -1073741824.0f) v = -1073741824.0f;
    double q = floor(fabs((double)v) + 0.5);
    q = (v < 0 ? -q : q) + zp;
    return (int8_t)(q < lo ? lo : q > hi ? hi : q);
}

static void ref_qconv(const pn_qconv2d_desc *q, const int8_t *x, const int8_t *w,
                      const int32_t *bias, const float *mul, int8_t *y) {
    const pn_conv2d_desc *d = &q->conv;
    const int cig = d->in_channels / d->groups, cog = d->out_channels / d->groups;
    for (int n = 0; n < d->batch; n++)
        for (int o = 0; o < d->out_channels; o++)
            for (int oy = 0; oy < d->out_h; oy++)
                for (int ox = 0; ox < d->out_w; ox++) {
                    int64_t s = bias ? bias[o] : 0;
                    const int g = o / cog;
                    for (int c = 0; c < cig; c++)
                        for (int ky = 0; ky < d->kernel_h; ky++)
                            for (int kx = 0; kx < d->kernel_w; kx++) {
                                const int iy = oy * d->stride_h - d->pad_top + ky * d->dilation_h;
                                const int ix = ox * d->stride_w - d->pad_left + kx * d->dilation_w;
                                if (iy < 0 || iy >= d->in_h || ix < 0 || ix >= d->in_w) continue;
                                s += (int64_t)(x[((n * d->in_channels + g * cig + c) * d->in_h + iy) * d->in_w + ix] -
                                               q->x_zero_point) *
                                     w[((o * cig + c) * d->kernel_h + ky) * d->kernel_w + kx];
                            }
                    y[((n * d->out_channels + o) * d->out_h + oy) * d->out_w + ox] =
                        ref_requant(s, mul[o], q->y_zero_point, q->act_min, q->act_max);
                }
}

/* ---- running one convolution through the library ---- */

static void run_conv(pn_pool *pool, const pn_conv2d_desc *d, const float *x, const float *w,
                     const float *bias, float *y) {
    float *packed = xalloc((size_t)pn_conv2d_packed_floats(d) * sizeof(float));
    float *scratch = xalloc((size_t)pn_conv2d_scratch_floats(d, 3) * sizeof(float));
    pn_conv2d_pack(d, w, packed);
    pn_conv2d(pool, d, x, packed, bias, y, scratch);
    free(packed);
    free(scratch);
}

static void run_qconv(pn_pool *pool, const pn_qconv2d_desc *q, const int8_t *x, const int8_t *w,
                      const int32_t *bias, const float *mul, int8_t *y) {
    int8_t *packed = xalloc((size_t)pn_qconv2d_packed_bytes(&q->conv));
    void *scratch = xalloc((size_t)pn_qconv2d_scratch_bytes(&q->conv, 3));
    pn_qconv2d_pack(&q->conv, w, packed);
    pn_qconv2d(pool, q, x, packed, bias, mul, y, scratch);
    free(packed);
    free(scratch);
}

static pn_conv2d_desc conv_from(const int32_t *p) {
    pn_conv2d_desc d;
    memset(&d, 0, sizeof d);
    d.batch = p[0], d.in_channels = p[1], d.in_h = p[2], d.in_w = p[3];
    d.out_channels = p[4], d.out_h = p[5], d.out_w = p[6], d.kernel_h = p[7], d.kernel_w = p[8];
    d.stride_h = p[9], d.stride_w = p[10], d.dilation_h = p[11], d.dilation_w = p[12];
    d.pad_top = p[13], d.pad_left = p[14], d.groups = p[15];
    return d;
}

/* ---- golden cases ---- */

enum { G_CONV, G_GEMM, G_MATMUL, G_QCONV, G_QGEMM, G_MAXPOOL, G_AVGPOOL, G_SOFTMAX, G_BINARY, G_TRANSPOSE };

static void golden_case(pn_pool *pool, const pn_golden_case *g, int index) {
    char what[64];
    snprintf(what, sizeof what, "golden case %d (kind %d)", index, g->kind);
    lcg r = lcg_seed((uint64_t)g->seed);
    const int32_t *p = g->p;
    float *y = xalloc((size_t)g->count * sizeof(float));
    int8_t *yq = xalloc((size_t)g->count);
    switch (g->kind) {
        case G_CONV: {
            pn_conv2d_desc d = conv_from(p);
            d.act.kind = p[16];
            d.act.alpha = g->f[0];
            d.act.beta = g->f[1];
            const int64_t nx = (int64_t)d.batch * d.in_channels * d.in_h * d.in_w;
            const int64_t nw = (int64_t)d.out_channels * (d.in_channels / d.groups) * d.kernel_h * d.kernel_w;
            float *x = xalloc((size_t)nx * 4), *w = xalloc((size_t)nw * 4), *b = xalloc((size_t)d.out_channels * 4);
            lcg_floats(&r, x, nx);
            lcg_floats(&r, w, nw);
            if (p[17]) lcg_floats(&r, b, d.out_channels);
            run_conv(pool, &d, x, w, p[17] ? b : NULL, y);
            free(x), free(w), free(b);
            break;
        }
        case G_GEMM: {
            const int m = p[0], n = p[1], k = p[2];
            float *a = xalloc((size_t)m * k * 4), *b = xalloc((size_t)k * n * 4), *bias = xalloc((size_t)n * 4);
            lcg_floats(&r, a, (int64_t)m * k);
            lcg_floats(&r, b, (int64_t)k * n);
            lcg_floats(&r, bias, n);
            float *packed = xalloc((size_t)pn_gemm_packed_floats(k, n) * 4);
            pn_gemm_pack(k, n, b, p[4], packed);
            pn_gemm_desc d = {m, n, k, p[3], {p[5], g->f[0], g->f[1]}};
            pn_gemm(pool, &d, a, packed, bias, y);
            free(a), free(b), free(bias), free(packed);
            break;
        }
        case G_MATMUL: {
            const int batch = p[0], m = p[1], n = p[2], k = p[3];
            const int64_t na = (p[4] ? 1 : batch) * (int64_t)m * k, nb = (p[5] ? 1 : batch) * (int64_t)k * n;
            float *a = xalloc((size_t)na * 4), *b = xalloc((size_t)nb * 4);
            lcg_floats(&r, a, na);
            lcg_floats(&r, b, nb);
            pn_matmul(pool, batch, m, n, k, a, p[4] ? 0 : (int64_t)m * k, b, p[5] ? 0 : (int64_t)k * n, y);
            free(a), free(b);
            break;
        }
        case G_QCONV: {
            pn_qconv2d_desc q;
            memset(&q, 0, sizeof q);
            q.conv = conv_from(p);
            q.x_zero_point = p[16], q.y_zero_point = p[17], q.act_min = p[18], q.act_max = p[19];
            const pn_conv2d_desc *d = &q.conv;
            const int64_t nx = (int64_t)d->batch * d->in_channels * d->in_h * d->in_w;
            const int64_t nw = (int64_t)d->out_channels * (d->in_channels / d->groups) * d->kernel_h * d->kernel_w;
            int8_t *x = xalloc((size_t)nx), *w = xalloc((size_t)nw);
            int32_t *bias = xalloc((size_t)d->out_channels * 4);
            float *mul = xalloc((size_t)d->out_channels * 4);
            lcg_int8s(&r, x, nx, -128);
            lcg_int8s(&r, w, nw, -127);
            lcg_int32s(&r, bias, d->out_channels);
            lcg_multipliers(&r, mul, d->out_channels);
            run_qconv(pool, &q, x, w, bias, mul, yq);
            free(x), free(w), free(bias), free(mul);
            break;
        }
        case G_QGEMM: {
            const int m = p[0], n = p[1], k = p[2];
            int8_t *a = xalloc((size_t)m * k), *b = xalloc((size_t)k * n);
            int32_t *bias = xalloc((size_t)n * 4);
            float *mul = xalloc((size_t)n * 4);
            lcg_int8s(&r, a, (int64_t)m * k, -128);
            lcg_int8s(&r, b, (int64_t)k * n, -127);
            lcg_int32s(&r, bias, n);
            lcg_multipliers(&r, mul, n);
            int8_t *packed = xalloc((size_t)pn_qgemm_packed_bytes(k, n));
            pn_qgemm_pack(k, n, b, p[3], packed);
            pn_qgemm_desc d = {m, n, k, p[4], p[5], p[6], p[7]};
            pn_qgemm(pool, &d, a, packed, bias, mul, yq);
            free(a), free(b), free(bias), free(mul), free(packed);
            break;
        }
        case G_MAXPOOL:
        case G_AVGPOOL: {
            pn_pool2d_desc d = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], 1, 1, p[10], p[11], p[12]};
            const int64_t nx = (int64_t)p[0] * p[1] * p[2] * p[3];
            float *x = xalloc((size_t)nx * 4);
            lcg_floats(&r, x, nx);
            (g->kind == G_MAXPOOL ? pn_maxpool2d : pn_avgpool2d)(pool, &d, x, y);
            free(x);
            break;
        }
        case G_SOFTMAX: {
            const int64_t n = (int64_t)p[0] * p[1] * p[2];
            float *x = xalloc((size_t)n * 4);
            lcg_floats(&r, x, n);
            for (int64_t i = 0; i < n; i++) x[i] *= 8.0f;
            pn_softmax(p[0], p[1], p[2], x, y);
            free(x);
            break;
        }
        case G_BINARY: {
            int64_t out[4], sa[4], sb[4], na = 1, nb = 1;
            for (int i = 0; i < 4; i++) {
                out[i] = p[1 + i] > p[5 + i] ? p[1 + i] : p[5 + i];
                na *= p[1 + i];
                nb *= p[5 + i];
            }
            int64_t ka = 1, kb = 1;
            for (int i = 3; i >= 0; i--) {
                sa[i] = p[1 + i] == 1 ? 0 : ka;
                sb[i] = p[5 + i] == 1 ? 0 : kb;
                ka *= p[1 + i];
                kb *= p[5 + i];
            }
            float *a = xalloc((size_t)na * 4), *b = xalloc((size_t)nb * 4);
            lcg_floats(&r, a, na);
            lcg_floats(&r, b, nb);
            for (int64_t i = 0; i < nb; i++) b[i] += 3.0f;
            pn_binary(p[0], 4, out, a, sa, b, sb, y, NULL);
            free(a), free(b);
            break;
        }
        case G_TRANSPOSE: {
            const int nd = p[0];
            int64_t shape[6], n = 1;
            int32_t perm[6];
            for (int i = 0; i < nd; i++) {
                shape[i] = p[1 + i];
                perm[i] = p[1 + nd + i];
                n *= shape[i];
            }
            float *x = xalloc((size_t)n * 4);
            lcg_floats(&r, x, n);
            pn_transpose(nd, shape, perm, x, y, 4);
            free(x);
            break;
        }
        default:
            FAIL("%s: unknown kind", what);
    }
    if (g->expected) expect_close(what, y, g->expected, g->count, g->depth);
    if (g->expected_q) expect_equal_q(what, yq, g->expected_q, g->count);
    free(y);
    free(yq);
}

/* ---- randomised checks against the naive references ---- */

static int draw(lcg *r, int lo, int hi) { return lo + (int)((lcg_next(r) >> 33) % (uint64_t)(hi - lo + 1)); }

static void random_conv(pn_pool *pool, lcg *r, int index) {
    pn_conv2d_desc d;
    memset(&d, 0, sizeof d);
    const int shape = draw(r, 0, 3); /* dense, depthwise, grouped, pointwise */
    d.groups = shape == 1 ? draw(r, 1, 12) : shape == 2 ? draw(r, 2, 3) : 1;
    const int cig = shape == 1 ? 1 : draw(r, 1, 20), cog = shape == 1 ? 1 : draw(r, 1, 20);
    d.batch = draw(r, 1, 2);
    d.in_channels = cig * d.groups;
    d.out_channels = cog * d.groups;
    d.kernel_h = shape == 3 ? 1 : draw(r, 1, 3);
    d.kernel_w = shape == 3 ? 1 : draw(r, 1, 3);
    d.stride_h = shape == 3 ? 1 : draw(r, 1, 2);
    d.stride_w = shape == 3 ? 1 : draw(r, 1, 2);
    d.dilation_h = draw(r, 1, 2);
    d.dilation_w = draw(r, 1, 2);
    d.in_h = draw(r, 3, 9);
    d.in_w = draw(r, 3, 45);
    d.pad_top = shape == 3 ? 0 : draw(r, 0, d.kernel_h - 1);
    d.pad_left = shape == 3 ? 0 : draw(r, 0, d.kernel_w - 1);
    const int span_h = (d.kernel_h - 1) * d.dilation_h + 1, span_w = (d.kernel_w - 1) * d.dilation_w + 1;
    d.out_h = (d.in_h + 2 * d.pad_top - span_h) / d.stride_h + 1;
    d.out_w = (d.in_w + 2 * d.pad_left - span_w) / d.stride_w + 1;
    if (d.out_h < 1 || d.out_w < 1) return;
    d.act.kind = draw(r, 0, 6);
    d.act.alpha = d.act.kind == PN_ACT_CLIP ? -0.5f : 0.1f;
    d.act.beta = 0.5f;
    const int64_t nx = (int64_t)d.batch * d.in_channels * d.in_h * d.in_w;
    const int64_t nw = (int64_t)d.out_channels * cig * d.kernel_h * d.kernel_w;
    const int64_t ny = (int64_t)d.batch * d.out_channels * d.out_h * d.out_w;
    float *x = xalloc((size_t)nx * 4), *w = xalloc((size_t)nw * 4), *b = xalloc((size_t)d.out_channels * 4);
    float *y = xalloc((size_t)ny * 4), *want = xalloc((size_t)ny * 4);
    lcg_floats(r, x, nx);
    lcg_floats(r, w, nw);
    lcg_floats(r, b, d.out_channels);
    run_conv(pool, &d, x, w, b, y);
    ref_conv(&d, x, w, b, want);
    char what[160];
    snprintf(what, sizeof what, "random conv %d (ci %d co %d g %d %dx%d k%dx%d s%dx%d d%dx%d p%dx%d act %d)",
             index, d.in_channels, d.out_channels, d.groups, d.in_h, d.in_w, d.kernel_h, d.kernel_w,
             d.stride_h, d.stride_w, d.dilation_h, d.dilation_w, d.pad_top, d.pad_left, d.act.kind);
    expect_close(what, y, want, ny, (int64_t)cig * d.kernel_h * d.kernel_w);
    free(x), free(w), free(b), free(y), free(want);
}

static void random_qconv(pn_pool *pool, lcg *r, int index) {
    pn_qconv2d_desc q;
    memset(&q, 0, sizeof q);
    pn_conv2d_desc *d = &q.conv;
    const int depthwise = draw(r, 0, 2) == 0;
    d->groups = depthwise ? draw(r, 1, 10) : 1;
    const int cig = depthwise ? 1 : draw(r, 1, 70), cog = depthwise ? 1 : draw(r, 1, 20);
    d->batch = 1;
    d->in_channels = cig * d->groups;
    d->out_channels = cog * d->groups;
    d->kernel_h = draw(r, 1, 3);
    d->kernel_w = draw(r, 1, 3);
    d->stride_h = draw(r, 1, 2);
    d->stride_w = draw(r, 1, 2);
    d->dilation_h = d->dilation_w = 1;
    d->in_h = draw(r, 3, 8);
    d->in_w = draw(r, 3, 30);
    d->pad_top = draw(r, 0, d->kernel_h - 1);
    d->pad_left = draw(r, 0, d->kernel_w - 1);
    d->out_h = (d->in_h + 2 * d->pad_top - d->kernel_h) / d->stride_h + 1;
    d->out_w = (d->in_w + 2 * d->pad_left - d->kernel_w) / d->stride_w + 1;
    q.x_zero_point = draw(r, -128, 127);
    q.y_zero_point = draw(r, -20, 20);
    q.act_min = draw(r, 0, 1) ? -128 : q.y_zero_point;
    q.act_max = 127;
    const int64_t nx = (int64_t)d->in_channels * d->in_h * d->in_w;
    const int64_t nw = (int64_t)d->out_channels * cig * d->kernel_h * d->kernel_w;
    const int64_t ny = (int64_t)d->out_channels * d->out_h * d->out_w;
    int8_t *x = xalloc((size_t)nx), *w = xalloc((size_t)nw), *y = xalloc((size_t)ny), *want = xalloc((size_t)ny);
    int32_t *bias = xalloc((size_t)d->out_channels * 4);
    float *mul = xalloc((size_t)d->out_channels * 4);
    lcg_int8s(r, x, nx, -128);
    lcg_int8s(r, w, nw, -127);
    lcg_int32s(r, bias, d->out_channels);
    lcg_multipliers(r, mul, d->out_channels);
    run_qconv(pool, &q, x, w, bias, mul, y);
    ref_qconv(&q, x, w, bias, mul, want);
    char what[96];
    snprintf(what, sizeof what, "random qconv %d (ci %d co %d g %d k%dx%d)", index, d->in_channels,
             d->out_channels, d->groups, d->kernel_h, d->kernel_w);
    expect_equal_q(what, y, want, ny);
    free(x), free(w), free(y), free(want), free(bias), free(mul);
}

static void random_gemm(pn_pool *pool, lcg *r, int index) {
    const int m = draw(r, 1, 30), n = draw(r, 1, 60), k = draw(r, 0, 3) ? draw(r, 1, 40) : draw(r, 250, 300);
    const int ta = draw(r, 0, 1), tb = draw(r, 0, 1), kind = draw(r, 0, 6);
    float *a = xalloc((size_t)m * k * 4), *b = xalloc((size_t)k * n * 4), *bias = xalloc((size_t)n * 4);
    float *y = xalloc((size_t)m * n * 4), *want = xalloc((size_t)m * n * 4);
    lcg_floats(r, a, (int64_t)m * k);
    lcg_floats(r, b, (int64_t)k * n);
    lcg_floats(r, bias, n);
    float *packed = xalloc((size_t)pn_gemm_packed_floats(k, n) * 4);
    pn_gemm_pack(k, n, b, tb, packed);
    pn_gemm_desc d = {m, n, k, ta, {kind, kind == PN_ACT_CLIP ? -0.5f : 0.1f, 0.5f}};
    pn_gemm(pool, &d, a, packed, bias, y);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = bias[j];
            for (int t = 0; t < k; t++)
                s += (double)(ta ? a[t * m + i] : a[i * k + t]) * (tb ? b[j * k + t] : b[t * n + j]);
            want[i * n + j] = ref_act(s, kind, d.act.alpha, d.act.beta);
        }
    char what[64];
    snprintf(what, sizeof what, "random gemm %d (%dx%dx%d)", index, m, n, k);
    expect_close(what, y, want, (int64_t)m * n, k);
    free(a), free(b), free(bias), free(y), free(want), free(packed);
}

static void random_qgemm(pn_pool *pool, lcg *r, int index) {
    const int m = draw(r, 1, 20), n = draw(r, 1, 40), k = draw(r, 0, 3) ? draw(r, 1, 40) : draw(r, 500, 530);
    const int tb = draw(r, 0, 1), xzp = draw(r, -128, 127), yzp = draw(r, -20, 20);
    int8_t *a = xalloc((size_t)m * k), *b = xalloc((size_t)k * n), *y = xalloc((size_t)m * n), *want = xalloc((size_t)m * n);
    int32_t *bias = xalloc((size_t)n * 4);
    float *mul = xalloc((size_t)n * 4);
    lcg_int8s(r, a, (int64_t)m * k, -128);
    lcg_int8s(r, b, (int64_t)k * n, -127);
    lcg_int32s(r, bias, n);
    lcg_multipliers(r, mul, n);
    int8_t *packed = xalloc((size_t)pn_qgemm_packed_bytes(k, n));
    pn_qgemm_pack(k, n, b, tb, packed);
    pn_qgemm_desc d = {m, n, k, xzp, yzp, -128, 127};
    pn_qgemm(pool, &d, a, packed, bias, mul, y);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            int64_t s = bias[j];
            for (int t = 0; t < k; t++) s += (int64_t)(a[i * k + t] - xzp) * (tb ? b[j * k + t] : b[t * n + j]);
            want[i * n + j] = ref_requant(s, mul[j], yzp, -128, 127);
        }
    char what[64];
    snprintf(what, sizeof what, "random qgemm %d (%dx%dx%d)", index, m, n, k);
    expect_equal_q(what, y, want, (int64_t)m * n);
    free(a), free(b), free(y), free(want), free(bias), free(mul), free(packed);
}

static void random_activation(lcg *r, int index) {
    const int n = draw(r, 0, 40), kind = draw(r, 0, 6);
    float *x = xalloc((size_t)n * 4 + 4), *y = xalloc((size_t)n * 4 + 4), *want = xalloc((size_t)n * 4 + 4);
    lcg_floats(r, x, n);
    for (int i = 0; i < n; i++) x[i] *= 8.0f;
    pn_act act = {kind, kind == PN_ACT_CLIP ? -1.0f : 0.1f, 2.0f};
    pn_activation(&act, x, y, n);
    for (int i = 0; i < n; i++) want[i] = ref_act(x[i], kind, act.alpha, act.beta);
    char what[48];
    snprintf(what, sizeof what, "random activation %d (kind %d)", index, kind);
    expect_close(what, y, want, n, 1);
    free(x), free(y), free(want);
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 ? atoi(argv[1]) : 40;
    const int top = pn_simd_level();
    printf("%s; this CPU runs %s\n", pn_version(), pn_simd_name(top));
    pn_pool *pools[3] = {NULL, pn_pool_create(1), pn_pool_create(3)};
    if (!pools[1] || !pools[2]) {
        fprintf(stderr, "pn_pool_create failed\n");
        return 2;
    }
    /* every level of this CPU, highest first */
    int levels[8], nlevels = 0;
    for (int cap = 4; cap >= 0; cap--) {
        pn_set_simd_limit(cap);
        const int level = pn_simd_level();
        if (nlevels == 0 || levels[nlevels - 1] != level) levels[nlevels++] = level;
    }
    for (int li = 0; li < nlevels; li++) {
        pn_set_simd_limit(levels[li]);
        const int before = failures;
        for (int pi = 0; pi < 3; pi++)
            for (size_t g = 0; g < PN_GOLDEN_COUNT; g++) golden_case(pools[pi], &pn_golden[g], (int)g);
        lcg r = lcg_seed(1000 + (uint64_t)li);
        for (int i = 0; i < rounds; i++) {
            pn_pool *pool = pools[i % 3];
            random_conv(pool, &r, i);
            random_qconv(pool, &r, i);
            random_gemm(pool, &r, i);
            random_qgemm(pool, &r, i);
            random_activation(&r, i);
        }
        printf("level %s: %s\n", pn_simd_name(levels[li]), failures == before ? "ok" : "FAILED");
    }
    pn_pool_destroy(pools[1]);
    pn_pool_destroy(pools[2]);
    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
