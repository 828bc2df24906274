import contextlib
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacepackets.uslp.frame import (
    FrameType,
    TfdzConstructionRules,
    TransferFrame,
    TransferFrameDataField,
    UslpProtocolIdentifier,
    VarFrameProperties,
)
from spacepackets.uslp.header import PrimaryHeader, SourceOrDestField

from flight.isl.frame import (
    BROADCAST_ADDRESS,
    MAX_FRAME_LENGTH,
    MAX_PAYLOAD_LENGTH,
    ROUTED_PACKET,
    USLP_TRANSFER_FRAME,
    IslFrame,
    IslVirtualChannel,
    PacketKind,
    RoutedPacket,
    packet_crc,
    virtual_channel_for,
)
from flight.protocol.crc import crc16
from flight.protocol.errors import (
    AddressError,
    ChecksumError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
)

SETTINGS = settings(max_examples=300, deadline=None)

# A DATA packet from node 5 to node 9 (priority 3, hop limit 7, flow 42, payload "hello") in a
# frame on VC 1 of SCID 0x1A5 with a 2-octet VC frame count of 300. Written out in the ICD.
EXAMPLE = bytes.fromhex(
    "c01a5020"
    "0026"
    "82"
    "012c"
    "e5"  # USLP primary header, VC frame count, TFDF header
    "01000307"
    "00000005"
    "00000009"
    "0000002a"
    "0005"  # routed packet header
    "68656c6c6f"
    "bd741542"  # payload, packet CRC-32
    "f844"  # FECF
)
EXAMPLE_PACKET = RoutedPacket(5, 9, PacketKind.DATA, b"hello", 3, 7, 42)
SPACEPACKETS_VARIABLE = VarFrameProperties(
    has_insert_zone=False, has_fecf=True, truncated_frame_len=0
)


def refresh_fecf(frame: bytes | bytearray) -> bytes:
    body = bytes(frame[:-2])
    return body + crc16(body).to_bytes(2, "big")


def refresh_crc(packet: bytes | bytearray) -> bytes:
    body = bytes(packet[:-4])
    return body + packet_crc(body).to_bytes(4, "big")


@st.composite
def packets(draw: st.DrawFn, max_payload: int = 300) -> RoutedPacket:
    return RoutedPacket(
        source=draw(st.integers(0, BROADCAST_ADDRESS - 1)),
        destination=draw(st.integers(0, BROADCAST_ADDRESS)),
        kind=draw(st.sampled_from(PacketKind)),
        payload=draw(st.binary(max_size=max_payload)),
        priority=draw(st.integers(0, 7)),
        hop_limit=draw(st.integers(0, 255)),
        flow_id=draw(st.integers(0, 0xFFFFFFFF)),
    )


@st.composite
def frames(draw: st.DrawFn) -> IslFrame:
    count_octets = draw(st.integers(0, 7))
    return IslFrame(
        draw(packets()),
        draw(st.sampled_from(IslVirtualChannel)),
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, (1 << (8 * count_octets)) - 1)),
        count_octets,
    )


def test_example_decodes_to_the_fields_written_in_the_icd():
    frame = IslFrame.decode(EXAMPLE, spacecraft_id=0x1A5)
    assert frame == IslFrame(EXAMPLE_PACKET, IslVirtualChannel.DATA, 0x1A5, 300, 2)
    assert frame.encode() == EXAMPLE


def test_example_packet_crc_is_zlib_crc32_with_the_hop_limit_zeroed():
    packet = EXAMPLE[10:-2]
    zeroed = packet[:3] + b"\x00" + packet[4:-4]
    assert zlib.crc32(zeroed).to_bytes(4, "big") == packet[-4:]


def test_example_is_a_uslp_frame_to_spacepackets():
    parsed = TransferFrame.unpack(EXAMPLE, FrameType.VARIABLE, SPACEPACKETS_VARIABLE)
    header = parsed.header
    assert (header.scid, header.src_dest, header.vcid, header.map_id) == (0x1A5, 0, 1, 0)
    assert header.frame_len == len(EXAMPLE) - 1
    assert (header.bypass_seq_ctrl_flag, header.prot_ctrl_cmd_flag, header.op_ctrl_flag) == (
        1,
        0,
        0,
    )
    assert (header.vcf_count_len, header.vcf_count) == (2, 300)
    assert parsed.tfdf.tfdz_contr_rules == TfdzConstructionRules.VpNoSegmentation
    assert parsed.tfdf.uslp_ident == UslpProtocolIdentifier.MISSION_SPECIFIC_INFO_1_MAPA_SDU
    assert parsed.tfdf.tfdz == EXAMPLE_PACKET.encode()


@SETTINGS
@given(frames())
def test_every_frame_survives_an_encode_decode_round_trip(frame):
    assert IslFrame.decode(frame.encode()) == frame


@SETTINGS
@given(frames())
def test_spacepackets_reads_our_frames_field_for_field(frame):
    encoded = frame.encode()
    parsed = TransferFrame.unpack(encoded, FrameType.VARIABLE, SPACEPACKETS_VARIABLE)
    header = parsed.header
    assert header.scid == frame.spacecraft_id
    assert header.src_dest == SourceOrDestField.SOURCE
    assert header.vcid == frame.virtual_channel_id
    assert header.map_id == 0
    assert header.frame_len == len(encoded) - 1
    assert header.vcf_count_len == frame.frame_count_octets
    if frame.frame_count_octets:
        assert header.vcf_count == frame.frame_count
    assert parsed.tfdf.tfdz == frame.packet.encode()


@SETTINGS
@given(frames())
def test_we_read_the_frames_spacepackets_builds(frame):
    header = PrimaryHeader(
        scid=frame.spacecraft_id,
        src_dest=SourceOrDestField.SOURCE,
        vcid=frame.virtual_channel_id,
        map_id=0,
        frame_len=0,
        bypass_seq_ctrl_flag=1,
        vcf_count_len=frame.frame_count_octets,
        vcf_count=frame.frame_count,
    )
    tfdf = TransferFrameDataField(
        tfdz_cnstr_rules=TfdzConstructionRules.VpNoSegmentation,
        uslp_ident=UslpProtocolIdentifier.MISSION_SPECIFIC_INFO_1_MAPA_SDU,
        tfdz=frame.packet.encode(),
    )
    built = TransferFrame(header=header, tfdf=tfdf, has_fecf=True)
    built.set_frame_len_in_header()
    assert IslFrame.decode(bytes(built.pack(frame_type=FrameType.VARIABLE))) == frame


@SETTINGS
@given(frames())
def test_fast_encoder_agrees_with_the_construct_declarations(frame):
    encoded = frame.encode()
    parsed = USLP_TRANSFER_FRAME.parse(encoded)
    header = parsed.primary_header
    assert header.transfer_frame_version_number == 0b1100
    assert header.spacecraft_identifier == frame.spacecraft_id
    assert not header.source_or_destination_identifier
    assert header.virtual_channel_identifier == frame.virtual_channel_id
    assert header.map_identifier == 0
    assert not header.end_of_frame_primary_header_flag
    assert header.frame_length == len(encoded) - 1
    assert header.bypass_sequence_control_flag
    assert not header.protocol_control_command_flag
    assert header.reserved_spares == 0
    assert not header.ocf_flag
    assert header.vc_frame_count_length == frame.frame_count_octets
    if frame.frame_count_octets:
        assert parsed.vc_frame_count == frame.frame_count
    assert parsed.tfdf_header.tfdz_construction_rules == 0b111
    assert parsed.tfdf_header.uslp_protocol_identifier == 0b00101
    assert parsed.frame_error_control_field == crc16(encoded[:-2])
    packet = ROUTED_PACKET.parse(parsed.transfer_frame_data_zone)
    assert packet.packet_version == 1
    assert packet.packet_kind == frame.packet.kind
    assert packet.priority == frame.packet.priority
    assert packet.hop_limit == frame.packet.hop_limit
    assert packet.source_address == frame.packet.source
    assert packet.destination_address == frame.packet.destination
    assert packet.flow_id == frame.packet.flow_id
    assert packet.payload == frame.packet.payload


@SETTINGS
@given(packets())
def test_fast_decoder_reads_what_the_construct_declaration_builds(packet):
    fields = {
        "packet_version": 1,
        "packet_kind": int(packet.kind),
        "priority": packet.priority,
        "hop_limit": packet.hop_limit,
        "source_address": packet.source,
        "destination_address": packet.destination,
        "flow_id": packet.flow_id,
        "payload_length": len(packet.payload),
        "payload": packet.payload,
        "packet_crc": 0,
    }
    assert RoutedPacket.decode(refresh_crc(ROUTED_PACKET.build(fields))) == packet


@SETTINGS
@given(packets(), st.integers(0, 255))
def test_a_forwarder_changes_the_hop_limit_without_touching_the_crc(packet, hop_limit):
    encoded = bytearray(packet.encode())
    encoded[3] = hop_limit
    decoded = RoutedPacket.decode(encoded)
    assert decoded.hop_limit == hop_limit
    assert encoded[-4:] == packet.encode()[-4:]


def test_forwarded_decrements_the_hop_limit_and_refuses_at_zero():
    assert EXAMPLE_PACKET.forwarded().hop_limit == 6
    with pytest.raises(FieldError, match="hop limit 0"):
        RoutedPacket(1, 2, PacketKind.DATA, hop_limit=0).forwarded()


@SETTINGS
@given(st.binary(max_size=120))
def test_arbitrary_octets_raise_only_protocol_errors(octets):
    for decode in (IslFrame.decode, RoutedPacket.decode):
        with contextlib.suppress(ProtocolError):
            decode(octets)


@SETTINGS
@given(frames(), st.data())
def test_mutations_behind_valid_checksums_raise_only_protocol_errors(frame, data):
    encoded = bytearray(frame.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        encoded[data.draw(st.integers(0, len(encoded) - 1))] = data.draw(st.integers(0, 255))
    packet_end = len(encoded) - 2
    packet_start = 7 + frame.frame_count_octets + 1
    if data.draw(st.booleans()) and packet_end - packet_start >= 4:
        encoded[packet_start:packet_end] = refresh_crc(encoded[packet_start:packet_end])
    try:
        decoded = IslFrame.decode(refresh_fecf(encoded))
    except ProtocolError:
        return
    assert decoded.encode() == refresh_fecf(encoded)


def mutate(octets: bytes, offset: int, value: int, *, crc: bool = False) -> bytes:
    out = bytearray(octets)
    out[offset] = value
    if crc:
        out[10:-2] = refresh_crc(out[10:-2])
    return refresh_fecf(out)


@pytest.mark.parametrize(
    ("octets", "error", "words"),
    [
        (EXAMPLE[:12], TruncatedError, "frame length field says 39"),
        (EXAMPLE + b"\x00", LengthError, "buffer has 40"),
        (EXAMPLE[:-1] + bytes([EXAMPLE[-1] ^ 1]), ChecksumError, "CRC-16"),
        (mutate(EXAMPLE, 0, 0x00), FieldError, "version number"),
        (mutate(EXAMPLE, 3, 0x21), FieldError, "truncated primary header"),
        (mutate(EXAMPLE, 2, 0x58), FieldError, "source/destination"),
        (mutate(EXAMPLE, 6, 0x02), FieldError, "bypass flag 0"),
        (mutate(EXAMPLE, 6, 0xC2), FieldError, "protocol control command"),
        (mutate(EXAMPLE, 6, 0x92), FieldError, "reserved spares"),
        (mutate(EXAMPLE, 6, 0x8A), FieldError, "OCF"),
        (mutate(EXAMPLE, 9, 0xE0), FieldError, "TFDF header"),
        (mutate(EXAMPLE, 3, 0x40), AddressError, "virtual channel 2"),
        (mutate(EXAMPLE, 3, 0x22), AddressError, "MAP 1"),
        (mutate(EXAMPLE, 20, 0xFF), ChecksumError, "routed packet CRC-32"),
        (mutate(EXAMPLE, 10, 0x02, crc=True), FieldError, "routed packet version 2"),
        (mutate(EXAMPLE, 11, 0x99, crc=True), FieldError, "unknown packet kind 153"),
        (mutate(EXAMPLE, 12, 0x08, crc=True), FieldError, "priority 8"),
        (mutate(EXAMPLE, 27, 0x04, crc=True), LengthError, "payload length"),
        (mutate(EXAMPLE, 27, 0x06, crc=True), TruncatedError, "payload length"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_bad_frame_gets_its_typed_error(octets, error, words):
    with pytest.raises(error, match=words) as raised:
        IslFrame.decode(octets)
    assert type(raised.value) is error


def test_a_shorter_payload_length_than_the_zone_is_a_length_error():
    short = bytearray(EXAMPLE_PACKET.encode())
    short[17] = 4  # says 4 payload octets, 5 follow
    with pytest.raises(LengthError, match="buffer has"):
        RoutedPacket.decode(short)


def test_a_broadcast_source_is_refused_both_ways():
    packet = bytearray(EXAMPLE_PACKET.encode())
    packet[4:8] = b"\xff\xff\xff\xff"
    with pytest.raises(FieldError, match="broadcast address cannot be a source"):
        RoutedPacket.decode(refresh_crc(packet))
    with pytest.raises(FieldError, match="source address"):
        RoutedPacket(BROADCAST_ADDRESS, 1, PacketKind.DATA).encode()


def test_another_spacecraft_is_an_address_error_only_when_asked():
    assert IslFrame.decode(EXAMPLE).spacecraft_id == 0x1A5
    with pytest.raises(AddressError, match="spacecraft 0x1a5"):
        IslFrame.decode(EXAMPLE, spacecraft_id=0x1A6)


def test_error_offsets_point_into_the_frame_not_the_packet():
    with pytest.raises(FieldError) as raised:
        IslFrame.decode(mutate(EXAMPLE, 12, 0x08, crc=True))
    assert raised.value.offset == 12


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: RoutedPacket(1, 2, PacketKind.DATA, priority=8), FieldError),
        (lambda: RoutedPacket(1, 2, PacketKind.DATA, hop_limit=256), FieldError),
        (lambda: RoutedPacket(1, 2, PacketKind.DATA, flow_id=1 << 32), FieldError),
        (lambda: RoutedPacket(1, 2, 99), FieldError),
        (lambda: RoutedPacket(1, 2, PacketKind.DATA, bytes(MAX_PAYLOAD_LENGTH + 1)), LengthError),
        (lambda: IslFrame(EXAMPLE_PACKET, frame_count=256, frame_count_octets=1), FieldError),
        (lambda: IslFrame(EXAMPLE_PACKET, frame_count_octets=8), FieldError),
        (lambda: IslFrame(EXAMPLE_PACKET, spacecraft_id=0x10000), FieldError),
        (lambda: IslFrame(EXAMPLE_PACKET, virtual_channel_id=5), FieldError),
    ],
)
def test_encoders_refuse_values_that_do_not_fit(build, error):
    with pytest.raises(error):
        build().encode()


def test_the_longest_packet_fits_a_frame_with_the_longest_frame_count():
    packet = RoutedPacket(1, 2, PacketKind.FILE, bytes(MAX_PAYLOAD_LENGTH))
    encoded = IslFrame(packet, frame_count=1, frame_count_octets=7).encode()
    assert len(encoded) == MAX_FRAME_LENGTH
    assert IslFrame.decode(encoded).packet == packet


def test_control_traffic_and_bulk_data_use_different_virtual_channels():
    assert virtual_channel_for(PacketKind.BEACON) is IslVirtualChannel.CONTROL
    assert virtual_channel_for(PacketKind.OFFER) is IslVirtualChannel.CONTROL
    assert virtual_channel_for(PacketKind.DATA) is IslVirtualChannel.DATA
    assert virtual_channel_for(PacketKind.FILE) is IslVirtualChannel.DATA
    beacon = RoutedPacket(1, BROADCAST_ADDRESS, PacketKind.BEACON)
    assert IslFrame.carrying(beacon).virtual_channel_id is IslVirtualChannel.CONTROL
