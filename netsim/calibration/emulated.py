"""An emulated cluster as a topology: K copies of a calibrated node joined by the links
`python -m launch.emulate` made (their description is the run directory's network.json).

An emulated node is a network namespace on this one machine, so:
- inside a node, ranks move data as they do on the calibrated machine (MPICH's shared
  memory): its intra_node and [compute] tables, with the machine's shared resources (the
  memory fabric's aggregate bandwidth, the last-level cache, the cores) split over the K
  nodes, because all of them run on the same ones (the emulator gives each node its share
  of the CPUs, launch.hop.split_cpus; with more nodes than cores, nodes share one);
- between nodes, TCP over a veth link that tbf caps at the emulated rate. tbf counts whole
  frames, so the payload moves at rate x (MTU - 52) / (MTU + 14): 52 bytes of IPv4, TCP and
  TCP timestamp headers per segment, 14 of Ethernet header per frame (1448 / 1514 = 95.6%
  at MTU 1500). The NIC's latency is the one-way time of a 1-byte TCP message that the
  emulator measured between two of its nodes (no netem here: links add none of their own);
  MPI's cost per message is already the machine's message_overhead_us.
- a fat-tree's leaves meet through uplinks of the emulated rate.
"""

from __future__ import annotations

import copy
import math

from netsim.cluster import topology as topologies
from netsim.errors import InputError
from netsim.record import rundir

TCP_IP_HEADERS = 52  # IPv4 20 + TCP 20 + timestamps option 12 (Linux's default)
ETHERNET_HEADER = 14  # counted by tbf on a veth (the frame as handed to the device)


def payload_share(mtu: int) -> float:
    """The share of a capped link's bytes that is TCP payload, full-sized segments."""
    return (mtu - TCP_IP_HEADERS) / (mtu + ETHERNET_HEADER)


def network_of(run_dir) -> dict | None:
    """The run's emulated network (network.json's "emulated"), or None for real hosts."""
    found = rundir.network(str(run_dir))
    return None if found is None else found["emulated"]


def topology(machine, emulated: dict):
    """The topology of an emulated run: `machine` (a calibrated one-node topology, with a
    [compute] table) K times, joined by the emulated links."""
    if machine.nodes != 1 or "compute" not in machine.spec:
        raise InputError(
            f"an emulated run is modelled on a calibrated machine (python -m netsim calibrate): "
            f"{machine.name!r} is not one"
        )
    k, g = int(emulated["nodes"]), int(emulated["ranks_per_node"])
    spec = copy.deepcopy(machine.spec)
    spec.pop("gpu", None)
    spec.update(name=f"{k} emulated nodes x {g} of {machine.name!r}", nodes=k, gpus_per_node=g)
    spec["placement"] = "block"
    intra = spec["intra_node"]
    for key in ("aggregate_bandwidth_gbit_per_s", "cache_bytes"):  # shared by every node
        if key in intra:
            intra[key] = intra[key] / k if key != "cache_bytes" else int(intra[key] // k)
    compute = spec["compute"]
    cores = int(compute.get("cores", k * g))
    per_node = max(1, cores // k)
    # all k * g ranks share the machine's cores: stretch what ceil(g / per_node) misses
    stretch = math.ceil(k * g / cores) / math.ceil(g / per_node)
    compute["cores"] = per_node
    if "message_overhead_us" in compute:
        compute["message_overhead_us"] *= stretch
    if "reduce_gbyte_per_s" in compute:
        compute["reduce_gbyte_per_s"] /= stretch
    rate_gbit = emulated["node_mbit_per_s"] / 1000 * payload_share(int(emulated["mtu"]))
    latency = emulated.get("tcp_latency_us")
    spec["nic"] = {"count": 1, "bandwidth_gbit_per_s": rate_gbit, "latency_us": latency or 0.0}
    uplink, per_leaf = emulated.get("uplink_mbit_per_s"), int(emulated["nodes_per_leaf"])
    if uplink and per_leaf < k:
        spec["network"] = {
            "kind": "fat-tree",
            "latency_us": 0.0,
            "nodes_per_leaf": per_leaf,
            "oversubscription": per_leaf * emulated["node_mbit_per_s"] / uplink,
        }
    else:
        spec["network"] = {"kind": "switch", "latency_us": 0.0}
    return topologies.parse(spec, f"{machine.name} (emulated)")
