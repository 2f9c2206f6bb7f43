"""Records every message a collective issues, per step, on the rank that issues it.

`Recorder.wrap(transport)` returns a transport with the same `exchange` that notes, for
each round, its phase and index in the schedule, when it was posted and when it completed
(this rank's clock), and the payload bytes of each message, before passing it on: any
collective that calls `exchange` is recorded without knowing it. Cross-rank figures (who
waited for whom) need every rank's records on one clock: `netsim.traffic` derives them
after the run.

Recording must cost next to nothing on the default job, whose whole step is well under a
millisecond: the hook (one call per round) reads the clock twice and appends; `take`, once
a step, counts the bytes of the step's messages only when they are not the very message
lists it counted the step before (an executor that binds its views once, as training's
does, hands the transport the same lists every step; their sizes cannot change).
Training's executor goes one step further and, offered `inline_recording`, reads the clock
around each round itself, a Python call less per round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from operator import is_


@dataclass(frozen=True)
class Tally:
    """What one step's rounds sent and received, counted from the buffers handed over
    (all None where the collective hid its messages: HIDDEN)."""

    bytes_sent: int | None
    bytes_recv: int | None
    messages: int | None
    links: tuple[tuple[int, int, int, int], ...] | None  # (src, dst, bytes, messages) per peer sent to
    round_labels: tuple[tuple[str, int] | None, ...] | None  # (phase, index) per round; None: unlabelled


HIDDEN = Tally(None, None, None, None, None)


class Recorder:
    def __init__(self, rank: int, clock=time.perf_counter):
        self.rank = rank
        self.clock = clock
        self.observable = True  # False once a collective hides its messages (MPI_Allreduce)
        self.times = []  # posted, completed, posted, completed, ... (this step's rounds)
        self.rounds = []  # per exchange or bound set of rounds: ((label, sends, recvs), ...)
        self._counted = None  # the previous step's `rounds`, kept alive so `is` stays sound
        self._tally = None

    def wrap(self, transport) -> RecordingTransport:
        return RecordingTransport(transport, self)

    def take(self) -> tuple[Tally, list | None]:
        """This step's tally and its rounds' clock readings (posted, completed per round;
        None where the collective hid its messages); resets for the next step."""
        times, rounds = self.times, self.rounds
        self.times, self.rounds = [], []
        if not self.observable:
            return HIDDEN, None
        counted = self._counted
        if counted is None or len(counted) != len(rounds) or not all(map(is_, rounds, counted)):
            self._tally, self._counted = tally(self.rank, rounds), rounds
        return self._tally, times


def tally(rank: int, rounds: list) -> Tally:
    sent = received = messages = 0
    sent_to, messages_to, labels = {}, {}, []
    for label, sends, recvs in (triple for group in rounds for triple in group):
        for dst, buf in sends:
            sent += buf.nbytes
            sent_to[dst] = sent_to.get(dst, 0) + buf.nbytes
            messages_to[dst] = messages_to.get(dst, 0) + 1
        messages += len(sends)
        received += sum(buf.nbytes for _, buf in recvs)
        labels.append(None if label is None else (label.phase, int(label.index)))
    links = tuple((rank, dst, sent_to[dst], messages_to[dst]) for dst in sorted(sent_to))
    return Tally(sent, received, messages, links, tuple(labels))


class RecordingTransport:
    def __init__(self, transport, recorder: Recorder):
        self.transport, self.recorder = transport, recorder

    def exchange(self, sends, recvs, tag: int = 0, label=None) -> None:
        recorder = self.recorder
        clock, times = recorder.clock, recorder.times
        times.append(clock())
        self.transport.exchange(sends, recvs, tag, label)
        times.append(clock())
        recorder.rounds.append(((label, sends, recvs),))

    def inline_recording(self):
        """(the bare transport's exchange, the recorder), for an executor that records its
        rounds itself, a Python call less per round: per round it appends the clock before
        and after the bare exchange to recorder.times, as `exchange` does, and once per call
        the tuple of every round's (label, sends, recvs) to recorder.rounds: the same tuple
        while it sends the same views, so `take` counts them once."""
        return self.transport.exchange, self.recorder

    def native_allreduce(self, buf) -> None:
        # The library chooses its own algorithm and messages; pretending to know its bytes
        # would put invented numbers into a report about real traffic.
        self.recorder.observable = False
        self.transport.native_allreduce(buf)

    def __getattr__(self, name):
        return getattr(self.transport, name)
