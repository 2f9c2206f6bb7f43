"""Cuts of an async run: moments every rank agrees on, where a checkpoint is taken.

A cut is a replica step k where every replica has taken exactly its first k steps and every
push sent before has been applied: k a multiple of n_push and n_fetch (a push and a fetch
happen there anyway), above every replica's first step and below its last (ranks.Layout.
can_cut). Server 0 coordinates, and no replica waits for another while none is due:

  - A replica at a cut it may take (Asking) looks for server 0's STOP notice without
    waiting (MPI_Iprobe); if it has caught a signal, has a notice, or --checkpoint-every
    falls there, it ASKs server 0, with the signal, and waits for the answer.
  - Server 0 (Coordinator), at a stop (a replica's ASK with a signal, its own signal, or
    another server's, sent on as a STOP), sends a STOP notice to every replica that has
    neither asked nor finished, so each asks at its next cut. Once every replica has asked
    or is done it answers every ASK: the largest k asked and the signal, or -1 (no cut)
    when a replica is done already (the run is ending anyway).
  - Every replica goes on to that k, then sends each server a CUT; a server that has
    counted R of them has applied every push before the cut (MPI's non-overtaking rule)
    and leaves its loop, and all ranks meet in role.AsyncRole.cut.

Periodic cuts need no more: every replica asks at the same k, and none passes it before
all have asked. A replica that asked first waits for the others, as it would in the
checkpoint's collective. So a replica that stops holds the others up here (and at the
run's end) and nowhere else: they train on to the cut and wait there, where past
--comm-timeout the watchdog names it and ends the job.
"""

from __future__ import annotations

import time

import numpy as np

CUT = 7104  # replica -> every server, 0 bytes: it has taken its steps up to the cut
ASK = 7105  # replica <-> server 0: (step, signal) asked, (cut step or -1, signal) answered
STOP = 7106  # server 0 -> replica, or another server -> server 0: (signal,), a stop asked
_EMPTY = np.empty(0, dtype=np.uint8)


class Asking:
    """A replica's side: the notice, the question, the CUT."""

    def __init__(self, layout, transport):
        self.layout, self.transport = layout, transport
        self.coordinator = layout.servers[0]
        self._ask, self._answer = np.zeros(2, np.int64), np.zeros(2, np.int64)
        self._notice = np.zeros(1, np.int64)

    def notice(self) -> int:
        """Server 0's STOP notice, taken if one has come (its signal), else 0; does not wait."""
        if not self.transport.iprobe(self.coordinator, STOP):
            return 0
        self.transport.exchange([], [(self.coordinator, self._notice)], STOP)
        return int(self._notice[0])

    def ask(self, done: int, signal: int, dog) -> tuple[int, int]:
        """After the replica's first `done` steps, a cut it may take: server 0's answer, (the
        step every replica cuts after, or -1 for none; the signal agreed, or 0)."""
        self._ask[:] = done, signal
        dog.where = (done - 1, "the cut's agreement", time.perf_counter_ns())
        self.transport.exchange([(self.coordinator, self._ask)],
                                [(self.coordinator, self._answer)], ASK)  # fmt: skip
        dog.where = (done - 1, None, time.perf_counter_ns())
        return int(self._answer[0]), int(self._answer[1])

    def cut(self) -> None:
        """Every server hears that this replica is at the cut (after its pushes, in order)."""
        self.transport.exchange([(s, _EMPTY) for s in self.layout.servers], [], CUT)


class Coordinator:
    """A server's side: server 0 agrees on the cut; another sends its signal on to it."""

    def __init__(self, rank: int, layout, transport):
        self.layout, self.transport = layout, transport
        self.is_first = rank == layout.servers[0]
        self.asks = {}  # replica -> (step, signal) asked
        self.finished = set()  # the replicas done
        self.stopping = 0  # the stop asked (its signal)
        self.ending = False  # a replica is done: no more cuts
        self.told = False  # this server's own signal passed on
        self.cuts = 0  # the replicas at the cut

    def receive(self, src: int, tag: int, numbers: np.ndarray) -> bool:
        """A CUT, ASK or STOP message (`numbers`: what it holds, as int64) from `src`: True
        once every replica has sent its CUT (then every push of theirs before it has been
        applied)."""
        if tag == CUT:
            self.cuts += 1
            if self.cuts < self.layout.replicas:
                return False
            self.cuts = 0
            return True
        if tag == ASK:  # (server 0)
            self.asks[src] = (int(numbers[0]), int(numbers[1]))
            self.stop(int(numbers[1]))
            self.settle()
        else:  # STOP (server 0): another server caught a signal
            self.stop(int(numbers[0]))
        return False

    def caught(self, signal: int) -> None:
        """This server's own signal (once)."""
        if signal and not self.told:
            self.told = True
            self.stop(signal)

    def stop(self, signal: int) -> None:
        """A stop asked (0: none): another server tells server 0; server 0 notifies every
        replica that has neither asked nor finished, once."""
        if not signal:
            return
        if not self.is_first:
            stop = np.array([signal], np.int64)
            self.transport.exchange([(self.layout.servers[0], stop)], [], STOP)
        elif not self.stopping and not self.ending:
            self.stopping = signal
            told = [r for r in range(self.layout.replicas)
                    if r not in self.asks and r not in self.finished]  # fmt: skip
            notice = np.array([signal], np.int64)
            self.transport.exchange([(r, notice) for r in told], [], STOP)

    def done(self, replica: int) -> None:
        self.finished.add(replica)
        if self.is_first:
            self.settle()

    def settle(self) -> None:
        """Server 0, once every replica has asked or is done: the answer to those that asked,
        the largest step asked and the signal, or -1 (no cut) if any is done already."""
        if not self.asks or len(self.asks) + len(self.finished) < self.layout.replicas:
            return
        if self.finished:
            answer, self.ending = np.array([-1, 0], np.int64), True
        else:
            signal = max([self.stopping, *(s for _, s in self.asks.values())])
            answer = np.array([max(k for k, _ in self.asks.values()), signal], np.int64)
        self.transport.exchange([(r, answer) for r in sorted(self.asks)], [], ASK)
        self.asks, self.stopping = {}, 0
