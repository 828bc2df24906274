import contextlib

import fastcrc  # spacepackets' own CRC dependency: an oracle independent of flight.protocol.crc
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.tm_frame import (
    MasterChannelId,
    TmFramePrimaryHeader,
    TmTransferFrame,
    TransferFrameDataFieldStatus,
)

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
from flight.protocol.spacepacket import PacketType, SpacePacket
from flight.protocol.tm_frame import (
    NO_CLCW,
    PRIMARY_HEADER,
    FirstHeaderPointer,
    TmFrame,
    TmMasterChannel,
    TmReceiver,
    data_field_length,
    tm_transfer_frame,
)

# V9: spacepackets tests/ccsds/test_tm_frame.py, test_unpack_transfer_frame_invalid_fefc, whose
# comment gives the correct FECF as 81 4A. A 16-octet frame: SCID 3, VC 7, OCF flag set, counts 0,
# FHP 0x7FE (only idle data), data field 00 00 01 02, OCF 01 00 00 00, FECF 81 4A.
V9 = bytes.fromhex("003F00001FFE0000010201000000814A")
V9_BAD_FECF = bytes.fromhex("003F00001FFE00000102010000000123")  # same test, FECF 01 23
V9_FRAME = TmFrame(
    spacecraft_id=3,
    virtual_channel_id=7,
    master_channel_frame_count=0,
    virtual_channel_frame_count=0,
    first_header_pointer=0x7FE,
    data=bytes.fromhex("00000102"),
    ocf=0x0100_0000,
)

FAST = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def _with_fecf(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "big")


def _packet(apid: int, sequence_count: int, data_octets: int) -> bytes:
    data = bytes((sequence_count + i) & 0xFF for i in range(data_octets))
    return SpacePacket(PacketType.TM, apid, sequence_count & 0x3FFF, data).encode()


@st.composite
def frames(draw: st.DrawFn, with_ocf: bool | None = None) -> tuple[TmFrame, int]:
    has_ocf = draw(st.booleans()) if with_ocf is None else with_ocf
    frame_length = draw(st.integers(13 if has_ocf else 9, 2048))
    length = data_field_length(frame_length, has_ocf)
    frame = TmFrame(
        spacecraft_id=draw(st.integers(0, 0x3FF)),
        virtual_channel_id=draw(st.integers(0, 7)),
        master_channel_frame_count=draw(st.integers(0, 255)),
        virtual_channel_frame_count=draw(st.integers(0, 255)),
        first_header_pointer=draw(
            st.one_of(st.integers(0, length - 1), st.sampled_from([0x7FE, 0x7FF]))
        ),
        data=draw(st.binary(min_size=length, max_size=length)),
        ocf=draw(st.integers(0, 0xFFFF_FFFF)) if has_ocf else None,
    )
    return frame, frame_length


# --- public vectors -----------------------------------------------------------------------------


def test_v9_decodes_to_the_published_fields():
    assert TmFrame.decode(V9, frame_length=16, has_ocf=True, spacecraft_id=3) == V9_FRAME


def test_v9_encodes_byte_for_byte():
    assert V9_FRAME.encode(16) == V9


def test_v9_parses_with_the_construct_declaration():
    parsed = tm_transfer_frame(16).parse(V9)
    header = parsed.protected.value.transfer_frame_primary_header
    assert header.spacecraft_id == 3
    assert header.virtual_channel_id == 7
    assert header.transfer_frame_data_field_status.first_header_pointer == 0x7FE
    assert parsed.protected.value.operational_control_field == 0x0100_0000
    assert parsed.frame_error_control_field == 0x814A


def test_v9_with_the_published_bad_fecf_is_a_checksum_error():
    with pytest.raises(ChecksumError) as caught:
        TmFrame.decode(V9_BAD_FECF, frame_length=16, has_ocf=True)
    assert caught.value.offset == 14


def test_v9_only_idle_data_frame_is_counted_and_yields_nothing():
    receiver = TmReceiver(3, frame_length=16)
    result = receiver.receive(V9)
    assert result.packets == ()
    assert result.ocf == 0x0100_0000
    assert receiver.idle_frames == 1


# --- fast path against the construct declaration ------------------------------------------------


@FAST
@given(frames(with_ocf=True))
def test_encode_equals_the_construct_build(case):
    frame, frame_length = case
    built = tm_transfer_frame(frame_length).build(
        {
            "protected": {
                "value": {
                    "transfer_frame_primary_header": {
                        "transfer_frame_version_number": 0,
                        "spacecraft_id": frame.spacecraft_id,
                        "virtual_channel_id": frame.virtual_channel_id,
                        "operational_control_field_flag": True,
                        "master_channel_frame_count": frame.master_channel_frame_count,
                        "virtual_channel_frame_count": frame.virtual_channel_frame_count,
                        "transfer_frame_data_field_status": {
                            "transfer_frame_secondary_header_flag": False,
                            "synchronization_flag": False,
                            "packet_order_flag": False,
                            "segment_length_identifier": 0b11,
                            "first_header_pointer": frame.first_header_pointer,
                        },
                    },
                    "transfer_frame_data_field": frame.data,
                    "operational_control_field": frame.ocf,
                }
            }
        }
    )
    assert built == frame.encode(frame_length)


@FAST
@given(frames())
def test_encoded_header_parses_with_the_construct_declaration(case):
    frame, frame_length = case
    header = PRIMARY_HEADER.parse(frame.encode(frame_length)[:6])
    status = header.transfer_frame_data_field_status
    assert header.transfer_frame_version_number == 0
    assert header.spacecraft_id == frame.spacecraft_id
    assert header.virtual_channel_id == frame.virtual_channel_id
    assert header.operational_control_field_flag == (frame.ocf is not None)
    assert header.master_channel_frame_count == frame.master_channel_frame_count
    assert header.virtual_channel_frame_count == frame.virtual_channel_frame_count
    assert status.first_header_pointer == frame.first_header_pointer
    assert status.segment_length_identifier == 0b11
    assert not (
        status.transfer_frame_secondary_header_flag
        or status.synchronization_flag
        or status.packet_order_flag
    )


@settings(deadline=None, max_examples=300)
@given(
    header=st.binary(min_size=6, max_size=6),
    frame_length=st.integers(13, 64),
    data=st.data(),
)
def test_fast_paths_accept_exactly_the_headers_the_icd_allows(header, frame_length, data):
    body = header + data.draw(st.binary(min_size=frame_length - 8, max_size=frame_length - 8))
    frame = _with_fecf(body)
    parsed = tm_transfer_frame(frame_length).parse(frame).protected.value
    fields = parsed.transfer_frame_primary_header
    status = fields.transfer_frame_data_field_status
    fhp = status.first_header_pointer
    length = data_field_length(frame_length, True)
    icd_allows = (
        fields.transfer_frame_version_number == 0
        and fields.operational_control_field_flag
        and not status.transfer_frame_secondary_header_flag
        and not status.synchronization_flag
        and not status.packet_order_flag
        and status.segment_length_identifier == 0b11
        and (fhp < length or fhp >= 0x7FE)
    )
    spacecraft_id = data.draw(
        st.sampled_from([None, fields.spacecraft_id, fields.spacecraft_id ^ 1])
    )
    receiver = TmReceiver(spacecraft_id, frame_length=frame_length)
    if not icd_allows:
        with pytest.raises(FieldError):
            TmFrame.decode(frame, frame_length=frame_length, spacecraft_id=spacecraft_id)
        with pytest.raises(FieldError):
            receiver.receive(frame)
    elif spacecraft_id not in (None, fields.spacecraft_id):
        with pytest.raises(AddressError):
            TmFrame.decode(frame, frame_length=frame_length, spacecraft_id=spacecraft_id)
        with pytest.raises(AddressError):
            receiver.receive(frame)
    else:
        decoded = TmFrame.decode(frame, frame_length=frame_length, spacecraft_id=spacecraft_id)
        assert decoded == TmFrame(
            fields.spacecraft_id,
            fields.virtual_channel_id,
            fields.master_channel_frame_count,
            fields.virtual_channel_frame_count,
            fhp,
            parsed.transfer_frame_data_field,
            parsed.operational_control_field,
        )
        result = receiver.receive(frame)
        assert result.virtual_channel_id == fields.virtual_channel_id
        assert result.virtual_channel_frame_count == fields.virtual_channel_frame_count
        assert result.ocf == parsed.operational_control_field


# --- round trips and interoperability -----------------------------------------------------------


@FAST
@given(frames())
def test_encode_then_decode_round_trips_over_the_whole_field_ranges(case):
    frame, frame_length = case
    encoded = frame.encode(frame_length)
    assert len(encoded) == frame_length
    has_ocf = frame.ocf is not None
    assert TmFrame.decode(encoded, frame_length=frame_length, has_ocf=has_ocf) == frame


@FAST
@given(frames())
def test_spacepackets_parses_our_frames(case):
    frame, frame_length = case
    # spacepackets refuses a frame of the 2048 octets that 132.0-B-3 allows (`length < 2048`).
    assume(frame_length < 2048)
    theirs = TmTransferFrame.unpack(frame.encode(frame_length), frame_length, True)
    header = theirs.primary_header
    assert header.master_channel_id == MasterChannelId(0, frame.spacecraft_id)
    assert header.vc_id == frame.virtual_channel_id
    assert header.ocf_flag == (frame.ocf is not None)
    assert header.master_ch_frame_count == frame.master_channel_frame_count
    assert header.vc_frame_count == frame.virtual_channel_frame_count
    assert header.frame_datafield_status == TransferFrameDataFieldStatus(
        False, False, False, 0b11, frame.first_header_pointer
    )
    assert theirs.data_field == frame.data
    expected_ocf = None if frame.ocf is None else frame.ocf.to_bytes(4, "big")
    assert theirs.op_ctrl_field == expected_ocf


@FAST
@given(frames())
def test_we_parse_frames_that_spacepackets_packs(case):
    frame, frame_length = case
    # spacepackets refuses a frame of the 2048 octets that 132.0-B-3 allows (`length < 2048`).
    assume(frame_length < 2048)
    has_ocf = frame.ocf is not None
    header = TmFramePrimaryHeader(
        MasterChannelId(0, frame.spacecraft_id),
        frame.virtual_channel_id,
        has_ocf,
        frame.master_channel_frame_count,
        frame.virtual_channel_frame_count,
        TransferFrameDataFieldStatus(False, False, False, 0b11, frame.first_header_pointer),
    )
    ocf = frame.ocf.to_bytes(4, "big") if has_ocf else b""
    fecf = fastcrc.crc16.ibm_3740(header.pack() + frame.data + ocf).to_bytes(2, "big")
    packed = TmTransferFrame(
        frame_length, header, None, frame.data, ocf if has_ocf else None, fecf
    ).pack()
    assert TmFrame.decode(packed, frame_length=frame_length, has_ocf=has_ocf) == frame


# --- negative properties of the codec -----------------------------------------------------------


@FAST
@given(frames(), st.data())
def test_a_truncated_frame_is_a_truncated_error(case, data):
    frame, frame_length = case
    encoded = frame.encode(frame_length)
    cut = data.draw(st.integers(0, frame_length - 1))
    with pytest.raises(TruncatedError) as caught:
        TmFrame.decode(encoded[:cut], frame_length=frame_length, has_ocf=frame.ocf is not None)
    assert caught.value.offset == cut


@FAST
@given(frames(), st.binary(min_size=1, max_size=20))
def test_a_frame_longer_than_the_frame_length_is_a_length_error(case, extra):
    frame, frame_length = case
    with pytest.raises(LengthError) as caught:
        TmFrame.decode(
            frame.encode(frame_length) + extra,
            frame_length=frame_length,
            has_ocf=frame.ocf is not None,
        )
    assert caught.value.offset == frame_length


@FAST
@given(frames(), st.data())
def test_any_flipped_bit_is_a_checksum_error(case, data):
    frame, frame_length = case
    corrupted = bytearray(frame.encode(frame_length))
    bit = data.draw(st.integers(0, 8 * frame_length - 1))
    corrupted[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(ChecksumError) as caught:
        TmFrame.decode(corrupted, frame_length=frame_length, has_ocf=frame.ocf is not None)
    assert caught.value.offset == frame_length - 2


@FAST
@given(frames(with_ocf=True))
def test_a_frame_for_another_spacecraft_is_an_address_error(case):
    frame, frame_length = case
    other = (frame.spacecraft_id + 1) % 1024
    with pytest.raises(AddressError):
        TmFrame.decode(frame.encode(frame_length), frame_length=frame_length, spacecraft_id=other)


@pytest.mark.parametrize(
    ("octet", "mask", "offset"),
    [
        (0, 0x40, 0),  # transfer frame version number 1
        (1, 0x01, 1),  # OCF flag cleared while the ICD has one on every frame
        (4, 0x80, 4),  # secondary header flag
        (4, 0x40, 4),  # synchronization flag
        (4, 0x20, 4),  # packet order flag
        (4, 0x08, 4),  # segment length identifier 0b10
    ],
)
def test_each_header_field_the_icd_forbids_is_a_field_error(octet, mask, offset):
    body = bytearray(TmFrame(icd.SPACECRAFT_ID, 0, 0, 0, 0, bytes(1103), 0).encode()[:-2])
    body[octet] ^= mask
    with pytest.raises(FieldError) as caught:
        TmFrame.decode(_with_fecf(bytes(body)))
    assert caught.value.offset == offset
    with pytest.raises(FieldError):
        TmReceiver().receive(_with_fecf(bytes(body)))


@pytest.mark.parametrize("fhp", [1103, 1500, 0x7FD])
def test_a_first_header_pointer_beyond_the_data_field_is_a_field_error(fhp):
    body = bytearray(TmFrame(icd.SPACECRAFT_ID, 0, 0, 0, 0, bytes(1103), 0).encode()[:-2])
    body[4:6] = (0x1800 | fhp).to_bytes(2, "big")
    with pytest.raises(FieldError) as caught:
        TmFrame.decode(_with_fecf(bytes(body)))
    assert caught.value.offset == 4


@pytest.mark.parametrize(
    "changes",
    [
        {"spacecraft_id": 1024},
        {"spacecraft_id": -1},
        {"virtual_channel_id": 8},
        {"master_channel_frame_count": 256},
        {"virtual_channel_frame_count": -1},
        {"first_header_pointer": 1103},
        {"first_header_pointer": 0x800},
        {"ocf": 1 << 32},
    ],
)
def test_encoding_a_value_that_does_not_fit_is_a_field_error(changes):
    fields = {
        "spacecraft_id": 1,
        "virtual_channel_id": 0,
        "master_channel_frame_count": 0,
        "virtual_channel_frame_count": 0,
        "first_header_pointer": 0,
        "data": bytes(1103),
        "ocf": 0,
    }
    with pytest.raises(FieldError):
        TmFrame(**{**fields, **changes}).encode()


@pytest.mark.parametrize(("frame_length", "data_octets"), [(1115, 1102), (1115, 1104), (12, 0)])
def test_encoding_a_data_field_or_frame_length_that_disagrees_is_a_length_error(
    frame_length, data_octets
):
    with pytest.raises(LengthError):
        TmFrame(1, 0, 0, 0, 0, bytes(data_octets), 0).encode(frame_length)


@settings(deadline=None, max_examples=400)
@given(st.binary(max_size=80), st.integers(13, 80), st.booleans())
def test_arbitrary_bytes_decode_or_raise_a_protocol_error(buffer, frame_length, has_ocf):
    receiver = TmReceiver(None, frame_length=frame_length, has_ocf=has_ocf)
    for candidate in (buffer, _with_fecf(buffer)):
        with contextlib.suppress(ProtocolError):
            TmFrame.decode(candidate, frame_length=frame_length, has_ocf=has_ocf)
        with contextlib.suppress(ProtocolError):
            receiver.receive(candidate)


@settings(deadline=None, max_examples=150)
@given(st.lists(st.binary(min_size=3, max_size=3), min_size=1, max_size=30), st.data())
def test_arbitrary_valid_frames_never_break_the_receiver(headers, data):
    frame_length = data.draw(st.sampled_from([13, 17, 40, 200]))
    receiver = TmReceiver(0x1A5, frame_length=frame_length, max_packet_length=300)
    length = data_field_length(frame_length, True)
    for variable in headers:
        # A header the ICD accepts, with arbitrary counts and FHP, and arbitrary contents.
        fhp = data.draw(st.one_of(st.integers(0, length - 1), st.sampled_from([0x7FE, 0x7FF])))
        header = bytes([0x1A, 0x51 | (variable[0] & 0x0E), variable[1], variable[2]])
        header += (0x1800 | fhp).to_bytes(2, "big")
        content = data.draw(st.binary(min_size=length + 4, max_size=length + 4))
        result = receiver.receive(_with_fecf(header + content))
        for packet in result.packets:
            assert 7 <= len(packet) <= 300
    assert receiver.frames_received == len(headers)


# --- multiplexing and extraction ----------------------------------------------------------------


def _vc_streams(frames_out: list[bytes], frame_length: int) -> dict[int, list[bytes]]:
    """Each VC's data fields in order, read off the frames (an oracle, not the receiver)."""
    streams: dict[int, list[bytes]] = {}
    end = 6 + data_field_length(frame_length, True)
    for frame in frames_out:
        vcid = (frame[1] >> 1) & 7
        if vcid != 7:
            streams.setdefault(vcid, []).append(frame[6:end])
    return streams


def _packet_spans(stream: bytes) -> list[tuple[int, int]]:
    """Start and end of each packet in a VC's concatenated data fields, by their length fields."""
    spans, position = [], 0
    while position < len(stream):
        total = 7 + int.from_bytes(stream[position + 4 : position + 6], "big")
        spans.append((position, position + total))
        position += total
    assert position == len(stream), "a VC's data must end on a packet boundary after a flush"
    return spans


def _is_idle(packet: bytes) -> bool:
    return ((packet[0] & 7) << 8 | packet[1]) == 0x7FF


actions = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.integers(0, 2), st.integers(1, 3000)),
        st.tuples(st.just("flush"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("release"), st.just(0), st.just(0)),
    ),
    max_size=14,
)


# At least one packet, so that there is a frame to lose before the closing idle frame.
busy_actions = actions.map(lambda script: [("send", 0, 100), *script])


def _run(script, frame_length: int, clcw: int | None = 0x0000_0001):
    """Drive a master channel through a script; return the frames and the packets sent per VC."""
    master = TmMasterChannel(0x1A5, frame_length=frame_length, ocf=lambda: clcw)
    sent: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    frames_out: list[bytes] = []
    for number, (action, vcid, size) in enumerate(script):
        channel = master.virtual_channel(vcid)
        if action == "send":
            packet = _packet(0x100 + vcid, number, size)
            sent[vcid].append(packet)
            channel.send(packet)
        elif action == "flush":
            channel.flush()
        else:
            frames_out.append(master.next_frame())
    for vcid in sent:
        master.virtual_channel(vcid).flush()
    frames_out += master.drain()
    frames_out.append(master.next_frame())  # an idle frame closes the stream
    return frames_out, sent


@settings(deadline=None, max_examples=40)
@given(actions, st.integers(20, 1115))
def test_random_packets_through_mux_and_demux_reassemble_exactly(script, frame_length):
    frames_out, sent = _run(script, frame_length)
    receiver = TmReceiver(0x1A5, frame_length=frame_length)
    received: dict[int, list[bytes]] = {0: [], 1: [], 2: [], 7: []}
    for frame in frames_out:
        result = receiver.receive(frame)
        assert result.lost_frames == result.lost_master_frames == 0
        assert result.ocf == 1
        received[result.virtual_channel_id] += result.packets
    assert received == {**sent, 7: []}
    assert receiver.sync_errors == receiver.discarded_packets == receiver.discarded_octets == 0


@settings(deadline=None, max_examples=40)
@given(actions, st.integers(20, 400))
def test_frames_carry_the_packets_contiguously_with_the_right_first_header_pointer(
    script, frame_length
):
    frames_out, sent = _run(script, frame_length)
    length = data_field_length(frame_length, True)
    for vcid, fields in _vc_streams(frames_out, frame_length).items():
        stream = b"".join(fields)
        spans = _packet_spans(stream)
        packets = [stream[a:b] for a, b in spans]
        assert [p for p in packets if not _is_idle(p)] == sent[vcid]
        starts = {a for a, _ in spans}
        for index, frame in enumerate(f for f in frames_out if (f[1] >> 1) & 7 == vcid):
            first = min(
                (a for a in starts if index * length <= a < (index + 1) * length), default=None
            )
            expected = 0x7FF if first is None else first - index * length
            assert int.from_bytes(frame[4:6], "big") & 0x7FF == expected
            assert frame[3] == index % 256  # VC frame count


@pytest.mark.parametrize("remaining", [1, 2, 3, 4, 5, 6, 7])
def test_flush_with_fewer_than_seven_octets_left_runs_the_idle_packet_into_the_next_frame(
    remaining,
):
    frame_length = 60
    length = data_field_length(frame_length, True)
    master = TmMasterChannel(0x1A5, frame_length=frame_length)
    channel = master.virtual_channel(0)
    first = _packet(0x10, 1, length - remaining - 6)
    channel.send(first)
    channel.flush()
    second = _packet(0x10, 2, 30)
    channel.send(second)
    channel.flush()
    frames_out = master.drain()
    expected_frames = 3 if remaining < 7 else 2
    assert len(frames_out) == expected_frames
    if remaining < 7:
        # The idle packet fills the rest of frame 1 and all of frame 2, where no packet starts.
        assert int.from_bytes(frames_out[1][4:6], "big") & 0x7FF == 0x7FF
    assert int.from_bytes(frames_out[-1][4:6], "big") & 0x7FF == 0
    receiver = TmReceiver(0x1A5, frame_length=frame_length)
    received = [p for frame in frames_out for p in receiver.receive(frame).packets]
    assert received == [first, second]
    assert receiver.idle_packets == 2


def test_nothing_to_send_gives_only_idle_data_frames_on_vc_7():
    master = TmMasterChannel(0x1A5, frame_length=40, ocf=lambda: None)
    master.virtual_channel(0).send(_packet(1, 0, 5))  # partial frame: not released by itself
    frames_out = [master.next_frame() for _ in range(3)]
    for count, frame in enumerate(frames_out):
        decoded = TmFrame.decode(frame, frame_length=40, spacecraft_id=0x1A5)
        assert decoded.virtual_channel_id == icd.TmVirtualChannel.IDLE
        assert decoded.first_header_pointer == FirstHeaderPointer.ONLY_IDLE_DATA
        assert decoded.virtual_channel_frame_count == decoded.master_channel_frame_count == count
        assert decoded.ocf == NO_CLCW
    assert master.idle_frames == 3
    receiver = TmReceiver(0x1A5, frame_length=40)
    assert all(receiver.receive(frame).packets == () for frame in frames_out)
    assert receiver.idle_frames == 3


def test_frame_counters_wrap_modulo_256_without_a_reported_gap():
    master = TmMasterChannel(0x1A5, frame_length=20)
    channel = master.virtual_channel(1)
    sent = [_packet(0x20, n, 10) for n in range(400)]
    receiver = TmReceiver(0x1A5, frame_length=20)
    received = []
    for packet in sent:
        channel.send(packet)
        for frame in master.drain():
            received += receiver.receive(frame).packets
    channel.flush()
    for frame in master.drain():
        received += receiver.receive(frame).packets
    assert master.frame_count == channel.frame_count == receiver.frames_received % 256
    assert receiver.frames_received > 256
    assert received == sent
    assert receiver.master_lost_frames == sum(receiver.lost_frames) == 0


def test_lower_virtual_channels_are_released_first():
    master = TmMasterChannel(0x1A5, frame_length=20)
    master.virtual_channel(2).send(_packet(1, 0, 10))  # 16 octets: two 8-octet data fields
    master.virtual_channel(0).send(_packet(1, 1, 10))
    assert [(f[1] >> 1) & 7 for f in master.drain()] == [0, 0, 2, 2]


def test_the_ocf_source_is_read_for_every_frame_released():
    words = iter(range(100, 200))
    master = TmMasterChannel(0x1A5, frame_length=20, ocf=lambda: next(words))
    receiver = TmReceiver(0x1A5, frame_length=20)
    assert [receiver.receive(master.next_frame()).ocf for _ in range(3)] == [100, 101, 102]


def test_an_ocf_word_that_does_not_fit_32_bits_is_a_field_error_and_loses_no_frame():
    words = iter([1 << 32, 7])
    master = TmMasterChannel(0x1A5, frame_length=20, ocf=lambda: next(words))
    packet = _packet(1, 0, 2)  # 8 octets: exactly one data field
    master.virtual_channel(0).send(packet)
    with pytest.raises(FieldError):
        master.next_frame()
    assert master.pending_frames == 1
    result = TmReceiver(0x1A5, frame_length=20).receive(master.next_frame())
    assert (result.master_channel_frame_count, result.ocf, result.packets) == (0, 7, (packet,))


def test_frames_without_ocf_carry_none_when_the_master_channel_is_configured_so():
    master = TmMasterChannel(0x1A5, frame_length=20, has_ocf=False)
    master.virtual_channel(0).send(_packet(1, 0, 7))
    frame = master.drain()[0]
    result = TmReceiver(0x1A5, frame_length=20, has_ocf=False).receive(frame)
    assert result.ocf is None
    with pytest.raises(FieldError):
        TmReceiver(0x1A5, frame_length=20).receive(frame)


@pytest.mark.parametrize(
    ("packet", "error"),
    [
        (bytes.fromhex("0801C0000003AABB"), LengthError),  # says 10 octets, has 8
        (bytes.fromhex("0801C0000000AABB"), LengthError),  # says 7 octets, has 8
        (bytes.fromhex("0801C000"), TruncatedError),  # not even a header
        (bytes.fromhex("2801C0000000AA"), FieldError),  # packet version 1
    ],
)
def test_sending_a_packet_whose_header_disagrees_with_it_is_rejected(packet, error):
    channel = TmMasterChannel(0x1A5).virtual_channel(0)
    with pytest.raises(error):
        channel.send(packet)
    assert channel.partial_octets == 0


@pytest.mark.parametrize("vcid", [7, 8, -1])
def test_packets_on_the_idle_or_an_unknown_virtual_channel_are_a_field_error(vcid):
    with pytest.raises(FieldError):
        TmMasterChannel(0x1A5).virtual_channel(vcid)


@pytest.mark.parametrize("frame_length", [12, 2049])
def test_a_frame_length_outside_the_standard_is_a_length_error(frame_length):
    with pytest.raises(LengthError):
        TmMasterChannel(0x1A5, frame_length=frame_length)
    with pytest.raises(LengthError):
        TmReceiver(0x1A5, frame_length=frame_length)


# --- gaps, corruption, resynchronisation --------------------------------------------------------


def _expected_after_loss(frames_out, frame_length, lost_index):
    """Packets per VC that survive losing one frame: those that do not touch it."""
    length = data_field_length(frame_length, True)
    lost_vc = (frames_out[lost_index][1] >> 1) & 7
    lost_position = sum(1 for f in frames_out[:lost_index] if (f[1] >> 1) & 7 == lost_vc)
    expected = {}
    for vcid, fields in _vc_streams(frames_out, frame_length).items():
        stream = b"".join(fields)
        expected[vcid] = [
            stream[a:b]
            for a, b in _packet_spans(stream)
            if not _is_idle(stream[a:b])
            and not (vcid == lost_vc and a // length <= lost_position <= (b - 1) // length)
        ]
    # A gap shows only between two frames the receiver saw: one before the loss and one after it.
    before = any((f[1] >> 1) & 7 == lost_vc for f in frames_out[:lost_index])
    after = any((f[1] >> 1) & 7 == lost_vc for f in frames_out[lost_index + 1 :])
    return expected, lost_vc, before and after


@settings(deadline=None, max_examples=40)
@given(busy_actions, st.integers(20, 300), st.data())
def test_dropping_any_frame_loses_only_the_packets_that_touched_it(script, frame_length, data):
    frames_out, _ = _run(script, frame_length)
    lost_index = data.draw(st.integers(0, len(frames_out) - 2))  # the last frame closes the run
    expected, lost_vc, vc_gap_visible = _expected_after_loss(frames_out, frame_length, lost_index)
    receiver = TmReceiver(0x1A5, frame_length=frame_length)
    received: dict[int, list[bytes]] = {vcid: [] for vcid in expected}
    for index, frame in enumerate(frames_out):
        if index != lost_index:
            result = receiver.receive(frame)
            received.setdefault(result.virtual_channel_id, []).extend(result.packets)
    assert {k: v for k, v in received.items() if k != 7} == expected
    assert receiver.master_lost_frames == (1 if lost_index > 0 else 0)
    assert receiver.lost_frames[lost_vc] == (1 if vc_gap_visible else 0)
    assert receiver.sync_errors == 0


@settings(deadline=None, max_examples=25)
@given(busy_actions, st.integers(20, 300), st.data())
def test_a_corrupt_frame_is_rejected_and_costs_no_more_than_losing_it(script, frame_length, data):
    frames_out, _ = _run(script, frame_length)
    bad_index = data.draw(st.integers(0, len(frames_out) - 2))
    expected, _, _ = _expected_after_loss(frames_out, frame_length, bad_index)
    corrupted = bytearray(frames_out[bad_index])
    corrupted[data.draw(st.integers(0, frame_length - 1))] ^= 0x10
    receiver = TmReceiver(0x1A5, frame_length=frame_length)
    received: dict[int, list[bytes]] = {vcid: [] for vcid in expected}
    for index, frame in enumerate(frames_out):
        if index == bad_index:
            with pytest.raises(ChecksumError):
                receiver.receive(bytes(corrupted))
        else:
            result = receiver.receive(frame)
            received.setdefault(result.virtual_channel_id, []).extend(result.packets)
    assert {k: v for k, v in received.items() if k != 7} == expected
    assert receiver.frames_rejected == 1


def test_a_frame_for_another_spacecraft_is_rejected_without_a_gap():
    ours = TmMasterChannel(0x1A5, frame_length=30)
    theirs = TmMasterChannel(0x1A6, frame_length=30)
    receiver = TmReceiver(0x1A5, frame_length=30)
    receiver.receive(ours.next_frame())
    with pytest.raises(AddressError):
        receiver.receive(theirs.next_frame())
    result = receiver.receive(ours.next_frame())
    assert result.lost_master_frames == result.lost_frames == 0
    assert receiver.frames_rejected == 1


def test_after_a_gap_the_partial_packet_is_discarded_and_extraction_resumes_at_the_fhp():
    master = TmMasterChannel(0x1A5, frame_length=40)  # 28-octet data fields
    channel = master.virtual_channel(0)
    packets = [_packet(0x30, n, 40) for n in range(4)]  # 46 octets each: every one spans frames
    for packet in packets:
        channel.send(packet)
    channel.flush()
    frames_out = master.drain()
    receiver = TmReceiver(0x1A5, frame_length=40)
    received = [p for f in frames_out[:1] + frames_out[2:] for p in receiver.receive(f).packets]
    # Frame 1 carried the end of packet 0 and the start of packet 1; packet 2 starts in frame 3.
    assert received == packets[2:]
    assert receiver.lost_frames[0] == 1
    assert receiver.discarded_packets == 1  # packet 0, in progress when the gap was found
    assert receiver.discarded_octets > 0


def test_a_first_header_pointer_that_disagrees_with_the_packet_in_progress_is_a_sync_error():
    master = TmMasterChannel(0x1A5, frame_length=40)
    channel = master.virtual_channel(0)
    packets = [_packet(0x30, n, 30) for n in range(3)]
    for packet in packets:
        channel.send(packet)
    channel.flush()
    frames_out = master.drain()
    fhp = int.from_bytes(frames_out[1][4:6], "big") & 0x7FF
    forged = bytearray(frames_out[1][:-2])
    forged[4:6] = (0x1800 | (fhp + 1)).to_bytes(2, "big")
    receiver = TmReceiver(0x1A5, frame_length=40)
    received = list(receiver.receive(frames_out[0]).packets)
    received += receiver.receive(_with_fecf(bytes(forged))).packets
    for frame in frames_out[2:]:
        received += receiver.receive(frame).packets
    # Packet 0 is dropped at the disagreement; resynchronising at the forged FHP lands inside
    # packet 1's header (a second error); the true FHP of the next frame recovers packet 2.
    assert received == packets[2:]
    assert receiver.sync_errors == 2
    assert receiver.discarded_packets == 1


def test_a_bad_packet_version_inside_a_valid_frame_is_a_sync_error_not_an_exception():
    data = bytes.fromhex("2801C0000000AA") + bytes(21)  # packet version 1 at the FHP
    frame = TmFrame(0x1A5, 0, 0, 0, 0, data, 0).encode(40)
    receiver = TmReceiver(0x1A5, frame_length=40)
    assert receiver.receive(frame).packets == ()
    assert receiver.sync_errors == 1
    assert receiver.discarded_octets == 28


@settings(deadline=None, max_examples=30)
@given(st.integers(13, 18), st.lists(st.integers(1, 40), min_size=1, max_size=5))
def test_data_fields_shorter_than_a_packet_header_still_reassemble(frame_length, sizes):
    master = TmMasterChannel(0x1A5, frame_length=frame_length)
    channel = master.virtual_channel(0)
    sent = [_packet(0x40, n, size) for n, size in enumerate(sizes)]
    for packet in sent:
        channel.send(packet)
    channel.flush()
    receiver = TmReceiver(0x1A5, frame_length=frame_length)
    received = [p for frame in master.drain() for p in receiver.receive(frame).packets]
    assert received == sent
    assert receiver.sync_errors == 0
