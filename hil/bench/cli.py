"""`penumbra bench run --target SPEC`: the acceptance suite against a target, for people who do not
drive pytest themselves; the exit status is pytest's."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hil.bench.config import BenchConfig, BenchConfigError
from hil.bench.config import load as load_bench
from hil.bench.targets import SPEC_FORMS, parse_target, target_capabilities

PROG = "penumbra bench"
REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_SUITE = REPOSITORY / "tests" / "acceptance"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_parser = actions.add_parser(
        "run",
        help="run the acceptance suite against a target",
        description="Run the acceptance suite (tests/acceptance) with pytest and the bench plugin "
        "against a target; every test leaves its link record in --record DIR, and a summary "
        "table ends the run. The exit status is pytest's (0: all passed or skipped).",
    )
    run_parser.add_argument("--target", metavar="SPEC", help=f"the node under test: {SPEC_FORMS}")
    run_parser.add_argument(
        "--bench",
        metavar="FILE",
        type=Path,
        help="bench.toml: a board's key, dictionary and power driver (and its spec)",
    )
    run_parser.add_argument("--junit", metavar="FILE", type=Path, help="write JUnit XML here")
    run_parser.add_argument(
        "-k", metavar="EXPR", dest="keyword", help="only tests matching EXPR (pytest's -k)"
    )
    run_parser.add_argument(
        "--record",
        metavar="DIR",
        type=Path,
        help="where the per-test records go (default out/bench in the repository)",
    )
    run_parser.add_argument(
        "--seed", type=int, default=0, help="seed of the line's fault injection (default 0)"
    )
    run_parser.add_argument(
        "--tests",
        metavar="PATH",
        type=Path,
        default=DEFAULT_SUITE,
        help=f"the suite to run (default {DEFAULT_SUITE})",
    )
    run_parser.add_argument(
        "pytest_args",
        nargs=argparse.REMAINDER,
        metavar="-- PYTEST_ARGS",
        help="anything after -- goes to pytest as it is (-x, -v, --lf, ...)",
    )


def pytest_command(args: argparse.Namespace) -> list[str]:
    """The pytest command line `penumbra bench run` runs."""
    # Absolute paths: pytest runs in the repository, the user's paths are from where they are.
    command = [sys.executable, "-m", "pytest", str(args.tests.resolve()), "-p", "hil.bench.plugin"]
    # Outside the repository no pyproject.toml says so: the suite's tests are plain coroutines.
    command += ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"]
    if args.target is not None:
        command += ["--target", args.target]
    if args.bench is not None:
        command += ["--bench", str(args.bench.resolve())]
    if args.junit is not None:
        command += [f"--junitxml={args.junit.resolve()}"]
    if args.keyword is not None:
        command += ["-k", args.keyword]
    if args.record is not None:
        command += ["--bench-record", str(args.record.resolve())]
    command += ["--bench-seed", str(args.seed)]
    extra = list(args.pytest_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return command + extra


def run(args: argparse.Namespace) -> int:
    if args.target is None and args.bench is None:
        _complain(f"give --target ({SPEC_FORMS}) or --bench bench.toml")
        return 2
    try:
        bench = load_bench(args.bench) if args.bench is not None else None
        spec = args.target or (bench.spec if bench is not None else None)
        if spec is None:
            _complain(f"{args.bench} names no [target] spec; give --target ({SPEC_FORMS})")
            return 2
        target_capabilities(parse_target(spec), bench or BenchConfig())  # a board's key, ...
    except BenchConfigError as error:
        _complain(str(error))
        return 2
    if not args.tests.exists():
        _complain(
            f"no test suite at {args.tests}; give --tests PATH (the repository's tests/acceptance)"
        )
        return 2
    cwd = REPOSITORY if args.tests.resolve().is_relative_to(REPOSITORY) else None
    return subprocess.run(pytest_command(args), cwd=cwd, check=False).returncode


def _complain(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)
