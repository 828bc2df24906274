"""Routing between satellites: the contact graph, shortest paths and a store-and-forward router.

A path's cost is the sum over its links of light-time delay plus the time to serialise a packet
of a nominal size at the link's data rate, in integer nanoseconds: sums are exact, so equal
costs really are equal and ties are broken the same way everywhere, by the lexicographically
smallest sequence of addresses (the lowest next hop first). With that rule the path a node
computes is the tail of the path its upstream neighbour computed through it, so hop-by-hop
forwarding follows the path the source chose whenever the nodes share one graph.

The router never sends anything itself: every call returns `RoutingDecision` records (delivered
here, forwarded to which neighbour, stored, dropped and why), which the caller acts on and puts in
telemetry and reports. Times are the caller's loop seconds, passed in.
"""

import heapq
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType

from flight.isl.frame import BROADCAST_ADDRESS, MAX_ADDRESS, MAX_PRIORITY, RoutedPacket

NS_PER_S = 1_000_000_000
DEFAULT_NOMINAL_OCTETS = 1024


def _check_address(address: int, what: str) -> None:
    if not (isinstance(address, int) and 0 <= address <= MAX_ADDRESS):
        raise ValueError(f"{what} {address!r} is not a node address (0..{MAX_ADDRESS:#x})")


@dataclass(frozen=True, slots=True)
class Link:
    """A one-way link from `source` to `target`: light time, data rate, and whether it is up."""

    source: int
    target: int
    delay_s: float
    rate_bps: float
    up: bool = True

    def cost_ns(self, octets: int) -> int:
        """Delay plus serialisation of `octets`, in whole nanoseconds (serialisation rounded up)."""
        return round(self.delay_s * NS_PER_S) + math.ceil(octets * 8 * NS_PER_S / self.rate_bps)


@dataclass(frozen=True, slots=True)
class Route:
    """The chosen path from `path[0]` to `destination`; `next_hop` is `path[1]`."""

    destination: int
    path: tuple[int, ...]
    cost_ns: int

    @property
    def next_hop(self) -> int:
        return self.path[1]

    @property
    def hops(self) -> int:
        return len(self.path) - 1

    @property
    def cost_s(self) -> float:
        return self.cost_ns / NS_PER_S


class ContactGraph:
    """Nodes and the links between them as they are now; the caller changes it as time passes.

    Every change bumps `version` and forgets the cached route tables. Links are one-way;
    `set_link` and `set_up` change both directions unless `symmetric=False`.
    """

    def __init__(self) -> None:
        self.version = 0
        self._nodes: set[int] = set()
        self._links: dict[int, dict[int, Link]] = {}
        self._tables: dict[tuple[int, int], Mapping[int, Route]] = {}

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(sorted(self._nodes))

    def add_node(self, address: int) -> None:
        _check_address(address, "node")
        if address not in self._nodes:
            self._nodes.add(address)
            self._changed()

    def set_link(
        self,
        source: int,
        target: int,
        *,
        delay_s: float,
        rate_bps: float,
        up: bool = True,
        symmetric: bool = True,
    ) -> None:
        """Add or replace the link (and, if `symmetric`, its reverse); adds unknown nodes."""
        _check_address(source, "link source")
        _check_address(target, "link target")
        if source == target:
            raise ValueError(f"a link needs two different nodes, not {source} to itself")
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ValueError(f"link delay must be a finite number of seconds >= 0, not {delay_s}")
        if not (math.isfinite(rate_bps) and rate_bps > 0):
            raise ValueError(f"link data rate must be a finite number of bit/s > 0, not {rate_bps}")
        self._nodes.update((source, target))
        pairs = ((source, target), (target, source)) if symmetric else ((source, target),)
        for a, b in pairs:
            self._links.setdefault(a, {})[b] = Link(a, b, delay_s, rate_bps, up)
        self._changed()

    def set_up(self, source: int, target: int, up: bool, *, symmetric: bool = True) -> None:
        """Bring an existing link up or down (ValueError if there is no such link)."""
        pairs = ((source, target), (target, source)) if symmetric else ((source, target),)
        links = [link for a, b in pairs if (link := self.link(a, b)) is not None]
        if len(links) != len(pairs):
            raise ValueError(f"no link between {source} and {target}: set_link it first")
        for link in links:
            self._links[link.source][link.target] = replace(link, up=up)
        self._changed()

    def remove_link(self, source: int, target: int, *, symmetric: bool = True) -> None:
        pairs = ((source, target), (target, source)) if symmetric else ((source, target),)
        for a, b in pairs:
            self._links.get(a, {}).pop(b, None)
        self._changed()

    def link(self, source: int, target: int) -> Link | None:
        return self._links.get(source, {}).get(target)

    def links(self) -> list[Link]:
        """Every link, up or down, by (source, target)."""
        return sorted(
            (link for out in self._links.values() for link in out.values()),
            key=lambda link: (link.source, link.target),
        )

    def neighbours(self, address: int) -> list[int]:
        """The nodes `address` has an up link to, ascending."""
        return sorted(b for b, link in self._links.get(address, {}).items() if link.up)

    def routes(self, source: int, octets: int = DEFAULT_NOMINAL_OCTETS) -> Mapping[int, Route]:
        """Shortest paths from `source` to every node it can reach now, by destination.

        Cached until the graph changes. Dijkstra on (cost, path): the heap key is a total order
        that extending a path preserves, so the first time a node is settled its key is minimal.
        """
        key = (source, octets)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = MappingProxyType(self._dijkstra(source, octets))
        return table

    def shortest_path(
        self, source: int, destination: int, octets: int = DEFAULT_NOMINAL_OCTETS
    ) -> Route | None:
        return self.routes(source, octets).get(destination)

    def next_hop(
        self, source: int, destination: int, octets: int = DEFAULT_NOMINAL_OCTETS
    ) -> int | None:
        route = self.routes(source, octets).get(destination)
        return None if route is None else route.next_hop

    def next_hops(self, source: int, octets: int = DEFAULT_NOMINAL_OCTETS) -> dict[int, int]:
        """The forwarding table of `source`: next hop per reachable destination."""
        return {d: route.next_hop for d, route in sorted(self.routes(source, octets).items())}

    def _changed(self) -> None:
        self.version += 1
        self._tables.clear()

    def _dijkstra(self, source: int, octets: int) -> dict[int, Route]:
        if octets <= 0:
            raise ValueError(f"routes are computed for a packet size > 0 octets, not {octets}")
        best: dict[int, tuple[int, tuple[int, ...]]] = {source: (0, (source,))}
        heap: list[tuple[int, tuple[int, ...]]] = [(0, (source,))]
        settled: set[int] = set()
        while heap:
            cost, path = heapq.heappop(heap)
            node = path[-1]
            if node in settled:
                continue
            settled.add(node)
            for target, link in self._links.get(node, {}).items():
                if not link.up or target in settled:
                    continue
                candidate = (cost + link.cost_ns(octets), (*path, target))
                held = best.get(target)
                if held is None or candidate < held:
                    best[target] = candidate
                    heapq.heappush(heap, candidate)
        return {
            node: Route(node, path, cost)
            for node, (cost, path) in sorted(best.items())
            if node != source
        }


class Action(StrEnum):
    DELIVERED = "delivered"  # for this node (or broadcast): hand it to the local consumer
    FORWARDED = "forwarded"  # send it on the link to `next_hop`
    STORED = "stored"  # no path now: kept until one appears (`Router.release`)
    DROPPED = "dropped"  # discarded; `reason` says why


class DropReason(StrEnum):
    HOP_LIMIT = "hop_limit"  # it would have left this node with hop limit 0
    QUEUE_FULL = "queue_full"  # the store was full and this was the lowest priority, newest


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """What one node did with one packet, at `time_s` (loop seconds)."""

    time_s: float
    node: int
    action: Action
    packet: RoutedPacket
    next_hop: int | None = None
    reason: DropReason | None = None
    stored_s: float | None = None  # how long it had waited in the store, if it was stored

    def __str__(self) -> str:
        p = self.packet
        text = (
            f"t={self.time_s:.3f} node {self.node} {self.action.value} {p.kind.name} "
            f"{p.source}->{p.destination} flow {p.flow_id} prio {p.priority} hops {p.hop_limit}"
        )
        if self.next_hop is not None:
            text += f" via {self.next_hop}"
        if self.reason is not None:
            text += f" ({self.reason.value})"
        if self.stored_s is not None:
            text += f" after {self.stored_s:.3f} s stored"
        return text


@dataclass(frozen=True, slots=True)
class RouterCounters:
    """Totals since start (for housekeeping) and what the store holds now."""

    delivered: int
    forwarded: int
    stored: int
    dropped_hop_limit: int
    dropped_queue_full: int
    stored_packets: int
    stored_octets: int


@dataclass(slots=True)
class _Stored:
    sequence: int
    packet: RoutedPacket
    since_s: float


class Router:
    """One node's forwarding: next hop from the contact graph, or store and forward later.

    The store keeps at most `max_packets_per_destination` packets per destination and
    `max_octets` octets in all. When a packet would exceed either, the lowest-priority packet
    goes, the newest of those first (tail drop within the lowest class), which may be the
    arriving packet itself. Stored packets leave by priority, then in arrival order.
    Routes are chosen for a packet of `nominal_octets`, so all packets to a destination take
    the same path.
    """

    def __init__(
        self,
        address: int,
        graph: ContactGraph,
        *,
        max_packets_per_destination: int = 64,
        max_octets: int = 1 << 20,
        nominal_octets: int = DEFAULT_NOMINAL_OCTETS,
    ) -> None:
        _check_address(address, "router address")
        if max_packets_per_destination < 1 or max_octets < 1 or nominal_octets < 1:
            raise ValueError("router store limits and nominal packet size must be >= 1")
        self.address = address
        self.graph = graph
        self.max_packets_per_destination = max_packets_per_destination
        self.max_octets = max_octets
        self.nominal_octets = nominal_octets
        self.next_hop_for: Callable[[int], int | None] | None = None
        """Replaces the graph's next hop when set: a node that also knows which of its own
        links are up (flight.isl.component)."""
        self._store: dict[int, list[_Stored]] = {}
        self._stored_octets = 0
        self._sequence = 0
        self._delivered = 0
        self._forwarded = 0
        self._stored = 0
        self._dropped = {DropReason.HOP_LIMIT: 0, DropReason.QUEUE_FULL: 0}

    @property
    def counters(self) -> RouterCounters:
        return RouterCounters(
            self._delivered,
            self._forwarded,
            self._stored,
            self._dropped[DropReason.HOP_LIMIT],
            self._dropped[DropReason.QUEUE_FULL],
            sum(len(queue) for queue in self._store.values()),
            self._stored_octets,
        )

    def stored(self, destination: int) -> list[RoutedPacket]:
        """The packets held for `destination`, in the order they would leave."""
        return [entry.packet for entry in self._ordered(self._store.get(destination, []))]

    def stored_destinations(self) -> list[int]:
        return sorted(self._store)

    def originate(self, packet: RoutedPacket, now_s: float) -> list[RoutingDecision]:
        """A packet this node sends: it leaves with the hop limit its source gave it.

        A broadcast is FORWARDED with `next_hop` BROADCAST_ADDRESS: send it to every neighbour.
        """
        if packet.source != self.address:
            raise ValueError(
                f"node {self.address} cannot originate a packet from source {packet.source}"
            )
        if packet.destination == self.address:
            return [self._decide(now_s, Action.DELIVERED, packet)]
        if packet.hop_limit == 0:
            return [self._drop(now_s, packet, DropReason.HOP_LIMIT)]
        if packet.destination == BROADCAST_ADDRESS:
            return [self._decide(now_s, Action.FORWARDED, packet, next_hop=BROADCAST_ADDRESS)]
        return self._dispatch(packet, now_s)

    def receive(self, packet: RoutedPacket, now_s: float) -> list[RoutingDecision]:
        """A packet heard on a link: deliver it here, or forward it with one hop fewer."""
        if packet.destination in (self.address, BROADCAST_ADDRESS):
            return [self._decide(now_s, Action.DELIVERED, packet)]
        if packet.hop_limit <= 1:
            return [self._drop(now_s, packet, DropReason.HOP_LIMIT)]
        return self._dispatch(packet.forwarded(), now_s)

    def hold(self, packet: RoutedPacket, now_s: float) -> list[RoutingDecision]:
        """Keep a packet that was forwarded but could not leave (its link went down meanwhile)
        until `release` finds it a path: STORED, or DROPPED if the store overflows."""
        return self._put(packet, now_s)

    def release(self, now_s: float) -> list[RoutingDecision]:
        """Forward the stored packets whose destination has a path now (after a graph change)."""
        decisions: list[RoutingDecision] = []
        for destination in sorted(self._store):
            next_hop = self._next_hop(destination)
            if next_hop is not None:
                decisions += self._flush(destination, next_hop, now_s)
        return decisions

    def _next_hop(self, destination: int) -> int | None:
        if self.next_hop_for is not None:
            return self.next_hop_for(destination)
        return self.graph.next_hop(self.address, destination, self.nominal_octets)

    def _dispatch(self, packet: RoutedPacket, now_s: float) -> list[RoutingDecision]:
        next_hop = self._next_hop(packet.destination)
        if next_hop is None:
            return self._put(packet, now_s)
        if packet.destination in self._store:
            # Packets stored earlier for this destination leave with this one, by priority.
            return self._flush(packet.destination, next_hop, now_s, arriving=packet)
        return [self._decide(now_s, Action.FORWARDED, packet, next_hop=next_hop)]

    def _put(self, packet: RoutedPacket, now_s: float) -> list[RoutingDecision]:
        self._sequence += 1
        entry = _Stored(self._sequence, packet, now_s)
        queue = self._store.setdefault(packet.destination, [])
        queue.append(entry)
        self._stored_octets += packet.encoded_length
        victims: list[_Stored] = []
        if len(queue) > self.max_packets_per_destination:
            victims.append(self._evict(queue))
        while self._stored_octets > self.max_octets:
            victims.append(self._evict_anywhere())
        decisions = []
        if not any(victim is entry for victim in victims):
            self._stored += 1
            decisions.append(self._decide(now_s, Action.STORED, packet))
        for victim in victims:
            stored_s = None if victim is entry else now_s - victim.since_s
            decisions.append(self._drop(now_s, victim.packet, DropReason.QUEUE_FULL, stored_s))
        return decisions

    def _evict(self, queue: list[_Stored]) -> _Stored:
        victim = min(queue, key=lambda e: (e.packet.priority, -e.sequence))
        self._remove(victim)
        return victim

    def _evict_anywhere(self) -> _Stored:
        victim = min(
            (entry for queue in self._store.values() for entry in queue),
            key=lambda e: (e.packet.priority, -e.sequence),
        )
        self._remove(victim)
        return victim

    def _remove(self, entry: _Stored) -> None:
        destination = entry.packet.destination
        queue = self._store[destination]
        queue.remove(entry)
        if not queue:
            del self._store[destination]
        self._stored_octets -= entry.packet.encoded_length

    def _flush(
        self,
        destination: int,
        next_hop: int,
        now_s: float,
        *,
        arriving: RoutedPacket | None = None,
    ) -> list[RoutingDecision]:
        queue = self._store.pop(destination, [])
        self._stored_octets -= sum(entry.packet.encoded_length for entry in queue)
        fresh = None
        if arriving is not None:
            self._sequence += 1
            fresh = _Stored(self._sequence, arriving, now_s)
            queue.append(fresh)
        return [
            self._decide(
                now_s,
                Action.FORWARDED,
                entry.packet,
                next_hop=next_hop,
                stored_s=None if entry is fresh else now_s - entry.since_s,
            )
            for entry in self._ordered(queue)
        ]

    @staticmethod
    def _ordered(queue: list[_Stored]) -> list[_Stored]:
        return sorted(queue, key=lambda e: (MAX_PRIORITY - e.packet.priority, e.sequence))

    def _drop(
        self,
        now_s: float,
        packet: RoutedPacket,
        reason: DropReason,
        stored_s: float | None = None,
    ) -> RoutingDecision:
        self._dropped[reason] += 1
        return RoutingDecision(now_s, self.address, Action.DROPPED, packet, None, reason, stored_s)

    def _decide(
        self,
        now_s: float,
        action: Action,
        packet: RoutedPacket,
        *,
        next_hop: int | None = None,
        stored_s: float | None = None,
    ) -> RoutingDecision:
        if action is Action.DELIVERED:
            self._delivered += 1
        elif action is Action.FORWARDED:
            self._forwarded += 1
        return RoutingDecision(now_s, self.address, action, packet, next_hop, None, stored_s)
