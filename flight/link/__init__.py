"""Links between a node and a ground station: serial, MQTT and in-memory, one interface.

`open_link(url, role=...)` makes a serial or MQTT link from a URL; `MemoryLink.pair()` makes
the in-process pair used by simulations and tests. Every link is an async context manager that
moves whole frames (`send`, `receive`), says whether it is `up`, and counts what it carried and
dropped. docs/ICD.md ("Links and MQTT topics") describes them for other tools.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flight.link.base import (
    DEFAULT_MAX_FRAME_LENGTH,
    DEFAULT_RECEIVE_DEPTH,
    Link,
    LinkBase,
    LinkConfigError,
    LinkCounters,
    LinkDown,
    LinkError,
    Role,
)
from flight.link.memory import FaultHook, MemoryLink
from flight.link.serial import PtyPair, SerialLink, SerialSettings, open_pty_pair
from flight.link.url import redact

if TYPE_CHECKING:
    from flight.link.mqtt import DuplicateFilter, MqttLink, MqttSettings, MqttTopics

# The MQTT link pulls in aiomqtt and paho (about 3 MiB of a node's memory): imported on first use,
# so that a node on a serial link never loads them.
_MQTT_NAMES = ("DuplicateFilter", "MqttLink", "MqttSettings", "MqttTopics")


def __getattr__(name: str) -> Any:
    if name in _MQTT_NAMES:
        return getattr(import_module("flight.link.mqtt"), name)
    raise AttributeError(f"module 'flight.link' has no attribute {name!r}")


URL_FORMS = (
    "serial:///dev/ttyUSB0?baudrate=115200",
    "socket://HOST:PORT",
    "mqtt://[USER:PASSWORD@]HOST[:1883]/NODE",
    "mqtts://HOST[:8883]/NODE?ca=CA.pem",
)


def open_link(url: str, *, role: Role) -> "SerialLink | MqttLink":
    """The link a URL names, not yet connected (enter it with `async with`).

    LinkConfigError, with the fix in its message, for an unknown scheme, a missing host, port,
    device path or node name, an unknown or malformed parameter, or a TLS file that is missing.
    """
    if not isinstance(role, Role):
        raise LinkConfigError(f"role must be Role.FLIGHT or Role.GROUND, not {role!r}")
    url = url.strip()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    shown = redact(url)  # error messages end up in logs: never show the password
    if scheme in ("serial", "socket"):
        return SerialLink.from_url(shown, parts._replace(scheme=scheme))
    if scheme in ("mqtt", "mqtts"):
        from flight.link.mqtt import MqttLink, MqttSettings

        return MqttLink(MqttSettings.from_url(shown, parts._replace(scheme=scheme)), role)
    if scheme == "memory":
        raise LinkConfigError(
            f"{url}: memory links have no URL; make the pair in code with MemoryLink.pair()"
        )
    hint = f"; for a device write serial://{url}" if url.startswith("/") else ""
    raise LinkConfigError(
        f"{shown!r}: unknown link scheme {parts.scheme!r}{hint}. Links are: {', '.join(URL_FORMS)}"
    )


__all__ = [
    "DEFAULT_MAX_FRAME_LENGTH",
    "DEFAULT_RECEIVE_DEPTH",
    "URL_FORMS",
    "DuplicateFilter",
    "FaultHook",
    "Link",
    "LinkBase",
    "LinkConfigError",
    "LinkCounters",
    "LinkDown",
    "LinkError",
    "MemoryLink",
    "MqttLink",
    "MqttSettings",
    "MqttTopics",
    "PtyPair",
    "Role",
    "SerialLink",
    "SerialSettings",
    "open_link",
    "open_pty_pair",
]
