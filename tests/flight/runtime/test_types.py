"""The wire types of command arguments, telemetry, events and parameters."""

import math
import struct
from enum import IntEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight.protocol.errors import FieldError, LengthError, TruncatedError
from flight.runtime.types import (
    TYPE_NAMES,
    Field,
    Limits,
    WireType,
    WireValueError,
    decode_fields,
    decode_parameter_values,
    encode_fields,
    encode_parameter_values,
)


class Colour(IntEnum):
    RED = 0
    GREEN = 3


INTEGER_RANGES = {
    "u8": (0, 255),
    "u16": (0, 65535),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
    "i8": (-128, 127),
    "i16": (-32768, 32767),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
}


@pytest.mark.parametrize("kind", sorted(INTEGER_RANGES))
def test_integers_round_trip_at_their_bounds_big_endian(kind: str) -> None:
    low, high = INTEGER_RANGES[kind]
    wire = WireType(kind)
    for value in (low, high, 0):
        encoded = wire.encode(value)
        assert wire.decode(encoded) == value
    assert wire.encode(1)[-1] == 1  # big-endian: the low octet last
    with pytest.raises(WireValueError, match="above the highest"):
        wire.encode(high + 1)
    with pytest.raises(WireValueError, match="below the lowest"):
        wire.encode(low - 1)


@given(st.integers(0, 2**32 - 1))
def test_u32_is_four_big_endian_octets(value: int) -> None:
    assert WireType("u32").encode(value) == struct.pack(">I", value)


@given(st.floats(width=32, allow_nan=False))
def test_f32_round_trips_every_f32(value: float) -> None:
    wire = WireType("f32")
    assert wire.decode(wire.encode(value)) == value


def test_f32_refuses_a_value_it_cannot_hold() -> None:
    with pytest.raises(WireValueError, match="does not fit an f32"):
        WireType("f32").encode(1e39)


def test_nan_is_refused_where_a_range_is_declared() -> None:
    bounded = WireType("f64", minimum=0.0, maximum=1.0)
    with pytest.raises(WireValueError, match="NaN"):
        bounded.encode(math.nan)
    with pytest.raises(WireValueError, match="NaN"):
        bounded.decode(struct.pack(">d", math.nan))
    assert math.isnan(WireType("f64").decode(struct.pack(">d", math.nan)))


def test_declared_range_error_names_the_argument_and_the_bound() -> None:
    period = Field("period_ms", WireType("u32", minimum=100, maximum=60_000))
    with pytest.raises(WireValueError) as caught:
        period.encode(50)
    assert str(caught.value) == "period_ms: 50 is below the minimum 100"
    assert caught.value.name == "period_ms"
    with pytest.raises(WireValueError, match="period_ms: 60001 is above the maximum 60000"):
        period.decode_from(struct.pack(">I", 60_001))


def test_integers_refuse_floats_and_bools() -> None:
    with pytest.raises(WireValueError, match="not an integer"):
        WireType("u8").encode(3.0)
    with pytest.raises(WireValueError, match="not an integer"):
        WireType("u8").encode(True)


def test_bool_is_one_octet_zero_or_one() -> None:
    wire = WireType("bool")
    assert wire.encode(True) == b"\x01"
    assert wire.encode(False) == b"\x00"
    assert wire.decode(b"\x01") is True
    with pytest.raises(WireValueError, match="not a bool"):
        wire.decode(b"\x02")


def test_string_is_a_length_octet_then_utf8() -> None:
    wire = WireType("string", max_length=8)
    assert wire.encode("héllo") == b"\x06h\xc3\xa9llo"
    assert wire.decode(b"\x06h\xc3\xa9llo") == "héllo"
    with pytest.raises(WireValueError, match="9 UTF-8 octets, at most 8"):
        wire.encode("123456789")
    with pytest.raises(WireValueError, match="not UTF-8"):
        wire.decode(b"\x02\xff\xfe")
    with pytest.raises(TruncatedError):
        wire.decode(b"\x05ab")


def test_string_max_length_is_at_most_255() -> None:
    assert WireType("string").max_length == 255
    with pytest.raises(ValueError, match="max_length"):
        WireType("string", max_length=256)


def test_truncate_cuts_at_a_character_boundary() -> None:
    wire = WireType("string", max_length=4)
    assert wire.truncate("aéé") == "aé"  # a (1) + é (2) = 3 octets; another é would make 5
    assert wire.truncate("ab") == "ab"


def test_enum_takes_names_numbers_and_members() -> None:
    wire = WireType.enum(Colour)
    assert wire.encode("GREEN") == b"\x03"
    assert wire.encode(Colour.GREEN) == b"\x03"
    assert wire.encode(3) == b"\x03"
    assert wire.decode(b"\x03") is Colour.GREEN
    assert wire.to_json() == {"type": "enum", "values": {"RED": 0, "GREEN": 3}}
    with pytest.raises(WireValueError, match=r"'BLUE' is not one of RED \(0\), GREEN \(3\)"):
        wire.encode("BLUE")
    with pytest.raises(WireValueError, match="7 is not one of"):
        wire.decode(b"\x07")


def test_enum_from_the_dictionary_decodes_to_numbers() -> None:
    wire = WireType.from_json({"type": "enum", "values": {"RED": 0, "GREEN": 3}})
    assert wire == WireType.enum(Colour)  # the Python enum is not part of the type's identity
    assert wire.decode(b"\x03") == 3
    assert wire.name_of(3) == "GREEN"


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "u32", "minimum": 100, "maximum": 60000},
        {"type": "f32"},
        {"type": "string", "max_length": 32},
        {"type": "enum", "values": {"SAFE": 1, "NOMINAL": 2}},
        {"type": "bool"},
    ],
)
def test_dictionary_entries_round_trip(entry: dict) -> None:
    assert WireType.from_json(entry).to_json() == (
        entry if entry["type"] != "string" else {**entry}
    )


def test_bad_declarations_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="unknown type 'u12'"):
        WireType("u12")
    with pytest.raises(ValueError, match="is not an integer a u8 holds"):
        WireType("u8", maximum=300)
    with pytest.raises(ValueError, match="above maximum"):
        WireType("i16", minimum=5, maximum=1)
    with pytest.raises(ValueError, match="repeats"):
        WireType.enum({"A": 1, "B": 1})
    with pytest.raises(ValueError, match="takes no max_length"):
        WireType("u8", max_length=3)


def test_parse_text_reads_what_an_operator_types() -> None:
    assert WireType("u16").parse_text("0x10") == 16
    assert WireType("f64").parse_text(" 2.5 ") == 2.5
    assert WireType("bool").parse_text("true") is True
    assert WireType.enum({"SAFE": 1}).parse_text("SAFE") == 1
    with pytest.raises(WireValueError, match="'abc' is not a u16"):
        WireType("u16").parse_text("abc")


def test_fields_encode_in_declared_order_and_name_problems() -> None:
    fields = [Field("a", WireType("u8")), Field("b", WireType("string", max_length=4))]
    data = encode_fields(fields, {"b": "hi", "a": 7})
    assert data == b"\x07\x02hi"
    assert decode_fields(fields, data) == {"a": 7, "b": "hi"}
    with pytest.raises(WireValueError, match="b: missing"):
        encode_fields(fields, {"a": 1})
    with pytest.raises(WireValueError, match="c: no such argument"):
        encode_fields(fields, {"a": 1, "b": "", "c": 2})
    with pytest.raises(WireValueError, match="b: data ends"):
        decode_fields(fields, b"\x07\x05h")
    with pytest.raises(WireValueError, match="1 octets too many after b"):
        decode_fields(fields, data + b"\x00")
    with pytest.raises(WireValueError, match="too many for a command without arguments"):
        decode_fields([], b"\x00")


def test_parameter_values_carry_strings_and_numbers() -> None:
    period = Field("PERIOD", WireType("u32"))
    label = Field("LABEL", WireType("string", max_length=8))
    fields = {0x0301: period, 0x0302: label}
    data = encode_parameter_values([(0x0301, period, 5), (0x0302, label, "abc")])
    assert data == b"\x02\x03\x01\x00\x00\x00\x05\x03\x02\x03abc"
    assert decode_parameter_values(data, fields.get) == [(0x0301, 5), (0x0302, "abc")]
    with pytest.raises(FieldError, match="unknown parameter id 770"):
        decode_parameter_values(data, {0x0301: period}.get)
    with pytest.raises(LengthError):
        decode_parameter_values(data + b"\x00", fields.get)
    with pytest.raises(TruncatedError):
        decode_parameter_values(b"\x02\x03\x01\x00\x00\x00\x05", fields.get)


def test_limits_order_and_state() -> None:
    limits = Limits(yellow_high=80, red_high=95)
    assert limits.to_json() == {"yellow_high": 80.0, "red_high": 95.0}
    assert limits.state(50) == "NOMINAL"
    assert limits.state(85) == "YELLOW_HIGH"
    assert limits.state(99) == "RED_HIGH"
    assert Limits.from_json(limits.to_json()) == limits
    with pytest.raises(ValueError, match="not below"):
        Limits(yellow_high=95, red_high=80)


def test_every_type_has_a_default_that_encodes() -> None:
    for kind in TYPE_NAMES:
        wire = WireType.enum({"ONLY": 4}) if kind == "enum" else WireType(kind)
        assert wire.decode(wire.encode(wire.default())) == wire.default()
