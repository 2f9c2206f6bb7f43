"""--mode async (Downpour SGD) in real multi-rank runs: the sequential run as its anchor,
exact bytes per link, staleness where it is predictable, and failures that end every rank."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from allreduce_train import exits
from netsim import __main__ as cli
from netsim.algorithms import downpour
from netsim.record import rundir, serverfile

from conftest import ROOT, launcher, left_behind, read_json, run, train

pytestmark = pytest.mark.mpi
SLOW = pytest.mark.slow  # every run of the async mode takes seconds: most tests here

ASYNC = ("--mode", "async")


def weights(run_dir) -> np.ndarray:
    with np.load(run_dir / "checkpoint.npz") as z:
        return z["params"].copy()


def losses(run_dir, rank=0) -> list[float]:
    return [r["loss"] for r in rundir.read_steps(str(run_dir), rank)]


def events(run_dir, rank) -> np.ndarray:
    return serverfile.read(serverfile.path(str(run_dir), rank))[1]


@SLOW
@pytest.mark.parametrize(
    "servers,maths",
    [
        (1, ("--momentum", "0")),
        (2, ("--momentum", "0.9", "--weight-decay", "0.001")),
        (3, ("--optimizer", "adagrad", "--lr", "0.02")),
    ],
)
def test_one_replica_fetching_and_pushing_every_step_is_the_sequential_run(
    tmp_path, servers, maths
):
    """The anchor: one replica, n_fetch = n_push = 1, is sequential SGD (or Adagrad) update
    for update, bit for bit, however many servers shard the weights. (Bit for bit with the
    same BLAS threads: a rank gets its share of the cores, so the sequential run is held to
    one core as the replica is; more threads sum a product in another order.)"""
    steps = ("--steps", "30")  # past the first epoch's end (22 steps of digits)
    sequential = [sys.executable, "-m", "allreduce_train", "--run-dir", str(tmp_path / "sync")]
    sync = run(["taskset", "-c", "0", *sequential, *steps, *maths])
    assert sync.returncode == 0, sync.output
    one = tmp_path / "async"
    result = train(1 + servers, one, *ASYNC, "--servers", str(servers), *steps, *maths)
    assert result.returncode == 0, result.output
    assert "1 thread per rank" in result.output and "1 thread per rank" in sync.output
    assert losses(one) == losses(tmp_path / "sync")
    assert np.array_equal(weights(one), weights(tmp_path / "sync"))
    s = read_json(one / "summary.json")
    assert s["test_accuracy"] == read_json(tmp_path / "sync" / "summary.json")["test_accuracy"]
    # every push (one per server) on fresh weights
    assert s["traffic"]["staleness_histogram"] == [[0, 30 * servers]]


@SLOW
def test_bytes_per_link_are_what_the_fetches_and_pushes_say(tmp_path, capsys):
    # 2 replicas, 2 servers, 23 batches: 12 steps and 11; n_fetch 2, n_push 3; 26,122
    # parameters in shards of 13,061
    result = train(
        4, tmp_path, *ASYNC, "--servers", "2", "--steps", "23", "--fetch-every", "2",
        "--push-every", "3",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    config = read_json(tmp_path / "config.json")
    assert config["downpour"]["steps_by_replica"] == [12, 11]
    shard = 13061 * 4
    # by hand: replica 0 pushes after steps 2, 5, 8, 11 (4) and fetches after 1, 3, 5, 7, 9
    # (5, not after its last); replica 1 pushes after 2, 5, 8, 10 (4), fetches 5 times too
    expected = {}
    for r in (0, 1):
        for s in (2, 3):
            expected[(r, s)] = (4 * shard, 4 + 5)  # pushes, and 0-byte fetch requests
            expected[(s, r)] = (5 * shard, 5)
    assert downpour.link_bytes(26122, 4, 2, [12, 11], 2, 3) == expected
    measured = {}
    lines = (tmp_path / "links.csv").read_text().splitlines()[1:]
    for _, src, dst, _, _, _, nbytes, messages in (map(int, x.split(",")) for x in lines):
        b, m = measured.get((src, dst), (0, 0))
        measured[(src, dst)] = (b + nbytes, m + messages)
    assert measured == expected
    s = read_json(tmp_path / "summary.json")["traffic"]
    assert s["bytes_match_analytic"] is True
    assert s["server_bytes_in"] == [8 * shard, 8 * shard]  # the incast: both replicas' pushes
    assert s["updates_by_server"] == [8, 8] and s["fetches_by_server"] == [10, 10]
    # the replicas' own view: what they received is what the servers sent
    for r in (0, 1):
        recs = rundir.read_steps(str(tmp_path), r)
        assert sum(x["bytes_recv"] for x in recs) == 2 * 5 * shard
        assert [x["step"] for x in recs] == list(range(12 - r))
    assert len(events(tmp_path, 2)) == 8 + 10
    # the report reads the run back, and draws an async run's own figures (it refused
    # --plots for async runs before); in this process, as netsim's own tests run it
    capsys.readouterr()
    code, drawn = cli.main(["report", str(tmp_path), "--plots"]), capsys.readouterr()
    assert code == 0, drawn.err
    assert "bytes per link: equal to the definition's count" in drawn.out
    assert "2 replicas and 2 servers" in drawn.out
    for name in ("plot_staleness.png", "plot_incast.png"):
        assert f"wrote {tmp_path / name}" in drawn.out
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@SLOW
def test_staleness_is_zero_with_one_replica_and_counts_updates_between_fetches(tmp_path):
    """One replica fetching every 3rd step pushes on weights 0, 1, 2 updates old in turn."""
    result = train(2, tmp_path, *ASYNC, "--steps", "12", "--fetch-every", "3")
    assert result.returncode == 0, result.output
    pushes = events(tmp_path, 1)
    pushes = pushes[pushes["kind"] == serverfile.PUSH]
    assert pushes["staleness"].tolist() == [0, 1, 2] * 4
    assert pushes["version"].tolist() == list(range(12))


@SLOW
def test_one_replica_is_reproducible_whatever_its_fetch_and_push_intervals(tmp_path):
    """One replica's messages reach each server in its order, so the run is a function of
    the seed; it is no longer the sequential run (pushes are sums, fetches are late)."""
    args = (*ASYNC, "--servers", "2", "--steps", "25", "--fetch-every", "3", "--push-every", "2")
    for name in ("a", "b"):
        result = train(3, tmp_path / name, *args)
        assert result.returncode == 0, result.output
    assert np.array_equal(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


@SLOW
def test_staleness_grows_with_replicas_as_a_straggler_makes_predictable(tmp_path):
    """Replica 1 straggles 0.3 s a step, so replica 0's 8 updates all land while replica 1
    holds older weights: replica 1's staleness adds up to exactly 8 (n = 1: each of replica
    0's updates is counted by replica 1's next push), and the fast replica's to less. (At
    0.15 s a step, a machine under load once let replica 0's last update land after replica
    1's last push: 7.)"""
    result = train(3, tmp_path, *ASYNC, "--steps", "16", "--straggler", "1:0.3")
    assert result.returncode == 0, result.output
    pushes = events(tmp_path, 2)
    pushes = pushes[pushes["kind"] == serverfile.PUSH]
    slow, fast = (pushes["staleness"][pushes["replica"] == r] for r in (1, 0))
    assert len(slow) == len(fast) == 8
    assert slow.sum() == 8 and slow.max() > 0
    assert fast.sum() < 8
    s = read_json(tmp_path / "summary.json")["traffic"]
    assert s["staleness_mean"] > 0 and s["staleness_max"] == slow.max()


@SLOW
def test_a_killed_replica_ends_every_rank(tmp_path, capsys):
    result = train(4, tmp_path, *ASYNC, "--steps", "5000", "--inject", "kind=kill,rank=1,step=5")
    assert result.returncode != 0
    # mpiexec ends the others at once (the server does not wait for a replica that will not
    # come) and says a process was killed; the PID it prints is one of the job's, not
    # necessarily the dead one's (measured: rank 0's here)
    assert "Killed (signal 9)" in result.output, result.output
    assert "Traceback" not in result.output
    assert result.seconds < 20
    assert left_behind(tmp_path) == ""
    # what was written is kept, and reads back as an incomplete run
    assert len(rundir.read_steps(str(tmp_path), 1)) == 5
    capsys.readouterr()
    code, report = cli.main(["report", str(tmp_path), "--json"]), capsys.readouterr()
    assert code == 0, report.err
    assert json.loads(report.out)["complete"] is False


@SLOW
def test_a_stopped_replica_is_named_and_the_job_ends_at_the_timeout(tmp_path):
    result = train(
        3, tmp_path, *ASYNC, "--steps", "200", "--inject", "kind=stop,rank=1,step=5",
        "--comm-timeout", "3", "--stall-warn", "1", timeout=60,
    )  # fmt: skip
    # (the warning's question at 1 s, answered or not 2 s later, serves the error at 3 s)
    assert result.returncode == exits.TIMEOUT, result.output
    errors = [x for x in result.output.splitlines() if x.startswith("allreduce_train: error")]
    assert len(errors) == 1 and "rank 1 does not answer (stopped" in errors[0], result.output
    assert "no progress in the end of the run" in errors[0], errors  # it took all its steps
    assert len(rundir.read_steps(str(tmp_path), 0)) == 100
    assert left_behind(tmp_path) == ""


@SLOW
def test_a_replica_stopped_inside_its_fetch_holds_up_no_other(tmp_path):
    """Rank 1 stopped while the server answers its fetch (the server is held, then rank 1
    stopped waiting on it, then the server let go): the server serves whichever replica is
    in, so replicas 0 and 2 train on to the first cut, which needs rank 1 too, and wait
    there; the watchdog names rank 1 and ends the job. (A server that waited in its answer
    to rank 1 held every replica in its next push or fetch, 0 steps more.)"""
    argv = [*launcher(), "-n", "4", sys.executable, "-m", "allreduce_train", "--run-dir",
            str(tmp_path), *ASYNC, "--steps", "100000", "--eval-every", "1000000",
            "--push-every", "10", "--checkpoint-every", "300", "--comm-timeout", "3",
            "--stall-warn", "1"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    steps = [0, 0, 0]
    try:
        deadline = time.monotonic() + 60
        files = [tmp_path / "config.json", *(tmp_path / f"steps-rank{r}.bin" for r in range(3))]
        while steps[1] < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
            if all(f.exists() for f in files):
                steps = [len(rundir.read_steps(str(tmp_path), r)) for r in range(3)]
        pids = read_json(tmp_path / "config.json")["pid_by_rank"]
        os.kill(pids[3], signal.SIGSTOP)
        time.sleep(0.5)  # every replica waits on the server: rank 1 mostly in a fetch
        os.kill(pids[1], signal.SIGSTOP)
        time.sleep(0.1)
        steps = [len(rundir.read_steps(str(tmp_path), r)) for r in range(3)]
        os.kill(pids[3], signal.SIGCONT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == exits.TIMEOUT, out + err
    after = [len(rundir.read_steps(str(tmp_path), r)) for r in range(3)]
    assert max(steps) < 300 and after[1] == steps[1]  # (step files are written as it goes)
    assert after[0] == after[2] == 300, (steps, after)  # the cut's steps, after rank 1 stopped
    # (replica 0 speaks; replica 2 too, should it have come to the cut some 4 s before: the
    # watchdog's others hold back 3 GRACE_S from their own wait, not the speaker's)
    errors = [x for x in err.splitlines() if x.startswith("allreduce_train: error")]
    assert errors and all("rank 1 does not answer (stopped" in x for x in errors), err
    assert all("no progress in the cut's agreement of step 299" in x for x in errors), errors
    assert left_behind(tmp_path) == ""


@SLOW
def test_a_replicas_nonfinite_gradient_ends_the_run_in_one_line(tmp_path):
    result = train(3, tmp_path, *ASYNC, "--steps", "200", "--inject", "kind=nan,rank=1,step=3")
    assert result.returncode == exits.NONFINITE, result.output
    errors = [x for x in result.output.splitlines() if x.startswith("allreduce_train: error")]
    assert errors == [
        "allreduce_train: error: rank 1: replica 1's gradient of its step 3 is not finite "
        + errors[0].split("is not finite ", 1)[1]
    ], result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "ranks,args,expected",
    [
        (1, ASYNC, "--mode async with --servers 1 needs at least one more rank"),
        (3, (*ASYNC, "--servers", "3"), "needs at least one more rank"),
        (2, (*ASYNC, "--servers", "0"), "--servers must be positive"),
        (2, (*ASYNC, "--fetch-every", "0"), "--fetch-every must be positive"),
        (2, (*ASYNC, "--checkpoint-every", "5", "--push-every", "2"), "a multiple of --push-"),
        (2, ("--optimizer", "adagrad", "--momentum", "0.5"), "--momentum is SGD's"),
        (2, (*ASYNC, "--nonfinite", "skip"), "--mode async stops at a non-finite gradient"),
    ],
)
def test_bad_async_settings_are_one_line_on_every_rank(tmp_path, ranks, args, expected):
    result = train(ranks, tmp_path / "run", *args, "--steps", "3")
    assert result.returncode == exits.USAGE, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


@SLOW
def test_replicas_of_the_2_2_1_network_learn_xor_asynchronously(tmp_path):
    """The DistBelief-in-Akka demo on fewer ranks: 3 replicas and a server (README runs the
    blog's 25 replicas). Batches of 16 at lr 0.8: 1,024 steps, each a fetch and a push, to
    the test loss batches of 4 at lr 0.2 reached in 4,096, 0.025 in every run measured."""
    result = train(
        4, tmp_path, *ASYNC, "--dataset", "xor", "--samples", "2048", "--global-batch", "16",
        "--lr", "0.8", "--epochs", "8", timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.output
    s = read_json(tmp_path / "summary.json")
    assert s["test_accuracy"] == 1.0 and s["test_loss"] < 0.1, result.output
    assert read_json(tmp_path / "config.json")["layers"] == [2, 2, 1]
    assert s["traffic"]["staleness_mean"] > 0  # three replicas: pushes on older weights
