"""Device selection on a machine without a GPU: the CPU with the reason said, `--device gpu`
an error naming what is missing, and each rank's local rank from the shared-memory split,
which picks its GPU round-robin."""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import pytest

from allreduce_train import backend
from allreduce_train.config import UsageError

from conftest import mpirun, program

NO_CUPY = importlib.util.find_spec("cupy") is None


def test_devices_go_round_robin_over_local_ranks():
    assert [backend.gpu_for(r, 2) for r in range(5)] == [0, 1, 0, 1, 0]
    assert [backend.gpu_for(r, 8) for r in range(8)] == list(range(8))
    assert {backend.gpu_for(r, 1) for r in range(4)} == {0}  # four ranks share one GPU


@pytest.mark.skipif(not NO_CUPY, reason="CuPy is installed here")
def test_auto_without_cupy_runs_on_the_cpu_and_says_why():
    auto = backend.select("auto", 0, 1)
    assert not auto.on_gpu and "no GPU: CuPy is not installed" in auto.description
    cpu = backend.select("cpu", 0, 1)
    assert not cpu.on_gpu and "no GPU" not in cpu.description
    with pytest.raises(UsageError, match="--device gpu: CuPy is not installed"):
        backend.select("gpu", 0, 1)


def test_cupy_without_a_device_is_named_as_such(monkeypatch):
    def no_driver():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")  # CuPy installed on a machine with no driver or device
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_driver))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    auto = backend.select("auto", 0, 1)
    assert not auto.on_gpu and "no GPU: CuPy finds no CUDA device" in auto.description
    assert "no CUDA-capable device" in auto.description
    with pytest.raises(UsageError, match="--device gpu: CuPy finds no CUDA device"):
        backend.select("gpu", 0, 1)


@pytest.mark.mpi
def test_local_ranks_come_from_the_shared_memory_split(tmp_path):
    out = tmp_path / "ranks"
    result = mpirun(3, [program("local_ranks.py"), str(out)], timeout=60)
    assert result.returncode == 0, result.output
    seen = [json.loads((tmp_path / f"ranks.{r}").read_text()) for r in range(3)]
    assert sorted(s["local_rank"] for s in seen) == [0, 1, 2]  # one node: all three on it
    assert {s["local_size"] for s in seen} == {3}
    assert [s["gpu_of_2"] for s in seen] == [s["local_rank"] % 2 for s in seen]
    if NO_CUPY:
        assert all("no GPU" in s["device"] for s in seen)
