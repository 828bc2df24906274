"""A constellation run with everything on: ISLs, offload, imaging and uplinked jobs, link
damage, Poisson reboots and core crashes. Same seed, same log; every offloaded job runs once
and its result is held once; every job is counted once in the constellation."""

import collections
from pathlib import Path
from typing import Any

import pytest

from flight.isl import JobId
from flight.isl.component import JOB_TAG_PREFIX
from flight.payload import JobState
from flight.runtime import clock
from hil.sim.emulator import Emulator
from hil.sim.scenario import EmulatorScenario, IslConfig, LinkDamage, PoissonFaults, Workload

SCENARIO = EmulatorScenario.walker(
    6,
    2,
    1,
    duration_s=2 * 3_600.0,
    seed=3,
    isl=IslConfig(topology="all"),
    # More work than four workers can do before the deadlines: queues grow and jobs move.
    workload=Workload(
        imaging_jobs_per_sunlit_hour=30.0,
        uplinked_jobs_per_pass=1.0,
        tiles_per_job=(10, 40),
        deadline_after_s=(1_800.0, 3_600.0),
    ),
    faults=(LinkDamage(3_600.0, 0.3, duration_s=1_800.0),),
    poisson=(PoissonFaults("reboot", 0.4, off_s=60.0), PoissonFaults("core_crash", 0.2)),
)


def _run(run_dir: Path) -> tuple[Emulator, dict[int, Any]]:
    """Run SCENARIO; what each satellite held at the end, read before the nodes stop."""
    held: dict[int, Any] = {}

    async def main() -> Emulator:
        async with Emulator(SCENARIO, run_dir) as emulator:
            await emulator.run()
            for satellite in emulator.satellites:
                assert satellite.payload is not None  # every node is up at the end
                held[satellite.index] = (
                    satellite.payload.jobs(),
                    sorted(p.name for p in satellite.state_dir.rglob("isl_result_*.npy")),
                )
        return emulator

    return clock.run(main(), virtual=True), held


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Emulator, dict[int, Any]]]:
    root = tmp_path_factory.mktemp("constellation")
    return [_run(root / "a"), _run(root / "b")]


def test_same_seed_and_scenario_give_a_byte_identical_log_with_everything_on(runs) -> None:
    (first, _), (second, _) = runs
    log = (first.run_dir / "events.jsonl").read_bytes()
    assert log == (second.run_dir / "events.jsonl").read_bytes()
    kinds = collections.Counter(entry["kind"] for entry in first.events)
    faults = {entry["fault"] for entry in first.events if entry["kind"] == "fault"}
    assert {"isl_up", "isl_down", "offload", "uplinked", "contact_start", "boot"} <= set(kinds)
    assert {"reboot", "core_crash", "link_damage"} <= faults
    assert kinds["boot"] > len(SCENARIO.orbits)  # nodes came back from reboots and crashes


def test_every_offloaded_job_runs_once_and_its_result_is_held_once(runs) -> None:
    emulator, held = runs[0]
    flows = emulator.result().offloads
    completed = [flow for flow in flows if flow.status == "completed"]
    assert completed, "no offload completed: the scenario no longer exercises offload"
    done_for_others = collections.Counter(
        job.input_name
        for jobs, _ in held.values()
        for job in jobs
        if job.input_name.startswith(JOB_TAG_PREFIX) and job.state is JobState.DONE
    )
    results = collections.Counter(name for _, names in held.values() for name in names)
    for flow in completed:
        origin_address, local_id = (int(part) for part in flow.job.split(":"))
        name = JobId(origin_address, local_id).name
        assert done_for_others[JOB_TAG_PREFIX + name] == 1, flow
        assert results[f"isl_result_{name}.npy"] == 1, flow
        origin_jobs, _ = held[flow.origin]
        (local,) = [job for job in origin_jobs if job.job_id == local_id]
        assert local.state is JobState.OFFLOADED and flow.origin == origin_address - 1
        assert flow.holder is not None and flow.executor != flow.origin
    # No job ran twice anywhere, and no result is held twice.
    assert max(done_for_others.values(), default=0) <= 1
    assert max(results.values(), default=0) <= 1


def test_every_job_is_counted_once_in_the_constellation(runs) -> None:
    emulator, held = runs[0]
    result = emulator.result()
    own = {
        index: [job for job in jobs if not job.input_name.startswith(JOB_TAG_PREFIX)]
        for index, (jobs, _) in held.items()
    }
    for summary in result.summaries:
        assert len(own[summary.sat]) == summary.jobs_submitted
    end = {s.sat: s for s in result.samples if s.t_s == result.duration_s}
    for index, jobs in own.items():
        sample = end[index]
        assert sample.jobs_done + sample.jobs_missed + sample.jobs_queued == len(jobs), index
