import contextlib
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.isl.beacon import BEACON, BEACON_LENGTH, Beacon, NeighbourTable
from flight.isl.fields import as_float32
from flight.protocol.errors import FieldError, LengthError, ProtocolError, TruncatedError

SETTINGS = settings(max_examples=300, deadline=None)
T0 = 2_100_000_000.0  # a TAI time in 2024 (seconds since 1958)

BASE = Beacon(
    energy_headroom_j=12_500.0,
    queue_jobs=3,
    queue_octets=4_000_000,
    sunlit=True,
    soc=0.75,
    sender_time_tai_s=T0 + 0.5,
    accepts_offload=True,
    next_contact_tai_s=T0 + 1800.25,
)

# Hand-assembled: flags 0xE0 (sunlit, accepts offload, next contact known), SoC 0.75 and headroom
# 12500 as float32, 3 jobs, 4e6 octets, then the two CUC T-fields.
BASE_OCTETS = (
    bytes([0xE0])
    + struct.pack(">ff", 0.75, 12_500.0)
    + (3).to_bytes(4, "big")
    + (4_000_000).to_bytes(8, "big")
    + int(T0).to_bytes(4, "big")
    + (0x8000).to_bytes(2, "big")
    + int(T0 + 1800).to_bytes(4, "big")
    + (0x4000).to_bytes(2, "big")
)

times = st.integers(0, (1 << 48) - 1).map(lambda ticks: ticks / 65536)


@st.composite
def beacons(draw: st.DrawFn) -> Beacon:
    return Beacon(
        energy_headroom_j=draw(st.floats(width=32, allow_nan=False, allow_infinity=False)),
        queue_jobs=draw(st.integers(0, 0xFFFFFFFF)),
        queue_octets=draw(st.integers(0, (1 << 64) - 1)),
        sunlit=draw(st.booleans()),
        soc=draw(st.floats(0.0, 1.0, width=32)),
        sender_time_tai_s=draw(times),
        accepts_offload=draw(st.booleans()),
        next_contact_tai_s=draw(st.none() | times),
    )


def test_a_beacon_encodes_to_the_hand_assembled_octets():
    assert len(BASE_OCTETS) == BEACON_LENGTH
    assert BASE.encode() == BASE_OCTETS
    assert Beacon.decode(BASE_OCTETS) == BASE


@SETTINGS
@given(beacons())
def test_every_beacon_survives_an_encode_decode_round_trip(beacon):
    assert Beacon.decode(beacon.encode()) == beacon


@SETTINGS
@given(beacons())
def test_fast_encoder_agrees_with_the_construct_declaration(beacon):
    parsed = BEACON.parse(beacon.encode())
    assert parsed.flags.sunlit == beacon.sunlit
    assert parsed.flags.accepts_offload == beacon.accepts_offload
    assert parsed.flags.next_contact_known == (beacon.next_contact_tai_s is not None)
    assert parsed.flags.reserved == 0
    assert parsed.state_of_charge == beacon.soc
    assert parsed.energy_headroom == beacon.energy_headroom_j
    assert parsed.queue_jobs == beacon.queue_jobs
    assert parsed.queue_octets == beacon.queue_octets
    assert int.from_bytes(parsed.sender_time, "big") == round(beacon.sender_time_tai_s * 65536)


def test_times_round_down_to_the_cuc_resolution_and_floats_to_float32():
    beacon = Beacon(0.1, 0, 0, False, 0.3, T0 + 1e-6, next_contact_tai_s=None)
    decoded = Beacon.decode(beacon.encode())
    assert decoded.sender_time_tai_s == T0
    assert decoded.soc == as_float32(0.3) != 0.3
    assert decoded.energy_headroom_j == as_float32(0.1)


@SETTINGS
@given(st.binary(max_size=40))
def test_arbitrary_octets_raise_only_protocol_errors(octets):
    with contextlib.suppress(ProtocolError):
        Beacon.decode(octets)


def with_octets(offset: int, replacement: bytes) -> bytes:
    return BASE_OCTETS[:offset] + replacement + BASE_OCTETS[offset + len(replacement) :]


@pytest.mark.parametrize(
    ("octets", "error", "words"),
    [
        (BASE_OCTETS[:-1], TruncatedError, "a beacon is 33"),
        (BASE_OCTETS + b"\x00", LengthError, "a beacon is 33"),
        (with_octets(0, b"\xe1"), FieldError, "reserved bits"),
        (with_octets(1, struct.pack(">f", 1.5)), FieldError, "state of charge 1.5"),
        (with_octets(1, struct.pack(">f", math.nan)), FieldError, "state of charge nan"),
        (with_octets(5, struct.pack(">f", math.inf)), FieldError, "energy headroom"),
        (with_octets(0, b"\xc0"), FieldError, "next contact time present"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_each_bad_beacon_gets_its_typed_error(octets, error, words):
    with pytest.raises(error, match=words):
        Beacon.decode(octets)


@pytest.mark.parametrize(
    "changes",
    [
        {"soc": 1.01},
        {"soc": -0.1},
        {"soc": math.nan},
        {"energy_headroom_j": math.inf},
        {"energy_headroom_j": 1e39},
        {"queue_jobs": -1},
        {"queue_octets": 1 << 64},
        {"sender_time_tai_s": -1.0},
        {"next_contact_tai_s": math.nan},
    ],
)
def test_the_encoder_refuses_values_the_wire_cannot_carry(changes):
    fields = {name: getattr(BASE, name) for name in Beacon.__slots__}
    with pytest.raises(FieldError):
        Beacon(**{**fields, **changes}).encode()


def beacon_at(sender_time: float, headroom: float = 1.0) -> Beacon:
    return Beacon(headroom, 0, 0, True, 0.5, sender_time)


def test_the_table_keeps_the_newest_beacon_and_counts_stale_ones():
    table = NeighbourTable(expiry_s=60.0)
    assert table.update(7, beacon_at(T0 + 10, headroom=1.0), now_s=100.0)
    assert not table.update(7, beacon_at(T0 + 5, headroom=2.0), now_s=101.0)  # reordered
    assert not table.update(7, beacon_at(T0 + 10, headroom=3.0), now_s=102.0)  # duplicate
    held = table.get(7, now_s=102.0)
    assert held is not None
    assert (held.beacon.energy_headroom_j, held.received_s) == (1.0, 100.0)
    assert table.update(7, beacon_at(T0 + 11, headroom=4.0), now_s=103.0)
    assert table.get(7, now_s=103.0).beacon.energy_headroom_j == 4.0
    assert (table.accepted, table.stale) == (2, 2)


def test_a_neighbour_not_heard_for_the_expiry_is_forgotten():
    table = NeighbourTable(expiry_s=30.0)
    table.update(9, beacon_at(T0), now_s=0.0)
    table.update(3, beacon_at(T0), now_s=20.0)
    assert [n.address for n in table.live(now_s=29.9)] == [3, 9]
    assert table.get(9, now_s=30.0) is None
    assert [n.address for n in table.live(now_s=30.0)] == [3]
    assert len(table) == 2
    assert table.expire(now_s=30.0) == [9]
    assert len(table) == 1
    assert table.expire(now_s=50.0) == [3]


def test_after_expiry_any_beacon_is_taken_even_one_with_an_older_clock():
    table = NeighbourTable(expiry_s=10.0)
    table.update(4, beacon_at(T0 + 100), now_s=0.0)
    assert table.update(4, beacon_at(T0 + 50), now_s=11.0)
    assert table.get(4, now_s=11.0).beacon.sender_time_tai_s == T0 + 50


def test_the_expiry_must_be_positive():
    with pytest.raises(ValueError, match="expiry"):
        NeighbourTable(expiry_s=0.0)
