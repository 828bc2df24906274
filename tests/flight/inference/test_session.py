"""Session behaviour: input checks, thread safety, async runs, what `info` reports, backends."""

from __future__ import annotations

import asyncio
import sys
import threading

import numpy as np
import pytest
from inference_oracle import BACKENDS, random_feeds, require

from flight.inference import (
    BackendUnavailableError,
    InputError,
    LimitError,
    SessionClosedError,
    load,
)
from hil.models import cloud_mask_unet, mobilenet_v2, one_op_model


@pytest.fixture(scope="module")
def unet():
    return cloud_mask_unet(input_size=32, base_channels=4, depth=2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({}, "missing input 'bands'"),
        (
            {"bands": np.zeros((1, 4, 32, 32), np.float32), "extra": np.zeros(1)},
            "unknown input 'extra'",
        ),
        (
            {"bands": np.zeros((1, 4, 32, 32), np.float64)},
            "input 'bands' has dtype float64; expected float32",
        ),
        (
            {"bands": np.zeros((1, 4, 16, 32), np.float32)},
            "input 'bands' has shape [1, 4, 16, 32]; expected [1, 4, 32, 32]",
        ),
        ({"bands": [[0.0]]}, "input 'bands' is a list; expected a numpy array"),
    ],
    ids=["missing", "unknown", "dtype", "shape", "not-an-array"],
)
def test_run_refuses_bad_inputs_naming_the_input_expected_and_given(backend, unet, feeds, message):
    require(backend)
    with load(unet, backend=backend) as session, pytest.raises(InputError) as caught:
        session.run(feeds)
    assert message in str(caught.value)


def test_run_takes_a_mapping(unet):
    with load(unet, backend="numpy") as session, pytest.raises(InputError, match="mapping"):
        session.run([np.zeros((1, 4, 32, 32), np.float32)])  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_runs_from_threads_equal_single_threaded_runs(backend, unet):
    require(backend)
    runs_per_thread = 8
    inputs = [random_feeds(unet, seed=s) for s in range(4)]
    with load(unet, backend=backend, num_threads=2) as session:
        expected = [session.run(feeds)["mask"] for feeds in inputs]
        results: dict[int, list[np.ndarray]] = {i: [] for i in range(4)}
        errors: list[BaseException] = []
        start = threading.Barrier(4)

        def worker(i: int) -> None:
            try:
                start.wait()
                for _ in range(runs_per_thread):
                    results[i].append(session.run(inputs[i])["mask"])
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors
    for i in range(4):
        assert len(results[i]) == runs_per_thread
        for result in results[i]:
            np.testing.assert_array_equal(result, expected[i])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_run_async_leaves_the_event_loop_free(backend, unet):
    require(backend)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    feeds = random_feeds(unet)
    with load(unet, backend=backend) as session:
        expected = session.run(feeds)["mask"]
        async with asyncio.TaskGroup() as group:
            task = group.create_task(ticker())
            outputs = [await session.run_async(feeds) for _ in range(3)]
            task.cancel()
    assert ticks > 0
    for output in outputs:
        np.testing.assert_array_equal(output["mask"], expected)


def test_outputs_are_new_arrays_each_run(unet):
    require("native")
    feeds = random_feeds(unet)
    with load(unet) as session:
        first = session.run(feeds)["mask"]
        kept = first.copy()
        session.run(random_feeds(unet, seed=9))
    np.testing.assert_array_equal(first, kept)


def test_closed_session_refuses_to_run(unet):
    session = load(unet, backend="numpy")
    session.close()
    with pytest.raises(SessionClosedError, match="closed"):
        session.run(random_feeds(unet))


def test_missing_native_module_says_how_to_build_it(unet, monkeypatch):
    monkeypatch.setitem(sys.modules, "flight.inference._native", None)  # import fails
    with pytest.raises(BackendUnavailableError) as caught:
        load(unet)
    assert "make" in str(caught.value) and "backend='numpy'" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"backend": "gpu"}, "backend must be"), ({"num_threads": 0}, "num_threads must be")],
)
def test_bad_options_are_refused(unet, options, message):
    with pytest.raises(ValueError, match=message):
        load(unet, **options)


def test_arena_larger_than_the_limit_is_refused(unet):
    require("native")
    with pytest.raises(LimitError, match="max_arena_bytes"):
        load(unet, max_arena_bytes=1024)


def test_info_reports_operators_parameters_macs_and_memory():
    weight = np.ones((8, 3, 3, 3), np.float32)
    model = one_op_model("Conv", [("x", (1, 3, 16, 16)), ("w", weight)], pads=[1, 1, 1, 1])
    with load(model, backend="numpy") as session:
        info = session.info
    assert info.backend == "numpy" and info.simd == "numpy"
    assert info.operators == {"Conv": 1} and info.model_operators == {"Conv": 1}
    assert info.parameters == weight.size
    assert info.macs == 8 * 16 * 16 * 3 * 3 * 3
    assert info.inputs[0].name == "x" and info.inputs[0].shape == (1, 3, 16, 16)
    assert info.outputs[0].shape == (1, 8, 16, 16)
    assert info.opset == 17


def test_native_info_reports_the_arena_smaller_than_one_buffer_per_tensor():
    require("native")
    model = mobilenet_v2(width=0.35, input_size=64, num_classes=10)
    with load(model, num_threads=2) as session:
        info = session.info
    assert info.backend == "native" and info.num_threads == 2
    assert info.simd and info.simd != "numpy"
    assert 0 < info.arena_bytes < info.tensor_bytes / 2
    # Packed weights hold every parameter but BatchNormalization's (folded into the convs).
    assert info.weight_bytes >= 0.8 * 4 * info.parameters
