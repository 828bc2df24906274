"""Reads and validates an ONNX model into a `Graph`, refusing what the core cannot run, by name."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from . import numpy_backend
from .errors import (
    CorruptModelError,
    DtypeError,
    DynamicShapeError,
    ExternalDataError,
    ModelError,
    OpsetError,
    UnsupportedAttributeError,
    UnsupportedOperatorError,
)
from .graph import Graph, TensorType, describe_node
from .ops import OPSET_MAX, OPSET_MIN, SUPPORTED_OPERATORS, check_node

ModelSource = str | os.PathLike[str] | bytes | bytearray | memoryview | onnx.ModelProto

# Element types the core holds in tensors; anything else is refused where it appears.
_DTYPES = {
    TensorProto.FLOAT: "float32",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.INT32: "int32",
    TensorProto.INT64: "int64",
}
_PARAMETER_DTYPES = frozenset({"float32", "int8", "uint8", "int32"})
_DEFAULT_DOMAINS = ("", "ai.onnx")


def _elem_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"element type {elem_type}"


def read_bytes(source: ModelSource) -> bytes:
    """The serialised model from a path, bytes or a ModelProto; never reads external data."""
    if isinstance(source, onnx.ModelProto):
        return source.SerializeToString()
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            return path.read_bytes()
        except OSError as error:
            raise ModelError(
                f"cannot read the model file: {error.strerror or error}", where=str(path)
            ) from None
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    raise TypeError(
        f"load() takes a file path, bytes or an onnx.ModelProto, not {type(source).__name__}"
    )


def parse_model(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as error:  # protobuf raises DecodeError, RuntimeWarning or ValueError
        raise CorruptModelError(
            f"not an ONNX model: the protobuf does not parse ({type(error).__name__}: {error}); "
            "is the file truncated or corrupt?"
        ) from None
    return model


def _check_external_data(model: onnx.ModelProto) -> None:
    def refuse(tensor: TensorProto, where: str) -> None:
        location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        raise ExternalDataError(
            f"the tensor's data is stored in an external file ('{location}'); the core loads "
            "self-contained models only: save it with "
            "onnx.save_model(model, path, save_as_external_data=False)",
            where=where,
        )

    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            refuse(tensor, f"initializer '{tensor.name}'")
    for index, node in enumerate(model.graph.node):
        for attribute in node.attribute:
            tensors = [attribute.t] if attribute.HasField("t") else list(attribute.tensors)
            for tensor in tensors:
                if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
                    refuse(tensor, describe_node(node.name, node.op_type, index))


def _check_opset(model: onnx.ModelProto) -> int:
    versions = {o.domain: o.version for o in model.opset_import}
    version = next((versions[d] for d in _DEFAULT_DOMAINS if d in versions), None)
    if version is None:
        raise OpsetError(
            "the model imports no version of the default ONNX operator set (ai.onnx)",
            where="model opset_import",
        )
    if not OPSET_MIN <= version <= OPSET_MAX:
        raise OpsetError(
            f"the model uses ai.onnx opset {version}; this core runs opsets "
            f"{OPSET_MIN}..{OPSET_MAX}: convert it with onnx.version_converter.convert_version("
            f"model, 17) or export it again with an opset in that range",
            where="model opset_import",
        )
    return version


def _check_operators(model: onnx.ModelProto) -> None:
    for index, node in enumerate(model.graph.node):
        where = describe_node(node.name, node.op_type, index)
        if node.domain not in _DEFAULT_DOMAINS:
            raise UnsupportedOperatorError(
                f"operator domain '{node.domain}' is not supported; only ai.onnx operators run "
                "here (a model quantised for ONNX Runtime in QOperator form needs QDQ form)",
                where=where,
            )
        if node.op_type not in SUPPORTED_OPERATORS:
            raise UnsupportedOperatorError(
                f"operator {node.op_type} is not supported; the core runs "
                f"{', '.join(sorted(SUPPORTED_OPERATORS))}",
                where=where,
            )


def _run_checker(data: bytes) -> None:
    try:
        onnx.checker.check_model(data, full_check=True)
    except Exception as error:  # ValidationError, InferenceError, and ValueError on odd input
        message = str(error).strip().splitlines()
        detail = message[0] if message else type(error).__name__
        raise CorruptModelError(f"the ONNX checker refuses the model: {detail}") from None


def _static_type(value: onnx.ValueInfoProto, what: str) -> TensorType:
    where = f"{what} '{value.name}'"
    if not value.type.HasField("tensor_type"):
        raise DtypeError(
            "only tensors are supported (not sequences, maps or optionals)", where=where
        )
    tensor = value.type.tensor_type
    if tensor.elem_type != TensorProto.FLOAT:
        raise DtypeError(
            f"element type {_elem_name(tensor.elem_type)}; model inputs and outputs must be "
            "float32",
            where=where,
        )
    if not tensor.HasField("shape"):
        raise DynamicShapeError(
            "the shape is unknown; the core runs fixed shapes: give every dimension a value",
            where=where,
        )
    dims = []
    for axis, dim in enumerate(tensor.shape.dim):
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            label = f"'{dim.dim_param}'" if dim.dim_param else "unknown"
            raise DynamicShapeError(
                f"dimension {axis} is {label}; the core runs fixed shapes: fix it, for example "
                "with onnx.tools.update_model_dims.update_inputs_outputs_dims, or export with "
                "static shapes",
                where=where,
            )
        dims.append(dim.dim_value)
    return TensorType(tuple(dims), "float32")


def _constant_value(node: onnx.NodeProto, where: str) -> np.ndarray:
    attribute = node.attribute[0] if len(node.attribute) == 1 else None
    if attribute is None:
        raise UnsupportedAttributeError("Constant needs exactly one value attribute", where=where)
    if attribute.name == "value":
        return _tensor_value(attribute.t, where)
    if attribute.name == "value_float":
        return np.array(attribute.f, np.float32)
    if attribute.name == "value_floats":
        return np.array(attribute.floats, np.float32)
    if attribute.name == "value_int":
        return np.array(attribute.i, np.int64)
    if attribute.name == "value_ints":
        return np.array(attribute.ints, np.int64)
    raise UnsupportedAttributeError(
        f"Constant with attribute {attribute.name} is not supported", where=where
    )


def _tensor_value(tensor: TensorProto, where: str) -> np.ndarray:
    if tensor.data_type not in _DTYPES:
        raise DtypeError(
            f"element type {_elem_name(tensor.data_type)} is not supported; the core holds "
            f"{', '.join(sorted(set(_DTYPES.values())))}",
            where=where,
        )
    try:
        value = numpy_helper.to_array(tensor)
    except Exception as error:  # a tensor whose data disagrees with its dims
        raise CorruptModelError(f"the tensor data does not decode: {error}", where=where) from None
    return np.asarray(value, order="C")


def load_graph(source: ModelSource) -> Graph:
    """The checked graph of a model, or a `ModelError` naming what is refused and where."""
    data = read_bytes(source)
    model = parse_model(data)
    if not model.HasField("graph"):
        raise CorruptModelError("the model has no graph (empty or not an ONNX model?)")
    _check_external_data(model)
    opset = _check_opset(model)
    if model.graph.sparse_initializer:
        raise UnsupportedAttributeError(
            "sparse initialisers are not supported",
            where=f"initializer '{model.graph.sparse_initializer[0].values.name}'",
        )
    _check_operators(model)
    initializer_names = {t.name for t in model.graph.initializer}
    # Before the checker, so that a dynamic input is reported as such, by name.
    input_types = {
        v.name: _static_type(v, "graph input")
        for v in model.graph.input
        if v.name not in initializer_names
    }
    # The checker reads the bytes, not the parsed model, and the model is parsed again after
    # it: ONNX would serialise a ModelProto first, and the copies add up to several times the
    # weights at the moment of peak memory (a flight computer has little to spare).
    del model
    _run_checker(data)
    model = parse_model(data)
    del data

    types: dict[str, TensorType] = {}
    constants: dict[str, np.ndarray] = {}
    parameters = 0
    for tensor in model.graph.initializer:
        value = _tensor_value(tensor, f"initializer '{tensor.name}'")
        constants[tensor.name] = value
        types[tensor.name] = TensorType(value.shape, value.dtype.name)
        if value.dtype.name in _PARAMETER_DTYPES:
            parameters += value.size
    # An initialiser listed among the inputs is a constant here (no overriding at run time).
    inputs = list(input_types)
    types.update(input_types)

    values = dict(constants)  # everything known at load, including folded subgraphs
    nodes = []
    for index, proto in enumerate(model.graph.node):
        where = describe_node(proto.name, proto.op_type, index)
        if proto.op_type == "Constant":
            value = _constant_value(proto, where)
            constants[proto.output[0]] = values[proto.output[0]] = value
            types[proto.output[0]] = TensorType(value.shape, value.dtype.name)
            if value.dtype.name in _PARAMETER_DTYPES:
                parameters += value.size
            continue
        node, out_types = check_node(proto, index, opset, types, values)
        for name, tensor_type in zip(node.outputs, out_types, strict=False):
            if name:
                types[name] = tensor_type
        if all(name in values for name in node.inputs if name) and node.op != "Dropout":
            outputs = numpy_backend.evaluate(node, [values[n] if n else None for n in node.inputs])
            values.update(zip(node.outputs, outputs, strict=False))
        nodes.append(node)

    outputs = []
    for value in model.graph.output:
        produced = types.get(value.name)
        if produced is None:  # the checker refuses this first; kept as a safety net
            raise CorruptModelError("no node produces it", where=f"graph output '{value.name}'")
        where = f"graph output '{value.name}'"
        if produced.dtype != "float32":
            raise DtypeError(
                f"element type {produced.dtype}; model inputs and outputs must be float32",
                where=where,
            )
        # A declared output shape is not checked against the computed one: ONNX's own shape
        # inference gets some (ceil_mode pooling) wrong where ONNX Runtime and the reference
        # agree with the core, and the computed shape is what `session.info` reports.
        outputs.append(value.name)

    operators = Counter(node.op_type for node in model.graph.node)
    return Graph(
        inputs=inputs,
        outputs=outputs,
        nodes=nodes,
        types=types,
        constants=constants,
        opset=opset,
        model_operators=dict(sorted(operators.items())),
        parameters=parameters,
    )
