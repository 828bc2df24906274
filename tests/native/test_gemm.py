"""pn_gemm (constant right operand, packed once; bias and activation fused) and pn_matmul (batched,
broadcast by a zero batch stride) against float64 NumPy, at every SIMD level and pool.

Tolerance (fp32): |y - ref| <= 2 x (1e-6 + 1e-6 sqrt(k) sum|a b|), as for the convolution.
"""

from __future__ import annotations

import native_ref as nr
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from native_ref import LEVELS, ffi, lib

POOLS = st.sampled_from(["1", "3", "none"])


def assert_within(y: np.ndarray, ref: np.ndarray, bound: np.ndarray, depth: int) -> None:
    tol = 2 * nr.error_bound(bound, depth)
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= tol), (
        f"max excess {np.max(err - tol)} at {np.unravel_index(np.argmax(err - tol), err.shape)}"
    )


@settings(max_examples=200)
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 70),
    k=st.one_of(st.integers(1, 40), st.integers(250, 300)),
    trans_a=st.booleans(),
    trans_b=st.booleans(),
    with_bias=st.booleans(),
    kind=st.sampled_from(nr.ACT_KINDS),
    level=st.sampled_from(LEVELS),
    pool_name=POOLS,
    seed=st.integers(0, 2**32 - 1),
)
def test_gemm_matches_numpy(
    pools, m, n, k, trans_a, trans_b, with_bias, kind, level, pool_name, seed
):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, k) if trans_b else (k, n)).astype(np.float32)
    bias = rng.uniform(-1, 1, n).astype(np.float32) if with_bias else None
    alpha, beta = (-0.3, 0.4) if kind == nr.ACT_CLIP else (0.2, 0.0)
    with nr.simd_limit(level):
        y = nr.gemm(
            pools[pool_name], a, b, bias, trans_a, trans_b, nr.act_struct(kind, alpha, beta)
        )
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    ref = opa.astype(np.float64) @ opb + (0 if bias is None else bias)
    ref = nr.act_ref(ref, kind, alpha, beta)
    bound = np.abs(opa.astype(np.float64)) @ np.abs(opb) + (0 if bias is None else np.abs(bias))
    assert_within(y, ref, bound, k)


def test_gemm_large_blocks_match_numpy(pools, level):
    """Past every cache block: depth > 256, rows > 96, columns > 192, with a ragged edge."""
    rng = np.random.default_rng(11)
    m, n, k = 131, 397, 601
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    bias = rng.uniform(-1, 1, n).astype(np.float32)
    for pool_name in ("1", "3", "none"):
        with nr.simd_limit(level):
            y = nr.gemm(pools[pool_name], a, b, bias, False, False, nr.act_struct(nr.ACT_RELU))
        ref = np.maximum(a.astype(np.float64) @ b + bias, 0)
        assert_within(y, ref, np.abs(a.astype(np.float64)) @ np.abs(b) + np.abs(bias), k)


def test_gemm_with_zero_depth_is_the_bias_then_the_activation(pools):
    b = np.zeros((0, 5), np.float32)
    a = np.zeros((3, 0), np.float32)
    bias = np.array([-1, 0, 1, 2, -3], np.float32)
    y = nr.gemm(pools["1"], a, b, bias, False, False, nr.act_struct(nr.ACT_RELU))
    np.testing.assert_array_equal(y, np.tile(np.maximum(bias, 0), (3, 1)))


def matmul(pool, a, b, a_stride, b_stride, batch):
    m, k = a.shape[-2:]
    n = b.shape[-1]
    y = np.full((batch, m, n), np.nan, np.float32)
    lib.pn_matmul(pool, batch, m, n, k, nr.ptr(a), a_stride, nr.ptr(b), b_stride, nr.ptr(y))
    return y


@settings(max_examples=150)
@given(
    batch=st.integers(1, 5),
    m=st.integers(1, 30),
    n=st.integers(1, 50),
    k=st.one_of(st.integers(1, 30), st.integers(255, 270)),
    broadcast=st.sampled_from(["none", "a", "b"]),
    level=st.sampled_from(LEVELS),
    pool_name=POOLS,
    seed=st.integers(0, 2**32 - 1),
)
def test_matmul_batched_and_broadcast_matches_numpy(
    pools, batch, m, n, k, broadcast, level, pool_name, seed
):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (1 if broadcast == "a" else batch, m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (1 if broadcast == "b" else batch, k, n)).astype(np.float32)
    a_stride = 0 if broadcast == "a" else m * k
    b_stride = 0 if broadcast == "b" else k * n
    with nr.simd_limit(level):
        y = matmul(pools[pool_name], a, b, a_stride, b_stride, batch)
    a64, b64 = np.broadcast_to(a, (batch, m, k)), np.broadcast_to(b, (batch, k, n))
    ref = np.matmul(a64.astype(np.float64), b64)
    assert_within(y, ref, np.matmul(np.abs(a64.astype(np.float64)), np.abs(b64)), k)


def test_gemm_packing_does_not_depend_on_the_simd_level(pools):
    rng = np.random.default_rng(5)
    b = rng.uniform(-1, 1, (50, 37)).astype(np.float32)
    packs = []
    for level in LEVELS:
        with nr.simd_limit(level):
            packed = np.empty(lib.pn_gemm_packed_floats(50, 37), np.float32)
            lib.pn_gemm_pack(50, 37, nr.ptr(b), 0, nr.ptr(packed))
            packs.append(packed)
    for packed in packs[1:]:
        np.testing.assert_array_equal(packed, packs[0])
    assert ffi.string(lib.pn_simd_name(LEVELS[-1])) == b"generic"
