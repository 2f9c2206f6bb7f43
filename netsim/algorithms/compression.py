"""Gradient compression per bucket, as PyTorch DDP's communication hooks and the literature
run it: what each method sends, defined once. Training executes these collectives over MPI
(allreduce_train.exchange.compress) and the tests hold its recorded bytes to the counts here.

A bucket is a span of the flat gradient holding whole tensors, each (count, shape) with its
shape as DDP sees it (a Linear layer's weight is (out, in); a bias (out,)). For p ranks, a
bucket of n elements of s bytes, a method runs these collectives, one after another:

    none          all-reduce of the n elements                             n x s bytes
    fp16, bf16    all-reduce of the n elements cast to IEEE half or        n x 2
                  bfloat16, summed on that type (DDP's fp16_compress_hook
                  and bf16_compress_hook)
    topk:R        ring all-gather of every rank's k = ceil(R n) values     p x k (s + 4)
                  and their int32 indices (Deep Gradient Compression's
                  sparsification, with error feedback): copies, no adds
    powersgd:r    the hook's (powerSGD_hook, Vogels et al. 2019) three:     U x s, then
                  the tensors it leaves uncompressed (U elements),          sum rows r' x s,
                  P (rows x r' per compressed matrix), Q (cols x r')        then sum cols r' x s

The all-reduces run the run's algorithm (`Algorithm.schedule` on that many elements), so each
rank's bytes and each link's are that schedule's counts times the element size; the
all-gather is the ring's (`all_gather_schedule`: rank r's block is chunk r; in round k rank
r sends chunk r - k to rank r + 1). A collective of no elements is not run.

PowerSGD compresses a matrix (rows x cols, rank r' = min(rows, cols, r)) only where it saves
at least the hook's default factor (PowerSGDState.min_compression_rate = 2):
(rows + cols) r' x 2 < rows x cols; vectors and the other matrices go in U.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from netsim.errors import InputError

from .rounds import ALL_GATHER, Schedule, chunk_bounds, make_round

NONE, FP16, BF16, TOPK, POWERSGD = "none", "fp16", "bf16", "topk", "powersgd"
METHODS = (NONE, FP16, BF16, TOPK, POWERSGD)
ALL_REDUCE = "all-reduce"
INDEX_BYTES = 4  # top-k's indices: int32 (a bucket of under 2**31 elements)
MIN_COMPRESSION_RATE = 2  # torch's PowerSGDState default
MAX_RANK = 1024
# the wire types: NumPy's names, and bfloat16 (NumPy has none: its bits travel as uint16)
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "uint8": 1}


@dataclass(frozen=True)
class Compression:
    """A method and its parameter: topk's ratio (0 < R <= 1), powersgd's rank (an integer
    >= 1), None for the others."""

    method: str = NONE
    parameter: float | int | None = None

    def __str__(self) -> str:
        return self.method if self.parameter is None else f"{self.method}:{self.parameter}"


def parse(text: str) -> Compression:
    """none, fp16, bf16, topk:RATIO or powersgd:RANK; anything else is an InputError."""
    method, colon, value = str(text).strip().lower().partition(":")
    want = "none, fp16, bf16, topk:RATIO (0 < RATIO <= 1) or powersgd:RANK (1 to 1024)"
    if method in (NONE, FP16, BF16) and not colon:
        return Compression(method)
    try:
        if method == TOPK and colon:
            ratio = float(value)
            if 0 < ratio <= 1:  # NaN fails too
                return Compression(TOPK, ratio)
        if method == POWERSGD and colon:
            rank = int(value)
            if 1 <= rank <= MAX_RANK:
                return Compression(POWERSGD, rank)
    except ValueError:
        pass
    raise InputError(f"compression wants {want}, got {text!r}")


@dataclass(frozen=True)
class Collective:
    """One collective of a compressed bucket: `kind` (all-reduce or all-gather) of `nelems`
    elements of `dtype` (an all-gather: the gathered buffer, p equal blocks); `what` it
    carries, as reports name it."""

    kind: str
    what: str
    nelems: int
    dtype: str

    @property
    def itemsize(self) -> int:
        return ITEMSIZE[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.nelems * self.itemsize


def topk_count(ratio: float, nelems: int) -> int:
    """k = ceil(ratio x n), exactly (the ratio as written: 0.1 x 30 is 3), at least 1."""
    if nelems == 0:
        return 0
    return max(1, min(nelems, math.ceil(Fraction(repr(float(ratio))) * nelems)))


def low_rank(tensors, rank: int) -> list[int | None]:
    """Per tensor ((count, shape) in bucket order), PowerSGD's rank for it (min(rows, cols,
    rank)) where the hook compresses it, None where it leaves it uncompressed."""
    out = []
    for count, shape in tensors:
        rows = shape[0]  # the hook's view of a tensor: (shape[0], -1); a vector (n, 1)
        cols = count // rows if rows else 0
        r = min(rows, cols, rank)
        worth = (rows + cols) * r * MIN_COMPRESSION_RATE < rows * cols
        out.append(r if worth else None)
    return out


def collectives(compression: Compression, tensors, world_size: int, dtype) -> tuple:
    """What a bucket of these tensors ((count, shape) each, in bucket order) of `dtype`
    sends under `compression` on world_size ranks: its Collectives, in the order they run."""
    dtype = np.dtype(dtype).name
    n = sum(count for count, _ in tensors)
    method = compression.method
    if method == NONE:
        out = [Collective(ALL_REDUCE, "gradient", n, dtype)]
    elif method in (FP16, BF16):
        out = [Collective(ALL_REDUCE, "gradient", n, "float16" if method == FP16 else "bfloat16")]
    elif method == TOPK:
        k = topk_count(compression.parameter, n)
        block = k * (ITEMSIZE[dtype] + INDEX_BYTES)
        out = [Collective(ALL_GATHER, "values and indices", world_size * block, "uint8")]
    elif method == POWERSGD:
        ranks = low_rank(tensors, compression.parameter)
        kept = sum(count for (count, _), r in zip(tensors, ranks) if r is None)
        ps = sum(shape[0] * r for (_, shape), r in zip(tensors, ranks) if r is not None)
        qs = sum(
            count // shape[0] * r for (count, shape), r in zip(tensors, ranks) if r is not None
        )
        out = [
            Collective(ALL_REDUCE, "uncompressed", kept, dtype),
            Collective(ALL_REDUCE, "P", ps, dtype),
            Collective(ALL_REDUCE, "Q", qs, dtype),
        ]
    else:
        raise InputError(f"unknown compression {method!r}; choose one of {', '.join(METHODS)}")
    return tuple(c for c in out if c.nelems > 0)


def all_gather_schedule(world_size: int, nelems: int) -> Schedule:
    """The ring all-gather of nelems elements in p chunks (chunk_bounds), rank r's own
    being chunk r: in round k (of p - 1) rank r sends chunk (r - k) mod p to r + 1, which
    copies it into place. Every rank ends with every chunk."""
    p = world_size
    bounds = chunk_bounds(nelems, p)
    src = np.arange(p, dtype=np.int64)
    dst = (src + 1) % p
    rounds = []
    for k in range(p - 1):
        chunk = (src - k) % p
        start, count = bounds[chunk], bounds[chunk + 1] - bounds[chunk]
        rounds.append(make_round(ALL_GATHER, k, False, src, dst, start, count))
    return Schedule("ring-all-gather", p, nelems, tuple(rounds))


def all_gather_elements_sent(world_size: int, nelems: int) -> np.ndarray:
    """Elements rank r sends in the ring all-gather: every chunk but chunk r + 1, the one
    it receives first and never passes on ((p - 1) n / p with equal chunks)."""
    sizes = np.diff(chunk_bounds(nelems, world_size))
    if world_size == 1:
        return np.zeros(1, dtype=np.int64)
    return nelems - sizes[(np.arange(world_size) + 1) % world_size]


def schedules(plan, algorithm, world_size: int, node_of_rank=None, segments=None, channels=1):
    """The schedule of each collective of `plan` (collectives()): the all-reduces by
    `algorithm` (segments: the bucket's layer segments, for the all-reduce of the gradient
    itself; the others' buffers are not the gradient's layout), the all-gather the ring's."""
    out = []
    for c in plan:
        if c.kind == ALL_GATHER:
            out.append(all_gather_schedule(world_size, c.nelems))
        else:
            out.append(algorithm.schedule(
                world_size, c.nelems, node_of_rank=node_of_rank, channels=channels,
                segments=segments if c.what == "gradient" else None,
            ))  # fmt: skip
    return out


def bytes_sent(plan, algorithm, world_size: int, node_of_rank=None, segments=None, channels=1):
    """Bytes each rank sends per step for a bucket's `plan`, from each algorithm's own count
    (Algorithm.elements_sent, all_gather_elements_sent), not from the schedules; None
    where the all-reduce hides its messages (MPI_Allreduce)."""
    total = np.zeros(world_size, dtype=np.int64)
    for c in plan:
        if c.kind == ALL_GATHER:
            elements = all_gather_elements_sent(world_size, c.nelems)
        else:
            elements = algorithm.elements_sent(
                world_size, c.nelems, node_of_rank=node_of_rank, channels=channels,
                segments=segments if c.what == "gradient" else None,
            )  # fmt: skip
            if elements is None:
                return None
        total += np.asarray(elements, dtype=np.int64) * c.itemsize
    return total


def link_bytes(plan, algorithm, world_size: int, node_of_rank=None, segments=None, channels=1):
    """{(src, dst): bytes} a bucket's `plan` puts on each directed link per step, from the
    collectives' schedules."""
    out: dict[tuple[int, int], int] = {}
    for c, schedule in zip(
        plan, schedules(plan, algorithm, world_size, node_of_rank, segments, channels)
    ):
        for rnd in schedule.rounds:
            for s, d, n in zip(rnd.src.tolist(), rnd.dst.tolist(), rnd.count.tolist()):
                out[s, d] = out.get((s, d), 0) + n * c.itemsize
    return out
