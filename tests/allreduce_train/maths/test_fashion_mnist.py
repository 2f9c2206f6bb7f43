"""Fashion-MNIST: real images from Debian's dataset-fashion-mnist, read by the MNIST IDX
loader. Tests that need the files skip, saying how to install them, where the package is
not installed; the missing-files tests need nothing."""

import os

import numpy as np
import pytest

from allreduce_train import exits
from allreduce_train.config import budget
from allreduce_train.maths import data
from allreduce_train.maths.data import DataError

from conftest import mpirun, read_json, train

INSTALLED = all(data._idx_path(data.FASHION_MNIST_DIR, stem) for stem in data._IDX_FILES.values())
needs_package = pytest.mark.skipif(
    not INSTALLED,
    reason=f"no Fashion-MNIST in {data.FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist",
)


@pytest.mark.slow
@needs_package
def test_the_package_files_load_as_60000_train_and_10000_test_images():
    ds = data.load("fashion-mnist", seed=0)
    assert ds.name == "fashion-mnist" and ds.nclasses == 10 and ds.nfeatures == 784
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    # ten balanced classes: 6,000 train and 1,000 test images each
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    x, y = ds.rows("train", np.arange(5), np.float32)
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1 and x.max() > 0.5
    assert budget.KNOWN["fashion-mnist"] == (70000, 784, 10, 1)


@pytest.mark.slow
@needs_package
def test_a_data_dir_with_the_files_is_read_instead(tmp_path):
    for name in os.listdir(data.FASHION_MNIST_DIR):
        os.symlink(os.path.join(data.FASHION_MNIST_DIR, name), tmp_path / name)
    ds = data.load("fashion-mnist", seed=0, data_dir=str(tmp_path))
    assert ds.name == "fashion-mnist" and len(ds.y_train) == 60000


def test_missing_files_are_one_line_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
    for data_dir in (None, str(tmp_path)):  # the package's directory, an empty --data-dir
        with pytest.raises(DataError) as exc:
            data.load("fashion-mnist", seed=0, data_dir=data_dir)
        message = str(exc.value)
        assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message
        assert "--data-dir" in message and str(tmp_path) in message


def test_missing_files_end_the_run_with_the_hint(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["-m", "allreduce_train", "--run-dir", str(tmp_path / "run")]
    result = mpirun(0, [*argv, "--dataset", "fashion-mnist", "--data-dir", str(empty)])
    assert result.returncode == exits.DATA, result.output
    assert "apt-get install dataset-fashion-mnist" in result.output
    assert "Traceback" not in result.output


@pytest.mark.mpi
@pytest.mark.slow
@needs_package
def test_two_ranks_learn_fashion_mnist(tmp_path):
    result = train(
        2, tmp_path / "run", "--dataset", "fashion-mnist", "--steps", "30", "--eval-every", "30"
    )
    assert result.returncode == 0, result.output
    assert "fashion-mnist: 60,000 train / 10,000 test" in result.stdout
    assert "784-128-128-10" in result.stdout
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["steps"] == 30 and summary["replicas_identical"]
    assert summary["test_accuracy"] > 0.3  # chance is 0.1
    assert read_json(tmp_path / "run" / "config.json")["dataset"]["name"] == "fashion-mnist"
