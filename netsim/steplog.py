"""Each rank's raw step records: a binary file written through a shared memory map.

Why not JSON Lines: the default job's step is ~0.6 ms on 4 ranks sharing 2 cores, and
there every microsecond a rank adds to its step costs the step about 1% (measured with
bench/recording_overhead.py); formatting a JSON line took ~4 us and its write() system
call ~1 us more. Here a step is one `struct.pack_into` into a memory map: no formatting,
no system call. A store into a MAP_SHARED map lands in the page cache at once, so a rank
that crashes or is killed keeps every step it finished, exactly as a write() would (the
OS writes the pages back whether or not the process lives). `read` turns the file back
into the step records netsim merges; the merged, readable per-step per-rank JSON Lines are
steps.jsonl, which rank 0 writes at the end of the run (or `python -m netsim report`).

The file is a sequence of frames, little-endian, each
    u32 size (of the whole frame), u32 kind, payload, u32 size again
and a frame counts only once its closing size is written (it is written last): a frame cut
short by a crash fails that check and is dropped. Zero bytes follow the last frame (the
file grows in steps while the run is alive and is cut to its length at the end).

    kind 0  header      JSON: {"format": "allreduce_train steps", "version": 2, "rank": R,
                        "steps_per_epoch": E, "samples": S (this rank's rows in every step)}
    kind 1  messages    JSON: bytes_sent, bytes_recv, messages, links ([src, dst, bytes,
                        messages] per peer sent to) and round_labels ([phase, index] or null
                        per round): what every following step sent, until the next kind 1
    kind 2  step        i64 step; f64 loss; i64 t_start_ns, t_comm_ns, t_comm_end_ns,
                        t_end_ns; then, for the R rounds of the last kind-1 frame (none if R
                        is 0), R + 1 i64 clock readings: when round 0 was posted, then when
                        each round ended, which is when the next one was posted (a round ends
                        once its data is in place: received, and added where the round reduces)

A step stores only what cannot be derived: epoch is step // E, samples is S, compute_s is
(t_comm_ns - t_start_ns + t_end_ns - t_comm_end_ns) / 1e9 and comm_s is (t_comm_end_ns -
t_comm_ns) / 1e9, exactly as training computes them. Every value stored costs the step
about 0.03% on the default job (bench/recording_overhead.py).

Version 1 (written for a day before version 2) stored epoch, samples, compute_s and comm_s
in every step and two readings per round, posted and completed; it is still read.
"""

from __future__ import annotations

import json
import mmap
import os
import struct

FORMAT = {"format": "allreduce_train steps", "version": 2}
HEADER, MESSAGES, STEP = 0, 1, 2
_FRAME = struct.Struct("<II")
_SIZE = struct.Struct("<I")
_FIXED = "<IIqdqqqq"  # frame size and kind, then the step's stored fields
FIELDS = ("step", "loss", "t_start_ns", "t_comm_ns", "t_comm_end_ns", "t_end_ns")
_FIXED_V1 = "<IIqqqdddqqqq"
FIELDS_V1 = ("step", "epoch", "samples", "loss", "compute_s", "comm_s",
             "t_start_ns", "t_comm_ns", "t_comm_end_ns", "t_end_ns")
_MAX_GROWTH = 4 << 20  # bytes the file grows by at most at a time
_TALLY = ("bytes_sent", "bytes_recv", "messages", "links", "round_labels")


class StepLog:
    """Appends step records to a rank's file through a memory map that grows as needed."""

    def __init__(self, path: str, rank: int, steps_per_epoch: int, samples: int,
                 capacity: int = 1 << 20):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.map, self.capacity, self.size = None, 0, 0
        self._tally = None  # the Tally of the last kind-1 frame
        self._step = None  # struct of a step frame for the current number of rounds
        self._grow(capacity)
        self._frame(HEADER, json.dumps({**FORMAT, "rank": rank, "steps_per_epoch": steps_per_epoch,
                                        "samples": samples}).encode())

    def write(self, tally, times, step: int, loss: float, t_start_ns: int, t_comm_ns: int,
              t_comm_end_ns: int, t_end_ns: int) -> None:
        """One step: its tally (netsim.recorder.Tally), its rounds' clock readings (R + 1
        for the tally's R rounds, none if R is 0 or the tally is HIDDEN) and its fields.
        Called with positional values, not a record dict: it runs every step of every rank."""
        if tally is not self._tally:
            self._messages(tally)
        frame = self._step
        size = self.size
        if size + frame.size > self.capacity:
            self._grow(self.capacity + min(self.capacity, _MAX_GROWTH))
        frame.pack_into(self.map, size, frame.size, STEP, step, loss, t_start_ns, t_comm_ns,
                        t_comm_end_ns, t_end_ns, *times, frame.size)
        self.size = size + frame.size

    def _messages(self, tally) -> None:
        self._tally = tally
        self._frame(MESSAGES, json.dumps({k: getattr(tally, k) for k in _TALLY}).encode())
        self._step = struct.Struct(_FIXED + "q" * stamps(len(tally.round_labels or ())) + "I")

    def _frame(self, kind: int, payload: bytes) -> None:
        size = _FRAME.size + len(payload) + _SIZE.size
        while self.size + size > self.capacity:
            self._grow(self.capacity + min(self.capacity, _MAX_GROWTH))
        _FRAME.pack_into(self.map, self.size, size, kind)
        self.map[self.size + _FRAME.size:self.size + size - _SIZE.size] = payload
        _SIZE.pack_into(self.map, self.size + size - _SIZE.size, size)
        self.size += size

    def _grow(self, capacity: int) -> None:
        """Extend the file and map it whole; then write over the new part once, so that its
        pages are faulted in here and not one by one in later steps."""
        old = self.capacity
        os.ftruncate(self.fd, capacity)
        if self.map is not None:
            self.map.close()
        self.map, self.capacity = mmap.mmap(self.fd, capacity), capacity
        self.map[old:capacity] = bytes(capacity - old)

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
            self.map = None
            os.ftruncate(self.fd, self.size)
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
            if version not in (1, 2):
                raise StepLogError(f"{path}: step file format version {version}; this netsim "
                                   f"reads versions 1 and 2")
            if version == 2 and not (_count(head.get("steps_per_epoch"), 1) and _count(head.get("samples"), 0)):
                raise StepLogError(f"{path}: damaged header (steps_per_epoch, samples)")
            fixed, fields = (_FIXED_V1, FIELDS_V1) if version == 1 else (_FIXED, FIELDS)
        if kind == MESSAGES:
            try:
                tally = json.loads(payload)
            except ValueError:
                raise StepLogError(f"{path}: damaged at byte {offset}") from None
            nrounds = len(tally["round_labels"] or ())
            layout = struct.Struct(fixed[:1] + fixed[3:] + "q" * stamps(nrounds, version))
        elif kind == STEP:
            if tally is None or layout.size != len(payload):
                raise StepLogError(f"{path}: step at byte {offset} does not match its messages frame")
            values = layout.unpack_from(payload)
            records.append(_record(dict(zip(fields, values)), head, tally, values[len(fields):]))
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
