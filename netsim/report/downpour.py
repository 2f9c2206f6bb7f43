"""An asynchronous (Downpour SGD) run read back: bytes per link, the incast at the servers,
staleness, and how long fetches and pushes waited (--mode async; netsim.algorithms.downpour
says what its messages are).

Input: config.json (its `downpour` layout), every replica's step records (rounds "push"
and "fetch" where they fell) and every server's events (netsim.record.serverfile). Two
views of the same traffic: a replica records what it sent (pushes, fetch requests) and
how long each exchange took; a server records what it answered and applied. The links
table takes the sends of each side, so every directed link's bytes are measured by its
sender; `summarize` sets them beside the counts of the definition.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from netsim.algorithms import downpour
from netsim.record import rundir, serverfile

from .text import gbps, ms, nbytes


@dataclass(eq=False)
class Downpour:
    layout: dict  # config.json's downpour
    itemsize: int
    node_of_rank: np.ndarray
    records: list  # per replica, its step records
    events: list  # per server, its events (serverfile.DTYPE)
    links: np.ndarray  # (L, 5): step (the replica's), src, dst, bytes, messages
    offsets: np.ndarray  # clock offsets onto rank 0's clock, per rank


def merge(config: dict, records: list, events: list) -> Downpour:
    """records: per replica its step records; events: per server its events array."""
    lay = config["downpour"]
    itemsize = config["buffer_bytes"] // max(config["nparams"], 1)
    rows = [[r["step"], *link] for recs in records for r in recs for link in r["links"]]
    parts = [np.array(rows, dtype=np.int64).reshape(-1, 5)]
    bounds = lay["shard_bounds"]
    for s, (rank, ev) in enumerate(zip(lay["servers"], events)):  # the servers' replies
        fetch = ev[ev["kind"] == serverfile.FETCH]
        part = np.empty((len(fetch), 5), dtype=np.int64)
        part[:, 0] = downpour.fetch_step(fetch["index"], lay["fetch_every"])
        part[:, 1], part[:, 2] = rank, fetch["replica"]
        part[:, 3], part[:, 4] = (bounds[s + 1] - bounds[s]) * itemsize, 1
        parts.append(part)
    links = np.concatenate(parts)
    offsets = np.asarray(config.get("clock_offsets_s") or [0.0] * config["world_size"])
    return Downpour(lay, itemsize, np.asarray(config["node_of_rank"]), records, events, links,
                    offsets)  # fmt: skip


def link_totals(d: Downpour) -> dict[tuple[int, int], tuple[int, int]]:
    """(src, dst) -> (bytes, messages) measured over the run."""
    out = {}
    for _, src, dst, nbytes_, messages in d.links:
        b, m = out.get((int(src), int(dst)), (0, 0))
        out[(int(src), int(dst))] = (b + int(nbytes_), m + int(messages))
    return out


def bytes_upto(d: Downpour):
    """batch -> bytes every link carried in the replica steps that took batches up to it
    (replica r's step k takes batch k*R + r): for `netsim compare`."""
    r = d.layout["replicas"]
    replica = np.where(d.links[:, 1] < r, d.links[:, 1], d.links[:, 2])
    batch = d.links[:, 0] * r + replica
    order = np.argsort(batch, kind="stable")
    batches, total = batch[order], np.cumsum(d.links[order, 3])

    def upto(g: int) -> int | None:
        k = int(np.searchsorted(batches, g, side="right"))
        return int(total[k - 1]) if k else 0

    return upto


def _round_s(records, phase: str) -> np.ndarray:
    return np.array(
        [
            (t1 - t0) / 1e9
            for recs in records
            for r in recs
            for ph, _, t0, t1 in r["rounds"]
            if ph == phase
        ]  # fmt: skip
    )


def _stats(values: np.ndarray) -> dict:
    if not len(values):
        return {"count": 0, "median_s": None, "p95_s": None, "total_s": 0.0}
    return {
        "count": int(len(values)),
        "median_s": float(np.median(values)),
        "p95_s": float(np.percentile(values, 95)),
        "total_s": float(values.sum()),
    }


def summarize(config: dict, d: Downpour, wall_s: float | None, complete: bool = True) -> dict:
    """summary.json's `traffic` for an async run (one that did not end has no count of the
    definition to hold its bytes to: bytes_match_analytic is None)."""
    lay, servers = d.layout, d.layout["servers"]
    measured = link_totals(d)
    analytic = downpour.link_bytes(
        config["nparams"], d.itemsize, len(servers), lay["steps_by_replica"],
        lay["fetch_every"], lay["push_every"])  # fmt: skip
    keys = sorted(set(measured) | set(analytic))
    pushes = [ev[ev["kind"] == serverfile.PUSH] for ev in d.events]
    stale = np.concatenate([p["staleness"] for p in pushes]) if pushes else np.zeros(0, int)
    values, counts = np.unique(stale, return_counts=True)
    by_replica = [
        float(np.mean(np.concatenate([p["staleness"][p["replica"] == r] for p in pushes])))
        if any(len(p) for p in pushes) else None
        for r in range(lay["replicas"])
    ]  # fmt: skip
    into = [sum(measured.get((r, s), (0, 0))[0] for r in range(lay["replicas"])) for s in servers]
    out_of = [sum(measured.get((s, r), (0, 0))[0] for r in range(lay["replicas"])) for s in servers]
    busy = [float(((ev["t_done_ns"] - ev["t_recv_ns"]) / 1e9).sum()) for ev in d.events]
    n = config["nparams"] * d.itemsize
    r = lay["replicas"]
    return {
        "mode": "async",
        "replicas": r,
        "servers": servers,
        "fetch_every": lay["fetch_every"],
        "push_every": lay["push_every"],
        "steps_by_replica": [len(recs) for recs in d.records],
        "updates_by_server": [len(p) for p in pushes],
        "fetches_by_server": [int((ev["kind"] == serverfile.FETCH).sum()) for ev in d.events],
        "links": [[a, b, *measured.get((a, b), (0, 0))] for a, b in keys],
        "analytic_links": [[a, b, *analytic.get((a, b), (0, 0))] for a, b in keys],
        "bytes_match_analytic": all(measured.get(k) == analytic.get(k) for k in keys)
        if complete
        else None,
        "server_bytes_in": into,
        "server_bytes_out": out_of,
        "server_bytes_per_s_in": [b / wall_s for b in into] if wall_s else None,
        "server_bytes_per_s_out": [b / wall_s for b in out_of] if wall_s else None,
        "server_busy_s": busy,
        "server_busy_share": [b / wall_s for b in busy] if wall_s else None,
        "staleness_histogram": [[int(v), int(c)] for v, c in zip(values, counts)],
        "staleness_mean": float(stale.mean()) if len(stale) else None,
        "staleness_max": int(stale.max()) if len(stale) else None,
        "staleness_mean_by_replica": by_replica,
        "push_wait": _stats(_round_s(d.records, "push")),
        "fetch_wait": _stats(_round_s(d.records, "fetch")),
        # beside it, what a ring all-reduce of the same buffer moves per rank per step on R
        # ranks, and what one update costs each server's link here (in + out, n_fetch = 1)
        "ring_bytes_per_rank_per_step": 2 * (r - 1) * n // r if r else 0,
        "server_bytes_per_step_in": r * n // len(servers) // lay["push_every"],
    }


def text(config: dict, s: dict, wall_s: float | None) -> str:
    r, servers = s["replicas"], s["servers"]
    lines = [
        f"Downpour SGD: {r} replica{'s' * (r > 1)} and {len(servers)} server"
        f"{'s' * (len(servers) > 1)} (ranks {', '.join(map(str, servers))}); fetch every "
        f"{s['fetch_every']}, push every {s['push_every']} steps; "
        f"{sum(s['updates_by_server'])} updates applied, {sum(s['fetches_by_server'])} "
        "fetches answered",
        "  server links (the incast):",
    ]
    for k, rank in enumerate(servers):
        rate_in = s["server_bytes_per_s_in"]
        load = f", {gbps(rate_in[k])} in" if rate_in else ""
        busy = s["server_busy_share"]
        lines.append(
            f"    rank {rank}: in {nbytes(s['server_bytes_in'][k])}, out "
            f"{nbytes(s['server_bytes_out'][k])}{load}"
            + (f", busy {busy[k]:.0%} of the run" if busy else "")
        )
    lines.append(
        f"  per step, each server takes in {nbytes(s['server_bytes_per_step_in'])} (R x its "
        f"shard / n_push); a ring all-reduce on {r} ranks would send "
        f"{nbytes(s['ring_bytes_per_rank_per_step'])} per rank"
    )
    lines.append(
        "  bytes per link: "
        + {
            True: "equal to the definition's count",
            None: "of the steps recorded (the run did not end)",
            False: "DIFFER from the definition's count (summary.json: links, analytic_links)",
        }[s["bytes_match_analytic"]]
    )
    hist = s["staleness_histogram"]
    if hist:
        total = sum(c for _, c in hist)
        shown = ", ".join(f"{v}: {c}" for v, c in hist[:12]) + (", ..." if len(hist) > 12 else "")
        lines.append(
            f"  staleness (updates the shard took since that replica's fetch): mean "
            f"{s['staleness_mean']:.2f}, max {s['staleness_max']}; histogram {shown} "
            f"({total} pushes)"
        )
    for name in ("push_wait", "fetch_wait"):
        w = s[name]
        if w["count"]:
            lines.append(
                f"  {name.replace('_', ' ')}: {w['count']}, median {ms(w['median_s'])}, p95 "
                f"{ms(w['p95_s'])}, total {w['total_s']:.3f} s"
            )
    return "\n".join(lines)


def write_outputs(run_dir: str, d: Downpour) -> None:
    """links.csv (the sync run's columns) and updates.jsonl (every server event)."""
    with rundir.atomic(os.path.join(run_dir, "links.csv"), newline="") as f:
        out = csv.writer(f)
        out.writerow(
            ["step", "src", "dst", "src_node", "dst_node", "intra_node", "sent_bytes", "messages"]
        )
        for step, src, dst, nb, messages in d.links[np.lexsort((d.links[:, 1], d.links[:, 0]))]:
            a, b = d.node_of_rank[src], d.node_of_rank[dst]
            out.writerow([step, src, dst, a, b, int(a == b), nb, messages])
    lay = d.layout
    with rundir.atomic(os.path.join(run_dir, "updates.jsonl")) as f:
        for rank, ev in zip(lay["servers"], d.events):
            for e in ev:
                kind, replica, index = int(e["kind"]), int(e["replica"]), int(e["index"])
                # its steps counted from the run's first (a resumed run goes on numbering)
                first = lay.get("first_step_by_replica", [0] * len(lay["steps_by_replica"]))
                steps = first[replica] + lay["steps_by_replica"][replica]
                step = (
                    downpour.fetch_step(index, lay["fetch_every"])
                    if kind == serverfile.FETCH
                    else downpour.push_step(index, steps, lay["push_every"])
                )
                row = {
                    "server": rank,
                    "kind": "fetch" if kind == serverfile.FETCH else "push",
                    "replica": replica,
                    "replica_step": step,
                    "version": int(e["version"]),
                    "staleness": int(e["staleness"]),
                    "t_s": float(e["t_recv_ns"] / 1e9 + d.offsets[rank]),
                    "busy_s": float((e["t_done_ns"] - e["t_recv_ns"]) / 1e9),
                }
                f.write(rundir.dumps(row, separators=(",", ":")) + "\n")


def load(run_dir: str) -> tuple[dict, Downpour, dict | None]:
    """An async run directory read back: (config, merged, summary or None)."""
    config, records, summary = rundir.load(run_dir)
    lay = config["downpour"]
    events = [serverfile.read(serverfile.path(run_dir, s))[1] for s in lay["servers"]]
    return config, merge(config, records[: lay["replicas"]], events), summary


def report(run_dir: str, totals: dict | None) -> tuple[dict, str]:
    """`netsim report` of an async run: (its figures, its text)."""
    config, merged, _ = load(run_dir)
    wall = (totals or {}).get("wall_s")
    complete = totals is not None and not config["damage"]
    figures = summarize(config, merged, wall, complete)
    figures["complete"] = complete
    lines = [text(config, figures, wall)]
    if not complete:
        figures["damage"] = config["damage"]
        lines.insert(0, "INCOMPLETE RUN: " + "; ".join(config["damage"] or ["no summary.json"]))
    return figures, "\n".join(lines)
