"""Ground sites and a satellite's elevation above their horizon (TEME to Earth-fixed by GMST)."""

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flight.orbit.errors import OrbitError
from flight.orbit.propagation import Orbit
from flight.orbit.timescale import gmst_rad

WGS84_A_M = 6_378_137.0
WGS84_F = 1.0 / 298.257_223_563
WGS84_E2 = WGS84_F * (2.0 - WGS84_F)


@dataclass(frozen=True, slots=True)
class GroundSite:
    """A ground station at a WGS-84 geodetic position; passes count above `min_elevation_deg`."""

    name: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0
    min_elevation_deg: float = 25.0

    def __post_init__(self) -> None:
        if not -90.0 <= self.latitude_deg <= 90.0:
            raise OrbitError(f"site {self.name!r}: latitude {self.latitude_deg} is outside -90..90")
        if not -180.0 <= self.longitude_deg <= 360.0:
            raise OrbitError(
                f"site {self.name!r}: longitude {self.longitude_deg} is outside -180..360"
            )
        if not -90.0 <= self.min_elevation_deg <= 90.0:
            raise OrbitError(
                f"site {self.name!r}: minimum elevation {self.min_elevation_deg} is outside -90..90"
            )

    def ecef_m(self) -> NDArray[np.float64]:
        """Earth-fixed position, metres."""
        latitude = math.radians(self.latitude_deg)
        longitude = math.radians(self.longitude_deg)
        prime_vertical = WGS84_A_M / math.sqrt(1.0 - WGS84_E2 * math.sin(latitude) ** 2)
        return np.array(
            [
                (prime_vertical + self.altitude_m) * math.cos(latitude) * math.cos(longitude),
                (prime_vertical + self.altitude_m) * math.cos(latitude) * math.sin(longitude),
                (prime_vertical * (1.0 - WGS84_E2) + self.altitude_m) * math.sin(latitude),
            ]
        )

    def up(self) -> NDArray[np.float64]:
        """Unit vector of the local vertical (normal to the ellipsoid), Earth-fixed."""
        latitude = math.radians(self.latitude_deg)
        longitude = math.radians(self.longitude_deg)
        return np.array(
            [
                math.cos(latitude) * math.cos(longitude),
                math.cos(latitude) * math.sin(longitude),
                math.sin(latitude),
            ]
        )


def teme_to_ecef(position_m: ArrayLike, t_unix_s: ArrayLike) -> NDArray[np.float64]:
    """Rotate TEME positions (shape (3,) or (N, 3)) into the Earth-fixed frame at `t_unix_s`.

    A rotation about z by GMST (IAU 1982): the pseudo-Earth-fixed frame, with polar motion (under
    15 m at the surface) ignored.
    """
    r = np.asarray(position_m, dtype=np.float64)
    theta = gmst_rad(t_unix_s)
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    return np.stack(
        [cos_t * x + sin_t * y, -sin_t * x + cos_t * y, np.broadcast_to(z, x.shape)], axis=-1
    )


def elevation_deg(
    orbit: Orbit, site: GroundSite, t_unix_s: ArrayLike
) -> float | NDArray[np.float64]:
    """Elevation of the satellite above the site's horizon plane, degrees; float or shape (N,)."""
    t = np.asarray(t_unix_s, dtype=np.float64)
    positions = orbit.positions_m(np.atleast_1d(t))
    ecef = teme_to_ecef(positions, np.atleast_1d(t))
    line_of_sight = ecef - site.ecef_m()
    sine = (line_of_sight @ site.up()) / np.linalg.norm(line_of_sight, axis=-1)
    elevation = np.degrees(np.arcsin(np.clip(sine, -1.0, 1.0)))
    return float(elevation[0]) if t.ndim == 0 else elevation
