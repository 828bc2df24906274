"""hil.testapi.api: the test vocabulary over a real station and link, on the virtual-time loop.

The node is the small FARM-1/SDLS responder of tests/ground; timeouts of an hour take no
wall-clock time, and every miss must read as an AssertionError saying what was awaited and what
arrived instead.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from flight.link.memory import MemoryLink
from flight.protocol.pus import RequestId, VerificationSuccess
from flight.runtime.clock import run
from ground.dictionary import Stage, UnknownNameError
from ground.station import GroundStation
from hil.testapi import (
    IntegrationApi,
    greater_than,
    is_in,
    less_than,
    within_range,
)
from tests.ground.responder import KEY, Responder, sample_dictionary

HK = {"COMMANDS_ACCEPTED": 0, "COMMANDS_REJECTED": 0, "CPU_PERCENT": 10.0, "MODE": 2}


@contextlib.asynccontextmanager
async def connected(tmp_path) -> AsyncIterator[tuple[Responder, IntegrationApi]]:
    flight, ground = MemoryLink.pair()
    async with (
        flight,
        ground,
        Responder(flight) as node,
        GroundStation(ground, sample_dictionary(), key=KEY, state_dir=tmp_path) as station,
        IntegrationApi(station, default_timeout_s=30.0) as api,
    ):
        yield node, api


def virtual(scenario):
    async def bounded():
        async with asyncio.timeout(24 * 3600):  # a hang fails after a virtual day
            return await scenario

    return run(bounded(), virtual=True)


async def later(delay_s: float, action) -> None:
    await asyncio.sleep(delay_s)
    action()


def test_send_and_assert_command_returns_acceptance_and_completion(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (node, api):
            reports = await api.send_and_assert_command(
                "health.SET_PING_PERIOD", {"period_ms": 300}
            )
            assert [(r.stage, r.success) for r in reports] == [
                (Stage.ACCEPTANCE, True),
                (Stage.COMPLETION, True),
            ]
            assert len(node.executed) == 1

    virtual(scenario())


def test_a_failed_command_is_an_assertion_error_quoting_its_reports(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (_, api):
            with pytest.raises(AssertionError) as caught:
                await api.send_and_assert_command("health.FAIL", why="bad day", level="HIGH")
            message = str(caught.value)
            assert message.startswith("health.FAIL why='bad day' level='HIGH' failed:")
            assert "completion FAILURE EXECUTION_FAILED (5): told to fail" in message
            assert "acceptance success" in message

    virtual(scenario())


def test_await_telemetry_finds_the_first_new_sample_that_matches(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (node, api):

            def publish(cpu: float) -> None:
                node.housekeeping("health", {**HK, "CPU_PERCENT": cpu})

            async with asyncio.TaskGroup() as tasks:
                for step, cpu in enumerate((50.0, 70.0, 92.0, 99.0)):
                    tasks.create_task(later(10.0 * (step + 1), lambda c=cpu: publish(c)))
                sample = await api.await_telemetry(
                    "health.CPU_PERCENT", greater_than(90), timeout_s=60
                )
                assert sample.value == 92.0 and asyncio.get_running_loop().time() >= 30.0
                mode = await api.assert_telemetry("health.MODE", is_in(["NOMINAL"]))
                assert mode.value == "NOMINAL"

    virtual(scenario())


def test_an_await_telemetry_timeout_of_an_hour_takes_no_wall_time_and_says_what_came(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (node, api):
            node.housekeeping("health", {**HK, "CPU_PERCENT": 12.5})
            await node.flush()
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(AssertionError) as caught:
                await api.await_telemetry(
                    "health.CPU_PERCENT", within_range(40, 60), timeout_s=3600, start=0
                )
            assert loop.time() - start == pytest.approx(3600.0)
            message = str(caught.value)
            assert message.startswith(
                "no telemetry health.CPU_PERCENT within [40, 60] within 3600 s; "
                "1 samples of it arrived; the last:"
            )
            assert "health.CPU_PERCENT = 12.5 %" in message

    virtual(scenario())


def test_a_channel_that_never_reported_says_so(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (_, api):
            with pytest.raises(AssertionError, match="no sample of it arrived"):
                await api.await_telemetry("health.CPU_PERCENT", timeout_s=5)

    virtual(scenario())


def test_a_misspelt_channel_fails_at_once_with_a_suggestion(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (_, api):
            with pytest.raises(UnknownNameError, match=r"did you mean health\.CPU_PERCENT"):
                await api.await_telemetry("health.CPU_PERCNT", timeout_s=5)

    virtual(scenario())


def test_assert_telemetry_searches_the_history_await_telemetry_only_what_follows(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (node, api):
            node.housekeeping("health", {**HK, "CPU_PERCENT": 33.0})
            await node.flush()
            await api.await_telemetry("health.CPU_PERCENT", 33.0)
            await api.assert_telemetry("health.CPU_PERCENT", 33.0)  # still in the history
            with pytest.raises(AssertionError):
                await api.await_telemetry("health.CPU_PERCENT", 33.0, timeout_s=60)
            api.clear_histories()
            with pytest.raises(AssertionError):
                await api.assert_telemetry("health.CPU_PERCENT", 33.0)

    virtual(scenario())


def test_await_event_matches_arguments_by_value_or_predicate(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (node, api):
            for missed in (1, 2, 4):
                node.event("health.PING_LATE", component="payload", missed=missed)
            await node.flush()
            event = await api.assert_event(
                "health.PING_LATE",
                args={"component": "payload", "missed": greater_than(3)},
                timeout_s=5,
            )
            assert event.text == "payload missed 4 pings"
            with pytest.raises(AssertionError) as caught:
                await api.assert_event(
                    "health.PING_LATE", args={"missed": less_than(1)}, timeout_s=600
                )
            message = str(caught.value)
            assert message.startswith(
                "no event health.PING_LATE with missed < 1 within 600 s; 3 events arrived"
            )
            assert "LOW         health.PING_LATE: payload missed 2 pings" in message

    virtual(scenario())


def test_an_argument_the_event_does_not_declare_is_a_readable_error(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (_, api):
            with pytest.raises(AssertionError, match="has no argument 'count'; its arguments"):
                await api.assert_event("health.PING_LATE", args={"count": 1})

    virtual(scenario())


def test_await_event_sequence_requires_the_order(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (node, api):
            start = api.mark()
            node.event("health.WATCHDOG_STOPPED")
            node.event("health.PING_LATE", component="a", missed=1)
            node.event("health.PING_LATE", component="b", missed=2)
            await node.flush()
            found = await api.await_event_sequence(
                ["health.WATCHDOG_STOPPED", ("health.PING_LATE", {"component": "b"})],
                start=start,
            )
            assert [e.args.get("component") for e in found] == [None, "b"]
            with pytest.raises(AssertionError) as caught:
                await api.await_event_sequence(
                    ["health.PING_LATE", "health.WATCHDOG_STOPPED"], start=start, timeout_s=120
                )
            assert str(caught.value).startswith(
                "event sequence stopped at item 2 of 2 (found so far: health.PING_LATE): "
                "no event health.WATCHDOG_STOPPED within"
            )

    virtual(scenario())


def test_await_verification_sees_reports_that_came_before_the_call(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (_, api):
            request = await api.send_command("health.NOOP")
            report = await api.await_verification(request, "acceptance")
            assert report.success and report.command == "health.NOOP"
            with pytest.raises(AssertionError, match=r"no start report within 30.0 s"):
                await api.await_verification(request, Stage.START, timeout_s=30.0)

    virtual(scenario())


def test_an_unanswered_command_times_out_with_what_it_got(tmp_path):
    async def scenario():
        async with connected(tmp_path) as (node, api):
            # This node accepts every command and never completes one.
            node._execute = lambda tc: node.tm(
                1, 1, VerificationSuccess(RequestId.from_tc(tc)).encode()
            )
            with pytest.raises(AssertionError) as caught:
                await api.send_and_assert_command("health.NOOP", timeout_s=90)
            message = str(caught.value)
            assert "health.NOOP (0x010, 0): no completion report within 90 s" in message
            assert message.endswith("acceptance success")

    virtual(scenario())
