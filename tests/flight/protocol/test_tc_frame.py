import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.protocol import icd
from flight.protocol.crc import crc16
from flight.protocol.errors import (
    AddressError,
    ChecksumError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
)
from flight.protocol.tc_frame import (
    MAX_FRAME_LENGTH,
    PRIMARY_HEADER,
    SEGMENT_HEADER,
    TC_TRANSFER_FRAME,
    ControlCommand,
    FrameType,
    TcFrame,
    parse_control_command,
)

# V11: dariol83/ccsds TcTransferFrameTest.java (FIRST_FRAME): SCID 123, VC 0, frame sequence number
# 23, bypass flag set (Type-BD), segment header C1 (unsegmented, MAP 1), data 00..0F, FECF 0DEF.
V11 = bytes.fromhex("207B001717C1000102030405060708090A0B0C0D0E0F0DEF")

SETTINGS = settings(max_examples=300, deadline=None)


def refresh_fecf(frame: bytes | bytearray) -> bytes:
    """The same octets with a correct FECF, to get past the checksum to the check under test."""
    body = bytes(frame[:-2])
    return body + crc16(body).to_bytes(2, "big")


@st.composite
def frames(draw: st.DrawFn) -> TcFrame:
    kind = draw(st.sampled_from(FrameType))
    scid = draw(st.integers(0, 0x3FF))
    vcid = draw(st.integers(0, 0x3F))
    if kind is FrameType.BC:
        if draw(st.booleans()):
            return TcFrame.unlock(scid, vcid)
        return TcFrame.set_vr(scid, vcid, draw(st.integers(0, 255)))
    data = draw(st.binary(max_size=MAX_FRAME_LENGTH - 8))
    return TcFrame(
        scid,
        vcid,
        draw(st.integers(0, 255)),
        data,
        bypass_flag=kind is FrameType.BD,
        map_id=draw(st.integers(0, 63)),
    )


def test_v11_decodes_to_the_fields_dariol83_reports():
    frame = TcFrame.decode(V11)
    assert frame.spacecraft_id == 123
    assert frame.virtual_channel_id == 0
    assert frame.frame_sequence_number == 23
    assert frame.frame_type is FrameType.BD
    assert frame.map_id == 1
    assert frame.data == bytes(range(16))


def test_v11_is_reproduced_by_the_encoder():
    frame = TcFrame(123, 0, 23, bytes(range(16)), bypass_flag=True, map_id=1)
    assert frame.encode() == V11


def test_v11_parses_with_the_construct_reference():
    parsed = TC_TRANSFER_FRAME.parse(V11)
    assert parsed.primary_header.spacecraft_identifier == 123
    assert parsed.primary_header.frame_length == len(V11) - 1
    assert parsed.segment_header.sequence_flags == 0b11
    assert parsed.segment_header.map_identifier == 1
    assert parsed.frame_error_control_field == 0x0DEF


@SETTINGS
@given(frames())
def test_every_frame_survives_an_encode_decode_round_trip(frame):
    assert TcFrame.decode(frame.encode()) == frame


@SETTINGS
@given(frames())
def test_fast_encoder_agrees_with_the_construct_declaration(frame):
    encoded = frame.encode()
    parsed = TC_TRANSFER_FRAME.parse(encoded)
    header = parsed.primary_header
    assert header.transfer_frame_version_number == 0
    assert header.bypass_flag == frame.bypass_flag
    assert header.control_command_flag == frame.control_command_flag
    assert header.reserved_spare == 0
    assert header.spacecraft_identifier == frame.spacecraft_id
    assert header.virtual_channel_identifier == frame.virtual_channel_id
    assert header.frame_length == len(encoded) - 1
    assert header.frame_sequence_number == frame.frame_sequence_number
    if frame.map_id is None:
        assert parsed.segment_header is None
    else:
        assert parsed.segment_header.sequence_flags == 0b11
        assert parsed.segment_header.map_identifier == frame.map_id
    assert parsed.frame_data == frame.data
    assert parsed.frame_error_control_field == crc16(encoded[:-2])


@SETTINGS
@given(frames())
def test_fast_decoder_reads_what_the_construct_declaration_builds(frame):
    segment = (
        None if frame.map_id is None else {"sequence_flags": 3, "map_identifier": frame.map_id}
    )
    header = {
        "transfer_frame_version_number": 0,
        "bypass_flag": frame.bypass_flag,
        "control_command_flag": frame.control_command_flag,
        "reserved_spare": 0,
        "spacecraft_identifier": frame.spacecraft_id,
        "virtual_channel_identifier": frame.virtual_channel_id,
        "frame_length": 5 + (segment is not None) + len(frame.data) + 2 - 1,
        "frame_sequence_number": frame.frame_sequence_number,
    }
    built = TC_TRANSFER_FRAME.build(
        {
            "primary_header": header,
            "segment_header": segment,
            "frame_data": frame.data,
            "frame_error_control_field": 0,
        }
    )
    assert TcFrame.decode(refresh_fecf(built)) == frame


@SETTINGS
@given(frames())
def test_header_octets_are_what_encode_writes_ahead_of_the_data(frame):
    encoded = frame.encode()
    header = frame.header_octets(len(frame.data))
    assert encoded[: len(header)] == header
    assert encoded[len(header) : -2] == frame.data
    assert PRIMARY_HEADER.parse(header[:5]).frame_length == len(encoded) - 1
    if frame.map_id is not None:
        assert SEGMENT_HEADER.parse(header[5:6]).map_identifier == frame.map_id


def test_control_commands_are_the_232_0_octets():
    assert TcFrame.unlock(1, 2).data == b"\x00"
    assert TcFrame.set_vr(1, 2, 0x5A).data == b"\x82\x00\x5a"
    assert TcFrame.unlock(1, 2).control_command() == (ControlCommand.UNLOCK, None)
    assert TcFrame.set_vr(1, 2, 7).control_command() == (ControlCommand.SET_VR, 7)


def test_frame_type_follows_the_bypass_and_control_command_flags():
    assert TcFrame(1, 0, 0, b"x").frame_type is FrameType.AD
    assert TcFrame(1, 0, 0, b"x", bypass_flag=True).frame_type is FrameType.BD
    assert TcFrame.unlock(1, 0).frame_type is FrameType.BC


@pytest.mark.parametrize(
    "data", [b"", b"\x01", b"\x00\x00", b"\x82\x00", b"\x82\x01\x05", b"\x82\x00\x05\x00"]
)
def test_anything_but_unlock_or_set_vr_is_not_a_control_command(data):
    with pytest.raises(FieldError):
        parse_control_command(data)


def test_a_control_command_is_asked_only_of_bc_frames():
    with pytest.raises(FieldError):
        TcFrame(1, 0, 0, b"\x00").control_command()


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (TcFrame(0x400, 0, 0, b"x"), FieldError),
        (TcFrame(-1, 0, 0, b"x"), FieldError),
        (TcFrame(1, 64, 0, b"x"), FieldError),
        (TcFrame(1, 0, 256, b"x"), FieldError),
        (TcFrame(1, 0, 0, b"x", map_id=64), FieldError),
        (TcFrame(1, 0, 0, b"x", map_id=None), FieldError),
        (TcFrame(1, 0, 0, b"\x00", bypass_flag=True, control_command_flag=True), FieldError),
        (TcFrame(1, 0, 0, b"\x00", control_command_flag=True, map_id=None), FieldError),
        (TcFrame(1, 0, 0, b"\x05", True, True, None), FieldError),
        (TcFrame(1, 0, 0, bytes(MAX_FRAME_LENGTH - 7)), LengthError),
    ],
)
def test_encoder_refuses_values_that_do_not_fit(frame, error):
    with pytest.raises(error):
        frame.encode()


def test_the_longest_frame_is_the_icd_maximum():
    frame = TcFrame(1, 0, 0, bytes(MAX_FRAME_LENGTH - 8))
    assert len(frame.encode()) == icd.TC_MAX_FRAME_LENGTH == 1024
    with pytest.raises(LengthError):
        frame.header_octets(MAX_FRAME_LENGTH - 7)


def test_set_vr_refuses_a_value_beyond_eight_bits():
    with pytest.raises(FieldError):
        TcFrame.set_vr(1, 0, 256)


@SETTINGS
@given(frames(), st.data())
def test_truncated_frames_are_truncated_errors(frame, data):
    encoded = frame.encode()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(TruncatedError):
        TcFrame.decode(encoded[:cut])


@SETTINGS
@given(frames(), st.binary(min_size=1, max_size=8))
def test_octets_beyond_the_frame_length_are_a_length_error(frame, extra):
    with pytest.raises(LengthError) as error:
        TcFrame.decode(frame.encode() + extra)
    assert error.value.offset == 2


@SETTINGS
@given(frames(), st.data())
def test_any_flipped_bit_is_caught_by_the_length_check_or_the_fecf(frame, data):
    damaged = bytearray(frame.encode())
    bit = data.draw(st.integers(0, len(damaged) * 8 - 1))
    damaged[bit // 8] ^= 0x80 >> (bit % 8)
    in_length_field = 22 <= bit < 32  # the 10-bit frame length field
    expected = (TruncatedError, LengthError) if in_length_field else ChecksumError
    with pytest.raises(expected):
        TcFrame.decode(damaged)


def test_a_wrong_fecf_is_a_checksum_error_at_the_fecf():
    damaged = bytearray(V11)
    damaged[-1] ^= 0xFF
    with pytest.raises(ChecksumError) as error:
        TcFrame.decode(damaged)
    assert error.value.offset == len(V11) - 2


def test_a_frame_for_another_spacecraft_is_an_address_error():
    assert TcFrame.decode(V11, spacecraft_id=123).spacecraft_id == 123
    with pytest.raises(AddressError):
        TcFrame.decode(V11, spacecraft_id=icd.SPACECRAFT_ID)


@pytest.mark.parametrize(
    ("octet", "mask", "what"),
    [
        (0, 0x40, "version number 1"),
        (0, 0x80, "version number 2"),
        (0, 0x08, "reserved spare"),
        (0, 0x04, "reserved spare"),
        (5, 0x40, "segment flags 10"),
        (5, 0x80, "segment flags 01"),
    ],
)
def test_forbidden_header_values_are_field_errors(octet, mask, what):
    damaged = bytearray(V11)
    damaged[octet] ^= mask
    with pytest.raises(FieldError):
        TcFrame.decode(refresh_fecf(damaged))


def test_control_command_flag_without_bypass_is_a_field_error():
    damaged = bytearray(V11)
    damaged[0] = (damaged[0] & ~0x20) | 0x10
    with pytest.raises(FieldError):
        TcFrame.decode(refresh_fecf(damaged))


def test_a_bc_frame_with_an_unknown_command_is_a_field_error():
    body = bytes([0x30, 0x05, 0x04, 0x07, 0x00, 0x42])
    with pytest.raises(FieldError) as error:
        TcFrame.decode(refresh_fecf(body + b"\x00\x00"))
    assert error.value.offset == 5


def test_an_ad_frame_without_room_for_its_segment_header_is_truncated():
    body = bytes([0x00, 0x05, 0x04, 0x06, 0x00])
    with pytest.raises(TruncatedError):
        TcFrame.decode(refresh_fecf(body + b"\x00\x00"))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_octets_decode_or_raise_a_protocol_error(data):
    with contextlib.suppress(ProtocolError):
        TcFrame.decode(data)


@settings(max_examples=500, deadline=None)
@given(frames(), st.data())
def test_frames_with_a_valid_fecf_and_random_header_decode_or_raise_a_protocol_error(frame, data):
    damaged = bytearray(frame.encode())
    damaged[:6] = data.draw(st.binary(min_size=6, max_size=6))
    with contextlib.suppress(ProtocolError):
        TcFrame.decode(refresh_fecf(damaged))
