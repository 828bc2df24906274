"""The JSON dictionary of a node, built from its components: what the ground and the test API load.

Deterministic: the same components give a byte-identical file (components in id order, each
section in declaration order, the keys of each entry in a fixed order).
"""

import json
from collections.abc import Iterable
from typing import Any

from flight.runtime.component import Component, FailureCode

FORMAT = "penumbra-dictionary/1"


def _command(component: Component, definition: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "opcode": component.component_id << 8 | definition.index,
        "description": definition.description,
        "arguments": [argument.to_json() for argument in definition.arguments],
    }
    if definition.modes is not None:
        entry["modes"] = [mode.name for mode in sorted(definition.modes)]
    return entry


def component_entry(component: Component) -> dict[str, Any]:
    """One component's section of the dictionary."""
    declarations = type(component).declarations
    base = component.component_id << 8
    telemetry = {}
    for index, channel in enumerate(declarations.telemetry):
        entry: dict[str, Any] = {"id": base | index, **channel.type.to_json()}
        entry["units"] = channel.units
        entry["description"] = channel.doc
        if channel.limits is not None:
            entry["limits"] = channel.limits.to_json()
        telemetry[channel.name] = entry
    events = {}
    for index, event in enumerate(declarations.events):
        events[event.name] = {
            "id": base | index,
            "severity": event.severity.name,
            "format": event.format,
            "description": event.doc,
            "arguments": [argument.to_json() for argument in event.arguments],
        }
    parameters = {}
    for index, parameter in enumerate(declarations.parameters):
        default = parameter.default
        if parameter.type.kind == "enum":
            default = parameter.type.name_of(int(default))
        parameters[parameter.name] = {
            "id": base | index,
            **parameter.type.to_json(),
            "default": default,
            "description": parameter.doc,
        }
    return {
        "id": component.component_id,
        "description": component.description,
        "commands": {d.name: _command(component, d) for d in declarations.commands},
        "telemetry": telemetry,
        "events": events,
        "parameters": parameters,
    }


def build(components: Iterable[Component], *, spacecraft_id: int, apid: int) -> dict[str, Any]:
    """The dictionary of attached components (each with its id)."""
    ordered = sorted(components, key=lambda component: component.component_id)
    return {
        "format": FORMAT,
        "spacecraft_id": spacecraft_id,
        "apid": apid,
        "failure_codes": {str(int(code)): code.name for code in FailureCode},
        "components": {component.name: component_entry(component) for component in ordered},
    }


def dumps(dictionary: dict[str, Any]) -> str:
    """The dictionary as the file holds it: indented JSON, insertion order, a final newline."""
    return json.dumps(dictionary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
