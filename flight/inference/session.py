"""`load` a model into a `Session` and `run` it: input checks, backend choice, what it reports."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import numpy as np

from .arena import aligned_size
from .errors import InputError, SessionClosedError
from .graph import Graph
from .loader import ModelSource, load_graph
from .numpy_backend import NumpyProgram
from .ops import macs
from .passes import prepare

DEFAULT_MAX_ARENA_BYTES = 2**31
"""Largest activation arena `load` plans unless told otherwise (2 GiB)."""

MAX_THREADS = 256


class Backend(enum.StrEnum):
    NATIVE = "native"
    NUMPY = "numpy"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output: its name, fixed shape and element type."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __str__(self) -> str:
        return f"'{self.name}' {self.dtype}{list(self.shape)}"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a loaded model is and costs.

    `operators` counts the operators as they run, after the load passes (BatchNormalization
    folded, activations fused into "act", QDQ patterns as QConv/QGemm, Flatten/Squeeze/Unsqueeze
    as Reshape views); `model_operators` counts them as the file has them. `parameters` is the
    element count of the model's float and 8/32-bit integer initialisers (not int64 shapes).
    `macs` counts the multiply-accumulates of convolutions and matrix products per run.
    `arena_bytes` is the one activation arena the native backend allocates (0 for NumPy, which
    allocates per node); `tensor_bytes` is the sum of all activation tensors (views included) and
    scratch, each 64-byte aligned: what a buffer per tensor would need instead;
    `weight_bytes` the packed weights.
    """

    backend: str
    simd: str
    num_threads: int
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    operators: dict[str, int]
    model_operators: dict[str, int]
    parameters: int
    macs: int
    arena_bytes: int
    tensor_bytes: int
    weight_bytes: int


class _Program(Protocol):
    backend: str
    simd: str

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class Session:
    """A loaded model with fixed input shapes. `run` is thread-safe: the native backend serialises
    runs on its one arena (its kernels use all the session's threads), NumPy runs hold no state."""

    def __init__(self, program: _Program, info: SessionInfo) -> None:
        self._program: _Program | None = program
        self._info = info
        self._inputs = {spec.name: spec for spec in info.inputs}

    @property
    def info(self) -> SessionInfo:
        return self._info

    def _check(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = ", ".join(str(spec) for spec in self._info.inputs)
        if not isinstance(inputs, Mapping):
            raise InputError(
                f"run() takes a mapping of input name to numpy array, not "
                f"{type(inputs).__name__}; the model's inputs are {expected}"
            )
        for name in inputs:
            if name not in self._inputs:
                raise InputError(f"unknown input '{name}'; the model's inputs are {expected}")
        feeds = {}
        for name, spec in self._inputs.items():
            if name not in inputs:
                raise InputError(f"missing input '{name}'; the model's inputs are {expected}")
            value = inputs[name]
            if isinstance(value, np.generic):  # a NumPy scalar is a 0-d array
                value = np.asarray(value)
            if not isinstance(value, np.ndarray):
                raise InputError(
                    f"input '{name}' is a {type(value).__name__}; expected a numpy array, "
                    f"{spec.dtype} of shape {list(spec.shape)}"
                )
            if value.dtype != np.dtype(spec.dtype):
                raise InputError(
                    f"input '{name}' has dtype {value.dtype}; expected {spec.dtype} "
                    f"(convert it with .astype(np.{spec.dtype}))"
                )
            if value.shape != spec.shape:
                raise InputError(
                    f"input '{name}' has shape {list(value.shape)}; expected {list(spec.shape)} "
                    "(the model's input shapes are fixed)"
                )
            feeds[name] = value
        return feeds

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs by name (new arrays) for `inputs` (name -> array)."""
        program = self._program
        if program is None:
            raise SessionClosedError("the session is closed; load the model again")
        return program.run(self._check(inputs))

    async def run_async(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`run` on a worker thread, so the event loop keeps turning while the model computes."""
        return await asyncio.to_thread(self.run, inputs)

    def close(self) -> None:
        """Release the arena, packed weights and threads (the native backend's); idempotent."""
        self._program = None

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _specs(graph: Graph, names: list[str]) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(n, graph.types[n].shape, graph.types[n].dtype) for n in names)


def load(
    source: ModelSource,
    *,
    backend: str = "native",
    num_threads: int = 1,
    max_arena_bytes: int = DEFAULT_MAX_ARENA_BYTES,
) -> Session:
    """Load an ONNX model (a path, bytes or an onnx.ModelProto) for `backend` "native" (the C
    core; BackendUnavailableError if it is not built, never a silent fallback) or "numpy" (the
    reference). `num_threads` is the native core's thread pool (the NumPy backend ignores it).
    A model the core cannot run raises a ModelError naming the node and the reason."""
    try:
        chosen = Backend(backend)
    except ValueError:
        raise ValueError(f"backend must be 'native' or 'numpy', not {backend!r}") from None
    if not isinstance(num_threads, int) or not 1 <= num_threads <= MAX_THREADS:
        raise ValueError(f"num_threads must be an integer in 1..{MAX_THREADS}, not {num_threads!r}")
    if chosen is Backend.NATIVE:
        from .native_backend import native_module

        native_module()  # before any work: a missing build is reported first
    graph = prepare(load_graph(source), backend=chosen.value)
    inputs, outputs = _specs(graph, graph.inputs), _specs(graph, graph.outputs)
    operators = graph.operators()
    total_macs = sum(macs(node, graph.types) for node in graph.nodes)
    if chosen is Backend.NATIVE:
        from .native_backend import NativeProgram

        program: _Program = NativeProgram(
            graph, num_threads=num_threads, max_arena_bytes=max_arena_bytes
        )
        arena, tensors, weights = program.arena_bytes, program.tensor_bytes, program.weight_bytes
    else:
        program = NumpyProgram(graph)
        arena = 0
        activations = {*graph.inputs, *(o for n in graph.nodes for o in n.outputs if o)}
        tensors = sum(aligned_size(graph.types[name].nbytes) for name in activations)
        weights = sum(value.nbytes for value in graph.constants.values())
    info = SessionInfo(
        backend=chosen.value,
        simd=program.simd,
        num_threads=num_threads if chosen is Backend.NATIVE else 1,
        opset=graph.opset,
        inputs=inputs,
        outputs=outputs,
        operators=operators,
        model_operators=graph.model_operators,
        parameters=graph.parameters,
        macs=total_macs,
        arena_bytes=arena,
        tensor_bytes=tensors,
        weight_bytes=weights,
    )
    return Session(program, info)
