"""The ring schedule, checked as pure data: sums, byte counts, shape of every round."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from netsim import algorithms
from netsim.algorithms import RING
from netsim.errors import InputError

from cases import lengths


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 7])
def test_ring_sums_for_awkward_lengths(p):
    for n in lengths(p):
        rng = np.random.default_rng(n)
        inputs = [rng.integers(-1000, 1000, n).astype(np.float64) for _ in range(p)]
        out = algorithms.execute(RING.schedule(p, n), inputs)
        for buf in out:
            np.testing.assert_array_equal(buf, np.sum(inputs, axis=0))


@given(p=st.integers(1, 12), n=st.integers(0, 300))
def test_ring_sums_property(p, n):
    inputs = [np.arange(n, dtype=np.float64) * (r + 1) for r in range(p)]
    for buf in algorithms.execute(RING.schedule(p, n), inputs):
        np.testing.assert_array_equal(buf, np.arange(n) * p * (p + 1) / 2)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 1001, 2**20 + 3])
def test_ring_bytes_equal_analytic_count(p, n):
    """Rank r sends every chunk in each phase except chunk r+1 (reduce-scatter) and chunk r+2
    (all-gather), and receives all but chunks r and r+1; with equal chunks each is
    2(p-1)/p * n elements."""
    sched = RING.schedule(p, n)
    sizes = np.diff(algorithms.chunk_bounds(n, p))
    sent = [2 * n - sizes[(r + 1) % p] - sizes[(r + 2) % p] if p > 1 else 0 for r in range(p)]
    received = [2 * n - sizes[r] - sizes[(r + 1) % p] if p > 1 else 0 for r in range(p)]
    assert list(sched.elements_sent()) == sent
    assert list(sched.elements_received()) == received
    assert sched.elements_sent().sum() == 2 * (p - 1) * n
    if n % p == 0:
        assert all(e == 2 * (p - 1) * n // p for e in sent + received)


@pytest.mark.parametrize("p", [2, 3, 4, 6])
def test_ring_round_shape(p):
    sched = RING.schedule(p, 10 * p)
    assert [r.phase for r in sched.rounds] == ["reduce-scatter"] * (p - 1) + ["all-gather"] * (
        p - 1
    )
    assert [r.reduce for r in sched.rounds] == [True] * (p - 1) + [False] * (p - 1)
    for rnd in sched.rounds:
        # every rank sends exactly once, to its right neighbour, and receives exactly once
        assert sorted(rnd.src) == list(range(p))
        assert list(rnd.dst) == [(s + 1) % p for s in rnd.src]
    assert list(sched.messages_sent()) == [2 * (p - 1)] * p


def test_ring_drops_empty_chunks():
    sched = RING.schedule(5, 2)  # three of five chunks are empty
    assert all((r.count > 0).all() for r in sched.rounds)
    assert sched.elements_sent().sum() == 2 * 4 * 2


def test_single_rank_and_empty_buffer_are_no_ops():
    assert RING.schedule(1, 1000).rounds == ()
    assert all(len(r.src) == 0 for r in RING.schedule(4, 0).rounds)


def test_chunk_bounds_cover_buffer_evenly():
    b = algorithms.chunk_bounds(10, 4)
    assert b[0] == 0 and b[-1] == 10
    assert np.ptp(np.diff(b)) <= 1


@pytest.mark.parametrize(
    "n, k",
    [
        (2**40 + 7, 2**23 + 1),  # a trillion elements: c * n passes int64 from c = 2**23
        (2**62 + 7, 1001),  # c * n passes int64 from c = 2, and float64 loses the 7
    ],
)
def test_chunk_bounds_are_exact_where_c_times_n_overflows_int64(n, k):
    """The smallest sizes that overflow c * n // k in int64 (or round it in float64): the
    bounds equal Python's exact integers, at every chunk of the small count and at a thousand
    spread over the large one, its last (overflowing) ones included."""
    b = algorithms.chunk_bounds(n, k)
    some = sorted({*range(0, k + 1, max(1, k // 1000)), k // 2, *range(k - 3, k + 1)})
    assert [int(b[c]) for c in some] == [c * n // k for c in some]
    assert len(b) == k + 1 and b[-1] == n and np.ptp(np.diff(b)) <= 1


@pytest.mark.parametrize("bad", [(0, 10), (-1, 10), (2, -1)])
def test_ring_rejects_bad_arguments(bad):
    with pytest.raises(InputError):
        RING.schedule(*bad)


def schedule_bytes(schedule):
    """Bytes of the distinct arrays a schedule holds: views count once, by what they view."""
    seen = {}
    for r in schedule.rounds:
        for a in (r.src, r.dst, r.start, r.count):
            base = a if a.base is None else a.base
            seen[id(base)] = base.nbytes
    return sum(seen.values())


@pytest.mark.slow
@pytest.mark.parametrize("nelems", [10**8, 10**8 + 7])  # even chunks, and a prime's
def test_a_ring_schedule_takes_memory_linear_in_ranks(nelems):
    """2(p-1) rounds of p transfers each, in O(p) memory: the rounds share src and dst and
    view their chunks in one table."""
    small, large = RING.schedule(1024, nelems), RING.schedule(32768, nelems)
    assert len(large.rounds) == 2 * 32767
    assert schedule_bytes(large) <= 40 * schedule_bytes(small)  # 32 times the ranks
    assert schedule_bytes(large) < 200 * 32768
    assert large.rounds[5].span == (nelems // 32768, -(-nelems // 32768), nelems)
