"""Runtime benchmark (issue 3): 10 Hz rate-group jitter, command round trip, idle cost of a node.

Run `python benchmarks/runtime.py` (or `make bench`); `--only jitter|roundtrip|idle` runs one part,
`--jitter-s`, `--warmup-s`, `--commands` and `--idle-s` set the workloads. Every measurement has
its peer in the same run, on the real-time asyncio loop (never the virtual one):

1. jitter: how late the real Node's 10 Hz rate group starts its cycles, idle, beside a pure-Python
   job that holds the GIL in a worker thread (at the default 5 ms switch interval and at 1 ms),
   and beside a numpy matmul job that releases it; peer: a bare `loop.call_at` 10 Hz ticker under
   the same conditions.
2. round trip: NOOPs sent one at a time by ground.station.GroundStation, from the send to the
   completion report (1,7), to `penumbra flight` in a subprocess over a pty at 115200 baud, and to
   an in-process Node over MemoryLink, unpaced (the floor) and paced at 115200 baud; peer: the wire
   time of the bytes (the TC frame and the TM frames carrying the reports, COBS-framed, at 10 bits
   per octet). A pty does not enforce a baud rate, so the pty's wire time is modelled from octets.
3. idle: RSS (VmRSS) and CPU (utime + stime) of `penumbra flight` idling with housekeeping on;
   peer: `python -c "import asyncio; asyncio.run(asyncio.sleep(...))"`.

The machine, Python, date and load average come first, then one Markdown table per part, ready to
paste into docs/benchmarks.md.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import functools
import gc
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from flight.link import Link, LinkCounters, MemoryLink, SerialLink, open_pty_pair
from flight.protocol import cobs
from flight.protocol.errors import ProtocolError
from flight.protocol.pus import PusTm, RequestId, Service
from flight.protocol.tm_frame import TmReceiver
from flight.runtime.config import NodeConfig
from flight.runtime.node import Node
from ground.dictionary import Dictionary, RequestKey
from ground.station import GroundStation

ROOT = Path(__file__).resolve().parents[1]
TICK_HZ = 10.0  # the node's default tick; the 10Hz group runs on every tick
JITTER_S = 60.0  # measured seconds per jitter case: at least a minute
WARMUP_S = 3.0  # before each measurement: boot, imports, the job's first iterations
COMMANDS = 200
WARMUP_COMMANDS = 5
IDLE_S = 30.0
SAMPLE_PERIOD_S = 1.0  # RSS samples of the idle processes
BAUD = 115_200
BITS_PER_OCTET = 10  # 8N1: a start bit, 8 data bits, a stop bit
MATRIX = 1024  # numpy job: 1024 x 1024 float64 matmuls, about 45 ms each with one BLAS thread
# A benchmark-only SDLS key; the subprocess node reads it from a 0600 key file.
KEY = bytes(range(32))
BOOT_TIMEOUT_S = 60.0  # safety nets only: nothing below is judged against a time
COMMAND_TIMEOUT_S = 30.0
BOOT_LINE = "in NOMINAL"  # `node NAME boot N in NOMINAL`, logged once the node is up
# One BLAS thread: the GIL-releasing job is one worker thread, as a job on the node would be.
# Set before numpy is first imported (in the numpy job, on first use).
BLAS_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --- shared -------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (the rate-group driver's definition)."""
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, {platform.machine()}\n"
        f"python:  {platform.python_implementation()} {sys.version.split()[0]},"
        f" GIL switch interval {sys.getswitchinterval() * 1e3:g} ms\n"
        f"date:    {now}\n"
        f"load average at start (1, 5, 15 min): {load_average()}"
    )


def quiet_logging() -> None:
    """The node logs its events; a slip is a HIGH event. Counted here, not printed."""
    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)


def write_key(directory: Path) -> Path:
    path = directory / "sa1.key"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(KEY)
    return path


def penumbra_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "penumbra", *arguments]


def child_environment() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


# --- 1. rate-group jitter -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lateness:
    """Start lateness of the cycles of one window (seconds), and the cycles skipped as slips."""

    cycles: int
    p50_s: float
    p99_s: float
    max_s: float
    slips: int


@dataclass(frozen=True, slots=True)
class JobRun:
    """What a background job did: units of work, CPU seconds of its thread, seconds it ran."""

    units: int
    cpu_s: float
    wall_s: float

    @property
    def core_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def units_per_s(self) -> float:
        return self.units / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    work: Callable[[threading.Event], int] | None  # runs in a worker thread until the event is set
    switch_interval_s: float | None = None  # sys.setswitchinterval for this condition only


def pure_python_job(stop: threading.Event) -> int:
    """CPU-bound bytecode: holds the GIL except when the interpreter forces a switch.

    One unit is a 2,000-iteration loop of integer arithmetic."""
    units = 0
    while not stop.is_set():
        total = 0
        for i in range(2_000):
            total += i * i
        units += 1
    return units


def numpy_job(stop: threading.Event) -> int:
    """CPU-bound BLAS: a matmul releases the GIL for its whole ~45 ms. One unit is a matmul."""
    import numpy as np  # here, after BLAS_THREADS are in the environment

    rng = np.random.default_rng(3)
    a = rng.random((MATRIX, MATRIX))
    b = rng.random((MATRIX, MATRIX))
    units = 0
    while not stop.is_set():
        a @ b
        units += 1
    return units


CONDITIONS = (
    Condition("idle", None),
    Condition("pure-Python job in a worker thread (holds the GIL)", pure_python_job),
    # The same job with the interpreter's switch interval cut from 5 ms to 1 ms: the lateness
    # should shrink with it if the GIL hand-over is what makes it.
    Condition(
        "pure-Python job, GIL switch interval 1 ms", pure_python_job, switch_interval_s=0.001
    ),
    Condition(f"numpy {MATRIX}x{MATRIX} matmul job in a worker thread (releases it)", numpy_job),
)


def _run_job(work: Callable[[threading.Event], int], stop: threading.Event) -> JobRun:
    started_s, cpu_s = time.perf_counter(), time.thread_time()
    units = work(stop)
    return JobRun(units, time.thread_time() - cpu_s, time.perf_counter() - started_s)


async def under_load(
    work: Callable[[threading.Event], int] | None, measure: Callable[[], Awaitable[Lateness]]
) -> tuple[Lateness, JobRun | None]:
    """`measure()` while `work` runs in a worker thread (asyncio.to_thread), owned here."""
    if work is None:
        return await measure(), None
    stop = threading.Event()
    async with asyncio.TaskGroup() as tasks:
        worker = tasks.create_task(asyncio.to_thread(_run_job, work, stop), name="job")
        try:
            result = await measure()
        finally:
            stop.set()
    return result, worker.result()


async def _drain(link: Link) -> None:
    """A ground that takes every TM frame and keeps none: the node's downlink runs as in contact."""
    while True:
        await link.receive()


async def node_lateness(state_dir: Path, jitter_s: float, warmup_s: float) -> Lateness:
    """The real Node, in contact over a MemoryLink; lateness from its own driver's statistics.

    The driver keeps the lateness of its last `jitter_samples` cycles (1024 by default); the
    configuration sets it to exactly the window's cycles, so `jitter("10Hz")` covers the window.
    """
    window_cycles = max(1, round(jitter_s * TICK_HZ))
    config = NodeConfig().with_state_dir(state_dir)
    config = dataclasses.replace(
        config, rate_groups=dataclasses.replace(config.rate_groups, jitter_samples=window_cycles)
    )
    flight, ground = MemoryLink.pair()
    node = Node(config, link=flight, key=KEY)
    if node.rate_groups.tick_hz != TICK_HZ:
        raise SystemExit(f"benchmark broken: the node ticks at {node.rate_groups.tick_hz} Hz")
    async with flight, ground, node, asyncio.TaskGroup() as tasks:
        drain = tasks.create_task(_drain(ground), name="drain")
        await asyncio.sleep(warmup_s)
        before = node.rate_groups.stats("10Hz")
        await asyncio.sleep(jitter_s)
        jitter = node.rate_groups.jitter("10Hz")
        after = node.rate_groups.stats("10Hz")
        drain.cancel()
        node.request_stop()
    if jitter.samples < window_cycles:
        raise SystemExit(
            f"benchmark broken: {jitter.samples} lateness samples, not {window_cycles}"
        )
    return Lateness(
        after.cycles - before.cycles,
        jitter.p50_s,
        jitter.p99_s,
        jitter.max_s,
        after.slips - before.slips,
    )


async def bare_lateness(jitter_s: float, warmup_s: float) -> Lateness:
    """The peer: a 10 Hz ticker of `loop.call_at` callbacks on absolute deadlines t0 + k/10, which
    skips to the latest tick due when it is late, as the driver does (the skipped ones are slips).
    Lateness is taken in the callback: no task, no member, nothing else on the loop."""
    loop = asyncio.get_running_loop()
    period_s = 1.0 / TICK_HZ
    t0 = loop.time()
    first_due_s = t0 + warmup_s
    last_due_s = first_due_s + jitter_s
    samples: list[float] = []
    slips = 0
    done: asyncio.Future[None] = loop.create_future()

    def tick(k: int) -> None:
        nonlocal slips
        now = loop.time()
        latest = max(k, int((now - t0) * TICK_HZ))
        while t0 + (latest + 1) * period_s <= now:
            latest += 1
        while latest > k and t0 + latest * period_s > now:
            latest -= 1
        due_s = t0 + latest * period_s
        if due_s >= first_due_s:
            slips += latest - k
            samples.append(now - due_s)
        if due_s + period_s >= last_due_s:
            done.set_result(None)
        else:
            loop.call_at(t0 + (latest + 1) * period_s, tick, latest + 1)

    loop.call_at(t0, tick, 0)
    await done
    samples.sort()
    return Lateness(
        len(samples), percentile(samples, 0.5), percentile(samples, 0.99), samples[-1], slips
    )


@dataclass(frozen=True, slots=True)
class JitterRow:
    condition: str
    loop: str
    lateness: Lateness
    job: JobRun | None
    load_start: str
    load_end: str


def run_jitter(jitter_s: float, warmup_s: float, work_dir: Path) -> list[JitterRow]:
    """Each condition: the node, then the bare ticker; each case on a fresh real-time loop."""
    rows: list[JitterRow] = []
    for index, condition in enumerate(CONDITIONS):
        cases: list[tuple[str, Callable[[], Awaitable[Lateness]]]] = [
            (
                "Node, 10Hz group",
                functools.partial(node_lateness, work_dir / f"jitter{index}", jitter_s, warmup_s),
            ),
            ("bare call_at ticker", functools.partial(bare_lateness, jitter_s, warmup_s)),
        ]
        for loop_name, measure in cases:
            gc.collect()
            load_start = load_average()
            print(f"  jitter: {condition.name}, {loop_name} ...", file=sys.stderr, flush=True)
            default_interval_s = sys.getswitchinterval()
            if condition.switch_interval_s is not None:
                sys.setswitchinterval(condition.switch_interval_s)
            try:
                lateness, job = asyncio.run(under_load(condition.work, measure))
            finally:
                sys.setswitchinterval(default_interval_s)
            rows.append(
                JitterRow(condition.name, loop_name, lateness, job, load_start, load_average())
            )
    return rows


def jitter_table(rows: list[JitterRow]) -> str:
    lines = [
        "| condition | loop | cycles | p50 (ms) | p99 (ms) | max (ms) | slips"
        " | p50, p99 / bare | job's core use | job's units/s | load 1 min (start → end) |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    bare = {row.condition: row.lateness for row in rows if row.loop.startswith("bare")}
    for row in rows:
        late = row.lateness
        peer = bare.get(row.condition)
        if row.loop.startswith("Node") and peer is not None and peer.p50_s > 0 and peer.p99_s > 0:
            ratio = f"{late.p50_s / peer.p50_s:.1f}x, {late.p99_s / peer.p99_s:.1f}x"
        else:
            ratio = "-"
        job = f"{row.job.core_percent:.0f}% | {row.job.units_per_s:,.0f}" if row.job else "- | -"
        lines.append(
            f"| {row.condition} | {row.loop} | {late.cycles} | {late.p50_s * 1e3:.2f}"
            f" | {late.p99_s * 1e3:.2f} | {late.max_s * 1e3:.2f} | {late.slips} | {ratio}"
            f" | {job} | {row.load_start.split()[0]} → {row.load_end.split()[0]} |"
        )
    return "\n".join(lines)


# --- 2. command round trip ----------------------------------------------------------------------


def wire_s(octets: int) -> float:
    return octets * BITS_PER_OCTET / BAUD


def serial_octets(frame: bytes) -> int:
    """Octets a frame takes on a serial line: COBS-encoded, with its delimiter."""
    return len(cobs.frame(frame))


class RecordingLink:
    """The ground's link, unchanged, noting the loop time of every frame sent and received."""

    def __init__(self, inner: Link) -> None:
        self.inner = inner
        self.name = inner.name
        self.sent: list[tuple[float, bytes]] = []
        self.received: list[tuple[float, bytes]] = []

    @property
    def counters(self) -> LinkCounters:
        return self.inner.counters

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.inner.__aexit__(exc_type, exc, tb)

    @property
    def up(self) -> bool:
        return self.inner.up

    async def wait_up(self) -> None:
        await self.inner.wait_up()

    async def send(self, frame: bytes) -> None:
        await self.inner.send(frame)
        self.sent.append((asyncio.get_running_loop().time(), bytes(frame)))

    async def receive(self) -> bytes:
        frame = await self.inner.receive()
        self.received.append((asyncio.get_running_loop().time(), frame))
        return frame


@dataclass(frozen=True, slots=True)
class Trip:
    """One command: its round trip, the wire time of its own frames and of all traffic meanwhile."""

    round_trip_s: float
    wire_s: float  # its TC frame(s) and the TM frames that carried its reports
    window_wire_s: float  # every frame either way between the send and the completion
    report_frames: int


@dataclass
class TripAccounting:
    """Finds the TM frames that carried each request's verification reports."""

    spacecraft_id: int
    receiver: TmReceiver = field(init=False)
    processed: int = 0
    carriers: dict[int, set[RequestKey]] = field(default_factory=dict)  # frame index -> requests

    def __post_init__(self) -> None:
        self.receiver = TmReceiver(self.spacecraft_id)

    def catch_up(self, link: RecordingLink) -> None:
        for index in range(self.processed, len(link.received)):
            try:
                packets = self.receiver.receive(link.received[index][1]).packets
            except ProtocolError:
                continue
            for octets in packets:
                try:
                    tm = PusTm.decode(octets)
                    if tm.service != Service.REQUEST_VERIFICATION:
                        continue
                    request, _ = RequestId.decode_from(tm.source_data)
                except ProtocolError:
                    continue
                key = RequestKey(request.apid, request.sequence_count)
                self.carriers.setdefault(index, set()).add(key)
        self.processed = len(link.received)

    def trip(self, link: RecordingLink, request: RequestKey, start_s: float, end_s: float) -> Trip:
        self.catch_up(link)
        uplink = [frame for t, frame in link.sent if start_s <= t <= end_s]
        downlink = [
            (index, frame)
            for index, (t, frame) in enumerate(link.received)
            if start_s <= t <= end_s
        ]
        reports = [frame for index, frame in downlink if request in self.carriers.get(index, ())]
        if not uplink or not reports:
            raise SystemExit(
                f"benchmark broken: request {request} has {len(uplink)} TC frames and "
                f"{len(reports)} report frames in its window"
            )
        own = sum(map(serial_octets, uplink)) + sum(map(serial_octets, reports))
        everything = sum(map(serial_octets, uplink)) + sum(
            serial_octets(frame) for _, frame in downlink
        )
        return Trip(end_s - start_s, wire_s(own), wire_s(everything), len(reports))


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def command_trips(
    station: GroundStation, link: RecordingLink, commands: int, warmup: int
) -> list[Trip]:
    """NOOPs one at a time, each timed from before `send_command` to its completion report."""
    loop = asyncio.get_running_loop()
    try:
        await until(lambda: station.ad_service_active, BOOT_TIMEOUT_S)
    except TimeoutError:
        raise SystemExit(
            f"benchmark broken: FOP-1 did not start within {BOOT_TIMEOUT_S} s; "
            f"link {link.name} up: {link.up}"
        ) from None
    accounting = TripAccounting(station.dictionary.spacecraft_id)
    trips: list[Trip] = []
    for number in range(warmup + commands):
        start_s = loop.time()
        request = await station.send_command("mode.NOOP")
        await station.await_completion(request, timeout_s=COMMAND_TIMEOUT_S)
        end_s = loop.time()
        trip = accounting.trip(link, request, start_s, end_s)
        if number >= warmup:
            trips.append(trip)
        # Every frame so far has been accounted for (no await since): keep memory flat.
        if len(link.received) > 4096:
            link.received.clear()
            link.sent.clear()
            accounting.carriers.clear()
            accounting.processed = 0
    return trips


async def memory_trips(state_dir: Path, commands: int, *, rate_bps: float | None) -> list[Trip]:
    """An in-process Node and GroundStation on one loop, over a MemoryLink pair."""
    flight, ground_end = MemoryLink.pair(rate_bps=rate_bps)
    node = Node(NodeConfig().with_state_dir(state_dir / "node"), link=flight, key=KEY)
    dictionary = Dictionary.from_document(node.dictionary())
    ground = RecordingLink(ground_end)
    async with (
        flight,
        ground,
        node,
        GroundStation(ground, dictionary, key=KEY, state_dir=state_dir / "ground") as station,
    ):
        trips = await command_trips(station, ground, commands, WARMUP_COMMANDS)
        node.request_stop()
    return trips


async def pty_trips(work_dir: Path, commands: int) -> list[Trip]:
    """`penumbra flight` in a subprocess on the pty's slave; the station on its master."""
    work_dir.mkdir(parents=True)
    pair = open_pty_pair()
    key_file = write_key(work_dir)
    config = work_dir / "node.toml"
    config.write_text(
        "[node]\n"
        'name = "bench"\n'
        'state_dir = "state"\n'
        "[link]\n"
        f'url = "serial://{pair.slave_path}?baudrate={BAUD}"\n'
        f'key_file = "{key_file.name}"\n'
    )
    exported = subprocess.run(
        penumbra_command("dict", "export", "--config", str(config), "-o", "dictionary.json"),
        cwd=work_dir,
        env=child_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if exported.returncode != 0:
        raise SystemExit(f"benchmark broken: penumbra dict export: {exported.stderr.strip()}")
    dictionary = Dictionary.load(work_dir / "dictionary.json")
    log_path = work_dir / "node.log"
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(
            *penumbra_command("flight", "--config", str(config), "--log-level", "WARNING"),
            cwd=work_dir,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        ground = RecordingLink(SerialLink.pty_master(pair.master_fd))
        async with (
            ground,
            GroundStation(ground, dictionary, key=KEY, state_dir=work_dir / "ground") as station,
        ):
            try:
                trips = await command_trips(station, ground, commands, WARMUP_COMMANDS)
            except SystemExit as error:
                log_tail = log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"{error}\nnode log:\n{log_tail}") from None
    finally:
        await stop_process(process)
    if process.returncode != 0:
        raise SystemExit(
            f"benchmark broken: the node exited {process.returncode}: "
            f"{log_path.read_text(errors='replace')[-2000:]}"
        )
    return trips


async def stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(BOOT_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass(frozen=True, slots=True)
class TripRow:
    path: str
    trips: list[Trip]
    load_start: str
    load_end: str


def run_round_trips(commands: int, work_dir: Path) -> list[TripRow]:
    paced_bps = BAUD * 8 / BITS_PER_OCTET  # MemoryLink counts 8 bits an octet: 11,520 octets/s
    cases: list[tuple[str, Callable[[], Awaitable[list[Trip]]]]] = [
        (
            f"pty, `penumbra flight` subprocess, {BAUD} baud set (not enforced)",
            functools.partial(pty_trips, work_dir / "pty", commands),
        ),
        (
            "MemoryLink in-process, unpaced (the floor)",
            functools.partial(memory_trips, work_dir / "memory", commands, rate_bps=None),
        ),
        (
            f"MemoryLink in-process, paced at {BAUD} baud 8N1",
            functools.partial(memory_trips, work_dir / "paced", commands, rate_bps=paced_bps),
        ),
    ]
    rows = []
    for name, measure in cases:
        gc.collect()
        load_start = load_average()
        print(f"  round trip: {name} ...", file=sys.stderr, flush=True)
        rows.append(TripRow(name, asyncio.run(measure()), load_start, load_average()))
    return rows


def trip_table(rows: list[TripRow]) -> str:
    lines = [
        "| path | commands | median (ms) | p99 (ms) | max (ms) | wire time (ms) | median / wire"
        " | p99 / wire | report frames | wire, all frames in window: median, p99 (ms)"
        " | load 1 min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        trips = row.trips
        times = sorted(trip.round_trip_s for trip in trips)
        ratios = sorted(trip.round_trip_s / trip.wire_s for trip in trips)
        wire = statistics.median(trip.wire_s for trip in trips)
        window = sorted(trip.window_wire_s for trip in trips)
        frames = statistics.mean(trip.report_frames for trip in trips)
        lines.append(
            f"| {row.path} | {len(trips)} | {statistics.median(times) * 1e3:.2f}"
            f" | {percentile(times, 0.99) * 1e3:.2f} | {times[-1] * 1e3:.2f} | {wire * 1e3:.1f}"
            f" | {statistics.median(ratios):.3f} | {percentile(ratios, 0.99):.3f} | {frames:.2f}"
            f" | {statistics.median(window) * 1e3:.1f}, {percentile(window, 0.99) * 1e3:.1f}"
            f" | {row.load_start.split()[0]} → {row.load_end.split()[0]} |"
        )
    return "\n".join(lines)


# --- 3. idle RSS and CPU ------------------------------------------------------------------------


CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_ticks_and_threads(pid: int) -> tuple[int, int]:
    """utime + stime (clock ticks) and the thread count, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, so utime (14) is [11], stime [12], threads [17].
    return int(fields[11]) + int(fields[12]), int(fields[17])


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise SystemExit(f"benchmark broken: /proc/{pid}/status has no VmRSS")


@dataclass(frozen=True, slots=True)
class IdleRow:
    process: str
    rss_median_bytes: float
    rss_max_bytes: int
    cpu_percent: float
    startup_cpu_s: float
    threads: int
    window_s: float


async def _wait_for_boot(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while True:
        raw = await stream.readline()
        if not raw:
            raise SystemExit(f"benchmark broken: the node exited before booting: {''.join(lines)}")
        lines.append(raw.decode(errors="replace"))
        if BOOT_LINE in lines[-1]:
            return


async def _keep_reading(stream: asyncio.StreamReader) -> None:
    """The node's log after boot: read so that a full pipe never blocks it."""
    while await stream.readline():
        pass


async def idle_process(
    name: str,
    argv: list[str],
    cwd: Path,
    idle_s: float,
    settle_s: float,
    *,
    node: bool,
    ground_pty_fd: int | None = None,
) -> IdleRow:
    """Start `argv`, wait for its boot (a node) and `settle_s`, then sample it for `idle_s`."""
    loop = asyncio.get_running_loop()
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=child_environment(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if node else subprocess.DEVNULL,
    )
    try:
        async with contextlib.AsyncExitStack() as stack:
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            if ground_pty_fd is not None:
                # A ground that takes the node's TM frames: its downlink runs as in contact.
                ground = await stack.enter_async_context(SerialLink.pty_master(ground_pty_fd))
                drain = tasks.create_task(_drain(ground), name="drain")
                stack.callback(drain.cancel)
            if node:
                assert process.stderr is not None
                lines: list[str] = []
                async with asyncio.timeout(BOOT_TIMEOUT_S):
                    await _wait_for_boot(process.stderr, lines)
                reader = tasks.create_task(_keep_reading(process.stderr), name="log")
                stack.callback(reader.cancel)
            await asyncio.sleep(settle_s)
            startup_ticks, _ = cpu_ticks_and_threads(process.pid)
            start_s = loop.time()
            samples = [rss_bytes(process.pid)]
            threads = 0
            while loop.time() - start_s < idle_s:
                await asyncio.sleep(SAMPLE_PERIOD_S)
                samples.append(rss_bytes(process.pid))
                _, count = cpu_ticks_and_threads(process.pid)
                threads = max(threads, count)
            end_ticks, _ = cpu_ticks_and_threads(process.pid)
            window_s = loop.time() - start_s
            if process.returncode is not None:
                raise SystemExit(f"benchmark broken: {name} exited during the idle window")
    finally:
        await stop_process(process)
    cpu_s = (end_ticks - startup_ticks) / CLOCK_TICKS_PER_S
    return IdleRow(
        name,
        statistics.median(samples),
        max(samples),
        100.0 * cpu_s / window_s,
        startup_ticks / CLOCK_TICKS_PER_S,
        threads,
        window_s,
    )


def run_idle(idle_s: float, settle_s: float, work_dir: Path) -> list[IdleRow]:
    work_dir.mkdir(parents=True, exist_ok=True)
    sleep_s = idle_s + settle_s + 30.0  # the peers outlive the window; they are stopped after it
    no_link = work_dir / "nolink"
    no_link.mkdir()
    (no_link / "node.toml").write_text('[node]\nname = "bench"\nstate_dir = "state"\n')
    with_link = work_dir / "pty"
    with_link.mkdir()
    key_file = write_key(with_link)
    pair = open_pty_pair()
    (with_link / "node.toml").write_text(
        "[node]\n"
        'name = "bench"\n'
        'state_dir = "state"\n'
        "[link]\n"
        f'url = "serial://{pair.slave_path}?baudrate={BAUD}"\n'
        f'key_file = "{key_file.name}"\n'
    )
    flight_argv = ["flight", "--config", "node.toml", "--log-level", "INFO"]
    cases = [
        (
            "bare `asyncio.run(asyncio.sleep(...))` (peer)",
            [sys.executable, "-c", f"import asyncio; asyncio.run(asyncio.sleep({sleep_s}))"],
            work_dir,
            {"node": False},
        ),
        (
            "node's modules imported, then the same sleep",
            [
                sys.executable,
                "-c",
                "import asyncio, penumbra.cli, flight.runtime.main; "
                f"asyncio.run(asyncio.sleep({sleep_s}))",
            ],
            work_dir,
            {"node": False},
        ),
        (
            "`penumbra flight`, no link (TM stored)",
            penumbra_command(*flight_argv),
            no_link,
            {"node": True},
        ),
        (
            "`penumbra flight`, serial link on a pty, TM taken by a reader",
            penumbra_command(*flight_argv),
            with_link,
            {"node": True, "ground_pty_fd": pair.master_fd},
        ),
    ]
    rows = []
    for name, argv, cwd, options in cases:
        gc.collect()
        print(f"  idle: {name} ...", file=sys.stderr, flush=True)
        rows.append(asyncio.run(idle_process(name, argv, cwd, idle_s, settle_s, **options)))
    return rows


def idle_table(rows: list[IdleRow]) -> str:
    mib = 1024 * 1024
    lines = [
        "| process | RSS median (MiB) | RSS max (MiB) | CPU, idle (% of a core)"
        " | CPU before the window (s) | threads | window (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.process} | {row.rss_median_bytes / mib:.1f} | {row.rss_max_bytes / mib:.1f}"
            f" | {row.cpu_percent:.2f} | {row.startup_cpu_s:.2f} | {row.threads}"
            f" | {row.window_s:.0f} |"
        )
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=("jitter", "roundtrip", "idle"),
        help="run only this part (repeatable); default: all three",
    )
    parser.add_argument(
        "--jitter-s", type=float, default=JITTER_S, help="measured seconds per jitter case"
    )
    parser.add_argument("--warmup-s", type=float, default=WARMUP_S)
    parser.add_argument("--commands", type=int, default=COMMANDS, help="NOOPs per round-trip case")
    parser.add_argument("--idle-s", type=float, default=IDLE_S, help="idle window per process")
    args = parser.parse_args(argv)
    if args.jitter_s <= 0 or args.warmup_s < 0 or args.commands < 1 or args.idle_s <= 0:
        parser.error("durations must be positive and --commands at least 1")
    if "numpy" in sys.modules:
        raise SystemExit("benchmark broken: numpy was imported before its BLAS threads were set")
    for name, value in BLAS_THREADS.items():
        os.environ.setdefault(name, value)
    parts = args.only or ["jitter", "roundtrip", "idle"]
    quiet_logging()

    print(machine())
    print(
        f"workload: jitter {args.jitter_s:g} s per case after {args.warmup_s:g} s warm-up;"
        f" {args.commands} NOOPs per round-trip case after {WARMUP_COMMANDS};"
        f" idle window {args.idle_s:g} s\n"
    )
    with tempfile.TemporaryDirectory(prefix="penumbra-bench-") as temporary:
        work_dir = Path(temporary)
        if "jitter" in parts:
            rows = run_jitter(args.jitter_s, args.warmup_s, work_dir)
            print("10 Hz rate-group start lateness (real-time loop):\n")
            print(jitter_table(rows))
            print()
        if "roundtrip" in parts:
            trips = run_round_trips(args.commands, work_dir)
            print(
                "command round trip, NOOP send -> completion report (1,7) at the GroundStation;"
                f" wire time = TC frame + TM frames carrying its reports, COBS-framed,"
                f" {BITS_PER_OCTET} bits/octet at {BAUD} baud:\n"
            )
            print(trip_table(trips))
            print()
        if "idle" in parts:
            rows_idle = run_idle(args.idle_s, args.warmup_s, work_dir / "idle")
            print("idle cost of one process (VmRSS sampled every second; utime + stime):\n")
            print(idle_table(rows_idle))
            print()
    print(f"load average at end (1, 5, 15 min): {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
