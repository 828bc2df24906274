import asyncio
import os
from pathlib import Path

import pytest

from flight.runtime import clock
from flight.runtime.resources import ResourceSample, ResourceSampler

TICKS_PER_S = 100
PAGE_SIZE = 4096


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _write_stat(proc: Path, utime: int, stime: int) -> None:
    # A command name with spaces and a ')' inside, as a process may choose for itself.
    fields = ["S", "1", "1", "1", "0", "-1", "4194560", "100", "0", "0", "0"]
    fields += [str(utime), str(stime), "0", "0", "20", "0", "3", "0", "12345"]
    (proc / "self").mkdir(parents=True, exist_ok=True)
    (proc / "self" / "stat").write_text(f"4242 (penumbra) flight) {' '.join(fields)}\n")


def _fake_proc(tmp_path: Path, utime: int = 0, stime: int = 0) -> Path:
    proc = tmp_path / "proc"
    _write_stat(proc, utime, stime)
    (proc / "self" / "statm").write_text("12000 2500 800 10 0 3000 0\n")
    return proc


def _fake_sys(tmp_path: Path, zones: dict[int, tuple[str, str]]) -> Path:
    root = tmp_path / "sys"
    thermal = root / "class" / "thermal"
    thermal.mkdir(parents=True)
    (thermal / "cooling_device0").mkdir()  # not a zone: ignored
    for number, (kind, millidegrees) in zones.items():
        zone = thermal / f"thermal_zone{number}"
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(millidegrees + "\n")
    return root


def _sampler(tmp_path: Path, proc: Path, sys_root: Path, fake: FakeClock) -> ResourceSampler:
    return ResourceSampler(
        tmp_path,
        proc_root=proc,
        sys_root=sys_root,
        clock=fake,
        clock_ticks_per_s=TICKS_PER_S,
        page_size_bytes=PAGE_SIZE,
    )


def test_cpu_is_zero_first_then_cpu_time_over_loop_time(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, utime=1000, stime=500)
    fake = FakeClock()
    sampler = _sampler(tmp_path, proc, _fake_sys(tmp_path, {}), fake)
    assert sampler.sample().cpu_percent == 0.0
    _write_stat(proc, utime=1030, stime=520)  # 50 ticks = 0.5 s of CPU
    fake.now_s = 2.0
    assert sampler.sample().cpu_percent == pytest.approx(25.0)
    _write_stat(proc, utime=1130, stime=620)  # two cores busy for a second
    fake.now_s = 3.0
    assert sampler.sample().cpu_percent == pytest.approx(200.0)
    # No loop time elapsed (two samples in the same virtual instant): the last value stands.
    assert sampler.sample().cpu_percent == pytest.approx(200.0)


def test_rss_is_resident_pages_times_page_size(tmp_path: Path) -> None:
    sampler = _sampler(tmp_path, _fake_proc(tmp_path), _fake_sys(tmp_path, {}), FakeClock())
    assert sampler.sample().rss_bytes == 2500 * PAGE_SIZE


def test_disk_free_comes_from_the_disk_path(tmp_path: Path) -> None:
    sampler = _sampler(tmp_path, _fake_proc(tmp_path), _fake_sys(tmp_path, {}), FakeClock())
    sample = sampler.sample()
    statvfs = os.statvfs(tmp_path)
    assert sample.disk_free_bytes > 0
    assert abs(sample.disk_free_bytes - statvfs.f_bavail * statvfs.f_frsize) < 64 * 1024**2


@pytest.mark.parametrize(
    ("zones", "chosen"),
    [
        ({0: ("acpitz", "30000"), 1: ("x86_pkg_temp", "55500"), 2: ("cpu-thermal", "61250")}, 2),
        ({0: ("acpitz", "30000"), 3: ("soc", "40000"), 1: ("x86_pkg_temp", "55500")}, 1),
        ({0: ("gpu-thermal", "30000"), 4: ("soc", "40000")}, 4),
        ({10: ("acpitz", "30000"), 2: ("iwlwifi_1", "41000")}, 2),
        ({0: ("GPU-therm", "30000"), 1: ("CPU-therm", "47500")}, 1),
    ],
)
def test_temperature_comes_from_the_cpu_zone_in_order_of_preference(
    tmp_path: Path, zones: dict[int, tuple[str, str]], chosen: int
) -> None:
    sys_root = _fake_sys(tmp_path, zones)
    sampler = _sampler(tmp_path, _fake_proc(tmp_path), sys_root, FakeClock())
    sample = sampler.sample()
    assert sample.cpu_temperature_c == int(zones[chosen][1]) / 1000.0
    assert sampler.thermal_zone == (
        sys_root / "class" / "thermal" / f"thermal_zone{chosen}",
        zones[chosen][0],
    )
    assert sample.notes == ()


def test_no_thermal_zone_gives_none_with_a_note(tmp_path: Path) -> None:
    sampler = _sampler(tmp_path, _fake_proc(tmp_path), tmp_path / "no-sys", FakeClock())
    sample = sampler.sample()
    assert sample.cpu_temperature_c is None
    assert any("no thermal zone" in note for note in sample.notes)


def test_a_zone_that_stops_reading_gives_none_then_is_chosen_again(tmp_path: Path) -> None:
    sys_root = _fake_sys(tmp_path, {0: ("cpu-thermal", "50000"), 1: ("soc", "45000")})
    sampler = _sampler(tmp_path, _fake_proc(tmp_path), sys_root, FakeClock())
    assert sampler.sample().cpu_temperature_c == 50.0
    (sys_root / "class" / "thermal" / "thermal_zone0" / "temp").write_text("garbage\n")
    sample = sampler.sample()
    assert sample.cpu_temperature_c is None
    assert any("thermal_zone0/temp" in note for note in sample.notes)
    (sys_root / "class" / "thermal" / "thermal_zone0" / "temp").write_text("51000\n")
    assert sampler.sample().cpu_temperature_c == 51.0


def test_missing_proc_and_disk_never_raise_and_say_why(tmp_path: Path) -> None:
    sampler = ResourceSampler(
        tmp_path / "no-disk",
        proc_root=tmp_path / "no-proc",
        sys_root=tmp_path / "no-sys",
        clock=FakeClock(),
    )
    sample = sampler.sample()
    assert (sample.cpu_percent, sample.rss_bytes, sample.disk_free_bytes) == (0.0, 0, 0)
    assert sample.cpu_temperature_c is None
    assert [note.split(":")[0] for note in sample.notes] == [
        "CPU unknown",
        "RSS unknown",
        "disk free unknown",
        "no CPU temperature",
    ]
    assert "no-proc/self/stat" in sample.notes[0]


def test_a_garbled_stat_file_gives_zero_with_a_note(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path)
    (proc / "self" / "stat").write_text("4242 (penumbra) S 1 2\n")
    (proc / "self" / "statm").write_text("")
    sample = _sampler(tmp_path, proc, _fake_sys(tmp_path, {}), FakeClock()).sample()
    assert (sample.cpu_percent, sample.rss_bytes) == (0.0, 0)
    assert any(note.startswith("CPU unknown") for note in sample.notes)
    assert any(note.startswith("RSS unknown") for note in sample.notes)


def test_the_real_process_samples_on_the_loop_clock(tmp_path: Path) -> None:
    async def main() -> tuple[ResourceSample, ResourceSample]:
        sampler = ResourceSampler(tmp_path)
        first = sampler.sample()
        await asyncio.sleep(1.0)
        return first, sampler.sample()

    first, second = clock.run(main(), virtual=True)
    assert first.cpu_percent == 0.0
    assert second.cpu_percent >= 0.0
    assert second.rss_bytes > 1024 * 1024
    assert second.disk_free_bytes > 0
