"""Files both ways between a real GroundStation and a real Node, over a faulty MemoryLink.

Everything runs on the virtual-time loop: FOP-1's retransmissions, the ground's file timeout and
the link's delays take no wall-clock time, and a seed gives the same run every time.
"""

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flight.protocol import icd
from flight.protocol.spacepacket import PacketType, SpacePacket
from flight.runtime.clock import run
from flight.runtime.files import GROUND_ENTITY_ID
from flight.runtime.services import TmPriority
from ground.archive import Archive
from ground.dictionary import GroundError
from ground.station import DecodeFailure, FileDelivery, GroundStation
from hil.faults import FaultInjector, FaultModel
from hil.testapi.api import IntegrationApi
from hil.testapi.targets import MemoryTarget

VIRTUAL_LIMIT_S = 4 * 3600.0  # a scenario that hangs fails after hours of virtual time
KEY = bytes(range(32))
LOSSY_UPLINK = FaultModel(
    loss=0.1, duplicate=0.05, reorder=0.05, bit_error_rate=1e-5, delay_s=0.01, jitter_s=0.01
)
CLEAN = FaultModel(delay_s=0.01)


def virtual(scenario):
    async def bounded():
        async with asyncio.timeout(VIRTUAL_LIMIT_S):
            return await scenario

    return run(bounded(), virtual=True)


@dataclass
class Rig:
    target: MemoryTarget
    station: GroundStation
    api: IntegrationApi

    @property
    def onboard(self) -> Path:
        assert self.target.node is not None
        return self.target.node.files.directory


@contextlib.asynccontextmanager
async def contact(
    tmp_path: Path,
    *,
    uplink=None,
    downlink=None,
    archive: Archive | None = None,
    file_timeout_s: float = 20.0,
) -> AsyncIterator[Rig]:
    target = MemoryTarget(
        state_dir=tmp_path / "node", key=KEY, uplink_faults=uplink, downlink_faults=downlink
    )
    link, dictionary, key = await target.start()
    try:
        async with (
            GroundStation(
                link,
                dictionary,
                key=key,
                state_dir=tmp_path / "ground",
                archive=archive,
                file_timeout_s=file_timeout_s,
            ) as station,
            IntegrationApi(station, default_timeout_s=600.0) as api,
        ):
            yield Rig(target, station, api)
    finally:
        await target.stop()


class DropFileFrames:
    """A downlink fault hook that loses every `every`-th frame of TM VC FILE while `lossy`, and
    nothing else: reports and events all arrive, the file loses whole PDUs in its middle."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.lossy = True
        self.file_frames = 0
        self.dropped = 0

    def __call__(self, frame: bytes, now_s: float) -> list[tuple[float, bytes]]:
        virtual_channel = (frame[1] >> 1) & 0x07
        if virtual_channel == icd.TmVirtualChannel.FILE:
            self.file_frames += 1
            if self.lossy and self.file_frames % self.every == 0:
                self.dropped += 1
                return []
        return [(0.01, frame)]


def test_a_200_kB_file_crosses_a_lossy_uplink_byte_identical_and_once(tmp_path):
    data = random.Random(5).randbytes(200_000)
    source = tmp_path / "model.onnx"
    source.write_bytes(data)
    uplink = FaultInjector(LOSSY_UPLINK, random.Random(1))

    async def scenario():
        async with contact(
            tmp_path, uplink=uplink, downlink=FaultInjector(CLEAN, random.Random(2))
        ) as rig:
            start = rig.api.mark()
            transaction = await rig.station.put_file(source)
            event = await rig.api.await_event(
                "files.FILE_RECEIVED", args={"name": "model.onnx"}, start=start
            )
            assert event.args["size"] == len(data)
            assert transaction.source_entity_id == GROUND_ENTITY_ID
            assert (rig.onboard / "model.onnx").read_bytes() == data
            received = await rig.api.await_telemetry("files.FILES_RECEIVED", 1)
            await asyncio.sleep(30)  # retransmissions still in flight arrive, and are ignored
            assert rig.api.events("files.FILE_RECEIVED", start=start) == [event]
            assert received.value == 1
            assert rig.target.node.files.telemetry.FILES_FAILED == 0
            return rig.station.counters.file_pdus_sent

    pdus_sent = virtual(scenario())
    assert uplink.lost > 10 and uplink.duplicated > 0 and uplink.reordered > 0
    assert pdus_sent >= 200_000 // 964 + 2


def test_a_file_crosses_an_uplink_and_a_downlink_both_losing_frames(tmp_path):
    data = random.Random(6).randbytes(50_000)
    source = tmp_path / "inputs.bin"
    source.write_bytes(data)

    archive = Archive(tmp_path / "archive.sqlite")

    async def scenario():
        with archive:
            async with contact(
                tmp_path,
                uplink=FaultInjector(LOSSY_UPLINK, random.Random(3)),
                downlink=FaultInjector(FaultModel(loss=0.1, delay_s=0.01), random.Random(4)),
                archive=archive,
            ) as rig:
                transaction = await rig.station.put_file(source, "tiles.bin")
                await rig.api.await_telemetry("files.FILES_RECEIVED", 1)
                assert (rig.onboard / "tiles.bin").read_bytes() == data
                [row] = archive.transfers("up")
                assert (row["name"], row["success"], row["size"]) == ("tiles.bin", 1, len(data))
                assert row["transaction_sequence_number"] == (
                    transaction.transaction_sequence_number
                )

    virtual(scenario())


def test_a_downlinked_file_arrives_intact_over_a_clean_link(tmp_path):
    data = random.Random(7).randbytes(30_000)
    archive = Archive(tmp_path / "archive.sqlite")

    async def scenario():
        with archive:
            async with contact(tmp_path, archive=archive) as rig:
                (rig.onboard / "result.bin").write_bytes(data)
                start = rig.station.mark_files()
                await rig.api.send_and_assert_command("files.DOWNLINK_FILE", name="result.bin")
                delivery = await rig.station.await_file("result.bin", start=start, timeout_s=60)
                assert delivery.success, delivery
                assert delivery.path == rig.station.downloads_dir / "result.bin"
                assert delivery.path.read_bytes() == data
                sent = await rig.api.await_event("files.DOWNLINK_SENT", start=0)
                assert sent.args["name"] == "result.bin"
                number = delivery.transaction.transaction_sequence_number
                assert number == sent.args["transaction"]
                [row] = archive.transfers("down")
                assert row["name"] == "result.bin" and row["success"] == 1
                assert row["size"] == len(data) and row["path"] == str(delivery.path)
                assert row["source_entity_id"] == icd.SPACECRAFT_ID
                assert row["transaction_sequence_number"] == number
                assert archive.transfers("up") == []
                return rig.api.history

    history = virtual(scenario())
    assert [item.name for item in history if isinstance(item, FileDelivery)] == ["result.bin"]


def test_a_downlink_losing_frames_fails_with_missing_ranges_and_a_second_request_succeeds(
    tmp_path,
):
    data = random.Random(8).randbytes(60_000)
    hook = DropFileFrames(every=7)

    async def scenario():
        async with contact(tmp_path, downlink=hook, file_timeout_s=20.0) as rig:
            (rig.onboard / "result.bin").write_bytes(data)
            start = rig.station.mark_files()
            await rig.api.send_and_assert_command("files.DOWNLINK_FILE", name="result.bin")
            failed = await rig.station.await_file("result.bin", start=start, timeout_s=120)
            assert not failed.success
            assert failed.missing and "missing octets" in failed.reason
            assert all(0 <= low < high <= len(data) for low, high in failed.missing)
            assert not (rig.station.downloads_dir / "result.bin").exists()
            assert "DOWNLINK_FILE" in str(failed)
            hook.lossy = False
            start = rig.station.mark_files()
            await rig.api.send_and_assert_command("files.DOWNLINK_FILE", name="result.bin")
            delivered = await rig.station.await_file("result.bin", start=start, timeout_s=120)
            assert delivered.success, delivered
            assert delivered.path.read_bytes() == data
            assert delivered.transaction != failed.transaction
            assert rig.station.counters.files_failed == 1
            assert rig.station.counters.files_received == 1

    virtual(scenario())
    assert hook.dropped > 0


def test_put_file_refuses_bad_names_and_missing_files_before_sending(tmp_path):
    source = tmp_path / "ok.bin"
    source.write_bytes(b"x")

    async def scenario():
        async with contact(tmp_path) as rig:
            for name, words in (
                ("../x", "'/'"),
                ("a/b", "'/'"),
                ("", "empty"),
                (".hidden", "'.'"),
                ("..", "not allowed"),
            ):
                with pytest.raises(GroundError, match=words):
                    await rig.station.put_file(source, name)
            with pytest.raises(GroundError, match="cannot send"):
                await rig.station.put_file(tmp_path / "absent.bin")
            return rig.station.counters.file_pdus_sent

    assert virtual(scenario()) == 0


def test_a_corrupt_pdu_from_the_node_is_reported_and_counted(tmp_path):
    async def scenario():
        async with contact(tmp_path) as rig:
            async with rig.station.subscribe(DecodeFailure) as failures:
                packet = SpacePacket(PacketType.TM, icd.Apid.CFDP, 0, b"\x01\x02\x03").encode()
                rig.target.node.downlink.enqueue(packet, TmPriority.EVENT)
                async with asyncio.timeout(60):
                    failure = await failures.get()
            assert failure.reason.startswith("CFDP PDU refused: 3 octets")
            assert rig.station.counters.file_pdus_refused == 1
            assert rig.station.counters.packets_undecodable == 0

    virtual(scenario())
