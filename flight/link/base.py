"""What every link shares: the Link protocol, roles, counters, the error family and the inbox."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

DEFAULT_RECEIVE_DEPTH = 1024
"""Frames a link holds for a caller that is slow to `receive()`; the oldest go first, counted."""

DEFAULT_MAX_FRAME_LENGTH = 2048
"""Longest frame a stream or message link carries: above the 1024-octet TC and 1115-octet TM
frames of the ICD, with room for a mission that lengthens them."""


class LinkError(Exception):
    """Anything a link cannot do; the message says which link and what to do about it."""


class LinkDown(LinkError):
    """The link is not up (or is closed): the frame was not sent and the caller still holds it."""


class LinkConfigError(LinkError):
    """A link URL or setting that cannot work: unknown scheme, bad parameter, missing file."""


class Role(Enum):
    """Which end of the space-ground link this process is; it decides topics and client ids."""

    FLIGHT = "flight"
    GROUND = "ground"

    @property
    def peer(self) -> Role:
        return Role.GROUND if self is Role.FLIGHT else Role.FLIGHT


@dataclass(slots=True)
class LinkCounters:
    """Totals since the link was created, for housekeeping telemetry; they only grow.

    `frames_received` counts frames the transport delivered to the link's inbox, so a frame
    dropped later because the inbox was full is in both `frames_received` and `frames_dropped`.
    `frames_dropped` is every frame the transport threw away, whatever the reason: deframer
    discards (garbage, too long, cut off by a disconnect), oversize or empty messages,
    duplicates suppressed (also counted on their own in `duplicates_dropped`) and inbox overflow.
    """

    frames_sent: int = 0
    octets_sent: int = 0
    frames_received: int = 0
    octets_received: int = 0
    frames_dropped: int = 0
    duplicates_dropped: int = 0
    sends_refused: int = 0  # send() raised LinkDown
    reconnects: int = 0  # connections re-established after a loss (the first one is not counted)


@runtime_checkable
class Link(Protocol):
    """Moves whole frames (bytes) between a node and a ground station; an async context manager."""

    name: str
    counters: LinkCounters

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @property
    def up(self) -> bool:
        """The transport is connected (and, for MQTT, the peer's retained status is online)."""
        ...

    async def wait_up(self) -> None:
        """Return once the link is up; LinkDown if it is closed meanwhile."""
        ...

    async def send(self, frame: bytes) -> None:
        """Send one whole frame; LinkDown if the link is not up (the caller keeps the frame)."""
        ...

    async def receive(self) -> bytes:
        """The next whole frame; waits across outages and reconnects; LinkDown once closed."""
        ...


class LinkBase:
    """The parts every transport shares: counters, the bounded inbox, the up state and waits.

    A transport calls `_deliver` for each frame that arrives, `_set_up` when its state changes
    and `_close_base` when it closes; the rest is the public `Link` behaviour.
    """

    def __init__(self, name: str, *, receive_depth: int = DEFAULT_RECEIVE_DEPTH) -> None:
        if receive_depth < 1:
            raise LinkConfigError(f"{name}: receive_depth must be at least 1, not {receive_depth}")
        self.name = name
        self.counters = LinkCounters()
        self.last_error = ""  # why the link last went down or could not connect, for operators
        self.last_drop = ""  # why the transport last threw a frame away
        self._log = logging.getLogger(f"{type(self).__module__}")
        self._receive_depth = receive_depth
        self._inbox: deque[bytes] = deque()
        self._inbox_changed = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._up = False
        self._closed = False
        self._tasks: asyncio.TaskGroup | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def _start_keeper(self, keeper: Coroutine[Any, Any, None]) -> None:
        """Enter the link: run `keeper` (connect, read, reconnect) in the link's own TaskGroup."""
        if self._tasks is not None or self._closed:
            keeper.close()
            raise LinkError(f"{self.name}: a link is entered once; create a new one to reopen")
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._keeper = self._tasks.create_task(keeper, name=f"{self.name} keeper")

    async def _stop_keeper(self) -> None:
        """Leave the link: closed for good, the keeper cancelled and awaited. An exception of the
        `async with` body is the caller's and passes through unwrapped, so the TaskGroup is not
        told of it (it would wrap it in an ExceptionGroup)."""
        self._close_base()
        if self._keeper is not None:
            self._keeper.cancel()
        if self._tasks is not None:
            await self._tasks.__aexit__(None, None, None)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "up" if self.up else "down"
        return f"<{type(self).__name__} {self.name} {state}>"

    @property
    def up(self) -> bool:
        return self._up and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_up(self) -> None:
        await self._wait_for_state(True)

    async def wait_down(self) -> None:
        """Return once the link is down or closed (not in the Link protocol: tests, benches)."""
        await self._wait_for_state(False)

    async def receive(self) -> bytes:
        while not self._inbox:
            if self._closed:
                raise LinkDown(f"{self.name}: the link is closed")
            self._inbox_changed.clear()
            await self._inbox_changed.wait()
        return self._inbox.popleft()

    @property
    def pending_frames(self) -> int:
        """Frames received and not yet taken by `receive()`."""
        return len(self._inbox)

    async def _wait_for_state(self, up: bool) -> None:
        while self.up != up:
            if self._closed:
                if not up:
                    return
                raise LinkDown(f"{self.name}: the link is closed, it will not come up")
            self._state_changed.clear()
            await self._state_changed.wait()

    def _refuse(self) -> LinkDown:
        """The LinkDown for a send while down, counted; the caller raises it."""
        self.counters.sends_refused += 1
        if self._closed:
            return LinkDown(f"{self.name}: the link is closed")
        reason = f" ({self.last_error})" if self.last_error else ""
        return LinkDown(f"{self.name} is down{reason}; keep the frame and send it once up")

    def _count_sent(self, frame: bytes) -> None:
        self.counters.frames_sent += 1
        self.counters.octets_sent += len(frame)

    def _deliver(self, frame: bytes) -> None:
        self.counters.frames_received += 1
        self.counters.octets_received += len(frame)
        if len(self._inbox) >= self._receive_depth:
            self._inbox.popleft()
            self._drop(f"receive queue full ({self._receive_depth} frames): oldest frame dropped")
        self._inbox.append(frame)
        self._inbox_changed.set()

    def _drop(self, reason: str, frames: int = 1) -> None:
        self.counters.frames_dropped += frames
        self.last_drop = reason
        self._log.info("%s: dropped %d frame(s): %s", self.name, frames, reason)

    def _set_up(self, up: bool) -> None:
        if up != self._up:
            self._up = up
            self._log.info("%s is %s", self.name, "up" if up else "down")
            self._state_changed.set()

    def _close_base(self) -> None:
        self._closed = True
        self._up = False
        self._state_changed.set()
        self._inbox_changed.set()
