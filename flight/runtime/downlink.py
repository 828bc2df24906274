"""Store and forward of TM: a bounded store by priority, sent in TM frames while the link is up.

Every TM packet enters the store. One produced while the link is up goes down on the REALTIME
virtual channel; one produced during an outage waits and is played back on the PLAYBACK channel
once contact returns, in the order it was produced. Realtime traffic goes first, then file PDUs
(from the file service, on the FILE virtual channel), then playback. When the store
is full the oldest packet of the least important class goes (housekeeping, then events, then
verification reports and HIGH events), counted per class and announced by an event, so nothing
is lost silently and nothing is lost at all up to the bound. Every TM frame carries the newest
CLCW in its OCF; when there is nothing to send, an idle frame keeps the CLCW flowing.
"""

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from flight.link import Link, LinkDown
from flight.protocol import icd
from flight.protocol.tm_frame import TmMasterChannel, TmVirtualChannelSender
from flight.runtime.component import Arg, Component, Event, Severity, Telemetry, rate_group
from flight.runtime.services import TmPriority

BATCH_FRAMES = 4  # frames of packets taken from the store at a time: realtime gets in between
RETRY_AFTER_LINK_DOWN_S = 0.5


@dataclass(slots=True, eq=False)
class TmEntry:
    """One stored packet. `number` orders packets as they were produced."""

    packet: bytes
    priority: TmPriority
    realtime: bool
    number: int
    queued: bool = True


class FileSource(Protocol):
    """Where file PDUs for the FILE virtual channel come from (flight.runtime.files.FileTransfer).

    The downlink takes TM packets while in contact, puts back those it could not send, and says
    which went down; the source calls `on_pending` when it has new packets.
    """

    on_pending: Callable[[], None]

    def packets_waiting(self) -> bool: ...
    def take_packets(self, max_octets: int) -> list[bytes]: ...
    def return_packets(self, packets: list[bytes]) -> None: ...
    def packets_sent(self, packets: list[bytes]) -> None: ...


class TmStore:
    """A bounded store of TM packets: two lanes (realtime, playback) in production order, and a
    victim order by priority for when it is full.

    An entry taken or dropped leaves the other queue lazily (marked not queued); live counts are
    kept per lane and per class, and a queue is rebuilt once it holds more dead entries than
    live ones, so a node that runs for days keeps O(capacity) entries and O(1) counts.
    """

    def __init__(self, capacity_packets: int) -> None:
        if capacity_packets < 1:
            raise ValueError(f"TM store capacity {capacity_packets} must be at least 1 packet")
        self.capacity_packets = capacity_packets
        self._lanes: dict[bool, deque[TmEntry]] = {True: deque(), False: deque()}
        self._by_priority: dict[TmPriority, deque[TmEntry]] = {p: deque() for p in TmPriority}
        self._count = 0
        self._live_lanes = {True: 0, False: 0}
        self._live_classes: dict[TmPriority, int] = dict.fromkeys(TmPriority, 0)
        self._numbers = 0
        self.stored_total = 0
        self.dropped: dict[TmPriority, int] = dict.fromkeys(TmPriority, 0)

    def __len__(self) -> int:
        return self._count

    def pending(self, realtime: bool) -> int:
        return self._live_lanes[realtime]

    def _settle(self) -> None:
        """Drop dead entries from a queue once they outnumber the live ones."""
        for realtime, lane in self._lanes.items():
            if len(lane) > 2 * self._live_lanes[realtime] + 64:
                self._lanes[realtime] = deque(e for e in lane if e.queued)
        for priority, queue in self._by_priority.items():
            if len(queue) > 2 * self._live_classes[priority] + 64:
                self._by_priority[priority] = deque(e for e in queue if e.queued)

    def put(self, packet: bytes, priority: TmPriority, realtime: bool) -> TmPriority | None:
        """Store a packet; return the class of the packet dropped to make room, if one was."""
        self.stored_total += 1
        dropped = None
        if self._count >= self.capacity_packets:
            dropped = self._drop_one(priority)
            if dropped is None:  # the newcomer is itself the least important: it goes
                self.dropped[priority] += 1
                return priority
        self._numbers += 1
        entry = TmEntry(packet, priority, realtime, self._numbers)
        self._lanes[realtime].append(entry)
        self._by_priority[priority].append(entry)
        self._count += 1
        self._live_lanes[realtime] += 1
        self._live_classes[priority] += 1
        self._settle()
        return dropped

    def _drop_one(self, incoming: TmPriority) -> TmPriority | None:
        for priority in sorted(TmPriority, reverse=True):
            if priority < incoming:
                return None
            queue = self._by_priority[priority]
            while queue:
                entry = queue.popleft()
                if entry.queued:
                    entry.queued = False
                    self._count -= 1
                    self._live_lanes[entry.realtime] -= 1
                    self._live_classes[priority] -= 1
                    self.dropped[priority] += 1
                    return priority
        return None

    def take(self, realtime: bool, max_octets: int) -> list[TmEntry]:
        """The oldest packets of one lane, at least one, up to about `max_octets`."""
        lane = self._lanes[realtime]
        taken: list[TmEntry] = []
        octets = 0
        while lane and (not taken or octets + len(lane[0].packet) <= max_octets):
            entry = lane.popleft()
            if not entry.queued:
                continue
            entry.queued = False
            self._count -= 1
            self._live_lanes[realtime] -= 1
            self._live_classes[entry.priority] -= 1
            taken.append(entry)
            octets += len(entry.packet)
        self._settle()
        return taken

    def put_back(self, entries: list[TmEntry]) -> None:
        """Return packets whose frames were not sent: they wait on the playback lane, in order."""
        if not entries:
            return
        for entry in entries:
            entry.queued = True
            entry.realtime = False
            self._count += 1
            self._live_lanes[False] += 1
            self._live_classes[entry.priority] += 1
        for entry in reversed(entries):
            self._by_priority[entry.priority].appendleft(entry)
        lane = self._lanes[False]
        merged = sorted([*entries, *(e for e in lane if e.queued)], key=lambda e: e.number)
        self._lanes[False] = deque(merged)

    def demote_realtime(self) -> None:
        """Contact is lost: what waits for the realtime channel is played back later instead."""
        waiting = [entry for entry in self._lanes[True] if entry.queued]
        self._lanes[True].clear()
        if not waiting:
            return
        for entry in waiting:
            entry.realtime = False
        self._live_lanes[True] = 0
        self._live_lanes[False] += len(waiting)
        lane = self._lanes[False]
        merged = sorted([*waiting, *(e for e in lane if e.queued)], key=lambda e: e.number)
        self._lanes[False] = deque(merged)


class Downlink(Component):
    """Store and forward of TM: bounded, by priority, REALTIME during contact, PLAYBACK after it."""

    STORED = Telemetry("u32", doc="TM packets waiting in the store.")
    CAPACITY = Telemetry("u32", doc="The store's bound in packets.")
    PLAYBACK_PENDING = Telemetry("u32", doc="Stored packets waiting for the playback channel.")
    PACKETS_STORED = Telemetry("u32", doc="TM packets that entered the store.")
    PACKETS_SENT = Telemetry("u32", doc="TM packets sent in frames.")
    DROPPED_HOUSEKEEPING = Telemetry("u32", doc="Housekeeping reports dropped, the store full.")
    DROPPED_EVENTS = Telemetry("u32", doc="Events (not HIGH) and reports dropped, the store full.")
    DROPPED_CRITICAL = Telemetry(
        "u32", doc="Verification reports and HIGH events dropped, the store full of them."
    )
    FRAMES_SENT = Telemetry("u32", doc="TM frames sent, idle frames included.")
    IDLE_FRAMES = Telemetry("u32", doc="Only-idle-data frames sent to carry the CLCW.")
    LINK_UP = Telemetry("bool", doc="The link is up: TM goes down in real time.")

    DROPPING = Event(
        Severity.MEDIUM,
        "TM store full ({capacity} packets): dropping the oldest {priority} packets",
        capacity=Arg("u32"),
        priority=Arg("enum", values=TmPriority),
    )
    CONTACT = Event(
        Severity.INFORMATIVE,
        "link up: {pending} stored packets to play back",
        pending=Arg("u32"),
    )
    CONTACT_LOST = Event(
        Severity.LOW,
        "link down: storing TM, room for {room} packets",
        room=Arg("u32"),
    )

    def __init__(
        self,
        *,
        link: Link | None,
        spacecraft_id: int = icd.SPACECRAFT_ID,
        capacity_packets: int = 10_000,
        idle_frame_period_s: float = 1.0,
        ocf: Callable[[], int | None] | None = None,
        name: str = "downlink",
    ) -> None:
        super().__init__(name)
        if idle_frame_period_s <= 0:
            raise ValueError(f"idle frame period {idle_frame_period_s} s must be above 0")
        self.link = link
        self.store = TmStore(capacity_packets)
        self.master = TmMasterChannel(spacecraft_id, ocf=ocf)
        self._channels = {
            True: self.master.virtual_channel(icd.TmVirtualChannel.REALTIME),
            False: self.master.virtual_channel(icd.TmVirtualChannel.PLAYBACK),
        }
        self._file_channel = self.master.virtual_channel(icd.TmVirtualChannel.FILE)
        self.files: FileSource | None = None
        self.idle_frame_period_s = idle_frame_period_s
        self._wake = asyncio.Event()
        self._clcw_due = False
        self._dropping = False
        self._in_contact = False
        self.packets_sent = 0
        self.frames_sent = 0
        self.idle_frames = 0
        self.telemetry.CAPACITY = capacity_packets

    # -- producers ---------------------------------------------------------------------------------

    def enqueue(self, packet: bytes, priority: TmPriority) -> None:
        """Store one finished TM packet (the services' sink); never blocks, never raises."""
        realtime = self.link is not None and self.link.up and self._in_contact
        dropped = self.store.put(packet, priority, realtime)
        if dropped is not None and not self._dropping:
            self._dropping = True  # one event per episode, not one per packet
            self.emit(self.DROPPING, capacity=self.store.capacity_packets, priority=dropped)
        elif self._dropping and len(self.store) <= self.store.capacity_packets // 2:
            self._dropping = False
        self._wake.set()

    def attach_files(self, files: FileSource) -> None:
        """Send `files`' PDUs on the FILE virtual channel; `files.on_pending` wakes the sender."""
        self.files = files
        files.on_pending = self._wake.set

    def clcw_changed(self) -> None:
        """The uplink changed the CLCW: send a frame soon so the ground's FOP-1 hears of it."""
        self._clcw_due = True
        self._wake.set()

    # -- telemetry ---------------------------------------------------------------------------------

    @rate_group("1Hz")
    def update_telemetry(self) -> None:
        t = self.telemetry
        t.STORED = len(self.store)
        t.PLAYBACK_PENDING = self.store.pending(False)
        t.PACKETS_STORED = self.store.stored_total & 0xFFFF_FFFF
        t.PACKETS_SENT = self.packets_sent & 0xFFFF_FFFF
        t.DROPPED_HOUSEKEEPING = self.store.dropped[TmPriority.HOUSEKEEPING] & 0xFFFF_FFFF
        t.DROPPED_EVENTS = self.store.dropped[TmPriority.EVENT] & 0xFFFF_FFFF
        t.DROPPED_CRITICAL = self.store.dropped[TmPriority.CRITICAL] & 0xFFFF_FFFF
        t.FRAMES_SENT = self.frames_sent & 0xFFFF_FFFF
        t.IDLE_FRAMES = self.idle_frames & 0xFFFF_FFFF
        t.LINK_UP = self.link is not None and self.link.up

    # -- the sending task --------------------------------------------------------------------------

    async def run(self) -> None:
        link = self.link
        if link is None:
            return  # no link: TM waits in the store, up to its bound
        while True:
            if not link.up:
                self._lose_contact()
                try:
                    await link.wait_up()
                except LinkDown:
                    return  # closed: the node is shutting down
            if not self._in_contact:
                self._in_contact = True
                self.emit(self.CONTACT, pending=len(self.store))
            try:
                await self._send_pending()
                if self._clcw_due or not await self._wait_for_work():
                    await self._send_frame(self.master.next_frame(), idle=True)
            except LinkDown:
                self._lose_contact()
                # A link that says up but refuses frames must not spin this loop: wait a little.
                await asyncio.sleep(RETRY_AFTER_LINK_DOWN_S)

    def _lose_contact(self) -> None:
        self.store.demote_realtime()
        if self._in_contact:
            self._in_contact = False
            self.emit(self.CONTACT_LOST, room=max(0, self.store.capacity_packets - len(self.store)))

    async def _wait_for_work(self) -> bool:
        """Wait for packets or a CLCW change; False when the idle frame period passed first."""
        self._wake.clear()
        if len(self.store) or self._clcw_due or self._files_pending():
            return True
        try:
            async with asyncio.timeout(self.idle_frame_period_s):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    async def _send_pending(self) -> None:
        """Send everything stored and every file PDU: realtime first, then files, then playback.

        LinkDown (or cancellation) with the packets not yet sent put back where they came from.
        """
        max_octets = BATCH_FRAMES * self.master.data_field_length
        while True:
            if self.store.pending(True) == 0 and self._files_pending():
                assert self.files is not None
                packets = self.files.take_packets(max_octets)
                if packets:
                    await self._send_files(self.files, packets)
                    continue
            realtime = self.store.pending(True) > 0
            batch = self.store.take(realtime, max_octets)
            if not batch:
                return

            def undo(sent: int, batch: list[TmEntry] = batch) -> None:
                self.packets_sent += sent
                self.store.put_back(batch[sent:])

            await self._send_packets(
                self._channels[realtime], [entry.packet for entry in batch], undo
            )
            self.packets_sent += len(batch)

    def _files_pending(self) -> bool:
        return self.files is not None and self.files.packets_waiting()

    async def _send_files(self, files: FileSource, packets: list[bytes]) -> None:
        def undo(sent: int) -> None:
            files.packets_sent(packets[:sent])
            files.return_packets(packets[sent:])

        await self._send_packets(self._file_channel, packets, undo)
        files.packets_sent(packets)

    async def _send_packets(
        self,
        channel: TmVirtualChannelSender,
        packets: list[bytes],
        undo: Callable[[int], None],
    ) -> None:
        """Pack `packets` into frames of `channel` and send them. If contact is lost or the task
        stops (shutdown, a restart), `undo(n)` hears how many packets the sent frames carried
        whole, and the error goes on."""
        ends = []
        position = 0
        for packet in packets:
            channel.send(packet)
            position += len(packet)
            ends.append(position)
        channel.flush()
        self._clcw_due = False  # the frames below carry the CLCW as it is now
        frames = self.master.drain()
        field = self.master.data_field_length
        for index, frame in enumerate(frames):
            try:
                await self._send_frame(frame)
            except (LinkDown, asyncio.CancelledError):
                carried = index * field
                undo(sum(1 for end in ends if end <= carried))
                raise

    async def _send_frame(self, frame: bytes, *, idle: bool = False) -> None:
        assert self.link is not None
        if idle:
            self._clcw_due = False
        await self.link.send(frame)
        self.frames_sent += 1
        if idle:
            self.idle_frames += 1

    async def flush(self, timeout_s: float) -> None:
        """Send what is stored while the link is up, for at most `timeout_s` (shutdown)."""
        if self.link is None or not self.link.up:
            return
        with contextlib.suppress(TimeoutError, LinkDown):
            async with asyncio.timeout(timeout_s):
                await self._send_pending()
