"""The pytest plugin of the integration-test API: `--target` and the `integration_api` fixture.

Enable it with `pytest_plugins = ["hil.testapi.plugin"]` in the top-level conftest.py (or
`-p hil.testapi.plugin`). Tests then take the fixture:

    async def test_noop(integration_api):
        await integration_api.send_and_assert_command("health.NOOP")

`--target` names the node under test: `memory` (default: a `flight.runtime.node.Node` in the
test's own process and loop, over a MemoryLink; `hil.testapi.targets.MemoryTarget`), `pty` (a node
in a subprocess over a pty pair), `mqtt://HOST:PORT/NODE` (a subprocess through that broker):
hil.testapi.targets. More targets come from the hook `pytest_penumbra_make_target(spec, config)`
(in a conftest.py or a plugin) returning a `Target` for the specs it knows, or None; the first
answer wins, this plugin's own last.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ground.station import GroundStation
from hil.testapi.api import DEFAULT_TIMEOUT_S, IntegrationApi
from hil.testapi.target import Target, TargetConnection
from hil.testapi.targets import MemoryTarget, ProcessTarget

DEFAULT_TARGET = "memory"


class _Hooks:
    @pytest.hookspec(firstresult=True)
    def pytest_penumbra_make_target(self, spec: str, config: pytest.Config) -> Target | None:
        """A Target for `--target spec` (`memory`, `pty`, `mqtt://...`), or None if not yours."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(_Hooks)


@pytest.hookimpl(trylast=True)
def pytest_penumbra_make_target(spec: str, config: pytest.Config) -> Target | None:
    """The targets this plugin knows itself: `memory`, `pty`, `mqtt://...`. Others answer first."""
    if spec == "memory":
        return MemoryTarget()
    if spec == "pty":
        return ProcessTarget.pty()
    if spec.startswith(("mqtt://", "mqtts://")):
        return ProcessTarget.mqtt(spec)
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("penumbra", "Penumbra integration tests")
    group.addoption(
        "--target",
        default=DEFAULT_TARGET,
        metavar="SPEC",
        help="node under test: memory (in-process, default), pty (subprocess over a pty pair), "
        "or mqtt://HOST:PORT/NODE",
    )
    group.addoption(
        "--api-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="default timeout in seconds of await_* and send_and_assert_command "
        f"(default {DEFAULT_TIMEOUT_S})",
    )


@pytest.fixture
def penumbra_target(request: pytest.FixtureRequest) -> Target:
    """The Target that `--target` names, made by a `pytest_penumbra_make_target` hook."""
    spec = request.config.getoption("--target")
    target = request.config.hook.pytest_penumbra_make_target(spec=spec, config=request.config)
    if target is None:
        pytest.fail(
            f"--target {spec}: no plugin or conftest.py provides this target. Implement the hook "
            "pytest_penumbra_make_target(spec, config) returning a hil.testapi.Target for it",
            pytrace=False,
        )
    return target


@pytest_asyncio.fixture
async def integration_api(
    penumbra_target: Target, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[IntegrationApi]:
    """A connected IntegrationApi: the target started, a ground station on its link."""
    connection = TargetConnection.of(await penumbra_target.start())
    try:
        async with (
            GroundStation(
                connection.link,
                connection.dictionary,
                key=connection.key,
                state_dir=tmp_path / "ground-state",
            ) as station,
            IntegrationApi(
                station, default_timeout_s=request.config.getoption("--api-timeout")
            ) as api,
        ):
            yield api
    finally:
        await penumbra_target.stop()
