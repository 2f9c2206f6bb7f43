"""Failures end every rank, soon, in one line naming the rank: faults injected on purpose
(--inject) into real multi-rank runs."""

import json
import sys

import pytest

from allreduce_train import exits
from allreduce_train.guard.faults import Injection, parse
from allreduce_train.guard.watchdog import stuck, verdict
from netsim.record import rundir

from conftest import launcher, left_behind, run, train


def errors(result) -> list[str]:
    return [x for x in result.output.splitlines() if x.startswith("allreduce_train: error")]


@pytest.mark.mpi
@pytest.mark.slow
def test_an_exception_on_one_rank_ends_every_rank_naming_it(tmp_path):
    result = train(4, tmp_path, "--steps", "1000", "--inject", "kind=exception,rank=2,step=5")
    assert result.returncode == exits.INTERNAL, result.output
    assert errors(result) == [
        "allreduce_train: error: rank 2: InjectedFault: fault injected by --inject at step 5"
    ]
    assert "Traceback" not in result.output and "Abort(" not in result.output
    assert result.seconds < 15, f"took {result.seconds:.1f} s to end"  # start-up included
    # every step finished before the fault is on disk: all of them on the rank that raised,
    # and on the others all but, at most, the one MPI_Abort cut short
    steps = [[r["step"] for r in rundir.read_steps(str(tmp_path), rank)] for rank in range(4)]
    assert steps[2] == [0, 1, 2, 3, 4]
    assert all(s in ([0, 1, 2, 3], [0, 1, 2, 3, 4]) for s in steps), steps
    assert left_behind(tmp_path) == ""


@pytest.mark.mpi
@pytest.mark.slow
def test_a_stopped_rank_is_named_and_the_job_ends_at_the_timeout(tmp_path):
    result = train(
        4, tmp_path, "--steps", "1000", "--inject", "kind=stop,rank=2,step=5",
        "--comm-timeout", "4", "--stall-warn", "0.5", timeout=60,
    )  # fmt: skip
    # the warning comes at stall-warn + the watchdog's 2 s wait for answers (2.5 s), the error
    # at comm-timeout + that wait (6 s); asking for the warning ends 1.5 s before the timeout
    # is due, room enough on a loaded machine for the warning not to be skipped
    assert result.returncode == exits.TIMEOUT, result.output
    line = "no progress in the all-reduce of step 5"
    warned = [x for x in result.output.splitlines() if "warning" in x and line in x]
    assert len(warned) == 1 and "rank 2 does not answer" in warned[0], result.output
    [error] = errors(result)
    assert line in error and "rank 2 does not answer (stopped" in error, error
    assert result.seconds < 25
    assert left_behind(tmp_path) == ""  # the stopped process too


@pytest.mark.mpi
@pytest.mark.slow
def test_a_late_rank_is_named_in_a_warning_and_the_run_goes_on(tmp_path):
    result = train(
        3, tmp_path, "--steps", "12", "--inject", "kind=sleep,rank=1,step=5,secs=3",
        "--stall-warn", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.output
    warned = [x for x in result.output.splitlines() if "warning" in x]
    assert len(warned) == 1, result.output
    assert "rank 0: no progress in the all-reduce of step 5" in warned[0]
    assert "rank 1 has not joined it (busy outside collectives" in warned[0]


@pytest.mark.mpi
@pytest.mark.slow
def test_a_nonfinite_gradient_stops_every_rank_naming_the_step_and_rank(tmp_path):
    result = train(3, tmp_path, "--steps", "30", "--inject", "kind=nan,rank=1,step=7")
    assert result.returncode == exits.NONFINITE, result.output
    [error] = errors(result)
    assert "step 7: the averaged gradient is not finite: rank 1's local gradient" in error
    assert [r["step"] for r in rundir.read_steps(str(tmp_path), 0)] == list(range(7))


@pytest.mark.mpi
@pytest.mark.slow
def test_divergence_is_caught_not_trained_through(tmp_path):
    result = train(2, tmp_path, "--steps", "200", "--lr", "1000")
    assert result.returncode == exits.NONFINITE, result.output
    assert "not finite: the local gradients of ranks 0, 1 were not finite" in errors(result)[0]


@pytest.mark.mpi
@pytest.mark.slow
def test_skip_leaves_the_bad_steps_out_and_counts_them(tmp_path):
    result = train(
        3, tmp_path, "--steps", "30", "--nonfinite", "skip", "--inject", "kind=nan,rank=2,step=7"
    )
    assert result.returncode == 0, result.output
    assert "skipped 1 step whose gradient was not finite: 7" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["nonfinite_skipped_steps"] == [7] and summary["replicas_identical"]


def test_injections_parse_or_say_what_is_wrong():
    assert parse("kind=sleep, rank=1,step=4,secs=0.5") == Injection("sleep", 1, 4, 0.5)
    for text, words in [
        ("kind=boom,rank=1,step=2", "kind must be one of"),
        ("kind=exit,rank=1", "missing step"),
        ("kind=exit,rank=x,step=1", "must be integers"),
        ("kind=exit,rank=-1,step=1", "count from 0"),
        ("kind=sleep,rank=0,step=1,secs=nan", "secs must be"),
        ("kind=exit,rank=0,step=1,when=now", "unexpected 'when=now'"),
        ("kind=exit,rank=0,step=1,step=3", "step given twice"),
        ("kind=exit,kind=kill,rank=0,step=1", "kind given twice"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse(text)


def test_the_verdict_names_silent_ranks_and_those_elsewhere():
    key = (5, "the all-reduce")
    replies = {0: ((5, "the all-reduce", 0), 30.0), 3: ((4, None, 10e9), 30.0)}
    line = verdict(0, key, 30.2, replies, 4)
    assert line == (
        "rank 0: no progress in the all-reduce of step 5 for 30 s: ranks 1, 2 do not answer"
        " (stopped, or hung outside Python); rank 3 has not joined it (busy outside "
        "collectives for 20 s)"
    )


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize(
    "option,value,words",
    [
        ("--layers", "64,100,10", "--layers is 64,128,128,10 on rank 0 but 64,100,10 on rank 2"),
        ("--seed", "3", "--seed is 0 on rank 0 but 3 on rank 2"),
        ("--dtype", "float64", "--dtype is float32 on rank 0 but float64 on rank 2"),
    ],
)
def test_ranks_started_with_different_arguments_are_refused_naming_both(
    option, value, words, tmp_path
):
    train_cmd = [
        sys.executable,
        "-m",
        "allreduce_train",
        "--run-dir",
        str(tmp_path),
        "--steps",
        "3",
    ]
    argv = [*launcher(), "-n", "2", *train_cmd, ":", "-n", "1", *train_cmd, option, value]
    result = run(argv, timeout=60)
    assert result.returncode == exits.USAGE, result.output
    assert errors(result) == [
        f"allreduce_train: error: ranks were started with different arguments: {words}"
    ]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # refused before anything


def test_a_slow_collective_is_not_a_stuck_one():
    key = (5, "the evaluation")
    inside = {0: ((5, "the evaluation", 0), 40.0), 1: ((5, "the evaluation", 0), 40.0)}
    assert not stuck(key, inside, 2, 30)  # both answer from inside it: alive, slow
    assert stuck(key, {0: inside[0]}, 2, 30)  # rank 1 does not answer
    away = {**inside, 1: ((4, None, 5e9), 40.0)}  # rank 1 away for 35 s
    assert stuck(key, away, 2, 30) and not stuck(key, away, 2, 60)


def test_an_mpi_error_of_ours_keeps_its_traceback_and_a_lost_peer_does_not():
    class Truncated(Exception):  # as an MPI.Exception whose class is not a lost peer's
        pass

    assert exits.classify(Truncated, Truncated("Message truncated"), None) == (
        exits.INTERNAL, "Truncated: Message truncated", True)  # fmt: skip
    code, line, show = exits.classify(Truncated, Truncated("x"), "Other MPI error")
    assert (code, show) == (exits.PEER_LOST, False) and "a peer died?" in line
    full = OSError(28, "No space left on device", "/run/evaluations.jsonl")
    assert exits.classify(OSError, full, None) == (
        exits.OUTPUT, "/run/evaluations.jsonl: No space left on device", False)  # fmt: skip
