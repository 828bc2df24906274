"""The component model: declarations numbered once, checked at import, served by one task."""

import asyncio
from dataclasses import dataclass, field

import pytest

from flight.runtime import clock
from flight.runtime.component import (
    Arg,
    CommandError,
    CommandRequest,
    Component,
    DeclarationError,
    Event,
    FailureCode,
    Mode,
    Parameter,
    Ping,
    Severity,
    Telemetry,
    command,
    rate_group,
)
from flight.runtime.types import Limits, WireValueError


class Heater(Component):
    """A heater with a set point: a component as a test would write one."""

    POWER_W = Telemetry("f32", units="W", limits=Limits(yellow_high=10, red_high=12))
    STATE = Telemetry("enum", values={"OFF": 0, "ON": 1})
    SWITCHED = Event(
        Severity.INFORMATIVE,
        "heater {name} switched {state}",
        name=Arg("string", max_length=8),
        state=Arg("enum", values={"OFF": 0, "ON": 1}),
    )
    SET_POINT_C = Parameter("f32", default=20.0, minimum=-40.0, maximum=60.0)

    def __init__(self) -> None:
        super().__init__("heater")
        self.changed: list[tuple[str, object]] = []
        self.release = asyncio.Event()

    @command(on=Arg("bool"))
    async def SWITCH(self, on: bool) -> None:
        """Switch the heater."""
        self.telemetry.STATE = "ON" if on else "OFF"

    @command(allowed_modes={Mode.NOMINAL})
    def BURN_IN(self) -> None:
        """Only in NOMINAL."""

    @command(reason=Arg("string", max_length=64))
    async def FAIL(self, reason: str) -> None:
        """Fail on purpose."""
        raise CommandError(reason)

    @command
    async def CRASH(self) -> None:
        """A bug in a handler."""
        raise ZeroDivisionError("oops")

    @command
    async def HANG(self) -> None:
        """Wait until released (a stuck handler)."""
        await self.release.wait()

    @rate_group("1Hz")
    def tick(self) -> None:
        pass

    def parameter_changed(self, parameter: Parameter, value: object) -> None:
        self.changed.append((parameter.name, value))


@dataclass
class Reports:
    """What a command's reporter was told, in order."""

    said: list[tuple[str, object, str]] = field(default_factory=list)

    def start_success(self) -> None:
        self.said.append(("start", None, ""))

    def start_failure(self, code: FailureCode, reason: str) -> None:
        self.said.append(("start_failure", code, reason))

    def completion_success(self) -> None:
        self.said.append(("done", None, ""))

    def completion_failure(self, code: FailureCode, reason: str) -> None:
        self.said.append(("failed", code, reason))


class Context:
    def __init__(self, mode: Mode = Mode.NOMINAL) -> None:
        self.events: list[tuple[str, bytes, str]] = []
        self.current = mode

    def emit(self, component: Component, event: Event, arguments: bytes, text: str) -> None:
        self.events.append((event.name, arguments, text))

    def mode(self) -> Mode:
        return self.current


def attached(mode: Mode = Mode.NOMINAL) -> tuple[Heater, Context]:
    heater = Heater()
    context = Context(mode)
    heater.attach(0x21, context)
    return heater, context


def run_command(heater: Heater, name: str, **arguments: object) -> list:
    """Queue one command and let the component's task serve it."""
    reports = Reports()

    async def main() -> None:
        definition = Heater.declarations.command(name)
        assert heater.submit(CommandRequest(definition, arguments, reports))
        task = asyncio.create_task(heater.serve())
        while heater.pending():
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()

    clock.run(main(), virtual=True)
    return reports.said


def test_base_declarations_come_first_in_contract_order() -> None:
    declarations = Heater.declarations
    assert [c.name for c in declarations.commands][:2] == ["NOOP", "RESET_COUNTERS"]
    assert [c.name for c in declarations.commands][2:] == [
        "SWITCH",
        "BURN_IN",
        "FAIL",
        "CRASH",
        "HANG",
    ]
    assert [t.name for t in declarations.telemetry] == [
        "COMMANDS_ACCEPTED",
        "COMMANDS_REJECTED",
        "POWER_W",
        "STATE",
    ]
    heater, _ = attached()
    assert heater.opcode("NOOP") == 0x2100
    assert heater.opcode("SWITCH") == 0x2102
    assert heater.telemetry_id(Heater.POWER_W) == 0x2102
    assert heater.event_id(Heater.SWITCHED) == 0x2100
    assert heater.parameter_id(Heater.SET_POINT_C) == 0x2100
    assert declarations.rate_group_members == (("1Hz", "tick"),)
    assert heater.description == "A heater with a set point: a component as a test would write one."


def test_a_handler_whose_parameters_differ_from_its_arguments_is_refused() -> None:
    with pytest.raises(
        DeclarationError, match=r"takes \(level\) but declares the arguments \(on\)"
    ):

        class Bad(Component):
            @command(on=Arg("bool"))
            def SWITCH(self, level: int) -> None: ...


def test_declaring_a_name_twice_is_refused() -> None:
    with pytest.raises(DeclarationError, match="NOOP is declared in Component and again in Bad"):

        class Bad(Component):
            @command
            def NOOP(self) -> None: ...


def test_replacing_a_base_command_handler_is_refused() -> None:
    with pytest.raises(DeclarationError, match="replaces the handler of the command NOOP"):

        class Bad(Component):
            def NOOP(self) -> None: ...


def test_declared_names_are_upper_snake_case() -> None:
    with pytest.raises(DeclarationError, match="UPPER_SNAKE_CASE"):

        class Bad(Component):
            power = Telemetry("f32")


def test_an_event_format_must_name_only_its_arguments() -> None:
    with pytest.raises(DeclarationError, match="names something its arguments do not"):
        Event(Severity.LOW, "{who} did it", what=Arg("u8"))


def test_a_parameter_default_must_fit_its_declaration() -> None:
    with pytest.raises(DeclarationError, match="is above the maximum 60"):
        Parameter("f32", default=100.0, maximum=60.0)


def test_telemetry_values_are_checked_when_set() -> None:
    heater, _ = attached()
    heater.telemetry.POWER_W = 5.5
    assert heater.telemetry.POWER_W == 5.5
    with pytest.raises(WireValueError, match=r"heater.STATE: 'WARM' is not one of"):
        heater.telemetry.STATE = "WARM"
    with pytest.raises(AttributeError, match="heater has no telemetry channel VOLTAGE"):
        heater.telemetry.VOLTAGE = 1.0
    # The housekeeping report: every channel, in declared order.
    assert heater.telemetry.encode() == bytes(8) + bytes.fromhex("40b00000") + b"\x00"


def test_emit_encodes_arguments_in_order_and_cuts_long_strings() -> None:
    heater, context = attached()
    heater.emit(heater.SWITCHED, state="ON", name="front-left-1")
    [(name, arguments, text)] = context.events
    assert name == "SWITCHED"
    assert arguments == b"\x08front-le\x01"
    assert text == "heater front-le switched ON"
    with pytest.raises(WireValueError, match=r"SWITCHED\.state: missing"):
        heater.emit(heater.SWITCHED, name="x")


def test_parameters_are_read_as_attributes_and_set_through_a_check() -> None:
    heater, _ = attached()
    assert heater.parameters.SET_POINT_C == 20.0
    heater.set_parameter(heater.SET_POINT_C, 25)
    assert heater.parameters.SET_POINT_C == 25.0
    assert heater.changed == [("SET_POINT_C", 25.0)]
    with pytest.raises(WireValueError, match="SET_POINT_C: 99 is above the maximum 60"):
        heater.set_parameter(heater.SET_POINT_C, 99)
    with pytest.raises(AttributeError, match="set through set_parameter"):
        heater.parameters.SET_POINT_C = 1.0


def test_a_command_starts_runs_and_completes_counted() -> None:
    heater, _ = attached()
    assert run_command(heater, "SWITCH", on=True) == [("start", None, ""), ("done", None, "")]
    assert heater.telemetry.STATE == 1
    assert heater.telemetry.COMMANDS_ACCEPTED == 1


def test_command_error_fails_completion_with_code_5_and_the_reason() -> None:
    heater, _ = attached()
    said = run_command(heater, "FAIL", reason="valve stuck")
    assert said == [("start", None, ""), ("failed", FailureCode.EXECUTION_FAILED, "valve stuck")]
    assert heater.telemetry.COMMANDS_REJECTED == 1


def test_a_bug_in_a_handler_fails_the_command_and_the_task_goes_on() -> None:
    heater, _ = attached()
    said = run_command(heater, "CRASH")
    assert said[-1] == (
        "failed",
        FailureCode.EXECUTION_FAILED,
        "internal error ZeroDivisionError: oops",
    )
    assert run_command(heater, "NOOP")[-1] == ("done", None, "")


def test_a_command_outside_its_modes_fails_to_start_with_code_6() -> None:
    heater, _ = attached(Mode.SAFE)
    said = run_command(heater, "BURN_IN")
    assert said == [
        ("start_failure", FailureCode.REFUSED_IN_MODE, "BURN_IN runs in NOMINAL, mode is SAFE")
    ]


def test_reset_counters_zeroes_them_and_is_not_counted_itself() -> None:
    heater, _ = attached()
    run_command(heater, "NOOP")
    run_command(heater, "FAIL", reason="x")
    run_command(heater, "RESET_COUNTERS")
    assert (heater.telemetry.COMMANDS_ACCEPTED, heater.telemetry.COMMANDS_REJECTED) == (0, 0)


def test_pings_are_answered_by_the_task_and_not_while_a_handler_hangs() -> None:
    heater, _ = attached()
    reports = Reports()

    async def main() -> None:
        task = asyncio.create_task(heater.serve())
        heater.submit(Ping(1))
        await asyncio.sleep(0.1)
        assert heater.last_pong == 1
        heater.submit(CommandRequest(Heater.declarations.command("HANG"), {}, reports))
        heater.submit(Ping(2))
        await asyncio.sleep(10)
        assert heater.last_pong == 1  # stuck in HANG: the ping waits
        heater.release.set()
        await asyncio.sleep(0.1)
        assert heater.last_pong == 2
        task.cancel()

    clock.run(main(), virtual=True)
    assert reports.said == [("start", None, ""), ("done", None, "")]


def test_a_cancelled_handler_reports_its_failure() -> None:
    heater, _ = attached()
    reports = Reports()

    async def main() -> None:
        task = asyncio.create_task(heater.serve())
        heater.submit(CommandRequest(Heater.declarations.command("HANG"), {}, reports))
        await asyncio.sleep(1)
        task.cancel()
        await asyncio.sleep(0)

    clock.run(main(), virtual=True)
    assert reports.said[-1] == (
        "failed",
        FailureCode.EXECUTION_FAILED,
        "HANG aborted: task stopped",
    )


def test_a_full_queue_refuses_more() -> None:
    heater, _ = attached()
    for sequence in range(Heater.QUEUE_DEPTH):
        assert heater.submit(Ping(sequence))
    assert not heater.submit(Ping(99))


def test_component_names_are_lower_snake_case() -> None:
    with pytest.raises(ValueError, match="lower_snake_case"):
        Component("Heater")
    assert Component().name == "component"
