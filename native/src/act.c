/* act.c: activation functions (generic C99), the epilogue form used by GEMM, and dispatch. */
#include <math.h>

#include "pn_internal.h"

static inline float pn_sigmoidf(float v) {
    /* Two branches so that exp never overflows into inf/inf. */
    if (v >= 0.0f) return 1.0f / (1.0f + expf(-v));
    float e = expf(v);
    return e / (1.0f + e);
}

void pn_activation_generic(const pn_act *act, const float *x, float *y, int64_t n) {
    const int32_t kind = act ? act->kind : PN_ACT_NONE;
    switch (kind) {
        case PN_ACT_RELU:
            /* The comparison leaves NaN as NaN (Relu(NaN) = NaN in ONNX and NumPy). */
            for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
            break;
        case PN_ACT_CLIP: {
            const float lo = act->alpha, hi = act->beta;
            for (int64_t i = 0; i < n; i++) {
                float v = x[i];
                v = v < lo ? lo : v;
                y[i] = v > hi ? hi : v;
            }
            break;
        }
        case PN_ACT_LEAKY_RELU: {
            const float a = act->alpha;
            for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? x[i] * a : x[i];
            break;
        }
        case PN_ACT_SIGMOID:
            for (int64_t i = 0; i < n; i++) y[i] = pn_sigmoidf(x[i]);
            break;
        case PN_ACT_TANH:
            for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
            break;
        case PN_ACT_HARD_SWISH:
            for (int64_t i = 0; i < n; i++) {
                float v = x[i];
                float g = v * (1.0f / 6.0f) + 0.5f;
                g = g < 0.0f ? 0.0f : g;
                g = g > 1.0f ? 1.0f : g;
                y[i] = v * g;
            }
            break;
        default:
            if (x != y)
                for (int64_t i = 0; i < n; i++) y[i] = x[i];
            break;
    }
}

void pn_activation(const pn_act *act, const float *x, float *y, int64_t n) {
    if (n <= 0) return;
    pn_kernels_active()->act(act, x, y, n);
}

void pn_act_rows(const pn_act *act, float *y, int64_t ld, int64_t rows, int64_t cols) {
    if (!act || act->kind == PN_ACT_NONE) return;
    const pn_kernels *k = pn_kernels_active();
    if (ld == cols) {
        k->act(act, y, y, rows * cols);
        return;
    }
    for (int64_t r = 0; r < rows; r++) k->act(act, y + r * ld, y + r * ld, cols);
}

void pn_epi_from_act(const pn_act *act, pn_epi *e) {
    e->kind = act ? act->kind : PN_ACT_NONE;
    e->clamp = 0;
    e->lo = -INFINITY;
    e->hi = INFINITY;
    e->alpha = 0.0f;
    e->post = 0;
    switch (e->kind) {
        case PN_ACT_RELU:
            e->clamp = 1;
            e->lo = 0.0f;
            break;
        case PN_ACT_CLIP:
            e->clamp = 1;
            e->lo = act->alpha;
            e->hi = act->beta;
            break;
        case PN_ACT_LEAKY_RELU:
            e->alpha = act->alpha;
            break;
        case PN_ACT_SIGMOID:
        case PN_ACT_TANH:
        case PN_ACT_HARD_SWISH:
            e->post = 1;
            break;
        default:
            e->kind = PN_ACT_NONE;
            break;
    }
}
