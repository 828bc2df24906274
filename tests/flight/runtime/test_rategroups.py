import asyncio
import logging
from collections.abc import Callable

import pytest

from flight.runtime import clock
from flight.runtime.clock import VirtualTimeLoop
from flight.runtime.rategroups import (
    DEFAULT_DIVIDERS,
    RateGroupDriver,
    RateGroupJitter,
    RateGroupStats,
)


def _run_for(
    driver: RateGroupDriver,
    duration_s: float,
    before: Callable[[asyncio.AbstractEventLoop], None] | None = None,
) -> None:
    """Run `driver` in virtual time for `duration_s`, then cancel it."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if before is not None:
            before(loop)
        task = asyncio.create_task(driver.run())
        await asyncio.sleep(duration_s)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    clock.run(main(), virtual=True)


def _recorder(log: list[tuple[float, str]], label: str) -> Callable[[], None]:
    def member() -> None:
        log.append((asyncio.get_running_loop().time(), label))

    return member


def test_default_groups_are_10hz_1hz_and_0_1hz_from_a_10hz_tick() -> None:
    driver = RateGroupDriver()
    assert driver.tick_hz == 10.0
    assert dict(DEFAULT_DIVIDERS) == {"10Hz": 1, "1Hz": 10, "0.1Hz": 100}
    assert driver.groups() == ("10Hz", "1Hz", "0.1Hz")
    assert [driver.period_s(g) for g in driver.groups()] == [0.1, 1.0, 10.0]


def test_members_run_in_the_order_they_were_added_every_cycle() -> None:
    driver = RateGroupDriver()
    log: list[str] = []

    async def slow_b() -> None:
        log.append("b")
        await asyncio.sleep(0.01)  # yields: c must still wait for b to finish

    driver.add("10Hz", "a", lambda: log.append("a"))
    driver.add("10Hz", "b", slow_b)
    driver.add("10Hz", "c", lambda: log.append("c"))
    assert driver.members("10Hz") == ("a", "b", "c")
    _run_for(driver, 0.25)
    assert log == ["a", "b", "c"] * 3


def test_each_group_runs_on_its_divider_phase_at_exact_times() -> None:
    driver = RateGroupDriver()
    log: list[tuple[float, str]] = []
    for group in driver.groups():
        driver.add(group, "record", _recorder(log, group))
    _run_for(driver, 25.05)
    for group, divider in DEFAULT_DIVIDERS.items():
        times = [t for t, g in log if g == group]
        expected = [k / 10.0 for k in range(0, 251, divider)]
        assert times == expected, group
        assert driver.stats(group).cycles == len(expected)
        assert driver.stats(group).slips == 0
    # Within one tick, faster groups start first.
    assert [g for t, g in log if t == 0.0] == ["10Hz", "1Hz", "0.1Hz"]


def test_the_schedule_does_not_drift_over_100000_ticks() -> None:
    driver = RateGroupDriver(dividers={"10Hz": 1})
    starts: list[float] = []

    def member() -> None:
        starts.append(asyncio.get_running_loop().time())

    driver.add("10Hz", "record", member)
    _run_for(driver, 10_000.05)
    assert len(starts) == 100_001
    # Tick k starts at exactly k / 10 s, also the last: a sleep(0.1) loop would be off by then.
    assert starts[-1] == 10_000.0
    assert all(start == k / 10.0 for k, start in enumerate(starts))
    assert driver.jitter("10Hz").max_s == 0.0


def test_an_async_overrun_counts_slips_reports_them_and_does_not_queue_cycles() -> None:
    driver = RateGroupDriver()
    slips: list[tuple[str, float]] = []
    driver.on_slip = lambda group, execution_s: slips.append((group, execution_s))
    starts: list[float] = []
    fast: list[float] = []

    async def too_slow() -> None:
        starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(2.5)

    driver.add("1Hz", "too_slow", too_slow)
    driver.add("10Hz", "fast", _recorder([], "fast"))
    driver.add("10Hz", "count", lambda: fast.append(0.0))
    _run_for(driver, 9.95)
    # Cycles start at 0, 3, 6, 9: those due at 1, 2, 4, 5, 7, 8 found it running.
    assert starts == [0.0, 3.0, 6.0, 9.0]
    assert slips == [("1Hz", 1.0), ("1Hz", 2.0)] * 3
    stats = driver.stats("1Hz")
    assert stats == RateGroupStats(cycles=3, slips=6, max_execution_s=2.5, last_execution_s=2.5)
    # The fast group is its own task: unaffected.
    assert len(fast) == 100
    assert driver.stats("10Hz").slips == 0


def test_a_synchronous_overrun_is_a_slip_and_the_next_cycle_keeps_the_schedule() -> None:
    driver = RateGroupDriver(dividers={"10Hz": 1})
    slips: list[tuple[str, float]] = []
    driver.on_slip = lambda group, execution_s: slips.append((group, execution_s))
    starts: list[float] = []

    def member() -> None:
        loop = asyncio.get_running_loop()
        starts.append(loop.time())
        if len(starts) == 6:
            assert isinstance(loop, VirtualTimeLoop)
            loop.advance(0.25)  # blocks the loop for 0.25 s, as a slow synchronous call would

    driver.add("10Hz", "member", member)
    _run_for(driver, 1.05)
    # The cycle at 0.5 ran until 0.75: cycles due at 0.6 and 0.7 are slips, 0.8 runs on time.
    assert starts == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.8, 0.9, 1.0]
    assert slips == [("10Hz", 0.25), ("10Hz", 0.25)]
    assert driver.stats("10Hz") == RateGroupStats(9, 2, 0.25, 0.0)


def test_a_stalled_loop_runs_one_late_cycle_per_group_never_a_burst() -> None:
    driver = RateGroupDriver()
    log: list[tuple[float, str]] = []
    slipped: list[str] = []
    driver.on_slip = lambda group, execution_s: slipped.append(group)
    for group in ("10Hz", "1Hz"):
        driver.add(group, "record", _recorder(log, group))

    def stall() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        loop.advance(1.03)  # another group holds the loop past ten 10 Hz ticks

    driver.add("0.1Hz", "stall", stall)
    _run_for(driver, 1.45)
    ten_hz = [t for t, g in log if g == "10Hz"]
    # Ticks 1..10 were missed while the loop was held; only tick 10 runs, late, then on schedule.
    assert ten_hz == [0.0, 1.03, 1.1, 1.2, 1.3, 1.4]
    assert slipped.count("10Hz") == 9
    assert [t for t, g in log if g == "1Hz"] == [0.0, 1.03]
    assert driver.stats("1Hz").slips == 0
    assert driver.jitter("1Hz").max_s == pytest.approx(0.03)


def test_a_raising_member_is_reported_and_does_not_stop_the_group() -> None:
    driver = RateGroupDriver(dividers={"1Hz": 1}, tick_hz=1.0)
    errors: list[tuple[str, str, str]] = []
    driver.on_member_error = lambda group, name, exc: errors.append((group, name, str(exc)))
    after: list[float] = []

    def broken() -> None:
        raise RuntimeError("sensor not answering")

    async def broken_async() -> None:
        await asyncio.sleep(0)
        raise ValueError("bad reading")

    driver.add("1Hz", "broken", broken)
    driver.add("1Hz", "broken_async", broken_async)
    driver.add("1Hz", "after", lambda: after.append(0.0))
    _run_for(driver, 2.5)
    assert (
        errors
        == [
            ("1Hz", "broken", "sensor not answering"),
            ("1Hz", "broken_async", "bad reading"),
        ]
        * 3
    )
    assert len(after) == 3
    assert driver.stats("1Hz").cycles == 3


def test_a_raising_member_without_a_callback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    driver = RateGroupDriver(dividers={"1Hz": 1}, tick_hz=1.0)

    def broken() -> None:
        raise RuntimeError("sensor not answering")

    driver.add("1Hz", "broken", broken)
    with caplog.at_level(logging.ERROR):
        _run_for(driver, 0.5)
    assert "member broken raised" in caplog.text
    assert driver.stats("1Hz").cycles == 1


def test_jitter_reports_lateness_percentiles_from_a_bounded_ring() -> None:
    driver = RateGroupDriver(dividers={"fast": 1, "late": 1}, jitter_samples=50)
    count = 0

    def delay_the_next_group() -> None:
        nonlocal count
        count += 1
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        loop.advance(0.001 * (count % 10))  # the "late" group starts this much after its tick

    driver.add("fast", "delay", delay_the_next_group)
    driver.add("late", "nothing", lambda: None)
    assert driver.jitter("late") == RateGroupJitter(0, 0.0, 0.0, 0.0)
    _run_for(driver, 9.95)
    jitter = driver.jitter("late")
    assert jitter.samples == 50
    # The last 50 cycles were delayed by 0..9 ms, five times each.
    assert jitter.p50_s == pytest.approx(0.004)
    assert jitter.p99_s == pytest.approx(0.009)
    assert jitter.max_s == pytest.approx(0.009)
    assert driver.jitter("fast").max_s == 0.0


def test_unknown_group_names_the_groups_that_exist() -> None:
    driver = RateGroupDriver()
    with pytest.raises(KeyError, match=r"no rate group '5Hz'; the groups are 10Hz, 1Hz, 0\.1Hz"):
        driver.add("5Hz", "x", lambda: None)
    with pytest.raises(KeyError, match="5Hz"):
        driver.stats("5Hz")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tick_hz": 0.0}, "tick_hz"),
        ({"tick_hz": float("inf")}, "tick_hz"),
        ({"dividers": {}}, "at least one group"),
        ({"dividers": {"a": 0}}, "divider"),
        ({"dividers": {"a": 1.5}}, "divider"),
        ({"dividers": {"": 1}}, "name"),
        ({"jitter_samples": 0}, "jitter_samples"),
    ],
)
def test_bad_configuration_is_refused_with_a_message(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateGroupDriver(**kwargs)


def test_running_twice_at_once_is_refused() -> None:
    driver = RateGroupDriver()

    async def main() -> None:
        first = asyncio.create_task(driver.run())
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="already running"):
            await driver.run()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first

    clock.run(main(), virtual=True)


def test_a_driver_can_be_run_again_after_it_was_cancelled() -> None:
    driver = RateGroupDriver(dividers={"1Hz": 1}, tick_hz=1.0)
    calls: list[int] = []
    driver.add("1Hz", "count", lambda: calls.append(1))
    _run_for(driver, 1.5)
    _run_for(driver, 1.5)
    assert len(calls) == 4
