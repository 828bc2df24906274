"""The ICD as a reader: any Penumbra dump described field by field as nested, JSON-ready dicts."""

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from construct import Construct

from flight.protocol import cfdp as cfdp_codec
from flight.protocol import cobs as cobs_codec
from flight.protocol import icd, pus, sdls, sensors
from flight.protocol.cop1 import CLCW, Clcw
from flight.protocol.errors import (
    AuthenticationError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
)
from flight.protocol.spacepacket import (
    IDLE_APID,
    PRIMARY_HEADER,
    PRIMARY_HEADER_LENGTH,
    PacketType,
    SequenceFlags,
    SpacePacket,
    packet_length,
)
from flight.protocol.tc_frame import PRIMARY_HEADER_LENGTH as TC_PRIMARY_HEADER_LENGTH
from flight.protocol.tc_frame import SEGMENT_HEADER_LENGTH, TC_TRANSFER_FRAME, FrameType, TcFrame
from flight.protocol.tm_frame import PRIMARY_HEADER_LENGTH as TM_PRIMARY_HEADER_LENGTH
from flight.protocol.tm_frame import FirstHeaderPointer, TmFrame, tm_transfer_frame

Description = dict[str, Any]
"""A described structure: str keys; values are int, bool, float, str (octets as lowercase hex),
None, lists and further descriptions. `json.dumps` takes it as it is."""

KINDS = ("auto", "cobs", "tc-frame", "tm-frame", "space-packet", "pus", "cfdp")
"""What `describe` can be told the input is."""

AUTO_ORDER = ("tm-frame", "tc-frame", "cobs", "space-packet", "cfdp")
"""The order in which `describe(kind="auto")` tries the kinds; the first that fits wins.

A TM frame must be exactly `tm_frame_length` octets, a TC frame as long as its length field says,
and both must pass their FECF and every header check. The FECF is the same CRC-16 that ends a PUS
packet (and a CFDP PDU with its CRC flag), so the CRC alone does not tell them apart; header bits
do. A PUS packet's secondary header flag lands on a TC frame's reserved bits (must be 0) and its
length field on a TM frame's segment length identifier (must be 0b11, which would need a packet
longer than any TM frame). A class-1 CFDP PDU's transmission mode bit lands on a TC frame's reserved
bits. TM frames of the ICD (1115 octets) are longer than any TC frame (1024). COBS comes next, only
for an input that ends in the 00 delimiter and holds at least one frame that is itself recognised.
Last the two packet kinds, which differ in their first three bits (version 0: Space Packet, read as
PUS when its secondary header flag is set; version 1: CFDP PDU), and each must fill the input
exactly as its length field says.
"""

_SECURED_VCS = frozenset(int(channel) for channel in icd.TcVirtualChannel)
_CFDP_NAMES = MappingProxyType(
    {
        cfdp_codec.MetadataPdu: "metadata",
        cfdp_codec.FileDataPdu: "file-data",
        cfdp_codec.EofPdu: "eof",
    }
)
_CFDP_LAYOUTS: MappingProxyType[type, Construct] = MappingProxyType(
    {
        cfdp_codec.MetadataPdu: cfdp_codec.METADATA_PDU,
        cfdp_codec.FileDataPdu: cfdp_codec.FILE_DATA_PDU,
        cfdp_codec.EofPdu: cfdp_codec.EOF_PDU,
    }
)


class NoKindFitsError(ProtocolError):
    """Auto-detection found no kind that fits the input; `reasons` says why each kind failed, in
    the order tried. A ProtocolError like every other complaint about input."""

    def __init__(self, length: int, reasons: dict[str, ProtocolError]) -> None:
        self.reasons = dict(reasons)
        self.length = length
        detail = "; ".join(f"{kind}: {error}" for kind, error in self.reasons.items())
        super().__init__(f"no kind fits these {length} octets: {detail}")


def describe(
    data: bytes | bytearray | memoryview,
    kind: str = "auto",
    *,
    tm_frame_length: int = icd.TM_FRAME_LENGTH,
    tm_has_ocf: bool = True,
) -> Description:
    """Every field of `data` read as `kind` (one of KINDS), nested where a structure carries others.

    A malformed outer structure raises its ProtocolError (offsets count octets of `data`; for
    "auto", a NoKindFitsError with each kind's reason). A malformed structure inside a good one does
    not raise: its description is `{"kind", "error", "error_type", "offset"}`, the offset again
    counted in octets of `data` (for frames inside a COBS stream: where that octet sits in the
    encoded stream). `find_errors` lists them.
    """
    reader = _Reader(tm_frame_length, tm_has_ocf)
    data = bytes(data)
    if kind == "auto":
        return reader.auto(data)
    readers: dict[str, Callable[[bytes, int], Description]] = {
        "cobs": reader.cobs,
        "tc-frame": reader.tc_frame,
        "tm-frame": reader.tm_frame,
        "space-packet": reader.space_packet,
        "pus": reader.pus,
        "cfdp": reader.cfdp,
    }
    if kind not in readers:
        raise ValueError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not data:
        raise TruncatedError("empty input: nothing to decode", offset=0)
    return readers[kind](data, 0)


def find_errors(description: Description) -> list[tuple[str, Description]]:
    """Every nested error in a description, with a path to it such as `frames[0].packets[1].pus`."""
    return list(_errors(description, str(description.get("kind", "input"))))


def _errors(value: object, path: str) -> Iterator[tuple[str, Description]]:
    if isinstance(value, dict):
        if "error" in value:
            yield path, value
            return
        for key, item in value.items():
            yield from _errors(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _errors(item, f"{path}[{index}]")


# --- helpers ----------------------------------------------------------------------------------


def _plain(value: object) -> Any:
    """A parsed construct Container as plain JSON-ready values: no `_io`, octets as hex."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if not key.startswith("_")}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # an IntEnum member prints as its name in some encoders; keep the number
    return value


def _error(kind: str, error: ProtocolError, base: int, **extra: Any) -> Description:
    """The description of what failed: the error's offset moved from its buffer to the input."""
    return {
        "kind": kind,
        "error": error.message,
        "error_type": type(error).__name__,
        "offset": base + (error.offset or 0),
        **extra,
    }


def _name(enum: type[IntEnum], value: int) -> str | None:
    try:
        return enum(value).name
    except ValueError:
        return None


def _with_name(fields: Description, key: str, enum: type[IntEnum]) -> Description:
    """`fields` with a `<key>_name` sibling right after `key`, when the value has a name."""
    out: Description = {}
    for field, value in fields.items():
        out[field] = value
        if field == key:
            name = _name(enum, value)
            if name is not None:
                out[f"{key}_name"] = name
    return out


def _cobs_positions(encoded: bytes) -> list[int]:
    """For each octet of the decoding of a valid COBS `encoded`, where in `encoded` it comes from.

    A zero of the decoding sits where the next code octet is; one more entry maps the end.
    """
    positions: list[int] = []
    position = 0
    end = len(encoded)
    while position < end:
        code = encoded[position]
        positions.extend(range(position + 1, position + code))
        position += code
        if code != 0xFF and position < end:
            positions.append(position)
    positions.append(end)
    return positions


def _move_offsets(value: object, locate: Callable[[int], int]) -> None:
    """Rewrite, in place, every error offset of a description through `locate`."""
    if isinstance(value, dict):
        if "error" in value and "offset" in value:
            value["offset"] = locate(value["offset"])
        for item in value.values():
            _move_offsets(item, locate)
    elif isinstance(value, list):
        for item in value:
            _move_offsets(item, locate)


class _ApplicationData(NamedTuple):
    """How to read one service's application (TC) or source (TM) data without a dictionary."""

    kind: str
    check: Callable[[bytes], object]  # the pus.py fast path: raises, with offsets, if malformed
    layout: Construct | None  # the reference declaration that names the fields
    list_key: str | None = None  # for N-prefixed lists: the key of the list


def _no_data(data: bytes) -> None:
    if data:
        raise LengthError(f"this request or report carries no data, {len(data)} octets follow")


def _application_data_table() -> MappingProxyType[tuple[int, int, int], _ApplicationData]:
    tc, tm = PacketType.TC, PacketType.TM
    success = _ApplicationData(
        "verification-success", pus.VerificationSuccess.decode, pus.VERIFICATION_SUCCESS
    )
    failure = _ApplicationData(
        "verification-failure", pus.VerificationFailure.decode, pus.VERIFICATION_FAILURE
    )
    structure_ids = _ApplicationData(
        "housekeeping-structure-ids",
        pus.HousekeepingStructureIds.decode,
        pus.HOUSEKEEPING_STRUCTURE_IDS,
        "housekeeping_parameter_report_structure_ids",
    )
    event_ids = _ApplicationData(
        "event-definition-ids",
        pus.EventDefinitionIds.decode,
        pus.EVENT_DEFINITION_IDS,
        "event_definition_ids",
    )
    event = _ApplicationData("event-report", pus.EventReport.decode, pus.EVENT_REPORT)
    alive = _ApplicationData("are-you-alive", _no_data, None)
    connection = _ApplicationData("connection-test", pus.ConnectionTest.decode, pus.CONNECTION_TEST)
    table = {
        (tm, 1, 1): success,
        (tm, 1, 3): success,
        (tm, 1, 7): success,
        (tm, 1, 2): failure,
        (tm, 1, 4): failure,
        (tm, 1, 8): failure,
        (tc, 3, 5): structure_ids,
        (tc, 3, 6): structure_ids,
        (tm, 3, 25): _ApplicationData(
            "housekeeping-parameter-report",
            pus.HousekeepingParameterReport.decode,
            pus.HOUSEKEEPING_PARAMETER_REPORT,
        ),
        (tc, 3, 31): _ApplicationData(
            "collection-intervals",
            pus.ModifyCollectionIntervals.decode,
            pus.COLLECTION_INTERVALS,
            "collection_intervals",
        ),
        (tm, 5, 1): event,
        (tm, 5, 2): event,
        (tm, 5, 3): event,
        (tm, 5, 4): event,
        (tc, 5, 5): event_ids,
        (tc, 5, 6): event_ids,
        (tc, 8, 1): _ApplicationData(
            "perform-function", pus.PerformFunction.decode, pus.PERFORM_FUNCTION
        ),
        (tc, 17, 1): alive,
        (tm, 17, 2): alive,
        (tc, 17, 3): connection,
        (tm, 17, 4): connection,
        (tc, 20, 1): _ApplicationData(
            "parameter-ids", pus.ParameterIds.decode, pus.PARAMETER_IDS, "parameter_ids"
        ),
        # 20.2 and 20.3 are not here: a value's width comes from the parameter dictionary.
    }
    return MappingProxyType(table)


_APPLICATION_DATA = _application_data_table()


# --- the reader -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reader:
    """One description's settings. Methods take the octets of one structure and `base`, where
    they start in the input; they raise for a malformed structure (offsets within `data`) and
    describe malformed structures inside it as errors (offsets within the input)."""

    tm_frame_length: int
    tm_has_ocf: bool

    @property
    def max_cobs_frame_length(self) -> int:
        # What a serial link carries: a TC frame up, a TM frame down.
        return max(icd.TC_MAX_FRAME_LENGTH, self.tm_frame_length)

    # -- auto-detection --

    def auto(self, data: bytes, *, allow_cobs: bool = True) -> Description:
        if not data:
            raise TruncatedError("empty input: nothing to decode", offset=0)
        readers: dict[str, Callable[[bytes, int], Description]] = {
            "tm-frame": self.tm_frame,
            "tc-frame": self.tc_frame,
            "cobs": self._auto_cobs,
            "space-packet": self.space_packet,
            "cfdp": self.cfdp,
        }
        reasons: dict[str, ProtocolError] = {}
        for kind in AUTO_ORDER:
            if kind == "cobs" and not allow_cobs:
                continue
            try:
                return readers[kind](data, 0)
            except ProtocolError as error:
                reasons[kind] = error
        raise NoKindFitsError(len(data), reasons)

    def _auto_cobs(self, data: bytes, base: int) -> Description:
        """A COBS stream, if it ends in the delimiter and at least one frame in it is recognised."""
        if data[-1] != 0:
            raise FieldError("does not end in a 00 delimiter", offset=len(data) - 1)
        description = self.cobs(data, base)
        frames = description["frames"]
        if not frames:
            raise FieldError("only 00 delimiters, no frame", offset=0)
        if all("error" in frame for frame in frames):
            first = frames[0]
            raise FieldError(
                f"no frame in it is recognised; the first: {first['error']}",
                offset=first["offset"] - base,
            )
        return description

    # -- COBS (Cheshire & Baker 1999) --

    def cobs(self, data: bytes, base: int) -> Description:
        """A stream of zero-delimited COBS frames, each described by auto-detection."""
        deframer = cobs_codec.CobsDeframer(self.max_cobs_frame_length)
        frames: list[Description] = []
        position = 0
        while position < len(data):
            end = data.find(0, position)
            if end < 0:
                deframer.feed(data[position:])
                error = TruncatedError(
                    f"{len(data) - position} octets after the last 00 delimiter: "
                    "the frame is incomplete",
                    offset=position,
                )
                frames.append(_error("cobs-frame", error, base))
                break
            if end > position:  # two delimiters in a row make no frame
                frames.append(self._cobs_frame(deframer, data[position:end], base + position))
            position = end + 1
        return {
            "kind": "cobs",
            "length": len(data),
            "frames": frames,
            "discarded_frames": deframer.discarded_frames,
            "discarded_octets": deframer.discarded_octets,
            "pending_octets": deframer.pending_octets,
        }

    def _cobs_frame(
        self, deframer: cobs_codec.CobsDeframer, encoded: bytes, base: int
    ) -> Description:
        decoded = deframer.feed(encoded + cobs_codec.DELIMITER)
        if not decoded:
            try:
                cobs_codec.decode(encoded)  # for the error with its offset
            except ProtocolError as error:
                return _error("cobs-frame", error, base)
            too_long = LengthError(deframer.last_discard_message, offset=0)
            return _error("cobs-frame", too_long, base)
        frame = decoded[0]
        try:
            description = self.auto(frame, allow_cobs=False)
        except NoKindFitsError as error:
            description = {
                "kind": "unknown",
                "error": f"no kind fits the {len(frame)} octets of this frame",
                "error_type": type(error).__name__,
                "offset": 0,
                "reasons": {
                    kind: _error(kind, reason, 0) for kind, reason in error.reasons.items()
                },
            }
        positions = _cobs_positions(encoded)
        last = len(positions) - 1
        _move_offsets(description, lambda offset: base + positions[min(offset, last)])
        if description["kind"] == "unknown":
            description["offset"] = base  # the whole frame failed: point at its first octet
        return description

    # -- TC Transfer Frames (232.0-B-4 4.1) --

    def tc_frame(self, data: bytes, base: int) -> Description:
        """A TC frame: headers, then the control command (BC), or on the secured virtual channels
        the SDLS header and trailer around the packets, or just the packets."""
        frame = TcFrame.decode(data)
        parsed = TC_TRANSFER_FRAME.parse(data)
        header = _with_name(
            _plain(parsed.primary_header), "virtual_channel_identifier", icd.TcVirtualChannel
        )
        out: Description = {
            "kind": "tc-frame",
            "length": len(data),
            "primary_header": header,
            "frame_type": frame.frame_type.value,
        }
        if parsed.segment_header is not None:
            out["segment_header"] = _plain(parsed.segment_header)
        # The data field starts after the segment header, which BC frames do not have.
        start = base + TC_PRIMARY_HEADER_LENGTH
        if frame.map_id is not None:
            start += SEGMENT_HEADER_LENGTH
        if frame.frame_type is FrameType.BC:
            command, value = frame.control_command()
            control: Description = {
                "kind": "control-command",
                "control_command": int(command),
                "control_command_name": command.name,
            }
            if value is not None:
                control["v_r"] = value
            out["control_command"] = control
        elif frame.virtual_channel_id in _SECURED_VCS:
            out.update(self._secured(frame.data, start))
        else:
            out["packets"] = self._packets(frame.data, start)
        out["frame_error_control_field"] = parsed.frame_error_control_field
        return out

    def _secured(self, data: bytes, base: int) -> Description:
        """SDLS security header, the packets it protects, security trailer (355.0-B-2 4.1)."""
        try:
            sdls.check_secured_length(len(data))
        except TruncatedError as error:
            return {"security_header": _error("sdls", error, base, octets=data.hex())}
        header_octets = data[: sdls.SECURITY_HEADER_LENGTH]
        mac_start = len(data) - sdls.MAC_OCTETS
        header = _plain(sdls.SECURITY_HEADER.parse(header_octets))
        header["iv"] = sdls.SecurityHeader.decode(header_octets).iv
        out: Description = {"security_header": header}
        protected = data[sdls.SECURITY_HEADER_LENGTH : mac_start]
        spi = header["security_parameter_index"]
        if spi == icd.SECURITY_PARAMETER_INDEX:
            # The ICD's SA authenticates without encrypting: the packets are in clear.
            out["packets"] = self._packets(protected, base + sdls.SECURITY_HEADER_LENGTH)
        else:
            error = AuthenticationError(
                f"SPI {spi} is not the ICD's security association "
                f"({icd.SECURITY_PARAMETER_INDEX}): the data may be encrypted, not interpreted",
                offset=0,
            )
            out["protected_data"] = _error("sdls", error, base, octets=protected.hex())
        trailer = _plain(sdls.SECURITY_TRAILER.parse(data[mac_start:]))
        trailer["mac_verified"] = False  # verifying needs the key, which a dump does not carry
        out["security_trailer"] = trailer
        return out

    def _packets(self, data: bytes, base: int) -> list[Description]:
        """Consecutive whole Space Packets filling `data` (a TC frame's data field)."""
        packets: list[Description] = []
        position = 0
        while position < len(data):
            try:
                total = packet_length(data, position)
                if len(data) - position < total:
                    raise TruncatedError(
                        f"packet of {total} octets, only {len(data) - position} left in the "
                        "frame data field",
                        offset=position,
                    )
            except ProtocolError as error:
                packets.append(_error("space-packet", error, base, octets=data[position:].hex()))
                break
            packets.append(self._packet(data[position : position + total], base + position))
            position += total
        return packets

    # -- TM Transfer Frames (132.0-B-3 4.1) --

    def tm_frame(self, data: bytes, base: int) -> Description:
        """A TM frame: header, the packets that start in it, the OCF as a CLCW, the FECF."""
        frame = TmFrame.decode(data, frame_length=self.tm_frame_length, has_ocf=self.tm_has_ocf)
        parsed = tm_transfer_frame(self.tm_frame_length).parse(data)
        header = _with_name(
            _plain(parsed.protected.value.transfer_frame_primary_header),
            "virtual_channel_id",
            icd.TmVirtualChannel,
        )
        header["transfer_frame_data_field_status"] = _with_name(
            header["transfer_frame_data_field_status"], "first_header_pointer", FirstHeaderPointer
        )
        out: Description = {
            "kind": "tm-frame",
            "length": len(data),
            "transfer_frame_primary_header": header,
        }
        out.update(
            self._tm_data_field(
                frame.data, frame.first_header_pointer, base + TM_PRIMARY_HEADER_LENGTH
            )
        )
        if frame.ocf is not None:
            out["operational_control_field"] = self._ocf(
                frame.ocf, base + TM_PRIMARY_HEADER_LENGTH + len(frame.data)
            )
        out["frame_error_control_field"] = parsed.frame_error_control_field
        return out

    def _tm_data_field(self, data: bytes, fhp: int, base: int) -> Description:
        if fhp == FirstHeaderPointer.ONLY_IDLE_DATA:
            return {"idle_data_octets": len(data), "packets": []}
        if fhp == FirstHeaderPointer.NO_PACKET_START:
            return {"continuation_octets": len(data), "packets": []}
        packets: list[Description] = []
        position = fhp
        end = len(data)
        while position < end:
            left = end - position
            if left < PRIMARY_HEADER_LENGTH:  # even the header goes on in the next frame
                packets.append(
                    {
                        "kind": "space-packet",
                        "continues_in_next_frame": True,
                        "octets_present": left,
                        "octets": data[position:].hex(),
                    }
                )
                break
            try:
                total = packet_length(data, position)
            except ProtocolError as error:
                packets.append(_error("space-packet", error, base, octets=data[position:].hex()))
                break
            if total > left:
                header = self._primary_header(data[position : position + PRIMARY_HEADER_LENGTH])
                idle = header["apid"] == IDLE_APID
                partial: Description = {
                    "kind": "idle" if idle else "space-packet",
                    "length": total,
                    "primary_header": header,
                    "continues_in_next_frame": True,
                    "octets_present": left,
                }
                if not idle:
                    partial["octets"] = data[position:].hex()
                packets.append(partial)
                break
            packets.append(self._packet(data[position : position + total], base + position))
            position += total
        return {"continuation_octets": fhp, "packets": packets}

    def _ocf(self, word: int, base: int) -> Description:
        """The Operational Control Field: a CLCW (232.0-B-4 4.2.1) when its first bit is 0."""
        octets = word.to_bytes(4, "big")
        if word >> 31:
            # 132.0-B-3 4.1.5: a Type-2 report; the ICD sends 80000000 while it has no CLCW.
            return {"kind": "type-2-report", "octets": octets.hex()}
        try:
            Clcw.from_word(word)
        except ProtocolError as error:
            return _error("clcw", error, base, octets=octets.hex())
        return {"kind": "clcw", "octets": octets.hex(), **_plain(CLCW.parse(octets))}

    # -- Space Packets (133.0-B-2), PUS (70-41C), CFDP (727.0-B-5) --

    def space_packet(self, data: bytes, base: int) -> Description:
        """Exactly one Space Packet, read further as PUS, CFDP or idle where it is one."""
        SpacePacket.decode(data)
        return self._packet(data, base)

    @staticmethod
    def _primary_header(data: bytes) -> Description:
        header = _plain(PRIMARY_HEADER.parse(data[:PRIMARY_HEADER_LENGTH]))
        header = _with_name(header, "packet_type", PacketType)
        return _with_name(header, "sequence_flags", SequenceFlags)

    def _packet(self, data: bytes, base: int) -> Description:
        """One whole packet whose length is already checked."""
        header = self._primary_header(data)
        out: Description = {"kind": "space-packet", "length": len(data), "primary_header": header}
        if header["apid"] == IDLE_APID:
            out["kind"] = "idle"
            return out
        field = data[PRIMARY_HEADER_LENGTH:]
        if header["apid"] == icd.Apid.CFDP:
            field_base = base + PRIMARY_HEADER_LENGTH
            try:
                out["cfdp"] = self.cfdp(field, field_base)
            except ProtocolError as error:
                out["cfdp"] = _error("cfdp", error, field_base, octets=field.hex())
            return out
        if header["apid"] == icd.Apid.SIMULATED_SENSORS:
            field_base = base + PRIMARY_HEADER_LENGTH
            try:
                record = sensors.SensorRecord.decode(field)
            except ProtocolError as error:
                out["sensor_record"] = _error("sensor-record", error, field_base)
            else:  # None: not measured (NaN on the wire)
                out["sensor_record"] = asdict(record)
            return out
        if header["secondary_header_flag"]:
            # The ICD's packets with a secondary header are PUS: show why this one is not.
            try:
                return self.pus(data, base)
            except ProtocolError as error:
                out["packet_data_field"] = field.hex()
                out["pus"] = _error("pus", error, base)
                return out
        out["packet_data_field"] = field.hex()
        return out

    def pus(self, data: bytes, base: int) -> Description:
        """A PUS-C TC or TM packet (70-41C 7.4), and its application data where pus.py knows it."""
        decoded = pus.decode_packet(data)
        is_tc = isinstance(decoded, pus.PusTc)
        layout = pus.PUS_TC_PACKET if is_tc else pus.PUS_TM_PACKET
        secondary_length = (
            pus.TC_SECONDARY_HEADER_LENGTH if is_tc else pus.TM_SECONDARY_HEADER_LENGTH
        )
        parsed = layout.parse(data)
        value = parsed.packet.value
        secondary: Description = {}
        for key, item in _plain(value.secondary_header).items():
            if key == "service_type_id":  # the names for the PUS fields
                secondary["service"] = item
                name = _name(pus.Service, item)
                if name is not None:
                    secondary["service_name"] = name
            elif key == "message_subtype_id":
                secondary["subtype"] = item
                name = pus.subtype_name(secondary["service"], item)
                if name is not None:
                    secondary["subtype_name"] = name
            else:
                secondary[key] = item
        if isinstance(decoded, pus.PusTm):
            secondary["time"]["seconds_since_1958_tai"] = decoded.time.seconds
        out: Description = {
            "kind": "pus-tc" if is_tc else "pus-tm",
            "length": len(data),
            "primary_header": self._primary_header(data),
            "secondary_header": secondary,
            "user_data": value.user_data.hex(),
        }
        start = PRIMARY_HEADER_LENGTH + secondary_length
        application = self._application_data(
            PacketType.TC if is_tc else PacketType.TM,
            decoded.service,
            decoded.subtype,
            bytes(value.user_data),
            base + start,
        )
        if application is not None:
            out["application_data" if is_tc else "source_data"] = application
        out["packet_error_control"] = parsed.packet_error_control
        return out

    @staticmethod
    def _application_data(
        packet_type: PacketType, service: int, subtype: int, data: bytes, base: int
    ) -> Description | None:
        reader = _APPLICATION_DATA.get((packet_type, service, subtype))
        if reader is None:
            return None  # a mission-specific layout, or one that needs the dictionary
        try:
            reader.check(data)
        except ProtocolError as error:
            return _error(reader.kind, error, base)
        out: Description = {"kind": reader.kind}
        if reader.layout is not None:
            fields = _plain(reader.layout.parse(data))
            if reader.list_key is not None:
                out["n"] = len(fields)
                out[reader.list_key] = fields
            else:
                out.update(fields)
        return out

    def cfdp(self, data: bytes, base: int) -> Description:
        """One CFDP PDU: Metadata, File Data or EOF (727.0-B-5 5.1 to 5.3)."""
        pdu = cfdp_codec.decode_pdu(data)
        parsed = _CFDP_LAYOUTS[type(pdu)].parse(data)
        body = _plain(parsed.pdu.value)
        header = _with_name(body.pop("header"), "pdu_type", cfdp_codec.PduType)
        header = _with_name(header, "direction", cfdp_codec.Direction)
        header = _with_name(header, "transmission_mode", cfdp_codec.TransmissionMode)
        out: Description = {
            "kind": "cfdp",
            "length": len(data),
            "pdu": _CFDP_NAMES[type(pdu)],
            "header": header,
        }
        for key, item in body.items():
            if key == "directive_code":
                out.update(_with_name({key: item}, key, cfdp_codec.DirectiveCode))
            elif key == "parameters":
                out[key] = _with_name(item, "checksum_type", cfdp_codec.ChecksumType)
            elif key == "status":
                out[key] = _with_name(item, "condition_code", cfdp_codec.ConditionCode)
            elif key in ("source_file_name", "destination_file_name"):
                out[key] = item
                # File names are octets on the wire; show them as text too, escaping non-UTF-8.
                raw = bytes.fromhex(item)
                out[f"{key}_text"] = raw.decode("utf-8", errors="backslashreplace")
            else:
                out[key] = item
        out["pdu_crc"] = parsed.pdu_crc
        return out
