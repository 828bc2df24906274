"""PUS services of a node: TC routing, verification, housekeeping, events, ping, parameters.

Every TC gets its verification reports: success reports as its acknowledgement flags ask, failure
reports always (70-41C 6.1.3), with the failure codes of `component.FailureCode`. Nothing a TC
carries can raise out of here: each problem becomes a failure report.

Mapping (the dictionary gives names to the numbers):
- 8,1 perform function: function id = opcode (component id << 8 | command index), arguments in
  declared order. Accepted (1,1) once the opcode, the arguments and the mode check out and the
  component's queue has room; started (1,3) and completed (1,7) by the component's task.
- 3,25 housekeeping: structure id = component id, every telemetry channel in declared order,
  periodic (enabled by default); 3,31 sets a component's interval (ms), 3,5/3,6 enable/disable.
- 5,1..5,4 events, the subtype is the severity; event id = component id << 8 | index.
- 17,1 -> 17,2; 17,3 -> 17,4 for the node's APID.
- 20,1 -> 20,2 and 20,3, parameter id = component id << 8 | index.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Protocol

from flight.protocol.cuc import CucTime
from flight.protocol.errors import FieldError, ProtocolError
from flight.protocol.pus import (
    AckFlags,
    ConnectionTest,
    EventReport,
    FunctionSubtype,
    HousekeepingParameterReport,
    HousekeepingStructureIds,
    HousekeepingSubtype,
    ModifyCollectionIntervals,
    ParameterIds,
    ParameterSubtype,
    PerformFunction,
    PusTc,
    PusTm,
    RequestId,
    Service,
    TestSubtype,
    VerificationFailure,
    VerificationSubtype,
    VerificationSuccess,
)
from flight.protocol.spacepacket import MAX_SEQUENCE_COUNT
from flight.runtime.component import (
    CommandDefinition,
    CommandRequest,
    Component,
    Event,
    FailureCode,
    Mode,
    Parameter,
    Severity,
)
from flight.runtime.store import Counter, StoreError
from flight.runtime.types import (
    Field,
    WireValueError,
    decode_fields,
    decode_parameter_values,
    encode_parameter_values,
)

FAILURE_DATA_OCTETS = 64  # the reason text in a failure report, UTF-8, cut to this
HOUSEKEEPING_TICK_S = 0.1  # the services' housekeeping clock runs in the 10 Hz rate group
MIN_COLLECTION_INTERVAL_MS = 100


class TmPriority(IntEnum):
    """What the TM store keeps longest and drops last: lower is more important."""

    CRITICAL = 0  # verification reports and HIGH events
    EVENT = 1  # other events, ping and parameter reports
    HOUSEKEEPING = 2


class TmSink(Protocol):
    """Where finished TM packets go (the downlink's store)."""

    def enqueue(self, packet: bytes, priority: TmPriority) -> None: ...


@dataclass(frozen=True, slots=True)
class TmRecord:
    """A TM packet as the node produced it, published on the bus topic "tm".

    `serial` is the node's persisted TM count (the sequence count before its 14-bit wrap): it
    never repeats, not even across restarts.
    """

    packet: bytes
    service: int
    subtype: int
    sequence_count: int
    serial: int
    priority: TmPriority


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as raised, published on the bus topic "event" (in-process observers)."""

    component: str
    name: str
    event_id: int
    severity: Severity
    text: str
    time_s: float  # the loop's clock


def _reason(text: str) -> bytes:
    octets = text.encode("utf-8", "replace")
    if len(octets) <= FAILURE_DATA_OCTETS:
        return octets
    return octets[:FAILURE_DATA_OCTETS].decode("utf-8", "ignore").encode("utf-8")


class Verification:
    """The verification reports of one TC, honouring its acknowledgement flags."""

    __slots__ = ("_flags", "_request", "_services")

    def __init__(self, services: "PusServices", request: RequestId, flags: AckFlags) -> None:
        self._services = services
        self._request = request
        self._flags = flags

    @property
    def request(self) -> RequestId:
        return self._request

    def _success(self, flag: AckFlags, subtype: VerificationSubtype) -> None:
        if self._flags & flag:
            self._services.send(
                Service.REQUEST_VERIFICATION,
                subtype,
                VerificationSuccess(self._request).encode(),
                TmPriority.CRITICAL,
            )

    def _failure(self, subtype: VerificationSubtype, code: FailureCode, reason: str) -> None:
        self._services.count_failure(code)
        report = VerificationFailure(self._request, int(code), _reason(reason))
        self._services.send(
            Service.REQUEST_VERIFICATION, subtype, report.encode(), TmPriority.CRITICAL
        )

    def acceptance_success(self) -> None:
        self._success(AckFlags.ACCEPTANCE, VerificationSubtype.ACCEPTANCE_SUCCESS)

    def acceptance_failure(self, code: FailureCode, reason: str) -> None:
        self._failure(VerificationSubtype.ACCEPTANCE_FAILURE, code, reason)

    def start_success(self) -> None:
        self._success(AckFlags.START, VerificationSubtype.START_SUCCESS)

    def start_failure(self, code: FailureCode, reason: str) -> None:
        self._failure(VerificationSubtype.START_FAILURE, code, reason)

    def completion_success(self) -> None:
        self._services.tc_completed += 1
        self._success(AckFlags.COMPLETION, VerificationSubtype.COMPLETION_SUCCESS)

    def completion_failure(self, code: FailureCode, reason: str) -> None:
        self._failure(VerificationSubtype.COMPLETION_FAILURE, code, reason)


class _Refused(Exception):
    """A TC refused at acceptance: the failure code and the reason for the report."""

    def __init__(self, code: FailureCode, reason: str, component: Component | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.component = component


@dataclass(slots=True)
class _Housekeeping:
    enabled: bool
    interval_s: float
    due_s: float


class PusServices:
    """Routes TCs to the services and components, and produces every TM packet of the node.

    `components` are the node's components with their ids; `sink` takes finished packets; `mode`
    gives the current mode; `next_sequence` the next TM sequence count and its never-repeating
    serial (a `TmSequence`); `time` the CUC stamp (a `MissionClock`).
    `publish(topic, message)` reaches in-process
    observers (the software bus), if given.
    """

    def __init__(
        self,
        *,
        apid: int,
        components: Sequence[tuple[int, Component]],
        sink: TmSink,
        mode: Callable[[], Mode],
        next_sequence: Callable[[], tuple[int, int]] | None = None,
        time: Callable[[], CucTime] | None = None,
        housekeeping_interval_ms: int = 1000,
        publish: Callable[[str, object], int] | None = None,
    ) -> None:
        self.apid = apid
        self._by_id: dict[int, Component] = {}
        for component_id, component in components:
            if component_id in self._by_id:
                raise ValueError(f"two components with id {component_id}")
            self._by_id[component_id] = component
        self._sink = sink
        self._volatile_sequence = 0
        # Until the node has its store and clock: counts from 0 in memory, time at the epoch.
        self.next_sequence = next_sequence or self._memory_sequence
        self.time = time or (lambda: CucTime(0, 0))
        self._mode = mode
        self._publish = publish
        self._log = logging.getLogger("flight.runtime.services")
        if housekeeping_interval_ms < MIN_COLLECTION_INTERVAL_MS:
            raise ValueError(
                f"housekeeping interval {housekeeping_interval_ms} ms below the "
                f"{MIN_COLLECTION_INTERVAL_MS} ms tick"
            )
        self._housekeeping = {
            cid: _Housekeeping(True, housekeeping_interval_ms / 1000, 0.0) for cid in self._by_id
        }
        self._housekeeping_started = False
        self.tc_received = 0
        self.tc_accepted = 0
        self.tc_completed = 0
        self.failures: dict[FailureCode, int] = dict.fromkeys(FailureCode, 0)
        self.tm_sent = 0

    def _memory_sequence(self) -> tuple[int, int]:
        serial = self._volatile_sequence
        self._volatile_sequence += 1
        return serial & MAX_SEQUENCE_COUNT, serial

    # -- ComponentContext ------------------------------------------------------------------------

    def emit(self, component: Component, event: Event, arguments: bytes, text: str) -> None:
        event_id = component.event_id(event)
        level = {
            Severity.INFORMATIVE: logging.INFO,
            Severity.LOW: logging.INFO,
            Severity.MEDIUM: logging.WARNING,
            Severity.HIGH: logging.ERROR,
        }[event.severity]
        self._log.log(
            level, "event %s.%s (%s): %s", component.name, event.name, event.severity.name, text
        )
        priority = TmPriority.CRITICAL if event.severity is Severity.HIGH else TmPriority.EVENT
        self.send(
            Service.EVENT_REPORTING,
            int(event.severity),
            EventReport(event_id, arguments).encode(),
            priority,
        )
        if self._publish is not None:
            record = EventRecord(
                component.name,
                event.name,
                event_id,
                event.severity,
                text,
                asyncio.get_running_loop().time() if _loop_running() else 0.0,
            )
            self._publish("event", record)

    def mode(self) -> Mode:
        return self._mode()

    # -- TM --------------------------------------------------------------------------------------

    def send(self, service: int, subtype: int, data: bytes, priority: TmPriority) -> None:
        """Stamp, number and hand over one TM packet; never raises for the caller."""
        try:
            sequence, serial = self.next_sequence()
            packet = PusTm(self.apid, sequence, service, subtype, data, time=self.time()).encode()
        except Exception:  # a TM that cannot be made must not break the command that made it
            self._log.exception("cannot make TM %d,%d", service, subtype)
            return
        self.tm_sent += 1
        self._sink.enqueue(packet, priority)
        if self._publish is not None:
            self._publish("tm", TmRecord(packet, service, subtype, sequence, serial, priority))

    # -- TC --------------------------------------------------------------------------------------

    def count_failure(self, code: FailureCode) -> None:
        self.failures[code] += 1

    def refuse(self, request: RequestId, code: FailureCode, reason: str) -> None:
        """Acceptance failure (1,2) for a TC refused below the services (frame or packet checks)."""
        self.tc_received += 1
        Verification(self, request, AckFlags.ALL).acceptance_failure(code, reason)

    def handle(self, tc: PusTc) -> None:
        """Route one TC to its service; send its verification reports."""
        self.tc_received += 1
        verification = Verification(self, RequestId.from_tc(tc), tc.ack_flags)
        try:
            handler = self._ROUTES.get((tc.service, tc.subtype))
            if handler is None:
                raise _Refused(
                    FailureCode.UNKNOWN_SERVICE,
                    f"service {tc.service},{tc.subtype} is not served",
                )
            handler(self, tc, verification)
        except _Refused as refused:
            if refused.component is not None:
                refused.component.count_rejected()
            verification.acceptance_failure(refused.code, refused.reason)
        except Exception as error:  # a bug: report it, keep serving
            self._log.exception("TC %d,%d", tc.service, tc.subtype)
            verification.acceptance_failure(
                FailureCode.EXECUTION_FAILED, f"internal error {type(error).__name__}: {error}"
            )

    def _accept(self, verification: Verification) -> None:
        self.tc_accepted += 1
        verification.acceptance_success()

    def _run_inline(self, verification: Verification, action: Callable[[], None]) -> None:
        """Accept, start and complete a TC the services carry out themselves."""
        self._accept(verification)
        verification.start_success()
        try:
            action()
        except Exception as error:  # a bug: the TC fails, the node keeps serving
            self._log.exception("TC service action")
            verification.completion_failure(
                FailureCode.EXECUTION_FAILED, f"internal error {type(error).__name__}: {error}"
            )
            return
        verification.completion_success()

    # 8,1 -----------------------------------------------------------------------------------------

    def command_of(self, opcode: int) -> tuple[Component, CommandDefinition] | None:
        component = self._by_id.get(opcode >> 8)
        if component is None:
            return None
        commands = type(component).declarations.commands
        index = opcode & 0xFF
        if index >= len(commands):
            return None
        return component, commands[index]

    def _perform_function(self, tc: PusTc, verification: Verification) -> None:
        try:
            request = PerformFunction.decode(tc.app_data)
        except ProtocolError as error:
            raise _Refused(FailureCode.MALFORMED_PACKET, str(error)) from None
        found = self.command_of(request.function_id)
        if found is None:
            raise _Refused(
                FailureCode.UNKNOWN_OPCODE, f"no command with opcode {request.function_id:#06x}"
            )
        component, definition = found
        try:
            arguments = decode_fields(definition.arguments, request.arguments)
        except WireValueError as error:
            raise _Refused(FailureCode.BAD_ARGUMENTS, str(error), component) from None
        mode = self._mode()
        if definition.modes is not None and mode not in definition.modes:
            allowed = ", ".join(m.name for m in sorted(definition.modes))
            raise _Refused(
                FailureCode.REFUSED_IN_MODE,
                f"{definition.name} runs in {allowed}, mode is {mode.name}",
                component,
            )
        if not component.submit(CommandRequest(definition, arguments, verification)):
            raise _Refused(
                FailureCode.BUSY,
                f"{component.name} queue full ({component.QUEUE_DEPTH}): try again",
                component,
            )
        self._accept(verification)

    # 17 ------------------------------------------------------------------------------------------

    def _are_you_alive(self, tc: PusTc, verification: Verification) -> None:
        if tc.app_data:
            raise _Refused(FailureCode.MALFORMED_PACKET, "17,1 carries no application data")
        self._run_inline(
            verification,
            lambda: self.send(
                Service.TEST, TestSubtype.ARE_YOU_ALIVE_REPORT, b"", TmPriority.EVENT
            ),
        )

    def _connection_test(self, tc: PusTc, verification: Verification) -> None:
        try:
            request = ConnectionTest.decode(tc.app_data)
        except ProtocolError as error:
            raise _Refused(FailureCode.MALFORMED_PACKET, str(error)) from None
        if request.apid != self.apid:
            raise _Refused(FailureCode.BAD_ARGUMENTS, f"apid {request.apid:#x} is not on board")
        self._run_inline(
            verification,
            lambda: self.send(
                Service.TEST,
                TestSubtype.CONNECTION_TEST_REPORT,
                request.encode(),
                TmPriority.EVENT,
            ),
        )

    # 20 ------------------------------------------------------------------------------------------

    def parameter_of(self, parameter_id: int) -> tuple[Component, Parameter] | None:
        component = self._by_id.get(parameter_id >> 8)
        if component is None:
            return None
        parameters = type(component).declarations.parameters
        index = parameter_id & 0xFF
        if index >= len(parameters):
            return None
        return component, parameters[index]

    def _parameter_field(self, parameter_id: int) -> Field | None:
        found = self.parameter_of(parameter_id)
        if found is None:
            return None
        component, parameter = found
        return Field(f"{component.name}.{parameter.name}", parameter.type)

    def _report_parameters(self, tc: PusTc, verification: Verification) -> None:
        try:
            ids = ParameterIds.decode(tc.app_data).parameter_ids
        except ProtocolError as error:
            raise _Refused(FailureCode.MALFORMED_PACKET, str(error)) from None
        entries = []
        for parameter_id in ids:
            found = self.parameter_of(parameter_id)
            if found is None:
                raise _Refused(
                    FailureCode.UNKNOWN_PARAMETER, f"no parameter with id {parameter_id:#06x}"
                )
            component, parameter = found
            entries.append(
                (parameter_id, parameter.field, component.parameters.get(parameter.name))
            )
        report = encode_parameter_values(entries)
        self._run_inline(
            verification,
            lambda: self.send(
                Service.PARAMETER_MANAGEMENT,
                ParameterSubtype.VALUE_REPORT,
                report,
                TmPriority.EVENT,
            ),
        )

    def _set_parameters(self, tc: PusTc, verification: Verification) -> None:
        try:
            values = decode_parameter_values(tc.app_data, self._parameter_field)
        except FieldError as error:
            raise _Refused(FailureCode.UNKNOWN_PARAMETER, error.message) from None
        except WireValueError as error:
            raise _Refused(FailureCode.BAD_ARGUMENTS, str(error)) from None
        except ProtocolError as error:
            raise _Refused(FailureCode.BAD_ARGUMENTS, str(error)) from None

        def apply() -> None:
            # Every value was checked by the decode: all of them are set, or none.
            for parameter_id, value in values:
                found = self.parameter_of(parameter_id)
                assert found is not None
                component, parameter = found
                component.set_parameter(parameter, value)

        self._run_inline(verification, apply)

    # 3 -------------------------------------------------------------------------------------------

    def _structure_ids(self, tc: PusTc) -> tuple[int, ...]:
        try:
            ids = HousekeepingStructureIds.decode(tc.app_data).structure_ids
        except ProtocolError as error:
            raise _Refused(FailureCode.MALFORMED_PACKET, str(error)) from None
        for structure_id in ids:
            if structure_id not in self._housekeeping:
                raise _Refused(
                    FailureCode.BAD_ARGUMENTS,
                    f"structure id {structure_id}: no component has that id",
                )
        return ids

    def _enable_housekeeping(self, tc: PusTc, verification: Verification) -> None:
        ids = self._structure_ids(tc)
        self._run_inline(verification, lambda: self._set_enabled(ids, True))

    def _disable_housekeeping(self, tc: PusTc, verification: Verification) -> None:
        ids = self._structure_ids(tc)
        self._run_inline(verification, lambda: self._set_enabled(ids, False))

    def _set_enabled(self, ids: Sequence[int], enabled: bool) -> None:
        now = _now()
        for structure_id in ids:
            schedule = self._housekeeping[structure_id]
            if enabled and not schedule.enabled:
                schedule.due_s = now + schedule.interval_s
            schedule.enabled = enabled

    def _modify_intervals(self, tc: PusTc, verification: Verification) -> None:
        try:
            intervals = ModifyCollectionIntervals.decode(tc.app_data).intervals
        except ProtocolError as error:
            raise _Refused(FailureCode.MALFORMED_PACKET, str(error)) from None
        for entry in intervals:
            if entry.structure_id not in self._housekeeping:
                raise _Refused(
                    FailureCode.BAD_ARGUMENTS,
                    f"structure id {entry.structure_id}: no component has that id",
                )
            if entry.collection_interval_ms < MIN_COLLECTION_INTERVAL_MS:
                raise _Refused(
                    FailureCode.BAD_ARGUMENTS,
                    f"interval {entry.collection_interval_ms} ms: at least "
                    f"{MIN_COLLECTION_INTERVAL_MS} ms",
                )

        def apply() -> None:
            now = _now()
            for entry in intervals:
                schedule = self._housekeeping[entry.structure_id]
                schedule.interval_s = entry.collection_interval_ms / 1000
                schedule.due_s = now + schedule.interval_s

        self._run_inline(verification, apply)

    def housekeeping_interval_s(self, component_id: int) -> float | None:
        """The component's report interval, or None while its reports are disabled."""
        schedule = self._housekeeping[component_id]
        return schedule.interval_s if schedule.enabled else None

    def housekeeping_tick(self) -> None:
        """Send the housekeeping reports now due (the 10 Hz rate group calls this)."""
        now = _now()
        if not self._housekeeping_started:
            # The first reports one interval after start, all components in phase.
            self._housekeeping_started = True
            for schedule in self._housekeeping.values():
                schedule.due_s = now + schedule.interval_s
            return
        # A tick can come up to half a tick early on the real clock: round to the tick.
        horizon = now + HOUSEKEEPING_TICK_S / 2
        for component_id, schedule in self._housekeeping.items():
            if not schedule.enabled or schedule.due_s > horizon:
                continue
            schedule.due_s += schedule.interval_s
            if schedule.due_s <= now:  # far behind (a stall): no burst of catch-up reports
                schedule.due_s = now + schedule.interval_s
            self.report_housekeeping(component_id)

    def report_housekeeping(self, component_id: int) -> None:
        """Send one 3,25 report of the component's channels."""
        component = self._by_id[component_id]
        report = HousekeepingParameterReport(component_id, component.telemetry.encode())
        self.send(
            Service.HOUSEKEEPING,
            HousekeepingSubtype.PARAMETER_REPORT,
            report.encode(),
            TmPriority.HOUSEKEEPING,
        )

    _ROUTES: Mapping[tuple[int, int], Callable[["PusServices", PusTc, Verification], None]] = (
        MappingProxyType(
            {
                (Service.FUNCTION_MANAGEMENT, FunctionSubtype.PERFORM_FUNCTION): _perform_function,
                (Service.TEST, TestSubtype.ARE_YOU_ALIVE): _are_you_alive,
                (Service.TEST, TestSubtype.CONNECTION_TEST): _connection_test,
                (Service.PARAMETER_MANAGEMENT, ParameterSubtype.REPORT_VALUES): _report_parameters,
                (Service.PARAMETER_MANAGEMENT, ParameterSubtype.SET_VALUES): _set_parameters,
                (
                    Service.HOUSEKEEPING,
                    HousekeepingSubtype.ENABLE_PERIODIC_REPORTS,
                ): _enable_housekeeping,
                (Service.HOUSEKEEPING, HousekeepingSubtype.DISABLE_PERIODIC_REPORTS): (
                    _disable_housekeeping
                ),
                (
                    Service.HOUSEKEEPING,
                    HousekeepingSubtype.MODIFY_COLLECTION_INTERVAL,
                ): _modify_intervals,
            }
        )
    )


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _now() -> float:
    return asyncio.get_running_loop().time() if _loop_running() else 0.0


class TmSequence:
    """TM sequence counts from a persisted `store.Counter` (created without a modulus).

    `take()` returns (sequence count, serial): the count wraps at 2**14 on the wire, the serial is
    the persisted count and never repeats across restarts. If the store cannot be written (a
    full disk) the counts go on in memory, counted in `store_failures`: the TM still flows,
    and only a crash during the failure could repeat a count.
    """

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._last = counter.value - 1
        self.store_failures = 0
        self._log = logging.getLogger("flight.runtime.services")

    def take(self) -> tuple[int, int]:
        wanted = self._last + 1
        try:
            if self._counter.value < wanted:
                self._counter.advance_to(wanted)
            serial = self._counter.next()
        except StoreError as error:
            if not self.store_failures:
                self._log.error("TM sequence counts not persisted: %s", error)
            self.store_failures += 1
            serial = max(wanted, self._counter.value)
        self._last = serial
        return serial & MAX_SEQUENCE_COUNT, serial
