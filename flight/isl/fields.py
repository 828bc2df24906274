"""Field codecs shared by ISL messages: IEEE 754 float32 quantities and CUC mission times."""

import math
import struct

from flight.protocol.cuc import T_FIELD_LENGTH, CucTime
from flight.protocol.errors import FieldError

FLOAT32 = struct.Struct(">f")
TIME_LENGTH = T_FIELD_LENGTH
"""Octets of a mission time on the ISL: the ICD's CUC T-field (TAI since 1958, 4 + 2 octets)."""


def check_finite(value: float, what: str, *, minimum: float = -math.inf) -> None:
    """FieldError unless `value` is a finite number >= `minimum`."""
    if not (math.isfinite(value) and value >= minimum):
        raise FieldError(f"{what} {value} is not a finite number >= {minimum}")


def check_float32(value: float, what: str, *, minimum: float = -math.inf) -> None:
    """FieldError unless `value` is finite, >= `minimum`, and still finite as a float32."""
    check_finite(value, what, minimum=minimum)
    try:
        FLOAT32.pack(value)
    except OverflowError:
        raise FieldError(f"{what} {value} does not fit a float32") from None


def as_float32(value: float) -> float:
    """`value` rounded to the nearest float32: what a receiver decodes after we encode it."""
    return FLOAT32.unpack(FLOAT32.pack(value))[0]


def encode_time(seconds_tai: float, what: str) -> bytes:
    """A mission time (TAI seconds since 1958) as the CUC T-field, rounded down to 2**-16 s."""
    try:
        return CucTime.from_seconds(seconds_tai).encode()
    except FieldError as error:
        raise FieldError(f"{what}: {error.message}") from None


def decode_time(buffer: bytes | bytearray | memoryview, offset: int) -> float:
    """The mission time whose T-field starts at `offset` (the caller checked the length)."""
    return CucTime.decode_from(buffer, offset)[0].seconds
