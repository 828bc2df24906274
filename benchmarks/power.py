"""Power-aware payload benchmark (issue 5): the power scenario, every policy at beta 0 and 70.

Run `python benchmarks/power.py` (or `make bench-power`); `--hours`, `--processes` and `--out`
as for `penumbra sim power`. One satellite at 550 km for 24 h of virtual time, the real node
governing its payload against the simulated physics (hil.sim.power), once per policy: the
energy-aware governor against its named peers, the baselines always-on FIFO, threshold
hysteresis (60/45 as the issue gives it, and 90/75, above the 70% floor) and sunlit-only, on the
same seeded jobs. Prints the machine and date, the Markdown table for docs/benchmarks.md and the
verdicts; writes metrics.json and the plot of the first two orbits to --out.
"""

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

from runtime import machine  # benchmarks/runtime.py: the same machine header

from hil.sim.power import PowerScenario, run_all
from hil.sim.report import plot, table, verdicts, write_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("out/power"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    scenario = replace(PowerScenario(), duration_s=args.hours * 3600.0)
    print(machine())
    started = time.perf_counter()
    results = run_all(scenario, processes=args.processes)
    elapsed = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    write_metrics(results, scenario, args.out / "metrics.json")
    plot(results, args.out / "soc_and_payload_power.png")
    print(f"\n{len(results)} runs of {args.hours:g} virtual hours in {elapsed:.0f} s wall\n")
    print(table(results))
    print()
    for line in verdicts(results):
        print(f"- {line}")


if __name__ == "__main__":
    main()
