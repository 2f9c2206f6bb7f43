"""Runs real `mpirun` subprocesses with a hard timeout (the mpi4py test_run.py pattern).

The launcher is launch.mpiexec's: $MPIEXEC, otherwise the mpirun installed beside this
Python (the mpich extra), otherwise the one on PATH. A timeout kills the whole process
group, so a hung rank fails its test instead of hanging CI. Test modules import these
helpers by name (`from conftest import mpirun`): tests/ is on pytest's pythonpath.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import launch

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"

# --allreduce auto reads this host's calibration from here (netsim.calibration.choose): tests see
# none, so every run, here and in CI, picks by the built-in estimate; a test that wants a
# calibration writes one into a directory of its own and points the variable there.
# The directory is removed when the session ends (pytest_sessionfinish): each run had left one.
NO_CALIBRATION = os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"allreduce-train-tests-{os.getpid()}-no-calibration"
)
os.environ["NETSIM_CACHE_DIR"] = NO_CALIBRATION

# Bytecode. Where PYTHONDONTWRITEBYTECODE is set (CI's image sets it) no module is ever
# cached: every rank of every mpirun compiled this project's modules from source again before
# its first step, and every xdist worker rewrote and compiled every test module's asserts
# (most of collection's 7 s). The Pythons this session starts, workers and mpirun ranks, keep
# theirs in .pytest_cache/pycache (PYTHONPYCACHEPREFIX; pytest's own directory, ignored by
# git), where the next session finds them too; nothing is written beside the sources.
if os.environ.get("PYTHONDONTWRITEBYTECODE"):
    try:
        os.makedirs(ROOT / ".pytest_cache" / "pycache", exist_ok=True)
    except OSError:  # a read-only checkout: every Python compiles, as before
        pass
    else:
        os.environ["PYTHONPYCACHEPREFIX"] = str(ROOT / ".pytest_cache" / "pycache")
        del os.environ["PYTHONDONTWRITEBYTECODE"]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(NO_CALIBRATION, ignore_errors=True)


def launcher() -> list[str]:
    argv = launch.mpiexec()
    if shutil.which(argv[0]) is None:
        pytest.fail(
            f"no launcher {argv[0]!r}: install the mpich extra (pip install -e '.[mpich,test]') "
            f"or set $MPIEXEC"
        )
    return argv


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(argv: list[str], timeout: float = 60, env: dict | None = None, cwd=None) -> Result:
    start = time.monotonic()
    try:
        done = launch.run(argv, timeout, env={**os.environ, **(env or {})}, cwd=cwd or ROOT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"timed out after {timeout} s (hang?): {shlex.join(argv)}\n{exc.stdout}\n{exc.stderr}"
        )
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - start)


def mpirun(
    nranks: int, args: list[str], timeout: float = 60, env: dict | None = None, cwd=None
) -> Result:
    """`mpirun -n N python ARGS...`; with N == 0, plain `python ARGS...` (no launcher)."""
    python = [sys.executable, *args]
    argv = python if nranks == 0 else launch.mpirun_argv(nranks, python, launcher())
    return run(argv, timeout, env, cwd)


def train(nranks: int, run_dir: Path, *options: str, timeout: float = 120) -> Result:
    return mpirun(nranks, ["-m", "allreduce_train", "--run-dir", str(run_dir), *options], timeout)


def program(name: str) -> str:
    return str(PROGRAMS / name)


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


def left_behind(run_dir, grace_s: float = 3.0) -> str:
    """The processes of the run still there `grace_s` after mpirun returned: a process
    killed at the end (a stopped one, SIGKILLed) may take a moment to be reaped by init once
    its parent has gone (measured: 2 runs in 5 saw it at once, then not)."""
    deadline = time.monotonic() + grace_s
    while True:
        found = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True)
        if not found.stdout or time.monotonic() > deadline:
            return found.stdout
        time.sleep(0.1)


def gone(pid: int, grace_s: float = 10.0) -> bool:
    """Whether process `pid` is gone within grace_s: ended, or a zombie (it has ended; whoever
    inherits it reaps it when it gets round to it, which in a container can take seconds)."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if _state(pid) in ("Z", None):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (R, S, Z, ...); None if it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]
