"""Runs real `mpirun` subprocesses with a hard timeout (the mpi4py test_run.py pattern).

$MPIEXEC chooses the launcher (split with shlex); otherwise the mpirun installed beside this
Python (the mpich extra), otherwise the one on PATH. A timeout kills the whole process
group, so a hung rank fails its test instead of hanging CI.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = Path(__file__).resolve().parent / "programs"


def launcher() -> list[str]:
    if os.environ.get("MPIEXEC"):
        return shlex.split(os.environ["MPIEXEC"])
    found = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun")
    if found is None:
        pytest.fail("no mpirun: install the mpich extra (pip install -e '.[mpich,test]') or set $MPIEXEC")
    return [found]


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
    import time

    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=cwd or ROOT,
                            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s (hang?): {shlex.join(argv)}\n{out}\n{err}")
    return Result(proc.returncode, out, err, time.monotonic() - start)


def mpirun(nranks: int, args: list[str], timeout: float = 60, env: dict | None = None, cwd=None) -> Result:
    """`mpirun -n N python ARGS...`; with N == 0, plain `python ARGS...` (no launcher)."""
    python = [sys.executable, *args]
    argv = python if nranks == 0 else [*launcher(), "-n", str(nranks), *python]
    return run(argv, timeout, env, cwd)


def train(nranks: int, run_dir: Path, *options: str, timeout: float = 120) -> Result:
    return mpirun(nranks, ["-m", "allreduce_train", "--run-dir", str(run_dir), *options], timeout)


def program(name: str) -> str:
    return str(PROGRAMS / name)


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())
