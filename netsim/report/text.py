"""The text people read: the traffic and synchronisation report, and the units every text of
the project writes numbers in (nbytes, ms, gbps)."""

from __future__ import annotations

import numpy as np

from .traffic import Traffic


def nbytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024


def gbps(bytes_per_s) -> str:
    return "-" if bytes_per_s is None else f"{bytes_per_s / 1e9:.2f} GB/s"


def ms(seconds) -> str:
    """Milliseconds, or microseconds below one (a modelled NVLink round is ~1 us)."""
    if seconds is None:
        return "-"
    return (
        f"{seconds * 1e6:,.1f} us"
        if abs(seconds) < 1e-3 and seconds
        else f"{seconds * 1e3:,.2f} ms"
    )


def text(config: dict, traffic: Traffic, s: dict) -> str:
    p, cfg = traffic.world_size, config["config"]
    head = (
        f"traffic and synchronisation: {s['steps_recorded']} steps on {p} rank{'s' * (p > 1)}, "
        f"{traffic.nodes} node{'s' * (traffic.nodes > 1)}; {traffic.algorithm.label} of "
        f"{nbytes(config['buffer_bytes'])} ({cfg['dtype']})"
    )
    lines = [head]
    if traffic.damage:
        lines.append(
            f"  DAMAGED RUN: records per rank {traffic.steps_by_rank}, steps recorded on "
            f"every rank reported below; what is damaged:"
        )
        lines += [f"    {note}" for note in traffic.damage]
    elif not traffic.complete:
        lines.append(
            f"  INCOMPLETE RUN: no summary.json; records per rank {traffic.steps_by_rank}, "
            f"steps recorded on every rank reported below"
        )
    if not s["steps_recorded"]:
        return "\n".join(lines + ["  no step was recorded on every rank"])
    lines += _bytes_lines(config, traffic, s) + _copy_lines(s) + _time_lines(traffic, s)
    if traffic.observable:
        lines += _round_lines(traffic, s) + _link_lines(traffic, s)
    if "network" in s:
        lines += _wire_lines(s["network"])
    return "\n".join(lines)


def wire(network: dict, s: dict) -> dict:
    """An emulated run's links (network.json) beside the recorder's inter-node bytes: the
    bytes that left the nodes through their capped links, and that over ours (> 1: the
    headers, acknowledgements and envelopes of the protocols under the collective)."""
    left = sum(k["bytes"] for k in network["links"] if k["link"].endswith(".up") and
               k["link"].startswith("node"))  # fmt: skip
    ours = s.get("inter_node_bytes")
    return {
        "emulated": network["emulated"],
        "links": network["links"],
        "bytes_left_nodes": left,
        "wire_over_recorded": left / ours if ours else None,
    }


def _wire_lines(w: dict) -> list[str]:
    e = w["emulated"]
    ratio = w["wire_over_recorded"]
    lines = [
        f"  emulated network: {e['nodes']} nodes x {e['ranks_per_node']}, links "
        f"{e['node_mbit_per_s']:g} Mbit/s; {nbytes(w['bytes_left_nodes'])} left the nodes "
        + (f"({ratio:.3f}x the inter-node bytes above)" if ratio else "")
    ]
    lines += [
        f"    {k['link']:<20} {nbytes(k['bytes']):>12} {k['packets']:>10,} packets  "
        f"dropped {k['drops']}"
        for k in w["links"]
    ]
    return lines


def _bytes_lines(config, traffic, s) -> list[str]:
    if not traffic.observable:
        label = traffic.algorithm.label
        return [f"  bytes: not observable inside {label} (use --allreduce ring to count them)"]
    algorithm, sent, analytic = (
        traffic.algorithm,
        s["bytes_sent_per_step_by_rank"],
        s["analytic_bytes_sent_per_step_by_rank"],
    )
    expected = (
        f"= {algorithm.name} analytic {algorithm.formula}"
        if sent == analytic
        else f"{algorithm.name} analytic {algorithm.formula}: {per_rank(analytic)}"
    )
    return [
        f"  bytes sent per step: {per_rank(sent)} ({expected}); whole run "
        f"{nbytes(s['bytes_sent_total'])}"
    ]


def _copy_lines(s) -> list[str]:
    c = s.get("copies")
    if c is None:
        return []
    d2h, h2d = c["d2h_s_median_by_rank"], c["h2d_s_median_by_rank"]
    return [
        f"  GPU <-> host copies per step (staging): {per_rank(c['d2h_bytes_per_step_by_rank'])} "
        f"to the host, {per_rank(c['h2d_bytes_per_step_by_rank'])} back; median "
        f"{ms(min(d2h))}-{ms(max(d2h))} to the host (overlapping the rounds), "
        f"{ms(min(h2d))}-{ms(max(h2d))} back"
    ]


def per_rank(values) -> str:
    """'153.1 KiB each' where every rank has the same, else 'r0 204.1 KiB, r1 102.0 KiB, ...'."""
    if len(set(values)) == 1:
        return f"{nbytes(values[0])} each"
    return ", ".join(f"r{r} {nbytes(v)}" for r, v in enumerate(values))


def _time_lines(traffic, s) -> list[str]:
    lines = []
    if s.get("algbw_bytes_per_s"):
        lines.append(
            "  all-reduce once every rank had arrived: median "
            f"{ms(s['allreduce_time_s_median'])}; algbw {s['algbw_bytes_per_s'] / 1e9:.3f} GB/s, "
            f"busbw {s['busbw_bytes_per_s'] / 1e9:.3f} GB/s"
        )
    elif traffic.world_size == 1 and s.get("allreduce_time_s_median") is not None:
        lines.append(
            "  all-reduce on one rank: nothing to exchange, no algbw or busbw (median call "
            f"{ms(s['allreduce_time_s_median'])}, the call's own cost)"
        )
    m = s["per_step_mean_by_rank"]
    head = "  per rank, mean per step:   compute    transfer       stall   stall/comm"
    lines.append(head + "   made others wait")
    for r in range(traffic.world_size):
        share = m["wait_s"][r] / m["comm_s"][r] if m["comm_s"][r] else 0.0
        lines.append(
            f"    rank {r:>3} (node {traffic.node_of_rank[r]:>2})  {ms(m['compute_s'][r]):>10}  "
            f"{ms(m['transfer_s'][r]):>10}  {ms(m['wait_s'][r]):>10}  {share:>10.0%}   "
            f"{ms(m['caused_wait_s'][r]):>10}"
        )
    worst = s["most_waited_for_rank"]
    if s["caused_wait_s_total_by_rank"][worst] > 0:
        lines.append(
            f"  most waited for: rank {worst}, last into the all-reduce in "
            f"{s['most_waited_for_share_of_steps']:.0%} of steps; the others stalled "
            f"{ms(m['caused_wait_s'][worst])} per step waiting for it"
        )
    return lines


def _round_lines(traffic, s) -> list[str]:
    rounds = s["rounds"]
    if not rounds:
        return []
    if len(rounds) > 12:  # keep the report compact for large p: one line per phase
        phases = dict.fromkeys(r["phase"] for r in rounds)
        rounds = [
            {
                "phase": ph,
                "round": "all",
                "peer_not_ready_s_mean": sum(
                    r["peer_not_ready_s_mean"] or 0 for r in rounds if r["phase"] == ph
                ),
                "transfer_s_mean": sum(
                    r["transfer_s_mean"] or 0 for r in rounds if r["phase"] == ph
                ),
            }
            for ph in phases
        ]
    lines = ["  rounds (mean over ranks and steps):    peer not ready    transfer"]
    lines += [
        f"    {r['phase']:>14} {r['round']!s:>3}          {ms(r['peer_not_ready_s_mean']):>14}  "
        f"{ms(r['transfer_s_mean']):>10}"
        for r in rounds
    ]
    return lines


def _link_lines(traffic, s) -> list[str]:
    m = np.asarray(s["link_matrix_bytes"])
    p = traffic.world_size
    total = max(int(m.sum()), 1)
    lines = [
        f"  bytes between nodes: intra-node {nbytes(s['intra_node_bytes'])} "
        f"({s['intra_node_bytes'] / total:.0%}), inter-node {nbytes(s['inter_node_bytes'])} "
        f"({s['inter_node_bytes'] / total:.0%})"
    ]
    if p > 16:
        top = np.dstack(np.unravel_index(np.argsort(m, axis=None)[::-1][:8], m.shape))[0]
        lines.append(
            "  busiest links: "
            + ", ".join(f"{a}->{b} {nbytes(m[a, b])}" for a, b in top if m[a, b])
        )
        return lines
    lines.append("  link matrix, bytes over the run (row sends to column):")
    lines.append("        " + "".join(f"{'-> ' + str(c):>12}" for c in range(p)))
    for r in range(p):
        lines.append(f"    {r:>3} " + "".join(f"{nbytes(v) if v else '-':>12}" for v in m[r]))
    return lines
