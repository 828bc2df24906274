"""The bench's hand on the line: seeded faults, outages and a record of every frame between the
ground station and the target's link (pty, serial, MQTT or in-memory)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from flight.link.base import Link, LinkBase, LinkCounters, LinkDown
from flight.protocol.describe import describe, find_errors
from flight.protocol.errors import ProtocolError
from hil.faults import FaultInjector, FaultModel

UP = "up"  # ground -> target (TC frames)
DOWN = "down"  # target -> ground (TM frames)
_BYPASS_AND_CONTROL = 0x30  # TC primary header, first octet: bypass and control command flags
STATE_POLL_S = 0.1  # how often the up state of a link without wait_down() is looked at
RECORD_VERSION = 1
RECENT_FRAMES = 64  # frames the station sent that `sent_frames` keeps


@dataclass(frozen=True, slots=True)
class LineCounters:
    """What the bench did to one direction of the line since the BenchLink was made."""

    frames: int = 0  # frames that entered the line
    delivered: int = 0  # copies handed on (duplicates count twice)
    lost: int = 0  # lost to the fault model, an outage or a link that was down by then
    lost_in_outage: int = 0  # also in `lost`
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0  # copies with bits flipped


class LinkRecorder:
    """One JSON line per frame that crossed the bench, to a file: the per-test `link.jsonl`.

    The first line is a header (`record`, `version`, `started_utc`, plus the caller's fields);
    each further line is `{"t_s", "dir", "octets", "hex", "copies": [{"delay_s", "corrupted",
    "hex"?}], "outage"?, "raw"?}`: `t_s` on the loop clock since the test began, `hex` the frame
    as the sender gave it (before COBS framing on a serial line), `copies` what arrived at the
    other end (none: lost; two: duplicated; `hex` only for a corrupted copy), `raw` for a frame
    a test put on the line past the station.
    """

    def __init__(self, path: Path, **header: Any) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = 0
        self._out: IO[str] | None = self.path.open("w", encoding="utf-8")
        self._start_s: float | None = None
        self._write(
            {
                "record": "penumbra bench link",
                "version": RECORD_VERSION,
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **header,
            }
        )

    def record(
        self,
        now_s: float,
        direction: str,
        frame: bytes,
        copies: list[tuple[float, bytes]],
        *,
        outage: bool = False,
        raw: bool = False,
    ) -> None:
        if self._start_s is None:
            self._start_s = now_s
        entry: dict[str, Any] = {
            "t_s": round(now_s - self._start_s, 6),
            "dir": direction,
            "octets": len(frame),
            "hex": frame.hex(),
            "copies": [
                {"delay_s": round(delay_s, 6), "corrupted": copy != frame}
                | ({"hex": copy.hex()} if copy != frame else {})
                for delay_s, copy in copies
            ],
        }
        if outage:
            entry["outage"] = True
        if raw:
            entry["raw"] = True  # put on the line by the test, past the station
        self.frames += 1
        self._write(entry)

    def start_clock(self, now_s: float) -> None:
        """Count `t_s` from `now_s` (the loop time the test began) instead of the first frame."""
        self._start_s = now_s

    def _write(self, entry: dict[str, Any]) -> None:
        if self._out is not None:
            self._out.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def close(self) -> None:
        out, self._out = self._out, None
        if out is not None:
            out.close()


def read_record(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, frames) of a `link.jsonl` written by LinkRecorder."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines:
        raise ValueError(f"{path}: empty; a link record starts with its header line")
    header = json.loads(lines[0])
    return header, [json.loads(line) for line in lines[1:] if line.strip()]


@dataclass(slots=True)
class DirectionCounters:
    """Live counts of one direction (LineCounters is its snapshot)."""

    frames: int = 0
    delivered: int = 0
    lost: int = 0
    lost_in_outage: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0

    def snapshot(self) -> LineCounters:
        return LineCounters(
            self.frames,
            self.delivered,
            self.lost,
            self.lost_in_outage,
            self.duplicated,
            self.reordered,
            self.corrupted,
        )


@dataclass(slots=True)
class BenchLinkCounters(LinkCounters):
    """The link's own counters (what the station sent and received through it), and what the
    bench did to each direction."""

    uplink: DirectionCounters = field(default_factory=DirectionCounters)
    downlink: DirectionCounters = field(default_factory=DirectionCounters)

    @property
    def injected(self) -> int:
        """Faults applied, both ways: frames lost (fault model or outage), duplicated, held
        back (reordered) or corrupted."""
        return sum(
            line.lost + line.duplicated + line.reordered + line.corrupted
            for line in (self.uplink, self.downlink)
        )


class _Direction:
    """One way across the bench: a fault model (or none), an outage window, and frames held
    back for their delivery time, handed on in arrival order by `run`."""

    def __init__(self, rng: random.Random, counters: DirectionCounters) -> None:
        self.rng = rng
        self.injector: FaultInjector | None = None
        self.counters = counters
        self._pending: list[tuple[float, int, bytes]] = []  # (due_s, order, frame)
        self._order = 0
        self._changed = asyncio.Event()

    def set_model(self, model: FaultModel | None) -> None:
        # The rng carries on: a seed reproduces the whole run, however often faults change.
        self.injector = None if model is None else FaultInjector(model, self.rng)

    @property
    def holding(self) -> bool:
        return bool(self._pending)

    def fates(self, frame: bytes, now_s: float) -> list[tuple[float, bytes]]:
        """What arrives of `frame`: (delay_s, copy) pairs, [] if lost; counted."""
        injector = self.injector
        counters = self.counters
        counters.frames += 1
        if injector is None:
            return [(0.0, frame)]
        before = (
            injector.duplicated,
            injector.reordered,
            injector.corrupted,
            injector.lost_in_outage,
        )
        copies = [(delay_s, bytes(copy)) for delay_s, copy in injector(frame, now_s)]
        counters.duplicated += injector.duplicated - before[0]
        counters.reordered += injector.reordered - before[1]
        counters.corrupted += injector.corrupted - before[2]
        counters.lost_in_outage += injector.lost_in_outage - before[3]
        if not copies:
            counters.lost += 1
        return copies

    def hold(self, due_s: float, frame: bytes) -> None:
        heapq.heappush(self._pending, (due_s, self._order, frame))
        self._order += 1
        self._changed.set()

    async def run(self, hand_on: Callable[[bytes], Any]) -> None:
        """Hand on held frames at their due times, in (due, order) order; forever."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._changed.clear()
                await self._changed.wait()
                continue
            due_s = self._pending[0][0]
            if due_s > loop.time():
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(due_s):
                        await self._changed.wait()
                continue
            _, _, frame = heapq.heappop(self._pending)
            result = hand_on(frame)
            if asyncio.iscoroutine(result):
                await result


class BenchLink(LinkBase):
    """A Link that wraps the ground's link to a target: the station talks to it as to the line.

    Faults are off until `set_faults(uplink=FaultModel(...), downlink=...)` (seeded by `seed`,
    so a run repeats exactly); `outage(seconds)` loses every frame both ways for that long while
    both ends still see the link up, as a line does when its signal fades. Every frame is given
    to `recorder` with its fate. The inner link is the target's, entered and closed by it,
    unless `owns_inner`; it may go down and come back (a node's power cut) underneath.
    """

    def __init__(
        self,
        inner: Link,
        *,
        uplink: FaultModel | None = None,
        downlink: FaultModel | None = None,
        seed: int = 0,
        recorder: LinkRecorder | None = None,
        owns_inner: bool = False,
    ) -> None:
        super().__init__(f"bench:{inner.name}")
        self.inner = inner
        self.seed = seed
        self.recorder = recorder
        self.counters: BenchLinkCounters = BenchLinkCounters()
        self.sent_frames: deque[bytes] = deque(maxlen=RECENT_FRAMES)  # the station's, newest last
        self._owns_inner = owns_inner
        self._up_line = _Direction(random.Random(f"{seed}:{UP}"), self.counters.uplink)
        self._down_line = _Direction(random.Random(f"{seed}:{DOWN}"), self.counters.downlink)
        self.set_faults(uplink, downlink)
        self._outage_until_s = -math.inf

    # -- faults ------------------------------------------------------------------------------------

    def set_faults(
        self, uplink: FaultModel | None = None, downlink: FaultModel | None = None
    ) -> None:
        """Apply these fault models from now on (None: that direction clean)."""
        self._up_line.set_model(uplink)
        self._down_line.set_model(downlink)

    def clear_faults(self) -> None:
        self.set_faults(None, None)

    @property
    def faults(self) -> tuple[FaultModel | None, FaultModel | None]:
        """The (uplink, downlink) fault models in force."""
        return tuple(  # type: ignore[return-value]
            None if line.injector is None else line.injector.model
            for line in (self._up_line, self._down_line)
        )

    def outage(self, seconds: float) -> None:
        """Lose every frame, both ways, for `seconds` of loop time from now."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"an outage lasts a finite time >= 0 s, not {seconds!r}")
        until_s = asyncio.get_running_loop().time() + seconds
        self._outage_until_s = max(self._outage_until_s, until_s)

    @property
    def in_outage(self) -> bool:
        return asyncio.get_running_loop().time() < self._outage_until_s

    # -- the Link ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._owns_inner:
            await self.inner.__aenter__()
        await self._start_keeper(self._keep())
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
            if self._owns_inner:
                await self.inner.__aexit__(exc_type, exc, tb)

    @property
    def up(self) -> bool:
        return self._up and not self.closed and self.inner.up

    async def send(self, frame: bytes) -> None:
        await self._send(bytes(frame), raw=False)

    async def send_raw(self, frame: bytes) -> None:
        """Put `frame` on the uplink as it is, as a third party on the line would: past the
        station (no COP-1, no security), through the same faults. LinkDown if the line is down."""
        await self._send(bytes(frame), raw=True)

    def last_sent_frame(self) -> bytes:
        """The newest sequence-controlled (type AD) TC frame the station sent: an authenticated
        command frame as the node accepted it, for a replay test. LookupError if none yet."""
        for frame in reversed(self.sent_frames):
            if len(frame) >= 2 and frame[0] & _BYPASS_AND_CONTROL == 0:
                return frame
        raise LookupError(
            "the station has sent no type-AD TC frame through the bench yet; send a command first"
        )

    async def _send(self, frame: bytes, *, raw: bool) -> None:
        if not self.up:
            self.last_error = getattr(self.inner, "last_error", "") or self.last_error
            raise self._refuse()
        loop = asyncio.get_running_loop()
        now_s = loop.time()
        line = self._up_line
        if line.injector is None and not line.holding and now_s >= self._outage_until_s:
            await self.inner.send(frame)  # LinkDown reaches the caller, who keeps the frame
            line.counters.frames += 1
            line.counters.delivered += 1
            self._record(now_s, UP, frame, [(0.0, frame)], raw=raw)
        else:
            for delay_s, copy in self._fates(line, now_s, UP, frame, raw=raw):
                line.hold(now_s + delay_s, copy)
        if not raw:
            self.sent_frames.append(frame)
            self._count_sent(frame)

    def _fates(
        self, line: _Direction, now_s: float, direction: str, frame: bytes, *, raw: bool = False
    ) -> list[tuple[float, bytes]]:
        if now_s < self._outage_until_s:
            line.counters.frames += 1
            line.counters.lost += 1
            line.counters.lost_in_outage += 1
            self._record(now_s, direction, frame, [], outage=True, raw=raw)
            return []
        copies = line.fates(frame, now_s)
        self._record(now_s, direction, frame, copies, raw=raw)
        return copies

    def _record(
        self,
        now_s: float,
        direction: str,
        frame: bytes,
        copies: list[tuple[float, bytes]],
        *,
        outage: bool = False,
        raw: bool = False,
    ) -> None:
        if self.recorder is not None:
            self.recorder.record(now_s, direction, frame, copies, outage=outage, raw=raw)

    async def _keep(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._mirror_state(), name=f"{self.name} state")
            tasks.create_task(self._receive(), name=f"{self.name} receive")
            tasks.create_task(self._up_line.run(self._send_held), name=f"{self.name} uplink")
            tasks.create_task(self._down_line.run(self._deliver_copy), name=f"{self.name} down")

    async def _send_held(self, frame: bytes) -> None:
        try:
            await self.inner.send(frame)
        except LinkDown:
            self._up_line.counters.lost += 1  # the line went down while the frame was held
            return
        self._up_line.counters.delivered += 1

    def _deliver_copy(self, frame: bytes) -> None:
        self._down_line.counters.delivered += 1
        self._deliver(frame)

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        line = self._down_line
        while True:
            try:
                frame = bytes(await self.inner.receive())
            except LinkDown:
                return
            now_s = loop.time()
            if line.injector is None and not line.holding and now_s >= self._outage_until_s:
                line.counters.frames += 1
                self._record(now_s, DOWN, frame, [(0.0, frame)])
                self._deliver_copy(frame)
                continue
            for delay_s, copy in self._fates(line, now_s, DOWN, frame):
                line.hold(now_s + delay_s, copy)

    async def _mirror_state(self) -> None:
        """Follow the inner link's up state, so that waiters on this one wake."""
        while True:
            try:
                await self.inner.wait_up()
            except LinkDown:
                self._set_up(False)
                return
            self._set_up(True)
            wait_down = getattr(self.inner, "wait_down", None)
            if callable(wait_down):
                await wait_down()
            else:
                while self.inner.up:
                    await asyncio.sleep(STATE_POLL_S)
            self.last_error = getattr(self.inner, "last_error", "") or "the line went down"
            self._set_up(False)


# -- the decoded record ----------------------------------------------------------------------------


def frame_summary(frame: bytes) -> str:
    """One line for a frame, from the ICD's reader (`penumbra decode`): kind, channel, counts,
    the packets it carries, the CLCW; `undecodable: why` for a frame that is not one."""
    try:
        description = describe(frame)
    except ProtocolError as error:
        return f"undecodable: {error}"
    try:
        return _summary(description)
    except (KeyError, TypeError, AttributeError):  # a shape this reader does not know yet
        return f"{description.get('kind', '?')} (see `penumbra decode {frame.hex()}`)"


def _summary(description: dict[str, Any]) -> str:
    kind = description.get("kind")
    if kind == "tc-frame":
        header = description["primary_header"]
        text = (
            f"TC {description.get('frame_type', '?')} vc={header['virtual_channel_identifier']} "
            f"N(S)={header['frame_sequence_number']}"
        )
        security = description.get("security_header")
        if isinstance(security, dict) and "iv" in security:
            text += f" iv={security['iv']}"
    elif kind == "tm-frame":
        header = description["transfer_frame_primary_header"]
        name = header.get("virtual_channel_id_name") or header["virtual_channel_id"]
        text = (
            f"TM vc={name} mc={header['master_channel_frame_count']} "
            f"vc#={header['virtual_channel_frame_count']}"
        )
        clcw = description.get("operational_control_field")
        if isinstance(clcw, dict) and "report_value" in clcw:
            flags = [flag for flag in ("lockout", "wait", "retransmit") if clcw.get(flag)]
            text += f" clcw N(R)={clcw['report_value']}" + "".join(f" {flag}" for flag in flags)
    else:
        text = str(kind)
    packets = _packet_runs(
        [packet for packet in description.get("packets", []) if packet.get("kind") != "idle"]
    )
    if packets:
        text += " | " + "; ".join(packets)
    errors = find_errors(description)
    if errors:
        text += " | ERRORS: " + "; ".join(f"{path}: {entry['error']}" for path, entry in errors)
    return text


def _packet_runs(packets: list[dict[str, Any]]) -> list[str]:
    """Packets as text, a run of alike ones (twelve housekeeping reports) as one entry."""
    runs: list[tuple[str, list[Any]]] = []
    for packet in packets:
        what, sequence = _packet_summary(packet)
        if runs and runs[-1][0] == what and sequence is not None:
            runs[-1][1].append(sequence)
        else:
            runs.append((what, [sequence]))
    texts = []
    for what, sequences in runs:
        if len(sequences) == 1:
            texts.append(what if sequences[0] is None else f"{what} seq={sequences[0]}")
        else:
            texts.append(f"{len(sequences)} x {what} seq={sequences[0]}..{sequences[-1]}")
    return texts


def _packet_summary(packet: dict[str, Any]) -> tuple[str, int | None]:
    """(what the packet is, its sequence count)."""
    kind = packet.get("kind", "?")
    if "error" in packet:
        return f"{kind} error: {packet['error']}", None
    header = packet.get("primary_header", {})
    secondary = packet.get("secondary_header") or {}
    text = f"{kind} apid={header.get('apid')}"
    if "service" in secondary:
        service = secondary.get("service_name") or secondary["service"]
        subtype = secondary.get("subtype_name") or secondary.get("subtype")
        text += f" {service}/{subtype}"
    data = packet.get("source_data") or packet.get("application_data")
    if isinstance(data, dict) and "kind" in data:
        text += f" {data['kind']}"
    return text, header.get("sequence_count")


def _fate(entry: dict[str, Any]) -> str:
    copies = entry.get("copies", [])
    if entry.get("outage"):
        return "outage"
    if not copies:
        return "lost"
    words = []
    if len(copies) > 1:
        words.append(f"x{len(copies)}")
    if any(copy.get("corrupted") for copy in copies):
        words.append("corrupted")
    longest_s = max(copy.get("delay_s", 0.0) for copy in copies)
    if longest_s > 0:
        words.append(f"+{longest_s:.3f}s")
    if entry.get("raw"):
        words.append("raw")
    return ",".join(words) or "ok"


def write_traffic(record: Path, out: Path, history: Sequence[Any] = ()) -> None:
    """traffic.txt from a link.jsonl: one decoded line per frame (time, direction, what the bench
    did to it, the frame), then what the ground station made of the downlink (`history`: the
    IntegrationApi's, in arrival order)."""
    header, entries = read_record(record)
    with Path(out).open("w", encoding="utf-8") as text:
        fields = ", ".join(f"{key}={value}" for key, value in header.items() if key != "record")
        text.write(f"# frames on the bench line ({fields})\n")
        text.write("#      t_s dir  fate       frame\n")
        for entry in entries:
            frame = bytes.fromhex(entry["hex"])
            text.write(
                f"{entry['t_s']:10.3f} {entry['dir']:<4} {_fate(entry):<10} "
                f"{frame_summary(frame)}\n"
            )
        shown = [item for item in history if type(item).__name__ != "HousekeepingReport"]
        text.write(f"\n# decoded by the ground station ({len(shown)} items, in arrival order)\n")
        for item in shown:  # a housekeeping report's samples follow it one by one
            text.write(f"{type(item).__name__}: {item}\n")
