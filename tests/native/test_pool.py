"""The thread pool: sizes, the GIL released while kernels run, callers sharing a pool, fork()."""

from __future__ import annotations

import os
import threading

import native_ref as nr
import numpy as np
import pytest
from native_ref import ffi, lib


def test_pool_reports_its_threads_and_refuses_impossible_sizes():
    pool = lib.pn_pool_create(4)
    try:
        assert lib.pn_pool_threads(pool) == 4
    finally:
        lib.pn_pool_destroy(pool)
    assert lib.pn_pool_create(0) == ffi.NULL
    assert lib.pn_pool_create(-3) == ffi.NULL
    assert lib.pn_pool_create(100000) == ffi.NULL
    lib.pn_pool_destroy(ffi.NULL)  # a no-op, like free(NULL)


def test_kernels_release_the_gil_while_they_run():
    """Python code observes the output of a running GEMM half written: only possible if the thread
    in C let go of the GIL. (No clock involved: the proof is the intermediate state itself.)"""
    rng = np.random.default_rng(0)
    m, n, k = 1536, 1536, 256  # one depth block: the output fills up tile by tile
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    packed = np.empty(lib.pn_gemm_packed_floats(k, n), np.float32)
    lib.pn_gemm_pack(k, n, nr.ptr(b), 0, nr.ptr(packed))
    desc = ffi.new(
        "pn_gemm_desc *", {"m": m, "n": n, "k": k, "trans_a": 0, "act": nr.act_struct(0)}
    )
    pool = lib.pn_pool_create(1)
    try:
        for _attempt in range(20):
            y = np.full((m, n), np.nan, np.float32)
            probe = y[::64, ::64]  # a view: reads what C has written so far
            started, finished = threading.Event(), threading.Event()

            def run(y=y, started=started, finished=finished):
                started.set()
                lib.pn_gemm(pool, desc, nr.ptr(a), nr.ptr(packed), ffi.NULL, nr.ptr(y))
                finished.set()

            worker = threading.Thread(target=run)
            worker.start()
            started.wait()
            seen_partial = False
            while not finished.is_set():
                written = ~np.isnan(probe)
                if written.any() and not written.all():
                    seen_partial = True
                    break
            worker.join()
            if seen_partial:
                break
        assert seen_partial, "Python never ran while pn_gemm was computing: the GIL was held"
        np.testing.assert_allclose(y, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    finally:
        lib.pn_pool_destroy(pool)


def test_threads_sharing_one_pool_take_turns_and_get_their_own_results(pools):
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (1, 16, 20, 40)).astype(np.float32)
    weights = [rng.uniform(-1, 1, (24, 16, 3, 3)).astype(np.float32) for _ in range(4)]
    want = [nr.conv2d_ref(x, w, None, (1, 1), (1, 1), (1, 1), 1, (20, 40)) for w in weights]
    errors: list[str] = []

    def worker(index: int) -> None:
        for _ in range(15):
            y = nr.conv2d(pools["3"], x, weights[index], None, (1, 1), (1, 1), (1, 1), 1, (20, 40))
            if not np.allclose(y, want[index], rtol=1e-4, atol=1e-4):
                errors.append(f"thread {index} got another result")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_many_small_jobs_back_to_back_from_two_threads_stay_correct(pools):
    """Thousands of hand-offs (each job split into tasks) while a second caller competes for the
    pool: a task taken by a worker of a job already replaced would show as a wrong product."""
    rng = np.random.default_rng(6)
    shapes = [(7, 45, 300), (13, 70, 90), (31, 20, 120)]  # each above the split threshold
    cases = []
    for m, n, k in shapes:
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        cases.append((a, b, a.astype(np.float64) @ b))
    errors: list[str] = []

    def worker(offset: int) -> None:
        for i in range(300):
            a, b, want = cases[(i + offset) % len(cases)]
            y = nr.gemm(pools["3"], a, b, None, False, False)
            if not np.allclose(y, want, rtol=1e-4, atol=1e-4):
                errors.append(f"call {i}: wrong product for {a.shape} x {b.shape}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_pool_inherited_across_fork_runs_in_the_child_and_a_new_pool_works_there(pools):
    """OpenMP's pool hangs in a forked child; ours runs the child's work on the calling thread."""
    rng = np.random.default_rng(4)
    a = rng.uniform(-1, 1, (200, 300)).astype(np.float32)
    b = rng.uniform(-1, 1, (300, 170)).astype(np.float32)
    want = a.astype(np.float64) @ b
    nr.gemm(pools["3"], a, b, None, False, False)  # the parent's workers are up and parked
    pid = os.fork()
    if pid == 0:  # child: report by exit status only
        status = 1
        try:
            inherited = nr.gemm(pools["3"], a, b, None, False, False)
            fresh_pool = lib.pn_pool_create(3)
            fresh = nr.gemm(fresh_pool, a, b, None, False, False)
            lib.pn_pool_destroy(fresh_pool)
            ok = np.allclose(inherited, want, rtol=1e-4, atol=1e-3) and np.allclose(
                fresh, want, rtol=1e-4, atol=1e-3
            )
            status = 0 if ok else 2
        finally:
            os._exit(status)
    # A hang would be the bug; a generous guard keeps the suite from waiting forever on it.
    deadline_polls = 6000
    for _ in range(deadline_polls):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        threading.Event().wait(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung running a kernel on an inherited pool")
    assert os.waitstatus_to_exitcode(status) == 0, "the child computed a wrong product"
    np.testing.assert_allclose(
        nr.gemm(pools["3"], a, b, None, False, False), want, rtol=1e-4, atol=1e-3
    )
