"""Time scales for the orbit code: Unix seconds to Julian dates, centuries since J2000 and GMST."""

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

SECONDS_PER_DAY = 86_400.0
UNIX_EPOCH_JD = 2_440_587.5
"""Julian date of 1970-01-01 00:00 UTC."""
J2000_JD = 2_451_545.0
J2000_UNIX_S = (J2000_JD - UNIX_EPOCH_JD) * SECONDS_PER_DAY
"""2000-01-01 12:00 as Unix seconds (946,728,000)."""
DAYS_PER_JULIAN_CENTURY = 36_525.0

# The orbit code treats UTC as UT1 (|UT1 - UTC| < 0.9 s): an Earth rotation error under 4
# arcseconds, and a Sun position error a thousand times smaller; both far inside what eclipse
# timing and contact prediction need.


def julian_date_split(t_unix_s: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Whole and fractional parts of the Julian date at Unix time `t_unix_s` (UTC), as SGP4 wants.

    Two parts keep microsecond resolution: one float holding a Julian date (2.46e6 days) resolves
    only about 40 microseconds.
    """
    t = np.asarray(t_unix_s, dtype=np.float64)
    days = np.floor(t / SECONDS_PER_DAY)
    fraction = (t - days * SECONDS_PER_DAY) / SECONDS_PER_DAY
    return days + UNIX_EPOCH_JD, fraction


def unix_from_julian_date(jd: float, fraction: float = 0.0) -> float:
    """Unix seconds at the Julian date `jd + fraction` (UTC)."""
    return (jd - UNIX_EPOCH_JD) * SECONDS_PER_DAY + fraction * SECONDS_PER_DAY


def centuries_since_j2000(t_unix_s: ArrayLike) -> NDArray[np.float64]:
    """Julian centuries since J2000.0 at Unix time `t_unix_s`."""
    t = np.asarray(t_unix_s, dtype=np.float64)
    return (t - J2000_UNIX_S) / (SECONDS_PER_DAY * DAYS_PER_JULIAN_CENTURY)


def gmst_rad(t_unix_s: ArrayLike) -> NDArray[np.float64]:
    """Greenwich mean sidereal time (IAU 1982, Vallado eq. 3-47) in radians, 0..2 pi.

    This is the angle that rotates TEME into the Earth-fixed frame (polar motion ignored: < 15 m
    at the surface).
    """
    t = centuries_since_j2000(t_unix_s)
    seconds = (
        67_310.54841
        + (876_600.0 * 3_600.0 + 8_640_184.812866) * t
        + 0.093104 * t**2
        - 6.2e-6 * t**3
    )
    return np.mod(seconds, SECONDS_PER_DAY) * (2.0 * math.pi / SECONDS_PER_DAY)
