"""Training over real mpirun: N ranks compute what 1 rank computes; recorded bytes are the
ring's analytic count exactly; the default job learns."""

import numpy as np
import pytest

from netsim import algorithms
from netsim.record import rundir

from conftest import mpirun, program, read_json, train
from idx import write_mnist

pytestmark = pytest.mark.slow  # every test here trains, for a second or more

# 31 is prime: the global batch splits unevenly over 2, 3 and 4 ranks (16+15, 11+10+10, 8+8+8+7).
EQUIVALENCE = [
    "--dtype",
    "float64",
    "--steps",
    "20",
    "--global-batch",
    "31",
    "--lr",
    "0.1",
    "--momentum",
    "0.9",
    "--weight-decay",
    "1e-4",
    "--seed",
    "5",
    "--check-every",
    "5",
]


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("p1")
    result = train(0, run_dir, *EQUIVALENCE)
    assert result.returncode == 0, result.output
    return np.load(run_dir / "checkpoint.npz")


@pytest.mark.mpi
@pytest.mark.parametrize("p", [2, 3, 4])
@pytest.mark.parametrize("allreduce", ["ring", "mpi"])
def test_n_ranks_give_the_weights_of_one_rank(p, allreduce, one_rank, tmp_path):
    result = train(p, tmp_path, *EQUIVALENCE, "--allreduce", allreduce)
    assert result.returncode == 0, result.output
    got = np.load(tmp_path / "checkpoint.npz")
    assert int(got["step"]) == 20
    reference = one_rank["params"]
    assert np.max(np.abs(got["params"] - reference)) <= 1e-10 * np.max(np.abs(reference))
    np.testing.assert_allclose(
        got["velocity"],
        one_rank["velocity"],
        rtol=0,
        atol=1e-10 * np.max(np.abs(one_rank["velocity"])),
    )


@pytest.mark.mpi
@pytest.mark.parametrize("p", [2, 3, 4])
def test_recorded_bytes_equal_ring_analytic_count(p, tmp_path):
    # 64-17-10 has 64*17+17+17*10+10 = 1285 parameters: odd, and not a multiple of 2, 3 or 4
    result = train(
        p, tmp_path, "--layers", "64,17,10", "--steps", "6", "--global-batch", "12", "--allreduce",
        "ring",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    n, itemsize = 1285, 4
    sizes = np.diff(algorithms.chunk_bounds(n, p)) * itemsize
    total = 0
    for r in range(p):
        records = rundir.read_steps(str(tmp_path), r)
        assert [rec["step"] for rec in records] == list(range(6))
        sent = 2 * n * itemsize - sizes[(r + 1) % p] - sizes[(r + 2) % p]
        received = 2 * n * itemsize - sizes[r] - sizes[(r + 1) % p]
        for rec in records:
            assert rec["bytes_sent"] == sent and rec["bytes_recv"] == received
            assert rec["messages"] == 2 * (p - 1)
            assert rec["links"] == [
                [r, (r + 1) % p, sent, 2 * (p - 1)]
            ]  # the ring: right neighbour only
            assert (
                rec["samples"] == len(range(12)[r::p])
                and rec["comm_s"] > 0
                and rec["compute_s"] > 0
            )
            total += rec["bytes_sent"]
    assert total == 6 * 2 * (p - 1) * n * itemsize  # nothing double counted, nothing missing
    traffic = read_json(tmp_path / "summary.json")["traffic"]
    assert traffic["bytes_sent_per_step_by_rank"] == traffic["analytic_bytes_sent_per_step_by_rank"]


@pytest.mark.mpi
@pytest.mark.parametrize("allreduce,transport", [("tree", "mpi"), ("tree", "shm"), ("mpi", "mpi")])
def test_the_trainer_uses_the_transport_it_is_handed(allreduce, transport, tmp_path):
    out = tmp_path / "counts"
    result = mpirun(
        3,
        [
            program("handed_transport.py"),
            str(out),
            "--",
            "--run-dir",
            str(tmp_path / "run"),
            "--steps",
            "4",
            "--allreduce",
            allreduce,
            "--transport",
            transport,
        ],
        timeout=60,
    )
    assert result.returncode == 0, result.output
    rounds = len(algorithms.get("tree").schedule(3, 10).rounds)
    for rank in range(3):
        counts = read_json(f"{out}.{rank}")
        records = rundir.read_steps(str(tmp_path / "run"), rank)
        assert len(records) == 4
        if allreduce == "mpi":
            assert counts == {"exchanges": 0, "bytes_sent": 0, "native": 4}
        elif transport == "shm":  # one node: every transfer a read of a peer's memory
            assert counts == {"exchanges": 0, "bytes_sent": 0, "native": 0}
            assert sum(r["bytes_sent"] for r in records) > 0  # and counted all the same
        else:  # every round of every step went through it, and every byte the records count
            assert counts["exchanges"] == 4 * rounds and counts["native"] == 0
            assert counts["bytes_sent"] == sum(r["bytes_sent"] for r in records) > 0


@pytest.mark.mpi
def test_default_job_learns_digits_on_four_ranks(tmp_path):
    result = train(4, tmp_path, timeout=120)
    assert result.returncode == 0, result.output
    summary = read_json(tmp_path / "summary.json")
    assert summary["test_accuracy"] >= 0.95 and summary["replicas_identical"]
    out = result.stdout
    assert out.count("allreduce_train: 4 ranks") == 1  # only rank 0 speaks
    assert out.count("epoch ") == 20 and "samples/s" in out and "comm" in out
    assert "bit-identical on 4 ranks" in out
    config = read_json(tmp_path / "config.json")
    assert config["world_size"] == 4 and config["local_batch_by_rank"] == [16, 16, 16, 16]


@pytest.mark.mpi
def test_mnist_idx_and_synthetic_train_on_three_ranks(tmp_path):
    write_mnist(tmp_path, gz=True)
    result = train(
        3,
        tmp_path / "run",
        "--dataset",
        "mnist",
        "--data-dir",
        str(tmp_path),
        "--steps",
        "5",
        "--global-batch",
        "10",
    )
    assert result.returncode == 0, result.output
    assert "784-128-128-10" in result.stdout
    result = train(
        3,
        tmp_path / "syn",
        "--dataset",
        "synthetic",
        "--samples",
        "300",
        "--features",
        "20",
        "--classes",
        "3",
        "--epochs",
        "2",
        "--global-batch",
        "32",
        "--activation",
        "tanh",
        "--loss",
        "mse",
    )
    assert result.returncode == 0, result.output
    assert read_json(tmp_path / "syn" / "summary.json")["steps"] == 2 * (300 // 32)


def test_run_without_mpirun_is_one_rank(tmp_path):
    result = mpirun(0, ["-m", "allreduce_train", "--run-dir", str(tmp_path), "--steps", "3"])
    assert result.returncode == 0, result.output
    assert "1 rank on 1 node" in result.stdout


@pytest.mark.slow
def test_samples_per_s_leaves_out_the_evaluations_and_checkpoints_between_steps(tmp_path):
    """As a training loop timed on its own (PyTorch DDP's in bench/torch_ddp.py) does: the
    run's wall time keeps them, its samples/s is over the steps' share of it."""
    result = mpirun(
        0,
        ["-m", "allreduce_train", "--run-dir", str(tmp_path), "--steps", "6",
         "--eval-every", "1", "--checkpoint-every", "2"],
    )  # fmt: skip
    assert result.returncode == 0, result.output
    s = read_json(tmp_path / "summary.json")
    aside = s["wall_s"] - s["steps_wall_s"]
    assert 0 < aside < s["wall_s"]  # six evaluations and three checkpoints, all timed
    assert s["samples_per_s"] == pytest.approx(6 * 64 / s["steps_wall_s"], rel=1e-12)
    done = next(line for line in result.stdout.splitlines() if line.startswith("done:"))
    said = f"in {s['wall_s']:.2f} s ({aside:.2f} s of it evaluations and checkpoints)" in done
    assert said == (aside >= 0.005)  # said where it shows at two decimals
