"""What every algorithm is made of: the Algorithm interface, rounds of transfers, chunking,
and the ring machinery several algorithms share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from netsim.errors import InputError

# Phase names (Round.phase), as the recorder, the reports and the timeline show them.
REDUCE_SCATTER = "reduce-scatter"
ALL_GATHER = "all-gather"
FOLD, UNFOLD = "fold", "unfold"  # halving-doubling for p not a power of two
REDUCE, BROADCAST = "reduce", "broadcast"  # tree
INTRA_REDUCE_SCATTER, INTRA_ALL_GATHER = "intra-reduce-scatter", "intra-all-gather"
INTER_REDUCE_SCATTER, INTER_ALL_GATHER = "inter-reduce-scatter", "inter-all-gather"
PUSH, PULL = "push", "pull"  # parameter server


@dataclass(frozen=True, eq=False)
class Round:
    """One round: transfer i moves buf[start[i]:start[i]+count[i]] from src[i] to dst[i].

    The arrays may be views shared with other rounds (a ring's rounds share src and dst, and
    their chunks are views into one table), so a schedule of 2(p-1) rounds takes O(p)
    memory: never write into them. span is (least, largest, total) count, which a builder
    that knows its chunk table passes in; otherwise it is computed."""

    phase: str
    index: int  # round number within its phase
    reduce: bool  # receiver adds into its slice (True) or overwrites it (False)
    src: np.ndarray
    dst: np.ndarray
    start: np.ndarray
    count: np.ndarray
    span: tuple[int, int, int] | None = None

    def __post_init__(self):
        if self.span is None:
            c = self.count
            span = (int(c.min()), int(c.max()), int(c.sum())) if len(c) else (0, 0, 0)
            object.__setattr__(self, "span", span)


@dataclass(frozen=True, eq=False)
class Schedule:
    algorithm: str
    world_size: int
    nelems: int
    rounds: tuple[Round, ...]

    def elements_sent(self) -> np.ndarray:
        """Elements each rank sends over the whole collective, indexed by rank."""
        return self._per_rank("src")

    def elements_received(self) -> np.ndarray:
        return self._per_rank("dst")

    def messages_sent(self) -> np.ndarray:
        return sum(
            (np.bincount(r.src, minlength=self.world_size) for r in self.rounds),
            np.zeros(self.world_size, dtype=np.int64),
        )

    def _per_rank(self, side: str) -> np.ndarray:
        total = np.zeros(self.world_size, dtype=np.int64)
        for r in self.rounds:
            np.add.at(total, getattr(r, side), r.count)
        return total


def chunk_bounds(nelems: int, nchunks: int) -> np.ndarray:
    """Offsets of nchunks near-equal chunks (sizes differ by at most one): chunk c is
    [bounds[c], bounds[c+1]). Chunks may be empty when nelems < nchunks."""
    return (np.arange(nchunks + 1, dtype=np.int64) * nelems) // nchunks


def ring_rounds(rings: np.ndarray, bounds: np.ndarray, phases: tuple[str, str]):
    """Reduce-scatter and all-gather rounds of several independent rings run side by side.

    rings[g] lists ring g's m ranks in ring order (each sends to the next, the last to the
    first); bounds[g] holds the m+1 offsets of ring g's chunks. In reduce-scatter round k
    member i sends chunk (i-k) mod m, in all-gather round k chunk (i+1-k) mod m, as in ring.py's
    docstring: member i ends the reduce-scatter owning chunk (i+1) mod m.

    Transfers are ordered member by member (member i of every ring, then member i+1), so
    that a round's chunks are consecutive rows of one table repeated twice over: every round
    is a view into it, and all rounds share one src and one dst array."""
    nrings, m = rings.shape
    src, dst = rings.T.ravel(), np.roll(rings, -1, axis=1).T.ravel()
    # row j of the tables: chunk j mod m of every ring
    rows = np.arange(2 * m + 1) % m
    starts = np.ascontiguousarray(bounds[:, :-1].T[rows])
    sizes = np.ascontiguousarray(np.diff(bounds, axis=1).T[rows])
    span = (int(sizes.min()), int(sizes.max()), int(sizes[:m].sum())) if m else (0, 0, 0)
    out = ([], [])
    for rounds, phase, reduce, first in zip(out, phases, (True, False), (0, 1)):
        for k in range(m - 1):
            at = slice(m + first - k, 2 * m + first - k)  # rows (i + first - k) mod m
            rounds.append(
                make_round(
                    phase, k, reduce, src, dst, starts[at].reshape(-1), sizes[at].reshape(-1), span
                )
            )
    return out


def whole(ranks: np.ndarray, nelems: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) of the whole buffer, once per rank."""
    return np.zeros(len(ranks), dtype=np.int64), np.full(len(ranks), nelems, dtype=np.int64)


def make_round(phase, index, reduce, src, dst, start, count, span=None) -> Round:
    """A Round of these transfers less the empty ones: empty chunks (nelems < p) need no
    message at all, and both ends see the same schedule, so dropping them here keeps sender
    and receiver in agreement. Arrays without an empty chunk are kept as they are (views)."""
    rnd = Round(phase, index, reduce, src, dst, start, count, span)
    if rnd.span[0] > 0 or not len(count):
        return rnd
    keep = count > 0
    return Round(phase, index, reduce, src[keep], dst[keep], start[keep], count[keep])


def check(world_size: int, nelems: int, channels: int = 1) -> None:
    if world_size < 1:
        raise InputError(f"world_size must be >= 1, got {world_size}")
    if nelems < 0:
        raise InputError(f"nelems must be >= 0, got {nelems}")
    if isinstance(channels, bool) or not isinstance(channels, int | np.integer) or channels < 1:
        raise InputError(f"channels must be a positive integer, got {channels!r}")


def node_layout(world_size: int, node_of_rank) -> np.ndarray:
    """(N, L) array of ranks: row m is the m-th node (in order of first appearance), its
    ranks in increasing order."""
    if node_of_rank is None:
        return np.arange(world_size, dtype=np.int64)[None, :]
    nodes = list(node_of_rank)
    if len(nodes) != world_size:
        raise InputError(f"node_of_rank has {len(nodes)} entries for {world_size} ranks")
    members: dict = {}
    for rank, node in enumerate(nodes):
        members.setdefault(node, []).append(rank)
    if len({len(ranks) for ranks in members.values()}) > 1:
        counts = ", ".join(f"node {node}: {len(ranks)}" for node, ranks in members.items())
        raise InputError(
            f"hierarchical-ring needs the same number of ranks on every node, "
            f"got ranks per node {counts}"
        )
    return np.array(list(members.values()), dtype=np.int64)


# --- channels ------------------------------------------------------------------------------
#
# C channels run C copies of an algorithm side by side on the C near-equal slices of the
# buffer (chunk_bounds(n, C)), as NCCL's channels do: round k of the schedule is round k of
# every channel (rounds depend on the ranks, not on the length, so they match). The bytes
# are the same as with one channel; what channels change is which links carry them: a ring
# whose channels leave each node through different NICs (ring.rail_orders) uses them all.


def side_by_side(algorithm: str, world_size: int, nelems: int, parts) -> Schedule:
    """One schedule of the channels' schedules `parts` ([(schedule of a slice, its first
    element)]): round k of each, shifted to its slice, in one round."""
    rounds = []
    for group in zip(*(s.rounds for s, _ in parts)):
        first = group[0]
        rounds.append(
            make_round(
                first.phase,
                first.index,
                first.reduce,
                np.concatenate([r.src for r in group]),
                np.concatenate([r.dst for r in group]),
                np.concatenate([r.start + at for r, (_, at) in zip(group, parts)]),
                np.concatenate([r.count for r in group]),
            )
        )
    return Schedule(algorithm, world_size, nelems, tuple(rounds))


def in_slice(segments, nelems: int, lo: int, hi: int):
    """Segments ((start, count) pairs tiling the buffer of nelems) cut to [lo, hi), shifted
    to start at 0: they tile the slice (None stays None; the whole buffer stays as it is)."""
    if segments is None or (lo, hi) == (0, nelems):
        return segments
    tiling(segments, nelems)
    out = []
    for start, count in segments:
        a, b = max(start, lo), min(start + count, hi)
        if a < b or (count == 0 and lo <= start < hi):
            out.append((a - lo, max(b - a, 0)))
    return out or [(0, hi - lo)]


class Algorithm(ABC):
    """An all-reduce algorithm, whole: what it sends (its schedule), how many elements each
    rank sends (counted from the algorithm's definition, not from the schedule, so the two
    check each other), and how long it takes (a closed form on a topology). Each algorithm
    module defines one subclass and one instance of it; `netsim.algorithms.get` finds it by
    name. schedule and elements_sent take the same context, and an algorithm ignores what it
    does not use: node_of_rank (rank r's node; None: all on one node) and segments ((start,
    count) pairs tiling the buffer, one per layer; None: one per rank). time_s takes the
    segments; its nodes are the topology's, as it places the ranks.
    """

    name: str  # as users choose it: --allreduce, --algorithm
    label: str  # as reports name it
    formula: str | None  # the elements each rank sends, as people write it
    scheduled = True  # its messages are a schedule of ours: recorded, counted, simulated

    def schedule(
        self, world_size: int, nelems: int, node_of_rank=None, segments=None, channels: int = 1
    ) -> Schedule | None:
        """The rounds of one all-reduce of nelems elements on world_size ranks, in
        `channels` channels side by side (one_channel's schedule on each slice)."""
        check(world_size, nelems, channels)
        bounds = chunk_bounds(nelems, channels)
        parts = [
            (
                self.channel_schedule(
                    world_size, int(hi - lo), node_of_rank, in_slice(segments, nelems, lo, hi)
                ),
                lo,
            )
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ]
        if parts[0][0] is None or channels == 1:
            return parts[0][0]
        return side_by_side(self.name, world_size, nelems, parts)

    @abstractmethod
    def channel_schedule(
        self, world_size: int, nelems: int, node_of_rank=None, segments=None
    ) -> Schedule | None:
        """The rounds of one channel: an all-reduce of nelems elements on world_size ranks."""

    def elements_sent(
        self, world_size: int, nelems: int, node_of_rank=None, segments=None, channels: int = 1
    ) -> np.ndarray | None:
        """Elements each rank sends in one all-reduce, indexed by rank: the channels' sum."""
        check(world_size, nelems, channels)
        bounds = chunk_bounds(nelems, channels)
        counts = [
            self.channel_elements_sent(
                world_size, int(hi - lo), node_of_rank, in_slice(segments, nelems, lo, hi)
            )
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ]
        return None if counts[0] is None else np.sum(counts, axis=0)

    @abstractmethod
    def channel_elements_sent(
        self, world_size: int, nelems: int, node_of_rank=None, segments=None
    ) -> np.ndarray | None:
        """Elements each rank sends in one channel of nelems elements."""

    @abstractmethod
    def time_s(
        self,
        topology,
        world_size: int,
        nbytes: float,
        segments=None,
        itemsize: int = 1,
        channels: int = 1,
    ) -> float | None:
        """The closed-form time on `topology` (ranks placed as it places them), with alpha and
        beta read off the algorithm's own patterns (netsim.algorithms.cost); None where the
        algorithm has none. nbytes is nbytes / itemsize elements: where chunks differ by an
        element, a round lasts as long as its largest. Channels whose patterns are the same
        share the same links, so C of them on n/C take as long as one on n: an algorithm
        that spreads its channels over other links (the ring) says so in its own form."""

    def __repr__(self) -> str:
        return f"<algorithm {self.name}>"


def tiling(segments, nelems: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, counts) of segments ((start, count) pairs), which must tile [0, nelems)."""
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    starts, counts = seg[:, 0], seg[:, 1]
    order = np.lexsort((counts, starts))  # by start; an empty segment before its neighbour
    ends = (starts + counts)[order]
    if (
        (counts < 0).any()
        or (starts[order] != np.concatenate([[0], ends[:-1]])).any()
        or (ends[-1] if len(ends) else 0) != nelems
    ):
        raise InputError(
            f"segments must be (start, count) pairs tiling [0, {nelems}) without "
            f"gaps or overlaps, got {seg.tolist()}"
        )
    return starts, counts
