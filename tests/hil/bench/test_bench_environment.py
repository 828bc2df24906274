"""The bench's environment feed end to end: a real node built as `penumbra flight` builds it
([power] eps = "simulated", payload 17 and power 16), a real ground station over a MemoryLink, and
the bench's physics sending a sensor record a second, closing the loop through the node's own
telemetry; in virtual time."""

import asyncio
import contextlib
import hashlib
import math
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.link.memory import MemoryLink
from flight.payload import Payload
from flight.power.component import Power
from flight.protocol.sensors import SensorRecord
from flight.runtime import clock
from flight.runtime.clock import MissionClock
from flight.runtime.component import Mode
from flight.runtime.config import (
    NodeConfig,
    OrbitSection,
    PayloadSection,
    PowerSection,
    TimeSection,
)
from flight.runtime.main import compute_components
from flight.runtime.node import Node
from ground.dictionary import Dictionary
from ground.station import GroundStation
from hil.bench.environment import (
    DEFAULT_SATELLITE,
    BenchEnvironment,
    default_bench_environment,
    default_orbit,
    default_power_system,
)
from hil.models import cloud_mask_unet
from hil.testapi import IntegrationApi, equal_to, greater_than

KEY = bytes(range(32))
SAFETY_S = 20_000.0  # virtual seconds: a net for a hung scenario, not a measurement
EPOCH_UNIX_S = DEFAULT_SATELLITE.epoch_unix_s  # the orbit is sunlit here


@dataclass
class Bench:
    node: Node
    payload: Payload
    power: Power
    station: GroundStation
    api: IntegrationApi
    environment: BenchEnvironment


@contextlib.asynccontextmanager
async def bench(tmp_path: Path, *, soc: float, policy: str = "always_on") -> AsyncIterator[Bench]:
    """The issue-5 satellite's node (its TLE, its battery size) and the bench around it."""
    line1, line2 = default_orbit().tle
    config = NodeConfig(
        time=TimeSection(epoch_tai_s=MissionClock.tai_from_unix(EPOCH_UNIX_S)),
        orbit=OrbitSection(tle_line1=line1, tle_line2=line2),
        power=PowerSection(eps="simulated", policy=policy),
        payload=PayloadSection(batch_tiles=4, simulated_tile_time_s=2.0),
    ).with_state_dir(tmp_path / "node")
    components = compute_components(config)
    payload = next(c for _, c in components if isinstance(c, Payload))
    power = next(c for _, c in components if isinstance(c, Power))
    flight_end, ground_end = MemoryLink.pair()
    node = Node(config, link=flight_end, key=KEY, components=components)
    dictionary = Dictionary.from_document(node.dictionary(), source="bench node")
    try:
        async with flight_end, ground_end, node:
            async with (
                GroundStation(
                    ground_end, dictionary, key=KEY, state_dir=tmp_path / "ground"
                ) as station,
                IntegrationApi(station, default_timeout_s=600.0) as api,
            ):
                environment = BenchEnvironment(
                    api,
                    orbit=default_orbit(),
                    power_system=default_power_system(soc),
                    start_unix_s=EPOCH_UNIX_S,
                )
                async with environment:
                    yield Bench(node, payload, power, station, api, environment)
            node.request_stop()
    finally:
        payload.close()


def virtual(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(SAFETY_S):
            await scenario()

    clock.run(bounded(), virtual=True)


async def make_busy(it: Bench, jobs: int = 4) -> None:
    """`jobs` long jobs on the payload, each on a worker of its own, until they all run."""
    model = cloud_mask_unet(input_size=16, in_channels=1, base_channels=4, depth=1)
    path = it.node.config.node.state_dir / "unet.onnx"
    path.write_bytes(model.SerializeToString())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    await it.payload.add_model(path, digest)
    tiles = np.random.default_rng(0).standard_normal((400, 1, 16, 16)).astype(np.float32)
    for _ in range(jobs):
        it.payload.submit_tiles(
            digest, tiles, priority=1, deadline_tai_s=1e12, value=1.0, energy_estimate_j=1e4
        )
    while it.payload.busy_workers < jobs:
        await asyncio.sleep(0.1)


def latest(it: Bench, channel: str) -> float:
    return it.station.latest[channel].value


def test_the_node_follows_the_physics_it_is_fed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bench(tmp_path, soc=0.5) as it:
            environment = it.environment
            environment.force_illumination(0.0)
            compared = 0
            for minute in range(10):
                if minute == 5:
                    environment.force_illumination(1.0)
                await asyncio.sleep(60.0)
                # The node's count trails the physics by at most a record and a housekeeping
                # period (two seconds at most a few hundredths of a percent here).
                sample = await it.api.await_telemetry("power.SOC")
                truth = environment.state
                assert sample.value == pytest.approx(truth.soc, abs=0.005), minute
                voltage = latest(it, "power.BATTERY_VOLTAGE_V")
                assert voltage == pytest.approx(truth.battery_voltage_v, abs=0.02), minute
                compared += 1
            soc = environment.satellite.state.soc
            # Five minutes of eclipse (8 W) and five of sunlight (22 W spare): it moved.
            assert environment.satellite.min_soc < 0.49 and soc > 0.52
            assert it.power.soc == pytest.approx(soc, abs=0.005)
            assert compared == 10
            assert len(environment.sent) >= 600  # a record a second, and one per forcing
            assert environment.send_errors == 0
            await it.api.await_telemetry("power.SENSOR_RECORDS", greater_than(590))
            assert it.api.events("power.SENSOR_RECORD_MALFORMED") == []
            assert it.station.counters.packets_failed == 0
            # The node's EPS holds one of the last records, as the wire carries it (single
            # precision); the newest may still be on its way.
            recent = [SensorRecord.decode(r.encode()).reading() for r in environment.sent[-3:]]
            assert it.power.eps.read() in recent

    virtual(scenario)


def test_a_running_job_discharges_the_simulated_battery_faster(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bench(tmp_path, soc=0.95) as it:
            environment = it.environment
            environment.force_illumination(0.0)  # no harvest: the load alone moves the battery
            await asyncio.sleep(5.0)
            idle_w = latest(it, "power.PAYLOAD_POWER_W")
            assert idle_w == pytest.approx(it.node.config.payload.idle_power_w)
            start = environment.state.energy_j
            await asyncio.sleep(120.0)
            idle_drop_j = start - environment.state.energy_j
            await make_busy(it)
            busy = await it.api.await_telemetry("power.PAYLOAD_POWER_W", greater_than(idle_w + 5))
            await asyncio.sleep(2.0)  # the next record's step draws it
            assert environment.payload_power_w == pytest.approx(busy.value)
            assert environment.state.payload_power_w == pytest.approx(busy.value)
            start = environment.state.energy_j
            await asyncio.sleep(120.0)
            busy_drop_j = start - environment.state.energy_j
            assert it.payload.busy_workers == 4  # still running: the comparison is fair
            # 5 W bus + 3 W idle against 5 W + 15 W busy, over 0.95 discharge efficiency.
            assert idle_drop_j == pytest.approx(8.0 * 120.0 / 0.95, rel=0.03)
            assert busy_drop_j == pytest.approx(20.0 * 120.0 / 0.95, rel=0.05)
            assert busy_drop_j > 2.0 * idle_drop_j

    virtual(scenario)


def test_an_emergency_sheds_the_payload_and_sunlight_brings_it_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with bench(tmp_path, soc=0.95) as it:
            environment = it.environment
            await it.node.wait_for_mode(Mode.NOMINAL)
            await make_busy(it)
            await it.api.await_telemetry("power.PAYLOAD_POWER_W", greater_than(10.0))
            await asyncio.sleep(2.0)
            environment.force_illumination(0.0)  # eclipse entry
            await asyncio.sleep(0.25)  # its record is sent; the next is due in 0.75 s
            mark = it.api.mark()
            driven_at_tai = it.node.clock.now_tai_s()  # type: ignore[union-attr]
            environment.drive_to(0.05)  # near empty, under load
            assert environment.state.battery_voltage_v < 6.6
            shed = await it.api.await_event("power.PAYLOAD_SHED", start=mark)
            assert "under-voltage" in shed.args["reason"]
            assert environment.sent[-1].battery_voltage_v < 6.6
            # A record goes at once; the 10 Hz protection acts on it within one tick.
            assert shed.time.seconds - driven_at_tai <= 0.1 + 2**-16
            await it.api.await_telemetry("mode.MODE", equal_to("SAFE"), start=mark)
            assert it.node.mode.current is Mode.SAFE
            assert it.payload.busy_workers == 0
            await asyncio.sleep(30.0)
            assert it.node.mode.current is Mode.SAFE  # no recovery in the dark
            # Sunlight and a recharged battery: NOMINAL again, and the jobs run on.
            mark = it.api.mark()
            environment.force_illumination(1.0)
            environment.drive_to(0.9)
            await it.api.await_event(
                "mode.MODE_CHANGED", args={"mode": "NOMINAL"}, start=mark, timeout_s=30.0
            )
            assert it.node.mode.current is Mode.NOMINAL
            while it.payload.busy_workers == 0:
                await asyncio.sleep(0.5)
            assert environment.driven_j < 0.0  # drained more than recharged by hand
            assert math.isclose(environment.state.illumination, 1.0)

    virtual(scenario)


def test_the_bench_takes_the_targets_mission_time_and_the_issue5_satellite(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with bench(tmp_path, soc=1.0) as it:
            await it.api.await_telemetry("time.TAI_S")
            async with default_bench_environment(it.api) as environment:
                target_tai_s = it.node.clock.now_tai_s()  # type: ignore[union-attr]
                bench_tai_s = MissionClock.tai_from_unix(environment.time_unix_s)
                # The latest time.TAI_S is at most a housekeeping period old.
                assert 0.0 <= target_tai_s - bench_tai_s <= 2.0
                battery = environment.satellite.power.battery
                assert battery.capacity_j == pytest.approx(43.0 * 3600.0)
                assert environment.satellite.power.bus_load_w == 5.0
                assert environment.satellite.power.solar.peak_power_w == pytest.approx(30.0)
                await asyncio.sleep(3.0)
                assert len(environment.sent) >= 3

    virtual(scenario)


def test_bad_values_are_refused_and_the_feed_survives_them(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with bench(tmp_path, soc=1.0) as it:
            for bad in (-0.1, 1.5, math.nan):
                with pytest.raises(ValueError, match=r"0\.\.1"):
                    it.environment.drive_to(bad)
                with pytest.raises(ValueError, match=r"0\.\.1"):
                    it.environment.force_illumination(bad)
            idle = default_bench_environment(it.api)
            with pytest.raises(RuntimeError, match="async with"):
                idle.drive_to(0.5)
            with pytest.raises(RuntimeError, match="runs once"):
                await it.environment.__aenter__()
            # A reading the record cannot carry is counted and logged; the feed goes on.
            it.environment.temperature_c = -300.0
            await asyncio.sleep(2.0)
            assert it.environment.send_errors >= 1
            it.environment.temperature_c = 20.0
            sent = len(it.environment.sent)
            await asyncio.sleep(2.0)
            assert len(it.environment.sent) > sent
            assert it.environment.sent[-1].temperature_c == 20.0

    virtual(scenario)
