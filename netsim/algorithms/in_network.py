"""All-reduce in the network: the switches add. Not a schedule of ours (no rank sends to a
rank), so these run in no MPI of this machine: simulated only, from the bytes each link
carries by the algorithm's definition (link_bytes), the time that of the busiest link.

For L GPUs per node, N nodes and n bytes, per GPU and each way:

    algorithm  needs                            NVLink port      its NIC
    nvls       intra_node.multicast, 1 node     n + n/L          -
    nvls-tree  intra_node.multicast, N > 1      n + n/L          e * n/(2L)
    collnet    network.in_network_reduction     2(L-1)/L * n     n/L

NVLS (NVLink SHARP, NVSwitch gen 3; NCCL's NVLS): every GPU owns 1/L of the buffer and asks
the switch for the sum of that share (multimem.ld_reduce: the switch reads the share from
all L GPUs, its own included, and adds), then stores the sum once and the switch multicasts
it to all L GPUs (multimem.st). So a GPU's port carries its whole buffer out (read by the
owners) and its sum out once (n/L), and the sum of its share in (n/L) and every sum in (n).

NVLS tree (NCCL's NVLSTree): NVLS inside each node; GPU j of every node is the head of share
j, which crosses the nodes on NCCL's double binary tree (trees.cc) through GPU j's NIC: per
tree, on half the share, to the parent and to each child, from each child and the parent;
e is a node's tree edges over both trees (2 on two nodes, up to 4 on more).

CollNet (SHARP in the InfiniBand switches; NCCL's CollNetDirect): a reduce-scatter over
NVLink leaves GPU j with the node's sum of share j, which it sends up through its own NIC
into the switches' reduction tree and gets the sum over all nodes back; then an all-gather
over NVLink. The switches' tree above the leaves is not modelled (a non-blocking fabric).

All three are pipelined by NCCL, so their phases overlap: the busiest link sets the time.
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from netsim.errors import InputError

from .base import Algorithm
from .double_tree import node_parent
from .rounds import check


class InNetwork(Algorithm):
    """The common part: bytes per port, elements sent, and the busiest link's time."""

    scheduled = False
    runs_over_mpi = False
    needs: str  # the topology key that says the hardware reduces

    def channel_schedule(self, world_size, nelems, node_of_rank=None, segments=None):
        return None

    def channel_elements_sent(self, world_size, nelems, node_of_rank=None, segments=None):
        check(world_size, nelems)
        node = np.zeros(world_size, dtype=np.int64) if node_of_rank is None else node_of_rank
        nvlink, nic = self.port_bytes(np.asarray(node), float(nelems))
        return np.rint(nvlink + nic).astype(np.int64)

    def closed_form_s(self, topology, world_size, nbytes, segments=None, itemsize=1, channels=1):
        loads = self.link_bytes(topology, world_size, nbytes)
        return float((loads / topology.bandwidth_bytes_per_s).max(initial=0.0))

    def link_bytes(self, topology, world_size: int, nbytes: float) -> np.ndarray:
        """Bytes each link of `topology` carries in one all-reduce of nbytes on world_size
        ranks, placed as the topology places them."""
        self.supported(topology, world_size)
        loads = np.zeros(len(topology.link_names))
        nvlink, nic = self.port_bytes(topology.node_of_rank(world_size), float(nbytes))
        ports = _ports(topology, world_size)
        for way in ("up", "down"):
            np.add.at(loads, ports[f"gpu.{way}"], nvlink)
            if nic.any():
                np.add.at(loads, ports[f"nic.{way}"], nic)
        return loads

    def supported(self, topology, world_size: int) -> None:
        """InputError, one line, where the topology cannot run the algorithm."""
        table, key = self.needs.split(".")
        if not topology.spec.get(table, {}).get(key):
            raise InputError(f"{self.name} needs {self.needs} = true in the topology")

    @abstractmethod
    def port_bytes(self, node_of_rank: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
        """Per rank, the bytes through its NVLink port and through its NIC, each way."""


def _per_node(node_of_rank: np.ndarray) -> int:
    counts = np.bincount(node_of_rank)
    if counts.min() != counts.max():
        raise InputError("in-network all-reduce needs the same number of ranks on every node")
    return int(counts[0])


def _ports(topology, world_size: int) -> dict[str, np.ndarray]:
    """Link ids of every rank's GPU ports and NIC ports (gpu.up, gpu.down, nic.up, nic.down
    by rank), from the link names (nodeN.gpuG.up, nodeN.nicK.up, ...)."""
    index = {name: i for i, name in enumerate(topology.link_names)}
    node, g = np.divmod(topology.gpu_of_rank(world_size), topology.gpus_per_node)
    nics = topology.spec.get("nic", {}).get("count", 0)
    ports = {}
    for way in ("up", "down"):
        ports[f"gpu.{way}"] = np.array([index[f"node{m}.gpu{k}.{way}"] for m, k in zip(node, g)])
        if nics:
            rail = g * nics // topology.gpus_per_node
            ports[f"nic.{way}"] = np.array(
                [index[f"node{m}.nic{k}.{way}"] for m, k in zip(node, rail)]
            )
    return ports


class Nvls(InNetwork):
    name, label = "nvls", "NVLS all-reduce (NVSwitch reduces; simulated only)"
    formula = "n + n/L through each GPU's NVLink port each way"
    needs = "intra_node.multicast"

    def supported(self, topology, world_size):
        super().supported(topology, world_size)
        if topology.node_of_rank(world_size).max() > 0:
            raise InputError("nvls runs inside one node; between nodes use nvls-tree")

    def port_bytes(self, node_of_rank, n):
        p = len(node_of_rank)
        nvlink = np.full(p, n + n / p if p > 1 else 0.0)
        return nvlink, np.zeros(p)


class NvlsTree(InNetwork):
    name, label = "nvls-tree", "NVLS tree all-reduce (NVSwitch reduces; simulated only)"
    formula = "n + n/L through each NVLink port; e n/(2L) through each NIC"
    needs = "intra_node.multicast"

    def supported(self, topology, world_size):
        super().supported(topology, world_size)
        if topology.node_of_rank(world_size).max() == 0:
            raise InputError("nvls-tree runs between nodes; inside one node use nvls")

    def port_bytes(self, node_of_rank, n):
        nnodes, per_node = int(node_of_rank.max()) + 1, _per_node(node_of_rank)
        edges = np.zeros(nnodes)
        for mirror in (False, True):
            for m in range(nnodes):
                up = node_parent(nnodes, m, mirror)
                if up >= 0:
                    edges[m] += 1
                    edges[up] += 1
        nvlink = np.full(len(node_of_rank), n + n / per_node if per_node > 1 else 0.0)
        return nvlink, edges[node_of_rank] * n / (2 * per_node)


class CollNet(InNetwork):
    name, label = "collnet", "CollNet all-reduce (SHARP switches reduce; simulated only)"
    formula = "2(L-1)/L n through each NVLink port, n/L through each NIC"
    needs = "network.in_network_reduction"

    def port_bytes(self, node_of_rank, n):
        p, per_node = len(node_of_rank), _per_node(node_of_rank)
        nvlink = np.full(p, 2 * (per_node - 1) / per_node * n)
        nic = np.full(p, n / per_node if node_of_rank.max() > 0 else 0.0)
        return nvlink, nic


NVLS, NVLS_TREE, COLLNET = Nvls(), NvlsTree(), CollNet()
