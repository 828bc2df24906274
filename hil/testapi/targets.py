"""Targets the test API can start by itself: `memory`, a node in this process over a MemoryLink."""

import asyncio
import contextlib
import secrets
import tempfile
from pathlib import Path

from flight.link.memory import FaultHook, MemoryLink
from flight.runtime.config import NodeConfig, load
from flight.runtime.node import Node
from ground.dictionary import Dictionary


class MemoryTarget:
    """A `flight.runtime.node.Node` in this process and loop, joined to the ground by a MemoryLink.

    Its state directory is a fresh temporary one unless `state_dir` is given, and its SDLS key a
    random one drawn when the target is made unless `key` is given; a node restarted on the same
    state keeps its key, as a real one does. `uplink_faults` and `downlink_faults` are the link's
    fault hooks (hil.faults.FaultInjector). `node` is the running node, for white-box checks.
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
    ) -> None:
        self._config = config
        self._state_dir = state_dir
        self.key = secrets.token_bytes(32) if key is None else bytes(key)
        self._faults = (uplink_faults, downlink_faults)
        self.node: Node | None = None
        self.flight_link: MemoryLink | None = None
        self._ground_link: MemoryLink | None = None
        self._serving: asyncio.Task[None] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

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
        self.node = Node(config, link=self.flight_link, key=key)
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
