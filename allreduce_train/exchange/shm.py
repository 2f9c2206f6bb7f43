"""The schedules executed through shared memory: ranks of one node read each other's gradient
buffers directly, as NCCL's intra-node path reads a peer GPU's buffer over NVLink.

The gradient buffers of a node's ranks live in one MPI-3 shared-memory window
(comm.NodeWindow), so every rank maps every peer's buffer. A transfer of the schedule
between two ranks of a node is then no message: the receiver reads the sender's slice
itself, and where the round reduces, adds it into its own slice in the same pass
(`own += peer`, in the schedule's order, so every sum is formed exactly as the message
executor forms it: bit-identical). Transfers to ranks of other nodes stay MPI messages over
the transport, as the schedule executor sends them (exchange.schedule): a hierarchical
algorithm runs shared memory inside a node and the network between, as NCCL does.

Synchronisation is one counter per rank in shared memory, not barriers: a rank's counter is
2s + 2 once it has finished its round s, 2s + 1 once it has finished reading in round s
(rounds numbered across calls, each call starting with a round of its own that ends when
the rank's gradient is written, so that nobody reads last step's). So
  - before reading a peer's slice in round s, wait until that peer has finished round s - 1
    (its counter >= 2s): the slice holds what the schedule says it holds;
  - before writing its own buffer in round s, wait until every rank that read from it in
    round s - 1 has finished reading (>= 2s - 1): nobody reads a slice being overwritten;
  - in a round where a slice it writes is also read from it by a peer (a pairwise exchange:
    halving-doubling, recursive doubling), the sum goes to a scratch first, the counter says
    "read", and the slice is written only once its readers have read (two phases);
  - before returning, wait until every rank that reads from it has read for the last time:
    backward then overwrites the buffer.
A wait spins on the counter, giving the core away (sched_yield) between looks, so that a
rank waiting for a peer that shares its core lets that peer run (and sleeping between looks
while its own main thread computes: comm.Patience); every second of waiting it
asks whether the peer's process is still alive (a peer killed mid-round ends the job at once
as a lost peer, as a broken MPI channel does), and the watchdog names one that is alive but
silent (stopped) past --comm-timeout.

Memory order: a rank's stores to its buffer happen before it stores its counter, and a
reader loads the counter before it loads the data; `fence` (MPI_Win_sync) is called between
them, which is what MPI's unified memory model asks (on x86 the hardware already keeps both
orders).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from netsim import algorithms

from ..exits import PeerLost
from .protocol import Transport
from .schedule import prepared

ALIVE_EVERY_S = 1.0  # how often a long wait asks whether its peer still lives


def _give_way(waited_s: float) -> None:
    """The pause of ranks that are threads of one process (the tests): the GIL to the next."""
    os.sched_yield()


@dataclass(frozen=True, eq=False)
class Peers:
    """The ranks of this rank's node that share their buffers: each one's gradient buffer
    and its round counter (a 1-element int64 array), mapped into this process."""

    buffers: dict[int, np.ndarray]
    counters: dict[int, np.ndarray]
    fence: object  # a memory barrier of the window (MPI_Win_sync)
    alive: object  # alive(rank) -> bool: whether that rank's process still runs
    pause: object = _give_way  # pause(waited_s): one pause of a wait's loop (comm.Patience)


@dataclass(frozen=True)
class _Round:
    # every transfer into this rank, in the schedule's order: (src, lo, hi, adds, via_shm)
    incoming: tuple[tuple[int, int, int, bool, bool], ...]
    sends: tuple[tuple[int, int, int], ...]  # (dst, lo, hi) as MPI messages (other nodes)
    shm_sends: tuple[tuple[int, int, int], ...]  # (dst, lo, hi) the peers read from this rank
    label: algorithms.Round
    tag: int

    @property
    def readers(self) -> tuple[int, ...]:
        return tuple(sorted({dst for dst, _, _ in self.shm_sends}))

    def conflicts(self, lo: int, hi: int) -> bool:
        """Whether a peer reads from this rank this round what [lo, hi) overwrites."""
        return any(a < hi and lo < b for _, a, b in self.shm_sends)


class SharedMemoryAllreduce:
    """In-place all-reduce (sum) of this rank's buffer in the window, by a schedule: reads of
    the peers' buffers inside the node, messages between nodes. A RoundExecutor."""

    def __init__(self, schedule: algorithms.Schedule, rank: int, peers: Peers,
                 transport: Transport, dtype):  # fmt: skip
        self.schedule, self.rank, self.peers, self.transport = schedule, rank, peers, transport
        self.buf = peers.buffers[rank]
        if self.buf.shape != (schedule.nelems,):
            raise ValueError(f"buffer of shape {self.buf.shape}, schedule of {schedule.nelems}")
        self.dtype = np.dtype(dtype)
        group = set(peers.buffers)
        self.rounds = tuple(
            _compile(r, rank, group, tag % 32768) for tag, r in enumerate(schedule.rounds)
        )
        self.last_read = {}  # the last round in which each peer reads from this rank
        for k, r in enumerate(self.rounds):
            for dst in r.readers:
                self.last_read[dst] = k
        self.recorder, self._wait = None, None
        self._bound = tuple(self._bind(r) for r in self.rounds)

    def touched(self) -> list[list[tuple[int, int]]]:
        return [
            [(lo, hi) for _, lo, hi, _, _ in r.incoming] + [(lo, hi) for _, lo, hi in r.sends]
            + [(lo, hi) for _, lo, hi in r.shm_sends]
            for r in self.rounds
        ]  # fmt: skip

    def stage(self, wait) -> None:
        self._wait = wait

    def bind(self, buf) -> None:
        """Its buffer is the window's, bound when made."""

    def record_into(self, recorder) -> None:
        """Every call recorded: the schedule's transfers counted as its messages (a read
        from a peer is the transfer the schedule names), one reading per round boundary."""
        self.recorder = recorder
        if recorder is not None:
            recorder.bind(tuple(self._message(r) for r in self.rounds))

    def __call__(self, buf) -> None:
        if buf is not self.buf:
            raise ValueError("the shared-memory all-reduce sums its own buffer in the window")
        rec, until, publish = self.recorder, self._until, self._publish
        readings = rec.readings() if rec is not None and self.rounds else None
        clock = time.perf_counter_ns
        if readings is not None:
            readings[0] = clock()
        # Each call is a round of "the gradient is written" (backward wrote it just now),
        # then the schedule's rounds, numbered on from the rank's own counter (2s + 2 after
        # its last round s): every rank has run the same calls, so all number them alike,
        # whichever executor ran them on this window.
        ready = int(self.peers.counters[self.rank][0]) // 2
        publish(2 * ready + 2)
        previous = ()
        for k, (sources, run, ops, delayed, readers) in enumerate(self._bound):
            s = ready + 1 + k
            if self._wait is not None:
                self._wait(k)
            for src in sources:  # its round s - 1 done: the slice is as scheduled
                until(src, 2 * s)
            for dst in previous:  # nobody still reads what this round overwrites
                until(dst, 2 * s - 1)
            if run is not None:
                run()
            for add, x, y, out in ops:
                if add:
                    np.add(x, y, out=out)
                else:
                    np.copyto(out, y)
            if delayed:  # sums in the scratch until the slice's readers have read it
                publish(2 * s + 1)
                for dst in readers:
                    until(dst, 2 * s + 1)
                for own, tmp in delayed:
                    np.copyto(own, tmp)
            publish(2 * s + 2)
            previous = readers
            if readings is not None:
                readings[k + 1] = clock()
        for dst, k in self.last_read.items():  # backward overwrites the buffer next
            until(dst, 2 * (ready + 1 + k) + 1)

    def _bind(self, r: _Round):
        """What a round does, made once: the peers it waits for, the MPI exchange with other
        nodes (None: none), its adds and copies in the schedule's order, the sums it holds
        back in the scratch until the slice's readers have read, and those readers."""
        buf, peers = self.buf, self.peers.buffers
        need = sum(hi - lo for _, lo, hi, adds, shm in r.incoming if adds and not shm)
        held = {(lo, hi) for _, lo, hi, _, _ in r.incoming if r.conflicts(lo, hi)}
        need += sum(hi - lo for lo, hi in held)
        scratch, at = np.empty(need, dtype=self.dtype), 0

        def part(n):
            nonlocal at
            at += n
            return scratch[at - n : at]

        tmp = {span: part(span[1] - span[0]) for span in sorted(held)}
        started = set()  # held slices whose scratch holds a value already
        recvs, ops = [], []
        for src, lo, hi, adds, shm in r.incoming:
            span, own = (lo, hi), buf[lo:hi]
            target = tmp.get(span, own)
            base = target if span in started or span not in tmp else own
            if shm:
                given = peers[src][lo:hi]
            elif adds:
                given = part(hi - lo)
                recvs.append((src, given))
            else:  # a copy received straight into place (the scratch if a peer reads it)
                recvs.append((src, target))
                started.add(span)
                continue
            ops.append((True, base, given, target) if adds else (False, None, given, target))
            started.add(span)
        sends = [(dst, buf[lo:hi]) for dst, lo, hi in r.sends]
        run = prepared(self.transport, sends, recvs, r.tag) if sends or recvs else None
        sources = tuple(sorted({src for src, _, _, _, shm in r.incoming if shm}))
        delayed = tuple((buf[lo:hi], t) for (lo, hi), t in tmp.items())
        return sources, run, tuple(ops), delayed, r.readers

    def _message(self, r: _Round):
        """The round as the recorder counts it: every transfer of the schedule, read or sent."""
        buf = self.buf
        sends = [(dst, buf[lo:hi]) for dst, lo, hi in (*r.sends, *r.shm_sends)]
        recvs = [(src, buf[lo:hi]) for src, lo, hi, _, _ in r.incoming]
        return (r.label, sends, recvs)

    # --- the counters -----------------------------------------------------------------------

    def _publish(self, value: int) -> None:
        self.peers.fence()  # this rank's stores before its counter's
        self.peers.counters[self.rank][0] = value

    def _until(self, rank: int, value: int) -> None:
        """Wait until `rank`'s counter reaches value, giving the core away between looks."""
        counter = self.peers.counters[rank]
        if counter[0] >= value:
            self.peers.fence()
            return
        pause, now = self.peers.pause, time.monotonic
        start = now()
        deadline = start + ALIVE_EVERY_S
        while counter[0] < value:
            pause(now() - start)
            if now() > deadline:
                if not self.peers.alive(rank):
                    raise PeerLost(
                        f"rank {rank}, whose buffer this rank reads in shared memory, died "
                        f"(its process ended)"
                    )
                deadline = time.monotonic() + ALIVE_EVERY_S
        self.peers.fence()  # its counter's load before the loads of its data


def _compile(rnd: algorithms.Round, rank: int, group: set[int], tag: int) -> _Round:
    out = rnd.src == rank
    sends, shm_sends = [], []
    for d, s, c in zip(rnd.dst[out], rnd.start[out], rnd.count[out]):
        (shm_sends if int(d) in group else sends).append((int(d), int(s), int(s + c)))
    mine = rnd.dst == rank
    incoming = tuple(
        (int(src), int(s), int(s + c), bool(adds), int(src) in group)
        for src, s, c, adds in zip(rnd.src[mine], rnd.start[mine], rnd.count[mine], rnd.adds[mine])
    )
    return _Round(incoming, tuple(sends), tuple(shm_sends), rnd, tag)
