"""Resource telemetry of the node's own process: CPU, resident memory, free disk, CPU temperature.

Read from /proc and /sys (Linux), cheap enough for a 1 Hz rate group on a Raspberry Pi. Nothing
here raises for a missing or odd entry (a container without /sys/class/thermal, a chroot without
/proc): the value is reported as 0 or None and the sample says why in `notes`.
"""

import asyncio
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Thermal zone types that are the CPU, best first: Raspberry Pi and Jetson Orin ("cpu-thermal"),
# older Jetsons ("CPU-therm"), Intel ("x86_pkg_temp"), then SoC-wide sensors.
_PREFERRED_ZONE_TYPES = (
    ("cpu-thermal", "cpu_thermal", "cpu-therm"),
    ("x86_pkg_temp",),
    ("soc", "soc-thermal", "soc_thermal"),
)
_ZONE = re.compile(r"thermal_zone(\d+)")


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """One reading. `cpu_percent` is of one core (a busy worker thread can add another 100)."""

    cpu_percent: float
    rss_bytes: int
    disk_free_bytes: int
    cpu_temperature_c: float | None
    notes: tuple[str, ...] = ()
    """Why a value is 0 or None, if it is for a reason other than being so."""


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


class ResourceSampler:
    """Samples the process's resources; CPU is averaged over the loop time between samples.

    `proc_root` and `sys_root` let tests point it at a fake tree; `clock` defaults to the
    running loop's clock.
    """

    def __init__(
        self,
        disk_path: Path,
        *,
        proc_root: Path = Path("/proc"),
        sys_root: Path = Path("/sys"),
        clock: Callable[[], float] = _loop_time,
        clock_ticks_per_s: int | None = None,
        page_size_bytes: int | None = None,
    ) -> None:
        self.disk_path = Path(disk_path)
        self._stat = Path(proc_root) / "self" / "stat"
        self._statm = Path(proc_root) / "self" / "statm"
        self._thermal = Path(sys_root) / "class" / "thermal"
        self._clock = clock
        self._ticks_per_s = clock_ticks_per_s or os.sysconf("SC_CLK_TCK")
        self._page_size = page_size_bytes or os.sysconf("SC_PAGE_SIZE")
        self._previous: tuple[float, float] | None = None  # (loop time, CPU seconds)
        self._cpu_percent = 0.0
        self._zone: Path | None = None
        self._zone_type: str | None = None

    @property
    def thermal_zone(self) -> tuple[Path, str] | None:
        """The thermal zone the temperature comes from and its type, once one was chosen."""
        if self._zone is None or self._zone_type is None:
            return None
        return self._zone, self._zone_type

    def sample(self) -> ResourceSample:
        notes: list[str] = []
        cpu_percent = self._sample_cpu(notes)
        rss_bytes = self._sample_rss(notes)
        disk_free_bytes = self._sample_disk(notes)
        temperature_c = self._sample_temperature(notes)
        return ResourceSample(cpu_percent, rss_bytes, disk_free_bytes, temperature_c, tuple(notes))

    def _sample_cpu(self, notes: list[str]) -> float:
        try:
            text = self._stat.read_text()
            # The command name (field 2) is in parentheses and may itself contain spaces and
            # ')': the fields after the last ')' start at field 3 (state), so utime (field 14)
            # is index 11 and stime (field 15) index 12.
            fields = text[text.rindex(")") + 1 :].split()
            cpu_s = (int(fields[11]) + int(fields[12])) / self._ticks_per_s
        except (OSError, ValueError, IndexError) as exc:
            notes.append(f"CPU unknown: cannot read utime and stime from {self._stat}: {exc}")
            return 0.0
        now = self._clock()
        previous, self._previous = self._previous, (now, cpu_s)
        if previous is None:
            return 0.0
        elapsed_s = now - previous[0]
        if elapsed_s > 0:
            self._cpu_percent = max(0.0, 100.0 * (cpu_s - previous[1]) / elapsed_s)
        return self._cpu_percent

    def _sample_rss(self, notes: list[str]) -> int:
        try:
            return int(self._statm.read_text().split()[1]) * self._page_size
        except (OSError, ValueError, IndexError) as exc:
            notes.append(f"RSS unknown: cannot read resident pages from {self._statm}: {exc}")
            return 0

    def _sample_disk(self, notes: list[str]) -> int:
        try:
            return shutil.disk_usage(self.disk_path).free
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            notes.append(f"disk free unknown: cannot stat {self.disk_path}: {reason}")
            return 0

    def _sample_temperature(self, notes: list[str]) -> float | None:
        zone = self._zone if self._zone is not None else self._choose_zone()
        if zone is None:
            notes.append(f"no CPU temperature: no thermal zone under {self._thermal}")
            return None
        path = zone / "temp"
        try:
            return int(path.read_text().strip()) / 1000.0
        except (OSError, ValueError) as exc:
            notes.append(f"CPU temperature unknown: cannot read {path}: {exc}")
            self._zone = None  # choose again next time: the zone may have gone
            return None

    def _choose_zone(self) -> Path | None:
        zones: list[tuple[int, Path, str]] = []
        try:
            entries = list(self._thermal.iterdir())
        except OSError:
            return None
        for entry in entries:
            match = _ZONE.fullmatch(entry.name)
            if match is None:
                continue
            try:
                kind = (entry / "type").read_text().strip()
            except OSError:
                continue
            zones.append((int(match[1]), entry, kind))
        if not zones:
            return None
        zones.sort()

        def rank(zone: tuple[int, Path, str]) -> int:
            kind = zone[2].lower()
            for tier, kinds in enumerate(_PREFERRED_ZONE_TYPES):
                if kind in kinds:
                    return tier
            return len(_PREFERRED_ZONE_TYPES)

        _, self._zone, self._zone_type = min(zones, key=rank)
        return self._zone
