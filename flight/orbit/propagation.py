"""Onboard orbit propagation: a TLE through SGP4, and TLEs built for circular test orbits.

Positions are in TEME (the true equator, mean equinox frame SGP4 produces), in metres; times are
UTC Unix seconds. `Orbit.circular` and `Orbit.with_beta` write real two-line element sets (69
characters, mod-10 checksums) so a scenario's orbit is the same thing a ground station would
uplink, and every orbit, made up or tracked, goes through the same propagator.
"""

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sgp4.api import Satrec, SatrecArray

from flight.orbit.errors import OrbitError
from flight.orbit.sun import sun_position_m
from flight.orbit.timescale import (
    SECONDS_PER_DAY,
    julian_date_split,
    unix_from_julian_date,
)

TLE_LINE_LENGTH = 69
EARTH_RADIUS_M = 6_378_137.0
"""WGS-84 equatorial radius: altitudes here are the radius minus this."""

# SGP4's own constants (WGS-72, what TLEs are fitted with): the Kepler guess for the mean motion
# must use them, not WGS-84's, or the orbit lands a few hundred metres off before calibration.
_SGP4_MU_KM3_S2 = 398_600.8
_MINUTES_PER_DAY = 1_440.0

# What sgp4 means by each error code (sgp4.api.SGP4_ERRORS, in words a user can act on).
_SGP4_ERRORS = {
    1: "mean eccentricity is outside 0 <= e < 1",
    2: "mean motion is not positive",
    3: "perturbed eccentricity is outside 0 <= e <= 1 (the elements are far from their epoch)",
    4: "semi-latus rectum is negative (the orbit has collapsed)",
    5: "the elements describe a sub-orbital trajectory",
    6: "the satellite has decayed (its orbit has reached the atmosphere)",
}

# Calibrating `circular`: the mean SGP4 radius is within a metre of the asked one after these.
_CALIBRATION_ROUNDS = 4
_CALIBRATION_SAMPLES = 720


def tle_checksum(line: str) -> int:
    """The mod-10 checksum of a TLE line's first 68 characters: digits, and 1 for each '-'."""
    total = 0
    for char in line[:68]:
        if char.isdigit():
            total += int(char)
        elif char == "-":
            total += 1
    return total % 10


def _check_line(line: str, number: int) -> str:
    text = line.rstrip("\r\n ")
    if len(text) != TLE_LINE_LENGTH:
        raise OrbitError(
            f"TLE line {number} has {len(text)} characters; a TLE line has {TLE_LINE_LENGTH}"
            " (is the checksum digit missing, or the line cut?)"
        )
    if not text.isascii():
        raise OrbitError(f"TLE line {number} contains characters that are not ASCII")
    if text[0] != str(number) or text[1] != " ":
        raise OrbitError(f"TLE line {number} must start with '{number} ', not {text[:2]!r}")
    if not text[68].isdigit():
        raise OrbitError(
            f"TLE line {number} ends with {text[68]!r}; its last character is the checksum digit"
        )
    expected = tle_checksum(text)
    if int(text[68]) != expected:
        raise OrbitError(
            f"TLE line {number} checksum is {text[68]} but its characters give {expected}:"
            " the line is corrupted"
        )
    return text


def _field(line: str, number: int, columns: tuple[int, int], name: str) -> float:
    """A numeric field by its 1-based TLE column range, or an OrbitError naming it."""
    first, last = columns
    text = line[first - 1 : last].strip()
    try:
        return float(text)
    except ValueError:
        raise OrbitError(
            f"TLE line {number} columns {first}-{last} ({name}) is {text!r}, not a number"
        ) from None


def _check_fields(line1: str, line2: str) -> None:
    if line1[2:7] != line2[2:7]:
        raise OrbitError(
            f"TLE lines name different satellites: {line1[2:7].strip()!r} and"
            f" {line2[2:7].strip()!r}"
        )
    epoch = _field(line1, 1, (19, 32), "epoch")
    if not 1.0 <= epoch % 1000.0 < 367.0:
        raise OrbitError(f"TLE epoch day of year {epoch % 1000.0:.8f} is outside 1..366")
    inclination = _field(line2, 2, (9, 16), "inclination")
    if not 0.0 <= inclination <= 180.0:
        raise OrbitError(f"TLE inclination {inclination} deg is outside 0..180")
    for columns, name in (
        ((18, 25), "RAAN"),
        ((35, 42), "argument of perigee"),
        ((44, 51), "mean anomaly"),
    ):
        value = _field(line2, 2, columns, name)
        if not 0.0 <= value <= 360.0:
            raise OrbitError(f"TLE {name} {value} deg is outside 0..360")
    eccentricity = line2[26:33]
    if not eccentricity.isdigit():
        raise OrbitError(
            f"TLE line 2 columns 27-33 (eccentricity, decimal point assumed) is"
            f" {eccentricity!r}, not seven digits"
        )
    mean_motion = _field(line2, 2, (53, 63), "mean motion")
    if not mean_motion > 0.0:
        raise OrbitError(f"TLE mean motion {mean_motion} rev/day is not positive")


class Orbit:
    """One satellite's orbit: SGP4 propagation of a two-line element set.

    Build it with `from_tle`, `circular` or `with_beta`. Read-only once built.
    """

    __slots__ = ("_satrec", "_tle")

    def __init__(self, satrec: Satrec, tle: tuple[str, str]) -> None:
        self._satrec = satrec
        self._tle = tle

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        # Satrec does not pickle; every Orbit is made from its TLE text, so that rebuilds it
        # exactly (runs in worker processes need this).
        return (Orbit.from_tle, self._tle)

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def from_tle(cls, line1: str, line2: str) -> "Orbit":
        """The orbit of a TLE; OrbitError naming the problem if the lines are not a usable TLE."""
        line1 = _check_line(line1, 1)
        line2 = _check_line(line2, 2)
        _check_fields(line1, line2)
        satrec = Satrec.twoline2rv(line1, line2)
        if satrec.error:
            raise OrbitError(f"TLE rejected by SGP4: {_describe_sgp4_error(satrec.error)}")
        orbit = cls(satrec, (line1, line2))
        # SGP4 checks some elements only while propagating: try the epoch once.
        orbit.position_m(orbit.epoch_unix_s)
        return orbit

    @classmethod
    def circular(
        cls,
        altitude_m: float,
        inclination_deg: float,
        raan_deg: float,
        epoch_unix_s: float,
        mean_anomaly_deg: float = 0.0,
        norad_id: int = 99999,
    ) -> "Orbit":
        """A circular orbit whose SGP4-propagated mean radius is EARTH_RADIUS_M + `altitude_m`.

        Writes a real TLE: eccentricity 0, no drag (B* = 0, so long runs stay at the altitude),
        argument of perigee 0, so `mean_anomaly_deg` is the argument of latitude at epoch (0 = at
        the ascending node). The TLE's mean motion is Kozai's, which SGP4 converts to Brouwer's,
        and SGP4's mean radius also carries a constant J2 offset of a few km; rather than
        model both, the mean motion is calibrated against SGP4 itself until the time-averaged
        radius over one orbit is the one asked for (to within metres). The epoch is rounded to
        the TLE's 1e-8 day (under a millisecond); `epoch_unix_s` reports the rounded value.
        """
        _check_circular_request(altitude_m, inclination_deg, norad_id)
        target_radius_m = EARTH_RADIUS_M + altitude_m
        semi_major_axis_km = target_radius_m / 1000.0
        orbit: Orbit | None = None
        for _ in range(_CALIBRATION_ROUNDS):
            mean_motion_rev_day = (
                math.sqrt(_SGP4_MU_KM3_S2 / semi_major_axis_km**3) * SECONDS_PER_DAY / (2 * math.pi)
            )
            lines = format_tle(
                norad_id=norad_id,
                epoch_unix_s=epoch_unix_s,
                inclination_deg=inclination_deg,
                raan_deg=raan_deg,
                eccentricity=0.0,
                argument_of_perigee_deg=0.0,
                mean_anomaly_deg=mean_anomaly_deg,
                mean_motion_rev_day=mean_motion_rev_day,
            )
            orbit = cls.from_tle(*lines)
            error_m = orbit.mean_radius_m() - target_radius_m
            if abs(error_m) < 1.0:
                break
            semi_major_axis_km -= error_m / 1000.0
        assert orbit is not None
        return orbit

    @classmethod
    def with_beta(
        cls,
        altitude_m: float,
        inclination_deg: float,
        beta_deg: float,
        epoch_unix_s: float,
        mean_anomaly_deg: float = 0.0,
        norad_id: int = 99999,
    ) -> "Orbit":
        """A circular orbit whose beta angle at `epoch_unix_s` is `beta_deg` (RAAN solved for it).

        The orbit normal is (sin i sin RAAN, -sin i cos RAAN, cos i), so sin(beta) = s.n for the
        Sun's unit vector s is a sinusoid in RAAN: reachable betas span about +-(i + solar
        declination), clipped to +-90. Of the two RAANs that give the beta, the one on the rising
        side of the sinusoid is taken. OrbitError if the beta cannot be reached.
        """
        _check_circular_request(altitude_m, inclination_deg, norad_id)
        if not -90.0 <= beta_deg <= 90.0:
            raise OrbitError(f"beta angle {beta_deg} deg is outside -90..90")
        sun = np.asarray(sun_position_m(epoch_unix_s))
        sun = sun / np.linalg.norm(sun)
        inclination = math.radians(inclination_deg)
        in_plane = math.hypot(sun[0], sun[1]) * math.sin(inclination)
        # s.n = sin i (sx sin O - sy cos O) + cos i sz = in_plane sin(O - phase) + cos i sz
        wanted = math.sin(math.radians(beta_deg)) - math.cos(inclination) * sun[2]
        reach = _reachable_betas(inclination, sun)
        if abs(wanted) > in_plane + 1e-12:
            raise OrbitError(
                f"beta angle {beta_deg} deg is unreachable at inclination {inclination_deg} deg"
                f" on this date: betas from {reach[0]:.2f} to {reach[1]:.2f} deg are possible"
            )
        phase = math.atan2(sun[1], sun[0])
        ratio = 0.0 if in_plane == 0.0 else max(-1.0, min(1.0, wanted / in_plane))
        raan_deg = math.degrees(phase + math.asin(ratio)) % 360.0
        return cls.circular(
            altitude_m, inclination_deg, raan_deg, epoch_unix_s, mean_anomaly_deg, norad_id
        )

    # --- elements -------------------------------------------------------------------------------

    @property
    def tle(self) -> tuple[str, str]:
        """The two TLE lines this orbit propagates."""
        return self._tle

    @property
    def norad_id(self) -> int:
        return int(self._satrec.satnum)

    @property
    def epoch_unix_s(self) -> float:
        """The TLE's epoch, UTC Unix seconds."""
        return unix_from_julian_date(self._satrec.jdsatepoch, self._satrec.jdsatepochF)

    @property
    def period_s(self) -> float:
        """Nodal period (ascending node to ascending node) in seconds, the period eclipses and
        ground passes recur with; it includes the J2 drift of perigee and differs from the
        Keplerian period by a few seconds in LEO."""
        rate_rad_min = self._satrec.mdot + self._satrec.argpdot
        return 2.0 * math.pi / rate_rad_min * 60.0

    @property
    def inclination_deg(self) -> float:
        """Mean inclination (TLE)."""
        return math.degrees(self._satrec.inclo)

    def raan_deg(self, t_unix_s: float | None = None) -> float:
        """Mean right ascension of the ascending node at `t_unix_s` (the epoch if None): the TLE's
        value drifted by SGP4's secular J2 rate (about +0.986 deg/day when sun-synchronous)."""
        elapsed_min = 0.0 if t_unix_s is None else (t_unix_s - self.epoch_unix_s) / 60.0
        return math.degrees(self._satrec.nodeo + self._satrec.nodedot * elapsed_min) % 360.0

    def normal(self, t_unix_s: ArrayLike) -> NDArray[np.float64]:
        """Unit normal of the mean orbit plane (along the angular momentum) at `t_unix_s`, TEME.

        From the mean elements, so it is free of SGP4's short-period wobble (about 0.005 deg in
        LEO) that the instantaneous r x v carries.
        """
        t = np.asarray(t_unix_s, dtype=np.float64)
        raan = self._satrec.nodeo + self._satrec.nodedot * (t - self.epoch_unix_s) / 60.0
        inclination = self._satrec.inclo
        return np.stack(
            [
                math.sin(inclination) * np.sin(raan),
                -math.sin(inclination) * np.cos(raan),
                np.full_like(raan, math.cos(inclination)),
            ],
            axis=-1,
        )

    # --- propagation ----------------------------------------------------------------------------

    def position_m(self, t_unix_s: float) -> NDArray[np.float64]:
        """Position at UTC Unix time `t_unix_s`, TEME metres, shape (3,)."""
        return self.state(np.array([t_unix_s], dtype=np.float64))[0][0]

    def positions_m(self, t_unix_s: ArrayLike) -> NDArray[np.float64]:
        """Positions at each of the times `t_unix_s`, TEME metres, shape (N, 3)."""
        return self.state(np.atleast_1d(np.asarray(t_unix_s, dtype=np.float64)))[0]

    def state(self, t_unix_s: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Positions (m) and velocities (m/s) at the times `t_unix_s` (1-D), TEME, each (N, 3).

        OrbitError if SGP4 fails at any of the times (for example, the orbit has decayed by then).
        """
        t = np.atleast_1d(np.asarray(t_unix_s, dtype=np.float64))
        jd, fraction = julian_date_split(t)
        errors, position_km, velocity_km_s = self._satrec.sgp4_array(jd, fraction)
        if np.any(errors):
            first = int(np.flatnonzero(errors)[0])
            raise OrbitError(
                f"SGP4 cannot propagate satellite {self.norad_id} to Unix time {t[first]:.1f}"
                f" ({(t[first] - self.epoch_unix_s) / SECONDS_PER_DAY:+.2f} days from its TLE"
                f" epoch): {_describe_sgp4_error(int(errors[first]))}"
            )
        return position_km * 1000.0, velocity_km_s * 1000.0

    def mean_radius_m(self, t_unix_s: float | None = None) -> float:
        """Time-averaged distance from the Earth's centre over one period from `t_unix_s` (epoch
        if None), metres."""
        start = self.epoch_unix_s if t_unix_s is None else t_unix_s
        times = start + np.arange(_CALIBRATION_SAMPLES) * (self.period_s / _CALIBRATION_SAMPLES)
        return float(np.mean(np.linalg.norm(self.positions_m(times), axis=1)))

    def __repr__(self) -> str:
        return f"Orbit.from_tle({self._tle[0]!r}, {self._tle[1]!r})"


def positions_of(orbits: Sequence[Orbit], t_unix_s: float) -> NDArray[np.float64]:
    """Positions of many satellites at one time, TEME metres, shape (N, 3): one SGP4 call for all
    (the emulator's step for a constellation)."""
    if not orbits:
        return np.empty((0, 3))
    jd, fraction = julian_date_split(np.array([t_unix_s], dtype=np.float64))
    errors, position_km, _ = SatrecArray([orbit._satrec for orbit in orbits]).sgp4(jd, fraction)
    if np.any(errors):
        index = int(np.flatnonzero(errors[:, 0])[0])
        raise OrbitError(
            f"SGP4 cannot propagate satellite {orbits[index].norad_id} (orbit {index}) to Unix"
            f" time {t_unix_s:.1f}: {_describe_sgp4_error(int(errors[index, 0]))}"
        )
    return position_km[:, 0, :] * 1000.0


def beta_angle_deg(orbit: Orbit, t_unix_s: float) -> float:
    """Angle between the Sun direction and the orbit plane at `t_unix_s`, degrees (-90..90).

    Positive when the Sun is on the side of the orbit normal (north of the plane for a prograde
    orbit). Uses the mean orbit plane (see `Orbit.normal`).
    """
    sun = np.asarray(sun_position_m(t_unix_s))
    normal = orbit.normal(t_unix_s)
    sine = float(np.dot(normal, sun) / np.linalg.norm(sun))
    return math.degrees(math.asin(max(-1.0, min(1.0, sine))))


def format_tle(
    *,
    norad_id: int,
    epoch_unix_s: float,
    inclination_deg: float,
    raan_deg: float,
    eccentricity: float,
    argument_of_perigee_deg: float,
    mean_anomaly_deg: float,
    mean_motion_rev_day: float,
    element_set_number: int = 999,
    revolution_number: int = 0,
) -> tuple[str, str]:
    """Two TLE lines (69 characters, with checksums) for these mean elements; no drag terms.

    Column layout as CelesTrak's "FAQs: Two-Line Element Set Format" and Vallado's appendix.
    """
    if not 0 <= norad_id <= 99_999:
        raise OrbitError(f"NORAD catalogue number {norad_id} is outside 0..99999")
    if not 0.0 <= eccentricity < 1.0:
        raise OrbitError(f"eccentricity {eccentricity} is outside 0 <= e < 1")
    if not 0.0 < mean_motion_rev_day < 100.0:
        raise OrbitError(f"mean motion {mean_motion_rev_day} rev/day is outside 0..100")
    year, day_of_year = _tle_epoch(epoch_unix_s)
    line1 = (
        f"1 {norad_id:05d}U          {year % 100:02d}{day_of_year:012.8f}"
        f"  .00000000  00000-0  00000-0 0 {element_set_number % 10_000:4d}"
    )
    line2 = (
        f"2 {norad_id:05d} {_angle(inclination_deg, 180.0):8.4f} {_angle(raan_deg):8.4f}"
        f" {round(eccentricity * 1e7):07d} {_angle(argument_of_perigee_deg):8.4f}"
        f" {_angle(mean_anomaly_deg):8.4f} {mean_motion_rev_day:11.8f}"
        f"{revolution_number % 100_000:5d}"
    )
    return line1 + str(tle_checksum(line1)), line2 + str(tle_checksum(line2))


def _angle(value_deg: float, limit: float = 360.0) -> float:
    """An angle rounded to the TLE's 1e-4 degree, wrapped into [0, 360) (inclination: [0, 180])."""
    rounded = round(value_deg, 4)
    return rounded if limit == 180.0 else round(rounded % 360.0, 4) % 360.0


def _tle_epoch(epoch_unix_s: float) -> tuple[int, float]:
    """(year, day of year starting at 1.0) rounded to the TLE's 1e-8 day."""
    if not math.isfinite(epoch_unix_s):
        raise OrbitError(f"epoch {epoch_unix_s} is not a time")
    moment = dt.datetime.fromtimestamp(epoch_unix_s, tz=dt.UTC)
    year = moment.year
    if not 1957 <= year <= 2056:
        raise OrbitError(f"epoch year {year} is outside the TLE's 1957..2056")
    start = dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp()
    units = round((epoch_unix_s - start) / SECONDS_PER_DAY * 1e8)
    days_in_year = 366 if _leap(year) else 365
    if units >= days_in_year * 100_000_000:
        year, units = year + 1, units - days_in_year * 100_000_000
    return year, 1.0 + units / 1e8


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _check_circular_request(altitude_m: float, inclination_deg: float, norad_id: int) -> None:
    if not 100e3 <= altitude_m <= 40_000e3:
        raise OrbitError(
            f"altitude {altitude_m / 1000:.1f} km is outside 100..40000 km (give metres)"
        )
    if not 0.0 <= inclination_deg <= 180.0:
        raise OrbitError(f"inclination {inclination_deg} deg is outside 0..180")
    if not 0 <= norad_id <= 99_999:
        raise OrbitError(f"NORAD catalogue number {norad_id} is outside 0..99999")


def _reachable_betas(inclination: float, sun_unit: NDArray[np.float64]) -> tuple[float, float]:
    in_plane = math.hypot(sun_unit[0], sun_unit[1]) * math.sin(inclination)
    offset = math.cos(inclination) * sun_unit[2]
    low = max(-1.0, offset - in_plane)
    high = min(1.0, offset + in_plane)
    return math.degrees(math.asin(low)), math.degrees(math.asin(high))


def _describe_sgp4_error(code: int) -> str:
    return _SGP4_ERRORS.get(code, f"SGP4 error code {code}")
