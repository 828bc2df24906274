"""MQTT link: one frame per message through a broker, with retained presence and a last will.

Topics (docs/ICD.md, "Links and MQTT topics"): `penumbra/<node>/tc` ground -> flight at QoS 1,
`penumbra/<node>/tm` flight -> ground at QoS 0, `penumbra/<node>/status/flight|ground`
retained "online", with a retained last will "offline". Each end connects with a fixed client id
and a persistent session, so telecommands published while the flight end is away are queued by
the broker and delivered when it returns; the flight end drops the duplicates that QoS 1
redelivery can produce. Every connection subscribes again and republishes "online": a broker
that restarted without its sessions is served as well as one that kept them.

MQTT needs the real clock: aiomqtt's timeouts and keepalives run on the loop, so on the
virtual-time loop they would expire at once. Simulations use the memory link.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import ssl
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import SplitResult, parse_qs, unquote

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from flight.link.base import (
    DEFAULT_MAX_FRAME_LENGTH,
    DEFAULT_RECEIVE_DEPTH,
    LinkBase,
    LinkConfigError,
    LinkError,
    Role,
)
from flight.link.url import convert, positive_float, positive_int, query_params

ONLINE = b"online"
OFFLINE = b"offline"
TC_QOS = 1  # at least once: the broker queues TCs for the flight end while it is away
TM_QOS = 0  # telemetry is periodic and frame-counted; a stale frame is worth nothing
STATUS_QOS = 1
CLOSE_TIMEOUT_S = 2.0  # how long a closing link tries to say "offline" before it disconnects
CLOSE_DEADLINE_S = 3 * CLOSE_TIMEOUT_S  # then the whole close, disconnect included, is given up


@dataclass(frozen=True, slots=True)
class MqttTopics:
    """The topics of one node, as docs/ICD.md lists them."""

    node: str

    @property
    def tc(self) -> str:
        return f"penumbra/{self.node}/tc"

    @property
    def tm(self) -> str:
        return f"penumbra/{self.node}/tm"

    def status(self, role: Role) -> str:
        return f"penumbra/{self.node}/status/{role.value}"

    def sends(self, role: Role) -> tuple[str, int]:
        """(topic, QoS) that `role` publishes frames on."""
        return (self.tm, TM_QOS) if role is Role.FLIGHT else (self.tc, TC_QOS)

    def receives(self, role: Role) -> tuple[str, int]:
        """(topic, QoS) that `role` subscribes to for frames."""
        return (self.tc, TC_QOS) if role is Role.FLIGHT else (self.tm, TM_QOS)


def check_node_name(node: str, where: str) -> str:
    if not node:
        raise LinkConfigError(f"{where}: no node name; write mqtt://HOST:1883/NODE (e.g. /sat1)")
    bad = sorted({char for char in node if char in "/+#\0" or char.isspace()})
    if bad:
        raise LinkConfigError(
            f"{where}: node name {node!r} contains {''.join(bad)!r}; "
            "use letters, digits, '-' and '_' (it becomes an MQTT topic level)"
        )
    return node


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and how an MQTT link connects; `from_url` reads them from the link URL."""

    host: str
    node: str
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca: str | None = None  # CA certificate file (PEM); None: the system's trust store
    cert: str | None = None  # client certificate (PEM), for brokers that require one
    key: str | None = None  # the client certificate's private key, if not in `cert`
    protocol: int = 4  # MQTT 3.1.1 (protocol level 4) or 5
    client_id: str | None = None  # None: penumbra-<node>-<role>
    keepalive_s: int = 10  # the broker declares us gone (last will) after 1.5 x this
    session_expiry_s: int = 7 * 86_400  # MQTT 5: how long the broker keeps an absent session
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    duplicate_window_s: float = 2.0  # connected time a TC's hash is remembered (see below)
    duplicate_capacity: int = 4096
    max_frame_length: int = DEFAULT_MAX_FRAME_LENGTH
    receive_depth: int = DEFAULT_RECEIVE_DEPTH

    def __post_init__(self) -> None:
        check_node_name(self.node, "MQTT settings")
        if self.protocol not in (4, 5):
            raise LinkConfigError(f"MQTT protocol must be 3.1.1 or 5, not level {self.protocol}")
        if not 0 < self.reconnect_initial_s <= self.reconnect_max_s:
            raise LinkConfigError(
                f"reconnect delays must satisfy 0 < initial ({self.reconnect_initial_s} s) "
                f"<= max ({self.reconnect_max_s} s)"
            )
        if (self.ca or self.cert or self.key) and not self.tls:
            raise LinkConfigError("ca, cert and key are TLS settings: use an mqtts:// URL")
        if self.key and not self.cert:
            raise LinkConfigError("key= needs cert=: the key belongs to a client certificate")

    @classmethod
    def from_url(cls, url: str, parts: SplitResult) -> MqttSettings:
        """`mqtt://[user:password@]host[:1883]/node?...` or `mqtts://...:8883/node?ca=...`."""
        tls = parts.scheme == "mqtts"
        allowed = {
            "username": "broker user",
            "password": "broker password",
            "client_id": "MQTT client id, default penumbra-<node>-<role>",
            "keepalive": "seconds, default 10",
            "protocol": "3.1.1 or 5",
            "session_expiry_s": "MQTT 5 session lifetime",
            "reconnect_max_s": "longest wait between connection attempts",
            "duplicate_window_s": "connected seconds a TC is remembered for duplicates",
            "max_frame": "longest frame in octets",
        }
        tls_params = {"ca": "CA file", "cert": "client certificate file", "key": "its key"}
        if tls:
            allowed |= tls_params
        elif tls_params.keys() & parse_qs(parts.query, keep_blank_values=True).keys():
            raise LinkConfigError(f"{url}: ca, cert and key are TLS settings: use mqtts://")
        params = query_params(url, parts, allowed)
        if not parts.hostname:
            raise LinkConfigError(f"{url}: no broker host; write {parts.scheme}://HOST:PORT/NODE")
        try:
            port = parts.port
        except ValueError:
            raise LinkConfigError(f"{url}: the port must be a number in 1..65535") from None
        if port is not None and not 0 < port < 65536:
            raise LinkConfigError(f"{url}: the port must be a number in 1..65535")
        node = check_node_name(parts.path.removeprefix("/"), url)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        for name, value in (("username", username), ("password", password)):
            if value is not None and name in params:
                raise LinkConfigError(f"{url}: {name} given twice, in the URL and as a parameter")
        username = params.get("username", username)
        password = params.get("password", password)
        if password is not None and username is None:
            raise LinkConfigError(f"{url}: a password needs a username")
        settings = cls(
            host=parts.hostname,
            node=node,
            port=port or (8883 if tls else 1883),
            username=username,
            password=password,
            tls=tls,
            ca=params.get("ca"),
            cert=params.get("cert"),
            key=params.get("key"),
            client_id=params.get("client_id") or None,
        )
        if "protocol" in params:
            levels = {"3.1.1": 4, "311": 4, "4": 4, "5": 5, "5.0": 5}
            if params["protocol"] not in levels:
                raise LinkConfigError(f"{url}: protocol={params['protocol']!r}; use 3.1.1 or 5")
            settings = replace(settings, protocol=levels[params["protocol"]])
        if "keepalive" in params:
            keepalive = convert(
                url, "keepalive", params["keepalive"], positive_int, "whole seconds"
            )
            settings = replace(settings, keepalive_s=keepalive)
        if "session_expiry_s" in params:
            expiry = convert(
                url, "session_expiry_s", params["session_expiry_s"], positive_int, "whole seconds"
            )
            settings = replace(settings, session_expiry_s=expiry)
        if "reconnect_max_s" in params:
            limit = convert(
                url, "reconnect_max_s", params["reconnect_max_s"], positive_float, "seconds > 0"
            )
            initial = min(settings.reconnect_initial_s, limit)
            settings = replace(settings, reconnect_initial_s=initial, reconnect_max_s=limit)
        if "duplicate_window_s" in params:
            window = convert(
                url, "duplicate_window_s", params["duplicate_window_s"], positive_float, "seconds"
            )
            settings = replace(settings, duplicate_window_s=window)
        if "max_frame" in params:
            length = convert(url, "max_frame", params["max_frame"], positive_int, "octets > 0")
            settings = replace(settings, max_frame_length=length)
        return settings

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for mqtts://, files checked now; LinkConfigError names a bad one."""
        if not self.tls:
            return None
        for what, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if path is not None and not Path(path).is_file():
                raise LinkConfigError(f"TLS {what} file {path} does not exist or is not a file")
        try:
            context = ssl.create_default_context(cafile=self.ca)
            if self.cert:
                context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as error:
            files = ", ".join(
                f"{k}={v}"
                for k, v in (("ca", self.ca), ("cert", self.cert), ("key", self.key))
                if v
            )
            raise LinkConfigError(f"TLS files ({files or 'system trust store'}): {error}") from None
        return context


def reconnect_delay_s(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Wait before connection attempt `attempt + 1`: doubling from `initial_s`, capped at
    `max_s`, scaled by a factor in [0.5, 1) so that clients restarted together spread out."""
    return min(max_s, initial_s * 2.0 ** min(attempt, 60)) * (0.5 + 0.5 * rng.random())


class DuplicateFilter:
    """Recent frames by hash, to drop the copies that QoS 1 redelivery produces.

    A broker redelivers a message whose acknowledgement it did not get only when the client
    reconnects, so a duplicate follows its original by little connected time however long the
    outage. Ages are therefore counted in connected time (`now_s` from the caller): a copy
    redelivered after a long outage is still caught, while a frame the ground legitimately
    sends twice (an unauthenticated COP-1 Unlock, repeated after its T1 of 5 s) passes once the
    window is over. Memory is bounded by `capacity` hashes.
    """

    def __init__(self, window_s: float, capacity: int = 4096) -> None:
        self.window_s = window_s
        self.capacity = capacity
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def is_duplicate(self, frame: bytes, now_s: float) -> bool:
        """Whether `frame` was seen within the window; if not, remember it from `now_s`."""
        seen = self._seen
        while seen and now_s - next(iter(seen.values())) > self.window_s:
            seen.popitem(last=False)
        digest = hashlib.blake2b(frame, digest_size=16).digest()
        if digest in seen:
            return True
        seen[digest] = now_s
        if len(seen) > self.capacity:
            seen.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._seen)


class MqttLink(LinkBase):
    """One end (flight or ground) of a node's link through an MQTT broker."""

    def __init__(self, settings: MqttSettings, role: Role) -> None:
        scheme = "mqtts" if settings.tls else "mqtt"
        super().__init__(
            f"{scheme}://{settings.host}:{settings.port}/{settings.node}",
            receive_depth=settings.receive_depth,
        )
        self.settings = settings
        self.role = role
        self.topics = MqttTopics(settings.node)
        self.client_id = settings.client_id or f"penumbra-{settings.node}-{role.value}"
        self._tls = settings.tls_context()
        self._client: aiomqtt.Client | None = None
        self._peer_online = False
        self._duplicates = DuplicateFilter(settings.duplicate_window_s, settings.duplicate_capacity)
        self._connected_total_s = 0.0
        self._connected_since_s: float | None = None
        # Backoff jitter from a generator seeded by the client id: reproducible, yet two ends
        # restarting together do not retry in lock step.
        self._rng = random.Random(self.client_id)

    @property
    def connected(self) -> bool:
        """The session with the broker is up (whatever the peer's status)."""
        return self._client is not None and self._connected_since_s is not None

    @property
    def peer_online(self) -> bool:
        """The peer's retained status, as last heard while connected."""
        return self._peer_online

    async def __aenter__(self) -> Self:
        await self._start_keeper(self._maintain())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The keeper says "offline" on its way out. aiomqtt then waits for the disconnection
        # without a deadline; a broker that never completes it must not hang the node's
        # shutdown: past the deadline the keeper is cancelled again and abandoned.
        try:
            async with asyncio.timeout(CLOSE_DEADLINE_S):
                await self._stop_keeper()
        except TimeoutError:
            self._log.warning(
                "%s: the broker did not complete the disconnection in %g s; closed anyway",
                self.name,
                CLOSE_DEADLINE_S,
            )

    async def send(self, frame: bytes) -> None:
        frame = bytes(frame)
        if not frame:
            raise LinkError(f"{self.name}: refusing to send an empty frame")
        if len(frame) > self.settings.max_frame_length:
            raise LinkError(
                f"{self.name}: frame of {len(frame)} octets is longer than the link's "
                f"{self.settings.max_frame_length}; raise max_frame in the link URL if intended"
            )
        client = self._client
        if not self.up or client is None:
            raise self._refuse()
        topic, qos = self.topics.sends(self.role)
        try:
            await client.publish(topic, frame, qos=qos)
        except aiomqtt.MqttError as error:
            self.last_error = f"publish failed: {error}"
            raise self._refuse() from error
        self._count_sent(frame)

    def _client_for_attempt(self) -> aiomqtt.Client:
        """A new client per connection: aiomqtt's is not safely reusable after a lost one."""
        settings = self.settings
        will = aiomqtt.Will(self.topics.status(self.role), OFFLINE, qos=STATUS_QOS, retain=True)
        session: dict[str, object]
        if settings.protocol == 5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = settings.session_expiry_s
            session = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": False,
                "properties": properties,
            }
        else:
            session = {"protocol": aiomqtt.ProtocolVersion.V311, "clean_session": False}
        return aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=self.client_id,
            will=will,
            keepalive=settings.keepalive_s,
            tls_context=self._tls,
            logger=logging.getLogger(f"{__name__}.paho"),
            **session,  # type: ignore[arg-type]
        )

    async def _maintain(self) -> None:
        """Connect, subscribe, announce, serve messages; on loss, back off and do it again."""
        loop = asyncio.get_running_loop()
        attempt = 0
        connected_before = False
        incoming, incoming_qos = self.topics.receives(self.role)
        peer_status = self.topics.status(self.role.peer)
        while not self.closed:
            client = self._client_for_attempt()
            try:
                async with client:
                    self._client = client
                    self._connected_since_s = loop.time()
                    try:
                        # Subscribe on every connection, even to a session that should have
                        # kept them: a broker restarted without persistence forgot them.
                        await client.subscribe(incoming, qos=incoming_qos)
                        await client.subscribe(peer_status, qos=STATUS_QOS)
                        await client.publish(
                            self.topics.status(self.role), ONLINE, qos=STATUS_QOS, retain=True
                        )
                        if connected_before:
                            self.counters.reconnects += 1
                        connected_before = True
                        attempt = 0
                        self.last_error = "" if self._peer_online else self._peer_absent()
                        self._log.info("%s: connected as %s", self.name, self.client_id)
                        self._refresh()
                        async for message in client.messages:
                            self._on_message(message)
                    except asyncio.CancelledError:
                        if self.closed:
                            await self._say_offline(client)
                        raise
            except aiomqtt.MqttError as error:
                if _cancelling():
                    # aiomqtt's disconnect on the way out of a cancellation can time out and
                    # raise instead: the link is closing, not losing its connection.
                    raise asyncio.CancelledError from error
                self.last_error = f"broker {self.settings.host}:{self.settings.port}: {error}"
                level = logging.WARNING if attempt == 0 else logging.DEBUG
                self._log.log(level, "%s: %s", self.name, self.last_error)
            finally:
                if self._connected_since_s is not None:
                    self._connected_total_s += loop.time() - self._connected_since_s
                self._connected_since_s = None
                self._client = None
                self._peer_online = False
                self._refresh()
            settings = self.settings
            await asyncio.sleep(
                reconnect_delay_s(
                    attempt, settings.reconnect_initial_s, settings.reconnect_max_s, self._rng
                )
            )
            attempt += 1

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """Publish "offline" before a clean close, which does not fire the last will."""
        try:
            await client.publish(
                self.topics.status(self.role),
                OFFLINE,
                qos=STATUS_QOS,
                retain=True,
                timeout=CLOSE_TIMEOUT_S,
            )
        except aiomqtt.MqttError as error:
            self._log.warning("%s: could not publish offline status: %s", self.name, error)

    def _connected_time_s(self) -> float:
        since = self._connected_since_s
        now = asyncio.get_running_loop().time()
        return self._connected_total_s + (now - since if since is not None else 0.0)

    def _on_message(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        payload = message.payload
        frame = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
        if topic == self.topics.status(self.role.peer):
            self._peer_online = frame == ONLINE
            self.last_error = "" if self._peer_online else self._peer_absent()
            self._refresh()
            return
        if topic != self.topics.receives(self.role)[0]:
            self._log.debug("%s: ignoring a message on %s", self.name, topic)
            return
        if message.retain:
            # A retained frame would come back on every reconnect, replaying it.
            self._drop(f"retained message on {topic}: frames must not be retained")
        elif not frame:
            self._drop(f"empty message on {topic}")
        elif len(frame) > self.settings.max_frame_length:
            self._drop(
                f"message of {len(frame)} octets on {topic}, "
                f"at most {self.settings.max_frame_length} allowed"
            )
        elif self.role is Role.FLIGHT and self._duplicates.is_duplicate(
            frame, self._connected_time_s()
        ):
            self.counters.duplicates_dropped += 1
            self._drop(f"duplicate on {topic} (QoS 1 redelivery)")
        else:
            self._deliver(frame)

    def _peer_absent(self) -> str:
        return f"the {self.role.peer.value} end is not online"

    def _refresh(self) -> None:
        self._set_up(self.connected and self._peer_online and not self.closed)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
