"""The gradient path's one interface: what every executor offers, what only some do, and what
they need of the network.

An executor sums a buffer in place over every rank, one call a step, and records what it
does into a recorder's step writer (netsim.record.recorder.Recorder: `bind` the messages it
will send, store reading k of the step into `readings()[k]`, the copies' times through
`copy_times`); only netsim.record knows how the step file lays them out. Five executors
keep `Executor`:

    ScheduleAllreduce  a netsim schedule point to point over a Transport   (schedule.py)
    NativeAllreduce    the library's MPI_Allreduce, the naive sibling      (schedule.py)
    StagedAllreduce    a GPU gradient through its pinned host mirror,
                       around one of the two above                          (staging.py)
    DirectAllreduce    the GPU buffer itself through a CUDA-aware MPI,
                       around one of the two above                          (staging.py)
    NcclAllreduce      ncclAllReduce on the GPU buffer                      (nccl.py)

The two host executors are also `RoundExecutor`s: they say which ranges of the buffer each
round touches and call a hook before each round, which is all the two wrappers need of
them (the copy of round k's pieces, or a stream synchronisation, before round k). Which
executor a run gets is decided in one place, exchange.factory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Transport(Protocol):
    """What an executor needs of the network: the contract comm.MpiTransport keeps."""

    def exchange(self, sends, recvs, tag: int = 0) -> None:
        """sends: [(dst, view)], recvs: [(src, view)] of contiguous arrays; returns once all
        have completed. Messages between two ranks arrive in the order they were posted (MPI's
        non-overtaking rule); sends may be read until the call returns."""

    def native_allreduce(self, buf) -> None:
        """The library's own in-place sum of buf over all ranks (MPI_Allreduce)."""

    # Optional: prepare(sends, recvs, tag) -> a callable doing that exchange on those views,
    # made once per buffer (MPI: persistent requests). A transport without it is called
    # through exchange every round (schedule.prepared).


class Executor(Protocol):
    """Every executor of the gradient path."""

    def __call__(self, buf) -> None:
        """Sum `buf` in place over every rank (every rank calls it, in the same order)."""

    def record_into(self, recorder) -> None:
        """Record every later call into `recorder`'s open step (None: record nothing)."""


class RoundExecutor(Executor, Protocol):
    """An executor in rounds on a host-addressable buffer: what staging wraps."""

    def touched(self) -> list[list[tuple[int, int]]]:
        """Per round, the (lo, hi) ranges of the buffer this rank sends, receives or adds
        into (MPI_Allreduce: one round, all of it)."""

    def stage(self, wait: Callable[[int], None]) -> None:
        """Call wait(k) just before round k runs, every call from now on."""

    def bind(self, buf) -> None:
        """Make now what every call on `buf` uses (views, prepared requests, the messages it
        records), after `stage`: a recorder given later counts them at once, and a step of
        a bucketed exchange lays out its readings before any bucket runs."""
