"""hil.sim.realtime: a real `penumbra flight` process as one satellite of the emulated
constellation, in real time, on the same physics the emulator samples."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flight.runtime import clock
from flight.runtime.config import parse as parse_node_config
from ground.dictionary import TelemetrySample
from ground.station import GroundStation
from hil.bench.config import BenchConfigError
from hil.sim.emulator import Emulator
from hil.sim.power import PowerScenario
from hil.sim.realtime import RealNodeSpec, node_policy, real_node_toml
from hil.sim.scenario import FLIGHT_CADENCE, EmulatorScenario, IslConfig, Reboot, Workload

DURATION_S = 20.0
REBOOT_AT_S = 9.0


def _scenario(duration_s: float = DURATION_S, **options) -> EmulatorScenario:
    return EmulatorScenario.walker(
        2,
        1,
        0,
        duration_s=duration_s,
        isl=IslConfig(enabled=False),
        cadence=FLIGHT_CADENCE,
        workload=Workload(imaging_jobs_per_sunlit_hour=0.0),
        # Not full: a node that reported a default instead of the fed battery would show it.
        satellite=PowerScenario(initial_soc=0.8),
        step_s=1.0,
        sample_period_s=1.0,
        **options,
    )


async def _fed_soc(station: GroundStation, *, by_s: float) -> float:
    """The first state of charge the node reports from a fed EPS (0.0 means no reading yet)."""
    samples = station.subscribe(TelemetrySample)
    try:
        async with asyncio.timeout(by_s):
            while True:
                sample = await samples.get()
                if sample.channel == "power.SOC" and sample.value > 0.0:
                    return sample.value
    finally:
        samples.close()


@pytest.mark.timeout(180)
def test_a_pty_node_flies_with_the_emulated_one_on_one_physics_and_reboots(tmp_path: Path):
    scenario = _scenario(faults=(Reboot(REBOOT_AT_S, 0, off_s=1.0),))
    seen: dict[str, object] = {}

    async def main() -> Emulator:
        async with Emulator(scenario, tmp_path, real_node=RealNodeSpec("pty", sat=0)) as emulator:
            real = emulator.satellites[0].real
            assert real is not None and real.station is not None
            reported = await _fed_soc(real.station, by_s=REBOOT_AT_S - emulator.now_s())
            seen["soc"] = (reported, real.environment.advance(emulator.unix_now()).soc)
            seen["payload_w"] = real.payload_power_w()
            await emulator.run()
            seen["process"] = real.target.process.process  # the one running at the end
        return emulator

    emulator = clock.run(main(), virtual=False)

    real_sat, emulated = emulator.satellites
    real = real_sat.real
    assert real is not None
    assert real.boots == [0, 1]  # the power cut made a second boot of the same process state
    assert real_sat.boots == [0, 1] and emulated.boots == [0]
    assert real.station.counters.packets_received > 0
    reported_soc, physics_soc = seen["soc"]
    assert physics_soc == pytest.approx(0.8, abs=0.01)
    assert reported_soc == pytest.approx(physics_soc, abs=0.01)  # the feed reached its EPS
    assert seen["payload_w"] > 0.0  # its payload's draw came back from its telemetry
    assert seen["process"].returncode is not None  # leaving stopped the flight process
    for sat in (0, 1):
        kinds = [entry["kind"] for entry in emulator.events if entry["sat"] == sat]
        assert "boot" in kinds and "event" in kinds, (sat, kinds)
    real_log = [entry for entry in emulator.events if entry["sat"] == 0]
    assert [e["boot_count"] for e in real_log if e["kind"] == "boot"] == [0, 1]
    assert any(e["kind"] == "fault" and e["fault"] == "reboot" for e in real_log)
    assert {s.sat for s in emulator.samples} == {0, 1}
    result = emulator.result()
    assert [s.boots for s in result.summaries] == [2, 1]


@pytest.fixture
def board(tmp_path: Path, mqtt_broker):
    """A node with a simulated EPS running by itself (as systemd runs one on a board), reachable
    through the broker; (bench.toml for it, the board's directory)."""
    board_dir = tmp_path / "board"
    board_dir.mkdir()
    key = board_dir / "node.key"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    url = mqtt_broker.url(f"board-{os.getpid()}")
    (board_dir / "node.toml").write_text(
        f'[node]\nname = "board"\nstate_dir = "state"\n\n[link]\nurl = "{url}"\n'
        'key_file = "node.key"\n\n[power]\neps = "simulated"\n'
    )
    bench_toml = tmp_path / "bench.toml"
    bench_toml.write_text(
        f'[target]\nspec = "{url}"\nkey_file = "board/node.key"\nnode_config = "board/node.toml"\n'
    )
    with (board_dir / "node.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "penumbra", "flight", "--config", "node.toml"],
            cwd=board_dir,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield RealNodeSpec(url, sat=1, bench_config=bench_toml), board_dir
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.timeout(180)
def test_a_board_over_mqtt_is_fed_but_cannot_be_rebooted_without_a_power_driver(tmp_path, board):
    spec, board_dir = board
    scenario = _scenario(duration_s=10.0, faults=(Reboot(6.0, 1, off_s=1.0),))
    seen: dict[str, float] = {}

    async def main() -> Emulator:
        async with Emulator(scenario, tmp_path / "run", real_node=spec) as emulator:
            real = emulator.satellites[1].real
            assert real is not None and real.station is not None
            seen["soc"] = await _fed_soc(real.station, by_s=6.0 - emulator.now_s())
            await emulator.run()
        return emulator

    emulator = clock.run(main(), virtual=False)
    real = emulator.satellites[1].real
    assert real is not None
    assert real.boots == [0] and real.reboots_skipped == 1
    assert seen["soc"] == pytest.approx(0.8, abs=0.01)  # the board's EPS is fed our physics
    skipped = [e for e in emulator.events if e["sat"] == 1 and e["kind"] == "reboot_skipped"]
    assert skipped and "power driver" in skipped[0]["reason"]
    assert "boot 0 in NOMINAL" in (board_dir / "node.log").read_text()  # still the first boot


def test_a_real_node_refuses_a_virtual_time_loop(tmp_path: Path):
    async def main() -> None:
        async with Emulator(_scenario(), tmp_path, real_node=RealNodeSpec("pty")):
            pass

    with pytest.raises(ValueError, match="a real node runs in real time"):
        clock.run(main(), virtual=True)
    assert not (tmp_path / "sat00" / "node" / "node.log").exists()  # no process was started


def test_a_real_node_is_a_process_or_a_board_not_an_in_process_node():
    with pytest.raises(ValueError, match="a real node is a flight process or a board"):
        RealNodeSpec("sil")
    with pytest.raises(BenchConfigError, match="not a bench target"):
        RealNodeSpec("can://vcan0")


def test_a_policy_a_node_toml_cannot_name_is_refused_with_the_ones_it_can():
    assert node_policy("threshold 60/45") == "threshold"
    assert node_policy("sunlit_only") == "sunlit_only"
    with pytest.raises(ValueError, match=r"cannot run on a real node.*energy_aware"):
        node_policy("threshold 90/75")


def test_the_real_nodes_toml_is_the_satellites_orbit_power_and_payload():
    scenario = _scenario()
    satellite = PowerScenario(battery_wh=50.0, tile_time_s=2.5, max_workers=3)
    text = real_node_toml(scenario.orbits[1], satellite, "always_on", housekeeping_interval_s=2.0)
    config = parse_node_config(text, source="real node.toml")
    assert (config.orbit.tle_line1, config.orbit.tle_line2) == tuple(scenario.orbits[1].tle)
    assert config.power.eps == "simulated" and config.power.policy == "always_on"
    assert config.power.capacity_wh == 50.0
    assert config.payload.simulated_tile_time_s == 2.5 and config.payload.max_workers == 3
    assert config.housekeeping.interval_ms == 2_000
