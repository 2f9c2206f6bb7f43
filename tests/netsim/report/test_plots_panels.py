"""What the plots show, read off the figures (no MPI: synthetic runs): the stall per step
binned with the straggler marked, the bytes panel only where bytes vary, compare's title
and labelled target, and an async run's staleness and incast."""

import numpy as np
import pytest

from netsim import algorithms
from netsim.record import serverfile
from netsim.report import compare, downpour, downpour_plots, plots, traffic

pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(p=4, steps=440, straggler=2, sent=None):
    rng = np.random.default_rng(1)
    wait_s = rng.uniform(0, 20e-3, (steps, p))
    wait_s[:, straggler] = 0.0  # everyone waits for it; it waits for no one
    caused = np.zeros((steps, p))
    caused[:, straggler] = wait_s.sum(axis=1)
    enter = np.zeros((steps, p))
    enter[:, straggler] = 1.0
    table = {
        "compute_s": np.full((steps, p), 1e-3),
        "transfer_s": np.full((steps, p), 2e-3),
        "wait_s": wait_s,
        "bytes_sent": np.full((steps, p), 156_774.0) if sent is None else sent,
        "caused_wait_s": caused,
    }
    links = np.array([[s, r, (r + 1) % p, 4096, 2] for s in range(steps) for r in range(p)])
    return traffic.Traffic(
        p, algorithms.get("ring"), np.zeros(p, int), np.arange(steps), [steps] * p, True, True,
        table, links=links, times={"t_comm": enter},
    )  # fmt: skip


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_the_stall_is_binned_per_rank_with_the_straggler_marked_and_flat_bytes_are_a_sentence():
    fig = plots.steps_figure(Figure, "head", run())
    [ax] = fig.axes  # the bytes never vary: no panel for them
    lines = ax.get_lines()
    assert len(lines) == 4  # one per rank, not 440 points each
    assert all(len(line.get_xdata()) <= plots.BINS + 1 for line in lines)
    labels = legend_texts(ax)
    assert "rank 2: the straggler, the others wait for it" in labels
    assert any(label.startswith("10th-90th percentile, all ranks") for label in labels)
    [red] = [line for line in lines if line.get_label().startswith("rank 2")]
    assert red.get_linewidth() > max(x.get_linewidth() for x in lines if x is not red)
    title = ax.get_title(loc="left")
    assert "bytes sent per step: 153.1 KiB by every rank, every step" in title
    assert "most waited for: rank 2, last in 100% of steps" in title


def test_bytes_get_their_panel_only_when_they_vary_from_step_to_step():
    sent = np.full((100, 3), 1000.0)
    sent[50:, 1] = 3000.0  # rank 1 sends more from step 50
    fig = plots.steps_figure(Figure, "head", run(p=3, steps=100, sent=sent))
    assert [ax.get_ylabel() for ax in fig.axes] == [
        "bytes sent per step (KiB)",
        "synchronisation stall (ms)",
    ]
    tree = np.tile([2048.0, 1024.0, 1024.0], (100, 1))  # per rank, the same every step
    fig = plots.steps_figure(Figure, "head", run(p=3, steps=100, sent=tree))
    [ax] = fig.axes
    assert "the same every step: r0 2.0 KiB, r1 1.0 KiB, r2 1.0 KiB" in ax.get_title("left")


def test_many_ranks_are_a_band_and_a_median_with_the_straggler_apart():
    fig = plots.steps_figure(Figure, "head", run(p=40, steps=50, straggler=39))
    [ax] = fig.axes
    labels = legend_texts(ax)
    assert labels[1:] == ["median rank, median of each 2 steps",
                          "rank 39: the straggler, the others wait for it"]  # fmt: skip


def rows(target=0.9):
    curve = [
        {"step": s, "wall_s": 0.1 * s, "test_accuracy": a, "bytes": 1000 * s}
        for s, a in [(1, 0.5), (2, 0.8), (3, 0.95)]
    ]
    reached = {"step": 3, "wall_s": 0.3, "bytes": 3000}
    return [{"label": "a: p=2 ring", "curve": curve, "target": target, "to_target": reached}]


def test_compare_plots_accuracy_against_time_with_the_target_labelled(tmp_path):
    fig = plots.compare_figure(rows())
    assert fig._suptitle.get_text().startswith("Test accuracy against running time and bytes moved")
    for ax in fig.axes:
        assert "target accuracy 0.9" in legend_texts(ax)
        assert ax.get_ylabel() == "test accuracy"
    compare.plot(str(tmp_path / "c.png"), rows(target=None))
    assert (tmp_path / "c.png").read_bytes()[:8] == PNG_MAGIC


def async_run():
    """2 replicas, 2 servers (shards of 30 and 20 float32), four pushes and two fetches each."""
    layout = {"replicas": 2, "servers": [2, 3], "shard_bounds": [0, 30, 50],
              "fetch_every": 1, "push_every": 1, "steps_by_replica": [2, 2]}  # fmt: skip
    events = []
    for s in range(2):
        ev = np.zeros(6, dtype=serverfile.DTYPE)
        ev["kind"] = [serverfile.FETCH, serverfile.PUSH] * 3
        ev["replica"] = [0, 0, 1, 1, 0, 1]
        ev["staleness"] = [0, 0, 0, 1, 0, 3]
        ev["t_recv_ns"] = np.arange(6) * 10_000_000 + s * 1_000_000
        ev["t_done_ns"] = ev["t_recv_ns"] + 5_000_000
        events.append(ev)
    return downpour.Downpour(layout, 4, np.arange(4), [[], []], events, np.zeros((0, 5), int),
                             np.zeros(4))  # fmt: skip


@pytest.mark.slow
def test_an_async_run_gets_its_staleness_and_its_servers_incast_over_time(tmp_path):
    d = async_run()
    load = downpour_plots.incast(d)
    assert [s["rank"] for s in load["servers"]] == [2, 3]
    assert [int(s["in_bytes"].sum()) for s in load["servers"]] == [3 * 30 * 4, 3 * 20 * 4]
    assert [int(s["out_bytes"].sum()) for s in load["servers"]] == [3 * 30 * 4, 3 * 20 * 4]
    for s in load["servers"]:  # 6 events of 5 ms each, over bins that cover them
        assert np.all((s["busy"] >= 0) & (s["busy"] <= 1 + 1e-9))
        assert s["busy"].sum() * load["bin_s"] == pytest.approx(6 * 5e-3)
    config = {"buffer_bytes": 200}
    fig = downpour_plots.staleness_figure(Figure, "head", d)
    hist = fig.axes[0]
    assert legend_texts(hist) == ["mean 1.33", "max 3"]  # (0 + 1 + 3) / 3 on each server
    assert [int(b.get_height()) for b in hist.patches] == [2, 2, 2]  # staleness 0, 1, 3
    paths = downpour_plots.write_plots(str(tmp_path), config, d)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["plot_staleness.png", "plot_incast.png"]
    for path in paths:
        assert open(path, "rb").read(8) == PNG_MAGIC
