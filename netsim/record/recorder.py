"""What a rank records of its collectives, per step, written into its step file as it runs.

The one recording path: the executor (allreduce_train.exchange.schedule) -> this Recorder -> the
step file (netsim.record.stepfile). When an executor binds a buffer it hands over the
messages it will send every step, ((label, sends, recvs) per round, the views themselves);
`bind` counts them once (`count`: bytes, messages, links, round labels) and writes them as
a messages frame. Each step the executor then reads the clock once per round boundary and
stores reading k into `readings()[k]`, a view of the open step frame of the mapped file;
the trainer's `commit` closes the frame with the step's own fields in one store, which
opens the next. A GPU gradient staged through host memory (allreduce_train.exchange.staging)
adds its copies: their bytes once (`staged`, in the messages frame), their times every step
(`copy_times`: two slots after the readings, which stay zero on the CPU). No record is built
and nothing is copied: on the default job every 100 ns of a step is about 0.2% of it. Only
this package knows where in the file a reading lies; a writer sees the step's readings.

The clock is read once per round boundary: when the first round is posted, then when each
round ends, which is when the next is posted. A round ends once its data is in place, so
the adding a reduce round does belongs to it; posting times stay exact and the rounds'
durations add up to the collective's time.

Crash-safe by construction: a frame counts once its closing size is stored, which `commit`
does last, so a killed rank keeps every step it finished and none of the one it was in.
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import struct
import time
from dataclasses import dataclass

from . import stepfile

_MAX_GROWTH = 4 << 20  # bytes the file grows by at most at a time
# Closing a step frame: its fields and closing size, then the next step frame's size and kind.
_CLOSE = struct.Struct("<" + stepfile.FIELDS_FORMAT + "III")
_BACK = _CLOSE.size - stepfile.FRAME.size  # where the fields start, back from the end of the frame


@dataclass(frozen=True)
class Tally:
    """What one step's rounds send and receive, counted from the buffers handed over (all
    None where the collective hides its messages: HIDDEN)."""

    bytes_sent: int | None
    bytes_recv: int | None
    messages: int | None
    # (src, dst, bytes, messages) per peer sent to
    links: tuple[tuple[int, int, int, int], ...] | None
    # (phase, index) per round; None: unlabelled
    round_labels: tuple[tuple[str, int] | None, ...] | None
    # what a step copies between GPU and host memory around the collective (staging)
    d2h_bytes: int = 0
    h2d_bytes: int = 0
    # per bucket (offset, bytes, rounds, bytes_sent, bytes_recv, messages, links), in launch
    # order; None: the step is not bucketed (stepfile.BUCKET)
    buckets: tuple | None = None


HIDDEN = Tally(None, None, None, None, None)


def count(rank: int, messages) -> Tally:
    """The tally of ((label, sends, recvs), ...) per round, sends and recvs [(peer, view)];
    None: the collective hides its messages (MPI_Allreduce)."""
    if messages is None:
        return HIDDEN
    sent = received = nmessages = 0
    sent_to, messages_to, labels = {}, {}, []
    for label, sends, recvs in messages:
        for dst, buf in sends:
            sent += buf.nbytes
            sent_to[dst] = sent_to.get(dst, 0) + buf.nbytes
            messages_to[dst] = messages_to.get(dst, 0) + 1
        nmessages += len(sends)
        received += sum(buf.nbytes for _, buf in recvs)
        labels.append(None if label is None else (label.phase, int(label.index)))
    links = tuple((rank, dst, sent_to[dst], messages_to[dst]) for dst in sorted(sent_to))
    return Tally(sent, received, nmessages, links, tuple(labels))


class Recorder:
    """A rank's step file, open for its steps: `bind` what the collective sends, store the
    step's readings into `readings()`, `commit` the step.

    Between two steps one step frame is open at the end of the file: its header written, its
    reading slots waiting for the collective, its fields for `commit`. A reader does not see
    it until then.
    """

    def __init__(
        self, path: str, rank: int, steps_per_epoch: int, samples: int, capacity: int = 1 << 20
    ):
        self.rank = rank
        self.clock = time.perf_counter_ns  # the clock of every reading (the trainer's too)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.map, self.capacity = None, 0
        self.size = 0  # the end of the last closed frame
        self._slots = None  # the map as i64 slots (every frame starts at a multiple of 8 bytes)
        self._base = 0  # the slot of the open frame's first reading
        self._nreadings = 0  # readings a step of the bound collective stores
        self.tally = None  # what the open frame's steps send (the last messages frame)
        self.copies = (0, 0)  # what every step copies (d2h, h2d bytes): `staged`
        self._copy_slot = 0  # _slots[_base + _copy_slot]: the open frame's d2h_ns, h2d_ns
        self._fsize = 0  # the size of a step frame under it
        self._last = -1  # the last end of a frame after which the next still fits
        self._bucket_at = []  # where each bucket's readings start in a step's
        self._grow(-(-capacity // 8) * 8)
        self._append(stepfile.header(rank, steps_per_epoch, samples))

    def staged(self, d2h_bytes: int, h2d_bytes: int) -> None:
        """Every step from the next bind copies these bytes between the GPU and host memory
        around its collective (staging), and says how long they took through `copy_times`."""
        self.copies = (d2h_bytes, h2d_bytes)

    def readings(self) -> memoryview:
        """The open step's clock readings (i64, of `clock`), a view of the mapped file:
        reading 0 when the collective's first round is posted, reading k when round k
        ends. Valid until the step is committed; take it anew every step."""
        return self._slots[self._base : self._base + self._nreadings]

    def copy_times(self, d2h_ns: int, h2d_ns: int) -> None:
        """How long the open step's copies (`staged`) took each way, in nanoseconds."""
        at = self._base + self._copy_slot
        self._slots[at] = d2h_ns
        self._slots[at + 1] = h2d_ns

    def bind(self, messages) -> Tally:
        """The collective sends `messages` every step from now on (None: it hides them);
        counted here, and a messages frame written if they differ from the last."""
        return self._bound(count(self.rank, messages))

    def bind_buckets(self, buckets) -> Tally:
        """Every step from now on all-reduces the gradient in these buckets, in this order:
        (offset, nbytes, messages) each, messages as `bind` takes them (None: hidden; all
        hidden or none). A step's readings are then each bucket's in turn
        (`bucket_readings`)."""
        tallies = [count(self.rank, m) for _, _, m in buckets]
        hidden = any(m is None for _, _, m in buckets)
        whole = count(self.rank, None if hidden else [r for _, _, m in buckets for r in m])
        shape = tuple(
            (int(offset), int(nbytes), len(t.round_labels or ()), t.bytes_sent, t.bytes_recv,
             t.messages, None if t.links is None else [list(x) for x in t.links])
            for (offset, nbytes, _), t in zip(buckets, tallies)
        )  # fmt: skip
        self._bucket_at = []
        at = 0
        for b in shape:
            self._bucket_at.append(at)
            at += stepfile.bucket_readings(b[2])
        return self._bound(dataclasses.replace(whole, buckets=shape))

    def bucket_readings(self, b: int) -> memoryview:
        """Bucket b's clock readings in the open step: [ready, start, the end of each of its
        rounds (or its end alone)], a view of the mapped file as `readings()`."""
        at = self._base + self._bucket_at[b]
        n = stepfile.bucket_readings(self.tally.buckets[b][2])
        return self._slots[at : at + n]

    def _bound(self, tally: Tally) -> Tally:
        if any(self.copies):
            tally = dataclasses.replace(tally, **dict(zip(stepfile.COPIES, self.copies)))
        if tally != self.tally:
            self._append(stepfile.messages(tally))
            nrounds = len(tally.round_labels or ())
            buckets = None if tally.buckets is None else [{"rounds": b[2]} for b in tally.buckets]
            nreadings = stepfile.step_readings(nrounds, buckets)
            self.tally, self._fsize = tally, stepfile.step_struct(nreadings).size
            self._nreadings = self._copy_slot = nreadings
            self._open()
        return tally

    def commit(
        self,
        step: int,
        loss: float,
        t_start_ns: int,
        t_comm_ns: int,
        t_comm_end_ns: int,
        t_end_ns: int,
    ) -> None:
        """The end of a step: its frame, whose readings the collective stored, closed with
        these fields (clock readings of `clock`). Called positionally, every step of every
        rank: on the default job every 100 ns here is 0.2% of a step."""
        fsize = self._fsize
        if not fsize:
            raise RuntimeError("a step committed before its collective bound what it sends")
        end = self.size + fsize
        _CLOSE.pack_into(
            self.map,
            end - _BACK,
            step,
            loss,
            t_start_ns,
            t_comm_ns,
            t_comm_end_ns,
            t_end_ns,
            fsize,
            fsize,
            stepfile.STEP,
        )
        self.size = end
        if end > self._last:
            self._open()
        else:
            self._base = (end >> 3) + 1

    def close(self) -> None:
        """Cut the file to its closed frames (the open one's header goes too)."""
        if self.map is not None:
            self._release()
            os.ftruncate(self.fd, self.size)
            os.close(self.fd)

    def _open(self) -> None:
        """Open the next step frame at the end of the file, growing it first if need be."""
        self._room(self._fsize + stepfile.FRAME.size)
        stepfile.FRAME.pack_into(self.map, self.size, self._fsize, stepfile.STEP)
        self._base = (self.size >> 3) + 1
        self._last = self.capacity - self._fsize - stepfile.FRAME.size

    def _append(self, frame: bytes) -> None:
        self._room(len(frame))
        self.map[self.size : self.size + len(frame)] = frame
        self.size += len(frame)

    def _room(self, nbytes: int) -> None:
        while self.size + nbytes > self.capacity:
            self._grow(self.capacity + min(self.capacity, _MAX_GROWTH))

    def _grow(self, capacity: int) -> None:
        """Extend the file and map it whole; then write over the new part once, so that its
        pages are faulted in here and not one by one in later steps. Only ever between steps
        or in `bind`, before the step's first reading: executors take `readings()` every step."""
        old = self.capacity
        try:  # blocks on disk now: a page of the map past a full disk would be SIGBUS later
            os.posix_fallocate(self.fd, old, capacity - old)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, self.path) from None
        self._release()
        self.map, self.capacity = mmap.mmap(self.fd, capacity), capacity
        self.map[old:capacity] = bytes(capacity - old)
        self._slots = memoryview(self.map).cast("q")

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()
            self._slots = None
        if self.map is not None:
            self.map.close()
            self.map = None
