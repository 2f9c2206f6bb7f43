"""Predictions on a modelled cluster: one step, a scaling sweep, the replay of a real run,
and their text (and the sweep's plot, with the plot extra).

A prediction is reported with the same keys as a measured run's traffic summary
(`netsim.report.summary`): allreduce_time_s_median, algbw_bytes_per_s, busbw_bytes_per_s,
bytes_sent_per_step_by_rank, per_step_mean_by_rank. So `errors(measured, predicted)` is a
computation, never an eyeballed comparison.
"""

from __future__ import annotations

import numpy as np

from netsim.algorithms import Algorithm, busbw
from netsim.errors import InputError

from . import nccl, simulate

COMPARED = ("allreduce_time_s_median", "algbw_bytes_per_s", "busbw_bytes_per_s")


def predict(
    topology,
    algorithm: Algorithm,
    world_size: int,
    nelems: int,
    itemsize: int = 4,
    compute_s=0.0,
    segments=None,
    gamma_s_per_byte: float | None = None,
    channels: int | None = None,
    chunks: int = 1,
) -> dict:
    """One training step: every rank computes (compute_s: one value or one per rank), then
    the all-reduce runs on the topology. The collective's own time starts when the last
    rank arrives, as in measured reports. gamma_s_per_byte: the cost of adding a received
    byte; None: the topology's [compute] reduce_gbyte_per_s (0 without one). channels: None
    is NCCL's count on this topology (netsim.sim.nccl.default_channels), 1 on a calibrated
    machine (one with a [compute] table, whose ranks are MPI processes); chunks: the buffer
    pipelined in that many pieces (Algorithm.schedule)."""
    p = world_size
    if not algorithm.scheduled:
        raise InputError(f"{algorithm.label} has no schedule of ours to simulate")
    nodes = topology.node_of_rank(p)
    if channels is None:  # a calibrated machine ([compute]) runs MPI ranks, not NCCL's
        gpus = p > 1 and "compute" not in topology.spec
        channels = nccl.default_channels(topology, p, "ring") if gpus else 1
    context = {"node_of_rank": nodes, "segments": segments, "channels": channels, "chunks": chunks}
    schedule = algorithm.schedule(p, nelems, **context)
    compute = np.broadcast_to(np.asarray(compute_s, dtype=float), (p,)).copy()
    sim = simulate.simulate(
        schedule, topology, itemsize, start_s=compute, gamma_s_per_byte=gamma_s_per_byte
    )
    collective_s = float(sim.finish_s.max() - compute.max())
    nbytes = nelems * itemsize
    step_s = float(sim.finish_s.max())
    comm = sim.finish_s - compute
    wait = compute.max() - compute
    out = {
        "world_size": p,
        "algorithm": algorithm.name,
        "channels": channels,
        "chunks": chunks,
        "buffer_bytes": nbytes,
        "topology": topology.name,
        "allreduce_time_s_median": collective_s,
        "algbw_bytes_per_s": nbytes / collective_s if collective_s > 0 else None,
        "bytes_sent_per_step_by_rank": (
            algorithm.elements_sent(p, nelems, **context) * itemsize
        ).tolist(),
        "per_step_mean_by_rank": {
            "compute_s": compute.tolist(),
            "comm_s": comm.tolist(),
            "wait_s": wait.tolist(),
            "transfer_s": (comm - wait).tolist(),
        },
        "step_time_s": step_s,
        "comm_share": float(np.mean(comm) / step_s) if step_s > 0 else 0.0,
        "closed_form_s": algorithm.time_s(
            topology,
            p,
            nbytes,
            segments=segments,
            itemsize=itemsize,
            channels=channels,
            chunks=chunks,
        ),
    }
    out["busbw_bytes_per_s"] = (
        busbw(out["algbw_bytes_per_s"], p) if out["algbw_bytes_per_s"] else None
    )
    out.update(_links(topology, sim))
    return out


def _links(topology, sim: simulate.Simulation) -> dict:
    busiest = np.argsort(sim.link_busy_s)[::-1][:5]
    return {
        "bottleneck_link": topology.link_names[sim.bottleneck_link],
        "bottleneck_utilisation": float(sim.utilisation[sim.bottleneck_link]),
        "busiest_links": [
            {
                "link": topology.link_names[i],
                "bytes": float(sim.link_bytes[i]),
                "utilisation": float(sim.utilisation[i]),
            }
            for i in busiest
            if sim.link_bytes[i] > 0
        ],
        "total_link_bytes": float(sim.link_bytes.sum()),
    }


def errors(measured: dict, predicted: dict) -> dict:
    """Relative error of each prediction: predicted / measured - 1."""
    return {
        k: predicted[k] / measured[k] - 1
        for k in COMPARED
        if measured.get(k) and predicted.get(k) is not None
    }


def sweep(
    topology,
    algorithms,
    world_sizes,
    nelems: int,
    itemsize: int = 4,
    compute_s: float = 0.0,
    channels: int | None = None,
    chunks: int = 1,
) -> list[dict]:
    """Weak scaling: the same per-rank compute at every size; efficiency = compute / step time
    (1 when communication costs nothing)."""
    rows = []
    for p in world_sizes:
        for algorithm in algorithms:
            try:
                r = predict(
                    topology,
                    algorithm,
                    p,
                    nelems,
                    itemsize,
                    compute_s,
                    channels=channels,
                    chunks=chunks,
                )
            except InputError as exc:  # e.g. a hierarchical ring on uneven nodes
                rows.append({"world_size": p, "algorithm": algorithm.name, "error": str(exc)})
                continue
            r["scaling_efficiency"] = compute_s / r["step_time_s"] if r["step_time_s"] > 0 else 1.0
            rows.append(r)
    return rows


def replay(
    config: dict, traffic, topology, algorithm: Algorithm | None = None, max_steps: int = 200
) -> dict:
    """A recorded run on another network: each recorded step's per-rank compute times and the
    run's buffer, through the run's algorithm (or another), on the topology."""
    p = config["world_size"]
    algorithm = algorithm or traffic.algorithm
    if not algorithm.scheduled:
        raise InputError(
            f"the run used {algorithm.label} (the library's own algorithm: its messages are "
            f"unknown), which netsim cannot replay: name one to replay it with (--algorithm "
            f"ring, for instance), or record the run with --allreduce ring"
        )
    itemsize = config["buffer_bytes"] // config["nparams"]
    compute = traffic.table["compute_s"]
    pick = (
        np.linspace(0, len(compute) - 1, min(max_steps, len(compute))).astype(int)
        if len(compute)
        else []
    )
    segments, channels = config.get("segments"), config["config"].get("channels", 1)
    steps = [
        predict(
            topology,
            algorithm,
            p,
            config["nparams"],
            itemsize,
            compute[s],
            segments,
            channels=channels,
        )
        for s in pick
    ]
    if not steps:
        raise InputError("the run has no step recorded on every rank")
    out = dict(steps[len(steps) // 2])
    for key in ("allreduce_time_s_median", "step_time_s"):
        out[key] = float(np.median([s[key] for s in steps]))
    collective_s = out["allreduce_time_s_median"]  # 0 on one rank: nothing to move
    out["algbw_bytes_per_s"] = out["buffer_bytes"] / collective_s if collective_s > 0 else None
    out["busbw_bytes_per_s"] = (
        busbw(out["algbw_bytes_per_s"], p) if out["algbw_bytes_per_s"] else None
    )
    out["steps_replayed"] = len(steps)
    out["measured_step_time_s"] = step_period_s(traffic.times)
    return out


def step_period_s(times: dict) -> float:
    """A run's step time as its throughput sees it: the median over steps of the time from
    one step's start to the next's (the mean over ranks). Not the last end minus the first
    start of a step: ranks leave a ring at different moments and stay that far apart from
    step to step (on 2 emulated nodes, 60 ms of a 310 ms step), which would count the skew
    once more in every step. One step: its slowest rank's start to end."""
    start, end = times["t_start"], times["t_end"]
    if len(start) < 2:
        return float(np.median(end.max(axis=1) - start.min(axis=1)))
    return float(np.median(np.diff(start, axis=0).mean(axis=1)))
