"""SIGKILL the payload at 50 random points of its work: every job completes once, bit for bit."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from payloadkit import reference, sha256

from hil.models import cloud_mask_unet

CHILD = Path(__file__).with_name("payload_kill_child.py")
KILLS = 50
SEED = 20260517
JOBS = 16
TILES = 24  # per job: 6 checkpoints of 4 tiles, so completions are spread among the kills
SAFETY_S = 120.0  # a net for a broken child, not a measurement


class Child:
    """One life of the node; its lines are read by a thread (a full pipe would stall it)."""

    def __init__(self, state_dir: Path, mode: str) -> None:
        root = Path(__file__).resolve().parents[3]
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), str(state_dir), mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append("<eof>")
            self.changed.notify_all()

    def wait_for(self, kind: str, count: int = 1) -> bool:
        """Until `count` lines start with `kind` (False if the child ended first)."""

        def seen() -> bool:
            return sum(line.startswith(kind) for line in self.lines) >= count or (
                "<eof>" in self.lines
            )

        with self.changed:
            assert self.changed.wait_for(seen, SAFETY_S), f"no {kind!r} line: {self.lines[-3:]}"
            return sum(line.startswith(kind) for line in self.lines) >= count

    def count(self, kind: str) -> int:
        with self.changed:
            return sum(line.startswith(kind) for line in self.lines)

    def kill(self) -> list[str]:
        self.process.send_signal(signal.SIGKILL)
        return self.end()

    def end(self) -> list[str]:
        self.process.wait(SAFETY_S)
        self.reader.join()
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()
        self.process.stderr.close()
        self.process.stdout.close()  # type: ignore[union-attr]
        return [line for line in self.lines if line != "<eof>"]


def test_sigkill_at_random_points_completes_every_job_once_with_the_same_result(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    state_dir = tmp_path / "state"
    files = state_dir / "files"
    files.mkdir(parents=True)
    model = cloud_mask_unet(input_size=32, base_channels=8, depth=2).SerializeToString()
    (files / "model.onnx").write_bytes(model)
    (files / "model.sha256").write_text(sha256(model))
    inputs = {}
    data = np.random.default_rng(SEED)
    for k in range(JOBS):
        tiles = data.standard_normal((TILES, 4, 32, 32)).astype(np.float32)
        np.save(files / f"input_{k:02d}.npy", tiles)  # submitted in name order
        inputs[k] = tiles

    seeding = Child(state_dir, "seed")
    lines = seeding.end()
    assert seeding.process.returncode == 0, seeding.stderr[-3000:]
    job_ids = [int(word) for word in lines[-1].split()[1:]]
    assert lines[-1].startswith("seeded") and len(job_ids) == JOBS

    done_lines: list[int] = []
    kills_with_work_left = 0
    in_the_window = 0  # kills after a file was written, before its row was reported
    for life in range(KILLS):
        child = Child(state_dir, "run")
        assert child.wait_for("up"), f"life {life}: not up: {child.lines} {child.stderr}"
        # Kill after 0, 1 or 2 checkpoints recorded in this life (so that the work advances),
        # and a little later still: in start-up, a tile, a checkpoint file, the window before
        # its row, a commit, a result, a completion.
        child.wait_for("recorded", rng.randint(0, 2))
        if rng.random() < 0.3:  # aim at the window between a file and its row
            child.wait_for("wrote", child.count("wrote") + 1)
            time.sleep(rng.uniform(0.0, 0.002))
        else:
            time.sleep(rng.uniform(0.0, 0.005))
        work_left = len(set(done_lines)) < JOBS
        lines = child.kill()
        assert lines and lines[0] == "up", f"life {life}: {lines[:3]} {child.stderr[-3000:]}"
        assert "finished" not in lines, f"life {life}: the work ran out before the kills did"
        kills_with_work_left += work_left
        if lines[-1].startswith("wrote"):
            in_the_window += 1
        done_lines += [int(line.split()[1]) for line in lines if line.startswith("done ")]

    final = Child(state_dir, "run")
    lines = final.end()
    assert final.process.returncode == 0, final.stderr[-3000:]
    assert lines[-1] == "finished", lines[-5:]
    done_lines += [int(line.split()[1]) for line in lines if line.startswith("done ")]

    # Every job announced DONE once across all lives...
    assert sorted(done_lines) == sorted(set(done_lines))
    # ...and recorded DONE exactly once, with the result of an uninterrupted run, bit for bit.
    payload_dir = state_dir / "payload"
    with sqlite3.connect(payload_dir / "jobs.sqlite") as db:
        rows = db.execute("SELECT job_id, state, completions FROM jobs ORDER BY job_id").fetchall()
        (tiles_kept,) = db.execute("SELECT value FROM totals WHERE name = 'tiles'").fetchone()
    assert rows == [(job_id, 3, 1) for job_id in job_ids]
    assert tiles_kept == JOBS * TILES  # no batch counted twice
    for k, job_id in enumerate(job_ids):
        result = np.load(payload_dir / "results" / f"{job_id}.npy", allow_pickle=False)
        assert np.array_equal(result, reference(model, inputs[k])), f"job {job_id} differs"
    # No partial file is left: no temporaries, checkpoints or inputs; one result per job.
    leftovers = [
        path.relative_to(payload_dir)
        for path in payload_dir.rglob("*")
        if path.is_file()
        and path.parent.name != "models"
        and path.parent.name != "results"
        and not path.name.startswith("jobs.sqlite")
        and path.name != "job_id.json"
    ]
    assert leftovers == []
    assert sorted(p.name for p in (payload_dir / "results").iterdir()) == sorted(
        f"{job_id}.npy" for job_id in job_ids
    )
    assert [p.name for p in (payload_dir / "models").iterdir()] == [f"{sha256(model)}.onnx"]
    # The kills did land across the work, some of them between a file and its row.
    assert kills_with_work_left == KILLS
    assert in_the_window >= 5, in_the_window
