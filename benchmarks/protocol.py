"""Protocol benchmark: the whole TM path against spacepackets, and authenticated TC frames.

Run `python benchmarks/protocol.py` (or `make bench`); `--profile` adds a cProfile of the TM path.
The Markdown table at the end can be pasted into docs/benchmarks.md: median and p99 are over every
item of every repetition; per second, frames/s and MB/s (of Space Packet octets delivered, or of
frame octets for the CRC row) come from the fastest repetition.
"""

import argparse
import cProfile
import datetime
import gc
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from spacepackets.ccsds.spacepacket import PacketType as PeerPacketType
from spacepackets.ccsds.spacepacket import SpacePacket as PeerSpacePacket
from spacepackets.ccsds.spacepacket import SpacePacketHeader as PeerHeader

from flight.protocol import icd
from flight.protocol.crc import crc16
from flight.protocol.spacepacket import PacketType, SpacePacket
from flight.protocol.tm_frame import TmMasterChannel, TmReceiver

FRAMES = 10_000
TC_FRAMES = 10_000
REPETITIONS = 5
PACKET_DATA_OCTETS = 1024  # 1 KiB packet data field: 1030-octet Space Packets
TC_PACKET_DATA_OCTETS = 64  # a typical telecommand: 70-octet Space Packet in each TC frame
APID = 0x042
TARGET_RATIO = 2.0


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


def repeat(name: str, unit: str, once: Callable[[], Run], repetitions: int) -> Result:
    runs = []
    for _ in range(repetitions):
        gc.collect()
        runs.append(once())
    return Result(name, unit, runs)


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


# --- 2. the peer: spacepackets, packets only ----------------------------------------------------


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


def crc_floor_once(frames: int) -> Run:
    """The two CRC-16 passes every frame costs (FECF made, FECF checked), and nothing else."""
    frame = bytes(icd.TM_FRAME_LENGTH)
    clock = time.perf_counter
    times: list[float] = []
    for _ in range(frames):
        start = clock()
        crc16(frame)
        crc16(frame)
        times.append(clock() - start)
    return Run(times, frames * icd.TM_FRAME_LENGTH, frames)


# --- 3. authenticated TC frames -----------------------------------------------------------------


def tc_authenticated_once(frames: int) -> Run | None:
    """Encode (apply security) and decode (verify MAC and anti-replay) TC frames; None if the
    SDLS or TC frame module is missing.

    LEAD: written against flight/protocol/sdls.py as it stood (TcSecurity.apply(frame, *, iv)
    and process(frame)); adjust here if that API changes.
    """
    try:
        from flight.protocol.sdls import SecurityAssociation, TcSecurity
        from flight.protocol.tc_frame import TcFrame
    except ImportError:
        return None
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
    ours = repeat(
        "Penumbra TM path (packets → frames → packets)",
        "frame",
        lambda: tm_path_once(args.frames),
        args.repetitions,
    )
    packets = ours.runs[0].octets // (PACKET_DATA_OCTETS + 6)
    peer = repeat(
        "spacepackets SpacePacket pack + unpack (peer)",
        "packet",
        lambda: peer_packets_once(packets),
        args.repetitions,
    )
    our_packets = repeat(
        "Penumbra SpacePacket encode + decode",
        "packet",
        lambda: our_packets_once(packets),
        args.repetitions,
    )
    floor = repeat(
        "CRC-16 floor: FECF made + checked",
        "frame",
        lambda: crc_floor_once(args.frames),
        args.repetitions,
    )
    results = [ours, peer, our_packets, floor]
    if tc_authenticated_once(1) is None:
        print("TC: flight/protocol/sdls.py or tc_frame.py missing; authenticated TC not measured")
    else:
        results.append(
            repeat(
                "Penumbra authenticated TC frame: apply + encode, decode + process",
                "frame",
                lambda: tc_authenticated_once(args.tc_frames),  # type: ignore[arg-type,return-value]
                args.repetitions,
            )
        )

    print(table(results))
    ratio = ours.mb_per_s / peer.mb_per_s
    # The same ratio from the median item times, which a busy neighbour disturbs less.
    median_ratio = (ours.octets_per_item / ours.median_us) / (peer.octets_per_item / peer.median_us)
    verdict = "met" if min(ratio, median_ratio) >= TARGET_RATIO else "NOT met"
    print(
        f"\nwhole TM path / spacepackets packet-only throughput: {ratio:.2f}x"
        f" (from medians {median_ratio:.2f}x; target >= {TARGET_RATIO:.0f}x: {verdict})"
    )
    like_for_like = peer.median_us / our_packets.median_us
    print(f"like for like, packets only (ours / spacepackets, medians): {like_for_like:.2f}x")
    crc_share = floor.median_us / ours.median_us
    print(f"share of the TM path's median frame spent in the two CRC-16 passes: {crc_share:.0%}")
    if args.profile:
        profile_tm_path(args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
