"""COP-1 (CCSDS 232.1-B-2): the CLCW, FARM-1 onboard, FOP-1 on the ground, and a FOP-1 driver."""

import asyncio
import itertools
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import TracebackType

from construct import BitsInteger, BitStruct, Flag

from flight.protocol import icd
from flight.protocol.errors import (
    AddressError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
    check_field,
)
from flight.protocol.tc_frame import (
    FECF_LENGTH,
    MAX_FRAME_LENGTH,
    MAX_VIRTUAL_CHANNEL_ID,
    PRIMARY_HEADER_LENGTH,
    SEGMENT_HEADER_LENGTH,
    ControlCommand,
    FrameType,
    TcFrame,
)

MODULUS = 256  # frame sequence numbers, V(R), V(S), N(R) all count modulo 256
MAX_FDU_LENGTH = MAX_FRAME_LENGTH - PRIMARY_HEADER_LENGTH - SEGMENT_HEADER_LENGTH - FECF_LENGTH

# --------------------------------------------------------------------------------------------------
# CLCW — Communications Link Control Word, 232.0-B-4 4.2.1
# --------------------------------------------------------------------------------------------------

CLCW_LENGTH = 4
COP_1_IN_EFFECT = 1  # 232.0-B-4 4.2.1.5: COP in Effect = 01 for COP-1

CLCW = BitStruct(
    "control_word_type" / BitsInteger(1),
    "clcw_version_number" / BitsInteger(2),
    "status_field" / BitsInteger(3),
    "cop_in_effect" / BitsInteger(2),
    "virtual_channel_identification" / BitsInteger(6),
    "reserved_spare_1" / BitsInteger(2),
    "no_rf_available" / Flag,
    "no_bit_lock" / Flag,
    "lockout" / Flag,
    "wait" / Flag,
    "retransmit" / Flag,
    "farm_b_counter" / BitsInteger(2),
    "reserved_spare_2" / BitsInteger(1),
    "report_value" / BitsInteger(8),
)
"""The CLCW, 232.0-B-4 4.2.1 (figure 4-7), carried as the 4-octet Operational Control Field of TM
frames. Reference declaration; `Clcw` is the fast path."""

_CLCW_FIELDS: tuple[tuple[str, int], ...] = (
    # (field, width in bits), most significant first, as in figure 4-7
    ("control_word_type", 1),
    ("clcw_version_number", 2),
    ("status_field", 3),
    ("cop_in_effect", 2),
    ("virtual_channel_identification", 6),
    ("reserved_spare_1", 2),
    ("no_rf_available", 1),
    ("no_bit_lock", 1),
    ("lockout", 1),
    ("wait", 1),
    ("retransmit", 1),
    ("farm_b_counter", 2),
    ("reserved_spare_2", 1),
    ("report_value", 8),
)


@dataclass(frozen=True, slots=True)
class Clcw:
    """One CLCW. Field names and order follow 232.0-B-4 4.2.1.2 to 4.2.1.11.

    `decode` keeps the reserved spare fields as received rather than rejecting them (they are
    reserved for future versions of the standard and mean nothing today), so a decoded CLCW
    re-encodes to the same word.
    """

    control_word_type: int = 0
    clcw_version_number: int = 0
    status_field: int = 0
    cop_in_effect: int = COP_1_IN_EFFECT
    virtual_channel_identification: int = 0
    reserved_spare_1: int = 0
    no_rf_available: bool = False
    no_bit_lock: bool = False
    lockout: bool = False
    wait: bool = False
    retransmit: bool = False
    farm_b_counter: int = 0
    reserved_spare_2: int = 0
    report_value: int = 0

    @property
    def word(self) -> int:
        """The CLCW as the 32-bit word a TM frame's OCF holds (`TmFrame.ocf`, the OCF source)."""
        if self.control_word_type != 0:
            raise FieldError(f"control word type {self.control_word_type}: a CLCW is type 0")
        if self.clcw_version_number != 0:
            raise FieldError(f"CLCW version number {self.clcw_version_number}, expected 0")
        word = 0
        for name, width in _CLCW_FIELDS:
            value = int(getattr(self, name))
            # Inline, not errors.check_field: this runs for every TM frame, and the width in bits
            # is what figure 4-7 gives.
            if not 0 <= value < 1 << width:
                raise FieldError(f"CLCW {name} {value} does not fit in {width} bits")
            word = (word << width) | value
        return word

    def encode(self) -> bytes:
        return self.word.to_bytes(CLCW_LENGTH, "big")

    @classmethod
    def decode(cls, buffer: bytes | bytearray | memoryview) -> "Clcw":
        if len(buffer) < CLCW_LENGTH:
            raise TruncatedError(f"{len(buffer)} octets, a CLCW needs {CLCW_LENGTH}", offset=0)
        if len(buffer) > CLCW_LENGTH:
            raise LengthError(f"{len(buffer)} octets, a CLCW is exactly {CLCW_LENGTH}", offset=0)
        return cls.from_word(int.from_bytes(buffer, "big"))

    @classmethod
    def from_word(cls, word: int) -> "Clcw":
        """The CLCW in a 32-bit OCF word (`ReceivedFrame.ocf`); FieldError as `decode` raises."""
        check_field(word, 0xFFFF_FFFF, "CLCW word")
        if word >> 31:
            raise FieldError(
                "control word type 1: this operational control field is not a CLCW", offset=0
            )
        version = (word >> 29) & 0b11
        if version != 0:
            raise FieldError(f"CLCW version number {version}, expected 0", offset=0)
        return cls(
            0,
            0,
            (word >> 26) & 0b111,
            (word >> 24) & 0b11,
            (word >> 18) & 0x3F,
            (word >> 16) & 0b11,
            bool(word & 0x8000),
            bool(word & 0x4000),
            bool(word & 0x2000),
            bool(word & 0x1000),
            bool(word & 0x0800),
            (word >> 9) & 0b11,
            (word >> 8) & 0b1,
            word & 0xFF,
        )


# --------------------------------------------------------------------------------------------------
# FARM-1 — Frame Acceptance and Reporting Mechanism, 232.1-B-2 section 6 (onboard)
# --------------------------------------------------------------------------------------------------


class FarmState(IntEnum):
    """232.1-B-2 6.2."""

    OPEN = 1  # S1
    WAIT = 2  # S2
    LOCKOUT = 3  # S3


class FarmEvent(IntEnum):
    """The events of the FARM-1 state table, 232.1-B-2 6.3 (table 6-1)."""

    AD_IN_SEQUENCE = 1  # E1: valid AD frame, N(S) = V(R), buffer available
    AD_NO_BUFFER = 2  # E2: valid AD frame, N(S) = V(R), no buffer available
    AD_POSITIVE_WINDOW = 3  # E3: valid AD frame, N(S) > V(R), within the positive window
    AD_NEGATIVE_WINDOW = 4  # E4: valid AD frame, N(S) < V(R), within the negative window
    AD_LOCKOUT_AREA = 5  # E5: valid AD frame, N(S) outside both windows
    BD_FRAME = 6  # E6: valid BD frame
    BC_UNLOCK = 7  # E7: valid BC frame carrying Unlock
    BC_SET_VR = 8  # E8: valid BC frame carrying Set V(R)
    INVALID_FRAME = 9  # E9: a frame that failed validation
    BUFFER_RELEASE = 10  # E10: the higher layer can accept frame data again


class FarmReason(StrEnum):
    """What FARM-1 did with a frame and why: one housekeeping counter each."""

    ACCEPTED = "accepted"  # AD frame in sequence, passed up
    ACCEPTED_BYPASS = "accepted_bypass"  # BD frame, passed up
    UNLOCK = "unlock"  # BC Unlock executed
    SET_VR = "set_vr"  # BC Set V(R) executed
    SET_VR_IN_LOCKOUT = "set_vr_in_lockout"  # BC Set V(R) counted but without effect in Lockout
    NO_BUFFER = "no_buffer"  # discarded: the higher layer cannot take it (Wait)
    # Discarded: a frame is missing before it (retransmit requested).
    AHEAD_OF_SEQUENCE = "ahead_of_sequence"
    DUPLICATE = "duplicate"  # discarded: already accepted
    OUTSIDE_WINDOW = "outside_window"  # discarded, and FARM-1 locks out
    LOCKED_OUT = "locked_out"  # discarded: FARM-1 is in Lockout
    INVALID = "invalid"  # discarded: failed validation (E9)


_ACCEPTING = frozenset({FarmReason.ACCEPTED, FarmReason.ACCEPTED_BYPASS})


@dataclass(frozen=True, slots=True)
class FarmResult:
    """The outcome of one FARM-1 event. `data` is the frame data to pass up, or None."""

    event: FarmEvent
    reason: FarmReason
    state: FarmState  # after the event
    frame: TcFrame | None = None
    error: ProtocolError | None = None

    @property
    def data(self) -> bytes | None:
        return self.frame.data if self.frame is not None and self.reason in _ACCEPTING else None

    @property
    def accepted(self) -> bool:
        return self.reason in _ACCEPTING


class Farm:
    """FARM-1 for one virtual channel: decides, frame by frame, what to pass to the higher layer.

    Frames reach `receive` already decoded (and authenticated, where SDLS applies); frames that
    failed either go to `reject`, which counts them as E9. The higher layer calls `set_wait(True)`
    when it cannot take more frame data and `set_wait(False)` when it can again (E10).
    """

    def __init__(
        self,
        virtual_channel_id: int,
        *,
        sliding_window: int = icd.FARM_SLIDING_WINDOW,
        v_r: int = 0,
    ) -> None:
        if not 0 <= virtual_channel_id <= MAX_VIRTUAL_CHANNEL_ID:
            raise ValueError(
                f"virtual channel id {virtual_channel_id} outside 0..{MAX_VIRTUAL_CHANNEL_ID}"
            )
        # 232.1-B-2 6.1.8.1: W is even, 2..254; the positive and negative windows are each W/2.
        if sliding_window % 2 or not 2 <= sliding_window <= 254:
            raise ValueError(f"FARM sliding window width {sliding_window} must be even, 2..254")
        if not 0 <= v_r < MODULUS:
            raise ValueError(f"V(R) {v_r} outside 0..255")
        self.virtual_channel_id = virtual_channel_id
        self.sliding_window = sliding_window
        self._positive_window = sliding_window // 2
        self._negative_window = sliding_window // 2
        self._state = FarmState.OPEN
        self._v_r = v_r
        self._lockout = False
        self._wait = False
        self._retransmit = False
        self._farm_b_counter = 0
        self._buffer_full = False
        self._counters = dict.fromkeys(FarmReason, 0)

    @property
    def state(self) -> FarmState:
        return self._state

    @property
    def v_r(self) -> int:
        """V(R): the frame sequence number FARM-1 expects next."""
        return self._v_r

    @property
    def lockout(self) -> bool:
        return self._lockout

    @property
    def wait(self) -> bool:
        return self._wait

    @property
    def retransmit(self) -> bool:
        return self._retransmit

    @property
    def farm_b_counter(self) -> int:
        """Count of accepted BD and BC frames; the CLCW reports its two low bits."""
        return self._farm_b_counter

    @property
    def counters(self) -> dict[FarmReason, int]:
        """Frames accepted and discarded, by reason, for housekeeping telemetry."""
        return dict(self._counters)

    def clcw(self, *, no_rf_available: bool = False, no_bit_lock: bool = False) -> Clcw:
        """The CLCW reporting this FARM-1 (232.0-B-4 4.2.1); the link flags come from below."""
        return Clcw(
            status_field=0,
            cop_in_effect=COP_1_IN_EFFECT,
            virtual_channel_identification=self.virtual_channel_id,
            no_rf_available=no_rf_available,
            no_bit_lock=no_bit_lock,
            lockout=self._lockout,
            wait=self._wait,
            retransmit=self._retransmit,
            farm_b_counter=self._farm_b_counter & 0b11,
            report_value=self._v_r,
        )

    def set_wait(self, buffer_full: bool) -> None:
        """The higher layer cannot (True) or can again (False, event E10) accept frame data."""
        if buffer_full:
            # The Wait flag itself rises only when an in-sequence frame has to be discarded (E2).
            self._buffer_full = True
            return
        self._buffer_full = False
        self._wait = False
        if self._state is FarmState.WAIT:
            self._state = FarmState.OPEN

    def reject(self, error: ProtocolError) -> FarmResult:
        """E9: a frame on this virtual channel failed decoding, the FECF or authentication."""
        return self._done(FarmEvent.INVALID_FRAME, FarmReason.INVALID, None, error)

    def receive(self, frame: TcFrame) -> FarmResult:
        """Run one valid frame through the state table (232.1-B-2 table 6-1)."""
        if frame.virtual_channel_id != self.virtual_channel_id:
            error = AddressError(
                f"frame for virtual channel {frame.virtual_channel_id} reached the FARM of channel "
                f"{self.virtual_channel_id}"
            )
            return self._done(FarmEvent.INVALID_FRAME, FarmReason.INVALID, frame, error)
        kind = frame.frame_type
        if kind is FrameType.BD:
            return self._bd(frame)
        if kind is FrameType.BC:
            try:
                command, value = frame.control_command()
            except ProtocolError as error:
                return self._done(FarmEvent.INVALID_FRAME, FarmReason.INVALID, frame, error)
            if command is ControlCommand.UNLOCK:
                return self._unlock(frame)
            assert value is not None  # parse_control_command returns a value with every Set V(R)
            return self._set_vr(frame, value)
        return self._ad(frame)

    def _ad(self, frame: TcFrame) -> FarmResult:
        ahead = (frame.frame_sequence_number - self._v_r) % MODULUS
        if ahead == 0:
            event = FarmEvent.AD_NO_BUFFER if self._buffer_full else FarmEvent.AD_IN_SEQUENCE
        elif ahead <= self._positive_window - 1:
            event = FarmEvent.AD_POSITIVE_WINDOW
        elif ahead >= MODULUS - self._negative_window:
            event = FarmEvent.AD_NEGATIVE_WINDOW
        else:
            event = FarmEvent.AD_LOCKOUT_AREA
        if self._state is FarmState.LOCKOUT:
            return self._done(event, FarmReason.LOCKED_OUT, frame)
        if event is FarmEvent.AD_IN_SEQUENCE:
            # Only in Open: Wait is entered with the buffer full and left once it is released.
            self._v_r = (self._v_r + 1) % MODULUS
            self._retransmit = False
            return self._done(event, FarmReason.ACCEPTED, frame)
        if event is FarmEvent.AD_NO_BUFFER:
            self._retransmit = True
            self._wait = True
            self._state = FarmState.WAIT
            return self._done(event, FarmReason.NO_BUFFER, frame)
        if event is FarmEvent.AD_POSITIVE_WINDOW:
            if self._state is FarmState.OPEN:
                self._retransmit = True
            return self._done(event, FarmReason.AHEAD_OF_SEQUENCE, frame)
        if event is FarmEvent.AD_NEGATIVE_WINDOW:
            return self._done(event, FarmReason.DUPLICATE, frame)
        self._lockout = True
        self._state = FarmState.LOCKOUT
        return self._done(event, FarmReason.OUTSIDE_WINDOW, frame)

    def _bd(self, frame: TcFrame) -> FarmResult:
        self._farm_b_counter += 1
        return self._done(FarmEvent.BD_FRAME, FarmReason.ACCEPTED_BYPASS, frame)

    def _unlock(self, frame: TcFrame) -> FarmResult:
        self._farm_b_counter += 1
        self._retransmit = False
        self._wait = False
        self._lockout = False
        self._state = FarmState.OPEN
        return self._done(FarmEvent.BC_UNLOCK, FarmReason.UNLOCK, frame)

    def _set_vr(self, frame: TcFrame, value: int) -> FarmResult:
        self._farm_b_counter += 1
        if self._state is FarmState.LOCKOUT:
            return self._done(FarmEvent.BC_SET_VR, FarmReason.SET_VR_IN_LOCKOUT, frame)
        self._retransmit = False
        self._wait = False
        self._v_r = value
        self._state = FarmState.OPEN
        return self._done(FarmEvent.BC_SET_VR, FarmReason.SET_VR, frame)

    def _done(
        self,
        event: FarmEvent,
        reason: FarmReason,
        frame: TcFrame | None,
        error: ProtocolError | None = None,
    ) -> FarmResult:
        self._counters[reason] += 1
        return FarmResult(event, reason, self._state, frame, error)


# --------------------------------------------------------------------------------------------------
# FOP-1 — Frame Operation Procedure, 232.1-B-2 section 5 (ground), sans-IO
# --------------------------------------------------------------------------------------------------


class FopState(IntEnum):
    """232.1-B-2 5.1.2."""

    ACTIVE = 1  # S1
    RETRANSMIT_WITHOUT_WAIT = 2  # S2
    RETRANSMIT_WITH_WAIT = 3  # S3
    INITIALISING_WITHOUT_BC_FRAME = 4  # S4
    INITIALISING_WITH_BC_FRAME = 5  # S5
    INITIAL = 6  # S6


class FopDirective(StrEnum):
    """Management directives, 232.1-B-2 5.1.10 / 5.3 (events E23 to E40). Qualifiers in brackets."""

    INITIATE_AD_WITHOUT_CLCW = "initiate_ad_without_clcw"
    INITIATE_AD_WITH_CLCW = "initiate_ad_with_clcw"
    INITIATE_AD_WITH_UNLOCK = "initiate_ad_with_unlock"
    INITIATE_AD_WITH_SET_VR = "initiate_ad_with_set_vr"  # [V*(R), 0..255]
    TERMINATE_AD = "terminate_ad"
    RESUME_AD = "resume_ad"
    SET_VS = "set_vs"  # [V*(S), 0..255]
    SET_FOP_SLIDING_WINDOW = "set_fop_sliding_window"  # [K, 1..W/2]
    SET_T1_INITIAL = "set_t1_initial"  # [seconds, > 0]
    SET_TRANSMISSION_LIMIT = "set_transmission_limit"  # [>= 1]
    SET_TIMEOUT_TYPE = "set_timeout_type"  # [TimeoutType]


class TimeoutType(IntEnum):
    """232.1-B-2 5.1.7: what FOP-1 does when T1 expires with the transmission limit reached."""

    ALERT = 0  # alert (T1) and return to Initial
    SUSPEND = 1  # suspend the AD service, to be resumed by directive


class AlertReason(StrEnum):
    """232.1-B-2 5.2.15: why FOP-1 gave up on the AD service."""

    LIMIT = "LIMIT"  # retransmission requested with the transmission limit at 1
    T1 = "T1"  # T1 expired with the transmission limit reached (or while initialising)
    LOCKOUT = "LOCKOUT"  # the CLCW reports Lockout
    # The CLCW contradicts what FOP-1 sent (flags or N(R) inconsistent with the state).
    SYNCH = "SYNCH"
    CLCW = "CLCW"  # the CLCW reports Wait where it cannot
    NN_R = "NN(R)"  # N(R) outside NN(R)..V(S)
    LLIF = "LLIF"  # the lower layer failed to transmit a frame
    TERM = "TERM"  # the Terminate AD Service directive


class Response(StrEnum):
    """Responses and confirmations to the higher layer, 232.1-B-2 5.1.9 / 5.2.11 / 5.2.12."""

    ACCEPT = "accept"
    REJECT = "reject"
    POSITIVE_CONFIRM = "positive_confirm"
    NEGATIVE_CONFIRM = "negative_confirm"


@dataclass(frozen=True, slots=True)
class FduNotification:
    """About a request to transfer an FDU; `tag` is the caller's, `frame_sequence_number` N(S)."""

    response: Response
    tag: object
    frame_type: FrameType
    frame_sequence_number: int | None = None
    alert: AlertReason | None = None  # the alert behind a negative confirm or a purge reject


@dataclass(frozen=True, slots=True)
class DirectiveNotification:
    response: Response
    directive: FopDirective
    tag: object
    alert: AlertReason | None = None


@dataclass(frozen=True, slots=True)
class AlertNotification:
    alert: AlertReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SuspendNotification:
    suspend_state: int  # the state (1..4) the AD service resumes in


FopNotification = FduNotification | DirectiveNotification | AlertNotification | SuspendNotification


class _SentFrame:
    """A Sent_Queue entry (232.1-B-2 5.1.4): the master copy of an AD or BC frame until acked."""

    __slots__ = ("frame", "tag", "to_be_retransmitted")

    def __init__(self, frame: TcFrame, tag: object) -> None:
        self.frame = frame
        self.tag = tag
        self.to_be_retransmitted = False


_INITIATE = frozenset(
    {
        FopDirective.INITIATE_AD_WITHOUT_CLCW,
        FopDirective.INITIATE_AD_WITH_CLCW,
        FopDirective.INITIATE_AD_WITH_UNLOCK,
        FopDirective.INITIATE_AD_WITH_SET_VR,
    }
)
_SENDING = frozenset({FopState.ACTIVE, FopState.RETRANSMIT_WITHOUT_WAIT})
_RUNNING = frozenset(
    {FopState.ACTIVE, FopState.RETRANSMIT_WITHOUT_WAIT, FopState.RETRANSMIT_WITH_WAIT}
)


class Fop:
    """FOP-1 for one virtual channel, as a sans-IO state machine (232.1-B-2 section 5, table 5-1).

    Nothing here reads a clock or does I/O. Every call that can start T1 takes `now` (seconds, any
    epoch the caller keeps consistent); the caller calls `poll(now)` at or after `next_deadline`.
    Frames to transmit collect in an outbox (`take_frames`); responses, confirms, alerts and
    suspends in another (`take_notifications`).

    The outbox is the lower layer: it accepts every transmit request at once, so the AD/BC/BD Out
    flags are ready again immediately (E41, E43, E45 follow each transmit request) and the
    "not ready" events E22, E26, E28 cannot occur. A frame the caller then fails to send is
    reported with `transmission_failed` (E42/E44/E46: alert LLIF). A retransmission is the same
    TcFrame again: encode (and authenticate) each transmission when sending it.
    """

    def __init__(
        self,
        spacecraft_id: int,
        virtual_channel_id: int,
        *,
        map_id: int = 0,
        sliding_window: int = icd.FARM_SLIDING_WINDOW // 2,
        t1_initial_s: float = 5.0,
        transmission_limit: int = 5,
        timeout_type: TimeoutType = TimeoutType.ALERT,
        v_s: int = 0,
        max_fdu_length: int = MAX_FDU_LENGTH,
    ) -> None:
        if not 1 <= max_fdu_length <= MAX_FDU_LENGTH:
            raise ValueError(
                f"FOP-1 maximum FDU length {max_fdu_length} outside 1..{MAX_FDU_LENGTH}"
            )
        try:
            TcFrame(spacecraft_id, virtual_channel_id, 0, b"", map_id=map_id).header_octets(0)
        except FieldError as error:
            raise ValueError(f"FOP-1 configuration: {error}") from error
        for directive, value in (
            (FopDirective.SET_FOP_SLIDING_WINDOW, sliding_window),
            (FopDirective.SET_T1_INITIAL, t1_initial_s),
            (FopDirective.SET_TRANSMISSION_LIMIT, transmission_limit),
            (FopDirective.SET_TIMEOUT_TYPE, timeout_type),
            (FopDirective.SET_VS, v_s),
        ):
            problem = _qualifier_problem(directive, value)
            if problem:
                raise ValueError(problem)
        self.spacecraft_id = spacecraft_id
        self.virtual_channel_id = virtual_channel_id
        self.map_id = map_id
        # What fits a frame after the layers below add theirs (with SDLS:
        # sdls.max_protected_data_length()), so an FDU too long to send is refused on request,
        # not found out at transmission.
        self.max_fdu_length = max_fdu_length
        self._k = sliding_window
        self._t1_initial_s = float(t1_initial_s)
        self._transmission_limit = transmission_limit
        self._timeout_type = TimeoutType(timeout_type)
        self._state = FopState.INITIAL
        self._v_s = v_s
        self._nn_r = v_s
        self._sent: deque[_SentFrame] = deque()  # AD frames N(S) = NN(R) .. V(S)-1, oldest first
        self._bc: _SentFrame | None = None  # the BC frame of an initiate directive, until confirmed
        self._wait_queue: tuple[bytes, object] | None = None  # capacity one FDU (232.1-B-2 5.1.3)
        self._transmission_count = 1
        self._suspend_state = 0
        self._deadline: float | None = None
        self._now = 0.0
        self._pending_directive: tuple[FopDirective, object] | None = None
        self._outbox: list[TcFrame] = []
        self._notifications: list[FopNotification] = []
        self._counters: dict[str, int] = dict.fromkeys(
            (
                "ad_frames_sent",
                "ad_frames_retransmitted",
                "bd_frames_sent",
                "bc_frames_sent",
                "clcws_received",
                "clcws_ignored",
                "frames_confirmed",
                "requests_rejected",
                "suspends",
            ),
            0,
        )
        for reason in AlertReason:
            self._counters[f"alert_{reason.name.lower()}"] = 0

    # -- observation -------------------------------------------------------------------------------

    @property
    def state(self) -> FopState:
        return self._state

    @property
    def v_s(self) -> int:
        """V(S): the N(S) of the next new AD frame."""
        return self._v_s

    @property
    def nn_r(self) -> int:
        """NN(R): the N(S) of the oldest unacknowledged AD frame."""
        return self._nn_r

    @property
    def sent_queue_length(self) -> int:
        return len(self._sent) + (self._bc is not None)

    @property
    def accepts_fdu(self) -> bool:
        """The Wait_Queue is empty: an AD FDU requested now is not rejected for flow control."""
        return self._wait_queue is None

    @property
    def transmission_count(self) -> int:
        return self._transmission_count

    @property
    def suspend_state(self) -> int:
        return self._suspend_state

    @property
    def sliding_window(self) -> int:
        return self._k

    @property
    def t1_initial_s(self) -> float:
        return self._t1_initial_s

    @property
    def transmission_limit(self) -> int:
        return self._transmission_limit

    @property
    def timeout_type(self) -> TimeoutType:
        return self._timeout_type

    @property
    def next_deadline(self) -> float | None:
        """When T1 expires, or None when it is not running."""
        return self._deadline

    @property
    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    def take_frames(self) -> list[TcFrame]:
        """Frames to transmit, in order, emptying the outbox."""
        frames, self._outbox = self._outbox, []
        return frames

    def take_notifications(self) -> list[FopNotification]:
        notifications, self._notifications = self._notifications, []
        return notifications

    # -- requests from the higher layer ------------------------------------------------------------

    def transfer(self, data: bytes, now: float, tag: object = None) -> Response | None:
        """Request to transfer an FDU on the AD service (E19/E20).

        Returns ACCEPT when the FDU went straight out, REJECT, or None while it waits in the
        Wait_Queue (its ACCEPT notification follows when it leaves). A POSITIVE_CONFIRM notification
        follows its acknowledgement.
        """
        self._check_fdu(data)
        self._now = now
        if self._wait_queue is not None or self._state not in _RUNNING:  # E20, or E19 in S4..S6
            return self._reject_fdu(tag, FrameType.AD)
        self._wait_queue = (bytes(data), tag)
        if self._state in _SENDING:
            self._look_for_fdu()
            if self._wait_queue is None:
                return Response.ACCEPT
        return None

    def transfer_bypass(self, data: bytes, now: float, tag: object = None) -> Response:
        """Request to transfer an FDU on the BD service (E21): accepted in every state, sent now."""
        self._check_fdu(data)
        self._now = now
        self._notify(FduNotification(Response.ACCEPT, tag, FrameType.BD))
        frame = TcFrame(
            self.spacecraft_id, self.virtual_channel_id, 0, bytes(data), True, False, self.map_id
        )
        self._emit(frame)
        self._counters["bd_frames_sent"] += 1
        # The lower layer (the outbox) accepts at once (E45): that completes the BD request.
        self._notify(FduNotification(Response.POSITIVE_CONFIRM, tag, FrameType.BD))
        return Response.ACCEPT

    def directive(
        self,
        directive: FopDirective,
        now: float,
        qualifier: float | None = None,
        tag: object = None,
    ) -> Response:
        """A management directive (E23..E40). Returns ACCEPT or REJECT; confirms are notifications.

        Initiate AD with CLCW, with Unlock and with Set V(R) are confirmed when a CLCW shows the
        FARM ready; every other accepted directive is confirmed at once.
        """
        self._now = now
        directive = FopDirective(directive)
        if _qualifier_problem(directive, qualifier):  # E40: invalid directive
            return self._reject_directive(directive, tag)
        state = self._state
        if directive in _INITIATE:
            if state is not FopState.INITIAL:
                return self._reject_directive(directive, tag)
            self._accept_directive(directive, tag)
            self._initialise()
            if directive is FopDirective.INITIATE_AD_WITHOUT_CLCW:  # E23
                self._confirm_directive(directive, tag)
                self._state = FopState.ACTIVE
            elif directive is FopDirective.INITIATE_AD_WITH_CLCW:  # E24
                self._pending_directive = (directive, tag)
                self._restart_timer()
                self._state = FopState.INITIALISING_WITHOUT_BC_FRAME
            elif directive is FopDirective.INITIATE_AD_WITH_UNLOCK:  # E25
                self._pending_directive = (directive, tag)
                self._transmit_bc(TcFrame.unlock(self.spacecraft_id, self.virtual_channel_id), tag)
                self._state = FopState.INITIALISING_WITH_BC_FRAME
            else:  # E27
                assert qualifier is not None  # checked by _qualifier_problem
                v_r = int(qualifier)
                self._v_s = self._nn_r = v_r
                self._pending_directive = (directive, tag)
                self._transmit_bc(
                    TcFrame.set_vr(self.spacecraft_id, self.virtual_channel_id, v_r), tag
                )
                self._state = FopState.INITIALISING_WITH_BC_FRAME
            return Response.ACCEPT
        if directive is FopDirective.TERMINATE_AD:  # E29
            self._accept_directive(directive, tag)
            if state is not FopState.INITIAL:
                self._alert(AlertReason.TERM)
            self._confirm_directive(directive, tag)
            return Response.ACCEPT
        if directive is FopDirective.RESUME_AD:  # E30 (reject), E31..E34
            if self._suspend_state == 0 or state is not FopState.INITIAL:
                return self._reject_directive(directive, tag)
            self._accept_directive(directive, tag)
            resumed = FopState(self._suspend_state)
            self._restart_timer()
            self._suspend_state = 0
            self._confirm_directive(directive, tag)
            self._state = resumed
            return Response.ACCEPT
        if directive is FopDirective.SET_VS:  # E35
            if state is not FopState.INITIAL or self._suspend_state != 0:
                return self._reject_directive(directive, tag)
            assert qualifier is not None
            self._accept_directive(directive, tag)
            self._v_s = self._nn_r = int(qualifier)
            self._confirm_directive(directive, tag)
            return Response.ACCEPT
        # E36..E39: accepted in every state.
        assert qualifier is not None
        self._accept_directive(directive, tag)
        if directive is FopDirective.SET_FOP_SLIDING_WINDOW:
            self._k = int(qualifier)
        elif directive is FopDirective.SET_T1_INITIAL:
            self._t1_initial_s = float(qualifier)
        elif directive is FopDirective.SET_TRANSMISSION_LIMIT:
            self._transmission_limit = int(qualifier)
        else:
            self._timeout_type = TimeoutType(int(qualifier))
        self._confirm_directive(directive, tag)
        return Response.ACCEPT

    def transmission_failed(self, frame: TcFrame) -> None:
        """The lower layer could not transmit `frame` (E42, E44, E46): alert LLIF."""
        self._alert(AlertReason.LLIF, f"Type-{frame.frame_type} frame could not be transmitted")

    # -- events from below and from the timer ------------------------------------------------------

    def receive_clcw(self, clcw: Clcw, now: float) -> None:
        """A CLCW arrived (E1..E14). CLCWs of other channels, or not for COP-1, are ignored."""
        self._now = now
        self._counters["clcws_received"] += 1
        if (
            clcw.cop_in_effect != COP_1_IN_EFFECT
            or clcw.virtual_channel_identification != self.virtual_channel_id
        ):
            self._counters["clcws_ignored"] += 1
            return
        state = self._state
        if state is FopState.INITIAL:
            return  # S6 ignores every CLCW
        n_r = clcw.report_value
        if clcw.lockout:  # E14
            if state is not FopState.INITIALISING_WITH_BC_FRAME:
                self._alert(AlertReason.LOCKOUT)
            return
        if n_r == self._v_s:  # all outstanding AD frames acknowledged
            if clcw.retransmit:  # E4
                if state is not FopState.INITIALISING_WITH_BC_FRAME:
                    self._alert(AlertReason.SYNCH)
            elif clcw.wait:  # E3
                self._alert(AlertReason.CLCW)
            elif n_r == self._nn_r:  # E1
                self._clcw_e1(state)
            elif state in _RUNNING:  # E2 (cannot occur in S4/S5, where NN(R) = V(S))
                self._remove_acknowledged(n_r)
                self._deadline = None
                self._state = FopState.ACTIVE
                self._look_for_fdu()
            return
        if (n_r - self._nn_r) % MODULUS >= (self._v_s - self._nn_r) % MODULUS:  # E13: invalid N(R)
            if state is not FopState.INITIALISING_WITH_BC_FRAME:
                self._alert(AlertReason.NN_R)
            return
        if state not in _RUNNING:
            return  # E5..E12 and E101..E103 cannot occur in S4 and are ignored in S5
        acknowledges = n_r != self._nn_r
        if not clcw.retransmit:
            if clcw.wait:  # E7
                self._alert(AlertReason.CLCW)
            elif acknowledges:  # E6
                self._remove_acknowledged(n_r)
                self._state = FopState.ACTIVE
                self._look_for_fdu()
            elif state is not FopState.ACTIVE:  # E5 in S2/S3
                self._alert(AlertReason.SYNCH)
            return
        if self._transmission_limit == 1:  # E101, E102
            if acknowledges:
                self._remove_acknowledged(n_r)
            self._alert(AlertReason.LIMIT)
            return
        if acknowledges:
            self._remove_acknowledged(n_r)
            if clcw.wait:  # E9
                self._state = FopState.RETRANSMIT_WITH_WAIT
            else:  # E8
                self._initiate_ad_retransmission()
                self._state = FopState.RETRANSMIT_WITHOUT_WAIT
                self._look_for_fdu()
            return
        if clcw.wait:  # E11, E103
            self._state = FopState.RETRANSMIT_WITH_WAIT
        elif self._transmission_count < self._transmission_limit:  # E10
            if state is not FopState.RETRANSMIT_WITHOUT_WAIT:
                self._initiate_ad_retransmission()
                self._state = FopState.RETRANSMIT_WITHOUT_WAIT
                self._look_for_fdu()
        else:  # E12: wait for T1 to decide
            self._state = FopState.RETRANSMIT_WITHOUT_WAIT

    def poll(self, now: float) -> None:
        """Let time pass: if T1 has expired by `now`, run E16/E104 or E17/E18."""
        self._now = now
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        state = self._state
        below_limit = self._transmission_count < self._transmission_limit
        suspend = self._timeout_type is TimeoutType.SUSPEND
        if state in _SENDING and below_limit:  # E16, E104
            self._initiate_ad_retransmission()
            self._look_for_fdu()
        elif state is FopState.RETRANSMIT_WITH_WAIT and below_limit:
            pass  # E16, E104 in S3: the FARM asked to wait; keep waiting for its CLCW
        elif state is FopState.INITIALISING_WITH_BC_FRAME and below_limit:
            self._initiate_bc_retransmission()
            self._look_for_directive()
        elif state is FopState.INITIALISING_WITH_BC_FRAME or (
            state is FopState.INITIALISING_WITHOUT_BC_FRAME and not suspend
        ):
            self._alert(AlertReason.T1)  # E16/E17/E18 in S5, E16/E17 in S4
        elif state is FopState.INITIAL:
            pass
        elif suspend:  # E18 in S1..S3, E104/E18 in S4
            self._suspend_state = int(state)
            self._counters["suspends"] += 1
            self._notify(SuspendNotification(self._suspend_state))
            self._state = FopState.INITIAL
        else:  # E17
            self._alert(AlertReason.T1)

    # -- actions, 232.1-B-2 5.2 --------------------------------------------------------------------

    def _clcw_e1(self, state: FopState) -> None:
        if state in (FopState.RETRANSMIT_WITHOUT_WAIT, FopState.RETRANSMIT_WITH_WAIT):
            self._alert(AlertReason.SYNCH)
        elif state in (FopState.INITIALISING_WITHOUT_BC_FRAME, FopState.INITIALISING_WITH_BC_FRAME):
            self._bc = None  # release the BC frame: the FARM has acted on it
            self._deadline = None
            if self._pending_directive is not None:
                self._confirm_directive(*self._pending_directive)
                self._pending_directive = None
            self._state = FopState.ACTIVE

    def _initialise(self) -> None:
        """5.2.14."""
        self._purge_sent_queue(None)
        self._purge_wait_queue(None)
        self._transmission_count = 1
        self._suspend_state = 0

    def _alert(self, reason: AlertReason, detail: str = "") -> None:
        """5.2.15: stop the timer, give back everything queued, tell the higher layer; then S6."""
        self._deadline = None
        self._purge_sent_queue(reason)
        self._purge_wait_queue(reason)
        self._counters[f"alert_{reason.name.lower()}"] += 1
        self._notify(AlertNotification(reason, detail))
        self._state = FopState.INITIAL

    def _purge_sent_queue(self, reason: AlertReason | None) -> None:
        """5.2.2. NN(R) := V(S) keeps the Sent_Queue holding exactly NN(R)..V(S)-1 (none now)."""
        for entry in self._sent:
            self._notify(
                FduNotification(
                    Response.NEGATIVE_CONFIRM,
                    entry.tag,
                    FrameType.AD,
                    entry.frame.frame_sequence_number,
                    reason,
                )
            )
        self._sent.clear()
        self._nn_r = self._v_s
        self._bc = None
        if self._pending_directive is not None:
            directive, tag = self._pending_directive
            self._pending_directive = None
            self._notify(DirectiveNotification(Response.NEGATIVE_CONFIRM, directive, tag, reason))

    def _purge_wait_queue(self, reason: AlertReason | None) -> None:
        """5.2.3."""
        if self._wait_queue is not None:
            _, tag = self._wait_queue
            self._wait_queue = None
            self._counters["requests_rejected"] += 1
            self._notify(FduNotification(Response.REJECT, tag, FrameType.AD, None, reason))

    def _remove_acknowledged(self, n_r: int) -> None:
        """5.2.8: positive confirms for N(S) = NN(R) .. N(R)-1, then NN(R) := N(R)."""
        while self._nn_r != n_r:
            entry = self._sent.popleft()
            self._counters["frames_confirmed"] += 1
            self._notify(
                FduNotification(
                    Response.POSITIVE_CONFIRM,
                    entry.tag,
                    FrameType.AD,
                    entry.frame.frame_sequence_number,
                )
            )
            self._nn_r = (self._nn_r + 1) % MODULUS
        self._transmission_count = 1

    def _initiate_ad_retransmission(self) -> None:
        """5.2.7 for AD frames: go back N to the oldest unacknowledged frame."""
        self._transmission_count += 1
        self._restart_timer()
        for entry in self._sent:
            entry.to_be_retransmitted = True

    def _initiate_bc_retransmission(self) -> None:
        """5.2.7 for the BC frame."""
        self._transmission_count += 1
        self._restart_timer()
        if self._bc is not None:
            self._bc.to_be_retransmitted = True

    def _look_for_fdu(self) -> None:
        """5.2.10, repeated for each immediate AD accept (E41) from the outbox."""
        for entry in self._sent:
            if entry.to_be_retransmitted:
                entry.to_be_retransmitted = False
                self._counters["ad_frames_retransmitted"] += 1
                self._emit(entry.frame)
        if self._wait_queue is not None and (self._v_s - self._nn_r) % MODULUS < self._k:
            data, tag = self._wait_queue
            self._wait_queue = None
            self._notify(FduNotification(Response.ACCEPT, tag, FrameType.AD, self._v_s))
            self._transmit_ad(data, tag)

    def _look_for_directive(self) -> None:
        """5.2.9."""
        if self._bc is not None and self._bc.to_be_retransmitted:
            self._bc.to_be_retransmitted = False
            self._counters["bc_frames_sent"] += 1
            self._emit(self._bc.frame)

    def _transmit_ad(self, data: bytes, tag: object) -> None:
        """5.2.4."""
        frame = TcFrame(
            self.spacecraft_id, self.virtual_channel_id, self._v_s, data, False, False, self.map_id
        )
        self._v_s = (self._v_s + 1) % MODULUS
        if not self._sent:
            self._transmission_count = 1
        self._sent.append(_SentFrame(frame, tag))
        self._restart_timer()
        self._counters["ad_frames_sent"] += 1
        self._emit(frame)

    def _transmit_bc(self, frame: TcFrame, tag: object) -> None:
        """5.2.5."""
        self._bc = _SentFrame(frame, tag)
        self._transmission_count = 1
        self._restart_timer()
        self._counters["bc_frames_sent"] += 1
        self._emit(frame)

    def _restart_timer(self) -> None:
        self._deadline = self._now + self._t1_initial_s

    def _emit(self, frame: TcFrame) -> None:
        self._outbox.append(frame)

    def _notify(self, notification: FopNotification) -> None:
        self._notifications.append(notification)

    def _reject_fdu(self, tag: object, frame_type: FrameType) -> Response:
        self._counters["requests_rejected"] += 1
        self._notify(FduNotification(Response.REJECT, tag, frame_type))
        return Response.REJECT

    def _reject_directive(self, directive: FopDirective, tag: object) -> Response:
        self._counters["requests_rejected"] += 1
        self._notify(DirectiveNotification(Response.REJECT, directive, tag))
        return Response.REJECT

    def _accept_directive(self, directive: FopDirective, tag: object) -> None:
        self._notify(DirectiveNotification(Response.ACCEPT, directive, tag))

    def _confirm_directive(self, directive: FopDirective, tag: object) -> None:
        self._notify(DirectiveNotification(Response.POSITIVE_CONFIRM, directive, tag))

    def _check_fdu(self, data: bytes) -> None:
        if len(data) > self.max_fdu_length:
            raise LengthError(
                f"FDU of {len(data)} octets, a TC frame carries at most {self.max_fdu_length}"
            )


def _qualifier_problem(directive: FopDirective, qualifier: float | None) -> str:
    """Why `qualifier` is not valid for `directive` (E40), or '' when it is."""
    if directive in (FopDirective.INITIATE_AD_WITH_SET_VR, FopDirective.SET_VS):
        ok = isinstance(qualifier, int) and 0 <= qualifier < MODULUS
        return "" if ok else f"{directive} needs a sequence number 0..255, got {qualifier!r}"
    if directive is FopDirective.SET_FOP_SLIDING_WINDOW:
        # 232.1-B-2 5.1.6 / ICD: K must not exceed the FARM's positive window W/2.
        limit = icd.FARM_SLIDING_WINDOW // 2
        ok = isinstance(qualifier, int) and 1 <= qualifier <= limit
        return "" if ok else f"FOP sliding window K must be 1..{limit}, got {qualifier!r}"
    if directive is FopDirective.SET_T1_INITIAL:
        ok = isinstance(qualifier, int | float) and math.isfinite(qualifier) and qualifier > 0
        return "" if ok else f"T1 initial must be a positive number of seconds, got {qualifier!r}"
    if directive is FopDirective.SET_TRANSMISSION_LIMIT:
        ok = isinstance(qualifier, int) and qualifier >= 1
        return "" if ok else f"transmission limit must be at least 1, got {qualifier!r}"
    if directive is FopDirective.SET_TIMEOUT_TYPE:
        ok = isinstance(qualifier, int) and qualifier in (0, 1)
        return "" if ok else f"timeout type must be 0 (alert) or 1 (suspend), got {qualifier!r}"
    return ""


# --------------------------------------------------------------------------------------------------
# asyncio driver
# --------------------------------------------------------------------------------------------------


class CopError(Exception):
    """A FOP-1 request that did not complete: rejected, or negatively confirmed after an alert."""

    def __init__(
        self, message: str, *, response: Response, alert: AlertReason | None = None
    ) -> None:
        super().__init__(message)
        self.response = response
        self.alert = alert


class FopDriver:
    """Runs a `Fop` on the running loop's clock, so it works on a real or a virtual-time loop.

    T1 is a `loop.call_at` timer; frames leave through the `send` coroutine one at a time, in order,
    each encoded by `encode` just before sending (so per-transmission security such as SDLS goes
    there). The owner feeds CLCWs to `receive_clcw`. `on_notification` sees every notification.

        async with FopDriver(fop, link.send) as driver:
            await driver.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW)
            await driver.transfer(packet)
    """

    def __init__(
        self,
        fop: Fop,
        send: Callable[[bytes], Awaitable[None]],
        *,
        encode: Callable[[TcFrame], bytes] = TcFrame.encode,
        on_notification: Callable[[FopNotification], None] | None = None,
    ) -> None:
        self._fop = fop
        self._send = send
        self._encode = encode
        self._on_notification = on_notification
        self._tags = itertools.count()
        self._futures: dict[object, asyncio.Future[int | None]] = {}
        self._outgoing: asyncio.Queue[TcFrame] = asyncio.Queue()
        self._room = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._sender: asyncio.Task[None] | None = None

    @property
    def fop(self) -> Fop:
        return self._fop

    async def __aenter__(self) -> "FopDriver":
        self._loop = asyncio.get_running_loop()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._sender = self._tasks.create_task(self._send_frames())
        self._pump()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sender is not None:
            self._sender.cancel()
        for future in list(self._futures.values()):
            future.cancel()
        assert self._tasks is not None
        # The body's own exception propagates as it is; only a failed sender task is raised here.
        await self._tasks.__aexit__(None, None, None)

    def receive_clcw(self, clcw: Clcw) -> None:
        self._fop.receive_clcw(clcw, self._now())
        self._pump()

    async def directive(self, directive: FopDirective, qualifier: float | None = None) -> None:
        """Execute a directive and wait for its confirm; CopError if it is rejected or fails."""
        tag, future = self._new_request()
        self._fop.directive(directive, self._now(), qualifier, tag)
        self._pump()
        await future

    async def submit(self, data: bytes) -> "asyncio.Future[int | None]":
        """Wait until FOP-1 can queue the FDU, hand it over, and return a future for its confirm.

        The future resolves to the frame sequence number once the FARM acknowledges the frame, or
        raises CopError.
        """
        while not self._fop.accepts_fdu:
            await self._room.wait()
        tag, future = self._new_request()
        self._fop.transfer(data, self._now(), tag)
        self._pump()
        return future

    async def transfer(self, data: bytes) -> int:
        """Transfer one FDU on the AD service, wait for its acknowledgement, return its N(S)."""
        future = await self.submit(data)
        result = await future
        assert result is not None
        return result

    async def transfer_bypass(self, data: bytes) -> None:
        """Transfer one FDU on the BD service (no acknowledgement exists for it)."""
        tag, future = self._new_request()
        self._fop.transfer_bypass(data, self._now(), tag)
        self._pump()
        await future

    def _now(self) -> float:
        assert self._loop is not None, "use FopDriver as an async context manager"
        return self._loop.time()

    def _new_request(self) -> tuple[object, "asyncio.Future[int | None]"]:
        assert self._loop is not None, "use FopDriver as an async context manager"
        tag = next(self._tags)
        future: asyncio.Future[int | None] = self._loop.create_future()
        self._futures[tag] = future
        future.add_done_callback(lambda _: self._futures.pop(tag, None))
        return tag, future

    def _pump(self) -> None:
        """Move frames to the sender, resolve futures, and re-arm T1 after every FOP-1 call."""
        for frame in self._fop.take_frames():
            self._outgoing.put_nowait(frame)
        for notification in self._fop.take_notifications():
            if isinstance(notification, AlertNotification):
                # FOP-1 gave everything back: frames it handed over but not yet sent stay unsent.
                while not self._outgoing.empty():
                    self._outgoing.get_nowait()
            self._dispatch(notification)
            if self._on_notification is not None:
                self._on_notification(notification)
        if self._fop.accepts_fdu:
            self._room.set()
        else:
            self._room.clear()
        deadline = self._fop.next_deadline
        if deadline != self._timer_deadline:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_deadline = deadline
            if deadline is not None:
                assert self._loop is not None
                self._timer = self._loop.call_at(deadline, self._on_timer, deadline)

    def _on_timer(self, deadline: float) -> None:
        assert self._loop is not None
        self._timer = None
        self._timer_deadline = None
        # call_at may fire up to one clock resolution early; T1 has expired by definition here.
        self._fop.poll(max(self._loop.time(), deadline))
        self._pump()

    def _dispatch(self, notification: FopNotification) -> None:
        if isinstance(notification, AlertNotification | SuspendNotification):
            return
        future = self._futures.get(notification.tag)
        if future is None or future.done():
            return
        response = notification.response
        if response is Response.POSITIVE_CONFIRM:
            if isinstance(notification, FduNotification):
                future.set_result(notification.frame_sequence_number)
            else:
                future.set_result(None)
        elif response in (Response.REJECT, Response.NEGATIVE_CONFIRM):
            what = (
                notification.directive
                if isinstance(notification, DirectiveNotification)
                else f"Type-{notification.frame_type} FDU"
            )
            because = f" after alert {notification.alert}" if notification.alert else ""
            future.set_exception(
                CopError(
                    f"{what}: {response}{because}", response=response, alert=notification.alert
                )
            )

    async def _send_frames(self) -> None:
        while True:
            frame = await self._outgoing.get()
            try:
                await self._send(self._encode(frame))
            except (OSError, ProtocolError):
                # A failing link or a frame that cannot be encoded: lower layer failure (LLIF).
                self._fop.transmission_failed(frame)
                self._pump()
