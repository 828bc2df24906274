"""Scenario files: every shipped scenario loads as described, and anything wrong in a file is
refused with the file, the key and the reason."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flight.orbit import beta_angle_deg
from hil.sim.scenario import (
    BatteryFade,
    CoreCrash,
    LinkDamage,
    LinkQuality,
    PoissonFaults,
    Reboot,
    ScenarioError,
    load,
    parse,
)

SCENARIOS = Path(__file__).resolve().parents[3] / "scenarios"
MINIMAL = """
[scenario]
duration_h = 2
[constellation]
walker = { total = 4, planes = 2, phasing = 1, altitude_km = 550, inclination_deg = 53 }
"""


def error_of(text: str, source: str = "demo.toml") -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        parse(text, source=source)
    return caught.value


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_scenario_loads(path: Path) -> None:
    scenario = load(path)
    assert scenario.name == path.stem
    assert scenario.duration_s > 0 and scenario.policies


def test_shipped_scenarios_are_the_issue_s_four() -> None:
    assert {p.stem for p in SCENARIOS.glob("*.toml")} >= {"demo", "single", "offload", "large"}
    demo = load(SCENARIOS / "demo.toml")
    assert (len(demo.orbits), demo.planes, len(demo.sites)) == (12, 2, 2)
    assert demo.duration_s == 86_400.0
    assert demo.policies == ("energy_aware", "always_on")
    assert demo.workload.imaging_jobs_per_sunlit_hour > 0
    assert demo.workload.uplinked_jobs_per_pass > 0
    assert demo.orbits[0].position_m(demo.epoch_unix_s) is not None

    single = load(SCENARIOS / "single.toml")
    assert len(single.orbits) == 1 and not single.isl.enabled
    assert abs(beta_angle_deg(single.orbits[0], single.epoch_unix_s)) < 0.1
    assert len(single.policies) == 4

    offload = load(SCENARIOS / "offload.toml")
    assert len(offload.orbits) == 12
    assert offload.faults == (LinkDamage(12 * 3_600.0, 0.30, None),)
    assert (
        offload.workload.imaging_jobs_per_sunlit_hour > demo.workload.imaging_jobs_per_sunlit_hour
    )

    large = load(SCENARIOS / "large.toml")
    assert (len(large.orbits), large.planes, large.isl.topology) == (1_000, 40, "grid")
    assert large.duration_s < demo.duration_s


def test_a_file_reads_into_every_part() -> None:
    scenario = parse(
        MINIMAL
        + """
[[ground_station]]
name = "kiruna"
lat_deg = 67.86
lon_deg = 20.96
min_elevation_deg = 10

[satellite]
battery_wh = 60
max_workers = 2
store_packets = 500

[isl]
topology = "all"
max_range_km = 3000
rate_bps = 1000000
cross_plane_cut_lat_deg = 70

[workload]
imaging_jobs_per_sunlit_hour = 3
tiles_per_job = [2, 5]
deadline_after_s = [600, 1200]
values = [1, 4]
value_weights = [3, 1]

[cadence]
tick_hz = 2
housekeeping_interval_s = 30

[[fault]]
kind = "reboot"
at_h = 1
sat = 3
off_s = 20

[[fault]]
kind = "battery_fade"
at_s = 100
sat = 0
fraction = 0.1

[[fault]]
kind = "core_crash"
at_s = 200
sat = 1

[[fault]]
kind = "link_damage"
at_h = 0.5
fraction = 0.3
duration_h = 1

[[poisson]]
kind = "reboot"
rate_per_hour = 0.5
off_s = 10
""",
        source="all.toml",
    )
    assert scenario.name == "scenario"
    assert [site.name for site in scenario.sites] == ["kiruna"]
    assert scenario.sites[0].min_elevation_deg == 10.0
    assert scenario.satellite.battery_wh == 60.0 and scenario.satellite.max_workers == 2
    assert scenario.satellite.values == (1.0, 4.0) and scenario.satellite.value_weights == (
        3.0,
        1.0,
    )
    assert scenario.store_packets == 500
    assert scenario.isl.max_range_m == 3e6 and scenario.isl.cross_plane_cut_lat_deg == 70.0
    assert isinstance(scenario.isl.rate_bps, float)  # an integer in the file is still a float
    assert scenario.workload.tiles_per_job == (2, 5)
    assert scenario.workload.deadline_after_s == (600.0, 1200.0)
    assert scenario.cadence.tick_hz == 2.0 and scenario.cadence.housekeeping_interval_s == 30.0
    assert scenario.faults == (
        Reboot(3_600.0, 3, 20.0),
        BatteryFade(100.0, 0, 0.1),
        CoreCrash(200.0, 1),
        LinkDamage(1_800.0, 0.3, 3_600.0),
    )
    assert scenario.poisson == (PoissonFaults("reboot", 0.5, off_s=10.0),)
    assert len(scenario.all_faults()) > len(scenario.faults)  # the seeded Poisson reboots


def test_epoch_is_an_iso_8601_utc_time_as_a_string_or_a_toml_datetime() -> None:

    def text(epoch: str) -> str:
        return MINIMAL.replace("duration_h = 2", f"duration_h = 2\nepoch = {epoch}")

    expected = datetime(2026, 3, 1, 6, tzinfo=UTC).timestamp()
    assert parse(text('"2026-03-01T06:00:00Z"')).epoch_unix_s == expected
    assert parse(text("2026-03-01T06:00:00Z")).epoch_unix_s == expected
    scenario = parse(text("2026-03-01T06:00:00Z"))
    assert scenario.orbits[0].epoch_unix_s == pytest.approx(expected, abs=1e-3)
    assert "add Z for UTC" in str(error_of(text('"2026-03-01T06:00:00"')))
    assert "not an ISO-8601 time" in str(error_of(text('"yesterday"')))


def test_tle_file_is_relative_to_the_scenario_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "scenarios"
    (folder / "orbits").mkdir(parents=True)
    (folder / "orbits" / "pair.tle").write_text((SCENARIOS / "single.tle").read_text() * 2)
    path = folder / "pair.toml"
    path.write_text('[scenario]\nduration_h = 1\n[constellation]\ntle_file = "orbits/pair.tle"\n')
    monkeypatch.chdir(tmp_path)  # not the scenario's folder
    scenario = load(Path("scenarios/pair.toml"))
    assert len(scenario.orbits) == 2 and scenario.planes == 1
    assert scenario.name == "pair"
    assert scenario.epoch_unix_s == scenario.orbits[0].epoch_unix_s  # no epoch: the TLEs'

    path.write_text('[scenario]\nduration_h = 1\n[constellation]\ntle_file = "missing.tle"\n')
    error = str(error_of_file(path))
    assert error.startswith(f"{path}: [constellation] tle_file: cannot read ")
    assert "missing.tle" in error

    (folder / "bad.tle").write_text("1 not a tle\n")
    path.write_text('[scenario]\nduration_h = 1\n[constellation]\ntle_file = "bad.tle"\n')
    assert "TLE line 1" in str(error_of_file(path))


def error_of_file(path: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        load(path)
    return caught.value


def test_a_missing_file_and_bad_toml_say_so(tmp_path: Path) -> None:
    assert str(error_of_file(tmp_path / "nope.toml")) == f"{tmp_path / 'nope.toml'}: no such file"
    bad = tmp_path / "bad.toml"
    bad.write_text("[scenario\n")
    assert str(error_of_file(bad)).startswith(f"{bad}: not valid TOML: ")


@pytest.mark.parametrize(
    ("addition", "key", "reason"),
    [
        # unknown sections and keys: say what is allowed
        ("[bogus]\n", "[bogus]", "unknown section; the sections are [scenario], [constellation]"),
        ("[isl]\nspeed = 1\n", "[isl] speed", "unknown key; [isl] takes enabled, topology"),
        (
            "[[fault]]\nkind = 'reboot'\nat_s = 1\nsat = 0\nfraction = 0.5\n",
            "[[fault]] #1 fraction",
            "unknown key; [[fault]] #1 takes kind, at_h, at_s, sat, off_s",
        ),
        # wrong types
        ("[isl]\nrate_bps = 'fast'\n", "[isl] rate_bps", "expected a number, got str 'fast'"),
        ("[isl]\nenabled = 1\n", "[isl] enabled", "expected true or false, got 1"),
        ("[satellite]\nmax_workers = 1.5\n", "[satellite] max_workers", "expected a whole number"),
        ("[workload]\ntiles_per_job = 4\n", "[workload] tiles_per_job", "expected [low, high]"),
        ("[isl]\nrate_bps = true\n", "[isl] rate_bps", "expected a number, got bool True"),
        # bad values, in the dataclasses' own words
        ("[isl]\nrate_bps = -1\n", "[isl] rate_bps", "must be > 0 bits per second, not -1"),
        ("[isl]\ntopology = 'mesh'\n", "[isl] topology", "'mesh' is not one of ('grid', 'all')"),
        ("[isl]\nmax_range_km = 0\n", "[isl] max_range_km", "must be > 0 km, not 0"),
        ("[cadence]\ntick_hz = 0\n", "[cadence] tick_hz", "must be in 0.01..1000, not 0"),
        ("[workload]\ntiles_per_job = [5, 2]\n", "[workload] tiles_per_job", "1 <= low <= high"),
        ("[workload]\nvalues = [1, 2]\n", "[workload] value_weights", "one weight per value"),
        ("[satellite]\nfloor_soc = 1.5\n", "[satellite] floor_soc", "1.5 is outside 0..0.99"),
        ("[satellite]\npayload_busy_w = 1\n", "[satellite] payload_busy_w", "below payload_idle_w"),
        ("[[poisson]]\nkind = 'meteor'\nrate_per_hour = 1\n", "[[poisson]] #1 kind", "'meteor'"),
        (
            "[[poisson]]\nkind = 'reboot'\nrate_per_hour = -1\n",
            "[[poisson]] #1 rate_per_hour",
            "must be >= 0, not -1",
        ),
        (
            "[[fault]]\nkind = 'reboot'\nat_h = 1\nsat = 4\n",
            "[[fault]] #1 sat",
            "satellite 4 is not one of 0..3",
        ),
        (
            "[[fault]]\nkind = 'reboot'\nat_h = 3\nsat = 0\n",
            "[[fault]] #1 at_h",
            "not before the run's end",
        ),
        (
            "[[fault]]\nkind = 'battery_fade'\nat_h = 1\nsat = 0\nfraction = 1\n",
            "[[fault]] #1 fraction",
            "must be below 1, not 1",
        ),
        ("[[fault]]\nkind = 'link_damage'\nat_h = 1\n", "[[fault]] #1 fraction", "missing"),
        ("[[fault]]\nkind = 'link_quality'\nat_h = 1\n", "[[fault]] #1 rate_bps", "missing"),
        (
            "[[fault]]\nkind = 'link_quality'\nat_h = 1\nrate_bps = 1e3\nbetween = [0, 7]\n",
            "[[fault]] #1 between",
            "satellite 7 is not one of 0..3",
        ),
        (
            "[[fault]]\nkind = 'link_quality'\nat_h = 1\nbit_error_rate = 2\n",
            "[[fault]] #1 bit_error_rate",
            "2 is outside",
        ),
        ("[[fault]]\nkind = 'flood'\nat_h = 1\n", "[[fault]] #1 kind", "'flood' is not a fault"),
        ("[[fault]]\nkind = 'core_crash'\nsat = 0\n", "[[fault]] #1 at_h", "give at_h or at_s"),
        (
            "[[ground_station]]\nname = 'a'\nlat_deg = 95\nlon_deg = 0\n",
            "[[ground_station]] #1 lat_deg",
            "95 is outside -90..90",
        ),
        (
            "[[ground_station]]\nname = 'a'\nlat_deg = 1\nlon_deg = 0\n"
            "[[ground_station]]\nname = 'a'\nlat_deg = 2\nlon_deg = 0\n",
            "[[ground_station]] #1 name",
            "names two stations",
        ),
    ],
)
def test_each_error_names_the_file_the_key_and_the_reason(
    addition: str, key: str, reason: str
) -> None:
    error = error_of(MINIMAL + addition, source="scenarios/demo.toml")
    assert str(error).startswith(f"scenarios/demo.toml: {key}: "), str(error)
    assert reason in str(error)
    assert (error.source, error.key) == ("scenarios/demo.toml", key)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("[scenario]\nduration_h = 1\n", "[constellation]", "missing: give walker"),
        (MINIMAL.replace("duration_h = 2", ""), "[scenario] duration_h", "missing"),
        (
            MINIMAL.replace("duration_h = 2", "duration_h = 2\nduration_s = 5"),
            "[scenario] duration_h",
            "not both",
        ),
        (
            MINIMAL.replace("duration_h = 2", "duration_h = 2\nstep_s = 0"),
            "[scenario] step_s",
            "0 is outside",
        ),
        (
            MINIMAL.replace("duration_h = 2", "duration_h = 2\npolicies = ['greedy']"),
            "[scenario] policies",
            "'greedy' is not a policy; choose from 'energy_aware'",
        ),
        (
            MINIMAL.replace("duration_h = 2", "duration_h = 2\npolicies = []"),
            "[scenario] policies",
            "expected a list of policy names",
        ),
        (
            MINIMAL.replace("duration_h = 2", "duration_h = 2\nname = 'a/b'"),
            "[scenario] name",
            "names the output directory",
        ),
        (
            MINIMAL.replace("total = 4", "total = 5"),
            "[constellation] walker",
            "total must be a multiple of planes",
        ),
        (
            MINIMAL.replace("altitude_km = 550, ", ""),
            "[constellation] walker altitude_km",
            "missing",
        ),
        (
            MINIMAL.replace("phasing = 1", "phasing = 1, spin = 2"),
            "[constellation] walker spin",
            "unknown key",
        ),
    ],
)
def test_scenario_and_constellation_errors_name_their_key(text: str, key: str, reason: str) -> None:
    error = error_of(text)
    assert str(error).startswith(f"demo.toml: {key}: "), str(error)
    assert reason in str(error)


def test_link_quality_and_poisson_link_damage_read_from_a_file() -> None:
    scenario = parse(
        MINIMAL + "[[fault]]\nkind = 'link_quality'\nat_s = 60\nrate_bps = 1e6\n"
        "bit_error_rate = 1e-6\nbetween = [2, 1]\n"
        "[[poisson]]\nkind = 'link_damage'\nrate_per_hour = 3\nfraction = 0.2\n"
        "duration_s = 300\n",
        source="demo.toml",
    )
    assert scenario.faults == (LinkQuality(60.0, 1e6, 1e-6, (1, 2)),)
    damage = [f for f in scenario.all_faults() if isinstance(f, LinkDamage)]
    # One process for the constellation (not one per satellite): about 3 an hour for 2 hours.
    assert 1 <= len(damage) <= 15
    assert all(f.fraction == 0.2 and f.duration_s == 300.0 and f.at_s < 7_200 for f in damage)
