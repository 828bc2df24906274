"""The power component: reads the EPS, estimates the state of charge, forecasts sunlight, and
governs the payload (workers, which jobs start, LOW_POWER and SAFE) from them.

Two loops, as on a real EPS controller:
- 10 Hz, the protection: under-voltage sheds the payload in the same tick and enters SAFE;
- 1 Hz, the control: state of charge by coulomb counting, the forecast through the next
  eclipses (from the node's own TLE), and the policy's plan applied to the payload.
The modes it enters (LOW_POWER below the floor, SAFE on under-voltage) it also leaves, with
hysteresis, once the battery has recovered; a mode entered for another reason is not its own.
"""

import asyncio
import contextlib
import math
from dataclasses import replace
from enum import IntEnum
from typing import Any

from flight.orbit import Forecast, Orbit, OrbitError
from flight.payload import Payload, PayloadPlan
from flight.power.eps import Eps, EpsError, EpsReading, SimulatedEps
from flight.power.governor import ACTIVE, POLICIES, EnergyModel, Outlook, Policy, Segment
from flight.power.soc import CoulombCounter
from flight.power.sysfs import CpuFrequency
from flight.protocol.cuc import TAI_EPOCH_TO_UNIX_EPOCH_S
from flight.protocol.errors import ProtocolError
from flight.protocol.sensors import SensorRecord
from flight.runtime.clock import TAI_MINUS_UTC_S
from flight.runtime.component import (
    Arg,
    CommandError,
    Component,
    Event,
    Mode,
    Parameter,
    Severity,
    Telemetry,
    command,
    rate_group,
)
from flight.runtime.config import PowerSection
from flight.runtime.store import Store, StoreError

POWER_COMPONENT_ID = 16
"""The power component's id when a node hosts it."""
SOC_RECORD = "power_soc"
SOC_SAVE_PERIOD_S = 60.0  # the estimate survives a reboot to within a minute of coulombs
STALE_EPS_S = 5.0  # no EPS reading for this long: the payload is shed
LOW_POWER_EXIT_ABOVE_FLOOR = 0.05
UNDERVOLTAGE_HYSTERESIS_V = 0.3
ESTIMATE_TIME_CONSTANT_S = 600.0  # smoothing of the measured bus load and solar harvest
_UNIX_TO_TAI_S = TAI_EPOCH_TO_UNIX_EPOCH_S + TAI_MINUS_UTC_S
SENSOR_EVENT_PERIOD_S = 10.0  # refused sensor records: every one counted, one event per period


class PolicyName(IntEnum):
    ENERGY_AWARE = 0
    ALWAYS_ON = 1
    THRESHOLD = 2
    SUNLIT_ONLY = 3


class Power(Component):
    """EPS readings, state of charge, sunlight forecast and the payload governor."""

    SOC = Telemetry("f32", doc="Estimated battery state of charge, 0..1 (coulomb counting).")
    BATTERY_VOLTAGE_V = Telemetry("f32", units="V")
    BATTERY_CURRENT_A = Telemetry("f32", units="A", doc="Positive while charging.")
    SOLAR_POWER_W = Telemetry("f32", units="W")
    LOAD_POWER_W = Telemetry("f32", units="W", doc="Everything drawn from the bus.")
    PAYLOAD_POWER_W = Telemetry("f32", units="W", doc="Measured, or modelled without a sensor.")
    TEMPERATURE_C = Telemetry("f32", units="degC", doc="Hottest thermal zone.")
    SUNLIT = Telemetry("bool")
    ECLIPSE_IN_S = Telemetry("f32", units="s", doc="Until the next eclipse; 0 inside one.")
    SUNLIGHT_IN_S = Telemetry("f32", units="s", doc="Until sunlight returns; 0 while sunlit.")
    PREDICTED_MIN_SOC = Telemetry("f32", doc="Lowest state of charge the governor foresees.")
    PLAN_WORKERS = Telemetry("u8", doc="Payload workers the governor allows now.")
    POLICY = Telemetry("enum", values=PolicyName)
    SHEDS = Telemetry("u32", doc="Times the payload was shed (under-voltage, no EPS data).")
    EPS_ERRORS = Telemetry("u32", doc="EPS reads that failed.")
    LAST_SHED_TICKS = Telemetry(
        "u8",
        doc="10 Hz cycles that passed without acting between the arrival of the bench record "
        "showing under-voltage and the shed: 0 is the first cycle after it arrived.",
    )
    SENSOR_RECORDS = Telemetry("u32", doc="Simulated sensor records fed to the EPS (a bench).")
    SENSOR_RECORDS_REFUSED = Telemetry(
        "u32", doc="Simulated sensor records refused: this node reads a real EPS."
    )
    SENSOR_RECORDS_MALFORMED = Telemetry("u32", doc="Simulated sensor records that did not decode.")

    PAYLOAD_SHED = Event(
        Severity.HIGH, "payload shed: {reason}", reason=Arg("string", max_length=96)
    )
    PLAN_CHANGED = Event(
        Severity.INFORMATIVE,
        "payload workers {workers}: {reason}",
        workers=Arg("u8"),
        reason=Arg("string", max_length=96),
    )
    CPU_CAPPED = Event(
        Severity.LOW,
        "CPU frequency cap {cap_khz} kHz (0: none): {reason}",
        cap_khz=Arg("u32"),
        reason=Arg("string", max_length=96),
    )
    EPS_FAILED = Event(
        Severity.MEDIUM, "EPS read failed: {reason}", reason=Arg("string", max_length=96)
    )
    FORECAST_FAILED = Event(
        Severity.MEDIUM, "no sunlight forecast: {reason}", reason=Arg("string", max_length=96)
    )

    SENSORS_REFUSED = Event(
        Severity.MEDIUM, "simulated sensor data refused: this node reads a real EPS"
    )
    SENSOR_RECORD_MALFORMED = Event(
        Severity.LOW,
        "simulated sensor record refused: {reason}",
        reason=Arg("string", max_length=96),
    )

    FLOOR_SOC = Parameter("f32", default=0.70, minimum=0.0, maximum=0.99, doc="Planning floor.")
    UNDERVOLTAGE_V = Parameter("f32", default=6.6, minimum=0.0, maximum=1000.0)
    THERMAL_LIMIT_C = Parameter(
        "f32", default=85.0, minimum=0.0, maximum=150.0, doc="Hottest zone allowed: workers cut."
    )

    def __init__(
        self,
        config: PowerSection,
        *,
        eps: Eps,
        payload: Payload,
        orbit: Orbit | None = None,
        policy: Policy | None = None,
        cpufreq: CpuFrequency | None = None,
        name: str = "power",
    ) -> None:
        super().__init__(name)
        self.config = config
        self.eps = eps
        self.payload = payload
        self.orbit = orbit
        self.cpufreq = cpufreq  # given only where `[power] cpu_freq_control` allows writing
        self._cap_khz: int | None = None
        self.policy = POLICIES[config.policy]()
        self.counter = CoulombCounter(
            config.capacity_wh * 3600.0,
            charge_efficiency=config.charge_efficiency,
            discharge_efficiency=config.discharge_efficiency,
        )
        self.bus_power_w = config.bus_power_w
        self.solar_power_w = config.solar_power_w
        self.plan = PayloadPlan(0, (), "not yet decided")
        self.forecast: Forecast | None = None
        self.reading: EpsReading | None = None
        self._node = None
        self._store: Store | None = None
        self._last_read_s: float | None = None
        self._last_count_s: float | None = None
        self._last_save_s = -math.inf
        self._forecast_s = -math.inf
        self._eps_failing = False
        self._forecast_failing = False
        self._entered: Mode | None = None  # the mode this component put the node in
        self._sheds = 0
        self._eps_errors = 0
        self._protect_cycles = 0
        self._fed_at_cycle = 0  # the protect cycle during which the last bench record arrived
        self._sensor_counts = {"fed": 0, "refused": 0, "malformed": 0}
        self._sensor_evented_s = {"refused": -math.inf, "malformed": -math.inf}
        self.set_parameter(type(self).FLOOR_SOC, config.floor_soc)
        self.set_parameter(type(self).UNDERVOLTAGE_V, config.undervoltage_v)
        self.use_policy(policy or self.policy)

    def use_policy(self, policy: Policy) -> None:
        """Govern the payload with `policy` from the next control tick on."""
        self.policy = policy
        self.telemetry.POLICY = PolicyName[policy.name.upper()]

    def bind_node(self, node: Any) -> None:
        self._node = node

    @property
    def soc(self) -> float:
        return self.counter.soc

    # -- boot --------------------------------------------------------------------------------------

    def _initial_soc(self, reading: EpsReading) -> None:
        """The estimate saved before the reboot, else the EPS's own, else the voltage's guess."""
        store = self._node.store if self._node is not None else None
        self._store = store
        if store is not None:
            try:
                record = store.load(SOC_RECORD)
            except StoreError:
                record = None
            if record is not None and isinstance(record.get("soc"), float):
                self.counter.set(min(max(record["soc"], 0.0), 1.0))
                return
        if reading.soc is not None:
            self.counter.set(reading.soc)
        else:
            self.counter.set_from_voltage(reading.battery_voltage_v)

    # -- the 10 Hz protection ----------------------------------------------------------------------

    @rate_group("10Hz")
    def protect(self) -> None:
        self._protect_cycles += 1
        now = asyncio.get_running_loop().time()
        try:
            reading = self.eps.read()
        except EpsError as error:
            self._eps_errors += 1
            if not self._eps_failing:
                self._eps_failing = True
                self.emit(self.EPS_FAILED, reason=str(error))
            if self._last_read_s is not None and now - self._last_read_s > STALE_EPS_S:
                self._shed(f"no EPS reading for {now - self._last_read_s:.0f} s")
            return
        self._eps_failing = False
        if self.reading is None:
            self._initial_soc(reading)
        self.reading = reading
        self._last_read_s = now
        if self._last_count_s is not None:
            self.counter.update(
                reading.battery_current_a, reading.battery_voltage_v, now - self._last_count_s
            )
        self._last_count_s = now
        undervoltage_v = float(self.parameters.UNDERVOLTAGE_V)
        if reading.battery_voltage_v < undervoltage_v:
            reason = f"under-voltage {reading.battery_voltage_v:.2f} V"
            ticks = min(self._protect_cycles - 1 - self._fed_at_cycle, 255)
            if self._shed(reason):
                self.telemetry.LAST_SHED_TICKS = max(ticks, 0)
            if self._entered is not Mode.SAFE:  # SAFE even with nothing running to shed
                self._enter(Mode.SAFE, reason)
        elif (
            self._entered is Mode.SAFE
            and reading.battery_voltage_v >= undervoltage_v + UNDERVOLTAGE_HYSTERESIS_V
        ):
            self._leave("battery voltage recovered")

    def _shed(self, reason: str) -> bool:
        """Stop the payload now; True the first time for this episode."""
        if self.plan.workers == 0 and self.payload.busy_workers == 0:
            return False
        self.plan = PayloadPlan(0, (), reason)
        self.payload.shed(reason)
        self._sheds += 1
        self.emit(self.PAYLOAD_SHED, reason=reason)
        return True

    def _enter(self, mode: Mode, reason: str) -> None:
        node_mode = self._node.mode if self._node is not None else None
        if node_mode is None or node_mode.current is Mode.BOOT:
            return
        may_change = node_mode.current is Mode.NOMINAL or self._entered is not None
        if may_change and (node_mode.enter(mode, reason) or node_mode.current is mode):
            self._entered = mode

    def _leave(self, reason: str) -> None:
        node_mode = self._node.mode if self._node is not None else None
        if node_mode is not None and node_mode.current is self._entered:
            node_mode.enter(Mode.NOMINAL, reason)
        self._entered = None

    # -- the 1 Hz control --------------------------------------------------------------------------

    @rate_group("1Hz")
    def control(self) -> None:
        if self.reading is None:
            return  # nothing known yet: the payload stays as it is (idle at boot)
        loop = asyncio.get_running_loop()
        now = loop.time()
        now_tai = self._tai(now)
        self._learn(self.reading)
        self._refresh_forecast(now, now_tai)
        self._save_soc(now)
        soc = self.counter.soc
        floor = float(self.parameters.FLOOR_SOC)
        if self._entered is None and soc < floor:
            reason = f"state of charge {soc:.1%} below the floor {floor:.0%}"
            self._shed(reason)
            self._enter(Mode.LOW_POWER, reason)
        elif self._entered is Mode.LOW_POWER and soc >= floor + LOW_POWER_EXIT_ABOVE_FLOOR:
            self._leave(f"state of charge {soc:.1%} recovered")
        outlook = self.outlook(now_tai)
        plan = self.policy.decide(outlook)
        mode = self._node.mode.current if self._node is not None else Mode.NOMINAL
        if mode is not Mode.NOMINAL:
            plan = PayloadPlan(0, (), f"node in {mode.name}")
        if self._last_read_s is not None and now - self._last_read_s > STALE_EPS_S:
            plan = PayloadPlan(0, (), "no recent EPS reading")
        plan = replace(plan, cpu_freq_cap_khz=self._thermal_cap_khz())
        if plan.workers != self.plan.workers:
            self.emit(self.PLAN_CHANGED, workers=plan.workers, reason=plan.reason[:96])
        self._apply_cap(plan.cpu_freq_cap_khz)
        self.plan = plan
        self.payload.apply(plan)
        self._update_telemetry(now_tai, outlook)

    def outlook(self, now_tai: float) -> Outlook:
        payload_config = self.payload.config
        jobs = self.payload.jobs(ACTIVE)
        model = EnergyModel(
            capacity_j=self.counter.capacity_j,
            solar_power_w=self.solar_power_w,
            bus_power_w=self.bus_power_w,
            payload_idle_w=payload_config.idle_power_w,
            payload_busy_w=payload_config.busy_power_w,
            max_workers=payload_config.max_workers,
            charge_efficiency=self.config.charge_efficiency,
            discharge_efficiency=self.config.discharge_efficiency,
        )
        return Outlook(
            now_s=now_tai,
            soc=self.counter.soc,
            floor_soc=float(self.parameters.FLOOR_SOC),
            sunlit=self._sunlit(now_tai),
            model=model,
            segments=self._segments(now_tai),
            jobs=tuple(jobs),
            tile_time_s={job.job_id: self.payload.tile_time_s(job) for job in jobs},
            max_workers_thermal=self._thermal_workers(),
        )

    def _learn(self, reading: EpsReading) -> None:
        """Follow the measured bus load and (in sunlight) harvest, smoothed over minutes."""
        alpha = 1.0 / ESTIMATE_TIME_CONSTANT_S  # one sample a second
        payload_w = reading.payload_power_w
        if payload_w is None:
            payload_w = self.payload.power_w()
        bus_w = max(reading.load_power_w - payload_w, 0.0)
        self.bus_power_w += alpha * (bus_w - self.bus_power_w)
        illumination = self._illumination(self._tai(asyncio.get_running_loop().time()))
        if illumination is not None and illumination > 0.9:
            full_sun_w = reading.solar_power_w / illumination
            self.solar_power_w += alpha * (full_sun_w - self.solar_power_w)

    def _thermal_workers(self) -> int:
        """All workers with headroom; one fewer per 5 degC above (limit - 10); none at the limit."""
        maximum = self.payload.config.max_workers
        temperature = self.reading.temperature_c if self.reading is not None else None
        if temperature is None:
            return maximum
        limit = float(self.parameters.THERMAL_LIMIT_C)
        if temperature >= limit:
            return 0
        over = temperature - (limit - 10.0)
        return maximum if over <= 0 else max(maximum - 1 - int(over // 5.0), 0)

    def _thermal_cap_khz(self) -> int | None:
        """A CPU frequency cap from thermal headroom, where the board lets us set one: none up
        to 10 degC below the limit, then down linearly to the minimum at 10 degC above it."""
        temperature = self.reading.temperature_c if self.reading is not None else None
        if self.cpufreq is None or temperature is None:
            return None
        limit = float(self.parameters.THERMAL_LIMIT_C)
        over = temperature - (limit - 10.0)
        if over <= 0:
            return None
        try:
            low, high = self.cpufreq.limits_khz
        except EpsError:
            return None
        fraction = max(0.0, 1.0 - over / 20.0)
        return int(low + (high - low) * fraction)

    def _apply_cap(self, cap_khz: int | None) -> None:
        if self.cpufreq is None or cap_khz == self._cap_khz:
            return
        try:
            self.cpufreq.cap(cap_khz)
        except EpsError as error:
            self.cpufreq = None  # cannot write here: say so once, keep governing by workers
            self.emit(self.CPU_CAPPED, cap_khz=0, reason=f"not applied: {error}"[:96])
            return
        self._cap_khz = cap_khz
        why = "thermal headroom" if cap_khz is not None else "headroom restored"
        self.emit(self.CPU_CAPPED, cap_khz=cap_khz or 0, reason=why)

    # -- forecast ----------------------------------------------------------------------------------

    def _tai(self, loop_time: float) -> float:
        clock = self._node.clock if self._node is not None else None
        return clock.tai_at(loop_time) if clock is not None else loop_time

    def _refresh_forecast(self, now: float, now_tai: float) -> None:
        if self.orbit is None or now - self._forecast_s < self.config.forecast_period_s:
            return
        self._forecast_s = now
        try:
            self.forecast = Forecast.compute(
                self.orbit, now_tai - _UNIX_TO_TAI_S, self.config.forecast_horizon_s
            )
        except OrbitError as error:
            self.forecast = None
            if not self._forecast_failing:
                self._forecast_failing = True
                self.emit(self.FORECAST_FAILED, reason=str(error))
            return
        self._forecast_failing = False

    def _illumination(self, now_tai: float) -> float | None:
        if self.forecast is None:
            return None
        unix = now_tai - _UNIX_TO_TAI_S
        if not self.forecast.start_unix_s <= unix <= self.forecast.end_unix_s:
            return None
        return self.forecast.illumination_at(unix)

    def _sunlit(self, now_tai: float) -> bool:
        illumination = self._illumination(now_tai)
        if illumination is not None:
            return illumination >= 0.5
        reading = self.reading
        return reading is not None and reading.solar_power_w > 0.1 * self.config.solar_power_w

    def _segments(self, now_tai: float) -> tuple[Segment, ...]:
        if self.forecast is None:
            return ()
        segments = []
        for interval in self.forecast.intervals:
            end = interval.end_unix_s + _UNIX_TO_TAI_S
            if end <= now_tai:
                continue
            illumination = 1.0 if interval.kind == "sunlit" else 0.0
            segments.append(Segment(interval.start_unix_s + _UNIX_TO_TAI_S, end, illumination))
        return tuple(segments)

    # -- persistence and telemetry -----------------------------------------------------------------

    def _save_soc(self, now: float) -> None:
        if self._store is None or now - self._last_save_s < SOC_SAVE_PERIOD_S:
            return
        self._last_save_s = now
        # Not saved (a full disk): the estimate is re-learnt at the next full charge.
        with contextlib.suppress(StoreError):
            self._store.save(SOC_RECORD, {"soc": float(self.counter.soc)})

    def _update_telemetry(self, now_tai: float, outlook: Outlook) -> None:
        t = self.telemetry
        reading = self.reading
        assert reading is not None
        t.SOC = self.counter.soc
        t.BATTERY_VOLTAGE_V = reading.battery_voltage_v
        t.BATTERY_CURRENT_A = reading.battery_current_a
        t.SOLAR_POWER_W = reading.solar_power_w
        t.LOAD_POWER_W = reading.load_power_w
        payload_w = reading.payload_power_w
        t.PAYLOAD_POWER_W = payload_w if payload_w is not None else self.payload.power_w()
        t.TEMPERATURE_C = reading.temperature_c if reading.temperature_c is not None else math.nan
        t.SUNLIT = outlook.sunlit
        t.ECLIPSE_IN_S = _until(outlook, 0.0)
        t.SUNLIGHT_IN_S = _until(outlook, 1.0)
        predicted = getattr(self.policy, "last_predicted_min_soc", math.nan)
        t.PREDICTED_MIN_SOC = predicted
        t.PLAN_WORKERS = self.plan.workers
        t.SHEDS = self._sheds & 0xFFFF_FFFF
        t.EPS_ERRORS = self._eps_errors & 0xFFFF_FFFF

    # -- simulated sensors (a test bench) ----------------------------------------------------------

    def receive_sensors(self, octets: bytes) -> None:
        """A SensorRecord from the bench (APID 0x7F1): fed to the EPS when it is a SimulatedEps
        with no source of its own, else refused; counted and evented, never raises."""
        eps = self.eps
        # A sourced SimulatedEps reads in-process physics (the emulator): a feed would be ignored.
        if not isinstance(eps, SimulatedEps) or not eps.fed:
            self._sensor_refused("refused", self.SENSORS_REFUSED)
            return
        try:
            reading = SensorRecord.decode(octets).reading()
        except (ProtocolError, ValueError) as error:
            self._sensor_refused("malformed", self.SENSOR_RECORD_MALFORMED, reason=str(error)[:96])
            return
        eps.feed(reading)
        self._fed_at_cycle = self._protect_cycles
        self._sensor_counts["fed"] += 1
        self.telemetry.SENSOR_RECORDS = self._sensor_counts["fed"] & 0xFFFF_FFFF

    def _sensor_refused(self, kind: str, event: Event, **arguments: str) -> None:
        counts = self._sensor_counts
        counts[kind] += 1
        if kind == "refused":
            self.telemetry.SENSOR_RECORDS_REFUSED = counts[kind] & 0xFFFF_FFFF
        else:
            self.telemetry.SENSOR_RECORDS_MALFORMED = counts[kind] & 0xFFFF_FFFF
        now = asyncio.get_running_loop().time()
        if now - self._sensor_evented_s[kind] >= SENSOR_EVENT_PERIOD_S:
            self._sensor_evented_s[kind] = now
            self.emit(event, **arguments)

    # -- commands ----------------------------------------------------------------------------------

    @command(policy=Arg("enum", values=PolicyName, doc="The payload power policy."))
    async def SET_POLICY(self, policy: int) -> None:
        """Govern the payload with another policy (the baselines are for comparison)."""
        name = PolicyName(policy).name.lower()
        self.config = replace(self.config, policy=name)
        self.use_policy(POLICIES[name]())

    @command(soc=Arg("f32", minimum=0.0, maximum=1.0, doc="The true state of charge, 0..1."))
    async def SET_SOC(self, soc: float) -> None:
        """Correct the state-of-charge estimate (after a capacity test or a battery swap)."""
        if self.reading is None:
            raise CommandError("no EPS reading yet: the estimate starts with the first one")
        self.counter.set(soc)


def _until(outlook: Outlook, illumination: float) -> float:
    """Seconds until the forecast's next stretch with `illumination` (0 inside one); NaN when
    there is no forecast or none within its horizon."""
    for segment in outlook.segments:
        if segment.illumination == illumination:
            return max(segment.start_s - outlook.now_s, 0.0)
    return math.nan
