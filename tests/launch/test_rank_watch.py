"""A rank killed by a signal is named: launch.rank's watch (real processes), and through
`python -m launch` under a real mpiexec, exit 7 where the bare mpiexec exits 9 and names no
rank."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from launch import rank

from conftest import gone

ROOT = Path(__file__).resolve().parents[2]


def watch(*command, env=None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "launch.rank", "--", *command],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_a_rank_killed_by_a_signal_is_named_and_exits_7():
    proc = watch("sh", "-c", "kill -9 $$", env={"PMI_RANK": "3"})
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == rank.PEER_LOST == 7
    assert err.startswith("python -m launch: error: rank 3 died (signal 9: SIGKILL; pid ")
    assert err.count("\n") == 1
    found = rank.DIED.search(err)
    assert found is not None and (found[1], found[2]) == ("3", "9")
    proc = watch("sh", "-c", "kill -SEGV $$", env={"PMI_RANK": "", "SLURM_PROCID": "5"})
    assert proc.communicate(timeout=30)[1].startswith(
        "python -m launch: error: rank 5 died (signal 11: SIGSEGV"
    )


def test_a_rank_that_exits_keeps_its_code_and_its_output():
    proc = watch("sh", "-c", "echo out; echo err >&2; exit 4")
    assert proc.communicate(timeout=30) == ("out\n", "err\n")
    assert proc.returncode == 4


CHILD = """
import signal, sys, time
got = []
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
print("ready", flush=True)
deadline = time.monotonic() + 20
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.5)  # a second copy would arrive by now
sys.exit(100 + len(got))
"""


def test_a_launchers_signal_reaches_the_rank_once_and_is_no_death():
    # sent to the watch's process group, as a launcher may: the rank, in a group of its own,
    # gets it once, from the watch
    proc = watch(sys.executable, "-c", CHILD, start_new_session=True)
    assert proc.stdout.readline() == "ready\n"
    os.killpg(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (101, "")
    proc = watch("sh", "-c", "echo ready; exec sleep 30")
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)  # the rank ends of the signal passed on: 143, no line
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (143, "")


def test_the_rank_dies_with_its_watch(tmp_path):
    pid_file = tmp_path / "pid"
    proc = watch("sh", "-c", f"echo $$ > {pid_file}; echo ready; exec sleep 60")
    assert proc.stdout.readline() == "ready\n"
    child = int(pid_file.read_text())
    proc.kill()
    proc.communicate(timeout=30)
    assert gone(child), f"the rank {child} outlived its watch"


def kill_rank_2(launcher: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    train = [sys.executable, "-m", "allreduce_train", "--steps", "40", "--run-dir", str(run_dir)]
    train += ["--inject", "kind=kill,rank=2,step=5"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [*launcher, *train], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
@pytest.mark.mpi
def test_python_m_launch_names_the_rank_a_signal_killed_where_mpiexec_cannot(tmp_path):
    hosts = ["--hosts", "localhost", "--ranks-per-node", "4"]
    done = kill_rank_2([sys.executable, "-m", "launch", "--launcher", "mpich", *hosts, "--"],
                       tmp_path / "a")  # fmt: skip
    assert done.returncode == 7, done.stderr
    said = [line for line in done.stderr.splitlines() if "died" in line]
    assert len(said) == 1 and said[0].startswith(
        "python -m launch: error: rank 2 died (signal 9: SIGKILL; pid "
    ), done.stderr
    # the bare launcher: the signal's number as its exit code (9, our code for a full disk),
    # and no rank
    bare = kill_rank_2(["mpiexec", "-n", "4"], tmp_path / "b")
    assert bare.returncode == 9
    assert "rank 2" not in bare.stdout + bare.stderr and "signal 9" in bare.stdout + bare.stderr
