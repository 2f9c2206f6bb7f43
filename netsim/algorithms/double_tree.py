"""Double binary tree all-reduce, NCCL's Tree: a chain inside each node, two complementary
binary trees across the nodes, each on half the buffer, pipelined chunk by chunk.

NVIDIA/nccl src/graph/trees.cc (ncclGetBtree, ncclGetDtree): tree 0 is a binary tree over
the nodes in which node m's parent is found from m's lowest set bit b: (m ^ b) | (b << 1), or
m ^ b where that is past the last node; node 0 is the root. Tree 1 is its mirror (node m
is node N-1-m of tree 0) when N is even, or tree 0 shifted by one node when N is odd, so a
node that is a leaf in one tree is an inner node in the other and every NIC carries the
same load. Inside a node the ranks form a chain (src/graph/connect.cc: "a chain following
the search order"): the chain's head meets the other nodes' heads in the tree. For 4 nodes
of 2 ranks (node m: ranks 2m, 2m+1; heads 0, 2, 4, 6):

    tree 0 (half A)                  tree 1 (half B, mirrored)
    node:  0 <- 2 <- 1, 3            node:  3 <- 1 <- 2, 0
    rank:  0 <- 4 <- 2, 6            rank:  6 <- 2 <- 4, 0
           each head <- its chain: 1 -> 0, 3 -> 2, 5 -> 4, 7 -> 6

Reduce: every rank sends its partial sum of a half to its parent, deepest first; broadcast:
the root sends the sum back down the same edges. Per rank and half: the half to its parent
(unless it is a root) and the half to each child. NCCL runs reduce and broadcast together,
chunk by chunk (pipelined(): a chunk goes up while an earlier one comes down), so the
schedule is meant to be asked for with chunks > 1; with one chunk it is the textbook tree.

Channels: channel c's chains start at local rank c (as ring.rail_orders), so the channels'
heads, and with them the inter-node traffic, use different NICs. Every sum is formed on one
rank in one order, so all ranks end bit-identical.
"""

from __future__ import annotations

import numpy as np

from .base import Algorithm
from .compose import side_by_side
from .cost import schedule_time_s
from .rounds import BROADCAST, REDUCE, Schedule, check, chunk_bounds, make_round, node_layout


class DoubleBinaryTree(Algorithm):
    name, label = "double-binary-tree", "double binary tree all-reduce (NCCL Tree)"
    formula = "per half, n/2 to the parent and n/2 to each child"

    def channelled(self, world_size, nelems, node_of_rank, segments, channels):
        slices = chunk_bounds(nelems, channels)
        parts = [
            (self._one(world_size, int(hi - lo), chains), int(lo))
            for chains, lo, hi in zip(
                _chains(world_size, node_of_rank, channels), slices, slices[1:]
            )
        ]
        return parts[0][0] if channels == 1 else side_by_side(self.name, world_size, nelems, parts)

    def channel_schedule(self, world_size, nelems, node_of_rank=None, segments=None):
        return self.channelled(world_size, nelems, node_of_rank, segments, 1)

    def channelled_elements(self, world_size, nelems, node_of_rank, segments, channels):
        slices = chunk_bounds(nelems, channels)
        out = np.zeros(world_size, dtype=np.int64)
        for chains, lo, hi in zip(_chains(world_size, node_of_rank, channels), slices, slices[1:]):
            halves = np.diff(chunk_bounds(int(hi - lo), 2))
            for parent, half in zip(parents(chains), halves):
                edges = np.bincount(parent[parent >= 0], minlength=world_size) + (parent >= 0)
                out += half * edges
        return out

    def channel_elements_sent(self, world_size, nelems, node_of_rank=None, segments=None):
        return self.channelled_elements(world_size, nelems, node_of_rank, segments, 1)

    def closed_form_s(self, topology, world_size, nbytes, segments=None, itemsize=1, channels=1):
        """The schedule's own rounds, each as long as its largest transfer on its pattern."""
        if world_size <= 1:
            return 0.0
        nodes = topology.node_of_rank(world_size)
        schedule = self.schedule(world_size, int(nbytes // itemsize), nodes, channels=channels)
        return schedule_time_s(schedule, topology, itemsize)

    def _one(self, world_size: int, nelems: int, chains: np.ndarray) -> Schedule:
        """One channel: tree 0 on the first half, tree 1 on the second, side by side."""
        check(world_size, nelems)
        halves = chunk_bounds(nelems, 2)
        trees = [
            (_tree_schedule(self.name, parent, int(halves[h]), int(halves[h + 1] - halves[h])), 0)
            for h, parent in enumerate(parents(chains))
        ]
        return side_by_side(self.name, world_size, nelems, trees)


def btree_parent(nranks: int, rank: int) -> int:
    """Rank's parent in NCCL's binary tree over nranks (ncclGetBtree; -1 for the root 0)."""
    if rank == 0:
        return -1
    bit = rank & -rank  # the lowest set bit
    up = (rank ^ bit) | (bit << 1)
    return up if up < nranks else rank ^ bit


def _chains(world_size: int, node_of_rank, channels: int) -> list[np.ndarray]:
    """Per channel, the (N, L) chains: row m is node m's ranks in chain order, head first;
    channel c's chains start at local rank c."""
    layout = node_layout(world_size, node_of_rank)
    return [np.roll(layout, -c, axis=1) for c in range(channels)]


def parents(chains: np.ndarray) -> list[np.ndarray]:
    """The parent of every rank (-1: the root) in tree 0 and tree 1 of the double tree over
    the nodes, the ranks of each node a chain (chains[m]: node m's, head first)."""
    nnodes = len(chains)
    out = []
    for mirror in (False, True):
        parent = np.full(chains.size, -1, dtype=np.int64)
        parent[chains[:, 1:]] = chains[:, :-1]  # down the chain, toward the head
        for m in range(nnodes):
            up = node_parent(nnodes, m, mirror)
            if up >= 0:
                parent[chains[m, 0]] = chains[up, 0]
        out.append(parent)
    return out


def node_parent(nnodes: int, m: int, mirror: bool) -> int:
    if not mirror:
        return btree_parent(nnodes, m)
    if nnodes % 2 == 0:  # the mirror: node m is node N-1-m of tree 0
        up = btree_parent(nnodes, nnodes - 1 - m)
        return -1 if up < 0 else nnodes - 1 - up
    up = btree_parent(nnodes, (m - 1) % nnodes)  # shifted by one node
    return -1 if up < 0 else (up + 1) % nnodes


def _tree_schedule(name: str, parent: np.ndarray, start: int, count: int) -> Schedule:
    """Reduce up the tree deepest first, then broadcast down, every transfer the slice."""
    p = len(parent)
    depth = np.zeros(p, dtype=np.int64)
    q = parent.copy()  # every rank's ancestor one level further up, all ranks at once
    while (q >= 0).any():  # as many passes as the tree is deep (a chain + log2 nodes)
        depth += q >= 0
        q = np.where(q >= 0, parent[np.maximum(q, 0)], -1)
    levels = [np.flatnonzero(depth == d) for d in range(int(depth.max(initial=0)), 0, -1)]
    up, down = [], []
    for k, ranks in enumerate(levels):
        starts, counts = np.full(len(ranks), start), np.full(len(ranks), count)
        up.append(make_round(REDUCE, k, True, ranks, parent[ranks], starts, counts))
    for k, ranks in enumerate(reversed(levels)):
        starts, counts = np.full(len(ranks), start), np.full(len(ranks), count)
        down.append(make_round(BROADCAST, k, False, parent[ranks], ranks, starts, counts))
    return Schedule(name, p, start + count, tuple(up + down))


DOUBLE_BINARY_TREE = DoubleBinaryTree()
