"""Shared by the inference tests: the ONNX reference run, the backends, and the comparison."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from flight.inference import load

BACKENDS = ("numpy", "native")


def native_missing() -> str | None:
    """Why the native backend cannot run here, or None when it can."""
    if importlib.util.find_spec("flight.inference._native") is None:
        return "the native module flight.inference._native is not built (run `make`)"
    return None


def require(backend: str) -> None:
    # A failure, not a skip: `make` always builds the C core, so its absence is a broken build
    # that must not pass as a green suite.
    if backend == "native" and (reason := native_missing()):
        pytest.fail(reason, pytrace=False)


def reference(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return ReferenceEvaluator(model).run(None, dict(feeds))


def run(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], backend: str, **options: object
) -> list[np.ndarray]:
    with load(model, backend=backend, **options) as session:
        outputs = session.run(feeds)
        return [outputs[spec.name] for spec in session.info.outputs]


def random_feeds(
    model: onnx.ModelProto, seed: int = 0, scale: float = 1.0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = np.asarray(rng.standard_normal(shape) * scale, np.float32)
    return feeds


def assert_close(
    actual: np.ndarray, expected: np.ndarray, *, rtol: float = 1e-4, atol: float = 1e-5
) -> None:
    """|actual - expected| <= atol * max(1, max|expected|) + rtol * |expected|, shapes equal."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert actual.dtype == np.float32
    scale = max(1.0, float(np.nanmax(np.abs(expected))) if expected.size else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, equal_nan=True)
