"""`penumbra ground`: mistakes get one line and exit 2 before any link opens; and a real node
(`penumbra flight` in a subprocess) operated through a real MQTT broker, action by action."""

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ground.archive import Archive
from ground.cli import add_arguments, default_state_dir, run
from tests.ground.responder import KEY, sample_document

REPO = Path(__file__).resolve().parents[2]


def cli(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="penumbra ground")
    add_arguments(parser)
    out = io.StringIO()
    status = run(parser.parse_args(list(argv)), out)
    return status, out.getvalue()


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    dictionary = tmp_path / "sat1.json"
    dictionary.write_text(json.dumps(sample_document()))
    key = tmp_path / "sa1.key"
    key.write_bytes(KEY)
    key.chmod(0o600)
    return {"dict": str(dictionary), "key": str(key), "state": str(tmp_path / "ground")}


def offline(files: dict[str, str], *argv: str) -> tuple[int, str]:
    # A broker that is not there: every test below must fail before connecting.
    return cli(
        "--link",
        "mqtt://127.0.0.1:9/sat1",
        "--dict",
        files["dict"],
        "--key",
        files["key"],
        "--state",
        files["state"],
        *argv,
    )


def test_list_prints_every_command_with_its_arguments(files):
    status, out = cli("--dict", files["dict"], "list")
    assert status == 0
    assert "health.SET_PING_PERIOD period_ms=<u32 in 100..60000>" in out
    status, out = cli("--dict", files["dict"], "list", "telemetry")
    assert "health.CPU_PERCENT: f32 (a number) [%]  limits: yellow_high 80, red_high 95" in out


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["cmd", "health.NOPE"], "no command 'health.NOPE'; did you mean health.NOOP?"),
        (["cmd", "health.SET_PING_PERIOD", "period_ms=50"], "50 is below the minimum 100"),
        (["cmd", "health.SET_PING_PERIOD"], "missing argument period_ms"),
        (["param", "set", "health.LABEL=" + "x" * 20], "20 UTF-8 octets, at most 16"),
        (["param", "get", "health.PING"], "did you mean health.PING_PERIOD_MS"),
        (["hk", "helth", "--enable"], "no component 'helth'; did you mean health?"),
        (["ping", "--count", "0"], "give at least 1"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2_before_the_link_opens(files, capsys, argv, complaint):
    status, _ = offline(files, *argv)
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("penumbra ground: ") and complaint in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_a_broken_dictionary_names_the_file_and_the_key(files, capsys, tmp_path):
    document = sample_document()
    del document["components"]["health"]["id"]
    Path(files["dict"]).write_text(json.dumps(document))
    assert offline(files, "ping")[0] == 2
    assert "sat1.json: components.health.id: missing" in capsys.readouterr().err


def test_a_readable_key_file_is_refused_with_the_fix(files, capsys):
    os.chmod(files["key"], 0o644)
    assert offline(files, "ping")[0] == 2
    assert "chmod 600" in capsys.readouterr().err


def test_an_unknown_link_scheme_is_refused(files, capsys):
    status, _ = cli(
        "--link", "carrier-pigeon://sat1", "--dict", files["dict"], "--key", files["key"], "ping"
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "carrier-pigeon" in err and "Traceback" not in err


def test_without_link_or_key_the_message_says_what_to_give(files, capsys):
    assert cli("--dict", files["dict"], "ping")[0] == 2
    assert "give --link URL" in capsys.readouterr().err
    assert cli("--dict", files["dict"], "--link", "mqtt://127.0.0.1:9/x", "ping")[0] == 2
    assert "give --key FILE" in capsys.readouterr().err


def test_a_node_that_cannot_be_reached_exits_1_saying_why(files, capsys):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status, _ = cli(
        "--link",
        f"mqtt://127.0.0.1:{port}/sat1",
        "--dict",
        files["dict"],
        "--key",
        files["key"],
        "--state",
        files["state"],
        "--timeout",
        "1",
        "cmd",
        "health.NOOP",
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "health.NOOP not sent: no answer within 1.0 s: the link" in err
    assert "is down" in err and "Traceback" not in err


def test_the_default_state_directory_belongs_to_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    one, two = default_state_dir(KEY), default_state_dir(bytes(32))
    assert one.parent == tmp_path / "penumbra" / "ground" and one != two
    assert KEY.hex()[:16] not in str(one)  # a fingerprint, not the key


# -- against a real node over a real broker ------------------------------------------------------


@pytest.fixture
def node(tmp_path, mqtt_broker):
    """`penumbra flight` on MQTT in a subprocess, its exported dictionary, its key file."""
    key = tmp_path / "sa1.key"
    key.write_bytes(KEY)
    key.chmod(0o600)
    url = mqtt_broker.url("cli_sat")
    config = tmp_path / "node.toml"
    config.write_text(
        f'[node]\nname = "cli_sat"\nstate_dir = "node-state"\n'
        f'[link]\nurl = "{url}"\nkey_file = "{key}"\n'
        "[downlink]\nidle_frame_period_s = 0.2\n"
    )
    dictionary = tmp_path / "cli_sat.json"
    export = [sys.executable, "-m", "penumbra", "dict", "export", "--config", str(config)]
    subprocess.run([*export, "-o", str(dictionary)], check=True, cwd=REPO, timeout=60)
    process = subprocess.Popen(
        [sys.executable, "-m", "penumbra", "flight", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield {
        "url": url,
        "dict": str(dictionary),
        "key": str(key),
        "state": str(tmp_path / "ground"),
        "archive": str(tmp_path / "archive.sqlite"),
    }
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the node did not stop on SIGTERM within 30 s")


def ground(node: dict[str, str], *argv: str) -> tuple[int, str]:
    return cli(
        "--link",
        node["url"],
        "--dict",
        node["dict"],
        "--key",
        node["key"],
        "--state",
        node["state"],
        "--archive",
        node["archive"],
        "--timeout",
        "60",
        *argv,
    )


def test_operating_a_real_node_over_mqtt(node, capsys):
    status, out = ground(node, "ping")
    assert status == 0 and out.startswith("ping 1: reply in ")

    status, out = ground(node, "cmd", "health.SET_PING_PERIOD", "period_ms=500")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("sent health.SET_PING_PERIOD as request (0x010, ")
    assert "VERIFY  health.SET_PING_PERIOD" in lines[1] and "acceptance success" in lines[1]
    assert lines[-1].endswith("completion success")

    status, out = ground(node, "param", "set", "health.PING_PERIOD_MS=2000")
    assert status == 0 and "completion success" in out
    status, out = ground(node, "param", "get", "health.PING_PERIOD_MS")
    assert (status, out) == (0, "health.PING_PERIOD_MS = 2000\n")
    status, out = ground(node, "param", "save")
    assert status == 0 and "params.SAVE" in out

    status, out = ground(node, "hk", "health", "--interval", "0.5")
    assert status == 0 and "housekeeping.interval" in out

    with Archive(node["archive"]) as archive:
        names = [row["name"] for row in archive.commands()]
        assert names == [
            "ping",
            "health.SET_PING_PERIOD",
            "parameters.set",
            "parameters.get",
            "params.SAVE",
            "housekeeping.interval",
        ]
        assert archive.telemetry("health.CPU_PERCENT")
    assert "Traceback" not in capsys.readouterr().err


def test_a_command_the_node_does_not_know_exits_1_with_the_failure_name(node, capsys):
    document = json.loads(Path(node["dict"]).read_text())
    document["components"]["health"]["commands"]["SELF_DESTRUCT"] = {
        "opcode": 799,
        "arguments": [],
    }
    Path(node["dict"]).write_text(json.dumps(document))
    status, out = ground(node, "cmd", "health.SELF_DESTRUCT")
    assert status == 1
    assert "FAILURE UNKNOWN_OPCODE (2)" in out


def _sigint_as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_watch_prints_live_lines_until_interrupted(node):
    command = [sys.executable, "-m", "penumbra", "ground"] if _registered() else None
    if command is None:
        command = [
            sys.executable,
            "-c",
            "import sys; from tests.ground.test_cli import main; sys.exit(main())",
        ]
    process = subprocess.Popen(
        [
            *command,
            "--link",
            node["url"],
            "--dict",
            node["dict"],
            "--key",
            node["key"],
            "--state",
            node["state"],
            "watch",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        # As from a terminal: a suite started in the background (`&`, nohup) has SIGINT
        # ignored, and a child inherits that; this test is about Ctrl-C, not about that.
        preexec_fn=_sigint_as_from_a_terminal,
    )
    seen: list[str] = []
    deadline = time.monotonic() + 60  # safety net only: telemetry comes every second
    assert process.stdout is not None
    while not any("health.CPU_PERCENT" in line for line in seen) and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
    process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack on stderr
        _, err = process.communicate()
        # Killed: not left on the broker to answer for the next test's station.
        pytest.fail(f"watch did not stop within 30 s of SIGINT; its stderr:\n{err}")
    assert process.returncode == 130  # interrupted, as Ctrl-C does
    assert any("  TLM     health.CPU_PERCENT = " in line for line in seen), "".join(seen) + err
    assert "Traceback" not in err


def _registered() -> bool:
    from penumbra.cli import SUBCOMMANDS

    return "ground" in SUBCOMMANDS


def main() -> int:
    """`penumbra ground` as the coordinator will register it (for the watch test meanwhile)."""
    parser = argparse.ArgumentParser(prog="penumbra ground")
    add_arguments(parser)
    try:
        return run(parser.parse_args(sys.argv[1:]))
    except KeyboardInterrupt:
        return 130
