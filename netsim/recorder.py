"""Counts every message a collective issues, per step.

`Recorder.wrap(transport)` returns a transport with the same `exchange` that tallies the
payload bytes of each message before passing it on, so the executor of a schedule needs
no knowledge of recording, and a recorder can be swapped for a richer one (per-message
times, rounds) without touching the collectives.
"""

from __future__ import annotations

from collections import Counter


class Recorder:
    def __init__(self, rank: int):
        self.rank = rank
        self.observable = True  # False once a collective hides its messages (MPI_Allreduce)
        self.reset()

    def reset(self) -> None:
        self.bytes_sent = 0
        self.bytes_recv = 0
        self.messages = 0
        self.sent_to = Counter()  # dst -> bytes
        self.messages_to = Counter()

    def wrap(self, transport) -> RecordingTransport:
        return RecordingTransport(transport, self)

    def record(self, sends, recvs) -> None:
        for dst, buf in sends:
            self.bytes_sent += buf.nbytes
            self.sent_to[dst] += buf.nbytes
            self.messages_to[dst] += 1
        self.messages += len(sends)
        self.bytes_recv += sum(buf.nbytes for _, buf in recvs)

    def take(self) -> dict:
        """This step's counts as a record (None where the collective hid them); resets."""
        if self.observable:
            counts = {"bytes_sent": self.bytes_sent, "bytes_recv": self.bytes_recv,
                      "messages": self.messages,
                      "links": [[self.rank, dst, self.sent_to[dst], self.messages_to[dst]]
                                for dst in sorted(self.sent_to)]}
        else:
            counts = {"bytes_sent": None, "bytes_recv": None, "messages": None, "links": None}
        self.reset()
        return counts


class RecordingTransport:
    def __init__(self, transport, recorder: Recorder):
        self.transport, self.recorder = transport, recorder

    def exchange(self, sends, recvs, tag: int = 0) -> None:
        self.recorder.record(sends, recvs)
        self.transport.exchange(sends, recvs, tag)

    def native_allreduce(self, buf) -> None:
        # The library chooses its own algorithm and messages; pretending to know its bytes
        # would put invented numbers into a report about real traffic.
        self.recorder.observable = False
        self.transport.native_allreduce(buf)

    def __getattr__(self, name):
        return getattr(self.transport, name)
