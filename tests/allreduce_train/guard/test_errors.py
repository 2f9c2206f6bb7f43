"""Bad input ends every rank with exit code 2 (a bad dataset 4) and one line; failures never
hang."""

import pytest

from allreduce_train import exits

from conftest import mpirun, program, train
from idx import write_mnist


def one_line_error(result, *words, code=exits.USAGE):
    assert result.returncode == code, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1, result.output  # said once (rank 0), one line, no traceback
    assert lines[0].startswith("allreduce_train: error: ")
    for word in words:
        assert word in lines[0], lines[0]


BAD_INPUT = [
    (["--dataset", "cifar"], ["unknown dataset 'cifar'"]),
    (["--layers", "50,128,10"], ["--layers starts with 50", "64 features"]),
    (["--layers", "64,128,9"], ["--layers ends with 9", "10 classes"]),
    (["--layers", "64,x,10"], ["--layers", "not a comma-separated list"]),
    (["--lr", "0"], ["--lr must be positive"]),
    (["--lr", "-0.1"], ["--lr must be positive"]),
    (["--global-batch", "0"], ["--global-batch must be positive"]),
    (["--global-batch", "2"], ["--global-batch 2 is smaller than the 3 ranks"]),
    (["--global-batch", "100000"], ["exceeds the 1438 training samples"]),
    (["--epochs", "0"], ["--epochs must be positive"]),
    (["--steps", "-3"], ["--steps must be positive"]),
    (["--momentum", "1.5"], ["--momentum"]),
    (["--activation", "gelu"], ["--activation", "gelu"]),
    (["--dtype", "float16"], ["--dtype", "float16"]),
    (["--bogus"], ["unrecognized arguments: --bogus"]),
    (["--dataset", "mnist"], ["needs --data-dir"]),
    (["--dataset", "mnist", "--data-dir", "/nonexistent"], ["no such directory"]),
    (["--device", "gpu"], ["--device gpu", "CuPy"]),
    (["--allreduce", "nccl"], ["--allreduce nccl: needs a GPU per rank", "runs on cpu"]),
    (["--cuda-aware-mpi"], ["--cuda-aware-mpi: needs a GPU", "runs on cpu"]),
    (["--cuda-aware-mpi", "--mode", "async"], ["--cuda-aware-mpi: --mode async has no"]),
    (["--comm-timeout", "-1"], ["--comm-timeout must be seconds >= 0", "-1"]),
    (["--stall-warn", "nan"], ["--stall-warn must be seconds >= 0", "nan"]),
    (["--inject", "kind=boom,rank=0,step=1"], ["--inject wants kind=K", "got 'boom'"]),
    (["--inject", "kind=exit,rank=3,step=1"], ["--inject names rank 3", "world has 3"]),
    (
        ["--allreduce", "hierarchical-ring", "--ranks-per-node", "2"],
        [
            "--allreduce hierarchical-ring",
            "same number of ranks on every node",
            "node 0: 2, node 1: 1",
        ],
    ),
]


# values each checked where they enter (one process, no launcher: a rank's own check)
BAD_VALUES = [
    (["--seed", "-1"], ["--seed must be in [0, 2**32)"]),
    (["--lr", "inf"], ["--lr must be positive and finite"]),
    (["--weight-decay", "inf"], ["--weight-decay must be >= 0 and finite"]),
    (["--straggler", "0:nan"], ["--straggler wants"]),
    (["--straggler", "0:x1e300"], ["--straggler wants", "1 to 1000"]),
    (["--trace-steps", "5-1"], ["--trace-steps: 5-1 must run forwards"]),
    (["--channels", "100000"], ["--channels must be 1 to 64"]),
    (["--layers", "64,100000000,10"], ["needs about", "GiB", "more than the"]),
    (["--dataset", "synthetic", "--samples", "10000000000"], ["needs about", "GiB"]),
]


@pytest.mark.parametrize("args,words", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_one_process(args, words, tmp_path):
    one_line_error(train(0, tmp_path / "run", *args, timeout=60), *words)


# checked against the data set, so refused only once the digits are loaded (a second or more)
AGAINST_THE_DATA = {"--layers 50,128,10", "--layers 64,128,9", "--global-batch 100000"}


def cases(table, ids):
    """pytest.params of (args, words), slow where the check waits for the data."""
    slow = lambda args: pytest.mark.slow if " ".join(args) in AGAINST_THE_DATA else ()  # noqa: E731
    return [
        pytest.param(args, words, id=i, marks=slow(args)) for (args, words), i in zip(table, ids)
    ]


@pytest.mark.mpi
@pytest.mark.parametrize("args,words", cases(BAD_INPUT, [" ".join(a) for a, _ in BAD_INPUT]))
def test_bad_input_three_ranks(args, words, tmp_path):
    one_line_error(train(3, tmp_path / "run", *args, timeout=60), *words)
    assert not (tmp_path / "run").exists()  # nothing created for a run that never started


@pytest.mark.parametrize(
    "args,words", cases(BAD_INPUT[:3], ["dataset", "first-width", "last-width"])
)
def test_bad_input_without_mpirun(args, words, tmp_path):
    one_line_error(train(0, tmp_path / "run", *args, timeout=60), *words)


@pytest.mark.mpi
@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_missing_or_corrupt_mnist_file(damage, tmp_path):
    write_mnist(tmp_path, gz=True)
    victim = tmp_path / "train-labels-idx1-ubyte.gz"
    if damage == "missing":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes()[:20])
    result = train(2, tmp_path / "run", "--dataset", "mnist", "--data-dir", str(tmp_path))
    one_line_error(result, "train-labels-idx1-ubyte", code=exits.DATA)


@pytest.mark.mpi
@pytest.mark.slow
def test_existing_run_directory_is_never_overwritten(tmp_path):
    assert train(2, tmp_path, "--steps", "2").returncode == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    one_line_error(train(2, tmp_path, "--steps", "2"), "already holds a run")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.mpi
@pytest.mark.slow
def test_diverged_replica_is_named(tmp_path):
    result = mpirun(
        3,
        [
            program("inject.py"),
            "perturb",
            "1",
            "4",
            "--",
            "--run-dir",
            str(tmp_path),
            "--steps",
            "20",
            "--check-every",
            "5",
        ],
        timeout=60,
    )
    assert result.returncode == exits.DIVERGED, result.output
    assert "weights diverged after step 4: rank 1 differs from rank 0" in result.stdout
    assert result.stdout.count("weights diverged") == 1


def test_launcher_and_mpi4py_disagree(tmp_path):
    # What a rank sees when Open MPI's mpirun starts an MPICH-built mpi4py: a world of 1.
    result = mpirun(
        0, ["-m", "allreduce_train", "--run-dir", str(tmp_path)], env={"OMPI_COMM_WORLD_SIZE": "4"}
    )
    one_line_error(result, "started 4 processes", "world of 1", "different MPI")


@pytest.mark.mpi
def test_help_printed_once():
    result = mpirun(3, ["-m", "allreduce_train", "--help"])
    assert result.returncode == 0
    assert result.stdout.count("usage:") == 1 and "--global-batch" in result.stdout
