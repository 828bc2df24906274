"""Bench targets: `sil` (a node in this process), `pty` (a `penumbra flight` subprocess over a pty
pair), and boards the bench only connects to (`serial:/dev/ttyUSB0@115200`, `mqtt://host/NODE`),
each with the capabilities a test may need of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from flight.link import Link, Role, open_link
from flight.link.base import LinkConfigError
from flight.link.serial import SerialLink
from flight.protocol.sdls import KeyFileError, load_key
from flight.runtime.config import ConfigError, NodeConfig
from flight.runtime.config import load as load_node_config
from flight.runtime.config import parse as parse_node_config
from ground.dictionary import Dictionary, DictionaryError
from hil.bench.config import CAPABILITIES, BenchConfig, BenchConfigError
from hil.bench.power import CommandPower, ManualPower, PowerDriver, ProcessPower
from hil.testapi.targets import MemoryTarget, ProcessTarget, flight_dictionary

DEFAULT_BAUDRATE = 115200
SPEC_FORMS = "sil, pty, serial:/dev/ttyUSB0@115200 or mqtt://HOST:1883/NODE"

NODE_TOML = """\
[housekeeping]
interval_ms = 1000

[power]
eps = "simulated"

[payload]
max_workers = 2
batch_tiles = 8
simulated_tile_time_s = 0.2
"""
"""What the bench adds to a sil or pty node's node.toml: a simulated EPS the bench feeds over the
link, the payload, housekeeping every second. `[orbit]` comes from the bench environment. A tile
takes at least 0.2 s, a stand-in for a board's speed: the acceptance suite's small model would
otherwise finish a job between two housekeeping reports, and nothing could be seen running."""


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A parsed `--target`: `kind` is sil, pty, serial or mqtt."""

    text: str
    kind: str
    device: str | None = None
    baudrate: int = DEFAULT_BAUDRATE
    url: str | None = None


def parse_target(text: str) -> TargetSpec:
    """`sil` (or `memory`), `pty`, `serial:/dev/ttyUSB0[@115200]`, `mqtt://HOST:PORT/NODE`."""
    spec = text.strip()
    if spec in ("sil", "memory"):
        return TargetSpec(spec, "sil")
    if spec == "pty":
        return TargetSpec(spec, "pty")
    if spec.startswith("serial:"):
        rest = spec[len("serial:") :]
        if rest.startswith("//"):  # the node.toml form serial:///dev/ttyUSB0?baudrate=115200
            parts = urlsplit(spec)
            device, query = (
                parts.path,
                dict(item.split("=", 1) for item in parts.query.split("&") if "=" in item),
            )
            baud_text = query.get("baudrate", str(DEFAULT_BAUDRATE))
        else:
            device, _, baud_text = rest.partition("@")
            baud_text = baud_text or str(DEFAULT_BAUDRATE)
        if not device.startswith("/"):
            raise BenchConfigError(
                f"--target {text}: give the device's absolute path: serial:/dev/ttyUSB0@115200"
            )
        if not baud_text.isdigit() or int(baud_text) <= 0:
            raise BenchConfigError(
                f"--target {text}: {baud_text!r} is not a baud rate; e.g. serial:{device}@115200"
            )
        return TargetSpec(spec, "serial", device=device, baudrate=int(baud_text))
    if spec.startswith(("mqtt://", "mqtts://")):
        parts = urlsplit(spec)
        if not parts.hostname or not parts.path.strip("/"):
            raise BenchConfigError(
                f"--target {text}: an MQTT target names the broker and the node: "
                "mqtt://HOST:1883/NODE"
            )
        return TargetSpec(spec, "mqtt", url=spec)
    raise BenchConfigError(f"--target {text}: not a bench target; give {SPEC_FORMS}")


class BenchTarget(Protocol):
    """A node on the bench, as the `bench` fixture uses it: a hil.testapi Target (start/stop)
    with what it can do (`capabilities`, and why not: `missing`), its power driver, where the
    ground keeps its state for it, and whether the node outlives a test (`persistent`)."""

    name: str
    capabilities: frozenset[str]
    persistent: bool
    ground_state_dir: Path
    power: PowerDriver | None

    def missing(self, capability: str) -> str: ...

    async def start(self) -> tuple[Link, Dictionary, bytes]: ...

    async def stop(self) -> None: ...

    def output(self) -> str: ...


def bench_node_toml(orbit_tle: tuple[str, str] | None = None) -> str:
    """The node.toml sections of a sil or pty target (NODE_TOML, and the orbit if given)."""
    text = NODE_TOML
    if orbit_tle is not None:
        text += f'\n[orbit]\ntle_line1 = "{orbit_tle[0]}"\ntle_line2 = "{orbit_tle[1]}"\n'
    return text


def default_orbit_tle() -> tuple[str, str]:
    """The bench environment's orbit as a TLE, so that the node forecasts the sunlight the
    bench will give it."""
    from hil.bench.environment import default_orbit

    line1, line2 = default_orbit().tle
    return str(line1), str(line2)


class SilTarget:
    """A node in this process and loop (hil.testapi MemoryTarget) with the payload and a simulated
    EPS, as `penumbra flight` builds them. Fresh for every test."""

    name = "sil"
    capabilities = frozenset({"simulated_eps", "line_faults"})
    persistent = False

    def __init__(self, work_dir: Path, *, node_toml: str | None = None) -> None:
        from flight.runtime.main import compute_components

        self.work_dir = work_dir
        self.ground_state_dir = work_dir / "ground-state"
        self.power: PowerDriver | None = None
        toml = bench_node_toml(default_orbit_tle()) if node_toml is None else node_toml
        self.config: NodeConfig = parse_node_config(
            f'[node]\nname = "sil-target"\n\n{toml}', source="sil target"
        )
        self.memory = MemoryTarget(
            self.config, state_dir=work_dir / "node-state", components=compute_components
        )

    @classmethod
    def missing(cls, capability: str) -> str:
        if capability in ("power_cut", "restart"):
            return (
                "the sil target runs the node in the test's own process: it cannot lose power "
                "or restart without running its shutdown code; run on pty or a board"
            )
        return f"the sil target cannot {CAPABILITIES.get(capability, capability)}"

    async def start(self) -> tuple[Link, Dictionary, bytes]:
        return await self.memory.start()

    async def stop(self) -> None:
        await self.memory.stop()

    def output(self) -> str:
        return ""


class PtyTarget:
    """`penumbra flight` in a subprocess over a pty pair, configured as the bench needs it.

    Its power is the process: SIGKILL and a restart on the same state (ProcessPower). Fresh for
    every test; the node's output goes to `log_path`.
    """

    name = "pty"
    capabilities = frozenset({"power_cut", "restart", "simulated_eps", "line_faults"})
    persistent = False

    def __init__(self, work_dir: Path, *, node_toml: str | None = None) -> None:
        self.work_dir = work_dir
        self.ground_state_dir = work_dir / "ground-state"
        node_dir = work_dir / "node"
        node_dir.mkdir(parents=True, exist_ok=True)
        toml = bench_node_toml(default_orbit_tle()) if node_toml is None else node_toml
        self.process = ProcessTarget.pty(work_dir=node_dir, node_config=toml)
        self.power: PowerDriver | None = ProcessPower(self.process)
        self.log_path = self.process.log_path

    @classmethod
    def missing(cls, capability: str) -> str:
        return f"the pty target cannot {CAPABILITIES.get(capability, capability)}"

    async def start(self) -> tuple[Link, Dictionary, bytes]:
        return await self.process.start()

    async def stop(self) -> None:
        await self.process.stop()

    def output(self) -> str:
        return self.process.output()


class BoardTarget:
    """A board running `penumbra flight` by itself (systemd): the bench only connects, over its
    serial line or the MQTT broker, with the key, dictionary and power driver of bench.toml.

    The node outlives every test, so the ground's state (IV, sequence counts) is kept in
    bench.toml's ground_state_dir across tests and runs.
    """

    persistent = True

    def __init__(self, spec: TargetSpec, bench: BenchConfig) -> None:
        self.spec = spec
        self.name = spec.text
        self.bench = bench
        if bench.key_file is None:
            raise BenchConfigError(
                f"--target {spec.text}: a board needs its SDLS key: give --bench bench.toml with "
                "[target] key_file (the key file the board's node.toml names)"
            )
        if bench.node_config is None and bench.dictionary is None:
            raise BenchConfigError(
                f"--target {spec.text}: the bench needs the board's dictionary: give [target] "
                "node_config (a copy of the board's node.toml) or dictionary in the bench file"
            )
        beside_the_file = Path(bench.source).parent / "ground-state"
        self.ground_state_dir = bench.ground_state_dir or beside_the_file
        self.power = power_driver(bench)
        simulated = bench.simulated_eps
        if simulated is None:
            node_config = None if bench.node_config is None else self._node_config()
            simulated = node_config is not None and node_config.power.eps == "simulated"
        implied = {"line_faults"}  # the bench owns the ground end of every line
        if self.power is not None:
            implied |= {"power_cut", "restart"}
        if simulated:
            implied.add("simulated_eps")
        self.capabilities = frozenset(implied) if bench.capabilities is None else bench.capabilities
        self._link: Link | None = None

    def _node_config(self) -> NodeConfig:
        assert self.bench.node_config is not None
        try:
            return load_node_config(self.bench.node_config)
        except ConfigError as error:
            raise BenchConfigError(f"{self.bench.source}: [target] node_config: {error}") from None

    def missing(self, capability: str) -> str:
        what = CAPABILITIES.get(capability, capability)
        if capability in ("power_cut", "restart") and self.power is None:
            return (
                f"target {self.name} cannot {what}: {self.bench.source} gives no power driver "
                '([power] driver = "command" or "manual")'
            )
        if capability == "simulated_eps":
            return (
                f"target {self.name} cannot {what}: its node.toml does not say [power] eps = "
                f'"simulated" (or {self.bench.source} says otherwise)'
            )
        return f"target {self.name} cannot {what} ({self.bench.source} [target] capabilities)"

    def dictionary(self) -> Dictionary:
        """The board's dictionary: bench.toml's dictionary file, or built from its node_config."""
        if self.bench.dictionary is not None:
            try:
                return Dictionary.load(self.bench.dictionary)
            except DictionaryError as error:
                raise BenchConfigError(
                    f"{self.bench.source}: [target] dictionary: {error}"
                ) from None
        return flight_dictionary(self._node_config())

    def _open(self) -> Link:
        spec = self.spec
        if spec.kind == "serial":
            assert spec.device is not None
            return SerialLink.device(spec.device, baudrate=spec.baudrate)
        assert spec.url is not None
        try:
            return open_link(spec.url, role=Role.GROUND)
        except LinkConfigError as error:
            raise BenchConfigError(f"--target {spec.text}: {error}") from None

    async def start(self) -> tuple[Link, Dictionary, bytes]:
        if self._link is not None:
            raise RuntimeError(f"target {self.name} is already connected; stop it first")
        try:
            key = load_key(self.bench.key_file)  # type: ignore[arg-type]
        except KeyFileError as error:
            raise BenchConfigError(f"{self.bench.source}: [target] key_file: {error}") from None
        dictionary = self.dictionary()
        link = self._open()
        await link.__aenter__()
        self._link = link
        return link, dictionary, key

    async def stop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.__aexit__(None, None, None)

    def output(self) -> str:
        return ""  # the board's log is on the board: journalctl -u penumbra


def power_driver(bench: BenchConfig) -> PowerDriver | None:
    """The power driver bench.toml's [power] names, or None."""
    power = bench.power
    if power.driver == "command":
        return CommandPower(
            power.cut, power.restore, timeout_s=power.timeout_s, cwd=Path(bench.source).parent
        )
    if power.driver == "manual":
        return ManualPower()
    return None


def make_target(spec: TargetSpec, bench: BenchConfig, work_dir: Path) -> BenchTarget:
    """The target `spec` names; `work_dir` is the test's own scratch directory (sil, pty)."""
    if spec.kind == "sil":
        return SilTarget(work_dir)
    if spec.kind == "pty":
        return PtyTarget(work_dir)
    return BoardTarget(spec, bench)


def target_capabilities(
    spec: TargetSpec, bench: BenchConfig
) -> tuple[frozenset[str], Callable[[str], str]]:
    """(capabilities, why a capability is missing) of the target `spec` names, without starting
    anything: the plugin skips tests with them before a target is made."""
    if spec.kind == "sil":
        return SilTarget.capabilities, SilTarget.missing
    if spec.kind == "pty":
        return PtyTarget.capabilities, PtyTarget.missing
    board = BoardTarget(spec, bench)
    return board.capabilities, board.missing
