"""What carries NCCL's traffic between nodes (`nic.transport` of a topology): the protocols
and algorithms NCCL runs over it, and what one message costs on it beyond InfiniBand's.

NCCL's tuning model (src/graph/tuning.cc) charges every step between nodes its `net`
latency (hwLatencies[NET], measured on InfiniBand) plus the network device's own `latency`
property (graph->latencyInter, twice for Simple: "Also add the flush extra latency"). The
verbs plugin that drives InfiniBand and RoCE reports 0 (src/transport/net_ib/init.cc:
`props->latency = 0; // Not set`), so on those the hardware path (NIC, switches: the
topology's own latencies) is all there is to add. Other transports add the software that
moves a message: a provider library and a reliable datagram protocol in the NIC (EFA's
SRD), or TCP through the host kernel with a GPU-side unpack (Google's GPUDirect-TCPX(O)).

    transport    protocols              algorithms            message_us  plugin_us
    infiniband   LL, LL128, Simple      all                   0           0 (net_ib)
    roce         LL, LL128, Simple      all                   0           0 (net_ib)
    efa          LL, LL128, Simple      ring, tree, nvls-tree 10 (est.)   35 (aws-ofi-nccl)
    efa-unordered  Simple               ring, tree            10 (est.)   75 (aws-ofi-nccl)
    tcpx         Simple                 ring, tree            35 (est.)   0
    tcpxo        Simple                 ring, tree            10 (est.)   0
    socket       LL, LL128, Simple      ring, tree            25 (est.)   0 (net_socket.cc)

Protocols: LL and LL128 need the NIC to land each 8-byte (LL) or 128-byte (LL128) line of
data and flag in order in GPU memory, polled by the receiving kernel. EFA on P5 and later
instances delivers 128-byte aligned writes in order (aws-ofi-nccl src/platform-aws.cpp,
FI_OPT_EFA_WRITE_IN_ORDER_ALIGNED_128_BYTES); where it cannot, as on p4d and p3dn, the
plugin sets NCCL_PROTO=simple ("byte delivery ordering" not supported): `efa-unordered`,
whose plugin reports 75 us (`.latency = 75.0` for p4d.24xlarge). GPUDirect-TCPX receives
into GPU buffers through the host's TCP stack and unpacks with a kernel, so no flag can be
polled: Google's configurations set NCCL_PROTO=Simple and NCCL_ALGO=Ring,Tree
(GoogleCloudPlatform/container-engine-accelerators gpudirect-tcpx/nccl-config.yaml;
gpudirect-tcpxo/best-practice.md, the profile without LL128: NCCL_PROTO=Simple,
NCCL_NVLS_ENABLE=0). CollNet needs SHARP switches (InfiniBand);
NVLS between nodes needs a network whose plugin supports NVLS tree (aws-ofi-nccl tunes
NCCL_NVLSTREE_MAX_CHUNKSIZE for it).

message_us, the per-message cost beyond the verbs path. No vendor publishes a one-way
latency of these software paths that this module could copy, so the figures are estimates,
one per transport, the same for every cluster and row, and say so:
  efa    aws-ofi-nccl reports 35 us to NCCL for P5 and later (src/platform-aws.cpp,
         `.latency = 35.0`; 75 for p4d): NCCL adds it to every network step when it ranks
         algorithms (`plugin_us`). A message through libfabric's SRD provider and the
         proxy's polls is taken as 10 us one way.
  tcpx   TCP through both hosts' kernels with the GPU unpack kernel: 35 us.
  tcpxo  TCPXO (FasTrak) moves the TCP stack into a NIC-offload daemon: 10 us.
  socket NCCL's own socket transport through host memory: 25 us.
bench/published.md rows A7 (TCPXO) and A11 (EFA) are where efa's and tcpxo's figures show;
the tcpx and socket figures are not checked against any published run.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOLS = ("LL", "LL128", "Simple")
ALL_ALGORITHMS = ("ring", "tree", "nvls", "nvls-tree", "collnet")


@dataclass(frozen=True)
class Transport:
    name: str
    protocols: tuple[str, ...]
    algorithms: tuple[str, ...]
    message_us: float  # one message's cost beyond the verbs path, each way
    plugin_us: float = 0.0  # the latency its NCCL plugin reports (what NCCL ranks by)


TRANSPORTS = {
    t.name: t
    for t in (
        Transport("infiniband", PROTOCOLS, ALL_ALGORITHMS, 0.0),
        Transport("roce", PROTOCOLS, ALL_ALGORITHMS, 0.0),
        Transport("efa", PROTOCOLS, ("ring", "tree", "nvls-tree"), 10.0, 35.0),
        Transport("efa-unordered", ("Simple",), ("ring", "tree"), 10.0, 75.0),
        Transport("tcpx", ("Simple",), ("ring", "tree"), 35.0),
        Transport("tcpxo", ("Simple",), ("ring", "tree"), 10.0),
        Transport("socket", PROTOCOLS, ("ring", "tree"), 25.0),
    )
}
DEFAULT = "infiniband"


def of(spec: dict) -> Transport:
    """The transport of a checked topology description (InfiniBand where it says none)."""
    return TRANSPORTS[spec.get("nic", {}).get("transport", DEFAULT)]
