"""hil.bench.plugin: the `bench` fixture against sil, pty and a board it only connects to, in
pytest runs of their own (a small acceptance-like suite written to a temporary directory and run
in a subprocess with `-p hil.bench.plugin`, as `penumbra bench run` does)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from flight.link.serial import open_pty_pair

REPO = Path(__file__).resolve().parents[3]
PYTEST = (
    sys.executable,
    "-m",
    "pytest",
    "-p",
    "hil.bench.plugin",
    "-p",
    "no:cacheprovider",
    "-o",
    "asyncio_mode=auto",
    "-o",
    "asyncio_default_fixture_loop_scope=function",
)
RUN_TIMEOUT_S = 600  # safety net of a whole pytest run on a loaded machine


def pytest_run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*PYTEST, "-rs", "--bench-record", str(directory / "records"), *args],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(textwrap.dedent(text))


def summary_rows(output: str) -> dict[str, str]:
    """{test name: outcome} from the bench summary table."""
    table = output.split("bench summary", 1)[1]
    rows = {}
    for line in table.splitlines():
        words = line.split()
        if len(words) >= 4 and "::" in words[0]:
            rows[words[0].split("::", 1)[1]] = words[1]
    return rows


SIL_SUITE = """
import pytest

from hil.faults import FaultModel
from hil.testapi import equal_to


async def test_the_target_is_gated_and_nominal(bench):
    assert bench.target.name == "sil" and bench.has("line_faults")
    assert bench.line.up
    await bench.api.await_telemetry("mode.MODE", equal_to("NOMINAL"))


@pytest.mark.needs("power_cut")
async def test_needs_a_power_cut(bench):
    await bench.power_cycle()


@pytest.mark.needs("line_faults")
async def test_cop1_delivers_every_command_once_through_uplink_faults(bench):
    api = bench.api
    before = (await api.await_telemetry("health.COMMANDS_ACCEPTED")).value
    bench.line.set_faults(uplink=FaultModel(loss=0.15, duplicate=0.5, reorder=0.2))
    for _ in range(8):
        await api.send_and_assert_command("health.NOOP")
    bench.line.clear_faults()
    await api.await_telemetry("health.COMMANDS_ACCEPTED", equal_to(before + 8))
    assert bench.line.counters.injected > 0


async def test_a_failure_is_recorded_too(bench):
    await bench.api.send_and_assert_command("health.NOOP")
    assert False, "on purpose"


@pytest.mark.needs("teleport")
async def test_an_unknown_capability(bench):
    pass
"""


def test_the_bench_runs_a_suite_against_sil_with_skips_records_summary_and_junit(tmp_path):
    write(tmp_path, "test_suite.py", SIL_SUITE)
    result = pytest_run(tmp_path, "--target", "sil", "--junitxml", str(tmp_path / "junit.xml"))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert summary_rows(result.stdout) == {
        "test_the_target_is_gated_and_nominal": "passed",
        "test_needs_a_power_cut": "skipped",
        "test_cop1_delivers_every_command_once_through_uplink_faults": "passed",
        "test_a_failure_is_recorded_too": "failed",
        "test_an_unknown_capability": "error",
    }, output
    assert "needs power_cut: the sil target runs the node in the test's own process" in output
    assert "needs('teleport'): no such capability" in output
    records = tmp_path / "records"
    failed = records / "test_suite__test_a_failure_is_recorded_too"
    lines = (failed / "link.jsonl").read_text().splitlines()
    header = json.loads(lines[0])
    assert header["target"] == "sil" and header["test"].endswith("test_a_failure_is_recorded_too")
    assert {json.loads(line)["dir"] for line in lines[1:]} == {"up", "down"}
    traffic = (failed / "traffic.txt").read_text()
    assert "TC AD vc=0" in traffic and "TM vc=REALTIME" in traffic
    assert "Verification:" in traffic and "health.NOOP" in traffic
    faulty = records / "test_suite__test_cop1_delivers_every_command_once_through_uplink_faults"
    entries = [json.loads(line) for line in (faulty / "link.jsonl").read_text().splitlines()[1:]]
    assert any(len(entry["copies"]) != 1 for entry in entries)  # frames lost or doubled
    assert "test_a_failure_is_recorded_too" in (records / "summary.txt").read_text()
    cases = ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase")
    properties = {
        case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in cases
    }
    assert properties["test_a_failure_is_recorded_too"]["bench_target"] == "sil"
    assert properties["test_a_failure_is_recorded_too"]["bench_record"] == str(failed)


PTY_SUITE = """
import pytest

from hil.testapi import equal_to


@pytest.mark.needs("power_cut")
async def test_a_saved_parameter_survives_a_power_cycle(bench):
    api = bench.api
    await api.station.set_parameters({"health.PING_PERIOD_MS": 700}, timeout_s=bench.timeout_s)
    await api.station.save_parameters(timeout_s=bench.timeout_s)
    await bench.power_cycle()
    assert bench.power_cycles == 1
    await api.await_telemetry("mode.BOOT_COUNT", equal_to(1))  # the first boot is boot 0
    values = await api.station.get_parameters("health.PING_PERIOD_MS", timeout_s=bench.timeout_s)
    assert values["health.PING_PERIOD_MS"] == 700


@pytest.mark.needs("line_faults")
async def test_a_command_sent_in_an_outage_arrives_once_it_ends(bench):
    api = bench.api
    before = (await api.await_telemetry("health.COMMANDS_ACCEPTED")).value
    bench.line.outage(3.0)
    await api.send_and_assert_command("health.NOOP")
    assert bench.line.counters.uplink.lost_in_outage > 0
    await api.await_telemetry("health.COMMANDS_ACCEPTED", equal_to(before + 1))
"""


def test_the_bench_cuts_a_pty_targets_power_and_the_ground_carries_on(tmp_path):
    write(tmp_path, "test_suite.py", PTY_SUITE)
    result = pytest_run(tmp_path, "--target", "pty")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert summary_rows(result.stdout) == {
        "test_a_saved_parameter_survives_a_power_cycle": "passed",
        "test_a_command_sent_in_an_outage_arrives_once_it_ends": "passed",
    }, output
    record = tmp_path / "records" / "test_suite__test_a_saved_parameter_survives_a_power_cycle"
    log = (record / "node.log").read_text()
    assert "boot 0 in NOMINAL" in log and "boot 1 in NOMINAL" in log  # one node, two boots


def test_a_target_that_never_sends_telemetry_fails_the_gate_and_stops_the_run(tmp_path):
    pair = open_pty_pair()  # a line with nothing on the far end: the port opens, nobody speaks
    try:
        key = tmp_path / "sa1.key"
        key.write_bytes(bytes(32))
        key.chmod(0o600)
        (tmp_path / "node.toml").write_text("")
        write(
            tmp_path,
            "bench.toml",
            f"""
            [target]
            spec = "serial:{pair.slave_path}@115200"
            key_file = "sa1.key"
            node_config = "node.toml"
            link_timeout_s = 3
            """,
        )
        write(
            tmp_path,
            "test_suite.py",
            """
            async def test_first(bench):
                pass


            async def test_second(bench):
                pass
            """,
        )
        result = pytest_run(tmp_path, "--bench", "bench.toml")
    finally:
        os.close(pair.master_fd)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"bench gate: the link to serial:{pair.slave_path}@115200 is up but no telemetry" in (
        output
    )
    assert "bench gate failed" in output  # pytest's reason for stopping the run
    assert summary_rows(result.stdout) == {"test_first": "error"}, output


@pytest.fixture
def board(tmp_path: Path, mqtt_broker):
    """A node running by itself, as systemd runs one on a board, reachable through the broker."""
    board_dir = tmp_path / "board"
    board_dir.mkdir()
    key = board_dir / "node.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    url = mqtt_broker.url(f"board-{os.getpid()}")
    (board_dir / "node.toml").write_text(
        f'[node]\nname = "board"\nstate_dir = "state"\n\n[link]\nurl = "{url}"\n'
        'key_file = "node.key"\n\n[housekeeping]\ninterval_ms = 1000\n'
    )
    with (board_dir / "node.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "penumbra", "flight", "--config", "node.toml"],
            cwd=board_dir,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield board_dir, url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_board_over_mqtt_is_only_connected_to_and_must_be_left_nominal(tmp_path, board):
    board_dir, url = board
    write(
        tmp_path,
        "bench.toml",
        f"""
        [target]
        spec = "{url}"
        key_file = "board/node.key"
        node_config = "board/node.toml"
        """,
    )
    write(
        tmp_path,
        "test_suite.py",
        """
        import pytest


        async def test_commands_reach_the_board(bench):
            assert bench.target.persistent and bench.power is None
            assert bench.environment is None  # the board's node.toml has no simulated EPS
            await bench.api.send_and_assert_command("health.NOOP")


        @pytest.mark.needs("power_cut")
        async def test_needs_power(bench):
            pass


        async def test_leaves_the_board_in_safe(bench):
            await bench.api.send_and_assert_command("mode.SET_MODE", mode="SAFE")


        async def test_the_next_test_puts_it_back(bench):
            await bench.api.send_and_assert_command("mode.SET_MODE", mode="NOMINAL")
        """,
    )
    result = pytest_run(tmp_path, "--bench", "bench.toml", "--bench-timeout", "60")
    output = result.stdout + result.stderr
    assert summary_rows(result.stdout) == {
        "test_commands_reach_the_board": "passed",
        "test_needs_power": "skipped",
        "test_leaves_the_board_in_safe": "error",
        "test_the_next_test_puts_it_back": "passed",
    }, output
    assert "bench.toml gives no power driver" in output
    assert "left mqtt://" in output and "in mode SAFE" in output
    # The node outlived every test: one boot; the ground's counters live beside bench.toml.
    assert "boot 0 in NOMINAL" in (board_dir / "node.log").read_text()
    assert "boot 1" not in (board_dir / "node.log").read_text()
    assert (tmp_path / "ground-state").is_dir()
