"""The emulator's core: N real nodes on one virtual-time loop, contacts, faults, the event log."""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from flight.orbit import GroundSite, teme_to_ecef
from flight.power.component import Power
from flight.runtime import clock
from hil.sim.emulator import Emulator
from hil.sim.scenario import (
    BatteryFade,
    EmulatorScenario,
    IslConfig,
    LinkQuality,
    Reboot,
    Workload,
)

NO_ISL = IslConfig(enabled=False)  # these tests are about contacts, faults and the log


def _site_under(scenario: EmulatorScenario, sat: int, t_s: float, name: str) -> GroundSite:
    """A ground site right below satellite `sat` at `t_s` after the start (elevation ~90 deg)."""
    t_unix = scenario.epoch_unix_s + t_s
    r = teme_to_ecef(scenario.orbits[sat].positions_m(np.array([t_unix]))[0], t_unix)
    latitude = math.degrees(math.atan2(r[2], math.hypot(r[0], r[1])))
    longitude = math.degrees(math.atan2(r[1], r[0]))
    return GroundSite(name, latitude, longitude)


def _run(scenario: EmulatorScenario, run_dir: Path, probe=None) -> Emulator:
    async def main() -> Emulator:
        async with Emulator(scenario, run_dir) as emulator:
            if probe is None:
                await emulator.run()
            else:
                await probe(emulator)
        return emulator

    return clock.run(main(), virtual=True)


def test_same_seed_and_scenario_give_a_byte_identical_event_log(tmp_path: Path) -> None:
    base = EmulatorScenario.walker(4, 2, 1, duration_s=1_800.0, isl=NO_ISL)
    scenario = EmulatorScenario(
        orbits=base.orbits,
        sites=(_site_under(base, 0, 500.0, "below0"), _site_under(base, 3, 1_300.0, "below3")),
        duration_s=1_800.0,
        faults=(Reboot(800.0, 1), BatteryFade(1_000.0, 2, 0.3)),
        isl=NO_ISL,
    )
    first = _run(scenario, tmp_path / "a")
    second = _run(scenario, tmp_path / "b")
    log_a = (tmp_path / "a" / "events.jsonl").read_bytes()
    log_b = (tmp_path / "b" / "events.jsonl").read_bytes()
    assert log_a == log_b
    kinds = {entry["kind"] for entry in first.events}
    assert {"boot", "event", "contact_start", "contact_end", "fault"} <= kinds
    assert first.satellites[1].boots == [0, 1]
    assert second.satellites[0].passes and second.satellites[3].passes


def test_a_pass_raises_the_link_and_telemetry_arrives_only_during_it(tmp_path: Path) -> None:
    base = EmulatorScenario.walker(1, 1, 0, duration_s=2_400.0)
    scenario = EmulatorScenario(
        orbits=base.orbits, sites=(_site_under(base, 0, 1_200.0, "below"),), duration_s=2_400.0
    )
    samples: list[tuple[float, bool, int]] = []

    async def probe(emulator: Emulator) -> None:
        satellite = emulator.satellites[0]
        for step in range(0, 2_400, 20):
            await emulator.run_until(float(step) + 5.0)  # between geometry steps
            assert satellite.station is not None
            samples.append(
                (
                    emulator.now_s(),
                    satellite.flight_link.up,
                    satellite.station.counters.packets_received,
                )
            )

    emulator = _run(scenario, tmp_path, probe)
    (only,) = emulator.satellites[0].passes
    assert 600.0 < only.start_s < 1_200.0 < only.end_s < 1_800.0
    assert only.tm_packets and only.tm_packets > 10  # the stored housekeeping played back
    # Up exactly while in the pass; packets counted only in intervals touching the pass.
    for t, up, _ in samples:
        assert up == (only.start_s <= t < only.end_s), t
    for (t0, up0, n0), (t1, up1, n1) in itertools.pairwise(samples):
        if n1 > n0:
            assert up0 or up1, (t0, t1)
    assert samples[-1][2] == only.tm_packets
    assert samples[0][2] == 0


def test_a_reboot_restarts_the_node_with_its_persisted_state(tmp_path: Path) -> None:
    scenario = EmulatorScenario.walker(
        1, 1, 0, duration_s=300.0, sites=(), faults=(Reboot(100.0, 0, off_s=5.0),)
    )
    seen: dict[str, object] = {}

    async def probe(emulator: Emulator) -> None:
        satellite = emulator.satellites[0]
        node = satellite.node
        power = next(c for c in node.components if isinstance(c, Power))
        power.set_parameter(Power.FLOOR_SOC, 0.55)
        await node.params.SAVE()
        await emulator.run_until(50.0)
        seen["before"] = node.boot_count
        await emulator.run_until(102.0)
        seen["off"] = satellite.node is None
        await emulator.run_until(300.0)
        again = satellite.node
        seen["after"] = again.boot_count
        seen["same_node"] = again is node
        power = next(c for c in again.components if isinstance(c, Power))
        seen["floor"] = power.parameters.get("FLOOR_SOC")

    emulator = _run(scenario, tmp_path, probe)
    assert seen["after"] == seen["before"] + 1
    assert seen["off"] is True and seen["same_node"] is False
    assert seen["floor"] == pytest.approx(0.55, abs=1e-6)
    boots = [e for e in emulator.events if e["kind"] == "boot"]
    assert [(e["t"], e["boot_count"]) for e in boots] == [(0.0, 0), (105.0, 1)]


def test_a_battery_fade_reduces_that_satellites_capacity_only(tmp_path: Path) -> None:
    scenario = EmulatorScenario.walker(
        2, 1, 0, duration_s=120.0, sites=(), faults=(BatteryFade(60.0, 1, 0.25),), isl=NO_ISL
    )
    emulator = _run(scenario, tmp_path)
    full = emulator.satellites[0].environment.power.battery.capacity_j
    faded = emulator.satellites[1].environment.power.battery.capacity_j
    assert faded == pytest.approx(0.75 * full)


def test_faults_naming_a_missing_satellite_are_refused() -> None:
    base = EmulatorScenario.walker(2, 1, 0)
    with pytest.raises(ValueError, match=r"satellite 5 is not one of 0\.\.1"):
        EmulatorScenario(orbits=base.orbits, faults=(Reboot(10.0, 5),))


def test_link_quality_changes_one_link_from_its_time_and_is_logged(tmp_path: Path) -> None:
    scenario = EmulatorScenario.walker(
        3,
        1,
        0,
        duration_s=120.0,
        sites=(),
        isl=IslConfig(topology="all", bit_error_rate=0.0),
        faults=(LinkQuality(60.0, rate_bps=1e3, bit_error_rate=1e-4, between=(0, 1)),),
        workload=Workload(imaging_jobs_per_sunlit_hour=0.0),
    )
    seen: dict[str, float] = {}

    async def probe(emulator: Emulator) -> None:
        await emulator.run_until(30.0)
        seen["before"] = emulator.network.injector(0, 1).model.bit_error_rate
        await emulator.run_until(90.0)
        seen["changed"] = emulator.network.injector(0, 1).model.bit_error_rate
        seen["back"] = emulator.network.injector(1, 0).model.bit_error_rate
        seen["other"] = emulator.network.injector(0, 2).model.bit_error_rate

    emulator = _run(scenario, tmp_path, probe)
    assert seen == {"before": 0.0, "changed": 1e-4, "back": 1e-4, "other": 0.0}
    (logged,) = [e for e in emulator.events if e.get("fault") == "link_quality"]
    assert logged == {
        "t": 60.0,
        "sat": -1,
        "kind": "fault",
        "fault": "link_quality",
        "between": [0, 1],
        "rate_bps": 1e3,
        "bit_error_rate": 1e-4,
    }
