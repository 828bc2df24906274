"""ISL frames: USLP transfer frames (CCSDS 732.1-B-2) each carrying one Penumbra routed packet.

Two layers, each checked on its own: the USLP frame is per hop (its FECF, a CRC-16, protects one
link), the routed packet is end to end (its CRC-32 protects the packet while it is forwarded and
stored on the way; it leaves out the hop limit, the one field a forwarder changes, so that no node
on the path ever recomputes it). docs/ICD.md, "Inter-satellite links", has the tables.
"""

import struct
import zlib
from dataclasses import dataclass, replace
from enum import IntEnum

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    BytesInteger,
    Flag,
    If,
    Int8ub,
    Int16ub,
    Int32ub,
    Struct,
    this,
)

from flight.protocol import icd
from flight.protocol.crc import append_crc16, check_crc16
from flight.protocol.errors import (
    AddressError,
    ChecksumError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
    check_field,
)

USLP_VERSION = 0b1100
"""Transfer Frame Version Number of USLP frames (732.1-B-2 4.1.2): '1100', version 12 = 4 + 8."""

PRIMARY_HEADER_LENGTH = 7
"""Non-truncated USLP primary header without its VC frame count (which adds 0..7 octets)."""

MAX_FRAME_COUNT_OCTETS = 7
TFDF_HEADER_LENGTH = 1  # variable-length frames carry no First Header / Last Valid Octet pointer
FECF_LENGTH = 2
MAX_FRAME_LENGTH = 65536  # the 16-bit frame length field holds total octets - 1
MAX_SPACECRAFT_ID = 0xFFFF
MAX_VIRTUAL_CHANNEL_ID = 0x3F
MAX_MAP_ID = 0xF

ROUTED_PACKET_MAP_ID = 0
"""The one MAP on ISL virtual channels: routed packets. Frames for any other MAP are not ours."""

ISL_SPACECRAFT_ID = icd.SPACECRAFT_ID
"""Default SCID in ISL frames. Every node of a constellation uses the constellation's SCID, with
the source/destination flag at 'source': which node sent a packet is in its 32-bit source address,
which a 16-bit SCID could not hold for a large constellation."""


class TfdzConstructionRule(IntEnum):
    """TFDF header bits 0-2 (732.1-B-2 4.1.4.2, table 4-3). The ISL uses only one."""

    NO_SEGMENTATION = 0b111  # variable-length TFDZ holding one whole SDU


class UslpProtocolId(IntEnum):
    """TFDF header bits 3-7, the UPID (SANA registry of USLP protocol identifiers)."""

    MAPA_SDU = 0b00101  # mission-specific information 1: a MAP Access SDU (our routed packet)


class IslVirtualChannel(IntEnum):
    """ISL virtual channels. Control traffic is small and goes first; bulk data follows."""

    CONTROL = 0  # beacons and offload negotiation
    DATA = 1  # user data and file transfer PDUs (models, inputs, results)


class PacketKind(IntEnum):
    """What a routed packet's payload is (octet 1 of the packet header)."""

    DATA = 0  # opaque user data
    BEACON = 1  # beacon.Beacon, to the broadcast address
    OFFER = 2  # offload.Offer
    ACCEPT = 3  # offload.Accept
    DECLINE = 4  # offload.Decline
    RESULT_ROUTE = 5  # offload.ResultRoute
    DONE = 6  # offload.Done
    CANCEL = 7  # offload.Cancel
    FILE = 8  # one CFDP PDU (727.0-B-5), as on the ground link


_CONTROL_KINDS = frozenset(PacketKind) - {PacketKind.DATA, PacketKind.FILE}


def virtual_channel_for(kind: PacketKind) -> IslVirtualChannel:
    """The VC a sender puts a packet of `kind` on: bulk data must not hold up negotiation."""
    return IslVirtualChannel.CONTROL if kind in _CONTROL_KINDS else IslVirtualChannel.DATA


BROADCAST_ADDRESS = 0xFFFFFFFF
"""Destination 'every neighbour': delivered by each node that hears it, never forwarded."""

MAX_ADDRESS = 0xFFFFFFFE
MAX_PRIORITY = 7  # 7 is the most urgent; overflow drops the lowest first
MAX_HOP_LIMIT = 0xFF
MAX_FLOW_ID = 0xFFFFFFFF
PACKET_VERSION = 1
PACKET_HEADER_LENGTH = 18
PACKET_CRC_LENGTH = 4
PACKET_OVERHEAD = PACKET_HEADER_LENGTH + PACKET_CRC_LENGTH
_FRAME_OVERHEAD_MAX = (
    PRIMARY_HEADER_LENGTH + MAX_FRAME_COUNT_OCTETS + TFDF_HEADER_LENGTH + FECF_LENGTH
)
MAX_PACKET_LENGTH = MAX_FRAME_LENGTH - _FRAME_OVERHEAD_MAX
"""Longest routed packet: it fits a frame with the longest VC frame count, so any frame takes it."""
MAX_PAYLOAD_LENGTH = MAX_PACKET_LENGTH - PACKET_OVERHEAD
HOP_LIMIT_OFFSET = 3

PRIMARY_HEADER = BitStruct(
    "transfer_frame_version_number" / BitsInteger(4),
    "spacecraft_identifier" / BitsInteger(16),
    "source_or_destination_identifier" / Flag,
    "virtual_channel_identifier" / BitsInteger(6),
    "map_identifier" / BitsInteger(4),
    "end_of_frame_primary_header_flag" / Flag,
    "frame_length" / BitsInteger(16),
    "bypass_sequence_control_flag" / Flag,
    "protocol_control_command_flag" / Flag,
    "reserved_spares" / BitsInteger(2),
    "ocf_flag" / Flag,
    "vc_frame_count_length" / BitsInteger(3),
)
"""USLP Transfer Frame Primary Header, non-truncated, without the VC frame count that follows it
(732.1-B-2 4.1.2, figure 4-2). Reference declaration; `IslFrame` is the fast path.
`frame_length` holds the total frame length in octets minus one."""

TFDF_HEADER = BitStruct(
    "tfdz_construction_rules" / BitsInteger(3),
    "uslp_protocol_identifier" / BitsInteger(5),
)
"""Transfer Frame Data Field header of a variable-length frame (732.1-B-2 4.1.4.2): no pointer."""

USLP_TRANSFER_FRAME = Struct(
    "primary_header" / PRIMARY_HEADER,
    "vc_frame_count"
    / If(
        this.primary_header.vc_frame_count_length > 0,
        BytesInteger(this.primary_header.vc_frame_count_length),
    ),
    "tfdf_header" / TFDF_HEADER,
    "transfer_frame_data_zone"
    / Bytes(
        lambda ctx: (
            ctx.primary_header.frame_length
            + 1
            - PRIMARY_HEADER_LENGTH
            - ctx.primary_header.vc_frame_count_length
            - TFDF_HEADER_LENGTH
            - FECF_LENGTH
        )
    ),
    "frame_error_control_field" / Int16ub,
)
"""A whole ISL frame (732.1-B-2 4.1, figure 4-1): no insert zone, no OCF, a 16-bit FECF (4.1.6).
Reference declaration for tests; the data zone holds exactly one `ROUTED_PACKET`."""

ROUTED_PACKET = Struct(
    "packet_version" / Int8ub,
    "packet_kind" / Int8ub,
    "priority" / Int8ub,
    "hop_limit" / Int8ub,
    "source_address" / Int32ub,
    "destination_address" / Int32ub,
    "flow_id" / Int32ub,
    "payload_length" / Int16ub,
    "payload" / Bytes(this.payload_length),
    "packet_crc" / Int32ub,
)
"""The Penumbra routed packet (ICD "Inter-satellite links"). `packet_crc` is CRC-32/ISO-HDLC over
every octet before it, with the hop limit taken as zero. Reference declaration; `RoutedPacket`
is the fast path."""

_PACKET_HEADER = struct.Struct(">BBBBIIIH")
_CRC = struct.Struct(">I")
_ZERO = b"\x00"
_KINDS = {kind.value: kind for kind in PacketKind}
_CHANNELS = {channel.value: channel for channel in IslVirtualChannel}
_TFDF_OCTET = (TfdzConstructionRule.NO_SEGMENTATION << 5) | UslpProtocolId.MAPA_SDU


def packet_crc(octets: bytes | bytearray | memoryview) -> int:
    """CRC-32 of a routed packet's header and payload (`octets`), the hop limit taken as zero."""
    view = memoryview(octets)
    crc = zlib.crc32(view[:HOP_LIMIT_OFFSET])
    crc = zlib.crc32(_ZERO, crc)
    return zlib.crc32(view[HOP_LIMIT_OFFSET + 1 :], crc)


@dataclass(frozen=True, slots=True)
class RoutedPacket:
    """One packet between two nodes, forwarded hop by hop. Addresses are 32-bit node addresses.

    `hop_limit` is decremented by every node that forwards the packet; one that would send it on
    with 0 drops it. `flow_id` names the packet within its source's flow (a sequence number, or
    a transfer id), for deduplication and for the records.
    """

    source: int
    destination: int
    kind: PacketKind
    payload: bytes = b""
    priority: int = 0
    hop_limit: int = 16
    flow_id: int = 0

    @property
    def is_broadcast(self) -> bool:
        return self.destination == BROADCAST_ADDRESS

    @property
    def encoded_length(self) -> int:
        return PACKET_OVERHEAD + len(self.payload)

    def forwarded(self) -> "RoutedPacket":
        """The copy a forwarder sends on: hop limit one less (FieldError if it is already 0)."""
        if self.hop_limit == 0:
            raise FieldError("a packet with hop limit 0 cannot be forwarded")
        return replace(self, hop_limit=self.hop_limit - 1)

    def encode(self) -> bytes:
        check_field(self.source, MAX_ADDRESS, "source address")
        check_field(self.destination, BROADCAST_ADDRESS, "destination address")
        if self.kind not in _KINDS:
            raise FieldError(f"packet kind {self.kind} is not a PacketKind")
        check_field(self.priority, MAX_PRIORITY, "priority")
        check_field(self.hop_limit, MAX_HOP_LIMIT, "hop limit")
        check_field(self.flow_id, MAX_FLOW_ID, "flow id")
        if len(self.payload) > MAX_PAYLOAD_LENGTH:
            raise LengthError(
                f"routed packet payload of {len(self.payload)} octets exceeds {MAX_PAYLOAD_LENGTH}"
            )
        body = (
            _PACKET_HEADER.pack(
                PACKET_VERSION,
                self.kind,
                self.priority,
                self.hop_limit,
                self.source,
                self.destination,
                self.flow_id,
                len(self.payload),
            )
            + self.payload
        )
        return body + _CRC.pack(packet_crc(body))

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "RoutedPacket":
        """Decode exactly one packet.

        Checks, in order: enough octets for header and CRC, the payload length against the buffer
        (TruncatedError when it says more, LengthError when less), the CRC (ChecksumError), then
        the version, kind, priority and source address (FieldError).
        """
        size = len(buffer)
        if size < PACKET_OVERHEAD:
            raise TruncatedError(
                f"{size} octets, a routed packet needs at least {PACKET_OVERHEAD}", offset=0
            )
        version, kind, priority, hop_limit, source, destination, flow_id, length = (
            _PACKET_HEADER.unpack_from(buffer, 0)
        )
        total = PACKET_OVERHEAD + length
        if total > size:
            raise TruncatedError(
                f"payload length says a {total}-octet packet, only {size} present", offset=16
            )
        if total < size:
            raise LengthError(
                f"payload length says a {total}-octet packet, buffer has {size}", offset=16
            )
        end = PACKET_HEADER_LENGTH + length
        received = _CRC.unpack_from(buffer, end)[0]
        expected = packet_crc(memoryview(buffer)[:end])
        if received != expected:
            raise ChecksumError(
                f"routed packet CRC-32 is {received:#010x}, expected {expected:#010x}", offset=end
            )
        if version != PACKET_VERSION:
            raise FieldError(
                f"routed packet version {version}, expected {PACKET_VERSION}", offset=0
            )
        if kind not in _KINDS:
            raise FieldError(f"unknown packet kind {kind}", offset=1)
        if priority > MAX_PRIORITY:
            raise FieldError(f"priority {priority} outside 0..{MAX_PRIORITY}", offset=2)
        if source == BROADCAST_ADDRESS:
            raise FieldError("the broadcast address cannot be a source", offset=4)
        return cls(
            source,
            destination,
            _KINDS[kind],
            bytes(buffer[PACKET_HEADER_LENGTH:end]),
            priority,
            hop_limit,
            flow_id,
        )


@dataclass(frozen=True, slots=True)
class IslFrame:
    """One USLP frame on an ISL, carrying one routed packet on MAP 0 of an ISL virtual channel.

    Fixed by the ICD: non-truncated header, bypass flag 1 (expedited: no COP-P on the ISL),
    user data (protocol control command flag 0), no insert zone, no OCF, a 16-bit FECF, variable
    length, TFDZ construction rule '111' with UPID '00101'. `frame_count` is the VC frame count,
    written in `frame_count_octets` octets (0..7; 0 means no count).
    """

    packet: RoutedPacket
    virtual_channel_id: IslVirtualChannel = IslVirtualChannel.DATA
    spacecraft_id: int = ISL_SPACECRAFT_ID
    frame_count: int = 0
    frame_count_octets: int = 0

    @classmethod
    def carrying(cls, packet: RoutedPacket, **fields: int) -> "IslFrame":
        """The frame for `packet` on the VC its kind belongs to (`virtual_channel_for`)."""
        return cls(packet, virtual_channel_for(packet.kind), **fields)

    def encode(self) -> bytes:
        check_field(self.spacecraft_id, MAX_SPACECRAFT_ID, "spacecraft id")
        if self.virtual_channel_id not in _CHANNELS:
            raise FieldError(f"virtual channel {self.virtual_channel_id} is not an ISL channel")
        check_field(self.frame_count_octets, MAX_FRAME_COUNT_OCTETS, "VC frame count length")
        check_field(self.frame_count, (1 << (8 * self.frame_count_octets)) - 1, "VC frame count")
        packet = self.packet.encode()
        total = (
            PRIMARY_HEADER_LENGTH
            + self.frame_count_octets
            + TFDF_HEADER_LENGTH
            + len(packet)
            + FECF_LENGTH
        )
        # Cannot exceed MAX_FRAME_LENGTH: MAX_PACKET_LENGTH leaves room for the longest count.
        word0 = (
            (USLP_VERSION << 28)
            | (self.spacecraft_id << 12)
            | (self.virtual_channel_id << 5)
            | (ROUTED_PACKET_MAP_ID << 1)
        )
        flags = 0x80 | self.frame_count_octets  # bypass 1, PCC 0, spares 00, OCF 0
        header = struct.pack(">IHB", word0, total - 1, flags)
        if self.frame_count_octets:
            header += self.frame_count.to_bytes(self.frame_count_octets, "big")
        return append_crc16(header + bytes([_TFDF_OCTET]) + packet)

    @classmethod
    def decode(
        cls, buffer: bytes | bytearray | memoryview, *, spacecraft_id: int | None = None
    ) -> "IslFrame":
        """Decode exactly one frame, FECF included, and the routed packet inside it.

        Checks, in order: enough octets for a header and FECF, the frame length field against the
        buffer, the FECF, the fixed header fields (FieldError), the TFDF header, the SCID if
        `spacecraft_id` is given and the VC and MAP (AddressError), then the packet
        (`RoutedPacket.decode`, which must fill the data zone exactly).
        """
        size = len(buffer)
        if size < PRIMARY_HEADER_LENGTH + FECF_LENGTH:
            raise TruncatedError(
                f"{size} octets, an ISL frame needs at least {PRIMARY_HEADER_LENGTH + FECF_LENGTH}",
                offset=0,
            )
        word0, length_field, flags = struct.unpack_from(">IHB", buffer, 0)
        length = length_field + 1
        if length > size:
            raise TruncatedError(
                f"frame length field says {length} octets, only {size} present", offset=4
            )
        if length < size:
            raise LengthError(
                f"frame length field says {length} octets, buffer has {size}", offset=4
            )
        body = check_crc16(buffer, "ISL frame")
        version = word0 >> 28
        if version != USLP_VERSION:
            raise FieldError(
                f"transfer frame version number {version:#06b}, USLP is {USLP_VERSION:#06b}",
                offset=0,
            )
        if word0 & 1:
            raise FieldError(
                "truncated primary header (end of header flag 1): ISL frames use none", offset=3
            )
        if word0 & 0x800:
            raise FieldError("source/destination flag 1: ISL frames name their source", offset=2)
        if not flags & 0x80:
            raise FieldError("bypass flag 0: ISL frames are expedited, no COP-P", offset=6)
        if flags & 0x40:
            raise FieldError(
                "protocol control command flag 1: ISL frames carry user data", offset=6
            )
        if flags & 0x30:
            raise FieldError(f"reserved spares {(flags >> 4) & 3:#04b}, expected 0b00", offset=6)
        if flags & 0x08:
            raise FieldError("OCF flag 1: ISL frames carry no operational control field", offset=6)
        count_octets = flags & 0x07
        zone_start = PRIMARY_HEADER_LENGTH + count_octets + TFDF_HEADER_LENGTH
        if len(body) < zone_start:
            raise TruncatedError(
                f"{length}-octet frame has no room for its VC frame count and TFDF header",
                offset=PRIMARY_HEADER_LENGTH,
            )
        tfdf = body[zone_start - 1]
        if tfdf != _TFDF_OCTET:
            raise FieldError(
                f"TFDF header {tfdf:#04x}: construction rule {tfdf >> 5:#05b} with UPID "
                f"{tfdf & 0x1F:#07b}, the ISL uses only '111' with '00101' ({_TFDF_OCTET:#04x})",
                offset=zone_start - 1,
            )
        scid = (word0 >> 12) & MAX_SPACECRAFT_ID
        if spacecraft_id is not None and scid != spacecraft_id:
            raise AddressError(
                f"frame for spacecraft {scid:#x}, this is {spacecraft_id:#x}", offset=0
            )
        vcid = (word0 >> 5) & MAX_VIRTUAL_CHANNEL_ID
        if vcid not in _CHANNELS:
            raise AddressError(f"virtual channel {vcid} is not an ISL channel", offset=2)
        map_id = (word0 >> 1) & MAX_MAP_ID
        if map_id != ROUTED_PACKET_MAP_ID:
            raise AddressError(
                f"MAP {map_id}: ISL frames carry routed packets on MAP 0 only", offset=3
            )
        count = int.from_bytes(body[PRIMARY_HEADER_LENGTH : zone_start - 1], "big")
        try:
            packet = RoutedPacket.decode(body[zone_start:])
        except ProtocolError as error:
            # The same error, told where in the frame: the packet starts at the data zone.
            offset = None if error.offset is None else error.offset + zone_start
            raise type(error)(f"routed packet: {error.message}", offset=offset) from None
        return cls(packet, _CHANNELS[vcid], scid, count, count_octets)
