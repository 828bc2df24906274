"""CCSDS Space Packets (133.0-B-2): primary header, idle packets, resynchronising stream parser."""

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from construct import BitsInteger, BitStruct, Flag

from flight.protocol.errors import FieldError, LengthError, TruncatedError

PRIMARY_HEADER_LENGTH = 6
MAX_DATA_LENGTH = 65536  # the packet data length field holds length - 1 in 16 bits
MAX_PACKET_LENGTH = PRIMARY_HEADER_LENGTH + MAX_DATA_LENGTH
MAX_APID = 0x7FF
IDLE_APID = 0x7FF  # 133.0-B-2 4.1.3.3.4.4: APID of idle packets
MAX_SEQUENCE_COUNT = 0x3FFF


class PacketType(IntEnum):
    """133.0-B-2 4.1.3.3.2."""

    TM = 0
    TC = 1


class SequenceFlags(IntEnum):
    """133.0-B-2 4.1.3.4.2."""

    CONTINUATION = 0
    FIRST = 1
    LAST = 2
    UNSEGMENTED = 3


PRIMARY_HEADER = BitStruct(
    "packet_version_number" / BitsInteger(3),
    "packet_type" / BitsInteger(1),
    "secondary_header_flag" / Flag,
    "apid" / BitsInteger(11),
    "sequence_flags" / BitsInteger(2),
    "sequence_count" / BitsInteger(14),
    "packet_data_length" / BitsInteger(16),
)
"""The Packet Primary Header, 133.0-B-2 4.1.3 (figure 4-2).

Reference declaration; `SpacePacket` is the fast path."""

_HEADER = struct.Struct(">HHH")
# The members by wire value: a tuple index per packet is far cheaper than an IntEnum call.
_PACKET_TYPES = tuple(PacketType(value) for value in range(2))
_SEQUENCE_FLAGS = tuple(SequenceFlags(value) for value in range(4))


@dataclass(frozen=True, slots=True)
class SpacePacket:
    """One Space Packet. `data` is the whole Packet Data Field, secondary header included."""

    packet_type: PacketType
    apid: int
    sequence_count: int
    data: bytes
    secondary_header_flag: bool = False
    sequence_flags: SequenceFlags = SequenceFlags.UNSEGMENTED

    @property
    def is_idle(self) -> bool:
        return self.apid == IDLE_APID

    def encode(self) -> bytes:
        # The checks inline, not errors.check_field: this runs once per packet on the TM path.
        if self.packet_type not in (0, 1):
            raise FieldError(f"packet type {self.packet_type} is neither TM (0) nor TC (1)")
        if self.secondary_header_flag not in (0, 1):
            raise FieldError(f"secondary header flag {self.secondary_header_flag} is not 0 or 1")
        if not 0 <= self.sequence_flags <= 3:
            raise FieldError(f"sequence flags {self.sequence_flags} outside 0..3")
        if not 0 <= self.apid <= MAX_APID:
            raise FieldError(f"APID {self.apid} outside 0..{MAX_APID}")
        if not 0 <= self.sequence_count <= MAX_SEQUENCE_COUNT:
            raise FieldError(
                f"sequence count {self.sequence_count} outside 0..{MAX_SEQUENCE_COUNT}"
            )
        if not 1 <= len(self.data) <= MAX_DATA_LENGTH:
            raise LengthError(
                f"packet data field of {len(self.data)} octets outside 1..{MAX_DATA_LENGTH}"
            )
        word0 = (self.packet_type << 12) | (self.secondary_header_flag << 11) | self.apid
        word1 = (self.sequence_flags << 14) | self.sequence_count
        return _HEADER.pack(word0, word1, len(self.data) - 1) + self.data

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "SpacePacket":
        """Decode exactly one packet; trailing octets are an error."""
        packet, end = cls.decode_from(buffer)
        if end != len(buffer):
            raise LengthError(
                f"packet data length says {end} octets, buffer has {len(buffer)}", offset=4
            )
        return packet

    @classmethod
    def decode_from(
        cls, buffer: bytes | bytearray | memoryview, offset: int = 0
    ) -> tuple["SpacePacket", int]:
        """Decode the packet that starts at `offset`; return it and the offset just past it."""
        # packet_length's checks inlined, with the same messages: this runs once per packet.
        available = len(buffer) - offset
        if available < PRIMARY_HEADER_LENGTH:
            raise TruncatedError(
                f"{available} octets, a packet primary header needs {PRIMARY_HEADER_LENGTH}",
                offset=offset,
            )
        word0, word1, length = _HEADER.unpack_from(buffer, offset)
        if word0 >> 13:
            raise FieldError(f"packet version number {word0 >> 13}, expected 0", offset=offset)
        total = PRIMARY_HEADER_LENGTH + 1 + length
        if available < total:
            raise TruncatedError(
                f"packet of {total} octets, only {available} present", offset=offset
            )
        end = offset + total
        packet = cls(
            _PACKET_TYPES[(word0 >> 12) & 1],
            word0 & 0x7FF,
            word1 & 0x3FFF,
            bytes(buffer[offset + PRIMARY_HEADER_LENGTH : end]),
            word0 & 0x0800 != 0,
            _SEQUENCE_FLAGS[word1 >> 14],
        )
        return packet, end


def packet_length(buffer: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """Total length of the packet whose header starts at `offset`, once its version checks."""
    if len(buffer) - offset < PRIMARY_HEADER_LENGTH:
        raise TruncatedError(
            f"{len(buffer) - offset} octets, a packet primary header needs {PRIMARY_HEADER_LENGTH}",
            offset=offset,
        )
    version = buffer[offset] >> 5
    if version != 0:
        raise FieldError(f"packet version number {version}, expected 0", offset=offset)
    return PRIMARY_HEADER_LENGTH + 1 + ((buffer[offset + 4] << 8) | buffer[offset + 5])


def idle_packet(length: int, sequence_count: int = 0) -> bytes:
    """An idle packet (APID 0x7FF) of exactly `length` octets (133.0-B-2 4.1.3.3.4.4)."""
    if length < PRIMARY_HEADER_LENGTH + 1:
        raise LengthError(f"an idle packet needs at least {PRIMARY_HEADER_LENGTH + 1} octets")
    fill = bytes(length - PRIMARY_HEADER_LENGTH)
    return SpacePacket(PacketType.TM, IDLE_APID, sequence_count & MAX_SEQUENCE_COUNT, fill).encode()


class PacketStream:
    """Cuts a byte stream into Space Packets and resynchronises after garbage.

    Space Packets carry no sync marker, so a header is only trusted when its version is 0, its
    length is within `max_packet_length`, and `accept` (for example a PUS CRC check, or a
    known-APID check) approves the packet.
    Otherwise one octet is discarded and the search goes on; `discarded_octets` counts them.
    """

    def __init__(
        self,
        max_packet_length: int = MAX_PACKET_LENGTH,
        accept: Callable[[SpacePacket], bool] | None = None,
    ) -> None:
        self.max_packet_length = max_packet_length
        self.accept = accept
        self.discarded_octets = 0
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[SpacePacket]:
        self._buffer += data
        packets: list[SpacePacket] = []
        start = 0
        buffer = self._buffer
        while len(buffer) - start >= PRIMARY_HEADER_LENGTH:
            version_ok = buffer[start] >> 5 == 0
            total = PRIMARY_HEADER_LENGTH + 1 + ((buffer[start + 4] << 8) | buffer[start + 5])
            if not version_ok or total > self.max_packet_length:
                start += 1
                self.discarded_octets += 1
                continue
            if len(buffer) - start < total:
                break
            packet, end = SpacePacket.decode_from(buffer, start)
            if self.accept is not None and not self.accept(packet):
                start += 1
                self.discarded_octets += 1
                continue
            packets.append(packet)
            start = end
        del buffer[:start]
        return packets

    @property
    def pending_octets(self) -> int:
        return len(self._buffer)
