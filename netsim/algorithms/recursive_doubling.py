"""Recursive-doubling all-reduce (Thakur, Rabenseifner & Gropp 2005; MPICH's choice for
short messages, MPIR_Allreduce_intra_recursive_doubling). Every step, each rank swaps its
WHOLE buffer with the rank whose number differs in one bit, and both add. For p = 4:

    step 0, distance 1, n each way        step 1, distance 2, n each way
        0 <--> 1    2 <--> 3                  0 <-----> 2    1 <-----> 3
    0 and 1 hold x0+x1, 2 and 3 x2+x3     every rank holds (x0+x1)+(x2+x3)

log2 p rounds instead of the ring's 2(p-1), each moving n instead of n/p: the latency-
optimal all-reduce, for buffers small enough that rounds, not bytes, cost the time. Other p
fold as halving-doubling does (its `_fold`, MPICH's even/odd pairing): with q the largest
power of two <= p and r = p - q, rank 2i+1 first sends its buffer to rank 2i for i < r
(`fold`, reduce), the q ranks 0, 2, ..., 2r-2, 2r, 2r+1, ..., p-1 run the power-of-two
algorithm as virtual ranks 0..q-1, and 2i sends the result back to 2i+1 (`unfold`, copy).

In elements, exactly: an active rank sends n in each of the log2 q rounds; the r fold
partners n more (the unfold), the r folded ranks n (the fold). In time, log2 q rounds of
alpha + n beta + n gamma, plus, when q < p, a fold (alpha + n beta + n gamma) and an unfold
(alpha + n beta).

The one algorithm here whose sums are formed on two ranks, not one: the partners form
a + b and b + a. IEEE addition is commutative, so they are equal to the bit, and by
induction over the steps (both partners hold equal buffers before each) every rank ends
bit-identical. Its sum is in another order than the ring's, so on non-integer data it
differs from the ring's by rounding.
"""

from __future__ import annotations

import numpy as np

from .base import Algorithm
from .cost import round_alpha_beta
from .halving_doubling import _fold
from .rounds import EXCHANGE, FOLD, UNFOLD, Schedule, check, make_round, whole


class RecursiveDoubling(Algorithm):
    name, label = "recursive-doubling", "recursive-doubling all-reduce"
    formula = "log2(p) x n (p a power of two)"

    def channel_schedule(self, world_size, nelems, node_of_rank=None, segments=None) -> Schedule:
        check(world_size, nelems)
        p, q, folded, active = _fold(world_size)
        rounds = (
            [make_round(FOLD, 0, True, folded, folded - 1, *whole(folded, nelems))] if p > q else []
        )
        virtual = np.arange(q, dtype=np.int64)
        for k in range(q.bit_length() - 1):
            rounds.append(
                make_round(
                    EXCHANGE, k, True, active, active[virtual ^ (1 << k)], *whole(active, nelems)
                )
            )
        if p > q:
            rounds.append(make_round(UNFOLD, 0, False, folded - 1, folded, *whole(folded, nelems)))
        return Schedule(self.name, p, nelems, tuple(rounds))

    def channel_elements_sent(
        self, world_size, nelems, node_of_rank=None, segments=None
    ) -> np.ndarray:
        check(world_size, nelems)
        p, q, folded, active = _fold(world_size)
        out = np.zeros(p, dtype=np.int64)
        out[active] = (q.bit_length() - 1) * nelems
        out[folded] = nelems  # the fold; their partners send the unfold
        out[folded - 1] += nelems
        return out

    def closed_form_s(
        self, topology, world_size, nbytes, segments=None, itemsize=1, channels=1
    ) -> float:
        p, q, folded, active = _fold(world_size)
        if p <= 1:
            return 0.0
        virtual = np.arange(q)
        t = 0.0
        for k in range(q.bit_length() - 1):
            ab = round_alpha_beta(topology, active, active[virtual ^ (1 << k)], p)
            t += ab.message_s(nbytes) + nbytes * ab.gamma_s_per_byte
        if q < p:
            fold = round_alpha_beta(topology, folded, folded - 1, p)
            unfold = round_alpha_beta(topology, folded - 1, folded, p)
            t += fold.message_s(nbytes) + nbytes * fold.gamma_s_per_byte + unfold.message_s(nbytes)
        return t


RECURSIVE_DOUBLING = RecursiveDoubling()
