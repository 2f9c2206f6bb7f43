"""An emulated run's topology: the calibrated node K times on the emulated links."""

import json
import math
from pathlib import Path

import pytest

from netsim.calibration import emulated
from netsim.cluster import topology
from netsim.errors import InputError

# 2 cores, a shared fabric and a cache
MACHINE = str(Path(__file__).resolve().parents[3] / "docs/examples/calibrated-2vcpu-vm.toml")


def network(nodes=2, per_node=2, mbit=200.0, mtu=1500, uplink=None, per_leaf=None, latency=40.0):
    return {
        "nodes": nodes,
        "ranks_per_node": per_node,
        "node_mbit_per_s": mbit,
        "nodes_per_leaf": per_leaf or nodes,
        "uplink_mbit_per_s": uplink,
        "mtu": mtu,
        "tcp_latency_us": latency,
    }


def test_tcp_moves_1448_payload_bytes_of_every_1514_byte_frame():
    assert emulated.payload_share(1500) == pytest.approx(1448 / 1514)
    assert emulated.payload_share(9000) == pytest.approx(8948 / 9014)


def test_the_nodes_are_the_machines_and_the_nics_the_links():
    machine = topology.load(MACHINE)
    topo = emulated.topology(machine, network())
    assert (topo.nodes, topo.gpus_per_node) == (2, 2)
    nic = topo.spec["nic"]
    assert nic["count"] == 1 and nic["latency_us"] == 40.0
    assert nic["bandwidth_gbit_per_s"] == pytest.approx(0.2 * 1448 / 1514)
    intra, base = topo.spec["intra_node"], machine.spec["intra_node"]
    assert intra["bandwidth_gbit_per_s"] == base["bandwidth_gbit_per_s"]  # a rank's own copy
    # the machine's shared fabric and cache are split over the nodes that share them
    assert intra["aggregate_bandwidth_gbit_per_s"] == base["aggregate_bandwidth_gbit_per_s"] / 2
    assert intra["cache_bytes"] == base["cache_bytes"] // 2
    assert topo.spec["compute"]["cores"] == 1  # 2 cores, 2 nodes
    assert topo.spec["network"]["kind"] == "switch"
    # the prediction of a ring: the inter-node pieces cross the capped link at its rate
    assert topo.path_bandwidth_bytes_per_s([1], [2])[0] == pytest.approx(0.2e9 / 8 * 1448 / 1514)


def test_more_ranks_than_cores_stretch_each_ranks_processor_costs():
    machine = topology.load(MACHINE)
    base = machine.spec["compute"]
    topo = emulated.topology(machine, network(nodes=4, per_node=1))  # 4 ranks on 2 cores
    stretch = math.ceil(4 / 2) / math.ceil(1 / 1)
    compute = topo.spec["compute"]
    assert compute["message_overhead_us"] == pytest.approx(base["message_overhead_us"] * stretch)
    assert compute["reduce_gbyte_per_s"] == pytest.approx(base["reduce_gbyte_per_s"] / stretch)


def test_leaf_uplinks_become_a_fat_trees_oversubscription():
    machine = topology.load(MACHINE)
    topo = emulated.topology(machine, network(nodes=4, per_node=1, uplink=200.0, per_leaf=2))
    assert topo.spec["network"] == {
        "kind": "fat-tree",
        "latency_us": 0.0,
        "nodes_per_leaf": 2,
        "oversubscription": 2.0,
    }


def test_only_a_calibrated_machine_models_an_emulated_node(tmp_path):
    with pytest.raises(InputError, match="calibrated machine"):
        emulated.topology(topology.load("dgx-h100"), network())
    assert emulated.network_of(tmp_path) is None  # a run on real hosts
    (tmp_path / "network.json").write_text(json.dumps({"links": []}))
    with pytest.raises(InputError, match="not an emulated network"):
        emulated.network_of(tmp_path)


def test_the_report_puts_what_left_the_nodes_beside_the_recorded_inter_node_bytes(tmp_path):
    from netsim.record import rundir
    from netsim.report import text

    links = [
        {"link": "node0.up", "bytes": 1060, "packets": 2, "drops": 0},
        {"link": "node0.down", "bytes": 999, "packets": 2, "drops": 0},
        {"link": "leaf0.spine.up", "bytes": 5000, "packets": 4, "drops": 0},  # not a node's
        {"link": "node1.up", "bytes": 1060, "packets": 2, "drops": 0},
    ]
    (tmp_path / "network.json").write_text(json.dumps({"emulated": network(), "links": links}))
    w = text.wire(rundir.network(str(tmp_path)), {"inter_node_bytes": 2000})
    assert w["bytes_left_nodes"] == 2120 and w["wire_over_recorded"] == pytest.approx(1.06)
    lines = text._wire_lines(w)
    assert "1.060x the inter-node bytes" in lines[0] and len(lines) == 1 + len(links)
