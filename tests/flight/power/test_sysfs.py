"""Sysfs EPS and cpufreq on fake sysfs trees made of real files (Jetson, Pi-with-gauge, none)."""

import os
from pathlib import Path

import pytest

from flight.power import CpuFrequency, EpsError, SysfsEps


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")


def jetson_hwmon(root: Path) -> Path:
    """An Orin-style INA3221 under the hwmon driver: three labelled rails, shunt inputs too."""
    device = root / "bus/i2c/drivers/ina3221/1-0040"
    hwmon = device / "hwmon/hwmon3"
    rails = {1: ("VDD_IN", 5080, 1520), 2: ("VDD_CPU_GPU_CV", 5072, 710), 3: ("VDD_SOC", 5076, 420)}
    for channel, (label, mv, ma) in rails.items():
        write(hwmon / f"in{channel}_label", label)
        write(hwmon / f"in{channel}_input", str(mv))
        write(hwmon / f"curr{channel}_input", str(ma))
        write(hwmon / f"in{channel}_enable", "1")
        write(hwmon / f"in{channel + 3}_input", "12")  # shunt voltage: no current of its own
    write(hwmon / "name", "ina3221")
    # The class view links to the same device: it must not be counted twice.
    (root / "class/hwmon").mkdir(parents=True, exist_ok=True)
    os.symlink(hwmon, root / "class/hwmon/hwmon3")
    return hwmon


def battery_supply(root: Path, *, status: str = "Discharging", current_ua: int = 850_000) -> Path:
    supply = root / "class/power_supply/BAT0"
    write(supply / "type", "Battery")
    write(supply / "voltage_now", "7612000")
    write(supply / "current_now", str(current_ua))
    write(supply / "capacity", "64")
    write(supply / "status", status)
    write(root / "class/power_supply/AC/type", "Mains")
    return supply


def thermal(root: Path, temps_mc: dict[int, str]) -> None:
    for zone, text in temps_mc.items():
        write(root / f"class/thermal/thermal_zone{zone}/temp", text)


def test_jetson_rails_are_read_in_si_units_once_each(tmp_path: Path) -> None:
    jetson_hwmon(tmp_path)
    rails = SysfsEps(tmp_path).rails()
    assert sorted(rails) == ["VDD_CPU_GPU_CV", "VDD_IN", "VDD_SOC"]
    vdd_in = rails["VDD_IN"]
    assert vdd_in.voltage_v == pytest.approx(5.080)
    assert vdd_in.current_a == pytest.approx(1.520)
    assert vdd_in.power_w == pytest.approx(5.080 * 1.520)


def test_disabled_channel_is_skipped(tmp_path: Path) -> None:
    hwmon = jetson_hwmon(tmp_path)
    write(hwmon / "in3_enable", "0")
    assert "VDD_SOC" not in SysfsEps(tmp_path).rails()


def test_older_iio_layout_rails(tmp_path: Path) -> None:
    iio = tmp_path / "bus/i2c/drivers/ina3221x/0-0040/iio:device0"
    write(iio / "rail_name_0", "VDD_IN")
    write(iio / "in_voltage0_input", "19072")
    write(iio / "in_current0_input", "480")
    write(iio / "rail_name_1", "VDD_GPU")
    write(iio / "in_voltage1_input", "19080")
    write(iio / "in_current1_input", "0")
    rails = SysfsEps(tmp_path).rails()
    assert rails["VDD_IN"].power_w == pytest.approx(19.072 * 0.480)
    assert rails["VDD_GPU"].power_w == 0.0


def test_jetson_without_a_battery_uses_the_named_rails(tmp_path: Path) -> None:
    jetson_hwmon(tmp_path)
    thermal(tmp_path, {0: "41500", 1: "52250", 2: "38000"})
    eps = SysfsEps(
        tmp_path, battery_rail="VDD_IN", payload_rail="VDD_CPU_GPU_CV", load_rail="VDD_IN"
    )
    reading = eps.read()
    assert reading.battery_voltage_v == pytest.approx(5.080)
    assert reading.battery_current_a == pytest.approx(-1.520)  # it feeds the loads
    assert reading.load_power_w == pytest.approx(5.080 * 1.520)
    assert reading.payload_power_w == pytest.approx(5.072 * 0.710)
    assert reading.solar_power_w == 0.0
    assert reading.soc is None
    assert reading.temperature_c == pytest.approx(52.25)


def test_power_supply_battery_sign_follows_status(tmp_path: Path) -> None:
    battery_supply(tmp_path, status="Discharging", current_ua=850_000)
    reading = SysfsEps(tmp_path).read()
    assert reading.battery_voltage_v == pytest.approx(7.612)
    assert reading.battery_current_a == pytest.approx(-0.85)
    assert reading.soc == pytest.approx(0.64)
    assert reading.load_power_w == pytest.approx(7.612 * 0.85)  # the balance without a load rail
    assert reading.temperature_c is None
    battery_supply(tmp_path, status="Charging", current_ua=-400_000)
    assert SysfsEps(tmp_path).read().battery_current_a == pytest.approx(0.4)


def test_power_now_stands_in_for_a_missing_current(tmp_path: Path) -> None:
    supply = battery_supply(tmp_path, status="Discharging")
    (supply / "current_now").unlink()
    write(supply / "power_now", "7612000")  # 7.612 W at 7.612 V
    assert SysfsEps(tmp_path).read().battery_current_a == pytest.approx(-1.0)


def test_nothing_usable_is_an_eps_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(EpsError, match=r"no battery under .*power_supply.*rails found: none"):
        SysfsEps(tmp_path).read()


def test_a_missing_rail_lists_the_rails_there_are(tmp_path: Path) -> None:
    jetson_hwmon(tmp_path)
    eps = SysfsEps(tmp_path, battery_rail="VDD_IN", solar_rail="VBAT_SOLAR")
    with pytest.raises(EpsError, match=r"solar rail 'VBAT_SOLAR' not found.*VDD_CPU_GPU_CV"):
        eps.read()


def test_garbage_in_a_sensor_file_is_an_eps_error_with_the_path(tmp_path: Path) -> None:
    hwmon = jetson_hwmon(tmp_path)
    write(hwmon / "curr1_input", "n/a")
    with pytest.raises(EpsError, match=r"curr1_input: 'n/a' is not a number"):
        SysfsEps(tmp_path).rails()


def test_an_unreadable_thermal_zone_is_skipped(tmp_path: Path) -> None:
    battery_supply(tmp_path)
    thermal(tmp_path, {0: "45000"})
    (tmp_path / "class/thermal/thermal_zone1").mkdir(parents=True)  # no temp file
    assert SysfsEps(tmp_path).read().temperature_c == pytest.approx(45.0)


def test_reading_never_writes(tmp_path: Path) -> None:
    jetson_hwmon(tmp_path)
    battery_supply(tmp_path)
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o444)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    SysfsEps(tmp_path, payload_rail="VDD_CPU_GPU_CV").read()
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


def cpufreq_tree(root: Path) -> list[Path]:
    """Four CPUs in two policies (big.LITTLE-like), shared through symlinks as the kernel does."""
    policies = []
    for index, (low, high) in enumerate(((600_000, 1_800_000), (400_000, 2_400_000))):
        policy = root / f"devices/system/cpu/cpufreq/policy{index * 2}"
        write(policy / "cpuinfo_min_freq", str(low))
        write(policy / "cpuinfo_max_freq", str(high))
        write(policy / "scaling_max_freq", str(high))
        policies.append(policy)
    for cpu in range(4):
        cpu_dir = root / f"devices/system/cpu/cpu{cpu}"
        cpu_dir.mkdir(parents=True)
        os.symlink(policies[cpu // 2], cpu_dir / "cpufreq")
    return policies


def test_cpufreq_limits_and_current_cap(tmp_path: Path) -> None:
    cpufreq_tree(tmp_path)
    cpu = CpuFrequency(tmp_path)
    assert cpu.available
    assert cpu.limits_khz == (400_000, 2_400_000)
    assert cpu.cap_khz == 2_400_000


def test_cpufreq_is_read_only_unless_built_writable(tmp_path: Path) -> None:
    policies = cpufreq_tree(tmp_path)
    with pytest.raises(EpsError, match="read-only"):
        CpuFrequency(tmp_path).cap(1_000_000)
    assert (policies[0] / "scaling_max_freq").read_text().strip() == "1800000"


def test_cpufreq_cap_is_clamped_per_policy_and_none_restores(tmp_path: Path) -> None:
    policies = cpufreq_tree(tmp_path)
    cpu = CpuFrequency(tmp_path, writable=True)
    assert cpu.cap(500_000) == 600_000  # the highest cap applied: the little cores cannot go lower
    assert (policies[0] / "scaling_max_freq").read_text().strip() == "600000"  # its minimum
    assert (policies[1] / "scaling_max_freq").read_text().strip() == "500000"
    cpu.cap(2_000_000)
    assert (policies[0] / "scaling_max_freq").read_text().strip() == "1800000"  # its maximum
    assert cpu.cap_khz == 2_000_000
    assert cpu.cap(None) == 2_400_000
    assert [int((p / "scaling_max_freq").read_text()) for p in policies] == [1_800_000, 2_400_000]


def test_cpufreq_absent_or_unwritable_is_an_eps_error_with_words(tmp_path: Path) -> None:
    cpu = CpuFrequency(tmp_path, writable=True)
    assert not cpu.available
    with pytest.raises(EpsError, match="does not expose CPU frequency"):
        _ = cpu.limits_khz
    policies = cpufreq_tree(tmp_path)
    # A write that fails even for root (tests may run as root): /dev/full refuses every write.
    target = policies[0] / "scaling_max_freq"
    target.unlink()
    target.symlink_to("/dev/full")
    with pytest.raises(EpsError, match=r"scaling_max_freq: cannot write.*needs root or a udev"):
        cpu.cap(1_000_000)
