"""The software bus: topics fanned out to bounded per-subscriber queues, with no silent drops.

Publishing never blocks and never fails for a full queue: each subscription has a depth and an
overflow policy, and every message a full queue loses is counted on the subscription and handed
to `on_drop` (the runtime turns that into telemetry and an event). Messages are shared between
subscribers, not copied: publish immutable values (frozen dataclasses, bytes).
"""

import asyncio
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Any


class Overflow(Enum):
    """What a full subscription queue does with one more message."""

    DROP_OLDEST = "drop_oldest"  # keep the newest: for state that supersedes itself (telemetry)
    DROP_NEWEST = "drop_newest"  # keep what is queued: for sequences that must not get gaps early


class BusError(Exception):
    """Misuse of the software bus."""


class SubscriptionClosed(BusError):
    """`get()` on a subscription that was closed and has nothing left to deliver."""


class Subscription:
    """One subscriber's bounded queue on one topic; read with `get()` or `async for`.

    Counters: `delivered` (taken by the subscriber), `dropped` (lost to overflow), `pending`
    (queued now), `high_water` (most ever queued). Every message offered to the subscription is
    exactly one of delivered, dropped or pending: `offered == delivered + dropped + pending`.
    """

    __slots__ = (
        "_bus",
        "_closed",
        "_queue",
        "_waiters",
        "delivered",
        "depth",
        "dropped",
        "high_water",
        "name",
        "offered",
        "overflow",
        "topic",
    )

    def __init__(
        self, bus: "SoftwareBus", topic: str, name: str, depth: int, overflow: Overflow
    ) -> None:
        self._bus = bus
        self.topic = topic
        self.name = name
        self.depth = depth
        self.overflow = overflow
        self._queue: deque[Any] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self.offered = 0
        self.delivered = 0
        self.dropped = 0
        self.high_water = 0

    def __repr__(self) -> str:
        return (
            f"Subscription({self.name!r} on {self.topic!r}, {self.pending}/{self.depth} pending, "
            f"{self.delivered} delivered, {self.dropped} dropped)"
        )

    @property
    def pending(self) -> int:
        """Messages queued and not yet taken."""
        return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def get_nowait(self) -> Any:
        """Oldest message; `asyncio.QueueEmpty` if none, `SubscriptionClosed` if closed."""
        if self._queue:
            self.delivered += 1
            return self._queue.popleft()
        if self._closed:
            raise SubscriptionClosed(f"subscription {self.name!r} on {self.topic!r} is closed")
        raise asyncio.QueueEmpty

    async def get(self) -> Any:
        """The oldest message, waiting for one; `SubscriptionClosed` once closed and empty."""
        while not self._queue:
            if self._closed:
                raise SubscriptionClosed(f"subscription {self.name!r} on {self.topic!r} is closed")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                # Woken for a message but cancelled before taking it: pass the wake-up on.
                if self._queue and not waiter.cancelled():
                    self._wake_one()
                raise
        return self.get_nowait()

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Stop receiving; what is queued can still be taken, then `get()` ends iteration."""
        self._bus.unsubscribe(self)

    def _close(self) -> None:
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _offer(self, message: Any) -> bool:
        """Queue `message`; False if the policy dropped it (DROP_NEWEST on a full queue)."""
        self.offered += 1
        queue = self._queue
        if len(queue) >= self.depth:
            self.dropped += 1
            if self.overflow is Overflow.DROP_NEWEST:
                self._bus._report_drop(self, message)
                return False
            oldest = queue.popleft()
            queue.append(message)
            self._bus._report_drop(self, oldest)
            return True
        queue.append(message)
        if len(queue) > self.high_water:
            self.high_water = len(queue)
        if self._waiters:
            self._wake_one()
        return True


class SoftwareBus:
    """Topics (exact names) to subscriptions; owned by one node and used from its loop only.

    `on_drop(subscription, dropped_message)` is called for every message an overflow drops. It
    is not called re-entrantly: a drop caused while `on_drop` itself runs (say, it publishes an
    event to a full queue) is counted on its subscription and in `unreported_drops` instead, so
    a full event queue cannot recurse without end.
    """

    def __init__(self) -> None:
        self._topics: dict[str, tuple[Subscription, ...]] = {}
        self._subscriptions: list[Subscription] = []
        self._in_on_drop = False
        self.unreported_drops = 0
        self.on_drop: Callable[[Subscription, Any], None] | None = None

    def subscribe(self, topic: str, *, name: str, depth: int, overflow: Overflow) -> Subscription:
        """A new bounded queue receiving every message later published on `topic`."""
        if not isinstance(topic, str) or not topic:
            raise BusError(f"topic must be a non-empty string, not {topic!r}")
        if not isinstance(name, str) or not name:
            raise BusError(f"subscriber name on {topic!r} must be a non-empty string, not {name!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise BusError(f"subscription {name!r} on {topic!r}: depth must be >= 1, not {depth!r}")
        if not isinstance(overflow, Overflow):
            raise BusError(
                f"subscription {name!r} on {topic!r}: overflow must be an Overflow, "
                f"not {overflow!r}"
            )
        existing = self._topics.get(topic, ())
        if any(sub.name == name for sub in existing):
            raise BusError(f"{name!r} is already subscribed to {topic!r}")
        subscription = Subscription(self, topic, name, depth, overflow)
        # A new tuple rather than an append: a publish iterating the old one is undisturbed.
        self._topics[topic] = (*existing, subscription)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop routing to `subscription` and close it (idempotent)."""
        existing = self._topics.get(subscription.topic, ())
        if subscription in existing:
            remaining = tuple(sub for sub in existing if sub is not subscription)
            if remaining:
                self._topics[subscription.topic] = remaining
            else:
                del self._topics[subscription.topic]
            self._subscriptions.remove(subscription)
        subscription._close()

    def publish(self, topic: str, message: Any) -> int:
        """Offer `message` to every subscription on `topic`; how many queued it. Never blocks."""
        reached = 0
        for subscription in self._topics.get(topic, ()):
            if subscription._offer(message):
                reached += 1
        return reached

    def subscriptions(self) -> tuple[Subscription, ...]:
        """Every open subscription, in the order they were made."""
        return tuple(self._subscriptions)

    def topics(self) -> tuple[str, ...]:
        """Topics that have at least one subscription."""
        return tuple(self._topics)

    def _report_drop(self, subscription: Subscription, message: Any) -> None:
        if self.on_drop is None:
            return
        if self._in_on_drop:
            self.unreported_drops += 1
            return
        self._in_on_drop = True
        try:
            self.on_drop(subscription, message)
        finally:
            self._in_on_drop = False
