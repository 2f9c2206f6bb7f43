"""Executes a netsim schedule on a flat buffer over a transport: the MPI executor, beside its
naive sibling, MPI_Allreduce (NativeAllreduce). Both keep exchange.protocol.RoundExecutor.

Its simplest sibling is `netsim.algorithms.execute`, which runs the same rounds for every
rank in one process and is the oracle this executor is tested against. Here the schedule is
compiled once into this rank's own rounds, holding views of the buffer, so a step is one
transport call per round (prepared once per buffer: MPI's persistent requests) plus an
in-place add for reduced slices. Nothing copies the whole buffer: copy rounds receive
straight into their slice, and reduce rounds receive into one scratch array no longer than
the largest round's incoming data. A round may give a rank
several messages for the same slice (a tree parent hears from both children): each lands in
its own part of the scratch and is added in the schedule's order, so every rank that forms a
sum forms it the same way. A round may also give a rank nothing to receive, or nothing to send.

Recording (netsim.record.recorder) happens here, in the loop, not in a wrapper around the
transport: a Python call less per round, and one clock reading per round boundary, stored
as reading k of the step (the recorder's `readings()`: only netsim.record knows where it
lies in the step file).
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim import algorithms

from .protocol import Transport


@dataclass(frozen=True)
class _RankRound:
    sends: tuple[tuple[int, int, int], ...]  # (dst, lo, hi)
    # (src, lo, hi, scratch offset): received into the scratch and added where the offset
    # is >= 0 (a reduce), straight into buf[lo:hi] where it is -1 (a copy)
    recvs: tuple[tuple[int, int, int, int], ...]
    tag: int
    label: algorithms.Round


class ScheduleAllreduce:
    """In-place all-reduce (sum) of a buffer by executing a schedule on this rank; with a
    recorder (`record_into`), every step's round times go into its step file."""

    def __init__(self, schedule: algorithms.Schedule, rank: int, transport: Transport, xp, dtype):
        self.schedule, self.transport, self.recorder = schedule, transport, None
        # Tags only label rounds for debugging (MPI keeps messages between two ranks in order);
        # 32767 is the smallest MPI_TAG_UB the standard allows.
        self.rounds = tuple(_compile(r, rank, tag % 32768) for tag, r in enumerate(schedule.rounds))
        scratch = max(
            (sum(hi - lo for _, lo, hi, off in r.recvs if off >= 0) for r in self.rounds), default=0
        )
        self.scratch, self._add = xp.empty(scratch, dtype=dtype), xp.add
        self._buf = None  # the buffer bound
        self._bound = self._messages = ()
        self._wait = None  # staging: called with round k's index before it runs

    def touched(self) -> list[list[tuple[int, int]]]:
        """Per round, the (lo, hi) ranges of the buffer this rank sends, receives or adds
        into: what staging.plan orders the host copy by."""
        return [
            [(lo, hi) for _, lo, hi in r.sends] + [(lo, hi) for _, lo, hi, _ in r.recvs]
            for r in self.rounds
        ]

    def stage(self, wait) -> None:
        """Call wait(k) before round k runs, every step (staging.StagedAllreduce)."""
        self._wait, self._buf = wait, None  # bound again at the next call, with the waits

    def record_into(self, recorder) -> None:
        """Record every later step into `recorder` (None: record nothing)."""
        self.recorder = recorder
        if recorder is not None and self._buf is not None:
            recorder.bind(self._messages)

    def __call__(self, buf) -> None:
        if buf is not self._buf:
            self.bind(buf)
        add, recorder = self._add, self.recorder
        if recorder is None:
            for run, adds, _ in self._bound:
                run()
                for dst, src in adds:
                    add(dst, src, out=dst)
            return
        if self._bound:  # a world of one rank has no rounds, and nothing to read
            readings, clock = recorder.readings(), recorder.clock
            readings[0] = clock()
            for run, adds, k in self._bound:
                run()
                for dst, src in adds:
                    add(dst, src, out=dst)
                readings[k] = clock()

    def bind(self, buf) -> None:
        """Views of `buf` and the scratch for every round, made once per buffer (training
        passes the same gradient buffer every step, and binds it before the first): a step
        then slices nothing, and the recorder counts the messages once."""
        if buf.shape != (self.schedule.nelems,):
            raise ValueError(
                f"buffer of shape {buf.shape}, schedule made for {self.schedule.nelems}"
            )
        scratch, bound, messages = self.scratch, [], []
        for k, r in enumerate(self.rounds, 1):
            sends = [(dst, buf[lo:hi]) for dst, lo, hi in r.sends]
            recvs = [
                (src, scratch[off : off + hi - lo] if off >= 0 else buf[lo:hi])
                for src, lo, hi, off in r.recvs
            ]
            adds = tuple(
                (buf[lo:hi], scratch[off : off + hi - lo]) for _, lo, hi, off in r.recvs if off >= 0
            )
            run = prepared(self.transport, sends, recvs, r.tag)
            if self._wait is not None:  # the round's part of the host copy first
                run = _after(self._wait, k - 1, run)
            # k: the slot of the reading after it
            bound.append((run, adds, k))
            messages.append((r.label, sends, recvs))
        self._buf, self._bound, self._messages = buf, tuple(bound), tuple(messages)
        if self.recorder is not None:
            self.recorder.bind(self._messages)


class NativeAllreduce:
    """MPI_Allreduce: the library's own algorithm, its messages not observable. To staging it
    is one round that touches the whole buffer."""

    schedule = None

    def __init__(self, transport: Transport, nelems: int):
        self.transport, self.nelems, self._wait = transport, nelems, None

    def touched(self) -> list[list[tuple[int, int]]]:
        return [[(0, self.nelems)]]

    def stage(self, wait) -> None:
        self._wait = wait

    def bind(self, buf) -> None:
        """Nothing to make: the library takes the buffer as it comes."""

    def record_into(self, recorder) -> None:
        if recorder is not None:
            recorder.bind(None)  # steps are recorded, their messages hidden

    def __call__(self, buf) -> None:
        if self._wait is not None:
            self._wait(0)
        self.transport.native_allreduce(buf)


def prepared(transport: Transport, sends, recvs, tag: int):
    """A callable of no arguments that does this round's exchange: the transport's own
    prepared form where it has one, else a call of its exchange."""
    prepare = getattr(transport, "prepare", None)
    if prepare is not None:
        return prepare(sends, recvs, tag)
    exchange = transport.exchange
    return lambda: exchange(sends, recvs, tag)


def _after(wait, k: int, run):
    def staged():
        wait(k)
        run()

    return staged


def make_allreduce(
    algorithm: algorithms.Algorithm,
    world_size: int,
    rank: int,
    nelems: int,
    transport: Transport,
    xp,
    dtype,
    *,
    node_of_rank=None,
    segments=None,
    channels: int = 1,
):
    """This rank's all-reduce by `algorithm`; node_of_rank, segments and channels are the
    context the algorithms take (netsim.algorithms.base.Algorithm)."""
    schedule = algorithm.schedule(
        world_size, nelems, node_of_rank=node_of_rank, segments=segments, channels=channels
    )
    if schedule is None:
        return NativeAllreduce(transport, nelems)
    return ScheduleAllreduce(schedule, rank, transport, xp, dtype)


def _compile(rnd: algorithms.Round, rank: int, tag: int) -> _RankRound:
    out = rnd.src == rank
    sends = tuple(
        (int(d), int(s), int(s + c))
        for d, s, c in zip(rnd.dst[out], rnd.start[out], rnd.count[out])
    )
    mine = rnd.dst == rank
    recvs, offset = [], 0
    for src, start, count, adds in zip(
        rnd.src[mine], rnd.start[mine], rnd.count[mine], rnd.adds[mine]
    ):
        recvs.append((int(src), int(start), int(start + count), offset if adds else -1))
        offset += int(count) if adds else 0
    _check_disjoint(sends, recvs, rnd)
    return _RankRound(sends, tuple(recvs), tag, rnd)


def _check_disjoint(sends, recvs, rnd) -> None:
    # A copy receives straight into the buffer; that is only safe if no slice being sent in
    # the same round is overwritten while the send may still be reading it, and if no other
    # message of the round lands on the same elements (their order is undefined).
    for i, (_, rlo, rhi, off) in enumerate(recvs):
        if off >= 0:  # a reduce: into the scratch, added after the round
            continue
        if any(lo < rhi and rlo < hi for _, lo, hi in sends):
            raise ValueError(
                f"schedule {rnd.phase} round {rnd.index} receives into a slice it is sending"
            )
        if any(lo < rhi and rlo < hi for j, (_, lo, hi, _) in enumerate(recvs) if j != i):
            raise ValueError(
                f"schedule {rnd.phase} round {rnd.index} receives twice into one slice"
            )
