"""Coulomb counting: the arithmetic, and tracking the simulated battery over several orbits."""

from collections.abc import Callable

import pytest

from flight.orbit import Orbit
from flight.power import CoulombCounter
from flight.power.soc import LI_ION_CELL_OCV, ocv_v, soc_at_ocv
from hil.env import Battery, PowerSystem, SatelliteEnvironment, SolarArray

EPOCH_UNIX_S = 1_700_000_000.0
CAPACITY_J = 43.0 * 3600.0  # the 43 Wh battery


def test_update_integrates_terminal_power_over_capacity() -> None:
    counter = CoulombCounter(3600.0, soc=0.5)
    assert counter.update(1.0, 8.0, 45.0) == pytest.approx(0.6)  # +360 J of 3600 J
    assert counter.update(-2.0, 7.5, 60.0) == pytest.approx(0.35)  # -900 J
    assert counter.energy_j == pytest.approx(0.35 * 3600.0)


def test_count_is_clamped_to_empty_and_full() -> None:
    counter = CoulombCounter(3600.0, soc=0.1, reanchor=False)
    assert counter.update(-5.0, 7.0, 100.0) == 0.0
    assert counter.update(5.0, 8.0, 1000.0) == 1.0


def test_end_of_charge_re_anchors_to_full() -> None:
    counter = CoulombCounter(3600.0, soc=0.4)  # 2S default: full at >= 0.995 x 8.4 V
    assert counter.full_voltage_v == pytest.approx(8.358)
    counter.update(1.0, 8.3, 1.0)  # still charging hard: no anchor
    assert counter.soc < 0.5 and counter.anchors == 0
    counter.update(0.01, 8.39, 1.0)  # at full voltage, current tapered off
    assert counter.soc == 1.0 and counter.anchors == 1
    counter.update(0.0, 8.4, 1.0)
    assert counter.anchors == 1  # already full: nothing corrected


def test_set_from_voltage_inverts_the_open_circuit_curve() -> None:
    counter = CoulombCounter(3600.0)
    for soc in (0.0, 0.03, 0.25, 0.5, 0.77, 1.0):
        pack_v = 2 * ocv_v(soc)
        assert counter.set_from_voltage(pack_v) == pytest.approx(soc, abs=1e-12)
    assert counter.set_from_voltage(9.0) == 1.0
    assert counter.set_from_voltage(5.0) == 0.0
    assert soc_at_ocv(LI_ION_CELL_OCV[3][1]) == pytest.approx(LI_ION_CELL_OCV[3][0])


def test_fade_keeps_the_energy_estimate_on_a_smaller_capacity() -> None:
    counter = CoulombCounter(3600.0, soc=0.5)
    counter.fade(0.2)
    assert counter.capacity_j == pytest.approx(2880.0)
    assert counter.soc == pytest.approx(1800.0 / 2880.0)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: CoulombCounter(0.0), "capacity_j"),
        (lambda: CoulombCounter(10.0, soc=1.5), "not in 0..1"),
        (lambda: CoulombCounter(10.0).update(float("nan"), 7.0, 1.0), "current"),
        (lambda: CoulombCounter(10.0).update(1.0, 7.0, -1.0), "dt_s"),
        (lambda: CoulombCounter(10.0).fade(1.0), "fade"),
        (lambda: CoulombCounter(10.0, ocv_curve=((0.0, 4.0), (1.0, 3.0))), "OCV"),
    ],
)
def test_bad_arguments_are_refused_with_words(call: Callable[[], object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        call()


def run_orbits(counter: CoulombCounter, physics_soc: float, orbits: int) -> list[float]:
    """The counter fed by a simulated EPS along 550 km orbits; |estimate - truth| every 2 s."""
    orbit = Orbit.with_beta(550e3, 53.0, 0.0, EPOCH_UNIX_S)
    solar = SolarArray(area_m2=30.0 / (1361.0 * 0.30), efficiency=0.30)  # 30 W in full sun
    battery = Battery(CAPACITY_J, CAPACITY_J * physics_soc)
    power = PowerSystem(solar, battery, bus_load_w=5.0)

    def payload_w() -> float:
        minute = int((env.time_unix_s - EPOCH_UNIX_S) // 60.0)
        return 15.0 if minute % 40 < 20 else 3.0

    env = SatelliteEnvironment(orbit, power, payload_power_w=payload_w, start_unix_s=EPOCH_UNIX_S)
    errors = []
    step_s = 2.0
    for i in range(1, int(orbits * orbit.period_s / step_s)):
        env.advance(EPOCH_UNIX_S + i * step_s)
        reading = env.reading()
        counter.update(reading.battery_current_a, reading.battery_voltage_v, step_s)
        errors.append(abs(counter.soc - battery.soc))
    assert env.min_soc < physics_soc - 0.1  # and the battery really cycled
    return errors


def test_counter_tracks_the_physics_battery_within_a_few_percent_over_six_orbits() -> None:
    counter = CoulombCounter(CAPACITY_J, soc=0.7)
    errors = run_orbits(counter, physics_soc=0.7, orbits=6)
    # It does not know the 0.95 efficiencies: it drifts by a few % per cycle, and each end of
    # charge puts it right (here the clamp at full already does, as the count runs high).
    assert max(errors) < 0.04
    assert max(errors) > 0.005  # the drift is real, not a counter reading the truth


def test_re_anchoring_removes_a_wrong_initial_estimate() -> None:
    wrong = CoulombCounter(CAPACITY_J, soc=0.3)
    errors = run_orbits(wrong, physics_soc=0.8, orbits=3)
    assert errors[0] == pytest.approx(0.5, abs=0.01)
    assert max(errors[len(errors) // 2 :]) < 0.04
    assert wrong.anchors >= 1

    never = CoulombCounter(CAPACITY_J, soc=0.3, reanchor=False)
    errors = run_orbits(never, physics_soc=0.8, orbits=3)
    assert max(errors[len(errors) // 2 :]) > 0.2  # without it, the error stays


def test_datasheet_efficiencies_make_the_count_follow_the_stored_energy() -> None:
    # The physics loses 5% each way; a counter told so tracks it far closer than one counting
    # terminal energy (the test above), which matters on orbits that never fill the battery.
    counter = CoulombCounter(CAPACITY_J, soc=0.7, charge_efficiency=0.95, discharge_efficiency=0.95)
    errors = run_orbits(counter, physics_soc=0.7, orbits=6)
    assert max(errors) < 0.005


def test_charging_stores_less_and_discharging_takes_more_than_the_terminals_see() -> None:
    counter = CoulombCounter(1000.0, soc=0.5, charge_efficiency=0.8, discharge_efficiency=0.5)
    counter.update(1.0, 10.0, 10.0)  # 100 J in at the terminals, 80 J stored
    assert counter.soc == pytest.approx(0.58)
    counter.update(-1.0, 10.0, 10.0)  # 100 J out at the terminals, 200 J drawn
    assert counter.soc == pytest.approx(0.38)
    with pytest.raises(ValueError, match="charge_efficiency"):
        CoulombCounter(1000.0, charge_efficiency=0.0)
