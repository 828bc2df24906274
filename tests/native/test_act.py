"""pn_activation against NumPy, at every SIMD level, including NaN and infinities.

Tolerances: Relu, Clip, LeakyRelu and HardSwish are exact against the same float32 operations in
NumPy; Sigmoid and Tanh (libm expf/tanhf) within rtol 1e-5, atol 1e-6 of float64.
"""

from __future__ import annotations

import native_ref as nr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_ref import LEVELS, ffi, lib


def activation(
    kind: int, x: np.ndarray, alpha: float = 0.0, beta: float = 0.0, in_place: bool = False
):
    act = ffi.new("pn_act *", nr.act_struct(kind, alpha, beta))
    y = x if in_place else np.full_like(x, 12345.0)
    lib.pn_activation(act, nr.ptr(x), nr.ptr(y), x.size)
    return y


def float32_ref(kind: int, x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """The exact activations, computed with the C code's float32 operations."""
    f = np.float32
    if kind == nr.ACT_RELU:
        return np.where(x < 0, f(0), x)
    if kind == nr.ACT_CLIP:
        v = np.where(x < f(alpha), f(alpha), x)
        return np.where(v > f(beta), f(beta), v)
    if kind == nr.ACT_LEAKY:
        return np.where(x < 0, x * f(alpha), x)
    if kind == nr.ACT_HARD_SWISH:
        g = np.clip(x * f(1 / 6) + f(0.5), f(0), f(1))
        return x * g
    return x


@settings(max_examples=80)
@given(
    kind=st.sampled_from(nr.ACT_KINDS),
    n=st.integers(0, 70),
    in_place=st.booleans(),
    level=st.sampled_from(LEVELS),
    seed=st.integers(0, 2**32 - 1),
)
def test_activation_matches_numpy(kind, n, in_place, level, seed):
    x = (np.random.default_rng(seed).standard_normal(n) * 5).astype(np.float32)
    alpha, beta = (-1.5, 2.5) if kind == nr.ACT_CLIP else (0.1, 0.0)
    with nr.simd_limit(level):
        y = activation(kind, x.copy(), alpha, beta, in_place)
    if kind in (nr.ACT_SIGMOID, nr.ACT_TANH):
        np.testing.assert_allclose(y, nr.act_ref(x, kind), rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(y, float32_ref(kind, x, alpha, beta))


@pytest.mark.parametrize("kind", list(nr.ACT_KINDS))
def test_activation_keeps_nan_and_handles_infinities(level, kind):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0] * 3, np.float32)
    alpha, beta = (0.0, 6.0) if kind == nr.ACT_CLIP else (0.1, 0.0)
    with nr.simd_limit(level):
        y = activation(kind, x, alpha, beta)
    assert np.isnan(y[0::6]).all(), "NaN in, NaN out"
    with np.errstate(invalid="ignore", over="ignore"):
        want = nr.act_ref(x, kind, alpha, beta)
    finite_in = ~np.isnan(x)
    np.testing.assert_allclose(y[finite_in], want[finite_in], rtol=1e-6)
