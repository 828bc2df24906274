"""The power scenario, shortened: the real node in virtual time against the physics."""

from dataclasses import replace

import pytest

from hil.sim.power import PowerResult, PowerScenario, run_all
from hil.sim.report import table, verdicts

SHORT = replace(PowerScenario(), duration_s=6_000.0)  # sunlight, the first eclipse, sunlight


@pytest.fixture(scope="module")
def results() -> dict[str, PowerResult]:
    # Two policies on the same jobs, each in its own process (two cores: half the wall time).
    runs = run_all(SHORT, ("energy_aware", "sunlit_only"), betas=(0.0,), processes=2)
    return {result.policy: result for result in runs}


def test_energy_aware_spends_the_eclipse_but_never_crosses_the_floor(results) -> None:
    result = results["energy_aware"]
    assert result.time_below_floor_s == 0.0
    assert result.min_soc >= SHORT.floor_soc
    assert result.min_soc < 0.80  # it used the battery: sunlit-only stays near 0.9
    eclipse = [s for s in result.samples if s.illumination < 0.5]
    assert eclipse, "the scenario must include an eclipse"
    assert max(s.payload_power_w for s in eclipse) == SHORT.payload_busy_w
    assert result.jobs_done > 0
    assert abs(max(s.soc_estimate - s.soc for s in result.samples)) < 0.01
    assert "energy_aware" in table([result])


def test_sunlit_only_idles_in_eclipse_and_the_verdict_compares_safe_baselines(results) -> None:
    sunlit = results["sunlit_only"]
    eclipse = [s for s in sunlit.samples if s.illumination < 0.5]
    assert eclipse
    # A plan for no workers lets the tile in hand finish (30 s), then the payload idles.
    settled = [s for s in eclipse if s.time_s > eclipse[0].time_s + SHORT.tile_time_s + 1.0]
    assert settled
    assert {s.payload_power_w for s in settled} == {SHORT.payload_idle_w}
    assert sunlit.time_below_floor_s == 0.0
    assert sunlit.min_soc > results["energy_aware"].min_soc
    (line,) = verdicts([results["energy_aware"], sunlit])
    assert "against" in line and "sunlit_only" in line
