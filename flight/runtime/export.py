"""`penumbra dict export`: write the dictionary of a node's components for the ground and tests."""

import argparse
import sys
from pathlib import Path

from flight.runtime.config import ConfigError, load
from flight.runtime.dictionary import dumps
from flight.runtime.main import node_dictionary
from flight.runtime.store import StoreError, atomic_write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export", help="write the JSON dictionary (commands, telemetry, events, parameters)"
    )
    export.add_argument("--config", type=Path, help="node.toml (default: the embedded defaults)")
    export.add_argument(
        "-o", "--output", type=Path, help="file to write (default: standard output)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as error:
        print(f"penumbra dict: {error}", file=sys.stderr)
        return 2
    text = dumps(node_dictionary(config))
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        atomic_write(args.output, text.encode("utf-8"))
    except StoreError as error:
        print(f"penumbra dict: {error}", file=sys.stderr)
        return 1
    return 0
