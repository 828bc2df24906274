"""int8 kernels against an exact NumPy model of the contract (TFLite int8 spec): int32 sums of
(x - x_zero_point) * w + bias, times the per-channel multiplier in float32, rounded half away from
zero, plus y_zero_point, clamped. Tolerance: exactly equal (every SIMD level computes the same
IEEE float32 product and rounds it the same way). QuantizeLinear/DequantizeLinear follow ONNX.
"""

from __future__ import annotations

import native_ref as nr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_ref import LEVELS, ffi, lib

POOLS = st.sampled_from(["1", "3", "none"])


def qconv(pool, x, w, bias, mul, x_zp, y_zp, lo, hi, stride, pad, dilation, groups, out_hw):
    d = ffi.new("pn_qconv2d_desc *")
    d.conv = nr.conv_desc(x.shape, w.shape, stride, pad, dilation, groups, out_hw)[0]
    d.x_zero_point, d.y_zero_point, d.act_min, d.act_max = x_zp, y_zp, lo, hi
    packed = np.empty(lib.pn_qconv2d_packed_bytes(ffi.addressof(d.conv)), np.int8)
    lib.pn_qconv2d_pack(ffi.addressof(d.conv), nr.ptr(w), nr.ptr(packed))
    scratch = np.empty(max(1, lib.pn_qconv2d_scratch_bytes(ffi.addressof(d.conv), 3)), np.int8)
    y = np.full((x.shape[0], w.shape[0], *out_hw), 99, np.int8)
    lib.pn_qconv2d(
        pool,
        d,
        nr.ptr(x),
        nr.ptr(packed),
        ffi.NULL if bias is None else nr.ptr(bias),
        nr.ptr(mul),
        nr.ptr(y),
        ffi.cast("void *", scratch.ctypes.data),
    )
    return y


@st.composite
def qconv_cases(draw):
    kind = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
    if kind == "depthwise":
        groups, ci_g, co_g = draw(st.integers(1, 8)), 1, 1
    elif kind == "grouped":
        groups, ci_g, co_g = (
            draw(st.integers(2, 3)),
            draw(st.integers(1, 5)),
            draw(st.integers(1, 8)),
        )
    else:
        groups, ci_g, co_g = 1, draw(st.integers(1, 70)), draw(st.integers(1, 20))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ih, iw = draw(st.integers(3, 10)), draw(st.integers(3, 24))
    pt, pl = draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))
    oh = max(1, (ih + 2 * pt - ((kh - 1) * dh + 1)) // sh + 1)
    ow = max(1, (iw + 2 * pl - ((kw - 1) * dw + 1)) // sw + 1)
    if (oh - 1) * sh - pt + (kh - 1) * dh >= ih + pt or ih + 2 * pt < (kh - 1) * dh + 1:
        pt, oh = 0, 1
        ih = max(ih, (kh - 1) * dh + 1)
    if (ow - 1) * sw - pl + (kw - 1) * dw >= iw + pl or iw + 2 * pl < (kw - 1) * dw + 1:
        pl, ow = 0, 1
        iw = max(iw, (kw - 1) * dw + 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 2))
    x = rng.integers(-128, 128, (n, groups * ci_g, ih, iw), dtype=np.int8)
    w = rng.integers(-127, 128, (groups * co_g, ci_g, kh, kw), dtype=np.int8)
    bias = (
        rng.integers(-5000, 5000, groups * co_g).astype(np.int32) if draw(st.booleans()) else None
    )
    mul = rng.uniform(1e-4, 4e-3, groups * co_g).astype(np.float32)
    x_zp, y_zp = draw(st.integers(-128, 127)), draw(st.integers(-20, 20))
    lo, hi = draw(st.sampled_from([(-128, 127), (y_zp, 127), (y_zp, min(127, y_zp + 60))]))
    return x, w, bias, mul, x_zp, y_zp, lo, hi, (sh, sw), (pt, pl), (dh, dw), groups, (oh, ow)


@settings(max_examples=150)
@given(case=qconv_cases(), level=st.sampled_from(LEVELS), pool_name=POOLS)
def test_qconv_is_exact_for_drawn_shapes(pools, case, level, pool_name):
    with nr.simd_limit(level):
        y = qconv(pools[pool_name], *case)
    np.testing.assert_array_equal(y, nr.qconv2d_ref(*case))


@pytest.mark.parametrize(
    "x_shape,w_shape,pad,groups",
    [
        ((1, 300, 4, 9), (70, 300, 1, 1), (0, 0), 1),  # depth > 256: several depth blocks
        ((1, 64, 6, 21), (100, 64, 3, 3), (1, 1), 1),  # rows > 96
        ((2, 24, 9, 9), (24, 1, 3, 3), (1, 1), 24),  # depthwise
        ((1, 2, 24, 25), (2, 1, 23, 23), (0, 1), 2),  # depthwise, > 518 taps: the int32 loops
    ],
)
def test_qconv_is_exact_on_large_blocks(pools, level, x_shape, w_shape, pad, groups):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, x_shape, dtype=np.int8)
    w = rng.integers(-127, 128, w_shape, dtype=np.int8)
    bias = rng.integers(-20000, 20000, w_shape[0]).astype(np.int32)
    mul = rng.uniform(1e-5, 1e-3, w_shape[0]).astype(np.float32)
    out_hw = tuple(i + 2 * p - k + 1 for i, p, k in zip(x_shape[2:], pad, w_shape[2:], strict=True))
    case = (x, w, bias, mul, 3, -4, -128, 127, (1, 1), pad, (1, 1), groups, out_hw)
    for pool_name in ("1", "3", "none"):
        with nr.simd_limit(level):
            y = qconv(pools[pool_name], *case)
        np.testing.assert_array_equal(y, nr.qconv2d_ref(*case))


def qgemm(pool, a, b, trans_b, bias, mul, x_zp, y_zp, lo, hi):
    m, k = a.shape
    n = b.shape[0] if trans_b else b.shape[1]
    packed = np.empty(lib.pn_qgemm_packed_bytes(k, n), np.int8)
    lib.pn_qgemm_pack(k, n, nr.ptr(b), int(trans_b), nr.ptr(packed))
    d = ffi.new(
        "pn_qgemm_desc *",
        {
            "m": m,
            "n": n,
            "k": k,
            "x_zero_point": x_zp,
            "y_zero_point": y_zp,
            "act_min": lo,
            "act_max": hi,
        },
    )
    y = np.full((m, n), 99, np.int8)
    lib.pn_qgemm(
        pool,
        d,
        nr.ptr(a),
        nr.ptr(packed),
        ffi.NULL if bias is None else nr.ptr(bias),
        nr.ptr(mul),
        nr.ptr(y),
    )
    return y


@settings(max_examples=150)
@given(
    m=st.integers(1, 30),
    n=st.integers(1, 60),
    k=st.one_of(st.integers(1, 40), st.integers(500, 530)),
    trans_b=st.booleans(),
    with_bias=st.booleans(),
    x_zp=st.integers(-128, 127),
    y_zp=st.integers(-30, 30),
    clamp=st.booleans(),
    level=st.sampled_from(LEVELS),
    pool_name=POOLS,
    seed=st.integers(0, 2**32 - 1),
)
def test_qgemm_is_exact(
    pools, m, n, k, trans_b, with_bias, x_zp, y_zp, clamp, level, pool_name, seed
):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-127, 128, (n, k) if trans_b else (k, n), dtype=np.int8)
    bias = rng.integers(-30000, 30000, n).astype(np.int32) if with_bias else None
    mul = rng.uniform(1e-5, 2e-3, n).astype(np.float32)
    lo, hi = (y_zp, 127) if clamp else (-128, 127)
    with nr.simd_limit(level):
        y = qgemm(pools[pool_name], a, b, trans_b, bias, mul, x_zp, y_zp, lo, hi)
    w = (b.T if trans_b else b).astype(np.int64)
    acc = (a.astype(np.int64) - x_zp) @ w + (0 if bias is None else bias.astype(np.int64))
    np.testing.assert_array_equal(y, nr.requant_ref(acc, mul, y_zp, lo, hi, axis=1))


def test_requantisation_rounds_half_away_from_zero(pools, level):
    """Sums that land exactly on .5 after the multiplier: 2.5 -> 3, -2.5 -> -3, 0.5 -> 1."""
    a = np.array([[5, -5, 1, -1, 3, -3, 0, 7, 9, 11]], np.int8)
    b = np.ones((1, 1), np.int8)
    mul = np.array([0.5], np.float32)
    with nr.simd_limit(level):
        y = qgemm(pools["1"], a.T.copy(), b, False, None, mul, 0, 0, -128, 127)
    np.testing.assert_array_equal(y[:, 0], [3, -3, 1, -1, 2, -2, 0, 4, 5, 6])


def test_quantize_follows_onnx_round_half_to_even_and_saturates():
    x = np.array([0.0, 0.5, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0, np.nan, 0.26], np.float32)
    y = np.empty(x.shape, np.int8)
    lib.pn_quantize(nr.ptr(x), nr.ptr(y), x.size, 0.5, 3)
    with np.errstate(invalid="ignore"):
        want = np.clip(np.rint(x / np.float32(0.5)) + 3, -128, 127)
    want[8] = 3  # NaN quantises to the zero point
    np.testing.assert_array_equal(y, want.astype(np.int8))


def test_dequantize_is_scale_times_offset():
    x = np.arange(-128, 128, dtype=np.int8)
    y = np.empty(x.shape, np.float32)
    lib.pn_dequantize(nr.ptr(x), nr.ptr(y), x.size, 0.25, -7)
    np.testing.assert_array_equal(y, (x.astype(np.float32) + 7) * np.float32(0.25))
