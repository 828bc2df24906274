"""A minimal ground for node tests, built from flight.protocol alone: FOP-1 with SDLS up, TM down.

Not the ground station (ground/ depends on flight, never the reverse): just enough to operate a
node over a MemoryLink and to see every TM packet it sends, in order.
"""

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flight.link import LinkDown
from flight.protocol import icd
from flight.protocol.cop1 import Clcw, Fop, FopDirective, FopDriver
from flight.protocol.errors import ProtocolError
from flight.protocol.pus import (
    EventReport,
    HousekeepingParameterReport,
    PerformFunction,
    PusTc,
    PusTm,
    Service,
    VerificationFailure,
    VerificationSuccess,
)
from flight.protocol.sdls import SecurityAssociation, TcSecurity, max_protected_data_length
from flight.protocol.tc_frame import TcFrame
from flight.protocol.tm_frame import NO_CLCW, TmReceiver
from flight.runtime.types import Field, WireType, decode_fields, encode_fields

KEY = bytes(range(32))
APID = 0x010


@dataclass
class Received:
    """One TM packet as the ground got it, with the VC it came on."""

    tm: PusTm
    virtual_channel_id: int


@dataclass
class MiniGround:
    """Operates a node: `command("health.SET_PING_PERIOD", period_ms=500)` and friends."""

    link: Any
    dictionary: dict
    key: bytes = KEY
    received: list[Received] = field(default_factory=list)
    sent_frames: list[bytes] = field(default_factory=list)
    next_iv: int = 1
    sequence: int = 0

    def __post_init__(self) -> None:
        self.security = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, self.key)])
        self.receiver = TmReceiver()
        self.fop = Fop(
            icd.SPACECRAFT_ID,
            icd.TcVirtualChannel.COMMAND,
            t1_initial_s=2.0,
            transmission_limit=10,
            max_fdu_length=max_protected_data_length(),
        )
        self._arrived = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> "MiniGround":
        self.driver = FopDriver(self.fop, self.link.send, encode=self._encode)
        await self._stack.enter_async_context(self.driver)
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        self._first_clcw: asyncio.Future[Clcw] = asyncio.get_running_loop().create_future()
        self._receiving = group.create_task(self._receive())
        self._stack.callback(self._receiving.cancel)
        # Like a ground that lost its state: take V(S) from the node's CLCW (its persisted V(R)).
        clcw = await self._first_clcw
        await self.driver.directive(FopDirective.SET_VS, clcw.report_value)
        await self.driver.directive(FopDirective.INITIATE_AD_WITH_CLCW)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    def _encode(self, frame: TcFrame) -> bytes:
        secured = self.security.apply(frame, iv=self.next_iv)
        if not frame.control_command_flag:
            self.next_iv += 1
        encoded = secured.encode()
        self.sent_frames.append(encoded)
        return encoded

    async def _receive(self) -> None:
        while True:
            try:
                raw = await self.link.receive()
            except LinkDown:
                return
            try:
                frame = self.receiver.receive(raw)
            except ProtocolError:
                continue
            if frame.ocf is not None and frame.ocf != NO_CLCW:
                clcw = Clcw.from_word(frame.ocf)
                if not self._first_clcw.done():
                    self._first_clcw.set_result(clcw)
                self.driver.receive_clcw(clcw)
            for packet in frame.packets:
                self.received.append(Received(PusTm.decode(packet), frame.virtual_channel_id))
            self._arrived.set()

    # -- dictionary ----------------------------------------------------------------------------

    def component(self, name: str) -> dict:
        return self.dictionary["components"][name]

    def opcode(self, name: str) -> int:
        component, command = name.split(".")
        return self.component(component)["commands"][command]["opcode"]

    def command_tc(self, name: str, **arguments: object) -> PusTc:
        component, command = name.split(".")
        spec = self.component(component)["commands"][command]
        fields = [Field.from_json(a) for a in spec["arguments"]]
        data = PerformFunction(spec["opcode"], encode_fields(fields, arguments)).encode()
        return self.tc(Service.FUNCTION_MANAGEMENT, 1, data)

    def tc(self, service: int, subtype: int, data: bytes = b"") -> PusTc:
        tc = PusTc(APID, self.sequence, service, subtype, data)
        self.sequence = (self.sequence + 1) & 0x3FFF
        return tc

    # -- sending -------------------------------------------------------------------------------

    async def send(self, tc: PusTc) -> PusTc:
        """Transfer one TC on the AD service; return once FARM-1 acknowledged its frame."""
        await self.driver.transfer(tc.encode())
        return tc

    async def command(self, name: str, **arguments: object) -> PusTc:
        return await self.send(self.command_tc(name, **arguments))

    # -- waiting -------------------------------------------------------------------------------

    async def wait_for(
        self, predicate: Callable[[Received], bool], *, start: int = 0, timeout_s: float = 30.0
    ) -> Received:
        """The first packet from index `start` on that satisfies `predicate`."""
        async with asyncio.timeout(timeout_s):
            index = start
            while True:
                while index < len(self.received):
                    if predicate(self.received[index]):
                        return self.received[index]
                    index += 1
                self._arrived.clear()
                await self._arrived.wait()

    def reports(self, tc: PusTc) -> list[tuple[int, int | None]]:
        """The verification reports received for `tc`: (subtype, failure code or None)."""
        found = []
        for item in self.received:
            tm = item.tm
            if tm.service != Service.REQUEST_VERIFICATION:
                continue
            if tm.subtype in (1, 3, 7):
                request = VerificationSuccess.decode(tm.source_data).request_id
                code = None
            else:
                failure = VerificationFailure.decode(tm.source_data)
                request, code = failure.request_id, failure.failure_code
            if (request.apid, request.sequence_count) == (tc.apid, tc.sequence_count):
                found.append((tm.subtype, code))
        return found

    def failure(self, tc: PusTc) -> VerificationFailure:
        for item in self.received:
            tm = item.tm
            if tm.service == Service.REQUEST_VERIFICATION and tm.subtype in (2, 4, 8):
                failure = VerificationFailure.decode(tm.source_data)
                if failure.request_id.sequence_count == tc.sequence_count:
                    return failure
        raise AssertionError(f"no failure report for TC {tc.sequence_count}")

    async def wait_verified(self, tc: PusTc, *, timeout_s: float = 30.0) -> list:
        """Wait for the final report of `tc` (1,7 or a failure); return all its reports."""

        def final(item: Received) -> bool:
            return item.tm.service == Service.REQUEST_VERIFICATION and bool(
                [s for s, _ in self.reports(tc) if s in (2, 4, 7, 8)]
            )

        await self.wait_for(final, timeout_s=timeout_s)
        return self.reports(tc)

    # -- decoding ------------------------------------------------------------------------------

    def events(self, name: str | None = None) -> list[tuple[str, dict]]:
        """(component.EVENT, arguments) of every event received, optionally of one name."""
        out = []
        for item in self.received:
            if item.tm.service != Service.EVENT_REPORTING:
                continue
            report = EventReport.decode(item.tm.source_data)
            decoded = self.decode_event(report)
            if name is None or decoded[0] == name:
                out.append(decoded)
        return out

    def decode_event(self, report: EventReport) -> tuple[str, dict]:
        for component_name, component in self.dictionary["components"].items():
            for event_name, spec in component["events"].items():
                if spec["id"] == report.event_definition_id:
                    fields = [Field.from_json(a) for a in spec["arguments"]]
                    values = decode_fields(fields, report.auxiliary_data)
                    return f"{component_name}.{event_name}", values
        raise AssertionError(f"unknown event id {report.event_definition_id}")

    def housekeeping(self, item: Received) -> tuple[str, dict]:
        report = HousekeepingParameterReport.decode(item.tm.source_data)
        for component_name, component in self.dictionary["components"].items():
            if component["id"] == report.structure_id:
                fields = [
                    Field(name, WireType.from_json(spec))
                    for name, spec in component["telemetry"].items()
                ]
                return component_name, decode_fields(fields, report.parameter_values)
        raise AssertionError(f"unknown structure id {report.structure_id}")

    def is_housekeeping_of(self, component: str) -> Callable[[Received], bool]:
        structure_id = self.component(component)["id"]

        def match(item: Received) -> bool:
            return (item.tm.service, item.tm.subtype) == (
                3,
                25,
            ) and HousekeepingParameterReport.decode(
                item.tm.source_data
            ).structure_id == structure_id

        return match


def is_event(ground: MiniGround, name: str) -> Callable[[Received], bool]:
    def match(item: Received) -> bool:
        if item.tm.service != Service.EVENT_REPORTING:
            return False
        return ground.decode_event(EventReport.decode(item.tm.source_data))[0] == name

    return match
