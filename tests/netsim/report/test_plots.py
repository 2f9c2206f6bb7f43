"""netsim.report.plots: real runs give valid PNGs of a readable size; MPI_Allreduce, whose messages
are hidden, gets no link plot; without matplotlib the error is one line naming the extra."""

import sys

import numpy as np
import pytest

from netsim import algorithms
from netsim.record import rundir
from netsim.report import plots, traffic

from conftest import train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["plot_steps.png", "plot_time_split.png", "plot_links.png"]


def load(run_dir):
    config, records, summary = rundir.load(str(run_dir))
    return config, traffic.merge(config, records, complete=summary is not None)


def check_png(path):
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC, path
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert 300 <= height <= 2000 and 600 <= width <= 2000, (path, pixels.shape)
    assert pixels.std() > 0.05, f"{path} is (nearly) blank"


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    pytest.importorskip("matplotlib")
    run_dir = tmp_path_factory.mktemp("ring")
    result = train(3, run_dir, "--steps", "6", "--ranks-per-node", "2", "--allreduce", "ring")
    assert result.returncode == 0, result.output
    return run_dir


@pytest.mark.slow
@pytest.mark.mpi
def test_ring_run_gives_three_valid_pngs(ring_run):
    config, merged = load(ring_run)
    paths = plots.write_plots(str(ring_run), config, merged)
    assert paths == [str(ring_run / name) for name in NAMES]
    for path in paths:
        check_png(path)


@pytest.mark.slow
@pytest.mark.mpi
def test_headline_says_what_and_how_much(ring_run):
    config, merged = load(ring_run)
    kib = config["buffer_bytes"] / 1024  # a 100-odd KiB model: the unit is KiB
    assert (
        plots.headline(config, merged)
        == f"3 ranks, 2 nodes, ring all-reduce of {kib:,.1f} KiB, 6 steps"
    )


@pytest.mark.slow
@pytest.mark.mpi
def test_mpi_allreduce_writes_no_link_plot(tmp_path):
    pytest.importorskip("matplotlib")
    result = train(2, tmp_path, "--steps", "4", "--allreduce", "mpi")
    assert result.returncode == 0, result.output
    config, merged = load(tmp_path)
    out = tmp_path / "plots"
    paths = plots.write_plots(str(out), config, merged)
    assert paths == [str(out / name) for name in NAMES[:2]]
    assert not (out / "plot_links.png").exists()
    for path in paths:
        check_png(path)


@pytest.mark.slow
def test_many_ranks_stay_readable(tmp_path):
    """40 ranks on 5 nodes without mpirun: bands instead of 40 lines, thin bars, no labels."""
    pytest.importorskip("matplotlib")
    config, merged = synthetic_traffic(p=40, ranks_per_node=8, steps=5)
    paths = plots.write_plots(str(tmp_path), config, merged)
    assert [p.rsplit("/", 1)[1] for p in paths] == NAMES
    for path in paths:
        check_png(path)


def synthetic_traffic(p, ranks_per_node, steps):
    rng = np.random.default_rng(0)
    wait_s = rng.uniform(0, 5e-3, (steps, p))
    wait_s[:, p - 1] = 0.0  # the last rank is the straggler everyone waits for
    table = {
        "compute_s": np.full((steps, p), 1e-3),
        "transfer_s": np.full((steps, p), 2e-3),
        "wait_s": wait_s,
        "bytes_sent": np.full((steps, p), 4096.0),
        "caused_wait_s": np.zeros((steps, p)),
    }
    table["caused_wait_s"][:, p - 1] = wait_s.sum(axis=1)
    enter = np.zeros((steps, p))
    enter[:, p - 1] = 1.0
    links = np.array([[s, r, (r + 1) % p, 4096, 2] for s in range(steps) for r in range(p)])
    merged = traffic.Traffic(
        p,
        algorithms.get("ring"),
        np.arange(p) // ranks_per_node,
        np.arange(steps),
        [steps] * p,
        True,
        True,
        table,
        links=links,
        times={"t_comm": enter},
    )
    return {"config": {"allreduce": "ring"}, "buffer_bytes": 4096 * p // 2}, merged


def test_without_matplotlib_one_line_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as `import matplotlib` sees it absent
    with pytest.raises(plots.PlotsUnavailable) as caught:
        plots.write_plots(str(tmp_path / "out"), {}, None)
    message = str(caught.value)
    assert "\n" not in message and "pip install 'allreduce_train[plot]'" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "nbytes, unit",
    [
        (0, "B"),
        (1023, "B"),
        (1024, "KiB"),
        (5 * 2**20, "MiB"),
        (2**30 - 1, "MiB"),
        (2**30, "GiB"),
        (2**50, "TiB"),
    ],
)
def test_byte_unit_keeps_numbers_between_1_and_1023(nbytes, unit):
    assert plots.byte_unit(nbytes)[0] == unit
