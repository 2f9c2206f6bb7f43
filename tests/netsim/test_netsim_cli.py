"""python -m netsim predict | sweep | replay: figures, JSON, one-line errors for bad input
and tracebacks for bugs. `python -m netsim` itself runs in a subprocess where the entry is
what is tested (the figures, a bug's traceback, runs of ours); the parsing of values and
the one-line refusals run its main() in this process (in_process), the same code less a
Python's start-up."""

import json

import pytest

from netsim import __main__ as cli
from netsim.algorithms import PARAMETER_SERVER
from netsim.cluster import topology

from conftest import Result, mpirun, train


def netsim(*args):
    return mpirun(0, ["-m", "netsim", *args])


@pytest.fixture
def in_process(capsys):
    """netsim's main(ARGS) here, its exit code and what it printed, as a Result."""

    def run(*args):
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err, 0.0)

    return run


def test_predict_prints_simulated_and_closed_form_times():
    result = netsim(
        "predict", "--topology", "single-node-8gpu", "--params", "1000000", "--compute-ms", "2"
    )
    assert result.returncode == 0, result.output
    assert (
        "ring all-reduce of 3.8 MiB on 8 ranks" in result.stdout and "closed form" in result.stdout
    )
    figures = json.loads(
        netsim(
            "predict",
            "--topology",
            "single-node-8gpu",
            "--params",
            "1000000",
            "--algorithm",
            "tree",
            "--ranks",
            "4",
            "--json",
        ).stdout
    )
    assert figures["world_size"] == 4 and figures["algorithm"] == "tree"
    assert figures["allreduce_time_s_median"] == pytest.approx(figures["closed_form_s"], rel=1e-9)


@pytest.mark.slow
def test_sweep_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "sweep.png"
    result = netsim(
        "sweep",
        "--topology",
        "dgx-h100",
        "--params",
        "10000000",
        "--ranks",
        "8,16,64",
        "--algorithms",
        "ring,hierarchical-ring",
        "--compute-ms",
        "10",
        "--plot",
        str(png),
    )
    assert result.returncode == 0, result.output
    lines = [x for x in result.stdout.splitlines() if x.strip().startswith(("8 ", "16 ", "64 "))]
    assert len(lines) == 6
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_sweep_with_json_and_a_plot_keeps_stdout_json(tmp_path):
    """'wrote F.png' went to stdout, after the JSON: the output could not be parsed."""
    pytest.importorskip("matplotlib")
    png = tmp_path / "sweep.png"
    result = netsim("sweep", "--topology", "dgx-h100", "--params", "10M", "--ranks", "8,16",
                    "--algorithms", "ring", "--json", "--plot", str(png))  # fmt: skip
    assert result.returncode == 0, result.output
    assert len(json.loads(result.stdout)) == 2  # valid JSON, one row per rank count
    assert f"wrote {png}" in result.stderr and png.exists()


@pytest.mark.parametrize(
    "text,params", [("25557032", 25557032), ("1e8", 10**8), ("100M", 10**8), ("1.5B", 15 * 10**8)]
)
def test_params_are_written_as_model_sizes_are_quoted(text, params, in_process):
    result = in_process("predict", "--topology", "dgx-h100", "--params", text, "--json")
    assert result.returncode == 0, result.output
    assert json.loads(result.stdout)["buffer_bytes"] == params * 4


@pytest.mark.parametrize("text", ["1.5", "1e-3", "abc", "2.5K7", "inf"])
def test_params_that_are_not_a_whole_count_are_one_line(text, in_process):
    result = in_process("predict", "--topology", "dgx-h100", "--params", text)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("netsim: error: argument --params: ")


@pytest.mark.slow
@pytest.mark.mpi
def test_replay_of_a_recorded_run(tmp_path):
    assert train(2, tmp_path, "--steps", "4").returncode == 0
    result = netsim("replay", str(tmp_path), "--topology", "single-node-8gpu", "--json")
    assert result.returncode == 0, result.output
    out = json.loads(result.stdout)
    assert out["steps_replayed"] == 4 and out["world_size"] == 2
    assert set(out["errors"]) == {
        "allreduce_time_s_median",
        "algbw_bytes_per_s",
        "busbw_bytes_per_s",
    }
    assert out["errors"]["allreduce_time_s_median"] == pytest.approx(
        out["allreduce_time_s_median"] / out["measured"]["allreduce_time_s_median"] - 1
    )
    other = json.loads(
        netsim(
            "replay",
            str(tmp_path),
            "--topology",
            "single-node-8gpu",
            "--algorithm",
            "tree",
            "--json",
        ).stdout
    )
    assert other["algorithm"] == "tree" and other["errors"] == {}  # not what was measured: no error


@pytest.mark.slow
@pytest.mark.mpi
def test_replay_of_an_mpi_allreduce_run_asks_for_the_algorithm(tmp_path):
    assert train(2, tmp_path, "--steps", "3", "--allreduce", "mpi").returncode == 0
    result = netsim("replay", str(tmp_path), "--topology", "single-node-8gpu")
    assert (
        result.returncode == 2
        and len(result.stderr.splitlines()) == 1
        and "MPI_Allreduce" in result.stderr
        and "cannot replay" in result.stderr
        and "--algorithm ring" in result.stderr
        and "--allreduce ring" in result.stderr
    )
    result = netsim(
        "replay", str(tmp_path), "--topology", "single-node-8gpu", "--algorithm", "ring"
    )
    assert result.returncode == 0, result.output
    assert "ring all-reduce" in result.stdout


@pytest.mark.parametrize(
    "args,words",
    [
        (
            ["predict", "--topology", "nowhere", "--params", "10"],
            "neither a .toml file nor a preset",
        ),
        (["predict", "--topology", "dgx-h100", "--params", "10", "--ranks", "100000"], "100000"),
        (
            ["sweep", "--topology", "dgx-h100", "--params", "10", "--algorithms", "ring,magic"],
            "unknown magic",
        ),
        (
            ["sweep", "--topology", "dgx-h100", "--params", "10", "--ranks", "1"],
            "--ranks must lie in 2..256",
        ),
        (["replay", "/nonexistent", "--topology", "dgx-h100"], "no such directory"),
        (["predict", "--params", "10"], "--topology"),
        (
            ["predict", "--topology", "dgx-h100", "--params", "10", "--ranks", "0"],
            "--ranks must be in 1..256",
        ),
        (
            ["predict", "--topology", "dgx-h100", "--params", "10", "--algorithm", "mpi"],
            "invalid choice",
        ),
        (
            ["sweep", "--topology", "dgx-h100", "--params", "10", "--plot", "/nonexistent/s.png"],
            "no such directory",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, words, in_process):
    result = in_process(*args)
    assert result.returncode == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr


def test_bad_topology_file_names_the_key(tmp_path, in_process):
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "x"\nnodes = 2\ngpus_per_node = 4\nplacement = "block"\n'
        '[intra_node]\nkind = "all-to-all"\nbandwidth_gbit_per_s = -5\nlatency_us = 1\n'
    )
    result = in_process("predict", "--topology", str(path), "--params", "10")
    assert result.returncode == 2 and "intra_node.bandwidth_gbit_per_s" in result.stderr


def test_a_bug_is_a_traceback_and_exit_1_not_a_user_error():
    bug = (
        "import sys; from netsim import __main__ as cli; from netsim.sim import predict\n"
        "def broken(*args, **kwargs): return {}['a key our code forgot']\n"
        "predict.predict = broken\n"
        "sys.exit(cli.main(['predict', '--topology', 'dgx-h100', '--params', '10']))"
    )
    result = mpirun(0, ["-c", bug])
    assert result.returncode == 1, result.output
    assert "Traceback" in result.stderr and "KeyError: 'a key our code forgot'" in result.stderr
    assert "netsim: error" not in result.stderr


@pytest.mark.slow
@pytest.mark.mpi
def test_replay_of_a_parameter_server_run_keeps_its_layer_segments(tmp_path):
    assert train(2, tmp_path, "--steps", "3", "--allreduce", "parameter-server").returncode == 0
    out = json.loads(
        netsim("replay", str(tmp_path), "--topology", "single-node-8gpu", "--json").stdout
    )
    config = json.loads((tmp_path / "config.json").read_text())
    topo = topology.load("single-node-8gpu")
    by_layer = PARAMETER_SERVER.time_s(topo, 2, config["buffer_bytes"], segments=config["segments"])
    even = PARAMETER_SERVER.time_s(topo, 2, config["buffer_bytes"])
    assert out["closed_form_s"] == pytest.approx(by_layer) and by_layer != pytest.approx(even)


@pytest.mark.slow
def test_replay_of_a_one_rank_run_has_no_all_reduce_to_time(tmp_path):
    assert train(0, tmp_path, "--steps", "3").returncode == 0
    result = netsim("replay", str(tmp_path), "--topology", "single-node-8gpu")
    assert result.returncode == 0, result.output
    assert "algbw" in result.stdout and "-" in result.stdout
