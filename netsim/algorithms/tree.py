"""Binary tree all-reduce: reduce up a binary tree to rank 0, then broadcast back down;
whole buffers, no pipelining. Heap order: the children of rank i are 2i+1 and 2i+2. For p = 7:

                  0                 reduce 0:     3, 4 -> 1    5, 6 -> 2
              /       \\             reduce 1:     1, 2 -> 0              (0 has the sum)
             1         2            broadcast 0:  0 -> 1, 2
            / \\       / \\           broadcast 1:  1 -> 3, 4    2 -> 5, 6
           3   4     5   6

One round per level each way, all children of a level sending at once (a parent with two
children receives both in the same reduce round and adds them in rank order):
2 floor(log2 p) rounds. Every rank but the root sends n up and receives n down; a parent
also receives n from each child and sends n to each, so per rank: leaves n each way, a
parent of two 3n (the root, having no parent, 2n). In total 2(p-1) n, the ring's total,
but on the ports of the inner ranks rather than spread evenly: the tree trades bandwidth
for log2 p latency. The sum is formed at the root only, so all ranks end bit-identical.
p = 1: no rounds.

In time, a parent's port carries both children's whole buffers, so a level with a two-child
parent costs alpha + 2 n beta each way (plus 2 n gamma to add them up).
"""

from __future__ import annotations

import numpy as np

from .base import Algorithm
from .cost import path_alpha_beta
from .rounds import BROADCAST, REDUCE, Schedule, check, make_round, whole


class Tree(Algorithm):
    name, label = "tree", "binary tree all-reduce"
    formula = "n to the parent and n to each child"

    def channel_schedule(self, world_size, nelems, node_of_rank=None, segments=None) -> Schedule:
        check(world_size, nelems)
        child = np.arange(1, world_size, dtype=np.int64)
        parent = (child - 1) // 2
        level = np.array([int(c + 1).bit_length() - 1 for c in child], dtype=np.int64)
        depth = int(level.max(initial=0))
        edges = [(child[level == lvl], parent[level == lvl]) for lvl in range(depth, 0, -1)]
        up = [
            make_round(REDUCE, k, True, children, parents, *whole(children, nelems))
            for k, (children, parents) in enumerate(edges)
        ]
        down = [
            make_round(BROADCAST, k, False, parents, children, *whole(children, nelems))
            for k, (children, parents) in enumerate(reversed(edges))
        ]
        return Schedule(self.name, world_size, nelems, tuple(up + down))

    def channel_elements_sent(
        self, world_size, nelems, node_of_rank=None, segments=None
    ) -> np.ndarray:
        check(world_size, nelems)
        r = np.arange(world_size)
        return nelems * (
            (r > 0).astype(np.int64) + (2 * r + 1 < world_size) + (2 * r + 2 < world_size)
        )

    def closed_form_s(
        self, topology, world_size, nbytes, segments=None, itemsize=1, channels=1
    ) -> float:
        p = world_size
        if p <= 1:
            return 0.0
        children = np.arange(1, p)
        ab = path_alpha_beta(topology, children, (children - 1) // 2, p)
        t = 0.0
        for level in range(p.bit_length() - 1):  # parents 2^level - 1 .. 2^(level+1) - 2
            first_child = 2 ** (level + 1) - 1  # of the level's first parent
            fanin = min(2, p - first_child)  # two children unless the tree ends there
            t += 2 * ab.message_s(fanin * nbytes) + fanin * nbytes * ab.gamma_s_per_byte
        return t


TREE = Tree()
