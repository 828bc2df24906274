"""Power physics by hand: solar array, battery efficiency and clamping, fade, voltage, balance."""

import random

import pytest

from hil.env.power import (
    JOULES_PER_WH,
    SOLAR_CONSTANT_W_M2,
    Battery,
    PowerSystem,
    SolarArray,
)

WH = JOULES_PER_WH
HOUR_S = 3600.0


def test_one_square_metre_at_30_percent_in_full_sun_gives_408_3_w() -> None:
    array = SolarArray(area_m2=1.0, efficiency=0.30)
    assert array.power_w(1.0, 1.0) == pytest.approx(408.3, abs=1e-9)
    assert pytest.approx(408.3) == SOLAR_CONSTANT_W_M2 * 0.30


def test_array_output_scales_with_illumination_and_cosine_and_is_zero_from_behind() -> None:
    array = SolarArray(area_m2=0.5, efficiency=0.2)
    full = array.power_w(1.0, 1.0)
    assert array.power_w(0.5, 1.0) == pytest.approx(full / 2)
    assert array.power_w(1.0, 0.5) == pytest.approx(full / 2)
    assert array.power_w(0.0, 1.0) == 0.0
    assert array.power_w(1.0, -0.7) == 0.0
    assert array.power_w(1.0, 1.0 + 1e-12) == full


def test_charging_stores_net_energy_times_charge_efficiency() -> None:
    battery = Battery(20 * WH, 10 * WH, charge_efficiency=0.9, discharge_efficiency=0.9)
    step = battery.step(10.0, HOUR_S)
    assert battery.energy_j == pytest.approx(19 * WH)  # +10 Wh offered, 9 Wh stored
    assert step.accepted_j == pytest.approx(10 * WH)
    assert step.loss_j == pytest.approx(1 * WH)
    assert step.wasted_j == 0.0 and step.shortfall_j == 0.0


def test_charging_clamps_at_capacity_and_reports_the_rest_as_wasted() -> None:
    battery = Battery(10 * WH, 5 * WH, charge_efficiency=0.9, discharge_efficiency=0.9)
    step = battery.step(10.0, HOUR_S)  # 9 Wh would be stored; only 5 Wh fit
    assert battery.energy_j == 10 * WH
    assert battery.soc == 1.0
    assert step.accepted_j == pytest.approx(5 * WH / 0.9)
    assert step.wasted_j == pytest.approx(10 * WH - 5 * WH / 0.9)  # 4.44 Wh
    assert step.loss_j == pytest.approx(5 * WH / 0.9 - 5 * WH)


def test_discharging_draws_load_over_discharge_efficiency() -> None:
    battery = Battery(20 * WH, 15 * WH, charge_efficiency=0.9, discharge_efficiency=0.9)
    step = battery.step(-9.0, HOUR_S)
    assert battery.energy_j == pytest.approx(5 * WH)  # 9 Wh delivered cost 10 Wh stored
    assert step.delivered_j == pytest.approx(9 * WH)
    assert step.loss_j == pytest.approx(1 * WH)


def test_an_empty_battery_reports_the_shortfall() -> None:
    battery = Battery(10 * WH, 1 * WH, charge_efficiency=0.9, discharge_efficiency=0.9)
    step = battery.step(-9.0, HOUR_S)
    assert battery.energy_j == 0.0
    assert step.delivered_j == pytest.approx(0.9 * WH)
    assert step.shortfall_j == pytest.approx(9 * WH - 0.9 * WH)


def test_capacity_fade_shrinks_capacity_and_clamps_stored_energy() -> None:
    battery = Battery(10 * WH, 9 * WH)
    battery.fade(0.2)
    assert battery.capacity_j == pytest.approx(8 * WH)
    assert battery.energy_j == pytest.approx(8 * WH)
    assert battery.faded_j == pytest.approx(1 * WH)
    battery.fade(0.5)
    assert battery.capacity_j == pytest.approx(4 * WH)
    assert battery.soc == 1.0
    with pytest.raises(ValueError, match="fade fraction"):
        battery.fade(1.0)


def test_2s_pack_spans_6_0_to_8_4_v_open_circuit_and_sags_under_load() -> None:
    full = Battery.from_wh(10.0, 1.0)
    empty = Battery.from_wh(10.0, 0.0)
    assert full.open_circuit_voltage_v == pytest.approx(8.4)
    assert empty.open_circuit_voltage_v == pytest.approx(6.0)
    socs = [i / 20 for i in range(21)]
    ocvs = [Battery.from_wh(10.0, s).open_circuit_voltage_v for s in socs]
    assert ocvs == sorted(ocvs) and len(set(ocvs)) == len(ocvs)

    half = Battery.from_wh(10.0, 0.5, internal_resistance_ohm=0.05)
    ocv = half.open_circuit_voltage_v
    half.step(-30.0, 1.0)  # a heavy load
    assert half.current_a < 0.0
    # The terminal voltage is the open-circuit one less I x R, and carries the power delivered.
    assert half.voltage_v == pytest.approx(half.open_circuit_voltage_v + half.current_a * 0.05)
    assert half.voltage_v * half.current_a == pytest.approx(-30.0)
    assert half.voltage_v < ocv
    charging = Battery.from_wh(10.0, 0.5)
    charging.step(10.0, 1.0)
    assert charging.current_a > 0.0 and charging.voltage_v > charging.open_circuit_voltage_v


def test_under_voltage_comes_near_empty_or_under_heavy_load_not_in_between() -> None:
    undervoltage_v = 6.6
    light_load_w = 5.0
    for soc, expect_low in ((0.5, False), (0.2, False), (0.04, True)):
        battery = Battery.from_wh(43.0, soc)
        battery.step(-light_load_w, 1.0)
        assert (battery.voltage_v < undervoltage_v) is expect_low, (soc, battery.voltage_v)
    weak = Battery.from_wh(43.0, 0.12, internal_resistance_ohm=0.3)
    weak.step(-40.0, 1.0)
    assert weak.voltage_v < undervoltage_v


def test_cell_count_and_resistance_are_parameters() -> None:
    pack = Battery.from_wh(100.0, 1.0, cells_in_series=4, internal_resistance_ohm=0.0)
    assert pack.open_circuit_voltage_v == pytest.approx(16.8)
    pack.step(-16.8, 1.0)
    assert pack.voltage_v == pytest.approx(pack.open_circuit_voltage_v)
    assert pack.current_a == pytest.approx(-16.8 / pack.open_circuit_voltage_v)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"capacity_j": 0.0, "energy_j": 0.0}, "capacity_j"),
        ({"capacity_j": 10.0, "energy_j": 11.0}, "energy_j"),
        ({"capacity_j": 10.0, "energy_j": 5.0, "charge_efficiency": 1.5}, "charge_efficiency"),
        ({"capacity_j": 10.0, "energy_j": 5.0, "discharge_efficiency": 0.0}, "discharge_eff"),
        ({"capacity_j": 10.0, "energy_j": 5.0, "cells_in_series": 0}, "cells_in_series"),
        ({"capacity_j": 10.0, "energy_j": 5.0, "ocv_curve": ((0.0, 3.0), (0.5, 3.5))}, "OCV"),
    ],
)
def test_a_battery_that_cannot_exist_is_refused_with_words(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Battery(**kwargs)


def test_power_system_nets_solar_against_bus_and_payload() -> None:
    system = PowerSystem(SolarArray(0.1, 0.3), Battery.from_wh(20.0, 0.5), bus_load_w=5.0)
    state = system.step(60.0, illumination=1.0, cos_incidence=1.0, payload_w=15.0)
    solar_w = SOLAR_CONSTANT_W_M2 * 0.1 * 0.3  # 40.83 W
    assert state.solar_power_w == pytest.approx(solar_w)
    assert state.load_power_w == 20.0 and state.payload_power_w == 15.0
    assert state.energy_j == pytest.approx(10 * WH + (solar_w - 20.0) * 60.0 * 0.95)
    assert state.battery_current_a > 0.0
    eclipse = system.step(60.0, illumination=0.0, cos_incidence=1.0, payload_w=15.0)
    assert eclipse.solar_power_w == 0.0
    assert eclipse.energy_j == pytest.approx(state.energy_j - 20.0 * 60.0 / 0.95)
    assert eclipse.battery_current_a < 0.0


def test_energy_balances_over_random_steps_with_clamping_shortfall_and_fade() -> None:
    rng = random.Random(5)
    system = PowerSystem(SolarArray(0.2, 0.28), Battery.from_wh(5.0, 0.5), bus_load_w=4.0)
    for i in range(5000):
        light = rng.choice([0.0, 1.0, rng.random()])
        payload = rng.choice([0.0, 3.0, 15.0, 40.0])
        system.step(rng.uniform(0.0, 120.0), light, rng.uniform(-0.2, 1.0), payload)
        if i > 2500 and system.battery.soc == 1.0 and system.battery.faded_j == 0.0:
            system.battery.fade(0.3)
    totals = system.totals
    # The run must have hit every case the balance has to account for.
    assert totals.wasted_j > 0 and totals.shortfall_j > 0 and totals.faded_j > 0
    assert abs(totals.balance_error_j) <= 1e-6 * totals.harvested_j


def test_a_load_beyond_the_packs_maximum_power_pins_it_at_half_its_open_circuit_voltage() -> None:
    battery = Battery.from_wh(10.0, 0.5, internal_resistance_ohm=0.3)
    battery.step(-1000.0, 1.0)  # more than ocv^2 / 4R = 46 W
    ocv = battery.open_circuit_voltage_v  # at the end of the step, as the reading is
    assert battery.current_a == pytest.approx(-ocv / 0.6)
    assert battery.voltage_v == pytest.approx(ocv / 2)
