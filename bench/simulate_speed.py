"""How fast the simulator answers: large rings on large clusters.

    python bench/simulate_speed.py [--rounds 3]

Targets (issue 4): a 1,024-rank ring all-reduce of 100 MB in under 2 s, and 8,192 ranks with
the hierarchical ring in under 20 s, on clusters of 8-GPU NVLink nodes with 8x400 Gb/s NICs
on a fat-tree. Prints the median wall time of several rounds and the simulated times.
"""

from __future__ import annotations

import argparse
import statistics
import time

from netsim import algorithms
from netsim.cluster import topology
from netsim.sim import simulate


def cluster(nodes: int, oversubscription: float = 1.0) -> topology.Topology:
    return topology.parse(
        {
            "name": f"{nodes} nodes x 8 GPUs, fat-tree {oversubscription:g}:1",
            "nodes": nodes,
            "gpus_per_node": 8,
            "placement": "block",
            "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 3600, "latency_us": 0.7},
            "nic": {"count": 8, "bandwidth_gbit_per_s": 400, "latency_us": 1.2},
            "network": {
                "kind": "fat-tree",
                "latency_us": 0.3,
                "nodes_per_leaf": 16,
                "oversubscription": oversubscription,
            },
        }
    )


def timed(label: str, algorithm: str, nodes: int, nbytes: int, rounds: int) -> None:
    topo = cluster(nodes)
    p = topo.gpus
    walls, result = [], None
    for _ in range(rounds):
        start = time.perf_counter()
        sched = algorithms.get(algorithm).schedule(
            p, nbytes // 4, node_of_rank=topo.node_of_rank(p)
        )
        result = simulate.simulate(sched, topo, itemsize=4)
        walls.append(time.perf_counter() - start)
    print(
        f"{label:<44} {len(sched.rounds):>6} rounds  wall {statistics.median(walls):6.2f} s "
        f"(median of {rounds})  simulated {result.time_s * 1e3:8.2f} ms, busbw "
        f"{result.busbw_bytes_per_s / 1e9:6.1f} GB/s, bottleneck "
        f"{topo.link_names[result.bottleneck_link]}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    timed("ring, 1,024 ranks (128 nodes), 100 MB", "ring", 128, 100_000_000, args.rounds)
    timed(
        "hierarchical ring, 8,192 ranks (1,024 nodes), 100 MB",
        "hierarchical-ring",
        1024,
        100_000_000,
        args.rounds,
    )


if __name__ == "__main__":
    main()
