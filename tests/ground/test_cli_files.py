"""`penumbra ground put` and `get`: mistakes refused before the link opens, and files both ways
with a real node (`penumbra flight` in a subprocess) through a real MQTT broker."""

import random
from pathlib import Path

import pytest

from ground.archive import Archive
from tests.ground.test_cli import files, ground, node, offline  # noqa: F401 (fixtures)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["put", "{dir}/absent.bin"], "absent.bin: no such file"),
        (["put", "{dir}/ok.bin", "--as", "../x"], "--as: file name '../x' contains '/'"),
        (["put", "{dir}/ok.bin", "--as", ""], "--as: a file name must not be empty"),
        (["get", "a/b"], "file name 'a/b' contains '/'"),
        (["get", ".hidden"], "starts with '.'"),
    ],
)
def test_a_file_mistake_is_one_line_and_exit_2_before_the_link_opens(
    files,  # noqa: F811
    capsys,
    tmp_path,
    argv,
    complaint,
):
    (tmp_path / "ok.bin").write_bytes(b"ok")
    status, _ = offline(files, *(part.format(dir=tmp_path) for part in argv))
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("penumbra ground: ") and complaint in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_put_then_get_a_file_with_a_real_node(node, tmp_path, capsys):  # noqa: F811
    data = random.Random(9).randbytes(20_000)
    local = tmp_path / "model.bin"
    local.write_bytes(data)

    status, out = ground(node, "put", str(local), "--as", "detector.onnx")
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"sent {local} as detector.onnx (transaction ")
    assert (
        "EVENT" in lines[-1]
        and "files.FILE_RECEIVED: file detector.onnx received: 20000" in (lines[-1])
    )

    status, out = ground(node, "get", "detector.onnx")
    assert status == 0, out
    assert out.splitlines()[0].startswith("sent files.DOWNLINK_FILE as request ")
    assert "FILE    file detector.onnx received (20000 octets" in out
    downloaded = Path(node["state"]) / "downloads" / "detector.onnx"
    assert downloaded.read_bytes() == data

    status, out = ground(node, "get", "absent.onnx")
    assert status == 1
    assert "no file absent.onnx on board" in out

    with Archive(node["archive"]) as archive:
        kinds = {row["kind"] for row in archive.rows("packets", "apid = ?", 0x7F0)}
        assert kinds == {"CFDP"}
    assert "Traceback" not in capsys.readouterr().err
