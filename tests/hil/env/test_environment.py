"""The satellite environment along a real orbit: Basilisk's power demo shape, totals, readings."""

import math

import numpy as np
import pytest

from flight.orbit import Forecast, Orbit
from hil.env import Battery, PowerSystem, SatelliteEnvironment, SolarArray
from hil.env.power import JOULES_PER_WH

EPOCH_UNIX_S = 1_700_000_000.0  # 2023-11-14
# Basilisk's examples/scenarioPowerDemo.py: a 400 km orbit, a 0.2 m x 0.3 m panel at 20%
# efficiency (16.5 W peak at Basilisk's 1372.5 W/m^2; 16.33 W at 1361 W/m^2), a constant 3 W
# sink and a 10 Wh battery.
DEMO_AREA_M2 = 0.2 * 0.3
DEMO_EFFICIENCY = 0.20
DEMO_LOAD_W = 3.0
DEMO_CAPACITY_WH = 10.0


def demo_environment(
    *, soc: float = 0.3, attitude: str = "sun_pointing", **kwargs: object
) -> SatelliteEnvironment:
    orbit = Orbit.with_beta(400e3, 51.6, 0.0, EPOCH_UNIX_S)
    power = PowerSystem(
        SolarArray(DEMO_AREA_M2, DEMO_EFFICIENCY),
        Battery.from_wh(DEMO_CAPACITY_WH, soc),
        bus_load_w=DEMO_LOAD_W,
    )
    return SatelliteEnvironment(
        orbit,
        power,
        attitude=attitude,
        start_unix_s=EPOCH_UNIX_S,
        **kwargs,  # type: ignore[arg-type]
    )


def test_basilisk_power_demo_shape_over_three_orbits() -> None:
    env = demo_environment(soc=0.3)
    peak_w = env.power.solar.peak_power_w
    assert peak_w == pytest.approx(1361.0 * 0.06 * 0.20)  # 16.33 W
    capacity_j = DEMO_CAPACITY_WH * JOULES_PER_WH
    samples = []
    env.observers.append(lambda t, state: samples.append((t, state)))
    forecast = Forecast.compute(env.orbit, EPOCH_UNIX_S, 3 * env.orbit.period_s)
    eclipses = forecast.of_kind("eclipse")
    assert len(eclipses) >= 2
    charge_checks = 0

    for interval in forecast.intervals:
        env.advance(interval.start_unix_s)
        start_j = env.power.battery.energy_j
        charge_w = (peak_w - DEMO_LOAD_W) * 0.95
        if interval.kind == "sunlit" and capacity_j - start_j > charge_w * 700.0:
            # Away from the penumbra, before the battery fills: it charges at (16.33 - 3) W x 0.95.
            env.advance(interval.start_unix_s + 60.0)
            before_j = env.power.battery.energy_j
            env.advance(interval.start_unix_s + 660.0)
            gained_j = env.power.battery.energy_j - before_j
            assert gained_j == pytest.approx(charge_w * 600.0, rel=1e-3)
            charge_checks += 1
        env.advance(interval.end_unix_s)
        end_j = env.power.battery.energy_j
        if interval.end_unix_s >= forecast.end_unix_s:
            continue  # cut by the horizon
        if interval.kind == "eclipse":
            # Stored energy falls by the load over the eclipse, through discharge efficiency
            # (the half of each penumbra inside the interval gives a little back).
            expected_j = DEMO_LOAD_W * interval.duration_s / 0.95
            assert start_j - end_j == pytest.approx(expected_j, rel=0.01)
        else:
            assert end_j > start_j

    assert charge_checks >= 1
    states = [state for _, state in samples]
    umbra = [s for s in states if s.illumination == 0.0]
    full_sun = [s for s in states if s.illumination == 1.0]
    assert len(umbra) > 100 and len(full_sun) > 100
    assert all(s.solar_power_w == 0.0 for s in umbra)
    assert max(s.solar_power_w for s in states) == pytest.approx(peak_w, rel=1e-12)
    assert all(s.solar_power_w == pytest.approx(peak_w, rel=1e-12) for s in full_sun)
    assert all(0.0 <= s.energy_j <= capacity_j for s in states)
    # It filled in the first sunlit pass; afterwards the surplus is thrown away while full.
    assert env.wasted_j > 0.0
    assert max(s.soc for s in states) == 1.0
    assert env.min_soc == pytest.approx(0.3, abs=0.01)


def test_nadir_array_harvests_one_over_pi_of_peak_at_beta_zero() -> None:
    # A zenith-facing panel sees the Sun at cos(angle from the subsolar point) over the day side,
    # and the day side is never in eclipse: the orbit mean is peak x 1/pi.
    env = demo_environment(soc=0.5, attitude="nadir")
    period_s = env.orbit.period_s
    env.advance(EPOCH_UNIX_S + period_s)
    mean_w = env.harvested_j / period_s
    assert mean_w == pytest.approx(env.power.solar.peak_power_w / math.pi, rel=0.02)

    pointing = demo_environment(soc=0.5)
    pointing.advance(EPOCH_UNIX_S + period_s)
    assert pointing.harvested_j > 1.8 * env.harvested_j


def test_energy_balances_over_orbits_with_payload_switching_and_fade() -> None:
    def payload_w() -> float:
        minute = int((env.time_unix_s - EPOCH_UNIX_S) // 60.0)
        if minute < 30:
            return 0.0  # fill the battery first
        return (0.0, 15.0, 40.0)[(minute // 5) % 3]

    env = demo_environment(soc=0.6, payload_power_w=payload_w)
    for minute in range(1, 400):
        env.advance(EPOCH_UNIX_S + 60.0 * minute)
        if minute == 21:
            assert env.power.battery.soc == 1.0
            env.power.battery.fade(0.25)
    totals = env.totals
    assert totals.wasted_j > 0 and totals.shortfall_j > 0 and totals.faded_j > 0
    assert env.min_soc == 0.0
    assert abs(totals.balance_error_j) <= 1e-6 * totals.harvested_j
    assert totals.load_j == pytest.approx(env.load_j)
    assert env.payload_j == pytest.approx(totals.payload_j)


def test_lighting_grid_agrees_with_exact_evaluation() -> None:
    gridded = demo_environment(soc=0.3)
    exact = demo_environment(soc=0.3, lighting_step_s=None)
    for env in (gridded, exact):
        for second in range(7, 2 * 5600, 7):
            env.advance(EPOCH_UNIX_S + second)
    assert gridded.harvested_j == pytest.approx(exact.harvested_j, rel=1e-4)
    assert gridded.power.battery.energy_j == pytest.approx(exact.power.battery.energy_j, rel=1e-4)


class _FixedOrbit:
    """A satellite standing still on the x axis (the ephemeris is faked alongside it)."""

    epoch_unix_s = 0.0

    def positions_m(self, t: np.ndarray) -> np.ndarray:
        return np.tile([7.0e6, 0.0, 0.0], (len(np.atleast_1d(t)), 1))


def dark_environment(**kwargs: object) -> SatelliteEnvironment:
    """10 Wh at half charge, 9.5 W of load through 0.95 discharge efficiency: -10 J/s, no Sun."""
    power = PowerSystem(SolarArray(0.1, 0.3), Battery.from_wh(10.0, 0.5), bus_load_w=9.5)
    return SatelliteEnvironment(
        _FixedOrbit(),
        power,
        sun_position_m=lambda t: np.tile([1.5e11, 0.0, 0.0], (len(np.atleast_1d(t)), 1)),
        illumination=lambda sat, sun: np.zeros(len(sat)),
        **kwargs,  # type: ignore[arg-type]
    )


def test_minimum_soc_and_time_below_floor_are_exact_for_a_linear_discharge() -> None:
    env = dark_environment(soc_floors=(0.3, 0.1))
    env.advance(1000.0)  # crosses 0.3 at 720 s, inside a 10 s sub-step boundary
    env.advance(1003.0)
    assert env.min_soc == pytest.approx(0.5 - 1003.0 * 10.0 / 36_000.0)
    assert env.time_below_s(0.3) == pytest.approx(1003.0 - 720.0)
    assert env.time_below_s(0.1) == 0.0
    with pytest.raises(KeyError, match="not tracked"):
        env.time_below_s(0.2)


def test_payload_power_is_asked_once_per_advance_and_held_constant() -> None:
    calls = []

    def payload_w() -> float:
        calls.append(1)
        return 2.0 * len(calls)

    env = dark_environment(payload_power_w=payload_w, max_step_s=10.0)
    steps = []
    env.observers.append(lambda t, state: steps.append((t, state.payload_power_w)))
    env.advance(100.0)
    env.advance(105.0)
    assert len(calls) == 2
    assert [p for _, p in steps] == [2.0] * 10 + [4.0]
    assert [t for t, _ in steps] == pytest.approx([*range(10, 101, 10), 105.0])
    assert env.payload_j == pytest.approx(2.0 * 100.0 + 4.0 * 5.0)
    assert env.time_unix_s == 105.0


def test_time_runs_forward_only() -> None:
    env = dark_environment()
    env.advance(50.0)
    with pytest.raises(ValueError, match="only runs forward"):
        env.advance(49.0)
    env.advance(50.0)  # a zero-length advance is allowed: it refreshes the payload's draw


def test_unknown_attitude_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="sun_pointing, nadir"):
        dark_environment(attitude="tumbling")


def test_reading_reports_terminal_current_and_what_the_array_delivers() -> None:
    env = demo_environment(soc=0.5)
    env.advance(EPOCH_UNIX_S + 300.0)  # sunlit, charging
    reading = env.reading()
    battery = env.power.battery
    assert reading.soc is None
    assert reading.battery_current_a > 0.0
    assert reading.battery_voltage_v == pytest.approx(battery.voltage_v)
    charge_w = (env.power.solar.peak_power_w - DEMO_LOAD_W) * 1.0
    assert reading.battery_voltage_v * reading.battery_current_a == pytest.approx(charge_w)
    assert reading.solar_power_w == pytest.approx(env.power.solar.peak_power_w)
    assert reading.load_power_w == DEMO_LOAD_W

    full = demo_environment(soc=1.0)
    full.advance(EPOCH_UNIX_S + 300.0)
    reading = full.reading()
    # Full: the battery takes nothing, the array gives only what the load uses.
    assert reading.battery_current_a == 0.0
    assert reading.battery_voltage_v == pytest.approx(8.4)
    assert reading.solar_power_w == pytest.approx(DEMO_LOAD_W)
