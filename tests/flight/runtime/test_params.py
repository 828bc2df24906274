"""The parameter store: defaults on a first boot, saved values after, a bad store means SAFE."""

from pathlib import Path

import pytest

from flight.runtime import clock
from flight.runtime.component import CommandError, Component, Mode, Parameter
from flight.runtime.components.params import RECORD, Params
from flight.runtime.store import Store


class Camera(Component):
    """A camera with parameters of several types."""

    EXPOSURE_MS = Parameter("u16", default=10, minimum=1, maximum=1000)
    GAIN = Parameter("f32", default=1.5)
    LABEL = Parameter("string", default="cam", max_length=8)
    FILTER = Parameter("enum", default="CLEAR", values={"CLEAR": 0, "RED": 1})


class Context:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def emit(self, component, event, arguments, text) -> None:  # type: ignore[no-untyped-def]
        self.events.append((event.name, text))

    def mode(self) -> Mode:
        return Mode.NOMINAL


def rig(state_dir: Path) -> tuple[Params, Camera, Context]:
    context = Context()
    params = Params()
    camera = Camera("camera")
    params.attach(2, context)
    camera.attach(16, context)
    params.bind(Store(state_dir), lambda: [params, camera])
    return params, camera, context


def save(params: Params) -> None:
    clock.run(params.SAVE(), virtual=True)


def test_a_first_boot_keeps_the_defaults_and_is_valid(tmp_path: Path) -> None:
    params, camera, _ = rig(tmp_path)
    assert params.load() is None
    assert params.telemetry.STORE_VALID
    assert camera.parameters.EXPOSURE_MS == 10


def test_saved_values_of_every_type_come_back(tmp_path: Path) -> None:
    params, camera, context = rig(tmp_path)
    camera.set_parameter(Camera.EXPOSURE_MS, 250)
    camera.set_parameter(Camera.GAIN, 2.25)
    camera.set_parameter(Camera.LABEL, "nadir")
    camera.set_parameter(Camera.FILTER, "RED")
    save(params)
    assert context.events == [("SAVED", "4 parameters saved")]
    stored = Store(tmp_path).load(RECORD)
    assert stored is not None
    assert stored["values"]["camera"]["FILTER"] == "RED"  # enums by name: readable in the file
    params2, camera2, _ = rig(tmp_path)
    assert params2.load() is None
    assert (camera2.parameters.EXPOSURE_MS, camera2.parameters.GAIN) == (250, 2.25)
    assert (camera2.parameters.LABEL, camera2.parameters.FILTER) == ("nadir", 1)
    assert params2.telemetry.LOADED == 4


def test_a_corrupt_store_keeps_the_defaults_and_says_why(tmp_path: Path) -> None:
    params, _, _ = rig(tmp_path)
    save(params)
    path = Store(tmp_path).path(RECORD)
    path.write_bytes(path.read_bytes()[:-9])  # torn
    params2, camera2, context = rig(tmp_path)
    problem = params2.load()
    assert problem is not None and str(path) in problem
    assert context.events[0][0] == "STORE_INVALID"
    assert not params2.telemetry.STORE_VALID
    assert camera2.parameters.EXPOSURE_MS == 10


def test_a_value_that_no_longer_fits_is_a_problem_and_the_rest_still_load(tmp_path: Path) -> None:
    Store(tmp_path).save(
        RECORD,
        {"format": 1, "values": {"camera": {"EXPOSURE_MS": 5000, "GAIN": 3.0, "ZOOM": 2}}},
    )
    params, camera, _ = rig(tmp_path)
    problem = params.load()
    assert problem is not None
    assert "camera.EXPOSURE_MS: 5000 is above the maximum 1000" in problem
    assert "camera.ZOOM is not a parameter" in problem
    assert camera.parameters.GAIN == 3.0
    assert camera.parameters.EXPOSURE_MS == 10


def test_save_fails_with_a_reason_when_the_store_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params, _, _ = rig(tmp_path)
    from flight.runtime.store import StoreError

    def full(name: str, value: dict) -> None:
        raise StoreError("cannot write parameters.json: No space left on device")

    monkeypatch.setattr(params.store, "save", full)

    async def main() -> None:
        with pytest.raises(CommandError, match=r"not saved: .*No space left"):
            await params.SAVE()

    clock.run(main(), virtual=True)
