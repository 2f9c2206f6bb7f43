"""Each rank's raw step records: a binary file written through a shared memory map.

Why not JSON Lines: the default job's step is ~0.6 ms on 4 ranks sharing 2 cores, and
there every microsecond a rank adds to its step costs the step about 1% (measured with
bench/recording_overhead.py); formatting a JSON line took ~4 us and its write() system
call ~1 us more. Here a step is stored into a memory map as it runs: no formatting, no
system call. A store into a MAP_SHARED map lands in the page cache at once, so a rank
that crashes or is killed keeps every step it finished, exactly as a write() would (the
OS writes the pages back whether or not the process lives). `read` turns the file back
into the step records netsim merges; the merged, readable per-step per-rank JSON Lines are
steps.jsonl, which rank 0 writes at the end of the run (or `python -m netsim report`).

The file is a sequence of frames, little-endian, each
    u32 size (of the whole frame), u32 kind, payload, u32 size again
and a frame counts only once its closing size is written (it is written last): a frame cut
short by a crash fails that check and is dropped. Every frame starts at a multiple of 8
bytes (JSON payloads are padded with spaces), so that the readings of a step are 8-byte
slots. Zero bytes, or the header of a step frame not yet closed, follow the last frame (the
file grows in steps while the run is alive and is cut to its length at the end).

    kind 0  header      JSON: {"format": "allreduce_train steps", "version": 3, "rank": R,
                        "steps_per_epoch": E, "samples": S (this rank's rows in every step)}
    kind 1  messages    JSON: bytes_sent, bytes_recv, messages, links ([src, dst, bytes,
                        messages] per peer sent to) and round_labels ([phase, index] or null
                        per round): what every following step sent, until the next kind 1
    kind 2  step        for the R rounds of the last kind-1 frame (none if R is 0), R + 1
                        i64 clock readings: when round 0 was posted, then when each round
                        ended, which is when the next one was posted (a round ends once its
                        data is in place: received, and added where the round reduces);
                        then i64 step; f64 loss; i64 t_start_ns, t_comm_ns, t_comm_end_ns,
                        t_end_ns; 4 zero bytes

The readings come first because they are written first: a recording executor stores each
one into the step's frame as it reads the clock (`StepLog.open`), and `commit` closes the
frame with the step's own fields in one store, which also opens the next frame. Nothing is
copied at the end of a step, and a frame whose step did not finish is never closed.

A step stores only what cannot be derived: epoch is step // E, samples is S, compute_s is
(t_comm_ns - t_start_ns + t_end_ns - t_comm_end_ns) / 1e9 and comm_s is (t_comm_end_ns -
t_comm_ns) / 1e9, exactly as training computes them.

Versions 1 and 2 are still read. Version 2 (frames unaligned) stored the step's fields
before its readings; version 1 also stored epoch, samples, compute_s and comm_s in every
step and two readings per round, posted and completed.
"""

from __future__ import annotations

import json
import mmap
import os
import struct

FORMAT = {"format": "allreduce_train steps", "version": 3}
HEADER, MESSAGES, STEP = 0, 1, 2
_FRAME = struct.Struct("<II")
_SIZE = struct.Struct("<I")
FIELDS = ("step", "loss", "t_start_ns", "t_comm_ns", "t_comm_end_ns", "t_end_ns")
_FIELDS = "qdqqqq4x"  # a step's fields, after its readings
# Closing a step frame: its fields and closing size, then the next step frame's size and kind.
_CLOSE = struct.Struct("<" + _FIELDS + "III")
_BACK = _CLOSE.size - _FRAME.size  # where the fields start, back from the end of the frame
_FIXED_V2 = "<IIqdqqqq"
_FIXED_V1 = "<IIqqqdddqqqq"
FIELDS_V1 = ("step", "epoch", "samples", "loss", "compute_s", "comm_s",
             "t_start_ns", "t_comm_ns", "t_comm_end_ns", "t_end_ns")
_MAX_GROWTH = 4 << 20  # bytes the file grows by at most at a time
_TALLY = ("bytes_sent", "bytes_recv", "messages", "links", "round_labels")


class StepLog:
    """Appends step records to a rank's file through a memory map that grows as needed.

    Between two steps one step frame is open at the end of the file: its header written,
    its reading slots waiting for the step's clock readings (`open`), its fields for
    `commit`, which closes it. Until then a reader does not see it.
    """

    def __init__(self, path: str, rank: int, steps_per_epoch: int, samples: int,
                 capacity: int = 1 << 20):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.map, self.capacity, self.size = None, 0, 0  # size: the end of the last closed frame
        self.slots = None  # the map as i64 slots (every frame starts at a multiple of 8 bytes)
        self.base = 0  # the slot of the open frame's first reading
        self.recorder = None  # whose steps `commit` takes (attach)
        self._tally = None  # the Tally of the last kind-1 frame
        self._nslots = self._fsize = 0  # readings of a step frame under it, and the frame's size
        self._step = None  # struct of a whole step frame under it
        self._last = -1  # the last end of a frame after which the next still fits
        self._grow(-(-capacity // 8) * 8)
        self._frame(HEADER, json.dumps({**FORMAT, "rank": rank, "steps_per_epoch": steps_per_epoch,
                                        "samples": samples}).encode())

    def attach(self, recorder) -> None:
        """`commit` takes the steps of `recorder` (netsim.recorder.Recorder), whose inline
        executor stores its readings straight into the open frame (`open`)."""
        self.recorder, recorder.log = recorder, self
        if recorder.inline_tally is not None:
            recorder.slots, recorder.base = self.open(recorder.inline_tally)

    def commit(self, step: int, loss: float, t_start_ns: int, t_comm_ns: int, t_comm_end_ns: int,
               t_end_ns: int):
        """The end of the attached recorder's step: its record closed with these fields,
        the recorder cleared for the next. Returns the step's tally. Called positionally,
        every step of every rank: on the default job every 100 ns here is 0.2% of a step."""
        rec = self.recorder
        if rec.slots is self.slots and not rec.rounds:
            # The inline executor's readings are in the open frame already, under the last
            # messages frame (`open` saw to it): one store closes it and opens the next.
            fsize = self._fsize
            end = self.size + fsize
            _CLOSE.pack_into(self.map, end - _BACK, step, loss, t_start_ns, t_comm_ns, t_comm_end_ns,
                             t_end_ns, fsize, fsize, STEP)
            self.size = end
            if end > self._last:
                self._reopen()
            else:
                rec.base = self.base = (end >> 3) + 1
            return self._tally
        tally = rec.tally()
        self.write(tally, rec.readings(), step, loss, t_start_ns, t_comm_ns, t_comm_end_ns, t_end_ns)
        rec.clear()
        return tally

    def open(self, tally) -> tuple:
        """(slots, base): where the open frame's readings go (slot base + k for reading k),
        the frame made a step frame under `tally` (after a messages frame for it if it is
        not the last one's)."""
        if tally is not self._tally:
            self._messages(tally)
            self._reopen()
        return self.slots, self.base

    def write(self, tally, times, step: int, loss: float, t_start_ns: int, t_comm_ns: int,
              t_comm_end_ns: int, t_end_ns: int) -> None:
        """One whole step: its tally (netsim.recorder.Tally), its rounds' clock readings
        (R + 1 for the tally's R rounds, none if R is 0 or the tally is HIDDEN) and its fields."""
        if tally is not self._tally:
            self._messages(tally)
        frame = self._step
        if len(times) != self._nslots:
            raise ValueError(f"{len(times)} clock readings for a step of "
                             f"{len(tally.round_labels or ())} rounds")
        self._room(frame.size)
        frame.pack_into(self.map, self.size, frame.size, STEP, *times, step, loss, t_start_ns,
                        t_comm_ns, t_comm_end_ns, t_end_ns, frame.size)
        self.size += frame.size
        self._reopen()

    def _messages(self, tally) -> None:
        self._frame(MESSAGES, json.dumps({k: getattr(tally, k) for k in _TALLY}).encode())
        self._tally = tally
        self._nslots = stamps(len(tally.round_labels or ()))
        self._step = struct.Struct("<II" + "q" * self._nslots + _FIELDS + "I")
        self._fsize = self._step.size

    def _reopen(self) -> None:
        """Open the next step frame at the end of the file and hand its reading slots to
        the attached recorder's inline executor if its messages are the frame's (otherwise
        it gets slots of its own)."""
        if self._tally is None:
            return
        self._room(self._fsize + _FRAME.size)
        _FRAME.pack_into(self.map, self.size, self._fsize, STEP)
        self.base = (self.size >> 3) + 1
        self._last = self.capacity - self._fsize - _FRAME.size
        rec = self.recorder
        if rec is not None and rec.inline_tally is not None:
            rec.slots, rec.base = (self.slots, self.base) if rec.inline_tally is self._tally \
                else (rec.scratch(), 0)

    def _frame(self, kind: int, payload: bytes) -> None:
        payload += b" " * (-(len(payload) + _FRAME.size + _SIZE.size) % 8)  # JSON allows it
        size = _FRAME.size + len(payload) + _SIZE.size
        self._room(size)
        _FRAME.pack_into(self.map, self.size, size, kind)
        self.map[self.size + _FRAME.size:self.size + size - _SIZE.size] = payload
        _SIZE.pack_into(self.map, self.size + size - _SIZE.size, size)
        self.size += size

    def _room(self, nbytes: int) -> None:
        while self.size + nbytes > self.capacity:
            self._grow(self.capacity + min(self.capacity, _MAX_GROWTH))

    def _grow(self, capacity: int) -> None:
        """Extend the file and map it whole; then write over the new part once, so that its
        pages are faulted in here and not one by one in later steps. The old map's view
        goes with it (callers open the frame again)."""
        old = self.capacity
        os.ftruncate(self.fd, capacity)
        self._release()
        self.map, self.capacity = mmap.mmap(self.fd, capacity), capacity
        self.map[old:capacity] = bytes(capacity - old)
        self.slots = memoryview(self.map).cast("q")

    def _release(self) -> None:
        rec = self.recorder
        if rec is not None and rec.slots is self.slots and self.slots is not None:
            rec.slots, rec.base = rec.scratch(), 0
        if self.slots is not None:
            self.slots.release()
            self.slots = None
        if self.map is not None:
            self.map.close()
            self.map = None

    def close(self) -> None:
        if self.map is not None:
            self._release()
            if self.recorder is not None:
                self.recorder.log = None
            os.ftruncate(self.fd, self.size)  # the open frame's header goes too
            os.close(self.fd)


class StepLogError(ValueError):
    """A step file that is not one, or is damaged before its end."""


def read(path: str) -> list[dict]:
    """The step records of one rank's file, as netsim merges them (rounds as [phase, index,
    posted_ns, completed_ns] per labelled round). A last frame cut short is left out."""
    with open(path, "rb") as f:
        data = f.read()
    records, tally, layout, head, offset = [], None, None, None, 0
    while offset + _FRAME.size <= len(data):
        size, kind = _FRAME.unpack_from(data, offset)
        if size == 0:
            break
        end = offset + size
        if end > len(data) or size < _FRAME.size + _SIZE.size \
                or _SIZE.unpack_from(data, end - _SIZE.size)[0] != size:
            if data[min(end, len(data)):].strip(b"\0"):  # more follows: not a crash's cut
                raise StepLogError(f"{path}: damaged at byte {offset}")
            break
        payload = data[offset + _FRAME.size:end - _SIZE.size]
        if offset == 0:
            head = _header(payload) if kind == HEADER else None
            if head is None:
                raise StepLogError(f"{path}: not a step record file")
            version = head.get("version")
            if version not in (1, 2, 3):
                raise StepLogError(f"{path}: step file format version {version}; this netsim "
                                   f"reads versions 1 to 3")
            if version > 1 and not (_count(head.get("steps_per_epoch"), 1) and _count(head.get("samples"), 0)):
                raise StepLogError(f"{path}: damaged header (steps_per_epoch, samples)")
        if kind == MESSAGES:
            try:
                tally = json.loads(payload)
            except ValueError:
                raise StepLogError(f"{path}: damaged at byte {offset}") from None
            nreadings = stamps(len(tally["round_labels"] or ()), version)
            if version == 3:  # readings, then fields
                layout = struct.Struct("<" + "q" * nreadings + _FIELDS)
            else:  # fields, then readings
                fixed = _FIXED_V1 if version == 1 else _FIXED_V2
                layout = struct.Struct(fixed[:1] + fixed[3:] + "q" * nreadings)
        elif kind == STEP:
            if tally is None or layout.size != len(payload):
                raise StepLogError(f"{path}: step at byte {offset} does not match its messages frame")
            values = layout.unpack_from(payload)
            if version == 3:
                times, values = values[:nreadings], values[nreadings:]
            else:
                times = values[len(values) - nreadings:]
            fields = FIELDS_V1 if version == 1 else FIELDS
            records.append(_record(dict(zip(fields, values)), head, tally, times))
        elif kind != HEADER:
            raise StepLogError(f"{path}: unknown frame kind {kind} at byte {offset}")
        offset = end
    if offset == 0 and data.strip(b"\0"):
        raise StepLogError(f"{path}: not a step record file")
    return records


def stamps(nrounds: int, version: int = FORMAT["version"]) -> int:
    """How many clock readings a step of `nrounds` rounds stores."""
    if version == 1:
        return 2 * nrounds
    return nrounds + 1 if nrounds else 0


def _record(record: dict, head: dict, tally: dict, times: tuple) -> dict:
    if head["version"] > 1:  # the fields a step does not store, derived as training does
        step, t0, t1, t2, t3 = (record[k] for k in ("step", "t_start_ns", "t_comm_ns",
                                                    "t_comm_end_ns", "t_end_ns"))
        record = {"step": step, "epoch": step // head["steps_per_epoch"], "samples": head["samples"],
                  "loss": record["loss"], "compute_s": ((t1 - t0) + (t3 - t2)) / 1e9,
                  "comm_s": (t2 - t1) / 1e9, "t_start_ns": t0, "t_comm_ns": t1,
                  "t_comm_end_ns": t2, "t_end_ns": t3}
    record.update({k: tally[k] for k in _TALLY[:4]})
    record["rounds"] = rounds(tally["round_labels"], times, head["version"])
    return record


def rounds(labels, times, version: int = FORMAT["version"]) -> list | None:
    """[phase, index, posted_ns, completed_ns] per labelled round, from the round labels
    and the step's clock readings (`stamps` of them)."""
    if labels is None:
        return None
    step = 2 if version == 1 else 1  # version 1: posted, completed per round
    return [[l[0], l[1], times[step * i], times[step * i + 1]] for i, l in enumerate(labels) if l is not None]


def _count(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _header(payload: bytes) -> dict | None:
    """A header frame's content, or None if it is not ours."""
    try:
        head = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(head, dict) or head.get("format") != FORMAT["format"]:
        return None
    return head
