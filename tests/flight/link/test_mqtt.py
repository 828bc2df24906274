"""The MQTT link against a real broker (tests/conftest.py starts mosquitto, or amqtt without it)."""

import asyncio
import contextlib
import datetime
import ipaddress
import random
import signal
import sys
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiomqtt
import pytest

from flight.link import (
    DuplicateFilter,
    LinkConfigError,
    LinkDown,
    LinkError,
    MqttLink,
    MqttSettings,
    Role,
    open_link,
)
from flight.link.mqtt import CLOSE_DEADLINE_S, reconnect_delay_s

T = TypeVar("T")
SAFETY_S = 10.0  # a safety net against a hang, never a performance threshold
REPO = Path(__file__).resolve().parents[3]
FAST = {"reconnect_max_s": "0.2"}


async def within(awaitable: Awaitable[T], what: str, timeout_s: float = SAFETY_S) -> T:
    try:
        async with asyncio.timeout(timeout_s):
            return await awaitable
    except TimeoutError:
        pytest.fail(f"{what}: nothing after {timeout_s} s (safety net)")


async def until(condition, what: str, timeout_s: float = SAFETY_S) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await within(poll(), what, timeout_s)


@contextlib.asynccontextmanager
async def both_ends(flight_url: str, ground_url: str | None = None):
    """(flight, ground), both up. The flight end connects first: amqtt 0.12 can crash a
    connection ("dictionary changed size during iteration") when one client publishes a
    retained status while another's subscription walks the retained messages."""
    async with open_link(flight_url, role=Role.FLIGHT) as flight:
        await until(lambda: flight.connected, "flight connected")
        async with open_link(ground_url or flight_url, role=Role.GROUND) as ground:
            await within(flight.wait_up(), "flight up")
            await within(ground.wait_up(), "ground up")
            yield flight, ground


def new_node() -> str:
    """A node name of its own per test: retained statuses never leak between tests."""
    return f"sat-{uuid.uuid4().hex[:10]}"


def tool(broker) -> aiomqtt.Client:
    """Another MQTT client, with a client id of its own (amqtt shares one session among
    clients that send none)."""
    return aiomqtt.Client(broker.host, broker.port, identifier=f"tool-{uuid.uuid4().hex}")


async def retained(broker, topic: str) -> bytes:
    """The retained message on `topic`, as a newly connecting tool sees it."""
    async with tool(broker) as spy:
        await spy.subscribe(topic, qos=1)
        async for message in spy.messages:
            # Only mosquitto keeps to the filter; amqtt also sends other retained topics.
            if message.topic.value == topic:
                assert message.retain, f"{topic} carried a message that is not retained"
                return bytes(message.payload)
    raise AssertionError("unreachable")


async def publish_raw(broker, topic: str, *payloads: bytes, retain: bool = False) -> None:
    """Publish as another MQTT tool would (QoS 1), bypassing the link."""
    async with tool(broker) as publisher:
        for payload in payloads:
            await publisher.publish(topic, payload, qos=1, retain=retain)


async def test_frames_cross_the_broker_both_ways_on_the_documented_topics(mqtt_broker):
    node = new_node()
    seen: list[tuple[str, int, bool, bytes]] = []
    async with tool(mqtt_broker) as spy:
        await spy.subscribe(f"penumbra/{node}/#", qos=2)
        async with both_ends(mqtt_broker.url(node)) as (flight, ground):
            assert isinstance(flight, MqttLink) and isinstance(ground, MqttLink)
            assert flight.client_id == f"penumbra-{node}-flight"
            await ground.send(b"\x00tc frame\x00")
            assert await within(flight.receive(), "tc at flight") == b"\x00tc frame\x00"
            await flight.send(b"tm frame")
            assert await within(ground.receive(), "tm at ground") == b"tm frame"

            async def spy_until_tm() -> None:
                async for message in spy.messages:
                    topic = message.topic.value
                    seen.append((topic, message.qos, message.retain, bytes(message.payload)))
                    if topic.endswith("/tm"):
                        return

            await within(spy_until_tm(), "the spy seeing the tm")
        assert flight.counters.frames_sent == ground.counters.frames_received == 1
        assert ground.counters.frames_sent == flight.counters.frames_received == 1
    if mqtt_broker.kind == "amqtt":
        # amqtt forwards at the subscription's QoS, not min(publish, subscription): the
        # publish QoS cannot be observed through it.
        seen = [
            (topic, qos, retain, payload)
            for topic, _, retain, payload in seen
            for qos in ((1 if topic.endswith("/tc") else 0),)
        ]
    assert (f"penumbra/{node}/tc", 1, False, b"\x00tc frame\x00") in seen
    assert (f"penumbra/{node}/tm", 0, False, b"tm frame") in seen
    statuses = {(topic, payload) for topic, _, _, payload in seen if "/status/" in topic}
    assert (f"penumbra/{node}/status/flight", b"online") in statuses
    assert (f"penumbra/{node}/status/ground", b"online") in statuses


async def test_an_end_is_up_only_while_its_peer_is_online(mqtt_broker):
    node = new_node()
    async with open_link(mqtt_broker.url(node), role=Role.GROUND) as ground:
        await until(lambda: ground.connected, "ground connected")
        assert not ground.up
        with pytest.raises(LinkDown, match="the flight end is not online"):
            await ground.send(b"tc")
        async with open_link(mqtt_broker.url(node), role=Role.FLIGHT) as flight:
            await within(ground.wait_up(), "ground up once flight is online")
            await within(flight.wait_up(), "flight up")
        # A clean close says "offline" itself (a clean DISCONNECT does not fire the will).
        await within(ground.wait_down(), "ground down once flight closed")
        assert ground.connected
    assert await within(retained(mqtt_broker, f"penumbra/{node}/status/flight"), "") == b"offline"
    assert await within(retained(mqtt_broker, f"penumbra/{node}/status/ground"), "") == b"offline"


FLIGHT_PROCESS = """
import asyncio, sys
from flight.link import Role, open_link

async def main():
    async with open_link(sys.argv[1], role=Role.FLIGHT) as link:
        while not link.connected:
            await asyncio.sleep(0.01)
        print("connected", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_the_last_will_says_offline_when_the_flight_process_is_killed(mqtt_broker):
    node = new_node()
    url = mqtt_broker.url(node)
    async with open_link(url, role=Role.GROUND) as ground:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLIGHT_PROCESS, url, cwd=REPO, stdout=asyncio.subprocess.PIPE
        )
        try:
            line = await within(process.stdout.readline(), "the flight process connecting")
            assert line == b"connected\n"
            await within(ground.wait_up(), "ground sees flight online")
            assert await within(retained(mqtt_broker, f"penumbra/{node}/status/flight"), "") == (
                b"online"
            )
            process.send_signal(signal.SIGKILL)
            await process.wait()
            await within(ground.wait_down(), "ground sees the will")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert not ground.peer_online
        assert "flight end is not online" in ground.last_error
    assert await within(retained(mqtt_broker, f"penumbra/{node}/status/flight"), "") == b"offline"


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_tcs_published_while_the_flight_end_is_away_arrive_when_it_returns(
    mqtt_broker, protocol: str
):
    if mqtt_broker.kind == "amqtt":
        # MQTT 3.1.1 [MQTT-3.3.1-9]: a queued message goes out with RETAIN 0. amqtt sets it to
        # 1, and the flight end refuses retained TCs (they would replay on every connect).
        pytest.skip("amqtt marks queued messages retained, against MQTT-3.3.1-9; and no MQTT 5")
    node = new_node()
    url = mqtt_broker.url(node, protocol=protocol)
    async with open_link(url, role=Role.FLIGHT) as flight:
        await until(lambda: flight.connected, "first connection: the broker makes the session")
    # The flight end is away; TCs keep coming (QoS 1), and the broker queues them.
    tcs = [f"tc {index}".encode() for index in range(5)]
    await within(publish_raw(mqtt_broker, f"penumbra/{node}/tc", *tcs), "publishing")
    async with open_link(url, role=Role.FLIGHT) as flight:
        received = [await within(flight.receive(), f"queued tc {n}") for n in range(5)]
    assert received == tcs


async def test_duplicate_tcs_are_dropped_and_counted_at_the_flight_end(mqtt_broker):
    node = new_node()
    async with open_link(mqtt_broker.url(node), role=Role.FLIGHT) as flight:
        await until(lambda: flight.connected, "flight connected")
        topic = f"penumbra/{node}/tc"
        await within(publish_raw(mqtt_broker, topic, b"tc A", b"tc A", b"tc B"), "publishing")
        assert await within(flight.receive(), "tc A") == b"tc A"
        assert await within(flight.receive(), "tc B") == b"tc B"
        assert flight.pending_frames == 0
        assert flight.counters.duplicates_dropped == 1
        assert flight.counters.frames_dropped == 1
        assert "duplicate" in flight.last_drop


async def test_a_retained_tc_is_refused_because_it_would_replay_on_every_connect(mqtt_broker):
    node = new_node()
    topic = f"penumbra/{node}/tc"
    await within(publish_raw(mqtt_broker, topic, b"tc R", retain=True), "publishing")
    try:
        async with open_link(mqtt_broker.url(node), role=Role.FLIGHT) as flight:
            await until(lambda: flight.counters.frames_dropped == 1, "the retained tc dropped")
            assert "retained" in flight.last_drop
            assert flight.pending_frames == 0
    finally:
        await within(publish_raw(mqtt_broker, topic, b"", retain=True), "clearing it")


async def test_the_ground_end_keeps_repeated_telemetry(mqtt_broker):
    node = new_node()
    async with both_ends(mqtt_broker.url(node)) as (flight, ground):
        for _ in range(3):
            await flight.send(b"idle frame")
        assert [await within(ground.receive(), "tm") for _ in range(3)] == [b"idle frame"] * 3
        assert ground.counters.duplicates_dropped == 0


async def test_both_ends_reconnect_and_resubscribe_after_the_broker_restarts(
    mqtt_broker_factory,
):
    # No persistence: the restarted broker has forgotten every session and subscription, so
    # frames flow again only if the links subscribe anew.
    broker = mqtt_broker_factory(persistence=False)
    node = new_node()
    url = broker.url(node, **FAST)
    async with both_ends(url) as (flight, ground):
        await asyncio.to_thread(broker.stop)
        await within(flight.wait_down(), "flight down with the broker gone")
        await within(ground.wait_down(), "ground down with the broker gone")
        with pytest.raises(LinkDown):
            await flight.send(b"tm")
        await asyncio.to_thread(broker.start)
        await within(flight.wait_up(), "flight up after the restart")
        await within(ground.wait_up(), "ground up after the restart")
        assert flight.counters.reconnects == ground.counters.reconnects == 1
        await ground.send(b"tc after restart")
        assert await within(flight.receive(), "tc after restart") == b"tc after restart"
        await flight.send(b"tm after restart")
        assert await within(ground.receive(), "tm after restart") == b"tm after restart"


async def test_username_and_password_from_the_url_are_used(mqtt_broker_factory):
    broker = mqtt_broker_factory(users={"penumbra": "s3cret pass"})
    node = new_node()
    good = f"mqtt://penumbra:s3cret%20pass@{broker.host}:{broker.port}/{node}"
    also_good = broker.url(node, username="penumbra", password="s3cret%20pass")
    async with both_ends(good, also_good) as (flight, ground):
        await ground.send(b"authenticated tc")
        assert await within(flight.receive(), "tc") == b"authenticated tc"
    bad = broker.url(node, username="penumbra", password="wrong", **FAST)
    async with open_link(bad, role=Role.FLIGHT) as refused:
        await until(lambda: refused.last_error, "a refused connection")
        assert not refused.connected
        assert "authori" in refused.last_error.lower() or "password" in refused.last_error
        assert "wrong" not in refused.last_error


@dataclass(frozen=True)
class TlsFiles:
    """PEM files made for one test: a CA, the broker's pair for 127.0.0.1, a client pair signed
    by the same CA, and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _make_tls_files(directory: Path) -> TlsFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, key, signer, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    def write_key(name: str, key) -> Path:
        path = directory / name
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return path

    def write_cert(name: str, cert: x509.Certificate) -> Path:
        path = directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    ca_key, server_key, client_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(4)
    )
    issuer = "penumbra test CA"
    return TlsFiles(
        ca=write_cert("ca.pem", certificate(issuer, issuer, ca_key, ca_key, ca=True)),
        server_cert=write_cert(
            "server.pem", certificate("127.0.0.1", issuer, server_key, ca_key, ca=False)
        ),
        server_key=write_key("server.key", server_key),
        client_cert=write_cert(
            "client.pem", certificate("penumbra-flight", issuer, client_key, ca_key, ca=False)
        ),
        client_key=write_key("client.key", client_key),
        other_ca=write_cert(
            "other-ca.pem", certificate("another CA", "another CA", other_key, other_key, ca=True)
        ),
    )


async def test_mqtts_verifies_the_broker_against_the_given_ca(mqtt_broker_factory, tmp_path):
    files = _make_tls_files(tmp_path)
    broker = mqtt_broker_factory(tls=(files.ca, files.server_cert, files.server_key))
    node = new_node()
    ca = str(files.ca)
    async with both_ends(broker.url(node, ca=ca)) as (flight, ground):
        assert flight.name.startswith("mqtts://")
        await within(flight.wait_up(), "flight up over TLS")
        await within(ground.wait_up(), "ground up over TLS")
        await ground.send(b"tc over tls")
        assert await within(flight.receive(), "tc over tls") == b"tc over tls"
    # A broker whose certificate the given CA did not sign is refused.
    other = str(files.other_ca)
    async with open_link(broker.url(node, ca=other, **FAST), role=Role.FLIGHT) as link:
        await until(lambda: link.last_error, "a refused TLS handshake")
        assert "certificate" in link.last_error.lower()
        assert not link.connected


async def test_mqtts_presents_the_client_certificate_a_broker_requires(
    mqtt_broker_factory, tmp_path
):
    files = _make_tls_files(tmp_path)
    broker = mqtt_broker_factory(
        tls=(files.ca, files.server_cert, files.server_key), require_certificate=True
    )
    node = new_node()
    ca, cert, key = str(files.ca), str(files.client_cert), str(files.client_key)
    async with both_ends(broker.url(node, ca=ca, cert=cert, key=key)) as (flight, ground):
        await flight.send(b"tm with a client certificate")
        assert await within(ground.receive(), "tm") == b"tm with a client certificate"
    async with open_link(broker.url(node, ca=ca, **FAST), role=Role.FLIGHT) as anonymous:
        # TLS 1.3 refuses the missing certificate after the handshake; paho then never sees a
        # CONNACK and aiomqtt gives up after its 10 s operation timeout.
        await until(lambda: anonymous.last_error, "refused without a certificate", 3 * SAFETY_S)
        assert not anonymous.connected


async def test_a_link_that_cannot_connect_keeps_trying_down_and_says_why(unused_tcp_port):
    url = f"mqtt://127.0.0.1:{unused_tcp_port}/{new_node()}?reconnect_max_s=0.1"
    async with open_link(url, role=Role.FLIGHT) as link:
        await until(lambda: link.last_error, "a failed connection attempt")
        assert f"127.0.0.1:{unused_tcp_port}" in link.last_error
        with pytest.raises(LinkDown, match="is down"):
            await link.send(b"tm")


async def test_frames_too_long_or_empty_are_refused(mqtt_broker):
    link = open_link(mqtt_broker.url(new_node(), max_frame="8"), role=Role.FLIGHT)
    with pytest.raises(LinkError, match="9 octets is longer than the link's 8"):
        await link.send(bytes(9))
    with pytest.raises(LinkError, match="empty frame"):
        await link.send(b"")


def test_reconnect_delays_double_up_to_the_cap_with_seeded_jitter():
    delays = [
        reconnect_delay_s(n, 0.5, 30.0, random.Random("penumbra-sat1-flight")) for n in range(12)
    ]
    again = [
        reconnect_delay_s(n, 0.5, 30.0, random.Random("penumbra-sat1-flight")) for n in range(12)
    ]
    assert delays == again
    for attempt, delay in enumerate(delays):
        nominal = min(30.0, 0.5 * 2**attempt)
        assert nominal / 2 <= delay < nominal
    assert max(delays) < 30.0 <= 2 * min(delays[7:])


def test_the_duplicate_window_counts_connected_time_and_is_bounded():
    window = DuplicateFilter(window_s=2.0, capacity=3)
    assert not window.is_duplicate(b"unlock", 10.0)
    assert window.is_duplicate(b"unlock", 11.9)  # a redelivery right after a reconnect
    assert not window.is_duplicate(b"unlock", 12.5)  # FOP-1 repeating it after T1: passes
    for index in range(3):
        assert not window.is_duplicate(bytes([index]), 12.6)
    assert len(window) == 3  # the oldest was forgotten
    assert not window.is_duplicate(b"unlock", 12.7)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://", "no broker host"),
        ("mqtt://broker:1883", "no node name"),
        ("mqtt://broker:1883/", "no node name"),
        ("mqtt://broker/sat/1", "contains '/'"),
        ("mqtt://broker/sat+1", "contains '\\+'"),
        ("mqtt://broker:port/sat1", "port must be a number"),
        ("mqtt://broker:70000/sat1", "port must be a number"),
        ("mqtt://broker/sat1?qos=2", "unknown parameter 'qos'"),
        ("mqtt://broker/sat1?ca=/etc/ssl/ca.pem", "use mqtts://"),
        ("mqtt://broker/sat1?keepalive=-1", "keepalive='-1'"),
        ("mqtt://broker/sat1?protocol=3", "use 3.1.1 or 5"),
        ("mqtt://broker/sat1?password=x", "a password needs a username"),
        ("mqtt://u:p@broker/sat1?username=v", "username given twice"),
        ("mqtts://broker/sat1?ca=/nonexistent/ca.pem", "ca file /nonexistent/ca.pem does not"),
        ("mqtts://broker/sat1?key=/k.pem", "key= needs cert="),
    ],
)
def test_bad_mqtt_urls_are_refused_with_the_fix(url: str, message: str):
    with pytest.raises(LinkConfigError, match=message):
        open_link(url, role=Role.GROUND)


def test_passwords_never_appear_in_error_messages():
    with pytest.raises(LinkConfigError) as error:
        open_link("mqtt://user:hunter2@broker/sat1?nope=1", role=Role.GROUND)
    assert "hunter2" not in str(error.value)
    with pytest.raises(LinkConfigError) as error:
        open_link("mqtt://broker/sat1?username=u&password=hunter2&nope=1", role=Role.GROUND)
    assert "hunter2" not in str(error.value)
    settings = MqttSettings(host="broker", node="sat1", username="u", password="hunter2")
    assert "hunter2" not in repr(settings)


def test_an_mqtt_url_sets_tls_protocol_and_defaults():
    link = open_link("mqtts://broker.example/sat1?protocol=5&keepalive=30", role=Role.FLIGHT)
    assert isinstance(link, MqttLink)
    assert link.settings.port == 8883 and link.settings.tls
    assert link.settings.protocol == 5 and link.settings.keepalive_s == 30
    assert link.name == "mqtts://broker.example:8883/sat1"
    assert open_link("mqtt://b/sat1", role=Role.GROUND).settings.port == 1883


async def test_closing_gives_up_on_a_disconnection_that_never_completes(mqtt_broker, monkeypatch):
    # aiomqtt waits for the broker to complete the disconnection without a deadline; a link
    # closing (a node shutting down) must not wait forever for it.
    disconnect = aiomqtt.Client.__aexit__

    async def never_completes(self, *exc_info):
        await disconnect(self, *exc_info)
        await asyncio.Future()  # the disconnection never reported complete

    monkeypatch.setattr(aiomqtt.Client, "__aexit__", never_completes)  # looked up at entry
    node = new_node()
    link = open_link(mqtt_broker.url(node), role=Role.FLIGHT)
    await link.__aenter__()
    await until(lambda: link.connected, "flight connected")
    await within(link.__aexit__(None, None, None), "closing", timeout_s=4 * CLOSE_DEADLINE_S)
    assert link.closed
