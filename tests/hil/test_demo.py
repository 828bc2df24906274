"""`penumbra demo`: the real node operated from the real ground station over a noisy memory link."""

import re
import subprocess
import sys

import pytest

from flight.runtime.downlink import Downlink
from hil import demo
from hil.faults import FaultModel

CHECKS = 7  # the demo's promises, each printed "ok" or "FAIL"


def _play(scenario: demo.Scenario) -> tuple[bool, str]:
    lines: list[str] = []
    passed = demo.play(scenario, say=lines.append)
    return passed, "\n".join(lines)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_operates_the_node_through_a_noisy_link_for_several_seeds(seed):
    passed, text = _play(demo.Scenario(seed=seed))
    assert passed, text
    assert text.count("  ok   ") == CHECKS, text
    assert "  FAIL " not in text
    assert "mode.COMMANDS_ACCEPTED = 50" in text
    assert "health.PING_PERIOD_MS = 500" in text


def test_demo_is_the_same_every_run_for_a_seed():
    # Virtual time and seeded faults make every exchange repeat exactly; only the resource
    # readings of this real process (CPU, RSS) differ from run to run.
    def play_masked() -> tuple[bool, str]:
        passed, text = _play(demo.Scenario(seed=5))
        return passed, re.sub(r"CPU +[\d.]+ %  RSS \d+ MiB", "CPU, RSS", text)

    assert play_masked() == play_masked()


def test_demo_survives_heavy_loss_and_bit_errors():
    # The downlink loses and corrupts but never reorders: a space link cannot, and FOP-1 rightly
    # alerts (NN(R)) on a CLCW older than one it has already acted on.
    uplink = FaultModel(loss=0.3, duplicate=0.1, reorder=0.1, bit_error_rate=1e-4)
    downlink = FaultModel(loss=0.2, bit_error_rate=1e-5)
    passed, text = _play(demo.Scenario(seed=4, uplink=uplink, downlink=downlink))
    assert passed, text


def test_demo_fails_when_the_node_loses_what_it_stored_during_the_outage(monkeypatch):
    # The checks must be able to fail: a node that stores nothing out of contact (a broken
    # downlink) loses the housekeeping produced during the outage, and the demo says so.
    store = Downlink.enqueue

    def forgetful(self, packet, priority):
        if self.link is not None and self.link.up:
            store(self, packet, priority)

    monkeypatch.setattr(Downlink, "enqueue", forgetful)
    passed, text = _play(demo.Scenario(seed=1))
    assert not passed
    assert "FAIL most of them" in text


def test_penumbra_demo_command_exits_zero_on_embedded_defaults():
    result = subprocess.run(
        [sys.executable, "-m", "penumbra", "demo"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks held." in result.stdout
    assert result.stderr == ""


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
