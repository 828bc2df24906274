"""Graph passes run once at load: removing no-ops, folding constants and BatchNormalization,
fusing activations and QDQ patterns for the native kernels, dropping dead nodes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import numpy_backend
from .errors import UnsupportedAttributeError
from .graph import Graph, Node, TensorType
from .ops import ACTIVATIONS, BINARY

FUSABLE = ("Conv", "Gemm", *BINARY)  # MatMul joins them when its right operand is constant


def prepare(graph: Graph, *, backend: str) -> Graph:
    """Rewrite `graph` in place for `backend` ("numpy" or "native") and return it.

    Both backends lose Identity and Dropout, constant subgraphs and BatchNormalization (folded
    into the convolution before it, else turned into a per-channel Mul and Add). The native
    backend also runs uint8 tensors as int8, maps QDQ patterns onto its int8 kernels and fuses
    activations into the operator before them; the NumPy reference runs the rest literally.
    """
    remove_no_ops(graph)
    if backend == "native":
        uint8_as_int8(graph)
        fuse_qdq(graph)
    fold_constants(graph)
    fold_batch_normalization(graph)
    if backend == "native":
        fuse_activations(graph)
    eliminate_dead_nodes(graph)
    return graph


def _rename_input(graph: Graph, old: str, new: str) -> None:
    graph.nodes = [
        replace(n, inputs=tuple(new if i == old else i for i in n.inputs)) if old in n.inputs else n
        for n in graph.nodes
    ]


def remove_no_ops(graph: Graph) -> None:
    """Identity and Dropout disappear; their readers read the tensor before them."""
    index = 0
    while index < len(graph.nodes):
        node = graph.nodes[index]
        if node.op not in ("Identity", "Dropout") or node.attrs.get("copy"):
            index += 1
            continue
        consumers = graph.consumers()
        mask = node.outputs[1] if len(node.outputs) > 1 else ""
        if mask and (mask in consumers or mask in graph.outputs):
            raise UnsupportedAttributeError(
                f"the Dropout mask output '{mask}' is used; the core runs inference only",
                where=node.where,
            )
        source, target = node.inputs[0], node.outputs[0]
        producer = graph.producers().get(source)
        if target not in graph.outputs:
            del graph.nodes[index]
            _rename_input(graph, target, source)
        elif producer is None or source in graph.outputs or source in graph.constants:
            # A graph input or constant returned as an output: kept, as a plain copy.
            graph.nodes[index] = Node("Identity", (source,), (target,), {"copy": True}, node.where)
        else:
            # The output keeps its name: the producer writes it directly.
            p = graph.nodes[producer]
            graph.nodes[producer] = replace(
                p, outputs=tuple(target if o == source else o for o in p.outputs)
            )
            del graph.nodes[index]
            _rename_input(graph, source, target)
        index = 0  # names changed: look again from the start


def fold_constants(graph: Graph) -> None:
    """A node whose inputs are all constants runs once, now; its outputs become constants."""
    kept = []
    for node in graph.nodes:
        names = [n for n in node.inputs if n]
        if names and node.op in numpy_backend.KERNELS and all(n in graph.constants for n in names):
            values = numpy_backend.evaluate(node, [graph.constants.get(n) for n in node.inputs])
            for name, value in zip(node.outputs, values, strict=False):
                graph.constants[name] = np.asarray(value, order="C")
        else:
            kept.append(node)
    graph.nodes = kept


def _new_constant(graph: Graph, base: str, value: np.ndarray) -> str:
    name = graph.unique_name(base)
    graph.constants[name] = np.asarray(value, order="C")
    graph.types[name] = TensorType(value.shape, value.dtype.name)
    return name


def fold_batch_normalization(graph: Graph) -> None:
    """BatchNormalization folds into the Conv before it (W' = W s, b' = (b - mean) s + B with
    s = scale / sqrt(var + eps), in float64); elsewhere it becomes x * s + t per channel."""
    for node in list(graph.nodes):
        if node.op != "BatchNormalization":
            continue
        x = node.inputs[0]
        scale, bias, mean, var = (graph.constants[n].astype(np.float64) for n in node.inputs[1:])
        s = scale / np.sqrt(var + node.attrs["epsilon"])
        t = bias - mean * s
        consumers = graph.consumers()
        producers = graph.producers()
        conv_index = producers.get(x)
        conv = graph.nodes[conv_index] if conv_index is not None else None
        if (
            conv is not None
            and conv.op == "Conv"
            and "act" not in conv.attrs
            and len(consumers.get(x, ())) == 1
            and x not in graph.outputs
            and conv.inputs[1] in graph.constants
        ):
            w = graph.constants[conv.inputs[1]].astype(np.float64)
            b = graph.constants[conv.inputs[2]] if len(conv.inputs) > 2 and conv.inputs[2] else 0
            w_name = _new_constant(
                graph, conv.inputs[1] + ".bn", (w * s[:, None, None, None]).astype(np.float32)
            )
            b_name = _new_constant(graph, node.outputs[0] + ".bias", (b * s + t).astype(np.float32))
            old_inputs = (*conv.inputs[1:], *node.inputs[1:])
            graph.nodes[conv_index] = replace(
                conv, inputs=(conv.inputs[0], w_name, b_name), outputs=node.outputs
            )
            graph.nodes.remove(node)
            _drop_unread(graph, old_inputs)  # the unfolded weights now, not at the end: memory
            continue
        rank = len(graph.types[x].shape)
        shape = (-1,) + (1,) * (rank - 2)
        s_name = _new_constant(
            graph, node.outputs[0] + ".scale", s.astype(np.float32).reshape(shape)
        )
        t_name = _new_constant(
            graph, node.outputs[0] + ".shift", t.astype(np.float32).reshape(shape)
        )
        scaled = graph.unique_name(node.outputs[0] + ".scaled")
        graph.types[scaled] = graph.types[x]
        at = graph.nodes.index(node)
        graph.nodes[at : at + 1] = [
            Node("Mul", (x, s_name), (scaled,), {}, node.where),
            Node("Add", (scaled, t_name), node.outputs, {}, node.where),
        ]


def _drop_unread(graph: Graph, names: tuple[str, ...]) -> None:
    """Forget constants among `names` that no node reads and no output returns."""
    read = {name for node in graph.nodes for name in node.inputs} | set(graph.outputs)
    for name in names:
        if name not in read:
            graph.constants.pop(name, None)


def activation_of(node: Node) -> tuple[str, float, float]:
    """An activation node as (kind, alpha, beta), the C core's pn_act."""
    if node.op == "Clip":
        return ("Clip", node.attrs["min"], node.attrs["max"])
    if node.op == "LeakyRelu":
        return ("LeakyRelu", node.attrs["alpha"], 0.0)
    return (node.op, 0.0, 0.0)


def fuse_activations(graph: Graph) -> None:
    """An activation that alone reads a Conv, Gemm, MatMul (constant B) or binary output runs in
    that operator's epilogue."""
    changed = True
    while changed:
        changed = False
        consumers = graph.consumers()
        producers = graph.producers()
        for index, node in enumerate(graph.nodes):
            if node.op not in ACTIVATIONS:
                continue
            x = node.inputs[0]
            p = producers.get(x)
            if p is None or x in graph.outputs or len(consumers.get(x, ())) != 1:
                continue
            before = graph.nodes[p]
            gemm_like = before.op == "MatMul" and _constant_matrix(graph, before.inputs[1])
            if (before.op not in FUSABLE and not gemm_like) or "act" in before.attrs:
                continue
            graph.nodes[p] = replace(
                before,
                outputs=node.outputs,
                attrs={**before.attrs, "act": activation_of(node)},
            )
            del graph.nodes[index]
            changed = True
            break


def _constant_matrix(graph: Graph, name: str) -> bool:
    return name in graph.constants and graph.constants[name].ndim == 2


def eliminate_dead_nodes(graph: Graph) -> None:
    """Nodes nothing reads go, and constants nothing reads with them."""
    live = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if any(o in live for o in node.outputs):
            kept.append(node)
            live.update(n for n in node.inputs if n)
    graph.nodes = kept[::-1]
    graph.constants = {k: v for k, v in graph.constants.items() if k in live}


# -- int8 -------------------------------------------------------------------------------------


def uint8_as_int8(graph: Graph) -> None:
    """Every uint8 tensor becomes the int8 tensor q - 128 (its zero point too), so the C core
    needs int8 kernels only; QuantizeLinear and DequantizeLinear compute the same values."""
    was_uint8 = {name for name, t in graph.types.items() if t.dtype == "uint8"}

    def zero_point(node: Node) -> str:
        scale = graph.constants[node.inputs[1]]
        return _new_constant(graph, node.outputs[0] + ".zero", np.full(scale.shape, -128, np.int8))

    for index, node in enumerate(graph.nodes):
        has_zero = len(node.inputs) > 2 and bool(node.inputs[2])
        if node.op == "QuantizeLinear" and node.attrs["dtype"] == "uint8":
            inputs = node.inputs if has_zero else (*node.inputs[:2], zero_point(node))
            graph.nodes[index] = replace(node, inputs=inputs, attrs={**node.attrs, "dtype": "int8"})
        elif node.op == "DequantizeLinear" and node.inputs[0] in was_uint8 and not has_zero:
            graph.nodes[index] = replace(node, inputs=(*node.inputs[:2], zero_point(node)))
    for name in was_uint8:
        graph.types[name] = TensorType(graph.types[name].shape, "int8")
        if name in graph.constants:
            shifted = graph.constants[name].astype(np.int16) - 128
            graph.constants[name] = shifted.astype(np.int8)


def _single_consumer(graph: Graph, consumers: dict[str, list[int]], name: str) -> int | None:
    readers = consumers.get(name, [])
    if len(readers) != 1 or name in graph.outputs:
        return None
    return readers[0]


def _per_tensor(graph: Graph, node: Node) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor QuantizeLinear/DequantizeLinear, else None."""
    if node.attrs["axis"] is not None:
        return None
    scale = float(graph.constants[node.inputs[1]].reshape(()))
    zero = 0
    if len(node.inputs) > 2 and node.inputs[2]:
        zero = int(graph.constants[node.inputs[2]].reshape(()))
    return scale, zero


def _constant_dequantize(graph: Graph, node: Node) -> np.ndarray:
    return numpy_backend.evaluate(node, [graph.constants.get(n) for n in node.inputs])[0]


def fuse_qdq(graph: Graph) -> None:
    """DequantizeLinear -> Conv | Gemm | MatMul [-> Relu | Clip] -> QuantizeLinear, with int8
    activations per tensor and constant int8 weights symmetric per output channel, becomes one
    QConv or QGemm node on int8 tensors (the TFLite int8 scheme: int32 accumulation, bias at
    scale x_scale * w_scale, per-channel requantisation). Other patterns stay in float."""
    changed = True
    while changed:
        changed = False
        consumers = graph.consumers()
        producers = graph.producers()
        for node in graph.nodes:
            if node.op in ("Conv", "Gemm", "MatMul"):
                fused = _match_qdq(graph, node, consumers, producers)
                if fused is not None:
                    new, remove = fused
                    at = graph.nodes.index(node)
                    graph.nodes[at] = new
                    for dead in remove:
                        graph.nodes.remove(dead)
                    changed = True
                    break


def _match_qdq(
    graph: Graph, node: Node, consumers: dict[str, list[int]], producers: dict[str, int]
) -> tuple[Node, list[Node]] | None:
    def producer(name: str, op: str) -> Node | None:
        index = producers.get(name)
        if index is None or graph.nodes[index].op != op:
            return None
        return graph.nodes[index]

    dq_x = producer(node.inputs[0], "DequantizeLinear")
    dq_w = producer(node.inputs[1], "DequantizeLinear")
    if dq_x is None or dq_w is None:
        return None
    x_q = dq_x.inputs[0]
    x_params = _per_tensor(graph, dq_x)
    if x_q in graph.constants or graph.types[x_q].dtype != "int8" or x_params is None:
        return None
    w_q = dq_w.inputs[0]
    if w_q not in graph.constants or graph.constants[w_q].dtype != np.int8:
        return None
    if len(dq_w.inputs) > 2 and dq_w.inputs[2] and np.any(graph.constants[dq_w.inputs[2]]):
        return None  # weights must be symmetric (zero point 0)

    # Output side: [Relu | Clip] then one per-tensor int8 QuantizeLinear.
    removed: list[Node] = []
    out = node.outputs[0]
    reader = _single_consumer(graph, consumers, out)
    act = None
    if reader is not None and graph.nodes[reader].op in ("Relu", "Clip"):
        act = graph.nodes[reader]
        removed.append(act)
        reader = _single_consumer(graph, consumers, act.outputs[0])
    if reader is None or graph.nodes[reader].op != "QuantizeLinear":
        return None
    q = graph.nodes[reader]
    y_params = _per_tensor(graph, q)
    if y_params is None or q.attrs["dtype"] != "int8":
        return None
    removed.append(q)

    x_scale, x_zero = x_params
    y_scale, y_zero = y_params
    w = graph.constants[w_q]
    w_scale = np.asarray(graph.constants[dq_w.inputs[1]], np.float64)
    attrs: dict = {"x_zero_point": x_zero, "y_zero_point": y_zero}
    low, high = -128, 127
    if act is not None:
        bound_low = 0.0 if act.op == "Relu" else act.attrs["min"]
        bound_high = math.inf if act.op == "Relu" else act.attrs["max"]
        if math.isfinite(bound_low):
            low = max(low, int(np.rint(bound_low / y_scale)) + y_zero)
        if math.isfinite(bound_high):
            high = min(high, int(np.rint(bound_high / y_scale)) + y_zero)
        if low > high:
            return None
    attrs.update(act_min=low, act_max=high)

    if node.op == "Conv":
        channels = w.shape[0]
        channel_axis = 0
        bias_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        alpha = 1.0
        attrs.update(
            {
                k: node.attrs[k]
                for k in ("kernel", "group", "out_hw", "strides", "dilations", "pads")
            }
        )
        attrs["weight_shape"] = w.shape
        op = "QConv"
    else:
        if node.op == "Gemm":
            if node.attrs["trans_a"]:
                return None
            trans_b = node.attrs["trans_b"]
            alpha = node.attrs["alpha"]
            bias_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        else:
            if w.ndim != 2 or len(graph.types[x_q].shape) < 2:
                return None
            trans_b, alpha, bias_name = False, 1.0, None
        if w.ndim != 2:
            return None
        k, n = w.shape[::-1] if trans_b else w.shape
        channels, channel_axis = n, 0 if trans_b else 1
        x_shape = graph.types[x_q].shape
        attrs.update(m=math.prod(x_shape[:-1]), n=n, k=k, trans_b=trans_b)
        op = "QGemm"
    if dq_w.attrs["axis"] is not None and dq_w.attrs["axis"] != channel_axis:
        return None
    w_scale = np.broadcast_to(w_scale.reshape(-1), (channels,)).astype(np.float64)

    bias = np.zeros(channels, np.float64)
    if bias_name is not None:
        index = producers.get(bias_name)
        if bias_name in graph.constants:
            value = graph.constants[bias_name]
        elif (
            index is not None
            and graph.nodes[index].op == "DequantizeLinear"
            and all(n in graph.constants for n in graph.nodes[index].inputs if n)
        ):
            value = _constant_dequantize(graph, graph.nodes[index])
        else:
            return None
        if value.dtype != np.float32 or value.shape not in ((), (1,), (channels,), (1, channels)):
            return None
        beta = node.attrs.get("beta", 1.0)
        bias = np.broadcast_to(value.astype(np.float64).reshape(-1) * beta, (channels,))
    bias_scale = x_scale * w_scale
    bias_q = np.clip(np.rint(bias / bias_scale), -(2**31), 2**31 - 1).astype(np.int32)
    multiplier = (alpha * x_scale * w_scale / y_scale).astype(np.float32)

    attrs["weight"] = _new_constant(graph, w_q + ".q", w)
    attrs["bias"] = _new_constant(graph, q.outputs[0] + ".bias_q", bias_q)
    attrs["multiplier"] = _new_constant(graph, q.outputs[0] + ".multiplier", multiplier)
    new = Node(
        op,
        (x_q, attrs["weight"], attrs["bias"], attrs["multiplier"]),
        q.outputs,
        attrs,
        node.where,
    )
    return new, removed
