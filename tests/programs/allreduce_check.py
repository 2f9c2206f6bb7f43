"""Rank program: ring all-reduce vs a reference sum and MPI_Allreduce, for many lengths.

Each rank's input is generated from (rank, length), so every rank can rebuild all inputs
and the exact float64 reference. Writes one JSON per rank: per case, the error of the ring
and of MPI_Allreduce in units of the rounding bound, and a hash of the ring's result."""

import hashlib
import json
import sys

import numpy as np

from allreduce_train import collectives
from allreduce_train.comm import Transport, World, install_abort_hook

install_abort_hook()
world = World.create()
p, out_path = world.world_size, sys.argv[1]
transport = Transport(world.comm)
cases = []
for dtype in (np.float32, np.float64):
    for n in sorted({0, 1, max(p - 1, 0), p, p + 1, 97, 10**6}):
        inputs = [np.random.default_rng([r, n]).standard_normal(n).astype(dtype) for r in range(p)]
        reference = np.sum([x.astype(np.float64) for x in inputs], axis=0)
        # rounding bound: p additions, each off by at most eps * |partial sum| <= eps * sum|x|
        bound = p * np.finfo(dtype).eps * np.sum([np.abs(x.astype(np.float64)) for x in inputs], axis=0)
        results = {}
        for algorithm in ("ring", "mpi"):
            buf = inputs[world.rank].copy()
            collectives.make_allreduce(algorithm, p, world.rank, n, transport, np, dtype)(buf)
            results[algorithm] = buf
        ratio = {a: float(np.max(np.abs(r - reference) / np.maximum(bound, 1e-300), initial=0.0))
                 for a, r in results.items()}
        cases.append({"dtype": np.dtype(dtype).name, "n": n, "ring_error": ratio["ring"],
                      "mpi_error": ratio["mpi"], "ring_dtype": results["ring"].dtype.name,
                      "ring_hash": hashlib.sha256(results["ring"].tobytes()).hexdigest()})
with open(f"{out_path}.{world.rank}", "w") as f:
    json.dump(cases, f)
