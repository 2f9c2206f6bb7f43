"""Collective algorithms as pure schedules: written once, executed over MPI and simulated.

A schedule says, round by round, which rank sends which slice of the flat buffer to whom,
and whether the receiver adds the slice into its own buffer (reduce) or overwrites its
slice with it (copy). It knows nothing of MPI, GPUs or time, so
`allreduce_train.collectives` can run it over MPI and `netsim` can replay the very same
traffic on a modelled network. Every algorithm is a sum, leaves all ranks bit-identical
(each piece's sum is formed on one rank, in one order, then copied), and is chosen by name
through `build` (the keys of ALGORITHMS). Rounds model time: one Round per communication
step, its transfers all reduce or all copy. For p ranks, n elements, N nodes of L ranks and
even chunks (the function docstrings give the exact counts):

    algorithm           rounds            elements each rank sends (and receives)
    ring                2(p-1)            2(p-1)/p * n
    halving-doubling    2 log2 p          2(p-1)/p * n        (p a power of two)
    tree                2 floor(log2 p)   n on a leaf .. 3n on a parent of two
    hierarchical-ring   2(L-1) + 2(N-1)   2(L-1)/L * n inside a node + 2(N-1)/N * n/L between
    parameter-server    2                 2(p-1)/p * n        (one even segment per rank)

Ring all-reduce (Patarasuk & Yuan 2009; the baidu-allreduce layout). The buffer of n
elements is cut into p chunks; rank r sends only to r+1 and receives only from r-1:

        +-----+            +-----+
        |  0  | ---------> |  1  |
        +-----+            +-----+
           ^                  |
           |                  v
        +-----+            +-----+
        |  3  | <--------- |  2  |
        +-----+            +-----+

Reduce-scatter, p-1 rounds: in round k rank r sends chunk (r-k) mod p, and adds the chunk
(r-k-1) mod p it receives into its own. After it, rank r holds the full sum of chunk
(r+1) mod p. All-gather, p-1 rounds: in round k rank r sends chunk (r+1-k) mod p and
copies the chunk (r-k) mod p it receives. For p = 4 (entries: chunk sent by rank r):

    round               rank 0   rank 1   rank 2   rank 3
    reduce-scatter 0       0        1        2        3
    reduce-scatter 1       3        0        1        2
    reduce-scatter 2       2        3        0        1     -> r owns sum of chunk r+1
    all-gather 0           1        2        3        0
    all-gather 1           0        1        2        3
    all-gather 2           3        0        1        2     -> every rank has every sum

Every rank sends (and receives) each chunk once per phase except one, so with equal chunks
a rank moves 2(p-1)/p * n elements each way, independent of p for large p: the reason
the ring is bandwidth-optimal. Each chunk's sum is formed on exactly one rank, in one
order, and then copied, so all ranks end bit-identical.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np

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
    """One round: transfer i moves buf[start[i]:start[i]+count[i]] from src[i] to dst[i]."""

    phase: str
    index: int  # round number within its phase
    reduce: bool  # receiver adds into its slice (True) or overwrites it (False)
    src: np.ndarray
    dst: np.ndarray
    start: np.ndarray
    count: np.ndarray


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
        return sum((np.bincount(r.src, minlength=self.world_size) for r in self.rounds),
                   np.zeros(self.world_size, dtype=np.int64))

    def _per_rank(self, side: str) -> np.ndarray:
        total = np.zeros(self.world_size, dtype=np.int64)
        for r in self.rounds:
            np.add.at(total, getattr(r, side), r.count)
        return total


def chunk_bounds(nelems: int, nchunks: int) -> np.ndarray:
    """Offsets of nchunks near-equal chunks (sizes differ by at most one): chunk c is
    [bounds[c], bounds[c+1]). Chunks may be empty when nelems < nchunks."""
    return (np.arange(nchunks + 1, dtype=np.int64) * nelems) // nchunks


def ring(world_size: int, nelems: int) -> Schedule:
    """Ring all-reduce of nelems elements over world_size ranks (see the module docstring)."""
    _check(world_size, nelems)
    rs, ag = _rings(np.arange(world_size, dtype=np.int64)[None, :],
                    chunk_bounds(nelems, world_size)[None, :], (REDUCE_SCATTER, ALL_GATHER))
    return Schedule("ring", world_size, nelems, tuple(rs + ag))


def halving_doubling(world_size: int, nelems: int) -> Schedule:
    """Rabenseifner's all-reduce: a recursive-halving reduce-scatter, then a recursive-doubling
    all-gather (Thakur, Rabenseifner & Gropp 2005). For p = 4, chunks of n/4:

        reduce-scatter (halving)              all-gather (doubling)
        step 0, distance 2, n/2 each way      step 0, distance 1, n/4 each way
            0 <-----> 2    1 <-----> 3            0 <--> 1    2 <--> 3
        step 1, distance 1, n/4 each way      step 1, distance 2, n/2 each way
            0 <--> 1    2 <--> 3                  0 <-----> 2    1 <-----> 3

    In every step a rank swaps half of the chunks it still holds with its partner (its rank
    with one bit flipped), keeping the half its own bit selects, then adds the half it got.
    Chunks sent by rank r:

        round               rank 0   rank 1   rank 2   rank 3
        reduce-scatter 0      2,3      2,3      0,1      0,1
        reduce-scatter 1       1        0        3        2     -> r owns the sum of chunk r
        all-gather 0           0        1        2        3
        all-gather 1          0,1      0,1      2,3      2,3    -> every rank has every sum

    A power of two p takes 2 log2 p rounds and every rank sends (and receives)
    n/2 + n/4 + ... + n/p = (p-1)/p * n per phase: 2(p-1)/p * n, the ring's bytes in
    log2 p instead of p-1 latencies. Other p fold to q = the largest power of two <= p, with
    r = p - q, by the even/odd pairing of MPICH (it keeps the fold between neighbouring
    ranks, usually on one node): in a first round (`fold`, reduce) rank 2i+1 sends its whole
    buffer to rank 2i for i < r; the q ranks 0, 2, ..., 2r-2, 2r, 2r+1, ..., p-1 run the
    power-of-two algorithm as virtual ranks 0..q-1 (chunk v ends on virtual rank v); a last
    round (`unfold`, copy) sends the result from 2i back to 2i+1. That is 2 log2 q + 2
    rounds; the r folded ranks send and receive n, their r partners 2(q-1)/q * n + n, the
    other ranks 2(q-1)/q * n (with q | n). Each chunk's sum is formed on one rank only, so
    all ranks end bit-identical.
    """
    _check(world_size, nelems)
    p = world_size
    q = 1 << (p.bit_length() - 1)
    folded = np.arange(1, 2 * (p - q), 2, dtype=np.int64)
    # the ranks that run the power-of-two algorithm, indexed by virtual rank
    active = np.concatenate([folded - 1, np.arange(2 * (p - q), p, dtype=np.int64)])
    bounds = chunk_bounds(nelems, q)
    virtual = np.arange(q, dtype=np.int64)
    lo, hi = np.zeros(q, dtype=np.int64), np.full(q, q, dtype=np.int64)  # chunks each still holds
    masks = [q >> (s + 1) for s in range(q.bit_length() - 1)]  # q/2, q/4, ..., 1
    rounds = [_round(FOLD, 0, True, folded, folded - 1, *_whole(folded, nelems))] if p > q else []
    for k, mask in enumerate(masks):
        mid, upper = (lo + hi) // 2, (virtual & mask) != 0
        give_lo, give_hi = np.where(upper, lo, mid), np.where(upper, mid, hi)
        rounds.append(_round(REDUCE_SCATTER, k, True, active, active[virtual ^ mask],
                             bounds[give_lo], bounds[give_hi] - bounds[give_lo]))
        lo, hi = np.where(upper, mid, lo), np.where(upper, hi, mid)
    for k, mask in enumerate(reversed(masks)):
        rounds.append(_round(ALL_GATHER, k, False, active, active[virtual ^ mask],
                             bounds[lo], bounds[hi] - bounds[lo]))
        lo = np.minimum(lo, lo ^ mask)
        hi = lo + 2 * mask
    if p > q:
        rounds.append(_round(UNFOLD, 0, False, folded - 1, folded, *_whole(folded, nelems)))
    return Schedule("halving-doubling", p, nelems, tuple(rounds))


def binary_tree(world_size: int, nelems: int) -> Schedule:
    """Reduce up a binary tree to rank 0, then broadcast back down; whole buffers, no
    pipelining. Heap order: the children of rank i are 2i+1 and 2i+2. For p = 7:

                      0                 reduce 0:     3, 4 -> 1    5, 6 -> 2
                  /       \\             reduce 1:     1, 2 -> 0              (0 has the sum)
                 1         2            broadcast 0:  0 -> 1, 2
                / \\       / \\           broadcast 1:  1 -> 3, 4    2 -> 5, 6
               3   4     5   6

    One round per level each way, all children of a level sending at once (a parent with
    two children receives both in the same reduce round and adds them in rank order):
    2 floor(log2 p) rounds. Every rank but the root sends n up and receives n down; a parent
    also receives n from each child and sends n to each, so per rank: leaves n each way, a
    parent of two 3n (the root, having no parent, 2n). In total 2(p-1) n, the ring's total,
    but on the ports of the inner ranks rather than spread evenly: the tree trades bandwidth
    for log2 p latency. The sum is formed at the root only, so all ranks end bit-identical.
    p = 1: no rounds.
    """
    _check(world_size, nelems)
    child = np.arange(1, world_size, dtype=np.int64)
    parent = (child - 1) // 2
    level = np.array([int(c + 1).bit_length() - 1 for c in child], dtype=np.int64)
    depth = int(level.max(initial=0))
    edges = [(child[level == lvl], parent[level == lvl]) for lvl in range(depth, 0, -1)]
    up = [_round(REDUCE, k, True, children, parents, *_whole(children, nelems))
          for k, (children, parents) in enumerate(edges)]
    down = [_round(BROADCAST, k, False, parents, children, *_whole(children, nelems))
            for k, (children, parents) in enumerate(reversed(edges))]
    return Schedule("tree", world_size, nelems, tuple(up + down))


def hierarchical_ring(world_size: int, nelems: int, node_of_rank=None) -> Schedule:
    """Two-level ring: rings inside each node, and rings between the nodes on 1/L of the data.

    node_of_rank[r] names rank r's node (None: all on one node). Every node must hold the same
    number L of ranks; local rank j is a node's j-th rank in rank order, nodes are taken in
    order of first appearance. N nodes; for 2 nodes of 2 ranks (node 0: ranks 0, 1):

           node 0               node 1
        +---+   +---+        +---+   +---+
        | 0 |<->| 1 |        | 2 |<->| 3 |      intra-node rings, chunks of n/L
        +---+   +---+        +---+   +---+
          |       |            |       |
          |       +------------|-------+      inter-node ring of local rank 1
          +--------------------+              inter-node ring of local rank 0

    1. intra-reduce-scatter, L-1 rounds: the ring reduce-scatter inside every node on the
       buffer cut into L chunks; local rank j ends owning chunk (j+1) mod L summed over its
       node (the ring's convention, so that one node is exactly the ring).
    2. inter-reduce-scatter and inter-all-gather, N-1 rounds each: the L rings of the ranks
       with equal local index, one per node in node order, all-reduce their owned chunk,
       cut into N pieces, all in the same rounds.
    3. intra-all-gather, L-1 rounds: the ring all-gather inside every node.

    Chunks sent by each rank for the layout above (A, B: halves of the buffer; A0, A1 the
    halves of A):

        round                  rank 0   rank 1   rank 2   rank 3
        intra-reduce-scatter 0    A        B        A        B     -> local 0 owns B, local 1 A
        inter-reduce-scatter 0    B0       A0       B1       A1
        inter-all-gather 0        B1       A1       B0       A0    -> local 0 has B, local 1 A
        intra-all-gather 0        B        A        B        A     -> every rank has everything

    2(L-1) + 2(N-1) rounds. Per rank (L N | n): 2(L-1)/L * n inside the node and
    2(N-1)/N * n/L between nodes, together 2(p-1)/p * n, the flat ring's bytes; but only
    a 1/L share of them leaves the node, where on a flat ring over the same ranks (nodes of
    consecutive ranks) the last rank of each node sends all of its 2(p-1)/p * n across the
    network. One node (N = 1)
    and one rank per node (L = 1, nodes in rank order) are the ring's transfers exactly.
    Every piece's sum is formed on one rank, so all ranks end bit-identical.
    """
    _check(world_size, nelems)
    layout = _node_layout(world_size, node_of_rank)  # (N, L): node m's ranks in rank order
    nnodes, local = layout.shape
    outer = chunk_bounds(nelems, local)
    intra_rs, intra_ag = _rings(layout, np.tile(outer, (nnodes, 1)),
                                (INTRA_REDUCE_SCATTER, INTRA_ALL_GATHER))
    owned = (np.arange(local) + 1) % local  # chunk each local rank owns after step 1
    inner = np.array([outer[c] + chunk_bounds(outer[c + 1] - outer[c], nnodes) for c in owned])
    inter_rs, inter_ag = _rings(layout.T, inner, (INTER_REDUCE_SCATTER, INTER_ALL_GATHER))
    return Schedule("hierarchical-ring", world_size, nelems,
                    tuple(intra_rs + inter_rs + inter_ag + intra_ag))


def parameter_server(world_size: int, nelems: int, segments=None) -> Schedule:
    """Synchronous parameter server sharded by layer (DistBelief, Dean et al. 2012), with every
    rank both a worker and the server of some segments.

    segments: (start, count) pairs tiling the buffer, one per layer (None: one per rank, from
    chunk_bounds); segment i lives on server rank i mod p. For p = 3 and segments s0, s1, s2:

        push (reduce)                        pull (copy)
        1 --s0--> 0 <--s0-- 2                1 <--s0-- 0 --s0--> 2
        0 --s1--> 1 <--s1-- 2                0 <--s1-- 1 --s1--> 2
        0 --s2--> 2 <--s2-- 1                0 <--s2-- 2 --s2--> 1

    Push: every rank sends each segment it does not serve to that segment's server, which adds
    them in rank order. Pull: each server sends its summed segments to every other rank.
    2 rounds (none for p = 1), one message per (segment, other rank) each. Rank r sends
    (n - S_r) + (p-1) S_r and receives (p-1) S_r + (n - S_r) elements, S_r being the size of
    the segments it serves: 2(p-1)/p * n when they are even, but the server of a big layer
    carries (p-1) times it through its port in each round (the hot spot parameter servers
    are known for). Each sum is formed on its server only, so all ranks end bit-identical.
    """
    _check(world_size, nelems)
    p = world_size
    if segments is None:
        bounds = chunk_bounds(nelems, p)
        starts, counts = bounds[:-1], np.diff(bounds)
    else:
        starts, counts = _check_segments(segments, nelems)
    if p == 1:
        return Schedule("parameter-server", p, nelems, ())
    seg, rank = (a.ravel() for a in np.meshgrid(np.arange(len(starts)), np.arange(p),
                                                 indexing="ij"))
    keep = rank != seg % p  # a server keeps its own segments
    seg, rank = seg[keep], rank[keep]
    server = seg % p
    push = _round(PUSH, 0, True, rank, server, starts[seg], counts[seg])
    pull = _round(PULL, 0, False, server, rank, starts[seg], counts[seg])
    return Schedule("parameter-server", p, nelems, (push, pull))


def build(algorithm: str, world_size: int, nelems: int, *, node_of_rank=None,
          segments=None) -> Schedule:
    """The schedule of the algorithm named `algorithm` (a key of ALGORITHMS). Context an
    algorithm does not take is ignored: node_of_rank (None: all ranks on one node) only
    shapes the hierarchical ring, segments (None: one per rank) the parameter server."""
    make = ALGORITHMS.get(algorithm)
    if make is None:
        raise ValueError(f"unknown all-reduce algorithm {algorithm!r}; choose one of "
                         f"{', '.join(ALGORITHMS)}")
    context = {"node_of_rank": node_of_rank, "segments": segments}
    wanted = inspect.signature(make).parameters
    return make(world_size, nelems, **{k: v for k, v in context.items() if k in wanted})


def _rings(rings: np.ndarray, bounds: np.ndarray, phases: tuple[str, str]):
    """Reduce-scatter and all-gather rounds of several independent rings run side by side.

    rings[g] lists ring g's m ranks in ring order (each sends to the next, the last to the
    first); bounds[g] holds the m+1 offsets of ring g's chunks. In reduce-scatter round k
    member i sends chunk (i-k) mod m, in all-gather round k chunk (i+1-k) mod m, as in the
    module docstring: member i ends the reduce-scatter owning chunk (i+1) mod m."""
    nrings, m = rings.shape
    src, dst = rings.ravel(), np.roll(rings, -1, axis=1).ravel()
    starts, sizes = bounds[:, :-1], np.diff(bounds, axis=1)
    member, row = np.arange(m), np.arange(nrings)[:, None]
    out = ([], [])
    for rounds, phase, reduce, first in zip(out, phases, (True, False), (member, member + 1)):
        for k in range(m - 1):
            chunk = (first - k) % m
            rounds.append(_round(phase, k, reduce, src, dst, starts[row, chunk].ravel(),
                                 sizes[row, chunk].ravel()))
    return out


def _node_layout(world_size: int, node_of_rank) -> np.ndarray:
    """(N, L) array of ranks: row m is the m-th node (in order of first appearance), its
    ranks in increasing order."""
    if node_of_rank is None:
        return np.arange(world_size, dtype=np.int64)[None, :]
    nodes = list(node_of_rank)
    if len(nodes) != world_size:
        raise ValueError(f"node_of_rank has {len(nodes)} entries for {world_size} ranks")
    members: dict = {}
    for rank, node in enumerate(nodes):
        members.setdefault(node, []).append(rank)
    if len({len(ranks) for ranks in members.values()}) > 1:
        counts = ", ".join(f"node {node}: {len(ranks)}" for node, ranks in members.items())
        raise ValueError(f"hierarchical-ring needs the same number of ranks on every node, "
                         f"got ranks per node {counts}")
    return np.array(list(members.values()), dtype=np.int64)


def _check_segments(segments, nelems: int) -> tuple[np.ndarray, np.ndarray]:
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    starts, counts = seg[:, 0], seg[:, 1]
    order = np.lexsort((counts, starts))  # by start; an empty segment before its neighbour
    ends = (starts + counts)[order]
    if (counts < 0).any() or (starts[order] != np.concatenate([[0], ends[:-1]])).any() \
            or (ends[-1] if len(ends) else 0) != nelems:
        raise ValueError(f"segments must be (start, count) pairs tiling [0, {nelems}) without "
                         f"gaps or overlaps, got {seg.tolist()}")
    return starts, counts


def _whole(ranks: np.ndarray, nelems: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, count) of the whole buffer, once per rank."""
    return np.zeros(len(ranks), dtype=np.int64), np.full(len(ranks), nelems, dtype=np.int64)


def _round(phase, index, reduce, src, dst, start, count) -> Round:
    # Empty chunks (nelems < p) need no message at all; both ends see the same schedule,
    # so dropping them here keeps sender and receiver in agreement.
    keep = count > 0
    return Round(phase, index, reduce, src[keep], dst[keep], start[keep], count[keep])


def _check(world_size: int, nelems: int) -> None:
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if nelems < 0:
        raise ValueError(f"nelems must be >= 0, got {nelems}")


# Schedules by the name a user chooses them with (--allreduce); the training program and
# the simulator both look algorithms up here (through `build`, which passes each the
# context it takes).
ALGORITHMS = {
    "ring": ring,
    "halving-doubling": halving_doubling,
    "tree": binary_tree,
    "hierarchical-ring": hierarchical_ring,
    "parameter-server": parameter_server,
}
