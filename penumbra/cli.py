"""`penumbra SUBCOMMAND ...`: the single command line of flight, ground and bench.

Each subcommand lives beside the code it drives, as a module with `add_arguments(parser)` and
`run(args) -> int`; it is imported only when chosen, so `penumbra decode` does not pay for what
`penumbra sim` needs.
"""

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "decode": (
        "ground.decode",
        "decode a captured dump (COBS, TC/TM frame, Space Packet, PUS, CFDP) to JSON",
    ),
    "bench": (
        "hil.bench.cli",
        "run the HIL acceptance suite against a target: sil, pty, serial or MQTT board",
    ),
    "demo": ("hil.demo", "operate a simulated node across a noisy in-memory link, stage by stage"),
    "dict": ("flight.runtime.export", "export the dictionary of a node's commands and telemetry"),
    "flight": ("flight.runtime.main", "run a node (node.toml) until SIGTERM or SIGINT"),
    "sim": (
        "hil.sim.cli",
        "run a scenario file through the constellation emulator (run), or the one-satellite "
        "power scenario (power)",
    ),
    "ground": (
        "ground.cli",
        "operate a node: commands by name, live reports, events, telemetry, parameters; archive",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="penumbra", description="Penumbra: flight software for orbital compute satellites."
    )
    subparsers = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    for name, (_, help_text) in SUBCOMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    if chosen is None:
        parser.parse_args(argv)  # prints usage, or the error for an unknown subcommand
        return 2
    module = importlib.import_module(SUBCOMMANDS[chosen][0])
    subparser = argparse.ArgumentParser(
        prog=f"penumbra {chosen}", description=SUBCOMMANDS[chosen][1]
    )
    module.add_arguments(subparser)
    args = subparser.parse_args(argv[1:])
    try:
        return module.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
