"""Mission time telemetry: TAI seconds since 1958 from the loop's clock, and uptime."""

import asyncio

from flight.runtime.clock import MissionClock
from flight.runtime.component import Component, Telemetry, rate_group


class MissionTime(Component):
    """Mission time: TAI from the loop's clock (the CUC stamp of every TM packet), and uptime."""

    TAI_S = Telemetry("f64", units="s", doc="TAI seconds since 1958-01-01, as TM stamps carry it.")
    UPTIME_S = Telemetry("f64", units="s", doc="Seconds since the node started (loop clock).")

    def __init__(self, clock: MissionClock | None = None, name: str = "time") -> None:
        super().__init__(name)
        self.clock = clock
        self.started_s: float | None = None

    @rate_group("1Hz")
    def update_telemetry(self) -> None:
        now = asyncio.get_running_loop().time()
        if self.started_s is None:
            self.started_s = now
        self.telemetry.UPTIME_S = now - self.started_s
        if self.clock is not None:
            self.telemetry.TAI_S = self.clock.tai_at(now)
