"""Time for flight code: the event loop's clock, a virtual-time loop, and TAI mission time.

All flight code reads time from the running loop (`loop.time()`), so the same code runs in real
time on a board and in virtual time in the emulator and the tests, where the loop jumps straight
to the next timer whenever nothing is ready: hours of a node's life pass in seconds, and the same
program gives the same sequence of times on every run.
"""

import asyncio
import concurrent.futures
import selectors
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from flight.protocol.cuc import TAI_EPOCH_TO_UNIX_EPOCH_S, CucTime

T = TypeVar("T")

TAI_MINUS_UTC_S = 37
"""TAI - UTC in seconds, valid from 2017-01-01 (IERS Bulletin C: no leap second since).

A new leap second would change it to 38 from its date; UTC-derived times (`tai_from_unix`) are
then off by one second until this constant and its date are updated. Unix time counts no leap
seconds, so one constant serves every instant from 2017-01-01 until the next leap second.
"""


class _VirtualSelector(selectors.BaseSelector):
    """A selector that, instead of sleeping until the next timer, moves the loop's clock to it.

    Real file descriptors are still served: every wait first polls them with timeout 0. Only when
    none is ready does virtual time jump. With no timer at all (or while worker threads are busy,
    see `VirtualTimeLoop`) it blocks in the real select, so waiting on real I/O does not spin.
    """

    def __init__(self, loop: "VirtualTimeLoop") -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop
        self.jumps = 0
        self.blocking_waits = 0

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return self._real.select(0)
        events = self._real.select(0)
        if events:
            return events
        if self._loop._in_flight:
            self.blocking_waits += 1
            self._loop._deliver_oldest()
            return []
        if timeout is None:
            self.blocking_waits += 1
            return self._real.select(None)
        self.jumps += 1
        self._loop._jump(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` is virtual seconds that jump to the next timer when idle.

    Deterministic: callbacks, timers and the times they see depend only on the program, not on
    the machine's speed. Real file descriptors (pipes, sockets, ptys) still work: they are polled
    before every jump, and with no timer pending the loop blocks on them in the real select.

    Work handed to an executor (`asyncio.to_thread`, `loop.run_in_executor`) takes no virtual
    time: while any is in flight the clock holds still and, once nothing else is ready, the
    loop waits for it in real time. Results are delivered in the order the work was handed
    over, whichever thread finishes first, so two tiles finishing at one virtual instant report
    in the same order on every run and machine. Pass `hold_for_executor=False` for executor work
    that blocks indefinitely (a blocking read kept off the loop), which would otherwise stop
    virtual time until it returns.
    """

    def __init__(self, start_s: float = 0.0, *, hold_for_executor: bool = True) -> None:
        self._virtual_time_s = float(start_s)
        self._hold_for_executor = hold_for_executor
        # Executor work in the order it was handed over, with the loop future it resolves.
        self._in_flight: deque[tuple[concurrent.futures.Future[Any], asyncio.Future[Any]]] = deque()
        self._virtual_selector = _VirtualSelector(self)
        super().__init__(self._virtual_selector)

    def time(self) -> float:
        return self._virtual_time_s

    @property
    def jumps(self) -> int:
        """How many times the clock jumped to a timer instead of the loop sleeping."""
        return self._virtual_selector.jumps

    @property
    def blocking_waits(self) -> int:
        """How many times the loop blocked in the real select (no timer, or executor work)."""
        return self._virtual_selector.blocking_waits

    def advance(self, duration_s: float) -> None:
        """Let `duration_s` of virtual time pass at once, as if the caller had been busy so long.

        Models synchronous work that takes time (a slow member of a rate group) in virtual time.
        Timers that fall due meanwhile run late, as they would on a real busy loop.
        """
        if not duration_s >= 0:
            raise ValueError(f"virtual time only moves forward; cannot advance by {duration_s} s")
        self._virtual_time_s += duration_s

    def _jump(self, timeout: float) -> None:
        # Land exactly on the earliest timer's deadline rather than on now + (deadline - now),
        # which can differ from it in the last bit: timers then see the very times they asked for.
        scheduled = getattr(self, "_scheduled", None)
        if scheduled:
            self._virtual_time_s = max(self._virtual_time_s, scheduled[0].when())
        else:
            self._virtual_time_s += timeout

    def run_in_executor(
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        if not self._hold_for_executor:
            return super().run_in_executor(executor, func, *args)
        self._check_closed()
        if executor is None:
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
                self._default_executor = executor
        future: asyncio.Future[T] = self.create_future()
        self._in_flight.append((executor.submit(func, *args), future))
        return future

    def _deliver_oldest(self) -> None:
        """Wait (real time) for the oldest executor work and resolve its future."""
        work, future = self._in_flight.popleft()
        concurrent.futures.wait([work])
        if future.cancelled():
            return
        error = work.exception()
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(work.result())


def run(
    main: Coroutine[Any, Any, T],
    *,
    virtual: bool,
    start_s: float = 0.0,
    debug: bool | None = None,
) -> T:
    """Run `main` to completion like `asyncio.run`, on a virtual-time loop if `virtual`.

    `start_s` is the virtual loop's initial `time()`; a real loop's clock is the monotonic clock,
    which cannot be set, so `start_s` is ignored for it.
    """
    factory = (lambda: VirtualTimeLoop(start_s)) if virtual else None
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)


@dataclass(frozen=True, slots=True)
class MissionClock:
    """Mission time (TAI seconds since 1958-01-01) derived from the running loop's clock.

    `epoch_tai_s` is the mission time at the instant the loop's clock read `loop_time_at_epoch`.
    Mission time then advances exactly with the loop: it never steps backwards when NTP or an
    operator sets the system clock, and in virtual time it is as deterministic as the loop.
    """

    epoch_tai_s: float
    loop_time_at_epoch: float

    def tai_at(self, loop_time: float) -> float:
        """Mission time (TAI s since 1958) at loop time `loop_time`."""
        return self.epoch_tai_s + (loop_time - self.loop_time_at_epoch)

    def now_tai_s(self) -> float:
        """Mission time now, from the running loop's clock."""
        return self.tai_at(asyncio.get_running_loop().time())

    def cuc(self) -> CucTime:
        """Mission time now as the ICD's CUC time stamp (4 + 2 octets, TAI 1958 epoch)."""
        return CucTime.from_seconds(self.now_tai_s())

    @staticmethod
    def tai_from_unix(unix_s: float) -> float:
        """TAI s since 1958-01-01 at Unix time `unix_s` (valid from 2017: see TAI_MINUS_UTC_S)."""
        return unix_s + TAI_EPOCH_TO_UNIX_EPOCH_S + TAI_MINUS_UTC_S

    @classmethod
    def anchored_now(cls, loop: asyncio.AbstractEventLoop) -> "MissionClock":
        """A mission clock anchored to the system's UTC clock now; for entry points on a board.

        This reads `time.time()` once, the only place flight code may: the loop's clock is
        monotonic and has no epoch, so the one link between it and calendar time is made here,
        at start-up. Everything after derives from the loop, so mission time is monotonic even if
        the system clock is stepped later. The emulator does not call this: it builds a
        MissionClock from the scenario's epoch so that virtual runs stay deterministic.
        """
        return cls(cls.tai_from_unix(time.time()), loop.time())
