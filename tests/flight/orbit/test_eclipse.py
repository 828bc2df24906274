"""Conical eclipse model, and the issue's check against the analytic eclipse of a circular orbit."""

import datetime as dt
import itertools
import math

import numpy as np
import pytest

from flight.orbit import (
    EARTH_RADIUS_M,
    SUN_RADIUS_M,
    Forecast,
    Orbit,
    illumination,
    sun_position_m,
)
from flight.orbit.sun import ASTRONOMICAL_UNIT_M

EPOCH = dt.datetime(2025, 3, 1, 6, 30, tzinfo=dt.UTC).timestamp()
ALTITUDE_M = 550e3
SUN = np.array([ASTRONOMICAL_UNIT_M, 0.0, 0.0])


def analytic_eclipse_s(altitude_m: float, beta_deg: float, period_s: float) -> float:
    """Eclipse of a circular orbit in a cylindrical shadow: cos(half-angle) =
    sqrt(h^2 + 2 R h) / ((R + h) cos beta)."""
    h, r = altitude_m, EARTH_RADIUS_M
    cosine = math.sqrt(h * h + 2 * r * h) / ((r + h) * math.cos(math.radians(beta_deg)))
    if cosine >= 1.0:
        return 0.0
    return 2.0 * math.acos(cosine) / (2.0 * math.pi) * period_s


def eclipses(beta_deg: float, horizon_s: float = 12_000.0) -> list[float]:
    orbit = Orbit.with_beta(ALTITUDE_M, 97.6, beta_deg, EPOCH)
    forecast = Forecast.compute(orbit, EPOCH, horizon_s)
    return [
        interval.duration_s
        for interval in forecast.of_kind("eclipse")
        # Whole eclipses only: not cut by the horizon.
        if interval.start_unix_s > EPOCH and interval.end_unix_s < EPOCH + horizon_s
    ]


def test_full_sun_umbra_and_penumbra_by_geometry() -> None:
    r = EARTH_RADIUS_M + ALTITUDE_M
    assert illumination(np.array([r, 0.0, 0.0]), SUN) == 1.0  # between Earth and Sun
    assert illumination(np.array([-r, 0.0, 0.0]), SUN) == 0.0  # straight behind the Earth
    assert illumination(np.array([0.0, r, 0.0]), SUN) == 1.0  # at the terminator, high above
    # Grazing the shadow's edge: the solar disc half hidden behind the limb.
    edge = np.array([-1000e3, EARTH_RADIUS_M, 0.0])
    assert 0.3 < illumination(edge, SUN) < 0.7


def test_illumination_is_vectorised_and_in_range() -> None:
    angles = np.linspace(0.0, 2.0 * math.pi, 3_600)
    r = EARTH_RADIUS_M + ALTITUDE_M
    sats = np.stack([r * np.cos(angles), r * np.sin(angles), np.zeros_like(angles)], axis=1)
    lit = illumination(sats, SUN)
    assert lit.shape == (3_600,)
    assert np.all((lit >= 0.0) & (lit <= 1.0))
    assert 0.0 in lit and 1.0 in lit
    partial = lit[(lit > 0.0) & (lit < 1.0)]
    assert partial.size > 0


def test_position_inside_the_earth_is_refused() -> None:
    with pytest.raises(ValueError, match="inside the Earth"):
        illumination(np.array([1000.0, 0.0, 0.0]), SUN)


def test_beta_0_eclipse_is_35_6_of_95_7_minutes() -> None:
    orbit = Orbit.with_beta(ALTITUDE_M, 97.6, 0.0, EPOCH)
    expected_s = analytic_eclipse_s(ALTITUDE_M, 0.0, orbit.period_s)
    assert expected_s / 60 == pytest.approx(35.6, abs=0.1)
    assert orbit.period_s / 60 == pytest.approx(95.7, abs=0.2)
    durations = eclipses(0.0)
    assert len(durations) >= 1
    for duration in durations:
        assert abs(duration - expected_s) < 30.0


@pytest.mark.parametrize("beta_deg", [20.0, 45.0, 60.0])
def test_eclipse_matches_the_analytic_value_at_other_betas(beta_deg: float) -> None:
    orbit = Orbit.with_beta(ALTITUDE_M, 97.6, beta_deg, EPOCH)
    expected_s = analytic_eclipse_s(ALTITUDE_M, beta_deg, orbit.period_s)
    for duration in eclipses(beta_deg):
        assert abs(duration - expected_s) < 30.0


def test_eclipse_shortens_as_beta_grows() -> None:
    means = [float(np.mean(eclipses(beta))) for beta in (0.0, 20.0, 40.0, 55.0, 63.0)]
    assert all(a > b for a, b in itertools.pairwise(means))


def test_no_eclipse_for_a_day_beyond_the_critical_beta() -> None:
    critical_deg = math.degrees(math.asin(EARTH_RADIUS_M / (EARTH_RADIUS_M + ALTITUDE_M)))
    assert critical_deg == pytest.approx(67.0, abs=0.2)
    orbit = Orbit.with_beta(ALTITUDE_M, 97.6, 70.0, EPOCH)
    forecast = Forecast.compute(orbit, EPOCH, 86_400.0)
    assert forecast.of_kind("eclipse") == ()
    assert len(forecast.intervals) == 1
    assert forecast.intervals[0].kind == "sunlit"
    assert float(np.min(forecast.sample_illumination)) == 1.0


def test_penumbra_lasts_seconds_and_illumination_is_monotonic_through_it() -> None:
    orbit = Orbit.with_beta(ALTITUDE_M, 97.6, 0.0, EPOCH)
    eclipse = Forecast.compute(orbit, EPOCH, 12_000.0).next("eclipse", EPOCH + 1.0)
    assert eclipse is not None
    # Across a penumbra the Sun-Earth apparent separation changes at the orbital rate, so its
    # duration is the Sun's apparent diameter over the mean motion: about 8.5 s.
    sun_diameter_rad = 2.0 * SUN_RADIUS_M / ASTRONOMICAL_UNIT_M
    expected_s = sun_diameter_rad / (2.0 * math.pi / orbit.period_s)
    for boundary, direction in ((eclipse.start_unix_s, -1), (eclipse.end_unix_s, 1)):
        times = boundary + np.arange(-30.0, 30.0, 0.05)
        lit = illumination(orbit.positions_m(times), sun_position_m(times))
        steps = np.diff(lit)
        assert np.all(direction * steps >= 0.0)
        partial = times[(lit > 0.0) & (lit < 1.0)]
        duration_s = partial[-1] - partial[0]
        assert 7.0 < duration_s < 11.0
        assert duration_s == pytest.approx(expected_s, rel=0.1)
        # The forecast's boundary is the 50% point, inside the penumbra.
        assert partial[0] < boundary < partial[-1]
