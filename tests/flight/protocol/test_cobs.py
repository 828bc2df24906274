"""Tests for flight.protocol.cobs: COBS encoding, decoding and the resynchronising deframer."""

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight.protocol.cobs import (
    CobsDeframer,
    DiscardReason,
    decode,
    encode,
    frame,
    max_encoded_length,
)
from flight.protocol.errors import FieldError, ProtocolError, TruncatedError

RANGE_01_FE = bytes(range(0x01, 0xFF))  # 254 non-zero octets
RANGE_01_FF = bytes(range(0x01, 0x100))
RANGE_02_FF = bytes(range(0x02, 0x100))
RANGE_03_FF = bytes(range(0x03, 0x100))

# (data, encoding without delimiter)
VECTORS = [
    # Wikipedia "Consistent Overhead Byte Stuffing", table of encoding examples 1-11; the same
    # table is reproduced in charlesnicholson/nanocobs tests/test_cobs_encode.cc ("Wikipedia
    # examples") and other public test suites, checked against those copies. Rows 7-11 are the
    # 254-octet block boundary cases.
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (RANGE_01_FE, b"\xff" + RANGE_01_FE),
    (b"\x00" + RANGE_01_FE, b"\x01\xff" + RANGE_01_FE),
    (RANGE_01_FF, b"\xff" + RANGE_01_FE + b"\x02\xff"),
    (RANGE_02_FF + b"\x00", b"\xff" + RANGE_02_FF + b"\x01\x01"),
    (RANGE_03_FF + b"\x00\x01", b"\xfe" + RANGE_03_FF + b"\x02\x01"),
    # V20 (docs/test-vectors.md): the empty packet.
    (b"", b"\x01"),
    # Cheshire & Baker, "Consistent Overhead Byte Stuffing", IEEE/ACM ToN 7(2) 1999, figure 3 (an IP
    # header), as reproduced in charlesnicholson/nanocobs tests/test_paper_figures.cc.
    (
        bytes.fromhex("4500002C4C79000040064F37"),
        bytes.fromhex("024501042C4C79010540064F37"),
    ),
]


def reference_encode(data: bytes) -> bytes:
    """Octet-at-a-time COBS encoder, after the StuffData routine on the Wikipedia page."""
    out = bytearray([0])
    code_index = 0
    code = 1
    position = 0
    while position < len(data):
        if code != 0xFF:
            octet = data[position]
            position += 1
            if octet != 0:
                out.append(octet)
                code += 1
                continue
        # A zero, or a full block: close this block and open the next.
        out[code_index] = code
        code_index = len(out)
        out.append(0)
        code = 1
    out[code_index] = code
    return bytes(out)


def reference_decode(encoded: bytes) -> bytes:
    """Octet-at-a-time COBS decoder; raises ValueError where cobs.decode raises a ProtocolError."""
    if not encoded:
        raise ValueError("empty")
    out = bytearray()
    position = 0
    while position < len(encoded):
        code = encoded[position]
        if code == 0:
            raise ValueError("zero")
        position += 1
        for _ in range(code - 1):
            if position >= len(encoded) or encoded[position] == 0:
                raise ValueError("overrun or zero")
            out.append(encoded[position])
            position += 1
        if code != 0xFF and position < len(encoded):
            out.append(0)
    return bytes(out)


class ReferenceDeframer:
    """Octet-at-a-time model of CobsDeframer's contract, to check the chunked fast path against."""

    def __init__(self, max_frame_length: int) -> None:
        self.max_frame = max_frame_length
        self.max_encoded = max_encoded_length(max_frame_length)
        self.pending = bytearray()
        self.skipping = False
        self.discarded_frames = 0
        self.discarded_octets = 0

    def feed(self, data: bytes) -> list[bytes]:
        frames = []
        for octet in data:
            if octet != 0:
                if self.skipping:
                    self.discarded_octets += 1
                    continue
                self.pending.append(octet)
                continue
            if self.skipping:
                self.skipping = False
            elif self.pending:
                encoded = bytes(self.pending)
                self.pending.clear()
                try:
                    decoded = (
                        reference_decode(encoded) if len(encoded) <= self.max_encoded else None
                    )
                except ValueError:
                    decoded = None
                if decoded is None or len(decoded) > self.max_frame:
                    self.discarded_frames += 1
                    self.discarded_octets += len(encoded)
                else:
                    frames.append(decoded)
        if len(self.pending) > self.max_encoded:
            # As in the fast path: a frame in progress too long to ever fit is dropped at once.
            self.discarded_frames += 1
            self.discarded_octets += len(self.pending)
            self.pending.clear()
            self.skipping = True
        return frames


# Payloads rich in zeros and in long zero-free runs, where the 254-octet boundaries live.
payloads = st.one_of(
    st.binary(max_size=1100),
    st.lists(
        st.sampled_from([b"\x00", b"\x01", b"\xff", b"\x01" * 253, b"\x02" * 254]), max_size=8
    ).map(b"".join),
)


@pytest.mark.parametrize(("data", "expected"), VECTORS)
def test_encode_matches_published_vectors(data: bytes, expected: bytes) -> None:
    assert encode(data) == expected
    assert frame(data) == expected + b"\x00"


@pytest.mark.parametrize(("data", "encoded"), VECTORS)
def test_decode_inverts_published_vectors(data: bytes, encoded: bytes) -> None:
    assert decode(encoded) == data


def test_decode_accepts_the_paper_codes_trailing_01_after_a_full_block() -> None:
    # The paper's StuffData finishes with a 0x01 code after a 254-octet block that ends the data.
    assert decode(b"\xff" + RANGE_01_FE + b"\x01") == RANGE_01_FE


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_encode_matches_octet_at_a_time_reference(data: bytes) -> None:
    assert encode(data) == reference_encode(data)


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_round_trip_restores_data_and_encoding_has_no_zero(data: bytes) -> None:
    encoded = encode(data)
    assert 0 not in encoded
    assert len(encoded) <= max_encoded_length(len(data))
    assert decode(encoded) == data


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=600), payloads.map(encode)))
def test_decode_agrees_with_reference_on_arbitrary_octets(encoded: bytes) -> None:
    try:
        expected = reference_decode(encoded)
    except ValueError:
        with pytest.raises(ProtocolError):
            decode(encoded)
    else:
        assert decode(encoded) == expected


def test_decode_rejects_a_zero_octet_with_its_offset() -> None:
    with pytest.raises(FieldError) as error:
        decode(b"\x03\x11\x00\x02\x33")
    assert error.value.offset == 2


def test_decode_rejects_a_code_that_overruns_with_its_offset() -> None:
    with pytest.raises(FieldError) as error:
        decode(b"\x02\x11\x05\x22")
    assert error.value.offset == 2


def test_decode_rejects_empty_input() -> None:
    with pytest.raises(TruncatedError):
        decode(b"")


@settings(max_examples=200, deadline=None)
@given(payloads, st.data())
def test_truncated_encoding_is_rejected_or_decodes_to_other_data(
    data: bytes, draw: st.DataObject
) -> None:
    encoded = encode(data)
    cut = draw.draw(st.integers(min_value=1, max_value=len(encoded)))
    try:
        decoded = decode(encoded[:-cut])
    except ProtocolError:
        return
    assert decoded != data


@settings(max_examples=200, deadline=None)
@given(payloads, st.data())
def test_flipped_bit_is_rejected_or_decodes_to_other_data(data: bytes, draw: st.DataObject) -> None:
    encoded = bytearray(encode(data))
    bit = draw.draw(st.integers(min_value=0, max_value=8 * len(encoded) - 1))
    encoded[bit // 8] ^= 0x80 >> (bit % 8)
    try:
        decoded = decode(bytes(encoded))
    except ProtocolError:
        return
    assert decoded != data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=800))
def test_decode_of_arbitrary_octets_returns_or_raises_protocol_error(encoded: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(encoded)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads, max_size=6), st.data())
def test_deframer_returns_every_frame_whatever_the_chunking(
    frames: list[bytes], draw: st.DataObject
) -> None:
    stream = b"".join(frame(f) for f in frames)
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    deframer = CobsDeframer(2100)  # longer than any payload drawn
    out: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += deframer.feed(stream[start:cut])
        start = cut
    assert out == frames
    assert deframer.frames == len(frames)
    assert deframer.discarded_frames == 0
    assert deframer.pending_octets == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(payloads.map(frame), st.binary(max_size=300), st.just(b"\x01" * 700)),
        max_size=8,
    ),
    st.integers(min_value=1, max_value=500),
    st.data(),
)
def test_deframer_matches_octet_at_a_time_model_on_any_stream(
    pieces: list[bytes], max_frame: int, draw: st.DataObject
) -> None:
    stream = b"".join(pieces)
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    deframer = CobsDeframer(max_frame)
    model = ReferenceDeframer(max_frame)
    start = 0
    for cut in [*cuts, len(stream)]:
        chunk = stream[start:cut]
        assert deframer.feed(chunk) == model.feed(chunk)
        start = cut
    assert deframer.discarded_frames == model.discarded_frames
    assert deframer.discarded_octets == model.discarded_octets
    assert deframer.pending_octets <= deframer.max_encoded_length


def test_deframer_resynchronises_after_garbage() -> None:
    deframer = CobsDeframer(64)
    # Joined mid-frame: a tail whose first code overruns, then a clean frame.
    frames = deframer.feed(b"\x07\x41\x42" + b"\x00" + frame(b"\x11\x22\x00\x33"))
    assert frames == [b"\x11\x22\x00\x33"]
    assert deframer.discarded_frames == 1
    assert deframer.discarded_octets == 3
    assert deframer.last_discard_reason is DiscardReason.MALFORMED
    assert "0x07" in deframer.last_discard_message


def test_deframer_discards_a_frame_longer_than_the_maximum_and_keeps_the_next() -> None:
    deframer = CobsDeframer(16)
    frames = deframer.feed(frame(bytes(range(1, 18))) + frame(b"ok"))
    assert frames == [b"ok"]
    assert deframer.discarded_frames == 1
    assert deframer.last_discard_reason is DiscardReason.TOO_LONG


def test_deframer_bounds_memory_when_no_delimiter_arrives() -> None:
    deframer = CobsDeframer(16)
    for _ in range(100):
        assert deframer.feed(b"\x55" * 100) == []
        assert deframer.pending_octets <= deframer.max_encoded_length
    assert deframer.discarded_frames == 1
    assert deframer.discarded_octets == 100 * 100
    assert deframer.feed(b"\x00" + frame(b"after")) == [b"after"]
    assert deframer.last_discard_reason is DiscardReason.TOO_LONG


def test_deframer_treats_repeated_delimiters_as_idle_not_as_frames() -> None:
    deframer = CobsDeframer(16)
    assert deframer.feed(b"\x00\x00" + frame(b"a") + b"\x00") == [b"a"]
    assert deframer.discarded_frames == 0


def test_deframer_reset_counts_the_partial_frame_it_drops() -> None:
    deframer = CobsDeframer(16)
    deframer.feed(b"\x03\x41")
    deframer.reset()
    assert deframer.pending_octets == 0
    assert deframer.discarded_octets == 2
    assert deframer.last_discard_reason is DiscardReason.RESET
    # The rest of the dropped frame arrives as garbage: discarded, then the next frame is found.
    assert deframer.feed(b"\x42\x00" + frame(b"x")) == [b"x"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=6), st.integers(min_value=1, max_value=300))
def test_deframer_fuzz_never_raises(chunks: list[bytes], max_frame: int) -> None:
    deframer = CobsDeframer(max_frame)
    for chunk in chunks:
        for decoded in deframer.feed(chunk):
            assert len(decoded) <= max_frame


def test_deframer_refuses_a_non_positive_maximum() -> None:
    with pytest.raises(ValueError):
        CobsDeframer(0)
