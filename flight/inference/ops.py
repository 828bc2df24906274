"""The supported ONNX operators: per operator, its checks, normalised attributes and output types.

`check_node` turns one ONNX node into a `Node` whose attributes both backends read without
re-deriving anything: pads resolved (auto_pad, ceil_mode), axes made non-negative, Clip bounds,
Reshape-like operators reduced to their output shape. Anything outside what the core runs is
refused here with a `ModelError` naming the node.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np
import onnx
from onnx import helper

from . import numpy_backend
from .errors import (
    CorruptModelError,
    DtypeError,
    DynamicShapeError,
    LimitError,
    ModelError,
    NonConstantError,
    ShapeMismatchError,
    UnsupportedAttributeError,
)
from .graph import Node, TensorType, describe_node

OPSET_MIN = 11
OPSET_MAX = 21
"""Supported versions of the default ONNX operator set (ai.onnx)."""

MAX_ELEMENTS = 2**31 - 1
"""Largest tensor in elements: the C kernels take dimensions as int32."""

FLOAT = frozenset({"float32"})
QUANTISED = frozenset({"int8", "uint8"})
MOVABLE = FLOAT | QUANTISED  # element types that layout operators move unchanged

ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish")
BINARY = ("Add", "Mul", "Sub", "Div")

_Checked = tuple[Node, list[TensorType]]


class Context:
    """What a check sees of one ONNX node: attributes, input types, and inputs known at load."""

    def __init__(
        self,
        proto: onnx.NodeProto,
        index: int,
        opset: int,
        types: dict[str, TensorType],
        values: dict[str, np.ndarray],
    ) -> None:
        self.op = proto.op_type
        self.opset = opset
        self.where = describe_node(proto.name, proto.op_type, index)
        self.inputs = tuple(proto.input)
        self.outputs = tuple(proto.output)
        self.attrs: dict[str, Any] = {
            a.name: helper.get_attribute_value(a) for a in proto.attribute
        }
        self._types = types
        self._values = values

    def fail(self, cls: type[ModelError], message: str) -> NoReturn:
        raise cls(message, where=self.where)

    def has_input(self, index: int) -> bool:
        return index < len(self.inputs) and self.inputs[index] != ""

    def type(self, index: int, allowed: frozenset[str] = FLOAT) -> TensorType:
        name = self.inputs[index]
        tensor_type = self._types.get(name)
        if tensor_type is None:  # the checker refuses this first; kept as a safety net
            self.fail(
                CorruptModelError,
                f"input {index} ('{name}') is not a graph input, an initialiser or the output "
                "of an earlier node",
            )
        if tensor_type.dtype not in allowed:
            self.fail(
                DtypeError,
                f"input {index} ('{name}') has element type {tensor_type.dtype}; "
                f"{self.op} here takes {' or '.join(sorted(allowed))}",
            )
        return tensor_type

    def value(self, index: int, what: str, cls: type[ModelError] = NonConstantError) -> np.ndarray:
        """The value of an input that must be known at load (an initialiser or folded from them)."""
        name = self.inputs[index]
        if name not in self._values:
            self.fail(
                cls,
                f"{what} (input {index}, '{name}') is computed at run time; the core needs it "
                "as a constant initialiser",
            )
        return self._values[name]

    def attr(self, name: str, default: Any = None) -> Any:
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def ints(self, name: str, default: Sequence[int], length: int, minimum: int) -> tuple[int, ...]:
        value = tuple(int(v) for v in self.attrs.get(name, default))
        if len(value) != length or any(v < minimum for v in value):
            self.fail(
                UnsupportedAttributeError,
                f"attribute {name}={list(value)} must hold {length} values >= {minimum}",
            )
        return value

    def axis(self, value: int, rank: int, what: str = "axis") -> int:
        if not -rank <= value < rank:
            self.fail(UnsupportedAttributeError, f"{what} {value} is outside a rank-{rank} tensor")
        return value % rank

    def node(
        self, op: str | None = None, inputs: Sequence[str] | None = None, **attrs: Any
    ) -> Node:
        return Node(
            op or self.op,
            tuple(self.inputs if inputs is None else inputs),
            self.outputs,
            attrs,
            self.where,
        )


def _window(
    ctx: Context, spatial: Sequence[int], kernel: Sequence[int], *, ceil_mode: bool = False
) -> tuple[dict[str, Any], tuple[int, int]]:
    """Strides, dilations and resolved pads (top, left, bottom, right) of a 2-D window, and the
    output size, after ONNX's rules (explicit pads, SAME_UPPER, SAME_LOWER, VALID, ceil_mode)."""
    strides = ctx.ints("strides", (1, 1), 2, 1)
    dilations = ctx.ints("dilations", (1, 1), 2, 1)
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if auto_pad != "NOTSET" and "pads" in ctx.attrs:
        ctx.fail(
            UnsupportedAttributeError,
            f"pads given together with auto_pad={auto_pad}; ONNX allows one or the other",
        )
    if auto_pad != "NOTSET" and ceil_mode:
        ctx.fail(
            UnsupportedAttributeError, f"ceil_mode=1 with auto_pad={auto_pad} is not supported"
        )
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-size // s) for size, s in zip(spatial, strides, strict=True)]
        total = [
            max(0, (o - 1) * s + e - size)
            for o, s, e, size in zip(out, strides, extent, spatial, strict=True)
        ]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        pads = (*begin, *end)
    elif auto_pad in ("NOTSET", "VALID"):
        pads = ctx.ints("pads", (0, 0, 0, 0), 4, 0) if auto_pad == "NOTSET" else (0, 0, 0, 0)
        out = []
        for i in range(2):
            room = spatial[i] + pads[i] + pads[i + 2] - extent[i]
            if room < 0:
                ctx.fail(
                    ShapeMismatchError,
                    f"the window (kernel {kernel[i]}, dilation {dilations[i]}) is larger than "
                    f"the padded input ({spatial[i]} + pads {pads[i]}, {pads[i + 2]}) "
                    f"on axis {i + 2}",
                )
            size = (-(-room // strides[i]) if ceil_mode else room // strides[i]) + 1
            # As ONNX and PyTorch: with ceil_mode the last window must start inside the input
            # or the leading padding, never wholly in the trailing padding.
            if ceil_mode and (size - 1) * strides[i] >= spatial[i] + pads[i]:
                size -= 1
            out.append(size)
    else:
        ctx.fail(
            UnsupportedAttributeError,
            f"auto_pad={auto_pad!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID",
        )
    return {"strides": strides, "dilations": dilations, "pads": tuple(pads)}, (out[0], out[1])


def _conv(ctx: Context) -> _Checked:
    x = ctx.type(0)
    w = ctx.type(1)
    if len(x.shape) != 4 or len(w.shape) != 4:
        ctx.fail(
            UnsupportedAttributeError,
            f"only 2-D convolution runs here: X has shape {list(x.shape)} and W "
            f"{list(w.shape)}; both must be rank 4 (N, C, H, W)",
        )
    ctx.value(1, "the weight W")
    n, c, h, width = x.shape
    m, cg, kh, kw = w.shape
    group = int(ctx.attr("group", 1))
    if group < 1 or c % group or m % group or cg * group != c:
        ctx.fail(
            ShapeMismatchError,
            f"group={group} does not fit X with {c} channels and W of shape {list(w.shape)} "
            "(need C = W.shape[1] * group and W.shape[0] divisible by group)",
        )
    if "kernel_shape" in ctx.attrs and tuple(ctx.attr("kernel_shape")) != (kh, kw):
        ctx.fail(
            ShapeMismatchError,
            f"kernel_shape {list(ctx.attr('kernel_shape'))} disagrees with W's {[kh, kw]}",
        )
    if ctx.has_input(2):
        bias = ctx.type(2)
        ctx.value(2, "the bias B")
        if bias.shape != (m,):
            ctx.fail(ShapeMismatchError, f"bias B has shape {list(bias.shape)}; expected [{m}]")
    window, (oh, ow) = _window(ctx, (h, width), (kh, kw))
    node = ctx.node(kernel=(kh, kw), group=group, out_hw=(oh, ow), **window)
    return node, [TensorType((n, m, oh, ow), "float32")]


def _pool(ctx: Context) -> _Checked:
    x = ctx.type(0)
    if len(x.shape) != 4:
        ctx.fail(
            UnsupportedAttributeError,
            f"only 2-D pooling runs here: X has shape {list(x.shape)}; it must be rank 4",
        )
    if len(ctx.outputs) > 1 and ctx.outputs[1]:
        ctx.fail(UnsupportedAttributeError, "the Indices output of MaxPool is not supported")
    kernel = ctx.ints("kernel_shape", (), 2, 1)
    ceil_mode = bool(ctx.attr("ceil_mode", 0))
    window, (oh, ow) = _window(ctx, x.shape[2:], kernel, ceil_mode=ceil_mode)
    extra = {}
    if ctx.op == "AveragePool":
        extra["count_include_pad"] = bool(ctx.attr("count_include_pad", 0))
    node = ctx.node(kernel=kernel, ceil_mode=ceil_mode, out_hw=(oh, ow), **window, **extra)
    # A window that reads only padding has nothing to pool (ONNX leaves it undefined).
    taps = numpy_backend.window_view(np.ones((1, 1, *x.shape[2:]), np.float32), node, (oh, ow), 0.0)
    if not np.all(taps.sum(axis=(4, 5))):
        ctx.fail(
            UnsupportedAttributeError,
            f"with pads {list(window['pads'])}, strides {list(window['strides'])} and dilations "
            f"{list(window['dilations'])} some window reads only padding",
        )
    return node, [TensorType((x.shape[0], x.shape[1], oh, ow), "float32")]


def _global_average_pool(ctx: Context) -> _Checked:
    x = ctx.type(0)
    if len(x.shape) < 3:
        ctx.fail(UnsupportedAttributeError, f"X has shape {list(x.shape)}; it needs rank >= 3")
    return ctx.node(), [TensorType((*x.shape[:2], *[1] * (len(x.shape) - 2)), "float32")]


def _gemm(ctx: Context) -> _Checked:
    a, b = ctx.type(0), ctx.type(1)
    if len(a.shape) != 2 or len(b.shape) != 2:
        ctx.fail(
            ShapeMismatchError,
            f"A {list(a.shape)} and B {list(b.shape)} must both be rank 2",
        )
    trans_a, trans_b = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    m, k = a.shape[::-1] if trans_a else a.shape
    k2, n = b.shape[::-1] if trans_b else b.shape
    if k != k2:
        ctx.fail(ShapeMismatchError, f"inner dimensions differ: A gives K={k}, B gives K={k2}")
    if ctx.has_input(2):
        c = ctx.type(2)
        try:
            if np.broadcast_shapes(c.shape, (m, n)) != (m, n):
                raise ValueError
        except ValueError:
            ctx.fail(
                ShapeMismatchError, f"C of shape {list(c.shape)} does not broadcast to [{m}, {n}]"
            )
    node = ctx.node(
        alpha=float(ctx.attr("alpha", 1.0)),
        beta=float(ctx.attr("beta", 1.0)),
        trans_a=trans_a,
        trans_b=trans_b,
    )
    return node, [TensorType((m, n), "float32")]


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """numpy.matmul's output shape (ValueError if the operands do not fit)."""
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ValueError(f"inner dimensions differ: {a2[-1]} and {b2[-2]}")
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def _matmul(ctx: Context) -> _Checked:
    a, b = ctx.type(0), ctx.type(1)
    if not a.shape or not b.shape:
        ctx.fail(ShapeMismatchError, "MatMul operands must have rank >= 1")
    try:
        shape = matmul_shape(a.shape, b.shape)
    except ValueError as error:
        ctx.fail(ShapeMismatchError, f"A {list(a.shape)} and B {list(b.shape)}: {error}")
    return ctx.node(), [TensorType(shape, "float32")]


def _binary(ctx: Context) -> _Checked:
    a, b = ctx.type(0), ctx.type(1)
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        ctx.fail(
            ShapeMismatchError,
            f"shapes {list(a.shape)} and {list(b.shape)} do not broadcast together",
        )
    return ctx.node(), [TensorType(tuple(shape), "float32")]


def _unary(ctx: Context) -> _Checked:
    x = ctx.type(0)
    attrs: dict[str, Any] = {}
    if ctx.op == "LeakyRelu":
        attrs["alpha"] = float(ctx.attr("alpha", 0.01))
    return ctx.node(**attrs), [x]


def _clip(ctx: Context) -> _Checked:
    x = ctx.type(0)
    bounds = []
    for index, what, default in ((1, "min", -math.inf), (2, "max", math.inf)):
        if ctx.has_input(index):
            ctx.type(index)
            value = ctx.value(index, f"the {what} bound")
            if value.size != 1:
                ctx.fail(UnsupportedAttributeError, f"the {what} bound must be a scalar")
            bounds.append(float(value.reshape(())))
        else:
            bounds.append(default)
    return ctx.node(inputs=ctx.inputs[:1], min=bounds[0], max=bounds[1]), [x]


def _softmax(ctx: Context) -> _Checked:
    x = ctx.type(0)
    if not x.shape:
        ctx.fail(ShapeMismatchError, "Softmax needs an input of rank >= 1")
    legacy = ctx.opset < 13  # before opset 13, Softmax flattens to 2-D at `axis`
    axis = ctx.axis(int(ctx.attr("axis", 1 if legacy else -1)), len(x.shape))
    return ctx.node(axis=axis, legacy=legacy), [x]


def _concat(ctx: Context) -> _Checked:
    types = [ctx.type(i, MOVABLE) for i in range(len(ctx.inputs))]
    first = types[0]
    axis = ctx.axis(int(ctx.attr("axis")), len(first.shape))
    for t in types[1:]:
        if t.dtype != first.dtype:
            ctx.fail(DtypeError, f"inputs mix element types {first.dtype} and {t.dtype}")
        same = len(t.shape) == len(first.shape) and all(
            a == b for i, (a, b) in enumerate(zip(t.shape, first.shape, strict=True)) if i != axis
        )
        if not same:
            ctx.fail(
                ShapeMismatchError,
                f"shapes {list(first.shape)} and {list(t.shape)} differ off axis {axis}",
            )
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in types)
    return ctx.node(axis=axis), [TensorType(tuple(shape), first.dtype)]


def _transpose(ctx: Context) -> _Checked:
    x = ctx.type(0, MOVABLE)
    rank = len(x.shape)
    perm = tuple(int(p) for p in ctx.attr("perm", range(rank - 1, -1, -1)))
    if sorted(perm) != list(range(rank)):
        ctx.fail(
            UnsupportedAttributeError, f"perm {list(perm)} is not a permutation of 0..{rank - 1}"
        )
    return ctx.node(perm=perm), [TensorType(tuple(x.shape[p] for p in perm), x.dtype)]


def _reshape_like(ctx: Context) -> _Checked:
    """Reshape, Flatten, Squeeze and Unsqueeze all become a Reshape to a fixed shape: a view."""
    x = ctx.type(0, MOVABLE)
    rank = len(x.shape)
    if ctx.op == "Reshape":
        ctx.type(1, frozenset({"int64"}))
        target = [int(v) for v in ctx.value(1, "the target shape", DynamicShapeError)]
        allow_zero = bool(ctx.attr("allowzero", 0))
        shape = [
            x.shape[i] if v == 0 and not allow_zero and i < rank else v
            for i, v in enumerate(target)
        ]
        if shape.count(-1) > 1 or any(v < -1 for v in shape):
            ctx.fail(UnsupportedAttributeError, f"target shape {target} is not a valid shape")
        if -1 in shape:
            known = math.prod(v for v in shape if v != -1)
            if known == 0 or x.size % known:
                ctx.fail(ShapeMismatchError, f"cannot reshape {list(x.shape)} into {target}")
            shape[shape.index(-1)] = x.size // known
    elif ctx.op == "Flatten":
        axis = int(ctx.attr("axis", 1))
        if not -rank <= axis <= rank:
            ctx.fail(UnsupportedAttributeError, f"axis {axis} is outside 0..{rank}")
        axis = axis + rank if axis < 0 else axis
        shape = [math.prod(x.shape[:axis]), math.prod(x.shape[axis:])]
    else:
        if ctx.opset >= 13:
            if ctx.has_input(1):
                ctx.type(1, frozenset({"int64"}))
                axes = [int(v) for v in ctx.value(1, "axes", DynamicShapeError).reshape(-1)]
            else:
                axes = None
        else:
            axes = ctx.attr("axes")
            axes = None if axes is None else [int(v) for v in axes]
        if ctx.op == "Squeeze":
            if axes is None:
                axes = [i for i, d in enumerate(x.shape) if d == 1]
            axes = [ctx.axis(a, rank, "squeeze axis") for a in axes]
            if any(x.shape[a] != 1 for a in axes):
                ctx.fail(ShapeMismatchError, f"cannot squeeze axes {axes} of {list(x.shape)}")
            shape = [d for i, d in enumerate(x.shape) if i not in axes]
        else:
            if axes is None:
                ctx.fail(UnsupportedAttributeError, "Unsqueeze needs axes")
            out_rank = rank + len(axes)
            axes = sorted(ctx.axis(a, out_rank, "unsqueeze axis") for a in axes)
            if len(set(axes)) != len(axes):
                ctx.fail(UnsupportedAttributeError, f"repeated unsqueeze axes {axes}")
            rest = iter(x.shape)
            shape = [1 if i in axes else next(rest) for i in range(out_rank)]
    if math.prod(shape) != x.size:
        ctx.fail(ShapeMismatchError, f"cannot reshape {list(x.shape)} into {shape}")
    return ctx.node("Reshape", ctx.inputs[:1], shape=tuple(shape)), [
        TensorType(tuple(shape), x.dtype)
    ]


def _batch_normalization(ctx: Context) -> _Checked:
    x = ctx.type(0)
    if len(x.shape) < 2:
        ctx.fail(ShapeMismatchError, f"X has shape {list(x.shape)}; it needs rank >= 2")
    if ctx.attr("training_mode", 0):
        ctx.fail(UnsupportedAttributeError, "training_mode=1 is not supported (inference only)")
    if any(ctx.outputs[1:]):
        ctx.fail(UnsupportedAttributeError, "the running mean/variance outputs are training-only")
    channels = x.shape[1]
    for index, what in enumerate(("scale", "B", "mean", "var"), start=1):
        t = ctx.type(index)
        ctx.value(index, what)
        if t.shape != (channels,):
            ctx.fail(ShapeMismatchError, f"{what} has shape {list(t.shape)}; expected [{channels}]")
    node = ctx.node(epsilon=float(ctx.attr("epsilon", 1e-5)))
    return Node(node.op, node.inputs, node.outputs[:1], node.attrs, node.where), [x]


def _dropout(ctx: Context) -> _Checked:
    x = ctx.type(0)
    if ctx.has_input(2) and bool(np.any(ctx.value(2, "training_mode"))):
        ctx.fail(UnsupportedAttributeError, "training_mode=true is not supported (inference only)")
    types = [x]
    if len(ctx.outputs) > 1:
        types.append(TensorType(x.shape, "bool"))
    return ctx.node(inputs=ctx.inputs[:1]), types


def _identity(ctx: Context) -> _Checked:
    return ctx.node(), [ctx.type(0, MOVABLE | {"int32", "int64"})]


def _quant_params(ctx: Context, x: TensorType) -> tuple[np.ndarray, int | None]:
    """Scale (checked positive and finite) and the axis it runs along (None for per-tensor)."""
    ctx.type(1)
    scale = ctx.value(1, "the scale")
    if int(ctx.attr("block_size", 0)):
        ctx.fail(
            UnsupportedAttributeError, "blocked quantisation (block_size > 0) is not supported"
        )
    if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
        ctx.fail(UnsupportedAttributeError, "the scale must be positive and finite")
    if scale.size == 1 and scale.ndim <= 1:  # a scalar, or a one-element list: per tensor
        return scale.reshape(()), None
    if scale.ndim != 1:
        ctx.fail(
            UnsupportedAttributeError,
            f"the scale has shape {list(scale.shape)}; it must be a scalar or 1-D (per axis)",
        )
    axis = ctx.axis(int(ctx.attr("axis", 1)), len(x.shape))
    if scale.shape[0] != x.shape[axis]:
        ctx.fail(
            ShapeMismatchError, f"{scale.shape[0]} scales for axis {axis} of length {x.shape[axis]}"
        )
    return scale, axis


def _zero_point(ctx: Context, scale: np.ndarray, allowed: frozenset[str]) -> str | None:
    if not ctx.has_input(2):
        return None
    t = ctx.type(2, allowed)
    zero_point = ctx.value(2, "the zero point")
    if zero_point.shape != scale.shape and zero_point.size != scale.size:
        ctx.fail(
            ShapeMismatchError,
            f"zero point shape {list(zero_point.shape)} differs from "
            f"scale shape {list(scale.shape)}",
        )
    return t.dtype


def _quantize_linear(ctx: Context) -> _Checked:
    x = ctx.type(0)
    scale, axis = _quant_params(ctx, x)
    dtype = _zero_point(ctx, scale, QUANTISED)
    if dtype is None:
        output_dtype = int(ctx.attr("output_dtype", 0))
        names = {0: "uint8", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}
        if output_dtype not in names:
            ctx.fail(DtypeError, "only int8 and uint8 quantisation is supported")
        dtype = names[output_dtype]
    return ctx.node(axis=axis, dtype=dtype), [TensorType(x.shape, dtype)]


def _dequantize_linear(ctx: Context) -> _Checked:
    x = ctx.type(0, QUANTISED | {"int32"})
    scale, axis = _quant_params(ctx, x)
    _zero_point(ctx, scale, frozenset({x.dtype}))
    return ctx.node(axis=axis), [TensorType(x.shape, "float32")]


CHECKS: dict[str, Callable[[Context], _Checked]] = {
    "Conv": _conv,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_average_pool,
    "Gemm": _gemm,
    "MatMul": _matmul,
    **dict.fromkeys(BINARY, _binary),
    **dict.fromkeys(("Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish"), _unary),
    "Clip": _clip,
    "Softmax": _softmax,
    "Concat": _concat,
    "Transpose": _transpose,
    **dict.fromkeys(("Reshape", "Flatten", "Squeeze", "Unsqueeze"), _reshape_like),
    "BatchNormalization": _batch_normalization,
    "Dropout": _dropout,
    "Identity": _identity,
    "QuantizeLinear": _quantize_linear,
    "DequantizeLinear": _dequantize_linear,
}

SUPPORTED_OPERATORS = frozenset({*CHECKS, "Constant"})
"""Every ai.onnx operator the loader accepts (Constant becomes an initialiser)."""


def check_node(
    proto: onnx.NodeProto,
    index: int,
    opset: int,
    types: dict[str, TensorType],
    values: dict[str, np.ndarray],
) -> _Checked:
    """The normalised node and its output types; a `ModelError` naming the node otherwise."""
    ctx = Context(proto, index, opset, types, values)
    node, out_types = CHECKS[proto.op_type](ctx)
    for name, t in zip(node.outputs, out_types, strict=False):
        if name and t.size > MAX_ELEMENTS:
            ctx.fail(
                LimitError,
                f"output '{name}' has {t.size} elements, more than the "
                f"{MAX_ELEMENTS} the kernels index",
            )
        if name and t.size == 0:
            ctx.fail(ShapeMismatchError, f"output '{name}' would be empty (shape {list(t.shape)})")
    return node, out_types


def macs(node: Node, types: dict[str, TensorType]) -> int:
    """Multiply-accumulates one run of `node` does (convolutions and matrix products only)."""
    if node.op in ("Conv", "QConv"):
        out = types[node.outputs[0]].shape
        w = types[node.inputs[1]].shape if node.op == "Conv" else node.attrs["weight_shape"]
        return math.prod(out) * math.prod(w[1:])
    if node.op in ("Gemm", "QGemm"):
        m, n = types[node.outputs[0]].shape[-2:] if node.op == "Gemm" else (0, 0)
        if node.op == "QGemm":
            return node.attrs["m"] * node.attrs["n"] * node.attrs["k"]
        a = types[node.inputs[0]].shape
        return m * n * (a[0] if node.attrs["trans_a"] else a[1])
    if node.op == "MatMul":
        a = types[node.inputs[0]].shape
        return types[node.outputs[0]].size * a[-1]
    return 0
