import asyncio
import random
import selectors
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.protocol import icd
from flight.protocol.cop1 import (
    CLCW,
    AlertNotification,
    AlertReason,
    Clcw,
    CopError,
    DirectiveNotification,
    Farm,
    FarmEvent,
    FarmReason,
    FarmState,
    FduNotification,
    Fop,
    FopDirective,
    FopDriver,
    FopState,
    Response,
    SuspendNotification,
    TimeoutType,
)
from flight.protocol.errors import (
    AddressError,
    ChecksumError,
    FieldError,
    LengthError,
    ProtocolError,
    TruncatedError,
)
from flight.protocol.sdls import SECURITY_OVERHEAD
from flight.protocol.tc_frame import FrameType, TcFrame
from hil.faults import FaultModel, FaultyChannel

SCID = icd.SPACECRAFT_ID
VC = int(icd.TcVirtualChannel.COMMAND)
SETTINGS = settings(max_examples=200, deadline=None)


def ad(n_s: int, data: bytes = b"fdu", vc: int = VC) -> TcFrame:
    return TcFrame(SCID, vc, n_s % 256, data)


def bd(data: bytes = b"bypass") -> TcFrame:
    return TcFrame(SCID, VC, 0, data, bypass_flag=True)


# --------------------------------------------------------------------------------------------------
# CLCW
# --------------------------------------------------------------------------------------------------

# V13: dariol83/ccsds ClcwTest.java. 0002A689: COP in effect NONE, status 0, report value 137,
# FARM-B counter 3; 0002D0D4: report value 212, FARM-B counter 0. (Octet 1 = 02 puts 0b10 in the
# reserved spare bits 14-15, which dariol83 and this decoder both keep without interpreting.)
V13_FIRST = bytes.fromhex("0002A689")
V13_SECOND = bytes.fromhex("0002D0D4")


def test_v13_first_clcw_decodes_as_dariol83_reports():
    clcw = Clcw.decode(V13_FIRST)
    assert clcw.cop_in_effect == 0
    assert clcw.status_field == 0
    assert clcw.report_value == 137
    assert clcw.farm_b_counter == 3
    assert (clcw.no_rf_available, clcw.no_bit_lock, clcw.lockout, clcw.wait, clcw.retransmit) == (
        True,
        False,
        True,
        False,
        False,
    )


def test_v13_second_clcw_decodes_as_dariol83_reports():
    clcw = Clcw.decode(V13_SECOND)
    assert clcw.cop_in_effect == 0
    assert clcw.status_field == 0
    assert clcw.report_value == 212
    assert clcw.farm_b_counter == 0


@pytest.mark.parametrize("word", [V13_FIRST, V13_SECOND])
def test_v13_clcws_re_encode_to_the_same_word(word):
    assert Clcw.decode(word).encode() == word


@st.composite
def clcws(draw: st.DrawFn) -> Clcw:
    return Clcw(
        status_field=draw(st.integers(0, 7)),
        cop_in_effect=draw(st.integers(0, 3)),
        virtual_channel_identification=draw(st.integers(0, 63)),
        reserved_spare_1=draw(st.integers(0, 3)),
        no_rf_available=draw(st.booleans()),
        no_bit_lock=draw(st.booleans()),
        lockout=draw(st.booleans()),
        wait=draw(st.booleans()),
        retransmit=draw(st.booleans()),
        farm_b_counter=draw(st.integers(0, 3)),
        reserved_spare_2=draw(st.integers(0, 1)),
        report_value=draw(st.integers(0, 255)),
    )


@SETTINGS
@given(clcws())
def test_every_clcw_survives_an_encode_decode_round_trip(clcw):
    assert Clcw.decode(clcw.encode()) == clcw


@SETTINGS
@given(clcws())
def test_clcw_fast_path_agrees_with_the_construct_declaration(clcw):
    parsed = CLCW.parse(clcw.encode())
    for name in Clcw.__dataclass_fields__:
        assert parsed[name] == getattr(clcw, name), name
    assert Clcw.decode(CLCW.build({k: getattr(clcw, k) for k in Clcw.__dataclass_fields__})) == clcw


@SETTINGS
@given(st.integers(0, 2**29 - 1))
def test_every_type_0_version_0_word_is_a_clcw_that_re_encodes_exactly(word):
    raw = word.to_bytes(4, "big")
    assert Clcw.decode(raw).encode() == raw


@SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_any_four_octets_decode_or_raise_a_field_error(word):
    raw = word.to_bytes(4, "big")
    if word >> 29:  # control word type 1, or version != 0
        with pytest.raises(FieldError):
            Clcw.decode(raw)
    else:
        Clcw.decode(raw)


@SETTINGS
@given(st.binary(max_size=3))
def test_short_clcws_are_truncated(raw):
    with pytest.raises(TruncatedError):
        Clcw.decode(raw)


@SETTINGS
@given(st.binary(min_size=5, max_size=12))
def test_long_clcws_are_length_errors(raw):
    with pytest.raises(LengthError):
        Clcw.decode(raw)


@SETTINGS
@given(clcws(), st.integers(0, 31))
def test_a_flipped_bit_changes_exactly_one_field_or_makes_it_no_clcw(clcw, bit):
    raw = bytearray(clcw.encode())
    raw[bit // 8] ^= 0x80 >> (bit % 8)
    if bit < 3:
        with pytest.raises(FieldError):
            Clcw.decode(raw)
        return
    damaged = Clcw.decode(raw)
    changed = [n for n in Clcw.__dataclass_fields__ if getattr(damaged, n) != getattr(clcw, n)]
    assert len(changed) == 1


@pytest.mark.parametrize(
    "clcw",
    [
        Clcw(control_word_type=1),
        Clcw(clcw_version_number=1),
        Clcw(status_field=8),
        Clcw(cop_in_effect=4),
        Clcw(virtual_channel_identification=64),
        Clcw(farm_b_counter=4),
        Clcw(report_value=256),
        Clcw(reserved_spare_2=2),
    ],
)
def test_clcw_encoder_refuses_values_that_do_not_fit(clcw):
    with pytest.raises(FieldError):
        clcw.encode()
    with pytest.raises(FieldError):
        clcw.word  # noqa: B018 - the property is what raises


@pytest.mark.parametrize(("raw", "word"), [(V13_FIRST, 0x0002A689), (V13_SECOND, 0x0002D0D4)])
def test_v13_clcws_as_ocf_words(raw, word):
    clcw = Clcw.from_word(word)
    assert clcw == Clcw.decode(raw)
    assert clcw.word == word


@SETTINGS
@given(clcws())
def test_every_clcw_survives_a_word_round_trip(clcw):
    assert Clcw.from_word(clcw.word) == clcw
    assert clcw.word.to_bytes(4, "big") == clcw.encode()


@SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_any_ocf_word_reads_as_its_four_octets_do(word):
    raw = word.to_bytes(4, "big")
    if word >> 29:  # control word type 1, or version != 0
        with pytest.raises(FieldError) as from_word:
            Clcw.from_word(word)
        with pytest.raises(FieldError) as from_octets:
            Clcw.decode(raw)
        assert (from_word.value.message, from_word.value.offset) == (
            from_octets.value.message,
            from_octets.value.offset,
        )
    else:
        assert Clcw.from_word(word) == Clcw.decode(raw)


@pytest.mark.parametrize("word", [-1, 2**32])
def test_a_word_wider_than_32_bits_is_no_clcw(word):
    with pytest.raises(FieldError, match="CLCW word"):
        Clcw.from_word(word)


# --------------------------------------------------------------------------------------------------
# FARM-1 against its state table, 232.1-B-2 table 6-1
# --------------------------------------------------------------------------------------------------

V_R = 10
OPEN, WAIT, LOCKOUT = FarmState.OPEN, FarmState.WAIT, FarmState.LOCKOUT


def farm_in(state: FarmState) -> Farm:
    farm = Farm(VC, v_r=V_R)
    if state is WAIT:
        farm.set_wait(True)
        assert farm.receive(ad(V_R)).event is FarmEvent.AD_NO_BUFFER
    elif state is LOCKOUT:
        assert farm.receive(ad(V_R + 100)).event is FarmEvent.AD_LOCKOUT_AREA
    assert farm.state is state
    return farm


def apply(farm: Farm, event: FarmEvent):
    """Cause `event` in `farm`; the result, or None for E10 (no frame)."""
    if event is FarmEvent.AD_IN_SEQUENCE:
        return farm.receive(ad(V_R))
    if event is FarmEvent.AD_NO_BUFFER:
        farm.set_wait(True)
        return farm.receive(ad(V_R))
    if event is FarmEvent.AD_POSITIVE_WINDOW:
        return farm.receive(ad(V_R + 1))
    if event is FarmEvent.AD_NEGATIVE_WINDOW:
        return farm.receive(ad(V_R - 1))
    if event is FarmEvent.AD_LOCKOUT_AREA:
        return farm.receive(ad(V_R + 128))
    if event is FarmEvent.BD_FRAME:
        return farm.receive(bd())
    if event is FarmEvent.BC_UNLOCK:
        return farm.receive(TcFrame.unlock(SCID, VC))
    if event is FarmEvent.BC_SET_VR:
        return farm.receive(TcFrame.set_vr(SCID, VC, 200))
    if event is FarmEvent.INVALID_FRAME:
        return farm.reject(ChecksumError("FECF mismatch"))
    farm.set_wait(False)
    return None


@dataclass(frozen=True)
class Row:
    """Expected: reason (None: no frame), next state, V(R), (Lockout, Wait, Retransmit), FARM-B."""

    reason: FarmReason | None
    state: FarmState
    v_r: int = V_R
    flags: tuple[bool, bool, bool] = (False, False, False)
    farm_b: int = 0


E = FarmEvent
R = FarmReason
# Flags on entry: Open (0,0,0); Wait (0,1,1) after E2; Lockout (1,0,0) after E5 from Open.
STATE_TABLE = {
    (OPEN, E.AD_IN_SEQUENCE): Row(R.ACCEPTED, OPEN, V_R + 1),
    (OPEN, E.AD_NO_BUFFER): Row(R.NO_BUFFER, WAIT, flags=(False, True, True)),
    (OPEN, E.AD_POSITIVE_WINDOW): Row(R.AHEAD_OF_SEQUENCE, OPEN, flags=(False, False, True)),
    (OPEN, E.AD_NEGATIVE_WINDOW): Row(R.DUPLICATE, OPEN),
    (OPEN, E.AD_LOCKOUT_AREA): Row(R.OUTSIDE_WINDOW, LOCKOUT, flags=(True, False, False)),
    (OPEN, E.BD_FRAME): Row(R.ACCEPTED_BYPASS, OPEN, farm_b=1),
    (OPEN, E.BC_UNLOCK): Row(R.UNLOCK, OPEN, farm_b=1),
    (OPEN, E.BC_SET_VR): Row(R.SET_VR, OPEN, 200, farm_b=1),
    (OPEN, E.INVALID_FRAME): Row(R.INVALID, OPEN),
    (OPEN, E.BUFFER_RELEASE): Row(None, OPEN),
    # E1 is not applicable in Wait: the buffer is full there until E10 leaves the state.
    (WAIT, E.AD_NO_BUFFER): Row(R.NO_BUFFER, WAIT, flags=(False, True, True)),
    (WAIT, E.AD_POSITIVE_WINDOW): Row(R.AHEAD_OF_SEQUENCE, WAIT, flags=(False, True, True)),
    (WAIT, E.AD_NEGATIVE_WINDOW): Row(R.DUPLICATE, WAIT, flags=(False, True, True)),
    (WAIT, E.AD_LOCKOUT_AREA): Row(R.OUTSIDE_WINDOW, LOCKOUT, flags=(True, True, True)),
    (WAIT, E.BD_FRAME): Row(R.ACCEPTED_BYPASS, WAIT, flags=(False, True, True), farm_b=1),
    (WAIT, E.BC_UNLOCK): Row(R.UNLOCK, OPEN, farm_b=1),
    (WAIT, E.BC_SET_VR): Row(R.SET_VR, OPEN, 200, farm_b=1),
    (WAIT, E.INVALID_FRAME): Row(R.INVALID, WAIT, flags=(False, True, True)),
    (WAIT, E.BUFFER_RELEASE): Row(None, OPEN, flags=(False, False, True)),
    (LOCKOUT, E.AD_IN_SEQUENCE): Row(R.LOCKED_OUT, LOCKOUT, flags=(True, False, False)),
    (LOCKOUT, E.AD_NO_BUFFER): Row(R.LOCKED_OUT, LOCKOUT, flags=(True, False, False)),
    (LOCKOUT, E.AD_POSITIVE_WINDOW): Row(R.LOCKED_OUT, LOCKOUT, flags=(True, False, False)),
    (LOCKOUT, E.AD_NEGATIVE_WINDOW): Row(R.LOCKED_OUT, LOCKOUT, flags=(True, False, False)),
    (LOCKOUT, E.AD_LOCKOUT_AREA): Row(R.LOCKED_OUT, LOCKOUT, flags=(True, False, False)),
    (LOCKOUT, E.BD_FRAME): Row(R.ACCEPTED_BYPASS, LOCKOUT, flags=(True, False, False), farm_b=1),
    (LOCKOUT, E.BC_UNLOCK): Row(R.UNLOCK, OPEN, farm_b=1),
    (LOCKOUT, E.BC_SET_VR): Row(R.SET_VR_IN_LOCKOUT, LOCKOUT, flags=(True, False, False), farm_b=1),
    (LOCKOUT, E.INVALID_FRAME): Row(R.INVALID, LOCKOUT, flags=(True, False, False)),
    (LOCKOUT, E.BUFFER_RELEASE): Row(None, LOCKOUT, flags=(True, False, False)),
}


def test_the_state_table_covers_every_event_in_every_state():
    assert {(s, e) for s in FarmState for e in FarmEvent} - set(STATE_TABLE) == {
        (WAIT, E.AD_IN_SEQUENCE)
    }


@pytest.mark.parametrize(("state", "event"), sorted(STATE_TABLE))
def test_farm_follows_the_state_table(state, event):
    expected = STATE_TABLE[(state, event)]
    farm = farm_in(state)
    farm_b = farm.farm_b_counter
    result = apply(farm, event)
    if expected.reason is None:
        assert result is None
    else:
        assert result.event is event
        assert result.reason is expected.reason
        assert result.state is expected.state
        assert result.accepted == (expected.reason in (R.ACCEPTED, R.ACCEPTED_BYPASS))
        assert (result.data is not None) == result.accepted
    assert farm.state is expected.state
    assert farm.v_r == expected.v_r
    assert (farm.lockout, farm.wait, farm.retransmit) == expected.flags
    assert farm.farm_b_counter - farm_b == expected.farm_b
    clcw = farm.clcw()
    assert (clcw.lockout, clcw.wait, clcw.retransmit) == expected.flags
    assert clcw.report_value == expected.v_r


def test_in_wait_an_in_sequence_frame_is_still_discarded_for_lack_of_buffer():
    farm = farm_in(WAIT)
    result = farm.receive(ad(V_R))
    assert (result.event, result.reason, farm.state) == (E.AD_NO_BUFFER, R.NO_BUFFER, WAIT)


def test_lockout_entered_from_wait_keeps_wait_until_the_buffer_is_released():
    farm = farm_in(WAIT)
    farm.receive(ad(V_R + 128))
    assert (farm.state, farm.wait) == (LOCKOUT, True)
    farm.set_wait(False)
    assert (farm.state, farm.wait, farm.lockout) == (LOCKOUT, False, True)


def test_after_buffer_release_the_retransmitted_frame_is_accepted():
    farm = farm_in(WAIT)
    farm.set_wait(False)
    result = farm.receive(ad(V_R, b"again"))
    assert (result.data, farm.v_r, farm.retransmit) == (b"again", V_R + 1, False)


@pytest.mark.parametrize(
    ("offset", "event"),
    [
        (0, E.AD_IN_SEQUENCE),
        (1, E.AD_POSITIVE_WINDOW),
        (icd.FARM_SLIDING_WINDOW // 2 - 1, E.AD_POSITIVE_WINDOW),
        (icd.FARM_SLIDING_WINDOW // 2, E.AD_LOCKOUT_AREA),
        (-1, E.AD_NEGATIVE_WINDOW),
        (-(icd.FARM_SLIDING_WINDOW // 2), E.AD_NEGATIVE_WINDOW),
        (-(icd.FARM_SLIDING_WINDOW // 2) - 1, E.AD_LOCKOUT_AREA),
    ],
)
@pytest.mark.parametrize("v_r", [0, 5, 250, 255])
def test_window_edges_follow_w_over_two_across_the_wrap(v_r, offset, event):
    farm = Farm(VC, v_r=v_r)
    assert farm.receive(ad(v_r + offset)).event is event


@SETTINGS
@given(st.integers(0, 255), st.integers(0, 255), st.sampled_from([2, 10, 64, 254]))
def test_every_sequence_number_falls_in_exactly_one_area(v_r, n_s, width):
    farm = Farm(VC, sliding_window=width, v_r=v_r)
    ahead = (n_s - v_r) % 256
    event = farm.receive(ad(n_s)).event
    if ahead == 0:
        assert event is E.AD_IN_SEQUENCE
    elif ahead < width // 2:
        assert event is E.AD_POSITIVE_WINDOW
    elif ahead >= 256 - width // 2:
        assert event is E.AD_NEGATIVE_WINDOW
    else:
        assert event is E.AD_LOCKOUT_AREA


def test_a_frame_of_another_virtual_channel_is_invalid():
    farm = Farm(VC)
    result = farm.receive(ad(0, vc=VC + 1))
    assert (result.event, result.reason) == (E.INVALID_FRAME, R.INVALID)
    assert isinstance(result.error, AddressError)
    assert farm.v_r == 0


def test_a_bc_frame_with_an_unknown_command_is_invalid():
    farm = Farm(VC)
    result = farm.receive(TcFrame(SCID, VC, 0, b"\x42", True, True, None))
    assert (result.event, result.reason) == (E.INVALID_FRAME, R.INVALID)
    assert isinstance(result.error, FieldError)


def test_farm_counts_every_outcome_for_telemetry():
    farm = Farm(VC)
    farm.receive(ad(0))
    farm.receive(ad(0))
    farm.receive(ad(2))
    farm.receive(bd())
    farm.reject(ChecksumError("bad FECF"))
    counters = farm.counters
    assert counters[R.ACCEPTED] == 1
    assert counters[R.DUPLICATE] == 1
    assert counters[R.AHEAD_OF_SEQUENCE] == 1
    assert counters[R.ACCEPTED_BYPASS] == 1
    assert counters[R.INVALID] == 1
    assert sum(counters.values()) == 5


def test_the_clcw_reports_farm_b_modulo_four_and_the_link_flags():
    farm = Farm(VC)
    for _ in range(5):
        farm.receive(bd())
    clcw = farm.clcw(no_rf_available=True, no_bit_lock=True)
    assert (clcw.farm_b_counter, farm.farm_b_counter) == (1, 5)
    assert (clcw.no_rf_available, clcw.no_bit_lock) == (True, True)
    assert (clcw.cop_in_effect, clcw.virtual_channel_identification) == (1, VC)
    assert Clcw.decode(clcw.encode()) == clcw


@pytest.mark.parametrize("width", [0, 1, 3, 256])
def test_farm_refuses_a_window_the_standard_does_not_allow(width):
    with pytest.raises(ValueError):
        Farm(VC, sliding_window=width)


# --------------------------------------------------------------------------------------------------
# FOP-1, directive by directive and event by event (232.1-B-2 table 5-1)
# --------------------------------------------------------------------------------------------------

T1 = 2.0


def make_fop(**kwargs) -> Fop:
    options = {"sliding_window": 8, "t1_initial_s": T1, "transmission_limit": 3}
    options.update(kwargs)
    return Fop(SCID, VC, **options)


def active_fop(**kwargs) -> Fop:
    fop = make_fop(**kwargs)
    assert fop.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW, 0.0) is Response.ACCEPT
    fop.take_notifications()
    return fop


def clcw(n_r: int, *, retransmit=False, wait=False, lockout=False, vc=VC, cop=1) -> Clcw:
    return Clcw(
        cop_in_effect=cop,
        virtual_channel_identification=vc,
        lockout=lockout,
        wait=wait,
        retransmit=retransmit,
        report_value=n_r % 256,
    )


def send(fop: Fop, count: int, now: float = 0.0) -> list[TcFrame]:
    """Request `count` AD FDUs tagged 0.. and return the frames sent; their ACCEPTs are dropped."""
    for i in range(count):
        fop.transfer(f"fdu {i}".encode(), now, tag=i)
    fop.take_notifications()
    return fop.take_frames()


def responses(notifications, kind=FduNotification) -> list:
    return [(n.response, n.tag) for n in notifications if isinstance(n, kind)]


def alerts(notifications) -> list[AlertReason]:
    return [n.alert for n in notifications if isinstance(n, AlertNotification)]


def test_fop_starts_initial_and_rejects_fdus():
    fop = make_fop()
    assert fop.state is FopState.INITIAL
    assert fop.transfer(b"x", 0.0, tag="t") is Response.REJECT
    assert responses(fop.take_notifications()) == [(Response.REJECT, "t")]
    assert fop.take_frames() == []


def test_initiate_without_clcw_accepts_confirms_and_activates():
    fop = make_fop()
    assert fop.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW, 0.0, tag="d") is Response.ACCEPT
    assert responses(fop.take_notifications(), DirectiveNotification) == [
        (Response.ACCEPT, "d"),
        (Response.POSITIVE_CONFIRM, "d"),
    ]
    assert fop.state is FopState.ACTIVE


@pytest.mark.parametrize(
    ("directive", "qualifier"),
    [
        (FopDirective.INITIATE_AD_WITHOUT_CLCW, None),
        (FopDirective.INITIATE_AD_WITH_CLCW, None),
        (FopDirective.INITIATE_AD_WITH_UNLOCK, None),
        (FopDirective.INITIATE_AD_WITH_SET_VR, 3),
        (FopDirective.SET_VS, 3),
    ],
)
def test_initiate_and_set_vs_are_rejected_unless_initial(directive, qualifier):
    fop = active_fop()
    send(fop, 1)
    assert fop.directive(directive, 0.0, qualifier) is Response.REJECT
    assert (fop.state, fop.v_s, fop.sent_queue_length) == (FopState.ACTIVE, 1, 1)
    assert fop.take_frames() == []


def test_ad_frames_carry_consecutive_sequence_numbers_and_stop_at_the_window():
    fop = active_fop(sliding_window=4)
    frames = send(fop, 4)
    assert [f.frame_sequence_number for f in frames] == [0, 1, 2, 3]
    assert all(f.frame_type is FrameType.AD and f.map_id == 0 for f in frames)
    assert fop.transfer(b"fifth", 0.0, tag=4) is None  # waits: V(S) = NN(R) + K
    assert not fop.accepts_fdu
    assert fop.transfer(b"sixth", 0.0, tag=5) is Response.REJECT  # E20: Wait_Queue full
    assert fop.take_frames() == []
    fop.receive_clcw(clcw(2), 0.5)  # E6: frames 0, 1 acknowledged
    notes = fop.take_notifications()
    assert (Response.POSITIVE_CONFIRM, 0) in responses(notes)
    assert (Response.POSITIVE_CONFIRM, 1) in responses(notes)
    assert (Response.ACCEPT, 4) in responses(notes)
    assert [f.frame_sequence_number for f in fop.take_frames()] == [4]
    assert (fop.nn_r, fop.v_s) == (2, 5)


def test_acknowledging_everything_stops_t1():
    fop = active_fop()
    send(fop, 3)
    assert fop.next_deadline == T1
    fop.receive_clcw(clcw(3), 0.5)  # E2
    assert fop.next_deadline is None
    assert fop.sent_queue_length == 0
    assert fop.state is FopState.ACTIVE


def test_t1_expiry_retransmits_every_outstanding_frame_go_back_n():
    fop = active_fop()
    frames = send(fop, 3)
    fop.receive_clcw(clcw(1), 0.5)
    fop.poll(T1 - 0.01)
    assert fop.take_frames() == []
    fop.poll(T1)  # E16
    assert fop.take_frames() == frames[1:]
    assert fop.transmission_count == 2
    assert fop.next_deadline == T1 + T1


def test_t1_expiry_at_the_transmission_limit_alerts_t1():
    fop = active_fop(transmission_limit=2)
    send(fop, 2)
    fop.poll(T1)  # E16: transmission 2
    fop.take_frames()
    fop.poll(2 * T1)  # E17
    notes = fop.take_notifications()
    assert alerts(notes) == [AlertReason.T1]
    assert responses(notes) == [(Response.NEGATIVE_CONFIRM, 0), (Response.NEGATIVE_CONFIRM, 1)]
    assert fop.state is FopState.INITIAL
    assert fop.next_deadline is None


def test_suspend_on_timeout_and_resume_where_it_left_off():
    fop = active_fop(transmission_limit=1, timeout_type=TimeoutType.SUSPEND)
    frames = send(fop, 2)
    fop.poll(T1)  # E18
    assert fop.take_notifications() == [SuspendNotification(1)]
    assert (fop.state, fop.suspend_state, fop.sent_queue_length) == (FopState.INITIAL, 1, 2)
    assert fop.directive(FopDirective.SET_VS, T1, 0) is Response.REJECT  # E35 with SS != 0
    assert fop.directive(FopDirective.RESUME_AD, 10.0) is Response.ACCEPT  # E31
    assert (fop.state, fop.suspend_state, fop.next_deadline) == (FopState.ACTIVE, 0, 10.0 + T1)
    fop.receive_clcw(clcw(2), 10.5)
    assert [n for n, _ in responses(fop.take_notifications())].count(Response.POSITIVE_CONFIRM) == 2
    assert len(frames) == 2


def test_resume_without_suspension_is_rejected():
    fop = make_fop()
    assert fop.directive(FopDirective.RESUME_AD, 0.0) is Response.REJECT  # E30


def test_clcw_retransmit_flag_triggers_one_go_back_n_until_the_timer():
    fop = active_fop()
    frames = send(fop, 4)
    fop.receive_clcw(clcw(1, retransmit=True), 0.5)  # E8: frame 0 acked, 1.. missing
    assert fop.state is FopState.RETRANSMIT_WITHOUT_WAIT
    assert fop.take_frames() == frames[1:]
    fop.receive_clcw(clcw(1, retransmit=True), 0.6)  # E10 in S2: ignored
    assert fop.take_frames() == []
    fop.receive_clcw(clcw(4), 0.7)  # E2: back to Active
    assert fop.state is FopState.ACTIVE


def test_retransmit_without_new_acknowledgement_is_e10():
    fop = active_fop()
    frames = send(fop, 2)
    fop.receive_clcw(clcw(0, retransmit=True), 0.5)  # E10 in S1
    assert fop.state is FopState.RETRANSMIT_WITHOUT_WAIT
    assert fop.take_frames() == frames
    assert fop.transmission_count == 2


def test_farm_wait_holds_retransmission_until_the_buffer_is_free():
    fop = active_fop()
    frames = send(fop, 3)
    fop.receive_clcw(clcw(1, retransmit=True, wait=True), 0.5)  # E9
    assert fop.state is FopState.RETRANSMIT_WITH_WAIT
    assert fop.take_frames() == []
    fop.poll(T1)  # E16 in S3: ignored
    assert fop.take_frames() == []
    assert fop.transfer(b"queued", T1, tag="q") is None  # E19 in S3: waits
    fop.receive_clcw(clcw(1, retransmit=True, wait=True), T1 + 0.1)  # E11 in S3: ignored
    fop.receive_clcw(clcw(1, retransmit=True), T1 + 0.2)  # E10 in S3: retransmit
    assert fop.state is FopState.RETRANSMIT_WITHOUT_WAIT
    sent = fop.take_frames()
    assert sent[:2] == frames[1:]
    assert sent[2].data == b"queued"


def test_e12_waits_for_the_timer_at_the_transmission_limit():
    fop = active_fop(transmission_limit=2)
    send(fop, 2)
    fop.receive_clcw(clcw(0, retransmit=True), 0.5)  # E10: transmission 2
    fop.take_frames()
    fop.receive_clcw(clcw(0, retransmit=True), 0.6)  # E12 in S2: ignored
    assert (fop.state, fop.take_frames()) == (FopState.RETRANSMIT_WITHOUT_WAIT, [])
    fop.poll(0.5 + T1)  # E17
    assert alerts(fop.take_notifications()) == [AlertReason.T1]


@pytest.mark.parametrize("n_r", [0, 1])
def test_transmission_limit_one_alerts_limit_on_a_retransmit_request(n_r):
    fop = active_fop(transmission_limit=1)
    send(fop, 2)
    fop.receive_clcw(clcw(n_r, retransmit=True), 0.5)  # E101 / E102
    notes = fop.take_notifications()
    assert alerts(notes) == [AlertReason.LIMIT]
    assert [r for r, _ in responses(notes)].count(Response.POSITIVE_CONFIRM) == n_r


@pytest.mark.parametrize(
    ("report", "state_setup", "reason"),
    [
        (clcw(0, lockout=True), None, AlertReason.LOCKOUT),  # E14
        (clcw(7), None, AlertReason.NN_R),  # E13: N(R) beyond V(S)
        (clcw(2, wait=True), None, AlertReason.CLCW),  # E3
        (clcw(2, retransmit=True), None, AlertReason.SYNCH),  # E4
        (clcw(1, wait=True), None, AlertReason.CLCW),  # E7
        (clcw(0), "retransmitting", AlertReason.SYNCH),  # E5 in S2
    ],
)
def test_inconsistent_clcws_raise_the_standard_alerts(report, state_setup, reason):
    fop = active_fop()
    send(fop, 2)
    if state_setup == "retransmitting":
        fop.receive_clcw(clcw(0, retransmit=True), 0.1)
        fop.take_notifications()
    fop.receive_clcw(report, 0.5)
    notes = fop.take_notifications()
    assert alerts(notes) == [reason]
    assert fop.state is FopState.INITIAL
    assert fop.sent_queue_length == 0


def test_clcws_of_other_channels_or_without_cop1_are_ignored():
    fop = active_fop()
    send(fop, 1)
    fop.receive_clcw(clcw(1, vc=VC + 1), 0.5)
    fop.receive_clcw(clcw(1, cop=0), 0.5)
    assert fop.sent_queue_length == 1
    assert fop.counters["clcws_ignored"] == 2


def test_terminate_gives_back_everything_with_alert_term():
    fop = active_fop(sliding_window=1)
    send(fop, 2)  # one sent, one waiting
    assert fop.directive(FopDirective.TERMINATE_AD, 0.5, tag="t") is Response.ACCEPT
    notes = fop.take_notifications()
    assert responses(notes) == [(Response.NEGATIVE_CONFIRM, 0), (Response.REJECT, 1)]
    assert alerts(notes) == [AlertReason.TERM]
    assert responses(notes, DirectiveNotification)[-1] == (Response.POSITIVE_CONFIRM, "t")
    assert fop.state is FopState.INITIAL


def test_terminate_when_initial_is_confirmed_without_an_alert():
    fop = make_fop()
    assert fop.directive(FopDirective.TERMINATE_AD, 0.0) is Response.ACCEPT
    assert alerts(fop.take_notifications()) == []


def test_initiate_with_clcw_is_confirmed_by_a_clean_clcw():
    fop = make_fop()
    fop.directive(FopDirective.INITIATE_AD_WITH_CLCW, 0.0, tag="i")  # E24
    assert (fop.state, fop.next_deadline) == (FopState.INITIALISING_WITHOUT_BC_FRAME, T1)
    fop.receive_clcw(clcw(0), 0.5)  # E1 in S4
    assert responses(fop.take_notifications(), DirectiveNotification)[-1] == (
        Response.POSITIVE_CONFIRM,
        "i",
    )
    assert (fop.state, fop.next_deadline) == (FopState.ACTIVE, None)


@pytest.mark.parametrize(
    ("timeout_type", "expected"), [(TimeoutType.ALERT, "alert"), (TimeoutType.SUSPEND, "suspend")]
)
def test_initiate_with_clcw_times_out(timeout_type, expected):
    fop = make_fop(timeout_type=timeout_type)
    fop.directive(FopDirective.INITIATE_AD_WITH_CLCW, 0.0, tag="i")
    fop.take_notifications()
    fop.poll(T1)  # E16 / E104 in S4
    notes = fop.take_notifications()
    if expected == "alert":
        assert alerts(notes) == [AlertReason.T1]
        assert responses(notes, DirectiveNotification) == [(Response.NEGATIVE_CONFIRM, "i")]
    else:
        assert notes == [SuspendNotification(4)]
        assert fop.directive(FopDirective.RESUME_AD, 5.0) is Response.ACCEPT
        assert fop.state is FopState.INITIALISING_WITHOUT_BC_FRAME


def test_initiate_with_clcw_alerts_on_lockout():
    fop = make_fop()
    fop.directive(FopDirective.INITIATE_AD_WITH_CLCW, 0.0, tag="i")
    fop.take_notifications()
    fop.receive_clcw(clcw(0, lockout=True), 0.5)  # E14 in S4
    notes = fop.take_notifications()
    assert alerts(notes) == [AlertReason.LOCKOUT]
    assert responses(notes, DirectiveNotification) == [(Response.NEGATIVE_CONFIRM, "i")]


def test_initiate_with_unlock_sends_bc_unlock_and_retries_it_until_confirmed():
    fop = make_fop()
    farm = Farm(VC)
    farm.receive(ad(100))  # lock the FARM out
    fop.directive(FopDirective.INITIATE_AD_WITH_UNLOCK, 0.0, tag="u")  # E25
    assert fop.state is FopState.INITIALISING_WITH_BC_FRAME
    (unlock,) = fop.take_frames()
    assert unlock == TcFrame.unlock(SCID, VC)
    fop.receive_clcw(farm.clcw(), 0.1)  # E14 in S5: ignored, the BC frame is on its way
    assert fop.state is FopState.INITIALISING_WITH_BC_FRAME
    fop.poll(T1)  # E16 in S5: the BC frame again
    assert fop.take_frames() == [unlock]
    farm.receive(TcFrame.decode(unlock.encode()))
    fop.receive_clcw(farm.clcw(), T1 + 0.1)  # E1 in S5
    assert responses(fop.take_notifications(), DirectiveNotification)[-1] == (
        Response.POSITIVE_CONFIRM,
        "u",
    )
    assert fop.state is FopState.ACTIVE


def test_initiate_with_unlock_alerts_t1_at_the_transmission_limit():
    fop = make_fop(transmission_limit=2)
    fop.directive(FopDirective.INITIATE_AD_WITH_UNLOCK, 0.0)
    fop.poll(T1)
    fop.poll(2 * T1)  # E17 in S5
    assert alerts(fop.take_notifications()) == [AlertReason.T1]
    assert len(fop.take_frames()) == 2


def test_initiate_with_set_vr_resynchronises_both_ends():
    fop = make_fop()
    farm = Farm(VC, v_r=77)
    fop.directive(FopDirective.INITIATE_AD_WITH_SET_VR, 0.0, 200, tag="s")  # E27
    assert (fop.v_s, fop.nn_r) == (200, 200)
    (set_vr,) = fop.take_frames()
    assert set_vr.control_command()[1] == 200
    farm.receive(set_vr)
    fop.receive_clcw(farm.clcw(), 0.1)
    assert fop.state is FopState.ACTIVE
    (frame,) = send(fop, 1, 0.2)
    assert frame.frame_sequence_number == 200
    assert farm.receive(frame).accepted


def test_set_vs_sets_the_next_sequence_number_when_initial():
    fop = make_fop()
    assert fop.directive(FopDirective.SET_VS, 0.0, 250) is Response.ACCEPT  # E35
    fop.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW, 0.0)
    frames = send(fop, 8)
    assert [f.frame_sequence_number for f in frames] == [250, 251, 252, 253, 254, 255, 0, 1]
    fop.receive_clcw(clcw(1), 0.5)  # acknowledgement across the wrap
    assert fop.nn_r == 1


@pytest.mark.parametrize(
    ("directive", "value", "attribute"),
    [
        (FopDirective.SET_FOP_SLIDING_WINDOW, 3, "sliding_window"),
        (FopDirective.SET_T1_INITIAL, 0.25, "t1_initial_s"),
        (FopDirective.SET_TRANSMISSION_LIMIT, 9, "transmission_limit"),
        (FopDirective.SET_TIMEOUT_TYPE, 1, "timeout_type"),
    ],
)
@pytest.mark.parametrize("initiated", [False, True])
def test_parameter_directives_are_accepted_in_any_state(directive, value, attribute, initiated):
    fop = active_fop() if initiated else make_fop()
    assert fop.directive(directive, 0.0, value, tag="p") is Response.ACCEPT
    assert getattr(fop, attribute) == value
    assert responses(fop.take_notifications(), DirectiveNotification) == [
        (Response.ACCEPT, "p"),
        (Response.POSITIVE_CONFIRM, "p"),
    ]


@pytest.mark.parametrize(
    ("directive", "value"),
    [
        (FopDirective.SET_FOP_SLIDING_WINDOW, 0),
        (FopDirective.SET_FOP_SLIDING_WINDOW, icd.FARM_SLIDING_WINDOW // 2 + 1),
        (FopDirective.SET_T1_INITIAL, 0),
        (FopDirective.SET_T1_INITIAL, float("nan")),
        (FopDirective.SET_TRANSMISSION_LIMIT, 0),
        (FopDirective.SET_TIMEOUT_TYPE, 2),
        (FopDirective.SET_VS, 256),
        (FopDirective.INITIATE_AD_WITH_SET_VR, None),
    ],
)
def test_directives_with_invalid_qualifiers_are_rejected(directive, value):
    fop = make_fop()
    assert fop.directive(directive, 0.0, value, tag="x") is Response.REJECT  # E40
    assert responses(fop.take_notifications(), DirectiveNotification) == [(Response.REJECT, "x")]


def test_a_smaller_window_takes_effect_for_new_frames():
    fop = active_fop(sliding_window=8)
    fop.directive(FopDirective.SET_FOP_SLIDING_WINDOW, 0.0, 2)
    assert len(send(fop, 5)) == 2


@pytest.mark.parametrize("initiated", [False, True])
def test_bypass_fdus_go_out_as_bd_frames_in_any_state(initiated):
    fop = active_fop() if initiated else make_fop()
    assert fop.transfer_bypass(b"now", 0.0, tag="b") is Response.ACCEPT
    (frame,) = fop.take_frames()
    assert (frame.frame_type, frame.data) == (FrameType.BD, b"now")
    assert responses(fop.take_notifications()) == [
        (Response.ACCEPT, "b"),
        (Response.POSITIVE_CONFIRM, "b"),
    ]


def test_a_lower_layer_failure_alerts_llif():
    fop = active_fop()
    (frame,) = send(fop, 1)
    fop.transmission_failed(frame)
    notes = fop.take_notifications()
    assert alerts(notes) == [AlertReason.LLIF]
    assert responses(notes) == [(Response.NEGATIVE_CONFIRM, 0)]


def test_an_oversized_fdu_is_a_length_error():
    fop = active_fop()
    with pytest.raises(LengthError):
        fop.transfer(bytes(1017), 0.0)


def test_an_fdu_that_would_not_fit_once_secured_is_refused_on_request():
    # SDLS adds its header and MAC below FOP-1: the ground tells FOP-1 how much room is left.
    fop = active_fop(max_fdu_length=1016 - SECURITY_OVERHEAD)
    with pytest.raises(LengthError, match=f"at most {1016 - SECURITY_OVERHEAD}"):
        fop.transfer(bytes(1016 - SECURITY_OVERHEAD + 1), 0.0)
    assert fop.transfer(bytes(1016 - SECURITY_OVERHEAD), 0.0) is Response.ACCEPT
    assert len(fop.take_frames()) == 1


@pytest.mark.parametrize("length", [0, 1017])
def test_fop_refuses_a_maximum_fdu_length_no_frame_can_carry(length):
    with pytest.raises(ValueError, match="maximum FDU length"):
        make_fop(max_fdu_length=length)


@st.composite
def fop_operations(draw: st.DrawFn) -> list[tuple]:
    directive = st.tuples(
        st.just("directive"),
        st.sampled_from(FopDirective),
        st.one_of(st.none(), st.integers(-1, 300), st.floats(0, 10)),
    )
    report = st.builds(
        clcw,
        st.integers(0, 255),
        retransmit=st.booleans(),
        wait=st.booleans(),
        lockout=st.booleans(),
        vc=st.sampled_from([VC, VC, VC, VC + 1]),
        cop=st.sampled_from([1, 1, 1, 0]),
    )
    operation = st.one_of(
        st.tuples(st.just("transfer"), st.binary(max_size=8)),
        st.tuples(st.just("bypass"), st.binary(max_size=8)),
        st.tuples(st.just("clcw"), report),
        st.tuples(st.just("poll"), st.floats(0, 3)),
        st.tuples(st.just("fail")),
        directive,
    )
    return draw(st.lists(operation, max_size=60))


@settings(max_examples=300, deadline=None)
@given(fop_operations())
def test_fop_survives_any_sequence_of_events_and_keeps_its_books(operations):
    fop = make_fop()
    now = 0.0
    final: dict[object, Response] = {}
    tags = iter(range(10**6))
    last_frame = TcFrame(SCID, VC, 0, b"")
    for operation in operations:
        kind = operation[0]
        if kind == "transfer":
            fop.transfer(operation[1], now, tag=next(tags))
        elif kind == "bypass":
            fop.transfer_bypass(operation[1], now, tag=next(tags))
        elif kind == "clcw":
            fop.receive_clcw(operation[1], now)
        elif kind == "poll":
            now += operation[1]
            fop.poll(now)
        elif kind == "fail":
            fop.transmission_failed(last_frame)
        else:
            fop.directive(operation[1], now, operation[2])
        last_frame = (fop.take_frames() or [last_frame])[-1]
        for note in fop.take_notifications():
            if isinstance(note, FduNotification) and note.response is not Response.ACCEPT:
                assert note.tag not in final, "an FDU was answered twice"
                final[note.tag] = note.response
        outstanding = (fop.v_s - fop.nn_r) % 256
        assert outstanding <= fop.sent_queue_length <= outstanding + 1
        if fop.state is FopState.INITIAL:
            assert fop.next_deadline is None
            assert fop.suspend_state or fop.sent_queue_length == 0


@st.composite
def farm_inputs(draw: st.DrawFn) -> list[tuple]:
    frame = st.one_of(
        st.builds(ad, st.integers(0, 255)),
        st.builds(bd),
        st.just(TcFrame.unlock(SCID, VC)),
        st.builds(lambda v: TcFrame.set_vr(SCID, VC, v), st.integers(0, 255)),
        st.builds(lambda n: ad(n, vc=VC + 1), st.integers(0, 255)),
    )
    step = st.one_of(
        st.tuples(st.just("frame"), frame),
        st.tuples(st.just("wait"), st.booleans()),
        st.tuples(st.just("invalid")),
    )
    return draw(st.lists(step, max_size=80))


@settings(max_examples=300, deadline=None)
@given(farm_inputs())
def test_farm_accepts_ad_frames_only_in_sequence_whatever_arrives(steps):
    farm = Farm(VC, sliding_window=8)
    for step in steps:
        before = farm.v_r
        if step[0] == "wait":
            farm.set_wait(step[1])
        elif step[0] == "invalid":
            assert not farm.reject(ChecksumError("bad")).accepted
        else:
            frame = step[1]
            result = farm.receive(frame)
            if result.accepted and frame.frame_type is FrameType.AD:
                assert frame.frame_sequence_number == before
                assert farm.v_r == (before + 1) % 256
            elif result.reason is not R.SET_VR:
                assert farm.v_r == before
        assert farm.lockout == (farm.state is LOCKOUT)
        assert farm.wait == (farm.state is WAIT) or farm.state is LOCKOUT
        assert Clcw.decode(farm.clcw().encode()) == farm.clcw()


# --------------------------------------------------------------------------------------------------
# FOP-1 and FARM-1 end to end over a faulty link, in simulated time
# --------------------------------------------------------------------------------------------------

STEP_S = 0.1


@dataclass
class LinkRun:
    fdus: list[bytes]
    delivered: list[bytes] = field(default_factory=list)
    confirmed: list[int] = field(default_factory=list)
    alerts: list[AlertReason] = field(default_factory=list)


def run_over_faulty_link(
    seed: int,
    uplink: FaultModel,
    *,
    clcw_loss: float,
    count: int = 1000,
    busy: float = 0.0,
) -> tuple[LinkRun, FaultyChannel, FaultyChannel, Fop, Farm]:
    """Ground FOP-1 -> faulty uplink -> onboard FARM-1; a CLCW back each step over a lossy downlink.

    `busy` is the chance per step that the onboard consumer cannot take data for the next few steps.
    """
    rng = random.Random(seed)
    up = FaultyChannel(uplink, random.Random(rng.getrandbits(64)))
    down = FaultyChannel(FaultModel(loss=clcw_loss), random.Random(rng.getrandbits(64)))
    fop = Fop(SCID, VC, sliding_window=16, t1_initial_s=1.0, transmission_limit=20)
    farm = Farm(VC)
    run = LinkRun([i.to_bytes(2, "big") + rng.randbytes(rng.randrange(40)) for i in range(count)])
    fop.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW, 0.0)
    busy_until = -1.0
    now = 0.0
    submitted = 0
    while len(run.confirmed) < count and not run.alerts:
        assert now < count * 5, "the link made no progress"
        while submitted < count and fop.accepts_fdu:
            fop.transfer(run.fdus[submitted], now, tag=submitted)
            submitted += 1
        fop.poll(now)
        for frame in fop.take_frames():
            up.send(frame.encode())
        if busy and rng.random() < busy:
            farm.set_wait(True)
            busy_until = now + 0.5
        elif busy_until >= 0 and now >= busy_until:
            farm.set_wait(False)
            busy_until = -1.0
        for raw in up.deliver():
            try:
                frame = TcFrame.decode(raw, spacecraft_id=SCID)
            except ProtocolError as error:
                farm.reject(error)
                continue
            result = farm.receive(frame)
            if result.data is not None:
                run.delivered.append(result.data)
        down.send(farm.clcw().encode())
        for raw in down.deliver():
            fop.receive_clcw(Clcw.decode(raw), now)
        for note in fop.take_notifications():
            if isinstance(note, AlertNotification | SuspendNotification):
                run.alerts.append(getattr(note, "alert", None))
            elif isinstance(note, FduNotification) and note.response is Response.POSITIVE_CONFIRM:
                run.confirmed.append(note.tag)
        now += STEP_S
    return run, up, down, fop, farm


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_thousand_frames_arrive_exactly_once_in_order_over_a_lossy_link(seed):
    model = FaultModel(loss=0.1, duplicate=0.05, reorder=0.1)
    run, up, down, fop, farm = run_over_faulty_link(seed, model, clcw_loss=0.3)
    assert run.alerts == []
    assert run.delivered == run.fdus
    assert run.confirmed == list(range(len(run.fdus)))
    # The faults really happened, and COP-1 really worked around them.
    assert min(up.lost, up.duplicated, up.reordered, down.lost) > 0
    assert farm.counters[FarmReason.DUPLICATE] > 0
    assert farm.counters[FarmReason.AHEAD_OF_SEQUENCE] > 0
    assert fop.counters["ad_frames_retransmitted"] > 0
    assert fop.state is FopState.ACTIVE


@pytest.mark.parametrize("seed", [5, 6])
def test_frames_corrupted_by_bit_errors_are_rejected_by_the_fecf_and_recovered(seed):
    model = FaultModel(loss=0.02, bit_error_rate=2e-4)
    run, up, _, _, farm = run_over_faulty_link(seed, model, clcw_loss=0.1)
    assert run.alerts == []
    assert run.delivered == run.fdus
    assert up.corrupted > 0
    assert farm.counters[FarmReason.INVALID] > 0


def test_a_busy_onboard_consumer_makes_the_ground_wait_without_loss():
    model = FaultModel(loss=0.05, duplicate=0.02, reorder=0.05)
    run, _, _, _, farm = run_over_faulty_link(7, model, clcw_loss=0.2, busy=0.03)
    assert run.alerts == []
    assert run.delivered == run.fdus
    assert farm.counters[FarmReason.NO_BUFFER] > 0


def test_without_cop1_the_same_link_loses_and_duplicates_frames():
    """The fault model is strong enough that the end-to-end tests above would fail without COP-1."""
    rng = random.Random(1)
    up = FaultyChannel(FaultModel(loss=0.1, duplicate=0.05, reorder=0.1), rng)
    fdus = [i.to_bytes(2, "big") for i in range(1000)]
    for fdu in fdus:
        up.send(fdu)
    assert up.flush() != fdus


# --------------------------------------------------------------------------------------------------
# The asyncio driver on a virtual-time loop
# --------------------------------------------------------------------------------------------------


class _VirtualClockSelector(selectors.BaseSelector):
    """Answers the loop's "wait for the next timer" by moving a virtual clock, not sleeping."""

    def __init__(self) -> None:
        self._real = selectors.DefaultSelector()
        self.now = 0.0

    def register(self, fileobj, events, data=None):
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._real.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._real.modify(fileobj, events, data)

    def select(self, timeout=None):
        ready = self._real.select(0)
        if ready:
            return ready
        if timeout is None:  # nothing scheduled: only real I/O can wake the loop
            ready = self._real.select(5.0)
            if not ready:
                raise RuntimeError("virtual-time loop is idle with nothing scheduled (deadlock)")
            return ready
        self.now += timeout
        return []

    def get_map(self):
        return self._real.get_map()

    def close(self):
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._clock = _VirtualClockSelector()
        super().__init__(self._clock)

    def time(self) -> float:
        return self._clock.now


def run_virtual(coroutine):
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coroutine)


async def spacecraft(
    farm: Farm,
    uplink: FaultyChannel,
    downlink: FaultyChannel,
    driver_box: list[FopDriver],
    delivered: list[bytes],
) -> None:
    """Onboard side: take what the uplink delivers every 10 ms, report a CLCW every 100 ms."""
    tick = 0
    while True:
        await asyncio.sleep(0.01)
        for raw in uplink.deliver():
            try:
                result = farm.receive(TcFrame.decode(raw, spacecraft_id=SCID))
            except ProtocolError as error:
                farm.reject(error)
                continue
            if result.data is not None:
                delivered.append(result.data)
        tick += 1
        if tick % 10 == 0:
            downlink.send(farm.clcw().encode())
            for raw in downlink.deliver():
                driver_box[0].receive_clcw(Clcw.decode(raw))


def test_driver_delivers_in_virtual_time_over_a_faulty_link():
    rng = random.Random(11)
    up = FaultyChannel(FaultModel(loss=0.1, duplicate=0.05, reorder=0.1), random.Random(12))
    down = FaultyChannel(FaultModel(loss=0.3), random.Random(13))
    farm = Farm(VC)
    farm.receive(ad(99))  # start locked out, so only Initiate AD with Unlock can open the link
    fdus = [i.to_bytes(2, "big") + rng.randbytes(rng.randrange(30)) for i in range(200)]
    delivered: list[bytes] = []
    notifications = []

    async def uplink_send(raw: bytes) -> None:
        await asyncio.sleep(0.001)  # serialisation time on the link
        up.send(raw)

    async def scenario():
        loop = asyncio.get_running_loop()
        fop = Fop(SCID, VC, sliding_window=8, t1_initial_s=0.5, transmission_limit=20)
        box: list[FopDriver] = []
        driver = FopDriver(fop, uplink_send, on_notification=notifications.append)
        async with asyncio.TaskGroup() as group, driver:
            box.append(driver)
            onboard = group.create_task(spacecraft(farm, up, down, box, delivered))
            await driver.directive(FopDirective.INITIATE_AD_WITH_UNLOCK)
            futures = [await driver.submit(fdu) for fdu in fdus]
            numbers = await asyncio.gather(*futures)
            onboard.cancel()
        return numbers, loop.time(), fop

    numbers, elapsed, fop = run_virtual(scenario())
    assert delivered == fdus
    assert numbers == [i % 256 for i in range(len(fdus))]
    assert not [n for n in notifications if isinstance(n, AlertNotification)]
    assert min(up.lost, up.duplicated, up.reordered, down.lost) > 0
    assert fop.counters["ad_frames_retransmitted"] > 0
    assert elapsed > 1.0  # virtual seconds passed, and T1 drove retransmissions


def test_driver_raises_cop_error_for_rejected_requests():
    async def scenario():
        async def nowhere(raw: bytes) -> None:
            pass

        async with FopDriver(make_fop(), nowhere) as driver:
            with pytest.raises(CopError) as rejected:
                await driver.transfer(b"too early")  # FOP-1 is still Initial
            with pytest.raises(CopError):
                await driver.directive(FopDirective.SET_VS, 300)
            await driver.transfer_bypass(b"bypass works anyway")
        return rejected.value.response

    assert run_virtual(scenario()) is Response.REJECT


def test_driver_turns_a_failing_link_into_an_llif_alert():
    notifications = []

    async def scenario():
        async def broken(raw: bytes) -> None:
            raise ConnectionResetError("link down")

        async with FopDriver(make_fop(), broken, on_notification=notifications.append) as driver:
            await driver.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW)
            with pytest.raises(CopError) as failed:
                await driver.transfer(b"lost")
            return failed.value.alert, driver.fop.state

    assert run_virtual(scenario()) == (AlertReason.LLIF, FopState.INITIAL)
    assert (
        AlertNotification(AlertReason.LLIF, "Type-AD frame could not be transmitted")
        in notifications
    )


def test_driver_t1_fires_on_the_loop_clock():
    sent: list[tuple[float, bytes]] = []

    async def scenario():
        loop = asyncio.get_running_loop()

        async def record(raw: bytes) -> None:
            sent.append((loop.time(), raw))

        fop = make_fop(t1_initial_s=3.0, transmission_limit=2)
        async with FopDriver(fop, record) as driver:
            await driver.directive(FopDirective.INITIATE_AD_WITHOUT_CLCW)
            with pytest.raises(CopError) as failed:
                await driver.transfer(b"never acknowledged")
        return failed.value.alert

    assert run_virtual(scenario()) is AlertReason.T1
    assert [round(t, 6) for t, _ in sent] == [0.0, 3.0]
    assert sent[0][1] == sent[1][1]
