/* penumbra_nn.h: the Penumbra inference core, a library of NN kernels called by flight.inference.
 *
 * This header is the contract between the C core and flight/inference (issue 4). Everything
 * between PN_CDEF_BEGIN and PN_CDEF_END is fed verbatim to cffi's cdef by native/build_native.py,
 * so it must stay plain C declarations (no other preprocessor lines than PN_MAX_DIMS).
 *
 * Conventions (all kernels):
 * - Tensors are contiguous, row-major, NCHW float32 (int8 for the quantised kernels).
 * - Kernels never allocate and never fail: shapes are validated by the caller (Python plans the graph).
 * - A pool may be NULL: the kernel then runs on the calling thread with small, stack-held blocking
 *   (correct, slower). Kernels taking a pool may be called from several threads at once with the same
 *   pool; the callers then take turns on it. A pool inherited across fork() runs its work on the
 *   calling thread (the workers exist only in the parent).
 * - Packed weight layouts depend only on the CPU architecture, never on the run-time SIMD level, so
 *   weights packed once stay valid after pn_set_simd_limit().
 * - NaN and infinity propagate as in IEEE arithmetic: Relu/Clip/MaxPool of NaN is NaN.
 *
 * Additions beyond the contract (the C side may add; these are documented here):
 * - PN_SIMD_AVX512 (4): x86-64 CPUs with AVX-512F run the fp32 GEMM on 512-bit registers.
 *   Levels are ordered per architecture: x86-64 generic < avx2+fma < avx512, aarch64 generic <
 *   neon < neon+dotprod; pn_set_simd_limit(cap) runs the highest level of this CPU <= cap.
 * - PN_ACT_HARD_SWISH ignores alpha/beta and uses ONNX HardSwish's fixed 1/6 and 0.5.
 * - pn_avgpool2d with count_include_pad divides by kernel_h * kernel_w (padding counted whole).
 * - The fp32 conv needs no scratch today (per-thread buffers live in the pool):
 *   pn_conv2d_scratch_floats returns 0 and scratch may be NULL. Call it anyway; that may change.
 * - pn_qconv2d's scratch is likewise 0 bytes today.
 * - pn_quantize follows ONNX QuantizeLinear (x / scale rounded half to even, saturated); NaN
 *   quantises to the zero point.
 * - Packed buffers need no particular alignment (unaligned loads throughout); the int8 ones start
 *   with int32 weight sums, so give them 4-byte alignment (any NumPy array has it).
 * - pn_version() returns a string naming this library and its build.
 */
#ifndef PENUMBRA_NN_H
#define PENUMBRA_NN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* PN_CDEF_BEGIN */
/* CPU features, detected once at first use (x86-64: __builtin_cpu_supports; aarch64: getauxval(AT_HWCAP)). */
enum pn_simd { PN_SIMD_GENERIC = 0, PN_SIMD_AVX2_FMA = 1, PN_SIMD_NEON = 2, PN_SIMD_NEON_DOTPROD = 3,
               PN_SIMD_AVX512 = 4 /* addition: x86-64 with AVX-512F (fp32 GEMM; the rest as AVX2) */ };
int pn_simd_level(void);                 /* what this CPU runs (after the cap of pn_set_simd_limit) */
const char *pn_simd_name(int level);     /* "generic", "avx2+fma", "neon", "neon+dotprod", "avx512" */
void pn_set_simd_limit(int level);       /* tests and benchmarks: cap the level (PN_SIMD_GENERIC forces C99) */
const char *pn_version(void);            /* addition: library name, version and build */

/* A small pthread pool (not OpenMP). threads == 1 runs everything on the calling thread. */
typedef struct pn_pool pn_pool;
pn_pool *pn_pool_create(int32_t threads);  /* NULL on failure (threads outside 1..256, out of memory) */
void pn_pool_destroy(pn_pool *pool);
int32_t pn_pool_threads(const pn_pool *pool);

/* Activations, fused into the epilogue of conv/gemm/binary or run alone. */
enum pn_act_kind { PN_ACT_NONE = 0, PN_ACT_RELU = 1, PN_ACT_CLIP = 2, PN_ACT_LEAKY_RELU = 3,
                   PN_ACT_SIGMOID = 4, PN_ACT_TANH = 5, PN_ACT_HARD_SWISH = 6 };
typedef struct { int32_t kind; float alpha; float beta; } pn_act;  /* CLIP: [alpha, beta]; LEAKY: alpha */
void pn_activation(const pn_act *act, const float *x, float *y, int64_t n);  /* x == y allowed */

/* Conv 2-D, ONNX semantics: weight OIHW with I = in_channels / groups; pads already resolved
   (auto_pad handled in Python); bottom/right padding is implied by out_h/out_w. Depthwise when
   groups == in_channels == out_channels (a direct kernel); 1x1 stride-1 unpadded is a GEMM. */
typedef struct {
    int32_t batch, in_channels, in_h, in_w;
    int32_t out_channels, out_h, out_w;
    int32_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    int32_t groups;
    pn_act act;
} pn_conv2d_desc;
int64_t pn_conv2d_packed_floats(const pn_conv2d_desc *d);
void pn_conv2d_pack(const pn_conv2d_desc *d, const float *weight, float *packed);
int64_t pn_conv2d_scratch_floats(const pn_conv2d_desc *d, int32_t threads);
void pn_conv2d(pn_pool *pool, const pn_conv2d_desc *d, const float *x, const float *packed,
               const float *bias, float *y, float *scratch);

/* Gemm with a constant right operand: Y[m,n] = op(A)[m,k] x B[k,n] + bias[n], activation fused.
   ONNX alpha is folded into B before packing; ONNX C of shape (n,), (1,n) or scalar is the bias
   (Python emits a separate pn_binary for other C shapes). */
typedef struct { int32_t m, n, k; int32_t trans_a; pn_act act; } pn_gemm_desc;
int64_t pn_gemm_packed_floats(int32_t k, int32_t n);
void pn_gemm_pack(int32_t k, int32_t n, const float *b, int32_t trans_b, float *packed);
void pn_gemm(pn_pool *pool, const pn_gemm_desc *d, const float *a, const float *packed,
             const float *bias, float *y);
/* MatMul of two activations, batched; a batch stride of 0 broadcasts that operand. */
void pn_matmul(pn_pool *pool, int64_t batch, int32_t m, int32_t n, int32_t k,
               const float *a, int64_t a_batch_stride, const float *b, int64_t b_batch_stride,
               float *y);

/* Broadcasting binary ops up to PN_MAX_DIMS dims: strides in elements, 0 on broadcast axes. */
#define PN_MAX_DIMS 6
enum pn_binary_op { PN_ADD = 0, PN_MUL = 1, PN_SUB = 2, PN_DIV = 3 };
void pn_binary(int32_t op, int32_t ndim, const int64_t *out_shape,
               const float *a, const int64_t *a_strides, const float *b, const int64_t *b_strides,
               float *y, const pn_act *act);

/* Pooling, ONNX semantics (pads resolved in Python; ceil_mode handled by out_h/out_w). */
typedef struct {
    int32_t batch, channels, in_h, in_w, out_h, out_w;
    int32_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    int32_t pad_top, pad_left;
    int32_t count_include_pad;
} pn_pool2d_desc;
void pn_maxpool2d(pn_pool *pool, const pn_pool2d_desc *d, const float *x, float *y);
void pn_avgpool2d(pn_pool *pool, const pn_pool2d_desc *d, const float *x, float *y);
void pn_global_avgpool(int64_t planes, int64_t plane_size, const float *x, float *y);

/* Softmax over the middle axis of a [outer, axis, inner] view. */
void pn_softmax(int64_t outer, int64_t axis, int64_t inner, const float *x, float *y);
/* Transpose: y = x.transpose(perm), ndim <= PN_MAX_DIMS, element size in bytes (1 or 4). */
void pn_transpose(int32_t ndim, const int64_t *in_shape, const int32_t *perm, const void *x,
                  void *y, int32_t element_size);
/* Concat of `count` inputs viewed as [outer, axis_i, inner] into y [outer, sum(axis_i), inner]. */
void pn_concat(int32_t count, const void *const *inputs, const int64_t *axis_sizes, int64_t outer,
               int64_t inner, void *y, int32_t element_size);

/* int8, after the TFLite int8 quantisation spec: activations int8 asymmetric (per-tensor scale and
   zero point), weights int8 symmetric per output channel (zero point 0), bias int32 with scale
   x_scale * w_scale[c], int32 accumulation, requantised with a per-channel multiplier
   x_scale * w_scale[c] / y_scale (rounded half away from zero), plus y_zero_point, clamped to
   [act_min, act_max] (the fused Relu/Clip in the quantised domain; -128..127 for none).
   Exactly: y = clamp(round_half_away((float)acc * multiplier[c]) + y_zero_point, act_min, act_max)
   with acc the exact int32 sum (x - x_zero_point) * w + bias, the product in float32. */
typedef struct {
    pn_conv2d_desc conv;
    int32_t x_zero_point, y_zero_point, act_min, act_max;
} pn_qconv2d_desc;
int64_t pn_qconv2d_packed_bytes(const pn_conv2d_desc *d);
void pn_qconv2d_pack(const pn_conv2d_desc *d, const int8_t *weight, int8_t *packed);
int64_t pn_qconv2d_scratch_bytes(const pn_conv2d_desc *d, int32_t threads);
void pn_qconv2d(pn_pool *pool, const pn_qconv2d_desc *d, const int8_t *x, const int8_t *packed,
                const int32_t *bias, const float *multiplier, int8_t *y, void *scratch);
typedef struct { int32_t m, n, k; int32_t x_zero_point, y_zero_point, act_min, act_max; } pn_qgemm_desc;
int64_t pn_qgemm_packed_bytes(int32_t k, int32_t n);
void pn_qgemm_pack(int32_t k, int32_t n, const int8_t *b, int32_t trans_b, int8_t *packed);
void pn_qgemm(pn_pool *pool, const pn_qgemm_desc *d, const int8_t *a, const int8_t *packed,
              const int32_t *bias, const float *multiplier, int8_t *y);
void pn_quantize(const float *x, int8_t *y, int64_t n, float scale, int32_t zero_point);
void pn_dequantize(const int8_t *x, float *y, int64_t n, float scale, int32_t zero_point);
/* PN_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* PENUMBRA_NN_H */
