"""--mode async checkpoints and --resume in real multi-rank runs: cuts where every replica
has taken the same steps, a resumed run that takes the batches the uninterrupted one takes
(with one replica fetching and pushing every step, bit for bit its weights), and SIGINT or
SIGTERM on any rank ending every rank with a checkpoint."""

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
from netsim.record import rundir, stepfile

from conftest import ROOT, launcher, read_json, train

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

ASYNC = ("--mode", "async")


def saved(path) -> dict:
    with np.load(path) as z:
        return {k: z[k].copy() for k in z.files}


def steps(run_dir, rank) -> dict[int, float]:
    """A replica's recorded steps: step -> loss."""
    return {r["step"]: r["loss"] for r in rundir.read_steps(str(run_dir), rank)}


def report(run_dir, capsys) -> dict:
    """netsim report --json, in this process (as netsim's own tests run it)."""
    capsys.readouterr()
    code, said = cli.main(["report", str(run_dir), "--json"]), capsys.readouterr()
    assert code == 0, said.err
    return json.loads(said.out)


@pytest.fixture(scope="module")
def cut_every_6(tmp_path_factory):
    """2 replicas of 20 steps, a push every 2, a fetch every 3 and a cut every 6 steps: the
    run the refusals below resume too (read only)."""
    run_dir = tmp_path_factory.mktemp("async") / "a"
    result = train(
        3, run_dir, *ASYNC, "--steps", "40", "--push-every", "2", "--fetch-every", "3",
        "--checkpoint-every", "6", "--keep-checkpoints", "9",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    return run_dir


def test_checkpoint_every_counts_each_replicas_steps_and_adds_no_message(cut_every_6, capsys):
    """2 replicas of 20 steps, a push every 2 and a fetch every 3: cuts after every
    replica's 6th, 12th and 18th step, batches 0-11, 0-23, 0-35 done; the links carry what
    the definition counts, not a message more."""
    tmp_path = cut_every_6
    points = sorted((tmp_path / "checkpoints").iterdir())
    assert [p.name for p in points] == [f"step-{b:08d}.npz" for b in (11, 23, 35)]  # last batch
    for path, k in zip(points, (6, 12, 18)):
        state = saved(path)
        assert int(state["step"]) == 2 * k and state["replica_steps"].tolist() == [k, k]
        assert json.loads(str(state["config"]))["mode"] == "async"
    final = saved(tmp_path / "checkpoint.npz")
    assert int(final["step"]) == 40 and final["replica_steps"].tolist() == [20, 20]
    figures = report(tmp_path, capsys)
    assert figures["complete"] and figures["bytes_match_analytic"] is True


@pytest.mark.parametrize("maths", [("--momentum", "0.9"), ("--optimizer", "adagrad")])
def test_one_replica_killed_and_resumed_is_the_run_that_never_stopped(tmp_path, maths, capsys):
    """One replica fetching and pushing every step: the checkpoint's weights are the ones
    it fetched, so the resumed run (the servers' shards and optimizer state, its step) ends
    bit for bit where the uninterrupted run ends."""
    args = (*ASYNC, "--steps", "40", *maths)
    assert train(2, tmp_path / "whole", *args).returncode == 0  # no cut: never stopped
    broken = train(
        2, tmp_path / "a", *args, "--checkpoint-every", "10", "--inject", "kind=kill,rank=0,step=25"
    )
    assert broken.returncode != 0 and "Killed (signal 9)" in broken.output, broken.output
    kept = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert kept == ["step-00000009.npz", "step-00000019.npz"]  # named by their last batch
    done = train(2, tmp_path / "b", "--resume", str(tmp_path / "a"))
    assert done.returncode == 0, done.output
    mine, whole = (read_json(tmp_path / d / "summary.json") for d in ("b", "whole"))
    assert mine["weights_blake2b"] == whole["weights_blake2b"]
    a, b = saved(tmp_path / "b" / "checkpoint.npz"), saved(tmp_path / "whole" / "checkpoint.npz")
    optimizer = {"--momentum": "velocity", "--optimizer": "sum_sq"}[maths[0]]
    for key in ("params", optimizer, "replica_steps", "step"):
        assert np.array_equal(a[key], b[key]), key
    assert a["totals"][0] == b["totals"][0] == 40 * 64  # samples: the whole training's
    resumed, ref = steps(tmp_path / "b", 0), steps(tmp_path / "whole", 0)
    assert sorted(resumed) == list(range(20, 40))
    assert all(ref[s] == loss for s, loss in resumed.items())  # exactly
    config = read_json(tmp_path / "b" / "config.json")
    assert config["resumed_from"]["step"] == 20 and config["resumed_from"]["replica_steps"] == [20]
    assert config["downpour"]["steps_by_replica"] == [20]
    assert mine["first_step"] == 20
    figures = report(tmp_path / "b", capsys)
    assert figures["complete"] and figures["bytes_match_analytic"] is True


def test_two_replicas_resumed_take_the_batches_the_uninterrupted_run_takes(tmp_path, capsys):
    """Which weights a gradient meets depends on timing with 2 replicas, the data order does
    not: replica r's step k takes batch 2k + r in the whole run, in the run killed after its
    cut at 10 steps and in the run resumed from that cut; and both runs take step 10 of
    every replica on the cut's weights, so its loss is the same in both."""
    args = (*ASYNC, "--steps", "40")
    assert train(3, tmp_path / "whole", *args).returncode == 0
    broken = train(
        3, tmp_path / "a", *args, "--checkpoint-every", "5", "--inject", "kind=kill,rank=1,step=14"
    )
    assert broken.returncode != 0
    assert (tmp_path / "a" / "checkpoints" / "step-00000019.npz").exists()  # 20 batches done
    done = train(3, tmp_path / "b", "--resume", str(tmp_path / "a"))
    assert done.returncode == 0, done.output
    batches = []
    for r in (0, 1):
        whole, killed, resumed = (steps(tmp_path / d, r) for d in ("whole", "a", "b"))
        assert sorted(resumed) == list(range(10, 20))
        assert sorted(s for s in killed if s < 10) + sorted(resumed) == sorted(whole)
        batches += [2 * s + r for s in sorted(resumed)]
        if 10 in killed:  # (replica 1 took it: it was killed in its step 14)
            assert killed[10] == resumed[10]
    assert 10 in steps(tmp_path / "a", 1)
    assert sorted(batches) == list(range(20, 40))  # every batch after the cut, once
    figures = report(tmp_path / "b", capsys)
    assert figures["complete"] and figures["bytes_match_analytic"] is True
    assert figures["steps_by_replica"] == [10, 10]


def start(run_dir, ranks: int, *args: str) -> subprocess.Popen:
    argv = [*launcher(), "-n", str(ranks), sys.executable, "-m", "allreduce_train"]
    argv += ["--run-dir", str(run_dir), *ASYNC, "--steps", "100000", "--eval-every", "1000000"]
    proc = subprocess.Popen([*argv, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:  # into the steps:
        if min(recorded(run_dir, r) for r in (0, 1)) >= 3:  # both replicas, some steps done
            break
        time.sleep(0.05)
    return proc


def recorded(run_dir, rank) -> int:
    """The steps a replica has recorded so far: its step file is written as it goes, so it
    may be read with a frame half written (left out, as a crash's would be)."""
    path = rundir.step_file(str(run_dir), rank)
    return len(stepfile.scan(path)[0]) if os.path.exists(path) else 0


def interrupted(proc, run_dir, signum) -> tuple[int, list[int]]:
    """The checkpoint a signal left: (batches done, every replica's steps)."""
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, out.decode() + err.decode()
    name = signal.Signals(signum).name
    said = [x for x in out.decode().splitlines() if f"{name} after step" in x]
    assert len(said) == 1 and "go on with --resume" in said[0], out.decode()
    assert "Traceback" not in err.decode(), err.decode()
    [point] = (run_dir / "checkpoints").iterdir()
    state = saved(point)
    last = int(state["step"]) - 1  # the run's last batch done: the message's and the name's
    assert f"{name} after step {last}: checkpoint {point}" in said[0], said
    assert point.name == f"step-{last:08d}.npz"
    return int(state["step"]), state["replica_steps"].tolist()


def test_sigint_writes_a_checkpoint_and_the_run_goes_on_from_it(tmp_path):
    run_dir = tmp_path / "a"
    proc = start(run_dir, 3)
    proc.send_signal(signal.SIGINT)  # mpiexec sends it on to every rank
    batches, [k, k1] = interrupted(proc, run_dir, signal.SIGINT)
    assert k == k1 and 0 < k < 50000 and batches == 2 * k
    done = train(3, tmp_path / "b", "--resume", str(run_dir), "--steps", str(batches + 10))
    assert done.returncode == 0, done.output
    for r in (0, 1):
        assert sorted(steps(tmp_path / "b", r)) == list(range(k, k + 5))
    assert read_json(tmp_path / "b" / "config.json")["resumed_from"]["step"] == batches


@pytest.mark.parametrize("rank", [1, 3], ids=["a replica", "a server not the first"])
def test_sigterm_to_one_rank_alone_stops_every_rank_at_a_cut(tmp_path, rank):
    """A scheduler's SIGTERM to one process: server 0 hears of it (from the replica that
    asks for a cut, or from the other server) and tells every replica."""
    run_dir = tmp_path / "a"
    proc = start(run_dir, 4, "--servers", "2", "--push-every", "2")
    pid = read_json(run_dir / "config.json")["pid_by_rank"][rank]
    subprocess.run(["kill", "-TERM", str(pid)], check=True)
    batches, [k, k1] = interrupted(proc, run_dir, signal.SIGTERM)
    assert k == k1 and k % 2 == 0 and batches == 2 * k


def test_async_resume_refusals_are_one_line_on_every_rank(tmp_path, cut_every_6):
    a = cut_every_6
    old = tmp_path / "old"  # a checkpoint written before async runs could resume
    (old / "checkpoints").mkdir(parents=True)
    state = saved(a / "checkpoints" / "step-00000011.npz")
    del state["replica_steps"]
    np.savez(old / "checkpoints" / "step-00000011.npz", **state)
    for ranks, args, words, code in [
        (2, (*ASYNC, "--steps", "3", "--checkpoint-every", "4", "--fetch-every", "3"),
         "--checkpoint-every 4: --mode async checkpoints where every replica pushes and "
         "fetches, so N must be a multiple of --push-every 1 and --fetch-every 3", exits.USAGE),
        (4, ("--resume", str(a), "--steps", "60"),
         "its async run had 2 replicas, this one would have 3 (world size 4, --servers 1): "
         "the batches are dealt by replica, so it goes on with as many (mpirun -n 3)",
         exits.CHECKPOINT),
        (3, ("--resume", str(old), "--steps", "60"),
         "its checkpoint holds no replica's step", exits.CHECKPOINT),
        (3, ("--resume", str(a)), "has all 40 steps already", exits.CHECKPOINT),
        (3, ("--resume", str(a), "--steps", "60", "--push-every", "3"),
         "--push-every was 2 when the checkpoint was written", exits.CHECKPOINT),
    ]:  # fmt: skip
        result = train(ranks, tmp_path / "b", *args)
        assert result.returncode == code, result.output
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and words in lines[0], result.output
