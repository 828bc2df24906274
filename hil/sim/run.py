"""Run a scenario: one emulator run per payload power policy, each on its own virtual-time loop
and fresh nodes (in parallel processes when there are cores for them), results in order."""

import logging
import multiprocessing
import os
import queue
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from flight.runtime import clock
from hil.sim.emulator import Emulator
from hil.sim.results import RunResult
from hil.sim.scenario import EmulatorScenario

if TYPE_CHECKING:
    from hil.sim.realtime import RealNodeSpec

Progress = Callable[[float, float, float], None]
"""progress(virtual_s, duration_s, wall_s): virtual seconds done of all runs together."""

SHARED_MEMORY = Path("/dev/shm")


def run_name(policy: str) -> str:
    """A policy's run directory: its label as a file name ("threshold 90/75" -> threshold_90-75)."""
    return policy.replace(" ", "_").replace("/", "-")


def run_policy(
    scenario: EmulatorScenario,
    policy: str,
    run_dir: Path,
    *,
    progress: Progress | None = None,
    real_node: "RealNodeSpec | None" = None,
) -> RunResult:
    """One policy's run in `run_dir` (emptied first). The nodes' state lives on a tmpfs where
    there is one (their syncs cost the disk, not the run), and is copied to run_dir/<sat>/state
    at the end so that what the nodes held can be inspected."""
    logging.getLogger("flight").setLevel(logging.ERROR)  # the event log has every event
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    root = SHARED_MEMORY if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="penumbra-state-", dir=root) as state_root:

        async def main() -> Emulator:
            async with Emulator(
                scenario,
                run_dir,
                policy=policy,
                state_root=Path(state_root),
                progress=progress,
                real_node=real_node,
            ) as emulator:
                await emulator.run()
            return emulator

        # A real node lives in real time: so does everything around it.
        emulator = clock.run(main(), virtual=real_node is None)
        for satellite in emulator.satellites:
            shutil.copytree(satellite.state_dir, satellite.dir / "state", dirs_exist_ok=True)
    return emulator.result()


def run_scenario(
    scenario: EmulatorScenario,
    out_dir: Path,
    *,
    progress: Progress | None = None,
    processes: int | None = None,
    real_node: "RealNodeSpec | None" = None,
) -> list[RunResult]:
    """Every policy of `scenario`, each in out_dir/<run_name(policy)>/; results in order.
    With a `real_node` (hil.sim.realtime) the runs are in real time, one after the other."""
    out_dir = Path(out_dir)
    policies = scenario.policies
    workers = min(len(policies), processes or os.cpu_count() or 1)
    if workers <= 1 or real_node is not None:
        return _sequential(scenario, out_dir, progress, real_node)
    total_s = scenario.duration_s * len(policies)
    started = time.perf_counter()
    with multiprocessing.Manager() as manager:
        updates = manager.Queue()
        with ProcessPoolExecutor(workers) as pool:
            futures = [
                pool.submit(_run_reporting, scenario, policy, out_dir / run_name(policy), updates)
                for policy in policies
            ]
            done_s = dict.fromkeys(policies, 0.0)
            while not all(future.done() for future in futures):
                _drain(updates, done_s, timeout_s=0.5)
                if progress is not None:
                    progress(sum(done_s.values()), total_s, time.perf_counter() - started)
            results = [future.result() for future in futures]
    if progress is not None:
        progress(total_s, total_s, time.perf_counter() - started)
    return results


def _sequential(
    scenario: EmulatorScenario,
    out_dir: Path,
    progress: Progress | None,
    real_node: "RealNodeSpec | None" = None,
) -> list[RunResult]:
    results: list[RunResult] = []
    started = time.perf_counter()
    total_s = scenario.duration_s * len(scenario.policies)
    for number, policy in enumerate(scenario.policies):
        before_s = number * scenario.duration_s

        def report(
            virtual_s: float, _duration_s: float, _wall_s: float, before_s: float = before_s
        ) -> None:
            if progress is not None:
                progress(before_s + virtual_s, total_s, time.perf_counter() - started)

        results.append(
            run_policy(
                scenario, policy, out_dir / run_name(policy), progress=report, real_node=real_node
            )
        )
        report(scenario.duration_s, scenario.duration_s, 0.0)
    return results


def _run_reporting(
    scenario: EmulatorScenario, policy: str, run_dir: Path, updates: "queue.Queue[tuple]"
) -> RunResult:
    def report(virtual_s: float, _duration_s: float, _wall_s: float) -> None:
        updates.put((policy, virtual_s))

    result = run_policy(scenario, policy, run_dir, progress=report)
    updates.put((policy, scenario.duration_s))
    return result


def _drain(updates: "queue.Queue[tuple]", done_s: dict[str, float], timeout_s: float) -> None:
    try:
        policy, virtual_s = updates.get(timeout=timeout_s)
        done_s[policy] = virtual_s
        while True:
            policy, virtual_s = updates.get_nowait()
            done_s[policy] = virtual_s
    except queue.Empty:
        pass
