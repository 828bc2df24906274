"""The ISL component (id 18): beacons to neighbours, routing with store-and-forward, and offload
of payload jobs to other satellites, exactly once across lost frames, lost links and reboots.

It drives the pure library of this package (beacon, routing, offload) with the node's clock,
links, payload and power. Files (models, inputs, results) cross the ISL as CFDP class 1 PDUs,
one per FILE routed packet; a transfer that loses a PDU is simply sent again when the ledger's
retry rules say so. The ledger is saved (atomically) before anything it returned is sent.
"""

import asyncio
import contextlib
import heapq
import itertools
import math
import os
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.isl.beacon import Beacon, NeighbourTable
from flight.isl.frame import BROADCAST_ADDRESS, IslFrame, PacketKind, RoutedPacket
from flight.isl.offload import (
    DeclineReason,
    DoneStatus,
    ExecutorState,
    JobId,
    LedgerEvent,
    Offer,
    OffloadError,
    OffloadLedger,
    OriginState,
    Outgoing,
    Reaction,
    ResultTransfer,
    decode_message,
    earliest_contact,
    message_kind,
    rank_candidates,
)
from flight.isl.routing import Action, ContactGraph, Router, RoutingDecision
from flight.link.base import LinkError
from flight.orbit import Forecast, GroundSite, Orbit, OrbitError
from flight.payload.jobs import ACTIVE_STATES, JobState, JobView, PayloadError
from flight.payload.models import ModelRefused
from flight.payload.storage import fsync_directory, read_npy
from flight.protocol.cfdp import (
    EofPdu,
    FileReceiver,
    FileSender,
    TransactionId,
    TransferResult,
    decode_pdu,
)
from flight.protocol.errors import ProtocolError
from flight.runtime.clock import MissionClock
from flight.runtime.component import (
    Arg,
    Component,
    Event,
    Mode,
    Severity,
    Telemetry,
    rate_group,
)
from flight.runtime.config import IslSection
from flight.runtime.store import Counter, Store, StoreError

ISL_COMPONENT_ID = 18
"""The ISL component's id when a node hosts it."""
STATE_RECORD = "isl_offload"
OFFER_TIMEOUT_RETRIES = 3  # an offer unanswered for this many retry periods is withdrawn
LINK_QUEUE_PACKETS = 4096  # packets waiting for one link's serialiser; beyond: dropped, counted
FILE_PRIORITY = 2  # files go after control traffic (7) and before bulk data (0)
CONTROL_PRIORITY = 7
OFFLOADED_JOB_PRIORITY = 128  # an offloaded job runs among the middle of the executor's own
CONTACT_FORECAST_PERIOD_S = 600.0
CONTACT_FORECAST_HORIZON_S = 12_000.0  # about two orbits at 550 km: a pass is in it
NO_POWER_HEADROOM_J = 1e9  # a node without an EPS to read beacons this: it never runs short
JOB_TAG_PREFIX = "isl:"  # a payload job run for another node is tagged isl:<job name>
_UNIX_TO_TAI_S = MissionClock.tai_from_unix(0.0)
_NO_STATE_CHANGE = frozenset(
    {
        LedgerEvent.IGNORED,
        LedgerEvent.REPEATED,
        LedgerEvent.DECLINED,
        LedgerEvent.UNWANTED,
        LedgerEvent.RESULT_DUPLICATE,
        LedgerEvent.INPUTS_NEEDED,
    }
)
_STATUS_WORDS = {
    DoneStatus.COMPLETED: "completed",
    DoneStatus.FAILED: "failed",
    DoneStatus.EXPIRED: "expired",
    DoneStatus.RELEASED: "released",
}


@dataclass(frozen=True, slots=True)
class OffloadRecord:
    """What the node publishes on its bus topic "offload" as an offloaded job moves on.

    `kind` "bound" (at the origin, an executor is bound), "closed" (at the origin, `status`
    "completed", "expired", "released" or "failed") or "result_stored" (at the holder).
    `job` is "origin:local_id"; `time_s` the node's loop seconds.
    """

    kind: str
    job: str
    origin: int
    executor: int
    holder: int | None
    status: str
    time_s: float


def job_label(job: JobId) -> str:
    return f"{job.origin}:{job.local_id}"


def _file_name(job: JobId, part: str) -> str:
    return f"{job.name}.{part}"


def _parse_file_name(name: str) -> tuple[JobId, str] | None:
    stem, _, part = name.partition(".")
    origin, _, local = stem.partition("-")
    try:
        return JobId(int(origin, 16), int(local, 16)), part
    except ValueError:
        return None


def _link_up(link: Any) -> bool:
    """A link is used while it is up and, where it says so (MemoryLink), in contact."""
    return bool(getattr(link, "in_contact", True)) and bool(link.up)


class _LinkQueue:
    """Packets waiting for one link: control first, then by priority, then in order."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, int, RoutedPacket]] = []
        self._order = itertools.count()
        self.ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def put(self, packet: RoutedPacket) -> None:
        is_bulk = packet.kind in (PacketKind.DATA, PacketKind.FILE)
        heapq.heappush(self._heap, (is_bulk, -packet.priority, next(self._order), packet))
        self.ready.set()

    def take(self) -> RoutedPacket:
        packet = heapq.heappop(self._heap)[3]
        if not self._heap:
            self.ready.clear()
        return packet

    def drain(self) -> list[RoutedPacket]:
        packets = [entry[3] for entry in sorted(self._heap)]
        self._heap.clear()
        self.ready.clear()
        return packets


class Isl(Component):
    """Inter-satellite links: neighbour beacons, routing and store-and-forward, job offload."""

    ADDRESS = Telemetry("u32", doc="This node's ISL address.")
    LINKS_UP = Telemetry("u16", doc="ISLs up (in contact) now.")
    NEIGHBOURS = Telemetry("u16", doc="Neighbours heard within the expiry time.")
    BEACONS_SENT = Telemetry("u32")
    BEACONS_RECEIVED = Telemetry("u32")
    FRAMES_REJECTED = Telemetry("u32", doc="ISL frames that did not decode (CRC, length, field).")
    PACKETS_DELIVERED = Telemetry("u32", doc="Routed packets for this node (beacons included).")
    PACKETS_FORWARDED = Telemetry("u32", doc="Routed packets sent on towards their destination.")
    PACKETS_STORED = Telemetry("u32", doc="Packets kept for lack of a path (store-and-forward).")
    PACKETS_DROPPED = Telemetry(
        "u32", doc="Packets dropped: hop limit, full store or full link queue (each an event)."
    )
    STORE_PACKETS = Telemetry("u32", doc="Packets in the store-and-forward store now.")
    STORE_OCTETS = Telemetry("u32", units="octets", doc="Octets in the store now.")
    OFFERS_MADE = Telemetry("u32", doc="Offers of this node's jobs sent to a neighbour.")
    OFFERS_ACCEPTED = Telemetry("u32", doc="Offers of this node's jobs accepted (bound).")
    OFFERS_DECLINED = Telemetry("u32", doc="Offers declined, released or withdrawn.")
    JOBS_RUN_FOR_OTHERS = Telemetry("u32", doc="Offloaded jobs started here for another node.")
    RESULTS_HELD = Telemetry("u32", doc="Results of offloaded jobs stored here for the ground.")
    FILES_SENT = Telemetry("u32", doc="File transfers started over the ISL.")
    FILES_RECEIVED = Telemetry("u32", doc="File transfers received whole and checked.")
    FILES_FAILED = Telemetry("u32", doc="File transfers that ended incomplete (sent again later).")

    NEIGHBOUR_UP = Event(Severity.INFORMATIVE, "neighbour {address} heard", address=Arg("u32"))
    NEIGHBOUR_LOST = Event(
        Severity.INFORMATIVE, "neighbour {address} not heard: forgotten", address=Arg("u32")
    )
    PACKET_DROPPED = Event(
        Severity.LOW,
        "{kind} packet {source}->{destination} dropped: {reason}",
        kind=Arg("enum", values=PacketKind),
        source=Arg("u32"),
        destination=Arg("u32"),
        reason=Arg("string", max_length=40),
    )
    PACKETS_RELEASED = Event(
        Severity.INFORMATIVE,
        "{count} stored packets for {destination} sent via {next_hop}",
        count=Arg("u16"),
        destination=Arg("u32"),
        next_hop=Arg("u32"),
    )
    OFFLOAD_OFFERED = Event(
        Severity.INFORMATIVE,
        "job {job} offered to {executor}",
        job=Arg("string", max_length=24),
        executor=Arg("u32"),
    )
    OFFLOAD_BOUND = Event(
        Severity.INFORMATIVE,
        "job {job} bound to {executor}: model and inputs sent",
        job=Arg("string", max_length=24),
        executor=Arg("u32"),
    )
    OFFLOAD_REFUSED = Event(
        Severity.INFORMATIVE,
        "job {job} not taken by {executor} ({why})",
        job=Arg("string", max_length=24),
        executor=Arg("u32"),
        why=Arg("string", max_length=24),
    )
    OFFLOAD_CLOSED = Event(
        Severity.INFORMATIVE,
        "job {job} closed: {status}",
        job=Arg("string", max_length=24),
        status=Arg("string", max_length=12),
    )
    OFFLOAD_ACCEPTED = Event(
        Severity.INFORMATIVE,
        "job {job} accepted from {origin}",
        job=Arg("string", max_length=24),
        origin=Arg("u32"),
    )
    OFFLOAD_STARTED = Event(
        Severity.INFORMATIVE,
        "job {job} of another node started as payload job {job_id}",
        job=Arg("string", max_length=24),
        job_id=Arg("u32"),
    )
    OFFLOAD_FINISHED = Event(
        Severity.INFORMATIVE,
        "job {job} of another node finished: {status}",
        job=Arg("string", max_length=24),
        status=Arg("string", max_length=12),
    )
    RESULT_STORED = Event(
        Severity.INFORMATIVE,
        "result of job {job} from {executor} stored as {name}",
        job=Arg("string", max_length=24),
        executor=Arg("u32"),
        name=Arg("string", max_length=64),
    )
    STATE_NOT_SAVED = Event(
        Severity.HIGH,
        "offload ledger not saved, nothing sent: {reason}",
        reason=Arg("string", max_length=160),
    )

    def __init__(
        self,
        config: IslSection,
        *,
        state_dir: Path,
        links: Mapping[int, Any],
        payload: Any,
        power: Any = None,
        contact_plan: ContactGraph | None = None,
        orbit: Orbit | None = None,
        ground_sites: Sequence[GroundSite] = (),
        name: str = "isl",
    ) -> None:
        """`links`: peer address -> an opened flight.link Link (kept by the caller across
        reboots). `contact_plan`: the links of the constellation as the ground (or the emulator)
        knows them; without one, only the direct neighbours are reachable."""
        super().__init__(name)
        if config.address is None:
            raise ValueError("an ISL component needs [isl] address")
        self.config = config
        self.address: int = config.address
        self.links = dict(links)
        self.payload = payload
        self.power = power
        self.orbit = orbit
        self.ground_sites = tuple(ground_sites)
        if contact_plan is None:
            contact_plan = ContactGraph()
            contact_plan.add_node(self.address)
            for peer in self.links:
                contact_plan.set_link(self.address, peer, delay_s=0.0, rate_bps=1e6)
        self.graph = contact_plan
        self.router = Router(
            self.address,
            contact_plan,
            max_packets_per_destination=config.store_packets,
            max_octets=config.store_octets,
        )
        self.router.next_hop_for = self._next_hop
        self.neighbours = NeighbourTable(config.neighbour_expiry_s)
        self.decisions: deque[RoutingDecision] = deque(maxlen=256)  # the latest, for tests
        self.received_data: deque[RoutedPacket] = deque(maxlen=256)  # DATA delivered here
        self.root = Path(state_dir) / "isl"
        self.incoming = self.root / "incoming"
        self.outbox = self.root / "outbox"
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.outbox.mkdir(parents=True, exist_ok=True)
        self._store = Store(self.root)
        self._transactions = Counter(self._store, "isl_transaction", reserve=16)
        record = self._store.load(STATE_RECORD) or {}
        if "ledger" in record:
            self.ledger = OffloadLedger.restore(record["ledger"], retry_s=config.retry_s)
        else:
            self.ledger = OffloadLedger(self.address, retry_s=config.retry_s)
        self._reported: set[str] = set(record.get("reported", []))
        self._results_held = len(record.get("ledger", {}).get("results", []))
        self._receiver = FileReceiver(
            self.incoming,
            entity_id=self.address,
            inactivity_timeout_s=2 * config.retry_s,
        )
        self._queues = {peer: _LinkQueue() for peer in self.links}
        self._node: Any = None
        self._group: asyncio.TaskGroup | None = None
        self._starting: set[JobId] = set()
        self._offered_at: dict[JobId, float] = {}
        self._routed_at: dict[JobId, float] = {}
        self._tags: dict[str, int] = {}  # payload tag -> payload job id, as found
        self._file_sequences: dict[tuple[int, str], tuple[int, float]] = {}
        self._stored_results: dict[TransactionId, JobId] = {}
        self._links_seen: tuple[tuple[int, bool], ...] = ()
        self._graph_version = -1
        self._next_beacon_s = -math.inf
        self._forecast: Forecast | None = None
        self._forecast_s = -math.inf
        self._flow = itertools.count(1)
        self._counts = dict.fromkeys(
            (
                "beacons_sent",
                "beacons_received",
                "frames_rejected",
                "link_drops",
                "offers_made",
                "offers_accepted",
                "offers_declined",
                "run_for_others",
                "files_sent",
                "files_received",
                "files_failed",
            ),
            0,
        )
        # A job being offered when the node stopped must not start here meanwhile.
        for job in self.ledger.origin_jobs():
            view = self.ledger.origin_view(job)
            if view is not None and view.state is OriginState.OFFERED:
                with contextlib.suppress(PayloadError):
                    self.payload.hold(job.local_id)
        self.telemetry.ADDRESS = self.address

    def bind_node(self, node: Any) -> None:
        self._node = node

    # -- what others use: tests, the emulator --------------------------------------------------

    def send_data(self, destination: int, payload: bytes, *, priority: int = 0) -> None:
        """Send opaque user data to `destination` (routed, stored while there is no path)."""
        packet = RoutedPacket(
            self.address, destination, PacketKind.DATA, payload, priority, flow_id=self._flow_id()
        )
        self._act(self.router.originate(packet, self._now()))

    def links_up(self) -> list[int]:
        return sorted(peer for peer, link in self.links.items() if _link_up(link))

    # -- the task ------------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                for peer, link in sorted(self.links.items()):
                    group.create_task(self._receive_from(peer, link), name=f"isl.rx{peer}")
                    group.create_task(self._send_to(peer, link), name=f"isl.tx{peer}")
                await asyncio.Future()  # the links' tasks run until the node stops
            finally:
                self._group = None

    async def _receive_from(self, peer: int, link: Any) -> None:
        while True:
            try:
                octets = await link.receive()
            except LinkError:
                return  # closed for good: nothing more will come on it
            self._on_frame(octets)

    async def _send_to(self, peer: int, link: Any) -> None:
        queue = self._queues[peer]
        while True:
            await queue.ready.wait()
            packet = queue.take()
            if not _link_up(link):
                self._link_failed(packet)
                continue
            try:
                await link.send(IslFrame.carrying(packet).encode())
            except LinkError:
                self._link_failed(packet)

    def _link_failed(self, packet: RoutedPacket) -> None:
        """A packet whose link went down before it left: stored for the next path. A beacon
        is not: the next one says more."""
        if packet.kind is not PacketKind.BEACON:
            self._act(self.router.hold(packet, self._now()))

    # -- each second ----------------------------------------------------------------------------

    @rate_group("1Hz")
    def tick(self) -> None:
        """Beacons, retries, releases and offload decisions, on the node's 1 Hz group (so
        that a node on a coarser cadence, as in the emulator, looks at them less often)."""
        if self._group is not None:  # the links' tasks are running
            self._tick()

    def _tick(self) -> None:
        now = self._now()
        links = tuple((peer, _link_up(link)) for peer, link in sorted(self.links.items()))
        if links != self._links_seen or self.graph.version != self._graph_version:
            self._links_seen = links
            self._graph_version = self.graph.version
            self._act(self.router.release(now))
        if now >= self._next_beacon_s:
            self._next_beacon_s = now + self.config.beacon_period_s
            self._send_beacons(now)
        for address in self.neighbours.expire(now):
            self.emit(self.NEIGHBOUR_LOST, address=address)
        for result in self._receiver.expire(now):
            self._file_ended(result)
        self._watch_origin(now)
        self._watch_executor(now)
        for item in self.ledger.due(now):
            if isinstance(item, Outgoing):
                self._send_message(item)
            else:
                self._send_result(item)
        self._publish()

    def _send_beacons(self, now: float) -> None:
        beacon = self._beacon()
        packet = RoutedPacket(
            self.address,
            BROADCAST_ADDRESS,
            PacketKind.BEACON,
            beacon.encode(),
            CONTROL_PRIORITY,
            hop_limit=1,
            flow_id=self._flow_id(),
        )
        for peer in self.links_up():
            self._enqueue(peer, packet)
            self._counts["beacons_sent"] += 1

    def _beacon(self) -> Beacon:
        soc, headroom_j, sunlit = self._energy()
        active = self.payload.jobs(ACTIVE_STATES)
        octets = 0
        for job in active:
            with contextlib.suppress(OSError, PayloadError):
                octets += self.payload.input_path(job.job_id).stat().st_size
        next_contact = self._next_contact_tai()
        return Beacon(
            energy_headroom_j=max(min(headroom_j, 3e38), -3e38),
            queue_jobs=len(active),
            queue_octets=octets,
            sunlit=sunlit,
            soc=min(max(soc, 0.0), 1.0),
            sender_time_tai_s=self._now_tai(),
            accepts_offload=self._accepting(),
            next_contact_tai_s=next_contact,
        )

    def _energy(self) -> tuple[float, float, bool]:
        """(state of charge, energy above the floor in J, sunlit) from the power component."""
        power = self.power
        if power is None:
            return 1.0, NO_POWER_HEADROOM_J, True
        soc = float(power.soc)
        floor = float(power.parameters.FLOOR_SOC)
        return soc, (soc - floor) * power.counter.capacity_j, bool(power.telemetry.SUNLIT)

    def _accepting(self) -> bool:
        return self.config.offload and self.mode is Mode.NOMINAL

    def _next_contact_tai(self) -> float | None:
        """When this node next sees a ground station (TAI s), from its own orbit; None if it
        does not know (no TLE, no sites, none within the horizon)."""
        if self.orbit is None or not self.ground_sites:
            return None
        now = self._now()
        unix = self._now_tai() - _UNIX_TO_TAI_S
        forecast = self._forecast
        # One SGP4 forecast serves until its horizon nears its end: the orbit is the TLE's, so
        # a forecast with no pass in it says "none before its end" for as long. A constellation
        # of a thousand nodes cannot afford more.
        if forecast is None:  # none yet, or it failed: try again each period
            stale = now - self._forecast_s >= CONTACT_FORECAST_PERIOD_S
        else:
            stale = unix >= forecast.end_unix_s - CONTACT_FORECAST_PERIOD_S
        if stale:
            self._forecast_s = now
            try:
                forecast = Forecast.compute(
                    self.orbit, unix, CONTACT_FORECAST_HORIZON_S, sites=self.ground_sites
                )
            except (OrbitError, ValueError):
                forecast = None
            self._forecast = forecast
        if forecast is None:
            return None
        contact = forecast.next("contact", unix)
        return None if contact is None else contact.start_unix_s + _UNIX_TO_TAI_S

    # -- frames and routing ---------------------------------------------------------------------

    def _on_frame(self, octets: bytes) -> None:
        try:
            packet = IslFrame.decode(octets).packet
        except ProtocolError:
            self._counts["frames_rejected"] += 1
            return
        self._act(self.router.receive(packet, self._now()))

    def _next_hop(self, destination: int) -> int | None:
        """The contact plan's next hop if our own link to it is up; else the best neighbour
        whose link is up and from which the plan has a path; None: store."""
        plan = self.graph
        octets = self.router.nominal_octets
        best = plan.next_hop(self.address, destination, octets)
        if best is not None and self._up(best):
            return best
        choices = []
        for neighbour in plan.neighbours(self.address):
            if not self._up(neighbour):
                continue
            first = plan.link(self.address, neighbour)
            assert first is not None
            if neighbour == destination:
                choices.append((first.cost_ns(octets), neighbour))
                continue
            route = plan.routes(neighbour, octets).get(destination)
            if route is not None and self.address not in route.path:
                choices.append((first.cost_ns(octets) + route.cost_ns, neighbour))
        return min(choices)[1] if choices else None

    def _up(self, peer: int) -> bool:
        link = self.links.get(peer)
        return link is not None and _link_up(link)

    def _act(self, decisions: list[RoutingDecision]) -> None:
        released: dict[tuple[int, int], int] = {}
        for decision in decisions:
            self.decisions.append(decision)
            packet = decision.packet
            if decision.action is Action.DELIVERED:
                self._deliver(packet)
            elif decision.action is Action.FORWARDED:
                assert decision.next_hop is not None
                if decision.stored_s is not None:
                    key = (packet.destination, decision.next_hop)
                    released[key] = released.get(key, 0) + 1
                if decision.next_hop == BROADCAST_ADDRESS:
                    for peer in self.links_up():
                        self._enqueue(peer, packet)
                elif decision.next_hop in self._queues:
                    self._enqueue(decision.next_hop, packet)
                else:  # the plan names a neighbour this node has no link to
                    self._act(self.router.hold(packet, decision.time_s))
            elif decision.action is Action.DROPPED:
                assert decision.reason is not None
                self._dropped(packet, decision.reason.value)
        if self._node is not None:
            for decision in decisions:
                self._node.bus.publish("routing", decision)
        for (destination, next_hop), count in sorted(released.items()):
            self.emit(
                self.PACKETS_RELEASED,
                count=min(count, 0xFFFF),
                destination=destination,
                next_hop=next_hop,
            )

    def _enqueue(self, peer: int, packet: RoutedPacket) -> None:
        queue = self._queues[peer]
        if len(queue) >= LINK_QUEUE_PACKETS:
            self._counts["link_drops"] += 1
            self._dropped(packet, "link queue full")
            return
        queue.put(packet)

    def _dropped(self, packet: RoutedPacket, reason: str) -> None:
        self.emit(
            self.PACKET_DROPPED,
            kind=packet.kind,
            source=packet.source,
            destination=packet.destination,
            reason=reason,
        )

    def _originate(self, destination: int, kind: PacketKind, payload: bytes, priority: int) -> None:
        packet = RoutedPacket(
            self.address, destination, kind, payload, priority, flow_id=self._flow_id()
        )
        self._act(self.router.originate(packet, self._now()))

    def _deliver(self, packet: RoutedPacket) -> None:
        try:
            if packet.kind is PacketKind.BEACON:
                self._on_beacon(packet)
            elif packet.kind is PacketKind.FILE:
                self._on_file_pdu(packet.payload)
            elif packet.kind is PacketKind.DATA:
                self.received_data.append(packet)
                if self._node is not None:
                    self._node.bus.publish("isl_data", packet)
            else:
                message = decode_message(packet.kind, packet.payload)
                now = self._now()
                self._react(
                    self.ledger.receive(packet.source, message, now, decide=self._decide), now
                )
        except ProtocolError:
            self._counts["frames_rejected"] += 1

    def _on_beacon(self, packet: RoutedPacket) -> None:
        beacon = Beacon.decode(packet.payload)
        now = self._now()
        known = self.neighbours.get(packet.source, now) is not None
        if self.neighbours.update(packet.source, beacon, now):
            self._counts["beacons_received"] += 1
            if not known:
                self.emit(self.NEIGHBOUR_UP, address=packet.source)

    # -- files ------------------------------------------------------------------------------

    def _send_file(self, destination: int, data: Path | bytes, name: str) -> None:
        """Send a file as CFDP class 1 PDUs. Sent again, it keeps its transaction number (until
        a while): the receiver's partial copy fills its gaps from the next sending, so a lossy
        link needs a few sendings, not one clean one. After two retry periods it takes a new
        number, since the receiver may have given the partial copy up (inactivity)."""
        key = (destination, name)
        now = self._now()
        sequence, since = self._file_sequences.get(key, (None, now))
        if sequence is None or now - since >= 2 * self.config.retry_s:
            sequence, since = self._transactions.next() & 0xFFFF_FFFF, now
            self._file_sequences[key] = (sequence, since)
        sender = FileSender(
            self.address,
            destination,
            sequence,
            data,
            self.config.segment_octets,
            destination_name=name,
            entity_id_octets=4,
        )
        self._counts["files_sent"] += 1
        for pdu in sender.pdus():
            self._originate(destination, PacketKind.FILE, pdu, FILE_PRIORITY)

    def _on_file_pdu(self, pdu: bytes) -> None:
        duplicates = self._receiver.duplicate_pdus
        result = self._receiver.receive(pdu, self._now())
        if result is not None:
            self._file_ended(result)
        elif self._receiver.duplicate_pdus > duplicates:
            # A result sent again after we stored it: its DONE was lost, so say it again.
            decoded = decode_pdu(pdu)
            job = self._stored_results.get(decoded.header.transaction_id)
            if job is not None and isinstance(decoded, EofPdu):
                now = self._now()
                sender = decoded.header.source_entity_id
                self._react(self.ledger.result_received(job, sender, now), now, sender=sender)

    def _file_ended(self, result: TransferResult) -> None:
        if not result.success or result.path is None:
            self._counts["files_failed"] += 1
            return
        self._counts["files_received"] += 1
        parsed = _parse_file_name(result.path.name)
        if parsed is None:
            result.path.unlink(missing_ok=True)
            return
        job, part = parsed
        if part == "result":
            self._stored_results[result.transaction_id] = job
            self._result_arrived(job, result.transaction_id.source_entity_id, result.path)
        elif part in ("model", "input"):
            self._inputs_arrived(job)

    def _results_directory(self) -> Path:
        files = getattr(self._node, "files", None)
        if files is not None:
            with contextlib.suppress(Exception):
                return Path(files.directory)
        directory = self.root / "results"
        directory.mkdir(exist_ok=True)
        return directory

    def result_file(self, job: JobId) -> Path:
        """Where this node keeps the result of `job` when it holds it (the ground fetches it
        with files.DOWNLINK_FILE by this name)."""
        return self._results_directory() / f"isl_result_{job.name}.npy"

    def _keep_result(self, job: JobId, source: Path, *, move: bool) -> None:
        destination = self.result_file(job)
        if move:
            os.replace(source, destination)
        else:
            destination.write_bytes(source.read_bytes())
            with open(destination, "rb+") as file:
                os.fsync(file.fileno())
        fsync_directory(destination.parent)

    def _result_arrived(self, job: JobId, sender: int, path: Path) -> None:
        if self.ledger.has_result(job):
            path.unlink(missing_ok=True)  # a duplicate: the DONE goes again all the same
        else:
            self._keep_result(job, path, move=True)  # stored before the ledger says so
        now = self._now()
        self._react(self.ledger.result_received(job, sender, now), now, sender=sender)

    # -- the ledger ------------------------------------------------------------------------------

    def _save(self) -> bool:
        try:
            self._store.save(
                STATE_RECORD,
                {"ledger": self.ledger.snapshot(), "reported": sorted(self._reported)},
            )
        except StoreError as error:
            self.emit(self.STATE_NOT_SAVED, reason=str(error))
            return False
        return True

    def _react(self, reaction: Reaction, now: float, *, sender: int = 0) -> None:
        """Act on what the ledger said: local work first, the ledger saved, then the sending."""
        job, event = reaction.job, reaction.event
        label = job_label(job)
        if event is LedgerEvent.BOUND:
            self._hand_over(job)
        if event not in _NO_STATE_CHANGE and not self._save():
            return
        for outgoing in reaction.replies:
            self._send_message(outgoing)
        if reaction.transfer is not None:
            self._send_result(reaction.transfer)
        if event is LedgerEvent.BOUND:
            view = self.ledger.origin_view(job)
            assert view is not None and view.executor is not None
            self._counts["offers_accepted"] += 1
            self._offered_at.pop(job, None)
            self._publish_record("bound", job, view.executor, None, "bound", now)
            self.emit(self.OFFLOAD_BOUND, job=label, executor=view.executor)
            self._route(job, now, force=True)
            self._send_inputs(job, view.executor)
        elif event is LedgerEvent.INPUTS_NEEDED:
            view = self.ledger.origin_view(job)
            if view is not None and view.executor is not None:
                self._send_inputs(job, view.executor)
        elif event is LedgerEvent.REFUSED:
            view = self.ledger.origin_view(job)
            self._counts["offers_declined"] += 1
            self._offered_at.pop(job, None)
            self.payload.unhold(job.local_id)
            refused = sorted(view.refused_by) if view is not None else [0]
            self.emit(self.OFFLOAD_REFUSED, job=label, executor=refused[-1], why="declined")
        elif event is LedgerEvent.ACCEPTED:
            self.emit(self.OFFLOAD_ACCEPTED, job=label, origin=job.origin)
        elif event is LedgerEvent.RESULT_STORED:
            self._results_held += 1
            self.emit(
                self.RESULT_STORED, job=label, executor=sender, name=self.result_file(job).name
            )
            self._publish_record("result_stored", job, sender, self.address, "stored", now)
        elif event is LedgerEvent.RESULT_CONFIRMED:
            pass  # the payload keeps its result as it keeps any DONE job's
        self._report_closed(job, now)

    def _report_closed(self, job: JobId, now: float) -> None:
        view = self.ledger.origin_view(job)
        if view is None or view.state is not OriginState.CLOSED:
            return
        label = job_label(job)
        if label in self._reported:
            return
        self._reported.add(label)
        self._save()
        status = _STATUS_WORDS.get(view.status, "closed") if view.status is not None else "closed"
        executor = view.executor if view.executor is not None else 0
        self._publish_record("closed", job, executor, view.result_holder, status, now)
        self.emit(self.OFFLOAD_CLOSED, job=label, status=status)
        for part in ("model", "input"):
            (self.outbox / _file_name(job, part)).unlink(missing_ok=True)

    def _publish_record(
        self, kind: str, job: JobId, executor: int, holder: int | None, status: str, now: float
    ) -> None:
        if self._node is not None:
            record = OffloadRecord(kind, job_label(job), job.origin, executor, holder, status, now)
            self._node.bus.publish("offload", record)

    def _send_message(self, outgoing: Outgoing) -> None:
        message = outgoing.message
        self._originate(
            outgoing.destination, message_kind(message), message.encode(), CONTROL_PRIORITY
        )

    # -- origin ------------------------------------------------------------------------------

    def _watch_origin(self, now: float) -> None:
        for job in self.ledger.origin_jobs():
            view = self.ledger.origin_view(job)
            assert view is not None
            if view.state is OriginState.OFFERED:
                local = self._local_job(job.local_id)
                expired = local is None or local.state is not JobState.QUEUED
                since = self._offered_at.setdefault(job, now)
                timed_out = now - since >= OFFER_TIMEOUT_RETRIES * self.config.retry_s
                if expired or timed_out:
                    self._withdraw(job, keep=expired)
            elif view.state is OriginState.BOUND:
                self._route(job, now)
        if self._accepting():
            self._offer_jobs(now)

    def _withdraw(self, job: JobId, *, keep: bool) -> None:
        view = self.ledger.origin_view(job)
        assert view is not None and view.executor is not None
        cancel = self.ledger.withdraw(job)
        if keep:
            self.ledger.keep(job)
        if not self._save():
            return
        self._offered_at.pop(job, None)
        self._counts["offers_declined"] += 1
        self.payload.unhold(job.local_id)
        self._send_message(cancel)
        self.emit(self.OFFLOAD_REFUSED, job=job_label(job), executor=view.executor, why="withdrawn")

    def _local_job(self, job_id: int) -> JobView | None:
        for view in self.payload.jobs():
            if view.job_id == job_id:
                return view
        return None

    def _offer_jobs(self, now: float) -> None:
        """Offer each queued job this node cannot finish in time to the best neighbour."""
        waiting = [
            job
            for job in self.payload.jobs(ACTIVE_STATES)
            if not job.input_name.startswith(JOB_TAG_PREFIX)
        ]
        waiting.sort(key=lambda job: (-job.priority, job.deadline_tai_s, job.job_id))
        now_tai = self._now_tai()
        workers = max(self.payload.config.max_workers, 1)
        _, headroom_j, sunlit = self._energy()
        tiles_ahead = 0.0
        energy_ahead_j = 0.0
        live = None
        for job in waiting:
            tiles_ahead += job.tiles_total - job.tiles_done
            energy_ahead_j += max(job.energy_estimate_j - job.energy_used_j, 0.0)
            if job.state is not JobState.QUEUED or self.payload.held(job.job_id):
                continue
            identity = JobId(self.address, job.job_id)
            view = self.ledger.origin_view(identity)
            if view is not None and view.state is not OriginState.LOCAL:
                continue
            finish_tai = now_tai + tiles_ahead * self.payload.tile_time_s(job) / workers
            short_of_energy = not sunlit and energy_ahead_j > headroom_j
            if finish_tai <= job.deadline_tai_s and not short_of_energy:
                continue
            if live is None:
                live = [
                    n for n in self.neighbours.live(now) if self._next_hop(n.address) is not None
                ]
            refused = view.refused_by if view is not None else frozenset()
            candidates = rank_candidates(
                live, energy_j=job.energy_estimate_j, exclude={*refused, self.address}
            )
            if not candidates:
                continue
            self._offer(job, candidates[0], now)
            # Offered away: it no longer holds up the jobs behind it here.
            tiles_ahead -= job.tiles_total - job.tiles_done
            energy_ahead_j -= max(job.energy_estimate_j - job.energy_used_j, 0.0)

    def _offer(self, job: JobView, executor: int, now: float) -> None:
        try:
            input_path = self.payload.input_path(job.job_id)
            input_octets = input_path.stat().st_size
            self.payload.hold(job.job_id)
        except (PayloadError, OSError):
            return
        offer = Offer(
            JobId(self.address, job.job_id),
            bytes.fromhex(job.model_sha256),
            job.tiles_total,
            input_octets,
            job.deadline_tai_s,
            job.energy_estimate_j,
            job.value,
        )
        outgoing = self.ledger.offer(offer, executor, now)
        if not self._save():
            self.payload.unhold(job.job_id)
            return
        self._offered_at[offer.job] = now
        self._counts["offers_made"] += 1
        self._send_message(outgoing)
        self.emit(self.OFFLOAD_OFFERED, job=job_label(offer.job), executor=executor)

    def _hand_over(self, job: JobId) -> None:
        """Bound: keep the model and input in the outbox, then take the job off the payload
        (OFFLOADED), all before the ledger is saved as bound. Idempotent after a reboot."""
        view = self.ledger.origin_view(job)
        assert view is not None
        kept_input = self.outbox / _file_name(job, "input")
        try:
            if not kept_input.exists():
                self._copy(self.payload.input_path(job.local_id), kept_input)
            self.payload.mark_offloaded(job.local_id, f"to node {view.executor}")
        except (PayloadError, OSError) as error:
            # Its input is gone (it expired here meanwhile): the executor's copy expires too.
            self.emit(self.STATE_NOT_SAVED, reason=f"job {job_label(job)} not handed over: {error}")

    @staticmethod
    def _copy(source: Path, destination: Path) -> None:
        temporary = destination.with_name(f".{destination.name}.tmp")
        temporary.write_bytes(source.read_bytes())
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, destination)
        fsync_directory(destination.parent)

    def _send_inputs(self, job: JobId, executor: int) -> None:
        view = self.ledger.origin_view(job)
        assert view is not None
        model = self.payload.models.path(view.offer.model_sha256.hex())
        kept_input = self.outbox / _file_name(job, "input")
        if not (model.is_file() and kept_input.is_file()):
            return  # nothing to send: the executor's job expires at its deadline
        self._send_file(executor, model, _file_name(job, "model"))
        self._send_file(executor, kept_input, _file_name(job, "input"))

    def _route(self, job: JobId, now: float, *, force: bool = False) -> None:
        """Tell the executor which node should hold the result: the one that sees a ground
        station first, of this node and its neighbours (sent again each retry period)."""
        if not force and now - self._routed_at.get(job, -math.inf) < self.config.retry_s:
            return
        self._routed_at[job] = now
        contacts = [(self.address, self._next_contact_tai())]
        contacts += [(n.address, n.beacon.next_contact_tai_s) for n in self.neighbours.live(now)]
        holder = earliest_contact(contacts)
        if holder is None:
            return  # the origin holds it (the ledger's default)
        try:
            outgoing = self.ledger.route_result(job, holder, now)
        except OffloadError:
            return
        if self._save() and outgoing is not None:
            self._send_message(outgoing)

    # -- executor ----------------------------------------------------------------------------

    def _decide(self, offer: Offer) -> DeclineReason | None:
        """Whether to take another node's job: offload on, nominal, enough energy, and time
        to run it behind what is queued here."""
        if not self._accepting():
            return DeclineReason.NOT_ACCEPTING
        _, headroom_j, _ = self._energy()
        if headroom_j < offer.energy_estimate_j:
            return DeclineReason.NO_ENERGY
        active = self.payload.jobs(ACTIVE_STATES)
        if len(active) >= 1000:
            return DeclineReason.QUEUE_FULL
        model = offer.model_sha256.hex()
        tiles = sum(job.tiles_total - job.tiles_done for job in active) + offer.tiles
        workers = max(self.payload.config.max_workers, 1)
        finish_tai = self._now_tai() + tiles * self.payload.tile_time_s(model) / workers
        if finish_tai > offer.deadline_tai_s:
            return DeclineReason.DEADLINE
        return None

    def _payload_job(self, job: JobId) -> JobView | None:
        tag = JOB_TAG_PREFIX + job.name
        job_id = self._tags.get(tag)
        for view in self.payload.jobs():
            if (job_id is None and view.input_name == tag) or view.job_id == job_id:
                self._tags[tag] = view.job_id
                return view
        return None

    def _inputs_arrived(self, job: JobId) -> None:
        view = self.ledger.executor_view(job)
        if view is None or view.state is not ExecutorState.ACCEPTED or job in self._starting:
            return
        if self._group is None:
            return
        self._starting.add(job)
        self._group.create_task(self._start_run(job), name=f"isl.start.{job.name}")

    async def _start_run(self, job: JobId) -> None:
        """Both files are here: the job joins the payload (once: it is tagged with its name),
        then the ledger says STARTED (saved), and only then are the files let go."""
        try:
            view = self.ledger.executor_view(job)
            if view is None or view.offer is None or view.state is not ExecutorState.ACCEPTED:
                return
            model = self.incoming / _file_name(job, "model")
            inputs = self.incoming / _file_name(job, "input")
            if self._payload_job(job) is None:
                if not (model.is_file() and inputs.is_file()):
                    return
                sha256 = view.offer.model_sha256.hex()
                try:
                    if not self.payload.models.has(sha256):
                        await self.payload.add_model(model, sha256)
                    tiles = await asyncio.to_thread(read_npy, inputs)
                    self.payload.submit_tiles(
                        sha256,
                        tiles,
                        priority=OFFLOADED_JOB_PRIORITY,
                        deadline_tai_s=view.offer.deadline_tai_s,
                        value=view.offer.value,
                        energy_estimate_j=view.offer.energy_estimate_j,
                        input_name=JOB_TAG_PREFIX + job.name,
                    )
                except (ModelRefused, PayloadError, OSError, ValueError):
                    # Corrupt or unusable: drop the files; the origin sends them again.
                    model.unlink(missing_ok=True)
                    inputs.unlink(missing_ok=True)
                    return
            self._begin(job)
        finally:
            self._starting.discard(job)

    def _begin(self, job: JobId) -> None:
        local = self._payload_job(job)
        if local is None or not self.ledger.start(job):
            return
        if not self._save():
            return
        self._counts["run_for_others"] += 1
        self.emit(self.OFFLOAD_STARTED, job=job_label(job), job_id=local.job_id)
        for part in ("model", "input"):
            (self.incoming / _file_name(job, part)).unlink(missing_ok=True)

    def _watch_executor(self, now: float) -> None:
        now_tai = self._now_tai()
        for job in self.ledger.executor_jobs():
            view = self.ledger.executor_view(job)
            assert view is not None
            if view.state is ExecutorState.ACCEPTED:
                if self._payload_job(job) is not None:
                    self._begin(job)  # submitted before a reboot: the ledger catches up
                elif view.offer is not None and view.offer.deadline_tai_s <= now_tai:
                    self._finish(job, DoneStatus.EXPIRED, now)
                else:
                    self._inputs_arrived(job)  # both files may be in from before a reboot
            elif view.state is ExecutorState.STARTED:
                local = self._payload_job(job)
                if local is None or local.state in ACTIVE_STATES:
                    continue
                if local.state is JobState.DONE:
                    self._finish(job, DoneStatus.COMPLETED, now)
                elif local.state is JobState.EXPIRED:
                    self._finish(job, DoneStatus.EXPIRED, now)
                else:
                    self._finish(job, DoneStatus.FAILED, now)

    def _finish(self, job: JobId, status: DoneStatus, now: float) -> None:
        view = self.ledger.executor_view(job)
        assert view is not None
        held_here = status is DoneStatus.COMPLETED and view.holder == self.address
        if held_here and not self._hold_own_result(job):
            return  # kept unfinished: tried again at the next tick
        reaction = self.ledger.finish(job, status, now)
        self.emit(self.OFFLOAD_FINISHED, job=job_label(job), status=_STATUS_WORDS[status])
        self._react(reaction, now, sender=self.address)

    def _hold_own_result(self, job: JobId) -> bool:
        local = self._payload_job(job)
        try:
            assert local is not None
            self._keep_result(job, self.payload.result_path(local.job_id), move=False)
        except (PayloadError, OSError, AssertionError):
            return False
        return True

    def _send_result(self, transfer: ResultTransfer) -> None:
        local = self._payload_job(transfer.job)
        if local is None:
            return
        try:
            path = self.payload.result_path(local.job_id)
        except PayloadError:
            return
        self._send_file(transfer.holder, path, _file_name(transfer.job, "result"))

    # -- helpers ---------------------------------------------------------------------------------

    def _flow_id(self) -> int:
        return next(self._flow) & 0xFFFF_FFFF

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _now_tai(self) -> float:
        clock = getattr(self._node, "clock", None)
        return clock.now_tai_s() if clock is not None else self._now()

    def _publish(self) -> None:
        t = self.telemetry
        counts = self._counts
        router = self.router.counters
        t.LINKS_UP = min(len(self.links_up()), 0xFFFF)
        t.NEIGHBOURS = min(len(self.neighbours.live(self._now())), 0xFFFF)
        t.BEACONS_SENT = counts["beacons_sent"] & 0xFFFF_FFFF
        t.BEACONS_RECEIVED = counts["beacons_received"] & 0xFFFF_FFFF
        t.FRAMES_REJECTED = counts["frames_rejected"] & 0xFFFF_FFFF
        t.PACKETS_DELIVERED = router.delivered & 0xFFFF_FFFF
        t.PACKETS_FORWARDED = router.forwarded & 0xFFFF_FFFF
        t.PACKETS_STORED = router.stored & 0xFFFF_FFFF
        dropped = router.dropped_hop_limit + router.dropped_queue_full + counts["link_drops"]
        t.PACKETS_DROPPED = dropped & 0xFFFF_FFFF
        t.STORE_PACKETS = min(router.stored_packets, 0xFFFF_FFFF)
        t.STORE_OCTETS = min(router.stored_octets, 0xFFFF_FFFF)
        t.OFFERS_MADE = counts["offers_made"] & 0xFFFF_FFFF
        t.OFFERS_ACCEPTED = counts["offers_accepted"] & 0xFFFF_FFFF
        t.OFFERS_DECLINED = counts["offers_declined"] & 0xFFFF_FFFF
        t.JOBS_RUN_FOR_OTHERS = counts["run_for_others"] & 0xFFFF_FFFF
        t.RESULTS_HELD = self._results_held & 0xFFFF_FFFF
        t.FILES_SENT = counts["files_sent"] & 0xFFFF_FFFF
        t.FILES_RECEIVED = counts["files_received"] & 0xFFFF_FFFF
        t.FILES_FAILED = counts["files_failed"] & 0xFFFF_FFFF

    def reset_counters(self) -> None:
        for name in self._counts:
            self._counts[name] = 0
