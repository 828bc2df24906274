"""TLEs in and out of SGP4: building circular orbits, parsing, refusing bad element sets."""

import datetime as dt
import math
import pickle

import numpy as np
import pytest
from sgp4.api import Satrec

from flight.orbit import (
    EARTH_RADIUS_M,
    Orbit,
    OrbitError,
    beta_angle_deg,
    positions_of,
    tle_checksum,
)

EPOCH = dt.datetime(2025, 3, 1, 6, 30, tzinfo=dt.UTC).timestamp()
ISS = (
    "1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927",
    "2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537",
)
MU_WGS84_M3_S2 = 3.986_004_418e14


def kepler_period_s(altitude_m: float) -> float:
    return 2 * math.pi * math.sqrt((EARTH_RADIUS_M + altitude_m) ** 3 / MU_WGS84_M3_S2)


def test_circular_writes_a_tle_that_sgp4_parses_with_valid_checksums() -> None:
    orbit = Orbit.circular(550e3, 97.6, 123.4, EPOCH, mean_anomaly_deg=45.0, norad_id=4242)
    line1, line2 = orbit.tle
    assert len(line1) == len(line2) == 69
    assert int(line1[68]) == tle_checksum(line1)
    assert int(line2[68]) == tle_checksum(line2)
    satrec = Satrec.twoline2rv(line1, line2)
    assert satrec.error == 0
    assert satrec.satnum == 4242
    assert math.degrees(satrec.inclo) == pytest.approx(97.6, abs=1e-4)
    assert math.degrees(satrec.nodeo) == pytest.approx(123.4, abs=1e-4)
    assert math.degrees(satrec.mo) == pytest.approx(45.0, abs=1e-4)
    assert satrec.ecco == 0.0
    assert satrec.bstar == 0.0
    assert orbit.epoch_unix_s == pytest.approx(EPOCH, abs=1e-3)
    assert Orbit.from_tle(line1, line2).tle == orbit.tle


def test_circular_orbit_stays_at_its_altitude_for_a_day() -> None:
    orbit = Orbit.circular(550e3, 97.6, 10.0, EPOCH)
    times = EPOCH + np.arange(0.0, 86_400.0, 20.0)
    radius_m = np.linalg.norm(orbit.positions_m(times), axis=1)
    assert np.all(np.abs(radius_m - (EARTH_RADIUS_M + 550e3)) < 10e3)
    # The mean is calibrated against SGP4 itself, so it is far tighter than the swing.
    assert orbit.mean_radius_m() == pytest.approx(EARTH_RADIUS_M + 550e3, abs=5.0)
    assert orbit.mean_radius_m(EPOCH + 86_400.0) == pytest.approx(EARTH_RADIUS_M + 550e3, abs=500.0)


def test_period_matches_kepler_within_0_2_minutes() -> None:
    orbit = Orbit.circular(550e3, 97.6, 0.0, EPOCH)
    assert abs(orbit.period_s - kepler_period_s(550e3)) < 0.2 * 60
    assert orbit.period_s / 60 == pytest.approx(95.7, abs=0.1)


def test_sun_synchronous_inclination_drifts_the_node_a_degree_a_day() -> None:
    # 97.6 deg at 550 km is sun-synchronous: J2 turns the node 360 deg per year eastwards.
    orbit = Orbit.circular(550e3, 97.6, 0.0, EPOCH)
    assert orbit.raan_deg(EPOCH + 86_400.0) == pytest.approx(360.0 / 365.2422, abs=0.02)


def test_mean_anomaly_is_the_argument_of_latitude_at_epoch() -> None:
    at_node = Orbit.circular(550e3, 51.6, 0.0, EPOCH, mean_anomaly_deg=0.0).position_m(EPOCH)
    assert abs(at_node[2]) < 20e3  # on the equator, crossing northwards
    quarter = Orbit.circular(550e3, 51.6, 0.0, EPOCH, mean_anomaly_deg=90.0).position_m(EPOCH)
    assert math.degrees(math.asin(quarter[2] / np.linalg.norm(quarter))) == pytest.approx(
        51.6, abs=0.5
    )


def test_a_real_tle_propagates_like_sgp4_does() -> None:
    orbit = Orbit.from_tle(*ISS)
    satrec = Satrec.twoline2rv(*ISS)
    error, position_km, _ = satrec.sgp4(satrec.jdsatepoch, satrec.jdsatepochF + 0.25)
    assert error == 0
    t = orbit.epoch_unix_s + 0.25 * 86_400.0
    assert np.allclose(orbit.position_m(t), np.array(position_km) * 1000.0, atol=1e-3)
    assert orbit.norad_id == 25544
    assert dt.datetime.fromtimestamp(orbit.epoch_unix_s, tz=dt.UTC).strftime("%Y-%j") == "2008-264"


def test_positions_of_many_orbits_match_one_by_one() -> None:
    orbits = [Orbit.circular(550e3, 53.0, raan, EPOCH) for raan in range(0, 360, 45)]
    t = EPOCH + 1_234.5
    expected = np.array([orbit.position_m(t) for orbit in orbits])
    assert np.allclose(positions_of(orbits, t), expected, atol=1e-6)
    assert positions_of([], t).shape == (0, 3)


@pytest.mark.parametrize("beta_deg", [0.0, 30.0, 70.0, -45.0])
def test_with_beta_solves_the_node_for_the_asked_beta(beta_deg: float) -> None:
    orbit = Orbit.with_beta(550e3, 97.6, beta_deg, EPOCH)
    assert beta_angle_deg(orbit, EPOCH) == pytest.approx(beta_deg, abs=0.01)


def test_beta_from_mean_plane_agrees_with_instantaneous_angular_momentum() -> None:
    orbit = Orbit.with_beta(550e3, 97.6, 30.0, EPOCH)
    times = EPOCH + np.linspace(0.0, orbit.period_s, 200, endpoint=False)
    position, velocity = orbit.state(times)
    momentum = np.cross(position, velocity).mean(axis=0)
    normal = orbit.normal(EPOCH)
    angle = math.degrees(math.acos(np.dot(momentum, normal) / np.linalg.norm(momentum)))
    assert angle < 0.05


def test_unreachable_beta_is_refused_with_the_reachable_range() -> None:
    with pytest.raises(OrbitError, match=r"unreachable.*possible"):
        Orbit.with_beta(550e3, 10.0, 70.0, EPOCH)


def corrupt(line: str, column: int, char: str) -> str:
    return line[: column - 1] + char + line[column:]


def test_corrupted_checksum_is_refused_naming_the_line() -> None:
    line1, line2 = Orbit.circular(550e3, 97.6, 0.0, EPOCH).tle
    bad = corrupt(line2, 69, str((int(line2[68]) + 1) % 10))
    with pytest.raises(OrbitError, match="line 2 checksum"):
        Orbit.from_tle(line1, bad)
    # A changed digit with the old checksum is caught too.
    changed = corrupt(line1, 22, str((int(line1[21]) + 3) % 10))
    with pytest.raises(OrbitError, match="line 1 checksum"):
        Orbit.from_tle(changed, line2)


@pytest.mark.parametrize(
    ("line1", "line2", "words"),
    [
        ("garbage", "more garbage", "line 1 has 7 characters"),
        (ISS[0], ISS[1][:68], "line 2 has 68 characters"),
        (ISS[1], ISS[0], "must start with '1 '"),
        (ISS[0], ISS[1].replace("25544", "25545", 1), "line 2 checksum"),
    ],
)
def test_malformed_tle_is_refused_with_words(line1: str, line2: str, words: str) -> None:
    with pytest.raises(OrbitError, match=words):
        Orbit.from_tle(line1, line2)


def with_checksum(line: str) -> str:
    return line[:68] + str(tle_checksum(line))


def test_field_errors_name_the_field() -> None:
    other_satellite = with_checksum(ISS[1].replace("25544", "25545", 1))
    with pytest.raises(OrbitError, match="different satellites"):
        Orbit.from_tle(ISS[0], other_satellite)
    letters_in_inclination = with_checksum(corrupt(ISS[1], 10, "x"))
    with pytest.raises(OrbitError, match="inclination"):
        Orbit.from_tle(ISS[0], letters_in_inclination)
    negative_motion = with_checksum(corrupt(ISS[1], 53, "-"))
    with pytest.raises(OrbitError, match="mean motion"):
        Orbit.from_tle(ISS[0], negative_motion)


def test_propagating_past_decay_is_an_orbit_error() -> None:
    # The ISS elements with heavy drag decay within weeks; SGP4 then reports an error code.
    draggy = with_checksum(ISS[0][:53] + " 50000-1" + ISS[0][61:])
    orbit = Orbit.from_tle(draggy, ISS[1])
    with pytest.raises(OrbitError, match="cannot propagate satellite 25544"):
        orbit.positions_m(orbit.epoch_unix_s + np.array([0.0, 200.0 * 86_400.0]))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"altitude_m": 550.0}, "altitude 0.6 km"),
        ({"inclination_deg": 200.0}, "inclination"),
        ({"norad_id": 123456}, "catalogue number"),
        ({"epoch_unix_s": dt.datetime(2060, 1, 1, tzinfo=dt.UTC).timestamp()}, "epoch year"),
    ],
)
def test_impossible_circular_orbits_are_refused(kwargs: dict[str, float], words: str) -> None:
    request = {"altitude_m": 550e3, "inclination_deg": 97.6, "raan_deg": 0.0, "epoch_unix_s": EPOCH}
    request.update(kwargs)
    with pytest.raises(OrbitError, match=words):
        Orbit.circular(**request)  # type: ignore[arg-type]


def test_epoch_at_the_last_instant_of_a_year_rolls_into_the_next() -> None:
    new_year = dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()
    orbit = Orbit.circular(550e3, 97.6, 0.0, new_year - 1e-4)
    assert orbit.tle[0][18:32] == "25001.00000000"
    assert orbit.epoch_unix_s == pytest.approx(new_year, abs=1e-3)


def test_an_orbit_pickles_to_the_same_propagation() -> None:
    orbit = Orbit.circular(550e3, 53.0, 10.0, EPOCH, mean_anomaly_deg=20.0)
    again = pickle.loads(pickle.dumps(orbit))
    t = orbit.epoch_unix_s + 3_600.0
    assert again.tle == orbit.tle
    assert (again.position_m(t) == orbit.position_m(t)).all()
