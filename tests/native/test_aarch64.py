"""The C kernels cross-compiled for aarch64 and run under qemu-aarch64 against golden outputs: with
NEON only (-cpu cortex-a72, the Raspberry Pi 4, where a dotprod instruction would kill the process
with SIGILL) and with NEON + dotprod (-cpu max). Skipped, saying why, without the cross tools."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[2] / "native" / "tests" / "run.sh"
CROSS = os.environ.get("CROSS_CC", "aarch64-linux-gnu-gcc")

pytestmark = [
    pytest.mark.skipif(
        shutil.which(CROSS) is None,
        reason=f"no aarch64 cross compiler ({CROSS}): apt-get install gcc-aarch64-linux-gnu "
        "libc6-dev-arm64-cross (.ci/run installs it)",
    ),
    pytest.mark.skipif(
        shutil.which("qemu-aarch64") is None,
        reason="no qemu-aarch64: apt-get install qemu-user (.ci/run installs it)",
    ),
]


def test_kernels_pass_on_aarch64_with_neon_and_with_dotprod(tmp_path):
    result = subprocess.run(
        ["sh", str(RUN), "aarch64", "25"],
        capture_output=True,
        text=True,
        env={**os.environ, "PN_TEST_BUILD_DIR": str(tmp_path)},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 77, output
    assert result.returncode == 0, f"aarch64 kernel tests failed:\n{output}"
    neon_only, with_dotprod = output.split("== qemu-aarch64 -cpu max")
    # A Pi 4 class CPU runs NEON and never the dotprod kernels; -cpu max runs all three levels.
    assert "this CPU runs neon\n" in neon_only and "neon+dotprod: ok" not in neon_only
    for level in ("neon+dotprod", "neon", "generic"):
        assert f"level {level}: ok" in with_dotprod
    assert "0 failed" in neon_only and "0 failed" in with_dotprod
