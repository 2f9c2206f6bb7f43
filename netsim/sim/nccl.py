"""NCCL (and RCCL, on AMD Instinct) on a modelled cluster: what `all_reduce_perf` of
nccl-tests (rccl-tests) would measure.

Past 300 lines as one idea, NCCL's tuning model run on netsim's links, kept whole because
its parts are one formula: which (algorithm, protocol) pairs exist here, what each costs
in latency and in bandwidth, how many channels carry a given size, and which pair the
library picks.

NCCL picks an algorithm and a protocol for every call from its own model (src/graph/
tuning.cc): time = latency + bytes / bandwidth, where the latency is a base plus a cost per
hop (NVLink, PCI or network, by algorithm and protocol) and the bandwidth is what its graph
search found for the links, cut by the protocol (LL moves 8 bytes of data per 16, LL128 120
per 128) and by per-channel ceilings measured on each GPU generation. This module is that
model with one change: the bandwidth comes from netsim's own links. An algorithm's bytes are
laid on the topology's links (its schedule with C channels, or, in the switches, the bytes
its definition says), and its data time is that of the busiest link: NCCL pipelines every
algorithm in small chunks, so all its links are busy at once. NCCL's refinements then apply
on top, as tuning.cc writes them, with the constants of netsim.sim.nccl_tables (RCCL's, for
a `gpu` of the cdna families, in netsim.sim.rccl_tables).

    NCCL name   netsim algorithm      protocols            needs
    ring        ring (C channels)     LL, LL128, Simple    -
    tree        double-binary-tree    LL, LL128, Simple    -
    nvls        nvls                  Simple               multicast, 1 node, hopper+
    nvls-tree   nvls-tree             Simple               multicast, > 1 node, hopper+
    collnet     collnet               Simple               in_network_reduction, > 1 node

LL128 needs NVLink inside the node (tuning.cc enables it on NVB paths only; RCCL not on
gfx942/gfx950). Between nodes the transport (netsim.cluster.transports) says which
protocols and algorithms NCCL runs: Simple only over GPUDirect-TCPX(O), no CollNet off
InfiniBand.

Two times per pair. The library ranks pairs by its own estimate (`model_s`): its latency
table, the latency its network plugin reports, its per-channel tree ceiling and, in RCCL,
its per-size correction factors. What nccl-tests measures (`time_s`) is the same formula
with what the hardware costs: every step between nodes pays the library's `net` hop
latency plus the topology's own NIC and switch latencies and the transport's per-message
cost (twice for Simple, as tuning.cc adds its flush), and the tree is bounded by the links,
not by a per-channel ceiling that NCCL only ranks with. RCCL's data moves at the links'
rate cut by the protocol's share (LL: half); its bwRatio and correction factors only rank.

The size ramp (enqueue.cc topoGetAlgoInfo): a call of n bytes runs on nc of the C channels,
nc the largest with n >= nc x threads x threshold (nccl_tables.MAX_THREADS,
THREAD_THRESHOLD; ring LL's threshold x ranks), at least 1; fewer channels carry the bytes
at nc/C of the bandwidth (the per-channel share that RCCL's ncclTopoGetAlgoTime writes as
bw / nChannels x nChannels'). Below that the threads halve (latency-bound sizes: no change
to the time). NVLS runs its own channel count, CollNet its heads.

nccl-tests launches each call's kernels from one thread per process, so a process driving
G GPUs (`-g G`) cannot go faster than G launches per call (LAUNCH_US each): time =
max(latency + data, G x launch), the floor of single-process runs at small sizes.

Channels default to what NCCL's graph search finds (search.cc): between nodes one channel
per NIC at its speed step; in a node as many channels of the highest speed step as the
GPU's NVLink (xGMI) bandwidth holds; doubled (ncclTopoDupChannels) where a channel runs at
>= 25 GB/s, unless on Hopper and later it runs below 50 with more than 4 channels. NVLS uses
one channel per GPU of the node, CollNet one per NIC.

Not modelled: the pipeline's fill beyond the per-step latency terms (enqueue.cc's chunk
sizes), tuner plugins that override NCCL's pick (GCP's for TCPXO), tuning.cc's 0.85 for
trees of pattern TREE (multi-node NCCL builds BALANCED trees), RCCL's MSCCL kernels for
small sizes on MI300X nodes, and the time NCCL spends on one call's host side other than
the launch.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from netsim import algorithms
from netsim.algorithms import cost
from netsim.cluster import topofile, transports
from netsim.errors import InputError

from . import nccl_tables as T
from . import rccl_tables as R

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
    """One algorithm and protocol for one size: the library's time and its parts."""

    algorithm: str  # NCCL's name
    protocol: str
    channels: int  # the channels this size runs on (NCCL's ramp)
    nbytes: int
    ranks: int
    latency_s: float
    data_s: float  # the bytes at the protocol's share of the busiest link
    time_s: float  # max(latency + data, launch floor): what nccl-tests reports
    bottleneck: str  # the busiest link, or the NCCL ceiling that binds first
    simulated_only: bool  # the switches add: no MPI here runs it
    library: str = "NCCL"  # or RCCL, on AMD Instinct
    model_s: float = 0.0  # the library's own estimate, by which it picks

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
    rccl: bool
    gen: int  # NCCL's row (GEN); RCCL's GPUs read hopper's where a table is NCCL's
    cpu: str
    nodes: int
    ppn: float
    nvlink: bool  # NVLink or NVSwitch (xGMI for RCCL) inside the node
    column: int  # of NCCL's tables: 1 node, 2 nodes, more
    transport: transports.Transport
    net_us: float  # hardware latency of one message between nodes: NICs and switches


def library(topology) -> str:
    """The library the model reads: RCCL on AMD Instinct (gpu cdna3, cdna4), else NCCL."""
    return "RCCL" if topology.spec.get("gpu") in topofile.AMD_GPUS else "NCCL"


def _machine(topology, ranks: int) -> _Machine:
    gpu = topology.spec.get("gpu")
    if gpu is None:
        raise InputError(
            f'topology "{topology.name}" has no gpu (one of {", ".join(topofile.GPUS)}): the '
            f"NCCL model reads NCCL's (RCCL's) tables by GPU generation"
        )
    nodes = len(np.unique(topology.node_of_rank(ranks)))
    net_us = 0.0
    if nodes > 1:  # first GPU of node 0 to first GPU of node 1: NIC, switches, same rail
        gpn = topology.gpus_per_node
        net_us = float(topology.path_latency_s(np.array([0]), np.array([gpn]))[0]) * 1e6
    rccl = gpu in topofile.AMD_GPUS
    return _Machine(
        rccl,
        T.GEN["hopper"] if rccl else T.GEN[gpu],
        topology.spec.get("cpu", "amd" if rccl else "intel"),
        nodes,
        ranks / nodes,
        topology.spec["intra_node"]["kind"] == "all-to-all",
        min(nodes, 3) - 1,
        transports.of(topology.spec),
        net_us,
    )


def available(topology, ranks: int) -> list[tuple[str, str]]:
    """The (algorithm, protocol) pairs NCCL would consider here, in its order."""
    m = _machine(topology, ranks)
    spec = topology.spec
    net = m.transport if m.nodes > 1 else None
    ll128 = m.nvlink and not m.rccl
    protocols = [p for p in T.PROTOCOLS if (p != "LL128" or ll128)]
    protocols = [p for p in protocols if net is None or p in net.protocols]
    multicast = bool(spec["intra_node"].get("multicast")) and m.gen >= T.GEN["hopper"]
    multicast = multicast and not m.rccl
    sharp = bool(spec.get("network", {}).get("in_network_reduction")) and m.nvlink
    out = [
        (a, p)
        for a in ("tree", "ring")
        for p in protocols
        if not (m.rccl and m.nodes == 1 and a == "tree" and p == "Simple")  # gfx94 rule
    ]
    if multicast and m.nodes == 1:
        out.append(("nvls", "Simple"))
    if multicast and m.nodes > 1:
        out.append(("nvls-tree", "Simple"))
    if sharp and m.nodes > 1 and not m.rccl:
        out.append(("collnet", "Simple"))
    return [(a, p) for a, p in out if net is None or a in net.algorithms]


def default_channels(topology, ranks: int, algorithm: str) -> int:
    """NCCL's channel count for the algorithm here (see the module's text); a topology
    without gpu reads the speed steps of the GPUs before Hopper."""
    gpu = topology.spec.get("gpu")
    rccl = gpu in topofile.AMD_GPUS
    gen = T.GEN["hopper"] if rccl else T.GEN.get(gpu, T.GEN["ampere"])
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
        speed = _step(R.SPEEDS if rccl else T.SPEEDS_INTRA[gen], bw)
        count = max(1, int(bw // speed))
    else:
        nic = topology.spec["nic"]
        speed = _step(
            R.SPEEDS if rccl else T.SPEEDS_INTER[gen],
            nic["bandwidth_gbit_per_s"] / 8 * nic.get("efficiency", 1.0),
        )
        count = nics
    late = gen >= T.GEN["hopper"] and speed < 50 and count > 4 and not rccl
    count = min(2 * count, T.MAX_CHANNELS) if speed >= 25 and not late else count
    # connect.cc ncclTopoPostset: every channel duplicated; then between nodes, on Hopper and
    # later with channels above 45 GB/s, 2 compute channels per search channel up to 16;
    # and, for a network that unpacks on the GPU (GPUDirect-TCPX(O)), twice again up to 16
    count = min(2 * count, T.MAX_CHANNELS)
    if nodes > 1 and gen >= T.GEN["hopper"] and speed > 45 and count < 16 and not rccl:
        count *= 2
    if nodes > 1 and transports.of(topology.spec).name in ("tcpx", "tcpxo") and count < 16:
        count *= 2
    return count


def _step(speeds, bw: float) -> float:
    return next((s for s in speeds if s <= bw), speeds[-1])


def ramp(topology, ranks: int, nbytes: int, algorithm: str, protocol: str, channels: int):
    """(channels, threads) NCCL runs a call of nbytes on (enqueue.cc topoGetAlgoInfo): a
    channel less while nbytes < nc x nt x threshold, down to one, then half the threads."""
    if algorithm in ("nvls", "nvls-tree", "collnet"):
        return channels, 0
    tab = R if library(topology) == "RCCL" else T
    proto = T.PROTOCOLS.index(protocol)
    nt, threshold = tab.MAX_THREADS[proto], tab.THREAD_THRESHOLD[proto]
    if algorithm == "ring" and proto == T.LL:
        threshold *= ranks  # tuning.cc: threadThresholds[RING][LL] *= nRanks
    nc = channels
    while nc > 1 and nbytes < nc * nt * threshold:
        nc -= 1
    while nbytes < nc * nt * threshold and nt % 128 == 0:
        nt //= 2
    return nc, nt


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
    model ranks them (its own estimate, model_s, before the launch floor): the first is its
    pick."""
    pairs = [
        (a, p)
        for a, p in available(topology, ranks)
        if algorithm in ("auto", a) and protocol in ("auto", p)
    ]
    if not pairs:
        raise InputError(
            f"{library(topology)} has no {algorithm} all-reduce with protocol {protocol} on "
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
    return sorted(out, key=lambda e: e.model_s)


@functools.lru_cache(maxsize=32)
def _per_byte_loads(topology, ranks: int, algorithm: str, channels: int) -> np.ndarray:
    """Bytes on each link per byte of buffer (loads grow linearly with the buffer), kept
    across calls: a step of 100 buckets asks for the same few (topology, ranks, algorithm,
    channels), and at 16,384 ranks each costs seconds. A Topology is frozen and hashes by
    identity, so a cached entry is never another topology's; the array is read-only."""
    alg = algorithms.get(ALGORITHMS[algorithm])
    if not alg.scheduled:
        loads = np.array(alg.link_bytes(topology, ranks, 1.0))
    else:
        nelems = ranks * channels * 64  # every chunk whole: no rounding in the loads
        schedule = alg.schedule(ranks, nelems, topology.node_of_rank(ranks), channels=channels)
        loads = cost.link_bytes(schedule, topology, ITEMSIZE) / (nelems * ITEMSIZE)
    loads.flags.writeable = False
    return loads


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
    nc, _ = ramp(topology, ranks, nbytes, a, p, c)
    share = nc / c  # fewer channels, each at its share of the bandwidth
    log_size = int(nbytes >> 6).bit_length() - 1
    times = []
    for ranking in (True, False):
        b, limit = (_refine_rccl if m.rccl else _refine)(bus, a, proto, c, m, ranking)
        data_s = ratio * nbytes / (b * share * 1e9) if nbytes else 0.0
        if a == "tree" and not m.rccl and 0 <= log_size < 23:
            data_s /= T.TREE_CORRECTION[proto][log_size]
        if ranking and m.rccl and log_size >= 0 and (a == "tree" or m.nodes > 1):
            table = R.TREE_CORRECTION if a == "tree" else R.RING_CORRECTION
            data_s /= table[proto][min(log_size, 26)] or math.inf
        times.append((_latency_us(a, proto, c, m, ranks, nbytes, ranking) * 1e-6, data_s, limit))
    (model_lat, model_data, _), (latency_s, data_s, limit) = times
    floor_s = T.LAUNCH_US * 1e-6 * gpus_per_thread
    return Estimate(
        a,
        p,
        nc,
        nbytes,
        ranks,
        latency_s,
        data_s,
        max(latency_s + data_s, floor_s),
        limit or topology.link_names[link],
        not algorithms.get(ALGORITHMS[a]).runs_over_mpi,
        "RCCL" if m.rccl else "NCCL",
        model_lat + model_data,
    )


def _nvlink_links(topology) -> np.ndarray:
    return np.array([".gpu" in name for name in topology.link_names])


def _refine(bus: float, a: str, proto: int, c: int, m: _Machine, ranking: bool):
    """tuning.cc's refinements of the bus bandwidth, by algorithm and protocol, and the
    ceiling that bounds it ("" where the links do). The tree's per-channel ceiling only
    ranks (ranking=True): a tree runs at what its links carry."""
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
        bus *= 0.92
        if ranking:
            bus = cap(bus, c * T.PER_CHANNEL_TREE[m.gen][col], "per-channel tree")
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


def _refine_rccl(bus: float, a: str, proto: int, c: int, m: _Machine, ranking: bool):
    """RCCL's one refinement under HIP, a ratio per algorithm and protocol (bwRatio), ranks;
    what runs moves at the protocol's share of the links (LL: 8 bytes of 16)."""
    if ranking:
        ratio = R.BW_RATIO[0 if m.nodes <= 2 else 1][a][proto]
        return bus * ratio, "" if ratio == 1 else f"RCCL's bandwidth ratio {ratio:g}"
    return bus * (0.5 if proto == T.LL else 1.0), ""


def _latency_us(
    a: str, proto: int, c: int, m: _Machine, ranks: int, nbytes: int, ranking: bool
) -> float:
    """tuning.cc's latency of one all-reduce (ncclTopoTuneModel, ncclTopoGetAlgoTime); each
    step between nodes pays the network hop of its table plus, when ranking, what the
    library's net plugin reports, and otherwise the hardware and the transport."""
    tab = R if m.rccl else T
    base = tab.BASE_US[a][proto]
    intra = tab.HW_US["nvlink" if m.nvlink else "pci"][a][proto]
    # with one GPU per node NCCL charges the tree's network hop ("fully exposed")
    inter = tab.HW_US["net"]["tree" if m.ppn == 1 and not m.rccl else a][proto]
    if ranking:  # graph->latencyInter: the plugin's latency (RCCL: instead of its table's)
        extra = m.transport.plugin_us
        if m.rccl and extra:
            inter = 0.0
    else:
        extra = m.net_us + m.transport.message_us
    inter += extra * (2 if proto == T.SIMPLE else 1)  # "Also add the flush extra latency"
    log_nodes = m.nodes.bit_length() - 1
    per_node = ranks // m.nodes
    if a == "ring":
        if m.nodes > 1:  # rings between nodes post a network operation every step
            intra = max(intra, T.NET_OVERHEAD_US[m.cpu] * (3 if proto == T.SIMPLE else 1))
        steps = 2 * (ranks - 1)
        between = (2 * m.nodes if m.rccl else 2 * (m.nodes - 1)) if m.nodes > 1 else 0
        lat = base + (steps - between) * intra + between * inter
        plateau = not m.rccl and proto == T.SIMPLE and m.nodes > 1
        if plateau and nbytes / (c * ranks) >= 64:
            lat *= 1.9 if m.gen == T.GEN["volta"] else 1.4  # "plateau effect of ring"
        return lat
    if a == "tree":
        return base + 2 * ((per_node - 1) * intra + log_nodes * inter)
    if a == "collnet":
        return base + 2 * (min(1, per_node - 1) * intra + (per_node - 1) * 0.4) + inter
    if a == "nvls":
        return intra + (inter if m.nodes > 1 else 0.0)
    return base + intra + 2 * log_nodes * inter  # nvls-tree
