"""Compressed buckets (allreduce_train.exchange.compress) without MPI: every rank a thread over
an in-memory transport. bfloat16's rounding; fp16 summed on float16 as the schedule sums it,
past its range inf, never a silent NaN; top-k's error feedback against a two-step example
worked by hand; PowerSGD against the paper's algorithm written out in NumPy; every rank's
result bit-identical; the recording: each collective's rounds between compute rounds, its
bytes netsim's count."""

import threading
import time
import warnings
from collections import defaultdict

import numpy as np
import pytest

from allreduce_train.exchange import buckets, compress
from netsim import algorithms
from netsim.algorithms import compression as methods


class Transport:
    """The Transport contract for threads: sends copied out when posted, every rank waits for
    all, then takes its messages in posting order."""

    def __init__(self, rank, shared):
        self.rank, (self.mailbox, self.lock, self.barrier) = rank, shared

    def exchange(self, sends, recvs, tag=0):
        with self.lock:
            for dst, view in sends:
                self.mailbox[self.rank, dst, tag].append(view.copy())
        self.barrier.wait()
        with self.lock:
            for src, view in recvs:
                view[...] = self.mailbox[src, self.rank, tag].pop(0)
        self.barrier.wait()


def ranks(p, make, steps):
    """Run make(rank, transport) -> executor on p threads; steps[s][r] is rank r's bucket in
    step s. Returns outs[s][r], each rank's bucket after step s, and the executors."""
    shared = (defaultdict(list), threading.Lock(), threading.Barrier(p, timeout=20))
    executors = [None] * p
    outs = [[None] * p for _ in steps]
    errors = []

    def main(r):
        try:
            executors[r] = make(r, Transport(r, shared))
            for s, step in enumerate(steps):
                view = np.array(step[r])
                executors[r](view)
                outs[s][r] = view
        except Exception as exc:  # noqa: BLE001 - reported below; frees the other ranks
            errors.append(exc)
            shared[2].abort()

    threads = [threading.Thread(target=main, args=(r,)) for r in range(p)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return outs, executors


def maker(method, tensors, dtype=np.float32, algorithm="ring", p=None):
    def make(rank, transport):
        return compress.make(
            methods.parse(method), tensors, p, rank, transport, dtype, algorithms.get(algorithm)
        )

    return make


def vector(n):
    return [(0, n, (n,))]


def test_bfloat16_rounds_to_nearest_even_and_keeps_inf_and_nan():
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, -2.5, 3.4e38, np.inf,
                  -np.inf, np.nan, 0.0, -0.0, 1e-40], dtype=np.float32)  # fmt: skip
    bits = np.empty(len(x), np.uint16)
    compress.to_bf16(x, bits)
    back = np.empty(len(x), np.float32)
    compress.from_bf16(bits, back)
    # ties go to even (1 + 2^-8 down, 1 + 3 x 2^-8 up), past a tie up; 3.4e38 rounds past
    # bfloat16's largest (as float32's overflow does); 1e-40 (subnormal) to 2^-133
    want = [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -2.5, np.inf, np.inf, -np.inf, np.nan, 0.0, -0.0,
            2.0**-133]  # fmt: skip
    np.testing.assert_array_equal(back, np.array(want, dtype=np.float32))
    assert np.signbit(back[10])
    # an add is the float32 sum rounded once
    a, b = np.empty(1, np.uint16), np.empty(1, np.uint16)
    compress.to_bf16(np.float32([1.0]), a)
    compress.to_bf16(np.float32([2**-8 + 2**-9]), b)
    compress.Bf16Arrays.add(a, b, out=a)
    compress.from_bf16(a, back[:1])
    assert back[0] == 1 + 2**-7  # 1.01171875 rounds up to 1.0078125


@pytest.mark.parametrize("p,algorithm", [(1, "ring"), (2, "ring"), (3, "tree"), (4, "ring")])
def test_fp16_sums_on_float16_in_the_schedules_order_and_every_rank_gets_the_same(p, algorithm):
    n = 1000
    rng = np.random.default_rng(p)
    grads = [(rng.standard_normal(n) * 10).astype(np.float32) for _ in range(p)]
    outs, _ = ranks(p, maker("fp16", vector(n), algorithm=algorithm, p=p), [grads])
    schedule = algorithms.get(algorithm).schedule(p, n)
    want = algorithms.execute(schedule, [g.astype(np.float16) for g in grads])
    for r in range(p):
        np.testing.assert_array_equal(outs[0][r], want[r].astype(np.float32))
        assert outs[0][r].tobytes() == outs[0][0].tobytes()
    # close to the float32 sum: float16 keeps 11 bits
    np.testing.assert_allclose(outs[0][0], np.sum(grads, axis=0), rtol=0, atol=0.2)


def test_bf16_sums_each_add_in_float32_rounded_back():
    p, n = 3, 500
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(p)]
    outs, _ = ranks(p, maker("bf16", vector(n), p=p), [grads])
    # by hand: the ring's order, each partial sum rounded to bfloat16
    schedule = algorithms.get("ring").schedule(p, n)

    def rounded(x):
        b = np.empty(len(x), np.uint16)
        compress.to_bf16(x.astype(np.float32), b)
        out = np.empty(len(x), np.float32)
        compress.from_bf16(b, out)
        return out.astype(np.float64)

    bufs = [rounded(g.astype(np.float64)) for g in grads]
    for rnd in schedule.rounds:
        sent = [bufs[s][lo : lo + k].copy() for s, lo, k in zip(rnd.src, rnd.start, rnd.count)]
        for d, lo, k, data, adds in zip(rnd.dst, rnd.start, rnd.count, sent, rnd.adds):
            bufs[d][lo : lo + k] = rounded(bufs[d][lo : lo + k] + data) if adds else data
    for r in range(p):
        np.testing.assert_array_equal(outs[0][r], bufs[r].astype(np.float32))


def test_fp16_past_its_range_is_inf_which_the_trainer_stops_on_not_a_silent_nan():
    """65504 is float16's largest: a rank's value past it, or a sum past it, is inf (and no
    warning is printed from the communication thread)."""
    big = [np.array([70000.0, 40000.0, 1.0], np.float32), np.array([1.0, 40000.0, 1.0], np.float32)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outs, _ = ranks(2, maker("fp16", vector(3), p=2), [big])
    for out in outs[0]:
        assert np.isinf(out[0]) and np.isinf(out[1]) and out[2] == 2.0


def test_topk_error_feedback_two_steps_worked_by_hand():
    """n = 5, topk:0.4 (k = 2), one rank: the sum is what it sends.
    step 1: residual = g1 = [1, -3, 2, 0.5, 0]; sends -3 (index 1) and 2 (index 2); keeps
            [1, 0, 0, 0.5, 0]. step 2: residual = [2, 1, 1, 1.5, 1]; sends 2 and 1.5 (indices
            0, 3); keeps [0, 1, 1, 0, 1]."""
    g1, g2 = [1.0, -3.0, 2.0, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]
    steps = [[np.array(g1, np.float32)], [np.array(g2, np.float32)]]
    outs, (executor,) = ranks(1, maker("topk:0.4", vector(5), p=1), steps)
    np.testing.assert_array_equal(outs[0][0], [0, -3, 2, 0, 0])
    np.testing.assert_array_equal(outs[1][0], [2, 0, 0, 1.5, 0])
    np.testing.assert_array_equal(executor.method.residual, [0, 1, 1, 0, 1])
    # two ranks, the second sending the first's negation shifted: the sum of what each sends,
    # on both ranks, in rank order
    other = [[0.0, 0.0, 0.0, 4.0, -5.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    steps = [[np.array(g1, np.float32), np.array(other[0], np.float32)],
             [np.array(g2, np.float32), np.array(other[1], np.float32)]]  # fmt: skip
    outs, executors = ranks(2, maker("topk:0.4", vector(5), p=2), steps)
    np.testing.assert_array_equal(outs[0][0], [0, -3, 2, 4, -5])
    np.testing.assert_array_equal(outs[1][0], [2, 0, 0, 1.5, 0])  # rank 1 has nothing left
    assert all(o[0].tobytes() == o[1].tobytes() for o in outs)


def test_topk_sends_a_nan_and_resets_its_memory():
    g = np.array([np.nan, 1.0, 0.0, 0.0], np.float32)
    outs, (executor,) = ranks(1, maker("topk:0.25", vector(4), p=1), [[g]])
    assert np.isnan(outs[0][0][0])
    assert not executor.method.residual.any()


def gram_schmidt(m):
    m = m.copy()
    for i in range(m.shape[1]):
        m[:, i] /= np.linalg.norm(m[:, i])
        for j in range(i + 1, m.shape[1]):
            m[:, j] -= (m[:, i] @ m[:, j]) * m[:, i]
    return m


def paper(grads_by_step, q0, p):
    """PowerSGD (Vogels et al. 2019, Algorithms 1 and 2) on one matrix, each worker w's M_w
    with its error; aggregation as a mean, as the paper writes it (its workers hold mean
    gradients: here p x ours). Returns the sum ours is (the mean x p) per step."""
    errors = [np.zeros_like(grads_by_step[0][0]) for _ in range(p)]
    q, out = q0.copy(), []
    for s, grads in enumerate(grads_by_step):
        if s:
            q = gram_schmidt(q)
        deltas = [p * g + e for g, e in zip(grads, errors)]  # the paper's mean units
        ps = [d @ q for d in deltas]
        P = gram_schmidt(np.mean(ps, axis=0))
        q = np.mean([d.T @ P for d in deltas], axis=0)
        update = P @ q.T
        errors = [d - update for d in deltas]  # e_w = delta_w - decompress
        out.append(update)  # the mean of the p workers' means: our sum
    return out


@pytest.mark.parametrize("p", [1, 3])
def test_powersgd_is_the_papers_algorithm_on_a_small_matrix(p):
    """A weight held (in, out) = (12, 10) is DDP's (out, in) = (10, 12) matrix, compressed
    at rank 2 ((10 + 12) x 2 x 2 < 120); three steps (warm start and error feedback at
    work); the bias beside it summed exactly."""
    rows, cols, rank = 10, 12, 2
    tensors = [(0, cols * rows, (cols, rows)), (cols * rows, rows, (rows,))]
    rng = np.random.default_rng(p)
    mats = [[rng.standard_normal((rows, cols)) for _ in range(p)] for _ in range(3)]
    biases = [[rng.standard_normal(rows) for _ in range(p)] for _ in range(3)]
    steps = [[np.concatenate([m.T.ravel(), b]) for m, b in zip(ms, bs)]
             for ms, bs in zip(mats, biases)]  # fmt: skip
    outs, executors = ranks(p, maker("powersgd:2", tensors, np.float64, p=p), steps)
    q0 = np.random.default_rng(0).standard_normal((cols, rank))  # make's seed
    want = paper(mats, gram_schmidt(q0), p)
    for s in range(3):
        for r in range(p):
            assert outs[s][r].tobytes() == outs[s][0].tobytes()  # replicas bit-identical
        got = outs[s][0][: rows * cols].reshape(cols, rows).T
        np.testing.assert_allclose(got, want[s], rtol=1e-9, atol=1e-12)
        ring = algorithms.get("ring").schedule(p, rows)  # the bias: summed as it is
        np.testing.assert_array_equal(outs[s][0][rows * cols :],
                                      algorithms.execute(ring, biases[s])[0])  # fmt: skip
    assert [c.what for c in executors[0].plan] == ["uncompressed", "P", "Q"]


class Recorder:
    """A bucket's part of a recorder, as BucketedExchange hands one: bind and readings."""

    clock = staticmethod(time.perf_counter_ns)

    def __init__(self):
        self.messages, self.slots = None, None

    def bind(self, messages):
        self.messages = messages
        self.slots = np.zeros(len(messages) + 1, np.int64)

    def readings(self):
        return memoryview(self.slots)


@pytest.mark.parametrize("method", ["fp16", "topk:0.1", "powersgd:2"])
def test_a_bucket_records_compute_rounds_around_its_collectives_and_netsims_bytes(method):
    p = 3
    widths = (6, 8, 5)
    tensors = buckets.tensors_in(widths, buckets.Bucket(0, 6 * 8 + 8 + 8 * 5 + 5, 0))
    recorders = [Recorder() for _ in range(p)]

    def make(rank, transport):
        executor = maker(method, tensors, p=p)(rank, transport)
        executor.record_into(recorders[rank])
        return executor

    n = tensors[-1][0] + tensors[-1][1]
    grads = [np.arange(n, dtype=np.float32) * (r + 1) for r in range(p)]
    _, executors = ranks(p, make, [grads, grads])
    plan = executors[0].plan
    ddp = [(count, (s[1], s[0]) if len(s) == 2 else s) for _, count, s in tensors]
    assert plan == methods.collectives(methods.parse(method), ddp, p, np.float32)
    want = methods.bytes_sent(plan, algorithms.get("ring"), p)
    for r, rec in enumerate(recorders):
        sent = sum(v.nbytes for _, sends, _ in rec.messages for _, v in sends)
        assert sent == want[r]
        compute = [k for k, (label, s, v) in enumerate(rec.messages) if not s and not v]
        assert len(compute) == len(plan) + 1 and compute[0] == 0
        assert compute[-1] == len(rec.messages) - 1
        # compute round j is ("compress", j); every collective's rounds keep their schedule's
        labels = [(label.phase, label.index) for label, _, _ in rec.messages]
        assert [labels[k] for k in compute] == [("compress", j) for j in range(len(plan) + 1)]
        rounds = [(r.phase, r.index) for s in methods.schedules(plan, algorithms.get("ring"), p)
                  for r in s.rounds]  # fmt: skip
        assert [x for k, x in enumerate(labels) if k not in compute] == rounds
        assert (np.diff(rec.slots) >= 0).all() and rec.slots[0] > 0
        assert executors[r].compute_ns > 0 and executors[r].calls == 2
