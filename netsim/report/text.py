"""The text people read: the traffic and synchronisation report, and the units every text of
the project writes numbers in (nbytes, ms, gbps). The report says what communication cost
the steps: exposed (compute waited on it) and hidden (in flight under backward), and for a
run in more than one bucket, a table of its buckets. A compressed run (--compress) says its
method, its bytes per step against the same buckets uncompressed, the compression's own
compute per step, and per bucket its bytes on the wire, its compute and its collectives.

(Past 300 lines: one page of text, the report, a short function per section in the order
they print, and the units they share; apart, one report would be read from several files.)"""

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


def rate(value) -> str:
    """A count per second (samples/s), whole, or "-" where there is none."""
    return "-" if value is None else f"{value:,.0f}"


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
    lines += _bytes_lines(config, traffic, s) + _copy_lines(s) + compression_lines(s)
    lines += communication_lines(s) + bucket_lines(s)
    lines += _time_lines(traffic, s)
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
    count = f"{algorithm.name} analytic {algorithm.formula}"
    if "compression" in s:  # each bucket's collectives, by the compression's definition
        count = f"{s['compression']['method']} over {algorithm.name}, netsim's count"
    expected = f"= {count}" if sent == analytic else f"{count}: {per_rank(analytic)}"
    return [
        f"  bytes sent per step: {per_rank(sent)} ({expected}); whole run "
        f"{nbytes(s['bytes_sent_total'])}"
    ]


def compression_lines(s) -> list[str]:
    """A compressed run: its bytes per step against the same buckets uncompressed, the
    compression's compute per step, and a row per bucket."""
    c = s.get("compression")
    if c is None:
        return []
    sent, whole = (
        c["analytic_bytes_sent_per_step_by_rank"],
        c["uncompressed_bytes_sent_per_step_by_rank"],
    )
    mean = lambda v: sum(v) / len(v) if v else None  # noqa: E731
    against = (
        f"{nbytes(mean(sent))} per rank per step against {nbytes(mean(whole))} uncompressed"
        if sent and whole else "bytes not observable"
    )  # fmt: skip
    ratio = f" ({c['ratio']:.3g}x fewer)" if c["ratio"] else ""
    lines = [
        f"  compression {c['method']}: {against}{ratio}; its compute "
        f"{ms(c['compress_s_per_step'])} per step (mean over ranks)",
        "    bucket    size KiB  sent KiB/rank  uncompressed KiB/rank  compress ms  collectives",
    ]
    for b in c["buckets"]:
        measured, whole = (
            b["bytes_sent_per_step_by_rank"],
            b["uncompressed_bytes_sent_per_step_by_rank"],
        )
        what = ", ".join(
            f"{x['kind']} of {x['what']} ({nbytes(x['bytes'])} {x['dtype']})"
            for x in b["collectives"]
        )
        lines.append(
            f"    {b['bucket']:>6}  {b['bytes'] / 1024:>10,.1f}  "
            f"{'-' if measured is None else f'{mean(measured) / 1024:,.1f}':>13}  "
            f"{'-' if whole is None else f'{mean(whole) / 1024:,.1f}':>21}  "
            f"{_ms3(b['compress_s_mean']):>11}  {what or '-'}"
        )
    return lines


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


def communication_lines(s) -> list[str]:
    """What communication cost a step, mean over ranks: hidden under backward and exposed
    (the part of the step compute waited on it), and the steps' rate."""
    exposed, hidden, step = s.get("exposed_s"), s.get("hidden_s"), s.get("step_s")
    if exposed is None:
        return []
    buckets = s.get("buckets") or []
    share = s["exposed_share_of_step"]
    of_step = f"{share:.0%} of a {ms(step)} step" if share is not None else "no step time"
    if hidden:
        split = (
            f" = {ms(hidden)} hidden under backward ({s['hidden_share']:.0%}) + {ms(exposed)} "
            f"exposed ({of_step})"
        )
    else:
        after = f"; {len(buckets)} buckets, after backward" if len(buckets) > 1 else ""
        split = f", all exposed ({of_step}{after})"
    rate = s.get("step_samples_per_s")
    return [
        f"  communication per step (mean over ranks): {ms(exposed + (hidden or 0.0))}{split}"
        + (f"; {rate:,.0f} samples/s (steps alone)" if rate else "")
    ]


def bucket_lines(s) -> list[str]:
    """A run in more than one bucket: one row per bucket, in launch order."""
    buckets = s.get("buckets") or []
    if len(buckets) < 2:
        return []
    how = "overlapped with backward" if s.get("overlap") else "after backward"
    lines = [
        f"  buckets in launch order, {how} (mean over ranks and steps):",
        "    bucket  layer  offset KiB    size KiB  sent KiB/rank  ready->start ms  "
        "duration ms  hidden  algorithm",
    ]
    for b in buckets:
        sent = b["bytes_sent_per_step_by_rank"]
        lines.append(
            f"    {b['bucket']:>6}  {'-' if b['layer'] is None else b['layer']:>5}  "
            f"{b['offset'] / 1024:>10,.1f}  {b['bytes'] / 1024:>10,.1f}  "
            f"{'-' if sent is None else f'{sum(sent) / len(sent) / 1024:,.1f}':>13}  "
            f"{_ms3(b['ready_to_start_s_mean']):>15}  {_ms3(b['duration_s_mean']):>11}  "
            f"{b['hidden_share']:>6.0%}  {b['algorithm'] or '-'}"
        )
    return lines


def _ms3(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.3f}"


def _time_lines(traffic, s) -> list[str]:
    lines = []
    if s.get("algbw_bytes_per_s"):
        each = " (each bucket's, summed)" if traffic.nbuckets > 1 else ""
        lines.append(
            f"  all-reduce once every rank had arrived{each}: median "
            f"{ms(s['allreduce_time_s_median'])}; algbw {s['algbw_bytes_per_s'] / 1e9:.3f} GB/s, "
            f"busbw {s['busbw_bytes_per_s'] / 1e9:.3f} GB/s"
        )
    elif traffic.world_size == 1 and s.get("allreduce_time_s_median") is not None:
        lines.append(
            "  all-reduce on one rank: nothing to exchange, no algbw or busbw (median call "
            f"{ms(s['allreduce_time_s_median'])}, the call's own cost)"
        )
    m = s["per_step_mean_by_rank"]
    # the stall's share of the wait after backward: exposed_s (comm_s counts hidden time too;
    # without buckets the two are one)
    share_of = "   stall/comm" if traffic.nbuckets == 1 else "  stall/exposed"
    head = "  per rank, mean per step:   compute    transfer       stall" + share_of
    lines.append(head + "   made others wait")
    for r in range(traffic.world_size):
        share = m["wait_s"][r] / m["exposed_s"][r] if m["exposed_s"][r] else 0.0
        lines.append(
            f"    rank {r:>3} (node {traffic.node_of_rank[r]:>2})  {ms(m['compute_s'][r]):>10}  "
            f"{ms(m['transfer_s'][r]):>10}  {ms(m['wait_s'][r]):>10}  "
            f"{share:>{len(share_of) - 3}.0%}   "
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
    # a bucketed run's rounds are each bucket's: named "b<bucket> <phase>"
    name = lambda r: f"b{r['bucket']} {r['phase']}" if "bucket" in r else r["phase"]  # noqa: E731
    if len(rounds) > 12:  # keep the report compact for large p: one line per phase
        phases = {name(r): r for r in rounds}
        rounds = [
            {
                **{k: r[k] for k in ("phase", "bucket") if k in r},
                "round": "all",
                "peer_not_ready_s_mean": sum(
                    x["peer_not_ready_s_mean"] or 0 for x in rounds if name(x) == key
                ),
                "transfer_s_mean": sum(x["transfer_s_mean"] or 0 for x in rounds if name(x) == key),
            }
            for key, r in phases.items()
        ]
    width = max(14, *(len(name(r)) for r in rounds))
    pad = " " * (width - 14)
    lines = [f"  rounds (mean over ranks and steps):    {pad}peer not ready    transfer"]
    lines += [
        f"    {name(r):>{width}} {r['round']!s:>3}          {ms(r['peer_not_ready_s_mean']):>14}  "
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
