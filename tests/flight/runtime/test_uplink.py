"""TC reception: every bad frame counted, announced, answered if it names a request; state kept."""

from pathlib import Path

from flight.protocol import icd
from flight.protocol.pus import EventReport, PusTc, PusTm, VerificationFailure
from flight.protocol.sdls import SecurityAssociation, TcSecurity
from flight.protocol.tc_frame import TcFrame
from flight.runtime.component import FailureCode, Mode
from flight.runtime.services import PusServices, TmPriority
from flight.runtime.store import Store
from flight.runtime.uplink import STATE_RECORD, Uplink

KEY = bytes(range(32))
APID = 0x010


class Sink:
    def __init__(self) -> None:
        self.packets: list[PusTm] = []

    def enqueue(self, packet: bytes, priority: TmPriority) -> None:
        self.packets.append(PusTm.decode(packet))


class Rig:
    """An uplink with real SDLS, FARM-1, store and services; frames handed in directly."""

    def __init__(self, state_dir: Path) -> None:
        self.sink = Sink()
        self.uplink = Uplink(link=None)
        self.services = PusServices(
            apid=APID, components=[(5, self.uplink)], sink=self.sink, mode=lambda: Mode.NOMINAL
        )
        self.uplink.attach(5, self.services)
        self.uplink.services = self.services
        self.clcw_changes = 0

        def changed() -> None:
            self.clcw_changes += 1

        self.uplink.on_clcw_changed = changed
        self.problem = self.uplink.configure(
            key=KEY, spi=icd.SECURITY_PARAMETER_INDEX, store=Store(state_dir)
        )
        self.ground = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, KEY)])
        self.iv = 0

    def frame(
        self, data: bytes, n_s: int | None = None, *, key: bytes = KEY, iv: int | None = None
    ) -> bytes:
        self.iv += 1
        security = self.ground
        if key != KEY:
            security = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, key)])
        frame = TcFrame(
            icd.SPACECRAFT_ID,
            icd.TcVirtualChannel.COMMAND,
            self.uplink.farm.v_r if n_s is None else n_s,
            data,
        )
        return security.apply(frame, iv=self.iv if iv is None else iv).encode()

    def events(self) -> list[tuple[str, bytes]]:
        names = {self.uplink.event_id(e): e.name for e in Uplink.declarations.events}
        out = []
        for tm in self.sink.packets:
            if tm.service == 5:
                report = EventReport.decode(tm.source_data)
                out.append((names[report.event_definition_id], report.auxiliary_data))
        return out

    def failures(self) -> list[tuple[int, int]]:
        return [
            (
                VerificationFailure.decode(tm.source_data).request_id.sequence_count,
                VerificationFailure.decode(tm.source_data).failure_code,
            )
            for tm in self.sink.packets
            if (tm.service, tm.subtype) == (1, 2)
        ]

    def kinds(self) -> list[tuple[int, int]]:
        return [(tm.service, tm.subtype) for tm in self.sink.packets]


def ping(sequence: int) -> bytes:
    return PusTc(APID, sequence, 17, 1).encode()


def test_an_authentic_frame_in_sequence_is_executed_and_the_clcw_announced(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.uplink.process_frame(rig.frame(ping(1)))
    assert rig.kinds() == [(1, 1), (1, 3), (17, 2), (1, 7)]
    assert rig.uplink.farm.v_r == 1
    assert rig.clcw_changes == 1


def test_a_corrupted_frame_is_counted_and_announced_but_not_answered(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    frame = bytearray(rig.frame(ping(1)))
    frame[10] ^= 0x40
    rig.uplink.process_frame(bytes(frame))
    assert [name for name, _ in rig.events()] == ["FRAME_REJECTED"]
    assert b"CRC-16" in rig.events()[0][1]
    assert rig.failures() == []
    assert rig.uplink.counts["rejected"] == 1
    assert rig.uplink.farm.v_r == 0


def test_a_frame_for_another_spacecraft_is_rejected(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    frame = TcFrame(0x123, 0, 0, ping(1))
    rig.uplink.process_frame(rig.ground.apply(frame, iv=1).encode())
    assert [name for name, _ in rig.events()] == ["FRAME_REJECTED"]
    assert b"spacecraft 0x123" in rig.events()[0][1]


def test_a_forged_frame_is_refused_with_code_7_for_the_request_inside(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.uplink.process_frame(rig.frame(ping(9), key=bytes(32)))
    assert rig.failures() == [(9, FailureCode.AUTHENTICATION_FAILED)]
    assert [name for name, _ in rig.events()] == ["AUTHENTICATION_FAILED"]
    assert (17, 2) not in rig.kinds()
    assert rig.uplink.farm.v_r == 0


def test_a_tampered_frame_is_refused_like_a_forged_one(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    frame = TcFrame.decode(rig.frame(ping(4)))
    data = bytearray(frame.data)
    data[20] ^= 1  # inside the packet: the MAC no longer verifies
    tampered = TcFrame(frame.spacecraft_id, 0, frame.frame_sequence_number, bytes(data))
    rig.uplink.process_frame(tampered.encode())  # a fresh FECF: only the MAC can tell
    assert [code for _, code in rig.failures()] == [FailureCode.AUTHENTICATION_FAILED]


def test_a_replayed_frame_is_refused_with_code_8(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    first = rig.frame(ping(1))
    rig.uplink.process_frame(first)
    rig.uplink.process_frame(first)
    assert rig.failures() == [(1, FailureCode.REPLAYED)]
    assert [name for name, _ in rig.events()] == ["REPLAYED"]
    assert rig.kinds().count((17, 2)) == 1


def test_a_malformed_packet_is_refused_and_the_next_in_the_frame_still_runs(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    bad = bytearray(ping(1))
    bad[-1] ^= 0xFF  # the PUS CRC no longer checks
    rig.uplink.process_frame(rig.frame(bytes(bad) + ping(2)))
    assert rig.failures() == [(1, FailureCode.MALFORMED_PACKET)]
    assert (17, 2) in rig.kinds()
    assert [name for name, _ in rig.events()] == ["PACKET_REFUSED"]


def test_a_packet_for_another_apid_is_refused_with_an_event(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.uplink.process_frame(rig.frame(PusTc(icd.Apid.CFDP, 0, 17, 1).encode()))
    [(name, arguments)] = rig.events()
    assert name == "PACKET_REFUSED" and b"CFDP" in arguments


def test_a_frame_far_outside_the_window_locks_farm_out_with_a_high_event(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.uplink.process_frame(rig.frame(ping(1), n_s=128))
    assert [name for name, _ in rig.events()] == ["LOCKOUT"]
    assert rig.uplink.farm.lockout
    rig.uplink.process_frame(TcFrame.unlock(icd.SPACECRAFT_ID, 0).encode())
    assert not rig.uplink.farm.lockout


def test_state_is_saved_before_execution_and_restored_on_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for sequence in range(3):
        rig.uplink.process_frame(rig.frame(ping(sequence)))
    record = Store(tmp_path).load(STATE_RECORD)
    assert record == {"format": 1, "sdls": {"1": 3}, "farm_v_r": 3}
    again = Rig(tmp_path)
    assert again.problem is None
    assert again.uplink.farm.v_r == 3
    again.iv = 2  # an old frame's IV, authentic
    again.uplink.process_frame(again.frame(ping(7)))
    assert again.failures() == [(7, FailureCode.REPLAYED)]


def test_corrupt_state_is_a_boot_problem_and_the_window_starts_afresh(tmp_path: Path) -> None:
    Store(tmp_path).save(STATE_RECORD, {"format": 1, "sdls": {"1": "many"}, "farm_v_r": 3})
    rig = Rig(tmp_path)
    assert rig.problem is not None and "corrupt" in rig.problem and "many" in rig.problem
    rig.uplink.process_frame(rig.frame(ping(1)))
    assert (17, 2) in rig.kinds()


def test_an_unreadable_state_file_is_a_boot_problem(tmp_path: Path) -> None:
    (tmp_path / "uplink.json").write_bytes(b"\x00garbage")
    rig = Rig(tmp_path)
    assert rig.problem is not None and "uplink.json" in rig.problem
