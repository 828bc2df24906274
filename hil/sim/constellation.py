"""Constellations for the emulator: Walker-delta patterns written as real TLEs, and TLE files.

A Walker delta pattern i:t/p/f puts t satellites in p planes of equal inclination i, the planes'
ascending nodes spread evenly over `raan_spread_deg` (360 for a delta, 180 for a star/polar
pattern), t/p satellites evenly spaced in each plane, and each plane's satellites a further
360*f/t degrees along their orbit than the plane before (Walker, "Satellite constellations",
J. Br. Interplanet. Soc. 37, 1984). Satellite `index = plane * per_plane + slot`, the order
`grid_pairs` and `plane_indices` use.
"""

import math
import operator
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from flight.orbit import Orbit, OrbitError, format_tle

MAX_NORAD_ID = 99_999
"""The TLE's catalogue number has five digits."""

# Columns 53-63 of TLE line 2: the mean motion, revolutions per day.
_MEAN_MOTION_COLUMNS = slice(52, 63)


def walker_delta(
    total: int,
    planes: int,
    phasing: int,
    altitude_m: float,
    inclination_deg: float,
    epoch_unix_s: float,
    raan_spread_deg: float = 360.0,
    *,
    first_norad_id: int = 1,
) -> list[Orbit]:
    """The `total` circular orbits of the Walker pattern inclination:total/planes/phasing.

    Satellite `slot` of plane `plane` (index `plane * per_plane + slot`) has RAAN
    `plane * raan_spread_deg / planes` and mean anomaly (argument of latitude: the orbits are
    circular, perigee at the node) `360 * slot / per_plane + 360 * phasing * plane / total`, and
    NORAD id `first_norad_id + index`. Each is a real TLE (see `Orbit.circular`). ValueError
    with the reason for arguments that do not make a pattern.
    """
    total = _whole(total, "total")
    planes = _whole(planes, "planes")
    phasing = _whole(phasing, "phasing")
    first_norad_id = _whole(first_norad_id, "first_norad_id")
    if total < 1:
        raise ValueError(f"walker_delta: total must be at least 1 satellite, not {total}")
    if planes < 1:
        raise ValueError(f"walker_delta: planes must be at least 1, not {planes}")
    if total % planes:
        raise ValueError(
            f"walker_delta: {total} satellites do not divide into {planes} equal planes"
            f" (total must be a multiple of planes)"
        )
    if not 0 <= phasing < planes:
        raise ValueError(
            f"walker_delta: phasing must be 0..{planes - 1} (0 <= f < planes), not {phasing}"
        )
    if not (math.isfinite(raan_spread_deg) and 0.0 < raan_spread_deg <= 360.0):
        raise ValueError(
            f"walker_delta: raan_spread_deg must be in (0, 360] (360 for a delta pattern, 180"
            f" for a star), not {raan_spread_deg}"
        )
    if first_norad_id < 0 or first_norad_id + total - 1 > MAX_NORAD_ID:
        raise ValueError(
            f"walker_delta: NORAD ids {first_norad_id}..{first_norad_id + total - 1} do not fit"
            f" the TLE's 0..{MAX_NORAD_ID}; choose first_norad_id so that all {total} do"
        )
    if not math.isfinite(epoch_unix_s):
        raise ValueError(f"walker_delta: epoch {epoch_unix_s} is not a time")
    per_plane = total // planes

    # Calibrate the mean motion once, then give every satellite that same one: the calibration
    # depends on altitude and inclination only (different RAANs and phases agree to the TLE's
    # 1e-8 rev/day), and one shared mean motion keeps the pattern's spacing exact all run long.
    try:
        reference = Orbit.circular(
            altitude_m, inclination_deg, 0.0, epoch_unix_s, norad_id=first_norad_id
        )
    except OrbitError as error:
        raise ValueError(f"walker_delta: {error}") from None
    mean_motion_rev_day = float(reference.tle[1][_MEAN_MOTION_COLUMNS])

    orbits = []
    for plane in range(planes):
        raan_deg = plane * raan_spread_deg / planes
        for slot in range(per_plane):
            mean_anomaly_deg = 360.0 * slot / per_plane + 360.0 * phasing * plane / total
            lines = format_tle(
                norad_id=first_norad_id + plane * per_plane + slot,
                epoch_unix_s=epoch_unix_s,
                inclination_deg=inclination_deg,
                raan_deg=raan_deg,
                eccentricity=0.0,
                argument_of_perigee_deg=0.0,
                mean_anomaly_deg=mean_anomaly_deg % 360.0,
                mean_motion_rev_day=mean_motion_rev_day,
            )
            orbits.append(Orbit.from_tle(*lines))
    return orbits


def plane_indices(total: int, planes: int) -> NDArray[np.int64]:
    """The plane of each satellite of a Walker pattern, shape (total,): for the latitude cut."""
    total = _whole(total, "total")
    planes = _whole(planes, "planes")
    if planes < 1 or total < 0 or total % planes:
        raise ValueError(f"{total} satellites do not divide into {planes} equal planes")
    return np.arange(total, dtype=np.int64) // (total // planes)


def from_tles(lines: str | Iterable[str]) -> list[Orbit]:
    """The orbits of a TLE file's text (or its lines), in file order.

    Takes two-line sets with or without a name line before each (the three-line format, names
    optionally prefixed "0 "); blank lines are ignored. ValueError naming the line for anything
    else: a line 1 without its line 2, a stray line, a TLE that `Orbit.from_tle` rejects.
    """
    text_lines = lines.splitlines() if isinstance(lines, str) else list(lines)
    numbered = [
        (number, line.rstrip("\r\n "))
        for number, line in enumerate(text_lines, start=1)
        if line.strip()
    ]
    orbits: list[Orbit] = []
    position = 0
    while position < len(numbered):
        number, line = numbered[position]
        if not line.startswith("1 "):
            if line.startswith("2 "):
                raise ValueError(f"TLE line {number}: a line 2 with no line 1 before it")
            # A name line: the next line must start its TLE.
            position += 1
            if position >= len(numbered) or not numbered[position][1].startswith("1 "):
                raise ValueError(
                    f"TLE line {number}: {line[:30]!r} is neither a TLE line nor a name followed"
                    " by one"
                )
            number, line = numbered[position]
        if position + 1 >= len(numbered) or not numbered[position + 1][1].startswith("2 "):
            raise ValueError(f"TLE line {number}: a line 1 with no line 2 after it")
        second_number, second = numbered[position + 1]
        try:
            orbits.append(Orbit.from_tle(line, second))
        except OrbitError as error:
            raise ValueError(f"TLE lines {number}-{second_number}: {error}") from None
        position += 2
    if not orbits:
        raise ValueError("no TLEs found (expected pairs of lines starting '1 ' and '2 ')")
    return orbits


def _whole(value: object, name: str) -> int:
    """`value` as an int, or ValueError: counts and ids are whole numbers (True is not one)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
