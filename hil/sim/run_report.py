"""The emulator's report: one self-contained report.html (plots embedded as PNG, no scripts, no
network) and metrics.json for machines, from the RunResults of a scenario's policies."""

import base64
import html
import io
import json
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

from hil.sim.results import OffloadFlow, RunResult, Sample
from hil.sim.scenario import EmulatorScenario, LinkDamage

MAX_SATELLITES_DRAWN = 12  # more lines than this read as noise: the rest are in the band
MAX_TIMELINE_ROWS = 24
MAX_MATRIX_SATELLITES = 48  # above this the offload matrix is drawn plane by plane
OFFLOAD_STATUSES = ("completed", "expired", "released", "open")
PLOTS = ("soc", "jobs", "contacts_isl", "offloads")


# -- numbers ------------------------------------------------------------------------------------


def value_done(result: RunResult) -> float:
    """The value of the jobs completed, all satellites together."""
    return float(sum(summary.value_done for summary in result.summaries))


def totals(result: RunResult) -> dict[str, Any]:
    """One policy's run in a few numbers (the summary table's row, metrics.json's totals)."""
    summaries = result.summaries
    statuses = Counter(flow.status for flow in result.offloads)
    return {
        "jobs_submitted": sum(s.jobs_submitted for s in summaries),
        "jobs_done": result.jobs_done,
        "jobs_missed": result.jobs_missed,
        "value_done": value_done(result),
        "offloads": len(result.offloads),
        "offloads_by_status": {status: statuses.get(status, 0) for status in OFFLOAD_STATUSES},
        "min_soc": min((s.min_soc for s in summaries), default=math.nan),
        "time_below_floor_s": sum(s.time_below_floor_s for s in summaries),
        "satellites_below_floor": sum(1 for s in summaries if s.time_below_floor_s > 0),
        "passes": len(result.passes),
        "tm_packets": sum(s.tm_packets for s in summaries),
        "isl_octets_sent": sum(s.isl_octets_sent for s in summaries),
        "boots": sum(s.boots for s in summaries),
        "events_dropped": sum(s.events_dropped for s in summaries),
        "wall_s": result.wall_s,
        "real_time_factor": _finite(result.real_time_factor),
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no Infinity


def summary_rows(results: Sequence[RunResult]) -> tuple[list[str], list[list[str]]]:
    """The summary table as text cells: the CLI prints it, the report shows it."""
    header = [
        "policy",
        "jobs submitted",
        "done",
        "missed",
        "value",
        "offloads",
        "min SoC",
        "below floor",
        "passes",
        "real-time factor",
        "wall",
    ]
    rows = []
    for result in results:
        numbers = totals(result)
        value = numbers["value_done"]
        factor = numbers["real_time_factor"]
        rows.append(
            [
                result.policy,
                str(numbers["jobs_submitted"]),
                str(numbers["jobs_done"]),
                str(numbers["jobs_missed"]),
                f"{value:g}",
                str(numbers["offloads"]),
                f"{numbers['min_soc']:.1%}",
                f"{numbers['time_below_floor_s'] / 60:.1f} sat-min "
                f"({numbers['satellites_below_floor']} sats)",
                str(numbers["passes"]),
                "inf" if factor is None else f"{factor:,.0f}x",
                f"{result.wall_s:,.1f} s",
            ]
        )
    return header, rows


def text_table(results: Sequence[RunResult]) -> str:
    """The summary table in plain aligned text."""
    header, rows = summary_rows(results)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


# -- metrics.json -------------------------------------------------------------------------------


def describe_scenario(scenario: EmulatorScenario) -> dict[str, Any]:
    """What was run, in plain values (the orbits by count and plane, not 1,000 TLEs)."""
    return {
        "name": scenario.name,
        "satellites": len(scenario.orbits),
        "planes": scenario.planes,
        "duration_s": scenario.duration_s,
        "epoch": datetime.fromtimestamp(scenario.epoch_unix_s, UTC).isoformat(),
        "seed": scenario.seed,
        "step_s": scenario.step_s,
        "sample_period_s": scenario.sample_period_s,
        "policies": list(scenario.policies),
        "sites": [asdict(site) for site in scenario.sites],
        "satellite": asdict(scenario.satellite),
        "isl": asdict(scenario.isl),
        "workload": asdict(scenario.workload),
        "cadence": asdict(scenario.cadence),
        "faults": [{"kind": type(f).__name__, **asdict(f)} for f in scenario.all_faults()],
    }


def write_metrics(results: Sequence[RunResult], scenario: EmulatorScenario, out_dir: Path) -> Path:
    """out_dir/metrics.json: the scenario, then per policy its totals and every satellite's
    summary. Keys come in a fixed order, so two runs diff cleanly."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "scenario": describe_scenario(scenario),
        "wall_s": sum(r.wall_s for r in results),
        "policies": {
            result.policy: {
                "totals": totals(result),
                "satellites": [asdict(summary) for summary in result.summaries],
                "run_dir": str(result.run_dir),
            }
            for result in results
        },
    }
    path = out_dir / "metrics.json"
    path.write_text(json.dumps(document, indent=2, default=_json_value, allow_nan=False) + "\n")
    return path


def _json_value(value: object) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


# -- plots --------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    _pyplot().close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _by_satellite(samples: Sequence[Sample]) -> dict[int, list[Sample]]:
    series: dict[int, list[Sample]] = {}
    for sample in samples:
        series.setdefault(sample.sat, []).append(sample)
    for rows in series.values():
        rows.sort(key=lambda s: s.t_s)
    return dict(sorted(series.items()))


def _colour(colours: Any, n: int) -> Any:
    """The n-th of tab20's colours, the ten dark ones first (the pale ones are hard to see)."""
    return colours((2 * n) % 20 + (n // 10) % 2)


def drawn_satellites(satellites: int, limit: int = MAX_SATELLITES_DRAWN) -> list[int]:
    """Up to `limit` satellite indices spread evenly over the constellation (all if fewer)."""
    if satellites <= limit:
        return list(range(satellites))
    return sorted({round(k * (satellites - 1) / (limit - 1)) for k in range(limit)})


def eclipses(rows: Sequence[Sample]) -> list[tuple[float, float]]:
    """(start_s, end_s) of each stretch where illumination < 0.5, from consecutive samples."""
    spans: list[tuple[float, float]] = []
    start = None
    for sample in rows:
        dark = sample.illumination < 0.5
        if dark and start is None:
            start = sample.t_s
        elif not dark and start is not None:
            spans.append((start, sample.t_s))
            start = None
    if start is not None and rows:
        spans.append((start, rows[-1].t_s))
    return spans


def _hours(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(start / 3600, (end - start) / 3600) for start, end in spans]


def plot_soc(results: Sequence[RunResult]) -> str:
    """SoC per satellite over time, a panel per policy, and a strip of each drawn satellite's
    eclipses below (the same orbits for every policy). Above a dozen satellites a spread sample
    is drawn over the band of min, median and max of all."""
    plt = _pyplot()
    satellites = max(r.satellites for r in results)
    drawn = drawn_satellites(satellites)
    colours = plt.get_cmap("tab20")
    heights = [3.0] * len(results) + [0.25 * len(drawn) + 0.6]
    figure, axes = plt.subplots(
        len(results) + 1,
        1,
        figsize=(11, sum(heights)),
        sharex=True,
        gridspec_kw={"height_ratios": heights},
    )
    for axis, result in zip(axes, results, strict=False):
        series = _by_satellite(result.samples)
        if satellites > len(drawn):
            _soc_band(axis, result.samples)
        for n, sat in enumerate(drawn):
            rows = series.get(sat, [])
            axis.plot(
                [s.t_s / 3600 for s in rows],
                [100 * s.soc for s in rows],
                color=_colour(colours, n),
                linewidth=0.9,
                label=f"sat {sat}",
            )
        axis.axhline(100 * result.floor_soc, color="tab:red", linestyle="--", linewidth=0.8)
        axis.set_ylabel("SoC %")
        axis.set_ylim(0, 102)
        axis.set_title(f"{result.policy}: state of charge", fontsize=9, loc="left")
        if len(drawn) <= MAX_SATELLITES_DRAWN:
            axis.legend(fontsize=6, ncol=min(len(drawn), 6) + 1, loc="lower left")
    strip = axes[-1]
    series = _by_satellite(results[0].samples)
    for row, sat in enumerate(drawn):
        strip.broken_barh(
            _hours(eclipses(series.get(sat, []))), (row - 0.4, 0.8), color=_colour(colours, row)
        )
    strip.set_yticks(range(len(drawn)), [f"sat {sat}" for sat in drawn], fontsize=6)
    strip.set_ylim(-0.6, len(drawn) - 0.4)
    strip.invert_yaxis()
    strip.set_title("eclipses (illumination < 0.5)", fontsize=9, loc="left")
    strip.set_xlabel("hours after the start")
    figure.tight_layout()
    return _png(figure)


def _soc_band(axis: Any, samples: Sequence[Sample]) -> None:
    at: dict[float, list[float]] = {}
    for sample in samples:
        at.setdefault(sample.t_s, []).append(100 * sample.soc)
    times = sorted(at)
    hours = [t / 3600 for t in times]
    axis.fill_between(
        hours,
        [min(at[t]) for t in times],
        [max(at[t]) for t in times],
        color="0.85",
        label="all: min..max",
    )
    axis.plot(hours, [statistics.median(at[t]) for t in times], color="0.3", label="median")


def plot_jobs(results: Sequence[RunResult]) -> str:
    """Jobs submitted, completed and missed per policy, as grouped bars."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(5, 1.8 * len(results) + 2), 3.2))
    kinds = (("jobs_submitted", "submitted", "0.7"), ("jobs_done", "completed", "tab:green"))
    kinds += (("jobs_missed", "deadline missed", "tab:red"),)
    width = 0.8 / len(kinds)
    for k, (key, label, colour) in enumerate(kinds):
        heights = [totals(r)[key] for r in results]
        positions = [i + (k - (len(kinds) - 1) / 2) * width for i in range(len(results))]
        bars = axis.bar(positions, heights, width, label=label, color=colour)
        axis.bar_label(bars, fontsize=7)
    axis.set_xticks(range(len(results)), [r.policy for r in results])
    axis.set_ylabel("jobs")
    axis.set_title("jobs per policy", fontsize=9, loc="left")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return _png(figure)


def plot_contacts_and_isl(results: Sequence[RunResult], scenario: EmulatorScenario) -> str:
    """Ground passes as a strip per satellite, then the inter-satellite links up and the ISL
    traffic over time (one line per policy); link damage is marked."""
    plt = _pyplot()
    satellites = max(r.satellites for r in results)
    drawn = drawn_satellites(satellites, MAX_TIMELINE_ROWS)
    figure, (passes_axis, links_axis, rate_axis) = plt.subplots(
        3,
        1,
        figsize=(11, 0.22 * len(drawn) + 5.5),
        sharex=True,
        gridspec_kw={"height_ratios": [0.22 * len(drawn) + 0.6, 2.2, 2.2]},
    )
    first = results[0]
    end_s = first.duration_s
    for row, sat in enumerate(drawn):
        spans = [
            (p.start_s, p.end_s if p.end_s is not None else end_s)
            for p in first.passes
            if p.sat == sat
        ]
        passes_axis.broken_barh(_hours(spans), (row - 0.4, 0.8), color="tab:blue")
    passes_axis.set_yticks(range(len(drawn)), [f"sat {sat}" for sat in drawn], fontsize=6)
    passes_axis.set_ylim(-0.6, len(drawn) - 0.4)
    passes_axis.invert_yaxis()
    passes_axis.set_title(
        f"ground contacts ({first.policy}; {len(first.passes)} passes in all)",
        fontsize=9,
        loc="left",
    )
    for result in results:
        times, links, rates = isl_timeline(result.samples)
        hours = binned([t / 3600 for t in times])
        links_axis.plot(hours, binned(links), linewidth=0.9, label=result.policy)
        rate_axis.plot(hours, binned([r / 1e3 for r in rates]), linewidth=0.9)
    for fault in scenario.all_faults():
        if isinstance(fault, LinkDamage):
            for axis in (links_axis, rate_axis):
                axis.axvline(fault.at_s / 3600, color="tab:red", linestyle=":", linewidth=1)
            links_axis.text(
                fault.at_s / 3600,
                0.05,
                f" link damage {fault.fraction:.0%}",
                transform=links_axis.get_xaxis_transform(),
                fontsize=7,
                color="tab:red",
            )
    links_axis.set_ylabel("ISLs up")
    links_axis.set_title("inter-satellite links in contact (mean per bin)", fontsize=9, loc="left")
    links_axis.legend(fontsize=7)
    rate_axis.set_ylabel("kbit/s")
    rate_axis.set_title("ISL traffic sent by all satellites (mean per bin)", fontsize=9, loc="left")
    rate_axis.set_xlabel("hours after the start")
    figure.tight_layout()
    return _png(figure)


def binned(values: Sequence[float], bins: int = 300) -> list[float]:
    """Means of consecutive runs of `values`, at most `bins` of them: a day of minute samples
    that flicker as links come and go would otherwise paint a solid block."""
    size = max(1, math.ceil(len(values) / bins))
    return [statistics.fmean(values[i : i + size]) for i in range(0, len(values), size)]


def isl_timeline(samples: Sequence[Sample]) -> tuple[list[float], list[float], list[float]]:
    """Per sample instant: the links up (each counted once, from both ends) and the bits per
    second sent over all ISLs since the previous instant."""
    links: dict[float, int] = {}
    octets: dict[float, int] = {}
    for sample in samples:
        links[sample.t_s] = links.get(sample.t_s, 0) + sample.isl_links_up
        octets[sample.t_s] = octets.get(sample.t_s, 0) + sample.isl_octets_sent
    times = sorted(links)
    rates = [0.0]
    for before, now in pairwise(times):
        rates.append(8 * max(octets[now] - octets[before], 0) / (now - before))
    return times, [links[t] / 2 for t in times], rates if times else []


def offload_matrix(flows: Sequence[OffloadFlow], groups: Sequence[int]) -> list[list[int]]:
    """Counts of offloaded jobs from origin group (row) to executor group (column), where
    `groups[sat]` is a satellite's group (itself, or its plane)."""
    size = max(groups, default=-1) + 1
    matrix = [[0] * size for _ in range(size)]
    for flow in flows:
        matrix[groups[flow.origin]][groups[flow.executor]] += 1
    return matrix


def plot_offloads(results: Sequence[RunResult], scenario: EmulatorScenario) -> str:
    """Origin -> executor counts per policy as a heatmap (plane to plane above a few dozen
    satellites)."""
    plt = _pyplot()
    satellites = len(scenario.orbits)
    by_plane = satellites > MAX_MATRIX_SATELLITES
    groups = list(scenario.plane_of) if by_plane else list(range(satellites))
    unit = "plane" if by_plane else "sat"
    figure, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.2), squeeze=False)
    for axis, result in zip(axes[0], results, strict=True):
        matrix = offload_matrix(result.offloads, groups)
        image = axis.imshow(matrix, cmap="Blues", vmin=0, origin="upper")
        size = len(matrix)
        if size <= 24:
            for row in range(size):
                for column in range(size):
                    if matrix[row][column]:
                        axis.text(
                            column, row, matrix[row][column], ha="center", va="center", fontsize=6
                        )
        axis.set_xlabel(f"executor {unit}")
        axis.set_ylabel(f"origin {unit}")
        axis.set_title(f"{result.policy}: {len(result.offloads)} offloads", fontsize=9, loc="left")
        figure.colorbar(image, ax=axis, shrink=0.8)
    figure.tight_layout()
    return _png(figure)


# -- report.html --------------------------------------------------------------------------------


_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
img { max-width: 100%; }
figure { margin: 1em 0 2em; }
figcaption { font-size: 0.9em; color: #555; }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, id_: str) -> str:
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f'<table id="{id_}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _figure(name: str, png: str, caption: str) -> str:
    return (
        f'<figure id="plot-{name}"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{png}"><figcaption>{html.escape(caption)}</figcaption>'
        "</figure>"
    )


def _offload_rows(results: Sequence[RunResult]) -> tuple[list[str], list[list[object]]]:
    header = ["policy", "origin", "executor", "jobs", *OFFLOAD_STATUSES]
    rows: list[list[object]] = []
    for result in results:
        by_pair: dict[tuple[int, int], Counter[str]] = {}
        for flow in result.offloads:
            by_pair.setdefault((flow.origin, flow.executor), Counter())[flow.status] += 1
        ranked = sorted(by_pair.items(), key=lambda item: (-sum(item[1].values()), item[0]))
        for (origin, executor), statuses in ranked[:20]:
            rows.append(
                [
                    result.policy,
                    origin,
                    executor,
                    sum(statuses.values()),
                    *(statuses.get(s, 0) for s in OFFLOAD_STATUSES),
                ]
            )
    return header, rows


def write_report(results: Sequence[RunResult], scenario: EmulatorScenario, out_dir: Path) -> Path:
    """out_dir/report.html: the summary table, the four plots and the offload flows, one file
    that opens offline."""
    if not results:
        raise ValueError("no results to report: run at least one policy")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    described = describe_scenario(scenario)
    satellites = described["satellites"]
    drawn = (
        "every satellite"
        if satellites <= MAX_SATELLITES_DRAWN
        else (
            f"{MAX_SATELLITES_DRAWN} of {satellites} satellites over the min..max band and median"
        )
    )
    header, rows = summary_rows(results)
    offload_header, offload_rows = _offload_rows(results)
    sections = [
        f"<h1>Scenario {html.escape(scenario.name)}</h1>",
        f"<p>{satellites} satellites in {scenario.planes} plane(s), "
        f"{len(scenario.sites)} ground station(s) "
        f"({html.escape(', '.join(site.name for site in scenario.sites))}), "
        f"{scenario.duration_s / 3600:g} h from {described['epoch']}, seed {scenario.seed}; "
        f"{len(described['faults'])} fault(s).</p>",
        "<h2>Summary</h2>",
        _html_table(header, rows, id_="summary"),
        "<h2>State of charge</h2>",
        _figure(
            "soc",
            plot_soc(results),
            f"State of charge of {drawn}, per policy; the floor dashed; eclipses below.",
        ),
        "<h2>Jobs</h2>",
        _figure("jobs", plot_jobs(results), "Jobs submitted, completed and missed per policy."),
        "<h2>Contacts and inter-satellite links</h2>",
        _figure(
            "contacts_isl",
            plot_contacts_and_isl(results, scenario),
            "Ground passes per satellite; inter-satellite links up and their traffic over time.",
        ),
        "<h2>Offload flows</h2>",
        _figure(
            "offloads",
            plot_offloads(results, scenario),
            "Offloaded jobs from origin to executor.",
        ),
        _html_table(offload_header, offload_rows, id_="offloads")
        if offload_rows
        else '<p id="offloads">No job was offloaded.</p>',
    ]
    document = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Penumbra: {html.escape(scenario.name)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
    path = out_dir / "report.html"
    path.write_text(document, encoding="utf-8")
    return path
