"""Store and forward: bounded by priority, nothing lost up to the bound, played back in order."""

import asyncio
import random

import pytest

from flight.link import LinkCounters, LinkDown, MemoryLink
from flight.protocol import icd
from flight.protocol.cop1 import Farm
from flight.protocol.pus import EventReport, PusTm
from flight.protocol.tm_frame import TmReceiver
from flight.runtime import clock
from flight.runtime.component import Mode
from flight.runtime.downlink import Downlink, TmStore
from flight.runtime.services import PusServices, TmPriority

HK, EVENT, CRITICAL = TmPriority.HOUSEKEEPING, TmPriority.EVENT, TmPriority.CRITICAL


def test_store_keeps_production_order_per_lane() -> None:
    store = TmStore(10)
    for number in range(5):
        store.put(bytes([number]), HK, realtime=number % 2 == 0)
    assert [e.packet for e in store.take(True, 100)] == [b"\x00", b"\x02", b"\x04"]
    assert [e.packet for e in store.take(False, 100)] == [b"\x01", b"\x03"]
    assert len(store) == 0


def test_a_full_store_drops_the_oldest_least_important_first() -> None:
    store = TmStore(3)
    store.put(b"hk1", HK, False)
    store.put(b"ev1", EVENT, False)
    store.put(b"hk2", HK, False)
    assert store.put(b"ev2", EVENT, False) is HK  # hk1 goes
    assert store.put(b"crit", CRITICAL, False) is HK  # hk2 goes
    assert store.put(b"ev3", EVENT, False) is EVENT  # ev1, the oldest event, goes
    assert store.put(b"hk3", HK, False) is HK  # nothing less important stored: the newcomer goes
    assert [e.packet for e in store.take(False, 100)] == [b"ev2", b"crit", b"ev3"]
    assert store.dropped == {CRITICAL: 0, EVENT: 1, HK: 3}


def test_take_stops_near_the_octet_budget_but_takes_at_least_one() -> None:
    store = TmStore(10)
    for _ in range(4):
        store.put(bytes(100), HK, False)
    assert len(store.take(False, 250)) == 2
    assert len(store.take(False, 10)) == 1


def test_put_back_returns_packets_to_the_playback_lane_in_order() -> None:
    store = TmStore(10)
    for number in range(4):
        store.put(bytes([number]), HK, realtime=number < 2)
    taken = store.take(True, 100)
    store.put_back(taken)
    assert [e.packet for e in store.take(False, 100)] == [b"\x00", b"\x01", b"\x02", b"\x03"]


def test_a_store_running_for_days_keeps_only_what_it_holds() -> None:
    # Packets taken or dropped leave the other queue lazily; the queues are rebuilt before the
    # dead entries pile up (a day of housekeeping is ~800,000 packets), and counts stay exact.
    store = TmStore(100)
    rng = random.Random(7)
    for number in range(50_000):
        priority = rng.choice(list(TmPriority))
        store.put(b"p%d" % number, priority, realtime=rng.random() < 0.5)
        if rng.random() < 0.3:
            store.take(rng.random() < 0.5, 64)
        if number % 997 == 0:
            store.demote_realtime()
        if number % 1499 == 0:
            store.put_back(store.take(False, 32))
        if number % 101 == 0:
            live = [e for lane in store._lanes.values() for e in lane if e.queued]
            assert store.pending(True) + store.pending(False) == len(store) == len(live)
            assert store.pending(True) == sum(e.queued for e in store._lanes[True])
    queued = sum(len(lane) for lane in store._lanes.values())
    by_class = sum(len(q) for q in store._by_priority.values())
    assert queued <= 3 * 100 + 2 * 64 and by_class <= 3 * 100 + len(TmPriority) * 64


def test_losing_contact_moves_realtime_packets_to_playback() -> None:
    store = TmStore(10)
    store.put(b"a", HK, realtime=False)
    store.put(b"b", HK, realtime=True)
    store.demote_realtime()
    assert store.pending(True) == 0
    assert [e.packet for e in store.take(False, 100)] == [b"a", b"b"]


class Rig:
    """A downlink with its services over a real MemoryLink, and a TM receiver on the ground."""

    def __init__(self, link: MemoryLink | None, capacity: int = 1000) -> None:
        self.farm = Farm(icd.TcVirtualChannel.COMMAND, v_r=42)
        self.downlink = Downlink(
            link=link,
            capacity_packets=capacity,
            idle_frame_period_s=1.0,
            ocf=lambda: self.farm.clcw().word,
        )
        self.services = PusServices(
            apid=0x10, components=[(6, self.downlink)], sink=self.downlink, mode=lambda: Mode.SAFE
        )
        self.downlink.attach(6, self.services)
        self.receiver = TmReceiver()
        self.packets: list[tuple[int, PusTm]] = []
        self.ocfs: list[int] = []

    def housekeeping(self, count: int) -> None:
        for _ in range(count):
            self.services.report_housekeeping(6)

    async def receive(self, ground: MemoryLink) -> None:
        while True:
            frame = self.receiver.receive(await ground.receive())
            self.ocfs.append(frame.ocf)
            self.packets.extend((frame.virtual_channel_id, PusTm.decode(p)) for p in frame.packets)

    def events(self) -> list[int]:
        return [
            EventReport.decode(tm.source_data).event_definition_id
            for _, tm in self.packets
            if tm.service == 5
        ]


def test_an_outage_is_played_back_in_order_after_contact_returns() -> None:
    flight_end, ground_end = MemoryLink.pair()
    rig = Rig(flight_end)

    async def main() -> None:
        async with flight_end, ground_end, asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(rig.downlink.run()),
                group.create_task(rig.receive(ground_end)),
            ]
            await asyncio.sleep(0.5)
            rig.housekeeping(3)  # in contact: real time
            await asyncio.sleep(0.5)
            flight_end.set_up(False)
            await asyncio.sleep(2)  # the downlink notices at its next idle frame at the latest
            rig.housekeeping(300)  # about 30 frames' worth, all stored
            await asyncio.sleep(5)
            assert len(rig.downlink.store) >= 300
            flight_end.set_up(True)
            await asyncio.sleep(5)
            for task in tasks:
                task.cancel()

    clock.run(main(), virtual=True)
    realtime = [tm.sequence_count for vc, tm in rig.packets if vc == icd.TmVirtualChannel.REALTIME]
    playback = [tm.sequence_count for vc, tm in rig.packets if vc == icd.TmVirtualChannel.PLAYBACK]
    assert realtime[:4] == [0, 1, 2, 3]  # the CONTACT event, then three reports in contact
    housekeeping = [
        tm.sequence_count for _, tm in rig.packets if (tm.service, tm.subtype) == (3, 25)
    ]
    assert housekeeping == list(range(1, 4)) + list(range(5, 305))  # all of it; 4 is CONTACT_LOST
    assert playback == sorted(playback)
    assert set(range(5, 305)) <= set(playback)
    ids = rig.events()
    assert ids.count(rig.downlink.event_id(Downlink.CONTACT)) == 2
    assert ids.count(rig.downlink.event_id(Downlink.CONTACT_LOST)) == 1
    assert rig.downlink.store.dropped == {p: 0 for p in TmPriority}


def test_idle_frames_carry_the_clcw_when_there_is_nothing_else() -> None:
    flight_end, ground_end = MemoryLink.pair()
    rig = Rig(flight_end)

    async def main() -> None:
        async with flight_end, ground_end, asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(rig.downlink.run()),
                group.create_task(rig.receive(ground_end)),
            ]
            await asyncio.sleep(3.5)
            idle_before = rig.downlink.idle_frames
            rig.farm = Farm(icd.TcVirtualChannel.COMMAND, v_r=43)
            rig.downlink.clcw_changed()  # a TC frame arrived: the ground hears of it now
            await asyncio.sleep(0.01)
            assert rig.downlink.idle_frames == idle_before + 1
            for task in tasks:
                task.cancel()

    clock.run(main(), virtual=True)
    assert rig.downlink.idle_frames >= 3
    assert rig.ocfs[-1] & 0xFF == 43 and rig.ocfs[0] & 0xFF == 42


def test_a_full_store_raises_one_event_per_episode_and_counts_every_drop() -> None:
    rig = Rig(link=None, capacity=10)

    async def main() -> None:
        rig.housekeeping(25)

    clock.run(main(), virtual=True)
    stored = rig.downlink.store.take(False, 1_000_000)
    events = [
        EventReport.decode(PusTm.decode(e.packet).source_data).event_definition_id
        for e in stored
        if PusTm.decode(e.packet).service == 5
    ]
    assert events == [rig.downlink.event_id(Downlink.DROPPING)]
    assert rig.downlink.store.dropped[HK] == 16  # 25 reports and 1 event into 10 places
    rig.downlink.update_telemetry()
    assert rig.downlink.telemetry.DROPPED_HOUSEKEEPING == 16


class FailingLink:
    """A link that takes `good` frames, then fails (LinkDown) as contact is lost mid-batch."""

    name = "failing"

    def __init__(self, good: int) -> None:
        self.good = good
        self.frames: list[bytes] = []
        self.counters = LinkCounters()

    @property
    def up(self) -> bool:
        return len(self.frames) < self.good

    async def send(self, frame: bytes) -> None:
        if not self.up:
            raise LinkDown("contact lost")
        self.frames.append(frame)


def test_packets_of_frames_not_sent_are_kept_for_playback() -> None:
    link = FailingLink(good=2)
    rig = Rig(link)  # type: ignore[arg-type]
    rig.downlink._in_contact = True
    rig.housekeeping(120)  # more than four frames' worth

    async def main() -> None:
        with pytest.raises(LinkDown):
            await rig.downlink._send_pending()

    clock.run(main(), virtual=True)
    receiver = TmReceiver()
    delivered = [
        PusTm.decode(p).sequence_count for f in link.frames for p in receiver.receive(f).packets
    ]
    rig.downlink.store.demote_realtime()  # as the sending task does on LinkDown
    kept = [PusTm.decode(e.packet).sequence_count for e in rig.downlink.store.take(False, 10**6)]
    # Every packet is either delivered whole or kept, none both, in order.
    assert delivered + kept == list(range(120))
    assert rig.downlink.packets_sent == len(delivered)
