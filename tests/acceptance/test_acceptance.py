"""The acceptance suite: the same tests against every target (`--target sil | pty | serial:... |
mqtt://...`, or `penumbra bench run`). Each states what it needs from the bench; a target that
cannot (an in-process node cannot lose power) skips it with the reason."""

import asyncio
import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest

from flight.inference import load
from hil.faults import FaultModel
from hil.models import cloud_mask_unet
from hil.testapi import equal_to, greater_than
from hil.testapi.attacks import forged_command_frame

NOOPS = 100
TILE = 16


async def test_boots_to_nominal(bench) -> None:
    mode = await bench.api.await_telemetry("mode.MODE", equal_to("NOMINAL"))
    assert mode.value == "NOMINAL"


async def test_ping(bench) -> None:
    round_trip_s = await bench.api.station.ping(timeout_s=bench.timeout_s)
    assert round_trip_s > 0


async def test_housekeeping_streams_at_the_commanded_rate(bench) -> None:
    api = bench.api
    await api.station.set_housekeeping_interval("health", 2.0, timeout_s=bench.timeout_s)
    start = api.mark()
    samples = []
    while len(samples) < 6:
        sample = await api.await_telemetry("health.CPU_PERCENT", start=start)
        samples.append(sample.time.seconds)
        start = api.mark()
    gaps = [b - a for a, b in itertools.pairwise(samples[1:])]
    # Every 2 s, or a multiple where a frame was lost; on a real-time loop to a few ms.
    assert all(gap > 1.0 and abs(gap - 2.0 * round(gap / 2.0)) < 0.05 for gap in gaps), gaps
    await api.station.set_housekeeping_interval("health", 1.0, timeout_s=bench.timeout_s)


async def test_commands_are_verified_good_and_bad(bench) -> None:
    api = bench.api
    reports = await api.send_and_assert_command("health.NOOP")
    assert [r.stage.name for r in reports][-1] == "COMPLETION"
    request = await api.send_command("mode.SET_MODE", mode="SAFE")
    await api.await_verification(request, "completion")
    request = await api.send_command("payload.CANCEL", job_id=999_999)
    report = await api.await_verification(request, "completion")
    assert not report.success
    assert "999999" in report.failure_text
    await api.send_and_assert_command("mode.SET_MODE", mode="NOMINAL")


@pytest.mark.needs("power_cut")
async def test_a_saved_parameter_survives_a_power_cut(bench) -> None:
    api = bench.api
    await api.station.set_parameters({"health.PING_PERIOD_MS": 700}, timeout_s=bench.timeout_s)
    await api.station.save_parameters(timeout_s=bench.timeout_s)
    await bench.power_cycle()
    values = await api.station.get_parameters("health.PING_PERIOD_MS", timeout_s=bench.timeout_s)
    assert values["health.PING_PERIOD_MS"] == 700
    await api.station.set_parameters({"health.PING_PERIOD_MS": 1000}, timeout_s=bench.timeout_s)
    await api.station.save_parameters(timeout_s=bench.timeout_s)


async def test_a_hundred_noops_arrive_once_and_in_order(bench) -> None:
    api = bench.api
    before = (await api.await_telemetry("health.COMMANDS_ACCEPTED")).value
    for _ in range(NOOPS):
        await api.send_and_assert_command("health.NOOP")
    await api.await_telemetry("health.COMMANDS_ACCEPTED", equal_to(before + NOOPS))


async def test_forged_and_replayed_commands_are_rejected(bench) -> None:
    api = bench.api
    start = api.mark()
    forged, request = forged_command_frame(
        api.dictionary, "mode.SET_MODE", {"mode": "SAFE"}, sequence_count=12_345
    )
    await bench.line.send_raw(forged)
    refusal = await api.await_verification(request, "acceptance", start=start)
    assert not refusal.success and refusal.failure_name == "AUTHENTICATION_FAILED"
    await api.await_event("uplink.AUTHENTICATION_FAILED", start=start)
    await api.send_and_assert_command("health.NOOP")
    captured = bench.line.last_sent_frame()  # a genuine TC frame, accepted and executed
    accepted = (await api.await_telemetry("health.COMMANDS_ACCEPTED", start=api.mark())).value
    await bench.line.send_raw(captured)
    await api.await_event("uplink.REPLAYED", start=start)
    await asyncio.sleep(2.0)  # housekeeping after the replay: nothing more was executed
    after = await api.await_telemetry("health.COMMANDS_ACCEPTED", start=api.mark())
    assert after.value == accepted
    await api.await_telemetry("mode.MODE", equal_to("NOMINAL"))


def _model_and_tiles(tmp_path: Path, tiles: int) -> tuple[Path, Path, str]:
    model = cloud_mask_unet(input_size=TILE, in_channels=1, base_channels=4, depth=1)
    model_path = tmp_path / "cloud_mask.onnx"
    model_path.write_bytes(model.SerializeToString())
    tiles_path = tmp_path / "scene.npy"
    rng = np.random.default_rng(7)
    np.save(tiles_path, rng.standard_normal((tiles, 1, TILE, TILE)).astype(np.float32))
    return model_path, tiles_path, hashlib.sha256(model_path.read_bytes()).hexdigest()


def _reference(model_path: Path, tiles_path: Path) -> np.ndarray:
    tiles = np.load(tiles_path)
    with load(model_path, backend="numpy") as session:
        return np.concatenate(
            [session.run({"bands": tiles[i : i + 1]})["mask"] for i in range(len(tiles))]
        )


async def _submit(bench, tmp_path: Path, tiles: int) -> tuple[int, Path, Path]:
    api = bench.api
    model_path, tiles_path, digest = _model_and_tiles(tmp_path, tiles)
    for path in (model_path, tiles_path):
        start = api.mark()
        await api.station.put_file(path, path.name)
        await api.await_event("files.FILE_RECEIVED", args={"name": path.name}, start=start)
    await api.send_and_assert_command("payload.ADD_MODEL", file_name=model_path.name, sha256=digest)
    now_tai = (await api.await_telemetry("time.TAI_S")).value
    start = api.mark()
    await api.send_and_assert_command(
        "payload.SUBMIT",
        model_sha256=digest,
        input_name=tiles_path.name,
        priority=5,
        deadline_tai_s=now_tai + 6 * 3600.0,
        value=1.0,
        energy_estimate_j=100.0,
    )
    accepted = await api.await_event("payload.JOB_ACCEPTED", start=start)
    return accepted.args["job_id"], model_path, tiles_path


async def _verify_result(bench, job_id: int, model_path: Path, tiles_path: Path) -> None:
    api = bench.api
    start = api.station.mark_files()
    await api.send_and_assert_command("payload.GET_RESULT", job_id=job_id)
    delivery = await api.station.await_file(
        f"job_{job_id}.npy", start=start, timeout_s=bench.timeout_s
    )
    assert delivery.success, delivery
    result = np.load(delivery.path, allow_pickle=False)
    np.testing.assert_allclose(result, _reference(model_path, tiles_path), rtol=1e-4, atol=1e-5)


async def test_a_job_is_executed_and_its_result_downlinked_and_verified(bench, tmp_path) -> None:
    job_id, model_path, tiles_path = await _submit(bench, tmp_path, tiles=6)
    await bench.api.await_event("payload.JOB_DONE", args={"job_id": job_id}, start=0)
    await _verify_result(bench, job_id, model_path, tiles_path)


@pytest.mark.needs("simulated_eps")
async def test_a_power_emergency_sheds_the_payload_within_a_tick_and_sunlight_recovers(
    bench, tmp_path
) -> None:
    api = bench.api
    job_id, _, _ = await _submit(bench, tmp_path, tiles=400)
    await api.await_telemetry("payload.BUSY_WORKERS", greater_than(0))
    start = api.mark()
    bench.environment.force_illumination(0.0)  # eclipse entry
    bench.environment.drive_to(0.02)  # the battery at the floor: under-voltage under load
    shed = await api.await_event("power.PAYLOAD_SHED", start=start)
    assert "under-voltage" in shed.args["reason"]
    ticks = await api.await_telemetry("power.LAST_SHED_TICKS", start=start)
    assert ticks.value == 0  # shed by the first 10 Hz cycle after the low reading arrived
    await api.await_telemetry("mode.MODE", equal_to("SAFE"), start=start)
    await api.await_telemetry("payload.BUSY_WORKERS", equal_to(0), start=start)
    bench.environment.force_illumination(1.0)  # sunlight
    bench.environment.drive_to(0.95)
    await api.await_telemetry("mode.MODE", equal_to("NOMINAL"), start=api.mark())
    await api.await_telemetry("payload.BUSY_WORKERS", greater_than(0), start=api.mark())
    bench.environment.force_illumination(None)
    await api.send_and_assert_command("payload.CANCEL", job_id=job_id)


@pytest.mark.needs("power_cut")
async def test_a_power_cut_mid_job_then_restart_completes_it_exactly_once(bench, tmp_path) -> None:
    api = bench.api
    job_id, model_path, tiles_path = await _submit(bench, tmp_path, tiles=24)
    await api.await_telemetry("payload.TILES_DONE", greater_than(0))
    await bench.power_cycle()
    done = await api.await_event("payload.JOB_DONE", args={"job_id": job_id}, start=0)
    assert done.args["tiles"] == 24
    await asyncio.sleep(2.0)  # a second completion would have been reported by now
    completions = [e.args["job_id"] for e in api.events("payload.JOB_DONE", start=0)]
    assert completions.count(job_id) == 1
    await _verify_result(bench, job_id, model_path, tiles_path)


@pytest.mark.needs("line_faults")
async def test_a_noisy_link_still_delivers_every_command_exactly_once(bench) -> None:
    api = bench.api
    before = (await api.await_telemetry("health.COMMANDS_ACCEPTED")).value
    noisy = FaultModel(loss=0.10, bit_error_rate=1e-5)
    bench.line.set_faults(uplink=noisy, downlink=noisy)
    try:
        # Delivered: each returns once FARM-1 has acknowledged it (the CLCWs cross the noisy
        # downlink too). Their reports may be lost on the way down (TM is not retransmitted);
        # the count onboard says whether each ran exactly once.
        for _ in range(30):
            await api.send_command("health.NOOP")
    finally:
        bench.line.set_faults(uplink=None, downlink=None)
    await api.await_telemetry("health.COMMANDS_ACCEPTED", equal_to(before + 30))
    assert bench.line.counters.injected > 0  # the faults really happened


@pytest.mark.needs("line_faults")
async def test_commands_sent_during_an_outage_arrive_once_when_it_ends(bench) -> None:
    api = bench.api
    before = (await api.await_telemetry("health.COMMANDS_ACCEPTED", start=api.mark())).value
    bench.line.outage(5.0)  # every frame lost both ways, the line still "up" at both ends
    for _ in range(3):
        await api.send_and_assert_command("health.NOOP")  # COP-1 retransmits after the outage
    assert not bench.line.in_outage
    await api.await_telemetry("health.COMMANDS_ACCEPTED", equal_to(before + 3), start=api.mark())
