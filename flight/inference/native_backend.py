"""The native backend: plans a prepared graph onto the C kernels once, then runs the plan.

At load every tensor gets an offset in one 64-byte-aligned arena (by liveness, see arena.py),
weights are packed once, and every kernel call's arguments (descriptors, pointers into the
arena) are built as cffi objects kept alive by the plan. `run` copies the inputs in, makes the
calls in order (each releases the GIL; the kernels parallelise on the session's thread pool) and
copies the outputs out: nothing is allocated on the arena path.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import numpy_backend
from .arena import ALIGNMENT, Buffer, aligned_size, plan_arena
from .errors import BackendUnavailableError, LimitError, UnsupportedAttributeError
from .graph import Graph, Node, TensorType

MAX_DIMS = 6  # PN_MAX_DIMS
_ACT_KINDS = {"Relu": 1, "Clip": 2, "LeakyRelu": 3, "Sigmoid": 4, "Tanh": 5, "HardSwish": 6}
_BINARY_OPS = {"Add": 0, "Mul": 1, "Sub": 2, "Div": 3}
_CTYPES = {"float32": "float *", "int8": "int8_t *", "int32": "int32_t *"}

BUILD_HINT = (
    "the native inference module flight.inference._native is not built; build it with `make` "
    "(or `pip install -e .`) on a machine with a C compiler (gcc), or choose backend='numpy' "
    "explicitly"
)


def native_module() -> tuple[Any, Any]:
    """(ffi, lib) of the compiled core, or BackendUnavailableError saying how to build it."""
    try:
        from ._native import ffi, lib
    except ImportError as error:
        raise BackendUnavailableError(f"{BUILD_HINT} ({error})") from None
    return ffi, lib


def aligned_empty(nbytes: int, dtype: str) -> np.ndarray:
    """A zeroed 1-D array of `dtype` whose data starts on a 64-byte boundary."""
    raw = np.zeros(nbytes + ALIGNMENT, np.uint8)
    skip = -raw.ctypes.data % ALIGNMENT
    return raw[skip : skip + nbytes].view(dtype)


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return strides[::-1]


def broadcast_strides(shape: Sequence[int], out_shape: Sequence[int]) -> list[int]:
    """Element strides of a contiguous `shape` read as `out_shape` (0 on broadcast axes)."""
    padded = [1] * (len(out_shape) - len(shape)) + list(shape)
    strides = contiguous_strides(padded)
    return [
        0 if size == 1 and out != 1 else s
        for size, out, s in zip(padded, out_shape, strides, strict=True)
    ]


def collapse_dims(
    out_shape: Sequence[int], *strides: Sequence[int]
) -> tuple[list[int], list[list[int]]]:
    """Merge adjacent axes every operand walks contiguously (and drop size-1 axes), so a
    broadcast becomes as few, as long, inner loops as possible."""
    dims = [(size, [s[i] for s in strides]) for i, size in enumerate(out_shape) if size != 1]
    merged: list[tuple[int, list[int]]] = []
    for size, st in dims:
        if merged:
            prev_size, prev = merged[-1]
            if all(p == s * size for p, s in zip(prev, st, strict=True)):
                merged[-1] = (prev_size * size, st)
                continue
        merged.append((size, st))
    if not merged:
        merged = [(1, [0] * len(strides))]
    return [m[0] for m in merged], [[m[1][k] for m in merged] for k in range(len(strides))]


class NativeProgram:
    """A graph planned onto the C core: one arena, packed weights, a list of prepared calls."""

    backend = "native"

    def __init__(self, graph: Graph, *, num_threads: int, max_arena_bytes: int) -> None:
        self.ffi, self.lib = native_module()
        ffi, lib = self.ffi, self.lib
        self.simd = ffi.string(lib.pn_simd_name(lib.pn_simd_level())).decode()
        pool = lib.pn_pool_create(num_threads)
        if pool == ffi.NULL:
            raise BackendUnavailableError(f"the C core could not start {num_threads} threads")
        self._pool = ffi.gc(pool, lib.pn_pool_destroy)
        self.num_threads = num_threads
        self._graph = graph
        self._keep: list[Any] = []  # cffi objects and arrays the prepared calls point into
        self.weight_bytes = 0
        self._lock = threading.Lock()

        # Tensors that live inside another's buffer: (parent, byte offset). Views (Reshape,
        # Identity) share their source's buffer; a Concat's inputs are written straight into
        # their slices of its output where that output is one contiguous run per input.
        self._alias: dict[str, tuple[str, int]] = {}
        for node in graph.nodes:
            if node.op in ("Reshape", "Identity") and node.inputs[0] not in graph.constants:
                self._alias[node.outputs[0]] = (node.inputs[0], 0)
        for node in graph.nodes:
            if node.op == "Concat":
                self._place_concat_inputs(graph, node)
        # How many nodes still read each constant: weights are dropped once packed.
        self._readers = Counter(name for node in graph.nodes for name in node.inputs)
        self._scratch: list[Buffer] = []
        buffers = self._buffers(graph)
        self._step = -1
        # Calls are prepared against symbolic buffers first, then bound to the arena.
        self._pending: list[tuple[Callable[..., Any], list[Any]]] = []
        for step, node in enumerate(graph.nodes):
            self._step = step
            self._plan_node(node)
        plan = plan_arena(buffers + self._scratch)
        if plan.size_bytes > max_arena_bytes:
            raise LimitError(
                f"the activations need an arena of {plan.size_bytes} bytes, more than "
                f"max_arena_bytes={max_arena_bytes}; raise it with load(..., max_arena_bytes=...)",
                where="model",
            )
        self.arena_bytes = plan.size_bytes
        # For comparison: every activation tensor (views too) and scratch in its own buffer.
        activations = {*graph.inputs, *(o for n in graph.nodes for o in n.outputs if o)}
        self.tensor_bytes = sum(
            aligned_size(graph.types[name].nbytes) for name in activations
        ) + sum(aligned_size(b.size_bytes) for b in self._scratch)
        self._arena = aligned_empty(max(plan.size_bytes, ALIGNMENT), "uint8")
        self._offsets = plan.offsets
        self._calls = [(fn, tuple(self._bind(a) for a in args)) for fn, args in self._pending]
        del self._pending
        self._inputs = [(name, self._view(name)) for name in graph.inputs if self._has_buffer(name)]
        self._outputs = [
            (name, graph.constants.get(name), None if name in graph.constants else self._view(name))
            for name in graph.outputs
        ]
        self._graph = None  # the plan holds what it needs; unpacked weights can go

    # -- buffers ------------------------------------------------------------------------------

    def _resolve(self, name: str) -> tuple[str, int]:
        """The buffer a tensor lives in (a root tensor) and its byte offset there."""
        offset = 0
        while name in self._alias:
            name, step = self._alias[name]
            offset += step
        return name, offset

    def _place_concat_inputs(self, graph: Graph, node: Node) -> None:
        y = graph.types[node.outputs[0]]
        axis = node.attrs["axis"]
        if math.prod(y.shape[:axis]) != 1:
            return  # each input would be several runs of the output, not one slice
        produced = {name for n in graph.nodes for name in n.outputs}
        out_root = self._resolve(node.outputs[0])[0]
        offset = 0
        placed: set[str] = set()
        for name in node.inputs:
            root, within = self._resolve(name)
            if (
                within == 0
                and root in produced
                and root not in graph.inputs
                and root not in placed
                and root != out_root
                and graph.types[root].nbytes == graph.types[name].nbytes
            ):
                self._alias[root] = (node.outputs[0], offset)
                placed.add(root)
            offset += graph.types[name].nbytes

    def _buffers(self, graph: Graph) -> list[Buffer]:
        end = len(graph.nodes)
        first: dict[str, int] = {name: -1 for name in graph.inputs}
        last: dict[str, int] = {name: -1 for name in graph.inputs}
        for step, node in enumerate(graph.nodes):
            for name in node.inputs:
                if name and name not in graph.constants:
                    root = self._resolve(name)[0]
                    last[root] = max(last.get(root, step), step)
            for name in node.outputs:
                if name:
                    root = self._resolve(name)[0]
                    first.setdefault(root, step)
                    last[root] = max(last.get(root, step), step)
        for name in graph.outputs:
            if name not in graph.constants:
                last[self._resolve(name)[0]] = end
        return [
            Buffer(root, graph.types[root].nbytes, first[root], last[root])
            for root in first
            if root in last
        ]

    def _has_buffer(self, name: str) -> bool:
        return self._resolve(name)[0] in self._offsets

    def _view(self, name: str) -> np.ndarray:
        t = self._graph.types[name]
        root, within = self._resolve(name)
        offset = self._offsets[root] + within
        return np.frombuffer(self._arena, t.dtype, t.size, offset).reshape(t.shape)

    # -- pointers -----------------------------------------------------------------------------

    def _type(self, name: str) -> TensorType:
        return self._graph.types[name]

    def _ptr(self, name: str, ctype: str | None = None) -> Any:
        """A pointer argument: into the arena (bound after planning) or to a constant."""
        ctype = ctype or _CTYPES[self._type(name).dtype]
        graph = self._graph
        if name in graph.constants:
            return self._const_ptr(graph.constants[name], ctype)
        return _Slot(ctype, *self._resolve(name))

    def _bind(self, arg: Any) -> Any:
        """A planned argument made concrete now that the arena exists."""
        if isinstance(arg, _Slot):
            address = self._arena.ctypes.data + self._offsets[arg.name] + arg.offset
            return self.ffi.cast(arg.ctype, address)
        if isinstance(arg, _Offset):
            return self._bind(arg.base) + arg.elements
        if isinstance(arg, _PointerArray):
            array = self.ffi.new(
                "void *[]", [self.ffi.cast("void *", self._bind(p)) for p in arg.items]
            )
            self._keep.append(array)
            return array
        return arg

    def _const_ptr(self, value: np.ndarray, ctype: str) -> Any:
        array = np.asarray(value, order="C")
        self._keep.append(array)
        buffer = self.ffi.from_buffer(array)
        self._keep.append(buffer)
        return self.ffi.cast(ctype, buffer)

    def _packed_from(self, name: str) -> None:
        """The constant `name` is packed; once no node reads it the plan need not keep it."""
        self._readers[name] -= 1
        if self._readers[name] <= 0 and name not in self._graph.outputs:
            self._graph.constants.pop(name, None)

    def _packed(self, count: int, dtype: str) -> Any:
        """A pointer to a new 64-byte-aligned buffer for packed weights, kept with the plan."""
        array = aligned_empty(max(count, 1) * np.dtype(dtype).itemsize, dtype)
        self.weight_bytes += array.nbytes
        return self._const_ptr(array, _CTYPES[dtype])

    def _scratch_slot(self, nbytes: int, ctype: str) -> Any:
        if nbytes <= 0:
            return self.ffi.NULL
        name = f"scratch#{len(self._scratch)}"
        self._scratch.append(Buffer(name, nbytes, self._step, self._step))
        return _Slot(ctype, name)

    def _new(self, ctype: str, init: Any) -> Any:
        value = self.ffi.new(ctype, init)
        self._keep.append(value)
        return value

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        self._pending.append((fn, list(args)))

    def _act(self, node: Node) -> dict[str, float | int]:
        kind, alpha, beta = node.attrs.get("act", ("None", 0.0, 0.0))
        return {"kind": _ACT_KINDS.get(kind, 0), "alpha": alpha, "beta": beta}

    # -- operators ----------------------------------------------------------------------------

    def _plan_node(self, node: Node) -> None:
        planner = getattr(self, "_plan_" + node.op.lower(), None)
        if node.op in _BINARY_OPS:
            planner = self._plan_binary
        elif node.op in _ACT_KINDS:
            planner = self._plan_activation
        if planner is None:
            raise UnsupportedAttributeError(
                f"operator {node.op} has no native kernel", where=node.where
            )
        planner(node)

    def _plan_reshape(self, node: Node) -> None:
        """A view: the output shares its input's buffer (see `_alias`), so nothing runs."""

    _plan_identity = _plan_reshape

    def _conv_desc(
        self,
        node: Node,
        x: TensorType,
        y: TensorType,
        w_shape: tuple[int, ...],
        act: dict[str, float | int],
    ) -> dict[str, Any]:
        top, left = node.attrs["pads"][:2]
        return {
            "batch": x.shape[0],
            "in_channels": x.shape[1],
            "in_h": x.shape[2],
            "in_w": x.shape[3],
            "out_channels": y.shape[1],
            "out_h": y.shape[2],
            "out_w": y.shape[3],
            "kernel_h": w_shape[2],
            "kernel_w": w_shape[3],
            "stride_h": node.attrs["strides"][0],
            "stride_w": node.attrs["strides"][1],
            "dilation_h": node.attrs["dilations"][0],
            "dilation_w": node.attrs["dilations"][1],
            "pad_top": top,
            "pad_left": left,
            "groups": node.attrs["group"],
            "act": act,
        }

    def _plan_conv(self, node: Node) -> None:
        lib, graph = self.lib, self._graph
        x, y = self._type(node.inputs[0]), self._type(node.outputs[0])
        weight = np.asarray(graph.constants[node.inputs[1]], np.float32, order="C")
        desc = self._new(
            "pn_conv2d_desc *", self._conv_desc(node, x, y, weight.shape, self._act(node))
        )
        packed_ptr = self._packed(lib.pn_conv2d_packed_floats(desc), "float32")
        lib.pn_conv2d_pack(desc, self.ffi.from_buffer("float[]", weight), packed_ptr)
        del weight
        self._packed_from(node.inputs[1])
        bias = (
            graph.constants[node.inputs[2]]
            if len(node.inputs) > 2 and node.inputs[2]
            else np.zeros(y.shape[1], np.float32)
        )
        scratch = self._scratch_slot(
            4 * lib.pn_conv2d_scratch_floats(desc, self.num_threads), "float *"
        )
        self._call(
            lib.pn_conv2d,
            self._pool,
            desc,
            self._ptr(node.inputs[0]),
            packed_ptr,
            self._const_ptr(bias.astype(np.float32), "float *"),
            self._ptr(node.outputs[0]),
            scratch,
        )

    def _plan_qconv(self, node: Node) -> None:
        lib, graph = self.lib, self._graph
        x, y = self._type(node.inputs[0]), self._type(node.outputs[0])
        weight = graph.constants[node.attrs["weight"]]
        conv = self._conv_desc(node, x, y, weight.shape, {"kind": 0, "alpha": 0.0, "beta": 0.0})
        desc = self._new(
            "pn_qconv2d_desc *",
            {
                "conv": conv,
                "x_zero_point": node.attrs["x_zero_point"],
                "y_zero_point": node.attrs["y_zero_point"],
                "act_min": node.attrs["act_min"],
                "act_max": node.attrs["act_max"],
            },
        )
        conv_desc = self.ffi.addressof(desc[0], "conv")
        packed_ptr = self._packed(lib.pn_qconv2d_packed_bytes(conv_desc), "int8")
        lib.pn_qconv2d_pack(conv_desc, self.ffi.from_buffer("int8_t[]", weight), packed_ptr)
        del weight
        self._packed_from(node.attrs["weight"])
        scratch = self._scratch_slot(
            lib.pn_qconv2d_scratch_bytes(conv_desc, self.num_threads), "void *"
        )
        self._call(
            lib.pn_qconv2d,
            self._pool,
            desc,
            self._ptr(node.inputs[0]),
            packed_ptr,
            self._ptr(node.attrs["bias"]),
            self._ptr(node.attrs["multiplier"]),
            self._ptr(node.outputs[0]),
            scratch,
        )

    def _plan_qgemm(self, node: Node) -> None:
        lib, graph = self.lib, self._graph
        a = node.attrs
        weight = graph.constants[a["weight"]]
        desc = self._new(
            "pn_qgemm_desc *",
            {
                "m": a["m"],
                "n": a["n"],
                "k": a["k"],
                "x_zero_point": a["x_zero_point"],
                "y_zero_point": a["y_zero_point"],
                "act_min": a["act_min"],
                "act_max": a["act_max"],
            },
        )
        packed_ptr = self._packed(lib.pn_qgemm_packed_bytes(a["k"], a["n"]), "int8")
        lib.pn_qgemm_pack(
            a["k"], a["n"], self.ffi.from_buffer("int8_t[]", weight), int(a["trans_b"]), packed_ptr
        )
        del weight
        self._packed_from(a["weight"])
        self._call(
            lib.pn_qgemm,
            self._pool,
            desc,
            self._ptr(node.inputs[0]),
            packed_ptr,
            self._ptr(a["bias"]),
            self._ptr(a["multiplier"]),
            self._ptr(node.outputs[0]),
        )

    def _gemm_call(
        self,
        a_ptr: Any,
        m: int,
        k: int,
        n: int,
        b: np.ndarray,
        trans_a: bool,
        trans_b: bool,
        bias: np.ndarray,
        act: dict[str, float | int],
        y_ptr: Any,
    ) -> None:
        lib = self.lib
        desc = self._new(
            "pn_gemm_desc *", {"m": m, "n": n, "k": k, "trans_a": int(trans_a), "act": act}
        )
        packed_ptr = self._packed(lib.pn_gemm_packed_floats(k, n), "float32")
        b = np.asarray(b, np.float32, order="C")
        lib.pn_gemm_pack(k, n, self.ffi.from_buffer("float[]", b), int(trans_b), packed_ptr)
        self._call(
            lib.pn_gemm,
            self._pool,
            desc,
            a_ptr,
            packed_ptr,
            self._const_ptr(np.asarray(bias, np.float32, order="C"), "float *"),
            y_ptr,
        )

    def _plan_gemm(self, node: Node) -> None:
        graph, attrs = self._graph, node.attrs
        a_t, y_t = self._type(node.inputs[0]), self._type(node.outputs[0])
        m, n = y_t.shape
        k = a_t.shape[0] if attrs["trans_a"] else a_t.shape[1]
        c_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
        act = self._act(node)
        bias = np.zeros(n, np.float32)
        c_separate = None
        if c_name is not None:
            c_shape = self._type(c_name).shape
            if c_name in graph.constants and c_shape in ((), (1,), (n,), (1, n)):
                bias = np.broadcast_to(
                    graph.constants[c_name].astype(np.float64).reshape(-1) * attrs["beta"], (n,)
                ).astype(np.float32)
            else:
                c_separate = c_name
        b_name = node.inputs[1]
        if b_name in graph.constants:
            b = graph.constants[b_name].astype(np.float32) * np.float32(attrs["alpha"])
            target = (
                self._scratch_slot(y_t.nbytes, "float *")
                if c_separate
                else self._ptr(node.outputs[0])
            )
            self._gemm_call(
                self._ptr(node.inputs[0]),
                m,
                k,
                n,
                b,
                attrs["trans_a"],
                attrs["trans_b"],
                bias,
                {"kind": 0, "alpha": 0.0, "beta": 0.0} if c_separate else act,
                target,
            )
            del b
            self._packed_from(b_name)
            product = target
        else:
            product = self._matmul_2d(
                node, m, k, n, bias, scaled=c_separate is not None, act=None if c_separate else act
            )
        if c_separate is not None:
            c_ptr = self._ptr(c_separate)
            c_shape = self._type(c_separate).shape
            if attrs["beta"] != 1.0:
                scaled = self._scratch_slot(4 * math.prod(c_shape), "float *")
                self._binary_call(
                    "Mul",
                    c_shape,
                    c_ptr,
                    c_shape,
                    self._const_ptr(np.array([attrs["beta"]], np.float32), "float *"),
                    (),
                    scaled,
                    None,
                )
                c_ptr = scaled
            self._binary_call(
                "Add", (m, n), product, (m, n), c_ptr, c_shape, self._ptr(node.outputs[0]), act
            )

    def _matmul_2d(
        self,
        node: Node,
        m: int,
        k: int,
        n: int,
        bias: np.ndarray,
        *,
        scaled: bool,
        act: dict[str, float | int] | None,
    ) -> Any:
        """Gemm with a computed B: transposes into scratch, pn_matmul, then alpha, bias, act."""
        attrs = node.attrs
        a_ptr, b_ptr = self._ptr(node.inputs[0]), self._ptr(node.inputs[1])
        if attrs["trans_a"]:
            a_ptr = self._transpose_call(a_ptr, (k, m), (1, 0), 4)
        if attrs["trans_b"]:
            b_ptr = self._transpose_call(b_ptr, (n, k), (1, 0), 4)
        product = self._scratch_slot(4 * m * n, "float *")
        self.lib_matmul(1, m, n, k, a_ptr, 0, b_ptr, 0, product)
        alpha = np.full((1, n), attrs["alpha"], np.float32)
        out = self._scratch_slot(4 * m * n, "float *") if scaled else self._ptr(node.outputs[0])
        # y = product * alpha + bias: two passes, the second with the activation.
        tmp = self._scratch_slot(4 * m * n, "float *")
        self._binary_call(
            "Mul", (m, n), product, (m, n), self._const_ptr(alpha, "float *"), (1, n), tmp, None
        )
        self._binary_call(
            "Add",
            (m, n),
            tmp,
            (m, n),
            self._const_ptr(bias.reshape(1, n), "float *"),
            (1, n),
            out,
            act,
        )
        return out

    def lib_matmul(
        self,
        batch: int,
        m: int,
        n: int,
        k: int,
        a: Any,
        a_stride: int,
        b: Any,
        b_stride: int,
        y: Any,
    ) -> None:
        self._call(self.lib.pn_matmul, self._pool, batch, m, n, k, a, a_stride, b, b_stride, y)

    def _plan_matmul(self, node: Node) -> None:
        graph = self._graph
        a_t, b_t, y_t = (
            self._type(node.inputs[0]),
            self._type(node.inputs[1]),
            self._type(node.outputs[0]),
        )
        a_shape = (1, *a_t.shape) if len(a_t.shape) == 1 else a_t.shape
        b_shape = (*b_t.shape, 1) if len(b_t.shape) == 1 else b_t.shape
        m, k, n = a_shape[-2], a_shape[-1], b_shape[-1]
        if node.inputs[1] in graph.constants and len(b_t.shape) == 2:
            rows = math.prod(a_shape[:-1])
            self._gemm_call(
                self._ptr(node.inputs[0]),
                rows,
                k,
                n,
                graph.constants[node.inputs[1]],
                False,
                False,
                np.zeros(n, np.float32),
                self._act(node),
                self._ptr(node.outputs[0]),
            )
            self._packed_from(node.inputs[1])
            return
        batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
        total = math.prod(batch)
        a_ptr, b_ptr, y_ptr = (
            self._ptr(node.inputs[0]),
            self._ptr(node.inputs[1]),
            self._ptr(node.outputs[0]),
        )

        def stride(shape: tuple[int, ...]) -> int | None:
            own = shape[:-2]
            if math.prod(own) == 1:
                return 0
            if (1,) * (len(batch) - len(own)) + tuple(own) == batch:
                return shape[-2] * shape[-1]
            return None

        sa, sb = stride(a_shape), stride(b_shape)
        if sa is not None and sb is not None:
            self.lib_matmul(total, m, n, k, a_ptr, sa, b_ptr, sb, y_ptr)
        else:  # mixed broadcasting across several batch axes: one call per output matrix
            a_strides = broadcast_strides(a_shape[:-2], batch)
            b_strides = broadcast_strides(b_shape[:-2], batch)
            for i, index in enumerate(itertools.product(*(range(s) for s in batch))):
                ao = sum(p * s for p, s in zip(index, a_strides, strict=True)) * m * k
                bo = sum(p * s for p, s in zip(index, b_strides, strict=True)) * k * n
                self.lib_matmul(
                    1,
                    m,
                    n,
                    k,
                    _Offset(a_ptr, ao),
                    0,
                    _Offset(b_ptr, bo),
                    0,
                    _Offset(y_ptr, i * m * n),
                )
        if "act" in node.attrs:
            self._call(
                self.lib.pn_activation,
                self._new("pn_act *", self._act(node)),
                y_ptr,
                y_ptr,
                y_t.size,
            )

    def _binary_call(
        self,
        op: str,
        a_shape: Sequence[int],
        a_ptr: Any,
        out_shape: Sequence[int],
        b_ptr: Any,
        b_shape: Sequence[int],
        y_ptr: Any,
        act: dict[str, float | int] | None,
    ) -> None:
        dims, (sa, sb) = collapse_dims(
            out_shape, broadcast_strides(a_shape, out_shape), broadcast_strides(b_shape, out_shape)
        )
        if len(dims) > MAX_DIMS:
            raise UnsupportedAttributeError(
                f"{op} broadcasts over {len(dims)} axes that do not merge; the core takes "
                f"{MAX_DIMS}",
                where="model",
            )
        self._call(
            self.lib.pn_binary,
            _BINARY_OPS[op],
            len(dims),
            self._new("int64_t[]", dims),
            a_ptr,
            self._new("int64_t[]", sa),
            b_ptr,
            self._new("int64_t[]", sb),
            y_ptr,
            self._new("pn_act *", act) if act else self.ffi.NULL,
        )

    def _plan_binary(self, node: Node) -> None:
        a, b, y = (self._type(n) for n in (*node.inputs[:2], node.outputs[0]))
        act = self._act(node) if "act" in node.attrs else None
        try:
            self._binary_call(
                node.op,
                a.shape,
                self._ptr(node.inputs[0]),
                y.shape,
                self._ptr(node.inputs[1]),
                b.shape,
                self._ptr(node.outputs[0]),
                act,
            )
        except UnsupportedAttributeError as error:
            raise UnsupportedAttributeError(error.message, where=node.where) from None

    def _plan_activation(self, node: Node) -> None:
        kind, alpha, beta = (node.op, *_activation_params(node))
        act = self._new("pn_act *", {"kind": _ACT_KINDS[kind], "alpha": alpha, "beta": beta})
        self._call(
            self.lib.pn_activation,
            act,
            self._ptr(node.inputs[0]),
            self._ptr(node.outputs[0]),
            self._type(node.outputs[0]).size,
        )

    def _pool_desc(self, node: Node, count_include_pad: bool) -> Any:
        x, y = self._type(node.inputs[0]), self._type(node.outputs[0])
        a = node.attrs
        return self._new(
            "pn_pool2d_desc *",
            {
                "batch": x.shape[0],
                "channels": x.shape[1],
                "in_h": x.shape[2],
                "in_w": x.shape[3],
                "out_h": y.shape[2],
                "out_w": y.shape[3],
                "kernel_h": a["kernel"][0],
                "kernel_w": a["kernel"][1],
                "stride_h": a["strides"][0],
                "stride_w": a["strides"][1],
                "dilation_h": a["dilations"][0],
                "dilation_w": a["dilations"][1],
                "pad_top": a["pads"][0],
                "pad_left": a["pads"][1],
                "count_include_pad": int(count_include_pad),
            },
        )

    def _plan_maxpool(self, node: Node) -> None:
        self._call(
            self.lib.pn_maxpool2d,
            self._pool,
            self._pool_desc(node, False),
            self._ptr(node.inputs[0]),
            self._ptr(node.outputs[0]),
        )

    def _plan_averagepool(self, node: Node) -> None:
        include = node.attrs["count_include_pad"]
        y = self._type(node.outputs[0])
        desc = self._pool_desc(node, include)
        factor = _average_pool_correction(node, self._type(node.inputs[0])) if include else None
        if factor is None:
            self._call(
                self.lib.pn_avgpool2d,
                self._pool,
                desc,
                self._ptr(node.inputs[0]),
                self._ptr(node.outputs[0]),
            )
            return
        whole = self._scratch_slot(y.nbytes, "float *")
        self._call(self.lib.pn_avgpool2d, self._pool, desc, self._ptr(node.inputs[0]), whole)
        self._binary_call(
            "Mul",
            y.shape,
            whole,
            y.shape,
            self._const_ptr(factor, "float *"),
            factor.shape,
            self._ptr(node.outputs[0]),
            None,
        )

    def _plan_globalaveragepool(self, node: Node) -> None:
        x = self._type(node.inputs[0])
        self._call(
            self.lib.pn_global_avgpool,
            x.shape[0] * x.shape[1],
            math.prod(x.shape[2:]),
            self._ptr(node.inputs[0]),
            self._ptr(node.outputs[0]),
        )

    def _plan_softmax(self, node: Node) -> None:
        shape = self._type(node.inputs[0]).shape
        axis = node.attrs["axis"]
        outer = math.prod(shape[:axis])
        if node.attrs["legacy"]:
            middle, inner = math.prod(shape[axis:]), 1
        else:
            middle, inner = shape[axis], math.prod(shape[axis + 1 :])
        self._call(
            self.lib.pn_softmax,
            outer,
            middle,
            inner,
            self._ptr(node.inputs[0]),
            self._ptr(node.outputs[0]),
        )

    def _plan_concat(self, node: Node) -> None:
        y = self._type(node.outputs[0])
        axis = node.attrs["axis"]
        if math.prod(y.shape[:axis]) == 1:
            self._plan_concat_slices(node, y)
            return
        pointers = _PointerArray([self._ptr(name, "void *") for name in node.inputs])
        sizes = self._new("int64_t[]", [self._type(n).shape[axis] for n in node.inputs])
        self._call(
            self.lib.pn_concat,
            len(node.inputs),
            pointers,
            sizes,
            math.prod(y.shape[:axis]),
            math.prod(y.shape[axis + 1 :]),
            self._ptr(node.outputs[0], "void *"),
            np.dtype(y.dtype).itemsize,
        )

    def _plan_concat_slices(self, node: Node, y: TensorType) -> None:
        """Inputs already written in place cost nothing; the others are copied to their slice."""
        out_root, out_offset = self._resolve(node.outputs[0])
        offset = 0
        for name in node.inputs:
            t = self._type(name)
            if (
                self._resolve(name) != (out_root, out_offset + offset)
                or name in self._graph.constants
            ):
                self._call(
                    self.lib.pn_concat,
                    1,
                    _PointerArray([self._ptr(name, "void *")]),
                    self._new("int64_t[]", [t.size]),
                    1,
                    1,
                    _Slot("void *", out_root, out_offset + offset),
                    np.dtype(t.dtype).itemsize,
                )
            offset += t.nbytes

    def _transpose_call(
        self,
        x_ptr: Any,
        shape: Sequence[int],
        perm: Sequence[int],
        itemsize: int,
        y_ptr: Any = None,
    ) -> Any:
        # Drop size-1 axes and merge runs of axes that stay adjacent and in order.
        keep = [axis for axis in range(len(shape)) if shape[axis] != 1]
        new_index = {axis: i for i, axis in enumerate(keep)}
        in_shape = [shape[a] for a in keep]
        out_perm = [new_index[p] for p in perm if p in new_index]
        groups: list[list[int]] = []
        for p in out_perm:
            if groups and groups[-1][-1] + 1 == p:
                groups[-1].append(p)
            else:
                groups.append([p])
        order = sorted(groups, key=lambda g: g[0])
        merged_shape = [math.prod(in_shape[a] for a in g) for g in order]
        merged_perm = [order.index(g) for g in groups]
        if not merged_shape:
            merged_shape, merged_perm = [1], [0]
        if len(merged_shape) > MAX_DIMS:
            raise UnsupportedAttributeError(
                f"Transpose over {len(merged_shape)} axes that do not merge; the core takes "
                f"{MAX_DIMS}",
                where="model",
            )
        if y_ptr is None:
            y_ptr = self._scratch_slot(math.prod(shape) * itemsize, "void *")
        self._call(
            self.lib.pn_transpose,
            len(merged_shape),
            self._new("int64_t[]", merged_shape),
            self._new("int32_t[]", merged_perm),
            x_ptr,
            y_ptr,
            itemsize,
        )
        return y_ptr

    def _plan_transpose(self, node: Node) -> None:
        x = self._type(node.inputs[0])
        try:
            self._transpose_call(
                self._ptr(node.inputs[0], "void *"),
                x.shape,
                node.attrs["perm"],
                np.dtype(x.dtype).itemsize,
                self._ptr(node.outputs[0], "void *"),
            )
        except UnsupportedAttributeError as error:
            raise UnsupportedAttributeError(error.message, where=node.where) from None

    def _quant_slices(self, node: Node, value_name: str) -> list[tuple[int, int, float, int]]:
        """(element offset, count, scale, zero point) for each run sharing one scale."""
        graph = self._graph
        t = self._type(value_name)
        scale = graph.constants[node.inputs[1]].reshape(-1).astype(np.float32)
        zero = (
            graph.constants[node.inputs[2]].reshape(-1).astype(np.int32)
            if len(node.inputs) > 2 and node.inputs[2]
            else np.zeros(scale.size, np.int32)
        )
        axis = node.attrs["axis"]
        if axis is None:
            return [(0, t.size, float(scale[0]), int(zero[0]))]
        outer, channels = math.prod(t.shape[:axis]), t.shape[axis]
        inner = math.prod(t.shape[axis + 1 :])
        return [
            ((o * channels + c) * inner, inner, float(scale[c]), int(zero[c]))
            for o in range(outer)
            for c in range(channels)
        ]

    def _plan_quantizelinear(self, node: Node) -> None:
        x_ptr, y_ptr = self._ptr(node.inputs[0]), self._ptr(node.outputs[0])
        for offset, count, scale, zero in self._quant_slices(node, node.inputs[0]):
            self._call(
                self.lib.pn_quantize,
                _Offset(x_ptr, offset),
                _Offset(y_ptr, offset),
                count,
                scale,
                zero,
            )

    def _plan_dequantizelinear(self, node: Node) -> None:
        if self._type(node.inputs[0]).dtype != "int8":
            raise UnsupportedAttributeError(
                "DequantizeLinear of a computed int32 tensor has no native kernel",
                where=node.where,
            )
        x_ptr, y_ptr = self._ptr(node.inputs[0]), self._ptr(node.outputs[0])
        for offset, count, scale, zero in self._quant_slices(node, node.inputs[0]):
            self._call(
                self.lib.pn_dequantize,
                _Offset(x_ptr, offset),
                _Offset(y_ptr, offset),
                count,
                scale,
                zero,
            )

    # -- running ------------------------------------------------------------------------------

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            for name, view in self._inputs:
                np.copyto(view, feeds[name])
            for fn, args in self._calls:
                fn(*args)
            return {
                name: np.array(constant if view is None else view, dtype=np.float32)
                for name, constant, view in self._outputs
            }


def _activation_params(node: Node) -> tuple[float, float]:
    if node.op == "Clip":
        return node.attrs["min"], node.attrs["max"]
    if node.op == "LeakyRelu":
        return node.attrs["alpha"], 0.0
    return 0.0, 0.0


class _Slot:
    """A pointer into the arena (a root buffer and a byte offset in it), bound to an address
    once the arena is planned."""

    __slots__ = ("ctype", "name", "offset")

    def __init__(self, ctype: str, name: str, offset: int = 0) -> None:
        self.ctype, self.name, self.offset = ctype, name, offset


class _Offset:
    """A pointer `elements` past another (constant or arena) pointer."""

    __slots__ = ("base", "elements")

    def __init__(self, base: Any, elements: int) -> None:
        self.base, self.elements = base, elements


class _PointerArray:
    """An array of pointers (some into the arena) built when the plan is bound."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items


def _average_pool_correction(node: Node, x: TensorType) -> np.ndarray | None:
    """Per output position, window taps / taps inside the input and its declared pads, when
    ceil_mode lets some window overhang them (the C kernel divides by the whole window, ONNX by
    the taps inside); None when every window is whole."""
    top, left, bottom, right = node.attrs["pads"]
    inside = np.ones((1, 1, x.shape[2] + top + bottom, x.shape[3] + left + right), np.float32)
    unpadded = Node(node.op, (), (), {**node.attrs, "pads": (0, 0, 0, 0)}, node.where)
    counts = numpy_backend.window_view(inside, unpadded, node.attrs["out_hw"], 0.0).sum(axis=(4, 5))
    factor = (math.prod(node.attrs["kernel"]) / counts).astype(np.float32)
    return None if np.all(factor == 1.0) else factor
