"""The board files in deploy/ and docs/boards.md agree with each other and with the code."""

import argparse
import configparser
import os
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flight.protocol.sdls import KEY_OCTETS, load_key
from flight.runtime import config as node_config
from flight.runtime import main as flight_main

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NODE_EXAMPLE = DEPLOY / "node.example.toml"
UNIT = DEPLOY / "penumbra.service"
UDEV_RULE = DEPLOY / "99-penumbra-serial.rules"
BENCH_EXAMPLE = DEPLOY / "bench.example.toml"
BOARDS = ROOT / "docs" / "boards.md"
SHIPPED = (NODE_EXAMPLE, UNIT, UDEV_RULE, BENCH_EXAMPLE)

# Where docs/boards.md puts things on the board.
NODE_TOML_ON_BOARD = "/etc/penumbra/node.toml"
KEY_ON_BOARD = "/etc/penumbra/sa1.key"
VENV_ON_BOARD = "/opt/penumbra/venv"
NODE_DEADLINE_S = 120.0  # only so that a broken node fails the test instead of hanging it


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", markdown, flags=re.DOTALL)


def shell_lines(markdown: str) -> list[str]:
    return [line.strip() for block in shell_blocks(markdown) for line in block.splitlines()]


def unit_sections(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def seconds(value: str) -> float:
    """A systemd time span such as `10s`, `2min`, `500ms` or `90`, in seconds."""
    units = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "": 1.0}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|sec|min|h|)", value.strip())
    assert match, f"not a time span: {value!r}"
    return float(match.group(1)) * units[match.group(2)]


def udev_assignments(rule_line: str) -> list[tuple[str, str, str]]:
    """(key, operator, value) of every `KEY op "value"` in one rule line; all of it must parse."""
    pattern = re.compile(r'\s*([A-Z]+(?:\{[^}]+\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(?:,|$)')
    found, position = [], 0
    while position < len(rule_line):
        match = pattern.match(rule_line, position)
        assert match, f"unparsable udev rule text at {rule_line[position:]!r}"
        found.append(match.groups())
        position = match.end()
    return found


def rule_lines() -> list[str]:
    lines = UDEV_RULE.read_text().splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_every_shipped_file_is_named_in_the_board_guide() -> None:
    guide = BOARDS.read_text()
    for path in SHIPPED:
        assert path.exists(), path
        assert f"deploy/{path.name}" in guide, f"docs/boards.md does not name deploy/{path.name}"
    assert sorted(p.name for p in DEPLOY.iterdir()) == sorted(p.name for p in SHIPPED)


def test_the_guide_installs_shipped_files_from_deploy_never_from_a_copy_in_the_page() -> None:
    lines = shell_lines(BOARDS.read_text())
    installs = [line for line in lines if re.search(r"\b(install|cp)\b.*deploy/", line)]
    sources = {m for line in installs for m in re.findall(r"deploy/([\w.-]+)", line)}
    assert sources == {p.name for p in SHIPPED}
    for source in sources:
        assert (DEPLOY / source).is_file(), f"the guide installs deploy/{source}, which is absent"
    # A file written by a heredoc or tee would be a second copy that drifts from deploy/.
    for line in lines:
        assert "<<" not in line, f"a heredoc in docs/boards.md: {line}"
        if "tee" in line.split():
            assert "/boot/firmware/config.txt" in line, f"tee writes something else: {line}"
    destinations = " ".join(installs)
    assert "deploy/penumbra.service /etc/systemd/system/penumbra.service" in destinations
    assert f"deploy/node.example.toml {NODE_TOML_ON_BOARD}" in destinations
    assert "deploy/99-penumbra-serial.rules /etc/udev/rules.d/99-penumbra-serial.rules" in (
        destinations
    )


def test_the_example_node_config_loads_with_the_paths_the_unit_and_guide_use() -> None:
    config = node_config.load(NODE_EXAMPLE)
    assert config.link.url is not None and config.link.url.startswith("serial:///dev/")
    assert config.link.key_file == Path(KEY_ON_BOARD)
    # StateDirectory=penumbra is /var/lib/penumbra, the only place the unit lets the node write.
    state_directory = unit_sections(UNIT.read_text())["Service"]["StateDirectory"]
    assert config.node.state_dir == Path("/var/lib") / state_directory
    assert config.power.eps == "simulated"
    assert config.power.cpu_freq_control is False  # the unit runs the node as an unprivileged user
    guide = BOARDS.read_text()
    assert KEY_ON_BOARD in guide and str(config.node.state_dir) in guide


def test_the_example_orbit_is_the_one_the_bench_environment_flies() -> None:
    from hil.bench.environment import default_orbit

    config = node_config.load(NODE_EXAMPLE)
    assert (config.orbit.tle_line1, config.orbit.tle_line2) == tuple(default_orbit().tle)


def test_the_guide_key_command_makes_a_key_the_node_accepts(tmp_path: Path) -> None:
    lines = shell_lines(BOARDS.read_text())
    (making,) = [line for line in lines if "/dev/urandom" in line]
    inner = shlex.split(making)
    assert inner[:3] == ["sudo", "sh", "-c"], making
    key_path = tmp_path / "sa1.key"
    script = inner[3].replace(KEY_ON_BOARD, str(key_path))
    assert script != inner[3], "the guide's key command does not write the node's key_file"
    subprocess.run(["sh", "-c", script], check=True)
    assert len(load_key(key_path)) == KEY_OCTETS  # also checks the mode: no group or other access
    assert (key_path.stat().st_mode & 0o777) == 0o600


def test_the_unit_is_a_notify_service_with_watchdog_and_restart_policy() -> None:
    unit = unit_sections(UNIT.read_text())
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert seconds(service["WatchdogSec"]) == 10.0
    assert service["Restart"] == "on-failure"
    assert seconds(service["RestartSec"]) > 0
    # systemd reads the start limits from [Unit]; in [Service] they are an obsolete alias.
    assert seconds(unit["Unit"]["StartLimitIntervalSec"]) > 0
    assert int(unit["Unit"]["StartLimitBurst"]) > 1
    assert service["User"] not in ("", "root") and service["User"] == "penumbra"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == f"{VENV_ON_BOARD}/bin/penumbra"
    assert argv[1:] == ["flight", "--config", NODE_TOML_ON_BOARD]
    guide = BOARDS.read_text()
    assert f"python3 -m venv {VENV_ON_BOARD}" in guide
    assert "pip install /opt/penumbra/src" in guide


def test_a_configuration_error_exits_with_the_status_the_unit_does_not_restart_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text('[link]\nurl = "serial:///dev/ttyAMA0?baudrate=115200"\n')  # no key_file
    parser = argparse.ArgumentParser()
    flight_main.add_arguments(parser)
    status = flight_main.run(parser.parse_args(["--config", str(bad)]))
    assert "[link] key_file" in capsys.readouterr().err
    preventing = unit_sections(UNIT.read_text())["Service"]["RestartPreventExitStatus"].split()
    assert preventing == [str(status)]
    assert status != 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: stand in an executable for the board's venv.
    program = tmp_path / "penumbra"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    text = UNIT.read_text().replace(f"{VENV_ON_BOARD}/bin/penumbra", str(program))
    good = tmp_path / "penumbra.service"
    good.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(good)], capture_output=True, text=True, cwd=tmp_path
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    # The same check on a broken unit complains: the check above is not a no-op.
    broken = tmp_path / "broken.service"
    broken.write_text(text.replace("WatchdogSec=10s", "WatchdogSec=ten"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, cwd=tmp_path
    )
    assert "WatchdogSec" in result.stderr or "sec value" in result.stderr


def test_the_udev_rule_names_the_adapter_and_gives_the_stable_symlink_to_dialout() -> None:
    (line,) = rule_lines()
    assignments = udev_assignments(line)
    keys = {(key, op) for key, op, _ in assignments}
    assert keys == {
        ("SUBSYSTEM", "=="),
        ("ATTRS{idVendor}", "=="),
        ("ATTRS{idProduct}", "=="),
        ("ATTRS{serial}", "=="),
        ("SYMLINK", "+="),
        ("GROUP", "="),
        ("MODE", "="),
    }
    values = {key: value for key, _, value in assignments}
    assert values["SUBSYSTEM"] == "tty"
    assert values["SYMLINK"] == "penumbra-uplink"
    assert values["GROUP"] == "dialout"
    assert values["MODE"] == "0660"
    # The guide's sed puts the adapter's numbers in place of exactly these placeholders.
    guide = BOARDS.read_text()
    replaced = set(re.findall(r's/\\"([A-Z_]+)\\"/', guide))
    assert replaced == {
        values["ATTRS{idVendor}"],
        values["ATTRS{idProduct}"],
        values["ATTRS{serial}"],
    }
    assert "/dev/penumbra-uplink" in guide


def test_the_udev_rule_parser_refuses_a_mangled_rule() -> None:
    with pytest.raises(AssertionError, match="unparsable"):
        udev_assignments('SUBSYSTEM=="tty", SYMLINK+=penumbra-uplink')


def test_the_bench_example_points_the_bench_at_the_board(tmp_path: Path) -> None:
    from hil.bench.config import load as load_bench
    from hil.bench.targets import BoardTarget, parse_target

    bench_dir = tmp_path / "penumbra-bench"
    bench_dir.mkdir()
    shutil.copy(BENCH_EXAMPLE, bench_dir / "bench.toml")
    shutil.copy(NODE_EXAMPLE, bench_dir / "node.toml")  # the guide copies the board's
    bench = load_bench(bench_dir / "bench.toml")
    assert bench.key_file == bench_dir / "sa1.key"  # the name the guide's scp gives it
    assert bench.node_config == bench_dir / "node.toml"
    spec = parse_target(bench.spec or "")
    assert (spec.kind, spec.device, spec.baudrate) == ("serial", "/dev/penumbra-uplink", 115200)
    target = BoardTarget(spec, bench)
    assert "simulated_eps" in target.capabilities  # from the node.toml's [power] eps
    assert "power_cut" not in target.capabilities and target.power is None
    # The commented command driver is valid as it stands once uncommented.
    text = BENCH_EXAMPLE.read_text()
    enabled = re.sub(r"^# (driver|cut|restore) = ", r"\1 = ", text, flags=re.MULTILINE)
    enabled = enabled.replace('driver = "none"\n', "", 1)
    (bench_dir / "bench.toml").write_text(enabled)
    target = BoardTarget(spec, load_bench(bench_dir / "bench.toml"))
    assert {"power_cut", "restart"} <= target.capabilities
    assert target.power is not None and target.power.name == "command"


def test_the_guide_bench_commands_name_targets_the_bench_accepts() -> None:
    from hil.bench.targets import parse_target

    commands = [line for line in shell_lines(BOARDS.read_text()) if "penumbra bench run" in line]
    assert commands
    for command in commands:
        argv = shlex.split(command)
        assert argv[argv.index("--bench") + 1].endswith("bench.toml")
        assert parse_target(argv[argv.index("--target") + 1]).kind == "serial"


def _node_program() -> list[str]:
    """How the unit starts the node: the venv's `penumbra` script, or `python -m penumbra`."""
    script = Path(sys.executable).parent / "penumbra"
    return [str(script)] if script.exists() else [sys.executable, "-m", "penumbra"]


def test_a_node_boots_from_the_example_and_speaks_systemds_notify_protocol(
    tmp_path: Path,
) -> None:
    """The example node.toml on a pty, the key made as the guide makes it, under a stand-in for
    systemd: READY=1 from the main process, WATCHDOG=1 strokes, STOPPING=1 and exit 0 on SIGTERM."""
    master, slave = os.openpty()
    device = os.ttyname(slave)  # the node opens it by name, as it opens /dev/ttyAMA0 on a board
    key = tmp_path / "sa1.key"
    descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(os.urandom(KEY_OCTETS))
    text = NODE_EXAMPLE.read_text()
    config = node_config.load(NODE_EXAMPLE)
    replacements = {
        f'"{config.link.url}"': f'"serial://{device}?baudrate=115200"',
        f'"{KEY_ON_BOARD}"': f'"{key}"',
        f'"{config.node.state_dir}"': f'"{tmp_path / "state"}"',
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    toml = tmp_path / "node.toml"
    toml.write_text(text)

    stop_draining = threading.Event()

    def drain() -> None:  # the bench's end of the line: read whatever the node sends
        while not stop_draining.is_set():
            if select.select([master], [], [], 0.1)[0]:
                try:
                    os.read(master, 65536)
                except OSError:  # EIO while no one holds the slave: keep waiting
                    stop_draining.wait(0.1)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    notify_path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        notify.settimeout(NODE_DEADLINE_S)
        environment = {
            **os.environ,
            "NOTIFY_SOCKET": notify_path,
            "WATCHDOG_USEC": "2000000",  # strokes every second
        }
        environment.pop("WATCHDOG_PID", None)
        log = tmp_path / "node.log"
        with log.open("wb") as output:
            node = subprocess.Popen(
                [*_node_program(), "flight", "--config", str(toml)],
                cwd="/",  # as systemd runs it: node.toml's paths must not depend on the cwd
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        try:
            senders: set[int] = set()

            def receive_until(wanted: str) -> list[str]:
                seen: list[str] = []
                while wanted not in seen:
                    try:
                        data, ancillary, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(12))
                    except TimeoutError:
                        pytest.fail(f"no {wanted} from the node; it said:\n{log.read_text()}")
                    for level, kind, cred in ancillary:
                        if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                            senders.add(struct.unpack("iII", cred[:12])[0])
                    seen.extend(data.decode().splitlines())
                return seen

            before_ready = receive_until("READY=1")
            assert "WATCHDOG=1" not in before_ready
            receive_until("WATCHDOG=1")
            receive_until("WATCHDOG=1")  # it keeps stroking
            node.send_signal(signal.SIGTERM)
            receive_until("STOPPING=1")
            assert node.wait(timeout=NODE_DEADLINE_S) == 0, log.read_text()
            # NotifyAccess=main: systemd drops messages from any process but the one it started.
            assert senders == {node.pid}
        finally:
            if node.poll() is None:
                node.kill()
                node.wait()
            stop_draining.set()
            drainer.join()
            os.close(master)
            os.close(slave)
    assert (tmp_path / "state" / "boot.json").exists()  # it used the state_dir it was given
