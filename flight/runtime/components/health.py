"""Health: ping-based liveness of every component, resource telemetry, and the systemd watchdog.

Each ping period health puts a ping on every component's queue; the component's own task
answers it when it gets there, so a task stuck in a handler (or its queue full) misses pings.
Three missed in a row raise a warning event; five are fatal: the node goes to SAFE and the
component's tasks are restarted (cancelled, started again), counted. The systemd watchdog is
stroked only while every component answers.
"""

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flight.runtime.component import (
    Arg,
    Component,
    Event,
    Mode,
    Parameter,
    Ping,
    Severity,
    Telemetry,
    command,
    rate_group,
)
from flight.runtime.components.mode import ModeManager
from flight.runtime.resources import ResourceSampler
from flight.runtime.types import Limits
from flight.runtime.watchdog import SystemdNotifier

WARNING_MISSED_PINGS = 3
FATAL_MISSED_PINGS = 5
_WRAP = 0xFFFF_FFFF


@dataclass(slots=True)
class _Liveness:
    sent: int = -1  # the last ping's sequence, -1 before the first
    missed: int = 0  # consecutive periods without an answer


class Health(Component):
    """Ping-based liveness of every component; resource telemetry; the systemd watchdog."""

    CPU_PERCENT = Telemetry(
        "f32",
        units="%",
        limits=Limits(yellow_high=80, red_high=95),
        doc="CPU time of the node's process over the last second, percent of one core.",
    )
    RSS_BYTES = Telemetry("u64", units="B", doc="Resident memory of the node's process.")
    DISK_FREE_BYTES = Telemetry(
        "u64", units="B", doc="Free space on the file system of the state directory."
    )
    CPU_TEMPERATURE_C = Telemetry(
        "f32",
        units="degC",
        limits=Limits(yellow_high=70, red_high=85),
        doc="CPU temperature from /sys/class/thermal; NaN where the board has no sensor.",
    )
    COMPONENTS_LATE = Telemetry("u8", doc="Components that missed the last ping.")
    PINGS_MISSED = Telemetry("u32", doc="Pings not answered in time, all components.")
    RESTARTS = Telemetry("u32", doc="Component restarts after fatal missed pings.")
    TASK_FAILURES = Telemetry("u32", doc="Component run() tasks that raised and were restarted.")
    WATCHDOG_STROKES = Telemetry("u32", doc="WATCHDOG=1 notifications sent to systemd.")
    ALL_HEALTHY = Telemetry("bool", doc="Every component answers its pings.")

    PING_LATE = Event(
        Severity.LOW,
        "{component} missed {missed} pings",
        component=Arg("string", max_length=32),
        missed=Arg("u8"),
    )
    COMPONENT_RESTARTED = Event(
        Severity.HIGH,
        "{component} missed {missed} pings: its task was restarted (restart {restarts})",
        component=Arg("string", max_length=32),
        missed=Arg("u8"),
        restarts=Arg("u32"),
    )
    TASK_FAILED = Event(
        Severity.HIGH,
        "{component} task raised {error}; restarting it in {delay_s} s",
        component=Arg("string", max_length=32),
        error=Arg("string", max_length=96),
        delay_s=Arg("f32"),
    )

    PING_PERIOD_MS = Parameter(
        "u32",
        default=1000,
        minimum=100,
        maximum=3_600_000,
        doc="Each component is pinged this often.",
    )

    def __init__(
        self,
        *,
        sampler: ResourceSampler | None = None,
        notifier: SystemdNotifier | None = None,
        name: str = "health",
    ) -> None:
        super().__init__(name)
        self.sampler = sampler
        self.notifier = notifier
        self.mode_manager: ModeManager | None = None
        self._components: Callable[[], Sequence[Component]] = list
        self._restart: Callable[[Component], None] = lambda component: None
        self._liveness: dict[str, _Liveness] = {}
        self._sequence = 0
        self._period_changed = asyncio.Event()
        self._stroke_due_s = -math.inf
        self._counts = dict.fromkeys(("missed", "restarts", "task_failures", "strokes"), 0)

    def bind(
        self,
        components: Callable[[], Sequence[Component]],
        restart: Callable[[Component], None],
        mode_manager: ModeManager | None,
    ) -> None:
        """What health watches, how it restarts one, and whom it tells of a fatal state."""
        self._components = components
        self._restart = restart
        self.mode_manager = mode_manager

    @property
    def all_healthy(self) -> bool:
        return all(state.missed < WARNING_MISSED_PINGS for state in self._liveness.values())

    def missed(self, component: Component) -> int:
        """Consecutive ping periods the component has not answered."""
        state = self._liveness.get(component.name)
        return 0 if state is None else state.missed

    # -- pings -------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            self.check_pings()
            period_s = int(self.parameters.PING_PERIOD_MS) / 1000
            self._period_changed.clear()
            try:
                async with asyncio.timeout(period_s):
                    await self._period_changed.wait()
            except TimeoutError:
                pass

    def check_pings(self) -> None:
        """Judge the answers to the last pings, act on them, and send the next ones."""
        late = 0
        for component in self._components():
            state = self._liveness.setdefault(component.name, _Liveness())
            if state.sent >= 0 and component.last_pong < state.sent:
                state.missed += 1
                self._counts["missed"] += 1
                late += 1
                if state.missed == WARNING_MISSED_PINGS:
                    self.emit(self.PING_LATE, component=component.name, missed=state.missed)
                elif state.missed >= FATAL_MISSED_PINGS:
                    self._fatal(component, state)
            else:
                state.missed = 0
            self._sequence += 1
            state.sent = self._sequence
            component.submit(Ping(self._sequence))  # a full queue is a missed ping as well
        self.telemetry.COMPONENTS_LATE = min(late, 255)
        self.telemetry.PINGS_MISSED = self._counts["missed"] & _WRAP
        self.telemetry.ALL_HEALTHY = self.all_healthy

    def _fatal(self, component: Component, state: _Liveness) -> None:
        missed = state.missed
        self._counts["restarts"] += 1
        self.telemetry.RESTARTS = self._counts["restarts"] & _WRAP
        if self.mode_manager is not None:
            self.mode_manager.enter(Mode.SAFE, f"{component.name} not answering pings")
        self._restart(component)
        state.missed = 0
        self.emit(
            self.COMPONENT_RESTARTED,
            component=component.name,
            missed=min(missed, 255),
            restarts=component.restarts & _WRAP,
        )

    def task_failed(self, component: Component, error: BaseException, delay_s: float) -> None:
        """A component's run() raised (the executive restarts it after `delay_s`)."""
        self._counts["task_failures"] += 1
        self.telemetry.TASK_FAILURES = self._counts["task_failures"] & _WRAP
        self.emit(
            self.TASK_FAILED,
            component=component.name,
            error=f"{type(error).__name__}: {error}",
            delay_s=delay_s,
        )

    def parameter_changed(self, parameter: Parameter, value: object) -> None:
        if parameter is self.PING_PERIOD_MS:
            self._period_changed.set()

    @command(period_ms=Arg("u32", minimum=100, maximum=3_600_000, doc="Milliseconds."))
    async def SET_PING_PERIOD(self, period_ms: int) -> None:
        """Ping every component this often (the PING_PERIOD_MS parameter; SAVE keeps it)."""
        self.set_parameter(self.PING_PERIOD_MS, period_ms)

    # -- resources at 1 Hz, the watchdog when due ------------------------------------------------

    @rate_group("1Hz")
    def sample_resources(self) -> None:
        if self.sampler is not None:
            sample = self.sampler.sample()
            t = self.telemetry
            t.CPU_PERCENT = min(sample.cpu_percent, 3.4e38)
            t.RSS_BYTES = sample.rss_bytes
            t.DISK_FREE_BYTES = sample.disk_free_bytes
            temperature = sample.cpu_temperature_c
            t.CPU_TEMPERATURE_C = math.nan if temperature is None else temperature

    @rate_group("10Hz")
    def stroke_watchdog(self) -> None:
        """WATCHDOG=1 every half WATCHDOG_USEC (sd_watchdog_enabled(3)), only while all healthy:
        a stuck component that health cannot recover lets systemd restart the node."""
        notifier = self.notifier
        if notifier is None:
            return
        interval_s = notifier.watchdog_interval_s()
        now = asyncio.get_running_loop().time()
        # A tick may come a little early on either clock: 5 % of the interval is still on time.
        early_s = 0.05 * (interval_s or 0.0)
        if interval_s is None or now < self._stroke_due_s - early_s or not self.all_healthy:
            return
        self._stroke_due_s = now + interval_s
        if notifier.watchdog():
            self._counts["strokes"] += 1
            self.telemetry.WATCHDOG_STROKES = self._counts["strokes"] & _WRAP

    def reset_counters(self) -> None:
        for name in self._counts:
            self._counts[name] = 0
        t = self.telemetry
        t.PINGS_MISSED = t.RESTARTS = t.TASK_FAILURES = t.WATCHDOG_STROKES = 0
