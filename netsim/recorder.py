"""Records every message a collective issues, per step, on the rank that issues it.

`Recorder.wrap(transport)` returns a transport with the same `exchange` that notes, for
each round, its phase and index in the schedule, when it was posted and when it ended
(this rank's clock), and the payload bytes of each message, before passing it on: any
collective that calls `exchange` is recorded without knowing it. Cross-rank figures (who
waited for whom) need every rank's records on one clock: `netsim.traffic` derives them
after the run.

The clock is read once per round boundary: a step's readings are when its first round was
posted, then when each round ended, which is when the next one was posted. A round ends
once its data is in place, so the work a collective does between two exchanges (adding
what a reduce round received) belongs to the round before; the wrapper sees that as the
time from one exchange's return to the next call, the executor reads the clock after its
adds. Posting times stay exact, and the rounds' durations add up to the collective's time.

Recording must cost next to nothing on the default job, whose whole step is well under a
millisecond, so there are two ways in. The wrapper's hook (one call per round) appends
to `times` and `rounds`, and `tally` counts the bytes of the step's messages. Training's
executor, offered `inline_recording`, does less: it binds its views once per buffer and
says so once (`record_inline`), which counts its messages once for every later step
(`inline_tally`); every step it then reads the clock itself and stores reading k into
slots[base + k]. With a step file attached (netsim.steplog.StepLog.attach) those slots are
the file's open frame: the record is written as the step runs, and the file's `commit`
closes it with one store. A recorder takes its steps one way or the other, not both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


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
        # This step's readings through the wrapper. Both lists are cleared in place, never
        # replaced.
        self.times = []  # first round posted, then each round's end (its successor's post)
        self.rounds = []  # per exchange: ((label, sends, recvs),)
        # The inline executor's: its messages, their tally and readings, where they go.
        self._inline = None
        self.inline_tally = None
        self._nslots = 0
        self.slots, self.base = None, 0  # reading k of a step goes to slots[base + k]
        self.log = None  # the StepLog attached, if any

    def wrap(self, transport) -> RecordingTransport:
        return RecordingTransport(transport, self)

    def record_inline(self, messages) -> None:
        """An executor records inline from now on and sends `messages`, ((label, sends,
        recvs) per round), every step: counted once here. It stores reading k of a step
        (posted first, then each round's end) into slots[base + k], and nothing else."""
        if self.rounds:
            raise ValueError("a step recorded both inline and through the wrapper's exchange")
        if messages is not self._inline:
            self._inline, self.inline_tally = messages, tally(self.rank, [messages])
            self._nslots = len(messages) + 1 if messages else 0
        log = self.log
        self.slots, self.base = log.open(self.inline_tally) if log is not None else (self.scratch(), 0)

    def scratch(self) -> list:
        """Slots for the inline executor's readings where no step file takes them."""
        return [0] * self._nslots

    def tally(self) -> Tally:
        """What this step's rounds so far sent and received (HIDDEN once a collective hid
        its messages)."""
        if not self.observable:
            return HIDDEN
        if not self.rounds and self.inline_tally is not None:
            return self.inline_tally
        return tally(self.rank, self.rounds)

    def readings(self) -> list:
        """This step's clock readings: the wrapper's, or else the inline executor's."""
        if self.rounds or self.inline_tally is None:
            return self.times[:]
        return list(self.slots[self.base:self.base + self._nslots])

    def clear(self) -> None:
        """Forget this step's readings through the wrapper: the next step starts (the
        inline executor's are overwritten by its next step)."""
        self.times.clear()
        self.rounds.clear()


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
        if recorder.inline_tally is not None:
            raise ValueError("a step recorded both inline and through the wrapper's exchange")
        clock, times = recorder.clock, recorder.times
        if times:  # the previous round ends where this one is posted (its adds included)
            times[-1] = clock()
        else:
            times.append(clock())
        self.transport.exchange(sends, recvs, tag, label)
        times.append(clock())
        recorder.rounds.append(((label, sends, recvs),))

    def inline_recording(self):
        """(the bare transport's exchange, the clock, the recorder), for an executor that
        records its rounds itself, a Python call less per round (Recorder.record_inline)."""
        return self.transport.exchange, self.recorder.clock, self.recorder

    def native_allreduce(self, buf) -> None:
        # The library chooses its own algorithm and messages; pretending to know its bytes
        # would put invented numbers into a report about real traffic.
        self.recorder.observable = False
        self.transport.native_allreduce(buf)

    def __getattr__(self, name):
        return getattr(self.transport, name)
