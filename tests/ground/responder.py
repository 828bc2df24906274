"""A small node stand-in for ground tests, built from flight.protocol alone.

It runs the real onboard chain on the flight end of a link: TC frame decode, SDLS (anti-replay
included), FARM-1, PUS TC; and answers with canned reports in TM frames whose OCF carries FARM-1's
CLCW. It is not the node (flight/runtime is): it knows the sample dictionary below, and enough
behaviour to exercise the station: verification per ack flags, a failing command, ping, parameter
get and set, housekeeping and events on demand, and frames dropped on purpose.
"""

import asyncio
import contextlib
import copy
from collections.abc import Callable
from typing import Any

from flight.link.base import LinkDown
from flight.protocol import icd
from flight.protocol.cop1 import Farm
from flight.protocol.cuc import CucTime
from flight.protocol.errors import AuthenticationError, ProtocolError, ReplayError
from flight.protocol.pus import (
    AckFlags,
    EventReport,
    HousekeepingParameterReport,
    ModifyCollectionIntervals,
    ParameterIds,
    PerformFunction,
    PusTc,
    PusTm,
    RequestId,
    VerificationFailure,
    VerificationSuccess,
)
from flight.protocol.sdls import SecurityAssociation, TcSecurity
from flight.protocol.spacepacket import SpacePacket
from flight.protocol.tc_frame import TcFrame
from flight.protocol.tm_frame import TmMasterChannel
from flight.runtime.types import Field, WireType, decode_parameter_values, encode_parameter_values
from ground.dictionary import Dictionary

KEY = bytes(range(32))
APID = 0x010
EPOCH_TAI_S = 2_173_910_437.0

SAMPLE = {
    "format": "penumbra-dictionary/1",
    "spacecraft_id": icd.SPACECRAFT_ID,
    "apid": APID,
    "failure_codes": {
        "1": "UNKNOWN_SERVICE",
        "2": "UNKNOWN_OPCODE",
        "3": "BAD_ARGUMENTS",
        "4": "MALFORMED_PACKET",
        "5": "EXECUTION_FAILED",
        "6": "REFUSED_IN_MODE",
        "7": "AUTHENTICATION_FAILED",
        "8": "REPLAYED",
        "9": "UNKNOWN_PARAMETER",
        "10": "BUSY",
    },
    "components": {
        "health": {
            "id": 3,
            "description": "Ping-based liveness of every component.",
            "commands": {
                "NOOP": {"opcode": 768, "arguments": [], "description": "Do nothing."},
                "RESET_COUNTERS": {"opcode": 769, "arguments": [], "description": "Zero."},
                "SET_PING_PERIOD": {
                    "opcode": 770,
                    "description": "Ping every component this often.",
                    "arguments": [
                        {"name": "period_ms", "type": "u32", "minimum": 100, "maximum": 60000}
                    ],
                },
                "FAIL": {
                    "opcode": 771,
                    "description": "Always fails (test).",
                    "arguments": [
                        {"name": "why", "type": "string", "max_length": 32},
                        {"name": "level", "type": "enum", "values": {"LOW": 0, "HIGH": 1}},
                    ],
                },
            },
            "telemetry": {
                "COMMANDS_ACCEPTED": {"id": 768, "type": "u32", "units": ""},
                "COMMANDS_REJECTED": {"id": 769, "type": "u32", "units": ""},
                "CPU_PERCENT": {
                    "id": 770,
                    "type": "f32",
                    "units": "%",
                    "limits": {"yellow_high": 80.0, "red_high": 95.0},
                },
                "MODE": {"id": 771, "type": "enum", "values": {"SAFE": 1, "NOMINAL": 2}},
            },
            "events": {
                "PING_LATE": {
                    "id": 768,
                    "severity": "LOW",
                    "format": "{component} missed {missed} pings",
                    "arguments": [
                        {"name": "component", "type": "string", "max_length": 32},
                        {"name": "missed", "type": "u8"},
                    ],
                },
                "WATCHDOG_STOPPED": {
                    "id": 769,
                    "severity": "HIGH",
                    "format": "watchdog stopped",
                    "arguments": [],
                },
            },
            "parameters": {
                "PING_PERIOD_MS": {
                    "id": 768,
                    "type": "u32",
                    "default": 1000,
                    "minimum": 100,
                    "maximum": 60000,
                },
                "LABEL": {"id": 769, "type": "string", "max_length": 16, "default": "sat"},
            },
        },
        "params": {
            "id": 4,
            "commands": {
                "NOOP": {"opcode": 1024, "arguments": []},
                "RESET_COUNTERS": {"opcode": 1025, "arguments": []},
                "SAVE": {"opcode": 1026, "arguments": []},
            },
            "telemetry": {
                "COMMANDS_ACCEPTED": {"id": 1024, "type": "u32", "units": ""},
                "COMMANDS_REJECTED": {"id": 1025, "type": "u32", "units": ""},
            },
        },
    },
}


def sample_document() -> dict[str, Any]:
    """A fresh deep copy of the sample dictionary document, for tests that break it."""
    return copy.deepcopy(SAMPLE)


def sample_dictionary() -> Dictionary:
    return Dictionary.from_document(sample_document(), source="sample.json")


class Responder:
    """The flight end: answers TCs from `link`, sends TM frames on it; an async context manager.

    `drop_uplink(n)` decides for the n-th TC frame received (from 0) whether to lose it before
    the onboard checks see it. Every `idle_period_s` an idle frame carries the CLCW down, as a
    real downlink never starves.
    """

    def __init__(
        self,
        link: Any,
        *,
        key: bytes = KEY,
        dictionary: Dictionary | None = None,
        idle_period_s: float = 1.0,
        drop_uplink: Callable[[int], bool] | None = None,
        farm_v_r: int = 0,
    ) -> None:
        self.link = link
        self.dictionary = dictionary or sample_dictionary()
        self.security = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, key)])
        self.farm = Farm(icd.TcVirtualChannel.COMMAND, v_r=farm_v_r)
        self.master = TmMasterChannel(ocf=lambda: self.farm.clcw().word)
        self.realtime = self.master.virtual_channel(icd.TmVirtualChannel.REALTIME)
        self.idle_period_s = idle_period_s
        self.drop_uplink = drop_uplink
        self.frames_in = 0
        self.dropped = 0
        self.executed: list[PusTc] = []
        self.ivs_seen: list[int] = []
        self.rejections: list[ProtocolError] = []
        self.parameters: dict[int, Any] = {768: 1000, 769: "sat"}
        self.hk_intervals: dict[int, int] = {}
        self.sent_frames: list[bytes] = []
        self._tm_sequence = 0
        self._tasks: asyncio.TaskGroup | None = None
        self._running: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> "Responder":
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._running = [
            self._tasks.create_task(self._uplink()),
            self._tasks.create_task(self._idle()),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._running:
            task.cancel()
        assert self._tasks is not None
        await self._tasks.__aexit__(None, None, None)

    # -- what a test asks for ----------------------------------------------------------------------

    def now_cuc(self) -> CucTime:
        return CucTime.from_seconds(EPOCH_TAI_S + asyncio.get_running_loop().time())

    def tm(self, service: int, subtype: int, data: bytes = b"") -> None:
        packet = PusTm(APID, self._tm_sequence, service, subtype, data, time=self.now_cuc())
        self._tm_sequence = (self._tm_sequence + 1) & 0x3FFF
        self.realtime.send(packet.encode())

    def housekeeping(self, component: str, values: dict[str, Any]) -> None:
        definition = self.dictionary.component(component)
        octets = b"".join(
            channel.type.encode(values[channel.name]) for channel in definition.channels_in_order
        )
        self.tm(3, 25, HousekeepingParameterReport(definition.id, octets).encode())

    def event(self, name: str, **args: Any) -> None:
        definition = self.dictionary.event(name)
        octets = b"".join(a.type.encode(args[a.name]) for a in definition.arguments)
        self.tm(5, int(definition.severity), EventReport(definition.id, octets).encode())

    async def flush(self) -> list[bytes]:
        """Send every complete TM frame now, or one idle frame (a CLCW) if there is none."""
        self.realtime.flush()
        frames = self.master.drain() or [self.master.next_frame()]
        for frame in frames:
            await self.send_frame(frame)
        return frames

    async def send_frame(self, frame: bytes) -> None:
        self.sent_frames.append(frame)
        with contextlib.suppress(LinkDown):  # lost, as a frame sent out of contact is
            await self.link.send(frame)

    # -- uplink ------------------------------------------------------------------------------------

    async def _idle(self) -> None:
        while True:
            await asyncio.sleep(self.idle_period_s)
            await self.flush()

    async def _uplink(self) -> None:
        while True:
            try:
                raw = await self.link.receive()
            except LinkDown:
                return
            index = self.frames_in
            self.frames_in += 1
            if self.drop_uplink is not None and self.drop_uplink(index):
                self.dropped += 1
                continue
            await self._on_frame(raw)

    async def _on_frame(self, raw: bytes) -> None:
        try:
            frame = TcFrame.decode(raw, spacecraft_id=icd.SPACECRAFT_ID)
            if not frame.control_command_flag:
                self.ivs_seen.append(int.from_bytes(frame.data[2:14], "big"))
            frame = self.security.process(frame)
        except ProtocolError as error:
            self.rejections.append(error)
            self.farm.reject(error)
            if isinstance(error, AuthenticationError):
                self._refuse_inside(raw, 8 if isinstance(error, ReplayError) else 7)
            await self.flush()
            return
        result = self.farm.receive(frame)
        if result.data is not None:
            packet, _ = SpacePacket.decode_from(result.data, 0)
            self._execute(PusTc.from_packet(packet))
        await self.flush()

    def _refuse_inside(self, raw: bytes, code: int) -> None:
        """(1,2) for the request id readable in a refused frame (SDLS authenticates only)."""
        try:
            frame = TcFrame.decode(raw)
            packet = frame.data[14:-16]
            request, _ = RequestId.decode_from(packet)
        except ProtocolError:
            return
        self.tm(1, 2, VerificationFailure(request, code, b"refused").encode())

    def _execute(self, tc: PusTc) -> None:
        self.executed.append(tc)
        request = RequestId.from_tc(tc)
        ok = VerificationSuccess(request).encode()
        if tc.ack_flags & AckFlags.ACCEPTANCE:
            self.tm(1, 1, ok)
        failure = self._dispatch(tc)
        if failure is not None:
            code, text = failure
            self.tm(1, 8, VerificationFailure(request, code, text.encode()).encode())
        elif tc.ack_flags & AckFlags.COMPLETION:
            self.tm(1, 7, ok)

    def _dispatch(self, tc: PusTc) -> tuple[int, str] | None:
        service = (tc.service, tc.subtype)
        if service == (17, 1):
            self.tm(17, 2)
        elif service == (8, 1):
            function = PerformFunction.decode(tc.app_data)
            if function.function_id == self.dictionary.command("health.FAIL").opcode:
                return 5, "told to fail"
            known = {c.opcode for c in self.dictionary.commands.values()}
            if function.function_id not in known:
                return 2, f"opcode {function.function_id}"
        elif service == (20, 1):
            ids = ParameterIds.decode(tc.app_data).parameter_ids
            entries = [(i, self._field(i), self.parameters[i]) for i in ids]
            self.tm(20, 2, encode_parameter_values(entries))
        elif service == (20, 3):
            for parameter_id, value in decode_parameter_values(tc.app_data, self._field):
                self.parameters[parameter_id] = value
        elif service == (3, 31):
            for entry in ModifyCollectionIntervals.decode(tc.app_data).intervals:
                self.hk_intervals[entry.structure_id] = entry.collection_interval_ms
        else:
            return 1, f"service {tc.service}/{tc.subtype}"
        return None

    def _field(self, parameter_id: int) -> Field:
        for definition in self.dictionary.parameters.values():
            if definition.id == parameter_id:
                return Field(definition.name, definition.type)
        return Field("unknown", WireType("u8"))
