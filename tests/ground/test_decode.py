"""`penumbra decode`: arguments, JSON on stdout, one-line errors with their octet, exit status."""

import io
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.protocol import cobs, icd
from flight.protocol.tm_frame import TmFrame
from ground.decode import InputError, parse_hex
from penumbra.cli import main

# V5: us-irs/spacepackets-py tests/ecss/test_pus_tc.py -- PUS-C TC 17/1, APID 0x002, seq 0x34.
V5 = bytes.fromhex("18 02 C0 34 00 06 2F 11 01 00 00 EE 63")
# V6: us-irs/spacepackets-py docs/examples.rst -- ping TM 17/2 APID 1 without a time stamp.
V6_TM = bytes.fromhex("08 01 C0 00 00 08 20 11 02 00 00 00 00 86 D7")
# V11: dariol83/ccsds TcTransferFrameTest.java FIRST_FRAME -- TC frame, SCID 123, FECF 0DEF.
V11 = bytes.fromhex("20 7B 00 17 17 C1 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 0D EF")
# V9: us-irs/spacepackets-py tests/ccsds/test_tm_frame.py -- a 16-octet TM frame, FECF 814A.
V9 = bytes.fromhex("00 3F 00 00 1F FE 00 00 01 02 01 00 00 00 81 4A")


def decode(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["decode", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_hex_argument_with_spaces_colons_and_0x_prints_the_fields(capsys) -> None:
    for text in (
        V5.hex(),
        "0x" + V5.hex(),
        V5.hex(" "),
        V5.hex(":"),
        " ".join(f"0x{o:02X}" for o in V5),
    ):
        status, out, err = decode(capsys, text)
        assert (status, err) == (0, "")
        printed = json.loads(out)
        assert printed["kind"] == "pus-tc"
        assert printed["secondary_header"]["service"] == 17
        assert printed["secondary_header"]["subtype"] == 1
        assert printed["primary_header"]["apid"] == 2


def test_the_json_is_indented_by_two(capsys) -> None:
    _, out, _ = decode(capsys, V5.hex())
    assert out.startswith('{\n  "kind": "pus-tc",\n')


def test_a_binary_file_is_read(tmp_path, capsys) -> None:
    dump = tmp_path / "uplink.bin"
    dump.write_bytes(cobs.frame(V11) + cobs.frame(V5))
    status, out, err = decode(capsys, str(dump))
    printed = json.loads(out)
    assert [frame["kind"] for frame in printed["frames"]] == ["tc-frame", "pus-tc"]
    # V11 sits on the ICD's authenticated VC 0 without SDLS: shown, and the exit status says so.
    assert status == 1
    assert err == (
        "penumbra decode: cobs.frames[0].security_header: frame data field of 16 octets cannot "
        "hold the 14-octet security header and 16-octet trailer of this secured virtual channel "
        "(at octet 7)\n"
    )


def test_a_file_named_like_hex_is_read_as_the_file(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "abcd").write_bytes(V5)
    status, out, _ = decode(capsys, "abcd")
    assert status == 0 and json.loads(out)["kind"] == "pus-tc"
    status, _, err = decode(capsys, "0xabcd")  # the prefix forces hex
    assert status == 1 and err.startswith("penumbra decode: no kind fits these 2 octets")


def test_stdin_is_read_with_a_dash(monkeypatch, capsys) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(V5))
    monkeypatch.setattr(sys, "stdin", stdin)
    status, out, _ = decode(capsys, "-")
    assert status == 0
    assert json.loads(out)["packet_error_control"] == 0xEE63


def test_as_forces_the_kind(capsys) -> None:
    status, out, _ = decode(capsys, "--as", "space-packet", V5.hex())
    assert status == 0 and json.loads(out)["kind"] == "pus-tc"
    status, out, err = decode(capsys, "--as", "tm-frame", V5.hex())
    assert (status, out) == (1, "")
    assert err.startswith("penumbra decode: tm-frame: TM frame of 13 octets")


def test_tm_frame_length_and_no_ocf_options(capsys) -> None:
    status, out, _ = decode(capsys, "--tm-frame-length", "16", V9.hex())
    assert status == 0
    assert json.loads(out)["operational_control_field"]["cop_in_effect"] == 1
    frame = TmFrame(icd.SPACECRAFT_ID, 1, 0, 0, 0x7FE, bytes(8)).encode(16)
    status, out, _ = decode(capsys, "--no-ocf", "--tm-frame-length", "16", frame.hex())
    assert status == 0
    assert "operational_control_field" not in json.loads(out)
    status, out, err = decode(capsys, "--tm-frame-length", "12", V9.hex())
    assert (status, out) == (1, "")
    assert err == (
        "penumbra decode: --tm-frame-length: TM frame length 12 outside 13..2048 "
        "(132.0-B-3 4.1.1)\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # truncated: the frame length field asks for more octets than there are
        (
            ["--as", "tc-frame", V11[:-4].hex()],
            "tc-frame: frame length field says 24 octets, only 20 present (at octet 2)",
        ),
        # bad CRC
        (
            ["--as", "tc-frame", (V11[:-1] + b"\xee").hex()],
            "tc-frame: TC frame: CRC-16 is 0x0dee, expected 0x0def (at octet 22)",
        ),
        # bad length: the packet data length field disagrees with the octets given
        (
            ["--as", "pus", (V5 + b"\x00").hex()],
            "pus: packet data length says 13 octets, buffer has 14 (at octet 4)",
        ),
        (
            ["--as", "cobs", "03 11 22"],
            None,  # a nested error: reported by path, checked below
        ),
    ],
)
def test_malformed_input_exits_1_naming_the_problem_and_the_octet(capsys, argv, message) -> None:
    status, out, err = decode(capsys, *argv)
    assert status == 1
    if message is None:
        assert json.loads(out)["kind"] == "cobs"
        assert err == (
            "penumbra decode: cobs.frames[0]: 3 octets after the last 00 delimiter: "
            "the frame is incomplete (at octet 0)\n"
        )
    else:
        assert out == ""
        assert err == f"penumbra decode: {message}\n"


def test_auto_says_why_every_kind_failed_on_one_line(capsys) -> None:
    status, out, err = decode(capsys, (V11[:-1] + b"\xee").hex())
    assert (status, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith("penumbra decode: no kind fits these 24 octets: tm-frame: ")
    assert "tc-frame: TC frame: CRC-16 is 0x0dee, expected 0x0def (at octet 22)" in err


def test_a_nested_error_still_prints_the_json_and_exits_1(capsys) -> None:
    status, out, err = decode(capsys, V6_TM.hex())
    assert status == 1
    assert json.loads(out)["primary_header"]["apid"] == 1
    assert err.startswith("penumbra decode: space-packet.pus: PUS TM packet needs a packet data")
    assert err.endswith("(at octet 4)\n")


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("zz", "no such file: zz (and not hex: 'z' (character 1) is not a hex digit)"),
        (
            "18 02 c",
            "no such file: 18 02 c (and not hex: 5 hex digits: an odd number makes no "
            "whole octets)",
        ),
        (
            "capture.bin",
            "no such file: capture.bin (and not hex: 'p' (character 3) is not a hex digit)",
        ),
        ("18 02 zz", "no such file: 18 02 zz (and not hex: 'z' (character 7) is not a hex digit)"),
        ("  ", "empty argument: give hex octets, a file, or - for standard input"),
    ],
)
def test_a_bad_argument_is_one_clear_line_and_exit_1(capsys, argument, message) -> None:
    status, out, err = decode(capsys, argument)
    assert (status, out) == (1, "")
    assert err == f"penumbra decode: {message}\n"


def test_a_hex_dump_too_long_for_a_file_name_is_read_as_hex(capsys) -> None:
    frame = TmFrame(icd.SPACECRAFT_ID, 7, 0, 0, 0x7FE, bytes(1103), ocf=0).encode()
    status, out, err = decode(capsys, frame.hex())  # 2230 characters: no path can be that long
    assert (status, err) == (0, "")
    assert json.loads(out)["kind"] == "tm-frame"


def test_a_directory_is_refused(tmp_path, capsys) -> None:
    status, _, err = decode(capsys, str(tmp_path))
    assert status == 1
    assert err == f"penumbra decode: {tmp_path} is a directory, not a dump file\n"


def test_an_empty_file_is_reported(tmp_path, capsys) -> None:
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    status, _, err = decode(capsys, str(empty))
    assert status == 1
    assert "empty input" in err


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=40),
    separator=st.sampled_from(["", " ", ":", "\n", "  \t"]),
    prefix=st.booleans(),
    upper=st.booleans(),
)
def test_hex_in_any_allowed_spelling_parses_to_the_octets(data, separator, prefix, upper) -> None:
    groups = [f"{'0x' if prefix else ''}{octet:02x}" for octet in data]
    text = separator.join(groups) if separator or not prefix else data.hex()
    assert parse_hex(text.upper() if upper else text) == data


def test_hex_without_digits_is_refused() -> None:
    with pytest.raises(InputError, match="no hex digits"):
        parse_hex(" : 0x ")


# --- end to end, as an operator runs it ---------------------------------------------------------


def run_cli(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "penumbra", "decode", *argv],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_end_to_end_hex_argument() -> None:
    result = run_cli(V5.hex(" "))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["secondary_header"]["service_name"] == "TEST"
    assert result.stderr == b""


def test_end_to_end_file_stdin_and_as(tmp_path) -> None:
    dump = tmp_path / "pdu.bin"
    dump.write_bytes(V11)
    from_file = run_cli("--as", "tc-frame", str(dump))
    from_stdin = run_cli("--as", "tc-frame", "-", stdin=V11)
    for result in (from_file, from_stdin):
        assert result.returncode == 1  # VC 0 without SDLS, as above
        assert json.loads(result.stdout)["primary_header"]["spacecraft_identifier"] == 123
        assert b"security_header" in result.stderr and b"Traceback" not in result.stderr


def test_end_to_end_bad_input_exits_1_without_a_traceback() -> None:
    result = run_cli("--as", "tc-frame", (V11[:-1] + b"\xee").hex())
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr == (
        b"penumbra decode: tc-frame: TC frame: CRC-16 is 0x0dee, expected 0x0def (at octet 22)\n"
    )
