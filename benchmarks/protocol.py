"""Protocol benchmark: the whole TM path against spacepackets, and authenticated TC frames.

Run `python benchmarks/protocol.py` (or `make bench`); `--profile` adds a cProfile of the TM path.
Two spacepackets peers run in the same process: its packets only (the issue's yardstick) and its
whole TM path (like for like). The two Markdown tables at the end can be pasted into
docs/benchmarks.md: median and p99 are over every item of every repetition; per second, frames/s
and MB/s (of Space Packet octets delivered, or of frame octets for the CRC rows) come from the
fastest repetition; each ratio is given from the fastest repetitions and from the medians.
"""

import argparse
import cProfile
import datetime
import gc
import os
import platform
import pstats
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import fastcrc
from spacepackets.ccsds.spacepacket import PacketType as PeerPacketType
from spacepackets.ccsds.spacepacket import SpacePacket as PeerSpacePacket
from spacepackets.ccsds.spacepacket import SpacePacketHeader as PeerHeader
from spacepackets.ccsds.tm_frame import (
    MasterChannelId,
    TmFramePrimaryHeader,
    TmTransferFrame,
    TransferFrameDataFieldStatus,
)

from flight.protocol import icd
from flight.protocol.crc import crc16
from flight.protocol.sdls import SecurityAssociation, TcSecurity
from flight.protocol.spacepacket import IDLE_APID, PacketType, SpacePacket
from flight.protocol.tc_frame import TcFrame
from flight.protocol.tm_frame import (
    SEGMENT_LENGTH_ID,
    TmMasterChannel,
    TmReceiver,
    data_field_length,
)

FRAMES = 10_000
TC_FRAMES = 10_000
REPETITIONS = 5
PACKET_DATA_OCTETS = 1024  # 1 KiB packet data field: 1030-octet Space Packets
TC_PACKET_DATA_OCTETS = 64  # a typical telecommand: 70-octet Space Packet in each TC frame
APID = 0x042
TARGET_RATIO = 2.0
DATA_FIELD_OCTETS = data_field_length(icd.TM_FRAME_LENGTH, has_ocf=True)
_PEER_FECF = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class Run:
    """One repetition: the time of each item (a frame or a packet) and the octets it moved."""

    item_times_s: list[float]
    octets: int
    frames: int


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    unit: str
    runs: list[Run]

    @property
    def items(self) -> int:
        return len(self.runs[0].item_times_s)

    def _best_run(self) -> Run:
        # Throughput from the fastest repetition, as timeit does: on a shared machine the slower
        # ones measure the neighbours, not the code.
        return min(self.runs, key=lambda run: sum(run.item_times_s))

    @property
    def total_s(self) -> float:
        return sum(self._best_run().item_times_s)

    @property
    def median_us(self) -> float:
        return statistics.median(t for run in self.runs for t in run.item_times_s) * 1e6

    @property
    def p99_us(self) -> float:
        samples = sorted(t for run in self.runs for t in run.item_times_s)
        return samples[min(len(samples) - 1, int(0.99 * len(samples)))] * 1e6

    @property
    def items_per_s(self) -> float:
        return self.items / self.total_s

    @property
    def frames_per_s(self) -> float | None:
        run = self._best_run()
        return run.frames / self.total_s if run.frames else None

    @property
    def octets_per_item(self) -> float:
        run = self._best_run()
        return run.octets / len(run.item_times_s)

    @property
    def mb_per_s(self) -> float:
        return self._best_run().octets / self.total_s / 1e6


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, {platform.machine()}\n"
        f"python:  {platform.python_implementation()} {sys.version.split()[0]}\n"
        f"date:    {now}"
    )


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    unit: str
    once: Callable[[], Run]


def measure(cases: list[Case], repetitions: int) -> list[Result]:
    """Every case once per round, for `repetitions` rounds. On a shared machine a neighbour's burst
    then slows one repetition of every case alike, rather than all of whichever case it overlaps,
    which would skew the ratios."""
    runs: list[list[Run]] = [[] for _ in cases]
    for _ in range(repetitions):
        for case, case_runs in zip(cases, runs, strict=True):
            gc.collect()
            case_runs.append(case.once())
    return [
        Result(case.name, case.unit, case_runs) for case, case_runs in zip(cases, runs, strict=True)
    ]


# --- 1. our whole TM path -----------------------------------------------------------------------


def tm_path_once(frames: int) -> Run:
    """Build packets -> multiplex into frames with FECF -> check frames -> extract -> decode.

    Timed per frame released: each item includes building and sending the packets that filled it.
    """
    data = bytes(range(256)) * (PACKET_DATA_OCTETS // 256)
    master = TmMasterChannel(icd.SPACECRAFT_ID, ocf=lambda: 0)
    receiver = TmReceiver(icd.SPACECRAFT_ID)
    channel = master.virtual_channel(icd.TmVirtualChannel.REALTIME)
    clock = time.perf_counter
    times: list[float] = []
    sequence = 0
    octets = 0
    for _ in range(frames):
        start = clock()
        while not channel.pending_frames:
            channel.send(SpacePacket(PacketType.TM, APID, sequence & 0x3FFF, data).encode())
            sequence += 1
        for raw in receiver.receive(master.next_frame()).packets:
            octets += len(SpacePacket.decode(raw).data) + 6
        times.append(clock() - start)
    return Run(times, octets, frames)


# --- 2. the peers: spacepackets' packets only, and its whole TM path ----------------------------


def peer_packets_once(packets: int) -> Run:
    """spacepackets' SpacePacket pack and header unpack plus the data slice: no frames, no FECF."""
    data = bytes(range(256)) * (PACKET_DATA_OCTETS // 256)
    clock = time.perf_counter
    times: list[float] = []
    octets = 0
    for sequence in range(packets):
        start = clock()
        header = PeerHeader(PeerPacketType.TM, APID, sequence & 0x3FFF, len(data) - 1)
        raw = PeerSpacePacket(header, None, data).pack()
        parsed = PeerHeader.unpack(raw)
        octets += len(bytes(raw[6 : parsed.packet_len])) + 6
        times.append(clock() - start)
    return Run(times, octets, 0)


class PeerTmPath:
    """spacepackets' own TM path, one packet per frame: the peer's objects, our glue kept minimal.

    spacepackets 0.32 has no packet multiplexer, so each frame carries one 1030-octet packet and an
    idle packet (APID 0x7FF, built once) fills the other 73 octets of the data field; the
    frame's header objects that never change are built once too, as TmMasterChannel does. Its
    TmTransferFrame.pack takes the FECF as given, so the frame is packed with two zero octets there,
    which are then replaced by fastcrc's CRC-16 (the function its own unpack checks the FECF with).
    It has no SpacePacket.unpack, so a packet is SpacePacketHeader.unpack plus the data slice, as in
    peer_packets_once. Unlike TmReceiver, its unpack does not check the header fields or counts.
    """

    def __init__(self) -> None:
        idle_octets = DATA_FIELD_OCTETS - (PACKET_DATA_OCTETS + 6)
        idle_header = PeerHeader(PeerPacketType.TM, IDLE_APID, 0, idle_octets - 7)
        self.idle = bytes(PeerSpacePacket(idle_header, None, bytes(idle_octets - 6)).pack())
        self.channel = MasterChannelId(0, icd.SPACECRAFT_ID)
        self.status = TransferFrameDataFieldStatus(False, False, False, SEGMENT_LENGTH_ID, 0)
        self.ocf = bytes(4)

    def encode(self, sequence: int, data: bytes) -> bytes:
        header = PeerHeader(PeerPacketType.TM, APID, sequence & 0x3FFF, len(data) - 1)
        packet = PeerSpacePacket(header, None, data).pack()
        count = sequence & 0xFF
        primary = TmFramePrimaryHeader(
            self.channel, icd.TmVirtualChannel.REALTIME, True, count, count, self.status
        )
        packet.extend(self.idle)  # pack() gave a new bytearray: no copy needed
        frame = TmTransferFrame(
            icd.TM_FRAME_LENGTH, primary, None, packet, self.ocf, bytes(2)
        ).pack()
        protected = frame[:-2]
        return protected + _PEER_FECF.pack(fastcrc.crc16.ibm_3740(protected))

    @staticmethod
    def decode(raw: bytes) -> list[bytes]:
        """The user data of every packet in the frame, idle packets dropped."""
        frame = TmTransferFrame.unpack(raw, icd.TM_FRAME_LENGTH, True)
        field = frame.data_field
        position = frame.primary_header.frame_datafield_status.first_header_pointer
        found: list[bytes] = []
        while position < len(field):
            parsed = PeerHeader.unpack(field[position : position + 6])
            end = position + parsed.packet_len
            if parsed.apid != IDLE_APID:
                found.append(bytes(field[position + 6 : end]))
            position = end
        return found


def peer_tm_path_once(frames: int) -> Run:
    """spacepackets' whole TM path (PeerTmPath): packet pack -> frame pack with FECF -> frame
    unpack with FECF check -> packet unpack. Timed per frame, like tm_path_once."""
    data = bytes(range(256)) * (PACKET_DATA_OCTETS // 256)
    path = PeerTmPath()
    clock = time.perf_counter
    times: list[float] = []
    octets = 0
    for sequence in range(frames):
        start = clock()
        for user_data in path.decode(path.encode(sequence, data)):
            octets += len(user_data) + 6
        times.append(clock() - start)
    return Run(times, octets, frames)


def check_peer_path() -> None:
    """Before timing: both sides read each other's frames, so both paths do the same job."""
    data = bytes(range(256)) * (PACKET_DATA_OCTETS // 256)
    path = PeerTmPath()
    ours = SpacePacket(PacketType.TM, APID, 5, data).encode()
    received = TmReceiver(icd.SPACECRAFT_ID).receive(path.encode(5, data))
    if received.packets != (ours,):
        raise SystemExit("benchmark broken: TmReceiver does not read the peer's frame")
    master = TmMasterChannel(icd.SPACECRAFT_ID, ocf=lambda: 0)
    channel = master.virtual_channel(icd.TmVirtualChannel.REALTIME)
    channel.send(ours)
    channel.flush()
    if path.decode(master.next_frame()) != [data]:
        raise SystemExit("benchmark broken: the peer path does not read our frame")


def our_packets_once(packets: int) -> Run:
    """Our SpacePacket encode and decode: the same scope as the peer, for a like-for-like figure."""
    data = bytes(range(256)) * (PACKET_DATA_OCTETS // 256)
    clock = time.perf_counter
    times: list[float] = []
    octets = 0
    for sequence in range(packets):
        start = clock()
        raw = SpacePacket(PacketType.TM, APID, sequence & 0x3FFF, data).encode()
        octets += len(SpacePacket.decode(raw).data) + 6
        times.append(clock() - start)
    return Run(times, octets, 0)


def crc_floor_once(frames: int, crc: Callable[[bytes], int]) -> Run:
    """The two CRC-16 passes every frame costs (FECF made, FECF checked), and nothing else."""
    frame = bytes(icd.TM_FRAME_LENGTH)
    clock = time.perf_counter
    times: list[float] = []
    for _ in range(frames):
        start = clock()
        crc(frame)
        crc(frame)
        times.append(clock() - start)
    return Run(times, frames * icd.TM_FRAME_LENGTH, frames)


# --- 3. authenticated TC frames -----------------------------------------------------------------


def tc_authenticated_once(frames: int) -> Run:
    """Encode (apply security) and decode (verify MAC and anti-replay) TC frames."""
    key = bytes(range(32))
    association = SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, key)
    ground = TcSecurity([association])
    onboard = TcSecurity([association])
    command = SpacePacket(PacketType.TC, APID, 0, bytes(TC_PACKET_DATA_OCTETS)).encode()
    vcid = icd.TcVirtualChannel.COMMAND
    clock = time.perf_counter
    times: list[float] = []
    octets = 0
    for number in range(frames):
        start = clock()
        frame = TcFrame(icd.SPACECRAFT_ID, vcid, number & 0xFF, command)
        raw = ground.apply(frame, iv=number + 1).encode()
        received = onboard.process(TcFrame.decode(raw, spacecraft_id=icd.SPACECRAFT_ID))
        octets += len(received.data)
        times.append(clock() - start)
    return Run(times, octets, frames)


# --- report -------------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    lines = [
        "| path | per | median (µs) | p99 (µs) | per second | frames/s | MB/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        frames = f"{result.frames_per_s:,.0f}" if result.frames_per_s else "-"
        lines.append(
            f"| {result.name} | {result.unit} | {result.median_us:.2f} | {result.p99_us:.2f}"
            f" | {result.items_per_s:,.0f} | {frames} | {result.mb_per_s:.1f} |"
        )
    return "\n".join(lines)


def throughput_ratio(ours: Result, theirs: Result) -> tuple[float, float]:
    """Ours / theirs in Space Packet octets per second: from the fastest runs, and from the median
    item times, which a busy neighbour disturbs less."""
    best = ours.mb_per_s / theirs.mb_per_s
    medians = (ours.octets_per_item / ours.median_us) / (theirs.octets_per_item / theirs.median_us)
    return best, medians


def ratio_table(rows: list[tuple[str, tuple[float, float], bool]]) -> str:
    lines = [
        f"| ratio | fastest runs | medians | >= {TARGET_RATIO:.0f}x |",
        "|---|---:|---:|---|",
    ]
    for name, (best, medians), judged in rows:
        verdict = "met" if min(best, medians) >= TARGET_RATIO else "NOT met"
        lines.append(f"| {name} | {best:.2f}x | {medians:.2f}x | {verdict if judged else '-'} |")
    return "\n".join(lines)


def profile_tm_path(frames: int) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(tm_path_once, frames)
    print("\ncProfile of the TM path (internal time):")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=FRAMES, help="TM frames per repetition")
    parser.add_argument("--tc-frames", type=int, default=TC_FRAMES)
    parser.add_argument("--repetitions", type=int, default=REPETITIONS)
    parser.add_argument("--profile", action="store_true", help="also cProfile the TM path")
    args = parser.parse_args(argv)

    print(machine())
    print(
        f"workload: {args.frames:,} TM frames of {icd.TM_FRAME_LENGTH} octets (OCF, FECF)"
        f" carrying {PACKET_DATA_OCTETS + 6}-octet Space Packets;"
        f" {args.tc_frames:,} authenticated TC frames; {args.repetitions} repetitions\n"
    )
    check_peer_path()
    # Untimed, and a warm-up: the packets the TM path delivers, for the packets-only cases.
    packets = tm_path_once(args.frames).octets // (PACKET_DATA_OCTETS + 6)
    cases = [
        Case(
            "Penumbra TM path (packets → frames → packets)",
            "frame",
            lambda: tm_path_once(args.frames),
        ),
        Case(
            "spacepackets TM path (packet → frame → packet, 1 per frame + idle)",
            "frame",
            lambda: peer_tm_path_once(args.frames),
        ),
        Case(
            "spacepackets SpacePacket pack + unpack (packets only)",
            "packet",
            lambda: peer_packets_once(packets),
        ),
        Case(
            "Penumbra SpacePacket encode + decode (packets only)",
            "packet",
            lambda: our_packets_once(packets),
        ),
        Case(
            "CRC-16 floor, binascii.crc_hqx (ours): FECF made + checked",
            "frame",
            lambda: crc_floor_once(args.frames, crc16),
        ),
        Case(
            "CRC-16 floor, fastcrc (spacepackets'): FECF made + checked",
            "frame",
            lambda: crc_floor_once(args.frames, fastcrc.crc16.ibm_3740),
        ),
        Case(
            "Penumbra authenticated TC frame: apply + encode, decode + process",
            "frame",
            lambda: tc_authenticated_once(args.tc_frames),
        ),
    ]
    results = measure(cases, args.repetitions)
    ours, peer_path, peer, our_packets, floor = results[:5]

    print(table(results))
    frames_ratio = (
        ours.frames_per_s / peer_path.frames_per_s,  # type: ignore[operator]
        peer_path.median_us / ours.median_us,
    )
    print()
    print(
        ratio_table(
            [
                (
                    "whole TM path, ours / spacepackets packet-only (the issue's target)",
                    throughput_ratio(ours, peer),
                    True,
                ),
                (
                    "whole TM path, ours / spacepackets whole TM path (like for like)",
                    throughput_ratio(ours, peer_path),
                    True,
                ),
                (
                    "packets only, ours / spacepackets (like for like)",
                    throughput_ratio(our_packets, peer),
                    True,
                ),
                ("frames/s, whole TM path, ours / spacepackets", frames_ratio, False),
            ]
        )
    )
    # What the ratio could reach at best, from the medians: the CRC floor arithmetic.
    peer_rate = peer.octets_per_item / peer.median_us
    crc_only = ours.octets_per_item / floor.median_us / peer_rate
    crc_free = ours.octets_per_item / (ours.median_us - floor.median_us) / peer_rate
    print(
        f"\nthe two CRC-16 passes take {floor.median_us / ours.median_us:.0%} of our median frame;"
        f" the issue's ratio if a frame cost nothing but them: {crc_only:.2f}x;"
        f" if they cost nothing and the rest stayed: {crc_free:.2f}x"
    )
    if args.profile:
        profile_tm_path(args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
