"""CPU feature levels, the SIMD cap, and the build's promises (portable flags, contract as cdef)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import native_ref as nr
import pytest
from native_ref import LEVELS, ffi, lib

ROOT = Path(__file__).resolve().parents[2]
NAMES = {0: "generic", 1: "avx2+fma", 2: "neon", 3: "neon+dotprod", 4: "avx512"}


def test_levels_have_their_names():
    for level, name in NAMES.items():
        assert ffi.string(lib.pn_simd_name(level)).decode() == name
    assert ffi.string(lib.pn_simd_name(77)).decode() == "unknown"


def test_levels_belong_to_this_architecture_and_generic_is_always_there():
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        allowed = {0, 1, 4}
    elif machine in ("aarch64", "arm64"):
        allowed = {0, 2, 3}
    else:
        allowed = {0}
    assert set(LEVELS) <= allowed
    assert LEVELS[-1] == 0


def test_a_cap_runs_the_highest_level_of_this_cpu_at_or_below_it():
    try:
        for cap in range(-1, 6):
            lib.pn_set_simd_limit(cap)
            assert lib.pn_simd_level() == max(lv for lv in LEVELS if lv <= max(cap, 0)), cap
    finally:
        lib.pn_set_simd_limit(99)
    with nr.simd_limit(0):
        assert lib.pn_simd_level() == 0


def test_version_names_the_architecture():
    version = ffi.string(lib.pn_version()).decode()
    assert version.startswith("penumbra-nn")


def test_build_flags_are_portable_and_keep_ieee_semantics():
    sys.path.insert(0, str(ROOT / "native"))
    try:
        import build_native
    finally:
        sys.path.pop(0)
    flags = build_native.COMPILE_ARGS
    assert "-ffast-math" not in flags and not any(f.startswith("-march") for f in flags)
    assert {"-O3", "-std=c99", "-pthread"} <= set(flags)


def test_the_cdef_is_the_header_contract_verbatim():
    sys.path.insert(0, str(ROOT / "native"))
    try:
        import build_native
    finally:
        sys.path.pop(0)
    cdef = build_native.contract_cdef()
    header = (ROOT / "native" / "include" / "penumbra_nn.h").read_text()
    assert cdef in header
    for name in ("pn_conv2d", "pn_gemm", "pn_qconv2d", "pn_qgemm", "pn_transpose", "pn_concat"):
        assert hasattr(lib, name), f"{name} is in the contract but not in the module"


@pytest.mark.parametrize(
    "name", ["pn_conv2d_desc", "pn_gemm_desc", "pn_qconv2d_desc", "pn_pool2d_desc"]
)
def test_descriptor_structs_are_visible_to_python(name):
    assert ffi.sizeof(name) > 0
