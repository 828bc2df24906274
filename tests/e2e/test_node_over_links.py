"""End to end: a `penumbra flight` subprocess operated by the ground station over a real pty pair
and through a real MQTT broker, with the integration-test API.

Nothing here is simulated but the contact loss: the node is the installed command with a node.toml
and a 0600 key file, the link is a pty pair (COBS, at 115200 baud as configured) or the session's
broker (mosquitto in CI), the crypto is AES-256-GCM. Timeouts are safety nets, never measurements.
"""

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flight.link import Role, open_link
from flight.link.mqtt import MqttSettings
from flight.protocol import icd
from flight.protocol.crc import append_crc16
from flight.protocol.tc_frame import FrameType, TcFrame
from flight.runtime.clock import MissionClock
from ground.dictionary import Stage
from ground.station import GroundStation
from hil.testapi.api import IntegrationApi
from hil.testapi.attacks import forged_command_frame
from hil.testapi.predicates import greater_than
from hil.testapi.target import TargetConnection
from hil.testapi.targets import ProcessTarget

TIMEOUT_S = 60.0  # safety net for a whole exchange on a loaded CI machine
OUTAGE_S = 5.0
DUPLICATE_WINDOW_S = MqttSettings("localhost", "any").duplicate_window_s


class RecordingLink:
    """The ground's link, with every frame it sent kept: the replay and tamper tests reuse them."""

    def __init__(self, link: Any) -> None:
        self._link = link
        self.sent: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)

    async def send(self, frame: bytes) -> None:
        await self._link.send(frame)
        self.sent.append(frame)


class Operated:
    """A started target with a station and the API on it; `end_pass` and `begin_pass` model a
    pass ending (the ground's station and link closed) and the next one beginning."""

    def __init__(self, target: ProcessTarget, state_dir: Path) -> None:
        self.target = target
        self.state_dir = state_dir
        self.link: RecordingLink | None = None
        self.dictionary: Any = None
        self.key = b""
        self.api: IntegrationApi | None = None
        self._station: GroundStation | None = None

    async def start(self) -> IntegrationApi:
        connection = TargetConnection.of(await self.target.start())
        self.dictionary, self.key = connection.dictionary, connection.key
        return await self.begin_pass(connection.link)

    async def begin_pass(self, link: Any) -> IntegrationApi:
        """A station and the API on `link` (entered)."""
        self.link = RecordingLink(link)
        self._station = GroundStation(
            self.link, self.dictionary, key=self.key, state_dir=self.state_dir
        )
        await self._station.__aenter__()
        self.api = IntegrationApi(self._station, default_timeout_s=TIMEOUT_S)
        await self.api.__aenter__()
        return self.api

    async def _close_station(self) -> None:
        if self.api is not None:
            await self.api.__aexit__(None, None, None)
            self.api = None
        if self._station is not None:
            await self._station.__aexit__(None, None, None)
            self._station = None

    async def end_pass(self) -> None:
        """Out of contact: the station stops and the ground's link closes."""
        await self._close_station()
        await self.link._link.__aexit__(None, None, None)

    async def stop(self) -> None:
        await self._close_station()
        status = await self.target.stop()
        self.target.cleanup()
        assert status == 0, f"the node did not shut down cleanly:\n{self.target.output()}"


@pytest.fixture(params=["pty", "mqtt"])
async def operated(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Operated]:
    if request.param == "pty":
        target = ProcessTarget.pty(work_dir=tmp_path)
    else:
        broker = request.getfixturevalue("mqtt_broker")
        target = ProcessTarget.mqtt(broker.url(f"e2e-{tmp_path.name}"), work_dir=tmp_path)
    session = Operated(target, tmp_path / "ground-state")
    await session.start()
    try:
        yield session
    finally:
        await session.stop()


async def test_a_hundred_noops_arrive_verified_in_order_and_none_is_lost(operated: Operated):
    api = operated.api
    before = await api.await_telemetry("mode.COMMANDS_ACCEPTED")
    start = api.mark()
    requests = [await api.send_command("mode.NOOP") for _ in range(100)]
    completions = [await api.await_verification(request) for request in requests]

    assert all(report.success for report in completions), [str(r) for r in completions]
    completed_in_arrival_order = [
        report.request
        for report in api.history[start:]
        if getattr(report, "stage", None) is Stage.COMPLETION
    ]
    assert completed_in_arrival_order == requests  # in order, none lost, none twice
    assert len({request.sequence_count for request in requests}) == 100
    await api.await_telemetry("mode.COMMANDS_ACCEPTED", before.value + 100)


def _last_command_frame(operated: Operated) -> bytes:
    """The last authenticated AD frame the ground sent (not a COP-1 control frame)."""
    for raw in reversed(operated.link.sent):
        frame = TcFrame.decode(raw, spacecraft_id=icd.SPACECRAFT_ID)
        if frame.frame_type is FrameType.AD:
            return raw
    raise AssertionError("the ground sent no AD frame")


async def test_forged_tampered_and_replayed_commands_are_refused_and_the_node_keeps_serving(
    operated: Operated,
):
    api = operated.api
    reports = await api.send_and_assert_command("mode.NOOP")
    genuine = reports[0].request
    captured = _last_command_frame(operated)

    forged, forged_request = forged_command_frame(
        operated.dictionary,
        "mode.SET_MODE",
        {"mode": "SAFE"},
        sequence_count=(genuine.sequence_count + 1000) % 16384,
    )
    start = api.mark()
    await operated.link.send(forged)
    refusal = await api.await_verification(forged_request, Stage.ACCEPTANCE, start=start)
    assert (refusal.success, refusal.failure_name) == (False, "AUTHENTICATION_FAILED")
    await api.await_event("uplink.AUTHENTICATION_FAILED", start=start)

    tampered = bytearray(captured[:-2])
    tampered[-20] ^= 0x01  # inside the command, before the MAC
    start = api.mark()
    await operated.link.send(append_crc16(bytes(tampered)))  # a valid FECF: only the MAC can tell
    refusal = await api.await_verification(genuine, Stage.ACCEPTANCE, start=start)
    assert (refusal.success, refusal.failure_name) == (False, "AUTHENTICATION_FAILED")
    await api.await_event("uplink.AUTHENTICATION_FAILED", start=start)

    if operated.target.name == "mqtt":
        # The MQTT link's flight end drops a copy of a TC seen within the last 2 s of connected
        # time, as a QoS 1 redelivery; a replay comes later, and SDLS must refuse it.
        await asyncio.sleep(DUPLICATE_WINDOW_S + 0.5)
    start = api.mark()
    await operated.link.send(captured)
    refusal = await api.await_verification(genuine, Stage.ACCEPTANCE, start=start)
    assert (refusal.success, refusal.failure_name) == (False, "REPLAYED")
    await api.await_event("uplink.REPLAYED", start=start)

    await api.send_and_assert_command("mode.NOOP")  # still serving
    await api.assert_telemetry("mode.MODE", "NOMINAL")  # the forged SET_MODE SAFE never ran


@pytest.mark.parametrize("operated", ["mqtt"], indirect=True)
async def test_telemetry_produced_while_out_of_contact_arrives_afterwards_in_order(
    operated: Operated,
):
    """Contact is lost when the ground's MQTT end goes offline (its retained status says so);
    the node stores its housekeeping meanwhile and plays it back when the ground returns."""
    channel = "health.CPU_PERCENT"  # housekeeping at 1 Hz by default
    last_before = (await operated.api.await_telemetry(channel)).time.seconds
    await operated.end_pass()
    await asyncio.sleep(OUTAGE_S)  # the node goes on producing housekeeping, now stored
    back_at = MissionClock.tai_from_unix(time.time())  # the node's clock is the same system clock
    link = open_link(operated.target.mqtt_url, role=Role.GROUND)
    await link.__aenter__()
    operated.target.adopt_link(link)  # closed with the target
    api = await operated.begin_pass(link)

    await api.await_telemetry(channel, predicate=greater_than(-1.0))  # contact again
    while (await api.await_telemetry(channel)).time.seconds < back_at + 2:
        pass  # until telemetry made after the return arrives: the playback is over by then
    stored = [
        sample.time.seconds
        for sample in api.telemetry(channel, start=0)
        if last_before < sample.time.seconds < back_at
    ]
    assert len(stored) >= OUTAGE_S - 2, f"only {len(stored)} samples from the outage arrived"
    assert stored == sorted(stored), "stored telemetry arrived out of order"
    gaps = [later - earlier for earlier, later in itertools.pairwise([last_before, *stored])]
    assert max(gaps) < 2.0, f"a hole in the housekeeping across the outage: gaps {gaps}"
