"""Consistent Overhead Byte Stuffing (Cheshire & Baker 1999): zero-delimited serial frames."""

from enum import IntEnum

from flight.protocol.errors import FieldError, TruncatedError

DELIMITER = b"\x00"
MAX_BLOCK = 254  # non-zero octets one code octet can announce (code 0xFF)

# One-octet bytes for every code value: indexing a tuple is cheaper than bytes((n,)) per block.
_CODE: tuple[bytes, ...] = tuple(bytes((value,)) for value in range(256))


def max_encoded_length(length: int) -> int:
    """Longest encoding of `length` octets, delimiter excluded: a code octet per started 254."""
    return length + length // MAX_BLOCK + 1


def encode(data: bytes | bytearray | memoryview) -> bytes:
    """COBS-encode `data`; the result holds no zero octet and carries no delimiter.

    The data is cut at its zeros with bytes.split (C speed); Python loops once per block, not per
    octet. Data that ends with a full 254-octet block gets no trailing 0x01 code: the shorter form
    of the Wikipedia examples. The paper's reference C code emits the 0x01; `decode` takes both.
    """
    blocks = bytes(data).split(DELIMITER)
    last = len(blocks) - 1
    parts: list[bytes] = []
    append = parts.append
    for index, block in enumerate(blocks):
        length = len(block)
        if length < MAX_BLOCK:
            append(_CODE[length + 1])
            append(block)
            continue
        start = 0
        while length - start >= MAX_BLOCK:
            append(b"\xff")
            append(block[start : start + MAX_BLOCK])
            start += MAX_BLOCK
        # A zero follows every block but the last, and only a short code can stand for it.
        if start < length or index != last:
            append(_CODE[length - start + 1])
            append(block[start:])
    return b"".join(parts)


def decode(encoded: bytes | bytearray | memoryview) -> bytes:
    """Decode one COBS encoding (delimiter already removed).

    Raises TruncatedError for empty input and FieldError, with the offset, for a zero octet or a
    code that runs past the end. Structure is all COBS can check: a corrupted octet that keeps the
    structure valid decodes to wrong data, which the frame's own CRC (FECF) one layer up rejects.
    """
    data = bytes(encoded)
    end = len(data)
    if end == 0:
        raise TruncatedError("empty COBS encoding: at least one code octet is needed", offset=0)
    zero = data.find(0)
    if zero >= 0:
        raise FieldError("zero octet inside a COBS encoding", offset=zero)
    parts: list[bytes] = []
    append = parts.append
    position = 0
    while position < end:
        code = data[position]
        block_end = position + code
        if block_end > end:
            raise FieldError(
                f"COBS code {code:#04x} announces {code - 1} octets, "
                f"only {end - position - 1} follow",
                offset=position,
            )
        append(data[position + 1 : block_end])
        # Every short block stands for the octets up to a zero, except the one that ends the data.
        if code != 0xFF and block_end < end:
            append(DELIMITER)
        position = block_end
    return b"".join(parts)


def frame(data: bytes | bytearray | memoryview) -> bytes:
    """`data` encoded and terminated by the zero delimiter, ready for a serial link."""
    return encode(data) + DELIMITER


class DiscardReason(IntEnum):
    """Why `CobsDeframer` last threw octets away (a telemetry field)."""

    NONE = 0
    MALFORMED = 1  # zero-free run that is not a valid COBS encoding (code overrun)
    TOO_LONG = 2  # more octets before the delimiter than the longest frame allows
    RESET = 3  # a partial frame dropped by reset()


class CobsDeframer:
    """Cuts a byte stream at zero delimiters and decodes each frame; resynchronises at a zero.

    A frame that fails to decode or is longer than `max_frame_length` decoded octets is discarded
    whole, up to the next delimiter, and counted. Memory stays bounded: once the octets pending
    since the last delimiter exceed the longest possible encoding, they are dropped and the rest of
    that frame is skipped. Two delimiters in a row make no frame: a sender may put an extra zero
    before each frame to flush a receiver that joined mid-frame. Garbage that happens to be valid
    COBS comes out as a frame; the frame's FECF rejects it one layer up.
    """

    def __init__(self, max_frame_length: int) -> None:
        if max_frame_length < 1:
            raise ValueError(f"max_frame_length must be at least 1, not {max_frame_length}")
        self.max_frame_length = max_frame_length
        self.max_encoded_length = max_encoded_length(max_frame_length)
        self.frames = 0
        self.discarded_frames = 0
        self.discarded_octets = 0
        self.last_discard_reason = DiscardReason.NONE
        self.last_discard_message = ""
        self._pending = bytearray()
        # Inside a frame already discarded as too long: drop up to the delimiter.
        self._skipping = False

    @property
    def pending_octets(self) -> int:
        """Octets received since the last delimiter and held for the frame in progress."""
        return len(self._pending)

    def reset(self) -> None:
        """Forget the frame in progress (for example when the link reopens); counters are kept."""
        if self._pending:
            self._discard(len(self._pending), DiscardReason.RESET, "link reset mid-frame")
        self._pending.clear()
        self._skipping = False

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[bytes]:
        """Take the next octets from the link; return the frames they complete, in order."""
        data = bytes(chunk)
        frames: list[bytes] = []
        pending = self._pending
        start = 0
        while True:
            end = data.find(0, start)
            if end < 0:
                self._hold(data, start)
                return frames
            if self._skipping:
                self.discarded_octets += end - start
                self._skipping = False
            elif pending:
                pending += data[start:end]
                encoded = bytes(pending)
                pending.clear()
                self._finish(encoded, frames)
            elif end > start:
                self._finish(data[start:end], frames)
            start = end + 1

    def _hold(self, data: bytes, start: int) -> None:
        """Keep the octets after the last delimiter, unless their frame is already too long."""
        rest = len(data) - start
        if rest == 0:
            return
        if self._skipping:
            self.discarded_octets += rest
            return
        self._pending += data[start:]
        if len(self._pending) > self.max_encoded_length:
            self._discard(
                len(self._pending),
                DiscardReason.TOO_LONG,
                f"no delimiter within {self.max_encoded_length} octets",
            )
            self._pending.clear()
            self._skipping = True

    def _finish(self, encoded: bytes, frames: list[bytes]) -> None:
        if len(encoded) > self.max_encoded_length:
            self._discard(
                len(encoded),
                DiscardReason.TOO_LONG,
                f"encoding of {len(encoded)} octets, at most {self.max_encoded_length} allowed",
            )
            return
        try:
            decoded = decode(encoded)
        except (FieldError, TruncatedError) as error:
            self._discard(len(encoded), DiscardReason.MALFORMED, str(error))
            return
        if len(decoded) > self.max_frame_length:
            self._discard(
                len(encoded),
                DiscardReason.TOO_LONG,
                f"frame of {len(decoded)} octets, at most {self.max_frame_length} allowed",
            )
            return
        self.frames += 1
        frames.append(decoded)

    def _discard(self, octets: int, reason: DiscardReason, message: str) -> None:
        self.discarded_frames += 1
        self.discarded_octets += octets
        self.last_discard_reason = reason
        self.last_discard_message = message
