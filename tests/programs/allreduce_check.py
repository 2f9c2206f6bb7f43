"""Rank program: every all-reduce vs a reference sum, for many lengths and 1 to 3 channels,
in every world of 1 to P ranks (P: the launch's), each on the first p ranks of the launch,
one world after another: one start-up for them all. The ranks left out of a world wait
asleep (a barrier they test now and then), not spinning in MPI beside the ranks at work.

The lengths catch an algorithm's indexing (0, 1, p-1, p, p+1, a prime) in both dtypes, and
MPI's large messages once, in float32: 2**18 elements, 1 MiB, where every message of 5 ranks
in 3 channels (70 KiB and up) is past MPI's eager and copy thresholds (8 to 64 KiB here);
4 MB in float32 and 8 MB in float64 before took no other path, at 8 times the cost.

Each rank's input is generated from (rank, length), so every rank can rebuild all inputs
and the exact float64 reference. The hierarchical ring runs on nodes of 2 ranks where p is
even (one rank per node otherwise), the parameter server on uneven, layer-like segments.
Writes one JSON per world and rank, OUT.p.rank: per case, the world's size, each
algorithm's error in units of the rounding bound, and a hash of its result where it is one
of our schedules (bit-identical on every rank; MPI_Allreduce does not promise it)."""

import hashlib
import json
import sys
import time

import numpy as np
from mpi4py import MPI

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


LARGE = 2**18
# every algorithm with one channel and with three; the ring with two as well
CASES = [(a, c) for a in algorithms.ALGORITHMS.values() for c in (1, 3)] + [(algorithms.RING, 2)]


def check(world: World) -> list[dict]:
    """Every case on this world's ranks, as this rank saw it."""
    p = world.world_size
    transport = MpiTransport(world)
    cases = []
    for dtype, large in ((np.float32, [LARGE]), (np.float64, [])):
        for n in sorted({0, 1, max(p - 1, 0), p, p + 1, 97, *large}):
            inputs = [
                np.random.default_rng([r, n]).standard_normal(n).astype(dtype) for r in range(p)
            ]
            wide = np.array(inputs, dtype=np.float64).reshape(p, n)
            reference = wide.sum(axis=0)
            # rounding bound: p additions, each off by at most eps * |partial sum| <= eps * sum|x|
            bound = np.maximum(p * np.finfo(dtype).eps * np.abs(wide).sum(axis=0), 1e-300)
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
                error = float(np.max(np.abs(buf - reference) / bound, initial=0.0))
                cases.append(
                    {
                        "world_size": p,
                        "dtype": np.dtype(dtype).name,
                        "n": n,
                        "algorithm": algorithm.name,
                        "channels": channels,
                        "error": error,
                        "result_dtype": buf.dtype.name,
                        "hash": hashlib.sha256(buf).hexdigest() if algorithm.scheduled else None,
                    }
                )
    return cases


def wait_for_everyone() -> None:
    done = MPI.COMM_WORLD.Ibarrier()
    while not done.Test():
        time.sleep(0.01)


install_abort_hook()
launched, out_path = MPI.COMM_WORLD.size, sys.argv[1]
for p in range(1, launched + 1):
    inside = MPI.COMM_WORLD.rank < p
    comm = MPI.COMM_WORLD.Split(0 if inside else MPI.UNDEFINED, MPI.COMM_WORLD.rank)
    if inside:
        world = World.create(comm)
        with open(f"{out_path}.{p}.{world.rank}", "w") as f:
            json.dump(check(world), f)
    wait_for_everyone()
