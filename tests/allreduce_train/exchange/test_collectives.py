"""The MPI executor (allreduce_train.exchange.schedule) without MPI: its rule for copy rounds, and
every schedule run for all ranks at once, as threads in one process, over an in-memory
transport that keeps the Transport contract; the results against netsim's reference."""

import hashlib
import threading
from collections import defaultdict

import numpy as np
import pytest

from allreduce_train.exchange import schedule as collectives
from netsim import algorithms

from cases import NAMES, contexts, integer_inputs, lengths


def all_schedules():
    """Every algorithm's schedule for every length but 0 (no transfers, nothing to check:
    test_executor_runs_every_schedule_on_every_rank runs it) and each distinct context."""
    for name in NAMES:
        for p in range(1, 10):
            for n in lengths(p)[1:]:
                distinct = []  # (contexts() lists the one-node and one-rank-per-node
                # layouts twice each, and a None that is the same as none given)
                for context in contexts(p, n):
                    context = {k: v for k, v in context.items() if v is not None}
                    if context not in distinct:
                        distinct.append(context)
                        yield algorithms.get(name).schedule(p, n, **context)


def transfers(sched) -> bytes:
    """A digest of all that the executor reads of a schedule: every round's transfers."""
    digest = hashlib.blake2b(f"{sched.algorithm} {sched.world_size} {sched.nelems}".encode())
    for rnd in sched.rounds:
        digest.update(f"|{rnd.phase} {rnd.index} {len(rnd.count)}|".encode())
        for column in (rnd.adds, rnd.src, rnd.dst, rnd.start, rnd.count):
            digest.update(np.asarray(column, dtype=np.int64).tobytes())
    return digest.digest()


def distinct_schedules():
    """all_schedules() once each: an algorithm ignores what it does not take of a context
    (a ring, the node layout), which gives the same schedule again, transfer for transfer."""
    seen = set()
    for sched in all_schedules():
        key = transfers(sched)
        if key not in seen:
            seen.add(key)
            yield sched


@pytest.mark.slow
def test_copies_never_receive_into_a_slice_sent_or_received_twice_in_the_same_round():
    """Checked twice: on the schedule's data here, and by compiling every rank's executor
    (which refuses such a round). Pipelined steps mix copies and reduces."""
    for sched in distinct_schedules():
        for rnd in sched.rounds:
            copy = ~rnd.adds
            lo, hi = rnd.start, rnd.start + rnd.count
            meets = (lo[copy, None] < hi) & (lo < hi[copy, None])  # [copy, any transfer]
            into = rnd.dst[copy, None]  # the rank each copy lands on
            # a copy lands alone (the one receive on its rank that it meets is itself), and
            # not on what its rank is sending
            assert ((meets & (rnd.dst == into)).sum(axis=1) == 1).all(), "overlapping receives"
            assert not (meets & (rnd.src == into)).any(), "a copy onto a slice being sent"
        for rank in range(sched.world_size):
            collectives.ScheduleAllreduce(sched, rank, None, np, np.float64)


def test_executor_refuses_a_copy_round_that_overwrites_what_it_sends():
    # rank 1 sends [2, 6) and gets [0, 4)
    src, dst, start, count = np.array([0, 1]), np.array([1, 0]), np.array([0, 2]), np.array([4, 4])
    bad = algorithms.Round("all-gather", 0, False, src, dst, start, count)
    sched = algorithms.Schedule("bad", 2, 8, (bad,))
    with pytest.raises(ValueError, match="all-gather round 0 receives into a slice it is sending"):
        collectives.ScheduleAllreduce(sched, 1, None, np, np.float64)
    twice = algorithms.Round(
        "all-gather",
        0,
        False,
        np.array([1, 2]),
        np.array([0, 0]),
        np.array([0, 2]),
        np.array([4, 4]),
    )
    with pytest.raises(ValueError, match="receives twice into one slice"):
        collectives.ScheduleAllreduce(
            algorithms.Schedule("bad", 3, 8, (twice,)), 0, None, np, np.float64
        )


class MemoryTransport:
    """The Transport contract for p threads in one process: a round's sends are copied out
    when posted (MPI may read them until the round ends), every rank waits until all have
    posted, then takes its messages in posting order (MPI's non-overtaking rule)."""

    def __init__(self, rank, mailbox, lock, barrier):
        self.rank, self.mailbox, self.lock, self.barrier = rank, mailbox, lock, barrier
        self.calls = []

    def exchange(self, sends, recvs, tag=0):
        with self.lock:
            for dst, view in sends:
                self.mailbox[self.rank, dst, tag].append(view.copy())
        self.barrier.wait()
        with self.lock:
            for src, view in recvs:
                data = self.mailbox[src, self.rank, tag].pop(0)
                assert data.shape == view.shape
                view[...] = data
        self.barrier.wait()
        self.calls.append((tag, len(sends), len(recvs)))


def run_threads(sched, inputs):
    p = sched.world_size
    mailbox, lock, barrier = defaultdict(list), threading.Lock(), threading.Barrier(p, timeout=20)
    transports = [MemoryTransport(r, mailbox, lock, barrier) for r in range(p)]
    bufs = [x.copy() for x in inputs]
    errors = []

    def rank_main(r):
        try:
            collectives.ScheduleAllreduce(sched, r, transports[r], np, bufs[r].dtype)(bufs[r])
        except Exception as exc:  # noqa: BLE001 - reported below, and frees the other ranks
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(p)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not any(mailbox.values()), "messages sent but never received"
    return bufs, transports


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p", [1, 2, 3, 5, 6, 7])
def test_executor_runs_every_schedule_on_every_rank(name, p):
    """One exchange per round on every rank, whatever the rank does in it: several receives
    into one slice (tree parents), only sends or only receives (tree, fold, pull). Each
    schedule once: a context the algorithm ignores gives one already run, on the same inputs."""
    seen = set()
    for n in (0, 1, p + 1, 97):
        for context in contexts(p, n):
            sched = algorithms.get(name).schedule(p, n, **context)
            if (key := transfers(sched)) in seen:
                continue
            seen.add(key)
            inputs = integer_inputs(p, n)
            bufs, transports = run_threads(sched, inputs)
            for buf in bufs:
                np.testing.assert_array_equal(buf, np.sum(inputs, axis=0))
            for t in transports:  # one exchange per round, tagged with the round's number
                assert [tag for tag, _, _ in t.calls] == list(range(len(sched.rounds)))
            if name == "tree" and p >= 3 and n and not {"channels", "chunks"} & set(context):
                depth = int(np.log2(p))
                # (round, sends, receives) on the root: last reduce round, first broadcast
                assert transports[0].calls[depth - 1][1:] == (0, 2)
                assert transports[0].calls[depth][1:] == (2, 0)


def test_an_algorithm_without_a_schedule_is_the_librarys_own():
    class Native:
        def __init__(self):
            self.calls = 0

        def native_allreduce(self, buf):
            self.calls += 1
            buf *= 2

    transport, buf = Native(), np.ones(3)
    allreduce = collectives.make_allreduce(
        algorithms.get("mpi"), 2, 0, 3, transport, np, np.float64
    )
    allreduce(buf)
    assert isinstance(allreduce, collectives.NativeAllreduce) and allreduce.schedule is None
    assert transport.calls == 1 and buf.tolist() == [2, 2, 2]
