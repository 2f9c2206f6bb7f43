"""The meaning of a schedule in its simplest form: every rank's buffer in one process.

This is the simplest sibling of the MPI executor (allreduce_train.exchange.schedule), which runs
the same rounds one rank per process, and the oracle every executor is tested against. In
a round every send reads the buffers as they were when the round began (MPI may read a
send buffer until the round ends); a reduce round adds what each rank receives, in the
schedule's order, a copy round overwrites.
"""

from __future__ import annotations

import numpy as np

from .rounds import Schedule


def execute(schedule: Schedule, buffers: list[np.ndarray]) -> list[np.ndarray]:
    """The all-reduce of `buffers` (one per rank) by `schedule`: new arrays, one per rank."""
    if len(buffers) != schedule.world_size:
        raise ValueError(f"{len(buffers)} buffers for a schedule of {schedule.world_size} ranks")
    bufs = [np.array(b, copy=True) for b in buffers]
    for rnd in schedule.rounds:
        payloads = [bufs[s][lo : lo + c].copy() for s, lo, c in zip(rnd.src, rnd.start, rnd.count)]
        for d, lo, c, data, adds in zip(rnd.dst, rnd.start, rnd.count, payloads, rnd.adds):
            if adds:
                bufs[d][lo : lo + c] += data
            else:
                bufs[d][lo : lo + c] = data
    return bufs
