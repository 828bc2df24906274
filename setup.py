"""Build hook only: compiles the C inference core (native/) into flight.inference._native with cffi.

The project's metadata lives in pyproject.toml; this file exists for cffi_modules, and to turn a
missing C compiler (or missing Python headers) into a message that says what to install.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, ExecError, LinkError, PlatformError

HOW_TO_FIX = (
    "Penumbra's inference core is C, compiled at install into flight.inference._native. "
    "Install a C compiler and the Python headers (Debian/Ubuntu/Raspberry Pi OS: "
    "`sudo apt-get install gcc python3-dev`), then run `make` (or `pip install -e .`) again."
)


class BuildNative(build_ext):
    """build_ext that says what to install when the C toolchain is missing or fails."""

    def build_extension(self, ext):
        compiler = getattr(self.compiler, "compiler_so", None)
        if compiler and shutil.which(compiler[0]) is None:
            raise PlatformError(f"no C compiler: {compiler[0]!r} is not on PATH. {HOW_TO_FIX}")
        try:
            super().build_extension(ext)
        except (CompileError, LinkError, ExecError) as error:
            raise PlatformError(f"building {ext.name} failed ({error}). {HOW_TO_FIX}") from error
        if self.inplace:
            self._remove_other_builds(Path(self.get_ext_fullpath(ext.name)))

    def copy_extensions_to_source(self):
        """Editable installs (`pip install -e`, what `make` runs) build aside, then copy here."""
        super().copy_extensions_to_source()
        for ext in self.extensions:
            package = ext.name.split(".")[:-1]
            self._remove_other_builds(Path(*package) / Path(self.get_ext_filename(ext.name)).name)

    @staticmethod
    def _remove_other_builds(built: Path) -> None:
        """An in-place build leaves exactly one module: a stale one under another suffix (say
        _native.cpython-311-*.so from `python native/build_native.py` next to the new
        _native.abi3.so) would be imported first and hide the C just compiled."""
        stem = built.name.split(".", 1)[0]
        for other in built.parent.glob(f"{stem}.*.so"):
            if other.resolve() != built.resolve():
                other.unlink()


setup(cffi_modules=["native/build_native.py:ffibuilder"], cmdclass={"build_ext": BuildNative})
