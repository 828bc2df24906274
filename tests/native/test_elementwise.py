"""Broadcasting binary ops, pooling, global average pool, softmax, transpose, concat vs NumPy.

Tolerances: binary ops and transpose/concat/max pool are exact (one float32 operation or a copy);
average pools and softmax within rtol 1e-5 (a float32 sum of at most a few hundred terms).
"""

from __future__ import annotations

import native_ref as nr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from native_ref import LEVELS, ffi, lib

OPS = {nr.ADD: np.add, nr.MUL: np.multiply, nr.SUB: np.subtract, nr.DIV: np.divide}


def strides_for(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    """Element strides of a contiguous `shape` broadcast to `out_shape` (0 on broadcast axes)."""
    shape = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(0 if size == 1 else step)
        step *= size
    return np.array(strides[::-1], np.int64)


@settings(max_examples=150)
@given(
    shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=6, max_side=5),
    op=st.sampled_from(sorted(OPS)),
    kind=st.sampled_from([nr.ACT_NONE, nr.ACT_RELU, nr.ACT_CLIP, nr.ACT_SIGMOID]),
    level=st.sampled_from(LEVELS),
    seed=st.integers(0, 2**32 - 1),
)
def test_binary_broadcasts_like_numpy(shapes, op, kind, level, seed):
    (a_shape, b_shape), out_shape = shapes.input_shapes, shapes.result_shape
    rng = np.random.default_rng(seed)
    # (1-element arrays for 0-d shapes: the C side needs an address)
    a = np.ascontiguousarray(rng.uniform(-2, 2, a_shape), np.float32).reshape(a_shape or (1,))
    sign = rng.choice([-1, 1], b_shape)
    b = np.ascontiguousarray(rng.uniform(0.5, 2, b_shape) * sign, np.float32).reshape(
        b_shape or (1,)
    )
    out = out_shape if out_shape else (1,)
    shape, a_strides, b_strides = (
        np.array(out, np.int64),
        strides_for(a.shape, out),
        strides_for(b.shape, out),
    )
    y = np.full(out, np.nan, np.float32)
    act = ffi.new("pn_act *", nr.act_struct(kind, -0.5, 0.5))
    with nr.simd_limit(level):
        lib.pn_binary(
            op,
            len(out),
            nr.ptr(shape),
            nr.ptr(a),
            nr.ptr(a_strides),
            nr.ptr(b),
            nr.ptr(b_strides),
            nr.ptr(y),
            act if kind != nr.ACT_NONE else ffi.NULL,
        )
    ref = OPS[op](a.reshape(a_shape), b.reshape(b_shape)).astype(np.float32)  # exact: one float op
    if kind != nr.ACT_NONE:
        want = nr.act_ref(ref, kind, -0.5, 0.5)
        np.testing.assert_allclose(y.reshape(ref.shape), want, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(y.reshape(ref.shape), ref)


def test_binary_in_place_on_the_left_operand():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.array([1, 2, 3], np.float32).reshape(1, 3, 1)
    want = a + b
    shape = np.array(a.shape, np.int64)
    a_strides, b_strides = strides_for(a.shape, a.shape), strides_for(b.shape, a.shape)
    lib.pn_binary(
        nr.ADD,
        3,
        nr.ptr(shape),
        nr.ptr(a),
        nr.ptr(a_strides),
        nr.ptr(b),
        nr.ptr(b_strides),
        nr.ptr(a),
        ffi.NULL,
    )
    np.testing.assert_array_equal(a, want)


def pool_desc(x_shape, kernel, stride, pad, dilation, out_hw, include_pad=0):
    n, c, ih, iw = x_shape
    return ffi.new(
        "pn_pool2d_desc *",
        {
            "batch": n,
            "channels": c,
            "in_h": ih,
            "in_w": iw,
            "out_h": out_hw[0],
            "out_w": out_hw[1],
            "kernel_h": kernel[0],
            "kernel_w": kernel[1],
            "stride_h": stride[0],
            "stride_w": stride[1],
            "dilation_h": dilation[0],
            "dilation_w": dilation[1],
            "pad_top": pad[0],
            "pad_left": pad[1],
            "count_include_pad": include_pad,
        },
    )


@settings(max_examples=100)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 5),
    ih=st.integers(1, 12),
    iw=st.integers(1, 12),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    dh=st.integers(1, 2),
    dw=st.integers(1, 2),
    ceil=st.booleans(),
    include_pad=st.booleans(),
    kind=st.sampled_from(["max", "avg"]),
    pool_name=st.sampled_from(["1", "3", "none"]),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_pool2d_matches_numpy(
    pools, n, c, ih, iw, kh, kw, sh, sw, dh, dw, ceil, include_pad, kind, pool_name, seed, data
):
    pt, pl = data.draw(st.integers(0, kh - 1)), data.draw(st.integers(0, kw - 1))
    pb, pr = data.draw(st.integers(0, kh - 1)), data.draw(st.integers(0, kw - 1))
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if ih + pt + pb < span_h or iw + pl + pr < span_w:
        ih, iw = ih + span_h, iw + span_w
    rnd = np.ceil if ceil else np.floor
    oh = int(rnd((ih + pt + pb - span_h) / sh)) + 1
    ow = int(rnd((iw + pl + pr - span_w) / sw)) + 1
    # ceil mode never starts a window in the bottom/right padding (ONNX, PyTorch)
    oh -= (oh - 1) * sh >= ih + pt
    ow -= (ow - 1) * sw >= iw + pl
    x = np.random.default_rng(seed).uniform(-1, 1, (n, c, ih, iw)).astype(np.float32)
    d = pool_desc(x.shape, (kh, kw), (sh, sw), (pt, pl), (dh, dw), (oh, ow), int(include_pad))
    y = np.full((n, c, oh, ow), np.nan, np.float32)
    (lib.pn_maxpool2d if kind == "max" else lib.pn_avgpool2d)(
        pools[pool_name], d, nr.ptr(x), nr.ptr(y)
    )
    ref = nr.pool_ref(x, (kh, kw), (sh, sw), (pt, pl), (dh, dw), (oh, ow), kind, include_pad)
    if kind == "max":
        np.testing.assert_array_equal(y, ref.astype(np.float32))
    else:
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_maxpool_propagates_nan(pools):
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    d = pool_desc(x.shape, (2, 2), (2, 2), (0, 0), (1, 1), (2, 2))
    y = np.empty((1, 1, 2, 2), np.float32)
    lib.pn_maxpool2d(pools["1"], d, nr.ptr(x), nr.ptr(y))
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1, 1])


@pytest.mark.parametrize("plane", [1, 7, 8, 49, 1000])
def test_global_avgpool_matches_numpy(plane):
    x = np.random.default_rng(plane).uniform(-1, 1, (6, plane)).astype(np.float32)
    y = np.empty(6, np.float32)
    lib.pn_global_avgpool(6, plane, nr.ptr(x), nr.ptr(y))
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=1), rtol=1e-5, atol=1e-6)


@settings(max_examples=50)
@given(
    outer=st.integers(1, 4),
    axis=st.integers(1, 20),
    inner=st.integers(1, 70),
    scale=st.sampled_from([1.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_softmax_matches_numpy(outer, axis, inner, scale, seed):
    x = (np.random.default_rng(seed).uniform(-1, 1, (outer, axis, inner)) * scale).astype(
        np.float32
    )
    y = np.empty_like(x)
    lib.pn_softmax(outer, axis, inner, nr.ptr(x), nr.ptr(y))
    e = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


@settings(max_examples=60)
@given(
    shape=hnp.array_shapes(min_dims=0, max_dims=6, min_side=0, max_side=5),
    dtype=st.sampled_from([np.float32, np.int8]),
    data=st.data(),
)
def test_transpose_matches_numpy(shape, dtype, data):
    perm = data.draw(st.permutations(range(len(shape))))
    x = np.arange(np.prod(shape)).astype(dtype).reshape(shape)
    y = np.empty(np.transpose(x, perm).shape, dtype)
    transpose(x, perm, y)
    np.testing.assert_array_equal(y, np.transpose(x, perm))


def transpose(x: np.ndarray, perm, y: np.ndarray) -> None:
    shape, order = np.array(x.shape, np.int64), np.array(perm, np.int32)
    lib.pn_transpose(
        x.ndim,
        nr.ptr(shape),
        ffi.cast("int32_t *", order.ctypes.data),
        ffi.cast("void *", x.ctypes.data),
        ffi.cast("void *", y.ctypes.data),
        x.itemsize,
    )


def test_transpose_pixel_shuffle_of_the_unet():
    x = np.random.default_rng(0).standard_normal((1, 4, 2, 2, 8, 8)).astype(np.float32)
    perm = (0, 1, 4, 2, 5, 3)
    y = np.empty((1, 4, 8, 2, 8, 2), np.float32)
    transpose(x, perm, y)
    np.testing.assert_array_equal(y, np.transpose(x, perm))


@settings(max_examples=40)
@given(
    count=st.integers(1, 4),
    outer=st.integers(1, 4),
    inner=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.int8]),
    data=st.data(),
)
def test_concat_matches_numpy(count, outer, inner, dtype, data):
    sizes = [data.draw(st.integers(0, 5)) for _ in range(count)]
    parts = [
        np.arange(outer * s * inner).astype(dtype).reshape(outer, s, inner) + 10 * i
        for i, s in enumerate(sizes)
    ]
    y = np.empty((outer, sum(sizes), inner), dtype)
    keep = [ffi.cast("void *", p.ctypes.data) for p in parts]
    inputs = ffi.new("void *[]", keep)
    axis_sizes = np.array(sizes, np.int64)
    lib.pn_concat(
        count,
        inputs,
        nr.ptr(axis_sizes),
        outer,
        inner,
        ffi.cast("void *", y.ctypes.data),
        y.itemsize,
    )
    np.testing.assert_array_equal(y, np.concatenate(parts, axis=1))
