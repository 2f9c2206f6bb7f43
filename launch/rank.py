"""`python -m launch.rank [--] COMMAND...`: one rank under a watch, what `python -m launch`
starts in place of each rank's COMMAND so that a rank killed by a signal is named.

A launcher cannot say which rank a signal killed: MPICH's mpiexec prints "BAD TERMINATION"
with the PID of one of the job's processes (not necessarily the dead one) and exits with
the signal's number (9 for SIGKILL, which training uses for a full disk); the other ranks
get no word in, since mpiexec kills them at once. The process that started a rank knows:
this one runs COMMAND as its child (with every descriptor the launcher handed it, PMI's
included, and the child dies with it), passes on the signals a launcher forwards, and when
the child is killed by a signal it did not pass on, says on stderr

    python -m launch: error: rank 2 died (signal 9: SIGKILL; pid 4242 on node7)

and exits PEER_LOST (7, allreduce_train/exits.py). `python -m launch` watches its
launcher's stderr for that line and exits 7 whatever the launcher's own code. The rank is
the launcher's variable: MPICH's PMI_RANK, Open MPI's OMPI_COMM_WORLD_RANK, PMIx's
PMIX_RANK, Slurm's SLURM_PROCID. Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import socket
import subprocess
import sys

PEER_LOST = 7  # allreduce_train.exits.PEER_LOST: launch imports nothing of training
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
DIED = re.compile(r"python -m launch: error: rank (\S+) died \(signal (\d+)")
_PR_SET_PDEATHSIG = 1  # prctl(2)


def rank_of(environ) -> str:
    """This process's rank as its launcher set it, or "?"."""
    return next((environ[v] for v in RANK_VARS if environ.get(v, "").isdigit()), "?")


def died_line(rank: str, signum: int, pid: int, host: str) -> str:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = "unknown"
    return (
        f"python -m launch: error: rank {rank} died (signal {signum}: {name}; pid {pid} on {host})"
    )


def _own_group_dying_with_parent() -> None:  # the rank, before exec
    """In a process group of its own, so that a launcher's signal to the watch's group
    reaches the rank once, passed on; SIGKILL when the watch ends."""
    os.setpgid(0, 0)
    die_with_parent()


def die_with_parent() -> None:  # in a child, before exec
    """SIGKILL when the process that started it ends (Linux's parent-death signal)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the launcher's own cleanup still ends the rank


def main(argv: list[str]) -> int:
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("python -m launch.rank: error: no command", file=sys.stderr)
        return 2
    child: subprocess.Popen | None = None
    passed = []

    def forward(signum, frame):
        passed.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for s in FORWARDED:
        signal.signal(s, forward)
    try:  # the launcher's descriptors (PMI_FD, ...) must reach the rank: close_fds=False
        child = subprocess.Popen(command, close_fds=False, preexec_fn=_own_group_dying_with_parent)
    except OSError as e:
        print(f"python -m launch.rank: error: cannot start {command[0]}: {e}", file=sys.stderr)
        return 127
    for signum in passed:  # came while it started
        child.send_signal(signum)
    rc = child.wait()
    if rc >= 0:
        return rc
    if -rc in passed:  # it ended on a signal the launcher sent: not a death to report
        return 128 - rc
    print(died_line(rank_of(os.environ), -rc, child.pid, socket.gethostname()), file=sys.stderr)
    sys.stderr.flush()
    return PEER_LOST


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
