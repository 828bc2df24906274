"""What the ISL component tests share: real nodes on one virtual-time loop, linked by MemoryLink
pairs (with seeded loss if asked) and a hand-built contact plan, each node rebootable."""

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flight.inference import load
from flight.isl import ContactGraph
from flight.isl.component import Isl, OffloadRecord
from flight.link.memory import MemoryLink
from flight.orbit import GroundSite, Orbit
from flight.payload import Payload
from flight.runtime import clock
from flight.runtime.bus import Overflow
from flight.runtime.clock import MissionClock
from flight.runtime.config import (
    HousekeepingSection,
    IslSection,
    NodeConfig,
    NodeSection,
    OrbitSection,
    PayloadSection,
    PowerSection,
    TimeSection,
)
from flight.runtime.main import compute_components
from flight.runtime.node import Node
from hil.models import cloud_mask_unet
from hil.sim.power import PowerScenario, physics_eps, satellite_environment

TILE_SIZE = 16
BANDS = 4
EPOCH_UNIX_S = 1_789_992_000.0  # 2026-09-21T12:00:00Z
SAFETY_S = 100_000.0  # virtual seconds: a net for a hung scenario, not a measurement
LINK_RATE_BPS = 1e6
LINK_DELAY_S = 0.01


def unet_bytes() -> bytes:
    """A small U-Net: input "bands" (1, 4, 16, 16), output "mask" (1, 1, 16, 16)."""
    model = cloud_mask_unet(input_size=TILE_SIZE, in_channels=BANDS, base_channels=4, depth=1)
    return model.SerializeToString()


def make_tiles(count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, BANDS, TILE_SIZE, TILE_SIZE)).astype(np.float32)


def reference(model: bytes, tiles: np.ndarray) -> np.ndarray:
    """Every tile through the C core outside any payload: what a job must produce."""
    with load(model, backend="native", num_threads=1) as session:
        return np.concatenate(
            [session.run({"bands": tiles[i : i + 1]})["mask"] for i in range(len(tiles))]
        )


def virtual(scenario: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(SAFETY_S):
            return await scenario

    return clock.run(bounded(), virtual=True)


class SeededLoss:
    """A MemoryLink fault hook losing each frame with probability `ratio` (seeded)."""

    def __init__(self, ratio: float, seed: int) -> None:
        self.ratio = ratio
        self.random = random.Random(seed)
        self.lost = 0

    def __call__(self, frame: bytes, now_s: float) -> list[tuple[float, bytes]]:
        if self.ratio and self.random.random() < self.ratio:
            self.lost += 1
            return []
        return [(LINK_DELAY_S, frame)]


@dataclass
class Sat:
    address: int
    config: NodeConfig
    links: dict[int, MemoryLink] = field(default_factory=dict)
    node: Node | None = None
    payload: Payload | None = None
    isl: Isl | None = None
    records: list[OffloadRecord] = field(default_factory=list)
    boots: int = 0
    environment: Any = None
    task: asyncio.Task[None] | None = None

    @property
    def state_dir(self) -> Path:
        return self.config.node.state_dir


class Constellation:
    """Nodes 1..N joined by `pairs`; `async with` opens the links and boots every node."""

    def __init__(
        self,
        root: Path,
        addresses: Sequence[int],
        pairs: Sequence[tuple[int, int]],
        *,
        loss: float = 0.0,
        seed: int = 1,
        max_workers: int = 1,
        tile_time_s: float = 1.0,
        isl: IslSection | None = None,
        orbits: dict[int, Orbit] | None = None,
        sites: Sequence[GroundSite] = (),
        power: bool = False,
    ) -> None:
        """`power`: each node gets a simulated EPS reading the physics of its orbit
        (hil.sim.power), and the power component governing its payload."""
        isl = isl or IslSection(beacon_period_s=5.0, neighbour_expiry_s=16.0, retry_s=10.0)
        self.orbits = dict(orbits or {})
        self.power = power
        self.scenario = PowerScenario(epoch_unix_s=EPOCH_UNIX_S, tile_time_s=tile_time_s)
        power_section = PowerSection(
            eps="simulated",
            capacity_wh=self.scenario.battery_wh,
            floor_soc=self.scenario.floor_soc,
            bus_power_w=self.scenario.bus_power_w,
            solar_power_w=self.scenario.solar_power_w,
        )
        self.start_loop_s = 0.0
        self.plan = ContactGraph()
        self.hooks: list[SeededLoss] = []
        self.sats: dict[int, Sat] = {}
        for address in addresses:
            orbit = (orbits or {}).get(address)
            tle = orbit.tle if orbit is not None else (None, None)
            config = NodeConfig(
                node=NodeSection(name=f"sat{address}", state_dir=root / f"sat{address}"),
                time=TimeSection(epoch_tai_s=MissionClock.tai_from_unix(EPOCH_UNIX_S)),
                housekeeping=HousekeepingSection(interval_ms=60_000),
                orbit=OrbitSection(tle_line1=tle[0], tle_line2=tle[1], ground_sites=tuple(sites)),
                payload=PayloadSection(
                    max_workers=max_workers, batch_tiles=4, simulated_tile_time_s=tile_time_s
                ),
                power=power_section if power else PowerSection(),
                isl=IslSection(
                    address=address,
                    beacon_period_s=isl.beacon_period_s,
                    neighbour_expiry_s=isl.neighbour_expiry_s,
                    retry_s=isl.retry_s,
                    offload=isl.offload,
                ),
            )
            self.sats[address] = Sat(address, config)
            self.plan.add_node(address)
        self.pairs: dict[frozenset[int], MemoryLink] = {}
        for number, (a, b) in enumerate(pairs):
            there = SeededLoss(loss, seed * 1000 + 2 * number)
            back = SeededLoss(loss, seed * 1000 + 2 * number + 1)
            self.hooks += [there, back]
            end_a, end_b = MemoryLink.pair(there, back, rate_bps=LINK_RATE_BPS, name=f"{a}-{b}")
            self.sats[a].links[b] = end_a
            self.sats[b].links[a] = end_b
            self.pairs[frozenset((a, b))] = end_a
            self.plan.set_link(a, b, delay_s=LINK_DELAY_S, rate_bps=LINK_RATE_BPS)
        self._stack = contextlib.AsyncExitStack()

    def __getitem__(self, address: int) -> Sat:
        return self.sats[address]

    async def __aenter__(self) -> "Constellation":
        self.start_loop_s = asyncio.get_running_loop().time()
        for sat in self.sats.values():
            if self.power:
                sat.environment = self._environment(sat)
        for link in (link for sat in self.sats.values() for link in sat.links.values()):
            await self._stack.enter_async_context(link)
        for address in self.sats:
            await self.boot(address)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for address in list(self.sats):
            await self.halt(address)
        await self._stack.aclose()

    def set_up(self, a: int, b: int, up: bool, *, plan: bool = True) -> None:
        """Contact between a and b begins or ends: the link says so, and the contact plan
        too unless `plan` is False (a link lost that the plan did not foresee)."""
        self.pairs[frozenset((a, b))].set_up(up)
        if plan:
            self.plan.set_up(a, b, up)

    async def boot(self, address: int) -> None:
        sat = self.sats[address]
        started = asyncio.get_running_loop().create_future()
        sat.task = asyncio.get_running_loop().create_task(self._life(sat, started))
        await started

    async def halt(self, address: int) -> None:
        """Stop the node (its links stay, as a satellite's radios do across a reboot)."""
        sat = self.sats[address]
        if sat.node is None or sat.task is None:
            return
        sat.node.request_stop()
        await sat.task
        sat.node = None
        assert sat.payload is not None
        sat.payload.close()

    async def reboot(self, address: int) -> None:
        await self.halt(address)
        await self.boot(address)

    def _environment(self, sat: Sat) -> Any:
        return satellite_environment(
            self.scenario, self.orbits[sat.address], lambda: sat.payload.power_w()
        )

    def _eps(self, sat: Sat) -> Any:
        if sat.environment is None:
            return None
        loop = asyncio.get_running_loop()
        return physics_eps(
            sat.environment,
            loop_time=loop.time,
            unix_time=lambda: EPOCH_UNIX_S + loop.time() - self.start_loop_s,
            payload_power_w=lambda: sat.payload.power_w(),
        )

    async def _life(self, sat: Sat, started: asyncio.Future[None]) -> None:
        components = compute_components(
            sat.config, eps=self._eps(sat), isl_links=sat.links, contact_plan=self.plan
        )
        sat.payload = next(c for _, c in components if isinstance(c, Payload))
        sat.isl = next(c for _, c in components if isinstance(c, Isl))
        async with Node(sat.config, components=components) as node:
            sat.node = node
            sat.boots += 1
            subscription = node.bus.subscribe(
                "offload", name="test", depth=1024, overflow=Overflow.DROP_NEWEST
            )

            async def collect() -> None:
                async for record in subscription:
                    sat.records.append(record)

            reader = asyncio.get_running_loop().create_task(collect())
            started.set_result(None)
            try:
                await node.run()
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


async def add_model(payload: Payload, root: Path, model: bytes) -> str:
    sha256 = hashlib.sha256(model).hexdigest()
    path = root / "model.onnx"
    path.write_bytes(model)
    await payload.add_model(path, sha256)
    return sha256


async def wait_for(predicate: Any, *, timeout_s: float, step_s: float = 1.0) -> None:
    """Wait (virtual time) until `predicate()` is true; AssertionError after `timeout_s`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not predicate():
        if loop.time() >= end:
            raise AssertionError(f"not true after {timeout_s} s: {predicate}")
        await asyncio.sleep(step_s)
