"""Earth rotation (GMST) and ground-site elevation: passes where the track goes, none where not."""

import datetime as dt
import math

import numpy as np
import pytest
from sgp4.propagation import gstime

from flight.orbit import Forecast, GroundSite, Orbit, OrbitError, elevation_deg, teme_to_ecef
from flight.orbit.timescale import gmst_rad, julian_date_split

EPOCH = dt.datetime(2025, 3, 1, 6, 30, tzinfo=dt.UTC).timestamp()


def test_gmst_matches_vallado_example_3_5() -> None:
    # 1992-08-20 12:14 UT1 -> GMST 152.578787810 deg (Vallado, Example 3-5).
    t = dt.datetime(1992, 8, 20, 12, 14, tzinfo=dt.UTC).timestamp()
    assert math.degrees(gmst_rad(t)) == pytest.approx(152.578787810, abs=1e-6)


def test_gmst_agrees_with_sgp4s_own() -> None:
    times = EPOCH + np.array([0.0, 12_345.6, 86_400.0 * 365])
    jd, fraction = julian_date_split(times)
    theirs = np.array([gstime(a + b) for a, b in zip(jd, fraction, strict=True)])
    assert np.allclose(gmst_rad(times), theirs, atol=1e-8)


def test_satellite_straight_overhead_is_at_90_degrees() -> None:
    orbit = Orbit.circular(550e3, 51.6, 0.0, EPOCH)
    position = orbit.position_m(EPOCH + 600.0)
    ecef = teme_to_ecef(position, EPOCH + 600.0)
    # Geocentric and geodetic latitude differ, so put the site under the geodetic normal.
    longitude = math.degrees(math.atan2(ecef[1], ecef[0]))
    geocentric = math.atan2(ecef[2], math.hypot(ecef[0], ecef[1]))
    geodetic = math.degrees(math.atan(math.tan(geocentric) / (1 - 0.0066943799901)))
    site = GroundSite("below", geodetic, longitude)
    assert elevation_deg(orbit, site, EPOCH + 600.0) > 89.5


def test_site_under_the_ground_track_sees_passes_above_its_mask() -> None:
    orbit = Orbit.circular(550e3, 97.6, 40.0, EPOCH)
    site = GroundSite("kiruna", 67.86, 20.96, altitude_m=390.0, min_elevation_deg=25.0)
    forecast = Forecast.compute(orbit, EPOCH, 86_400.0, sites=[site])
    assert len(forecast.contacts) >= 3
    for contact in forecast.contacts:
        assert contact.kind == "contact"
        assert contact.name == "kiruna"
        assert 30.0 < contact.duration_s < 600.0
        inside = np.linspace(contact.start_unix_s + 0.05, contact.end_unix_s - 0.05, 50)
        assert np.all(elevation_deg(orbit, site, inside) >= 25.0)
        outside = np.array([contact.start_unix_s - 1.0, contact.end_unix_s + 1.0])
        assert np.all(elevation_deg(orbit, site, outside) < 25.0)
    # Nothing missed: between contacts, 5 s samples stay below the mask.
    times = np.arange(EPOCH, EPOCH + 86_400.0, 5.0)
    above = elevation_deg(orbit, site, times) >= 25.0
    in_contact = np.zeros_like(above)
    for contact in forecast.contacts:
        in_contact |= (times >= contact.start_unix_s) & (times < contact.end_unix_s)
    assert np.array_equal(above, in_contact)


def test_equatorial_orbit_never_sees_the_pole() -> None:
    orbit = Orbit.circular(550e3, 0.0, 0.0, EPOCH)
    pole = GroundSite("south pole", -90.0, 0.0, altitude_m=2_835.0, min_elevation_deg=0.0)
    forecast = Forecast.compute(orbit, EPOCH, 86_400.0, sites=[pole])
    assert forecast.contacts == ()
    times = np.arange(EPOCH, EPOCH + 86_400.0, 60.0)
    assert np.max(elevation_deg(orbit, pole, times)) < -30.0


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"latitude_deg": 95.0}, "latitude"),
        ({"longitude_deg": -200.0}, "longitude"),
        ({"min_elevation_deg": 120.0}, "minimum elevation"),
    ],
)
def test_impossible_sites_are_refused(fields: dict[str, float], words: str) -> None:
    site = {"name": "x", "latitude_deg": 0.0, "longitude_deg": 0.0}
    site.update(fields)
    with pytest.raises(OrbitError, match=words):
        GroundSite(**site)  # type: ignore[arg-type]


def test_site_position_is_wgs84_geodetic() -> None:
    # 45 deg N on the Greenwich meridian at sea level (a textbook WGS-84 conversion).
    site = GroundSite("x", 45.0, 0.0)
    assert np.allclose(site.ecef_m(), [4_517_590.879, 0.0, 4_487_348.409], atol=0.01)
    high = GroundSite("y", 0.0, 90.0, altitude_m=1_000.0)
    assert np.allclose(high.ecef_m(), [0.0, 6_379_137.0, 0.0], atol=1e-6)
