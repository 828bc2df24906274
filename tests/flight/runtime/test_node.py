"""A whole node in virtual time, operated over a MemoryLink by a ground made of flight.protocol."""

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from nodekit import KEY, MiniGround, is_event

from flight.link import MemoryLink
from flight.protocol import icd
from flight.protocol.pus import (
    AckFlags,
    CollectionInterval,
    HousekeepingStructureIds,
    ModifyCollectionIntervals,
    ParameterIds,
    PusTc,
    Service,
)
from flight.protocol.sdls import SecurityAssociation, TcSecurity
from flight.protocol.tc_frame import TcFrame
from flight.runtime import clock
from flight.runtime.component import FailureCode, Mode
from flight.runtime.config import NodeConfig
from flight.runtime.node import Node
from flight.runtime.types import (
    Field,
    WireType,
    decode_parameter_values,
    encode_parameter_values,
)

Scenario = Callable[[Node, MiniGround, MemoryLink], Awaitable[None]]


def run_virtual(main: Awaitable[None]) -> None:
    clock.run(main, virtual=True)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def operated_node(
    state_dir: Path, ground_memory: dict[str, int]
) -> AsyncIterator[tuple[Node, MiniGround, MemoryLink]]:
    """A node on `state_dir` and a ground that remembers its IV and TC count in `ground_memory`
    from one life of the node to the next, as a real ground persists them."""
    flight_end, ground_end = MemoryLink.pair()
    async with flight_end, ground_end:
        node = Node(NodeConfig().with_state_dir(state_dir), link=flight_end, key=KEY)
        ground = MiniGround(ground_end, node.dictionary(), **ground_memory)
        async with node, ground:
            try:
                yield node, ground, flight_end
            finally:
                ground_memory.update(next_iv=ground.next_iv, sequence=ground.sequence)


def operate(state_dir: Path, scenario: Scenario, memory: dict[str, int] | None = None) -> None:
    """Run `scenario` on a node on `state_dir`; lives given the same `memory` share a ground."""
    memory = {} if memory is None else memory

    async def main() -> None:
        async with operated_node(state_dir, memory) as (node, ground, link):
            await scenario(node, ground, link)

    run_virtual(main())


def test_ping_is_verified_and_answered_in_order(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        tc = await ground.send(ground.tc(Service.TEST, 1))
        await ground.wait_verified(tc)
        kinds = [
            (item.tm.service, item.tm.subtype)
            for item in ground.received
            if item.tm.service == 17 or ground.reports(tc)
        ]
        assert ground.reports(tc) == [(1, None), (3, None), (7, None)]
        assert (17, 2) in kinds

    operate(tmp_path, scenario)


def test_command_runs_and_is_accepted_started_completed(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        tc = await ground.command("health.SET_PING_PERIOD", period_ms=500)
        assert await ground.wait_verified(tc) == [(1, None), (3, None), (7, None)]
        assert node.health.parameters.PING_PERIOD_MS == 500
        assert node.health.telemetry.COMMANDS_ACCEPTED == 1

    operate(tmp_path, scenario)


def test_ack_flags_choose_the_success_reports(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        plain = ground.command_tc("mode.NOOP")
        quiet = PusTc(
            plain.apid,
            plain.sequence_count,
            plain.service,
            plain.subtype,
            plain.app_data,
            ack_flags=AckFlags.COMPLETION,
        )
        await ground.send(quiet)
        assert await ground.wait_verified(quiet) == [(7, None)]

    operate(tmp_path, scenario)


def test_unknown_opcode_fails_acceptance_with_code_2(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        from flight.protocol.pus import PerformFunction

        tc = await ground.send(ground.tc(8, 1, PerformFunction(0x03FF).encode()))
        assert await ground.wait_verified(tc) == [(2, FailureCode.UNKNOWN_OPCODE)]
        assert b"0x03ff" in ground.failure(tc).failure_data

    operate(tmp_path, scenario)


def test_bad_arguments_fail_with_code_3_naming_the_argument(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        from flight.protocol.pus import PerformFunction

        opcode = ground.opcode("health.SET_PING_PERIOD")
        tc = await ground.send(ground.tc(8, 1, PerformFunction(opcode, (50).to_bytes(4)).encode()))
        assert await ground.wait_verified(tc) == [(2, FailureCode.BAD_ARGUMENTS)]
        assert ground.failure(tc).failure_data == b"period_ms: 50 is below the minimum 100"
        assert node.health.parameters.PING_PERIOD_MS == 1000
        assert node.health.telemetry.COMMANDS_REJECTED == 1

    operate(tmp_path, scenario)


def _attacks(ground: MiniGround) -> tuple[bytes, bytes, PusTc]:
    """A frame forged under a guessed key, and a copy of the last frame the ground sent."""
    attacker = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, bytes(32))])
    forged_tc = ground.command_tc("mode.SET_MODE", mode="SAFE")
    frame = TcFrame(icd.SPACECRAFT_ID, icd.TcVirtualChannel.COMMAND, 200, forged_tc.encode())
    forged = attacker.apply(frame, iv=10_000).encode()
    return forged, ground.sent_frames[-1], forged_tc


def test_forged_and_replayed_frames_are_refused_with_codes_7_and_8(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        first = await ground.command("mode.NOOP")
        await ground.wait_verified(first)
        forged, replayed, forged_tc = _attacks(ground)
        mark = len(ground.received)
        await ground.link.send(forged)
        await ground.wait_for(is_event(ground, "uplink.AUTHENTICATION_FAILED"), start=mark)
        assert (2, FailureCode.AUTHENTICATION_FAILED) in ground.reports(forged_tc)
        await ground.link.send(replayed)
        await ground.wait_for(is_event(ground, "uplink.REPLAYED"), start=mark)
        replay_reports = ground.reports(first)
        assert replay_reports[-1] == (2, FailureCode.REPLAYED)
        assert node.mode.current is Mode.NOMINAL  # the forged SET_MODE SAFE never ran
        assert node.mode.telemetry.COMMANDS_ACCEPTED == 1  # the replayed NOOP did not run twice
        # The node keeps serving.
        after = await ground.send(ground.tc(Service.TEST, 1))
        assert await ground.wait_verified(after) == [(1, None), (3, None), (7, None)]

    operate(tmp_path, scenario)


def test_housekeeping_arrives_at_the_commanded_interval(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        health_id = ground.component("health")["id"]
        interval = ModifyCollectionIntervals((CollectionInterval(health_id, 2500),))
        tc = await ground.send(ground.tc(3, 31, interval.encode()))
        assert await ground.wait_verified(tc) == [(1, None), (3, None), (7, None)]
        mark = len(ground.received)
        times = []
        for _ in range(4):
            item = await ground.wait_for(ground.is_housekeeping_of("health"), start=mark)
            times.append(item.tm.time.seconds)
            mark = ground.received.index(item) + 1
        gaps = [round(b - a, 3) for a, b in itertools.pairwise(times)]
        assert gaps == [2.5, 2.5, 2.5]
        name, values = ground.housekeeping(item)
        assert name == "health" and values["COMMANDS_ACCEPTED"] == 0

        off = await ground.send(ground.tc(3, 6, HousekeepingStructureIds((health_id,)).encode()))
        await ground.wait_verified(off)
        mark = len(ground.received)
        await asyncio.sleep(10)
        assert not any(ground.is_housekeeping_of("health")(i) for i in ground.received[mark:])

    operate(tmp_path, scenario)


def _parameter_field(ground: MiniGround, qualified: str) -> tuple[int, Field]:
    component, name = qualified.split(".")
    spec = ground.component(component)["parameters"][name]
    return spec["id"], Field(qualified, WireType.from_json(spec))


async def _get_parameter(ground: MiniGround, qualified: str) -> object:
    parameter_id, field = _parameter_field(ground, qualified)
    mark = len(ground.received)
    tc = await ground.send(ground.tc(20, 1, ParameterIds((parameter_id,)).encode()))
    assert await ground.wait_verified(tc) == [(1, None), (3, None), (7, None)]
    item = await ground.wait_for(lambda r: (r.tm.service, r.tm.subtype) == (20, 2), start=mark)
    [(reported_id, value)] = decode_parameter_values(item.tm.source_data, {parameter_id: field}.get)
    assert reported_id == parameter_id
    return value


def test_parameters_set_get_and_saved_survive_a_restart(tmp_path: Path) -> None:
    async def first_life(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        parameter_id, field = _parameter_field(ground, "health.PING_PERIOD_MS")
        data = encode_parameter_values([(parameter_id, field, 2000)])
        tc = await ground.send(ground.tc(20, 3, data))
        assert await ground.wait_verified(tc) == [(1, None), (3, None), (7, None)]
        assert await _get_parameter(ground, "health.PING_PERIOD_MS") == 2000
        bad = encode_parameter_values([(parameter_id, Field("x", WireType("u32")), 5)])
        refused = await ground.send(ground.tc(20, 3, bad))
        assert await ground.wait_verified(refused) == [(2, FailureCode.BAD_ARGUMENTS)]
        unknown = await ground.send(ground.tc(20, 1, ParameterIds((0x0377,)).encode()))
        assert await ground.wait_verified(unknown) == [(2, FailureCode.UNKNOWN_PARAMETER)]
        save = await ground.command("params.SAVE")
        assert await ground.wait_verified(save) == [(1, None), (3, None), (7, None)]

    async def second_life(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        assert node.mode.current is Mode.NOMINAL
        assert await _get_parameter(ground, "health.PING_PERIOD_MS") == 2000

    ground_memory: dict[str, int] = {}
    operate(tmp_path, first_life, ground_memory)
    operate(tmp_path, second_life, ground_memory)


def test_a_corrupt_parameter_store_boots_into_safe_with_an_event(tmp_path: Path) -> None:
    ground_memory: dict[str, int] = {}
    operate(tmp_path, lambda node, ground, link: asyncio.sleep(0), ground_memory)
    (tmp_path / "parameters.json").write_text('{"format": 1, "values": {"health": ')

    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        assert node.mode.current is Mode.SAFE
        _, arguments = await _wait_event(ground, "params.STORE_INVALID")
        assert "parameters.json" in arguments["reason"]
        _, arguments = await _wait_event(ground, "mode.BOOTED_SAFE")
        assert "parameter store" in arguments["reason"]
        # SAFE still serves commands, and the defaults are in force.
        assert node.health.parameters.PING_PERIOD_MS == 1000
        tc = await ground.command("mode.SET_MODE", mode="NOMINAL")
        assert await ground.wait_verified(tc) == [(1, None), (3, None), (7, None)]

    operate(tmp_path, scenario, ground_memory)


async def _wait_event(ground: MiniGround, name: str) -> tuple[str, dict]:
    item = await ground.wait_for(is_event(ground, name))
    from flight.protocol.pus import EventReport

    return ground.decode_event(EventReport.decode(item.tm.source_data))


def test_store_and_forward_delivers_what_an_outage_held_in_order(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        link.set_up(False)
        await asyncio.sleep(20)  # 20 s without contact: housekeeping of 8 components piles up
        stored = len(node.downlink.store)
        assert stored >= 8 * 19
        first_held = node.services.tm_sent - stored
        mark = len(ground.received)
        link.set_up(True)
        await ground.wait_for(
            lambda r: r.tm.sequence_count == (first_held + stored - 1) & 0x3FFF, start=mark
        )
        playback = [
            r.tm.sequence_count
            for r in ground.received[mark:]
            if r.virtual_channel_id == icd.TmVirtualChannel.PLAYBACK
        ]
        assert playback == [(first_held + i) & 0x3FFF for i in range(stored)]
        assert node.downlink.store.dropped == {p: 0 for p in node.downlink.store.dropped}
        # And contact goes on in real time.
        tc = await ground.send(ground.tc(Service.TEST, 1))
        await ground.wait_verified(tc)
        realtime = [r for r in ground.received if r.virtual_channel_id == 0]
        assert realtime and realtime[-1].tm.service in (1, 3, 5, 17)

    operate(tmp_path, scenario)


def test_a_restart_keeps_v_r_and_refuses_a_replay_of_the_last_life(tmp_path: Path) -> None:
    recorded: dict[str, object] = {}

    async def first_life(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        for _ in range(3):
            await ground.wait_verified(await ground.command("mode.NOOP"))
        recorded["frame"] = ground.sent_frames[-1]
        recorded["v_r"] = node.uplink.farm.v_r
        recorded["serial"] = node.services.tm_sent

    async def second_life(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        assert node.uplink.farm.v_r == recorded["v_r"]
        mark = len(ground.received)
        await ground.link.send(recorded["frame"])
        await ground.wait_for(is_event(ground, "uplink.REPLAYED"), start=mark)
        assert node.mode.telemetry.COMMANDS_ACCEPTED == 0

    ground_memory: dict[str, int] = {}
    operate(tmp_path, first_life, ground_memory)
    operate(tmp_path, second_life, ground_memory)


def test_dictionary_of_a_node_lists_the_base_commands_of_every_component(tmp_path: Path) -> None:
    dictionary = Node(NodeConfig()).dictionary()
    for name, component in dictionary["components"].items():
        base = component["id"] << 8
        assert component["commands"]["NOOP"]["opcode"] == base, name
        assert component["commands"]["RESET_COUNTERS"]["opcode"] == base | 1, name
        assert list(component["telemetry"])[:2] == ["COMMANDS_ACCEPTED", "COMMANDS_REJECTED"]
    assert json.dumps(dictionary) == json.dumps(Node(NodeConfig()).dictionary())


def test_in_process_observers_see_events_and_tm_on_the_bus(tmp_path: Path) -> None:
    async def scenario(node: Node, ground: MiniGround, link: MemoryLink) -> None:
        from flight.runtime.bus import Overflow

        events = node.bus.subscribe("event", name="test", depth=64, overflow=Overflow.DROP_OLDEST)
        tm = node.bus.subscribe("tm", name="test", depth=256, overflow=Overflow.DROP_OLDEST)
        tc = await ground.command("mode.SET_MODE", mode="SAFE")
        await node.wait_for_mode(Mode.SAFE)
        record = await events.get()
        assert (record.component, record.name, record.text) == (
            "mode",
            "MODE_CHANGED",
            "mode NOMINAL -> SAFE: commanded",
        )
        await ground.wait_verified(tc)
        serials = []
        while tm.pending:
            serials.append(tm.get_nowait().serial)
        assert serials == sorted(set(serials)) and serials
        assert node.bus_monitor.telemetry.SUBSCRIPTIONS in (0, 2)  # updated at 1 Hz

    operate(tmp_path, scenario)
