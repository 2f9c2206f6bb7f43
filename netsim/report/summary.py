"""The figures of a run's traffic and synchronisation, as summary.json's `traffic` holds them.

Definitions (nccl-tests' for bandwidth): the all-reduce's own time in a step runs from the
moment the LAST rank entered it to the moment the last rank left it, so arrival skew (the
stall) is not billed to the network; algbw = buffer bytes / that time; busbw = algbw *
2(p-1)/p (netsim.algorithms.busbw), the rate each rank's link must sustain for the ring's
2(p-1)/p * n bytes (the nccl-tests convention for every algorithm, so that busbw compares
algorithms). The bytes a run sent stand beside the count the run's own algorithm gives for
them. A GPU run staged through host memory adds its copies: bytes each way per step, and
their median times. One rank has no all-reduce to time: its algbw and busbw are None.

A run all-reduced in buckets times each bucket alike (from the last rank's start of it to
the last rank's end) and sums them: with overlap the wait after backward is not the
all-reduce. Every run says what its communication cost the step (docs/ARCHITECTURE.md,
Definitions), as means per step over ranks: exposed_s (compute waited on it), hidden_s (in
flight under backward), hidden_share (hidden of exposed + hidden), step_s and the exposed
share of it, and the samples per second of the steps' own time; a bucketed run (step file
5) adds, per bucket in launch order, its place, bytes, the delay from ready to start, its
duration and the share of it hidden under backward.

A compressed run (--compress) counts its analytic bytes by netsim.algorithms.compression's
definition, bucket by bucket (each bucket's collectives on the run's algorithm for it), and
adds `compression`: the method, the bytes per step against what the run's algorithms would
send for the same buckets uncompressed (ratio: uncompressed over compressed), and the
compression's own compute per step (its rounds of phase "compress", traffic.compress_s),
whole and per bucket.
"""

from __future__ import annotations

import numpy as np

from netsim.algorithms import busbw
from netsim.algorithms import compression as methods
from netsim.record import rundir

from .traffic import Traffic, bucket_allreduce, bucket_collectives


def summarize(config: dict, traffic: Traffic) -> dict:
    t, p = traffic.table, traffic.world_size
    steps = len(traffic.steps)
    out = {
        "complete": traffic.complete,
        "steps_recorded": steps,
        "steps_by_rank": traffic.steps_by_rank,
        "nodes": traffic.nodes,
        "node_of_rank": traffic.node_of_rank.tolist(),
    }
    if traffic.damage:  # only then: a sound run's summary.json is unchanged
        out["damage"] = traffic.damage
    mean = (lambda a: np.nanmean(a, axis=0).tolist()) if steps else (lambda a: [None] * p)
    out["per_step_mean_by_rank"] = {
        k: mean(t[k])
        for k in (
            "compute_s",
            "transfer_s",
            "wait_s",
            "caused_wait_s",
            "comm_s",
            "exposed_s",
            "hidden_s",
        )
    }
    out.update(communication(config, traffic))
    if steps:
        times = traffic.times
        collective_s = np.median(collective_time_s(traffic))
        caused = np.nansum(t["caused_wait_s"], axis=0)
        last = np.bincount(times["t_comm"].argmax(axis=1), minlength=p)
        out.update(
            {
                "allreduce_time_s_median": float(collective_s),
                # one rank's all-reduce moves nothing: no bandwidth to speak of
                "algbw_bytes_per_s": config["buffer_bytes"] / collective_s
                if collective_s > 0 and p > 1
                else None,
                "most_waited_for_rank": int(caused.argmax()),
                "most_waited_for_share_of_steps": float(last[caused.argmax()] / steps),
                "caused_wait_s_total_by_rank": caused.tolist(),
            }
        )
        if out["algbw_bytes_per_s"] is not None:
            out["busbw_bytes_per_s"] = busbw(out["algbw_bytes_per_s"], p)
    if traffic.compression != methods.NONE and traffic.buckets is not None:
        out["compression"] = compressed(config, traffic)
    if steps and np.nansum(t["d2h_bytes"] + t["h2d_bytes"]):
        out["copies"] = {  # staging: the GPU gradient to host memory and its sum back
            "d2h_bytes_per_step_by_rank": np.nanmean(t["d2h_bytes"], axis=0).tolist(),
            "h2d_bytes_per_step_by_rank": np.nanmean(t["h2d_bytes"], axis=0).tolist(),
            "d2h_s_median_by_rank": np.median(t["d2h_s"], axis=0).tolist(),
            "h2d_s_median_by_rank": np.median(t["h2d_s"], axis=0).tolist(),
        }
    if traffic.observable and steps:
        intra, inter = traffic.intra_inter_bytes()
        out.update(
            {
                "bytes_sent_per_step_by_rank": np.nanmean(t["bytes_sent"], axis=0).tolist(),
                "bytes_sent_total": int(np.nansum(t["bytes_sent"])),
                "analytic_bytes_sent_per_step_by_rank": analytic_bytes(config, traffic),
                "intra_node_bytes": intra,
                "inter_node_bytes": inter,
                "link_matrix_bytes": traffic.link_matrix().tolist(),
                "rounds": [
                    {
                        "phase": ph,
                        "round": ix,
                        **traffic.bucket_of_round(k),
                        "peer_not_ready_s_mean": _nanmean(traffic.peer_not_ready_s[:, :, k]),
                        "transfer_s_mean": _nanmean(traffic.round_transfer_s[:, :, k]),
                    }
                    for k, (ph, ix) in enumerate(traffic.round_labels)
                ],
            }
        )
    return out


def collective_time_s(traffic: Traffic) -> np.ndarray:
    """Per step, the all-reduce's own time once every rank had arrived: the last rank's
    entry to the last exit; in buckets, each bucket's last start to its last end, summed."""
    if traffic.nbuckets > 1:
        b = traffic.buckets
        return np.clip(b.end.max(axis=1) - b.start.max(axis=1), 0, None).sum(axis=1)
    times = traffic.times
    return times["t_comm_end"].max(axis=1) - times["t_comm"].max(axis=1)


def communication(config: dict, traffic: Traffic) -> dict:
    """What communication cost the steps, means per step over ranks (None: no step), and
    each bucket's figures (None: records without buckets)."""
    t, b, steps = traffic.table, traffic.buckets, len(traffic.steps)
    step_s = traffic.times["t_end"] - traffic.times["t_start"] if steps else None
    exposed, hidden = (_nanmean(t[k]) for k in ("exposed_s", "hidden_s"))
    comm = (exposed or 0.0) + (hidden or 0.0)
    out = {
        "exposed_s": exposed,
        "hidden_s": hidden,
        "hidden_share": hidden / comm if steps and comm > 0 else (0.0 if steps else None),
        "step_s": _nanmean(step_s) if steps else None,
        "exposed_share_of_step": (
            float(np.nansum(t["exposed_s"]) / np.sum(step_s))
            if steps and np.sum(step_s) > 0
            else None
        ),
        "step_samples_per_s": (
            float(np.nansum(t["samples"]) / np.mean(step_s, axis=1).sum())
            if steps and np.sum(step_s) > 0
            else None
        ),
        "overlap": config.get("overlap"),
        "buckets": None,
    }
    if b is None:
        return out
    duration = b.end - b.start
    out["buckets"] = [
        {
            "bucket": k,
            **layout,
            "bytes_sent_per_step_by_rank": _by_rank(b.bytes_sent[:, :, k]),
            "ready_to_start_s_mean": _nanmean(b.start[:, :, k] - b.ready[:, :, k]),
            "duration_s_mean": _nanmean(duration[:, :, k]),
            "hidden_s_mean": _nanmean(b.hidden_s[:, :, k]),
            "hidden_share": (
                float(np.nansum(b.hidden_s[:, :, k]) / np.nansum(duration[:, :, k]))
                if np.nansum(duration[:, :, k]) > 0
                else 0.0
            ),
        }
        for k, layout in enumerate(b.layout)
    ]
    return out


def _by_rank(a) -> list | None:
    return np.nanmean(a, axis=0).tolist() if len(a) and np.isfinite(a).all() else None


def _nanmean(a) -> float | None:
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


def analytic_bytes(config: dict, traffic: Traffic) -> list[int] | None:
    """What the run's algorithm says each rank sends per step (None: not observable); in
    buckets, the sum of each bucket's algorithm's count for its size; compressed, the sum
    of each bucket's collectives' (netsim.algorithms.compression.bytes_sent)."""
    if traffic.compression != methods.NONE and traffic.buckets is not None:
        counts = _compressed_bytes(config, traffic)
        return None if any(c is None for c in counts) else sum(counts).tolist()
    return uncompressed_bytes(config, traffic)


def _compressed_bytes(config: dict, traffic: Traffic) -> list:
    """Per bucket, each rank's bytes per step by the compression's definition (None: hidden)."""
    layout, p = traffic.buckets.layout, traffic.world_size
    return [
        methods.bytes_sent(plan, algorithm, p, **context)
        for plan, algorithm, context in (
            bucket_collectives(config, layout, b) for b in range(len(layout))
        )
    ]


def uncompressed_bytes(config: dict, traffic: Traffic, bucket: int | None = None):
    """Each rank's bytes per step by the run's algorithms without compression: the whole
    gradient's, or one bucket's (None: not observable)."""
    itemsize = config["buffer_bytes"] // config["nparams"] if config["nparams"] else 0
    if bucket is not None:
        a, n, context = bucket_allreduce(config, traffic.buckets.layout, bucket)
        elements = a.elements_sent(traffic.world_size, n, **context)
        return None if elements is None else (elements * itemsize).tolist()
    if traffic.nbuckets > 1:
        layout, p = traffic.buckets.layout, traffic.world_size
        counts = [a.elements_sent(p, n, **context) for a, n, context in
                  (bucket_allreduce(config, layout, b) for b in range(len(layout)))]  # fmt: skip
        return None if any(c is None for c in counts) else (sum(counts) * itemsize).tolist()
    elements = traffic.algorithm.elements_sent(
        traffic.world_size, config["nparams"], **rundir.allreduce_context(config)
    )
    return None if elements is None else (elements * itemsize).tolist()


def compressed(config: dict, traffic: Traffic) -> dict:
    """A compressed run's figures: its method; bytes per step and rank, measured, by the
    compression's definition and uncompressed (the run's algorithms on the same buckets),
    and their ratio (uncompressed over compressed, from the definitions); the compression's
    compute per step, mean over steps per rank and over ranks; the same per bucket, with
    its collectives."""
    b, t, steps = traffic.buckets, traffic.table, len(traffic.steps)
    analytic = _compressed_bytes(config, traffic)
    whole = uncompressed_bytes(config, traffic)
    sent = sum(a for a in analytic) if all(a is not None for a in analytic) else None
    ratio = (float(np.sum(whole) / np.sum(sent))
             if whole is not None and sent is not None and np.sum(sent) else None)  # fmt: skip
    layout = b.layout
    return {
        "method": traffic.compression,
        "bytes_sent_per_step_by_rank": _by_rank(t["bytes_sent"]) if steps else None,
        "analytic_bytes_sent_per_step_by_rank": None if sent is None else sent.tolist(),
        "uncompressed_bytes_sent_per_step_by_rank": whole,
        "ratio": ratio,
        "compress_s_per_step_by_rank": _by_rank(t["compress_s"]) if steps else None,
        "compress_s_per_step": _nanmean(t["compress_s"]) if steps else None,
        "buckets": [
            {
                "bucket": k,
                "bytes": layout[k]["bytes"],
                "collectives": [
                    {
                        "kind": c.kind,
                        "what": c.what,
                        "nelems": c.nelems,
                        "dtype": c.dtype,
                        "bytes": c.nbytes,
                    }
                    for c in bucket_collectives(config, layout, k)[0]
                ],  # fmt: skip
                "bytes_sent_per_step_by_rank": _by_rank(b.bytes_sent[:, :, k]) if steps else None,
                "analytic_bytes_sent_per_step_by_rank": (
                    None if analytic[k] is None else analytic[k].tolist()
                ),
                "uncompressed_bytes_sent_per_step_by_rank": uncompressed_bytes(config, traffic, k),
                "compress_s_mean": _nanmean(b.compress_s[:, :, k]) if steps else None,
            }
            for k in range(len(layout))
        ],
    }
