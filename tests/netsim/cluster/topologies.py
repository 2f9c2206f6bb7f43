"""Topology descriptions for the cluster tests: a hand-made torus, the names of a route's links,
and random valid descriptions of every kind for the property tests."""

import math

import numpy as np
from hypothesis import strategies as st


def names_of(topo, src, dst):
    indptr, links = topo.routes(np.array([src]), np.array([dst]))
    return [topo.link_names[i] for i in links[indptr[0] : indptr[1]]]


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
        "kind": draw(st.sampled_from(["switch", "rails", "fat-tree", "ring", "torus"])),
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
