"""Components declared once (commands, telemetry, events, parameters), and the task serving them.

A component is a class in the shape of a cFS app: its declarations at the top, one method per
command named as the command, so a reader finds any handler by its name alone::

    class Health(Component):
        \"\"\"Ping-based liveness of every component.\"\"\"

        CPU_PERCENT = Telemetry("f32", units="%", limits=Limits(yellow_high=80, red_high=95))
        PING_LATE = Event(Severity.LOW, "{component} missed {missed} pings",
                          component=Arg("string", max_length=32), missed=Arg("u8"))
        PING_PERIOD_MS = Parameter("u32", default=1000, minimum=100, maximum=60_000)

        @command(period_ms=Arg("u32", minimum=100, maximum=60_000))
        async def SET_PING_PERIOD(self, period_ms: int) -> None:
            \"\"\"Ping every component this often.\"\"\"

Declarations are numbered in declaration order, the base class's first (each kind from 0): the
opcode of a command, and the id of a channel, event or parameter, is `component_id << 8 | index`.
Every component inherits NOOP and RESET_COUNTERS, and the COMMANDS_ACCEPTED and COMMANDS_REJECTED
channels. Commands run one at a time on the component's own task, which also answers health
pings, so a handler that never returns shows up as missed pings.
"""

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, Protocol

from flight.runtime.types import Field, Limits, Value, WireType, WireValueError

MAX_DECLARATIONS = 256  # the index is the low octet of an opcode or id
_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_INSTANCE_NAME = re.compile(r"[a-z][a-z0-9_]*")


class Severity(IntEnum):
    """Event severity: the PUS service 5 report subtype that carries the event."""

    INFORMATIVE = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4


class Mode(IntEnum):
    """The node's modes. LOW_POWER is reserved: declared now, entered by the power manager later."""

    BOOT = 0
    SAFE = 1
    NOMINAL = 2
    LOW_POWER = 3


class FailureCode(IntEnum):
    """Verification failure codes (u16) of the service 1 reports; the dictionary lists them."""

    UNKNOWN_SERVICE = 1
    UNKNOWN_OPCODE = 2
    BAD_ARGUMENTS = 3
    MALFORMED_PACKET = 4
    EXECUTION_FAILED = 5
    REFUSED_IN_MODE = 6
    AUTHENTICATION_FAILED = 7
    REPLAYED = 8
    UNKNOWN_PARAMETER = 9
    BUSY = 10


class CommandError(Exception):
    """A command that could not be carried out: its message (the first 64 UTF-8 octets go to the
    ground in the completion failure report) says why."""


class DeclarationError(TypeError):
    """A component class whose declarations are inconsistent (a bug found at import time)."""


# -- declarations ------------------------------------------------------------------------------


def _wire_type(
    kind: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    max_length: int | None = None,
    values: type[IntEnum] | Mapping[str, int] | None = None,
) -> WireType:
    if kind == "enum":
        if values is None:
            raise DeclarationError("an enum declaration needs values= (an IntEnum or a table)")
        if isinstance(values, type) and issubclass(values, IntEnum):
            return WireType("enum", python_enum=values)
        return WireType("enum", values=tuple(values.items()))
    if values is not None:
        raise DeclarationError(f"values= is for enums, not {kind}")
    return WireType(kind, minimum, maximum, max_length)


@dataclass(frozen=True, slots=True)
class Arg:
    """A command or event argument: a wire type with its constraints and what it means."""

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    values: type[IntEnum] | Mapping[str, int] | None = None
    doc: str = ""
    type: WireType = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "type",
            _wire_type(
                self.kind,
                minimum=self.minimum,
                maximum=self.maximum,
                max_length=self.max_length,
                values=self.values,
            ),
        )

    def field(self, name: str) -> Field:
        return Field(name, self.type, self.doc)


class _Declaration:
    """A class attribute naming itself: the attribute name is the declared name."""

    kind_name: ClassVar[str] = "declaration"

    def __init__(self) -> None:
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        # Checked in _collect: an exception here would reach the user wrapped in a RuntimeError.
        self.name = name


class Telemetry(_Declaration):
    """A telemetry channel: reported in the component's housekeeping packet, in declared order."""

    kind_name = "telemetry channel"

    def __init__(
        self,
        kind: str,
        *,
        units: str = "",
        limits: Limits | None = None,
        doc: str = "",
        minimum: float | None = None,
        maximum: float | None = None,
        max_length: int | None = None,
        values: type[IntEnum] | Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.type = _wire_type(
            kind, minimum=minimum, maximum=maximum, max_length=max_length, values=values
        )
        self.units = units
        self.limits = limits
        self.doc = doc

    @property
    def field(self) -> Field:
        return Field(self.name, self.type, self.doc)


class Event(_Declaration):
    """An event: a severity, a format for people and typed arguments for the wire."""

    kind_name = "event"

    def __init__(self, severity: Severity, format: str, *, doc: str = "", **arguments: Arg) -> None:
        super().__init__()
        self.severity = Severity(severity)
        self.format = format
        self.doc = doc
        for name, argument in arguments.items():
            if not isinstance(argument, Arg):
                raise DeclarationError(f"event argument {name} must be an Arg(...)")
        self.arguments = tuple(argument.field(name) for name, argument in arguments.items())
        try:
            format.format(**{a.name: a.type.default() for a in self.arguments})
        except (KeyError, IndexError, ValueError) as error:
            raise DeclarationError(
                f"event format {format!r} names something its arguments do not: {error}"
            ) from None

    def text(self, values: Mapping[str, Value]) -> str:
        """The event in words, enum values by name."""
        shown = {}
        for argument in self.arguments:
            value = values[argument.name]
            if argument.type.kind == "enum":
                value = argument.type.name_of(int(value))  # type: ignore[arg-type]
            shown[argument.name] = value
        return self.format.format(**shown)


class Parameter(_Declaration):
    """A parameter: a typed value with a default, set by the ground (20,3) and saved by
    `params.SAVE`; read with `self.parameters.NAME`."""

    kind_name = "parameter"

    def __init__(
        self,
        kind: str,
        *,
        default: Value,
        doc: str = "",
        minimum: float | None = None,
        maximum: float | None = None,
        max_length: int | None = None,
        values: type[IntEnum] | Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self.type = _wire_type(
            kind, minimum=minimum, maximum=maximum, max_length=max_length, values=values
        )
        self.doc = doc
        try:
            self.default = self.type.check(default)
        except WireValueError as error:
            raise DeclarationError(f"parameter default {default!r}: {error}") from None

    @property
    def field(self) -> Field:
        return Field(self.name, self.type, self.doc)


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What `@command` attaches to a handler: its arguments and the modes it may run in."""

    arguments: tuple[Field, ...]
    modes: frozenset[Mode] | None


def command(
    function: Callable[..., Any] | None = None,
    /,
    *,
    allowed_modes: Collection[Mode] | None = None,
    **arguments: Arg,
) -> Any:
    """Declare a method as the handler of the command of the same name.

    `@command` alone for a command without arguments; `@command(name=Arg(...), ...)` with them,
    in wire order; `allowed_modes={Mode.NOMINAL}` refuses it (failure 6) in any other mode.
    The method's parameters must be the declared arguments, in the same order. It may be a
    coroutine or a plain function; it raises `CommandError` to fail with a reason.
    """
    for name, argument in arguments.items():
        if not isinstance(argument, Arg):
            raise DeclarationError(f"command argument {name} must be an Arg(...), not {argument!r}")
    spec = CommandSpec(
        tuple(argument.field(name) for name, argument in arguments.items()),
        None if allowed_modes is None else frozenset(Mode(m) for m in allowed_modes),
    )

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        method.__penumbra_command__ = spec  # type: ignore[attr-defined]
        return method

    return mark(function) if function is not None else mark


def rate_group(group: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Run this method (no arguments; plain or coroutine) in rate group `group` ("10Hz", "1Hz",
    "0.1Hz"), in declaration order after earlier components' members."""

    def mark(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
        method.__penumbra_rate_group__ = group  # type: ignore[attr-defined]
        return method

    return mark


# -- the declarations of a class, numbered ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandDefinition:
    name: str
    index: int
    arguments: tuple[Field, ...]
    modes: frozenset[Mode] | None
    description: str


@dataclass(frozen=True, slots=True)
class Declarations:
    """A component class's declarations in index order, and its rate-group members."""

    commands: tuple[CommandDefinition, ...]
    telemetry: tuple[Telemetry, ...]
    events: tuple[Event, ...]
    parameters: tuple[Parameter, ...]
    rate_group_members: tuple[tuple[str, str], ...]  # (group, method name)

    def command(self, name: str) -> CommandDefinition:
        for definition in self.commands:
            if definition.name == name:
                return definition
        raise KeyError(name)


def _doc(obj: object) -> str:
    text = inspect.getdoc(obj) or ""
    return " ".join(text.strip().split("\n\n")[0].split())


def _collect(cls: type) -> Declarations:
    """Number the declarations of `cls`: base classes' first, then in definition order."""
    commands: dict[str, CommandDefinition] = {}
    kinds: dict[type, dict[str, _Declaration]] = {Telemetry: {}, Event: {}, Parameter: {}}
    members: dict[str, str] = {}
    seen: dict[str, str] = {}  # name -> class that declared it
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            spec = getattr(value, "__penumbra_command__", None)
            is_declaration = isinstance(value, _Declaration) or spec is not None
            if not is_declaration:
                if name in commands:
                    raise DeclarationError(
                        f"{klass.__name__}.{name} replaces the handler of the command {name} "
                        "declared in a base class: a component declares each name once"
                    )
                group = getattr(value, "__penumbra_rate_group__", None)
                if group is not None:
                    members[name] = group
                continue
            if name in seen and seen[name] != klass.__name__:
                raise DeclarationError(
                    f"{cls.__name__}.{name} is declared in {seen[name]} and again in "
                    f"{klass.__name__}: a component declares each name once"
                )
            seen[name] = klass.__name__
            if not _NAME.fullmatch(name):
                raise DeclarationError(
                    f"{klass.__name__}.{name}: declared names are UPPER_SNAKE_CASE "
                    "(they are the names the ground uses)"
                )
            if spec is not None:
                _check_handler(klass, name, value, spec)
                commands[name] = CommandDefinition(
                    name, len(commands), spec.arguments, spec.modes, _doc(value)
                )
            else:
                kinds[type(value)][name] = value
    declarations = Declarations(
        tuple(commands.values()),
        tuple(kinds[Telemetry].values()),  # type: ignore[arg-type]
        tuple(kinds[Event].values()),  # type: ignore[arg-type]
        tuple(kinds[Parameter].values()),  # type: ignore[arg-type]
        tuple((group, name) for name, group in members.items()),
    )
    for what, items in (
        ("commands", declarations.commands),
        ("telemetry channels", declarations.telemetry),
        ("events", declarations.events),
        ("parameters", declarations.parameters),
    ):
        if len(items) > MAX_DECLARATIONS:
            raise DeclarationError(
                f"{cls.__name__} declares {len(items)} {what}; at most {MAX_DECLARATIONS} fit"
            )
    return declarations


def _check_handler(klass: type, name: str, method: Any, spec: CommandSpec) -> None:
    parameters = list(inspect.signature(method).parameters)[1:]
    declared = [argument.name for argument in spec.arguments]
    if parameters != declared:
        raise DeclarationError(
            f"{klass.__name__}.{name} takes ({', '.join(parameters)}) but declares the "
            f"arguments ({', '.join(declared)}): they must match, in wire order"
        )


# -- values at run time -------------------------------------------------------------------------


class TelemetryValues:
    """A component's current channel values: `component.telemetry.NAME = value` (checked)."""

    __slots__ = ("_channels", "_owner", "_values")

    def __init__(self, owner: str, channels: Sequence[Telemetry]) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_channels", {c.name: c for c in channels})
        object.__setattr__(self, "_values", {c.name: c.type.default() for c in channels})

    def __getattr__(self, name: str) -> Value:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self._owner} has no telemetry channel {name}") from None

    def __setattr__(self, name: str, value: Value) -> None:
        channel = self._channels.get(name)
        if channel is None:
            raise AttributeError(f"{self._owner} has no telemetry channel {name}")
        current = self._values[name]
        if type(value) is type(current) and value == current:
            return  # unchanged: already checked (most channels, most ticks)
        try:
            self._values[name] = channel.type.check(value)
        except WireValueError as error:
            raise WireValueError(f"{self._owner}.{name}", error.reason) from None

    def get(self, name: str) -> Value:
        return self._values[name]

    def encode(self) -> bytes:
        """Every channel in declared order: the parameter values of the housekeeping report."""
        return b"".join(c.type.encode(self._values[n]) for n, c in self._channels.items())


class ParameterValues:
    """A component's current parameter values: `component.parameters.NAME` (read-only here)."""

    __slots__ = ("_definitions", "_owner", "_values")

    def __init__(self, owner: str, parameters: Sequence[Parameter]) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_definitions", {p.name: p for p in parameters})
        object.__setattr__(self, "_values", {p.name: p.default for p in parameters})

    def __getattr__(self, name: str) -> Value:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self._owner} has no parameter {name}") from None

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"{self._owner}.{name}: parameters are set through set_parameter (checked, reported)"
        )

    def get(self, name: str) -> Value:
        return self._values[name]

    def _set(self, name: str, value: Value) -> None:
        self._values[name] = value


# -- the context a node gives its components ----------------------------------------------------


class Reporter(Protocol):
    """Verification reports for one command (honouring its acknowledgement flags)."""

    def start_success(self) -> None: ...
    def start_failure(self, code: FailureCode, reason: str) -> None: ...
    def completion_success(self) -> None: ...
    def completion_failure(self, code: FailureCode, reason: str) -> None: ...


class ComponentContext(Protocol):
    """What a running component reaches of the node: the event sink and the current mode."""

    def emit(self, component: "Component", event: Event, arguments: bytes, text: str) -> None: ...

    def mode(self) -> Mode: ...


class DetachedContext:
    """The context of a component not (yet) in a node: events go to the log, the mode is BOOT."""

    def __init__(self) -> None:
        self._log = logging.getLogger("flight.runtime.component")

    def emit(self, component: "Component", event: Event, arguments: bytes, text: str) -> None:
        self._log.info("%s %s %s: %s", component.name, event.severity.name, event.name, text)

    def mode(self) -> Mode:
        return Mode.BOOT


@dataclass(frozen=True, slots=True)
class Ping:
    """A health ping, answered by the component's own task when it takes it from its queue."""

    sequence: int


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A command accepted for this component, waiting in its queue."""

    definition: CommandDefinition
    arguments: Mapping[str, Value]
    reporter: Reporter


# -- the component ------------------------------------------------------------------------------


class Component:
    """A component: declarations, one handler per command, a queue served by its own task.

    Subclasses declare at the top and may define `async def run(self)` (a long-running task,
    restarted if it raises) and `@rate_group(...)` members. The node attaches each instance with
    an id and a context, then starts its tasks.
    """

    COMMANDS_ACCEPTED = Telemetry("u32", doc="Commands this component completed successfully.")
    COMMANDS_REJECTED = Telemetry(
        "u32", doc="Commands to this component refused at acceptance or start, or failed."
    )

    QUEUE_DEPTH: ClassVar[int] = 16
    """Commands and pings waiting for the component's task; a full queue refuses with BUSY."""

    declarations: ClassVar[Declarations]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.declarations = _collect(cls)

    def __init__(self, name: str | None = None) -> None:
        if name is None:
            name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(self).__name__).lower()
        if not _INSTANCE_NAME.fullmatch(name):
            raise ValueError(f"component name {name!r} must be lower_snake_case")
        self.name = name
        self.component_id = 0
        self.context: ComponentContext = DetachedContext()
        declarations = type(self).declarations
        self.telemetry = TelemetryValues(name, declarations.telemetry)
        self.parameters = ParameterValues(name, declarations.parameters)
        self.log = logging.getLogger(f"flight.runtime.{name}")
        self.last_pong = -1  # sequence of the last ping this component's task answered
        self.restarts = 0  # times health restarted this component's tasks
        self._queue: asyncio.Queue[Ping | CommandRequest] = asyncio.Queue(self.QUEUE_DEPTH)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} id {self.component_id}>"

    @property
    def description(self) -> str:
        return _doc(type(self))

    def attach(self, component_id: int, context: ComponentContext) -> None:
        """Join a node as `component_id` (1..255)."""
        if not 1 <= component_id <= 255:
            raise ValueError(f"component {self.name}: id {component_id} outside 1..255")
        self.component_id = component_id
        self.context = context

    def bind_node(self, node: Any) -> None:
        """Called once by the Node hosting this component, after its runtime services exist
        (`node.files`, `node.mode`, `node.config`; `node.clock` once started): take what you need.
        """

    # -- ids ------------------------------------------------------------------------------------

    def opcode(self, command_name: str) -> int:
        return self.component_id << 8 | type(self).declarations.command(command_name).index

    def telemetry_id(self, channel: Telemetry) -> int:
        return self.component_id << 8 | type(self).declarations.telemetry.index(channel)

    def event_id(self, event: Event) -> int:
        return self.component_id << 8 | type(self).declarations.events.index(event)

    def parameter_id(self, parameter: Parameter) -> int:
        return self.component_id << 8 | type(self).declarations.parameters.index(parameter)

    # -- what handlers use ------------------------------------------------------------------------

    def emit(self, event: Event, **arguments: object) -> None:
        """Raise `event` with its arguments: encoded for the wire and sent down as a 5,x report.

        Strings longer than declared are cut (a cut message is worth more than a lost one);
        any other value that does not fit is a bug and raises WireValueError naming it.
        """
        if event not in type(self).declarations.events:
            raise ValueError(f"{self.name} does not declare the event {event.name}")
        values: dict[str, Value] = {}
        parts = []
        for argument in event.arguments:
            if argument.name not in arguments:
                raise WireValueError(f"{event.name}.{argument.name}", "missing")
            value = arguments[argument.name]
            if argument.type.kind == "string":
                value = argument.type.truncate(str(value))
            try:
                values[argument.name] = argument.type.check(value)
                parts.append(argument.type.encode(value))
            except WireValueError as error:
                raise WireValueError(f"{event.name}.{argument.name}", error.reason) from None
        extra = set(arguments) - {a.name for a in event.arguments}
        if extra:
            raise WireValueError(f"{event.name}.{sorted(extra)[0]}", "no such event argument")
        self.context.emit(self, event, b"".join(parts), event.text(values))

    @property
    def mode(self) -> Mode:
        return self.context.mode()

    def set_parameter(self, parameter: Parameter, value: object) -> Value:
        """Set a parameter (checked; WireValueError naming it) and tell the component."""
        if parameter not in type(self).declarations.parameters:
            raise ValueError(f"{self.name} does not declare the parameter {parameter.name}")
        try:
            checked = parameter.type.check(value)
        except WireValueError as error:
            raise error.named(parameter.name) from None
        self.parameters._set(parameter.name, checked)
        self.parameter_changed(parameter, checked)
        return checked

    def parameter_changed(self, parameter: Parameter, value: Value) -> None:
        """Called after a parameter changed (by the ground or at load); override to react."""

    def reset_counters(self) -> None:
        """Zero this component's own counters too (RESET_COUNTERS); override to add yours."""

    def count_rejected(self) -> None:
        """A command to this component was refused before it reached the queue."""
        self.telemetry.COMMANDS_REJECTED = (self.telemetry.COMMANDS_REJECTED + 1) & 0xFFFF_FFFF

    # -- the base commands ----------------------------------------------------------------------

    @command
    async def NOOP(self) -> None:
        """Do nothing but count: checks the command path to this component."""

    @command
    async def RESET_COUNTERS(self) -> None:
        """Zero the command counters and the component's own counters."""
        self.telemetry.COMMANDS_ACCEPTED = 0
        self.telemetry.COMMANDS_REJECTED = 0
        self.reset_counters()

    # -- the task --------------------------------------------------------------------------------

    def submit(self, message: Ping | CommandRequest) -> bool:
        """Queue a command or a ping for this component's task; False if the queue is full."""
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    @property
    def has_run(self) -> bool:
        return type(self).run is not Component.run

    async def run(self) -> None:
        """The component's long-running work, if any (override)."""

    def rate_group_members(self) -> list[tuple[str, str, Callable[[], Awaitable[None] | None]]]:
        """(group, member name, bound method) for each `@rate_group` method."""
        return [
            (group, f"{self.name}.{name}", getattr(self, name))
            for group, name in type(self).declarations.rate_group_members
        ]

    async def serve(self) -> None:
        """Take commands and pings from the queue, one at a time, for ever."""
        while True:
            message = await self._queue.get()
            if isinstance(message, Ping):
                self.last_pong = message.sequence
                continue
            await self._execute(message)

    async def _execute(self, request: CommandRequest) -> None:
        definition = request.definition
        reporter = request.reporter
        if definition.modes is not None and self.mode not in definition.modes:
            self.count_rejected()
            allowed = ", ".join(m.name for m in sorted(definition.modes))
            reporter.start_failure(
                FailureCode.REFUSED_IN_MODE,
                f"{definition.name} runs in {allowed}, mode is {self.mode.name}",
            )
            return
        reporter.start_success()
        try:
            result = getattr(self, definition.name)(**request.arguments)
            if inspect.isawaitable(result):
                await result
        except CommandError as error:
            self.count_rejected()
            reporter.completion_failure(FailureCode.EXECUTION_FAILED, str(error))
            return
        except asyncio.CancelledError:
            self.count_rejected()
            reporter.completion_failure(
                FailureCode.EXECUTION_FAILED, f"{definition.name} aborted: task stopped"
            )
            raise
        except Exception as error:  # a bug in a handler must not take the component down
            self.count_rejected()
            self.log.exception("%s.%s raised", self.name, definition.name)
            reporter.completion_failure(
                FailureCode.EXECUTION_FAILED, f"internal error {type(error).__name__}: {error}"
            )
            return
        if definition.name != "RESET_COUNTERS":
            accepted = self.telemetry.COMMANDS_ACCEPTED
            self.telemetry.COMMANDS_ACCEPTED = (accepted + 1) & 0xFFFF_FFFF
        reporter.completion_success()

    def pending(self) -> int:
        """Messages waiting in the queue."""
        return self._queue.qsize()


Component.declarations = _collect(Component)
