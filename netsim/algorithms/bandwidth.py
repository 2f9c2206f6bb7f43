"""Bus bandwidth, nccl-tests' figure of an all-reduce, in one place: every report, prediction,
measurement and calibration of netsim (and the benchmarks) computes it here.

algbw = buffer bytes / time; busbw = algbw * 2(p-1)/p, the rate each rank's link must
sustain for the 2(p-1)/p * n bytes a ring sends (ring.py). nccl-tests applies the ring's
factor to every algorithm, so busbw compares algorithms and rank counts with one another
and with a link's rate; it is not what any other algorithm sends (their own counts are in
their modules and netsim.algorithms' table).
"""

from __future__ import annotations


def busbw(algbw: float, p: int) -> float:
    """The bus bandwidth of an all-reduce on p ranks that ran at algbw (bytes/s in, bytes/s
    out): algbw * 2(p-1)/p. On one rank it is 0.0, as nccl-tests prints: nothing crosses a
    link (and an infinite algbw, a time of 0, gives 0.0 there, not NaN)."""
    if p < 1:
        raise ValueError(f"busbw needs at least one rank, got p = {p}")
    return algbw * 2 * (p - 1) / p if p > 1 else 0.0
