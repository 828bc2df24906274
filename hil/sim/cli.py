"""`penumbra sim run SCENARIO.toml`: a constellation scenario file through the emulator, once per
policy, with a progress line, a summary table, report.html and metrics.json; `penumbra sim
power`: the power scenario, every policy at beta 0 and 70 degrees, as a table, metrics.json and
a PNG of the first two orbits."""

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from hil.sim.power import POLICY_CHOICES, PowerScenario, run_all
from hil.sim.report import plot, table, verdicts, write_metrics
from hil.sim.results import RunResult
from hil.sim.scenario import EmulatorScenario, ScenarioError, load

Runner = Callable[..., Sequence[RunResult]]  # hil.sim.run.run_scenario's shape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="scenario", metavar="SCENARIO", required=True)
    constellation = actions.add_parser(
        "run", help="a scenario file (scenarios/*.toml) through the constellation emulator"
    )
    constellation.add_argument("file", type=Path, metavar="SCENARIO.toml")
    constellation.add_argument(
        "--out",
        type=Path,
        default=Path("out"),
        help="the report goes to OUT/<scenario name>/ (default out)",
    )
    constellation.add_argument(
        "--hours", type=float, help="virtual hours to run (default: the file's duration)"
    )
    constellation.add_argument(
        "--policy",
        action="append",
        choices=[choice.label for choice in POLICY_CHOICES],
        help="a policy to run instead of the file's (repeatable)",
    )
    constellation.add_argument(
        "--real-node",
        metavar="TARGET",
        help="make one satellite a real node, in real time: pty (a penumbra flight process), "
        "serial:/dev/ttyUSB0@115200 or mqtt://HOST:1883/NODE (a board; see --bench)",
    )
    constellation.add_argument(
        "--real-sat", type=int, default=0, help="which satellite is real (default 0)"
    )
    constellation.add_argument(
        "--bench", type=Path, help="bench.toml of a board given to --real-node (its key, power)"
    )
    constellation.set_defaults(run=run_constellation)
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
    power.set_defaults(run=run_power)


def run(args: argparse.Namespace) -> int:
    return args.run(args)


def run_constellation(args: argparse.Namespace, *, runner: Runner | None = None) -> int:
    """`penumbra sim run`; `runner` stands in for hil.sim.run.run_scenario in tests of the
    output only."""
    try:
        scenario = load(args.file)
    except ScenarioError as error:
        print(f"penumbra sim run: {error}", file=sys.stderr)
        return 2
    if args.hours is not None:
        if not args.hours > 0:
            print(f"penumbra sim run: --hours must be above 0, not {args.hours:g}", file=sys.stderr)
            return 2
        scenario = replace(scenario, duration_s=args.hours * 3_600.0)
    if args.policy:
        scenario = replace(scenario, policies=tuple(dict.fromkeys(args.policy)))
    options = {}
    if args.real_node is not None:
        from hil.sim.realtime import RealNodeSpec

        try:
            options["real_node"] = RealNodeSpec(args.real_node, args.real_sat, args.bench)
        except ValueError as error:
            print(f"penumbra sim run: --real-node: {error}", file=sys.stderr)
            return 2
        if scenario.isl.enabled and len(scenario.orbits) > 1:
            print(
                "penumbra sim run: --real-node: a real node has no inter-satellite links; "
                "set [isl] enabled = false in the scenario",
                file=sys.stderr,
            )
            return 2
    if runner is None:
        from hil.sim.run import run_scenario as runner
    # Events are the nodes' telemetry, kept in each run's events.jsonl; here the table speaks.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    out_dir = args.out / scenario.name
    print(describe(scenario), flush=True)
    progress = Progress(sys.stderr)
    try:
        results = list(runner(scenario, out_dir, progress=progress, **options))
    except ValueError as error:  # a real node the emulator cannot take (its satellite, ...)
        progress.close()
        print(f"penumbra sim run: {error}", file=sys.stderr)
        return 2
    progress.close()
    from hil.sim.run_report import text_table, write_metrics, write_report

    print(text_table(results))
    report = write_report(results, scenario, out_dir)
    metrics = write_metrics(results, scenario, out_dir)
    print(f"\nreport:  {report}\nmetrics: {metrics}")
    return 0


def describe(scenario: EmulatorScenario) -> str:
    policies = ", ".join(scenario.policies)
    return (
        f"scenario {scenario.name}: {len(scenario.orbits)} satellites in {scenario.planes} "
        f"plane(s), {len(scenario.sites)} ground station(s), {scenario.duration_s / 3_600:g} h, "
        f"seed {scenario.seed}; policies {policies}"
    )


class Progress:
    """The `progress(virtual_s, duration_s, wall_s)` callback of run_scenario (virtual seconds of
    all the policies' runs together): a bar with virtual time, percent and the real-time factor,
    redrawn in place on a terminal, one line per update when the stream is a file or a pipe."""

    WIDTH = 30

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.open_line = False

    def __call__(self, virtual_s: float, duration_s: float, wall_s: float) -> None:
        line = self.line(virtual_s, duration_s, wall_s)
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
            self.open_line = True
            if virtual_s >= duration_s:
                self.close()
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def line(self, virtual_s: float, duration_s: float, wall_s: float) -> str:
        fraction = min(virtual_s / duration_s, 1.0) if duration_s > 0 else 1.0
        filled = round(fraction * self.WIDTH)
        factor = f"{virtual_s / wall_s:,.0f}x real time" if wall_s > 0 else "-x real time"
        return (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:6.1%}  "
            f"{_clock(virtual_s)} of {_clock(duration_s)} virtual in {wall_s:,.1f} s, {factor}"
        )

    def close(self) -> None:
        if self.open_line:
            self.stream.write("\n")
            self.open_line = False
        self.stream.flush()


def _clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3_600:d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def run_power(args: argparse.Namespace) -> int:
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
