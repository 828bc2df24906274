"""Tests for flight.protocol.sensors: the bench's simulated sensor record (ICD 3.12)."""

import math
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight.power.eps import EpsReading
from flight.protocol.errors import FieldError, LengthError, ProtocolError
from flight.protocol.sensors import (
    SENSOR_RECORD,
    SENSOR_RECORD_LENGTH,
    SensorRecord,
)

# By hand from IEEE 754: 1e9 as binary64 is 41CDCD6500000000; 7.5, -0.5, 20, 12, 0.5 and 0.25 as
# binary32 are 40F00000, BF000000, 41A00000, 41400000, 3F000000, 3E800000; 7FC00000 is the quiet
# NaN of "not measured".
BY_HAND = SensorRecord(
    bench_time_tai_s=1e9,
    battery_voltage_v=7.5,
    battery_current_a=-0.5,
    solar_power_w=20.0,
    load_power_w=12.0,
    payload_power_w=None,
    soc=0.5,
    temperature_c=None,
    illumination=0.25,
)
BY_HAND_HEX = (
    "01" "41cdcd6500000000" "40f00000" "bf000000" "41a00000" "41400000"
    "7fc00000" "3f000000" "7fc00000" "3e800000"
)  # fmt: skip


def f32(value: float) -> float:
    return struct.unpack(">f", struct.pack(">f", value))[0]


def f32s(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, width=32)


records = st.builds(
    SensorRecord,
    bench_time_tai_s=st.floats(0.0, 1e10, allow_nan=False),
    battery_voltage_v=f32s(0.0, 100.0),
    battery_current_a=f32s(-50.0, 50.0),
    solar_power_w=f32s(0.0, 1e4),
    load_power_w=f32s(0.0, 1e4),
    payload_power_w=st.none() | f32s(0.0, 1e4),
    soc=st.none() | f32s(0.0, 1.0),
    temperature_c=st.none() | f32s(-273.0, 500.0),
    illumination=f32s(0.0, 1.0),
)


def test_the_record_by_hand() -> None:
    assert SENSOR_RECORD_LENGTH == 41
    assert BY_HAND.encode().hex() == BY_HAND_HEX
    assert SensorRecord.decode(bytes.fromhex(BY_HAND_HEX)) == BY_HAND


@given(records)
def test_round_trip_and_the_construct_declaration_agree(record: SensorRecord) -> None:
    octets = record.encode()
    assert len(octets) == SENSOR_RECORD_LENGTH
    assert SensorRecord.decode(octets) == record
    parsed = SENSOR_RECORD.parse(octets)
    assert parsed.version == 1
    for name in ("bench_time_tai_s", "battery_voltage_v", "illumination"):
        assert parsed[name] == getattr(record, name)
    for name in ("payload_power_w", "soc", "temperature_c"):
        value = getattr(record, name)
        assert math.isnan(parsed[name]) if value is None else parsed[name] == value
    built = SENSOR_RECORD.build({**parsed, "version": 1})
    assert built == octets


def test_single_precision_fields_are_rounded_on_the_wire() -> None:
    record = SensorRecord(1.0, 7.3, 0.1, 0.0, 0.0, soc=0.3)
    decoded = SensorRecord.decode(record.encode())
    assert decoded.battery_voltage_v == f32(7.3) != 7.3
    assert decoded.soc == f32(0.3)
    assert decoded.bench_time_tai_s == 1.0  # binary64


@pytest.mark.parametrize("length", [0, 1, 40, 42, 82])
def test_a_record_of_another_length_is_a_length_error(length: int) -> None:
    octets = (bytes.fromhex(BY_HAND_HEX) * 2)[:length]
    with pytest.raises(LengthError, match="41 octets"):
        SensorRecord.decode(octets)


def test_another_version_is_a_field_error_at_octet_0() -> None:
    octets = bytes.fromhex("02" + BY_HAND_HEX[2:])
    with pytest.raises(FieldError, match="version 2") as caught:
        SensorRecord.decode(octets)
    assert caught.value.offset == 0


def replaced(name: str, value: float) -> bytes:
    """BY_HAND's octets with one field's value written raw (no encoder checks)."""
    fields = dict(SENSOR_RECORD.parse(BY_HAND.encode()))
    fields.pop("_io", None)
    fields[name] = value
    return SENSOR_RECORD.build(fields)


@pytest.mark.parametrize(
    ("name", "value", "offset", "words"),
    [
        ("bench_time_tai_s", math.nan, 1, "not a number"),
        ("bench_time_tai_s", -1.0, 1, "negative"),
        ("battery_voltage_v", math.nan, 9, "not a number"),
        ("battery_voltage_v", -0.5, 9, "negative"),
        ("battery_current_a", math.inf, 13, "not finite"),
        ("solar_power_w", -1.0, 17, "negative"),
        ("load_power_w", math.nan, 21, "not a number"),
        ("payload_power_w", -2.0, 25, "negative"),
        ("soc", 1.5, 29, "not in 0..1"),
        ("temperature_c", -300.0, 33, "absolute zero"),
        ("illumination", math.nan, 37, "not a number"),
        ("illumination", -0.25, 37, "not in 0..1"),
    ],
)
def test_a_value_outside_its_range_is_a_field_error_at_its_offset(
    name: str, value: float, offset: int, words: str
) -> None:
    with pytest.raises(FieldError, match=re.escape(words)) as caught:
        SensorRecord.decode(replaced(name, value))
    assert caught.value.offset == offset
    assert name in str(caught.value)


def test_the_encoder_refuses_what_the_decoder_would() -> None:
    for bad in (
        SensorRecord(1.0, -1.0, 0.0, 0.0, 0.0),
        SensorRecord(1.0, 7.0, 0.0, 0.0, 0.0, soc=1.1),
        SensorRecord(1.0, 7.0, 0.0, 0.0, 0.0, illumination=1.0 + 1e-6),
        SensorRecord(1.0, 7.0, 1e39, 0.0, 0.0),  # beyond binary32
        SensorRecord(math.nan, 7.0, 0.0, 0.0, 0.0),
        SensorRecord(1.0, 7.0, 0.0, 0.0, 0.0, temperature_c=math.nan),  # None means "none"
    ):
        with pytest.raises(FieldError):
            bad.encode()


@given(st.binary(min_size=0, max_size=64))
def test_any_octets_decode_or_raise_a_protocol_error(octets: bytes) -> None:
    try:
        record = SensorRecord.decode(octets)
    except ProtocolError:
        return
    record.reading()  # a decoded record always makes a valid EPS reading


def test_reading_and_from_reading_carry_the_eps_fields() -> None:
    reading = EpsReading(7.25, -1.5, 0.0, 11.0, payload_power_w=3.0, soc=0.5, temperature_c=41.0)
    record = SensorRecord.from_reading(reading, bench_time_tai_s=2e9, illumination=0.0)
    assert record.reading() == reading
    assert SensorRecord.decode(record.encode()).reading() == reading  # all exact in binary32
    assert BY_HAND.reading() == EpsReading(7.5, -0.5, 20.0, 12.0, soc=0.5)
