"""Onboard state-of-charge estimate: coulomb counting of the energy at the battery's terminals.

The node does not know the battery's charge and discharge efficiencies exactly, so it integrates
what it measures (current x voltage) and lets the error grow only until the next end of charge:
when the terminal voltage is at the full-charge voltage and the current has tapered off, the
battery is full, whatever the count said.
"""

import bisect
import itertools
import math

LI_ION_CELL_OCV: tuple[tuple[float, float], ...] = (
    (0.00, 3.00),
    (0.05, 3.30),
    (0.10, 3.45),
    (0.20, 3.58),
    (0.30, 3.65),
    (0.40, 3.70),
    (0.50, 3.75),
    (0.60, 3.82),
    (0.70, 3.90),
    (0.80, 3.98),
    (0.90, 4.08),
    (1.00, 4.20),
)
"""Open-circuit voltage of one Li-ion (NMC) cell against state of charge, piecewise linear.

A plausible generic curve, not a datasheet: steep below 10% (why under-voltage comes near empty),
flat in the middle (why voltage alone is a poor gauge there), 4.2 V at full charge.
"""


def check_ocv_curve(curve: tuple[tuple[float, float], ...]) -> None:
    """Raise ValueError unless `curve` is (soc, volts) points, soc rising 0..1, volts rising."""
    socs = [p[0] for p in curve]
    volts = [p[1] for p in curve]
    if (
        len(curve) < 2
        or socs[0] != 0.0
        or socs[-1] != 1.0
        or any(b <= a for a, b in itertools.pairwise(socs))
        or any(b <= a for a, b in itertools.pairwise(volts))
        or volts[0] <= 0.0
    ):
        raise ValueError(
            "an OCV curve must be (soc, volts) points with soc rising strictly from 0.0 to 1.0 "
            "and volts > 0 rising strictly"
        )


def ocv_v(soc: float, curve: tuple[tuple[float, float], ...] = LI_ION_CELL_OCV) -> float:
    """Open-circuit voltage of one cell at `soc` (clamped to 0..1), interpolated on `curve`."""
    soc = min(1.0, max(0.0, soc))
    i = min(bisect.bisect_right([p[0] for p in curve], soc), len(curve) - 1)
    (s0, v0), (s1, v1) = curve[i - 1], curve[i]
    return v0 + (v1 - v0) * (soc - s0) / (s1 - s0)


def soc_at_ocv(volts: float, curve: tuple[tuple[float, float], ...] = LI_ION_CELL_OCV) -> float:
    """State of charge of one cell showing `volts` open-circuit (clamped to 0..1)."""
    i = min(max(bisect.bisect_right([p[1] for p in curve], volts), 1), len(curve) - 1)
    (s0, v0), (s1, v1) = curve[i - 1], curve[i]
    return min(1.0, max(0.0, s0 + (s1 - s0) * (volts - v0) / (v1 - v0)))


class CoulombCounter:
    """State of charge (0..1) from integrated terminal power over a known capacity.

    The pack is `cells_in_series` cells on `ocv_curve` (used for `set_from_voltage` and for the
    default full-charge voltage). With `reanchor`, a reading at or above `full_voltage_v`
    (default: 99.5% of the pack's full open-circuit voltage) with |current| <= `taper_current_a`
    is an end of charge: the estimate becomes 1.
    `charge_efficiency` and `discharge_efficiency` (from the cell's datasheet) turn terminal
    energy into stored energy: counting terminal energy alone overestimates the charge by the
    losses, a few percent per cycle, and on an orbit that never fills the battery nothing
    re-anchors the error.
    """

    def __init__(
        self,
        capacity_j: float,
        soc: float = 1.0,
        *,
        cells_in_series: int = 2,
        ocv_curve: tuple[tuple[float, float], ...] = LI_ION_CELL_OCV,
        reanchor: bool = True,
        full_voltage_v: float | None = None,
        taper_current_a: float = 0.05,
        charge_efficiency: float = 1.0,
        discharge_efficiency: float = 1.0,
    ) -> None:
        if not (math.isfinite(capacity_j) and capacity_j > 0.0):
            raise ValueError(f"coulomb counter capacity_j={capacity_j} is not > 0")
        if cells_in_series < 1:
            raise ValueError(f"coulomb counter cells_in_series={cells_in_series} is not >= 1")
        check_ocv_curve(ocv_curve)
        if full_voltage_v is None:
            full_voltage_v = 0.995 * cells_in_series * ocv_curve[-1][1]
        if not (math.isfinite(full_voltage_v) and full_voltage_v > 0.0):
            raise ValueError(f"coulomb counter full_voltage_v={full_voltage_v} is not > 0")
        if not (math.isfinite(taper_current_a) and taper_current_a >= 0.0):
            raise ValueError(f"coulomb counter taper_current_a={taper_current_a} is not >= 0")
        for name, efficiency in (
            ("charge_efficiency", charge_efficiency),
            ("discharge_efficiency", discharge_efficiency),
        ):
            if not (math.isfinite(efficiency) and 0.0 < efficiency <= 1.0):
                raise ValueError(f"coulomb counter {name}={efficiency} is not in 0 < x <= 1")
        self.charge_efficiency = float(charge_efficiency)
        self.discharge_efficiency = float(discharge_efficiency)
        self.capacity_j = float(capacity_j)
        self.cells_in_series = cells_in_series
        self.ocv_curve = ocv_curve
        self.reanchor = reanchor
        self.full_voltage_v = float(full_voltage_v)
        self.taper_current_a = float(taper_current_a)
        self._soc = 0.0
        self.anchors = 0  # ends of charge that corrected the count
        self.set(soc)

    @property
    def soc(self) -> float:
        return self._soc

    @property
    def energy_j(self) -> float:
        """Estimated stored energy."""
        return self._soc * self.capacity_j

    def set(self, soc: float) -> None:
        """Replace the estimate (from the EPS's own gauge, a saved value, or an operator)."""
        if not (math.isfinite(soc) and 0.0 <= soc <= 1.0):
            raise ValueError(f"state of charge {soc} is not in 0..1")
        self._soc = float(soc)

    def set_from_voltage(self, voltage_v: float) -> float:
        """Guess the estimate from the pack voltage, as if open-circuit; the soc set.

        Under load the voltage sags and the guess is low: a start, not a measurement. The
        coulomb count and the next end of charge correct it.
        """
        if not (math.isfinite(voltage_v) and voltage_v >= 0.0):
            raise ValueError(f"battery voltage {voltage_v} V is not a voltage >= 0")
        self._soc = soc_at_ocv(voltage_v / self.cells_in_series, self.ocv_curve)
        return self._soc

    def fade(self, fraction: float) -> None:
        """The capacity is `fraction` smaller than believed; the stored energy estimate stays."""
        if not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
            raise ValueError(f"capacity fade fraction={fraction} is not in 0 <= x < 1")
        energy_j = self.energy_j
        self.capacity_j *= 1.0 - fraction
        self._soc = min(1.0, energy_j / self.capacity_j)

    def update(self, current_a: float, voltage_v: float, dt_s: float) -> float:
        """Count `dt_s` seconds at this terminal current (+ = charging) and voltage; the new soc."""
        if not (math.isfinite(current_a) and math.isfinite(voltage_v)):
            raise ValueError(f"coulomb counter got current {current_a} A, voltage {voltage_v} V")
        if not (math.isfinite(dt_s) and dt_s >= 0.0):
            raise ValueError(f"coulomb counter dt_s={dt_s} is not a duration >= 0 s")
        terminal_j = current_a * voltage_v * dt_s
        stored_j = (
            terminal_j * self.charge_efficiency
            if terminal_j >= 0.0
            else terminal_j / self.discharge_efficiency
        )
        soc = self._soc + stored_j / self.capacity_j
        self._soc = min(1.0, max(0.0, soc))
        if (
            self.reanchor
            and voltage_v >= self.full_voltage_v
            and abs(current_a) <= self.taper_current_a
        ):
            if self._soc != 1.0:
                self.anchors += 1
            self._soc = 1.0
        return self._soc
