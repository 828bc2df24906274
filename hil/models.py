"""ONNX networks built in code with seeded random weights: test and benchmark models for inference.

Nothing here downloads anything: a MobileNet-v2-style classifier, a U-Net-style cloud-mask network,
one-operator models for operator tests, and `quantize_qdq`, which turns a float model into the QDQ
int8 form ONNX Runtime's static quantiser emits (int8 weights per output channel, int8 or uint8
activations per tensor, calibrated on inputs the caller gives).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
"""Default opset of the models built here (inside the inference core's supported 11..21)."""

_ELEM = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int64): TensorProto.INT64,
}

# MobileNet-v2 inverted residual settings (Sandler et al. 2018, table 2): expansion t, channels c,
# repeats n, first stride s.
_MOBILENET_V2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Channel counts rounded to a multiple of 8, never down by more than 10% (as in the paper)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def finish_model(graph: onnx.GraphProto, opset: int = OPSET) -> onnx.ModelProto:
    """A model around `graph` at `opset`, with the lowest IR version that opset needs."""
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="penumbra-hil")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model


class _Net:
    """Accumulates nodes and initialisers with unique names and seeded He-initialised weights."""

    def __init__(self, seed: int, *, batch_norm: bool) -> None:
        self.rng = np.random.default_rng(seed)
        self.batch_norm = batch_norm
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count: dict[str, int] = {}

    def name(self, prefix: str) -> str:
        index = self._count.get(prefix, 0)
        self._count[prefix] = index + 1
        return f"{prefix}_{index}"

    def const(self, value: np.ndarray, prefix: str) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: Sequence[str], prefix: str, **attrs: object) -> str:
        out = self.name(prefix)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        kernel: int,
        *,
        stride: int = 1,
        groups: int = 1,
        act: str | None = None,
    ) -> str:
        """Conv (+ BatchNormalization when the net has it, else a bias) (+ activation)."""
        fan_in = cin // groups * kernel * kernel
        weight = self.rng.normal(
            0.0, math.sqrt(2.0 / fan_in), (cout, cin // groups, kernel, kernel)
        )
        inputs = [x, self.const(weight.astype(np.float32), "w")]
        if not self.batch_norm:
            inputs.append(self.const(self.rng.uniform(-0.1, 0.1, cout).astype(np.float32), "b"))
        pad = kernel // 2
        y = self.node(
            "Conv",
            inputs,
            "conv",
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
            group=groups,
        )
        if self.batch_norm:
            y = self.batchnorm(y, cout)
        return self.activation(y, act) if act else y

    def batchnorm(self, x: str, channels: int) -> str:
        params = [
            self.rng.uniform(0.5, 1.5, channels),  # scale
            self.rng.uniform(-0.1, 0.1, channels),  # B
            self.rng.uniform(-0.1, 0.1, channels),  # mean
            self.rng.uniform(0.5, 1.5, channels),  # var
        ]
        names = [self.const(p.astype(np.float32), "bn") for p in params]
        return self.node("BatchNormalization", [x, *names], "batchnorm", epsilon=1e-5)

    def activation(self, x: str, kind: str) -> str:
        if kind == "relu6":
            low = self.const(np.array(0.0, np.float32), "min")
            high = self.const(np.array(6.0, np.float32), "max")
            return self.node("Clip", [x, low, high], "relu6")
        op = {"relu": "Relu", "sigmoid": "Sigmoid"}[kind]
        return self.node(op, [x], kind)

    def gemm(self, x: str, k: int, n: int) -> str:
        weight = self.rng.normal(0.0, math.sqrt(1.0 / k), (n, k)).astype(np.float32)
        bias = self.rng.uniform(-0.1, 0.1, n).astype(np.float32)
        return self.node(
            "Gemm", [x, self.const(weight, "fc_w"), self.const(bias, "fc_b")], "fc", transB=1
        )

    def graph(
        self, name: str, inputs: Sequence[tuple[str, tuple[int, ...]]], outputs: Sequence[str]
    ) -> onnx.GraphProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
            self.initializers,
        )
        return graph


def _with_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its graph outputs' types and shapes filled in by ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    known = {v.name: v for v in inferred.graph.value_info}
    known.update({v.name: v for v in inferred.graph.output})
    for output in model.graph.output:
        output.type.CopyFrom(known[output.name].type)
    return model


def mobilenet_v2(
    *,
    width: float = 1.0,
    input_size: int = 224,
    num_classes: int = 1000,
    batch_norm: bool = True,
    seed: int = 0,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """A MobileNet-v2-style classifier: input "image" (1, 3, s, s), output "probabilities".

    Inverted residual blocks (1x1 expand + ReLU6 as Clip, 3x3 depthwise stride 1 or 2 + ReLU6,
    1x1 linear projection, residual Add where shapes allow), BatchNormalization after every
    conv (`batch_norm=False` gives conv biases instead, as after folding), GlobalAveragePool,
    Flatten, Gemm, Softmax. Width 1.0 at 224x224 is the published size (3.5 M parameters,
    0.3 G multiply-accumulates).
    """
    net = _Net(seed, batch_norm=batch_norm)
    channels = _make_divisible(32 * width)
    x = net.conv("image", 3, channels, 3, stride=2, act="relu6")
    for expansion, c, repeats, first_stride in _MOBILENET_V2_BLOCKS:
        out_channels = _make_divisible(c * width)
        for i in range(repeats):
            stride = first_stride if i == 0 else 1
            hidden = channels * expansion
            y = x
            if expansion != 1:
                y = net.conv(y, channels, hidden, 1, act="relu6")
            y = net.conv(y, hidden, hidden, 3, stride=stride, groups=hidden, act="relu6")
            y = net.conv(y, hidden, out_channels, 1)
            if stride == 1 and channels == out_channels:
                y = net.node("Add", [x, y], "residual")
            x, channels = y, out_channels
    last = _make_divisible(1280 * max(1.0, width))
    x = net.conv(x, channels, last, 1, act="relu6")
    x = net.node("GlobalAveragePool", [x], "pool")
    x = net.node("Flatten", [x], "flatten", axis=1)
    x = net.gemm(x, last, num_classes)
    net.nodes.append(helper.make_node("Softmax", [x], ["probabilities"], name="softmax", axis=1))
    graph = net.graph(
        "mobilenet_v2", [("image", (1, 3, input_size, input_size))], ["probabilities"]
    )
    return _with_output_shapes(finish_model(graph, opset))


def cloud_mask_unet(
    *,
    input_size: int = 256,
    in_channels: int = 4,
    base_channels: int = 16,
    depth: int = 3,
    batch_norm: bool = True,
    seed: int = 0,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """A U-Net-style cloud mask: input "bands" (1, in_channels, s, s), output "mask" (1, 1, s, s).

    Each level is two 3x3 Conv + BatchNormalization + Relu; MaxPool 2x2 goes down; up is a 1x1
    Conv to four times the channels and a pixel shuffle (Reshape, Transpose, Reshape), then Concat
    with the skip connection at equal resolution; a final 1x1 Conv and Sigmoid give the mask.
    """
    if input_size % (2**depth):
        raise ValueError(f"input_size {input_size} must be divisible by 2**depth = {2**depth}")
    net = _Net(seed, batch_norm=batch_norm)

    def double_conv(x: str, cin: int, cout: int) -> str:
        return net.conv(net.conv(x, cin, cout, 3, act="relu"), cout, cout, 3, act="relu")

    widths = [base_channels * 2**level for level in range(depth + 1)]
    skips: list[str] = []
    x, cin = "bands", in_channels
    for level in range(depth):
        x = double_conv(x, cin, widths[level])
        skips.append(x)
        x = net.node("MaxPool", [x], "down", kernel_shape=[2, 2], strides=[2, 2])
        cin = widths[level]
    x = double_conv(x, cin, widths[depth])
    for level in reversed(range(depth)):
        size = input_size // 2 ** (level + 1)
        c = widths[level]
        x = net.conv(x, widths[level + 1], 4 * c, 1)
        x = net.node(
            "Reshape",
            [x, net.const(np.array([1, c, 2, 2, size, size], np.int64), "shape")],
            "shuffle",
        )
        x = net.node("Transpose", [x], "shuffle", perm=[0, 1, 4, 2, 5, 3])
        x = net.node(
            "Reshape",
            [x, net.const(np.array([1, c, 2 * size, 2 * size], np.int64), "shape")],
            "shuffle",
        )
        x = net.node("Concat", [skips[level], x], "skip", axis=1)
        x = double_conv(x, 2 * c, c)
    logits = net.conv(x, widths[0], 1, 1)
    net.nodes.append(helper.make_node("Sigmoid", [logits], ["mask"], name="mask"))
    graph = net.graph(
        "cloud_mask_unet", [("bands", (1, in_channels, input_size, input_size))], ["mask"]
    )
    return _with_output_shapes(finish_model(graph, opset))


def one_op_model(
    op_type: str,
    inputs: Sequence[tuple[str, tuple[int, ...] | np.ndarray]],
    *,
    outputs: Sequence[str] = ("y",),
    opset: int = OPSET,
    **attrs: object,
) -> onnx.ModelProto:
    """A model of one `op_type` node: (name, shape) pairs become float32 graph inputs, (name,
    ndarray) pairs become initialisers, and an empty name leaves an optional input out."""
    graph_inputs, initializers = [], []
    for name, spec in inputs:
        if not name:
            continue
        if isinstance(spec, np.ndarray | np.generic):
            initializers.append(numpy_helper.from_array(np.asarray(spec), name))
        else:
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(spec)))
    node = helper.make_node(
        op_type, [n for n, _ in inputs], list(outputs), name=op_type.lower(), **attrs
    )
    graph = helper.make_graph(
        [node],
        f"one_{op_type}",
        graph_inputs,
        [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n in outputs],
        initializers,
    )
    model = finish_model(graph, opset)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    for output, known in zip(model.graph.output, inferred.graph.output, strict=True):
        output.type.CopyFrom(known.type)
    return model


# -- QDQ quantisation -------------------------------------------------------------------------


def _calibrate(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor's value on `feeds`, computed by ONNX's reference evaluator."""
    from onnx.reference import ReferenceEvaluator

    names = [o for node in model.graph.node for o in node.output]
    evaluator = ReferenceEvaluator(model)
    values = evaluator.run(names, dict(feeds))
    result = dict(zip(names, values, strict=True))
    result.update(feeds)
    return result


def _activation_qparams(values: np.ndarray, dtype: np.dtype) -> tuple[np.float32, np.ndarray]:
    """Asymmetric per-tensor scale and zero point covering the values and 0 (as ORT's MinMax)."""
    low = min(0.0, float(values.min()))
    high = max(0.0, float(values.max()))
    scale = (high - low) / 255.0 if high > low else 1.0
    info = np.iinfo(dtype)
    zero_point = np.clip(round(info.min - low / scale), info.min, info.max)
    return np.float32(scale), np.array(zero_point, dtype)


def _weight_qparams(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per-channel weights along `axis`: (quantised weight, scales)."""
    reduce_axes = tuple(a for a in range(weight.ndim) if a != axis)
    max_abs = np.abs(weight).max(axis=reduce_axes)
    scale = np.where(max_abs > 0, max_abs / 127.0, 1.0).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    quantised = np.clip(np.rint(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
    return quantised, scale


def quantize_qdq(
    model: onnx.ModelProto,
    calibration: Mapping[str, np.ndarray],
    *,
    activations: str = "int8",
) -> onnx.ModelProto:
    """`model` in QDQ form: Conv, Gemm and MatMul with a constant weight run on quantised values.

    Weights become int8 symmetric per output channel behind a DequantizeLinear; biases int32 at
    scale x_scale * w_scale; every activation into or out of those operators (after a Relu or
    Clip that follows one) gets a QuantizeLinear/DequantizeLinear pair with a per-tensor scale from
    the ranges seen on `calibration`. `activations` is "int8" or "uint8" (ONNX Runtime's default
    U8S8 form). BatchNormalization must be folded first: build the float model with
    `batch_norm=False`.
    """
    if activations not in ("int8", "uint8"):
        raise ValueError(f"activations must be 'int8' or 'uint8', not {activations!r}")
    act_dtype = np.dtype(activations)
    if any(node.op_type == "BatchNormalization" for node in model.graph.node):
        raise ValueError("fold BatchNormalization first (build the model with batch_norm=False)")
    values = _calibrate(model, calibration)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in model.graph.output}

    def quantisable(node: onnx.NodeProto) -> bool:
        if node.op_type == "Conv":
            return node.input[1] in inits
        if node.op_type == "Gemm":
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            return node.input[1] in inits and not trans_a
        return (
            node.op_type == "MatMul" and node.input[1] in inits and inits[node.input[1]].ndim == 2
        )

    quantised = [node for node in model.graph.node if quantisable(node)]
    to_quantise: list[str] = []  # activation tensors that get a Q/DQ pair, in order
    for node in quantised:
        to_quantise.append(node.input[0])
        out = node.output[0]
        after = consumers.get(out, [])
        if len(after) == 1 and after[0].op_type in ("Relu", "Clip") and out not in graph_outputs:
            out = after[0].output[0]
        to_quantise.append(out)
    qparams = {}
    for name in dict.fromkeys(to_quantise):
        qparams[name] = _activation_qparams(values[name], act_dtype)

    new_inits: list[onnx.TensorProto] = [
        t for t in model.graph.initializer if not any(t.name == n.input[1] for n in quantised)
    ]
    prologue: list[onnx.NodeProto] = []  # DequantizeLinear of weights and biases
    rename: dict[tuple[int, int], str] = {}  # (node id, input index) -> new input name
    for node in quantised:
        x_name, w_name = node.input[0], node.input[1]
        weight = inits[w_name]
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        axis = 0 if node.op_type == "Conv" or (node.op_type == "Gemm" and trans_b) else 1
        w_q, w_scale = _weight_qparams(weight, axis)
        w_zero = np.zeros(w_scale.shape, np.int8)
        for suffix, array in (("_q", w_q), ("_scale", w_scale), ("_zero", w_zero)):
            new_inits.append(numpy_helper.from_array(array, w_name + suffix))
        prologue.append(
            helper.make_node(
                "DequantizeLinear",
                [w_name + "_q", w_name + "_scale", w_name + "_zero"],
                [w_name + "_dq"],
                name=w_name + "_dq",
                axis=axis,
            )
        )
        rename[(id(node), 1)] = w_name + "_dq"
        if len(node.input) > 2 and node.input[2] in inits and x_name in qparams:
            bias = inits[node.input[2]]
            if bias.ndim == 1 and bias.shape[0] == w_scale.shape[0]:
                b_scale = (qparams[x_name][0] * w_scale).astype(np.float32)
                b_q = np.rint(bias / b_scale).astype(np.int32)
                b_name = node.input[2]
                new_inits = [t for t in new_inits if t.name != b_name]
                new_inits += [
                    numpy_helper.from_array(b_q, b_name + "_q"),
                    numpy_helper.from_array(b_scale, b_name + "_scale"),
                    numpy_helper.from_array(np.zeros(b_q.shape, np.int32), b_name + "_zero"),
                ]
                prologue.append(
                    helper.make_node(
                        "DequantizeLinear",
                        [b_name + "_q", b_name + "_scale", b_name + "_zero"],
                        [b_name + "_dq"],
                        name=b_name + "_dq",
                        axis=0,
                    )
                )
                rename[(id(node), 2)] = b_name + "_dq"

    nodes: list[onnx.NodeProto] = list(prologue)

    def dequantized(name: str) -> str:
        """What readers of a quantised tensor read: a graph output keeps its name."""
        return name if name in graph_outputs else name + "_dq"

    def qdq(name: str) -> list[onnx.NodeProto]:
        scale, zero_point = qparams[name]
        new_inits.append(numpy_helper.from_array(np.array(scale, np.float32), name + "_qscale"))
        new_inits.append(numpy_helper.from_array(zero_point, name + "_qzero"))
        params = [name + "_qscale", name + "_qzero"]
        source = name + "_float" if name in graph_outputs else name
        return [
            helper.make_node(
                "QuantizeLinear", [source, *params], [name + "_q"], name=name + "_quantize"
            ),
            helper.make_node(
                "DequantizeLinear",
                [name + "_q", *params],
                [dequantized(name)],
                name=name + "_dequantize",
            ),
        ]

    for name in qparams:
        if name in (i.name for i in model.graph.input):
            nodes += qdq(name)
    for node in model.graph.node:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for i, name in enumerate(node.input):
            if (id(node), i) in rename:
                new.input[i] = rename[(id(node), i)]
            elif name in qparams:
                new.input[i] = dequantized(name)
        for i, name in enumerate(node.output):
            if name in qparams and name in graph_outputs:
                new.output[i] = name + "_float"
        nodes.append(new)
        for name in node.output:
            if name in qparams:
                nodes += qdq(name)

    graph = helper.make_graph(
        nodes,
        model.graph.name + f"_qdq_{activations}",
        list(model.graph.input),
        list(model.graph.output),
        new_inits,
    )
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    # Opset 19 at least: per-axis DequantizeLinear needs 13, and the reference evaluator runs
    # QuantizeLinear/DequantizeLinear only from 19.
    return finish_model(graph, max(opset, 19))
