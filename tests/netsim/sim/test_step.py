"""A workload's training step (netsim.sim.step): one bucket without overlap is today's
predict; with overlap the step is bounded by compute and by the buckets' all-reduces, and
exposed communication is exactly step - compute; the buckets are DDP's plan; and, on this
machine, a run of ours predicted from its own run directory."""

import json
import random

import pytest

from netsim import __main__ as cli
from netsim import algorithms
from netsim.cluster import topology
from netsim.record import rundir
from netsim.report import traffic
from netsim.sim import predict, step
from netsim.workload import buckets, catalog
from netsim.workload.workload import Layer, Workload

from conftest import ROOT, Result, train

CALIBRATED = str(ROOT / "docs" / "examples" / "calibrated-2vcpu-vm.toml")
MIB = 1 << 20


def run_step(w, topo, ranks, how="nccl", step_s=0.05, **plan):
    forward, backward = step.compute_times(w, topo.spec.get("gpu"), None, step_s)
    timer = step.Timer(topo, ranks, how, algorithms.RING, w.itemsize)
    return step.step(w, timer, forward, backward, **plan)


def test_one_bucket_without_overlap_is_todays_predict_compute_plus_one_allreduce():
    topo = topology.load(CALIBRATED)
    w = catalog.builtin("resnet-50")
    out = run_step(w, topo, 4, "simulate", step_s=0.03, cap_bytes=None, overlap=False)
    today = predict.predict(topo, algorithms.RING, 4, w.params, 4, 0.03)
    assert len(out["buckets"]) == 1 and out["buckets"][0]["bytes"] == w.params * 4
    assert out["step_time_s"] == pytest.approx(today["step_time_s"], rel=1e-12)
    assert out["exposed_comm_s"] == pytest.approx(today["allreduce_time_s_median"], rel=1e-9)
    assert out["hidden_comm_s"] == pytest.approx(0.0, abs=1e-12)


def random_workload(rng: random.Random) -> Workload:
    layers = tuple(
        Layer(
            f"l{i}",
            tuple(rng.choice([1, 1000, 300_000, 4_000_000]) for _ in range(rng.randint(0, 3))),
            forward_s=rng.uniform(0, 2e-3),
            backward_s=rng.uniform(0, 4e-3),
        )
        for i in range(rng.randint(1, 60))
    )
    return Workload("random", layers, batch=rng.randint(1, 64))


class AlphaBeta:
    """A stand-in for a collective's model: alpha + bytes / beta (the bounds hold for any)."""

    def __init__(self, rng):
        self.alpha, self.beta = rng.uniform(0, 1e-4), rng.uniform(1e9, 1e11)
        self.ranks, self.topology, self.label = 8, topology.load("dgx-h100"), "alpha-beta"

    def __call__(self, nbytes):
        return self.alpha + nbytes / self.beta


@pytest.mark.parametrize("seed", range(40))
def test_with_overlap_the_step_is_bounded_and_exposed_is_step_minus_compute(seed):
    rng = random.Random(seed)
    w = random_workload(rng)
    plan = {"cap_bytes": rng.choice([MIB, 25 * MIB]), "accumulate": rng.randint(1, 3)}
    if seed < 2:  # and with NCCL's model of a real cluster
        timer = step.Timer(topology.load("oci-a100-2node"), 16, "nccl", algorithms.RING, 4)
    else:
        timer = AlphaBeta(rng)
    forward, backward = w.times()
    on = step.step(w, timer, forward, backward, **plan)
    off = step.step(w, timer, forward, backward, overlap=False, **plan)
    for out in (on, off):
        busy = sum(b["allreduce_s"] for b in out["buckets"])
        assert out["step_time_s"] >= out["compute_s"] - 1e-15
        assert out["step_time_s"] >= busy - 1e-15
        assert out["exposed_comm_s"] == out["step_time_s"] - out["compute_s"]
        assert out["comm_busy_s"] == busy
        assert out["hidden_comm_s"] == pytest.approx(busy - out["exposed_comm_s"], abs=1e-15)
        starts = [b["start_s"] for b in out["buckets"]]
        ends = [b["end_s"] for b in out["buckets"]]
        assert all(e <= s + 1e-15 for e, s in zip(ends, starts[1:]))  # one after another
        assert all(b["start_s"] >= b["ready_s"] for b in out["buckets"])
    assert on["step_time_s"] <= off["step_time_s"] + 1e-15
    assert off["hidden_comm_s"] == pytest.approx(0.0, abs=1e-12)


def test_the_buckets_are_ddps_plan_of_the_gradients_in_ready_order():
    w = catalog.builtin("bert-base", 128)
    out = run_step(w, topology.load("dgx-h100"), 16, cap_bytes=25 * MIB)
    order = buckets.ready_order([layer.tensors for layer in w.layers])
    sizes = [w.layers[i].tensors[k] * 4 for i, k in order]
    plan = buckets.plan(sizes, 25 * MIB, MIB)
    assert [b["bytes"] for b in out["buckets"]] == [sum(sizes[i] for i in b) for b in plan]
    assert [b["tensors"] for b in out["buckets"]] == [len(b) for b in plan]
    assert out["buckets"][0]["layers"] == ["pooler.dense", "pooler.dense"]  # 2.25 MiB > 1 MiB
    assert out["buckets"][-1]["layers"][0] == "embeddings.word_embeddings"


def test_accumulation_all_reduces_once_after_k_micro_steps():
    w, topo = catalog.builtin("resnet-50"), topology.load("dgx-h100")
    one = run_step(w, topo, 8, accumulate=1)
    four = run_step(w, topo, 8, accumulate=4)
    assert four["compute_s"] == pytest.approx(4 * one["compute_s"])
    assert four["comm_busy_s"] == pytest.approx(one["comm_busy_s"])
    assert four["step_time_s"] == pytest.approx(3 * one["compute_s"] + one["step_time_s"])
    assert four["scaling_efficiency"] > one["scaling_efficiency"]


def test_one_rank_communicates_nothing_and_half_precision_halves_the_bytes():
    w, topo = catalog.builtin("vgg-16"), topology.load("dgx-h100")
    alone = run_step(w, topo, 1)
    assert alone["step_time_s"] == alone["compute_s"] and alone["scaling_efficiency"] == 1.0
    assert alone["samples_per_s"] == alone["single_gpu_samples_per_s"]
    half = run_step(w, topo, 8, grad_dtype="bfloat16")
    assert half["gradient_bytes"] == w.params * 2


@pytest.fixture
def netsim(capsys):
    """`netsim ARGS` in this process (the main of python -m netsim, which
    test_netsim_cli.py starts as a process), as a Result."""

    def run(*args):
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err, 0.0)

    return run


@pytest.mark.slow
def test_predict_and_sweep_a_workload_from_the_command_line(tmp_path, netsim):
    result = netsim(
        "predict", "--workload", "resnet-50", "--topology", "dgx-h100", "--batch", "256",
        "--step-ms", "200", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    out = json.loads(result.stdout)
    assert out["world_size"] == 256 and out["batch_per_gpu"] == 256
    assert out["compute_s"] == pytest.approx(0.2)
    assert out["exposed_comm_s"] == out["step_time_s"] - out["compute_s"]
    result = netsim(
        "predict", "--workload", "bert-base", "--topology", "dgx-h100", "--ranks", "8",
        "--precision", "fp16", "--json",
    )  # fmt: skip
    half = json.loads(result.stdout)
    result = netsim(
        "predict", "--workload", "bert-base", "--topology", "dgx-h100", "--ranks", "8", "--json"
    )  # fmt: skip
    # float32 math on an H100 peaks at 66.9 TFLOPS, fp16 at 989.4
    assert json.loads(result.stdout)["compute_s"] / half["compute_s"] == pytest.approx(989.4 / 66.9)
    csv = tmp_path / "s.csv"
    result = netsim(
        "sweep", "--workload", "bert-large", "--seq-len", "128", "--topology", "dgx-h100",
        "--ranks", "8,64", "--step-ms", "300", "--csv", str(csv),
    )  # fmt: skip
    assert result.returncode == 0, result.output
    assert "exposed" in result.stdout and "efficiency" in result.stdout
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("world_size,step_time_s") and len(rows) == 3


@pytest.mark.parametrize(
    "args, words",
    [
        (["--params", "10", "--overlap", "off"], "--overlap is an option of --workload"),
        (["--params", "10", "--bucket-mb", "5"], "--bucket-mb is an option of --workload"),
        ([], "--params N (a buffer) or --workload W"),
        (["--params", "10", "--workload", "vgg-16"], "--params and --workload are two"),
        (["--workload", "vgg-16", "--compute-ms", "3"], "a workload's is --step-ms"),
        (["--workload", "vgg-16", "--dtype", "float64"], "take --grad-dtype"),
        (["--workload", "nope"], "neither a built-in"),
        (["--workload", "vgg-16", "--seq-len", "5"], "--seq-len is for sequence models"),
        (["--workload", "vgg-16", "--accumulate", "0"], "--accumulate: must be in 1.."),
        (["--workload", "vgg-16", "--bucket-mb", "-1"], "--bucket-mb: must be a finite"),
        (["--workload", "vgg-16", "--efficiency", "2"], "--efficiency: must be a finite"),
        (["--workload", "vgg-16", "--csv", "x.txt"], "--csv wants a .csv file name"),
        (["--workload", "vgg-16", "--chunks", "2"], "--chunks is the simulator's"),
        (["--workload", "vgg-16", "--algorithm", "downpour"], "downpour has no workload step"),
    ],
)
def test_bad_workload_options_are_one_line(capsys, args, words):
    assert cli.main(["predict", "--topology", "dgx-h100", *args]) == 2
    out, err = capsys.readouterr()
    assert len(err.splitlines()) == 1 and words in err, err
    assert out == ""


@pytest.mark.slow
@pytest.mark.mpi
def test_a_run_of_ours_predicted_from_its_run_directory_on_this_machines_calibration(
    tmp_path, netsim
):
    """A run of one bucket (--bucket-mb 0) is the unbucketed case: one all-reduce after the
    backward (a bucketed run is replayed bucket by bucket: test_replay_buckets.py). The
    workload is the run's own layers and measured compute; the machine is calibrated here
    and now (a short calibration: one pass, all-reduces of 64 KiB and 1 MiB about the run's
    1.2 MB of gradients, a few seconds), and the prediction is held to the run's measured
    step (the median step period). The bound is loose: this machine's speed changes from
    run to run (README, calibration)."""
    run = tmp_path / "run"
    result = train(2, run, "--layers", "64,512,512,10", "--steps", "60", "--allreduce", "ring",
                   "--bucket-mb", "0")  # fmt: skip
    assert result.returncode == 0, result.output
    machine = tmp_path / "machine.toml"
    result = netsim(
        "calibrate", "--ranks", "2", "--passes", "1", "--sizes", "64K,1M",
        "--pingpong-sizes", "8,64K,1M", "--timeout-s", "60", "--out", str(machine),
    )  # fmt: skip
    assert result.returncode == 0, result.output
    w = catalog.resolve(str(run))
    assert [layer.tensors for layer in w.layers] == [(64 * 512, 512), (512 * 512, 512), (5120, 10)]
    assert w.batch == 32 and w.source.startswith(f"run {run}")
    forward, backward = step.compute_times(w)
    timer = step.Timer(topology.load(str(machine)), 2, "simulate", algorithms.RING, 4)
    out = step.step(w, timer, forward, backward, cap_bytes=None, overlap=False)
    config, records, totals = rundir.load(str(run))
    merged = traffic.merge(config, records, complete=totals is not None)
    measured = predict.step_period_s(merged.times)
    assert 1 / 3 < out["step_time_s"] / measured < 3, (out["step_time_s"], measured)


@pytest.mark.slow
def test_the_steps_timeline_and_the_sweeps_efficiency_are_drawn(tmp_path, netsim):
    pytest.importorskip("matplotlib")
    timeline, sweep = tmp_path / "step.png", tmp_path / "sweep.png"
    common = ["--workload", "resnet-50", "--topology", "dgx-h100", "--accumulate", "2"]
    assert netsim("predict", *common, "--plot", str(timeline)).returncode == 0
    assert netsim("sweep", *common, "--ranks", "8,64", "--plot", str(sweep)).returncode == 0
    for png in (timeline, sweep):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
