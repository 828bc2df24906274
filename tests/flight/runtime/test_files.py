"""The file service: names, PDUs in (good, corrupt, incomplete), the downlink queue, and commands
on a real node operated over a MemoryLink by the protocol-only ground of nodekit."""

import asyncio
import random
from pathlib import Path

import pytest
from nodekit import KEY, MiniGround

from flight.link import MemoryLink
from flight.protocol import icd
from flight.protocol.cfdp import ConditionCode, FileReceiver, FileSender, TransferResult
from flight.protocol.pus import PerformFunction, PusTc, Service
from flight.protocol.spacepacket import PacketType, SpacePacket
from flight.runtime import clock
from flight.runtime.component import Component, Event, FailureCode, Mode
from flight.runtime.config import NodeConfig
from flight.runtime.files import (
    GROUND_ENTITY_ID,
    LIST_LIMIT,
    FileError,
    FileQueueFull,
    FileTransfer,
    check_name,
)
from flight.runtime.node import Node
from flight.runtime.types import Field, encode_fields

NODE = icd.SPACECRAFT_ID
FRAME_OCTETS = 4 * 1103  # what the downlink takes at a time: four frames' data fields


class Recorder:
    """A component context that keeps the events raised."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def emit(self, component: Component, event: Event, arguments: bytes, text: str) -> None:
        self.events.append((event.name, text))

    def mode(self) -> Mode:
        return Mode.NOMINAL

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


def service(tmp_path: Path, **settings) -> tuple[FileTransfer, Recorder]:
    files = FileTransfer(state_dir=tmp_path, **settings)
    recorder = Recorder()
    files.attach(9, recorder)
    return files, recorder


def upload(files: FileTransfer, data: bytes, name: str, sequence: int = 1) -> None:
    for pdu in FileSender(GROUND_ENTITY_ID, NODE, sequence, data, 500, destination_name=name):
        files.receive_pdu(pdu)


def drain(files: FileTransfer) -> list[bytes]:
    """Every file PDU the service has for the downlink, as the downlink takes them."""
    pdus = []
    while files.packets_waiting():
        packets = files.take_packets(FRAME_OCTETS)
        assert packets, "packets waiting, none given"
        files.packets_sent(packets)
        pdus.extend(SpacePacket.decode(packet).data for packet in packets)
    return pdus


def receive(directory: Path, pdus: list[bytes]) -> list[TransferResult]:
    directory.mkdir(exist_ok=True)
    receiver = FileReceiver(directory, entity_id=GROUND_ENTITY_ID)
    return [result for pdu in pdus if (result := receiver.receive(pdu)) is not None]


# -- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "must not be empty"),
        ("..", "not allowed"),
        (".", "not allowed"),
        ("../x", "contains '/'"),
        ("a/b", "contains '/'"),
        ("/etc/passwd", "contains '/'"),
        ("a\\b", "contains"),
        ("nul\x00", "NUL"),
        (".cfdp-1-2.part", "starts with '.'"),
        ("é" * 128, "at most 255"),
    ],
)
def test_unsafe_names_are_refused_with_words(tmp_path: Path, name: str, words: str) -> None:
    files, _ = service(tmp_path)
    with pytest.raises(ValueError, match=words):
        files.path(name)
    with pytest.raises(FileError, match=words):
        files.downlink(tmp_path, name)


def test_plain_names_live_in_the_files_directory(tmp_path: Path) -> None:
    files, _ = service(tmp_path)
    assert files.directory == tmp_path / "files"
    assert files.path("model v2.onnx") == tmp_path / "files" / "model v2.onnx"
    assert check_name("a" * 255) == "a" * 255


# -- up -------------------------------------------------------------------------------------------


def test_a_file_arrives_once_and_listeners_hear_of_it(tmp_path: Path) -> None:
    files, recorder = service(tmp_path)
    heard: list[tuple[Path, TransferResult]] = []
    files.listeners.append(lambda path, result: heard.append((path, result)))
    data = random.Random(1).randbytes(3000)
    upload(files, data, "model.onnx")
    upload(files, data, "model.onnx")  # the same transaction again: duplicates, ignored
    assert (files.directory / "model.onnx").read_bytes() == data
    assert recorder.names() == ["FILE_RECEIVED"]
    assert "model.onnx received: 3000 octets" in recorder.events[0][1]
    [(path, result)] = heard
    assert path == files.directory / "model.onnx" and result.success
    files.update_telemetry()
    assert files.telemetry.FILES_RECEIVED == 1
    assert files.telemetry.OCTETS_RECEIVED == 3000
    assert files.telemetry.DUPLICATE_PDUS == 8  # Metadata, 6 segments and EOF, once more each
    files.count_files()
    assert files.telemetry.FILES_STORED == 1


def test_a_corrupt_pdu_is_counted_and_announced_and_the_next_file_still_arrives(
    tmp_path: Path,
) -> None:
    files, recorder = service(tmp_path)
    for bad in (b"", b"\x20", bytes(40), b"\xff" * 12):
        files.receive_pdu(bad)
    assert recorder.names() == ["PDU_REFUSED"] * 4
    upload(files, b"after the garbage", "ok.txt")
    assert (files.directory / "ok.txt").read_bytes() == b"after the garbage"
    files.update_telemetry()
    assert files.telemetry.PDUS_REFUSED == 4
    assert files.telemetry.FILES_RECEIVED == 1


def test_a_pdu_for_another_entity_is_refused(tmp_path: Path) -> None:
    files, recorder = service(tmp_path)
    for pdu in FileSender(GROUND_ENTITY_ID, NODE + 1, 1, b"x", 10, destination_name="x"):
        files.receive_pdu(pdu)
    assert recorder.names() == ["PDU_REFUSED"] * 3
    assert "entity" in recorder.events[0][1]


def test_an_incomplete_upload_fails_after_the_inactivity_timeout_naming_the_gap(
    tmp_path: Path,
) -> None:
    files, recorder = service(tmp_path)
    heard: list[TransferResult] = []
    files.listeners.append(lambda path, result: heard.append(result))
    pdus = list(FileSender(GROUND_ENTITY_ID, NODE, 4, bytes(2000), 500, destination_name="in.bin"))

    async def scenario() -> None:
        for pdu in pdus[:2] + pdus[3:]:  # the second segment, octets 500..1000, is lost
            files.receive_pdu(pdu)
        files.tick()
        assert recorder.names() == []
        await asyncio.sleep(files.parameters.INACTIVITY_TIMEOUT_S + 1)
        files.tick()

    clock.run(scenario(), virtual=True)
    assert recorder.names() == ["FILE_FAILED"]
    assert "in.bin not received" in recorder.events[0][1]
    assert "(500, 1000)" in recorder.events[0][1]
    assert [result.condition_code for result in heard] == [ConditionCode.INACTIVITY_DETECTED]
    assert not (files.directory / "in.bin").exists()


# -- down -----------------------------------------------------------------------------------------


def test_a_queued_file_goes_down_whole_with_its_metadata_twice(tmp_path: Path) -> None:
    files, recorder = service(tmp_path)
    data = random.Random(2).randbytes(10_000)
    (tmp_path / "result.bin").write_bytes(data)
    transaction = files.downlink(tmp_path / "result.bin", "result.bin")
    pdus = drain(files)
    assert len(pdus) == 3 + -(-10_000 // 1081)  # each packet fills one TM frame's data field
    [result] = receive(tmp_path / "ground", pdus)
    assert result.success and result.path is not None and result.path.read_bytes() == data
    assert result.transaction_id.source_entity_id == NODE
    assert result.transaction_id.transaction_sequence_number == transaction
    assert recorder.names() == ["DOWNLINK_QUEUED", "DOWNLINK_SENT"]


def test_packets_returned_by_the_downlink_go_first_next_time(tmp_path: Path) -> None:
    files, recorder = service(tmp_path)
    (tmp_path / "a.bin").write_bytes(bytes(5000))
    files.downlink(tmp_path / "a.bin", "a.bin")
    first = files.take_packets(FRAME_OCTETS)
    files.packets_sent(first[:1])
    files.return_packets(first[1:])
    again = files.take_packets(FRAME_OCTETS)
    assert again[: len(first) - 1] == first[1:]
    files.packets_sent(again)
    rest = drain(files)
    results = receive(
        tmp_path / "ground", [SpacePacket.decode(p).data for p in first[:1] + again] + rest
    )
    assert [result.success for result in results] == [True]
    assert recorder.names().count("DOWNLINK_SENT") == 1


def test_a_full_queue_refuses_with_words_and_makes_room_as_files_go(tmp_path: Path) -> None:
    files, _ = service(tmp_path, max_pending_pdus=20)
    (tmp_path / "big.bin").write_bytes(bytes(15 * 1081))  # 18 PDUs
    files.downlink(tmp_path / "big.bin", "big.bin")
    with pytest.raises(FileQueueFull, match=r"file queue full: big\.bin needs 18 PDUs, 2 of 20"):
        files.downlink(tmp_path / "big.bin", "big.bin")
    drain(files)
    files.downlink(tmp_path / "big.bin", "big.bin")
    files.update_telemetry()
    assert files.telemetry.DOWNLINK_PDUS_PENDING == 18
    assert files.telemetry.DOWNLINKS_REFUSED == 1


def test_a_file_gone_before_it_is_sent_ends_with_an_error_eof(tmp_path: Path) -> None:
    files, recorder = service(tmp_path)
    (tmp_path / "gone.bin").write_bytes(bytes(3000))
    files.downlink(tmp_path / "gone.bin", "gone.bin")
    (tmp_path / "gone.bin").unlink()
    [result] = receive(tmp_path / "ground", drain(files))
    assert result.condition_code == ConditionCode.FILESTORE_REJECTION
    assert recorder.names() == ["DOWNLINK_QUEUED", "DOWNLINK_FAILED"]
    assert not files.packets_waiting()


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    files, _ = service(tmp_path)
    with pytest.raises(FileError, match="not a regular file"):
        files.downlink(tmp_path / "absent.bin", "absent.bin")


def test_transaction_numbers_never_repeat_across_node_restarts(tmp_path: Path) -> None:
    config = NodeConfig().with_state_dir(tmp_path)
    numbers: list[int] = []

    async def life() -> None:
        async with Node(config) as node:
            (node.files.directory / "r.bin").write_bytes(b"result")
            numbers.append(node.files.downlink(node.files.directory / "r.bin", "r.bin"))
            numbers.append(node.files.downlink(node.files.directory / "r.bin", "r.bin"))

    for _ in range(3):
        clock.run(life(), virtual=True)
    assert len(set(numbers)) == len(numbers) == 6
    assert numbers == sorted(numbers)


# -- on a node, through the uplink ------------------------------------------------------------


def operate(tmp_path: Path, scenario) -> None:
    async def main() -> None:
        flight_end, ground_end = MemoryLink.pair()
        async with flight_end, ground_end:
            node = Node(NodeConfig().with_state_dir(tmp_path), link=flight_end, key=KEY)
            async with node, MiniGround(ground_end, node.dictionary()) as ground:
                await scenario(node, ground)

    clock.run(main(), virtual=True)


async def command(ground: MiniGround, qualified: str, arguments: dict[str, object]) -> PusTc:
    """`ground.command` for commands with an argument called `name` (which it takes itself)."""
    component, name = qualified.split(".")
    spec = ground.component(component)["commands"][name]
    fields = [Field.from_json(argument) for argument in spec["arguments"]]
    data = PerformFunction(spec["opcode"], encode_fields(fields, arguments)).encode()
    return await ground.send(ground.tc(Service.FUNCTION_MANAGEMENT, 1, data))


def failure_text(ground: MiniGround, tc: PusTc) -> tuple[int, str]:
    failure = ground.failure(tc)
    return failure.failure_code, failure.failure_data.decode()


def test_pdus_arrive_through_the_uplink_and_a_corrupt_one_does_not_stop_it(tmp_path: Path) -> None:
    data = random.Random(3).randbytes(4000)

    async def scenario(node: Node, ground: MiniGround) -> None:
        await ground.driver.transfer(SpacePacket(PacketType.TC, icd.Apid.CFDP, 0, b"\x20").encode())
        sender = FileSender(GROUND_ENTITY_ID, NODE, 9, data, 900, destination_name="in.bin")
        for count, pdu in enumerate(sender, start=1):
            await ground.driver.transfer(
                SpacePacket(PacketType.TC, icd.Apid.CFDP, count, pdu).encode()
            )
        await ground.wait_for(lambda item: bool(ground.events("files.FILE_RECEIVED")))
        assert [name for name, _ in ground.events() if name.startswith("files.")] == [
            "files.PDU_REFUSED",
            "files.FILE_RECEIVED",
        ]
        assert ground.events("files.FILE_RECEIVED")[0][1] == {"name": "in.bin", "size": 4000}
        assert (node.files.directory / "in.bin").read_bytes() == data
        tc = await ground.command("mode.NOOP")  # and the node still serves commands
        assert [subtype for subtype, _ in await ground.wait_verified(tc)] == [1, 3, 7]

    operate(tmp_path, scenario)


def test_file_commands_refuse_bad_names_and_missing_files_with_words(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround) -> None:
        refused = {}
        for qualified, name in (
            ("files.DOWNLINK_FILE", "../x"),
            ("files.DOWNLINK_FILE", "a/b"),
            ("files.DELETE_FILE", ""),
            ("files.DELETE_FILE", "absent.bin"),
        ):
            tc = await command(ground, qualified, {"name": name})
            await ground.wait_verified(tc)
            refused[(qualified, name)] = failure_text(ground, tc)
        assert all(code == FailureCode.EXECUTION_FAILED for code, _ in refused.values())
        assert "contains '/'" in refused[("files.DOWNLINK_FILE", "../x")][1]
        assert "contains '/'" in refused[("files.DOWNLINK_FILE", "a/b")][1]
        assert "must not be empty" in refused[("files.DELETE_FILE", "")][1]
        assert "no file absent.bin on board" in refused[("files.DELETE_FILE", "absent.bin")][1]

    operate(tmp_path, scenario)


def test_list_files_reports_each_file_and_delete_removes_one(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround) -> None:
        directory = node.files.directory
        for index in range(LIST_LIMIT + 3):
            (directory / f"f{index:03}.bin").write_bytes(bytes(index))
        (directory / ".cfdp-1-1.part").write_bytes(b"partial")  # not a file of the service
        tc = await ground.command("files.LIST_FILES")
        await ground.wait_verified(tc)
        listed = ground.events("files.FILE_LISTED")
        assert [args["name"] for _, args in listed] == [f"f{i:03}.bin" for i in range(LIST_LIMIT)]
        assert listed[5][1]["size"] == 5
        assert ground.events("files.FILES_LISTED")[-1][1] == {
            "listed": LIST_LIMIT,
            "total": LIST_LIMIT + 3,
        }
        tc = await command(ground, "files.DELETE_FILE", {"name": "f001.bin"})
        assert [subtype for subtype, _ in await ground.wait_verified(tc)] == [1, 3, 7]
        assert not (directory / "f001.bin").exists()
        assert ground.events("files.FILE_DELETED")[-1][1] == {"name": "f001.bin"}

    operate(tmp_path, scenario)


def test_downlink_file_refuses_with_queue_full_in_words(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround) -> None:
        node.files.max_pending_pdus = 10
        node.files.directory.joinpath("big.bin").write_bytes(bytes(20 * 1081))
        tc = await command(ground, "files.DOWNLINK_FILE", {"name": "big.bin"})
        await ground.wait_verified(tc)
        code, text = failure_text(ground, tc)
        assert code == FailureCode.EXECUTION_FAILED and text.startswith("file queue full")
        assert ground.reports(tc)[-1] == (8, FailureCode.EXECUTION_FAILED)

    operate(tmp_path, scenario)


def test_the_service_is_component_9_named_files(tmp_path: Path) -> None:
    node = Node(NodeConfig().with_state_dir(tmp_path))
    assert node.files.component_id == 9 and node.files.name == "files"
    commands = node.dictionary()["components"]["files"]["commands"]
    assert {"LIST_FILES", "DELETE_FILE", "DOWNLINK_FILE"} <= set(commands)
    assert not (tmp_path / "files").exists()  # made when the node starts, not when it is built
