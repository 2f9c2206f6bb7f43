"""The one place that decides a run's gradient path: which executor (exchange.protocol) sums
which buffer, built from the run's configuration, and what setup must refuse before it.

    --allreduce nccl               NcclAllreduce on the GPU gradient
    on a GPU, --cuda-aware-mpi     DirectAllreduce around the schedule (or MPI_Allreduce),
                                   its adds on the GPU, on the GPU gradient
    on a GPU                       StagedAllreduce: the schedule on the gradient's pinned
                                   host mirror, the copies overlapped with the rounds
    on the CPU, --transport shm    SharedMemoryAllreduce: the schedule on the gradient in
    (or auto's pick: autoselect)   the node's shared-memory window, peers' slices read
    with peers on its node         directly, messages only between nodes
    on the CPU                     the schedule (or MPI_Allreduce) on the gradient itself
    on the CPU, --compress M       CompressedAllreduce per bucket (exchange.compress): the
                                   method's collectives, each by the schedule, as messages

The gradient's memory is decided first (`gradient_memory`): in a shared-memory window the
model's gradient buffer is the window's, so the exchange copies nothing in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from netsim import algorithms
from netsim.algorithms import compression

from ..exits import UsageError
from . import buckets, compress
from .nccl import NcclAllreduce
from .protocol import Transport
from .schedule import make_allreduce
from .shm import Peers, SharedMemoryAllreduce
from .staging import DirectAllreduce, StagedAllreduce

_COUNTER_BYTES = 64  # a rank's round counter, alone on its cache line, before its gradient


@dataclass(frozen=True, eq=False)
class GradientExchange:
    """A run's gradient path: `executors[b]` sums `views[b]`, bucket b of `buffer` (the
    gradient itself, or its pinned host mirror, which then holds the sum too), over every
    rank; `spans[b]` is where that bucket lies in the flat gradient, in elements, in launch
    order (one span: the whole gradient); `description` is how the gradient travels, for
    the device line ("" on the CPU)."""

    executors: tuple
    views: tuple
    spans: tuple
    buffer: object
    description: str = ""

    def __call__(self) -> None:
        for executor, view in zip(self.executors, self.views):
            executor(view)


@dataclass(frozen=True, eq=False)
class GradientMemory:
    """Where a rank's gradient lives: `grads`, the buffer the model is to use (None: its
    own), and `peers`, the buffers and counters of the node's ranks mapped from a shared
    window (None: no shared memory)."""

    grads: object = None
    peers: Peers | None = None


def shares_memory(cfg, backend) -> bool:
    """Whether the exchange runs through a node's shared memory: --transport shm (named, or
    auto's pick: autoselect.resolve has replaced auto by then; an unresolved auto is
    messages), a schedule (an MPI_Allreduce or NCCL moves its own bytes), on the CPU. (With
    --compress the transport is messages: Config refuses shm and settles auto to mpi.)"""
    algorithm = algorithms.get(cfg.allreduce)
    return cfg.transport == "shm" and algorithm.scheduled and not backend.on_gpu


def check_transport(cfg, dev) -> None:
    """What the gradient's path cannot do on this rank's device: --transport shm on a GPU
    (shared memory is the host's), --compress on a GPU (the compression runs on host
    arrays): a UsageError."""
    if cfg.compress != compression.NONE and dev.on_gpu:
        raise UsageError(
            f"--compress {cfg.compress}: the compression runs on the CPU's gradient; this "
            f"rank's is on {dev.description} (--device cpu runs it)"
        )
    if cfg.transport == "shm" and dev.on_gpu:
        raise UsageError(
            f"--transport shm: the gradient lives on the GPU ({dev.description}); shared "
            "memory is the host's. Leave the option out (staged through pinned memory) or "
            "use --device cpu"
        )


def gradient_memory(cfg, world, backend, nelems: int, dtype, node_of_rank) -> GradientMemory:
    """Collective (when it shares memory): a window over this node's ranks of the same
    (pretend) node, each rank's part its counter and its gradient; a rank alone in its
    node keeps its own memory."""
    if not all(world.allgather(shares_memory(cfg, backend))):
        return GradientMemory()
    dtype = np.dtype(dtype)
    window = world.shared_window(_COUNTER_BYTES + nelems * dtype.itemsize, node_of_rank)
    if len(window.ranks) < 2:
        window.free()
        return GradientMemory()
    buffers = {r: np.frombuffer(window.memory(r), dtype, nelems, _COUNTER_BYTES)
               for r in window.ranks}  # fmt: skip
    counters = {r: np.frombuffer(window.memory(r), np.int64, 1) for r in window.ranks}
    buffers[world.rank][...] = 0
    counters[world.rank][...] = 0
    window.sync()
    world.barrier()  # every counter zero before anyone looks
    return GradientMemory(
        buffers[world.rank], Peers(buffers, counters, window.sync, window.alive, window.pause)
    )


def make(
    cfg, world, backend, grads, transport: Transport, *, node_of_rank, segments,
    memory: GradientMemory = GradientMemory(), spans=None, algorithms_by_bucket=None,
    widths=None,
) -> GradientExchange:  # fmt: skip
    """This rank's gradient path for the gradient buffer `grads` (the model's, in `memory`
    where gradient_memory put it): one executor per bucket, `spans` the buckets' element
    ranges in launch order (None: one bucket of the whole gradient). Each bucket runs
    cfg's algorithm, or algorithms_by_bucket[b] ((name, channels), as --allreduce auto
    picked it for that bucket's size); with --compress, compressed (exchange.compress: the
    tensors of the MLP of these `widths`, which a compressed exchange needs)."""
    spans = tuple(spans or ((0, grads.size),))
    method = compression.parse(getattr(cfg, "compress", compression.NONE))  # (hand-made cfgs)
    picks = algorithms_by_bucket or [(cfg.allreduce, cfg.channels)] * len(spans)
    host = None if memory.peers is not None or not backend.on_gpu else (
        backend.host_mirror(grads) if not cfg.cuda_aware_mpi else None)  # fmt: skip
    nccl = None  # one NCCL communicator, shared by the buckets
    if any(algorithms.get(name).needs_gpu for name, _ in picks):
        nccl = NcclAllreduce(world, backend.xp, grads.dtype)
    executors, views = [], []
    for b, ((lo, hi), (name, channels)) in enumerate(zip(spans, picks)):
        algorithm = algorithms.get(name)
        parts = buckets.within(segments, lo, hi)
        if method.method != compression.NONE:
            if widths is None:
                raise ValueError("a compressed exchange needs the MLP's widths")
            tensors = buckets.tensors_in(widths, buckets.Bucket(lo, hi, 0))
            executor = compress.make(
                method, tensors, world.world_size, world.rank, transport, grads.dtype,
                algorithm, node_of_rank=node_of_rank, segments=parts, channels=channels,
                seed=(cfg.seed, b),
            )  # fmt: skip
            executors.append(executor)
            views.append(grads[lo:hi])
            continue
        executor, view = _bucket(cfg, world, backend, grads, transport, algorithm, channels,
                                 node_of_rank, parts, memory, host, nccl, lo, hi)  # fmt: skip
        executors.append(executor)
        views.append(view)
    algorithm = algorithms.get(cfg.allreduce)
    if memory.peers is not None:
        nodes = len(set(node_of_rank))
        between = "; messages between nodes" if nodes > 1 else ""
        description = f"; the schedule's rounds read peers' memory inside a node{between}"
        buffer = grads
    elif algorithm.needs_gpu:
        description, buffer = "; the all-reduce by NCCL on the GPU buffers", grads
    elif backend.on_gpu and cfg.cuda_aware_mpi:
        description, buffer = "; the all-reduce on the GPU buffers (CUDA-aware MPI)", grads
    elif backend.on_gpu:
        description, buffer = "; gradients staged through pinned host memory", host
    else:
        description, buffer = "", grads
    if method.method != compression.NONE:
        description += f"; each bucket compressed ({_SAYS[method.method]})"
    return GradientExchange(tuple(executors), tuple(views), spans, buffer, description)


_SAYS = {
    compression.FP16: "fp16: its all-reduce on float16",
    compression.BF16: "bf16: its all-reduce on bfloat16",
    compression.TOPK: "top-k with error feedback: an all-gather of values and indices",
    compression.POWERSGD: "PowerSGD: low-rank factors all-reduced, with error feedback",
}


def _bucket(cfg, world, backend, grads, transport, algorithm, channels, node_of_rank,
            segments, memory, host, nccl, lo, hi):  # fmt: skip
    """The executor of bucket [lo, hi) and the view it sums."""
    if memory.peers is not None:
        p = memory.peers
        schedule = algorithm.schedule(
            world.world_size, hi - lo, node_of_rank=node_of_rank, segments=segments,
            channels=channels,
        )  # fmt: skip
        mine = Peers({r: b[lo:hi] for r, b in p.buffers.items()}, p.counters, p.fence, p.alive,
                     p.pause)  # fmt: skip
        executor = SharedMemoryAllreduce(schedule, world.rank, mine, transport, grads.dtype)
        return executor, mine.buffers[world.rank]
    if algorithm.needs_gpu:
        return nccl, grads[lo:hi]

    def host_executor(xp):  # the schedule, its adds by xp (NumPy: on the host buffer)
        return make_allreduce(
            algorithm, world.world_size, world.rank, hi - lo, transport, xp, grads.dtype,
            node_of_rank=node_of_rank, segments=segments, channels=channels,
        )  # fmt: skip

    if backend.on_gpu and cfg.cuda_aware_mpi:
        inner = host_executor(backend.xp)
        direct = DirectAllreduce(inner, backend.synchronize)
        inner.bind(grads[lo:hi])
        return direct, grads[lo:hi]
    if backend.on_gpu:
        inner = host_executor(np)
        staged = StagedAllreduce(inner, backend.copier(), grads[lo:hi], host[lo:hi])
        inner.bind(staged.host)
        return staged, staged.host
    executor = host_executor(np)
    view = grads[lo:hi]
    executor.bind(view)
    return executor, view


def check_allreduce(dev, algorithm, local_size: int) -> None:
    """An all-reduce that needs GPU buffers (NCCL) on a rank that has none, or on ranks that
    share one (NCCL refuses two ranks of a communicator on one device): a UsageError."""
    if not algorithm.needs_gpu:
        return
    if not dev.on_gpu:
        raise UsageError(
            f"--allreduce {algorithm.name}: needs a GPU per rank; this rank runs on "
            f"{dev.description}"
        )
    if local_size > dev.devices:
        raise UsageError(
            f"--allreduce {algorithm.name}: NCCL needs a GPU of its own per rank; {local_size} "
            f"ranks share {dev.devices} GPU{'s' * (dev.devices > 1)} on this node (the "
            "default, staged all-reduce lets them share)"
        )


def check_cuda_aware(dev, algorithm, mpi_says: bool | None, library: str) -> None:
    """--cuda-aware-mpi on a rank without a GPU, with NCCL (which works on the GPU buffers
    itself), or with an MPI that does not say it moves device memory: a UsageError."""
    if not dev.on_gpu:
        raise UsageError(f"--cuda-aware-mpi: needs a GPU; this rank runs on {dev.description}")
    if algorithm.needs_gpu:
        raise UsageError(
            f"--cuda-aware-mpi with --allreduce {algorithm.name}: {algorithm.name} moves the "
            "GPU buffers itself; leave one of them out"
        )
    if not mpi_says:
        said = "cannot say" if mpi_says is None else "says it is not"
        raise UsageError(
            f"--cuda-aware-mpi: this MPI ({library}) {said} CUDA-aware "
            "(MPIX_Query_cuda_support); the PyPI mpich wheel is not. Leave the option out to "
            "stage the gradient through pinned host memory, which works with any MPI"
        )
