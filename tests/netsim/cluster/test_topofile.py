"""The topology TOML format: every invalid description, random or hand-made, is refused in one
line that names the key at fault; files that are not TOML or not there likewise."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsim.cluster import topology
from netsim.cluster.topology import TopologyError

from topologies import torus_example, valid_dicts

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


@pytest.mark.slow
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
        (
            {"gpu": "pascal"},
            "gpu must be one of volta, ampere, hopper, blackwell, cdna3, cdna4, got 'pascal'",
        ),
        (
            {
                "intra_node": {
                    "kind": "all-to-all",
                    "bandwidth_gbit_per_s": 100,
                    "latency_us": 1,
                    "efficiency": 1.2,
                }
            },
            "intra_node.efficiency must be in (0, 1], got 1.2",
        ),
        (
            {"network": {"kind": "switch", "latency_us": 1, "in_network_reduction": "yes"}},
            "network.in_network_reduction must be true or false",
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
