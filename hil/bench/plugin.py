"""The pytest plugin of the HIL bench: the `bench` fixture, `@pytest.mark.needs`, the gate, the
per-test records and the summary table.

Enable it with `-p hil.bench.plugin` (it loads hil.testapi.plugin for `--target`) or in a
conftest.py's `pytest_plugins`. Tests take the fixture:

    @pytest.mark.needs("power_cut")
    async def test_value_survives(bench):
        await bench.api.station.set_parameters({"health.PING_PERIOD_MS": 700})
        await bench.power_cycle()

`--target sil | pty | serial:/dev/ttyUSB0@115200 | mqtt://HOST:1883/NODE` (or `--bench
bench.toml`) names the target: hil.bench.targets. Before a test, the bench starts (sil, pty) or
connects to (a board) the target, puts a BenchLink between the line and a ground station, and
waits for the gate: the link up and telemetry flowing. A test that needs what the target cannot
do is skipped with the reason. Every test leaves `link.jsonl` and `traffic.txt` (and the node's
output, where the bench runs the node) in `out/bench/<test>/`; the session ends with a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import pytest_asyncio

from ground.dictionary import TelemetrySample
from ground.station import GroundStation
from hil.bench.config import CAPABILITIES, BenchConfig, BenchConfigError
from hil.bench.config import load as load_bench
from hil.bench.line import BenchLink, LinkRecorder, write_traffic
from hil.bench.power import ManualPower, PowerDriver
from hil.bench.targets import BenchTarget, TargetSpec, make_target, parse_target
from hil.testapi.api import IntegrationApi
from hil.testapi.predicates import equal_to, greater_than
from hil.testapi.target import TargetConnection

pytest_plugins = ["hil.testapi.plugin"]  # --target and --api-timeout

DEFAULT_TIMEOUT_S = 60.0  # safety net of every wait in a bench test; never a measurement
DEFAULT_RECORD_DIR = "out/bench"
DEFAULT_OFF_S = 1.0  # how long power_cycle leaves the target unpowered
_SESSION = pytest.StashKey["BenchSession"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("penumbra-bench", "Penumbra HIL bench (hil.bench)")
    group.addoption(
        "--bench",
        metavar="FILE",
        type=Path,
        help="bench.toml: the board on the bench (target spec, key, dictionary, power driver); "
        "--target, if given, overrides its spec",
    )
    group.addoption(
        "--bench-record",
        metavar="DIR",
        type=Path,
        help=f"where each test's link record goes (default {DEFAULT_RECORD_DIR} under rootdir)",
    )
    group.addoption(
        "--bench-seed",
        metavar="N",
        type=int,
        default=0,
        help="seed of the line's fault injection (default 0): a seed repeats a run's faults",
    )
    group.addoption(
        "--bench-timeout",
        metavar="SECONDS",
        type=float,
        default=None,
        help=f"safety net of the gate and of every wait in a bench test (default "
        f"{DEFAULT_TIMEOUT_S:g}, or bench.toml's link_timeout_s)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "needs(*capabilities): skip unless the bench target can do all of these: "
        + ", ".join(CAPABILITIES),
    )
    session = BenchSession(config)
    config.stash[_SESSION] = session
    config.pluginmanager.register(session, "penumbra-bench-session")


@dataclass
class Row:
    """One bench test in the summary table."""

    nodeid: str
    target: str
    outcome: str = "passed"
    seconds: float = 0.0


class BenchSession:
    """What the plugin knows for the whole run: the target spec and bench file (read when the
    first bench test needs them, so a suite without bench tests never reads them), the gate's
    verdict, the summary rows. Registered as a plugin: its hooks fill and print the table."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.pytest_session: pytest.Session | None = None
        self.rows: dict[str, Row] = {}
        self.gate_failure: str | None = None
        self.gates_passed = 0
        self._resolved: tuple[TargetSpec, BenchConfig] | None = None
        self._capabilities: tuple[frozenset[str], Callable[[str], str]] | None = None

    def resolve(self) -> tuple[TargetSpec, BenchConfig]:
        """(spec, bench file); BenchConfigError with words for anything wrong."""
        if self._resolved is None:
            bench_path = self.config.getoption("--bench")
            bench = BenchConfig() if bench_path is None else load_bench(bench_path)
            text = self.config.getoption("--target")
            if bench.spec is not None and text == "memory":  # --target left at its default
                text = bench.spec
            self._resolved = (parse_target(text), bench)
        return self._resolved

    def capabilities(self) -> tuple[frozenset[str], Callable[[str], str]]:
        if self._capabilities is None:
            from hil.bench.targets import target_capabilities

            self._capabilities = target_capabilities(*self.resolve())
        return self._capabilities

    @property
    def timeout_s(self) -> float:
        given = self.config.getoption("--bench-timeout")
        if given is not None:
            return float(given)
        _, bench = self.resolve()
        return bench.link_timeout_s

    @property
    def record_root(self) -> Path:
        given = self.config.getoption("--bench-record")
        return Path(given) if given is not None else self.config.rootpath / DEFAULT_RECORD_DIR

    def stop_run(self, reason: str) -> None:
        """End the run after the current test, with `reason` in pytest's summary."""
        if self.pytest_session is not None:
            self.pytest_session.shouldfail = reason

    def record_dir(self, item: pytest.Item) -> Path:
        """out/bench/<module>__<test>[params], emptied for this run."""
        module = Path(str(item.path)).stem if getattr(item, "path", None) else "test"
        name = re.sub(r"[^A-Za-z0-9_.\[\]-]+", "_", f"{module}__{item.name}")
        directory = self.record_root / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    # -- hooks ---------------------------------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.pytest_session = session

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """A target spec or bench file that cannot work stops the run before any test, once."""
        if not any("bench" in getattr(item, "fixturenames", ()) for item in items):
            return
        try:
            self.capabilities()
        except BenchConfigError as error:
            raise pytest.UsageError(str(error)) from None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = self.rows.get(report.nodeid)
        if row is None:
            return
        row.seconds += report.duration
        if report.skipped and report.when == "setup":
            row.outcome = "skipped"
        elif report.failed:
            row.outcome = "failed" if report.when == "call" else "error"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.rows:
            return
        table = summary_table(list(self.rows.values()))
        terminalreporter.write_sep("=", "bench summary")
        for line in table.splitlines():
            terminalreporter.write_line(line)
        with contextlib.suppress(OSError):
            self.record_root.mkdir(parents=True, exist_ok=True)
            (self.record_root / "summary.txt").write_text(table + "\n", encoding="utf-8")


# -- skipping by capability ------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a bench test that needs what the target cannot do, before its target starts."""
    if "bench" not in getattr(item, "fixturenames", ()):
        return
    session = item.config.stash[_SESSION]
    spec, _ = session.resolve()  # checked at collection: pytest_collection_modifyitems
    session.rows[item.nodeid] = Row(item.nodeid, spec.text)
    needed: list[str] = []
    for marker in item.iter_markers("needs"):
        needed.extend(marker.args)
    unknown = sorted(set(needed) - set(CAPABILITIES))
    if unknown:
        pytest.fail(
            f"@pytest.mark.needs({unknown[0]!r}): no such capability; the capabilities are "
            + ", ".join(CAPABILITIES),
            pytrace=False,
        )
    if not needed:
        return
    capabilities, missing = session.capabilities()
    for capability in needed:
        if capability not in capabilities:
            pytest.skip(f"needs {capability}: {missing(capability)}")


# -- the fixture -----------------------------------------------------------------------------------


@dataclass
class Bench:
    """A connected target on the bench, as a test gets it.

    `api` is the integration-test API over a ground station on `line` (the BenchLink: faults,
    outages, raw frames, counters). `environment` plays orbit, sunlight and battery around a
    target with a simulated EPS (None otherwise); `power` switches its supply (None if it
    cannot). `record_dir` holds this test's records. Waits default to `timeout_s`.
    """

    api: IntegrationApi
    target: BenchTarget
    capabilities: frozenset[str]
    environment: Any | None
    power: PowerDriver | None
    line: BenchLink
    record_dir: Path
    timeout_s: float = DEFAULT_TIMEOUT_S
    power_cycles: int = 0

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    async def power_cycle(self, *, off_s: float = DEFAULT_OFF_S) -> None:
        """Cut the target's power, leave it off `off_s`, restore it, and return once it has
        booted again: the link up and the node NOMINAL in a new boot. The api keeps working (the
        same station, whose state carries over as a real ground's does)."""
        if self.power is None:
            raise RuntimeError(
                f"target {self.target.name} has no power driver: mark the test "
                '@pytest.mark.needs("power_cut") so that it is skipped here'
            )
        api = self.api
        boot = api.station.latest.get("mode.BOOT_COUNT")
        await self.power.cut()
        await asyncio.sleep(off_s)
        start = api.mark()
        await self.power.restore()
        self.power_cycles += 1
        async with asyncio.timeout(self.timeout_s):
            await self.line.wait_up()
        if boot is not None:
            await api.await_telemetry(
                "mode.BOOT_COUNT", greater_than(boot.value), start=start, timeout_s=self.timeout_s
            )
        await api.await_telemetry(
            "mode.MODE", equal_to("NOMINAL"), start=start, timeout_s=self.timeout_s
        )


@pytest_asyncio.fixture
async def bench(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bench]:
    """The target `--target` (or `--bench`) names, started or connected, gated, recorded."""
    session: BenchSession = request.config.stash[_SESSION]
    if session.gate_failure is not None and session.gates_passed == 0:
        pytest.fail(f"the bench gate failed before the first test: {session.gate_failure}")
    problem = None
    try:
        spec, bench_config = session.resolve()
        capabilities, _ = session.capabilities()
        target = make_target(spec, bench_config, tmp_path / "bench")
        timeout_s = session.timeout_s
    except BenchConfigError as error:
        problem = str(error)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    if isinstance(target.power, ManualPower):
        target.power = ManualPower(ask=_operator(request.config))
    item = request.node
    record_dir = session.record_dir(item)
    item.user_properties.extend([("bench_target", target.name), ("bench_record", str(record_dir))])
    seed = request.config.getoption("--bench-seed")
    recorder = LinkRecorder(
        record_dir / "link.jsonl", test=item.nodeid, target=target.name, seed=seed
    )
    api: IntegrationApi | None = None
    async with contextlib.AsyncExitStack() as stack:
        # Runs last, whatever happened: the records of a failed start are wanted most.
        stack.callback(lambda: _write_records(record_dir, recorder, target, api))
        connection = await _start(session, target, stack)
        line = BenchLink(connection.link, seed=seed, recorder=recorder)
        await stack.enter_async_context(line)
        recorder.start_clock(asyncio.get_running_loop().time())
        station = await stack.enter_async_context(
            GroundStation(
                line,
                connection.dictionary,
                key=connection.key,
                state_dir=target.ground_state_dir,
            )
        )
        api = await stack.enter_async_context(IntegrationApi(station, default_timeout_s=timeout_s))
        await _gate(session, target, line, api, timeout_s)
        environment = None
        if "simulated_eps" in capabilities:
            environment = _environment(api)
            if environment is not None:
                await stack.enter_async_context(environment)
        yield Bench(
            api=api,
            target=target,
            capabilities=capabilities,
            environment=environment,
            power=target.power,
            line=line,
            record_dir=record_dir,
            timeout_s=timeout_s,
        )
        if target.persistent:
            await _left_nominal(target, api, timeout_s)


async def _start(
    session: BenchSession, target: BenchTarget, stack: contextlib.AsyncExitStack
) -> TargetConnection:
    try:
        connection = TargetConnection.of(await target.start())
    except BenchConfigError as error:
        problem = str(error)
    except (RuntimeError, OSError) as error:
        problem = f"target {target.name} did not start: {error}"
    else:
        stack.push_async_callback(target.stop)
        return connection
    _gate_failed(session, problem)


async def _gate(
    session: BenchSession,
    target: BenchTarget,
    line: BenchLink,
    api: IntegrationApi,
    timeout_s: float,
) -> None:
    """The link up and telemetry flowing, within `timeout_s`, or the test fails with words (and
    the run stops, if no test got past the gate yet)."""
    try:
        async with asyncio.timeout(timeout_s):
            await line.wait_up()
    except TimeoutError:
        reason = getattr(line.inner, "last_error", "") or "no reason given"
        _gate_failed(
            session,
            f"the link to {target.name} did not come up within {timeout_s:g} s ({reason}); "
            "is the target powered and its line connected?" + _output(target),
        )
    subscription = api.station.subscribe(TelemetrySample, depth=1)
    try:
        async with asyncio.timeout(timeout_s):
            if not api.station.latest:  # nothing yet: the next sample will do
                await subscription.get()
    except TimeoutError:
        counters = line.counters
        _gate_failed(
            session,
            f"the link to {target.name} is up but no telemetry arrived within {timeout_s:g} s "
            f"({counters.frames_received} frames received, {counters.frames_sent} sent); is the "
            "node running with this key and dictionary?" + _output(target),
        )
    finally:
        subscription.close()
    session.gates_passed += 1


def _gate_failed(session: BenchSession, reason: str) -> NoReturn:
    if session.gates_passed == 0 and session.gate_failure is None:
        # Before any test got past it, the bench itself does not work: every test would fail
        # the same way, each after its own timeout. Stop the run after this one.
        session.gate_failure = reason
        session.stop_run(f"bench gate failed: {reason.splitlines()[0]}")
    pytest.fail(f"bench gate: {reason}", pytrace=False)


def _output(target: BenchTarget) -> str:
    output = target.output().strip()
    return f"\nnode output (last lines):\n{_tail(output)}" if output else ""


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


async def _left_nominal(target: BenchTarget, api: IntegrationApi, timeout_s: float) -> None:
    """A node that outlives the test must be left NOMINAL, or the next test starts elsewhere.

    The mode is the newest of what the test's history says (its last mode change event) and a
    housekeeping sample generated from now on.
    """
    changes = api.events("mode.MODE_CHANGED", start=0)
    modes = [str(changes[-1].args.get("mode"))] if changes else []
    try:
        modes.append(str((await api.await_telemetry("mode.MODE", timeout_s=timeout_s)).value))
    except AssertionError:
        pytest.fail(
            f"cannot tell the mode {target.name} was left in: no mode.MODE sample within "
            f"{timeout_s:g} s after the test",
            pytrace=False,
        )
    wrong = [mode for mode in modes if mode != "NOMINAL"]
    if wrong:
        pytest.fail(
            f"the test left {target.name} in mode {wrong[-1]}; the next test would start there: "
            "command it back to NOMINAL before the test ends",
            pytrace=False,
        )


def _environment(api: IntegrationApi) -> Any | None:
    """The bench environment for a target with a simulated EPS, once hil.bench.environment
    provides `default_bench_environment`."""
    try:
        from hil.bench.environment import default_bench_environment
    except ImportError:
        return None
    return default_bench_environment(api)


def _operator(config: pytest.Config) -> Callable[[str], Any]:
    """ManualPower's exchange with the operator, with pytest's capture suspended meanwhile."""
    capture = config.pluginmanager.getplugin("capturemanager")
    terminal = ManualPower()

    async def ask(request: str) -> None:
        context = (
            capture.global_and_fixture_disabled()
            if capture is not None
            else contextlib.nullcontext()
        )
        with context:
            await terminal._terminal(request)

    return ask


def _write_records(
    record_dir: Path, recorder: LinkRecorder, target: BenchTarget, api: IntegrationApi | None
) -> None:
    recorder.close()
    history = [] if api is None else api.history
    write_traffic(recorder.path, record_dir / "traffic.txt", history)
    output = target.output()
    if output:
        (record_dir / "node.log").write_text(output, encoding="utf-8")


# -- the summary -----------------------------------------------------------------------------------


def summary_table(rows: list[Row]) -> str:
    """test | outcome | seconds | target, one row per bench test, and the totals."""
    headers = ("test", "outcome", "seconds", "target")
    cells = [(row.nodeid, row.outcome, f"{row.seconds:.1f}", row.target) for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = [
        "  ".join(
            h.rjust(widths[i]) if i == 2 else h.ljust(widths[i]) for i, h in enumerate(headers)
        )
    ]
    lines.append("  ".join("-" * width for width in widths))
    for cell in cells:
        lines.append(
            "  ".join(
                c.rjust(widths[i]) if i == 2 else c.ljust(widths[i]) for i, c in enumerate(cell)
            ).rstrip()
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    total_s = sum(row.seconds for row in rows)
    lines.append(
        ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))
        + f" in {total_s:.1f} s"
    )
    return "\n".join(lines)
