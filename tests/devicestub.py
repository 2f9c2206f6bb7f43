"""A stand-in GPU array module for the CPU: NumPy's maths in arrays that keep CuPy's rules.

CuPy cannot run without a GPU, so the GPU path of training is run here with this module as
its `xp`. Its arrays compute with NumPy (so a run on it is the CPU run to the bit), but they
refuse what CuPy refuses, which is what a path written on the CPU gets wrong on a GPU:
a NumPy array handed to a device operation, a device array turned into a NumPy one
without asnumpy (np.asarray, memoryview, host[...] = device), a NumPy function called on a
device array, a NumPy array stored into a device one. Each raises TypeError, as CuPy does.
The arrays give MPI their memory through DLPack (as CuPy's go to a CUDA-aware MPI), and
`StandInGpu` is a Backend whose copier moves pieces with asnumpy and asarray.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from allreduce_train.maths import backend

__version__ = "0 (a stand-in)"


class DeviceArray(NDArrayOperatorsMixin):
    __slots__ = ("a",)

    def __init__(self, a: np.ndarray):
        self.a = a

    # what CuPy refuses
    def __array__(self, *args, **kwargs):
        raise TypeError("implicit conversion of a device array to NumPy (use asnumpy)")

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        args = [_device(x, ufunc.__name__) for x in inputs]
        if out is not None:
            kwargs["out"] = tuple(_device(x, ufunc.__name__) for x in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} on a device array (use the array module)")

    # an ndarray's own interface, on the device
    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__ etc.: NumPy cannot read it
            raise AttributeError(name)
        attr = getattr(self.a, name)
        if not callable(attr):
            return _wrap(attr)
        return lambda *args, **kwargs: _wrap(attr(*_unwrap(args, name), **_unwrap(kwargs, name)))

    def __getitem__(self, index):
        return _wrap(self.a[_unwrap(index, "indexing")], scalars=True)

    def __setitem__(self, index, value):
        self.a[_unwrap(index, "indexing")] = _device(value, "assignment")

    def __len__(self):
        return len(self.a)

    def __float__(self):
        return float(self.a)

    def __int__(self):
        return int(self.a)

    def __bool__(self):
        return bool(self.a)

    def __dlpack__(self, **kwargs):
        return self.a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()

    def __repr__(self):
        return f"device({self.a!r})"


def _device(x, what):
    """x as NumPy computes it, refusing a host array where a device one must be."""
    if isinstance(x, DeviceArray):
        return x.a
    if isinstance(x, np.ndarray) and x.ndim > 0:
        raise TypeError(f"{what}: a NumPy array where a device array must be (use asarray)")
    return x


def _unwrap(x, what):
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, what) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, what) for k, v in x.items()}
    return _device(x, what)


def _wrap(x, scalars=False):
    if isinstance(x, np.ndarray):
        return DeviceArray(x)
    if scalars and isinstance(x, np.generic):
        return DeviceArray(np.asarray(x))  # CuPy gives 0-d arrays, not scalars
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    return x


# --- the module's functions: creation, transfers; everything else is NumPy's, on the device


def asarray(x, dtype=None):
    return x if isinstance(x, DeviceArray) and dtype is None else DeviceArray(np.array(x, dtype))


def asnumpy(x):
    return x.a.copy() if isinstance(x, DeviceArray) else np.asarray(x)


def zeros(shape, dtype=float):
    return DeviceArray(np.zeros(shape, dtype))


def empty(shape, dtype=float):
    return DeviceArray(np.empty(shape, dtype))


def arange(*args, **kwargs):
    return DeviceArray(np.arange(*args, **kwargs))


def __getattr__(name):
    attr = getattr(np, name)
    if isinstance(attr, np.ufunc) or not callable(attr) or isinstance(attr, type):
        return attr  # ufuncs dispatch to DeviceArray; dtypes and constants are NumPy's

    def on_device(*args, **kwargs):
        return _wrap(attr(*_unwrap(args, name), **_unwrap(kwargs, name)))

    return on_device


class Copier:
    """staging's copier for the stand-in: each piece to the host at once (asnumpy)."""

    def begin(self, device, host):
        self.device, self.host, self.t = device, host, [time.perf_counter_ns()] * 4

    def to_host(self, lo, hi):
        self.host[lo:hi] = asnumpy(self.device[lo:hi])
        self.t[1] = time.perf_counter_ns()

    def mark(self, k):
        pass

    def wait(self, k):
        pass

    def to_device(self):
        self.t[2] = time.perf_counter_ns()
        self.device[...] = asarray(self.host)
        self.t[3] = time.perf_counter_ns()

    def times_ns(self):
        return self.t[1] - self.t[0], self.t[3] - self.t[2]


class StandInGpu(backend.Backend):
    """A Backend on this module: a pinned mirror is plain host memory here."""

    def host_mirror(self, device_array):
        return np.empty(device_array.shape, device_array.dtype)

    def to_host(self, device_array, host):
        host[...] = asnumpy(device_array)

    def from_host(self, host, device_array):
        device_array[...] = asarray(host)

    def copier(self):
        return Copier()

    def synchronize(self):
        pass


def gpu(local_size: int) -> StandInGpu:
    """What backend.select gives a rank of a node of local_size ranks, on this module."""
    cpu = backend._numpy(local_size)  # the same BLAS threads as a CPU run
    return StandInGpu(sys.modules[__name__], "gpu 0 of 1 (a stand-in)", cpu.threads, 1)
