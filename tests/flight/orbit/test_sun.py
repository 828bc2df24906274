"""The solar ephemeris against published values: Vallado's example and the 2024 seasons."""

import datetime as dt
import math

import numpy as np
import pytest

from flight.orbit import ASTRONOMICAL_UNIT_M, sun_position_m


def unix(*fields: int) -> float:
    return dt.datetime(*fields, tzinfo=dt.UTC).timestamp()


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosine = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(min(1.0, cosine)))


def right_ascension_declination_deg(r: np.ndarray) -> tuple[float, float]:
    ra = math.degrees(math.atan2(r[1], r[0])) % 360.0
    return ra, math.degrees(math.asin(r[2] / np.linalg.norm(r)))


def test_matches_vallado_example_5_1() -> None:
    # Vallado, Fundamentals of Astrodynamics and Applications, Example 5-1: 2006-04-02 00:00 UTC,
    # mean equator and equinox of date, AU.
    published = np.array([0.9771945, 0.1924424, 0.0834308])
    computed = sun_position_m(unix(2006, 4, 2)) / ASTRONOMICAL_UNIT_M
    assert angle_deg(computed, published) < 0.01
    assert np.linalg.norm(computed) == pytest.approx(np.linalg.norm(published), abs=2e-5)


@pytest.mark.parametrize(
    ("instant", "ra_deg", "declination_deg"),
    [
        # USNO: the 2024 equinoxes and solstices (UTC, to the minute).
        ((2024, 3, 20, 3, 6), 0.0, 0.0),
        ((2024, 6, 20, 20, 51), 90.0, 23.436),
        ((2024, 9, 22, 12, 44), 180.0, 0.0),
        ((2024, 12, 21, 9, 20), 270.0, -23.436),
    ],
)
def test_seasons_of_2024(instant: tuple[int, ...], ra_deg: float, declination_deg: float) -> None:
    ra, declination = right_ascension_declination_deg(sun_position_m(unix(*instant)))
    assert (ra - ra_deg + 180.0) % 360.0 - 180.0 == pytest.approx(0.0, abs=0.05)
    assert declination == pytest.approx(declination_deg, abs=0.05)


@pytest.mark.parametrize(
    ("instant", "distance_au"),
    [((2024, 1, 3, 0, 39), 0.983_307), ((2024, 7, 5, 5, 6), 1.016_725)],
)
def test_distance_at_perihelion_and_aphelion(instant: tuple[int, ...], distance_au: float) -> None:
    distance = np.linalg.norm(sun_position_m(unix(*instant))) / ASTRONOMICAL_UNIT_M
    assert distance == pytest.approx(distance_au, abs=2e-4)


def test_vectorised_over_times_equals_one_at_a_time() -> None:
    times = unix(2025, 1, 1) + np.array([0.0, 3_600.0, 86_400.0 * 100])
    many = sun_position_m(times)
    assert many.shape == (3, 3)
    for row, t in zip(many, times, strict=True):
        assert np.allclose(row, sun_position_m(t))
