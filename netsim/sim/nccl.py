"""NCCL on a modelled cluster: what `all_reduce_perf` of nccl-tests would measure.

NCCL picks an algorithm and a protocol for every call from its own model (src/graph/
tuning.cc): time = latency + bytes / bandwidth, where the latency is a base plus a cost per
hop (NVLink, PCI or network, by algorithm and protocol) and the bandwidth is what its graph
search found for the links, cut by the protocol (LL moves 8 bytes of data per 16, LL128 120
per 128) and by per-channel ceilings measured on each GPU generation. This module is that
model with one change: the bandwidth comes from netsim's own links. An algorithm's bytes are
laid on the topology's links (its schedule with C channels, or, in the switches, the bytes
its definition says), and its data time is that of the busiest link: NCCL pipelines every
algorithm in small chunks, so all its links are busy at once. NCCL's refinements then apply
on top, as tuning.cc writes them, with the constants of netsim.sim.nccl_tables.

    NCCL name   netsim algorithm      protocols            needs
    ring        ring (C channels)     LL, LL128, Simple    -
    tree        double-binary-tree    LL, LL128, Simple    -
    nvls        nvls                  Simple               multicast, 1 node, hopper+
    nvls-tree   nvls-tree             Simple               multicast, > 1 node, hopper+
    collnet     collnet               Simple               in_network_reduction, > 1 node

LL128 needs NVLink inside the node (tuning.cc enables it on NVB paths only). nccl-tests
launches each call's kernels from one thread per process, so a process driving G GPUs
(`-g G`) cannot go faster than G launches per call (LAUNCH_US each): time = max(NCCL's
time, G x launch), the floor of single-process runs at small sizes.

Channels default to what NCCL's graph search finds (search.cc): between nodes one channel
per NIC at its speed step; in a node as many channels of the highest speed step as the
GPU's NVLink bandwidth holds; doubled (ncclTopoDupChannels) where a channel runs at >= 25
GB/s, unless on Hopper and later it runs below 50 with more than 4 channels. NVLS uses one
channel per GPU of the node, CollNet one per NIC.

Not modelled: tuning.cc's 0.85 for trees of pattern TREE (multi-node NCCL builds BALANCED
trees), the nChannels NCCL cuts for small messages (threadThresholds), and the time NCCL
spends on one call's host side other than the launch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from netsim import algorithms
from netsim.algorithms import cost
from netsim.errors import InputError

from . import nccl_tables as T

ALGORITHMS = {
    "ring": "ring",
    "tree": "double-binary-tree",
    "nvls": "nvls",
    "nvls-tree": "nvls-tree",
    "collnet": "collnet",
}
ITEMSIZE = 4  # float32, as nccl-tests' default


@dataclass(frozen=True)
class Estimate:
    """One algorithm and protocol for one size: NCCL's time and its parts."""

    algorithm: str  # NCCL's name
    protocol: str
    channels: int
    nbytes: int
    ranks: int
    latency_s: float
    data_s: float  # the bytes at the protocol's share of the busiest link
    time_s: float  # max(latency + data, launch floor): what nccl-tests reports
    bottleneck: str  # the busiest link, or the NCCL ceiling that binds first
    simulated_only: bool  # the switches add: no MPI here runs it

    @property
    def algbw_bytes_per_s(self) -> float:
        return self.nbytes / self.time_s if self.time_s > 0 else math.inf

    @property
    def busbw_bytes_per_s(self) -> float:  # nccl-tests' definition, for every algorithm
        return algorithms.busbw(self.algbw_bytes_per_s, self.ranks)

    def to_dict(self) -> dict:  # what `python -m netsim nccl --json` prints
        bandwidths = {"algbw_bytes_per_s": self.algbw_bytes_per_s}
        return {**asdict(self), **bandwidths, "busbw_bytes_per_s": self.busbw_bytes_per_s}


@dataclass(frozen=True)
class _Machine:
    gen: int
    cpu: str
    nodes: int
    ppn: float
    nvlink: bool
    column: int  # of NCCL's tables: 1 node, 2 nodes, more


def _machine(topology, ranks: int) -> _Machine:
    gpu = topology.spec.get("gpu")
    if gpu is None:
        raise InputError(
            f'topology "{topology.name}" has no gpu (one of {", ".join(T.GEN)}): the NCCL '
            f"model reads NCCL's tables by GPU generation"
        )
    nodes = len(np.unique(topology.node_of_rank(ranks)))
    return _Machine(
        T.GEN[gpu],
        topology.spec.get("cpu", "intel"),
        nodes,
        ranks / nodes,
        topology.spec["intra_node"]["kind"] == "all-to-all",
        min(nodes, 3) - 1,
    )


def available(topology, ranks: int) -> list[tuple[str, str]]:
    """The (algorithm, protocol) pairs NCCL would consider here, in its order."""
    m = _machine(topology, ranks)
    spec = topology.spec
    multicast = bool(spec["intra_node"].get("multicast")) and m.gen >= T.GEN["hopper"]
    sharp = bool(spec.get("network", {}).get("in_network_reduction")) and m.nvlink
    out = [(a, p) for a in ("tree", "ring") for p in T.PROTOCOLS if p != "LL128" or m.nvlink]
    if multicast and m.nodes == 1:
        out.append(("nvls", "Simple"))
    if multicast and m.nodes > 1:
        out.append(("nvls-tree", "Simple"))
    if sharp and m.nodes > 1:
        out.append(("collnet", "Simple"))
    return out


def default_channels(topology, ranks: int, algorithm: str) -> int:
    """NCCL's channel count for the algorithm here (see the module's text); a topology
    without gpu reads the speed steps of the GPUs before Hopper."""
    gen = T.GEN.get(topology.spec.get("gpu"), T.GEN["ampere"])
    nodes = len(np.unique(topology.node_of_rank(ranks)))
    per_node = ranks // nodes
    nics = topology.spec.get("nic", {}).get("count", 0)
    if algorithm in ("nvls", "nvls-tree"):
        return per_node
    if algorithm == "collnet":
        return max(1, min(per_node, nics))
    intra = topology.spec["intra_node"]
    if nodes == 1:
        bw = intra["bandwidth_gbit_per_s"] / 8 * intra.get("efficiency", 1.0)
        speed = _step(T.SPEEDS_INTRA[gen], bw)
        count = max(1, int(bw // speed))
    else:
        nic = topology.spec["nic"]
        speed = _step(
            T.SPEEDS_INTER[gen], nic["bandwidth_gbit_per_s"] / 8 * nic.get("efficiency", 1.0)
        )
        count = nics
    late = gen >= T.GEN["hopper"] and speed < 50 and count > 4
    return min(2 * count, 32) if speed >= 25 and not late else count


def _step(speeds, bw: float) -> float:
    return next((s for s in speeds if s <= bw), speeds[-1])


def estimates(
    topology,
    ranks: int,
    nbytes: int,
    algorithm: str = "auto",
    protocol: str = "auto",
    channels: int | None = None,
    gpus_per_thread: int = 1,
) -> list[Estimate]:
    """Every (algorithm, protocol) asked for that NCCL would consider, in the order NCCL's
    model ranks them (latency + data, before the launch floor): the first is its pick."""
    pairs = [
        (a, p)
        for a, p in available(topology, ranks)
        if algorithm in ("auto", a) and protocol in ("auto", p)
    ]
    if not pairs:
        raise InputError(
            f"NCCL has no {algorithm} all-reduce with protocol {protocol} on "
            f'{ranks} ranks of "{topology.name}" (available: '
            f"{', '.join(f'{a}/{p}' for a, p in available(topology, ranks))})"
        )
    loads = {}
    out = []
    for a, p in pairs:
        c = channels or default_channels(topology, ranks, a)
        if (a, c) not in loads:
            loads[a, c] = _per_byte_loads(topology, ranks, a, c)
        out.append(_estimate(topology, ranks, nbytes, a, p, c, loads[a, c], gpus_per_thread))
    return sorted(out, key=lambda e: e.latency_s + e.data_s)


def _per_byte_loads(topology, ranks: int, algorithm: str, channels: int) -> np.ndarray:
    """Bytes on each link per byte of buffer (loads grow linearly with the buffer)."""
    alg = algorithms.get(ALGORITHMS[algorithm])
    if not alg.scheduled:
        return alg.link_bytes(topology, ranks, 1.0)
    nelems = ranks * channels * 64  # every chunk whole: no rounding in the loads
    schedule = alg.schedule(ranks, nelems, topology.node_of_rank(ranks), channels=channels)
    return cost.link_bytes(schedule, topology, ITEMSIZE) / (nelems * ITEMSIZE)


def _estimate(topology, ranks, nbytes, a, p, c, loads, gpus_per_thread) -> Estimate:
    m = _machine(topology, ranks)
    proto = T.PROTOCOLS.index(p)
    bandwidth = topology.bandwidth_bytes_per_s.copy()
    if a in ("nvls", "nvls-tree"):  # NVLS moves its data at a share of NVLink's rate
        bandwidth[_nvlink_links(topology)] *= T.NVLS_EFFICIENCY[m.gen]
    seconds_per_byte = loads / bandwidth
    link = int(np.argmax(seconds_per_byte))
    raw_s = float(seconds_per_byte[link]) * nbytes
    # NCCL's bus bandwidth (GB/s): its bytes per rank over the time; ring and NVLS count
    # 2(p-1)/p of the buffer, tree and CollNet 2 (tuning.cc: "ratio")
    ratio = 2 * (ranks - 1) / ranks if a in ("ring", "nvls", "nvls-tree") else 2.0
    bus = ratio * nbytes / raw_s / 1e9 if raw_s > 0 else math.inf
    bus, limit = _refine(bus, a, proto, c, m)
    data_s = ratio * nbytes / (bus * 1e9) if nbytes else 0.0
    log_size = int(nbytes >> 6).bit_length() - 1
    if a == "tree" and 0 <= log_size < 23:
        data_s /= T.TREE_CORRECTION[proto][log_size]
    latency_s = _latency_us(a, proto, c, m, ranks, nbytes) * 1e-6
    floor_s = T.LAUNCH_US * 1e-6 * gpus_per_thread
    return Estimate(
        a,
        p,
        c,
        nbytes,
        ranks,
        latency_s,
        data_s,
        max(latency_s + data_s, floor_s),
        limit or topology.link_names[link],
        not algorithms.get(ALGORITHMS[a]).runs_over_mpi,
    )


def _nvlink_links(topology) -> np.ndarray:
    return np.array([".gpu" in name for name in topology.link_names])


def _refine(bus: float, a: str, proto: int, c: int, m: _Machine) -> tuple[float, str]:
    """tuning.cc's refinements of the bus bandwidth, by algorithm and protocol, and the
    ceiling that bounds it ("" where the links do)."""
    col, limit = m.column, ""
    ll_row = m.gen if m.nodes == 1 else (1 if m.cpu == "amd" else 0)
    ll_max = T.LL_MAX_BW[ll_row][col]

    def cap(value: float, ceiling: float, name: str) -> float:
        nonlocal limit
        if ceiling < value:
            limit = f"NCCL's {name} ceiling, {ceiling:g} GB/s"
            return ceiling
        return value

    if a == "ring" and proto == T.LL:
        bus = cap(bus * 0.5, ll_max, "LL")
    if a == "ring" and proto == T.LL128:
        bus = cap(bus * 0.92, c * T.PER_CHANNEL_RING_LL128[m.gen][col], "per-channel LL128")
    if a == "tree":
        bus = cap(bus * 0.92, c * T.PER_CHANNEL_TREE[m.gen][col], "per-channel tree")
        if proto == T.LL:
            bus = cap(bus / 3.8, ll_max, "LL")
        if proto == T.LL128:
            share = 7.0 / 9.0 if m.nodes == 1 else 120.0 / 128.0
            bus = cap(bus * share, c * T.PER_CHANNEL_TREE_LL128[m.gen][col], "per-channel LL128")
    if a == "nvls-tree" and T.PER_CHANNEL_NVLS_TREE[m.gen][col] > 0:
        bus = cap(bus, c * T.PER_CHANNEL_NVLS_TREE[m.gen][col], "per-channel NVLS tree")
    if a == "collnet":
        factor = m.ppn / c  # GPUs per NIC: CollNetDirect wants a NIC per GPU
        bus /= factor - (factor - 1) / 2
        if m.gen >= T.GEN["hopper"]:
            bus *= 0.85
    return bus, limit


def _latency_us(a: str, proto: int, c: int, m: _Machine, ranks: int, nbytes: int) -> float:
    """tuning.cc's latency of one all-reduce (ncclTopoTuneModel, ncclTopoGetAlgoTime)."""
    base = T.BASE_US[a][proto]
    intra = T.HW_US["nvlink" if m.nvlink else "pci"][a][proto]
    inter = T.HW_US["net"]["tree" if m.ppn == 1 else a][proto]
    log_nodes = m.nodes.bit_length() - 1
    per_node = ranks // m.nodes
    if a == "ring":
        if m.nodes > 1:  # rings between nodes post a network operation every step
            intra = max(intra, T.NET_OVERHEAD_US[m.cpu] * (3 if proto == T.SIMPLE else 1))
        steps, between = 2 * (ranks - 1), 2 * (m.nodes - 1)
        lat = base + (steps - between) * intra + between * inter
        if proto == T.SIMPLE and m.nodes > 1 and nbytes / (c * ranks) >= 64:
            lat *= 1.9 if m.gen == T.GEN["volta"] else 1.4  # "plateau effect of ring"
        return lat
    if a == "tree":
        return base + 2 * ((per_node - 1) * intra + log_nodes * inter)
    if a == "collnet":
        return base + 2 * (min(1, per_node - 1) * intra + (per_node - 1) * 0.4) + inter
    if a == "nvls":
        return intra + (inter if m.nodes > 1 else 0.0)
    return base + intra + 2 * log_nodes * inter  # nvls-tree
