"""A GPU gradient staged through host memory, overlapped with the all-reduce's rounds.

The schedules run on a host buffer (any MPI will do, CUDA-aware or not). Rather than copy
the whole gradient to the host and only then start, `plan` cuts the copy into pieces in the
order the schedule's rounds first touch the buffer: the piece round 0 sends and adds into
first, then what round 1 touches for the first time, and so on, and whatever no round
touches last (with one rank, all of it). Every piece is queued at once on a copy stream,
with a mark after each round's pieces; the executor waits for round k's mark just before
round k (ScheduleAllreduce.stage), so the copy of what later rounds need runs while the
earlier rounds send. A piece is waited for before any round reads or writes it, so a
receive never races a copy. After the all-reduce the whole buffer goes back to the device.

The copier is the device's business (maths.backend.CupyCopier: cudaMemcpyAsync on its own
stream, an event per mark); the tests run the same plan on NumPy with a copier that does
each copy only when it is waited for, so a missing wait gives a wrong sum. Recording, every
step's copies go into its record beside the collective's messages: n * itemsize bytes each
way, and how long each direction took (the copier's `times_ns`: on a GPU, its events'
elapsed time, so the device-to-host time is the copy stream's, overlapped with the rounds).
"""

from __future__ import annotations

from .protocol import RoundExecutor


def plan(touched_by_round, n: int) -> list[list[tuple[int, int]]]:
    """Per round, the pieces (lo, hi) to have on the host before it runs (what it is the
    first to touch), then one more list: the rest of [0, n). touched_by_round: per round,
    the (lo, hi) ranges it sends, receives or adds into."""
    covered: list[tuple[int, int]] = []  # disjoint, sorted
    out = []
    for ranges in touched_by_round:
        new = []
        for lo, hi in sorted(ranges):
            for piece in _minus((lo, hi), covered + new):
                new.append(piece)
        covered = _merge(covered + new)
        out.append(_merge(new))
    out.append(list(_minus((0, n), covered)) if n else [])
    return out


def _minus(span, covered):
    """The parts of span not in the (disjoint) covered ranges, in order."""
    lo, hi = span
    for clo, chi in sorted(covered):
        if chi <= lo or clo >= hi:
            continue
        if clo > lo:
            yield (lo, clo)
        lo = max(lo, chi)
        if lo >= hi:
            return
    if lo < hi:
        yield (lo, hi)


def _merge(ranges):
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


class StagedAllreduce:
    """The all-reduce of a device gradient through its host mirror: pieces copied in the
    order the rounds need them (the executor waits for each round's), the sum copied back.
    (MPI_Allreduce is one round that touches everything: the whole buffer first.)"""

    def __init__(self, allreduce: RoundExecutor, copier, device_buf, host_buf):
        self.allreduce, self.copier = allreduce, copier
        self.device, self.host = device_buf, host_buf
        self.pieces = plan(allreduce.touched(), host_buf.size)
        allreduce.stage(copier.wait)
        self.recorder = None

    def record_into(self, recorder) -> None:
        if recorder is not None:
            recorder.staged(self.host.nbytes, self.host.nbytes)
        self.recorder = recorder
        self.allreduce.record_into(recorder)

    def __call__(self, host_buf) -> None:
        copier = self.copier
        copier.begin(self.device, self.host)  # after the device's queued work (the gradient)
        for k, pieces in enumerate(self.pieces):
            for lo, hi in pieces:
                copier.to_host(lo, hi)
            copier.mark(k)
        self.allreduce(host_buf)
        copier.wait(len(self.pieces) - 1)  # what no round touched (all of it, on one rank)
        copier.to_device()
        if self.recorder is not None:
            self.recorder.copy_times(*copier.times_ns())


class DirectAllreduce:
    """The all-reduce on the GPU buffer itself, through a CUDA-aware MPI (--cuda-aware-mpi):
    the schedule's adds run on the GPU. MPI reads and writes device memory outside the
    stream's order, so the stream is synchronised before every round (after the gradient,
    and after the adds of the round before), and once more at the end, so that the step's
    times mean the sum is there. No copies: the recorder counts only the messages."""

    def __init__(self, allreduce: RoundExecutor, synchronize):
        self.allreduce, self.synchronize = allreduce, synchronize
        allreduce.stage(lambda k: synchronize())

    def record_into(self, recorder) -> None:
        self.allreduce.record_into(recorder)

    def __call__(self, buf) -> None:
        self.allreduce(buf)
        self.synchronize()
