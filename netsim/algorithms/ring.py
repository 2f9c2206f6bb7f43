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

from .base import ALL_GATHER, REDUCE_SCATTER, Algorithm, Schedule, check, chunk_bounds, ring_rounds
from .cost import largest, round_alpha_beta


class Ring(Algorithm):
    name, label, formula = "ring", "ring all-reduce", "2(p-1)/p x n"

    def schedule(self, world_size, nelems, node_of_rank=None, segments=None) -> Schedule:
        check(world_size, nelems)
        rs, ag = ring_rounds(
            np.arange(world_size, dtype=np.int64)[None, :],
            chunk_bounds(nelems, world_size)[None, :],
            (REDUCE_SCATTER, ALL_GATHER),
        )
        return Schedule(self.name, world_size, nelems, tuple(rs + ag))

    def elements_sent(self, world_size, nelems, node_of_rank=None, segments=None) -> np.ndarray:
        check(world_size, nelems)
        return member_sent(world_size, nelems)

    def time_s(self, topology, world_size, nbytes, segments=None, itemsize=1) -> float:
        p = world_size
        if p <= 1:
            return 0.0
        ranks = np.arange(p)
        ab = round_alpha_beta(topology, ranks, (ranks + 1) % p, p)
        chunk = largest(nbytes, p, itemsize)
        return 2 * (p - 1) * ab.message_s(chunk) + (p - 1) * chunk * ab.gamma_s_per_byte


def member_sent(members: int, nelems: int) -> np.ndarray:
    """Elements member i of a ring of `members` sends all-reducing nelems: every chunk but
    chunk i+1 in the reduce-scatter, every chunk but chunk i+2 in the all-gather."""
    sizes = np.diff(chunk_bounds(nelems, members))
    i = np.arange(members)
    return 2 * nelems - sizes[(i + 1) % members] - sizes[(i + 2) % members]


RING = Ring()
