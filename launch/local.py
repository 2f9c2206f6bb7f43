"""Runs on this machine: the launcher that belongs to this interpreter's MPI, and its argv.

mpi4py is built against one MPI library; a launcher from another starts p processes that
each believe they are alone. So the launcher is, in order: $MPIEXEC if set (split as a shell
would), the mpirun installed beside this Python (the mpich extra puts one there), or
whatever mpirun is on PATH.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path


def mpiexec(environ=None, python: str | None = None) -> list[str]:
    """The launcher's argv prefix: $MPIEXEC, else the mpirun beside `python` (this
    interpreter), else the one on PATH, else plain "mpirun" (whose absence the caller's
    start then reports)."""
    environ = os.environ if environ is None else environ
    if environ.get("MPIEXEC"):
        return shlex.split(environ["MPIEXEC"])
    beside = Path(python or sys.executable).parent
    found = shutil.which("mpirun", path=str(beside)) or shutil.which(
        "mpirun", path=environ.get("PATH")
    )
    return [found or "mpirun"]


def mpirun_argv(
    world_size: int, command: list[str], launcher: list[str] | None = None
) -> list[str]:
    """`LAUNCHER -n P COMMAND...`: P processes of COMMAND on this machine."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return [*(mpiexec() if launcher is None else launcher), "-n", str(world_size), *command]


def run(argv: list[str], timeout_s: float, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run argv to its end, output captured, no stdin, in a session of its own. Past
    timeout_s its whole process group (the launcher and every rank it started) is killed
    and TimeoutExpired raised with what it had printed: a hung rank cannot outlive its
    caller. OSError if argv cannot be started."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )
    # SIGTERM to the caller ends it by an exception (exit 143), so that the job, in a
    # session of its own and out of the signal's reach, is killed with it, as on Ctrl-C.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(argv, timeout_s, stdout, stderr) from None
    except BaseException:  # Ctrl-C, SIGTERM, a bug: the job does not outlive its caller
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)
