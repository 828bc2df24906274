"""hil.testapi.targets: the memory target runs the real node, here on the virtual-time loop."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from flight.runtime.clock import run
from ground.station import DecodeFailure, GroundStation
from hil.testapi import IntegrationApi, TargetConnection, equal_to, greater_than
from hil.testapi.targets import MemoryTarget


@contextlib.asynccontextmanager
async def memory_node(
    tmp_path, key: bytes | None = None
) -> AsyncIterator[tuple[MemoryTarget, IntegrationApi]]:
    target = MemoryTarget(state_dir=tmp_path / "node", key=key)
    connection = TargetConnection.of(await target.start())
    try:
        async with (
            GroundStation(
                connection.link,
                connection.dictionary,
                key=connection.key,
                state_dir=tmp_path / "ground",
            ) as station,
            IntegrationApi(station) as api,
        ):
            yield target, api
    finally:
        await target.stop()


def virtual(scenario):
    async def bounded():
        async with asyncio.timeout(24 * 3600):
            return await scenario

    return run(bounded(), virtual=True)


def test_a_hundred_noops_are_verified_in_order_none_lost(tmp_path):
    async def scenario():
        async with memory_node(tmp_path) as (_, api):
            requests = [await api.send_command("health.NOOP") for _ in range(100)]
            for request in requests:
                report = await api.await_verification(request, "completion")
                assert report.success, report
            completions = [
                item.request
                for item in api.history
                if getattr(item, "stage", None) == "completion"
                and getattr(item, "command", None) == "health.NOOP"
            ]
            assert completions == requests
            await api.await_telemetry("health.COMMANDS_ACCEPTED", equal_to(100), timeout_s=30)

    virtual(scenario())


def test_everything_the_node_sends_in_a_simulated_hour_decodes(tmp_path):
    async def scenario():
        async with memory_node(tmp_path) as (_, api):
            await api.station.set_housekeeping_interval("health", 10.0)
            await api.await_telemetry("time.UPTIME_S", greater_than(3600), timeout_s=4000)
            failures = [item for item in api.history if isinstance(item, DecodeFailure)]
            assert failures == []
            channels = {sample.channel for sample in api.telemetry()}
            assert len(channels) == len(api.dictionary.channels)  # every channel reported
            assert api.dropped == 0

    virtual(scenario())


def test_parameters_survive_a_node_restart_on_the_same_state(tmp_path):
    async def scenario():
        key = bytes(range(32))
        async with memory_node(tmp_path, key) as (_, api):
            await api.station.set_parameters({"health.PING_PERIOD_MS": 2500})
            await api.send_and_assert_command("params.SAVE")
        async with memory_node(tmp_path, key) as (_, api):
            values = await api.station.get_parameters("health.PING_PERIOD_MS")
            assert values == {"health.PING_PERIOD_MS": 2500}

    virtual(scenario())
