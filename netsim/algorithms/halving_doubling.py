"""Recursive halving-doubling all-reduce (Rabenseifner): a recursive-halving reduce-scatter,
then a recursive-doubling all-gather (Thakur, Rabenseifner & Gropp 2005). For p = 4, chunks of n/4:

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

In elements, exactly: virtual rank v sends every chunk but its own in the reduce-scatter, and
in all-gather step k the aligned block of 2^k chunks that holds chunk v. In time, 2 log2 q
rounds moving (q-1)/q n each way in all, plus a whole-buffer fold and unfold when q < p.
"""

from __future__ import annotations

import numpy as np

from .base import Algorithm
from .cost import AlphaBeta, round_alpha_beta
from .rounds import (
    ALL_GATHER,
    FOLD,
    REDUCE_SCATTER,
    UNFOLD,
    Schedule,
    check,
    chunk_bounds,
    make_round,
    whole,
)


class HalvingDoubling(Algorithm):
    name, label = "halving-doubling", "halving-doubling all-reduce"
    formula = "2(p-1)/p x n (p a power of two)"

    def channel_schedule(self, world_size, nelems, node_of_rank=None, segments=None) -> Schedule:
        check(world_size, nelems)
        p, q, folded, active = _fold(world_size)
        bounds = chunk_bounds(nelems, q)
        virtual = np.arange(q, dtype=np.int64)
        # the chunks each still holds: [lo, hi)
        lo, hi = np.zeros(q, dtype=np.int64), np.full(q, q, dtype=np.int64)
        masks = [q >> (s + 1) for s in range(q.bit_length() - 1)]  # q/2, q/4, ..., 1
        rounds = (
            [make_round(FOLD, 0, True, folded, folded - 1, *whole(folded, nelems))] if p > q else []
        )
        for k, mask in enumerate(masks):
            mid, upper = (lo + hi) // 2, (virtual & mask) != 0
            give_lo, give_hi = np.where(upper, lo, mid), np.where(upper, mid, hi)
            rounds.append(
                make_round(
                    REDUCE_SCATTER,
                    k,
                    True,
                    active,
                    active[virtual ^ mask],
                    bounds[give_lo],
                    bounds[give_hi] - bounds[give_lo],
                )
            )
            lo, hi = np.where(upper, mid, lo), np.where(upper, hi, mid)
        for k, mask in enumerate(reversed(masks)):
            rounds.append(
                make_round(
                    ALL_GATHER,
                    k,
                    False,
                    active,
                    active[virtual ^ mask],
                    bounds[lo],
                    bounds[hi] - bounds[lo],
                )
            )
            lo = np.minimum(lo, lo ^ mask)
            hi = lo + 2 * mask
        if p > q:
            rounds.append(make_round(UNFOLD, 0, False, folded - 1, folded, *whole(folded, nelems)))
        return Schedule(self.name, p, nelems, tuple(rounds))

    def channel_elements_sent(
        self, world_size, nelems, node_of_rank=None, segments=None
    ) -> np.ndarray:
        check(world_size, nelems)
        p, q, folded, active = _fold(world_size)
        sizes = np.diff(chunk_bounds(nelems, q))
        ends = np.concatenate([[0], np.cumsum(sizes)])
        v = np.arange(q)
        sent = nelems - sizes  # reduce-scatter: every chunk but its own
        for k in range(q.bit_length() - 1):  # all-gather step k: its aligned block of 2^k
            lo = v >> k << k
            sent = sent + ends[lo + (1 << k)] - ends[lo]
        out = np.zeros(p, dtype=np.int64)
        out[active] = sent
        out[folded] = nelems  # the fold; their partners send the unfold
        out[folded - 1] += nelems
        return out

    def closed_form_s(
        self, topology, world_size, nbytes, segments=None, itemsize=1, channels=1
    ) -> float:
        p = world_size
        if p <= 1:
            return 0.0
        ranks = np.arange(p)
        q = 1 << (p.bit_length() - 1)
        steps = q.bit_length() - 1
        patterns = [
            round_alpha_beta(topology, ranks[:q], ranks[:q] ^ (1 << k), p) for k in range(steps)
        ]
        ab = AlphaBeta(max(a.alpha_s for a in patterns), max(a.beta_s_per_byte for a in patterns))
        moved = nbytes * (q - 1) / q  # n/2 + n/4 + ... over the log2(q) rounds
        t = 2 * steps * ab.alpha_s + 2 * moved * ab.beta_s_per_byte + moved * ab.gamma_s_per_byte
        if q < p:
            t += 2 * ab.message_s(nbytes) + nbytes * ab.gamma_s_per_byte
        return t


def _fold(p: int):
    """(p, q, the folded ranks 2i+1 for i < p - q, the q ranks that run the power-of-two
    algorithm indexed by virtual rank)."""
    q = 1 << (p.bit_length() - 1)
    folded = np.arange(1, 2 * (p - q), 2, dtype=np.int64)
    return p, q, folded, np.concatenate([folded - 1, np.arange(2 * (p - q), p, dtype=np.int64)])


HALVING_DOUBLING = HalvingDoubling()
