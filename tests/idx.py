"""Writes real MNIST-format IDX files (and mnist.npz) for tests: tiny, random, valid."""

import gzip
import struct

import numpy as np

CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array: np.ndarray, shape=None) -> bytes:
    """The IDX file of an array; `shape` (if given) is written in the header instead of the
    array's own, to make corrupt files."""
    shape = array.shape if shape is None else shape
    header = struct.pack(">BBBB", 0, 0, CODES[array.dtype], len(shape))
    header += struct.pack(f">{len(shape)}i", *shape)
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    return header + big_endian.tobytes()


def write_mnist(directory, ntrain=120, ntest=40, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (ntrain, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, ntrain, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (ntest, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, ntest, dtype=np.uint8),
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays
