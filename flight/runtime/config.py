"""A node's configuration: node.toml read into frozen dataclasses, with embedded defaults.

Every key is optional: with no file at all a node runs on the defaults below (`make demo`,
`penumbra dict export`), without a link and storing its TM. Unknown sections and keys, and values
of the wrong type or out of range, are refused with a `ConfigError` naming the file, the key and
the problem, such as `node.toml: [link] url: ...`. Relative paths are relative to the file.

    [node]
    name = "sat1"                # lower_snake_case; the MQTT topics use it
    spacecraft_id = 421          # 0..1023
    apid = 16                    # the command and TM APID, 1..2046
    state_dir = "state"          # parameters, counters, anti-replay state

    [link]
    url = "serial:///dev/ttyUSB0?baudrate=115200"   # or mqtt://host:1883/sat1, mqtts://...
    key_file = "keys/sa1.key"    # AES-256, mode 0600; required with a url
    spi = 1                      # the security association of the key

    [time]
    epoch_tai_s = 2173910437.0   # TAI at loop time 0 on the virtual-time loop

    [rate_groups]
    tick_hz = 10.0

    [housekeeping]
    interval_ms = 1000           # each component's report interval at boot

    [downlink]
    store_packets = 10000        # the TM store's bound
    idle_frame_period_s = 1.0    # an idle frame (carrying the CLCW) when nothing else goes down

    [orbit]                      # the node's own TLE: eclipse and contact forecast onboard
    tle_line1 = "1 99999U ..."
    tle_line2 = "2 99999 ..."
    ground_sites = [             # where its passes are: the ISL routes results to the next one
        { name = "matera", latitude_deg = 40.65, longitude_deg = 16.70, min_elevation_deg = 25.0 },
    ]

    [power]
    eps = "none"                 # "simulated" (emulator, bench) or "sysfs" (Jetson rails, battery)
    policy = "energy_aware"      # or "always_on", "threshold", "sunlit_only" (the baselines)
    capacity_wh = 43.0           # battery capacity, for coulomb counting
    charge_efficiency = 0.95     # stored / terminal energy while charging (cell datasheet)
    discharge_efficiency = 0.95  # terminal / stored energy while discharging
    floor_soc = 0.70             # the state of charge never planned below (30% depth of discharge)
    undervoltage_v = 6.6         # below this the payload is shed within one 10 Hz tick
    bus_power_w = 5.0            # the platform's own load, until measured
    solar_power_w = 30.0         # mean sunlit harvest, until measured
    forecast_horizon_s = 12000.0 # how far ahead the governor plans (about two orbits at 550 km)
    forecast_period_s = 600.0    # how often that forecast is computed again (SGP4 from the TLE)
    cpu_freq_control = false     # write cpufreq caps (needs root; read-only by default)
    solar_rail = "VDD_IN"        # sysfs: INA3221 rail labels (Jetson: VDD_IN, VDD_CPU_GPU_CV, ...)
    payload_rail = "VDD_CPU_GPU_CV"
    load_rail = "VDD_IN"
    battery_rail = "VDD_IN"      # a board without a battery gauge reads its input rail
    battery_supply = "battery"   # sysfs: the /sys/class/power_supply entry of a battery gauge

    [payload]
    max_workers = 4              # jobs running at once
    batch_tiles = 8              # tiles per checkpoint
    idle_power_w = 3.0           # modelled payload power when no sensor measures it
    busy_power_w = 15.0          # ... with every worker busy
    simulated_tile_time_s = 0.0  # emulator only: the least time a tile takes (a board's speed)

    [isl]                        # inter-satellite links (component 18), when the node has any
    address = 1                  # this node's ISL address, 1..4294967294 (none: no ISL)
    beacon_period_s = 30.0       # a beacon to each neighbour in contact this often
    neighbour_expiry_s = 100.0   # a neighbour not heard for this long is forgotten
    offload = true               # offer jobs it cannot finish in time, and take others'
    retry_s = 30.0               # offers, inputs and results are sent again this often
    segment_octets = 1024        # file data per ISL packet (models, inputs, results)
    store_packets = 64           # store-and-forward: packets kept per destination
    store_octets = 1048576       # ... and octets kept in all
"""

import math
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from flight.orbit.errors import OrbitError
from flight.orbit.ground import GroundSite
from flight.protocol import icd
from flight.protocol.sdls import MAX_SPI

DEFAULTS_SOURCE = "<defaults>"
DEFAULT_EPOCH_TAI_S = 2_173_910_437.0  # 2026-11-21T00:00:00 UTC as TAI seconds since 1958
DEFAULT_COMMAND_APID = 0x010
_NODE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class ConfigError(Exception):
    """A configuration that cannot be used: `source: [section] key: problem`."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class NodeSection:
    name: str = "penumbra"
    spacecraft_id: int = icd.SPACECRAFT_ID
    apid: int = DEFAULT_COMMAND_APID
    state_dir: Path = Path("penumbra-state")


@dataclass(frozen=True, slots=True)
class LinkSection:
    url: str | None = None
    key_file: Path | None = None
    spi: int = icd.SECURITY_PARAMETER_INDEX


@dataclass(frozen=True, slots=True)
class TimeSection:
    epoch_tai_s: float = DEFAULT_EPOCH_TAI_S


@dataclass(frozen=True, slots=True)
class RateGroupsSection:
    tick_hz: float = 10.0
    jitter_samples: int = 1024  # cycles whose start lateness each group keeps (p50/p99/max)


@dataclass(frozen=True, slots=True)
class HousekeepingSection:
    interval_ms: int = 1000


@dataclass(frozen=True, slots=True)
class DownlinkSection:
    store_packets: int = 10_000
    idle_frame_period_s: float = 1.0


@dataclass(frozen=True, slots=True)
class OrbitSection:
    tle_line1: str | None = None
    tle_line2: str | None = None
    ground_sites: tuple[GroundSite, ...] = ()


@dataclass(frozen=True, slots=True)
class PowerSection:
    eps: str = "none"
    policy: str = "energy_aware"
    capacity_wh: float = 43.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    floor_soc: float = 0.70
    undervoltage_v: float = 6.6
    bus_power_w: float = 5.0
    solar_power_w: float = 30.0
    forecast_horizon_s: float = 12_000.0
    forecast_period_s: float = 600.0
    cpu_freq_control: bool = False
    solar_rail: str | None = None
    payload_rail: str | None = None
    load_rail: str | None = None
    battery_rail: str | None = None
    battery_supply: str | None = None


@dataclass(frozen=True, slots=True)
class PayloadSection:
    max_workers: int = 4
    batch_tiles: int = 8
    idle_power_w: float = 3.0
    busy_power_w: float = 15.0
    simulated_tile_time_s: float = 0.0


@dataclass(frozen=True, slots=True)
class IslSection:
    address: int | None = None
    beacon_period_s: float = 30.0
    neighbour_expiry_s: float = 100.0
    offload: bool = True
    retry_s: float = 30.0
    segment_octets: int = 1024
    store_packets: int = 64
    store_octets: int = 1 << 20


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A whole configuration; `source` is the file it came from (or `<defaults>`)."""

    source: str = DEFAULTS_SOURCE
    node: NodeSection = field(default_factory=NodeSection)
    link: LinkSection = field(default_factory=LinkSection)
    time: TimeSection = field(default_factory=TimeSection)
    rate_groups: RateGroupsSection = field(default_factory=RateGroupsSection)
    housekeeping: HousekeepingSection = field(default_factory=HousekeepingSection)
    downlink: DownlinkSection = field(default_factory=DownlinkSection)
    orbit: OrbitSection = field(default_factory=OrbitSection)
    power: PowerSection = field(default_factory=PowerSection)
    payload: PayloadSection = field(default_factory=PayloadSection)
    isl: IslSection = field(default_factory=IslSection)

    def error(self, key: str, problem: str) -> ConfigError:
        """A ConfigError for `[section] key` of this configuration."""
        return ConfigError(self.source, key, problem)

    def with_state_dir(self, state_dir: Path) -> "NodeConfig":
        return replace(self, node=replace(self.node, state_dir=Path(state_dir)))


_SECTIONS = {
    "node": NodeSection,
    "link": LinkSection,
    "time": TimeSection,
    "rate_groups": RateGroupsSection,
    "housekeeping": HousekeepingSection,
    "downlink": DownlinkSection,
    "orbit": OrbitSection,
    "power": PowerSection,
    "payload": PayloadSection,
    "isl": IslSection,
}

# (type, minimum, maximum) of numbers; strings and paths are checked by _check below.
_RANGES: dict[tuple[str, str], tuple[type, float, float]] = {
    ("node", "spacecraft_id"): (int, 0, 0x3FF),
    ("node", "apid"): (int, 1, 0x7FE),
    ("link", "spi"): (int, 0, MAX_SPI),
    ("time", "epoch_tai_s"): (float, 0.0, float(2**32 - 1)),
    ("rate_groups", "tick_hz"): (float, 0.01, 1000.0),
    ("rate_groups", "jitter_samples"): (int, 1, 10_000_000),
    ("housekeeping", "interval_ms"): (int, 100, 2**32 - 1),
    ("downlink", "store_packets"): (int, 1, 10_000_000),
    ("downlink", "idle_frame_period_s"): (float, 0.01, 3600.0),
    ("power", "capacity_wh"): (float, 0.001, 1e6),
    ("power", "charge_efficiency"): (float, 0.01, 1.0),
    ("power", "discharge_efficiency"): (float, 0.01, 1.0),
    ("power", "floor_soc"): (float, 0.0, 0.99),
    ("power", "undervoltage_v"): (float, 0.0, 1000.0),
    ("power", "bus_power_w"): (float, 0.0, 1e5),
    ("power", "solar_power_w"): (float, 0.0, 1e6),
    ("power", "forecast_horizon_s"): (float, 600.0, 7 * 86_400.0),
    ("power", "forecast_period_s"): (float, 1.0, 7 * 86_400.0),
    ("payload", "max_workers"): (int, 1, 256),
    ("payload", "batch_tiles"): (int, 1, 1_000_000),
    ("payload", "idle_power_w"): (float, 0.0, 1e5),
    ("payload", "busy_power_w"): (float, 0.0, 1e5),
    ("payload", "simulated_tile_time_s"): (float, 0.0, 86_400.0),
    ("isl", "address"): (int, 1, 2**32 - 2),
    ("isl", "beacon_period_s"): (float, 0.1, 86_400.0),
    ("isl", "neighbour_expiry_s"): (float, 0.1, 7 * 86_400.0),
    ("isl", "retry_s"): (float, 0.1, 86_400.0),
    ("isl", "segment_octets"): (int, 64, 60_000),
    ("isl", "store_packets"): (int, 1, 1_000_000),
    ("isl", "store_octets"): (int, 1024, 2**40),
}
_SITE_KEYS = {
    "name": str,
    "latitude_deg": float,
    "longitude_deg": float,
    "altitude_m": float,
    "min_elevation_deg": float,
}
_CHOICES = {
    ("power", "eps"): ("none", "simulated", "sysfs"),
    ("power", "policy"): ("energy_aware", "always_on", "threshold", "sunlit_only"),
}
_LINK_SCHEMES = ("serial", "socket", "mqtt", "mqtts")


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _ground_sites(source: str, where: str, value: Any) -> tuple[GroundSite, ...]:
    """`[orbit] ground_sites`: a list of tables {name, latitude_deg, longitude_deg,
    altitude_m = 0, min_elevation_deg = 25}."""
    example = '[{ name = "matera", latitude_deg = 40.65, longitude_deg = 16.7 }]'
    if not isinstance(value, list):
        raise ConfigError(source, where, f"expected a list of sites such as {example}")
    sites = []
    for number, item in enumerate(value):
        here = f"{where}[{number}]"
        if not isinstance(item, dict):
            raise ConfigError(source, here, f"expected a table such as {example}")
        unknown = set(item) - set(_SITE_KEYS)
        if unknown:
            keys = ", ".join(_SITE_KEYS)
            first = sorted(unknown)[0]
            raise ConfigError(source, here, f"unknown key {first}; a site takes {keys}")
        missing = {"name", "latitude_deg", "longitude_deg"} - set(item)
        if missing:
            raise ConfigError(source, here, f"missing {', '.join(sorted(missing))}")
        for key, kind in _SITE_KEYS.items():
            if key not in item:
                continue
            field_value = item[key]
            if kind is str and not (isinstance(field_value, str) and field_value):
                raise ConfigError(source, f"{here} {key}", "expected a non-empty string")
            if kind is float and (
                isinstance(field_value, bool)
                or not isinstance(field_value, int | float)
                or not math.isfinite(field_value)
            ):
                raise ConfigError(source, f"{here} {key}", "expected a finite number")
        try:
            sites.append(GroundSite(**{k: v if k == "name" else float(v) for k, v in item.items()}))
        except OrbitError as error:
            raise ConfigError(source, here, str(error)) from None
    return tuple(sites)


def _convert(source: str, section: str, key: str, value: Any, annotation: Any, base: Path) -> Any:
    where = f"[{section}] {key}"
    if (section, key) == ("orbit", "ground_sites"):
        return _ground_sites(source, where, value)
    if (section, key) in _RANGES:
        kind, low, high = _RANGES[(section, key)]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(source, where, f"expected a number, got {_describe(value)}")
        if kind is int and not isinstance(value, int):
            raise ConfigError(source, where, f"expected a whole number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(source, where, f"expected a finite number, got {value!r}")
        if not low <= value <= high:
            raise ConfigError(source, where, f"{value!r} is outside {low:g}..{high:g}")
        return kind(value)
    if annotation in (bool, "bool"):
        if not isinstance(value, bool):
            raise ConfigError(source, where, f"expected true or false, got {_describe(value)}")
        return value
    if not isinstance(value, str):
        raise ConfigError(source, where, f"expected a string, got {_describe(value)}")
    choices = _CHOICES.get((section, key))
    if choices is not None and value not in choices:
        raise ConfigError(source, where, f"{value!r}: choose one of {', '.join(choices)}")
    if annotation in (Path, "Path", Path | None, "Path | None"):
        if not value:
            raise ConfigError(source, where, "an empty path")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    if (section, key) == ("node", "name") and not _NODE_NAME.fullmatch(value):
        raise ConfigError(
            source,
            where,
            f"{value!r}: a node name is 1-32 characters: lowercase letters, digits, '_', '-', "
            "starting with a letter",
        )
    if (section, key) == ("link", "url"):
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if scheme not in _LINK_SCHEMES:
            raise ConfigError(
                source,
                where,
                f"{value!r}: give serial:///dev/ttyUSB0?baudrate=115200, socket://HOST:PORT, "
                "mqtt://HOST:1883/NODE or mqtts://HOST:8883/NODE",
            )
    return value


def parse(text: str, *, source: str = DEFAULTS_SOURCE, base: Path | None = None) -> NodeConfig:
    """A configuration from TOML text; ConfigError naming the key for anything wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, "", f"not valid TOML: {error}") from None
    base = Path(".") if base is None else base
    sections: dict[str, Any] = {"source": source}
    for section, body in document.items():
        cls = _SECTIONS.get(section)
        if cls is None:
            known = ", ".join(f"[{name}]" for name in _SECTIONS)
            raise ConfigError(source, f"[{section}]", f"unknown section; the sections are {known}")
        if not isinstance(body, dict):
            raise ConfigError(source, section, f"expected a [{section}] table")
        annotations = {f.name: f.type for f in fields(cls)}
        values = {}
        for key, value in body.items():
            if key not in annotations:
                known = ", ".join(annotations)
                raise ConfigError(
                    source, f"[{section}] {key}", f"unknown key; [{section}] takes {known}"
                )
            values[key] = _convert(source, section, key, value, annotations[key], base)
        sections[section] = cls(**values)
    config = NodeConfig(**sections)
    if config.link.url is not None and config.link.key_file is None:
        raise ConfigError(
            source,
            "[link] key_file",
            "missing: a node with a link accepts only authenticated TCs; give the AES-256 key "
            "file (mode 0600) shared with the ground",
        )
    if (config.orbit.tle_line1 is None) != (config.orbit.tle_line2 is None):
        raise ConfigError(source, "[orbit]", "give both tle_line1 and tle_line2, or neither")
    if config.power.forecast_period_s >= config.power.forecast_horizon_s:
        raise ConfigError(
            source,
            "[power] forecast_period_s",
            f"{config.power.forecast_period_s:g} s is not shorter than forecast_horizon_s "
            f"({config.power.forecast_horizon_s:g} s): the forecast would run out before the next",
        )
    if config.payload.busy_power_w < config.payload.idle_power_w:
        raise ConfigError(
            source, "[payload] busy_power_w", "below idle_power_w: a busy payload draws more"
        )
    return config


def load(path: Path | str | None) -> NodeConfig:
    """The configuration in file `path`, or the embedded defaults when `path` is None."""
    if path is None:
        return NodeConfig()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(str(path), "", f"cannot read it: {error}") from None
    return parse(text, source=str(path), base=path.parent)
