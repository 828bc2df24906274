"""One exception family for everything malformed or unacceptable on the wire.

Parsers check lengths and checksums before they interpret a field and raise only these; any
other exception from a parser is a bug. Encoders raise `FieldError` for a value that does not
fit its field (`check_field`).
"""


class ProtocolError(Exception):
    """Input that does not follow the ICD; `offset` is where in the input (octets), if known."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset

    def __str__(self) -> str:
        return self.message if self.offset is None else f"{self.message} (at octet {self.offset})"


class TruncatedError(ProtocolError):
    """Fewer octets than a header or a length field requires."""


class LengthError(ProtocolError):
    """A length field disagrees with the buffer, or a length is outside what the ICD allows."""


class ChecksumError(ProtocolError):
    """A CRC, frame error control field or file checksum does not match."""


class FieldError(ProtocolError):
    """A field holds a value the standard or the ICD forbids (version, reserved bits, type)."""


class AddressError(ProtocolError):
    """Well formed but addressed elsewhere: another spacecraft, an unknown channel or APID."""


class AuthenticationError(ProtocolError):
    """The security trailer does not verify, or the security association is unknown."""


class ReplayError(AuthenticationError):
    """An anti-replay sequence number already seen, or outside the acceptance window."""


def check_field(value: int, maximum: int, what: str, *, minimum: int = 0) -> None:
    """FieldError unless `minimum <= value <= maximum`: the encoders' one range check."""
    if not minimum <= value <= maximum:
        raise FieldError(f"{what} {value} outside {minimum}..{maximum}")
