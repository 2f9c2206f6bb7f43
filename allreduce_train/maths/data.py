"""Datasets and deterministic sharding of the global batch.

The order of samples depends only on the seed and the epoch: in step s of an epoch the
global batch is rows perm[s*B:(s+1)*B] of that epoch's permutation, whatever the number of
ranks. Rank r takes its contiguous part of those B rows (the first B mod p ranks get one
extra), so p ranks together see exactly the batch one rank would, and each rank gathers
(and, for memory-mapped files, reads) only its own rows. (Past 300 lines: which rows a
rank reads, and the checks that every file it reads them from is whole, are one idea.)

Data sets:
  digits     scikit-learn's bundled 8x8 handwritten digits (1,797 images), no download.
  synthetic  inputs from N(0, 1), labels from a fixed random teacher network: any size,
             for scaling studies.
  mnist      local IDX files (train-images-idx3-ubyte etc., gzipped or not) or mnist.npz
             (x_train, y_train, x_test, y_test) in --data-dir.
  fashion-mnist
             Zalando's clothing images in MNIST's format and size (the IDX files), from
             --data-dir or else Debian's package dataset-fashion-mnist (FASHION_MNIST_DIR).
  xor        the four points of XOR, (0,0)->0, (0,1)->1, (1,0)->1, (1,1)->0, repeated in
             this order to --samples training rows (the epoch's shuffle mixes them); the
             test set is the four points once each. The DistBelief-in-Akka blog demo's task,
             for its 2-2-1 sigmoid network (config: the default layers and activation).
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import zlib
from dataclasses import dataclass

import numpy as np

from .. import exits
from ..exits import UsageError


class DataError(UsageError):
    """A dataset that cannot be used: exit code exits.DATA."""

    code = exits.DATA


@dataclass(frozen=True, eq=False)
class Dataset:
    name: str
    x_train: np.ndarray  # (n, features) in its stored dtype (uint8 pixels stay uint8)
    y_train: np.ndarray  # (n,) integer labels in [0, nclasses)
    x_test: np.ndarray
    y_test: np.ndarray
    nclasses: int
    x_scale: float  # feature value = stored value * x_scale

    @property
    def nfeatures(self) -> int:
        return self.x_train.shape[1]

    def rows(self, split: str, index, dtype):
        """Features (as dtype) and labels of the given rows of 'train' or 'test'."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        features = np.asarray(x[index], dtype=dtype)
        if self.x_scale != 1:
            features *= dtype(self.x_scale)
        return features, np.asarray(y[index], dtype=np.int64)


def local_slice(nrows: int, world_size: int, rank: int) -> slice:
    """This rank's contiguous share of nrows rows: sizes differ by at most one."""
    base, extra = divmod(nrows, world_size)
    lo = rank * base + min(rank, extra)
    return slice(lo, lo + base + (rank < extra))


def local_count(nrows: int, world_size: int, rank: int) -> int:
    """How many of nrows rows are this rank's (local_slice)."""
    return len(range(nrows)[local_slice(nrows, world_size, rank)])


def epoch_order(nrows: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(nrows)


# --- loaders --------------------------------------------------------------------------


class Batches:
    """The run's global batches in order, whoever takes them (a sync step, an async
    replica's batch): batch g is rows perm[s*B:(s+1)*B] of epoch g // E's permutation, s =
    g % E, E = batches an epoch. The epoch's permutation is drawn once, when first needed."""

    def __init__(self, nrows: int, seed: int, global_batch: int):
        self.nrows, self.seed, self.global_batch = nrows, seed, global_batch
        self.per_epoch = nrows // global_batch
        self._epoch, self._order = -1, None

    def rows(self, batch: int) -> np.ndarray:
        """The training rows of global batch `batch`, in the order one process takes them."""
        epoch, s = divmod(batch, self.per_epoch)
        if epoch != self._epoch:
            self._order, self._epoch = epoch_order(self.nrows, self.seed, epoch), epoch
        b = self.global_batch
        return self._order[s * b : (s + 1) * b]


def load(
    name: str,
    *,
    seed: int,
    data_dir: str | None = None,
    samples: int = 16384,
    features: int = 784,
    classes: int = 10,
    test_fraction: float = 0.2,
) -> Dataset:
    if name == "digits":
        return _digits(seed, test_fraction)
    if name == "synthetic":
        return _synthetic(seed, samples, features, classes, test_fraction)
    if name == "mnist":
        return _mnist(data_dir)
    if name == "fashion-mnist":
        return _fashion_mnist(data_dir)
    if name == "xor":
        return _xor(samples)
    raise UsageError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")


DATASETS = ("digits", "synthetic", "mnist", "fashion-mnist", "xor")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist


def _digits(seed: int, test_fraction: float) -> Dataset:
    # The file scikit-learn's load_digits reads, read as it reads it (the same arrays, bit
    # for bit): importing sklearn.datasets costs every rank about a second (it brings SciPy's
    # statistics), twice the default job's whole training on 4 ranks.
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise DataError("digits: scikit-learn, which ships the data, is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
    try:
        table = np.loadtxt(path, delimiter=",")
    except OSError as exc:
        raise DataError(f"digits: {path}: {exc.strerror or exc}") from None
    x, y = table[:, :-1], table[:, -1].astype(np.int64)
    # A fixed split (seeded, not by rank count): the held-out images are the same in every run
    # with this seed, so accuracies of runs with different p are comparable.
    order = np.random.default_rng([seed, 2**31]).permutation(len(y))
    ntest = max(1, round(len(y) * test_fraction))
    train, test = order[ntest:], order[:ntest]
    x = x.astype(np.uint8)  # pixel intensities 0..16
    return Dataset("digits", x[train], y[train], x[test], y[test], 10, 1 / 16)


def _synthetic(
    seed: int, samples: int, features: int, classes: int, test_fraction: float
) -> Dataset:
    """A teacher MLP (features -> 64 tanh -> classes) labels Gaussian inputs: learnable, with
    a known structure, and of any size without a file."""
    rng = np.random.default_rng([seed, 2**31 + 1])
    ntest = max(1, round(samples * test_fraction))
    x = rng.standard_normal((samples + ntest, features), dtype=np.float32)
    w1 = rng.standard_normal((features, 64), dtype=np.float32) / np.sqrt(features)
    w2 = rng.standard_normal((64, classes), dtype=np.float32) / 8
    y = np.argmax(np.tanh(x @ w1) @ w2, axis=1)
    return Dataset("synthetic", x[:samples], y[:samples], x[samples:], y[samples:], classes, 1.0)


XOR_POINTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.uint8)
XOR_LABELS = np.array([0, 1, 1, 0], dtype=np.int64)


def _xor(samples: int) -> Dataset:
    """XOR's truth table, rows i of the training set being point i mod 4. The test set is
    the four points once each: a network is a deterministic function of its input, so
    repeating them would change neither the accuracy nor the mean loss, and once each the
    accuracy reads directly as how many of the four cases are right (0, 1/4, ..., 1)."""
    rows = np.arange(samples) % len(XOR_LABELS)
    x, y = XOR_POINTS.copy(), XOR_LABELS.copy()
    return Dataset("xor", x[rows], y[rows], x, y, 2, 1.0)


_IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _fashion_mnist(data_dir: str | None) -> Dataset:
    directory = data_dir or FASHION_MNIST_DIR
    if not all(_idx_path(directory, stem) for stem in _IDX_FILES.values()):
        raise DataError(
            f"dataset fashion-mnist: no IDX files in {directory} (apt-get install "
            f"dataset-fashion-mnist, or give --data-dir with its four IDX files)"
        )
    return _mnist(directory, "fashion-mnist")


def _mnist(data_dir: str | None, name: str = "mnist") -> Dataset:
    if not data_dir:
        raise UsageError("dataset mnist needs --data-dir with the MNIST IDX files or mnist.npz")
    if not os.path.isdir(data_dir):
        raise UsageError(f"--data-dir {data_dir}: no such directory")
    npz = os.path.join(data_dir, "mnist.npz")
    if name == "mnist" and os.path.exists(npz):
        arrays = _read_npz(npz)
        where = {k: f"{npz} ({k})" for k in _IDX_FILES}
    else:
        where = {key: _find_idx(data_dir, stem) for key, stem in _IDX_FILES.items()}
        arrays = {key: read_idx(path) for key, path in where.items()}
    x_train, y_train, x_test, y_test = (arrays[k] for k in _IDX_FILES)
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"MNIST {split} images {x.shape} and labels {y.shape} do not match")
    for key, array in arrays.items():
        _check_values(where[key], array, "pixel" if key[0] == "x" else "label")
    # (n, 28, 28) -> (n, 784) is a view, so a memory-mapped file stays memory-mapped.
    flat = [x.reshape(len(x), math.prod(x.shape[1:])) for x in (x_train, x_test)]
    return Dataset(name, flat[0], y_train, flat[1], y_test, 10, 1 / 255)


def _check_values(name: str, array: np.ndarray, kind: str) -> None:
    """Pixels must be finite numbers, labels integers 0..9. Read a block of rows at a time,
    so that a memory-mapped file is never copied whole (integer pixels are not read)."""
    if array.dtype.kind not in "uif":
        raise DataError(f"{name}: {kind} values of type {array.dtype} (expected numbers)")
    if kind == "pixel" and array.dtype.kind != "f":
        return
    rows = max(1, (1 << 22) // max(1, array[:1].nbytes))
    for lo in range(0, len(array), rows):
        block = np.asarray(array[lo : lo + rows])
        if not np.isfinite(block).all():
            raise DataError(f"{name}: non-finite {kind} values (NaN or Inf)")
        bad = (
            block[(block < 0) | (block > 9) | (block != np.round(block))] if kind == "label" else []
        )
        if len(bad):
            raise DataError(f"{name}: MNIST labels must be 0..9, found {bad[0]}")


def _idx_path(data_dir: str, stem: str) -> str | None:
    # Both spellings are in circulation: train-images-idx3-ubyte and train-images.idx3-ubyte.
    for name in (stem, stem.replace("-idx", ".idx")):
        for suffix in ("", ".gz"):
            path = os.path.join(data_dir, name + suffix)
            if os.path.exists(path):
                return path
    return None


def _find_idx(data_dir: str, stem: str) -> str:
    path = _idx_path(data_dir, stem)
    if path is None:
        raise DataError(f"--data-dir {data_dir}: missing {stem}[.gz] (or mnist.npz)")
    return path


def _read_npz(path: str) -> dict:
    try:
        with np.load(path) as z:
            missing = [k for k in _IDX_FILES if k not in z]
            if missing:
                raise DataError(f"{path}: missing arrays {', '.join(missing)}")
            return {k: z[k] for k in _IDX_FILES}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None


_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str) -> np.ndarray:
    """An IDX file (LeCun's MNIST format): magic 0x0000, a type code, the number of
    dimensions, each dimension as a big-endian int32, then the data in C order.

    Uncompressed files are memory-mapped (a rank reads only the pages of its rows);
    gzipped ones are decompressed into memory."""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()  # as large as the data, whatever the header says
            header, dtype, shape = _idx_header(raw[:4], raw, path)
            _check_size(path, header + math.prod(shape) * dtype.itemsize, len(raw))
            return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
        with open(path, "rb") as f:
            head = f.read(4)
            rest = f.read(4 * head[3]) if len(head) == 4 else b""
        header, dtype, shape = _idx_header(head, head + rest, path)
        _check_size(path, header + math.prod(shape) * dtype.itemsize, os.path.getsize(path))
        return np.memmap(path, dtype=dtype, mode="r", offset=header, shape=shape)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None


def _check_size(path: str, expected: int, actual: int) -> None:
    if actual != expected:
        raise DataError(
            f"{path}: corrupt IDX file: its header promises {expected} bytes, the file has {actual}"
        )


def _idx_header(magic: bytes, raw: bytes, path: str):
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = magic[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: corrupt IDX file: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], dtype=">i4"))
    if any(d < 0 for d in shape):
        raise DataError(f"{path}: corrupt IDX file: negative dimension in {shape}")
    return header, np.dtype(_IDX_DTYPES[magic[2]]), shape
