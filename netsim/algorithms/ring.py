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

Every rank sends (and receives) each chunk once per phase except one: in the reduce-scatter
all but chunk r+1 (the one it ends owning), in the all-gather all but chunk r+2. So rank r
sends n - |c_{r+1}| + n - |c_{r+2}| elements, which with equal chunks is 2(p-1)/p * n each
way, independent of p for large p: the reason the ring is bandwidth-optimal. In time,
2(p-1) rounds of one chunk: 2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma. Each chunk's
sum is formed on exactly one rank, in one order, and then copied, so all ranks end
bit-identical.
"""

from __future__ import annotations

import numpy as np

from netsim.errors import InputError

from .base import Algorithm
from .cost import largest, round_alpha_beta
from .rounds import ALL_GATHER, REDUCE_SCATTER, Schedule, chunk_bounds, node_layout, ring_rounds


class Ring(Algorithm):
    name, label, formula = "ring", "ring all-reduce", "2(p-1)/p x n"

    def channelled(self, world_size, nelems, node_of_rank, segments, channels):
        """C rings side by side on the C slices of the buffer, laid out by rail_orders."""
        slices = chunk_bounds(nelems, channels)
        bounds = slices[:-1, None] + np.array(
            [chunk_bounds(int(hi - lo), world_size) for lo, hi in zip(slices[:-1], slices[1:])]
        )
        rs, ag = ring_rounds(
            rail_orders(world_size, node_of_rank, channels), bounds, (REDUCE_SCATTER, ALL_GATHER)
        )
        return Schedule(self.name, world_size, nelems, tuple(rs + ag))

    def channel_schedule(self, world_size, nelems, node_of_rank=None, segments=None):
        return self.channelled(world_size, nelems, node_of_rank, segments, 1)

    def channelled_elements(self, world_size, nelems, node_of_rank, segments, channels):
        slices = chunk_bounds(nelems, channels)
        out = np.zeros(world_size, dtype=np.int64)
        for order, lo, hi in zip(
            rail_orders(world_size, node_of_rank, channels), slices, slices[1:]
        ):
            out[order] += member_sent(world_size, int(hi - lo))
        return out

    def channel_elements_sent(self, world_size, nelems, node_of_rank=None, segments=None):
        return member_sent(world_size, nelems)

    def closed_form_s(self, topology, world_size, nbytes, segments=None, itemsize=1, channels=1):
        p = world_size
        if p <= 1:
            return 0.0
        orders = rail_orders(p, topology.node_of_rank(p), channels)
        ab = round_alpha_beta(topology, orders.ravel(), np.roll(orders, -1, axis=1).ravel(), p)
        chunk = largest(largest(nbytes, channels, itemsize), p, itemsize)
        return 2 * (p - 1) * ab.message_s(chunk) + (p - 1) * chunk * ab.gamma_s_per_byte


def rail_orders(world_size: int, node_of_rank=None, channels: int = 1) -> np.ndarray:
    """(C, p): the ranks of channel c's ring in ring order, laid out as NCCL lays out its
    rings. One channel is the ring in rank order. With more, channel c visits the nodes in
    order and, inside each node, its ranks from the c-th on (local ranks c, c+1, ..., c-1,
    mod L): it enters every node at local rank c and leaves it from local rank c-1, so on a
    node of one NIC per GPU each channel crosses the node boundaries on a rail of its own
    (with PXN routing, `network.kind = "rails"`: NIC c out, NIC c in; NVIDIA/nccl
    src/graph/search.cc, NET n -> GPU ... -> NET n per channel). Nodes of unequal size are
    taken as one."""
    if channels == 1:
        return np.arange(world_size, dtype=np.int64)[None, :]
    try:
        layout = node_layout(world_size, node_of_rank)
    except InputError:
        layout = np.arange(world_size, dtype=np.int64)[None, :]
    return np.stack([np.roll(layout, -c, axis=1).ravel() for c in range(channels)])


def member_sent(members: int, nelems: int) -> np.ndarray:
    """Elements member i of a ring of `members` sends all-reducing nelems: every chunk but
    chunk i+1 in the reduce-scatter, every chunk but chunk i+2 in the all-gather."""
    sizes = np.diff(chunk_bounds(nelems, members))
    i = np.arange(members)
    return 2 * nelems - sizes[(i + 1) % members] - sizes[(i + 2) % members]


RING = Ring()
