"""The payload's files: models by hash, job inputs, per-batch checkpoints and results, all atomic.

    <state_dir>/payload/jobs.sqlite          the queue (jobs.JobStore)
    <state_dir>/payload/models/<sha256>.onnx models added by ADD_MODEL
    <state_dir>/payload/inputs/<job>.npy     a job's tiles, owned by the job from submission
    <state_dir>/payload/work/<job>/<k>.npy   outputs of batch k, kept until the job is final
    <state_dir>/payload/results/<job>.npy    the result of a DONE job

A file is written whole (write, fsync, rename, fsync the directory) before the database records
it, so after a crash a recorded file is always complete; a file not yet recorded is rewritten
with the same content. `sweep` removes what a crash or a final job left behind.
"""

import errno
import hashlib
import io
import os
import shutil
from contextlib import suppress
from pathlib import Path

import numpy as np

from flight.payload.jobs import Job, JobRefused, JobState
from flight.runtime.store import StoreError, atomic_write

_TEMPORARY_SUFFIX = ".tmp"  # what flight.runtime.store.atomic_write leaves if it dies mid-write


def encode_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_npy(path: Path, array: np.ndarray) -> str:
    """Write `array` to `path` atomically and durably; the sha256 (hex) of the file written.

    Raises StoreError naming the path and the reason (a full disk) with nothing half-written.
    """
    data = encode_npy(array)
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def write_batch(path: Path, array: np.ndarray) -> str:
    """`write_npy` into a job's work directory, made (durably) on its first batch."""
    directory = path.parent
    if not directory.is_dir():
        try:
            directory.mkdir(exist_ok=True)
            fsync_directory(directory.parent)
        except OSError as error:
            raise StoreError(f"cannot create {directory}: {error.strerror}") from None
    return write_npy(path, array)


def read_npy(path: Path) -> np.ndarray:
    """An array written by `write_npy` (never unpickles)."""
    return np.load(path, allow_pickle=False)


def open_tiles(path: Path) -> np.ndarray:
    """A job input, memory-mapped: tile i is `tiles[i : i + 1]`."""
    return np.load(path, mmap_mode="r", allow_pickle=False)


def check_tiles(tiles: np.ndarray, shape: tuple[int, ...], dtype: str, what: str) -> int:
    """How many tiles `tiles` holds for a model input of `shape` (batch 1) and `dtype`;
    JobRefused saying what is wrong otherwise."""
    expected = f"{dtype} of shape [N, {', '.join(str(d) for d in shape[1:])}]"
    if not isinstance(tiles, np.ndarray):
        raise JobRefused(f"{what} is a {type(tiles).__name__}, not one array: expected {expected}")
    if tiles.dtype != np.dtype(dtype):
        raise JobRefused(f"{what} has dtype {tiles.dtype}; the model takes {expected}")
    if tiles.ndim != len(shape) or tiles.shape[1:] != shape[1:]:
        raise JobRefused(
            f"{what} has shape {list(tiles.shape)}; the model takes {expected} "
            "(N tiles, each run as its own inference)"
        )
    if tiles.shape[0] < 1:
        raise JobRefused(f"{what} holds no tiles")
    return int(tiles.shape[0])


def inspect_input(path: Path, shape: tuple[int, ...], dtype: str, name: str) -> int:
    """The number of tiles in the .npy file `path`, checked against the model input."""
    try:
        tiles = open_tiles(path)
    except FileNotFoundError:
        raise JobRefused(f"no input file {name!r}: upload it first") from None
    except (OSError, ValueError, EOFError) as error:
        # allow_pickle=False makes an object array or a pickle a ValueError, never code run.
        raise JobRefused(f"input {name!r} is not a readable .npy array: {error}") from None
    try:
        return check_tiles(tiles, shape, dtype, f"input {name!r}")
    finally:
        del tiles  # close the map


def take_input(source: Path, destination: Path) -> None:
    """Make `destination` the job's own copy of `source`: a hard link where the file system
    allows it (uploads are replaced by rename, never rewritten in place), else a durable copy."""
    try:
        os.link(source, destination)
    except FileExistsError:
        # A crash between an earlier link and its database row: the id was never used.
        destination.unlink()
        os.link(source, destination)
    except OSError as error:
        if error.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise StoreError(f"cannot take input {source}: {os.strerror(error.errno)}") from None
        atomic_write(destination, source.read_bytes())
        return
    fsync_directory(destination.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PayloadFiles:
    """Where the payload keeps its files under `root` (`<state_dir>/payload`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.models = self.root / "models"
        self.inputs = self.root / "inputs"
        self.work = self.root / "work"
        self.results = self.root / "results"
        for directory in (self.root, self.models, self.inputs, self.work, self.results):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(
                    f"cannot create the payload directory {directory}: {error.strerror}"
                ) from None

    @property
    def database(self) -> Path:
        return self.root / "jobs.sqlite"

    def model(self, sha256: str) -> Path:
        return self.models / f"{sha256}.onnx"

    def input(self, job_id: int) -> Path:
        return self.inputs / f"{job_id}.npy"

    def job_work(self, job_id: int) -> Path:
        return self.work / str(job_id)

    def batch(self, job_id: int, batch: int) -> Path:
        return self.job_work(job_id) / f"{batch}.npy"

    def result(self, job_id: int) -> Path:
        return self.results / f"{job_id}.npy"

    def release(self, job: Job) -> None:
        """Delete what a final job no longer needs: its checkpoints, its input and, unless it is
        DONE, any result file."""
        shutil.rmtree(self.job_work(job.job_id), ignore_errors=True)
        with suppress(FileNotFoundError):
            self.input(job.job_id).unlink()
        if job.state is not JobState.DONE:
            with suppress(FileNotFoundError):
                self.result(job.job_id).unlink()

    def sweep(self, jobs: dict[int, Job]) -> int:
        """Remove temporaries and every file no active job (or DONE result) needs; how many."""
        removed = 0

        def remove(path: Path) -> None:
            nonlocal removed
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with suppress(FileNotFoundError):
                    path.unlink()
            removed += 1

        def job_of(path: Path) -> Job | None:
            stem = path.name.split(".")[0]
            return jobs.get(int(stem)) if stem.isdigit() else None

        for directory in (self.models, self.inputs, self.results, self.work):
            for path in list(directory.iterdir()):
                if path.name.startswith(".") and path.name.endswith(_TEMPORARY_SUFFIX):
                    remove(path)
        for path in list(self.inputs.iterdir()):
            job = job_of(path)
            if job is None or job.state.final:
                remove(path)
        for path in list(self.results.iterdir()):
            job = job_of(path)
            if job is None or job.state is not JobState.DONE:
                remove(path)
        for path in list(self.work.iterdir()):
            job = job_of(path)
            if job is None or job.state.final or not path.is_dir():
                remove(path)
                continue
            for entry in list(path.iterdir()):
                batch = entry.name.split(".")[0]
                if not entry.name.endswith(".npy") or not batch.isdigit():
                    remove(entry)  # a temporary of a batch write cut short
                elif int(batch) >= job.batches_total:
                    remove(entry)
        return removed
