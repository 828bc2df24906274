"""The power scenario: one satellite for a day of virtual time, its real node governing the
payload against simulated physics, once per policy (`penumbra sim power`, benchmarks/power.py).

Everything onboard is the flight code unchanged: the Node, the payload running every tile
through the C core, the power component with its coulomb counter and its own SGP4 forecast.
What is simulated is what a laboratory cannot have: the orbit's sunlight on the array, the
battery, and a board whose tiles take `tile_time_s` (virtual time holds still while the real
inference runs). Imaging jobs arrive at seeded Poisson times while the satellite is in sunlight,
the same jobs for every policy, so their results compare.
"""

import asyncio
import hashlib
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from flight.orbit import Orbit
from flight.payload import JobState, Payload
from flight.power import EpsReading, SimulatedEps
from flight.power.component import Power
from flight.power.governor import POLICIES, Policy, Threshold
from flight.runtime import clock
from flight.runtime.clock import MissionClock
from flight.runtime.config import (
    DownlinkSection,
    HousekeepingSection,
    NodeConfig,
    NodeSection,
    OrbitSection,
    PayloadSection,
    PowerSection,
    TimeSection,
)
from flight.runtime.main import compute_components
from flight.runtime.node import Node
from hil.env import Battery, PowerSystem, SatelliteEnvironment, SolarArray
from hil.models import cloud_mask_unet

WH = 3600.0
SCENARIO_EPOCH_UNIX_S = 1_789_992_000.0  # 2026-09-21T12:00:00Z, near the equinox
ARRAY_EFFICIENCY = 0.30


@dataclass(frozen=True, slots=True)
class PowerScenario:
    """The issue's case: 550 km, 30 W sunlit harvest, 43 Wh, 5 W bus, payload 15/3 W busy/idle."""

    beta_deg: float = 0.0
    duration_s: float = 86_400.0
    altitude_m: float = 550e3
    inclination_deg: float = 97.6  # sun-synchronous at 550 km: the beta angle holds all day
    epoch_unix_s: float = SCENARIO_EPOCH_UNIX_S
    solar_power_w: float = 30.0  # sun-pointing array in full sunlight
    battery_wh: float = 43.0
    initial_soc: float = 1.0
    bus_power_w: float = 5.0
    payload_idle_w: float = 3.0
    payload_busy_w: float = 15.0
    max_workers: int = 4
    floor_soc: float = 0.70  # 30% depth of discharge
    tile_time_s: float = 30.0  # one tile on one worker of the board being modelled
    batch_tiles: int = 8
    jobs_per_sunlit_hour: float = 40.0
    tiles_per_job: tuple[int, int] = (10, 40)
    deadline_after_s: tuple[float, float] = (3_600.0, 4 * 3_600.0)
    values: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)
    value_weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    seed: int = 1
    sample_period_s: float = 30.0

    def orbit(self) -> Orbit:
        return Orbit.with_beta(
            self.altitude_m, self.inclination_deg, self.beta_deg, self.epoch_unix_s
        )


@dataclass(frozen=True, slots=True)
class PolicyChoice:
    """A policy under test and its label in the table."""

    label: str
    make: Callable[[], Policy]


POLICY_CHOICES = (
    PolicyChoice("energy_aware", POLICIES["energy_aware"]),
    PolicyChoice("always_on", POLICIES["always_on"]),
    PolicyChoice("threshold 60/45", lambda: Threshold(0.60, 0.45)),
    PolicyChoice("threshold 90/75", lambda: Threshold(0.90, 0.75)),
    PolicyChoice("sunlit_only", POLICIES["sunlit_only"]),
)


@dataclass(frozen=True, slots=True)
class ImagingJob:
    arrival_s: float  # seconds after the start
    tiles: int
    deadline_s: float  # seconds after the start
    value: float
    priority: int


@dataclass(frozen=True, slots=True)
class Sample:
    time_s: float
    soc: float  # the battery's true state of charge
    soc_estimate: float  # the node's coulomb count
    payload_power_w: float
    solar_power_w: float
    illumination: float
    workers: int


@dataclass(frozen=True, slots=True)
class PowerResult:
    """One policy's day, measured on the physics (truth), not on what the node believes."""

    policy: str
    beta_deg: float
    jobs_submitted: int
    jobs_done: int
    value_submitted: float
    value_done: float
    deadline_misses: int
    min_soc: float
    time_below_floor_s: float
    tiles_done: int
    energy_per_inference_j: float
    solar_wasted_wh: float
    sheds: int
    samples: tuple[Sample, ...] = field(repr=False)


def imaging_jobs(scenario: PowerScenario, orbit: Orbit) -> list[ImagingJob]:
    """Seeded Poisson arrivals, kept where the satellite is sunlit (imaging the day side)."""
    from flight.orbit import illumination, sun_position_m

    rng = np.random.default_rng(scenario.seed)
    rate_per_s = scenario.jobs_per_sunlit_hour / 3600.0
    gaps = rng.exponential(1.0 / rate_per_s, size=int(scenario.duration_s * rate_per_s * 2) + 16)
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < scenario.duration_s]
    times = scenario.epoch_unix_s + arrivals
    lit = illumination(orbit.positions_m(times), sun_position_m(times)) >= 0.5
    weights = np.asarray(scenario.value_weights) / sum(scenario.value_weights)
    jobs = []
    for arrival in arrivals[lit]:
        value_index = int(rng.choice(len(scenario.values), p=weights))
        low, high = scenario.tiles_per_job
        jobs.append(
            ImagingJob(
                arrival_s=float(arrival),
                tiles=int(rng.integers(low, high + 1)),
                deadline_s=float(arrival + rng.uniform(*scenario.deadline_after_s)),
                value=scenario.values[value_index],
                priority=value_index,  # the operators' static priority follows the value class
            )
        )
    return jobs


def node_config(
    scenario: PowerScenario,
    orbit: Orbit,
    state_dir: Path,
    *,
    name: str = "sat1",
    epoch_tai_s: float | None = None,
    housekeeping_interval_ms: int = 60_000,
    store_packets: int = 2_000,
) -> NodeConfig:
    """The node.toml of a simulated satellite of `scenario` (the emulator's too): a simulated
    EPS, the energy-aware policy (a run may swap it), the scenario's payload and its own TLE."""
    line1, line2 = orbit.tle
    if epoch_tai_s is None:
        epoch_tai_s = MissionClock.tai_from_unix(scenario.epoch_unix_s)
    return NodeConfig(
        source=f"<simulated {name}, beta {scenario.beta_deg:g}>",
        node=NodeSection(name=name, state_dir=state_dir),
        time=TimeSection(epoch_tai_s=epoch_tai_s),
        housekeeping=HousekeepingSection(interval_ms=housekeeping_interval_ms),
        downlink=DownlinkSection(store_packets=store_packets),
        orbit=OrbitSection(tle_line1=line1, tle_line2=line2),
        power=PowerSection(
            eps="simulated",
            policy="energy_aware",
            capacity_wh=scenario.battery_wh,
            floor_soc=scenario.floor_soc,
            bus_power_w=scenario.bus_power_w,
            solar_power_w=scenario.solar_power_w,
        ),
        payload=PayloadSection(
            max_workers=scenario.max_workers,
            batch_tiles=scenario.batch_tiles,
            idle_power_w=scenario.payload_idle_w,
            busy_power_w=scenario.payload_busy_w,
            simulated_tile_time_s=scenario.tile_time_s,
        ),
    )


def satellite_environment(
    scenario: PowerScenario, orbit: Orbit, payload_power_w: Callable[[], float]
) -> SatelliteEnvironment:
    """The physics of one satellite of `scenario`: a sun-pointing array giving its sunlit
    harvest, its battery and bus, the payload's power as the node reports it."""
    solar = SolarArray(
        area_m2=scenario.solar_power_w / (1361.0 * ARRAY_EFFICIENCY), efficiency=ARRAY_EFFICIENCY
    )
    return SatelliteEnvironment(
        orbit,
        PowerSystem(
            solar,
            Battery.from_wh(scenario.battery_wh, scenario.initial_soc),
            scenario.bus_power_w,
        ),
        attitude="sun_pointing",
        payload_power_w=payload_power_w,
        start_unix_s=scenario.epoch_unix_s,
        soc_floors=(scenario.floor_soc,),
    )


def physics_eps(
    environment: SatelliteEnvironment,
    *,
    loop_time: Callable[[], float],
    unix_time: Callable[[], float],
    payload_power_w: Callable[[], float],
) -> SimulatedEps:
    """A simulated EPS reading `environment`. The physics moves on each second, and at once
    when the payload's load changes (its current drops the battery voltage): the 10 Hz
    protection sees what it must, and a day costs 86,400 steps of the physics, not 864,000."""
    last: tuple[float, float, EpsReading | None] = (math.nan, math.nan, None)

    def read() -> EpsReading:
        nonlocal last
        now, payload_w = loop_time(), payload_power_w()
        if not (now - last[0] < 1.0 and payload_w == last[1]) or last[2] is None:
            environment.advance(unix_time())
            last = (now, payload_w, environment.reading())
        return last[2]

    return SimulatedEps(read)


def run_policy(
    scenario: PowerScenario, choice: PolicyChoice, state_dir: Path | None = None
) -> PowerResult:
    """One policy through the scenario, on a fresh virtual-time loop and state directory."""
    if state_dir is None:
        with tempfile.TemporaryDirectory(prefix="penumbra-power-") as temporary:
            return run_policy(scenario, choice, Path(temporary))
    return clock.run(_run(scenario, choice, state_dir), virtual=True)


async def _run(scenario: PowerScenario, choice: PolicyChoice, state_dir: Path) -> PowerResult:
    orbit = scenario.orbit()
    jobs = imaging_jobs(scenario, orbit)
    # The payload is made below; the physics asks it for its power only once the node runs.
    environment = satellite_environment(scenario, orbit, lambda: payload.power_w())
    loop = asyncio.get_running_loop()
    start_loop_s = loop.time()

    def unix_now() -> float:
        return scenario.epoch_unix_s + (loop.time() - start_loop_s)

    config = node_config(scenario, orbit, state_dir)
    eps = physics_eps(
        environment,
        loop_time=loop.time,
        unix_time=unix_now,
        payload_power_w=lambda: payload.power_w(),
    )
    components = compute_components(config, eps=eps)
    payload = next(c for _, c in components if isinstance(c, Payload))
    power = next(c for _, c in components if isinstance(c, Power))
    power.use_policy(choice.make())
    samples: list[Sample] = []
    async with Node(config, components=components):
        model_path = state_dir / "cloud_mask.onnx"
        model_path.write_bytes(
            cloud_mask_unet(
                input_size=16, in_channels=1, base_channels=4, depth=2
            ).SerializeToString()
        )
        sha256 = hashlib.sha256(model_path.read_bytes()).hexdigest()
        await payload.add_model(model_path, sha256)
        epoch_tai = MissionClock.tai_from_unix(scenario.epoch_unix_s)
        rng = np.random.default_rng(scenario.seed + 1)
        energy_per_tile_j = (
            scenario.tile_time_s
            * (scenario.payload_busy_w - scenario.payload_idle_w)
            / scenario.max_workers
        )

        async def imaging() -> None:
            for job in jobs:
                await asyncio.sleep(max(start_loop_s + job.arrival_s - loop.time(), 0.0))
                tiles = rng.standard_normal((job.tiles, 1, 16, 16)).astype(np.float32)
                payload.submit_tiles(
                    sha256,
                    tiles,
                    priority=job.priority,
                    deadline_tai_s=epoch_tai + job.deadline_s,
                    value=job.value,
                    energy_estimate_j=job.tiles * energy_per_tile_j,
                )

        async def sampling() -> None:
            while True:
                state = environment.advance(unix_now())
                samples.append(
                    Sample(
                        time_s=loop.time() - start_loop_s,
                        soc=state.soc,
                        soc_estimate=power.soc,
                        payload_power_w=payload.power_w(),
                        solar_power_w=state.solar_power_w,
                        illumination=state.illumination,
                        workers=payload.busy_workers,
                    )
                )
                await asyncio.sleep(scenario.sample_period_s)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(imaging()), group.create_task(sampling())]
            await asyncio.sleep(scenario.duration_s)
            for task in tasks:
                task.cancel()
        environment.advance(unix_now())
        result = _result(scenario, choice, payload, power, environment, samples, epoch_tai)
    payload.close()
    return result


def _result(
    scenario: PowerScenario,
    choice: PolicyChoice,
    payload: Payload,
    power: Power,
    environment: SatelliteEnvironment,
    samples: list[Sample],
    epoch_tai: float,
) -> PowerResult:
    views = payload.jobs()
    done = [job for job in views if job.state is JobState.DONE]
    end_tai = epoch_tai + scenario.duration_s
    missed = [
        job
        for job in views
        if job.state is JobState.EXPIRED
        or (job.state is not JobState.DONE and job.deadline_tai_s <= end_tai)
    ]
    tiles = sum(job.tiles_done for job in views)
    energy = sum(job.energy_used_j for job in views)
    return PowerResult(
        policy=choice.label,
        beta_deg=scenario.beta_deg,
        jobs_submitted=len(views),
        jobs_done=len(done),
        value_submitted=sum(job.value for job in views),
        value_done=sum(job.value for job in done),
        deadline_misses=len(missed),
        min_soc=environment.min_soc,
        time_below_floor_s=environment.time_below_s(scenario.floor_soc),
        tiles_done=tiles,
        energy_per_inference_j=energy / tiles if tiles else math.nan,
        solar_wasted_wh=environment.wasted_j / WH,
        sheds=int(power.telemetry.SHEDS),
        samples=tuple(samples),
    )


def choice(label: str) -> PolicyChoice:
    for candidate in POLICY_CHOICES:
        if candidate.label == label:
            return candidate
    known = ", ".join(c.label for c in POLICY_CHOICES)
    raise ValueError(f"no policy {label!r}; the policies are {known}")


def run_all(
    scenario: PowerScenario,
    labels: tuple[str, ...] = tuple(c.label for c in POLICY_CHOICES),
    *,
    betas: tuple[float, ...] = (0.0, 70.0),
    processes: int = 2,
) -> list[PowerResult]:
    """Every policy at every beta angle, `processes` runs at a time (each its own loop)."""
    from concurrent.futures import ProcessPoolExecutor

    runs = [(replace(scenario, beta_deg=beta), label) for beta in betas for label in labels]
    if processes <= 1:
        return [run_labelled(s, label) for s, label in runs]
    with ProcessPoolExecutor(processes) as pool:
        futures = [pool.submit(run_labelled, s, label) for s, label in runs]
        return [future.result() for future in futures]


def run_labelled(scenario: PowerScenario, label: str) -> PowerResult:
    # Policies are made by lambdas, which do not cross to a worker process: labels do.
    return run_policy(scenario, choice(label))
