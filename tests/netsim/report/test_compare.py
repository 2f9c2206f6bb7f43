"""python -m netsim compare: accuracy against time and bytes over several runs, and the
time and bytes to a target accuracy."""

import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, train

pytestmark = [pytest.mark.mpi, pytest.mark.slow]  # each test needs the three runs


def netsim(*args):
    return subprocess.run(
        [sys.executable, "-m", "netsim", *map(str, args)], capture_output=True, text=True, cwd=ROOT
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same maths on 1, 2 and 3 ranks (ring, ring, tree): 40 steps, evaluated every 10."""
    made = []
    for p, algorithm in ((1, "ring"), (2, "ring"), (3, "tree")):
        run_dir = tmp_path_factory.mktemp("compare") / f"p{p}"
        result = train(p, run_dir, "--steps", "40", "--eval-every", "10", "--allreduce", algorithm)
        assert result.returncode == 0, result.output
        made.append(run_dir)
    return made


def evaluations(run_dir):
    return [json.loads(x) for x in (run_dir / "evaluations.jsonl").read_text().splitlines()]


def test_time_and_bytes_to_a_target_are_the_first_evaluation_that_reaches_it(runs, tmp_path):
    curve = evaluations(runs[1])
    assert [e["step"] for e in curve] == [9, 19, 29, 39]
    target = curve[1]["test_accuracy"]  # reached first at step 19, by construction
    assert curve[0]["test_accuracy"] < target
    out = netsim("compare", *runs, "--target", target, "--json", "--plot", tmp_path / "c.png")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["world_size"] for r in rows] == [1, 2, 3]
    for run_dir, row in zip(runs, rows):
        mine = evaluations(run_dir)
        # the rank count does not change the maths: every run reaches it at the same step
        assert row["to_target"]["step"] == 19
        assert row["to_target"]["wall_s"] == mine[1]["wall_s"]
        summary = json.loads((run_dir / "summary.json").read_text())
        per_step = sum(summary["traffic"]["bytes_sent_per_step_by_rank"])
        assert row["to_target"]["bytes"] == 20 * per_step  # exactly: steps 0..19
        assert row["bytes"] == 40 * per_step
    assert rows[0]["bytes"] == 0 and rows[1]["bytes"] > 0
    assert (tmp_path / "c.png").stat().st_size > 10_000
    table = netsim("compare", *runs, "--target", 0.999)
    assert table.returncode == 0 and table.stdout.count("not reached") == 3, table.stdout


def test_bad_requests_are_one_line(runs, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(runs[1], bare)
    (bare / "evaluations.jsonl").unlink()
    for args, words in [
        ([bare], "no evaluations.jsonl"),
        ([], "the following arguments are required: RUN_DIR"),
        ([runs[1], "--target", "1.5"], "--target"),
        ([runs[1], "--target", "0"], "--target"),
        ([runs[1], "--plot", tmp_path / "c.pdf"], "--plot wants a .png"),
        ([tmp_path / "none"], "no such directory"),
    ]:
        out = netsim("compare", *args)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, (args, out.stderr)
        assert words in out.stderr, (args, out.stderr)


def test_runs_of_different_datasets_against_one_target_get_a_note(runs, tmp_path):
    xor = tmp_path / "xor"
    assert train(1, xor, "--dataset", "xor", "--steps", "20", "--eval-every", "10").returncode == 0
    out = netsim("compare", runs[1], xor, "--target", 0.9)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == (
        "note: these runs trained on different datasets (p2 digits, xor xor): their "
        "accuracies do not compare with each other or against one target"
    )
    rows = json.loads(netsim("compare", runs[1], xor, "--json").stdout)
    assert [r["dataset"] for r in rows] == ["digits", "xor"]
    assert "note:" not in netsim("compare", *runs).stdout  # one dataset: nothing to say


def test_one_rank_reports_no_bandwidth_for_an_all_reduce_that_moves_nothing(runs):
    traffic = json.loads((runs[0] / "summary.json").read_text())["traffic"]
    assert traffic["algbw_bytes_per_s"] is None and "busbw_bytes_per_s" not in traffic
    report = netsim("report", runs[0])
    assert "algbw" not in report.stdout.replace("no algbw", ""), report.stdout
    assert "all-reduce on one rank: nothing to exchange, no algbw or busbw" in report.stdout
    assert "algbw" in netsim("report", runs[1]).stdout  # two ranks: the figure stands
