"""The native planner: views cost no call or memory, broadcasts collapse, no allocation per run."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from inference_oracle import random_feeds, require

from flight.inference import load
from flight.inference.native_backend import broadcast_strides, collapse_dims
from hil.models import cloud_mask_unet, one_op_model


def test_broadcast_strides_are_zero_on_broadcast_axes():
    assert broadcast_strides((3, 1), (2, 3, 4)) == [0, 1, 0]
    assert broadcast_strides((2, 3, 4), (2, 3, 4)) == [12, 4, 1]
    assert broadcast_strides((), (5,)) == [0]


def test_contiguous_operands_collapse_to_one_axis():
    shape = (2, 3, 4)
    dims, (a, b) = collapse_dims(
        shape, broadcast_strides(shape, shape), broadcast_strides(shape, shape)
    )
    assert dims == [24] and a == [1] and b == [1]


def test_per_channel_operand_keeps_the_channel_axis():
    out = (1, 8, 5, 5)
    dims, (a, b) = collapse_dims(
        out, broadcast_strides(out, out), broadcast_strides((8, 1, 1), out)
    )
    assert dims == [8, 25] and a == [25, 1] and b == [1, 0]


@given(st.lists(st.integers(1, 4), max_size=6), st.data())
def test_collapsed_strides_address_the_same_elements(out, data):
    operand = [d if data.draw(st.booleans()) else 1 for d in out]
    dims, (a, b) = collapse_dims(out, broadcast_strides(out, out), broadcast_strides(operand, out))
    x = np.arange(int(np.prod(out)), dtype=np.float32).reshape(out)
    y = np.arange(int(np.prod(operand)), dtype=np.float32).reshape(operand)
    flat_a = np.lib.stride_tricks.as_strided(x.reshape(-1), dims, [4 * s for s in a])
    flat_b = np.lib.stride_tricks.as_strided(y.reshape(-1), dims, [4 * s for s in b])
    np.testing.assert_array_equal((flat_a + flat_b).reshape(-1), (x + y).reshape(-1))


def test_reshape_flatten_squeeze_unsqueeze_are_views_without_a_call():
    require("native")
    model = one_op_model("Flatten", [("x", (2, 3, 4))], axis=1)
    with load(model) as session:
        program = session._program
        assert program._calls == []
        x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        np.testing.assert_array_equal(session.run({"x": x})["y"], x.reshape(2, 12))


def test_steady_state_run_allocates_only_its_outputs():
    require("native")
    model = cloud_mask_unet(input_size=32, base_channels=4, depth=2)
    feeds = random_feeds(model)
    with load(model) as session:
        session.run(feeds)
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            outputs = session.run(feeds)
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    # The returned mask (1x1x32x32 float32, 4 KiB) and the dict around it; no arena-sized block.
    assert grown < outputs["mask"].nbytes + 2048
    assert session.info.arena_bytes > 8 * grown


@pytest.mark.parametrize("ceil_mode", [0, 1])
def test_average_pool_counting_padding_divides_like_onnx_with_ceil_mode(ceil_mode):
    require("native")
    model = one_op_model(
        "AveragePool",
        [("x", (1, 1, 6, 6))],
        kernel_shape=[2, 2],
        strides=[2, 2],
        pads=[1, 1, 0, 0],
        ceil_mode=ceil_mode,
        count_include_pad=1,
    )
    x = np.ones((1, 1, 6, 6), np.float32)
    with load(model) as session:
        y = session.run({"x": x})["y"]
    # Windows over the declared top/left padding count it: 1/4 of ones in the corner, 2/4 along
    # the edges. With ceil_mode a last row and column of windows overhangs the input where no pad
    # is declared; ONNX counts only the taps inside the input and its pads there (the C kernel
    # divides by the whole window; the planner corrects it).
    assert y[0, 0, 0, 0] == pytest.approx(0.25)
    assert y[0, 0, 0, 1] == pytest.approx(0.5)
    assert y[0, 0, 1, 1] == pytest.approx(1.0)
    if ceil_mode:
        assert y.shape == (1, 1, 4, 4)
        assert y[0, 0, 3, 3] == pytest.approx(1.0)  # one tap inside, divided by one
        assert y[0, 0, 3, 0] == pytest.approx(0.5)  # a pad tap and an input tap
    else:
        assert y.shape == (1, 1, 3, 3)


def _concat_model(batch):
    from onnx import TensorProto, helper, numpy_helper

    from hil.models import finish_model

    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Sigmoid", ["x"], ["b"]),
        helper.make_node("Concat", ["a", "x", "b", "a"], ["c"], axis=1),
        helper.make_node("Mul", ["c", "k"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "concat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 2, 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8, 3]),
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [batch, 2, 3]),
        ],
        [numpy_helper.from_array(rng.standard_normal((8, 1)).astype(np.float32), "k")],
    )
    return finish_model(graph)


@pytest.mark.parametrize("batch", [1, 2])
def test_concat_inputs_are_written_in_place_when_their_slices_are_contiguous(batch):
    require("native")
    model = _concat_model(batch)
    feeds = random_feeds(model)
    with load(model) as native, load(model, backend="numpy") as numpy_session:
        calls = [fn.__name__ for fn, _ in native._program._calls]
        actual, expected = native.run(feeds), numpy_session.run(feeds)
    for name in ("y", "a"):
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6)
    if batch == 1:
        # "a" and "b" are produced in their slices; the graph input and the repeat of "a" are
        # copied (one call each), and no whole-tensor concatenation runs.
        assert calls.count("pn_concat") == 2
    else:
        assert calls.count("pn_concat") == 1  # outer > 1: interleaved, one copying concat
