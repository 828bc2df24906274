"""PUS routing and verification: every TC gets its reports, every failure its code."""

import asyncio
from pathlib import Path

import pytest

from flight.protocol.pus import (
    AckFlags,
    CollectionInterval,
    ConnectionTest,
    EventReport,
    HousekeepingParameterReport,
    HousekeepingStructureIds,
    ModifyCollectionIntervals,
    ParameterIds,
    PerformFunction,
    PusTc,
    PusTm,
    RequestId,
    VerificationFailure,
)
from flight.runtime import clock
from flight.runtime.component import (
    Arg,
    Component,
    Event,
    FailureCode,
    Mode,
    Parameter,
    Severity,
    Telemetry,
    command,
)
from flight.runtime.services import PusServices, TmPriority, TmSequence
from flight.runtime.store import Counter, Store, StoreError
from flight.runtime.types import Field, WireType, decode_parameter_values, encode_parameter_values

APID = 0x010


class Pump(Component):
    """A pump for the services to command."""

    SPEED_RPM = Telemetry("u16")
    STALLED = Event(Severity.HIGH, "pump stalled at {rpm} rpm", rpm=Arg("u16"))
    NOTE = Event(Severity.LOW, "{text}", text=Arg("string", max_length=16))
    MAX_RPM = Parameter("u16", default=3000, minimum=100, maximum=6000)
    LABEL = Parameter("string", default="main", max_length=8)

    @command(rpm=Arg("u16", maximum=6000))
    async def SET_SPEED(self, rpm: int) -> None:
        """Run at this speed."""
        self.telemetry.SPEED_RPM = rpm

    @command(allowed_modes={Mode.NOMINAL})
    async def PRIME(self) -> None:
        """NOMINAL only."""


class Sink:
    def __init__(self) -> None:
        self.packets: list[tuple[PusTm, TmPriority]] = []

    def enqueue(self, packet: bytes, priority: TmPriority) -> None:
        self.packets.append((PusTm.decode(packet), priority))

    def kinds(self) -> list[tuple[int, int]]:
        return [(tm.service, tm.subtype) for tm, _ in self.packets]


class Rig:
    """PusServices with one pump (id 2) and a recording sink, on the virtual-time loop."""

    def __init__(self, mode: Mode = Mode.NOMINAL) -> None:
        self.pump = Pump("pump")
        self.sink = Sink()
        self.mode = mode
        self.services = PusServices(
            apid=APID,
            components=[(2, self.pump)],
            sink=self.sink,
            mode=lambda: self.mode,
        )
        self.pump.attach(2, self.services)
        self.sequence = 0

    def tc(self, service: int, subtype: int, data: bytes = b"", **options: object) -> PusTc:
        tc = PusTc(APID, self.sequence, service, subtype, data, **options)  # type: ignore[arg-type]
        self.sequence += 1
        return tc

    def command(self, name: str, arguments: bytes = b"") -> PusTc:
        return self.tc(8, 1, PerformFunction(self.pump.opcode(name), arguments).encode())

    def handle(self, *tcs: PusTc, serve_s: float = 1.0) -> list[tuple[int, int]]:
        async def main() -> None:
            task = asyncio.create_task(self.pump.serve())
            for tc in tcs:
                self.services.handle(tc)
            await asyncio.sleep(serve_s)
            task.cancel()

        clock.run(main(), virtual=True)
        return self.sink.kinds()

    def failure(self) -> VerificationFailure:
        tm = next(tm for tm, _ in reversed(self.sink.packets) if tm.subtype in (2, 4, 8))
        return VerificationFailure.decode(tm.source_data)


def test_ping_gets_acceptance_start_report_and_completion() -> None:
    rig = Rig()
    assert rig.handle(rig.tc(17, 1)) == [(1, 1), (1, 3), (17, 2), (1, 7)]
    assert all(priority is not TmPriority.HOUSEKEEPING for _, priority in rig.sink.packets)


def test_ack_flags_none_leave_only_the_answer() -> None:
    rig = Rig()
    assert rig.handle(rig.tc(17, 1, ack_flags=AckFlags.NONE)) == [(17, 2)]


def test_failures_are_reported_whatever_the_ack_flags() -> None:
    rig = Rig()
    assert rig.handle(rig.tc(17, 9, ack_flags=AckFlags.NONE)) == [(1, 2)]
    assert rig.failure().failure_code == FailureCode.UNKNOWN_SERVICE
    assert rig.failure().failure_data == b"service 17,9 is not served"


def test_a_command_is_accepted_then_started_and_completed_by_its_component() -> None:
    rig = Rig()
    assert rig.handle(rig.command("SET_SPEED", (1200).to_bytes(2))) == [(1, 1), (1, 3), (1, 7)]
    assert rig.pump.telemetry.SPEED_RPM == 1200


@pytest.mark.parametrize(
    ("data", "code", "reason"),
    [
        (PerformFunction(0x0299).encode(), FailureCode.UNKNOWN_OPCODE, b"no command with opcode"),
        (PerformFunction(0x0799).encode(), FailureCode.UNKNOWN_OPCODE, b"0x0799"),
        (b"\x02", FailureCode.MALFORMED_PACKET, b"function id missing"),
        (
            PerformFunction(0x0202, (7000).to_bytes(2)).encode(),
            FailureCode.BAD_ARGUMENTS,
            b"rpm: 7000 is above the maximum 6000",
        ),
        (
            PerformFunction(0x0202, b"\x01").encode(),
            FailureCode.BAD_ARGUMENTS,
            b"rpm: data ends",
        ),
        (
            PerformFunction(0x0200, b"\x01").encode(),
            FailureCode.BAD_ARGUMENTS,
            b"1 octets too many for a command without arguments",
        ),
    ],
)
def test_a_refused_command_names_its_problem(data: bytes, code: int, reason: bytes) -> None:
    rig = Rig()
    assert rig.handle(rig.tc(8, 1, data)) == [(1, 2)]
    failure = rig.failure()
    assert failure.failure_code == code
    assert reason in failure.failure_data


def test_a_command_outside_its_modes_is_refused_at_acceptance_with_code_6() -> None:
    rig = Rig(Mode.SAFE)
    assert rig.handle(rig.command("PRIME")) == [(1, 2)]
    assert rig.failure().failure_code == FailureCode.REFUSED_IN_MODE
    assert rig.pump.telemetry.COMMANDS_REJECTED == 1


def test_a_full_queue_refuses_with_busy() -> None:
    rig = Rig()
    tcs = [rig.command("NOOP") for _ in range(Pump.QUEUE_DEPTH + 1)]
    for tc in tcs:
        rig.services.handle(tc)  # nothing serves the queue yet
    assert rig.sink.kinds().count((1, 1)) == Pump.QUEUE_DEPTH
    assert rig.failure().failure_code == FailureCode.BUSY


def test_refusals_from_below_are_acceptance_failures_with_reasons_cut_to_64_octets() -> None:
    rig = Rig()
    request = RequestId.from_tc(PusTc(APID, 5, 17, 1))
    rig.services.refuse(request, FailureCode.AUTHENTICATION_FAILED, "é" * 40)
    assert rig.sink.kinds() == [(1, 2)]
    failure = rig.failure()
    assert failure.request_id == request
    assert failure.failure_data == ("é" * 32).encode()  # 64 octets, whole characters


def test_connection_test_answers_for_the_node_apid_only() -> None:
    rig = Rig()
    assert rig.handle(rig.tc(17, 3, ConnectionTest(APID).encode()))[-2:] == [(17, 4), (1, 7)]
    rig.handle(rig.tc(17, 3, ConnectionTest(0x20).encode()))
    assert rig.failure().failure_code == FailureCode.BAD_ARGUMENTS


def _fields(rig: Rig) -> dict[int, Field]:
    return {rig.pump.parameter_id(p): Field(p.name, p.type) for p in Pump.declarations.parameters}


def test_parameters_are_reported_and_set_by_id() -> None:
    rig = Rig()
    fields = _fields(rig)
    max_id, label_id = sorted(fields)
    data = encode_parameter_values(
        [(max_id, fields[max_id], 4500), (label_id, fields[label_id], "aux")]
    )
    assert rig.handle(rig.tc(20, 3, data)) == [(1, 1), (1, 3), (1, 7)]
    assert rig.pump.parameters.MAX_RPM == 4500
    assert rig.pump.parameters.LABEL == "aux"
    rig.handle(rig.tc(20, 1, ParameterIds((label_id, max_id)).encode()))
    report = next(tm for tm, _ in rig.sink.packets if (tm.service, tm.subtype) == (20, 2))
    assert decode_parameter_values(report.source_data, fields.get) == [
        (label_id, "aux"),
        (max_id, 4500),
    ]


def test_a_bad_parameter_value_sets_nothing() -> None:
    rig = Rig()
    fields = _fields(rig)
    max_id, label_id = sorted(fields)
    wide = Field("x", WireType("u16"))
    data = encode_parameter_values([(label_id, fields[label_id], "aux"), (max_id, wide, 9000)])
    assert rig.handle(rig.tc(20, 3, data)) == [(1, 2)]
    assert rig.failure().failure_code == FailureCode.BAD_ARGUMENTS
    assert b"pump.MAX_RPM: 9000 is above the maximum 6000" in rig.failure().failure_data
    assert rig.pump.parameters.LABEL == "main"  # all or nothing


def test_unknown_parameters_fail_with_code_9() -> None:
    rig = Rig()
    rig.handle(rig.tc(20, 1, ParameterIds((0x0205,)).encode()))
    assert rig.failure().failure_code == FailureCode.UNKNOWN_PARAMETER
    rig.handle(rig.tc(20, 3, b"\x01\x09\x00\x00"))
    assert rig.failure().failure_code == FailureCode.UNKNOWN_PARAMETER


def test_housekeeping_runs_at_the_commanded_interval_and_can_be_disabled() -> None:
    rig = Rig()
    rig.pump.telemetry.SPEED_RPM = 77
    times: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        services = rig.services
        original = services.report_housekeeping

        def report(component_id: int) -> None:
            times.append(round(loop.time(), 3))
            original(component_id)

        services.report_housekeeping = report  # type: ignore[method-assign]
        for _ in range(31):  # the 10 Hz rate group, three seconds
            services.housekeeping_tick()
            await asyncio.sleep(0.1)
        services.handle(
            rig.tc(3, 31, ModifyCollectionIntervals((CollectionInterval(2, 500),)).encode())
        )
        for _ in range(20):
            services.housekeeping_tick()
            await asyncio.sleep(0.1)
        services.handle(rig.tc(3, 6, HousekeepingStructureIds((2,)).encode()))
        for _ in range(20):
            services.housekeeping_tick()
            await asyncio.sleep(0.1)

    clock.run(main(), virtual=True)
    assert times == [1.0, 2.0, 3.0, 3.6, 4.1, 4.6]  # disabled at 5.1, before its report
    tm, priority = next(p for p in rig.sink.packets if (p[0].service, p[0].subtype) == (3, 25))
    report = HousekeepingParameterReport.decode(tm.source_data)
    assert report.structure_id == 2
    assert report.parameter_values == bytes(8) + (77).to_bytes(2)
    assert priority is TmPriority.HOUSEKEEPING


def test_housekeeping_requests_for_unknown_components_or_short_intervals_fail() -> None:
    rig = Rig()
    rig.handle(rig.tc(3, 5, HousekeepingStructureIds((9,)).encode()))
    assert rig.failure().failure_code == FailureCode.BAD_ARGUMENTS
    rig.handle(rig.tc(3, 31, ModifyCollectionIntervals((CollectionInterval(2, 50),)).encode()))
    assert rig.failure().failure_data == b"interval 50 ms: at least 100 ms"


def test_events_go_down_as_5_severity_with_their_id_and_arguments() -> None:
    rig = Rig()
    rig.pump.emit(Pump.STALLED, rpm=12)
    rig.pump.emit(Pump.NOTE, text="hello")
    (stalled, high), (note, low) = rig.sink.packets
    assert (stalled.service, stalled.subtype, high) == (5, 4, TmPriority.CRITICAL)
    assert EventReport.decode(stalled.source_data) == EventReport(0x0200, b"\x00\x0c")
    assert (note.subtype, low) == (2, TmPriority.EVENT)
    assert EventReport.decode(note.source_data) == EventReport(0x0201, b"\x05hello")


def test_tm_sequence_counts_wrap_but_serials_never_repeat_across_restarts(tmp_path: Path) -> None:
    store = Store(tmp_path)
    first = TmSequence(Counter(store, "tm", reserve=4))
    taken = [first.take() for _ in range(6)]
    assert [serial for _, serial in taken] == list(range(6))
    second = TmSequence(Counter(Store(tmp_path), "tm", reserve=4))  # a restart
    count, serial = second.take()
    assert serial > 5 and count == serial & 0x3FFF


def test_tm_sequence_goes_on_in_memory_when_the_store_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path)
    sequence = TmSequence(Counter(store, "tm", reserve=2))
    sequence.take()

    def full(*args: object) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(store, "save", full)
    serials = [sequence.take()[1] for _ in range(5)]
    assert serials == sorted(set(serials)) and serials[0] == 1
    assert sequence.store_failures >= 1
