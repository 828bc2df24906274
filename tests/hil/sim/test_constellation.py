"""Walker-delta constellations as real TLEs, and constellations read from TLE files."""

import datetime as dt
import math

import numpy as np
import pytest

from flight.orbit import Orbit, positions_of
from hil.sim.constellation import from_tles, plane_indices, walker_delta

EPOCH = dt.datetime(2026, 9, 21, 12, tzinfo=dt.UTC).timestamp()


def _elements(orbit: Orbit) -> dict[str, float]:
    line2 = orbit.tle[1]
    return {
        "inclination": float(line2[8:16]),
        "raan": float(line2[17:25]),
        "mean_anomaly": float(line2[43:51]),
        "mean_motion": float(line2[52:63]),
    }


def _angle_difference_deg(a: float, b: float) -> float:
    """a - b wrapped into [0, 360)."""
    return (a - b) % 360.0


def _argument_of_latitude_deg(orbit: Orbit, position_m: np.ndarray) -> float:
    """The satellite's angle from its ascending node along the orbit, from its position."""
    raan = math.radians(orbit.raan_deg())
    node = np.array([math.cos(raan), math.sin(raan), 0.0])
    along = np.cross(orbit.normal(orbit.epoch_unix_s), node)  # towards 90 deg from the node
    return math.degrees(math.atan2(position_m @ along, position_m @ node)) % 360.0


@pytest.mark.parametrize(("total", "planes", "phasing"), [(24, 3, 1), (12, 2, 1)])
def test_walker_elements_follow_the_pattern(total: int, planes: int, phasing: int) -> None:
    orbits = walker_delta(total, planes, phasing, 550e3, 53.0, EPOCH)
    per_plane = total // planes
    assert len(orbits) == total
    assert [orbit.norad_id for orbit in orbits] == list(range(1, total + 1))
    elements = [_elements(orbit) for orbit in orbits]
    assert {e["inclination"] for e in elements} == {53.0}
    assert len({e["mean_motion"] for e in elements}) == 1
    for index, e in enumerate(elements):
        plane, slot = divmod(index, per_plane)
        assert e["raan"] == pytest.approx(plane * 360.0 / planes, abs=1e-4)
        expected = (360.0 * slot / per_plane + 360.0 * phasing * plane / total) % 360.0
        assert e["mean_anomaly"] == pytest.approx(expected, abs=1e-4)


def test_walker_24_3_1_spacing_in_space() -> None:
    # In plane: 45 deg apart; between planes: each plane 15 deg (360 f / t) further along. SGP4's
    # short-period J2 terms move a satellite up to ~0.1 deg from its mean argument of latitude.
    orbits = walker_delta(24, 3, 1, 550e3, 53.0, EPOCH)
    positions = positions_of(orbits, EPOCH)
    latitude = [_argument_of_latitude_deg(o, p) for o, p in zip(orbits, positions, strict=True)]
    for plane in range(3):
        for slot in range(8):
            index = plane * 8 + slot
            following = plane * 8 + (slot + 1) % 8
            step = _angle_difference_deg(latitude[following], latitude[index])
            assert step == pytest.approx(45.0, abs=0.2)
        offset = _angle_difference_deg(latitude[plane * 8], latitude[0])
        assert offset == pytest.approx(15.0 * plane, abs=0.2)


def test_walker_keeps_its_spacing_for_a_day() -> None:
    # One shared mean motion: no satellite drifts along its plane relative to the others.
    orbits = walker_delta(12, 2, 1, 550e3, 53.0, EPOCH)
    start = positions_of(orbits, EPOCH)
    later = positions_of(orbits, EPOCH + 86_400.0)

    def gaps(positions: np.ndarray) -> list[float]:
        cosines = [
            positions[i]
            @ positions[i + 1]
            / (np.linalg.norm(positions[i]) * np.linalg.norm(positions[i + 1]))
            for i in range(5)
        ]
        return [math.degrees(math.acos(c)) for c in cosines]

    assert gaps(later) == pytest.approx(gaps(start), abs=0.05)
    assert gaps(start) == pytest.approx([60.0] * 5, abs=0.2)


def test_star_pattern_spreads_nodes_over_half_a_circle() -> None:
    orbits = walker_delta(6, 3, 0, 780e3, 86.4, EPOCH, raan_spread_deg=180.0)
    assert [_elements(o)["raan"] for o in orbits[::2]] == pytest.approx([0.0, 60.0, 120.0])


def test_walker_altitude_is_the_mean_radius() -> None:
    orbit = walker_delta(4, 2, 1, 550e3, 53.0, EPOCH)[3]
    assert orbit.mean_radius_m() - 6_378_137.0 == pytest.approx(550e3, abs=5.0)


def test_plane_indices() -> None:
    assert plane_indices(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="equal planes"):
        plane_indices(7, 3)


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ((25, 3, 1), "multiple of planes"),
        ((24, 3, 3), r"phasing must be 0\.\.2"),
        ((24, 3, -1), r"phasing must be 0\.\.2"),
        ((0, 1, 0), "at least 1 satellite"),
        ((24, 0, 0), "planes must be at least 1"),
        ((24.0, 3, 1), "total must be a whole number"),
        ((True, 1, 0), "total must be a whole number"),
    ],
)
def test_walker_rejects_patterns_that_do_not_exist(
    arguments: tuple[object, object, object], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        walker_delta(*arguments, 550e3, 53.0, EPOCH)  # type: ignore[arg-type]


def test_walker_rejects_bad_orbits_and_ids_with_words() -> None:
    with pytest.raises(ValueError, match="altitude"):
        walker_delta(4, 2, 0, 50.0, 53.0, EPOCH)
    with pytest.raises(ValueError, match="inclination"):
        walker_delta(4, 2, 0, 550e3, 200.0, EPOCH)
    with pytest.raises(ValueError, match="raan_spread_deg"):
        walker_delta(4, 2, 0, 550e3, 53.0, EPOCH, raan_spread_deg=0.0)
    with pytest.raises(ValueError, match="do not fit"):
        walker_delta(4, 2, 0, 550e3, 53.0, EPOCH, first_norad_id=99_998)
    with pytest.raises(ValueError, match="not a time"):
        walker_delta(4, 2, 0, 550e3, 53.0, math.nan)


def test_tles_round_trip_with_and_without_names() -> None:
    orbits = walker_delta(4, 2, 1, 550e3, 53.0, EPOCH)
    bare = "\n".join(line for orbit in orbits for line in orbit.tle)
    named = "\n\n".join(f"0 SAT-{n}\n{o.tle[0]}\n{o.tle[1]}" for n, o in enumerate(orbits))
    for text in (bare, named, named.splitlines()):
        read = from_tles(text)
        assert [o.tle for o in read] == [o.tle for o in orbits]
    # A name without the "0 " prefix, as CelesTrak writes them.
    assert from_tles(["ISS (ZARYA)", *orbits[0].tle])[0].tle == orbits[0].tle


def test_tle_files_with_problems_name_the_line() -> None:
    line1, line2 = walker_delta(1, 1, 0, 550e3, 53.0, EPOCH)[0].tle
    with pytest.raises(ValueError, match="line 1: a line 1 with no line 2"):
        from_tles([line1])
    with pytest.raises(ValueError, match="line 3: a line 2 with no line 1"):
        from_tles([line1, line2, line2])
    with pytest.raises(ValueError, match="line 1: 'NAME' is neither"):
        from_tles(["NAME", "OTHER NAME", line1, line2])
    corrupted = line2[:68] + str((int(line2[68]) + 1) % 10)
    with pytest.raises(ValueError, match=r"TLE lines 2-3: .*checksum"):
        from_tles(["", line1, corrupted])
    with pytest.raises(ValueError, match="no TLEs"):
        from_tles("\n\n")
