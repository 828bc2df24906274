import asyncio
import datetime
import os
import random
import threading
import time

import pytest

from flight.protocol.cuc import CucTime
from flight.runtime import clock
from flight.runtime.clock import TAI_MINUS_UTC_S, MissionClock, VirtualTimeLoop


def _virtual_loop() -> VirtualTimeLoop:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    return loop


# --------------------------------------------------------------------------------------------------
# VirtualTimeLoop
# --------------------------------------------------------------------------------------------------


def test_an_hour_of_sleeping_tasks_runs_at_exact_virtual_times_without_waiting() -> None:
    rng = random.Random(7)
    plans = [[rng.uniform(0.001, 90.0) for _ in range(rng.randint(1, 80))] for _ in range(200)]
    observed: dict[int, list[float]] = {}

    async def sleeper(index: int, sleeps: list[float]) -> None:
        loop = asyncio.get_running_loop()
        times = observed.setdefault(index, [])
        for duration_s in sleeps:
            await asyncio.sleep(duration_s)
            times.append(loop.time())

    async def main() -> tuple[float, int, int]:
        async with asyncio.TaskGroup() as group:
            for index, sleeps in enumerate(plans):
                group.create_task(sleeper(index, sleeps))
        loop = _virtual_loop()
        return loop.time(), loop.jumps, loop.blocking_waits

    end, jumps, blocking_waits = clock.run(main(), virtual=True)

    longest = 0.0
    for index, sleeps in enumerate(plans):
        expected, now = [], 0.0
        for duration_s in sleeps:
            now = now + duration_s  # the same float arithmetic as call_later: exact equality
            expected.append(now)
        assert observed[index] == expected
        longest = max(longest, now)
    assert end == longest
    assert longest > 3600.0
    # Every wait was a jump of the clock: the loop never slept in the real select.
    assert jumps > 0
    assert blocking_waits == 0


def test_virtual_time_starts_where_asked() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        before = loop.time()
        await asyncio.sleep(2.5)
        return before, loop.time()

    assert clock.run(main(), virtual=True, start_s=1000.0) == (1000.0, 1002.5)


def test_call_at_runs_at_exactly_the_requested_time() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        seen: list[float] = []
        done = loop.create_future()
        for k in range(1, 1001):
            when = k / 10.0
            loop.call_at(when, lambda w=when: seen.append(loop.time() - w))
        loop.call_at(100.0 + 1e-3, done.set_result, None)
        await done
        return seen

    assert clock.run(main(), virtual=True) == [0.0] * 1000


def test_timeouts_fire_on_the_virtual_clock() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        never = loop.create_future()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30.0):
                await never
        return loop.time()

    assert clock.run(main(), virtual=True) == 30.0


def _workload(seed: int) -> list[tuple[float, str]]:
    """A seeded mix of sleeps, timers, queues and timeouts; returns its event log."""
    log: list[tuple[float, str]] = []

    async def producer(rng: random.Random, queue: asyncio.Queue[int], name: str) -> None:
        loop = asyncio.get_running_loop()
        for n in range(50):
            await asyncio.sleep(rng.expovariate(2.0))
            queue.put_nowait(n)
            log.append((loop.time(), f"{name} put {n}"))
            if rng.random() < 0.2:
                loop.call_later(rng.uniform(0, 3), lambda n=n: log.append((loop.time(), f"t{n}")))

    async def consumer(rng: random.Random, queue: asyncio.Queue[int], name: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(rng.uniform(0.1, 2.0)):
                    item = await queue.get()
            except TimeoutError:
                log.append((loop.time(), f"{name} timeout"))
                continue
            log.append((loop.time(), f"{name} got {item}"))
            await asyncio.sleep(rng.uniform(0, 0.5))

    async def main() -> None:
        rng = random.Random(seed)
        queue: asyncio.Queue[int] = asyncio.Queue()
        consumers = [
            asyncio.create_task(consumer(random.Random(rng.random()), queue, f"c{i}"))
            for i in range(3)
        ]
        async with asyncio.TaskGroup() as group:
            for i in range(4):
                group.create_task(producer(random.Random(rng.random()), queue, f"p{i}"))
        await asyncio.sleep(5)
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)

    clock.run(main(), virtual=True)
    return log


def test_the_same_seeded_workload_gives_the_same_event_log_twice() -> None:
    first = _workload(42)
    assert len(first) > 300
    assert _workload(42) == first
    assert _workload(43) != first


def test_a_real_pipe_delivers_data_while_virtual_timers_run() -> None:
    read_fd, write_fd = os.pipe()

    def write_later() -> None:
        time.sleep(0.05)  # real time: the virtual clock races ahead meanwhile
        os.write(write_fd, b"telemetry")

    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        received = loop.create_future()
        loop.add_reader(read_fd, lambda: received.set_result(os.read(read_fd, 100)))
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.1)
                ticks += 1

        writer = threading.Thread(target=write_later)
        async with asyncio.TaskGroup() as group:
            task = group.create_task(ticker())
            writer.start()
            data = await received
            task.cancel()
        loop.remove_reader(read_fd)
        writer.join()
        return data, loop.time()

    try:
        data, end = clock.run(main(), virtual=True)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert data == b"telemetry"
    assert end > 0.0


def test_waiting_only_on_a_real_fd_blocks_instead_of_spinning() -> None:
    read_fd, write_fd = os.pipe()
    started = threading.Event()

    def write_later() -> None:
        started.wait()
        time.sleep(0.05)
        os.write(write_fd, b"x")

    async def main() -> tuple[bytes, int, int, float]:
        loop = _virtual_loop()
        received = loop.create_future()
        loop.add_reader(read_fd, lambda: received.set_result(os.read(read_fd, 1)))
        writer = threading.Thread(target=write_later)
        writer.start()
        waits_before = loop.blocking_waits
        started.set()
        data = await received
        loop.remove_reader(read_fd)
        writer.join()
        return data, loop.blocking_waits - waits_before, loop.jumps, loop.time()

    try:
        data, blocking_waits, jumps, end = clock.run(main(), virtual=True)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert data == b"x"
    # One blocking select per wake-up; a spinning loop would poll thousands of times in 50 ms.
    assert 1 <= blocking_waits <= 3
    assert jumps == 0
    assert end == 0.0


def test_executor_work_takes_no_virtual_time() -> None:
    def slow_job() -> int:
        time.sleep(0.02)  # real time spent in a worker thread
        return 7

    async def main() -> tuple[int, float, list[float]]:
        loop = asyncio.get_running_loop()
        woke: list[float] = []

        async def sleeper() -> None:
            await asyncio.sleep(1.0)
            woke.append(loop.time())

        async with asyncio.TaskGroup() as group:
            group.create_task(sleeper())
            result = await asyncio.to_thread(slow_job)
            at = loop.time()
        return result, at, woke

    result, at, woke = clock.run(main(), virtual=True)
    assert result == 7
    assert at == 0.0
    assert woke == [1.0]


def test_executor_results_arrive_in_the_order_the_work_was_handed_over() -> None:
    # The first job finishes last in real time; its result still comes first, every run.
    def job(name: str, seconds: float, errs: bool = False) -> str:
        time.sleep(seconds)
        if errs:
            raise ValueError(name)
        return name

    async def main() -> list[str]:
        finished: list[str] = []

        async def run(name: str, seconds: float, errs: bool = False) -> None:
            try:
                finished.append(await asyncio.to_thread(job, name, seconds, errs))
            except ValueError as error:
                finished.append(f"error {error}")

        async with asyncio.TaskGroup() as group:
            for name, seconds, errs in (("a", 0.05, False), ("b", 0.0, True), ("c", 0.0, False)):
                group.create_task(run(name, seconds, errs))
        return finished

    assert clock.run(main(), virtual=True) == ["a", "error b", "c"]


def test_advance_lets_virtual_time_pass_as_if_busy() -> None:
    async def main() -> list[float]:
        loop = _virtual_loop()
        seen: list[float] = []
        loop.call_at(0.5, lambda: seen.append(loop.time()))
        await asyncio.sleep(0)
        loop.advance(2.0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return [*seen, loop.time()]

    assert clock.run(main(), virtual=True) == [2.0, 2.0]


def test_advance_refuses_to_move_time_backwards() -> None:
    loop = VirtualTimeLoop()
    try:
        with pytest.raises(ValueError, match="only moves forward"):
            loop.advance(-1.0)
    finally:
        loop.close()


def test_run_with_real_time_uses_the_monotonic_clock() -> None:
    async def main() -> tuple[type, float]:
        loop = asyncio.get_running_loop()
        return type(loop), loop.time()

    kind, now = clock.run(main(), virtual=False, start_s=5.0)
    assert not issubclass(kind, VirtualTimeLoop)
    assert now == pytest.approx(time.monotonic(), abs=60.0)


# --------------------------------------------------------------------------------------------------
# MissionClock
# --------------------------------------------------------------------------------------------------


def _tai_from_calendar(utc: datetime.datetime) -> float:
    epoch = datetime.datetime(1958, 1, 1, tzinfo=datetime.UTC)
    return (utc - epoch).total_seconds() + TAI_MINUS_UTC_S


@pytest.mark.parametrize(
    "utc",
    [
        datetime.datetime(2017, 1, 1, tzinfo=datetime.UTC),
        datetime.datetime(2024, 6, 1, 12, 30, 15, 250000, tzinfo=datetime.UTC),
    ],
)
def test_tai_from_unix_adds_the_1958_epoch_and_37_leap_seconds(utc: datetime.datetime) -> None:
    assert MissionClock.tai_from_unix(utc.timestamp()) == _tai_from_calendar(utc)


def test_mission_time_follows_the_loop_clock() -> None:
    epoch_tai_s = _tai_from_calendar(datetime.datetime(2025, 3, 1, tzinfo=datetime.UTC))

    async def main() -> tuple[float, CucTime, float]:
        loop = asyncio.get_running_loop()
        mission = MissionClock(epoch_tai_s, loop_time_at_epoch=loop.time())
        await asyncio.sleep(10.5)
        return mission.now_tai_s(), mission.cuc(), mission.tai_at(loop.time() + 1.0)

    now, stamp, later = clock.run(main(), virtual=True, start_s=300.0)
    assert now == epoch_tai_s + 10.5
    assert stamp == CucTime.from_seconds(epoch_tai_s + 10.5)
    assert stamp.seconds == epoch_tai_s + 10.5
    assert later == epoch_tai_s + 11.5


def test_anchored_now_reads_the_system_clock_once(monkeypatch: pytest.MonkeyPatch) -> None:
    unix_s = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC).timestamp()
    reads: list[float] = []

    def fake_time() -> float:
        reads.append(unix_s)
        return unix_s

    monkeypatch.setattr(time, "time", fake_time)

    async def main() -> tuple[MissionClock, float]:
        loop = asyncio.get_running_loop()
        mission = MissionClock.anchored_now(loop)
        await asyncio.sleep(3.0)
        return mission, mission.now_tai_s()

    mission, now = clock.run(main(), virtual=True, start_s=50.0)
    assert reads == [unix_s]
    assert mission == MissionClock(MissionClock.tai_from_unix(unix_s), 50.0)
    assert now == MissionClock.tai_from_unix(unix_s) + 3.0
