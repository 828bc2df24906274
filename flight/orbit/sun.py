"""Where the Sun is: a low-precision solar ephemeris in the frame the orbit propagator uses.

The algorithm is the Astronomical Almanac's (Vallado, "Fundamentals of Astrodynamics and
Applications", algorithm 29): mean longitude and mean anomaly, the equation of centre to two
terms, and the mean obliquity of date. It is good to about 0.01 degree in direction (1950-2050)
and 1e-5 AU in distance.

The result is in the mean equator and equinox of date. TEME, the frame of SGP4's output, differs
from it by the equation of the equinoxes (under 0.005 degree) and ignores nothing else that
matters here, so the vector is used as it is for eclipse, beta angle and sun-pointing geometry.
"""

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flight.orbit.timescale import centuries_since_j2000

ASTRONOMICAL_UNIT_M = 149_597_870_700.0
"""IAU 2012 definition."""


def sun_position_m(t_unix_s: ArrayLike) -> NDArray[np.float64]:
    """Geocentric Sun position in metres at Unix time `t_unix_s` (UTC): shape (3,) or (N, 3)."""
    t = centuries_since_j2000(t_unix_s)
    mean_longitude_deg = 280.460 + 36_000.771 * t
    mean_anomaly = np.radians(357.529_109_2 + 35_999.050_34 * t)
    ecliptic_longitude = np.radians(
        mean_longitude_deg
        + 1.914_666_471 * np.sin(mean_anomaly)
        + 0.019_994_643 * np.sin(2.0 * mean_anomaly)
    )
    distance_au = (
        1.000_140_612
        - 0.016_708_617 * np.cos(mean_anomaly)
        - 0.000_139_589 * np.cos(2.0 * mean_anomaly)
    )
    obliquity = np.radians(23.439_291 - 0.013_004_2 * t)
    distance_m = distance_au * ASTRONOMICAL_UNIT_M
    cos_longitude = np.cos(ecliptic_longitude)
    sin_longitude = np.sin(ecliptic_longitude)
    return np.stack(
        [
            distance_m * cos_longitude,
            distance_m * np.cos(obliquity) * sin_longitude,
            distance_m * np.sin(obliquity) * sin_longitude,
        ],
        axis=-1,
    )
