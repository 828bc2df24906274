"""The flight dictionary on the ground: load and check it, encode commands, decode telemetry.

`penumbra dict export` writes the dictionary from the flight code (runtime contract section 4); this
module is its only reader on the ground, so nothing here knows an opcode, a channel or an event
that the file does not declare. Every error a user can cause (a wrong file, a typo in a command
name, an argument out of range) is a `GroundError` whose message says what, where and what to do.
"""

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from flight.protocol.cuc import CucTime
from flight.protocol.errors import ProtocolError
from flight.protocol.pus import (
    EventReport,
    HousekeepingParameterReport,
    ParameterIds,
    ParameterSubtype,
    ParameterValue,
    ParameterValues,
    PerformFunction,
    PusTm,
    Service,
    TestSubtype,
    VerificationFailure,
    VerificationSubtype,
    VerificationSuccess,
)
from flight.runtime.types import (
    TYPE_NAMES,
    Field,
    Limits,
    WireType,
    WireValueError,
    decode_parameter_values,
)

FORMAT = "penumbra-dictionary/1"
EXPORT_HINT = "export it again with `penumbra dict export`"


class GroundError(Exception):
    """Something the operator or a test can cause and fix; the message says what to do."""


class DictionaryError(GroundError):
    """The dictionary file cannot be used: unreadable, not JSON, or a key missing or wrong."""


class UnknownNameError(GroundError, LookupError):
    """No command, channel, event or parameter of that name; `suggestions` holds close matches."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.suggestions = tuple(suggestions)


class ArgumentError(GroundError, ValueError):
    """A command argument or parameter value that is missing, unknown, mistyped or out of range."""


class DecodeError(GroundError):
    """Telemetry that does not match the dictionary: the flight software and the file disagree."""


# --------------------------------------------------------------------------------------------------
# Types on the wire (runtime contract section 2)
# --------------------------------------------------------------------------------------------------

# The codec is flight's own (flight.runtime.types): the ground decodes with the code that encodes.


def _parse(wire_type: WireType, text: str, what: str) -> Any:
    """A value typed by an operator (`key=value`) as the Python value `_encode` takes."""
    if wire_type.kind == "enum" and wire_type.values is not None:
        # Operators type enum names in any case; the dictionary spells them in capitals.
        matches = [name for name, _ in wire_type.values if name.lower() == text.strip().lower()]
        if len(matches) == 1:
            return matches[0]
    try:
        return wire_type.parse_text(text)
    except WireValueError as error:
        raise ArgumentError(f"{what}: {_reason(wire_type, error)}") from None


def _encode(wire_type: WireType, value: Any, what: str) -> bytes:
    try:
        return wire_type.encode(value)
    except WireValueError as error:
        raise ArgumentError(f"{what}: {_reason(wire_type, error)}") from None


def _reason(wire_type: WireType, error: WireValueError) -> str:
    """The codec's reason, with the type and its range added where the reason lacks them."""
    described = wire_type.describe()
    if described in error.reason or wire_type.kind in ("enum", "string", "bool"):
        return error.reason
    return f"{error.reason}; expected {described}"


def _decode_from(wire_type: WireType, data: bytes, offset: int, what: str) -> tuple[Any, int]:
    """One value at `offset`, enums by name; DecodeError saying what did not fit."""
    try:
        value, end = wire_type.decode_from(data, offset)
    except (WireValueError, ProtocolError) as error:
        reason = error.reason if isinstance(error, WireValueError) else str(error)
        raise DecodeError(f"{what}: {reason}") from None
    if wire_type.kind == "enum":
        value = wire_type.name_of(int(value))
    return value, end


# --------------------------------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------------------------------


class Severity(IntEnum):
    """Event severities; the numbers are the PUS service 5 subtypes (runtime contract section 3)."""

    INFORMATIVE = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4


class LimitState(StrEnum):
    """Where a telemetry value stands against its declared limits (a limit itself is in range)."""

    NOMINAL = "NOMINAL"
    YELLOW_LOW = "YELLOW_LOW"
    YELLOW_HIGH = "YELLOW_HIGH"
    RED_LOW = "RED_LOW"
    RED_HIGH = "RED_HIGH"


LIMIT_KEYS = ("red_low", "yellow_low", "yellow_high", "red_high")


def limit_state(limits: Limits, value: Any) -> LimitState:
    """Where `value` stands; NOMINAL for a value that is not a number (bool, string, enum)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return LimitState.NOMINAL
    return LimitState(limits.state(value))


Argument = Field
"""A command or event argument: name, wire type, description (flight.runtime.types.Field)."""


@dataclass(frozen=True, slots=True)
class CommandDef:
    component: str
    name: str
    opcode: int
    arguments: tuple[Argument, ...] = ()
    description: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.component}.{self.name}"

    def signature(self) -> str:
        """`health.SET_PING_PERIOD period_ms=<u32 100..60000>`: how to call it."""
        args = " ".join(f"{a.name}=<{a.type.describe()}>" for a in self.arguments)
        return f"{self.qualified_name} {args}".rstrip()


@dataclass(frozen=True, slots=True)
class ChannelDef:
    component: str
    name: str
    id: int
    type: WireType
    units: str = ""
    description: str = ""
    limits: Limits = field(default_factory=Limits)

    @property
    def qualified_name(self) -> str:
        return f"{self.component}.{self.name}"


@dataclass(frozen=True, slots=True)
class EventDef:
    component: str
    name: str
    id: int
    severity: Severity
    format: str
    arguments: tuple[Argument, ...] = ()
    description: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.component}.{self.name}"


@dataclass(frozen=True, slots=True)
class ParameterDef:
    component: str
    name: str
    id: int
    type: WireType
    default: Any = None
    description: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.component}.{self.name}"


@dataclass(frozen=True, slots=True)
class ComponentDef:
    name: str
    id: int
    description: str
    commands: Mapping[str, CommandDef]
    telemetry: Mapping[str, ChannelDef]
    events: Mapping[str, EventDef]
    parameters: Mapping[str, ParameterDef]

    @property
    def channels_in_order(self) -> tuple[ChannelDef, ...]:
        """The channels in declaration order (their ids count up in it): the (3,25) layout."""
        return tuple(sorted(self.telemetry.values(), key=lambda channel: channel.id))


# --------------------------------------------------------------------------------------------------
# What arrives: decoded TM, one value class per kind
# --------------------------------------------------------------------------------------------------


class RequestKey(NamedTuple):
    """A telecommand's identity in its verification reports: (APID, packet sequence count)."""

    apid: int
    sequence_count: int

    def __str__(self) -> str:
        return f"({self.apid:#05x}, {self.sequence_count})"


class Stage(StrEnum):
    ACCEPTANCE = "acceptance"
    START = "start"
    COMPLETION = "completion"


_STAGES: Mapping[int, tuple[Stage, bool]] = MappingProxyType(
    {
        VerificationSubtype.ACCEPTANCE_SUCCESS: (Stage.ACCEPTANCE, True),
        VerificationSubtype.ACCEPTANCE_FAILURE: (Stage.ACCEPTANCE, False),
        VerificationSubtype.START_SUCCESS: (Stage.START, True),
        VerificationSubtype.START_FAILURE: (Stage.START, False),
        VerificationSubtype.COMPLETION_SUCCESS: (Stage.COMPLETION, True),
        VerificationSubtype.COMPLETION_FAILURE: (Stage.COMPLETION, False),
    }
)


def _text(data: bytes) -> str:
    """Failure data as the node writes it (UTF-8 words), else as hex."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data.hex(" ")
    return text if text.isprintable() else data.hex(" ")


@dataclass(frozen=True, slots=True)
class Verification:
    """One verification report (1,x). `command` is filled in by the station that sent the TC."""

    request: RequestKey
    stage: Stage
    success: bool
    time: CucTime
    failure_code: int | None = None
    failure_name: str | None = None
    failure_data: bytes = b""
    command: str | None = None

    @property
    def failure_text(self) -> str:
        return _text(self.failure_data)

    @property
    def refuses_a_copy(self) -> bool:
        """A REPLAYED refusal: the node had already accepted a frame with this IV. The station
        never reuses an IV, so for a request it sent this refuses a copy (a network duplicate, or
        a replay by someone else) of a frame that got through: the command itself was accepted,
        and this report says nothing of its outcome."""
        return not self.success and self.failure_name == "REPLAYED"

    def __str__(self) -> str:
        who = f"{self.command} {self.request}" if self.command else f"request {self.request}"
        if self.success:
            return f"{who}: {self.stage} success"
        detail = f": {self.failure_text}" if self.failure_data else ""
        return f"{who}: {self.stage} FAILURE {self.failure_name} ({self.failure_code}){detail}"


@dataclass(frozen=True, slots=True)
class EventMessage:
    """One event report (5,x), its arguments decoded and its format filled in."""

    component: str
    name: str
    id: int
    severity: Severity
    args: Mapping[str, Any]
    text: str
    time: CucTime

    @property
    def qualified_name(self) -> str:
        return f"{self.component}.{self.name}"

    def __str__(self) -> str:
        return f"{self.severity.name:<11} {self.qualified_name}: {self.text}"


@dataclass(frozen=True, slots=True)
class TelemetrySample:
    """One channel's value from a housekeeping report, with its units and limit state."""

    channel: str  # component.NAME
    value: Any
    units: str
    limit: LimitState
    time: CucTime

    def __str__(self) -> str:
        units = f" {self.units}" if self.units else ""
        flag = "" if self.limit is LimitState.NOMINAL else f"  [{self.limit}]"
        return f"{self.channel} = {_value(self.value)}{units}{flag}"


@dataclass(frozen=True, slots=True)
class HousekeepingReport:
    """One (3,25) report: every channel of one component, in declaration order."""

    component: str
    samples: tuple[TelemetrySample, ...]
    time: CucTime


@dataclass(frozen=True, slots=True)
class ParameterSample:
    name: str  # component.NAME
    value: Any

    def __str__(self) -> str:
        return f"{self.name} = {_value(self.value)}"


@dataclass(frozen=True, slots=True)
class ParameterReport:
    """One (20,2) report."""

    values: tuple[ParameterSample, ...]
    time: CucTime

    def __str__(self) -> str:
        return "parameters: " + ", ".join(str(value) for value in self.values)


@dataclass(frozen=True, slots=True)
class PingReply:
    """A (17,2) are-you-alive report."""

    time: CucTime

    def __str__(self) -> str:
        return "ping reply (17,2)"


@dataclass(frozen=True, slots=True)
class OtherPacket:
    """A PUS TM of a service or subtype that the ground does not interpret; kept as it came."""

    service: int
    subtype: int
    source_data: bytes
    time: CucTime

    def __str__(self) -> str:
        return f"TM ({self.service},{self.subtype}), {len(self.source_data)} octets"


Decoded = (
    Verification | EventMessage | HousekeepingReport | ParameterReport | PingReply | OtherPacket
)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


# --------------------------------------------------------------------------------------------------
# The dictionary
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dictionary:
    """A loaded, checked dictionary, with lookups by name and by id."""

    source: str
    spacecraft_id: int
    apid: int
    failure_codes: Mapping[int, str]
    components: Mapping[str, ComponentDef]
    _commands: Mapping[str, CommandDef] = field(repr=False, default_factory=dict)
    _channels: Mapping[str, ChannelDef] = field(repr=False, default_factory=dict)
    _events: Mapping[str, EventDef] = field(repr=False, default_factory=dict)
    _parameters: Mapping[str, ParameterDef] = field(repr=False, default_factory=dict)
    _events_by_id: Mapping[int, EventDef] = field(repr=False, default_factory=dict)
    _parameters_by_id: Mapping[int, ParameterDef] = field(repr=False, default_factory=dict)
    _components_by_id: Mapping[int, ComponentDef] = field(repr=False, default_factory=dict)

    # -- loading -----------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> "Dictionary":
        """Read and check a dictionary file; DictionaryError naming the file and the key."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DictionaryError(
                f"dictionary {path}: no such file; {EXPORT_HINT} -o {path}"
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise DictionaryError(f"dictionary {path}: cannot read it: {reason}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise DictionaryError(
                f"dictionary {path}: not JSON (line {error.lineno}, column {error.colno}: "
                f"{error.msg}); {EXPORT_HINT}"
            ) from None
        return cls.from_document(document, source=str(path))

    @classmethod
    def from_document(cls, document: Any, *, source: str = "<dictionary>") -> "Dictionary":
        """Check a parsed dictionary document (what `json.load` returned)."""
        return _Loader(source).dictionary(document)

    # -- lookups -----------------------------------------------------------------------------------

    def command(self, name: str) -> CommandDef:
        """The command `component.NAME`; UnknownNameError with close matches otherwise."""
        return self._lookup(self._commands, name, "command")

    def channel(self, name: str) -> ChannelDef:
        return self._lookup(self._channels, name, "telemetry channel")

    def event(self, name: str) -> EventDef:
        return self._lookup(self._events, name, "event")

    def parameter(self, name: str) -> ParameterDef:
        return self._lookup(self._parameters, name, "parameter")

    def component(self, name: str) -> ComponentDef:
        return self._lookup(self.components, name, "component")

    def component_by_id(self, component_id: int) -> ComponentDef:
        try:
            return self._components_by_id[component_id]
        except KeyError:
            raise DecodeError(
                f"no component with id {component_id} in dictionary {self.source}"
            ) from None

    def failure_name(self, code: int) -> str:
        return self.failure_codes.get(code, f"UNKNOWN_FAILURE_{code}")

    @property
    def commands(self) -> Mapping[str, CommandDef]:
        return self._commands

    @property
    def channels(self) -> Mapping[str, ChannelDef]:
        return self._channels

    @property
    def events(self) -> Mapping[str, EventDef]:
        return self._events

    @property
    def parameters(self) -> Mapping[str, ParameterDef]:
        return self._parameters

    def _lookup(self, table: Mapping[str, Any], name: str, kind: str) -> Any:
        found = table.get(name)
        if found is not None:
            return found
        suggestions = [known for known in table if known.lower() == name.lower()]
        suggestions += [s for s in _close_names(name, table) if s not in suggestions]
        hint = (
            f"; did you mean {' or '.join(suggestions)}?"
            if suggestions
            else f"; `penumbra ground --dict {self.source} list` shows what it declares"
        )
        if kind != "component" and "." not in name:
            hint += f" (name a {kind} as component.NAME)"
        raise UnknownNameError(f"no {kind} {name!r}{hint}", suggestions)

    # -- commands ----------------------------------------------------------------------------------

    def parse_assignments(self, command: str | CommandDef, words: Iterable[str]) -> dict[str, Any]:
        """`["period_ms=500", ...]` from a command line as typed values for `encode_command`."""
        definition = command if isinstance(command, CommandDef) else self.command(command)
        by_name = {argument.name: argument for argument in definition.arguments}
        values: dict[str, Any] = {}
        for word in words:
            key, equals, text = word.partition("=")
            if not equals or not key:
                raise ArgumentError(
                    f"{definition.qualified_name}: {word!r} is not key=value; "
                    f"usage: {definition.signature()}"
                )
            argument = self._argument(definition, by_name, key)
            if key in values:
                raise ArgumentError(f"{definition.qualified_name}: argument {key} given twice")
            values[key] = _parse(argument.type, text, f"{definition.qualified_name} argument {key}")
        return values

    def encode_command(
        self, command: str | CommandDef, args: Mapping[str, Any] | None = None
    ) -> tuple[CommandDef, bytes]:
        """The command and its TC(8,1) application data: opcode, then arguments in order."""
        definition = command if isinstance(command, CommandDef) else self.command(command)
        args = dict(args or {})
        by_name = {argument.name: argument for argument in definition.arguments}
        for key in args:
            self._argument(definition, by_name, key)
        octets = []
        missing = [a for a in definition.arguments if a.name not in args]
        if missing:
            raise ArgumentError(
                f"{definition.qualified_name}: missing argument"
                f"{'s' if len(missing) > 1 else ''} "
                + ", ".join(f"{a.name} ({a.type.describe()})" for a in missing)
                + f"; usage: {definition.signature()}"
            )
        for argument in definition.arguments:
            what = f"{definition.qualified_name} argument {argument.name}"
            octets.append(_encode(argument.type, args[argument.name], what))
        function = PerformFunction(definition.opcode, b"".join(octets))
        return definition, function.encode()

    @staticmethod
    def _argument(definition: CommandDef, by_name: Mapping[str, Argument], key: str) -> Argument:
        argument = by_name.get(key)
        if argument is not None:
            return argument
        if not by_name:
            raise ArgumentError(f"{definition.qualified_name} takes no arguments; {key!r} given")
        close = difflib.get_close_matches(key, list(by_name), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ArgumentError(
            f"{definition.qualified_name} has no argument {key!r}; {hint}"
            f"usage: {definition.signature()}"
        )

    # -- parameters --------------------------------------------------------------------------------

    def encode_parameter_ids(self, names: Iterable[str]) -> bytes:
        """TC(20,1) application data asking for these parameters' values."""
        ids = tuple(self.parameter(name).id for name in names)
        if not ids:
            raise ArgumentError("name at least one parameter (component.NAME)")
        return ParameterIds(ids).encode()

    def parse_parameter_assignments(self, words: Iterable[str]) -> dict[str, Any]:
        """`["health.PING_PERIOD_MS=500", ...]` as typed values for `encode_parameter_values`."""
        values: dict[str, Any] = {}
        for word in words:
            name, equals, text = word.partition("=")
            if not equals or not name:
                raise ArgumentError(f"{word!r} is not component.NAME=value")
            definition = self.parameter(name)
            values[name] = _parse(definition.type, text, f"parameter {name}")
        return values

    def encode_parameter_values(self, values: Mapping[str, Any]) -> bytes:
        """TC(20,3) application data setting these parameters, each checked against its type."""
        if not values:
            raise ArgumentError("name at least one parameter to set (component.NAME=value)")
        entries = []
        for name, value in values.items():
            definition = self.parameter(name)
            encoded = _encode(definition.type, value, f"parameter {name}")
            entries.append(ParameterValue(definition.id, encoded))
        return ParameterValues(tuple(entries)).encode()

    # -- decoding ----------------------------------------------------------------------------------

    def decode(self, tm: PusTm) -> Decoded:
        """What one TM packet says, by its service and subtype; DecodeError if it cannot be read."""
        try:
            return self._decode(tm)
        except ProtocolError as error:
            raise DecodeError(f"TM ({tm.service},{tm.subtype}): {error}") from None

    def _decode(self, tm: PusTm) -> Decoded:
        service, subtype, data, time = tm.service, tm.subtype, tm.source_data, tm.time
        if service == Service.REQUEST_VERIFICATION and subtype in _STAGES:
            stage, success = _STAGES[subtype]
            if success:
                request_id = VerificationSuccess.decode(data).request_id
                return Verification(
                    RequestKey(request_id.apid, request_id.sequence_count), stage, True, time
                )
            failure = VerificationFailure.decode(data)
            request_id = failure.request_id
            return Verification(
                RequestKey(request_id.apid, request_id.sequence_count),
                stage,
                False,
                time,
                failure.failure_code,
                self.failure_name(failure.failure_code),
                failure.failure_data,
            )
        if service == Service.HOUSEKEEPING and subtype == 25:
            return self._housekeeping(HousekeepingParameterReport.decode(data), time)
        if service == Service.EVENT_REPORTING and subtype in tuple(Severity):
            return self._event(EventReport.decode(data), Severity(subtype), time)
        if service == Service.TEST and subtype == TestSubtype.ARE_YOU_ALIVE_REPORT:
            return PingReply(time)
        if service == Service.PARAMETER_MANAGEMENT and subtype == ParameterSubtype.VALUE_REPORT:
            return self._parameter_report(data, time)
        return OtherPacket(service, subtype, data, time)

    def _housekeeping(self, report: HousekeepingParameterReport, time: CucTime) -> Decoded:
        component = self.component_by_id(report.structure_id)
        data = report.parameter_values
        offset = 0
        samples = []
        for channel in component.channels_in_order:
            what = f"housekeeping of {component.name}, channel {channel.name}"
            value, offset = _decode_from(channel.type, data, offset, what)
            samples.append(
                TelemetrySample(
                    channel.qualified_name,
                    value,
                    channel.units,
                    limit_state(channel.limits, value),
                    time,
                )
            )
        if offset != len(data):
            raise DecodeError(
                f"housekeeping of {component.name} (structure {report.structure_id}): "
                f"{len(data)} octets, its {len(samples)} channels take {offset}; the flight "
                f"software and dictionary {self.source} disagree ({EXPORT_HINT})"
            )
        return HousekeepingReport(component.name, tuple(samples), time)

    def _event(self, report: EventReport, severity: Severity, time: CucTime) -> Decoded:
        definition = self._events_by_id.get(report.event_definition_id)
        if definition is None:
            raise DecodeError(
                f"event id {report.event_definition_id:#06x} is not in dictionary "
                f"{self.source} ({EXPORT_HINT})"
            )
        data = report.auxiliary_data
        offset = 0
        args: dict[str, Any] = {}
        for argument in definition.arguments:
            what = f"event {definition.qualified_name} argument {argument.name}"
            args[argument.name], offset = _decode_from(argument.type, data, offset, what)
        if offset != len(data):
            raise DecodeError(
                f"event {definition.qualified_name}: {len(data)} octets of arguments, its "
                f"declaration takes {offset} ({EXPORT_HINT})"
            )
        try:
            text = definition.format.format(**args)
        except (KeyError, IndexError, ValueError):
            # A format that does not fit its arguments is the flight code's slip: show the facts.
            text = " ".join(f"{k}={_value(v)}" for k, v in args.items()) or definition.name
        return EventMessage(
            definition.component,
            definition.name,
            definition.id,
            severity,
            MappingProxyType(args),
            text,
            time,
        )

    def _parameter_report(self, data: bytes, time: CucTime) -> Decoded:
        def field_of(parameter_id: int) -> Field | None:
            definition = self._parameters_by_id.get(parameter_id)
            return None if definition is None else Field(definition.qualified_name, definition.type)

        try:
            pairs = decode_parameter_values(data, field_of)
        except WireValueError as error:
            raise DecodeError(f"parameter report: {error}") from None
        values = []
        for parameter_id, value in pairs:
            definition = self._parameters_by_id[parameter_id]
            shown = definition.type.name_of(int(value)) if definition.type.kind == "enum" else value
            values.append(ParameterSample(definition.qualified_name, shown))
        return ParameterReport(tuple(values), time)


# --------------------------------------------------------------------------------------------------
# Checking the document
# --------------------------------------------------------------------------------------------------


def _close_names(name: str, table: Mapping[str, Any]) -> list[str]:
    """Close matches of `name`: within its component when that exists (the shared `component.`
    prefix would make every name of it look close), else among all names."""
    component, dot, item = name.partition(".")
    prefix = component + "."
    same = [known[len(prefix) :] for known in table if known.startswith(prefix)]
    if dot and same:
        # A name typed in part ("PING" for PING_PERIOD_MS) first, then spelling mistakes.
        partial = [known for known in same if item and item.lower() in known.lower()]
        close = partial + [
            c for c in difflib.get_close_matches(item, same, n=3) if c not in partial
        ]
        return [prefix + known for known in close[:3]]
    return difflib.get_close_matches(name, list(table), n=3, cutoff=0.75)


_ID_LABELS = {
    "commands": "opcode",
    "telemetry": "channel id",
    "events": "event id",
    "parameters": "parameter id",
}


class _Loader:
    """Walks the JSON document; every complaint names the file and the key path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> DictionaryError:
        return DictionaryError(f"dictionary {self.source}: {where}: {problem}")

    def get(self, obj: Mapping[str, Any], key: str, where: str, kinds: Any, what: str) -> Any:
        if key not in obj:
            raise self.fail(f"{where}.{key}" if where else key, f"missing ({what}); {EXPORT_HINT}")
        value = obj[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool):
            raise self.fail(
                f"{where}.{key}" if where else key,
                f"{type(value).__name__} {value!r:.40}, expected {what}",
            )
        return value

    def optional(
        self, obj: Mapping[str, Any], key: str, where: str, kinds: Any, what: str, default: Any
    ) -> Any:
        return self.get(obj, key, where, kinds, what) if key in obj else default

    def integer(self, obj: Any, key: str, where: str, low: int, high: int) -> int:
        value = self.get(obj, key, where, int, f"an integer {low}..{high}")
        if not low <= value <= high:
            raise self.fail(f"{where}.{key}" if where else key, f"{value} outside {low}..{high}")
        return value

    def mapping(self, obj: Any, key: str, where: str) -> Mapping[str, Any]:
        return self.get(obj, key, where, dict, "an object")

    def dictionary(self, document: Any) -> Dictionary:
        if not isinstance(document, dict):
            raise self.fail("top level", f"{type(document).__name__}, expected a JSON object")
        fmt = self.get(document, "format", "", str, f'the string "{FORMAT}"')
        if fmt != FORMAT:
            raise self.fail(
                "format", f"{fmt!r}: this ground station reads {FORMAT!r}; {EXPORT_HINT}"
            )
        spacecraft_id = self.integer(document, "spacecraft_id", "", 0, 0x3FF)
        apid = self.integer(document, "apid", "", 0, 0x7FE)
        failure_codes: dict[int, str] = {}
        for code, name in self.mapping(document, "failure_codes", "").items():
            where = f"failure_codes.{code}"
            if not code.isdigit() or not 0 <= int(code) <= 0xFFFF:
                raise self.fail(where, "the key must be a failure code 0..65535")
            if not isinstance(name, str) or not name:
                raise self.fail(where, f"{name!r}, expected the code's name")
            failure_codes[int(code)] = name
        components: dict[str, ComponentDef] = {}
        tables: dict[str, dict[str, Any]] = {
            "commands": {},
            "telemetry": {},
            "events": {},
            "parameters": {},
        }
        by_id: dict[str, dict[int, str]] = {kind: {} for kind in (*tables, "components")}
        for name, body in self.mapping(document, "components", "").items():
            where = f"components.{name}"
            if not isinstance(body, dict):
                raise self.fail(where, f"{type(body).__name__}, expected an object")
            component = self.component(name, body, where)
            self._unique(by_id["components"], component.id, name, f"{where}.id", "component id")
            components[name] = component
            for kind in tables:
                for item in getattr(component, kind).values():
                    number = item.opcode if kind == "commands" else item.id
                    key = f"{where}.{kind}.{item.name}"
                    self._unique(by_id[kind], number, item.qualified_name, key, _ID_LABELS[kind])
                    tables[kind][item.qualified_name] = item
        return Dictionary(
            self.source,
            spacecraft_id,
            apid,
            MappingProxyType(failure_codes),
            MappingProxyType(components),
            MappingProxyType(tables["commands"]),
            MappingProxyType(tables["telemetry"]),
            MappingProxyType(tables["events"]),
            MappingProxyType(tables["parameters"]),
            MappingProxyType({e.id: e for e in tables["events"].values()}),
            MappingProxyType({p.id: p for p in tables["parameters"].values()}),
            MappingProxyType({c.id: c for c in components.values()}),
        )

    def _unique(self, seen: dict[int, str], number: int, name: str, where: str, what: str) -> None:
        if number in seen:
            raise self.fail(where, f"{what} {number} is also used by {seen[number]}")
        seen[number] = name

    def component(self, name: str, body: Mapping[str, Any], where: str) -> ComponentDef:
        component_id = self.integer(body, "id", where, 1, 255)
        description = self.optional(body, "description", where, str, "a string", "")
        commands = {}
        for command, spec in self.optional(body, "commands", where, dict, "an object", {}).items():
            at = f"{where}.commands.{command}"
            self._object(spec, at)
            commands[command] = CommandDef(
                name,
                command,
                self.integer(spec, "opcode", at, 0, 0xFFFF),
                self.arguments(spec, at, required=True),
                self.optional(spec, "description", at, str, "a string", ""),
            )
        telemetry = {}
        for channel, spec in self.optional(body, "telemetry", where, dict, "an object", {}).items():
            at = f"{where}.telemetry.{channel}"
            self._object(spec, at)
            telemetry[channel] = ChannelDef(
                name,
                channel,
                self.integer(spec, "id", at, 0, 0xFFFF),
                self.wire_type(spec, at),
                self.optional(spec, "units", at, str, "a string", ""),
                self.optional(spec, "description", at, str, "a string", ""),
                self.limits(spec, at),
            )
        events = {}
        for event, spec in self.optional(body, "events", where, dict, "an object", {}).items():
            at = f"{where}.events.{event}"
            self._object(spec, at)
            severity = self.get(spec, "severity", at, str, "INFORMATIVE, LOW, MEDIUM or HIGH")
            if severity not in Severity.__members__:
                raise self.fail(
                    f"{at}.severity", f"{severity!r}, expected INFORMATIVE, LOW, MEDIUM or HIGH"
                )
            events[event] = EventDef(
                name,
                event,
                self.integer(spec, "id", at, 0, 0xFFFF),
                Severity[severity],
                self.get(spec, "format", at, str, "a format string"),
                self.arguments(spec, at, required=False),
                self.optional(spec, "description", at, str, "a string", ""),
            )
        parameters = {}
        for parameter, spec in self.optional(
            body, "parameters", where, dict, "an object", {}
        ).items():
            at = f"{where}.parameters.{parameter}"
            self._object(spec, at)
            parameters[parameter] = ParameterDef(
                name,
                parameter,
                self.integer(spec, "id", at, 0, 0xFFFF),
                self.wire_type(spec, at),
                spec.get("default"),
                self.optional(spec, "description", at, str, "a string", ""),
            )
        return ComponentDef(
            name,
            component_id,
            description,
            MappingProxyType(commands),
            MappingProxyType(telemetry),
            MappingProxyType(events),
            MappingProxyType(parameters),
        )

    def _object(self, spec: Any, where: str) -> None:
        if not isinstance(spec, dict):
            raise self.fail(where, f"{type(spec).__name__}, expected an object")

    def arguments(self, spec: Mapping[str, Any], where: str, *, required: bool) -> tuple:
        if not required and "arguments" not in spec:
            return ()
        items = self.get(spec, "arguments", where, list, "a list of arguments")
        arguments = []
        names: set[str] = set()
        for index, item in enumerate(items):
            at = f"{where}.arguments[{index}]"
            self._object(item, at)
            name = self.get(item, "name", at, str, "the argument's name")
            if name in names:
                raise self.fail(f"{at}.name", f"argument {name!r} declared twice")
            names.add(name)
            arguments.append(
                Argument(
                    name,
                    self.wire_type(item, at),
                    self.optional(item, "description", at, str, "a string", ""),
                )
            )
        return tuple(arguments)

    def wire_type(self, spec: Mapping[str, Any], where: str) -> WireType:
        name = self.get(spec, "type", where, str, "a type name")
        if name not in TYPE_NAMES:
            raise self.fail(f"{where}.type", f"{name!r}, expected one of {', '.join(TYPE_NAMES)}")
        if name == "string":
            self.integer(spec, "max_length", where, 0, 255)
        if name == "enum":
            self.mapping(spec, "values", where)
        try:
            return WireType.from_json(spec)
        except ValueError as error:
            raise self.fail(where, str(error)) from None

    def limits(self, spec: Mapping[str, Any], where: str) -> Limits:
        table = self.optional(spec, "limits", where, dict, "an object", {})
        for key in LIMIT_KEYS:
            if key in table:
                self.get(table, key, f"{where}.limits", (int, float), "a number")
        try:
            return Limits.from_json(table)
        except ValueError as error:
            raise self.fail(
                f"{where}.limits", f"{error}; the keys are {', '.join(LIMIT_KEYS)}"
            ) from None
