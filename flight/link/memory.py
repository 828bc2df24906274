"""In-process link for simulation: frames cross through a fault hook per direction, in loop time.

Delays are timers on the running loop (`call_at`), so a pair runs the same on the real loop and
on the virtual-time loop, where a simulated hour of link traffic takes no wall-clock time. Given
a seeded hook, the frames that arrive, their order and their arrival times are reproducible.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self

from flight.link.base import DEFAULT_RECEIVE_DEPTH, LinkBase, LinkConfigError, LinkError, Role


class FaultHook(Protocol):
    """What the channel does to one frame: the (delay_s, frame) copies that arrive.

    Called once per frame sent, with the loop time at which its last bit leaves the sender.
    `[]` loses the frame; an altered copy models bit errors; several entries are duplicates;
    a longer delay than the next frame's reorders. Copies with equal delays arrive in list
    order. hil.faults.FaultInjector is the seeded implementation the emulator uses.
    """

    def __call__(self, frame: bytes, now_s: float) -> Sequence[tuple[float, bytes]]: ...


class _Medium:
    """What both ends share: whether the link is in contact."""

    def __init__(self) -> None:
        self.contact = True
        self.ends: list[MemoryLink] = []


class _Direction:
    """One way across the medium: the sender's serialiser, the fault hook, timed deliveries."""

    def __init__(self, hook: FaultHook | None, rate_bps: float | None) -> None:
        self.hook = hook
        self.rate_bps = rate_bps
        self.receiver: MemoryLink | None = None
        self.busy_until_s = -math.inf
        self._pending: list[tuple[float, int, bytes]] = []  # (arrival_s, order, frame)
        self._order = 0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._timer_at_s = math.inf

    def transmit(self, frame: bytes, loop: asyncio.AbstractEventLoop) -> float:
        """Schedule `frame`'s arrivals; return the loop time at which the sender is free again."""
        now_s = loop.time()
        start_s = max(now_s, self.busy_until_s)
        done_s = start_s + (len(frame) * 8 / self.rate_bps if self.rate_bps else 0.0)
        self.busy_until_s = done_s
        deliveries = [(0.0, frame)] if self.hook is None else self.hook(frame, done_s)
        for delivery in deliveries:
            delay_s, copy = _check_delivery(delivery)
            heapq.heappush(self._pending, (done_s + delay_s, self._order, copy))
            self._order += 1
        self._arm(loop)
        return done_s

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._pending:
            return
        head_s = self._pending[0][0]
        if self._timer is not None:
            if self._timer_at_s <= head_s:
                return
            self._timer.cancel()
        self._timer_at_s = head_s
        if head_s <= loop.time():
            self._timer = loop.call_soon(self._arrive, loop)
        else:
            self._timer = loop.call_at(head_s, self._arrive, loop)

    def _arrive(self, loop: asyncio.AbstractEventLoop) -> None:
        # A timer may fire a clock tick early: everything due by the timer's own time arrives.
        due_s = max(loop.time(), self._timer_at_s)
        self._timer = None
        self._timer_at_s = math.inf
        while self._pending and self._pending[0][0] <= due_s:
            _, _, frame = heapq.heappop(self._pending)
            if self.receiver is not None:
                self.receiver._arrive(frame)
        self._arm(loop)


def _check_delivery(delivery: tuple[float, bytes]) -> tuple[float, bytes]:
    try:
        delay_s, frame = delivery
        delay_s = float(delay_s)
    except (TypeError, ValueError):
        raise LinkError(f"fault hook returned {delivery!r}, not a (delay_s, frame) pair") from None
    if not (delay_s >= 0 and math.isfinite(delay_s)) or not isinstance(frame, bytes | bytearray):
        raise LinkError(
            f"fault hook returned delay {delay_s!r} s and {type(frame).__name__}: "
            "the delay must be finite and >= 0, the frame bytes"
        )
    return delay_s, bytes(frame)


class MemoryLink(LinkBase):
    """One end of an in-process link; make both with `MemoryLink.pair`.

    Up while the pair is in contact (`set_up`) and both ends are open (entered, not closed), as
    an MQTT link is up only while its peer is online. Frames still in flight when contact is
    lost are lost, counted at the receiving end.
    """

    def __init__(
        self,
        name: str,
        role: Role,
        medium: _Medium,
        outgoing: _Direction,
        *,
        receive_depth: int = DEFAULT_RECEIVE_DEPTH,
    ) -> None:
        super().__init__(name, receive_depth=receive_depth)
        self.role = role
        self._medium = medium
        self._outgoing = outgoing
        self._open = False
        self._ever_up = False

    @classmethod
    def pair(
        cls,
        uplink_faults: FaultHook | None = None,
        downlink_faults: FaultHook | None = None,
        *,
        rate_bps: float | None = None,
        name: str = "memory",
        receive_depth: int = DEFAULT_RECEIVE_DEPTH,
    ) -> tuple[MemoryLink, MemoryLink]:
        """(flight_end, ground_end): uplink is ground -> flight, downlink flight -> ground.

        `rate_bps` serialises frames in both directions at that bit rate: a send returns when
        its last bit has left, and frames queue behind each other as on a UART.
        """
        if rate_bps is not None and not (rate_bps > 0 and math.isfinite(rate_bps)):
            raise LinkConfigError(f"rate_bps must be a positive bit rate or None, not {rate_bps}")
        medium = _Medium()
        uplink = _Direction(uplink_faults, rate_bps)
        downlink = _Direction(downlink_faults, rate_bps)
        flight = cls(f"{name}:flight", Role.FLIGHT, medium, downlink, receive_depth=receive_depth)
        ground = cls(f"{name}:ground", Role.GROUND, medium, uplink, receive_depth=receive_depth)
        uplink.receiver = flight
        downlink.receiver = ground
        medium.ends.extend((flight, ground))
        return flight, ground

    @property
    def in_contact(self) -> bool:
        """Whether the pair is in contact (set_up), whatever the state of the ends."""
        return self._medium.contact

    def set_up(self, up: bool) -> None:
        """Begin (True) or end (False) contact, for both ends of the pair."""
        self._medium.contact = up
        for end in self._medium.ends:
            end._refresh()

    def set_rate(self, rate_bps: float | None) -> None:
        """Serialise this end's frames at `rate_bps` from now on (None: no serialisation time);
        a link whose rate changes during a run (an optical terminal stepping down)."""
        if rate_bps is not None and not (rate_bps > 0 and math.isfinite(rate_bps)):
            raise LinkConfigError(f"rate_bps must be a positive bit rate or None, not {rate_bps}")
        self._outgoing.rate_bps = rate_bps

    async def __aenter__(self) -> Self:
        if self._open or self.closed:
            raise LinkError(f"{self.name}: a link is entered once; create a new pair to reopen")
        self._open = True
        for end in self._medium.ends:
            end._refresh()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close_base()
        for end in self._medium.ends:
            end._refresh()

    async def send(self, frame: bytes) -> None:
        frame = bytes(frame)
        if not frame:
            raise LinkError(f"{self.name}: refusing to send an empty frame")
        if not self.up:
            raise self._refuse()
        loop = asyncio.get_running_loop()
        free_s = self._outgoing.transmit(frame, loop)
        self._count_sent(frame)
        if free_s > loop.time():
            await asyncio.sleep(free_s - loop.time())

    def _refresh(self) -> None:
        ends_open = all(end._open and not end.closed for end in self._medium.ends)
        up = self._medium.contact and ends_open
        if up and not self._up and self._ever_up:
            self.counters.reconnects += 1
        self._ever_up = self._ever_up or up
        if not self._medium.contact:
            self.last_error = "out of contact"
        elif not ends_open:
            self.last_error = "the other end is not open"
        else:
            self.last_error = ""
        self._set_up(up)

    def _arrive(self, frame: bytes) -> None:
        if self.closed:
            self._drop("arrived after the link closed")
        elif not self._medium.contact:
            self._drop("in flight when contact was lost")
        elif not frame:
            self._drop("empty frame")
        else:
            self._deliver(frame)
