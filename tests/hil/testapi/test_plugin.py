"""hil.testapi.plugin: --target and the integration_api fixture, in a pytest run of their own.

Each test writes a small test suite to a temporary directory and runs pytest on it in a
subprocess with `-p hil.testapi.plugin`, as a project that uses the plugin would.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


PYTEST = (sys.executable, "-m", "pytest", "-p", "hil.testapi.plugin", "-p", "no:cacheprovider")


def pytest_run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [*PYTEST, "-q", "-W", "error::pytest.PytestUnraisableExceptionWarning", *args],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(textwrap.dedent(text))


def test_the_memory_target_runs_a_real_node_in_process(tmp_path):
    write(
        tmp_path,
        "test_node.py",
        """
        import pytest

        from hil.testapi import greater_than


        @pytest.mark.asyncio
        async def test_noop_and_telemetry(integration_api):
            reports = await integration_api.send_and_assert_command("health.NOOP")
            assert reports[-1].stage == "completion"
            await integration_api.await_telemetry(
                "health.COMMANDS_ACCEPTED", greater_than(0), timeout_s=30
            )
            await integration_api.assert_event("mode.MODE_CHANGED", timeout_s=10)
        """,
    )
    result = pytest_run(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_an_unknown_target_fails_with_what_to_implement(tmp_path):
    write(
        tmp_path,
        "test_any.py",
        """
        import pytest


        @pytest.mark.asyncio
        async def test_any(integration_api):
            pass
        """,
    )
    result = pytest_run(tmp_path, "--target", "can://vcan0/sat1")
    assert result.returncode == 1
    assert "--target can://vcan0/sat1: no plugin or conftest.py provides" in result.stdout
    assert "pytest_penumbra_make_target(spec, config)" in result.stdout


def test_a_conftest_hook_provides_its_own_target(tmp_path):
    write(
        tmp_path,
        "conftest.py",
        """
        import pytest

        from flight.link.memory import MemoryLink
        from tests.ground.responder import KEY, Responder, sample_dictionary


        class ResponderTarget:
            name = "responder"

            async def start(self):
                self.flight, ground = MemoryLink.pair()
                await self.flight.__aenter__()
                await ground.__aenter__()
                self.ground = ground
                self.node = Responder(self.flight, idle_period_s=0.05)
                await self.node.__aenter__()
                return ground, sample_dictionary(), KEY

            async def stop(self):
                await self.node.__aexit__(None, None, None)
                await self.ground.__aexit__(None, None, None)
                await self.flight.__aexit__(None, None, None)


        def pytest_penumbra_make_target(spec, config):
            return ResponderTarget() if spec == "responder" else None
        """,
    )
    write(
        tmp_path,
        "test_responder.py",
        """
        import pytest


        @pytest.mark.asyncio
        async def test_fail_is_reported(integration_api):
            with pytest.raises(AssertionError, match="EXECUTION_FAILED"):
                await integration_api.send_and_assert_command(
                    "health.FAIL", why="x", level="LOW", timeout_s=5
                )
        """,
    )
    result = pytest_run(tmp_path, "--target", "responder", "--api-timeout", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
