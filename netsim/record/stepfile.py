"""The step file: each rank's raw step records, binary, written as the steps run.

Why binary and memory-mapped: the default job's step is ~0.6 ms on 4 ranks sharing 2
cores, and there every microsecond a rank adds to its step costs the step about 1%
(bench/recording_overhead.py); formatting a JSON line took ~4 us and its write() system
call ~1 us more. A store into a MAP_SHARED map takes neither, and lands in the page cache
at once, so a rank that crashes or is killed keeps every step it finished, exactly as a
write() would (the OS writes the pages back whether or not the process lives).
netsim.record.recorder writes the file; `read` here turns it back into the step records
netsim merges. The merged, readable per-step per-rank JSON Lines are steps.jsonl, which
rank 0 writes at the end of the run (netsim.report.files).

The file is a sequence of frames, little-endian, each
    u32 size (of the whole frame), u32 kind, payload, u32 size again
and a frame counts only once its closing size is written (it is written last): a frame cut
short by a crash fails that check and is dropped. Every frame starts at a multiple of 8
bytes (JSON payloads are padded with spaces), so that the readings of a step are 8-byte
slots. Zero bytes, or the header of a step frame not yet closed, follow the last frame (the
file grows while the run is alive and is cut to its length at the end).

    kind 0  header      JSON: {"format": "allreduce_train steps", "version": 5, "rank": R,
                        "steps_per_epoch": E, "samples": S (this rank's rows in every step)}
    kind 1  messages    JSON: bytes_sent, bytes_recv, messages, links ([src, dst, bytes,
                        messages] per peer sent to) and round_labels ([phase, index] or null
                        per round): what every following step sent, until the next kind 1;
                        all null where the collective hid its messages (MPI_Allreduce);
                        d2h_bytes, h2d_bytes: what every step copies between the GPU and
                        host memory around the collective (0 on the CPU, and with NCCL);
                        buckets (version 5, where the gradient is all-reduced in buckets:
                        training always says it, one bucket or many): per bucket, in launch
                        order, {offset, bytes (of the gradient: where the bucket lies in it),
                        rounds (how many of round_labels are its, in order), bytes_sent,
                        bytes_recv, messages, links (its own tally, null where hidden)}
    kind 2  step        without buckets: for the R rounds of the last kind-1 frame (none if
                        R is 0), R + 1 i64 clock readings: when round 0 was posted, then
                        when each round ended, which is when the next one was posted (a
                        round ends once its data is in place: received, and added where the
                        round reduces). With buckets: per bucket, when its gradient was
                        ready (backward wrote its last part), when its all-reduce started,
                        then when each of its R_b rounds ended, the last being when the
                        all-reduce returned (a bucket of no rounds, or of hidden ones, stores
                        its end alone): 2 + max(R_b, 1) readings.
                        Then i64 d2h_ns, h2d_ns (how long the step's copies took, 0 where
                        there are none); i64 step; f64 loss; i64 t_start_ns, t_comm_ns,
                        t_comm_end_ns, t_end_ns; 4 zero bytes

The readings come first because they are written first, into the open frame as the
collective runs; the step's own fields close the frame. A step stores only what cannot be
derived: epoch is step // E, samples is S, compute_s is (t_comm_ns - t_start_ns + t_end_ns -
t_comm_end_ns) / 1e9, exactly as training computes it, and comm_s is the exposed part,
(t_comm_end_ns - t_comm_ns) / 1e9 (training's comm_s), plus the hidden one (split).
Version 3 is the first format a release wrote (1 and 2 were development formats, never
released, and are not read); 4 added the copies, and a version-3 file reads
as copying nothing; 5 added the buckets (a file without them reads as before: `buckets`
None, the communication all exposed).

A bucketed step's record adds `buckets` (per bucket: offset, bytes, its tally, ready_ns,
start_ns, end_ns, its rounds) and splits the communication as docs/ARCHITECTURE.md defines
it: exposed_s is the part of the step the rank's compute waited on communication (t_comm_ns
to t_comm_end_ns: after backward, until the last bucket's sum is there), hidden_s the time
buckets were in flight outside that wait (under backward), comm_s their sum. Without
overlap every bucket runs inside the wait: hidden_s is 0 and comm_s is what it always was.

(Past 300 lines: the format and its one reader, which checks every field it reads; apart,
the layout would be written twice.)
"""

from __future__ import annotations

import json
import struct

from netsim.errors import InputError

FORMAT = {"format": "allreduce_train steps", "version": 5}
READS = (3, 4, 5)  # the versions read: 3 has no copies, 3 and 4 no buckets
HEADER, MESSAGES, STEP = 0, 1, 2
FRAME = struct.Struct("<II")  # size, kind
SIZE = struct.Struct("<I")  # the closing size
FIELDS = ("step", "loss", "t_start_ns", "t_comm_ns", "t_comm_end_ns", "t_end_ns")
FIELDS_FORMAT = "qdqqqq4x"  # a step's fields, after its readings
_STEP_READ = FIELDS_FORMAT.replace("4x", "I")  # the 4 zero bytes read, to be checked
TALLY = ("bytes_sent", "bytes_recv", "messages", "links", "round_labels")
COPIES = ("d2h_bytes", "h2d_bytes")  # in the messages frame (version 4)
COPY_TIMES = ("d2h_ns", "h2d_ns")  # in the step frame, after the readings (version 4)
BUCKET = ("offset", "bytes", "rounds") + TALLY[:4]  # a bucket in the messages frame (version 5)


class StepFileError(InputError):
    """A step file that is not one, or is damaged before its end."""


def readings(nrounds: int) -> int:
    """How many clock readings a step of `nrounds` rounds stores."""
    return nrounds + 1 if nrounds else 0


def bucket_readings(nrounds: int) -> int:
    """How many clock readings a bucket of `nrounds` rounds stores: ready, start, the end of
    each round (or the end alone)."""
    return 2 + max(nrounds, 1)


def step_readings(nrounds: int, buckets) -> int:
    """How many clock readings a step stores, given its messages frame's rounds and buckets
    (None: not bucketed)."""
    if buckets is None:
        return readings(nrounds)
    return sum(bucket_readings(b["rounds"]) for b in buckets)


def step_struct(nreadings: int) -> struct.Struct:
    """A whole step frame of `nreadings` readings: its header, readings, copy times, fields
    and closing size."""
    return struct.Struct("<II" + "q" * (nreadings + len(COPY_TIMES)) + FIELDS_FORMAT + "I")


def frame(kind: int, payload: bytes) -> bytes:
    """A whole frame of JSON payload, padded (with spaces, which JSON allows) to 8 bytes."""
    payload += b" " * (-(len(payload) + FRAME.size + SIZE.size) % 8)
    size = FRAME.size + len(payload) + SIZE.size
    return FRAME.pack(size, kind) + payload + SIZE.pack(size)


def header(rank: int, steps_per_epoch: int, samples: int) -> bytes:
    return frame(
        HEADER,
        json.dumps(
            {**FORMAT, "rank": rank, "steps_per_epoch": steps_per_epoch, "samples": samples},
            allow_nan=False,
        ).encode(),
    )


def messages(tally) -> bytes:
    fields = {k: getattr(tally, k) for k in TALLY + COPIES}
    if tally.buckets is not None:
        fields["buckets"] = [dict(zip(BUCKET, b)) for b in tally.buckets]
    return frame(MESSAGES, json.dumps(fields, allow_nan=False).encode())


def read(path: str) -> list[dict]:
    """The step records of one rank's file, as netsim merges them (rounds as [phase, index,
    posted_ns, completed_ns] per labelled round). A last frame cut short is left out."""
    records, damage = scan(path)
    if damage is not None:
        raise StepFileError(damage)
    return records


def scan(path: str) -> tuple[list[dict], str | None]:
    """(the records read, the damage met in one line or None): a damaged file still gives
    every step before its damage."""
    with open(path, "rb") as f:
        data = f.read()
    records = []
    try:
        _parse(path, data, records)
    except StepFileError as exc:
        return records, str(exc)
    return records, None


def _parse(path: str, data: bytes, records: list) -> None:
    tally, layout, head, offset = None, None, None, 0
    while offset + FRAME.size <= len(data):
        size, kind = FRAME.unpack_from(data, offset)
        if size == 0:
            break
        end = offset + size
        if (
            end > len(data)
            or size < FRAME.size + SIZE.size
            or SIZE.unpack_from(data, end - SIZE.size)[0] != size
        ):
            if data[min(end, len(data)) :].strip(b"\0"):  # more follows: not a crash's cut
                raise StepFileError(f"{path}: damaged at byte {offset}")
            break
        payload = data[offset + FRAME.size : end - SIZE.size]
        if offset == 0:
            head = _header(path, payload if kind == HEADER else b"")
        elif kind == MESSAGES:
            tally = _tally(path, payload, offset, head["version"])
            nreadings = step_readings(len(tally["round_labels"] or ()), tally["buckets"])
            ncopies = len(COPY_TIMES) if head["version"] >= 4 else 0
            layout = struct.Struct("<" + "q" * (nreadings + ncopies) + _STEP_READ)
        elif kind == STEP:
            if tally is None or layout.size != len(payload):
                raise StepFileError(
                    f"{path}: step at byte {offset} does not match its messages frame"
                )
            values = layout.unpack_from(payload)
            fields = dict(zip(FIELDS, values[nreadings + ncopies :]))
            copies = values[nreadings : nreadings + ncopies] or (0, 0)
            if not _plausible(fields, values[-1], records[-1:]) or min(copies) < 0:
                raise StepFileError(f"{path}: damaged at byte {offset} (step values out of order)")
            records.append(_record(fields, head, tally, values[:nreadings], copies))
        elif kind == HEADER:
            raise StepFileError(f"{path}: a second header at byte {offset}")
        else:
            raise StepFileError(f"{path}: unknown frame kind {kind} at byte {offset}")
        offset = end
    if offset == 0 and data.strip(b"\0"):
        raise StepFileError(f"{path}: not a step record file")


def rounds(labels, times) -> list | None:
    """[phase, index, posted_ns, completed_ns] per labelled round, from the round labels and
    the step's clock readings."""
    if labels is None:
        return None
    return [
        [label[0], label[1], times[i], times[i + 1]]
        for i, label in enumerate(labels)
        if label is not None
    ]


def _buckets(tally: dict, times: tuple) -> tuple[list, list | None]:
    """Each bucket's record (its tally, ready_ns, start_ns, end_ns, rounds) and the step's
    rounds, every bucket's in launch order, from a bucketed step's readings."""
    labels = tally["round_labels"]
    out, rounds_, at, first = [], [] if labels is not None else None, 0, 0
    for b in tally["buckets"]:
        n = b["rounds"]
        mine = times[at : at + bucket_readings(n)]
        theirs = rounds(labels[first : first + n], mine[1:]) if labels is not None else None
        if theirs is not None:
            rounds_ += theirs
        out.append(
            {k: b[k] for k in BUCKET if k != "rounds"}
            | {"ready_ns": mine[0], "start_ns": mine[1], "end_ns": mine[-1], "rounds": theirs}
        )
        at, first = at + bucket_readings(n), first + n
    return out, rounds_


def split(t_comm_ns: int, t_comm_end_ns: int, buckets) -> tuple[float, float]:
    """(exposed_s, hidden_s) of a step (docs/ARCHITECTURE.md, Definitions): exposed is the
    wait after backward, from t_comm_ns to t_comm_end_ns; hidden is the time buckets were in
    flight outside it (under compute). buckets: [(start_ns, end_ns)], or None."""
    exposed = t_comm_end_ns - t_comm_ns
    spans = sorted((s, e) for s, e in buckets or () if e > s)
    hidden, reach = 0, None  # the union of the buckets' spans, less the exposed wait
    for s, e in spans:
        if reach is not None and s < reach:
            s = reach
        if e <= s:
            continue
        hidden += (e - s) - max(0, min(e, t_comm_end_ns) - max(s, t_comm_ns))
        reach = e if reach is None else max(reach, e)
    return exposed / 1e9, hidden / 1e9


def _record(fields: dict, head: dict, tally: dict, times: tuple, copies: tuple) -> dict:
    """The fields a step does not store, derived as training does, and its tally's."""
    step, t0, t1, t2, t3 = (
        fields[k] for k in ("step", "t_start_ns", "t_comm_ns", "t_comm_end_ns", "t_end_ns")
    )
    if tally["buckets"] is None:
        buckets, rounds_ = None, rounds(tally["round_labels"], times)
    else:
        buckets, rounds_ = _buckets(tally, times)
    exposed, hidden = split(t1, t2, buckets and [(b["start_ns"], b["end_ns"]) for b in buckets])
    return {
        "step": step,
        "epoch": step // head["steps_per_epoch"],
        "samples": head["samples"],
        "loss": fields["loss"],
        "compute_s": ((t1 - t0) + (t3 - t2)) / 1e9,
        "comm_s": exposed + hidden,
        "exposed_s": exposed,
        "hidden_s": hidden,
        "t_start_ns": t0,
        "t_comm_ns": t1,
        "t_comm_end_ns": t2,
        "t_end_ns": t3,
        **{k: tally[k] for k in TALLY[:4]},
        "rounds": rounds_,
        "d2h_bytes": tally["d2h_bytes"],
        "h2d_bytes": tally["h2d_bytes"],
        "d2h_s": copies[0] / 1e9,
        "h2d_s": copies[1] / 1e9,
        "buckets": buckets,
    }


def _plausible(fields: dict, zero: int, last: list) -> bool:
    """What a step file without checksums can check: steps count up, a clock never goes
    back (the last step's end, this step's start, entry, exit and end), and the padding
    is zero. Damaged round readings go unseen."""
    clock = [last[0]["t_end_ns"]] if last else []
    clock += [fields[k] for k in FIELDS[2:]]
    return (
        zero == 0
        and fields["step"] > (last[0]["step"] if last else -1)
        and all(a <= b for a, b in zip(clock, clock[1:]))
    )


def _tally(path: str, payload: bytes, offset: int, version: int) -> dict:
    """A messages frame's JSON, checked: counts are integers (or all null), links
    [src, dst, bytes, messages], round labels [phase, index] or null, and the copies' bytes
    integers (a version-3 frame has none: 0)."""
    try:
        tally = json.loads(payload)
    except ValueError:
        tally = None
    if version < 4 and isinstance(tally, dict):
        tally.update(dict.fromkeys(COPIES, 0))
    if isinstance(tally, dict):
        tally.setdefault("buckets", None)
    if (
        not isinstance(tally, dict)
        or any(k not in tally for k in TALLY)
        or not all(tally[k] is None or _count(tally[k], 0) for k in TALLY[:3])
        or not (tally["links"] is None or _listed(tally["links"], _link))
        or not (tally["round_labels"] is None or _listed(tally["round_labels"], _label))
        or not all(_count(tally.get(k), 0) for k in COPIES)
        or not (tally["buckets"] is None or _listed(tally["buckets"], _bucket))
        or (
            tally["buckets"] is not None
            and sum(b["rounds"] for b in tally["buckets"]) != len(tally["round_labels"] or ())
        )
    ):
        raise StepFileError(f"{path}: damaged at byte {offset} (its messages frame)")
    return tally


def _listed(values, valid) -> bool:
    return isinstance(values, list) and all(valid(v) for v in values)


def _bucket(value) -> bool:
    return (
        isinstance(value, dict)
        and all(k in value for k in BUCKET)
        and all(_count(value[k], 0) for k in BUCKET[:3])
        and all(value[k] is None or _count(value[k], 0) for k in TALLY[:3])
        and (value["links"] is None or _listed(value["links"], _link))
    )


def _link(value) -> bool:
    return _listed(value, lambda v: _count(v, 0)) and len(value) == 4


def _label(value) -> bool:
    return value is None or (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and _count(value[1], 0)
    )


def _header(path: str, payload: bytes) -> dict:
    try:
        head = json.loads(payload)
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT["format"]:
        raise StepFileError(f"{path}: not a step record file")
    if head.get("version") not in READS:
        raise StepFileError(
            f"{path}: step file format version {head.get('version')}; this netsim reads "
            f"versions {', '.join(map(str, READS))}"
        )
    if not (_count(head.get("steps_per_epoch"), 1) and _count(head.get("samples"), 0)):
        raise StepFileError(f"{path}: damaged header (steps_per_epoch, samples)")
    return head


def _count(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
