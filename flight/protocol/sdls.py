"""SDLS-style (CCSDS 355.0-B-2) AES-256-GCM authentication and anti-replay of TC frames."""

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from pathlib import Path

from construct import Bytes, Int16ub, Struct
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from flight.protocol import icd
from flight.protocol.errors import (
    AuthenticationError,
    FieldError,
    LengthError,
    ReplayError,
    TruncatedError,
    check_field,
)
from flight.protocol.tc_frame import (
    FECF_LENGTH,
    MAX_FRAME_LENGTH,
    PRIMARY_HEADER_LENGTH,
    SEGMENT_HEADER_LENGTH,
    TcFrame,
)

SPI_OCTETS = 2
IV_OCTETS = icd.SDLS_IV_OCTETS
MAC_OCTETS = icd.SDLS_MAC_OCTETS
SECURITY_HEADER_LENGTH = SPI_OCTETS + IV_OCTETS
SECURITY_TRAILER_LENGTH = MAC_OCTETS
SECURITY_OVERHEAD = SECURITY_HEADER_LENGTH + SECURITY_TRAILER_LENGTH
KEY_OCTETS = 32  # AES-256
MAX_SPI = 0xFFFF
MAX_IV = (1 << (8 * IV_OCTETS)) - 1
_KEY_FILE_LIMIT = 4096  # a key file is 32 or ~65 octets; never read an arbitrarily large file

SECURITY_HEADER = Struct(
    "security_parameter_index" / Int16ub,
    "initialization_vector" / Bytes(IV_OCTETS),
)
"""Security Header, 355.0-B-2 4.1.1, as this ICD fixes it: SPI (4.1.1.2) and a 12-octet IV
(4.1.1.3); the Sequence Number (4.1.1.4) and Pad Length fields have length 0 in every Penumbra SA.
Reference declaration; `SecurityHeader` is the fast path."""

SECURITY_TRAILER = Struct("message_authentication_code" / Bytes(MAC_OCTETS))
"""Security Trailer, 355.0-B-2 4.1.2: the MAC field (4.1.2.3), here the 16-octet GCM tag."""


class ServiceType(IntEnum):
    """Security service of an SA (355.0-B-2 service types); configuration, not a wire field."""

    AUTHENTICATION = 1  # GMAC: header, security header and data authenticated, data left readable
    AUTHENTICATED_ENCRYPTION = 3  # GCM: data encrypted, header and security header authenticated


class KeyFileError(Exception):
    """A key file that cannot be used: missing, too open, or not 32 octets (configuration)."""


@dataclass(frozen=True, slots=True)
class SecurityHeader:
    """Security Header fields; the IV as the big-endian integer it counts (as CryptoLib does)."""

    spi: int
    iv: int

    def encode(self) -> bytes:
        check_field(self.spi, MAX_SPI, "SPI")
        # Written out: "0..2**96-1" reads better than the 29 digits check_field would print.
        if not 0 <= self.iv <= MAX_IV:
            raise FieldError(f"IV {self.iv} outside 0..2**96-1")
        return self.spi.to_bytes(SPI_OCTETS, "big") + self.iv.to_bytes(IV_OCTETS, "big")

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "SecurityHeader":
        """Decode the security header at the start of `buffer` (the frame data field)."""
        if len(buffer) < SECURITY_HEADER_LENGTH:
            raise TruncatedError(
                f"{len(buffer)} octets, a security header needs {SECURITY_HEADER_LENGTH}", offset=0
            )
        return cls(
            int.from_bytes(buffer[:SPI_OCTETS], "big"),
            int.from_bytes(buffer[SPI_OCTETS:SECURITY_HEADER_LENGTH], "big"),
        )


def max_protected_data_length(map_id_present: bool = True) -> int:
    """Most octets of data a protected TC frame carries (986 with a segment header): what the
    longest frame leaves after its headers, the security header and trailer, and the FECF."""
    headers = PRIMARY_HEADER_LENGTH + (SEGMENT_HEADER_LENGTH if map_id_present else 0)
    return MAX_FRAME_LENGTH - headers - SECURITY_OVERHEAD - FECF_LENGTH


def check_secured_length(length: int, *, offset: int = 0) -> None:
    """TruncatedError unless a frame data field of `length` octets, starting at `offset`, can hold
    the security header and trailer."""
    if length < SECURITY_OVERHEAD:
        raise TruncatedError(
            f"frame data field of {length} octets cannot hold the "
            f"{SECURITY_HEADER_LENGTH}-octet security header and "
            f"{SECURITY_TRAILER_LENGTH}-octet trailer of this secured virtual channel",
            offset=offset,
        )


def seal(
    cipher: AESGCM, iv: bytes, aad: bytes, data: bytes, service_type: ServiceType
) -> tuple[bytes, bytes]:
    """Protect `data`: return the octets to send in its place and the MAC.

    AUTHENTICATION is GMAC: all of it is additional authenticated data, `data` goes out unchanged.
    AUTHENTICATED_ENCRYPTION is GCM: `aad` authenticated, `data` encrypted.
    """
    if service_type == ServiceType.AUTHENTICATION:
        return data, cipher.encrypt(iv, b"", aad + data)
    if service_type == ServiceType.AUTHENTICATED_ENCRYPTION:
        sealed = cipher.encrypt(iv, data, aad)
        return sealed[:-MAC_OCTETS], sealed[-MAC_OCTETS:]
    raise ValueError(f"service type {service_type!r} is not one this ICD defines")


def unseal(
    cipher: AESGCM, iv: bytes, aad: bytes, data: bytes, mac: bytes, service_type: ServiceType
) -> bytes:
    """Verify (and decrypt) what `seal` produced; AuthenticationError if the MAC does not verify."""
    try:
        if service_type == ServiceType.AUTHENTICATION:
            cipher.decrypt(iv, mac, aad + data)
            return data
        if service_type == ServiceType.AUTHENTICATED_ENCRYPTION:
            return cipher.decrypt(iv, data + mac, aad)
    except InvalidTag:
        raise AuthenticationError("MAC does not verify") from None
    raise ValueError(f"service type {service_type!r} is not one this ICD defines")


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """One SA: the key, the virtual channels it protects, how, and the anti-replay window."""

    spi: int
    key: bytes = field(repr=False)
    service_type: ServiceType = ServiceType.AUTHENTICATION
    replay_window: int = icd.SDLS_REPLAY_WINDOW
    virtual_channels: frozenset[int] = frozenset(icd.TcVirtualChannel)

    def __post_init__(self) -> None:
        # Normalise what a configuration file hands over (an int, a bytearray, a list).
        object.__setattr__(self, "service_type", ServiceType(self.service_type))
        object.__setattr__(self, "key", bytes(self.key))
        object.__setattr__(self, "virtual_channels", frozenset(self.virtual_channels))
        if not 0 <= self.spi <= MAX_SPI:
            raise ValueError(f"SPI {self.spi} outside 0..{MAX_SPI}")
        if len(self.key) != KEY_OCTETS:
            # The length only: a key never appears in a message.
            raise ValueError(
                f"SA {self.spi}: AES-256 needs a {KEY_OCTETS}-octet key, not {len(self.key)}"
            )
        if self.replay_window < 1:
            raise ValueError(f"SA {self.spi}: replay window must be at least 1")
        if not self.virtual_channels or not all(0 <= vc <= 63 for vc in self.virtual_channels):
            raise ValueError(
                f"SA {self.spi}: virtual channels must be a non-empty set within 0..63"
            )


class ReplayWindow:
    """Anti-replay state of one SA: the highest IV accepted, and which of the `width` below it.

    A number is accepted if it is at most `width` above the highest accepted (a gap: frames lost
    on the way), or below it by less than `width` and not yet seen (frames reordered). All else is
    a replay or out of the window. `restore` treats every number up to the restored one as seen,
    so a restart can only make the window stricter.
    """

    __slots__ = ("_mask", "_seen", "last_accepted", "width")

    def __init__(self, width: int, last_accepted: int = 0) -> None:
        self.width = width
        self._mask = (1 << width) - 1
        self.last_accepted = 0
        self._seen = 0
        self.restore(last_accepted)

    def restore(self, last_accepted: int) -> None:
        """Restart from a persisted highest accepted number; everything up to it counts as seen.

        Never lower than what this window already accepted: a stale persisted value must not
        reopen numbers that were used since it was written.
        """
        if not 0 <= last_accepted <= MAX_IV:
            raise ValueError(f"last accepted IV {last_accepted} outside 0..2**96-1")
        self.last_accepted = max(last_accepted, self.last_accepted)
        self._seen = self._mask  # bit i: last_accepted - i was accepted (or is presumed so)

    def check(self, number: int, *, offset: int | None = None) -> None:
        """ReplayError unless `number` may be accepted; changes nothing."""
        last = self.last_accepted
        if number > last:
            if number - last > self.width:
                raise ReplayError(
                    f"IV {number:#x} is {number - last} above the last accepted {last:#x}, "
                    f"beyond the window of {self.width}",
                    offset=offset,
                )
            return
        behind = last - number
        if behind >= self.width:
            raise ReplayError(
                f"IV {number:#x} is {behind} below the last accepted {last:#x}, "
                f"outside the window of {self.width}",
                offset=offset,
            )
        if self._seen >> behind & 1:
            raise ReplayError(f"IV {number:#x} already accepted (replay)", offset=offset)

    def accept(self, number: int) -> None:
        """Record `number` as used; call only after `check` passed and the MAC verified."""
        last = self.last_accepted
        if number > last:
            self._seen = ((self._seen << (number - last)) | 1) & self._mask
            self.last_accepted = number
        else:
            self._seen |= 1 << (last - number)


class _SaState:
    """An SA with its cipher (the AES key schedule is built once) and its anti-replay window."""

    __slots__ = ("association", "cipher", "window")

    def __init__(self, association: SecurityAssociation) -> None:
        self.association = association
        self.cipher = AESGCM(association.key)
        self.window = ReplayWindow(association.replay_window)


class TcSecurity:
    """ApplySecurity (ground) and ProcessSecurity (onboard) for TC frames under a set of SAs.

    Frame data field on the wire: SPI (2) | IV (12) | data | MAC (16), between the segment header
    and the FECF. The IV is the anti-replay sequence number: for a GCM SA CryptoLib transmits the
    whole IV and uses no separate ARSN, and so does Penumbra. The MAC covers the primary and
    segment headers exactly as sent (every bit; no authentication mask), so the frame sequence
    number must be set before `apply`. COP-1 control commands (control command flag set) stay in
    clear, as 355.0-B-2 leaves them, and pass both ways untouched. The counters are telemetry.
    """

    def __init__(self, associations: Iterable[SecurityAssociation]) -> None:
        self._states: dict[int, _SaState] = {}
        for association in associations:
            if association.spi in self._states:
                raise ValueError(f"two security associations with SPI {association.spi}")
            self._states[association.spi] = _SaState(association)
        self.frames_accepted = 0
        self.frames_clear = 0
        self.rejected_truncated = 0
        self.rejected_unknown_spi = 0
        self.rejected_mac = 0
        self.rejected_replay = 0
        # SPI of the last frame accepted: set only once its MAC and IV passed, so a forged or
        # replayed frame cannot change what housekeeping reports.
        self.last_spi: int | None = None

    def last_accepted(self, spi: int) -> int:
        """Highest IV accepted on this SA: persist it (atomically) so a restart cannot reopen it."""
        return self._state(spi).window.last_accepted

    def restore(self, spi: int, last_accepted: int) -> None:
        """Restart the window from a persisted `last_accepted`; it and all below are refused."""
        self._state(spi).window.restore(last_accepted)

    def apply(self, frame: TcFrame, *, iv: int, spi: int | None = None) -> TcFrame:
        """Ground side: return `frame` with its data wrapped in the security header and trailer.

        `iv` must never repeat under one key; keeping that counter (persisted, monotonic) is the
        caller's job. The SA is `spi`, or else the one SA that covers the frame's virtual channel.
        """
        if frame.control_command_flag:
            return frame
        if not 0 <= iv <= MAX_IV:
            raise FieldError(f"IV {iv} outside 0..2**96-1")
        state = self._state_for(frame, spi)
        association = state.association
        # Checked here, before header_octets would refuse the frame without saying what fits.
        room = max_protected_data_length(frame.map_id is not None)
        if len(frame.data) > room:
            raise LengthError(
                f"frame data of {len(frame.data)} octets: at most {room} fit a protected TC "
                "frame; split the data over more frames"
            )
        protected_length = len(frame.data) + SECURITY_OVERHEAD
        header = frame.header_octets(protected_length)
        security_header = SecurityHeader(association.spi, iv).encode()
        body, mac = seal(
            state.cipher,
            security_header[SPI_OCTETS:],
            header + security_header,
            frame.data,
            association.service_type,
        )
        return replace(frame, data=security_header + body + mac)

    def process(self, frame: TcFrame) -> TcFrame:
        """Onboard: verify the MAC, then the anti-replay window; return the frame with bare data.

        Unknown SPI, an SA not bound to the frame's virtual channel, or a MAC that does not verify:
        AuthenticationError. An authentic frame whose IV was already accepted or lies outside the
        window: ReplayError. The window moves only after the MAC verifies, so forged frames cannot
        use up numbers. Offsets count octets from the start of the frame.
        """
        if frame.control_command_flag:
            self.frames_clear += 1
            return frame
        data = frame.data
        data_offset = PRIMARY_HEADER_LENGTH + (0 if frame.map_id is None else SEGMENT_HEADER_LENGTH)
        try:
            check_secured_length(len(data), offset=data_offset)
        except TruncatedError:
            self.rejected_truncated += 1
            raise
        spi = (data[0] << 8) | data[1]
        state = self._states.get(spi)
        if state is None:
            self.rejected_unknown_spi += 1
            raise AuthenticationError(f"no security association with SPI {spi}", offset=data_offset)
        association = state.association
        if frame.virtual_channel_id not in association.virtual_channels:
            self.rejected_unknown_spi += 1
            raise AuthenticationError(
                f"SA {spi} does not cover virtual channel {frame.virtual_channel_id}",
                offset=data_offset,
            )
        iv = bytes(data[SPI_OCTETS:SECURITY_HEADER_LENGTH])
        mac_start = len(data) - MAC_OCTETS
        try:
            payload = unseal(
                state.cipher,
                iv,
                frame.header_octets(len(data)) + bytes(data[:SECURITY_HEADER_LENGTH]),
                bytes(data[SECURITY_HEADER_LENGTH:mac_start]),
                bytes(data[mac_start:]),
                association.service_type,
            )
        except AuthenticationError:
            self.rejected_mac += 1
            raise AuthenticationError(
                f"MAC does not verify under SA {spi}", offset=data_offset + mac_start
            ) from None
        number = int.from_bytes(iv, "big")
        try:
            state.window.check(number, offset=data_offset + SPI_OCTETS)
        except ReplayError:
            self.rejected_replay += 1
            raise
        state.window.accept(number)
        self.frames_accepted += 1
        self.last_spi = spi
        return replace(frame, data=payload)

    def _state(self, spi: int) -> _SaState:
        try:
            return self._states[spi]
        except KeyError:
            raise KeyError(f"no security association with SPI {spi}") from None

    def _state_for(self, frame: TcFrame, spi: int | None) -> _SaState:
        vc = frame.virtual_channel_id
        if spi is not None:
            state = self._states.get(spi)
            if state is None:
                raise FieldError(f"no security association with SPI {spi}")
            if vc not in state.association.virtual_channels:
                raise FieldError(f"SA {spi} does not cover virtual channel {vc}")
            return state
        candidates = [s for s in self._states.values() if vc in s.association.virtual_channels]
        if len(candidates) != 1:
            raise FieldError(
                f"{len(candidates)} security associations cover virtual channel {vc}; pass spi="
            )
        return candidates[0]


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read an AES-256 key: a file of 32 raw octets, or of 64 hex digits (whitespace around them).

    It must be a regular file that neither group nor others may access (mode & 0o077 == 0).
    Messages never include key material.
    """
    path = Path(path)
    try:
        # O_NONBLOCK: a FIFO put in the key's place must not hang the node at start-up.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as file:
            # fstat on the open file: the mode checked is the mode of the file actually read.
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise KeyFileError(f"key file {path} is not a regular file")
            if mode & 0o077:
                raise KeyFileError(
                    f"key file {path} has mode {stat.S_IMODE(mode):04o}: group or others may "
                    f"access it. Restrict it to its owner with `chmod 600 {path}`, and replace "
                    "the key if others may have read it"
                )
            raw = file.read(_KEY_FILE_LIMIT + 1)
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror}") from None
    text = raw.strip()
    if len(raw) == KEY_OCTETS:
        # 32 hex digits are a 128-bit key written as text, not 32 raw octets: refuse, never weaken.
        if _is_hex(text):
            raise KeyFileError(
                f"key file {path} holds {len(text)} hexadecimal digits: an AES-256 key is "
                f"{2 * KEY_OCTETS} digits or {KEY_OCTETS} raw octets"
            )
        return raw
    if len(text) == 2 * KEY_OCTETS and _is_hex(text):
        return bytes.fromhex(text.decode("ascii"))
    raise KeyFileError(
        f"key file {path} holds {len(raw)} octets: expected {KEY_OCTETS} raw octets "
        f"or {2 * KEY_OCTETS} hexadecimal digits"
    )


def _is_hex(text: bytes) -> bool:
    return bool(text) and all(octet in b"0123456789abcdefABCDEF" for octet in text)
