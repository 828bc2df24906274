"""Fixtures for the C core's tests: thread pools (none, 1 and 3 threads) and every SIMD level."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

try:
    from flight.inference._native import ffi, lib
except ImportError as error:  # the tests of the C core cannot run without it: say how to build
    raise ImportError(
        "flight.inference._native is not built: run `make` (or `pip install -e .` with a C "
        f"compiler), or `python native/build_native.py` for a quick in-place build ({error})"
    ) from error

import native_ref


@pytest.fixture(scope="session")
def pools() -> Iterator[dict[str, object]]:
    """Pools by name; "none" is a NULL pool (the calling thread with stack-sized blocking)."""
    made = {"1": lib.pn_pool_create(1), "3": lib.pn_pool_create(3)}
    assert all(pool != ffi.NULL for pool in made.values())
    yield {"none": ffi.NULL, **made}
    for pool in made.values():
        lib.pn_pool_destroy(pool)


@pytest.fixture(params=["1", "3", "none"], ids=lambda name: f"pool-{name}")
def pool(request: pytest.FixtureRequest, pools: dict[str, object]) -> object:
    return pools[request.param]


@pytest.fixture(
    params=native_ref.LEVELS, ids=lambda level: ffi.string(lib.pn_simd_name(level)).decode()
)
def level(request: pytest.FixtureRequest) -> Iterator[int]:
    """Runs the test at one SIMD level (every level this CPU has, generic included)."""
    with native_ref.simd_limit(request.param):
        assert lib.pn_simd_level() == request.param
        yield request.param
