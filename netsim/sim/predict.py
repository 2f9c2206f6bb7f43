"""Predictions on a modelled cluster: one step, a scaling sweep, the replay of a real run,
and their text (and the sweep's plot, with the plot extra).

A prediction is reported with the same keys as a measured run's traffic summary
(`netsim.report.summary`): allreduce_time_s_median, algbw_bytes_per_s, busbw_bytes_per_s,
bytes_sent_per_step_by_rank, per_step_mean_by_rank. So `errors(measured, predicted)` is a
computation, never an eyeballed comparison.
"""

from __future__ import annotations

import numpy as np

from netsim.algorithms import Algorithm
from netsim.errors import InputError
from netsim.report import plots
from netsim.report.text import gbps, ms, nbytes

from . import simulate

COMPARED = ("allreduce_time_s_median", "algbw_bytes_per_s", "busbw_bytes_per_s")


def predict(
    topology,
    algorithm: Algorithm,
    world_size: int,
    nelems: int,
    itemsize: int = 4,
    compute_s=0.0,
    segments=None,
    gamma_s_per_byte: float | None = None,
    channels: int = 1,
) -> dict:
    """One training step: every rank computes (compute_s: one value or one per rank), then
    the all-reduce runs on the topology. The collective's own time starts when the last
    rank arrives, as in measured reports. gamma_s_per_byte: the cost of adding a received
    byte; None: the topology's [compute] reduce_gbyte_per_s (0 without one)."""
    p = world_size
    if not algorithm.scheduled:
        raise InputError(f"{algorithm.label} has no schedule of ours to simulate")
    nodes = topology.node_of_rank(p)
    context = {"node_of_rank": nodes, "segments": segments, "channels": channels}
    schedule = algorithm.schedule(p, nelems, **context)
    compute = np.broadcast_to(np.asarray(compute_s, dtype=float), (p,)).copy()
    sim = simulate.simulate(
        schedule, topology, itemsize, start_s=compute, gamma_s_per_byte=gamma_s_per_byte
    )
    collective_s = float(sim.finish_s.max() - compute.max())
    nbytes = nelems * itemsize
    step_s = float(sim.finish_s.max())
    comm = sim.finish_s - compute
    wait = compute.max() - compute
    out = {
        "world_size": p,
        "algorithm": algorithm.name,
        "buffer_bytes": nbytes,
        "topology": topology.name,
        "allreduce_time_s_median": collective_s,
        "algbw_bytes_per_s": nbytes / collective_s if collective_s > 0 else None,
        "bytes_sent_per_step_by_rank": (
            algorithm.elements_sent(p, nelems, **context) * itemsize
        ).tolist(),
        "per_step_mean_by_rank": {
            "compute_s": compute.tolist(),
            "comm_s": comm.tolist(),
            "wait_s": wait.tolist(),
            "transfer_s": (comm - wait).tolist(),
        },
        "step_time_s": step_s,
        "comm_share": float(np.mean(comm) / step_s) if step_s > 0 else 0.0,
        "closed_form_s": algorithm.time_s(
            topology, p, nbytes, segments=segments, itemsize=itemsize, channels=channels
        ),
    }
    out["busbw_bytes_per_s"] = (
        out["algbw_bytes_per_s"] * 2 * (p - 1) / p if out["algbw_bytes_per_s"] else None
    )
    out.update(_links(topology, sim))
    return out


def _links(topology, sim: simulate.Simulation) -> dict:
    busiest = np.argsort(sim.link_busy_s)[::-1][:5]
    return {
        "bottleneck_link": topology.link_names[sim.bottleneck_link],
        "bottleneck_utilisation": float(sim.utilisation[sim.bottleneck_link]),
        "busiest_links": [
            {
                "link": topology.link_names[i],
                "bytes": float(sim.link_bytes[i]),
                "utilisation": float(sim.utilisation[i]),
            }
            for i in busiest
            if sim.link_bytes[i] > 0
        ],
        "total_link_bytes": float(sim.link_bytes.sum()),
    }


def errors(measured: dict, predicted: dict) -> dict:
    """Relative error of each prediction: predicted / measured - 1."""
    return {
        k: predicted[k] / measured[k] - 1
        for k in COMPARED
        if measured.get(k) and predicted.get(k) is not None
    }


def sweep(
    topology,
    algorithms,
    world_sizes,
    nelems: int,
    itemsize: int = 4,
    compute_s: float = 0.0,
    channels: int = 1,
) -> list[dict]:
    """Weak scaling: the same per-rank compute at every size; efficiency = compute / step time
    (1 when communication costs nothing)."""
    rows = []
    for p in world_sizes:
        for algorithm in algorithms:
            try:
                r = predict(topology, algorithm, p, nelems, itemsize, compute_s, channels=channels)
            except InputError as exc:  # e.g. a hierarchical ring on uneven nodes
                rows.append({"world_size": p, "algorithm": algorithm.name, "error": str(exc)})
                continue
            r["scaling_efficiency"] = compute_s / r["step_time_s"] if r["step_time_s"] > 0 else 1.0
            rows.append(r)
    return rows


def replay(
    config: dict, traffic, topology, algorithm: Algorithm | None = None, max_steps: int = 200
) -> dict:
    """A recorded run on another network: each recorded step's per-rank compute times and the
    run's buffer, through the run's algorithm (or another), on the topology."""
    p = config["world_size"]
    algorithm = algorithm or traffic.algorithm
    if not algorithm.scheduled:
        raise InputError(
            f"the run used {algorithm.label}, whose messages are unknown: choose the "
            f"algorithm to replay it with (--algorithm)"
        )
    itemsize = config["buffer_bytes"] // config["nparams"]
    compute = traffic.table["compute_s"]
    pick = (
        np.linspace(0, len(compute) - 1, min(max_steps, len(compute))).astype(int)
        if len(compute)
        else []
    )
    segments, channels = config.get("segments"), config["config"].get("channels", 1)
    steps = [
        predict(
            topology,
            algorithm,
            p,
            config["nparams"],
            itemsize,
            compute[s],
            segments,
            channels=channels,
        )
        for s in pick
    ]
    if not steps:
        raise InputError("the run has no step recorded on every rank")
    out = dict(steps[len(steps) // 2])
    for key in ("allreduce_time_s_median", "step_time_s"):
        out[key] = float(np.median([s[key] for s in steps]))
    collective_s = out["allreduce_time_s_median"]  # 0 on one rank: nothing to move
    out["algbw_bytes_per_s"] = out["buffer_bytes"] / collective_s if collective_s > 0 else None
    out["busbw_bytes_per_s"] = (
        out["algbw_bytes_per_s"] * 2 * (p - 1) / p if out["algbw_bytes_per_s"] else None
    )
    out["steps_replayed"] = len(steps)
    out["measured_step_time_s"] = float(
        np.median(traffic.times["t_end"].max(axis=1) - traffic.times["t_start"].min(axis=1))
    )
    return out


# --- text ------------------------------------------------------------------------


def prediction_text(o: dict) -> str:
    closed = "" if o["closed_form_s"] is None else f" (closed form {ms(o['closed_form_s'])})"
    lines = [
        f"{o['algorithm']} all-reduce of {nbytes(o['buffer_bytes'])} on {o['world_size']} ranks of "
        f'"{o["topology"]}"',
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


def sweep_text(topo, rows: list[dict], args) -> str:
    head = (
        f'weak scaling on "{topo.name}": {args.params:,} parameters ({args.dtype}), '
        f"{args.compute_ms:g} ms compute per step"
    )
    lines = [
        head,
        f"{'ranks':>6}  {'algorithm':<18} {'all-reduce':>11} {'step':>11} {'comm':>6} "
        f"{'efficiency':>10} {'busbw':>11}  bottleneck",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['world_size']:>6}  {r['algorithm']:<18} {r['error']}")
            continue
        lines.append(
            f"{r['world_size']:>6}  {r['algorithm']:<18} {ms(r['allreduce_time_s_median']):>11} "
            f"{ms(r['step_time_s']):>11} {r['comm_share']:>6.0%} {r['scaling_efficiency']:>10.0%} "
            f"{gbps(r['busbw_bytes_per_s']):>11}  {r['bottleneck_link']}"
        )
    return "\n".join(lines)


def replay_text(o: dict) -> str:
    """pred/meas-1 is the prediction's error when the topology models the machine the run was
    measured on (see calibrate); on another cluster it is how much faster or slower it would be."""
    m, e = o["measured"], o["errors"]
    lines = [
        f"replay of {o['steps_replayed']} recorded steps: {o['algorithm']} all-reduce of "
        f'{nbytes(o["buffer_bytes"])} on {o["world_size"]} ranks of "{o["topology"]}"',
        f"  {'':<22} {'predicted':>12} {'measured':>12} {'pred/meas-1':>12}",
    ]
    for key, label, fmt in (
        ("allreduce_time_s_median", "all-reduce (median)", ms),
        ("algbw_bytes_per_s", "algbw", gbps),
        ("busbw_bytes_per_s", "busbw", gbps),
    ):
        err = f"{e[key]:+.0%}" if key in e else "-"
        lines.append(f"  {label:<22} {fmt(o[key]):>12} {fmt(m.get(key)):>12} {err:>12}")
    lines.append(
        f"  step time (median): predicted {ms(o['step_time_s'])}, measured "
        f"{ms(o['measured_step_time_s'])}"
    )
    lines.append(_bottleneck(o))
    return "\n".join(lines)


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
