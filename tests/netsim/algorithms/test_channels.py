"""Channels: C copies of an algorithm side by side on slices of the buffer, the same bytes
as one channel, and the ring's channels laid out across the node boundaries by rails."""

import numpy as np
import pytest

from netsim import algorithms
from netsim.algorithms import RING

from cases import NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 2, 3, 8])
def test_channels_run_side_by_side_on_slices_and_move_the_same_bytes(name, channels):
    """C channels: the rounds of one channel, every transfer inside its channel's slice, and
    per rank exactly what one channel would send, the ring's 2(p-1)/p n included."""
    for p in (2, 3, 4, 6):
        n = 12 * p * channels + 5  # slices of unequal length
        one, many = (algorithms.get(name).schedule(p, n, channels=c) for c in (1, channels))
        assert [(r.phase, r.index) for r in many.rounds] == [(r.phase, r.index) for r in one.rounds]
        slices = algorithms.chunk_bounds(n, channels)
        for r in many.rounds:
            lo = slices[np.searchsorted(slices, r.start, side="right") - 1]
            assert (r.start + r.count <= slices[np.searchsorted(slices, lo, side="right")]).all()
        counted = algorithms.get(name).elements_sent(p, n, channels=channels)
        np.testing.assert_array_equal(counted, many.elements_sent())
        assert counted.sum() == one.elements_sent().sum()
    even = RING.schedule(4, 4 * channels * 10, channels=channels).elements_sent()
    assert even.tolist() == [2 * 3 * channels * 10] * 4  # 2(p-1)/p n each


def test_ring_channels_cross_every_node_boundary_on_a_rail_of_their_own():
    """On 3 nodes of 4 ranks, channel c enters every node at local rank c and leaves it from
    local rank c-1: at each boundary the channels use four different local ranks (NICs)."""
    nodes = [r // 4 for r in range(12)]
    orders = algorithms.ring.rail_orders(12, nodes, 4)
    for c, order in enumerate(orders):
        ring = order.reshape(3, 4)
        assert (ring[:, 0] % 4 == c).all() and (ring[:, -1] % 4 == (c - 1) % 4).all()
        assert sorted(order) == list(range(12))
    boundary = {(int(o.reshape(3, 4)[0, -1]), int(o.reshape(3, 4)[1, 0])) for o in orders}
    assert len({a for a, _ in boundary}) == len({b for _, b in boundary}) == 4
