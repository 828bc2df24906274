"""Onboard orbit knowledge: SGP4 propagation, the Sun, eclipse and the sunlight/contact forecast.

Times are UTC Unix seconds (float); convert mission TAI with
`unix = tai - TAI_EPOCH_TO_UNIX_EPOCH_S - TAI_MINUS_UTC_S`. Positions are TEME metres.
"""

from flight.orbit.eclipse import EARTH_RADIUS_M, SUN_RADIUS_M, illumination
from flight.orbit.errors import OrbitError
from flight.orbit.forecast import INTERVAL_KINDS, Forecast, Interval
from flight.orbit.ground import GroundSite, elevation_deg, teme_to_ecef
from flight.orbit.propagation import Orbit, beta_angle_deg, format_tle, positions_of, tle_checksum
from flight.orbit.sun import ASTRONOMICAL_UNIT_M, sun_position_m

__all__ = [
    "ASTRONOMICAL_UNIT_M",
    "EARTH_RADIUS_M",
    "INTERVAL_KINDS",
    "SUN_RADIUS_M",
    "Forecast",
    "GroundSite",
    "Interval",
    "Orbit",
    "OrbitError",
    "beta_angle_deg",
    "elevation_deg",
    "format_tle",
    "illumination",
    "positions_of",
    "sun_position_m",
    "teme_to_ecef",
    "tle_checksum",
]
