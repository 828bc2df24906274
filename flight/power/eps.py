"""The electrical power system as the node sees it: one reading type, one driver interface.

A driver (`SimulatedEps`, `flight.power.sysfs.SysfsEps`, a board's EPS over I2C) turns whatever the
hardware reports into an `EpsReading` in SI units. Battery current is positive while charging.
"""

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class EpsError(Exception):
    """The EPS could not be read (or written): the message says which path or source and why."""


@dataclass(frozen=True, slots=True)
class EpsReading:
    """One sample of the power system, in SI units.

    `load_power_w` is everything the bus delivers (platform and payload); `payload_power_w` is the
    payload's share where a sensor measures it. `soc` (0..1) is the EPS's own estimate where it
    has one: the node uses it only to initialise its coulomb counter.
    """

    battery_voltage_v: float
    battery_current_a: float  # + = charging
    solar_power_w: float
    load_power_w: float
    payload_power_w: float | None = None
    soc: float | None = None
    temperature_c: float | None = None

    def __post_init__(self) -> None:
        for name in ("battery_voltage_v", "battery_current_a", "solar_power_w", "load_power_w"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"EPS reading {name}={getattr(self, name)} is not a finite number")
        if self.battery_voltage_v < 0.0:
            raise ValueError(f"EPS reading battery_voltage_v={self.battery_voltage_v} is negative")
        if self.soc is not None and not 0.0 <= self.soc <= 1.0:
            raise ValueError(f"EPS reading soc={self.soc} is not in 0..1")
        for name in ("payload_power_w", "temperature_c"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"EPS reading {name}={value} is not a finite number")

    @property
    def battery_power_w(self) -> float:
        """Power into the battery at its terminals (+ = charging)."""
        return self.battery_voltage_v * self.battery_current_a


@runtime_checkable
class Eps(Protocol):
    """A power-system driver. `read` raises EpsError (never anything else) when it cannot read."""

    name: str

    def read(self) -> EpsReading: ...


class SimulatedEps:
    """An EPS whose readings come from a simulation: a callable, or readings a bench feeds in.

    With `source`, every `read` calls it (an in-process environment, e.g. hil.env). Without it,
    `read` returns the last reading given to `feed` (a bench sending readings over the link);
    with `max_age_s`, a reading older than that (on the loop's clock) is refused as stale, so a
    bench that stops feeding looks like an EPS that stopped answering.
    """

    def __init__(
        self,
        source: Callable[[], EpsReading] | None = None,
        *,
        max_age_s: float | None = None,
        name: str = "simulated",
    ) -> None:
        self.name = name
        self._source = source
        self.max_age_s = max_age_s
        self._last: EpsReading | None = None
        self._fed_at_s = 0.0

    @property
    def fed(self) -> bool:
        """Readings come from `feed` (a bench), not from a source of its own."""
        return self._source is None

    def feed(self, reading: EpsReading) -> None:
        """Make `reading` the one `read` returns (ignored while a source is set)."""
        if not isinstance(reading, EpsReading):
            raise TypeError(f"SimulatedEps.feed takes an EpsReading, not {type(reading).__name__}")
        self._last = reading
        if self.max_age_s is not None:
            self._fed_at_s = asyncio.get_running_loop().time()

    def read(self) -> EpsReading:
        if self._source is not None:
            try:
                reading = self._source()
            except EpsError:
                raise
            except Exception as exc:  # the driver contract: only EpsError leaves read()
                raise EpsError(f"{self.name}: the simulated source failed: {exc}") from exc
            if not isinstance(reading, EpsReading):
                raise EpsError(
                    f"{self.name}: the simulated source returned {type(reading).__name__}, "
                    "not an EpsReading"
                )
            return reading
        if self._last is None:
            raise EpsError(f"{self.name}: no reading yet (nothing has been fed to the EPS)")
        if self.max_age_s is not None:
            age_s = asyncio.get_running_loop().time() - self._fed_at_s
            if age_s > self.max_age_s:
                raise EpsError(f"{self.name}: the last reading fed is {age_s:.0f} s old")
        return self._last
