"""hil.bench.config and the target specs of hil.bench.targets: bench.toml and `--target`."""

import os

import pytest

from flight.runtime.config import parse as parse_node
from flight.runtime.dictionary import dumps
from flight.runtime.main import node_dictionary
from hil.bench.config import BenchConfigError, load, parse
from hil.bench.targets import BoardTarget, PtyTarget, SilTarget, parse_target, target_capabilities
from hil.testapi.targets import flight_dictionary

BOARD = """
[target]
spec = "serial:/dev/ttyUSB0@57600"
key_file = "keys/sa1.key"
node_config = "node.toml"
link_timeout_s = 30

[power]
driver = "command"
cut = "uhubctl -l 1-1 -p 2 -a off"
restore = "uhubctl -l 1-1 -p 2 -a on"
"""


def write_board(tmp_path, text: str = BOARD, eps: str = "simulated"):
    (tmp_path / "keys").mkdir(exist_ok=True)
    key = tmp_path / "keys" / "sa1.key"
    key.write_bytes(bytes(range(32)))
    os.chmod(key, 0o600)
    (tmp_path / "node.toml").write_text(f'[power]\neps = "{eps}"\n')
    bench = tmp_path / "bench.toml"
    bench.write_text(text)
    return bench


def test_a_board_file_reads_with_paths_relative_to_it(tmp_path):
    config = load(write_board(tmp_path))
    assert config.spec == "serial:/dev/ttyUSB0@57600"
    assert config.key_file == tmp_path / "keys" / "sa1.key"
    assert config.node_config == tmp_path / "node.toml"
    assert config.link_timeout_s == 30.0
    assert config.power.driver == "command" and "-a off" in config.power.cut


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[target]\nspce = 'pty'\n", "[target] spce: unknown key; [target] takes spec"),
        ("[relay]\n", "[relay]: unknown section"),
        ("[power]\ndriver = 'relay'\n", "choose one of none, command, manual"),
        ("[power]\ndriver = 'command'\ncut = 'x'\n", "needs both `cut` and `restore`"),
        ("[target]\ncapabilities = ['teleport']\n", "unknown capability 'teleport'"),
        ("[target]\nlink_timeout_s = -1\n", "must be a number of seconds > 0"),
        ("[target]\nnode_config = 'a'\ndictionary = 'b'\n", "not both"),
        ("[target\n", "not valid TOML"),
    ],
)
def test_a_bad_bench_file_names_the_key_and_the_problem(text, words):
    with pytest.raises(BenchConfigError, match=r"^bench\.toml: ") as caught:
        parse(text, source="bench.toml")
    assert words in str(caught.value)


def test_a_missing_bench_file_says_so(tmp_path):
    with pytest.raises(BenchConfigError, match="no such bench file"):
        load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "kind", "device", "baudrate"),
    [
        ("sil", "sil", None, 115200),
        ("memory", "sil", None, 115200),
        ("pty", "pty", None, 115200),
        ("serial:/dev/ttyUSB0@57600", "serial", "/dev/ttyUSB0", 57600),
        ("serial:/dev/ttyAMA0", "serial", "/dev/ttyAMA0", 115200),
        ("serial:///dev/ttyTHS1?baudrate=921600", "serial", "/dev/ttyTHS1", 921600),
        ("mqtt://bench-pi.local:1883/sat1", "mqtt", None, 115200),
    ],
)
def test_target_specs(text, kind, device, baudrate):
    spec = parse_target(text)
    assert (spec.kind, spec.device, spec.baudrate) == (kind, device, baudrate)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("can://vcan0", "not a bench target; give sil, pty"),
        ("serial:ttyUSB0", "absolute path"),
        ("serial:/dev/ttyUSB0@fast", "not a baud rate"),
        ("mqtt://broker:1883", "names the broker and the node"),
    ],
)
def test_a_bad_target_spec_says_what_to_give(text, words):
    with pytest.raises(BenchConfigError, match=words):
        parse_target(text)


def test_sil_and_pty_capabilities_and_why_sil_cannot_cut_power():
    assert SilTarget.capabilities == {"simulated_eps", "line_faults"}
    assert PtyTarget.capabilities == {"power_cut", "restart", "simulated_eps", "line_faults"}
    assert "shutdown code" in SilTarget.missing("power_cut")


def test_a_board_has_what_its_bench_file_implies(tmp_path):
    config = load(write_board(tmp_path))
    capabilities, _ = target_capabilities(parse_target(config.spec), config)
    assert capabilities == {"power_cut", "restart", "simulated_eps", "line_faults"}
    board = BoardTarget(parse_target(config.spec), config)
    assert board.persistent and board.ground_state_dir == tmp_path / "ground-state"
    assert board.power is not None and board.power.name == "command"


def test_a_board_without_a_power_driver_or_simulated_eps_lacks_them_and_says_why(tmp_path):
    text = BOARD.split("[power]")[0]
    config = load(write_board(tmp_path, text, eps="sysfs"))
    capabilities, missing = target_capabilities(parse_target(config.spec), config)
    assert capabilities == {"line_faults"}
    assert "gives no power driver" in missing("power_cut")
    assert 'eps = "simulated"' in missing("simulated_eps")


def test_capabilities_in_the_bench_file_override_what_it_implies(tmp_path):
    text = BOARD.replace("link_timeout_s = 30", 'capabilities = ["line_faults"]')
    config = load(write_board(tmp_path, text))
    capabilities, _ = target_capabilities(parse_target(config.spec), config)
    assert capabilities == {"line_faults"}


def test_a_board_needs_a_key_and_a_dictionary(tmp_path):
    spec = parse_target("mqtt://localhost:1883/sat1")
    with pytest.raises(BenchConfigError, match="needs its SDLS key"):
        BoardTarget(spec, parse("[target]\nnode_config = 'node.toml'\n"))
    with pytest.raises(BenchConfigError, match="needs the board's dictionary"):
        BoardTarget(spec, parse("[target]\nkey_file = 'k'\n"))


def test_a_boards_dictionary_is_built_even_for_a_real_eps_the_bench_pc_lacks():
    board = parse_node('[power]\neps = "sysfs"\ncpu_freq_control = true\n', source="node.toml")
    dictionary = flight_dictionary(board)
    assert "power.SOC" in dictionary.channels and "payload.SUBMIT" in dictionary.commands
    assert "power.SOC" not in flight_dictionary(parse_node('[power]\neps = "none"\n')).channels


def test_a_board_can_be_given_its_exported_dictionary_instead(tmp_path):
    write_board(tmp_path)
    (tmp_path / "dictionary.json").write_text(dumps(node_dictionary(parse_node(""))))
    text = BOARD.replace('node_config = "node.toml"', 'dictionary = "dictionary.json"')
    config = load(write_board(tmp_path, text))
    board = BoardTarget(parse_target(config.spec), config)
    assert "payload.SUBMIT" in board.dictionary().commands
    (tmp_path / "dictionary.json").write_text("{")
    with pytest.raises(BenchConfigError, match=r"\[target\] dictionary: .*not JSON"):
        board.dictionary()
