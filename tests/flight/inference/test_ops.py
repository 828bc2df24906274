"""Every supported operator, on one-operator models, against onnx.reference.ReferenceEvaluator.

Shapes and attributes are drawn with Hypothesis (padding incl. asymmetric and auto_pad, strides,
dilation, groups incl. depthwise, broadcasting, axes, perms) and each case runs on both backends;
so does every activation fused into the Conv, Gemm, MatMul, Add or Mul before it.

Tolerances, as |actual - expected| <= atol * max(1, max|expected|) + rtol * |expected|:
- layout operators (Reshape family, Transpose, Concat), MaxPool, Relu, LeakyRelu, Clip, Identity,
  Dropout: exact (they only move, select or scale values);
- other elementwise operators, pooling, softmax, BatchNormalization: rtol 1e-5, atol 1e-6
  (Sigmoid, Tanh and HardSwish 1e-5 / 1e-5: the C core's vectorised exp);
- Conv, Gemm, MatMul and fused epilogues: rtol 1e-4, atol 2e-6 * sqrt(K) (K the dot-product
  length: summation order) or 1e-5;
- QuantizeLinear: at most 1 quantisation step (x / scale landing on a .5 may round either way
  after a different float rounding), checked through a DequantizeLinear.

Oracles other than the reference, where the reference is wrong: pooling is checked against ONNX
Runtime always, and against the reference only where it is right (it gives floor(in / stride)
outputs with SAME_LOWER against ONNX's own ceil(in / stride), shifts windows and miscounts outputs
with ceil_mode, swaps the axes' output sizes with asymmetric pads, and raises on some padded
windows). Softmax at opset 11 (the 2-D flattening semantics, which the reference does not
implement) and Squeeze/Unsqueeze at opset 11 (it renumbers axes wrongly) are checked against ONNX
Runtime instead.
"""

from __future__ import annotations

import math
import os

import numpy as np
import onnxruntime
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from inference_oracle import BACKENDS, assert_close, random_feeds, reference, require, run

from flight.inference import UnsupportedAttributeError, load
from hil.models import one_op_model

EXAMPLES = int(os.environ.get("PENUMBRA_INFERENCE_EXAMPLES", "60"))
pytestmark = pytest.mark.parametrize("backend", BACKENDS)


def onnxruntime_run(model, feeds):
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def check(model, backend, *, rtol=1e-5, atol=1e-6, seed=0, feeds=None, oracle=reference):
    require(backend)
    feeds = feeds if feeds is not None else random_feeds(model, seed)
    expected = oracle(model, feeds)
    actual = run(model, feeds, backend)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert_close(a, e.astype(np.float32), rtol=rtol, atol=atol)


def weights(shape, seed=1):
    return np.asarray(np.random.default_rng(seed).standard_normal(shape), np.float32)


# -- convolution -------------------------------------------------------------------------------


@st.composite
def conv_cases(draw):
    if draw(st.booleans()):  # depthwise, with a channel multiplier
        groups = channels = draw(st.integers(1, 6))
        out_channels = channels * draw(st.integers(1, 2))
    else:
        groups = draw(st.integers(1, 3))
        channels = groups * draw(st.integers(1, 4))
        out_channels = groups * draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilations = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    auto_pad = draw(st.sampled_from(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    pads = [draw(st.integers(0, 3)) for _ in range(4)] if auto_pad == "NOTSET" else [0] * 4
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    size = [
        draw(st.integers(max(1, extent[i] - pads[i] - pads[i + 2]), extent[i] + 8))
        for i in range(2)
    ]
    return {
        "x": (draw(st.integers(1, 2)), channels, *size),
        "w": (out_channels, channels // groups, *kernel),
        "bias": draw(st.booleans()),
        "attrs": {
            "group": groups,
            "strides": list(strides),
            "dilations": list(dilations),
            "auto_pad": auto_pad,
            **({"pads": pads} if auto_pad == "NOTSET" else {}),
        },
    }


@settings(max_examples=EXAMPLES)
@given(case=conv_cases())
def test_conv_matches_reference(backend, case):
    inputs = [("x", case["x"]), ("w", weights(case["w"]))]
    if case["bias"]:
        inputs.append(("b", weights(case["w"][:1], seed=2)))
    model = one_op_model("Conv", inputs, **case["attrs"])
    k = math.prod(case["w"][1:])
    check(model, backend, rtol=1e-4, atol=2e-6 * math.sqrt(k))


# -- pooling -----------------------------------------------------------------------------------


@st.composite
def pool_cases(draw, op):
    kernel = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    strides = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    auto_pad = draw(
        st.sampled_from(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
    )
    # ONNX Runtime ignores the dilation of pools under auto_pad (and the reference is wrong for
    # SAME_LOWER), so dilation is drawn with explicit pads only.
    dilated = auto_pad == "NOTSET"
    dilations = [draw(st.integers(1, 2 if dilated else 1)) for _ in range(2)]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    attrs = {
        "kernel_shape": kernel,
        "strides": strides,
        "dilations": dilations,
        "auto_pad": auto_pad,
    }
    pads = [0] * 4
    if auto_pad == "NOTSET":
        pads = [draw(st.integers(0, kernel[i % 2] - 1)) for i in range(4)]  # as ONNX Runtime
        attrs["pads"] = pads
        attrs["ceil_mode"] = int(draw(st.booleans()))
    if op == "AveragePool":
        attrs["count_include_pad"] = int(draw(st.booleans()))
    size = [
        draw(st.integers(max(1, extent[i] - pads[i] - pads[i + 2]), extent[i] + 7))
        for i in range(2)
    ]
    if auto_pad.startswith("SAME"):
        # SAME padding that comes out negative (a stride longer than the window) is ill-defined:
        # ONNX Runtime refuses it for pooling and the reference crops; the core pads 0 as for Conv.
        for i in range(2):
            out = -(-size[i] // strides[i])
            assume((out - 1) * strides[i] + extent[i] >= size[i])
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *size), attrs


def check_pool(model, backend, attrs, **tolerance):
    """Against ONNX Runtime always, and against the reference where it runs (not SAME_LOWER)."""
    require(backend)
    feeds = random_feeds(model)
    try:
        actual = run(model, feeds, backend)[0]
    except UnsupportedAttributeError as error:
        assume("reads only padding" not in str(error))  # refused on purpose: test_loader.py
        raise
    assert_close(actual, onnxruntime_run(model, feeds)[0], **tolerance)
    pads = attrs.get("pads", [0, 0, 0, 0])
    symmetric = pads[:2] == pads[2:]
    if attrs["auto_pad"] != "SAME_LOWER" and not attrs.get("ceil_mode") and symmetric:
        try:
            expected = reference(model, feeds)[0]
        except (RuntimeError, ValueError):  # its "output shape cannot be null", "zero-size array"
            return
        assert_close(actual, expected, **tolerance)


@settings(max_examples=EXAMPLES)
@given(case=pool_cases("MaxPool"))
def test_max_pool_matches_reference(backend, case):
    shape, attrs = case
    check_pool(one_op_model("MaxPool", [("x", shape)], **attrs), backend, attrs, rtol=0, atol=0)


@settings(max_examples=EXAMPLES)
@given(case=pool_cases("AveragePool"))
def test_average_pool_matches_reference(backend, case):
    shape, attrs = case
    # Opset 19: AveragePool's dilations.
    model = one_op_model("AveragePool", [("x", shape)], opset=19, **attrs)
    check_pool(model, backend, attrs, rtol=1e-5, atol=1e-6)


@settings(max_examples=10)
@given(shape=st.lists(st.integers(1, 6), min_size=3, max_size=5).map(tuple))
def test_global_average_pool_matches_reference(backend, shape):
    check(one_op_model("GlobalAveragePool", [("x", shape)]), backend)


# -- matrix products ---------------------------------------------------------------------------


@st.composite
def gemm_cases(draw):
    m, k, n = (draw(st.integers(1, 9)) for _ in range(3))
    trans_a, trans_b = draw(st.booleans()), draw(st.booleans())
    c_shape = draw(st.sampled_from([None, (), (1,), (n,), (1, n), (m, 1), (m, n)]))
    return {
        "a": (k, m) if trans_a else (m, k),
        "b": (n, k) if trans_b else (k, n),
        "c": c_shape,
        "b_constant": draw(st.booleans()),
        "c_constant": draw(st.booleans()),
        "attrs": {
            "transA": int(trans_a),
            "transB": int(trans_b),
            "alpha": draw(st.sampled_from([1.0, 0.5, -2.0])),
            "beta": draw(st.sampled_from([1.0, 0.25])),
        },
    }


@settings(max_examples=EXAMPLES)
@given(case=gemm_cases())
def test_gemm_matches_reference(backend, case):
    inputs = [("a", case["a"]), ("b", weights(case["b"]) if case["b_constant"] else case["b"])]
    if case["c"] is not None:
        c = weights(case["c"], seed=3)
        inputs.append(("c", c if case["c_constant"] else case["c"]))
    model = one_op_model("Gemm", inputs, **case["attrs"])
    k = case["a"][0] if case["attrs"]["transA"] else case["a"][1]
    check(model, backend, rtol=1e-4, atol=2e-6 * math.sqrt(k))


@st.composite
def matmul_cases(draw):
    m, k, n = (draw(st.integers(1, 7)) for _ in range(3))
    batch = draw(st.lists(st.integers(1, 3), max_size=3))
    a_batch = [d if draw(st.booleans()) else 1 for d in batch][draw(st.integers(0, len(batch))) :]
    b_batch = [d if draw(st.booleans()) else 1 for d in batch][draw(st.integers(0, len(batch))) :]
    a = (k,) if draw(st.integers(0, 5)) == 0 else (*a_batch, m, k)
    b = (k,) if draw(st.integers(0, 5)) == 0 else (*b_batch, k, n)
    return a, b, draw(st.booleans())


@settings(max_examples=EXAMPLES)
@given(case=matmul_cases())
def test_matmul_matches_reference(backend, case):
    a, b, b_constant = case
    model = one_op_model("MatMul", [("a", a), ("b", weights(b) if b_constant else b)])
    check(model, backend, rtol=1e-4, atol=2e-6 * math.sqrt(a[-1]))


# -- elementwise -------------------------------------------------------------------------------


@st.composite
def broadcast_pair(draw):
    out = draw(st.lists(st.integers(1, 5), max_size=5))

    def operand():
        shape = [d if draw(st.integers(0, 2)) else 1 for d in out]
        return tuple(shape[draw(st.integers(0, len(shape))) :])

    return tuple(out), operand(), operand()


@settings(max_examples=EXAMPLES)
@given(
    op=st.sampled_from(["Add", "Mul", "Sub", "Div"]),
    case=broadcast_pair(),
    constant=st.sampled_from([None, 0, 1]),
)
def test_binary_broadcasting_matches_reference(backend, op, case, constant):
    _, a, b = case
    inputs = [("a", a), ("b", b)]
    if constant is not None:  # one operand an initialiser
        name, shape = inputs[constant]
        inputs[constant] = (name, np.asarray(weights(shape, seed=4) + 3.0, np.float32))
    check(one_op_model(op, inputs), backend)


@settings(max_examples=EXAMPLES)
@given(
    op=st.sampled_from(["Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish"]),
    shape=st.lists(st.integers(1, 6), max_size=4).map(tuple),
    alpha=st.sampled_from([0.01, 0.2, 1.5]),
)
def test_activation_matches_reference(backend, op, shape, alpha):
    attrs = {"alpha": alpha} if op == "LeakyRelu" else {}
    exact = op in ("Relu", "LeakyRelu")
    model = one_op_model(op, [("x", shape)], **attrs)
    check(
        model,
        backend,
        rtol=0 if exact else 1e-5,
        atol=1e-7 if exact else 1e-5,
        feeds={"x": (np.random.default_rng(5).standard_normal(shape) * 4).astype(np.float32)},
    )


@settings(max_examples=EXAMPLES)
@given(
    shape=st.lists(st.integers(1, 6), max_size=4).map(tuple),
    low=st.sampled_from([None, -1.0, 0.0]),
    high=st.sampled_from([None, 0.5, 6.0]),
)
def test_clip_matches_reference(backend, shape, low, high):
    inputs = [("x", shape), ("min", np.array(low, np.float32)) if low is not None else ("", None)]
    if high is not None:
        inputs.append(("max", np.array(high, np.float32)))
    check(one_op_model("Clip", inputs), backend, rtol=0, atol=0)


@settings(max_examples=EXAMPLES)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    opset=st.sampled_from([11, 13, 17]),
)
def test_softmax_matches_reference(backend, shape, data, opset):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    # The reference implements only opset 13's Softmax; opset 11 flattens to 2-D at `axis`.
    oracle = reference if opset >= 13 else onnxruntime_run
    check(one_op_model("Softmax", [("x", shape)], opset=opset, axis=axis), backend, oracle=oracle)


@settings(max_examples=10)
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=4).map(tuple))
def test_batch_normalization_alone_matches_reference(backend, shape):
    c = shape[1]
    rng = np.random.default_rng(6)
    params = [
        rng.uniform(0.5, 1.5, c),
        rng.uniform(-1, 1, c),
        rng.uniform(-1, 1, c),
        rng.uniform(0.5, 1.5, c),
    ]
    inputs = [("x", shape)] + [
        (n, p.astype(np.float32))
        for n, p in zip(("scale", "bias", "mean", "var"), params, strict=True)
    ]
    check(one_op_model("BatchNormalization", inputs, epsilon=1e-3), backend)


# -- layout ------------------------------------------------------------------------------------


@settings(max_examples=EXAMPLES)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=6).map(tuple), data=st.data())
def test_transpose_matches_reference(backend, shape, data):
    perm = data.draw(st.permutations(range(len(shape))))
    check(one_op_model("Transpose", [("x", shape)], perm=list(perm)), backend, rtol=0, atol=0)


@settings(max_examples=EXAMPLES)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data())
def test_concat_matches_reference(backend, shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    inputs = []
    for i in range(data.draw(st.integers(1, 3))):
        s = list(shape)
        s[axis] = data.draw(st.integers(1, 3))
        constant = data.draw(st.booleans()) and i > 0
        inputs.append((f"x{i}", weights(tuple(s), seed=i) if constant else tuple(s)))
    check(one_op_model("Concat", inputs, axis=axis), backend, rtol=0, atol=0)


@settings(max_examples=EXAMPLES)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data())
def test_reshape_matches_reference(backend, shape, data):
    size = math.prod(shape)
    target = [d for d in range(1, size + 1) if size % d == 0]
    first = data.draw(st.sampled_from(target))
    new_shape = [first, -1] if data.draw(st.booleans()) else [0, *([-1] if len(shape) > 1 else [])]
    model = one_op_model("Reshape", [("x", shape), ("shape", np.array(new_shape, np.int64))])
    check(model, backend, rtol=0, atol=0)


@settings(max_examples=10)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple), data=st.data())
def test_flatten_matches_reference(backend, shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape)))
    check(one_op_model("Flatten", [("x", shape)], axis=axis), backend, rtol=0, atol=0)


@settings(max_examples=EXAMPLES)
@given(
    shape=st.lists(st.sampled_from([1, 1, 2, 3]), min_size=1, max_size=4).map(tuple),
    data=st.data(),
    opset=st.sampled_from([11, 13]),
)
def test_squeeze_and_unsqueeze_match_reference(backend, shape, data, opset):
    ones = [i for i, d in enumerate(shape) if d == 1]
    axes = data.draw(st.lists(st.sampled_from(ones), unique=True)) if ones else []
    unsqueeze = sorted(
        data.draw(st.lists(st.integers(0, len(shape)), min_size=1, max_size=2, unique=True))
    )
    for op, op_axes in (("Squeeze", axes), ("Unsqueeze", unsqueeze)):
        if opset >= 13:
            inputs = [("x", shape)]
            if op_axes or op == "Unsqueeze":
                inputs.append(("axes", np.array(op_axes, np.int64)))
            model = one_op_model(op, inputs, opset=opset)
        else:
            attrs = {"axes": op_axes} if op_axes or op == "Unsqueeze" else {}
            model = one_op_model(op, [("x", shape)], opset=opset, **attrs)
        # The reference's opset-11 Squeeze removes several axes one by one without renumbering.
        oracle = reference if opset >= 13 else onnxruntime_run
        check(model, backend, rtol=0, atol=0, oracle=oracle)


@pytest.mark.parametrize("op", ["Identity", "Dropout"])
def test_identity_and_dropout_pass_values_through(backend, op):
    model = one_op_model(op, [("x", (2, 3))], opset=17)
    check(model, backend, rtol=0, atol=0)


# -- quantisation ------------------------------------------------------------------------------


@settings(max_examples=EXAMPLES)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple),
    dtype=st.sampled_from([np.int8, np.uint8]),
    per_axis=st.booleans(),
    opset=st.sampled_from([19, 21]),
    data=st.data(),
)
def test_quantize_linear_matches_reference_within_one_step(
    backend, shape, dtype, per_axis, opset, data
):
    require(backend)
    axis = data.draw(st.integers(0, len(shape) - 1)) if per_axis else 1
    count = shape[axis] if per_axis else 1
    scale = np.random.default_rng(7).uniform(0.01, 0.2, count).astype(np.float32)
    info = np.iinfo(dtype)
    zero = np.random.default_rng(8).integers(info.min, info.max, count).astype(dtype)
    if not per_axis:
        scale, zero = scale.reshape(()), zero.reshape(())
    model = one_op_model(
        "QuantizeLinear", [("x", shape), ("s", scale), ("z", zero)], opset=opset, axis=axis
    )
    # The graph output is float32, so test through a DequantizeLinear after the quantiser.
    from onnx import helper

    model.graph.node.append(
        helper.make_node("DequantizeLinear", ["y", "s", "z"], ["out"], axis=axis)
    )
    model.graph.output[0].CopyFrom(helper.make_tensor_value_info("out", 1, list(shape)))
    feeds = {"x": (np.random.default_rng(9).standard_normal(shape) * 8).astype(np.float32)}
    expected = reference(model, feeds)[0]
    actual = run(model, feeds, backend)[0]
    step = (
        scale.reshape(-1)[0]
        if not per_axis
        else scale.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    )
    assert np.all(np.abs(actual - expected) <= step * 1.001)


# -- fused epilogues ---------------------------------------------------------------------------


@settings(max_examples=EXAMPLES)
@given(
    producer=st.sampled_from(["Conv", "Gemm", "MatMul", "Add", "Mul"]),
    activation=st.sampled_from(["Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish"]),
    size=st.integers(1, 6),
)
def test_activation_fused_into_the_operator_before_it_matches_reference(
    backend, producer, activation, size
):
    from onnx import TensorProto, helper, numpy_helper

    from hil.models import finish_model

    rng = np.random.default_rng(10)
    if producer == "Conv":
        x_shape, w = (1, 3, size, size), rng.standard_normal((4, 3, 3, 3))
        y_shape = [1, 4, size, size]
        first = helper.make_node("Conv", ["x", "w"], ["z"], pads=[1, 1, 1, 1])
    elif producer in ("Gemm", "MatMul"):
        x_shape, w = (2, size), rng.standard_normal((size, 5))
        y_shape = [2, 5]
        first = helper.make_node(producer, ["x", "w"], ["z"])
    else:
        x_shape, w = (2, 3, size), rng.standard_normal((3, 1))
        y_shape = [2, 3, size]
        first = helper.make_node(producer, ["x", "w"], ["z"])
    inits = [numpy_helper.from_array(w.astype(np.float32), "w")]
    act_inputs = ["z"]
    if activation == "Clip":
        inits += [
            numpy_helper.from_array(np.array(v, np.float32), n)
            for n, v in (("lo", -0.5), ("hi", 1.0))
        ]
        act_inputs += ["lo", "hi"]
    graph = helper.make_graph(
        [first, helper.make_node(activation, act_inputs, ["y"])],
        "fused",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        inits,
    )
    model = finish_model(graph)
    check(model, backend, rtol=1e-4, atol=1e-5)
    if backend == "native":
        with load(model) as session:
            assert session.info.operators == {f"{producer}+{activation}": 1}
