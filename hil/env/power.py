"""Power physics of a simulated satellite: solar array, battery and loads, in joules and watts.

This is the truth the simulation runs on; the node never sees it directly, only through what a
simulated EPS reports (`hil.env.environment.SatelliteEnvironment.reading`). Energy is accounted
exactly within a step (net power is constant over it), so that over any run

    harvested = stored change + served loads + wasted (battery full) + conversion losses + fade

holds to rounding; the tests check it.
"""

import math
from dataclasses import dataclass

from flight.power.soc import LI_ION_CELL_OCV, check_ocv_curve, ocv_v

SOLAR_CONSTANT_W_M2 = 1361.0
"""Total solar irradiance at 1 AU (Kopp & Lean 2011; IAU 2015 resolution B3 nominal value)."""

JOULES_PER_WH = 3600.0


def _check_fraction(name: str, value: float, *, low_open: bool = False) -> None:
    ok = (0.0 < value <= 1.0) if low_open else (0.0 <= value <= 1.0)
    if not (math.isfinite(value) and ok):
        span = "0 < x <= 1" if low_open else "0..1"
        raise ValueError(f"{name}={value} is not in {span}")


def _check_duration(dt_s: float) -> None:
    if not (math.isfinite(dt_s) and dt_s >= 0.0):
        raise ValueError(f"step dt_s={dt_s} is not a duration >= 0 s")


@dataclass(frozen=True, slots=True)
class SolarArray:
    """A flat array: P = irradiance x illumination x area x efficiency x max(0, cos incidence)."""

    area_m2: float
    efficiency: float
    irradiance_w_m2: float = SOLAR_CONSTANT_W_M2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.area_m2) and self.area_m2 > 0.0):
            raise ValueError(f"solar array area_m2={self.area_m2} is not > 0")
        _check_fraction("solar array efficiency", self.efficiency, low_open=True)
        if not (math.isfinite(self.irradiance_w_m2) and self.irradiance_w_m2 >= 0.0):
            raise ValueError(f"solar array irradiance_w_m2={self.irradiance_w_m2} is not >= 0")

    @property
    def peak_power_w(self) -> float:
        """Output in full sun at normal incidence."""
        return self.irradiance_w_m2 * self.area_m2 * self.efficiency

    def power_w(self, illumination: float, cos_incidence: float) -> float:
        """Electrical output with `illumination` (0..1, eclipse model) and the Sun at this angle."""
        _check_fraction("illumination", illumination)
        # A panel lit from behind produces nothing (and a cosine a hair above 1 from rounding
        # of unit vectors is 1).
        cos_clamped = min(1.0, max(0.0, cos_incidence))
        return self.peak_power_w * illumination * cos_clamped


@dataclass(frozen=True, slots=True)
class BatteryStep:
    """Energy that crossed the battery's terminals in one step, all >= 0.

    accepted_j: taken from the bus into the battery (of which charge_efficiency is stored);
    wasted_j: offered by the bus while full, not taken (surplus solar energy thrown away);
    delivered_j: given to the bus (the store lost delivered / discharge_efficiency);
    shortfall_j: asked by the bus but not there (the battery was empty: the bus browned out);
    loss_j: conversion losses in the battery (heat), on charge and on discharge.
    """

    accepted_j: float = 0.0
    wasted_j: float = 0.0
    delivered_j: float = 0.0
    shortfall_j: float = 0.0
    loss_j: float = 0.0


class Battery:
    """A battery as stored energy in joules, with charge/discharge efficiency and a voltage model.

    Charging stores `accepted x charge_efficiency`; discharging removes
    `delivered / discharge_efficiency`. Stored energy is clamped to 0..capacity: what the bus
    offers beyond a full battery is wasted, what it asks of an empty one is a shortfall.
    The terminal voltage is the pack's open-circuit voltage (`cells_in_series` cells on
    `ocv_curve`) plus I x R (I + = charging), so a heavy load or a nearly empty battery shows as
    under-voltage. The I x R drop only shapes the reading: its energy is inside the efficiencies.
    """

    def __init__(
        self,
        capacity_j: float,
        energy_j: float,
        charge_efficiency: float = 0.95,
        discharge_efficiency: float = 0.95,
        *,
        cells_in_series: int = 2,
        internal_resistance_ohm: float = 0.05,
        ocv_curve: tuple[tuple[float, float], ...] = LI_ION_CELL_OCV,
    ) -> None:
        if not (math.isfinite(capacity_j) and capacity_j > 0.0):
            raise ValueError(f"battery capacity_j={capacity_j} is not > 0")
        if not (math.isfinite(energy_j) and 0.0 <= energy_j <= capacity_j):
            raise ValueError(f"battery energy_j={energy_j} is not in 0..capacity_j={capacity_j}")
        _check_fraction("battery charge_efficiency", charge_efficiency, low_open=True)
        _check_fraction("battery discharge_efficiency", discharge_efficiency, low_open=True)
        if cells_in_series < 1:
            raise ValueError(f"battery cells_in_series={cells_in_series} is not >= 1")
        if not (math.isfinite(internal_resistance_ohm) and internal_resistance_ohm >= 0.0):
            raise ValueError(f"battery internal_resistance_ohm={internal_resistance_ohm} is < 0")
        check_ocv_curve(ocv_curve)
        self.capacity_j = float(capacity_j)
        self.energy_j = float(energy_j)
        self.charge_efficiency = float(charge_efficiency)
        self.discharge_efficiency = float(discharge_efficiency)
        self.cells_in_series = cells_in_series
        self.internal_resistance_ohm = float(internal_resistance_ohm)
        self.ocv_curve = ocv_curve
        self.current_a = 0.0
        self.faded_j = 0.0  # stored energy lost to capacity fade, for the energy balance

    @classmethod
    def from_wh(cls, capacity_wh: float, soc: float = 1.0, **kwargs: object) -> "Battery":
        """A battery of `capacity_wh` watt-hours at state of charge `soc`."""
        _check_fraction("battery soc", soc)
        capacity_j = capacity_wh * JOULES_PER_WH
        return cls(capacity_j, capacity_j * soc, **kwargs)  # type: ignore[arg-type]

    @property
    def soc(self) -> float:
        return self.energy_j / self.capacity_j

    @property
    def open_circuit_voltage_v(self) -> float:
        return self.cells_in_series * ocv_v(self.soc, self.ocv_curve)

    @property
    def voltage_v(self) -> float:
        """Terminal voltage at the current of the last step."""
        return max(0.0, self.open_circuit_voltage_v + self.current_a * self.internal_resistance_ohm)

    def _current_for(self, terminal_power_w: float) -> float:
        """The current I with (OCV + I R) I = P: the terminal power `P` (+ = into the battery)."""
        ocv = self.open_circuit_voltage_v
        r = self.internal_resistance_ohm
        disc = ocv * ocv + 4.0 * r * terminal_power_w
        if disc <= 0.0:
            # The load asks for more than the pack can give through its resistance: it sits at
            # the maximum-power point (half the open-circuit voltage).
            return -ocv / (2.0 * r)
        # 2P / (ocv + sqrt(disc)) is the root of R I^2 + ocv I - P = 0 without cancellation.
        return 2.0 * terminal_power_w / (ocv + math.sqrt(disc))

    def step(self, net_power_w: float, dt_s: float) -> BatteryStep:
        """Apply the bus's net power (+ = surplus to store) for `dt_s` seconds."""
        _check_duration(dt_s)
        if not math.isfinite(net_power_w):
            raise ValueError(f"battery net_power_w={net_power_w} is not a finite number")
        if net_power_w >= 0.0:
            offered_j = net_power_w * dt_s
            room_j = max(0.0, self.capacity_j - self.energy_j)
            stored_j = offered_j * self.charge_efficiency
            accepted_j = offered_j
            if stored_j >= room_j:
                stored_j = room_j
                accepted_j = min(offered_j, room_j / self.charge_efficiency)
                self.energy_j = self.capacity_j
            else:
                self.energy_j += stored_j
            result = BatteryStep(
                accepted_j=accepted_j,
                wasted_j=offered_j - accepted_j,
                loss_j=accepted_j - stored_j,
            )
            full = self.energy_j >= self.capacity_j
            instant_w = 0.0 if full else net_power_w
            terminal_w = accepted_j / dt_s if dt_s > 0.0 else instant_w
        else:
            demand_j = -net_power_w * dt_s
            drawn_j = demand_j / self.discharge_efficiency
            delivered_j = demand_j
            if drawn_j >= self.energy_j:
                drawn_j = self.energy_j
                delivered_j = min(demand_j, drawn_j * self.discharge_efficiency)
                self.energy_j = 0.0
            else:
                self.energy_j -= drawn_j
            result = BatteryStep(
                delivered_j=delivered_j,
                shortfall_j=demand_j - delivered_j,
                loss_j=drawn_j - delivered_j,
            )
            instant_w = net_power_w if self.energy_j > 0.0 else 0.0
            terminal_w = -delivered_j / dt_s if dt_s > 0.0 else instant_w
        self.current_a = self._current_for(terminal_w)
        return result

    def fade(self, fraction: float) -> None:
        """Capacity-fade fault: capacity x (1 - fraction); stored energy beyond it is lost."""
        if not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
            raise ValueError(f"battery fade fraction={fraction} is not in 0 <= x < 1")
        self.capacity_j *= 1.0 - fraction
        if self.energy_j > self.capacity_j:
            self.faded_j += self.energy_j - self.capacity_j
            self.energy_j = self.capacity_j


@dataclass(frozen=True, slots=True)
class PowerState:
    """The power system over one step (powers are the step's means; soc and energy at its end).

    `load_power_w` is all the bus asked for (platform + payload), `payload_power_w` the payload's
    share, `solar_power_w` what the array could give (including `wasted_w`, thrown away because
    the battery was full), `shortfall_w` what the loads asked of an empty battery in vain.
    """

    soc: float
    battery_voltage_v: float
    battery_current_a: float  # + = charging
    solar_power_w: float
    load_power_w: float
    payload_power_w: float
    wasted_w: float
    energy_j: float
    shortfall_w: float = 0.0
    illumination: float = 1.0


@dataclass(frozen=True, slots=True)
class EnergyTotals:
    """Running energy totals of a power system since it was built, in joules.

    The balance `harvested = stored_change + (load - shortfall) + wasted + loss + faded` holds to
    rounding; `balance_error_j` is what is left of it.
    """

    harvested_j: float
    load_j: float  # everything the loads asked for (platform + payload)
    payload_j: float
    wasted_j: float
    loss_j: float
    shortfall_j: float
    faded_j: float
    stored_change_j: float

    @property
    def balance_error_j(self) -> float:
        served_j = self.load_j - self.shortfall_j
        return self.harvested_j - (
            self.stored_change_j + served_j + self.wasted_j + self.loss_j + self.faded_j
        )


class PowerSystem:
    """Array, battery and a constant platform load; the payload's load is given per step."""

    def __init__(self, solar: SolarArray, battery: Battery, bus_load_w: float) -> None:
        if not (math.isfinite(bus_load_w) and bus_load_w >= 0.0):
            raise ValueError(f"power system bus_load_w={bus_load_w} is not >= 0")
        self.solar = solar
        self.battery = battery
        self.bus_load_w = float(bus_load_w)
        self._initial_energy_j = battery.energy_j
        self._initial_faded_j = battery.faded_j
        self._harvested_j = 0.0
        self._load_j = 0.0
        self._payload_j = 0.0
        self._wasted_j = 0.0
        self._loss_j = 0.0
        self._shortfall_j = 0.0

    def step(
        self, dt_s: float, illumination: float, cos_incidence: float, payload_w: float
    ) -> PowerState:
        """Run `dt_s` seconds with these inputs held constant; the state over that step."""
        _check_duration(dt_s)
        if not (math.isfinite(payload_w) and payload_w >= 0.0):
            raise ValueError(f"payload power payload_w={payload_w} is not >= 0 W")
        solar_w = self.solar.power_w(illumination, cos_incidence)
        load_w = self.bus_load_w + payload_w
        result = self.battery.step(solar_w - load_w, dt_s)
        self._harvested_j += solar_w * dt_s
        self._load_j += load_w * dt_s
        self._payload_j += payload_w * dt_s
        self._wasted_j += result.wasted_j
        self._loss_j += result.loss_j
        self._shortfall_j += result.shortfall_j
        if dt_s > 0.0:
            wasted_w = result.wasted_j / dt_s
            shortfall_w = result.shortfall_j / dt_s
        else:
            full = self.battery.energy_j >= self.battery.capacity_j
            empty = self.battery.energy_j <= 0.0
            wasted_w = max(0.0, solar_w - load_w) if full else 0.0
            shortfall_w = max(0.0, load_w - solar_w) if empty else 0.0
        return PowerState(
            soc=self.battery.soc,
            battery_voltage_v=self.battery.voltage_v,
            battery_current_a=self.battery.current_a,
            solar_power_w=solar_w,
            load_power_w=load_w,
            payload_power_w=float(payload_w),
            wasted_w=wasted_w,
            energy_j=self.battery.energy_j,
            shortfall_w=shortfall_w,
            illumination=float(illumination),
        )

    @property
    def totals(self) -> EnergyTotals:
        return EnergyTotals(
            harvested_j=self._harvested_j,
            load_j=self._load_j,
            payload_j=self._payload_j,
            wasted_j=self._wasted_j,
            loss_j=self._loss_j,
            shortfall_j=self._shortfall_j,
            faded_j=self.battery.faded_j - self._initial_faded_j,
            stored_change_j=self.battery.energy_j - self._initial_energy_j,
        )
