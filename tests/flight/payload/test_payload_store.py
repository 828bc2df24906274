"""The job database and the payload's files: guarded transitions, totals, refusals, the sweep."""

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from flight.payload.jobs import Job, JobState, JobStore, JobStoreError
from flight.payload.storage import PayloadFiles, read_npy, write_batch, write_npy


def a_job(job_id: int = 1, **changes: object) -> Job:
    fields: dict = {
        "job_id": job_id,
        "model_sha256": "ab" * 32,
        "input_name": "scene.npy",
        "priority": 3,
        "deadline_tai_s": 2e9,
        "value": 1.5,
        "energy_estimate_j": 40.0,
        "submitted_tai_s": 1.9e9,
        "tiles_total": 10,
        "batch_tiles": 4,
    }
    fields.update(changes)
    return Job(**fields)


def test_a_job_is_completed_and_counted_once(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = a_job()
    store.insert(job)
    assert store.set_state(job, JobState.RUNNING)
    assert store.complete(job, "cd" * 32, 12.5)
    assert not store.complete(job, "cd" * 32, 12.5)  # a second time changes nothing
    assert not store.set_state(job, JobState.PAUSED)  # nor does anything else, once final
    assert store.completions(job.job_id) == 1
    store.close()
    (loaded,) = JobStore(tmp_path / "jobs.sqlite").load()
    assert loaded.state is JobState.DONE
    assert loaded.energy_used_j == 12.5
    assert loaded.result_sha256 == "cd" * 32
    assert loaded.completions == 1


def test_a_checkpoint_is_recorded_once_and_in_order(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    job = a_job()
    store.insert(job)
    assert store.checkpoint(job, 0, 4, 2.0)
    assert not store.checkpoint(job, 0, 4, 2.0)  # the same batch again: already recorded
    assert not store.checkpoint(job, 2, 2, 1.0)  # not the next one
    assert store.checkpoint(job, 1, 4, 2.0)
    assert store.totals() == {"tiles": 8, "energy_j": 4.0}
    (loaded,) = store.load()
    assert (loaded.batches_done, loaded.tiles_checkpointed, loaded.batches_total) == (2, 8, 3)
    assert list(loaded.batch_range(2)) == [8, 9]


def test_a_database_that_is_not_one_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    path.write_bytes(b"this is not a database at all, just text" * 100)
    with pytest.raises(JobStoreError, match="move the file aside"):
        JobStore(path)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 7")
    with pytest.raises(JobStoreError, match="job schema 7"):
        JobStore(path)


def test_the_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_the_sweep_leaves_only_what_active_jobs_and_results_need(tmp_path: Path) -> None:
    files = PayloadFiles(tmp_path / "payload")
    running = a_job(1, state=JobState.RUNNING, batches_done=1)
    done = a_job(2, state=JobState.DONE)
    failed = a_job(3, state=JobState.FAILED)
    jobs = {job.job_id: job for job in (running, done, failed)}
    tiles = np.zeros((10, 2), np.float32)
    for job_id in (1, 2, 3, 4):  # 4: an id burnt by a crash before its row
        write_npy(files.input(job_id), tiles)
        write_batch(files.batch(job_id, 0), tiles[:4])
        write_npy(files.result(job_id), tiles)
    write_batch(files.batch(1, 1), tiles[4:8])  # written, not recorded: rewritten on resume
    write_batch(files.batch(1, 3), tiles[:1])  # beyond the job: cannot be its
    (files.job_work(1) / ".2.npy.x1y2.tmp").write_bytes(b"torn")
    (files.results / ".1.npy.abcd.tmp").write_bytes(b"torn")
    (files.models / ".ff.onnx.abcd.tmp").write_bytes(b"torn")
    files.sweep(jobs)
    remaining = sorted(str(p.relative_to(files.root)) for p in files.root.rglob("*") if p.is_file())
    assert remaining == ["inputs/1.npy", "results/2.npy", "work/1/0.npy", "work/1/1.npy"]
    assert np.array_equal(read_npy(files.batch(1, 0)), tiles[:4])


def test_release_frees_a_final_job(tmp_path: Path) -> None:
    files = PayloadFiles(tmp_path / "payload")
    tiles = np.ones((4, 2), np.float32)
    for state in (JobState.DONE, JobState.CANCELLED):
        job = a_job(int(state), state=state)
        write_npy(files.input(job.job_id), tiles)
        write_batch(files.batch(job.job_id, 0), tiles)
        write_npy(files.result(job.job_id), tiles)
        files.release(job)
        assert not files.input(job.job_id).exists()
        assert not files.job_work(job.job_id).exists()
        assert files.result(job.job_id).exists() is (state is JobState.DONE)
