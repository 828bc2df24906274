"""`penumbra flight`: run a node until SIGTERM or SIGINT, then shut it down cleanly (exit 0)."""

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from flight.runtime import clock
from flight.runtime.config import ConfigError, load
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
        clock.run(serve(Node(config)), virtual=args.virtual_time)
    except ConfigError as error:
        print(f"penumbra flight: {error}", file=sys.stderr)
        return 2
    return 0
