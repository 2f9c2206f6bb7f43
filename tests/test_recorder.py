"""netsim.recorder and the step records it feeds (no MPI: bytes are counted from the buffers
handed to the transport, whatever the transport then does with them)."""

import collections
import json
import os
import struct

import numpy as np
import pytest

from allreduce_train import collectives
from netsim import recorder, rundir, schedules, steplog


class NullTransport:
    def __init__(self):
        self.calls = 0

    def exchange(self, sends, recvs, tag=0, label=None):
        self.calls += 1
        for _, buf in recvs:  # as if every peer sent zeros
            buf[...] = 0

    def native_allreduce(self, buf):
        pass


def take(rec):
    """This step's tally and clock readings (None where hidden), then the next step."""
    tally, times = rec.tally(), rec.readings()
    rec.clear()
    return tally, None if tally is recorder.HIDDEN else times


def ring_on_rank(p, n, rank, dtype=np.float32):
    rec = recorder.Recorder(rank, clock=iter(range(10**6)).__next__)
    allreduce = collectives.make_allreduce("ring", p, rank, n, rec.wrap(NullTransport()), np, dtype)
    return rec, allreduce


@pytest.mark.parametrize("p,n", [(2, 7), (3, 10), (4, 97)])
@pytest.mark.parametrize("inline", [True, False])
def test_counts_every_message_of_the_ring_exactly(p, n, inline):
    sched = schedules.ring(p, n)
    for rank in range(p):
        rec, allreduce = ring_on_rank(p, n, rank)
        if not inline:  # the generic path: every round through the wrapper's exchange
            allreduce.transport = Wrapped(allreduce.transport)
        allreduce(np.zeros(n, np.float32))
        tally, times = take(rec)
        assert tally.bytes_sent == sched.elements_sent()[rank] * 4
        assert tally.bytes_recv == sched.elements_received()[rank] * 4
        assert tally.messages == sched.messages_sent()[rank] == 2 * (p - 1)
        assert tally.links == ((rank, (rank + 1) % p, tally.bytes_sent, 2 * (p - 1)),)
        assert tally.round_labels == tuple((r.phase, r.index) for r in sched.rounds)
        rounds = 2 * (p - 1)
        if inline:  # first round posted, then each round's end, read once after its adds
            assert times == list(range(rounds + 1))
        else:  # a round ends where the next exchange is called; the last where it returned
            assert times == [*range(0, 2 * rounds, 2), 2 * rounds - 1]


class Wrapped:
    """A recording transport seen only through its exchange (no inline_recording)."""

    def __init__(self, transport):
        self.exchange = transport.exchange


def test_counted_once_while_the_messages_are_the_same_and_again_when_they_change():
    rec, allreduce = ring_on_rank(3, 10, 0)
    buf = np.zeros(10, np.float32)
    allreduce(buf)
    first, times1 = take(rec)
    allreduce(buf)
    second, times2 = take(rec)
    assert second is first and times2 != times1
    allreduce(np.zeros(10, np.float32))  # another buffer: new views, counted anew, same sizes
    third, _ = take(rec)
    assert third is not first and third == first
    # the wrapper's exchange counts what it is handed, never an earlier count
    rec = recorder.Recorder(0)
    wrapped = rec.wrap(NullTransport())
    for _ in range(2):
        wrapped.exchange([(1, np.zeros(4, np.float64))], [(2, np.zeros(4, np.float64))])
        take(rec)
    wrapped.exchange([(1, np.zeros(5, np.float64))], [(2, np.zeros(3, np.float64))])
    odd, times = take(rec)
    assert (odd.bytes_sent, odd.bytes_recv, odd.messages, odd.links) == (40, 24, 1, ((0, 1, 40, 1),))
    assert odd.round_labels == (None,) and len(times) == 2


def test_a_recorder_takes_its_steps_inline_or_through_the_wrapper_not_both():
    rec, allreduce = ring_on_rank(3, 10, 0)
    allreduce(np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="both inline and through the wrapper"):
        allreduce.transport.exchange([(1, np.zeros(2))], [(2, np.zeros(2))])


def test_an_empty_step_and_a_hidden_collective():
    rec = recorder.Recorder(2)
    tally, times = take(rec)
    assert (tally.bytes_sent, tally.messages, tally.links, times) == (0, 0, (), [])
    rec.wrap(NullTransport()).native_allreduce(np.zeros(4))
    assert take(rec) == (recorder.HIDDEN, None) and not rec.observable


RING = recorder.Tally(24, 24, 2, ((0, 1, 24, 2),), (("reduce-scatter", 0), ("all-gather", 0)))


def record(step=0, links=None, labels=None):
    tally = RING if links is None and labels is None else \
        recorder.Tally(24, 24, 2, links or RING.links, labels or RING.round_labels)
    labels = tally.round_labels
    t0, t1, t2, t3 = 1000 * step + 10, 1000 * step + 20, 1000 * step + 30, 1000 * step + 45
    return {"step": step, "epoch": step // EPOCH, "samples": 4, "loss": 0.25,
            "compute_s": ((t1 - t0) + (t3 - t2)) / 1e9, "comm_s": (t2 - t1) / 1e9,
            "t_start_ns": t0, "t_comm_ns": t1, "t_comm_end_ns": t2, "t_end_ns": t3,
            "tally": tally, "round_times_ns": [21, 22 + step, 29][:len(labels) + 1]}


EPOCH = 3  # steps per epoch of the step files written here


def json_record(r: dict) -> dict:
    """A record() as `read_steps` gives it back: the tally's fields, links as lists, and
    rounds as [phase, index, posted_ns, completed_ns] per labelled round."""
    out = {k: v for k, v in r.items() if k not in ("tally", "round_times_ns")}
    t = r["tally"]
    out.update(bytes_sent=t.bytes_sent, bytes_recv=t.bytes_recv, messages=t.messages,
               links=None if t.links is None else [list(link) for link in t.links])
    out["rounds"] = steplog.rounds(t.round_labels, r["round_times_ns"])
    return out


def test_json_record_is_what_reading_gives():
    on_disk = json_record(record())
    assert on_disk["rounds"] == [["reduce-scatter", 0, 21, 22], ["all-gather", 0, 22, 29]]
    assert on_disk["links"] == [[0, 1, 24, 2]] and on_disk["bytes_sent"] == 24
    unlabelled = {**record(), "tally": recorder.Tally(24, 24, 2, (), (None, ("all-gather", 0)))}
    assert json_record(unlabelled)["rounds"] == [["all-gather", 0, 22, 29]]  # counted, not drawn


def step_file(tmp_path, rank=0):
    return str(tmp_path / f"steps-rank{rank}.bin")


def write(path, records, **kwargs):
    log = steplog.StepLog(path, 0, EPOCH, 4, **kwargs)
    for r in records:
        store(log, r)
    return log


def store(log, r):
    log.write(r["tally"], r["round_times_ns"] or (), *(r[k] for k in steplog.FIELDS))
    return r


def test_step_file_reads_back_every_record_through_changes_of_messages(tmp_path):
    records = [record(0), record(1), record(2, links=((0, 2, 8, 1),)),
               record(3, labels=(("all-gather", 1),)), {**record(4), "tally": recorder.HIDDEN, "round_times_ns": None},
               {**record(5), "loss": float("nan")}]
    write(step_file(tmp_path), records).close()
    back = rundir.read_steps(str(tmp_path), 0)
    assert back[:5] == [json_record(r) for r in records[:5]]
    assert np.isnan(back[5]["loss"]) and back[4]["bytes_sent"] is None and back[4]["rounds"] is None


def test_step_file_grows_and_ends_cut_to_its_records(tmp_path):
    path = step_file(tmp_path)
    log = write(path, [record(s) for s in range(2000)], capacity=4096)
    assert log.capacity > 4096
    log.close()
    assert len(steplog.read(path)) == 2000
    assert os.path.getsize(path) == log.size  # the zeros past the last frame are cut off


def test_a_crash_keeps_every_finished_step_and_drops_a_torn_one(tmp_path):
    path = step_file(tmp_path)
    log = write(path, [record(s) for s in range(5)])  # never closed: the file as a killed rank leaves it
    assert os.path.getsize(path) == log.capacity
    # killed in step 5: its frame is open, its readings stored, never closed
    for k in range(3):
        log.slots[log.base + k] = 100 + k
    assert [r["step"] for r in steplog.read(path)] == [0, 1, 2, 3, 4]
    # killed while closing it: its fields stored, not yet its closing size
    fields = struct.pack("<qdqqqq", *(record(5)[k] for k in steplog.FIELDS))
    at = log.size + log._step.size - steplog._BACK
    log.map[at:at + len(fields)] = fields
    assert [r["step"] for r in steplog.read(path)] == [0, 1, 2, 3, 4]


def test_every_frame_starts_at_a_multiple_of_8_bytes(tmp_path):
    path = step_file(tmp_path)
    write(path, [record(0), record(1, links=((0, 2, 8, 1),)), record(2, labels=(("all-gather", 1),)),
                 {**record(3), "tally": recorder.HIDDEN, "round_times_ns": None}]).close()
    data, offset, offsets = open(path, "rb").read(), 0, []
    while offset < len(data):
        offsets.append(offset)
        offset += struct.unpack_from("<I", data, offset)[0]
    assert offset == len(data) and len(offsets) == 1 + 4 * 2 and all(o % 8 == 0 for o in offsets)


def test_the_executor_writes_its_readings_into_the_open_frame_through_growth_and_new_views(tmp_path):
    p, n = 4, 11
    nrounds = len(schedules.ring(p, n).rounds)
    rec, allreduce = ring_on_rank(p, n, 3)
    log = steplog.StepLog(step_file(tmp_path), 3, EPOCH, 4, capacity=1024)
    log.attach(rec)
    buf = np.zeros(n, np.float32)
    for s in range(300):  # grows the file several times
        if s == 150:
            buf = np.zeros(n, np.float32)  # new views: counted anew, a new messages frame
        allreduce(buf)
        slots, base = rec.slots, rec.base
        assert slots is log.slots and list(slots[base:base + nrounds + 1]) == rec.readings()
        log.commit(*(record(s)[k] for k in steplog.FIELDS))
    assert log.capacity > 1024
    allreduce(buf)  # step 300: written into the open frame, never committed (a crash)
    back = steplog.read(step_file(tmp_path))
    assert [r["step"] for r in back] == list(range(300))
    assert [[x[2:] for x in r["rounds"]] for r in back] == \
        [[[s * (nrounds + 1) + k, s * (nrounds + 1) + k + 1] for k in range(nrounds)] for s in range(300)]
    log.close()
    assert rec.log is None and not isinstance(rec.slots, memoryview)
    allreduce(buf)  # a closed log takes nothing; the executor goes on recording into its own slots
    assert rec.readings() == list(range(301 * (nrounds + 1), 302 * (nrounds + 1)))
    assert len(steplog.read(step_file(tmp_path))) == 300


def test_damage_before_the_end_is_named(tmp_path):
    path = step_file(tmp_path)
    log = write(path, [record(s) for s in range(5)])
    log.close()
    data = bytearray(open(path, "rb").read())
    second_step = len(data) - 4 * log._step.size
    data[second_step - 1] ^= 0xFF  # the closing size of the first step frame
    open(path, "wb").write(bytes(data))
    with pytest.raises(steplog.StepLogError, match=r"damaged at byte \d+"):
        steplog.read(path)
    open(path, "wb").write(b"steps?" + bytes(100))
    with pytest.raises(steplog.StepLogError, match="not a step record file"):
        steplog.read(path)


def test_legacy_json_lines_step_files_are_still_read(tmp_path):
    on_disk = json_record(record())
    (tmp_path / "steps-rank0.jsonl").write_text(json.dumps(on_disk) + "\n" + '{"step": 1, "trunc')
    assert rundir.read_steps(str(tmp_path), 0) == [on_disk]


def frame(kind, payload):
    size = 8 + len(payload) + 4
    return struct.pack("<II", size, kind) + payload + struct.pack("<I", size)


def header(version):
    return frame(steplog.HEADER, json.dumps({"format": "allreduce_train steps", "version": version,
                                             "rank": 0}).encode())


def test_version_1_step_files_with_two_readings_per_round_are_still_read(tmp_path):
    r = record()
    messages = {k: getattr(RING, k) for k in ("bytes_sent", "bytes_recv", "messages", "links", "round_labels")}
    step = struct.pack("<qqqdddqqqq" + "qq" * 2, *(r[k] for k in steplog.FIELDS_V1), 21, 22, 23, 29)
    path = step_file(tmp_path)
    open(path, "wb").write(header(1) + frame(steplog.MESSAGES, json.dumps(messages).encode())
                           + frame(steplog.STEP, step))
    (back,) = steplog.read(path)
    assert back == {**json_record(r), "rounds": [["reduce-scatter", 0, 21, 22], ["all-gather", 0, 23, 29]]}


def test_version_2_step_files_with_their_fields_first_are_still_read(tmp_path):
    r = record()
    messages = {k: getattr(RING, k) for k in ("bytes_sent", "bytes_recv", "messages", "links", "round_labels")}
    step = struct.pack("<qdqqqq" + "q" * 3, *(r[k] for k in steplog.FIELDS), *r["round_times_ns"])
    path = step_file(tmp_path)
    head = {"format": "allreduce_train steps", "version": 2, "rank": 0, "steps_per_epoch": EPOCH, "samples": 4}
    open(path, "wb").write(frame(steplog.HEADER, json.dumps(head).encode())
                           + frame(steplog.MESSAGES, json.dumps(messages).encode()) + frame(steplog.STEP, step))
    (back,) = steplog.read(path)
    assert back == json_record(r)


def test_a_newer_format_version_is_named(tmp_path):
    path = step_file(tmp_path)
    open(path, "wb").write(header(4))
    with pytest.raises(steplog.StepLogError, match="format version 4; this netsim reads versions 1 to 3"):
        steplog.read(path)


def test_a_world_of_one_records_steps_without_rounds(tmp_path):
    rec, allreduce = ring_on_rank(1, 5, 0)
    log = steplog.StepLog(step_file(tmp_path), 0, EPOCH, 4)
    log.attach(rec)
    for s in range(3):
        allreduce(np.ones(5, np.float32))
        log.commit(*(record(s)[k] for k in steplog.FIELDS))
    log.close()
    back = steplog.read(step_file(tmp_path))
    assert [(r["step"], r["rounds"], r["bytes_sent"], r["messages"]) for r in back] == \
        [(s, [], 0, 0) for s in range(3)]


def test_a_header_without_what_steps_leave_out_is_damaged(tmp_path):
    path = step_file(tmp_path)
    open(path, "wb").write(header(2))  # no steps_per_epoch, samples
    with pytest.raises(steplog.StepLogError, match=r"damaged header \(steps_per_epoch, samples\)"):
        steplog.read(path)


def test_commit_closes_the_step_the_executor_wrote_into_the_log(tmp_path):
    p, n = 3, 10
    sched = schedules.ring(p, n)
    rec, allreduce = ring_on_rank(p, n, 1)
    log = steplog.StepLog(step_file(tmp_path), 1, EPOCH, 4)
    log.attach(rec)
    buf = np.zeros(n, np.float32)
    for s in range(4):
        allreduce(buf)
        tally = log.commit(s, 0.5, 10 * s, 10 * s + 1, 10 * s + 8, 10 * s + 9)
        assert tally.bytes_sent == sched.elements_sent()[1] * 4 and rec.times == [] and rec.rounds == []
    log.close()
    back = steplog.read(step_file(tmp_path))
    assert [r["epoch"] for r in back] == [0, 0, 0, 1] and back[3]["comm_s"] == 7e-9
    nrounds = len(sched.rounds)
    assert [[r[2:] for r in b["rounds"]] for b in back] == \
        [[[s * (nrounds + 1) + k, s * (nrounds + 1) + k + 1] for k in range(nrounds)] for s in range(4)]


def test_steps_through_the_wrapper_are_committed_whole(tmp_path):
    Label = collections.namedtuple("Label", "phase index")
    rec = recorder.Recorder(0, clock=iter(range(10**6)).__next__)
    wrapped = rec.wrap(NullTransport())
    log = steplog.StepLog(step_file(tmp_path), 0, EPOCH, 4)
    log.attach(rec)
    for s in range(3):
        for i, size in enumerate((2, 3)):
            wrapped.exchange([(1, np.zeros(size, np.float32))], [(1, np.zeros(size, np.float32))],
                             label=Label("exchange", i))
        tally = log.commit(*(record(s)[k] for k in steplog.FIELDS))
        assert tally.bytes_sent == 20 and rec.times == [] and rec.rounds == []
    log.close()
    back = steplog.read(step_file(tmp_path))
    # a round ends where the next exchange is called; the last where it returned
    assert [r["rounds"] for r in back] == \
        [[["exchange", 0, 4 * s, 4 * s + 2], ["exchange", 1, 4 * s + 2, 4 * s + 3]] for s in range(3)]
    assert [r["bytes_sent"] for r in back] == [20] * 3
