"""The dictionary: built from the components, deterministic, in the contract's shape."""

import json
import subprocess
import sys
from pathlib import Path

from flight.runtime.config import NodeConfig
from flight.runtime.dictionary import FORMAT, dumps
from flight.runtime.main import node_dictionary
from flight.runtime.node import Node
from flight.runtime.types import Field, Limits, WireType

ROOT = Path(__file__).resolve().parents[3]


def test_the_export_is_byte_identical_from_run_to_run(tmp_path: Path) -> None:
    outputs = []
    for run in range(2):
        out = tmp_path / f"dictionary{run}.json"
        result = subprocess.run(
            [sys.executable, "-m", "penumbra", "dict", "export", "-o", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].decode() == dumps(node_dictionary(NodeConfig()))


def test_the_export_names_what_penumbra_flight_would_run(tmp_path: Path) -> None:
    # The payload always, the power component with an EPS, as `penumbra flight` builds them;
    # and exporting touches no state directory.
    config = tmp_path / "node.toml"
    config.write_text('[node]\nstate_dir = "state"\n[power]\neps = "simulated"\n')
    result = subprocess.run(
        [sys.executable, "-m", "penumbra", "dict", "export", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    components = json.loads(result.stdout)["components"]
    assert (components["payload"]["id"], components["power"]["id"]) == (17, 16)
    assert "SUBMIT" in components["payload"]["commands"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.toml"]


def test_it_has_the_contract_shape() -> None:
    dictionary = Node(NodeConfig()).dictionary()
    assert dictionary["format"] == FORMAT
    assert (dictionary["spacecraft_id"], dictionary["apid"]) == (421, 16)
    assert dictionary["failure_codes"]["3"] == "BAD_ARGUMENTS"
    assert list(dictionary["failure_codes"]) == [str(n) for n in range(1, 11)]
    health = dictionary["components"]["health"]
    assert health["id"] == 3
    assert health["description"].startswith("Ping-based liveness")
    period = health["commands"]["SET_PING_PERIOD"]
    assert period["opcode"] == 0x0302
    assert period["arguments"] == [
        {
            "name": "period_ms",
            "type": "u32",
            "minimum": 100,
            "maximum": 3600000,
            "description": "Milliseconds.",
        }
    ]
    cpu = health["telemetry"]["CPU_PERCENT"]
    assert cpu["units"] == "%" and cpu["limits"] == {"yellow_high": 80.0, "red_high": 95.0}
    late = health["events"]["PING_LATE"]
    assert late["severity"] == "LOW"
    assert late["format"] == "{component} missed {missed} pings"
    assert late["arguments"] == [
        {"name": "component", "type": "string", "max_length": 32},
        {"name": "missed", "type": "u8"},
    ]
    assert health["parameters"]["PING_PERIOD_MS"] == {
        "id": 0x0300,
        "type": "u32",
        "minimum": 100,
        "maximum": 3600000,
        "default": 1000,
        "description": "Each component is pinged this often.",
    }
    mode = dictionary["components"]["mode"]["telemetry"]["MODE"]
    assert mode["values"] == {"BOOT": 0, "SAFE": 1, "NOMINAL": 2, "LOW_POWER": 3}


def test_ids_follow_declaration_order_per_kind_and_never_clash() -> None:
    dictionary = Node(NodeConfig()).dictionary()
    seen: dict[str, set[int]] = {"commands": set(), "telemetry": set(), "events": set()}
    for component in dictionary["components"].values():
        base = component["id"] << 8
        for kind, key in (("commands", "opcode"), ("telemetry", "id"), ("events", "id")):
            ids = [entry[key] for entry in component[kind].values()]
            assert ids == [base | index for index in range(len(ids))]
            assert not seen[kind] & set(ids)
            seen[kind] |= set(ids)


def test_every_entry_reads_back_with_the_shared_codec() -> None:
    dictionary = json.loads(dumps(Node(NodeConfig()).dictionary()))
    for component in dictionary["components"].values():
        for command in component["commands"].values():
            for argument in command["arguments"]:
                Field.from_json(argument)
        for channel in component["telemetry"].values():
            WireType.from_json(channel)
            Limits.from_json(channel.get("limits", {}))
        for event in component["events"].values():
            for argument in event["arguments"]:
                Field.from_json(argument)
        for parameter in component["parameters"].values():
            WireType.from_json(parameter).check(parameter["default"])
