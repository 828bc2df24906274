"""ECSS PUS-C (ECSS-E-ST-70-41C) TC and TM packets and the application data of Penumbra services."""

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from types import MappingProxyType

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    BytesInteger,
    Bytewise,
    Checksum,
    Construct,
    Flag,
    GreedyBytes,
    Int16ub,
    PrefixedArray,
    RawCopy,
    Struct,
    this,
)

from flight.protocol.crc import append_crc16, check_crc16, crc16
from flight.protocol.cuc import CUC_T_FIELD, T_FIELD_LENGTH, CucTime
from flight.protocol.errors import (
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
    check_field,
)
from flight.protocol.icd import PUS_VERSION
from flight.protocol.spacepacket import (
    MAX_APID,
    MAX_DATA_LENGTH,
    MAX_SEQUENCE_COUNT,
    PRIMARY_HEADER,
    PRIMARY_HEADER_LENGTH,
    PacketType,
    SequenceFlags,
    SpacePacket,
    packet_length,
)

# Widths that 70-41C leaves to the mission, in octets. Every N, id, code and interval on the wire is
# an unsigned big-endian integer of its width.
COUNT_OCTETS = 1  # N, the number of entries that follow: at most 255 in one request or report
STRUCTURE_ID_OCTETS = 2  # housekeeping parameter report structure id
COLLECTION_INTERVAL_OCTETS = 4  # in milliseconds: the minimum sampling interval is 1 ms
EVENT_DEFINITION_ID_OCTETS = 2
FUNCTION_ID_OCTETS = 2
PARAMETER_ID_OCTETS = 2
FAILURE_CODE_OCTETS = 2
CONNECTION_TEST_APID_OCTETS = 2  # the 11-bit APID, right-aligned, the top 5 bits zero

TC_SECONDARY_HEADER_LENGTH = 5
TM_SECONDARY_HEADER_LENGTH = 7 + T_FIELD_LENGTH
PACKET_ERROR_CONTROL_LENGTH = 2
REQUEST_ID_LENGTH = 4
MAX_COUNT = (1 << (8 * COUNT_OCTETS)) - 1
MAX_APPLICATION_DATA = MAX_DATA_LENGTH - TC_SECONDARY_HEADER_LENGTH - PACKET_ERROR_CONTROL_LENGTH
MAX_SOURCE_DATA = MAX_DATA_LENGTH - TM_SECONDARY_HEADER_LENGTH - PACKET_ERROR_CONTROL_LENGTH
_MIN_TC_LENGTH = PRIMARY_HEADER_LENGTH + TC_SECONDARY_HEADER_LENGTH + PACKET_ERROR_CONTROL_LENGTH
_MIN_TM_LENGTH = PRIMARY_HEADER_LENGTH + TM_SECONDARY_HEADER_LENGTH + PACKET_ERROR_CONTROL_LENGTH


class Service(IntEnum):
    """Service type ids of the standard services Penumbra implements (70-41C clause 6)."""

    REQUEST_VERIFICATION = 1
    HOUSEKEEPING = 3
    EVENT_REPORTING = 5
    FUNCTION_MANAGEMENT = 8
    TEST = 17
    PARAMETER_MANAGEMENT = 20


class VerificationSubtype(IntEnum):
    """Service 1, request verification (70-41C 6.1). Progress reports (1.5/1.6) are not used."""

    ACCEPTANCE_SUCCESS = 1
    ACCEPTANCE_FAILURE = 2
    START_SUCCESS = 3
    START_FAILURE = 4
    COMPLETION_SUCCESS = 7
    COMPLETION_FAILURE = 8


class HousekeepingSubtype(IntEnum):
    """Service 3, housekeeping (70-41C 6.3)."""

    ENABLE_PERIODIC_REPORTS = 5
    DISABLE_PERIODIC_REPORTS = 6
    PARAMETER_REPORT = 25
    MODIFY_COLLECTION_INTERVAL = 31


class EventSubtype(IntEnum):
    """Service 5, event reporting (70-41C 6.5)."""

    INFORMATIVE = 1
    LOW_SEVERITY = 2
    MEDIUM_SEVERITY = 3
    HIGH_SEVERITY = 4
    ENABLE_REPORT_GENERATION = 5
    DISABLE_REPORT_GENERATION = 6


class FunctionSubtype(IntEnum):
    """Service 8, function management (70-41C 6.8)."""

    PERFORM_FUNCTION = 1


class TestSubtype(IntEnum):
    """Service 17, test (70-41C 6.17)."""

    __test__ = False  # not a test class, whatever pytest concludes from the name
    ARE_YOU_ALIVE = 1
    ARE_YOU_ALIVE_REPORT = 2
    CONNECTION_TEST = 3
    CONNECTION_TEST_REPORT = 4


class ParameterSubtype(IntEnum):
    """Service 20, on-board parameter management (70-41C 6.20)."""

    REPORT_VALUES = 1
    VALUE_REPORT = 2
    SET_VALUES = 3


SUBTYPES: Mapping[int, type[IntEnum]] = MappingProxyType(
    {
        Service.REQUEST_VERIFICATION: VerificationSubtype,
        Service.HOUSEKEEPING: HousekeepingSubtype,
        Service.EVENT_REPORTING: EventSubtype,
        Service.FUNCTION_MANAGEMENT: FunctionSubtype,
        Service.TEST: TestSubtype,
        Service.PARAMETER_MANAGEMENT: ParameterSubtype,
    }
)
"""The subtype enumeration of each service above, by service type id."""


def subtype_name(service: int, subtype: int) -> str | None:
    """The member name of a message subtype (`ARE_YOU_ALIVE` for 17/1), or None if unknown."""
    subtypes = SUBTYPES.get(service)
    if subtypes is None:
        return None
    try:
        return subtypes(subtype).name
    except ValueError:
        return None


class AckFlags(IntFlag):
    """TC acknowledgement flags (70-41C 7.4.3.1): the verification reports the sender asks for."""

    NONE = 0
    ACCEPTANCE = 0b0001
    START = 0b0010
    PROGRESS = 0b0100
    COMPLETION = 0b1000
    ALL = 0b1111


# Reference declarations. The dataclasses below are the fast paths, tested equal to these.

TC_SECONDARY_HEADER = BitStruct(
    "tc_packet_pus_version_number" / BitsInteger(4),
    "acknowledgement_flags" / BitsInteger(4),
    "service_type_id" / BitsInteger(8),
    "message_subtype_id" / BitsInteger(8),
    "source_id" / BitsInteger(16),
)
"""The TC packet secondary header, 70-41C 7.4.3.1 (without the optional spare field)."""


def tm_secondary_header(time: Construct = CUC_T_FIELD) -> Construct:
    """The TM packet secondary header, 70-41C 7.4.3.2, with a time field (no spare field).

    The time format is mission-defined: Penumbra's is the CUC T-field of the ICD. `Pass` gives the
    header of packets without a time field, as in some published examples.
    """
    return BitStruct(
        "tm_packet_pus_version_number" / BitsInteger(4),
        "spacecraft_time_reference_status" / BitsInteger(4),
        "service_type_id" / BitsInteger(8),
        "message_subtype_id" / BitsInteger(8),
        "message_type_counter" / BitsInteger(16),
        "destination_id" / BitsInteger(16),
        "time" / Bytewise(time),
    )


TM_SECONDARY_HEADER = tm_secondary_header()


def _packet(secondary_header: Construct, secondary_header_length: int) -> Construct:
    user_data_length = (
        this.primary_header.packet_data_length
        + 1
        - secondary_header_length
        - PACKET_ERROR_CONTROL_LENGTH
    )
    return Struct(
        "packet"
        / RawCopy(
            Struct(
                "primary_header" / PRIMARY_HEADER,
                "secondary_header" / secondary_header,
                "user_data" / Bytes(user_data_length),
            )
        ),
        "packet_error_control" / Checksum(Int16ub, crc16, this.packet.data),
    )


PUS_TC_PACKET = _packet(TC_SECONDARY_HEADER, TC_SECONDARY_HEADER_LENGTH)
"""A whole TC packet, 70-41C 7.4.1: primary header, secondary header, application data and the
packet error control field (CRC-16/CCITT-FALSE over all octets before it). Reference for `PusTc`."""


def pus_tm_packet(time: Construct = CUC_T_FIELD, time_octets: int = T_FIELD_LENGTH) -> Construct:
    """A whole TM packet, 70-41C 7.4.1, with the given time field. Reference for `PusTm`."""
    return _packet(tm_secondary_header(time), 7 + time_octets)


PUS_TM_PACKET = pus_tm_packet()

REQUEST_ID = BitStruct(
    "packet_version_number" / BitsInteger(3),
    "packet_type" / BitsInteger(1),
    "secondary_header_flag" / Flag,
    "apid" / BitsInteger(11),
    "sequence_flags" / BitsInteger(2),
    "packet_sequence_count" / BitsInteger(14),
)
"""The request id, 70-41C 5.4.11.4 and 6.1.4.2: the first 4 octets of the request's packet."""

VERIFICATION_SUCCESS = Struct("request_id" / REQUEST_ID)
"""Reports 1.1, 1.3 and 1.7, 70-41C 8.1.2.1/8.1.2.3/8.1.2.7."""

VERIFICATION_FAILURE = Struct(
    "request_id" / REQUEST_ID,
    "failure_code" / BytesInteger(FAILURE_CODE_OCTETS),
    "failure_data" / GreedyBytes,
)
"""Reports 1.2, 1.4 and 1.8 with their failure notice, 70-41C 8.1.2.2/8.1.2.4/8.1.2.8."""

HOUSEKEEPING_PARAMETER_REPORT = Struct(
    "housekeeping_parameter_report_structure_id" / BytesInteger(STRUCTURE_ID_OCTETS),
    "parameter_values" / GreedyBytes,
)
"""Report 3.25, 70-41C 8.3.2.25; the parameter values are laid out by the structure's definition."""

HOUSEKEEPING_STRUCTURE_IDS = PrefixedArray(
    BytesInteger(COUNT_OCTETS), BytesInteger(STRUCTURE_ID_OCTETS)
)
"""Requests 3.5 and 3.6, 70-41C 8.3.2.5/8.3.2.6: N structure ids."""

COLLECTION_INTERVALS = PrefixedArray(
    BytesInteger(COUNT_OCTETS),
    Struct(
        "housekeeping_parameter_report_structure_id" / BytesInteger(STRUCTURE_ID_OCTETS),
        "collection_interval" / BytesInteger(COLLECTION_INTERVAL_OCTETS),
    ),
)
"""Request 3.31, 70-41C 8.3.2.31: N (structure id, collection interval)."""

EVENT_REPORT = Struct(
    "event_definition_id" / BytesInteger(EVENT_DEFINITION_ID_OCTETS),
    "auxiliary_data" / GreedyBytes,
)
"""Reports 5.1 to 5.4, 70-41C 8.5.2.1 to 8.5.2.4."""

EVENT_DEFINITION_IDS = PrefixedArray(
    BytesInteger(COUNT_OCTETS), BytesInteger(EVENT_DEFINITION_ID_OCTETS)
)
"""Requests 5.5 and 5.6, 70-41C 8.5.2.5/8.5.2.6: N event definition ids."""

PERFORM_FUNCTION = Struct(
    "function_id" / BytesInteger(FUNCTION_ID_OCTETS),
    "arguments" / GreedyBytes,
)
"""Request 8.1, 70-41C 8.8.2.1; the arguments are laid out by the function's definition."""

CONNECTION_TEST = Struct("apid" / BytesInteger(CONNECTION_TEST_APID_OCTETS))
"""Request 17.3 and report 17.4, 70-41C 8.17.2.3/8.17.2.4."""

PARAMETER_IDS = PrefixedArray(BytesInteger(COUNT_OCTETS), BytesInteger(PARAMETER_ID_OCTETS))
"""Request 20.1, 70-41C 8.20.2.1: N parameter ids."""


def parameter_values(value_length: Callable[[int], int]) -> Construct:
    """Report 20.2 and request 20.3, 70-41C 8.20.2.2/8.20.2.3: N (parameter id, value).

    Each value's width follows from its parameter id, as the standard says.
    """
    return PrefixedArray(
        BytesInteger(COUNT_OCTETS),
        Struct(
            "parameter_id" / BytesInteger(PARAMETER_ID_OCTETS),
            "parameter_value" / Bytes(lambda this: value_length(this.parameter_id)),
        ),
    )


# Fast paths.

_TC_HEADERS = struct.Struct(">HHHBBBH")  # primary + TC secondary header
_TC_SECONDARY = struct.Struct(">BBBH")
_TM_HEADERS = struct.Struct(">HHHBBBHH")  # primary + TM secondary header before the time
_TM_SECONDARY = struct.Struct(">BBBHH")


def _uint_code(octets: int) -> str:
    """The struct code of an unsigned integer of `octets` (1, 2, 4 or 8)."""
    return {1: "B", 2: "H", 4: "I", 8: "Q"}[octets]


_COUNT = struct.Struct(">" + _uint_code(COUNT_OCTETS))
_STRUCTURE_ID = struct.Struct(">" + _uint_code(STRUCTURE_ID_OCTETS))
_EVENT_DEFINITION_ID = struct.Struct(">" + _uint_code(EVENT_DEFINITION_ID_OCTETS))
_FUNCTION_ID = struct.Struct(">" + _uint_code(FUNCTION_ID_OCTETS))
_PARAMETER_ID = struct.Struct(">" + _uint_code(PARAMETER_ID_OCTETS))
_FAILURE_CODE = struct.Struct(">" + _uint_code(FAILURE_CODE_OCTETS))
_CONNECTION_TEST_APID = struct.Struct(">" + _uint_code(CONNECTION_TEST_APID_OCTETS))
_COLLECTION_INTERVAL = struct.Struct(
    ">" + _uint_code(STRUCTURE_ID_OCTETS) + _uint_code(COLLECTION_INTERVAL_OCTETS)
)
_REQUEST_ID = struct.Struct(">HH")
_CRC_PLACEHOLDER = bytes(PACKET_ERROR_CONTROL_LENGTH)
_EPOCH = CucTime(0, 0)

Buffer = bytes | bytearray | memoryview


def _with_crc(packet: bytes) -> bytes:
    """`packet` with its last two octets replaced by the packet error control over the rest."""
    return append_crc16(packet[:-PACKET_ERROR_CONTROL_LENGTH])


def _check_packet(buffer: Buffer, minimum: int, what: str) -> int:
    """Check lengths and CRC of a whole PUS packet before reading any field; return its length."""
    total = packet_length(buffer)
    if len(buffer) < total:
        raise TruncatedError(f"{what} of {total} octets, only {len(buffer)} present", offset=0)
    if len(buffer) > total:
        raise LengthError(
            f"packet data length says {total} octets, buffer has {len(buffer)}", offset=4
        )
    if total < minimum:
        raise LengthError(
            f"{what} needs a packet data field of at least {minimum - PRIMARY_HEADER_LENGTH} "
            f"octets, this one has {total - PRIMARY_HEADER_LENGTH}",
            offset=4,
        )
    check_crc16(buffer, what)
    return total


def _check_primary(word0: int, word1: int, packet_type: PacketType, what: str) -> None:
    if (word0 >> 12) & 1 != packet_type:
        raise FieldError(
            f"packet type is {PacketType((word0 >> 12) & 1).name}, expected a {what}", offset=0
        )
    if not word0 & 0x0800:
        raise FieldError(f"secondary header flag is 0, a {what} has a secondary header", offset=0)
    if word1 >> 14 != SequenceFlags.UNSEGMENTED:
        # ICD choice: PUS packets stand alone; segmentation is CFDP's job, not the packet layer's.
        raise FieldError(f"sequence flags are {word1 >> 14:02b}, a {what} is unsegmented", offset=2)


@dataclass(frozen=True, slots=True)
class PusTc:
    """A PUS-C telecommand packet, 70-41C 7.4."""

    apid: int
    sequence_count: int
    service: int
    subtype: int
    app_data: bytes = b""
    source_id: int = 0
    ack_flags: AckFlags = AckFlags.ALL

    def encode(self) -> bytes:
        """The whole Space Packet, packet error control included."""
        check_field(self.service, 0xFF, "service type id")
        check_field(self.subtype, 0xFF, "message subtype id")
        check_field(self.source_id, 0xFFFF, "source id")
        check_field(self.ack_flags, 0xF, "acknowledgement flags")
        header = _TC_SECONDARY.pack(
            (PUS_VERSION << 4) | self.ack_flags, self.service, self.subtype, self.source_id
        )
        packet = SpacePacket(
            PacketType.TC,
            self.apid,
            self.sequence_count,
            header + self.app_data + _CRC_PLACEHOLDER,
            secondary_header_flag=True,
        )
        return _with_crc(packet.encode())

    @classmethod
    def decode(cls, buffer: Buffer) -> "PusTc":
        """Decode exactly one TC packet."""
        total = _check_packet(buffer, _MIN_TC_LENGTH, "PUS TC packet")
        word0, word1, _, version_ack, service, subtype, source_id = _TC_HEADERS.unpack_from(buffer)
        _check_primary(word0, word1, PacketType.TC, "PUS TC packet")
        if version_ack >> 4 != PUS_VERSION:
            raise FieldError(
                f"TC packet PUS version number {version_ack >> 4}, expected {PUS_VERSION}",
                offset=PRIMARY_HEADER_LENGTH,
            )
        return cls(
            word0 & MAX_APID,
            word1 & MAX_SEQUENCE_COUNT,
            service,
            subtype,
            bytes(buffer[_TC_HEADERS.size : total - PACKET_ERROR_CONTROL_LENGTH]),
            source_id,
            AckFlags(version_ack & 0xF),
        )

    @classmethod
    def from_packet(cls, packet: SpacePacket) -> "PusTc":
        """The TC carried by an already cut Space Packet (the CRC covers its primary header too)."""
        return cls.decode(packet.encode())


@dataclass(frozen=True, slots=True)
class PusTm:
    """A PUS-C telemetry packet, 70-41C 7.4, stamped with the ICD's CUC time."""

    apid: int
    sequence_count: int
    service: int
    subtype: int
    source_data: bytes = b""
    destination_id: int = 0
    message_type_counter: int = 0
    time: CucTime = _EPOCH
    time_reference_status: int = 0

    def encode(self) -> bytes:
        """The whole Space Packet, packet error control included."""
        check_field(self.service, 0xFF, "service type id")
        check_field(self.subtype, 0xFF, "message subtype id")
        check_field(self.destination_id, 0xFFFF, "destination id")
        check_field(self.message_type_counter, 0xFFFF, "message type counter")
        check_field(self.time_reference_status, 0xF, "spacecraft time reference status")
        header = _TM_SECONDARY.pack(
            (PUS_VERSION << 4) | self.time_reference_status,
            self.service,
            self.subtype,
            self.message_type_counter,
            self.destination_id,
        )
        packet = SpacePacket(
            PacketType.TM,
            self.apid,
            self.sequence_count,
            header + self.time.encode() + self.source_data + _CRC_PLACEHOLDER,
            secondary_header_flag=True,
        )
        return _with_crc(packet.encode())

    @classmethod
    def decode(cls, buffer: Buffer) -> "PusTm":
        """Decode exactly one TM packet."""
        total = _check_packet(buffer, _MIN_TM_LENGTH, "PUS TM packet")
        word0, word1, _, version_status, service, subtype, counter, destination = (
            _TM_HEADERS.unpack_from(buffer)
        )
        _check_primary(word0, word1, PacketType.TM, "PUS TM packet")
        if version_status >> 4 != PUS_VERSION:
            raise FieldError(
                f"TM packet PUS version number {version_status >> 4}, expected {PUS_VERSION}",
                offset=PRIMARY_HEADER_LENGTH,
            )
        time, start = CucTime.decode_from(buffer, _TM_HEADERS.size)
        return cls(
            word0 & MAX_APID,
            word1 & MAX_SEQUENCE_COUNT,
            service,
            subtype,
            bytes(buffer[start : total - PACKET_ERROR_CONTROL_LENGTH]),
            destination,
            counter,
            time,
            version_status & 0xF,
        )

    @classmethod
    def from_packet(cls, packet: SpacePacket) -> "PusTm":
        """The TM carried by an already cut Space Packet (the CRC covers its primary header too)."""
        return cls.decode(packet.encode())


def decode_packet(buffer: Buffer) -> PusTc | PusTm:
    """Decode exactly one PUS packet, TC or TM as its packet type says."""
    packet_length(buffer)  # checks the header is there and its version before reading the type bit
    return PusTc.decode(buffer) if buffer[0] & 0x10 else PusTm.decode(buffer)


def accept_pus(packet: SpacePacket) -> bool:
    """Whether `packet` is a well-formed PUS packet: an `accept` check for `PacketStream`."""
    try:
        decode_packet(packet.encode())
    except ProtocolError:
        return False
    return True


# Application data of the services. Decoders take the application data (TC) or source data (TM)
# field alone; their error offsets count from its first octet.


def _check_exact(data: Buffer, end: int, what: str) -> None:
    if len(data) < end:
        raise TruncatedError(f"{what} needs {end} octets, {len(data)} present", offset=len(data))
    if len(data) > end:
        raise LengthError(f"{what} is {end} octets, {len(data) - end} more follow", offset=end)


def _count(data: Buffer, entry_octets: int, what: str) -> int:
    """N, after checking that the data holds exactly N entries of `entry_octets`."""
    if len(data) < COUNT_OCTETS:
        raise TruncatedError(f"{what}: the number of entries is missing", offset=0)
    (count,) = _COUNT.unpack_from(data)
    _check_exact(data, COUNT_OCTETS + count * entry_octets, f"{what} of {count} entries")
    return count


def _encode_ids(ids: tuple[int, ...], id_struct: struct.Struct, what: str) -> bytes:
    if len(ids) > MAX_COUNT:
        raise LengthError(f"{len(ids)} {what}s, at most {MAX_COUNT} fit one packet")
    maximum = (1 << (8 * id_struct.size)) - 1
    for identifier in ids:
        check_field(identifier, maximum, what)
    return _COUNT.pack(len(ids)) + struct.pack(f">{len(ids)}{id_struct.format[1:]}", *ids)


def _decode_ids(data: Buffer, id_struct: struct.Struct, what: str) -> tuple[int, ...]:
    count = _count(data, id_struct.size, f"list of {what}s")
    return struct.unpack_from(f">{count}{id_struct.format[1:]}", data, COUNT_OCTETS)


def _frozen_tuple(instance: object, name: str) -> None:
    # Accept any iterable from callers but keep the value hashable and immutable.
    object.__setattr__(instance, name, tuple(getattr(instance, name)))


@dataclass(frozen=True, slots=True)
class RequestId:
    """Identifies a TC in its verification reports (70-41C 5.4.11.4): its primary header's first 4
    octets, kept as received, even when they are what made the TC fail."""

    packet_version_number: int
    packet_type: PacketType
    secondary_header_flag: bool
    apid: int
    sequence_flags: SequenceFlags
    sequence_count: int

    @classmethod
    def from_tc(cls, tc: PusTc) -> "RequestId":
        return cls(0, PacketType.TC, True, tc.apid, SequenceFlags.UNSEGMENTED, tc.sequence_count)

    @classmethod
    def from_packet(cls, packet: SpacePacket) -> "RequestId":
        return cls(
            0,
            packet.packet_type,
            packet.secondary_header_flag,
            packet.apid,
            packet.sequence_flags,
            packet.sequence_count,
        )

    def encode(self) -> bytes:
        check_field(self.packet_version_number, 0b111, "packet version number")
        check_field(self.packet_type, 1, "packet type")
        check_field(self.apid, MAX_APID, "APID")
        check_field(self.sequence_flags, 0b11, "sequence flags")
        check_field(self.sequence_count, MAX_SEQUENCE_COUNT, "sequence count")
        word0 = (
            (self.packet_version_number << 13)
            | (self.packet_type << 12)
            | (bool(self.secondary_header_flag) << 11)
            | self.apid
        )
        return _REQUEST_ID.pack(word0, (self.sequence_flags << 14) | self.sequence_count)

    @classmethod
    def decode_from(cls, data: Buffer, offset: int = 0) -> tuple["RequestId", int]:
        if len(data) - offset < REQUEST_ID_LENGTH:
            raise TruncatedError(
                f"request id needs {REQUEST_ID_LENGTH} octets, {len(data) - offset} present",
                offset=offset,
            )
        word0, word1 = _REQUEST_ID.unpack_from(data, offset)
        request_id = cls(
            word0 >> 13,
            PacketType((word0 >> 12) & 1),
            bool(word0 & 0x0800),
            word0 & MAX_APID,
            SequenceFlags(word1 >> 14),
            word1 & MAX_SEQUENCE_COUNT,
        )
        return request_id, offset + REQUEST_ID_LENGTH

    @classmethod
    def decode(cls, data: Buffer) -> "RequestId":
        _check_exact(data, REQUEST_ID_LENGTH, "request id")
        return cls.decode_from(data)[0]


@dataclass(frozen=True, slots=True)
class VerificationSuccess:
    """Successful acceptance (1.1), start (1.3) or completion (1.7) verification report."""

    request_id: RequestId

    def encode(self) -> bytes:
        return self.request_id.encode()

    @classmethod
    def decode(cls, data: Buffer) -> "VerificationSuccess":
        return cls(RequestId.decode(data))


@dataclass(frozen=True, slots=True)
class VerificationFailure:
    """Failed acceptance (1.2), start (1.4) or completion (1.8) verification report: the request id
    and a failure notice (a failure code, then data whose layout the code defines)."""

    request_id: RequestId
    failure_code: int
    failure_data: bytes = b""

    def encode(self) -> bytes:
        check_field(self.failure_code, (1 << (8 * FAILURE_CODE_OCTETS)) - 1, "failure code")
        return self.request_id.encode() + _FAILURE_CODE.pack(self.failure_code) + self.failure_data

    @classmethod
    def decode(cls, data: Buffer) -> "VerificationFailure":
        if len(data) < REQUEST_ID_LENGTH + FAILURE_CODE_OCTETS:
            raise TruncatedError(
                f"failure report needs {REQUEST_ID_LENGTH + FAILURE_CODE_OCTETS} octets, "
                f"{len(data)} present",
                offset=len(data),
            )
        request_id, offset = RequestId.decode_from(data)
        (code,) = _FAILURE_CODE.unpack_from(data, offset)
        return cls(request_id, code, bytes(data[offset + FAILURE_CODE_OCTETS :]))


@dataclass(frozen=True, slots=True)
class HousekeepingParameterReport:
    """Report 3.25: a structure id and the parameter values that its definition lays out."""

    structure_id: int
    parameter_values: bytes = b""

    def encode(self) -> bytes:
        check_field(self.structure_id, (1 << (8 * STRUCTURE_ID_OCTETS)) - 1, "structure id")
        return _STRUCTURE_ID.pack(self.structure_id) + self.parameter_values

    @classmethod
    def decode(cls, data: Buffer) -> "HousekeepingParameterReport":
        if len(data) < STRUCTURE_ID_OCTETS:
            raise TruncatedError("housekeeping report: structure id missing", offset=len(data))
        (structure_id,) = _STRUCTURE_ID.unpack_from(data)
        return cls(structure_id, bytes(data[STRUCTURE_ID_OCTETS:]))


@dataclass(frozen=True, slots=True)
class HousekeepingStructureIds:
    """Requests 3.5 and 3.6: enable or disable the periodic generation of these reports."""

    structure_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        _frozen_tuple(self, "structure_ids")

    def encode(self) -> bytes:
        return _encode_ids(self.structure_ids, _STRUCTURE_ID, "structure id")

    @classmethod
    def decode(cls, data: Buffer) -> "HousekeepingStructureIds":
        return cls(_decode_ids(data, _STRUCTURE_ID, "structure id"))


@dataclass(frozen=True, slots=True)
class CollectionInterval:
    """One entry of request 3.31."""

    structure_id: int
    collection_interval_ms: int


@dataclass(frozen=True, slots=True)
class ModifyCollectionIntervals:
    """Request 3.31: modify the collection interval of housekeeping report structures."""

    intervals: tuple[CollectionInterval, ...]

    def __post_init__(self) -> None:
        _frozen_tuple(self, "intervals")

    def encode(self) -> bytes:
        if len(self.intervals) > MAX_COUNT:
            raise LengthError(
                f"{len(self.intervals)} intervals, at most {MAX_COUNT} fit one packet"
            )
        parts = [_COUNT.pack(len(self.intervals))]
        for entry in self.intervals:
            check_field(entry.structure_id, (1 << (8 * STRUCTURE_ID_OCTETS)) - 1, "structure id")
            check_field(
                entry.collection_interval_ms,
                (1 << (8 * COLLECTION_INTERVAL_OCTETS)) - 1,
                "collection interval (ms)",
            )
            parts.append(
                _COLLECTION_INTERVAL.pack(entry.structure_id, entry.collection_interval_ms)
            )
        return b"".join(parts)

    @classmethod
    def decode(cls, data: Buffer) -> "ModifyCollectionIntervals":
        count = _count(data, _COLLECTION_INTERVAL.size, "list of collection intervals")
        return cls(
            tuple(
                CollectionInterval(*fields)
                for fields in _COLLECTION_INTERVAL.iter_unpack(
                    data[COUNT_OCTETS : COUNT_OCTETS + count * _COLLECTION_INTERVAL.size]
                )
            )
        )


@dataclass(frozen=True, slots=True)
class EventReport:
    """Reports 5.1 to 5.4 (the subtype is the severity): an event definition id, auxiliary data."""

    event_definition_id: int
    auxiliary_data: bytes = b""

    def encode(self) -> bytes:
        check_field(
            self.event_definition_id,
            (1 << (8 * EVENT_DEFINITION_ID_OCTETS)) - 1,
            "event definition id",
        )
        return _EVENT_DEFINITION_ID.pack(self.event_definition_id) + self.auxiliary_data

    @classmethod
    def decode(cls, data: Buffer) -> "EventReport":
        if len(data) < EVENT_DEFINITION_ID_OCTETS:
            raise TruncatedError("event report: event definition id missing", offset=len(data))
        (event_definition_id,) = _EVENT_DEFINITION_ID.unpack_from(data)
        return cls(event_definition_id, bytes(data[EVENT_DEFINITION_ID_OCTETS:]))


@dataclass(frozen=True, slots=True)
class EventDefinitionIds:
    """Requests 5.5 and 5.6: enable or disable the report generation of these event definitions."""

    event_definition_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        _frozen_tuple(self, "event_definition_ids")

    def encode(self) -> bytes:
        return _encode_ids(self.event_definition_ids, _EVENT_DEFINITION_ID, "event definition id")

    @classmethod
    def decode(cls, data: Buffer) -> "EventDefinitionIds":
        return cls(_decode_ids(data, _EVENT_DEFINITION_ID, "event definition id"))


@dataclass(frozen=True, slots=True)
class PerformFunction:
    """Request 8.1: a function id and the argument octets that the function's definition defines."""

    function_id: int
    arguments: bytes = b""

    def encode(self) -> bytes:
        check_field(self.function_id, (1 << (8 * FUNCTION_ID_OCTETS)) - 1, "function id")
        return _FUNCTION_ID.pack(self.function_id) + self.arguments

    @classmethod
    def decode(cls, data: Buffer) -> "PerformFunction":
        if len(data) < FUNCTION_ID_OCTETS:
            raise TruncatedError("perform function: function id missing", offset=len(data))
        (function_id,) = _FUNCTION_ID.unpack_from(data)
        return cls(function_id, bytes(data[FUNCTION_ID_OCTETS:]))


@dataclass(frozen=True, slots=True)
class ConnectionTest:
    """Request 17.3 and report 17.4: the APID of the application process to test."""

    apid: int

    def encode(self) -> bytes:
        check_field(self.apid, MAX_APID, "APID")
        return _CONNECTION_TEST_APID.pack(self.apid)

    @classmethod
    def decode(cls, data: Buffer) -> "ConnectionTest":
        _check_exact(data, CONNECTION_TEST_APID_OCTETS, "connection test")
        (apid,) = _CONNECTION_TEST_APID.unpack_from(data)
        if apid > MAX_APID:
            raise FieldError(f"connection test APID {apid:#x} does not fit 11 bits", offset=0)
        return cls(apid)


@dataclass(frozen=True, slots=True)
class ParameterIds:
    """Request 20.1: report the values of these parameters."""

    parameter_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        _frozen_tuple(self, "parameter_ids")

    def encode(self) -> bytes:
        return _encode_ids(self.parameter_ids, _PARAMETER_ID, "parameter id")

    @classmethod
    def decode(cls, data: Buffer) -> "ParameterIds":
        return cls(_decode_ids(data, _PARAMETER_ID, "parameter id"))


@dataclass(frozen=True, slots=True)
class ParameterValue:
    """One entry of 20.2 and 20.3: a parameter id and its value's octets."""

    parameter_id: int
    value: bytes


@dataclass(frozen=True, slots=True)
class ParameterValues:
    """Report 20.2 and request 20.3: parameter ids with their values.

    A value's width is not on the wire: decoders ask `value_length(parameter_id)` (octets), which
    raises LookupError (or returns None) for an unknown id.
    """

    values: tuple[ParameterValue, ...]

    def __post_init__(self) -> None:
        _frozen_tuple(self, "values")

    def encode(self) -> bytes:
        if len(self.values) > MAX_COUNT:
            raise LengthError(f"{len(self.values)} parameters, at most {MAX_COUNT} fit one packet")
        parts = [_COUNT.pack(len(self.values))]
        for entry in self.values:
            check_field(entry.parameter_id, (1 << (8 * PARAMETER_ID_OCTETS)) - 1, "parameter id")
            parts.append(_PARAMETER_ID.pack(entry.parameter_id))
            parts.append(entry.value)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: Buffer, value_length: Callable[[int], int | None]) -> "ParameterValues":
        if len(data) < COUNT_OCTETS:
            raise TruncatedError("parameter values: the number of entries is missing", offset=0)
        (count,) = _COUNT.unpack_from(data)
        offset = COUNT_OCTETS
        values = []
        for _ in range(count):
            if len(data) - offset < PARAMETER_ID_OCTETS:
                raise TruncatedError(f"parameter values: {count} entries, data ends", offset=offset)
            (parameter_id,) = _PARAMETER_ID.unpack_from(data, offset)
            try:
                length = value_length(parameter_id)
            except LookupError:
                length = None
            if length is None or length < 0:
                raise FieldError(f"unknown parameter id {parameter_id}", offset=offset)
            offset += PARAMETER_ID_OCTETS
            if len(data) - offset < length:
                raise TruncatedError(
                    f"parameter {parameter_id} needs {length} octets, {len(data) - offset} present",
                    offset=offset,
                )
            values.append(ParameterValue(parameter_id, bytes(data[offset : offset + length])))
            offset += length
        _check_exact(data, offset, f"parameter values of {count} entries")
        return cls(tuple(values))
