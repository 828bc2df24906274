"""flight.isl.component in real nodes on one virtual-time loop: beacons, routing over two hops,
store-and-forward, and a job offloaded from an overloaded node, its result at the holder."""

import asyncio
from pathlib import Path

import numpy as np
import pytest
from islkit import (
    EPOCH_UNIX_S,
    Constellation,
    add_model,
    make_tiles,
    reference,
    unet_bytes,
    virtual,
    wait_for,
)

from flight.isl import Action, JobId, OriginState
from flight.isl.component import JOB_TAG_PREFIX
from flight.orbit import Forecast, Orbit
from flight.payload import JobState
from flight.payload.storage import read_npy
from flight.runtime.config import ConfigError, parse
from hil.sim.constellation import walker_delta
from hil.sim.scenario import DEFAULT_SITES


def test_neighbours_hear_each_others_beacons_and_forget_a_silent_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Constellation(tmp_path, [1, 2, 3], [(1, 2), (2, 3)]) as sats:
            await asyncio.sleep(12)
            now = asyncio.get_running_loop().time()
            heard = {a: [n.address for n in sats[a].isl.neighbours.live(now)] for a in (1, 2, 3)}
            assert heard == {1: [2], 2: [1, 3], 3: [2]}
            beacon = sats[2].isl.neighbours.get(1, now).beacon
            assert beacon.queue_jobs == 0 and beacon.accepts_offload
            assert sats[2].isl.telemetry.BEACONS_RECEIVED >= 4
            sats.set_up(2, 3, False)
            await asyncio.sleep(20)
            now = asyncio.get_running_loop().time()
            assert [n.address for n in sats[2].isl.neighbours.live(now)] == [1]
            assert sats[2].isl.telemetry.LINKS_UP == 1

    virtual(scenario())


def test_a_packet_is_routed_over_two_hops(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Constellation(tmp_path, [1, 2, 3], [(1, 2), (2, 3)]) as sats:
            await asyncio.sleep(2)
            sats[1].isl.send_data(3, b"hello over two hops", priority=3)
            await wait_for(lambda: sats[3].isl.received_data, timeout_s=5, step_s=0.1)
            packet = sats[3].isl.received_data[0]
            assert (packet.source, packet.payload) == (1, b"hello over two hops")
            assert packet.hop_limit == 15  # one forwarder took one hop
            forwarded = [
                d
                for d in sats[2].isl.decisions
                if d.action is Action.FORWARDED and d.packet.payload == b"hello over two hops"
            ]
            assert [d.next_hop for d in forwarded] == [3]
            assert not sats[2].isl.received_data

    virtual(scenario())


def test_a_source_with_no_path_stores_the_packet_until_the_plan_has_one(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with Constellation(tmp_path, [1, 2, 3], [(1, 2), (2, 3)]) as sats:
            sats.set_up(2, 3, False)
            await asyncio.sleep(2)
            sats[1].isl.send_data(3, b"no path yet")
            await asyncio.sleep(30)
            assert sats[1].isl.router.stored(3)[0].payload == b"no path yet"
            assert not sats[2].isl.router.stored(3)
            sats.set_up(2, 3, True)
            await wait_for(lambda: sats[3].isl.received_data, timeout_s=3, step_s=0.1)
            assert sats[3].isl.received_data[0].payload == b"no path yet"

    virtual(scenario())


def test_store_and_forward_holds_a_packet_until_the_path_comes_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Constellation(tmp_path, [1, 2, 3], [(1, 2), (2, 3)]) as sats:
            # The plan still has 2-3, but node 2 sees its link down: it keeps the packet.
            sats.set_up(2, 3, False, plan=False)
            await asyncio.sleep(2)
            sats[1].isl.send_data(3, b"wait for it")
            await asyncio.sleep(30)
            assert not sats[3].isl.received_data
            assert sats[2].isl.router.stored(3)[0].payload == b"wait for it"
            assert sats[2].isl.telemetry.STORE_PACKETS == 1
            sats.set_up(2, 3, True, plan=False)
            await wait_for(lambda: sats[3].isl.received_data, timeout_s=3, step_s=0.1)
            assert sats[3].isl.received_data[0].payload == b"wait for it"
            assert sats[2].isl.router.counters.stored_packets == 0
            released = [
                d for d in sats[2].isl.decisions if d.action is Action.FORWARDED and d.stored_s
            ]
            assert len(released) == 1 and released[0].stored_s >= 29  # held, then 1 Hz ticks

    virtual(scenario())


def test_an_overloaded_node_offloads_a_job_and_the_result_matches_a_local_run(
    tmp_path: Path,
) -> None:
    model = unet_bytes()
    tiles = [make_tiles(20, seed=s) for s in (1, 2, 3)]

    async def scenario() -> None:
        async with Constellation(tmp_path, [1, 2, 3], [(1, 2), (1, 3), (2, 3)]) as sats:
            # Node 3 is busy with a long job of its own: node 2 is the idle neighbour.
            sha3 = await add_model(sats[3].payload, tmp_path, model)
            clock3 = sats[3].node.clock
            sats[3].payload.submit_tiles(
                sha3,
                make_tiles(200, seed=9),
                priority=1,
                deadline_tai_s=clock3.now_tai_s() + 1000,
                value=1.0,
                energy_estimate_j=1.0,
            )
            await asyncio.sleep(11)  # every beacon heard
            origin = sats[1].payload
            sha = await add_model(origin, tmp_path, model)
            deadline = sats[1].node.clock.now_tai_s() + 45
            ids = [
                origin.submit_tiles(
                    sha,
                    t,
                    priority=1,
                    deadline_tai_s=deadline,
                    value=1.0,
                    energy_estimate_j=2.0,
                )
                for t in tiles
            ]
            await wait_for(
                lambda: all(j.state.final for j in origin.jobs()) and _closed(sats[1]),
                timeout_s=120,
            )
            states = {j.job_id: j.state for j in origin.jobs() if j.job_id in ids}
            assert sorted(states.values()) == [JobState.DONE, JobState.DONE, JobState.OFFLOADED]
            offloaded = next(i for i, s in states.items() if s is JobState.OFFLOADED)
            job = JobId(1, offloaded)
            view = sats[1].isl.ledger.origin_view(job)
            assert view.state is OriginState.CLOSED and view.executor == 2
            # Run once, on node 2, not on node 3 (busy) nor here.
            ran = [j for j in sats[2].payload.jobs() if j.input_name == JOB_TAG_PREFIX + job.name]
            assert [j.state for j in ran] == [JobState.DONE]
            assert not [
                j for j in sats[3].payload.jobs() if j.input_name.startswith(JOB_TAG_PREFIX)
            ]
            # Without an orbit no node knows its next pass: the origin holds the result.
            stored = sats[1].isl.result_file(job)
            expected = reference(model, tiles[ids.index(offloaded)])
            assert np.array_equal(read_npy(stored), expected)
            kinds = [(r.kind, r.status) for r in sats[1].records]
            assert kinds == [
                ("bound", "bound"),
                ("result_stored", "stored"),
                ("closed", "completed"),
            ]
            assert sats[1].records[-1].holder == 1 and sats[1].records[-1].executor == 2

    virtual(scenario())


def _closed(sat) -> bool:
    return any(r.kind == "closed" for r in sat.records)


def test_the_result_goes_to_the_node_that_sees_a_ground_station_next(tmp_path: Path) -> None:
    """Real orbits, real sites, simulated EPS: the holder is whichever of the origin and its
    neighbours has the earliest pass by its own onboard forecast."""
    model = unet_bytes()
    first_pass: list[tuple[float, Orbit]] = []
    for orbit in walker_delta(6, 3, 1, 550e3, 97.6, EPOCH_UNIX_S):  # polar: Svalbard often
        contacts = Forecast.compute(orbit, EPOCH_UNIX_S, 12_000.0, sites=DEFAULT_SITES).contacts
        if contacts:
            first_pass.append((contacts[0].start_unix_s, orbit))
    by_pass = [orbit for _, orbit in sorted(first_pass, key=lambda pair: pair[0])]
    # Node 3 sees the ground first, node 1 (the origin) last of the three.
    chosen = {3: by_pass[0], 2: by_pass[1], 1: by_pass[2]}

    async def scenario() -> None:
        async with Constellation(
            tmp_path,
            [1, 2, 3],
            [(1, 2), (1, 3), (2, 3)],
            orbits=chosen,
            sites=DEFAULT_SITES,
            power=True,
        ) as sats:
            await asyncio.sleep(11)
            origin = sats[1].payload
            sha = await add_model(origin, tmp_path, model)
            deadline = sats[1].node.clock.now_tai_s() + 45
            tiles = [make_tiles(20, seed=s) for s in (4, 5, 6)]
            ids = [
                origin.submit_tiles(
                    sha, t, priority=1, deadline_tai_s=deadline, value=1.0, energy_estimate_j=2.0
                )
                for t in tiles
            ]
            await wait_for(lambda: _closed(sats[1]), timeout_s=120)
            offloaded = next(j.job_id for j in origin.jobs() if j.state is JobState.OFFLOADED)
            job = JobId(1, offloaded)
            holders = [a for a in (1, 2, 3) if sats[a].isl.result_file(job).exists()]
            assert holders == [3]
            assert [r.kind for r in sats[3].records] == ["result_stored"]
            assert sats[1].records[-1].holder == 3
            expected = reference(model, tiles[ids.index(offloaded)])
            assert np.array_equal(read_npy(sats[3].isl.result_file(job)), expected)
            beacon = sats[2].isl.neighbours.get(3, asyncio.get_running_loop().time()).beacon
            assert beacon.next_contact_tai_s is not None and 0.6 < beacon.soc <= 1.0

    virtual(scenario())


def test_the_isl_and_ground_site_keys_are_read_strictly() -> None:
    config = parse(
        """
        [isl]
        address = 7
        beacon_period_s = 10.0
        offload = false
        [orbit]
        ground_sites = [{ name = "matera", latitude_deg = 40.65, longitude_deg = 16.7 }]
        """,
        source="node.toml",
    )
    assert (config.isl.address, config.isl.beacon_period_s, config.isl.offload) == (7, 10.0, False)
    assert config.orbit.ground_sites[0].name == "matera"
    assert config.orbit.ground_sites[0].min_elevation_deg == 25.0
    for text, words in (
        ("[isl]\naddress = 0", "[isl] address"),
        ("[isl]\naddress = 4294967295", "[isl] address"),
        ("[isl]\nbeacon = 3", "unknown key"),
        ("[isl]\noffload = 1", "true or false"),
        ('[orbit]\nground_sites = ["matera"]', "ground_sites[0]"),
        ('[orbit]\nground_sites = [{ name = "m", latitude_deg = 91, longitude_deg = 0 }]', "90"),
        ('[orbit]\nground_sites = [{ name = "m", latitude_deg = 1 }]', "missing longitude_deg"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse(text, source="node.toml")
        assert str(caught.value).startswith("node.toml: ") and words in str(caught.value), text
    assert parse("").isl.address is None  # no [isl]: the node has no ISL component
