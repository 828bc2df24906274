"""The constellation emulator's core: N real flight nodes and their ground stations on one
virtual-time loop, with ground contacts from geometry, physics per satellite, faults and a
deterministic event log.

    scenario = EmulatorScenario.walker(4, 2, 1, duration_s=7_200.0)
    async with Emulator(scenario, Path("out/run")) as emulator:   # on clock.run(..., virtual=True)
        await emulator.run()                                      # to scenario.duration_s
    # out/run/events.jsonl, out/run/satNN/{state,ground}

Everything onboard is the flight code unchanged (`compute_components`, `Node`); each node's EPS
reads its own `hil.env.SatelliteEnvironment`, as `hil.sim.power` does for one satellite. Each
satellite's ground link is a `MemoryLink` pair that the geometry task raises while the satellite
is above a site's minimum elevation and drops otherwise, so the node stores its telemetry out of
contact and plays it back when a pass begins. Each link has its own `GroundStation` (its own key),
archiving under the run directory.
"""

import asyncio
import contextlib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from flight.link.memory import MemoryLink
from flight.orbit import GroundSite, Orbit, positions_of
from flight.payload import Payload
from flight.power import SimulatedEps
from flight.runtime.bus import Overflow, Subscription, SubscriptionClosed
from flight.runtime.clock import MissionClock
from flight.runtime.config import (
    NodeConfig,
)
from flight.runtime.main import compute_components
from flight.runtime.node import Node
from flight.runtime.resources import ResourceSample, ResourceSampler
from flight.runtime.services import EventRecord
from ground.archive import Archive
from ground.dictionary import Dictionary
from ground.station import GroundStation
from hil.env import SatelliteEnvironment
from hil.sim.constellation import walker_delta
from hil.sim.geometry import contact_mask
from hil.sim.power import (
    SCENARIO_EPOCH_UNIX_S,
    PowerScenario,
    node_config,
    physics_eps,
    satellite_environment,
)

EVENT_QUEUE_DEPTH = 4_096
"""Onboard events a node may raise between two geometry steps before the log counts drops."""

DEFAULT_SITES = (
    GroundSite("matera", 40.65, 16.70),
    GroundSite("svalbard", 78.23, 15.39),
)


@dataclass(frozen=True, slots=True)
class Reboot:
    """At `at_s` (seconds after the start) satellite `sat` loses power for `off_s` and boots
    again from its persisted state."""

    at_s: float
    sat: int
    off_s: float = 1.0


@dataclass(frozen=True, slots=True)
class BatteryFade:
    """At `at_s` satellite `sat`'s battery loses `fraction` of its capacity (0 <= fraction < 1)."""

    at_s: float
    sat: int
    fraction: float


Fault = Reboot | BatteryFade


@dataclass(frozen=True, slots=True)
class EmulatorScenario:
    """What to run. `satellite` gives every satellite's power system and payload (its orbit,
    beta and duration fields are not used: orbits come from `orbits`)."""

    orbits: tuple[Orbit, ...]
    sites: tuple[GroundSite, ...] = DEFAULT_SITES
    duration_s: float = 7_200.0
    epoch_unix_s: float = SCENARIO_EPOCH_UNIX_S
    seed: int = 1
    step_s: float = 10.0
    faults: tuple[Fault, ...] = ()
    satellite: PowerScenario = field(default_factory=PowerScenario)
    housekeeping_interval_ms: int = 10_000
    store_packets: int = 2_000

    def __post_init__(self) -> None:
        if not self.orbits:
            raise ValueError("a scenario needs at least one satellite (orbits is empty)")
        if not (math.isfinite(self.step_s) and self.step_s > 0.0):
            raise ValueError(f"step_s must be a positive number of seconds, not {self.step_s}")
        if not (math.isfinite(self.duration_s) and self.duration_s >= 0.0):
            raise ValueError(f"duration_s must be >= 0 seconds, not {self.duration_s}")
        for fault in self.faults:
            if not 0 <= fault.sat < len(self.orbits):
                raise ValueError(
                    f"fault {fault}: satellite {fault.sat} is not one of 0..{len(self.orbits) - 1}"
                )
            if not (math.isfinite(fault.at_s) and fault.at_s >= 0.0):
                raise ValueError(f"fault {fault}: at_s must be >= 0 seconds")
            if isinstance(fault, BatteryFade) and not 0.0 <= fault.fraction < 1.0:
                raise ValueError(f"fault {fault}: fraction must be in 0 <= fraction < 1")
            if isinstance(fault, Reboot) and not (math.isfinite(fault.off_s) and fault.off_s >= 0):
                raise ValueError(f"fault {fault}: off_s must be >= 0 seconds")

    @classmethod
    def walker(
        cls,
        total: int,
        planes: int,
        phasing: int,
        *,
        altitude_m: float = 550e3,
        inclination_deg: float = 53.0,
        epoch_unix_s: float = SCENARIO_EPOCH_UNIX_S,
        **options: Any,
    ) -> "EmulatorScenario":
        """A Walker-delta constellation (`hil.sim.constellation.walker_delta`)."""
        orbits = walker_delta(total, planes, phasing, altitude_m, inclination_deg, epoch_unix_s)
        return cls(orbits=tuple(orbits), epoch_unix_s=epoch_unix_s, **options)


@dataclass(frozen=True, slots=True)
class Pass:
    """One contact of one satellite: when (seconds after the start), over which sites, and how
    many TM packets its station received meanwhile (None while the pass goes on)."""

    sat: int
    start_s: float
    sites: tuple[str, ...]
    end_s: float | None = None
    tm_packets: int | None = None


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

    def __init__(self, index: int, orbit: Orbit, run_dir: Path, seed: int) -> None:
        self.index = index
        self.name = f"sat{index:02d}"
        self.orbit = orbit
        self.dir = run_dir / self.name
        self.state_dir = self.dir / "state"
        self.ground_dir = self.dir / "ground"
        # Simulation keys, reproducible from the seed; a real mission's keys are never derived.
        self.key = hashlib.sha256(f"penumbra-emulator:{seed}:{index}".encode()).digest()
        self.flight_link, self.ground_link = MemoryLink.pair(name=self.name)
        self.environment: SatelliteEnvironment | None = None
        self.node: Node | None = None
        self.payload: Payload | None = None
        self.station: GroundStation | None = None
        self.boots: list[int] = []  # boot count of every start, in order
        self.in_contact = False
        self.passes: list[Pass] = []
        self.packets_at_start = 0  # the station's count when the current pass began
        self.events_dropped = 0
        self._subscription: Subscription | None = None
        self._reboot_off_s: float | None = None
        self._sequence = 0

    def payload_power_w(self) -> float:
        """What the node's payload draws now (nothing before the node has booted)."""
        return 0.0 if self.payload is None else self.payload.power_w()

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence


class Emulator:
    """Runs `scenario` in `run_dir` on the running (virtual-time) loop; an async context manager.

    Entering starts every node and station and the geometry and fault tasks; `run()` lets
    virtual time pass to the scenario's end; leaving stops the nodes (each flushes what it can),
    the stations and the links, and writes `<run_dir>/events.jsonl`.
    """

    def __init__(self, scenario: EmulatorScenario, run_dir: Path) -> None:
        self.scenario = scenario
        self.run_dir = Path(run_dir)
        self.satellites = [
            Satellite(index, orbit, self.run_dir, scenario.seed)
            for index, orbit in enumerate(scenario.orbits)
        ]
        self.events: list[dict[str, Any]] = []  # in log order once the emulator has stopped
        self._entries: list[tuple[float, int, int, dict[str, Any]]] = []
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lives: list[asyncio.Task[None]] = []
        self._stopping = False
        self._start_loop_s = 0.0
        self._epoch_tai_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

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
        self._start_loop_s = self._loop.time()
        # A node's mission clock reads its epoch at loop time 0: shift it so that mission time
        # is the scenario's epoch at the emulator's start, wherever the loop's clock stands.
        self._epoch_tai_s = MissionClock.tai_from_unix(self.scenario.epoch_unix_s) - (
            self._start_loop_s
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for satellite in self.satellites:
            satellite.state_dir.mkdir(parents=True, exist_ok=True)
            satellite.ground_dir.mkdir(parents=True, exist_ok=True)
            satellite.environment = self._environment(satellite)
            satellite.flight_link.set_up(False)  # the first geometry step says who is in contact
            await self._stack.enter_async_context(satellite.flight_link)
            await self._stack.enter_async_context(satellite.ground_link)
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._stack.push_async_exit(self._group.__aexit__)
        for satellite in self.satellites:
            started: asyncio.Future[None] = self._loop.create_future()
            self._lives.append(
                self._group.create_task(self._live(satellite, started), name=satellite.name)
            )
            await started
        for satellite in self.satellites:
            assert satellite.node is not None
            dictionary = Dictionary.from_document(
                satellite.node.dictionary(), source=f"{satellite.name} node"
            )
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
        self._tasks.append(self._group.create_task(self._geometry(), name="geometry"))
        for number, fault in enumerate(self.scenario.faults):
            self._tasks.append(self._group.create_task(self._fault(fault), name=f"fault{number}"))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for satellite in self.satellites:
            if satellite.node is not None:
                satellite.node.request_stop()
        try:
            await self._stack.aclose()
        finally:
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
        return satellite_environment(
            self.scenario.satellite,
            satellite.orbit,
            satellite.payload_power_w,
        )

    def _config(self, satellite: Satellite) -> NodeConfig:
        return node_config(
            self.scenario.satellite,
            satellite.orbit,
            satellite.state_dir,
            name=satellite.name,
            epoch_tai_s=self._epoch_tai_s,
            housekeeping_interval_ms=self.scenario.housekeeping_interval_ms,
            store_packets=self.scenario.store_packets,
        )

    def _eps(self, satellite: Satellite) -> SimulatedEps:
        environment = satellite.environment
        assert environment is not None and self._loop is not None
        return physics_eps(
            environment,
            loop_time=self._loop.time,
            unix_time=self.unix_now,
            payload_power_w=satellite.payload_power_w,
        )

    async def _live(self, satellite: Satellite, started: "asyncio.Future[None]") -> None:
        """The satellite's node, booted again on its state directory after each reboot."""
        while True:
            config = self._config(satellite)
            components = compute_components(config, eps=self._eps(satellite))
            payload = next(c for _, c in components if isinstance(c, Payload))
            node = Node(
                config,
                link=satellite.flight_link,
                key=satellite.key,
                components=components,
                sampler=_FixedResources(satellite.state_dir),
            )
            # Before the node starts, so that its boot events are in the log.
            subscription = node.bus.subscribe(
                "event",
                name="emulator",
                depth=EVENT_QUEUE_DEPTH,
                overflow=Overflow.DROP_NEWEST,
            )
            satellite._subscription = subscription
            satellite.payload = payload
            try:
                try:
                    async with node:
                        satellite.node = node
                        assert node.boot_count is not None
                        satellite.boots.append(node.boot_count)
                        self._log(satellite, "boot", boot_count=node.boot_count)
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

    # -- geometry, faults --------------------------------------------------------------------------

    async def _geometry(self) -> None:
        assert self._loop is not None
        step = 0
        while True:
            step += 1
            # Steps at exact multiples of step_s: no drift from summing sleeps.
            await asyncio.sleep(max(step * self.scenario.step_s - self.now_s(), 0.0))
            self._step()

    def _step(self) -> None:
        for satellite in self.satellites:
            self._drain(satellite)
        t_unix = self.unix_now()
        positions = positions_of(list(self.scenario.orbits), t_unix)
        visible = contact_mask(positions, t_unix, list(self.scenario.sites))
        names = [site.name for site in self.scenario.sites]
        for satellite, row in zip(self.satellites, visible, strict=True):
            up = bool(row.any())
            if up == satellite.in_contact:
                continue
            satellite.in_contact = up
            now = self.now_s()
            if up:
                sites = tuple(name for name, seen in zip(names, row, strict=True) if seen)
                satellite.passes.append(Pass(satellite.index, now, sites))
                satellite.packets_at_start = self._packets(satellite)
                self._log(satellite, "contact_start", sites=list(sites))
            else:
                self._end_pass(satellite, now)
            satellite.flight_link.set_up(up)

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
        await asyncio.sleep(max(fault.at_s - self.now_s(), 0.0))
        satellite = self.satellites[fault.sat]
        if isinstance(fault, Reboot):
            self._log(satellite, "fault", fault="reboot", off_s=fault.off_s)
            if satellite.node is not None:  # already off: a reboot of a dead node does nothing
                satellite._reboot_off_s = fault.off_s
                satellite.node.request_stop()
        else:
            assert satellite.environment is not None
            satellite.environment.advance(self.unix_now())  # the fade applies from now on
            satellite.environment.power.battery.fade(fault.fraction)
            self._log(satellite, "fault", fault="battery_fade", fraction=fault.fraction)

    # -- the event log -----------------------------------------------------------------------------

    def _log(
        self, satellite: Satellite, kind: str, *, t_s: float | None = None, **fields: Any
    ) -> None:
        t = self.now_s() if t_s is None else t_s
        entry = {"t": round(t, 6), "sat": satellite.index, "kind": kind, **fields}
        self._entries.append((entry["t"], satellite.index, satellite.next_sequence(), entry))

    def _drain(self, satellite: Satellite) -> None:
        subscription = satellite._subscription
        if subscription is None:
            return
        while True:
            try:
                record: EventRecord = subscription.get_nowait()
            except (asyncio.QueueEmpty, SubscriptionClosed):
                break
            self._log(
                satellite,
                "event",
                t_s=record.time_s - self._start_loop_s,
                component=record.component,
                name=record.name,
                severity=record.severity.name,
                text=record.text,
            )
        if subscription.dropped > satellite.events_dropped:
            self._log(
                satellite, "events_dropped", count=subscription.dropped - satellite.events_dropped
            )
            satellite.events_dropped = subscription.dropped

    def _write_log(self) -> None:
        # Sorted by (time, satellite, order within the satellite): the order in which the loop
        # served different satellites at one instant does not reach the file.
        self._entries.sort(key=lambda item: item[:3])
        self.events = [entry for *_, entry in self._entries]
        path = self.run_dir / "events.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for entry in self.events:
                out.write(json.dumps(entry, allow_nan=True) + "\n")


def passes_of(emulator: Emulator) -> list[Pass]:
    """Every pass of every satellite, in (start, satellite) order."""
    return sorted(
        (p for satellite in emulator.satellites for p in satellite.passes),
        key=lambda p: (p.start_s, p.sat),
    )
