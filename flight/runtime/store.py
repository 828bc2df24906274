"""Crash-consistent persistence: atomic files, checked JSON records, counters that never repeat.

Power can vanish at any instruction. Every write goes to a temporary file in the same directory,
is flushed and fsync'd, renamed over the old file and the directory fsync'd, so a reader finds
either the old record or the new one, never a mixture. Each record carries a format version and
a CRC-32 of its payload, so a torn or bit-rotted file is reported instead of being believed.

Writes block the caller for an fsync (milliseconds on an SD card): callers that need many values
per second, like `Counter`, write once per block of values, not once per value.
"""

import errno
import json
import os
import re
import tempfile
import zlib
from contextlib import suppress
from pathlib import Path

FORMAT_VERSION = 1
"""The record format this code writes and reads."""

_HEADER = re.compile(rb"penumbra-store/(\d+) crc32=([0-9a-f]{8}) length=(\d+)")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_SUFFIX = ".json"
_TEMPORARY_SUFFIX = ".tmp"

_ERRNO_ADVICE = {
    errno.ENOSPC: "free space on that file system",
    errno.EDQUOT: "free space or raise the quota on that file system",
    errno.EACCES: "check the permissions of the directory",
    errno.EPERM: "check the permissions of the directory",
    errno.EROFS: "mount that file system read-write",
}


class StoreError(Exception):
    """A record that cannot be written, or that is missing its checks, torn or corrupt."""


def _describe(exc: OSError) -> str:
    """The errno text of `exc` and, where there is one, what the operator can do about it."""
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    advice = _ERRNO_ADVICE.get(exc.errno) if exc.errno else None
    return f"{text}; {advice}" if advice else text


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable: the new name lives in the directory's own blocks."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash at any point leaves the old or the new file.

    Raises `StoreError` naming the path and the errno text (a full disk, a read-only file system);
    the old file is then untouched and no temporary file is left behind.
    """
    path = Path(path)
    directory = path.parent
    try:
        fd, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX, dir=directory
        )
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {_describe(exc)}") from exc
    try:
        try:
            view = memoryview(data)
            while view:
                # os.write may write less than asked (a signal, a nearly full disk): finish it.
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(temporary)
        raise StoreError(f"cannot write {path}: {_describe(exc)}") from exc
    try:
        _fsync_directory(directory)
    except OSError as exc:
        # The new file is in place but might not survive a power cut: the caller must not act
        # as if it were durable (a Counter would hand out values it has not safely reserved).
        raise StoreError(f"wrote {path} but could not make it durable: {_describe(exc)}") from exc


def encode_record(value: dict) -> bytes:
    """A store record: a header line with version, CRC-32 and length, then the JSON payload."""
    payload = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False).encode()
    header = (
        f"penumbra-store/{FORMAT_VERSION} crc32={zlib.crc32(payload):08x} length={len(payload)}"
    )
    return header.encode() + b"\n" + payload + b"\n"


def decode_record(data: bytes, path: Path) -> dict:
    """The payload of a store record read from `path`; `StoreError` saying why if it is corrupt."""

    def corrupt(why: str) -> StoreError:
        return StoreError(f"store file {path} is corrupt: {why}")

    header, newline, rest = data.partition(b"\n")
    if not newline:
        raise corrupt(f"no header line in {len(data)} octets (torn write or not a store file)")
    match = _HEADER.fullmatch(header)
    if match is None:
        raise corrupt(f"header {header[:60]!r} is not 'penumbra-store/<version> crc32=… length=…'")
    version, crc, length = int(match[1]), int(match[2], 16), int(match[3])
    if version != FORMAT_VERSION:
        raise corrupt(
            f"format version {version}; this software reads version {FORMAT_VERSION} "
            "(written by other software: restore a backup or remove the file to use defaults)"
        )
    if len(rest) != length + 1 or not rest.endswith(b"\n"):
        raise corrupt(f"payload is {max(len(rest) - 1, 0)} octets, header says {length}")
    payload = rest[:length]
    if zlib.crc32(payload) != crc:
        raise corrupt(f"CRC-32 is {zlib.crc32(payload):08x}, header says {crc:08x}")
    try:
        value = json.loads(payload.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise corrupt(f"payload is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise corrupt(f"payload is a JSON {type(value).__name__}, not an object")
    return value


class Store:
    """Named records (JSON objects) in one directory, each written atomically with its checks.

    Not thread-safe: one owner (the node's loop) reads and writes a store. Opening a Store
    deletes temporaries that a crash left in its directory, so open each directory once, at
    start-up, not while a write to it may be in progress in another thread.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create store directory {self.directory}: {_describe(exc)}"
            ) from exc
        if not self.directory.is_dir():
            raise StoreError(f"store directory {self.directory} exists but is not a directory")
        self._remove_temporaries()

    def _remove_temporaries(self) -> None:
        """Delete temporaries left by a crash mid-write; the records they were for are intact."""
        with suppress(OSError):
            for entry in self.directory.iterdir():
                if entry.name.startswith(".") and entry.name.endswith(_TEMPORARY_SUFFIX):
                    with suppress(OSError):
                        entry.unlink()

    def path(self, name: str) -> Path:
        """The file that holds record `name`."""
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"store record name {name!r} must be 1-128 letters, digits, '_', '.' or '-' "
                "and not start with '.' or '-'"
            )
        return self.directory / f"{name}{_SUFFIX}"

    def load(self, name: str) -> dict | None:
        """Record `name`, or None if it was never saved; `StoreError` if unreadable or corrupt."""
        path = self.path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read store file {path}: {_describe(exc)}") from exc
        return decode_record(data, path)

    def save(self, name: str, value: dict) -> None:
        """Replace record `name` with `value` atomically (a JSON object; no NaN or infinity)."""
        path = self.path(name)
        if not isinstance(value, dict):
            raise StoreError(f"cannot save {path}: a record is a dict, not {type(value).__name__}")
        try:
            data = encode_record(value)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cannot save {path}: the value is not plain JSON: {exc}") from exc
        atomic_write(path, data)


class Counter:
    """A persistent counter whose values never repeat, not even across crashes and power cuts.

    Before it hands out a value from a new block it saves the end of that block
    (`reserved_until`); after a restart it continues from the saved end. A crash therefore skips
    at most `reserve` values and never repeats one, at the cost of one store write per block.

    With a `modulus` (2**14 for Space Packet sequence counts), `next()` returns the value modulo
    `modulus`, while the count kept and saved keeps growing, so the wrapped sequence restarts
    where it left off rather than at zero.
    """

    def __init__(
        self, store: Store, name: str, *, reserve: int = 64, modulus: int | None = None
    ) -> None:
        if reserve < 1:
            raise ValueError(f"counter {name!r}: reserve must be at least 1, not {reserve}")
        if modulus is not None and modulus < 1:
            raise ValueError(f"counter {name!r}: modulus must be at least 1, not {modulus}")
        self._store = store
        self.name = name
        self.reserve = reserve
        self.modulus = modulus
        record = store.load(name)
        start = 0
        if record is not None:
            start = record.get("reserved_until")
            # bool is an int in Python; a counter stored as true/false is corruption all the same.
            if not isinstance(start, int) or isinstance(start, bool) or start < 0:
                raise StoreError(
                    f"store file {store.path(name)} is corrupt: reserved_until is {start!r}, "
                    "not a count >= 0 (restore it or set it above every value already used)"
                )
        self._next = start
        self._reserved_until = start

    def _wrap(self, raw: int) -> int:
        return raw if self.modulus is None else raw % self.modulus

    def _reserve_to(self, reserved_until: int) -> None:
        self._store.save(self.name, {"reserved_until": reserved_until})
        self._reserved_until = reserved_until

    def next(self) -> int:
        """The next value (modulo `modulus` if set); `StoreError` if it could not be reserved."""
        raw = self._next
        if raw >= self._reserved_until:
            self._reserve_to(raw + self.reserve)
        self._next = raw + 1
        return self._wrap(raw)

    def peek(self) -> int:
        """What `next()` would return, without taking it."""
        return self._wrap(self._next)

    @property
    def value(self) -> int:
        """The raw count (never wrapped, never lower): the value the next `next()` hands out."""
        return self._next

    @property
    def reserved_until(self) -> int:
        """The saved end of the current block: no value at or above it has been handed out."""
        return self._reserved_until

    def advance_to(self, value: int) -> None:
        """Make every later `next()` return at least raw `value` (never lowers the count).

        Used when values up to `value` are known to be taken elsewhere, e.g. seen from a peer.
        """
        if value <= self._next:
            return
        if value > self._reserved_until:
            self._reserve_to(value + self.reserve)
        self._next = value
