"""The seam between the test API and a node under test: what a target starts and hands back."""

import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from flight.link.base import Link
from flight.protocol.sdls import load_key
from ground.dictionary import Dictionary


@runtime_checkable
class Target(Protocol):
    """A node to test: in-process (`memory`), a subprocess over a pty (`pty`), or over MQTT.

    `start` brings the node up and returns an entered link to it (the ground end), its
    dictionary (a `Dictionary` or the path of an exported file) and the SDLS key (32 octets or
    a key file); `stop` shuts the node down and closes that link.
    """

    name: str

    async def start(self) -> tuple[Link, Dictionary | str | os.PathLike[str], bytes | str]: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TargetConnection:
    """What a started target gave, normalised: the link, the loaded dictionary, the key octets."""

    link: Link
    dictionary: Dictionary
    key: bytes

    @classmethod
    def of(
        cls, started: tuple[Link, Dictionary | str | os.PathLike[str], bytes | str]
    ) -> "TargetConnection":
        link, dictionary, key = started
        if not isinstance(dictionary, Dictionary):
            dictionary = Dictionary.load(dictionary)
        if not isinstance(key, bytes | bytearray):
            key = load_key(key)
        return cls(link, dictionary, bytes(key))
