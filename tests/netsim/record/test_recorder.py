"""The one recording path without MPI: the executor stores its clock readings through a
Recorder into the rank's step file, and the file reads back as the records netsim merges.
Bytes are counted from the buffers handed to the transport, whatever the transport then
does with them; a killed rank keeps every step it finished."""

import collections
import os
import struct

import numpy as np
import pytest

from allreduce_train.exchange import schedule as collectives
from netsim import algorithms
from netsim.algorithms import RING
from netsim.record import recorder, rundir, stepfile
from netsim.record.recorder import Recorder

EPOCH = 3  # steps per epoch of the step files written here
Label = collections.namedtuple("Label", "phase index")


class NullTransport:
    def exchange(self, sends, recvs, tag=0):
        for _, buf in recvs:  # as if every peer sent zeros
            buf[...] = 0

    def native_allreduce(self, buf):
        pass


def open_recorder(tmp_path, rank=0, capacity=1 << 20):
    rec = Recorder(rundir.step_file(str(tmp_path), rank), rank, EPOCH, 4, capacity=capacity)
    rec.clock = iter(range(10**9)).__next__  # readings 0, 1, 2, ...: every one is seen
    return rec


def ring_on_rank(p, n, rank, rec, algorithm=RING):
    allreduce = collectives.make_allreduce(algorithm, p, rank, n, NullTransport(), np, np.float32)
    allreduce.record_into(rec)
    return allreduce


def fields(step):
    """A step's own fields: step, loss, t_start_ns, t_comm_ns, t_comm_end_ns, t_end_ns."""
    return step, 0.25, 1000 * step + 10, 1000 * step + 20, 1000 * step + 30, 1000 * step + 45


def read(tmp_path, rank=0):
    return rundir.read_steps(str(tmp_path), rank)


@pytest.mark.parametrize("p,n", [(2, 7), (3, 10), (4, 97)])
def test_counts_every_message_of_the_ring_exactly_and_reads_the_clock_once_per_round_boundary(
    p, n, tmp_path
):
    sched = RING.schedule(p, n)
    nrounds = 2 * (p - 1)
    for rank in range(p):
        rec = open_recorder(tmp_path, rank)
        allreduce = ring_on_rank(p, n, rank, rec)
        allreduce(np.zeros(n, np.float32))
        tally = rec.tally
        assert tally.bytes_sent == sched.elements_sent()[rank] * 4
        assert tally.bytes_recv == sched.elements_received()[rank] * 4
        assert tally.messages == sched.messages_sent()[rank] == nrounds
        assert tally.links == ((rank, (rank + 1) % p, tally.bytes_sent, nrounds),)
        assert tally.round_labels == tuple((r.phase, r.index) for r in sched.rounds)
        # first round posted, then each round's end, read once after its adds
        assert list(rec.readings()) == list(range(nrounds + 1))
        rec.commit(*fields(0))
        rec.close()
        (back,) = read(tmp_path, rank)
        assert back["rounds"] == [[r.phase, r.index, k, k + 1] for k, r in enumerate(sched.rounds)]
        assert (back["bytes_sent"], back["messages"]) == (tally.bytes_sent, nrounds)


def test_the_messages_are_counted_once_while_the_same_and_written_again_when_they_change(tmp_path):
    rec = open_recorder(tmp_path)
    allreduce = ring_on_rank(3, 10, 0, rec)
    buf = np.zeros(10, np.float32)
    allreduce(buf)
    first, size = rec.tally, rec.size
    rec.commit(*fields(0))
    allreduce(np.zeros(10, np.float32))  # another buffer: new views, the same messages: no frame
    assert rec.tally is first and rec.size == size + rec._fsize
    rec.commit(*fields(1))
    other = ring_on_rank(3, 12, 0, rec)  # other sizes: a new messages frame
    other(np.zeros(12, np.float32))
    rec.commit(*fields(2))
    rec.close()
    back = read(tmp_path)
    assert [r["bytes_sent"] for r in back] == [first.bytes_sent] * 2 + [rec.tally.bytes_sent]
    assert rec.tally.bytes_sent == RING.elements_sent(3, 12)[0] * 4 != first.bytes_sent


def test_a_collective_that_hides_its_messages_and_one_without_rounds(tmp_path):
    for rank, (algorithm, p) in enumerate(((algorithms.get("mpi"), 2), (RING, 1))):
        rec = open_recorder(tmp_path, rank)
        allreduce = ring_on_rank(p, 4, 0, rec, algorithm)
        for s in range(3):
            allreduce(np.ones(4, np.float32))
            rec.commit(*fields(s))
        rec.close()
        back = read(tmp_path, rank)
        assert [r["step"] for r in back] == [0, 1, 2]
        if algorithm.scheduled:  # a world of one: steps, no rounds, nothing sent
            assert all(
                (r["rounds"], r["bytes_sent"], r["messages"], r["links"]) == ([], 0, 0, [])
                for r in back
            )
        else:
            assert rec.tally is recorder.HIDDEN
            assert all(r["rounds"] is None and r["bytes_sent"] is None for r in back)


def messages(*sizes, label=True):
    """((label, sends, recvs), ...): one round per size, sending to and receiving from rank 1."""
    return tuple(
        (
            Label("exchange", i) if label else None,
            [(1, np.zeros(n, np.float32))],
            [(1, np.zeros(n, np.float32))],
        )
        for i, n in enumerate(sizes)
    )


def store(rec, step, readings=()):
    slots = rec.readings()
    for k, value in enumerate(readings):
        slots[k] = value
    del slots  # a view of the map: the map may grow at the commit
    rec.commit(*fields(step))


def test_the_file_reads_back_every_step_derived_fields_included_through_changes_of_messages(
    tmp_path,
):
    rec = open_recorder(tmp_path)
    rec.bind(messages(2, 3))
    store(rec, 0, (21, 22, 29))
    store(rec, 1, (31, 35, 39))
    rec.bind(messages(5, label=False))  # counted, not drawn
    store(rec, 2, (41, 42))
    rec.bind(None)
    store(rec, 3)
    rec.bind(messages(2, 3))
    rec.readings()[0] = 7
    rec.commit(4, float("nan"), *fields(4)[2:])
    rec.close()
    back = read(tmp_path)
    t0, t1, t2, t3 = fields(0)[2:]
    assert back[0] == {
        "step": 0,
        "epoch": 0,
        "samples": 4,
        "loss": 0.25,
        "compute_s": ((t1 - t0) + (t3 - t2)) / 1e9,
        "comm_s": (t2 - t1) / 1e9,
        "exposed_s": (t2 - t1) / 1e9,  # not bucketed: all of it exposed
        "hidden_s": 0.0,
        "t_start_ns": t0,
        "t_comm_ns": t1,
        "t_comm_end_ns": t2,
        "t_end_ns": t3,
        "bytes_sent": 20,
        "bytes_recv": 20,
        "messages": 2,
        "links": [[0, 1, 20, 2]],
        "rounds": [["exchange", 0, 21, 22], ["exchange", 1, 22, 29]],
        "d2h_bytes": 0,  # nothing staged: the CPU's record
        "h2d_bytes": 0,
        "d2h_s": 0.0,
        "h2d_s": 0.0,
        "buckets": None,
    }
    assert [r["epoch"] for r in back] == [0, 0, 0, 1, 1]
    assert back[1]["rounds"] == [["exchange", 0, 31, 35], ["exchange", 1, 35, 39]]
    assert (back[2]["rounds"], back[2]["bytes_sent"]) == ([], 20)
    assert (back[3]["rounds"], back[3]["bytes_sent"], back[3]["links"]) == (None, None, None)
    assert np.isnan(back[4]["loss"]) and back[4]["rounds"][0][2] == 7


def test_the_file_grows_and_ends_cut_to_its_records(tmp_path):
    rec = open_recorder(tmp_path, capacity=4096)
    rec.bind(messages(2, 3))
    for s in range(2000):
        store(rec, s, (s, s + 1, s + 2))
    assert rec.capacity > 4096
    rec.close()
    path = rundir.step_file(str(tmp_path), 0)
    back = stepfile.read(path)
    assert [r["step"] for r in back] == list(range(2000)) and back[1999]["rounds"][1][2:] == [
        2000,
        2001,
    ]
    assert os.path.getsize(path) == rec.size  # the zeros past the last frame are cut off


def test_a_crash_keeps_every_finished_step_and_drops_a_torn_one(tmp_path):
    rec = open_recorder(tmp_path)
    rec.bind(messages(2, 3))
    for s in range(5):
        store(rec, s, (1, 2, 3))
    path = rundir.step_file(str(tmp_path), 0)  # never closed: the file as a killed rank leaves it
    assert os.path.getsize(path) == rec.capacity
    for k in range(3):  # killed in step 5: its frame open, its readings stored, never closed
        rec.readings()[k] = 100 + k
    assert [r["step"] for r in stepfile.read(path)] == [0, 1, 2, 3, 4]
    # killed while closing it: its fields stored, not yet its closing size
    at = rec.size + rec._fsize - 4 - struct.calcsize("<" + stepfile.FIELDS_FORMAT)
    struct.pack_into("<" + stepfile.FIELDS_FORMAT, rec.map, at, *fields(5))
    assert [r["step"] for r in stepfile.read(path)] == [0, 1, 2, 3, 4]


def test_every_frame_starts_at_a_multiple_of_8_bytes(tmp_path):
    rec = open_recorder(tmp_path)
    for step, m in enumerate((messages(2, 3), messages(5), messages(1, label=False), None)):
        rec.bind(m)
        store(rec, step)
    rec.close()
    data, offset, offsets = open(rundir.step_file(str(tmp_path), 0), "rb").read(), 0, []
    while offset < len(data):
        offsets.append(offset)
        offset += struct.unpack_from("<I", data, offset)[0]
    assert offset == len(data) and len(offsets) == 1 + 4 * 2 and all(o % 8 == 0 for o in offsets)


def test_the_executor_writes_its_readings_into_the_open_frame_through_growth_and_new_views(
    tmp_path,
):
    p, n = 4, 11
    nrounds = len(RING.schedule(p, n).rounds)
    rec = open_recorder(tmp_path, 3, capacity=1024)
    allreduce = ring_on_rank(p, n, 3, rec)
    buf = np.zeros(n, np.float32)
    for s in range(300):  # grows the file several times
        if s == 150:
            buf = np.zeros(n, np.float32)  # new views, the same messages
        if s == 200:
            allreduce.record_into(None)  # not recording: nothing read, nothing stored
        if s == 210:
            allreduce.record_into(rec)
        allreduce(buf)
        if allreduce.recorder is not None:
            rec.commit(*fields(s))
    assert rec.capacity > 1024
    allreduce(buf)  # step 300: written into the open frame, never committed (a crash)
    back = read(tmp_path, 3)
    steps = [s for s in range(300) if not 200 <= s < 210]
    assert [r["step"] for r in back] == steps
    readings = [
        [s * (nrounds + 1) + k, s * (nrounds + 1) + k + 1]
        for s in range(290)
        for k in range(nrounds)
    ]
    assert [x[2:] for r in back for x in r["rounds"]] == readings
    rec.close()
    assert len(read(tmp_path, 3)) == 290


def test_a_commit_before_the_collective_bound_its_messages_is_a_bug(tmp_path):
    rec = open_recorder(tmp_path)
    with pytest.raises(RuntimeError, match="before its collective bound"):
        rec.commit(*fields(0))


def test_a_step_file_is_never_overwritten(tmp_path):
    open_recorder(tmp_path).close()
    with pytest.raises(FileExistsError):
        open_recorder(tmp_path)
