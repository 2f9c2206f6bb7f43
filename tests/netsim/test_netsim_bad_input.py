"""python -m netsim, in process: every bad option value, topology file and output path is one
line on stderr and exit code 2, before any work is done, and leaves no file behind."""

import os
import time

import pytest

from netsim import __main__ as cli
from netsim.cluster import topology
from netsim.sim import predict_text

PREDICT = ["predict", "--topology", "dgx-h100", "--params", "10"]
SWEEP = ["sweep", "--topology", "dgx-h100", "--params", "10", "--ranks", "8"]
NCCL = ["nccl", "--topology", "dgx-h100", "--sizes", "8"]
CALIBRATE = ["calibrate", "--from-measurements", "/nonexistent.json"]


def one_line_error(capsys, argv, before_any_output=True) -> str:
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and err.startswith("netsim: error: "), err
    assert out == "" or not before_any_output, out
    return err


@pytest.mark.parametrize(
    "argv, words",
    [
        (PREDICT + ["--ranks", "0"], "--ranks must be in 1..256 (the topology's GPUs), got 0"),
        (PREDICT + ["--ranks", "-3"], "--ranks must be in 1..256"),
        (PREDICT + ["--ranks", "257"], "--ranks must be in 1..256"),
        (NCCL + ["--ranks", "1"], "--ranks must be in 2..256"),
        (PREDICT + ["--compute-ms", "-1"], "--compute-ms: must be a finite number >= 0, got -1"),
        (PREDICT + ["--compute-ms", "nan"], "--compute-ms: must be a finite number >= 0"),
        (SWEEP + ["--compute-ms", "inf"], "--compute-ms: must be a finite number >= 0"),
        (SWEEP + ["--compute-ms", "ten"], "--compute-ms: not a number: 'ten'"),
        (PREDICT[:-1] + ["0"], "--params: must be in 1..1,099,511,627,776, got 0"),
        (SWEEP[:4] + ["-10"], "--params: must be in 1..1,099,511,627,776, got -10"),
        (PREDICT[:-1] + [str(10**20)], "--params: must be in 1..1,099,511,627,776"),
        (PREDICT[:-1] + ["1.5"], "--params: not a whole number: '1.5'"),  # 1e6 is a count
        (SWEEP + ["--chunks", "0"], "--chunks: must be in 1..64, got 0"),
        (PREDICT + ["--chunks", "100000000"], "--chunks: must be in 1..64"),
        (PREDICT + ["--channels", "100000"], "--channels: must be in 1..64"),
        (NCCL + ["--channels", "1000000000"], "--channels: must be in 1..64"),
        (NCCL + ["--gpus-per-thread", "0"], "--gpus-per-thread: must be at least 1, got 0"),
        (NCCL[:-1] + ["2048G"], "--sizes: sizes must be positive multiples of 4 bytes up to"),
        (SWEEP[:-1] + [""], "--ranks wants comma-separated integers, got ''"),
        (CALIBRATE + ["--timeout-s", "nan"], "--timeout-s: must be a finite number > 0"),
        (CALIBRATE + ["--timeout-s", "-1"], "--timeout-s: must be a finite number > 0"),
        (CALIBRATE + ["--timeout-s", "1e300"], "and <= 86400, got 1e300"),
        (CALIBRATE + ["--rounds", "0"], "--rounds: must be at least 1, got 0"),
        (CALIBRATE + ["--passes", "-2"], "--passes: must be at least 1, got -2"),
    ],
)
def test_a_bad_option_value_is_one_line_naming_the_option(capsys, argv, words):
    assert words in one_line_error(capsys, argv)


def test_the_options_bounds_are_reachable(capsys):
    argv = PREDICT + ["--ranks", "8", "--compute-ms", "0", "--channels", "64", "--chunks", "64"]
    assert cli.main(argv) == 0
    assert cli.main(PREDICT[:-1] + [str(2**40), "--ranks", "2", "--json"]) == 0
    assert '"buffer_bytes": 4398046511104' in capsys.readouterr().out


PRESET = (topology.PRESETS_DIR / "dgx-h100.toml").read_text()


@pytest.mark.parametrize(
    "old, new, words",
    [
        ("nodes = 32", "nodes = 100000000", "at most 131,072 GPUs"),
        ("gpus_per_node = 8", "gpus_per_node = 1000000000000", "at most 131,072 GPUs"),
        ("nodes = 32", "nodes = 0", "nodes must be a positive integer, got 0"),
        ("nodes = 32", "nodes = -32", "nodes must be a positive integer, got -32"),
        ("nodes = 32", "nodes = 32.5", "nodes must be a positive integer, got 32.5"),
        ("nodes = 32", "nodes = nan", "nodes must be a positive integer, got nan"),
        ("gpus_per_node = 8", 'gpus_per_node = "8"', "gpus_per_node must be a positive integer"),
        ("latency_us = 0.7", "latency_us = nan", "intra_node.latency_us must be a finite number"),
        ("bandwidth_gbit_per_s = 400", "bandwidth_gbit_per_s = -inf", "nic.bandwidth_gbit_per_s"),
        ("[intra_node]", "[intra]", "intra is not a known key (did you mean 'intra_node'?)"),
        ('gpu = "hopper"', "compute = 5", "compute must be a table, got 5"),
        ("bandwidth_gbit_per_s = 3600", "bandwidth_gbit_per_s = 5e-324", "at least 1e-09"),
        ("bandwidth_gbit_per_s = 3600", "bandwidth_gbit_per_s = 1e308", "at most 1e+12"),
        ("latency_us = 1.2", "latency_us = 1" + "0" * 400, "nic.latency_us must be at most"),
        ("oversubscription = 1.0", "oversubscription = 1e300", "network.oversubscription"),
        ("count = 8", 'count = 8\n"a\\u001eb" = 1', r"nic.a\x1eb is not a known key"),
        ("\n[network]", "\n[networks]", "networks is not a known key (did you mean 'network'?)"),
        ("nodes = 32", "", "nodes is missing"),
        ('placement = "block"', "placement = true", "placement must be one of block"),
    ],
)
def test_a_bad_topology_file_is_one_line_naming_the_key(capsys, tmp_path, old, new, words):
    assert old in PRESET
    path = tmp_path / "bad.toml"
    path.write_text(PRESET.replace(old, new, 1))
    start = time.perf_counter()
    err = one_line_error(capsys, ["predict", "--topology", str(path), "--params", "10"])
    assert words in err and str(path) in err
    assert time.perf_counter() - start < 5  # refused, not built and given up on


@pytest.mark.parametrize(
    "option, path, words",
    [
        ("--plot", "/proc/x.png", "--plot: cannot write /proc/x.png"),
        ("--plot", "/nonexistent/dir/x.png", "--plot: no such directory: /nonexistent/dir"),
        ("--plot", "{tmp}/x.pdf", "--plot wants a .png file name"),
        ("--plot", "{tmp}/d.png", "--plot: {tmp}/d.png is a directory"),
    ],
)
def test_sweep_refuses_an_unwritable_plot_before_the_sweep(capsys, tmp_path, option, path, words):
    (tmp_path / "d.png").mkdir()
    path, words = path.format(tmp=tmp_path), words.format(tmp=tmp_path)
    assert words in one_line_error(capsys, SWEEP + [option, path])
    assert [p.name for p in tmp_path.iterdir()] == ["d.png"]


@pytest.mark.parametrize(
    "option, path, words",
    [
        ("--out", "/proc/x.toml", "--out: cannot write /proc/x.toml"),
        ("--out", "/sys/x.toml", "--out: cannot write /sys/x.toml"),
        ("--save-measurements", "/proc/m.json", "--save-measurements: cannot write /proc/m.json"),
    ],
)
def test_calibrate_refuses_an_unwritable_output_before_it_measures(capsys, option, path, words):
    assert words in one_line_error(capsys, CALIBRATE + [option, path])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_directory_is_refused(capsys, tmp_path):
    tmp_path.chmod(0o555)
    try:
        err = one_line_error(capsys, CALIBRATE + ["--out", str(tmp_path / "x.toml")])
    finally:
        tmp_path.chmod(0o755)
    assert f"--out: cannot write {tmp_path / 'x.toml'}: Permission denied" in err


def test_a_write_that_fails_half_way_leaves_no_file(capsys, tmp_path, monkeypatch):
    def disk_full(path, topo, rows):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half a plot")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict_text, "sweep_plot", disk_full)
    png = tmp_path / "sweep.png"
    err = one_line_error(capsys, SWEEP + ["--plot", str(png)], before_any_output=False)
    assert f"--plot: cannot write {png}: No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_a_plot_is_written_whole_under_its_name(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "sweep.png"
    assert cli.main(SWEEP + ["--plot", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["sweep.png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
