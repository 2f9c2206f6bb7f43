"""The exit codes of `python -m allreduce_train`, one place (README's table is this one), and
the errors every room raises for them.

Every rank of a failed run ends with the same code and rank 0 (or the rank that knows)
prints one line saying why. A traceback means a bug of ours: exit code 1. This module
imports nothing of ours: every room may raise its errors.
"""

import errno

OK = 0
INTERNAL = 1  # a bug: the traceback is shown
USAGE = 2  # a bad argument or configuration, or ranks started with different ones
DIVERGED = 3  # replicas that must be bit-identical differ (the check every --check-every)
DATA = 4  # a dataset that cannot be used: missing, truncated, corrupt, non-finite values
NONFINITE = 5  # a loss or gradient went NaN or infinite (--nonfinite stop)
TIMEOUT = 6  # a peer did not answer inside a collective for --comm-timeout seconds
PEER_LOST = 7  # a peer's process ended in the middle of the run
CHECKPOINT = 8  # --resume could not use a checkpoint (one that cannot be written: OUTPUT)
OUTPUT = 9  # the run directory could not be written (full disk, read-only, removed)
INTERRUPTED = 130  # SIGINT (Ctrl-C); SIGTERM gives 143; both checkpoint first

MEANING = {
    OK: "the run finished",
    INTERNAL: "a bug in allreduce_train (its traceback is printed)",
    USAGE: "bad argument or configuration (one line names it)",
    DIVERGED: "replicas differ where they must be bit-identical",
    DATA: "the dataset cannot be used",
    NONFINITE: "a loss or gradient became NaN or infinite",
    TIMEOUT: "a peer stopped answering for --comm-timeout seconds",
    PEER_LOST: "a peer's process died",
    CHECKPOINT: "--resume could not use a checkpoint",
    OUTPUT: "the run directory could not be written",
    INTERRUPTED: "interrupted (SIGINT; SIGTERM exits 143)",
}


class UsageError(Exception):
    """Bad input: every rank ends with exit code `code` (USAGE unless a subclass says) and
    one line naming the problem."""

    code = USAGE


class InjectedFault(Exception):
    """The fault `--inject kind=exception` raises (guard.faults): an error the run reports in
    one line, exit 1, with no traceback (it is not a bug)."""


class ReplicasDiverged(Exception):
    """Weights differ between ranks where they must be bit-identical: the all-reduce (or the
    hardware) is broken (DIVERGED)."""


class NonFinite(Exception):
    """The averaged gradient is NaN or infinite: raised on every rank at once (NONFINITE)."""


class Fatal(Exception):
    """A failure one rank finds alone and the run cannot go on from (an asynchronous replica's
    non-finite gradient): one line, and every rank ends with `code`."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class PeerLost(Exception):
    """An MPI call failed under a rank: a peer's process ended (or its link broke)."""


# A file we write cannot be: the disk, not our code (OUTPUT, one line naming it).
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
               errno.EIO, errno.ENOENT}  # fmt: skip


def classify(exc_type, exc, mpi_lost: str | None) -> tuple[int, str | None, bool]:
    """What the abort hook makes of an uncaught exception: (exit code, the line after
    "rank R: ", whether its traceback is shown). A failure we know (an injected fault, a
    lost peer, a full or read-only disk, Ctrl-C) is one line; anything else is a bug of ours
    and shows its traceback (INTERNAL). mpi_lost: an MPI error that means a lost peer, as one
    line (comm.py decides; this module has no MPI)."""
    if issubclass(exc_type, KeyboardInterrupt):
        return INTERRUPTED, "interrupted", False
    if mpi_lost is not None:
        return PEER_LOST, f"MPI failed: {mpi_lost} (a peer died?)", False
    if issubclass(exc_type, PeerLost):
        return PEER_LOST, str(exc), False
    if issubclass(exc_type, Fatal):
        return exc.code, str(exc), False
    if issubclass(exc_type, OSError) and exc.errno in DISK_ERRORS and exc.filename:
        return OUTPUT, f"{exc.filename}: {exc.strerror}", False
    line = f"{exc_type.__name__}: {exc}"
    return INTERNAL, line, not issubclass(exc_type, InjectedFault)
