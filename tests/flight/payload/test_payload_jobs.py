"""flight.payload in a real node in virtual time: jobs run, refuse, pause, shed, expire, account."""

import asyncio
from pathlib import Path

import numpy as np
import pytest
from payloadkit import (
    add_unet,
    deadline_in,
    make_tiles,
    payload_node,
    reference,
    sha256,
    unet_bytes,
    upload,
    virtual,
    wait_until,
)

from flight.payload import JobRefused, JobState, ModelRefused, Payload, PayloadPlan
from flight.payload import storage as payload_storage
from flight.runtime.clock import MissionClock
from flight.runtime.config import NodeConfig, PayloadSection
from flight.runtime.store import StoreError
from hil.models import one_op_model

PACED = PayloadSection(
    max_workers=4, batch_tiles=4, idle_power_w=3.0, busy_power_w=15.0, simulated_tile_time_s=1.0
)


def job_kwargs(node, *, priority: int = 1, deadline_s: float = 10_000.0) -> dict:
    return {
        "priority": priority,
        "deadline_tai_s": deadline_in(node, deadline_s),
        "value": 1.0,
        "energy_estimate_j": 10.0,
    }


def state_of(payload, job_id: int) -> JobState:
    return next(view.state for view in payload.jobs() if view.job_id == job_id)


def test_a_job_runs_every_tile_and_matches_the_numpy_reference(tmp_path: Path) -> None:
    tiles = make_tiles(10)

    async def scenario() -> None:
        async with payload_node(tmp_path, PayloadSection(batch_tiles=3)) as (node, payload, rec):
            model, digest = await add_unet(node, payload)
            upload(node, "scene.npy", tiles)
            job_id = payload.submit_job(digest, "scene.npy", **job_kwargs(node))
            await wait_until(lambda: state_of(payload, job_id) is JobState.DONE)
            result = np.load(payload.result_path(job_id), allow_pickle=False)
            assert result.shape == (10, 1, 16, 16)
            np.testing.assert_allclose(result, reference(model, tiles, backend="numpy"), atol=1e-5)
            assert np.array_equal(result, reference(model, tiles))  # the same core, bit for bit
            (done,) = rec.named("JOB_DONE")
            assert done["job_id"] == job_id and done["tiles"] == 10
            assert payload.telemetry.JOBS_DONE == 1 and payload.telemetry.TILES_DONE == 10
            assert payload.store.completions(job_id) == 1
            # What a DONE job no longer needs is gone; its result stays.
            assert not payload.paths.job_work(job_id).exists()
            assert not payload.paths.input(job_id).exists()
            view = payload.jobs()[0]
            assert (view.tiles_done, view.tiles_total) == (10, 10)

    virtual(scenario())


def test_models_are_refused_with_a_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with payload_node(tmp_path) as (node, payload, rec):
            good = unet_bytes()
            path = upload(node, "unet.onnx", good)
            wrong = "0" * 64
            with pytest.raises(ModelRefused, match="hash mismatch"):
                await payload.add_model(path, wrong)
            corrupt = upload(node, "corrupt.onnx", good[: len(good) // 2])
            with pytest.raises(ModelRefused, match="not an ONNX model"):
                await payload.add_model(corrupt, sha256(good[: len(good) // 2]))
            two = one_op_model("Add", [("a", (1, 2)), ("b", (1, 2))])
            two_path = upload(node, "add.onnx", two.SerializeToString())
            with pytest.raises(ModelRefused, match="one input and one output"):
                await payload.add_model(two_path, sha256(two.SerializeToString()))
            with pytest.raises(ModelRefused, match="not a sha256"):
                await payload.add_model(path, "abc")
            assert [e["file_name"] for e in rec.named("MODEL_REFUSED")] == [
                "unet.onnx",
                "corrupt.onnx",
                "add.onnx",
                "unet.onnx",
            ]
            assert payload.models.known() == []
            assert payload.telemetry.MODELS == 0
            await payload.add_model(path, sha256(good))
            assert payload.models.known() == [sha256(good)]
            assert payload.telemetry.MODELS == 1

    virtual(scenario())


def test_inputs_and_submissions_are_refused_with_a_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with payload_node(tmp_path) as (node, payload, rec):
            _, digest = await add_unet(node, payload)
            upload(node, "f64.npy", make_tiles(2).astype(np.float64))
            upload(node, "shape.npy", make_tiles(2)[:, :3])
            upload(node, "empty.npy", make_tiles(2)[:0])
            upload(node, "garbage.npy", b"not an array at all")
            objects = node.files.path("objects.npy")
            np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
            upload(node, "good.npy", make_tiles(2))
            cases = [
                ((digest, "f64.npy"), {}, "dtype float64"),
                ((digest, "shape.npy"), {}, "shape [2, 3, 16, 16]"),
                ((digest, "empty.npy"), {}, "no tiles"),
                ((digest, "garbage.npy"), {}, "not a readable .npy"),
                ((digest, "objects.npy"), {}, "not a readable .npy"),
                ((digest, "missing.npy"), {}, "no input file"),
                ((digest, "../etc/passwd"), {}, "file '../etc/passwd'"),
                (("f" * 64, "good.npy"), {}, "unknown model"),
                ((digest, "good.npy"), {"deadline_s": -1.0}, "has passed"),
            ]
            for (model, name), extra, words in cases:
                with pytest.raises(JobRefused, match=words.replace("[", r"\[").replace(".", r"\.")):
                    payload.submit_job(model, name, **job_kwargs(node, **extra))
            with pytest.raises(JobRefused, match="value"):
                payload.submit_job(
                    digest,
                    "good.npy",
                    priority=1,
                    deadline_tai_s=deadline_in(node, 100),
                    value=float("nan"),
                    energy_estimate_j=1.0,
                )
            assert len(rec.named("JOB_REFUSED")) == len(cases) + 1
            assert payload.jobs() == []
            assert list(payload.paths.inputs.iterdir()) == []
            # A good one after all that gets the next id, and runs.
            job_id = payload.submit_job(digest, "good.npy", **job_kwargs(node))
            assert job_id == 1
            await wait_until(lambda: state_of(payload, job_id) is JobState.DONE)

    virtual(scenario())


def test_cancel_stops_a_running_job_and_frees_its_files(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, rec):
            _, digest = await add_unet(node, payload)
            upload(node, "scene.npy", make_tiles(20))
            running = payload.submit_job(digest, "scene.npy", **job_kwargs(node))
            await asyncio.sleep(6.5)  # one batch of 4 kept, the second under way
            assert state_of(payload, running) is JobState.RUNNING
            assert payload.busy_workers == 1
            payload.cancel(running)
            assert payload.busy_workers == 0
            assert state_of(payload, running) is JobState.CANCELLED
            assert rec.named("JOB_CANCELLED") == [{"job_id": running, "tiles_done": 4}]
            assert not payload.paths.job_work(running).exists()
            assert not payload.paths.input(running).exists()
            with pytest.raises(Exception, match="already CANCELLED"):
                payload.cancel(running)
            await asyncio.sleep(30)
            assert state_of(payload, running) is JobState.CANCELLED
            assert payload.telemetry.JOBS_CANCELLED == 1

    virtual(scenario())


def test_a_job_whose_deadline_passes_expires(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, rec):
            _, digest = await add_unet(node, payload)
            upload(node, "scene.npy", make_tiles(20))
            late = payload.submit_job(digest, "scene.npy", **job_kwargs(node, deadline_s=9.0))
            on_time = payload.submit_job(digest, "scene.npy", **job_kwargs(node, deadline_s=60.0))
            await wait_until(lambda: state_of(payload, on_time) is JobState.DONE)
            assert state_of(payload, late) is JobState.EXPIRED
            (expired,) = rec.named("JOB_EXPIRED")
            assert expired["job_id"] == late and expired["tiles_done"] == 8
            assert payload.telemetry.JOBS_EXPIRED == 1
            assert not payload.paths.job_work(late).exists()
            assert not payload.paths.result(late).exists()

    virtual(scenario())


def test_without_a_plan_max_workers_run_in_priority_order(tmp_path: Path) -> None:
    config = PayloadSection(max_workers=2, batch_tiles=4, simulated_tile_time_s=1.0)
    files = tmp_path / "uploads"
    files.mkdir()
    model = unet_bytes()
    (files / "unet.onnx").write_bytes(model)
    np.save(files / "scene.npy", make_tiles(4))
    epoch_tai_s = NodeConfig().time.epoch_tai_s

    async def scenario() -> None:
        # Jobs queued before the payload runs (as after a reboot): it starts them by itself.
        payload = Payload(
            config, state_dir=tmp_path, files_dir=files, clock=MissionClock(epoch_tai_s, 0.0)
        )
        digest = sha256(model)
        await payload.add_model(files / "unet.onnx", digest)

        def submit(priority: int, deadline_s: float = 10_000.0) -> int:
            return payload.submit_job(
                digest,
                "scene.npy",
                priority=priority,
                deadline_tai_s=epoch_tai_s + deadline_s,
                value=1.0,
                energy_estimate_j=1.0,
            )

        low, mid, high, soon = submit(1), submit(5), submit(9), submit(5, 500.0)
        async with payload_node(tmp_path, payload=payload) as (_node, _, rec):
            await asyncio.sleep(0.5)
            assert payload.busy_workers == 2
            assert {low, mid, soon, high} == {v.job_id for v in payload.jobs()}
            await wait_until(lambda: all(v.state is JobState.DONE for v in payload.jobs()))
            started = [e["job_id"] for e in rec.named("JOB_STARTED")]
            assert started == [high, soon, mid, low]  # priority, then the earlier deadline

    virtual(scenario())


def test_the_plan_decides_which_jobs_start_and_how_many(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, _rec):
            payload.apply(PayloadPlan(0, (), "eclipse"))
            _, digest = await add_unet(node, payload)
            upload(node, "scene.npy", make_tiles(8))
            a, b, c = (payload.submit_job(digest, "scene.npy", **job_kwargs(node)) for _ in "abc")
            await asyncio.sleep(5)
            assert payload.busy_workers == 0 and payload.telemetry.PLAN_WORKERS == 0
            payload.apply(PayloadPlan(1, (c, a), "sunlit"))
            assert payload.busy_workers == 1 and state_of(payload, c) is JobState.RUNNING
            await wait_until(lambda: state_of(payload, c) is JobState.DONE)
            await asyncio.sleep(0.1)
            assert state_of(payload, a) is JobState.RUNNING  # next in the order
            assert state_of(payload, b) is JobState.QUEUED  # never allowed
            await wait_until(lambda: state_of(payload, a) is JobState.DONE)
            await asyncio.sleep(20)
            assert state_of(payload, b) is JobState.QUEUED

    virtual(scenario())


def test_pausing_by_plan_and_resuming_gives_the_same_result(tmp_path: Path) -> None:
    tiles = make_tiles(14)

    async def scenario() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, rec):
            model, digest = await add_unet(node, payload)
            upload(node, "scene.npy", tiles)
            payload.apply(PayloadPlan(0, (), "wait"))
            paused = payload.submit_job(digest, "scene.npy", **job_kwargs(node))
            payload.apply(PayloadPlan(1, (paused,), "sunlit"))
            await asyncio.sleep(6.5)  # batch 0 kept (4 tiles), 2 tiles of batch 1 done
            payload.apply(PayloadPlan(0, (), "eclipse coming"))
            assert payload.busy_workers == 1  # it stops at the tile boundary, not mid-tile
            await asyncio.sleep(1.0)
            assert payload.busy_workers == 0
            assert state_of(payload, paused) is JobState.PAUSED
            assert rec.named("JOB_PAUSED") == [
                {"job_id": paused, "tiles_done": 4, "reason": "eclipse coming"}
            ]
            await asyncio.sleep(100)
            assert state_of(payload, paused) is JobState.PAUSED
            payload.apply(PayloadPlan(2, (paused,), "sunlit again"))
            await wait_until(lambda: state_of(payload, paused) is JobState.DONE)
            starts = rec.named("JOB_STARTED")
            assert [s["tiles_done"] for s in starts] == [0, 4]  # resumed from the checkpoint
            result = np.load(payload.result_path(paused))
            assert np.array_equal(result, reference(model, tiles))
            assert payload.telemetry.TILES_DONE == 14  # the discarded tiles are not counted

    virtual(scenario())


def test_shed_drops_busy_workers_to_zero_at_once(tmp_path: Path) -> None:
    tiles = make_tiles(12)

    async def scenario() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, rec):
            model, digest = await add_unet(node, payload)
            upload(node, "scene.npy", tiles)
            jobs = [payload.submit_job(digest, "scene.npy", **job_kwargs(node)) for _ in range(3)]
            await asyncio.sleep(5.5)
            assert payload.busy_workers == 3
            assert payload.modelled_power_w() == pytest.approx(3.0 + 12.0 * 3 / 4)
            payload.shed("under-voltage 6.4 V")
            assert payload.busy_workers == 0
            assert payload.modelled_power_w() == 3.0
            assert payload.telemetry.PLAN_WORKERS == 0
            assert all(state_of(payload, j) is JobState.PAUSED for j in jobs)
            payload.shed("under-voltage 6.3 V")  # again, as a governor would at its next tick
            assert rec.named("PAYLOAD_SHED") == [{"jobs": 3, "reason": "under-voltage 6.4 V"}]
            await asyncio.sleep(60)  # nothing restarts by itself
            assert payload.busy_workers == 0
            assert payload.telemetry.PAYLOAD_POWER_W == 3.0
            payload.apply(PayloadPlan(4, tuple(jobs), "recovered"))
            await wait_until(lambda: all(state_of(payload, j) is JobState.DONE for j in jobs))
            expected = reference(model, tiles)
            for job_id in jobs:
                assert np.array_equal(np.load(payload.result_path(job_id)), expected)
                assert payload.store.completions(job_id) == 1

    virtual(scenario())


def test_energy_is_modelled_power_times_time_split_among_busy_workers(tmp_path: Path) -> None:
    config = PayloadSection(
        max_workers=4, batch_tiles=4, idle_power_w=3.0, busy_power_w=15.0, simulated_tile_time_s=2.0
    )

    async def scenario() -> None:
        async with payload_node(tmp_path, config) as (node, payload, _rec):
            _, digest = await add_unet(node, payload)
            upload(node, "scene.npy", make_tiles(8))
            alone = payload.submit_job(digest, "scene.npy", **job_kwargs(node))
            await wait_until(lambda: state_of(payload, alone) is JobState.DONE)
            # One worker of four busy: 3 + 12 / 4 = 6 W, for 8 tiles x 2 s.
            energy = {v.job_id: v.energy_used_j for v in payload.jobs()}
            assert energy[alone] == pytest.approx(6.0 * 16.0)
            assert pytest.approx(96.0) == payload.telemetry.LAST_JOB_ENERGY_J
            payload.apply(PayloadPlan(0, (), "gather"))
            pair = [payload.submit_job(digest, "scene.npy", **job_kwargs(node)) for _ in "ab"]
            payload.apply(PayloadPlan(2, tuple(pair), "go"))
            await wait_until(lambda: all(state_of(payload, j) is JobState.DONE for j in pair))
            # Two busy: 3 + 12 / 2 = 9 W, half each, for 16 s.
            energy = {v.job_id: v.energy_used_j for v in payload.jobs()}
            assert [energy[j] for j in pair] == pytest.approx([72.0, 72.0])
            assert pytest.approx(96.0 + 144.0) == payload.telemetry.ENERGY_J
            assert pytest.approx(240.0 / 24) == payload.telemetry.ENERGY_PER_TILE_J
            assert payload.telemetry.POWER_MEASURED is False

    virtual(scenario())


def test_measured_payload_power_is_used_where_there_is_a_sensor(tmp_path: Path) -> None:
    reading = {"power_w": 10.0}

    async def scenario() -> None:
        async with payload_node(tmp_path, PACED, power_w=lambda: reading["power_w"]) as (
            node,
            payload,
            _rec,
        ):
            _, digest = await add_unet(node, payload)
            upload(node, "scene.npy", make_tiles(8))
            job_id = payload.submit_job(digest, "scene.npy", **job_kwargs(node))
            await asyncio.sleep(4.0)
            reading["power_w"] = 20.0  # seen at the next 10 Hz tick
            await wait_until(lambda: state_of(payload, job_id) is JobState.DONE)
            (view,) = payload.jobs()
            assert view.energy_used_j == pytest.approx(10.0 * 4 + 20.0 * 4, abs=0.5 * 10)
            assert payload.telemetry.POWER_MEASURED is True
            assert payload.power_w() == 20.0

    virtual(scenario())


def test_a_restart_resumes_jobs_from_their_last_checkpoint(tmp_path: Path) -> None:
    tiles = make_tiles(12)
    ids: list[int] = []

    async def first_life() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, _rec):
            _, digest = await add_unet(node, payload)
            upload(node, "scene.npy", tiles)
            ids.append(payload.submit_job(digest, "scene.npy", **job_kwargs(node)))
            await asyncio.sleep(9.5)  # batches 0 and 1 kept, batch 2 under way: lost

    async def second_life() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, rec):
            (view,) = payload.jobs()
            assert view.job_id == ids[0]
            assert view.tiles_done == 8
            await wait_until(lambda: state_of(payload, ids[0]) is JobState.DONE)
            assert rec.named("JOB_STARTED") == [
                {"job_id": ids[0], "tiles_done": 8, "tiles_total": 12}
            ]
            model, digest = await add_unet(node, payload)  # already kept: the same hash
            assert np.array_equal(np.load(payload.result_path(ids[0])), reference(model, tiles))
            assert payload.store.completions(ids[0]) == 1
            assert payload.telemetry.TILES_DONE == 12
            upload(node, "scene.npy", tiles)
            ids.append(payload.submit_job(digest, "scene.npy", **job_kwargs(node)))
            assert ids[1] > ids[0]  # job ids never repeat across a restart

    virtual(first_life())
    virtual(second_life())


def test_a_full_disk_while_checkpointing_pauses_the_job_and_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiles = make_tiles(12)
    write_batch = payload_storage.write_batch
    failures = {"left": 2}

    def full_disk(path: Path, array: np.ndarray) -> str:
        if failures["left"] and path.name == "1.npy":
            failures["left"] -= 1
            raise StoreError(f"cannot write {path}: No space left on device; free space")
        return write_batch(path, array)

    monkeypatch.setattr(payload_storage, "write_batch", full_disk)

    async def scenario() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, rec):
            model, digest = await add_unet(node, payload)
            upload(node, "scene.npy", tiles)
            job_id = payload.submit_job(digest, "scene.npy", **job_kwargs(node))
            await asyncio.sleep(8.5)
            assert state_of(payload, job_id) is JobState.PAUSED
            assert payload.busy_workers == 0
            (failed,) = rec.named("CHECKPOINT_FAILED")
            assert "No space left" in failed["reason"] and failed["job_id"] == job_id
            await wait_until(lambda: state_of(payload, job_id) is JobState.DONE)
            assert payload.telemetry.CHECKPOINT_FAILURES == 2
            assert [s["tiles_done"] for s in rec.named("JOB_STARTED")] == [0, 4, 4]
            assert np.array_equal(np.load(payload.result_path(job_id)), reference(model, tiles))
            assert payload.telemetry.TILES_DONE == 12  # nothing counted twice
            assert payload.store.completions(job_id) == 1

    virtual(scenario())


def test_an_inference_error_fails_the_job_and_the_payload_goes_on(tmp_path: Path) -> None:
    ids: dict[str, int] = {}

    async def first_life() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, _rec):
            payload.apply(PayloadPlan(0, (), "hold"))
            _, digest = await add_unet(node, payload)
            _, other = await add_unet(node, payload, seed=1)
            upload(node, "scene.npy", make_tiles(4))
            ids["rotten"] = payload.submit_job(digest, "scene.npy", **job_kwargs(node))
            ids["bad_input"] = payload.submit_job(other, "scene.npy", **job_kwargs(node))
            ids["good"] = payload.submit_job(other, "scene.npy", **job_kwargs(node))
            # Bit rot in a kept model, and an input that no longer fits its model.
            payload.paths.model(digest).write_bytes(b"\x00" * 100)
            # (Replaced, as every writer here replaces files: inputs may share an inode.)
            payload_storage.write_npy(payload.paths.input(ids["bad_input"]), make_tiles(4)[:, :2])

    async def second_life() -> None:
        async with payload_node(tmp_path, PACED) as (_node, payload, rec):
            await wait_until(lambda: all(v.state.final for v in payload.jobs()))
            assert state_of(payload, ids["rotten"]) is JobState.FAILED
            assert state_of(payload, ids["bad_input"]) is JobState.FAILED
            assert state_of(payload, ids["good"]) is JobState.DONE
            reasons = {e["job_id"]: e["reason"] for e in rec.named("JOB_FAILED")}
            assert "corrupt on board" in reasons[ids["rotten"]]
            assert "shape [4, 2, 16, 16]" in reasons[ids["bad_input"]]
            assert payload.telemetry.JOBS_FAILED == 2

    virtual(first_life())
    virtual(second_life())


def test_tile_time_is_measured(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with payload_node(tmp_path, PACED) as (node, payload, _rec):
            _, digest = await add_unet(node, payload)
            assert payload.tile_time_s(digest) == 1.0  # the configured simulated time, unmeasured
            upload(node, "scene.npy", make_tiles(4))
            job_id = payload.submit_job(digest, "scene.npy", **job_kwargs(node))
            await wait_until(lambda: state_of(payload, job_id) is JobState.DONE)
            assert payload.tile_time_s(payload.jobs()[0]) == pytest.approx(1.0)

    virtual(scenario())


def test_tiles_in_memory_are_a_job_too(tmp_path: Path) -> None:
    tiles = make_tiles(5)

    async def scenario() -> None:
        async with payload_node(tmp_path) as (node, payload, _rec):
            model, digest = await add_unet(node, payload)
            job_id = payload.submit_tiles(digest, tiles, **job_kwargs(node))
            await wait_until(lambda: state_of(payload, job_id) is JobState.DONE)
            assert np.array_equal(np.load(payload.result_path(job_id)), reference(model, tiles))
            with pytest.raises(JobRefused, match="dtype int32"):
                payload.submit_tiles(digest, tiles.astype(np.int32), **job_kwargs(node))

    virtual(scenario())
