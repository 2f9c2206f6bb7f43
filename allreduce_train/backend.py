"""The array backend: NumPy on the CPU or CuPy on a GPU, chosen once per rank.

`xp` is the array module the model computes with. Collectives run on host buffers: with
CuPy the gradient is staged through one pinned host mirror per run (one device-to-host and
one host-to-device copy per step), which works with any MPI, CUDA-aware or not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from .config import UsageError


@dataclass(frozen=True, eq=False)
class Backend:
    xp: object
    description: str
    threads: int = 1  # the cores this rank owns: its BLAS threads and the optimizer's

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

    def synchronize(self) -> None:
        """Wait for queued GPU work, so that wall-clock timings mean what they say."""
        if self.on_gpu:
            self.xp.cuda.get_current_stream().synchronize()


def select(device: str, local_rank: int, local_size: int) -> Backend:
    if device in ("gpu", "auto"):
        gpu = _cupy(local_rank)
        if gpu is not None:
            return gpu
        if device == "gpu":
            raise UsageError(
                "--device gpu: CuPy with a CUDA device is not available "
                "(install the cuda12 or cuda13 extra on a machine with a GPU)"
            )
    return _numpy(local_size)


def _numpy(local_size: int) -> Backend:
    # Ranks on one node share its cores: each gets its share of BLAS threads, never more,
    # or p ranks each running all-cores threads fight over the same cores.
    threads = max(1, len(os.sched_getaffinity(0)) // local_size)
    threadpool_limits(threads)
    return Backend(
        np,
        f"cpu (NumPy {np.__version__}, {threads} thread{'s' * (threads > 1)} per rank)",
        threads,
    )


def _cupy(local_rank: int) -> Backend | None:
    try:
        import cupy

        ndevices = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU here"
        return None
    if ndevices == 0:
        return None
    # Several ranks may share one GPU (more local ranks than devices): round-robin.
    device = local_rank % ndevices
    cupy.cuda.Device(device).use()
    name = cupy.cuda.runtime.getDeviceProperties(device)["name"].decode()
    return Backend(cupy, f"gpu {device} ({name}, CuPy {cupy.__version__})")
