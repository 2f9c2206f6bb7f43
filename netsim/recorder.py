"""Records every message a collective issues, per step, on the rank that issues it.

`Recorder.wrap(transport)` returns a transport with the same `exchange` that notes, for
each round, its phase and index in the schedule, when it was posted and when it completed
(this rank's clock), and the payload bytes of each message, before passing it on. The
executor of a schedule knows nothing of recording. Cross-rank figures (who waited for
whom) need every rank's records on one clock: `netsim.traffic` derives them after the run.
"""

from __future__ import annotations

import time
from collections import Counter


class Recorder:
    def __init__(self, rank: int, clock=time.perf_counter):
        self.rank = rank
        self.clock = clock
        self.observable = True  # False once a collective hides its messages (MPI_Allreduce)
        self.reset()

    def reset(self) -> None:
        self.bytes_sent = 0
        self.bytes_recv = 0
        self.messages = 0
        self.sent_to = Counter()  # dst -> bytes
        self.messages_to = Counter()
        self.rounds = []  # [phase, index in phase, posted, completed]

    def wrap(self, transport) -> RecordingTransport:
        return RecordingTransport(transport, self)

    def record(self, sends, recvs, label, posted: float, completed: float) -> None:
        for dst, buf in sends:
            self.bytes_sent += buf.nbytes
            self.sent_to[dst] += buf.nbytes
            self.messages_to[dst] += 1
        self.messages += len(sends)
        self.bytes_recv += sum(buf.nbytes for _, buf in recvs)
        if label is not None:
            self.rounds.append([label.phase, label.index, posted, completed])

    def take(self) -> dict:
        """This step's record (None where the collective hid its messages); resets."""
        if self.observable:
            counts = {"bytes_sent": self.bytes_sent, "bytes_recv": self.bytes_recv,
                      "messages": self.messages,
                      "links": [[self.rank, dst, self.sent_to[dst], self.messages_to[dst]]
                                for dst in sorted(self.sent_to)],
                      "rounds": self.rounds}
        else:
            counts = {"bytes_sent": None, "bytes_recv": None, "messages": None, "links": None,
                      "rounds": None}
        self.reset()
        return counts


class RecordingTransport:
    def __init__(self, transport, recorder: Recorder):
        self.transport, self.recorder = transport, recorder

    def exchange(self, sends, recvs, tag: int = 0, label=None) -> None:
        clock = self.recorder.clock
        posted = clock()
        self.transport.exchange(sends, recvs, tag, label)
        self.recorder.record(sends, recvs, label, posted, clock())

    def native_allreduce(self, buf) -> None:
        # The library chooses its own algorithm and messages; pretending to know its bytes
        # would put invented numbers into a report about real traffic.
        self.recorder.observable = False
        self.transport.native_allreduce(buf)

    def __getattr__(self, name):
        return getattr(self.transport, name)
