"""Rank program: every all-reduce vs a reference sum, for many lengths and 1 to 3 channels.

Each rank's input is generated from (rank, length), so every rank can rebuild all inputs
and the exact float64 reference. The hierarchical ring runs on nodes of 2 ranks where p is
even (one rank per node otherwise), the parameter server on uneven, layer-like segments.
Writes one JSON per rank: per case, each algorithm's error in units of the rounding bound,
and a hash of its result."""

import hashlib
import json
import sys

import numpy as np

from allreduce_train.comm import MpiTransport, World, install_abort_hook
from allreduce_train.exchange import schedule as collectives
from netsim import algorithms


def context(p: int, n: int) -> dict:
    """Given to every algorithm, each using what it takes: nodes of 2 ranks where p is even
    (one rank per node otherwise), uneven, layer-like segments (one empty, one tiny)."""
    cuts = [0, n // 2, (3 * n) // 5, (3 * n) // 5, (19 * n) // 20, n]
    return {
        "node_of_rank": [r // 2 if p % 2 == 0 else r for r in range(p)],
        "segments": [(a, b - a) for a, b in zip(cuts, cuts[1:])],
    }


# every algorithm with one channel and with three; the ring with two as well
CASES = [(a, c) for a in algorithms.ALGORITHMS.values() for c in (1, 3)] + [(algorithms.RING, 2)]

install_abort_hook()
world = World.create()
p, out_path = world.world_size, sys.argv[1]
transport = MpiTransport(world)
cases = []
for dtype in (np.float32, np.float64):
    for n in sorted({0, 1, max(p - 1, 0), p, p + 1, 97, 10**6}):
        inputs = [np.random.default_rng([r, n]).standard_normal(n).astype(dtype) for r in range(p)]
        reference = np.sum([x.astype(np.float64) for x in inputs], axis=0)
        # rounding bound: p additions, each off by at most eps * |partial sum| <= eps * sum|x|
        bound = (
            p * np.finfo(dtype).eps * np.sum([np.abs(x.astype(np.float64)) for x in inputs], axis=0)
        )
        for algorithm, channels in CASES:
            buf = inputs[world.rank].copy()
            collectives.make_allreduce(
                algorithm,
                p,
                world.rank,
                n,
                transport,
                np,
                dtype,
                **context(p, n),
                channels=channels,
            )(buf)
            error = float(np.max(np.abs(buf - reference) / np.maximum(bound, 1e-300), initial=0.0))
            cases.append(
                {
                    "dtype": np.dtype(dtype).name,
                    "n": n,
                    "algorithm": algorithm.name,
                    "channels": channels,
                    "error": error,
                    "result_dtype": buf.dtype.name,
                    "hash": hashlib.sha256(buf.tobytes()).hexdigest(),
                }
            )
with open(f"{out_path}.{world.rank}", "w") as f:
    json.dump(cases, f)
