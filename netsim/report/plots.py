"""PNG plots of a run's network load, for reading at a glance.

    plot_steps.png       bytes sent and synchronisation stall per step, one line per rank
    plot_time_split.png  mean step time of each rank split into compute / transfer / stall
    plot_links.png       bytes over the run between every pair of ranks (ring: one diagonal);
                         not written when no message was seen (MPI_Allreduce, one rank)

matplotlib is optional (the `plot` extra), so it is imported only when plots are asked for.
We draw on bare `matplotlib.figure.Figure` objects, never pyplot (matplotlib's advice for
servers): they render to PNG through Agg, open no window, are freed with their last reference,
and leave the backend of a notebook or program that calls us as it was.
"""

from __future__ import annotations

import os

import numpy as np

from netsim.errors import InputError

from .traffic import Traffic

DPI = 120
# the three parts of a step, in the order they are stacked: table column, legend, colour
PARTS = (
    ("compute_s", "compute", "#4c9f70"),
    ("transfer_s", "transfer (comm - stall)", "#3b75af"),
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
        "plot_steps.png": _steps_figure(figure, head, traffic),
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


def _steps_figure(figure_class, head: str, traffic: Traffic):
    panels = 2 if traffic.observable else 1
    # the byte count of a fixed schedule rarely moves; the stall is the story, so it gets more room
    fig = figure_class(figsize=(9, 6 if panels == 2 else 4), layout="constrained")
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False, height_ratios=[1, 2][-panels:])[:, 0]
    fig.suptitle(f"Traffic and stall per step: {head}")
    if traffic.observable:
        sent = traffic.table["bytes_sent"]
        unit, per_unit = byte_unit(np.nanmax(sent, initial=0))
        _per_rank_lines(axes[0], traffic, sent / per_unit, unit)
        axes[0].set_ylabel(f"bytes sent per step ({unit})")
        # from zero, with headroom: a nearly constant count must not sit on the frame
        axes[0].set_ylim(0, 1.15 * np.nanmax(sent / per_unit, initial=1))
    _per_rank_lines(axes[-1], traffic, traffic.table["wait_s"] * 1e3, "ms")
    axes[-1].set_ylabel("synchronisation stall (ms)")
    axes[-1].set_xlabel("training step")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
    axes[-1].set_title(_stall_note(traffic), fontsize="small", loc="left")
    return fig


def _stall_note(traffic: Traffic) -> str:
    label = traffic.algorithm.label
    note = (
        ""
        if traffic.observable
        else f"bytes not observable inside {label} (--allreduce ring counts them)\n"
    )
    steps = len(traffic.steps)
    # traffic.py charges every step's stall to the rank that entered the collective last
    caused_s = np.nansum(traffic.table["caused_wait_s"], axis=0)
    if not steps or not caused_s.any():
        return (
            note + "stall: time spent waiting for ranks that reach the all-reduce later; none seen"
        )
    worst = int(caused_s.argmax())
    last_share = np.mean(traffic.times["t_comm"].argmax(axis=1) == worst)
    return note + (
        "stall: waiting for ranks that reach the all-reduce later; most waited for: rank "
        f"{worst}, last in {last_share:.0%} of steps, {caused_s[worst] / steps * 1e3:,.2f} ms of "
        "stall per step"
    )


def _per_rank_lines(ax, traffic: Traffic, values, unit: str) -> None:
    steps, p = traffic.steps, traffic.world_size
    # equal on every rank (the ring's byte count): p lines would hide behind one another. Within
    # 0.1%, because a buffer that p does not divide gives chunks one element apart.
    if (
        p > 1
        and len(steps)
        and np.allclose(values, values[:, :1], rtol=1e-3, atol=0, equal_nan=True)
    ):
        ax.plot(
            steps,
            values[:, 0],
            color="black",
            label=f"every rank: {np.nanmean(values):,.1f} {unit}",
        )
    elif p <= LEGEND_RANKS:
        for rank in range(p):
            ax.plot(steps, values[:, rank], lw=1.2, label=_rank_label(traffic, rank))
    elif len(steps):
        ax.fill_between(
            steps,
            np.nanmin(values, axis=1),
            np.nanmax(values, axis=1),
            alpha=0.3,
            label=f"min-max over {p} ranks",
        )
        ax.plot(steps, np.nanmedian(values, axis=1), color="black", lw=1, label="median rank")
    ax.grid(alpha=0.3)
    if len(steps):
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
