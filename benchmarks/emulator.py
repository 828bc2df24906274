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


BUCKETS = (
    ("flight/power", "flight: power (protection, governor, forecast)"),
    ("flight/payload", "flight: payload (jobs, SQLite, checkpoints)"),
    ("flight/inference", "flight: inference core calls"),
    ("flight/isl", "flight: ISL (beacons, routing, offload)"),
    ("flight/orbit", "flight: onboard orbit and forecast"),
    ("flight/", "flight: runtime (rate groups, telemetry, links, protocol)"),
    ("ground/", "ground stations (decode, archive)"),
    ("hil/env", "physics (sunlight, battery)"),
    ("hil/sim", "emulator (geometry, ISL network, log)"),
    ("asyncio", "asyncio scheduling"),
    ("sqlite3", "SQLite"),
)


def profile(satellites: int) -> list[tuple[str, float]]:
    """Own time per part of the system over a run, as fractions of the total."""
    logging.getLogger("flight").setLevel(logging.ERROR)
    chosen = scenario(satellites, COARSE_CADENCE, virtual_s=3_600.0)

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="penumbra-profile-", dir="/dev/shm") as run_dir:
            async with Emulator(chosen, Path(run_dir)) as emulator:
                await emulator.run()

    profiler = cProfile.Profile()
    profiler.runcall(clock.run, main(), virtual=True)
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = defaultdict(float)
    for (filename, _, function), (_, _, own_s, _, _) in stats.items():
        label = "other (numpy, json, builtins)"
        where = filename if filename != "~" else function
        for prefix, name in BUCKETS:
            if prefix in where:
                label = name
                break
        totals[label] += own_s
    whole = sum(totals.values())
    return sorted(((label, t / whole) for label, t in totals.items()), key=lambda x: -x[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(PLANES))
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
        print(
            f"\nwhere the time goes: {args.profile_size} satellites, 30 min, own time (cProfile)\n"
        )
        print("| part | share |")
        print("|---|---|")
        with ProcessPoolExecutor(1) as pool:
            shares = pool.submit(profile, args.profile_size).result()
        for label, share in shares:
            print(f"| {label} | {share:.0%} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
