"""Text for predictions: one step, a sweep table, a replay against its measurement."""

from __future__ import annotations

from .report import ms, nbytes


def _gbps(bytes_per_s) -> str:
    return "-" if bytes_per_s is None else f"{bytes_per_s / 1e9:.2f} GB/s"


def prediction(o: dict) -> str:
    closed = "" if o["closed_form_s"] is None else f" (closed form {ms(o['closed_form_s'])})"
    lines = [
        f"{o['algorithm']} all-reduce of {nbytes(o['buffer_bytes'])} on {o['world_size']} ranks of "
        f"\"{o['topology']}\"",
        f"  all-reduce {ms(o['allreduce_time_s_median'])}{closed}; algbw {_gbps(o['algbw_bytes_per_s'])}, "
        f"busbw {_gbps(o['busbw_bytes_per_s'])}",
        f"  bytes sent per rank: up to {nbytes(max(o['bytes_sent_per_step_by_rank']))}; "
        f"{nbytes(o['total_link_bytes'])} crossed links in all",
        f"  bottleneck link {o['bottleneck_link']}, busy {o['bottleneck_utilisation']:.0%} of the time",
    ]
    lines += [f"    {l['link']:<28} {nbytes(l['bytes']):>12}  {l['utilisation']:>5.0%} busy" for l in o["busiest_links"]]
    compute = max(o["per_step_mean_by_rank"]["compute_s"])
    if compute > 0:
        lines.append(f"  step with {ms(compute)} of compute: {ms(o['step_time_s'])}, communication "
                     f"{o['comm_share']:.0%} of it")
    return "\n".join(lines)


def sweep_table(topo, rows: list[dict], args) -> str:
    head = (f"weak scaling on \"{topo.name}\": {args.params:,} parameters ({args.dtype}), "
            f"{args.compute_ms:g} ms compute per step")
    lines = [head, f"{'ranks':>6}  {'algorithm':<18} {'all-reduce':>11} {'step':>11} {'comm':>6} "
                   f"{'efficiency':>10} {'busbw':>11}  bottleneck"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['world_size']:>6}  {r['algorithm']:<18} {r['error']}")
            continue
        lines.append(f"{r['world_size']:>6}  {r['algorithm']:<18} {ms(r['allreduce_time_s_median']):>11} "
                     f"{ms(r['step_time_s']):>11} {r['comm_share']:>6.0%} {r['scaling_efficiency']:>10.0%} "
                     f"{_gbps(r['busbw_bytes_per_s']):>11}  {r['bottleneck_link']}")
    return "\n".join(lines)


def replay(o: dict) -> str:
    """pred/meas-1 is the prediction's error when the topology models the machine the run was
    measured on (see calibrate); on another cluster it is how much faster or slower it would be."""
    m, e = o["measured"], o["errors"]
    lines = [f"replay of {o['steps_replayed']} recorded steps: {o['algorithm']} all-reduce of "
             f"{nbytes(o['buffer_bytes'])} on {o['world_size']} ranks of \"{o['topology']}\"",
             f"  {'':<22} {'predicted':>12} {'measured':>12} {'pred/meas-1':>12}"]
    for key, label, fmt in (("allreduce_time_s_median", "all-reduce (median)", ms),
                            ("algbw_bytes_per_s", "algbw", _gbps), ("busbw_bytes_per_s", "busbw", _gbps)):
        err = f"{e[key]:+.0%}" if key in e else "-"
        lines.append(f"  {label:<22} {fmt(o[key]):>12} {fmt(m.get(key)):>12} {err:>12}")
    lines.append(f"  step time (median): predicted {ms(o['step_time_s'])}, measured {ms(o['measured_step_time_s'])}")
    lines.append(f"  bottleneck link {o['bottleneck_link']}, busy {o['bottleneck_utilisation']:.0%} of the time")
    return "\n".join(lines)
