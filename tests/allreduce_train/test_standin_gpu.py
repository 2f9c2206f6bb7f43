"""The GPU path of training, run whole on the CPU: every rank on a stand-in GPU
(tests/devicestub.py: NumPy's maths in arrays that refuse what CuPy refuses), so the model
on the device, the staged all-reduce, the CUDA-aware path, the records, the checks and the
checkpoint all run as on a GPU, and must give the CPU run's weights to the bit."""

from __future__ import annotations

import json

import devicestub
import numpy as np
import pytest

from conftest import mpirun, program

ARGS = ["--steps", "25", "--eval-every", "10", "--check-every", "5"]


def test_the_stand_in_refuses_what_cupy_refuses():
    d, host = devicestub.asarray(np.arange(6.0)), np.ones(6)
    for mistake in (
        lambda: np.asarray(d),  # implicit conversion
        lambda: memoryview(d),
        lambda: np.dot(d, d),  # a NumPy function on a device array
        lambda: d + host,  # a host array in a device operation
        lambda: devicestub.add(d, host, out=d),
        lambda: d.__setitem__(slice(None), host),
        lambda: host.__setitem__(slice(None), d),
    ):
        with pytest.raises(TypeError):
            mistake()
    assert float(devicestub.dot(d, d)) == 55.0 and devicestub.asnumpy(d[2:]).sum() == 14.0


def run(p, run_dir, *args, stand_in=True):
    argv = [program("standin_gpu.py")] if stand_in else ["-m", "allreduce_train"]
    result = mpirun(p, [*argv, *ARGS, *args, "--run-dir", str(run_dir)], timeout=180)
    assert result.returncode == 0, result.output
    with np.load(run_dir / "checkpoint.npz") as z:
        params = z["params"]
    return params, json.loads((run_dir / "summary.json").read_text()), result.output


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.parametrize("p", [1, 2, 3])
def test_staged_through_the_host_the_gpu_path_trains_as_the_cpu_does(p, tmp_path):
    cpu, cpu_summary, _ = run(p, tmp_path / "cpu", "--device", "cpu", stand_in=False)
    gpu, summary, out = run(p, tmp_path / "gpu")
    assert "gradients staged through pinned host memory" in out
    assert np.array_equal(gpu, cpu)  # the same maths, through the device path
    traffic, nbytes = summary["traffic"], gpu.nbytes
    sent = "bytes_sent_per_step_by_rank"
    assert traffic[sent] == cpu_summary["traffic"][sent]  # the same network bytes
    assert traffic["copies"]["d2h_bytes_per_step_by_rank"] == [nbytes] * p
    assert traffic["copies"]["h2d_bytes_per_step_by_rank"] == [nbytes] * p
    assert min(traffic["copies"]["d2h_s_median_by_rank"]) > 0
    assert "copies" not in cpu_summary["traffic"]
    assert "GPU <-> host copies per step (staging)" in out


@pytest.mark.slow
@pytest.mark.mpi
def test_through_a_cuda_aware_mpi_the_gpu_buffers_go_to_mpi_and_train_as_the_cpu(tmp_path):
    cpu, cpu_summary, _ = run(3, tmp_path / "cpu", "--device", "cpu", stand_in=False)
    gpu, summary, out = run(3, tmp_path / "gpu", "--claim-cuda-aware", "--cuda-aware-mpi")
    assert "the all-reduce on the GPU buffers (CUDA-aware MPI)" in out
    assert np.array_equal(gpu, cpu)
    sent = "bytes_sent_per_step_by_rank"
    assert summary["traffic"][sent] == cpu_summary["traffic"][sent]
    assert "copies" not in summary["traffic"]  # nothing staged


@pytest.mark.mpi
def test_without_a_cuda_aware_mpi_the_option_is_refused_on_every_rank(tmp_path):
    result = mpirun(2, [program("standin_gpu.py"), "--cuda-aware-mpi", "--steps", "1"])
    assert result.returncode == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "says it is not CUDA-aware" in lines[0], result.output


@pytest.mark.slow
@pytest.mark.mpi
def test_a_nonfinite_device_gradient_is_named_in_one_line(tmp_path):
    argv = [program("standin_gpu.py"), "--inject", "kind=nan,rank=1,step=3", "--steps", "6"]
    result = mpirun(2, [*argv, "--run-dir", str(tmp_path / "run")], timeout=180)
    assert result.returncode == 5, result.output
    assert "step 3: the averaged gradient is not finite: rank 1's local gradient" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
@pytest.mark.mpi
def test_a_run_on_the_stand_in_resumes_from_its_checkpoint(tmp_path):
    whole, _, _ = run(2, tmp_path / "whole", "--steps", "20", "--checkpoint-every", "10")
    first = tmp_path / "first"
    run(2, first, "--steps", "10", "--checkpoint-every", "10")
    resumed, _, _ = run(2, tmp_path / "resumed", "--resume", str(first), "--steps", "20")
    assert np.array_equal(resumed, whole)


@pytest.mark.slow
@pytest.mark.mpi
def test_an_async_replica_on_the_stand_in_pushes_and_fetches_as_one_on_the_cpu(tmp_path):
    """One replica and one server: deterministic, so its weights are the CPU replica's."""
    cpu, _, _ = run(2, tmp_path / "cpu", "--mode", "async", "--device", "cpu", stand_in=False)
    gpu, _, out = run(2, tmp_path / "gpu", "--mode", "async")
    assert "pushes and fetches through host memory" in out
    assert np.array_equal(gpu, cpu)
