"""The node's power: EPS drivers, state-of-charge estimate and (later) the governor."""

from flight.power.eps import Eps, EpsError, EpsReading, SimulatedEps
from flight.power.soc import CoulombCounter
from flight.power.sysfs import CpuFrequency, SysfsEps

__all__ = [
    "CoulombCounter",
    "CpuFrequency",
    "Eps",
    "EpsError",
    "EpsReading",
    "SimulatedEps",
    "SysfsEps",
]
