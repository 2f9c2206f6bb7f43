"""python -m netsim calibrate: the file it writes predicts the measurements back, bad input is
one line; and the probe under real mpirun, end to end on this machine."""

import json
import tomllib

import numpy as np
import pytest

from netsim import __main__ as cli
from netsim.algorithms import RING
from netsim.calibration import choose, measure
from netsim.cluster import topology
from netsim.sim import predict

from conftest import Result, mpirun, read_json
from measurements import (
    MIB,
    TRUE_SHM,
    few,
    solved_once,  # noqa: F401 (a fixture the tests below use)
    synthetic,
)

# ---------------------------------------------------------------- the CLI and the written file


def netsim(*args, timeout=60):
    return mpirun(0, ["-m", "netsim", *args], timeout)


def calibrate(capsys, *args):
    """`netsim calibrate ARGS` in this process (its fits solved once with test_fitting's:
    the measurements are its oracle's, cut to its sizes), as a Result."""
    code = cli.main(["calibrate", *args])
    out, err = capsys.readouterr()
    return Result(code, out, err, 0.0)


@pytest.mark.slow
@pytest.mark.usefixtures("solved_once")
def test_calibrate_from_measurements_writes_a_topology_that_predicts_them_back(tmp_path, capsys):
    saved = tmp_path / "measured.json"
    saved.write_text(json.dumps(few(synthetic())))
    out = tmp_path / "box.toml"
    result = calibrate(capsys, "--from-measurements", str(saved), "--out", str(out))
    assert result.returncode == 0, result.output
    assert "median |error|" in result.stdout and f"wrote {out}" in result.stdout
    text = out.read_text()
    assert text.startswith("# this machine: written by `python -m netsim calibrate`")
    assert tomllib.loads(text)["intra_node"]["aggregate_bandwidth_gbit_per_s"] == pytest.approx(
        14e9 * 8 / 1e9
    )
    topo = topology.load(str(out))
    _, allreduce = measure.pooled(few(synthetic()))
    for (p, n), times in allreduce.items():
        measured = measure.measured_report(p, n, times)
        error = predict.errors(measured, predict.predict(topo, RING, p, n // 4))
        assert (
            abs(error["allreduce_time_s_median"]) < 2e-3 and abs(error["busbw_bytes_per_s"]) < 2e-3
        )
    as_json = json.loads(
        calibrate(capsys, "--from-measurements", str(saved), "--out", str(out), "--json").stdout
    )
    assert as_json["topology"] == topo.spec and as_json["median_abs_error"] < 1e-3


@pytest.mark.slow
@pytest.mark.usefixtures("solved_once")
def test_the_shared_memory_path_is_written_beside_the_calibration(tmp_path, capsys):
    """--transport shm's rates in X.shm.toml beside X.toml, a topology of their own that
    predicts the shared-memory points back; refitted from a file without them (an older
    probe's), the stale one goes."""
    saved = tmp_path / "measured.json"
    saved.write_text(json.dumps(few(synthetic(shm=TRUE_SHM))))
    out = tmp_path / "box.toml"
    result = calibrate(capsys, "--from-measurements", str(saved), "--out", str(out), "--json")
    assert result.returncode == 0, result.output
    beside = choose.shm_file(out)
    assert beside == tmp_path / "box.shm.toml"
    assert json.loads(result.stdout)["shared_memory"]["out"] == str(beside)
    shm = topology.load(str(beside))
    assert shm.name == "this machine (shared memory)" and shm.gpus == 4
    assert shm.shared_memory and not topology.load(str(out)).shared_memory  # reads, messages
    _, points = measure.pooled(few(synthetic(shm=TRUE_SHM)), kind="allreduce_shm")
    for (p, n), times in points.items():
        measured = measure.measured_report(p, n, times)
        error = predict.errors(measured, predict.predict(shm, RING, p, n // 4))
        assert abs(error["allreduce_time_s_median"]) < 0.01, (p, n, error)
    specs, source = choose.machine_specs(out)
    assert source == str(out) and specs["shm"] == tomllib.loads(beside.read_text())
    saved.write_text(json.dumps(few(synthetic())))
    result = calibrate(capsys, "--from-measurements", str(saved), "--out", str(out))
    assert result.returncode == 0 and not beside.exists() and out.exists(), result.output
    assert "shm" not in choose.machine_specs(out)[0]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--ranks", "1,2"], "--ranks must be at least 2"),
        (["--ranks", "two"], "--ranks wants comma-separated integers"),
        (["--sizes", "7"], "multiples of 4 bytes"),
        (["--out", "/nonexistent/dir/x.toml"], "--out: no such directory"),
        (["--from-measurements", "/nonexistent.json"], "--from-measurements: cannot read"),
    ],
)
def test_calibrate_bad_input_is_one_line(args, words, tmp_path):
    result = netsim("calibrate", *args, "--save-measurements", str(tmp_path / "m.json"))
    assert result.returncode == 2, result.output
    assert result.stderr.strip().count("\n") == 0 and result.stdout == ""
    assert result.stderr.startswith("netsim: error: ") and words in result.stderr


def test_calibrate_names_a_file_that_is_no_measurement(tmp_path):
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"runs": [{"world_size": 2}]}')
    result = netsim(
        "calibrate", "--from-measurements", str(bogus), "--out", str(tmp_path / "x.toml")
    )
    assert result.returncode == 2 and "not a measurement file" in result.stderr


# ---------------------------------------------------------------- real mpirun


@pytest.mark.slow
@pytest.mark.mpi
def test_calibrate_end_to_end_on_this_machine(tmp_path):
    out, saved = tmp_path / "here.toml", tmp_path / "measured.json"
    result = netsim(
        "calibrate",
        "--ranks",
        "2",
        "--rounds",
        "2",
        "--passes",
        "1",
        "--sizes",
        "64K,1M",
        "--pingpong-sizes",
        "8,64K,1M",
        "--out",
        str(out),
        "--save-measurements",
        str(saved),
        timeout=120,
    )
    assert result.returncode == 0, result.output
    assert "median |error|" in result.stdout and "probe: pass 1/1, 2 ranks" in result.stderr
    topo = topology.load(str(out))
    assert topo.gpus == 2 and "node0.fabric" in topo.link_names
    (run,) = read_json(saved)["runs"]
    assert run["world_size"] == 2 and [e["nbytes"] for e in run["pingpong"]] == [8, 65536, MIB]
    assert all(len(e["times_s"]) == 2 and min(e["times_s"]) > 0 for e in run["allreduce"])
    assert np.isfinite(predict.predict(topo, RING, 2, MIB // 4)["allreduce_time_s_median"])
    # the ring through shared memory, timed beside it, and its own topology beside the file
    assert [e["nbytes"] for e in run["allreduce_shm"]] == [64 << 10, MIB]
    assert all(len(e["times_s"]) == 2 and min(e["times_s"]) > 0 for e in run["allreduce_shm"])
    shm = topology.load(str(choose.shm_file(out)))
    assert shm.gpus == 2 and "shared memory" in shm.name


@pytest.mark.mpi
@pytest.mark.parametrize(
    "ranks, args, words",
    [
        (2, ["--rounds", "0"], "--rounds must be positive"),
        (2, ["--allreduce-sizes", "7"], "multiples of 4 bytes"),
        (2, ["--shm-sizes", "7"], "multiples of 4 bytes"),
        (2, ["--pingpong-sizes", "4Q"], "not a byte count: '4Q'"),
        (2, ["--out", "/nonexistent/dir/p.json"], "--out: no such directory"),
        (0, [], "needs at least 2 ranks"),
    ],
)
def test_probe_refuses_bad_arguments_in_one_line(ranks, args, words, tmp_path):
    argv = [
        "-m",
        "allreduce_train.probe",
        *(["--out", str(tmp_path / "p.json")] if "--out" not in args else []),
        *args,
    ]
    result = mpirun(ranks, argv, timeout=60)
    assert result.returncode == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert (
        len(lines) == 1
        and lines[0].startswith("allreduce_train.probe: error: ")
        and words in lines[0]
    ), lines
    assert not (tmp_path / "p.json").exists()
