import subprocess
import sys

import pytest

from hil import demo
from hil.faults import FaultModel


def _play(scenario: demo.Scenario) -> tuple[bool, str]:
    lines: list[str] = []
    passed = demo.play(scenario, out=lines.append)
    return passed, "\n".join(lines)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_operates_the_node_through_a_noisy_link_for_several_seeds(seed):
    passed, text = _play(demo.Scenario(seed=seed, commands=20))
    assert passed, text
    assert "FAILED" not in text
    assert text.count("[ok]") == 5


def test_demo_survives_heavy_loss_and_bit_errors():
    # The downlink loses and corrupts but never reorders: a space link cannot, and FOP-1 rightly
    # alerts (NN(R)) on a CLCW older than one it has already acted on.
    uplink = FaultModel(loss=0.3, duplicate=0.1, reorder=0.1, bit_error_rate=1e-4)
    downlink = FaultModel(loss=0.3, bit_error_rate=1e-4)
    passed, text = _play(demo.Scenario(seed=4, commands=20, uplink=uplink, downlink=downlink))
    assert passed, text


def test_demo_noticed_a_command_executed_twice(monkeypatch):
    # The demo's checks must be able to fail: make the node execute one command twice.
    execute = demo.Node._execute

    def execute_twice(node, data):
        execute(node, data)
        if node.executed == [0, 1]:
            execute(node, data)

    monkeypatch.setattr(demo.Node, "_execute", execute_twice)
    passed, text = _play(demo.Scenario(seed=1, commands=5))
    assert not passed
    assert "[FAILED] every command executed exactly once, in order" in text


def test_demo_walkthrough_shows_each_stage_of_the_first_command():
    _, text = _play(demo.Scenario(seed=1, commands=1))
    for stage in (
        "PUS-C TC 17/1",
        "SDLS: SPI 1, IV 1",
        "TC frame AD",
        "COBS on the line",
        "FARM-1: accepted",
        "TM 17/2 are you alive report",
    ):
        assert stage in text


def test_penumbra_demo_command_exits_zero_on_embedded_defaults():
    result = subprocess.run(
        [sys.executable, "-m", "penumbra", "demo", "--commands", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok] every command executed exactly once, in order" in result.stdout


def test_penumbra_demo_refuses_an_impossible_fault_probability():
    result = subprocess.run(
        [sys.executable, "-m", "penumbra", "demo", "--loss", "1.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "not a probability" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("commands", ["-1", "16384"])
def test_penumbra_demo_refuses_more_commands_than_sequence_counts(commands, capsys):
    from penumbra.cli import main

    assert main(["demo", "--commands", commands]) == 2
    assert "give a number of commands in 0..16383" in capsys.readouterr().err


def test_node_refuses_an_authentic_frame_with_a_malformed_packet_and_keeps_serving(tmp_path):
    from flight.protocol import cobs, icd
    from flight.protocol.pus import PusTc, PusTm, Service, TestSubtype, VerificationFailure
    from flight.protocol.sdls import SecurityAssociation, TcSecurity
    from flight.protocol.tc_frame import TcFrame
    from flight.protocol.tm_frame import TmReceiver

    key = bytes(range(32))
    ground = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, key)])
    node = demo.Node(key, tmp_path, log=lambda line: None)
    ping = PusTc(demo.COMMAND_APID, 7, Service.TEST, TestSubtype.ARE_YOU_ALIVE).encode()
    broken = ping[:-1] + bytes([ping[-1] ^ 0xFF])  # its PUS CRC no longer checks
    for n_s, data in enumerate([broken, ping]):
        frame = TcFrame(icd.SPACECRAFT_ID, icd.TcVirtualChannel.COMMAND, n_s, data)
        node.receive(cobs.frame(ground.apply(frame, iv=n_s + 1).encode()), now=0.0)

    receiver = TmReceiver()
    reports = [
        PusTm.decode(packet)
        for frame in node.transmit()
        for packet in receiver.receive(frame).packets
    ]
    kinds = [(tm.service, tm.subtype) for tm in reports]
    assert kinds[:2] == [(5, 2), (1, 2)]  # event, then acceptance failure of the broken TC
    failure = VerificationFailure.decode(reports[1].source_data)
    assert failure.request_id.sequence_count == 7
    assert failure.failure_code == demo.FAILURE_MALFORMED
    assert node.executed == [7]  # the next, good command still runs
    assert (1, 7) in kinds


def test_node_executes_every_packet_of_a_frame_and_refuses_only_the_malformed_one(tmp_path):
    from flight.protocol import cobs, icd
    from flight.protocol.pus import PusTc, PusTm, Service, TestSubtype, VerificationFailure
    from flight.protocol.sdls import SecurityAssociation, TcSecurity
    from flight.protocol.tc_frame import TcFrame
    from flight.protocol.tm_frame import TmReceiver

    key = bytes(range(32))
    ground = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, key)])
    node = demo.Node(key, tmp_path, log=lambda line: None)
    pings = [
        PusTc(demo.COMMAND_APID, n, Service.TEST, TestSubtype.ARE_YOU_ALIVE).encode()
        for n in (7, 8, 9)
    ]
    pings[1] = pings[1][:-1] + bytes([pings[1][-1] ^ 0xFF])  # its PUS CRC no longer checks
    frame = TcFrame(icd.SPACECRAFT_ID, icd.TcVirtualChannel.COMMAND, 0, b"".join(pings))
    node.receive(cobs.frame(ground.apply(frame, iv=1).encode()), now=0.0)

    assert node.executed == [7, 9]
    receiver = TmReceiver()
    reports = [
        PusTm.decode(packet)
        for frame in node.transmit()
        for packet in receiver.receive(frame).packets
    ]
    failures = [
        VerificationFailure.decode(tm.source_data)
        for tm in reports
        if (tm.service, tm.subtype) == (1, 2)
    ]
    assert [failure.request_id.sequence_count for failure in failures] == [8]
    assert [(tm.service, tm.subtype) for tm in reports].count((1, 7)) == 2
