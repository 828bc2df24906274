"""CCSDS Unsegmented Time Code (301.0-B-4 3.2): ICD time stamps and self-identified time codes."""

import math
from dataclasses import dataclass
from enum import IntEnum

from construct import BitsInteger, BitStruct, BytesInteger, Flag, If, Struct, this

from flight.protocol.errors import FieldError, LengthError, TruncatedError, check_field
from flight.protocol.icd import CUC_COARSE_OCTETS, CUC_FINE_OCTETS

T_FIELD_LENGTH = CUC_COARSE_OCTETS + CUC_FINE_OCTETS
"""Octets of the ICD's T-field (the P-field is implicit in packets)."""

FINE_PER_SECOND = 1 << (8 * CUC_FINE_OCTETS)
"""The fine time counts binary fractions of a second: 2**-16 s with two fine octets."""

MAX_COARSE = (1 << (8 * CUC_COARSE_OCTETS)) - 1
MAX_FINE = FINE_PER_SECOND - 1

TAI_EPOCH_TO_UNIX_EPOCH_S = 378_691_200
"""1958-01-01 to 1970-01-01 is 4383 days. Converting UTC to TAI also needs TAI - UTC (37 s since
2017), which this constant does not include."""

MAX_COARSE_OCTETS = 7  # 4 in the first P-field octet plus up to 3 more in the second
MAX_FINE_OCTETS = 10  # 3 in the first P-field octet plus up to 7 more in the second


class TimeCodeId(IntEnum):
    """P-field bits 1-3, 301.0-B-4 3.2.2."""

    TAI_1958_EPOCH = 0b001  # level 1: the CCSDS epoch 1958-01-01 TAI, seconds
    AGENCY_EPOCH = 0b010  # level 2: an epoch that the agency defines elsewhere


CUC_T_FIELD = Struct(
    "coarse_time" / BytesInteger(CUC_COARSE_OCTETS),
    "fine_time" / BytesInteger(CUC_FINE_OCTETS),
)
"""The T-field with the ICD's widths, 301.0-B-4 3.2.1.

Reference declaration; `CucTime` is the fast path.
"""

CUC_P_FIELD = BitStruct(
    "extension_flag" / Flag,
    "time_code_identification" / BitsInteger(3),
    "basic_time_octets_minus_one" / BitsInteger(2),
    "fractional_time_octets" / BitsInteger(2),
    "extension"
    / If(
        this.extension_flag,
        Struct(
            "extension_flag" / Flag,
            "additional_basic_time_octets" / BitsInteger(2),
            "additional_fractional_time_octets" / BitsInteger(3),
            "reserved" / BitsInteger(2),
        ),
    ),
)
"""The P-field, octet 1 and the optional octet 2, 301.0-B-4 3.2.2.

Reference declaration; `CucPField` is the fast path.
"""


@dataclass(frozen=True, slots=True)
class CucTime:
    """A TM time stamp: seconds since 1958-01-01 TAI (`coarse`, 4 octets) and 2**-16 s (`fine`)."""

    coarse: int
    fine: int

    @classmethod
    def from_seconds(cls, seconds_since_epoch: float) -> "CucTime":
        """The stamp of `seconds_since_epoch` (TAI, from 1958-01-01), rounded down to 2**-16 s.

        Rounding down keeps a stamp from ever claiming a later time than the event it marks.
        """
        if not (math.isfinite(seconds_since_epoch) and 0 <= seconds_since_epoch < MAX_COARSE + 1):
            raise FieldError(f"{seconds_since_epoch} s is outside what the CUC time code can hold")
        # Scaling by a power of two is exact in binary floating point, so only floor() rounds.
        ticks = math.floor(seconds_since_epoch * FINE_PER_SECOND)
        return cls(ticks >> (8 * CUC_FINE_OCTETS), ticks & MAX_FINE)

    @property
    def seconds(self) -> float:
        """Seconds since 1958-01-01 TAI; exact, since 48 bits fit a double's mantissa."""
        return self.coarse + self.fine / FINE_PER_SECOND

    def encode(self) -> bytes:
        """The T-field alone, as carried in the TM secondary header (P-field implicit)."""
        check_field(self.coarse, MAX_COARSE, "coarse time")
        check_field(self.fine, MAX_FINE, "fine time")
        return ((self.coarse << (8 * CUC_FINE_OCTETS)) | self.fine).to_bytes(T_FIELD_LENGTH, "big")

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "CucTime":
        """Decode exactly one T-field."""
        time, end = cls.decode_from(buffer)
        if end != len(buffer):
            raise LengthError(
                f"CUC T-field is {T_FIELD_LENGTH} octets, buffer has {len(buffer)}", offset=end
            )
        return time

    @classmethod
    def decode_from(
        cls, buffer: bytes | bytearray | memoryview, offset: int = 0
    ) -> tuple["CucTime", int]:
        """Decode the T-field at `offset`; return it and the offset just past it."""
        end = offset + T_FIELD_LENGTH
        if len(buffer) < end:
            raise TruncatedError(
                f"CUC T-field needs {T_FIELD_LENGTH} octets, {len(buffer) - offset} present",
                offset=offset,
            )
        value = int.from_bytes(buffer[offset:end], "big")
        return cls(value >> (8 * CUC_FINE_OCTETS), value & MAX_FINE), end

    def encode_explicit(self) -> bytes:
        """P-field (TAI 1958 epoch, ICD widths) then T-field: a self-identified time code."""
        return ExplicitCucTime(CucPField(), self.coarse, self.fine).encode()

    @classmethod
    def decode_explicit(cls, buffer: bytes | bytearray | memoryview) -> "CucTime":
        """Decode exactly one self-identified time code with the ICD's P-field (TAI epoch, 4 + 2).

        Other CUC codes are well formed but not ICD stamps; `ExplicitCucTime.decode` reads them.
        """
        explicit = ExplicitCucTime.decode(buffer)
        if explicit.p_field != CucPField():
            raise FieldError(f"P-field is {explicit.p_field}, the ICD time stamp is {CucPField()}")
        return cls(explicit.coarse, explicit.fine)


@dataclass(frozen=True, slots=True)
class CucPField:
    """A CUC P-field: the epoch, and how many coarse (basic) and fine (fractional) octets follow."""

    time_code_id: TimeCodeId = TimeCodeId.TAI_1958_EPOCH
    coarse_octets: int = CUC_COARSE_OCTETS
    fine_octets: int = CUC_FINE_OCTETS

    @property
    def t_field_length(self) -> int:
        return self.coarse_octets + self.fine_octets

    def encode(self) -> bytes:
        """One octet, or two when the widths need the 301.0-B-4 extension octet."""
        if self.time_code_id not in (TimeCodeId.TAI_1958_EPOCH, TimeCodeId.AGENCY_EPOCH):
            raise FieldError(f"time code identification {self.time_code_id} is not a CUC code")
        check_field(self.coarse_octets, MAX_COARSE_OCTETS, "coarse octets", minimum=1)
        check_field(self.fine_octets, MAX_FINE_OCTETS, "fine octets")
        # The first octet takes as much as it can; only the rest goes to the extension octet.
        coarse_1, fine_1 = min(self.coarse_octets, 4), min(self.fine_octets, 3)
        extended = (coarse_1, fine_1) != (self.coarse_octets, self.fine_octets)
        first = (extended << 7) | (self.time_code_id << 4) | ((coarse_1 - 1) << 2) | fine_1
        if not extended:
            return bytes((first,))
        second = ((self.coarse_octets - coarse_1) << 5) | ((self.fine_octets - fine_1) << 2)
        return bytes((first, second))

    @classmethod
    def decode_from(
        cls, buffer: bytes | bytearray | memoryview, offset: int = 0
    ) -> tuple["CucPField", int]:
        """Decode the P-field at `offset`; return it and the offset just past it."""
        if len(buffer) <= offset:
            raise TruncatedError("CUC P-field missing", offset=offset)
        first = buffer[offset]
        extended = first >> 7
        if len(buffer) <= offset + extended:
            raise TruncatedError(
                "CUC P-field says it is extended, second octet missing", offset=offset
            )
        code = (first >> 4) & 0b111
        if code not in (TimeCodeId.TAI_1958_EPOCH, TimeCodeId.AGENCY_EPOCH):
            raise FieldError(
                f"time code identification {code:03b} is not a CUC code", offset=offset
            )
        coarse = ((first >> 2) & 0b11) + 1
        fine = first & 0b11
        if extended:
            second = buffer[offset + 1]
            if second >> 7:
                raise FieldError("CUC P-field extended beyond its second octet", offset=offset + 1)
            if second & 0b11:
                # Reserved for mission definition; Penumbra defines none, so a set bit is foreign.
                raise FieldError("CUC P-field reserved bits are set", offset=offset + 1)
            coarse += (second >> 5) & 0b11
            fine += (second >> 2) & 0b111
        return cls(TimeCodeId(code), coarse, fine), offset + 1 + extended


@dataclass(frozen=True, slots=True)
class ExplicitCucTime:
    """A self-identified CUC time code (P-field + T-field) of any width, for `penumbra decode`.

    `coarse` counts seconds and `fine` counts 2**(-8 * fine_octets) s from the P-field's epoch.
    """

    p_field: CucPField
    coarse: int
    fine: int

    @property
    def seconds(self) -> float:
        """Seconds since the P-field's epoch, rounded to a double beyond 53 bits of code."""
        return self.coarse + self.fine / (1 << (8 * self.p_field.fine_octets))

    def encode(self) -> bytes:
        p_field = self.p_field.encode()
        check_field(self.coarse, (1 << (8 * self.p_field.coarse_octets)) - 1, "coarse time")
        check_field(self.fine, (1 << (8 * self.p_field.fine_octets)) - 1, "fine time")
        value = (self.coarse << (8 * self.p_field.fine_octets)) | self.fine
        return p_field + value.to_bytes(self.p_field.t_field_length, "big")

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "ExplicitCucTime":
        """Decode exactly one self-identified time code."""
        time, end = cls.decode_from(buffer)
        if end != len(buffer):
            raise LengthError(
                f"CUC time code is {end} octets by its P-field, buffer has {len(buffer)}",
                offset=end,
            )
        return time

    @classmethod
    def decode_from(
        cls, buffer: bytes | bytearray | memoryview, offset: int = 0
    ) -> tuple["ExplicitCucTime", int]:
        p_field, start = CucPField.decode_from(buffer, offset)
        end = start + p_field.t_field_length
        if len(buffer) < end:
            raise TruncatedError(
                f"CUC T-field needs {p_field.t_field_length} octets by its P-field, "
                f"{len(buffer) - start} present",
                offset=start,
            )
        value = int.from_bytes(buffer[start:end], "big")
        fine_bits = 8 * p_field.fine_octets
        return cls(p_field, value >> fine_bits, value & ((1 << fine_bits) - 1)), end
