"""The node's forecast of sunlight, eclipse and ground contacts over a horizon, from its own orbit.

`Forecast.compute` samples the orbit every `step_s`, finds where the illumination crosses 0.5
and where each site's elevation crosses its minimum, and refines every crossing by bisection to
about 0.01 s. Between samples a short excursion (a grazing eclipse, a low pass) shows up as a
local extremum of the sampled curve; each one is searched for its true peak, so eclipses and
passes shorter than a step are still found unless they sit at the very first or last sample.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from flight.orbit.eclipse import illumination
from flight.orbit.ground import GroundSite, teme_to_ecef
from flight.orbit.propagation import Orbit
from flight.orbit.sun import sun_position_m

INTERVAL_KINDS = ("sunlit", "eclipse", "contact")
ECLIPSE_THRESHOLD = 0.5
"""Illumination below this counts as eclipse (the middle of the penumbra)."""
BOUNDARY_TOLERANCE_S = 0.01
MAX_SAMPLES = 2_000_000
"""Refuse horizons that would need more samples than this (about 50 MB of positions)."""
PENUMBRA_SUBSTEP_S = 1.0
"""Extra illumination samples this far apart across every penumbra, for `illumination_at`."""

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
PEAK_TOLERANCE_S = 0.1
"""How closely a maximum below the mask is located: its value, not its time, decides whether
a pass hides there, and the elevation is flat at its maximum."""
EARTH_GM_M3_S2 = 3.986_004_418e14
EARTH_ROTATION_RAD_S = 7.292_115_146_7e-5

Sampler = Callable[[NDArray[np.float64]], NDArray[np.float64]]


@dataclass(frozen=True, slots=True)
class Interval:
    """A stretch of time [start, end) of one kind; `name` is the site for contacts."""

    start_unix_s: float
    end_unix_s: float
    kind: str
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in INTERVAL_KINDS:
            raise ValueError(f"interval kind {self.kind!r} is not one of {INTERVAL_KINDS}")
        if not self.end_unix_s >= self.start_unix_s:
            raise ValueError(
                f"interval ends ({self.end_unix_s}) before it starts ({self.start_unix_s})"
            )

    @property
    def duration_s(self) -> float:
        return self.end_unix_s - self.start_unix_s

    def contains(self, t_unix_s: float) -> bool:
        return self.start_unix_s <= t_unix_s < self.end_unix_s


@dataclass(frozen=True, slots=True, eq=False)
class Forecast:
    """Sunlit and eclipse intervals tiling [start, end], ground contacts and the illumination curve.

    Intervals that reach the ends of the horizon are cut there: an eclipse whose `end_unix_s` is
    `end_unix_s` of the forecast may go on longer. Times are UTC Unix seconds.
    """

    start_unix_s: float
    end_unix_s: float
    intervals: tuple[Interval, ...]
    contacts: tuple[Interval, ...]
    sample_times_unix_s: NDArray[np.float64] = field(repr=False)
    sample_illumination: NDArray[np.float64] = field(repr=False)

    @classmethod
    def compute(
        cls,
        orbit: Orbit,
        start_unix_s: float,
        horizon_s: float,
        *,
        sites: Sequence[GroundSite] = (),
        step_s: float = 30.0,
    ) -> "Forecast":
        """Forecast `horizon_s` seconds from `start_unix_s` for `orbit`, sampling every `step_s`."""
        if not (math.isfinite(horizon_s) and horizon_s > 0.0):
            raise ValueError(
                f"forecast horizon must be a positive number of seconds, not {horizon_s}"
            )
        if not (math.isfinite(step_s) and step_s > 0.0):
            raise ValueError(f"forecast step must be a positive number of seconds, not {step_s}")
        if horizon_s / step_s > MAX_SAMPLES:
            raise ValueError(
                f"a {horizon_s} s horizon at {step_s} s steps needs more than {MAX_SAMPLES}"
                " samples; use a longer step or a shorter horizon"
            )
        end_unix_s = start_unix_s + horizon_s
        count = math.floor(horizon_s / step_s) + 1
        times = start_unix_s + step_s * np.arange(count, dtype=np.float64)
        if end_unix_s - times[-1] > 1e-6:
            times = np.append(times, end_unix_s)
        else:
            times[-1] = end_unix_s
        positions = orbit.positions_m(times)

        def shadow(t: NDArray[np.float64]) -> NDArray[np.float64]:
            # Positive in eclipse, so eclipses are the regions where it is >= 0.
            return ECLIPSE_THRESHOLD - _illumination(orbit.positions_m(t), t)

        lit = _illumination(positions, times)
        eclipses = _positive_regions(shadow, times, ECLIPSE_THRESHOLD - lit)
        intervals = _tile(eclipses, start_unix_s, end_unix_s)

        contacts: list[Interval] = []
        for site in sites:

            def above(t: NDArray[np.float64], site: GroundSite = site) -> NDArray[np.float64]:
                return _elevations(orbit.positions_m(t), t, site) - site.min_elevation_deg

            sampled = _elevations(positions, times, site) - site.min_elevation_deg
            rise = _max_elevation_rise_deg(positions, site, step_s)
            contacts.extend(
                Interval(start, end, "contact", site.name)
                for start, end in _positive_regions(above, times, sampled, max_rise=rise)
                if end > start
            )
        contacts.sort(key=lambda interval: (interval.start_unix_s, interval.name))

        curve_times, curve = _densify_penumbrae(orbit, times, lit)
        curve_times.setflags(write=False)
        curve.setflags(write=False)
        return cls(start_unix_s, end_unix_s, tuple(intervals), tuple(contacts), curve_times, curve)

    def illumination_at(self, t_unix_s: ArrayLike) -> float | NDArray[np.float64]:
        """Illumination 0..1 at `t_unix_s` (float or array), interpolated from the sampled curve.

        ValueError outside [start, end]: a forecast does not extrapolate; compute a new one.
        """
        t = np.asarray(t_unix_s, dtype=np.float64)
        if np.any(t < self.start_unix_s - 1e-6) or np.any(t > self.end_unix_s + 1e-6):
            raise ValueError(
                f"time outside the forecast horizon {self.start_unix_s:.1f}..{self.end_unix_s:.1f}"
                " (Unix s); compute a new forecast"
            )
        value = np.interp(t, self.sample_times_unix_s, self.sample_illumination)
        return float(value) if value.ndim == 0 else value

    def next(self, kind: str, t_unix_s: float, *, name: str | None = None) -> Interval | None:
        """The interval of `kind` that contains `t_unix_s`, else the next one to start; None if
        there is none before the horizon ends. For contacts, `name` picks one site."""
        if kind not in INTERVAL_KINDS:
            raise ValueError(f"interval kind {kind!r} is not one of {INTERVAL_KINDS}")
        pool = self.contacts if kind == "contact" else self.intervals
        for interval in pool:
            if interval.kind != kind or (name is not None and interval.name != name):
                continue
            if interval.end_unix_s > t_unix_s:
                return interval
        return None

    def of_kind(self, kind: str) -> tuple[Interval, ...]:
        """All intervals of `kind` in time order."""
        if kind not in INTERVAL_KINDS:
            raise ValueError(f"interval kind {kind!r} is not one of {INTERVAL_KINDS}")
        pool = self.contacts if kind == "contact" else self.intervals
        return tuple(interval for interval in pool if interval.kind == kind)


def _illumination(positions_m: NDArray[np.float64], t: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.atleast_1d(illumination(positions_m, sun_position_m(t)))


def _elevations(
    positions_m: NDArray[np.float64], t: NDArray[np.float64], site: GroundSite
) -> NDArray[np.float64]:
    line_of_sight = teme_to_ecef(positions_m, t) - site.ecef_m()
    sine = (line_of_sight @ site.up()) / np.linalg.norm(line_of_sight, axis=-1)
    return np.degrees(np.arcsin(np.clip(sine, -1.0, 1.0)))


def _max_elevation_rise_deg(
    positions_m: NDArray[np.float64], site: GroundSite, step_s: float
) -> float:
    """The most the elevation from `site` can rise within one step: the line of sight turns at
    most |v| / range, with |v| below the escape speed plus the Earth's rotation, and the range
    above the orbit's radius less the site's. Infinite where the bound does not hold."""
    radius = np.linalg.norm(positions_m, axis=-1)
    low, high = float(radius.min()), float(radius.max())
    site_radius = float(np.linalg.norm(site.ecef_m()))
    if low <= site_radius:
        return math.inf
    speed = math.sqrt(2.0 * EARTH_GM_M3_S2 / low) + EARTH_ROTATION_RAD_S * high
    return math.degrees(speed / (low - site_radius) * step_s)


def _bisect(
    g: Sampler, low: NDArray[np.float64], high: NDArray[np.float64], low_positive: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Where g crosses 0 in each [low, high], given the sign at `low`; all brackets at once."""
    low, high = low.copy(), high.copy()
    while low.size and np.max(high - low) > BOUNDARY_TOLERANCE_S:
        middle = 0.5 * (low + high)
        same = (g(middle) >= 0.0) == low_positive
        low = np.where(same, middle, low)
        high = np.where(same, high, middle)
    return 0.5 * (low + high)


def _peaks(
    g: Sampler, low: NDArray[np.float64], high: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Golden-section search for the maximum of g in each [low, high] (g unimodal there)."""
    a, b = low.copy(), high.copy()
    c = b - _GOLDEN * (b - a)
    d = a + _GOLDEN * (b - a)
    gc, gd = g(c), g(d)
    while a.size and np.max(b - a) > PEAK_TOLERANCE_S:
        left = gc > gd
        # Keep [a, d] where the left probe is higher, else [c, b].
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        new_c = b - _GOLDEN * (b - a)
        new_d = a + _GOLDEN * (b - a)
        c, d = new_c, new_d
        gc, gd = g(c), g(d)
    middle = 0.5 * (a + b)
    return middle, g(middle)


def _positive_regions(
    g: Sampler,
    times: NDArray[np.float64],
    values: NDArray[np.float64],
    *,
    max_rise: float = math.inf,
) -> list[tuple[float, float]]:
    """The [start, end] stretches of [times[0], times[-1]] where g >= 0, from its samples.
    `max_rise` bounds how much g can rise within one sample step: a local maximum of the
    samples further than that below zero cannot hide a positive stretch and is not searched."""
    positive = values >= 0.0
    changes = np.flatnonzero(positive[:-1] != positive[1:])
    crossings = _bisect(g, times[changes], times[changes + 1], positive[changes])
    regions: list[tuple[float, float]] = []
    opened = float(times[0]) if positive[0] else None
    for index, crossing in zip(changes, crossings, strict=True):
        if positive[index]:
            assert opened is not None
            regions.append((opened, float(crossing)))
            opened = None
        else:
            opened = float(crossing)
    if opened is not None:
        regions.append((opened, float(times[-1])))

    # Excursions above zero between three negative samples: a local maximum of the samples.
    middle = np.arange(1, len(values) - 1)
    candidates = middle[
        ~positive[middle - 1]
        & ~positive[middle]
        & ~positive[middle + 1]
        & (values[middle] > values[middle - 1])
        & (values[middle] >= values[middle + 1])
        & (values[middle] + max_rise >= 0.0)
    ]
    if candidates.size:
        peak_times, peak_values = _peaks(g, times[candidates - 1], times[candidates + 1])
        found = peak_values >= 0.0
        if np.any(found):
            before = times[candidates - 1][found]
            after = times[candidates + 1][found]
            peaks = peak_times[found]
            starts = _bisect(g, before, peaks, np.zeros(peaks.shape, dtype=bool))
            ends = _bisect(g, peaks, after, np.ones(peaks.shape, dtype=bool))
            regions.extend(zip(starts.tolist(), ends.tolist(), strict=True))
            regions.sort()
    return regions


def _tile(eclipses: list[tuple[float, float]], start: float, end: float) -> list[Interval]:
    """Sunlit and eclipse intervals covering [start, end] with no gap, eclipses as given."""
    tiles: list[Interval] = []
    cursor = start
    for eclipse_start, eclipse_end in eclipses:
        if eclipse_start > cursor:
            tiles.append(Interval(cursor, eclipse_start, "sunlit"))
        if eclipse_end > eclipse_start:
            tiles.append(Interval(max(cursor, eclipse_start), eclipse_end, "eclipse"))
        cursor = max(cursor, eclipse_end)
    if end > cursor:
        tiles.append(Interval(cursor, end, "sunlit"))
    return tiles


def _densify_penumbrae(
    orbit: Orbit, times: NDArray[np.float64], lit: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Add samples every PENUMBRA_SUBSTEP_S across each step where the illumination is changing,
    so interpolation follows the penumbra (seconds long) instead of smearing it over a step."""
    steady = ((lit[:-1] == 1.0) & (lit[1:] == 1.0)) | ((lit[:-1] == 0.0) & (lit[1:] == 0.0))
    changing = np.flatnonzero(~steady)
    if changing.size == 0:
        return times.copy(), lit.copy()
    extra = [
        np.arange(times[i] + PENUMBRA_SUBSTEP_S, times[i + 1], PENUMBRA_SUBSTEP_S) for i in changing
    ]
    added = np.concatenate(extra) if extra else np.empty(0)
    if added.size == 0:
        return times.copy(), lit.copy()
    all_times = np.concatenate([times, added])
    all_lit = np.concatenate([lit, _illumination(orbit.positions_m(added), added)])
    order = np.argsort(all_times, kind="stable")
    return all_times[order], all_lit[order]
