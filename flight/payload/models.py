"""Models the payload runs, kept by content hash: verified when added, sessions pooled per model."""

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from flight.inference import ModelError, Session, TensorSpec, load
from flight.payload.jobs import PayloadError
from flight.runtime.store import StoreError, atomic_write

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class ModelRefused(PayloadError):
    """A model the payload will not run: the message is the reason."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the payload needs of a model: its hash, its one input and its one output."""

    sha256: str
    input: TensorSpec
    output: TensorSpec
    size_octets: int


def check_sha256(text: str) -> str:
    """`text` as a lower-case sha256 hex digest; ModelRefused if it is not one."""
    digest = text.strip().lower()
    if not SHA256_HEX.fullmatch(digest):
        raise ModelRefused(f"{text!r} is not a sha256 digest (64 hex digits)")
    return digest


def _info(sha256: str, session: Session, size_octets: int) -> ModelInfo:
    info = session.info
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise ModelRefused(
            f"the model has {len(info.inputs)} inputs and {len(info.outputs)} outputs; the "
            "payload runs models of one input and one output"
        )
    spec = info.inputs[0]
    if not spec.shape or spec.shape[0] != 1:
        raise ModelRefused(
            f"the model input {spec} has no batch dimension of 1; the payload runs one tile "
            "per inference"
        )
    return ModelInfo(sha256, spec, info.outputs[0], size_octets)


class ModelLibrary:
    """Models in `directory` as `<sha256>.onnx`, and idle sessions of each, ready for a job.

    A session serves one job at a time (the native core runs one inference at a time per
    session), so each running job takes one and gives it back; more are loaded as more jobs of
    one model run at once. `add` and `acquire` load models and are slow: call them off the loop.
    Thread-safe.
    """

    def __init__(self, directory: Path, *, backend: str = "native") -> None:
        self.directory = Path(directory)
        self.backend = backend
        self._lock = threading.Lock()
        self._idle: dict[str, list[Session]] = {}
        self._info: dict[str, ModelInfo] = {}

    def path(self, sha256: str) -> Path:
        return self.directory / f"{sha256}.onnx"

    def known(self) -> list[str]:
        """The hashes of the models kept, sorted."""
        return sorted(p.stem for p in self.directory.glob("*.onnx") if SHA256_HEX.fullmatch(p.stem))

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def _load(self, sha256: str, data: bytes) -> Session:
        try:
            return load(data, backend=self.backend, num_threads=1)
        except ModelError as error:
            raise ModelRefused(str(error)) from None

    def add(self, source: Path, sha256: str) -> ModelInfo:
        """Verify `source` against `sha256`, check that it loads, and keep it. ModelRefused with
        the reason otherwise (the file's own hash on a mismatch, the loader's words)."""
        sha256 = check_sha256(sha256)
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise ModelRefused(f"no file {Path(source).name!r}: upload it first") from None
        except OSError as error:
            raise ModelRefused(f"cannot read {Path(source).name!r}: {error.strerror}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ModelRefused(
                f"hash mismatch: the file's sha256 is {actual[:16]}..., expected "
                f"{sha256[:16]}... (upload it again)"
            )
        session = self._load(sha256, data)
        info = _info(sha256, session, len(data))
        if not self.has(sha256):
            try:
                atomic_write(self.path(sha256), data)
            except StoreError as error:
                raise ModelRefused(f"not kept: {error}") from None
        with self._lock:
            self._info[sha256] = info
            self._idle.setdefault(sha256, []).append(session)
        return info

    def _open(self, sha256: str) -> Session:
        """A new session of a kept model, its file checked against its name first (bit rot)."""
        try:
            data = self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise ModelRefused(f"unknown model {sha256[:16]}...: ADD_MODEL it first") from None
        except OSError as error:
            raise ModelRefused(f"model {sha256[:16]}... unreadable: {error.strerror}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise ModelRefused(
                f"model {sha256[:16]}... is corrupt on board (its sha256 is now "
                f"{actual[:16]}...): ADD_MODEL it again"
            )
        session = self._load(sha256, data)
        info = _info(sha256, session, len(data))
        with self._lock:
            self._info[sha256] = info
        return session

    def info(self, sha256: str) -> ModelInfo:
        """The model's input and output (loads it once if no session was made yet)."""
        with self._lock:
            known = self._info.get(sha256)
        if known is not None:
            return known
        session = self._open(sha256)
        self.release(sha256, session)
        return self._info[sha256]

    def acquire(self, sha256: str) -> Session:
        """An idle session of the model, or a new one."""
        with self._lock:
            idle = self._idle.get(sha256)
            if idle:
                return idle.pop()
        return self._open(sha256)

    def release(self, sha256: str, session: Session) -> None:
        with self._lock:
            self._idle.setdefault(sha256, []).append(session)
