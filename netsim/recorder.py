"""Records every message a collective issues, per step, on the rank that issues it.

`Recorder.wrap(transport)` returns a transport with the same `exchange` that notes, for
each round, its phase and index in the schedule, when it was posted and when it ended
(this rank's clock), and the payload bytes of each message, before passing it on: any
collective that calls `exchange` is recorded without knowing it. Cross-rank figures (who
waited for whom) need every rank's records on one clock: `netsim.traffic` derives them
after the run.

The clock is read once per round boundary: `times` holds when a step's first round was
posted, then when each round ended, which is when the next one was posted. A round ends
once its data is in place, so the work a collective does between two exchanges (adding
what a reduce round received) belongs to the round before; the wrapper sees that as the
time from one exchange's return to the next call, the executor reads the clock after its
adds. Posting times stay exact, and the rounds' durations add up to the collective's time.

Recording must cost next to nothing on the default job, whose whole step is well under a
millisecond: the hook (one call per round) reads the clock and appends; `tally`, once a
step, counts the bytes of the step's messages only when they are not the very message
lists it counted the step before (an executor that binds its views once, as training's
does, hands the transport the same lists every step; their sizes cannot change).
Training's executor goes one step further and, offered `inline_recording`, reads the clock
itself, a Python call less per round; training hands `times` and the tally straight to its
step file (netsim.steplog) and then `clear`s the recorder.
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
        # This step's readings. Both lists are cleared in place, never replaced: an executor
        # may hold on to them (or to their append) from one step to the next.
        self.times = []  # first round posted, then each round's end (its successor's post)
        self.rounds = []  # per exchange or bound set of rounds: ((label, sends, recvs), ...)
        self._counted = ()  # the groups of rounds last counted, kept alive so `is` stays sound
        self._tally = None  # what they sent

    def wrap(self, transport) -> RecordingTransport:
        return RecordingTransport(transport, self)

    def tally(self) -> Tally:
        """What this step's rounds so far sent and received (HIDDEN once a collective hid
        its messages)."""
        if not self.observable:
            return HIDDEN
        rounds, counted = self.rounds, self._counted
        if self._tally is None or len(counted) != len(rounds) or not all(map(is_, rounds, counted)):
            self._tally, self._counted = tally(self.rank, rounds), tuple(rounds)
        return self._tally

    def clear(self) -> None:
        """Forget this step's readings: the next step starts."""
        self.times.clear()
        self.rounds.clear()

    def commit(self, log, step: int, loss: float, t_start_ns: int, t_comm_ns: int,
               t_comm_end_ns: int, t_end_ns: int) -> Tally:
        """The end of a step: its tally and readings to `log` (netsim.steplog.StepLog.write)
        with its fields, then clear. Returns the tally. What `tally`, `write` and `clear`
        do, in one call, for training's step: every 100 ns is 0.2% of the default job's."""
        rounds, counted, times = self.rounds, self._counted, self.times
        if len(rounds) == 1 and len(counted) == 1 and rounds[0] is counted[0] and self.observable:
            tally = self._tally  # training's executor: the very group of messages counted
        else:
            tally = self.tally()
        log.write(tally, times, step, loss, t_start_ns, t_comm_ns, t_comm_end_ns, t_end_ns)
        times.clear()
        rounds.clear()
        return tally


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
        if times:  # the previous round ends where this one is posted (its adds included)
            times[-1] = clock()
        else:
            times.append(clock())
        self.transport.exchange(sends, recvs, tag, label)
        times.append(clock())
        recorder.rounds.append(((label, sends, recvs),))

    def inline_recording(self):
        """(the bare transport's exchange, the clock, recorder.times.append,
        recorder.rounds.append), for an executor that records its rounds itself, a Python
        call less per round: it appends the clock when it posts its first round and when each
        round has ended (its adds done), and once per call the tuple of every round's (label,
        sends, recvs) to the rounds: the same tuple while it sends the same views, so
        `Recorder.tally` counts them once."""
        recorder = self.recorder
        return self.transport.exchange, recorder.clock, recorder.times.append, recorder.rounds.append

    def native_allreduce(self, buf) -> None:
        # The library chooses its own algorithm and messages; pretending to know its bytes
        # would put invented numbers into a report about real traffic.
        self.recorder.observable = False
        self.transport.native_allreduce(buf)

    def __getattr__(self, name):
        return getattr(self.transport, name)
