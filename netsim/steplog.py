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

    kind 0  header      JSON: {"format": "allreduce_train steps", "version": 1, "rank": R}
    kind 1  messages    JSON: bytes_sent, bytes_recv, messages, links ([src, dst, bytes,
                        messages] per peer sent to) and round_labels ([phase, index] or null
                        per round): what every following step sent, until the next kind 1
    kind 2  step        i64 step, epoch, samples; f64 loss, compute_s, comm_s; i64 t_start_ns,
                        t_comm_ns, t_comm_end_ns, t_end_ns; then i64 posted_ns, completed_ns
                        per round of the last kind-1 frame
"""

from __future__ import annotations

import json
import mmap
import os
import struct

FORMAT = {"format": "allreduce_train steps", "version": 1}
HEADER, MESSAGES, STEP = 0, 1, 2
_FRAME = struct.Struct("<II")
_SIZE = struct.Struct("<I")
_FIXED = "<IIqqqdddqqqq"  # frame size and kind, then the step's fixed fields
_FIXED_FIELDS = ("step", "epoch", "samples", "loss", "compute_s", "comm_s",
                 "t_start_ns", "t_comm_ns", "t_comm_end_ns", "t_end_ns")
_MAX_GROWTH = 4 << 20  # bytes the file grows by at most at a time
_TALLY = ("bytes_sent", "bytes_recv", "messages", "links", "round_labels")


class StepLog:
    """Appends step records to a rank's file through a memory map that grows as needed."""

    def __init__(self, path: str, rank: int, capacity: int = 1 << 20):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        self.map, self.capacity, self.size = None, 0, 0
        self._tally = None  # the Tally of the last kind-1 frame
        self._step = None  # struct of a step frame for the current number of rounds
        self._grow(capacity)
        self._frame(HEADER, json.dumps({**FORMAT, "rank": rank}).encode())

    def write(self, r: dict) -> None:
        """r: the fixed fields, tally (netsim.recorder.Tally) and round_times_ns."""
        if r["tally"] is not self._tally:
            self._messages(r["tally"])
        step = self._step
        if self.size + step.size > self.capacity:
            self._grow(self.capacity + min(self.capacity, _MAX_GROWTH))
        times = r["round_times_ns"]
        step.pack_into(self.map, self.size, step.size, STEP, r["step"], r["epoch"], r["samples"],
                       r["loss"], r["compute_s"], r["comm_s"], r["t_start_ns"], r["t_comm_ns"],
                       r["t_comm_end_ns"], r["t_end_ns"], *(times or ()), step.size)
        self.size += step.size

    def _messages(self, tally) -> None:
        self._tally = tally
        self._frame(MESSAGES, json.dumps({k: getattr(tally, k) for k in _TALLY}).encode())
        self._step = struct.Struct(_FIXED + "qq" * len(tally.round_labels or ()) + "I")

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
    records, tally, layout, offset = [], None, None, 0
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
        if offset == 0 and (kind != HEADER or not _is_header(payload)):
            raise StepLogError(f"{path}: not a step record file")
        if kind == MESSAGES:
            try:
                tally = json.loads(payload)
            except ValueError:
                raise StepLogError(f"{path}: damaged at byte {offset}") from None
            layout = struct.Struct(_FIXED[:1] + _FIXED[3:] + "qq" * len(tally["round_labels"] or ()))
        elif kind == STEP:
            if tally is None or layout.size != len(payload):
                raise StepLogError(f"{path}: step at byte {offset} does not match its messages frame")
            values = layout.unpack_from(payload)
            records.append(_record(dict(zip(_FIXED_FIELDS, values)), tally, values[len(_FIXED_FIELDS):]))
        elif kind != HEADER:
            raise StepLogError(f"{path}: unknown frame kind {kind} at byte {offset}")
        offset = end
    if offset == 0 and data.strip(b"\0"):
        raise StepLogError(f"{path}: not a step record file")
    return records


def _record(record: dict, tally: dict, times: tuple) -> dict:
    record.update({k: tally[k] for k in _TALLY[:4]})
    record["rounds"] = rounds(tally["round_labels"], times)
    return record


def rounds(labels, times) -> list | None:
    """[phase, index, posted_ns, completed_ns] per labelled round, from the round labels
    and the clock readings (posted, completed per round)."""
    return None if labels is None else \
        [[l[0], l[1], times[2 * i], times[2 * i + 1]] for i, l in enumerate(labels) if l is not None]


def _is_header(payload: bytes) -> bool:
    try:
        head = json.loads(payload)
    except ValueError:
        return False
    return isinstance(head, dict) and head.get("format") == FORMAT["format"] and head.get("version") == 1
