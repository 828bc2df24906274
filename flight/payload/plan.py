"""What the power governor allows the payload to do now: the plan it applies every control tick."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PayloadPlan:
    """How many jobs may run at once and which may start, in order; `reason` says why (for
    telemetry and events). `cpu_freq_cap_khz` is the cap the governor wants where the board
    allows one (None: no cap); the payload does not act on it itself.

    Running jobs not in `order` keep running unless `workers` is below the number running: then
    the lowest-ranked ones pause at their next tile boundary, checkpointed.
    """

    workers: int  # jobs that may run at once now; 0 = payload shed
    order: tuple[int, ...]  # job ids allowed to START, best first
    reason: str  # why (telemetry / events)
    cpu_freq_cap_khz: int | None = None
