"""int8 QDQ operators: Conv, Gemm and MatMul between QuantizeLinear/DequantizeLinear, as ONNX
Runtime's static quantiser emits them (hil.models.quantize_qdq), against the reference.

Shapes, attributes (padding, strides, dilation, groups incl. depthwise), activations (none, Relu,
Clip as ReLU6), int8 or uint8 activations are drawn with Hypothesis. The NumPy backend runs the QDQ
graph literally and must match to float rounding (1e-6 of the output). The native backend runs the
int8 kernels (int32 accumulation, per-channel requantisation rounding half away from zero, where
the reference convolves in float and rounds half to even): at most one quantisation step of the
output (the output's scale) from the reference, and it must really have used QConv/QGemm.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inference_oracle import BACKENDS, random_feeds, reference, require
from onnx import TensorProto, helper, numpy_helper

from flight.inference import load
from hil.models import finish_model, quantize_qdq

EXAMPLES = int(os.environ.get("PENUMBRA_INFERENCE_EXAMPLES", "40"))
pytestmark = pytest.mark.parametrize("backend", BACKENDS)


def float_model(op, x_shape, weight, attrs, bias=None, activation=None):
    """x -> op(x, weight[, bias]) [-> activation] -> y, all float, weights as initialisers."""
    inits = [numpy_helper.from_array(weight, "w")]
    inputs = ["x", "w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias, "b"))
        inputs.append("b")
    nodes = [helper.make_node(op, inputs, ["z"], name=op.lower(), **attrs)]
    if activation == "Relu":
        nodes.append(helper.make_node("Relu", ["z"], ["y"]))
    elif activation == "Clip":
        inits += [
            numpy_helper.from_array(np.array(v, np.float32), n)
            for n, v in (("lo", 0.0), ("hi", 6.0))
        ]
        nodes.append(helper.make_node("Clip", ["z", "lo", "hi"], ["y"]))
    else:
        nodes[0].output[0] = "y"
    graph = helper.make_graph(
        nodes,
        "int8",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = finish_model(graph, 17)
    inferred = onnx.shape_inference.infer_shapes(model)
    model.graph.output[0].CopyFrom(inferred.graph.output[0])
    return model


def check_int8(backend, model, feeds, kernel):
    require(backend)
    expected = reference(model, feeds)[0]
    step = next(
        float(numpy_helper.to_array(t)) for t in model.graph.initializer if t.name == "y_qscale"
    )
    with load(model, backend=backend) as session:
        actual = session.run(feeds)["y"]
        operators = session.info.operators
    if backend == "numpy":
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6 * max(1.0, step * 255))
    else:
        assert operators.get(kernel) == 1, operators
        assert np.abs(actual - expected).max() <= step * (1 + 1e-4)


@st.composite
def conv_cases(draw):
    if draw(st.booleans()):
        groups = channels = out_channels = draw(st.integers(1, 8))
    else:
        groups = draw(st.integers(1, 2))
        channels = groups * draw(st.integers(1, 4))
        out_channels = groups * draw(st.integers(1, 4))
    kernel = draw(st.integers(1, 3))
    strides = draw(st.integers(1, 2))
    dilation = draw(st.integers(1, 2))
    pads = [draw(st.integers(0, 2)) for _ in range(4)]
    extent = (kernel - 1) * dilation + 1
    size = draw(st.integers(max(1, extent - min(pads[0] + pads[2], pads[1] + pads[3])), 9))
    return {
        "x": (1, channels, size, size),
        "w": (out_channels, channels // groups, kernel, kernel),
        "attrs": {
            "group": groups,
            "strides": [strides] * 2,
            "dilations": [dilation] * 2,
            "pads": pads,
        },
        "bias": draw(st.booleans()),
        "activation": draw(st.sampled_from([None, "Relu", "Clip"])),
        "activations": draw(st.sampled_from(["int8", "uint8"])),
    }


@settings(max_examples=EXAMPLES)
@given(case=conv_cases())
def test_qdq_conv_matches_reference_within_one_step(backend, case):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal(case["w"]).astype(np.float32)
    bias = rng.standard_normal(case["w"][0]).astype(np.float32) if case["bias"] else None
    model = float_model("Conv", case["x"], weight, case["attrs"], bias, case["activation"])
    feeds = random_feeds(model, scale=2.0)
    qdq = quantize_qdq(model, feeds, activations=case["activations"])
    check_int8(backend, qdq, feeds, "QConv")


@settings(max_examples=EXAMPLES)
@given(
    m=st.integers(1, 6),
    k=st.integers(1, 40),
    n=st.integers(1, 12),
    trans_b=st.booleans(),
    bias=st.booleans(),
    activation=st.sampled_from([None, "Relu"]),
    activations=st.sampled_from(["int8", "uint8"]),
    op=st.sampled_from(["Gemm", "MatMul"]),
)
def test_qdq_gemm_and_matmul_match_reference_within_one_step(
    backend, m, k, n, trans_b, bias, activation, activations, op
):
    rng = np.random.default_rng(1)
    trans_b = trans_b and op == "Gemm"
    weight = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    attrs = {"transB": int(trans_b)} if op == "Gemm" else {}
    b = rng.standard_normal(n).astype(np.float32) if bias and op == "Gemm" else None
    model = float_model(op, (m, k), weight, attrs, b, activation)
    feeds = random_feeds(model, scale=2.0)
    qdq = quantize_qdq(model, feeds, activations=activations)
    check_int8(backend, qdq, feeds, "QGemm")
