"""The C test program (native/tests/test_kernels.c) built with the host compiler: golden outputs
from NumPy and naive C references, at every SIMD level of this CPU, pools of 0, 1 and 3 threads."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import native_ref

RUN = Path(__file__).resolve().parents[2] / "native" / "tests" / "run.sh"


def test_c_test_program_passes_natively_at_every_level(tmp_path):
    result = subprocess.run(
        ["sh", str(RUN), "native", "40"],
        capture_output=True,
        text=True,
        env={**os.environ, "PN_TEST_BUILD_DIR": str(tmp_path)},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"C kernel tests failed:\n{output}"
    for level in native_ref.LEVELS:
        name = native_ref.ffi.string(native_ref.lib.pn_simd_name(level)).decode()
        assert f"level {name}: ok" in output
