"""Serial link: COBS-delimited frames over a tty, a pty or a raw TCP stream (pyserial's socket://).

The port's file descriptor is non-blocking and registered with the running loop (`add_reader`,
`add_writer`) rather than read by a thread: nothing blocks the loop, nothing crosses threads,
closing needs no way to interrupt a blocked read, and it also runs on the virtual-time loop,
which serves real descriptors. Bytes go through `os.read`/`os.write`; pyserial only opens and
configures a tty (baud rate, raw 8N1, an exclusive lock).

When the device vanishes (a USB adapter unplugged, the pty's other end closed, the TCP peer
gone) the link goes down, the half-received frame is discarded and counted, and the port is
reopened with exponential backoff until it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import termios
import tty
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import SplitResult, unquote

import serial

from flight.link.base import (
    DEFAULT_MAX_FRAME_LENGTH,
    DEFAULT_RECEIVE_DEPTH,
    LinkBase,
    LinkConfigError,
    LinkError,
)
from flight.link.url import convert, positive_float, positive_int, query_params
from flight.protocol import cobs

DEFAULT_BAUDRATE = 115_200
READ_CHUNK = 65_536  # octets per read: a burst is taken in one call, not one callback per octet
TCP_CONNECT_TIMEOUT_S = 5.0
# Linux's "get pty number" ioctl, _IOR('T', 0x30, unsigned int) on x86-64 and aarch64 alike;
# Python's termios does not export it.
_TIOCGPTN = getattr(termios, "TIOCGPTN", 0x80045430)


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """How a serial link frames and reconnects; the URL's query parameters set them."""

    max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH  # longer frames are refused/discarded
    reconnect_initial_s: float = 0.1  # first wait before reopening a vanished port
    reconnect_max_s: float = 2.0  # backoff doubles up to this
    receive_depth: int = DEFAULT_RECEIVE_DEPTH

    def __post_init__(self) -> None:
        if self.max_frame_length < 1:
            raise LinkConfigError(
                f"max_frame_length must be at least 1, not {self.max_frame_length}"
            )
        if not 0 < self.reconnect_initial_s <= self.reconnect_max_s:
            raise LinkConfigError(
                f"reconnect delays must satisfy 0 < initial ({self.reconnect_initial_s} s) "
                f"<= max ({self.reconnect_max_s} s)"
            )


class SerialPort(Protocol):
    """Something that yields a byte-stream file descriptor: a tty, a TCP socket, a pty master."""

    name: str

    async def open(self) -> int:
        """A connected descriptor; OSError or serial.SerialException while it is absent."""
        ...

    def close(self) -> None:
        """Release what `open` acquired (the link reopens later)."""
        ...

    def dispose(self) -> None:
        """Release everything for good (the link is closing)."""
        ...


class DevicePort:
    """A tty device or pty slave by path, configured by pyserial: raw, 8N1, exclusive."""

    def __init__(self, path: str, baudrate: int = DEFAULT_BAUDRATE) -> None:
        self.path = path
        self.baudrate = baudrate
        self.name = f"serial:{path}"
        self._serial: serial.Serial | None = None

    async def open(self) -> int:
        # pyserial opens with O_NONBLOCK and only configures termios: no call here can block.
        port = serial.Serial(port=self.path, baudrate=self.baudrate, timeout=0, exclusive=True)
        self._serial = port
        return port.fileno()

    def close(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            # The device may already be gone; then there is nothing left to release.
            with contextlib.suppress(OSError, serial.SerialException):
                port.close()

    def dispose(self) -> None:
        self.close()


class TcpPort:
    """A raw TCP byte stream, as pyserial's socket:// and ser2net or socat servers speak it.

    Opened with the loop's non-blocking connect rather than pyserial's socket handler, which
    connects with a blocking 5 s timeout and sleeps 0.3 s on close.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.name = f"socket://{host}:{port}"
        self._socket: socket.socket | None = None

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            addresses = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            addresses = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        last_error: OSError = OSError(errno.EHOSTUNREACH, f"no address for {self.host}")
        for family, kind, protocol, _, address in addresses:
            sock = socket.socket(family, kind, protocol)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(TCP_CONNECT_TIMEOUT_S):
                    await loop.sock_connect(sock, address)
            except OSError as error:  # TimeoutError included
                sock.close()
                last_error = error
                continue
            # Frames are small and latency matters more than packing: no Nagle delay.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socket = sock
            return sock.fileno()
        raise last_error

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def dispose(self) -> None:
        self.close()


class PtyMasterPort:
    """The master side of a pty whose slave another process opens (a node under test).

    The master stays open across the peer's restarts: while no process holds the slave, the
    master reports a hang-up, and `open` fails until one does.
    """

    def __init__(self, master_fd: int, name: str | None = None) -> None:
        self.master_fd: int | None = master_fd
        self.name = name or f"pty-master:{_pty_slave_name(master_fd)}"

    async def open(self) -> int:
        if self.master_fd is None:
            raise OSError(errno.EBADF, "the pty master is closed")
        poller = select.poll()
        poller.register(self.master_fd, select.POLLIN | select.POLLOUT)
        if any(events & select.POLLHUP for _, events in poller.poll(0)):
            raise OSError(errno.EIO, "no process holds the slave end of the pty open")
        return self.master_fd

    def close(self) -> None:
        pass  # keep the master: closing it would destroy the pty the peer reopens

    def dispose(self) -> None:
        fd, self.master_fd = self.master_fd, None
        if fd is not None:
            os.close(fd)


@dataclass(frozen=True, slots=True)
class PtyPair:
    """A pty whose slave end is free for a link to open by path; the caller owns `master_fd`."""

    master_fd: int
    slave_path: str


def open_pty_pair() -> PtyPair:
    """A new pty, its slave in raw mode (no echo, no line editing) and not held open here.

    Raw from the start, so that nothing written before the peer opens the slave is echoed
    back. Until a process opens `slave_path`, reading `master_fd` fails with EIO.
    """
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        path = os.ttyname(slave)
    finally:
        os.close(slave)
    return PtyPair(master, path)


def _pty_slave_name(master_fd: int) -> str:
    """/dev/pts/N for a Linux pty master (os.ptsname arrives only in Python 3.13)."""
    try:
        number = struct.unpack("I", fcntl.ioctl(master_fd, _TIOCGPTN, b"\0" * 4))[0]
    except (AttributeError, OSError):
        return f"fd{master_fd}"
    return f"/dev/pts/{number}"


class SerialLink(LinkBase):
    """COBS-delimited frames over a byte stream that may vanish and come back."""

    def __init__(self, port: SerialPort, settings: SerialSettings | None = None) -> None:
        self.settings = settings or SerialSettings()
        super().__init__(port.name, receive_depth=self.settings.receive_depth)
        self.port = port
        self._deframer = cobs.CobsDeframer(self.settings.max_frame_length)
        self._discards_seen = 0
        self._fd: int | None = None
        self._generation = 0  # one per connection, so a writer can tell its connection is gone
        self._lost: asyncio.Future[str] | None = None
        self._write_lock = asyncio.Lock()
        self._write_waiter: asyncio.Future[None] | None = None
        # Start the next frame with an extra delimiter: set on every (re)open and after a frame
        # was cut short, so the peer's deframer drops whatever partial frame it holds.
        self._flush_next = True

    @classmethod
    def device(
        cls, path: str, *, baudrate: int = DEFAULT_BAUDRATE, settings: SerialSettings | None = None
    ) -> SerialLink:
        """A tty by path: /dev/ttyUSB0, /dev/ttyAMA0, /dev/ttyTHS1, a pty slave, a udev symlink."""
        return cls(DevicePort(path, baudrate), settings)

    @classmethod
    def tcp(cls, host: str, port: int, *, settings: SerialSettings | None = None) -> SerialLink:
        """A raw TCP stream (pyserial's socket://host:port)."""
        return cls(TcpPort(host, port), settings)

    @classmethod
    def pty_master(cls, master_fd: int, *, settings: SerialSettings | None = None) -> SerialLink:
        """The master of a pty (see `open_pty_pair`); the link takes ownership of the fd."""
        return cls(PtyMasterPort(master_fd), settings)

    @classmethod
    def from_url(cls, url: str, parts: SplitResult) -> SerialLink:
        """`serial:///dev/ttyUSB0?baudrate=115200` or `socket://host:port` (see open_link)."""
        allowed = {
            "max_frame": "longest frame in octets",
            "reconnect_max_s": "longest wait between reopen attempts",
        }
        if parts.scheme == "serial":
            allowed["baudrate"] = f"bits per second, default {DEFAULT_BAUDRATE}"
        params = query_params(url, parts, allowed)
        settings = SerialSettings()
        if "max_frame" in params:
            length = convert(url, "max_frame", params["max_frame"], positive_int, "an integer > 0")
            settings = replace(settings, max_frame_length=length)
        if "reconnect_max_s" in params:
            limit = convert(
                url,
                "reconnect_max_s",
                params["reconnect_max_s"],
                positive_float,
                "a positive number",
            )
            initial = min(settings.reconnect_initial_s, limit)
            settings = replace(settings, reconnect_initial_s=initial, reconnect_max_s=limit)
        if parts.scheme == "socket":
            if not parts.hostname:
                raise LinkConfigError(f"{url}: a socket URL needs a host: socket://HOST:PORT")
            try:
                port = parts.port
            except ValueError:
                port = -1
            if port is None or not 0 < port < 65536:
                raise LinkConfigError(f"{url}: a socket URL needs a port in 1..65535")
            if parts.path not in ("", "/"):
                raise LinkConfigError(f"{url}: a socket URL has no path: socket://HOST:PORT")
            return cls.tcp(parts.hostname, port, settings=settings)
        if parts.netloc:
            raise LinkConfigError(
                f"{url}: the device path must be absolute, with three slashes: "
                f"serial:///dev/ttyUSB0 (host {parts.netloc!r} is not allowed)"
            )
        if not parts.path.startswith("/"):
            raise LinkConfigError(f"{url}: no device path; write serial:///dev/ttyUSB0")
        baudrate = DEFAULT_BAUDRATE
        if "baudrate" in params:
            baudrate = convert(
                url, "baudrate", params["baudrate"], positive_int, "a positive integer (115200)"
            )
        return cls.device(unquote(parts.path), baudrate=baudrate, settings=settings)

    @property
    def pending_octets(self) -> int:
        """Octets of a frame whose delimiter has not arrived yet."""
        return self._deframer.pending_octets

    async def __aenter__(self) -> Self:
        await self._start_keeper(self._maintain())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._stop_keeper()
        finally:
            self._disconnect("link closed")
            self.port.dispose()

    async def send(self, frame: bytes) -> None:
        frame = bytes(frame)
        self._check_frame(frame)
        if not self.up:
            raise self._refuse()
        async with self._write_lock:
            if not self.up or self._fd is None:
                raise self._refuse()
            fd, generation = self._fd, self._generation
            data = cobs.frame(frame)
            if self._flush_next:
                data = cobs.DELIMITER + data
            written = 0
            try:
                while written < len(data):
                    try:
                        written += os.write(fd, data[written:])
                    except BlockingIOError:
                        await self._wait_writable(fd)
                        if self._generation != generation or self._fd is None:
                            raise self._refuse() from None
            except OSError as error:
                self._lose(f"write failed: {error}")
                raise self._refuse() from error
            finally:
                # A frame cut short (cancelled, device gone) leaves a partial frame at the peer.
                self._flush_next = written < len(data)
            self._count_sent(frame)

    def _check_frame(self, frame: bytes) -> None:
        if not frame:
            raise LinkError(f"{self.name}: refusing to send an empty frame")
        if len(frame) > self.settings.max_frame_length:
            raise LinkError(
                f"{self.name}: frame of {len(frame)} octets is longer than the link's "
                f"{self.settings.max_frame_length}; raise max_frame in the link URL if intended"
            )

    async def _maintain(self) -> None:
        """Open the port, wait until it is lost, reopen with backoff; until the link closes."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        delay_s = settings.reconnect_initial_s
        connected_before = False
        failures = 0
        while not self.closed:
            try:
                fd = await self.port.open()
            # ValueError: a setting this port or platform refuses (pyserial's baud-rate check).
            except (OSError, ValueError, serial.SerialException) as error:
                failures += 1
                self.last_error = f"cannot open: {error}"
                # Say it once at warning level, then quietly keep trying.
                level = logging.WARNING if failures == 1 else logging.DEBUG
                self._log.log(level, "%s: %s; retrying every <= %g s", self.name, error, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, settings.reconnect_max_s)
                continue
            failures = 0
            if connected_before:
                self.counters.reconnects += 1
            connected_before = True
            os.set_blocking(fd, False)
            self._generation += 1
            self._fd = fd
            self._lost = loop.create_future()
            self._flush_next = True
            self.last_error = ""
            loop.add_reader(fd, self._on_readable)
            self._set_up(True)
            opened_s = loop.time()
            try:
                reason = await self._lost
            finally:
                self._disconnect("link closed")
            self.last_error = reason
            self._log.warning("%s lost: %s; reopening", self.name, reason)
            # A connection that dies at once (a server that accepts and hangs up) must not make
            # the link spin: the backoff only resets after a connection that lasted.
            if loop.time() - opened_s >= settings.reconnect_max_s:
                delay_s = settings.reconnect_initial_s
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, settings.reconnect_max_s)

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as error:
            self._lose(f"read failed: {error}")
            return
        if not data:
            self._lose("end of stream: the device or its peer went away")
            return
        frames = self._deframer.feed(data)
        self._count_discards()
        for frame in frames:
            if frame:
                self._deliver(frame)
            else:
                self._drop("empty frame")

    async def _wait_writable(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._write_waiter = waiter
        loop.add_writer(fd, _wake, waiter)
        try:
            await waiter
        finally:
            self._write_waiter = None
            if self._fd == fd:
                loop.remove_writer(fd)

    def _lose(self, reason: str) -> None:
        """The connection is gone: go down now; the keeper task reopens."""
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)
        self._disconnect(reason)

    def _disconnect(self, reason: str) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        loop.remove_writer(fd)
        if self._write_waiter is not None:
            _wake(self._write_waiter)
        # Octets of a frame cut off by the disconnect can never be completed: count them.
        self._deframer.reset()
        self._count_discards()
        self.port.close()
        self.last_error = reason
        self._set_up(False)

    def _count_discards(self) -> None:
        discarded = self._deframer.discarded_frames
        if discarded != self._discards_seen:
            new, self._discards_seen = discarded - self._discards_seen, discarded
            self._drop(f"deframer: {self._deframer.last_discard_message}", new)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
