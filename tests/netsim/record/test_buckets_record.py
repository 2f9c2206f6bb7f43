"""A bucketed step in the step file (version 5): each bucket's tally and clock readings, and
the step's communication split into exposed and hidden (docs/ARCHITECTURE.md)."""

import collections

import numpy as np
import pytest

from netsim.record import rundir, stepfile
from netsim.record.recorder import Recorder

Label = collections.namedtuple("Label", "phase index")


def open_recorder(tmp_path):
    return Recorder(rundir.step_file(str(tmp_path), 0), 0, 5, 4)


def read(tmp_path):
    return rundir.read_steps(str(tmp_path), 0)


def messages(*sizes):
    """((label, sends, recvs), ...): one round per size, to and from rank 1 (float32)."""
    return tuple(
        (Label("exchange", i), [(1, np.zeros(n, np.float32))], [(1, np.zeros(n, np.float32))])
        for i, n in enumerate(sizes)
    )


def test_a_bucketed_step_reads_back_each_bucket_and_splits_exposed_from_hidden(tmp_path):
    """Two buckets of 2 and 1 rounds and a hidden one (MPI_Allreduce): per bucket its
    offset, bytes, tally, ready/start/end and rounds; the step's rounds are the buckets' in
    launch order; hidden_s is the buckets' time outside the wait t_comm_ns..t_comm_end_ns."""
    rec = open_recorder(tmp_path)
    rec.bind_buckets([(400, 20, messages(2, 3)), (0, 400, messages(5))])
    # bucket 0: ready 100, start 110, rounds end 150 and 170 (before the wait: hidden);
    # bucket 1: ready 160, start 170, ends 260 (the wait is 200..260: 30 of it hidden)
    for b, values in enumerate([(100, 110, 150, 170), (160, 170, 260)]):
        view = rec.bucket_readings(b)
        for k, v in enumerate(values):
            view[k] = v
        del view
    rec.commit(0, 0.5, 50, 200, 260, 300)
    rec.bind_buckets([(0, 8, None), (8, 8, None)])  # hidden: ready, start, end each
    for b, values in enumerate([(400, 410, 420), (430, 440, 450)]):
        view = rec.bucket_readings(b)
        for k, v in enumerate(values):
            view[k] = v
        del view
    rec.commit(1, 0.5, 350, 500, 510, 520)
    rec.close()
    first, second = read(tmp_path)
    b0, b1 = first["buckets"]
    assert (b0["offset"], b0["bytes"], b0["bytes_sent"], b0["messages"]) == (400, 20, 20, 2)
    assert (b0["ready_ns"], b0["start_ns"], b0["end_ns"]) == (100, 110, 170)
    assert b0["rounds"] == [["exchange", 0, 110, 150], ["exchange", 1, 150, 170]]
    assert (b1["offset"], b1["bytes"], b1["bytes_sent"]) == (0, 400, 20)
    assert (b1["ready_ns"], b1["start_ns"], b1["end_ns"]) == (160, 170, 260)
    assert first["rounds"] == b0["rounds"] + b1["rounds"]
    assert first["bytes_sent"] == 40 and first["messages"] == 3
    assert first["exposed_s"] == pytest.approx(60e-9)
    assert first["hidden_s"] == pytest.approx((60 + 30) * 1e-9)  # 110..170, 170..200
    assert first["comm_s"] == pytest.approx(first["exposed_s"] + first["hidden_s"])
    assert second["bytes_sent"] is None and second["rounds"] is None
    assert [(b["start_ns"], b["end_ns"], b["bytes_sent"]) for b in second["buckets"]] == [
        (410, 420, None),
        (440, 450, None),
    ]
    assert second["hidden_s"] == pytest.approx(20e-9)
    assert second["exposed_s"] == pytest.approx(10e-9)


@pytest.mark.parametrize(
    "spans, expect",
    [
        ([], (10, 0)),  # nothing recorded: the wait is all there is
        ([(0, 5)], (10, 5)),  # all before the wait: hidden
        ([(12, 18)], (10, 0)),  # inside the wait: exposed only
        ([(5, 15), (15, 25)], (10, 10)),  # across both edges
        ([(0, 8), (4, 9)], (10, 9)),  # overlapping spans count once
    ],
)
def test_split_counts_the_buckets_time_outside_the_wait_once(spans, expect):
    exposed, hidden = stepfile.split(10, 20, spans)
    assert (exposed * 1e9, hidden * 1e9) == pytest.approx(expect)
