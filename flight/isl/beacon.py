"""Neighbour beacons: what a node tells its neighbours about its energy, work and light, and the
table of the latest beacon from each neighbour, which forgets a neighbour it stops hearing.

A beacon travels as the payload of a BEACON routed packet to the broadcast address; the packet's
source address says who sent it. Times on the wire are mission time (TAI); the table's expiry
uses the receiving node's own loop seconds, passed in, so it never compares two nodes' clocks.
"""

import struct
from dataclasses import dataclass

from construct import BitsInteger, BitStruct, Bytes, Flag, Float32b, Int32ub, Int64ub, Struct

from flight.isl.fields import (
    TIME_LENGTH,
    check_finite,
    check_float32,
    decode_time,
    encode_time,
)
from flight.protocol.errors import FieldError, LengthError, TruncatedError, check_field

BEACON_LENGTH = 33
MAX_QUEUE_JOBS = 0xFFFFFFFF
MAX_QUEUE_OCTETS = 0xFFFFFFFFFFFFFFFF

BEACON = Struct(
    "flags"
    / BitStruct(
        "sunlit" / Flag,
        "accepts_offload" / Flag,
        "next_contact_known" / Flag,
        "reserved" / BitsInteger(5),
    ),
    "state_of_charge" / Float32b,
    "energy_headroom" / Float32b,
    "queue_jobs" / Int32ub,
    "queue_octets" / Int64ub,
    "sender_time" / Bytes(TIME_LENGTH),
    "next_contact_time" / Bytes(TIME_LENGTH),
)
"""The beacon payload (ICD "Inter-satellite links", beacons). Reference declaration; `Beacon` is
the fast path. Times are CUC T-fields; `next_contact_time` is all zeros when not known."""

_FIXED = struct.Struct(">BffIQ")
_SUNLIT = 0x80
_ACCEPTS_OFFLOAD = 0x40
_NEXT_CONTACT_KNOWN = 0x20
_RESERVED = 0x1F
_NO_TIME = bytes(TIME_LENGTH)


@dataclass(frozen=True, slots=True)
class Beacon:
    """A node's state as its neighbours need it to choose where to offload and route.

    `energy_headroom_j` is the battery energy above the node's state-of-charge floor (negative
    below it); `queue_jobs` and `queue_octets` the work it has queued; `soc` in 0..1.
    `next_contact_tai_s` is when the node next sees a ground station, if it knows: where results
    should be routed. Floats travel as float32 and times round down to 2**-16 s.
    """

    energy_headroom_j: float
    queue_jobs: int
    queue_octets: int
    sunlit: bool
    soc: float
    sender_time_tai_s: float
    accepts_offload: bool = True
    next_contact_tai_s: float | None = None

    def encode(self) -> bytes:
        check_float32(self.energy_headroom_j, "energy headroom (J)")
        check_field(self.queue_jobs, MAX_QUEUE_JOBS, "queued jobs")
        check_field(self.queue_octets, MAX_QUEUE_OCTETS, "queued octets")
        check_finite(self.soc, "state of charge", minimum=0.0)
        if self.soc > 1.0:
            raise FieldError(f"state of charge {self.soc} outside 0..1")
        flags = (
            (_SUNLIT if self.sunlit else 0)
            | (_ACCEPTS_OFFLOAD if self.accepts_offload else 0)
            | (_NEXT_CONTACT_KNOWN if self.next_contact_tai_s is not None else 0)
        )
        sent = encode_time(self.sender_time_tai_s, "sender time")
        contact = (
            _NO_TIME
            if self.next_contact_tai_s is None
            else encode_time(self.next_contact_tai_s, "next contact time")
        )
        fixed = _FIXED.pack(
            flags, self.soc, self.energy_headroom_j, self.queue_jobs, self.queue_octets
        )
        return fixed + sent + contact

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "Beacon":
        """Decode exactly one beacon payload; FieldError for reserved bits or impossible values."""
        if len(buffer) < BEACON_LENGTH:
            raise TruncatedError(f"{len(buffer)} octets, a beacon is {BEACON_LENGTH}", offset=0)
        if len(buffer) > BEACON_LENGTH:
            raise LengthError(f"{len(buffer)} octets, a beacon is {BEACON_LENGTH}", offset=0)
        flags, soc, headroom, jobs, octets = _FIXED.unpack_from(buffer, 0)
        if flags & _RESERVED:
            raise FieldError(f"beacon flags {flags:#04x}: reserved bits set", offset=0)
        if not 0.0 <= soc <= 1.0:  # also refuses NaN
            raise FieldError(f"state of charge {soc} outside 0..1", offset=1)
        check_finite(headroom, "energy headroom (J)")
        contact_offset = _FIXED.size + TIME_LENGTH
        known = bool(flags & _NEXT_CONTACT_KNOWN)
        if not known and buffer[contact_offset:] != _NO_TIME:
            raise FieldError("next contact time present but flagged unknown", offset=contact_offset)
        return cls(
            energy_headroom_j=headroom,
            queue_jobs=jobs,
            queue_octets=octets,
            sunlit=bool(flags & _SUNLIT),
            soc=soc,
            sender_time_tai_s=decode_time(buffer, _FIXED.size),
            accepts_offload=bool(flags & _ACCEPTS_OFFLOAD),
            next_contact_tai_s=decode_time(buffer, contact_offset) if known else None,
        )


@dataclass(frozen=True, slots=True)
class Neighbour:
    """The latest beacon from one neighbour and when this node received it (its loop seconds)."""

    address: int
    beacon: Beacon
    received_s: float


class NeighbourTable:
    """The latest beacon per neighbour; a neighbour not heard for `expiry_s` is forgotten.

    A beacon older than (or as old as) the one held, by the sender's own time, is a duplicate or
    arrived out of order: it is counted in `stale` and changes nothing.
    """

    def __init__(self, expiry_s: float) -> None:
        if not expiry_s > 0:
            raise ValueError(f"neighbour expiry must be > 0 s, not {expiry_s}")
        self.expiry_s = expiry_s
        self.accepted = 0
        self.stale = 0
        self._entries: dict[int, Neighbour] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def update(self, address: int, beacon: Beacon, now_s: float) -> bool:
        """Keep `beacon` from `address` if it is newer than the one held; True if it was kept."""
        held = self._entries.get(address)
        if (
            held is not None
            and self._live(held, now_s)
            and beacon.sender_time_tai_s <= held.beacon.sender_time_tai_s
        ):
            self.stale += 1
            return False
        self._entries[address] = Neighbour(address, beacon, now_s)
        self.accepted += 1
        return True

    def get(self, address: int, now_s: float) -> Neighbour | None:
        """The neighbour's latest entry, or None if never heard or expired."""
        held = self._entries.get(address)
        return held if held is not None and self._live(held, now_s) else None

    def live(self, now_s: float) -> list[Neighbour]:
        """Every neighbour heard within `expiry_s`, by address."""
        return sorted(
            (entry for entry in self._entries.values() if self._live(entry, now_s)),
            key=lambda entry: entry.address,
        )

    def expire(self, now_s: float) -> list[int]:
        """Forget the neighbours not heard within `expiry_s`; their addresses, ascending."""
        gone = sorted(a for a, entry in self._entries.items() if not self._live(entry, now_s))
        for address in gone:
            del self._entries[address]
        return gone

    def _live(self, entry: Neighbour, now_s: float) -> bool:
        return now_s - entry.received_s < self.expiry_s
