"""CCSDS TC Transfer Frames (232.0-B-4): primary and segment headers, control commands, FECF."""

import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from construct import BitsInteger, BitStruct, Bytes, Flag, If, Int16ub, Struct

from flight.protocol import icd
from flight.protocol.crc import append_crc16, check_crc16
from flight.protocol.errors import (
    AddressError,
    FieldError,
    LengthError,
    TruncatedError,
    check_field,
)

PRIMARY_HEADER_LENGTH = 5
SEGMENT_HEADER_LENGTH = 1
FECF_LENGTH = 2
MAX_FRAME_LENGTH = icd.TC_MAX_FRAME_LENGTH
MAX_SPACECRAFT_ID = 0x3FF
MAX_VIRTUAL_CHANNEL_ID = 0x3F
MAX_MAP_ID = 0x3F
MAX_FRAME_SEQUENCE_NUMBER = 0xFF
UNSEGMENTED = 0b11  # 232.0-B-4 segment header sequence flags: the only value our ICD uses

PRIMARY_HEADER = BitStruct(
    "transfer_frame_version_number" / BitsInteger(2),
    "bypass_flag" / Flag,
    "control_command_flag" / Flag,
    "reserved_spare" / BitsInteger(2),
    "spacecraft_identifier" / BitsInteger(10),
    "virtual_channel_identifier" / BitsInteger(6),
    "frame_length" / BitsInteger(10),
    "frame_sequence_number" / BitsInteger(8),
)
"""TC Transfer Frame Primary Header, 232.0-B-4 4.1.2 (figure 4-2). Reference declaration; `TcFrame`
is the fast path. `frame_length` holds the total frame length in octets minus one (4.1.2.8)."""

SEGMENT_HEADER = BitStruct(
    "sequence_flags" / BitsInteger(2),
    "map_identifier" / BitsInteger(6),
)
"""Segment Header of the MAP service, 232.0-B-4 4.1.3.2 (figure 4-4)."""

TC_TRANSFER_FRAME = Struct(
    "primary_header" / PRIMARY_HEADER,
    # Penumbra ICD: every Type-A/BD frame carries a segment header, Type-BC frames never do.
    "segment_header" / If(lambda ctx: not ctx.primary_header.control_command_flag, SEGMENT_HEADER),
    "frame_data"
    / Bytes(
        lambda ctx: (
            ctx.primary_header.frame_length
            + 1
            - PRIMARY_HEADER_LENGTH
            - FECF_LENGTH
            - (0 if ctx.primary_header.control_command_flag else SEGMENT_HEADER_LENGTH)
        )
    ),
    "frame_error_control_field" / Int16ub,
)
"""A whole TC Transfer Frame as the Penumbra ICD uses it, 232.0-B-4 4.1 (figure 4-1), FECF always
present (4.1.4). Reference declaration for tests; `frame_data` is what `TcFrame.data` holds."""

_HEADER = struct.Struct(">HHB")


class FrameType(StrEnum):
    """232.0-B-4 4.1.2.3: the bypass and control command flags together."""

    AD = "AD"  # sequence-controlled data, checked by FARM-1
    BD = "BD"  # expedited data, bypasses the FARM-1 sequence check
    BC = "BC"  # expedited control command for FARM-1 (Unlock, Set V(R))


class ControlCommand(IntEnum):
    """First octet of a Type-BC frame's data field, 232.0-B-4 4.1.3.3 (table 4-2)."""

    UNLOCK = 0x00
    SET_VR = 0x82


_UNLOCK_DATA = bytes([ControlCommand.UNLOCK])
_SET_VR_PREFIX = bytes([ControlCommand.SET_VR, 0x00])


def parse_control_command(data: bytes, offset: int = 0) -> tuple[ControlCommand, int | None]:
    """The control command in a BC frame's data field and, for Set V(R), the new V(R).

    Unlock is exactly `00`; Set V(R) is exactly `82 00 NN`. Anything else is a FieldError: FARM-1
    treats the frame as invalid rather than guessing.
    """
    if data == _UNLOCK_DATA:
        return ControlCommand.UNLOCK, None
    if len(data) == 3 and data[:2] == _SET_VR_PREFIX:
        return ControlCommand.SET_VR, data[2]
    raise FieldError(
        f"BC frame data {data[:8].hex()} is neither Unlock (00) nor Set V(R) (82 00 NN)",
        offset=offset,
    )


@dataclass(frozen=True, slots=True)
class TcFrame:
    """One TC Transfer Frame. `data` is the frame data field after the segment header (if any).

    `map_id` None means no segment header, which the ICD allows only for Type-BC frames; Type-AD and
    BD frames always carry one, with sequence flags 0b11 (unsegmented).
    """

    spacecraft_id: int
    virtual_channel_id: int
    frame_sequence_number: int
    data: bytes
    bypass_flag: bool = False
    control_command_flag: bool = False
    map_id: int | None = 0

    @classmethod
    def unlock(cls, spacecraft_id: int, virtual_channel_id: int) -> "TcFrame":
        """The Type-BC Unlock frame (232.0-B-4 4.1.3.3.2); its (unused) sequence number is 0."""
        return cls(spacecraft_id, virtual_channel_id, 0, _UNLOCK_DATA, True, True, None)

    @classmethod
    def set_vr(cls, spacecraft_id: int, virtual_channel_id: int, v_r: int) -> "TcFrame":
        """The Type-BC Set V(R) frame that sets FARM-1's V(R) to `v_r` (232.0-B-4 4.1.3.3.3)."""
        check_field(v_r, MAX_FRAME_SEQUENCE_NUMBER, "Set V(R) value")
        return cls(
            spacecraft_id, virtual_channel_id, 0, _SET_VR_PREFIX + bytes([v_r]), True, True, None
        )

    @property
    def frame_type(self) -> FrameType:
        if not self.bypass_flag:
            return FrameType.AD
        return FrameType.BC if self.control_command_flag else FrameType.BD

    def control_command(self) -> tuple[ControlCommand, int | None]:
        """For a BC frame, its command and the Set V(R) value; a FieldError for any other frame."""
        if self.frame_type is not FrameType.BC:
            raise FieldError(f"a Type-{self.frame_type} frame carries no control command")
        return parse_control_command(self.data, PRIMARY_HEADER_LENGTH)

    def header_octets(self, data_length: int) -> bytes:
        """Primary header plus segment header for `data_length` octets of data after them.

        This is what SDLS authenticates: the same octets `encode` writes ahead of `data`.
        """
        self._check_fields()
        segment = self.map_id is not None
        total = PRIMARY_HEADER_LENGTH + segment + data_length + FECF_LENGTH
        if data_length < 0 or total > MAX_FRAME_LENGTH:
            shortest = PRIMARY_HEADER_LENGTH + segment + FECF_LENGTH
            raise LengthError(f"TC frame of {total} octets outside {shortest}..{MAX_FRAME_LENGTH}")
        word0 = (self.bypass_flag << 13) | (self.control_command_flag << 12) | self.spacecraft_id
        word1 = (self.virtual_channel_id << 10) | (total - 1)
        header = _HEADER.pack(word0, word1, self.frame_sequence_number)
        if segment:
            header += bytes([(UNSEGMENTED << 6) | self.map_id])
        return header

    def encode(self) -> bytes:
        """The whole frame: headers, data, and the FECF over both (232.0-B-4 4.1.4)."""
        if self.control_command_flag:
            parse_control_command(self.data, PRIMARY_HEADER_LENGTH)
        return append_crc16(self.header_octets(len(self.data)) + self.data)

    @classmethod
    def decode(
        cls, buffer: bytes | bytearray | memoryview, *, spacecraft_id: int | None = None
    ) -> "TcFrame":
        """Decode exactly one frame, FECF included.

        Checks, in order: enough octets for a header and FECF, the frame length field against the
        buffer, the FECF, version and reserved bits, flags, then the spacecraft id if
        `spacecraft_id` is given (AddressError).
        """
        size = len(buffer)
        if size < PRIMARY_HEADER_LENGTH + FECF_LENGTH:
            raise TruncatedError(
                f"{size} octets, a TC frame needs at least {PRIMARY_HEADER_LENGTH + FECF_LENGTH}",
                offset=0,
            )
        word0, word1, sequence = _HEADER.unpack_from(buffer, 0)
        length = (word1 & 0x3FF) + 1
        if length > size:
            raise TruncatedError(
                f"frame length field says {length} octets, only {size} present", offset=2
            )
        if length < size:
            raise LengthError(
                f"frame length field says {length} octets, buffer has {size}", offset=2
            )
        if length > MAX_FRAME_LENGTH:
            raise LengthError(
                f"TC frame of {length} octets exceeds the ICD limit {MAX_FRAME_LENGTH}", offset=2
            )
        body = check_crc16(buffer, "TC frame")
        version = word0 >> 14
        if version != 0:
            raise FieldError(f"transfer frame version number {version}, expected 0", offset=0)
        if word0 & 0x0C00:
            raise FieldError(
                f"reserved spare bits {(word0 >> 10) & 3:#04b}, expected 0b00", offset=0
            )
        bypass = bool(word0 & 0x2000)
        control = bool(word0 & 0x1000)
        if control and not bypass:
            raise FieldError("control command flag set without the bypass flag", offset=0)
        scid = word0 & 0x3FF
        if spacecraft_id is not None and scid != spacecraft_id:
            raise AddressError(
                f"frame for spacecraft {scid:#x}, this is {spacecraft_id:#x}", offset=0
            )
        vcid = word1 >> 10
        if control:
            data = bytes(body[PRIMARY_HEADER_LENGTH:])
            parse_control_command(data, PRIMARY_HEADER_LENGTH)
            return cls(scid, vcid, sequence, data, True, True, None)
        if len(body) < PRIMARY_HEADER_LENGTH + SEGMENT_HEADER_LENGTH:
            raise TruncatedError(
                "Type-A/BD frame without room for its segment header", offset=PRIMARY_HEADER_LENGTH
            )
        segment = body[PRIMARY_HEADER_LENGTH]
        if segment >> 6 != UNSEGMENTED:
            raise FieldError(
                f"segment header sequence flags {segment >> 6:#04b}, the ICD allows only 0b11",
                offset=PRIMARY_HEADER_LENGTH,
            )
        data = bytes(body[PRIMARY_HEADER_LENGTH + SEGMENT_HEADER_LENGTH :])
        return cls(scid, vcid, sequence, data, bypass, False, segment & MAX_MAP_ID)

    def _check_fields(self) -> None:
        check_field(self.spacecraft_id, MAX_SPACECRAFT_ID, "spacecraft id")
        check_field(self.virtual_channel_id, MAX_VIRTUAL_CHANNEL_ID, "virtual channel id")
        check_field(self.frame_sequence_number, MAX_FRAME_SEQUENCE_NUMBER, "frame sequence number")
        if self.control_command_flag and not self.bypass_flag:
            raise FieldError("a control command frame must also set the bypass flag (Type-BC)")
        if self.control_command_flag:
            if self.map_id is not None:
                raise FieldError("Type-BC frames carry no segment header: map_id must be None")
        elif self.map_id is None:
            raise FieldError("Type-AD and BD frames carry a segment header: map_id must be 0..63")
        else:
            check_field(self.map_id, MAX_MAP_ID, "MAP id")
