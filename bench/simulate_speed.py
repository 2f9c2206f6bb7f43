"""How fast the simulator answers, and in how much memory: large rings on large clusters.

    python bench/simulate_speed.py [--rounds 3]

Targets (issue 11): a 32,768-rank flat ring and a 131,072-rank hierarchical ring of 100 M
parameters, each in under 20 s and 2 GB, for any parameter count (a prime's included), on
clusters of 8-GPU NVLink nodes with 8x400 Gb/s NICs on a fat-tree. Each case runs in a
process of its own, so that its peak memory (the process's maximum resident set) is its
own; printed are the median wall time of building the schedule and simulating it, the peak
memory, and the simulated time beside the closed form.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CASES = [  # (algorithm, nodes, parameters)
    ("ring", 128, 100_000_000),
    ("ring", 1024, 100_000_000),
    ("ring", 4096, 100_000_000),
    ("ring", 4096, 100_000_007),
    ("hierarchical-ring", 1024, 100_000_000),
    ("hierarchical-ring", 16384, 100_000_000),
    ("hierarchical-ring", 16384, 100_000_007),
]


def cluster(nodes: int):
    from netsim.cluster import topology

    return topology.parse(
        {
            "name": f"{nodes} nodes x 8 GPUs, fat-tree 1:1",
            "nodes": nodes,
            "gpus_per_node": 8,
            "placement": "block",
            "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 3600, "latency_us": 0.7},
            "nic": {"count": 8, "bandwidth_gbit_per_s": 400, "latency_us": 1.2},
            "network": {
                "kind": "fat-tree",
                "latency_us": 0.3,
                "nodes_per_leaf": 16,
                "oversubscription": 1.0,
            },
        }
    )


def one(algorithm: str, nodes: int, nelems: int, rounds: int) -> dict:
    """In this process: the case `rounds` times; wall times, peak memory and the answer."""
    from netsim import algorithms
    from netsim.sim import simulate

    topo, alg = cluster(nodes), algorithms.get(algorithm)
    p = topo.gpus
    walls = []
    for _ in range(rounds):
        start = time.perf_counter()
        schedule = alg.schedule(p, nelems, node_of_rank=topo.node_of_rank(p))
        result = simulate.simulate(schedule, topo, itemsize=4)
        walls.append(time.perf_counter() - start)
    return {
        "ranks": p,
        "rounds": len(schedule.rounds),
        "wall_s": statistics.median(walls),
        "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "simulated_s": result.time_s,
        "closed_form_s": alg.time_s(topo, p, nelems * 4, itemsize=4),
        "busbw_bytes_per_s": result.busbw_bytes_per_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--one", nargs=3, metavar=("ALGORITHM", "NODES", "NELEMS"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.one:
        algorithm, nodes, nelems = args.one
        print(json.dumps(one(algorithm, int(nodes), int(nelems), args.rounds)))
        return
    print(
        f"{'algorithm':<18} {'ranks':>8} {'parameters':>12} {'rounds':>7} {'wall':>8} "
        f"{'peak memory':>12} {'simulated':>10} {'closed form':>12}"
    )
    for algorithm, nodes, nelems in CASES:
        argv = [
            sys.executable,
            __file__,
            "--rounds",
            str(args.rounds),
            "--one",
            algorithm,
            str(nodes),
            str(nelems),
        ]
        r = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
        print(
            f"{algorithm:<18} {r['ranks']:>8,} {nelems:>12,} {r['rounds']:>7,} "
            f"{r['wall_s']:>6.2f} s {r['peak_bytes'] / 2**30:>8.2f} GiB "
            f"{r['simulated_s'] * 1e3:>7.2f} ms {r['closed_form_s'] * 1e3:>9.2f} ms"
        )


if __name__ == "__main__":
    main()
