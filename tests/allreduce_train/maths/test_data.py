"""Datasets and sharding: the global batch is the same for any rank count; real IDX files."""

import gzip

import numpy as np
import pytest

from allreduce_train.exits import UsageError
from allreduce_train.maths import data
from allreduce_train.maths.data import DataError

from idx import idx_bytes, write_mnist


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 6, 31, 64, 100])
def test_local_slices_partition_rows_in_order(p, n):
    slices = [data.local_slice(n, p, r) for r in range(p)]
    rows = np.concatenate([np.arange(n)[s] for s in slices])
    np.testing.assert_array_equal(rows, np.arange(n))
    sizes = [len(np.arange(n)[s]) for s in slices]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = data.epoch_order(100, seed=3, epoch=2)
    np.testing.assert_array_equal(a, data.epoch_order(100, seed=3, epoch=2))
    assert sorted(a) == list(range(100))
    assert not np.array_equal(a, data.epoch_order(100, seed=3, epoch=3))
    assert not np.array_equal(a, data.epoch_order(100, seed=4, epoch=2))


def test_digits_split_is_fixed_and_scaled():
    ds = data.load("digits", seed=0)
    assert ds.nfeatures == 64 and ds.nclasses == 10
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert len(ds.y_test) == round(1797 * 0.2)
    x, y = ds.rows("train", np.arange(5), np.float32)
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1 and y.dtype == np.int64
    again = data.load("digits", seed=0)
    np.testing.assert_array_equal(ds.y_test, again.y_test)


def test_synthetic_any_size_deterministic_and_learnable_labels():
    ds = data.load("synthetic", seed=1, samples=500, features=33, classes=4)
    assert ds.x_train.shape == (500, 33) and ds.nclasses == 4
    assert len(ds.y_test) == 100
    assert len(set(ds.y_train.tolist())) > 1  # the teacher uses more than one class
    np.testing.assert_array_equal(
        ds.x_train, data.load("synthetic", seed=1, samples=500, features=33, classes=4).x_train
    )


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_files_read(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    ds = data.load("mnist", seed=0, data_dir=str(tmp_path))
    assert ds.x_train.shape == (120, 784) and ds.x_test.shape == (40, 784)
    np.testing.assert_array_equal(ds.x_train[7], arrays["train-images-idx3-ubyte"][7].ravel())
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    x, _ = ds.rows("train", np.array([7]), np.float64)
    assert x.max() <= 1.0


def test_uncompressed_idx_is_memory_mapped(tmp_path):
    write_mnist(tmp_path)
    assert isinstance(data.read_idx(str(tmp_path / "train-images-idx3-ubyte")), np.memmap)


def test_mnist_npz(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        y_train=np.arange(10) % 10,
        x_test=np.zeros((3, 28, 28), np.uint8),
        y_test=np.arange(3),
    )
    ds = data.load("mnist", seed=0, data_dir=str(tmp_path))
    assert ds.x_train.shape == (10, 784) and len(ds.y_test) == 3


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda b: b[:-5], "corrupt IDX file"),
        (lambda b: b + b"\0", "corrupt IDX file"),
        (lambda b: b"\x01" + b[1:], "bad magic"),
        (lambda b: b[:6], "truncated header"),
        (lambda b: b"", "bad magic"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_corrupt_idx_named_in_one_line(tmp_path, damage, message, gz):
    write_mnist(tmp_path)
    name = "train-images-idx3-ubyte"
    raw = damage((tmp_path / name).read_bytes())
    (tmp_path / name).unlink()
    (tmp_path / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match=message) as info:
        data.load("mnist", seed=0, data_dir=str(tmp_path))
    assert name in str(info.value) and "\n" not in str(info.value)


def test_not_gzip_at_all(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="cannot read IDX"):
        data.load("mnist", seed=0, data_dir=str(tmp_path))


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda d: None, "missing train-images-idx3-ubyte"),
        (
            lambda d: (
                write_mnist(d, ntrain=5)
                and (d / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(6, np.uint8)))
            ),
            "do not match",
        ),
        (
            lambda d: (
                write_mnist(d)
                and (d / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(40, 12, np.uint8)))
            ),
            "labels must be 0..9",
        ),
    ],
)
def test_bad_mnist_directories(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(DataError, match=message):
        data.load("mnist", seed=0, data_dir=str(tmp_path))


def test_mnist_needs_existing_data_dir(tmp_path):
    with pytest.raises(UsageError, match="needs --data-dir"):  # arguments: exit 2
        data.load("mnist", seed=0)
    with pytest.raises(UsageError, match="no such directory"):
        data.load("mnist", seed=0, data_dir=str(tmp_path / "nope"))


IMAGES = "train-images-idx3-ubyte"


@pytest.mark.parametrize(
    "shape,message",
    [
        ((-120, -28, 28), "negative dimension"),  # product matches the payload
        ((-1, 28, 28), "negative dimension"),
        ((2**31 - 1, 28, 28), "promises 1683627179264 bytes"),  # refused before any allocation
        ((2**31 - 1,) * 3, "corrupt IDX file"),  # overflows int64: Python's ints do not
        ((121, 28, 28), "corrupt IDX file"),  # product disagrees with the payload
        ((120, 28, 27), "corrupt IDX file"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_idx_bad_dimensions_named_in_one_line(tmp_path, shape, message, gz):
    images = write_mnist(tmp_path)[IMAGES]
    raw = idx_bytes(images, shape=shape)
    (tmp_path / IMAGES).unlink()
    (tmp_path / (IMAGES + ".gz" if gz else IMAGES)).write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match=message) as info:
        data.load("mnist", seed=0, data_dir=str(tmp_path))
    assert IMAGES in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_idx_with_non_finite_pixels_refused(tmp_path, dtype, bad):
    images = write_mnist(tmp_path)[IMAGES].astype(dtype)
    (tmp_path / IMAGES).write_bytes(idx_bytes(images))
    x = data.load("mnist", seed=0, data_dir=str(tmp_path)).x_train  # finite: read
    assert x.dtype == np.dtype(dtype).newbyteorder(">") and x[117, 3 * 28 + 4] == images[117, 3, 4]
    images[117, 3, 4] = bad
    (tmp_path / IMAGES).write_bytes(idx_bytes(images))
    with pytest.raises(DataError, match="non-finite pixel values") as info:
        data.load("mnist", seed=0, data_dir=str(tmp_path))
    assert IMAGES in str(info.value)


def npz(tmp_path, **arrays):
    rng = np.random.default_rng(0)
    fields = {
        "x_train": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "y_train": np.arange(10) % 10,
        "x_test": np.zeros((3, 28, 28), np.uint8),
        "y_test": np.arange(3),
        **arrays,
    }
    np.savez(tmp_path / "mnist.npz", **fields)


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"x_test": np.full((3, 28, 28), np.nan)}, r"mnist.npz \(x_test\): non-finite pixel"),
        ({"y_train": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, np.inf])}, "non-finite label"),
        ({"y_train": np.arange(10) - 1}, "labels must be 0..9, found -1"),
        ({"y_test": np.array([0, 1.5, 2])}, "labels must be 0..9, found 1.5"),
        ({"x_train": np.full((10, 28, 28), "a")}, "values of type <U1"),
    ],
)
def test_npz_bad_values_refused(tmp_path, arrays, message):
    npz(tmp_path, **arrays)
    with pytest.raises(DataError, match=message):
        data.load("mnist", seed=0, data_dir=str(tmp_path))


def test_empty_idx_files_load(tmp_path):
    write_mnist(tmp_path, ntest=0)  # no test images: the configuration decides if that will do
    assert data.load("mnist", seed=0, data_dir=str(tmp_path)).x_test.shape == (0, 784)
