"""CFDP class 1 (unacknowledged) file transfer, CCSDS 727.0-B-5: PDU codecs, sender and receiver."""

import bisect
import errno
import os
import struct
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

from construct import (
    BitsInteger,
    BitStruct,
    Checksum,
    Const,
    FixedSized,
    Flag,
    GreedyBytes,
    GreedyRange,
    If,
    IfThenElse,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Prefixed,
    RawCopy,
    Struct,
    Terminated,
    this,
)

from flight.protocol.crc import append_crc16, check_crc16, crc16, crc32
from flight.protocol.errors import (
    AddressError,
    FieldError,
    LengthError,
    TruncatedError,
)

CFDP_VERSION = 1  # 727.0-B-5 5.1: '001' is the version of this edition
FIXED_HEADER_LENGTH = 4
MAX_DATA_FIELD_LENGTH = 0xFFFF
MAX_ID_OCTETS = 8  # the length fields hold octets - 1 in 3 bits
MAX_LV_LENGTH = 0xFF
MAX_SEGMENT_METADATA_LENGTH = 0x3F
ENTITY_ID_TLV_TYPE = 0x06  # Entity ID TLV: the fault location of an EOF

ENTITY_ID_OCTETS = 2
"""Mission choice: entity ids are 2 octets (one per node and ground station)."""

SEQUENCE_NUMBER_OCTETS = 4
"""Mission choice: sequence numbers are 4 octets, so a persisted counter never wraps."""

MAX_RECEIVED_FILE_SIZE = 1 << 32
"""Default limit on a received file: a wild offset must not make an exabyte sparse file on flash."""

DEFAULT_INACTIVITY_TIMEOUT_S = 600.0
"""Default receiver inactivity limit (727.0-B-5 transaction inactivity timer). Class 1 cannot
resume, so a partial file idle for longer than this is dropped."""

DEFAULT_MAX_ACTIVE_TRANSACTIONS = 16
"""Default limit on transfers in progress at one receiver: each holds a descriptor and a file."""

PARTIAL_PREFIX = ".cfdp-"
PARTIAL_SUFFIX = ".part"
_CHECKSUM_CHUNK = 1 << 16


class PduType(IntEnum):
    """727.0-B-5 5.1, PDU header."""

    FILE_DIRECTIVE = 0
    FILE_DATA = 1


class Direction(IntEnum):
    """727.0-B-5 5.1, PDU header."""

    TOWARD_RECEIVER = 0
    TOWARD_SENDER = 1


class TransmissionMode(IntEnum):
    """727.0-B-5 5.1, PDU header."""

    ACKNOWLEDGED = 0
    UNACKNOWLEDGED = 1


class DirectiveCode(IntEnum):
    """727.0-B-5 5.2, file directive codes."""

    EOF = 0x04
    FINISHED = 0x05
    ACK = 0x06
    METADATA = 0x07
    NAK = 0x08
    PROMPT = 0x09
    KEEP_ALIVE = 0x0C


class ConditionCode(IntEnum):
    """727.0-B-5 condition codes (EOF 5.2.2); 0b1100 and 0b1101 are reserved."""

    NO_ERROR = 0
    POSITIVE_ACK_LIMIT_REACHED = 1
    KEEP_ALIVE_LIMIT_REACHED = 2
    INVALID_TRANSMISSION_MODE = 3
    FILESTORE_REJECTION = 4
    FILE_CHECKSUM_FAILURE = 5
    FILE_SIZE_ERROR = 6
    NAK_LIMIT_REACHED = 7
    INACTIVITY_DETECTED = 8
    INVALID_FILE_STRUCTURE = 9
    CHECK_LIMIT_REACHED = 10
    UNSUPPORTED_CHECKSUM_TYPE = 11
    SUSPEND_REQUEST_RECEIVED = 14
    CANCEL_REQUEST_RECEIVED = 15


class ChecksumType(IntEnum):
    """SANA checksum identifiers registry, named by the Metadata PDU (727.0-B-5 5.2.5)."""

    MODULAR = 0
    CRC32_PROXIMITY_1 = 1
    CRC32C = 2
    CRC32 = 3  # IEEE 802.3 / zlib: Penumbra's choice
    NULL = 15


class RecordContinuationState(IntEnum):
    """727.0-B-5 5.3 (only with segment metadata)."""

    NEITHER_START_NOR_END = 0
    START = 1
    END = 2
    START_AND_END = 3


# --- reference declarations (construct) ------------------------------------------------------

PDU_HEADER = BitStruct(
    "version" / Const(CFDP_VERSION, BitsInteger(3)),
    "pdu_type" / BitsInteger(1),
    "direction" / BitsInteger(1),
    "transmission_mode" / BitsInteger(1),
    "crc_flag" / Flag,
    "large_file_flag" / Flag,
    "pdu_data_field_length" / BitsInteger(16),
    "segmentation_control" / BitsInteger(1),
    "length_of_entity_ids" / BitsInteger(3),
    "segment_metadata_flag" / Flag,
    "length_of_transaction_sequence_number" / BitsInteger(3),
    "source_entity_id" / BitsInteger(8 * (this.length_of_entity_ids + 1)),
    "transaction_sequence_number"
    / BitsInteger(8 * (this.length_of_transaction_sequence_number + 1)),
    "destination_entity_id" / BitsInteger(8 * (this.length_of_entity_ids + 1)),
)
"""The fixed PDU header, 727.0-B-5 5.1. The length fields hold octets - 1.
Reference declaration; `PduHeader` is the fast path."""

_FSS = IfThenElse(this.header.large_file_flag, Int64ub, Int32ub)  # File-Size Sensitive
_LV = Prefixed(Int8ub, GreedyBytes)  # Length-Value, the length in one octet
TLV = Struct("type" / Int8ub, "value" / Prefixed(Int8ub, GreedyBytes))
"""727.0-B-5 Type-Length-Value: type and length one octet each."""


# Item access, not attributes: construct hands these a Container when parsing but the caller's dict
# when building.
def _fss_octets(ctx: dict) -> int:
    return 8 if ctx["header"]["large_file_flag"] else 4


def _payload_octets(ctx: dict) -> int:
    """Octets of the PDU data field, without the CRC when there is one."""
    header = ctx["header"]
    return header["pdu_data_field_length"] - 2 * header["crc_flag"]


def _crc_protected(body: Struct) -> Struct:
    """A PDU: `body` (header and data field), then its CRC-16 when crc_flag is set (5.1)."""
    return Struct(
        "pdu" / RawCopy(body),
        "pdu_crc" / If(this.pdu.value.header.crc_flag, Checksum(Int16ub, crc16, this.pdu.data)),
        Terminated,
    )


METADATA_PDU = _crc_protected(
    Struct(
        "header" / PDU_HEADER,
        "directive_code" / Const(DirectiveCode.METADATA, Int8ub),
        "parameters"
        / BitStruct(
            "reserved_1" / Const(0, BitsInteger(1)),
            "closure_requested" / Flag,
            "reserved_2" / Const(0, BitsInteger(2)),
            "checksum_type" / BitsInteger(4),
        ),
        "file_size" / _FSS,
        "source_file_name" / _LV,
        "destination_file_name" / _LV,
        "options"
        / FixedSized(
            lambda ctx: (
                _payload_octets(ctx)
                - 4
                - _fss_octets(ctx)
                - len(ctx["source_file_name"])
                - len(ctx["destination_file_name"])
            ),
            GreedyRange(TLV),
        ),
    )
)
"""Metadata PDU, 727.0-B-5 5.2.5. Reference declaration; `MetadataPdu` is the fast path."""

FILE_DATA_PDU = _crc_protected(
    Struct(
        "header" / PDU_HEADER,
        "segment_metadata"
        / If(
            this.header.segment_metadata_flag,
            Struct(
                "segment"
                / BitStruct(
                    "record_continuation_state" / BitsInteger(2),
                    "segment_metadata_length" / BitsInteger(6),
                ),
                "segment_metadata" / FixedSized(this.segment.segment_metadata_length, GreedyBytes),
            ),
        ),
        "offset" / _FSS,
        "file_data"
        / FixedSized(
            lambda ctx: (
                _payload_octets(ctx)
                - _fss_octets(ctx)
                - (
                    1 + ctx["segment_metadata"]["segment"]["segment_metadata_length"]
                    if ctx["header"]["segment_metadata_flag"]
                    else 0
                )
            ),
            GreedyBytes,
        ),
    )
)
"""File Data PDU, 727.0-B-5 5.3. Reference declaration; `FileDataPdu` is the fast path."""

EOF_PDU = _crc_protected(
    Struct(
        "header" / PDU_HEADER,
        "directive_code" / Const(DirectiveCode.EOF, Int8ub),
        "status" / BitStruct("condition_code" / BitsInteger(4), "spare" / Const(0, BitsInteger(4))),
        "file_checksum" / Int32ub,
        "file_size" / _FSS,
        "fault_location" / If(lambda ctx: _payload_octets(ctx) > 6 + _fss_octets(ctx), TLV),
    )
)
"""EOF PDU, 727.0-B-5 5.2.2. Reference declaration; `EofPdu` is the fast path."""


# --- values and the hand-written codec -----------------------------------------------------

_FIXED_HEADER = struct.Struct(">BHB")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_EOF_FIXED = struct.Struct(">BI")


@dataclass(frozen=True, slots=True, order=True)
class TransactionId:
    """A transaction is named by its source entity and that entity's sequence number (727.0-B-5)."""

    source_entity_id: int
    transaction_sequence_number: int


@dataclass(frozen=True, slots=True)
class PduHeader:
    """The fields of the PDU header (5.1) that a sender chooses for a transaction.

    `pdu_type`, `segment_metadata_flag` and `pdu_data_field_length` follow from the PDU that carries
    the header, so they are computed when a PDU is encoded, not stored. Id widths are in octets.
    """

    source_entity_id: int
    transaction_sequence_number: int
    destination_entity_id: int
    transmission_mode: TransmissionMode = TransmissionMode.UNACKNOWLEDGED
    crc_flag: bool = False
    large_file_flag: bool = False
    direction: Direction = Direction.TOWARD_RECEIVER
    segmentation_control: bool = False
    entity_id_octets: int = ENTITY_ID_OCTETS
    sequence_number_octets: int = SEQUENCE_NUMBER_OCTETS

    @property
    def length(self) -> int:
        """Octets of the encoded header."""
        return FIXED_HEADER_LENGTH + 2 * self.entity_id_octets + self.sequence_number_octets

    @property
    def transaction_id(self) -> TransactionId:
        return TransactionId(self.source_entity_id, self.transaction_sequence_number)

    @property
    def fss_octets(self) -> int:
        """Octets of the File-Size Sensitive fields (offsets, sizes): 8 if large file, else 4."""
        return 8 if self.large_file_flag else 4

    def encode(
        self, pdu_type: PduType, pdu_data_field_length: int, segment_metadata_flag: bool = False
    ) -> bytes:
        """The header of a PDU whose data field (CRC included) is `pdu_data_field_length` octets."""
        if not 1 <= self.entity_id_octets <= MAX_ID_OCTETS:
            raise FieldError(f"entity id length {self.entity_id_octets} octets outside 1..8")
        if not 1 <= self.sequence_number_octets <= MAX_ID_OCTETS:
            raise FieldError(
                f"sequence number length {self.sequence_number_octets} octets outside 1..8"
            )
        entity_limit = 1 << (8 * self.entity_id_octets)
        if not 0 <= self.source_entity_id < entity_limit:
            raise FieldError(
                f"source entity id {self.source_entity_id} does not fit "
                f"{self.entity_id_octets} octets"
            )
        if not 0 <= self.destination_entity_id < entity_limit:
            raise FieldError(
                f"destination entity id {self.destination_entity_id} does not fit "
                f"{self.entity_id_octets} octets"
            )
        if not 0 <= self.transaction_sequence_number < 1 << (8 * self.sequence_number_octets):
            raise FieldError(
                f"transaction sequence number {self.transaction_sequence_number} does not fit "
                f"{self.sequence_number_octets} octets"
            )
        if not 0 <= pdu_data_field_length <= MAX_DATA_FIELD_LENGTH:
            raise LengthError(
                f"PDU data field of {pdu_data_field_length} octets "
                f"outside 0..{MAX_DATA_FIELD_LENGTH}"
            )
        octet0 = (
            (CFDP_VERSION << 5)
            | (pdu_type << 4)
            | (self.direction << 3)
            | (self.transmission_mode << 2)
            | (self.crc_flag << 1)
            | self.large_file_flag
        )
        octet3 = (
            (self.segmentation_control << 7)
            | ((self.entity_id_octets - 1) << 4)
            | (segment_metadata_flag << 3)
            | (self.sequence_number_octets - 1)
        )
        return (
            _FIXED_HEADER.pack(octet0, pdu_data_field_length, octet3)
            + self.source_entity_id.to_bytes(self.entity_id_octets, "big")
            + self.transaction_sequence_number.to_bytes(self.sequence_number_octets, "big")
            + self.destination_entity_id.to_bytes(self.entity_id_octets, "big")
        )

    def _fss(self, value: int, what: str) -> bytes:
        if self.large_file_flag:
            if not 0 <= value <= 0xFFFF_FFFF_FFFF_FFFF:
                raise FieldError(f"{what} {value} does not fit 64 bits")
            return _U64.pack(value)
        if not 0 <= value <= 0xFFFF_FFFF:
            raise FieldError(f"{what} {value} does not fit 32 bits; set the large file flag")
        return _U32.pack(value)

    def _seal(
        self, pdu_type: PduType, data_field: bytes, segment_metadata_flag: bool = False
    ) -> bytes:
        """Header + data field, and the CRC-16 over both when crc_flag is set."""
        crc_octets = 2 if self.crc_flag else 0
        pdu = (
            self.encode(pdu_type, len(data_field) + crc_octets, segment_metadata_flag) + data_field
        )
        return append_crc16(pdu) if self.crc_flag else pdu


@dataclass(frozen=True, slots=True)
class Tlv:
    """One 727.0-B-5 Type-Length-Value option."""

    type: int
    value: bytes

    def encode(self) -> bytes:
        if not 0 <= self.type <= 0xFF:
            raise FieldError(f"TLV type {self.type} outside 0..255")
        if len(self.value) > MAX_LV_LENGTH:
            raise LengthError(f"TLV value of {len(self.value)} octets, at most {MAX_LV_LENGTH}")
        return bytes((self.type, len(self.value))) + self.value


@dataclass(frozen=True, slots=True)
class MetadataPdu:
    """727.0-B-5 5.2.5. File names are the octets on the wire; file size 0 means 'unbounded'."""

    header: PduHeader
    file_size: int
    source_file_name: bytes
    destination_file_name: bytes
    checksum_type: ChecksumType = ChecksumType.CRC32
    closure_requested: bool = False
    options: tuple[Tlv, ...] = ()

    def encode(self) -> bytes:
        for what, name in (
            ("source", self.source_file_name),
            ("destination", self.destination_file_name),
        ):
            if len(name) > MAX_LV_LENGTH:
                raise LengthError(
                    f"{what} file name of {len(name)} octets, at most {MAX_LV_LENGTH}"
                )
        if not 0 <= self.checksum_type <= 0x0F:
            raise FieldError(f"checksum type {self.checksum_type} does not fit 4 bits")
        data_field = b"".join(
            (
                bytes((DirectiveCode.METADATA, (self.closure_requested << 6) | self.checksum_type)),
                self.header._fss(self.file_size, "file size"),
                bytes((len(self.source_file_name),)),
                self.source_file_name,
                bytes((len(self.destination_file_name),)),
                self.destination_file_name,
                *(option.encode() for option in self.options),
            )
        )
        return self.header._seal(PduType.FILE_DIRECTIVE, data_field)


@dataclass(frozen=True, slots=True)
class SegmentMetadata:
    """727.0-B-5 5.3: present in a File Data PDU when the segment metadata flag is set."""

    record_continuation_state: RecordContinuationState
    metadata: bytes = b""


@dataclass(frozen=True, slots=True)
class FileDataPdu:
    """727.0-B-5 5.3: `file_data` belongs at `offset` octets into the file."""

    header: PduHeader
    offset: int
    file_data: bytes
    segment_metadata: SegmentMetadata | None = None

    def encode(self) -> bytes:
        if self.segment_metadata is None:
            prefix = b""
        else:
            metadata = self.segment_metadata.metadata
            if len(metadata) > MAX_SEGMENT_METADATA_LENGTH:
                raise LengthError(
                    f"segment metadata of {len(metadata)} octets, "
                    f"at most {MAX_SEGMENT_METADATA_LENGTH}"
                )
            prefix = bytes(
                ((self.segment_metadata.record_continuation_state << 6) | len(metadata),)
            )
            prefix += metadata
        data_field = prefix + self.header._fss(self.offset, "offset") + self.file_data
        return self.header._seal(PduType.FILE_DATA, data_field, self.segment_metadata is not None)


@dataclass(frozen=True, slots=True)
class EofPdu:
    """727.0-B-5 5.2.2. `fault_location` (an entity id) is sent only with an error condition."""

    header: PduHeader
    file_checksum: int
    file_size: int
    condition_code: ConditionCode = ConditionCode.NO_ERROR
    fault_location: int | None = None

    def encode(self) -> bytes:
        if not 0 <= self.file_checksum <= 0xFFFF_FFFF:
            raise FieldError(f"file checksum {self.file_checksum} does not fit 32 bits")
        if not 0 <= self.condition_code <= 0x0F:
            raise FieldError(f"condition code {self.condition_code} does not fit 4 bits")
        data_field = (
            bytes((DirectiveCode.EOF,))
            + _EOF_FIXED.pack(self.condition_code << 4, self.file_checksum)
            + self.header._fss(self.file_size, "file size")
        )
        if self.fault_location is not None:
            if self.condition_code == ConditionCode.NO_ERROR:
                raise FieldError("an EOF (no error) PDU carries no fault location (5.2.2)")
            octets = self.header.entity_id_octets
            if not 0 <= self.fault_location < 1 << (8 * octets):
                raise FieldError(
                    f"fault location {self.fault_location} does not fit {octets} octets"
                )
            data_field += bytes((ENTITY_ID_TLV_TYPE, octets)) + self.fault_location.to_bytes(
                octets, "big"
            )
        return self.header._seal(PduType.FILE_DIRECTIVE, data_field)


Pdu = MetadataPdu | FileDataPdu | EofPdu


def decode_pdu(buffer: bytes | bytearray | memoryview) -> Pdu:
    """Decode exactly one Metadata, File Data or EOF PDU; the buffer must end where the PDU ends.

    The length and the CRC (when crc_flag is set) are checked before any other field is interpreted.
    """
    view = memoryview(buffer)
    size = len(view)
    if size < FIXED_HEADER_LENGTH:
        raise TruncatedError(
            f"{size} octets, a CFDP PDU header needs at least {FIXED_HEADER_LENGTH}"
        )
    octet0, data_field_length, octet3 = _FIXED_HEADER.unpack_from(view)
    entity_octets = ((octet3 >> 4) & 0x07) + 1
    sequence_octets = (octet3 & 0x07) + 1
    header_length = FIXED_HEADER_LENGTH + 2 * entity_octets + sequence_octets
    total = header_length + data_field_length
    if size < total:
        raise TruncatedError(
            f"PDU header and data field length say {total} octets, only {size} present", offset=size
        )
    if size > total:
        raise LengthError(
            f"PDU data field length {data_field_length} makes the PDU {total} octets, "
            f"buffer has {size}",
            offset=1,
        )
    crc_flag = bool(octet0 & 0x02)
    end = total
    if crc_flag:
        if data_field_length < 2:
            raise LengthError(
                f"PDU data field of {data_field_length} octets cannot hold its CRC", offset=1
            )
        check_crc16(view, "CFDP PDU")
        end -= 2
    version = octet0 >> 5
    if version != CFDP_VERSION:
        raise FieldError(f"CFDP version {version}, expected {CFDP_VERSION} (727.0-B-5)", offset=0)
    position = FIXED_HEADER_LENGTH
    source = int.from_bytes(view[position : position + entity_octets], "big")
    position += entity_octets
    sequence_number = int.from_bytes(view[position : position + sequence_octets], "big")
    position += sequence_octets
    destination = int.from_bytes(view[position : position + entity_octets], "big")
    header = PduHeader(
        source_entity_id=source,
        transaction_sequence_number=sequence_number,
        destination_entity_id=destination,
        transmission_mode=TransmissionMode((octet0 >> 2) & 1),
        crc_flag=crc_flag,
        large_file_flag=bool(octet0 & 0x01),
        direction=Direction((octet0 >> 3) & 1),
        segmentation_control=bool(octet3 & 0x80),
        entity_id_octets=entity_octets,
        sequence_number_octets=sequence_octets,
    )
    if octet0 & 0x10:
        return _decode_file_data(view, header, header_length, end, bool(octet3 & 0x08))
    if header_length >= end:
        raise LengthError("file directive PDU without a directive code", offset=1)
    code = view[header_length]
    if code == DirectiveCode.METADATA:
        return _decode_metadata(view, header, header_length + 1, end)
    if code == DirectiveCode.EOF:
        return _decode_eof(view, header, header_length + 1, end)
    try:
        known = DirectiveCode(code).name
    except ValueError:
        raise FieldError(f"unknown directive code {code:#04x}", offset=header_length) from None
    raise FieldError(
        f"directive {known} ({code:#04x}) is not used in unacknowledged mode (class 1)",
        offset=header_length,
    )


def _read_fss(view: memoryview, position: int, header: PduHeader) -> int:
    if header.large_file_flag:
        return _U64.unpack_from(view, position)[0]
    return _U32.unpack_from(view, position)[0]


def _need(position: int, octets: int, end: int, what: str) -> None:
    if position + octets > end:
        raise LengthError(
            f"{what} needs {octets} octets at {position}, the PDU data field ends at {end}",
            offset=position,
        )


def _decode_metadata(view: memoryview, header: PduHeader, position: int, end: int) -> MetadataPdu:
    fss = header.fss_octets
    _need(position, 1 + fss + 2, end, "Metadata parameters")
    parameters = view[position]
    if parameters & 0xB0:
        raise FieldError(f"Metadata reserved bits set in {parameters:#04x}", offset=position)
    try:
        checksum_type = ChecksumType(parameters & 0x0F)
    except ValueError:
        raise FieldError(
            f"checksum type {parameters & 0x0F} is not in the SANA registry", offset=position
        ) from None
    file_size = _read_fss(view, position + 1, header)
    position += 1 + fss
    names = []
    for what in ("source file name", "destination file name"):
        _need(position, 1, end, what)
        length = view[position]
        _need(position + 1, length, end, what)
        names.append(bytes(view[position + 1 : position + 1 + length]))
        position += 1 + length
    options = []
    while position < end:
        _need(position, 2, end, "Metadata option TLV")
        length = view[position + 1]
        _need(position + 2, length, end, "Metadata option TLV value")
        options.append(Tlv(view[position], bytes(view[position + 2 : position + 2 + length])))
        position += 2 + length
    return MetadataPdu(
        header,
        file_size,
        names[0],
        names[1],
        checksum_type,
        bool(parameters & 0x40),
        tuple(options),
    )


def _decode_file_data(
    view: memoryview, header: PduHeader, position: int, end: int, segment_metadata_flag: bool
) -> FileDataPdu:
    segment_metadata = None
    if segment_metadata_flag:
        _need(position, 1, end, "segment metadata")
        octet = view[position]
        length = octet & 0x3F
        _need(position + 1, length, end, "segment metadata")
        segment_metadata = SegmentMetadata(
            RecordContinuationState(octet >> 6), bytes(view[position + 1 : position + 1 + length])
        )
        position += 1 + length
    _need(position, header.fss_octets, end, "File Data offset")
    offset = _read_fss(view, position, header)
    position += header.fss_octets
    return FileDataPdu(header, offset, bytes(view[position:end]), segment_metadata)


def _decode_eof(view: memoryview, header: PduHeader, position: int, end: int) -> EofPdu:
    _need(position, 5 + header.fss_octets, end, "EOF parameters")
    status, checksum = _EOF_FIXED.unpack_from(view, position)
    if status & 0x0F:
        raise FieldError(f"EOF spare bits set in {status:#04x}", offset=position)
    try:
        condition = ConditionCode(status >> 4)
    except ValueError:
        raise FieldError(f"condition code {status >> 4} is reserved", offset=position) from None
    file_size = _read_fss(view, position + 5, header)
    position += 5 + header.fss_octets
    fault_location = None
    if position < end:
        if condition == ConditionCode.NO_ERROR:
            raise FieldError("EOF (no error) PDU carries a fault location", offset=position)
        _need(position, 2, end, "fault location TLV")
        tlv_type, length = view[position], view[position + 1]
        if tlv_type != ENTITY_ID_TLV_TYPE:
            raise FieldError(
                f"fault location TLV type {tlv_type:#04x}, "
                f"expected entity id {ENTITY_ID_TLV_TYPE:#04x}",
                offset=position,
            )
        if not 1 <= length <= MAX_ID_OCTETS or position + 2 + length != end:
            raise LengthError(
                f"fault location of {length} octets does not fill the {end - position - 2} left",
                offset=position + 1,
            )
        fault_location = int.from_bytes(view[position + 2 : end], "big")
    return EofPdu(header, checksum, file_size, condition, fault_location)


def file_data_capacity(header: PduHeader, max_pdu_length: int) -> int:
    """The largest segment whose File Data PDU (no segment metadata) fits max_pdu_length."""
    overhead = header.length + header.fss_octets + (2 if header.crc_flag else 0)
    capacity = min(max_pdu_length, header.length + MAX_DATA_FIELD_LENGTH) - overhead
    if capacity < 1:
        raise LengthError(
            f"a PDU of {max_pdu_length} octets cannot carry file data with this header"
        )
    return capacity


# --- sender ------------------------------------------------------------------------------------


class FileSender:
    """One class 1 transaction as PDUs: Metadata, File Data in file order, then EOF.

    `data` is the file's octets or a path; a path is read one segment at a time, so a large file is
    never held in memory, and its CRC-32 is computed on the way. The caller owns the transaction
    sequence number and must persist it so that it never repeats for this source entity.
    """

    def __init__(
        self,
        source_entity_id: int,
        destination_entity_id: int,
        transaction_sequence_number: int,
        data: bytes | Path,
        segment_size: int,
        *,
        destination_name: str,
        source_name: str | None = None,
        crc_flag: bool = False,
        large_file_flag: bool | None = None,
        entity_id_octets: int = ENTITY_ID_OCTETS,
        sequence_number_octets: int = SEQUENCE_NUMBER_OCTETS,
        checksum_type: ChecksumType = ChecksumType.CRC32,
        closure_requested: bool = False,
    ) -> None:
        if checksum_type not in (ChecksumType.CRC32, ChecksumType.NULL):
            raise FieldError(f"checksum type {checksum_type!r} not supported; use CRC32 or NULL")
        self._data = data
        self.file_size = data.stat().st_size if isinstance(data, Path) else len(data)
        if large_file_flag is None:
            large_file_flag = self.file_size > 0xFFFF_FFFF
        self.header = PduHeader(
            source_entity_id,
            transaction_sequence_number,
            destination_entity_id,
            crc_flag=crc_flag,
            large_file_flag=large_file_flag,
            entity_id_octets=entity_id_octets,
            sequence_number_octets=sequence_number_octets,
        )
        limit = MAX_DATA_FIELD_LENGTH - self.header.fss_octets - (2 if crc_flag else 0)
        if not 1 <= segment_size <= limit:
            raise LengthError(f"segment size {segment_size} outside 1..{limit} for this header")
        self.segment_size = segment_size
        if source_name is None:
            source_name = str(data) if isinstance(data, Path) else destination_name
        self.checksum_type = checksum_type
        self.metadata = MetadataPdu(
            self.header,
            self.file_size,
            source_name.encode(),
            destination_name.encode(),
            checksum_type,
            closure_requested,  # for a peer that sends Finished; FileReceiver never does (class 1)
        )
        # Any field that does not fit raises here, not in the middle of a pass.
        self._metadata_pdu = self.metadata.encode()

    @property
    def transaction_id(self) -> TransactionId:
        return self.header.transaction_id

    def __iter__(self) -> Iterator[bytes]:
        return self.pdus()

    def pdus(self) -> Iterator[bytes]:
        yield self._metadata_pdu
        checksum = 0
        offset = 0
        for segment in self._segments():
            yield FileDataPdu(self.header, offset, segment).encode()
            checksum = crc32(segment, checksum)
            offset += len(segment)
        if offset != self.file_size:
            raise LengthError(
                f"file shrank from {self.file_size} to {offset} octets while being sent"
            )
        if self.checksum_type == ChecksumType.NULL:
            checksum = 0
        yield EofPdu(self.header, checksum, offset).encode()

    def _segments(self) -> Iterator[bytes]:
        if not isinstance(self._data, Path):
            view = memoryview(self._data)
            for start in range(0, len(view), self.segment_size):
                yield bytes(view[start : start + self.segment_size])
            return
        with self._data.open("rb") as file:
            left = self.file_size
            while left > 0:
                segment = file.read(min(self.segment_size, left))
                if not segment:
                    return
                left -= len(segment)
                yield segment


# --- receiver ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferResult:
    """How a transaction ended at the receiver. `path` is set only when the file was delivered."""

    transaction_id: TransactionId
    condition_code: ConditionCode
    reason: str
    path: Path | None = None
    file_size: int = 0

    @property
    def success(self) -> bool:
        return self.condition_code == ConditionCode.NO_ERROR


class _Ranges:
    """Disjoint, non-adjacent half-open octet ranges, kept merged."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> bool:
        """Record [start, end); False when every octet of it was already recorded."""
        if start >= end:
            return False
        # The first range ending at or after start (touching counts), and the ranges starting
        # at or before end: those are the ones [start, end) merges with.
        low = bisect.bisect_left(self.ends, start)
        high = bisect.bisect_right(self.starts, end)
        if low < high:
            if self.starts[low] <= start and end <= self.ends[low]:
                return False
            start = min(start, self.starts[low])
            end = max(end, self.ends[high - 1])
        self.starts[low:high] = [start]
        self.ends[low:high] = [end]
        return True

    @property
    def end(self) -> int:
        return self.ends[-1] if self.ends else 0

    def covers(self, size: int) -> bool:
        return size == 0 or (bool(self.starts) and self.starts[0] == 0 and self.ends[0] >= size)

    def gaps(self, size: int) -> tuple[tuple[int, int], ...]:
        gaps = []
        position = 0
        for start, end in zip(self.starts, self.ends, strict=True):
            if start >= size:
                break
            if start > position:
                gaps.append((position, start))
            position = end
        if position < size:
            gaps.append((position, size))
        return tuple(gaps)


@dataclass(slots=True)
class _Transaction:
    transaction_id: TransactionId
    partial: Path
    last_activity_s: float
    metadata: MetadataPdu | None = None
    destination: Path | None = None
    eof: EofPdu | None = None
    received: _Ranges = field(default_factory=_Ranges)
    fd: int | None = None


class FileReceiver:
    """Receives class 1 transactions into `directory`, up to `max_active_transactions` at once.

    `receive` takes one PDU and returns a `TransferResult` when a transaction ends (delivered or
    failed), else None. PDUs may come in any order and more than once; duplicates are counted in
    `duplicate_pdus`, as are PDUs of a transaction that has already ended. Segments go straight to a
    partial file at their offsets; the destination name appears only when Metadata, every octet and
    EOF are in and checksum and size agree, by write-fsync-rename-fsync, so a power loss leaves
    either the old file or the whole new one, never a part.

    Destination names are plain names inside `directory` (no separators, no leading '.'); partial
    files are the receiver's own dot-files, removed when a receiver starts because class 1 cannot
    resume them. One receiver per directory. Malformed or misaddressed PDUs raise `ProtocolError`;
    `now` is the caller's clock in seconds, used only for `expire`.

    Each active transaction holds a file descriptor and a partial file, so their number is bounded:
    a transaction that would exceed `max_active_transactions` ends at once with
    FILESTORE_REJECTION (counted in `transactions_refused`) and the ones in progress carry on.
    """

    def __init__(
        self,
        directory: Path,
        *,
        entity_id: int | None = None,
        inactivity_timeout_s: float = DEFAULT_INACTIVITY_TIMEOUT_S,
        max_file_size: int = MAX_RECEIVED_FILE_SIZE,
        remembered_transactions: int = 4096,
        max_active_transactions: int = DEFAULT_MAX_ACTIVE_TRANSACTIONS,
    ) -> None:
        if max_active_transactions < 1:
            raise ValueError(
                f"max_active_transactions must be at least 1, not {max_active_transactions}"
            )
        directory = Path(directory)
        if not directory.is_dir():
            raise NotADirectoryError(
                f"CFDP receive directory {directory} does not exist; create it first"
            )
        self.directory = directory
        self.entity_id = entity_id
        self.inactivity_timeout_s = inactivity_timeout_s
        self.max_file_size = max_file_size
        self.remembered_transactions = remembered_transactions
        self.max_active_transactions = max_active_transactions
        self.transactions_refused = 0
        self.duplicate_pdus = 0
        self.files_received = 0
        self.files_failed = 0
        self._active: dict[TransactionId, _Transaction] = {}
        self._ended: OrderedDict[TransactionId, None] = OrderedDict()
        for stale in directory.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
            stale.unlink(missing_ok=True)

    def __enter__(self) -> "FileReceiver":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop every active transaction and its partial file (class 1 cannot resume them)."""
        for transaction in self._active.values():
            self._discard_partial(transaction)
        self._active.clear()

    def receive(
        self, pdu: bytes | bytearray | memoryview, now: float = 0.0
    ) -> TransferResult | None:
        decoded = decode_pdu(pdu)
        header = decoded.header
        if self.entity_id is not None and header.destination_entity_id != self.entity_id:
            raise AddressError(
                f"PDU for entity {header.destination_entity_id}, this is entity {self.entity_id}",
                offset=FIXED_HEADER_LENGTH
                + header.entity_id_octets
                + header.sequence_number_octets,
            )
        if header.direction != Direction.TOWARD_RECEIVER:
            raise FieldError(f"{type(decoded).__name__} sent toward the file sender", offset=0)
        if header.transmission_mode != TransmissionMode.UNACKNOWLEDGED:
            raise FieldError(
                "acknowledged mode (class 2) is not supported; send unacknowledged", offset=0
            )
        key = header.transaction_id
        if key in self._ended:
            self.duplicate_pdus += 1
            return None
        transaction = self._active.get(key)
        if transaction is None:
            transaction = _Transaction(key, self._partial_path(key), now)
            self._active[key] = transaction
            if len(self._active) > self.max_active_transactions:
                self.transactions_refused += 1
                return self._end(
                    transaction,
                    ConditionCode.FILESTORE_REJECTION,
                    f"{self.max_active_transactions} transfers already in progress; send this "
                    "file again once one of them has ended",
                )
        transaction.last_activity_s = now
        try:
            if isinstance(decoded, FileDataPdu):
                result = self._on_file_data(transaction, decoded)
            elif isinstance(decoded, MetadataPdu):
                result = self._on_metadata(transaction, decoded)
            else:
                result = self._on_eof(transaction, decoded)
            if result is None:
                result = self._try_finish(transaction)
        except OSError as error:
            result = self._end(
                transaction,
                ConditionCode.FILESTORE_REJECTION,
                f"file store: {error.strerror or error}",
            )
        return result

    def missing_ranges(self) -> dict[TransactionId, tuple[tuple[int, int], ...]]:
        """Per active transaction, the [start, end) octet ranges not yet received, as far as the
        size is known (from EOF, else from Metadata, else up to the furthest octet received)."""
        return {
            key: transaction.received.gaps(self._known_size(transaction))
            for key, transaction in self._active.items()
        }

    def expire(self, now: float) -> list[TransferResult]:
        """End every transaction idle for longer than the inactivity timeout (727.0-B-5)."""
        results = []
        for transaction in list(self._active.values()):
            if now - transaction.last_activity_s > self.inactivity_timeout_s:
                gaps = transaction.received.gaps(self._known_size(transaction))
                parts = []
                if gaps:
                    more = f" and {len(gaps) - 8} more" if len(gaps) > 8 else ""
                    parts.append(f"missing octets {list(gaps[:8])}{more}")
                if transaction.metadata is None:
                    parts.append("no Metadata")
                if transaction.eof is None:
                    parts.append("no EOF")
                reason = f"inactive for {now - transaction.last_activity_s:.0f} s: " + ", ".join(
                    parts
                )
                results.append(self._end(transaction, ConditionCode.INACTIVITY_DETECTED, reason))
        return results

    @property
    def active_transactions(self) -> tuple[TransactionId, ...]:
        return tuple(self._active)

    # -- PDU handlers: return a result when the transaction ended, else None --

    def _on_metadata(
        self, transaction: _Transaction, metadata: MetadataPdu
    ) -> TransferResult | None:
        if transaction.metadata is not None:
            if transaction.metadata != metadata:
                raise FieldError(
                    "Metadata differs from the Metadata already received for this transaction"
                )
            self.duplicate_pdus += 1
            return None
        try:
            destination = self._destination(metadata.destination_file_name)
        except FieldError:
            # A transaction whose file can never be delivered is dropped now, not at the timeout.
            self._end(transaction, ConditionCode.FILESTORE_REJECTION, "destination name refused")
            raise
        transaction.metadata = metadata
        transaction.destination = destination
        if metadata.checksum_type not in (ChecksumType.CRC32, ChecksumType.NULL):
            return self._end(
                transaction,
                ConditionCode.UNSUPPORTED_CHECKSUM_TYPE,
                f"checksum type {metadata.checksum_type.name} not supported (CRC32 or NULL)",
            )
        return self._check_size(transaction)

    def _on_file_data(self, transaction: _Transaction, data: FileDataPdu) -> TransferResult | None:
        end = data.offset + len(data.file_data)
        if end > self.max_file_size:
            return self._end(
                transaction,
                ConditionCode.FILE_SIZE_ERROR,
                f"segment ends at octet {end}, beyond the {self.max_file_size} octet limit",
            )
        if not transaction.received.add(data.offset, end):
            self.duplicate_pdus += 1
            return None
        self._write_at(self._open(transaction), data.file_data, data.offset)
        return self._check_size(transaction)

    def _on_eof(self, transaction: _Transaction, eof: EofPdu) -> TransferResult | None:
        if transaction.eof is not None:
            if transaction.eof != eof:
                raise FieldError("EOF differs from the EOF already received for this transaction")
            self.duplicate_pdus += 1
            return None
        transaction.eof = eof
        if eof.condition_code != ConditionCode.NO_ERROR:
            return self._end(
                transaction,
                eof.condition_code,
                f"sender ended the transaction: {eof.condition_code.name}",
            )
        return self._check_size(transaction)

    def _check_size(self, transaction: _Transaction) -> TransferResult | None:
        """Fail as soon as Metadata, EOF and the data received cannot agree on the file size."""
        metadata, eof = transaction.metadata, transaction.eof
        declared = metadata.file_size if metadata is not None and metadata.file_size else None
        if eof is not None and declared is not None and eof.file_size != declared:
            return self._end(
                transaction,
                ConditionCode.FILE_SIZE_ERROR,
                f"EOF says {eof.file_size} octets, Metadata said {declared}",
            )
        size = eof.file_size if eof is not None else declared
        if size is not None and size > self.max_file_size:
            return self._end(
                transaction,
                ConditionCode.FILE_SIZE_ERROR,
                f"file of {size} octets, beyond the {self.max_file_size} octet limit",
            )
        if size is not None and transaction.received.end > size:
            return self._end(
                transaction,
                ConditionCode.FILE_SIZE_ERROR,
                f"data received up to octet {transaction.received.end}, the file has {size}",
            )
        return None

    def _try_finish(self, transaction: _Transaction) -> TransferResult | None:
        metadata, eof = transaction.metadata, transaction.eof
        if metadata is None or eof is None or not transaction.received.covers(eof.file_size):
            return None
        fd = self._open(transaction)
        size = eof.file_size
        # The null checksum is always zero; CRC-32 is read back from flash, not trusted from memory.
        computed = self._crc32_of(fd, size) if metadata.checksum_type == ChecksumType.CRC32 else 0
        if computed != eof.file_checksum:
            return self._end(
                transaction,
                ConditionCode.FILE_CHECKSUM_FAILURE,
                f"{metadata.checksum_type.name} of the received file is {computed:#010x}, "
                f"EOF says {eof.file_checksum:#010x}",
            )
        os.fsync(fd)
        self._close_fd(transaction)
        assert transaction.destination is not None  # set together with metadata
        os.replace(transaction.partial, transaction.destination)
        reason = "delivered"
        try:
            self._fsync_directory()
        except OSError as error:
            # The file is whole and verified under its name; only its surviving a power loss is
            # in doubt, so it is reported delivered rather than failed.
            reason = f"delivered, but the directory fsync failed: {error.strerror or error}"
        return self._end(transaction, ConditionCode.NO_ERROR, reason, transaction.destination, size)

    # -- file store --

    def _destination(self, name: bytes) -> Path:
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            raise FieldError(f"destination file name {name!r} is not UTF-8") from None
        if not text or text in (".", "..") or "/" in text or "\\" in text or "\x00" in text:
            raise FieldError(
                f"destination file name {text!r} must be a plain name inside the receive "
                "directory (no absolute path, no '..', no directory part)"
            )
        if text.startswith("."):
            raise FieldError(
                f"destination file name {text!r}: names starting with '.' are reserved"
            )
        return self.directory / text

    def _partial_path(self, key: TransactionId) -> Path:
        name = f"{key.source_entity_id}-{key.transaction_sequence_number}"
        return self.directory / f"{PARTIAL_PREFIX}{name}{PARTIAL_SUFFIX}"

    def _open(self, transaction: _Transaction) -> int:
        if transaction.fd is None:
            # O_TRUNC: a partial of this name can only be left over from an earlier use of the id.
            transaction.fd = os.open(
                transaction.partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644
            )
        return transaction.fd

    @staticmethod
    def _write_at(fd: int, data: bytes, offset: int) -> None:
        """All of `data` at `offset`. A filling file store first writes short, then says ENOSPC."""
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            if written <= 0:
                raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (at octet {offset})")
            view = view[written:]
            offset += written

    @staticmethod
    def _crc32_of(fd: int, size: int) -> int:
        """CRC-32 of the partial file as it is on the file store, read back in chunks."""
        value = 0
        position = 0
        while position < size:
            chunk = os.pread(fd, min(_CHECKSUM_CHUNK, size - position), position)
            if not chunk:
                raise OSError(f"partial file ends at {position}, expected {size} octets")
            value = crc32(chunk, value)
            position += len(chunk)
        return value

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _close_fd(transaction: _Transaction) -> None:
        if transaction.fd is not None:
            fd, transaction.fd = transaction.fd, None
            os.close(fd)

    def _end(
        self,
        transaction: _Transaction,
        condition: ConditionCode,
        reason: str,
        path: Path | None = None,
        size: int = 0,
    ) -> TransferResult:
        key = transaction.transaction_id
        self._active.pop(key, None)
        self._ended[key] = None
        while len(self._ended) > self.remembered_transactions:
            self._ended.popitem(last=False)
        if condition == ConditionCode.NO_ERROR:
            self.files_received += 1
        else:
            self.files_failed += 1
            problem = self._discard_partial(transaction)
            if problem:
                reason = f"{reason}; {problem}"
        return TransferResult(key, condition, reason, path, size)

    @classmethod
    def _discard_partial(cls, transaction: _Transaction) -> str:
        """Close and remove a partial file; say what failed, or ''.

        A file store that refuses even this (remounted read-only, I/O error) must not turn an ended
        transfer into a crash: the partial is a dot-file that the next receiver start removes.
        """
        notes = []
        try:
            cls._close_fd(transaction)
        except OSError as error:
            notes.append(
                f"closing partial file {transaction.partial.name}: {error.strerror or error}"
            )
        try:
            transaction.partial.unlink(missing_ok=True)
        except OSError as error:
            notes.append(
                f"partial file {transaction.partial.name} left behind: {error.strerror or error}"
            )
        return "; ".join(notes)

    @staticmethod
    def _known_size(transaction: _Transaction) -> int:
        if transaction.eof is not None:
            return transaction.eof.file_size
        if transaction.metadata is not None and transaction.metadata.file_size:
            return transaction.metadata.file_size
        return transaction.received.end
