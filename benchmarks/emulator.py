"""Emulator scaling (issue 6): wall time, real-time factor and peak memory of N real nodes on
one virtual-time loop at 10, 100 and 1,000 satellites, and where the time goes.

Run `python benchmarks/emulator.py [--sizes 10 100 1000] [--profile-size 100]` (`make
bench-emulator`). Each size runs in its own process (peak RSS is per process) at the default
and the coarse cadence (hil.sim.scenario.Cadence, COARSE_CADENCE) and, for 10 satellites, at
the flight cadence (10 Hz, 1 s housekeeping) for the comparison. The peer is real time: the
real-time factor is virtual seconds per wall second.
Issue 6's targets: 100 satellites for 24 h within 60 s on one core (1,440x), and 1,000
satellites at 100x or better.
"""

import argparse
import cProfile
import logging
import pstats
import resource
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runtime import machine  # benchmarks/runtime.py: the same machine header

from flight.runtime import clock
from hil.sim.emulator import Emulator
from hil.sim.scenario import (
    COARSE_CADENCE,
    FLIGHT_CADENCE,
    Cadence,
    EmulatorScenario,
    IslConfig,
    Workload,
)

PLANES = {10: 2, 100: 4, 1000: 40}
CADENCES = {"flight": FLIGHT_CADENCE, "default": Cadence(), "coarse": COARSE_CADENCE}
# Virtual seconds per (satellites, cadence): enough for a stable rate, a few minutes at most.
VIRTUAL_S = {
    (10, "flight"): 3_600.0,
    (10, "default"): 21_600.0,
    (10, "coarse"): 21_600.0,
    (100, "default"): 3_600.0,
    (100, "coarse"): 7_200.0,
    (1000, "default"): 900.0,
    (1000, "coarse"): 1_800.0,
}


@dataclass(frozen=True, slots=True)
class Measurement:
    satellites: int
    cadence: str
    virtual_s: float
    start_s: float
    run_s: float
    peak_rss_mib: float

    @property
    def real_time_factor(self) -> float:
        return self.virtual_s / self.run_s

    @property
    def per_node_hour_s(self) -> float:
        return self.run_s / (self.satellites * self.virtual_s / 3_600.0)


def scenario(satellites: int, cadence: Cadence, virtual_s: float) -> EmulatorScenario:
    return EmulatorScenario.walker(
        satellites,
        PLANES.get(satellites, 1),
        1,
        name=f"scaling-{satellites}",
        duration_s=virtual_s,
        # +Grid needs many satellites per plane to have links at 550 km; small ones take all.
        isl=IslConfig(topology="grid" if satellites >= 100 else "all"),
        workload=Workload(imaging_jobs_per_sunlit_hour=2.0),
        cadence=cadence,
    )


def measure(satellites: int, cadence_name: str) -> Measurement:
    logging.getLogger("flight").setLevel(logging.ERROR)
    virtual_s = VIRTUAL_S.get((satellites, cadence_name), 3_600.0)
    chosen = scenario(satellites, CADENCES[cadence_name], virtual_s)
    times: dict[str, float] = {}

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="penumbra-scaling-", dir="/dev/shm") as run_dir:
            started = time.perf_counter()
            async with Emulator(chosen, Path(run_dir)) as emulator:
                times["start"] = time.perf_counter() - started
                started = time.perf_counter()
                await emulator.run()
                times["run"] = time.perf_counter() - started

    clock.run(main(), virtual=True)
    return Measurement(
        satellites,
        cadence_name,
        chosen.duration_s,
        times["start"],
        times["run"],
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


PARTS = (
    ("flight/power/component.py", "protect", "power protection (tick), EPS read + physics"),
    ("flight/power/component.py", "control", "power governor (1 Hz group), forecast included"),
    ("flight/orbit/forecast.py", "compute", "onboard SGP4 forecasts (power and ISL)"),
    ("hil/env/environment.py", "advance", "physics of sunlight and battery"),
    ("flight/isl/component.py", "tick", "ISL: beacons, routing, offload decisions"),
    ("flight/payload/component.py", "_work", "payload jobs: tiles, checkpoints"),
    ("flight/runtime/services.py", "housekeeping_tick", "housekeeping"),
    ("flight/runtime/components/health.py", "check_pings", "health pings"),
    ("ground/station.py", "_on_frame", "ground stations: decode, archive"),
    ("hil/sim/emulator.py", "_step", "emulator: geometry, contacts, ISL network, event log"),
    ("hil/sim/emulator.py", "_sample", "emulator: samples for the report"),
    ("flight/runtime/rategroups.py", "_run_group", "all rate-group members together"),
)


def profile(satellites: int) -> tuple[float, list[tuple[str, float]]]:
    """(run seconds, [(part, share of the run)]): inclusive time of the main entry points over
    an hour of a run at the coarse cadence (start and stop excluded), under cProfile. The parts
    overlap (the governor includes its forecast; rate groups include most of the rest)."""
    logging.getLogger("flight").setLevel(logging.ERROR)
    chosen = scenario(satellites, COARSE_CADENCE, virtual_s=3_600.0)
    profiler = cProfile.Profile()
    run_s = 0.0

    async def main() -> None:
        nonlocal run_s
        with tempfile.TemporaryDirectory(prefix="penumbra-profile-", dir="/dev/shm") as run_dir:
            async with Emulator(chosen, Path(run_dir)) as emulator:
                started = time.perf_counter()
                profiler.enable()
                await emulator.run()
                profiler.disable()
                run_s = time.perf_counter() - started

    clock.run(main(), virtual=True)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    inclusive: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, _, cumulative_s, _) in stats.items():
        for path, name, label in PARTS:
            if function == name and filename.endswith(path):
                inclusive[label] += cumulative_s
    return run_s, [(label, inclusive[label] / run_s) for _, _, label in PARTS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=sorted(PLANES))
    parser.add_argument("--profile-size", type=int, default=100)
    args = parser.parse_args()
    print(machine())
    print("\nWalker 53 deg at 550 km, ISL on (+Grid from 100), 2 imaging jobs per sunlit hour per")
    print("satellite, node state on tmpfs; each run in its own process\n")
    print(
        "| satellites | cadence | virtual | start | run | real-time factor "
        "| wall per node-hour | 100 sats x 24 h at this rate | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    runs = [(n, c) for n in args.sizes for c in ("default", "coarse")]
    if 10 in args.sizes:
        runs.insert(0, (10, "flight"))
    for satellites, cadence in runs:
        with ProcessPoolExecutor(1) as pool:
            m = pool.submit(measure, satellites, cadence).result()
        projection_s = m.per_node_hour_s * 100 * 24
        print(
            f"| {m.satellites} | {m.cadence} | {m.virtual_s / 3600:g} h | {m.start_s:.1f} s "
            f"| {m.run_s:.1f} s | {m.real_time_factor:.0f}x | {m.per_node_hour_s * 1000:.0f} ms "
            f"| {projection_s / 60:.1f} min | {m.peak_rss_mib:.0f} MiB |",
            flush=True,
        )
    if args.profile_size:
        with ProcessPoolExecutor(1) as pool:
            run_s, shares = pool.submit(profile, args.profile_size).result()
        print(
            f"\nwhere the time goes: {args.profile_size} satellites, coarse cadence, an hour "
            f"({run_s:.1f} s under cProfile); inclusive, so the parts overlap\n"
        )
        print("| part | share of the run |")
        print("|---|---|")
        for label, share in shares:
            print(f"| {label} | {share:.0%} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
