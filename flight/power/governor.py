"""The governor's decision: how many payload workers may run now, and which jobs may start.

Pure functions of an `Outlook` (state of charge, the sunlight forecast, loads, thermal headroom
and the job queue), so each policy can be tested, and compared in the power scenario, without a
node. The `Power` component builds an Outlook every control tick and applies the plan.

Policies (`POLICIES`, chosen by `[power] policy`):
- `energy_aware` (the default): runs as many workers as keep the *predicted* state of charge
  above the floor until the battery is next full, through the coming eclipses; starts the jobs
  that can still meet their deadline, most value per joule first.
- `always_on`: every worker, first come first served, until the floor (resuming 2% above it).
- `threshold`: every worker above 60% state of charge, none below 45% (hysteresis), FIFO.
- `sunlit_only`: every worker while the Sun shines on the array, FIFO.
"""

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from flight.payload import JobState, JobView, PayloadPlan

WAITING = (JobState.QUEUED, JobState.PAUSED)
ACTIVE = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of the forecast (mission TAI seconds) with a constant illumination 0..1."""

    start_s: float
    end_s: float
    illumination: float


@dataclass(frozen=True, slots=True)
class EnergyModel:
    """What the node believes about its power system, in SI units.

    Efficiencies are the battery's round trip split in two: charging stores `charge_efficiency`
    of the surplus, discharging draws `1 / discharge_efficiency` of the deficit.
    """

    capacity_j: float
    solar_power_w: float  # harvest in full sunlight
    bus_power_w: float  # everything but the payload
    payload_idle_w: float
    payload_busy_w: float  # every worker busy
    max_workers: int
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95

    def payload_power_w(self, workers: int) -> float:
        share = min(workers, self.max_workers) / self.max_workers
        return self.payload_idle_w + (self.payload_busy_w - self.payload_idle_w) * share


def predict_min_soc(
    model: EnergyModel,
    soc: float,
    segments: Sequence[Segment],
    now_s: float,
    workers: int,
    busy_until_s: float,
) -> float:
    """The lowest state of charge ahead if `workers` run until `busy_until_s`, then none.

    Only the stretch until the battery is next full matters: a full battery throws away what
    the payload took before it, so nothing spent earlier shows beyond that point.
    """
    energy_j = soc * model.capacity_j
    lowest = soc
    for segment in segments:
        start = max(segment.start_s, now_s)
        if segment.end_s <= start:
            continue
        cuts = sorted({start, segment.end_s, min(max(busy_until_s, start), segment.end_s)})
        for piece_start, piece_end in itertools.pairwise(cuts):
            running = workers if piece_start < busy_until_s else 0
            net_w = (
                model.solar_power_w * segment.illumination
                - model.bus_power_w
                - model.payload_power_w(running)
            )
            duration_s = piece_end - piece_start
            if net_w >= 0:
                energy_j += net_w * model.charge_efficiency * duration_s
                if energy_j >= model.capacity_j and piece_end >= busy_until_s:
                    return lowest  # full again with the payload idle: the rest cannot be lower
                energy_j = min(energy_j, model.capacity_j)
            else:
                energy_j += net_w / model.discharge_efficiency * duration_s
                lowest = min(lowest, energy_j / model.capacity_j)
    return lowest


@dataclass(frozen=True, slots=True)
class Outlook:
    """Everything a policy decides from, at mission time `now_s`."""

    now_s: float
    soc: float
    floor_soc: float
    sunlit: bool
    model: EnergyModel
    segments: tuple[Segment, ...]  # from now to the horizon; empty when there is no forecast
    jobs: tuple[JobView, ...]  # waiting and running
    tile_time_s: Mapping[int, float]  # per job id: seconds a tile takes on one worker
    max_workers_thermal: int  # thermal headroom as a worker limit

    def waiting(self) -> list[JobView]:
        return [job for job in self.jobs if job.state in WAITING]


class Policy:
    """A payload power policy: `decide(outlook)` each control tick. Subclasses keep the little
    state they need (hysteresis)."""

    name = "policy"

    def decide(self, outlook: Outlook) -> PayloadPlan:
        raise NotImplementedError


def fifo(jobs: Sequence[JobView]) -> tuple[int, ...]:
    """First come, first served (ties by id)."""
    return tuple(j.job_id for j in sorted(jobs, key=lambda j: (j.submitted_tai_s, j.job_id)))


def _all_workers(outlook: Outlook) -> int:
    return min(outlook.model.max_workers, outlook.max_workers_thermal)


class AlwaysOn(Policy):
    """Every worker, FIFO, until the floor; on again 2% above it."""

    name = "always_on"
    RESUME_ABOVE_FLOOR = 0.02

    def __init__(self) -> None:
        self.stopped = False

    def decide(self, outlook: Outlook) -> PayloadPlan:
        if outlook.soc <= outlook.floor_soc:
            self.stopped = True
        elif outlook.soc >= outlook.floor_soc + self.RESUME_ABOVE_FLOOR:
            self.stopped = False
        if self.stopped:
            return PayloadPlan(0, (), f"at the floor (state of charge {outlook.soc:.1%})")
        return PayloadPlan(_all_workers(outlook), fifo(outlook.waiting()), "always on")


class Threshold(Policy):
    """Every worker above `on_soc`, none below `off_soc`; FIFO."""

    name = "threshold"

    def __init__(self, on_soc: float = 0.60, off_soc: float = 0.45) -> None:
        if not off_soc < on_soc:
            raise ValueError(f"threshold off {off_soc} must be below on {on_soc}")
        self.on_soc = on_soc
        self.off_soc = off_soc
        self.running = True

    def decide(self, outlook: Outlook) -> PayloadPlan:
        if outlook.soc < self.off_soc:
            self.running = False
        elif outlook.soc > self.on_soc:
            self.running = True
        if not self.running:
            return PayloadPlan(0, (), f"asleep below {self.on_soc:.0%} (at {outlook.soc:.1%})")
        return PayloadPlan(_all_workers(outlook), fifo(outlook.waiting()), "above threshold")


class SunlitOnly(Policy):
    """Every worker while sunlit, none in eclipse; FIFO."""

    name = "sunlit_only"

    def decide(self, outlook: Outlook) -> PayloadPlan:
        if not outlook.sunlit:
            return PayloadPlan(0, (), "in eclipse")
        return PayloadPlan(_all_workers(outlook), fifo(outlook.waiting()), "sunlit")


@dataclass
class EnergyAware(Policy):
    """Run what the battery can afford through the next eclipses; the best jobs first.

    Each tick it looks for the most workers that, running for the next `commit_s`, keep the
    predicted state of charge at least `margin_soc` above the floor until the battery is next
    full. Re-deciding every tick spends the eclipse's energy as the forecast allows and no more.
    Jobs that can no longer meet their deadline are not started; the others start in order of
    value per joule, then earliest deadline.
    """

    name = "energy_aware"
    commit_s: float = 60.0
    margin_soc: float = 0.03
    no_forecast_eclipse_s: float = 2_200.0  # assumed when there is no orbit: a long LEO eclipse
    last_predicted_min_soc: float = field(default=math.nan, init=False)

    def decide(self, outlook: Outlook) -> PayloadPlan:
        segments = outlook.segments or self._assumed_eclipse(outlook)
        limit = outlook.floor_soc + self.margin_soc
        best = 0
        predicted = predict_min_soc(outlook.model, outlook.soc, segments, outlook.now_s, 0, 0.0)
        for workers in range(_all_workers(outlook), 0, -1):
            lowest = predict_min_soc(
                outlook.model,
                outlook.soc,
                segments,
                outlook.now_s,
                workers,
                outlook.now_s + self.commit_s,
            )
            if lowest >= limit:
                best, predicted = workers, lowest
                break
        self.last_predicted_min_soc = predicted
        if best == 0:
            return PayloadPlan(
                0, (), f"predicted state of charge {predicted:.1%} would near the floor"
            )
        return PayloadPlan(best, self.rank(outlook, best), f"affordable: {best} workers")

    def rank(self, outlook: Outlook, workers: int) -> tuple[int, ...]:
        feasible = [
            job
            for job in outlook.waiting()
            if outlook.now_s + (job.tiles_total - job.tiles_done) * outlook.tile_time_s[job.job_id]
            <= job.deadline_tai_s
        ]

        def key(job: JobView) -> tuple[float, float, int]:
            return (-job.value / max(job.energy_estimate_j, 1e-9), job.deadline_tai_s, job.job_id)

        return tuple(job.job_id for job in sorted(feasible, key=key))

    def _assumed_eclipse(self, outlook: Outlook) -> tuple[Segment, ...]:
        # No orbit to forecast from: plan as if the longest eclipse began now.
        end = outlook.now_s + self.no_forecast_eclipse_s
        return (Segment(outlook.now_s, end, 0.0), Segment(end, end + 1e9, 1.0))


POLICIES: dict[str, Callable[[], Policy]] = {
    "energy_aware": EnergyAware,
    "always_on": AlwaysOn,
    "threshold": Threshold,
    "sunlit_only": SunlitOnly,
}
