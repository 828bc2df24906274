"""The reference backend: every supported operator in plain NumPy, run node by node.

Written to be read against the ONNX operator specification, not to be fast: it is the oracle the
native core is tested against and the backend a user picks with `backend="numpy"`. The loader also
uses these kernels to fold constant subgraphs at load. Quantised graphs run literally: every
QuantizeLinear and DequantizeLinear as written, the operators between them in float.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .graph import Graph, Node

_Kernel = Callable[[Node, list[np.ndarray | None]], list[np.ndarray]]


def window_view(x: np.ndarray, node: Node, out_hw: tuple[int, int], fill: float) -> np.ndarray:
    """View (N, C, out_h, out_w, kernel_h, kernel_w) of every window of `x`, padded with `fill`
    as the node's resolved pads say, and further at the bottom and right when ceil_mode needs."""
    kh, kw = node.attrs["kernel"]
    sh, sw = node.attrs["strides"]
    dh, dw = node.attrs["dilations"]
    top, left = node.attrs["pads"][:2]  # bottom and right follow from the output size
    oh, ow = out_hw
    extent_h, extent_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    h, w = x.shape[2:]
    need_h = (oh - 1) * sh + extent_h
    need_w = (ow - 1) * sw + extent_w
    padding = ((0, 0), (0, 0), (top, max(0, need_h - h - top)), (left, max(0, need_w - w - left)))
    padded = np.pad(x, padding, constant_values=fill)
    view = sliding_window_view(padded, (extent_h, extent_w), axis=(2, 3))
    return view[:, :, : need_h - extent_h + 1 : sh, : need_w - extent_w + 1 : sw, ::dh, ::dw]


def conv(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    x, w, b = inputs[0], inputs[1], inputs[2] if len(inputs) > 2 else None
    n = x.shape[0]
    m, cg, kh, kw = w.shape
    group = node.attrs["group"]
    oh, ow = _output_hw(node, x)
    cols = window_view(x, node, (oh, ow), 0.0)  # (N, C, oh, ow, kh, kw)
    if group == 1:
        y = np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    else:
        cols = cols.reshape(n, group, cg, oh, ow, kh, kw)
        wg = w.reshape(group, m // group, cg, kh, kw)
        y = np.einsum("ngchwij,gmcij->ngmhw", cols, wg, optimize=True).reshape(n, m, oh, ow)
    if b is not None:
        y = y + b.reshape(1, m, 1, 1)
    return [np.asarray(y, dtype=np.float32, order="C")]


def _output_hw(node: Node, x: np.ndarray) -> tuple[int, int]:
    """The output size the loader resolved (kept with the node as `out_hw`)."""
    return node.attrs["out_hw"]


def max_pool(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    x = inputs[0]
    windows = window_view(x, node, _output_hw(node, x), -np.inf)
    return [windows.max(axis=(4, 5))]


def average_pool(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    x = inputs[0]
    out_hw = _output_hw(node, x)
    total = window_view(x, node, out_hw, 0.0).sum(axis=(4, 5), dtype=np.float32)
    # The divisor counts the taps inside the input, or (count_include_pad) inside the input and
    # its declared pads, never the extra room ceil_mode adds (as ONNX Runtime and PyTorch).
    top, left, bottom, right = node.attrs["pads"]
    h, w = x.shape[2:]
    if node.attrs["count_include_pad"]:
        inside = np.zeros((1, 1, h + top + bottom, w + left + right), np.float32)
        inside[:] = 1.0
        shifted = Node(node.op, (), (), {**node.attrs, "pads": (0, 0, 0, 0)}, node.where)
        counts = window_view(inside, shifted, out_hw, 0.0).sum(axis=(4, 5))
    else:
        counts = window_view(np.ones((1, 1, h, w), np.float32), node, out_hw, 0.0).sum(axis=(4, 5))
    return [(total / counts).astype(np.float32)]


def global_average_pool(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    x = inputs[0]
    return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float32)]


def gemm(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    a = a.T if node.attrs["trans_a"] else a
    b = b.T if node.attrs["trans_b"] else b
    y = np.float32(node.attrs["alpha"]) * (a @ b)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + np.float32(node.attrs["beta"]) * inputs[2]
    return [np.asarray(y, dtype=np.float32, order="C")]


def matmul(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    return [np.matmul(inputs[0], inputs[1])]


_BINARY = {"Add": np.add, "Mul": np.multiply, "Sub": np.subtract, "Div": np.divide}


def binary(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    return [_BINARY[node.op](inputs[0], inputs[1]).astype(np.float32, copy=False)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32, copy=False)


def hard_swish(x: np.ndarray) -> np.ndarray:
    return x * np.clip(x * np.float32(1.0 / 6.0) + np.float32(0.5), 0.0, 1.0, dtype=np.float32)


def activation(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    x = inputs[0]
    if node.op == "Relu":
        y = np.maximum(x, np.float32(0.0))
    elif node.op == "Clip":
        y = np.minimum(np.maximum(x, np.float32(node.attrs["min"])), np.float32(node.attrs["max"]))
    elif node.op == "LeakyRelu":
        y = np.where(x < 0, x * np.float32(node.attrs["alpha"]), x)
    elif node.op == "Sigmoid":
        y = sigmoid(x)
    elif node.op == "Tanh":
        y = np.tanh(x)
    else:
        y = hard_swish(x)
    return [y.astype(np.float32, copy=False)]


def softmax(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    x = inputs[0]
    axis = node.attrs["axis"]
    if node.attrs["legacy"]:  # opset < 13: softmax of the rows of a 2-D view split at `axis`
        rows = x.reshape(int(np.prod(x.shape[:axis])), -1)
        return [
            softmax(Node("Softmax", (), (), {"axis": 1, "legacy": False}), [rows])[0].reshape(
                x.shape
            )
        ]
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return [(e / e.sum(axis=axis, keepdims=True)).astype(np.float32, copy=False)]


def concat(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    return [np.concatenate(inputs, axis=node.attrs["axis"])]


def transpose(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    return [np.transpose(inputs[0], node.attrs["perm"])]


def reshape(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    return [inputs[0].reshape(node.attrs["shape"])]


def batch_normalization(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    x, scale, bias, mean, var = inputs
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = (scale / np.sqrt(var + np.float32(node.attrs["epsilon"]))).reshape(shape)
    return [((x - mean.reshape(shape)) * inv + bias.reshape(shape)).astype(np.float32)]


def _per_axis(value: np.ndarray, axis: int | None, rank: int) -> np.ndarray:
    """A scale or zero point shaped to broadcast along `axis` of a rank-`rank` tensor."""
    if axis is None:
        return value.reshape(())
    shape = [1] * rank
    shape[axis] = -1
    return value.reshape(shape)


def quantize_linear(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    x, scale = inputs[0], inputs[1]
    zero_point = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    dtype = np.dtype(node.attrs["dtype"])
    axis = node.attrs["axis"]
    # ONNX: saturate(round_half_to_even(x / scale) + zero_point).
    q = np.rint(x / _per_axis(scale, axis, x.ndim))
    if zero_point is not None:
        q = q + _per_axis(zero_point, axis, x.ndim).astype(np.float32)
    info = np.iinfo(dtype)
    return [np.clip(q, info.min, info.max).astype(dtype)]


def dequantize_linear(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    x, scale = inputs[0], inputs[1]
    zero_point = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    axis = node.attrs["axis"]
    y = x.astype(np.float32)
    if zero_point is not None:
        y = y - _per_axis(zero_point, axis, x.ndim).astype(np.float32)
    return [(y * _per_axis(scale, axis, x.ndim)).astype(np.float32, copy=False)]


def identity(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    return [inputs[0]]


KERNELS: dict[str, _Kernel] = {
    "Conv": conv,
    "MaxPool": max_pool,
    "AveragePool": average_pool,
    "GlobalAveragePool": global_average_pool,
    "Gemm": gemm,
    "MatMul": matmul,
    **dict.fromkeys(_BINARY, binary),
    **dict.fromkeys(("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish"), activation),
    "Softmax": softmax,
    "Concat": concat,
    "Transpose": transpose,
    "Reshape": reshape,
    "BatchNormalization": batch_normalization,
    "QuantizeLinear": quantize_linear,
    "DequantizeLinear": dequantize_linear,
    "Identity": identity,
    "Dropout": identity,
}


def evaluate(node: Node, inputs: list[np.ndarray | None]) -> list[np.ndarray]:
    """The node's outputs for these input values (NumPy's floating-point warnings silenced: an
    overflow to inf or a 0/0 NaN is the IEEE result the native core gives too)."""
    with np.errstate(all="ignore"):
        return KERNELS[node.op](node, inputs)


class NumpyProgram:
    """Runs a prepared graph node by node; holds no per-run state, so runs may overlap."""

    backend = "numpy"
    simd = "numpy"

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        # Free each intermediate after its last reader, so peak memory stays near the live set.
        last_use: dict[str, int] = {}
        for index, node in enumerate(graph.nodes):
            for name in node.inputs:
                last_use[name] = index
        keep = set(graph.outputs) | set(graph.constants)
        self._release: list[list[str]] = [[] for _ in graph.nodes]
        for name, index in last_use.items():
            if name not in keep:
                self._release[index].append(name)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values: dict[str, np.ndarray] = dict(self.graph.constants)
        values.update(feeds)
        for node, release in zip(self.graph.nodes, self._release, strict=True):
            outputs = evaluate(node, [values[name] if name else None for name in node.inputs])
            values.update(zip(node.outputs, outputs, strict=False))
            for name in release:
                del values[name]
        return {name: np.array(values[name], dtype=np.float32) for name in self.graph.outputs}
