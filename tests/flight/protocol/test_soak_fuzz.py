"""Soak and fuzz runs over every protocol entry point that takes octets from the wire (`make soak`).

Each property feeds (a) arbitrary octets and (b) mutations of valid inputs whose length fields and
CRC/FECF are recomputed after the mutation, so that the mutation gets past the checksums and reaches
the field parsing behind them (random octets almost never pass a CRC). A parser must return a
result or raise a ProtocolError, nothing else; a stateful object must go on working afterwards: a
valid input after the garbage still gives the right result.

PENUMBRA_SOAK_EXAMPLES scales every property (default 3000: about 8 minutes on 2 cores). Each
property runs that many examples times its weight: cheap codecs more, stateful soaks fewer.
"""

import json
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from flight.protocol import cfdp, cobs, describe, icd, pus
from flight.protocol.cop1 import (
    MODULUS,
    AlertNotification,
    Clcw,
    Farm,
    FarmReason,
    FarmState,
    FduNotification,
    Fop,
    FopDirective,
    FopState,
    Response,
)
from flight.protocol.crc import crc16
from flight.protocol.cuc import CucPField, CucTime, ExplicitCucTime, TimeCodeId
from flight.protocol.errors import ProtocolError, ReplayError
from flight.protocol.sdls import (
    MAX_IV,
    ReplayWindow,
    SecurityAssociation,
    SecurityHeader,
    TcSecurity,
)
from flight.protocol.spacepacket import (
    PacketStream,
    PacketType,
    SequenceFlags,
    SpacePacket,
    idle_packet,
    packet_length,
)
from flight.protocol.tc_frame import FrameType, TcFrame, parse_control_command
from flight.protocol.tm_frame import TmFrame, TmMasterChannel, TmReceiver

EXAMPLES = int(os.environ.get("PENUMBRA_SOAK_EXAMPLES", "3000"))
SCID = icd.SPACECRAFT_ID
KEY = bytes(range(32))
SPI = icd.SECURITY_PARAMETER_INDEX

pytestmark = pytest.mark.soak


def soak(weight: float = 1.0) -> Callable:
    """Hypothesis settings of a soak property: EXAMPLES x `weight` examples, no deadline."""
    return settings(
        max_examples=max(10, int(EXAMPLES * weight)),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


def outcome(call: Callable[..., Any], *args: Any, size: int | None = None, **kwargs: Any) -> Any:
    """The result of `call`, or the ProtocolError it raised; any other exception fails the run.

    With `size` (octets of the input), the error's offset must lie within the input.
    """
    try:
        result = call(*args, **kwargs)
    except ProtocolError as error:
        # `pytest --hypothesis-show-statistics` shows how far the inputs got, by outcome.
        event(f"{type(error).__name__}: {_first_words(error.message)}")
        assert error.message, f"{type(error).__name__} without a message"
        if size is not None and error.offset is not None:
            assert 0 <= error.offset <= size, f"offset {error.offset} outside 0..{size}: {error}"
        return error
    event("decoded")
    return result


def _first_words(message: str) -> str:
    """The message without its numbers, so that events group by kind of complaint."""
    return " ".join(word for word in message.split()[:5] if not any(c.isdigit() for c in word))


# --- mutations ---------------------------------------------------------------------------------

# Positions are taken modulo the buffer length; half of them land in the first octets (headers).
_POSITIONS = st.one_of(st.integers(0, 24), st.integers(0, 1 << 16))
_WORDS = st.one_of(
    st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x3FF, 0x7FE, 0x7FF, 0x8000, 0xFFFE, 0xFFFF]),
    st.integers(0, 0xFFFF),
)
_OPERATIONS = st.one_of(
    st.tuples(st.just("flip"), _POSITIONS, st.integers(0, 7)),
    st.tuples(st.just("set"), _POSITIONS, st.integers(0, 255)),
    st.tuples(st.just("word"), _POSITIONS, _WORDS),
    st.tuples(st.just("insert"), _POSITIONS, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), _POSITIONS, st.integers(1, 16)),
    st.tuples(st.just("duplicate"), _POSITIONS, st.integers(1, 32)),
    st.tuples(st.just("truncate"), st.integers(1, 64)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=32)),
)
MUTATIONS = st.lists(_OPERATIONS, min_size=1, max_size=4)
# Whether to repair the length field and the checksum after mutating: mostly yes, to get past them.
REPAIRS = st.tuples(st.integers(0, 7).map(bool), st.integers(0, 9).map(bool))


def mutate(data: bytes, operations: Sequence[tuple]) -> bytearray:
    buffer = bytearray(data)
    for operation in operations:
        kind = operation[0]
        if kind == "extend":
            buffer += operation[1]
            continue
        if kind == "truncate":
            del buffer[max(0, len(buffer) - operation[1]) :]
            continue
        if not buffer:
            continue
        position = operation[1] % len(buffer)
        if kind == "flip":
            buffer[position] ^= 1 << operation[2]
        elif kind == "set":
            buffer[position] = operation[2]
        elif kind == "word":
            buffer[position : position + 2] = operation[2].to_bytes(2, "big")
        elif kind == "insert":
            buffer[position:position] = operation[2]
        elif kind == "delete":
            del buffer[position : position + operation[2]]
        elif kind == "duplicate":
            buffer[position:position] = buffer[position : position + operation[2]]
    return buffer


def fix_crc(buffer: bytearray) -> bytearray:
    """The trailing CRC-16 (PUS packet error control, TC/TM FECF, CFDP PDU CRC) made right again."""
    if len(buffer) >= 2:
        buffer[-2:] = crc16(buffer[:-2]).to_bytes(2, "big")
    return buffer


def fix_packet_length(buffer: bytearray) -> bytearray:
    """The Space Packet data length field made to agree with the buffer."""
    if 7 <= len(buffer) <= 6 + 65536:
        buffer[4:6] = (len(buffer) - 7).to_bytes(2, "big")
    return buffer


def fix_tc_length(buffer: bytearray) -> bytearray:
    """The TC frame length field (10 bits, length - 1) made to agree with the buffer."""
    if 5 <= len(buffer) <= 1024:
        word1 = int.from_bytes(buffer[2:4], "big")
        buffer[2:4] = ((word1 & 0xFC00) | (len(buffer) - 1)).to_bytes(2, "big")
    return buffer


def fix_tm_length(buffer: bytearray, frame_length: int) -> bytearray:
    """A TM frame cut or zero-padded to the fixed frame length."""
    del buffer[frame_length:]
    buffer += bytes(frame_length - len(buffer))
    return buffer


def fix_cfdp(buffer: bytearray, repair_length: bool, repair_crc: bool) -> bytes:
    """The CFDP PDU data field length made to agree with the buffer, then the PDU CRC if flagged."""
    if len(buffer) >= 4:
        if repair_length:
            header_length = 4 + 2 * (((buffer[3] >> 4) & 7) + 1) + (buffer[3] & 7) + 1
            field_length = len(buffer) - header_length
            if 0 <= field_length <= 0xFFFF:
                buffer[1:3] = field_length.to_bytes(2, "big")
        if repair_crc and buffer[0] & 0x02:
            fix_crc(buffer)
    return bytes(buffer)


def repaired_packet(data: bytes, operations: Sequence[tuple], repairs: tuple[bool, bool]) -> bytes:
    buffer = mutate(data, operations)
    if repairs[0]:
        fix_packet_length(buffer)
    if repairs[1]:
        fix_crc(buffer)
    return bytes(buffer)


def repaired_tc_frame(
    data: bytes, operations: Sequence[tuple], repairs: tuple[bool, bool]
) -> bytes:
    buffer = mutate(data, operations)
    if repairs[0]:
        fix_tc_length(buffer)
    if repairs[1]:
        fix_crc(buffer)
    return bytes(buffer)


def repaired_tm_frame(
    data: bytes, operations: Sequence[tuple], repairs: tuple[bool, bool], frame_length: int
) -> bytes:
    buffer = mutate(data, operations)
    if repairs[0]:
        fix_tm_length(buffer, frame_length)
    if repairs[1]:
        fix_crc(buffer)
    return bytes(buffer)


# --- valid inputs ------------------------------------------------------------------------------

apids = st.integers(0, 0x7FF)
counts = st.integers(0, 0x3FFF)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
small_binary = st.binary(max_size=64)

space_packets = st.builds(
    SpacePacket,
    st.sampled_from(PacketType),
    apids,
    counts,
    st.binary(min_size=1, max_size=200),
    st.booleans(),
    st.sampled_from(SequenceFlags),
)

request_ids = st.builds(
    pus.RequestId,
    st.integers(0, 7),
    st.sampled_from(PacketType),
    st.booleans(),
    apids,
    st.sampled_from(SequenceFlags),
    counts,
)
id_lists = st.lists(u16, max_size=20)


def value_length_total(parameter_id: int) -> int:
    return parameter_id % 9


def value_length_partial(parameter_id: int) -> int | None:
    return None if parameter_id % 7 == 3 else parameter_id % 5


_LENGTHS = {1: 1, 2: 2, 3: 4, 4: 8}


def value_length_lookup(parameter_id: int) -> int:
    return _LENGTHS[parameter_id]  # KeyError for an unknown id, as a dictionary lookup gives


def value_length_negative(parameter_id: int) -> int:
    return -1 if parameter_id % 11 == 0 else parameter_id % 3


VALUE_LENGTHS = (
    value_length_total,
    value_length_partial,
    value_length_lookup,
    value_length_negative,
)


@st.composite
def parameter_values(draw: st.DrawFn) -> bytes:
    ids = draw(st.lists(st.integers(1, 4) | u16, max_size=12))
    values = [
        pus.ParameterValue(pid, draw(st.binary(min_size=pid % 9, max_size=pid % 9))) for pid in ids
    ]
    return pus.ParameterValues(tuple(values)).encode()


APPLICATION_DATA: dict[str, tuple[Callable[[bytes], object], st.SearchStrategy[bytes]]] = {
    "request-id": (pus.RequestId.decode, request_ids.map(lambda r: r.encode())),
    "verification-success": (
        pus.VerificationSuccess.decode,
        request_ids.map(lambda r: pus.VerificationSuccess(r).encode()),
    ),
    "verification-failure": (
        pus.VerificationFailure.decode,
        st.builds(pus.VerificationFailure, request_ids, u16, small_binary).map(
            lambda v: v.encode()
        ),
    ),
    "housekeeping-report": (
        pus.HousekeepingParameterReport.decode,
        st.builds(pus.HousekeepingParameterReport, u16, small_binary).map(lambda v: v.encode()),
    ),
    "structure-ids": (
        pus.HousekeepingStructureIds.decode,
        id_lists.map(lambda ids: pus.HousekeepingStructureIds(ids).encode()),
    ),
    "collection-intervals": (
        pus.ModifyCollectionIntervals.decode,
        st.lists(st.builds(pus.CollectionInterval, u16, u32), max_size=12).map(
            lambda entries: pus.ModifyCollectionIntervals(entries).encode()
        ),
    ),
    "event-report": (
        pus.EventReport.decode,
        st.builds(pus.EventReport, u16, small_binary).map(lambda v: v.encode()),
    ),
    "event-ids": (
        pus.EventDefinitionIds.decode,
        id_lists.map(lambda ids: pus.EventDefinitionIds(ids).encode()),
    ),
    "perform-function": (
        pus.PerformFunction.decode,
        st.builds(pus.PerformFunction, u16, small_binary).map(lambda v: v.encode()),
    ),
    "connection-test": (
        pus.ConnectionTest.decode,
        apids.map(lambda apid: pus.ConnectionTest(apid).encode()),
    ),
    "parameter-ids": (
        pus.ParameterIds.decode,
        id_lists.map(lambda ids: pus.ParameterIds(ids).encode()),
    ),
}
for _function in VALUE_LENGTHS:
    APPLICATION_DATA[f"parameter-values/{_function.__name__}"] = (
        lambda data, _function=_function: pus.ParameterValues.decode(data, _function),
        parameter_values(),
    )

# (service, subtype, application data) that pus.py and describe.py know, TC and TM.
_TC_DATA = st.one_of(
    st.tuples(st.just(3), st.sampled_from([5, 6]), APPLICATION_DATA["structure-ids"][1]),
    st.tuples(st.just(3), st.just(31), APPLICATION_DATA["collection-intervals"][1]),
    st.tuples(st.just(5), st.sampled_from([5, 6]), APPLICATION_DATA["event-ids"][1]),
    st.tuples(st.just(8), st.just(1), APPLICATION_DATA["perform-function"][1]),
    st.tuples(st.just(17), st.just(1), st.just(b"")),
    st.tuples(st.just(17), st.just(3), APPLICATION_DATA["connection-test"][1]),
    st.tuples(st.just(20), st.just(1), APPLICATION_DATA["parameter-ids"][1]),
    st.tuples(st.just(20), st.just(3), parameter_values()),
    st.tuples(u8, u8, small_binary),
)
_TM_DATA = st.one_of(
    st.tuples(st.just(1), st.sampled_from([1, 3, 7]), APPLICATION_DATA["request-id"][1]),
    st.tuples(st.just(1), st.sampled_from([2, 4, 8]), APPLICATION_DATA["verification-failure"][1]),
    st.tuples(st.just(3), st.just(25), APPLICATION_DATA["housekeeping-report"][1]),
    st.tuples(st.just(5), st.integers(1, 4), APPLICATION_DATA["event-report"][1]),
    st.tuples(st.just(17), st.just(2), st.just(b"")),
    st.tuples(st.just(17), st.just(4), APPLICATION_DATA["connection-test"][1]),
    st.tuples(st.just(20), st.just(2), parameter_values()),
    st.tuples(u8, u8, small_binary),
)


@st.composite
def pus_tcs(draw: st.DrawFn) -> bytes:
    service, subtype, data = draw(_TC_DATA)
    return pus.PusTc(
        draw(apids),
        draw(counts),
        service,
        subtype,
        data,
        draw(u16),
        pus.AckFlags(draw(st.integers(0, 15))),
    ).encode()


@st.composite
def pus_tms(draw: st.DrawFn) -> bytes:
    service, subtype, data = draw(_TM_DATA)
    return pus.PusTm(
        draw(apids),
        draw(counts),
        service,
        subtype,
        data,
        draw(u16),
        draw(u16),
        CucTime(draw(u32), draw(u16)),
        draw(st.integers(0, 15)),
    ).encode()


pus_packets = st.one_of(pus_tcs(), pus_tms())


@st.composite
def cfdp_pdus(draw: st.DrawFn) -> bytes:
    large = draw(st.booleans())
    entity_octets = draw(st.integers(1, 8))
    sequence_octets = draw(st.integers(1, 8))
    header = cfdp.PduHeader(
        draw(st.integers(0, (1 << (8 * entity_octets)) - 1)),
        draw(st.integers(0, (1 << (8 * sequence_octets)) - 1)),
        draw(st.integers(0, (1 << (8 * entity_octets)) - 1)),
        draw(st.sampled_from(cfdp.TransmissionMode)),
        draw(st.booleans()),
        large,
        draw(st.sampled_from(cfdp.Direction)),
        draw(st.booleans()),
        entity_octets,
        sequence_octets,
    )
    fss = st.integers(0, (1 << 64) - 1 if large else 0xFFFF_FFFF)
    kind = draw(st.sampled_from(["metadata", "file-data", "eof"]))
    if kind == "metadata":
        options = draw(st.lists(st.builds(cfdp.Tlv, u8, st.binary(max_size=20)), max_size=3))
        pdu: cfdp.Pdu = cfdp.MetadataPdu(
            header,
            draw(fss),
            draw(st.binary(max_size=40)),
            draw(st.binary(max_size=40)),
            draw(st.sampled_from(cfdp.ChecksumType)),
            draw(st.booleans()),
            tuple(options),
        )
    elif kind == "file-data":
        segment = None
        if draw(st.booleans()):
            segment = cfdp.SegmentMetadata(
                draw(st.sampled_from(cfdp.RecordContinuationState)), draw(st.binary(max_size=63))
            )
        pdu = cfdp.FileDataPdu(header, draw(fss), draw(st.binary(max_size=200)), segment)
    else:
        condition = draw(st.sampled_from(cfdp.ConditionCode))
        fault = None
        if condition != cfdp.ConditionCode.NO_ERROR and draw(st.booleans()):
            fault = draw(st.integers(0, (1 << (8 * entity_octets)) - 1))
        pdu = cfdp.EofPdu(header, draw(u32), draw(fss), condition, fault)
    return pdu.encode()


@st.composite
def tc_frames(draw: st.DrawFn) -> TcFrame:
    scid = draw(st.sampled_from([SCID, 0, 0x3FF]) | st.integers(0, 0x3FF))
    vcid = draw(st.integers(0, 63))
    kind = draw(st.sampled_from(["AD", "BD", "unlock", "set-vr"]))
    if kind == "unlock":
        return TcFrame.unlock(scid, vcid)
    if kind == "set-vr":
        return TcFrame.set_vr(scid, vcid, draw(u8))
    data = draw(st.binary(max_size=200))
    return TcFrame(scid, vcid, draw(u8), data, kind == "BD", False, draw(st.integers(0, 63)))


def sdls() -> TcSecurity:
    return TcSecurity([SecurityAssociation(SPI, KEY)])


@st.composite
def secured_tc_frames(draw: st.DrawFn) -> bytes:
    """A TC frame as the ground sends it: on the secured channels, SDLS applied around packets."""
    frame = draw(tc_frames())
    packets = draw(
        st.lists(st.one_of(pus_packets, space_packets.map(SpacePacket.encode)), max_size=4)
    )
    if not frame.control_command_flag:
        data = b"".join(packets)[:900]
        frame = TcFrame(
            frame.spacecraft_id,
            draw(st.sampled_from([0, 1, 2, 5])),
            frame.frame_sequence_number,
            data,
            frame.bypass_flag,
            False,
            frame.map_id,
        )
        if frame.virtual_channel_id in (0, 1):
            frame = sdls().apply(frame, iv=draw(st.integers(1, 80) | st.integers(0, MAX_IV)))
    return frame.encode()


@st.composite
def raw_tm_frames(
    draw: st.DrawFn, frame_length: int = icd.TM_FRAME_LENGTH, has_ocf: bool = True
) -> bytes:
    """A valid TM frame whose data field holds the given kinds of packets, written raw."""
    length = frame_length - 6 - (4 if has_ocf else 0) - 2
    packets = draw(
        st.lists(
            st.one_of(
                pus_packets,
                space_packets.map(SpacePacket.encode),
                cfdp_pdus().map(
                    lambda pdu: SpacePacket(PacketType.TM, icd.Apid.CFDP, 0, pdu).encode()
                ),
            ),
            max_size=6,
        )
    )
    lead = draw(st.binary(max_size=min(length - 1, 40)))
    data = lead + b"".join(packets)
    rest = length - len(data)
    data = data + (idle_packet(rest) if rest >= 7 else bytes(rest)) if rest > 0 else data[:length]
    fhp = draw(st.sampled_from([len(lead), 0x7FE, 0x7FF]) | st.integers(0, length - 1))
    ocf = draw(st.sampled_from([0x8000_0000, 0x0100_0000]) | u32) if has_ocf else None
    return TmFrame(
        draw(st.sampled_from([SCID]) | st.integers(0, 0x3FF)),
        draw(st.integers(0, 7)),
        draw(u8),
        draw(u8),
        fhp,
        data,
        ocf,
    ).encode(frame_length)


# --- Space Packets -----------------------------------------------------------------------------


@soak(4)
@given(st.binary(max_size=300), st.integers(0, 300))
def test_space_packet_and_security_header_decoders_on_arbitrary_octets(
    data: bytes, offset: int
) -> None:
    outcome(SpacePacket.decode, data, size=len(data))
    outcome(packet_length, data, size=len(data))
    outcome(SecurityHeader.decode, data, size=len(data))
    offset = min(offset, len(data))
    result = outcome(SpacePacket.decode_from, data, offset, size=len(data))
    if not isinstance(result, ProtocolError):
        _, end = result
        assert offset < end <= len(data)


@soak(4)
@given(space_packets, MUTATIONS, REPAIRS)
def test_space_packet_decoders_on_mutated_packets(
    packet: SpacePacket, operations: list, repairs: tuple[bool, bool]
) -> None:
    data = repaired_packet(packet.encode(), operations, (repairs[0], False))
    result = outcome(SpacePacket.decode, data, size=len(data))
    if not isinstance(result, ProtocolError):
        assert result.encode() == data


@soak(1)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=80),
            pus_packets,
            st.tuples(pus_packets, MUTATIONS, REPAIRS).map(lambda t: repaired_packet(*t)),
        ),
        max_size=12,
    ),
    st.data(),
    st.integers(16, 400),
    st.booleans(),
)
def test_packet_stream_survives_garbage_and_then_delivers_a_valid_packet(
    pieces: list[bytes], data: st.DataObject, max_length: int, accept: bool
) -> None:
    stream = PacketStream(max_length, pus.accept_pus if accept else None)
    stream_bytes = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream_bytes)), max_size=6)))
    for start, end in zip([0, *cuts], [*cuts, len(stream_bytes)], strict=True):
        outcome(stream.feed, stream_bytes[start:end])
        assert stream.pending_octets < max(max_length, 6)
    if not accept:
        return  # without an accept check, garbage may announce a packet that swallows the next
    valid = pus.PusTc(data.draw(apids), data.draw(counts), 17, 1).encode()
    packets = stream.feed(valid) + stream.feed(b"\xff" * max_length)
    assert valid in [packet.encode() for packet in packets]


# --- PUS ---------------------------------------------------------------------------------------

PUS_DECODERS = (pus.PusTc.decode, pus.PusTm.decode, pus.decode_packet)


@soak(3)
@given(st.binary(max_size=120), st.sampled_from(PUS_DECODERS))
def test_pus_decoders_on_arbitrary_octets(data: bytes, decoder: Callable) -> None:
    outcome(decoder, data, size=len(data))


@soak(4)
@given(pus_packets, MUTATIONS, REPAIRS, st.sampled_from(PUS_DECODERS))
def test_pus_decoders_on_mutated_packets_with_length_and_crc_repaired(
    packet: bytes, operations: list, repairs: tuple[bool, bool], decoder: Callable
) -> None:
    data = repaired_packet(packet, operations, repairs)
    result = outcome(decoder, data, size=len(data))
    if not isinstance(result, ProtocolError):
        assert result.encode() == data


@soak(3)
@given(st.sampled_from(sorted(APPLICATION_DATA)), st.binary(max_size=80))
def test_application_data_decoders_on_arbitrary_octets(name: str, data: bytes) -> None:
    outcome(APPLICATION_DATA[name][0], data, size=len(data))


@soak(4)
@given(st.data(), st.sampled_from(sorted(APPLICATION_DATA)), MUTATIONS)
def test_application_data_decoders_on_mutated_encodings(
    data: st.DataObject, name: str, operations: list
) -> None:
    decoder, valid = APPLICATION_DATA[name]
    encoded = bytes(mutate(data.draw(valid), operations))
    outcome(decoder, encoded, size=len(encoded))


# --- CUC time codes ----------------------------------------------------------------------------

CUC_DECODERS = (
    CucTime.decode,
    CucTime.decode_explicit,
    ExplicitCucTime.decode,
    lambda data: CucPField.decode_from(data, 0),
    lambda data: CucTime.decode_from(data, len(data) // 3),
    lambda data: ExplicitCucTime.decode_from(data, len(data) // 3),
)


@st.composite
def explicit_cuc_times(draw: st.DrawFn) -> bytes:
    p_field = CucPField(
        draw(st.sampled_from(TimeCodeId)), draw(st.integers(1, 7)), draw(st.integers(0, 10))
    )
    coarse = draw(st.integers(0, (1 << (8 * p_field.coarse_octets)) - 1))
    fine = draw(st.integers(0, (1 << (8 * p_field.fine_octets)) - 1))
    return ExplicitCucTime(p_field, coarse, fine).encode()


@soak(3)
@given(
    st.one_of(
        st.binary(max_size=24),
        st.tuples(explicit_cuc_times(), MUTATIONS).map(lambda t: bytes(mutate(*t))),
        explicit_cuc_times(),
    ),
    st.sampled_from(CUC_DECODERS),
)
def test_cuc_decoders_on_arbitrary_and_mutated_time_codes(data: bytes, decoder: Callable) -> None:
    outcome(decoder, data, size=len(data))


# --- TC frames, COP-1 --------------------------------------------------------------------------


@soak(3)
@given(st.binary(max_size=80), st.sampled_from([None, SCID]))
def test_tc_frame_decode_on_arbitrary_octets(data: bytes, spacecraft_id: int | None) -> None:
    outcome(TcFrame.decode, data, spacecraft_id=spacecraft_id, size=len(data))
    outcome(parse_control_command, data)


@soak(3)
@given(secured_tc_frames(), MUTATIONS, REPAIRS, st.sampled_from([None, SCID]))
def test_tc_frame_decode_on_mutated_frames_with_length_and_fecf_repaired(
    frame: bytes, operations: list, repairs: tuple[bool, bool], spacecraft_id: int | None
) -> None:
    data = repaired_tc_frame(frame, operations, repairs)
    result = outcome(TcFrame.decode, data, spacecraft_id=spacecraft_id, size=len(data))
    if not isinstance(result, ProtocolError):
        assert result.encode() == data
        if result.frame_type is FrameType.BC:
            result.control_command()


@soak(2)
@given(st.binary(min_size=0, max_size=6) | st.binary(min_size=4, max_size=4))
def test_clcw_decode_on_arbitrary_octets(data: bytes) -> None:
    result = outcome(Clcw.decode, data, size=len(data))
    if not isinstance(result, ProtocolError):
        assert result.encode() == data


@st.composite
def farm_steps(draw: st.DrawFn) -> list[tuple]:
    """What reaches one FARM: decoded frames (valid or mutated-and-repaired), rejects, waits."""
    steps = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["ad", "ad", "ad", "bd", "unlock", "set-vr", "wire", "other"]))
        if kind == "ad":
            steps.append(("frame", ("ad", draw(st.integers(-40, 300)))))
        elif kind in ("bd", "unlock"):
            steps.append(("frame", (kind, 0)))
        elif kind == "set-vr":
            steps.append(("frame", ("set-vr", draw(u8))))
        elif kind == "wire":
            frame = draw(tc_frames())
            operations = draw(st.lists(_OPERATIONS, max_size=3))
            steps.append(("wire", repaired_tc_frame(frame.encode(), operations, (True, True))))
        else:
            steps.append(draw(st.sampled_from([("reject",), ("wait", True), ("wait", False)])))
    return steps


@soak(1)
@given(farm_steps(), st.sampled_from([2, 4, 64, 254]), u8)
def test_farm_never_raises_on_any_frame_sequence_and_recovers_by_unlock_and_set_vr(
    steps: list[tuple], window: int, v_r: int
) -> None:
    vc = 0
    farm = Farm(vc, sliding_window=window, v_r=v_r)
    for step in steps:
        if step[0] == "reject":
            result = farm.reject(ProtocolError("corrupt frame"))
            assert result.reason is FarmReason.INVALID and result.data is None
        elif step[0] == "wait":
            farm.set_wait(step[1])
        else:
            if step[0] == "wire":
                frame = outcome(TcFrame.decode, step[1])
                if isinstance(frame, ProtocolError):
                    farm.reject(frame)
                    continue
            else:
                kind, value = step[1]
                if kind == "ad":
                    frame = TcFrame(SCID, vc, (farm.v_r + value) % MODULUS, b"fdu", map_id=0)
                elif kind == "bd":
                    frame = TcFrame(SCID, vc, 0, b"bd", True, False, 0)
                elif kind == "unlock":
                    frame = TcFrame.unlock(SCID, vc)
                else:
                    frame = TcFrame.set_vr(SCID, vc, value)
            before = farm.v_r
            result = farm.receive(frame)
            assert result.state is farm.state
            if result.accepted:
                assert result.data == frame.data
            if result.reason is FarmReason.ACCEPTED:
                assert frame.frame_sequence_number == before
                assert farm.v_r == (before + 1) % MODULUS
        assert farm.lockout == (farm.state is FarmState.LOCKOUT)
        assert 0 <= farm.v_r < MODULUS
        clcw = farm.clcw()
        assert Clcw.decode(clcw.encode()) == clcw
    # Whatever happened, the ground can always take the FARM back and send in sequence again.
    farm.set_wait(False)
    assert farm.receive(TcFrame.unlock(SCID, vc)).reason is FarmReason.UNLOCK
    assert farm.receive(TcFrame.set_vr(SCID, vc, v_r)).reason is FarmReason.SET_VR
    result = farm.receive(TcFrame(SCID, vc, v_r, b"after", map_id=0))
    assert result.reason is FarmReason.ACCEPTED and result.data == b"after"


FOP_OPERATIONS = st.one_of(
    st.tuples(
        st.just("directive"),
        st.sampled_from(FopDirective),
        st.one_of(st.none(), st.integers(-2, 300), st.floats()),
    ),
    st.tuples(st.just("transfer"), st.integers(0, 1100)),
    st.tuples(st.just("bypass"), st.integers(0, 1100)),
    st.tuples(
        st.just("clcw"),
        st.integers(-3, 40),  # N(R) relative to NN(R)
        st.booleans(),  # lockout
        st.booleans(),  # wait
        st.booleans(),  # retransmit
        st.integers(0, 9),  # 0: another VC, 1: COP not in effect, else this FOP's
    ),
    st.tuples(st.just("poll"), st.floats(0, 20)),
    st.tuples(
        st.just("failed"),
    ),
)


@soak(1)
@given(st.lists(FOP_OPERATIONS, max_size=60), st.integers(1, 32), st.integers(1, 4), u8)
def test_fop_never_raises_on_any_clcw_or_directive_sequence_and_keeps_its_queue_consistent(
    operations: list[tuple], window: int, limit: int, v_s: int
) -> None:
    fop = Fop(SCID, 0, sliding_window=window, transmission_limit=limit, v_s=v_s, t1_initial_s=2.0)
    now = 0.0
    frames: list[TcFrame] = []
    for operation in operations:
        kind = operation[0]
        if kind == "directive":
            fop.directive(operation[1], now, operation[2])
        elif kind == "transfer":
            outcome(fop.transfer, bytes(operation[1]), now)
        elif kind == "bypass":
            outcome(fop.transfer_bypass, bytes(operation[1]), now)
        elif kind == "clcw":
            _, relative, lockout, wait, retransmit, which = operation
            clcw = Clcw(
                cop_in_effect=2 if which == 1 else 1,
                virtual_channel_identification=5 if which == 0 else 0,
                lockout=lockout,
                wait=wait,
                retransmit=retransmit,
                report_value=(fop.nn_r + relative) % MODULUS,
            )
            fop.receive_clcw(Clcw.decode(clcw.encode()), now)
        elif kind == "poll":
            now += operation[1]
            fop.poll(now)
        elif frames:
            fop.transmission_failed(frames[-1])
        frames.extend(fop.take_frames())
        fop.take_notifications()
        # The Sent_Queue holds exactly the AD frames NN(R)..V(S)-1: acknowledging never underruns.
        sent = fop.sent_queue_length - (fop._bc is not None)
        assert sent == (fop.v_s - fop.nn_r) % MODULUS
        assert [entry.frame.frame_sequence_number for entry in fop._sent] == [
            (fop.nn_r + i) % MODULUS for i in range(sent)
        ]
    for frame in frames:
        assert frame.encode()
    # And it can always be terminated, started again and used.
    fop.directive(FopDirective.TERMINATE_AD, now)
    fop.directive(FopDirective.RESUME_AD, now)  # accepted or rejected, either is fine
    fop.directive(FopDirective.TERMINATE_AD, now)
    assert fop.state is FopState.INITIAL
    assert fop.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW, now) is Response.ACCEPT
    fop.take_frames()
    fop.take_notifications()
    v_s = fop.v_s
    assert fop.transfer(b"after", now, tag="after") is Response.ACCEPT
    assert [frame.frame_sequence_number for frame in fop.take_frames()] == [v_s]
    fop.receive_clcw(Clcw(report_value=(v_s + 1) % MODULUS), now)
    notifications = fop.take_notifications()
    assert any(
        isinstance(n, FduNotification)
        and n.tag == "after"
        and n.response is Response.POSITIVE_CONFIRM
        for n in notifications
    )


@soak(0.5)
@given(
    st.lists(st.tuples(u8, u8, u8, st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=150),
    st.integers(1, 16),
    st.integers(1, 6),
)
def test_cop1_over_a_lossy_link_delivers_in_order_without_duplicates(
    link: list[tuple[int, int, int, int, int]], window: int, limit: int
) -> None:
    """FOP-1 and FARM-1 over a link that loses, duplicates, corrupts and delays frames (in order,
    as a TC link does) and loses CLCWs: the FARM passes FDUs up in order and never twice, every FDU
    the FOP confirms was passed up, and on a clean link afterwards the FOP gets everything through.
    After an alert the operator starts again with Set V(R), unlocking the FARM first if need be."""
    fop = Fop(SCID, 0, sliding_window=window, transmission_limit=limit, t1_initial_s=1.0)
    farm = Farm(0)
    fop.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW, 0.0)
    delivered: list[int] = []
    confirmed: set[int] = set()
    in_flight: deque[bytes] = deque()
    next_fdu = 0
    now = 0.0

    def arrive(encoded: bytes) -> None:
        frame = outcome(TcFrame.decode, encoded, spacecraft_id=SCID)
        if isinstance(frame, ProtocolError):
            farm.reject(frame)
            return
        result = farm.receive(frame)
        if result.reason is FarmReason.ACCEPTED:
            delivered.append(int.from_bytes(result.data or b"", "big"))

    def settle() -> None:
        for notification in fop.take_notifications():
            if isinstance(notification, AlertNotification):
                if farm.lockout:
                    arrive(TcFrame.unlock(SCID, 0).encode())
                fop.directive(FopDirective.INITIATE_AD_WITH_SET_VR, now, farm.v_r)
            elif (
                isinstance(notification, FduNotification)
                and notification.response is Response.POSITIVE_CONFIRM
                and notification.frame_type is FrameType.AD
            ):
                confirmed.add(notification.tag)

    def step(
        clean: bool,
        lose: int = 255,
        copy: int = 255,
        bit: int = 255,
        release: int = 3,
        clcw_lost: int = 1,
    ) -> None:
        nonlocal now
        now += 0.3
        for frame in fop.take_frames():
            encoded = bytearray(frame.encode())
            if not clean and lose < 50:
                continue
            if not clean and bit < 20:
                encoded[bit % len(encoded)] ^= 0x10
            in_flight.append(bytes(encoded))
            if not clean and copy < 20:
                in_flight.append(bytes(encoded))
        for _ in range(len(in_flight) if clean else release):
            if in_flight:
                arrive(in_flight.popleft())
        if clean or clcw_lost:
            fop.receive_clcw(Clcw.decode(farm.clcw().encode()), now)
        fop.poll(now)
        settle()

    for lose, copy, bit, release, clcw_lost in link:
        if fop.accepts_fdu and fop.state in (FopState.ACTIVE, FopState.RETRANSMIT_WITHOUT_WAIT):
            fop.transfer(next_fdu.to_bytes(4, "big"), now, tag=next_fdu)
            next_fdu += 1
        step(False, lose, copy, bit, release, clcw_lost)
    # A clean link: whatever is outstanding gets through, and so does one more FDU.
    for _ in range(200):
        step(True)
        if fop.state is FopState.ACTIVE and fop.sent_queue_length == 0 and fop.accepts_fdu:
            break
    assert fop.state is FopState.ACTIVE and fop.sent_queue_length == 0
    assert fop.transfer(b"last", now, tag="last") is Response.ACCEPT
    for _ in range(5):
        step(True)
    assert "last" in confirmed
    assert delivered[-1] == int.from_bytes(b"last", "big")
    delivered.pop()
    assert delivered == sorted(set(delivered)), "FARM passed up FDUs out of order or twice"
    assert confirmed - {"last"} <= set(delivered), "FOP confirmed an FDU the FARM never passed up"


# --- TM frames ---------------------------------------------------------------------------------

TM_LAYOUTS = st.sampled_from(
    [
        (icd.TM_FRAME_LENGTH, True),
        (icd.TM_FRAME_LENGTH, False),
        (64, True),
        (23, True),
        (14, False),
        (13, False),
        (9, False),
    ]
)


@soak(2)
@given(st.binary(max_size=80), TM_LAYOUTS, st.sampled_from([None, SCID]))
def test_tm_frame_decode_on_arbitrary_octets(
    data: bytes, layout: tuple[int, bool], spacecraft_id: int | None
) -> None:
    frame_length, has_ocf = layout
    for raw in (data, bytes(fix_crc(bytearray(data.ljust(frame_length, b"\x00"))))):
        outcome(
            TmFrame.decode,
            raw,
            frame_length=frame_length,
            has_ocf=has_ocf,
            spacecraft_id=spacecraft_id,
            size=len(raw),
        )


@soak(2)
@given(st.data(), TM_LAYOUTS, MUTATIONS, REPAIRS, st.sampled_from([None, SCID]))
def test_tm_frame_decode_on_mutated_frames_with_fecf_repaired(
    data: st.DataObject,
    layout: tuple[int, bool],
    operations: list,
    repairs: tuple[bool, bool],
    spacecraft_id: int | None,
) -> None:
    frame_length, has_ocf = layout
    frame = data.draw(raw_tm_frames(frame_length, has_ocf))
    encoded = repaired_tm_frame(frame, operations, repairs, frame_length)
    result = outcome(
        TmFrame.decode,
        encoded,
        frame_length=frame_length,
        has_ocf=has_ocf,
        spacecraft_id=spacecraft_id,
        size=len(encoded),
    )
    if not isinstance(result, ProtocolError):
        assert result.encode(frame_length) == encoded


def tm_traffic(
    frame_length: int, has_ocf: bool, packets: Iterable[bytes], virtual_channel: int = 0
) -> list[bytes]:
    """The frames of a fresh master channel carrying `packets` on one VC, flushed."""
    master = TmMasterChannel(SCID, frame_length=frame_length, has_ocf=has_ocf)
    channel = master.virtual_channel(virtual_channel)
    for packet in packets:
        channel.send(packet)
    channel.flush()
    return master.drain()


traffic_packets = st.lists(
    st.builds(
        SpacePacket,
        st.just(PacketType.TM),
        st.integers(0, 0x7FE),
        counts,
        st.binary(min_size=1, max_size=150),
    ).map(SpacePacket.encode),
    min_size=1,
    max_size=8,
)


@soak(0.5)
@given(
    st.data(),
    TM_LAYOUTS,
    st.lists(st.tuples(st.integers(0, 2), traffic_packets), min_size=1, max_size=3),
    st.sampled_from([None, SCID]),
)
def test_tm_receiver_survives_any_frame_sequence_and_then_extracts_every_packet(
    data: st.DataObject,
    layout: tuple[int, bool],
    channels: list[tuple[int, list[bytes]]],
    spacecraft_id: int | None,
) -> None:
    frame_length, has_ocf = layout
    receiver = TmReceiver(spacecraft_id, frame_length=frame_length, has_ocf=has_ocf)
    frames = [f for vc, packets in channels for f in tm_traffic(frame_length, has_ocf, packets, vc)]
    frames = frames[:60]
    # The garbage: the valid frames dropped, duplicated, reordered, mutated with a good FECF, and
    # arbitrary octets, in any order.
    garbage = data.draw(
        st.lists(
            st.one_of(
                st.sampled_from(frames),
                st.tuples(st.sampled_from(frames), MUTATIONS, REPAIRS).map(
                    lambda t: repaired_tm_frame(*t, frame_length)
                ),
                st.binary(max_size=frame_length + 2),
            ),
            max_size=40,
        )
    )
    for frame in garbage:
        outcome(receiver.receive, frame)
    assert receiver.frames_received + receiver.frames_rejected == len(garbage)
    # A fresh sequence afterwards comes out whole, whatever state the garbage left.
    packets = data.draw(traffic_packets)
    extracted: list[bytes] = []
    for frame in tm_traffic(frame_length, has_ocf, packets):
        extracted.extend(receiver.receive(frame).packets)
    assert extracted == packets


# --- COBS --------------------------------------------------------------------------------------


@soak(3)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.tuples(st.binary(max_size=600).map(cobs.encode), MUTATIONS).map(
            lambda t: bytes(mutate(*t))
        ),
    )
)
def test_cobs_decode_on_arbitrary_and_mutated_encodings(encoded: bytes) -> None:
    result = outcome(cobs.decode, encoded, size=len(encoded))
    if not isinstance(result, ProtocolError):
        assert cobs.decode(cobs.encode(result)) == result


@soak(1)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.binary(max_size=300).map(cobs.frame),
            st.tuples(st.binary(max_size=300).map(cobs.frame), MUTATIONS).map(
                lambda t: bytes(mutate(*t))
            ),
            st.binary(min_size=1, max_size=2000).map(lambda b: b.replace(b"\x00", b"\x01")),
        ),
        max_size=12,
    ),
    st.integers(1, 600),
    st.binary(max_size=300),
)
def test_cobs_deframer_stays_bounded_on_any_stream_and_then_delivers_a_valid_frame(
    chunks: list[bytes], max_frame: int, valid: bytes
) -> None:
    deframer = cobs.CobsDeframer(max_frame)
    for chunk in chunks:
        for frame in deframer.feed(chunk):
            assert len(frame) <= max_frame
        assert deframer.pending_octets <= deframer.max_encoded_length
    assume(valid and len(valid) <= max_frame)
    # A sender's leading zero ends whatever the garbage left open.
    assert deframer.feed(b"\x00" + cobs.frame(valid))[-1:] == [valid]


# --- SDLS --------------------------------------------------------------------------------------


@soak(2)
@given(secured_tc_frames(), MUTATIONS, REPAIRS)
def test_sdls_process_on_decoded_mutated_frames(
    frame: bytes, operations: list, repairs: tuple[bool, bool]
) -> None:
    security = sdls()
    data = repaired_tc_frame(frame, operations, repairs)
    decoded = outcome(TcFrame.decode, data)
    if isinstance(decoded, ProtocolError):
        return
    result = outcome(security.process, decoded)
    if not isinstance(result, ProtocolError) and not decoded.control_command_flag:
        # Anything accepted was authentic: its IV is now the last accepted (or below it).
        assert security.last_accepted(SPI) >= int.from_bytes(decoded.data[2:14], "big")
    # The SA keeps working: a fresh frame with a new IV in the window is accepted.
    fresh = security.last_accepted(SPI) + 1
    if fresh <= MAX_IV:
        applied = sdls().apply(TcFrame(SCID, 0, 7, b"ok", map_id=0), iv=fresh)
        assert security.process(TcFrame.decode(applied.encode())).data == b"ok"


@soak(1)
@given(
    st.sampled_from([0, 1000, MAX_IV - 300, MAX_IV - 64]),
    st.lists(
        st.one_of(
            st.tuples(st.just("iv"), st.integers(-80, 300)),
            st.tuples(st.just("replay"), st.integers(0, 100)),
            st.tuples(st.just("restore"), st.integers(-80, 300)),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([1, 2, 64, 200]),
)
def test_sdls_replay_window_agrees_with_a_set_model_up_to_the_last_iv(
    base: int, steps: list[tuple[str, int]], width: int
) -> None:
    """Accept an IV exactly when it is unused, above everything restored, and within the window
    of the highest accepted: checked against a model that remembers every IV, near 0 and 2**96-1."""
    security = TcSecurity([SecurityAssociation(SPI, KEY, replay_window=width)])
    ground = sdls()
    accepted: set[int] = set()
    floor = 0  # every IV up to this counts as used (restore)
    highest = 0
    sent: list[TcFrame] = []
    for kind, value in steps:
        if kind == "restore":
            restored = base + value
            if not 0 <= restored <= MAX_IV:
                continue
            security.restore(SPI, restored)
            # A stale (lower) number never reopens what was accepted since: everything up to the
            # higher of the two counts as used.
            floor = highest = max(restored, highest)
            continue
        if kind == "replay":
            if not sent:
                continue
            frame = sent[value % len(sent)]
            iv = int.from_bytes(frame.data[2:14], "big")
        else:
            iv = base + value
            if not 0 <= iv <= MAX_IV:
                continue
            frame = ground.apply(TcFrame(SCID, 0, 0, iv.to_bytes(12, "big"), map_id=0), iv=iv)
            sent.append(frame)
        expected = iv > floor and iv not in accepted and highest - width < iv <= highest + width
        try:
            security.process(frame)
        except ReplayError:
            assert not expected, f"IV {iv - base:+} refused (last accepted {highest - base:+})"
        else:
            assert expected, f"IV {iv - base:+} accepted (last accepted {highest - base:+})"
            accepted.add(iv)
            highest = max(highest, iv)
        assert security.last_accepted(SPI) == highest
    # At the end of the IV space every number is refused: the key must change, never the IV wrap.
    window = ReplayWindow(width, MAX_IV)
    for iv in (MAX_IV, MAX_IV - 1, 0, 1):
        with pytest.raises(ReplayError):
            window.check(iv)


# --- CFDP --------------------------------------------------------------------------------------


@soak(3)
@given(st.binary(max_size=120))
def test_cfdp_decode_on_arbitrary_octets(data: bytes) -> None:
    outcome(cfdp.decode_pdu, data, size=len(data))


@soak(4)
@given(cfdp_pdus(), MUTATIONS, REPAIRS)
def test_cfdp_decode_on_mutated_pdus_with_length_and_crc_repaired(
    pdu: bytes, operations: list, repairs: tuple[bool, bool]
) -> None:
    data = fix_cfdp(mutate(pdu, operations), *repairs)
    result = outcome(cfdp.decode_pdu, data, size=len(data))
    if not isinstance(result, ProtocolError):
        # A fixed point rather than the same octets: the decoder ignores the segment metadata flag
        # of file directive PDUs and takes a fault location of any width, which encode normalises
        # (or refuses, when the value does not fit the entity id width).
        encoded = outcome(result.encode)
        if not isinstance(encoded, ProtocolError):
            assert cfdp.decode_pdu(encoded) == result


_NAMES = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30),
    st.sampled_from(["..", ".", "../escape", "/etc/passwd", "a/b", ".hidden", "a\\b", "x\x00y"]),
    st.sampled_from(["result.bin", "model.onnx"]),
)


@st.composite
def transfers(draw: st.DrawFn) -> list[bytes]:
    """The PDUs of one class-1 transfer from a FileSender (with a small, odd segment size)."""
    data = draw(st.binary(max_size=2000))
    sender = cfdp.FileSender(
        draw(st.integers(1, 20)),
        draw(st.sampled_from([7, 8])),
        draw(st.integers(0, 30)),
        data,
        draw(st.integers(100, 700)),
        destination_name=draw(_NAMES),
        crc_flag=draw(st.booleans()),
        large_file_flag=draw(st.booleans()),
        checksum_type=draw(st.sampled_from([cfdp.ChecksumType.CRC32, cfdp.ChecksumType.NULL])),
    )
    return list(sender.pdus())


@soak(0.4)
@given(
    st.data(),
    st.lists(transfers(), min_size=1, max_size=4),
    st.sampled_from([1 << 16, cfdp.MAX_RECEIVED_FILE_SIZE]),
    st.sampled_from([None, 8]),
)
def test_file_receiver_survives_any_pdu_sequence_and_then_delivers_a_file(
    data: st.DataObject,
    senders: list[list[bytes]],
    max_file_size: int,
    entity_id: int | None,
) -> None:
    pool = [pdu for pdus in senders for pdu in pdus]
    sequence = data.draw(
        st.lists(
            st.one_of(
                st.sampled_from(pool),
                st.tuples(st.sampled_from(pool), MUTATIONS, REPAIRS).map(
                    lambda t: fix_cfdp(mutate(t[0], t[1]), *t[2])
                ),
                st.binary(max_size=60),
            ),
            max_size=60,
        )
    )
    with tempfile.TemporaryDirectory() as root:
        directory = Path(root) / "received"
        directory.mkdir()
        receiver = cfdp.FileReceiver(
            directory, entity_id=entity_id, max_file_size=max_file_size, inactivity_timeout_s=60
        )
        used: set[cfdp.TransactionId] = set()
        for now, pdu in enumerate(sequence):
            decoded = outcome(cfdp.decode_pdu, pdu)
            if not isinstance(decoded, ProtocolError):
                used.add(decoded.header.transaction_id)
            result = outcome(receiver.receive, pdu, float(now))
            if isinstance(result, cfdp.TransferResult) and result.success:
                assert result.path is not None and result.path.parent == directory
                assert result.path.stat().st_size == result.file_size
        # Nothing is ever written outside the receive directory.
        assert [p.name for p in Path(root).iterdir()] == ["received"]
        receiver.expire(1e9)
        assert receiver.active_transactions == ()
        assert not list(directory.glob(f"{cfdp.PARTIAL_PREFIX}*")), "partial files left behind"
        # The receiver keeps working: a fresh transfer is delivered, exactly.
        content = data.draw(st.binary(max_size=2000))
        taken = {t.transaction_sequence_number for t in used if t.source_entity_id == 21}
        sequence_number = min(set(range(len(taken) + 1)) - taken)
        fresh = cfdp.FileSender(
            21, 8, sequence_number, content, 333, destination_name="after.bin", crc_flag=True
        )
        results = [receiver.receive(pdu, 1e9) for pdu in fresh.pdus()]
        assert results[-1] is not None and results[-1].success, results[-1]
        assert (directory / "after.bin").read_bytes() == content
        receiver.close()


# --- describe ----------------------------------------------------------------------------------


def check_description(data: bytes, kind: str, **options: Any) -> None:
    result = outcome(describe.describe, data, kind, size=len(data), **options)
    if isinstance(result, ProtocolError):
        return
    json.dumps(result)  # JSON-ready, as promised
    for path, error in describe.find_errors(result):
        assert isinstance(path, str) and error["error"]
        assert 0 <= error["offset"] <= len(data), (path, error)


DESCRIBE_INPUTS = {
    "tm-frame": raw_tm_frames(),
    "tc-frame": secured_tc_frames(),
    "space-packet": st.one_of(
        space_packets.map(SpacePacket.encode),
        pus_packets,
        cfdp_pdus().map(lambda pdu: SpacePacket(PacketType.TM, icd.Apid.CFDP, 1, pdu).encode()),
    ),
    "pus": pus_packets,
    "cfdp": cfdp_pdus(),
}


def describe_repair(kind: str, data: bytes, operations: list, repairs: tuple[bool, bool]) -> bytes:
    if kind == "tm-frame":
        return repaired_tm_frame(data, operations, repairs, icd.TM_FRAME_LENGTH)
    if kind == "tc-frame":
        return repaired_tc_frame(data, operations, repairs)
    if kind == "cfdp":
        return fix_cfdp(mutate(data, operations), *repairs)
    return repaired_packet(data, operations, repairs)


@soak(1.5)
@given(st.binary(max_size=200), st.sampled_from(describe.KINDS))
def test_describe_on_arbitrary_octets_for_every_kind(data: bytes, kind: str) -> None:
    check_description(data, kind)


@soak(1.5)
@given(st.data(), st.sampled_from(sorted(DESCRIBE_INPUTS)), MUTATIONS, REPAIRS, st.booleans())
def test_describe_on_mutated_inputs_with_checksums_repaired_for_every_kind(
    data: st.DataObject, kind: str, operations: list, repairs: tuple[bool, bool], as_auto: bool
) -> None:
    valid = data.draw(DESCRIBE_INPUTS[kind])
    mutated = describe_repair(kind, valid, operations, repairs)
    check_description(mutated, "auto" if as_auto else kind)


@soak(0.5)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["tc-frame", "tm-frame"]), st.data(), st.lists(_OPERATIONS, max_size=3)
        ),
        min_size=1,
        max_size=3,
    ),
    st.binary(max_size=8),
    st.sampled_from(["cobs", "auto"]),
)
def test_describe_on_cobs_streams_of_mutated_frames(
    frames: list[tuple[str, st.DataObject, list]], noise: bytes, kind: str
) -> None:
    stream = bytearray(noise)
    for frame_kind, data, operations in frames:
        valid = data.draw(DESCRIBE_INPUTS[frame_kind])
        stream += cobs.frame(describe_repair(frame_kind, valid, operations, (True, True)))
    check_description(bytes(stream), kind)


@soak(0.5)
@given(st.data(), st.sampled_from([(64, True), (23, False), (300, True)]), MUTATIONS)
def test_describe_on_mutated_tm_frames_of_other_lengths(
    data: st.DataObject, layout: tuple[int, bool], operations: list
) -> None:
    frame_length, has_ocf = layout
    valid = data.draw(raw_tm_frames(frame_length, has_ocf))
    mutated = repaired_tm_frame(valid, operations, (True, True), frame_length)
    for kind in ("tm-frame", "auto"):
        check_description(mutated, kind, tm_frame_length=frame_length, tm_has_ocf=has_ocf)
