"""In-network all-reduce: the bytes per link its definition says, exactly, and a clear error
wherever the hardware cannot run it (or training asks for it: it is simulated only)."""

import numpy as np
import pytest

from netsim import algorithms
from netsim.cluster import topology
from netsim.errors import InputError

N = 3 * 2**20  # bytes


def loads_by_kind(topo, loads):
    """{'gpu.up': [...], 'gpu.down', 'nic.up', 'nic.down', 'other'}, in link-name order."""
    out = {}
    for name, value in zip(topo.link_names, loads):
        port = next((k for k in ("gpu", "nic") if f".{k}" in name), None)
        kind = f"{port}.{name.rsplit('.', 1)[1]}" if port else "other"
        out.setdefault(kind, []).append(value)
    return {k: np.array(v) for k, v in out.items()}


def test_nvls_moves_n_plus_n_over_l_through_every_nvlink_port_each_way():
    topo = topology.load("hgx-h100")
    loads = loads_by_kind(topo, algorithms.NVLS.link_bytes(topo, 8, N))
    for way in ("gpu.up", "gpu.down"):
        np.testing.assert_array_equal(loads[way], np.full(8, N + N / 8))
    assert set(loads) == {"gpu.up", "gpu.down"}


def test_collnet_moves_a_reduce_scatter_over_nvlink_and_one_share_through_each_nic():
    topo = topology.load("b200-rails")
    p = 32  # 4 nodes of 8
    loads = loads_by_kind(topo, algorithms.COLLNET.link_bytes(topo, p, N))
    used = topo.gpus_per_node * 4
    for way in ("gpu.up", "gpu.down"):
        np.testing.assert_array_equal(loads[way][:used], np.full(used, 2 * 7 / 8 * N))
        assert not loads[way][used:].any()
    for way in ("nic.up", "nic.down"):
        np.testing.assert_array_equal(loads[way][:used], np.full(used, N / 8))
        assert not loads[way][used:].any()


def test_nvls_tree_sends_each_share_along_the_double_binary_tree_of_the_nodes():
    topo = topology.load("b200-rails")
    p = 32  # nodes 0..3; tree edges per node over both trees (trees.cc): 2, 4, 4, 2
    loads = loads_by_kind(topo, algorithms.NVLS_TREE.link_bytes(topo, p, N))
    edges = np.repeat([2, 4, 4, 2], 8)
    for way in ("nic.up", "nic.down"):
        np.testing.assert_array_equal(loads[way][:32], edges * N / (2 * 8))
    np.testing.assert_array_equal(loads["gpu.up"][:32], np.full(32, N + N / 8))
    pair = topology.load("oci-h100-2node")  # two nodes: each a root in one tree, a leaf in one
    two = loads_by_kind(pair, algorithms.NVLS_TREE.link_bytes(pair, 16, N))
    np.testing.assert_array_equal(two["nic.up"], np.full(16, N / 8))


@pytest.mark.parametrize("algorithm", [algorithms.NVLS, algorithms.NVLS_TREE, algorithms.COLLNET])
def test_elements_sent_are_the_bytes_leaving_each_gpu(algorithm):
    topo = topology.load("b200-rails")
    p = 8 if algorithm is algorithms.NVLS else 32
    loads = loads_by_kind(topo, algorithm.link_bytes(topo, p, N))
    out = loads["gpu.up"][:p] + (loads["nic.up"][:p] if "nic.up" in loads else 0)
    sent = algorithm.elements_sent(p, N, node_of_rank=topo.node_of_rank(p))
    np.testing.assert_array_equal(sent, out)
    assert not algorithm.scheduled and not algorithm.runs_over_mpi


def test_the_time_is_the_busiest_links():
    topo = topology.load("hgx-h100")
    assert algorithms.NVLS.time_s(topo, 8, N) == pytest.approx(
        (N + N / 8) / topo.bandwidth_bytes_per_s[0]
    )


@pytest.mark.parametrize(
    "preset, algorithm, p, message",
    [
        ("dgx-h100", algorithms.NVLS, 8, "needs intra_node.multicast = true"),
        ("b200-rails", algorithms.NVLS, 16, "inside one node"),
        ("hgx-h100", algorithms.NVLS_TREE, 8, "between nodes"),
        ("dgx-h100", algorithms.COLLNET, 16, "needs network.in_network_reduction = true"),
        ("b200-rails", algorithms.COLLNET, 12, "same number of ranks on every node"),
    ],
)
def test_hardware_that_cannot_reduce_is_a_one_line_error(preset, algorithm, p, message):
    with pytest.raises(InputError, match=message):
        algorithm.link_bytes(topology.load(preset), p, N)


def test_training_refuses_an_in_network_algorithm_as_simulated_only():
    from allreduce_train.config.config import Config
    from allreduce_train.exits import UsageError

    with pytest.raises(UsageError, match="simulated only"):
        Config(allreduce="nvls")
