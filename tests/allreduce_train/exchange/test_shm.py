"""The shared-memory executor (exchange.shm) without MPI: every schedule run for all ranks at
once as threads of one process, their buffers plain arrays every thread can read (as a
shared-memory window maps them), the ranks of other "nodes" reached over an in-memory
transport; the sums against the message executor's, bit for bit."""

import queue
import random
import threading
import time
from collections import defaultdict

import numpy as np
import pytest

from allreduce_train.exchange import shm
from allreduce_train.exchange.schedule import ScheduleAllreduce
from allreduce_train.exits import PeerLost
from netsim import algorithms

from cases import NAMES, contexts, lengths


class Queues(defaultdict):
    """One queue per (src, dst, tag), made under a lock: two threads that both found a key
    missing would each make a queue, and a message would go into the one thrown away."""

    def __init__(self):
        super().__init__(queue.Queue)
        self.lock = threading.Lock()

    def __missing__(self, key):
        with self.lock:
            return self.setdefault(key, queue.Queue())


class QueueTransport:
    """Point to point between threads: a send is copied out at once (buffered), a receive
    waits for its message; messages between two ranks keep their order."""

    def __init__(self, rank, queues):
        self.rank, self.queues = rank, queues

    def exchange(self, sends, recvs, tag=0):
        for dst, view in sends:
            self.queues[self.rank, dst, tag].put(view.copy())
        for src, view in recvs:
            data = self.queues[src, self.rank, tag].get(timeout=60)
            assert data.shape == view.shape
            view[...] = data

    def native_allreduce(self, buf):
        raise AssertionError("not used")


def groups_of(p, node_of_rank):
    """Ranks sharing memory: those of one node (all of them without a layout)."""
    nodes = node_of_rank or [0] * p
    return [{r for r in range(p) if nodes[r] == nodes[q]} for q in range(p)]


def run_ranks(sched, inputs, node_of_rank=None, calls=1, executor="shm", jitter=False):
    """Every rank's buffers after `calls` all-reduces of inputs (the inputs written anew
    before each call, as backward writes the gradient), by the shared-memory executor or
    the message one."""
    p = sched.world_size
    queues = Queues()
    bufs = [np.empty_like(x) for x in inputs]
    counters = [np.zeros(1, dtype=np.int64) for _ in range(p)]
    errors, out = [], [None] * p

    def rank_main(r):
        try:
            transport = QueueTransport(r, queues)
            if executor == "shm":
                group = groups_of(p, node_of_rank)[r]
                peers = shm.Peers(
                    {q: bufs[q] for q in group}, {q: counters[q] for q in group},
                    fence=lambda: None, alive=lambda q: True,
                )  # fmt: skip
                run = shm.SharedMemoryAllreduce(sched, r, peers, transport, bufs[r].dtype)
            else:
                run = ScheduleAllreduce(sched, r, transport, np, bufs[r].dtype)
            rng = random.Random(r)
            got = []
            for call in range(calls):
                if jitter:  # a slow backward: peers must not read last step's gradient
                    time.sleep(rng.random() * 0.002)
                bufs[r][...] = inputs[r] * (call + 1)
                run(bufs[r])
                got.append(bufs[r].copy())
            out[r] = got
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=rank_main, args=(r,), daemon=True) for r in range(p)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a rank hung"
    return out


def float_inputs(p, n, seed=0):
    """Floats whose sum depends on the order of the additions: a different order shows."""
    rng = np.random.default_rng([p, n, seed])
    return [rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n) for _ in range(p)]


@pytest.mark.slow  # 35 cases of about a second each
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_every_schedule_sums_as_the_message_executor_does_bit_for_bit(name, p):
    """Inside one node, and on every node layout (shared memory inside, messages between),
    with channels, segments and pipelined chunks."""
    for n in lengths(p):
        for context in contexts(p, n):
            sched = algorithms.get(name).schedule(p, n, **context)
            inputs = float_inputs(p, n)
            want = run_ranks(sched, inputs, executor="mpi")
            layouts = [None]
            if context.get("node_of_rank"):
                layouts.append(context["node_of_rank"])
            for layout in layouts:
                got = run_ranks(sched, inputs, node_of_rank=layout)
                for r in range(p):
                    np.testing.assert_array_equal(got[r][0], want[r][0])
                for r in range(1, p):  # and every replica holds the same bits
                    assert got[r][0].tobytes() == got[0][0].tobytes()


@pytest.mark.parametrize("name", ["ring", "halving-doubling", "recursive-doubling", "tree"])
def test_repeated_calls_with_slow_backwards_never_read_a_stale_gradient(name):
    """Each call's inputs differ; ranks write them at different moments. A rank that read a
    peer's buffer before that peer's backward had written it would sum last step's."""
    p, n = 4, 1000
    sched = algorithms.get(name).schedule(p, n)
    inputs = float_inputs(p, n, seed=3)
    want = run_ranks(sched, inputs, calls=5, executor="mpi")
    for _ in range(3):
        got = run_ranks(sched, inputs, calls=5, jitter=True)
        for r in range(p):
            for call in range(5):
                np.testing.assert_array_equal(got[r][call], want[r][call])


def test_a_peer_that_died_ends_the_wait_as_a_lost_peer(monkeypatch):
    monkeypatch.setattr(shm, "ALIVE_EVERY_S", 0.05)
    sched = algorithms.get("ring").schedule(2, 10)
    bufs = [np.ones(10), np.ones(10)]
    counters = [np.zeros(1, dtype=np.int64) for _ in range(2)]
    peers = shm.Peers(
        {0: bufs[0], 1: bufs[1]}, {0: counters[0], 1: counters[1]},
        fence=lambda: None, alive=lambda q: q != 1,
    )  # fmt: skip
    run = shm.SharedMemoryAllreduce(sched, 0, peers, None, np.float64)
    started = time.monotonic()
    with pytest.raises(PeerLost, match="rank 1, whose buffer this rank reads in shared memory"):
        run(bufs[0])
    assert time.monotonic() - started < 5


def test_it_counts_every_transfer_of_the_schedule_as_the_message_executor_does():
    from netsim.record.recorder import count

    for name in NAMES:
        sched = algorithms.get(name).schedule(4, 103, node_of_rank=[0, 0, 1, 1])
        for r in range(4):
            bufs = {q: np.zeros(103) for q in range(4)}
            counters = {q: np.zeros(1, dtype=np.int64) for q in range(4)}
            group = {0, 1} if r < 2 else {2, 3}
            peers = shm.Peers(
                {q: bufs[q] for q in group}, {q: counters[q] for q in group},
                fence=lambda: None, alive=lambda q: True,
            )  # fmt: skip
            transport = QueueTransport(r, Queues())
            ours = shm.SharedMemoryAllreduce(sched, r, peers, transport, np.float64)
            theirs = ScheduleAllreduce(sched, r, transport, np, np.float64)
            theirs.bind(bufs[r])
            mine = count(r, tuple(ours._message(x) for x in ours.rounds))
            assert mine == count(r, theirs._messages), (name, r)


@pytest.mark.parametrize("p", [2, 3, 4, 5])
def test_netsim_holds_back_exactly_the_sums_this_executor_holds_back(p):
    """netsim prices a round through shared memory with one more round where a rank's sums
    wait in a scratch until its readers have read (netsim.sim.shared_memory): the transfers
    it holds back, per round and rank, are the spans this executor holds, for every
    schedule, on one node and on every layout of nodes."""
    from netsim.sim.shared_memory import overwrites_what_peers_read

    n = 97
    for name in NAMES:
        for context in contexts(p, n):
            sched = algorithms.get(name).schedule(p, n, **context)
            layout = np.asarray(context.get("node_of_rank") or [0] * p)
            for r in range(p):
                group = {q for q in range(p) if layout[q] == layout[r]}
                for tag, rnd in enumerate(sched.rounds):
                    mine = shm._compile(rnd, r, group, tag)
                    executor = {(lo, hi) for _, lo, hi, _, _ in mine.incoming
                                if mine.conflicts(lo, hi)}  # fmt: skip
                    held = overwrites_what_peers_read(rnd, layout) & (rnd.dst == r)
                    netsim = {(int(s), int(s + c))
                              for s, c in zip(rnd.start[held], rnd.count[held])}  # fmt: skip
                    assert netsim == executor, (name, context, r, tag)
