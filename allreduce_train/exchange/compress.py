"""A bucket's gradient compressed before it travels (--compress), as PyTorch DDP's
communication hooks and the literature do it, each method's collectives executed by our
schedules so that every byte is recorded. What each method sends is defined once, in
netsim.algorithms.compression; here it runs.

The trainer sums already-scaled gradients (each rank's is (1/B) x the sum over its rows of
the global batch B), so the sum is the global batch's mean gradient; a method returns that
sum, or its approximation, in the bucket, identical on every rank:

    fp16, bf16   the bucket cast to the narrow type (a rank's gradient is already what DDP's
                 fp16_compress_hook casts: its local mean divided by the world size, divided
                 before the cast as torch's hooks now do, to keep the sum in range), summed
                 on it by the run's all-reduce: float16 adds as NumPy does them, bfloat16
                 (held as its uint16 bits: NumPy has no bfloat16) each add in float32
                 rounded back to nearest-even, as NCCL does; cast back. Past float16's range
                 a value becomes inf, which the trainer's finiteness check stops on (or skips)
    topk:R       error feedback (Deep Gradient Compression's memory): residual += gradient;
                 its k = ceil(R n) largest magnitudes are sent (values and int32 indices,
                 NaN counted largest, so that it travels) and zeroed in the residual; a ring
                 all-gather of every rank's block; every rank adds the p blocks in rank order
                 into a zeroed bucket
    powersgd:r   torch's powerSGD_hook per bucket: uncompressed tensors (biases, matrices
                 too small to gain) all-reduced as they are; each other matrix M (DDP's view:
                 a weight (out, in)) with its error added, P = M Q (Q kept from the last step,
                 orthogonalised; at first seeded normal, the same on every rank), P summed,
                 orthogonalised (Gram-Schmidt), Q = M^T P summed, M_hat = P Q^T. The error
                 kept is M - M_hat / p: the hook's M - M_hat in its units of a mean over
                 ranks, here where ranks contribute shares of a sum (p ranks' errors add up
                 to the sum's). Biases keep no error (the paper's and its authors' code; the
                 hook's error on them sums to zero over the ranks)

A step whose result is not finite resets the method's memory (residual, errors, Q) on every
rank alike: the trainer then stops or skips the step, and the next starts clean.

Recording: a bucket's rounds are, in order, a round of the method's own compute (no
messages), the first collective's rounds, a compute round, ..., a last compute round; every
round ends with a clock reading, so the compression's compute and each collective's rounds
are timed apart. Compute round j is labelled ("compress", j) (COMPRESS: the phase netsim's
reports read as the compression's compute, netsim.report.traffic); each collective's rounds
keep their schedule's labels (the bucket's all-reduce on the narrow type, top-k's ring
all-gather, PowerSGD's all-reduces), and the compute round before a collective says which
of the plan's collectives they are. `compute_ns` totals the compute over the calls.

(Past 300 lines: the three methods and the one executor that drives any of them between its
collectives and times them are one idea, a compressed bucket; bfloat16's arithmetic is here
because only its all-reduce needs it.)
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from netsim.algorithms import compression as methods

from .schedule import ScheduleAllreduce

COMPRESS = "compress"  # the phase of a compute round (netsim.report.traffic reads it)


class _Compute(NamedTuple):
    """The label of compute round j, as the recorder reads a schedule's Round: phase, index."""

    phase: str
    index: int


def _compute(j: int):
    """Compute round j: its label, and no messages."""
    return (_Compute(COMPRESS, j), (), ())


def to_bf16(x, out) -> None:
    """bfloat16's bits of x into out (uint16), rounded to nearest even; float64 goes through
    float32, as torch's conversion does; a NaN stays a (quiet) NaN."""
    f = np.asarray(x, dtype=np.float32)
    bits = f.view(np.uint32)
    out[...] = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    nan = np.isnan(f)
    if nan.any():
        out[nan] = (bits[nan] >> 16) | 0x40


def from_bf16(bits, out) -> None:
    """The values of bfloat16 bits (uint16) into out (float32 or float64: exact)."""
    out[...] = (bits.astype(np.uint32) << 16).view(np.float32)


class Bf16Arrays:
    """What ScheduleAllreduce asks of its array module, for bfloat16 held as uint16 bits:
    each add computed in float32 and rounded back (NCCL's bfloat16 sum)."""

    @staticmethod
    def empty(n, dtype=None):
        return np.empty(n, np.uint16)

    @staticmethod
    def add(a, b, out):
        wide = (a.astype(np.uint32) << 16).view(np.float32)
        wide += (b.astype(np.uint32) << 16).view(np.float32)
        to_bf16(wide, out)


def orthogonalize(m) -> None:
    """Gram-Schmidt on m's columns in place, as the hook's _orthogonalize: normalise column
    i, remove it from the columns after it. A column of norm 0 stays zero (the hook's
    recovery from a division by zero); a NaN stays."""
    cols = m.shape[1]
    for i in range(cols):
        col = m[:, i]
        norm = math.sqrt(col @ col)
        if norm == 0:
            col[...] = 0
        else:
            col /= norm
        if i + 1 < cols:
            rest = m[:, i + 1 :]
            rest -= np.multiply.outer(col, col @ rest)


class Narrow:
    """fp16 or bf16: one all-reduce of the bucket on the narrow type."""

    def __init__(self, nelems: int, wire: str):
        self.half = wire == "float16"
        self.buffers = (np.zeros(nelems, np.float16 if self.half else np.uint16),)

    def work(self, view):
        narrow = self.buffers[0]
        if self.half:
            np.copyto(narrow, view, casting="same_kind")  # past 65504: inf
        else:
            to_bf16(view, narrow)
        yield
        if self.half:
            np.copyto(view, narrow)
        else:
            from_bf16(narrow, view)

    def reset(self) -> None:
        """No memory."""


class TopK:
    """topk:R with error feedback: one all-gather of every rank's k values and indices."""

    def __init__(self, nelems: int, k: int, world_size: int, rank: int, dtype):
        dtype = np.dtype(dtype)
        size = k * dtype.itemsize
        block = size + k * methods.INDEX_BYTES
        self.gathered = np.zeros(world_size * block, np.uint8)
        at = range(0, world_size * block, block)
        self.values = [self.gathered[b : b + size].view(dtype) for b in at]
        self.indices = [self.gathered[b + size : b + block].view(np.int32) for b in at]
        self.residual = np.zeros(nelems, dtype)
        self.n, self.k, self.rank = nelems, k, rank
        self.buffers = (self.gathered,)

    def work(self, view):
        r, n, k = self.residual, self.n, self.k
        r += view
        if k < n:  # the k largest magnitudes (NaN sorts last: it is sent)
            picked = np.argpartition(np.abs(r), n - k)[n - k :]
            picked.sort()
        else:
            picked = np.arange(n)
        np.take(r, picked, out=self.values[self.rank])
        self.indices[self.rank][...] = picked
        r[picked] = 0
        yield
        view[...] = 0
        for values, indices in zip(self.values, self.indices):  # rank order, on every rank
            view[indices] += values
        if not all(np.isfinite(v).all() for v in self.values):
            self.reset()

    def reset(self) -> None:
        self.residual[...] = 0


class PowerSGD:
    """powersgd:r per bucket: the uncompressed tensors, then P, then Q, each all-reduced.
    tensors: (start in the bucket, count, shape as DDP views it, transposed: whether the
    buffer holds it as its transpose). The error and M_hat are kept as the buffer holds
    the matrix, so that only the matrix products see DDP's view."""

    def __init__(self, tensors, rank: int, world_size: int, dtype, seed):
        ranks = methods.low_rank([(count, shape) for _, count, shape, _ in tensors], rank)
        self.kept = [(s, c) for (s, c, _, _), r in zip(tensors, ranks) if r is None]
        # (start, rows, cols, r, transposed) of each matrix compressed, DDP's rows and cols
        self.mats = [(s, shape[0], c // shape[0], r, t)
                     for (s, c, shape, t), r in zip(tensors, ranks) if r is not None]  # fmt: skip
        self.world_size = world_size
        u = np.zeros(sum(c for _, c in self.kept), dtype)
        p = np.zeros(sum(rows * r for _, rows, _, r, _ in self.mats), dtype)
        q = np.zeros(sum(cols * r for _, _, cols, r, _ in self.mats), dtype)
        self.buffers = tuple(b for b in (u, p, q) if b.size)
        self.u, self.us = u, _cut(u, [c for _, c in self.kept])
        self.ps = [a.reshape(rows, r) for a, (_, rows, _, r, _) in
                   zip(_cut(p, [m[1] * m[3] for m in self.mats]), self.mats)]  # fmt: skip
        self.qs = [a.reshape(cols, r) for a, (_, _, cols, r, _) in
                   zip(_cut(q, [m[2] * m[3] for m in self.mats]), self.mats)]  # fmt: skip
        self.errors = [np.zeros(rows * cols, dtype) for _, rows, cols, _, _ in self.mats]
        rng = np.random.default_rng(seed)  # the same on every rank
        self.initial = [rng.standard_normal(q.shape).astype(dtype) for q in self.qs]
        for q in self.initial:
            orthogonalize(q)
        self.reset()

    def work(self, view):
        for (s, c), u in zip(self.kept, self.us):
            u[...] = view[s : s + c]
        held, ms = [], []  # each matrix as the buffer holds it, and as DDP's (rows, cols)
        for (s, rows, cols, _, t), error, p, q in zip(self.mats, self.errors, self.ps, self.qs):
            flat = view[s : s + rows * cols]
            flat += error
            held.append(flat.reshape((cols, rows) if t else (rows, cols)))
            ms.append(held[-1].T if t else held[-1])
            if not self.fresh:  # warm start: last step's Q, orthogonalised
                orthogonalize(q)
            np.matmul(ms[-1], q, out=p)
        self.fresh = False
        if self.u.size:
            yield  # the uncompressed tensors summed
            for (s, c), u in zip(self.kept, self.us):
                view[s : s + c] = u
        if not self.mats:
            return
        yield  # P summed
        for m, p, q in zip(ms, self.ps, self.qs):
            orthogonalize(p)
            np.matmul(m.T, p, out=q)
        yield  # Q summed
        finite = all(np.isfinite(a).all() for a in self.buffers[-2:])
        for a, mat, error, p, q in zip(held, self.mats, self.errors, self.ps, self.qs):
            approx = q @ p.T if mat[4] else p @ q.T  # M_hat = P Q^T as the buffer holds M
            np.subtract(a, approx / self.world_size, out=error.reshape(a.shape))
            a[...] = approx
        if not finite:
            self.reset()

    def reset(self) -> None:
        for error in self.errors:
            error[...] = 0
        for q, first in zip(self.qs, self.initial):
            q[...] = first
        self.fresh = True


def _cut(buf, sizes):
    out, at = [], 0
    for n in sizes:
        out.append(buf[at : at + n])
        at += n
    return out


class _Within:
    """Collective j's part of the bucket's recording: its messages (kept for the bucket to
    bind), its readings a window of the bucket's, from the slot where it starts."""

    def __init__(self, outer, at: int):
        self.outer, self.at, self.size, self.messages = outer, at, 1, ()

    @property
    def clock(self):
        return self.outer.clock

    def bind(self, messages) -> None:
        self.messages = tuple(messages or ())
        self.size = len(self.messages) + 1

    def readings(self):
        return self.outer.readings()[self.at : self.at + self.size]


class CompressedAllreduce:
    """A bucket's compression and its collectives (exchange.protocol.Executor): `method` does
    the compute (a generator that yields before each collective of `plan` runs on its
    buffer), `executors[j]` runs collective j over the network, bound to its buffer."""

    def __init__(self, method, plan, executors):
        if len(method.buffers) != len(plan) or len(executors) != len(plan):
            raise ValueError(f"{len(plan)} collectives, {len(method.buffers)} buffers")
        self.method, self.plan, self.executors = method, tuple(plan), tuple(executors)
        self.recorder, self._at = None, ()
        self.compute_ns = 0  # the method's own compute, over every call
        self.calls = 0

    def record_into(self, recorder) -> None:
        """Bind every collective's messages, between compute rounds, into `recorder`."""
        self.recorder = recorder
        if recorder is None:
            for executor in self.executors:
                executor.record_into(None)
            return
        messages, at = [_compute(0)], []
        for j, executor in enumerate(self.executors, 1):
            part = _Within(recorder, len(messages))
            executor.record_into(part)
            at.append(part.at)
            messages += part.messages  # the collective's own labels
            messages.append(_compute(j))
        self._at = tuple(at)
        recorder.bind(messages)

    def __call__(self, view) -> None:
        clock, recorder = time.perf_counter_ns, self.recorder
        readings = recorder.readings() if recorder is not None else None
        t = clock()
        if readings is not None:
            readings[0] = t
        computing = 0
        work = self.method.work(view)
        with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN: the trainer's
            for j, executor in enumerate(self.executors):
                next(work)
                now = clock()
                computing += now - t
                if readings is not None:
                    readings[self._at[j]] = now  # the compute round's end, the collective's start
                executor(self.method.buffers[j])
                t = clock()
            for _ in work:
                raise RuntimeError("a compression yielded more often than it has collectives")
        now = clock()
        if readings is not None:
            readings[len(readings) - 1] = now
        self.compute_ns += computing + now - t
        self.calls += 1


def make(
    compression, tensors, world_size: int, rank: int, transport, dtype, algorithm, *,
    node_of_rank=None, segments=None, channels: int = 1, seed=0,
) -> CompressedAllreduce:  # fmt: skip
    """The executor of one bucket of the gradient (of `dtype`) under `compression` (netsim's
    Compression): tensors (start in the bucket, count, shape as the buffer holds it); each
    collective by `algorithm` (all-reduces; top-k's all-gather is the ring's) over
    `transport`, with the run's node_of_rank and channels, the bucket's layer `segments`;
    seed: PowerSGD's first Q (the same on every rank; one per bucket)."""
    dtype = np.dtype(dtype)
    # DDP's view of our weights: a Linear's weight is (out, in); the buffer holds (in, out)
    ddp = [
        (s, c, (shape[1], shape[0]) if len(shape) == 2 else shape, len(shape) == 2)
        for s, c, shape in tensors
    ]
    plan = methods.collectives(compression, [(c, shape) for _, c, shape, _ in ddp],
                               world_size, dtype)  # fmt: skip
    n = sum(c for _, c, _ in tensors)
    if compression.method in (methods.FP16, methods.BF16):
        method = Narrow(n, plan[0].dtype)
    elif compression.method == methods.TOPK:
        method = TopK(n, methods.topk_count(compression.parameter, n), world_size, rank, dtype)
    elif compression.method == methods.POWERSGD:
        method = PowerSGD(ddp, compression.parameter, world_size, dtype, seed)
    else:
        raise ValueError(f"no compression to make for {compression}")
    schedules = methods.schedules(plan, algorithm, world_size, node_of_rank, segments, channels)
    executors = []
    for schedule, buf in zip(schedules, method.buffers):
        xp = Bf16Arrays if buf.dtype == np.uint16 else np
        executor = ScheduleAllreduce(schedule, rank, transport, xp, buf.dtype)
        executor.bind(buf)
        executors.append(executor)
    return CompressedAllreduce(method, plan, executors)
