"""CFDP class 1: codecs against public vectors, construct and spacepackets; sender, receiver."""

import dataclasses
import errno
import os
import random
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacepackets.cfdp import ChecksumType as SpChecksumType
from spacepackets.cfdp import CrcFlag, LargeFileFlag, PduConfig, SegmentationControl
from spacepackets.cfdp import TransmissionMode as SpTransmissionMode
from spacepackets.cfdp.pdu import EofPdu as SpEofPdu
from spacepackets.cfdp.pdu import FileDataParams, MetadataParams
from spacepackets.cfdp.pdu import FileDataPdu as SpFileDataPdu
from spacepackets.cfdp.pdu import MetadataPdu as SpMetadataPdu
from spacepackets.cfdp.pdu.file_data import RecordContinuationState as SpRecordState
from spacepackets.cfdp.pdu.file_data import SegmentMetadata as SpSegmentMetadata
from spacepackets.cfdp.tlv import EntityIdTlv
from spacepackets.util import ByteFieldGenerator

from flight.protocol.cfdp import (
    EOF_PDU,
    FILE_DATA_PDU,
    METADATA_PDU,
    PDU_HEADER,
    ChecksumType,
    ConditionCode,
    Direction,
    DirectiveCode,
    EofPdu,
    FileDataPdu,
    FileReceiver,
    FileSender,
    MetadataPdu,
    PduHeader,
    PduType,
    RecordContinuationState,
    SegmentMetadata,
    Tlv,
    TransactionId,
    TransmissionMode,
    decode_pdu,
    file_data_capacity,
)
from flight.protocol.crc import crc16, crc32
from flight.protocol.errors import (
    AddressError,
    ChecksumError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
)

# --- public vectors -----------------------------------------------------------------------------

# V16, spacepackets tests/cfdp/pdus/test_file_data.py (test_pack_unpack): acknowledged mode, 1-octet
# ids 0/0/0, offset 0, "hello world".
V16 = bytes.fromhex("30 00 0F 00 00 00 00 00 00 00 00") + b"hello world"
# Same file, test_pack_unpack_w_crc: with the PDU CRC, which spacepackets gives as F6 EB.
V16_WITH_CRC = bytes.fromhex("32 00 11 00 00 00 00 00 00 00 00") + b"hello world" + b"\xf6\xeb"
# V18, spacepackets docs/examples.rst ("CFDP Packets"): unacknowledged transfer 1 -> 2, seq 0.
V18_METADATA = (
    bytes.fromhex("24 00 2B 00 01 00 02 07 43 00 00 00 0C 11")
    + b"/tmp/src-file.txt"
    + b"\x12"
    + b"/tmp/dest-file.txt"
)
V18_FILE_DATA = bytes.fromhex("34 00 10 00 01 00 02 00 00 00 00") + b"Hello World!"
V18_EOF = bytes.fromhex("24 00 0A 00 01 00 02 04 00 1C 29 1C A3 00 00 00 0C")
# V19, same example: CRC-32 (ISO-HDLC / zlib) of "Hello World!".
V19_CRC32 = 0x1C291CA3

V18_HEADER = PduHeader(1, 0, 2, entity_id_octets=1, sequence_number_octets=1)


def test_v16_file_data_pdu_decodes_and_encodes_to_the_spacepackets_vector() -> None:
    pdu = decode_pdu(V16)
    header = PduHeader(
        0, 0, 0, TransmissionMode.ACKNOWLEDGED, entity_id_octets=1, sequence_number_octets=1
    )
    assert pdu == FileDataPdu(header, 0, b"hello world")
    assert pdu.encode() == V16


def test_v16_with_pdu_crc_matches_the_spacepackets_crc() -> None:
    pdu = decode_pdu(V16_WITH_CRC)
    assert isinstance(pdu, FileDataPdu)
    assert pdu.header.crc_flag
    assert pdu.file_data == b"hello world"
    assert pdu.encode() == V16_WITH_CRC


def test_v18_metadata_pdu_decodes_and_encodes_to_the_spacepackets_vector() -> None:
    pdu = decode_pdu(V18_METADATA)
    assert pdu == MetadataPdu(
        V18_HEADER, 12, b"/tmp/src-file.txt", b"/tmp/dest-file.txt", ChecksumType.CRC32, True
    )
    assert pdu.encode() == V18_METADATA


def test_v18_file_data_and_eof_decode_and_encode_to_the_spacepackets_vectors() -> None:
    assert decode_pdu(V18_FILE_DATA) == FileDataPdu(V18_HEADER, 0, b"Hello World!")
    assert decode_pdu(V18_EOF) == EofPdu(V18_HEADER, V19_CRC32, 12)
    assert FileDataPdu(V18_HEADER, 0, b"Hello World!").encode() == V18_FILE_DATA
    assert EofPdu(V18_HEADER, V19_CRC32, 12).encode() == V18_EOF


def test_v19_file_checksum_is_crc32_of_hello_world() -> None:
    assert crc32(b"Hello World!") == V19_CRC32


def test_file_sender_reproduces_the_v18_transfer() -> None:
    sender = FileSender(
        1,
        2,
        0,
        b"Hello World!",
        64,
        destination_name="/tmp/dest-file.txt",
        source_name="/tmp/src-file.txt",
        entity_id_octets=1,
        sequence_number_octets=1,
        closure_requested=True,
    )
    assert list(sender) == [V18_METADATA, V18_FILE_DATA, V18_EOF]


def test_v18_pdus_parse_with_the_construct_declarations() -> None:
    metadata = METADATA_PDU.parse(V18_METADATA).pdu.value
    assert metadata.header.pdu_data_field_length == 0x2B
    assert metadata.destination_file_name == b"/tmp/dest-file.txt"
    assert metadata.parameters.checksum_type == ChecksumType.CRC32
    assert FILE_DATA_PDU.parse(V18_FILE_DATA).pdu.value.file_data == b"Hello World!"
    assert EOF_PDU.parse(V18_EOF).pdu.value.file_checksum == V19_CRC32
    assert FILE_DATA_PDU.parse(V16_WITH_CRC).pdu_crc == 0xF6EB


# --- strategies ---------------------------------------------------------------------------------


@st.composite
def headers(
    draw: st.DrawFn,
    octets: st.SearchStrategy[int] | None = None,
    direction: st.SearchStrategy[Direction] | None = None,
) -> PduHeader:
    octets = st.integers(1, 8) if octets is None else octets
    entity_octets = draw(octets)
    sequence_octets = draw(octets)
    return PduHeader(
        source_entity_id=draw(st.integers(0, (1 << (8 * entity_octets)) - 1)),
        transaction_sequence_number=draw(st.integers(0, (1 << (8 * sequence_octets)) - 1)),
        destination_entity_id=draw(st.integers(0, (1 << (8 * entity_octets)) - 1)),
        transmission_mode=draw(st.sampled_from(TransmissionMode)),
        crc_flag=draw(st.booleans()),
        large_file_flag=draw(st.booleans()),
        direction=draw(st.sampled_from(Direction) if direction is None else direction),
        segmentation_control=draw(st.booleans()),
        entity_id_octets=entity_octets,
        sequence_number_octets=sequence_octets,
    )


def fss_values(header: PduHeader) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << (8 * header.fss_octets)) - 1)


@st.composite
def metadata_pdus(draw: st.DrawFn, header_strategy: st.SearchStrategy[PduHeader] | None = None):
    header = draw(headers() if header_strategy is None else header_strategy)
    return MetadataPdu(
        header,
        draw(fss_values(header)),
        draw(st.binary(max_size=255)),
        draw(st.binary(max_size=255)),
        draw(st.sampled_from(ChecksumType)),
        draw(st.booleans()),
        tuple(
            draw(st.lists(st.builds(Tlv, st.integers(0, 255), st.binary(max_size=255)), max_size=4))
        ),
    )


@st.composite
def file_data_pdus(draw: st.DrawFn, header_strategy: st.SearchStrategy[PduHeader] | None = None):
    header = draw(headers() if header_strategy is None else header_strategy)
    segment_metadata = draw(
        st.none()
        | st.builds(
            SegmentMetadata,
            st.sampled_from(RecordContinuationState),
            st.binary(max_size=63),
        )
    )
    return FileDataPdu(
        header, draw(fss_values(header)), draw(st.binary(max_size=600)), segment_metadata
    )


@st.composite
def eof_pdus(draw: st.DrawFn, header_strategy: st.SearchStrategy[PduHeader] | None = None):
    header = draw(headers() if header_strategy is None else header_strategy)
    condition = draw(st.sampled_from(ConditionCode))
    fault_location = None
    if condition != ConditionCode.NO_ERROR:
        fault_location = draw(st.none() | st.integers(0, (1 << (8 * header.entity_id_octets)) - 1))
    return EofPdu(
        header,
        draw(st.integers(0, 0xFFFF_FFFF)),
        draw(fss_values(header)),
        condition,
        fault_location,
    )


any_pdu = st.one_of(metadata_pdus(), file_data_pdus(), eof_pdus())
FAST = settings(max_examples=100, deadline=None)


# --- fast path against the construct declarations -----------------------------------------------


def header_from_construct(c) -> PduHeader:
    return PduHeader(
        c.source_entity_id,
        c.transaction_sequence_number,
        c.destination_entity_id,
        TransmissionMode(c.transmission_mode),
        c.crc_flag,
        c.large_file_flag,
        Direction(c.direction),
        bool(c.segmentation_control),
        c.length_of_entity_ids + 1,
        c.length_of_transaction_sequence_number + 1,
    )


def header_to_construct(
    header: PduHeader, pdu_type: PduType, data_field_length: int, segment_metadata_flag: bool
) -> dict:
    return {
        "pdu_type": pdu_type,
        "direction": header.direction,
        "transmission_mode": header.transmission_mode,
        "crc_flag": header.crc_flag,
        "large_file_flag": header.large_file_flag,
        "pdu_data_field_length": data_field_length,
        "segmentation_control": int(header.segmentation_control),
        "length_of_entity_ids": header.entity_id_octets - 1,
        "segment_metadata_flag": segment_metadata_flag,
        "length_of_transaction_sequence_number": header.sequence_number_octets - 1,
        "source_entity_id": header.source_entity_id,
        "transaction_sequence_number": header.transaction_sequence_number,
        "destination_entity_id": header.destination_entity_id,
    }


def pdu_from_construct(pdu: MetadataPdu | FileDataPdu | EofPdu, parsed) -> object:
    """Our value rebuilt from what the construct declaration parsed."""
    value = parsed.pdu.value
    header = header_from_construct(value.header)
    if isinstance(pdu, MetadataPdu):
        return MetadataPdu(
            header,
            value.file_size,
            value.source_file_name,
            value.destination_file_name,
            ChecksumType(value.parameters.checksum_type),
            value.parameters.closure_requested,
            tuple(Tlv(option.type, option.value) for option in value.options),
        )
    if isinstance(pdu, FileDataPdu):
        segment = value.segment_metadata
        return FileDataPdu(
            header,
            value.offset,
            value.file_data,
            None
            if segment is None
            else SegmentMetadata(
                RecordContinuationState(segment.segment.record_continuation_state),
                segment.segment_metadata,
            ),
        )
    fault = value.fault_location
    return EofPdu(
        header,
        value.file_checksum,
        value.file_size,
        ConditionCode(value.status.condition_code),
        None if fault is None else int.from_bytes(fault.value, "big"),
    )


def build_with_construct(pdu: MetadataPdu | FileDataPdu | EofPdu) -> bytes:
    """The PDU built by the construct declaration, its data field length counted here."""
    header = pdu.header
    crc = 2 if header.crc_flag else 0
    fss = header.fss_octets
    if isinstance(pdu, MetadataPdu):
        length = 4 + fss + len(pdu.source_file_name) + len(pdu.destination_file_name)
        length += sum(2 + len(option.value) for option in pdu.options) + crc
        body = {
            "header": header_to_construct(header, PduType.FILE_DIRECTIVE, length, False),
            "parameters": {
                "closure_requested": pdu.closure_requested,
                "checksum_type": pdu.checksum_type,
            },
            "file_size": pdu.file_size,
            "source_file_name": pdu.source_file_name,
            "destination_file_name": pdu.destination_file_name,
            "options": [{"type": o.type, "value": o.value} for o in pdu.options],
        }
        declaration = METADATA_PDU
    elif isinstance(pdu, FileDataPdu):
        segment = pdu.segment_metadata
        length = (
            fss + len(pdu.file_data) + crc + (0 if segment is None else 1 + len(segment.metadata))
        )
        body = {
            "header": header_to_construct(header, PduType.FILE_DATA, length, segment is not None),
            "segment_metadata": None
            if segment is None
            else {
                "segment": {
                    "record_continuation_state": segment.record_continuation_state,
                    "segment_metadata_length": len(segment.metadata),
                },
                "segment_metadata": segment.metadata,
            },
            "offset": pdu.offset,
            "file_data": pdu.file_data,
        }
        declaration = FILE_DATA_PDU
    else:
        fault = pdu.fault_location
        length = 6 + fss + crc + (0 if fault is None else 2 + header.entity_id_octets)
        body = {
            "header": header_to_construct(header, PduType.FILE_DIRECTIVE, length, False),
            "status": {"condition_code": pdu.condition_code},
            "file_checksum": pdu.file_checksum,
            "file_size": pdu.file_size,
            "fault_location": None
            if fault is None
            else {"type": 6, "value": fault.to_bytes(header.entity_id_octets, "big")},
        }
        declaration = EOF_PDU
    return declaration.build({"pdu": {"value": body}, "pdu_crc": None})


DECLARATION = {MetadataPdu: METADATA_PDU, FileDataPdu: FILE_DATA_PDU, EofPdu: EOF_PDU}


@FAST
@given(any_pdu)
def test_fast_path_encoding_parses_with_the_construct_declaration_to_the_same_fields(pdu) -> None:
    encoded = pdu.encode()
    assert pdu_from_construct(pdu, DECLARATION[type(pdu)].parse(encoded)) == pdu


@FAST
@given(any_pdu)
def test_construct_declaration_builds_the_octets_the_fast_path_decodes(pdu) -> None:
    built = build_with_construct(pdu)
    assert decode_pdu(built) == pdu
    assert built == pdu.encode()


@FAST
@given(headers(), st.sampled_from(PduType), st.integers(0, 0xFFFF), st.booleans())
def test_pdu_header_encode_matches_the_header_declaration(
    header: PduHeader, pdu_type: PduType, length: int, segment_metadata_flag: bool
) -> None:
    encoded = header.encode(pdu_type, length, segment_metadata_flag)
    parsed = PDU_HEADER.parse(encoded)
    assert header_from_construct(parsed) == header
    assert (parsed.pdu_type, parsed.pdu_data_field_length) == (pdu_type, length)
    assert parsed.segment_metadata_flag == segment_metadata_flag
    assert len(encoded) == header.length
    assert PDU_HEADER.build(
        header_to_construct(header, pdu_type, length, segment_metadata_flag)
    ) == (encoded)


# --- round trips --------------------------------------------------------------------------------


@FAST
@given(metadata_pdus())
def test_metadata_pdu_round_trips_over_all_field_ranges(pdu: MetadataPdu) -> None:
    assert decode_pdu(pdu.encode()) == pdu


@FAST
@given(file_data_pdus())
def test_file_data_pdu_round_trips_over_all_field_ranges(pdu: FileDataPdu) -> None:
    assert decode_pdu(pdu.encode()) == pdu


@FAST
@given(eof_pdus())
def test_eof_pdu_round_trips_over_all_field_ranges(pdu: EofPdu) -> None:
    assert decode_pdu(pdu.encode()) == pdu


# --- interoperability with spacepackets ---------------------------------------------------------

# spacepackets handles ids of 1, 2, 4 or 8 octets, and always sends these PDUs toward the receiver.
interop_headers = headers(
    octets=st.sampled_from([1, 2, 4, 8]), direction=st.just(Direction.TOWARD_RECEIVER)
)
interop_names = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)


def sp_config(header: PduHeader) -> PduConfig:
    return PduConfig(
        ByteFieldGenerator.from_int(header.entity_id_octets, header.source_entity_id),
        ByteFieldGenerator.from_int(header.entity_id_octets, header.destination_entity_id),
        ByteFieldGenerator.from_int(
            header.sequence_number_octets, header.transaction_sequence_number
        ),
        SpTransmissionMode(header.transmission_mode),
        file_flag=LargeFileFlag(header.large_file_flag),
        crc_flag=CrcFlag(header.crc_flag),
        seg_ctrl=SegmentationControl(header.segmentation_control),
    )


def header_from_sp(sp) -> PduHeader:
    header = sp.pdu_header
    return PduHeader(
        header.source_entity_id.value,
        header.transaction_seq_num.value,
        header.dest_entity_id.value,
        TransmissionMode(header.transmission_mode),
        bool(header.crc_flag),
        bool(header.file_flag),
        Direction(header.direction),
        bool(header.seg_ctrl),
        header.source_entity_id.byte_len,
        header.transaction_seq_num.byte_len,
    )


@st.composite
def interop_metadata(draw: st.DrawFn) -> MetadataPdu:
    header = draw(interop_headers)
    return MetadataPdu(
        header,
        draw(fss_values(header)),
        draw(interop_names).encode(),
        draw(interop_names).encode(),
        draw(st.sampled_from(ChecksumType)),
        draw(st.booleans()),
    )


def sp_metadata(pdu: MetadataPdu) -> SpMetadataPdu:
    return SpMetadataPdu(
        sp_config(pdu.header),
        MetadataParams(
            pdu.closure_requested,
            SpChecksumType(pdu.checksum_type),
            pdu.file_size,
            pdu.source_file_name.decode() or None,
            pdu.destination_file_name.decode() or None,
        ),
    )


@FAST
@given(interop_metadata())
def test_metadata_pdu_interoperates_with_spacepackets_both_ways(pdu: MetadataPdu) -> None:
    theirs = sp_metadata(pdu)
    assert decode_pdu(theirs.pack()) == pdu
    parsed = SpMetadataPdu.unpack(pdu.encode())
    assert header_from_sp(parsed) == pdu.header
    assert parsed.file_size == pdu.file_size
    assert parsed.checksum_type == pdu.checksum_type
    assert parsed.closure_requested == pdu.closure_requested
    assert (parsed.source_file_name or "").encode() == pdu.source_file_name
    assert (parsed.dest_file_name or "").encode() == pdu.destination_file_name


@st.composite
def interop_file_data(draw: st.DrawFn) -> FileDataPdu:
    header = draw(interop_headers)
    segment = draw(
        st.none()
        | st.builds(
            SegmentMetadata, st.sampled_from(RecordContinuationState), st.binary(max_size=63)
        )
    )
    # spacepackets refuses a File Data PDU without file data unless a CRC follows the offset.
    data = draw(st.binary(min_size=1, max_size=600))
    return FileDataPdu(header, draw(fss_values(header)), data, segment)


@FAST
@given(interop_file_data())
def test_file_data_pdu_interoperates_with_spacepackets_both_ways(pdu: FileDataPdu) -> None:
    segment = pdu.segment_metadata
    theirs = SpFileDataPdu(
        sp_config(pdu.header),
        FileDataParams(
            pdu.file_data,
            pdu.offset,
            None
            if segment is None
            else SpSegmentMetadata(
                SpRecordState(segment.record_continuation_state), segment.metadata
            ),
        ),
    )
    assert decode_pdu(theirs.pack()) == pdu
    parsed = SpFileDataPdu.unpack(pdu.encode())
    assert header_from_sp(parsed) == pdu.header
    assert (parsed.offset, parsed.file_data) == (pdu.offset, pdu.file_data)
    if segment is None:
        assert parsed.segment_metadata is None
    else:
        assert parsed.segment_metadata.record_cont_state == segment.record_continuation_state
        assert parsed.segment_metadata.metadata == segment.metadata


@FAST
@given(eof_pdus(interop_headers))
def test_eof_pdu_interoperates_with_spacepackets_both_ways(pdu: EofPdu) -> None:
    octets = pdu.header.entity_id_octets
    theirs = SpEofPdu(
        sp_config(pdu.header),
        pdu.file_checksum,
        pdu.file_size,
        None
        if pdu.fault_location is None
        else EntityIdTlv(pdu.fault_location.to_bytes(octets, "big")),
        int(pdu.condition_code),  # spacepackets 0.32 ConditionCode lacks 9, invalid file structure
    )
    assert decode_pdu(theirs.pack()) == pdu
    parsed = SpEofPdu.unpack(pdu.encode())
    assert header_from_sp(parsed) == pdu.header
    assert int.from_bytes(parsed.file_checksum, "big") == pdu.file_checksum
    assert parsed.file_size == pdu.file_size
    # spacepackets 0.32 EofPdu.unpack keeps the condition code in the high nibble (no shift).
    assert int(parsed.condition_code) >> 4 == pdu.condition_code
    if pdu.fault_location is None:
        assert parsed.fault_location is None
    else:
        assert int.from_bytes(parsed.fault_location.value, "big") == pdu.fault_location


# --- malformed input ----------------------------------------------------------------------------


@FAST
@given(any_pdu, st.data())
def test_every_truncation_raises_truncated_error(pdu, data: st.DataObject) -> None:
    encoded = pdu.encode()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(TruncatedError):
        decode_pdu(encoded[:cut])


@FAST
@given(any_pdu, st.binary(min_size=1, max_size=8))
def test_trailing_octets_raise_length_error(pdu, extra: bytes) -> None:
    with pytest.raises(LengthError) as caught:
        decode_pdu(pdu.encode() + extra)
    assert caught.value.offset == 1


def with_data_field_length(encoded: bytes, length: int) -> bytes:
    return encoded[:1] + length.to_bytes(2, "big") + encoded[3:]


@FAST
@given(any_pdu, st.integers(1, 0xFFFF))
def test_data_field_length_that_disagrees_with_the_buffer_is_refused(pdu, delta: int) -> None:
    encoded = pdu.encode()
    length = int.from_bytes(encoded[1:3], "big")
    if length + delta <= 0xFFFF:
        with pytest.raises(TruncatedError):
            decode_pdu(with_data_field_length(encoded, length + delta))
    if length - delta >= 0:
        with pytest.raises(LengthError):
            decode_pdu(with_data_field_length(encoded, length - delta))


crc_headers = headers().map(lambda header: dataclasses.replace(header, crc_flag=True))


@FAST
@given(
    st.one_of(metadata_pdus(crc_headers), file_data_pdus(crc_headers), eof_pdus(crc_headers)),
    st.data(),
)
def test_any_flipped_bit_in_a_crc_protected_pdu_raises_checksum_error(pdu, data) -> None:
    encoded = bytearray(pdu.encode())
    # Octets 1..3 say where the PDU ends and bit 1 of octet 0 whether a CRC is there: flipping those
    # is a length or format error, found before the CRC.
    bit = data.draw(
        st.integers(0, 8 * len(encoded) - 1).filter(lambda b: b >= 32 or b in (0, 1, 2, 3, 4, 5, 7))
    )
    encoded[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(ChecksumError):
        decode_pdu(bytes(encoded))


def with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "big")


def test_wrong_version_raises_field_error_after_the_crc_is_checked() -> None:
    with pytest.raises(FieldError) as caught:
        decode_pdu(bytes([V18_FILE_DATA[0] ^ 0x60]) + V18_FILE_DATA[1:])
    assert caught.value.offset == 0
    corrupted = bytearray(V16_WITH_CRC)
    corrupted[0] ^= 0x60
    with pytest.raises(ChecksumError):
        decode_pdu(bytes(corrupted))


@pytest.mark.parametrize(
    ("octet", "error"),
    [(0x83, FieldError), (0x13, FieldError), (0x23, FieldError), (0x05, FieldError)],
)
def test_metadata_reserved_bits_and_unregistered_checksum_types_raise_field_error(
    octet: int, error: type
) -> None:
    corrupted = bytearray(V18_METADATA)
    corrupted[8] = octet
    with pytest.raises(error) as caught:
        decode_pdu(bytes(corrupted))
    assert caught.value.offset == 8


def test_metadata_file_name_running_past_the_data_field_raises_length_error() -> None:
    corrupted = bytearray(V18_METADATA)
    corrupted[13 + 1 + 17] = 0x13  # destination name length one more than the octets left
    with pytest.raises(LengthError):
        decode_pdu(bytes(corrupted))


def test_metadata_option_running_past_the_data_field_raises_length_error() -> None:
    pdu = MetadataPdu(V18_HEADER, 1, b"a", b"b", options=(Tlv(1, b"xyz"),))
    corrupted = bytearray(pdu.encode())
    corrupted[-4] = 4
    with pytest.raises(LengthError):
        decode_pdu(bytes(corrupted))


def test_data_field_too_short_for_the_fixed_parameters_raises_length_error() -> None:
    for encoded in (V18_EOF, V18_METADATA, V18_FILE_DATA):
        short = with_data_field_length(encoded[:9], 2)
        with pytest.raises(LengthError):
            decode_pdu(short)
    with pytest.raises(LengthError):
        decode_pdu(with_data_field_length(V18_EOF[:7], 0))


def test_eof_spare_bits_and_reserved_condition_codes_raise_field_error() -> None:
    for status in (0x01, 0xC0, 0xD0):
        corrupted = bytearray(V18_EOF)
        corrupted[8] = status
        with pytest.raises(FieldError) as caught:
            decode_pdu(bytes(corrupted))
        assert caught.value.offset == 8


def test_eof_fault_location_must_be_an_entity_id_tlv_and_only_with_an_error() -> None:
    cancelled = EofPdu(V18_HEADER, 0, 0, ConditionCode.CANCEL_REQUEST_RECEIVED, 1).encode()
    assert decode_pdu(cancelled).fault_location == 1
    wrong_type = bytearray(cancelled)
    wrong_type[-3] = 0x05
    with pytest.raises(FieldError):
        decode_pdu(bytes(wrong_type))
    no_error = bytearray(cancelled)
    no_error[8] = 0x00
    with pytest.raises(FieldError):
        decode_pdu(bytes(no_error))
    with pytest.raises(FieldError):
        EofPdu(V18_HEADER, 0, 0, ConditionCode.NO_ERROR, 1).encode()


@pytest.mark.parametrize("code", [DirectiveCode.FINISHED, DirectiveCode.ACK, 0x0B, 0xFF])
def test_directives_outside_class_1_raise_field_error(code: int) -> None:
    body = V18_HEADER.encode(PduType.FILE_DIRECTIVE, 3) + bytes([code, 0, 0])
    with pytest.raises(FieldError) as caught:
        decode_pdu(body)
    assert caught.value.offset == V18_HEADER.length


def test_encoders_refuse_values_that_do_not_fit() -> None:
    with pytest.raises(FieldError):
        PduHeader(256, 0, 0, entity_id_octets=1).encode(PduType.FILE_DATA, 4)
    with pytest.raises(FieldError):
        PduHeader(0, 0, 256, entity_id_octets=1).encode(PduType.FILE_DATA, 4)
    with pytest.raises(FieldError):
        PduHeader(0, 1 << 32, 0).encode(PduType.FILE_DATA, 4)
    with pytest.raises(FieldError):
        PduHeader(0, 0, 0, entity_id_octets=9).encode(PduType.FILE_DATA, 4)
    with pytest.raises(FieldError):
        FileDataPdu(V18_HEADER, 1 << 32, b"x").encode()
    with pytest.raises(FieldError):
        EofPdu(V18_HEADER, 1 << 32, 0).encode()
    with pytest.raises(LengthError):
        MetadataPdu(V18_HEADER, 0, b"a", bytes(256)).encode()
    with pytest.raises(LengthError):
        FileDataPdu(
            V18_HEADER, 0, b"", SegmentMetadata(RecordContinuationState.START, bytes(64))
        ).encode()
    with pytest.raises(LengthError):
        FileDataPdu(V18_HEADER, 0, bytes(0xFFFF)).encode()
    with pytest.raises(LengthError):
        Tlv(1, bytes(256)).encode()
    large = PduHeader(1, 0, 2, large_file_flag=True)
    assert decode_pdu(FileDataPdu(large, 1 << 40, b"x").encode()).offset == 1 << 40


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_octets_decode_or_raise_a_protocol_error(data: bytes) -> None:
    with suppress(ProtocolError):
        decode_pdu(data)


@settings(max_examples=200, deadline=None)
@given(any_pdu, st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6))
def test_mutated_pdus_decode_or_raise_a_protocol_error(pdu, mutations) -> None:
    encoded = bytearray(pdu.encode())
    for position, value in mutations:
        encoded[position % len(encoded)] = value
    with suppress(ProtocolError):
        decode_pdu(bytes(encoded))


# --- sender -------------------------------------------------------------------------------------


def test_file_sender_sends_metadata_segments_in_order_then_eof() -> None:
    data = bytes(range(256)) * 3
    sender = FileSender(7, 9, 1234, data, 100, destination_name="model.onnx", crc_flag=True)
    pdus = [decode_pdu(p) for p in sender]
    assert isinstance(pdus[0], MetadataPdu)
    assert pdus[0].file_size == len(data)
    assert pdus[0].destination_file_name == b"model.onnx"
    segments = pdus[1:-1]
    assert [s.offset for s in segments] == list(range(0, len(data), 100))
    assert b"".join(s.file_data for s in segments) == data
    assert pdus[-1] == EofPdu(sender.header, crc32(data), len(data))
    assert all(
        p.header.crc_flag and p.header.transaction_id == TransactionId(7, 1234) for p in pdus
    )


def test_file_sender_reads_a_path_into_the_same_pdus_as_the_bytes(tmp_path: Path) -> None:
    data = os.urandom(5000)
    path = tmp_path / "result.bin"
    path.write_bytes(data)
    from_path = FileSender(1, 2, 3, path, 512, destination_name="r.bin", source_name="r.bin")
    from_bytes = FileSender(1, 2, 3, data, 512, destination_name="r.bin")
    assert list(from_path) == list(from_bytes)


def test_file_sender_refuses_segments_and_ids_that_do_not_fit() -> None:
    with pytest.raises(LengthError):
        FileSender(1, 2, 3, b"abc", 0, destination_name="x")
    with pytest.raises(LengthError):
        FileSender(1, 2, 3, b"abc", 0xFFFF, destination_name="x")
    with pytest.raises(FieldError):
        FileSender(1 << 16, 2, 3, b"abc", 10, destination_name="x")
    with pytest.raises(LengthError):
        FileSender(1, 2, 3, b"abc", 10, destination_name="x" * 256)
    with pytest.raises(FieldError):
        FileSender(1, 2, 3, b"abc", 10, destination_name="x", checksum_type=ChecksumType.MODULAR)


@FAST
@given(headers(), st.integers(1, 70000))
def test_file_data_capacity_fills_the_pdu_exactly(header: PduHeader, extra: int) -> None:
    overhead = header.length + header.fss_octets + (2 if header.crc_flag else 0)
    max_length = overhead + extra
    capacity = file_data_capacity(header, max_length)
    encoded = FileDataPdu(header, 0, bytes(capacity)).encode()
    assert len(encoded) == min(max_length, header.length + 0xFFFF)
    with pytest.raises(LengthError):
        file_data_capacity(header, overhead)


# --- receiver -----------------------------------------------------------------------------------

RECEIVER_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@contextmanager
def receive_directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        yield Path(directory)


def feed(receiver: FileReceiver, pdus: list[bytes], now: float = 0.0) -> list:
    return [result for pdu in pdus if (result := receiver.receive(pdu, now)) is not None]


@RECEIVER_SETTINGS
@given(
    st.binary(max_size=3000),
    st.integers(1, 700),
    st.booleans(),
    st.lists(st.integers(0, 10**6), max_size=12),
    st.randoms(use_true_random=False),
)
def test_shuffled_and_duplicated_pdus_reassemble_the_file_exactly_once(
    data: bytes, segment_size: int, crc_flag: bool, duplicates: list[int], rng: random.Random
) -> None:
    sender = FileSender(
        3, 9, 42, data, segment_size, destination_name="model.onnx", crc_flag=crc_flag
    )
    pdus = list(sender)
    stream = pdus + [pdus[i % len(pdus)] for i in duplicates]
    rng.shuffle(stream)
    with receive_directory() as directory:
        receiver = FileReceiver(directory, entity_id=9)
        results = feed(receiver, stream)
        assert len(results) == 1
        assert results[0].success
        assert results[0].path == directory / "model.onnx"
        assert results[0].file_size == len(data)
        assert (directory / "model.onnx").read_bytes() == data
        assert os.listdir(directory) == ["model.onnx"]
        assert receiver.duplicate_pdus == len(duplicates)
        assert receiver.active_transactions == ()


@settings(RECEIVER_SETTINGS, max_examples=25)
@given(
    st.lists(st.binary(max_size=800), min_size=2, max_size=4),
    st.integers(1, 300),
    st.randoms(use_true_random=False),
)
def test_concurrent_transactions_are_kept_apart(
    files: list[bytes], segment_size: int, rng: random.Random
) -> None:
    # The same sequence number from different sources names different transactions.
    senders = [
        FileSender(source, 9, 7, data, segment_size, destination_name=f"f{source}")
        for source, data in enumerate(files)
    ]
    stream = [pdu for sender in senders for pdu in sender]
    rng.shuffle(stream)
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        results = feed(receiver, stream)
        assert sorted(r.transaction_id for r in results) == [
            TransactionId(s, 7) for s in range(len(files))
        ]
        assert all(r.success for r in results)
        for source, data in enumerate(files):
            assert (directory / f"f{source}").read_bytes() == data


def test_eof_and_segments_before_metadata_are_accepted() -> None:
    data = os.urandom(1000)
    metadata, *segments, eof = list(FileSender(1, 2, 3, data, 128, destination_name="x.bin"))
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        assert feed(receiver, [eof, *reversed(segments)]) == []
        assert receiver.missing_ranges() == {TransactionId(1, 3): ()}
        assert not (directory / "x.bin").exists()
        [result] = feed(receiver, [metadata])
        assert result.success
        assert (directory / "x.bin").read_bytes() == data


@RECEIVER_SETTINGS
@given(st.binary(min_size=1, max_size=2000), st.integers(1, 400), st.data())
def test_any_single_dropped_file_data_is_reported_missing_and_leaves_no_file(
    data: bytes, segment_size: int, draw: st.DataObject
) -> None:
    metadata, *segments, eof = list(FileSender(4, 2, 8, data, segment_size, destination_name="m"))
    dropped = draw.draw(st.integers(0, len(segments) - 1))
    kept = [metadata, eof, *segments[:dropped], *segments[dropped + 1 :]]
    draw.draw(st.randoms(use_true_random=False)).shuffle(kept)
    start = dropped * segment_size
    with receive_directory() as directory:
        receiver = FileReceiver(directory, inactivity_timeout_s=60.0)
        assert feed(receiver, kept, now=100.0) == []
        assert receiver.missing_ranges() == {
            TransactionId(4, 8): ((start, min(start + segment_size, len(data))),)
        }
        assert not (directory / "m").exists()
        assert receiver.expire(now=160.0) == []
        [result] = receiver.expire(now=160.5)
        assert result.condition_code == ConditionCode.INACTIVITY_DETECTED
        assert f"({start}, " in result.reason
        assert os.listdir(directory) == []
        assert receiver.receive(segments[dropped]) is None  # too late: counted, not reopened
        assert receiver.duplicate_pdus == 1
        assert os.listdir(directory) == []


@RECEIVER_SETTINGS
@given(st.binary(min_size=1, max_size=2000), st.integers(1, 400), st.data())
def test_a_flipped_bit_in_a_segment_fails_the_checksum_and_leaves_no_file(
    data: bytes, segment_size: int, draw: st.DataObject
) -> None:
    pdus = list(FileSender(4, 2, 8, data, segment_size, destination_name="m"))
    index = draw.draw(st.integers(1, len(pdus) - 2))
    segment = bytearray(pdus[index])
    first_data_octet = PduHeader(4, 8, 2).length + 4
    bit = draw.draw(st.integers(8 * first_data_octet, 8 * len(segment) - 1))
    segment[bit // 8] ^= 0x80 >> (bit % 8)
    pdus[index] = bytes(segment)
    with receive_directory() as directory:
        (directory / "m").write_bytes(b"the model that flies now")
        receiver = FileReceiver(directory)
        [result] = feed(receiver, pdus)
        assert result.condition_code == ConditionCode.FILE_CHECKSUM_FAILURE
        assert result.path is None
        assert not result.success
        assert (directory / "m").read_bytes() == b"the model that flies now"
        assert os.listdir(directory) == ["m"]


def test_a_flipped_bit_under_a_pdu_crc_is_refused_before_it_touches_the_file() -> None:
    metadata, segment, eof = list(
        FileSender(1, 2, 3, b"abcdef", 6, destination_name="x", crc_flag=True)
    )
    corrupted = bytearray(segment)
    corrupted[-3] ^= 0x01
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        with pytest.raises(ChecksumError):
            receiver.receive(bytes(corrupted))
        assert receiver.active_transactions == ()
        assert feed(receiver, [metadata, eof, segment])[0].success


def test_eof_size_disagreeing_with_metadata_fails_and_leaves_no_file() -> None:
    data = b"0123456789"
    metadata, segment, _ = list(FileSender(1, 2, 3, data, 10, destination_name="x"))
    wrong_eof = EofPdu(PduHeader(1, 3, 2), crc32(data), 11).encode()
    with receive_directory() as directory:
        [result] = feed(FileReceiver(directory), [metadata, segment, wrong_eof])
        assert result.condition_code == ConditionCode.FILE_SIZE_ERROR
        assert os.listdir(directory) == []


def test_data_beyond_the_eof_size_fails_the_transfer() -> None:
    header = PduHeader(1, 3, 2)
    pdus = [
        MetadataPdu(header, 0, b"s", b"x").encode(),  # 0: size unbounded, taken from EOF
        EofPdu(header, crc32(b"ab"), 2).encode(),
        FileDataPdu(header, 0, b"abc").encode(),
    ]
    with receive_directory() as directory:
        [result] = feed(FileReceiver(directory), pdus)
        assert result.condition_code == ConditionCode.FILE_SIZE_ERROR
        assert os.listdir(directory) == []


def test_a_successful_transfer_replaces_an_existing_file() -> None:
    with receive_directory() as directory:
        (directory / "x").write_bytes(b"old")
        [result] = feed(
            FileReceiver(directory), list(FileSender(1, 2, 3, b"new", 2, destination_name="x"))
        )
        assert result.success
        assert (directory / "x").read_bytes() == b"new"


def test_an_empty_file_is_delivered() -> None:
    with receive_directory() as directory:
        pdus = list(FileSender(1, 2, 3, b"", 10, destination_name="empty"))
        assert len(pdus) == 2
        [result] = feed(FileReceiver(directory), pdus)
        assert result.success
        assert (directory / "empty").read_bytes() == b""


def test_a_large_file_flag_transfer_is_delivered() -> None:
    data = os.urandom(300)
    with receive_directory() as directory:
        pdus = list(FileSender(1, 2, 3, data, 64, destination_name="x", large_file_flag=True))
        assert decode_pdu(pdus[1]).header.large_file_flag
        [result] = feed(FileReceiver(directory), pdus)
        assert result.success
        assert (directory / "x").read_bytes() == data


@pytest.mark.parametrize(
    "name",
    [
        "/tmp/dest-file.txt",
        "..",
        "../escape",
        "sub/../../escape",
        "sub/x",
        "C:\\x",
        ".hidden",
        "",
        ".",
        "a\x00b",
    ],
)
def test_destination_names_that_escape_or_nest_are_refused(name: str) -> None:
    pdus = list(FileSender(1, 2, 3, b"data", 4, destination_name=name))
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        receiver.receive(pdus[1])
        with pytest.raises(FieldError):
            receiver.receive(pdus[0])
        assert feed(receiver, pdus[2:]) == []
        assert os.listdir(directory) == []
        assert receiver.files_failed == 1
        assert not (directory.parent / "escape").exists()


def test_v18_metadata_with_its_absolute_destination_is_refused() -> None:
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        with pytest.raises(FieldError):
            receiver.receive(V18_METADATA)


def test_non_utf8_destination_name_is_refused() -> None:
    with receive_directory() as directory, pytest.raises(FieldError):
        FileReceiver(directory).receive(MetadataPdu(PduHeader(1, 2, 3), 1, b"s", b"\xff").encode())


def test_pdu_for_another_entity_raises_address_error() -> None:
    pdus = list(FileSender(1, 2, 3, b"data", 4, destination_name="x"))
    with receive_directory() as directory:
        receiver = FileReceiver(directory, entity_id=5)
        for pdu in pdus:
            with pytest.raises(AddressError):
                receiver.receive(pdu)
        assert receiver.active_transactions == ()


def test_acknowledged_mode_and_pdus_toward_the_sender_raise_field_error() -> None:
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        with pytest.raises(FieldError):
            receiver.receive(V16)
        toward_sender = PduHeader(1, 2, 3, direction=Direction.TOWARD_SENDER)
        with pytest.raises(FieldError):
            receiver.receive(FileDataPdu(toward_sender, 0, b"x").encode())
        assert receiver.active_transactions == ()


def test_conflicting_metadata_raises_field_error() -> None:
    header = PduHeader(1, 2, 3)
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        receiver.receive(MetadataPdu(header, 4, b"s", b"x").encode())
        with pytest.raises(FieldError):
            receiver.receive(MetadataPdu(header, 4, b"s", b"y").encode())


def test_unsupported_checksum_type_fails_the_transfer_with_its_reason() -> None:
    header = PduHeader(1, 2, 3)
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        receiver.receive(FileDataPdu(header, 0, b"abcd").encode())
        result = receiver.receive(MetadataPdu(header, 4, b"s", b"x", ChecksumType.MODULAR).encode())
        assert result.condition_code == ConditionCode.UNSUPPORTED_CHECKSUM_TYPE
        assert "MODULAR" in result.reason
        assert os.listdir(directory) == []


def test_spacepackets_transfer_with_null_checksum_is_received() -> None:
    # A transfer built only with spacepackets, as a ground tool would send it.
    data = b"Hello World!"
    config = PduConfig(
        ByteFieldGenerator.from_int(2, 1),
        ByteFieldGenerator.from_int(2, 2),
        ByteFieldGenerator.from_int(4, 0),
        SpTransmissionMode.UNACKNOWLEDGED,
    )
    params = MetadataParams(False, SpChecksumType.NULL_CHECKSUM, len(data), "src.txt", "dest.txt")
    pdus = [
        SpMetadataPdu(config, params).pack(),
        SpFileDataPdu(config, FileDataParams(data[6:], 6)).pack(),
        SpFileDataPdu(config, FileDataParams(data[:6], 0)).pack(),
        SpEofPdu(config, 0, len(data)).pack(),
    ]
    with receive_directory() as directory:
        [result] = feed(FileReceiver(directory, entity_id=2), pdus)
        assert result.success
        assert (directory / "dest.txt").read_bytes() == data


def test_eof_with_a_cancel_condition_ends_the_transfer_with_that_condition() -> None:
    header = PduHeader(1, 2, 3)
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        feed(
            receiver,
            [MetadataPdu(header, 4, b"s", b"x").encode(), FileDataPdu(header, 0, b"ab").encode()],
        )
        cancel = EofPdu(header, 0, 2, ConditionCode.CANCEL_REQUEST_RECEIVED, 1).encode()
        result = receiver.receive(cancel)
        assert result.condition_code == ConditionCode.CANCEL_REQUEST_RECEIVED
        assert os.listdir(directory) == []


def test_a_segment_beyond_the_size_limit_fails_without_writing() -> None:
    header = PduHeader(1, 2, 3)
    with receive_directory() as directory:
        receiver = FileReceiver(directory, max_file_size=1000)
        result = receiver.receive(FileDataPdu(header, 0xFFFF_FFF0, b"x").encode())
        assert result.condition_code == ConditionCode.FILE_SIZE_ERROR
        assert os.listdir(directory) == []


def test_file_store_failure_is_reported_as_filestore_rejection() -> None:
    pdus = list(FileSender(1, 2, 3, b"data", 4, destination_name="taken"))
    with receive_directory() as directory:
        (directory / "taken").mkdir()
        (directory / "taken" / "inside").write_bytes(b"")
        [result] = feed(FileReceiver(directory), pdus)
        assert result.condition_code == ConditionCode.FILESTORE_REJECTION
        assert sorted(os.listdir(directory)) == ["taken"]


def test_a_short_write_as_the_file_store_fills_is_completed_not_delivered_with_a_hole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A file system running full returns a short count from pwrite before it says ENOSPC; the
    # NULL checksum cannot see the hole, so the receiver must write every octet itself.
    real_pwrite = os.pwrite
    monkeypatch.setattr(
        os, "pwrite", lambda fd, data, offset: real_pwrite(fd, data[: len(data) // 2 + 1], offset)
    )
    content = bytes(range(256)) * 2
    pdus = list(
        FileSender(1, 2, 3, content, 100, destination_name="x", checksum_type=ChecksumType.NULL)
    )
    with receive_directory() as directory:
        [result] = feed(FileReceiver(directory), pdus)
        assert result.success
        assert (directory / "x").read_bytes() == content


def test_a_file_store_that_fills_mid_segment_is_a_filestore_rejection_and_leaves_no_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_pwrite = os.pwrite
    calls = []

    def filling(fd: int, data: bytes, offset: int) -> int:
        calls.append(offset)
        if len(calls) == 1:
            return real_pwrite(fd, data[:10], offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", filling)
    pdus = list(FileSender(1, 2, 3, os.urandom(100), 100, destination_name="x"))
    with receive_directory() as directory:
        [result] = feed(FileReceiver(directory), pdus)
        assert result.condition_code == ConditionCode.FILESTORE_REJECTION
        assert os.strerror(errno.ENOSPC) in result.reason
        assert calls == [0, 10]
        assert os.listdir(directory) == []


def test_a_partial_file_that_cannot_be_removed_still_ends_the_transfer_with_a_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    header = PduHeader(1, 2, 3)
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        receiver.receive(FileDataPdu(header, 0, b"abcdef").encode())

        def read_only(self: Path, missing_ok: bool = False) -> None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(Path, "unlink", read_only)
        # The EOF says 2 octets, 6 were received: the transfer fails, and so does the clean-up.
        result = receiver.receive(EofPdu(header, 0, 2).encode())
        assert result.condition_code == ConditionCode.FILE_SIZE_ERROR
        assert f"left behind: {os.strerror(errno.EROFS)}" in result.reason
        assert receiver.files_failed == 1
        assert receiver.active_transactions == ()
        receiver.close()
        monkeypatch.undo()
        FileReceiver(directory)  # the next start removes what was left
        assert os.listdir(directory) == []


def test_partial_files_left_by_a_power_loss_are_removed_by_the_next_receiver() -> None:
    metadata, *segments, _ = list(FileSender(1, 2, 3, os.urandom(500), 100, destination_name="x"))
    with receive_directory() as directory:
        lost = FileReceiver(directory)
        feed(lost, [metadata, *segments[:2]])
        assert len(os.listdir(directory)) == 1  # the partial, never under the destination name
        # Power loss: the receiver is never closed; a new one starts on the same flash.
        FileReceiver(directory)
        assert os.listdir(directory) == []
        lost.close()


def test_missing_ranges_before_the_size_is_known_cover_only_holes() -> None:
    header = PduHeader(1, 2, 3)
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        feed(
            receiver,
            [FileDataPdu(header, 10, b"abc").encode(), FileDataPdu(header, 20, b"x").encode()],
        )
        assert receiver.missing_ranges() == {TransactionId(1, 2): ((0, 10), (13, 20))}
        receiver.receive(MetadataPdu(header, 30, b"s", b"x").encode())
        assert receiver.missing_ranges() == {TransactionId(1, 2): ((0, 10), (13, 20), (21, 30))}
        receiver.close()


@settings(max_examples=120, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=5))
def test_arbitrary_octets_at_the_receiver_give_a_result_or_a_protocol_error(
    pdus: list[bytes],
) -> None:
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        for pdu in pdus:
            with suppress(ProtocolError):
                receiver.receive(pdu)
        receiver.close()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
    st.integers(0, 3),
)
def test_mutated_transfers_at_the_receiver_give_a_result_or_a_protocol_error(
    mutations: list[tuple[int, int]], index: int
) -> None:
    pdus = [bytearray(p) for p in FileSender(1, 2, 3, b"payload!", 3, destination_name="x")]
    target = pdus[index % len(pdus)]
    for position, value in mutations:
        target[position % len(target)] = value
    delivered = set()
    with receive_directory() as directory:
        receiver = FileReceiver(directory)
        for pdu in pdus:
            try:
                result = receiver.receive(bytes(pdu))
            except ProtocolError:
                continue
            if result is not None and result.success:
                delivered.add(result.path.name)
        receiver.close()
        # Nothing appears under a name but a delivered file; partials keep their own names.
        assert all(n in delivered or n.startswith(".cfdp-") for n in os.listdir(directory))


def test_close_drops_active_transactions_and_their_partial_files() -> None:
    metadata, first, *_ = list(FileSender(1, 2, 3, os.urandom(300), 100, destination_name="x"))
    with receive_directory() as directory:
        with FileReceiver(directory) as receiver:
            feed(receiver, [metadata, first])
            assert receiver.active_transactions == (TransactionId(1, 3),)
        assert receiver.active_transactions == ()
        assert os.listdir(directory) == []


def test_transfers_beyond_the_active_limit_are_refused_and_the_others_complete(
    tmp_path: Path,
) -> None:
    senders = [
        FileSender(source, 9, 1, bytes([source]) * 600, 200, destination_name=f"f{source}")
        for source in range(4)
    ]
    receiver = FileReceiver(tmp_path, max_active_transactions=2)
    opened = [receiver.receive(next(iter(sender))) for sender in senders]  # Metadata of each
    assert opened[:2] == [None, None]
    assert all(result is not None and not result.success for result in opened[2:])
    assert all(result.condition_code == ConditionCode.FILESTORE_REJECTION for result in opened[2:])
    assert "2 transfers already in progress" in opened[2].reason
    assert receiver.transactions_refused == 2
    assert len(receiver.active_transactions) == 2
    results = feed(receiver, [pdu for sender in senders[:2] for pdu in list(sender)[1:]])
    assert [result.path.name for result in results] == ["f0", "f1"]
    assert sorted(os.listdir(tmp_path)) == ["f0", "f1"]  # no partial of the refused ones
    # Once the two have ended, the refused file sent again (a new transaction) is received.
    again = FileSender(2, 9, 2, bytes([2]) * 600, 200, destination_name="f2")
    assert [result.success for result in feed(receiver, list(again))] == [True]


def test_an_active_transaction_limit_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_active_transactions"):
        FileReceiver(tmp_path, max_active_transactions=0)
