"""Collective algorithms as pure schedules: written once, executed over MPI and simulated.

A schedule says, round by round, which rank sends which slice of the flat buffer to whom,
and whether the receiver adds the slice into its own buffer (reduce) or overwrites its
slice with it (copy). It knows nothing of MPI, GPUs or time, so
`allreduce_train.collectives` can run it over MPI and `netsim` can replay the very same
traffic on a modelled network.

Ring all-reduce (Patarasuk & Yuan 2009; the baidu-allreduce layout). The buffer of n
elements is cut into p chunks; rank r sends only to r+1 and receives only from r-1:

        +-----+            +-----+
        |  0  | ---------> |  1  |
        +-----+            +-----+
           ^                  |
           |                  v
        +-----+            +-----+
        |  3  | <--------- |  2  |
        +-----+            +-----+

Reduce-scatter, p-1 rounds: in round k rank r sends chunk (r-k) mod p, and adds the chunk
(r-k-1) mod p it receives into its own. After it, rank r holds the full sum of chunk
(r+1) mod p. All-gather, p-1 rounds: in round k rank r sends chunk (r+1-k) mod p and
copies the chunk (r-k) mod p it receives. For p = 4 (entries: chunk sent by rank r):

    round               rank 0   rank 1   rank 2   rank 3
    reduce-scatter 0       0        1        2        3
    reduce-scatter 1       3        0        1        2
    reduce-scatter 2       2        3        0        1     -> r owns sum of chunk r+1
    all-gather 0           1        2        3        0
    all-gather 1           0        1        2        3
    all-gather 2           3        0        1        2     -> every rank has every sum

Every rank sends (and receives) each chunk once per phase except one, so with equal chunks
a rank moves 2(p-1)/p * n elements each way, independent of p for large p: the reason
the ring is bandwidth-optimal. Each chunk's sum is formed on exactly one rank, in one
order, and then copied, so all ranks end bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REDUCE_SCATTER = "reduce-scatter"
ALL_GATHER = "all-gather"


@dataclass(frozen=True, eq=False)
class Round:
    """One round: transfer i moves buf[start[i]:start[i]+count[i]] from src[i] to dst[i]."""

    phase: str
    index: int  # round number within its phase
    reduce: bool  # receiver adds into its slice (True) or overwrites it (False)
    src: np.ndarray
    dst: np.ndarray
    start: np.ndarray
    count: np.ndarray


@dataclass(frozen=True, eq=False)
class Schedule:
    algorithm: str
    world_size: int
    nelems: int
    rounds: tuple[Round, ...]

    def elements_sent(self) -> np.ndarray:
        """Elements each rank sends over the whole collective, indexed by rank."""
        return self._per_rank("src")

    def elements_received(self) -> np.ndarray:
        return self._per_rank("dst")

    def messages_sent(self) -> np.ndarray:
        return sum((np.bincount(r.src, minlength=self.world_size) for r in self.rounds),
                   np.zeros(self.world_size, dtype=np.int64))

    def _per_rank(self, side: str) -> np.ndarray:
        total = np.zeros(self.world_size, dtype=np.int64)
        for r in self.rounds:
            np.add.at(total, getattr(r, side), r.count)
        return total


def chunk_bounds(nelems: int, nchunks: int) -> np.ndarray:
    """Offsets of nchunks near-equal chunks (sizes differ by at most one): chunk c is
    [bounds[c], bounds[c+1]). Chunks may be empty when nelems < nchunks."""
    return (np.arange(nchunks + 1, dtype=np.int64) * nelems) // nchunks


def ring(world_size: int, nelems: int) -> Schedule:
    """Ring all-reduce of nelems elements over world_size ranks (see the module docstring)."""
    _check(world_size, nelems)
    p = world_size
    bounds = chunk_bounds(nelems, p)
    ranks = np.arange(p, dtype=np.int64)
    right = (ranks + 1) % p
    rounds = []
    for phase, reduce, first_chunk in ((REDUCE_SCATTER, True, ranks), (ALL_GATHER, False, ranks + 1)):
        for k in range(p - 1):
            chunk = (first_chunk - k) % p
            rounds.append(_round(phase, k, reduce, ranks, right, bounds[chunk], np.diff(bounds)[chunk]))
    return Schedule("ring", p, nelems, tuple(rounds))


def _round(phase, index, reduce, src, dst, start, count) -> Round:
    # Empty chunks (nelems < p) need no message at all; both ends see the same schedule,
    # so dropping them here keeps sender and receiver in agreement.
    keep = count > 0
    return Round(phase, index, reduce, src[keep], dst[keep], start[keep], count[keep])


def _check(world_size: int, nelems: int) -> None:
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if nelems < 0:
        raise ValueError(f"nelems must be >= 0, got {nelems}")


# Schedules by the name a user chooses them with (--allreduce); the training program and
# the simulator both look algorithms up here.
ALGORITHMS = {"ring": ring}
