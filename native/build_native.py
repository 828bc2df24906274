"""cffi build (API mode, out-of-line) of the C inference core into flight.inference._native."""

from __future__ import annotations

import platform
import re
from pathlib import Path

from cffi import FFI

NATIVE = Path(__file__).resolve().parent
HEADER = NATIVE / "include" / "penumbra_nn.h"
SOURCE_FILES = sorted((NATIVE / "src").glob("*.c"))

# -O3 but never -ffast-math (NaN and inf must behave as IEEE says) nor -march=native (the module
# must run on any CPU of its architecture: SIMD kernels are compiled per function and chosen at
# run time). -fno-math-errno only lets the compiler inline sqrt/rint without errno bookkeeping.
COMPILE_ARGS = [
    "-O3",
    "-std=c99",
    "-pthread",
    "-fno-math-errno",
    "-fno-strict-aliasing",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
]
LINK_ARGS = ["-pthread"]


def contract_cdef(header: Path = HEADER) -> str:
    """The declarations between PN_CDEF_BEGIN and PN_CDEF_END: the contract, verbatim."""
    text = header.read_text(encoding="utf-8")
    match = re.search(r"/\* PN_CDEF_BEGIN \*/(.*)/\* PN_CDEF_END \*/", text, re.S)
    if match is None:
        raise RuntimeError(f"{header}: the PN_CDEF_BEGIN/PN_CDEF_END markers are missing")
    return match.group(1)


def make_builder(*, absolute_paths: bool = False) -> FFI:
    """The FFI builder; setuptools wants sources relative to the project root (where setup.py
    runs), FFI.compile() absolute ones (it works in its own directory)."""
    if absolute_paths:
        sources = [str(path) for path in SOURCE_FILES]
    else:
        sources = [str(path.relative_to(NATIVE.parent)) for path in SOURCE_FILES]
    builder = FFI()
    builder.cdef(contract_cdef())
    builder.set_source(
        "flight.inference._native",
        '#include "penumbra_nn.h"\n',
        sources=sources,
        include_dirs=[str(NATIVE / "include"), str(NATIVE / "src")],
        extra_compile_args=COMPILE_ARGS,
        extra_link_args=LINK_ARGS,
        libraries=["m"],
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # `python native/build_native.py` builds the module in place without pip (development):
    # objects under build/native, the module next to flight/inference/__init__.py.
    import shutil

    print(f"building flight.inference._native for {platform.machine()}")
    built = Path(
        make_builder(absolute_paths=True).compile(
            tmpdir=str(NATIVE.parent / "build" / "native"), verbose=True
        )
    )
    target = NATIVE.parent / "flight" / "inference" / built.name
    # One module only: another build under another suffix (pip's _native.abi3.so) would be
    # imported instead of this one, or shadow it.
    for other in target.parent.glob("_native.*.so"):
        if other.name != target.name:
            other.unlink()
    shutil.copy2(built, target)
    print(f"installed {target}")
