import asyncio
import random

import pytest

from flight.link import Link, LinkConfigError, LinkDown, LinkError, MemoryLink, Role
from flight.runtime.clock import run
from hil.faults import FaultInjector, FaultModel


async def drain(link: MemoryLink) -> list[bytes]:
    """Every frame waiting at `link` once everything in flight has landed."""
    frames = []
    while link.pending_frames:
        frames.append(await link.receive())
    return frames


def test_a_pair_delivers_frames_both_ways_and_counts_them():
    async def main() -> None:
        flight, ground = MemoryLink.pair()
        assert isinstance(flight, Link) and isinstance(ground, Link)
        assert (flight.role, ground.role) == (Role.FLIGHT, Role.GROUND)
        async with flight, ground:
            assert flight.up and ground.up
            await ground.send(b"tc")
            await flight.send(b"tm")
            assert await flight.receive() == b"tc"
            assert await ground.receive() == b"tm"
        assert flight.counters.frames_sent == flight.counters.frames_received == 1
        assert ground.counters.octets_sent == 2

    run(main(), virtual=True)


def test_an_end_is_down_until_both_ends_are_open():
    async def main() -> None:
        flight, ground = MemoryLink.pair()
        async with flight:
            assert not flight.up
            with pytest.raises(LinkDown, match="other end is not open"):
                await flight.send(b"tm")
            async with ground:
                assert flight.up
            assert not flight.up

    run(main(), virtual=True)


def test_an_outage_makes_both_ends_down_and_sends_raise_link_down():
    async def main() -> None:
        flight, ground = MemoryLink.pair()
        async with flight, ground:
            ground.set_up(False)
            assert not flight.up and not ground.up and not flight.in_contact
            with pytest.raises(LinkDown, match="out of contact"):
                await flight.send(b"tm")
            with pytest.raises(LinkDown):
                await ground.send(b"tc")
            assert flight.counters.sends_refused == ground.counters.sends_refused == 1
            waiter = asyncio.create_task(flight.wait_up())
            await asyncio.sleep(60)
            assert not waiter.done()
            flight.set_up(True)
            await waiter
            assert flight.counters.reconnects == ground.counters.reconnects == 1
            await flight.send(b"after")
            assert await ground.receive() == b"after"

    run(main(), virtual=True)


def test_frames_in_flight_when_contact_is_lost_are_lost_and_counted():
    async def main() -> None:
        delay = FaultInjector(FaultModel(delay_s=1.0), random.Random(1))
        flight, ground = MemoryLink.pair(downlink_faults=delay)
        async with flight, ground:
            await flight.send(b"lost in space")
            flight.set_up(False)
            await asyncio.sleep(2)
            flight.set_up(True)
            assert ground.pending_frames == 0
            assert ground.counters.frames_dropped == 1
            assert "contact was lost" in ground.last_drop

    run(main(), virtual=True)


def test_rate_serialises_frames_on_the_loop_clock():
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        flight, ground = MemoryLink.pair(rate_bps=8000.0)  # 1000 octets per second
        arrivals = []

        async def listen() -> None:
            for _ in range(3):
                await ground.receive()
                arrivals.append(loop.time() - start)

        async with flight, ground:
            start = loop.time()
            listener = asyncio.create_task(listen())
            for _ in range(3):
                await flight.send(bytes(500))
            assert loop.time() - start == pytest.approx(1.5)
            await listener
        return arrivals

    # Virtual time, so exact: the frames land as their last bit arrives, one per 0.5 s.
    assert run(main(), virtual=True) == pytest.approx([0.5, 1.0, 1.5])


def _faulty_run(seed: int) -> tuple[list[tuple[float, bytes]], FaultInjector]:
    async def main() -> tuple[list[tuple[float, bytes]], FaultInjector]:
        model = FaultModel(
            loss=0.1,
            duplicate=0.1,
            reorder=0.1,
            bit_error_rate=1e-3,
            delay_s=0.25,
            jitter_s=0.1,
            reorder_delay_s=0.3,
        )
        hook = FaultInjector(model, random.Random(seed))
        flight, ground = MemoryLink.pair(uplink_faults=hook, rate_bps=64_000.0)
        loop = asyncio.get_running_loop()
        arrivals: list[tuple[float, bytes]] = []

        async def listen() -> None:
            while True:
                frame = await flight.receive()
                arrivals.append((loop.time(), frame))

        async with flight, ground, asyncio.TaskGroup() as tasks:
            listener = tasks.create_task(listen())
            for index in range(500):
                await ground.send(index.to_bytes(4, "big") * 8)
            await asyncio.sleep(5)
            listener.cancel()
        return arrivals, hook

    return run(main(), virtual=True)


def test_faults_are_applied_deterministically_per_seed():
    first, hook = _faulty_run(seed=11)
    again, _ = _faulty_run(seed=11)
    other, _ = _faulty_run(seed=12)
    assert first == again  # same frames, same order, same arrival times
    assert first != other
    sent = {index.to_bytes(4, "big") * 8 for index in range(500)}
    frames = [frame for _, frame in first]
    assert hook.lost > 0 and hook.duplicated > 0 and hook.reordered > 0 and hook.corrupted > 0
    assert len(frames) == 500 - hook.lost + hook.duplicated
    assert sum(frame not in sent for frame in frames) == hook.corrupted
    intact = [int.from_bytes(frame[:4], "big") for frame in frames if frame in sent]
    assert intact != sorted(intact)  # reordered
    # Every frame was delayed by at least the propagation delay after its serialisation.
    assert min(time for time, _ in first) >= 0.25 + 32 * 8 / 64_000.0


def test_jitter_alone_never_reorders_frames():
    async def main() -> list[bytes]:
        hook = FaultInjector(FaultModel(delay_s=0.1, jitter_s=5.0), random.Random(3))
        flight, ground = MemoryLink.pair(downlink_faults=hook)
        async with flight, ground:
            for index in range(200):
                await flight.send(index.to_bytes(2, "big"))
                await asyncio.sleep(0.01)
            await asyncio.sleep(10)
            return await drain(ground)

    frames = run(main(), virtual=True)
    assert frames == [index.to_bytes(2, "big") for index in range(200)]


def test_fault_model_outage_windows_lose_frames_silently():
    async def main() -> tuple[list[bytes], FaultInjector]:
        hook = FaultInjector(FaultModel(outages=((10.0, 20.0),)), random.Random(4))
        flight, ground = MemoryLink.pair(downlink_faults=hook)
        async with flight, ground:
            for second in range(30):
                await flight.send(second.to_bytes(1, "big"))
                await asyncio.sleep(1)
            assert flight.up  # an outage of the fault model is not seen by the link
            return await drain(ground), hook

    frames, hook = run(main(), virtual=True)
    assert [frame[0] for frame in frames] == [*range(10), *range(20, 30)]
    assert hook.lost == hook.lost_in_outage == 10


def test_a_hook_may_return_copies_that_arrive_in_its_order():
    def twice_reversed(frame: bytes, now_s: float) -> list[tuple[float, bytes]]:
        return [(0.0, frame + b"-2"), (0.0, frame + b"-1")]

    async def main() -> list[bytes]:
        flight, ground = MemoryLink.pair(uplink_faults=twice_reversed)
        async with flight, ground:
            await ground.send(b"a")
            await ground.send(b"b")
            await asyncio.sleep(0)
            return await drain(flight)

    assert run(main(), virtual=True) == [b"a-2", b"a-1", b"b-2", b"b-1"]


def test_a_hook_returning_nonsense_is_reported_as_a_link_error():
    async def main() -> None:
        flight, ground = MemoryLink.pair(uplink_faults=lambda frame, now_s: [(-1.0, frame)])
        async with flight, ground:
            with pytest.raises(LinkError, match="delay must be finite and >= 0"):
                await ground.send(b"x")

    run(main(), virtual=True)


async def test_a_pair_runs_on_the_ordinary_loop_too():
    hook = FaultInjector(FaultModel(delay_s=0.01), random.Random(5))
    flight, ground = MemoryLink.pair(uplink_faults=hook, rate_bps=1e6)
    async with flight, ground:
        await ground.send(b"real time")
        async with asyncio.timeout(10):
            assert await flight.receive() == b"real time"


def test_the_receive_queue_is_bounded_and_overflow_is_counted():
    async def main() -> None:
        flight, ground = MemoryLink.pair(receive_depth=3)
        async with flight, ground:
            for index in range(5):
                await ground.send(bytes([index + 1]))
            await asyncio.sleep(0)
            assert await drain(flight) == [b"\x03", b"\x04", b"\x05"]
            assert flight.counters.frames_dropped == 2
            assert "receive queue full" in flight.last_drop

    run(main(), virtual=True)


def test_receive_waits_across_an_outage():
    async def main() -> bytes:
        flight, ground = MemoryLink.pair()
        async with flight, ground:
            receiver = asyncio.create_task(flight.receive())
            ground.set_up(False)
            await asyncio.sleep(100)
            ground.set_up(True)
            await ground.send(b"after the pass")
            return await receiver

    assert run(main(), virtual=True) == b"after the pass"


def test_bad_rate_is_refused():
    with pytest.raises(LinkConfigError, match="rate_bps"):
        MemoryLink.pair(rate_bps=0.0)


def test_a_rate_change_applies_to_the_frames_sent_after_it() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        flight, ground = MemoryLink.pair(rate_bps=8_000.0)  # 1 octet per ms
        async with flight, ground:
            start = loop.time()
            await flight.send(bytes(100))
            first = loop.time() - start
            flight.set_rate(80_000.0)
            start = loop.time()
            await flight.send(bytes(100))
            return first, loop.time() - start

    first, second = run(main(), virtual=True)
    assert first == pytest.approx(0.1) and second == pytest.approx(0.01)
    with pytest.raises(LinkConfigError, match="positive bit rate"):
        MemoryLink.pair()[0].set_rate(0.0)
