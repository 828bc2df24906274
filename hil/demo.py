"""`penumbra demo`: a ground station operates a node across a noisy in-memory link, stage by stage.

Every octet on the link is made and checked by flight.protocol: PUS-C packets in authenticated TC
frames under COP-1, COBS on the line, TM frames carrying the CLCW back, and CFDP for a file. The
node is a stand-in that answers ping, parameter and function requests; the onboard runtime takes
its place in the next issue. Time is virtual: one step of the loop is `STEP_S` of link time.
"""

import argparse
import random
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from flight.protocol import cobs, icd
from flight.protocol.cfdp import FileReceiver, FileSender, TransferResult
from flight.protocol.cop1 import (
    AlertNotification,
    Clcw,
    Farm,
    FduNotification,
    Fop,
    FopDirective,
    FopState,
    Response,
)
from flight.protocol.crc import crc32
from flight.protocol.cuc import CucTime
from flight.protocol.errors import AuthenticationError, ProtocolError
from flight.protocol.pus import (
    REQUEST_ID_LENGTH,
    EventReport,
    EventSubtype,
    FunctionSubtype,
    ParameterIds,
    ParameterSubtype,
    ParameterValue,
    ParameterValues,
    PerformFunction,
    PusTc,
    PusTm,
    RequestId,
    Service,
    TestSubtype,
    VerificationFailure,
    VerificationSubtype,
    VerificationSuccess,
    subtype_name,
)
from flight.protocol.sdls import (
    SecurityAssociation,
    TcSecurity,
    load_key,
    max_protected_data_length,
)
from flight.protocol.spacepacket import MAX_SEQUENCE_COUNT, PacketType, SpacePacket
from flight.protocol.tc_frame import TcFrame
from flight.protocol.tm_frame import NO_CLCW, ReceivedFrame, TmMasterChannel, TmReceiver
from hil.faults import FaultModel, FaultyChannel

STEP_S = 0.05  # one loop step: link transit and one turn of node and ground
MAX_STEPS = 20_000  # 1,000 s of virtual time: far more than any seed needs
T1_S = 0.5  # FOP-1 retransmission timer, several round trips
TRANSMISSION_LIMIT = 20
COMMAND_APID = 0x010
MISSION_EPOCH_TAI_S = 2_173_910_437.0  # 2026-11-21T00:00:00 UTC as TAI seconds since 1958
GROUND_ENTITY, NODE_ENTITY = 1, 2
# The uplink crosses the ground network too, which can duplicate and reorder; the space link itself
# only loses frames and flips bits, and never reorders them.
UPLINK_FAULTS = FaultModel(loss=0.1, duplicate=0.05, reorder=0.05, bit_error_rate=1e-5)
DOWNLINK_FAULTS = FaultModel(loss=0.1, bit_error_rate=1e-5)

MODE_PARAMETER = 1  # u32, the payload duty cycle in percent
FUNCTION_RESET_COUNTERS = 1
EVENT_FRAME_REJECTED = 1  # low severity: a frame failed its FECF, SDLS or FARM-1 checks
EVENT_AUTHENTICATION_FAILED = 2  # medium severity: forged or replayed telecommand
EVENT_PACKET_REFUSED = 3  # low severity: an authentic frame whose packet does not parse

# Failure codes of service 1 reports.
FAILURE_UNKNOWN_REQUEST = 1
FAILURE_BAD_ARGUMENTS = 2
FAILURE_MALFORMED = 3


def _hex(octets: bytes, limit: int = 40) -> str:
    text = octets[:limit].hex(" ")
    return text + (f" … ({len(octets)} octets)" if len(octets) > limit else "")


class Node:
    """The onboard end: COBS, TC frame, SDLS, FARM-1, then the PUS services this demo needs."""

    def __init__(self, key: bytes, file_store: Path, log: Callable[[str], None]) -> None:
        self.log = log
        self.deframer = cobs.CobsDeframer(icd.TC_MAX_FRAME_LENGTH)
        self.security = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, key)])
        self.farm = Farm(icd.TcVirtualChannel.COMMAND)
        self.master = TmMasterChannel(ocf=lambda: self.farm.clcw().word)
        self.realtime = self.master.virtual_channel(icd.TmVirtualChannel.REALTIME)
        self.files = FileReceiver(file_store, entity_id=NODE_ENTITY)
        self.parameters = {MODE_PARAMETER: 100}
        self.executed: list[int] = []  # sequence counts of the TCs executed, in execution order
        self.file_results: list[TransferResult] = []
        self.rejected: dict[str, int] = {}
        self._tm_sequence = 0
        self._now = 0.0
        self.verbose = False

    # -- uplink ----------------------------------------------------------------------------------

    def receive(self, octets: bytes, now: float) -> None:
        self._now = now
        for raw in self.deframer.feed(octets):
            try:
                frame = TcFrame.decode(raw, spacecraft_id=icd.SPACECRAFT_ID)
                if self.verbose:
                    self.log(
                        f"node    TC frame {frame.frame_type}, VC {frame.virtual_channel_id}, "
                        f"N(S) {frame.frame_sequence_number}: FECF checks"
                    )
                frame = self.security.process(frame)
                if self.verbose and not frame.control_command_flag:
                    self.log("node    SDLS: MAC verifies, IV inside the anti-replay window")
            except ProtocolError as error:
                self._reject(error)
                continue
            result = self.farm.receive(frame)
            if self.verbose:
                self.log(f"node    FARM-1: {result.reason}, V(R) now {self.farm.v_r}")
            if result.data is not None:
                self._execute(result.data)

    def _reject(self, error: ProtocolError) -> None:
        self.farm.reject(error)
        kind = type(error).__name__
        self.rejected[kind] = self.rejected.get(kind, 0) + 1
        if isinstance(error, AuthenticationError):
            self._event(EventSubtype.MEDIUM_SEVERITY, EVENT_AUTHENTICATION_FAILED, str(error))
        else:
            self._event(EventSubtype.LOW_SEVERITY, EVENT_FRAME_REJECTED, str(error))

    def _refuse(self, data: bytes, error: ProtocolError) -> None:
        """Acceptance failure (1.2) for a packet that does not parse, if it names its request."""
        self._event(EventSubtype.LOW_SEVERITY, EVENT_PACKET_REFUSED, str(error))
        if len(data) >= REQUEST_ID_LENGTH:
            request, _ = RequestId.decode_from(data)
            failure = VerificationFailure(request, FAILURE_MALFORMED, str(error)[:64].encode())
            self._send(
                Service.REQUEST_VERIFICATION,
                VerificationSubtype.ACCEPTANCE_FAILURE,
                failure.encode(),
            )

    def _execute(self, data: bytes) -> None:
        """The packets of an accepted frame, back to back as the ICD allows, each verified on its
        own: a malformed one is refused and the next still runs."""
        position = 0
        while position < len(data):
            try:
                packet, end = SpacePacket.decode_from(data, position)
            except ProtocolError as error:  # no packet boundary left to go on from
                self._refuse(data[position:], error)
                return
            try:
                self._execute_packet(packet, data[position:end])
            except ProtocolError as error:  # an authentic frame carrying a malformed packet
                self._refuse(data[position:end], error)
            position = end

    def _execute_packet(self, packet: SpacePacket, octets: bytes) -> None:
        if packet.apid == icd.Apid.CFDP:
            result = self.files.receive(packet.data, self._now)
            if result is not None:
                self.file_results.append(result)
            return
        tc = PusTc.decode(octets)  # the octets as received: the PUS CRC covers the header too
        self.executed.append(tc.sequence_count)
        request = RequestId.from_tc(tc)
        accepted = VerificationSuccess(request).encode()
        self._send(Service.REQUEST_VERIFICATION, VerificationSubtype.ACCEPTANCE_SUCCESS, accepted)
        try:
            self._dispatch(tc)
        except ProtocolError as error:
            failure = VerificationFailure(request, FAILURE_BAD_ARGUMENTS, str(error)[:64].encode())
        except LookupError:
            failure = VerificationFailure(request, FAILURE_UNKNOWN_REQUEST)
        else:
            completed = VerificationSuccess(request).encode()
            self._send(
                Service.REQUEST_VERIFICATION, VerificationSubtype.COMPLETION_SUCCESS, completed
            )
            return
        self._send(
            Service.REQUEST_VERIFICATION, VerificationSubtype.COMPLETION_FAILURE, failure.encode()
        )

    def _dispatch(self, tc: PusTc) -> None:
        """One branch per request this stand-in serves; anything else is a LookupError."""
        if (tc.service, tc.subtype) == (Service.TEST, TestSubtype.ARE_YOU_ALIVE):
            self._send(Service.TEST, TestSubtype.ARE_YOU_ALIVE_REPORT)
        elif (tc.service, tc.subtype) == (
            Service.PARAMETER_MANAGEMENT,
            ParameterSubtype.SET_VALUES,
        ):
            values = ParameterValues.decode(tc.app_data, self._parameter_length)
            for entry in values.values:
                self.parameters[entry.parameter_id] = int.from_bytes(entry.value, "big")
        elif (tc.service, tc.subtype) == (
            Service.PARAMETER_MANAGEMENT,
            ParameterSubtype.REPORT_VALUES,
        ):
            ids = ParameterIds.decode(tc.app_data).parameter_ids
            for parameter_id in ids:
                self._parameter_length(parameter_id)
            report = ParameterValues(
                tuple(ParameterValue(i, self.parameters[i].to_bytes(4, "big")) for i in ids)
            )
            self._send(Service.PARAMETER_MANAGEMENT, ParameterSubtype.VALUE_REPORT, report.encode())
        elif (tc.service, tc.subtype) == (
            Service.FUNCTION_MANAGEMENT,
            FunctionSubtype.PERFORM_FUNCTION,
        ) and PerformFunction.decode(tc.app_data).function_id == FUNCTION_RESET_COUNTERS:
            self.rejected.clear()
        else:
            raise LookupError(f"no handler for TC {tc.service}/{tc.subtype}")

    def _parameter_length(self, parameter_id: int) -> int:
        if parameter_id not in self.parameters:
            raise LookupError(f"no parameter {parameter_id}")
        return 4

    # -- downlink --------------------------------------------------------------------------------

    def _event(self, subtype: EventSubtype, event_id: int, text: str) -> None:
        self._send(
            Service.EVENT_REPORTING, subtype, EventReport(event_id, text[:96].encode()).encode()
        )

    def _send(self, service: int, subtype: int, source_data: bytes = b"") -> None:
        time = CucTime.from_seconds(MISSION_EPOCH_TAI_S + self._now)
        tm = PusTm(COMMAND_APID, self._tm_sequence, service, subtype, source_data, time=time)
        self._tm_sequence = (self._tm_sequence + 1) & 0x3FFF
        self.realtime.send(tm.encode())

    def transmit(self) -> list[bytes]:
        """This step's downlink frames: what the services produced, else one idle frame (CLCW)."""
        self.realtime.flush()
        return self.master.drain() or [self.master.next_frame()]


@dataclass
class GroundLog:
    reports: list[PusTm] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    confirmed: int = 0
    frames_rejected: int = 0
    packets_rejected: int = 0


class Ground:
    """The ground end: FOP-1 on the COMMAND channel, SDLS on every transmission, TM reception."""

    def __init__(self, key: bytes, log: Callable[[str], None]) -> None:
        self.log = log
        self.fop = Fop(
            icd.SPACECRAFT_ID,
            icd.TcVirtualChannel.COMMAND,
            t1_initial_s=T1_S,
            transmission_limit=TRANSMISSION_LIMIT,
            max_fdu_length=max_protected_data_length(),
        )
        self.security = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, key)])
        self.next_iv = 1  # never repeats: each transmission, retransmissions too, gets a fresh IV
        self.receiver = TmReceiver()
        self.deframer = cobs.CobsDeframer(icd.TM_FRAME_LENGTH)
        self.queue: deque[bytes] = deque()
        self.outcome = GroundLog()
        self.verbose = False
        self.sent_octets: list[bytes] = []  # every uplink frame as sent, for the replay attacker

    def transmit(self, now: float) -> list[bytes]:
        self.fop.poll(now)
        while self.queue and self.fop.accepts_fdu and self.fop.state is FopState.ACTIVE:
            self.fop.transfer(self.queue.popleft(), now)
        self._notifications()
        out = []
        for frame in self.fop.take_frames():
            secured = self.security.apply(frame, iv=self.next_iv)
            if not frame.control_command_flag:
                self.next_iv += 1
            encoded = secured.encode()
            line = cobs.frame(encoded)
            if self.verbose:
                self._show_uplink(frame, secured, encoded, line)
            self.sent_octets.append(line)
            out.append(line)
        return out

    def _show_uplink(self, frame: TcFrame, secured: TcFrame, encoded: bytes, line: bytes) -> None:
        if frame.control_command_flag:
            self.log(f"ground  TC frame BC (COP-1 control, in clear):  {_hex(encoded)}")
        else:
            self.log(
                f"ground  SDLS: SPI {icd.SECURITY_PARAMETER_INDEX}, IV {self.next_iv - 1}, "
                f"16-octet AES-256-GCM MAC over headers and data"
            )
            self.log(
                f"ground  TC frame AD, SCID {frame.spacecraft_id:#x}, VC "
                f"{frame.virtual_channel_id}, N(S) {frame.frame_sequence_number}, "
                f"{len(encoded)} octets:  {_hex(encoded)}"
            )
        self.log(f"ground  COBS on the line, {len(line)} octets with the delimiter:  {_hex(line)}")

    def _notifications(self) -> None:
        for notification in self.fop.take_notifications():
            if isinstance(notification, AlertNotification):
                self.outcome.alerts.append(f"{notification.alert}: {notification.detail}")
            elif (
                isinstance(notification, FduNotification)
                and notification.response is Response.POSITIVE_CONFIRM
            ):
                self.outcome.confirmed += 1

    def receive(self, octets: bytes, now: float) -> None:
        for raw in self.deframer.feed(octets):
            try:
                received = self.receiver.receive(raw)
            except ProtocolError:
                self.outcome.frames_rejected += 1
                continue
            clcw = None
            if received.ocf is not None and received.ocf != NO_CLCW:
                clcw = Clcw.from_word(received.ocf)
                self.fop.receive_clcw(clcw, now)
            if self.verbose and received.packets:
                self.log(_describe_frame(received, clcw, len(raw)))
            for packet in received.packets:
                try:
                    tm = PusTm.decode(packet)
                except ProtocolError:
                    self.outcome.packets_rejected += 1
                    continue
                self.outcome.reports.append(tm)
                if self.verbose:
                    self.log(_describe_report(tm))
        self._notifications()


def _describe_frame(received: ReceivedFrame, clcw: Clcw | None, octets: int) -> str:
    ocf = "no CLCW"
    if clcw is not None:
        flags = [name for name in ("lockout", "wait", "retransmit") if getattr(clcw, name)]
        ocf = f"CLCW report value V(R) {clcw.report_value}, flags {', '.join(flags) or 'clear'}"
    return (
        f"ground  TM frame VC {received.virtual_channel_id}, MC count "
        f"{received.master_channel_frame_count}, {octets} octets, FECF checks; OCF: {ocf}"
    )


def _describe_report(tm: PusTm) -> str:
    name = subtype_name(tm.service, tm.subtype)
    words = "" if name is None else " " + name.lower().replace("_", " ")
    return (
        f"ground    TM {tm.service}/{tm.subtype}{words}, seq {tm.sequence_count}, "
        f"CUC time {tm.time.coarse}+{tm.time.fine}/65536 s"
    )


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int = 1
    commands: int = 40
    file_octets: int = 12_288
    uplink: FaultModel = UPLINK_FAULTS  # frozen, so safe to share as a default
    downlink: FaultModel = DOWNLINK_FAULTS


def _commands(count: int) -> list[PusTc]:
    """A mix of the operator's everyday requests, numbered 1.. after the walkthrough's ping."""
    kinds: list[tuple[int, int, bytes]] = [
        (Service.TEST, TestSubtype.ARE_YOU_ALIVE, b""),
        (
            Service.PARAMETER_MANAGEMENT,
            ParameterSubtype.SET_VALUES,
            ParameterValues((ParameterValue(MODE_PARAMETER, (60).to_bytes(4, "big")),)).encode(),
        ),
        (
            Service.PARAMETER_MANAGEMENT,
            ParameterSubtype.REPORT_VALUES,
            ParameterIds((MODE_PARAMETER,)).encode(),
        ),
        (
            Service.FUNCTION_MANAGEMENT,
            FunctionSubtype.PERFORM_FUNCTION,
            PerformFunction(FUNCTION_RESET_COUNTERS).encode(),
        ),
    ]
    return [PusTc(COMMAND_APID, n, *kinds[n % len(kinds)]) for n in range(1, count + 1)]


class Link:
    """Ground and node joined by one channel each way, stepped in virtual time."""

    def __init__(self, ground: Ground, node: Node, up: FaultyChannel, down: FaultyChannel) -> None:
        self.ground, self.node, self.up, self.down = ground, node, up, down
        self.now = 0.0
        self.steps = 0

    def step(self) -> None:
        """Ground sends, node receives and answers, ground hears."""
        for line in self.ground.transmit(self.now):
            self.up.send(line)
        self.node.receive(b"".join(self.up.deliver()), self.now)
        for frame in self.node.transmit():
            self.down.send(cobs.frame(frame))
        self.ground.receive(b"".join(self.down.deliver()), self.now)
        self.now += STEP_S
        self.steps += 1


def play(scenario: Scenario, out: Callable[[str], None] = print) -> bool:
    """Play the scenario; print as it goes; return whether every check held."""
    rng = random.Random(scenario.seed)
    with tempfile.TemporaryDirectory(prefix="penumbra-demo-") as scratch:
        key_file = Path(scratch) / "sa1.key"
        key_file.touch(mode=0o600)
        key_file.write_bytes(rng.randbytes(32))
        key = load_key(key_file)
        file_store = Path(scratch) / "node-files"
        file_store.mkdir()
        node = Node(key, file_store, out)
        ground = Ground(key, out)
        out("Penumbra demo: a ground station operates a node over an in-memory link")
        out(f"seed {scenario.seed}; key file {key_file.name} (mode 0600, AES-256)\n")
        quiet = FaultyChannel(FaultModel(), rng)
        link = Link(ground, node, quiet, quiet)
        _walkthrough(link, out)
        link.up = FaultyChannel(scenario.uplink, rng)
        link.down = FaultyChannel(scenario.downlink, rng)
        checks = _operate(link, scenario, rng, file_store, out)
        node.files.close()
        for check, held in checks.items():
            out(f"   [{'ok' if held else 'FAILED'}] {check}")
        return all(checks.values())


def _walkthrough(link: Link, out: Callable[[str], None]) -> None:
    out("1. COP-1 start-up and one ping, stage by stage, on a clean link")
    ground = link.ground
    link.node.verbose = ground.verbose = True
    ground.fop.directive(FopDirective.INITIATE_AD_WITH_UNLOCK, link.now)
    while ground.fop.state is not FopState.ACTIVE:
        link.step()
    out("ground  FOP-1: the CLCW shows FARM-1 unlocked; AD service active")
    ping = PusTc(COMMAND_APID, 0, Service.TEST, TestSubtype.ARE_YOU_ALIVE)
    out(f"ground  PUS-C TC 17/1 are-you-alive, seq 0:  {_hex(ping.encode())}")
    ground.queue.append(ping.encode())
    while ground.outcome.confirmed < 1:
        link.step()
    link.node.verbose = ground.verbose = False
    out("ground  FOP-1: the CLCW's report value 1 acknowledges N(S) 0\n")


def _operate(
    link: Link, scenario: Scenario, rng: random.Random, file_store: Path, out: Callable[[str], None]
) -> dict[str, bool]:
    ground, node = link.ground, link.node
    commands = _commands(scenario.commands)
    model = rng.randbytes(scenario.file_octets)
    sender = FileSender(GROUND_ENTITY, NODE_ENTITY, 1, model, 512, destination_name="model.onnx")
    pdus = [
        SpacePacket(PacketType.TC, icd.Apid.CFDP, n & 0x3FFF, pdu).encode()
        for n, pdu in enumerate(sender)
    ]
    out(f"2. Operating through the noise: uplink {_faults(scenario.uplink)}")
    out(f"   downlink {_faults(scenario.downlink)}")
    out(
        f"   {len(commands)} commands (ping, parameter set and report, function), a "
        f"{len(model):,}-octet model file by CFDP ({len(pdus)} PDUs), a forged and a "
        "replayed command"
    )
    ground.queue.extend(tc.encode() for tc in commands)
    ground.queue.extend(pdus)
    total = 1 + len(commands) + len(pdus)  # the walkthrough's ping too
    # An attacker on the line: a command under a key it guessed, and the ping it recorded.
    forged = _attack(node, _forged_frame(rng), link.now)
    replayed = _attack(node, ground.sent_octets[-1], link.now)
    start_time, start_step = link.now, link.steps
    while ground.outcome.confirmed < total and not ground.outcome.alerts:
        if link.steps - start_step >= MAX_STEPS:
            break
        link.step()
    for _ in range(4):  # the last reports and CLCWs drain
        link.step()
    out(f"   {link.now - start_time:.1f} s of virtual time in {link.steps - start_step} steps\n")
    _report(link, total, out)
    return {
        "every command executed exactly once, in order": node.executed
        == [0, *(tc.sequence_count for tc in commands)],
        "the model file arrived whole and its CRC-32 checks": bool(node.file_results)
        and node.file_results[0].success
        and crc32((file_store / "model.onnx").read_bytes()) == crc32(model),
        "the forged command was refused: its MAC does not verify": forged == (1, 0),
        "the replayed command was refused by the anti-replay window": replayed == (0, 1),
        "COP-1 raised no alert": not ground.outcome.alerts,
    }


def _report(link: Link, total: int, out: Callable[[str], None]) -> None:
    ground, node, up, down = link.ground, link.node, link.up, link.down
    kinds = [(tm.service, tm.subtype) for tm in ground.outcome.reports]
    out("3. What happened")
    out(
        f"   uplink    {up.sent} frames sent for {total} AD frames (the rest are COP-1 "
        f"retransmissions); lost {up.lost}, duplicated {up.duplicated}, reordered "
        f"{up.reordered}, corrupted {up.corrupted}"
    )
    out(
        f"   onboard   COBS discarded {node.deframer.discarded_frames}; SDLS refused "
        f"{node.security.rejected_mac} by MAC and {node.security.rejected_replay} by anti-replay "
        "(duplicates included); FARM-1: "
        + ", ".join(f"{reason} {count}" for reason, count in node.farm.counters.items() if count)
    )
    rejected = ", ".join(f"{kind} {count}" for kind, count in node.rejected.items()) or "none"
    out(f"   onboard   frames rejected since the last reset-counters function (8/1): {rejected}")
    out(
        f"   downlink  {down.sent} TM frames, lost {down.lost}, corrupted {down.corrupted}; the "
        f"ground refused {ground.outcome.frames_rejected} frames by FECF and "
        f"{ground.outcome.packets_rejected} packets as not PUS TM, and counted "
        f"{ground.receiver.master_lost_frames} frames missing from the frame counts"
    )
    out(
        f"   reports   {kinds.count((1, 7))} completion, {kinds.count((17, 2))} are-you-alive, "
        f"{kinds.count((20, 2))} parameter and {sum(s == 5 for s, _ in kinds)} event reports; "
        "TM lost with its frame is not sent again (store and forward comes with the runtime)"
    )
    out(f"   onboard   parameter {MODE_PARAMETER} = {node.parameters[MODE_PARAMETER]}")
    for result in node.file_results:
        out(f"   file      {result.path.name if result.path else '-'}: {result.reason}")
    for alert in ground.outcome.alerts:
        out(f"   COP-1 alert: {alert}")
    counters = ground.fop.counters
    out("   FOP-1     " + ", ".join(f"{name} {n}" for name, n in counters.items() if n) + "\n")


def _faults(model: FaultModel) -> str:
    return (
        f"{model.loss:.0%} frame loss, {model.duplicate:.0%} duplication, "
        f"{model.reorder:.0%} reordering, bit error rate {model.bit_error_rate:g}"
    )


def _attack(node: Node, line: bytes, now: float) -> tuple[int, int]:
    """Inject `line` into the node's uplink; return how many frames SDLS refused, by MAC and by
    anti-replay. The leading delimiter ends whatever partial frame the line held before."""
    before = node.security.rejected_mac, node.security.rejected_replay
    node.receive(b"\x00" + line, now)
    return node.security.rejected_mac - before[0], node.security.rejected_replay - before[1]


def _forged_frame(rng: random.Random) -> bytes:
    """A well-formed AD frame with a security header and a MAC made with the wrong key."""
    attacker = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, rng.randbytes(32))])
    tc = PusTc(COMMAND_APID, 0x3FFF, Service.FUNCTION_MANAGEMENT, 1, PerformFunction(99).encode())
    frame = TcFrame(icd.SPACECRAFT_ID, icd.TcVirtualChannel.COMMAND, 0, tc.encode())
    return cobs.frame(attacker.apply(frame, iv=1 << 40).encode())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1, help="seed of the link faults (default 1)")
    parser.add_argument("--commands", type=int, default=40, help="commands to send (default 40)")
    parser.add_argument(
        "--loss", type=float, default=UPLINK_FAULTS.loss, help="frame loss, both ways (0.1)"
    )
    parser.add_argument(
        "--bit-error-rate",
        type=float,
        default=UPLINK_FAULTS.bit_error_rate,
        help="bit error rate, both ways (1e-5)",
    )


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.commands <= MAX_SEQUENCE_COUNT:
        # Commands are numbered 1..N by their 14-bit packet sequence count.
        print(
            f"penumbra demo: --commands {args.commands}: give a number of commands in "
            f"0..{MAX_SEQUENCE_COUNT}",
            file=sys.stderr,
        )
        return 2
    try:
        changes = {"loss": args.loss, "bit_error_rate": args.bit_error_rate}
        scenario = Scenario(
            args.seed,
            args.commands,
            uplink=replace(UPLINK_FAULTS, **changes),
            downlink=replace(DOWNLINK_FAULTS, **changes),
        )
    except ValueError as error:
        print(f"penumbra demo: {error}", file=sys.stderr)
        return 2
    return 0 if play(scenario) else 1
