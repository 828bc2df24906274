"""hil.bench.power: the command, manual and process power drivers."""

import asyncio
import io
import shlex
import sys

import pytest

from hil.bench.power import CommandPower, ManualPower, PowerDriver, PowerError, ProcessPower


def test_the_command_driver_runs_the_cut_and_restore_commands_in_order(tmp_path):
    log = tmp_path / "supply.log"
    driver = CommandPower(f"echo off >> {log}", f"echo on >> {log}", cwd=tmp_path)
    assert isinstance(driver, PowerDriver)

    async def cycle():
        await driver.cut()
        await driver.restore()

    asyncio.run(cycle())
    assert log.read_text().split() == ["off", "on"]


def test_a_failing_command_is_a_power_error_quoting_its_output(tmp_path):
    driver = CommandPower("echo relay not found >&2; exit 3", "true")
    with pytest.raises(PowerError, match=r"exited with status 3:\nrelay not found"):
        asyncio.run(driver.cut())


def test_a_hanging_command_is_a_power_error_after_its_timeout():
    sleeper = f"{shlex.quote(sys.executable)} -c 'import time; time.sleep(60)'"
    driver = CommandPower(sleeper, "true", timeout_s=0.5)
    with pytest.raises(PowerError, match=r"did not finish within 0\.5 s"):
        asyncio.run(driver.cut())


def test_an_empty_command_is_refused_when_the_driver_is_made():
    with pytest.raises(PowerError, match="restore command is empty"):
        CommandPower("uhubctl -a off", "  ")


def test_the_manual_driver_asks_the_operator_and_waits_for_the_answer():
    requests: list[str] = []

    async def ask(request: str) -> None:
        requests.append(request)

    driver = ManualPower(ask=ask)
    asyncio.run(driver.cut())
    asyncio.run(driver.restore())
    assert "Cut the target's power" in requests[0]
    assert "Restore the target's power" in requests[1]


def test_the_manual_driver_reads_enter_from_the_terminal_and_needs_an_operator():
    shown = io.StringIO()
    asyncio.run(ManualPower(stdin=io.StringIO("\n"), stdout=shown).cut())
    assert ">>> bench: Cut the target's power" in shown.getvalue()
    with pytest.raises(PowerError, match="standard input is closed"):
        asyncio.run(ManualPower(stdin=io.StringIO(""), stdout=io.StringIO()).restore())


class FakeProcessTarget:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def kill(self) -> None:
        self.calls.append("kill")

    async def restart(self) -> None:
        self.calls.append("restart")


def test_the_process_driver_kills_and_restarts_the_same_target():
    target = FakeProcessTarget()
    driver = ProcessPower(target)  # type: ignore[arg-type]

    async def cycle():
        await driver.cut()
        await driver.restore()

    asyncio.run(cycle())
    assert target.calls == ["kill", "restart"] and driver.cuts == 1
