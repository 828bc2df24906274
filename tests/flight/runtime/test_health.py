"""Health: pings through each component's own queue, warning at 3 missed, restart at 5, watchdog."""

import asyncio
import socket
from pathlib import Path

from flight.runtime import clock
from flight.runtime.component import Component, Mode, command
from flight.runtime.components.health import Health
from flight.runtime.components.mode import ModeManager
from flight.runtime.executive import Executive
from flight.runtime.resources import ResourceSampler
from flight.runtime.services import PusServices, TmPriority
from flight.runtime.watchdog import SystemdNotifier


class Valve(Component):
    """A valve whose STICK command never returns: its task stops answering pings."""

    def __init__(self) -> None:
        super().__init__("valve")
        self.runs = 0

    @command
    async def STICK(self) -> None:
        """Hang for ever."""
        await asyncio.Event().wait()

    async def run(self) -> None:
        self.runs += 1
        await asyncio.Event().wait()


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def enqueue(self, packet: bytes, priority: TmPriority) -> None:
        pass


class Rig:
    def __init__(self, notifier: SystemdNotifier | None = None, sampler=None) -> None:
        self.valve = Valve()
        self.mode = ModeManager()
        self.health = Health(notifier=notifier, sampler=sampler)
        pairs = [(1, self.mode), (3, self.health), (16, self.valve)]
        self.services = PusServices(
            apid=0x10, components=pairs, sink=Events(), mode=lambda: self.mode.current
        )
        self.events: list[tuple[float, str, str]] = []
        original = self.services.emit

        def emit(component, event, arguments, text) -> None:  # type: ignore[no-untyped-def]
            self.events.append((asyncio.get_running_loop().time(), event.name, text))
            original(component, event, arguments, text)

        self.services.emit = emit  # type: ignore[method-assign]
        self.executive = Executive(pairs, self.services)
        self.health.bind(lambda: self.executive.components, self.executive.restart, self.mode)
        self.executive.on_task_error = self.health.task_failed

    def names(self) -> list[str]:
        return [name for _, name, _ in self.events]


def test_a_stuck_component_is_warned_at_3_missed_pings_and_restarted_at_5() -> None:
    rig = Rig()

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            rig.executive.start(group)
            rig.mode.boot(1, [])
            await asyncio.sleep(2.5)
            assert rig.health.all_healthy
            stick = rig.valve.declarations.command("STICK")
            from flight.runtime.component import CommandRequest

            class Quiet:
                def start_success(self) -> None: ...
                def start_failure(self, code, reason) -> None: ...  # type: ignore[no-untyped-def]
                def completion_success(self) -> None: ...

                def completion_failure(self, code, reason) -> None:  # type: ignore[no-untyped-def]
                    rig.events.append((0.0, "aborted", reason))

            rig.valve.submit(CommandRequest(stick, {}, Quiet()))  # at 2.5 s
            # The ping of 3 s waits behind STICK: missed at 4, 5 and 6 s.
            await asyncio.sleep(3.7)
            assert rig.health.missed(rig.valve) == 3
            assert not rig.health.all_healthy
            assert rig.mode.current is Mode.NOMINAL
            await asyncio.sleep(2.0)
            assert rig.valve.restarts == 1
            assert rig.mode.current is Mode.SAFE
            await asyncio.sleep(3.0)
            assert rig.health.missed(rig.valve) == 0  # the new task answers
            assert rig.health.all_healthy
            rig.executive.stop()

    clock.run(main(), virtual=True)
    names = rig.names()
    assert names.count("PING_LATE") == 1
    assert names.count("COMPONENT_RESTARTED") == 1
    assert names.index("PING_LATE") < names.index("COMPONENT_RESTARTED")
    assert ("valve missed 3 pings") in [text for _, _, text in rig.events]
    assert any(name == "aborted" and "STICK aborted" in text for _, name, text in rig.events)
    assert rig.valve.runs == 2  # its run() task was restarted too
    assert rig.health.telemetry.RESTARTS == 1


def test_a_run_task_that_raises_is_reported_and_started_again() -> None:
    rig = Rig()

    async def failing_run() -> None:
        rig.valve.runs += 1
        if rig.valve.runs < 3:
            raise RuntimeError("sensor gone")
        await asyncio.Event().wait()

    rig.valve.run = failing_run  # type: ignore[method-assign]

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            rig.executive.start(group)
            await asyncio.sleep(10)
            rig.executive.stop()

    clock.run(main(), virtual=True)
    failures = [(t, text) for t, name, text in rig.events if name == "TASK_FAILED"]
    assert [text for _, text in failures] == [
        "valve task raised RuntimeError: sensor gone; restarting it in 1.0 s",
        "valve task raised RuntimeError: sensor gone; restarting it in 2.0 s",
    ]
    assert [t for t, _ in failures] == [0.0, 1.0]
    assert rig.valve.runs == 3
    assert rig.health.telemetry.TASK_FAILURES == 2


def test_the_watchdog_is_stroked_only_while_every_component_answers(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(address)
        systemd.setblocking(False)
        notifier = SystemdNotifier(address, watchdog_usec=2_000_000)  # stroke every 1 s
        rig = Rig(notifier=notifier)
        strokes: list[float] = []

        def received() -> None:
            while True:
                try:
                    message = systemd.recv(64)
                except BlockingIOError:
                    return
                if message == b"WATCHDOG=1":
                    strokes.append(round(asyncio.get_running_loop().time(), 1))

        async def main() -> None:
            async with asyncio.TaskGroup() as group:
                rig.executive.start(group)
                for step in range(120):  # the 10 Hz rate group, 12 s
                    rig.health.stroke_watchdog()
                    received()
                    if step == 25:
                        from flight.runtime.component import CommandRequest

                        class Quiet:
                            def start_success(self) -> None: ...
                            def completion_failure(self, code, reason) -> None: ...  # type: ignore[no-untyped-def]

                        rig.valve.submit(
                            CommandRequest(rig.valve.declarations.command("STICK"), {}, Quiet())  # type: ignore[arg-type]
                        )
                    await asyncio.sleep(0.1)
                rig.executive.stop()

        clock.run(main(), virtual=True)
    # STICK at 2.5 s: the valve misses the pings of 3, 4 and 5 s (3 missed at the check of 6 s:
    # unhealthy) until its restart at 8 s (5 missed), healthy again from then on.
    assert strokes[:6] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert 7.0 not in strokes
    resumed = [t for t in strokes if t >= 8.0]
    assert resumed[0] in (8.0, 8.1) and len(resumed) == 4  # the restart and a tick share 8 s
    assert len(strokes) == rig.health.telemetry.WATCHDOG_STROKES


def test_resource_telemetry_comes_from_the_sampler(tmp_path: Path) -> None:
    proc = tmp_path / "proc" / "self"
    proc.mkdir(parents=True)
    (proc / "stat").write_text("1 (x) S " + " ".join(["0"] * 50) + "\n")
    (proc / "statm").write_text("100 25 0 0 0 0 0\n")
    sampler = ResourceSampler(
        tmp_path, proc_root=tmp_path / "proc", sys_root=tmp_path / "sys", page_size_bytes=4096
    )
    rig = Rig(sampler=sampler)

    async def main() -> None:
        rig.health.sample_resources()

    clock.run(main(), virtual=True)
    t = rig.health.telemetry
    assert t.RSS_BYTES == 25 * 4096
    assert t.DISK_FREE_BYTES > 0
    assert t.CPU_TEMPERATURE_C != t.CPU_TEMPERATURE_C  # NaN: this fake board has no sensor
