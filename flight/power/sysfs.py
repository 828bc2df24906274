"""Power sensors and CPU frequency limits of a Linux board, read from sysfs.

SysfsEps reads INA3221 power rails (Jetson: the hwmon driver, or the older `ina3221x` IIO
driver), a `power_supply` battery where the board has a gauge, and the thermal zones. It never
writes. CpuFrequency reads the cpufreq limits and, only when built writable, caps the maximum
frequency. Which rail is the payload, the solar input or the whole load is board wiring, so it is
given by rail name (e.g. Jetson Orin Nano: VDD_IN is the board input, VDD_CPU_GPU_CV the compute).
"""

import math
from dataclasses import dataclass
from pathlib import Path

from flight.power.eps import EpsError, EpsReading

SYS = Path("/sys")
_INA3221_DRIVERS = ("ina3221", "ina3221x")


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise EpsError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _read_number(path: Path) -> float:
    text = _read_text(path)
    try:
        value = float(text)
    except ValueError:
        raise EpsError(f"{path}: {text[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise EpsError(f"{path}: {text[:40]!r} is not a finite number")
    return value


def _read_int(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        raise EpsError(f"{path}: {text[:40]!r} is not an integer") from None


@dataclass(frozen=True, slots=True)
class Rail:
    """One measured power rail: bus voltage and current into its loads."""

    name: str
    voltage_v: float
    current_a: float
    source: Path  # the sysfs directory it was read from

    @property
    def power_w(self) -> float:
        return self.voltage_v * self.current_a


@dataclass(frozen=True, slots=True)
class SupplyBattery:
    """A `power_supply` battery's gauge reading (current + = charging)."""

    name: str
    voltage_v: float
    current_a: float
    soc: float | None
    status: str


class SysfsEps:
    """An EPS read from Linux sysfs under `root` (a fake tree in tests). Read-only.

    Battery voltage and current come from the `power_supply` battery (`battery_supply` names it,
    else the first of type Battery), or else from `battery_rail`, a rail that carries all the
    battery's output. Solar power is `solar_rail`'s (0 W without one), the payload's is
    `payload_rail`'s (None without one), the load is `load_rail`'s, or without one the balance
    solar - battery charging power. Temperature is the hottest thermal zone.
    """

    def __init__(
        self,
        root: Path = SYS,
        *,
        solar_rail: str | None = None,
        payload_rail: str | None = None,
        load_rail: str | None = None,
        battery_rail: str | None = None,
        battery_supply: str | None = None,
        name: str = "sysfs",
    ) -> None:
        self.root = Path(root)
        self.solar_rail = solar_rail
        self.payload_rail = payload_rail
        self.load_rail = load_rail
        self.battery_rail = battery_rail
        self.battery_supply = battery_supply
        self.name = name

    # --- discovery -----------------------------------------------------------------------------

    def _hwmon_dirs(self) -> list[Path]:
        found: list[Path] = []
        drivers = self.root / "bus" / "i2c" / "drivers"
        for driver in _INA3221_DRIVERS:
            found.extend(sorted(drivers.glob(f"{driver}/*/hwmon/hwmon*")))
        for hwmon in sorted((self.root / "class" / "hwmon").glob("hwmon*")):
            try:
                name = _read_text(hwmon / "name")
            except EpsError:
                continue  # not every hwmon device has a name; an INA3221 does
            if name in _INA3221_DRIVERS:
                found.append(hwmon)
        return _unique(found)

    def _iio_dirs(self) -> list[Path]:
        found: list[Path] = []
        drivers = self.root / "bus" / "i2c" / "drivers"
        for driver in _INA3221_DRIVERS:
            found.extend(sorted(drivers.glob(f"{driver}/*/iio:device*")))
        return _unique(found)

    def rails(self) -> dict[str, Rail]:
        """Every INA3221 rail found, by name (a label, or `in<N>` for an unlabelled channel)."""
        rails: dict[str, Rail] = {}
        for hwmon in self._hwmon_dirs():
            for voltage_file in sorted(hwmon.glob("in[0-9]*_input")):
                channel = voltage_file.name[2 : -len("_input")]
                current_file = hwmon / f"curr{channel}_input"
                if not channel.isdigit() or not current_file.is_file():
                    continue  # in4..in6 are shunt voltages, with no current of their own
                enable = hwmon / f"in{channel}_enable"
                if enable.is_file() and _read_text(enable) == "0":
                    continue
                label = hwmon / f"in{channel}_label"
                name = _read_text(label) if label.is_file() else f"in{channel}"
                volts = _read_number(voltage_file) / 1000.0
                amps = _read_number(current_file) / 1000.0
                rails.setdefault(name, Rail(name, volts, amps, hwmon))
        for iio in self._iio_dirs():
            for name_file in sorted(iio.glob("rail_name_[0-9]*")):
                channel = name_file.name[len("rail_name_") :]
                voltage_file = iio / f"in_voltage{channel}_input"
                current_file = iio / f"in_current{channel}_input"
                if not (voltage_file.is_file() and current_file.is_file()):
                    continue
                name = _read_text(name_file)
                volts = _read_number(voltage_file) / 1000.0
                amps = _read_number(current_file) / 1000.0
                rails.setdefault(name, Rail(name, volts, amps, iio))
        return rails

    def battery(self) -> SupplyBattery | None:
        """The `power_supply` battery, or None when the board has none."""
        supplies = self.root / "class" / "power_supply"
        if self.battery_supply is not None:
            candidates = [supplies / self.battery_supply]
            if not candidates[0].is_dir():
                raise EpsError(f"{candidates[0]}: no such power supply (battery_supply)")
        else:
            candidates = [
                d
                for d in sorted(supplies.glob("*"))
                if (d / "type").is_file() and _read_text(d / "type") == "Battery"
            ]
        if not candidates:
            return None
        supply = candidates[0]
        volts = _read_number(supply / "voltage_now") / 1e6
        if (supply / "current_now").is_file():
            amps = _read_number(supply / "current_now") / 1e6
        elif (supply / "power_now").is_file() and volts > 0.0:
            amps = _read_number(supply / "power_now") / 1e6 / volts
        else:
            raise EpsError(f"{supply}: neither current_now nor power_now to read")
        status = _read_text(supply / "status") if (supply / "status").is_file() else "Unknown"
        # Drivers disagree on the sign of current_now (the ABI asks for negative while
        # discharging; many report a magnitude), so the status decides where it says.
        if status == "Discharging":
            amps = -abs(amps)
        elif status == "Charging":
            amps = abs(amps)
        soc = None
        if (supply / "capacity").is_file():
            soc = min(1.0, max(0.0, _read_number(supply / "capacity") / 100.0))
        return SupplyBattery(supply.name, volts, amps, soc, status)

    def temperature_c(self) -> float | None:
        """The hottest readable thermal zone, or None when there is none."""
        temps = []
        for zone in sorted((self.root / "class" / "thermal").glob("thermal_zone*")):
            try:
                temps.append(_read_number(zone / "temp") / 1000.0)
            except EpsError:
                continue  # a disabled zone refuses reads (ENODATA); the others still count
        return max(temps) if temps else None

    # --- the reading ---------------------------------------------------------------------------

    def _rail(self, rails: dict[str, Rail], name: str, role: str) -> Rail:
        try:
            return rails[name]
        except KeyError:
            known = ", ".join(sorted(rails)) or "none"
            raise EpsError(
                f"{self.name}: {role} rail {name!r} not found under {self.root} "
                f"(INA3221 rails found: {known})"
            ) from None

    def read(self) -> EpsReading:
        rails = self.rails()
        supply = self.battery()
        if supply is not None:
            volts, amps, soc = supply.voltage_v, supply.current_a, supply.soc
        elif self.battery_rail is not None:
            rail = self._rail(rails, self.battery_rail, "battery")
            # The rail's current flows out of the battery into the loads: discharging.
            volts, amps, soc = rail.voltage_v, -rail.current_a, None
        else:
            known = ", ".join(sorted(rails)) or "none"
            raise EpsError(
                f"{self.name}: no battery under {self.root}: no power_supply of type Battery in "
                f"{self.root / 'class' / 'power_supply'} and no battery_rail given "
                f"(INA3221 rails found: {known})"
            )
        solar_w = self._rail(rails, self.solar_rail, "solar").power_w if self.solar_rail else 0.0
        payload_w = None
        if self.payload_rail is not None:
            payload_w = self._rail(rails, self.payload_rail, "payload").power_w
        if self.load_rail is not None:
            load_w = self._rail(rails, self.load_rail, "load").power_w
        else:
            load_w = max(0.0, solar_w - volts * amps)
        try:
            return EpsReading(
                battery_voltage_v=volts,
                battery_current_a=amps,
                solar_power_w=solar_w,
                load_power_w=load_w,
                payload_power_w=payload_w,
                soc=soc,
                temperature_c=self.temperature_c(),
            )
        except ValueError as exc:
            raise EpsError(f"{self.name}: implausible reading under {self.root}: {exc}") from exc


def _unique(paths: list[Path]) -> list[Path]:
    """Paths in order, without the ones that resolve to a directory already listed."""
    seen: set[Path] = set()
    unique = []
    for path in paths:
        real = path.resolve()
        if real not in seen:
            seen.add(real)
            unique.append(path)
    return unique


class CpuFrequency:
    """The CPU's cpufreq limits; caps the maximum frequency only when built `writable=True`.

    Every CPU's `cpufreq` directory under `root/devices/system/cpu` is one policy (CPUs sharing
    a policy link to the same directory, counted once). A cap is clamped to each policy's own
    hardware limits; `cap(None)` gives each its hardware maximum back.
    """

    def __init__(self, root: Path = SYS, *, writable: bool = False) -> None:
        self.root = Path(root)
        self.writable = writable

    def _policies(self) -> list[Path]:
        cpus = sorted((self.root / "devices" / "system" / "cpu").glob("cpu[0-9]*/cpufreq"))
        return [
            p
            for p in _unique(cpus)
            if (p / "scaling_max_freq").exists() and (p / "cpuinfo_max_freq").is_file()
        ]

    def _require(self) -> list[Path]:
        policies = self._policies()
        if not policies:
            raise EpsError(
                f"no cpufreq under {self.root / 'devices' / 'system' / 'cpu'} "
                "(cpu*/cpufreq/scaling_max_freq): this board does not expose CPU frequency"
            )
        return policies

    @property
    def available(self) -> bool:
        return bool(self._policies())

    @property
    def limits_khz(self) -> tuple[int, int]:
        """(lowest hardware minimum, highest hardware maximum) over all CPUs, in kHz."""
        policies = self._require()
        lows = [
            _read_int(p / "cpuinfo_min_freq") if (p / "cpuinfo_min_freq").is_file() else 0
            for p in policies
        ]
        highs = [_read_int(p / "cpuinfo_max_freq") for p in policies]
        return min(lows), max(highs)

    @property
    def cap_khz(self) -> int:
        """The highest current scaling_max_freq over all CPUs, in kHz."""
        return max(_read_int(p / "scaling_max_freq") for p in self._require())

    def cap(self, khz: int | None) -> int:
        """Cap every CPU at `khz` (None: at its hardware maximum); the highest cap applied."""
        if not self.writable:
            raise EpsError(
                "read-only: CpuFrequency was built with writable=False; build it with "
                "writable=True to cap the CPU frequency"
            )
        if khz is not None and khz <= 0:
            raise EpsError(f"CPU frequency cap {khz} kHz is not > 0")
        applied = []
        for policy in self._require():
            high = _read_int(policy / "cpuinfo_max_freq")
            low_file = policy / "cpuinfo_min_freq"
            low = _read_int(low_file) if low_file.is_file() else 0
            value = high if khz is None else min(high, max(low, int(khz)))
            target = policy / "scaling_max_freq"
            try:
                target.write_text(f"{value}\n")
            except OSError as exc:
                raise EpsError(
                    f"{target}: cannot write ({exc.strerror or exc}); capping the CPU frequency "
                    "needs root or a udev rule giving the node's user write access"
                ) from exc
            applied.append(value)
        return max(applied)
