"""One simulated satellite's environment: its orbit lights the array that feeds the power system.

`SatelliteEnvironment.advance(to)` integrates the power physics from the last time to `to` in
sub-steps of at most `max_step_s`, taking illumination and Sun angle at each sub-step's midpoint,
and keeps the totals a scenario reports (energy harvested, wasted while full, minimum state of
charge, time below a floor). `reading()` is what a simulated EPS would report to the node.
"""

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import numpy as np

from flight.orbit import illumination as conical_illumination
from flight.orbit import sun_position_m as sun_position_teme_m
from flight.power.eps import EpsReading
from hil.env.power import EnergyTotals, PowerState, PowerSystem

Attitude = Literal["sun_pointing", "nadir"]
ATTITUDES: tuple[str, ...] = ("sun_pointing", "nadir")
LIGHTING_BLOCK = 3600  # lighting samples computed at once (an hour at the default 1 s grid)


class SatelliteEnvironment:
    """The power physics of one satellite along its orbit, advanced in time by the caller.

    attitude: "sun_pointing" keeps the array normal on the Sun (cos incidence 1); "nadir" has a
    body-fixed array facing zenith (away from Earth), so cos incidence = sun direction . zenith.
    payload_power_w: called once per `advance`, at its start; the payload's draw is held constant
    until the next call (a load is piecewise constant between the node's control ticks).
    soc_floors: states of charge whose time below is tracked (`time_below_s`).
    lighting_step_s: illumination and Sun angle are sampled on a grid this fine, in blocks of
    `LIGHTING_BLOCK` samples, and interpolated (a 1 s grid resolves the ~8 s penumbra of LEO, and
    makes an advance cost microseconds instead of an SGP4 and ephemeris call); None evaluates
    them exactly at every sub-step's midpoint.
    sun_position_m, illumination: the ephemeris and eclipse model (flight.orbit's by default);
    replaceable for tests. Times are UTC Unix seconds, as in flight.orbit.
    """

    def __init__(
        self,
        orbit: Any,
        power_system: PowerSystem,
        *,
        attitude: Attitude = "sun_pointing",
        payload_power_w: Callable[[], float] = lambda: 0.0,
        start_unix_s: float | None = None,
        max_step_s: float = 10.0,
        soc_floors: Iterable[float] = (),
        lighting_step_s: float | None = 1.0,
        sun_position_m: Callable[[Any], np.ndarray] = sun_position_teme_m,
        illumination: Callable[[np.ndarray, np.ndarray], Any] = conical_illumination,
    ) -> None:
        if attitude not in ATTITUDES:
            raise ValueError(f"attitude {attitude!r} is not one of {', '.join(ATTITUDES)}")
        if not (math.isfinite(max_step_s) and max_step_s > 0.0):
            raise ValueError(f"max_step_s={max_step_s} is not > 0")
        self.orbit = orbit
        self.power = power_system
        self.attitude = attitude
        self.max_step_s = float(max_step_s)
        self._payload_power_w = payload_power_w
        self._sun_position_m = sun_position_m
        self._illumination = illumination
        if lighting_step_s is not None and not (
            math.isfinite(lighting_step_s) and lighting_step_s > 0.0
        ):
            raise ValueError(f"lighting_step_s={lighting_step_s} is not > 0 (or None)")
        self._t = float(orbit.epoch_unix_s if start_unix_s is None else start_unix_s)
        self.lighting_step_s = lighting_step_s
        self._grid_first = 0  # the lighting grid: samples _grid_first.. at _t0 + i x step
        self._grid_t = np.empty(0)
        self._grid_light = np.empty(0)
        self._grid_cos = np.empty(0)
        self._t0 = self._t
        self._below_s: dict[float, float] = {}
        for floor in soc_floors:
            if not 0.0 <= floor <= 1.0:
                raise ValueError(f"soc floor {floor} is not in 0..1")
            self._below_s[float(floor)] = 0.0
        self.observers: list[Callable[[float, PowerState], None]] = []
        """Told (end time, state) after every sub-step: for plots and traces."""
        # The state at the start: instantaneous, with the payload off (the node is not up yet).
        light, cos_incidence = self.lighting(np.array([self._t]))
        self._state = self.power.step(0.0, float(light[0]), float(cos_incidence[0]), 0.0)
        self._min_soc = self._state.soc

    @property
    def time_unix_s(self) -> float:
        """The time the environment has been advanced to."""
        return self._t

    @property
    def state(self) -> PowerState:
        """The power state over the last sub-step (at the start: the instant before)."""
        return self._state

    @property
    def totals(self) -> EnergyTotals:
        return self.power.totals

    @property
    def harvested_j(self) -> float:
        return self.power.totals.harvested_j

    @property
    def wasted_j(self) -> float:
        """Solar energy thrown away because the battery was full."""
        return self.power.totals.wasted_j

    @property
    def load_j(self) -> float:
        """Energy all loads asked for (platform and payload)."""
        return self.power.totals.load_j

    @property
    def payload_j(self) -> float:
        return self.power.totals.payload_j

    @property
    def shortfall_j(self) -> float:
        """Energy the loads asked of an empty battery in vain (the bus browned out)."""
        return self.power.totals.shortfall_j

    @property
    def min_soc(self) -> float:
        return self._min_soc

    def time_below_s(self, floor: float) -> float:
        """Seconds spent with state of charge below `floor` (one given as a soc_floor)."""
        try:
            return self._below_s[float(floor)]
        except KeyError:
            known = ", ".join(f"{f:g}" for f in self._below_s) or "none"
            raise KeyError(
                f"soc floor {floor:g} is not tracked (tracked: {known}); "
                "give it in soc_floors when building the SatelliteEnvironment"
            ) from None

    def lighting(self, t_unix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Illumination (0..1) and cos incidence on the array at these times."""
        t_unix = np.asarray(t_unix, dtype=float).reshape(-1)
        step_s = self.lighting_step_s
        if step_s is None:
            return self._exact_lighting(t_unix)
        first = math.floor((float(t_unix.min()) - self._t0) / step_s)
        last = math.ceil((float(t_unix.max()) - self._t0) / step_s)
        have_last = self._grid_first + len(self._grid_light) - 1
        if first < self._grid_first or last > have_last:
            # Time runs forward: sample a fresh block from here, long enough for this request.
            count = max(LIGHTING_BLOCK, last - first + 1)
            grid = self._t0 + step_s * np.arange(first, first + count)
            self._grid_light, self._grid_cos = self._exact_lighting(grid)
            self._grid_first = first
            self._grid_t = grid
        return (
            np.interp(t_unix, self._grid_t, self._grid_light),
            np.interp(t_unix, self._grid_t, self._grid_cos),
        )

    def _exact_lighting(self, t_unix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sat_m = np.asarray(self.orbit.positions_m(t_unix), dtype=float).reshape(-1, 3)
        sun_m = np.asarray(self._sun_position_m(t_unix), dtype=float).reshape(-1, 3)
        light = np.clip(np.asarray(self._illumination(sat_m, sun_m), dtype=float), 0.0, 1.0)
        light = np.broadcast_to(light, (len(t_unix),))
        if self.attitude == "sun_pointing":
            return light, np.ones(len(t_unix))
        to_sun = sun_m - sat_m
        to_sun /= np.linalg.norm(to_sun, axis=1, keepdims=True)
        zenith = sat_m / np.linalg.norm(sat_m, axis=1, keepdims=True)
        return light, np.einsum("ij,ij->i", to_sun, zenith)

    def advance(self, to_unix_s: float) -> PowerState:
        """Integrate up to `to_unix_s`; the state over the last sub-step."""
        if not math.isfinite(to_unix_s) or to_unix_s < self._t:
            raise ValueError(
                f"cannot advance the environment to {to_unix_s}: it is at {self._t} "
                "and time only runs forward"
            )
        payload_w = float(self._payload_power_w())
        span_s = to_unix_s - self._t
        steps = max(1, math.ceil(span_s / self.max_step_s - 1e-9))
        dt_s = span_s / steps
        mids = self._t + dt_s * (np.arange(steps) + 0.5)
        light, cos_incidence = self.lighting(mids)
        i = 0
        while i < steps:
            # Sub-steps under the same light (full Sun, umbra: most of an orbit) have the same
            # constant net power: one step over all but the last of them is exact (the battery
            # is linear between its clamps), and the last keeps the state a sub-step would
            # give. Observers see every sub-step.
            run = 1
            if not self.observers:
                while (
                    i + run < steps - 1
                    and light[i + run] == light[i]
                    and cos_incidence[i + run] == cos_incidence[i]
                ):
                    run += 1
            soc_before = self.power.battery.soc
            state = self.power.step(run * dt_s, float(light[i]), float(cos_incidence[i]), payload_w)
            self._account(soc_before, state.soc, run * dt_s)
            i += run
            self._t = to_unix_s if i == steps else self._t + run * dt_s
            self._state = state
            for observer in self.observers:
                observer(self._t, state)
        return self._state

    def _account(self, soc_before: float, soc_after: float, dt_s: float) -> None:
        self._min_soc = min(self._min_soc, soc_after)
        for floor in self._below_s:
            # Within a step the state of charge moves linearly (constant net power) until it
            # clamps, so the time below the floor is the linear share of the step.
            if soc_before < floor and soc_after < floor:
                below = dt_s
            elif soc_before >= floor and soc_after >= floor:
                below = 0.0
            else:
                share = (floor - min(soc_before, soc_after)) / abs(soc_after - soc_before)
                below = dt_s * share
            self._below_s[floor] += below

    def reading(self) -> EpsReading:
        """What a simulated EPS reports now: terminal voltage and current, no state of charge.

        Solar power is what the array actually delivers (an EPS measuring the array current sees
        the output fall when a full battery takes no more), load power what the bus served.
        """
        state = self._state
        return EpsReading(
            battery_voltage_v=state.battery_voltage_v,
            battery_current_a=state.battery_current_a,
            solar_power_w=state.solar_power_w - state.wasted_w,
            load_power_w=state.load_power_w - state.shortfall_w,
            payload_power_w=state.payload_power_w,
        )
