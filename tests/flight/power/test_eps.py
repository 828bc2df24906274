"""The EPS reading and the simulated driver: fed by a bench or pulled from a source."""

import asyncio
import math

import pytest

from flight.power import Eps, EpsError, EpsReading, SimulatedEps


def reading(**overrides: float | None) -> EpsReading:
    values: dict = {
        "battery_voltage_v": 7.6,
        "battery_current_a": -1.5,
        "solar_power_w": 0.0,
        "load_power_w": 11.4,
    }
    values.update(overrides)
    return EpsReading(**values)


def test_battery_power_is_positive_while_charging() -> None:
    assert reading(battery_current_a=2.0).battery_power_w == pytest.approx(15.2)
    assert reading().battery_power_w == pytest.approx(-11.4)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("battery_voltage_v", math.nan, "battery_voltage_v"),
        ("battery_voltage_v", -1.0, "negative"),
        ("battery_current_a", math.inf, "battery_current_a"),
        ("soc", 1.2, "soc"),
        ("temperature_c", math.nan, "temperature_c"),
    ],
)
def test_impossible_readings_are_refused_with_the_field_named(
    field: str, value: float, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        reading(**{field: value})


def test_simulated_eps_without_a_reading_says_so() -> None:
    eps = SimulatedEps()
    assert isinstance(eps, Eps)
    with pytest.raises(EpsError, match="no reading yet"):
        eps.read()


def test_simulated_eps_returns_the_last_fed_reading() -> None:
    eps = SimulatedEps(name="bench")
    first, second = reading(), reading(battery_current_a=1.0)
    eps.feed(first)
    assert eps.read() is first
    eps.feed(second)
    assert eps.read() is second
    assert eps.read() is second
    with pytest.raises(TypeError, match="EpsReading"):
        eps.feed({"battery_voltage_v": 7.0})  # type: ignore[arg-type]


def test_simulated_eps_pulls_from_its_source_each_read() -> None:
    values = iter([reading(), reading(solar_power_w=20.0)])
    eps = SimulatedEps(lambda: next(values))
    assert eps.read().solar_power_w == 0.0
    assert eps.read().solar_power_w == 20.0


def test_a_failing_source_surfaces_as_eps_error_only() -> None:
    def broken() -> EpsReading:
        raise RuntimeError("bench unplugged")

    with pytest.raises(EpsError, match="bench unplugged"):
        SimulatedEps(broken).read()
    with pytest.raises(EpsError, match="not an EpsReading"):
        SimulatedEps(lambda: 7.4).read()  # type: ignore[arg-type, return-value]


def test_a_fed_reading_older_than_max_age_is_refused_as_stale() -> None:
    from flight.runtime import clock

    reading = EpsReading(
        battery_voltage_v=8.0, battery_current_a=0.0, solar_power_w=0.0, load_power_w=5.0
    )

    async def scenario() -> None:
        eps = SimulatedEps(max_age_s=2.0)
        assert eps.fed
        eps.feed(reading)
        await asyncio.sleep(2.0)
        assert eps.read() == reading
        await asyncio.sleep(0.5)
        with pytest.raises(EpsError, match="2 s old"):
            eps.read()
        eps.feed(reading)
        assert eps.read() == reading
        assert not SimulatedEps(lambda: reading).fed

    clock.run(scenario(), virtual=True)
