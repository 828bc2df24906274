"""Link fault models: seeded loss, duplication, reordering and bit errors on one link direction."""

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FaultModel:
    """Per-frame probabilities; bit errors are per bit, so long frames are hit more often."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    bit_error_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder", "bit_error_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault model {name}={value} is not a probability in 0..1")


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
        rate = self.model.bit_error_rate
        if rate == 0.0:
            return frame
        bits = len(frame) * 8
        # Draw the number of flipped bits once (binomial), not one random number per bit.
        flips = _binomial(self.rng, bits, rate)
        if flips == 0:
            return frame
        self.corrupted += 1
        damaged = bytearray(frame)
        for position in self.rng.sample(range(bits), min(flips, bits)):
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
