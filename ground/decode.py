"""`penumbra decode [--as KIND] HEX|FILE`: a captured dump, every field printed as JSON."""

import argparse
import json
import os
import re
import string
import sys
from pathlib import Path
from typing import BinaryIO

from flight.protocol import icd, tm_frame
from flight.protocol.describe import AUTO_ORDER, KINDS, describe, find_errors
from flight.protocol.errors import LengthError, ProtocolError

PROG = "penumbra decode"
_GROUPS = re.compile(r"[^\s:]+")  # hex digits between the allowed separators


class InputError(Exception):
    """An argument that names no octets: not hex, no such file, unreadable."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Decode a captured dump (COBS stream, TC or TM frame, Space Packet, PUS packet, CFDP PDU) "
        "and print every field as JSON, nested for frames that carry packets. Anything malformed "
        "is reported with the octet where it is, and the exit status is 1."
    )
    parser.add_argument(
        "input",
        metavar="HEX|FILE",
        help="hex octets (whitespace, colons and 0x prefixes allowed), a binary file, "
        "or - for binary standard input",
    )
    parser.add_argument(
        "--as",
        dest="kind",
        choices=KINDS,
        default="auto",
        metavar="KIND",
        help=f"what the input is: {', '.join(KINDS)} (default auto: tries "
        f"{', '.join(AUTO_ORDER)} in that order; pus is found as a space-packet)",
    )
    parser.add_argument(
        "--tm-frame-length",
        type=int,
        default=icd.TM_FRAME_LENGTH,
        metavar="N",
        help=f"octets of every TM frame (default {icd.TM_FRAME_LENGTH}, the ICD's)",
    )
    parser.add_argument(
        "--no-ocf",
        action="store_true",
        help="TM frames carry no Operational Control Field (the ICD's always do)",
    )


def parse_hex(text: str) -> bytes:
    """Octets written as hex: whitespace and colons between them, a 0x before any group."""
    digits: list[str] = []
    for group in _GROUPS.finditer(text):
        start = group.start()
        characters = group.group()
        if characters[:2].lower() == "0x":
            start += 2
            characters = characters[2:]
        for index, character in enumerate(characters, start + 1):
            if character not in string.hexdigits:
                raise InputError(f"{character!r} (character {index}) is not a hex digit")
        digits.append(characters)
    joined = "".join(digits)
    if not joined:
        raise InputError("no hex digits")
    if len(joined) % 2:
        raise InputError(f"{len(joined)} hex digits: an odd number makes no whole octets")
    return bytes.fromhex(joined)


def read_input(argument: str, stdin: BinaryIO) -> bytes:
    """The octets an argument names: `-` is standard input, an existing path a file, else hex.

    A path wins over hex, so a file whose name happens to be hex digits is still read; write the
    hex with a 0x prefix to be sure it is taken as hex.
    """
    if argument == "-":
        return stdin.read()
    if not argument.strip():
        raise InputError("empty argument: give hex octets, a file, or - for standard input")
    path = Path(argument)
    try:
        is_directory, exists = path.is_dir(), path.exists()
    except OSError:
        # A long hex dump is no possible path (ENAMETOOLONG): it can only be hex.
        is_directory = exists = False
    if is_directory:
        raise InputError(f"{argument} is a directory, not a dump file")
    if exists:
        try:
            return path.read_bytes()
        except OSError as error:
            raise InputError(f"cannot read {argument}: {error.strerror}") from None
    try:
        return parse_hex(argument)
    except InputError as error:
        raise InputError(f"no such file: {argument} (and not hex: {error})") from None


def _complain(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        tm_frame.check_frame_length(args.tm_frame_length, not args.no_ocf)
    except LengthError as error:
        _complain(f"--tm-frame-length: {error} (132.0-B-3 4.1.1)")
        return 1
    try:
        data = read_input(args.input, sys.stdin.buffer)
    except InputError as error:
        _complain(str(error))
        return 1
    try:
        description = describe(
            data, args.kind, tm_frame_length=args.tm_frame_length, tm_has_ocf=not args.no_ocf
        )
    except ProtocolError as error:
        _complain(str(error) if args.kind == "auto" else f"{args.kind}: {error}")
        return 1
    try:
        sys.stdout.write(json.dumps(description, indent=2) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped early (`| head`): nothing more to say to it, and no traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    errors = find_errors(description)
    for path, entry in errors:
        _complain(f"{path}: {entry['error']} (at octet {entry['offset']})")
    return 1 if errors else 0
