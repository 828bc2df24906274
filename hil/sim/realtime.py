"""One real flight node in the emulated constellation: a `penumbra flight` process over a pty, or
a board over serial or MQTT, fed its satellite's physics in real time.

    spec = RealNodeSpec("pty", sat=0)
    async with RealSatellite(spec, name="sat00", orbit=orbit, satellite=PowerScenario(),
                             policy="energy_aware", work_dir=run_dir / "sat00") as real:
        real.station          # its GroundStation, on the bench line
        real.environment      # its physics: the emulator samples it, the sensor feed reads it

The target is started (or, for a board, connected to) as the HIL bench does it
(`hil.bench.targets`): a `BenchLink` on its line, a `GroundStation`, the gate (line up, telemetry
flowing), then a `BenchEnvironment` feed of `SensorRecord`s from this satellite's one
`SatelliteEnvironment`, the same object the emulator samples and fades. The node's payload draw
comes back from its own telemetry and discharges that physics.

The bench line is the real node's umbilical: it carries the sensor feed as well as commands and
telemetry, so it stays up for the whole run. The emulator logs this satellite's passes from
geometry but does not cut its line. The real node has no inter-satellite links (its ISL terminal
would be a memory link in this process). Its mission clock is its own host's: a real node reads
UTC at boot (`MissionClock.anchored_now`), so its onboard forecast is for today, not for the
scenario's epoch that the physics uses.
"""

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, cast

from flight.orbit import Orbit
from flight.power.governor import POLICIES
from flight.runtime.clock import VirtualTimeLoop
from ground.dictionary import EventMessage, TelemetrySample
from ground.station import GroundStation
from hil.bench.config import BenchConfig, BenchConfigError
from hil.bench.config import load as load_bench_config
from hil.bench.environment import BenchEnvironment
from hil.bench.line import BenchLink
from hil.bench.power import PowerError
from hil.bench.targets import BenchTarget, PtyTarget, TargetSpec, make_target, parse_target
from hil.env import SatelliteEnvironment
from hil.sim.power import PowerScenario, satellite_environment
from hil.testapi.api import IntegrationApi
from hil.testapi.target import TargetConnection

BOOT_COUNT = "mode.BOOT_COUNT"
PAYLOAD_POWER = "power.PAYLOAD_POWER_W"
JOBS_WAITING = ("payload.JOBS_QUEUED", "payload.JOBS_PAUSED", "payload.JOBS_RUNNING")
JOBS_DONE = "payload.JOBS_DONE"
JOBS_EXPIRED = "payload.JOBS_EXPIRED"
WATCH_DEPTH = 4_096  # telemetry and events the watcher may lag behind before it loses the oldest
SENSOR_PERIOD_S = 1.0  # a sensor record a second, as a bench sends them
THRESHOLD_DEFAULT = "threshold 60/45"  # the label of the node's own `threshold` policy

_log = logging.getLogger("hil.sim.realtime")

Log = Callable[..., None]
"""log(kind, **fields): an entry for the emulator's event log."""


@dataclass(frozen=True, slots=True)
class RealNodeSpec:
    """Which satellite of the scenario is real (`sat`), and what it is: `target` in
    hil.bench.targets' forms ("pty", "serial:/dev/ttyUSB0@115200", "mqtt://HOST:1883/NODE");
    `bench_config` is the bench.toml of a board (its key, node.toml and power driver)."""

    target: str
    sat: int = 0
    bench_config: Path | None = None

    def __post_init__(self) -> None:
        if self.spec.kind == "sil":
            raise ValueError(
                f"real node {self.target!r}: a real node is a flight process or a board; give "
                "pty, serial:/dev/ttyUSB0@115200 or mqtt://HOST:1883/NODE (the emulator's own "
                "nodes are the in-process ones)"
            )
        if self.sat < 0:
            raise ValueError(f"real node sat {self.sat}: give a satellite index, 0 or more")

    @property
    def spec(self) -> TargetSpec:
        """The parsed target (BenchConfigError, which says the forms, for a bad one)."""
        return parse_target(self.target)


def node_policy(policy: str) -> str:
    """The node.toml name of the emulator's policy `policy` (a real node cannot be handed a
    Policy object, as the emulator's own nodes are)."""
    if policy in POLICIES:
        return policy
    if policy == THRESHOLD_DEFAULT:
        return "threshold"
    raise ValueError(
        f"policy {policy!r} cannot run on a real node: its node.toml names one of "
        f"{', '.join(POLICIES)} ({THRESHOLD_DEFAULT!r} is `threshold`); run that policy without "
        "the real node"
    )


def real_node_toml(
    orbit: Orbit, satellite: PowerScenario, policy: str, *, housekeeping_interval_s: float
) -> str:
    """The node.toml sections of a pty node playing `satellite` on `orbit` ([node] and [link]
    are the target's): a simulated EPS fed by the sensor feed, the policy, the payload."""
    line1, line2 = orbit.tle
    return f"""\
[housekeeping]
interval_ms = {round(housekeeping_interval_s * 1000)}

[orbit]
tle_line1 = "{line1}"
tle_line2 = "{line2}"

[power]
eps = "simulated"
policy = "{node_policy(policy)}"
capacity_wh = {float(satellite.battery_wh)!r}
floor_soc = {float(satellite.floor_soc)!r}
bus_power_w = {float(satellite.bus_power_w)!r}
solar_power_w = {float(satellite.solar_power_w)!r}

[payload]
max_workers = {satellite.max_workers}
batch_tiles = {satellite.batch_tiles}
idle_power_w = {float(satellite.payload_idle_w)!r}
busy_power_w = {float(satellite.payload_busy_w)!r}
simulated_tile_time_s = {float(satellite.tile_time_s)!r}
"""


class RealSatellite:
    """One satellite whose node is real, in real time; an async context manager.

    Entering starts the target (pty: `penumbra flight` with this satellite's TLE, payload, a
    simulated EPS and `policy`; a board: connects with bench.toml's key), waits for the gate,
    and starts the sensor feed from `environment`. Leaving stops all of it, the process too.
    `unix_time` is the physics' clock (the emulator's `unix_now`; default: the satellite's
    epoch at entry, on the loop's clock). `log(kind, **fields)` is told of every boot and every
    event the node reports, for the emulator's event log. See the module docstring for what a
    real satellite does not do (line cuts, ISL, the scenario's epoch onboard).
    """

    def __init__(
        self,
        spec: RealNodeSpec,
        *,
        name: str,
        orbit: Orbit,
        satellite: PowerScenario,
        policy: str,
        work_dir: Path,
        housekeeping_interval_s: float = 1.0,
        unix_time: Callable[[], float] | None = None,
        log: Log | None = None,
    ) -> None:
        self.spec = spec
        self.name = name
        self.work_dir = Path(work_dir)
        self.target_spec = spec.spec
        self.node_toml = real_node_toml(
            orbit, satellite, policy, housekeeping_interval_s=housekeeping_interval_s
        )
        self.environment: SatelliteEnvironment = satellite_environment(
            satellite, orbit, self.payload_power_w
        )
        self.boots: list[int] = []
        self.station: GroundStation | None = None
        self.line: BenchLink | None = None
        self.target: BenchTarget | None = None
        self.feed: BenchEnvironment | None = None
        self.reboots_skipped = 0
        self._epoch_unix_s = satellite.epoch_unix_s
        self._unix_time = unix_time
        self._log_entry = log
        self._stack = contextlib.AsyncExitStack()

    # -- what the emulator reads ---------------------------------------------------------------

    def payload_power_w(self) -> float:
        """The payload's draw as the node last reported it (0 before any report)."""
        value = self._latest(PAYLOAD_POWER)
        return value if math.isfinite(value) and value >= 0.0 else 0.0

    def job_counts(self) -> tuple[int, int, int]:
        """(queued, done, missed) from the node's latest payload telemetry: waiting, paused and
        running jobs; done; expired (a real node's missed deadlines are its EXPIRED jobs)."""
        waiting = sum(self._latest(channel) for channel in JOBS_WAITING)
        return int(waiting), int(self._latest(JOBS_DONE)), int(self._latest(JOBS_EXPIRED))

    def _latest(self, channel: str) -> float:
        sample = None if self.station is None else self.station.latest.get(channel)
        if sample is None or isinstance(sample.value, bool):
            return 0.0
        return float(sample.value) if isinstance(sample.value, int | float) else 0.0

    # -- faults ----------------------------------------------------------------------------------

    async def reboot(self, off_s: float) -> None:
        """Cut the node's power for `off_s` and restore it (pty: SIGKILL and a restart on the
        same state); the node boots by itself and `boots` gets its new count. A target without
        a power driver cannot: logged, nothing done."""
        power = None if self.target is None else self.target.power
        if power is None:
            self.reboots_skipped += 1
            reason = "the target has no power driver (bench.toml [power])"
            _log.warning("%s: reboot not done: %s", self.name, reason)
            self._log("reboot_skipped", reason=reason)
            return
        try:
            await power.cut()
            await asyncio.sleep(off_s)
            await power.restore()
        except PowerError as error:
            self.reboots_skipped += 1
            _log.warning("%s: reboot failed: %s", self.name, error)
            self._log("reboot_failed", reason=str(error)[:200])

    # -- start and stop --------------------------------------------------------------------------

    async def __aenter__(self) -> "RealSatellite":
        loop = asyncio.get_running_loop()
        if isinstance(loop, VirtualTimeLoop):
            raise ValueError(
                "a real node runs in real time: run the emulator on a real loop "
                "(clock.run(..., virtual=False)); on a virtual-time loop the emulated "
                "satellites would race ahead of it"
            )
        if self._unix_time is None:
            at_entry = loop.time()
            epoch = self._epoch_unix_s
            self._unix_time = lambda: epoch + (loop.time() - at_entry)
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        bench = self._bench_config()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.target_spec.kind == "pty":
            target: BenchTarget = PtyTarget(self.work_dir, node_toml=self.node_toml)
        else:
            target = make_target(self.target_spec, bench, self.work_dir)
            _log.info(
                "%s: the board runs its own node.toml: its policy, payload and orbit are not "
                "set by the scenario",
                self.name,
            )
        self.target = target
        try:
            connection = TargetConnection.of(await target.start())
        except (RuntimeError, OSError) as error:
            raise RuntimeError(
                f"real node {self.spec.target} did not start: {error}{_output(target)}"
            ) from None
        self._stack.push_async_callback(target.stop)
        self.line = await self._stack.enter_async_context(BenchLink(connection.link))
        self.station = await self._stack.enter_async_context(
            GroundStation(
                self.line,
                connection.dictionary,
                key=connection.key,
                state_dir=target.ground_state_dir,
            )
        )
        subscription = self.station.subscribe(TelemetrySample, EventMessage, depth=WATCH_DEPTH)
        self._stack.callback(subscription.close)
        group = await self._stack.enter_async_context(asyncio.TaskGroup())
        watcher = group.create_task(self._watch(subscription), name=f"{self.name} watcher")
        self._stack.callback(watcher.cancel)  # runs before the group waits for it
        await self._gate(bench.link_timeout_s)
        if "simulated_eps" in target.capabilities:
            assert self._unix_time is not None
            self.feed = await self._stack.enter_async_context(
                BenchEnvironment.feeding(
                    # The feed uses only `api.station`; an IntegrationApi would also keep every
                    # sample of the run in its history.
                    cast(IntegrationApi, SimpleNamespace(station=self.station)),
                    self.environment,
                    unix_time=self._unix_time,
                    period_s=SENSOR_PERIOD_S,
                )
            )
        else:
            _log.warning(
                "%s: target %s has no simulated EPS: the emulator's physics for it is not fed "
                "to the node",
                self.name,
                target.name,
            )

    def _bench_config(self) -> BenchConfig:
        if self.spec.bench_config is None:
            return BenchConfig()
        try:
            return load_bench_config(self.spec.bench_config)
        except BenchConfigError as error:
            raise ValueError(f"real node {self.spec.target}: {error}") from None

    async def _gate(self, timeout_s: float) -> None:
        """The line up and telemetry flowing within `timeout_s`, or a RuntimeError that says so."""
        assert self.line is not None and self.station is not None and self.target is not None
        try:
            async with asyncio.timeout(timeout_s):
                await self.line.wait_up()
        except TimeoutError:
            raise RuntimeError(
                f"real node {self.spec.target}: its line did not come up within {timeout_s:g} s; "
                "is the target powered and its line connected?" + _output(self.target)
            ) from None
        samples = self.station.subscribe(TelemetrySample, depth=1)
        try:
            async with asyncio.timeout(timeout_s):
                if not self.station.latest:
                    await samples.get()
        except TimeoutError:
            raise RuntimeError(
                f"real node {self.spec.target}: its line is up but no telemetry arrived within "
                f"{timeout_s:g} s; is the node running with this key and dictionary?"
                + _output(self.target)
            ) from None
        finally:
            samples.close()

    async def _watch(self, subscription: Any) -> None:
        """Boots (a new mode.BOOT_COUNT) and the node's events, as they arrive."""
        async for item in subscription:
            if isinstance(item, EventMessage):
                self._log(
                    "event",
                    component=item.component,
                    name=item.name,
                    severity=item.severity.name,
                    text=item.text,
                )
            elif item.channel == BOOT_COUNT and _new_boot(item.value, self.boots):
                self.boots.append(item.value)
                self._log("boot", boot_count=item.value)

    def _log(self, kind: str, **fields: Any) -> None:
        if self._log_entry is not None:
            self._log_entry(kind, **fields)


def _new_boot(count: Any, boots: list[int]) -> bool:
    """Counts only grow: an older report played back from the node's store is no new boot."""
    return isinstance(count, int) and (not boots or count > boots[-1])


def _output(target: BenchTarget) -> str:
    lines = target.output().strip().splitlines()[-30:]
    return "\nnode output (last lines):\n" + "\n".join(lines) if lines else ""
