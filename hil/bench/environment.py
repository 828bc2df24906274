"""The bench plays the environment: orbit, sunlight and battery physics fed to the target's EPS.

    async with default_bench_environment(api) as environment:   # a record a second from now on
        environment.drive_to(0.05)              # the battery near empty: under-voltage
        environment.force_illumination(1.0)     # sunlight, whatever the orbit says
        environment.drive_to(0.9)

Every `period_s` of the running loop's clock the bench advances the physics (`hil.env`) to now,
and sends what a simulated EPS would measure as a `SensorRecord` (APID 0x7F1, ICD 3.12) through
the ground station. The payload's draw comes back from the target's own telemetry
(`power.PAYLOAD_POWER_W`, the latest housekeeping), closing the loop: a job the target runs
discharges the simulated battery. The record's payload power is left "not measured" so the node
reports its own (measured by its rails, or modelled) instead of echoing the bench's.
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np

from flight.orbit import Orbit
from flight.protocol import icd
from flight.protocol.cuc import TAI_EPOCH_TO_UNIX_EPOCH_S
from flight.protocol.errors import ProtocolError
from flight.protocol.sensors import SensorRecord
from flight.runtime.clock import TAI_MINUS_UTC_S, MissionClock
from ground.dictionary import GroundError
from hil.env import Battery, PowerState, PowerSystem, SatelliteEnvironment, SolarArray
from hil.env.environment import Attitude
from hil.sim.power import ARRAY_EFFICIENCY, PowerScenario
from hil.testapi.api import IntegrationApi

PAYLOAD_POWER_CHANNEL = "power.PAYLOAD_POWER_W"
TIME_CHANNEL = "time.TAI_S"
_DUE_WITHIN_S = 1e-6
DEFAULT_SATELLITE = PowerScenario()
"""The issue-5 satellite: 550 km sun-synchronous (beta 0), 30 W sunlit harvest on a sun-pointing
array, a 43 Wh battery starting full, a 5 W bus."""
_log = logging.getLogger("hil.bench.environment")


class _BenchSatellite(SatelliteEnvironment):
    """The satellite's physics, with sunlight the bench can force (eclipse entry, sunlight)."""

    forced_illumination: float | None = None

    def lighting(self, t_unix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        light, cos_incidence = super().lighting(t_unix)
        if self.forced_illumination is None:
            return light, cos_incidence
        # Forced light falls on the array face-on, whatever the attitude.
        return np.full_like(light, self.forced_illumination), np.ones_like(cos_incidence)


class BenchEnvironment:
    """The physics of one satellite around a target, fed to it over the link; an async context
    manager whose task sends a record every `period_s` (loop clock) while entered.

    `start_unix_s` is the physics' UTC time at entry; None takes the target's mission time from
    its latest `time.TAI_S` telemetry (so the bench's sunlight is the one the node forecasts
    from the same orbit), else the orbit's epoch. `gauge` sends the battery's true state of
    charge as the EPS's gauge (the node initialises its coulomb count from it at first boot).
    `temperature_c` is the board temperature reported (None: no sensor).
    """

    def __init__(
        self,
        api: IntegrationApi,
        *,
        orbit: Orbit,
        power_system: PowerSystem,
        start_unix_s: float | None = None,
        period_s: float = 1.0,
        attitude: Attitude = "sun_pointing",
        gauge: bool = True,
        temperature_c: float | None = None,
    ) -> None:
        if not (math.isfinite(period_s) and period_s > 0.0):
            raise ValueError(f"bench environment period_s={period_s} is not > 0")
        self.api = api
        self.orbit = orbit
        self.power_system = power_system
        self.start_unix_s = start_unix_s
        self.period_s = float(period_s)
        self.attitude = attitude
        self.gauge = gauge
        self.temperature_c = temperature_c
        self.sent: list[SensorRecord] = []
        """Every record handed to the ground station, oldest first."""
        self.superseded = 0  # records replaced by a newer one before the station could take them
        self.send_errors = 0  # records the station refused (link closed, ...): logged
        self.driven_j = 0.0  # energy drive_to put in (+) or took out, outside the physics
        self.payload_power_w = 0.0  # the target's payload draw, from its telemetry
        self._satellite: _BenchSatellite | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_at_start = 0.0
        self._wake = asyncio.Event()
        self._pending: SensorRecord | None = None
        self._pending_ready = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._shared: SatelliteEnvironment | None = None
        self._unix_time: Callable[[], float] | None = None

    @classmethod
    def feeding(
        cls,
        api: IntegrationApi,
        physics: SatelliteEnvironment,
        *,
        unix_time: Callable[[], float],
        period_s: float = 1.0,
        gauge: bool = True,
    ) -> "BenchEnvironment":
        """A feed of `physics` that someone else owns and advances on its own clock
        (`unix_time`): the emulator's real node, whose physics the emulator samples too. The
        two share one clock, so neither steps the physics back in time. Its sunlight cannot be
        forced (that belongs to the physics' owner)."""
        environment = cls(
            api, orbit=physics.orbit, power_system=physics.power, period_s=period_s, gauge=gauge
        )
        environment._shared = physics
        environment._unix_time = unix_time
        return environment

    # -- life cycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> "BenchEnvironment":
        if self._satellite is not None:
            raise RuntimeError("a bench environment runs once: make a new one for another run")
        self._loop = asyncio.get_running_loop()
        self._loop_at_start = self._loop.time()
        if self._unix_time is not None:
            self.start_unix_s = self._unix_time()
        elif self.start_unix_s is None:
            self.start_unix_s = self._target_unix_s()
        if self._shared is not None:
            self._satellite = self._shared  # type: ignore[assignment]
        else:
            self._satellite = _BenchSatellite(
                self.orbit,
                self.power_system,
                attitude=self.attitude,
                payload_power_w=self._payload_power_w,
                start_unix_s=self.start_unix_s,
                max_step_s=self.period_s,
            )
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._tasks = [
            self._group.create_task(self._physics(), name="bench physics"),
            self._group.create_task(self._sender(), name="bench sensor feed"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        group, self._group = self._group, None
        if group is not None:
            await group.__aexit__(None, None, None)

    def _target_unix_s(self) -> float:
        sample = self.api.station.latest.get(TIME_CHANNEL)
        if sample is not None and isinstance(sample.value, float) and math.isfinite(sample.value):
            return sample.value - TAI_EPOCH_TO_UNIX_EPOCH_S - TAI_MINUS_UTC_S
        return float(self.orbit.epoch_unix_s)

    # -- what tests use ----------------------------------------------------------------------------

    @property
    def state(self) -> PowerState:
        """The physics' latest state (the truth the records are measured on)."""
        return self._running().state

    @property
    def satellite(self) -> SatelliteEnvironment:
        """The physics itself, for totals and minimum state of charge."""
        return self._running()

    @property
    def time_unix_s(self) -> float:
        """The physics' time now (UTC Unix seconds)."""
        if self._unix_time is not None:
            return self._unix_time()
        assert self._loop is not None and self.start_unix_s is not None
        return self.start_unix_s + (self._loop.time() - self._loop_at_start)

    def drive_to(self, soc: float) -> None:
        """Set the battery's state of charge now (an emergency scenario); a record goes at once."""
        if not (math.isfinite(soc) and 0.0 <= soc <= 1.0):
            raise ValueError(f"drive_to: state of charge {soc} is not in 0..1")
        satellite = self._running()
        satellite.advance(self.time_unix_s)  # what went before, under the old charge
        battery = satellite.power.battery
        target_j = soc * battery.capacity_j
        self.driven_j += target_j - battery.energy_j
        battery.energy_j = target_j
        satellite.advance(self.time_unix_s)  # `state` shows it: the voltage under today's load
        self._wake.set()

    def force_illumination(self, illumination: float | None) -> None:
        """Light the array with `illumination` (0.0 eclipse, 1.0 full Sun) from now on, or with
        the orbit's own again (None); a record goes at once."""
        if illumination is not None and not (
            math.isfinite(illumination) and 0.0 <= illumination <= 1.0
        ):
            raise ValueError(f"force_illumination: {illumination} is not in 0..1 (or None)")
        if self._shared is not None:
            raise RuntimeError(
                "force_illumination: this feed reads physics it does not own (feeding()); "
                "force the sunlight where that physics is made"
            )
        satellite = self._running()
        satellite.advance(self.time_unix_s)
        satellite.forced_illumination = illumination
        satellite.advance(self.time_unix_s)
        self._wake.set()

    @property
    def forced_illumination(self) -> float | None:
        return self._running().forced_illumination

    def _running(self) -> _BenchSatellite:
        if self._satellite is None:
            raise RuntimeError("enter the bench environment (async with) first")
        return self._satellite

    # -- the tasks ---------------------------------------------------------------------------------

    def _payload_power_w(self) -> float:
        sample = self.api.station.latest.get(PAYLOAD_POWER_CHANNEL)
        if sample is not None:
            value = sample.value
            if isinstance(value, int | float) and math.isfinite(value) and value >= 0.0:
                self.payload_power_w = float(value)
        return self.payload_power_w

    async def _physics(self) -> None:
        """A step and a record every period, on schedule; drive_to and force_illumination add
        one at once without moving the schedule."""
        assert self._loop is not None
        loop = self._loop
        next_s = loop.time()
        while True:
            # The loop runs a timer due within its clock resolution without moving its clock
            # there (a virtual clock can then sit a few ulps short of it): count it as reached.
            now = loop.time() + _DUE_WITHIN_S
            while next_s <= now:
                next_s += self.period_s
            self._offer(self._step())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(next_s):
                    await self._wake.wait()

    def _step(self) -> SensorRecord:
        satellite = self._running()
        unix_s = self.time_unix_s
        state = satellite.advance(unix_s)
        reading = satellite.reading()
        return SensorRecord(
            bench_time_tai_s=MissionClock.tai_from_unix(unix_s),
            battery_voltage_v=reading.battery_voltage_v,
            battery_current_a=reading.battery_current_a,
            solar_power_w=reading.solar_power_w,
            load_power_w=reading.load_power_w,
            payload_power_w=None,  # the node knows its own; echoing ours would freeze the loop
            soc=state.soc if self.gauge else None,
            temperature_c=self.temperature_c,
            illumination=state.illumination,
        )

    def _offer(self, record: SensorRecord) -> None:
        """Newest wins: a record the station has not taken yet is stale once a new one exists."""
        if self._pending is not None:
            self.superseded += 1
        self._pending = record
        self._pending_ready.set()

    async def _sender(self) -> None:
        while True:
            await self._pending_ready.wait()
            self._pending_ready.clear()
            record, self._pending = self._pending, None
            if record is None:
                continue
            try:
                await self.api.station.send_packet(
                    icd.Apid.SIMULATED_SENSORS, record.encode(), wait=False
                )
            except (GroundError, ProtocolError) as error:  # closed link; a value out of range
                self.send_errors += 1
                _log.warning("sensor record not sent: %s", error)
                continue
            self.sent.append(record)


def default_orbit() -> Orbit:
    """The issue-5 satellite's orbit (its TLE is `default_orbit().tle`, for the target's
    `[orbit]`), epoch 2026-09-21T12:00Z."""
    return DEFAULT_SATELLITE.orbit()


def default_power_system(soc: float | None = None) -> PowerSystem:
    """The issue-5 satellite's power system: 30 W array, 43 Wh battery (full unless `soc`), 5 W."""
    satellite = DEFAULT_SATELLITE
    solar = SolarArray(
        area_m2=satellite.solar_power_w / (1361.0 * ARRAY_EFFICIENCY), efficiency=ARRAY_EFFICIENCY
    )
    battery = Battery.from_wh(satellite.battery_wh, satellite.initial_soc if soc is None else soc)
    return PowerSystem(solar, battery, satellite.bus_power_w)


def default_bench_environment(api: IntegrationApi, **options: Any) -> BenchEnvironment:
    """The issue-5 satellite around the target: 550 km, 43 Wh, 30 W array, 5 W bus, 1 Hz records.

    `options` go to BenchEnvironment (start_unix_s, period_s, gauge, temperature_c, ...)."""
    return BenchEnvironment(
        api, orbit=default_orbit(), power_system=default_power_system(), **options
    )
