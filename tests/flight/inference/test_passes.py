"""Load-time graph passes: no-ops removed, constants and BatchNormalization folded, activations
fused (native), QDQ patterns mapped to int8 nodes (native), uint8 run as int8 (native)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inference_oracle import assert_close, random_feeds, reference
from onnx import TensorProto, helper, numpy_helper

from flight.inference.loader import load_graph
from flight.inference.numpy_backend import NumpyProgram
from flight.inference.passes import prepare
from hil.models import finish_model


def model_of(nodes, inputs, outputs, initializers, opset=17):
    graph = helper.make_graph(
        nodes,
        "passes",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(v, n) for n, v in initializers.items()],
    )
    return finish_model(graph, opset)


def bn_params(c, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "scale": rng.uniform(0.5, 1.5, c).astype(np.float32),
        "shift": rng.uniform(-1, 1, c).astype(np.float32),
        "mean": rng.uniform(-1, 1, c).astype(np.float32),
        "var": rng.uniform(0.5, 1.5, c).astype(np.float32),
    }


def conv_bn(extra_output=False):
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["y"]),
    ]
    outputs = [("y", [1, 4, 6, 6])] + ([("c", [1, 4, 6, 6])] if extra_output else [])
    return model_of(nodes, [("x", [1, 3, 6, 6])], outputs, {"w": w, **bn_params(4)})


def run_prepared(model, backend):
    graph = prepare(load_graph(model), backend=backend)
    return graph, NumpyProgram(graph)


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_batch_normalization_after_a_conv_is_folded_into_it(backend):
    model = conv_bn()
    graph, program = run_prepared(model, backend)
    assert [n.op for n in graph.nodes] == ["Conv"]
    feeds = random_feeds(model)
    assert_close(program.run(feeds)["y"], reference(model, feeds)[0], rtol=1e-5, atol=1e-6)


def test_batch_normalization_of_a_conv_output_read_elsewhere_becomes_mul_add():
    model = conv_bn(extra_output=True)
    graph, program = run_prepared(model, "numpy")
    assert [n.op for n in graph.nodes] == ["Conv", "Mul", "Add"]
    feeds = random_feeds(model)
    expected = reference(model, feeds)
    outputs = program.run(feeds)
    assert_close(outputs["y"], expected[0], rtol=1e-5, atol=1e-6)
    assert_close(outputs["c"], expected[1], rtol=1e-5, atol=1e-6)


def test_identity_and_dropout_disappear_and_the_output_keeps_its_name():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Identity", ["r"], ["i"]),
        helper.make_node("Dropout", ["i"], ["y"]),
    ]
    model = model_of(nodes, [("x", [4])], [("y", [4])], {})
    graph, program = run_prepared(model, "native")
    assert [(n.op, n.outputs) for n in graph.nodes] == [("Relu", ("y",))]
    x = np.array([-1, 0, 1, 2], np.float32)
    np.testing.assert_array_equal(program.run({"x": x})["y"], [0, 0, 1, 2])


def test_constant_subgraphs_are_folded_at_load():
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("Reshape", ["wt", "shape"], ["wr"]),
        helper.make_node("MatMul", ["x", "wr"], ["y"]),
    ]
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    inits = {"w": w, "shape": np.array([2, 3], np.int64)}
    model = model_of(nodes, [("x", [1, 2])], [("y", [1, 3])], inits)
    graph, program = run_prepared(model, "numpy")
    assert [n.op for n in graph.nodes] == ["MatMul"]
    x = np.array([[1, 2]], np.float32)
    np.testing.assert_allclose(program.run({"x": x})["y"], x @ w.T.reshape(2, 3))


def conv_relu(conv_output_is_graph_output=False, second_reader=False):
    w = np.ones((2, 1, 1, 1), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    outputs = [("y", [1, 2, 2, 2])]
    if second_reader:
        nodes.append(helper.make_node("Sigmoid", ["c"], ["s"]))
        outputs.append(("s", [1, 2, 2, 2]))
    if conv_output_is_graph_output:
        outputs.append(("c", [1, 2, 2, 2]))
    return model_of(nodes, [("x", [1, 1, 2, 2])], outputs, {"w": w})


def test_native_fuses_an_activation_into_the_conv_before_it():
    graph = prepare(load_graph(conv_relu()), backend="native")
    assert [(n.op, n.attrs.get("act")) for n in graph.nodes] == [("Conv", ("Relu", 0.0, 0.0))]
    assert graph.operators() == {"Conv+Relu": 1}


@pytest.mark.parametrize("case", [{"conv_output_is_graph_output": True}, {"second_reader": True}])
def test_activation_is_not_fused_when_the_conv_output_is_needed_elsewhere(case):
    graph = prepare(load_graph(conv_relu(**case)), backend="native")
    assert "act" not in graph.nodes[0].attrs
    assert "Relu" in [n.op for n in graph.nodes]


def test_numpy_backend_runs_unfused():
    graph = prepare(load_graph(conv_relu()), backend="numpy")
    assert [n.op for n in graph.nodes] == ["Conv", "Relu"]


# -- int8 --------------------------------------------------------------------------------------


def qdq_conv(weight_zero_point=0, activation="Relu", dtype=np.int8):
    """x -> Q -> DQ -> Conv(DQ(w int8 per channel), bias) -> activation -> Q -> DQ -> y."""
    rng = np.random.default_rng(2)
    w_q = rng.integers(-127, 128, (3, 2, 3, 3)).astype(np.int8)
    zero = 0 if dtype == np.int8 else 128
    inits = {
        "s_x": np.array(0.05, np.float32),
        "z_x": np.array(zero + 3, dtype),
        "w_q": w_q,
        "s_w": rng.uniform(0.001, 0.01, 3).astype(np.float32),
        "z_w": np.full(3, weight_zero_point, np.int8),
        "b": rng.standard_normal(3).astype(np.float32),
        "s_y": np.array(0.1, np.float32),
        "z_y": np.array(zero - 5, dtype),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_x", "z_x"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "s_x", "z_x"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w"], axis=0),
        helper.make_node("Conv", ["x_dq", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
    ]
    last = "c"
    if activation:
        nodes.append(helper.make_node(activation, ["c"], ["a"]))
        last = "a"
    nodes += [
        helper.make_node("QuantizeLinear", [last, "s_y", "z_y"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "s_y", "z_y"], ["y"]),
    ]
    return model_of(nodes, [("x", [1, 2, 5, 5])], [("y", [1, 3, 5, 5])], inits, opset=19)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_qdq_conv_relu_becomes_one_int8_node(dtype):
    graph = prepare(load_graph(qdq_conv(dtype=dtype)), backend="native")
    ops = [n.op for n in graph.nodes]
    assert ops == ["QuantizeLinear", "QConv", "DequantizeLinear"]
    qconv = graph.nodes[1]
    # uint8 runs as int8: zero points move down by 128; Relu clamps at the output zero point.
    assert qconv.attrs["x_zero_point"] == 3 and qconv.attrs["y_zero_point"] == -5
    assert (qconv.attrs["act_min"], qconv.attrs["act_max"]) == (-5, 127)
    assert all(graph.types[n].dtype != "uint8" for n in graph.types)


def test_qdq_conv_with_asymmetric_weights_stays_in_float():
    graph = prepare(load_graph(qdq_conv(weight_zero_point=1)), backend="native")
    assert "QConv" not in [n.op for n in graph.nodes]
    assert "Conv+Relu" in graph.operators()


@settings(max_examples=30)
@given(
    values=st.lists(st.floats(-20, 20, width=32), min_size=25 * 2, max_size=25 * 2),
    dtype=st.sampled_from([np.int8, np.uint8]),
)
def test_uint8_as_int8_computes_the_same_values(values, dtype):
    model = qdq_conv(activation=None, dtype=dtype)
    literal = NumpyProgram(prepare(load_graph(model), backend="numpy"))
    graph = load_graph(model)
    from flight.inference.passes import uint8_as_int8

    uint8_as_int8(graph)
    converted = NumpyProgram(graph)
    x = np.array(values, np.float32).reshape(1, 2, 5, 5)
    np.testing.assert_array_equal(converted.run({"x": x})["y"], literal.run({"x": x})["y"])
