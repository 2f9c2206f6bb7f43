"""Recursive doubling: log2 p rounds of whole buffers, its exact bytes, simulated = closed form.

The generic tests (test_algorithms.py, test_collectives.py, the MPI programs) run it with
every other schedule; these pin what is its own.
"""

from __future__ import annotations

import numpy as np
import pytest

from netsim import algorithms
from netsim.cluster import topology
from netsim.sim import simulate

RD = algorithms.get("recursive-doubling")


def log2_floor(p: int) -> int:
    return p.bit_length() - 1


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6, 7, 8, 12, 16])
@pytest.mark.parametrize("n", [0, 1, 7, 1001])
def test_rounds_and_bytes_are_the_analytic_ones(p, n):
    q = 1 << log2_floor(p)
    sched = RD.schedule(p, n)
    folded = p > q
    assert len(sched.rounds) == log2_floor(p) + 2 * folded
    assert [r.phase for r in sched.rounds] == (
        ["fold"] * folded + ["exchange"] * log2_floor(p) + ["unfold"] * folded
    )
    # by hand: an active rank sends n per exchange; 2i+1 (i < p-q) sends only the fold,
    # 2i the exchanges and the unfold
    expected = np.full(p, log2_floor(p) * n)
    for i in range(p - q):
        expected[2 * i + 1] = n
        expected[2 * i] += n
    np.testing.assert_array_equal(sched.elements_sent(), expected if n else 0)
    np.testing.assert_array_equal(RD.elements_sent(p, n), expected if n else 0)
    np.testing.assert_array_equal(sched.elements_received(), expected if n else 0)
    if n:  # every transfer is the whole buffer
        assert all((r.count == n).all() and (r.start == 0).all() for r in sched.rounds)


def test_three_channels_send_the_same_bytes_in_three_messages_a_round():
    one, three = RD.schedule(5, 1001), RD.schedule(5, 1001, channels=3)
    np.testing.assert_array_equal(one.elements_sent(), three.elements_sent())
    np.testing.assert_array_equal(three.messages_sent(), 3 * one.messages_sent())


def test_partners_are_one_bit_apart_and_every_rank_ends_bit_identical():
    sched = RD.schedule(8, 10)
    for k, rnd in enumerate(sched.rounds):
        np.testing.assert_array_equal(rnd.src ^ rnd.dst, 1 << k)
    rng = np.random.default_rng(0)
    for p in (2, 3, 5, 6, 7, 8, 11):
        inputs = [rng.standard_normal(999).astype(np.float32) for _ in range(p)]
        out = algorithms.execute(RD.schedule(p, 999), inputs)
        assert len({b.tobytes() for b in out}) == 1
        np.testing.assert_allclose(out[0], np.sum(inputs, axis=0), rtol=1e-5, atol=1e-5)


def node(gpus: int) -> topology.Topology:
    spec = {
        "name": "test",
        "nodes": 1,
        "gpus_per_node": gpus,
        "placement": "block",
        "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 100, "latency_us": 2.0},
    }
    return topology.parse(spec)


@pytest.mark.parametrize("p", [2, 3, 4, 5, 6, 7, 8, 13])
def test_simulated_equals_closed_form(p):
    topo = node(p)
    for n in (1, 1000, 1 << 20):
        sim = simulate.simulate(RD.schedule(p, n), topo, itemsize=4).time_s
        assert sim == pytest.approx(RD.time_s(topo, p, 4 * n), rel=1e-9)
        # and by hand: log2 q + 2 (folded) messages of 4n bytes, one after another
        rounds = log2_floor(p) + 2 * (p & (p - 1) != 0)
        assert sim == pytest.approx(rounds * (2e-6 + 4 * n / (100e9 / 8)), rel=1e-9)


def test_fewer_rounds_than_the_ring_win_small_buffers_and_lose_large_ones():
    topo = node(8)
    ring = algorithms.get("ring")
    assert RD.time_s(topo, 8, 64) < ring.time_s(topo, 8, 64) / 4
    assert RD.time_s(topo, 8, 64 << 20) > ring.time_s(topo, 8, 64 << 20)
