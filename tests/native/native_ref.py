"""Drivers for the compiled C core (flight.inference._native) and the NumPy references for it.

The references are deliberately plain (float64 loops and einsum, no shared code with the C side);
each wrapper allocates its outputs, fills the contract's descriptor and calls one kernel.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
from flight.inference._native import ffi, lib

ACT_NONE, ACT_RELU, ACT_CLIP, ACT_LEAKY, ACT_SIGMOID, ACT_TANH, ACT_HARD_SWISH = range(7)
ACT_KINDS = range(7)
ADD, MUL, SUB, DIV = range(4)


# ---- pointers and SIMD levels ----


def ptr(array: np.ndarray) -> object:
    """A typed pointer to a C-contiguous array (the C side assumes contiguity)."""
    assert array.flags.c_contiguous, "the kernels take contiguous arrays"
    ctype = {
        np.dtype(np.float32): "float *",
        np.dtype(np.int8): "int8_t *",
        np.dtype(np.int32): "int32_t *",
        np.dtype(np.int64): "int64_t *",
    }[array.dtype]
    return ffi.cast(ctype, array.ctypes.data)


def simd_levels() -> list[int]:
    """Every level this CPU can run, highest first (the limit caps it)."""
    levels = []
    for cap in (99, 4, 3, 2, 1, 0):
        lib.pn_set_simd_limit(cap)
        level = lib.pn_simd_level()
        if level not in levels:
            levels.append(level)
    lib.pn_set_simd_limit(99)
    return levels


LEVELS = simd_levels()


@contextlib.contextmanager
def simd_limit(level: int) -> Iterator[None]:
    lib.pn_set_simd_limit(level)
    try:
        yield
    finally:
        lib.pn_set_simd_limit(99)


def act_struct(kind: int, alpha: float = 0.0, beta: float = 0.0) -> dict[str, float]:
    return {"kind": kind, "alpha": alpha, "beta": beta}


# ---- NumPy references (float64 inside) ----


def act_ref(x: np.ndarray, kind: int, alpha: float = 0.0, beta: float = 0.0) -> np.ndarray:
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == ACT_RELU:
            return np.maximum(x, 0.0)
        if kind == ACT_CLIP:
            return np.minimum(np.maximum(x, alpha), beta)
        if kind == ACT_LEAKY:
            return np.where(x < 0, x * alpha, x)
        if kind == ACT_SIGMOID:
            return 1.0 / (1.0 + np.exp(-x))
        if kind == ACT_TANH:
            return np.tanh(x)
        if kind == ACT_HARD_SWISH:
            return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    return x


def conv2d_ref(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    stride: tuple[int, int],
    pad: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out_hw: tuple[int, int],
    absolute: bool = False,
) -> np.ndarray:
    """ONNX Conv in float64 (`absolute`: the same sums over |x| |w| + |bias|, for error bounds)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    if absolute:
        x, w = np.abs(x), np.abs(w)
    n, ci, ih, iw = x.shape
    co, ci_g, kh, kw = w.shape
    oh, ow = out_hw
    (sh, sw), (pt, pl), (dh, dw) = stride, pad, dilation
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    xp = np.zeros((n, ci, max(need_h, pt + ih), max(need_w, pl + iw)))
    xp[:, :, pt : pt + ih, pl : pl + iw] = x
    xg = xp.reshape(n, groups, ci_g, xp.shape[2], xp.shape[3])
    wg = w.reshape(groups, co // groups, ci_g, kh, kw)
    y = np.zeros((n, groups, co // groups, oh, ow))
    for ky in range(kh):
        for kx in range(kw):
            patch = xg[
                :,
                :,
                :,
                ky * dh : ky * dh + (oh - 1) * sh + 1 : sh,
                kx * dw : kx * dw + (ow - 1) * sw + 1 : sw,
            ]
            y += np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, ky, kx])
    y = y.reshape(n, co, oh, ow)
    if bias is not None:
        b = np.abs(bias) if absolute else np.asarray(bias, np.float64)
        y += b.reshape(1, co, 1, 1)
    return y


def pool_ref(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
    kind: str,
    count_include_pad: bool = False,
) -> np.ndarray:
    n, c, ih, iw = x.shape
    oh, ow = out_hw
    y = np.empty((n, c, oh, ow))
    for oy in range(oh):
        for ox in range(ow):
            rows = [oy * stride[0] - pad[0] + ky * dilation[0] for ky in range(kernel[0])]
            cols = [ox * stride[1] - pad[1] + kx * dilation[1] for kx in range(kernel[1])]
            rows = [r for r in rows if 0 <= r < ih]
            cols = [q for q in cols if 0 <= q < iw]
            window = x[:, :, rows][:, :, :, cols].astype(np.float64)
            if kind == "max":
                y[:, :, oy, ox] = window.max(axis=(2, 3)) if window.size else -np.inf
            else:
                count = kernel[0] * kernel[1] if count_include_pad else len(rows) * len(cols)
                y[:, :, oy, ox] = window.sum(axis=(2, 3)) / count
    return y


def round_half_away(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def requant_ref(
    acc: np.ndarray, mul: np.ndarray, y_zp: int, lo: int, hi: int, axis: int
) -> np.ndarray:
    """The contract's requantisation, exactly: float32 product, half away from zero, clamp."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    v = acc.astype(np.float32) * np.asarray(mul, np.float32).reshape(shape)
    v = np.clip(v.astype(np.float64), -(2.0**30), 2.0**30)
    q = round_half_away(v) + y_zp
    return np.clip(q, lo, hi).astype(np.int8)


def qconv2d_ref(x, w, bias, mul, x_zp, y_zp, lo, hi, stride, pad, dilation, groups, out_hw):
    """int8 Conv per the contract: exact int sums of (x - x_zp) w (+ bias), then requant_ref."""
    xs = x.astype(np.int64) - x_zp  # padding is the zero point, i.e. 0 after the shift
    acc = conv2d_ref(xs, w.astype(np.int64), None, stride, pad, dilation, groups, out_hw)
    acc = np.rint(acc).astype(np.int64)
    if bias is not None:
        acc += bias.astype(np.int64).reshape(1, -1, 1, 1)
    return requant_ref(acc, mul, y_zp, lo, hi, axis=1)


# ---- wrappers around the kernels ----


def conv_desc(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    stride: tuple[int, int],
    pad: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    out_hw: tuple[int, int],
    act: dict[str, float] | None = None,
) -> object:
    n, ci, ih, iw = x_shape
    co, _, kh, kw = w_shape
    return ffi.new(
        "pn_conv2d_desc *",
        {
            "batch": n,
            "in_channels": ci,
            "in_h": ih,
            "in_w": iw,
            "out_channels": co,
            "out_h": out_hw[0],
            "out_w": out_hw[1],
            "kernel_h": kh,
            "kernel_w": kw,
            "stride_h": stride[0],
            "stride_w": stride[1],
            "dilation_h": dilation[0],
            "dilation_w": dilation[1],
            "pad_top": pad[0],
            "pad_left": pad[1],
            "groups": groups,
            "act": act or act_struct(ACT_NONE),
        },
    )


def conv2d(pool, x, w, bias, stride, pad, dilation, groups, out_hw, act=None) -> np.ndarray:
    d = conv_desc(x.shape, w.shape, stride, pad, dilation, groups, out_hw, act)
    packed = np.empty(lib.pn_conv2d_packed_floats(d), np.float32)
    lib.pn_conv2d_pack(d, ptr(w), ptr(packed))
    scratch = np.empty(max(1, lib.pn_conv2d_scratch_floats(d, 3)), np.float32)
    y = np.full((x.shape[0], w.shape[0], *out_hw), np.nan, np.float32)
    lib.pn_conv2d(
        pool, d, ptr(x), ptr(packed), ffi.NULL if bias is None else ptr(bias), ptr(y), ptr(scratch)
    )
    return y


def gemm(pool, a, b, bias, trans_a, trans_b, act=None) -> np.ndarray:
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    packed = np.empty(lib.pn_gemm_packed_floats(k, n), np.float32)
    lib.pn_gemm_pack(k, n, ptr(b), int(trans_b), ptr(packed))
    d = ffi.new(
        "pn_gemm_desc *",
        {"m": m, "n": n, "k": k, "trans_a": int(trans_a), "act": act or act_struct(ACT_NONE)},
    )
    y = np.full((m, n), np.nan, np.float32)
    lib.pn_gemm(pool, d, ptr(a), ptr(packed), ffi.NULL if bias is None else ptr(bias), ptr(y))
    return y


def error_bound(reference_abs: np.ndarray, depth: int) -> np.ndarray:
    """fp32 tolerance: 1e-6 x sqrt(depth) x the sum of |terms| (about 16x the typical rounding
    error of a float32 dot product of that depth), plus 1e-6 absolute."""
    return 1e-6 + 1e-6 * math.sqrt(max(depth, 1)) * reference_abs
