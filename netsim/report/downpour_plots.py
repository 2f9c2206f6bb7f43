"""PNG plots of an asynchronous (Downpour SGD) run, from the numbers netsim.report.downpour
reads back:

    plot_staleness.png  how stale the pushes were: the histogram of staleness (updates the
                        shard took since the pushing replica fetched it), its mean and
                        maximum marked, and the mean per replica beside it
    plot_incast.png     the servers' incast over time: the bytes every server took in
                        (pushes) and sent out (fetch replies) per bin of time, and the
                        share of each bin it spent applying and answering them

matplotlib as in plots.py: optional, bare Figure objects, no pyplot.
"""

from __future__ import annotations

import os

import numpy as np

from netsim.record import serverfile

from . import downpour
from .plots import DPI, byte_unit, figure_class

BINS = 50  # about this many bins of time over the run


def write_plots(out_dir: str, config: dict, d: downpour.Downpour) -> list[str]:
    """Writes the PNGs into out_dir (usually the run directory) and returns their paths."""
    figure = figure_class()
    os.makedirs(out_dir, exist_ok=True)
    head = headline(config, d)
    figures = {
        "plot_staleness.png": staleness_figure(figure, head, d),
        "plot_incast.png": incast_figure(figure, head, d),
    }
    for name, fig in figures.items():
        fig.savefig(os.path.join(out_dir, name), dpi=DPI)
    return [os.path.join(out_dir, name) for name in figures]


def headline(config: dict, d: downpour.Downpour) -> str:
    r, s = d.layout["replicas"], len(d.layout["servers"])
    unit, per_unit = byte_unit(config["buffer_bytes"])
    return (
        f"Downpour SGD, {r} replica{'s' * (r > 1)} and {s} server{'s' * (s > 1)}, "
        f"{config['buffer_bytes'] / per_unit:,.1f} {unit}; fetch every "
        f"{d.layout['fetch_every']}, push every {d.layout['push_every']} steps"
    )


def _pushes(d: downpour.Downpour) -> list[np.ndarray]:
    return [ev[ev["kind"] == serverfile.PUSH] for ev in d.events]


def staleness_figure(figure_class, head: str, d: downpour.Downpour):
    pushes = _pushes(d)
    stale = np.concatenate([p["staleness"] for p in pushes]) if pushes else np.zeros(0, int)
    r = d.layout["replicas"]
    fig = figure_class(figsize=(10, 4.5), layout="constrained")
    hist, per_replica = fig.subplots(1, 2, width_ratios=[3, 2])
    fig.suptitle(f"Staleness of the pushes: {head}", fontsize="medium")
    if len(stale):
        values, counts = np.unique(stale, return_counts=True)
        hist.bar(values, counts, width=0.9 if len(values) < 60 else 1.0, color="#3b75af")
        mean = float(stale.mean())
        hist.axvline(mean, color="#d1495b", lw=1.5, label=f"mean {mean:.2f}")
        hist.axvline(stale.max(), color="black", lw=1, ls="--", label=f"max {int(stale.max())}")
        hist.legend(fontsize="small")
        hist.set_title(f"{len(stale):,} pushes", fontsize="small", loc="left")
    else:
        hist.set_title("no push was applied", fontsize="small", loc="left")
    hist.set_xlabel("staleness (updates its shard took since the replica fetched it)")
    hist.set_ylabel("pushes")
    hist.xaxis.get_major_locator().set_params(integer=True)
    hist.grid(axis="y", alpha=0.3)
    means = [
        float(np.mean(np.concatenate([p["staleness"][p["replica"] == k] for p in pushes])))
        if any((p["replica"] == k).any() for p in pushes)
        else np.nan
        for k in range(r)
    ]
    per_replica.bar(np.arange(r), means, color="#4c9f70", width=0.8 if r <= 32 else 1.0)
    per_replica.set_xlabel("replica (rank)")
    per_replica.set_ylabel("mean staleness of its pushes")
    if r <= 32:
        per_replica.set_xticks(np.arange(r))
    per_replica.grid(axis="y", alpha=0.3)
    return fig


def incast(d: downpour.Downpour, bins: int = BINS) -> dict:
    """The servers' load per bin of time, on rank 0's clock from the first event: `t_s` (bin
    starts), and per server (rank order of layout["servers"]) `in_bytes` (pushes received),
    `out_bytes` (fetch replies sent), `busy` (share of the bin spent serving), `pushes`."""
    lay, bounds = d.layout, d.layout["shard_bounds"]
    times = [
        (ev["t_recv_ns"] / 1e9 + d.offsets[rank], ev["t_done_ns"] / 1e9 + d.offsets[rank])
        for rank, ev in zip(lay["servers"], d.events)
    ]
    starts = [t0 for t0, _ in times if len(t0)]
    if not starts:
        return {"t_s": np.zeros(0), "bin_s": 0.0, "servers": []}
    first = min(t.min() for t in starts)
    last = max(t1.max() for _, t1 in times if len(t1))
    width = max((last - first) / bins, 1e-6)
    n = int(np.ceil((last - first) / width)) or 1
    edges = first + width * np.arange(n + 1)
    out = []
    for s, (ev, (t0, t1)) in enumerate(zip(d.events, times)):
        shard = (bounds[s + 1] - bounds[s]) * d.itemsize
        push = ev["kind"] == serverfile.PUSH
        which = np.clip(((t0 - first) / width).astype(int), 0, n - 1)
        pushes = np.bincount(which[push], minlength=n)
        fetches = np.bincount(which[~push], minlength=n)
        busy = np.zeros(n)
        for a, b in zip(t0, t1):  # the time serving, split over the bins it spans
            busy += np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None)
        out.append(
            {
                "rank": lay["servers"][s],
                "in_bytes": pushes * shard,
                "out_bytes": fetches * shard,
                "busy": busy / width,
                "pushes": pushes,
            }
        )
    return {"t_s": edges[:-1] - first, "bin_s": width, "servers": out}


def incast_figure(figure_class, head: str, d: downpour.Downpour):
    load = incast(d)
    fig = figure_class(figsize=(10, 6), layout="constrained")
    rate, busy = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    fig.suptitle(f"The servers' incast over time: {head}", fontsize="medium")
    peak = max((float(s["in_bytes"].max()) for s in load["servers"]), default=0.0)
    bin_s = load["bin_s"] or 1.0
    unit, per_unit = byte_unit(peak / bin_s)
    x = load["t_s"] + bin_s / 2
    for s in load["servers"]:
        who = f"server rank {s['rank']}"
        (line,) = rate.plot(x, s["in_bytes"] / bin_s / per_unit, lw=1.5, ds="steps-mid",
                            label=f"{who}: in (pushes)")  # fmt: skip
        rate.plot(x, s["out_bytes"] / bin_s / per_unit, lw=1, ls="--", ds="steps-mid",
                  color=line.get_color(), label=f"{who}: out (fetch replies)")  # fmt: skip
        busy.plot(x, 100 * s["busy"], lw=1.2, ds="steps-mid", color=line.get_color())
    r = d.layout["replicas"]
    rate.set_title(
        f"{r} replicas into {len(load['servers'])} server(s); bins of "
        f"{load['bin_s'] * 1e3:,.1f} ms",
        fontsize="small",
        loc="left",
    )
    rate.set_ylabel(f"{unit}/s")
    rate.set_ylim(bottom=0)
    rate.grid(alpha=0.3)
    if load["servers"]:
        rate.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    busy.set_ylabel("server busy (%)")
    busy.set_ylim(0, 105)
    busy.set_xlabel("time since the first server event (s)")
    busy.grid(alpha=0.3)
    return fig
