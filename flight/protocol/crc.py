"""Checksums used on the wire: CRC-16/CCITT-FALSE (packets, frames) and CRC-32/ISO-HDLC (files)."""

import binascii
import zlib

from flight.protocol.errors import ChecksumError, TruncatedError


def crc16(data: bytes | bytearray | memoryview, value: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, not reflected, no final XOR (132.0-B 4.1.6).

    Pass a previous result as `value` to continue over more data.
    """
    return binascii.crc_hqx(data, value)


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32/ISO-HDLC as in zlib and IEEE 802.3 (CFDP checksum type 3)."""
    return zlib.crc32(data, value)


def append_crc16(data: bytes | bytearray) -> bytes:
    """`data` followed by its CRC-16 in network byte order."""
    return bytes(data) + crc16(data).to_bytes(2, "big")


def check_crc16(data: bytes | bytearray | memoryview, what: str) -> memoryview:
    """Verify the trailing CRC-16 of `data` and return the octets it protects.

    Over the whole buffer, a correct trailing CRC makes the CRC zero: one pass, no slicing.
    """
    if len(data) < 2:
        raise TruncatedError(f"{what}: {len(data)} octets, too short to carry a CRC-16")
    view = memoryview(data)
    if binascii.crc_hqx(view, 0xFFFF) != 0:
        expected = binascii.crc_hqx(view[:-2], 0xFFFF)
        received = int.from_bytes(view[-2:], "big")
        raise ChecksumError(
            f"{what}: CRC-16 is {received:#06x}, expected {expected:#06x}", offset=len(data) - 2
        )
    return view[:-2]
