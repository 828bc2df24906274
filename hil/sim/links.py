"""The emulator's inter-satellite links: a memory link per pair that may link, raised and dropped
by geometry and damage, delayed by the light time, with the contact plan kept in step."""

import math
import random
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flight.isl import ContactGraph
from flight.link.memory import MemoryLink
from hil.faults import FaultInjector, FaultModel
from hil.sim.geometry import grid_pairs, isl_candidates
from hil.sim.scenario import IslConfig

MAX_ALL_PAIRS_SATELLITES = 200
"""Topology "all" makes N (N - 1) / 2 link pairs, each with two ends a node reads: beyond this
the links, not the satellites, would dominate the run."""

PLAN_DELAY_TOLERANCE_S = 200e-6
"""The contact plan's delay of an up link is rewritten once the light time has moved by more
than this (60 km of range). Routing needs delays to a small fraction of a hop's 3-17 ms, and
rewriting every link every step would cost O(links) and drop every route table each step.
Frames themselves always travel with the light time of the latest step."""


@dataclass(frozen=True, slots=True)
class LinkChange:
    """Link `a`-`b` (satellite indices, a < b) went up or down at `t_s`, and why: "geometry"
    (came into or out of sight, range or the latitude cut), "damage" or "repair"."""

    t_s: float
    a: int
    b: int
    up: bool
    reason: str


class _Tally:
    """What every channel adds to: serialisation time spent sending, for `utilisation`."""

    __slots__ = ("busy_s",)

    def __init__(self) -> None:
        self.busy_s = 0.0


class _Channel:
    """One direction of one pair, as the memory link's fault hook.

    Frames get the pair's light time, read from the network's delay array when they are sent
    (so a geometry step costs nothing per link), then the seeded FaultInjector's effects (bit
    errors) on top. The light-time part never lets a frame overtake the one before it, as on a
    real link whose range changes smoothly, although the delay here changes in steps. The
    injector and its generator (3 kB) are made on the first frame: most pairs of a large
    "all" topology never carry one.
    """

    __slots__ = (
        "_delay_s",
        "_injector",
        "_light_until_s",
        "_model",
        "_pair",
        "_rate_bps",
        "_seed",
        "_tally",
    )

    def __init__(
        self,
        pair: int,
        delay_s: NDArray[np.float64],
        rate_bps: NDArray[np.float64],
        tally: _Tally,
        model: FaultModel,
        seed: str,
    ) -> None:
        self._pair = pair
        self._delay_s = delay_s
        self._rate_bps = rate_bps
        self._tally = tally
        self._model = model
        self._seed = seed
        self._injector: FaultInjector | None = None
        self._light_until_s = -math.inf

    @property
    def injector(self) -> FaultInjector:
        if self._injector is None:
            self._injector = FaultInjector(self._model, random.Random(self._seed))
        return self._injector

    @property
    def model(self) -> FaultModel:
        return self._model if self._injector is None else self._injector.model

    @model.setter
    def model(self, model: FaultModel) -> None:
        self._model = model
        if self._injector is not None:
            self._injector.model = model

    def __call__(self, frame: bytes, now_s: float) -> list[tuple[float, bytes]]:
        self._tally.busy_s += len(frame) * 8 / float(self._rate_bps[self._pair])
        base_s = max(now_s + float(self._delay_s[self._pair]), self._light_until_s)
        self._light_until_s = base_s
        light_s = base_s - now_s
        return [(light_s + extra_s, copy) for extra_s, copy in self.injector(frame, base_s)]


class IslNetwork:
    """Every inter-satellite MemoryLink pair of one run, and the contact plan they make.

    The pairs that may ever link are fixed here: `config.topology` "grid" is the +Grid of the
    Walker pattern (satellites numbered plane by plane, `plane_of`; `phasing` for the seam),
    "all" every pair. Each pair has one MemoryLink pair at `config.rate_bps` with a seeded
    FaultInjector per direction (bit errors at `config.bit_error_rate`); all start down.
    `update` raises and drops them from geometry and damage, sets their light time and keeps
    `contact_plan` (the same ContactGraph all run, over every satellite's address, holding the
    up links) in step. An async context manager: entering opens every link end, leaving closes
    them.

    Times `t_s` are the caller's (the emulator's seconds after the start) and must not go back.
    """

    def __init__(
        self,
        config: IslConfig,
        plane_of: Sequence[int],
        seed: int,
        *,
        address_of: Callable[[int], int] = lambda i: i + 1,
        phasing: int = 0,
    ) -> None:
        self.config = config
        self.plane_of = np.asarray(plane_of, dtype=np.int64).reshape(-1)
        self.satellites = count = int(self.plane_of.size)
        self.addresses = tuple(address_of(i) for i in range(count))
        if len(set(self.addresses)) != count:
            raise ValueError("address_of must give every satellite its own ISL address")
        self._pairs = _candidate_pairs(config, self.plane_of, phasing)
        self._pairs.setflags(write=False)
        self._keys = self._pairs[:, 0] * count + self._pairs[:, 1]
        pairs = len(self._pairs)
        self._visible = np.zeros(pairs, dtype=bool)
        self._damaged = np.zeros(pairs, dtype=bool)
        self._up = np.zeros(pairs, dtype=bool)
        self._delay_s = np.zeros(pairs)
        self._plan_delay_s = np.zeros(pairs)
        self._rate_bps = np.full(pairs, float(config.rate_bps))
        self._degree_up = np.zeros(count, dtype=np.int64)
        self._up_count = 0
        self._tally = _Tally()
        self._ends: list[tuple[MemoryLink, MemoryLink]] = []
        self._channels: list[tuple[_Channel, _Channel]] = []
        self._links_of: list[dict[int, MemoryLink]] = [{} for _ in range(count)]
        model = FaultModel(bit_error_rate=config.bit_error_rate)
        for k, (a, b) in enumerate(self._pairs.tolist()):
            forward, back = (
                _Channel(
                    k,
                    self._delay_s,
                    self._rate_bps,
                    self._tally,
                    model,
                    # One generator per direction, from the seed and the pair alone: a run
                    # reproduces whatever order the links are used in.
                    f"penumbra-isl:{seed}:{sender}->{receiver}",
                )
                for sender, receiver in ((a, b), (b, a))
            )
            end_a, end_b = MemoryLink.pair(
                uplink_faults=back,
                downlink_faults=forward,
                rate_bps=config.rate_bps,
                name=f"isl{self.addresses[a]}-{self.addresses[b]}",
            )
            end_a.set_up(False)
            self._ends.append((end_a, end_b))
            self._channels.append((forward, back))
            self._links_of[a][self.addresses[b]] = end_a
            self._links_of[b][self.addresses[a]] = end_b
        self.contact_plan = ContactGraph()
        for address in self.addresses:
            self.contact_plan.add_node(address)
        self._pending: list[LinkChange] = []
        self._t_s = -math.inf
        self._up_link_s = 0.0
        self._busy_reported_s = 0.0
        self._stack: AsyncExitStack | None = None

    # -- lifetime ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            for end_a, end_b in self._ends:
                await stack.enter_async_context(end_a)
                await stack.enter_async_context(end_b)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()

    # -- what the nodes get -----------------------------------------------------------------------

    def links_of(self, sat: int) -> dict[int, MemoryLink]:
        """Satellite `sat`'s ends of its links (it sends and receives on them), by peer address."""
        return dict(self._links_of[self._check_sat(sat)])

    @property
    def pairs(self) -> NDArray[np.int64]:
        """The pairs that may link, (K, 2) satellite indices i < j, sorted; read-only."""
        return self._pairs

    def up_pairs(self) -> list[tuple[int, int]]:
        """The pairs up now, sorted."""
        return [(a, b) for a, b in self._pairs[self._up].tolist()]

    # -- geometry ---------------------------------------------------------------------------------

    def update(self, positions_m: ArrayLike, t_s: float) -> list[LinkChange]:
        """One geometry step at `t_s`: raise the pairs in sight (line of sight, range, latitude
        cut) and not damaged, drop the others, set the light times, and return what changed
        (with any damage or repair since the last step first)."""
        positions = np.asarray(positions_m, dtype=np.float64)
        if positions.shape != (self.satellites, 3):
            raise ValueError(
                f"positions must be ({self.satellites}, 3) TEME metres, not shape {positions.shape}"
            )
        self._advance(t_s)
        changes, self._pending = self._pending, []
        if not len(self._pairs):
            return changes
        cut = self.config.cross_plane_cut_lat_deg
        # "all": the whole-matrix search is cheaper than checking every pair one by one.
        found = isl_candidates(
            positions,
            None if self.config.topology == "all" else self._pairs,
            max_range_m=self.config.max_range_m,
            cut_latitude_deg=cut,
            plane_of=self.plane_of if cut is not None else None,
        )
        # Both searches give pairs sorted like self._pairs: their keys find their rows by bisection.
        found_index = np.searchsorted(self._keys, found.i * self.satellites + found.j)
        self._visible[:] = False
        self._visible[found_index] = True
        self._delay_s[found_index] = found.delay_s
        wanted = self._visible & ~self._damaged
        for k in np.flatnonzero(wanted != self._up).tolist():
            self._set_pair(k, bool(wanted[k]), t_s, "geometry", changes)
        drifted = self._up & (np.abs(self._delay_s - self._plan_delay_s) > PLAN_DELAY_TOLERANCE_S)
        for k in np.flatnonzero(drifted).tolist():
            self._plan_link(k)
        return changes

    # -- faults and settings ----------------------------------------------------------------------

    def damage(
        self, fraction: float, rng: random.Random, *, t_s: float | None = None
    ) -> list[tuple[int, int]]:
        """Break a `fraction` of all the pairs that may link (drawn with `rng` from those not
        already broken) until `repair`; those up go down at once, both ends see it. Returns the
        broken pairs. The changes are reported by the next `update`, at `t_s` (default: the
        last update's time)."""
        if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
            raise ValueError(f"damage fraction must be in 0..1, not {fraction}")
        t_s = self._advance(t_s)
        healthy = np.flatnonzero(~self._damaged).tolist()
        count = min(round(fraction * len(self._pairs)), len(healthy))
        broken = sorted(rng.sample(healthy, count))
        for k in broken:
            self._damaged[k] = True
            if self._up[k]:
                self._set_pair(k, False, t_s, "damage", self._pending)
        return [(a, b) for a, b in self._pairs[broken].tolist()]

    def repair(self, pairs: Sequence[tuple[int, int]], *, t_s: float | None = None) -> None:
        """Mend broken pairs: those in sight at the last update come up at once, the others when
        geometry allows. Changes are reported by the next `update`, like `damage`'s."""
        indices = [self._index_of(pair) for pair in pairs]
        t_s = self._advance(t_s)
        for k in indices:
            self._damaged[k] = False
            if self._visible[k] and not self._up[k]:
                self._set_pair(k, True, t_s, "repair", self._pending)

    @property
    def damaged_pairs(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b in self._pairs[self._damaged].tolist()]

    def set_rate(self, rate_bps: float, pair: tuple[int, int] | None = None) -> None:
        """Change the data rate of one pair (satellite indices) or of all, from now on."""
        if not (math.isfinite(rate_bps) and rate_bps > 0.0):
            raise ValueError(f"ISL rate must be > 0 bits per second, not {rate_bps}")
        for k in self._selected(pair):
            self._rate_bps[k] = rate_bps
            for end in self._ends[k]:
                end.set_rate(rate_bps)
            if self._up[k]:
                self._plan_link(k)

    def set_bit_error_rate(
        self, bit_error_rate: float, pair: tuple[int, int] | None = None
    ) -> None:
        """Change the bit-error rate of one pair (satellite indices) or of all, from now on."""
        if not (math.isfinite(bit_error_rate) and 0.0 <= bit_error_rate <= 1.0):
            raise ValueError(f"ISL bit-error rate must be in 0..1, not {bit_error_rate}")
        for k in self._selected(pair):
            for channel in self._channels[k]:
                channel.model = replace(channel.model, bit_error_rate=bit_error_rate)

    def injector(self, sender: int, receiver: int) -> FaultInjector:
        """The fault injector of the direction `sender` -> `receiver` (its counters, its model)."""
        k = self._index_of((sender, receiver))
        forward, back = self._channels[k]
        return (forward if sender < receiver else back).injector

    # -- counters for the report ------------------------------------------------------------------

    def links_up(self, sat: int) -> int:
        """How many of `sat`'s links are up now."""
        return int(self._degree_up[self._check_sat(sat)])

    def octets_sent(self, sat: int) -> int:
        """Octets node `sat` has sent on its ISL ends since the run began (all its boots)."""
        return sum(
            end.counters.octets_sent for end in self._links_of[self._check_sat(sat)].values()
        )

    def utilisation(self, t_s: float | None = None) -> float:
        """Busy fraction of the up links since the last call (0..1): the time spent
        serialising frames over the time the links were up, counting both directions of a link,
        to `t_s` (default: the last update's time). 0 when no link was up."""
        self._advance(t_s)
        busy_s = self._tally.busy_s - self._busy_reported_s
        up_s = 2.0 * self._up_link_s
        self._busy_reported_s = self._tally.busy_s
        self._up_link_s = 0.0
        return min(busy_s / up_s, 1.0) if up_s > 0.0 else 0.0

    # -- inside -----------------------------------------------------------------------------------

    def _advance(self, t_s: float | None) -> float:
        """Count the up links' time to `t_s` (None: the last time seen) and return it."""
        if t_s is None:
            return self._t_s if math.isfinite(self._t_s) else 0.0
        if not math.isfinite(t_s) or t_s < self._t_s:
            raise ValueError(f"ISL time must be finite and not go back: {t_s} after {self._t_s}")
        if math.isfinite(self._t_s):
            self._up_link_s += self._up_count * (t_s - self._t_s)
        self._t_s = t_s
        return t_s

    def _set_pair(
        self, k: int, up: bool, t_s: float, reason: str, changes: list[LinkChange]
    ) -> None:
        a, b = self._pairs[k].tolist()
        self._up[k] = up
        self._ends[k][0].set_up(up)
        step = 1 if up else -1
        self._degree_up[a] += step
        self._degree_up[b] += step
        self._up_count += step
        if up:
            self._plan_link(k)
        else:
            self.contact_plan.remove_link(self.addresses[a], self.addresses[b])
        changes.append(LinkChange(t_s, a, b, up, reason))

    def _plan_link(self, k: int) -> None:
        a, b = self._pairs[k].tolist()
        delay_s = float(self._delay_s[k])
        self._plan_delay_s[k] = delay_s
        self.contact_plan.set_link(
            self.addresses[a], self.addresses[b], delay_s=delay_s, rate_bps=float(self._rate_bps[k])
        )

    def _selected(self, pair: tuple[int, int] | None) -> list[int]:
        return list(range(len(self._pairs))) if pair is None else [self._index_of(pair)]

    def _index_of(self, pair: tuple[int, int]) -> int:
        a, b = sorted(self._check_sat(sat) for sat in pair)
        k = int(np.searchsorted(self._keys, a * self.satellites + b))
        if k == len(self._keys) or self._keys[k] != a * self.satellites + b:
            raise ValueError(
                f"satellites {a} and {b} are not a pair that may link "
                f"(ISL topology {self.config.topology!r})"
            )
        return k

    def _check_sat(self, sat: int) -> int:
        if not 0 <= sat < self.satellites:
            raise ValueError(f"satellite {sat} is not one of 0..{self.satellites - 1}")
        return int(sat)


def _candidate_pairs(
    config: IslConfig, plane_of: NDArray[np.int64], phasing: int
) -> NDArray[np.int64]:
    """The pairs (i < j, sorted) that may ever link under `config`."""
    count = int(plane_of.size)
    if not config.enabled or count < 2:
        return np.empty((0, 2), dtype=np.int64)
    if config.topology == "all":
        if count > MAX_ALL_PAIRS_SATELLITES:
            raise ValueError(
                f"ISL topology 'all' links every pair: refused for {count} satellites (more than "
                f'{MAX_ALL_PAIRS_SATELLITES}); use topology = "grid"'
            )
        i, j = np.triu_indices(count, k=1)
        return np.stack([i, j], axis=-1).astype(np.int64)
    planes = int(plane_of.max()) + 1
    per_plane = count // planes
    expected = np.arange(count, dtype=np.int64) // per_plane if per_plane else None
    if count % planes or expected is None or not np.array_equal(plane_of, expected):
        raise ValueError(
            "ISL topology 'grid' needs the satellites numbered plane by plane in equal planes "
            '(plane_of 0, 0, .., 1, 1, ..); use topology = "all" for other constellations'
        )
    return grid_pairs(planes, per_plane, phasing=phasing)
