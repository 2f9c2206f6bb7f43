"""Traffic and synchronisation reports: merged files, a summary, and the text people read.

Definitions (nccl-tests' for bandwidth): the all-reduce's own time in a step runs from the
moment the LAST rank entered it to the moment the last rank left it, so arrival skew (the
stall) is not billed to the network; algbw = buffer bytes / that time; busbw = algbw *
2(p-1)/p, the rate each rank's link must sustain for the ring's 2(p-1)/p * n bytes.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np

from . import rundir, timeline
from .traffic import Traffic

STEP_COLUMNS = ("epoch", "samples", "loss", "compute_s", "comm_s", "wait_s", "transfer_s",
                "caused_wait_s", "bytes_sent", "bytes_recv", "messages")


def write_outputs(run_dir: str, config: dict, traffic: Traffic, traced_steps) -> None:
    _write_steps(os.path.join(run_dir, "steps.jsonl"), traffic)
    _write_links(os.path.join(run_dir, "links.csv"), traffic)
    rundir.write_json(os.path.join(run_dir, "timeline.json"),
                      timeline.chrome_trace(config, traffic, traced_steps))


def _write_steps(path: str, traffic: Traffic) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for s, step in enumerate(traffic.steps):
            for rank in range(traffic.world_size):
                row = {"step": int(step), "rank": rank, "node": int(traffic.node_of_rank[rank])}
                for k in STEP_COLUMNS:
                    v = traffic.table[k][s, rank]
                    row[k] = None if np.isnan(v) else (int(v) if k in _INTS else float(v))
                if traffic.peer_not_ready_s is not None:
                    row["rounds"] = [
                        {"phase": ph, "round": ix, "peer_not_ready_s": float(traffic.peer_not_ready_s[s, rank, k]),
                         "transfer_s": float(traffic.round_transfer_s[s, rank, k])}
                        for k, (ph, ix) in enumerate(traffic.round_labels)
                        if not np.isnan(traffic.peer_not_ready_s[s, rank, k])]
                f.write(json.dumps(row, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


_INTS = {"epoch", "samples", "bytes_sent", "bytes_recv", "messages"}


def _write_links(path: str, traffic: Traffic) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["step", "src", "dst", "src_node", "dst_node", "intra_node", "sent_bytes", "messages"])
        for step, src, dst, nbytes, messages in (traffic.links if traffic.links is not None else []):
            a, b = traffic.node_of_rank[src], traffic.node_of_rank[dst]
            out.writerow([step, src, dst, a, b, int(a == b), nbytes, messages])
    os.replace(tmp, path)


def summarize(config: dict, traffic: Traffic) -> dict:
    t, p = traffic.table, traffic.world_size
    steps = len(traffic.steps)
    out = {"complete": traffic.complete, "steps_recorded": steps, "steps_by_rank": traffic.steps_by_rank,
           "nodes": traffic.nodes, "node_of_rank": traffic.node_of_rank.tolist()}
    mean = (lambda a: np.nanmean(a, axis=0).tolist()) if steps else (lambda a: [None] * p)
    out["per_step_mean_by_rank"] = {k: mean(t[k]) for k in
                                    ("compute_s", "transfer_s", "wait_s", "caused_wait_s", "comm_s")}
    if steps:
        times = traffic.times
        collective_s = np.median(times["t_comm_end"].max(axis=1) - times["t_comm"].max(axis=1))
        caused = np.nansum(t["caused_wait_s"], axis=0)
        last = np.bincount(times["t_comm"].argmax(axis=1), minlength=p)
        out.update({
            "allreduce_time_s_median": float(collective_s),
            "algbw_bytes_per_s": config["buffer_bytes"] / collective_s if collective_s > 0 else None,
            "most_waited_for_rank": int(caused.argmax()),
            "most_waited_for_share_of_steps": float(last[caused.argmax()] / steps),
            "caused_wait_s_total_by_rank": caused.tolist(),
        })
        if out["algbw_bytes_per_s"] is not None:
            out["busbw_bytes_per_s"] = out["algbw_bytes_per_s"] * 2 * (p - 1) / p
    if traffic.observable and steps:
        intra, inter = traffic.intra_inter_bytes()
        out.update({
            "bytes_sent_per_step_by_rank": np.nanmean(t["bytes_sent"], axis=0).tolist(),
            "bytes_sent_total": int(np.nansum(t["bytes_sent"])),
            "analytic_ring_bytes_per_rank_per_step": 2 * (p - 1) / p * config["buffer_bytes"],
            "intra_node_bytes": intra, "inter_node_bytes": inter,
            "link_matrix_bytes": traffic.link_matrix().tolist(),
            "rounds": [{"phase": ph, "round": ix,
                        "peer_not_ready_s_mean": _nanmean(traffic.peer_not_ready_s[:, :, k]),
                        "transfer_s_mean": _nanmean(traffic.round_transfer_s[:, :, k])}
                       for k, (ph, ix) in enumerate(traffic.round_labels)],
        })
    return out


def _nanmean(a) -> float | None:
    return float(np.nanmean(a)) if np.isfinite(a).any() else None


# --- text ------------------------------------------------------------------------------

def nbytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024


def ms(seconds) -> str:
    """Milliseconds, or microseconds below one (a modelled NVLink round is ~1 us)."""
    if seconds is None:
        return "-"
    return f"{seconds * 1e6:,.1f} us" if abs(seconds) < 1e-3 and seconds else f"{seconds * 1e3:,.2f} ms"


def text(config: dict, traffic: Traffic, s: dict) -> str:
    p, cfg = traffic.world_size, config["config"]
    algorithm = "MPI_Allreduce" if cfg["allreduce"] == "mpi" else f"{cfg['allreduce']} all-reduce"
    head = (f"traffic and synchronisation: {s['steps_recorded']} steps on {p} rank{'s' * (p > 1)}, "
            f"{traffic.nodes} node{'s' * (traffic.nodes > 1)}; {algorithm} of {nbytes(config['buffer_bytes'])} "
            f"({cfg['dtype']})")
    lines = [head]
    if not traffic.complete:
        lines.append(f"  INCOMPLETE RUN: no summary.json; records per rank {traffic.steps_by_rank}, "
                     f"steps recorded on every rank reported below")
    if not s["steps_recorded"]:
        return "\n".join(lines + ["  no step was recorded on every rank"])
    lines += _bytes_lines(config, traffic, s) + _time_lines(traffic, s)
    if traffic.observable:
        lines += _round_lines(traffic, s) + _link_lines(traffic, s)
    return "\n".join(lines)


def _bytes_lines(config, traffic, s) -> list[str]:
    if not traffic.observable:
        return ["  bytes: not observable inside MPI_Allreduce (use --allreduce ring to count them)"]
    per_rank = s["bytes_sent_per_step_by_rank"]
    same = len(set(per_rank)) == 1
    sent = nbytes(per_rank[0]) + " each" if same else ", ".join(f"r{r} {nbytes(b)}" for r, b in enumerate(per_rank))
    return [f"  bytes sent per step: {sent} (ring analytic 2(p-1)/p x n = "
            f"{nbytes(s['analytic_ring_bytes_per_rank_per_step'])}); whole run {nbytes(s['bytes_sent_total'])}"]


def _time_lines(traffic, s) -> list[str]:
    lines = []
    if s.get("algbw_bytes_per_s"):
        lines.append(f"  all-reduce once every rank had arrived: median {ms(s['allreduce_time_s_median'])}; "
                     f"algbw {s['algbw_bytes_per_s'] / 1e9:.3f} GB/s, busbw {s['busbw_bytes_per_s'] / 1e9:.3f} GB/s")
    m = s["per_step_mean_by_rank"]
    lines.append("  per rank, mean per step:   compute    transfer       stall   stall/comm   made others wait")
    for r in range(traffic.world_size):
        share = m["wait_s"][r] / m["comm_s"][r] if m["comm_s"][r] else 0.0
        lines.append(f"    rank {r:>3} (node {traffic.node_of_rank[r]:>2})  {ms(m['compute_s'][r]):>10}  "
                     f"{ms(m['transfer_s'][r]):>10}  {ms(m['wait_s'][r]):>10}  {share:>10.0%}   "
                     f"{ms(m['caused_wait_s'][r]):>10}")
    worst = s["most_waited_for_rank"]
    if s["caused_wait_s_total_by_rank"][worst] > 0:
        lines.append(f"  most waited for: rank {worst}, last into the all-reduce in "
                     f"{s['most_waited_for_share_of_steps']:.0%} of steps; the others stalled "
                     f"{ms(m['caused_wait_s'][worst])} per step waiting for it")
    return lines


def _round_lines(traffic, s) -> list[str]:
    rounds = s["rounds"]
    if not rounds:
        return []
    if len(rounds) > 12:  # keep the report compact for large p: one line per phase
        phases = dict.fromkeys(r["phase"] for r in rounds)
        rounds = [{"phase": ph, "round": "all",
                   "peer_not_ready_s_mean": sum(r["peer_not_ready_s_mean"] or 0 for r in rounds if r["phase"] == ph),
                   "transfer_s_mean": sum(r["transfer_s_mean"] or 0 for r in rounds if r["phase"] == ph)}
                  for ph in phases]
    lines = ["  rounds (mean over ranks and steps):    peer not ready    transfer"]
    lines += [f"    {r['phase']:>14} {r['round']!s:>3}          {ms(r['peer_not_ready_s_mean']):>14}  "
              f"{ms(r['transfer_s_mean']):>10}" for r in rounds]
    return lines


def _link_lines(traffic, s) -> list[str]:
    m = np.asarray(s["link_matrix_bytes"])
    p = traffic.world_size
    total = max(int(m.sum()), 1)
    lines = [f"  bytes between nodes: intra-node {nbytes(s['intra_node_bytes'])} "
             f"({s['intra_node_bytes'] / total:.0%}), inter-node {nbytes(s['inter_node_bytes'])} "
             f"({s['inter_node_bytes'] / total:.0%})"]
    if p > 16:
        top = np.dstack(np.unravel_index(np.argsort(m, axis=None)[::-1][:8], m.shape))[0]
        lines.append("  busiest links: " + ", ".join(f"{a}->{b} {nbytes(m[a, b])}" for a, b in top if m[a, b]))
        return lines
    lines.append("  link matrix, bytes over the run (row sends to column):")
    lines.append("        " + "".join(f"{'-> ' + str(c):>12}" for c in range(p)))
    for r in range(p):
        lines.append(f"    {r:>3} " + "".join(f"{nbytes(v) if v else '-':>12}" for v in m[r]))
    return lines
