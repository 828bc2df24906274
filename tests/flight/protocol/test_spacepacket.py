import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import PacketId, SpacePacketHeader, parse_space_packets
from spacepackets.ccsds.spacepacket import PacketType as TheirPacketType
from spacepackets.ccsds.spacepacket import SequenceFlags as TheirSequenceFlags

from flight.protocol.cuc import CucTime
from flight.protocol.errors import FieldError, LengthError, ProtocolError, TruncatedError
from flight.protocol.pus import PusTc, PusTm, accept_pus
from flight.protocol.spacepacket import (
    IDLE_APID,
    MAX_APID,
    MAX_DATA_LENGTH,
    MAX_PACKET_LENGTH,
    MAX_SEQUENCE_COUNT,
    PRIMARY_HEADER,
    PRIMARY_HEADER_LENGTH,
    PacketStream,
    PacketType,
    SequenceFlags,
    SpacePacket,
    idle_packet,
    packet_length,
)

apids = st.integers(0, MAX_APID)
sequence_counts = st.integers(0, MAX_SEQUENCE_COUNT)
space_packets = st.builds(
    SpacePacket,
    st.sampled_from(PacketType),
    apids,
    sequence_counts,
    st.binary(min_size=1, max_size=80),
    st.booleans(),
    st.sampled_from(SequenceFlags),
)
pus_packets = st.one_of(
    st.builds(
        PusTc,
        apids,
        sequence_counts,
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(max_size=40),
    ),
    st.builds(
        PusTm,
        apids,
        sequence_counts,
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(max_size=40),
        time=st.builds(CucTime, st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1)),
    ),
).map(lambda packet: SpacePacket.decode(packet.encode()))


def header_fields(packet: SpacePacket) -> dict:
    return {
        "packet_version_number": 0,
        "packet_type": packet.packet_type,
        "secondary_header_flag": packet.secondary_header_flag,
        "apid": packet.apid,
        "sequence_flags": packet.sequence_flags,
        "sequence_count": packet.sequence_count,
        "packet_data_length": len(packet.data) - 1,
    }


# --- public vectors ---------------------------------------------------------------------------

# V7: us-irs/spacepackets-py docs/examples.rst -- a TC header, APID 1, sequence count 0, data length
# field 0 (one data octet); and a TC, APID 2, sequence count 5, carrying 01 02 03 04.
V7_HEADER = bytes.fromhex("1001C0000000")
V7_PACKET = bytes.fromhex("10 02 C0 05 00 03 01 02 03 04")
# V8: us-irs/spacepackets-py tests/ccsds/test_space_packet.py -- TC with secondary header, APID 2,
# first segment, sequence count 0x34, data length field 0x16 (test_raw_output); and all fields at
# their maximum (test_more_complex_output).
V8_HEADER = bytes.fromhex("18 02 40 34 00 16")
V8_ALL_ONES = bytes.fromhex("1FFFFFFFFFFF")


def test_v7_header_is_a_one_octet_telecommand():
    packet = SpacePacket(PacketType.TC, 1, 0, b"\x00")
    assert packet.encode()[:PRIMARY_HEADER_LENGTH] == V7_HEADER
    assert SpacePacket.decode(V7_HEADER + b"\x00") == packet


def test_v7_packet_with_custom_data_decodes_and_encodes():
    packet = SpacePacket(PacketType.TC, 2, 5, bytes([1, 2, 3, 4]))
    assert SpacePacket.decode(V7_PACKET) == packet
    assert packet.encode() == V7_PACKET


def test_v8_header_decodes_to_its_fields():
    data = bytes(range(0x17))
    packet = SpacePacket(PacketType.TC, 2, 0x34, data, True, SequenceFlags.FIRST)
    assert SpacePacket.decode(V8_HEADER + data) == packet
    assert packet.encode() == V8_HEADER + data
    assert PRIMARY_HEADER.parse(V8_HEADER) == header_fields(packet)


def test_v8_all_ones_header_is_the_largest_packet():
    packet = SpacePacket(PacketType.TC, MAX_APID, MAX_SEQUENCE_COUNT, bytes(MAX_DATA_LENGTH), True)
    assert packet.encode()[:PRIMARY_HEADER_LENGTH] == V8_ALL_ONES
    assert len(packet.encode()) == MAX_PACKET_LENGTH
    assert SpacePacket.decode(packet.encode()) == packet
    assert packet_length(V8_ALL_ONES) == MAX_PACKET_LENGTH
    assert PRIMARY_HEADER.build(header_fields(packet)) == V8_ALL_ONES


# --- round trips and the reference declaration ------------------------------------------------


@settings(deadline=None)
@given(space_packets)
def test_packets_round_trip_over_all_field_ranges(packet):
    encoded = packet.encode()
    assert len(encoded) == PRIMARY_HEADER_LENGTH + len(packet.data)
    assert SpacePacket.decode(encoded) == packet


@settings(deadline=None)
@given(space_packets)
def test_fast_path_encodes_what_the_primary_header_declaration_builds(packet):
    assert PRIMARY_HEADER.build(header_fields(packet)) + packet.data == packet.encode()


@settings(deadline=None)
@given(st.binary(min_size=PRIMARY_HEADER_LENGTH, max_size=PRIMARY_HEADER_LENGTH))
def test_fast_path_reads_any_header_as_the_declaration_does(header):
    header = bytes([header[0] & 0x1F]) + header[1:]  # version 0, the only one decoded
    parsed = PRIMARY_HEADER.parse(header)
    data = bytes(parsed.packet_data_length + 1)
    packet = SpacePacket.decode(header + data)
    assert header_fields(packet) == {key: parsed[key] for key in header_fields(packet)}


@settings(deadline=None)
@given(space_packets, st.binary(max_size=10), st.binary(max_size=10))
def test_decode_from_finds_a_packet_inside_a_buffer(packet, before, after):
    packet_found, end = SpacePacket.decode_from(before + packet.encode() + after, len(before))
    assert packet_found == packet
    assert end == len(before) + len(packet.encode())


# --- interoperability with spacepackets 0.32 ---------------------------------------------------


@settings(deadline=None)
@given(space_packets)
def test_our_packets_parse_with_spacepackets(packet):
    encoded = packet.encode()
    theirs = SpacePacketHeader.unpack(encoded)
    assert (theirs.ccsds_version, theirs.packet_type, theirs.sec_header_flag) == (
        0,
        packet.packet_type,
        packet.secondary_header_flag,
    )
    assert (theirs.apid, theirs.seq_flags, theirs.seq_count) == (
        packet.apid,
        packet.sequence_flags,
        packet.sequence_count,
    )
    assert theirs.packet_len == len(encoded)


@settings(deadline=None)
@given(space_packets)
def test_spacepackets_packets_parse_with_ours(packet):
    theirs = SpacePacketHeader(
        packet_type=TheirPacketType(packet.packet_type),
        apid=packet.apid,
        seq_count=packet.sequence_count,
        data_len=len(packet.data) - 1,
        sec_header_flag=packet.secondary_header_flag,
        seq_flags=TheirSequenceFlags(packet.sequence_flags),
    )
    assert SpacePacket.decode(bytes(theirs.pack()) + packet.data) == packet


@settings(deadline=None)
@given(st.lists(space_packets, min_size=1, max_size=6))
def test_spacepackets_stream_parser_cuts_our_stream_like_ours(packets):
    stream = b"".join(packet.encode() for packet in packets)
    ids = {
        PacketId(TheirPacketType(p.packet_type), p.secondary_header_flag, p.apid) for p in packets
    }
    # spacepackets scans only while more than a header's worth follows; end with a spare octet.
    theirs = parse_space_packets(stream + b"\xff" * PRIMARY_HEADER_LENGTH, list(ids))
    assert [bytes(raw) for raw in theirs.tm_list] == [packet.encode() for packet in packets]
    assert PacketStream().feed(stream) == packets


# --- idle packets -----------------------------------------------------------------------------


@settings(deadline=None)
@given(st.integers(PRIMARY_HEADER_LENGTH + 1, 2000), st.integers(0, 3 * MAX_SEQUENCE_COUNT))
def test_idle_packet_fills_exactly_the_space_asked(length, sequence_count):
    encoded = idle_packet(length, sequence_count)
    assert len(encoded) == length
    packet = SpacePacket.decode(encoded)
    assert packet.is_idle and packet.apid == IDLE_APID
    assert packet.packet_type == PacketType.TM and not packet.secondary_header_flag
    assert packet.sequence_count == sequence_count % (MAX_SEQUENCE_COUNT + 1)


@pytest.mark.parametrize("length", [0, PRIMARY_HEADER_LENGTH, MAX_PACKET_LENGTH + 1])
def test_idle_packet_of_impossible_length_is_a_length_error(length):
    with pytest.raises(LengthError):
        idle_packet(length)


def test_only_the_idle_apid_is_idle():
    assert not SpacePacket(PacketType.TM, IDLE_APID - 1, 0, b"\x00").is_idle


# --- negative properties ------------------------------------------------------------------------


@settings(deadline=None)
@given(space_packets, st.data())
def test_truncated_packet_is_a_truncated_error(packet, data):
    encoded = packet.encode()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(TruncatedError):
        SpacePacket.decode(encoded[:cut])


@settings(deadline=None)
@given(space_packets, st.binary(min_size=1, max_size=10))
def test_octets_after_the_packet_are_a_length_error(packet, extra):
    with pytest.raises(LengthError) as error:
        SpacePacket.decode(packet.encode() + extra)
    assert error.value.offset == 4


@settings(deadline=None)
@given(space_packets, st.integers(0, 0xFFFF))
def test_length_field_that_disagrees_with_the_buffer_is_refused(packet, length):
    encoded = bytearray(packet.encode())
    actual = len(packet.data) - 1
    assume(length != actual)
    encoded[4:6] = length.to_bytes(2, "big")
    with pytest.raises(TruncatedError if length > actual else LengthError):
        SpacePacket.decode(bytes(encoded))


@settings(deadline=None)
@given(space_packets, st.integers(1, 7))
def test_other_packet_version_is_a_field_error(packet, version):
    encoded = bytearray(packet.encode())
    encoded[0] |= version << 5
    with pytest.raises(FieldError) as error:
        SpacePacket.decode(bytes(encoded))
    assert error.value.offset == 0


@settings(deadline=None)
@given(space_packets, st.data())
def test_flipped_bit_outside_version_and_length_gives_another_packet(packet, data):
    # Space Packets carry no checksum: a flip is only caught where a check exists (PUS CRC).
    encoded = bytearray(packet.encode())
    bit = data.draw(st.integers(3, len(encoded) * 8 - 1).filter(lambda b: not 32 <= b < 48))
    encoded[bit // 8] ^= 0x80 >> (bit % 8)
    assert SpacePacket.decode(bytes(encoded)) != packet


@pytest.mark.parametrize(
    "packet",
    [
        SpacePacket(PacketType.TC, MAX_APID + 1, 0, b"\x00"),
        SpacePacket(PacketType.TC, -1, 0, b"\x00"),
        SpacePacket(PacketType.TC, 1, MAX_SEQUENCE_COUNT + 1, b"\x00"),
    ],
)
def test_field_that_does_not_fit_is_a_field_error(packet):
    with pytest.raises(FieldError):
        packet.encode()


@pytest.mark.parametrize("data", [b"", bytes(MAX_DATA_LENGTH + 1)])
def test_data_field_of_impossible_length_is_a_length_error(data):
    with pytest.raises(LengthError):
        SpacePacket(PacketType.TM, 1, 0, data).encode()


@pytest.mark.parametrize(
    "packet",
    [
        SpacePacket(2, 1, 0, b"\x00"),  # type: ignore[arg-type]
        SpacePacket(PacketType.TC, 1, 0, b"\x00", 2),  # type: ignore[arg-type]
        SpacePacket(PacketType.TC, 1, 0, b"\x00", False, 4),  # type: ignore[arg-type]
    ],
)
def test_enumerated_field_out_of_range_is_a_field_error(packet):
    with pytest.raises(FieldError):
        packet.encode()


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=40))
def test_arbitrary_octets_give_a_packet_or_a_protocol_error(octets):
    try:
        packet = SpacePacket.decode(octets)
    except ProtocolError:
        return
    assert packet.encode() == octets


# --- PacketStream -------------------------------------------------------------------------------


def feed_in_pieces(stream: PacketStream, data: bytes, cuts: list[int]) -> list[SpacePacket]:
    packets = []
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        packets += stream.feed(data[start:end])
    return packets


@settings(deadline=None)
@given(st.lists(space_packets, max_size=8), st.lists(st.integers(0, 10_000), max_size=12))
def test_packets_split_at_arbitrary_points_reassemble(packets, cuts):
    stream = PacketStream()
    data = b"".join(packet.encode() for packet in packets)
    assert feed_in_pieces(stream, data, cuts) == packets
    assert (stream.discarded_octets, stream.pending_octets) == (0, 0)


@settings(deadline=None)
@given(st.lists(space_packets, max_size=6))
def test_stream_fed_one_octet_at_a_time_gives_the_same_packets(packets):
    stream = PacketStream()
    data = b"".join(packet.encode() for packet in packets)
    assert [p for octet in data for p in stream.feed(bytes([octet]))] == packets


cannot_start = st.binary(max_size=12).map(lambda octets: bytes(o | 0x20 for o in octets))


@settings(deadline=None)
@given(st.lists(st.tuples(cannot_start, space_packets), max_size=6), cannot_start)
def test_octets_that_cannot_start_a_packet_are_discarded_and_counted(gaps_and_packets, tail):
    # Every garbage octet has a non-zero version, so no check beyond the header is needed.
    stream = PacketStream()
    data = b"".join(gap + packet.encode() for gap, packet in gaps_and_packets) + tail
    assert stream.feed(data) == [packet for _, packet in gaps_and_packets]
    skipped = sum(len(gap) for gap, _ in gaps_and_packets) + len(tail)
    assert stream.discarded_octets + stream.pending_octets == skipped


def test_header_claiming_more_than_the_maximum_is_discarded_without_waiting():
    real = SpacePacket(PacketType.TC, 0x7E0, 0, b"abc")
    stream = PacketStream(max_packet_length=100)
    claims_too_much = bytes.fromhex("1000000000FF")  # a TC header of 262 octets
    assert stream.feed(claims_too_much + real.encode()) == [real]
    assert stream.discarded_octets == 6


MAX_TEST_PACKET = 128  # longer than any packet drawn below, so the search window stays small
FLUSH = b"\xff" * MAX_TEST_PACKET  # octets of version 7: they start nothing and push the search on


def starts_an_accepted_packet(data: bytes, position: int) -> bool:
    """Whether a PUS packet that `accept_pus` approves starts at `position` -- independently of
    PacketStream's search."""
    try:
        total = packet_length(data, position)
    except ProtocolError:
        return False
    if total > MAX_TEST_PACKET or position + total > len(data):
        return False
    return accept_pus(SpacePacket.decode(data[position : position + total]))


def stream_with_gaps(packets: list[SpacePacket], gaps: list[bytes]) -> tuple[bytes, list[range]]:
    """The packets with `gaps[i]` before packet i, then FLUSH; and where the gaps lie."""
    data, regions = b"", []
    for gap, packet in zip(gaps, packets, strict=True):
        regions.append(range(len(data), len(data) + len(gap)))
        data += gap + packet.encode()
    return data + FLUSH, regions


@st.composite
def garbage(draw: st.DrawFn) -> bytes:
    """Random octets, octets that look like a header (version 0), or a packet cut short."""
    kind = draw(st.sampled_from(["random", "header-like", "cut short"]))
    if kind == "random":
        return draw(st.binary(max_size=16))
    if kind == "header-like":
        octets = draw(st.binary(min_size=PRIMARY_HEADER_LENGTH, max_size=16))
        return bytes([octets[0] & 0x1F]) + octets[1:]
    packet = draw(pus_packets).encode()
    return packet[: draw(st.integers(1, len(packet) - 1))]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(pus_packets, min_size=1, max_size=5).flatmap(
        lambda packets: st.tuples(
            st.just(packets), st.lists(garbage(), min_size=len(packets), max_size=len(packets))
        )
    ),
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_garbage_before_and_between_packets_is_skipped_and_counted(packets_and_gaps, cuts):
    packets, gaps = packets_and_gaps
    data, regions = stream_with_gaps(packets, gaps)
    assume(not any(starts_an_accepted_packet(data, p) for region in regions for p in region))
    stream = PacketStream(max_packet_length=MAX_TEST_PACKET, accept=accept_pus)
    assert feed_in_pieces(stream, data, cuts) == packets
    # Everything but the packets is discarded, except the last few flush octets (< one header).
    assert stream.pending_octets == PRIMARY_HEADER_LENGTH - 1
    assert stream.discarded_octets == sum(map(len, gaps)) + len(FLUSH) - stream.pending_octets


@settings(max_examples=60, deadline=None)
@given(st.lists(pus_packets, min_size=2, max_size=5), pus_packets, st.data())
def test_truncated_packet_in_mid_stream_is_skipped_and_the_next_recovered(packets, lost, data):
    cut_short = lost.encode()[: data.draw(st.integers(1, len(lost.encode()) - 1))]
    gaps = [b""] * len(packets)
    gaps[data.draw(st.integers(1, len(packets) - 1))] = cut_short
    stream_data, regions = stream_with_gaps(packets, gaps)
    assume(not any(starts_an_accepted_packet(stream_data, p) for r in regions for p in r))
    stream = PacketStream(max_packet_length=MAX_TEST_PACKET, accept=accept_pus)
    assert stream.feed(stream_data) == packets
    assert stream.discarded_octets == len(cut_short) + len(FLUSH) - stream.pending_octets


def test_without_accept_a_header_in_garbage_is_taken_for_a_packet():
    # Why PacketStream takes `accept`: a version-0 octet in garbage looks like a header.
    # The garbage is chosen so that no candidate header in it waits for more octets.
    garbage = bytes.fromhex("00E0E0E00000")
    real = SpacePacket.decode(PusTc(1, 0, 17, 1).encode())
    assert PacketStream(max_packet_length=100).feed(garbage + real.encode()) != [real]
    stream = PacketStream(max_packet_length=100, accept=accept_pus)
    assert stream.feed(garbage + real.encode()) == [real]
    assert stream.discarded_octets == len(garbage)
