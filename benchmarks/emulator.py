"""Emulator scaling (issue 6, first cut): wall time, real-time factor and peak memory of N real
nodes on one virtual-time loop (hil.sim.emulator), for a short stretch of virtual time.

Run `python benchmarks/emulator.py [--satellites 4 12] [--virtual-s 900]`. Each size runs in its
own process (peak RSS is per process). The peer is real time itself: the real-time factor is
virtual seconds per wall second. Issue 6's targets (100 satellites x 24 h in 60 s, 1,000 at 100x)
are far off while every node runs its 10 Hz rate groups: see docs/emulator.md.
"""

import argparse
import logging
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from runtime import machine  # benchmarks/runtime.py: the same machine header

from flight.runtime import clock
from hil.sim.emulator import Emulator, EmulatorScenario


def measure(satellites: int, virtual_s: float) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one run."""
    logging.basicConfig(level=logging.ERROR)
    scenario = EmulatorScenario.walker(satellites, 2, 1, duration_s=virtual_s)

    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="penumbra-emulator-") as run_dir:
            async with Emulator(scenario, Path(run_dir)) as emulator:
                await emulator.run()

    started = time.perf_counter()
    clock.run(main(), virtual=True)
    wall_s = time.perf_counter() - started
    return wall_s, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--satellites", type=int, nargs="+", default=[4, 12])
    parser.add_argument("--virtual-s", type=float, default=900.0)
    args = parser.parse_args()
    print(machine())
    print(f"\n{args.virtual_s:g} s of virtual time per run, each size in its own process\n")
    print("| satellites | wall | real-time factor | wall per node-hour | peak RSS |")
    print("|---|---|---|---|---|")
    for satellites in args.satellites:
        with ProcessPoolExecutor(1) as pool:
            wall_s, rss_mib = pool.submit(measure, satellites, args.virtual_s).result()
        node_hours = satellites * args.virtual_s / 3600.0
        print(
            f"| {satellites} | {wall_s:.1f} s | {args.virtual_s / wall_s:.0f}x "
            f"| {wall_s / node_hours:.2f} s | {rss_mib:.0f} MiB |",
            flush=True,
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
