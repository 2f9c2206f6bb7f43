"""A node's shared resources, for calibrated machines: one shared fabric link per node, a
cache bandwidth while the buffers fit, and a [compute] table of per-round costs and cores;
validated, routed and written back."""

import numpy as np
import pytest

from netsim.cluster import topology
from netsim.cluster.topology import TopologyError

from topologies import names_of, torus_example

# ------------------------------------------------------- a node's shared fabric, cache, compute


def one_node(**intra):
    return {
        "name": "box",
        "nodes": 1,
        "gpus_per_node": 4,
        "placement": "block",
        "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 80, "latency_us": 2, **intra},
    }


def test_aggregate_bandwidth_adds_one_shared_fabric_link_per_node():
    topo = topology.parse(one_node(aggregate_bandwidth_gbit_per_s=100))
    assert names_of(topo, 0, 3) == ["node0.gpu0.up", "node0.fabric", "node0.gpu3.down"]
    assert names_of(topo, 2, 2) == []
    fabric = topo.link_names.index("node0.fabric")
    assert topo.bandwidth_bytes_per_s[fabric] == 100e9 / 8 and topo.latency_s[fabric] == 0
    # the pair latency is still the fabric's latency_us, once; the narrowest link is the port
    np.testing.assert_allclose(topo.path_latency_s([0, 1], [3, 2]), 2e-6, rtol=1e-12)
    np.testing.assert_allclose(topo.path_bandwidth_bytes_per_s([0], [3]), 80e9 / 8)
    # every flow of a round crosses the same link: p = 4 flows share it
    indptr, links = topo.routes(np.arange(4), (np.arange(4) + 1) % 4)
    assert np.bincount(links)[fabric] == 4 and np.diff(indptr).tolist() == [3, 3, 3, 3]


def test_fabric_is_crossed_inside_nodes_only():
    data = {**torus_example((2,), gpus_per_node=2)}
    data["intra_node"] = {**data["intra_node"], "aggregate_bandwidth_gbit_per_s": 1000}
    topo = topology.parse(data)
    assert names_of(topo, 0, 1) == ["node0.gpu0.up", "node0.fabric", "node0.gpu1.down"]
    assert names_of(topo, 3, 2) == ["node1.gpu1.up", "node1.fabric", "node1.gpu0.down"]
    assert "node0.fabric" not in names_of(topo, 0, 3)
    # ids of the other links do not move: the fabric block comes last
    plain = topology.parse(torus_example((2,), gpus_per_node=2))
    assert topo.link_names[: len(plain.link_names)] == plain.link_names


@pytest.mark.parametrize(
    "intra, message",
    [
        (
            {"aggregate_bandwidth_gbit_per_s": 0},
            "intra_node.aggregate_bandwidth_gbit_per_s must be positive, got 0",
        ),
        (
            {"aggregate_bandwidth_gbit_per_s": "lots"},
            "intra_node.aggregate_bandwidth_gbit_per_s must be a finite number",
        ),
        (
            {"aggregate_bandwidth_gbit_per_s": True},
            "intra_node.aggregate_bandwidth_gbit_per_s must be a finite number",
        ),
        (
            {"aggregate_bandwith_gbit_per_s": 5},
            "intra_node.aggregate_bandwith_gbit_per_s is not a known key (did you mean "
            "'aggregate_bandwidth_gbit_per_s'?)",
        ),
        (
            {"cache_bytes": 1 << 25, "cache_bandwidth_gbit_per_s": 200},
            "intra_node.aggregate_bandwidth_gbit_per_s is missing (needed by "
            "intra_node.cache_bytes)",
        ),
        (
            {"aggregate_bandwidth_gbit_per_s": 100, "cache_bytes": 1 << 25},
            "intra_node.cache_bandwidth_gbit_per_s is missing (needed by intra_node.cache_bytes)",
        ),
        (
            {
                "aggregate_bandwidth_gbit_per_s": 100,
                "cache_bytes": 0.5,
                "cache_bandwidth_gbit_per_s": 200,
            },
            "intra_node.cache_bytes must be a positive integer",
        ),
    ],
)
def test_aggregate_and_cache_keys_are_validated(intra, message):
    with pytest.raises(TopologyError) as err:
        topology.parse(one_node(**intra))
    assert str(err.value).startswith("<dict>: " + message)


def test_aggregate_bandwidth_belongs_to_all_to_all_only():
    pcie = topology.load("ethernet-100g").spec
    pcie["intra_node"]["aggregate_bandwidth_gbit_per_s"] = 100
    with pytest.raises(
        TopologyError,
        match=r"intra_node.aggregate_bandwidth_gbit_per_s does not apply to "
        r"intra_node.kind = 'pcie-tree'",
    ):
        topology.parse(pcie)


def test_cache_bandwidth_applies_to_nodes_whose_buffers_fit():
    data = torus_example((2,), gpus_per_node=2)
    data["intra_node"] = {
        **data["intra_node"],
        "aggregate_bandwidth_gbit_per_s": 100,
        "cache_bytes": 1000,
        "cache_bandwidth_gbit_per_s": 300,
    }
    topo = topology.parse(data)
    bw = topo.bandwidth_for([1000, 1001])
    f0, f1 = topo.link_names.index("node0.fabric"), topo.link_names.index("node1.fabric")
    assert (bw[f0], bw[f1]) == (300e9 / 8, 100e9 / 8)
    others = np.ones(len(bw), bool)
    others[[f0, f1]] = False
    np.testing.assert_array_equal(bw[others], topo.bandwidth_bytes_per_s[others])
    assert topo.bandwidth_bytes_per_s[f0] == 100e9 / 8  # the topology itself is unchanged
    no_cache = topology.parse(one_node(aggregate_bandwidth_gbit_per_s=5))
    np.testing.assert_array_equal(no_cache.bandwidth_for([0]), no_cache.bandwidth_bytes_per_s)


def test_compute_table_gives_costs_and_core_sharing():
    plain = topology.parse(one_node())
    assert (plain.reduce_s_per_byte, plain.message_overhead_s, plain.core_sharing(4)) == (
        0.0,
        0.0,
        1,
    )
    topo = topology.parse(
        {**one_node(), "compute": {"cores": 2, "message_overhead_us": 10, "reduce_gbyte_per_s": 20}}
    )
    assert topo.reduce_s_per_byte == pytest.approx(
        1 / 20e9
    ) and topo.message_overhead_s == pytest.approx(1e-5)
    assert [topo.core_sharing(p) for p in (1, 2, 3, 4)] == [1, 1, 2, 2]
    with pytest.raises(TopologyError, match=r"compute.cores must be a positive integer, got 0"):
        topology.parse({**one_node(), "compute": {"cores": 0}})
    with pytest.raises(
        TopologyError,
        match=r"compute.reduce_gbyte_s is not a known key \(did you mean "
        r"'reduce_gbyte_per_s'",
    ):
        topology.parse({**one_node(), "compute": {"reduce_gbyte_s": 1}})
    # ranks spread over nodes share the cores of their own node only
    spread = topology.parse(
        {
            **torus_example((2,), gpus_per_node=4),
            "placement": "round-robin",
            "compute": {"cores": 2},
        }
    )
    assert spread.core_sharing(4) == 1 and spread.core_sharing(8) == 2


def test_fabric_and_compute_round_trip_through_toml(tmp_path):
    data = {
        **one_node(
            aggregate_bandwidth_gbit_per_s=98.5,
            cache_bytes=1 << 25,
            cache_bandwidth_gbit_per_s=160.0,
        ),
        "compute": {"cores": 2, "message_overhead_us": 11.5, "reduce_gbyte_per_s": 20.0},
    }
    path = tmp_path / "box.toml"
    path.write_text(topology.to_toml(topology.parse(data).spec))
    assert topology.load(str(path)).spec == topology.parse(data).spec
