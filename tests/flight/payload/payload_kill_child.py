"""The node that test_payload_kill kills: a payload working through jobs on a state directory.

Usage: python payload_kill_child.py STATE_DIR seed|run. On a virtual-time loop it boots a node
hosting a payload (id 17).

    seed   adds the model (files/model.onnx, its sha256 in files/model.sha256) and submits one job
           per files/input_<k>.npy, then prints "seeded <ids>" and exits
    run    prints "up", then works until every job is final, printing "recorded <id>/<batch>"
           after each checkpoint's row, "done <id>" when a job becomes DONE and "finished" at
           the end, then exits

Each batch checkpoint and result is followed by a short sleep before the database records it
(printing "wrote <file>"), so that kills land between the two steps as well. Every line is
flushed: what the parent read before its SIGKILL was really done.
"""

import asyncio
import sys
import time
from pathlib import Path

import numpy as np

from flight.payload import PAYLOAD_COMPONENT_ID, JobState, Payload, PayloadPlan, storage
from flight.runtime import clock
from flight.runtime.config import NodeConfig, PayloadSection
from flight.runtime.node import Node

CONFIG = PayloadSection(max_workers=2, batch_tiles=4)
WINDOW_S = 0.005  # between a file written and its database row


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def widen_the_checkpoint_window() -> None:
    write_npy = storage.write_npy

    def write_then_linger(path: Path, array: np.ndarray) -> str:
        digest = write_npy(path, array)
        say(f"wrote {path.parent.name}/{path.name}")
        time.sleep(WINDOW_S)  # a worker thread: the loop goes on meanwhile
        return digest

    storage.write_npy = write_then_linger  # write_batch and the result both go through it


async def main(state_dir: Path, mode: str) -> None:
    widen_the_checkpoint_window()
    payload = Payload(CONFIG, state_dir=state_dir)
    node = Node(
        NodeConfig().with_state_dir(state_dir), components=[(PAYLOAD_COMPONENT_ID, payload)]
    )
    emit = payload.emit

    def emit_and_say(event, **arguments) -> None:  # type: ignore[no-untyped-def]
        emit(event, **arguments)
        if event is Payload.JOB_DONE:
            say(f"done {arguments['job_id']}")

    payload.emit = emit_and_say  # type: ignore[method-assign]
    checkpoint = payload.store.checkpoint

    def checkpoint_and_say(job, batch, tiles, energy_j):  # type: ignore[no-untyped-def]
        recorded = checkpoint(job, batch, tiles, energy_j)
        say(f"recorded {job.job_id}/{batch}")
        return recorded

    payload.store.checkpoint = checkpoint_and_say  # type: ignore[method-assign]
    async with node:
        files = node.files.directory
        if mode == "seed":
            digest = (files / "model.sha256").read_text().strip()
            payload.apply(PayloadPlan(0, (), "seeding"))  # nothing runs in this life
            await payload.add_model(files / "model.onnx", digest)
            assert node.clock is not None
            deadline = node.clock.now_tai_s() + 10 * 86_400.0
            ids = [
                payload.submit_job(
                    digest,
                    path.name,
                    priority=index % 3,
                    deadline_tai_s=deadline,
                    value=1.0,
                    energy_estimate_j=1.0,
                )
                for index, path in enumerate(sorted(files.glob("input_*.npy")))
            ]
            say("seeded " + " ".join(map(str, ids)))
            return
        say("up")
        while any(not view.state.final for view in payload.jobs()):
            await asyncio.sleep(0.05)
        assert all(view.state is JobState.DONE for view in payload.jobs())
        say("finished")
        node.request_stop()


if __name__ == "__main__":
    clock.run(main(Path(sys.argv[1]), sys.argv[2]), virtual=True)
