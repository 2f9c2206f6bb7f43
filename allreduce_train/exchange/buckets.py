"""The gradient in buckets, all-reduced during backward: data-parallel training as PyTorch DDP
and Horovod do it.

The plan is netsim's (netsim.workload.buckets.plan: DDP's rule, which a prediction of a
workload's step uses too): the MLP's tensors (each layer's W, then its b) in the order
backward writes them, last layer first, grouped into buckets of about --bucket-mb MiB, the
first capped at --first-bucket-mb. Tensors in reverse order of a flat buffer are adjacent,
so a bucket is one contiguous span of the gradient, summed by an executor of its own
(exchange.factory: any algorithm, any transport, each bucket's schedule made for its size).

A bucket is ready once backward has written its lowest layer (MLP.loss_and_grad calls
`ready(layer)` after each layer). With overlap, `ready` hands it to a communication thread
that all-reduces the buckets one after another, in launch order, while backward goes on
with the layers below (as DDP's one NCCL stream runs them in order): every rank hands the
same buckets in the same order to one thread, so the collectives match whatever the
algorithm or rank count. The thread calls MPI while the main thread computes (MPI is
initialised MPI_THREAD_MULTIPLE; mpi4py and NumPy's BLAS release the GIL); the main thread
calls no MPI until `wait` has seen every bucket done. Without overlap `wait` runs the
buckets itself, after backward, as before. On a GPU a bucket is handed over once the device
has finished the layer (a stream synchronisation per layer), so its staging copies and
messages run while the kernels of the layers below do.

A failure in the thread (a lost peer, a damaged message) is raised by `wait` in the main
thread, where the run's handling of errors is; a peer that hangs leaves `wait` waiting, and
the watchdog names it as in any collective.

Recording: each step's record holds, per bucket, when it was ready, when its all-reduce
started and ended, and its rounds (Recorder.bind_buckets; a bucket executor records into
its own part of the step, `_Part`, through the same interface as a whole-buffer one).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from dataclasses import dataclass

import numpy as np

from netsim.workload import buckets as plans

from ..maths import model

MIB = plans.MIB
DEFAULT_MB = plans.DEFAULT_CAP_BYTES / MIB  # DDP's bucket_cap_mb
DEFAULT_FIRST_MB = plans.DEFAULT_FIRST_CAP_BYTES / MIB  # DDP's first bucket


@dataclass(frozen=True)
class Bucket:
    lo: int  # its span of the flat gradient, in elements
    hi: int
    layer: int  # the lowest layer it holds: backward has written it all once that one is done


def plan(widths, itemsize: int, bucket_mb: float | None = None,
         first_bucket_mb: float | None = None) -> list[Bucket]:  # fmt: skip
    """The buckets of an MLP of these widths, in launch order: DDP's plan of its tensors in
    the order backward writes them; bucket_mb 0: one bucket of the whole gradient (None:
    DDP's caps, 25 MiB and a first of 1 MiB)."""
    bucket_mb = DEFAULT_MB if bucket_mb is None else bucket_mb
    first_bucket_mb = DEFAULT_FIRST_MB if first_bucket_mb is None else first_bucket_mb
    tensors = [[(start, count) for start, count, _ in layer] for layer in layer_tensors(widths)]
    order = plans.ready_order([[n * itemsize for _, n in layer] for layer in tensors])
    if bucket_mb == 0:
        groups = [list(range(len(order)))]
    else:
        groups = plans.plan(
            [tensors[layer][t][1] * itemsize for layer, t in order],
            max(1, int(bucket_mb * MIB)),
            max(1, int(first_bucket_mb * MIB)),
        )
    out = []
    for group in groups:
        spans = sorted(tensors[order[i][0]][order[i][1]] for i in group)
        lo, hi = spans[0][0], spans[-1][0] + spans[-1][1]
        if sum(n for _, n in spans) != hi - lo:  # reverse order of a flat buffer: adjacent
            raise AssertionError(f"bucket {group} is not one span of the gradient")
        out.append(Bucket(lo, hi, min(order[i][0] for i in group)))
    return out


def within(segments, lo: int, hi: int):
    """The layer segments (start, count) clipped to the bucket [lo, hi), relative to it (the
    shards a parameter-server schedule cuts the bucket into); None if none."""
    out = [(max(s, lo) - lo, min(s + n, hi) - max(s, lo)) for s, n in segments or ()]
    return [(s, n) for s, n in out if n > 0] or None


def layer_tensors(widths) -> list[list[tuple[int, int, tuple[int, ...]]]]:
    """Per layer, its tensors in registration order, W then b, each (start, count, shape) in
    the flat gradient: DDP's parameters (what a compression that works on matrices, such
    as PowerSGD, needs to know of a bucket)."""
    return [
        [(start, count - b, (a, b)), (start + count - b, b, (b,))]
        for (start, count), a, b in zip(model.layer_segments(widths), widths, widths[1:])
    ]


def tensors_in(widths, bucket: Bucket) -> list[tuple[int, int, tuple[int, ...]]]:
    """The tensors of `bucket`, (start relative to the bucket, count, shape), in buffer order."""
    return [
        (start - bucket.lo, count, shape)
        for layer in layer_tensors(widths)
        for start, count, shape in layer
        if bucket.lo <= start < bucket.hi
    ]


def overlapping(overlap: str, nbuckets: int) -> bool:
    """--overlap on, or auto with more than one bucket."""
    return overlap == "on" or (overlap == "auto" and nbuckets > 1)


def resolve(cfg, widths):
    """cfg with its bucket caps (DDP's where not given) and --overlap auto settled, as
    config.json and every report then say; an async run has no buckets."""
    if cfg.mode == "async":
        return cfg
    mb = DEFAULT_MB if cfg.bucket_mb is None else cfg.bucket_mb
    first = DEFAULT_FIRST_MB if cfg.first_bucket_mb is None else cfg.first_bucket_mb
    n = len(plan(widths, np.dtype(cfg.dtype).itemsize, mb, first))
    on = overlapping(cfg.overlap, n)
    return dataclasses.replace(
        cfg, bucket_mb=mb, first_bucket_mb=first, overlap="on" if on else "off"
    )


class BucketedExchange:
    """A step's gradient exchange, bucket by bucket: `ready(layer)` from backward, `wait()`
    once backward is done (returns when every bucket's sum is in place)."""

    def __init__(self, exchange, buckets: list[Bucket], overlap: bool, clock, synchronize=None,
                 patience=None):  # fmt: skip
        """exchange: factory.GradientExchange, one executor per bucket of `buckets`;
        synchronize: the device's (on a GPU: a bucket leaves once its layer is computed);
        patience: what the waits of the communication thread read (comm.Patience: its
        `computing` is set from the first bucket handed over until `wait`)."""
        self.exchange, self.buckets, self.overlap = exchange, buckets, overlap
        self.patience = patience
        self.buffer, self.description = exchange.buffer, exchange.description
        self.clock, self.synchronize = clock, synchronize
        self.by_layer: dict[int, list[int]] = {}
        for b, bucket in enumerate(buckets):
            self.by_layer.setdefault(bucket.layer, []).append(b)
        self.recorder = None
        self.parts = [_Part(self, b) for b in range(len(buckets))]
        self._copy_ns = [0, 0]  # the step's staging copies, summed over its buckets
        self._todo = self._done = self._thread = None
        self._handed = 0
        self._error: BaseException | None = None

    # --- recording ----------------------------------------------------------------------

    def record_into(self, recorder) -> None:
        """Record every later step into `recorder`: each bucket's executor binds into its
        slots, then the recorder lays out a step of all of them (None: record nothing)."""
        self.recorder = recorder
        for executor, part in zip(self.exchange.executors, self.parts):
            part.messages = _UNBOUND
            executor.record_into(part if recorder is not None else None)
        if recorder is None:
            return
        if any(s.messages is _UNBOUND for s in self.parts):  # every executor binds when made
            raise RuntimeError("a bucket's executor did not say what it sends")
        itemsize = np.dtype(self.exchange.views[0].dtype).itemsize
        if any(s.copies != (0, 0) for s in self.parts):
            self.recorder.staged(*np.sum([s.copies for s in self.parts], axis=0).tolist())
        self.recorder.bind_buckets([
            (b.lo * itemsize, (b.hi - b.lo) * itemsize, s.messages)
            for b, s in zip(self.buckets, self.parts)
        ])  # fmt: skip

    # --- a step -------------------------------------------------------------------------

    def ready(self, layer: int) -> None:
        """Backward has written `layer`'s gradients: the buckets it completes are ready."""
        mine = self.by_layer.get(layer)
        if not mine:
            return
        now = self.clock()
        rec = self.recorder
        if rec is not None:
            for b in mine:
                rec.bucket_readings(b)[0] = now
        if self.overlap:
            if self.synchronize is not None:
                self.synchronize()  # the layer's kernels done: the bucket is on the device
            if self._thread is None:
                self._start()
            if self.patience is not None:
                self.patience.computing = True  # the thread's waits sleep: backward computes
            for b in mine:
                self._todo.put(b)
            self._handed += len(mine)

    def wait(self) -> None:
        """Every bucket summed: with overlap, wait for the thread to finish what it was
        handed (and hand it what backward did not: a step without the hook); without, run
        every bucket now."""
        if not self.overlap:
            for b in range(len(self.buckets)):
                self._run(b)
        else:
            if self._handed == 0:  # no backward told us (a recomputation): all of them now
                for layer in sorted(self.by_layer, reverse=True):
                    self.ready(layer)
            if self.patience is not None:
                self.patience.computing = False  # the step waits: the thread's waits spin
            for _ in range(self._handed):
                self._done.acquire()
            self._handed = 0
            if self._error is not None:
                error, self._error = self._error, None
                raise error
        if self.recorder is not None and self._copy_ns != [0, 0]:
            self.recorder.copy_times(*self._copy_ns)
        self._copy_ns = [0, 0]

    def _run(self, b: int) -> None:
        rec, clock = self.recorder, self.clock
        if rec is None:
            self.exchange.executors[b](self.exchange.views[b])
            return
        rec.bucket_readings(b)[1] = clock()
        self.exchange.executors[b](self.exchange.views[b])
        rec.bucket_readings(b)[-1] = clock()

    def _start(self) -> None:
        self._todo, self._done = queue.SimpleQueue(), threading.Semaphore(0)
        self._thread = threading.Thread(target=self._serve, name="buckets", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        """The communication thread: each bucket handed over, in order, until the process
        ends (a daemon: a job that fails leaves it waiting, not holding the exit)."""
        while True:
            b = self._todo.get()
            try:
                if self._error is None:  # after a failure, the rest are only counted off
                    self._run(b)
            except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
                self._error = exc
            self._done.release()


_UNBOUND = object()


class _Part:
    """Bucket b's part of the recorder, as its executor sees one: `bind` what it sends (kept
    until the exchange lays out the step), its readings (start, then each round's end),
    its staging copies."""

    def __init__(self, owner: BucketedExchange, b: int):
        self.owner, self.b = owner, b
        self.messages, self.copies = None, (0, 0)

    @property
    def clock(self):
        return self.owner.clock

    def bind(self, messages) -> None:
        self.messages = messages

    def staged(self, d2h_bytes: int, h2d_bytes: int) -> None:
        self.copies = (d2h_bytes, h2d_bytes)

    def readings(self):
        return self.owner.recorder.bucket_readings(self.b)[1:]

    def copy_times(self, d2h_ns: int, h2d_ns: int) -> None:
        self.owner._copy_ns[0] += d2h_ns
        self.owner._copy_ns[1] += h2d_ns
