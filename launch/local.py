"""Runs on this machine: the launcher that belongs to this interpreter's MPI, and its argv.

mpi4py is built against one MPI library; a launcher from another starts p processes that
each believe they are alone. So the launcher is, in order: $MPIEXEC if set (split as a shell
would), the mpirun installed beside this Python (the mpich extra puts one there), or
whatever mpirun is on PATH.
"""

from __future__ import annotations

import contextlib
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


HELD = (signal.SIGINT, signal.SIGTERM)  # while run starts its job


def run(argv: list[str], timeout_s: float, env=None, cwd=None) -> subprocess.CompletedProcess:
    """Run argv to its end, output captured, no stdin, in a session of its own. Past
    timeout_s its whole process group (the launcher and every rank it started) is killed
    and TimeoutExpired raised with what it had printed: a hung rank cannot outlive its
    caller. OSError if argv cannot be started."""
    # SIGTERM to the caller ends it by an exception (exit 143), so that the job, in a
    # session of its own and out of the signal's reach, is killed with it, as on Ctrl-C. A
    # SIGINT or SIGTERM while the job starts is held until Popen has returned its pid, then
    # acted on: it cannot end the caller between the job's start and the try that kills it.
    held: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.signal(s, lambda signum, _: held.append(signum)) for s in HELD}
        previous = {s: signal.SIG_DFL if h is None else h for s, h in previous.items()}
    proc = None
    try:
        try:
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
        finally:
            if previous:
                signal.signal(signal.SIGTERM, _terminated)
                signal.signal(signal.SIGINT, previous[signal.SIGINT])
                for signum in held:  # as it would have been had it come now
                    signal.raise_signal(signum)
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(argv, timeout_s, stdout, stderr) from None
    except BaseException:  # Ctrl-C, SIGTERM, a bug: the job does not outlive its caller
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):  # it may have ended as it came
                os.killpg(proc.pid, signal.SIGKILL)
            # reaped without Popen's wait, whose lock the exception may have left held,
            # raised out of communicate's wait between that lock's acquire and its try
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
        raise
    finally:
        if previous:
            signal.signal(signal.SIGTERM, previous[signal.SIGTERM])
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)
