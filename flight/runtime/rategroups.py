"""Rate groups: members called in order at fixed rates, all driven by one tick from the loop clock.

One tick (10 Hz by default) drives every group; a group with divider d runs on ticks 0, d, 2d, ...
Tick k is due at t0 + k / tick_hz, computed afresh each time, so the schedule never drifts. Each
group runs in its own task, so a slow 0.1 Hz group does not delay the 10 Hz one. A cycle that is
due while the group's previous cycle is still running is a slip: it is counted, reported and
skipped, never queued, so an overrun cannot snowball into a burst of late cycles.
"""

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

Member = Callable[[], Awaitable[None] | None]
"""A rate-group member: called once per cycle; may return an awaitable, which is awaited."""

DEFAULT_DIVIDERS: Mapping[str, int] = MappingProxyType({"10Hz": 1, "1Hz": 10, "0.1Hz": 100})

DEFAULT_JITTER_SAMPLES = 1024

_logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RateGroupStats:
    """A group's counters: cycles completed, cycles skipped as slips, and execution times."""

    cycles: int
    slips: int
    max_execution_s: float
    last_execution_s: float


@dataclass(frozen=True, slots=True)
class RateGroupJitter:
    """How late a group's recent cycles started, from a bounded ring of samples."""

    samples: int
    p50_s: float
    p99_s: float
    max_s: float


class _Group:
    """One rate group's members, schedule state and statistics (mutable, driver-private)."""

    __slots__ = (
        "cycles",
        "divider",
        "last_end_s",
        "last_execution_s",
        "lateness_count",
        "lateness_index",
        "lateness_s",
        "max_execution_s",
        "members",
        "name",
        "running",
        "scheduled_s",
        "slips",
        "started_s",
        "wake",
    )

    def __init__(self, name: str, divider: int, jitter_samples: int) -> None:
        self.name = name
        self.divider = divider
        self.members: list[tuple[str, Member]] = []
        self.cycles = 0
        self.slips = 0
        self.max_execution_s = 0.0
        self.last_execution_s = 0.0
        self.running = False
        self.scheduled_s = 0.0
        self.started_s = 0.0
        self.last_end_s = -math.inf
        self.wake = asyncio.Event()
        # Preallocated so that recording a sample every cycle allocates nothing.
        self.lateness_s = [0.0] * jitter_samples
        self.lateness_index = 0
        self.lateness_count = 0

    def record_lateness(self, lateness_s: float) -> None:
        self.lateness_s[self.lateness_index] = lateness_s
        self.lateness_index = (self.lateness_index + 1) % len(self.lateness_s)
        self.lateness_count = min(self.lateness_count + 1, len(self.lateness_s))


def _percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class RateGroupDriver:
    """Drives rate groups from one tick on the running loop's clock.

    `on_slip(group, execution_s)` is called for every skipped cycle, with how long the group's
    cycle had been running (or, if it has since finished, how long its last cycle took).
    `on_member_error(group, member, exc)` is called when a member raises; the group goes on with
    its next member. Without a callback, member errors are logged.
    """

    def __init__(
        self,
        tick_hz: float = 10.0,
        dividers: Mapping[str, int] = DEFAULT_DIVIDERS,
        *,
        jitter_samples: int = DEFAULT_JITTER_SAMPLES,
    ) -> None:
        if not (isinstance(tick_hz, int | float) and math.isfinite(tick_hz) and tick_hz > 0):
            raise ValueError(
                f"tick_hz must be a positive number of ticks per second, not {tick_hz}"
            )
        if not dividers:
            raise ValueError("a rate group driver needs at least one group in dividers")
        for name, divider in dividers.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"rate group name {name!r} must be a non-empty string")
            if not isinstance(divider, int) or isinstance(divider, bool) or divider < 1:
                raise ValueError(
                    f"rate group {name!r}: divider must be a whole number of ticks >= 1, "
                    f"not {divider!r}"
                )
        if jitter_samples < 1:
            raise ValueError(f"jitter_samples must be at least 1, not {jitter_samples}")
        self.tick_hz = float(tick_hz)
        self._groups = {
            name: _Group(name, divider, jitter_samples) for name, divider in dividers.items()
        }
        # Faster groups are woken first within a tick (rate-monotonic order).
        self._ordered = sorted(self._groups.values(), key=lambda group: group.divider)
        self._t0 = 0.0
        self._ticks = 0
        self._running = False
        self.on_slip: Callable[[str, float], None] | None = None
        self.on_member_error: Callable[[str, str, Exception], None] | None = None

    def groups(self) -> tuple[str, ...]:
        """The groups' names, in the order given."""
        return tuple(self._groups)

    def period_s(self, group: str) -> float:
        """The time between two cycles of `group`."""
        return self._group(group).divider / self.tick_hz

    @property
    def ticks(self) -> int:
        """Ticks processed since `run()` started (ticks skipped by a stalled loop included)."""
        return self._ticks

    def _group(self, group: str) -> _Group:
        try:
            return self._groups[group]
        except KeyError:
            raise KeyError(
                f"no rate group {group!r}; the groups are {', '.join(self._groups)}"
            ) from None

    def add(self, group: str, name: str, member: Member) -> None:
        """Append `member` to `group`: each cycle calls the members in the order they were added."""
        self._group(group).members.append((name, member))

    def members(self, group: str) -> tuple[str, ...]:
        """The names of `group`'s members, in calling order."""
        return tuple(name for name, _ in self._group(group).members)

    def stats(self, group: str) -> RateGroupStats:
        g = self._group(group)
        return RateGroupStats(g.cycles, g.slips, g.max_execution_s, g.last_execution_s)

    def jitter(self, group: str) -> RateGroupJitter:
        """Start lateness (actual start - scheduled time) over the group's recent cycles."""
        g = self._group(group)
        if g.lateness_count == 0:
            return RateGroupJitter(0, 0.0, 0.0, 0.0)
        ordered = sorted(g.lateness_s[: g.lateness_count])
        return RateGroupJitter(
            len(ordered), _percentile(ordered, 0.50), _percentile(ordered, 0.99), ordered[-1]
        )

    async def run(self) -> None:
        """Tick until cancelled; the groups' tasks live in a TaskGroup owned by this call."""
        if self._running:
            raise RuntimeError("this RateGroupDriver is already running")
        self._running = True
        try:
            loop = asyncio.get_running_loop()
            async with asyncio.TaskGroup() as tasks:
                for group in self._ordered:
                    # Fresh per run: an Event binds to the loop that first waits on it.
                    group.wake = asyncio.Event()
                    group.running = False
                    group.last_end_s = -math.inf  # a previous run's times are on another schedule
                    tasks.create_task(self._run_group(loop, group), name=f"rate group {group.name}")
                await self._drive(loop)
        finally:
            self._running = False

    async def _drive(self, loop: asyncio.AbstractEventLoop) -> None:
        hz = self.tick_hz
        t0 = self._t0 = loop.time()
        self._ticks = 0
        k = 0
        while True:
            due_s = t0 + k / hz
            if loop.time() < due_s:
                # call_at with the absolute deadline: a sleep(delay) would add rounding each tick.
                wake = loop.create_future()
                handle = loop.call_at(due_s, _resolve, wake)
                try:
                    await wake
                finally:
                    handle.cancel()
            now = loop.time()
            k_last = k
            if now >= t0 + (k + 1) / hz:
                # The loop was held up past later ticks: take the latest one due, never a burst.
                k_last = max(k, int((now - t0) * hz))
                while t0 + (k_last + 1) / hz <= now:
                    k_last += 1
                while k_last > k and t0 + k_last / hz > now:
                    k_last -= 1
            for group in self._ordered:
                self._dispatch(loop, group, k, k_last)
            k = k_last + 1
            self._ticks = k

    def _dispatch(self, loop: asyncio.AbstractEventLoop, g: _Group, k: int, k_last: int) -> None:
        """Start `g`'s cycle if one is due in ticks k..k_last; count the ones that cannot run."""
        d = g.divider
        first = -(-k // d) * d
        if first > k_last:
            return
        last = k_last // d * d
        hz, t0 = self.tick_hz, self._t0
        if g.running:
            for _ in range(first, last + 1, d):
                self._slip(g, loop.time() - g.started_s)
            return
        tick = first
        # Cycles due before the previous cycle ended found it running: it finished since,
        # having held the loop (a synchronous overrun), but those cycles were still missed.
        while tick <= last and t0 + tick / hz < g.last_end_s:
            self._slip(g, g.last_execution_s)
            tick += d
        if tick > last:
            return
        # Cycles the group was idle for but the loop was too late to start: only the latest runs.
        while tick < last:
            self._slip(g, g.last_execution_s)
            tick += d
        g.running = True
        g.scheduled_s = g.started_s = t0 + last / hz
        g.wake.set()

    def _slip(self, g: _Group, execution_s: float) -> None:
        g.slips += 1
        if self.on_slip is not None:
            self.on_slip(g.name, execution_s)

    async def _run_group(self, loop: asyncio.AbstractEventLoop, g: _Group) -> None:
        wake = g.wake
        while True:
            await wake.wait()
            wake.clear()
            start_s = g.started_s = loop.time()
            g.record_lateness(start_s - g.scheduled_s)
            for name, member in g.members:
                try:
                    result = member()
                    if result is not None:
                        await result
                except Exception as exc:
                    self._member_error(g.name, name, exc)
            end_s = loop.time()
            execution_s = end_s - start_s
            g.last_execution_s = execution_s
            if execution_s > g.max_execution_s:
                g.max_execution_s = execution_s
            g.cycles += 1
            g.last_end_s = end_s
            g.running = False

    def _member_error(self, group: str, name: str, exc: Exception) -> None:
        if self.on_member_error is not None:
            self.on_member_error(group, name, exc)
        else:
            _logger.error("rate group %s: member %s raised %r", group, name, exc, exc_info=exc)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
