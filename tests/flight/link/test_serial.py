import asyncio
import contextlib
import faulthandler
import os
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from flight.link import LinkConfigError, LinkDown, LinkError, Role, SerialLink, open_link
from flight.link.serial import SerialSettings, open_pty_pair
from flight.protocol import cobs
from flight.runtime.clock import run

T = TypeVar("T")
SAFETY_S = 10.0  # a safety net against a hang, never a performance threshold
FAST = SerialSettings(reconnect_initial_s=0.01, reconnect_max_s=0.05)


async def within(awaitable: Awaitable[T], what: str) -> T:
    try:
        async with asyncio.timeout(SAFETY_S):
            return await awaitable
    except TimeoutError:
        pytest.fail(f"{what}: nothing after {SAFETY_S} s (safety net)")


async def until(condition, what: str) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await within(poll(), what)


class RawPeer:
    """The far end of the line as octets: the test writes exactly what it wants on the wire.

    It reads only once asked for a frame: before the link opens the slave, the master reports
    a hang-up, and a reader registered then would only see EIO.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.deframer = cobs.CobsDeframer(4096)
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.reading = False

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(self.fd)
            self.reading = False
            return
        for frame in self.deframer.feed(data):
            self.frames.put_nowait(frame)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                ready = self.loop.create_future()
                self.loop.add_writer(self.fd, ready.set_result, None)
                try:
                    await ready
                finally:
                    self.loop.remove_writer(self.fd)

    async def frame(self) -> bytes:
        return await within(self.frames_get(), "a frame at the raw end")

    async def frames_get(self) -> bytes:
        if not self.reading:
            self.loop.add_reader(self.fd, self._readable)
            self.reading = True
        return await self.frames.get()

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1


@pytest.fixture
async def pty():
    """(raw peer on the pty master, path of the slave for the link)."""
    pair = open_pty_pair()
    peer = RawPeer(pair.master_fd)
    yield peer, pair.slave_path
    if peer.fd >= 0:
        with contextlib.suppress(OSError):
            peer.close()


async def test_frames_cross_a_pty_both_ways(pty):
    peer, path = pty
    async with open_link(f"serial://{path}?baudrate=115200", role=Role.FLIGHT) as link:
        await within(link.wait_up(), "link up")
        await link.send(b"\x00telemetry\x00with zeros")
        assert await peer.frame() == b"\x00telemetry\x00with zeros"
        await peer.write(cobs.frame(b"a telecommand"))
        assert await within(link.receive(), "frame at the link") == b"a telecommand"
        assert (link.counters.frames_sent, link.counters.frames_received) == (1, 1)
        assert link.counters.octets_sent == len(b"\x00telemetry\x00with zeros")
        assert link.counters.frames_dropped == 0
        assert link.name == f"serial:{path}"


async def test_garbage_between_frames_is_discarded_counted_and_the_next_frame_arrives(pty):
    peer, path = pty
    async with SerialLink.device(path) as link:
        await within(link.wait_up(), "link up")
        # Code 0x05 announces four octets, only two follow: not COBS; then a run too long.
        garbage = b"\x05\x01\x02\x00" + b"\x7f" * 5000 + b"\x00"
        await peer.write(cobs.frame(b"first") + garbage + cobs.frame(b"second"))
        assert await within(link.receive(), "first") == b"first"
        assert await within(link.receive(), "second") == b"second"
        assert link.counters.frames_dropped == 2
        assert link.counters.frames_received == 2
        assert "deframer" in link.last_drop


async def test_a_frame_split_across_reads_arrives_whole(pty):
    peer, path = pty
    async with SerialLink.device(path) as link:
        await within(link.wait_up(), "link up")
        wire = cobs.frame(bytes(range(256)) * 3)
        await peer.write(wire[:100])
        await until(lambda: link.pending_octets == 100, "the first part held by the link")
        assert link.pending_frames == 0
        await peer.write(wire[100:])
        assert await within(link.receive(), "the whole frame") == bytes(range(256)) * 3


async def test_a_thousand_frames_arrive_in_order_both_ways(pty):
    peer, path = pty
    frames = [index.to_bytes(2, "big") + bytes(index % 200) for index in range(1000)]
    async with SerialLink.device(path) as link:
        await within(link.wait_up(), "link up")

        async def uplink() -> None:
            for frame in frames:
                await peer.write(cobs.frame(frame))

        async def downlink() -> None:
            for frame in frames:
                await link.send(frame)

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(uplink())
            tasks.create_task(downlink())
            received = [await within(link.receive(), f"frame {n}") for n in range(1000)]
            echoed = [await peer.frame() for _ in range(1000)]
        assert received == frames
        assert echoed == frames
        assert link.counters.frames_dropped == 0


async def test_a_device_that_vanishes_and_returns_is_reopened(tmp_path: Path):
    # A udev-style symlink names the device, as /dev/serial/by-id/... does for a USB adapter.
    device = tmp_path / "ttyPENUMBRA"
    first = open_pty_pair()
    device.symlink_to(first.slave_path)
    peer = RawPeer(first.master_fd)
    async with SerialLink.device(str(device), settings=FAST) as link:
        await within(link.wait_up(), "link up")
        await peer.write(cobs.frame(b"before"))
        assert await within(link.receive(), "frame before") == b"before"
        # Half a frame, then the device is unplugged.
        await peer.write(cobs.encode(b"cut short")[:4])
        await until(lambda: link.pending_octets == 4, "the half frame held")
        peer.close()
        await within(link.wait_down(), "the link going down")
        assert link.counters.frames_dropped == 1
        assert "link reset mid-frame" in link.last_drop
        with pytest.raises(LinkDown, match="is down"):
            await link.send(b"nobody listens")
        assert link.counters.sends_refused == 1

        second = open_pty_pair()
        device.unlink()
        device.symlink_to(second.slave_path)
        peer = RawPeer(second.master_fd)
        await within(link.wait_up(), "the link reopening the returned device")
        assert link.counters.reconnects == 1
        await link.send(b"after")
        # The first frame after a reopen starts with a delimiter: a receiver that held a
        # partial frame drops it instead of gluing it to this one.
        assert await peer.frame() == b"after"
        await peer.write(cobs.frame(b"after too"))
        assert await within(link.receive(), "frame after") == b"after too"
        peer.close()


async def test_a_pty_master_link_talks_to_a_device_link_and_follows_its_peer():
    pair = open_pty_pair()
    async with SerialLink.pty_master(pair.master_fd, settings=FAST) as ground:
        # Nobody holds the slave yet: the master end is down.
        assert not ground.up
        with pytest.raises(LinkDown):
            await ground.send(b"too early")
        async with SerialLink.device(pair.slave_path, settings=FAST) as flight:
            await within(flight.wait_up(), "flight up")
            await within(ground.wait_up(), "ground sees the slave opened")
            await ground.send(b"tc")
            assert await within(flight.receive(), "tc at flight") == b"tc"
            await flight.send(b"tm")
            assert await within(ground.receive(), "tm at ground") == b"tm"
        # The node process went away: the master goes down and waits for the next one.
        await within(ground.wait_down(), "ground sees the slave closed")
        async with SerialLink.device(pair.slave_path, settings=FAST) as restarted:
            await within(ground.wait_up(), "ground sees the slave reopened")
            assert ground.counters.reconnects == 1
            await ground.send(b"again")
            assert await within(restarted.receive(), "tc at the restarted node") == b"again"


async def test_a_socket_url_carries_frames_to_a_local_tcp_server_and_reconnects():
    connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await connections.put((reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, open_link(f"socket://127.0.0.1:{port}", role=Role.GROUND) as link:
        assert isinstance(link, SerialLink)
        reader, writer = await within(connections.get(), "a connection")
        await within(link.wait_up(), "link up")
        writer.write(cobs.frame(b"from the server"))
        await writer.drain()
        assert await within(link.receive(), "frame from the server") == b"from the server"
        await link.send(b"to the server")
        wire = await within(reader.readuntil(b"server\x00"), "frame at the server")
        # A leading delimiter flushes the receiver, then the frame and its delimiter.
        assert cobs.CobsDeframer(100).feed(wire) == [b"to the server"]

        # The server drops the connection: the link goes down, then connects again.
        writer.close()
        await writer.wait_closed()
        await within(link.wait_down(), "link down after the server hung up")
        reader, writer = await within(connections.get(), "the link reconnecting")
        await within(link.wait_up(), "link up again")
        assert link.counters.reconnects == 1
        await link.send(b"again")
        assert cobs.CobsDeframer(100).feed(await within(reader.readuntil(b"again\x00"), "")) == [
            b"again"
        ]
        writer.close()


async def test_a_socket_server_that_goes_away_and_comes_back_on_its_port(unused_tcp_port: int):
    port = unused_tcp_port
    url = f"socket://127.0.0.1:{port}?reconnect_max_s=0.05"
    received: asyncio.Queue[bytes] = asyncio.Queue()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        deframer = cobs.CobsDeframer(100)
        while data := await reader.read(1000):
            for frame in deframer.feed(data):
                received.put_nowait(frame)

    async with open_link(url, role=Role.FLIGHT) as link:
        # No server yet: the link keeps trying, down, and says why.
        await until(lambda: "cannot open" in link.last_error, "a failed connection attempt")
        assert not link.up
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        await within(link.wait_up(), "link up once the server listens")
        await link.send(b"one")
        assert await within(received.get(), "frame one") == b"one"
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()
        await within(link.wait_down(), "link down with the server gone")
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        async with server:
            await within(link.wait_up(), "link up with the server back")
            await link.send(b"two")
            assert await within(received.get(), "frame two") == b"two"
            assert link.counters.reconnects == 1
            for writer in writers:
                writer.close()


async def test_frames_too_long_or_empty_are_refused_with_a_reason(pty):
    _, path = pty
    async with SerialLink.device(path, settings=SerialSettings(max_frame_length=16)) as link:
        await within(link.wait_up(), "link up")
        with pytest.raises(LinkError, match="17 octets is longer than the link's 16"):
            await link.send(bytes(17))
        with pytest.raises(LinkError, match="empty frame"):
            await link.send(b"")
        assert link.counters.frames_sent == 0


async def test_a_missing_device_leaves_the_link_down_saying_why(tmp_path: Path):
    async with SerialLink.device(str(tmp_path / "ttyNONE"), settings=FAST) as link:
        await until(lambda: "cannot open" in link.last_error, "a failed open")
        assert "ttyNONE" in link.last_error
        with pytest.raises(LinkDown, match="cannot open"):
            await link.send(b"x")


async def test_receive_after_close_raises_link_down(pty):
    _, path = pty
    async with SerialLink.device(path) as link:
        await within(link.wait_up(), "link up")
    with pytest.raises(LinkDown, match="closed"):
        await link.receive()
    with pytest.raises(LinkDown, match="closed"):
        await link.wait_up()
    with pytest.raises(LinkError, match="entered once"):
        await link.__aenter__()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("serial://dev/ttyUSB0", "three slashes"),
        ("serial:///dev/ttyUSB0?baudrate=fast", "baudrate='fast' is not a positive integer"),
        ("serial:///dev/ttyUSB0?baudrate=0", "baudrate='0'"),
        ("serial:///dev/ttyUSB0?baud=9600", "unknown parameter 'baud'"),
        ("serial:///dev/ttyUSB0?baudrate=1&baudrate=2", "given 2 times"),
        ("serial://", "no device path"),
        ("socket://127.0.0.1", "needs a port"),
        ("socket://:5000", "needs a host"),
        ("socket://127.0.0.1:5000?baudrate=9600", "unknown parameter 'baudrate'"),
        ("/dev/ttyUSB0", "write serial:///dev/ttyUSB0"),
        ("tcp://127.0.0.1:5000", "unknown link scheme 'tcp'"),
        ("memory://", "MemoryLink.pair"),
    ],
)
def test_bad_serial_urls_are_refused_with_the_fix(url: str, message: str):
    with pytest.raises(LinkConfigError, match=message):
        open_link(url, role=Role.FLIGHT)


def test_a_serial_url_sets_baudrate_and_frame_length():
    link = open_link("serial:///dev/ttyAMA0?baudrate=9600&max_frame=1200", role=Role.FLIGHT)
    assert isinstance(link, SerialLink)
    assert link.port.baudrate == 9600  # type: ignore[attr-defined]
    assert link.settings.max_frame_length == 1200


def test_a_serial_link_runs_on_the_virtual_time_loop_and_reopens_there(tmp_path: Path):
    """The fd is served by the virtual loop's selector; reconnect backoff is virtual time.

    No asyncio timeouts here: on the virtual loop they would fire at once while the kernel
    moves pty data. A faulthandler watchdog is the safety net against a hang instead.
    """

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        device = tmp_path / "ttyVIRTUAL"
        first = open_pty_pair()
        device.symlink_to(first.slave_path)
        peer = RawPeer(first.master_fd)
        async with SerialLink.device(str(device)) as link:
            await link.wait_up()
            await link.send(b"virtual")
            assert await peer.frames_get() == b"virtual"
            await peer.write(cobs.frame(b"back"))
            assert await link.receive() == b"back"
            peer.close()
            await link.wait_down()
            lost_at = loop.time()
            second = open_pty_pair()
            device.unlink()
            device.symlink_to(second.slave_path)
            await link.wait_up()
            peer = RawPeer(second.master_fd)
            await link.send(b"again")
            assert await peer.frames_get() == b"again"
            peer.close()
            return loop.time() - lost_at, link.counters.reconnects

    faulthandler.dump_traceback_later(60, exit=True)
    try:
        reopen_after_s, reconnects = run(main(), virtual=True)
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert reconnects == 1
    # The first reopen waits the initial backoff, in virtual seconds.
    assert reopen_after_s == pytest.approx(SerialSettings().reconnect_initial_s)


async def test_an_error_in_the_body_of_async_with_passes_through_unwrapped():
    # The link's own tasks must not turn the caller's exception into an ExceptionGroup.
    pair = open_pty_pair()
    with pytest.raises(KeyError, match="the body's"):
        async with SerialLink.pty_master(pair.master_fd):
            raise KeyError("the body's")
