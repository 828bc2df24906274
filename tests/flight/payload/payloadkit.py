"""What the payload tests share: small models built in code, tiles, a node hosting the payload."""

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np

from flight.inference import load
from flight.payload import PAYLOAD_COMPONENT_ID, Payload
from flight.runtime import clock
from flight.runtime.config import NodeConfig, PayloadSection
from flight.runtime.node import Node
from hil.models import cloud_mask_unet

TILE_SIZE = 16
BANDS = 4
SAFETY_S = 100_000.0  # virtual seconds: a safety net for a hung scenario, not a measurement


def unet_bytes(seed: int = 0) -> bytes:
    """A small U-Net cloud mask: input "bands" (1, 4, 16, 16), output "mask" (1, 1, 16, 16)."""
    model = cloud_mask_unet(
        input_size=TILE_SIZE, in_channels=BANDS, base_channels=4, depth=1, seed=seed
    )
    return model.SerializeToString()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_tiles(count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, BANDS, TILE_SIZE, TILE_SIZE)).astype(np.float32)


def reference(model: bytes, tiles: np.ndarray, *, backend: str = "native") -> np.ndarray:
    """Every tile through its own session run, outside the payload: what a job must produce."""
    with load(model, backend=backend, num_threads=1) as session:
        return np.concatenate(
            [session.run({"bands": tiles[i : i + 1]})["mask"] for i in range(len(tiles))]
        )


def virtual(scenario: Coroutine[Any, Any, Any]) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(SAFETY_S):
            return await scenario

    return clock.run(bounded(), virtual=True)


class Recorder:
    """The payload's events with their arguments, as emitted (wraps `payload.emit`)."""

    def __init__(self, payload: Payload) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        emit = payload.emit

        def recording(event: Any, **arguments: Any) -> None:
            self.events.append((event.name, arguments))
            emit(event, **arguments)

        payload.emit = recording  # type: ignore[method-assign]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [arguments for event, arguments in self.events if event == name]


@contextlib.asynccontextmanager
async def payload_node(
    state_dir: Path,
    config: PayloadSection | None = None,
    *,
    payload: Payload | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Node, Payload, Recorder]]:
    """A started node on `state_dir` hosting a payload (id 17; `payload`, or one made with
    `config` and `options`), with its events recorded."""
    if payload is None:
        payload = Payload(config or PayloadSection(), state_dir=state_dir, **options)
    recorder = Recorder(payload)
    node = Node(
        NodeConfig().with_state_dir(state_dir), components=[(PAYLOAD_COMPONENT_ID, payload)]
    )
    try:
        async with node:
            yield node, payload, recorder
            node.request_stop()
    finally:
        payload.close()


def upload(node: Node, name: str, data: bytes | np.ndarray) -> Path:
    """Put a file where the file service delivers uploads, as a finished transfer would."""
    path = node.files.path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, np.ndarray):
        np.save(path, data, allow_pickle=False)
    else:
        path.write_bytes(data)
    return path


async def add_unet(node: Node, payload: Payload, seed: int = 0) -> tuple[bytes, str]:
    model = unet_bytes(seed)
    digest = sha256(model)
    await payload.add_model(upload(node, f"unet{seed}.onnx", model), digest)
    return model, digest


async def wait_until(condition: Callable[[], bool], *, step_s: float = 0.1) -> None:
    while not condition():
        await asyncio.sleep(step_s)


def deadline_in(node: Node, seconds: float) -> float:
    assert node.clock is not None
    return node.clock.now_tai_s() + seconds
