"""The payload operated from a real GroundStation: models and inputs up by file transfer, jobs
submitted, listed and cancelled by command, results down by file transfer; in virtual time."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from payloadkit import make_tiles, reference, sha256, unet_bytes, virtual

from flight.link.memory import MemoryLink
from flight.payload import PAYLOAD_COMPONENT_ID, Payload
from flight.runtime.config import NodeConfig, PayloadSection
from flight.runtime.node import Node
from ground.dictionary import Dictionary
from ground.station import GroundStation
from hil.testapi import IntegrationApi, equal_to

KEY = bytes(range(32))


@contextlib.asynccontextmanager
async def operated(
    tmp_path: Path, config: PayloadSection
) -> AsyncIterator[tuple[Node, Payload, GroundStation, IntegrationApi]]:
    """A node hosting a payload, and a ground station and test API operating it."""
    flight_end, ground_end = MemoryLink.pair()
    payload = Payload(config, state_dir=tmp_path / "node")
    node = Node(
        NodeConfig().with_state_dir(tmp_path / "node"),
        link=flight_end,
        key=KEY,
        components=[(PAYLOAD_COMPONENT_ID, payload)],
    )
    dictionary = Dictionary.from_document(node.dictionary(), source="payload node")
    try:
        async with flight_end, ground_end, node:
            async with (
                GroundStation(
                    ground_end, dictionary, key=KEY, state_dir=tmp_path / "ground"
                ) as station,
                IntegrationApi(station, default_timeout_s=600.0) as api,
            ):
                yield node, payload, station, api
            node.request_stop()
    finally:
        payload.close()


async def refused(api: IntegrationApi, command: str, **arguments: object) -> str:
    """Send a command that must fail; the failure text the ground got."""
    request = await api.send_command(command, arguments)
    report = await api.await_verification(request, "completion")
    assert not report.success, f"{command} {arguments} succeeded"
    return report.failure_text


def test_a_job_from_upload_to_downlinked_result(tmp_path: Path) -> None:
    model = unet_bytes()
    tiles = make_tiles(6)
    (tmp_path / "unet.onnx").write_bytes(model)
    np.save(tmp_path / "scene.npy", tiles)

    async def scenario() -> None:
        config = PayloadSection(batch_tiles=4, simulated_tile_time_s=1.0)
        async with operated(tmp_path, config) as (node, _payload, station, api):
            await station.put_file(tmp_path / "unet.onnx")
            await api.await_event("files.FILE_RECEIVED", args={"name": "unet.onnx"}, start=0)
            # A wrong hash is refused with the file's own, and nothing is kept.
            text = await refused(api, "payload.ADD_MODEL", file_name="unet.onnx", sha256="a" * 64)
            assert "hash mismatch" in text
            await api.assert_event("payload.MODEL_REFUSED", args={"file_name": "unet.onnx"})
            digest = sha256(model)
            await api.send_and_assert_command(
                "payload.ADD_MODEL", file_name="unet.onnx", sha256=digest
            )
            await api.assert_event("payload.MODEL_ADDED", args={"model": digest[:16]})
            await station.put_file(tmp_path / "scene.npy")
            await api.await_event("files.FILE_RECEIVED", args={"name": "scene.npy"}, start=0)
            deadline = node.clock.now_tai_s() + 3600.0  # type: ignore[union-attr]
            submit = {
                "input_name": "scene.npy",
                "priority": 3,
                "deadline_tai_s": deadline,
                "value": 2.0,
                "energy_estimate_j": 30.0,
            }
            text = await refused(api, "payload.SUBMIT", model_sha256="b" * 64, **submit)
            assert "unknown model" in text
            await api.assert_event("payload.JOB_REFUSED")
            await api.send_and_assert_command("payload.SUBMIT", model_sha256=digest, **submit)
            accepted = await api.assert_event("payload.JOB_ACCEPTED")
            job_id = accepted.args["job_id"]
            assert accepted.args["tiles"] == 6
            done = await api.await_event("payload.JOB_DONE", args={"job_id": job_id}, start=0)
            assert done.args["tiles"] == 6
            await api.send_and_assert_command("payload.STATUS", job_id=job_id)
            status = await api.assert_event("payload.JOB_STATUS", args={"job_id": job_id})
            assert status.args["state"] == "DONE" and status.args["tiles_done"] == 6
            await api.await_telemetry("payload.JOBS_DONE", equal_to(1))
            # The result goes down by file transfer and is what the core computes.
            start = station.mark_files()
            await api.send_and_assert_command("payload.GET_RESULT", job_id=job_id)
            await api.assert_event("payload.RESULT_QUEUED", args={"job_id": job_id})
            delivery = await station.await_file(f"job_{job_id}.npy", start=start, timeout_s=600)
            assert delivery.success, delivery
            assert delivery.path is not None
            result = np.load(delivery.path, allow_pickle=False)
            assert np.array_equal(result, reference(model, tiles))
            assert sha256(delivery.path.read_bytes())[:16] == done.args["result"]

    virtual(scenario())


def test_list_cancel_and_refusals_by_command(tmp_path: Path) -> None:
    model = unet_bytes()

    async def scenario() -> None:
        config = PayloadSection(batch_tiles=4, simulated_tile_time_s=1.0, max_workers=1)
        async with operated(tmp_path, config) as (node, _payload, _station, api):
            digest = sha256(model)
            node.files.path("unet.onnx").write_bytes(model)
            np.save(node.files.path("scene.npy"), make_tiles(40))
            await api.send_and_assert_command(
                "payload.ADD_MODEL", file_name="unet.onnx", sha256=digest
            )
            deadline = node.clock.now_tai_s() + 3600.0  # type: ignore[union-attr]
            for priority in (1, 7, 4):
                await api.send_and_assert_command(
                    "payload.SUBMIT",
                    model_sha256=digest,
                    input_name="scene.npy",
                    priority=priority,
                    deadline_tai_s=deadline,
                    value=1.0,
                    energy_estimate_j=1.0,
                )
            await asyncio.sleep(2.0)
            mark = api.mark()
            await api.send_and_assert_command("payload.LIST")
            listing = await api.assert_event("payload.JOB_LIST", start=mark)
            assert listing.args == {"active": 3, "final": 0, "shown": 3}
            await api.await_event_sequence(
                [
                    ("payload.JOB_STATUS", {"job_id": 1, "state": "RUNNING"}),  # came first
                    ("payload.JOB_STATUS", {"job_id": 2, "state": "QUEUED"}),  # priority 7
                    ("payload.JOB_STATUS", {"job_id": 3, "state": "QUEUED"}),  # priority 4
                ],
                start=mark,
            )
            await api.send_and_assert_command("payload.CANCEL", job_id=1)
            await api.assert_event("payload.JOB_CANCELLED", args={"job_id": 1})
            await api.await_event("payload.JOB_STARTED", args={"job_id": 2}, start=mark)
            assert "already CANCELLED" in await refused(api, "payload.CANCEL", job_id=1)
            assert "no job 99" in await refused(api, "payload.STATUS", job_id=99)
            assert "a result exists once DONE" in await refused(api, "payload.GET_RESULT", job_id=3)
            assert "file" in await refused(
                api, "payload.ADD_MODEL", file_name="../unet.onnx", sha256=digest
            )
            await api.await_telemetry("payload.JOBS_CANCELLED", equal_to(1))
            await api.await_telemetry("payload.BUSY_WORKERS", equal_to(1))

    virtual(scenario())
