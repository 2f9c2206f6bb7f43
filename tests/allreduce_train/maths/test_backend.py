"""Device selection on a machine without a GPU: the CPU with the reason said, `--device gpu`
an error naming what is missing, and each rank's local rank from the shared-memory split,
which picks its GPU round-robin."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types

import pytest

from allreduce_train import comm
from allreduce_train.exchange import factory
from allreduce_train.exits import UsageError
from allreduce_train.maths import backend
from netsim import algorithms

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
    # a job on one node: UCX's memory hooks are left out (comm._one_node_job), unless set
    assert [s["ucx_mem_events"] for s in seen] == [os.environ.get("UCX_MEM_EVENTS", "no")] * 3


def test_ucx_keeps_its_memory_hooks_where_ranks_span_nodes():
    """UCX_MEM_EVENTS=no only where the launcher put every rank on this node (or none
    started the process): across nodes UCX's registration cache needs the hooks."""
    one = comm._one_node_job
    assert one({})  # a singleton
    assert one({"PMI_SIZE": "4", "MPI_LOCALNRANKS": "4"})
    assert not one({"PMI_SIZE": "8", "MPI_LOCALNRANKS": "4"})
    assert not one({"PMI_SIZE": "8"})  # a launcher that does not say
    assert one({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"})
    assert not one({"OMPI_COMM_WORLD_SIZE": "16", "OMPI_COMM_WORLD_LOCAL_SIZE": "8"})
    assert not one({"SLURM_STEP_NUM_TASKS": "2"})


def gpu_backend(devices=1):
    """A backend whose array module is not NumPy's: what on_gpu sees of a CuPy one."""
    return backend.Backend(types.ModuleType("cupy"), "gpu 0 of 1 (stand-in)", devices=devices)


def test_cuda_aware_mpi_is_refused_where_it_cannot_work():
    ring, nccl = algorithms.get("ring"), algorithms.get("nccl")
    cpu = backend.select("cpu", 0, 1)
    with pytest.raises(UsageError, match="--cuda-aware-mpi: needs a GPU; this rank runs on cpu"):
        factory.check_cuda_aware(cpu, ring, True, "MPICH 5")
    with pytest.raises(UsageError, match="with --allreduce nccl: nccl moves the GPU buffers"):
        factory.check_cuda_aware(gpu_backend(), nccl, True, "MPICH 5")
    for says, words in ((False, "says it is not CUDA-aware"), (None, "cannot say CUDA-aware")):
        with pytest.raises(UsageError, match=rf"this MPI \(MPICH 5\) {words}") as err:
            factory.check_cuda_aware(gpu_backend(), ring, says, "MPICH 5")
        assert "\n" not in str(err.value) and "pinned host memory" in str(err.value)
    factory.check_cuda_aware(gpu_backend(), ring, True, "MPICH 5")  # accepted


def test_the_mpi_wheel_answers_whether_it_is_cuda_aware():
    """MPIX_Query_cuda_support is found through mpi4py's module in MPICH's library; the
    PyPI wheel is built without CUDA, so it answers no."""
    result = subprocess.run(
        [sys.executable, "-c", "from allreduce_train import comm; print(comm.cuda_aware())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_rank_starts_its_blas_on_one_thread_and_the_backend_gives_it_its_share():
    """python -m allreduce_train starts OpenBLAS on one thread (it would start one per core in
    every rank); the backend then raises the pool to the rank's share of the cores, which
    OpenBLAS grows to. Run in a fresh Python, as a rank is: the variable counts at import."""
    probe = (
        "import runpy, sys, threadpoolctl\n"
        "sys.argv = ['allreduce_train', '--help']\n"
        "try:\n"
        "    runpy.run_module('allreduce_train', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import os\n"
        "from allreduce_train.maths import backend\n"
        "before = max(i['num_threads'] for i in threadpoolctl.threadpool_info())\n"
        "cpu = backend._numpy(1)\n"
        "after = max(i['num_threads'] for i in threadpoolctl.threadpool_info())\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], before, cpu.threads, after)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    variable, before, share, after = out.stdout.split()[-4:]
    assert (variable, before) == ("1", "1")
    assert int(share) == max(1, len(os.sched_getaffinity(0))) and int(after) == int(share)
