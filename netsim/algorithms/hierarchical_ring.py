"""Hierarchical ring all-reduce: rings inside each node, and rings between the nodes on
1/L of the data each.

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

2(L-1) + 2(N-1) rounds. Per rank, exactly: what local rank j sends in a ring of L on the
whole buffer, plus what node m sends in a ring of N on the chunk local rank j owns (see
ring.member_sent). With L N | n: 2(L-1)/L * n inside the node and 2(N-1)/N * n/L between
nodes, together 2(p-1)/p * n, the flat ring's bytes; but only a 1/L share of them leaves
the node, where on a flat ring over the same ranks (nodes of consecutive ranks) the last
rank of each node sends all of its 2(p-1)/p * n across the network. One node (N = 1) and
one rank per node (L = 1, nodes in rank order) are the ring's transfers exactly.
Every piece's sum is formed on one rank, so all ranks end bit-identical.

In time, the closed form is the intra-node ring's 2(L-1) rounds of n/L and the L inter-node
rings' 2(N-1) rounds of n/(L N), one after the other, alpha and beta of each read off the
topology with all rings of a phase running at once.
"""

from __future__ import annotations

import numpy as np

from netsim.errors import InputError

from .base import Algorithm
from .cost import NONE, largest, round_alpha_beta
from .ring import member_sent
from .rounds import (
    INTER_ALL_GATHER,
    INTER_REDUCE_SCATTER,
    INTRA_ALL_GATHER,
    INTRA_REDUCE_SCATTER,
    Schedule,
    check,
    chunk_bounds,
    node_layout,
    ring_rounds,
)


class HierarchicalRing(Algorithm):
    name, label = "hierarchical-ring", "hierarchical ring all-reduce"
    formula = "2(L-1)/L x n inside a node + 2(N-1)/N x n/L between nodes"

    def channelled(self, world_size, nelems, node_of_rank, segments, channels):
        """Every phase's rings of every channel side by side: the intra-node rings of all
        nodes and channels in one round, then the inter-node rings, as views (ring_rounds)."""
        layout = node_layout(world_size, node_of_rank)  # (N, L): node m's ranks in rank order
        nnodes, local = layout.shape
        slices = chunk_bounds(nelems, channels)
        outer, inner = [], []
        owned = (np.arange(local) + 1) % local  # chunk each local rank owns after step 1
        for lo, hi in zip(slices[:-1], slices[1:]):
            bounds = lo + chunk_bounds(int(hi - lo), local)
            outer.append(np.tile(bounds, (nnodes, 1)))
            inner += [
                bounds[c] + chunk_bounds(int(bounds[c + 1] - bounds[c]), nnodes) for c in owned
            ]
        intra_rs, intra_ag = ring_rounds(
            np.tile(layout, (channels, 1)),
            np.concatenate(outer),
            (INTRA_REDUCE_SCATTER, INTRA_ALL_GATHER),
        )
        inter_rs, inter_ag = ring_rounds(
            np.tile(layout.T, (channels, 1)),
            np.array(inner),
            (INTER_REDUCE_SCATTER, INTER_ALL_GATHER),
        )
        return Schedule(
            self.name, world_size, nelems, tuple(intra_rs + inter_rs + inter_ag + intra_ag)
        )

    def channel_schedule(self, world_size, nelems, node_of_rank=None, segments=None):
        return self.channelled(world_size, nelems, node_of_rank, segments, 1)

    def channel_elements_sent(self, world_size, nelems, node_of_rank=None, segments=None):
        check(world_size, nelems)
        layout = node_layout(world_size, node_of_rank)
        nnodes, local = layout.shape
        owned = np.diff(chunk_bounds(nelems, local))[(np.arange(local) + 1) % local]
        out = np.zeros(world_size, dtype=np.int64)
        out[layout] = member_sent(local, nelems)[None, :] + np.column_stack(
            [member_sent(nnodes, int(size)) for size in owned]
        )
        return out

    def closed_form_s(self, topology, world_size, nbytes, segments=None, itemsize=1, channels=1):
        p = world_size
        if p <= 1:
            return 0.0
        try:
            local = node_layout(p, topology.node_of_rank(p))
        except InputError:  # uneven nodes: the algorithm does not run there
            return None
        N, L = local.shape
        # every channel's rings run on the same ranks: C copies of each pattern share links
        src = np.tile(local.ravel(), channels)
        intra = (
            round_alpha_beta(
                topology, src, np.tile(np.roll(local, -1, axis=1).ravel(), channels), p
            )
            if L > 1
            else NONE
        )
        inter = (
            round_alpha_beta(
                topology, src, np.tile(np.roll(local, -1, axis=0).ravel(), channels), p
            )
            if N > 1
            else NONE
        )
        # the largest of a node's L chunks of the largest channel
        outer = largest(largest(nbytes, channels, itemsize), L, itemsize)
        t = 2 * (L - 1) * intra.message_s(outer) + (L - 1) * outer * intra.gamma_s_per_byte
        piece = largest(outer, N, itemsize)  # of the largest chunk, cut into N
        return t + 2 * (N - 1) * inter.message_s(piece) + (N - 1) * piece * inter.gamma_s_per_byte


HIERARCHICAL_RING = HierarchicalRing()
