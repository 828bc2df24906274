"""The bus and rate-group monitors: drops, slips and member errors as telemetry and events."""

import asyncio

from flight.runtime import clock
from flight.runtime.bus import Overflow, SoftwareBus
from flight.runtime.component import Mode
from flight.runtime.components.monitors import BusMonitor, RateGroupMonitor
from flight.runtime.rategroups import RateGroupDriver


class Context:
    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []

    def emit(self, component, event, arguments, text) -> None:  # type: ignore[no-untyped-def]
        self.events.append((asyncio.get_running_loop().time(), event.name, text))

    def mode(self) -> Mode:
        return Mode.NOMINAL


def test_bus_drops_are_counted_and_announced_at_most_once_a_second() -> None:
    bus = SoftwareBus()
    monitor = BusMonitor(bus)
    context = Context()
    monitor.attach(7, context)
    subscription = bus.subscribe("tm", name="archive", depth=2, overflow=Overflow.DROP_OLDEST)

    async def main() -> None:
        for _ in range(10):
            bus.publish("tm", b"x")
        await asyncio.sleep(1.5)
        bus.publish("tm", b"y")
        monitor.update_telemetry()

    clock.run(main(), virtual=True)
    assert subscription.dropped == 9
    texts = [text for _, name, text in context.events if name == "MESSAGE_DROPPED"]
    assert texts == [
        "archive on tm: queue of 2 full, 1 dropped so far",
        "archive on tm: queue of 2 full, 9 dropped so far",
    ]
    assert monitor.telemetry.DROPPED == 9
    assert monitor.telemetry.SUBSCRIPTIONS == 1
    assert monitor.telemetry.HIGH_WATER == 2


def test_a_slip_raises_a_high_event_with_the_execution_time() -> None:
    driver = RateGroupDriver()
    monitor = RateGroupMonitor(driver)
    context = Context()
    monitor.attach(8, context)

    async def slow() -> None:
        asyncio.get_running_loop().advance(0.25)  # type: ignore[attr-defined]
        await asyncio.sleep(0)

    calls = {"n": 0}

    async def sometimes_slow() -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            await slow()

    driver.add("10Hz", "payload.sometimes_slow", sometimes_slow)

    async def main() -> None:
        task = asyncio.create_task(driver.run())
        await asyncio.sleep(1.0)
        task.cancel()
        monitor.update_telemetry()

    clock.run(main(), virtual=True)
    slips = [text for _, name, text in context.events if name == "SLIP"]
    assert slips and slips[0].startswith("rate group 10Hz slipped: a cycle took 25")
    assert monitor.telemetry.SLIPS_10HZ >= 1
    assert monitor.telemetry.MAX_EXECUTION_10HZ_MS >= 250


def test_a_failing_member_is_announced_with_its_count_not_every_tick() -> None:
    driver = RateGroupDriver()
    monitor = RateGroupMonitor(driver)
    context = Context()
    monitor.attach(8, context)

    def broken() -> None:
        raise ValueError("no sensor")

    driver.add("10Hz", "thermal.read", broken)

    async def main() -> None:
        task = asyncio.create_task(driver.run())
        await asyncio.sleep(2.05)
        task.cancel()

    clock.run(main(), virtual=True)
    failures = [text for _, name, text in context.events if name == "MEMBER_FAILED"]
    assert (
        failures[0] == "rate group 10Hz: thermal.read raised ValueError: no sensor (1 times so far)"
    )
    assert len(failures) == 3  # at 0, 1 and 2 s, not 21 times
    assert failures[-1].endswith("(21 times so far)")
