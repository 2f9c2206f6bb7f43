"""The exit codes of `python -m allreduce_train`, one place (README's table is this one).

Every rank of a failed run ends with the same code and rank 0 (or the rank that knows)
prints one line saying why. A traceback means a bug of ours: exit code 1.
"""

OK = 0
INTERNAL = 1  # a bug: the traceback is shown
USAGE = 2  # a bad argument or configuration, or ranks started with different ones
DIVERGED = 3  # replicas that must be bit-identical differ (the check every --check-every)
DATA = 4  # a dataset that cannot be used: missing, truncated, corrupt, non-finite values
NONFINITE = 5  # a loss or gradient went NaN or infinite (--nonfinite stop)
TIMEOUT = 6  # a peer did not answer inside a collective for --comm-timeout seconds
PEER_LOST = 7  # a peer's process ended in the middle of the run
CHECKPOINT = 8  # a checkpoint could not be written, or --resume could not use one
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
    CHECKPOINT: "a checkpoint could not be written or resumed",
    OUTPUT: "the run directory could not be written",
    INTERRUPTED: "interrupted (SIGINT; SIGTERM exits 143)",
}
