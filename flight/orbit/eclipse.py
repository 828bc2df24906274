"""Eclipse: how much of the solar disc a satellite sees past the Earth (conical umbra/penumbra).

Montenbruck & Gill, "Satellite Orbits", section 3.4.2: with the apparent angular radii of the Sun
(a) and the Earth (b) seen from the satellite and the angle between their centres (c), the
illuminated fraction is 1 when the discs do not overlap (c >= a + b), 0 in the umbra
(c <= b - a), and 1 - (overlap area) / (pi a^2) in the penumbra. The Earth is a sphere of the
WGS-84 equatorial radius and has no atmosphere: refraction and the thin dimming at the limb are
ignored, as are the Earth's flattening (up to 21 km at the poles) and the Moon.
"""

import numpy as np
from numpy.typing import ArrayLike

EARTH_RADIUS_M = 6_378_137.0
"""WGS-84 equatorial radius."""
SUN_RADIUS_M = 695_700_000.0
"""IAU 2015 nominal solar radius."""


def illumination(sat_m: ArrayLike, sun_m: ArrayLike) -> float | np.ndarray:
    """Fraction 0..1 of the solar disc visible from `sat_m` (Sun at `sun_m`, both geocentric, m).

    Shapes (3,) give a float; (N, 3) arrays (either may be (3,) and broadcast) give shape (N,).
    """
    sat = np.asarray(sat_m, dtype=np.float64)
    sun = np.asarray(sun_m, dtype=np.float64)
    to_sun = sun - sat
    sat_distance = np.linalg.norm(sat, axis=-1)
    sun_distance = np.linalg.norm(to_sun, axis=-1)
    if np.any(sat_distance <= EARTH_RADIUS_M):
        raise ValueError("illumination: a satellite position is inside the Earth")
    a = np.arcsin(np.minimum(SUN_RADIUS_M / sun_distance, 1.0))
    b = np.arcsin(EARTH_RADIUS_M / sat_distance)
    cos_c = -np.sum(sat * to_sun, axis=-1) / (sat_distance * sun_distance)
    c = np.arccos(np.clip(cos_c, -1.0, 1.0))

    # Overlap of two discs of radii a and b whose centres are c apart (the lens area).
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (c * c + a * a - b * b) / (2.0 * c)
        y = np.sqrt(np.maximum(a * a - x * x, 0.0))
        overlap = (
            a * a * np.arccos(np.clip(x / a, -1.0, 1.0))
            + b * b * np.arccos(np.clip((c - x) / b, -1.0, 1.0))
            - c * y
        )
    partial = 1.0 - overlap / (np.pi * a * a)
    fraction = np.where(
        c >= a + b,
        1.0,
        np.where(
            c <= b - a,
            0.0,
            # The Earth wholly inside the solar disc (never for an Earth orbiter, kept for
            # completeness): an annulus of sunlight.
            np.where(c <= a - b, 1.0 - (b * b) / (a * a), partial),
        ),
    )
    fraction = np.clip(fraction, 0.0, 1.0)
    return float(fraction) if fraction.ndim == 0 else fraction
