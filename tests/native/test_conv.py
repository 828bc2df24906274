"""pn_conv2d against a float64 NumPy convolution: padding, strides, dilation, groups (depthwise
included), fused bias and activations, every SIMD level, pools of 1 and 3 threads and none.

Tolerance (fp32): |y - ref| <= 2 x (1e-6 + 1e-6 sqrt(K) sum|w x|) with K = ci/groups x kh x kw,
i.e. about 16x the typical rounding error of a float32 dot product of depth K (the factor 2
covers the activation's slope).
"""

from __future__ import annotations

import native_ref as nr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_ref import LEVELS


def check_conv(
    pools, level, x, w, bias, stride, pad, dilation, groups, out_hw, act=(nr.ACT_NONE, 0.0, 0.0)
):
    kind, alpha, beta = act
    with nr.simd_limit(level):
        y = nr.conv2d(
            pools,
            x,
            w,
            bias,
            stride,
            pad,
            dilation,
            groups,
            out_hw,
            nr.act_struct(kind, alpha, beta),
        )
    ref = nr.conv2d_ref(x, w, bias, stride, pad, dilation, groups, out_hw)
    ref = nr.act_ref(ref, kind, alpha, beta)
    bound = nr.conv2d_ref(x, w, bias, stride, pad, dilation, groups, out_hw, absolute=True)
    depth = w.shape[1] * w.shape[2] * w.shape[3]
    tol = 2 * nr.error_bound(bound, depth)
    assert y.shape == ref.shape
    err = np.abs(y.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), (
        f"conv mismatch at {worst}: got {y[worst]}, want {ref[worst]} (tolerance {tol[worst]})"
    )


@st.composite
def conv_cases(draw):
    groups_kind = draw(st.sampled_from(["dense", "depthwise", "grouped"]))
    n = draw(st.integers(1, 2))
    if groups_kind == "depthwise":
        groups = draw(st.integers(1, 9))
        ci_g, co_g = 1, 1
    elif groups_kind == "grouped":
        groups = draw(st.integers(2, 3))
        ci_g, co_g = draw(st.integers(1, 4)), draw(st.integers(1, 9))
    else:
        groups = 1
        ci_g, co_g = draw(st.integers(1, 12)), draw(st.integers(1, 20))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ih, iw = draw(st.integers(1, 12)), draw(st.integers(1, 40))
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    pt, pb = draw(st.integers(0, kh - 1)), draw(st.integers(0, kh - 1))
    pl, pr = draw(st.integers(0, kw - 1)), draw(st.integers(0, kw - 1))
    oh = (ih + pt + pb - span_h) // sh + 1
    ow = (iw + pl + pr - span_w) // sw + 1
    if oh < 1 or ow < 1:
        pt = pb = pl = pr = 0
        ih, iw = max(ih, span_h), max(iw, span_w)
        oh, ow = (ih - span_h) // sh + 1, (iw - span_w) // sw + 1
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.uniform(-1, 1, (n, groups * ci_g, ih, iw)).astype(np.float32)
    w = rng.uniform(-1, 1, (groups * co_g, ci_g, kh, kw)).astype(np.float32)
    bias = rng.uniform(-1, 1, groups * co_g).astype(np.float32) if draw(st.booleans()) else None
    kind = draw(st.sampled_from(nr.ACT_KINDS))
    alpha, beta = (-0.5, 0.5) if kind == nr.ACT_CLIP else (0.1, 0.0)
    return x, w, bias, (sh, sw), (pt, pl), (dh, dw), groups, (oh, ow), (kind, alpha, beta)


@settings(max_examples=200)
@given(
    case=conv_cases(), level=st.sampled_from(LEVELS), pool_name=st.sampled_from(["1", "3", "none"])
)
def test_conv_matches_numpy_for_drawn_shapes_and_attributes(pools, case, level, pool_name):
    x, w, bias, stride, pad, dilation, groups, out_hw, act = case
    check_conv(pools[pool_name], level, x, w, bias, stride, pad, dilation, groups, out_hw, act)


# Shapes that reach every path of the driver: 1x1 read in place or packed, implicit im2col read
# from the image or from padded strips (rows of 32+ outputs), plain im2col (stride 2, rows that
# do not hold a whole group), depth blocks (K > 256), row blocks (> 96 output channels), edges.
PATH_CASES = {
    "pointwise-small-m": ((1, 40, 7, 9), (10, 40, 1, 1), (1, 1), (0, 0), 1),
    "pointwise-deep-wide": ((1, 300, 5, 11), (130, 300, 1, 1), (1, 1), (0, 0), 1),
    "implicit-and-strips": ((1, 5, 6, 70), (7, 5, 3, 3), (1, 1), (1, 1), 1),
    "implicit-deep": ((1, 33, 4, 64), (20, 33, 3, 3), (1, 1), (1, 1), 1),
    "implicit-dilated": ((1, 3, 9, 45), (4, 3, 3, 3), (1, 1), (2, 2), 1, (2, 2)),
    "strided-im2col": ((2, 6, 17, 19), (9, 6, 3, 3), (2, 2), (1, 1), 1),
    "wide-kernel-rows": ((1, 4, 3, 50), (5, 4, 1, 7), (1, 1), (0, 3), 1),
    "many-rows": ((1, 8, 5, 33), (110, 8, 3, 3), (1, 1), (1, 1), 1),
    "grouped": ((1, 12, 9, 36), (18, 4, 3, 3), (1, 1), (1, 1), 3),
    "depthwise-s1": ((1, 16, 13, 29), (16, 1, 3, 3), (1, 1), (1, 1), 16),
    "depthwise-s2": ((2, 8, 14, 30), (8, 1, 3, 3), (2, 2), (1, 1), 8),
    "depthwise-5x5-s3": ((1, 3, 20, 41), (3, 1, 5, 5), (3, 3), (2, 2), 3),
    "depthwise-tiny": ((1, 96, 7, 7), (96, 1, 3, 3), (1, 1), (1, 1), 96),
}


@pytest.mark.parametrize("name", sorted(PATH_CASES))
@pytest.mark.parametrize("kind", [nr.ACT_NONE, nr.ACT_CLIP, nr.ACT_SIGMOID])
def test_conv_matches_numpy_on_every_driver_path(pools, level, name, kind):
    x_shape, w_shape, stride, pad, groups, *rest = PATH_CASES[name]
    dilation = rest[0] if rest else (1, 1)
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, x_shape).astype(np.float32)
    w = rng.uniform(-1, 1, w_shape).astype(np.float32)
    bias = rng.uniform(-1, 1, w_shape[0]).astype(np.float32)
    span = [(k - 1) * d + 1 for k, d in zip(w_shape[2:], dilation, strict=True)]
    # symmetric padding, as ONNX models usually have
    out_hw = tuple(
        (i + 2 * p - s) // st + 1
        for i, p, s, st in zip(x_shape[2:], pad, span, stride, strict=True)
    )
    for pool_name in ("1", "3"):
        check_conv(
            pools[pool_name],
            level,
            x,
            w,
            bias,
            stride,
            pad,
            dilation,
            groups,
            out_hw,
            (kind, 0.0, 6.0) if kind == nr.ACT_CLIP else (kind, 0.0, 0.0),
        )


def test_depthwise_rows_too_wide_for_the_workspace_take_the_plain_loops(pools, level):
    """5000 columns at stride 2 do not fit a NULL pool's stack buffer even one row at a time."""
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (1, 2, 3, 5000)).astype(np.float32)
    w = rng.uniform(-1, 1, (2, 1, 3, 3)).astype(np.float32)
    bias = rng.uniform(-1, 1, 2).astype(np.float32)
    for pool_name in ("none", "1"):
        check_conv(
            pools[pool_name],
            level,
            x,
            w,
            bias,
            (2, 2),
            (1, 1),
            (1, 1),
            2,
            (2, 2500),
            (nr.ACT_SIGMOID, 0.0, 0.0),
        )


def test_conv_propagates_nan_through_relu_and_clip(pools, level):
    x = np.zeros((1, 2, 3, 40), np.float32)
    x[0, 1, 1, 17] = np.nan
    w = np.ones((4, 2, 3, 3), np.float32)
    for kind in (nr.ACT_RELU, nr.ACT_CLIP):
        with nr.simd_limit(level):
            y = nr.conv2d(
                pools["1"],
                x,
                w,
                None,
                (1, 1),
                (1, 1),
                (1, 1),
                1,
                (3, 40),
                nr.act_struct(kind, 0.0, 6.0),
            )
        assert np.isnan(y[0, :, 0:3, 16:19]).all(), "NaN must reach every output it touches"
        assert not np.isnan(y[0, :, :, :15]).any() and not np.isnan(y[0, :, :, 20:]).any()


def test_conv_packed_weights_stay_valid_across_simd_levels(pools):
    """Weights are packed once at load; the level may change afterwards (tests, benchmarks)."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (1, 7, 9, 35)).astype(np.float32)
    w = rng.uniform(-1, 1, (13, 7, 3, 3)).astype(np.float32)
    d = nr.conv_desc(x.shape, w.shape, (1, 1), (1, 1), (1, 1), 1, (9, 35))
    packed = np.empty(nr.lib.pn_conv2d_packed_floats(d), np.float32)
    with nr.simd_limit(LEVELS[0]):
        nr.lib.pn_conv2d_pack(d, nr.ptr(w), nr.ptr(packed))
    ref = nr.conv2d_ref(x, w, None, (1, 1), (1, 1), (1, 1), 1, (9, 35))
    for level in LEVELS:
        y = np.empty((1, 13, 9, 35), np.float32)
        with nr.simd_limit(level):
            nr.lib.pn_conv2d(
                pools["3"], d, nr.ptr(x), nr.ptr(packed), nr.ffi.NULL, nr.ptr(y), nr.ffi.NULL
            )
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
