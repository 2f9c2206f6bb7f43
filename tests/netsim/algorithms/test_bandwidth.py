"""busbw, the one definition of nccl-tests' bus bandwidth that every figure of netsim uses."""

import math

import pytest

from netsim.algorithms import busbw


def test_busbw_is_algbw_times_the_rings_bytes_per_rank():
    assert busbw(8e9, 2) == 8e9
    assert busbw(8e9, 4) == 12e9
    assert busbw(8e9, 8) == 14e9


def test_on_one_rank_nothing_crosses_a_link():
    assert busbw(5e9, 1) == 0.0
    assert busbw(math.inf, 1) == 0.0  # a time of 0: still no bytes on a link, not NaN
    with pytest.raises(ValueError, match="at least one rank"):
        busbw(5e9, 0)
