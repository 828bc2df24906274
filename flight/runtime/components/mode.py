"""Modes: BOOT, then SAFE, then NOMINAL; by command, and by rule (a bad boot or a fatal health state
sends the node to SAFE). LOW_POWER is declared for the power manager to come."""

from collections.abc import Callable

from flight.runtime.component import (
    Arg,
    CommandError,
    Component,
    Event,
    Mode,
    Severity,
    Telemetry,
    command,
)

_COMMANDABLE = {"SAFE": int(Mode.SAFE), "NOMINAL": int(Mode.NOMINAL)}


class ModeManager(Component):
    """The node's mode: BOOT, SAFE, NOMINAL (LOW_POWER reserved), by command and by rule."""

    MODE = Telemetry("enum", values=Mode, doc="The mode the node is in.")
    TRANSITIONS = Telemetry("u32", doc="Mode changes since boot.")
    BOOT_COUNT = Telemetry("u32", doc="This boot's number: persisted, it never repeats.")

    MODE_CHANGED = Event(
        Severity.MEDIUM,
        "mode {previous} -> {mode}: {reason}",
        previous=Arg("enum", values=Mode),
        mode=Arg("enum", values=Mode),
        reason=Arg("string", max_length=96),
    )
    BOOTED_SAFE = Event(
        Severity.HIGH,
        "boot stays in SAFE: {reason}",
        reason=Arg("string", max_length=160),
    )

    def __init__(self, name: str = "mode") -> None:
        super().__init__(name)
        self.current = Mode.BOOT
        self.listeners: list[Callable[[Mode, Mode], None]] = []  # told of every change

    def enter(self, mode: Mode, reason: str) -> bool:
        """Change to `mode` for `reason` (an event says so); False if already there."""
        mode = Mode(mode)
        previous = self.current
        if mode is previous:
            return False
        self.current = mode
        self.telemetry.MODE = mode
        self.telemetry.TRANSITIONS = (self.telemetry.TRANSITIONS + 1) & 0xFFFF_FFFF
        self.emit(self.MODE_CHANGED, previous=previous, mode=mode, reason=reason)
        for listener in list(self.listeners):
            listener(previous, mode)
        return True

    def boot(self, boot_count: int, problems: list[str]) -> None:
        """The boot rule: BOOT -> SAFE, then NOMINAL only if nothing went wrong at boot."""
        self.telemetry.BOOT_COUNT = boot_count & 0xFFFF_FFFF
        self.enter(Mode.SAFE, f"boot {boot_count}")
        if problems:
            self.emit(self.BOOTED_SAFE, reason="; ".join(problems))
            return
        self.enter(Mode.NOMINAL, "configuration and parameter store valid")

    @command(mode=Arg("enum", values=_COMMANDABLE, doc="SAFE or NOMINAL."))
    async def SET_MODE(self, mode: int) -> None:
        """Change the node's mode to SAFE or NOMINAL."""
        target = Mode(mode)
        if self.current is Mode.BOOT:
            raise CommandError("still booting: try again once the boot has finished")
        self.enter(target, "commanded")  # already there: nothing to do, and no failure
