"""Checkpoints and --resume: a run killed, interrupted or moved to another rank count goes
on to the weights, optimizer state and losses of the run that never stopped."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from allreduce_train import exits

from conftest import ROOT, launcher, train

pytestmark = [pytest.mark.mpi, pytest.mark.slow]  # every test trains, for seconds

STEPS = ["--steps", "40", "--eval-every", "10"]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The run that never stopped: 2 ranks, 40 steps."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    assert train(2, run_dir, *STEPS).returncode == 0
    return run_dir


def final(run_dir):
    with np.load(run_dir / "checkpoint.npz") as z:
        return z["params"], z["velocity"]


def losses(run_dir) -> dict:
    rows = map(json.loads, (run_dir / "steps.jsonl").read_text().splitlines())
    return {(r["step"], r["rank"]): r["loss"] for r in rows}


def test_a_killed_run_resumes_to_the_same_weights_bit_for_bit(whole, tmp_path):
    broken = train(
        2,
        tmp_path / "a",
        *STEPS,
        "--checkpoint-every",
        "10",
        "--inject",
        "kind=kill,rank=1,step=25",
    )
    assert broken.returncode != 0
    kept = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert kept == ["step-00000009.npz", "step-00000019.npz"]  # the newest 2, by last step
    done = train(2, tmp_path / "b", "--resume", str(tmp_path / "a"))
    assert done.returncode == 0, done.output
    for mine, theirs in zip(final(tmp_path / "b"), final(whole)):
        assert np.array_equal(mine, theirs)
    resumed, ref = losses(tmp_path / "b"), losses(whole)
    assert min(resumed)[0] == 20 and len(resumed) == 2 * 20
    assert all(ref[k] == v for k, v in resumed.items())  # exactly, not approximately
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["resumed_from"]["step"] == 20
    assert config["config"]["checkpoint_every"] == 10  # the settings not given go on too
    report = subprocess.run(
        [sys.executable, "-m", "netsim", "report", str(tmp_path / "b"), "--json"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert report.returncode == 0 and json.loads(report.stdout)["complete"], report.stdout[-500:]


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(whole, tmp_path):
    assert train(2, tmp_path / "a", "--steps", "30", "--checkpoint-every", "10").returncode == 0
    points = tmp_path / "a" / "checkpoints"
    for newest in (points / "step-00000029.npz", tmp_path / "a" / "checkpoint.npz"):
        newest.write_bytes(newest.read_bytes()[:500])  # a kill mid-write leaves a .tmp at
    (points / "step-00000039.npz.tmp123").write_bytes(b"PK")  # most, but a disk may lie
    done = train(2, tmp_path / "b", "--resume", str(tmp_path / "a"), *STEPS)
    assert done.returncode == 0, done.output
    assert json.loads((tmp_path / "b" / "config.json").read_text())["resumed_from"]["step"] == 20
    assert np.array_equal(final(tmp_path / "b")[0], final(whole)[0])


def test_resuming_on_another_rank_count_keeps_the_maths(whole, tmp_path):
    assert train(2, tmp_path / "a", *STEPS[:1], "20", "--checkpoint-every", "20").returncode == 0
    done = train(3, tmp_path / "b", "--resume", str(tmp_path / "a"), *STEPS)
    assert done.returncode == 0, done.output
    # the same global batch: only the order of the sums differs (float rounding)
    np.testing.assert_allclose(final(tmp_path / "b")[0], final(whole)[0], rtol=1e-4, atol=1e-6)
    resumed, ref = losses(tmp_path / "b"), losses(whole)
    mean = {s: np.mean([v for (t, _), v in resumed.items() if t == s]) for s in range(20, 40)}
    assert all(abs(mean[s] - np.mean([ref[s, 0], ref[s, 1]])) < 0.05 for s in mean)
    config = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    assert config["allreduce_choice"]["world_size"] == 3  # auto chose again, for 3 ranks


def test_sigint_writes_a_checkpoint_and_the_run_goes_on_from_it(tmp_path):
    run_dir = tmp_path / "a"
    argv = [*launcher(), "-n", "2", sys.executable, "-m", "allreduce_train"]
    argv += ["--run-dir", str(run_dir), "--steps", "100000", "--eval-every", "1000000"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (run_dir / "steps-rank1.bin").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # into the steps
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == exits.INTERRUPTED, err.decode()
    said = [x for x in out.decode().splitlines() if "SIGINT after step" in x]
    assert len(said) == 1 and "go on with --resume" in said[0], out.decode()
    [point] = (run_dir / "checkpoints").iterdir()
    step = int(point.stem.split("-")[1])  # its last step, the one the message names
    assert 0 < step < 100000 and f"SIGINT after step {step}: checkpoint {point};" in said[0]
    with np.load(point) as z:
        assert int(z["step"]) == step + 1  # steps done
    done = train(2, tmp_path / "b", "--resume", str(run_dir), "--steps", str(step + 6))
    assert done.returncode == 0, done.output
    assert sorted({s for s, _ in losses(tmp_path / "b")}) == list(range(step + 1, step + 6))


def test_a_resume_that_cannot_be_is_one_line(tmp_path):
    # periodic checkpoints at 4 and 8, the final one at 10: the final one is the newest
    assert train(2, tmp_path / "a", "--steps", "10", "--checkpoint-every", "4").returncode == 0
    for args, words, code in [
        (["--resume", str(tmp_path / "none")], "no checkpoint there", exits.CHECKPOINT),
        (["--resume", str(tmp_path / "a")], "has all 10 steps already", exits.CHECKPOINT),
        (["--resume", str(tmp_path / "a"), "--steps", "20", "--lr", "0.1"],
         "--lr was 0.05 when the checkpoint was written", exits.CHECKPOINT),
    ]:  # fmt: skip
        result = train(2, tmp_path / "b", *args)
        assert result.returncode == code, result.output
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and words in lines[0], result.output
