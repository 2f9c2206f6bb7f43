"""What every schedule is made of: rounds of transfers, chunking, node layouts, and the ring
machinery several algorithms share."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from netsim.errors import InputError

# Phase names (Round.phase), as the recorder, the reports and the timeline show them.
REDUCE_SCATTER = "reduce-scatter"
ALL_GATHER = "all-gather"
FOLD, UNFOLD = "fold", "unfold"  # halving- and recursive doubling for p not a power of two
EXCHANGE = "exchange"  # recursive doubling: partners swap whole buffers and both add
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
    that knows its chunk table passes in; otherwise it is computed. reduce is one flag for
    every transfer, or one per transfer where a pipelined round moves chunks of different
    phases (one up a tree, another down it) at once. window, where the builder sets it, is
    (table, row): count is table[row:row + len(count) // table.shape[1]] flattened, a window
    of a chunk table that many rounds share (ring_rounds), so that the simulator can total
    a ring's chunks per flow from a few cumulative sums instead of once per round."""

    phase: str
    index: int  # round number within its phase
    reduce: bool | np.ndarray  # receiver adds into its slice (True) or overwrites it (False)
    src: np.ndarray
    dst: np.ndarray
    start: np.ndarray
    count: np.ndarray
    span: tuple[int, int, int] | None = None
    window: tuple[np.ndarray, int] | None = None

    def __post_init__(self):
        if self.span is None:
            c = self.count
            span = (int(c.min()), int(c.max()), int(c.sum())) if len(c) else (0, 0, 0)
            object.__setattr__(self, "span", span)

    @cached_property
    def adds(self) -> np.ndarray:
        """Per transfer: does its receiver add (reduce) rather than overwrite? (Read-only; made
        once: the executors and the simulator ask it of every round, often.)"""
        return np.broadcast_to(np.asarray(self.reduce, dtype=bool), self.count.shape)

    @property
    def any_adds(self) -> bool:
        if isinstance(self.reduce, (bool, np.bool_)):  # one flag: no array to look through
            return bool(self.reduce)
        return bool(np.any(self.reduce))


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
    [bounds[c], bounds[c+1]). Chunks may be empty when nelems < nchunks. Computed as
    c*q + c*r // nchunks (nelems = q*nchunks + r), the same as c*nelems // nchunks without
    its int64 overflow (a trillion elements in a million chunks)."""
    whole, rest = divmod(int(nelems), int(nchunks))
    c = np.arange(nchunks + 1, dtype=np.int64)
    return c * whole + c * rest // nchunks


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
                    phase,
                    k,
                    reduce,
                    src,
                    dst,
                    starts[at].reshape(-1),
                    sizes[at].reshape(-1),
                    span,
                    (sizes, at.start),
                )
            )
    return out


def whole(ranks: np.ndarray, nelems: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) of the whole buffer, once per rank."""
    return np.zeros(len(ranks), dtype=np.int64), np.full(len(ranks), nelems, dtype=np.int64)


def make_round(phase, index, reduce, src, dst, start, count, span=None, window=None) -> Round:
    """A Round of these transfers less the empty ones: empty chunks (nelems < p) need no
    message at all, and both ends see the same schedule, so dropping them here keeps sender
    and receiver in agreement. Arrays without an empty chunk are kept as they are (views)."""
    rnd = Round(phase, index, reduce, src, dst, start, count, span, window)
    if rnd.span[0] > 0 or not len(count):
        return rnd
    keep = count > 0
    if not isinstance(reduce, bool | np.bool_):
        reduce = np.asarray(reduce)[keep]
    return Round(phase, index, reduce, src[keep], dst[keep], start[keep], count[keep])


def check(world_size: int, nelems: int, channels: int = 1, chunks: int = 1) -> None:
    if world_size < 1:
        raise InputError(f"world_size must be >= 1, got {world_size}")
    if nelems < 0:
        raise InputError(f"nelems must be >= 0, got {nelems}")
    for name, value in (("channels", channels), ("chunks", chunks)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")


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
