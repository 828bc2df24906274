"""bench.toml: which target is on the bench, how to reach and power it, and what it can do.

    [target]
    spec = "serial:/dev/ttyUSB0@115200"   # or "mqtt://bench-pi.local:1883/sat1", "pty", "sil"
    key_file = "keys/sa1.key"             # the node's SDLS key (mode 0600), as on the board
    node_config = "node.toml"             # a copy of the board's node.toml: the dictionary
    # dictionary = "dictionary.json"      # ... or the dictionary itself (`penumbra dict export`)
    ground_state_dir = "ground-state"     # the station's IV and sequence counters: keep it
    link_timeout_s = 60.0                 # how long the bench waits for the line and telemetry
    # simulated_eps = true                # default: the node_config's [power] eps = "simulated"
    # capabilities = ["line_faults"]      # overrides what the sections here imply

    [power]
    driver = "command"                    # "none" (default), "command" or "manual"
    cut = "uhubctl -l 1-1 -p 2 -a off"
    restore = "uhubctl -l 1-1 -p 2 -a on"
    timeout_s = 30.0

Relative paths are relative to the file. Errors name the file and key: `bench.toml: [power]
cut: ...`, as node.toml's do.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CAPABILITIES = {
    "power_cut": "cut and restore the target's power",
    "restart": "restart the node on its own state",
    "simulated_eps": "read its EPS from the bench's simulated sensor data",
    "line_faults": "have faults and outages injected on its line",
}
"""What a test may need of a target (`@pytest.mark.needs(...)`), and what each means."""

POWER_DRIVERS = ("none", "command", "manual")
DEFAULT_LINK_TIMEOUT_S = 60.0


class BenchConfigError(Exception):
    """A bench file or target spec that cannot work; the message says where and what to do."""


@dataclass(frozen=True, slots=True)
class PowerSection:
    driver: str = "none"
    cut: str = ""
    restore: str = ""
    timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """A bench file, read; `source` is its path (or `<none>` for the defaults)."""

    source: str = "<none>"
    spec: str | None = None
    key_file: Path | None = None
    node_config: Path | None = None
    dictionary: Path | None = None
    ground_state_dir: Path | None = None
    link_timeout_s: float = DEFAULT_LINK_TIMEOUT_S
    simulated_eps: bool | None = None
    capabilities: frozenset[str] | None = None
    power: PowerSection = PowerSection()

    def error(self, key: str, problem: str) -> BenchConfigError:
        return BenchConfigError(f"{self.source}: {key}: {problem}")


_TARGET_KEYS = {
    "spec": str,
    "key_file": Path,
    "node_config": Path,
    "dictionary": Path,
    "ground_state_dir": Path,
    "link_timeout_s": float,
    "simulated_eps": bool,
    "capabilities": list,
}
_POWER_KEYS = {"driver": str, "cut": str, "restore": str, "timeout_s": float}


def _value(source: str, where: str, value: Any, kind: type, base: Path) -> Any:
    def wrong(expected: str) -> BenchConfigError:
        return BenchConfigError(
            f"{source}: {where}: expected {expected}, got {type(value).__name__} {value!r}"
        )

    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        if not (math.isfinite(value) and value > 0):
            raise BenchConfigError(f"{source}: {where}: {value!r} must be a number of seconds > 0")
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise wrong("a list of strings")
        unknown = sorted(set(value) - set(CAPABILITIES))
        if unknown:
            raise BenchConfigError(
                f"{source}: {where}: unknown capability {unknown[0]!r}; the capabilities are "
                + ", ".join(CAPABILITIES)
            )
        return frozenset(value)
    if not isinstance(value, str):
        raise wrong("a string")
    if kind is Path:
        if not value:
            raise BenchConfigError(f"{source}: {where}: an empty path")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    return value


def parse(text: str, *, source: str = "<text>", base: Path | None = None) -> BenchConfig:
    """A bench configuration from TOML text; BenchConfigError naming the key for anything wrong."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise BenchConfigError(f"{source}: not valid TOML: {error}") from None
    base = Path(".") if base is None else base
    sections = {"target": _TARGET_KEYS, "power": _POWER_KEYS}
    values: dict[str, dict[str, Any]] = {"target": {}, "power": {}}
    for section, body in document.items():
        keys = sections.get(section)
        if keys is None:
            raise BenchConfigError(
                f"{source}: [{section}]: unknown section; the sections are [target], [power]"
            )
        if not isinstance(body, dict):
            raise BenchConfigError(f"{source}: {section}: expected a [{section}] table")
        for key, value in body.items():
            if key not in keys:
                raise BenchConfigError(
                    f"{source}: [{section}] {key}: unknown key; [{section}] takes "
                    + ", ".join(keys)
                )
            values[section][key] = _value(source, f"[{section}] {key}", value, keys[key], base)
    power = PowerSection(**values["power"])
    if power.driver not in POWER_DRIVERS:
        raise BenchConfigError(
            f"{source}: [power] driver: {power.driver!r}: choose one of {', '.join(POWER_DRIVERS)}"
        )
    if power.driver == "command" and not (power.cut.strip() and power.restore.strip()):
        raise BenchConfigError(
            f"{source}: [power]: the command driver needs both `cut` and `restore` commands"
        )
    config = BenchConfig(source=source, power=power, **values["target"])
    if config.node_config is not None and config.dictionary is not None:
        raise config.error(
            "[target] dictionary", "give node_config or dictionary, not both: they could disagree"
        )
    return config


def load(path: Path | str) -> BenchConfig:
    """The bench file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchConfigError(f"{path}: no such bench file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BenchConfigError(f"{path}: cannot read it: {error}") from None
    return parse(text, source=str(path), base=path.parent)
