"""`penumbra ground`: operate a node from the command line: watch, cmd, ping, param, hk, put, get,
list.

    penumbra ground --link mqtt://host:1883/sat1 --dict sat1.json --key sa1.key watch
    penumbra ground --link serial:///dev/ttyUSB0 --dict sat1.json --key sa1.key \\
        cmd health.SET_PING_PERIOD period_ms=500
    penumbra ground ... put model.onnx --as detector.onnx

Exit status: 0 when the node reports success, 1 when it reports a failure (or never confirms),
2 for a mistake on the command line, in the dictionary, the key or the link URL. Errors are one
line in words; a traceback means a bug.
"""

import argparse
import asyncio
import datetime
import hashlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TextIO

from flight.link import LinkError, Role, open_link
from flight.link.url import redact
from flight.protocol.cuc import TAI_EPOCH_TO_UNIX_EPOCH_S, CucTime
from flight.protocol.sdls import KeyFileError, load_key
from flight.runtime.clock import TAI_MINUS_UTC_S
from flight.runtime.files import check_name
from ground.archive import Archive
from ground.dictionary import (
    Dictionary,
    EventMessage,
    GroundError,
    ParameterReport,
    PingReply,
    RequestKey,
    Stage,
    TelemetrySample,
    Verification,
)
from ground.station import (
    CommandFailed,
    DecodeFailure,
    FileDelivery,
    GroundStation,
    ResponseTimeout,
    StationAlert,
    UplinkError,
)

PROG = "penumbra ground"
LINK_FORMS = "serial:///dev/ttyUSB0?baudrate=115200, socket://HOST:PORT, mqtt://HOST:1883/NODE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Operate a node: send commands by name (checked against the dictionary), watch "
        "verification reports, events and telemetry live, get and set parameters. Everything "
        "sent and received goes into a SQLite archive."
    )
    parser.add_argument("--link", metavar="URL", help=f"link to the node: {LINK_FORMS}")
    parser.add_argument(
        "--dict",
        dest="dictionary",
        metavar="FILE",
        required=True,
        help="the node's dictionary (`penumbra dict export -o FILE` writes it)",
    )
    parser.add_argument(
        "--key", metavar="FILE", help="SDLS key file of the node (32 octets or 64 hex digits, 0600)"
    )
    parser.add_argument(
        "--state",
        metavar="DIR",
        type=Path,
        help="ground state (IV counter, TC sequence count, FOP-1 V(S)); default: one directory "
        "per key under $XDG_STATE_HOME/penumbra/ground. Never share or copy it",
    )
    parser.add_argument(
        "--archive",
        metavar="FILE",
        type=Path,
        help="SQLite archive (default: STATE/archive.sqlite)",
    )
    parser.add_argument(
        "--downloads",
        metavar="DIR",
        type=Path,
        help="where files from the node are saved (default: STATE/downloads)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=30.0,
        help="how long cmd, ping, param, hk, put and get wait for the node (default 30); put and "
        "get wait this long for the whole transfer",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    watch = actions.add_parser("watch", help="print reports, events and telemetry as they arrive")
    watch.add_argument("--no-telemetry", action="store_true", help="leave housekeeping values out")

    cmd = actions.add_parser("cmd", help="send a command and follow its verification")
    cmd.add_argument("command", metavar="COMPONENT.COMMAND")
    cmd.add_argument("arguments", nargs="*", metavar="KEY=VALUE")

    ping = actions.add_parser("ping", help="are-you-alive (PUS 17,1) round trips")
    ping.add_argument("--count", type=int, default=1, help="pings to send (default 1)")

    param = actions.add_parser("param", help="get, set or save onboard parameters")
    param_actions = param.add_subparsers(dest="param_action", metavar="get|set|save", required=True)
    get = param_actions.add_parser("get", help="report parameter values (PUS 20,1)")
    get.add_argument("names", nargs="+", metavar="COMPONENT.NAME")
    put = param_actions.add_parser("set", help="set parameter values (PUS 20,3)")
    put.add_argument("assignments", nargs="+", metavar="COMPONENT.NAME=VALUE")
    param_actions.add_parser("save", help="write the parameters to the node's store (params.SAVE)")

    hk = actions.add_parser("hk", help="housekeeping of one component: interval, enable, disable")
    hk.add_argument("component")
    choice = hk.add_mutually_exclusive_group(required=True)
    choice.add_argument("--interval", type=float, metavar="SECONDS", help="report period (3,31)")
    choice.add_argument("--enable", action="store_true", help="periodic reports on (3,5)")
    choice.add_argument("--disable", action="store_true", help="periodic reports off (3,6)")

    put_file = actions.add_parser(
        "put", help="send a file to the node's files directory (CFDP, under COP-1)"
    )
    put_file.add_argument("local", metavar="LOCAL", type=Path, help="the file to send")
    put_file.add_argument(
        "--as", dest="remote", metavar="NAME", help="its name on board (default: its own name)"
    )

    get_file = actions.add_parser(
        "get", help="ask the node for a file of its files directory (files.DOWNLINK_FILE)"
    )
    get_file.add_argument("remote", metavar="NAME", help="the file's name on board")

    listing = actions.add_parser("list", help="what the dictionary declares (no link needed)")
    listing.add_argument(
        "kind",
        nargs="?",
        default="commands",
        choices=("commands", "telemetry", "events", "parameters"),
    )


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        dictionary = Dictionary.load(args.dictionary)
        if args.action == "list":
            _list(dictionary, args.kind, out)
            return 0
        if not args.link:
            raise GroundError(f"give --link URL ({LINK_FORMS})")
        if not args.key:
            raise GroundError("give --key FILE, the node's SDLS key file")
        key = load_key(args.key)
        link = open_link(args.link, role=Role.GROUND)
        state = args.state or default_state_dir(key)
        archive = Archive(args.archive or state / "archive.sqlite")
        action = _ACTIONS[args.action]
        # Checked before the link opens: a typo costs no waiting for the node.
        prepared = action(dictionary, args)
    except (GroundError, LinkError, KeyFileError, OSError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_operate(link, dictionary, key, state, archive, args, prepared, out))
    except (CommandFailed, UplinkError, ResponseTimeout) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except (GroundError, LinkError, OSError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2


def default_state_dir(key: bytes) -> Path:
    """One state directory per key: the IV counter and the uplink state belong to its SA."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    fingerprint = hashlib.sha256(b"penumbra ground state\x00" + key).hexdigest()[:16]
    return base / "penumbra" / "ground" / fingerprint


Operation = Callable[[GroundStation, TextIO], Awaitable[int]]


async def _operate(
    link: Any,
    dictionary: Dictionary,
    key: bytes,
    state: Path,
    archive: Archive,
    args: argparse.Namespace,
    operation: Operation,
    out: TextIO,
) -> int:
    with archive:
        async with (
            link,
            GroundStation(
                link,
                dictionary,
                key=key,
                state_dir=state,
                clock=time.time,
                archive=archive,
                downloads_dir=args.downloads,
            ) as station,
        ):
            print(f"{PROG}: {redact(args.link)}, archive {archive.path}", file=sys.stderr)
            return await operation(station, out)


# -- actions: each checks its arguments, then returns the coroutine function that acts ----------


def _watch(dictionary: Dictionary, args: argparse.Namespace) -> Operation:
    kinds: tuple[type, ...] = (
        Verification,
        EventMessage,
        ParameterReport,
        PingReply,
        StationAlert,
        DecodeFailure,
        FileDelivery,
    )
    if not args.no_telemetry:
        kinds += (TelemetrySample,)

    async def watch(station: GroundStation, out: TextIO) -> int:
        async with station.subscribe(*kinds) as items:
            async for item in items:
                print(line(item), file=out, flush=True)
        return 0

    return watch


def _cmd(dictionary: Dictionary, args: argparse.Namespace) -> Operation:
    definition = dictionary.command(args.command)
    values = dictionary.parse_assignments(definition, args.arguments)
    dictionary.encode_command(definition, values)  # every argument checked before sending
    timeout_s = args.timeout

    async def cmd(station: GroundStation, out: TextIO) -> int:
        async with station.subscribe(Verification) as reports:
            async with station.deadline(timeout_s, f"{definition.qualified_name} not sent"):
                request = await station.send_command(definition.qualified_name, values)
            print(f"sent {definition.qualified_name} as request {request}", file=out, flush=True)
            return await _follow(reports, request, timeout_s, out)

    return cmd


async def _follow(reports: Any, request: RequestKey, timeout_s: float, out: TextIO) -> int:
    """Print the request's reports until completion success (0) or a failure (1)."""
    try:
        async with asyncio.timeout(timeout_s):
            async for report in reports:
                if report.request != request:
                    continue
                print(line(report), file=out, flush=True)
                if not report.success:
                    return 1
                if report.stage is Stage.COMPLETION:
                    return 0
    except TimeoutError:
        raise ResponseTimeout(
            f"request {request}: no completion report within {timeout_s} s"
        ) from None
    return 1


def _ping(dictionary: Dictionary, args: argparse.Namespace) -> Operation:
    if args.count < 1:
        raise GroundError(f"--count {args.count}: give at least 1")

    async def ping(station: GroundStation, out: TextIO) -> int:
        for number in range(1, args.count + 1):
            round_trip_s = await station.ping(timeout_s=args.timeout)
            print(f"ping {number}: reply in {round_trip_s * 1000:.1f} ms", file=out, flush=True)
        return 0

    return ping


def _param(dictionary: Dictionary, args: argparse.Namespace) -> Operation:
    timeout_s = args.timeout
    if args.param_action == "get":
        names = list(args.names)
        dictionary.encode_parameter_ids(names)

        async def get(station: GroundStation, out: TextIO) -> int:
            values = await station.get_parameters(*names, timeout_s=timeout_s)
            for name, value in values.items():
                print(f"{name} = {value}", file=out)
            return 0

        return get
    if args.param_action == "set":
        values = dictionary.parse_parameter_assignments(args.assignments)
        dictionary.encode_parameter_values(values)

        async def put(station: GroundStation, out: TextIO) -> int:
            for report in await station.set_parameters(values, timeout_s=timeout_s):
                print(line(report), file=out)
            return 0

        return put
    dictionary.command("params.SAVE")

    async def save(station: GroundStation, out: TextIO) -> int:
        for report in await station.save_parameters(timeout_s=timeout_s):
            print(line(report), file=out)
        return 0

    return save


def _hk(dictionary: Dictionary, args: argparse.Namespace) -> Operation:
    dictionary.component(args.component)
    if args.interval is not None and not 0.001 <= args.interval <= 4_294_967:
        raise GroundError(f"--interval {args.interval}: give 0.001 to 4294967 seconds")

    async def hk(station: GroundStation, out: TextIO) -> int:
        if args.interval is not None:
            reports = await station.set_housekeeping_interval(
                args.component, args.interval, timeout_s=args.timeout
            )
        else:
            reports = await station.enable_housekeeping(
                args.component, enable=args.enable, timeout_s=args.timeout
            )
        for report in reports:
            print(line(report), file=out)
        return 0

    return hk


def _put(dictionary: Dictionary, args: argparse.Namespace) -> Operation:
    local: Path = args.local
    remote = local.name if args.remote is None else args.remote
    try:
        check_name(remote)
    except ValueError as error:
        raise GroundError(f"--as: {error}") from None
    if not local.is_file():
        raise GroundError(f"{local}: no such file; give the path of a file to send")
    dictionary.event("files.FILE_RECEIVED")  # a node without the file service is told now
    timeout_s = args.timeout

    async def put(station: GroundStation, out: TextIO) -> int:
        async with (
            station.deadline(timeout_s, f"put {remote}"),
            station.subscribe(EventMessage) as events,
        ):
            transaction = await station.put_file(local, remote)
            number = transaction.transaction_sequence_number
            print(f"sent {local} as {remote} (transaction {number})", file=out, flush=True)
            async for event in events:
                if event.component != "files" or event.args.get("name") != remote:
                    continue
                if event.name == "FILE_RECEIVED":
                    print(line(event), file=out, flush=True)
                    return 0
                if event.name == "FILE_FAILED":
                    print(line(event), file=out, flush=True)
                    return 1
        return 1

    return _explained(put, f"no files.FILE_RECEIVED for {remote}", "files.LIST_FILES")


def _get(dictionary: Dictionary, args: argparse.Namespace) -> Operation:
    try:
        check_name(args.remote)
    except ValueError as error:
        raise GroundError(str(error)) from None
    definition = dictionary.command("files.DOWNLINK_FILE")
    values = {"name": args.remote}
    dictionary.encode_command(definition, values)
    timeout_s = args.timeout

    async def get(station: GroundStation, out: TextIO) -> int:
        async with station.deadline(timeout_s, f"get {args.remote}"):
            start = station.mark_files()
            request = await station.send_command(definition.qualified_name, values)
            print(f"sent {definition.qualified_name} as request {request}", file=out, flush=True)
            # The file, unless the node refuses the command (no such file, queue full); its
            # completion report may be lost on the way down while the file still arrives.
            refusal = asyncio.ensure_future(station.await_completion(request, timeout_s=None))
            arrival = asyncio.ensure_future(
                station.await_file(args.remote, start=start, timeout_s=None)
            )
            try:
                await asyncio.wait((refusal, arrival), return_when=asyncio.FIRST_COMPLETED)
                if refusal.done() and isinstance(refusal.exception(), CommandFailed):
                    failure = refusal.exception()
                    assert isinstance(failure, CommandFailed)
                    print(line(failure.report), file=out, flush=True)
                    return 1
                delivery = await arrival
            finally:
                for waiting in (refusal, arrival):
                    waiting.cancel()
                await asyncio.gather(refusal, arrival, return_exceptions=True)
        print(line(delivery), file=out, flush=True)
        return 0 if delivery.success else 1

    return get


def _explained(operation: Operation, missing: str, check: str) -> Operation:
    """`operation`, whose timeout also says that the answer may be lost on the way down."""

    async def explained(station: GroundStation, out: TextIO) -> int:
        try:
            return await operation(station, out)
        except ResponseTimeout as error:
            raise ResponseTimeout(
                f"{error} ({missing}: the event may have been lost on the downlink; "
                f"`cmd {check}` shows what is on board)"
            ) from None

    return explained


_ACTIONS: dict[str, Callable[[Dictionary, argparse.Namespace], Operation]] = {
    "watch": _watch,
    "cmd": _cmd,
    "ping": _ping,
    "param": _param,
    "hk": _hk,
    "put": _put,
    "get": _get,
}


# -- printing ------------------------------------------------------------------------------------


def utc_text(time_stamp: CucTime) -> str:
    """A TM time stamp (TAI since 1958) as UTC ISO 8601, to the millisecond."""
    unix_s = time_stamp.seconds - TAI_EPOCH_TO_UNIX_EPOCH_S - TAI_MINUS_UTC_S
    moment = datetime.datetime.fromtimestamp(unix_s, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def line(item: object) -> str:
    """One readable line per item: when (mission time, UTC), what kind, what it says."""
    when = getattr(item, "time", None)
    stamp = utc_text(when) if isinstance(when, CucTime) else "-" * 24
    kind = {
        Verification: "VERIFY",
        EventMessage: "EVENT",
        TelemetrySample: "TLM",
        ParameterReport: "PARAM",
        PingReply: "PING",
        StationAlert: "ALERT",
        DecodeFailure: "ERROR",
        FileDelivery: "FILE",
    }.get(type(item), "TM")
    return f"{stamp}  {kind:<6}  {item}"


def _list(dictionary: Dictionary, kind: str, out: TextIO) -> None:
    if kind == "commands":
        for command in dictionary.commands.values():
            print(f"{command.signature()}\n    {command.description}".rstrip(), file=out)
    elif kind == "telemetry":
        for channel in dictionary.channels.values():
            limits = ", ".join(f"{k} {v:g}" for k, v in channel.limits.to_json().items())
            units = f" [{channel.units}]" if channel.units else ""
            extra = f"  limits: {limits}" if limits else ""
            print(f"{channel.qualified_name}: {channel.type.describe()}{units}{extra}", file=out)
    elif kind == "events":
        for event in dictionary.events.values():
            print(f"{event.severity.name:<11} {event.qualified_name}: {event.format}", file=out)
    else:
        for parameter in dictionary.parameters.values():
            print(
                f"{parameter.qualified_name}: {parameter.type.describe()}, "
                f"default {parameter.default!r}",
                file=out,
            )
