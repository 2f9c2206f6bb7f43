"""What predict, sweep, replay and nccl print, and the sweep's plot: the text of
netsim.sim.predict's dictionaries (whose keys are a measured run's) and of netsim.sim.nccl's
estimates."""

from __future__ import annotations

import csv
import io
import json

from netsim.report import plots
from netsim.report.text import gbps, ms, nbytes, rate


def prediction_text(o: dict) -> str:
    closed = "" if o["closed_form_s"] is None else f" (closed form {ms(o['closed_form_s'])})"
    lines = [
        f"{o['algorithm']} all-reduce of {nbytes(o['buffer_bytes'])} on {o['world_size']} ranks of "
        f'"{o["topology"]}", {o["channels"]} channel{"s" if o["channels"] > 1 else ""}',
        f"  all-reduce {ms(o['allreduce_time_s_median'])}{closed}; algbw "
        f"{gbps(o['algbw_bytes_per_s'])}, busbw {gbps(o['busbw_bytes_per_s'])}",
        f"  bytes sent per rank: up to {nbytes(max(o['bytes_sent_per_step_by_rank']))}; "
        f"{nbytes(o['total_link_bytes'])} crossed links in all",
        _bottleneck(o),
    ]
    lines += [
        f"    {link['link']:<28} {nbytes(link['bytes']):>12}  {link['utilisation']:>5.0%} busy"
        for link in o["busiest_links"]
    ]
    compute = max(o["per_step_mean_by_rank"]["compute_s"])
    if compute > 0:
        lines.append(
            f"  step with {ms(compute)} of compute: {ms(o['step_time_s'])}, communication "
            f"{o['comm_share']:.0%} of it"
        )
    return "\n".join(lines)


def sweep_text(topo, rows: list[dict], params: int, dtype: str, compute_ms: float) -> str:
    head = (
        f'weak scaling on "{topo.name}": {params:,} parameters ({dtype}), '
        f"{compute_ms:g} ms compute per step"
    )
    lines = [
        head,
        f"{'ranks':>6}  {'algorithm':<18} {'ch':>3} {'all-reduce':>11} {'step':>11} {'comm':>6} "
        f"{'efficiency':>10} {'busbw':>11}  bottleneck",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['world_size']:>6}  {r['algorithm']:<18} {r['error']}")
            continue
        lines.append(
            f"{r['world_size']:>6}  {r['algorithm']:<18} {r['channels']:>3} "
            f"{ms(r['allreduce_time_s_median']):>11} "
            f"{ms(r['step_time_s']):>11} {r['comm_share']:>6.0%} {r['scaling_efficiency']:>10.0%} "
            f"{gbps(r['busbw_bytes_per_s']):>11}  {r['bottleneck_link']}"
        )
    return "\n".join(lines)


def rows_csv(rows: list[dict]) -> str:
    """predict's or sweep's rows as CSV, a row each: their single-valued fields (the per-rank
    lists and the nested figures stay in --json)."""
    fields = [k for k, v in rows[0].items() if not isinstance(v, list | dict)] if rows else []
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow(row)
    return out.getvalue()


def nccl_csv(rows: list) -> str:
    """The estimates as CSV, a row each, every field of their JSON (lists as JSON)."""
    dicts = [e.to_dict() for e in rows]
    out = io.StringIO()
    fields = list(dicts[0]) if dicts else []
    w = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for d in dicts:
        w.writerow({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in d.items()})
    return out.getvalue()


def nccl_text(topo, ranks: int, rows: list) -> str:
    """NCCL's model, one row per estimate (netsim.sim.nccl.Estimate), as nccl-tests reports."""
    library = rows[0].library if rows else "NCCL"  # RCCL on AMD Instinct
    lines = [
        f'{library} all-reduce (float32 sum) on {ranks} ranks of "{topo.name}": {library}\'s '
        f"tuning model on netsim's links, as nccl-tests reports it",
        f"{'size':>10}  {'algorithm':<10} {'protocol':<8} {'ch':>3} {'time':>11} "
        f"{'algbw':>11} {'busbw':>11}  bottleneck",
    ]
    for e in rows:
        star = " *" if e.simulated_only else ""
        lines.append(
            f"{nbytes(e.nbytes):>10}  {e.algorithm + star:<10} {e.protocol:<8} "
            f"{e.channels:>3} {ms(e.time_s):>11} {gbps(e.algbw_bytes_per_s):>11} "
            f"{gbps(e.busbw_bytes_per_s):>11}  {e.bottleneck}"
        )
    if any(e.simulated_only for e in rows):
        lines.append("* simulated only: the switches add; no MPI on this machine runs it")
    return "\n".join(lines)


def replay_text(o: dict) -> str:
    """pred/meas-1 is the prediction's error when the topology models the machine the run was
    measured on (see calibrate); on another cluster it is how much faster or slower it would be."""
    if "buckets" in o:
        return replay_buckets_text(o)
    m, e = o["measured"], o["errors"]
    lines = [
        f"replay of {o['steps_replayed']} recorded steps: {o['algorithm']} all-reduce of "
        f'{nbytes(o["buffer_bytes"])} on {o["world_size"]} ranks of "{o["topology"]}"',
        f"  {'':<22} {'predicted':>12} {'measured':>12} {'pred/meas-1':>12}",
    ]
    lines += _compared(o, m, e, 22, (
        ("allreduce_time_s_median", "all-reduce (median)", ms),
        ("algbw_bytes_per_s", "algbw", gbps),
        ("busbw_bytes_per_s", "busbw", gbps),
    ))  # fmt: skip
    lines.append(
        f"  step time (median): predicted {ms(o['step_time_s'])}, measured "
        f"{ms(o['measured_step_time_s'])}"
    )
    lines.append(_bottleneck(o))
    return "\n".join(lines)


def replay_buckets_text(o: dict) -> str:
    """A bucketed run replayed: per bucket when it was ready (measured) and when its modelled
    all-reduce ran, then the step's figures beside the measured ones. pred/meas-1 only where
    the replay is the run (its ranks, algorithms and overlap)."""
    m, e = o["measured"], o["errors"]
    as_run = (
        "as the run"
        if o["overlap"] == o["run_overlap"]
        else "the run's was " + ("on" if o["run_overlap"] else "off")
    )
    lines = [
        f"replay of {o['steps_replayed']} recorded steps: {len(o['buckets'])} buckets of "
        f"{nbytes(o['buffer_bytes'])}, {o['algorithm']} all-reduce, overlap "
        f"{'on' if o['overlap'] else 'off'} ({as_run}), on {o['world_size']:,} ranks of "
        f'"{o["topology"]}"',
        f"  {'bucket':>6} {'bytes':>10} {'algorithm':<18} {'ready':>11} {'start':>11} "
        f"{'end':>11} {'all-reduce':>11} {'measured':>11}",
    ]
    for b in o["buckets"]:
        lines.append(
            f"  {b['bucket']:>6} {nbytes(b['bytes']):>10} {b['algorithm']:<18} "
            f"{ms(b['ready_s']):>11} {ms(b['start_s']):>11} {ms(b['end_s']):>11} "
            f"{ms(b['allreduce_s']):>11} {ms(b['measured_allreduce_s']):>11}"
        )
    lines.append(
        f"  {'per step (median)':<26} {'predicted':>12} {'measured':>12} {'pred/meas-1':>12}"
    )
    lines += _compared(o, m, e, 26, (
        ("step_time_s", "step time", ms),
        ("compute_s", "compute", ms),
        ("exposed_comm_s", "exposed communication", ms),
        ("hidden_comm_s", "hidden communication", ms),
        ("allreduce_time_s_median", "all-reduces (their sum)", ms),
        ("busbw_bytes_per_s", "busbw", gbps),
        ("samples_per_s", "samples/s", rate),
    ))  # fmt: skip
    lines.append(
        f"  compute: backward {ms(o['backward_s'])} (ready times from its start), update "
        f"{ms(o['update_s'])} after the wait"
    )
    if o.get("compression", "none") != "none":
        lines.append(
            f"  compression {o['compression']}: each bucket's all-reduce is its collectives "
            f"there ({ms(sum(b['network_s'] for b in o['buckets']))} in all) and its compute as "
            f"measured here ({ms(o['compress_s'])} per step, the slowest rank's)"
        )
    return "\n".join(lines)


def _compared(o: dict, m: dict, e: dict, width: int, rows) -> list[str]:
    """A line per (key, label, format): predicted, measured, and their error where known."""
    out = []
    for key, label, fmt in rows:
        err = f"{e[key]:+.0%}" if key in e else "-"
        out.append(f"  {label:<{width}} {fmt(o[key]):>12} {fmt(m.get(key)):>12} {err:>12}")
    return out


def _bottleneck(o: dict) -> str:
    busy = o["bottleneck_utilisation"]
    return f"  bottleneck link {o['bottleneck_link']}, busy {busy:.0%} of the time"


def sweep_plot(path: str, topology, rows: list[dict]) -> str:
    """The scaling table of `python -m netsim sweep` as two panels against the rank count:
    scaling efficiency, and the all-reduce's time, one line per algorithm."""
    fig = plots.figure_class()(figsize=(9, 6.5))
    eff_ax, time_ax = fig.subplots(2, 1, sharex=True)
    algorithms = list(dict.fromkeys(r["algorithm"] for r in rows))
    for algorithm in algorithms:
        mine = [r for r in rows if r["algorithm"] == algorithm and "error" not in r]
        ranks = [r["world_size"] for r in mine]
        eff_ax.plot(
            ranks, [100 * r["scaling_efficiency"] for r in mine], marker="o", label=algorithm
        )
        time_ax.plot(
            ranks, [1e3 * r["allreduce_time_s_median"] for r in mine], marker="o", label=algorithm
        )
    eff_ax.set_ylabel("scaling efficiency (%)\ncompute / step time")
    eff_ax.set_ylim(0, 105)
    time_ax.set_ylabel("all-reduce time (ms)")
    time_ax.set_yscale("log")
    time_ax.set_xscale("log", base=2)
    sizes = sorted({r["world_size"] for r in rows})
    time_ax.set_xticks(sizes, [f"{p:,}" for p in sizes])
    time_ax.set_xlabel("ranks")
    for ax in (eff_ax, time_ax):
        ax.grid(True, which="both", alpha=0.3)
    eff_ax.legend(loc="lower left", fontsize=8)
    first = rows[0] if rows else {}
    fig.suptitle(
        f"Weak scaling on {topology.name}\n{first.get('buffer_bytes', 0) / 2**20:,.1f} MiB "
        f"gradient per step",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=plots.DPI)
    return path
