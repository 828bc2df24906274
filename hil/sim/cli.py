"""`penumbra sim power`: the power scenario, every policy at beta 0 and 70 degrees, as a table,
metrics.json and a PNG of the first two orbits."""

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from hil.sim.power import POLICY_CHOICES, PowerScenario, run_all
from hil.sim.report import plot, table, verdicts, write_metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="scenario", metavar="SCENARIO", required=True)
    power = actions.add_parser(
        "power", help="one satellite for a day at 550 km, once per payload power policy"
    )
    power.add_argument("--hours", type=float, default=24.0, help="virtual hours (default 24)")
    power.add_argument(
        "--beta",
        type=float,
        action="append",
        help="beta angle in degrees (repeatable; default 0 and 70)",
    )
    labels = [choice.label for choice in POLICY_CHOICES]
    power.add_argument(
        "--policy",
        action="append",
        choices=labels,
        help="a policy to run (repeatable; default all)",
    )
    power.add_argument("--seed", type=int, default=1, help="the job arrivals' seed")
    power.add_argument("--processes", type=int, default=2, help="runs at once (default 2)")
    power.add_argument("--out", type=Path, default=Path("out/power"), help="where the report goes")


def run(args: argparse.Namespace) -> int:
    if args.hours <= 0 or args.processes < 1:
        print("penumbra sim power: --hours and --processes must be above 0", file=sys.stderr)
        return 2
    # Events are the node's telemetry; here the table is the output (the report keeps the rest).
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    scenario = replace(PowerScenario(), duration_s=args.hours * 3600.0, seed=args.seed)
    betas = tuple(args.beta or (0.0, 70.0))
    labels = tuple(args.policy or [choice.label for choice in POLICY_CHOICES])
    print(
        f"power scenario: {args.hours:g} h at 550 km, betas {', '.join(f'{b:g}' for b in betas)},"
        f" {len(labels)} policies, {args.processes} at a time ...",
        flush=True,
    )
    started = time.perf_counter()
    results = run_all(scenario, labels, betas=betas, processes=args.processes)
    elapsed = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    write_metrics(results, scenario, args.out / "metrics.json")
    plot(results, args.out / "soc_and_payload_power.png")
    print(table(results))
    print()
    for line in verdicts(results):
        print(line)
    print(f"\n{len(results)} runs in {elapsed:.0f} s; report in {args.out}/")
    return 0
