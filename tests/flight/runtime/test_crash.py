"""SIGKILL a node at random points, again and again: every restart comes up, nothing repeats."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 50
SEED = 20261121
STARTUP_TIMEOUT_S = 60.0  # a safety net for a broken child, not a measurement


class Child:
    """One life of the node: the child process and the lines it printed, read by a thread (a
    full pipe would block the child and make the kill points less random)."""

    def __init__(self, state_dir: Path) -> None:
        root = Path(__file__).resolve().parents[3]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), str(state_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.up = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("up "):
                self.up.set()
        self.up.set()  # the child ended: let the waiter see it

    def kill(self) -> list[str]:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.reader.join()
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        self.process.stderr.close()
        self.process.stdout.close()  # type: ignore[union-attr]
        # Only complete lines count: the last one may have been cut by the kill.
        return self.lines


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split()[1:])


def test_sigkill_at_random_points_never_repeats_a_counter(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    state_dir = tmp_path / "state"
    serials: set[int] = set()
    accepted_ivs: list[int] = []
    boots: list[int] = []
    attempted_saves = {1000}  # the default counts as saved before any SAVE
    confirmed_saves: list[int] = []
    for life in range(KILLS + 1):
        child = Child(state_dir)
        assert child.up.wait(STARTUP_TIMEOUT_S), f"life {life}: no 'up' line in time"
        time.sleep(rng.uniform(0.0, 0.3))  # the kill lands anywhere in the node's work
        lines = child.kill()
        assert lines and lines[0].startswith("up "), (
            f"life {life}: the node did not come up: {lines[:3]} {child.stderr[-2000:]}"
        )
        up = _fields(lines[0])
        # The state loads and the mode is reached after every kill.
        assert up["mode"] == "NOMINAL", f"life {life}: booted into {up['mode']}: {child.stderr}"
        boots.append(int(up["boot"]))
        # The anti-replay state is at least what was accepted before the kill...
        last_iv = int(up["last_iv"])
        assert last_iv >= max(accepted_ivs, default=0), f"life {life}: IV state went back"
        # ...and an authentic frame with that IV is refused, whatever the kill interrupted.
        steps = [line for line in lines[1:] if not line.startswith("tm ")]
        if last_iv > 0 and steps:
            assert steps[0] == "replay-refused", f"life {life}: {steps[0]}"
        # A saved parameter comes back as one that was being saved, never older than confirmed.
        ping = int(up["ping"])
        assert ping in attempted_saves, f"life {life}: PING_PERIOD_MS {ping} was never saved"
        if confirmed_saves:  # the values saved grow, so an older one would be smaller
            assert ping >= confirmed_saves[-1], f"life {life}: {ping} older than a saved value"
        for line in lines[1:]:
            kind, _, value = line.partition(" ")
            if kind == "tm":
                serial = int(value)
                assert serial not in serials, f"life {life}: TM serial {serial} repeated"
                serials.add(serial)
            elif kind == "iv":
                iv = int(value)
                assert iv > max(accepted_ivs, default=0), f"life {life}: IV {iv} accepted again"
                accepted_ivs.append(iv)
            elif kind == "saving":
                attempted_saves.add(int(value))
            elif kind == "saved":
                confirmed_saves.append(int(value))
    assert boots == sorted(set(boots)), f"boot counts repeated or went back: {boots}"
    # The test did exercise what it checks.
    assert len(serials) > 1000 and len(accepted_ivs) > 100 and len(confirmed_saves) > 10
