"""The loader's intermediate form: an ordered graph of normalised nodes with static types."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class TensorType:
    """A tensor's fixed shape and element type (a NumPy dtype name: "float32", "int8", ...)."""

    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass(frozen=True, slots=True)
class Node:
    """One operator after checking: `attrs` hold normalised values (resolved pads, positive axes).

    `op` may differ from the ONNX operator it came from (Flatten, Squeeze and Unsqueeze become
    "Reshape"); `where` names the source node for messages. An absent optional input is "".
    """

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any] = field(default_factory=dict)
    where: str = ""


def describe_node(name: str, op_type: str, index: int) -> str:
    """How messages name a node: by its name if it has one, else by its position in the graph."""
    return f"node '{name}' ({op_type})" if name else f"node #{index} ({op_type}, unnamed)"


@dataclass(slots=True)
class Graph:
    """A model the loader accepted: nodes in execution order, every tensor's type, constant values.

    Graph passes rewrite `nodes` and `constants`; `types` keeps every name ever seen.
    """

    inputs: list[str]
    outputs: list[str]
    nodes: list[Node]
    types: dict[str, TensorType]
    constants: dict[str, np.ndarray]
    opset: int
    model_operators: dict[str, int]
    parameters: int

    def consumers(self) -> dict[str, list[int]]:
        """For each tensor, the indices of the nodes that read it."""
        result: dict[str, list[int]] = {}
        for index, node in enumerate(self.nodes):
            for name in node.inputs:
                if name:
                    result.setdefault(name, []).append(index)
        return result

    def producers(self) -> dict[str, int]:
        return {name: index for index, node in enumerate(self.nodes) for name in node.outputs}

    def operators(self) -> dict[str, int]:
        """Operator counts of the graph as it runs; "Conv+Relu" is a Conv with a fused Relu."""
        names = (
            node.op + ("+" + node.attrs["act"][0] if "act" in node.attrs else "")
            for node in self.nodes
        )
        return dict(sorted(Counter(names).items()))

    def unique_name(self, base: str) -> str:
        name, suffix = base, 0
        while name in self.types:
            suffix += 1
            name = f"{base}.{suffix}"
        return name
