"""Constellation geometry benchmark (issue 6): what one emulator step costs at 10, 100, 1,000
satellites.

Run `python benchmarks/geometry.py`; `--sizes` and `--repeats` change the workload, `--hours`
the contact-window horizon. Walker-delta shells at 550 km, 53 deg (planes of 10 satellites,
phasing 1) and three ground sites. Per step (median of `--repeats` instants one second apart):
SGP4 for every satellite (`positions_of`), sunlight (`illumination_of`), ground contact masks
(`contact_mask`), ISLs over the +Grid topology and over every pair, with the latitude cut. Once
per constellation: building it (`walker_delta`) and a day of contact windows (`contact_windows`,
30 s steps refined to 1 s). Prints the machine header and a Markdown table; nothing asserts a
time.
"""

import argparse
import statistics
import time
from collections.abc import Callable

from runtime import machine  # benchmarks/runtime.py: the same machine header

from flight.orbit import GroundSite, positions_of
from hil.sim.constellation import plane_indices, walker_delta
from hil.sim.geometry import (
    contact_mask,
    contact_windows,
    grid_pairs,
    illumination_of,
    isl_candidates,
)

EPOCH_UNIX_S = 1_789_992_000.0  # 2026-09-21T12:00:00Z
PER_PLANE = 10
SITES = (
    GroundSite("svalbard", 78.23, 15.39),
    GroundSite("matera", 40.65, 16.70),
    GroundSite("punta-arenas", -52.94, -70.85),
)


def median_ms(work: Callable[[float], object], repeats: int) -> float:
    samples = []
    for k in range(repeats):
        t = EPOCH_UNIX_S + 600.0 + k
        started = time.perf_counter()
        work(t)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e3


def row(size: int, repeats: int, hours: float) -> str:
    """One table row: a Walker shell of about `size` satellites, timed."""
    planes = max(1, size // PER_PLANE)
    total = planes * (size // planes)
    phasing = 1 % planes
    started = time.perf_counter()
    orbits = walker_delta(total, planes, phasing, 550e3, 53.0, EPOCH_UNIX_S)
    build_ms = (time.perf_counter() - started) * 1e3
    pairs = grid_pairs(planes, total // planes, phasing=phasing)
    plane_of = plane_indices(total, planes)
    positions = positions_of(orbits, EPOCH_UNIX_S + 600.0)

    sgp4 = median_ms(lambda t: positions_of(orbits, t), repeats)
    light = median_ms(lambda t: illumination_of(positions, t), repeats)
    contacts = median_ms(lambda t: contact_mask(positions, t, SITES), repeats)
    grid = median_ms(lambda _: isl_candidates(positions, pairs), repeats)
    every = median_ms(lambda _: isl_candidates(positions), repeats)
    cut = median_ms(
        lambda _: isl_candidates(positions, cut_latitude_deg=50.0, plane_of=plane_of), repeats
    )
    step = sgp4 + light + contacts + grid
    links = f"{len(isl_candidates(positions, pairs))} / {len(isl_candidates(positions))}"
    started = time.perf_counter()
    contact_windows(orbits, SITES, EPOCH_UNIX_S, EPOCH_UNIX_S + hours * 3600.0)
    windows_s = time.perf_counter() - started
    return (
        f"| {total:,} | {build_ms:.0f} | {sgp4:.2f} | {light:.2f} | {contacts:.2f}"
        f" | {grid:.2f} | {every:.2f} | {cut:.2f} | {step:.2f} | {links} | {windows_s:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--hours", type=float, default=24.0)
    args = parser.parse_args()
    print(machine())
    print()
    print(
        "| satellites | build (ms) | SGP4 (ms/step) | sunlight | contacts (3 sites) | ISL +Grid"
        " | ISL all pairs | all pairs + cut | step, +Grid (ms) | links +Grid / all"
        f" | {args.hours:g} h of contact windows (s) |"
    )
    print("|---:" * 11 + "|")
    for size in args.sizes:
        print(row(size, args.repeats, args.hours))


if __name__ == "__main__":
    main()
