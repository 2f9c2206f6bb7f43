"""The shared-memory executor over real MPI and a real MPI-3 shared window: every schedule
bit-identical to the message executor at p = 2, 3, 4 (one node, and pretend nodes with
messages between); training through it equals training by messages; and the failures a
rank can have mid-round end the job as they do with messages."""

import json

import pytest

from allreduce_train import exits
from netsim import algorithms

from conftest import mpirun, program, read_json, train

pytestmark = [pytest.mark.mpi, pytest.mark.slow]


@pytest.mark.parametrize("p", [2, 3, 4])
def test_every_schedule_through_shared_memory_equals_the_messages_bit_for_bit(p, tmp_path):
    out = tmp_path / "cases"
    result = mpirun(p, [program("shm_check.py"), str(out)], timeout=240)
    assert result.returncode == 0, result.output
    per_rank = [read_json(f"{out}.{r}") for r in range(p)]
    names = {name for name in algorithms.SCHEDULED if algorithms.get(name).runs_over_mpi}
    assert {c["algorithm"] for c in per_rank[0]} == names
    assert all(c["shared"] for c in per_rank[0])  # every case ran through the window
    assert {c["nodes"] for c in per_rank[0]} == ({1, p // 2} if p % 2 == 0 else {1})
    for cases in zip(*per_rank):
        label = f"{cases[0]['algorithm']} x{cases[0]['channels']} n={cases[0]['n']}"
        assert all(c["equal"] for c in cases), f"not the message executor's bits: {label}"
        assert len({c["hash"] for c in cases}) == 1, f"ranks disagree: {label}"


def test_training_through_shared_memory_is_training_by_messages(tmp_path):
    summaries, records = {}, {}
    for transport in ("shm", "mpi"):
        run_dir = tmp_path / transport
        result = train(3, run_dir, "--steps", "12", "--allreduce", "ring",
                       "--transport", transport)  # fmt: skip
        assert result.returncode == 0, result.output
        summaries[transport] = json.loads((run_dir / "summary.json").read_text())
        records[transport] = json.loads((run_dir / "config.json").read_text())
    assert summaries["shm"]["weights_blake2b"] == summaries["mpi"]["weights_blake2b"]
    assert "read peers' memory inside a node" in records["shm"]["device"]
    assert "read peers' memory" not in records["mpi"]["device"]
    traffic = {t: summaries[t]["traffic"] for t in summaries}
    # the transfers counted are the schedule's, whichever way they travel
    assert (
        traffic["shm"]["bytes_sent_per_step_by_rank"]
        == traffic["mpi"]["bytes_sent_per_step_by_rank"]
        == traffic["shm"]["analytic_bytes_sent_per_step_by_rank"]
    )


def test_a_rank_killed_mid_run_ends_the_job_no_hang(tmp_path):
    result = train(
        3, tmp_path, "--steps", "1000", "--transport", "shm", "--inject",
        "kind=kill,rank=1,step=5", "--comm-timeout", "60", timeout=60,
    )  # fmt: skip
    assert result.returncode != 0, result.output
    assert result.seconds < 30, f"took {result.seconds:.1f} s to end"


def test_a_stopped_rank_is_named_by_the_watchdog_in_shared_memory_too(tmp_path):
    result = train(
        3, tmp_path, "--steps", "1000", "--transport", "shm", "--inject",
        "kind=stop,rank=1,step=5", "--comm-timeout", "4", "--stall-warn", "1", timeout=60,
    )  # fmt: skip
    assert result.returncode == exits.TIMEOUT, result.output
    assert "rank 1 does not answer (stopped" in result.output, result.output


def test_shared_memory_with_a_librarys_own_all_reduce_is_refused_in_one_line(tmp_path):
    result = train(2, tmp_path, "--allreduce", "mpi", "--transport", "shm")
    assert result.returncode == exits.USAGE, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert lines == [
        "allreduce_train: error: --transport shm: --allreduce mpi is the library's own and "
        "moves its own bytes; shared memory runs the schedules (ring, tree, ...)"
    ]


def test_the_allreduce_benchmark_runs_every_kind_of_executor_and_checks_their_sums():
    """bench/allreduce.py builds its executors through the factory as training does; once
    the factory changed under it, it stopped running and nothing said so. p = 3 (odd),
    one size: messages, shared memory, auto's pick and MPI_Allreduce, each sum checked."""
    import subprocess
    import sys

    from conftest import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "allreduce.py"), "--ranks", "3", "--sizes", "4K",
         "--rounds", "1", "--algorithms", "ring,rd/shm,auto,mpi", "--timeout-s", "120"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    header, row = [line.split() for line in result.stdout.splitlines()[-2:]]
    assert header[:6] == ["size", "iters", "ring", "rd/shm", "auto", "mpi"], result.stdout
    assert row[:2] == ["4", "KiB"] and row[-1] == "ok", result.stdout
    bad = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "allreduce.py"), "--algorithms", "ring,rign"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "unknown all-reduce algorithm 'rign'" in bad.stderr
    assert "Traceback" not in bad.stderr
