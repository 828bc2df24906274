"""Modes: the boot rule, commanded changes, and every change announced."""

import pytest

from flight.runtime import clock
from flight.runtime.component import CommandError, Mode
from flight.runtime.components.mode import ModeManager
from flight.runtime.types import WireValueError


class Context:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def emit(self, component, event, arguments, text) -> None:  # type: ignore[no-untyped-def]
        self.events.append((event.name, text))

    def mode(self) -> Mode:
        return Mode.BOOT


def manager() -> tuple[ModeManager, Context]:
    mode = ModeManager()
    context = Context()
    mode.attach(1, context)
    return mode, context


def test_a_clean_boot_goes_boot_safe_nominal() -> None:
    mode, context = manager()
    mode.boot(7, [])
    assert mode.current is Mode.NOMINAL
    assert mode.telemetry.BOOT_COUNT == 7
    assert mode.telemetry.TRANSITIONS == 2
    assert context.events == [
        ("MODE_CHANGED", "mode BOOT -> SAFE: boot 7"),
        ("MODE_CHANGED", "mode SAFE -> NOMINAL: configuration and parameter store valid"),
    ]


def test_a_boot_with_problems_stays_in_safe_and_says_why() -> None:
    mode, context = manager()
    mode.boot(1, ["parameter store: corrupt", "uplink state: corrupt"])
    assert mode.current is Mode.SAFE
    assert context.events[-1] == (
        "BOOTED_SAFE",
        "boot stays in SAFE: parameter store: corrupt; uplink state: corrupt",
    )


def test_set_mode_changes_mode_and_a_repeat_changes_nothing() -> None:
    mode, context = manager()
    mode.boot(1, [])
    seen = []
    mode.listeners.append(lambda previous, current: seen.append((previous, current)))

    async def main() -> None:
        await mode.SET_MODE(Mode.SAFE)
        await mode.SET_MODE(Mode.SAFE)

    clock.run(main(), virtual=True)
    assert mode.current is Mode.SAFE
    assert seen == [(Mode.NOMINAL, Mode.SAFE)]
    assert context.events[-1] == ("MODE_CHANGED", "mode NOMINAL -> SAFE: commanded")


def test_set_mode_refuses_while_booting() -> None:
    mode, _ = manager()

    async def main() -> None:
        with pytest.raises(CommandError, match="still booting"):
            await mode.SET_MODE(Mode.NOMINAL)

    clock.run(main(), virtual=True)


def test_low_power_and_boot_are_not_commandable() -> None:
    [argument] = ModeManager.declarations.command("SET_MODE").arguments
    assert argument.type.values == (("SAFE", 1), ("NOMINAL", 2))
    with pytest.raises(WireValueError, match="mode: 3 is not one of SAFE"):
        argument.decode_from(b"\x03")
    assert dict(ModeManager.MODE.type.values)["LOW_POWER"] == 3  # declared for telemetry
