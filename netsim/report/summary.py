"""The figures of a run's traffic and synchronisation, as summary.json's `traffic` holds them.

Definitions (nccl-tests' for bandwidth): the all-reduce's own time in a step runs from the
moment the LAST rank entered it to the moment the last rank left it, so arrival skew (the
stall) is not billed to the network; algbw = buffer bytes / that time; busbw = algbw *
2(p-1)/p (netsim.algorithms.busbw), the rate each rank's link must sustain for the ring's
2(p-1)/p * n bytes (the nccl-tests convention for every algorithm, so that busbw compares
algorithms). The bytes a run sent stand beside the count the run's own algorithm gives for
them. A GPU run staged through host memory adds its copies: bytes each way per step, and
their median times. One rank has no all-reduce to time: its algbw and busbw are None.
"""

from __future__ import annotations

import numpy as np

from netsim.algorithms import busbw
from netsim.record import rundir

from .traffic import Traffic


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
        k: mean(t[k]) for k in ("compute_s", "transfer_s", "wait_s", "caused_wait_s", "comm_s")
    }
    if steps:
        times = traffic.times
        collective_s = np.median(times["t_comm_end"].max(axis=1) - times["t_comm"].max(axis=1))
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
                        "peer_not_ready_s_mean": _nanmean(traffic.peer_not_ready_s[:, :, k]),
                        "transfer_s_mean": _nanmean(traffic.round_transfer_s[:, :, k]),
                    }
                    for k, (ph, ix) in enumerate(traffic.round_labels)
                ],
            }
        )
    return out


def _nanmean(a) -> float | None:
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


def analytic_bytes(config: dict, traffic: Traffic) -> list[int] | None:
    """What the run's algorithm says each rank sends per step (None: not observable)."""
    elements = traffic.algorithm.elements_sent(
        traffic.world_size, config["nparams"], **rundir.allreduce_context(config)
    )
    itemsize = config["buffer_bytes"] // config["nparams"] if config["nparams"] else 0
    return None if elements is None else (elements * itemsize).tolist()
