"""Topologies: presets, placement, and routes checked against a per-flow reference router
that builds every route from link NAMES (so the id arithmetic is checked, not restated).
The format's validation is test_topofile.py; a node's shared resources test_node_model.py."""

import math
import tomllib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsim.cluster import topology
from netsim.cluster.topology import TopologyError

from topologies import names_of, torus_example, valid_dicts


def reference_route(topo, src, dst):
    """The route of one flow, written the obvious way, one hop at a time."""
    spec, gpn = topo.spec, topo.gpus_per_node
    (sn, sg), (dn, dg) = divmod(src, gpn), divmod(dst, gpn)
    if src == dst:
        return []
    route = []
    if sn == dn:
        route = [f"node{sn}.gpu{sg}.up"]
        per_switch = spec["intra_node"].get("gpus_per_switch")
        if per_switch and sg // per_switch != dg // per_switch:
            route += [
                f"node{sn}.pcie{sg // per_switch}.up",
                f"node{dn}.pcie{dg // per_switch}.down",
            ]
        if "aggregate_bandwidth_gbit_per_s" in spec["intra_node"]:
            route.append(f"node{sn}.fabric")
        return route + [f"node{dn}.gpu{dg}.down"]
    count, net = spec["nic"]["count"], spec["network"]
    rail = dg * count // gpn
    if net["kind"] == "rails":  # PXN: to the GPU beside the destination's rail NIC first
        if sg * count // gpn != rail:
            route += [f"node{sn}.gpu{sg}.up", f"node{sn}.gpu{rail * gpn // count}.down"]
        route.append(f"node{sn}.nic{rail}.up")
    else:
        route.append(f"node{sn}.nic{sg * count // gpn}.up")
    if net["kind"] == "fat-tree":
        src_leaf, dst_leaf = sn // net["nodes_per_leaf"], dn // net["nodes_per_leaf"]
        if src_leaf != dst_leaf:
            route += [f"leaf{src_leaf}.spine.up", f"leaf{dst_leaf}.spine.down"]
    if net["kind"] in ("ring", "torus"):
        dims = [topo.nodes] if net["kind"] == "ring" else net["dims"]
        coords, target = list(np.unravel_index(sn, dims)), list(np.unravel_index(dn, dims))
        real = [i for i, size in enumerate(dims) if size > 1]  # size-1 dimensions have no links
        for i in real:
            size = dims[i]
            step = 1 if (target[i] - coords[i]) % size * 2 <= size else -1
            while coords[i] != target[i]:
                node = int(np.ravel_multi_index(coords, dims))
                route.append(f"node{node}.dim{real.index(i)}{'+' if step == 1 else '-'}")
                coords[i] = (coords[i] + step) % size
    return route + [f"node{dn}.nic{rail}.down"]


# ---------------------------------------------------------------- presets and hand-checked routes


def test_presets_load():
    assert {"dgx-h100", "dgx-h100-2to1", "ethernet-100g", "single-node-8gpu"} <= set(
        topology.presets()
    )
    for name in topology.presets():
        topo = topology.load(name)
        assert (
            len(topo.link_names)
            == len(set(topo.link_names))
            == len(topo.bandwidth_bytes_per_s)
            == len(topo.latency_s)
        )
        assert (topo.bandwidth_bytes_per_s > 0).all() and (topo.latency_s >= 0).all()
    dgx = topology.load("dgx-h100")
    assert (dgx.nodes, dgx.gpus_per_node, dgx.gpus) == (32, 8, 256)
    assert dgx.bandwidth_bytes_per_s[dgx.link_names.index("node0.gpu0.up")] == 450e9


def test_all_to_all_pair_is_two_links_and_the_fabric_latency():
    dgx = topology.load("dgx-h100")
    assert names_of(dgx, 0, 5) == ["node0.gpu0.up", "node0.gpu5.down"]
    assert names_of(dgx, 3, 3) == []
    assert dgx.path_latency_s([0], [5])[0] == pytest.approx(0.7e-6, rel=1e-12)
    assert dgx.path_bandwidth_bytes_per_s([0, 3], [5, 3]).tolist() == [450e9, math.inf]


def test_fat_tree_same_leaf_skips_the_spine_and_other_leaves_cross_it():
    for name, spine_gbit in (("dgx-h100", 400 * 8 * 4), ("dgx-h100-2to1", 400 * 8 * 4 / 2)):
        dgx = topology.load(name)
        # node 0 GPU 3 -> node 1 GPU 6: one leaf (nodes 0-3), NIC of each GPU
        assert names_of(dgx, 3, 8 + 6) == ["node0.nic3.up", "node1.nic6.down"]
        # node 0 -> node 4: leaf 0 -> leaf 1
        assert names_of(dgx, 0, 4 * 8 + 1) == [
            "node0.nic0.up",
            "leaf0.spine.up",
            "leaf1.spine.down",
            "node4.nic1.down",
        ]
        spine = dgx.bandwidth_bytes_per_s[dgx.link_names.index("leaf0.spine.up")]
        assert spine == pytest.approx(spine_gbit * 1e9 / 8)
        lat = dgx.path_latency_s([3, 0], [14, 33])
        np.testing.assert_allclose(lat, [(1.2 + 0.3) * 1e-6, (1.2 + 3 * 0.3) * 1e-6], rtol=1e-12)
        np.testing.assert_allclose(dgx.path_bandwidth_bytes_per_s([3, 0], [14, 33]), [50e9, 50e9])


def test_pcie_tree_crosses_the_root_complex_only_between_switches():
    eth = topology.load("ethernet-100g")
    assert names_of(eth, 0, 1) == ["node0.gpu0.up", "node0.gpu1.down"]
    assert names_of(eth, 0, 2) == [
        "node0.gpu0.up",
        "node0.pcie0.up",
        "node0.pcie1.down",
        "node0.gpu2.down",
    ]
    assert names_of(eth, 2, 4) == ["node0.nic0.up", "node1.nic0.down"]
    np.testing.assert_allclose(
        eth.path_latency_s([0, 0, 2], [1, 2, 4]),
        [0.15e-6, 0.45e-6, (2.0 + 0.5) * 1e-6],
        rtol=1e-12,
    )
    np.testing.assert_allclose(eth.path_bandwidth_bytes_per_s([0, 2], [2, 4]), [32e9, 12.5e9])


def ring_distance(a, b, size):
    return np.minimum((a - b) % size, (b - a) % size)


def test_torus_hops_are_the_manhattan_distance_on_the_torus():
    topo = topology.parse(torus_example((4, 4), gpus_per_node=1))
    src, dst = np.divmod(np.arange(256), 16)
    indptr, links = topo.routes(src, dst)
    hops = np.array(
        [sum(".dim" in topo.link_names[i] for i in links[a:b]) for a, b in zip(indptr, indptr[1:])]
    )
    (sx, sy), (dx, dy) = np.divmod(src, 4), np.divmod(dst, 4)
    np.testing.assert_array_equal(hops, ring_distance(sx, dx, 4) + ring_distance(sy, dy, 4))
    # (0,0) -> (2,3): dimension 0 first, +2; then dimension 1 the short way, -1 (wrapping)
    assert names_of(topo, 0, 11) == [
        "node0.nic0.up",
        "node0.dim0+",
        "node4.dim0+",
        "node8.dim1-",
        "node11.nic0.down",
    ]
    assert topo.path_latency_s([0], [11])[0] == pytest.approx((2 + 3 * 0.5) * 1e-6)


def test_ring_is_a_one_dimensional_torus():
    data = torus_example((5,))
    data["network"] = {"kind": "ring", "latency_us": 0.5}
    ring = topology.parse(data)
    # node 0 -> node 3 of 5: three steps forward or two back
    assert names_of(ring, 0, 2 * 3) == [
        "node0.nic0.up",
        "node0.dim0-",
        "node4.dim0-",
        "node3.nic0.down",
    ]
    # node 0 -> node 2 of 4 is a tie: the + way
    data = torus_example((4,))
    data["network"] = {"kind": "ring", "latency_us": 0.5}
    assert names_of(topology.parse(data), 0, 2 * 2)[1:3] == ["node0.dim0+", "node1.dim0+"]


def test_single_switch_has_exactly_the_given_bandwidth_and_latency():
    topo = topology.single_switch(3, 12.345e9, 1.5e-6)
    np.testing.assert_array_equal(topo.path_bandwidth_bytes_per_s([0, 1, 2], [1, 2, 0]), 12.345e9)
    np.testing.assert_array_equal(topo.path_latency_s([0, 1, 2], [1, 2, 0]), 1.5e-6)
    assert topo.nodes == 1 and topo.gpus == 3


# ---------------------------------------------------------------- placement


def test_placement_block_vs_round_robin():
    data = torus_example((2,), gpus_per_node=4)
    block = topology.parse(data)
    robin = topology.parse({**data, "placement": "round-robin"})
    assert block.gpu_of_rank(4).tolist() == [0, 1, 2, 3] and block.node_of_rank(4).tolist() == [
        0,
        0,
        0,
        0,
    ]
    assert robin.gpu_of_rank(4).tolist() == [0, 4, 1, 5] and robin.node_of_rank(4).tolist() == [
        0,
        1,
        0,
        1,
    ]
    assert sorted(robin.gpu_of_rank(8).tolist()) == list(range(8))
    for bad in (0, 9, True, 2.0):
        with pytest.raises(TopologyError, match="world_size"):
            block.gpu_of_rank(bad)


def test_routes_reject_gpus_that_do_not_exist():
    topo = topology.load("single-node-8gpu")
    with pytest.raises(TopologyError, match="dst_gpu"):
        topo.routes(np.array([0]), np.array([8]))
    with pytest.raises(TopologyError, match="src_gpu"):
        topo.routes(np.array([0.5]), np.array([1]))
    indptr, links = topo.routes(np.array([], dtype=int), np.array([], dtype=int))
    assert indptr.tolist() == [0] and links.size == 0


@pytest.mark.slow  # 150 topologies, about 2 s
@settings(max_examples=150, deadline=None)
@given(data=valid_dicts(), seed=st.integers(0, 2**32 - 1))
def test_valid_dicts_parse_and_every_route_runs_from_its_port_out_to_its_port_in(data, seed):
    topo = topology.parse(data)
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, topo.gpus, (2, 64))
    indptr, links = topo.routes(src, dst)
    assert indptr.shape == (65,) and indptr[0] == 0 and (np.diff(indptr) >= 0).all()
    assert ((links >= 0) & (links < len(topo.link_names))).all()
    for i, (s, d) in enumerate(zip(src, dst)):
        route = [topo.link_names[k] for k in links[indptr[i] : indptr[i + 1]]]
        assert route == reference_route(topo, s, d)
        (sn, sg), (dn, dg) = divmod(s, topo.gpus_per_node), divmod(d, topo.gpus_per_node)
        if s != d and sn == dn:  # inside a node: out of the GPU's port, into the other's
            assert route[0] == f"node{sn}.gpu{sg}.up" and route[-1] == f"node{dn}.gpu{dg}.down"
        elif s != d:  # between nodes: NIC to NIC (a PXN hop first on rails)
            assert route[-1].startswith(f"node{dn}.nic") and route[-1].endswith(".down")
    lat = topo.path_latency_s(src, dst)
    np.testing.assert_allclose(
        lat, [topo.latency_s[links[a:b]].sum() for a, b in zip(indptr, indptr[1:])]
    )
    # the writer round-trips
    assert topology.parse(tomllib.loads(topology.to_toml(topo.spec))).spec == topo.spec


@pytest.mark.parametrize("preset", ["dgx-h100", "ethernet-100g"])
def test_vectorised_routes_equal_the_reference_for_random_pairs(preset):
    for topo in (topology.load(preset), topology.parse(torus_example((3, 4, 2)))):
        rng = np.random.default_rng(0)
        src, dst = rng.integers(0, topo.gpus, (2, 2000))
        indptr, links = topo.routes(src, dst)
        for i, (s, d) in enumerate(zip(src, dst)):
            assert [
                topo.link_names[k] for k in links[indptr[i] : indptr[i + 1]]
            ] == reference_route(topo, s, d)


def test_a_rail_optimised_fabric_keeps_traffic_on_the_destinations_rail():
    """PXN: GPU 3 of node 0 to GPU 5 of node 1 goes over NVLink to GPU 5 of node 0 and out
    of NIC 5; to GPU 3 of node 1 straight out of its own NIC 3 (no NVLink port used)."""
    data = torus_example((2,), gpus_per_node=8)
    data["nic"] = {"count": 8, "bandwidth_gbit_per_s": 400, "latency_us": 1.0}
    data["network"] = {"kind": "rails", "latency_us": 0.5}
    topo = topology.parse(data)
    assert names_of(topo, 3, 13) == [
        "node0.gpu3.up",
        "node0.gpu5.down",
        "node0.nic5.up",
        "node1.nic5.down",
    ]
    assert names_of(topo, 3, 11) == ["node0.nic3.up", "node1.nic3.down"]
    assert not [n for n in topo.link_names if "spine" in n or "dim" in n]  # one switch per rail
