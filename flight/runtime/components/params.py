"""The parameter store: saved parameters loaded at boot, saved on command (F Prime's PRM_SAVE)."""

from collections.abc import Callable, Sequence
from enum import IntEnum

from flight.runtime.component import (
    Arg,
    CommandError,
    Component,
    Event,
    Severity,
    Telemetry,
    command,
)
from flight.runtime.store import Store, StoreError
from flight.runtime.types import WireValueError

RECORD = "parameters"
FORMAT = 1


class Params(Component):
    """The parameter store: every component's parameters loaded at boot and saved by SAVE."""

    LOADED = Telemetry("u16", doc="Parameters taken from the store at boot.")
    SAVES = Telemetry("u32", doc="Times the parameters were saved.")
    STORE_VALID = Telemetry("bool", doc="The store was readable and every value in it valid.")

    STORE_INVALID = Event(
        Severity.HIGH,
        "parameter store not used as saved: {reason}",
        reason=Arg("string", max_length=160),
    )
    SAVED = Event(Severity.INFORMATIVE, "{count} parameters saved", count=Arg("u16"))

    def __init__(self, name: str = "params") -> None:
        super().__init__(name)
        self.store: Store | None = None
        self._components: Callable[[], Sequence[Component]] = list

    def bind(self, store: Store, components: Callable[[], Sequence[Component]]) -> None:
        self.store = store
        self._components = components

    def load(self) -> str | None:
        """Set every component's parameters from the store; the problem in words, if any.

        A missing store leaves the defaults (a first boot). A corrupt one, or a value that no
        longer fits its declaration, leaves the defaults for what could not be used and returns
        why: the node then boots in SAFE.
        """
        assert self.store is not None, "bind the parameter store first"
        self.telemetry.STORE_VALID = False
        try:
            record = self.store.load(RECORD)
        except StoreError as error:
            return self._invalid(str(error))
        if record is None:
            self.telemetry.STORE_VALID = True
            return None
        if record.get("format") != FORMAT or not isinstance(record.get("values"), dict):
            return self._invalid(
                f"{self.store.path(RECORD)}: format {record.get('format')!r}, expected {FORMAT} "
                "with a 'values' object"
            )
        problems: list[str] = []
        loaded = 0
        by_name = {component.name: component for component in self._components()}
        for component_name, values in record["values"].items():
            component = by_name.get(component_name)
            if component is None or not isinstance(values, dict):
                problems.append(f"no component {component_name}")
                continue
            declared = {p.name: p for p in type(component).declarations.parameters}
            for name, stored in values.items():
                parameter = declared.get(name)
                if parameter is None:
                    problems.append(f"{component_name}.{name} is not a parameter")
                    continue
                try:
                    component.set_parameter(parameter, stored)
                except WireValueError as error:
                    problems.append(f"{component_name}.{error}")
                    continue
                loaded += 1
        self.telemetry.LOADED = loaded
        if problems:
            shown = "; ".join(problems[:3]) + (
                f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            )
            return self._invalid(f"{self.store.path(RECORD)}: {shown}")
        self.telemetry.STORE_VALID = True
        return None

    def _invalid(self, reason: str) -> str:
        self.emit(self.STORE_INVALID, reason=reason)
        return f"parameter store: {reason}"

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every component's parameters as JSON values (enums by name)."""
        values: dict[str, dict[str, object]] = {}
        for component in self._components():
            parameters = type(component).declarations.parameters
            if not parameters:
                continue
            entry: dict[str, object] = {}
            for parameter in parameters:
                value = component.parameters.get(parameter.name)
                if isinstance(value, IntEnum) or parameter.type.kind == "enum":
                    value = parameter.type.name_of(int(value))  # type: ignore[arg-type]
                entry[parameter.name] = value
            values[component.name] = entry
        return values

    @command
    async def SAVE(self) -> None:
        """Save every component's parameters as they are now; they are loaded at the next boot."""
        if self.store is None:
            raise CommandError("no parameter store on this node")
        values = self.snapshot()
        try:
            self.store.save(RECORD, {"format": FORMAT, "values": values})
        except StoreError as error:
            raise CommandError(f"not saved: {error}") from None
        self.telemetry.SAVES = (self.telemetry.SAVES + 1) & 0xFFFF_FFFF
        count = sum(len(entry) for entry in values.values())
        self.emit(self.SAVED, count=count)
