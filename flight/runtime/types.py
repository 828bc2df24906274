"""Typed values on the wire: one codec for command arguments, telemetry, events and parameters.

Flight declares its values with these types and the ground decodes them from the dictionary with
the same code, so the two cannot drift. Types (big-endian): `u8 u16 u32 u64 i8 i16 i32 i64 f32 f64`,
`bool` (one octet, 0 or 1), `string` (a u8 length, then UTF-8 octets; `max_length` <= 255) and
`enum` (a u8 with a name -> value table). Numbers may declare a `minimum` and a `maximum`.

Every value that does not fit raises `WireValueError`, whose message names the value (the argument,
channel or parameter) and says what would fit.
"""

import itertools
import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from flight.protocol.errors import FieldError, LengthError, TruncatedError

Buffer = bytes | bytearray | memoryview
Value = int | float | bool | str

_INTEGERS: Mapping[str, struct.Struct] = {
    "u8": struct.Struct(">B"),
    "u16": struct.Struct(">H"),
    "u32": struct.Struct(">I"),
    "u64": struct.Struct(">Q"),
    "i8": struct.Struct(">b"),
    "i16": struct.Struct(">h"),
    "i32": struct.Struct(">i"),
    "i64": struct.Struct(">q"),
}
_FLOATS: Mapping[str, struct.Struct] = {"f32": struct.Struct(">f"), "f64": struct.Struct(">d")}
_OCTET = struct.Struct(">B")
TYPE_NAMES = (*_INTEGERS, *_FLOATS, "bool", "string", "enum")
"""Every type name the dictionary may carry, in the ICD's order."""

MAX_STRING_LENGTH = 255
F32_MAX = 3.4028234663852886e38


def _integer_range(kind: str) -> tuple[int, int]:
    bits = 8 * _INTEGERS[kind].size
    if kind.startswith("u"):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


class WireValueError(ValueError):
    """A value that its declared type cannot carry, or octets that do not decode to one.

    `name` is the argument, channel or parameter concerned (None when not known here); the
    message says what fits: `period_ms: 50 is below the minimum 100`.
    """

    def __init__(self, name: str | None, reason: str) -> None:
        super().__init__(reason if name is None else f"{name}: {reason}")
        self.name = name
        self.reason = reason

    def named(self, name: str) -> "WireValueError":
        """The same error attributed to `name` (keeps a name already given)."""
        return self if self.name is not None else WireValueError(name, self.reason)


def _number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class WireType:
    """One type of the ICD with its declared constraints.

    `values` is the enum table as (name, value) pairs in declaration order. Onboard, a Python
    `IntEnum` may stand behind an enum (`python_enum`): decoded values are then its members; it is
    not part of the wire format, equality or the dictionary.
    """

    kind: str
    minimum: int | float | None = None
    maximum: int | float | None = None
    max_length: int | None = None
    values: tuple[tuple[str, int], ...] | None = None
    python_enum: type[IntEnum] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        kind = self.kind
        if kind not in TYPE_NAMES:
            raise ValueError(f"unknown type {kind!r}: use one of {', '.join(TYPE_NAMES)}")
        numeric = kind in _INTEGERS or kind in _FLOATS
        if not numeric and (self.minimum is not None or self.maximum is not None):
            raise ValueError(f"a {kind} takes no minimum or maximum")
        if kind in _INTEGERS:
            low, high = _integer_range(kind)
            for bound in (self.minimum, self.maximum):
                if bound is not None and (
                    not isinstance(bound, int)
                    or isinstance(bound, bool)
                    or not low <= bound <= high
                ):
                    raise ValueError(
                        f"bound {bound!r} is not an integer a {kind} holds ({low}..{high})"
                    )
        if kind in _FLOATS:
            for bound in (self.minimum, self.maximum):
                if bound is not None and not (
                    isinstance(bound, int | float) and math.isfinite(bound)
                ):
                    raise ValueError(f"bound {bound!r} of a {kind} is not a finite number")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        if kind == "string":
            length = MAX_STRING_LENGTH if self.max_length is None else self.max_length
            if not isinstance(length, int) or not 0 <= length <= MAX_STRING_LENGTH:
                raise ValueError(f"string max_length {length!r} outside 0..{MAX_STRING_LENGTH}")
            object.__setattr__(self, "max_length", length)
        elif self.max_length is not None:
            raise ValueError(f"a {kind} takes no max_length")
        if kind == "enum":
            table = self.values
            if self.python_enum is not None and table is None:
                table = tuple((member.name, int(member)) for member in self.python_enum)
            if not table:
                raise ValueError("an enum needs a table of names and values")
            table = tuple((str(name), int(value)) for name, value in table)
            names = [name for name, _ in table]
            numbers = [value for _, value in table]
            if len(set(names)) != len(names) or len(set(numbers)) != len(numbers):
                raise ValueError(f"enum table {dict(table)} repeats a name or a value")
            if not all(0 <= value <= 0xFF for value in numbers):
                raise ValueError(f"enum values {numbers} must fit a u8 (0..255)")
            object.__setattr__(self, "values", table)
        elif self.values is not None or self.python_enum is not None:
            raise ValueError(f"a {kind} takes no enum table")

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def enum(
        cls, values: type[IntEnum] | Mapping[str, int] | Iterable[tuple[str, int]]
    ) -> "WireType":
        """An enum type from an IntEnum class (kept onboard) or a name -> value table."""
        if isinstance(values, type) and issubclass(values, IntEnum):
            return cls("enum", python_enum=values)
        table = values.items() if isinstance(values, Mapping) else values
        return cls("enum", values=tuple(table))

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> "WireType":
        """The type of a dictionary entry (`type` with `minimum`, `maximum`, `max_length`,
        `values`); ValueError saying what is wrong."""
        kind = entry.get("type")
        if not isinstance(kind, str):
            raise ValueError(f"'type' must be one of {', '.join(TYPE_NAMES)}, not {kind!r}")
        values = entry.get("values")
        if values is not None:
            if not isinstance(values, Mapping):
                raise ValueError(f"'values' must map names to numbers, not {values!r}")
            values = tuple(values.items())
        return cls(
            kind,
            entry.get("minimum"),
            entry.get("maximum"),
            entry.get("max_length"),
            values,
        )

    def to_json(self) -> dict[str, Any]:
        """The keys this type adds to a dictionary entry, `type` first."""
        out: dict[str, Any] = {"type": self.kind}
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.kind == "string":
            out["max_length"] = self.max_length
        if self.values is not None:
            out["values"] = dict(self.values)
        return out

    # -- facts ---------------------------------------------------------------------------------

    @property
    def size(self) -> int | None:
        """Octets on the wire, or None for a string (its length is on the wire)."""
        if self.kind in _INTEGERS:
            return _INTEGERS[self.kind].size
        if self.kind in _FLOATS:
            return _FLOATS[self.kind].size
        return None if self.kind == "string" else 1

    def default(self) -> Value:
        """The value a channel holds before anything sets it: zero, or the lowest allowed."""
        if self.kind in _INTEGERS or self.kind in _FLOATS:
            zero: int | float = 0 if self.kind in _INTEGERS else 0.0
            if self.minimum is not None and zero < self.minimum:
                return self.minimum
            if self.maximum is not None and zero > self.maximum:
                return self.maximum
            return zero
        if self.kind == "bool":
            return False
        if self.kind == "string":
            return ""
        assert self.values is not None
        return self._enum_value(self.values[0][1])

    def name_of(self, value: int) -> str:
        """The enum name of `value` (WireValueError if the table has none)."""
        assert self.values is not None, "name_of is for enums"
        for name, number in self.values:
            if number == value:
                return name
        raise WireValueError(None, f"{value} is not one of {self._enum_text()}")

    def describe(self) -> str:
        """The type and its constraints in words, for messages: `u32 in 100..60000`."""
        if self.kind == "string":
            return f"string of at most {self.max_length} UTF-8 octets"
        if self.kind == "enum":
            return f"enum, one of {self._enum_text()}"
        if self.kind == "bool":
            return "bool (true or false)"
        if self.kind in _FLOATS and self.minimum is None and self.maximum is None:
            return f"{self.kind} (a number)"
        low, high = self._bounds()
        return f"{self.kind} in {_number_text(low)}..{_number_text(high)}"

    # -- values --------------------------------------------------------------------------------

    def check(self, value: object) -> Value:
        """`value` as this type carries it (an enum name becomes its number); WireValueError
        saying why it does not fit."""
        kind = self.kind
        if kind in _INTEGERS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise WireValueError(None, f"{value!r} is not an integer ({self.describe()})")
            self._check_bounds(value)
            return int(value)
        if kind in _FLOATS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise WireValueError(None, f"{value!r} is not a number ({self.describe()})")
            number = float(value)
            if kind == "f32" and math.isfinite(number) and abs(number) > F32_MAX:
                raise WireValueError(None, f"{value!r} does not fit an f32")
            if math.isnan(number) and (self.minimum is not None or self.maximum is not None):
                raise WireValueError(None, f"NaN is outside {self.describe()}")
            self._check_bounds(number)
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise WireValueError(None, f"{value!r} is not a bool (true or false)")
        if kind == "string":
            if not isinstance(value, str):
                raise WireValueError(None, f"{value!r} is not a string")
            octets = len(value.encode("utf-8", "surrogatepass"))
            assert self.max_length is not None
            if octets > self.max_length:
                raise WireValueError(
                    None, f"{octets} UTF-8 octets, at most {self.max_length} allowed"
                )
            return value
        return self._check_enum(value)

    def encode(self, value: object) -> bytes:
        """The octets of `value` (checked first)."""
        value = self.check(value)
        kind = self.kind
        if kind in _INTEGERS:
            return _INTEGERS[kind].pack(value)
        if kind in _FLOATS:
            return _FLOATS[kind].pack(value)
        if kind == "bool":
            return b"\x01" if value else b"\x00"
        if kind == "string":
            assert isinstance(value, str)
            try:
                octets = value.encode("utf-8")
            except UnicodeEncodeError:
                raise WireValueError(None, f"{value!r} is not valid Unicode text") from None
            return _OCTET.pack(len(octets)) + octets
        return _OCTET.pack(int(value))

    def truncate(self, value: str) -> str:
        """`value` cut to `max_length` UTF-8 octets at a character boundary (for event texts,
        where a long message is worth more cut than lost)."""
        assert self.kind == "string" and self.max_length is not None
        octets = value.encode("utf-8", "replace")
        if len(octets) <= self.max_length:
            return value
        return octets[: self.max_length].decode("utf-8", "ignore")

    def decode_from(self, data: Buffer, offset: int = 0) -> tuple[Value, int]:
        """Decode one value at `offset`; return it and the offset just past it.

        Short data is a `TruncatedError`; a value outside the declaration a `WireValueError`.
        """
        kind = self.kind
        size = self.size
        if size is None:  # string
            if len(data) - offset < 1:
                raise TruncatedError("string length octet missing", offset=offset)
            size = 1 + data[offset]
        if len(data) - offset < size:
            raise TruncatedError(
                f"{self.describe()} needs {size} octets, {len(data) - offset} present",
                offset=offset,
            )
        end = offset + size
        if kind in _INTEGERS:
            (value,) = _INTEGERS[kind].unpack_from(data, offset)
            self._check_bounds(value)
            return value, end
        if kind in _FLOATS:
            (value,) = _FLOATS[kind].unpack_from(data, offset)
            if math.isnan(value) and (self.minimum is not None or self.maximum is not None):
                raise WireValueError(None, f"NaN is outside {self.describe()}")
            self._check_bounds(value)
            return value, end
        octet = data[offset]
        if kind == "bool":
            if octet > 1:
                raise WireValueError(None, f"octet {octet} is not a bool (0 or 1)")
            return bool(octet), end
        if kind == "string":
            assert self.max_length is not None
            if octet > self.max_length:
                raise WireValueError(
                    None, f"{octet} UTF-8 octets, at most {self.max_length} allowed"
                )
            try:
                return bytes(data[offset + 1 : end]).decode("utf-8"), end
            except UnicodeDecodeError as error:
                raise WireValueError(None, f"not UTF-8 text ({error.reason})") from None
        return self._check_enum(octet), end

    def decode(self, data: Buffer) -> Value:
        """Decode exactly one value; leftover octets are a `LengthError`."""
        value, end = self.decode_from(data)
        if end != len(data):
            raise LengthError(f"{len(data) - end} octets after the value", offset=end)
        return value

    def parse_text(self, text: str) -> Value:
        """A value from what an operator types (`0x10`, `2.5`, `true`, an enum name), checked."""
        kind = self.kind
        stripped = text.strip()
        try:
            if kind in _INTEGERS:
                return self.check(int(stripped, 0))
            if kind in _FLOATS:
                return self.check(float(stripped))
        except ValueError as error:
            if isinstance(error, WireValueError):
                raise
            raise WireValueError(None, f"{text!r} is not a {self.describe()}") from None
        if kind == "bool":
            lowered = stripped.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise WireValueError(None, f"{text!r} is not a bool (true or false)")
        if kind == "string":
            return self.check(text)
        if stripped.isdigit():
            return self.check(int(stripped))
        return self.check(stripped)

    # -- helpers -------------------------------------------------------------------------------

    def _bounds(self) -> tuple[float, float]:
        if self.kind in _INTEGERS:
            low, high = _integer_range(self.kind)
        else:
            low, high = -math.inf, math.inf
        if self.minimum is not None:
            low = self.minimum
        if self.maximum is not None:
            high = self.maximum
        return low, high

    def _check_bounds(self, value: float) -> None:
        low, high = self._bounds()
        if value < low:
            what = "minimum" if self.minimum is not None else f"lowest {self.kind}"
            raise WireValueError(
                None, f"{_number_text(value)} is below the {what} {_number_text(low)}"
            )
        if value > high:
            what = "maximum" if self.maximum is not None else f"highest {self.kind}"
            raise WireValueError(
                None, f"{_number_text(value)} is above the {what} {_number_text(high)}"
            )

    def _enum_text(self) -> str:
        assert self.values is not None
        return ", ".join(f"{name} ({number})" for name, number in self.values)

    def _check_enum(self, value: object) -> int:
        assert self.values is not None
        if isinstance(value, IntEnum) and self.python_enum is None:
            value = value.name  # a member of some IntEnum: go by its name, as the ground does
        if isinstance(value, str):
            for name, number in self.values:
                if name == value:
                    return self._enum_value(number)
            raise WireValueError(None, f"{value!r} is not one of {self._enum_text()}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireValueError(None, f"{value!r} is not one of {self._enum_text()}")
        if all(number != value for _, number in self.values):
            raise WireValueError(None, f"{value} is not one of {self._enum_text()}")
        return self._enum_value(value)

    def _enum_value(self, number: int) -> int:
        return self.python_enum(number) if self.python_enum is not None else number


@dataclass(frozen=True, slots=True)
class Field:
    """A named, typed value: a command argument, an event argument, a telemetry channel or a
    parameter as the wire sees it."""

    name: str
    type: WireType
    description: str = ""

    def encode(self, value: object) -> bytes:
        try:
            return self.type.encode(value)
        except WireValueError as error:
            raise error.named(self.name) from None

    def check(self, value: object) -> Value:
        try:
            return self.type.check(value)
        except WireValueError as error:
            raise error.named(self.name) from None

    def decode_from(self, data: Buffer, offset: int = 0) -> tuple[Value, int]:
        try:
            return self.type.decode_from(data, offset)
        except WireValueError as error:
            raise error.named(self.name) from None
        except TruncatedError as error:
            raise WireValueError(self.name, f"data ends: {error.message}") from None

    def to_json(self) -> dict[str, Any]:
        """The dictionary's argument entry: name, the type's keys, a description if any."""
        out: dict[str, Any] = {"name": self.name, **self.type.to_json()}
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> "Field":
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"argument entry without a 'name': {dict(entry)!r}")
        try:
            wire_type = WireType.from_json(entry)
        except ValueError as error:
            raise ValueError(f"argument {name}: {error}") from None
        return cls(name, wire_type, str(entry.get("description", "")))


def encode_fields(fields: Sequence[Field], values: Mapping[str, object]) -> bytes:
    """The values of `fields`, in declared order; WireValueError for a missing, unknown or
    ill-fitting value, naming it."""
    known = {f.name for f in fields}
    unknown = [name for name in values if name not in known]
    if unknown:
        expected = ", ".join(f.name for f in fields) or "no arguments"
        raise WireValueError(unknown[0], f"no such argument (expected {expected})")
    parts = []
    for wire_field in fields:
        if wire_field.name not in values:
            raise WireValueError(wire_field.name, f"missing ({wire_field.type.describe()})")
        parts.append(wire_field.encode(values[wire_field.name]))
    return b"".join(parts)


def decode_fields_from(
    fields: Sequence[Field], data: Buffer, offset: int = 0
) -> tuple[dict[str, Value], int]:
    """Decode the values of `fields` from `offset`; return them by name and the end offset."""
    values: dict[str, Value] = {}
    for wire_field in fields:
        values[wire_field.name], offset = wire_field.decode_from(data, offset)
    return values, offset


def decode_fields(fields: Sequence[Field], data: Buffer) -> dict[str, Value]:
    """Decode exactly the values of `fields`; extra octets are a WireValueError too."""
    values, end = decode_fields_from(fields, data)
    if end != len(data):
        after = f"after {fields[-1].name}" if fields else "for a command without arguments"
        raise WireValueError(None, f"{len(data) - end} octets too many {after}")
    return values


def decode_parameter_values(
    data: Buffer, field_of: Callable[[int], Field | None]
) -> list[tuple[int, Value]]:
    """The (parameter id, value) pairs of a 20.2 report or 20.3 request.

    Unlike `pus.ParameterValues.decode` this handles strings, whose width is on the wire.
    `field_of` gives a parameter's field or None if unknown: an unknown id raises `FieldError`
    (its value's width is unknown, so nothing after it can be read); a bad value a WireValueError
    naming the parameter; short data a `TruncatedError`.
    """
    if len(data) < 1:
        raise TruncatedError("parameter values: the number of entries is missing", offset=0)
    count = data[0]
    offset = 1
    out: list[tuple[int, Value]] = []
    for _ in range(count):
        if len(data) - offset < 2:
            raise TruncatedError(f"parameter values: {count} entries, data ends", offset=offset)
        parameter_id = (data[offset] << 8) | data[offset + 1]
        wire_field = field_of(parameter_id)
        if wire_field is None:
            raise FieldError(f"unknown parameter id {parameter_id}", offset=offset)
        value, offset = wire_field.decode_from(data, offset + 2)
        out.append((parameter_id, value))
    if offset != len(data):
        raise LengthError(
            f"parameter values of {count} entries end at octet {offset}, {len(data) - offset} "
            "more follow",
            offset=offset,
        )
    return out


def encode_parameter_values(entries: Iterable[tuple[int, Field, object]]) -> bytes:
    """A 20.2 report or 20.3 request: N, then (parameter id, value) for each (id, field, value)."""
    items = list(entries)
    if len(items) > 255:
        raise WireValueError(None, f"{len(items)} parameters, at most 255 fit one packet")
    parts = [_OCTET.pack(len(items))]
    for parameter_id, wire_field, value in items:
        if not 0 <= parameter_id <= 0xFFFF:
            raise WireValueError(wire_field.name, f"parameter id {parameter_id} outside 0..65535")
        parts.append(parameter_id.to_bytes(2, "big"))
        parts.append(wire_field.encode(value))
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Limits:
    """Telemetry limits for the ground's display (any subset): red_low < yellow_low <
    yellow_high < red_high where given. Onboard they are declarations, not checks."""

    red_low: float | None = None
    yellow_low: float | None = None
    yellow_high: float | None = None
    red_high: float | None = None

    def __post_init__(self) -> None:
        given = [(n, v) for n, v in self.items() if v is not None]
        for (low_name, low), (high_name, high) in itertools.pairwise(given):
            if not low < high:
                raise ValueError(f"limit {low_name} {low} is not below {high_name} {high}")

    def items(self) -> list[tuple[str, float | None]]:
        return [
            ("red_low", self.red_low),
            ("yellow_low", self.yellow_low),
            ("yellow_high", self.yellow_high),
            ("red_high", self.red_high),
        ]

    def to_json(self) -> dict[str, float]:
        return {name: float(value) for name, value in self.items() if value is not None}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> "Limits":
        unknown = set(entry) - {"red_low", "yellow_low", "yellow_high", "red_high"}
        if unknown:
            raise ValueError(f"unknown limit {sorted(unknown)[0]!r}")
        return cls(**{name: float(value) for name, value in entry.items()})

    def state(self, value: float) -> str:
        """RED_LOW, YELLOW_LOW, NOMINAL, YELLOW_HIGH or RED_HIGH for `value`."""
        if self.red_low is not None and value <= self.red_low:
            return "RED_LOW"
        if self.red_high is not None and value >= self.red_high:
            return "RED_HIGH"
        if self.yellow_low is not None and value <= self.yellow_low:
            return "YELLOW_LOW"
        if self.yellow_high is not None and value >= self.yellow_high:
            return "YELLOW_HIGH"
        return "NOMINAL"
