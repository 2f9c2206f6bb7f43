"""Topologies: presets, validation, and routes checked against a per-flow reference router
that builds every route from link NAMES (so the id arithmetic is checked, not restated)."""

import math
import re
import time
import tomllib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsim.cluster import topology
from netsim.cluster.topology import TopologyError


def names_of(topo, src, dst):
    indptr, links = topo.routes(np.array([src]), np.array([dst]))
    return [topo.link_names[i] for i in links[indptr[0] : indptr[1]]]


def reference_route(topo, src, dst):
    """The route of one flow, written the obvious way, one hop at a time."""
    spec, gpn = topo.spec, topo.gpus_per_node
    (sn, sg), (dn, dg) = divmod(src, gpn), divmod(dst, gpn)
    if src == dst:
        return []
    route = [f"node{sn}.gpu{sg}.up"]
    if sn == dn:
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
    return route + [f"node{dn}.nic{dg * count // gpn}.down", f"node{dn}.gpu{dg}.down"]


def torus_example(dims=(4, 4), gpus_per_node=2):
    return {
        "name": "torus",
        "nodes": math.prod(dims),
        "gpus_per_node": gpus_per_node,
        "placement": "block",
        "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 800, "latency_us": 1},
        "nic": {"count": 1, "bandwidth_gbit_per_s": 100, "latency_us": 2},
        "network": {"kind": "torus", "latency_us": 0.5, "dims": list(dims)},
    }


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
        assert names_of(dgx, 3, 8 + 6) == [
            "node0.gpu3.up",
            "node0.nic3.up",
            "node1.nic6.down",
            "node1.gpu6.down",
        ]
        # node 0 -> node 4: leaf 0 -> leaf 1
        assert names_of(dgx, 0, 4 * 8 + 1) == [
            "node0.gpu0.up",
            "node0.nic0.up",
            "leaf0.spine.up",
            "leaf1.spine.down",
            "node4.nic1.down",
            "node4.gpu1.down",
        ]
        spine = dgx.bandwidth_bytes_per_s[dgx.link_names.index("leaf0.spine.up")]
        assert spine == pytest.approx(spine_gbit * 1e9 / 8)
        lat = dgx.path_latency_s([3, 0], [14, 33])
        np.testing.assert_allclose(
            lat, [(0.7 + 1.2 + 0.3) * 1e-6, (0.7 + 1.2 + 3 * 0.3) * 1e-6], rtol=1e-12
        )
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
    assert names_of(eth, 2, 4) == [
        "node0.gpu2.up",
        "node0.nic0.up",
        "node1.nic0.down",
        "node1.gpu0.down",
    ]
    np.testing.assert_allclose(
        eth.path_latency_s([0, 0, 2], [1, 2, 4]),
        [0.15e-6, 0.45e-6, (0.15 + 2.0 + 0.5) * 1e-6],
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
        "node0.gpu0.up",
        "node0.nic0.up",
        "node0.dim0+",
        "node4.dim0+",
        "node8.dim1-",
        "node11.nic0.down",
        "node11.gpu0.down",
    ]
    assert topo.path_latency_s([0], [11])[0] == pytest.approx((1 + 2 + 3 * 0.5) * 1e-6)


def test_ring_is_a_one_dimensional_torus():
    data = torus_example((5,))
    data["network"] = {"kind": "ring", "latency_us": 0.5}
    ring = topology.parse(data)
    # node 0 -> node 3 of 5: three steps forward or two back
    assert names_of(ring, 0, 2 * 3) == [
        "node0.gpu0.up",
        "node0.nic0.up",
        "node0.dim0-",
        "node4.dim0-",
        "node3.nic0.down",
        "node3.gpu0.down",
    ]
    # node 0 -> node 2 of 4 is a tie: the + way
    data = torus_example((4,))
    data["network"] = {"kind": "ring", "latency_us": 0.5}
    assert names_of(topology.parse(data), 0, 2 * 2)[2:4] == ["node0.dim0+", "node1.dim0+"]


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


# ---------------------------------------------------------------- valid descriptions, random


def positive():
    return st.one_of(st.integers(1, 10_000), st.floats(1e-3, 1e4))


def non_negative():
    return st.one_of(st.integers(0, 100), st.floats(0, 100))


@st.composite
def valid_dicts(draw):
    gpn = draw(st.integers(1, 8))
    intra = {
        "kind": draw(st.sampled_from(["all-to-all", "pcie-tree"])),
        "bandwidth_gbit_per_s": draw(positive()),
        "latency_us": draw(non_negative()),
    }
    if intra["kind"] == "pcie-tree":
        intra["gpus_per_switch"] = draw(
            st.sampled_from([d for d in range(1, gpn + 1) if gpn % d == 0])
        )
        intra["uplink_bandwidth_gbit_per_s"] = draw(positive())
    elif draw(st.booleans()):
        intra["aggregate_bandwidth_gbit_per_s"] = draw(positive())
        if draw(st.booleans()):
            intra["cache_bytes"] = draw(st.integers(1, 2**40))
            intra["cache_bandwidth_gbit_per_s"] = draw(positive())
    net = {
        "kind": draw(st.sampled_from(["switch", "fat-tree", "ring", "torus"])),
        "latency_us": draw(non_negative()),
    }
    if net["kind"] == "fat-tree":
        net["nodes_per_leaf"] = draw(st.integers(1, 4))
        net["oversubscription"] = draw(st.one_of(st.integers(1, 4), st.floats(1, 8)))
        nodes = net["nodes_per_leaf"] * draw(st.integers(1, 4))
    elif net["kind"] == "torus":
        net["dims"] = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
        nodes = math.prod(net["dims"])
    else:
        nodes = draw(st.integers(1, 9))
    data = {
        "name": draw(st.text(max_size=10)),
        "nodes": nodes,
        "gpus_per_node": gpn,
        "placement": draw(st.sampled_from(["block", "round-robin"])),
        "intra_node": intra,
        "nic": {
            "count": draw(st.integers(1, gpn)),
            "bandwidth_gbit_per_s": draw(positive()),
            "latency_us": draw(non_negative()),
        },
        "network": net,
    }
    if nodes == 1 and draw(st.booleans()):
        del data["nic"], data["network"]
    if draw(st.booleans()):
        data["compute"] = {
            "cores": draw(st.integers(1, 64)),
            "message_overhead_us": draw(non_negative()),
            "reduce_gbyte_per_s": draw(positive()),
        }
    return data


@settings(max_examples=150, deadline=None)
@given(data=valid_dicts(), seed=st.integers(0, 2**32 - 1))
def test_valid_dicts_parse_and_every_route_runs_from_up_link_to_down_link(data, seed):
    topo = topology.parse(data)
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, topo.gpus, (2, 64))
    indptr, links = topo.routes(src, dst)
    assert indptr.shape == (65,) and indptr[0] == 0 and (np.diff(indptr) >= 0).all()
    assert ((links >= 0) & (links < len(topo.link_names))).all()
    for i, (s, d) in enumerate(zip(src, dst)):
        route = [topo.link_names[k] for k in links[indptr[i] : indptr[i + 1]]]
        assert route == reference_route(topo, s, d)
        if s != d:
            assert route[0] == f"node{s // topo.gpus_per_node}.gpu{s % topo.gpus_per_node}.up"
            assert route[-1] == f"node{d // topo.gpus_per_node}.gpu{d % topo.gpus_per_node}.down"
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


# ---------------------------------------------------------------- invalid descriptions, random


def bad_values(key, data):
    nodes, gpn = data["nodes"], data["gpus_per_node"]
    numbers = {
        "bandwidth_gbit_per_s": [0, -5, "fast", True, float("nan"), float("inf")],
        "latency_us": [-1, -0.5, "slow", False, float("nan")],
        "oversubscription": [0.5, 0, "2:1", True],
    }
    numbers["uplink_bandwidth_gbit_per_s"] = numbers["bandwidth_gbit_per_s"]
    numbers["aggregate_bandwidth_gbit_per_s"] = numbers["bandwidth_gbit_per_s"]
    numbers["cache_bandwidth_gbit_per_s"] = numbers["reduce_gbyte_per_s"] = numbers[
        "bandwidth_gbit_per_s"
    ]
    numbers["message_overhead_us"] = numbers["latency_us"]
    counts = {
        "nodes": [0, -2, 2.5, "4", True],
        "gpus_per_node": [0, -1, 1.5, "8", False],
        "cores": [0, -1, 1.5, "2", True],
        "cache_bytes": [0, -1, 2.5, "32M"],
        "count": [0, -1, 1.5, "2", gpn + 1],
        "gpus_per_switch": [0, gpn + 1, "2"],
        "nodes_per_leaf": [0, nodes + 1, 2.0],
    }
    other = {
        "name": [3, True, ["x"]],
        "placement": ["diagonal", 1],
        "kind": ["mesh", 7, ["switch"]],
        "dims": [[], [0], [nodes, 2], "4x4", [True], [1.5]],
        "intra_node": [5, "x", [1]],
        "nic": [5, "x"],
        "network": [True, "switch"],
        "compute": [2, "fast"],
    }
    return {**numbers, **counts, **other}[key]


def leaf_paths(data):
    for key, value in data.items():
        yield (key,)
        if isinstance(value, dict):
            yield from ((key, sub) for sub in value)


def misspell(key, draw):
    i = draw(st.integers(0, len(key) - 1))
    how = draw(st.sampled_from(["drop", "double", "swap", "case"]))
    if how == "drop" and len(key) > 1:
        return key[:i] + key[i + 1 :]
    if how == "swap" and i + 1 < len(key) and key[i] != key[i + 1]:
        return key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    if how == "case":
        return key.upper()
    return key[:i] + key[i] + key[i:]


@st.composite
def invalid_dicts(draw):
    """(dict, the key path its error must name): one key corrupted, removed or misspelt."""
    data = draw(valid_dicts())
    path = draw(st.sampled_from(list(leaf_paths(data))))
    table = data if len(path) == 1 else data[path[0]]
    key = path[-1]
    optional = {("compute",), *(("compute", k) for k in data.get("compute", {}))}
    if "cache_bytes" not in data["intra_node"]:  # the cache needs the fabric; alone it is optional
        optional.add(("intra_node", "aggregate_bandwidth_gbit_per_s"))
    removable = path not in {("nic",), ("network",)} or data["nodes"] > 1
    removable = removable and path not in optional
    how = draw(
        st.sampled_from(["corrupt", "remove", "misspell"] if removable else ["corrupt", "misspell"])
    )
    if how == "corrupt":
        table[key] = draw(st.sampled_from(bad_values(key, data)))
    elif how == "remove":
        del table[key]
    else:
        new = misspell(key, draw)
        table[new] = table.pop(key)
        path = path[:-1] + (new,)
    return data, ".".join(path)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=invalid_dicts())
def test_invalid_dicts_name_the_key_in_one_line(case):
    data, path = case
    with pytest.raises(TopologyError) as err:
        topology.parse(data, "cluster.toml")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("cluster.toml: ")
    assert re.match(rf"{re.escape(path)}\b", message.removeprefix("cluster.toml: ")), (
        path,
        message,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {
                "network": {
                    "kind": "fat-tree",
                    "latency_us": 1,
                    "nodes_per_leaf": 4,
                    "oversubscription": 0.5,
                }
            },
            "network.oversubscription must be >= 1, got 0.5",
        ),
        (
            {"intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": -5, "latency_us": 1}},
            "intra_node.bandwidth_gbit_per_s must be positive, got -5",
        ),
        (
            {"network": {"kind": "torus", "latency_us": 1, "dims": [3, 3]}},
            "network.dims must multiply to nodes = 16",
        ),
        (
            {"network": {"kind": "switch", "latency_us": 1, "dims": [4, 4]}},
            "network.dims does not apply",
        ),
        (
            {"network": {"kind": "torus", "latency_us": 1, "dimz": [4, 4]}},
            "network.dimz is not a known key (did you mean 'dims'?)",
        ),
        (
            {
                "network": {
                    "kind": "fat-tree",
                    "latency_us": 1,
                    "nodes_per_leaf": 3,
                    "oversubscription": 1,
                }
            },
            "network.nodes_per_leaf must divide nodes = 16, got 3",
        ),
        (
            {"network": {"kind": "torus", "latency_us": 1}},
            "network.dims is missing (needed by network.kind = 'torus')",
        ),
        (
            {"intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": True, "latency_us": 1}},
            "intra_node.bandwidth_gbit_per_s must be a finite number, got True",
        ),
        ({"nodez": 16}, "nodez is not a known key (did you mean 'nodes'?)"),
        (
            {"nic": {"count": 3, "bandwidth_gbit_per_s": 100, "latency_us": 1}},
            "nic.count must be <= gpus_per_node = 2",
        ),
    ],
)
def test_error_messages_read_well(change, message):
    with pytest.raises(TopologyError) as err:
        topology.parse({**torus_example((4, 4)), **change})
    assert str(err.value).startswith("<dict>: " + message)


def test_files_that_are_not_toml_or_not_there(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "x"\nnodes = = 4\n')
    with pytest.raises(TopologyError, match=r"broken\.toml: not valid TOML: .*line 2") as err:
        topology.load(str(broken))
    assert "\n" not in str(err.value)
    with pytest.raises(TopologyError, match="missing.toml"):
        topology.load(str(tmp_path / "missing.toml"))
    with pytest.raises(TopologyError, match="dgx-h100"):
        topology.load("no-such-preset")
    good = tmp_path / "good.toml"
    good.write_text(topology.to_toml(topology.load("ethernet-100g").spec))
    assert topology.load(str(good)).spec == topology.load("ethernet-100g").spec


# ---------------------------------------------------------------- speed (printed, not asserted)


def test_routing_speed_on_1024_nodes_of_8_gpus():
    fat = topology.load("dgx-h100").spec
    fat = {**fat, "nodes": 1024, "network": {**fat["network"], "nodes_per_leaf": 8}}
    for data in (fat, {**torus_example((32, 32), gpus_per_node=8), "nic": fat["nic"]}):
        topo = topology.parse(data)
        rng = np.random.default_rng(1)
        src, dst = rng.integers(0, topo.gpus, (2, 8192))
        topo.routes(src, dst)  # warm-up: builds the cached layout
        start = time.perf_counter()
        repeats = 20
        for _ in range(repeats):
            indptr, links = topo.routes(src, dst)
        ms = (time.perf_counter() - start) / repeats * 1e3
        print(
            f"\nrouting 8,192 flows on {topo.nodes} nodes x {topo.gpus_per_node} GPUs "
            f"({data['network']['kind']}): {ms:.2f} ms per call, {len(links) / 8192:.1f} links "
            "per flow"
        )


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
