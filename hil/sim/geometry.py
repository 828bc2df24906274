"""Constellation geometry for the emulator, for N satellites at once: ISLs, contacts, sunlight.

Everything takes positions in TEME metres (`flight.orbit.positions_of(orbits, t)`, shape (N, 3))
at one instant and works on whole arrays, because the emulator asks for a thousand satellites
every step. The Earth is a sphere of the WGS-84 equatorial radius for line of sight (its
flattening, 21 km at the poles, is inside the 80 km grazing margin that stands for the
atmosphere's refraction and absorption); ground sites sit on the WGS-84 ellipsoid.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sgp4.api import Satrec, SatrecArray

from flight.orbit import (
    EARTH_RADIUS_M,
    GroundSite,
    Interval,
    Orbit,
    OrbitError,
    illumination,
    sun_position_m,
    teme_to_ecef,
)
from flight.orbit.timescale import julian_date_split

SPEED_OF_LIGHT_M_S = 299_792_458.0
GRAZING_HEIGHT_M = 80e3
"""A link's line of sight must clear the Earth's surface by this much (the issue's figure)."""

EARTH_ROTATION_RAD_S = 7.292_115_146_7e-5
"""WGS-84 rotation rate: a satellite moves at most |v| + this x |r| relative to the ground."""
MAX_CHUNK_SAMPLES = 500_000
"""`contact_windows` propagates satellites in groups of at most this many (satellite, time)
samples, which bounds its memory (about 100 MB at this size) whatever the horizon or count."""

_PAIR_BLOCK_ROWS = 64


@dataclass(frozen=True, slots=True, eq=False)
class IslCandidates:
    """Pairs of satellites (i < j, indices into the positions) that can link now, and how far.

    Arrays of equal length K, read-only; `delay_s` is the one-way light time.
    """

    i: NDArray[np.int64]
    j: NDArray[np.int64]
    range_m: NDArray[np.float64]
    delay_s: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.i.size)

    @property
    def pairs(self) -> NDArray[np.int64]:
        """The pairs as one (K, 2) array."""
        return np.stack([self.i, self.j], axis=-1)


# --- inter-satellite links ----------------------------------------------------------------------


def ranges_m(a_m: ArrayLike, b_m: ArrayLike) -> NDArray[np.float64]:
    """Distance between matching rows of two (K, 3) position arrays, metres, shape (K,)."""
    return np.linalg.norm(
        np.asarray(b_m, dtype=np.float64) - np.asarray(a_m, dtype=np.float64), axis=-1
    )


def light_time_s(range_m: ArrayLike) -> NDArray[np.float64]:
    """One-way light time over `range_m` metres, seconds (in vacuum; the ISL is above the air)."""
    return np.asarray(range_m, dtype=np.float64) / SPEED_OF_LIGHT_M_S


def ray_height_m(a_m: ArrayLike, b_m: ArrayLike) -> NDArray[np.float64]:
    """Lowest height above the spherical Earth along each segment a-b (rows of (K, 3)), metres.

    The closest point of the line to the centre is at a + s (b - a), s = -a.(b - a) / |b - a|^2,
    clipped to the segment; its distance from the centre, less the Earth's radius.
    """
    a = np.asarray(a_m, dtype=np.float64)
    b = np.asarray(b_m, dtype=np.float64)
    d = b - a
    length2 = np.einsum("...k,...k->...", d, d)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(length2 > 0.0, -np.einsum("...k,...k->...", a, d) / length2, 0.0)
    closest = a + np.clip(s, 0.0, 1.0)[..., None] * d
    return np.linalg.norm(closest, axis=-1) - EARTH_RADIUS_M


def line_of_sight(
    a_m: ArrayLike, b_m: ArrayLike, grazing_height_m: float = GRAZING_HEIGHT_M
) -> NDArray[np.bool_]:
    """Whether each segment a-b (rows of (K, 3)) stays at least `grazing_height_m` above the
    Earth everywhere; a ray exactly at the grazing height counts as clear."""
    return ray_height_m(a_m, b_m) >= grazing_height_m


def latitude_deg(positions_m: ArrayLike) -> NDArray[np.float64]:
    """Geocentric latitude of each position, degrees (TEME and Earth-fixed share the z axis).

    Up to 0.19 deg from the geodetic latitude: immaterial for a link cut-off latitude.
    """
    r = np.asarray(positions_m, dtype=np.float64)
    return np.degrees(np.arctan2(r[..., 2], np.hypot(r[..., 0], r[..., 1])))


def grid_pairs(
    planes: int, per_plane: int, *, phasing: int = 0, seam: bool = True
) -> NDArray[np.int64]:
    """The +Grid topology of a Walker pattern: each satellite's four neighbours, as (K, 2) pairs
    i < j of indices `plane * per_plane + slot`, each link once, sorted.

    Fore and aft in its own plane; the same slot in the planes either side. Across the seam
    between the last plane and the first (a delta pattern's planes close the circle) the
    neighbour of (planes - 1, slot) is (0, slot + phasing): Walker phasing makes the first plane
    the last one moved one more plane on, its slots shifted by `phasing`. `seam=False` for a star
    pattern (RAANs over 180 deg), where the planes either side of the seam counter-rotate.
    With fewer than 3 satellites per plane (or planes) neighbours coincide and appear once.
    """
    if planes < 1 or per_plane < 1:
        raise ValueError(
            f"grid_pairs: need planes >= 1 and per_plane >= 1, not {planes}, {per_plane}"
        )
    if not 0 <= phasing < planes:
        raise ValueError(f"grid_pairs: phasing must be 0..{planes - 1}, not {phasing}")
    plane, slot = np.divmod(np.arange(planes * per_plane, dtype=np.int64), per_plane)
    index = plane * per_plane + slot
    ends = [(index, plane * per_plane + (slot + 1) % per_plane)]
    inner = plane < planes - 1
    ends.append((index[inner], (plane[inner] + 1) * per_plane + slot[inner]))
    if seam and planes > 1:
        last = plane == planes - 1
        ends.append((index[last], (slot[last] + phasing) % per_plane))
    i = np.concatenate([a for a, _ in ends])
    j = np.concatenate([b for _, b in ends])
    pairs = np.stack([np.minimum(i, j), np.maximum(i, j)], axis=-1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


def isl_candidates(
    positions_m: ArrayLike,
    pairs: ArrayLike | None = None,
    grazing_height_m: float = GRAZING_HEIGHT_M,
    max_range_m: float | None = None,
    *,
    cut_latitude_deg: float | None = None,
    plane_of: ArrayLike | None = None,
) -> IslCandidates:
    """The pairs of satellites that can link at this instant, with range and light time.

    `pairs` (K, 2) limits the search to a topology (e.g. `grid_pairs`); None tries every pair
    (vectorised over an N x N matrix: fine to a few thousand satellites). A pair is kept if its
    line of sight clears `grazing_height_m`, its range is at most `max_range_m` (if given), and,
    with `cut_latitude_deg`, if it is not a cross-plane link (`plane_of[i] != plane_of[j]`)
    with either end above that |latitude|, as Starlink-like designs switch those off where the
    planes cross and the neighbours' relative motion is fastest.
    """
    positions = np.asarray(positions_m, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be an (N, 3) array, not shape {positions.shape}")
    count = positions.shape[0]
    planes = None
    if cut_latitude_deg is not None:
        if plane_of is None:
            raise ValueError("a latitude cut needs plane_of: each satellite's plane")
        planes = np.asarray(plane_of)
        if planes.shape != (count,):
            raise ValueError(
                f"plane_of has shape {planes.shape}; it needs one plane per satellite ({count},)"
            )
    if pairs is None:
        i, j = _visible_pairs_all(positions, grazing_height_m)
    else:
        pair_array = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        if pair_array.size and (pair_array.min() < 0 or pair_array.max() >= count):
            raise ValueError(f"pairs name satellites outside 0..{count - 1}")
        i, j = pair_array[:, 0], pair_array[:, 1]
        visible = line_of_sight(positions[i], positions[j], grazing_height_m)
        i, j = i[visible], j[visible]
    distance = ranges_m(positions[i], positions[j])
    keep = np.ones(i.shape, dtype=bool)
    if max_range_m is not None:
        keep &= distance <= max_range_m
    if planes is not None:
        latitude = np.abs(latitude_deg(positions))
        cross = planes[i] != planes[j]
        high = np.maximum(latitude[i], latitude[j]) > cut_latitude_deg
        keep &= ~(cross & high)
    fields = [i[keep], j[keep], distance[keep]]
    fields.append(light_time_s(fields[2]))
    for array in fields:
        array.setflags(write=False)
    return IslCandidates(*fields)


def _visible_pairs_all(
    positions: NDArray[np.float64], grazing_height_m: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Every pair i < j with line of sight, from one (N, 5) x (5, N) matrix product.

    From radius r the tangent to the grazing sphere (radius g = R + h) touches it alpha =
    acos(g / r) away, as seen from the centre; a segment clears the sphere exactly when the angle
    theta between its ends is at most alpha_i + alpha_j. With unit vectors u, c = g / r and
    s = sqrt(1 - c^2), cos(theta) - cos(alpha_i + alpha_j) = u_i.u_j + s_i s_j - c_i c_j: the
    dot product of [u_i, s_i, c_i] with [u_j, s_j, -c_j], which is >= 0 when the pair can see
    each other.
    """
    radius = np.linalg.norm(positions, axis=-1)
    floor = EARTH_RADIUS_M + grazing_height_m
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = floor / radius
        sine = np.sqrt(1.0 - cosine * cosine)
    unit = positions / radius[:, None]
    left = np.column_stack([unit, sine, cosine])
    right = np.column_stack([unit, sine, -cosine])
    # An end at or below the grazing height is itself inside the forbidden shell.
    high = radius > floor
    rows, columns = [], []
    # Row blocks against the columns from the block's first row on: half the matrix, and each
    # block's product stays in cache (twice as fast as the whole matrix at 1,000 satellites).
    for first in range(0, positions.shape[0], _PAIR_BLOCK_ROWS):
        last = min(first + _PAIR_BLOCK_ROWS, positions.shape[0])
        visible = left[first:last] @ right[first:].T >= 0.0
        visible &= high[first:last, None] & high[None, first:]
        i, j = np.nonzero(np.triu(visible, k=1))
        rows.append(i + first)
        columns.append(j + first)
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(columns).astype(np.int64)


# --- ground contacts ----------------------------------------------------------------------------


def elevations_deg(
    positions_m: ArrayLike, t_unix_s: float, sites: Sequence[GroundSite]
) -> NDArray[np.float64]:
    """Elevation of N satellites (TEME metres at `t_unix_s`) above M sites' horizons, (N, M)."""
    positions = np.asarray(positions_m, dtype=np.float64).reshape(-1, 3)
    return _look(teme_to_ecef(positions, t_unix_s), *_site_frames(sites))[0]


def contact_mask(
    positions_m: ArrayLike,
    t_unix_s: float,
    sites: Sequence[GroundSite],
    min_elevation_deg: float | None = None,
) -> NDArray[np.bool_]:
    """Which satellites each site can talk to now, (N, M): elevation at or above the site's own
    `min_elevation_deg` (GroundSite's default 25 deg), or above `min_elevation_deg` for all."""
    elevation = elevations_deg(positions_m, t_unix_s, sites)
    return elevation >= _minimum_elevations(sites, min_elevation_deg)


def contact_windows(
    orbits: Sequence[Orbit],
    sites: Sequence[GroundSite],
    start_unix_s: float,
    end_unix_s: float,
    step_s: float = 30.0,
    *,
    refine_s: float = 1.0,
    min_elevation_deg: float | None = None,
) -> dict[tuple[int, str], tuple[Interval, ...]]:
    """Every ground contact in [start, end]: {(satellite index, site name): contacts in order}.

    Samples all satellites every `step_s` (one SGP4 call per group of satellites), then
    re-samples every `refine_s` across each step where a satellite rises or sets, and across the
    two steps beside each sampled maximum below the mask that a pass shorter than a step could
    hide behind: the line of sight turns at most |v| / range, with |v| bounded by the speed in
    TEME plus the Earth's rotation at that radius, and the range at most |v| t shorter a time t
    later; so within a step the elevation can rise at most ln(range / (range - |v| step)) rad,
    and only maxima closer than that below the mask are searched. Edges are interpolated
    linearly between fine samples (errors far under `refine_s`). Contacts reaching the ends of
    the window are cut there, as in `flight.orbit.Forecast`, whose contacts these match (tested
    to 0.01 s). Every (satellite, site) is a key.
    """
    if not (
        math.isfinite(start_unix_s) and math.isfinite(end_unix_s) and end_unix_s > start_unix_s
    ):
        raise ValueError(
            f"contact window must end after it starts, not {start_unix_s}..{end_unix_s}"
        )
    if not (math.isfinite(step_s) and step_s > 0.0):
        raise ValueError(f"step_s must be a positive number of seconds, not {step_s}")
    if not (math.isfinite(refine_s) and 0.0 < refine_s <= step_s):
        raise ValueError(f"refine_s must be in (0, step_s = {step_s}], not {refine_s}")
    names = [site.name for site in sites]
    if len(set(names)) != len(names):
        raise ValueError(f"site names must be unique, not {names}")
    times = _sample_times(start_unix_s, end_unix_s, step_s)
    site_ecef, site_up = _site_frames(sites)
    minimum = _minimum_elevations(sites, min_elevation_deg)
    subdivisions = math.ceil(step_s / refine_s)
    fractions = np.arange(1, subdivisions, dtype=np.float64) / subdivisions
    satrecs = [Satrec.twoline2rv(*orbit.tle) for orbit in orbits]
    windows: dict[tuple[int, str], tuple[Interval, ...]] = {}
    chunk = max(1, MAX_CHUNK_SAMPLES // times.size)
    for first in range(0, len(orbits), chunk):
        group = satrecs[first : first + chunk]
        positions, velocities = _propagate(SatrecArray(group), times, orbits, first)
        elevation, distance = _look(teme_to_ecef(positions, times), site_ecef, site_up)
        above = np.moveaxis(elevation - minimum, -1, 1)  # (C, M, T)
        speed = np.linalg.norm(velocities, axis=-1) + EARTH_ROTATION_RAD_S * np.linalg.norm(
            positions, axis=-1
        )  # (C, T): bounds the speed relative to a site fixed on the Earth
        reach = (speed * step_s)[..., None]
        with np.errstate(invalid="ignore", divide="ignore"):
            rise_deg = np.where(
                distance > reach, np.degrees(np.log(distance / (distance - reach))), np.inf
            )
        refine = _steps_to_refine(above, np.moveaxis(rise_deg, -1, 1)).any(axis=1)
        for offset, satrec in enumerate(group):
            steps = np.flatnonzero(refine[offset])
            fine_t = (
                times[steps, None] + (times[steps + 1] - times[steps])[:, None] * fractions
            ).ravel()
            fine = np.empty((0, len(sites)))
            if fine_t.size:
                fine_positions = _propagate_one(satrec, fine_t, orbits, first + offset)
                fine = _look(teme_to_ecef(fine_positions, fine_t), site_ecef, site_up)[0]
                fine = fine - minimum
            all_t = np.concatenate([times, fine_t])
            order = np.argsort(all_t, kind="stable")
            all_t = all_t[order]
            values = np.concatenate([above[offset].T, fine])[order]  # (T + F, M)
            for column, site in enumerate(sites):
                windows[(first + offset, site.name)] = tuple(
                    Interval(start, end, "contact", site.name)
                    for start, end in _positive_regions(all_t, values[:, column])
                    if end > start
                )
    return windows


def _sample_times(start: float, end: float, step_s: float) -> NDArray[np.float64]:
    count = math.floor((end - start) / step_s) + 1
    times = start + step_s * np.arange(count, dtype=np.float64)
    if end - times[-1] > 1e-6:
        return np.append(times, end)
    times[-1] = end
    return times


def _steps_to_refine(
    above: NDArray[np.float64], margin_deg: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """(..., T - 1): steps holding a rise or set, or beside a maximum a pass could hide behind."""
    positive = above >= 0.0
    refine = positive[..., :-1] != positive[..., 1:]
    # A sampled maximum below the mask (an edge sample counts if it is above its one neighbour):
    # the true curve may peak above the mask anywhere within a step either side of it.
    rises = above[..., 1:] > above[..., :-1]
    edge = np.ones((*above.shape[:-1], 1), dtype=bool)
    above_previous = np.concatenate([edge, rises], axis=-1)
    not_below_next = np.concatenate([~rises, edge], axis=-1)
    peak = ~positive & (above > -margin_deg) & above_previous & not_below_next
    refine |= peak[..., :-1] | peak[..., 1:]
    return refine


def _positive_regions(
    times: NDArray[np.float64], values: NDArray[np.float64]
) -> list[tuple[float, float]]:
    """[start, end] stretches where values >= 0, edges interpolated linearly between samples."""
    positive = values >= 0.0
    changes = np.flatnonzero(positive[:-1] != positive[1:])
    v0, v1 = values[changes], values[changes + 1]
    t0, t1 = times[changes], times[changes + 1]
    crossings = t0 + (t1 - t0) * v0 / (v0 - v1)
    regions: list[tuple[float, float]] = []
    opened = float(times[0]) if positive[0] else None
    for index, crossing in zip(changes.tolist(), crossings.tolist(), strict=True):
        if positive[index]:
            assert opened is not None
            regions.append((opened, crossing))
            opened = None
        else:
            opened = crossing
    if opened is not None:
        regions.append((opened, float(times[-1])))
    return regions


def _propagate(
    satrecs: SatrecArray, times: NDArray[np.float64], orbits: Sequence[Orbit], first: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    jd, fraction = julian_date_split(times)
    errors, position_km, velocity_km_s = satrecs.sgp4(jd, fraction)
    if np.any(errors):
        satellite, sample = (int(x[0]) for x in np.nonzero(errors))
        _raise_propagation(
            orbits, first + satellite, float(times[sample]), int(errors[satellite, sample])
        )
    return position_km * 1000.0, velocity_km_s * 1000.0


def _propagate_one(
    satrec: Satrec, times: NDArray[np.float64], orbits: Sequence[Orbit], index: int
) -> NDArray[np.float64]:
    jd, fraction = julian_date_split(times)
    errors, position_km, _ = satrec.sgp4_array(jd, fraction)
    if np.any(errors):
        sample = int(np.flatnonzero(errors)[0])
        _raise_propagation(orbits, index, float(times[sample]), int(errors[sample]))
    return position_km * 1000.0


def _raise_propagation(orbits: Sequence[Orbit], index: int, t_unix_s: float, code: int) -> NoReturn:
    # Let the orbit itself say why, in the words flight.orbit uses for SGP4's error codes.
    orbits[index].position_m(t_unix_s)
    raise OrbitError(f"SGP4 error {code} for satellite {index} at Unix time {t_unix_s:.1f}")


def _site_frames(sites: Sequence[GroundSite]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if not sites:
        return np.empty((0, 3)), np.empty((0, 3))
    return np.stack([site.ecef_m() for site in sites]), np.stack([site.up() for site in sites])


def _minimum_elevations(
    sites: Sequence[GroundSite], min_elevation_deg: float | None
) -> NDArray[np.float64]:
    if min_elevation_deg is not None:
        return np.full(len(sites), float(min_elevation_deg))
    return np.array([site.min_elevation_deg for site in sites], dtype=np.float64)


def _look(
    ecef_m: NDArray[np.float64], site_ecef_m: NDArray[np.float64], site_up: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Elevation (deg) and range (m), each (..., M), of Earth-fixed positions (..., 3) from M
    sites."""
    line_of_sight_m = ecef_m[..., None, :] - site_ecef_m  # (..., M, 3)
    distance = np.linalg.norm(line_of_sight_m, axis=-1)
    sine = np.einsum("...mk,mk->...m", line_of_sight_m, site_up) / distance
    return np.degrees(np.arcsin(np.clip(sine, -1.0, 1.0))), distance


# --- sunlight -----------------------------------------------------------------------------------


def illumination_of(positions_m: ArrayLike, t_unix_s: float) -> NDArray[np.float64]:
    """Fraction 0..1 of the solar disc each of N satellites sees at `t_unix_s`, shape (N,)
    (`flight.orbit.illumination`, conical umbra and penumbra, all satellites in one call)."""
    positions = np.asarray(positions_m, dtype=np.float64).reshape(-1, 3)
    if positions.shape[0] == 0:
        return np.empty(0)
    return np.atleast_1d(illumination(positions, sun_position_m(t_unix_s)))
