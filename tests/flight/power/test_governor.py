"""The governor's policies and its state-of-charge prediction, without a node."""

import math
from dataclasses import replace

import pytest

from flight.payload import JobState, JobView
from flight.power.governor import (
    AlwaysOn,
    EnergyAware,
    EnergyModel,
    Outlook,
    Segment,
    SunlitOnly,
    Threshold,
    predict_min_soc,
)

WH = 3600.0
MODEL = EnergyModel(
    capacity_j=43 * WH,
    solar_power_w=30.0,
    bus_power_w=5.0,
    payload_idle_w=3.0,
    payload_busy_w=15.0,
    max_workers=4,
    charge_efficiency=1.0,
    discharge_efficiency=1.0,
)
ORBIT = (  # 60 min of sunlight, then a 36 min eclipse, then sunlight again
    Segment(0.0, 3600.0, 1.0),
    Segment(3600.0, 3600.0 + 2160.0, 0.0),
    Segment(3600.0 + 2160.0, 20_000.0, 1.0),
)


def job(
    job_id: int,
    *,
    value: float,
    energy_j: float,
    deadline_s: float,
    tiles: int = 10,
    submitted_s: float = 0.0,
) -> JobView:
    return JobView(
        job_id=job_id,
        state=JobState.QUEUED,
        priority=0,
        deadline_tai_s=deadline_s,
        value=value,
        energy_estimate_j=energy_j,
        tiles_total=tiles,
        tiles_done=0,
        submitted_tai_s=submitted_s,
        energy_used_j=0.0,
        model_sha256="0" * 64,
    )


def outlook(
    soc: float,
    now_s: float = 0.0,
    *,
    sunlit: bool = True,
    jobs=(),
    segments=ORBIT,
    thermal: int = 4,
) -> Outlook:
    return Outlook(
        now_s=now_s,
        soc=soc,
        floor_soc=0.70,
        sunlit=sunlit,
        model=MODEL,
        segments=tuple(segments),
        jobs=tuple(jobs),
        tile_time_s={j.job_id: 30.0 for j in jobs},
        max_workers_thermal=thermal,
    )


def test_an_idle_eclipse_drains_bus_and_idle_payload_only() -> None:
    # In the eclipse (8 W for 2160 s = 4.8 Wh of 43 Wh) from a full battery.
    lowest = predict_min_soc(MODEL, 1.0, ORBIT, 3600.0, 0, 3600.0)
    assert lowest == pytest.approx(1.0 - 8.0 * 2160.0 / (43 * WH))


def test_payload_time_costs_exactly_its_extra_power() -> None:
    # 4 workers (12 W more than idle) for 600 s inside the eclipse.
    idle = predict_min_soc(MODEL, 0.9, ORBIT, 3600.0, 0, 3600.0)
    busy = predict_min_soc(MODEL, 0.9, ORBIT, 3600.0, 4, 4200.0)
    assert idle - busy == pytest.approx(12.0 * 600.0 / (43 * WH))


def test_a_full_battery_forgets_what_was_spent_before_it_filled() -> None:
    # Spending in sunlight with a surplus (30 W against 20 W) leaves the battery full anyway.
    assert predict_min_soc(MODEL, 1.0, ORBIT, 0.0, 4, 600.0) == pytest.approx(
        predict_min_soc(MODEL, 1.0, ORBIT, 0.0, 0, 0.0)
    )


def test_efficiencies_make_charging_slower_and_discharging_dearer() -> None:
    lossy = replace(MODEL, discharge_efficiency=0.8)
    drop = 1.0 - predict_min_soc(lossy, 1.0, ORBIT, 3600.0, 0, 3600.0)
    assert drop == pytest.approx(8.0 * 2160.0 / 0.8 / (43 * WH))


def test_energy_aware_runs_everything_in_sunlight_with_a_full_battery() -> None:
    plan = EnergyAware().decide(outlook(1.0, 0.0))
    assert plan.workers == 4


def test_energy_aware_spends_the_eclipse_down_to_the_floor_and_no_further() -> None:
    policy = EnergyAware()
    # Entering the eclipse full: 20 W for 36 min is 12 Wh = 28% of 43 Wh; the floor is 70%,
    # the margin 3%: it can afford all 4 workers now.
    assert policy.decide(outlook(1.0, 3600.0, sunlit=False)).workers == 4
    # Late in the eclipse at 78%: 10 min left at 8 W idle is 3.1%; 60 s at 12 W more is
    # another 0.5%: 78 - 3.1 - 0.5 is above 73, so it still runs; at 75% it would not be ...
    assert policy.decide(outlook(0.78, 5160.0, sunlit=False)).workers == 4
    assert policy.decide(outlook(0.75, 5160.0, sunlit=False)).workers == 0
    # ... and at 74% early in the eclipse idle alone would end it near 63%.
    plan = policy.decide(outlook(0.74, 3600.0, sunlit=False))
    assert plan.workers == 0
    assert "floor" in plan.reason
    assert policy.last_predicted_min_soc < 0.73


def test_energy_aware_never_plans_below_the_floor_over_many_states() -> None:
    policy = EnergyAware()
    for soc in [i / 100 for i in range(60, 101)]:
        for now in range(0, 8000, 250):
            plan = policy.decide(outlook(soc, float(now), sunlit=now < 3600 or now > 5760))
            if plan.workers:
                lowest = predict_min_soc(MODEL, soc, ORBIT, float(now), plan.workers, now + 60.0)
                assert lowest >= 0.70 + policy.margin_soc - 1e-12


def test_energy_aware_starts_feasible_jobs_by_value_per_joule() -> None:
    jobs = [
        job(1, value=1.0, energy_j=100.0, deadline_s=10_000.0),
        job(2, value=10.0, energy_j=100.0, deadline_s=10_000.0),
        job(3, value=50.0, energy_j=100.0, deadline_s=100.0),  # 10 tiles x 30 s: too late
        job(4, value=10.0, energy_j=50.0, deadline_s=10_000.0),
    ]
    plan = EnergyAware().decide(outlook(1.0, 0.0, jobs=jobs))
    assert plan.order == (4, 2, 1)


def test_thermal_headroom_limits_every_policy() -> None:
    for policy in (EnergyAware(), AlwaysOn(), Threshold(), SunlitOnly()):
        assert policy.decide(outlook(1.0, 0.0, thermal=1)).workers == 1


def test_always_on_stops_at_the_floor_and_resumes_above_it() -> None:
    policy = AlwaysOn()
    jobs = [
        job(2, value=1, energy_j=1, deadline_s=1e9, submitted_s=5.0),
        job(1, value=9, energy_j=1, deadline_s=1e9, submitted_s=6.0),
    ]
    assert policy.decide(outlook(0.80, jobs=jobs)).order == (2, 1)  # first come, first served
    assert policy.decide(outlook(0.70)).workers == 0
    assert policy.decide(outlook(0.71)).workers == 0
    assert policy.decide(outlook(0.72)).workers == 4


def test_threshold_has_hysteresis() -> None:
    policy = Threshold(on_soc=0.60, off_soc=0.45)
    socs = [0.7, 0.5, 0.44, 0.5, 0.59, 0.61, 0.5]
    assert [policy.decide(outlook(s)).workers for s in socs] == [4, 4, 0, 0, 0, 4, 4]
    with pytest.raises(ValueError, match="below on"):
        Threshold(on_soc=0.4, off_soc=0.5)


def test_sunlit_only_follows_the_sun() -> None:
    policy = SunlitOnly()
    assert policy.decide(outlook(0.9, sunlit=True)).workers == 4
    assert policy.decide(outlook(1.0, sunlit=False)).workers == 0


def test_without_a_forecast_energy_aware_assumes_a_long_eclipse_now() -> None:
    policy = EnergyAware()
    assert policy.decide(outlook(1.0, segments=())).workers == 4
    assert policy.decide(outlook(0.76, segments=())).workers == 0
    assert not math.isnan(policy.last_predicted_min_soc)
