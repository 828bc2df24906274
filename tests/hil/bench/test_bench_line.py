"""hil.bench.line: the BenchLink between a station and a target's link, on a MemoryLink pair in
virtual time; its faults, outages, raw frames, counters and the link record."""

import asyncio
import json

import pytest

from flight.link.base import LinkDown
from flight.link.memory import MemoryLink
from flight.protocol import icd
from flight.protocol.tc_frame import TcFrame
from flight.runtime.clock import run
from hil.bench.line import BenchLink, LinkRecorder, frame_summary, read_record, write_traffic
from hil.faults import FaultModel

FRAMES = [bytes([0x00, 0x01, i, 0xAA, 0x55]) for i in range(40)]  # first octet: a type-AD frame


def virtual(scenario):
    async def bounded():
        async with asyncio.timeout(3600):
            return await scenario()

    return run(bounded(), virtual=True)


async def drain(link, count: int, within_s: float = 5.0) -> list[bytes]:
    """Up to `count` frames that arrive at `link` within `within_s` of loop time."""
    frames: list[bytes] = []
    try:
        async with asyncio.timeout(within_s):
            while len(frames) < count:
                frames.append(await link.receive())
    except TimeoutError:
        pass
    return frames


class Pair:
    """A MemoryLink pair with a BenchLink on the ground end; `far` is the target's end."""

    def __init__(self, **options) -> None:
        self.far, ground = MemoryLink.pair()
        self.ground = ground
        self.line = BenchLink(ground, **options)

    async def __aenter__(self) -> "Pair":
        await self.far.__aenter__()
        await self.ground.__aenter__()
        await self.line.__aenter__()
        await self.line.wait_up()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.line.__aexit__(None, None, None)
        await self.ground.__aexit__(None, None, None)
        await self.far.__aexit__(None, None, None)


def test_without_faults_every_frame_passes_both_ways_and_is_recorded(tmp_path):
    recorder = LinkRecorder(tmp_path / "link.jsonl", target="memory")

    async def scenario():
        async with Pair(recorder=recorder) as pair:
            for frame in FRAMES[:5]:
                await pair.line.send(frame)
            assert await drain(pair.far, 5) == FRAMES[:5]
            for frame in FRAMES[5:8]:
                await pair.far.send(frame)
            assert await drain(pair.line, 3) == FRAMES[5:8]
            return pair.line.counters

    counters = virtual(scenario)
    recorder.close()
    assert (counters.frames_sent, counters.frames_received) == (5, 3)
    assert (counters.uplink.delivered, counters.downlink.delivered) == (5, 3)
    assert counters.injected == 0
    header, entries = read_record(tmp_path / "link.jsonl")
    assert header["record"] == "penumbra bench link" and header["target"] == "memory"
    assert [entry["dir"] for entry in entries] == ["up"] * 5 + ["down"] * 3
    assert [bytes.fromhex(entry["hex"]) for entry in entries] == FRAMES[:8]
    assert all(entry["copies"] == [{"delay_s": 0.0, "corrupted": False}] for entry in entries)


def test_total_loss_drops_every_frame_silently_and_counts_it(tmp_path):
    recorder = LinkRecorder(tmp_path / "link.jsonl")

    async def scenario():
        async with Pair(recorder=recorder) as pair:
            pair.line.set_faults(uplink=FaultModel(loss=1.0))
            for frame in FRAMES[:4]:
                await pair.line.send(frame)  # no error: a line loses frames without a word
            assert await drain(pair.far, 1, within_s=2.0) == []
            pair.line.clear_faults()
            await pair.line.send(FRAMES[4])
            assert await drain(pair.far, 1) == [FRAMES[4]]
            return pair.line.counters

    counters = virtual(scenario)
    recorder.close()
    assert counters.uplink.lost == 4 and counters.injected == 4
    _, entries = read_record(tmp_path / "link.jsonl")
    assert [entry["copies"] == [] for entry in entries] == [True] * 4 + [False]


def test_a_seed_repeats_the_same_faults_and_another_seed_does_not():
    model = FaultModel(loss=0.3, duplicate=0.2, bit_error_rate=1e-3)

    def arrivals(seed: int) -> list[bytes]:
        async def scenario():
            async with Pair(seed=seed) as pair:
                pair.line.set_faults(uplink=model)
                for frame in FRAMES:
                    await pair.line.send(frame)
                return await drain(pair.far, 2 * len(FRAMES), within_s=2.0)

        return virtual(scenario)

    first = arrivals(7)
    assert first == arrivals(7)
    assert first != arrivals(8)
    assert first != FRAMES  # the faults did something


def test_reordered_frames_arrive_after_later_ones():
    async def scenario():
        async with Pair(seed=3) as pair:
            pair.line.set_faults(uplink=FaultModel(reorder=0.3, reorder_delay_s=0.5))
            for frame in FRAMES:
                await pair.line.send(frame)
                await asyncio.sleep(0.1)
            arrived = await drain(pair.far, len(FRAMES))
            return arrived, pair.line.counters.uplink.reordered

    arrived, reordered = virtual(scenario)
    assert sorted(arrived) == sorted(FRAMES)  # none lost, none doubled
    assert arrived != FRAMES and reordered > 0


def test_an_outage_loses_both_directions_while_both_ends_still_see_the_link_up(tmp_path):
    recorder = LinkRecorder(tmp_path / "link.jsonl")

    async def scenario():
        async with Pair(recorder=recorder) as pair:
            pair.line.outage(10.0)
            assert pair.line.up and pair.far.up and pair.line.in_outage
            await pair.line.send(FRAMES[0])
            await pair.far.send(FRAMES[1])
            assert await drain(pair.far, 1, within_s=1.0) == []
            assert await drain(pair.line, 1, within_s=1.0) == []
            await asyncio.sleep(10.0)
            assert not pair.line.in_outage
            await pair.line.send(FRAMES[2])
            await pair.far.send(FRAMES[3])
            assert await drain(pair.far, 1) == [FRAMES[2]]
            assert await drain(pair.line, 1) == [FRAMES[3]]
            return pair.line.counters

    counters = virtual(scenario)
    recorder.close()
    assert counters.uplink.lost_in_outage == 1 and counters.downlink.lost_in_outage == 1
    _, entries = read_record(tmp_path / "link.jsonl")
    assert [entry.get("outage", False) for entry in entries] == [True, True, False, False]


def test_a_send_while_the_target_link_is_down_is_refused_and_the_caller_keeps_the_frame():
    async def scenario():
        async with Pair() as pair:
            pair.far.set_up(False)  # contact lost underneath the bench
            await pair.line.wait_down()
            with pytest.raises(LinkDown):
                await pair.line.send(FRAMES[0])
            pair.far.set_up(True)
            await pair.line.wait_up()
            await pair.line.send(FRAMES[1])
            return await drain(pair.far, 1), pair.line.counters.sends_refused

    arrived, refused = virtual(scenario)
    assert arrived == [FRAMES[1]] and refused == 1


def test_raw_frames_pass_but_are_not_the_stations_and_the_last_ad_frame_is_found(tmp_path):
    recorder = LinkRecorder(tmp_path / "link.jsonl")
    control = bytes([0x10, 0x01, 0x00, 0x00, 0x00])  # control command flag set: type BC
    bypass = bytes([0x20, 0x01, 0x00, 0x00, 0x00])  # bypass flag set: type BD

    async def scenario():
        async with Pair(recorder=recorder) as pair:
            with pytest.raises(LookupError, match="no type-AD TC frame"):
                pair.line.last_sent_frame()
            await pair.line.send(FRAMES[0])
            await pair.line.send(control)
            await pair.line.send(bypass)
            await pair.line.send_raw(FRAMES[9])
            arrived = await drain(pair.far, 4)
            return arrived, pair.line.last_sent_frame(), list(pair.line.sent_frames)

    arrived, last, sent = virtual(scenario)
    recorder.close()
    assert arrived == [FRAMES[0], control, bypass, FRAMES[9]]
    assert last == FRAMES[0]
    assert sent == [FRAMES[0], control, bypass]
    _, entries = read_record(tmp_path / "link.jsonl")
    assert [entry.get("raw", False) for entry in entries] == [False, False, False, True]


def test_the_traffic_file_decodes_frames_with_their_fate(tmp_path):
    frame = TcFrame(icd.SPACECRAFT_ID, icd.TcVirtualChannel.COMMAND, 5, b"\x01\x02\x03").encode()
    record = tmp_path / "link.jsonl"
    recorder = LinkRecorder(record, target="unit")
    recorder.record(10.0, "up", frame, [(0.0, frame)])
    recorder.record(10.5, "up", frame, [])
    recorder.record(11.0, "down", b"\x00garbage", [(0.25, b"\x00garbagf")])
    recorder.close()
    out = tmp_path / "traffic.txt"
    write_traffic(record, out, ["an item"])
    lines = out.read_text().splitlines()
    assert "target=unit" in lines[0]
    assert "N(S)=5" in lines[2] and " ok " in lines[2]
    assert " lost " in lines[3]
    assert "corrupted,+0.250s" in lines[4] and "undecodable" in lines[4]
    assert lines[-1] == "str: an item"
    assert json.loads(record.read_text().splitlines()[3])["copies"][0]["corrupted"] is True


def test_frame_summary_names_the_frame_kind_and_counts():
    frame = TcFrame(icd.SPACECRAFT_ID, icd.TcVirtualChannel.COMMAND, 9, b"\x00").encode()
    assert frame_summary(frame).startswith("TC AD vc=0 N(S)=9")
    assert frame_summary(b"\xff").startswith("undecodable")


def test_an_outage_must_last_a_finite_time():
    async def scenario():
        async with Pair() as pair:
            with pytest.raises(ValueError, match="finite time"):
                pair.line.outage(float("inf"))

    virtual(scenario)
