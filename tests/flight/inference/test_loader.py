"""What the loader refuses, and that every refusal names where (node, initialiser, input) and why.

Corrupt input — random octets, a cut file, Hypothesis-mutated model bytes — must end in a
ModelError (or, when a mutation happens to leave a valid model, a session that runs), never in
another exception or a crash of the process.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from flight.inference import (
    OPSET_MAX,
    OPSET_MIN,
    CorruptModelError,
    DtypeError,
    DynamicShapeError,
    ExternalDataError,
    InferenceError,
    ModelError,
    NonConstantError,
    OpsetError,
    UnsupportedAttributeError,
    UnsupportedOperatorError,
    load,
)
from hil.models import finish_model, mobilenet_v2, one_op_model


def refusal(model, backend="numpy") -> ModelError:
    with pytest.raises(ModelError) as caught:
        load(model, backend=backend)
    return caught.value


def graph_model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return finish_model(graph, opset)


def float_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_unsupported_operator_is_refused_naming_the_node():
    model = one_op_model("Elu", [("x", (1, 4))])
    error = refusal(model)
    assert isinstance(error, UnsupportedOperatorError)
    assert "node 'elu' (Elu)" in str(error) and "operator Elu is not supported" in str(error)


def test_operator_of_another_domain_is_refused_naming_the_domain():
    node = helper.make_node("FusedConv", ["x"], ["y"], name="fused", domain="com.microsoft")
    graph = helper.make_graph([node], "g", [float_input("x", [1])], [float_input("y", [1])])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    error = refusal(model)
    assert isinstance(error, UnsupportedOperatorError)
    assert "node 'fused'" in str(error) and "'com.microsoft'" in str(error)


def test_symbolic_input_dimension_is_refused_as_dynamic_shape():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = graph_model([node], [float_input("x", ["batch", 3])], [float_input("y", ["batch", 3])])
    error = refusal(model)
    assert isinstance(error, DynamicShapeError)
    assert "graph input 'x'" in str(error) and "'batch'" in str(error)


def test_input_without_shape_is_refused_as_dynamic_shape():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = graph_model([node], [float_input("x", None)], [float_input("y", [3])])
    error = refusal(model)
    assert isinstance(error, DynamicShapeError) and "graph input 'x'" in str(error)


def test_weights_computed_at_run_time_are_refused_naming_the_node():
    model = one_op_model("Conv", [("x", (1, 2, 5, 5)), ("w", (3, 2, 3, 3))])
    error = refusal(model)
    assert isinstance(error, NonConstantError)
    assert "node 'conv' (Conv)" in str(error) and "weight W" in str(error)


def test_external_data_is_refused_naming_the_initialiser(tmp_path):
    model = one_op_model("MatMul", [("x", (1, 64)), ("w", np.ones((64, 64), np.float32))])
    path = tmp_path / "model.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").exists()
    error = refusal(path)
    assert isinstance(error, ExternalDataError)
    assert "initializer 'w'" in str(error) and "weights.bin" in str(error)


@pytest.mark.parametrize("opset", [OPSET_MIN - 2, OPSET_MAX + 1])
def test_opset_outside_the_supported_range_is_refused(opset):
    model = one_op_model("Relu", [("x", (2,))], opset=opset)
    error = refusal(model)
    assert isinstance(error, OpsetError)
    assert f"opset {opset}" in str(error) and f"{OPSET_MIN}..{OPSET_MAX}" in str(error)


@pytest.mark.parametrize(
    ("model", "where", "reason"),
    [
        (
            lambda: one_op_model("Conv", [("x", (1, 2, 5)), ("w", np.ones((3, 2, 3), np.float32))]),
            "node 'conv' (Conv)",
            "only 2-D convolution",
        ),
        (
            lambda: one_op_model(
                "MaxPool", [("x", (1, 1, 4, 4))], outputs=("y", "i"), kernel_shape=[2, 2]
            ),
            "node 'maxpool' (MaxPool)",
            "Indices output",
        ),
        (
            lambda: one_op_model(
                "MaxPool",
                [("x", (1, 1, 1, 1))],
                kernel_shape=[2, 1],
                dilations=[2, 1],
                pads=[1, 0, 1, 0],
            ),
            "node 'maxpool' (MaxPool)",
            "reads only padding",
        ),
        (
            lambda: one_op_model(
                "BatchNormalization",
                [("x", (1, 2))] + [(n, np.ones(2, np.float32)) for n in ("s", "b", "m", "v")],
                outputs=("y", "running_mean", "running_var"),
                training_mode=1,
            ),
            "node 'batchnormalization' (BatchNormalization)",
            "training_mode=1",
        ),
        (
            lambda: one_op_model(
                "Conv",
                [("x", (1, 1, 4, 4)), ("w", np.ones((1, 1, 2, 2), np.float32))],
                auto_pad="SAME_UPPER",
                pads=[1, 1, 1, 1],
            ),
            "node 'conv' (Conv)",
            "pads given together with auto_pad=SAME_UPPER",
        ),
    ],
)
def test_unsupported_attribute_value_is_refused_naming_the_node(model, where, reason):
    error = refusal(model())
    assert isinstance(error, UnsupportedAttributeError)
    assert where in str(error) and reason in str(error)


def test_used_dropout_mask_is_refused():
    node = helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop")
    model = graph_model(
        [node],
        [float_input("x", [2])],
        [float_input("y", [2]), helper.make_tensor_value_info("mask", TensorProto.BOOL, [2])],
    )
    error = refusal(model)
    assert isinstance(error, UnsupportedAttributeError | DtypeError)
    assert "'mask'" in str(error) or "node 'drop'" in str(error)


def test_float64_input_is_refused_as_wrong_dtype():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = graph_model(
        [node],
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2])],
    )
    error = refusal(model)
    assert isinstance(error, DtypeError)
    assert "graph input 'x'" in str(error) and "double" in str(error)


def test_float16_weights_are_refused_naming_the_initialiser():
    model = one_op_model("Add", [("x", (2,)), ("w", np.ones(2, np.float16))])
    error = refusal(model)
    assert isinstance(error, DtypeError | CorruptModelError)
    assert "'w'" in str(error) or "float16" in str(error)


def test_operator_given_int8_where_it_takes_float_is_refused_naming_the_node():
    quantise = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quantise")
    relu = helper.make_node("Relu", ["q"], ["r"], name="relu")
    back = helper.make_node("DequantizeLinear", ["r", "s", "z"], ["y"], name="back")
    model = graph_model(
        [quantise, relu, back],
        [float_input("x", [4])],
        [float_input("y", [4])],
        [
            numpy_helper.from_array(np.array(0.1, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ],
        opset=19,
    )
    error = refusal(model)
    assert isinstance(error, DtypeError)
    assert "node 'relu' (Relu)" in str(error) and "int8" in str(error)


def test_missing_file_is_refused_naming_the_path(tmp_path):
    path = tmp_path / "absent.onnx"
    error = refusal(path)
    assert str(path) in str(error) and "cannot read" in str(error)


def test_wrong_source_type_is_a_type_error():
    with pytest.raises(TypeError, match=r"file path, bytes or an onnx\.ModelProto"):
        load(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 16, b"not an onnx model at all", bytes(range(256)) * 4],
    ids=["empty", "zeros", "text", "ramp"],
)
def test_non_model_bytes_are_refused_as_corrupt(data):
    error = refusal(data)
    assert isinstance(error, CorruptModelError)


def test_truncated_file_is_refused_as_corrupt(tmp_path):
    data = mobilenet_v2(width=0.35, input_size=32, num_classes=4).SerializeToString()
    for cut in (len(data) // 2, len(data) - 1, 100):
        path = tmp_path / f"cut{cut}.onnx"
        path.write_bytes(data[:cut])
        assert isinstance(refusal(path), CorruptModelError)


# -- fuzz --------------------------------------------------------------------------------------


def _small_model_bytes() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"], name="fc", transB=1),
    ]
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b"),
        numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "fc"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "fcb"),
    ]
    graph = helper.make_graph(nodes, "fuzz", [x], [y], inits)
    return finish_model(graph).SerializeToString()


SMALL_MODEL = _small_model_bytes()
FUZZ_EXAMPLES = int(os.environ.get("PENUMBRA_INFERENCE_FUZZ", "300"))


@st.composite
def mutated_model(draw):
    data = bytearray(SMALL_MODEL)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at : at + draw(st.integers(1, 8))]
        if not data:
            break
    return bytes(data)


@pytest.mark.parametrize("backend", ["numpy", "native"])
@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_model())
def test_mutated_model_bytes_are_refused_or_run_never_crash(backend, data):
    from inference_oracle import require

    require(backend)
    try:
        session = load(data, backend=backend)
    except ModelError as error:
        event(f"refused: {type(error).__name__}")
        return
    event("loaded")
    with session:
        feeds = {spec.name: np.zeros(spec.shape, np.float32) for spec in session.info.inputs}
        try:
            outputs = session.run(feeds)
        except InferenceError:
            return
        assert set(outputs) == {spec.name for spec in session.info.outputs}


@settings(max_examples=100)
@given(data=st.binary(max_size=512))
def test_random_bytes_are_refused_as_a_model_error(data):
    with pytest.raises(ModelError):
        load(data, backend="numpy")


SUPPORTED = sorted(
    [
        "Conv",
        "Relu",
        "MaxPool",
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
        "Add",
        "Softmax",
        "Transpose",
        "Reshape",
        "Concat",
        "AveragePool",
        "Clip",
    ]
)


@st.composite
def structurally_mutated_model(draw):
    """Valid protobuf, wrong content: attributes, shapes, wiring and operators changed."""
    model = onnx.ModelProto()
    model.ParseFromString(SMALL_MODEL)
    graph = model.graph
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["attribute", "input_dim", "rewire", "op_type", "init_dims"]))
        node = graph.node[draw(st.integers(0, len(graph.node) - 1))]
        if kind == "attribute" and node.attribute:
            attribute = node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
            if attribute.ints:
                i = draw(st.integers(0, len(attribute.ints) - 1))
                attribute.ints[i] = draw(st.integers(-3, 100))
            elif attribute.type == onnx.AttributeProto.INT:
                attribute.i = draw(st.integers(-3, 100))
        elif kind == "input_dim":
            dim = graph.input[0].type.tensor_type.shape.dim[draw(st.integers(0, 3))]
            dim.dim_value = draw(st.integers(-1, 64))
        elif kind == "rewire" and node.input:
            names = [n for other in graph.node for n in other.output] + ["x", "w", "b", "fc"]
            node.input[draw(st.integers(0, len(node.input) - 1))] = draw(st.sampled_from(names))
        elif kind == "op_type":
            node.op_type = draw(st.sampled_from(SUPPORTED))
        elif kind == "init_dims":
            tensor = graph.initializer[draw(st.integers(0, len(graph.initializer) - 1))]
            if tensor.dims:
                tensor.dims[draw(st.integers(0, len(tensor.dims) - 1))] = draw(st.integers(0, 9))
    return model.SerializeToString()


@pytest.mark.parametrize("backend", ["numpy", "native"])
@settings(max_examples=FUZZ_EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@given(data=structurally_mutated_model())
def test_structurally_mutated_models_are_refused_or_run_never_crash(backend, data):
    test_mutated_model_bytes_are_refused_or_run_never_crash.hypothesis.inner_test(backend, data)
