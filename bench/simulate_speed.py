"""How fast the simulator answers, and in how much memory: large rings on large clusters.

    python bench/simulate_speed.py [--rounds 3]

Targets (issue 11): a 32,768-rank flat ring and a 131,072-rank hierarchical or rail ring of
100 M parameters, each in under 20 s and 2 GB, for any parameter count (a prime's
included), on clusters of 8-GPU NVLink nodes with 8x400 Gb/s NICs on a fat-tree or on 8
rails. Each runs the channels NCCL would (netsim.sim.nccl.default_channels: 16 here, as
`netsim predict` does) and, for reference, one. Each case runs in a process of its own, so
that its peak memory (the process's maximum resident set) is its own; printed are the
median wall time of building the schedule and simulating it, the peak memory, and the
simulated time beside the closed form.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = [  # (algorithm, network, nodes, parameters, channels: 0 is NCCL's count)
    ("ring", "fat-tree", 1024, 100_000_000, 1),
    ("ring", "fat-tree", 1024, 100_000_000, 0),
    ("ring", "fat-tree", 4096, 100_000_000, 1),
    ("ring", "fat-tree", 4096, 100_000_000, 0),
    ("ring", "fat-tree", 4096, 100_000_007, 0),
    ("ring", "rails", 16384, 100_000_000, 0),
    ("ring", "rails", 16384, 100_000_007, 0),
    ("hierarchical-ring", "fat-tree", 16384, 100_000_000, 1),
    ("hierarchical-ring", "fat-tree", 16384, 100_000_000, 0),
    ("hierarchical-ring", "fat-tree", 16384, 100_000_007, 0),
]


def cluster(nodes: int, network: str = "fat-tree"):
    from netsim.cluster import topology

    fabric = {"kind": network, "latency_us": 0.3}
    if network == "fat-tree":
        fabric |= {"nodes_per_leaf": 16, "oversubscription": 1.0}
    return topology.parse(
        {
            "name": f"{nodes} nodes x 8 GPUs, {network}",
            "nodes": nodes,
            "gpus_per_node": 8,
            "placement": "block",
            "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 3600, "latency_us": 0.7},
            "nic": {"count": 8, "bandwidth_gbit_per_s": 400, "latency_us": 1.2},
            "network": fabric,
        }
    )


def one(algorithm: str, network: str, nodes: int, nelems: int, channels: int, rounds: int):
    """In this process: the case `rounds` times; wall times, peak memory and the answer."""
    from netsim import algorithms
    from netsim.sim import nccl, simulate

    topo, alg = cluster(nodes, network), algorithms.get(algorithm)
    p = topo.gpus
    channels = channels or nccl.default_channels(topo, p, "ring")
    walls = []
    for _ in range(rounds):
        start = time.perf_counter()
        schedule = alg.schedule(p, nelems, topo.node_of_rank(p), channels=channels)
        result = simulate.simulate(schedule, topo, itemsize=4)
        walls.append(time.perf_counter() - start)
    return {
        "ranks": p,
        "channels": channels,
        "rounds": len(schedule.rounds),
        "wall_s": statistics.median(walls),
        "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "simulated_s": result.time_s,
        "closed_form_s": alg.time_s(topo, p, nelems * 4, itemsize=4, channels=channels),
        "busbw_bytes_per_s": result.busbw_bytes_per_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        algorithm, network, *numbers = args.one
        print(json.dumps(one(algorithm, network, *map(int, numbers), args.rounds)))
        return
    print(
        f"{'algorithm':<18} {'network':<9} {'ranks':>8} {'ch':>3} {'parameters':>12} "
        f"{'rounds':>7} {'wall':>8} {'peak memory':>12} {'simulated':>10} {'closed form':>12}"
    )
    for case in CASES:
        argv = [sys.executable, __file__, "--rounds", str(args.rounds), "--one", *map(str, case)]
        r = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
        algorithm, network, _, nelems, _ = case
        print(
            f"{algorithm:<18} {network:<9} {r['ranks']:>8,} {r['channels']:>3} {nelems:>12,} "
            f"{r['rounds']:>7,} "
            f"{r['wall_s']:>6.2f} s {r['peak_bytes'] / 2**30:>8.2f} GiB "
            f"{r['simulated_s'] * 1e3:>7.2f} ms {r['closed_form_s'] * 1e3:>9.2f} ms"
        )


if __name__ == "__main__":
    main()
