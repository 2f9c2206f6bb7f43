"""Links and routes of a topology: link ids as arithmetic, routes of many flows at once.

A topology is `nodes` nodes of `gpus_per_node` GPUs. Every link is one direction of a
cable or switch port, with a bandwidth and a latency; a flow's route is the list of links
it crosses. Inside a node the GPUs meet on an all-to-all switch (NVLink/NVSwitch) or on a
PCIe tree; GPU g of a node uses NIC g * count // gpus_per_node; the NICs meet on one
switch, a two-level fat-tree, or a ring/torus of nodes. The links of one route:

    same node:  GPU -gpu.up-> [pcie.up -> pcie.down] -gpu.down-> GPU
    two nodes:  GPU -nic.up-> [network links] -> nic.down-> GPU

A GPU's NVLink (or intra-node PCIe) port and its path to its NIC are separate, so a GPU can
send to its node and to the network at the same time, each at its own rate: gpu.up and
gpu.down carry the traffic inside the node, nic.up and nic.down that between nodes.

    network      links between nic.up and nic.down                 switches crossed
    switch       none (nic.up ends at the switch, nic.down leaves it)      1
    rails        none: NIC k of every node on rail switch k                1
    fat-tree     leafA.spine.up, leafB.spine.down if the leaves differ     3 (1 in one leaf)
    ring, torus  nodeN.dimD+ / nodeN.dimD-: node N to its next / previous  one per hop
                 node along dimension D (C order, dimensions of size 1 dropped)

A rail-optimised fabric (`rails`) never changes rail: a flow between nodes leaves through
the NIC on its destination GPU's rail, as NCCL's PXN sends it (NVIDIA/nccl, NCCL_PXN_DISABLE
unset: the data crosses NVLink to the GPU beside that NIC first). Its route is then
    GPU [-gpu.up-> proxy gpu.down] -> nic.up (destination's rail) -> nic.down -> GPU
with the NVLink hop to the proxy (the first GPU of that rail on the sending node) only
where the sender's own NIC is on another rail.

Latency is charged once per thing crossed, on one link of it, so a path's latency is the
sum over its links: gpu.up carries the intra-node fabric's latency (its switch; a PCIe
tree charges one latency per PCIe switch or root complex crossed: pcie.up and pcie.down
each carry one more), gpu.down carries 0. nic.up carries the NIC latency (sending and
receiving NIC together), nic.down the last network switch (0 on a ring/torus, whose hop
links each carry the network latency), spine.up and spine.down one switch each. So an
all-to-all pair costs exactly intra_node.latency_us, and a fat-tree pair in two leaves
nic + 3 network latencies (plus intra where a PXN hop crosses NVLink first).

Optional keys for calibrated machines (a shared fabric, a cache, a [compute] table) and
for measured GPU clusters (the share of a link's line rate that data achieves) are
described in cluster.topofile.

Simplifications, on purpose: a GPU reaches its own NIC at the NIC's rate (GPUDirect RDMA
through the GPU's own PCIe switch, never the root complex, PCIe faster than the NIC); a
fat-tree's spine is one up and one down link per leaf of capacity NIC bandwidth * NICs
under the leaf / oversubscription (no per-spine-switch hashing); ring/torus links have one
NIC's bandwidth and routes are dimension-ordered shortest paths (ties at half the ring go
the + way).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Routes(NamedTuple):
    """CSR: the links of flow i are links[indptr[i]:indptr[i+1]], in the order crossed."""

    indptr: np.ndarray  # (flows + 1,) int64
    links: np.ndarray  # (total links,) int64


@dataclass(frozen=True)
class Layout:
    """Link ids as arithmetic: each kind of link is one contiguous block, indexed by
    (node, port), so routing many flows is a few array expressions."""

    nodes: int
    gpn: int
    per_switch: int  # GPUs per PCIe switch; 0: all-to-all
    nics: int  # NICs per node; 0: no network
    per_leaf: int  # nodes per fat-tree leaf; 0: not a fat-tree
    dims: tuple[int, ...]  # ring/torus sizes longer than 1, C order (last fastest)
    fabric: bool  # a shared nodeN.fabric link inside every node
    rails: bool = False  # rail-optimised: flows between nodes stay on the destination's rail

    @classmethod
    def of(cls, spec: dict) -> Layout:
        intra, nic, net = spec["intra_node"], spec.get("nic"), spec.get("network", {})
        kind = net.get("kind")
        dims = [spec["nodes"]] if kind == "ring" else net.get("dims", []) if kind == "torus" else []
        return cls(
            spec["nodes"],
            spec["gpus_per_node"],
            intra.get("gpus_per_switch", 0),
            nic["count"] if nic else 0,
            net.get("nodes_per_leaf", 0) if kind == "fat-tree" else 0,
            tuple(d for d in dims if d > 1),
            "aggregate_bandwidth_gbit_per_s" in intra,
            kind == "rails",
        )

    @functools.cached_property
    def blocks(self) -> dict[str, int]:
        """First id of each block; 'end' is the number of links."""
        sizes = {"gpu.up": self.nodes * self.gpn, "gpu.down": self.nodes * self.gpn}
        if self.per_switch:
            sizes["pcie.up"] = sizes["pcie.down"] = self.nodes * (self.gpn // self.per_switch)
        sizes["nic.up"] = sizes["nic.down"] = self.nodes * self.nics
        if self.per_leaf:
            sizes["spine.up"] = sizes["spine.down"] = self.nodes // self.per_leaf
        sizes["hop"] = self.nodes * len(self.dims) * 2 if self.nics else 0
        sizes["fabric"] = self.nodes if self.fabric else 0
        starts = np.cumsum([0, *sizes.values()])
        return {**dict(zip(sizes, starts[:-1].tolist())), "end": int(starts[-1])}

    def names(self) -> list[str]:
        nodes, gpn = range(self.nodes), range(self.gpn)
        out = [f"node{n}.gpu{g}.{d}" for d in ("up", "down") for n in nodes for g in gpn]
        if self.per_switch:
            out += [
                f"node{n}.pcie{s}.{d}"
                for d in ("up", "down")
                for n in nodes
                for s in range(self.gpn // self.per_switch)
            ]
        out += [
            f"node{n}.nic{k}.{d}" for d in ("up", "down") for n in nodes for k in range(self.nics)
        ]
        if self.per_leaf:
            out += [
                f"leaf{x}.spine.{d}"
                for d in ("up", "down")
                for x in range(self.nodes // self.per_leaf)
            ]
        if self.nics:
            out += [
                f"node{n}.dim{i}{s}" for n in nodes for i in range(len(self.dims)) for s in "+-"
            ]
        if self.fabric:
            out += [f"node{n}.fabric" for n in nodes]
        return out

    def properties(self, spec: dict) -> tuple[np.ndarray, np.ndarray]:
        """(bandwidth_bytes_per_s, latency_s) of every link, by the conventions above."""
        intra, nic, net = spec["intra_node"], spec.get("nic", {}), spec.get("network", {})
        bw, lat = np.empty(self.blocks["end"]), np.empty(self.blocks["end"])
        gbit, us = 1e9 / 8, 1e-6
        nic_bw = nic.get("bandwidth_gbit_per_s", 0) * gbit * nic.get("efficiency", 1.0)
        gpu_bw = intra["bandwidth_gbit_per_s"] * gbit * intra.get("efficiency", 1.0)
        spine_bw = nic_bw * self.nics * self.per_leaf / net.get("oversubscription", 1)
        hop_lat = net.get("latency_us", 0) * us
        values = {
            "gpu.up": (gpu_bw, intra["latency_us"] * us),
            "gpu.down": (gpu_bw, 0.0),
            "pcie.up": (
                intra.get("uplink_bandwidth_gbit_per_s", 0) * gbit,
                intra["latency_us"] * us,
            ),
            "pcie.down": (
                intra.get("uplink_bandwidth_gbit_per_s", 0) * gbit,
                intra["latency_us"] * us,
            ),
            "nic.up": (nic_bw, nic.get("latency_us", 0) * us),
            "nic.down": (nic_bw, 0.0 if net.get("kind") in ("ring", "torus") else hop_lat),
            "spine.up": (spine_bw, hop_lat),
            "spine.down": (spine_bw, hop_lat),
            "hop": (nic_bw, hop_lat),
            "fabric": (intra.get("aggregate_bandwidth_gbit_per_s", 0) * gbit, 0.0),
        }
        ends = list(self.blocks.values())[1:]
        for (block, start), end in zip(self.blocks.items(), ends):
            bw[start:end], lat[start:end] = values[block]
        return bw, lat

    def route(self, src: np.ndarray, dst: np.ndarray) -> Routes:
        """One column per link a route may cross, -1 where this flow does not; dropping the
        -1s row by row leaves every route in order."""
        b, gpn = self.blocks, self.gpn
        src_node, dst_node = src // gpn, dst // gpn
        moving, remote = src != dst, src_node != dst_node
        local = moving & ~remote
        cols = [np.where(local, b["gpu.up"] + src, -1)]
        tail = [np.where(local, b["gpu.down"] + dst, -1)]
        if self.fabric:
            cols.append(np.where(local, b["fabric"] + src_node, -1))
        if self.per_switch:
            switches = gpn // self.per_switch
            src_sw, dst_sw = src % gpn // self.per_switch, dst % gpn // self.per_switch
            cross = local & (src_sw != dst_sw)
            cols.append(np.where(cross, b["pcie.up"] + src_node * switches + src_sw, -1))
            tail.insert(0, np.where(cross, b["pcie.down"] + dst_node * switches + dst_sw, -1))
        if self.nics:
            src_rail, dst_rail = src % gpn * self.nics // gpn, dst % gpn * self.nics // gpn
            if self.rails:  # PXN: over NVLink to the GPU beside the destination's rail NIC
                proxy = remote & (src_rail != dst_rail)
                by = src_node * gpn + dst_rail * gpn // self.nics
                cols.append(np.where(proxy, b["gpu.up"] + src, -1))
                cols.append(np.where(proxy, b["gpu.down"] + by, -1))
                src_rail = dst_rail
            src_nic, dst_nic = src_node * self.nics + src_rail, dst_node * self.nics + dst_rail
            cols.append(np.where(remote, b["nic.up"] + src_nic, -1))
            tail.insert(0, np.where(remote, b["nic.down"] + dst_nic, -1))
            if self.per_leaf:
                src_leaf, dst_leaf = src_node // self.per_leaf, dst_node // self.per_leaf
                spine = src_leaf != dst_leaf
                cols += [
                    np.where(spine, b["spine.up"] + src_leaf, -1),
                    np.where(spine, b["spine.down"] + dst_leaf, -1),
                ]
            cols += self._torus_hops(src_node, dst_node)
        table = np.column_stack([c if c.ndim == 2 else c[:, None] for c in cols + tail])
        used = table >= 0
        indptr = np.zeros(len(src) + 1, dtype=np.int64)
        np.cumsum(used.sum(axis=1), out=indptr[1:])
        return Routes(indptr, table[used].astype(np.int64, copy=False))

    def _torus_hops(self, src_node: np.ndarray, dst_node: np.ndarray) -> list[np.ndarray]:
        """Dimension-ordered: finish dimension 0, then 1, ...; per dimension the shorter way
        round, one (flows, most steps) block of hop links, -1 past a flow's last hop."""
        blocks, cur = [], src_node.copy()
        strides = np.cumprod([1, *self.dims[:0:-1]])[::-1]
        for i, (size, stride) in enumerate(zip(self.dims, strides)):
            here, there = cur // stride % size, dst_node // stride % size
            ahead = (there - here) % size
            plus = 2 * ahead <= size
            steps, way = np.where(plus, ahead, size - ahead), np.where(plus, 1, -1)
            k = np.arange(steps.max(initial=0))  # at most size // 2; 1 for neighbour traffic
            at = cur[:, None] + ((here[:, None] + way[:, None] * k) % size - here[:, None]) * stride
            link = (
                self.blocks["hop"] + (at * len(self.dims) + i) * 2 + np.where(plus, 0, 1)[:, None]
            )
            blocks.append(np.where(k < steps[:, None], link, -1))
            cur = cur + (there - here) * stride
        return blocks
