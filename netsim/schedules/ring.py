"""Ring all-reduce (Patarasuk & Yuan 2009; the baidu-allreduce layout). The buffer of n
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

import numpy as np

from .base import (ALL_GATHER, INTER_ALL_GATHER, INTER_REDUCE_SCATTER, INTRA_ALL_GATHER,
                   INTRA_REDUCE_SCATTER, REDUCE_SCATTER, Schedule, check, chunk_bounds, ring_rounds)


def ring(world_size: int, nelems: int) -> Schedule:
    """Ring all-reduce of nelems elements over world_size ranks (see the module docstring)."""
    check(world_size, nelems)
    rs, ag = ring_rounds(np.arange(world_size, dtype=np.int64)[None, :],
                    chunk_bounds(nelems, world_size)[None, :], (REDUCE_SCATTER, ALL_GATHER))
    return Schedule("ring", world_size, nelems, tuple(rs + ag))


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
    check(world_size, nelems)
    layout = _node_layout(world_size, node_of_rank)  # (N, L): node m's ranks in rank order
    nnodes, local = layout.shape
    outer = chunk_bounds(nelems, local)
    intra_rs, intra_ag = ring_rounds(layout, np.tile(outer, (nnodes, 1)),
                                (INTRA_REDUCE_SCATTER, INTRA_ALL_GATHER))
    owned = (np.arange(local) + 1) % local  # chunk each local rank owns after step 1
    inner = np.array([outer[c] + chunk_bounds(outer[c + 1] - outer[c], nnodes) for c in owned])
    inter_rs, inter_ag = ring_rounds(layout.T, inner, (INTER_REDUCE_SCATTER, INTER_ALL_GATHER))
    return Schedule("hierarchical-ring", world_size, nelems,
                    tuple(intra_rs + inter_rs + inter_ag + intra_ag))


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
