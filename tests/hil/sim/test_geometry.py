"""Constellation geometry: ISL line of sight, range and light time, +Grid, latitude cut, ground
contacts and sunlight for many satellites at once, checked against hand geometry and
flight.orbit's single-satellite functions."""

import datetime as dt
import itertools
import math

import numpy as np
import pytest

from flight.orbit import (
    EARTH_RADIUS_M,
    Forecast,
    GroundSite,
    Interval,
    Orbit,
    OrbitError,
    elevation_deg,
    illumination,
    positions_of,
    sun_position_m,
    tle_checksum,
)
from hil.sim.constellation import plane_indices, walker_delta
from hil.sim.geometry import (
    GRAZING_HEIGHT_M,
    SPEED_OF_LIGHT_M_S,
    contact_mask,
    contact_windows,
    elevations_deg,
    grid_pairs,
    illumination_of,
    isl_candidates,
    latitude_deg,
    light_time_s,
    line_of_sight,
    ray_height_m,
)

EPOCH = dt.datetime(2026, 9, 21, 12, tzinfo=dt.UTC).timestamp()
RADIUS_550_M = EARTH_RADIUS_M + 550e3
SITES = (
    GroundSite("svalbard", 78.23, 15.39, altitude_m=500.0),
    GroundSite("punta-arenas", -52.94, -70.85, min_elevation_deg=10.0),
    GroundSite("matera", 40.65, 16.70),
)


def _rotated_z(radius_m: float, angle_deg: float) -> np.ndarray:
    angle = math.radians(angle_deg)
    return np.array([radius_m * math.cos(angle), radius_m * math.sin(angle), 0.0])


# --- line of sight, range, light time -------------------------------------------------------------


def test_satellites_on_opposite_sides_of_the_earth_are_blocked() -> None:
    a = _rotated_z(RADIUS_550_M, 0.0)
    b = _rotated_z(RADIUS_550_M, 180.0)
    assert ray_height_m(a, b) == pytest.approx(-EARTH_RADIUS_M)
    assert not line_of_sight(a, b)
    assert len(isl_candidates(np.stack([a, b]))) == 0


def test_close_satellites_see_each_other() -> None:
    a = _rotated_z(RADIUS_550_M, 0.0)
    b = _rotated_z(RADIUS_550_M, 5.0)
    assert line_of_sight(a, b)
    links = isl_candidates(np.stack([a, b]))
    assert (links.i.tolist(), links.j.tolist()) == ([0], [1])
    assert links.range_m[0] == pytest.approx(2 * RADIUS_550_M * math.sin(math.radians(2.5)))


def test_a_ray_exactly_at_the_grazing_height_is_clear_and_a_millimetre_lower_is_not() -> None:
    # The chord x = R + h from (R + h, -L) to (R + h, L) touches the sphere R + h at (R + h, 0);
    # with these numbers the arithmetic is exact.
    half_length_m = 2_000e3
    for height_m, clear in ((GRAZING_HEIGHT_M, True), (GRAZING_HEIGHT_M - 1e-3, False)):
        x = EARTH_RADIUS_M + height_m
        a, b = np.array([x, -half_length_m, 0.0]), np.array([x, half_length_m, 0.0])
        assert ray_height_m(a, b) == pytest.approx(height_m, abs=1e-6)
        assert bool(line_of_sight(a, b)) is clear
        assert len(isl_candidates(np.stack([a, b]), pairs=[(0, 1)])) == int(clear)
    edge = EARTH_RADIUS_M + GRAZING_HEIGHT_M
    exact = ray_height_m([edge, -half_length_m, 0.0], [edge, half_length_m, 0.0])
    assert exact == GRAZING_HEIGHT_M


def test_all_pairs_search_agrees_at_a_metre_either_side_of_the_grazing_height() -> None:
    # Same satellites, the central angle set so the ray grazes at h +- 1 m.
    for offset_m, clear in ((1.0, True), (-1.0, False)):
        half_angle = math.acos((EARTH_RADIUS_M + GRAZING_HEIGHT_M + offset_m) / RADIUS_550_M)
        a = _rotated_z(RADIUS_550_M, -math.degrees(half_angle))
        b = _rotated_z(RADIUS_550_M, math.degrees(half_angle))
        assert ray_height_m(a, b) == pytest.approx(GRAZING_HEIGHT_M + offset_m, abs=1e-3)
        assert len(isl_candidates(np.stack([a, b]))) == int(clear)


def test_grazing_height_is_a_parameter() -> None:
    a, b = _rotated_z(RADIUS_550_M, -20.0), _rotated_z(RADIUS_550_M, 20.0)
    lowest = float(ray_height_m(a, b))
    assert 80e3 < lowest < 300e3
    assert len(isl_candidates(np.stack([a, b]), grazing_height_m=lowest - 1.0)) == 1
    assert len(isl_candidates(np.stack([a, b]), grazing_height_m=lowest + 1.0)) == 0


def test_delay_is_range_over_the_speed_of_light() -> None:
    orbits = walker_delta(24, 3, 1, 550e3, 53.0, EPOCH)
    positions = positions_of(orbits, EPOCH + 600.0)
    links = isl_candidates(positions)
    assert len(links) > 0
    expected = np.linalg.norm(positions[links.j] - positions[links.i], axis=1)
    assert np.allclose(links.range_m, expected, rtol=0.0, atol=1e-6)
    assert np.array_equal(links.delay_s, links.range_m / SPEED_OF_LIGHT_M_S)
    assert light_time_s(299_792_458.0) == 1.0
    # Two satellites 1,000 km apart: 3.34 ms.
    assert light_time_s(1_000e3) == pytest.approx(3.3356e-3, abs=1e-7)


def test_all_pairs_search_matches_checking_every_pair_one_by_one() -> None:
    orbits = walker_delta(60, 6, 2, 550e3, 53.0, EPOCH)
    positions = positions_of(orbits, EPOCH + 1234.0)
    found = isl_candidates(positions)
    brute = [
        (i, j)
        for i, j in itertools.combinations(range(60), 2)
        if line_of_sight(positions[i], positions[j])
    ]
    assert found.pairs.tolist() == [list(pair) for pair in brute]
    some_blocked = len(brute) < 60 * 59 // 2
    assert some_blocked and len(brute) > 100
    given = isl_candidates(positions, pairs=list(itertools.combinations(range(60), 2)))
    assert np.array_equal(given.pairs, found.pairs)
    assert np.array_equal(given.range_m, found.range_m)


def test_max_range_drops_longer_links() -> None:
    orbits = walker_delta(60, 6, 2, 550e3, 53.0, EPOCH)
    positions = positions_of(orbits, EPOCH)
    everything = isl_candidates(positions)
    short = isl_candidates(positions, max_range_m=2_000e3)
    assert 0 < len(short) < len(everything)
    assert np.all(short.range_m <= 2_000e3)
    kept = set(map(tuple, short.pairs.tolist()))
    assert kept == {
        pair
        for pair, distance in zip(
            map(tuple, everything.pairs.tolist()), everything.range_m, strict=True
        )
        if distance <= 2_000e3
    }


def test_results_are_read_only_values() -> None:
    links = isl_candidates(np.stack([_rotated_z(RADIUS_550_M, 0), _rotated_z(RADIUS_550_M, 3)]))
    with pytest.raises(ValueError, match="read-only"):
        links.range_m[0] = 0.0


def test_bad_isl_arguments_say_what_is_wrong() -> None:
    positions = np.stack([_rotated_z(RADIUS_550_M, 0), _rotated_z(RADIUS_550_M, 3)])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        isl_candidates(positions[:, :2])
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        isl_candidates(positions, pairs=[(0, 2)])
    with pytest.raises(ValueError, match="needs plane_of"):
        isl_candidates(positions, cut_latitude_deg=60.0)
    with pytest.raises(ValueError, match="one plane per satellite"):
        isl_candidates(positions, cut_latitude_deg=60.0, plane_of=[0])


# --- +Grid and the latitude cut -------------------------------------------------------------------


def _neighbours(pairs: np.ndarray, count: int) -> list[set[int]]:
    neighbours: list[set[int]] = [set() for _ in range(count)]
    for i, j in pairs.tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)
    return neighbours


def test_grid_gives_every_satellite_four_neighbours_each_link_once() -> None:
    planes, per_plane = 6, 10
    pairs = grid_pairs(planes, per_plane, phasing=2)
    count = planes * per_plane
    assert pairs.shape == (2 * count, 2)
    assert np.all(pairs[:, 0] < pairs[:, 1])
    assert len({tuple(p) for p in pairs.tolist()}) == len(pairs)
    neighbours = _neighbours(pairs, count)
    assert all(len(n) == 4 for n in neighbours)
    for index in range(count):
        plane, slot = divmod(index, per_plane)
        fore = plane * per_plane + (slot + 1) % per_plane
        aft = plane * per_plane + (slot - 1) % per_plane
        assert {fore, aft} <= neighbours[index]
        # Symmetric: every neighbour lists this satellite back.
        assert all(index in neighbours[other] for other in neighbours[index])


def test_grid_seam_follows_the_walker_phasing() -> None:
    # Cross-plane links join satellites 360 f / t apart along the orbit, the seam included.
    total, planes, phasing = 24, 3, 1
    orbits = walker_delta(total, planes, phasing, 550e3, 53.0, EPOCH)
    anomaly = [float(o.tle[1][43:51]) for o in orbits]
    plane = plane_indices(total, planes)
    cross = 0
    for i, j in grid_pairs(planes, total // planes, phasing=phasing).tolist():
        if plane[i] == plane[j]:
            continue
        cross += 1
        earlier, later = (i, j) if (plane[i] + 1) % planes == plane[j] else (j, i)
        assert (plane[earlier] + 1) % planes == plane[later]
        step = (anomaly[later] - anomaly[earlier]) % 360.0
        assert step == pytest.approx(360.0 * phasing / total, abs=1e-3)
    assert cross == total


def test_grid_small_and_open_cases() -> None:
    # Without the seam (a star pattern) one plane's worth of cross links fewer.
    assert len(grid_pairs(5, 8, seam=False)) == 2 * 40 - 8
    # Two per plane: fore and aft are the same satellite, one link.
    assert len(grid_pairs(3, 2)) == 3 * 1 + 3 * 2
    assert len(grid_pairs(1, 1)) == 0
    with pytest.raises(ValueError, match="phasing"):
        grid_pairs(3, 4, phasing=3)


def test_grid_topology_as_the_pair_list() -> None:
    orbits = walker_delta(240, 20, 1, 550e3, 53.0, EPOCH)
    positions = positions_of(orbits, EPOCH + 300.0)
    pairs = grid_pairs(20, 12, phasing=1)
    links = isl_candidates(positions, pairs=pairs)
    every = set(map(tuple, isl_candidates(positions).pairs.tolist()))
    chosen = set(map(tuple, links.pairs.tolist()))
    assert chosen == every & set(map(tuple, pairs.tolist()))
    # Twenty planes are close enough that every +Grid neighbour is in sight.
    assert len(links) == len(pairs)
    assert np.all(links.range_m < 4_000e3)


def test_latitude_cut_drops_cross_plane_links_only_at_high_latitude() -> None:
    orbits = walker_delta(240, 20, 1, 550e3, 53.0, EPOCH)
    positions = positions_of(orbits, EPOCH + 900.0)
    plane = plane_indices(240, 20)
    latitude = np.abs(latitude_deg(positions))
    for pairs in (grid_pairs(20, 12, phasing=1), None):
        uncut = isl_candidates(positions, pairs=pairs)
        cut = isl_candidates(positions, pairs=pairs, cut_latitude_deg=30.0, plane_of=plane)
        same_plane = plane[uncut.i] == plane[uncut.j]
        high = np.maximum(latitude[uncut.i], latitude[uncut.j]) > 30.0
        assert np.array_equal(cut.pairs, uncut.pairs[same_plane | ~high])
        assert np.array_equal(cut.range_m, uncut.range_m[same_plane | ~high])
        assert np.any(~same_plane & high)  # the cut removed something
        assert np.any(same_plane & high)  # and left in-plane links alone up there
        assert np.any(~same_plane & ~high)  # and cross-plane links low down


def test_latitude_is_geocentric() -> None:
    assert latitude_deg([[1.0, 0.0, 1.0], [0.0, -2.0, -2.0]]) == pytest.approx([45.0, -45.0])


# --- ground contacts ------------------------------------------------------------------------------


def test_elevations_match_flight_orbit_for_each_satellite() -> None:
    orbits = walker_delta(24, 3, 1, 550e3, 97.6, EPOCH)
    for t in (EPOCH + 100.0, EPOCH + 4_321.0):
        elevation = elevations_deg(positions_of(orbits, t), t, SITES)
        assert elevation.shape == (24, 3)
        for n, m in itertools.product(range(24), range(3)):
            assert elevation[n, m] == pytest.approx(elevation_deg(orbits[n], SITES[m], t), abs=1e-9)


def test_contact_mask_uses_each_sites_minimum_or_the_given_one() -> None:
    orbits = walker_delta(60, 6, 2, 550e3, 53.0, EPOCH)
    for t in EPOCH + np.arange(0.0, 6_000.0, 60.0):
        positions = positions_of(orbits, t)
        elevation = elevations_deg(positions, t, SITES)
        mask = contact_mask(positions, t, SITES)
        minimum = np.array([site.min_elevation_deg for site in SITES])
        assert np.array_equal(mask, elevation >= minimum)
        assert np.array_equal(contact_mask(positions, t, SITES, 5.0), elevation >= 5.0)
    assert SITES[0].min_elevation_deg == 25.0


def _forecast_contacts(
    orbit: Orbit, sites: tuple[GroundSite, ...], start: float, horizon_s: float
) -> tuple[Interval, ...]:
    return Forecast.compute(orbit, start, horizon_s, sites=sites, step_s=10.0).contacts


@pytest.mark.parametrize("step_s", [30.0, 300.0])
def test_contact_windows_match_the_forecast_for_each_satellite(step_s: float) -> None:
    # A 300 s step is longer than most passes above 25 deg: they are found from sampled maxima.
    orbits = walker_delta(12, 2, 1, 550e3, 97.6, EPOCH)
    windows = contact_windows(orbits, SITES, EPOCH, EPOCH + 43_200.0, step_s)
    assert set(windows) == {(n, site.name) for n in range(12) for site in SITES}
    total = 0
    for n, orbit in enumerate(orbits):
        expected = _forecast_contacts(orbit, SITES, EPOCH, 43_200.0)
        for site in SITES:
            mine = windows[(n, site.name)]
            theirs = [c for c in expected if c.name == site.name]
            assert len(mine) == len(theirs), (n, site.name)
            for a, b in zip(mine, theirs, strict=True):
                assert a.kind == "contact" and a.name == site.name
                assert a.start_unix_s == pytest.approx(b.start_unix_s, abs=0.05)
                assert a.end_unix_s == pytest.approx(b.end_unix_s, abs=0.05)
            total += len(mine)
    short = [c for intervals in windows.values() for c in intervals if c.duration_s < step_s]
    assert total > 50
    if step_s == 300.0:
        assert short, "no pass shorter than a step: the test does not exercise the peak search"


def test_contact_windows_with_a_minimum_for_all_sites() -> None:
    orbits = walker_delta(2, 1, 0, 550e3, 53.0, EPOCH)
    low = contact_windows(orbits, SITES[2:], EPOCH, EPOCH + 86_400.0, min_elevation_deg=0.0)
    high = contact_windows(orbits, SITES[2:], EPOCH, EPOCH + 86_400.0)
    for key, intervals in high.items():
        assert sum(c.duration_s for c in low[key]) > sum(c.duration_s for c in intervals)
        for contact in intervals:
            middle = 0.5 * (contact.start_unix_s + contact.end_unix_s)
            assert elevation_deg(orbits[key[0]], SITES[2], middle) >= 25.0


def test_contact_windows_are_cut_at_the_window_edges() -> None:
    orbits = walker_delta(1, 1, 0, 550e3, 97.6, EPOCH)
    contact = contact_windows(orbits, SITES, EPOCH, EPOCH + 86_400.0)[(0, "svalbard")][0]
    middle = 0.5 * (contact.start_unix_s + contact.end_unix_s)
    cut = contact_windows(orbits, SITES, middle, middle + 3_600.0)[(0, "svalbard")][0]
    assert cut.start_unix_s == middle
    assert cut.end_unix_s == pytest.approx(contact.end_unix_s, abs=0.05)


def test_contact_window_arguments_are_checked() -> None:
    orbits = walker_delta(1, 1, 0, 550e3, 53.0, EPOCH)
    with pytest.raises(ValueError, match="end after it starts"):
        contact_windows(orbits, SITES, EPOCH, EPOCH)
    with pytest.raises(ValueError, match="step_s"):
        contact_windows(orbits, SITES, EPOCH, EPOCH + 10.0, step_s=0.0)
    with pytest.raises(ValueError, match="refine_s"):
        contact_windows(orbits, SITES, EPOCH, EPOCH + 10.0, step_s=10.0, refine_s=20.0)
    with pytest.raises(ValueError, match="unique"):
        contact_windows(orbits, [SITES[0], SITES[0]], EPOCH, EPOCH + 10.0)
    assert contact_windows([], SITES, EPOCH, EPOCH + 10.0) == {}


def test_propagation_failure_names_the_satellite() -> None:
    # Heavy drag (B* = 0.99999) at 200 km: SGP4 gives up within hours.
    healthy = walker_delta(2, 1, 0, 550e3, 53.0, EPOCH)
    line1, line2 = walker_delta(1, 1, 0, 200e3, 53.0, EPOCH)[0].tle
    line1 = line1[:53] + " 99999-1" + line1[61:68]
    decaying = Orbit.from_tle(line1 + str(tle_checksum(line1)), line2)
    with pytest.raises(OrbitError, match="cannot propagate satellite 1 "):
        contact_windows([*healthy, decaying], SITES, EPOCH, EPOCH + 86_400.0)


# --- sunlight -------------------------------------------------------------------------------------


def test_illumination_of_many_matches_one_by_one() -> None:
    orbits = walker_delta(24, 3, 1, 550e3, 53.0, EPOCH)
    t = EPOCH + 2_000.0
    positions = positions_of(orbits, t)
    lit = illumination_of(positions, t)
    assert lit.shape == (24,)
    sun = sun_position_m(t)
    assert lit.tolist() == [illumination(p, sun) for p in positions]
    assert np.any(lit == 0.0) and np.any(lit == 1.0)
    assert illumination_of(np.empty((0, 3)), t).shape == (0,)
