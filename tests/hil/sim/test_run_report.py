"""The emulator's report and metrics.json from RunResults made here: every plot is in the one
HTML file, the numbers are the results' own, and the JSON's keys are fixed."""

import base64
import json
import re
from pathlib import Path

import pytest

from hil.sim.results import OffloadFlow, Pass, RunResult, Sample, SatelliteSummary
from hil.sim.run_report import (
    PLOTS,
    binned,
    drawn_satellites,
    eclipses,
    isl_timeline,
    offload_matrix,
    text_table,
    totals,
    write_metrics,
    write_report,
)
from hil.sim.scenario import EmulatorScenario, LinkDamage

PERIOD_S = 60.0


def scenario(satellites: int = 4, planes: int = 2) -> EmulatorScenario:
    return EmulatorScenario.walker(
        satellites,
        planes,
        1,
        name="tiny",
        duration_s=3_600.0,
        policies=("energy_aware", "always_on"),
        faults=(LinkDamage(1_800.0, 0.3),),
    )


def summary(sat: int, **changes: float) -> SatelliteSummary:
    values = dict(
        sat=sat,
        name=f"sat{sat + 1:02d}",
        boots=1,
        jobs_submitted=5,
        jobs_done=3,
        jobs_missed=1,
        jobs_offloaded=1,
        jobs_run_for_others=1,
        results_held=2,
        min_soc=0.8 - 0.01 * sat,
        time_below_floor_s=0.0,
        passes=1,
        tm_packets=100,
        isl_octets_sent=6_000,
        events_dropped=0,
        value_done=2.5,
    )
    values.update(changes)
    return SatelliteSummary(**values)  # type: ignore[arg-type]


def run(policy: str, satellites: int = 4, *, done: int = 3, wall_s: float = 2.0) -> RunResult:
    """An hour of samples: each satellite in eclipse from 20 to 50 minutes, one link up, 100
    octets a minute sent; satellite 0 offloads to satellite 1 twice."""
    samples = tuple(
        Sample(
            t_s=minute * PERIOD_S,
            sat=sat,
            soc=1.0 - 0.003 * minute,
            illumination=0.0 if 20 <= minute < 50 else 1.0,
            contact=minute < 10,
            payload_power_w=3.0,
            jobs_queued=0,
            jobs_done=0,
            jobs_missed=0,
            isl_links_up=1,
            isl_octets_sent=100 * minute,
        )
        for minute in range(61)
        for sat in range(satellites)
    )
    flows = (
        OffloadFlow("1:1", 0, 1, 100.0, 1, "completed", 700.0),
        OffloadFlow("1:2", 0, 1, 200.0, None, "expired", 2_000.0),
    )
    return RunResult(
        scenario="tiny",
        policy=policy,
        satellites=satellites,
        duration_s=3_600.0,
        wall_s=wall_s,
        floor_soc=0.7,
        samples=samples,
        passes=tuple(Pass(sat, 0.0, ("matera",), 600.0, 50) for sat in range(satellites)),
        offloads=flows,
        summaries=tuple(summary(sat, jobs_done=done) for sat in range(satellites)),
        run_dir=Path("out/tiny") / policy,
    )


def test_report_embeds_every_plot_as_a_png_and_needs_nothing_else(tmp_path: Path) -> None:
    results = [run("energy_aware"), run("always_on", done=2)]
    path = write_report(results, scenario(), tmp_path)
    assert path == tmp_path / "report.html"
    page = path.read_text()
    for name in PLOTS:
        figure = re.search(
            rf'<figure id="plot-{name}"><img [^>]*src="data:image/png;base64,([^"]+)"', page
        )
        assert figure is not None, name
        assert base64.b64decode(figure.group(1)).startswith(b"\x89PNG\r\n\x1a\n")
    assert "<script" not in page
    assert "http://" not in page and "https://" not in page
    assert '<table id="summary">' in page and '<table id="offloads">' in page
    assert "<td>energy_aware</td><td>20</td><td>12</td><td>4</td>" in page
    assert "<td>always_on</td><td>20</td><td>8</td><td>4</td>" in page


def test_report_of_a_large_constellation_draws_a_sample_over_the_band(tmp_path: Path) -> None:
    results = [run("energy_aware", satellites=60)]
    page = write_report(results, scenario(60, 6), tmp_path).read_text()
    assert "12 of 60 satellites over the min..max band" in page
    assert page.count("data:image/png;base64,") == len(PLOTS)


def test_report_says_when_no_job_was_offloaded(tmp_path: Path) -> None:
    quiet = run("energy_aware")
    quiet = RunResult(**{**{f: getattr(quiet, f) for f in quiet.__slots__}, "offloads": ()})
    page = write_report([quiet], scenario(), tmp_path).read_text()
    assert "No job was offloaded." in page


def test_report_refuses_no_results(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no results"):
        write_report([], scenario(), tmp_path)


def test_metrics_hold_totals_and_every_satellite_in_a_fixed_key_order(tmp_path: Path) -> None:
    results = [run("energy_aware", wall_s=2.0), run("always_on", done=2, wall_s=0.0)]
    path = write_metrics(results, scenario(), tmp_path)
    assert path == tmp_path / "metrics.json"
    document = json.loads(path.read_text())
    assert list(document) == ["scenario", "wall_s", "policies"]
    assert document["scenario"]["name"] == "tiny"
    assert document["scenario"]["satellites"] == 4
    assert document["scenario"]["faults"] == [
        {"kind": "LinkDamage", "at_s": 1800.0, "fraction": 0.3, "duration_s": None, "sat": -1}
    ]
    assert list(document["policies"]) == ["energy_aware", "always_on"]
    ours = document["policies"]["energy_aware"]
    assert ours["totals"]["jobs_done"] == 12
    assert ours["totals"]["jobs_submitted"] == 20
    assert ours["totals"]["value_done"] == 10.0
    assert ours["totals"]["offloads"] == 2
    assert ours["totals"]["offloads_by_status"] == {
        "completed": 1,
        "expired": 1,
        "released": 0,
        "open": 0,
    }
    assert ours["totals"]["min_soc"] == pytest.approx(0.77)
    assert ours["totals"]["real_time_factor"] == pytest.approx(1_800.0)
    assert document["policies"]["always_on"]["totals"]["real_time_factor"] is None  # no wall
    assert [s["sat"] for s in ours["satellites"]] == [0, 1, 2, 3]
    assert list(ours["satellites"][0]) == list(SatelliteSummary.__dataclass_fields__)
    again = write_metrics(results, scenario(), tmp_path / "again").read_text()
    assert again == path.read_text()


def test_text_table_has_a_row_per_policy() -> None:
    table = text_table([run("energy_aware"), run("always_on", done=2)])
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["policy", "jobs", "submitted", "done"]
    assert lines[2].split()[:5] == ["energy_aware", "20", "12", "4", "10"]
    assert lines[3].split()[:4] == ["always_on", "20", "8", "4"]
    assert "1,800x" in lines[2]


def test_eclipses_are_the_dark_stretches_between_samples() -> None:
    rows = [s for s in run("x").samples if s.sat == 0]
    assert eclipses(rows) == [(20 * PERIOD_S, 50 * PERIOD_S)]
    assert eclipses(rows[25:40]) == [(25 * PERIOD_S, 39 * PERIOD_S)]  # dark to the end


def test_isl_timeline_counts_links_once_and_rates_from_octets() -> None:
    times, links, rates = isl_timeline(run("x").samples)
    assert times[0] == 0.0 and times[-1] == 3_600.0
    assert links[0] == 2.0  # four satellites with one link each: two links
    assert rates[0] == 0.0
    assert rates[1] == pytest.approx(4 * 100 * 8 / PERIOD_S)


def test_offload_matrix_counts_origin_to_executor() -> None:
    flows = run("x").offloads
    assert offload_matrix(flows, [0, 1, 2, 3]) == [
        [0, 2, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]
    assert offload_matrix(flows, [0, 0, 1, 1]) == [[2, 0], [0, 0]]  # by plane


def test_drawn_satellites_spread_over_the_constellation() -> None:
    assert drawn_satellites(5) == [0, 1, 2, 3, 4]
    sample = drawn_satellites(1_000)
    assert len(sample) == 12 and sample[0] == 0 and sample[-1] == 999


def test_totals_are_summed_over_satellites() -> None:
    numbers = totals(run("x"))
    assert numbers["jobs_missed"] == 4
    assert numbers["passes"] == 4
    assert numbers["isl_octets_sent"] == 24_000


def test_binned_averages_runs_down_to_the_bin_count() -> None:
    assert binned([1.0, 3.0, 5.0, 7.0], bins=2) == [2.0, 6.0]
    assert binned([1.0, 2.0], bins=300) == [1.0, 2.0]
    assert len(binned([0.0] * 1_441)) == 289  # a day of minutes in runs of 5
