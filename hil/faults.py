"""Link fault models: seeded loss, duplication, reordering, bit errors, delay and outages."""

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FaultModel:
    """Per-frame probabilities; bit errors are per bit, so long frames are hit more often.

    The timing fields are used by `FaultInjector` (the memory link's fault hook) only; the
    lock-step `FaultyChannel` of the demo ignores them. `outages` are (start_s, end_s) windows
    of loop time in which every frame sent is lost without the link noticing, unlike a
    MemoryLink.set_up(False) outage, which both ends see.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    bit_error_rate: float = 0.0
    delay_s: float = 0.0  # propagation delay of every frame
    jitter_s: float = 0.0  # extra delay, uniform in 0..jitter_s; frames still keep their order
    reorder_delay_s: float = 0.5  # extra delay of a reordered frame: later frames overtake it
    outages: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "bit_error_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault model {name}={value} is not a probability in 0..1")
        for name in ("delay_s", "jitter_s", "reorder_delay_s"):
            value = getattr(self, name)
            if not (value >= 0.0 and math.isfinite(value)):
                raise ValueError(f"fault model {name}={value} is not a duration >= 0 s")
        for window in self.outages:
            if len(window) != 2 or not 0.0 <= window[0] < window[1]:
                raise ValueError(
                    f"fault model outage {window!r} is not a (start_s, end_s) window "
                    "with 0 <= start_s < end_s"
                )

    def in_outage(self, now_s: float) -> bool:
        return any(start_s <= now_s < end_s for start_s, end_s in self.outages)


class FaultyChannel:
    """One direction of a link: frames go in with `send`, and out of `deliver` in arrival order.

    A reordered frame is held back and arrives after the next frame sent. Everything random
    comes from the `rng` the caller passes, so a seed reproduces a run exactly.
    """

    def __init__(self, model: FaultModel, rng: random.Random) -> None:
        self.model = model
        self.rng = rng
        self.sent = self.lost = self.duplicated = self.reordered = self.corrupted = 0
        self._arrived: list[bytes] = []
        self._held: bytes | None = None

    def send(self, frame: bytes) -> None:
        self.sent += 1
        if self.rng.random() < self.model.loss:
            self.lost += 1
            return
        copies = 1
        if self.rng.random() < self.model.duplicate:
            self.duplicated += 1
            copies = 2
        for _ in range(copies):
            self._arrive(self._corrupt(frame))

    def deliver(self) -> list[bytes]:
        """Everything that arrived since the last call; a frame held back for reordering stays."""
        arrived, self._arrived = self._arrived, []
        return arrived

    def flush(self) -> list[bytes]:
        """Like `deliver`, and releases a frame held back for reordering (the link went quiet)."""
        if self._held is not None:
            self._arrived.append(self._held)
            self._held = None
        return self.deliver()

    def _arrive(self, frame: bytes) -> None:
        if self._held is None and self.rng.random() < self.model.reorder:
            self.reordered += 1
            self._held = frame
            return
        self._arrived.append(frame)
        if self._held is not None:
            self._arrived.append(self._held)
            self._held = None

    def _corrupt(self, frame: bytes) -> bytes:
        damaged = _corrupt(self.rng, frame, self.model.bit_error_rate)
        if damaged is not frame:
            self.corrupted += 1
        return damaged


class FaultInjector:
    """A FaultModel as the memory link's fault hook (flight.link.memory.FaultHook).

    `MemoryLink.pair(uplink_faults=FaultInjector(model, random.Random(seed)))`. Per frame: lost
    in an outage window or with probability `loss`; else one copy, or two with probability
    `duplicate`; each copy delayed by `delay_s` plus jitter, held back `reorder_delay_s` more
    with probability `reorder` (frames sent meanwhile overtake it), and bit-flipped at
    `bit_error_rate`. Copies not reordered never overtake each other, whatever the jitter.
    Everything random comes from `rng`, so a seed reproduces a run exactly.
    """

    def __init__(self, model: FaultModel, rng: random.Random) -> None:
        self.model = model
        self.rng = rng
        self.sent = self.lost = self.duplicated = self.reordered = self.corrupted = 0
        self.lost_in_outage = 0  # also counted in `lost`
        self._in_order_until_s = -math.inf

    def __call__(self, frame: bytes, now_s: float) -> list[tuple[float, bytes]]:
        model, rng = self.model, self.rng
        self.sent += 1
        if model.in_outage(now_s):
            self.lost += 1
            self.lost_in_outage += 1
            return []
        if rng.random() < model.loss:
            self.lost += 1
            return []
        copies = 1
        if rng.random() < model.duplicate:
            self.duplicated += 1
            copies = 2
        deliveries: list[tuple[float, bytes]] = []
        for _ in range(copies):
            copy = _corrupt(rng, frame, model.bit_error_rate)
            if copy is not frame:
                self.corrupted += 1
            delay_s = model.delay_s
            if model.jitter_s > 0.0:
                delay_s += rng.uniform(0.0, model.jitter_s)
            if rng.random() < model.reorder:
                self.reordered += 1
                delay_s += model.reorder_delay_s
            else:
                # Jitter must not reorder: never arrive before the previous in-order copy.
                # The link adds the delay to now_s; (a - b) + b can fall an ulp short of a.
                if now_s + delay_s < self._in_order_until_s:
                    delay_s = self._in_order_until_s - now_s
                    while now_s + delay_s < self._in_order_until_s:
                        delay_s = math.nextafter(delay_s, math.inf)
                self._in_order_until_s = now_s + delay_s
            deliveries.append((delay_s, copy))
        return deliveries


def _corrupt(rng: random.Random, frame: bytes, rate: float) -> bytes:
    """`frame` with bits flipped at `rate` per bit; the same object when none flipped."""
    if rate == 0.0:
        return frame
    bits = len(frame) * 8
    # Draw the number of flipped bits once (binomial), not one random number per bit.
    flips = _binomial(rng, bits, rate)
    if flips == 0:
        return frame
    damaged = bytearray(frame)
    for position in rng.sample(range(bits), min(flips, bits)):
        damaged[position >> 3] ^= 0x80 >> (position & 7)
    return bytes(damaged)


def _binomial(rng: random.Random, trials: int, p: float) -> int:
    if p >= 1.0:
        return trials
    if trials * p > 50:
        return max(0, min(trials, round(rng.gauss(trials * p, (trials * p * (1 - p)) ** 0.5))))
    # Inversion by sequential search: exact, and fast while the mean is small.
    q = (1 - p) ** trials
    u = rng.random()
    k, cumulative, term = 0, q, q
    while u > cumulative and k < trials:
        term *= (trials - k) / (k + 1) * p / (1 - p)
        k += 1
        cumulative += term
    return k
