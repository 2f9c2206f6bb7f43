"""A synchronous parameter server sharded by layer (DistBelief): push, then pull."""

from __future__ import annotations

import numpy as np

from .base import PULL, PUSH, Schedule, check, chunk_bounds, make_round


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
    check(world_size, nelems)
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
    push = make_round(PUSH, 0, True, rank, server, starts[seg], counts[seg])
    pull = make_round(PULL, 0, False, server, rank, starts[seg], counts[seg])
    return Schedule("parameter-server", p, nelems, (push, pull))


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
