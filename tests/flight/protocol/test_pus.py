import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from construct import Construct, Pass
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from spacepackets.ecss.fields import PacketFieldEnum
from spacepackets.ecss.pus_1_verification import (
    FailureNotice,
    ManagedParamsVerification,
    Service1Tm,
    VerificationParams,
)
from spacepackets.ecss.pus_1_verification import RequestId as TheirRequestId
from spacepackets.ecss.tc import PusTc as TheirTc
from spacepackets.ecss.tm import ManagedParams, MiscParams
from spacepackets.ecss.tm import PusTm as TheirTm

from flight.protocol import pus
from flight.protocol.crc import append_crc16
from flight.protocol.cuc import MAX_COARSE, MAX_FINE, CucTime
from flight.protocol.errors import (
    ChecksumError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
)
from flight.protocol.pus import (
    COLLECTION_INTERVALS,
    CONNECTION_TEST,
    EVENT_DEFINITION_IDS,
    EVENT_REPORT,
    HOUSEKEEPING_PARAMETER_REPORT,
    HOUSEKEEPING_STRUCTURE_IDS,
    MAX_APPLICATION_DATA,
    MAX_COUNT,
    MAX_SOURCE_DATA,
    PARAMETER_IDS,
    PERFORM_FUNCTION,
    PUS_TC_PACKET,
    PUS_TM_PACKET,
    REQUEST_ID,
    TC_SECONDARY_HEADER,
    VERIFICATION_FAILURE,
    VERIFICATION_SUCCESS,
    AckFlags,
    CollectionInterval,
    ConnectionTest,
    EventDefinitionIds,
    EventReport,
    EventSubtype,
    HousekeepingParameterReport,
    HousekeepingStructureIds,
    ModifyCollectionIntervals,
    ParameterIds,
    ParameterValue,
    ParameterValues,
    PerformFunction,
    PusTc,
    PusTm,
    RequestId,
    Service,
    VerificationFailure,
    VerificationSubtype,
    VerificationSuccess,
    accept_pus,
    decode_packet,
    parameter_values,
    pus_tm_packet,
    tm_secondary_header,
)
from flight.protocol.spacepacket import (
    MAX_APID,
    MAX_SEQUENCE_COUNT,
    PacketType,
    SequenceFlags,
    SpacePacket,
)

apids = st.integers(0, MAX_APID)
sequence_counts = st.integers(0, MAX_SEQUENCE_COUNT)
octet = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
user_data = st.binary(max_size=48)
cuc_times = st.builds(CucTime, st.integers(0, MAX_COARSE), st.integers(0, MAX_FINE))
tcs = st.builds(
    PusTc, apids, sequence_counts, octet, octet, user_data, u16, st.integers(0, 15).map(AckFlags)
)
tms = st.builds(
    PusTm, apids, sequence_counts, octet, octet, user_data, u16, u16, cuc_times, st.integers(0, 15)
)
pus_packets = st.one_of(tcs, tms)


def reseal(packet: bytes | bytearray) -> bytes:
    """`packet` with its packet error control recomputed, to reach the checks behind the CRC."""
    return append_crc16(bytes(packet[:-2]))


# --- public vectors ---------------------------------------------------------------------------

# V5: us-irs/spacepackets-py tests/ecss/test_pus_tc.py -- TC 17/1, APID 0x002, sequence count 0x34.
V5 = bytes.fromhex("1802C03400062F11010000EE63")
# V6: us-irs/spacepackets-py docs/examples.rst -- ping TC 17/1 APID 1, and its TM 17/2 reply
# without a time stamp.
V6_TC = bytes.fromhex("18 01 C0 00 00 06 2F 11 01 00 00 16 1D")
V6_TM = bytes.fromhex("08 01 C0 00 00 08 20 11 02 00 00 00 00 86 D7")
# us-irs/spacepackets-py spacepackets/ecss/tc.py, PusTc doctest: 17/1, APID 1, sequence count 22
# (reproduced with spacepackets 0.32).
SPACEPACKETS_TC_DOCTEST = bytes.fromhex("1801C01600062F11010000AB62")
# us-irs/spacepackets-py spacepackets/ecss/req_id.py, RequestId doctest: TC, no secondary header,
# APID 0x22, unsegmented, sequence count 17.
SPACEPACKETS_REQUEST_ID = bytes.fromhex("1022C011")


@pytest.mark.parametrize(
    ("vector", "apid", "sequence_count"),
    [(V5, 2, 0x34), (V6_TC, 1, 0), (SPACEPACKETS_TC_DOCTEST, 1, 22)],
)
def test_published_ping_telecommands_decode_and_encode(vector, apid, sequence_count):
    tc = PusTc(apid, sequence_count, Service.TEST, pus.TestSubtype.ARE_YOU_ALIVE)
    assert PusTc.decode(vector) == tc
    assert tc.encode() == vector
    assert tc.ack_flags == AckFlags.ALL and tc.source_id == 0


def test_v5_matches_the_reference_declaration():
    parsed = PUS_TC_PACKET.parse(V5)
    assert parsed.packet.value.secondary_header == {
        "tc_packet_pus_version_number": 2,
        "acknowledgement_flags": 0xF,
        "service_type_id": 17,
        "message_subtype_id": 1,
        "source_id": 0,
    }
    assert parsed.packet.value.primary_header.apid == 2
    assert parsed.packet_error_control == 0xEE63


def test_v6_reply_matches_the_tm_declaration_without_a_time_field():
    parsed = pus_tm_packet(Pass, 0).parse(V6_TM)
    header = parsed.packet.value.secondary_header
    assert (header.tm_packet_pus_version_number, header.service_type_id) == (2, 17)
    assert (header.message_subtype_id, header.message_type_counter, header.destination_id) == (
        2,
        0,
        0,
    )
    assert parsed.packet.value.primary_header.packet_type == PacketType.TM
    assert pus_tm_packet(Pass, 0).build(parsed) == V6_TM


def test_v6_reply_is_refused_for_lacking_the_icd_time_field():
    with pytest.raises(LengthError) as error:
        PusTm.decode(V6_TM)
    assert error.value.offset == 4


def test_request_id_matches_the_spacepackets_doctest():
    request_id = RequestId(0, PacketType.TC, False, 0x22, SequenceFlags.UNSEGMENTED, 17)
    assert request_id.encode() == SPACEPACKETS_REQUEST_ID
    assert RequestId.decode(SPACEPACKETS_REQUEST_ID) == request_id


def test_request_id_is_the_first_four_octets_of_the_request():
    tc = PusTc.decode(V5)
    assert RequestId.from_tc(tc).encode() == V5[:4]
    assert RequestId.from_packet(SpacePacket.decode(V5)).encode() == V5[:4]


# --- round trips and the reference declarations -----------------------------------------------


@settings(deadline=None)
@given(tcs)
def test_tc_round_trips_over_all_field_ranges(tc):
    assert PusTc.decode(tc.encode()) == tc
    assert PusTc.from_packet(SpacePacket.decode(tc.encode())) == tc
    assert decode_packet(tc.encode()) == tc


@settings(deadline=None)
@given(tms)
def test_tm_round_trips_over_all_field_ranges(tm):
    assert PusTm.decode(tm.encode()) == tm
    assert PusTm.from_packet(SpacePacket.decode(tm.encode())) == tm
    assert decode_packet(tm.encode()) == tm


def _primary(packet_type: int, apid: int, sequence_count: int, data_length: int) -> dict:
    return {
        "packet_version_number": 0,
        "packet_type": packet_type,
        "secondary_header_flag": True,
        "apid": apid,
        "sequence_flags": SequenceFlags.UNSEGMENTED,
        "sequence_count": sequence_count,
        "packet_data_length": data_length - 1,
    }


def _tc_container(tc: PusTc) -> dict:
    secondary = {
        "tc_packet_pus_version_number": 2,
        "acknowledgement_flags": tc.ack_flags,
        "service_type_id": tc.service,
        "message_subtype_id": tc.subtype,
        "source_id": tc.source_id,
    }
    primary = _primary(PacketType.TC, tc.apid, tc.sequence_count, 5 + len(tc.app_data) + 2)
    value = {"primary_header": primary, "secondary_header": secondary, "user_data": tc.app_data}
    return {"packet": {"value": value}}


def _tm_container(tm: PusTm) -> dict:
    secondary = {
        "tm_packet_pus_version_number": 2,
        "spacecraft_time_reference_status": tm.time_reference_status,
        "service_type_id": tm.service,
        "message_subtype_id": tm.subtype,
        "message_type_counter": tm.message_type_counter,
        "destination_id": tm.destination_id,
        "time": {"coarse_time": tm.time.coarse, "fine_time": tm.time.fine},
    }
    primary = _primary(PacketType.TM, tm.apid, tm.sequence_count, 13 + len(tm.source_data) + 2)
    value = {"primary_header": primary, "secondary_header": secondary, "user_data": tm.source_data}
    return {"packet": {"value": value}}


@settings(deadline=None)
@given(tcs)
def test_tc_fast_path_equals_the_reference_declaration(tc):
    assert PUS_TC_PACKET.build(_tc_container(tc)) == tc.encode()
    parsed = PUS_TC_PACKET.parse(tc.encode()).packet.value
    expected = _tc_container(tc)["packet"]["value"]
    assert all(
        parsed.primary_header[key] == value for key, value in expected["primary_header"].items()
    )
    assert all(
        parsed.secondary_header[key] == value for key, value in expected["secondary_header"].items()
    )
    assert parsed.user_data == tc.app_data


@settings(deadline=None)
@given(tms)
def test_tm_fast_path_equals_the_reference_declaration(tm):
    assert PUS_TM_PACKET.build(_tm_container(tm)) == tm.encode()
    parsed = PUS_TM_PACKET.parse(tm.encode()).packet.value
    expected = _tm_container(tm)["packet"]["value"]
    assert all(
        parsed.primary_header[key] == value for key, value in expected["primary_header"].items()
    )
    header = parsed.secondary_header
    assert (header.time.coarse_time, header.time.fine_time) == (tm.time.coarse, tm.time.fine)
    assert all(
        header[key] == value for key, value in expected["secondary_header"].items() if key != "time"
    )
    assert parsed.user_data == tm.source_data


def test_secondary_header_declarations_have_the_icd_lengths():
    assert TC_SECONDARY_HEADER.sizeof() == 5
    assert tm_secondary_header().sizeof() == 7 + 6


def test_largest_packets_round_trip_and_one_more_octet_does_not_fit():
    tc = PusTc(1, 2, 3, 4, bytes(MAX_APPLICATION_DATA))
    tm = PusTm(1, 2, 3, 4, bytes(MAX_SOURCE_DATA))
    assert len(tc.encode()) == len(tm.encode()) == 6 + 65536
    assert PusTc.decode(tc.encode()) == tc
    assert PusTm.decode(tm.encode()) == tm
    with pytest.raises(LengthError):
        PusTc(1, 2, 3, 4, bytes(MAX_APPLICATION_DATA + 1)).encode()
    with pytest.raises(LengthError):
        PusTm(1, 2, 3, 4, bytes(MAX_SOURCE_DATA + 1)).encode()


@pytest.mark.parametrize(
    "tc",
    [
        PusTc(MAX_APID + 1, 0, 17, 1),
        PusTc(1, MAX_SEQUENCE_COUNT + 1, 17, 1),
        PusTc(1, 0, 256, 1),
        PusTc(1, 0, 17, -1),
        PusTc(1, 0, 17, 1, source_id=0x10000),
        PusTc(1, 0, 17, 1, ack_flags=16),  # type: ignore[arg-type]
    ],
)
def test_tc_field_that_does_not_fit_is_a_field_error(tc):
    with pytest.raises(FieldError):
        tc.encode()


@pytest.mark.parametrize(
    "tm",
    [
        PusTm(-1, 0, 17, 2),
        PusTm(1, 0, 17, 256),
        PusTm(1, 0, 17, 2, destination_id=0x10000),
        PusTm(1, 0, 17, 2, message_type_counter=-1),
        PusTm(1, 0, 17, 2, time=CucTime(MAX_COARSE + 1, 0)),
        PusTm(1, 0, 17, 2, time_reference_status=16),
    ],
)
def test_tm_field_that_does_not_fit_is_a_field_error(tm):
    with pytest.raises(FieldError):
        tm.encode()


# --- negative properties ------------------------------------------------------------------------


def _decoder_for(packet: PusTc | PusTm) -> Callable[[bytes], PusTc | PusTm]:
    return PusTc.decode if isinstance(packet, PusTc) else PusTm.decode


@settings(deadline=None)
@given(pus_packets, st.data())
def test_truncated_packet_is_a_truncated_error(packet, data):
    encoded = packet.encode()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(TruncatedError):
        _decoder_for(packet)(encoded[:cut])


@settings(deadline=None)
@given(pus_packets, st.binary(min_size=1, max_size=8))
def test_octets_after_the_packet_are_a_length_error(packet, extra):
    with pytest.raises(LengthError) as error:
        _decoder_for(packet)(packet.encode() + extra)
    assert error.value.offset == 4


@settings(deadline=None)
@given(pus_packets, u16)
def test_length_field_that_disagrees_with_the_buffer_is_refused(packet, length):
    encoded = bytearray(packet.encode())
    actual = len(encoded) - 7
    assume(length != actual)
    encoded[4:6] = length.to_bytes(2, "big")
    with pytest.raises(TruncatedError if length > actual else LengthError):
        _decoder_for(packet)(bytes(encoded))


@settings(deadline=None)
@given(pus_packets, st.data())
def test_any_single_bit_flip_is_refused_with_its_specific_error(packet, data):
    encoded = bytearray(packet.encode())
    bit = data.draw(st.integers(0, len(encoded) * 8 - 1))
    encoded[bit // 8] ^= 0x80 >> (bit % 8)
    if bit < 3:
        expected: type[ProtocolError] = FieldError  # the packet version number
    elif 32 <= bit < 48:
        # The packet data length now disagrees with the buffer, which is checked first.
        expected = TruncatedError if encoded[4:6] > packet.encode()[4:6] else LengthError
    else:
        expected = ChecksumError
    with pytest.raises(expected):
        _decoder_for(packet)(bytes(encoded))


@settings(deadline=None)
@given(pus_packets, u16)
def test_wrong_packet_error_control_is_a_checksum_error(packet, crc):
    encoded = packet.encode()
    assume(crc != int.from_bytes(encoded[-2:], "big"))
    with pytest.raises(ChecksumError) as error:
        _decoder_for(packet)(encoded[:-2] + crc.to_bytes(2, "big"))
    assert error.value.offset == len(encoded) - 2


@settings(deadline=None)
@given(pus_packets, st.integers(0, 15).filter(lambda version: version != 2))
def test_other_pus_version_is_a_field_error(packet, version):
    encoded = bytearray(packet.encode())
    encoded[6] = (version << 4) | (encoded[6] & 0x0F)
    with pytest.raises(FieldError) as error:
        _decoder_for(packet)(reseal(encoded))
    assert error.value.offset == 6


@settings(deadline=None)
@given(tms)
def test_tm_where_a_tc_is_expected_is_a_field_error(tm):
    with pytest.raises(FieldError):
        PusTc.decode(tm.encode())


@settings(deadline=None)
@given(tcs.filter(lambda tc: len(tc.app_data) >= 8))
def test_tc_where_a_tm_is_expected_is_a_field_error(tc):
    with pytest.raises(FieldError):
        PusTm.decode(tc.encode())


@settings(deadline=None)
@given(pus_packets)
def test_missing_secondary_header_flag_is_a_field_error(packet):
    encoded = bytearray(packet.encode())
    encoded[0] &= ~0x08
    with pytest.raises(FieldError):
        _decoder_for(packet)(reseal(encoded))


@settings(deadline=None)
@given(pus_packets, st.sampled_from(list(SequenceFlags)[:3]))
def test_segmented_pus_packet_is_a_field_error(packet, flags):
    encoded = bytearray(packet.encode())
    encoded[2] = (flags << 6) | (encoded[2] & 0x3F)
    with pytest.raises(FieldError) as error:
        _decoder_for(packet)(reseal(encoded))
    assert error.value.offset == 2


@settings(deadline=None)
@given(st.sampled_from(PacketType), apids, st.data())
def test_data_field_too_short_for_a_pus_packet_is_a_length_error(packet_type, apid, data):
    # 3 octets at least, so that a CRC fits after the flags; fewer than the shortest PUS packet.
    longest = 6 if packet_type == PacketType.TC else 14
    body = data.draw(st.binary(min_size=3, max_size=longest))
    short = SpacePacket(packet_type, apid, 0, body, secondary_header_flag=True).encode()
    decode = PusTc.decode if packet_type == PacketType.TC else PusTm.decode
    with pytest.raises(LengthError) as error:
        decode(reseal(short))
    assert error.value.offset == 4


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=40))
def test_arbitrary_octets_give_a_packet_or_a_protocol_error(octets):
    for decode in (PusTc.decode, PusTm.decode, decode_packet):
        try:
            result = decode(octets)
        except ProtocolError:
            continue
        assert isinstance(result, PusTc | PusTm)


@settings(deadline=None, max_examples=300)
@given(st.binary(min_size=9, max_size=40))
def test_arbitrary_octets_behind_a_valid_length_and_crc_give_a_packet_or_a_protocol_error(octets):
    # Fix the version, the length and the CRC so that the field checks behind them are reached.
    framed = bytearray(octets)
    framed[0] &= 0x1F
    framed[4:6] = (len(framed) - 7).to_bytes(2, "big")
    for decode in (PusTc.decode, PusTm.decode, decode_packet):
        try:
            result = decode(reseal(framed))
        except ProtocolError:
            continue
        assert isinstance(result, PusTc | PusTm)


@settings(deadline=None)
@given(pus_packets)
def test_accept_pus_approves_pus_packets(packet):
    assert accept_pus(SpacePacket.decode(packet.encode()))


@settings(deadline=None)
@given(pus_packets, st.data())
def test_accept_pus_refuses_a_corrupted_packet(packet, data):
    encoded = bytearray(packet.encode())
    position = data.draw(st.integers(6, len(encoded) - 1))  # past the length field
    encoded[position] ^= data.draw(st.integers(1, 255))
    assert not accept_pus(SpacePacket.decode(bytes(encoded)))


def test_accept_pus_refuses_an_idle_packet():
    assert not accept_pus(SpacePacket(PacketType.TM, MAX_APID, 0, bytes(20)))


# --- interoperability with spacepackets 0.32 --------------------------------------------------


@settings(deadline=None)
@given(tcs)
def test_our_tc_parses_with_spacepackets(tc):
    theirs = TheirTc.unpack(tc.encode())
    assert (theirs.apid, theirs.seq_count, theirs.service, theirs.message_subtype) == (
        tc.apid,
        tc.sequence_count,
        tc.service,
        tc.subtype,
    )
    assert theirs.source_id == tc.source_id
    assert theirs.pus_tc_sec_header.ack_flags == tc.ack_flags
    assert bytes(theirs.app_data) == tc.app_data


@settings(deadline=None)
@given(tcs)
def test_spacepackets_tc_parses_with_ours(tc):
    theirs = TheirTc(
        service=tc.service,
        message_subtype=tc.subtype,
        apid=tc.apid,
        app_data=tc.app_data,
        seq_count=tc.sequence_count,
        source_id=tc.source_id,
        ack_flags=tc.ack_flags,
    )
    assert PusTc.decode(bytes(theirs.pack())) == tc


@settings(deadline=None)
@given(tms)
def test_our_tm_parses_with_spacepackets(tm):
    theirs = TheirTm.unpack(tm.encode(), timestamp_len=6)
    assert (theirs.apid, theirs.seq_count, theirs.service, theirs.message_subtype) == (
        tm.apid,
        tm.sequence_count,
        tm.service,
        tm.subtype,
    )
    header = theirs.pus_tm_sec_header
    assert (header.message_counter, header.dest_id, header.spacecraft_time_ref) == (
        tm.message_type_counter,
        tm.destination_id,
        tm.time_reference_status,
    )
    assert bytes(theirs.timestamp) == tm.time.encode()
    assert bytes(theirs.source_data) == tm.source_data


@settings(deadline=None)
@given(tms)
def test_spacepackets_tm_parses_with_ours(tm):
    theirs = TheirTm(
        service=tm.service,
        message_subtype=tm.subtype,
        timestamp=tm.time.encode(),
        source_data=tm.source_data,
        apid=tm.apid,
        seq_count=tm.sequence_count,
        message_counter=tm.message_type_counter,
        destination_id=tm.destination_id,
        misc_params=MiscParams(spacecraft_time_ref=tm.time_reference_status),
    )
    assert PusTm.decode(bytes(theirs.pack())) == tm


@settings(deadline=None)
@given(tcs, u16, st.binary(max_size=16), cuc_times)
def test_failure_report_interoperates_with_spacepackets_service_1(tc, code, data, time):
    their_tc = TheirTc.unpack(tc.encode())
    notice = FailureNotice(PacketFieldEnum(pfc=16, val=code), data)
    params = VerificationParams(TheirRequestId.from_pus_tc(their_tc), failure_notice=notice)
    theirs = Service1Tm(
        apid=0x42,
        message_subtype=VerificationSubtype.START_FAILURE,
        timestamp=time.encode(),
        verif_params=params,
    )
    ours = PusTm.decode(bytes(theirs.pack()))
    report = VerificationFailure(RequestId.from_tc(tc), code, data)
    assert (ours.service, ours.subtype, ours.time) == (1, VerificationSubtype.START_FAILURE, time)
    assert VerificationFailure.decode(ours.source_data) == report

    mine = PusTm(0x42, 0, Service.REQUEST_VERIFICATION, 4, report.encode(), time=time).encode()
    parsed = Service1Tm.unpack(
        mine, ManagedParams(timestamp_len=6), ManagedParamsVerification(bytes_err_code=2)
    )
    assert parsed.tc_req_id.pack() == tc.encode()[:4]
    assert parsed.error_code.val == code
    assert parsed.failure_notice.data == data


# --- application data -----------------------------------------------------------------------------


def value_length(parameter_id: int) -> int:
    """The test's parameter dictionary: every id is known, values of 0..4 octets."""
    return parameter_id % 5


request_ids = st.builds(
    RequestId,
    st.integers(0, 7),
    st.sampled_from(PacketType),
    st.booleans(),
    apids,
    st.sampled_from(SequenceFlags),
    sequence_counts,
)
id_lists = st.lists(u16, max_size=MAX_COUNT).map(tuple)
intervals = st.builds(CollectionInterval, u16, st.integers(0, 0xFFFFFFFF))


@st.composite
def parameter_value(draw: st.DrawFn) -> ParameterValue:
    parameter_id = draw(u16)
    return ParameterValue(
        parameter_id,
        draw(st.binary(min_size=value_length(parameter_id), max_size=value_length(parameter_id))),
    )


def _request_id_container(request_id: RequestId) -> dict:
    return {
        "packet_version_number": request_id.packet_version_number,
        "packet_type": request_id.packet_type,
        "secondary_header_flag": request_id.secondary_header_flag,
        "apid": request_id.apid,
        "sequence_flags": request_id.sequence_flags,
        "packet_sequence_count": request_id.sequence_count,
    }


@dataclass(frozen=True)
class Codec:
    """One application data format: values, its reference declaration, and how to read it."""

    name: str
    values: st.SearchStrategy
    declaration: Construct
    container: Callable[[Any], Any]
    decode: Callable[[bytes], Any]


CODECS = [
    Codec("request id", request_ids, REQUEST_ID, _request_id_container, RequestId.decode),
    Codec(
        "1.1/1.3/1.7",
        st.builds(VerificationSuccess, request_ids),
        VERIFICATION_SUCCESS,
        lambda report: {"request_id": _request_id_container(report.request_id)},
        VerificationSuccess.decode,
    ),
    Codec(
        "1.2/1.4/1.8",
        st.builds(VerificationFailure, request_ids, u16, user_data),
        VERIFICATION_FAILURE,
        lambda report: {
            "request_id": _request_id_container(report.request_id),
            "failure_code": report.failure_code,
            "failure_data": report.failure_data,
        },
        VerificationFailure.decode,
    ),
    Codec(
        "3.25",
        st.builds(HousekeepingParameterReport, u16, user_data),
        HOUSEKEEPING_PARAMETER_REPORT,
        lambda report: {
            "housekeeping_parameter_report_structure_id": report.structure_id,
            "parameter_values": report.parameter_values,
        },
        HousekeepingParameterReport.decode,
    ),
    Codec(
        "3.5/3.6",
        st.builds(HousekeepingStructureIds, id_lists),
        HOUSEKEEPING_STRUCTURE_IDS,
        lambda request: list(request.structure_ids),
        HousekeepingStructureIds.decode,
    ),
    Codec(
        "3.31",
        st.builds(ModifyCollectionIntervals, st.lists(intervals, max_size=40).map(tuple)),
        COLLECTION_INTERVALS,
        lambda request: [
            {
                "housekeeping_parameter_report_structure_id": entry.structure_id,
                "collection_interval": entry.collection_interval_ms,
            }
            for entry in request.intervals
        ],
        ModifyCollectionIntervals.decode,
    ),
    Codec(
        "5.1-5.4",
        st.builds(EventReport, u16, user_data),
        EVENT_REPORT,
        lambda report: {
            "event_definition_id": report.event_definition_id,
            "auxiliary_data": report.auxiliary_data,
        },
        EventReport.decode,
    ),
    Codec(
        "5.5/5.6",
        st.builds(EventDefinitionIds, id_lists),
        EVENT_DEFINITION_IDS,
        lambda request: list(request.event_definition_ids),
        EventDefinitionIds.decode,
    ),
    Codec(
        "8.1",
        st.builds(PerformFunction, u16, user_data),
        PERFORM_FUNCTION,
        lambda request: {"function_id": request.function_id, "arguments": request.arguments},
        PerformFunction.decode,
    ),
    Codec(
        "17.3/17.4",
        st.builds(ConnectionTest, apids),
        CONNECTION_TEST,
        lambda request: {"apid": request.apid},
        ConnectionTest.decode,
    ),
    Codec(
        "20.1",
        st.builds(ParameterIds, id_lists),
        PARAMETER_IDS,
        lambda request: list(request.parameter_ids),
        ParameterIds.decode,
    ),
    Codec(
        "20.2/20.3",
        st.builds(ParameterValues, st.lists(parameter_value(), max_size=40).map(tuple)),
        parameter_values(value_length),
        lambda values: [
            {"parameter_id": entry.parameter_id, "parameter_value": entry.value}
            for entry in values.values
        ],
        lambda data: ParameterValues.decode(data, value_length),
    ),
]
LIST_CODECS = [codec for codec in CODECS if codec.name in ("3.5/3.6", "3.31", "5.5/5.6", "20.1")]
EXACT_CODECS = LIST_CODECS + [
    codec for codec in CODECS if codec.name in ("request id", "1.1/1.3/1.7", "17.3/17.4")
]


@pytest.mark.parametrize("codec", CODECS, ids=lambda codec: codec.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_application_data_round_trips_and_equals_its_declaration(codec, data):
    value = data.draw(codec.values)
    encoded = value.encode()
    assert codec.decode(encoded) == value
    assert codec.declaration.build(codec.container(value)) == encoded


@pytest.mark.parametrize("codec", CODECS, ids=lambda codec: codec.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_truncated_application_data_is_a_truncated_error(codec, data):
    encoded = data.draw(codec.values).encode()
    # Formats that end in opaque octets cannot tell a short tail; cut into their fixed part.
    fixed = {"1.2/1.4/1.8": 6, "3.25": 2, "5.1-5.4": 2, "8.1": 2}.get(codec.name, len(encoded))
    cut = data.draw(st.integers(0, min(fixed, len(encoded)) - 1))
    with pytest.raises(TruncatedError):
        codec.decode(encoded[:cut])


@pytest.mark.parametrize("codec", EXACT_CODECS, ids=lambda codec: codec.name)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), extra=st.binary(min_size=1, max_size=6))
def test_octets_after_exact_application_data_are_a_length_error(codec, data, extra):
    with pytest.raises(LengthError):
        codec.decode(data.draw(codec.values).encode() + extra)


@pytest.mark.parametrize("codec", CODECS, ids=lambda codec: codec.name)
@settings(max_examples=100, deadline=None)
@given(octets=st.binary(max_size=24))
def test_arbitrary_application_data_gives_a_value_or_a_protocol_error(codec, octets):
    with contextlib.suppress(ProtocolError):
        codec.decode(octets)


@pytest.mark.parametrize("codec", LIST_CODECS, ids=lambda codec: codec.name)
def test_more_entries_than_one_packet_counts_is_a_length_error(codec):
    too_many = tuple(range(MAX_COUNT + 1))
    values = {
        "3.5/3.6": HousekeepingStructureIds(too_many),
        "3.31": ModifyCollectionIntervals(
            tuple(CollectionInterval(index, 1) for index in too_many)
        ),
        "5.5/5.6": EventDefinitionIds(too_many),
        "20.1": ParameterIds(too_many),
    }
    with pytest.raises(LengthError):
        values[codec.name].encode()


@pytest.mark.parametrize(
    "value",
    [
        RequestId(8, PacketType.TC, True, 1, SequenceFlags.UNSEGMENTED, 0),
        RequestId(0, PacketType.TC, True, MAX_APID + 1, SequenceFlags.UNSEGMENTED, 0),
        RequestId(0, PacketType.TC, True, 1, SequenceFlags.UNSEGMENTED, MAX_SEQUENCE_COUNT + 1),
        VerificationFailure(RequestId.decode(V5[:4]), 0x10000),
        HousekeepingParameterReport(-1),
        HousekeepingStructureIds((0x10000,)),
        ModifyCollectionIntervals((CollectionInterval(1, 1 << 32),)),
        EventReport(0x10000),
        EventDefinitionIds((-1,)),
        PerformFunction(0x10000),
        ConnectionTest(MAX_APID + 1),
        ParameterIds((0x10000,)),
        ParameterValues((ParameterValue(0x10000, b""),)),
    ],
    ids=repr,
)
def test_application_field_that_does_not_fit_is_a_field_error(value):
    with pytest.raises(FieldError):
        value.encode()


def test_connection_test_apid_beyond_11_bits_is_a_field_error():
    with pytest.raises(FieldError):
        ConnectionTest.decode(b"\x08\x00")


@pytest.mark.parametrize("lookup", [{7: 2}.__getitem__, {7: 2}.get], ids=["raises", "returns None"])
def test_unknown_parameter_id_is_a_field_error(lookup):
    data = ParameterValues((ParameterValue(7, b"ab"), ParameterValue(9, b"c"))).encode()
    with pytest.raises(FieldError) as error:
        ParameterValues.decode(data, lookup)
    assert error.value.offset == 5  # N, then id 7 and its 2 octets


def test_parameter_values_are_cut_by_the_dictionary_widths():
    data = bytes.fromhex("02 0001 AB 0002 CDEF")
    widths = {1: 1, 2: 2}
    assert ParameterValues.decode(data, widths.__getitem__) == ParameterValues(
        (ParameterValue(1, b"\xab"), ParameterValue(2, b"\xcd\xef"))
    )


def test_lists_given_as_lists_are_kept_as_tuples():
    assert EventDefinitionIds([1, 2]).event_definition_ids == (1, 2)  # type: ignore[arg-type]
    assert hash(ParameterIds([3])) == hash(ParameterIds((3,)))  # type: ignore[arg-type]


def test_subtype_enumerations_follow_70_41c():
    assert [Service(n) for n in (1, 3, 5, 8, 17, 20)] == list(Service)
    assert [subtype.value for subtype in VerificationSubtype] == [1, 2, 3, 4, 7, 8]
    assert [subtype.value for subtype in EventSubtype] == [1, 2, 3, 4, 5, 6]


def test_every_service_has_its_subtype_names():
    assert set(pus.SUBTYPES) == set(Service)
    assert pus.subtype_name(17, 2) == "ARE_YOU_ALIVE_REPORT"
    assert pus.subtype_name(1, 8) == "COMPLETION_FAILURE"
    assert pus.subtype_name(17, 99) is None  # a known service, an unknown subtype
    assert pus.subtype_name(200, 1) is None  # a mission service
