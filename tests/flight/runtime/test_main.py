"""`penumbra flight`: a bad config exits 2 with one line; SIGTERM shuts a node down with exit 0."""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STARTUP_TIMEOUT_S = 60.0  # safety net only


def penumbra(*arguments: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "penumbra", *arguments],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_bad_config_exits_2_naming_file_key_and_problem(tmp_path: Path) -> None:
    (tmp_path / "node.toml").write_text('[link]\nurl = "carrier-pigeon://loft"\n')
    process = penumbra("flight", "--config", "node.toml", cwd=tmp_path)
    _, err = process.communicate(timeout=STARTUP_TIMEOUT_S)
    assert process.returncode == 2
    assert err.startswith("penumbra flight: node.toml: [link] url: 'carrier-pigeon://loft': give")
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_key_file_open_to_others_exits_2_with_the_fix(tmp_path: Path) -> None:
    key = tmp_path / "sa1.key"
    key.write_bytes(bytes(32))
    key.chmod(0o644)
    (tmp_path / "node.toml").write_text(
        '[link]\nurl = "socket://127.0.0.1:9"\nkey_file = "sa1.key"\n[node]\nstate_dir = "state"\n'
    )
    process = penumbra("flight", "--config", "node.toml", cwd=tmp_path)
    _, err = process.communicate(timeout=STARTUP_TIMEOUT_S)
    assert process.returncode == 2
    assert "[link] key_file: key file" in err and "chmod 600" in err
    assert "Traceback" not in err


def test_sigterm_shuts_the_node_down_cleanly_with_exit_0(tmp_path: Path) -> None:
    process = penumbra("flight", "--state-dir", "state", cwd=tmp_path)
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if "boot 0 in NOMINAL" in line:
            break
    else:
        raise AssertionError(f"the node never reported its boot: {''.join(lines)}")
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=STARTUP_TIMEOUT_S)
    assert process.returncode == 0, rest
    assert "node penumbra stopped" in rest
    assert (tmp_path / "state" / "boot.json").exists()


def test_compute_components_follow_the_power_section(tmp_path: Path) -> None:
    from dataclasses import replace

    from flight.payload import Payload
    from flight.power import EpsReading, SimulatedEps, SysfsEps
    from flight.power.component import Power
    from flight.runtime.config import parse
    from flight.runtime.main import compute_components

    def kinds(text: str, **options: object) -> list[type]:
        config = parse(text).with_state_dir(tmp_path / "state")
        return [type(c) for _, c in compute_components(config, **options)]

    assert kinds("") == [Payload]  # no EPS: the payload alone, every worker
    assert kinds("[power]\neps = 'simulated'") == [Payload, Power]
    config = parse("[power]\neps = 'sysfs'\npayload_rail = 'VDD_CPU_GPU_CV'")
    components = dict(compute_components(config.with_state_dir(tmp_path / "state")))
    payload, power = components[17], components[16]
    assert isinstance(power.eps, SysfsEps) and power.eps.payload_rail == "VDD_CPU_GPU_CV"
    # A board's payload rail is the payload's measured power ...
    reading = EpsReading(
        battery_voltage_v=8.0, battery_current_a=0.0, solar_power_w=0.0, load_power_w=9.0
    )
    power.reading = replace(reading, payload_power_w=7.5)
    assert payload.power_w() == 7.5
    # ... but a simulated EPS only echoes the power the node modelled: modelled it stays.
    config = parse("[power]\neps = 'simulated'").with_state_dir(tmp_path / "sim")
    components = dict(compute_components(config, eps=SimulatedEps()))
    components[16].reading = replace(reading, payload_power_w=7.5)
    assert components[17].power_w() == components[17].modelled_power_w()


def test_a_board_on_a_bench_measures_its_payload_on_its_own_rail(tmp_path: Path) -> None:
    # eps = "simulated" (the bench plays the battery) with a payload rail: the payload's
    # power is the board's INA3221 reading, not the model.
    from flight.runtime.config import parse
    from flight.runtime.main import compute_components

    hwmon = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    hwmon.mkdir(parents=True)
    for name, text in {
        "name": "ina3221",
        "in2_label": "VDD_CPU_GPU_CV",
        "in2_input": "5000",  # mV
        "curr2_input": "1500",  # mA
    }.items():
        (hwmon / name).write_text(f"{text}\n")
    config = parse("[power]\neps = 'simulated'\npayload_rail = 'VDD_CPU_GPU_CV'")
    config = config.with_state_dir(tmp_path / "state")
    components = dict(compute_components(config, sysfs_root=tmp_path / "sys"))
    assert components[17].power_w() == 7.5
    # A rail that is not there: modelled, as on a laptop.
    (hwmon / "in2_label").write_text("VDD_SOC\n")
    assert components[17].power_w() == components[17].modelled_power_w()
