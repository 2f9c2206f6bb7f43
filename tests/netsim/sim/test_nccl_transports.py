"""The NCCL model between nodes and across sizes: each transport's per-message cost and
protocol rules worked by hand, the size ramp, NVLS by GPU generation, the tree ceiling that
only ranks, and RCCL for AMD Instinct."""

import numpy as np
import pytest

from netsim.cluster import topology, transports
from netsim.errors import InputError
from netsim.sim import nccl

GIB = 1 << 30


def two_nodes(transport: str, **nic) -> topology.Topology:
    """Two nodes of 8 hopper GPUs on NVSwitch (NVLS off), 8 NICs of 400 Gb/s, one switch:
    NIC pair 1.2 us + switch 0.3 us between nodes."""
    return topology.parse(
        {
            "name": f"2x8 H100, {transport}",
            "nodes": 2,
            "gpus_per_node": 8,
            "placement": "block",
            "gpu": "hopper",
            "cpu": "intel",
            "intra_node": {
                "kind": "all-to-all",
                "bandwidth_gbit_per_s": 3600,
                "efficiency": 0.824,
                "latency_us": 0.7,
                "multicast": False,
            },
            "nic": {
                "count": 8,
                "bandwidth_gbit_per_s": 400,
                "efficiency": 0.96,
                "latency_us": 1.2,
                "transport": transport,
                **nic,
            },
            "network": {"kind": "switch", "latency_us": 0.3, "in_network_reduction": True},
        }
    )


def one(topo, ranks, nbytes, algorithm="auto", protocol="auto", **kw):
    return nccl.estimates(topo, ranks, nbytes, algorithm, protocol, **kw)[0]


@pytest.mark.parametrize(
    "transport, message_us",
    [("infiniband", 0.0), ("efa", 10.0)],
)
def test_a_ring_of_8_bytes_costs_by_hand_what_its_transport_adds(transport, message_us):
    # tuning.cc, ring LL, 16 ranks on 2 nodes: base 6.6, 2(p-1) - 2(nodes-1) = 28 steps in
    # the nodes at max(NVLink 0.6, Intel's net overhead 1.0), 2 steps between nodes at
    # NCCL's 2.7 + the hardware (1.2 + 0.3) + the transport's message cost
    e = one(two_nodes(transport), 16, 8, "ring", "LL")
    hand_us = 6.6 + 28 * 1.0 + 2 * (2.7 + 1.5 + message_us)
    assert e.latency_s * 1e6 == pytest.approx(hand_us)
    assert e.time_s == pytest.approx(e.latency_s, rel=1e-3)  # 8 bytes: all latency
    assert e.channels == 1  # the ramp: 8 bytes run on one channel


def test_simple_pays_the_network_step_twice_as_tuning_cc_adds_its_flush():
    # tree Simple over TCPX, 2 nodes of 8: 8.4 + 2 (7 x 4.0 + 1 x (14 + 2 (1.5 + 35)))
    e = one(two_nodes("tcpx"), 16, 8, "tree", "Simple")
    assert e.latency_s * 1e6 == pytest.approx(8.4 + 2 * (7 * 4.0 + 14 + 2 * (1.5 + 35.0)))
    ib = one(two_nodes("infiniband"), 16, 8, "tree", "Simple")
    assert (e.latency_s - ib.latency_s) * 1e6 == pytest.approx(2 * 2 * 35.0)


def test_each_transport_allows_the_protocols_and_algorithms_nccl_runs_over_it():
    def pairs(transport):
        return set(nccl.available(two_nodes(transport), 16))

    assert ("ring", "LL128") in pairs("infiniband") and ("collnet", "Simple") in pairs("roce")
    for tcp in ("tcpx", "tcpxo"):  # Google's configurations: NCCL_PROTO=Simple, Ring,Tree
        assert pairs(tcp) == {("tree", "Simple"), ("ring", "Simple")}
    # EFA without ordered 128-byte writes (p4d): aws-ofi-nccl sets NCCL_PROTO=simple
    assert pairs("efa-unordered") == {("tree", "Simple"), ("ring", "Simple")}
    efa = pairs("efa")  # no SHARP switches: no CollNet, whatever the topology claims
    assert ("ring", "LL128") in efa and not any(a == "collnet" for a, _ in efa)
    with pytest.raises(InputError, match=r"no ring all-reduce with protocol LL128 .*tcpx"):
        one(two_nodes("tcpx"), 16, 1 << 20, "ring", "LL128")
    # one node never crosses the transport: LL128 on NVLink stays
    assert ("ring", "LL128") in nccl.available(two_nodes("tcpx"), 8)


def test_simple_only_makes_a_tcpx_megabyte_slower_than_infiniband_picks():
    ib = one(two_nodes("infiniband"), 16, 1 << 20, "ring")
    tcpx = one(two_nodes("tcpx"), 16, 1 << 20, "ring")
    assert ib.protocol != "Simple" and tcpx.protocol == "Simple"
    assert tcpx.time_s > 1.5 * ib.time_s


def test_every_transport_is_a_topology_key_with_infiniband_by_default():
    names = {"infiniband", "roce", "efa", "efa-unordered", "tcpx", "tcpxo", "socket"}
    assert set(transports.TRANSPORTS) == names
    assert transports.of(topology.load("dgx-h100").spec).name == "infiniband"
    assert transports.of(topology.load("a3-mega").spec).name == "tcpxo"
    with pytest.raises(topology.TopologyError, match="nic.transport must be one of"):
        two_nodes("carrier-pigeon")


SIZES = [1 << k for k in range(3, 35)]  # 8 B to 16 GiB


@pytest.mark.parametrize(
    "preset, ranks, algorithm, protocol",
    [
        ("hgx-h100", 8, "ring", "LL"),
        ("hgx-h100", 8, "ring", "LL128"),
        ("hgx-h100", 8, "ring", "Simple"),
        ("hgx-h100", 8, "nvls", "Simple"),
        ("dgx-h100", 32, "ring", "LL128"),
        ("mi300x", 8, "ring", "Simple"),
    ],
)
def test_the_ramp_never_lowers_busbw_and_meets_the_large_size_rate(
    preset, ranks, algorithm, protocol
):
    topo = topology.load(preset)
    rows = [one(topo, ranks, n, algorithm, protocol) for n in SIZES]
    busbw = np.array([e.busbw_bytes_per_s for e in rows])
    assert np.all(np.diff(busbw) >= -1e-9 * busbw[1:])  # monotone, as NCCL's own model
    channels = [e.channels for e in rows]
    assert channels == sorted(channels)  # NVLS runs its own count at every size
    assert channels[0] == (1 if algorithm != "nvls" else ranks)
    assert channels[-1] == nccl.default_channels(topo, ranks, algorithm)
    big = busbw[np.array(SIZES) >= GIB]
    assert np.all(big >= 0.9 * busbw[-1])  # above 1 GiB: within 10% of the large-size rate


def test_a_megabyte_runs_on_the_channels_nccls_thresholds_give():
    # Simple: 512 threads x 64 bytes = 32 KiB a channel; 1 MiB keeps 24 of 24 on HGX H100,
    # 256 KiB 8 of them, 8 bytes one with its threads halved down to 64 (the first count
    # not a multiple of 128 stops the halving); ring LL's threshold is x ranks
    topo = topology.load("hgx-h100")
    assert nccl.ramp(topo, 8, 1 << 20, "ring", "Simple", 24) == (24, 512)
    assert nccl.ramp(topo, 8, 256 << 10, "ring", "Simple", 24) == (8, 512)
    assert nccl.ramp(topo, 8, 8, "ring", "LL", 24) == (1, 64)
    full = one(topo, 8, 64 << 20, "ring", "Simple")
    part = one(topo, 8, 64 << 20, "ring", "Simple", channels=48)
    assert full.channels == 24 and part.channels == 48


def test_nvls_comes_with_the_gpu_generation_unless_the_topology_says_otherwise():
    def node(gpu, **intra):
        spec = {
            "name": "n",
            "nodes": 1,
            "gpus_per_node": 8,
            "placement": "block",
            "gpu": gpu,
            "intra_node": {"kind": "all-to-all", "bandwidth_gbit_per_s": 3600, "latency_us": 1}
            | intra,
        }
        return topology.parse(spec)

    for gpu in ("hopper", "blackwell"):
        assert node(gpu).spec["intra_node"]["multicast"] is True
        assert ("nvls", "Simple") in nccl.available(node(gpu), 8)
    for gpu in ("volta", "ampere", "cdna3"):
        assert ("nvls", "Simple") not in nccl.available(node(gpu), 8)
    assert ("nvls", "Simple") not in nccl.available(node("hopper", multicast=False), 8)
    assert not topology.load("dgx-h100").spec["intra_node"]["multicast"]  # says false


def test_the_tree_ceiling_ranks_but_does_not_cap_what_the_links_carry():
    # one channel: NCCL's per-channel tree ceiling (41.4 GB/s on 2 Hopper nodes) would
    # hold a forced tree far under what 8 NICs carry; it ranks the tree, it does not run it
    e = one(two_nodes("infiniband"), 16, 8 * GIB, "tree", "Simple", channels=1)
    assert e.busbw_bytes_per_s / 1e9 > 1.5 * 41.4
    assert e.model_s > 2 * e.time_s


def test_amd_instinct_is_a_family_with_rccls_tables():
    one_node, two = topology.load("mi300x"), topology.load("mi300x-roce-2node")
    assert nccl.library(one_node) == "RCCL" and nccl.library(topology.load("hgx-h100")) == "NCCL"
    pairs = nccl.available(one_node, 8)
    assert not any(p == "LL128" for _, p in pairs)  # off on gfx942/gfx950
    assert ("tree", "Simple") not in pairs and ("tree", "Simple") in nccl.available(two, 16)
    assert not any(a in ("nvls", "nvls-tree", "collnet") for a, _ in pairs)
    e = one(one_node, 8, 8, "ring", "LL")
    assert e.library == "RCCL" and e.latency_s * 1e6 == pytest.approx(12.0 + 14 * 0.8)
    # xGMI: 7 links x 64 GB/s, RCCL counts 48 of 64: a ring at 8 GiB near 7 x 48 = 336
    big = one(one_node, 8, 8 * GIB, "ring", "Simple")
    assert big.busbw_bytes_per_s / 1e9 == pytest.approx(336, rel=0.02)
    assert big.to_dict()["library"] == "RCCL"
