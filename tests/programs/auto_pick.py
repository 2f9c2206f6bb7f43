"""Rank program: --allreduce auto's pick for MLPs of awkward sizes, against the ring.

    auto_pick.py OUT CACHE_BASE WIDTHS [WIDTHS ...]     (WIDTHS: "a-b-c")

Every rank points NETSIM_CACHE_DIR at CACHE_BASE/<rank> before choosing, so that if ranks
computed the choice themselves they would read different calibrations (the test writes
them so); autoselect.resolve must make every rank run rank 0's pick. For each network the
picked all-reduce and the ring run on integer-valued float32 inputs (exact sums: they must
agree to the bit) and on random ones (every rank must end bit-identical). Rank r writes
OUT.<r>: per network, the pick and whether each check held.
"""

import json
import os
import sys

import numpy as np

from allreduce_train.comm import MpiTransport, World, install_abort_hook
from allreduce_train.config.config import Config
from allreduce_train.exchange import autoselect
from allreduce_train.exchange.schedule import make_allreduce
from allreduce_train.maths.model import layer_segments
from netsim import algorithms

out, base, nets = sys.argv[1], sys.argv[2], sys.argv[3:]
install_abort_hook()
world = World.create()
os.environ["NETSIM_CACHE_DIR"] = os.path.join(base, str(world.rank))
transport = MpiTransport(world)


def run(name, channels, segments, x):
    f = make_allreduce(
        algorithms.get(name), world.world_size, world.rank, len(x), transport, np, np.float32,
        segments=segments, channels=channels,
    )  # fmt: skip
    buf = x.copy()
    f(buf)
    return buf


report = []
for net in nets:
    widths = [int(w) for w in net.split("-")]
    cfg = autoselect.resolve(Config(allreduce="auto"), world, [0] * world.world_size, widths)
    segments = layer_segments(widths)
    n = sum(c for _, c in segments)
    rng = np.random.default_rng(world.rank)
    exact = rng.integers(-1000, 1000, n).astype(np.float32)
    noisy = rng.standard_normal(n).astype(np.float32)
    picked = run(cfg.allreduce, cfg.channels, segments, exact)
    same_as_ring = bool(np.array_equal(picked, run("ring", 1, segments, exact)))
    random = run(cfg.allreduce, cfg.channels, segments, noisy)
    digests = world.allgather(random.tobytes())
    report.append(
        {
            "widths": widths,
            "nelems": n,
            "algorithm": cfg.allreduce,
            "channels": cfg.channels,
            "predicted_s": cfg.allreduce_choice["predicted_s"],
            "topology": cfg.allreduce_choice["topology"],
            "equals_ring": same_as_ring,
            "identical_on_all_ranks": all(d == digests[0] for d in digests),
        }
    )
with open(f"{out}.{world.rank}", "w") as f:
    json.dump(report, f)
