"""node.toml: embedded defaults, every key checked, errors naming file, key and problem."""

from pathlib import Path

import pytest

from flight.runtime.config import ConfigError, NodeConfig, load, parse


def test_no_file_means_the_embedded_defaults() -> None:
    config = load(None)
    assert config == NodeConfig()
    assert config.link.url is None
    assert config.node.spacecraft_id == 0x1A5
    assert config.node.apid == 0x010


def test_a_full_file_is_read_with_paths_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        """
[node]
name = "sat1"
spacecraft_id = 100
apid = 32
state_dir = "state"

[link]
url = "mqtt://127.0.0.1:1883/sat1"
key_file = "/etc/penumbra/sa1.key"
spi = 2

[time]
epoch_tai_s = 2000000000

[rate_groups]
tick_hz = 20

[housekeeping]
interval_ms = 500

[downlink]
store_packets = 64
idle_frame_period_s = 0.5
"""
    )
    config = load(path)
    assert config.source == str(path)
    assert config.node.state_dir == tmp_path / "state"
    assert config.link.key_file == Path("/etc/penumbra/sa1.key")
    assert config.time.epoch_tai_s == 2_000_000_000.0 and isinstance(config.time.epoch_tai_s, float)
    assert config.rate_groups.tick_hz == 20.0
    assert config.downlink.store_packets == 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[nod]\nname = 'x'", "node.toml: [nod]: unknown section; the sections are [node], [link]"),
        (
            "[node]\nnmae = 'x'",
            "node.toml: [node] nmae: unknown key; [node] takes name, spacecraft_id",
        ),
        (
            "[node]\nspacecraft_id = 2000",
            "node.toml: [node] spacecraft_id: 2000 is outside 0..1023",
        ),
        ("[node]\napid = '16'", "node.toml: [node] apid: expected a number, got str '16'"),
        ("[node]\napid = 16.5", "node.toml: [node] apid: expected a whole number, got 16.5"),
        ("[node]\nname = 'Sat 1'", "node.toml: [node] name: 'Sat 1': a node name is 1-32"),
        ("[link]\nurl = 'tcp://x'", "node.toml: [link] url: 'tcp://x': give serial:///dev/ttyUSB0"),
        ("[link]\nurl = 'serial:///dev/ttyUSB0'", "node.toml: [link] key_file: missing"),
        (
            "[downlink]\nstore_packets = 0",
            "node.toml: [downlink] store_packets: 0 is outside 1..1e+07",
        ),
        (
            "[housekeeping]\ninterval_ms = true",
            "node.toml: [housekeeping] interval_ms: expected a number",
        ),
        ("[power]\neps = 'i2c'", "node.toml: [power] eps: 'i2c': choose one of none, simulated"),
        ("[power]\npolicy = 'greedy'", "node.toml: [power] policy: 'greedy': choose one of"),
        ("[power]\nfloor_soc = 1.0", "node.toml: [power] floor_soc: 1.0 is outside 0..0.99"),
        ("[power]\ncpu_freq_control = 1", "node.toml: [power] cpu_freq_control: expected true"),
        ("[payload]\nmax_workers = 0", "node.toml: [payload] max_workers: 0 is outside 1..256"),
        (
            "[payload]\nidle_power_w = 4.0\nbusy_power_w = 3.0",
            "node.toml: [payload] busy_power_w: below idle_power_w",
        ),
        (
            "[power]\nforecast_horizon_s = 3000\nforecast_period_s = 3000",
            "node.toml: [power] forecast_period_s: 3000 s is not shorter than forecast_horizon_s",
        ),
        ("[rate_groups]\ntick_hz = 0.001", "node.toml: [rate_groups] tick_hz: 0.001 is outside"),
        ("[orbit]\ntle_line1 = '1 2'", "node.toml: [orbit]: give both tle_line1 and tle_line2"),
        ("node = 3", "node.toml: node: expected a [node] table"),
        ("[node", "node.toml: not valid TOML"),
    ],
)
def test_bad_values_name_file_key_and_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text, source="node.toml")
    assert str(caught.value).startswith(message)


def test_power_payload_and_orbit_sections_are_read() -> None:
    config = parse(
        "[power]\neps = 'simulated'\npolicy = 'sunlit_only'\ncpu_freq_control = true\n"
        "[payload]\nmax_workers = 2\nsimulated_tile_time_s = 0.5\n"
        "[orbit]\ntle_line1 = 'one'\ntle_line2 = 'two'\n",
        source="node.toml",
    )
    assert (config.power.eps, config.power.policy, config.power.cpu_freq_control) == (
        "simulated",
        "sunlit_only",
        True,
    )
    assert (config.payload.max_workers, config.payload.simulated_tile_time_s) == (2, 0.5)
    assert (config.orbit.tle_line1, config.orbit.tle_line2) == ("one", "two")


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"node\.toml: no such file"):
        load(tmp_path / "node.toml")
