"""Predictions on a modelled cluster: one step, a scaling sweep, the replay of a real run
(its whole buffer after each step's compute, or, for a bucketed run, each bucket when its
run had it ready, through netsim.sim.step's stream), and their text (and the sweep's plot,
with the plot extra).

A compressed run (--compress) replays as a bucketed one, whatever its bucket count: each
bucket costs its collectives as netsim.algorithms.compression defines them on the modelled
ranks (fp16 and bf16: the bucket's all-reduce on 2-byte elements; top-k: the ring
all-gather of every rank's values and indices; PowerSGD: its all-reduces of the tensors it
leaves, P and Q), one after another, plus the compression's own compute as the run
measured it (its rounds of phase "compress": per step the slowest rank's, per bucket). As
with backward and the update, that compute is this machine's, not rescaled: the replay
asks what the network makes of a step whose compute stays what it was here. `step_there`
is the step a run would take on a modelled cluster (what time to accuracy multiplies: the
steps a run needed here times that step, netsim.report.compare.time_to_accuracy).

A prediction is reported with the same keys as a measured run's traffic summary
(`netsim.report.summary`): allreduce_time_s_median, algbw_bytes_per_s, busbw_bytes_per_s,
bytes_sent_per_step_by_rank, per_step_mean_by_rank. So `errors(measured, predicted)` is a
computation, never an eyeballed comparison.

(Past 300 lines as one idea: predict, and what is built on it in a measured run's keys, a
sweep and the two replays of a recorded run, which share its cost and step_period_s.)
"""

from __future__ import annotations

import numpy as np

from netsim import algorithms
from netsim.algorithms import Algorithm, busbw
from netsim.algorithms import compression as methods
from netsim.algorithms.compose import in_slice
from netsim.errors import InputError
from netsim.report import traffic as merge

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
    _replayable(algorithm)
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


def bucketed(config: dict) -> bool:
    """The run all-reduced its gradient in more than one bucket (config.json's buckets): its
    replay is replay_buckets'. One bucket is the whole buffer after backward, as before."""
    return len(config.get("buckets") or ()) > 1


def compressed(config: dict) -> bool:
    """The run compressed its buckets (--compress other than none): its replay is
    replay_buckets', whose buckets cost their compression's collectives."""
    return merge.compression(config).method != methods.NONE


def step_there(
    config: dict, traffic, records, topology, ranks: int | None = None, scale_compute=False
) -> dict:
    """What a run's step would be on `topology` with `ranks` (default: the run's): the
    replay of its buckets (replay_buckets) for any run whose records time them (step file
    5: every run since buckets, one bucket or many, compressed or not), so that runs
    compared are replayed alike; the whole-buffer replay for older records (on the run's
    ranks only). Its step_time_s is the step there."""
    timed = config.get("buckets") and all(
        rec.get("buckets") is not None for recs in records for rec in recs
    )
    if timed:
        scale = compute_scale(config, records, topology) if scale_compute else 1.0
        return replay_buckets(config, traffic, records, topology, ranks=ranks, compute_scale=scale)
    if scale_compute:
        raise InputError("--compute scaled needs a run whose records time its buckets")
    if ranks not in (None, config["world_size"]):
        raise InputError(
            f"a run whose records do not time buckets replays on its own {config['world_size']} "
            f"ranks only, not {ranks}"
        )
    return replay(config, traffic, topology)


def replay_buckets(
    config: dict,
    traffic,
    records: list[list[dict]],
    topology,
    algorithm: Algorithm | None = None,
    ranks: int | None = None,
    overlap: bool | None = None,
    max_steps: int = 200,
    compute_scale: float = 1.0,
) -> dict:
    """A bucketed run on another network, step by step: its buckets (sizes in launch order),
    when backward had each ready (ready_ns - t_start_ns), backward's end (t_comm_ns -
    t_start_ns) and the update after the wait (t_end_ns - t_comm_end_ns), each step the
    latest over the run's ranks (a bucket's all-reduce starts when its last rank has it;
    on `ranks` other than the run's every rank is taken to run as that slowest one). Each
    bucket costs what predict says for its size, its layers and its algorithm (the run's,
    `algorithm`, or the per-bucket picks of --allreduce auto), and the buckets run on one
    stream as netsim.sim.step has them: at max(ready, previous end), or all after
    backward's end with overlap off (`overlap`: the run's by default). Per step, as the
    records split it: compute = backward end + update; exposed, the wait from backward's
    end to the last bucket's; step = compute + exposed; hidden, the all-reduces' time before
    backward's end (their sum - exposed); each figure the median over steps.
    Beside them, measured: the step period, and the medians over steps and ranks of the
    records' compute_s, exposed_s and hidden_s."""
    from . import step as steps  # step imports this module: the import waits for the call

    p, run_p = ranks or config["world_size"], config["world_size"]
    run_overlap = bool(config.get("overlap"))
    overlap = run_overlap if overlap is None else overlap
    itemsize = config["buffer_bytes"] // config["nparams"]
    plan = config["buckets"]
    picks = _picks(config, traffic.algorithm, algorithm, len(plan))
    took = [
        _bucket_s(topology, p, name, channels, b, itemsize, config)
        for b, (name, channels) in zip(plan, picks)
    ]
    ready, backward, update, measured, compress = _timings(traffic, records, len(plan))
    # compute_scale: this machine's compute (backward, its ready times, the update and the
    # compression's own) as the modelled device would run it (compute_scale())
    ready, backward, update, compress = (a * compute_scale for a in (ready, backward, update,
                                                                      compress))  # fmt: skip
    if not len(backward):
        raise InputError("the run has no step recorded on every rank")
    pick = np.linspace(0, len(backward) - 1, min(max_steps, len(backward))).astype(int)
    rows, figures = [], []
    for s in pick:
        end_of_backward, after = float(backward[s].max()), float(update[s].max())
        # each bucket: its collectives there, and its compression's compute (slowest rank)
        took_s = [t + c for t, c in zip(took, compress[s].max(axis=0).tolist())]
        on_stream = steps.stream(ready[s].max(axis=0).tolist(), took_s, end_of_backward, overlap)
        exposed = max(0.0, on_stream[-1][2] - end_of_backward)
        hidden = sum(max(0.0, min(end, end_of_backward) - at) for _, at, end in on_stream)
        compute_s = end_of_backward + after
        rows.append(on_stream)
        figures.append((compute_s + exposed, compute_s, exposed, hidden, end_of_backward, after,
                        sum(took_s), sum(took_s) - sum(took)))  # fmt: skip
    median = np.median(np.asarray(figures), axis=0)
    at = np.median(np.asarray(rows), axis=0)  # (bucket, ready/start/end)
    compress_by_bucket = np.median(compress[pick].max(axis=1), axis=0)
    busy = float(median[6])
    per_rank = float(np.median(traffic.table["samples"])) if len(traffic.table["samples"]) else 0
    out = {
        "world_size": p,
        "algorithm": ", ".join(dict.fromkeys(name for name, _ in picks)),
        "topology": topology.name,
        "buffer_bytes": config["buffer_bytes"],
        "overlap": overlap,
        "run_overlap": run_overlap,
        "steps_replayed": len(pick),
        "step_time_s": float(median[0]),
        "compute_s": float(median[1]),
        "exposed_comm_s": float(median[2]),
        "hidden_comm_s": float(median[3]),
        "comm_busy_s": busy,
        "backward_s": float(median[4]),
        "update_s": float(median[5]),
        "compression": str(merge.compression(config)),
        "compute_scale": compute_scale,
        "compress_s": float(median[7]),
        "samples_per_s": float(per_rank * p / median[0]) if median[0] > 0 else None,
        "buckets": [
            {
                "bucket": k,
                "bytes": b["bytes"],
                "algorithm": name,
                "channels": channels,
                "ready_s": float(at[k, 0]),
                "start_s": float(at[k, 1]),
                "end_s": float(at[k, 2]),
                "allreduce_s": took[k] + float(compress_by_bucket[k]),
                "network_s": took[k],
                "compress_s": float(compress_by_bucket[k]),
                "measured_allreduce_s": float(np.median(measured["bucket_s"][:, :, k])),
            }
            for k, (b, (name, channels)) in enumerate(zip(plan, picks))
        ],
    }
    out.update(_rates(config["buffer_bytes"], busy, p))
    period = step_period_s(traffic.times)
    samples = float(np.median(traffic.table["samples"].sum(axis=1)))
    out["measured"] = {
        **_rates(config["buffer_bytes"], float(np.median(measured["bucket_s"].sum(axis=2))), run_p),
        "step_time_s": period,
        "samples_per_s": samples / period if period > 0 else None,
        **{k: float(np.median(v)) for k, v in measured.items() if k != "bucket_s"},
    }
    same = p == run_p and overlap == run_overlap and algorithm is None  # what was measured
    m = out["measured"]
    out["errors"] = {k: out[k] / m[k] - 1 for k in m if same and m[k] and out.get(k) is not None}
    return out


def _rates(nbytes: int, collective_s: float, p: int) -> dict:
    algbw = nbytes / collective_s if collective_s > 0 else None
    return {
        "allreduce_time_s_median": collective_s,
        "algbw_bytes_per_s": algbw,
        "busbw_bytes_per_s": busbw(algbw, p) if algbw else None,
    }


def _picks(config: dict, run: Algorithm, asked: Algorithm | None, count: int) -> list:
    """(algorithm, channels) of each bucket: the one asked for, else --allreduce auto's
    per-bucket picks (config's allreduce_choice), else the run's."""
    chosen = (config["config"].get("allreduce_choice") or {}).get("buckets")
    if asked is None and chosen and len(chosen) == count:
        picks = [(c["algorithm"], c["channels"]) for c in chosen]
    else:
        picks = [((asked or run).name, config["config"].get("channels", 1))] * count
    for name, _ in picks:
        _replayable(algorithms.get(name))
    return picks


def _replayable(algorithm: Algorithm) -> None:
    if not algorithm.scheduled:
        raise InputError(
            f"the run used {algorithm.label} (the library's own algorithm: its messages are "
            f"unknown), which netsim cannot replay: name one to replay it with (--algorithm "
            f"ring, for instance), or record the run with --allreduce ring"
        )


def _bucket_s(topology, p: int, name: str, channels: int, bucket: dict, itemsize, config):
    """A bucket's all-reduce alone on the network: predict's time for its elements, cut
    into its layers' segments as training cuts them (a parameter server's shards); a
    compressed bucket's collectives (compression.collectives on p ranks), one after another,
    each alone on the network (_collective_s)."""
    if p == 1:
        return 0.0  # one rank moves nothing
    lo, n = bucket["offset"] // itemsize, bucket["bytes"] // itemsize
    segments = config.get("segments")
    if segments is not None:
        segments = in_slice([tuple(seg) for seg in segments], config["nparams"], lo, lo + n)
    method = merge.compression(config)
    if method.method == methods.NONE:
        out = predict(
            topology, algorithms.get(name), p, n, itemsize, 0.0, segments, channels=channels
        )
        return out["allreduce_time_s_median"]
    dtype = config["config"].get("dtype") or {8: "float64"}.get(itemsize, "float32")
    plan = methods.collectives(method, merge.bucket_tensors(config, lo, n), p, dtype)
    return sum(
        _collective_s(topology, p, algorithms.get(name), channels, c,
                      segments if c.what == "gradient" else None)
        for c in plan
    )  # fmt: skip


def _collective_s(topology, p: int, algorithm: Algorithm, channels: int, collective, segments):
    """One collective of a compressed bucket alone on the network: an all-reduce as predict
    has it (on the collective's elements and element size: 2 bytes for fp16 and bf16), the
    all-gather as the simulator runs the ring's schedule (compression.all_gather_schedule:
    copies, no adds)."""
    c = collective
    if c.kind == methods.ALL_GATHER:
        schedule = methods.all_gather_schedule(p, c.nelems)
        return float(simulate.simulate(schedule, topology, c.itemsize).finish_s.max())
    out = predict(topology, algorithm, p, c.nelems, c.itemsize, 0.0, segments, channels=channels)
    return out["allreduce_time_s_median"]


def _timings(traffic, records: list[list[dict]], count: int):
    """Of the steps recorded on every rank, each rank's, in seconds from its step's start:
    bucket ready times (S, p, B), backward's end (S, p), the update after the wait (S, p);
    measured (S, p) figures: compute_s, exposed_comm_s, hidden_comm_s, bucket_s (S, p,
    B: each bucket's all-reduce, end - start); and the compression's compute (S, p, B: its
    rounds of phase "compress", 0 where none)."""
    by_step = [{r["step"]: r for r in recs} for recs in records]
    rows = [[mine[int(s)] for mine in by_step] for s in traffic.steps]
    if any(len(rec.get("buckets") or ()) != count for row in rows for rec in row):
        raise InputError(f"the run's step records do not time its {count} buckets each")

    def each(f) -> np.ndarray:
        return np.asarray([[f(rec) for rec in row] for row in rows], dtype=float) / 1e9

    ready = each(lambda r: [b["ready_ns"] - r["t_start_ns"] for b in r["buckets"]])
    backward = each(lambda r: r["t_comm_ns"] - r["t_start_ns"])
    update = each(lambda r: r["t_end_ns"] - r["t_comm_end_ns"])
    measured = {
        "compute_s": each(lambda r: r["compute_s"] * 1e9),
        "exposed_comm_s": each(lambda r: r["exposed_s"] * 1e9),
        "hidden_comm_s": each(lambda r: r["hidden_s"] * 1e9),
        "bucket_s": each(lambda r: [b["end_ns"] - b["start_ns"] for b in r["buckets"]]),
    }
    compress = each(lambda r: [merge.compress_ns(b) for b in r["buckets"]]).reshape(ready.shape)
    return ready, backward, update, measured, compress


def compute_scale(config: dict, records, topology) -> float:
    """How much faster (< 1) or slower the run's compute would be on the topology's GPU, as
    a workload's compute is scaled there (netsim.workload: FLOPs per sample x batch at the
    default achievable share of the device's peak for the dtype): the MLP's FLOPs (forward
    2ab, backward 4ab a sample, at the run's largest per-rank batch) so timed, over the
    median compute per step measured here. The compression's compute is scaled alike."""
    from netsim.workload.workload import Layer, Workload

    widths, p = config.get("layers"), config["world_size"]
    if not widths:
        raise InputError("--compute scaled needs the run's layers (config.json)")
    batch = max(config.get("local_batch_by_rank") or [config["config"]["global_batch"] // p])
    layers = tuple(
        Layer(f"layer{i}", (a * b, b), forward_flops=2.0 * a * b)
        for i, (a, b) in enumerate(zip(widths, widths[1:]))
    )
    mlp = Workload("mlp", layers, dtype=config["config"]["dtype"], batch=max(1, batch))
    forward, backward = mlp.times(topology.spec.get("gpu"))
    here = float(np.median([r["compute_s"] for recs in records for r in recs]))
    if not here > 0:
        raise InputError("--compute scaled: the run measured no compute")
    return (sum(forward) + sum(backward)) / here


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
