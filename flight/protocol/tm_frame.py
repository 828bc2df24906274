"""TM Transfer Frames (CCSDS 132.0-B-3): codec, virtual channel multiplexing, packet extraction."""

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Checksum,
    Construct,
    Flag,
    If,
    Int16ub,
    Int32ub,
    RawCopy,
    Struct,
    this,
)

from flight.protocol import icd
from flight.protocol.crc import check_crc16, crc16
from flight.protocol.errors import (
    AddressError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
    check_field,
)
from flight.protocol.spacepacket import (
    IDLE_APID,
    MAX_PACKET_LENGTH,
    idle_packet,
    packet_length,
)
from flight.protocol.spacepacket import PRIMARY_HEADER_LENGTH as PACKET_HEADER_LENGTH

PRIMARY_HEADER_LENGTH = 6
OCF_LENGTH = 4
FECF_LENGTH = 2
MAX_FRAME_LENGTH = 2048  # 132.0-B-3 4.1.1: a TM Transfer Frame is at most 2048 octets
MAX_SPACECRAFT_ID = 0x3FF
MAX_VIRTUAL_CHANNEL_ID = 7
FRAME_COUNT_MODULUS = 256  # both frame counters are 8 bits (4.1.2.5, 4.1.2.6)
SEGMENT_LENGTH_ID = 0b11  # 4.1.2.7.5: required when the synchronization flag is 0
MAX_OCF = 0xFFFF_FFFF
MIN_PACKET_LENGTH = PACKET_HEADER_LENGTH + 1  # 133.0-B-2: a packet data field has 1 octet or more

NO_CLCW = 0x8000_0000
"""OCF word of a frame released while the OCF source has no report. Its first bit marks a Type-2
report (4.1.5), not a CLCW, so a FOP-1 ignores it; the OCF flag stays static on the master channel
as 4.1.2.4 requires."""


class FirstHeaderPointer(IntEnum):
    """The two reserved First Header Pointer values, 132.0-B-3 4.1.2.7.6.4 and 4.1.2.7.6.5."""

    ONLY_IDLE_DATA = 0x7FE
    NO_PACKET_START = 0x7FF


# Plain ints on the hot paths: an IntEnum member costs an attribute lookup on every use.
_ONLY_IDLE_DATA = int(FirstHeaderPointer.ONLY_IDLE_DATA)
_NO_PACKET_START = int(FirstHeaderPointer.NO_PACKET_START)

PRIMARY_HEADER = BitStruct(
    "transfer_frame_version_number" / BitsInteger(2),
    "spacecraft_id" / BitsInteger(10),
    "virtual_channel_id" / BitsInteger(3),
    "operational_control_field_flag" / Flag,
    "master_channel_frame_count" / BitsInteger(8),
    "virtual_channel_frame_count" / BitsInteger(8),
    "transfer_frame_data_field_status"
    / Struct(
        "transfer_frame_secondary_header_flag" / Flag,
        "synchronization_flag" / Flag,
        "packet_order_flag" / Flag,
        "segment_length_identifier" / BitsInteger(2),
        "first_header_pointer" / BitsInteger(11),
    ),
)
"""The Transfer Frame Primary Header, 132.0-B-3 4.1.2 (figure 4-2). Reference declaration; `TmFrame`
and `TmReceiver` are the fast paths. The ICD fixes transfer_frame_version_number=0, the three flags
of the data field status to 0 and segment_length_identifier=0b11; the declaration accepts any value
so that it can judge the fast paths' checks."""


def tm_transfer_frame(frame_length: int = icd.TM_FRAME_LENGTH) -> Construct:
    """Reference declaration of a whole TM Transfer Frame of this ICD (132.0-B-3 4.1).

    Primary header, data field, the OCF when the header's flag says so (4.1.5) and the FECF (4.1.6),
    which the ICD always carries. No Transfer Frame Secondary Header (4.1.3): the ICD uses none.
    """

    def data_field_octets(context: object) -> int:
        header = context.transfer_frame_primary_header  # type: ignore[attr-defined]
        return data_field_length(frame_length, header.operational_control_field_flag)

    protected = Struct(
        "transfer_frame_primary_header" / PRIMARY_HEADER,
        "transfer_frame_data_field" / Bytes(data_field_octets),
        "operational_control_field"
        / If(this.transfer_frame_primary_header.operational_control_field_flag, Int32ub),
    )
    return Struct(
        "protected" / RawCopy(protected),
        "frame_error_control_field" / Checksum(Int16ub, crc16, this.protected.data),
    )


_HEADER = struct.Struct(">HHH")
_OCF = struct.Struct(">I")
_FECF = struct.Struct(">H")
# The data field status of every ICD frame, FHP aside (4.1.2.7): no secondary header, packet data
# (synchronization flag 0), packet order flag 0, segment length identifier 0b11.
_STATUS = SEGMENT_LENGTH_ID << 11
_STATUS_MASK = 0xF800
_VERSION_MASK = 0xC000
_SPACECRAFT_MASK = 0x3FF0
_OCF_FLAG_MASK = 0x0001


def data_field_length(frame_length: int, has_ocf: bool) -> int:
    """Octets of the Transfer Frame Data Field (4.1.4) in a frame with a FECF."""
    return frame_length - PRIMARY_HEADER_LENGTH - (OCF_LENGTH if has_ocf else 0) - FECF_LENGTH


def check_frame_length(frame_length: int, has_ocf: bool) -> int:
    """The data field length of a frame length that the standard allows, or LengthError."""
    minimum = PRIMARY_HEADER_LENGTH + (OCF_LENGTH if has_ocf else 0) + FECF_LENGTH + 1
    if not minimum <= frame_length <= MAX_FRAME_LENGTH:
        raise LengthError(f"TM frame length {frame_length} outside {minimum}..{MAX_FRAME_LENGTH}")
    return data_field_length(frame_length, has_ocf)


def _check_header(
    buffer: bytes | bytearray | memoryview,
    frame_length: int,
    has_ocf: bool,
    spacecraft_id: int | None,
) -> tuple[int, int, int]:
    """Check the length, FECF and every primary header field of a frame; return the header words.

    Length first, then the FECF, then the fields: no field of a corrupted frame is interpreted.
    This is the one place that words the errors; the receiver's fast path only says "bad" and then
    calls it.
    """
    if len(buffer) != frame_length:
        message = f"TM frame of {len(buffer)} octets, the ICD frame length is {frame_length}"
        if len(buffer) < frame_length:
            raise TruncatedError(message, offset=len(buffer))
        raise LengthError(message, offset=frame_length)
    check_crc16(buffer, "TM frame FECF")
    word0, word1, word2 = _HEADER.unpack_from(buffer)
    if word0 >> 14:
        raise FieldError(f"transfer frame version number {word0 >> 14}, expected 0", offset=0)
    if word0 & _OCF_FLAG_MASK != has_ocf:
        raise FieldError(
            f"operational control field flag {word0 & 1}, the ICD says {int(has_ocf)}", offset=1
        )
    if word2 & 0x8000:
        raise FieldError("transfer frame secondary header flag set; the ICD uses none", offset=4)
    if word2 & 0x4000:
        raise FieldError("synchronization flag 1 (VCA data); the ICD carries packets", offset=4)
    if word2 & 0x2000:
        raise FieldError("packet order flag set; reserved with synchronization flag 0", offset=4)
    if (word2 >> 11) & 0b11 != SEGMENT_LENGTH_ID:
        raise FieldError(
            f"segment length identifier {(word2 >> 11) & 0b11:#04b}, expected 0b11", offset=4
        )
    fhp = word2 & 0x7FF
    length = data_field_length(frame_length, has_ocf)
    if length <= fhp < _ONLY_IDLE_DATA:
        raise FieldError(
            f"first header pointer {fhp} beyond the {length}-octet data field", offset=4
        )
    if spacecraft_id is not None and (word0 >> 4) & 0x3FF != spacecraft_id:
        raise AddressError(
            f"TM frame for spacecraft {(word0 >> 4) & 0x3FF:#x}, this is {spacecraft_id:#x}",
            offset=0,
        )
    return word0, word1, word2


@dataclass(frozen=True, slots=True)
class TmFrame:
    """One TM Transfer Frame of this ICD: no secondary header, packet data, a FECF.

    `data` is the whole Transfer Frame Data Field; `ocf` the Operational Control Field as a 32-bit
    word (the COP-1 CLCW), or None for a frame without one.
    """

    spacecraft_id: int
    virtual_channel_id: int
    master_channel_frame_count: int
    virtual_channel_frame_count: int
    first_header_pointer: int
    data: bytes
    ocf: int | None = None

    def encode(self, frame_length: int = icd.TM_FRAME_LENGTH) -> bytes:
        has_ocf = self.ocf is not None
        length = check_frame_length(frame_length, has_ocf)
        check_field(self.spacecraft_id, MAX_SPACECRAFT_ID, "spacecraft id")
        check_field(self.virtual_channel_id, MAX_VIRTUAL_CHANNEL_ID, "virtual channel id")
        check_field(
            self.master_channel_frame_count, FRAME_COUNT_MODULUS - 1, "master channel frame count"
        )
        check_field(
            self.virtual_channel_frame_count, FRAME_COUNT_MODULUS - 1, "virtual channel frame count"
        )
        fhp = self.first_header_pointer
        if not (0 <= fhp < length or fhp in (_ONLY_IDLE_DATA, _NO_PACKET_START)):
            raise FieldError(
                f"first header pointer {fhp} neither in the {length}-octet data field"
                " nor 0x7FE or 0x7FF"
            )
        if len(self.data) != length:
            raise LengthError(
                f"data field of {len(self.data)} octets; a {frame_length}-octet frame has {length}"
            )
        if self.ocf is not None:
            check_field(self.ocf, MAX_OCF, "OCF")
        header = _HEADER.pack(
            (self.spacecraft_id << 4) | (self.virtual_channel_id << 1) | has_ocf,
            (self.master_channel_frame_count << 8) | self.virtual_channel_frame_count,
            _STATUS | fhp,
        )
        ocf = b"" if self.ocf is None else _OCF.pack(self.ocf)
        body = b"".join((header, self.data, ocf))
        return body + _FECF.pack(crc16(body))

    @classmethod
    def decode(
        cls,
        buffer: bytes | bytearray | memoryview,
        *,
        frame_length: int = icd.TM_FRAME_LENGTH,
        has_ocf: bool = True,
        spacecraft_id: int | None = None,
    ) -> "TmFrame":
        """Decode one whole frame; `spacecraft_id`, when given, must match (else AddressError)."""
        length = check_frame_length(frame_length, has_ocf)
        word0, word1, word2 = _check_header(buffer, frame_length, has_ocf, spacecraft_id)
        end = PRIMARY_HEADER_LENGTH + length
        return cls(
            (word0 >> 4) & 0x3FF,
            (word0 >> 1) & 0b111,
            word1 >> 8,
            word1 & 0xFF,
            word2 & 0x7FF,
            bytes(buffer[PRIMARY_HEADER_LENGTH:end]),
            _OCF.unpack_from(buffer, end)[0] if has_ocf else None,
        )


# --- sending side -------------------------------------------------------------------------------


class TmVirtualChannelSender:
    """Packs the encoded Space Packets of one virtual channel into data fields (132.0-B-3 4.2.2).

    Packets span frames; each data field remembers where its first packet header is (the FHP).
    Complete data fields wait here until the master channel releases them, which is when they get
    their frame counts, OCF and FECF. A data field is a list of the packets and, where a packet
    spans data fields, of slices of it (bytes: copying at most one data field costs less than making
    memoryviews). Get one from `TmMasterChannel.virtual_channel`.
    """

    def __init__(self, virtual_channel_id: int, data_field_length: int, word0: int) -> None:
        self.virtual_channel_id = virtual_channel_id
        self.frame_count = 0  # VC frame count of the next frame released (4.1.2.6)
        self.packets_sent = 0
        self.idle_octets = 0
        self._word0 = word0  # version, spacecraft id, VC id, OCF flag: fixed for the channel
        self._capacity = data_field_length
        self._chunks: list[bytes] = []
        self._fill = 0
        self._fhp = _NO_PACKET_START
        self._ready: deque[tuple[int, list[bytes]]] = deque()

    @property
    def pending_frames(self) -> int:
        """Complete frames waiting for the master channel (the one being filled not counted)."""
        return len(self._ready)

    @property
    def partial_octets(self) -> int:
        """Octets in the data field being filled, which `flush` completes."""
        return self._fill

    def send(self, packet: bytes) -> None:
        """Queue one encoded Space Packet; LengthError if its length field disagrees with it."""
        if type(packet) is not bytes:
            packet = bytes(packet)  # the slices queued here must not change under us
        size = len(packet)
        if size < MIN_PACKET_LENGTH or MIN_PACKET_LENGTH + ((packet[4] << 8) | packet[5]) != size:
            announced = packet_length(packet)  # raises for a short header or a bad version
            raise LengthError(
                f"packet of {size} octets, its length field says {announced}", offset=4
            )
        if packet[0] >> 5:
            packet_length(packet)  # raises the FieldError for the version
        self.packets_sent += 1
        self._append(packet, size)

    def flush(self) -> None:
        """Complete the data field being filled with an idle packet (133.0-B-2 4.1.3.3.4.4).

        An idle packet has at least 7 octets. When fewer remain, it runs on and fills the next data
        field (or, in frames shorter than that, fields) exactly: no packet starts there (FHP 0x7FF),
        and the channel's stream still ends on a packet boundary.
        """
        if self._fill == 0:
            return
        remaining = self._capacity - self._fill
        pad = remaining
        if pad < MIN_PACKET_LENGTH:
            pad += -(-(MIN_PACKET_LENGTH - remaining) // self._capacity) * self._capacity
        self.idle_octets += pad
        self._append(idle_packet(pad), pad)

    def _append(self, packet: bytes, size: int) -> None:
        fill = self._fill
        if self._fhp == _NO_PACKET_START:
            self._fhp = fill
        free = self._capacity - fill
        if size < free:  # fits, and the data field stays open
            self._chunks.append(packet)
            self._fill = fill + size
            return
        # The packet completes this data field, perhaps more after it, and may open another.
        capacity = self._capacity
        ready = self._ready
        self._chunks.append(packet[:free])
        ready.append((self._fhp, self._chunks))
        position = free
        while size - position >= capacity:  # a whole data field within the packet: no FHP
            ready.append((_NO_PACKET_START, [packet[position : position + capacity]]))
            position += capacity
        self._fhp = _NO_PACKET_START
        self._chunks = [packet[position:]] if position < size else []
        self._fill = size - position


class TmMasterChannel:
    """The downlink frames of one spacecraft (132.0-B-3 4.2.4 to 4.2.6).

    Owns the master channel frame count (4.1.2.5) and the virtual channels, and releases frames one
    at a time, each with the current OCF word and its FECF. `ocf` returns the word for the next
    frame (the FARM's CLCW) or None while there is none, and then the frame carries `NO_CLCW`.
    `has_ocf=False` is for peers outside the ICD.
    """

    def __init__(
        self,
        spacecraft_id: int = icd.SPACECRAFT_ID,
        *,
        frame_length: int = icd.TM_FRAME_LENGTH,
        ocf: Callable[[], int | None] | None = None,
        has_ocf: bool = True,
    ) -> None:
        check_field(spacecraft_id, MAX_SPACECRAFT_ID, "spacecraft id")
        if ocf is not None and not has_ocf:
            raise FieldError("an OCF source was given for frames without an OCF")
        self.spacecraft_id = spacecraft_id
        self.frame_length = frame_length
        self.has_ocf = has_ocf
        self.data_field_length = check_frame_length(frame_length, has_ocf)
        self.frame_count = 0  # master channel frame count of the next frame released
        self.idle_frames = 0
        self._ocf = ocf
        self._channels: dict[int, TmVirtualChannelSender] = {}
        self._idle = self._new_channel(icd.TmVirtualChannel.IDLE)
        self._idle_data = [bytes(self.data_field_length)]  # idle data pattern: zeros (ICD choice)

    def _new_channel(self, virtual_channel_id: int) -> TmVirtualChannelSender:
        word0 = (self.spacecraft_id << 4) | (virtual_channel_id << 1) | self.has_ocf
        return TmVirtualChannelSender(virtual_channel_id, self.data_field_length, word0)

    def virtual_channel(self, virtual_channel_id: int) -> TmVirtualChannelSender:
        """The sender of one virtual channel, made on first use. VC 7 carries only idle frames."""
        channel = self._channels.get(virtual_channel_id)
        if channel is not None:
            return channel
        if virtual_channel_id == icd.TmVirtualChannel.IDLE:
            raise FieldError("virtual channel 7 carries only-idle-data frames, not packets")
        check_field(virtual_channel_id, MAX_VIRTUAL_CHANNEL_ID, "virtual channel id")
        channel = self._new_channel(virtual_channel_id)
        self._channels[virtual_channel_id] = channel
        # Lower VC ids are released first: REALTIME, then PLAYBACK, then FILE.
        self._channels = dict(sorted(self._channels.items()))
        return channel

    @property
    def pending_frames(self) -> int:
        """Complete frames waiting on all virtual channels."""
        return sum(len(channel._ready) for channel in self._channels.values())

    def next_frame(self) -> bytes:
        """The next frame to transmit.

        The oldest complete frame of the lowest-numbered virtual channel that has one, or else an
        only-idle-data frame (FHP 0x7FE) on VC 7, so that the downlink never starves.
        """
        for channel in self._channels.values():
            if channel._ready:
                return self._release(channel)
        self.idle_frames += 1
        return self._release(self._idle, _ONLY_IDLE_DATA, self._idle_data)

    def drain(self) -> list[bytes]:
        """Every complete frame now waiting, in transmission order; no idle frames."""
        frames: list[bytes] = []
        for channel in self._channels.values():
            while channel._ready:
                frames.append(self._release(channel))
        return frames

    def _release(
        self,
        channel: TmVirtualChannelSender,
        fhp: int = 0,
        chunks: list[bytes] | None = None,
    ) -> bytes:
        # The OCF word first: if the source fails, no frame is dequeued and no count moves.
        ocf = b""
        if self.has_ocf:
            word = None if self._ocf is None else self._ocf()
            if word is None:
                word = NO_CLCW
            elif not 0 <= word <= MAX_OCF:
                raise FieldError(f"OCF word {word} does not fit 32 bits")
            ocf = _OCF.pack(word)
        if chunks is None:
            fhp, chunks = channel._ready.popleft()
        vc_count = channel.frame_count
        channel.frame_count = (vc_count + 1) & 0xFF
        mc_count = self.frame_count
        self.frame_count = (mc_count + 1) & 0xFF
        header = _HEADER.pack(channel._word0, (mc_count << 8) | vc_count, _STATUS | fhp)
        body = b"".join((header, *chunks, ocf))
        return body + _FECF.pack(crc16(body))


# --- receiving side -----------------------------------------------------------------------------


class ReceivedFrame(NamedTuple):
    """What one accepted frame yielded: the packets it completed (idle packets dropped), its OCF
    word, and how many frames were missing just before it on its VC and on the master channel.

    A NamedTuple rather than a frozen dataclass: one is built per frame, and it costs a quarter.
    """

    virtual_channel_id: int
    master_channel_frame_count: int
    virtual_channel_frame_count: int
    packets: tuple[bytes, ...]
    ocf: int | None
    lost_frames: int = 0
    lost_master_frames: int = 0


# What ReceivedFrame(...) does, minus the Python-level __new__ that NamedTuple generates: half the
# cost, once per frame. Every field must be given, in order.
_new_received_frame = tuple.__new__


class _VirtualChannelState:
    """Extraction state of one virtual channel on the receiving side."""

    __slots__ = ("chunks", "expected_count", "have", "in_sync", "need")

    def __init__(self) -> None:
        self.expected_count: int | None = None
        self.in_sync = False  # whether the channel's next octet is known to start or continue one
        self.chunks: list[bytes] = []  # the packet in progress, as the pieces its frames carried
        self.have = 0  # octets of the packet in progress
        self.need = 0  # its total length; 0 while its header is still incomplete


class TmReceiver:
    """Checks the TM frames of one spacecraft, demultiplexes them and extracts their Space Packets.

    Every frame's length, FECF, header fields and spacecraft id are checked before anything else
    (132.0-B-3 4.3); a frame that fails raises and leaves the extraction state as it was, so a lost
    or corrupt frame shows up as a gap in the frame counts of the next good one. After a gap the
    packet in progress is discarded and extraction resumes at the next First Header Pointer.
    The counters say what was lost, discarded or dropped.
    """

    def __init__(
        self,
        spacecraft_id: int | None = icd.SPACECRAFT_ID,
        *,
        frame_length: int = icd.TM_FRAME_LENGTH,
        has_ocf: bool = True,
        max_packet_length: int = MAX_PACKET_LENGTH,
    ) -> None:
        self.spacecraft_id = spacecraft_id
        self.frame_length = frame_length
        self.has_ocf = has_ocf
        self.max_packet_length = max_packet_length
        self.data_field_length = check_frame_length(frame_length, has_ocf)
        self.frames_received = 0  # accepted frames
        self.frames_rejected = 0  # frames that raised a ProtocolError
        self.idle_frames = 0  # only-idle-data frames (FHP 0x7FE)
        self.idle_packets = 0  # idle packets dropped (APID 0x7FF)
        self.packets_extracted = 0
        self.master_lost_frames = 0  # frames missing from the master channel frame count
        self.lost_frames = [0] * (MAX_VIRTUAL_CHANNEL_ID + 1)  # frames missing per VC
        self.discarded_packets = 0  # packets in progress dropped at a gap or inconsistency
        self.discarded_octets = 0  # octets dropped while out of sync, those packets' included
        self.sync_errors = 0  # FHP or packet header inconsistent with the stream in a valid frame
        self._expected_master_count: int | None = None
        self._channels = [_VirtualChannelState() for _ in range(MAX_VIRTUAL_CHANNEL_ID + 1)]
        self._end = PRIMARY_HEADER_LENGTH + self.data_field_length
        self._word0_mask = _VERSION_MASK | _OCF_FLAG_MASK
        self._word0 = int(has_ocf)
        if spacecraft_id is not None:
            self._word0_mask |= _SPACECRAFT_MASK
            self._word0 |= spacecraft_id << 4

    def receive(self, frame: bytes | bytearray | memoryview) -> ReceivedFrame:
        """Accept one frame and return what it carried; raise a ProtocolError for a bad frame."""
        if type(frame) is not bytes:
            frame = bytes(frame)  # packets in progress keep pieces of it; it must not change
        try:
            if len(frame) != self.frame_length or crc16(frame):
                _check_header(frame, self.frame_length, self.has_ocf, self.spacecraft_id)
            word0, word1, word2 = _HEADER.unpack_from(frame)
            fhp = word2 & 0x7FF
            if (
                word0 & self._word0_mask != self._word0
                or word2 & _STATUS_MASK != _STATUS
                or self.data_field_length <= fhp < _ONLY_IDLE_DATA
            ):
                _check_header(frame, self.frame_length, self.has_ocf, self.spacecraft_id)
        except ProtocolError:
            self.frames_rejected += 1
            raise
        self.frames_received += 1
        vcid = (word0 >> 1) & 0b111
        mc_count = word1 >> 8
        vc_count = word1 & 0xFF

        lost_master = 0
        if self._expected_master_count is not None:
            lost_master = (mc_count - self._expected_master_count) & 0xFF
            self.master_lost_frames += lost_master
        self._expected_master_count = (mc_count + 1) & 0xFF

        state = self._channels[vcid]
        lost = 0
        if state.expected_count is not None:
            lost = (vc_count - state.expected_count) & 0xFF
            if lost:
                self.lost_frames[vcid] += lost
                self._lose_sync(state)
        state.expected_count = (vc_count + 1) & 0xFF

        packets: list[bytes] = []
        if fhp == _ONLY_IDLE_DATA:
            self.idle_frames += 1
        else:
            self._extract(state, frame, fhp, packets)
            self.packets_extracted += len(packets)
        return _new_received_frame(
            ReceivedFrame,
            (
                vcid,
                mc_count,
                vc_count,
                tuple(packets),
                _OCF.unpack_from(frame, self._end)[0] if self.has_ocf else None,
                lost,
                lost_master,
            ),
        )

    def _lose_sync(self, state: _VirtualChannelState) -> None:
        if state.have:
            self.discarded_packets += 1
            self.discarded_octets += state.have
        state.chunks = []
        state.have = 0
        state.need = 0
        state.in_sync = False

    def _sync_error(self, state: _VirtualChannelState) -> None:
        self.sync_errors += 1
        self._lose_sync(state)

    def _extract(
        self, state: _VirtualChannelState, frame: bytes, fhp: int, packets: list[bytes]
    ) -> None:
        start = PRIMARY_HEADER_LENGTH
        end = self._end
        position = start
        if state.in_sync:
            if state.have:
                position = self._continue(state, frame, fhp, packets)
                if position == end:
                    return
            elif fhp != 0:  # nothing in progress, so a packet must start at the first octet
                self._sync_error(state)
        if not state.in_sync:
            if fhp == _NO_PACKET_START:
                self.discarded_octets += end - start
                return
            self.discarded_octets += fhp
            position = start + fhp
            state.in_sync = True
        max_length = self.max_packet_length
        while position < end:
            if end - position < PACKET_HEADER_LENGTH:  # the header itself goes on in the next frame
                state.chunks = [frame[position:end]]
                state.have = end - position
                state.need = 0
                return
            first = frame[position]
            total = PACKET_HEADER_LENGTH + 1 + ((frame[position + 4] << 8) | frame[position + 5])
            if first >> 5 or total > max_length:
                self._sync_error(state)
                self.discarded_octets += end - position
                return
            stop = position + total
            if stop > end:
                state.chunks = [frame[position:end]]
                state.have = end - position
                state.need = total
                return
            if ((first & 0b111) << 8) | frame[position + 1] == IDLE_APID:
                self.idle_packets += 1
            else:
                packets.append(frame[position:stop])
            position = stop

    def _continue(
        self, state: _VirtualChannelState, frame: bytes, fhp: int, packets: list[bytes]
    ) -> int:
        """Go on with the packet in progress; return where the next packet starts, or the end."""
        start = PRIMARY_HEADER_LENGTH
        end = self._end
        position = start
        if state.need == 0:  # its primary header was split across frames
            missing = PACKET_HEADER_LENGTH - state.have
            if missing > end - start:  # frames shorter than a packet header
                if fhp != _NO_PACKET_START:
                    self._sync_error(state)
                    return start
                state.chunks.append(frame[start:end])
                state.have += end - start
                return end
            if fhp != _NO_PACKET_START and fhp < missing:
                self._sync_error(state)
                return start
            rest = frame[start : start + missing]
            header = b"".join((*state.chunks, rest))
            total = PACKET_HEADER_LENGTH + 1 + ((header[4] << 8) | header[5])
            if header[0] >> 5 or total > self.max_packet_length:
                self._sync_error(state)
                return start
            state.chunks.append(rest)
            state.have += missing
            state.need = total
            position += missing
        stop = position + state.need - state.have
        # The FHP must point just past the packet in progress, or say that no packet starts here.
        if stop != start + fhp if fhp != _NO_PACKET_START else stop < end:
            self._sync_error(state)
            return start
        if stop > end:
            state.chunks.append(frame[position:end])
            state.have += end - position
            return end
        state.chunks.append(frame[position:stop])
        packet = b"".join(state.chunks)
        state.chunks = []
        state.have = 0
        state.need = 0
        if ((packet[0] & 0b111) << 8) | packet[1] == IDLE_APID:
            self.idle_packets += 1
        else:
            packets.append(packet)
        return stop
