"""What predict --workload and sweep --workload print and write: a step's figures and its
buckets (netsim.sim.step's dictionaries), as text, CSV and a timeline; a sweep's rows, as
text, CSV and efficiency against ranks."""

from __future__ import annotations

from netsim.report import plots
from netsim.report.text import ms, nbytes, rate


def _head(o: dict) -> str:
    cap = o["bucket_cap_bytes"]
    plan = (
        "one bucket"
        if cap is None
        else f"DDP buckets of {nbytes(cap)} (first {nbytes(o['first_bucket_cap_bytes'])})"
    )
    accumulate = f", {o['accumulate']} micro-steps a step" if o["accumulate"] > 1 else ""
    return (
        f"{o['workload']}: {o['params']:,} parameters, {o['gradient_dtype']} gradients "
        f"({nbytes(o['gradient_bytes'])}), {o['batch_per_gpu']:,} "
        f"sample{'s' if o['batch_per_gpu'] != 1 else ''} per GPU{accumulate}; "
        f"{plan}, overlap {'on' if o['overlap'] else 'off'}; all-reduces: {o['collectives']}"
    )


def step_text(o: dict) -> str:
    """predict --workload: the step's figures, then one line per bucket."""
    lines = [
        _head(o),
        f'  on {o["world_size"]:,} ranks of "{o["topology"]}"',
        f"  step {ms(o['step_time_s'])}: compute {ms(o['compute_s'])} (forward "
        f"{ms(o['forward_s'])}, backward {ms(o['backward_s'])}); communication "
        f"{ms(o['comm_busy_s'])}: exposed {ms(o['exposed_comm_s'])}, hidden "
        f"{ms(o['hidden_comm_s'])}",
        f"  {rate(o['samples_per_s'])} samples/s; one GPU {rate(o['single_gpu_samples_per_s'])}; "
        f"scaling efficiency {o['scaling_efficiency']:.1%}",
        f"  {'bucket':>6} {'bytes':>10} {'tensors':>7} {'ready':>11} {'start':>11} "
        f"{'end':>11} {'all-reduce':>11}  layers",
    ]
    for b in o["buckets"]:
        first, last = b["layers"]
        span = first if first == last else f"{first} .. {last}"
        lines.append(
            f"  {b['bucket']:>6} {nbytes(b['bytes']):>10} {b['tensors']:>7} "
            f"{ms(b['ready_s']):>11} {ms(b['start_s']):>11} {ms(b['end_s']):>11} "
            f"{ms(b['allreduce_s']):>11}  {span}"
        )
    return "\n".join(lines)


def step_sweep_text(rows: list[dict]) -> str:
    """sweep --workload: one line per rank count (and algorithm, when simulated)."""
    lines = [
        _head(rows[0]),
        f'  on "{rows[0]["topology"]}"',
        f"{'ranks':>7} {'step':>11} {'compute':>11} {'exposed':>11} {'hidden':>11} "
        f"{'buckets':>7} {'samples/s':>13} {'efficiency':>10}  all-reduces",
    ]
    for r in rows:
        lines.append(
            f"{r['world_size']:>7,} {ms(r['step_time_s']):>11} {ms(r['compute_s']):>11} "
            f"{ms(r['exposed_comm_s']):>11} {ms(r['hidden_comm_s']):>11} "
            f"{len(r['buckets']):>7} {rate(r['samples_per_s']):>13} "
            f"{r['scaling_efficiency']:>10.1%}  {r['collectives']}"
        )
    return "\n".join(lines)


STEP_COLUMNS = (
    "world_size",
    "step_time_s",
    "compute_s",
    "exposed_comm_s",
    "hidden_comm_s",
    "comm_busy_s",
    "samples_per_s",
    "scaling_efficiency",
    "collectives",
)
BUCKET_COLUMNS = ("bucket", "bytes", "tensors", "ready_s", "start_s", "end_s", "allreduce_s")


def step_csv(o: dict) -> str:
    """One row per bucket, its first and last layer in forward order."""
    lines = [",".join((*BUCKET_COLUMNS, "first_layer", "last_layer"))]
    for b in o["buckets"]:
        cells = [str(b[k]) for k in BUCKET_COLUMNS] + [_cell(n) for n in b["layers"]]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def step_sweep_csv(rows: list[dict]) -> str:
    lines = [",".join((*STEP_COLUMNS, "buckets"))]
    for r in rows:
        lines.append(",".join([_cell(r[k]) for k in STEP_COLUMNS] + [str(len(r["buckets"]))]))
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text


def step_plot(path: str, o: dict) -> str:
    """One step as a timeline: compute (forward, backward) on one row, each bucket's
    all-reduce on the network's row, from its start to its end, its wait before."""
    fig = plots.figure_class()(figsize=(10, 3.6))
    ax = fig.subplots()
    micro = o["compute_s"] / o["accumulate"]
    last = o["compute_s"] - micro
    forward = o["forward_s"] / o["accumulate"]
    if last > 0:
        ax.broken_barh([(0, last * 1e3)], (1.6, 0.8), color="0.8", label="earlier micro-steps")
    ax.broken_barh([(last * 1e3, forward * 1e3)], (1.6, 0.8), color="tab:blue", label="forward")
    ax.broken_barh(
        [((last + forward) * 1e3, (micro - forward) * 1e3)],
        (1.6, 0.8),
        color="tab:green",
        label="backward",
    )
    for b in o["buckets"]:
        if b["start_s"] > b["ready_s"]:  # ready, waiting for the stream: above the bars
            ax.plot([b["ready_s"] * 1e3, b["start_s"] * 1e3], [1.15, 1.15], color="0.5", lw=1)
        ax.broken_barh(
            [(b["start_s"] * 1e3, max(b["allreduce_s"], 0) * 1e3)],
            (0.2, 0.8),
            color="tab:orange" if b["bucket"] % 2 == 0 else "tab:red",
        )
    ax.set_yticks([0.6, 1.15, 2.0], ["all-reduce\n(buckets)", "waiting", "compute"])
    ax.set_xlabel("time in the step (ms)")
    ax.axvline(o["step_time_s"] * 1e3, color="k", lw=1, ls="--")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(
        f"{o['workload']} on {o['world_size']:,} ranks of {o['topology']}\n"
        f"step {ms(o['step_time_s'])}, exposed {ms(o['exposed_comm_s'])}, hidden "
        f"{ms(o['hidden_comm_s'])}; {len(o['buckets'])} buckets",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=plots.DPI)
    return path


def step_sweep_plot(path: str, rows: list[dict]) -> str:
    """Scaling efficiency (against one GPU) and samples/s against the rank count."""
    fig = plots.figure_class()(figsize=(9, 6))
    eff_ax, rate_ax = fig.subplots(2, 1, sharex=True)
    for label in dict.fromkeys(r["collectives"] for r in rows):
        mine = [r for r in rows if r["collectives"] == label]
        ranks = [r["world_size"] for r in mine]
        eff_ax.plot(ranks, [100 * r["scaling_efficiency"] for r in mine], marker="o", label=label)
        rate_ax.plot(ranks, [r["samples_per_s"] for r in mine], marker="o", label=label)
    eff_ax.set_ylabel("scaling efficiency (%)\nagainst one GPU")
    eff_ax.set_ylim(0, 105)
    rate_ax.set_ylabel("samples/s")
    rate_ax.set_yscale("log")
    rate_ax.set_xscale("log", base=2)
    sizes = sorted({r["world_size"] for r in rows})
    rate_ax.set_xticks(sizes, [f"{p:,}" for p in sizes])
    rate_ax.set_xlabel("ranks")
    for ax in (eff_ax, rate_ax):
        ax.grid(True, which="both", alpha=0.3)
    eff_ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{rows[0]['workload']} on {rows[0]['topology']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=plots.DPI)
    return path
