"""Executes a schedule on a modelled network: the event-driven tier beside the closed forms.
(One idea past 300 lines: the round loop, the routed patterns it caches and the max-min
filling they call are one mechanism, each part read only with the others.)

Each round's transfers become flows along their routes. Flows that share a link share its
bandwidth max-min fairly (progressive filling: the most constrained link fixes the rate of
its flows, the capacity left is shared among the rest, and so on), and every time a flow
finishes the rest are re-shared. A flow takes its path latency plus its bytes at that
rate; a receiver that reduces spends gamma seconds per byte adding (all it receives in the
round, one message after another).

What the processors add, from the topology's [compute] table (netsim.cluster.topofile): gamma
(unless given) is 1 / reduce_gbyte_per_s; a round costs message_overhead_us on top of its
path latency for each message of the rank with the most (one processor posts and completes
them one after another: C channels side by side cost C times the ring's); and where a node
holds more ranks than its `cores`, ranks time-share them, so both of those take
ceil(ranks / cores) times as long (a round waits for the busiest core). A node with a
cache (intra_node.cache_bytes) moves data at the cache bandwidth while its ranks' buffers
(the buffer and the reduce scratch of each) fit in it. Where a node's ranks read each
other's memory (`[compute] shared_memory`), the schedule is the one that runs there
(as_run), a round's overhead is a wait per peer read inside a node (round_messages), and
a round that fewer ranks work in shares the cores less (round_sharing).

Ranks are not globally in lock-step: a rank begins a round when it and its partners in
that round have finished their previous one (as the MPI executor does), so per-rank start
times (compute skew, stragglers) delay exactly the ranks that depend on them. The one
simplification: flows of a round are shared as if they overlapped in time.

While every rank is ready at the same moment, a round that every rank takes part in and
whose transfers are one size (to one element) ends for all ranks when its slowest flow
ends: that is the closed form (netsim.algorithms.cost), and it costs O(1) per round with
the flows' rates computed once per pattern (max-min fair with all flows active). So a ring
of 32,768 ranks (65,534 rounds) takes well under a second; rounds of unequal transfers, or
ranks that part ways (a straggler), are followed flow by flow and rank by rank.

Everything is vectorised over the flows of a round; routes are cached per communication
pattern (a ring repeats the same pattern every round, found by the identity of its arrays),
and the bytes each link carried are summed per pattern at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netsim.algorithms import Schedule, busbw
from netsim.sim.shared_memory import as_run, round_messages, round_sharing


@dataclass(frozen=True, eq=False)
class Simulation:
    time_s: float  # from the earliest start to the last rank's finish
    start_s: np.ndarray  # per rank
    finish_s: np.ndarray  # per rank
    link_bytes: np.ndarray  # (L,) bytes carried by each link
    link_busy_s: np.ndarray  # (L,) bytes / bandwidth: time the link was needed
    nbytes: int  # buffer bytes
    world_size: int

    @property
    def algbw_bytes_per_s(self) -> float:
        return self.nbytes / self.time_s if self.time_s > 0 else float("inf")

    @property
    def busbw_bytes_per_s(self) -> float:
        return busbw(self.algbw_bytes_per_s, self.world_size)

    @property
    def utilisation(self) -> np.ndarray:
        return (
            self.link_busy_s / self.time_s if self.time_s > 0 else np.zeros_like(self.link_busy_s)
        )

    @property
    def bottleneck_link(self) -> int:
        return int(np.argmax(self.link_busy_s))


@dataclass(eq=False)
class _Pattern:
    """The routes of one round's flows, in CSR form, with what progressive filling needs,
    and what every round on this pattern needs again: the flows' rates when all are active
    at once, and the bytes the pattern's rounds have put on its flows so far."""

    src: np.ndarray  # the round's arrays themselves: their identity is the cache's key
    dst: np.ndarray
    links: np.ndarray  # concatenated link ids of all flows
    lengths: np.ndarray  # links per flow
    flow_of_entry: np.ndarray
    starts: np.ndarray  # indptr[:-1] of flows with a non-empty route
    routed: np.ndarray  # bool per flow: has at least one link
    latency_s: np.ndarray  # per flow
    everyone: bool  # every rank sends or receives in it
    distinct: bool  # no rank sends twice, none receives twice: plain indexing updates ready
    messages: float = 1  # the most one rank sends or receives (shared memory: peers' waits)
    received: int = 1  # the most messages one rank receives in it
    sharing: float = 1  # ranks per core while it runs (shared_memory.round_sharing)
    contention_free: bool = False  # no link carries two of its flows
    rates: np.ndarray | None = None  # max-min fair rates with every flow active
    lines: np.ndarray | None = (
        None  # unique (latency, 1/rate) pairs: the slowest flow, for any size
    )
    flow_bytes: np.ndarray | float = 0.0  # bytes each flow carried over the rounds so far
    windows: dict | None = None  # id(table) -> (table, rows): lockstep rounds' Round.window

    def add_window(self, table: np.ndarray, row: int) -> None:
        self.windows = self.windows or {}
        self.windows.setdefault(id(table), (table, []))[1].append(row)

    def total_bytes(self, itemsize: int):
        """flow_bytes plus the windows' chunks: per flow, the sum over the rows r of
        table[r + j], from cumulative sums over runs of consecutive rows (a ring's rounds
        take consecutive windows), in O(table) per run rather than per round."""
        total = self.flow_bytes
        for table, rows in (self.windows or {}).values():
            height = len(self.lengths) // table.shape[1]
            cum = np.concatenate([np.zeros((1, table.shape[1]), np.int64), table.cumsum(axis=0)])
            hits = np.bincount(rows, minlength=len(table) + 1)
            for level in range(1, hits.max() + 1):  # a row used twice is two runs deep
                edges = np.diff(np.concatenate([[0], hits >= level, [0]]).astype(np.int8))
                for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                    total = total + (cum[b : b + height] - cum[a : a + height]).ravel() * itemsize
        return total


def simulate(
    schedule: Schedule,
    topology,
    itemsize: int = 4,
    start_s=None,
    gamma_s_per_byte: float | None = None,
) -> Simulation:
    p = schedule.world_size
    schedule = as_run(schedule, topology)  # (unchanged but through shared memory)
    gpu = topology.gpu_of_rank(p)
    gamma = topology.reduce_s_per_byte if gamma_s_per_byte is None else gamma_s_per_byte
    overhead_s = topology.message_overhead_s  # both times each round's sharing
    if "cache_bytes" in topology.spec["intra_node"]:
        bandwidth = topology.bandwidth_for(_resident_bytes(schedule, topology, itemsize))
    else:
        bandwidth = np.asarray(topology.bandwidth_bytes_per_s, dtype=float)
    start = np.zeros(p) if start_s is None else np.array(start_s, dtype=float)
    # While every rank is ready at the same moment, a round every rank takes part in whose
    # transfers are all of one size (to one element) ends for everyone when its slowest flow
    # does: the closed form, in O(1) per round. Otherwise each rank goes on when it and its
    # partners are done. `lockstep` is that common moment, or None once ranks part ways.
    lockstep = float(start[0]) if p and (start == start[0]).all() else None
    ready = start.copy()
    patterns: dict = {}
    for rnd in schedule.rounds:
        if len(rnd.src) == 0:
            continue
        pattern = _pattern(patterns, rnd, topology, gpu, p, bandwidth)
        least, largest, _ = rnd.span
        if lockstep is not None and pattern.everyone and largest - least <= 1:
            nbytes = largest * itemsize
            slowest = (pattern.lines[:, 0] + nbytes * pattern.lines[:, 1]).max()
            # a rank adds every message it receives: one after another, on its core
            adding = nbytes * gamma * pattern.received if rnd.any_adds else 0.0
            lockstep += slowest + (overhead_s * pattern.messages + adding) * pattern.sharing
            # bytes per flow, exactly: a scalar where the chunks are one size
            if least == largest:
                pattern.flow_bytes = pattern.flow_bytes + nbytes
            elif rnd.window is not None:
                pattern.add_window(*rnd.window)
            else:
                pattern.flow_bytes = pattern.flow_bytes + rnd.count * itemsize
            continue
        if lockstep is not None:  # ranks part ways here
            ready[:] = lockstep
            lockstep = None
        nbytes = rnd.count * itemsize
        if pattern.contention_free:  # no link shared: every flow at its path's rate
            took = pattern.latency_s + nbytes / pattern.rates
        else:
            took = _transfer_s(pattern, nbytes.astype(float), bandwidth) + pattern.latency_s
        adding = np.bincount(rnd.dst, weights=nbytes * gamma * rnd.adds, minlength=p)[rnd.dst]
        took = took + (overhead_s * pattern.messages + adding) * pattern.sharing
        end = np.maximum(ready[rnd.src], ready[rnd.dst]) + took
        if pattern.distinct:
            ready[rnd.src] = np.maximum(ready[rnd.src], end)
            ready[rnd.dst] = np.maximum(ready[rnd.dst], end)
        else:
            np.maximum.at(ready, rnd.src, end)
            np.maximum.at(ready, rnd.dst, end)
        pattern.flow_bytes = pattern.flow_bytes + nbytes
    if lockstep is not None:
        ready[:] = lockstep
    link_bytes = np.zeros(len(bandwidth))
    for pattern in patterns.values():
        per_flow = np.broadcast_to(pattern.total_bytes(itemsize), pattern.lengths.shape)
        link_bytes += np.bincount(
            pattern.links, weights=np.repeat(per_flow, pattern.lengths), minlength=len(bandwidth)
        )
    time_s = float(ready.max() - start.min()) if p else 0.0
    return Simulation(
        time_s, start, ready, link_bytes, link_bytes / bandwidth, schedule.nelems * itemsize, p
    )


def _pattern(patterns: dict, rnd, topology, gpu, p: int, bandwidth) -> _Pattern:
    """The round's pattern, routed once: found by the identity of its src and dst arrays
    (a ring's rounds share them), or by their contents when they are small."""
    key = (id(rnd.src), id(rnd.dst))
    pattern = patterns.get(key)
    if pattern is not None and pattern.src is rnd.src and pattern.dst is rnd.dst:
        return pattern
    if len(rnd.src) <= 4096:
        key = rnd.src.tobytes() + b"|" + rnd.dst.tobytes()
        if key in patterns:
            return patterns[key]
    pattern = patterns[key] = _route(topology, gpu, rnd.src, rnd.dst, p, bandwidth)
    return pattern


def _resident_bytes(schedule: Schedule, topology, itemsize: int) -> np.ndarray:
    """Bytes each node's ranks hold during the collective: the buffer, and the scratch that
    the MPI executor receives reduced chunks into (the largest round's incoming data)."""
    p = schedule.world_size
    scratch = np.zeros(p)
    for rnd in schedule.rounds:
        if rnd.any_adds:
            weights = rnd.count * rnd.adds
            np.maximum(scratch, np.bincount(rnd.dst, weights=weights, minlength=p), out=scratch)
    return np.bincount(
        topology.node_of_rank(p),
        weights=(schedule.nelems + scratch) * itemsize,
        minlength=topology.nodes,
    )


def _route(topology, gpu, src, dst, p: int, bandwidth) -> _Pattern:
    src_gpu, dst_gpu = gpu[src], gpu[dst]
    indptr, links = topology.routes(src_gpu, dst_gpu)
    lengths = np.diff(indptr)
    pattern = _Pattern(
        src=src,
        dst=dst,
        links=np.asarray(links, dtype=np.int64),
        lengths=lengths,
        flow_of_entry=np.repeat(np.arange(len(lengths)), lengths),
        starts=indptr[:-1][lengths > 0],
        routed=lengths > 0,
        latency_s=np.asarray(topology.path_latency_s(src_gpu, dst_gpu), dtype=float),
        everyone=len(np.union1d(src, dst)) == p,
        distinct=len(np.unique(src)) == len(src) and len(np.unique(dst)) == len(dst),
        messages=round_messages(topology, src, dst, p),
        received=int(np.bincount(dst).max(initial=1)),
        sharing=round_sharing(topology, src, dst, p),
    )
    pattern.rates = _max_min_rates(pattern, pattern.routed.copy(), bandwidth)
    pattern.rates[~pattern.routed] = np.inf
    with np.errstate(divide="ignore"):
        inverse = np.where(pattern.routed, 1.0 / pattern.rates, 0.0)
    pattern.lines = np.unique(np.column_stack([pattern.latency_s, inverse]), axis=0)
    pattern.contention_free = bool(np.bincount(pattern.links).max(initial=0) <= 1)
    return pattern


def _transfer_s(pattern: _Pattern, nbytes: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """Time each flow needs to move its bytes when flows share links max-min fairly and are
    re-shared whenever one finishes (flows without links, on one GPU, take no time)."""
    finish = np.zeros(len(nbytes))
    remaining = nbytes.copy()
    active = pattern.routed & (remaining > 0)
    now = 0.0
    while active.any():
        rate = _max_min_rates(pattern, active, bandwidth)
        to_go = np.full(len(nbytes), np.inf)
        to_go[active] = remaining[active] / rate[active]
        step = to_go.min()
        # flows that end within a relative 1e-12 of the first end together: one event
        ending = active & (to_go <= step * (1 + 1e-12))
        finish[ending] = now + to_go[ending]
        remaining[active] -= rate[active] * step
        now += step
        active &= ~ending
    return finish


def _max_min_rates(pattern: _Pattern, active: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """Progressive filling (Bertsekas & Gallager, Data Networks, 6.5.2), vectorised."""
    rate = np.zeros(len(active))
    capacity = bandwidth.copy()
    unfixed = active.copy()
    while unfixed.any():
        on = unfixed[pattern.flow_of_entry]
        flows_on_link = np.bincount(pattern.links[on], minlength=len(capacity))
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(flows_on_link > 0, capacity / flows_on_link, np.inf)
        # each routed flow's share is the smallest along its route (reduceat over CSR rows)
        flow_share = np.full(len(active), np.inf)
        flow_share[pattern.routed] = np.minimum.reduceat(share[pattern.links], pattern.starts)
        level = flow_share[unfixed].min()
        fixing = unfixed & (flow_share <= level * (1 + 1e-12))
        rate[fixing] = level
        capacity -= (
            np.bincount(pattern.links[fixing[pattern.flow_of_entry]], minlength=len(capacity))
            * level
        )
        np.maximum(capacity, 0, out=capacity)
        unfixed &= ~fixing
    return rate
