"""The power component in a real node: protection within one 10 Hz tick, LOW_POWER and SAFE with
hysteresis, stale EPS data, the state of charge across a reboot, and the forecast it reports."""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.orbit import Orbit
from flight.payload import JobState, Payload
from flight.power import EpsReading, SimulatedEps
from flight.power.component import PolicyName, Power
from flight.power.sysfs import CpuFrequency
from flight.runtime import clock
from flight.runtime.clock import MissionClock
from flight.runtime.component import Mode
from flight.runtime.config import NodeConfig, PayloadSection, PowerSection, TimeSection
from flight.runtime.node import Node
from hil.models import cloud_mask_unet

EPOCH_UNIX_S = 1_789_992_000.0
HEALTHY = EpsReading(
    battery_voltage_v=8.0, battery_current_a=0.5, solar_power_w=30.0, load_power_w=20.0
)
PAYLOAD = PayloadSection(
    max_workers=2, batch_tiles=4, idle_power_w=3.0, busy_power_w=15.0, simulated_tile_time_s=2.0
)


class Events:
    """Every event the power component and the mode manager emit, by name."""

    def __init__(self, *components: Any) -> None:
        self.names: list[str] = []
        for component in components:
            emit = component.emit

            def recording(event: Any, _emit: Any = emit, **arguments: Any) -> None:
                self.names.append(event.name)
                _emit(event, **arguments)

            component.emit = recording


@dataclass
class Powered:
    node: Node
    power: Power
    payload: Payload
    eps: SimulatedEps
    events: Events


@asynccontextmanager
async def powered_node(
    state_dir: Path,
    *,
    policy: str = "always_on",
    orbit: Orbit | None = None,
    soc: float = 0.9,
    current_a: float = HEALTHY.battery_current_a,
    cpufreq: CpuFrequency | None = None,
) -> AsyncIterator[Powered]:
    config = NodeConfig(
        time=TimeSection(epoch_tai_s=MissionClock.tai_from_unix(EPOCH_UNIX_S)),
        power=PowerSection(eps="simulated", policy=policy),
        payload=PAYLOAD,
    ).with_state_dir(state_dir)
    payload = Payload(config.payload, state_dir=state_dir)
    eps = SimulatedEps()
    eps.feed(replace(HEALTHY, soc=soc, battery_current_a=current_a))
    power = Power(config.power, eps=eps, payload=payload, orbit=orbit, cpufreq=cpufreq)
    node = Node(config, components=[(16, power), (17, payload)])
    events = Events(power, node.mode)
    try:
        async with node:
            yield Powered(node, power, payload, eps, events)
            node.request_stop()
    finally:
        payload.close()


async def busy_payload(payload: Payload, state_dir: Path, jobs: int = 2) -> None:
    model = cloud_mask_unet(input_size=16, in_channels=1, base_channels=4, depth=1)
    path = state_dir / "unet.onnx"
    path.write_bytes(model.SerializeToString())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    await payload.add_model(path, digest)
    tiles = np.random.default_rng(0).standard_normal((40, 1, 16, 16)).astype(np.float32)
    for _ in range(jobs):
        payload.submit_tiles(
            digest, tiles, priority=1, deadline_tai_s=1e12, value=1.0, energy_estimate_j=100.0
        )
    while payload.busy_workers < jobs:
        await asyncio.sleep(0.1)


def test_under_voltage_sheds_the_payload_within_one_tick_and_sunlight_recovers(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with powered_node(tmp_path) as it:
            await busy_payload(it.payload, tmp_path)
            loop = asyncio.get_running_loop()
            it.eps.feed(replace(HEALTHY, battery_voltage_v=6.4, battery_current_a=-3.0))
            fed_at = loop.time()
            while it.payload.busy_workers:
                await asyncio.sleep(0.01)
            assert loop.time() - fed_at <= 0.1 + 1e-9  # one 10 Hz tick
            assert it.node.mode.current is Mode.SAFE
            assert "PAYLOAD_SHED" in it.events.names
            assert {job.state for job in it.payload.jobs()} == {JobState.PAUSED}
            # 6.8 V is above 6.6 but inside the 0.3 V hysteresis: still SAFE.
            it.eps.feed(replace(HEALTHY, battery_voltage_v=6.8))
            await asyncio.sleep(2.0)
            assert it.node.mode.current is Mode.SAFE
            assert it.payload.busy_workers == 0
            # Sunlight: the voltage recovers, NOMINAL again and the jobs resume.
            it.eps.feed(HEALTHY)
            await it.node.wait_for_mode(Mode.NOMINAL)
            while it.payload.busy_workers == 0:
                await asyncio.sleep(0.1)
            while any(job.state is not JobState.DONE for job in it.payload.jobs()):
                await asyncio.sleep(1.0)
            assert it.power.telemetry.SHEDS == 1

    clock.run(scenario(), virtual=True)


def test_below_the_floor_is_low_power_with_hysteresis(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with powered_node(tmp_path, soc=0.9) as it:
            await busy_payload(it.payload, tmp_path)
            it.power.counter.set(0.65)  # the floor is 0.70
            await it.node.wait_for_mode(Mode.LOW_POWER)
            await asyncio.sleep(1.0)
            assert it.payload.busy_workers == 0
            assert it.power.plan.workers == 0
            it.power.counter.set(0.73)  # above the floor, inside the 5% hysteresis
            await asyncio.sleep(3.0)
            assert it.node.mode.current is Mode.LOW_POWER
            it.power.counter.set(0.76)
            await it.node.wait_for_mode(Mode.NOMINAL)
            while it.payload.busy_workers == 0:
                await asyncio.sleep(0.1)

    clock.run(scenario(), virtual=True)


def test_a_mode_the_power_component_did_not_set_is_not_its_to_leave(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with powered_node(tmp_path) as it:
            it.node.mode.enter(Mode.SAFE, "commanded")
            it.power.counter.set(0.65)
            await asyncio.sleep(2.0)
            it.power.counter.set(0.95)
            await asyncio.sleep(2.0)
            assert it.node.mode.current is Mode.SAFE  # the operator's SAFE stays
            assert it.power.plan.workers == 0

    clock.run(scenario(), virtual=True)


def broken_i2c() -> EpsReading:
    raise OSError("I2C bus timeout")


def test_no_eps_reading_for_five_seconds_sheds_the_payload(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with powered_node(tmp_path) as it:
            await busy_payload(it.payload, tmp_path)

            it.power.eps = SimulatedEps(broken_i2c)  # the simulated EPS wraps its failure
            await asyncio.sleep(6.0)
            assert it.payload.busy_workers == 0
            assert it.events.names.count("EPS_FAILED") == 1  # once per episode, not per tick
            assert "PAYLOAD_SHED" in it.events.names
            assert it.power.telemetry.EPS_ERRORS >= 50

    clock.run(scenario(), virtual=True)


def test_the_state_of_charge_estimate_survives_a_reboot(tmp_path: Path) -> None:
    async def first_boot() -> None:
        resting = {"soc": 0.9, "current_a": 0.0}  # no current: the count holds still
        async with powered_node(tmp_path, **resting) as it:
            await asyncio.sleep(1.0)
            it.power.counter.set(0.8125)
            await asyncio.sleep(61.0)

    async def second_boot() -> float:
        # The EPS now claims 0.5: the saved coulomb count wins over its gauge.
        resting = {"soc": 0.5, "current_a": 0.0}
        async with powered_node(tmp_path, **resting) as it:
            await asyncio.sleep(1.0)
            return it.power.soc

    clock.run(first_boot(), virtual=True)
    assert clock.run(second_boot(), virtual=True) == pytest.approx(0.8125, abs=1e-9)


def test_the_forecast_reports_the_coming_eclipse(tmp_path: Path) -> None:
    orbit = Orbit.with_beta(550e3, 97.6, 0.0, EPOCH_UNIX_S)

    async def scenario() -> None:
        async with powered_node(tmp_path, orbit=orbit, policy="energy_aware") as it:
            await asyncio.sleep(2.0)
            telemetry = it.power.telemetry
            period_s = orbit.period_s
            assert 0.0 <= telemetry.ECLIPSE_IN_S < period_s
            assert (telemetry.SUNLIGHT_IN_S == 0.0) == telemetry.SUNLIT
            assert 0.7 <= telemetry.PREDICTED_MIN_SOC <= 1.0
            in_eclipse = telemetry.ECLIPSE_IN_S
            await asyncio.sleep(in_eclipse + 5.0)
            assert not it.power.telemetry.SUNLIT
            assert 0.0 < it.power.telemetry.SUNLIGHT_IN_S < 40 * 60  # a 550 km eclipse: ~36 min

    clock.run(scenario(), virtual=True)


def fake_cpufreq(root: Path, *, max_khz: int = 2_000_000, min_khz: int = 600_000) -> Path:
    """One cpufreq policy as sysfs lays it out (real files under `root`)."""
    policy = root / "devices/system/cpu/cpu0/cpufreq"
    policy.mkdir(parents=True)
    (policy / "cpuinfo_max_freq").write_text(f"{max_khz}\n")
    (policy / "cpuinfo_min_freq").write_text(f"{min_khz}\n")
    (policy / "scaling_max_freq").write_text(f"{max_khz}\n")
    return policy / "scaling_max_freq"


def test_a_hot_board_gets_a_cpu_frequency_cap_and_loses_it_when_cool(tmp_path: Path) -> None:
    scaling_max = fake_cpufreq(tmp_path / "sys")
    cpufreq = CpuFrequency(tmp_path / "sys", writable=True)

    async def scenario() -> None:
        async with powered_node(tmp_path / "state", cpufreq=cpufreq) as it:
            it.eps.feed(replace(HEALTHY, temperature_c=60.0))  # limit 85: headroom
            await asyncio.sleep(2.0)
            assert scaling_max.read_text().strip() == "2000000"
            it.eps.feed(replace(HEALTHY, temperature_c=85.0))  # 10 degC into the band
            await asyncio.sleep(2.0)
            assert int(scaling_max.read_text()) == 1_300_000  # halfway from 0.6 to 2.0 GHz
            assert it.power.plan.cpu_freq_cap_khz == 1_300_000
            assert it.power.plan.workers == 0  # and no workers at the limit
            it.eps.feed(replace(HEALTHY, temperature_c=50.0))
            await asyncio.sleep(2.0)
            assert scaling_max.read_text().strip() == "2000000"
            assert it.events.names.count("CPU_CAPPED") == 2

    clock.run(scenario(), virtual=True)


def test_a_cap_the_board_refuses_is_reported_once_and_governing_goes_on(tmp_path: Path) -> None:
    fake_cpufreq(tmp_path / "sys")
    read_only = CpuFrequency(tmp_path / "sys", writable=False)

    async def scenario() -> None:
        async with powered_node(tmp_path / "state", cpufreq=read_only) as it:
            it.eps.feed(replace(HEALTHY, temperature_c=90.0))
            await asyncio.sleep(3.0)
            assert it.events.names.count("CPU_CAPPED") == 1
            assert it.power.cpufreq is None
            assert it.power.plan.workers == 0  # the thermal worker limit still holds

    clock.run(scenario(), virtual=True)


def test_under_voltage_enters_safe_even_with_nothing_to_shed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with powered_node(tmp_path) as it:
            await asyncio.sleep(1.0)
            assert it.payload.busy_workers == 0
            it.eps.feed(replace(HEALTHY, battery_voltage_v=6.4))
            await it.node.wait_for_mode(Mode.SAFE)
            it.eps.feed(HEALTHY)
            await it.node.wait_for_mode(Mode.NOMINAL)

    clock.run(scenario(), virtual=True)


def test_a_bench_that_stops_feeding_is_an_eps_that_stopped_answering(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with powered_node(tmp_path) as it:
            it.power.eps = stale = SimulatedEps(max_age_s=2.0)
            stale.feed(HEALTHY)
            loop = asyncio.get_running_loop()
            fed_at = loop.time()
            await busy_payload(it.payload, tmp_path)
            while it.payload.busy_workers:
                await asyncio.sleep(0.1)
            # Stale after 2 s, then 5 s without a usable reading: shed.
            assert 7.0 <= loop.time() - fed_at <= 7.5
            assert "EPS_FAILED" in it.events.names and "PAYLOAD_SHED" in it.events.names

    clock.run(scenario(), virtual=True)


def test_set_policy_changes_the_policy_and_its_telemetry(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with powered_node(tmp_path, policy="energy_aware") as it:
            assert it.power.telemetry.POLICY is PolicyName.ENERGY_AWARE
            await it.power.SET_POLICY(int(PolicyName.SUNLIT_ONLY))
            assert it.power.policy.name == "sunlit_only"
            assert it.power.telemetry.POLICY is PolicyName.SUNLIT_ONLY
            assert it.power.config.policy == "sunlit_only"

    clock.run(scenario(), virtual=True)
