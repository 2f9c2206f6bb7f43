"""The array backend: NumPy on the CPU or CuPy on a GPU, chosen once per rank.

`xp` is the array module the model computes with. How the gradient then reaches the other
ranks (staged through a pinned host mirror, through a CUDA-aware MPI, or by NCCL) is the
exchange room's business (allreduce_train.exchange.factory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from ..exits import UsageError
from . import kernels


@dataclass(frozen=True, eq=False)
class Backend:
    xp: object
    description: str
    threads: int = 1  # the cores this rank owns: its BLAS threads and the optimizer's
    devices: int = 0  # the GPUs this node shows (0: on the CPU)
    kernels: object = None  # CuPy's fused element-wise kernels (allreduce_train.maths.kernels)

    @property
    def on_gpu(self) -> bool:
        return self.xp is not np

    def host_mirror(self, device_array) -> np.ndarray:
        """The host buffer the collective works on: the array itself on the CPU."""
        if not self.on_gpu:
            return device_array
        import cupyx

        return cupyx.empty_pinned(device_array.shape, dtype=device_array.dtype)

    def to_host(self, device_array, host: np.ndarray) -> None:
        if self.on_gpu:
            device_array.get(out=host)

    def from_host(self, host: np.ndarray, device_array) -> None:
        if self.on_gpu:
            device_array.set(host)

    def copier(self):
        """What stages a gradient through host memory (exchange.staging.StagedAllreduce)."""
        return CupyCopier(self.xp)

    def finite(self, array) -> bool:
        """Whether every element is finite, in one BLAS pass (a dot product is NaN or Inf if
        any element is, or if the norm overflows the dtype); on the GPU, one scalar comes back."""
        xp = np if isinstance(array, np.ndarray) else self.xp  # a host mirror is NumPy's
        return bool(np.isfinite(float(xp.dot(array, array))))

    def synchronize(self) -> None:
        """Wait for queued GPU work, so that wall-clock timings mean what they say."""
        if self.on_gpu:
            self.xp.cuda.get_current_stream().synchronize()


class CupyCopier:
    """Pieces of a GPU buffer to its pinned host mirror on a stream of their own (each
    cudaMemcpyAsync after the device's queued work), an event per mark to wait on; the sum
    goes back on the current stream, so the update after it reads the sum. Each direction is
    timed by events around it (`times_ns`), the GPU's own clock."""

    def __init__(self, cupy):
        self.cp, self.events = cupy, {}
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.clocks = [cupy.cuda.Event() for _ in range(3)]  # d2h start; h2d start, end

    def begin(self, device, host) -> None:
        self.device, self.host = device, host
        ready = self.cp.cuda.Event(disable_timing=True)
        ready.record(self.cp.cuda.get_current_stream())
        self.stream.wait_event(ready)  # the gradient is written before any piece leaves
        self.clocks[0].record(self.stream)

    def to_host(self, lo: int, hi: int) -> None:
        self._copy(lo, hi, self.cp.cuda.runtime.memcpyDeviceToHost, self.stream)

    def mark(self, k: int) -> None:
        if k not in self.events:
            self.events[k] = self.cp.cuda.Event()
        self.events[k].record(self.stream)
        self.last = self.events[k]

    def wait(self, k: int) -> None:
        self.events[k].synchronize()

    def to_device(self) -> None:
        stream = self.cp.cuda.get_current_stream()
        self.clocks[1].record(stream)
        self._copy(0, self.host.size, self.cp.cuda.runtime.memcpyHostToDevice, stream)
        self.clocks[2].record(stream)  # the update after it is queued behind it

    def times_ns(self) -> tuple[int, int]:
        """How long the last step's copies took each way (the device-to-host one from its
        first piece queued to its last landed)."""
        elapsed = self.cp.cuda.get_elapsed_time
        self.clocks[2].synchronize()
        return (
            round(elapsed(self.clocks[0], self.last) * 1e6),
            round(elapsed(self.clocks[1], self.clocks[2]) * 1e6),
        )

    def _copy(self, lo: int, hi: int, kind, stream) -> None:
        size, rt = self.host.itemsize, self.cp.cuda.runtime
        host, device = self.host.ctypes.data + lo * size, self.device.data.ptr + lo * size
        dst, src = (host, device) if kind == rt.memcpyDeviceToHost else (device, host)
        rt.memcpyAsync(dst, src, (hi - lo) * size, kind, stream.ptr)


def select(device: str, local_rank: int, local_size: int) -> Backend:
    """The backend of one rank: `gpu` demands CuPy and a CUDA device (a UsageError naming
    what is missing otherwise, which the ranks agree on), `auto` takes one if there is one
    and else says in the device line why it runs on the CPU, `cpu` never looks."""
    if device == "cpu":
        return _numpy(local_size)
    gpu, missing = _cupy(local_rank)
    if gpu is not None:
        return gpu
    if device == "gpu":
        raise UsageError(
            f"--device gpu: {missing} (install the cuda12 or cuda13 extra on a machine with "
            f"a GPU, or use --device cpu)"
        )
    return _numpy(local_size, f"no GPU: {missing}")


def gpu_for(local_rank: int, ndevices: int) -> int:
    """The device a rank binds: round-robin over the node's visible devices by local rank (the
    rank among the node's processes, from splitting the communicator by shared memory), so
    several ranks share a GPU when they outnumber them."""
    return local_rank % ndevices


def _numpy(local_size: int, why: str | None = None) -> Backend:
    # Ranks on one node share its cores: each gets its share of BLAS threads, never more,
    # or p ranks each running all-cores threads fight over the same cores.
    threads = max(1, len(os.sched_getaffinity(0)) // local_size)
    threadpool_limits(threads)
    note = f"; {why}" if why else ""
    return Backend(
        np,
        f"cpu (NumPy {np.__version__}, {threads} thread{'s' * (threads > 1)} per rank{note})",
        threads,
    )


def _cupy(local_rank: int) -> tuple[Backend | None, str | None]:
    """(the GPU backend, None), or (None, what is missing)."""
    try:
        import cupy
    except ImportError:
        return None, "CuPy is not installed"
    try:
        ndevices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no runtime: CuPy's own words say which
        return None, f"CuPy finds no CUDA device ({type(exc).__name__}: {exc})".rstrip()
    if ndevices == 0:
        return None, "CuPy finds no CUDA device"
    device = gpu_for(local_rank, ndevices)
    cupy.cuda.Device(device).use()
    name = cupy.cuda.runtime.getDeviceProperties(device)["name"].decode()
    description = f"gpu {device} of {ndevices} ({name}, CuPy {cupy.__version__})"
    return Backend(cupy, description, devices=ndevices, kernels=kernels.make(cupy)), None
