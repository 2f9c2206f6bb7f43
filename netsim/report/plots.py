"""PNG plots of a run's network load, for reading at a glance.

    plot_steps.png       synchronisation stall per step: each rank's median over bins of
                         steps in a band of the ranks' 10th-90th percentiles, the straggler
                         (the rank the others waited for) marked; bytes sent per step
                         beside it only where they vary from step to step (else one line
                         of text gives them)
    plot_time_split.png  mean step time of each rank split into compute / transfer / stall
    plot_links.png       bytes over the run between every pair of ranks (ring: one diagonal);
                         not written when no message was seen (MPI_Allreduce, one rank)

matplotlib is optional (the `plot` extra), so it is imported only when plots are asked for.
We draw on bare `matplotlib.figure.Figure` objects, never pyplot (matplotlib's advice for
servers): they render to PNG through Agg, open no window, are freed with their last reference,
and leave the backend of a notebook or program that calls us as it was. compare_figure is
`netsim compare --plot`'s. (Past 300 lines: every figure of a synchronous run and of
compare, sharing one figure class, byte units, colours and straggler, in one place.)
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from netsim.errors import InputError

from .traffic import Traffic

DPI = 120
# the three parts of a step, in the order they are stacked: table column, legend, colour
PARTS = (
    ("compute_s", "compute", "#4c9f70"),
    ("transfer_s", "transfer (exposed comm - stall)", "#3b75af"),  # exposed_s - wait_s
    ("wait_s", "synchronisation stall", "#d1495b"),
)
LEGEND_RANKS = 8  # above this many ranks, per-rank lines become a median and a min-max band


class PlotsUnavailable(InputError):
    """matplotlib is not installed."""


def write_plots(out_dir: str, config: dict, traffic: Traffic) -> list[str]:
    """Writes the PNGs into out_dir (usually the run directory) and returns their paths."""
    figure = figure_class()
    os.makedirs(out_dir, exist_ok=True)
    head = headline(config, traffic)
    figures = {
        "plot_steps.png": steps_figure(figure, head, traffic),
        "plot_time_split.png": _time_split_figure(figure, head, traffic),
    }
    # MPI_Allreduce hides its messages, and one rank (or no step) sends none: no matrix to draw
    if traffic.observable and traffic.link_matrix().any():
        figures["plot_links.png"] = _links_figure(figure, head, traffic)
    for name, fig in figures.items():
        fig.savefig(os.path.join(out_dir, name), dpi=DPI)
    return [os.path.join(out_dir, name) for name in figures]


def figure_class():
    try:
        import matplotlib  # noqa: F401  (imported first: a missing matplotlib fails here)
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotsUnavailable(
            "plots need matplotlib: pip install 'allreduce_train[plot]'"
        ) from None
    return Figure


def headline(config: dict, traffic: Traffic) -> str:
    p, nodes, name = traffic.world_size, traffic.nodes, traffic.algorithm.label
    unit, per_unit = byte_unit(config["buffer_bytes"])
    text = (
        f"{p} rank{'s' * (p > 1)}, {nodes} node{'s' * (nodes > 1)}, {name} of "
        f"{config['buffer_bytes'] / per_unit:,.1f} {unit}, {len(traffic.steps)} steps"
    )
    return text if traffic.complete else text + " (incomplete run)"


def byte_unit(max_bytes: float) -> tuple[str, int]:
    """The largest binary unit in which max_bytes is at least 1, so axes read 1-1023."""
    for power, unit in enumerate(("B", "KiB", "MiB", "GiB")):
        if max_bytes < 1024 ** (power + 1):
            return unit, 1024**power
    return "TiB", 1024**4


def _rank_label(traffic: Traffic, rank: int) -> str:
    return (
        f"rank {rank} (node {traffic.node_of_rank[rank]})" if traffic.nodes > 1 else f"rank {rank}"
    )


# --- per step ---------------------------------------------------------------------------

BINS = 30  # about this many points per line: 440 raw steps of 4 ranks are a thicket
STRAGGLER = "#d1495b"


def steps_figure(figure_class, head: str, traffic: Traffic):
    """The stall per step, binned, the straggler marked; the bytes per step on a panel of
    their own only when some rank's count varies from step to step (a schedule's count is
    the same every step: a flat line says less than the sentence that replaces it)."""
    sent = traffic.table.get("bytes_sent") if traffic.observable else None
    vary = sent is not None and len(traffic.steps) > 1 and not _constant_per_rank(sent)
    panels = 2 if vary else 1
    fig = figure_class(figsize=(9, 6 if panels == 2 else 4.5), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False, height_ratios=[1, 2][-panels:])[:, 0]
    fig.suptitle(f"Synchronisation stall per step: {head}")
    if vary:
        unit, per_unit = byte_unit(np.nanmax(sent, initial=0))
        _binned_lines(axes[0], traffic, sent / per_unit, unit, straggler=None)
        axes[0].set_ylabel(f"bytes sent per step ({unit})")
        axes[0].set_ylim(0, 1.15 * np.nanmax(sent / per_unit, initial=1))
    straggler = _straggler(traffic)
    _binned_lines(axes[-1], traffic, traffic.table["wait_s"] * 1e3, "ms", straggler)
    axes[-1].set_ylabel("synchronisation stall (ms)")
    axes[-1].set_xlabel("training step")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
    note = _stall_note(traffic)
    if sent is not None and not vary:
        note = f"{_bytes_note(traffic, sent)}\n{note}"
    axes[-1].set_title(note, fontsize="small", loc="left")
    return fig


def _constant_per_rank(values) -> bool:
    """Each rank's value the same every step, within 0.1%."""
    return bool(np.allclose(values, values[:1], rtol=1e-3, atol=0, equal_nan=True))


def _bytes_note(traffic: Traffic, sent) -> str:
    """The bytes of a count that does not vary from step to step, as words."""
    if not len(traffic.steps):
        return "bytes sent per step: no step recorded"
    per_rank = sent[0]
    unit, per_unit = byte_unit(np.nanmax(per_rank, initial=0))
    if np.allclose(per_rank, per_rank[:1], rtol=1e-3, atol=0):
        return (
            f"bytes sent per step: {per_rank[0] / per_unit:,.1f} {unit} by every rank, every "
            "step (the plot is omitted: nothing varies)"
        )
    if traffic.world_size <= 8:
        each = ", ".join(f"r{r} {b / per_unit:,.1f} {unit}" for r, b in enumerate(per_rank))
    else:
        each = f"{np.nanmin(per_rank) / per_unit:,.1f}-{np.nanmax(per_rank) / per_unit:,.1f} {unit}"
    return f"bytes sent per step, the same every step: {each} (plot_links.png: per link)"


def _straggler(traffic: Traffic) -> int | None:
    """The rank the others waited for most (traffic.py charges each step's stall to the
    rank that entered the all-reduce last), or None when nobody waited."""
    if not len(traffic.steps) or "caused_wait_s" not in traffic.table:
        return None
    caused_s = np.nansum(traffic.table["caused_wait_s"], axis=0)
    return int(caused_s.argmax()) if caused_s.any() else None


def _stall_note(traffic: Traffic) -> str:
    label = traffic.algorithm.label
    note = (
        ""
        if traffic.observable
        else f"bytes not observable inside {label} (--allreduce ring counts them)\n"
    )
    steps = len(traffic.steps)
    worst = _straggler(traffic)
    if worst is None:
        return (
            note + "stall: time spent waiting for ranks that reach the all-reduce later; none seen"
        )
    caused_s = np.nansum(traffic.table["caused_wait_s"], axis=0)
    last_share = np.mean(traffic.times["t_comm"].argmax(axis=1) == worst)
    return note + (
        "stall: waiting for ranks that reach the all-reduce later; most waited for: rank "
        f"{worst}, last in {last_share:.0%} of steps, {caused_s[worst] / steps * 1e3:,.2f} ms of "
        "stall per step"
    )


def bins(steps, size: int | None = None) -> list[slice]:
    """Consecutive runs of `size` steps (about BINS of them), the last one shorter."""
    n = len(steps)
    size = size or max(1, round(n / BINS))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _binned_lines(ax, traffic: Traffic, values, unit: str, straggler: int | None) -> None:
    """Per bin of steps: a band from the 10th to the 90th percentile of every rank's steps
    in it, each rank's median as a line (above LEGEND_RANKS ranks, the median rank's), and
    the straggler's median in red, labelled."""
    steps, p = traffic.steps, traffic.world_size
    if not len(steps):
        ax.grid(alpha=0.3)
        return
    parts = bins(steps)
    size = parts[0].stop - parts[0].start
    x = np.array([steps[b].mean() for b in parts])
    with warnings.catch_warnings():  # a bin where a rank recorded nothing is NaN, as it is
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.array([np.nanpercentile(values[b], [10, 90]) for b in parts]).T
        median = np.array([np.nanmedian(values[b], axis=0) for b in parts])  # (bins, p)
    what = f"median of each {size} steps" if size > 1 else "each step"
    if p > 1:
        ax.fill_between(x, low, high, color="#999999", alpha=0.25, lw=0,
                        label="10th-90th percentile, all ranks" + (f", {size} steps" if size > 1
                                                                  else ""))  # fmt: skip
    if p <= LEGEND_RANKS:
        for rank in range(p):
            if rank != straggler:
                ax.plot(x, median[:, rank], lw=1, label=f"{_rank_label(traffic, rank)}, {what}")
    else:
        others = [r for r in range(p) if r != straggler]
        ax.plot(x, np.nanmedian(median[:, others], axis=1), color="black", lw=1.2,
                label=f"median rank, {what}")  # fmt: skip
    if straggler is not None:
        label = f"{_rank_label(traffic, straggler)}: the straggler, the others wait for it"
        ax.plot(x, median[:, straggler], color=STRAGGLER, lw=2.5, label=label)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)


# --- time split -------------------------------------------------------------------------


def _time_split_figure(figure_class, head: str, traffic: Traffic):
    p = traffic.world_size
    fig = figure_class(figsize=(9, min(2 + 0.35 * p, 10)), layout="constrained")
    ax = fig.add_subplot()
    left_ms = np.zeros(p)
    for column, label, color in PARTS:
        part_ms = _mean_per_rank(traffic, column) * 1e3
        # above 32 ranks bars touch and lose their edges, which would merge into a dark block
        ax.barh(
            np.arange(p),
            part_ms,
            left=left_ms,
            height=0.8 if p <= 32 else 1.0,
            color=color,
            label=label,
            edgecolor="white" if p <= 32 else "none",
            linewidth=0.5,
        )
        left_ms += part_ms
    if p <= 32:
        ax.set_yticks(np.arange(p), [_rank_label(traffic, rank) for rank in range(p)])
        for rank, total_ms in enumerate(left_ms):
            ax.annotate(
                f"{total_ms:.2f} ms",
                (total_ms, rank),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize="small",
            )
        ax.margins(x=0.12)  # room for the totals written after each bar
    else:
        ax.set_ylabel("rank")
    ax.invert_yaxis()  # rank 0 on top, as in the text report
    ax.set_xlabel("mean time per step (ms)")
    ax.set_title(f"Where each rank's step time goes: {head}", fontsize="medium")
    fig.legend(loc="outside lower center", ncols=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _mean_per_rank(traffic: Traffic, name: str) -> np.ndarray:
    values = traffic.table[name]
    return np.nanmean(values, axis=0) if len(values) else np.zeros(traffic.world_size)


# --- links ------------------------------------------------------------------------------


def _links_figure(figure_class, head: str, traffic: Traffic):
    matrix, p = traffic.link_matrix(), traffic.world_size
    unit, per_unit = byte_unit(matrix.max(initial=0))
    fig = figure_class(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    # pairs that never talk are left blank, so "no link" cannot be mistaken for "little traffic"
    shown = np.ma.masked_equal(matrix, 0) / per_unit
    image = ax.imshow(shown, cmap="viridis", vmin=0, interpolation="nearest")
    ax.set_facecolor("#f0f0f0")
    fig.colorbar(image, ax=ax, shrink=0.85, label=f"bytes sent over the run ({unit})")
    _node_boundaries(ax, traffic.node_of_rank)
    if p <= 8:
        _annotate_cells(ax, shown, image, unit)
    if p <= 32:
        ax.set(xticks=np.arange(p), yticks=np.arange(p))
    ax.set(xlabel="receiver rank", ylabel="sender rank")
    ax.set_title(f"Link load: {_links_caption(traffic, matrix)}\n{head}", fontsize="medium")
    return fig


def _node_boundaries(ax, node_of_rank) -> None:
    # in rank order; with node-major placement each block on the diagonal is one node's traffic
    for edge in np.flatnonzero(np.diff(node_of_rank)) + 0.5:
        ax.axhline(edge, color="red", lw=1.5)
        ax.axvline(edge, color="red", lw=1.5)


def _annotate_cells(ax, shown, image, unit: str) -> None:
    for (src, dst), value in np.ndenumerate(shown.filled(0)):
        if value:
            dark = image.norm(value) < 0.6  # viridis is dark at the bottom: write in white there
            ax.text(
                dst,
                src,
                f"{value:,.1f}\n{unit}",
                ha="center",
                va="center",
                fontsize="small",
                color="white" if dark else "black",
            )


def _links_caption(traffic: Traffic, matrix) -> str:
    total_bytes = int(matrix.sum())
    unit, per_unit = byte_unit(total_bytes)
    caption = f"{total_bytes / per_unit:,.1f} {unit} in all"
    if traffic.nodes > 1 and total_bytes:
        _, inter_bytes = traffic.intra_inter_bytes()
        caption += f", {inter_bytes / total_bytes:.0%} between nodes (red lines: node boundaries)"
    return caption


# --- compare ----------------------------------------------------------------------------


def compare_figure(rows: list[dict]):
    """`netsim compare --plot`: test accuracy against running time (and against the bytes
    the all-reduces moved, where every run recorded them), one line per run; the target
    accuracy, when given, a labelled dashed line, and where each run first reached it a
    hollow marker."""
    figure = figure_class()
    with_bytes = all(p["bytes"] is not None for r in rows for p in r["curve"])
    fig = figure(figsize=(11 if with_bytes else 7, 4.8), layout="constrained")
    axes = fig.subplots(1, 2 if with_bytes else 1, squeeze=False)[0]
    target = rows[0].get("target") if rows else None
    for r in rows:
        acc = [p["test_accuracy"] for p in r["curve"]]
        (line,) = axes[0].plot([p["wall_s"] for p in r["curve"]], acc, marker="o", ms=3,
                               label=r["label"])  # fmt: skip
        if with_bytes:
            axes[1].plot([p["bytes"] / 2**20 for p in r["curve"]], acc, marker="o", ms=3,
                         color=line.get_color())  # fmt: skip
        reached = r.get("to_target")
        if reached is not None and target is not None:
            axes[0].plot(reached["wall_s"], target, marker="o", ms=9, mfc="none",
                         color=line.get_color())  # fmt: skip
            if with_bytes and reached.get("bytes") is not None:
                axes[1].plot(reached["bytes"] / 2**20, target, marker="o", ms=9, mfc="none",
                             color=line.get_color())  # fmt: skip
    axes[0].set_xlabel("running time (s)")
    if with_bytes:
        axes[1].set_xlabel("bytes moved by the all-reduce (MiB, all ranks)")
    for ax in axes:
        ax.set_ylabel("test accuracy")
        ax.grid(True, alpha=0.3)
        if target is not None:
            ax.axhline(target, color="grey", linestyle="--", linewidth=1,
                       label=f"target accuracy {target:g}")  # fmt: skip
    axes[0].legend(fontsize=8, loc="lower right")
    if with_bytes and target is not None:
        axes[1].legend(fontsize=8, loc="lower right")
    against = "running time and bytes moved" if with_bytes else "running time"
    fig.suptitle(
        f"Test accuracy against {against}"
        + (f"; circles: where each run first reached {target:g}" if target is not None else "")
    )
    return fig
