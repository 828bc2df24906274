"""Simulated sensor records sent up by a ground station (APID 0x7F1) through a real node: fed to a
bench-fed EPS, refused by a node reading a real EPS, counted when malformed; in virtual time."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flight.link.memory import MemoryLink
from flight.payload import Payload
from flight.power import EpsReading, SimulatedEps, SysfsEps
from flight.power.component import SENSOR_EVENT_PERIOD_S, Power
from flight.protocol import icd
from flight.protocol.sensors import SensorRecord
from flight.runtime import clock
from flight.runtime.component import Component
from flight.runtime.config import NodeConfig, PowerSection
from flight.runtime.main import compute_components
from flight.runtime.node import Node
from ground.dictionary import Dictionary, GroundError
from ground.station import GroundStation
from hil.testapi import IntegrationApi, equal_to

KEY = bytes(range(32))
SAFETY_S = 10_000.0  # virtual seconds: a net for a hung scenario, not a measurement
SENSORS = icd.Apid.SIMULATED_SENSORS
RECORD = SensorRecord(
    bench_time_tai_s=2.2e9,
    battery_voltage_v=7.5,
    battery_current_a=-1.25,
    solar_power_w=0.0,
    load_power_w=9.5,
    soc=0.625,
    temperature_c=35.0,
    illumination=0.0,
)


@dataclass
class Operated:
    node: Node
    power: Power | None
    station: GroundStation
    api: IntegrationApi


@contextlib.asynccontextmanager
async def operated(
    tmp_path: Path, *, eps: object = None, power: bool = True
) -> AsyncIterator[Operated]:
    """A node built as `penumbra flight` builds it ([power] eps = "simulated" unless `eps` is
    given; no power component with `power=False`), and a ground station operating it."""
    config = NodeConfig(power=PowerSection(eps="simulated" if power else "none"))
    config = config.with_state_dir(tmp_path / "node")
    components: list[tuple[int, Component]] = compute_components(config, eps=eps)
    flight_end, ground_end = MemoryLink.pair()
    node = Node(config, link=flight_end, key=KEY, components=components)
    dictionary = Dictionary.from_document(node.dictionary(), source="sensor feed node")
    power_component = next((c for _, c in components if isinstance(c, Power)), None)
    try:
        async with flight_end, ground_end, node:
            async with (
                GroundStation(
                    ground_end, dictionary, key=KEY, state_dir=tmp_path / "ground"
                ) as station,
                IntegrationApi(station, default_timeout_s=60.0) as api,
            ):
                yield Operated(node, power_component, station, api)
            node.request_stop()
    finally:
        for _, component in components:
            if isinstance(component, Payload):
                component.close()


def virtual(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(SAFETY_S):
            await scenario()

    clock.run(bounded(), virtual=True)


def test_a_record_feeds_the_simulated_eps_and_the_telemetry_shows_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with operated(tmp_path) as it:
            assert it.power is not None
            await it.station.send_packet(SENSORS, RECORD.encode())  # FARM-1 acknowledged it
            assert it.power.eps.read() == RECORD.reading()
            await it.api.await_telemetry("power.SENSOR_RECORDS", equal_to(1))
            await it.api.await_telemetry("power.BATTERY_VOLTAGE_V", equal_to(7.5))
            await it.api.await_telemetry("power.BATTERY_CURRENT_A", equal_to(-1.25))
            assert it.power.reading is not None and it.power.reading.temperature_c == 35.0
            assert it.power.soc == pytest.approx(0.625, abs=1e-3)  # first boot: the gauge's
            second = SensorRecord(2.2e9 + 1.0, 8.0, 0.5, 30.0, 8.0, illumination=1.0)
            await it.station.send_packet(SENSORS, second.encode(), wait=False)
            await it.api.await_telemetry("power.SENSOR_RECORDS", equal_to(2))
            assert it.power.eps.read() == second.reading()
            assert it.station.counters.packets_sent == 2
            assert it.station.counters.packets_failed == 0
            assert it.api.events("power.SENSOR_RECORD_MALFORMED") == []

    virtual(scenario)


def test_malformed_records_are_counted_and_evented_and_the_node_keeps_serving(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with operated(tmp_path) as it:
            assert it.power is not None
            await it.station.send_packet(SENSORS, RECORD.encode())
            await it.station.send_packet(SENSORS, b"\x01\x02\x03")
            event = await it.api.await_event("power.SENSOR_RECORD_MALFORMED", start=0)
            assert "41 octets" in event.args["reason"]
            # Inside the event period: counted, not evented again.
            await it.station.send_packet(SENSORS, b"\x02" + RECORD.encode()[1:])
            await it.api.await_telemetry("power.SENSOR_RECORDS_MALFORMED", equal_to(2))
            assert len(it.api.events("power.SENSOR_RECORD_MALFORMED")) == 1
            await asyncio.sleep(SENSOR_EVENT_PERIOD_S)
            await it.station.send_packet(SENSORS, b"\x02" + RECORD.encode()[1:])
            event = await it.api.await_event("power.SENSOR_RECORD_MALFORMED", start=0)
            later = await it.api.await_event(
                "power.SENSOR_RECORD_MALFORMED", args={"reason": "sensor record version 2, "
                "this node reads version 1 (at octet 0)"}, start=0,
            )  # fmt: skip
            assert later is not event
            await it.api.await_telemetry("power.SENSOR_RECORDS_MALFORMED", equal_to(3))
            # The last good record is the reading (the malformed ones changed nothing); the
            # node still answers.
            assert it.power.reading == RECORD.reading()
            await it.api.send_and_assert_command("health.NOOP")
            await it.station.ping()
            await it.api.await_telemetry("power.SENSOR_RECORDS", equal_to(1))

    virtual(scenario)


def test_a_node_reading_a_real_eps_refuses_sensor_data(tmp_path: Path) -> None:
    async def scenario() -> None:
        sysfs = SysfsEps(tmp_path / "sys")  # an empty tree: every read fails, as on a laptop
        async with operated(tmp_path, eps=sysfs) as it:
            assert it.power is not None and it.power.eps is sysfs
            for _ in range(3):
                await it.station.send_packet(SENSORS, RECORD.encode())
            event = await it.api.await_event("power.SENSORS_REFUSED", start=0)
            assert event.text == "simulated sensor data refused: this node reads a real EPS"
            await it.api.await_telemetry("power.SENSOR_RECORDS_REFUSED", equal_to(3))
            assert len(it.api.events("power.SENSORS_REFUSED")) == 1  # one per event period
            assert it.power.reading is None  # nothing fed, nothing read
            await it.api.send_and_assert_command("health.NOOP")

    virtual(scenario)


def test_an_emulated_eps_with_its_own_physics_refuses_sensor_data(tmp_path: Path) -> None:
    reading = EpsReading(8.0, 0.5, 30.0, 8.0)
    eps = SimulatedEps(lambda: reading)

    async def scenario() -> None:
        async with operated(tmp_path, eps=eps) as it:
            await it.station.send_packet(SENSORS, RECORD.encode())
            await it.api.await_event("power.SENSORS_REFUSED", start=0)
            assert eps.read() == reading

    virtual(scenario)


def test_a_node_without_a_power_component_refuses_the_apid(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with operated(tmp_path, power=False) as it:
            assert it.power is None
            await it.station.send_packet(SENSORS, RECORD.encode())
            event = await it.api.await_event("uplink.PACKET_REFUSED", start=0)
            assert event.args["reason"] == (
                "APID 0x7f1: simulated sensor data is not served on board"
            )
            await it.api.await_telemetry("uplink.PACKETS_REFUSED", equal_to(1))
            await it.api.send_and_assert_command("health.NOOP")

    virtual(scenario)


def test_send_packet_refuses_what_it_cannot_send_before_sending(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with operated(tmp_path) as it:
            station = it.station
            for apid, data, words in (
                (it.node.config.node.apid, b"x", "send_command"),
                (icd.Apid.IDLE, b"x", "0x7FE"),
                (0x800, b"x", "0x7FE"),
                (SENSORS, b"", "a TC frame takes"),
                (SENSORS, bytes(2000), "a TC frame takes"),
            ):
                with pytest.raises(GroundError, match=words):
                    await station.send_packet(apid, data)
            assert station.counters.packets_sent == 0
            # Sequence counts per APID, kept in the station's state directory.
            await station.send_packet(SENSORS, RECORD.encode())
            assert (tmp_path / "ground" / f"tc_sequence_apid{int(SENSORS)}.json").exists()

    virtual(scenario)
