"""Executes a `netsim.schedules` schedule on a flat buffer over a transport.

The schedule is compiled once per (algorithm, world size, buffer length) into this rank's
own list of rounds, holding slices of the buffer; the per-step work is then one transport
call per round plus an in-place add for reduced slices. Nothing copies the whole buffer:
copy rounds receive straight into their slice, and reduce rounds receive into one scratch
array no longer than the largest round's incoming data. A round may give a rank several
messages for the same slice (a tree parent hears from both children): each lands in its own
part of the scratch and is added in the schedule's order, so every rank that forms a sum
forms it the same way. A round may also give a rank nothing to receive, or nothing to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from netsim import schedules

# Algorithms that are schedules, by their --allreduce name. "mpi" (the library's own
# MPI_Allreduce) is the naive sibling, outside the table because it has no schedule.
ALGORITHMS: dict[str, Callable[..., schedules.Schedule]] = schedules.ALGORITHMS
NATIVE = "mpi"
CHOICES = (*ALGORITHMS, NATIVE)


@dataclass(frozen=True)
class _RankRound:
    sends: tuple[tuple[int, int, int], ...]  # (dst, lo, hi)
    recvs: tuple[tuple[int, int, int, int], ...]  # (src, lo, hi, scratch offset or -1)
    reduce: bool
    tag: int
    label: schedules.Round


class ScheduleAllreduce:
    """In-place all-reduce (sum) of a buffer by executing a schedule on this rank."""

    def __init__(self, schedule: schedules.Schedule, rank: int, transport, xp, dtype):
        self.schedule = schedule
        self.transport = transport
        # Tags only label rounds for debugging (MPI keeps messages between two ranks in order);
        # 32767 is the smallest MPI_TAG_UB the standard allows.
        self.rounds = tuple(_compile(r, rank, tag % 32768) for tag, r in enumerate(schedule.rounds))
        scratch = max((sum(hi - lo for _, lo, hi, _ in r.recvs) for r in self.rounds if r.reduce),
                      default=0)
        self.scratch = xp.empty(scratch, dtype=dtype)
        self._buf = self._bound = self._messages = None
        self._transport = self._inline = None  # the transport last seen, its inline recording

    def __call__(self, buf) -> None:
        bound = buf is not self._buf
        if bound:
            self._bind(buf)
        transport = self.transport
        if transport is not self._transport:
            self._transport = transport
            inline = getattr(transport, "inline_recording", None)
            self._inline = inline() if inline else None
            bound = True
        if self._inline is None:
            exchange = transport.exchange
            for sends, recvs, tag, label, adds, _ in self._bound:
                exchange(sends, recvs, tag, label)
                for dst, src in adds:
                    dst += src
            return
        # Recording, timed here rather than in a wrapper: a call less per round, and one
        # clock reading per round boundary (the end of a round, its adds included, is when the
        # next is posted), stored by index into the recorder's slots, which are the step
        # file's open frame: on the default job every 100 ns of a step is about 0.2% of it
        # (bench/recording_overhead.py).
        exchange, clock, recorder = self._inline
        if bound:  # new views, or a new recorder: its messages are counted once, here
            recorder.record_inline(self._messages)
        if self._bound:
            slots, base = recorder.slots, recorder.base
            slots[base] = clock()
            for sends, recvs, tag, label, adds, i in self._bound:
                exchange(sends, recvs, tag, label)
                for dst, src in adds:
                    dst += src
                slots[base + i] = clock()

    def _bind(self, buf) -> None:
        """Views of `buf` and the scratch for every round, made once per buffer (training
        passes the same gradient buffer every step): a step then slices nothing, and a
        recorder sees the same message lists every step and tallies them once."""
        if buf.shape != (self.schedule.nelems,):
            raise ValueError(f"buffer of shape {buf.shape}, schedule made for {self.schedule.nelems}")
        scratch, bound = self.scratch, []
        for i, r in enumerate(self.rounds, 1):
            sends = [(dst, buf[lo:hi]) for dst, lo, hi in r.sends]
            if r.reduce:
                recvs = [(src, scratch[off:off + hi - lo]) for src, lo, hi, off in r.recvs]
                adds = tuple((buf[lo:hi], scratch[off:off + hi - lo]) for src, lo, hi, off in r.recvs)
            else:
                recvs = [(src, buf[lo:hi]) for src, lo, hi, _ in r.recvs]
                adds = ()
            bound.append((sends, recvs, r.tag, r.label, adds, i))  # i: its reading's slot
        self._buf, self._bound = buf, tuple(bound)
        self._messages = tuple((label, sends, recvs) for sends, recvs, _, label, _, _ in bound)


class NativeAllreduce:
    def __init__(self, transport):
        self.transport = transport
        self.schedule = None  # no schedule: its traffic is MPI's business, not observable

    def __call__(self, buf) -> None:
        self.transport.native_allreduce(buf)


def make_allreduce(algorithm: str, world_size: int, rank: int, nelems: int, transport, xp, dtype,
                   *, node_of_rank=None, segments=None):
    """The all-reduce named `algorithm` (one of CHOICES) for this rank. node_of_rank and
    segments are the context `schedules.build` passes to the algorithms that take it."""
    if algorithm == NATIVE:
        return NativeAllreduce(transport)
    schedule = schedules.build(algorithm, world_size, nelems, node_of_rank=node_of_rank,
                               segments=segments)
    return ScheduleAllreduce(schedule, rank, transport, xp, dtype)


def _compile(rnd: schedules.Round, rank: int, tag: int) -> _RankRound:
    sends = tuple((int(d), int(s), int(s + c))
                  for d, s, c in zip(rnd.dst[rnd.src == rank], rnd.start[rnd.src == rank],
                                     rnd.count[rnd.src == rank]))
    mine = rnd.dst == rank
    recvs, offset = [], 0
    for src, start, count in zip(rnd.src[mine], rnd.start[mine], rnd.count[mine]):
        recvs.append((int(src), int(start), int(start + count), offset if rnd.reduce else -1))
        offset += int(count)
    if not rnd.reduce:
        _check_disjoint(sends, recvs, rnd)
    return _RankRound(sends, tuple(recvs), rnd.reduce, tag, rnd)


def _check_disjoint(sends, recvs, rnd) -> None:
    # A copy round receives straight into the buffer; that is only safe if no slice being
    # sent in the same round is overwritten while the send may still be reading it, and if
    # no two messages of the round land on the same elements (their order is undefined).
    for i, (_, rlo, rhi, _) in enumerate(recvs):
        if any(lo < rhi and rlo < hi for _, lo, hi in sends):
            raise ValueError(f"schedule {rnd.phase} round {rnd.index} receives into a slice "
                             f"it is sending")
        if any(lo < rhi and rlo < hi for _, lo, hi, _ in recvs[:i]):
            raise ValueError(f"schedule {rnd.phase} round {rnd.index} receives twice into "
                             f"one slice")
