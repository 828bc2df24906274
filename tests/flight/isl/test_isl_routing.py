import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.isl.frame import BROADCAST_ADDRESS, PACKET_OVERHEAD, PacketKind, RoutedPacket
from flight.isl.routing import (
    Action,
    ContactGraph,
    DropReason,
    Router,
    RoutingDecision,
)

SETTINGS = settings(max_examples=150, deadline=None)
NOMINAL = 1000  # octets: 8000 bits, so 1 Mbit/s serialises in 8 ms


def independent_cost_ns(delay_s: float, rate_bps: float, octets: int) -> int:
    """The cost rule written out again, apart from the code under test."""
    return round(delay_s * 1e9) + math.ceil(octets * 8 * 10**9 / rate_bps)


def line(*nodes: int, delay_s: float = 0.01, rate_bps: float = 1e6) -> ContactGraph:
    graph = ContactGraph()
    for a, b in itertools.pairwise(nodes):
        graph.set_link(a, b, delay_s=delay_s, rate_bps=rate_bps)
    return graph


# ---- shortest paths, by hand --------------------------------------------------------------


def test_cost_is_light_time_plus_serialisation_in_whole_nanoseconds():
    graph = line(1, 2, delay_s=0.004, rate_bps=3e6)
    route = graph.shortest_path(1, 2, NOMINAL)
    # 4 ms of light time + 8000 bits / 3 Mbit/s = 2.666...7 ms rounded up.
    assert route.cost_ns == 4_000_000 + 2_666_667
    assert route.path == (1, 2)
    assert route.hops == 1


def test_a_fast_two_hop_path_beats_a_slow_direct_link_for_big_packets_only():
    graph = ContactGraph()
    graph.set_link(1, 3, delay_s=0.010, rate_bps=100e3)  # direct, slow
    graph.set_link(1, 2, delay_s=0.010, rate_bps=10e6)
    graph.set_link(2, 3, delay_s=0.010, rate_bps=10e6)
    # 100 octets: direct 10 + 8 = 18 ms; via 2: 2 x (10 + 0.08) = 20.16 ms.
    assert graph.shortest_path(1, 3, 100).path == (1, 3)
    # 1000 octets: direct 10 + 80 = 90 ms; via 2: 2 x (10 + 0.8) = 21.6 ms.
    assert graph.shortest_path(1, 3, 1000).path == (1, 2, 3)
    assert graph.shortest_path(1, 3, 1000).cost_ns == 21_600_000


def test_equal_costs_are_broken_by_the_lowest_address_sequence():
    graph = ContactGraph()
    for a, b in [(1, 7), (7, 9), (1, 4), (4, 9), (1, 5), (5, 9)]:
        graph.set_link(a, b, delay_s=0.02, rate_bps=1e6)
    assert graph.shortest_path(1, 9, NOMINAL).path == (1, 4, 9)
    assert graph.shortest_path(9, 1, NOMINAL).path == (9, 4, 1)
    graph.set_up(1, 4, False)
    assert graph.shortest_path(1, 9, NOMINAL).path == (1, 5, 9)


def test_the_next_hop_table_lists_every_reachable_destination():
    graph = line(1, 2, 3, 4)
    graph.add_node(8)  # isolated
    assert graph.next_hops(2, NOMINAL) == {1: 1, 3: 3, 4: 3}
    assert graph.next_hop(2, 8, NOMINAL) is None
    assert graph.nodes == (1, 2, 3, 4, 8)


def test_links_down_are_not_used_and_can_come_back():
    graph = line(1, 2, 3)
    version = graph.version
    graph.set_up(2, 3, False)
    assert graph.version > version
    assert graph.next_hop(1, 3, NOMINAL) is None
    assert graph.neighbours(2) == [1]
    graph.set_up(2, 3, True)
    assert graph.next_hop(1, 3, NOMINAL) == 2


def test_one_way_links_route_one_way():
    graph = ContactGraph()
    graph.set_link(1, 2, delay_s=0.01, rate_bps=1e6, symmetric=False)
    assert graph.next_hop(1, 2, NOMINAL) == 2
    assert graph.next_hop(2, 1, NOMINAL) is None


def test_changing_a_link_changes_the_route():
    graph = ContactGraph()
    graph.set_link(1, 2, delay_s=0.01, rate_bps=1e6)
    graph.set_link(2, 3, delay_s=0.01, rate_bps=1e6)
    graph.set_link(1, 3, delay_s=0.05, rate_bps=1e6)
    assert graph.shortest_path(1, 3, NOMINAL).path == (1, 2, 3)
    graph.set_link(1, 3, delay_s=0.001, rate_bps=1e6)  # the geometry changed
    assert graph.shortest_path(1, 3, NOMINAL).path == (1, 3)
    graph.remove_link(1, 3)
    assert graph.shortest_path(1, 3, NOMINAL).path == (1, 2, 3)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda g: g.set_link(1, 1, delay_s=0.0, rate_bps=1.0), "two different nodes"),
        (lambda g: g.set_link(1, 2, delay_s=-1.0, rate_bps=1.0), "delay"),
        (lambda g: g.set_link(1, 2, delay_s=0.0, rate_bps=0.0), "data rate"),
        (lambda g: g.set_link(1, 2, delay_s=math.nan, rate_bps=1.0), "delay"),
        (lambda g: g.set_link(1, BROADCAST_ADDRESS, delay_s=0.0, rate_bps=1.0), "address"),
        (lambda g: g.set_up(1, 2, False), "set_link it first"),
        (lambda g: g.routes(1, 0), "packet size"),
    ],
)
def test_graph_misuse_gets_a_message(call, words):
    with pytest.raises(ValueError, match=words):
        call(ContactGraph())


# ---- shortest paths against brute force ---------------------------------------------------


@st.composite
def random_graphs(draw: st.DrawFn, max_nodes: int = 9) -> tuple[ContactGraph, list[tuple]]:
    count = draw(st.integers(2, max_nodes))
    nodes = draw(st.lists(st.integers(0, 50), min_size=count, max_size=count, unique=True))
    edges = []
    graph = ContactGraph()
    for node in nodes:
        graph.add_node(node)
    for a, b in itertools.combinations(nodes, 2):
        if draw(st.booleans()):
            # Few distinct values, so that equal costs (ties) are common.
            delay_s = draw(st.sampled_from([0.0, 0.001, 0.002, 0.003]))
            rate_bps = draw(st.sampled_from([1e6, 2e6, 8e6]))
            up = draw(st.integers(0, 4)) > 0
            graph.set_link(a, b, delay_s=delay_s, rate_bps=rate_bps, up=up)
            edges.append((a, b, delay_s, rate_bps, up))
    return graph, edges


def floyd_warshall(nodes: list[int], edges: list[tuple], octets: int) -> dict:
    inf = math.inf
    dist = {(a, b): (0 if a == b else inf) for a in nodes for b in nodes}
    for a, b, delay_s, rate_bps, up in edges:
        if up:
            cost = independent_cost_ns(delay_s, rate_bps, octets)
            dist[a, b] = dist[b, a] = min(dist[a, b], cost)
    for k in nodes:
        for i in nodes:
            for j in nodes:
                if dist[i, k] + dist[k, j] < dist[i, j]:
                    dist[i, j] = dist[i, k] + dist[k, j]
    return dist


@SETTINGS
@given(random_graphs(), st.integers(1, 3000))
def test_route_costs_equal_floyd_warshall_on_random_graphs(graph_and_edges, octets):
    graph, edges = graph_and_edges
    nodes = list(graph.nodes)
    dist = floyd_warshall(nodes, edges, octets)
    for source in nodes:
        routes = graph.routes(source, octets)
        for destination in nodes:
            if destination == source:
                continue
            if dist[source, destination] == math.inf:
                assert destination not in routes
            else:
                route = routes[destination]
                assert route.cost_ns == dist[source, destination]
                walked = sum(
                    independent_cost_ns(link.delay_s, link.rate_bps, octets)
                    for link in (graph.link(a, b) for a, b in itertools.pairwise(route.path))
                )
                assert walked == route.cost_ns


def all_simple_paths(graph: ContactGraph, source: int, destination: int) -> list[tuple]:
    paths = []

    def walk(path: tuple) -> None:
        if path[-1] == destination:
            paths.append(path)
            return
        for nxt in graph.neighbours(path[-1]):
            if nxt not in path:
                walk((*path, nxt))

    walk((source,))
    return paths


@SETTINGS
@given(random_graphs(max_nodes=6))
def test_the_chosen_path_is_the_cheapest_then_lowest_of_all_simple_paths(graph_and_edges):
    graph, _ = graph_and_edges
    for source, destination in itertools.permutations(graph.nodes, 2):
        candidates = [
            (
                sum(
                    independent_cost_ns(
                        graph.link(a, b).delay_s, graph.link(a, b).rate_bps, NOMINAL
                    )
                    for a, b in itertools.pairwise(path)
                ),
                path,
            )
            for path in all_simple_paths(graph, source, destination)
        ]
        route = graph.shortest_path(source, destination, NOMINAL)
        if not candidates:
            assert route is None
        else:
            assert (route.cost_ns, route.path) == min(candidates)


@SETTINGS
@given(random_graphs())
def test_each_hop_computes_the_tail_of_the_path_its_upstream_chose(graph_and_edges):
    graph, _ = graph_and_edges
    for source in graph.nodes:
        for destination, route in graph.routes(source, NOMINAL).items():
            if route.hops > 1:
                onward = graph.shortest_path(route.next_hop, destination, NOMINAL)
                assert onward.path == route.path[1:]


# ---- the router ---------------------------------------------------------------------------


def data(source: int, destination: int, *, priority: int = 0, hop_limit: int = 16, flow: int = 0):
    return RoutedPacket(source, destination, PacketKind.DATA, b"x" * 10, priority, hop_limit, flow)


def actions(decisions: list[RoutingDecision]) -> list[tuple]:
    return [(d.action, d.packet.flow_id, d.next_hop, d.reason) for d in decisions]


def test_a_packet_for_this_node_is_delivered_and_one_for_another_forwarded():
    router = Router(2, line(1, 2, 3))
    [delivered] = router.receive(data(1, 2), now_s=1.0)
    assert delivered.action is Action.DELIVERED
    [forwarded] = router.receive(data(1, 3, hop_limit=5), now_s=1.0)
    assert (forwarded.action, forwarded.next_hop) == (Action.FORWARDED, 3)
    assert forwarded.packet.hop_limit == 4


def test_broadcasts_are_delivered_to_neighbours_and_never_forwarded():
    router = Router(2, line(1, 2, 3))
    beacon = RoutedPacket(1, BROADCAST_ADDRESS, PacketKind.BEACON, hop_limit=1)
    assert actions(router.receive(beacon, 0.0)) == [(Action.DELIVERED, 0, None, None)]
    mine = RoutedPacket(2, BROADCAST_ADDRESS, PacketKind.BEACON, hop_limit=1)
    assert actions(router.originate(mine, 0.0)) == [(Action.FORWARDED, 0, BROADCAST_ADDRESS, None)]


def test_the_hop_limit_is_spent_one_per_forwarding_node_and_dropped_at_zero():
    router = Router(2, line(1, 2, 3, 4))
    assert actions(router.receive(data(1, 4, hop_limit=1), 0.0)) == [
        (Action.DROPPED, 0, None, DropReason.HOP_LIMIT)
    ]
    [forwarded] = router.receive(data(1, 4, hop_limit=2), 0.0)
    assert (forwarded.action, forwarded.packet.hop_limit) == (Action.FORWARDED, 1)
    # The last hop still delivers a packet that arrives with hop limit 1.
    assert Router(3, line(2, 3)).receive(data(1, 3, hop_limit=1), 0.0)[0].action is (
        Action.DELIVERED
    )
    source = Router(1, line(1, 2))
    assert source.originate(data(1, 2, hop_limit=0), 0.0)[0].reason is DropReason.HOP_LIMIT
    assert source.originate(data(1, 2, hop_limit=1), 0.0)[0].action is Action.FORWARDED
    assert router.counters.dropped_hop_limit == 1


def deliver_through(routers: dict[int, Router], packet: RoutedPacket, now_s: float) -> list:
    """Carry a packet hop by hop as the emulator would; the decisions taken on the way."""
    log = []
    pending = routers[packet.source].originate(packet, now_s)
    while pending:
        decision = pending.pop(0)
        log.append(decision)
        if decision.action is Action.FORWARDED:
            pending += routers[decision.next_hop].receive(decision.packet, now_s)
    return log


def test_a_packet_crosses_a_chain_of_routers_spending_one_hop_per_forwarder():
    graph = line(1, 2, 3, 4, 5)
    routers = {n: Router(n, graph) for n in graph.nodes}
    log = deliver_through(routers, data(1, 5, hop_limit=4, flow=77), 0.0)
    assert [(d.node, d.action) for d in log] == [
        (1, Action.FORWARDED),
        (2, Action.FORWARDED),
        (3, Action.FORWARDED),
        (4, Action.FORWARDED),
        (5, Action.DELIVERED),
    ]
    assert log[-1].packet.hop_limit == 1
    short = deliver_through(routers, data(1, 5, hop_limit=3), 0.0)
    assert (short[-1].node, short[-1].reason) == (4, DropReason.HOP_LIMIT)


def test_with_no_path_packets_are_stored_then_forwarded_when_a_link_comes_up():
    graph = line(1, 2, 3)
    graph.set_up(2, 3, False)
    routers = {n: Router(n, graph) for n in graph.nodes}
    log = deliver_through(routers, data(1, 3, flow=1), now_s=10.0)
    assert [(d.node, d.action) for d in log] == [(1, Action.STORED)]
    assert routers[1].stored(3) == [data(1, 3, flow=1)]
    assert routers[1].counters.stored_packets == 1
    graph.set_up(2, 3, True)
    released = routers[1].release(now_s=25.0)
    assert actions(released) == [(Action.FORWARDED, 1, 2, None)]
    assert released[0].stored_s == 15.0
    assert routers[1].counters.stored_packets == 0
    onward = routers[2].receive(released[0].packet, 25.0)
    assert routers[3].receive(onward[0].packet, 25.0)[0].action is Action.DELIVERED


def test_a_forwarder_stores_too_when_the_next_link_is_down():
    graph = line(1, 2, 3)
    router = Router(2, graph)
    graph.set_up(2, 3, False)
    [stored] = router.receive(data(1, 3, hop_limit=5), 0.0)
    assert stored.action is Action.STORED
    assert router.stored(3)[0].hop_limit == 4  # already charged for this hop
    assert router.release(1.0) == []  # still no path
    graph.set_up(2, 3, True)
    assert router.release(2.0)[0].packet.hop_limit == 4


def test_stored_packets_leave_by_priority_then_in_arrival_order_with_a_newcomer():
    graph = line(1, 2)
    graph.set_up(1, 2, False)
    router = Router(1, graph)
    for flow, priority in [(1, 2), (2, 5), (3, 2), (4, 7)]:
        router.originate(data(1, 2, priority=priority, flow=flow), 0.0)
    assert [p.flow_id for p in router.stored(2)] == [4, 2, 1, 3]
    graph.set_up(1, 2, True)
    # A new packet with a path: it leaves together with the stored ones, in priority order.
    decisions = router.originate(data(1, 2, priority=6, flow=5), 3.0)
    assert [d.packet.flow_id for d in decisions] == [4, 5, 2, 1, 3]
    assert all(d.action is Action.FORWARDED and d.next_hop == 2 for d in decisions)
    assert [d.stored_s for d in decisions] == [3.0, None, 3.0, 3.0, 3.0]
    assert router.counters.forwarded == 5


def test_a_full_destination_queue_drops_the_newest_of_the_lowest_priority():
    graph = ContactGraph()
    graph.add_node(1)
    router = Router(1, graph, max_packets_per_destination=3)
    for flow, priority in [(1, 1), (2, 5), (3, 1)]:
        router.originate(data(1, 9, priority=priority, flow=flow), 0.0)
    # A higher-priority arrival evicts flow 3: lowest priority, and the newer of the two.
    decisions = router.originate(data(1, 9, priority=4, flow=4), 1.0)
    assert actions(decisions) == [
        (Action.STORED, 4, None, None),
        (Action.DROPPED, 3, None, DropReason.QUEUE_FULL),
    ]
    assert decisions[1].stored_s == 1.0
    # An arrival no better than the lowest stored is itself the one dropped.
    assert actions(router.originate(data(1, 9, priority=1, flow=5), 2.0)) == [
        (Action.DROPPED, 5, None, DropReason.QUEUE_FULL)
    ]
    assert [p.flow_id for p in router.stored(9)] == [2, 4, 1]
    counters = router.counters
    assert (counters.stored, counters.dropped_queue_full, counters.stored_packets) == (4, 2, 3)
    # Other destinations have their own queue.
    assert router.originate(data(1, 8, flow=6), 3.0)[0].action is Action.STORED


def test_the_node_wide_octet_limit_drops_across_destinations():
    graph = ContactGraph()
    graph.add_node(1)
    size = PACKET_OVERHEAD + 10
    router = Router(1, graph, max_octets=3 * size)
    router.originate(data(1, 7, priority=0, flow=1), 0.0)
    router.originate(data(1, 8, priority=0, flow=2), 0.0)  # as low, and newer: the victim
    router.originate(data(1, 9, priority=5, flow=3), 0.0)
    decisions = router.originate(data(1, 9, priority=2, flow=4), 0.0)
    assert actions(decisions) == [
        (Action.STORED, 4, None, None),
        (Action.DROPPED, 2, None, DropReason.QUEUE_FULL),
    ]
    assert router.stored_destinations() == [7, 9]
    assert router.counters.stored_octets == 3 * size


def test_a_node_originates_only_its_own_packets():
    with pytest.raises(ValueError, match="cannot originate"):
        Router(1, line(1, 2)).originate(data(2, 1), 0.0)


def test_decisions_read_as_one_line_for_telemetry_and_reports():
    router = Router(2, line(1, 2, 3))
    [decision] = router.receive(data(1, 3, priority=4, hop_limit=5, flow=12), 7.5)
    assert str(decision) == "t=7.500 node 2 forwarded DATA 1->3 flow 12 prio 4 hops 4 via 3"


def test_random_traffic_is_conserved_every_packet_is_accounted_for_once():
    rng = random.Random(5)
    graph = ContactGraph()
    nodes = list(range(1, 9))
    for a, b in itertools.combinations(nodes, 2):
        if rng.random() < 0.35:
            graph.set_link(a, b, delay_s=rng.choice([0.001, 0.002]), rate_bps=1e6)
    routers = {n: Router(n, graph, max_packets_per_destination=4) for n in nodes}
    ends = []
    flow = 0
    for step in range(200):
        for link in graph.links():
            if link.source < link.target and rng.random() < 0.1:
                graph.set_up(link.source, link.target, not link.up)
        pending = []
        for router in routers.values():
            pending += router.release(float(step))
        for _ in range(3):
            flow += 1
            source, destination = rng.sample(nodes, 2)
            packet = data(source, destination, priority=rng.randint(0, 7), flow=flow)
            pending += routers[source].originate(packet, float(step))
        while pending:
            decision = pending.pop(0)
            if decision.action is Action.FORWARDED:
                pending += routers[decision.next_hop].receive(decision.packet, float(step))
            elif decision.action is not Action.STORED:
                ends.append(decision)
    still_stored = sum(r.counters.stored_packets for r in routers.values())
    ended_flows = [d.packet.flow_id for d in ends]
    assert len(ended_flows) == len(set(ended_flows))
    assert len(ends) + still_stored == flow
    assert all(d.node == d.packet.destination for d in ends if d.action is Action.DELIVERED)
