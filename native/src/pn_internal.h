/* pn_internal.h: what the translation units of the inference core share (not part of the API). */
#ifndef PN_INTERNAL_H
#define PN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "penumbra_nn.h"

#define PN_VERSION "penumbra-nn 0.1"

/* Register tiles. They are fixed per architecture (not per SIMD level) so that packed weights stay
   valid whatever level runs them: the generic C kernels use the same tiles as the SIMD ones.
   fp32: MR rows (left operand, broadcast) x NR columns (right operand, vector loads).
   int8: QMR x QNR, with the depth packed in units of QKU (x86: int16 pairs for pmaddwd;
   aarch64: int8 quads for sdot). */
#if defined(__aarch64__)
#define PN_MR 8
#define PN_NR 12
#define PN_QMR 8
#define PN_QNR 12
#define PN_QKU 4
typedef int8_t pn_qv; /* element type of packed int8 operands */
#else
#define PN_MR 6
#define PN_NR 16
#define PN_QMR 6
#define PN_QNR 16
#define PN_QKU 2
typedef int16_t pn_qv;
#endif

/* Cache blocking (fp32): depth KC, columns per packed block NCB, rows per packed A block MCB. */
#define PN_KC 256
#define PN_NCB (PN_NR * 12)
#define PN_MCB (PN_MR * 16)
/* Widest column block (shallow depths) and the L2 share a depth block of B may take (floats). */
#define PN_NCB_MAX 4096
#define PN_L2_FLOATS (256 * 1024)
/* int8 blocking: depth per block QKC (a multiple of QKU), columns QNCB, rows QMCB. */
#define PN_QKC 256
#define PN_QNCB (PN_QNR * 16)
#define PN_QMCB (PN_QMR * 16)

/* Per-thread workspace the pool owns (bytes): the larger of the fp32 and int8 needs, rounded. */
#define PN_WS_FP32_FLOATS ((size_t)PN_KC * PN_NCB + (size_t)PN_MCB * PN_KC + 64)
#define PN_WS_INT8_BYTES                                                                        \
    ((size_t)PN_QKC * PN_QNCB * sizeof(pn_qv) + (size_t)PN_QMCB * PN_QKC * sizeof(pn_qv) +     \
     (size_t)PN_QMCB * PN_QNCB * sizeof(int32_t) + 256)
#define PN_WS_BYTES_RAW                                                                         \
    (PN_WS_FP32_FLOATS * sizeof(float) > PN_WS_INT8_BYTES ? PN_WS_FP32_FLOATS * sizeof(float)  \
                                                          : PN_WS_INT8_BYTES)
#define PN_WS_BYTES ((PN_WS_BYTES_RAW + 4095) & ~(size_t)4095)

#define PN_ALIGN 64
#define PN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PN_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline int64_t pn_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t pn_round_up(int64_t a, int64_t b) { return pn_ceil_div(a, b) * b; }

/* ---- CPU features ---- */
int pn_active_level(void); /* min(detected, limit) */

/* ---- thread pool ---- */
/* fn(ctx, task, workspace, workspace_bytes): workspace is the running thread's private buffer
   (64-byte aligned): PN_WS_BYTES from the pool, or PN_STACK_WS_BYTES on the caller's stack when
   the pool is NULL. Blocking adapts to the size. */
typedef void (*pn_task_fn)(void *ctx, int64_t task, void *workspace, size_t workspace_bytes);
/* Runs fn for every task in 0..count-1 and returns when all are done. */
void pn_parallel_for(pn_pool *pool, int64_t count, pn_task_fn fn, void *ctx);
int32_t pn_pool_effective_threads(const pn_pool *pool); /* 1 for NULL or after fork */
#define PN_STACK_WS_BYTES 49152

/* ---- activation epilogue ---- */
/* Clamp form of the cheap activations: NONE/RELU/CLIP as [lo, hi] (with `clamp` false for NONE so
   that values, NaN included, pass untouched), LEAKY with slope; the rest need a separate pass. */
typedef struct {
    int32_t kind;
    int32_t clamp; /* apply [lo, hi] */
    float lo, hi;
    float alpha;   /* leaky slope */
    int32_t post;  /* SIGMOID/TANH/HARD_SWISH: run pn_act_rows after the tile is final */
} pn_epi;
void pn_epi_from_act(const pn_act *act, pn_epi *e);
/* y[r*ld + c] = act(y[...]) for r < rows, c < cols (post activations and generic use). */
void pn_act_rows(const pn_act *act, float *y, int64_t ld, int64_t rows, int64_t cols);

/* ---- fp32 GEMM microkernels ----
   A tile of PN_MR rows x (panels * PN_NR) columns:
   c[i*ldc + j] = (first ? bias_row[i] + bias_col[j] (NULL = 0) : c[i*ldc + j])
                  + sum_k a[k*PN_MR + i] * B(k, j);
   then, when `last`, the clamp/leaky part of the epilogue. Kernels with rows_partial in their
   table compute and store only the first `rows` rows (the others get rows == PN_MR). Row k of
   B's first panel is at
   b + k*ldb, or at b + boff[k] when boff is given (implicit im2col: the rows of Xcol read straight
   from the image); panel p's row k is that plus p * bstride. */
typedef struct {
    const float *bias_row; /* PN_MR values or NULL */
    const float *bias_col; /* panels * PN_NR values or NULL */
    int32_t first, last;
    const pn_epi *epi;
    const int64_t *boff;
    int64_t bstride;
    int32_t rows; /* valid rows (kernels with rows_partial; else PN_MR); beyond PN_MR (kernels
                     with two_row_panels) rows PN_MR.. come from the panel at a2 */
    const float *a2;
    int32_t cols; /* valid columns (kernels with cols_partial; else panels * PN_NR) */
} pn_ukr_args;
typedef void (*pn_sgemm_ukr_fn)(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                                int64_t ldc, const pn_ukr_args *args);
void pn_sgemm_ukr_generic(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                          int64_t ldc, const pn_ukr_args *args);

/* ---- int8 GEMM microkernels ----
   acc[i*ldacc + j] (+)= sum_k a[i,k] * b[k,j] over kq units of PN_QKU depth, a packed
   [kq][PN_QMR][PN_QKU], b packed [kq][PN_QNR][PN_QKU]; init when `first`. */
typedef void (*pn_qgemm_ukr_fn)(int64_t kq, const pn_qv *a, const pn_qv *b, int32_t *acc,
                                int64_t ldacc, int32_t first);
void pn_qgemm_ukr_generic(int64_t kq, const pn_qv *a, const pn_qv *b, int32_t *acc, int64_t ldacc,
                          int32_t first);
/* Requantise one row of int32 sums: y[j] = clamp(round_away((float)(acc[j] + add[j]) * mul[j]) + zp).
   add/mul are per element (per output channel along the row) or, when the stride is 0, one value. */
typedef struct {
    const int32_t *add;
    int64_t add_stride; /* 0 or 1 */
    const float *mul;
    int64_t mul_stride; /* 0 or 1 */
    int32_t zp, lo, hi;
} pn_requant_args;
typedef void (*pn_requant_fn)(const int32_t *acc, int64_t n, const pn_requant_args *r, int8_t *y);
void pn_requant_generic(const int32_t *acc, int64_t n, const pn_requant_args *r, int8_t *y);

/* ---- depthwise rows ----
   out[ox] = bias + sum over t < taps of w[t] * src[t][ox], for ox < n (n a multiple of 8): each tap
   reads a contiguous run (the image rows are copied zero-padded and, for strides > 1, split into
   phases, so that every stride and dilation becomes contiguous loads). */
typedef void (*pn_dw_row_fn)(int32_t taps, const float *const *src, const float *w, float bias,
                             const pn_epi *e, float *out, int64_t n);
void pn_dw_row_generic(int32_t taps, const float *const *src, const float *w, float bias,
                       const pn_epi *e, float *out, int64_t n);
/* even[j] = src[2j], odd[j] = src[2j + 1] for j < pairs (the phases of a stride-2 row) */
typedef void (*pn_deint2_fn)(const float *src, float *even, float *odd, int64_t pairs);
void pn_deint2_generic(const float *src, float *even, float *odd, int64_t pairs);

/* ---- kernels chosen by SIMD level ---- */
typedef struct {
    int32_t level;
    pn_sgemm_ukr_fn sgemm_ukr;  /* sgemm_panels panels of PN_NR columns per call */
    int32_t sgemm_panels;
    pn_sgemm_ukr_fn sgemm_ukr1; /* one panel (the odd one at an edge) */
    int32_t rows_partial;       /* both take args->rows < PN_MR and touch only those rows */
    int32_t cols_partial;       /* sgemm_ukr takes any args->cols up to its width, in place */
    int32_t two_row_panels;     /* sgemm_ukr takes up to 2 * PN_MR rows (args->a2) */
    pn_qgemm_ukr_fn qgemm_ukr;
    pn_requant_fn requant;
    pn_dw_row_fn dw_row;
    pn_deint2_fn deint2;
    /* in-place activation over n floats */
    void (*act)(const pn_act *act, const float *x, float *y, int64_t n);
} pn_kernels;
const pn_kernels *pn_kernels_active(void);
void pn_activation_generic(const pn_act *act, const float *x, float *y, int64_t n);

#if defined(__x86_64__)
void pn_sgemm_ukr_avx2(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                       int64_t ldc, const pn_ukr_args *args);
void pn_qgemm_ukr_avx2(int64_t kq, const pn_qv *a, const pn_qv *b, int32_t *acc, int64_t ldacc,
                       int32_t first);
void pn_requant_avx2(const int32_t *acc, int64_t n, const pn_requant_args *r, int8_t *y);
void pn_dw_row_avx2(int32_t taps, const float *const *src, const float *w, float bias,
                    const pn_epi *e, float *out, int64_t n);
void pn_deint2_avx2(const float *src, float *even, float *odd, int64_t pairs);
void pn_activation_avx2(const pn_act *act, const float *x, float *y, int64_t n);
void pn_sgemm_ukr_avx512(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                         int64_t ldc, const pn_ukr_args *args);
#endif
#if defined(__aarch64__)
void pn_sgemm_ukr_neon(int64_t kc, const float *a, const float *b, int64_t ldb, float *c,
                       int64_t ldc, const pn_ukr_args *args);
void pn_qgemm_ukr_neon(int64_t kq, const pn_qv *a, const pn_qv *b, int32_t *acc, int64_t ldacc,
                       int32_t first);
void pn_qgemm_ukr_dotprod(int64_t kq, const pn_qv *a, const pn_qv *b, int32_t *acc,
                          int64_t ldacc, int32_t first);
void pn_requant_neon(const int32_t *acc, int64_t n, const pn_requant_args *r, int8_t *y);
void pn_dw_row_neon(int32_t taps, const float *const *src, const float *w, float bias,
                    const pn_epi *e, float *out, int64_t n);
void pn_deint2_neon(const float *src, float *even, float *odd, int64_t pairs);
void pn_activation_neon(const pn_act *act, const float *x, float *y, int64_t n);
#endif

/* ---- depthwise (depthwise.c) ---- */
void pn_conv2d_depthwise(pn_pool *pool, const pn_conv2d_desc *d, const float *x, const float *w,
                         const float *bias, float *y);
/* int8 through the float kernels, exact for kernels of up to 518 taps (pn_qdw_supported);
   w holds the int8 weights converted to float (pn_qconv2d_pack does it). */
int pn_qdw_supported(const pn_conv2d_desc *d);
void pn_qconv2d_depthwise(pn_pool *pool, const pn_qconv2d_desc *q, const int8_t *x,
                          const float *w, const int32_t *bias, const float *multiplier,
                          int8_t *y);

/* ---- shared GEMM driver (fp32) ---- */
enum { PN_B_PACKED = 0, PN_B_RAW = 1, PN_B_IM2COL = 2 };
typedef struct {
    /* image geometry for im2col (one image of one group) */
    const float *x; /* channel 0 of this group in this image */
    int32_t in_h, in_w, out_h, out_w;
    int32_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
} pn_im2col_geom;
typedef struct {
    int64_t m, n, k;
    /* left operand: packed panels over the whole depth (a_packed) or raw with strides */
    const float *a_packed;
    const float *a;
    int64_t a_rs, a_cs;
    /* right operand */
    int32_t b_kind;
    const float *b_packed; /* PN_B_PACKED: NR panels over the whole depth */
    const float *b;        /* PN_B_RAW */
    int64_t b_rs, b_cs;
    pn_im2col_geom im; /* PN_B_IM2COL */
    /* output and epilogue */
    float *c;
    int64_t ldc;
    const float *bias_row; /* m values or NULL */
    const float *bias_col; /* n values or NULL */
    const pn_act *act;
} pn_sgemm_problem;
/* Computes rows [m0, m1) x columns [n0, n1) of the problem (n0 a multiple of PN_NR, m0 of PN_MR)
   with the given workspace (PN_WS_BYTES or PN_STACK_WS_BYTES). */
void pn_sgemm_block(const pn_sgemm_problem *p, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                    void *workspace, size_t workspace_bytes);
/* How to cut an m x n x k problem into tasks for `threads` workers. */
typedef struct {
    int64_t row_chunks, col_chunks, rows_per_chunk, cols_per_chunk;
} pn_split;
pn_split pn_split_2d(int64_t m, int64_t n, int64_t k, int32_t threads, int64_t mr, int64_t nr);
int64_t pn_sgemm_task_cols(void);

#endif /* PN_INTERNAL_H */
