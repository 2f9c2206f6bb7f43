"""Recursive halving-doubling (Rabenseifner): log2 p rounds each way."""

from __future__ import annotations

import numpy as np

from .base import ALL_GATHER, FOLD, REDUCE_SCATTER, UNFOLD, Schedule, check, chunk_bounds, make_round, whole


def halving_doubling(world_size: int, nelems: int) -> Schedule:
    """Rabenseifner's all-reduce: a recursive-halving reduce-scatter, then a recursive-doubling
    all-gather (Thakur, Rabenseifner & Gropp 2005). For p = 4, chunks of n/4:

        reduce-scatter (halving)              all-gather (doubling)
        step 0, distance 2, n/2 each way      step 0, distance 1, n/4 each way
            0 <-----> 2    1 <-----> 3            0 <--> 1    2 <--> 3
        step 1, distance 1, n/4 each way      step 1, distance 2, n/2 each way
            0 <--> 1    2 <--> 3                  0 <-----> 2    1 <-----> 3

    In every step a rank swaps half of the chunks it still holds with its partner (its rank
    with one bit flipped), keeping the half its own bit selects, then adds the half it got.
    Chunks sent by rank r:

        round               rank 0   rank 1   rank 2   rank 3
        reduce-scatter 0      2,3      2,3      0,1      0,1
        reduce-scatter 1       1        0        3        2     -> r owns the sum of chunk r
        all-gather 0           0        1        2        3
        all-gather 1          0,1      0,1      2,3      2,3    -> every rank has every sum

    A power of two p takes 2 log2 p rounds and every rank sends (and receives)
    n/2 + n/4 + ... + n/p = (p-1)/p * n per phase: 2(p-1)/p * n, the ring's bytes in
    log2 p instead of p-1 latencies. Other p fold to q = the largest power of two <= p, with
    r = p - q, by the even/odd pairing of MPICH (it keeps the fold between neighbouring
    ranks, usually on one node): in a first round (`fold`, reduce) rank 2i+1 sends its whole
    buffer to rank 2i for i < r; the q ranks 0, 2, ..., 2r-2, 2r, 2r+1, ..., p-1 run the
    power-of-two algorithm as virtual ranks 0..q-1 (chunk v ends on virtual rank v); a last
    round (`unfold`, copy) sends the result from 2i back to 2i+1. That is 2 log2 q + 2
    rounds; the r folded ranks send and receive n, their r partners 2(q-1)/q * n + n, the
    other ranks 2(q-1)/q * n (with q | n). Each chunk's sum is formed on one rank only, so
    all ranks end bit-identical.
    """
    check(world_size, nelems)
    p = world_size
    q = 1 << (p.bit_length() - 1)
    folded = np.arange(1, 2 * (p - q), 2, dtype=np.int64)
    # the ranks that run the power-of-two algorithm, indexed by virtual rank
    active = np.concatenate([folded - 1, np.arange(2 * (p - q), p, dtype=np.int64)])
    bounds = chunk_bounds(nelems, q)
    virtual = np.arange(q, dtype=np.int64)
    lo, hi = np.zeros(q, dtype=np.int64), np.full(q, q, dtype=np.int64)  # chunks each still holds
    masks = [q >> (s + 1) for s in range(q.bit_length() - 1)]  # q/2, q/4, ..., 1
    rounds = [make_round(FOLD, 0, True, folded, folded - 1, *whole(folded, nelems))] if p > q else []
    for k, mask in enumerate(masks):
        mid, upper = (lo + hi) // 2, (virtual & mask) != 0
        give_lo, give_hi = np.where(upper, lo, mid), np.where(upper, mid, hi)
        rounds.append(make_round(REDUCE_SCATTER, k, True, active, active[virtual ^ mask],
                             bounds[give_lo], bounds[give_hi] - bounds[give_lo]))
        lo, hi = np.where(upper, mid, lo), np.where(upper, hi, mid)
    for k, mask in enumerate(reversed(masks)):
        rounds.append(make_round(ALL_GATHER, k, False, active, active[virtual ^ mask],
                             bounds[lo], bounds[hi] - bounds[lo]))
        lo = np.minimum(lo, lo ^ mask)
        hi = lo + 2 * mask
    if p > q:
        rounds.append(make_round(UNFOLD, 0, False, folded - 1, folded, *whole(folded, nelems)))
    return Schedule("halving-doubling", p, nelems, tuple(rounds))
