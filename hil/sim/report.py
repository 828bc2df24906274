"""Tables and plots of power scenario results: Markdown for docs/benchmarks.md, a PNG of state of
charge and payload power with the eclipses shaded, and metrics.json for machines."""

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hil.sim.power import PowerResult, PowerScenario, Sample

TARGET_VALUE_GAIN = 0.20  # the target: +20% value over the best safe baseline


def table(results: Sequence[PowerResult]) -> str:
    """One Markdown table: a row per policy and beta angle."""
    lines = [
        "| beta | policy | jobs done / submitted | value done / submitted | deadline misses "
        "| min SoC | time below floor | inferences | energy per inference | solar wasted "
        "| sheds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.beta_deg:g} deg | {r.policy} | {r.jobs_done} / {r.jobs_submitted} "
            f"| {r.value_done:g} / {r.value_submitted:g} | {r.deadline_misses} "
            f"| {r.min_soc:.1%} | {r.time_below_floor_s / 60:.1f} min | {r.tiles_done} "
            f"| {r.energy_per_inference_j:.0f} J | {r.solar_wasted_wh:.1f} Wh | {r.sheds} |"
        )
    return "\n".join(lines)


def verdicts(results: Sequence[PowerResult]) -> list[str]:
    """The issue's target per beta angle, in words: zero floor violations for the energy-aware
    policy, and at least 20% more value than the best baseline that also has none."""
    lines = []
    for beta in sorted({r.beta_deg for r in results}):
        runs = [r for r in results if r.beta_deg == beta]
        ours = next((r for r in runs if r.policy == "energy_aware"), None)
        if ours is None:
            continue
        safe = [r for r in runs if r.policy != "energy_aware" and r.time_below_floor_s == 0]
        best = max(safe, key=lambda r: r.value_done, default=None)
        violation = "none" if ours.time_below_floor_s == 0 else "SOME"
        if best is None:
            lines.append(f"beta {beta:g}: floor violations {violation}; no baseline kept the floor")
            continue
        gain = ours.value_done / best.value_done - 1 if best.value_done else math.inf
        met = ours.time_below_floor_s == 0 and gain >= TARGET_VALUE_GAIN
        lines.append(
            f"beta {beta:g}: energy_aware floor violations {violation}; value {ours.value_done:g} "
            f"against {best.value_done:g} for {best.policy} (the best baseline that kept the "
            f"floor): {gain:+.0%} -> target {'met' if met else 'NOT met'}"
        )
    return lines


def write_metrics(results: Sequence[PowerResult], scenario: PowerScenario, path: Path) -> None:
    rows = []
    for r in results:
        row = asdict(r)
        row.pop("samples")
        rows.append(row)
    document = {"scenario": asdict(scenario), "results": rows, "verdicts": verdicts(results)}
    path.write_text(json.dumps(document, indent=2, default=float) + "\n")


def plot(results: Sequence[PowerResult], path: Path, *, orbits: float = 2.0) -> None:
    """State of charge and payload power over the first `orbits` orbits, one panel per policy,
    eclipses shaded; for the lowest beta angle in `results`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    beta = min(r.beta_deg for r in results)
    runs = [r for r in results if r.beta_deg == beta]
    period_s = 95.68 * 60.0
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.2 * len(runs)), sharex=True)
    axes = list(axes) if len(runs) > 1 else [axes]
    for axis, run in zip(axes, runs, strict=True):
        samples = [s for s in run.samples if s.time_s <= orbits * period_s]
        minutes = [s.time_s / 60 for s in samples]
        _shade_eclipses(axis, samples)
        axis.plot(minutes, [100 * s.soc for s in samples], color="tab:blue", label="SoC (%)")
        axis.axhline(70, color="tab:red", linestyle="--", linewidth=0.8, label="floor")
        axis.set_ylim(50, 102)
        axis.set_ylabel("SoC %")
        axis.set_title(f"{run.policy} (beta {beta:g} deg)", fontsize=9, loc="left")
        power_axis = axis.twinx()
        power_axis.step(
            minutes,
            [s.payload_power_w for s in samples],
            where="post",
            color="tab:orange",
            linewidth=0.8,
            label="payload W",
        )
        power_axis.set_ylim(0, 20)
        power_axis.set_ylabel("payload W")
    axes[-1].set_xlabel("minutes (eclipses shaded)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _shade_eclipses(axis: Any, samples: Sequence[Sample]) -> None:
    start = None
    for sample in samples:
        dark = sample.illumination < 0.5
        if dark and start is None:
            start = sample.time_s
        elif not dark and start is not None:
            axis.axvspan(start / 60, sample.time_s / 60, color="0.85")
            start = None
    if start is not None:
        axis.axvspan(start / 60, samples[-1].time_s / 60, color="0.85")
