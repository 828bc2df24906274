"""Simulated sensor data a test bench sends up to a node (APID 0x7F1): the `SensorRecord` format.

A bench that plays the environment (orbit, sunlight, battery) around a flight computer sends one
record a period, each alone in a TC Space Packet (no PUS header) on APID
`icd.Apid.SIMULATED_SENSORS`, inside authenticated AD frames under COP-1 like a CFDP PDU. The node
feeds it to its simulated EPS (`Power.receive_sensors`). Big-endian, fixed length; ICD section 3.12.
Optional quantities travel as NaN ("not measured") and are None in the dataclass.
"""

import math
import struct
from dataclasses import dataclass

from construct import Float32b, Float64b, Int8ub, Struct

from flight.power.eps import EpsReading
from flight.protocol.errors import FieldError, LengthError

SENSOR_RECORD_VERSION = 1

SENSOR_RECORD = Struct(
    "version" / Int8ub,
    "bench_time_tai_s" / Float64b,
    "battery_voltage_v" / Float32b,
    "battery_current_a" / Float32b,
    "solar_power_w" / Float32b,
    "load_power_w" / Float32b,
    "payload_power_w" / Float32b,
    "soc" / Float32b,
    "temperature_c" / Float32b,
    "illumination" / Float32b,
)
"""The sensor record, version 1, ICD 3.12 (a Penumbra format, no CCSDS clause): IEEE 754 binary64
and binary32, big-endian. Reference declaration; `SensorRecord` is the fast path."""

_LAYOUT = struct.Struct(">Bd8f")
SENSOR_RECORD_LENGTH = _LAYOUT.size
"""Octets of a version-1 record: 41."""

_NOT_MEASURED = struct.unpack(">f", bytes.fromhex("7fc00000"))[0]  # the canonical quiet NaN


def _offsets() -> dict[str, int]:
    """Each field's name and octet offset, from the declaration."""
    offsets, offset = {}, 0
    for field in SENSOR_RECORD.subcons:
        offsets[field.name] = offset
        offset += field.sizeof()
    return offsets


_OFFSETS = _offsets()
_OPTIONAL = ("payload_power_w", "soc", "temperature_c")
ABSOLUTE_ZERO_C = -273.15


@dataclass(frozen=True, slots=True)
class SensorRecord:
    """One sample of the simulated environment, in SI units (battery current + = charging).

    `bench_time_tai_s` is the bench's simulation time (TAI seconds since 1958) the sample is of;
    `load_power_w` is everything the bus delivers, the payload included; `payload_power_w`,
    `soc` (the EPS's own gauge, 0..1) and `temperature_c` are None where not measured (NaN on the
    wire); `illumination` (0..1) is the array's share of the Sun, for the record only. The f32
    fields are rounded to single precision on the wire.
    """

    bench_time_tai_s: float
    battery_voltage_v: float
    battery_current_a: float
    solar_power_w: float
    load_power_w: float
    payload_power_w: float | None = None
    soc: float | None = None
    temperature_c: float | None = None
    illumination: float = 1.0

    @classmethod
    def from_reading(
        cls, reading: EpsReading, *, bench_time_tai_s: float, illumination: float
    ) -> "SensorRecord":
        """The record of an EPS reading taken at `bench_time_tai_s`."""
        return cls(
            bench_time_tai_s=bench_time_tai_s,
            battery_voltage_v=reading.battery_voltage_v,
            battery_current_a=reading.battery_current_a,
            solar_power_w=reading.solar_power_w,
            load_power_w=reading.load_power_w,
            payload_power_w=reading.payload_power_w,
            soc=reading.soc,
            temperature_c=reading.temperature_c,
            illumination=illumination,
        )

    def reading(self) -> EpsReading:
        """What the node's EPS reports: this record without the bench time and illumination."""
        return EpsReading(
            battery_voltage_v=self.battery_voltage_v,
            battery_current_a=self.battery_current_a,
            solar_power_w=self.solar_power_w,
            load_power_w=self.load_power_w,
            payload_power_w=self.payload_power_w,
            soc=self.soc,
            temperature_c=self.temperature_c,
        )

    def encode(self) -> bytes:
        """The 41 octets; FieldError for a value outside its field's range (`decode`'s checks)."""
        values = [self._wire(name) for name in _OFFSETS if name != "version"]
        try:
            octets = _LAYOUT.pack(SENSOR_RECORD_VERSION, *values)
        except (OverflowError, struct.error) as error:
            raise FieldError(f"sensor record value does not fit its field: {error}") from None
        # Checked as the receiver will see them: a value that only rounds out of range in f32
        # (an illumination of 1 + 1e-9) is still refused here, not by the node.
        _check(_LAYOUT.unpack(octets))
        return octets

    def _wire(self, name: str) -> float:
        value = getattr(self, name)
        if value is None and name in _OPTIONAL:
            return _NOT_MEASURED
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise FieldError(f"sensor record {name}={value!r} is not a number")
        if name in _OPTIONAL and math.isnan(value):
            raise FieldError(f"sensor record {name} is NaN: give None for 'not measured'")
        return float(value)

    @classmethod
    def decode(cls, octets: bytes | bytearray | memoryview) -> "SensorRecord":
        """One record; LengthError unless exactly 41 octets, FieldError for a version other than
        1 or a value outside its range (NaN where a measurement is required, a negative voltage,
        a state of charge or illumination outside 0..1, ...)."""
        if len(octets) != SENSOR_RECORD_LENGTH:
            raise LengthError(
                f"sensor record is {SENSOR_RECORD_LENGTH} octets (version "
                f"{SENSOR_RECORD_VERSION}), got {len(octets)}"
            )
        values = _LAYOUT.unpack(octets)
        _check(values)
        fields = dict(zip(_OFFSETS, values, strict=True))
        del fields["version"]
        for name in _OPTIONAL:
            if math.isnan(fields[name]):
                fields[name] = None
        return cls(**fields)


def _check(values: tuple) -> None:
    """FieldError, at the field's offset, for the first value outside its range."""
    fields = dict(zip(_OFFSETS, values, strict=True))
    if fields["version"] != SENSOR_RECORD_VERSION:
        raise FieldError(
            f"sensor record version {fields['version']}, this node reads version "
            f"{SENSOR_RECORD_VERSION}",
            offset=0,
        )
    for name, value in fields.items():
        problem = _problem(name, value)
        if problem is not None:
            raise FieldError(f"sensor record {name}={value} {problem}", offset=_OFFSETS[name])


def _problem(name: str, value: float) -> str | None:
    if name == "version":
        return None
    if math.isnan(value):
        return None if name in _OPTIONAL else "is not a number (this field is required)"
    if not math.isfinite(value):
        return "is not finite"
    if name in ("bench_time_tai_s", "battery_voltage_v", "solar_power_w", "load_power_w"):
        return "is negative" if value < 0.0 else None
    if name == "payload_power_w":
        return "is negative" if value < 0.0 else None
    if name in ("soc", "illumination"):
        return None if 0.0 <= value <= 1.0 else "is not in 0..1"
    if name == "temperature_c":
        return "is below absolute zero" if value < ABSOLUTE_ZERO_C else None
    return None  # battery_current_a: any finite value, + = charging
