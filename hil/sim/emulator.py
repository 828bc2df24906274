"""The constellation emulator: N real flight nodes and their ground stations on one virtual-time
loop, with ground contacts and inter-satellite links from geometry, physics per satellite, a
workload, faults, and a deterministic event log.

    scenario = EmulatorScenario.walker(4, 2, 1, duration_s=7_200.0)
    async with Emulator(scenario, Path("out/run")) as emulator:   # on clock.run(..., virtual=True)
        await emulator.run()                                      # to scenario.duration_s
    result = emulator.result()    # hil.sim.results.RunResult; out/run/events.jsonl

Everything onboard is the flight code unchanged (`compute_components`, `Node`), configured with
the scenario's cadence; each node's EPS reads its own `hil.env.SatelliteEnvironment`, as
`hil.sim.power` does for one satellite. Each satellite's ground link is a `MemoryLink` pair that
the geometry raises while the satellite is above a site's minimum elevation, so the node stores
its telemetry out of contact and plays it back in the pass; each has its own `GroundStation`
(its own key). The inter-satellite links are `hil.sim.links.IslNetwork`'s memory links, raised,
dropped and delayed by the same geometry step, and the nodes route and offload over them.
"""

import asyncio
import contextlib
import functools
import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from flight.isl.component import JOB_TAG_PREFIX
from flight.link.memory import MemoryLink
from flight.orbit import Orbit, illumination, positions_of, sun_position_m
from flight.payload import JobState, Payload
from flight.power import SimulatedEps
from flight.power.component import Power
from flight.runtime.bus import Overflow, Subscription, SubscriptionClosed
from flight.runtime.clock import MissionClock
from flight.runtime.config import (
    DownlinkSection,
    HousekeepingSection,
    IslSection,
    NodeConfig,
    RateGroupsSection,
)
from flight.runtime.main import compute_components
from flight.runtime.node import Node
from flight.runtime.resources import ResourceSample, ResourceSampler
from flight.runtime.services import EventRecord
from ground.archive import Archive
from ground.dictionary import Dictionary, GroundError
from ground.station import GroundStation
from hil.env import SatelliteEnvironment
from hil.models import cloud_mask_unet
from hil.sim.geometry import contact_mask
from hil.sim.links import IslNetwork
from hil.sim.power import (
    ImagingJob,
    choice,
    imaging_jobs,
    node_config,
    physics_eps,
    satellite_environment,
)
from hil.sim.results import OffloadFlow, Pass, RunResult, Sample, SatelliteSummary
from hil.sim.scenario import (
    BatteryFade,
    CoreCrash,
    EmulatorScenario,
    Fault,
    LinkDamage,
    LinkQuality,
    Reboot,
)

if TYPE_CHECKING:
    from hil.sim.realtime import RealNodeSpec, RealSatellite

__all__ = [
    "BatteryFade",
    "CoreCrash",
    "Emulator",
    "EmulatorScenario",
    "LinkDamage",
    "LinkQuality",
    "Pass",
    "Reboot",
    "Satellite",
    "passes_of",
]

EVENT_QUEUE_DEPTH = 4_096
"""Onboard events a node may raise between two geometry steps before the log counts drops."""

TILE_SHAPE = (1, 16, 16)
"""One imaging tile for the emulator's cloud-mask model: small, so that the C core's real
inference of every tile costs little wall time (virtual time is the scenario's tile time)."""


SYSTEMD_RESTART_S = 2.0
"""deploy/penumbra.service's RestartSec: how long a crashed flight process stays down."""


def address_of(sat: int) -> int:
    """A satellite's ISL address: its index + 1 (0 is not an address)."""
    return sat + 1


class _FixedResources(ResourceSampler):
    """A simulated board's resources: constant, so that the host's load (real CPU, memory and
    disk of this process) cannot reach the nodes' telemetry and events and break determinism."""

    def sample(self) -> ResourceSample:
        return ResourceSample(
            cpu_percent=10.0,
            rss_bytes=64 << 20,
            disk_free_bytes=8 << 30,
            cpu_temperature_c=45.0,
            notes=("simulated board",),
        )


class Satellite:
    """One emulated satellite: its environment, node (replaced on reboot), links and station."""

    def __init__(self, index: int, orbit: Orbit, run_dir: Path, state_root: Path, seed: int):
        self.index = index
        self.name = f"sat{index:02d}"
        self.orbit = orbit
        self.dir = run_dir / self.name
        self.state_dir = state_root / self.name / "state"
        self.ground_dir = self.dir / "ground"
        # Simulation keys, reproducible from the seed; a real mission's keys are never derived.
        self.key = hashlib.sha256(f"penumbra-emulator:{seed}:{index}".encode()).digest()
        self.flight_link, self.ground_link = MemoryLink.pair(name=self.name)
        self.environment: SatelliteEnvironment | None = None
        self.node: Node | None = None
        self.payload: Payload | None = None
        self.station: GroundStation | None = None
        self.real: RealSatellite | None = None  # a real node (hil.sim.realtime) instead of `node`
        self.boots: list[int] = []  # boot count of every start, in order
        self.in_contact = False
        self.passes: list[Pass] = []
        self.packets_at_start = 0  # the station's count when the current pass began
        self.events_dropped = 0
        self.jobs_submitted = 0
        self.uplinks_failed = 0
        self.value_done = 0.0  # of the jobs done here, as of the last sample
        self._subscriptions: list[Subscription] = []
        self._reboot_off_s: float | None = None
        self._sequence = 0

    def payload_power_w(self) -> float:
        """What the node's payload draws now (nothing before the node has booted)."""
        if self.real is not None:
            return self.real.payload_power_w()
        return 0.0 if self.payload is None else self.payload.power_w()

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence


class Emulator:
    """Runs `scenario` with one payload power `policy` (default: the scenario's first) in
    `run_dir` on the running (virtual-time) loop; an async context manager.

    Entering starts every node and station and the geometry, workload and fault tasks; `run()`
    lets virtual time pass to the scenario's end; leaving stops the nodes (each flushes what it
    can), the stations and the links, and writes `<run_dir>/events.jsonl`. `state_root` is
    where the nodes keep their state (default `run_dir`; a tmpfs saves the disk's syncs).
    `progress(virtual_s, duration_s, wall_s)` is called about once per wall second.
    `real_node` makes one satellite a real flight process or board (hil.sim.realtime): the
    emulator then runs in real time (a real loop) and that satellite has no ISL.
    """

    def __init__(
        self,
        scenario: EmulatorScenario,
        run_dir: Path,
        *,
        policy: str | None = None,
        state_root: Path | None = None,
        progress: Callable[[float, float, float], None] | None = None,
        real_node: "RealNodeSpec | None" = None,
    ) -> None:
        if real_node is not None:
            # A node on a real loop keeps mission time from the host's UTC clock (its own
            # anchor at boot): the scenario's epoch follows, or every deadline would be past.
            scenario = replace(scenario, epoch_unix_s=time.time())
        # Every satellite's physics starts at the scenario's epoch.
        self.scenario = scenario = replace(
            scenario, satellite=replace(scenario.satellite, epoch_unix_s=scenario.epoch_unix_s)
        )
        self.policy = scenario.policies[0] if policy is None else policy
        choice(self.policy)  # an unknown policy is refused before anything starts
        self.run_dir = Path(run_dir)
        state_root = self.run_dir if state_root is None else Path(state_root)
        self.satellites = [
            Satellite(index, orbit, self.run_dir, state_root, scenario.seed)
            for index, orbit in enumerate(scenario.orbits)
        ]
        if real_node is not None:
            self._make_real(real_node)
        self.network: IslNetwork | None = None  # when the scenario has ISLs
        self.samples: list[Sample] = []
        self._last_sample: dict[int, Sample] = {}
        self.flows: dict[str, OffloadFlow] = {}
        self.events: list[dict[str, Any]] = []  # in log order once the emulator has stopped
        self._entries: list[tuple[float, int, int, dict[str, Any]]] = []
        self._faults = scenario.all_faults()
        self._progress = progress
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._start_loop_s = 0.0
        self._epoch_tai_s = 0.0
        self._wall_start_s = 0.0
        self._wall_s: float | None = None
        self._last_progress_s = 0.0
        self._model_path = self.run_dir / "cloud_mask.onnx"
        self._model_sha256 = ""
        self._loop: asyncio.AbstractEventLoop | None = None

    def _make_real(self, spec: "RealNodeSpec") -> None:
        from hil.sim.realtime import RealSatellite

        if not 0 <= spec.sat < len(self.satellites):
            raise ValueError(
                f"real node sat {spec.sat} is not one of 0..{len(self.satellites) - 1}"
            )
        if self._has_isl():
            raise ValueError(
                "a real node has no inter-satellite links: run it with [isl] enabled = false"
            )
        satellite = self.satellites[spec.sat]
        satellite.real = RealSatellite(
            spec,
            name=satellite.name,
            orbit=satellite.orbit,
            satellite=self.scenario.satellite,
            policy=self.policy,
            work_dir=satellite.dir,
            housekeeping_interval_s=self.scenario.cadence.housekeeping_interval_s,
            unix_time=self.unix_now,
            log=functools.partial(self._log, satellite),
        )
        satellite.boots = satellite.real.boots  # the real node's, as they are reported

    # -- time ------------------------------------------------------------------------------------

    def now_s(self) -> float:
        """Seconds of virtual time since the emulator started."""
        assert self._loop is not None
        return self._loop.time() - self._start_loop_s

    def unix_now(self) -> float:
        return self.scenario.epoch_unix_s + self.now_s()

    # -- start and stop --------------------------------------------------------------------------

    async def __aenter__(self) -> "Emulator":
        try:
            await self._start()
        except BaseException:
            self._stopping = True
            for satellite in self.satellites:
                if satellite.node is not None:
                    satellite.node.request_stop()
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wall_start_s = time.perf_counter()
        self._start_loop_s = self._loop.time()
        # A node's mission clock reads its epoch at loop time 0: shift it so that mission time
        # is the scenario's epoch at the emulator's start, wherever the loop's clock stands.
        self._epoch_tai_s = MissionClock.tai_from_unix(self.scenario.epoch_unix_s) - (
            self._start_loop_s
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_model()
        if self._has_isl():
            self.network = await self._stack.enter_async_context(
                IslNetwork(
                    self.scenario.isl,
                    self.scenario.plane_of,
                    self.scenario.seed,
                    address_of=address_of,
                )
            )
        for satellite in self.satellites:
            satellite.state_dir.mkdir(parents=True, exist_ok=True)
            satellite.ground_dir.mkdir(parents=True, exist_ok=True)
            satellite.environment = self._environment(satellite)
            satellite.flight_link.set_up(False)  # the first geometry step says who is in contact
            await self._stack.enter_async_context(satellite.flight_link)
            await self._stack.enter_async_context(satellite.ground_link)
        for satellite in self.satellites:
            if satellite.real is not None:  # started, gated and fed before the others boot
                await self._stack.enter_async_context(satellite.real)
                satellite.station = satellite.real.station
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._stack.push_async_exit(self._group.__aexit__)
        for satellite in self.satellites:
            if satellite.real is not None:
                continue
            started: asyncio.Future[None] = self._loop.create_future()
            self._group.create_task(self._live(satellite, started), name=satellite.name)
            await started
        dictionaries: dict[str, Dictionary] = {}  # identical nodes share one parsed dictionary
        for satellite in self.satellites:
            if satellite.real is not None:
                continue
            assert satellite.node is not None
            document = satellite.node.dictionary()
            key = json.dumps(document, sort_keys=True)
            dictionary = dictionaries.get(key)
            if dictionary is None:
                dictionary = Dictionary.from_document(document, source=f"{satellite.name} node")
                dictionaries[key] = dictionary
            archive = self._stack.enter_context(Archive(satellite.ground_dir / "archive.sqlite"))
            satellite.station = await self._stack.enter_async_context(
                GroundStation(
                    satellite.ground_link,
                    dictionary,
                    key=satellite.key,
                    state_dir=satellite.ground_dir,
                    archive=archive,
                )
            )
        self._step()
        self._sample()
        self._spawn(self._geometry(), "geometry")
        for number, fault in enumerate(self._faults):
            self._spawn(self._fault(fault), f"fault{number}")
        for satellite in self.satellites:
            if satellite.real is None:  # a real node holds no model to image with
                self._spawn(self._imaging(satellite), f"{satellite.name} imaging")

    def _spawn(self, coroutine: Any, name: str) -> None:
        assert self._group is not None
        self._tasks.append(self._group.create_task(coroutine, name=name))

    def _has_isl(self) -> bool:
        return self.scenario.isl.enabled and len(self.satellites) > 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        if exc is None and self._loop is not None:
            self._sample_all()  # the end state, before the nodes stop
        for task in self._tasks:
            task.cancel()
        for satellite in self.satellites:
            if satellite.node is not None:
                satellite.node.request_stop()
        try:
            await self._stack.aclose()
        finally:
            self._wall_s = time.perf_counter() - self._wall_start_s
            self._close_passes()
            self._write_log()

    async def run(self) -> None:
        """Let virtual time pass to the scenario's end."""
        await self.run_until(self.scenario.duration_s)

    async def run_until(self, t_s: float) -> None:
        """Let virtual time pass to `t_s` seconds after the start."""
        await asyncio.sleep(max(t_s - self.now_s(), 0.0))

    # -- one satellite -----------------------------------------------------------------------------

    def _environment(self, satellite: Satellite) -> SatelliteEnvironment:
        if satellite.real is not None:  # one physics: its sensor feed reads the same object
            return satellite.real.environment
        return satellite_environment(
            self.scenario.satellite,
            satellite.orbit,
            satellite.payload_power_w,
        )

    def _config(self, satellite: Satellite) -> NodeConfig:
        cadence = self.scenario.cadence
        config = node_config(
            self.scenario.satellite,
            satellite.orbit,
            satellite.state_dir,
            name=satellite.name,
            epoch_tai_s=self._epoch_tai_s,
            housekeeping_interval_ms=round(cadence.housekeeping_interval_s * 1000),
            store_packets=self.scenario.store_packets,
        )
        config = replace(
            config,
            rate_groups=RateGroupsSection(tick_hz=cadence.tick_hz),
            housekeeping=HousekeepingSection(
                interval_ms=round(cadence.housekeeping_interval_s * 1000)
            ),
            downlink=DownlinkSection(
                store_packets=self.scenario.store_packets,
                idle_frame_period_s=cadence.idle_frame_period_s,
            ),
            power=replace(
                config.power,
                policy=self._policy_name(),
                forecast_period_s=cadence.forecast_period_s,
            ),
        )
        if self._has_isl():
            config = replace(
                config,
                isl=IslSection(
                    address=address_of(satellite.index),
                    beacon_period_s=self.scenario.isl.beacon_period_s,
                ),
                orbit=replace(config.orbit, ground_sites=tuple(self.scenario.sites)),
            )
        return config

    def _policy_name(self) -> str:
        """The node.toml name of the run's policy (parametrised baselines are set after boot)."""
        from flight.power.governor import POLICIES

        return self.policy if self.policy in POLICIES else "energy_aware"

    def _eps(self, satellite: Satellite) -> SimulatedEps:
        environment = satellite.environment
        assert environment is not None and self._loop is not None
        return physics_eps(
            environment,
            loop_time=self._loop.time,
            unix_time=self.unix_now,
            payload_power_w=satellite.payload_power_w,
        )

    def _components(self, satellite: Satellite, config: NodeConfig) -> list[Any]:
        if self.network is None:
            return compute_components(config, eps=self._eps(satellite))
        return compute_components(
            config,
            eps=self._eps(satellite),
            isl_links=self.network.links_of(satellite.index),
            contact_plan=self.network.contact_plan,
        )

    async def _live(self, satellite: Satellite, started: "asyncio.Future[None]") -> None:
        """The satellite's node, booted again on its state directory after each reboot."""
        while True:
            config = self._config(satellite)
            components = self._components(satellite, config)
            payload = next(c for _, c in components if isinstance(c, Payload))
            power = next(c for _, c in components if isinstance(c, Power))
            power.use_policy(choice(self.policy).make())
            node = Node(
                config,
                link=satellite.flight_link,
                key=satellite.key,
                components=components,
                sampler=_FixedResources(satellite.state_dir),
            )
            # Before the node starts, so that its boot events are in the log.
            satellite._subscriptions = [
                node.bus.subscribe(
                    topic, name="emulator", depth=EVENT_QUEUE_DEPTH, overflow=Overflow.DROP_NEWEST
                )
                for topic in ("event", "offload")
            ]
            satellite.payload = payload
            try:
                try:
                    async with node:
                        satellite.node = node
                        assert node.boot_count is not None
                        satellite.boots.append(node.boot_count)
                        self._log(satellite, "boot", boot_count=node.boot_count)
                        node.health.set_parameter(
                            node.health.PING_PERIOD_MS,
                            round(self.scenario.cadence.ping_period_s * 1000),
                        )
                        if node.boot_count == 0:  # loaded before launch
                            await payload.add_model(self._model_path, self._model_sha256)
                        if not started.done():
                            started.set_result(None)
                        await node.run()
                except BaseException as error:
                    if not started.done():
                        started.set_exception(error)
                        return
                    raise
                finally:
                    self._drain(satellite)
                    satellite.node = None
            finally:
                payload.close()
                satellite.payload = None
            self._drain(satellite)
            off_s, satellite._reboot_off_s = satellite._reboot_off_s, None
            if off_s is None or self._stopping:
                return
            self._log(satellite, "power_off")
            await asyncio.sleep(off_s)
            if self._stopping:
                return

    # -- workload ----------------------------------------------------------------------------------

    def _write_model(self) -> None:
        model = cloud_mask_unet(
            input_size=TILE_SHAPE[1], in_channels=TILE_SHAPE[0], base_channels=4, depth=2
        ).SerializeToString()
        self._model_path.write_bytes(model)
        self._model_sha256 = hashlib.sha256(model).hexdigest()

    def _jobs_of(self, satellite: Satellite) -> list[ImagingJob]:
        workload = self.scenario.workload
        if workload.imaging_jobs_per_sunlit_hour == 0.0:
            return []
        per_satellite = replace(
            self.scenario.satellite,
            seed=self.scenario.seed * 100_003 + satellite.index,
            duration_s=self.scenario.duration_s,
            epoch_unix_s=self.scenario.epoch_unix_s,
            jobs_per_sunlit_hour=workload.imaging_jobs_per_sunlit_hour,
            tiles_per_job=workload.tiles_per_job,
            deadline_after_s=workload.deadline_after_s,
        )
        return imaging_jobs(per_satellite, satellite.orbit)

    def _energy_per_tile_j(self) -> float:
        s = self.scenario.satellite
        return s.tile_time_s * (s.payload_busy_w - s.payload_idle_w) / s.max_workers

    async def _imaging(self, satellite: Satellite) -> None:
        """The satellite's imaging pipeline: seeded jobs made while sunlit, submitted onboard
        (lost, like the camera's frames, while the node is off)."""
        rng = np.random.default_rng([self.scenario.seed, satellite.index, 7])
        for job in self._jobs_of(satellite):
            await self.run_until(job.arrival_s)
            tiles = rng.standard_normal((job.tiles, *TILE_SHAPE)).astype(np.float32)
            if satellite.payload is None or satellite.node is None:
                self._log(satellite, "imaging_lost", reason="node off")
                continue
            satellite.jobs_submitted += 1
            satellite.payload.submit_tiles(
                self._model_sha256,
                tiles,
                priority=job.priority,
                deadline_tai_s=MissionClock.tai_from_unix(self.scenario.epoch_unix_s)
                + job.deadline_s,
                value=job.value,
                energy_estimate_j=job.tiles * self._energy_per_tile_j(),
            )

    async def _uplink_jobs(self, satellite: Satellite, count: int, pass_number: int) -> None:
        """Jobs the ground sends during a pass: the tiles by file, then payload.SUBMIT; one that
        the pass cannot carry is logged as failed (the ground would try the next pass)."""
        station = satellite.station
        assert station is not None
        rng = np.random.default_rng([self.scenario.seed, satellite.index, pass_number, 11])
        workload = self.scenario.workload
        for number in range(count):
            name = f"uplink_{pass_number}_{number}.npy"
            low, high = workload.tiles_per_job
            count_tiles = int(rng.integers(low, high + 1))
            tiles = rng.standard_normal((count_tiles, *TILE_SHAPE)).astype(np.float32)
            path = satellite.ground_dir / name
            np.save(path, tiles)
            deadline_s = self.now_s() + float(rng.uniform(*workload.deadline_after_s))
            try:
                async with asyncio.timeout(600.0):
                    await station.put_file(path, name)
                    await station.send_command(
                        "payload.SUBMIT",
                        model_sha256=self._model_sha256,
                        input_name=name,
                        priority=int(rng.integers(0, 4)),
                        deadline_tai_s=MissionClock.tai_from_unix(self.scenario.epoch_unix_s)
                        + deadline_s,
                        value=float(rng.choice([1.0, 2.0, 5.0, 10.0])),
                        energy_estimate_j=len(tiles) * self._energy_per_tile_j(),
                    )
            except (TimeoutError, GroundError) as error:  # the pass ended, or the node refused
                satellite.uplinks_failed += 1
                self._log(satellite, "uplink_failed", job=name, reason=str(error)[:120])
                return
            satellite.jobs_submitted += 1
            self._log(satellite, "uplinked", job=name, tiles=len(tiles))

    # -- geometry, faults --------------------------------------------------------------------------

    async def _geometry(self) -> None:
        assert self._loop is not None
        step = 0
        next_sample_s = self.scenario.sample_period_s
        while True:
            step += 1
            # Steps at exact multiples of step_s: no drift from summing sleeps.
            await self.run_until(step * self.scenario.step_s)
            self._step()
            if self.now_s() >= next_sample_s - 1e-9:
                self._sample()
                next_sample_s += self.scenario.sample_period_s
            self._report_progress()

    def _report_progress(self) -> None:
        if self._progress is None:
            return
        wall_s = time.perf_counter() - self._wall_start_s
        if wall_s - self._last_progress_s >= 1.0:
            self._last_progress_s = wall_s
            self._progress(self.now_s(), self.scenario.duration_s, wall_s)

    def _step(self) -> None:
        for satellite in self.satellites:
            self._drain(satellite)
        t_unix = self.unix_now()
        positions = positions_of(list(self.scenario.orbits), t_unix)
        if self.network is not None:
            for change in self.network.update(positions, self.now_s()):
                self._log(
                    self.satellites[change.a],
                    "isl_up" if change.up else "isl_down",
                    t_s=change.t_s,
                    peer=change.b,
                    reason=change.reason,
                )
        visible = contact_mask(positions, t_unix, list(self.scenario.sites))
        names = [site.name for site in self.scenario.sites]
        for satellite, row, up in zip(self.satellites, visible, visible.any(axis=1), strict=True):
            if up == satellite.in_contact:
                continue
            up = bool(up)
            satellite.in_contact = up
            now = self.now_s()
            if up:
                sites = tuple(name for name, seen in zip(names, row, strict=True) if seen)
                satellite.passes.append(Pass(satellite.index, now, sites))
                satellite.packets_at_start = self._packets(satellite)
                self._log(satellite, "contact_start", sites=list(sites))
                self._plan_uplinks(satellite)
            else:
                self._end_pass(satellite, now)
            if satellite.real is None:  # a real node's line is its umbilical: never cut
                satellite.flight_link.set_up(up)

    def _plan_uplinks(self, satellite: Satellite) -> None:
        mean = self.scenario.workload.uplinked_jobs_per_pass
        if mean <= 0.0 or satellite.station is None or self._stopping:
            return
        if satellite.real is not None:  # a real node holds no model to run uplinked jobs on
            return
        number = len(satellite.passes)
        rng = random.Random(f"uplinks:{self.scenario.seed}:{satellite.index}:{number}")
        count = _poisson(rng, mean)
        if count:
            self._spawn(self._uplink_jobs(satellite, count, number), f"{satellite.name} uplink")

    def _packets(self, satellite: Satellite) -> int:
        return 0 if satellite.station is None else satellite.station.counters.packets_received

    def _end_pass(self, satellite: Satellite, now: float) -> None:
        current = satellite.passes[-1]
        packets = self._packets(satellite) - satellite.packets_at_start
        satellite.passes[-1] = Pass(current.sat, current.start_s, current.sites, now, packets)
        self._log(satellite, "contact_end", sites=list(current.sites), tm_packets=packets)

    def _close_passes(self) -> None:
        for satellite in self.satellites:
            if satellite.passes and satellite.passes[-1].end_s is None:
                self._end_pass(satellite, self.now_s())

    async def _fault(self, fault: Fault) -> None:
        await self.run_until(fault.at_s)
        if isinstance(fault, LinkDamage):
            await self._damage(fault)
            return
        if isinstance(fault, LinkQuality):
            self._link_quality(fault)
            return
        satellite = self.satellites[fault.sat]
        if isinstance(fault, Reboot):
            self._log(satellite, "fault", fault="reboot", off_s=fault.off_s)
            if satellite.real is not None:
                await satellite.real.reboot(fault.off_s)
            elif satellite.node is not None:  # already off: a reboot of a dead node does nothing
                satellite._reboot_off_s = fault.off_s
                satellite.node.request_stop()
        elif isinstance(fault, BatteryFade):
            assert satellite.environment is not None
            satellite.environment.advance(self.unix_now())  # the fade applies from now on
            satellite.environment.power.battery.fade(fault.fraction)
            self._log(satellite, "fault", fault="battery_fade", fraction=fault.fraction)
        elif isinstance(fault, CoreCrash):
            # The C core runs in the flight process: a crash in it (a segfault in a cffi call)
            # takes the process down, and systemd starts it again (deploy/penumbra.service).
            busy = 0 if satellite.payload is None else satellite.payload.busy_workers
            self._log(satellite, "fault", fault="core_crash", busy_workers=busy)
            if satellite.real is not None:
                await satellite.real.reboot(SYSTEMD_RESTART_S)
            elif satellite.node is not None:
                satellite._reboot_off_s = SYSTEMD_RESTART_S
                satellite.node.request_stop()

    def _link_quality(self, fault: LinkQuality) -> None:
        fields = {"rate_bps": fault.rate_bps, "bit_error_rate": fault.bit_error_rate}
        changed = {key: value for key, value in fields.items() if value is not None}
        between = None if fault.between is None else list(fault.between)
        self._log_global("fault", fault="link_quality", between=between, **changed)
        if self.network is None:
            return
        if fault.rate_bps is not None:
            self.network.set_rate(fault.rate_bps, fault.between)
        if fault.bit_error_rate is not None:
            self.network.set_bit_error_rate(fault.bit_error_rate, fault.between)

    async def _damage(self, fault: LinkDamage) -> None:
        if self.network is None:
            return
        rng = random.Random(f"damage:{self.scenario.seed}:{fault.at_s}")
        pairs = self.network.damage(fault.fraction, rng, t_s=self.now_s())
        self._log_global("fault", fault="link_damage", fraction=fault.fraction, links=len(pairs))
        if fault.duration_s is None:
            return
        await self.run_until(fault.at_s + fault.duration_s)
        self.network.repair(pairs, t_s=self.now_s())
        self._log_global("fault_cleared", fault="link_damage", links=len(pairs))

    # -- samples and results ---------------------------------------------------------------------

    def _sample(self) -> None:
        t_unix = self.unix_now()
        now = self.now_s()
        positions = positions_of(list(self.scenario.orbits), t_unix)
        lit = illumination(positions, sun_position_m(np.array([t_unix]))[0])
        for satellite, light in zip(self.satellites, np.atleast_1d(lit), strict=True):
            environment = satellite.environment
            assert environment is not None
            # As of the physics' latest step (the node's last EPS read, at most a tick ago):
            # advancing every satellite's physics here too would double its cost.
            state = environment.state
            queued, done, missed = self._job_counts(satellite)
            sample = Sample(
                t_s=round(now, 6),
                sat=satellite.index,
                soc=state.soc,
                illumination=float(light),
                contact=satellite.in_contact,
                payload_power_w=satellite.payload_power_w(),
                jobs_queued=queued,
                jobs_done=done,
                jobs_missed=missed,
                isl_links_up=0 if self.network is None else self.network.links_up(satellite.index),
                isl_octets_sent=(
                    0 if self.network is None else self.network.octets_sent(satellite.index)
                ),
            )
            self.samples.append(sample)
            self._last_sample[satellite.index] = sample

    def _sample_all(self) -> None:
        """The end of the run: every satellite's physics to now, and a last sample."""
        for satellite in self.satellites:
            assert satellite.environment is not None
            satellite.environment.advance(max(self.unix_now(), satellite.environment.time_unix_s))
        if not self.samples or self.samples[-1].t_s < round(self.now_s(), 6):
            self._sample()

    def _job_counts(self, satellite: Satellite) -> tuple[int, int, int]:
        """(queued, done, missed) of the jobs made or uplinked at this satellite, wherever they
        ran: an offloaded job counts here by how its offload ended, and a job run for another
        satellite counts there, so that every job is counted once in the constellation."""
        if satellite.real is not None:
            return satellite.real.job_counts()
        payload = satellite.payload
        if payload is None:  # off (a reboot): as it was
            last = self._last_sample.get(satellite.index)
            return (
                (0, 0, 0) if last is None else (last.jobs_queued, last.jobs_done, last.jobs_missed)
            )
        now_tai = MissionClock.tai_from_unix(self.unix_now())
        queued = done = missed = 0
        value = 0.0
        for job in payload.jobs():
            if job.input_name.startswith(JOB_TAG_PREFIX):
                continue  # run for another satellite: counted at its origin
            state = job.state
            if state is JobState.OFFLOADED:
                flow = self.flows.get(f"{address_of(satellite.index)}:{job.job_id}")
                state = _OFFLOAD_OUTCOME.get(flow.status if flow else "open", JobState.QUEUED)
            if state is JobState.DONE:
                done += 1
                value += job.value
            elif state in (JobState.EXPIRED, JobState.FAILED) or job.deadline_tai_s <= now_tai:
                missed += 1  # not delivered by its deadline, or never (a job that failed)
            elif not state.final:
                queued += 1
        satellite.value_done = value
        return queued, done, missed

    def result(self) -> RunResult:
        """What the run produced (after leaving the context)."""
        assert self._wall_s is not None, "result() is for after the emulator has stopped"
        last = self._last_sample
        flows = tuple(sorted(self.flows.values(), key=lambda f: (f.bound_s, f.job)))
        summaries = []
        for satellite in self.satellites:
            environment = satellite.environment
            assert environment is not None
            end = last.get(satellite.index)
            summaries.append(
                SatelliteSummary(
                    sat=satellite.index,
                    name=satellite.name,
                    boots=len(satellite.boots),
                    jobs_submitted=satellite.jobs_submitted,
                    jobs_done=0 if end is None else end.jobs_done,
                    jobs_missed=0 if end is None else end.jobs_missed,
                    jobs_offloaded=sum(1 for f in flows if f.origin == satellite.index),
                    jobs_run_for_others=sum(
                        1
                        for f in flows
                        if f.executor == satellite.index and f.status == "completed"
                    ),
                    results_held=sum(1 for f in flows if f.holder == satellite.index),
                    min_soc=environment.min_soc,
                    time_below_floor_s=environment.time_below_s(self.scenario.satellite.floor_soc),
                    passes=len(satellite.passes),
                    tm_packets=sum(p.tm_packets or 0 for p in satellite.passes),
                    isl_octets_sent=0 if end is None else end.isl_octets_sent,
                    events_dropped=satellite.events_dropped,
                    value_done=satellite.value_done,
                )
            )
        return RunResult(
            scenario=self.scenario.name,
            policy=self.policy,
            satellites=len(self.satellites),
            duration_s=self.scenario.duration_s,
            wall_s=self._wall_s,
            floor_soc=self.scenario.satellite.floor_soc,
            samples=tuple(self.samples),
            passes=tuple(passes_of(self)),
            offloads=flows,
            summaries=tuple(summaries),
            run_dir=self.run_dir,
        )

    # -- the event log -----------------------------------------------------------------------------

    def _log(
        self, satellite: Satellite, kind: str, *, t_s: float | None = None, **fields: Any
    ) -> None:
        t = self.now_s() if t_s is None else t_s
        entry = {"t": round(t, 6), "sat": satellite.index, "kind": kind, **fields}
        self._entries.append((entry["t"], satellite.index, satellite.next_sequence(), entry))

    def _log_global(self, kind: str, **fields: Any) -> None:
        """An entry about the whole constellation (sat -1)."""
        t = round(self.now_s(), 6)
        entry = {"t": t, "sat": -1, "kind": kind, **fields}
        self._entries.append((t, -1, len(self._entries), entry))

    def _drain(self, satellite: Satellite) -> None:
        for subscription in satellite._subscriptions:
            while subscription.pending or subscription.closed:
                try:
                    record = subscription.get_nowait()
                except (asyncio.QueueEmpty, SubscriptionClosed):
                    break
                if isinstance(record, EventRecord):
                    self._log(
                        satellite,
                        "event",
                        t_s=record.time_s - self._start_loop_s,
                        component=record.component,
                        name=record.name,
                        severity=record.severity.name,
                        text=record.text,
                    )
                else:
                    self._offload(satellite, record)
        dropped = sum(s.dropped for s in satellite._subscriptions)
        if dropped > satellite.events_dropped:
            self._log(satellite, "events_dropped", count=dropped - satellite.events_dropped)
            satellite.events_dropped = dropped

    def _offload(self, satellite: Satellite, record: Any) -> None:
        """An offload record (flight.isl.component.OffloadRecord) into the flows and the log."""
        t = record.time_s - self._start_loop_s
        sat_of = {address_of(s.index): s.index for s in self.satellites}
        self._log(
            satellite,
            "offload",
            t_s=t,
            record=record.kind,
            job=record.job,
            origin=sat_of.get(record.origin),
            executor=sat_of.get(record.executor),
            holder=sat_of.get(record.holder) if record.holder is not None else None,
            status=record.status,
        )
        flow = self.flows.get(record.job)
        if record.kind == "bound":
            self.flows[record.job] = OffloadFlow(
                job=record.job,
                origin=sat_of.get(record.origin, -1),
                executor=sat_of.get(record.executor, -1),
                bound_s=round(t, 6),
            )
        elif flow is not None and record.kind == "result_stored":
            self.flows[record.job] = replace(flow, holder=satellite.index)
        elif flow is not None and record.kind == "closed":
            self.flows[record.job] = replace(flow, status=record.status, closed_s=round(t, 6))

    def _write_log(self) -> None:
        # Sorted by (time, satellite, order within the satellite): the order in which the loop
        # served different satellites at one instant does not reach the file.
        self._entries.sort(key=lambda item: item[:3])
        self.events = [entry for *_, entry in self._entries]
        path = self.run_dir / "events.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for entry in self.events:
                out.write(json.dumps(entry, allow_nan=True) + "\n")


_OFFLOAD_OUTCOME = {
    "open": JobState.QUEUED,  # bound, not closed yet: still to be done
    "completed": JobState.DONE,
    "expired": JobState.EXPIRED,
    "failed": JobState.FAILED,
    "released": JobState.FAILED,  # given back before it started (the ISL never does yet)
}
"""What an offloaded job's flow status means for the job, counted at its origin."""


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method: means here are a few per pass)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def passes_of(emulator: Emulator) -> list[Pass]:
    """Every pass of every satellite, in (start, satellite) order."""
    return sorted(
        (p for satellite in emulator.satellites for p in satellite.passes),
        key=lambda p: (p.start_s, p.sat),
    )
