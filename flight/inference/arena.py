"""Activation arena planning: offsets for buffers by liveness, so tensors that never live at the
same time share memory (greedy best fit, largest first, as TFLite Micro's planner)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ALIGNMENT = 64
"""Every buffer starts on a 64-byte boundary: a cache line, and the widest SIMD load."""


@dataclass(frozen=True, slots=True)
class Buffer:
    """A region needed from step `first` to step `last` inclusive."""

    name: str
    size_bytes: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class ArenaPlan:
    offsets: dict[str, int]
    size_bytes: int  # the arena
    total_bytes: int  # what one buffer per tensor would need (aligned), for comparison


def aligned_size(n: int) -> int:
    """`n` bytes rounded up to whole 64-byte lines (at least one)."""
    return -(-max(n, 1) // ALIGNMENT) * ALIGNMENT


def plan_arena(buffers: Sequence[Buffer]) -> ArenaPlan:
    """Place every buffer so that no two alive at the same step overlap.

    Largest first; each goes into the smallest gap between the buffers already placed that
    overlap it in time and that is big enough, else above them all.
    """
    order = sorted(buffers, key=lambda b: (-b.size_bytes, b.first, b.name))
    placed: list[tuple[int, int, Buffer]] = []  # (offset, aligned size, buffer)
    offsets: dict[str, int] = {}
    for buffer in order:
        size = aligned_size(buffer.size_bytes)
        busy = sorted(
            (offset, offset + length)
            for offset, length, other in placed
            if other.first <= buffer.last and buffer.first <= other.last
        )
        best: tuple[int, int] | None = None  # (gap size, offset)
        cursor = 0
        for start, end in busy:
            gap = start - cursor
            if gap >= size and (best is None or gap < best[0]):
                best = (gap, cursor)
            cursor = max(cursor, end)
        offset = best[1] if best is not None else cursor
        offsets[buffer.name] = offset
        placed.append((offset, size, buffer))
    size_bytes = max((offset + length for offset, length, _ in placed), default=0)
    total = sum(aligned_size(b.size_bytes) for b in buffers)
    return ArenaPlan(offsets, size_bytes, total)
