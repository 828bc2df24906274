import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight.protocol.crc import append_crc16, check_crc16, crc16, crc32
from flight.protocol.errors import ChecksumError, TruncatedError

# V1: reveng CRC catalogue check values over ASCII "123456789".
# V2: gr-satellites python/qa_crc.py, over octets 00..0F.
# V3: dariol83/ccsds Crc16AlgorithmTest.java, CCSDS CRC-16 over 01 92 FE 00 11 82 5A = 3747.
# V19: spacepackets docs/examples.rst, CRC-32 of "Hello World!" as carried in a CFDP EOF PDU.


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"123456789", 0x29B1), (bytes(range(16)), 0x3B37), (bytes.fromhex("0192FE0011825A"), 3747)],
)
def test_crc16_matches_published_check_values(data, expected):
    assert crc16(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"123456789", 0xCBF43926), (bytes(range(16)), 0xCECEE288), (b"Hello World!", 0x1C291CA3)],
)
def test_crc32_matches_published_check_values(data, expected):
    assert crc32(data) == expected


def test_crc16_continues_over_split_data():
    assert crc16(b"56789", crc16(b"1234")) == crc16(b"123456789")


@given(st.binary(max_size=300))
def test_appended_crc16_checks_and_returns_the_protected_octets(data):
    assert bytes(check_crc16(append_crc16(data), "test")) == data


@given(st.binary(min_size=1, max_size=300), st.data())
def test_any_single_bit_flip_is_detected(data, draw):
    framed = bytearray(append_crc16(data))
    bit = draw.draw(st.integers(0, len(framed) * 8 - 1))
    framed[bit // 8] ^= 0x80 >> (bit % 8)
    with pytest.raises(ChecksumError) as error:
        check_crc16(framed, "frame")
    assert error.value.offset == len(framed) - 2


def test_check_crc16_refuses_buffers_too_short_to_hold_a_crc():
    with pytest.raises(TruncatedError):
        check_crc16(b"\x01", "frame")
