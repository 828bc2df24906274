"""A node: its components, services, rate groups, bus and link, run in one TaskGroup it owns.

    async with Node(config) as node:      # opens the store and the link, boots, starts the tasks
        await node.run()                  # until node.request_stop()
                                          # leaving: tasks stopped, TM flushed, link closed

Component ids: 1 mode, 2 params, 3 health, 4 time, 5 uplink, 6 downlink, 7 bus, 8 rate_groups,
9 files;
other components (payload, power, ...) join with ids from 16 (`components=`).
"""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from types import TracebackType

from flight.link import Link, LinkConfigError, Role, open_link
from flight.protocol import icd
from flight.protocol.sdls import KeyFileError, load_key
from flight.runtime.bus import SoftwareBus
from flight.runtime.clock import MissionClock, VirtualTimeLoop
from flight.runtime.component import Component, Mode
from flight.runtime.components.health import Health
from flight.runtime.components.mode import ModeManager
from flight.runtime.components.monitors import BusMonitor, RateGroupMonitor
from flight.runtime.components.params import Params
from flight.runtime.components.time import MissionTime
from flight.runtime.config import NodeConfig
from flight.runtime.dictionary import build as build_dictionary
from flight.runtime.downlink import Downlink
from flight.runtime.executive import Executive
from flight.runtime.files import FileTransfer
from flight.runtime.rategroups import RateGroupDriver
from flight.runtime.resources import ResourceSampler
from flight.runtime.services import PusServices, TmSequence
from flight.runtime.store import Counter, Store, StoreError
from flight.runtime.uplink import Uplink
from flight.runtime.watchdog import NotifyConfigError, SystemdNotifier

FIRST_OTHER_COMPONENT_ID = 16
SHUTDOWN_FLUSH_S = 2.0  # at most this long sending stored TM when stopping with the link up
TM_SEQUENCE_RESERVE = 256  # TM counts handed out per store write
_log = logging.getLogger("flight.runtime.node")


class Node:
    """One node. `link` and `key` may be given instead of the configuration's (tests, the
    emulator, the demo): a link given is the caller's to enter and close; one opened from the
    configuration is the node's. `components` adds (id, component) pairs with ids >= 16."""

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        link: Link | None = None,
        key: bytes | None = None,
        components: Sequence[tuple[int, Component]] = (),
        notifier: SystemdNotifier | None = None,
        sampler: ResourceSampler | None = None,
    ) -> None:
        self.config = config = config or NodeConfig()
        self._given_link = link
        self._given_key = key
        self._notifier = notifier
        self.link: Link | None = None
        self.bus = SoftwareBus()
        self.rate_groups = RateGroupDriver(
            tick_hz=config.rate_groups.tick_hz, jitter_samples=config.rate_groups.jitter_samples
        )
        self.mode = ModeManager()
        self.params = Params()
        self.health = Health(sampler=sampler, notifier=notifier)
        self.time = MissionTime()
        self.uplink = Uplink(link=None, spacecraft_id=config.node.spacecraft_id)
        self.downlink = Downlink(
            link=None,
            spacecraft_id=config.node.spacecraft_id,
            capacity_packets=config.downlink.store_packets,
            idle_frame_period_s=config.downlink.idle_frame_period_s,
            ocf=self.uplink.clcw_word,
        )
        self.files = FileTransfer(
            state_dir=config.node.state_dir, entity_id=config.node.spacecraft_id
        )
        self.uplink.routes[icd.Apid.CFDP] = self.files.receive_pdu
        self.downlink.attach_files(self.files)
        self.bus_monitor = BusMonitor(self.bus)
        self.rate_group_monitor = RateGroupMonitor(self.rate_groups)
        pairs: list[tuple[int, Component]] = [
            (1, self.mode),
            (2, self.params),
            (3, self.health),
            (4, self.time),
            (5, self.uplink),
            (6, self.downlink),
            (7, self.bus_monitor),
            (8, self.rate_group_monitor),
            (9, self.files),
        ]
        for component_id, component in components:
            if not FIRST_OTHER_COMPONENT_ID <= component_id <= 255:
                raise ValueError(
                    f"component {component.name}: id {component_id} outside "
                    f"{FIRST_OTHER_COMPONENT_ID}..255 (1..15 are the runtime's)"
                )
            pairs.append((component_id, component))
            receive_sensors = getattr(component, "receive_sensors", None)
            if receive_sensors is not None:  # the power component: a bench may feed its EPS
                self.uplink.routes[icd.Apid.SIMULATED_SENSORS] = receive_sensors
        self.services = PusServices(
            apid=config.node.apid,
            components=pairs,
            sink=self.downlink,
            mode=lambda: self.mode.current,
            housekeeping_interval_ms=config.housekeeping.interval_ms,
            publish=self.bus.publish,
        )
        self.executive = Executive(pairs, self.services)
        self.uplink.services = self.services
        self.uplink.on_clcw_changed = self.downlink.clcw_changed
        self.health.bind(lambda: self.executive.components, self.executive.restart, self.mode)
        self.executive.on_task_error = self.health.task_failed
        self.rate_groups.add("10Hz", "services.housekeeping", self.services.housekeeping_tick)
        for component in self.executive.components:
            for group, name, member in component.rate_group_members():
                self.rate_groups.add(group, name, member)
        self.clock: MissionClock | None = None
        self.store: Store | None = None
        self.boot_count: int | None = None
        self.boot_problems: list[str] = []
        self._stack = contextlib.AsyncExitStack()
        self._group: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()
        for component in self.executive.components:
            component.bind_node(self)

    @property
    def components(self) -> list[Component]:
        return self.executive.components

    def dictionary(self) -> dict:
        """The JSON dictionary of this node (what `penumbra dict export` writes)."""
        return build_dictionary(
            self.components,
            spacecraft_id=self.config.node.spacecraft_id,
            apid=self.config.node.apid,
        )

    # -- start and stop ----------------------------------------------------------------------------

    async def __aenter__(self) -> "Node":
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualTimeLoop):
            # Virtual time is deterministic: the epoch comes from the configuration.
            self.clock = MissionClock(config.time.epoch_tai_s, 0.0)
        else:
            self.clock = MissionClock.anchored_now(loop)
        self.time.clock = self.clock
        self.services.time = self.clock.cuc
        store = self._open_store()
        self.boot_count = self._take_boot_count(store)
        tm_counter = self._counter(store, "tm_sequence", TM_SEQUENCE_RESERVE)
        self.services.next_sequence = TmSequence(tm_counter).take
        if self.health.sampler is None:
            self.health.sampler = ResourceSampler(config.node.state_dir)
        if self._notifier is None:
            try:
                self._notifier = SystemdNotifier.from_environment()
            except NotifyConfigError as error:
                self.boot_problems.append(f"systemd watchdog unusable: {error}")
                self._notifier = None
        self.health.notifier = self._notifier
        self.params.bind(store, lambda: self.executive.components)
        self._problem(self.params.load())
        key = self._key()
        link = await self._open_link()
        if link is not None and key is None:
            raise config.error(
                "[link] key_file", "missing: a node with a link needs the key of its SA"
            )
        self.link = self.uplink.link = self.downlink.link = link
        self._problem(self.uplink.configure(key=key, spi=config.link.spi, store=store))
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._stack.push_async_exit(self._stop_tasks)
        self.executive.start(self._group)
        self._rate_group_task = self._group.create_task(self.rate_groups.run(), name="rate_groups")
        self.mode.boot(self.boot_count, self.boot_problems)
        if self._notifier is not None:
            self._notifier.ready()
            self._notifier.status(f"mode {self.mode.current.name}")
        _log.info(
            "node %s boot %d in %s", config.node.name, self.boot_count, self.mode.current.name
        )

    def _problem(self, problem: str | None) -> None:
        if problem is not None:
            self.boot_problems.append(problem)

    def _open_store(self) -> Store:
        try:
            self.store = Store(self.config.node.state_dir)
        except StoreError as error:
            raise self.config.error("[node] state_dir", str(error)) from None
        return self.store

    def _counter(self, store: Store, name: str, reserve: int) -> Counter:
        try:
            return Counter(store, name, reserve=reserve)
        except StoreError as error:
            # The count is lost: start again, and say so (SAFE): counts may repeat once.
            self.boot_problems.append(f"{error}; the {name} count restarts")
            try:
                store.save(name, {"reserved_until": 0})
            except StoreError as again:
                raise self.config.error("[node] state_dir", str(again)) from None
            return Counter(store, name, reserve=reserve)

    def _take_boot_count(self, store: Store) -> int:
        counter = self._counter(store, "boot", 1)
        try:
            return counter.next()
        except StoreError as error:
            raise self.config.error("[node] state_dir", str(error)) from None

    def _key(self) -> bytes | None:
        if self._given_key is not None:
            return self._given_key
        key_file = self.config.link.key_file
        if key_file is None:
            return None
        try:
            return load_key(key_file)
        except KeyFileError as error:
            raise self.config.error("[link] key_file", str(error)) from None

    async def _open_link(self) -> Link | None:
        if self._given_link is not None:
            return self._given_link
        url = self.config.link.url
        if url is None:
            return None
        try:
            link = open_link(url, role=Role.FLIGHT)
        except LinkConfigError as error:
            raise self.config.error("[link] url", str(error)) from None
        return await self._stack.enter_async_context(link)

    async def _stop_tasks(self, *exc_info: object) -> None:
        self.executive.stop()
        self._rate_group_task.cancel()
        assert self._group is not None
        await self._group.__aexit__(None, None, None)
        await self.downlink.flush(SHUTDOWN_FLUSH_S)
        if self._notifier is not None:
            self._notifier.stopping()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()
        _log.info("node %s stopped", self.config.node.name)

    def request_stop(self) -> None:
        """Make `run()` return (SIGTERM, SIGINT, a test)."""
        self._stop.set()

    async def run(self) -> None:
        """Serve until `request_stop()`."""
        await self._stop.wait()

    async def wait_for_mode(self, mode: Mode) -> None:
        """Return once the node is in `mode` (tests)."""
        changed = asyncio.Event()

        def listener(previous: Mode, current: Mode) -> None:
            changed.set()

        self.mode.listeners.append(listener)
        try:
            while self.mode.current is not mode:
                changed.clear()
                await changed.wait()
        finally:
            self.mode.listeners.remove(listener)
