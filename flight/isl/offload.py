"""Offload between satellites: the negotiation messages and the ledger that makes it exactly once.

A node whose energy or queue cannot meet a job's deadline (the origin) OFFERs the job to a
neighbour with headroom (the executor). The executor ACCEPTs or DECLINEs. Once bound, the origin
sends the model and inputs by file transfer and tells the executor, with RESULT_ROUTE, which node
will next see a ground station (the holder; the origin itself until told otherwise). The executor
runs the job and sends the result file to the holder, which stores it and answers DONE to the
executor and the origin. An executor that cannot finish sends DONE with its status to the origin
(EXPIRED at the deadline, also for an accepted job whose inputs never came).
CANCEL releases an executor that accepted an offer the origin no longer wants.

Exactly once, written as rules that `OffloadLedger` enforces (the ledger is pure: the caller
persists its `snapshot()` and sends what it returns):

1. A job is identified by (origin address, origin's local id) and is accepted at most once per
   node: after an ACCEPT the node keeps the job id for good (CANCELLED or finished included), and
   never accepts that id again (a new OFFER for it gets DECLINE ALREADY_CLOSED once closed).
2. A duplicate OFFER after ACCEPT gets the same answer: ACCEPT again (with `started` telling the
   origin whether its inputs arrived), or, once finished, the DONE the executor would send.
   The origin re-sends its OFFER every `retry_s` until the job is closed, so a lost ACCEPT, a
   lost DONE or lost inputs are all recovered by the next exchange.
3. The origin binds the job to exactly one executor: the first node it offered to that accepts
   it while the offer stands. The origin offers a job to one node at a time and sends inputs only
   to the bound executor; an ACCEPT from anyone else, or after a withdrawal, is answered with
   CANCEL. A node the origin withdrew an offer from, or that declined or released the job, is
   never offered that job again, so a late or reordered message cannot bind it.
4. A bound job is never withdrawn by the origin: the executor may be running it. Only the
   executor gives it back (DONE RELEASED, before it starts) or ends it (DONE with its status).
5. An executor runs a job only once: `start` says True the first time the inputs arrive for an
   accepted job and False ever after (duplicate inputs, or a CANCELLED job).
6. A result delivered twice is stored once: the holder keeps the job ids of the results it has
   stored, answers every delivery with DONE COMPLETED, and reports a duplicate as such. The
   executor re-sends the result every `retry_s` until that DONE arrives.
7. CANCEL, RESULT_ROUTE and OFFER are taken only from the job's origin. RESULT_ROUTE carries a
   version, so a reordered older route never replaces a newer one, and it counts only until the
   job finishes: a result goes to one holder, so it is stored at one node in the constellation.

The caller persists `snapshot()` before it sends what a call returned (write-ahead), so that a
reboot never forgets a promise already made. Times are the caller's loop seconds (for retries);
the deadline on the wire is mission time (TAI).
"""

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from construct import (
    BitsInteger,
    BitStruct,
    Bytes,
    Flag,
    Float32b,
    Int8ub,
    Int32ub,
    Int64ub,
    Struct,
)

from flight.isl.beacon import Neighbour
from flight.isl.fields import TIME_LENGTH, check_float32, decode_time, encode_time
from flight.isl.frame import BROADCAST_ADDRESS, MAX_ADDRESS, PacketKind
from flight.protocol.errors import (
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
    check_field,
)

SHA256_LENGTH = 32
MAX_LOCAL_ID = 0xFFFFFFFF
MAX_TILES = 0xFFFFFFFF
MAX_INPUT_OCTETS = 0xFFFFFFFFFFFFFFFF
MAX_ROUTE_VERSION = 0xFFFFFFFF
NO_HOLDER = BROADCAST_ADDRESS
"""`Done.holder` when no node holds a result (the job did not complete)."""

JOB_ID = Struct("origin_address" / Int32ub, "local_id" / Int32ub)
OFFER = Struct(
    "job_id" / JOB_ID,
    "model_sha256" / Bytes(SHA256_LENGTH),
    "tiles" / Int32ub,
    "input_octets" / Int64ub,
    "deadline" / Bytes(TIME_LENGTH),
    "energy_estimate" / Float32b,
    "value" / Float32b,
)
ACCEPT = Struct(
    "job_id" / JOB_ID,
    "flags" / BitStruct("started" / Flag, "reserved" / BitsInteger(7)),
)
DECLINE = Struct("job_id" / JOB_ID, "reason" / Int8ub)
RESULT_ROUTE = Struct("job_id" / JOB_ID, "route_version" / Int32ub, "holder_address" / Int32ub)
DONE = Struct("job_id" / JOB_ID, "status" / Int8ub, "holder_address" / Int32ub)
CANCEL = Struct("job_id" / JOB_ID)
"""Offload message payloads (ICD "Inter-satellite links", offload). Reference declarations; the
message classes are the fast path. `deadline` is a CUC T-field (TAI), floats are IEEE float32."""


class OffloadError(Exception):
    """A ledger call the protocol forbids (offering a bound job, finishing an unknown one)."""


class DeclineReason(IntEnum):
    NOT_ACCEPTING = 1  # this node takes no offloaded work now
    NO_ENERGY = 2
    QUEUE_FULL = 3
    DEADLINE = 4  # it could not finish before the deadline
    NO_STORAGE = 5  # no room for the model and inputs
    ALREADY_CLOSED = 6  # this node accepted the job id once already (rule 1)


class DoneStatus(IntEnum):
    COMPLETED = 0  # the result is stored at `holder`
    FAILED = 1
    EXPIRED = 2  # the deadline passed first
    RELEASED = 3  # given back before it started: the origin may offer it elsewhere


_DECLINE_REASONS = {reason.value: reason for reason in DeclineReason}
_DONE_STATUSES = {status.value: status for status in DoneStatus}


def _check_length(buffer: bytes | bytearray | memoryview, length: int, what: str) -> None:
    if len(buffer) < length:
        raise TruncatedError(f"{len(buffer)} octets, {what} is {length}", offset=0)
    if len(buffer) > length:
        raise LengthError(f"{len(buffer)} octets, {what} is {length}", offset=0)


@dataclass(frozen=True, slots=True, order=True)
class JobId:
    """A job's identity across the constellation: its origin node and the origin's local id."""

    origin: int
    local_id: int

    LENGTH = 8

    @property
    def name(self) -> str:
        """A stable token for file names and logs: origin and local id in hexadecimal."""
        return f"{self.origin:08x}-{self.local_id:08x}"

    def encode(self) -> bytes:
        check_field(self.origin, MAX_ADDRESS, "job origin address")
        check_field(self.local_id, MAX_LOCAL_ID, "job local id")
        return _JOB.pack(self.origin, self.local_id)

    @classmethod
    def decode_from(cls, buffer: bytes | bytearray | memoryview, offset: int = 0) -> "JobId":
        origin, local_id = _JOB.unpack_from(buffer, offset)
        if origin > MAX_ADDRESS:
            raise FieldError("the broadcast address cannot originate a job", offset=offset)
        return cls(origin, local_id)


_JOB = struct.Struct(">II")
_OFFER_TAIL = struct.Struct(">IQ")
_FLOATS = struct.Struct(">ff")
_ROUTE = struct.Struct(">II")
_DONE = struct.Struct(">BI")


@dataclass(frozen=True, slots=True)
class Offer:
    """'Will you run this job?': what the executor needs to judge it before any file moves."""

    job: JobId
    model_sha256: bytes
    tiles: int
    input_octets: int
    deadline_tai_s: float
    energy_estimate_j: float
    value: float

    LENGTH = 8 + SHA256_LENGTH + 12 + TIME_LENGTH + 8

    def encode(self) -> bytes:
        if len(self.model_sha256) != SHA256_LENGTH:
            raise LengthError(f"model sha256 of {len(self.model_sha256)} octets, not 32")
        check_field(self.tiles, MAX_TILES, "tiles")
        check_field(self.input_octets, MAX_INPUT_OCTETS, "input octets")
        check_float32(self.energy_estimate_j, "energy estimate (J)", minimum=0.0)
        check_float32(self.value, "value", minimum=0.0)
        return (
            self.job.encode()
            + bytes(self.model_sha256)
            + _OFFER_TAIL.pack(self.tiles, self.input_octets)
            + encode_time(self.deadline_tai_s, "deadline")
            + _FLOATS.pack(self.energy_estimate_j, self.value)
        )

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "Offer":
        _check_length(buffer, cls.LENGTH, "an OFFER")
        job = JobId.decode_from(buffer)
        at = JobId.LENGTH + SHA256_LENGTH
        tiles, input_octets = _OFFER_TAIL.unpack_from(buffer, at)
        at += _OFFER_TAIL.size
        deadline = decode_time(buffer, at)
        energy, value = _FLOATS.unpack_from(buffer, at + TIME_LENGTH)
        if not (math.isfinite(energy) and energy >= 0):
            raise FieldError(f"energy estimate {energy} J is not a finite number >= 0", offset=at)
        if not (math.isfinite(value) and value >= 0):
            raise FieldError(f"value {value} is not a finite number >= 0", offset=at + 4)
        sha = bytes(buffer[JobId.LENGTH : JobId.LENGTH + SHA256_LENGTH])
        return cls(job, sha, tiles, input_octets, deadline, energy, value)


@dataclass(frozen=True, slots=True)
class Accept:
    """'I will run it.' `started`: the inputs have arrived and the job is running or has run."""

    job: JobId
    started: bool = False

    LENGTH = 9

    def encode(self) -> bytes:
        return self.job.encode() + (b"\x80" if self.started else b"\x00")

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "Accept":
        _check_length(buffer, cls.LENGTH, "an ACCEPT")
        flags = buffer[8]
        if flags & 0x7F:
            raise FieldError(f"ACCEPT flags {flags:#04x}: reserved bits set", offset=8)
        return cls(JobId.decode_from(buffer), bool(flags & 0x80))


@dataclass(frozen=True, slots=True)
class Decline:
    job: JobId
    reason: DeclineReason

    LENGTH = 9

    def encode(self) -> bytes:
        if self.reason not in _DECLINE_REASONS:
            raise FieldError(f"decline reason {self.reason} is not a DeclineReason")
        return self.job.encode() + bytes([self.reason])

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "Decline":
        _check_length(buffer, cls.LENGTH, "a DECLINE")
        reason = _DECLINE_REASONS.get(buffer[8])
        if reason is None:
            raise FieldError(f"unknown decline reason {buffer[8]}", offset=8)
        return cls(JobId.decode_from(buffer), reason)


@dataclass(frozen=True, slots=True)
class ResultRoute:
    """'Send the result to `holder`', the node that will next see a ground station."""

    job: JobId
    version: int
    holder: int

    LENGTH = 16

    def encode(self) -> bytes:
        check_field(self.version, MAX_ROUTE_VERSION, "route version")
        check_field(self.holder, MAX_ADDRESS, "result holder address")
        return self.job.encode() + _ROUTE.pack(self.version, self.holder)

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "ResultRoute":
        _check_length(buffer, cls.LENGTH, "a RESULT_ROUTE")
        version, holder = _ROUTE.unpack_from(buffer, 8)
        if holder > MAX_ADDRESS:
            raise FieldError("the broadcast address cannot hold a result", offset=12)
        return cls(JobId.decode_from(buffer), version, holder)


@dataclass(frozen=True, slots=True)
class Done:
    """The job's end: COMPLETED with the result stored at `holder`, or why it did not complete."""

    job: JobId
    status: DoneStatus
    holder: int = NO_HOLDER

    LENGTH = 13

    def encode(self) -> bytes:
        if self.status not in _DONE_STATUSES:
            raise FieldError(f"done status {self.status} is not a DoneStatus")
        self._check_holder(self.status, self.holder)
        return self.job.encode() + _DONE.pack(self.status, self.holder)

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "Done":
        _check_length(buffer, cls.LENGTH, "a DONE")
        code, holder = _DONE.unpack_from(buffer, 8)
        status = _DONE_STATUSES.get(code)
        if status is None:
            raise FieldError(f"unknown done status {code}", offset=8)
        cls._check_holder(status, holder, offset=9)
        return cls(JobId.decode_from(buffer), status, holder)

    @staticmethod
    def _check_holder(status: DoneStatus, holder: int, offset: int | None = None) -> None:
        if (status is DoneStatus.COMPLETED) == (holder == NO_HOLDER):
            raise FieldError(
                f"DONE {status.name} with holder {holder:#x}: a completed job names the node "
                f"holding its result, any other status names none ({NO_HOLDER:#x})",
                offset=offset,
            )


@dataclass(frozen=True, slots=True)
class Cancel:
    """'Forget my offer': the origin will never send this node the job's inputs."""

    job: JobId

    LENGTH = 8

    def encode(self) -> bytes:
        return self.job.encode()

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "Cancel":
        _check_length(buffer, cls.LENGTH, "a CANCEL")
        return cls(JobId.decode_from(buffer))


Message = Offer | Accept | Decline | ResultRoute | Done | Cancel

MESSAGE_KINDS: dict[type, PacketKind] = {
    Offer: PacketKind.OFFER,
    Accept: PacketKind.ACCEPT,
    Decline: PacketKind.DECLINE,
    ResultRoute: PacketKind.RESULT_ROUTE,
    Done: PacketKind.DONE,
    Cancel: PacketKind.CANCEL,
}
_DECODERS: dict[PacketKind, Callable[[bytes | bytearray | memoryview], Message]] = {
    kind: cls.decode for cls, kind in MESSAGE_KINDS.items()
}


def message_kind(message: Message) -> PacketKind:
    """The routed packet kind that carries `message`."""
    return MESSAGE_KINDS[type(message)]


def decode_message(kind: PacketKind, payload: bytes | bytearray | memoryview) -> Message:
    """The offload message in a routed packet's payload (FieldError if `kind` is not one)."""
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise FieldError(f"packet kind {kind!r} carries no offload message")
    return decoder(payload)


def rank_candidates(
    neighbours: Iterable[Neighbour], *, energy_j: float, exclude: Iterable[int] = ()
) -> list[int]:
    """Neighbours that could take a job needing `energy_j`, best first.

    Only those that accept offload and have at least `energy_j` of headroom; sunlit ones first,
    then the most headroom, the shortest queue, the lowest address.
    """
    excluded = set(exclude)
    fit = [
        n
        for n in neighbours
        if n.address not in excluded
        and n.beacon.accepts_offload
        and n.beacon.energy_headroom_j >= energy_j
    ]
    fit.sort(
        key=lambda n: (
            not n.beacon.sunlit,
            -n.beacon.energy_headroom_j,
            n.beacon.queue_jobs,
            n.address,
        )
    )
    return [n.address for n in fit]


def earliest_contact(contacts: Iterable[tuple[int, float | None]]) -> int | None:
    """Of (address, next ground contact TAI s or None), the node that sees a station first.

    Ties go to the lowest address; nodes with no known contact never win. None if none has one.
    """
    known = [(time, address) for address, time in contacts if time is not None]
    return min(known)[1] if known else None


class LedgerEvent(StrEnum):
    """What a message (or call) meant to this node; the caller acts on the first group."""

    BOUND = "bound"  # origin: the offer was accepted, send the model and inputs to the executor
    INPUTS_NEEDED = "inputs_needed"  # origin: the bound executor still lacks the inputs
    ACCEPTED = "accepted"  # executor: a new job accepted, reserve for it and await inputs
    CANCELLED = "cancelled"  # executor: an accepted job will not come, free its reservation
    FINISHED = "finished"  # executor: send the DONE, or the result to its holder
    RESULT_STORED = "result_stored"  # holder: keep the result and downlink it
    RESULT_CONFIRMED = "result_confirmed"  # executor: the holder has the result, drop our copy
    CLOSED = "closed"  # origin: the job ended (see the DONE status)
    REFUSED = "refused"  # origin: declined or released, the job is ours to place again
    DECLINED = "declined"  # executor: we declined an offer
    REPEATED = "repeated"  # a duplicate, answered as before
    ROUTE_UPDATED = "route_updated"  # executor: the result goes to a new holder
    UNWANTED = "unwanted"  # origin: an ACCEPT we did not ask for, answered with CANCEL
    RESULT_DUPLICATE = "result_duplicate"  # holder: already stored, DONE sent again
    IGNORED = "ignored"  # stale, or about a job this node has no part in


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to send to `destination` (as a routed packet of `message_kind(message)`)."""

    destination: int
    message: Message


@dataclass(frozen=True, slots=True)
class ResultTransfer:
    """Send the result file of `job` to `holder` (by file transfer)."""

    job: JobId
    holder: int


@dataclass(frozen=True, slots=True)
class Reaction:
    event: LedgerEvent
    job: JobId
    replies: tuple[Outgoing, ...] = ()
    transfer: ResultTransfer | None = None


class OriginState(StrEnum):
    LOCAL = "local"  # not offered now (never, or declined, released, withdrawn)
    OFFERED = "offered"  # offered to `executor`, no answer yet
    BOUND = "bound"  # accepted by `executor`: it and only it will run the job
    KEPT = "kept"  # the origin runs it itself; no one else ever will
    CLOSED = "closed"  # ended: `status` (and `result_holder` if completed)


class ExecutorState(StrEnum):
    ACCEPTED = "accepted"  # awaiting the inputs
    STARTED = "started"  # inputs arrived; running
    FINISHED = "finished"  # ended with `status`; a completed result awaits the holder's DONE
    CONFIRMED = "confirmed"  # the holder has the result
    CANCELLED = "cancelled"  # the origin withdrew (or a CANCEL came first): never to run


@dataclass(frozen=True, slots=True)
class OriginView:
    offer: Offer
    state: OriginState
    executor: int | None
    refused_by: frozenset[int]
    status: DoneStatus | None
    result_holder: int | None


@dataclass(frozen=True, slots=True)
class ExecutorView:
    job: JobId
    offer: Offer | None  # None for a job cancelled before its offer arrived
    state: ExecutorState
    holder: int
    status: DoneStatus | None


@dataclass(slots=True)
class _Outbound:
    offer: Offer
    state: OriginState = OriginState.LOCAL
    executor: int | None = None
    refused_by: set[int] = field(default_factory=set)
    route_version: int = 0
    route_holder: int | None = None
    status: DoneStatus | None = None
    result_holder: int | None = None
    last_sent_s: float = -math.inf


@dataclass(slots=True)
class _Inbound:
    job: JobId
    offer: Offer | None
    state: ExecutorState
    holder: int
    route_version: int = 0
    status: DoneStatus | None = None
    last_sent_s: float = -math.inf


Decide = Callable[[Offer], DeclineReason | None]


def decline_all(offer: Offer) -> DeclineReason | None:
    """The default policy: this node takes no offloaded work."""
    return DeclineReason.NOT_ACCEPTING


class OffloadLedger:
    """One node's record of the jobs it offered, accepted and holds results for.

    Pure: no clock, no I/O. Every call returns what to send (`Outgoing`), what file to move
    (`ResultTransfer`) and what it meant (`LedgerEvent`); `due(now_s)` returns the retries.
    """

    def __init__(self, address: int, *, retry_s: float = 30.0) -> None:
        if not 0 <= address <= MAX_ADDRESS:
            raise ValueError(f"ledger address {address} is not a node address")
        if not (math.isfinite(retry_s) and retry_s > 0):
            raise ValueError(f"retry interval must be > 0 s, not {retry_s}")
        self.address = address
        self.retry_s = retry_s
        self._outbound: dict[JobId, _Outbound] = {}
        self._inbound: dict[JobId, _Inbound] = {}
        self._results: set[JobId] = set()

    # ---- origin ----------------------------------------------------------------------------

    def offer(self, offer: Offer, to: int, now_s: float) -> Outgoing:
        """Offer one of this node's jobs to `to`; the OFFER to send (re-sent by `due`)."""
        job = offer.job
        if job.origin != self.address:
            raise OffloadError(f"node {self.address} cannot offer job {job.name} of another")
        if to == self.address or not 0 <= to <= MAX_ADDRESS:
            raise OffloadError(f"cannot offer job {job.name} to {to}")
        record = self._outbound.get(job)
        if record is None:
            record = self._outbound[job] = _Outbound(offer)
        if record.state is not OriginState.LOCAL:
            raise OffloadError(f"job {job.name} is {record.state.value}, it cannot be offered")
        if to in record.refused_by:
            raise OffloadError(
                f"job {job.name} was already declined, released or withdrawn by {to}"
            )
        record.offer = offer
        record.state = OriginState.OFFERED
        record.executor = to
        record.last_sent_s = now_s
        return Outgoing(to, offer)

    def withdraw(self, job: JobId) -> Outgoing:
        """Take back an unanswered offer (it timed out): the CANCEL to send. Not once bound."""
        record = self._origin_record(job)
        if record.state is not OriginState.OFFERED or record.executor is None:
            raise OffloadError(
                f"job {job.name} is {record.state.value}: only an offer can be withdrawn"
            )
        executor = record.executor
        record.refused_by.add(executor)
        record.state = OriginState.LOCAL
        record.executor = None
        return Outgoing(executor, Cancel(job))

    def keep(self, job: JobId) -> None:
        """The origin will run the job itself (it is not offered now): nobody else ever will."""
        record = self._origin_record(job)
        if record.state is not OriginState.LOCAL:
            raise OffloadError(f"job {job.name} is {record.state.value}, it cannot be kept")
        record.state = OriginState.KEPT

    def route_result(self, job: JobId, holder: int, now_s: float) -> Outgoing | None:
        """The result should go to `holder`: the RESULT_ROUTE to send now, if bound (else later)."""
        record = self._origin_record(job)
        if not 0 <= holder <= MAX_ADDRESS:
            raise OffloadError(f"result holder {holder} is not a node address")
        record.route_version += 1
        record.route_holder = holder
        if record.state is OriginState.BOUND and record.executor is not None:
            return Outgoing(record.executor, self._route_message(record))
        return None

    def origin_view(self, job: JobId) -> OriginView | None:
        record = self._outbound.get(job)
        if record is None:
            return None
        return OriginView(
            record.offer,
            record.state,
            record.executor,
            frozenset(record.refused_by),
            record.status,
            record.result_holder,
        )

    def origin_jobs(self) -> list[JobId]:
        return sorted(self._outbound)

    # ---- executor --------------------------------------------------------------------------

    def start(self, job: JobId) -> bool:
        """The inputs of `job` arrived: True if it should run now (the first time only)."""
        record = self._inbound.get(job)
        if record is None or record.state is not ExecutorState.ACCEPTED:
            return False
        record.state = ExecutorState.STARTED
        return True

    def finish(self, job: JobId, status: DoneStatus, now_s: float) -> Reaction:
        """This executor ended `job`. COMPLETED: send the result to the holder (the transfer);
        otherwise the DONE for the origin. RELEASED only before the job started."""
        record = self._inbound.get(job)
        if record is None or record.state not in (ExecutorState.ACCEPTED, ExecutorState.STARTED):
            state = "unknown" if record is None else record.state.value
            raise OffloadError(f"job {job.name} is {state} here: it cannot be finished")
        if status is DoneStatus.RELEASED and record.state is ExecutorState.STARTED:
            raise OffloadError(f"job {job.name} has started: it can no longer be released")
        if status is DoneStatus.COMPLETED and record.state is not ExecutorState.STARTED:
            raise OffloadError(f"job {job.name} never started: it cannot have completed")
        record.state = ExecutorState.FINISHED
        record.status = status
        record.last_sent_s = now_s
        if status is not DoneStatus.COMPLETED:
            return Reaction(LedgerEvent.FINISHED, job, (Outgoing(job.origin, Done(job, status)),))
        if record.holder == self.address:
            stored = self.result_received(job, self.address, now_s)
            return Reaction(stored.event, job, stored.replies)
        return Reaction(LedgerEvent.FINISHED, job, transfer=ResultTransfer(job, record.holder))

    def executor_view(self, job: JobId) -> ExecutorView | None:
        record = self._inbound.get(job)
        if record is None:
            return None
        return ExecutorView(job, record.offer, record.state, record.holder, record.status)

    def executor_jobs(self) -> list[JobId]:
        return sorted(self._inbound)

    # ---- result holder ---------------------------------------------------------------------

    def result_received(self, job: JobId, sender: int, now_s: float) -> Reaction:
        """The result of `job` arrived from `sender` (its executor): store it once, say DONE."""
        done = Done(job, DoneStatus.COMPLETED, self.address)
        targets = sorted({sender, job.origin} - {self.address})
        replies = tuple(Outgoing(target, done) for target in targets)
        if job in self._results:
            return Reaction(LedgerEvent.RESULT_DUPLICATE, job, replies)
        self._results.add(job)
        if sender == self.address:
            self._confirm(job)
        if job.origin == self.address:
            self._close(job, done)
        return Reaction(LedgerEvent.RESULT_STORED, job, replies)

    def has_result(self, job: JobId) -> bool:
        return job in self._results

    # ---- messages --------------------------------------------------------------------------

    def receive(
        self, source: int, message: Message, now_s: float, *, decide: Decide = decline_all
    ) -> Reaction:
        """React to `message` from node `source`. `decide` judges new offers (None = accept)."""
        if isinstance(message, Offer):
            return self._on_offer(source, message, decide)
        if isinstance(message, Accept):
            return self._on_accept(source, message)
        if isinstance(message, Decline):
            return self._on_refusal(source, message.job)
        if isinstance(message, ResultRoute):
            return self._on_route(source, message)
        if isinstance(message, Done):
            return self._on_done(source, message)
        if isinstance(message, Cancel):
            return self._on_cancel(source, message.job)
        raise TypeError(f"not an offload message: {message!r}")

    def due(self, now_s: float) -> list[Outgoing | ResultTransfer]:
        """What to send again now: offers (and probes of bound executors) unanswered for
        `retry_s`, and results whose holder has not said DONE."""
        out: list[Outgoing | ResultTransfer] = []
        for job in sorted(self._outbound):
            record = self._outbound[job]
            if record.state in (OriginState.OFFERED, OriginState.BOUND) and self._due(
                record, now_s
            ):
                assert record.executor is not None
                out.append(Outgoing(record.executor, record.offer))
        for job in sorted(self._inbound):
            inbound = self._inbound[job]
            if (
                inbound.state is ExecutorState.FINISHED
                and inbound.status is DoneStatus.COMPLETED
                and self._due(inbound, now_s)
            ):
                out.append(ResultTransfer(job, inbound.holder))
        return out

    def _due(self, record: _Outbound | _Inbound, now_s: float) -> bool:
        if now_s - record.last_sent_s < self.retry_s:
            return False
        record.last_sent_s = now_s
        return True

    def _on_offer(self, source: int, offer: Offer, decide: Decide) -> Reaction:
        job = offer.job
        if source != job.origin or job.origin == self.address:
            return Reaction(LedgerEvent.IGNORED, job)
        record = self._inbound.get(job)
        if record is not None:
            return Reaction(LedgerEvent.REPEATED, job, (Outgoing(source, self._answer(record)),))
        reason = decide(offer)
        if reason is not None:
            return Reaction(LedgerEvent.DECLINED, job, (Outgoing(source, Decline(job, reason)),))
        self._inbound[job] = _Inbound(job, offer, ExecutorState.ACCEPTED, holder=job.origin)
        return Reaction(LedgerEvent.ACCEPTED, job, (Outgoing(source, Accept(job)),))

    def _answer(self, record: _Inbound) -> Message:
        """The executor's answer to a repeated OFFER: the same as before (rule 2)."""
        job = record.job
        if record.state is ExecutorState.CANCELLED:
            return Decline(job, DeclineReason.ALREADY_CLOSED)
        if record.state is ExecutorState.CONFIRMED:
            return Done(job, DoneStatus.COMPLETED, record.holder)
        if record.state is ExecutorState.FINISHED and record.status is not DoneStatus.COMPLETED:
            assert record.status is not None
            return Done(job, record.status)
        return Accept(job, started=record.state is not ExecutorState.ACCEPTED)

    def _on_accept(self, source: int, accept: Accept) -> Reaction:
        job = accept.job
        if job.origin != self.address:
            return Reaction(LedgerEvent.IGNORED, job)
        record = self._outbound.get(job)
        if record is not None and record.executor == source:
            if record.state is OriginState.OFFERED:
                record.state = OriginState.BOUND
                replies = ()
                if record.route_holder is not None:
                    replies = (Outgoing(source, self._route_message(record)),)
                return Reaction(LedgerEvent.BOUND, job, replies)
            if record.state is OriginState.BOUND:
                event = LedgerEvent.REPEATED if accept.started else LedgerEvent.INPUTS_NEEDED
                return Reaction(event, job)
            if record.state is OriginState.CLOSED:
                return Reaction(LedgerEvent.IGNORED, job)
        # Not the node the job stands offered or bound to: it must never get the inputs.
        return Reaction(LedgerEvent.UNWANTED, job, (Outgoing(source, Cancel(job)),))

    def _on_refusal(self, source: int, job: JobId) -> Reaction:
        record = self._outbound.get(job)
        if (
            job.origin != self.address
            or record is None
            or record.executor != source
            or record.state is not OriginState.OFFERED
        ):
            return Reaction(LedgerEvent.IGNORED, job)
        self._free(record, source)
        return Reaction(LedgerEvent.REFUSED, job)

    def _on_route(self, source: int, route: ResultRoute) -> Reaction:
        record = self._inbound.get(route.job)
        if (
            record is None
            or source != route.job.origin
            or record.state not in (ExecutorState.ACCEPTED, ExecutorState.STARTED)
            or route.version <= record.route_version
        ):
            return Reaction(LedgerEvent.IGNORED, route.job)
        record.route_version = route.version
        record.holder = route.holder
        return Reaction(LedgerEvent.ROUTE_UPDATED, route.job)

    def _on_done(self, source: int, done: Done) -> Reaction:
        job = done.job
        if job.origin == self.address:
            record = self._outbound.get(job)
            if record is None or record.state is not OriginState.BOUND:
                return Reaction(LedgerEvent.IGNORED, job)
            if done.status is DoneStatus.COMPLETED:
                # From the holder, whoever it is: it has the result.
                self._close(job, done)
                return Reaction(LedgerEvent.CLOSED, job)
            if source != record.executor:
                return Reaction(LedgerEvent.IGNORED, job)
            if done.status is DoneStatus.RELEASED:
                self._free(record, source)
                return Reaction(LedgerEvent.REFUSED, job)
            self._close(job, done)
            return Reaction(LedgerEvent.CLOSED, job)
        inbound = self._inbound.get(job)
        if (
            inbound is None
            or done.status is not DoneStatus.COMPLETED
            or inbound.state is not ExecutorState.FINISHED
            or inbound.status is not DoneStatus.COMPLETED
            or source != done.holder
        ):
            return Reaction(LedgerEvent.IGNORED, job)
        # The holder may not be the one we last sent to (a newer route): it has it all the same.
        inbound.holder = done.holder
        self._confirm(job)
        return Reaction(LedgerEvent.RESULT_CONFIRMED, job)

    def _on_cancel(self, source: int, job: JobId) -> Reaction:
        if source != job.origin or job.origin == self.address:
            return Reaction(LedgerEvent.IGNORED, job)
        record = self._inbound.get(job)
        if record is None:
            # The CANCEL overtook its OFFER: remember it, so that the OFFER is declined (rule 1).
            self._inbound[job] = _Inbound(job, None, ExecutorState.CANCELLED, holder=job.origin)
            return Reaction(LedgerEvent.CANCELLED, job)
        if record.state is not ExecutorState.ACCEPTED:
            return Reaction(LedgerEvent.IGNORED, job)  # never stop a job that may be the one run
        record.state = ExecutorState.CANCELLED
        return Reaction(LedgerEvent.CANCELLED, job)

    def _origin_record(self, job: JobId) -> _Outbound:
        record = self._outbound.get(job)
        if record is None:
            raise OffloadError(f"job {job.name} was never offered by node {self.address}")
        return record

    def _route_message(self, record: _Outbound) -> ResultRoute:
        assert record.route_holder is not None
        return ResultRoute(record.offer.job, record.route_version, record.route_holder)

    def _free(self, record: _Outbound, executor: int) -> None:
        record.refused_by.add(executor)
        record.state = OriginState.LOCAL
        record.executor = None

    def _close(self, job: JobId, done: Done) -> None:
        record = self._outbound.get(job)
        if record is not None and record.state is not OriginState.CLOSED:
            record.state = OriginState.CLOSED
            record.status = done.status
            record.result_holder = None if done.holder == NO_HOLDER else done.holder

    def _confirm(self, job: JobId) -> None:
        record = self._inbound.get(job)
        if record is not None and record.state is ExecutorState.FINISHED:
            record.state = ExecutorState.CONFIRMED

    # ---- persistence -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything that must survive a reboot, as JSON-compatible data (offers as wire hex).

        Retry times are not kept: after `restore` every pending message is due at once.
        """
        return {
            "address": self.address,
            "outbound": [
                {
                    "offer": record.offer.encode().hex(),
                    "state": record.state.value,
                    "executor": record.executor,
                    "refused_by": sorted(record.refused_by),
                    "route_version": record.route_version,
                    "route_holder": record.route_holder,
                    "status": None if record.status is None else record.status.value,
                    "result_holder": record.result_holder,
                }
                for record in (self._outbound[job] for job in sorted(self._outbound))
            ],
            "inbound": [
                {
                    "job": [job.origin, job.local_id],
                    "offer": None if record.offer is None else record.offer.encode().hex(),
                    "state": record.state.value,
                    "holder": record.holder,
                    "route_version": record.route_version,
                    "status": None if record.status is None else record.status.value,
                }
                for job, record in ((job, self._inbound[job]) for job in sorted(self._inbound))
            ],
            "results": [[job.origin, job.local_id] for job in sorted(self._results)],
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any], *, retry_s: float = 30.0) -> "OffloadLedger":
        """The ledger a `snapshot` was taken of (ValueError if it is not one)."""
        try:
            ledger = cls(int(snapshot["address"]), retry_s=retry_s)
            for item in snapshot["outbound"]:
                offer = Offer.decode(bytes.fromhex(item["offer"]))
                ledger._outbound[offer.job] = _Outbound(
                    offer,
                    OriginState(item["state"]),
                    item["executor"],
                    set(item["refused_by"]),
                    item["route_version"],
                    item["route_holder"],
                    None if item["status"] is None else DoneStatus(item["status"]),
                    item["result_holder"],
                )
            for item in snapshot["inbound"]:
                job = JobId(*item["job"])
                offer = (
                    None if item["offer"] is None else Offer.decode(bytes.fromhex(item["offer"]))
                )
                ledger._inbound[job] = _Inbound(
                    job,
                    offer,
                    ExecutorState(item["state"]),
                    item["holder"],
                    item["route_version"],
                    None if item["status"] is None else DoneStatus(item["status"]),
                )
            ledger._results = {JobId(*job) for job in snapshot["results"]}
        except (KeyError, TypeError, ValueError, ProtocolError) as error:
            raise ValueError(f"not an offload ledger snapshot: {error}") from None
        return ledger
