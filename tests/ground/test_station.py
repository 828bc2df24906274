"""ground.station over a MemoryLink against a responder running FARM-1 and SDLS, in virtual time.

Every scenario runs on flight.runtime.clock's virtual-time loop: FOP-1's T1, the responder's idle
frames and the timeouts take no wall-clock time, and a run is deterministic.
"""

import asyncio
import contextlib
import sqlite3
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from flight.link.memory import MemoryLink
from flight.protocol import icd
from flight.protocol.cfdp import FileSender
from flight.protocol.cop1 import Clcw
from flight.protocol.cuc import CucTime
from flight.protocol.pus import EventReport, PusTm
from flight.protocol.sdls import KeyFileError
from flight.protocol.spacepacket import PacketType, SpacePacket
from flight.protocol.tm_frame import TmMasterChannel
from flight.runtime.clock import run
from flight.runtime.store import Store
from ground.archive import Archive
from ground.dictionary import (
    ArgumentError,
    EventMessage,
    LimitState,
    RequestKey,
    Stage,
    TelemetrySample,
    Verification,
)
from ground.station import (
    CommandFailed,
    DecodeFailure,
    GroundStation,
    StationAlert,
    UplinkError,
)
from tests.ground.responder import APID, KEY, Responder, sample_dictionary


@contextlib.asynccontextmanager
async def contact(
    state_dir: Path, *, drop_uplink=None, archive: Archive | None = None, **settings
) -> AsyncIterator[tuple[Responder, GroundStation, MemoryLink]]:
    flight, ground = MemoryLink.pair()
    async with (
        flight,
        ground,
        Responder(flight, drop_uplink=drop_uplink) as node,
        GroundStation(
            ground, sample_dictionary(), key=KEY, state_dir=state_dir, archive=archive, **settings
        ) as station,
    ):
        yield node, station, flight


VIRTUAL_LIMIT_S = 3600.0  # a scenario that hangs fails after an hour of virtual time


def virtual(scenario):
    """Run `scenario` on the virtual-time loop; a hang becomes a TimeoutError, not a stuck test."""

    async def bounded():
        async with asyncio.timeout(VIRTUAL_LIMIT_S):
            return await scenario

    return run(bounded(), virtual=True)


def test_a_command_round_trip_gives_its_request_id_and_its_verification_reports(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, _):
            request = await station.send_command("health.SET_PING_PERIOD", period_ms=500)
            reports = await station.await_completion(request)
            assert request == RequestKey(APID, node.executed[0].sequence_count)
            assert [(r.stage, r.success, r.command) for r in reports] == [
                (Stage.ACCEPTANCE, True, "health.SET_PING_PERIOD"),
                (Stage.COMPLETION, True, "health.SET_PING_PERIOD"),
            ]
            assert node.executed[0].app_data == b"\x03\x02" + struct.pack(">I", 500)

    virtual(scenario())


def test_a_failing_command_raises_command_failed_with_the_failure_name_and_text(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (_, station, _link):
            request = await station.send_command("health.FAIL", why="test", level="LOW")
            with pytest.raises(CommandFailed) as caught:
                await station.await_completion(request)
            report = caught.value.report
            assert (report.stage, report.failure_name, report.failure_text) == (
                Stage.COMPLETION,
                "EXECUTION_FAILED",
                "told to fail",
            )
            assert "health.FAIL" in str(caught.value)

    virtual(scenario())


def test_bad_arguments_are_refused_before_anything_is_sent(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, _):
            with pytest.raises(ArgumentError, match="period_ms: 5 is below the minimum 100"):
                await station.send_command("health.SET_PING_PERIOD", period_ms=5)
            assert station.counters.commands_sent == 0 and node.frames_in == 0

    virtual(scenario())


def test_fop_retransmits_what_the_node_never_got_each_time_under_a_fresh_iv(tmp_path):
    lost = {1, 2}  # the second and third TC frames vanish on the way up

    async def scenario():
        async with contact(tmp_path, drop_uplink=lambda n: n in lost) as (node, station, _):
            requests = await asyncio.gather(
                *(station.send_command("health.NOOP") for _ in range(5))
            )
            for request in requests:
                await station.await_completion(request)
            executed = [tc.sequence_count for tc in node.executed]
            assert executed == sorted(r.sequence_count for r in requests)
            assert station.fop.counters["ad_frames_retransmitted"] >= 2
            assert node.dropped == 2
            # Frames after the gap passed SDLS before FARM-1 discarded them; their retransmissions
            # pass again only because each carries a new IV: no replay refusal at all.
            assert node.rejections == []
            assert node.ivs_seen == sorted(set(node.ivs_seen))
            assert station.counters.transmissions == node.frames_in > 5

    virtual(scenario())


def test_every_iv_is_persisted_before_the_frame_carrying_it_leaves(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, _):
            store = Store(tmp_path)
            reserved_at_send = []
            send = station.link.send

            async def recording_send(frame: bytes) -> None:
                record = store.load("sdls_iv_spi1") or {}
                reserved_at_send.append(record.get("reserved_until", 0))
                await send(frame)

            station.link.send = recording_send  # type: ignore[method-assign]
            for _ in range(20):
                await station.await_completion(await station.send_command("health.NOOP"))
            assert len(node.ivs_seen) == 20
            assert all(
                iv < reserved for iv, reserved in zip(node.ivs_seen, reserved_at_send, strict=True)
            )

    virtual(scenario())


def test_the_iv_and_the_sequence_count_never_repeat_across_station_restarts(tmp_path):
    async def scenario():
        flight, ground = MemoryLink.pair()
        async with flight, ground, Responder(flight) as node:
            requests = []
            for _ in range(3):
                async with GroundStation(
                    ground, sample_dictionary(), key=KEY, state_dir=tmp_path
                ) as station:
                    for _ in range(3):
                        request = await station.send_command("health.NOOP")
                        await station.await_completion(request)
                        requests.append(request)
            assert len(node.ivs_seen) == 9
            assert node.ivs_seen == sorted(set(node.ivs_seen))  # strictly increasing
            assert node.rejections == []  # the node's anti-replay window saw no repeat
            assert len(set(requests)) == 9

    virtual(scenario())


def test_a_station_that_never_closed_still_does_not_repeat_an_iv(tmp_path):
    async def scenario():
        flight, ground = MemoryLink.pair()
        async with flight, ground, Responder(flight) as node:
            crashed = GroundStation(ground, sample_dictionary(), key=KEY, state_dir=tmp_path)
            await crashed.__aenter__()
            await crashed.await_completion(await crashed.send_command("health.NOOP"))
            first_ivs = list(node.ivs_seen)
            # Abandoned without __aexit__ (its state file is never written at a clean stop);
            # its tasks are stopped so that the next station alone reads the downlink.
            for task in crashed._task_list:
                task.cancel()
            await asyncio.sleep(0)
            async with GroundStation(
                ground, sample_dictionary(), key=KEY, state_dir=tmp_path
            ) as station:
                await station.await_completion(await station.send_command("health.NOOP"))
            assert node.ivs_seen[len(first_ivs)] > max(first_ivs)
            assert node.rejections == []
            await crashed.__aexit__(None, None, None)

    virtual(scenario())


def stale_frame(node: Responder, behind: int, clcw: Clcw, packet: bytes) -> bytes:
    """A valid TM frame whose master channel count is `behind` the node's newest."""
    master = TmMasterChannel(ocf=lambda: clcw.word)
    master.frame_count = (node.master.frame_count - 1 - behind) % 256
    channel = master.virtual_channel(icd.TmVirtualChannel.REALTIME)
    channel.send(packet)
    channel.flush()
    return master.drain()[0]


def event_packet(node: Responder, missed: int) -> bytes:
    report = EventReport(768, b"\x05stale" + bytes([missed]))
    return PusTm(APID, 999, 5, 2, report.encode(), time=node.now_cuc()).encode()


LOCKOUT = Clcw(lockout=True, report_value=0)
HK = {"COMMANDS_ACCEPTED": 0, "COMMANDS_REJECTED": 0, "CPU_PERCENT": 10.0, "MODE": 2}


def test_a_clcw_from_a_frame_behind_the_master_channel_count_is_ignored(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, _):
            await station.await_completion(await station.send_command("health.NOOP"))
            async with station.subscribe(EventMessage) as events:
                await node.send_frame(stale_frame(node, 5, LOCKOUT, event_packet(node, 7)))
                event = await events.get()
            assert event.args == {"component": "stale", "missed": 7}  # its packets still count
            assert station.counters.frames_stale == 1
            assert station.fop.counters["alert_lockout"] == 0 and station.counters.cop1_alerts == 0
            await station.await_completion(await station.send_command("health.NOOP"))
            assert station.fop.counters["bc_frames_sent"] == 0  # no re-initiation was needed

    virtual(scenario())


def test_the_same_clcw_in_a_fresh_frame_alerts_fop_and_the_station_recovers(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, _):
            await station.await_completion(await station.send_command("health.NOOP"))
            async with station.subscribe(StationAlert) as alerts:
                fresh = stale_frame(node, -2, LOCKOUT, event_packet(node, 1))  # 1 ahead
                await node.send_frame(fresh)
                alert = await alerts.get()
            assert "LOCKOUT" in alert.text
            assert station.fop.counters["alert_lockout"] == 1
            # The next real CLCW shows FARM-1 unlocked: the AD service starts again by itself.
            await station.await_completion(await station.send_command("health.NOOP"))
            assert len(node.executed) == 2

    virtual(scenario())


def test_a_redelivered_frame_is_dropped_as_a_duplicate(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, _):
            node.event("health.PING_LATE", component="x", missed=1)
            async with station.subscribe(EventMessage) as events:
                frames = await node.flush()
                await events.get()
                for frame in frames:
                    await node.send_frame(frame)  # as an MQTT session redelivers
                await asyncio.sleep(5)
                assert events.pending == 0
            assert station.counters.frames_duplicate == len(frames)

    virtual(scenario())


def test_a_run_of_new_frames_behind_the_count_means_the_node_restarted(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, _):
            await station.await_completion(await station.send_command("health.NOOP"))
            restart = node.master.frame_count
            node.master.frame_count = (restart - 100) % 256
            async with station.subscribe(StationAlert) as alerts:
                for missed in range(3):
                    node.tm(5, 2, EventReport(768, b"\x01r" + bytes([missed])).encode())
                    await node.flush()
                alert = await alerts.get()
            assert "restarted" in alert.text
            assert station.counters.frames_stale == 2
            await station.await_completion(await station.send_command("health.NOOP"))

    virtual(scenario())


def test_ping_parameters_and_housekeeping_interval(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, _):
            assert await station.ping() >= 0.0
            assert await station.get_parameters("health.PING_PERIOD_MS", "health.LABEL") == {
                "health.PING_PERIOD_MS": 1000,
                "health.LABEL": "sat",
            }
            await station.set_parameters({"health.LABEL": "penumbra-1"}, **{})
            assert await station.get_parameters("health.LABEL") == {"health.LABEL": "penumbra-1"}
            await station.set_housekeeping_interval("health", 2.5)
            assert node.hk_intervals == {3: 2500}

    virtual(scenario())


def test_telemetry_events_and_undecodable_packets_reach_subscribers(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, _):
            async with station.subscribe(TelemetrySample, EventMessage, DecodeFailure) as sub:
                node.housekeeping(
                    "health",
                    {
                        "COMMANDS_ACCEPTED": 1,
                        "COMMANDS_REJECTED": 0,
                        "CPU_PERCENT": 97.0,
                        "MODE": 1,
                    },
                )
                node.event("health.WATCHDOG_STOPPED")
                node.tm(5, 2, EventReport(0x777).encode())
                await node.flush()
                items = [await sub.get() for _ in range(6)]
            samples = [i for i in items if isinstance(i, TelemetrySample)]
            assert [s.channel for s in samples][2:] == ["health.CPU_PERCENT", "health.MODE"]
            assert samples[2].limit is LimitState.RED_HIGH and samples[3].value == "SAFE"
            assert isinstance(items[4], EventMessage) and items[4].name == "WATCHDOG_STOPPED"
            assert isinstance(items[5], DecodeFailure) and "0x0777" in items[5].reason
            assert station.latest["health.CPU_PERCENT"].value == 97.0

    virtual(scenario())


def test_commands_wait_while_the_link_is_down_and_spend_no_iv(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (node, station, flight):
            await station.await_completion(await station.send_command("health.NOOP"))
            flight.set_up(False)
            sending = asyncio.create_task(station.send_command("health.NOOP"))
            await asyncio.sleep(600)  # ten minutes out of contact: far beyond T1 x limit
            assert not sending.done()
            assert len(node.ivs_seen) == 1 and station.counters.cop1_alerts == 0
            flight.set_up(True)
            await station.await_completion(await sending)
            assert len(node.ivs_seen) == 2 and node.rejections == []

    virtual(scenario())


def test_the_uplink_is_held_before_its_ivs_would_leave_the_onboard_replay_window(tmp_path):
    async def scenario():
        async with contact(tmp_path, drop_uplink=lambda n: True, transmission_limit=30) as (
            node,
            station,
            _,
        ):
            async with station.subscribe(StationAlert) as alerts:
                outcomes = await asyncio.gather(
                    *(station.send_command("health.NOOP") for _ in range(8)),
                    return_exceptions=True,
                )
                assert all(isinstance(outcome, UplinkError) for outcome in outcomes)
                assert "may or may not have reached" in str(outcomes[0])
                texts = []
                while alerts.pending:
                    texts.append(str(alerts.get_nowait()))
            # 30 transmissions of K=8 frames would spend 240 IVs; the station stops at the
            # window of 64 less the counter's reserve of 8.
            assert node.frames_in == 56
            assert station.counters.transmissions_held > 0
            assert any("uplink held" in text for text in texts)

    virtual(scenario())


def test_the_archive_holds_everything_sent_and_received(tmp_path):
    path = tmp_path / "archive.sqlite"

    async def scenario():
        with Archive(path) as archive:
            async with contact(tmp_path / "state", archive=archive) as (node, station, _):
                request = await station.send_command("health.SET_PING_PERIOD", period_ms=250)
                await station.await_completion(request)
                node.housekeeping(
                    "health",
                    {
                        "COMMANDS_ACCEPTED": 1,
                        "COMMANDS_REJECTED": 0,
                        "CPU_PERCENT": 85.0,
                        "MODE": 2,
                    },
                )
                node.event("health.PING_LATE", component="mode", missed=4)
                async with station.subscribe(EventMessage) as events:
                    await node.flush()
                    await events.get()
                return request

    request = virtual(scenario())
    with Archive(path) as archive:
        commands = archive.commands()
        assert [(c["name"], c["arguments"]) for c in commands] == [
            ("health.SET_PING_PERIOD", {"period_ms": 250})
        ]
        up = archive.frames("up")
        assert len(up) == 1 and up[0].detail.startswith("AD IV ")
        assert all(f.status == "accepted" for f in archive.frames("down"))
        reports = archive.verifications(request)
        assert [(v["stage"], v["success"], v["command"]) for v in reports] == [
            ("acceptance", 1, "health.SET_PING_PERIOD"),
            ("completion", 1, "health.SET_PING_PERIOD"),
        ]
        cpu = archive.telemetry("health.CPU_PERCENT")
        assert [(t["value"], t["units"], t["limit_state"]) for t in cpu] == [
            (85.0, "%", "YELLOW_HIGH")
        ]
        events = archive.events("health.PING_LATE")
        assert events[0]["text"] == "mode missed 4 pings" and events[0]["severity"] == "LOW"
        assert events[0]["arguments"] == {"component": "mode", "missed": 4}
        kinds = {row["kind"] for row in archive.rows("packets")}
        assert {"TC", "Verification", "HousekeepingReport", "EventMessage"} <= kinds
        raw = list(archive.iter_frames("down"))
        assert all(len(frame) == icd.TM_FRAME_LENGTH for frame in raw)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path):
    key_file = tmp_path / "sa1.key"
    key_file.write_bytes(KEY)
    key_file.chmod(0o644)
    _, ground = MemoryLink.pair()
    with pytest.raises(KeyFileError, match="chmod 600"):
        GroundStation(ground, sample_dictionary(), key=key_file, state_dir=tmp_path)


def test_reports_carry_mission_time_from_the_cuc_stamp(tmp_path):
    async def scenario():
        async with contact(tmp_path) as (_, station, _link):
            request = await station.send_command("health.NOOP")
            reports = await station.await_completion(request)
            assert all(isinstance(r, Verification) for r in reports)
            assert all(isinstance(r.time, CucTime) and r.time.seconds > 2e9 for r in reports)

    virtual(scenario())


def test_cfdp_packets_are_archived_as_file_data_not_reported_as_undecodable(tmp_path):
    async def scenario():
        with Archive(tmp_path / "archive.sqlite") as archive:
            async with contact(tmp_path / "state", archive=archive) as (node, station, _):
                async with station.subscribe(DecodeFailure, EventMessage) as items:
                    metadata = next(
                        iter(FileSender(icd.SPACECRAFT_ID, 1, 0, b"x", 1, destination_name="r"))
                    )
                    pdu = SpacePacket(PacketType.TM, icd.Apid.CFDP, 0, metadata).encode()
                    node.realtime.send(pdu)
                    node.event("health.WATCHDOG_STOPPED")
                    await node.flush()
                    assert isinstance(await items.get(), EventMessage)  # nothing came before
                assert station.counters.packets_undecodable == 0
            return [row["kind"] for row in archive.rows("packets", "apid = ?", icd.Apid.CFDP)]

    assert virtual(scenario()) == ["CFDP"]
