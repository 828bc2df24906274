"""What the constellation emulator runs: satellites, ground sites, links, workload, faults and
the nodes' cadence, as values (`scenarios/*.toml` are loaded into these by `load`).

Durations are seconds after the run's start; the epoch is UTC Unix seconds.
"""

import math
import random
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from flight.orbit import GroundSite, Orbit
from hil.sim.constellation import from_tles, walker_delta
from hil.sim.power import POLICY_CHOICES, SCENARIO_EPOCH_UNIX_S, PowerScenario

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
    """At `at_s` satellite `sat`'s inference core fails mid-tile and takes the flight process
    with it: systemd starts it again, the tiles in flight are lost and the jobs resume from
    their last checkpoints."""

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


@dataclass(frozen=True, slots=True)
class LinkQuality:
    """From `at_s` the inter-satellite links carry `rate_bps` and have `bit_error_rate` (None:
    unchanged): all of them, or only the one `between` two satellites (indices)."""

    at_s: float
    rate_bps: float | None = None
    bit_error_rate: float | None = None
    between: tuple[int, int] | None = None
    sat: int = -1  # not about one satellite


Fault = Reboot | BatteryFade | CoreCrash | LinkDamage | LinkQuality


@dataclass(frozen=True, slots=True)
class PoissonFaults:
    """Faults of one `kind` arriving as a Poisson process, expanded from the scenario's seed
    into faults at given times before the run (so a seed reproduces them): "reboot",
    "battery_fade" and "core_crash" at `rate_per_hour` per satellite, "link_damage" at
    `rate_per_hour` for the constellation. `off_s` is a reboot's outage, `fraction` a fade's
    lost capacity or the share of links broken, `duration_s` how long they stay broken."""

    kind: str
    rate_per_hour: float
    off_s: float = 5.0
    fraction: float = 0.05
    duration_s: float = 600.0

    KINDS = ("reboot", "battery_fade", "core_crash", "link_damage")

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"Poisson fault kind {self.kind!r} is not one of {self.KINDS}")
        if not (math.isfinite(self.rate_per_hour) and self.rate_per_hour >= 0.0):
            raise ValueError(f"rate_per_hour must be >= 0, not {self.rate_per_hour}")
        _check_time("off_s", self.off_s)
        _check_time("duration_s", self.duration_s)
        _check_fraction("fraction", self.fraction, below_one=True)

    def expand(self, satellites: int, duration_s: float, rng: random.Random) -> list[Fault]:
        faults: list[Fault] = []
        if self.rate_per_hour == 0.0:
            return faults
        mean_gap_s = 3_600.0 / self.rate_per_hour
        for sat in range(1 if self.kind == "link_damage" else satellites):
            t = rng.expovariate(1.0 / mean_gap_s)
            while t < duration_s:
                if self.kind == "link_damage":
                    faults.append(LinkDamage(t, self.fraction, self.duration_s))
                elif self.kind == "reboot":
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
    """How often each node's periodic work runs: the same flight code on a coarser schedule.

    On a board a node ticks at 10 Hz (power protection; the governor at 1 Hz), reports, pings
    and sends idle frames every second and forecasts its sunlight every 600 s
    (`FLIGHT_CADENCE`), which costs about 3.5 s of CPU per node-hour. The default here ticks
    every 10 s (protection every 10 s, the governor every 100 s) and forecasts every 3,000 s
    (of a 12,000 s horizon): fine for energy over an orbit (a battery does not cross from its
    floor to under-voltage in seconds), not for a study of the 10 Hz protection itself, which
    the bench and `hil.sim.power` run at flight rates. `COARSE_CADENCE` is for hundreds of
    satellites (docs/emulator.md has the costs of each)."""

    tick_hz: float = 0.1
    housekeeping_interval_s: float = 300.0
    ping_period_s: float = 600.0
    idle_frame_period_s: float = 60.0
    forecast_period_s: float = 3_000.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tick_hz) and 0.01 <= self.tick_hz <= 1000.0):
            raise ValueError(f"tick_hz must be in 0.01..1000, not {self.tick_hz}")
        if not (
            math.isfinite(self.housekeeping_interval_s) and self.housekeeping_interval_s >= 0.1
        ):
            raise ValueError(
                f"housekeeping_interval_s must be >= 0.1 s, not {self.housekeeping_interval_s}"
            )
        if not (math.isfinite(self.ping_period_s) and 0.1 <= self.ping_period_s <= 3600.0):
            raise ValueError(f"ping_period_s must be in 0.1..3600 s, not {self.ping_period_s}")
        if not (
            math.isfinite(self.idle_frame_period_s) and 0.01 <= self.idle_frame_period_s <= 3600.0
        ):
            raise ValueError(
                f"idle_frame_period_s must be in 0.01..3600 s, not {self.idle_frame_period_s}"
            )
        # The node's forecast horizon is 12,000 s: a refresh must come before it runs out.
        if not (math.isfinite(self.forecast_period_s) and 1.0 <= self.forecast_period_s <= 6000.0):
            raise ValueError(
                f"forecast_period_s must be in 1..6000 s, not {self.forecast_period_s}"
            )


FLIGHT_CADENCE = Cadence(
    tick_hz=10.0,
    housekeeping_interval_s=1.0,
    ping_period_s=1.0,
    idle_frame_period_s=1.0,
    forecast_period_s=600.0,
)
"""What a node runs on a board: the emulator's highest fidelity."""

COARSE_CADENCE = Cadence(
    tick_hz=0.02,
    housekeeping_interval_s=1_800.0,
    ping_period_s=1_800.0,
    idle_frame_period_s=600.0,
    forecast_period_s=6_000.0,
)
"""For hundreds of satellites: protection every 50 s, the governor every 500 s."""


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
        if isinstance(fault, LinkQuality):
            if fault.rate_bps is not None and not (
                math.isfinite(fault.rate_bps) and fault.rate_bps > 0.0
            ):
                raise ValueError(f"fault {fault}: rate_bps must be > 0 bits per second")
            if fault.bit_error_rate is not None:
                _check_fraction(f"fault {fault}: bit_error_rate", fault.bit_error_rate)
            for sat in fault.between or ():
                if not 0 <= sat < len(self.orbits):
                    raise ValueError(
                        f"fault {fault}: satellite {sat} is not one of 0..{len(self.orbits) - 1}"
                    )
            return
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


# -- scenario files -------------------------------------------------------------------------------
#
# `load(path)` reads a scenario file (docs/emulator.md, "Scenario files"); the format follows
# node.toml's rules: unknown sections and keys, wrong types and bad values are refused with a
# ScenarioError naming the file, the key and the reason.


class ScenarioError(Exception):
    """A scenario file that cannot be run: `file: [section] key: reason`."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")
        self.source = source
        self.key = key
        self.reason = reason


# [satellite] numbers: (whole number?, lowest, highest); the PowerScenario has no checks of its own.
_SATELLITE_RANGES: dict[str, tuple[bool, float, float]] = {
    "battery_wh": (False, 0.001, 1e6),
    "initial_soc": (False, 0.0, 1.0),
    "solar_power_w": (False, 0.0, 1e6),
    "bus_power_w": (False, 0.0, 1e5),
    "payload_idle_w": (False, 0.0, 1e5),
    "payload_busy_w": (False, 0.0, 1e5),
    "max_workers": (True, 1, 256),
    "batch_tiles": (True, 1, 1_000_000),
    "floor_soc": (False, 0.0, 0.99),
    "tile_time_s": (False, 0.0, 86_400.0),
    "store_packets": (True, 1, 10_000_000),
}
_SCENARIO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FILE_KEYS = {
    "scenario": (
        "name",
        "duration_h",
        "duration_s",
        "seed",
        "step_s",
        "sample_period_s",
        "policies",
        "epoch",
    ),
    "constellation": ("walker", "tle_file", "planes"),
    "walker": ("total", "planes", "phasing", "altitude_km", "inclination_deg", "raan_spread_deg"),
    "ground_station": ("name", "lat_deg", "lon_deg", "altitude_m", "min_elevation_deg"),
    "satellite": tuple(_SATELLITE_RANGES),
    "isl": (
        "enabled",
        "topology",
        "max_range_km",
        "rate_bps",
        "bit_error_rate",
        "cross_plane_cut_lat_deg",
        "beacon_period_s",
    ),
    "workload": (
        "imaging_jobs_per_sunlit_hour",
        "uplinked_jobs_per_pass",
        "tiles_per_job",
        "deadline_after_s",
        "values",
        "value_weights",
    ),
    "cadence": (
        "tick_hz",
        "housekeeping_interval_s",
        "ping_period_s",
        "idle_frame_period_s",
        "forecast_period_s",
    ),
    "poisson": ("kind", "rate_per_hour", "off_s", "fraction", "duration_s"),
}
_TABLES = ("scenario", "constellation", "satellite", "isl", "workload", "cadence")
_ARRAYS = ("ground_station", "fault", "poisson")
_FAULT_KEYS = {
    "reboot": ("sat", "off_s"),
    "battery_fade": ("sat", "fraction"),
    "core_crash": ("sat",),
    "link_damage": ("fraction", "duration_h", "duration_s"),
    "link_quality": ("rate_bps", "bit_error_rate", "between"),
}


def load(path: Path | str) -> EmulatorScenario:
    """The scenario in TOML file `path` (paths in it are relative to the file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(path), "", "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(str(path), "", f"cannot read it: {error}") from None
    return parse(text, source=str(path), base=path.parent, default_name=path.stem)


def parse(
    text: str, *, source: str = "<scenario>", base: Path | None = None, default_name: str = ""
) -> EmulatorScenario:
    """A scenario from TOML text; ScenarioError naming the key for anything wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(source, "", f"not valid TOML: {error}") from None
    return _Reader(source, Path(".") if base is None else base).scenario(document, default_name)


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _without_name(message: str, name: str) -> str:
    """A dataclass's ValueError ("rate_bps must be ...") as the reason after the key."""
    return message[len(name) + 1 :] if message.startswith(name + " ") else message


class _Reader:
    """One file's reading: knows the file for its errors and the directory for its paths."""

    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base

    def error(self, key: str, reason: str) -> ScenarioError:
        return ScenarioError(self.source, key, reason)

    # -- values -------------------------------------------------------------------------------

    def table(self, where: str, body: object, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise self.error(where, f"expected a table of keys, got {_describe(body)}")
        for key in body:
            if key not in allowed:
                raise self.error(
                    f"{where} {key}", f"unknown key; {where} takes {', '.join(allowed)}"
                )
        return body

    def number(
        self,
        key: str,
        value: object,
        *,
        whole: bool = False,
        low: float = -math.inf,
        high: float = math.inf,
    ) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {_describe(value)}")
        if whole and not isinstance(value, int):
            raise self.error(key, f"expected a whole number, got {value!r}")
        if not math.isfinite(value):
            raise self.error(key, f"expected a finite number, got {value!r}")
        if not low <= value <= high:
            raise self.error(key, f"{value!r} is outside {low:g}..{high:g}")
        return value  # as written, so that a dataclass's reason quotes it; `made` makes floats

    def real(
        self, key: str, value: object, *, low: float = -math.inf, high: float = math.inf
    ) -> float:
        return float(self.number(key, value, low=low, high=high))

    def text(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {_describe(value)}")
        return value

    def pair(self, key: str, value: object, *, whole: bool) -> tuple[Any, Any]:
        if not isinstance(value, list) or len(value) != 2:
            raise self.error(key, f"expected [low, high], got {_describe(value)}")
        low, high = (self.number(key, item, whole=whole) for item in value)
        return (low, high) if whole else (float(low), float(high))

    def numbers(self, key: str, value: object) -> tuple[float, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(key, f"expected a list of numbers, got {_describe(value)}")
        return tuple(float(self.number(key, item, low=0.0)) for item in value)

    def made(self, where: str, cls: Any, values: dict[str, Any], keys: dict[str, str]) -> Any:
        """`cls(**values)`, its ValueError turned into a ScenarioError on the file's key
        (`keys` maps field names to the file's keys where they differ)."""
        try:
            made = cls(**values)
        except ValueError as error:
            message = str(error)
            named = [name for name in values if message.startswith(name + " ")]
            named += [name for name in values if f" {name} " in f" {message} "]
            if not named:
                raise self.error(where, message) from None
            key = keys.get(named[0], named[0])
            raise self.error(f"{where} {key}", _without_name(message, named[0])) from None
        defaults = {f.name: f.default for f in fields(cls)}
        floats = {
            name: float(value)
            for name, value in values.items()
            if type(value) is int and (defaults.get(name) is None or type(defaults[name]) is float)
        }
        return replace(made, **floats) if floats else made

    def duration(self, where: str, body: dict[str, Any], *, required: bool) -> float | None:
        """`duration_h` or `duration_s` (one of them) in seconds."""
        if "duration_h" in body and "duration_s" in body:
            raise self.error(f"{where} duration_h", "give duration_h or duration_s, not both")
        if "duration_h" in body:
            return 3_600.0 * self.real(f"{where} duration_h", body["duration_h"], low=0.0)
        if "duration_s" in body:
            return self.real(f"{where} duration_s", body["duration_s"], low=0.0)
        if required:
            raise self.error(f"{where} duration_h", "missing: give duration_h or duration_s")
        return None

    # -- sections -----------------------------------------------------------------------------

    def scenario(self, document: dict[str, Any], default_name: str) -> EmulatorScenario:
        for section, body in document.items():
            if section in _ARRAYS:
                if not isinstance(body, list):
                    raise self.error(
                        f"[[{section}]]", f"expected [[{section}]] tables, got {_describe(body)}"
                    )
            elif section not in _TABLES:
                known = ", ".join([f"[{s}]" for s in _TABLES] + [f"[[{s}]]" for s in _ARRAYS])
                raise self.error(f"[{section}]", f"unknown section; the sections are {known}")
        if "constellation" not in document:
            raise self.error("[constellation]", "missing: give walker = {...} or tle_file")
        head = self.table("[scenario]", document.get("scenario", {}), _FILE_KEYS["scenario"])
        options: dict[str, Any] = {}
        name = self.text("[scenario] name", head.get("name", default_name or "scenario"))
        if not _SCENARIO_NAME.fullmatch(name):
            raise self.error(
                "[scenario] name",
                f"{name!r}: a scenario name is 1-64 letters, digits, '_', '-' or '.', starting "
                "with a letter or digit (it names the output directory)",
            )
        options["name"] = name
        duration_s = self.duration("[scenario]", head, required=True)
        assert duration_s is not None
        options["duration_s"] = duration_s
        if "seed" in head:
            options["seed"] = self.number("[scenario] seed", head["seed"], whole=True, low=0)
        for key in ("step_s", "sample_period_s"):
            if key in head:
                options[key] = self.real(f"[scenario] {key}", head[key], low=1e-3)
        if "policies" in head:
            options["policies"] = self.policies(head["policies"])
        epoch_unix_s = self.epoch(head["epoch"]) if "epoch" in head else None
        orbits, planes, epoch_unix_s = self.constellation(document["constellation"], epoch_unix_s)
        options.update(orbits=orbits, planes=planes, epoch_unix_s=epoch_unix_s)
        if "ground_station" in document:
            sites = tuple(
                self.site(number, body)
                for number, body in enumerate(document["ground_station"], start=1)
            )
            names = [site.name for site in sites]
            for number, site in enumerate(sites, start=1):
                if names.count(site.name) > 1:
                    raise self.error(
                        f"[[ground_station]] #{number} name",
                        f"{site.name!r} names two stations; give each its own name",
                    )
            options["sites"] = sites
        satellite, store_packets = self.satellite(document.get("satellite", {}))
        workload, satellite = self.workload(document.get("workload", {}), satellite)
        options.update(satellite=satellite, workload=workload)
        if store_packets is not None:
            options["store_packets"] = store_packets
        options["isl"] = self.isl(document.get("isl", {}))
        options["cadence"] = self.cadence(document.get("cadence", {}))
        options["faults"] = tuple(
            self.fault(number, body, len(orbits), duration_s)
            for number, body in enumerate(document.get("fault", []), start=1)
        )
        options["poisson"] = tuple(
            self.poisson(number, body)
            for number, body in enumerate(document.get("poisson", []), start=1)
        )
        keys = {"duration_s": "duration_h" if "duration_h" in head else "duration_s"}
        return self.made("[scenario]", EmulatorScenario, options, keys)

    def policies(self, value: object) -> tuple[str, ...]:
        labels = tuple(choice.label for choice in POLICY_CHOICES)
        key = "[scenario] policies"
        if not isinstance(value, list) or not value:
            raise self.error(key, f"expected a list of policy names, got {_describe(value)}")
        for policy in value:
            if policy not in labels:
                raise self.error(
                    key, f"{policy!r} is not a policy; choose from {', '.join(map(repr, labels))}"
                )
        if len(set(value)) != len(value):
            raise self.error(key, "a policy is named twice")
        return tuple(value)

    def epoch(self, value: object) -> float:
        key = "[scenario] epoch"
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise self.error(
                    key, f"{value!r} is not an ISO-8601 time such as 2026-09-21T12:00:00Z"
                ) from None
        elif isinstance(value, datetime):
            moment = value
        else:
            raise self.error(
                key, f"expected a UTC time such as 2026-09-21T12:00:00Z, not {value!r}"
            )
        if moment.utcoffset() is None:
            raise self.error(key, f"{value!s} has no time zone: add Z for UTC")
        return moment.timestamp()

    def constellation(
        self, body: object, epoch_unix_s: float | None
    ) -> tuple[tuple[Orbit, ...], int, float]:
        body = self.table("[constellation]", body, _FILE_KEYS["constellation"])
        if ("walker" in body) == ("tle_file" in body):
            raise self.error("[constellation]", "give either walker = {...} or tle_file, not both")
        if "walker" in body:
            if "planes" in body:
                raise self.error(
                    "[constellation] planes", "give planes inside walker = {...} for a walker"
                )
            return self.walker(body["walker"], epoch_unix_s)
        path = Path(self.text("[constellation] tle_file", body["tle_file"])).expanduser()
        path = path if path.is_absolute() else self.base / path
        try:
            orbits = tuple(from_tles(path.read_text(encoding="utf-8")))
        except OSError as error:
            raise self.error("[constellation] tle_file", f"cannot read {path}: {error}") from None
        except ValueError as error:
            raise self.error("[constellation] tle_file", f"{path}: {error}") from None
        if not orbits:
            raise self.error("[constellation] tle_file", f"{path} holds no TLE")
        planes = self.number("[constellation] planes", body.get("planes", 1), whole=True, low=1)
        if len(orbits) % planes:
            raise self.error(
                "[constellation] planes",
                f"{planes} planes do not divide the file's {len(orbits)} satellites into equal "
                "groups",
            )
        if epoch_unix_s is None:  # from the newest element set: no orbit is propagated backwards
            epoch_unix_s = max(orbit.epoch_unix_s for orbit in orbits)
        return orbits, planes, epoch_unix_s

    def walker(
        self, body: object, epoch_unix_s: float | None
    ) -> tuple[tuple[Orbit, ...], int, float]:
        where = "[constellation] walker"
        body = self.table(where, body, _FILE_KEYS["walker"])
        for key in ("total", "planes", "altitude_km", "inclination_deg"):
            if key not in body:
                raise self.error(f"{where} {key}", "missing")
        total = self.number(f"{where} total", body["total"], whole=True, low=1)
        planes = self.number(f"{where} planes", body["planes"], whole=True, low=1)
        phasing = self.number(f"{where} phasing", body.get("phasing", 0), whole=True, low=0)
        altitude_km = self.real(f"{where} altitude_km", body["altitude_km"])
        inclination = self.real(f"{where} inclination_deg", body["inclination_deg"], low=0.0)
        spread = self.real(
            f"{where} raan_spread_deg", body.get("raan_spread_deg", 360.0), low=0.0, high=360.0
        )
        epoch_unix_s = SCENARIO_EPOCH_UNIX_S if epoch_unix_s is None else epoch_unix_s
        try:
            orbits = walker_delta(
                total, planes, phasing, altitude_km * 1e3, inclination, epoch_unix_s, spread
            )
        except ValueError as error:
            raise self.error(where, str(error)) from None
        return tuple(orbits), planes, epoch_unix_s

    def site(self, number: int, body: object) -> GroundSite:
        where = f"[[ground_station]] #{number}"
        body = self.table(where, body, _FILE_KEYS["ground_station"])
        for key in ("name", "lat_deg", "lon_deg"):
            if key not in body:
                raise self.error(f"{where} {key}", "missing")
        values = {
            "name": self.text(f"{where} name", body["name"]),
            "latitude_deg": self.real(f"{where} lat_deg", body["lat_deg"], low=-90, high=90),
            "longitude_deg": self.real(f"{where} lon_deg", body["lon_deg"], low=-180, high=360),
            "altitude_m": self.real(
                f"{where} altitude_m", body.get("altitude_m", 0.0), low=-500.0, high=10_000.0
            ),
            "min_elevation_deg": self.real(
                f"{where} min_elevation_deg",
                body.get("min_elevation_deg", 25.0),
                low=-90.0,
                high=90.0,
            ),
        }
        return GroundSite(**values)

    def satellite(self, body: object) -> tuple[PowerScenario, int | None]:
        body = self.table("[satellite]", body, _FILE_KEYS["satellite"])
        values = {}
        for key, value in body.items():
            whole, low, high = _SATELLITE_RANGES[key]
            number = self.number(f"[satellite] {key}", value, whole=whole, low=low, high=high)
            values[key] = number if whole else float(number)
        store_packets = values.pop("store_packets", None)
        satellite = replace(PowerScenario(), **values)
        if satellite.payload_busy_w < satellite.payload_idle_w:
            raise self.error(
                "[satellite] payload_busy_w", "below payload_idle_w: a busy payload draws more"
            )
        return satellite, store_packets

    def workload(self, body: object, satellite: PowerScenario) -> tuple[Workload, PowerScenario]:
        where = "[workload]"
        body = self.table(where, body, _FILE_KEYS["workload"])
        values: dict[str, Any] = {}
        for key in ("imaging_jobs_per_sunlit_hour", "uplinked_jobs_per_pass"):
            if key in body:
                values[key] = self.number(f"{where} {key}", body[key])
        if "tiles_per_job" in body:
            values["tiles_per_job"] = self.pair(
                f"{where} tiles_per_job", body["tiles_per_job"], whole=True
            )
        if "deadline_after_s" in body:
            values["deadline_after_s"] = self.pair(
                f"{where} deadline_after_s", body["deadline_after_s"], whole=False
            )
        workload = self.made(where, Workload, values, {})
        # Job values are drawn by class (value, weight), as the power scenario draws them.
        classes = {}
        for key in ("values", "value_weights"):
            if key in body:
                classes[key] = self.numbers(f"{where} {key}", body[key])
        satellite = replace(satellite, **classes)
        if len(satellite.values) != len(satellite.value_weights):
            raise self.error(
                f"{where} value_weights",
                f"give one weight per value: {len(satellite.values)} values, "
                f"{len(satellite.value_weights)} weights",
            )
        if sum(satellite.value_weights) <= 0.0:
            raise self.error(f"{where} value_weights", "the weights add up to 0")
        return workload, satellite

    def isl(self, body: object) -> IslConfig:
        where = "[isl]"
        body = self.table(where, body, _FILE_KEYS["isl"])
        values: dict[str, Any] = {}
        for key, value in body.items():
            if key == "enabled":
                if not isinstance(value, bool):
                    raise self.error(f"{where} enabled", f"expected true or false, got {value!r}")
                values[key] = value
            elif key == "topology":
                values[key] = self.text(f"{where} topology", value)
            elif key == "max_range_km":
                kilometres = self.number(f"{where} max_range_km", value)
                if kilometres <= 0.0:
                    raise self.error(f"{where} max_range_km", f"must be > 0 km, not {value!r}")
                values["max_range_m"] = kilometres * 1e3
            else:
                values[key] = self.number(f"{where} {key}", value)
        return self.made(where, IslConfig, values, {"max_range_m": "max_range_km"})

    def cadence(self, body: object) -> Cadence:
        body = self.table("[cadence]", body, _FILE_KEYS["cadence"])
        values = {key: self.number(f"[cadence] {key}", value) for key, value in body.items()}
        return self.made("[cadence]", Cadence, values, {})

    def fault(self, number: int, body: object, satellites: int, duration_s: float) -> Fault:
        where = f"[[fault]] #{number}"
        if not isinstance(body, dict):
            raise self.error(where, f"expected a table of keys, got {_describe(body)}")
        kind = self.text(f"{where} kind", body.get("kind", ""))
        if kind not in _FAULT_KEYS:
            raise self.error(
                f"{where} kind",
                f"{kind!r} is not a fault; choose from {', '.join(map(repr, _FAULT_KEYS))}",
            )
        allowed = ("kind", "at_h", "at_s", *_FAULT_KEYS[kind])
        body = self.table(where, body, allowed)
        if ("at_h" in body) == ("at_s" in body):
            raise self.error(f"{where} at_h", "give at_h or at_s (hours or seconds after start)")
        at_key = "at_h" if "at_h" in body else "at_s"
        at_s = self.real(f"{where} {at_key}", body[at_key], low=0.0)
        at_s *= 3_600.0 if at_key == "at_h" else 1.0
        if at_s >= duration_s:
            raise self.error(
                f"{where} {at_key}",
                f"at {at_s:g} s is not before the run's end ({duration_s:g} s): it would never "
                "happen",
            )
        if "fraction" not in body and kind in ("link_damage", "battery_fade"):
            raise self.error(f"{where} fraction", "missing: the fraction lost, 0..1")
        if kind == "link_damage":
            fraction = self.real(f"{where} fraction", body["fraction"], low=0.0, high=1.0)
            return LinkDamage(at_s, fraction, self.duration(where, body, required=False))
        if kind == "link_quality":
            return self.link_quality(where, at_s, body, satellites)
        if "sat" not in body:
            raise self.error(f"{where} sat", "missing: which satellite (0-based index)")
        sat = self.number(f"{where} sat", body["sat"], whole=True)
        if not 0 <= sat < satellites:
            raise self.error(
                f"{where} sat", f"satellite {sat} is not one of 0..{satellites - 1} (0-based)"
            )
        if kind == "reboot":
            return Reboot(at_s, sat, self.real(f"{where} off_s", body.get("off_s", 1.0), low=0))
        if kind == "battery_fade":
            fraction = self.real(f"{where} fraction", body["fraction"], low=0.0)
            if fraction >= 1.0:
                raise self.error(f"{where} fraction", f"must be below 1, not {body['fraction']!r}")
            return BatteryFade(at_s, sat, fraction)
        return CoreCrash(at_s, sat)

    def link_quality(
        self, where: str, at_s: float, body: dict[str, Any], satellites: int
    ) -> LinkQuality:
        if "rate_bps" not in body and "bit_error_rate" not in body:
            raise self.error(f"{where} rate_bps", "missing: give rate_bps, bit_error_rate or both")
        rate = body.get("rate_bps")
        ber = body.get("bit_error_rate")
        between = body.get("between")
        pair: tuple[int, int] | None = None
        if between is not None:
            if not (isinstance(between, list) and len(between) == 2):
                raise self.error(f"{where} between", "expected two satellites, e.g. [0, 1]")
            a, b = (self.number(f"{where} between", sat, whole=True) for sat in between)
            for sat in (a, b):
                if not 0 <= sat < satellites:
                    raise self.error(
                        f"{where} between",
                        f"satellite {sat} is not one of 0..{satellites - 1} (0-based)",
                    )
            if a == b:
                raise self.error(f"{where} between", "two different satellites, not one twice")
            pair = (min(a, b), max(a, b))
        return LinkQuality(
            at_s,
            None if rate is None else self.real(f"{where} rate_bps", rate, low=1.0),
            None if ber is None else self.real(f"{where} bit_error_rate", ber, low=0.0, high=1.0),
            pair,
        )

    def poisson(self, number: int, body: object) -> PoissonFaults:
        where = f"[[poisson]] #{number}"
        body = self.table(where, body, _FILE_KEYS["poisson"])
        for key in ("kind", "rate_per_hour"):
            if key not in body:
                raise self.error(f"{where} {key}", "missing")
        values: dict[str, Any] = {"kind": self.text(f"{where} kind", body["kind"])}
        for key in ("rate_per_hour", "off_s", "fraction", "duration_s"):
            if key in body:
                values[key] = self.number(f"{where} {key}", body[key])
        return self.made(where, PoissonFaults, values, {})
