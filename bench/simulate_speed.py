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

Then a training step of a workload (issue 28: `predict --workload`, netsim.sim.step): GPT-2
large's 109 DDP buckets on 16,384 GPUs (2,048 nodes of 8 on 8 rails), each bucket's
all-reduce from NCCL's model or simulated (a ring on NCCL's channels), and a sweep of 12
rank counts (8 to 16,384) of the same step with NCCL's model;
targets: under 10 s and 2 GB, and under a minute. Printed: wall and CPU time (they differ
on a shared machine), peak memory, buckets and the distinct bucket sizes (NCCL's model
runs once per size and rank count).
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


def cluster(nodes: int, network: str = "fat-tree", gpu: str | None = None):
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
            **({"gpu": gpu} if gpu else {}),
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


STEP_CASES = [  # (workload, nodes, rank counts, the collectives' model)
    ("gpt2-large", 2048, (16384,), "nccl"),
    ("gpt2-large", 2048, (16384,), "simulate"),
    ("gpt2-large", 2048, tuple(8 << k for k in range(12)), "nccl"),
]


def step_case(workload: str, nodes: int, ranks: tuple[int, ...], how: str) -> dict:
    """In this process: the workload's step at each rank count, each bucket's all-reduce by
    NCCL's model or simulated (a ring of NCCL's channel count); wall and CPU time, peak
    memory."""
    from netsim import algorithms
    from netsim.sim import step
    from netsim.workload import catalog

    topo = cluster(nodes, "rails", gpu="hopper")  # NCCL's H100 tables: 8x400G H100 nodes
    w = catalog.builtin(workload)
    forward, backward = step.compute_times(w, "hopper")
    start, cpu = time.perf_counter(), time.process_time()
    rows = [
        step.step(w, step.Timer(topo, p, how, algorithms.RING, 4), forward, backward) for p in ranks
    ]
    return {
        "wall_s": time.perf_counter() - start,
        "cpu_s": time.process_time() - cpu,
        "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "buckets": len(rows[-1]["buckets"]),
        "sizes": len({b["bytes"] for b in rows[-1]["buckets"]}),
        "step_s": rows[-1]["step_time_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--step", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--steps-only", action="store_true", help="only the workload steps")
    args = ap.parse_args()
    if args.step:
        workload, nodes, ranks, how = args.step
        ranks = tuple(int(r) for r in ranks.split(","))
        print(json.dumps(step_case(workload, int(nodes), ranks, how)))
        return
    if args.one:
        algorithm, network, *numbers = args.one
        print(json.dumps(one(algorithm, network, *map(int, numbers), args.rounds)))
        return
    print(
        f"{'algorithm':<18} {'network':<9} {'ranks':>8} {'ch':>3} {'parameters':>12} "
        f"{'rounds':>7} {'wall':>8} {'peak memory':>12} {'simulated':>10} {'closed form':>12}"
    )
    for case in [] if args.steps_only else CASES:
        argv = [sys.executable, __file__, "--rounds", str(args.rounds), "--one", *map(str, case)]
        r = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
        algorithm, network, _, nelems, _ = case
        print(
            f"{algorithm:<18} {network:<9} {r['ranks']:>8,} {r['channels']:>3} {nelems:>12,} "
            f"{r['rounds']:>7,} "
            f"{r['wall_s']:>6.2f} s {r['peak_bytes'] / 2**30:>8.2f} GiB "
            f"{r['simulated_s'] * 1e3:>7.2f} ms {r['closed_form_s'] * 1e3:>9.2f} ms"
        )
    print(
        f"\n{'workload step':<14} {'all-reduces':<11} {'ranks':>22} {'buckets':>8} {'sizes':>6} "
        f"{'wall':>9} "
        f"{'cpu':>9} {'peak':>10}"
    )
    for workload, nodes, ranks, how in STEP_CASES:
        spec = ",".join(map(str, ranks))
        argv = [sys.executable, __file__, "--step", workload, str(nodes), spec, how]
        r = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
        shown = (
            f"{ranks[0]:,}"
            if len(ranks) == 1
            else f"{len(ranks)} counts, {ranks[0]}..{ranks[-1]:,}"
        )
        print(
            f"{workload:<14} {how:<11} {shown:>22} {r['buckets']:>8} {r['sizes']:>6} "
            f"{r['wall_s']:>7.1f} s {r['cpu_s']:>7.1f} s {r['peak_bytes'] / 2**30:>6.2f} GiB"
        )


if __name__ == "__main__":
    main()
