"""The software bus and the rate groups as telemetry and events: drops, slips and member errors."""

import asyncio
from collections.abc import Mapping

from flight.runtime.bus import SoftwareBus, Subscription
from flight.runtime.component import Arg, Component, Event, Severity, Telemetry, rate_group
from flight.runtime.rategroups import RateGroupDriver

REPORT_INTERVAL_S = 1.0
"""Drops and member errors are events at most this often per subscription or member: each event
carries the total so far, so nothing is hidden, and a storm of drops does not become a storm of
events that fills the TM store in turn."""

_WRAP = 0xFFFF_FFFF


def _now() -> float:
    return asyncio.get_running_loop().time()


class BusMonitor(Component):
    """The software bus: subscriptions, deliveries and drops as telemetry; every drop announced."""

    SUBSCRIPTIONS = Telemetry("u16", doc="Subscriptions on the bus.")
    DELIVERED = Telemetry("u32", doc="Messages taken by subscribers, all subscriptions.")
    DROPPED = Telemetry("u32", doc="Messages dropped by full queues, all subscriptions.")
    PENDING = Telemetry("u32", doc="Messages queued and not yet taken, all subscriptions.")
    HIGH_WATER = Telemetry("u16", doc="Deepest any subscription's queue has been.")

    MESSAGE_DROPPED = Event(
        Severity.LOW,
        "{subscriber} on {topic}: queue of {depth} full, {dropped} dropped so far",
        subscriber=Arg("string", max_length=32),
        topic=Arg("string", max_length=32),
        depth=Arg("u16"),
        dropped=Arg("u32"),
    )

    def __init__(self, bus: SoftwareBus, name: str = "bus") -> None:
        super().__init__(name)
        self.bus = bus
        self._reported: dict[int, tuple[float, int]] = {}  # id(subscription) -> (time, dropped)
        bus.on_drop = self.dropped

    def dropped(self, subscription: Subscription, message: object) -> None:
        """The bus's on_drop: an event, at most one per subscription per REPORT_INTERVAL_S."""
        try:
            now = _now()
        except RuntimeError:
            now = 0.0
        last = self._reported.get(id(subscription))
        if last is not None and now - last[0] < REPORT_INTERVAL_S:
            return
        self._reported[id(subscription)] = (now, subscription.dropped)
        self.emit(
            self.MESSAGE_DROPPED,
            subscriber=subscription.name,
            topic=subscription.topic,
            depth=min(subscription.depth, 0xFFFF),
            dropped=subscription.dropped & _WRAP,
        )

    @rate_group("1Hz")
    def update_telemetry(self) -> None:
        subscriptions = self.bus.subscriptions()
        t = self.telemetry
        t.SUBSCRIPTIONS = min(len(subscriptions), 0xFFFF)
        t.DELIVERED = sum(s.delivered for s in subscriptions) & _WRAP
        t.DROPPED = (sum(s.dropped for s in subscriptions)) & _WRAP
        t.PENDING = sum(s.pending for s in subscriptions) & _WRAP
        t.HIGH_WATER = min(max((s.high_water for s in subscriptions), default=0), 0xFFFF)
        # Drops the bus could not report while reporting one are reported now, as totals.
        for subscription in subscriptions:
            last = self._reported.get(id(subscription))
            if last is not None and subscription.dropped > last[1]:
                self.dropped(subscription, None)


class RateGroupMonitor(Component):
    """The rate groups: cycles, slips and execution times as telemetry; slips as HIGH events."""

    CYCLES_10HZ = Telemetry("u32", doc="Cycles of the 10 Hz group.")
    SLIPS_10HZ = Telemetry("u32", doc="10 Hz cycles skipped: the previous one still ran.")
    MAX_EXECUTION_10HZ_MS = Telemetry("f32", units="ms", doc="Longest 10 Hz cycle.")
    CYCLES_1HZ = Telemetry("u32", doc="Cycles of the 1 Hz group.")
    SLIPS_1HZ = Telemetry("u32", doc="1 Hz cycles skipped.")
    MAX_EXECUTION_1HZ_MS = Telemetry("f32", units="ms", doc="Longest 1 Hz cycle.")
    CYCLES_0_1HZ = Telemetry("u32", doc="Cycles of the 0.1 Hz group.")
    SLIPS_0_1HZ = Telemetry("u32", doc="0.1 Hz cycles skipped.")
    MAX_EXECUTION_0_1HZ_MS = Telemetry("f32", units="ms", doc="Longest 0.1 Hz cycle.")
    LATENESS_P99_10HZ_MS = Telemetry(
        "f32", units="ms", doc="99th percentile of how late 10 Hz cycles started."
    )

    SLIP = Event(
        Severity.HIGH,
        "rate group {group} slipped: a cycle took {execution_ms} ms, longest {max_execution_ms} ms",
        group=Arg("string", max_length=16),
        execution_ms=Arg("f32"),
        max_execution_ms=Arg("f32"),
    )
    MEMBER_FAILED = Event(
        Severity.HIGH,
        "rate group {group}: {member} raised {error} ({failures} times so far)",
        group=Arg("string", max_length=16),
        member=Arg("string", max_length=48),
        error=Arg("string", max_length=96),
        failures=Arg("u32"),
    )

    GROUP_CHANNELS: Mapping[str, tuple[str, str, str]] = {
        "10Hz": ("CYCLES_10HZ", "SLIPS_10HZ", "MAX_EXECUTION_10HZ_MS"),
        "1Hz": ("CYCLES_1HZ", "SLIPS_1HZ", "MAX_EXECUTION_1HZ_MS"),
        "0.1Hz": ("CYCLES_0_1HZ", "SLIPS_0_1HZ", "MAX_EXECUTION_0_1HZ_MS"),
    }

    def __init__(self, driver: RateGroupDriver, name: str = "rate_groups") -> None:
        super().__init__(name)
        self.driver = driver
        self._member_failures: dict[str, tuple[float, int]] = {}
        driver.on_slip = self.slipped
        driver.on_member_error = self.member_failed

    def slipped(self, group: str, execution_s: float) -> None:
        stats = self.driver.stats(group)
        self.emit(
            self.SLIP,
            group=group,
            execution_ms=execution_s * 1000,
            max_execution_ms=stats.max_execution_s * 1000,
        )

    def member_failed(self, group: str, member: str, error: Exception) -> None:
        now = _now()
        last_time, failures = self._member_failures.get(member, (-REPORT_INTERVAL_S, 0))
        failures += 1
        if now - last_time < REPORT_INTERVAL_S:
            self._member_failures[member] = (last_time, failures)
            return
        self._member_failures[member] = (now, failures)
        self.emit(
            self.MEMBER_FAILED,
            group=group,
            member=member,
            error=f"{type(error).__name__}: {error}",
            failures=failures & _WRAP,
        )

    @rate_group("1Hz")
    def update_telemetry(self) -> None:
        groups = set(self.driver.groups())
        for group, (cycles, slips, longest) in self.GROUP_CHANNELS.items():
            if group not in groups:
                continue
            stats = self.driver.stats(group)
            setattr(self.telemetry, cycles, stats.cycles & _WRAP)
            setattr(self.telemetry, slips, stats.slips & _WRAP)
            setattr(self.telemetry, longest, stats.max_execution_s * 1000)
        if "10Hz" in groups:
            jitter = self.driver.jitter("10Hz")
            self.telemetry.LATENESS_P99_10HZ_MS = jitter.p99_s * 1000
