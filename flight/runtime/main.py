"""`penumbra flight`: run a node until SIGTERM or SIGINT, then shut it down cleanly (exit 0)."""

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from flight.isl.routing import ContactGraph
from flight.link import Link
from flight.runtime import clock
from flight.runtime.component import Component
from flight.runtime.config import ConfigError, NodeConfig, load
from flight.runtime.node import Node


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        help="node.toml (default: the embedded defaults: no link, state in ./penumbra-state)",
    )
    parser.add_argument(
        "--state-dir", type=Path, help="where persisted state goes (overrides [node] state_dir)"
    )
    parser.add_argument(
        "--virtual-time",
        action="store_true",
        help="run on the virtual-time loop: timers fire at once when idle (simulation, tests)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="what goes to stderr: events are INFO (LOW, INFORMATIVE) to ERROR (HIGH)",
    )


BENCH_RECORD_MAX_AGE_S = 5.0
"""A bench sends a sensor record every second; one older than this is a bench that stopped."""


def compute_components(
    config: NodeConfig,
    *,
    eps: object = None,
    sysfs_root: Path = Path("/sys"),
    isl_links: Mapping[int, Link] | None = None,
    contact_plan: ContactGraph | None = None,
) -> list[tuple[int, Component]]:
    """The payload, its power governor when the node has an EPS to read (`[power] eps`), and
    the ISL component when `[isl] address` is set.

    `eps` replaces the configured driver (the emulator's simulated EPS reads its physics).
    A TLE in `[orbit]` gives the governor its sunlight forecast; without one it plans as if a
    long eclipse began at every tick. `isl_links` (peer address -> an opened Link, the
    caller's to keep) and `contact_plan` (the constellation's links) are the ISL's.
    """
    components = _compute_components(config, eps=eps, sysfs_root=sysfs_root)
    if config.isl.address is not None:
        components.append(_isl(config, components, isl_links or {}, contact_plan))
    return components


def _isl(
    config: NodeConfig,
    components: list[tuple[int, Component]],
    links: Mapping[int, Link],
    contact_plan: ContactGraph | None,
) -> tuple[int, Component]:
    from flight.isl.component import ISL_COMPONENT_ID, Isl
    from flight.orbit import Orbit, OrbitError
    from flight.payload import Payload
    from flight.power.component import Power

    payload = next(c for _, c in components if isinstance(c, Payload))
    power = next((c for _, c in components if isinstance(c, Power)), None)
    orbit = power.orbit if power is not None else None
    if orbit is None and config.orbit.tle_line1 is not None and config.orbit.tle_line2 is not None:
        try:
            orbit = Orbit.from_tle(config.orbit.tle_line1, config.orbit.tle_line2)
        except OrbitError as error:
            raise config.error("[orbit] tle_line1", str(error)) from None
    isl = Isl(
        config.isl,
        state_dir=config.node.state_dir,
        links=links,
        payload=payload,
        power=power,
        contact_plan=contact_plan,
        orbit=orbit,
        ground_sites=config.orbit.ground_sites,
    )
    return ISL_COMPONENT_ID, isl


def _compute_components(
    config: NodeConfig, *, eps: object, sysfs_root: Path
) -> list[tuple[int, Component]]:
    from flight.orbit import Orbit, OrbitError
    from flight.payload import PAYLOAD_COMPONENT_ID, Payload
    from flight.power import CpuFrequency, EpsError, SimulatedEps, SysfsEps
    from flight.power.component import POWER_COMPONENT_ID, Power

    if eps is None and config.power.eps == "simulated":
        eps = SimulatedEps(max_age_s=BENCH_RECORD_MAX_AGE_S)  # fed by a bench over the link
    elif eps is None and config.power.eps == "sysfs":
        section = config.power
        eps = SysfsEps(
            sysfs_root,
            solar_rail=section.solar_rail,
            payload_rail=section.payload_rail,
            load_rail=section.load_rail,
            battery_rail=section.battery_rail,
            battery_supply=section.battery_supply,
        )
    power: Power | None = None
    # A board on a bench: the battery is the bench's (simulated EPS), the payload's power is
    # still measured on the board's own rail when one is named.
    rails = SysfsEps(sysfs_root) if config.power.payload_rail is not None else None

    def measured_payload_w() -> float | None:
        # A board's payload rail. A simulated EPS reports back the payload power the node
        # modelled, so reading that as a measurement would freeze the loop: model it there.
        if isinstance(eps, SysfsEps):
            reading = power.reading if power is not None else None
            return None if reading is None else reading.payload_power_w
        if rails is None:
            return None
        try:
            rail = rails.rails().get(config.power.payload_rail or "")
        except EpsError:
            return None
        return None if rail is None else rail.power_w

    payload = Payload(config.payload, state_dir=config.node.state_dir, power_w=measured_payload_w)
    components: list[tuple[int, Component]] = [(PAYLOAD_COMPONENT_ID, payload)]
    if eps is None:
        return components
    orbit = None
    if config.orbit.tle_line1 is not None and config.orbit.tle_line2 is not None:
        try:
            orbit = Orbit.from_tle(config.orbit.tle_line1, config.orbit.tle_line2)
        except OrbitError as error:
            raise config.error("[orbit] tle_line1", str(error)) from None
    cpufreq = CpuFrequency(writable=True) if config.power.cpu_freq_control else None
    power = Power(config.power, eps=eps, payload=payload, orbit=orbit, cpufreq=cpufreq)
    components.append((POWER_COMPONENT_ID, power))
    return components


def node_dictionary(config: NodeConfig) -> dict:
    """The dictionary of the node `penumbra flight` would run from `config`, payload and power
    included, built without touching the node's state directory."""
    with tempfile.TemporaryDirectory(prefix="penumbra-dictionary-") as scratch:
        scratch_config = config.with_state_dir(Path(scratch))
        components = compute_components(scratch_config)
        try:
            return Node(scratch_config, components=components).dictionary()
        finally:
            for _, component in components:
                close = getattr(component, "close", None)
                if close is not None:
                    close()


async def serve(node: Node) -> None:
    """Run `node` until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    # Before the node starts: a signal during boot stops it as soon as it is up, cleanly.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, node.request_stop)
    try:
        async with node:
            await node.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = load(args.config)
        if args.state_dir is not None:
            config = config.with_state_dir(args.state_dir)
        node = Node(config, components=compute_components(config))
        clock.run(serve(node), virtual=args.virtual_time)
    except ConfigError as error:
        print(f"penumbra flight: {error}", file=sys.stderr)
        return 2
    return 0
