"""What one emulator run leaves for the report and for machines: samples per satellite, passes,
inter-satellite link use, offload flows and per-satellite totals (`Emulator.result()`)."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Sample:
    """One satellite at one instant (every `sample_period_s`). Job counts are cumulative over
    the run (all boots); `isl_octets_sent` too."""

    t_s: float
    sat: int
    soc: float  # the physics' true state of charge, 0..1
    illumination: float  # 0 in umbra .. 1 in full sunlight
    contact: bool  # a ground station sees it
    payload_power_w: float
    jobs_queued: int  # admitted here, not finished
    jobs_done: int  # finished here (its own and offloaded to it)
    jobs_missed: int  # expired here, or unfinished past their deadline
    isl_links_up: int  # its inter-satellite links in contact now
    isl_octets_sent: int


@dataclass(frozen=True, slots=True)
class Pass:
    """One contact of one satellite: when (seconds after the start), over which sites, and how
    many TM packets its station received meanwhile (None while the pass goes on)."""

    sat: int
    start_s: float
    sites: tuple[str, ...]
    end_s: float | None = None
    tm_packets: int | None = None


@dataclass(frozen=True, slots=True)
class OffloadFlow:
    """One offloaded job: who made it, who ran it, who holds its result (None if no one:
    the job did not complete), and how it ended ("completed", "expired", "released", or
    "open" at the end of the run). Times in seconds after the start."""

    job: str  # "origin:local_id"
    origin: int
    executor: int
    bound_s: float
    holder: int | None = None
    status: str = "open"
    closed_s: float | None = None


@dataclass(frozen=True, slots=True)
class SatelliteSummary:
    sat: int
    name: str
    boots: int
    jobs_submitted: int  # made or uplinked at this satellite
    jobs_done: int  # run to completion here
    jobs_missed: int
    jobs_offloaded: int  # of its own, bound to another satellite
    jobs_run_for_others: int
    results_held: int  # results stored here for the ground (own and others')
    min_soc: float
    time_below_floor_s: float
    passes: int
    tm_packets: int
    isl_octets_sent: int
    events_dropped: int
    value_done: float = 0.0  # the value of the jobs completed here


@dataclass(frozen=True, slots=True)
class RunResult:
    """One policy's run of a scenario."""

    scenario: str
    policy: str
    satellites: int
    duration_s: float
    wall_s: float
    floor_soc: float
    samples: tuple[Sample, ...]
    passes: tuple[Pass, ...]
    offloads: tuple[OffloadFlow, ...]
    summaries: tuple[SatelliteSummary, ...]
    run_dir: Path  # holds events.jsonl and each satellite's state and ground archive

    @property
    def real_time_factor(self) -> float:
        return self.duration_s / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def jobs_done(self) -> int:
        return sum(s.jobs_done for s in self.summaries)

    @property
    def jobs_missed(self) -> int:
        return sum(s.jobs_missed for s in self.summaries)
