"""The forecast's intervals, lookups and interpolated illumination."""

import datetime as dt
import itertools

import numpy as np
import pytest

from flight.orbit import Forecast, GroundSite, Interval, Orbit, illumination, sun_position_m

EPOCH = dt.datetime(2025, 3, 1, 6, 30, tzinfo=dt.UTC).timestamp()
HORIZON_S = 12_000.0


def whole_eclipses(forecast: Forecast) -> list[Interval]:
    return [
        interval
        for interval in forecast.of_kind("eclipse")
        if forecast.start_unix_s < interval.start_unix_s
        and interval.end_unix_s < forecast.end_unix_s
    ]


@pytest.fixture(scope="module")
def orbit() -> Orbit:
    # Placed so that the horizon opens in eclipse: the first interval is a cut eclipse.
    return Orbit.with_beta(550e3, 97.6, 0.0, EPOCH, mean_anomaly_deg=200.0)


@pytest.fixture(scope="module")
def forecast(orbit: Orbit) -> Forecast:
    return Forecast.compute(orbit, EPOCH, HORIZON_S)


def test_intervals_tile_the_horizon_alternating(forecast: Forecast) -> None:
    intervals = forecast.intervals
    assert intervals[0].kind == "eclipse"
    assert intervals[0].start_unix_s == EPOCH
    assert intervals[-1].end_unix_s == EPOCH + HORIZON_S
    for before, after in itertools.pairwise(intervals):
        assert before.end_unix_s == after.start_unix_s
        assert before.kind != after.kind
    assert {interval.kind for interval in intervals} == {"sunlit", "eclipse"}
    assert len(whole_eclipses(forecast)) >= 1


def test_boundaries_are_where_illumination_crosses_one_half(
    orbit: Orbit, forecast: Forecast
) -> None:
    for eclipse in whole_eclipses(forecast):
        for boundary, inside in ((eclipse.start_unix_s, 0.5), (eclipse.end_unix_s, -0.5)):
            # Half a second either side lands on opposite sides of 0.5.
            times = np.array([boundary - inside, boundary + inside])
            lit = illumination(orbit.positions_m(times), sun_position_m(times))
            assert lit[0] >= 0.5 > lit[1]


def test_next_returns_the_containing_then_the_following_interval(forecast: Forecast) -> None:
    first_eclipse = whole_eclipses(forecast)[0]
    inside = first_eclipse.start_unix_s + 10.0
    assert forecast.next("eclipse", inside) == first_eclipse
    before = first_eclipse.start_unix_s - 100.0
    assert forecast.next("eclipse", before) == first_eclipse
    second = forecast.next("eclipse", first_eclipse.end_unix_s)
    assert second is not None and second.start_unix_s > first_eclipse.end_unix_s
    sunlit = forecast.next("sunlit", inside)
    assert sunlit is not None and sunlit.start_unix_s == first_eclipse.end_unix_s
    assert forecast.next("eclipse", EPOCH + HORIZON_S + 1.0) is None
    assert forecast.next("contact", EPOCH) is None
    with pytest.raises(ValueError, match="kind"):
        forecast.next("night", EPOCH)


def test_illumination_at_follows_the_model_through_the_penumbra(
    orbit: Orbit, forecast: Forecast
) -> None:
    eclipse = whole_eclipses(forecast)[0]
    times = eclipse.start_unix_s + np.arange(-20.0, 20.0, 0.1)
    truth = illumination(orbit.positions_m(times), sun_position_m(times))
    interpolated = forecast.illumination_at(times)
    assert np.max(np.abs(interpolated - truth)) < 0.05
    assert forecast.illumination_at(eclipse.start_unix_s) == pytest.approx(0.5, abs=0.05)
    assert forecast.illumination_at(eclipse.start_unix_s + 60.0) == 0.0
    assert forecast.illumination_at(eclipse.start_unix_s - 60.0) == 1.0
    assert isinstance(forecast.illumination_at(EPOCH), float)


def test_illumination_outside_the_horizon_is_refused(forecast: Forecast) -> None:
    with pytest.raises(ValueError, match="outside the forecast horizon"):
        forecast.illumination_at(EPOCH + HORIZON_S + 10.0)
    with pytest.raises(ValueError, match="outside the forecast horizon"):
        forecast.illumination_at(np.array([EPOCH - 1.0, EPOCH]))


def test_a_coarse_step_still_finds_short_events(orbit: Orbit) -> None:
    # At 300 s steps a 35-minute eclipse is still found, boundaries refined to the fine answer;
    # a pass of a couple of minutes falls between samples and is found from the sampled peak.
    site = GroundSite("kiruna", 67.86, 20.96, min_elevation_deg=25.0)
    fine = Forecast.compute(orbit, EPOCH, 86_400.0, sites=[site], step_s=10.0)
    coarse = Forecast.compute(orbit, EPOCH, 86_400.0, sites=[site], step_s=300.0)
    assert len(coarse.intervals) == len(fine.intervals)
    for a, b in zip(coarse.intervals, fine.intervals, strict=True):
        assert a.kind == b.kind
        assert a.start_unix_s == pytest.approx(b.start_unix_s, abs=0.05)
    assert len(fine.contacts) >= 3
    assert len(coarse.contacts) == len(fine.contacts)
    for a, b in zip(coarse.contacts, fine.contacts, strict=True):
        assert a.start_unix_s == pytest.approx(b.start_unix_s, abs=0.05)
        assert a.end_unix_s == pytest.approx(b.end_unix_s, abs=0.05)


def test_next_contact_by_site_name(orbit: Orbit) -> None:
    sites = [GroundSite("kiruna", 67.86, 20.96), GroundSite("svalbard", 78.23, 15.39)]
    forecast = Forecast.compute(orbit, EPOCH, 86_400.0, sites=sites)
    names = {contact.name for contact in forecast.contacts}
    assert names == {"kiruna", "svalbard"}
    starts = [contact.start_unix_s for contact in forecast.contacts]
    assert starts == sorted(starts)
    svalbard = forecast.next("contact", EPOCH, name="svalbard")
    assert svalbard is not None and svalbard.name == "svalbard"
    assert forecast.next("contact", EPOCH, name="nowhere") is None


@pytest.mark.parametrize(
    ("horizon_s", "step_s", "words"),
    [(0.0, 30.0, "horizon"), (100.0, -1.0, "step"), (1e9, 1e-3, "samples")],
)
def test_bad_horizon_or_step_is_refused(
    orbit: Orbit, horizon_s: float, step_s: float, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        Forecast.compute(orbit, EPOCH, horizon_s, step_s=step_s)


def test_interval_checks_its_kind_and_order() -> None:
    assert Interval(10.0, 25.0, "eclipse").duration_s == 15.0
    assert Interval(10.0, 25.0, "eclipse").contains(10.0)
    assert not Interval(10.0, 25.0, "eclipse").contains(25.0)
    with pytest.raises(ValueError, match="kind"):
        Interval(0.0, 1.0, "dusk")
    with pytest.raises(ValueError, match="before it starts"):
        Interval(2.0, 1.0, "sunlit")


def test_the_elevation_never_rises_faster_than_the_bound_that_skips_peaks(orbit: Orbit) -> None:
    from flight.orbit.forecast import _elevations, _max_elevation_rise_deg

    step_s = 30.0
    times = EPOCH + np.arange(0.0, 86_400.0, 1.0)
    positions = orbit.positions_m(times)
    window = int(step_s)
    for site in (GroundSite("kiruna", 67.86, 20.96), GroundSite("quito", -0.18, -78.47)):
        elevation = _elevations(positions, times, site)
        rises = elevation[window:] - elevation[:-window]
        bound = _max_elevation_rise_deg(positions, site, step_s)
        assert 0.0 < rises.max() < bound < 90.0


def test_skipping_unreachable_peaks_loses_no_pass(orbit: Orbit) -> None:
    # Passes of about a minute above a 60 deg mask, sampled every 120 s: most fall between
    # two samples and are found from the sampled maxima, which the bound must not skip.
    sites = [
        GroundSite(name, lat, lon, min_elevation_deg=60.0)
        for name, lat, lon in (("kiruna", 67.86, 20.96), ("quito", -0.18, -78.47))
    ]
    fine = Forecast.compute(orbit, EPOCH, 86_400.0, sites=sites, step_s=2.0)
    coarse = Forecast.compute(orbit, EPOCH, 86_400.0, sites=sites, step_s=120.0)
    assert len(fine.contacts) >= 2
    assert all(c.end_unix_s - c.start_unix_s < 120.0 for c in fine.contacts)
    assert [(c.name, round(c.start_unix_s, 1)) for c in coarse.contacts] == [
        (c.name, round(c.start_unix_s, 1)) for c in fine.contacts
    ]
