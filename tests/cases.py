"""The awkward cases every algorithm and every executor is checked under: rank counts, lengths
(0, 1, p-1, p+1, a prime), node layouts and layer-like segment splits."""

import numpy as np

from netsim import algorithms

NAMES = list(algorithms.SCHEDULED)


def lengths(p):
    return sorted({0, 1, max(p - 1, 0), p, p + 1, 97, 1000})


def integer_inputs(p, n, seed=0):
    """Integers in float64: every summation order gives the exact sum."""
    rng = np.random.default_rng([p, n, seed])
    return [rng.integers(-1000, 1000, n).astype(np.float64) for _ in range(p)]


def layouts(p):
    """Every equal split of p ranks into nodes: consecutive ranks per node, and round-robin."""
    for per_node in (d for d in range(1, p + 1) if p % d == 0):
        yield [r // per_node for r in range(p)]
        yield [r % (p // per_node) for r in range(p)]


def uneven_segments(n, p):
    """Layer-like segments: one big, one tiny, one empty, and a last one, out of order."""
    cuts = [0, n // 2, (3 * n) // 5, (3 * n) // 5, (19 * n) // 20, n]
    segments = [(a, b - a) for a, b in zip(cuts, cuts[1:])]
    return segments[p % len(segments) :] + segments[: p % len(segments)]


def contexts(p, n):
    """The contexts every algorithm is checked under, whichever it uses (the others it must
    ignore): none, each node layout, uneven segments, channels, pipelined chunks, and
    several at once."""
    yield {}
    yield from ({"node_of_rank": layout} for layout in layouts(p))
    yield {"segments": uneven_segments(n, p)}
    yield {"channels": 2}
    yield {"channels": 3, "node_of_rank": [r // 2 for r in range(p)] if p % 2 == 0 else None}
    yield {"chunks": 3}  # pipelined: steps of mixed reduce and copy transfers
    yield {"chunks": 4, "channels": 2, "segments": uneven_segments(n, p)}
    yield {
        "node_of_rank": [r % 2 for r in range(p)] if p % 2 == 0 else None,
        "segments": uneven_segments(n, p),
    }
