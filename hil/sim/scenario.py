"""What the constellation emulator runs: satellites, ground sites, links, workload, faults and
the nodes' cadence, as values (`scenarios/*.toml` are loaded into these by `load`).

Durations are seconds after the run's start; the epoch is UTC Unix seconds.
"""

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from flight.orbit import GroundSite, Orbit
from hil.sim.constellation import walker_delta
from hil.sim.power import SCENARIO_EPOCH_UNIX_S, PowerScenario

DEFAULT_SITES = (
    GroundSite("matera", 40.65, 16.70),
    GroundSite("svalbard", 78.23, 15.39),
)


def _check_time(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value}")


def _check_fraction(name: str, value: float, *, below_one: bool = False) -> None:
    ok = 0.0 <= value < 1.0 if below_one else 0.0 <= value <= 1.0
    if not (math.isfinite(value) and ok):
        bound = "0 <= x < 1" if below_one else "0 <= x <= 1"
        raise ValueError(f"{name} must be a fraction in {bound}, not {value}")


# -- faults at given times -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reboot:
    """At `at_s` satellite `sat` loses power for `off_s` and boots again from its persisted
    state."""

    at_s: float
    sat: int
    off_s: float = 1.0


@dataclass(frozen=True, slots=True)
class BatteryFade:
    """At `at_s` satellite `sat`'s battery loses `fraction` of its capacity (0 <= fraction < 1)."""

    at_s: float
    sat: int
    fraction: float


@dataclass(frozen=True, slots=True)
class CoreCrash:
    """At `at_s` satellite `sat`'s inference core fails: the tiles in flight are lost and the
    payload restarts its jobs from their last checkpoints (the node stays up)."""

    at_s: float
    sat: int


@dataclass(frozen=True, slots=True)
class LinkDamage:
    """At `at_s` a seeded `fraction` of the inter-satellite links go down (a terminal per pair
    broken) for `duration_s`, or for the rest of the run when None."""

    at_s: float
    fraction: float
    duration_s: float | None = None
    sat: int = -1  # not about one satellite; kept so that every fault has `at_s` and `sat`


Fault = Reboot | BatteryFade | CoreCrash | LinkDamage


@dataclass(frozen=True, slots=True)
class PoissonFaults:
    """Faults of one `kind` ("reboot", "battery_fade", "core_crash") arriving as a Poisson
    process at `rate_per_hour` per satellite, expanded from the scenario's seed into faults at
    given times before the run (so a seed reproduces them). `off_s` is a reboot's outage;
    `fraction` a fade's lost capacity."""

    kind: str
    rate_per_hour: float
    off_s: float = 5.0
    fraction: float = 0.05

    KINDS = ("reboot", "battery_fade", "core_crash")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"Poisson fault kind {self.kind!r} is not one of {self.KINDS}")
        if not (math.isfinite(self.rate_per_hour) and self.rate_per_hour >= 0.0):
            raise ValueError(f"rate_per_hour must be >= 0, not {self.rate_per_hour}")
        _check_time("off_s", self.off_s)
        _check_fraction("fraction", self.fraction, below_one=True)

    def expand(self, satellites: int, duration_s: float, rng: random.Random) -> list[Fault]:
        faults: list[Fault] = []
        if self.rate_per_hour == 0.0:
            return faults
        mean_gap_s = 3_600.0 / self.rate_per_hour
        for sat in range(satellites):
            t = rng.expovariate(1.0 / mean_gap_s)
            while t < duration_s:
                if self.kind == "reboot":
                    faults.append(Reboot(t, sat, self.off_s))
                elif self.kind == "battery_fade":
                    faults.append(BatteryFade(t, sat, self.fraction))
                else:
                    faults.append(CoreCrash(t, sat))
                t += rng.expovariate(1.0 / mean_gap_s)
        return faults


# -- links, workload, cadence ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IslConfig:
    """The inter-satellite links: which pairs may link, and what each link carries.

    A pair links while its line of sight clears 80 km (hil.sim.geometry) and its range is at
    most `max_range_m`; `topology` "grid" keeps only +Grid pairs (two in-plane, two cross-plane
    neighbours), "all" every pair in sight. With `cross_plane_cut_lat_deg`, cross-plane links
    are down while either end is above that |latitude|. Frames are delayed by the light time.
    """

    enabled: bool = True
    topology: str = "grid"
    max_range_m: float = 5_000e3
    rate_bps: float = 10e6
    bit_error_rate: float = 0.0
    cross_plane_cut_lat_deg: float | None = None
    beacon_period_s: float = 30.0

    TOPOLOGIES = ("grid", "all")

    def __post_init__(self) -> None:
        if self.topology not in self.TOPOLOGIES:
            raise ValueError(f"topology {self.topology!r} is not one of {self.TOPOLOGIES}")
        if not (math.isfinite(self.max_range_m) and self.max_range_m > 0.0):
            raise ValueError(f"max_range_m must be > 0 metres, not {self.max_range_m}")
        if not (math.isfinite(self.rate_bps) and self.rate_bps > 0.0):
            raise ValueError(f"rate_bps must be > 0 bits per second, not {self.rate_bps}")
        _check_fraction("bit_error_rate", self.bit_error_rate)
        cut = self.cross_plane_cut_lat_deg
        if cut is not None and not (math.isfinite(cut) and 0.0 <= cut <= 90.0):
            raise ValueError(f"cross_plane_cut_lat_deg must be in 0..90 degrees, not {cut}")
        if not (math.isfinite(self.beacon_period_s) and self.beacon_period_s > 0.0):
            raise ValueError(f"beacon_period_s must be > 0 seconds, not {self.beacon_period_s}")


@dataclass(frozen=True, slots=True)
class Workload:
    """The jobs: imaging jobs made onboard at seeded Poisson times while a satellite is
    sunlit, and jobs the ground uplinks during passes (each with a deadline and a value)."""

    imaging_jobs_per_sunlit_hour: float = 4.0
    uplinked_jobs_per_pass: float = 0.0
    tiles_per_job: tuple[int, int] = (4, 16)
    deadline_after_s: tuple[float, float] = (1_800.0, 4 * 3_600.0)

    def __post_init__(self) -> None:
        for name in ("imaging_jobs_per_sunlit_hour", "uplinked_jobs_per_pass"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be >= 0, not {value}")
        low, high = self.tiles_per_job
        if not 1 <= low <= high:
            raise ValueError(
                f"tiles_per_job must be [low, high] with 1 <= low <= high, not {low, high}"
            )
        low_s, high_s = self.deadline_after_s
        if not (math.isfinite(high_s) and 0.0 < low_s <= high_s):
            raise ValueError(
                f"deadline_after_s must be [low, high] with 0 < low <= high, not {low_s, high_s}"
            )


@dataclass(frozen=True, slots=True)
class Cadence:
    """How often each node's periodic work runs. The flight defaults (10 Hz tick, 1 s
    housekeeping, pings and idle frames) cost about 3.5 s of CPU per node-hour; an emulation of
    hundreds of satellites runs them slower: same code, coarser schedule (docs/emulator.md)."""

    tick_hz: float = 1.0
    housekeeping_interval_s: float = 60.0
    ping_period_s: float = 10.0
    idle_frame_period_s: float = 10.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tick_hz) and 0.1 <= self.tick_hz <= 1000.0):
            raise ValueError(f"tick_hz must be in 0.1..1000, not {self.tick_hz}")
        if not (
            math.isfinite(self.housekeeping_interval_s) and self.housekeeping_interval_s >= 0.1
        ):
            raise ValueError(
                f"housekeeping_interval_s must be >= 0.1 s, not {self.housekeeping_interval_s}"
            )
        if not (math.isfinite(self.ping_period_s) and 0.1 <= self.ping_period_s <= 60.0):
            raise ValueError(f"ping_period_s must be in 0.1..60 s, not {self.ping_period_s}")
        if not (
            math.isfinite(self.idle_frame_period_s) and 0.01 <= self.idle_frame_period_s <= 3600.0
        ):
            raise ValueError(
                f"idle_frame_period_s must be in 0.01..3600 s, not {self.idle_frame_period_s}"
            )


FLIGHT_CADENCE = Cadence(
    tick_hz=10.0, housekeeping_interval_s=1.0, ping_period_s=1.0, idle_frame_period_s=1.0
)
"""What a node runs on a board: the emulator's highest fidelity."""


# -- the scenario ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmulatorScenario:
    """What to run. `satellite` gives every satellite's power system and payload (its orbit,
    beta and duration fields are not used: orbits come from `orbits`). `policies` are run one
    after the other, each on fresh nodes, so that the report compares them on the same
    workload. `faults` are the given ones; `poisson` adds seeded ones (`all_faults`)."""

    orbits: tuple[Orbit, ...]
    name: str = "scenario"
    planes: int = 1  # orbits are in `planes` equal consecutive groups (for cross-plane links)
    sites: tuple[GroundSite, ...] = DEFAULT_SITES
    duration_s: float = 7_200.0
    epoch_unix_s: float = SCENARIO_EPOCH_UNIX_S
    seed: int = 1
    step_s: float = 10.0
    sample_period_s: float = 60.0
    policies: tuple[str, ...] = ("energy_aware",)
    faults: tuple[Fault, ...] = ()
    poisson: tuple[PoissonFaults, ...] = ()
    satellite: PowerScenario = field(default_factory=PowerScenario)
    isl: IslConfig = field(default_factory=IslConfig)
    workload: Workload = field(default_factory=Workload)
    cadence: Cadence = field(default_factory=Cadence)
    store_packets: int = 2_000

    def __post_init__(self) -> None:
        if not self.orbits:
            raise ValueError("a scenario needs at least one satellite (orbits is empty)")
        if self.planes < 1 or len(self.orbits) % self.planes:
            raise ValueError(
                f"planes must divide the {len(self.orbits)} satellites into equal groups, "
                f"not {self.planes}"
            )
        for name in ("step_s", "sample_period_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")
        _check_time("duration_s", self.duration_s)
        if not self.policies:
            raise ValueError("policies is empty: name at least one payload power policy")
        for fault in self.faults:
            self._check_fault(fault)

    def _check_fault(self, fault: Fault) -> None:
        _check_time(f"fault {fault}: at_s", fault.at_s)
        if isinstance(fault, LinkDamage):
            _check_fraction(f"fault {fault}: fraction", fault.fraction)
            if fault.duration_s is not None:
                _check_time(f"fault {fault}: duration_s", fault.duration_s)
            return
        if not 0 <= fault.sat < len(self.orbits):
            raise ValueError(
                f"fault {fault}: satellite {fault.sat} is not one of 0..{len(self.orbits) - 1}"
            )
        if isinstance(fault, BatteryFade):
            _check_fraction(f"fault {fault}: fraction", fault.fraction, below_one=True)
        if isinstance(fault, Reboot):
            _check_time(f"fault {fault}: off_s", fault.off_s)

    def all_faults(self) -> tuple[Fault, ...]:
        """The given faults and the Poisson ones drawn from the seed, in time order."""
        rng = random.Random(f"penumbra-faults:{self.seed}")
        drawn: list[Fault] = list(self.faults)
        for process in self.poisson:
            drawn.extend(process.expand(len(self.orbits), self.duration_s, rng))
        return tuple(sorted(drawn, key=lambda f: (f.at_s, f.sat)))

    @property
    def plane_of(self) -> tuple[int, ...]:
        per_plane = len(self.orbits) // self.planes
        return tuple(index // per_plane for index in range(len(self.orbits)))

    @classmethod
    def walker(
        cls,
        total: int,
        planes: int,
        phasing: int,
        *,
        altitude_m: float = 550e3,
        inclination_deg: float = 53.0,
        epoch_unix_s: float = SCENARIO_EPOCH_UNIX_S,
        **options: Any,
    ) -> "EmulatorScenario":
        """A Walker-delta constellation (`hil.sim.constellation.walker_delta`)."""
        orbits = walker_delta(total, planes, phasing, altitude_m, inclination_deg, epoch_unix_s)
        return cls(orbits=tuple(orbits), planes=planes, epoch_unix_s=epoch_unix_s, **options)

    def with_policy(self, policy: str) -> "EmulatorScenario":
        return replace(self, policies=(policy,))
