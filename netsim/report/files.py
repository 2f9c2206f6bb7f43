"""The merged files rank 0 writes at the end of a run: steps.jsonl (one line per step per rank,
on one clock), links.csv (per step per directed link) and timeline.json (Chrome trace). Each
is written whole or not at all.

A steps.jsonl row splits comm_s into exposed_s and hidden_s (docs/ARCHITECTURE.md) and has
`buckets`: per bucket in launch order its bytes, bytes_sent, when it was ready, started and
ended (ready_s, start_s, end_s: seconds from that step's start on that rank) and hidden_s,
or null for a run recorded without buckets. A round of a run in more than one bucket names
its bucket. links.csv has a row per step, bucket and directed link; its last column,
`bucket`, was added last so that readers of the older columns read it as before (a run
without per-bucket tallies: bucket 0)."""

from __future__ import annotations

import csv
import os

import numpy as np

from netsim.record import rundir

from . import timeline
from .traffic import Traffic

STEP_COLUMNS = (
    "epoch",
    "samples",
    "loss",
    "compute_s",
    "comm_s",
    "exposed_s",
    "hidden_s",
    "wait_s",
    "transfer_s",
    "caused_wait_s",
    "bytes_sent",
    "bytes_recv",
    "messages",
    "d2h_bytes",
    "h2d_bytes",
    "d2h_s",
    "h2d_s",
)


def write_outputs(run_dir: str, config: dict, traffic: Traffic, traced_steps) -> None:
    _write_steps(os.path.join(run_dir, "steps.jsonl"), traffic)
    _write_links(os.path.join(run_dir, "links.csv"), traffic)
    rundir.write_json(
        os.path.join(run_dir, "timeline.json"), timeline.chrome_trace(config, traffic, traced_steps)
    )


def _write_steps(path: str, traffic: Traffic) -> None:
    with rundir.atomic(path) as f:
        for s, step in enumerate(traffic.steps):
            for rank in range(traffic.world_size):
                row = {"step": int(step), "rank": rank, "node": int(traffic.node_of_rank[rank])}
                for k in STEP_COLUMNS:
                    v = traffic.table[k][s, rank]
                    row[k] = None if np.isnan(v) else (int(v) if k in _INTS else float(v))
                row["buckets"] = _buckets(traffic, s, rank)
                if traffic.peer_not_ready_s is not None:
                    row["rounds"] = [
                        {
                            "phase": ph,
                            "round": ix,
                            **traffic.bucket_of_round(k),
                            "peer_not_ready_s": float(traffic.peer_not_ready_s[s, rank, k]),
                            "transfer_s": float(traffic.round_transfer_s[s, rank, k]),
                        }
                        for k, (ph, ix) in enumerate(traffic.round_labels)
                        if not np.isnan(traffic.peer_not_ready_s[s, rank, k])
                    ]
                f.write(rundir.dumps(row, separators=(",", ":")) + "\n")


def _buckets(traffic: Traffic, s: int, rank: int) -> list[dict] | None:
    b = traffic.buckets
    if b is None:
        return None
    t0 = traffic.times["t_start"][s, rank]
    return [
        {
            "bytes": layout["bytes"],
            "bytes_sent": _int(b.bytes_sent[s, rank, k]),
            "ready_s": float(b.ready[s, rank, k] - t0),
            "start_s": float(b.start[s, rank, k] - t0),
            "end_s": float(b.end[s, rank, k] - t0),
            "hidden_s": float(b.hidden_s[s, rank, k]),
        }
        for k, layout in enumerate(b.layout)
    ]


def _int(v):
    return None if np.isnan(v) else int(v)


_INTS = {"epoch", "samples", "bytes_sent", "bytes_recv", "messages", "d2h_bytes", "h2d_bytes"}


def _write_links(path: str, traffic: Traffic) -> None:
    with rundir.atomic(path, newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ["step", "src", "dst", "src_node", "dst_node", "intra_node", "sent_bytes", "messages",
             "bucket"]
        )  # fmt: skip
        links = traffic.links if traffic.links is not None else []
        for step, src, dst, nbytes, messages, bucket in links:
            a, b = traffic.node_of_rank[src], traffic.node_of_rank[dst]
            out.writerow([step, src, dst, a, b, int(a == b), nbytes, messages, bucket])
