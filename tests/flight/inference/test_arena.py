"""The arena planner: buffers alive at the same step never overlap, and reuse makes it small."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flight.inference.arena import ALIGNMENT, Buffer, plan_arena


@st.composite
def buffers(draw):
    count = draw(st.integers(0, 30))
    result = []
    for i in range(count):
        first = draw(st.integers(-1, 20))
        result.append(
            Buffer(f"t{i}", draw(st.integers(0, 5000)), first, first + draw(st.integers(0, 6)))
        )
    return result


def _aligned(n):
    return -(-max(n, 1) // ALIGNMENT) * ALIGNMENT


@given(buffers())
def test_buffers_alive_together_never_overlap(items):
    plan = plan_arena(items)
    for a in items:
        start = plan.offsets[a.name]
        assert start % ALIGNMENT == 0
        assert start + a.size_bytes <= plan.size_bytes
        for b in items:
            if a is b or a.last < b.first or b.last < a.first:
                continue
            other = plan.offsets[b.name]
            assert (
                start + _aligned(a.size_bytes) <= other or other + _aligned(b.size_bytes) <= start
            )


@given(buffers())
def test_arena_lies_between_the_peak_live_set_and_one_buffer_each(items):
    plan = plan_arena(items)
    steps = {step for b in items for step in range(b.first, b.last + 1)}
    peak = max(
        (sum(_aligned(b.size_bytes) for b in items if b.first <= s <= b.last) for s in steps),
        default=0,
    )
    assert peak <= plan.size_bytes <= plan.total_bytes
    assert plan.total_bytes == sum(_aligned(b.size_bytes) for b in items)


def test_a_chain_of_layers_needs_only_two_buffers():
    chain = [Buffer(f"t{i}", 1000, i, i + 1) for i in range(10)]
    assert plan_arena(chain).size_bytes == 2 * _aligned(1000)


def test_a_buffer_goes_into_the_smallest_gap_that_fits():
    # Placed largest first: the two "gap" buffers die after step 1 and leave holes of 2048 and
    # 1344 bytes between buffers that live on; "late" fits both and takes the smaller.
    items = [
        Buffer("whole_run", 4096, 0, 9),
        Buffer("gap_big", 2048, 0, 1),
        Buffer("separator", 1500, 0, 9),
        Buffer("gap_small", 1300, 0, 1),
        Buffer("top", 1100, 0, 9),
        Buffer("late", 1024, 2, 3),
    ]
    plan = plan_arena(items)
    assert plan.offsets["late"] == plan.offsets["gap_small"] != plan.offsets["gap_big"]
