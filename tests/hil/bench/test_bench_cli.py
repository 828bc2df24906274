"""`penumbra bench run`: the acceptance suite with the bench plugin, for people who do not use
pytest directly; the exit status is pytest's."""

import argparse
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from hil.bench import cli
from penumbra.cli import main

REPO = Path(__file__).resolve().parents[3]
RUN_TIMEOUT_S = 600  # safety net of a whole run on a loaded machine


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(["run", *argv])


def test_the_pytest_command_carries_every_option_with_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command = cli.pytest_command(
        parsed(
            "--target", "pty", "--junit", "out.xml", "-k", "ping", "--record", "rec",
            "--seed", "5", "--tests", "suite", "--", "-x", "-v",
        )
    )  # fmt: skip
    assert command[1:5] == ["-m", "pytest", str(tmp_path / "suite"), "-p"]
    assert command[5] == "hil.bench.plugin"
    text = " ".join(command)
    assert "--target pty" in text and f"--junitxml={tmp_path / 'out.xml'}" in text
    assert "-k ping" in text and f"--bench-record {tmp_path / 'rec'}" in text
    assert "--bench-seed 5" in text and command[-2:] == ["-x", "-v"]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "give --target"),
        (["--target", "can://vcan0"], "not a bench target"),
        (["--target", "serial:/dev/ttyUSB0"], "needs its SDLS key"),
        (["--bench", "missing.toml"], "no such bench file"),
        (["--target", "sil", "--tests", "no/such/suite"], "no test suite at"),
    ],
)
def test_a_run_that_cannot_start_says_why_and_exits_2(argv, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "run", *argv]) == 2
    assert words in capsys.readouterr().err


def test_the_run_exits_with_pytests_status_and_writes_junit_and_records(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_small.py").write_text(
        textwrap.dedent(
            """
            from hil.testapi import equal_to


            async def test_nominal(bench):
                await bench.api.await_telemetry("mode.MODE", equal_to("NOMINAL"))


            def test_plain_failure():
                assert False
            """
        )
    )

    def bench_run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "penumbra", "bench", "run", "--tests", str(suite), *argv],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )

    passed = bench_run(
        "--target", "sil", "-k", "nominal", "--junit", "junit.xml", "--record", "records"
    )
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "bench summary" in passed.stdout
    case = next(ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase"))
    assert case.get("name") == "test_nominal"
    assert (tmp_path / "records" / "test_small__test_nominal" / "link.jsonl").is_file()
    failed = bench_run("--target", "sil", "-k", "plain_failure")
    assert failed.returncode == 1, failed.stdout + failed.stderr
