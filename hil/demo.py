"""`penumbra demo`: a ground station operates a real node across a noisy in-memory link.

The node is the flight runtime (`flight.runtime.node.Node`) with its embedded defaults, the ground
`ground.station.GroundStation` speaking through the integration-test API's words, and between them
a MemoryLink that loses, duplicates, reorders and corrupts frames (`hil.faults`). Every octet is
made and checked by flight.protocol: PUS-C in AES-GCM-authenticated TC frames under COP-1 up, TM
frames carrying the CLCW down. Time is virtual: minutes of the node's life pass in about a second,
the same every run for a seed.
"""

import argparse
import asyncio
import contextlib
import itertools
import logging
import random
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from flight.runtime.clock import run as run_loop
from ground.dictionary import Stage, Verification
from ground.station import GroundStation, ResponseTimeout
from hil.faults import FaultInjector, FaultModel
from hil.testapi import IntegrationApi, TargetConnection, greater_than
from hil.testapi.attacks import forged_command_frame
from hil.testapi.targets import MemoryTarget

# The uplink crosses the ground network too, which can duplicate and reorder; the space link itself
# only loses frames and flips bits, and never reorders them.
UPLINK_FAULTS = FaultModel(
    loss=0.1, duplicate=0.05, reorder=0.05, bit_error_rate=1e-5, delay_s=0.01, jitter_s=0.01
)
DOWNLINK_FAULTS = FaultModel(loss=0.1, bit_error_rate=1e-5, delay_s=0.01, jitter_s=0.01)
NOOPS = 50
OUTAGE_S = 60.0
HOUSEKEEPING_INTERVAL_S = 2.0
NEW_PING_PERIOD_MS = 500
TIMEOUT_S = 600.0  # virtual seconds: far more than any seed needs
ANSWER_TIMEOUT_S = 10.0  # virtual seconds for one answer; then the request is asked again
ATTEMPTS = 10
T = TypeVar("T")
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int = 1
    uplink: FaultModel = UPLINK_FAULTS
    downlink: FaultModel = DOWNLINK_FAULTS
    noops: int = NOOPS
    outage_s: float = OUTAGE_S


class Checks:
    """What the demo promises, each printed as it is checked; all must hold for exit status 0."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.failed: list[str] = []

    def __call__(self, holds: bool, what: str) -> None:
        self.say(f"  {'ok  ' if holds else 'FAIL'} {what}")
        if not holds:
            self.failed.append(what)


async def _ask(what: Callable[[], Awaitable[T]], say: Say) -> T:
    """An idempotent request, asked again when its answer is lost: the downlink has no
    retransmission (COP-1 guards the uplink only), so a lost TM frame loses the reports in it."""
    for _ in range(ATTEMPTS - 1):
        try:
            return await what()
        except ResponseTimeout as error:
            say(f"  ({error}: the downlink lost the answer; asking again)")
    return await what()


async def _operate(api: IntegrationApi, target: MemoryTarget, scenario: Scenario, say: Say) -> list:
    check = Checks(say)
    station = api.station

    say("\n1. Contact: the node boots, the ground initiates COP-1 and pings it")
    mode = await api.await_telemetry("mode.MODE")
    say(f"  node mode {mode.value}")
    round_trip_s = await _ask(lambda: station.ping(timeout_s=ANSWER_TIMEOUT_S), say)
    say(f"  ping answered: round trip {round_trip_s * 1000:.0f} ms through the faulty link")
    check(mode.value == "NOMINAL", "the node booted into NOMINAL")

    say(f"\n2. Housekeeping: health every {HOUSEKEEPING_INTERVAL_S:.0f} s, by command (3,31)")
    await _ask(
        lambda: station.set_housekeeping_interval(
            "health", HOUSEKEEPING_INTERVAL_S, timeout_s=ANSWER_TIMEOUT_S
        ),
        say,
    )
    start = api.mark()
    for _ in range(3):
        cpu = await api.await_telemetry("health.CPU_PERCENT")
        rss = await api.await_telemetry("health.RSS_BYTES")
        megabytes = rss.value >> 20
        say(f"  t={cpu.time.seconds % 86400:8.1f} s  CPU {cpu.value:5.1f} %  RSS {megabytes} MiB")
    times = [sample.time.seconds for sample in api.telemetry("health.CPU_PERCENT", start=start)]
    spacing = [round(later - earlier, 1) for earlier, later in itertools.pairwise(times)]
    check(
        all(gap % HOUSEKEEPING_INTERVAL_S == 0 for gap in spacing),
        f"samples {HOUSEKEEPING_INTERVAL_S:.0f} s apart (or a multiple, where a frame was lost): "
        f"{spacing}",
    )

    say("\n3. A parameter change: get, set, save, get")
    name = "health.PING_PERIOD_MS"
    before = await _ask(lambda: station.get_parameters(name, timeout_s=ANSWER_TIMEOUT_S), say)
    say(f"  {name} = {before[name]}")
    for report in await _ask(
        lambda: station.set_parameters({name: NEW_PING_PERIOD_MS}, timeout_s=ANSWER_TIMEOUT_S),
        say,
    ):
        say(f"  {report}")
    for report in await _ask(lambda: station.save_parameters(timeout_s=ANSWER_TIMEOUT_S), say):
        say(f"  {report}")
    after = await _ask(lambda: station.get_parameters(name, timeout_s=ANSWER_TIMEOUT_S), say)
    say(f"  {name} = {after[name]}")
    saves = await api.await_telemetry("params.SAVES", greater_than(0))
    check(after[name] == NEW_PING_PERIOD_MS and saves.value >= 1, "the new value is onboard, saved")

    say(f"\n4. {scenario.noops} NO-OPs back to back through the noisy link")
    start = api.mark()
    requests = [await api.send_command("mode.NOOP") for _ in range(scenario.noops)]
    accepted = await api.await_telemetry("mode.COMMANDS_ACCEPTED", scenario.noops)
    completed = {
        item.request
        for item in api.history[start:]
        if isinstance(item, Verification) and item.stage is Stage.COMPLETION and item.success
    }
    say(
        f"  mode.COMMANDS_ACCEPTED = {accepted.value}; the ground saw {len(completed)} of the "
        f"{len(requests)} completion reports (the rest were in TM frames the downlink lost)"
    )
    check(accepted.value == scenario.noops, "each executed exactly once (none lost, none twice)")

    say("\n5. A forged command: SET_MODE SAFE under the wrong key")
    start = api.mark()
    for _ in range(ATTEMPTS):  # the uplink may lose the attacker's frame too
        forged, _ = forged_command_frame(
            api.dictionary, "mode.SET_MODE", {"mode": "SAFE"}, sequence_count=9999
        )
        await target.ground_link.send(forged)
        with contextlib.suppress(AssertionError):
            refused = await api.await_telemetry(
                "uplink.AUTHENTICATION_FAILURES", greater_than(0), timeout_s=ANSWER_TIMEOUT_S
            )
            break
        say("  (the uplink lost the forged frame; the attacker sends it again)")
    for event in api.events("uplink.AUTHENTICATION_FAILED", start=start)[:1]:
        say(f"  event {event}")
    mode = await api.await_telemetry("mode.MODE")
    check(
        refused.value >= 1 and mode.value == "NOMINAL",
        "refused and counted: the node is still NOMINAL",
    )

    say(f"\n6. Loss of contact for {scenario.outage_s:.0f} s: the node stores, then plays back")
    last = (await api.await_telemetry("health.CPU_PERCENT")).time.seconds
    target.flight_link.set_up(False)
    await asyncio.sleep(scenario.outage_s)
    target.flight_link.set_up(True)
    back = last + scenario.outage_s
    while True:  # until a report made after the return says the playback lane is empty
        pending = await api.await_telemetry("downlink.PLAYBACK_PENDING")
        if pending.time.seconds > back + 1 and pending.value == 0:
            break
    for event in api.events("downlink.CONTACT")[-1:]:
        say(f"  event {event}")
    during = [
        sample.time.seconds
        for sample in api.telemetry("health.CPU_PERCENT")
        if last < sample.time.seconds < back
    ]
    say(f"  {len(during)} housekeeping samples from the outage arrived after it")
    check(during == sorted(during), "in the order they were produced")
    # Playback crosses the same lossy downlink: a lost frame takes every report it carried, so
    # "most" is more than half, not all (a node that kept nothing shows none).
    check(
        len(during) > scenario.outage_s / HOUSEKEEPING_INTERVAL_S / 2,
        f"most of them (the downlink still loses {scenario.downlink.loss:.0%} of frames)",
    )
    return check.failed


async def play_async(scenario: Scenario, say: Say) -> bool:
    state = tempfile.TemporaryDirectory(prefix="penumbra-demo-")
    with state:
        target = MemoryTarget(
            state_dir=Path(state.name) / "node",
            uplink_faults=FaultInjector(scenario.uplink, random.Random(scenario.seed)),
            downlink_faults=FaultInjector(scenario.downlink, random.Random(scenario.seed + 1)),
        )
        connection = TargetConnection.of(await target.start())
        try:
            async with (
                GroundStation(
                    connection.link,
                    connection.dictionary,
                    key=connection.key,
                    state_dir=Path(state.name) / "ground",
                ) as station,
                IntegrationApi(station, default_timeout_s=TIMEOUT_S) as api,
            ):
                failed = await _operate(api, target, scenario, say)
                counters = station.counters
                uplink, downlink = target.faults
        finally:
            await target.stop()
    say("\nThe link, both ways")
    say(f"  uplink:   {_fault_line(uplink)}; {counters.transmissions} TC frames sent for "
        f"{counters.commands_sent} commands (FOP-1 retransmits what is lost)")  # fmt: skip
    say(f"  downlink: {_fault_line(downlink)}; {counters.frames_received} TM frames accepted, "
        f"{counters.frames_rejected} rejected by their FECF or headers")  # fmt: skip
    say(f"\n{'All checks held.' if not failed else 'FAILED: ' + '; '.join(failed)}")
    return not failed


def _fault_line(injector: FaultInjector) -> str:
    return (
        f"{injector.sent} frames, {injector.lost} lost, {injector.corrupted} corrupted, "
        f"{injector.duplicated} duplicated, {injector.reordered} reordered"
    )


def play(scenario: Scenario, say: Say = print) -> bool:
    """Play the scenario in virtual time; print as it goes; return whether all checks held."""
    return run_loop(play_async(scenario, say), virtual=True)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1, help="seed of the link's faults")
    parser.add_argument("--loss", type=float, default=UPLINK_FAULTS.loss, help="frame loss, 0..1")
    parser.add_argument(
        "--bit-error-rate", type=float, default=UPLINK_FAULTS.bit_error_rate, help="per bit, 0..1"
    )


def run(args: argparse.Namespace) -> int:
    try:
        uplink = FaultModel(
            loss=args.loss,
            duplicate=UPLINK_FAULTS.duplicate,
            reorder=UPLINK_FAULTS.reorder,
            bit_error_rate=args.bit_error_rate,
            delay_s=UPLINK_FAULTS.delay_s,
            jitter_s=UPLINK_FAULTS.jitter_s,
        )
        downlink = FaultModel(
            loss=args.loss,
            bit_error_rate=args.bit_error_rate,
            delay_s=DOWNLINK_FAULTS.delay_s,
            jitter_s=DOWNLINK_FAULTS.jitter_s,
        )
    except ValueError as error:
        print(f"penumbra demo: {error}", file=sys.stderr)
        return 2
    logging.getLogger("flight").setLevel(logging.ERROR)  # the ground shows what the node reports
    print(
        f"Penumbra demo: a node operated from the ground over an in-memory link that loses "
        f"{args.loss:.0%} of frames and flips bits at {args.bit_error_rate:g} (seed {args.seed}); "
        "virtual time."
    )
    return 0 if play(Scenario(seed=args.seed, uplink=uplink, downlink=downlink)) else 1
