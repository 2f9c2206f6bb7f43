"""Rank program: every schedule through shared memory against the message executor, bit for
bit, over real MPI: lengths 0, 1, p +- 1, 97, 10**5, float32; one channel and three; on one
node, and on pretend nodes of 2 ranks (shared memory inside, messages between). Writes one
JSON per rank: per case, whether the shared-memory result's bits equal the message
executor's, its hash, and how many ranks shared its window."""

import hashlib
import json
import sys
from types import SimpleNamespace

import numpy as np

from allreduce_train.comm import MpiTransport, World, install_abort_hook
from allreduce_train.exchange import factory
from allreduce_train.exchange.schedule import make_allreduce
from allreduce_train.maths.backend import Backend
from netsim import algorithms

install_abort_hook()
world = World.create()
p, out_path = world.world_size, sys.argv[1]
transport = MpiTransport(world)
cpu = Backend(np, "cpu")
cases = []
for nodes in ([0] * p, *([[r // 2 for r in range(p)]] if p % 2 == 0 else [])):
    for n in sorted({0, 1, max(p - 1, 0), p + 1, 97, 10**5}):
        memory = factory.gradient_memory(
            SimpleNamespace(allreduce="ring", transport="shm"), world, cpu, n, np.float32, nodes
        )
        mine = np.random.default_rng([world.rank, n]).standard_normal(n).astype(np.float32)
        for name in algorithms.SCHEDULED:
            algorithm = algorithms.get(name)
            if not algorithm.runs_over_mpi:
                continue
            for channels in (1, 3):
                context = {"node_of_rank": nodes, "channels": channels}
                want = mine.copy()
                make_allreduce(algorithm, p, world.rank, n, transport, np, np.float32, **context)(
                    want
                )
                cfg = SimpleNamespace(allreduce=name, channels=channels, transport="shm")
                exchange = factory.make(
                    cfg, world, cpu, memory.grads if memory.grads is not None else mine.copy(),
                    transport, node_of_rank=nodes, segments=None, memory=memory,
                )  # fmt: skip
                for _ in range(2):  # and again: the counters go on across calls
                    exchange.buffer[...] = mine
                    exchange()
                cases.append(
                    {
                        "nodes": len(set(nodes)),
                        "n": n,
                        "algorithm": name,
                        "channels": channels,
                        "shared": memory.peers is not None,
                        "equal": exchange.buffer.tobytes() == want.tobytes(),
                        "hash": hashlib.sha256(exchange.buffer.tobytes()).hexdigest(),
                    }
                )
with open(f"{out_path}.{world.rank}", "w") as f:
    json.dump(cases, f)
