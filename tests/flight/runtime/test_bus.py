import asyncio
import random
from typing import Any

import pytest

from flight.runtime.bus import BusError, Overflow, SoftwareBus, Subscription, SubscriptionClosed


def _recording_bus() -> tuple[SoftwareBus, list[tuple[str, Any]]]:
    bus = SoftwareBus()
    drops: list[tuple[str, Any]] = []
    bus.on_drop = lambda subscription, message: drops.append((subscription.name, message))
    return bus, drops


def _drain(subscription: Subscription) -> list[Any]:
    taken = []
    while subscription.pending:
        taken.append(subscription.get_nowait())
    return taken


def test_drop_newest_keeps_the_queued_messages_and_reports_each_refused_one() -> None:
    bus, drops = _recording_bus()
    sub = bus.subscribe("tm", name="downlink", depth=3, overflow=Overflow.DROP_NEWEST)
    assert [bus.publish("tm", n) for n in range(5)] == [1, 1, 1, 0, 0]
    assert drops == [("downlink", 3), ("downlink", 4)]
    assert (sub.pending, sub.dropped, sub.high_water, sub.delivered) == (3, 2, 3, 0)
    assert _drain(sub) == [0, 1, 2]
    assert sub.delivered == 3


def test_drop_oldest_keeps_the_newest_messages_and_reports_each_evicted_one() -> None:
    bus, drops = _recording_bus()
    sub = bus.subscribe("hk", name="recorder", depth=3, overflow=Overflow.DROP_OLDEST)
    assert [bus.publish("hk", n) for n in range(5)] == [1, 1, 1, 1, 1]
    assert drops == [("recorder", 0), ("recorder", 1)]
    assert (sub.pending, sub.dropped, sub.high_water) == (3, 2, 3)
    assert _drain(sub) == [2, 3, 4]


def test_publish_without_subscribers_reaches_none() -> None:
    bus, drops = _recording_bus()
    bus.subscribe("tm", name="a", depth=1, overflow=Overflow.DROP_NEWEST)
    assert bus.publish("events", "x") == 0
    assert drops == []


def test_every_offered_message_is_delivered_dropped_or_pending() -> None:
    rng = random.Random(3)
    bus, drops = _recording_bus()
    subs = [
        bus.subscribe(
            "t", name=f"s{i}", depth=rng.randint(1, 8), overflow=rng.choice(list(Overflow))
        )
        for i in range(10)
    ]
    taken: dict[str, list[int]] = {sub.name: [] for sub in subs}
    for n in range(2000):
        bus.publish("t", n)
        for sub in subs:
            if sub.pending and rng.random() < 0.3:
                taken[sub.name].append(sub.get_nowait())
    for sub in subs:
        assert sub.offered == 2000
        assert sub.offered == sub.delivered + sub.dropped + sub.pending
        assert sub.delivered == len(taken[sub.name])
        assert taken[sub.name] == sorted(taken[sub.name])  # FIFO, whatever was dropped
        assert sub.high_water == sub.depth
    assert len(drops) == sum(sub.dropped for sub in subs)


def test_many_subscribers_each_receive_every_message_in_order() -> None:
    bus, drops = _recording_bus()
    subs = [
        bus.subscribe("events", name=f"c{i}", depth=500, overflow=Overflow.DROP_NEWEST)
        for i in range(200)
    ]
    assert all(bus.publish("events", n) == 200 for n in range(500))
    assert bus.publish("events", "one too many") == 0
    assert len(drops) == 200
    for sub in subs:
        assert _drain(sub) == list(range(500))
    assert bus.subscriptions() == tuple(subs)


async def test_get_waits_for_a_publish() -> None:
    bus = SoftwareBus()
    sub = bus.subscribe("tc", name="cmd", depth=4, overflow=Overflow.DROP_NEWEST)
    getter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    assert not getter.done()
    bus.publish("tc", b"packet")
    assert await getter == b"packet"
    assert sub.delivered == 1


def test_get_nowait_on_an_empty_queue_raises_queue_empty() -> None:
    sub = SoftwareBus().subscribe("tc", name="cmd", depth=4, overflow=Overflow.DROP_NEWEST)
    with pytest.raises(asyncio.QueueEmpty):
        sub.get_nowait()


async def test_async_iteration_yields_messages_until_closed_and_drained() -> None:
    bus = SoftwareBus()
    sub = bus.subscribe("tc", name="cmd", depth=10, overflow=Overflow.DROP_NEWEST)
    received: list[int] = []

    async def consume() -> None:
        async for message in sub:
            received.append(message)

    consumer = asyncio.create_task(consume())
    for n in range(3):
        bus.publish("tc", n)
        await asyncio.sleep(0)
    bus.publish("tc", 3)
    sub.close()
    assert bus.publish("tc", 4) == 0
    await consumer
    assert received == [0, 1, 2, 3]
    assert bus.subscriptions() == ()
    with pytest.raises(SubscriptionClosed, match="'cmd' on 'tc' is closed"):
        await sub.get()


async def test_a_cancelled_getter_passes_its_wake_up_to_the_next() -> None:
    bus = SoftwareBus()
    sub = bus.subscribe("tc", name="cmd", depth=10, overflow=Overflow.DROP_NEWEST)
    first = asyncio.create_task(sub.get())
    second = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    bus.publish("tc", "only")
    first.cancel()  # woken, but cancelled before it could take the message
    assert await second == "only"
    with pytest.raises(asyncio.CancelledError):
        await first


def test_on_drop_that_publishes_to_the_full_queue_does_not_recurse() -> None:
    bus = SoftwareBus()
    events = bus.subscribe("events", name="ground", depth=2, overflow=Overflow.DROP_NEWEST)
    reported: list[Any] = []

    def on_drop(subscription: Subscription, message: Any) -> None:
        reported.append(message)
        bus.publish("events", f"dropped {message}")  # the event about a drop is dropped too

    bus.on_drop = on_drop
    for n in range(5):
        bus.publish("events", n)
    assert reported == [2, 3, 4]
    assert bus.unreported_drops == 3
    assert events.dropped == 6
    assert events.offered == events.delivered + events.dropped + events.pending


def test_drops_without_a_callback_are_still_counted() -> None:
    bus = SoftwareBus()
    sub = bus.subscribe("t", name="s", depth=1, overflow=Overflow.DROP_OLDEST)
    bus.publish("t", 1)
    bus.publish("t", 2)
    assert sub.dropped == 1
    assert sub.get_nowait() == 2


def test_unsubscribing_inside_on_drop_does_not_disturb_the_publish() -> None:
    bus = SoftwareBus()
    a = bus.subscribe("t", name="a", depth=1, overflow=Overflow.DROP_NEWEST)
    b = bus.subscribe("t", name="b", depth=5, overflow=Overflow.DROP_NEWEST)
    bus.on_drop = lambda subscription, message: subscription.close()
    bus.publish("t", 1)
    assert bus.publish("t", 2) == 1
    assert bus.subscriptions() == (b,)
    assert a.closed and a.get_nowait() == 1
    assert _drain(b) == [1, 2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"topic": "", "name": "x", "depth": 1}, "topic"),
        ({"topic": "t", "name": "", "depth": 1}, "name"),
        ({"topic": "t", "name": "x", "depth": 0}, "depth"),
        ({"topic": "t", "name": "x", "depth": True}, "depth"),
    ],
)
def test_bad_subscriptions_are_refused_with_a_message(kwargs: dict, message: str) -> None:
    with pytest.raises(BusError, match=message):
        SoftwareBus().subscribe(overflow=Overflow.DROP_NEWEST, **kwargs)


def test_a_bad_overflow_policy_is_refused() -> None:
    with pytest.raises(BusError, match="overflow must be an Overflow"):
        SoftwareBus().subscribe("t", name="x", depth=1, overflow="drop")  # type: ignore[arg-type]


def test_the_same_name_cannot_subscribe_twice_to_a_topic() -> None:
    bus = SoftwareBus()
    bus.subscribe("t", name="x", depth=1, overflow=Overflow.DROP_NEWEST)
    bus.subscribe("u", name="x", depth=1, overflow=Overflow.DROP_NEWEST)
    with pytest.raises(BusError, match="'x' is already subscribed to 't'"):
        bus.subscribe("t", name="x", depth=1, overflow=Overflow.DROP_NEWEST)
    assert bus.topics() == ("t", "u")
