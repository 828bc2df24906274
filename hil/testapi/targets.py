"""Targets the test API can start by itself: `memory` (a node in this process over a MemoryLink),
`pty` and `mqtt` (a `penumbra flight` subprocess over a pty pair or through a broker)."""

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from flight.link import Link, Role, open_link
from flight.link.memory import FaultHook, MemoryLink
from flight.link.serial import SerialLink, open_pty_pair
from flight.runtime.component import Component
from flight.runtime.config import NodeConfig, load
from flight.runtime.node import Node
from ground.dictionary import Dictionary

ComponentsHook = Callable[[NodeConfig], Sequence[tuple[int, Component]]]
"""Builds a node's own components (ids >= 16) from its configuration, state_dir already set."""


def flight_dictionary(config: NodeConfig, *, source: str | None = None) -> Dictionary:
    """The dictionary of the node `penumbra flight` runs from `config`: the runtime's components
    and `compute_components` (payload, and power when `[power] eps` is set).

    `flight.runtime.main.node_dictionary` builds it without touching the node's state; here a
    board's real EPS and cpufreq control are swapped for a simulated EPS and none first, so that
    the machine building it (a bench PC) needs neither. They do not change the dictionary.
    """
    from flight.runtime.main import node_dictionary

    eps = "none" if config.power.eps == "none" else "simulated"
    probe = replace(config, power=replace(config.power, eps=eps, cpu_freq_control=False))
    return Dictionary.from_document(node_dictionary(probe), source=source or config.source)


class MemoryTarget:
    """A `flight.runtime.node.Node` in this process and loop, joined to the ground by a MemoryLink.

    Its state directory is a fresh temporary one unless `state_dir` is given, and its SDLS key a
    random one drawn when the target is made unless `key` is given; a node restarted on the same
    state keeps its key, as a real one does. `uplink_faults` and `downlink_faults` are the link's
    fault hooks (hil.faults.FaultInjector). `components` builds the node's own components from
    its configuration (`flight.runtime.main.compute_components` gives what `penumbra flight`
    runs). `node` is the running node, for white-box checks.
    """

    name = "memory"

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        state_dir: Path | None = None,
        key: bytes | None = None,
        uplink_faults: FaultHook | None = None,
        downlink_faults: FaultHook | None = None,
        components: ComponentsHook | None = None,
    ) -> None:
        self._config = config
        self._components = components
        self._state_dir = state_dir
        self.key = secrets.token_bytes(32) if key is None else bytes(key)
        self._faults = (uplink_faults, downlink_faults)
        self.node: Node | None = None
        self.flight_link: MemoryLink | None = None
        self._ground_link: MemoryLink | None = None
        self._serving: asyncio.Task[None] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    @property
    def ground_link(self) -> MemoryLink | None:
        """The ground's end of the link while started: a test may send raw frames on it."""
        return self._ground_link

    @property
    def faults(self) -> tuple[FaultHook | None, FaultHook | None]:
        """The (uplink, downlink) fault hooks, with their counters."""
        return self._faults

    async def start(self) -> tuple[MemoryLink, Dictionary, bytes]:
        if self._serving is not None:
            raise RuntimeError("this memory target is already started; stop it first")
        state_dir = self._state_dir
        if state_dir is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="penumbra-node-")
            state_dir = Path(self._scratch.name)
        config = (self._config or load(None)).with_state_dir(state_dir)
        key = self.key
        self.flight_link, self._ground_link = MemoryLink.pair(*self._faults)
        components = () if self._components is None else self._components(config)
        self.node = Node(config, link=self.flight_link, key=key, components=components)
        started = asyncio.get_running_loop().create_future()
        self._serving = asyncio.create_task(self._serve(self.node, started), name="memory node")
        await started  # the node's own start-up errors surface here
        await self._ground_link.__aenter__()
        dictionary = Dictionary.from_document(self.node.dictionary(), source="memory node")
        return self._ground_link, dictionary, key

    async def _serve(self, node: Node, started: "asyncio.Future[None]") -> None:
        assert self.flight_link is not None
        try:
            async with self.flight_link, node:
                started.set_result(None)
                await node.run()
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
                return
            raise

    async def stop(self) -> None:
        if self.node is not None:
            self.node.request_stop()
        if self._serving is not None:
            serving, self._serving = self._serving, None
            await serving
        if self._ground_link is not None:
            await self._ground_link.__aexit__(None, None, None)
            self._ground_link = None
        if self._scratch is not None:
            with contextlib.suppress(OSError):
                self._scratch.cleanup()
            self._scratch = None


STOP_TIMEOUT_S = 10.0  # SIGTERM, then this long for a clean exit before SIGKILL
LINK_UP_TIMEOUT_S = 30.0  # safety net: a node normally answers within a second


class ProcessTarget:
    """A node in a subprocess (`penumbra flight`), over a pty pair or through an MQTT broker.

    The node is the installed command, run as a user runs it: a node.toml and a 0600 key file
    written to a work directory, state kept there across `kill` and restart (a power cut on the
    bench). `pty()` joins it to the ground by a fresh pty pair; `mqtt(url)` by a broker (the
    node's name is the URL's path). `node_config` is TOML appended to the node.toml written
    (sections other than [node] and [link], e.g. `[power] eps = "simulated"`). `restart` powers a
    killed node on again on the same work directory and link. `log_path` holds what the node
    printed, for failures.
    """

    def __init__(
        self,
        name: str,
        *,
        work_dir: Path | None = None,
        key: bytes | None = None,
        node_config: str = "",
    ):
        self.name = name
        self.node_config = node_config
        self.key = secrets.token_bytes(32) if key is None else bytes(key)
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="penumbra-target-")
            work_dir = Path(self._scratch.name)
        self.work_dir = work_dir
        self.log_path = work_dir / "node.log"
        self.process: asyncio.subprocess.Process | None = None
        self._link: Link | None = None
        self._config_path: Path | None = None
        self.mqtt_url: str | None = None

    @classmethod
    def pty(cls, **kwargs: Any) -> "ProcessTarget":
        return cls("pty", **kwargs)

    @classmethod
    def mqtt(cls, url: str, **kwargs: Any) -> "ProcessTarget":
        target = cls("mqtt", **kwargs)
        target.mqtt_url = url
        return target

    def _write_config(self, link_url: str) -> Path:
        key_file = self.work_dir / "node.key"
        if not key_file.exists():
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(self.key)
        config = self.work_dir / "node.toml"
        config.write_text(
            f'[node]\nname = "{self.name}-target"\nstate_dir = "state"\n\n'
            f'[link]\nurl = "{link_url}"\nkey_file = "node.key"\n'
            + (f"\n{self.node_config.strip()}\n" if self.node_config.strip() else "")
        )
        return config

    async def start(self) -> tuple[Link, Dictionary, bytes]:
        if self.process is not None:
            raise RuntimeError(f"the {self.name} target is already started; stop it first")
        if self.mqtt_url is None:
            pair = open_pty_pair()
            node_url = f"serial://{pair.slave_path}?baudrate=115200"
            link: Link = SerialLink.pty_master(pair.master_fd)
        else:
            node_url = self.mqtt_url
            link = open_link(self.mqtt_url, role=Role.GROUND)
        config_path = self._config_path = self._write_config(node_url)
        try:
            dictionary = flight_dictionary(load(config_path), source=str(config_path))
        except BaseException:
            if self.mqtt_url is None:
                os.close(pair.master_fd)  # the link never entered, so it will not close it
            raise
        await self._spawn()
        await link.__aenter__()
        self._link = link
        try:
            async with asyncio.timeout(LINK_UP_TIMEOUT_S):
                await link.wait_up()
        except TimeoutError:
            await self.stop()
            raise RuntimeError(
                f"the {self.name} target's link did not come up in {LINK_UP_TIMEOUT_S:.0f} s; "
                f"node output:\n{self.output()}"
            ) from None
        return link, dictionary, self.key

    async def _spawn(self) -> None:
        assert self._config_path is not None
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "penumbra", "flight", "--config", str(self._config_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip

    async def restart(self) -> None:
        """Power the node on again (after `kill`; a running node is killed first): the same
        node.toml, work directory, state and key, on the same link (the pty pair stays; the
        ground's link reopens by itself once the node holds the slave again)."""
        if self._config_path is None or self._link is None:
            raise RuntimeError(f"the {self.name} target was never started; start it first")
        await self.kill()
        await self._spawn()

    def adopt_link(self, link: Link) -> None:
        """Take `link` (entered) as the ground's link from now on: the next pass of an MQTT
        target, after the test closed the first one; `stop` closes it."""
        self._link = link

    def output(self) -> str:
        """What the node process printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def kill(self) -> None:
        """Cut the node's power: SIGKILL, no chance to save or flush anything."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> int | None:
        """Stop the node (SIGTERM, then SIGKILL if it hangs) and close the ground's link; returns
        the node's exit status."""
        status = None
        if self.process is not None:
            process, self.process = self.process, None
            if process.returncode is None:
                process.terminate()
                try:
                    async with asyncio.timeout(STOP_TIMEOUT_S):
                        await process.wait()
                except TimeoutError:
                    process.kill()
                    await process.wait()
            status = process.returncode
        if self._link is not None:
            link, self._link = self._link, None
            await link.__aexit__(None, None, None)
        return status

    def cleanup(self) -> None:
        if self._scratch is not None:
            with contextlib.suppress(OSError):
                self._scratch.cleanup()
            self._scratch = None
