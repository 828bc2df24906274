"""The interface control document in code: every format on the wire, for flight, ground, bench."""

from flight.protocol.errors import (
    AddressError,
    AuthenticationError,
    ChecksumError,
    FieldError,
    LengthError,
    ProtocolError,
    ReplayError,
    TruncatedError,
)

__all__ = [
    "AddressError",
    "AuthenticationError",
    "ChecksumError",
    "FieldError",
    "LengthError",
    "ProtocolError",
    "ReplayError",
    "TruncatedError",
]
