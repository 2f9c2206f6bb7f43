"""One numbering of steps everywhere (from 0, ARCHITECTURE's Definitions): the console's
epoch lines, evaluations.jsonl, compare, the checkpoints' names and the resume that goes on
from them; a resumed run says so and counts only its own steps; rank 0's progress lines on
a terminal. Real mpirun."""

import json
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from netsim import __main__ as cli

from conftest import ROOT, launcher, train

pytestmark = [pytest.mark.mpi, pytest.mark.slow]  # each trains, for seconds


def console_steps(output: str) -> list[int]:
    return [int(x.split()[3]) for x in output.splitlines() if x.startswith("epoch ")]


def test_console_files_compare_checkpoints_and_resume_number_steps_alike(tmp_path, capsys):
    a = tmp_path / "a"
    first = train(2, a, "--steps", "30", "--checkpoint-every", "22")  # epochs of 22 steps
    assert first.returncode == 0, first.output
    evaluations = [json.loads(x) for x in (a / "evaluations.jsonl").read_text().splitlines()]
    assert console_steps(first.stdout) == [e["step"] for e in evaluations] == [21, 29]
    assert [p.name for p in (a / "checkpoints").iterdir()] == ["step-00000021.npz"]
    target = evaluations[0]["test_accuracy"]
    capsys.readouterr()  # netsim compare in this process, as netsim's own tests run it
    code, compared = (
        cli.main(["compare", str(a), "--target", str(target), "--json"]),
        capsys.readouterr(),
    )
    assert code == 0, compared.err
    assert json.loads(compared.out)[0]["to_target"]["step"] == 21, compared.err
    assert "done: 30 steps in" in first.stdout and "resumed" not in first.stdout
    # given with the values the run resolved its defaults to: the same run, accepted
    more = ("--steps", "40", "--layers", "64,128,128,10", "--momentum", "0.9")
    b = train(2, tmp_path / "b", "--resume", str(a), *more)
    assert b.returncode == 0, b.output
    assert f"  resumed  from {a}/checkpoint.npz (30 steps done, to step 29); this run takes " \
        "steps 30 to 39" in b.stdout  # fmt: skip
    assert "done: 10 steps (steps 30 to 39, resumed after step 29) in" in b.stdout
    assert console_steps(b.stdout) == [39]


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_progress_lines_on_a_terminal_within_a_long_epoch_and_never_with_quiet(tmp_path):
    # rank 0 sleeps 0.25 s a step: 3.25 s or more after its 13th step of 14, so a line (due
    # every 3 s) however fast the machine; the three runs at once, as most of each is a sleep
    long_epoch = ("--steps", "14", "--straggler", "0:0.25")

    def on_a_terminal(run_dir, *more):
        argv = [*launcher(), "-n", "2", sys.executable, "-m", "allreduce_train", "--run-dir",
                str(run_dir), *long_epoch, *more]  # fmt: skip
        done = subprocess.run(["script", "-qec", shlex.join(argv), "/dev/null"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:]
        return [x for x in done.stdout.splitlines() if x.startswith("  epoch ")]

    with ThreadPoolExecutor(3) as pool:
        lines = pool.submit(on_a_terminal, tmp_path / "a")
        quiet = pool.submit(on_a_terminal, tmp_path / "b", "--quiet")
        piped = pool.submit(train, 2, tmp_path / "c", *long_epoch)
        lines, quiet, piped = lines.result(), quiet.result(), piped.result()
    assert lines and all(" of 0-13 " in x and "samples/s  the run ends in" in x for x in lines)
    assert not quiet
    assert piped.returncode == 0 and "  epoch " not in piped.stdout  # not a terminal
