"""TC reception: frames checked (FECF, SDLS, FARM-1), packets cut out and passed to the services.

The order is the ICD's (section 4): TC frame decode (length, FECF, spacecraft id), SDLS (MAC, then
anti-replay), FARM-1, then the Space Packets of an accepted frame: each a PUS TC on the node's
APID, or data for the handler `routes` names for its APID (CFDP PDUs on 0x7F0 to the file
service, simulated sensor records on 0x7F1 to the power component). A frame that fails is
counted, raises an event and, when its packet can still be read (SDLS here authenticates and does
not encrypt), is answered with an acceptance failure: code 7 for a forged or tampered frame, 8
for a replay. It is never executed. The anti-replay state and
V(R) are saved before an accepted frame's packets run, so after a crash, even a SIGKILL, no
replayed TC is accepted.
"""

import logging
from collections.abc import Callable

from flight.link import Link, LinkDown
from flight.protocol import icd
from flight.protocol.cop1 import Farm, FarmReason, FarmState
from flight.protocol.errors import AuthenticationError, ProtocolError, ReplayError
from flight.protocol.pus import REQUEST_ID_LENGTH, PusTc, RequestId
from flight.protocol.sdls import (
    MAC_OCTETS,
    SECURITY_HEADER_LENGTH,
    SecurityAssociation,
    TcSecurity,
)
from flight.protocol.spacepacket import PacketType, SpacePacket
from flight.protocol.tc_frame import TcFrame
from flight.runtime.component import (
    Arg,
    Component,
    Event,
    FailureCode,
    Severity,
    Telemetry,
    rate_group,
)
from flight.runtime.services import PusServices
from flight.runtime.store import Store, StoreError

STATE_RECORD = "uplink"
STATE_FORMAT = 1
_REASON = Arg("string", max_length=96)
_WRAP = 0xFFFF_FFFF
_UNSERVED = {  # how a refusal names a fixed APID that this node has no handler for
    icd.Apid.CFDP: "file uplink (CFDP)",
    icd.Apid.SIMULATED_SENSORS: "simulated sensor data",
}


class Uplink(Component):
    """TC reception: frame checks, SDLS authentication and anti-replay, FARM-1, PUS routing."""

    FRAMES_RECEIVED = Telemetry("u32", doc="TC frames the link delivered.")
    FRAMES_ACCEPTED = Telemetry("u32", doc="Frames FARM-1 passed on (AD in sequence, BD).")
    FRAMES_REJECTED = Telemetry("u32", doc="Frames failing decode, FECF, SCID or length checks.")
    AUTHENTICATION_FAILURES = Telemetry("u32", doc="Frames whose MAC or SA did not verify.")
    REPLAYS = Telemetry("u32", doc="Authentic frames refused by the anti-replay window.")
    FARM_DISCARDED = Telemetry("u32", doc="Authentic frames FARM-1 discarded (not in sequence).")
    PACKETS_REFUSED = Telemetry("u32", doc="Packets in accepted frames that were not valid TCs.")
    TC_RECEIVED = Telemetry("u32", doc="TCs that reached the services, refused ones included.")
    TC_ACCEPTED = Telemetry("u32", doc="TCs accepted (1,1).")
    TC_FAILED = Telemetry("u32", doc="Failure reports sent (1,2), (1,4) and (1,8).")
    FARM_V_R = Telemetry("u8", doc="FARM-1 V(R): the frame sequence number expected next.")
    FARM_LOCKOUT = Telemetry("bool", doc="FARM-1 is in Lockout: the ground must send Unlock.")
    LINK_UP = Telemetry("bool", doc="The link is up.")
    LINK_FRAMES_DROPPED = Telemetry("u32", doc="Frames the link's transport threw away.")
    STATE_SAVE_FAILURES = Telemetry("u32", doc="Times the anti-replay state could not be saved.")

    FRAME_REJECTED = Event(Severity.LOW, "TC frame rejected: {reason}", reason=_REASON)
    AUTHENTICATION_FAILED = Event(
        Severity.MEDIUM, "TC frame failed authentication: {reason}", reason=_REASON
    )
    REPLAYED = Event(Severity.MEDIUM, "TC frame refused as a replay: {reason}", reason=_REASON)
    PACKET_REFUSED = Event(Severity.LOW, "TC packet refused: {reason}", reason=_REASON)
    LOCKOUT = Event(
        Severity.HIGH,
        "FARM-1 lockout at V(R) {v_r}: the ground must send Unlock",
        v_r=Arg("u8"),
    )
    STATE_NOT_SAVED = Event(
        Severity.HIGH,
        "anti-replay state not saved, a replay after a reset could pass: {reason}",
        reason=_REASON,
    )

    def __init__(
        self,
        *,
        link: Link | None,
        services: PusServices | None = None,
        spacecraft_id: int = icd.SPACECRAFT_ID,
        name: str = "uplink",
    ) -> None:
        super().__init__(name)
        self.link = link
        self.services = services
        self.spacecraft_id = spacecraft_id
        self.spi = icd.SECURITY_PARAMETER_INDEX
        self.security: TcSecurity | None = None
        self.farm = Farm(icd.TcVirtualChannel.COMMAND)
        self.store: Store | None = None
        self.on_clcw_changed = lambda: None
        # Packets on these APIDs carry no PUS header: their data goes to the handler (CFDP to the
        # file service, simulated sensors to the power component); other APIDs are refused.
        self.routes: dict[int, Callable[[bytes], None]] = {}
        self._log = logging.getLogger("flight.runtime.uplink")
        self._counts = dict.fromkeys(
            (
                "received",
                "accepted",
                "rejected",
                "authentication",
                "replays",
                "farm_discarded",
                "packets_refused",
                "save_failures",
            ),
            0,
        )
        self._saved: dict | None = None

    # -- boot --------------------------------------------------------------------------------------

    def configure(self, *, key: bytes | None, spi: int, store: Store | None) -> str | None:
        """Set the key and load the persisted anti-replay state and V(R).

        Returns a problem in words when the saved state cannot be used (then the node boots in
        SAFE, the anti-replay window starting afresh), None when all is well.
        """
        self.spi = spi
        if key is None:
            if self.link is not None:
                raise ValueError("an uplink with a link needs the key of its security association")
            return None  # no link, no key: nothing to receive, and no state to move
        self.security = TcSecurity([SecurityAssociation(spi, key)])
        self.store = store
        if store is None:
            return None
        try:
            record = store.load(STATE_RECORD)
        except StoreError as error:
            return f"uplink state unusable ({error}); anti-replay starts afresh"
        if record is None:
            return None
        try:
            if record.get("format") != STATE_FORMAT:
                raise ValueError(f"format {record.get('format')!r}, expected {STATE_FORMAT}")
            last_iv = record["sdls"][str(spi)]
            v_r = record["farm_v_r"]
            if not isinstance(last_iv, int) or isinstance(last_iv, bool) or last_iv < 0:
                raise ValueError(f"sdls last IV {last_iv!r} is not a count")
            if not isinstance(v_r, int) or isinstance(v_r, bool) or not 0 <= v_r <= 255:
                raise ValueError(f"farm_v_r {v_r!r} outside 0..255")
            self.security.restore(spi, last_iv)
        except (KeyError, TypeError, ValueError) as error:
            return f"uplink state {store.path(STATE_RECORD)} is corrupt: {error}"
        self.farm = Farm(icd.TcVirtualChannel.COMMAND, v_r=v_r)
        self._saved = record
        return None

    @property
    def counts(self) -> dict[str, int]:
        """Frames by outcome since the last RESET_COUNTERS (what the telemetry reports)."""
        return dict(self._counts)

    def clcw_word(self) -> int:
        """The CLCW for the OCF of the next TM frame."""
        return self.farm.clcw().word

    # -- the task ----------------------------------------------------------------------------------

    async def run(self) -> None:
        if self.link is None:
            return
        while True:
            try:
                raw = await self.link.receive()
            except LinkDown:
                return  # closed: the node is shutting down
            self.process_frame(raw)

    def process_frame(self, raw: bytes) -> None:
        """One received frame through the whole chain; never raises."""
        self._counts["received"] += 1
        try:
            self._process(raw)
        except Exception as error:  # a bug: report it, keep serving the uplink
            self._log.exception("processing a TC frame")
            self.emit(self.FRAME_REJECTED, reason=f"internal error {type(error).__name__}: {error}")
        finally:
            self.on_clcw_changed()

    def _process(self, raw: bytes) -> None:
        assert self.security is not None, "configure the uplink with its key first"
        try:
            secured = TcFrame.decode(raw, spacecraft_id=self.spacecraft_id)
        except ProtocolError as error:
            self._counts["rejected"] += 1
            self.farm.reject(error)
            self.emit(self.FRAME_REJECTED, reason=str(error))
            return
        try:
            frame = self.security.process(secured)
        except ReplayError as error:
            self._counts["replays"] += 1
            self.farm.reject(error)
            self.emit(self.REPLAYED, reason=str(error))
            self._refuse_inside(secured, FailureCode.REPLAYED, f"replayed frame: {error}")
            return
        except AuthenticationError as error:
            self._counts["authentication"] += 1
            self.farm.reject(error)
            self.emit(self.AUTHENTICATION_FAILED, reason=str(error))
            self._refuse_inside(
                secured, FailureCode.AUTHENTICATION_FAILED, f"authentication failed: {error}"
            )
            return
        except ProtocolError as error:  # too short to hold the security fields
            self._counts["rejected"] += 1
            self.farm.reject(error)
            self.emit(self.FRAME_REJECTED, reason=str(error))
            return
        was_locked = self.farm.state is FarmState.LOCKOUT
        result = self.farm.receive(frame)
        if self.farm.state is FarmState.LOCKOUT and not was_locked:
            self.emit(self.LOCKOUT, v_r=self.farm.v_r)
        if result.reason is FarmReason.INVALID:
            self._counts["rejected"] += 1
            self.emit(self.FRAME_REJECTED, reason=str(result.error))
        elif not result.accepted and result.reason not in (
            FarmReason.UNLOCK,
            FarmReason.SET_VR,
        ):
            self._counts["farm_discarded"] += 1
        self._save_state()
        data = result.data
        if data is not None:
            self._counts["accepted"] += 1
            self._packets(data)

    def _save_state(self) -> None:
        """Persist the anti-replay state and V(R) if they moved: before the packets run."""
        if self.store is None or self.security is None:
            return
        record = {
            "format": STATE_FORMAT,
            "sdls": {str(self.spi): self.security.last_accepted(self.spi)},
            "farm_v_r": self.farm.v_r,
        }
        if record == self._saved:
            return
        try:
            self.store.save(STATE_RECORD, record)
        except StoreError as error:
            self._counts["save_failures"] += 1
            self.emit(self.STATE_NOT_SAVED, reason=str(error))
            return
        self._saved = record

    def _packets(self, data: bytes) -> None:
        """The packets of an accepted frame, back to back; each verified on its own."""
        position = 0
        while position < len(data):
            try:
                packet, end = SpacePacket.decode_from(data, position)
            except ProtocolError as error:  # no packet boundary left to go on from
                self._refuse_packet(data[position:], f"malformed packet: {error}")
                return
            self._packet(packet, data[position:end])
            position = end

    def _packet(self, packet: SpacePacket, octets: bytes) -> None:
        services = self.services
        assert services is not None
        route = self.routes.get(packet.apid)
        if route is not None:
            route(packet.data)  # one PDU or record per packet, no PUS header (ICD 3.11, 3.12)
            return
        if packet.apid != services.apid:
            self._counts["packets_refused"] += 1
            what = _UNSERVED.get(packet.apid, "that APID")
            self.emit(
                self.PACKET_REFUSED,
                reason=f"APID {packet.apid:#05x}: {what} is not served on board",
            )
            return
        try:
            tc = PusTc.decode(octets)  # as received: the PUS CRC covers the header too
        except ProtocolError as error:
            self._refuse_packet(octets, f"malformed packet: {error}")
            return
        services.handle(tc)

    def _refuse_packet(self, octets: bytes, reason: str) -> None:
        self._counts["packets_refused"] += 1
        self.emit(self.PACKET_REFUSED, reason=reason)
        if len(octets) >= REQUEST_ID_LENGTH and self.services is not None:
            request, _ = RequestId.decode_from(octets)
            self.services.refuse(request, FailureCode.MALFORMED_PACKET, reason)

    def _refuse_inside(self, frame: TcFrame, code: FailureCode, reason: str) -> None:
        """Acceptance failure for each TC readable inside a frame that failed SDLS."""
        if self.services is None or frame.control_command_flag:
            return
        payload = frame.data[SECURITY_HEADER_LENGTH:-MAC_OCTETS]
        if len(frame.data) < SECURITY_HEADER_LENGTH + MAC_OCTETS:
            return
        position = 0
        while position < len(payload):
            try:
                packet, position = SpacePacket.decode_from(payload, position)
            except ProtocolError:
                return  # nothing more that names a request
            if packet.packet_type is PacketType.TC:
                self.services.refuse(RequestId.from_packet(packet), code, reason)

    # -- telemetry ---------------------------------------------------------------------------------

    @rate_group("1Hz")
    def update_telemetry(self) -> None:
        t = self.telemetry
        counts = self._counts
        t.FRAMES_RECEIVED = counts["received"] & _WRAP
        t.FRAMES_ACCEPTED = counts["accepted"] & _WRAP
        t.FRAMES_REJECTED = counts["rejected"] & _WRAP
        t.AUTHENTICATION_FAILURES = counts["authentication"] & _WRAP
        t.REPLAYS = counts["replays"] & _WRAP
        t.FARM_DISCARDED = counts["farm_discarded"] & _WRAP
        t.PACKETS_REFUSED = counts["packets_refused"] & _WRAP
        t.STATE_SAVE_FAILURES = counts["save_failures"] & _WRAP
        if self.services is not None:
            t.TC_RECEIVED = self.services.tc_received & _WRAP
            t.TC_ACCEPTED = self.services.tc_accepted & _WRAP
            t.TC_FAILED = sum(self.services.failures.values()) & _WRAP
        t.FARM_V_R = self.farm.v_r
        t.FARM_LOCKOUT = self.farm.lockout
        t.LINK_UP = self.link is not None and self.link.up
        if self.link is not None:
            t.LINK_FRAMES_DROPPED = self.link.counters.frames_dropped & _WRAP

    def reset_counters(self) -> None:
        for name in self._counts:
            self._counts[name] = 0
