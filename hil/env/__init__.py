"""Simulated physics around a node: the power system and the orbit that lights it."""

from hil.env.environment import ATTITUDES, SatelliteEnvironment
from hil.env.power import (
    JOULES_PER_WH,
    LI_ION_CELL_OCV,
    SOLAR_CONSTANT_W_M2,
    Battery,
    BatteryStep,
    EnergyTotals,
    PowerState,
    PowerSystem,
    SolarArray,
)

__all__ = [
    "ATTITUDES",
    "JOULES_PER_WH",
    "LI_ION_CELL_OCV",
    "SOLAR_CONSTANT_W_M2",
    "Battery",
    "BatteryStep",
    "EnergyTotals",
    "PowerState",
    "PowerSystem",
    "SatelliteEnvironment",
    "SolarArray",
]
