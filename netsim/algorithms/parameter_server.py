"""Parameter server all-reduce: a synchronous parameter server sharded by layer (DistBelief,
Dean et al. 2012), every rank both a worker and the server of some segments: push, then pull.

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

In time, a round lasts as long as its busiest port: a server's carries (p-1) copies of what
it serves, a worker's everything it does not serve.
"""

from __future__ import annotations

import numpy as np

from .base import Algorithm
from .cost import path_alpha_beta
from .rounds import PULL, PUSH, Schedule, check, chunk_bounds, make_round, tiling


class ParameterServer(Algorithm):
    name, label = "parameter-server", "parameter-server all-reduce"
    formula = "(n - S_r) + (p-1) S_r, S_r the segments rank r serves"

    def channel_schedule(self, world_size, nelems, node_of_rank=None, segments=None) -> Schedule:
        check(world_size, nelems)
        p = world_size
        starts, counts = _segments(nelems, p, segments)
        if p == 1:
            return Schedule(self.name, p, nelems, ())
        seg, rank = (
            a.ravel() for a in np.meshgrid(np.arange(len(starts)), np.arange(p), indexing="ij")
        )
        keep = rank != seg % p  # a server keeps its own segments
        seg, rank = seg[keep], rank[keep]
        server = seg % p
        push = make_round(PUSH, 0, True, rank, server, starts[seg], counts[seg])
        pull = make_round(PULL, 0, False, server, rank, starts[seg], counts[seg])
        return Schedule(self.name, p, nelems, (push, pull))

    def channel_elements_sent(
        self, world_size, nelems, node_of_rank=None, segments=None
    ) -> np.ndarray:
        check(world_size, nelems)
        _, counts = _segments(nelems, world_size, segments)
        served = np.bincount(
            np.arange(len(counts)) % world_size, weights=counts, minlength=world_size
        ).astype(np.int64)
        return nelems - served + (world_size - 1) * served

    def closed_form_s(
        self, topology, world_size, nbytes, segments=None, itemsize=1, channels=1
    ) -> float:
        p = world_size
        if p <= 1:
            return 0.0
        if segments is None:
            seg = np.diff(chunk_bounds(int(nbytes), p)).astype(float)
        else:  # segments are (start, count) in elements; the closed form wants bytes
            counts = np.asarray([c for _, c in segments], dtype=float)
            seg = nbytes * counts / counts.sum()
        ranks = np.arange(p)
        src, dst = np.meshgrid(ranks, ranks)  # the port loads are in the formula itself
        off = src != dst
        ab = path_alpha_beta(topology, src[off], dst[off], p)
        served = np.bincount(np.arange(len(seg)) % p, weights=seg, minlength=p)
        busiest = max((p - 1) * served.max(), (seg.sum() - served).max())
        return 2 * ab.message_s(busiest) + (p - 1) * served.max() * ab.gamma_s_per_byte


def _segments(nelems: int, p: int, segments) -> tuple[np.ndarray, np.ndarray]:
    """(starts, counts) of the segments: one even one per rank when segments is None."""
    if segments is None:
        bounds = chunk_bounds(nelems, p)
        return bounds[:-1], np.diff(bounds)
    return tiling(segments, nelems)


PARAMETER_SERVER = ParameterServer()
