"""The node that test_crash kills: it runs on a state directory and prints what must never repeat.

Usage: python crash_child.py STATE_DIR. On a virtual-time loop it boots a node with an in-memory
link, then, for ever: sends it authenticated NOOPs (each with the next SDLS IV and the next
frame sequence number), saves a growing parameter now and then, and prints

    up boot=B mode=M ping=P last_iv=I v_r=V     once booted (what the state dir gave back)
    replay-refused                              an authentic frame with the last IV was refused
    iv N                                        the node accepted (and persisted) IV N
    saving P / saved P                          before and after params.SAVE with PING_PERIOD_MS P
    tm S                                        the node produced TM with serial S

each line flushed, so that whatever the parent read before its SIGKILL was really done.
"""

import asyncio
import sys
from pathlib import Path

from flight.link import MemoryLink
from flight.protocol import icd
from flight.protocol.pus import PerformFunction, PusTc
from flight.protocol.sdls import SecurityAssociation, TcSecurity
from flight.protocol.tc_frame import TcFrame
from flight.runtime import clock
from flight.runtime.bus import Overflow
from flight.runtime.config import NodeConfig
from flight.runtime.node import Node

KEY = bytes(range(32))


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def print_tm(node: Node) -> None:
    subscription = node.bus.subscribe(
        "tm", name="crash-test", depth=1_000_000, overflow=Overflow.DROP_OLDEST
    )
    async for record in subscription:
        say(f"tm {record.serial}")


async def main(state_dir: Path) -> None:
    ground = TcSecurity([SecurityAssociation(icd.SECURITY_PARAMETER_INDEX, KEY)])
    flight_end, ground_end = MemoryLink.pair()
    async with flight_end, ground_end:
        node = Node(NodeConfig().with_state_dir(state_dir), link=flight_end, key=KEY)
        async with node, asyncio.TaskGroup() as group:
            group.create_task(print_tm(node))
            uplink = node.uplink
            assert uplink.security is not None
            last_iv = uplink.security.last_accepted(icd.SECURITY_PARAMETER_INDEX)
            ping = node.health.parameters.PING_PERIOD_MS
            say(
                f"up boot={node.boot_count} mode={node.mode.current.name} ping={ping} "
                f"last_iv={last_iv} v_r={uplink.farm.v_r}"
            )
            opcode = node.mode.opcode("NOOP")
            count = 0

            async def send(iv: int) -> None:
                nonlocal count
                tc = PusTc(0x010, count & 0x3FFF, 8, 1, PerformFunction(opcode).encode())
                count += 1
                frame = TcFrame(
                    icd.SPACECRAFT_ID,
                    icd.TcVirtualChannel.COMMAND,
                    uplink.farm.v_r,
                    tc.encode(),
                )
                await ground_end.send(ground.apply(frame, iv=iv).encode())

            if last_iv > 0:
                replays = uplink.counts["replays"]
                await send(last_iv)
                while uplink.counts["replays"] == replays:
                    await asyncio.sleep(0.01)
                say("replay-refused")
            iv = last_iv
            while True:
                iv += 1
                v_r = uplink.farm.v_r
                await send(iv)
                while uplink.farm.v_r == v_r:  # processed (and persisted) once V(R) moved
                    await asyncio.sleep(0.01)
                say(f"iv {iv}")
                if iv % 7 == 0:
                    ping = 100 + iv % 50_000
                    node.health.set_parameter(node.health.PING_PERIOD_MS, ping)
                    say(f"saving {ping}")
                    await node.params.SAVE()
                    say(f"saved {ping}")


if __name__ == "__main__":
    clock.run(main(Path(sys.argv[1])), virtual=True)
