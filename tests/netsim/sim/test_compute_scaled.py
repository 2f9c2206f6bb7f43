"""`netsim compare --topology T --compute scaled`: a run's compute as the topology's GPU would
take it, scaled as a workload's is (the MLP's FLOPs at the default share of the device's
peak), over what it took here; the replay multiplies every compute time by it."""

import pytest

from netsim.cluster import topology
from netsim.sim import predict
from netsim.workload.workload import DEFAULT_EFFICIENCY, PEAK_TFLOPS


def test_the_scale_is_the_mlps_flops_at_the_devices_share_over_the_compute_here():
    config = {
        "layers": [64, 128, 10], "world_size": 2, "local_batch_by_rank": [16, 16],
        "config": {"global_batch": 32, "dtype": "float32"},
    }  # fmt: skip
    records = [[{"compute_s": 0.002}, {"compute_s": 0.001}, {"compute_s": 0.001}]] * 2
    topo = topology.load("dgx-h100")  # Hopper
    flops = (2 + 4) * (64 * 128 + 128 * 10) * 16  # forward 2ab, backward 4ab, a sample
    there = flops / (PEAK_TFLOPS["hopper"]["fp32"] * 1e12 * DEFAULT_EFFICIENCY)
    assert predict.compute_scale(config, records, topo) == pytest.approx(there / 0.001)


def test_a_topology_without_a_known_gpu_is_one_line():
    config = {"layers": [4, 2], "world_size": 1, "config": {"global_batch": 4, "dtype": "float32"}}
    topo = topology.load("docs/examples/calibrated-2vcpu-vm.toml")
    with pytest.raises(Exception, match="FLOPs, which need a device"):
        predict.compute_scale(config, [[{"compute_s": 0.001}]], topo)
