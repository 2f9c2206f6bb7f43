"""Records every message a collective issues, per step, on the rank that issues it.

`Recorder.wrap(transport)` returns a transport with the same `exchange` that notes, for
each round, its phase and index in the schedule, when it was posted and when it completed
(this rank's clock), and the payload bytes of each message, before passing it on. The
executor of a schedule knows nothing of recording. Cross-rank figures (who waited for
whom) need every rank's records on one clock: `netsim.traffic` derives them after the run.
"""

from __future__ import annotations

import time


class Recorder:
    """Per step: which rounds ran when, and every message's bytes. The hot path (one call per
    round) only reads the clock twice and appends; counting waits for `take`, once a step,
    because the default job's whole step is well under a millisecond."""

    def __init__(self, rank: int, clock=time.perf_counter):
        self.rank = rank
        self.clock = clock
        self.observable = True  # False once a collective hides its messages (MPI_Allreduce)
        self.log = []  # (label, posted, completed, sends, recvs) per round

    def wrap(self, transport) -> RecordingTransport:
        return RecordingTransport(transport, self)

    def take(self) -> dict:
        """This step's record (None where the collective hid its messages); resets."""
        log, self.log = self.log, []
        if not self.observable:
            return {"bytes_sent": None, "bytes_recv": None, "messages": None, "links": None, "rounds": None}
        sent = received = messages = 0
        sent_to, messages_to, rounds = {}, {}, []
        for label, posted, completed, sends, recvs in log:
            for dst, buf in sends:
                n = buf.nbytes
                sent += n
                sent_to[dst] = sent_to.get(dst, 0) + n
                messages_to[dst] = messages_to.get(dst, 0) + 1
            messages += len(sends)
            for _, buf in recvs:
                received += buf.nbytes
            if label is not None:
                rounds.append([label.phase, label.index, posted, completed])
        return {"bytes_sent": sent, "bytes_recv": received, "messages": messages,
                "links": [[self.rank, dst, sent_to[dst], messages_to[dst]] for dst in sorted(sent_to)],
                "rounds": rounds}


class RecordingTransport:
    def __init__(self, transport, recorder: Recorder):
        self.transport, self.recorder = transport, recorder
        self.clock = recorder.clock

    def exchange(self, sends, recvs, tag: int = 0, label=None) -> None:
        posted = self.clock()
        self.transport.exchange(sends, recvs, tag, label)
        self.recorder.log.append((label, posted, self.clock(), sends, recvs))

    def native_allreduce(self, buf) -> None:
        # The library chooses its own algorithm and messages; pretending to know its bytes
        # would put invented numbers into a report about real traffic.
        self.recorder.observable = False
        self.transport.native_allreduce(buf)

    def __getattr__(self, name):
        return getattr(self.transport, name)
