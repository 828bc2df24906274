"""`penumbra sim run SCENARIO.toml`: a bad file is one line and exit 2; a tiny scenario runs
through the real emulator to report.html and metrics.json; the progress line's two forms."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.sim import cli
from hil.sim.results import RunResult, SatelliteSummary
from penumbra.cli import main

TINY = """
# Two satellites half an orbit apart (never in sight of each other) for half an hour.
[scenario]
name = "tiny"
duration_h = 0.5
policies = ["energy_aware", "always_on"]

[constellation]
walker = { total = 2, planes = 1, altitude_km = 550, inclination_deg = 53 }

[workload]
imaging_jobs_per_sunlit_hour = 6
tiles_per_job = [2, 4]
"""


def test_a_bad_scenario_file_prints_the_reason_and_exits_2_without_a_traceback(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TINY.replace("[workload]", "[isl]\nrate_bps = -1\n[workload]"))
    finished = subprocess.run(
        [sys.executable, "-m", "penumbra", "sim", "run", str(path), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    assert finished.stderr == (
        f"penumbra sim run: {path}: [isl] rate_bps: must be > 0 bits per second, not -1\n"
    )
    assert finished.stdout == ""
    assert not (tmp_path / "tiny").exists()


def test_a_missing_file_and_a_bad_override_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", "run", str(tmp_path / "none.toml")]) == 2
    assert capsys.readouterr().err == f"penumbra sim run: {tmp_path / 'none.toml'}: no such file\n"
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert main(["sim", "run", str(path), "--hours", "0"]) == 2
    assert "--hours must be above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["sim", "run", str(path), "--policy", "greedy"])
    assert exited.value.code == 2
    assert "invalid choice: 'greedy'" in capsys.readouterr().err


def test_a_tiny_scenario_runs_end_to_end_to_the_report_and_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "out"
    assert main(["sim", "run", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    report = out / "tiny" / "report.html"
    metrics = out / "tiny" / "metrics.json"
    assert f"report:  {report}" in printed.out
    assert f"metrics: {metrics}" in printed.out
    table = printed.out.splitlines()
    assert any(line.startswith("energy_aware ") for line in table)
    assert any(line.startswith("always_on ") for line in table)
    assert "100.0%" in printed.err  # the progress line's last update
    document = json.loads(metrics.read_text())
    assert list(document["policies"]) == ["energy_aware", "always_on"]
    for policy in ("energy_aware", "always_on"):
        totals = document["policies"][policy]["totals"]
        assert totals["jobs_submitted"] > 0
        assert len(document["policies"][policy]["satellites"]) == 2
        assert (out / "tiny" / policy / "events.jsonl").is_file()
    assert document["scenario"]["duration_s"] == 1_800.0
    assert report.read_text().count("data:image/png;base64,") == 4


# -- the output, with a stand-in for the emulator ------------------------------------------------


def result(policy: str, duration_s: float) -> RunResult:
    summary = SatelliteSummary(0, "sat01", 1, 4, 3, 1, 0, 0, 3, 0.75, 0.0, 2, 40, 0, 0)
    return RunResult(
        "tiny", policy, 1, duration_s, 1.0, 0.7, (), (), (), (summary,), Path("run") / policy
    )


def test_overrides_reach_the_run_and_the_table_has_a_row_per_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    seen = []

    def stand_in(scenario, out_dir, *, progress):  # type: ignore[no-untyped-def]
        seen.append((scenario, out_dir))
        progress(scenario.duration_s, scenario.duration_s, 1.0)
        return [result(policy, scenario.duration_s) for policy in scenario.policies]

    args = [
        "run",
        str(path),
        "--out",
        str(tmp_path / "out"),
        "--hours",
        "0.25",
        "--policy",
        "sunlit_only",
        "--policy",
        "threshold 90/75",
    ]
    parser = cli.argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run_constellation(parser.parse_args(args), runner=stand_in) == 0
    scenario, out_dir = seen[0]
    assert scenario.duration_s == 900.0
    assert scenario.policies == ("sunlit_only", "threshold 90/75")
    assert out_dir == tmp_path / "out" / "tiny"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("scenario tiny: 2 satellites in 1 plane(s)")
    header = next(n for n, line in enumerate(lines) if line.startswith("policy "))
    assert lines[header + 2].split()[:4] == ["sunlit_only", "4", "3", "1"]
    assert lines[header + 3].split()[:3] == ["threshold", "90/75", "4"]
    assert (tmp_path / "out" / "tiny" / "report.html").is_file()


def test_progress_redraws_one_line_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = cli.Progress(stream, tty=True)
    progress(0.0, 7_200.0, 0.0)
    progress(3_600.0, 7_200.0, 2.0)
    progress(7_200.0, 7_200.0, 4.0)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and text.count("\n") == 1
    middle = text.split("\r")[2]
    assert "[###############...............]  50.0%" in middle
    assert "1:00:00 of 2:00:00 virtual in 2.0 s, 1,800x real time" in middle


def test_progress_writes_a_line_per_update_to_a_file() -> None:
    stream = io.StringIO()
    progress = cli.Progress(stream, tty=False)
    progress(1_800.0, 7_200.0, 1.0)
    progress(7_200.0, 7_200.0, 2.0)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 2
    assert " 25.0%" in lines[0] and "1,800x real time" in lines[0]
    assert "100.0%" in lines[1] and "3,600x real time" in lines[1]


def test_a_real_node_is_refused_with_the_reason_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = ["--out", str(tmp_path)]
    assert main(["sim", "run", str(path), "--real-node", "pty", *out]) == 2
    assert "a real node has no inter-satellite links" in capsys.readouterr().err
    path.write_text(TINY + "\n[isl]\nenabled = false\n")
    assert main(["sim", "run", str(path), "--real-node", "sil", *out]) == 2
    assert "penumbra sim run: --real-node:" in capsys.readouterr().err
    assert main(["sim", "run", str(path), "--real-node", "pty", "--real-sat", "5", *out]) == 2
    assert "real node sat 5 is not one of 0..1" in capsys.readouterr().err
    assert not (tmp_path / "tiny" / "energy_aware" / "sat00" / "state").exists()
