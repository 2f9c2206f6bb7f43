"""Closed-form alpha-beta-gamma times of the collective schedules: the instant answer, and
the simulator's oracle on networks without contention.

A message of m bytes between two ranks costs alpha + m * beta (alpha: the path's latency,
beta: 1 / its bandwidth); reducing m bytes costs m * gamma. The formulas are those of
Thakur, Rabenseifner & Gropp (2005) and Patarasuk & Yuan (2009), written for the rounds
our schedules actually take (n bytes, p ranks, chunks of n/p). They are exact on an
uncontended network when the chunks divide evenly; otherwise they bound the largest chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AlphaBeta:
    alpha_s: float
    beta_s_per_byte: float
    gamma_s_per_byte: float = 0.0

    def message_s(self, nbytes: float) -> float:
        return self.alpha_s + nbytes * self.beta_s_per_byte


def ring(p: int, nbytes: float, ab: AlphaBeta) -> float:
    """2(p-1) rounds of one chunk of n/p each way: 2(p-1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma."""
    if p <= 1:
        return 0.0
    chunk = math.ceil(nbytes / p) if nbytes % p else nbytes / p
    return 2 * (p - 1) * ab.message_s(chunk) + (p - 1) * chunk * ab.gamma_s_per_byte


def halving_doubling(p: int, nbytes: float, ab: AlphaBeta) -> float:
    """Rabenseifner: log2(p') halving rounds with n/2, n/4, ... then the same doubling back,
    for the largest power of two p' <= p; p - p' extra ranks cost one whole-buffer fold before
    and one copy after."""
    if p <= 1:
        return 0.0
    q = 1 << (p.bit_length() - 1)
    steps = q.bit_length() - 1
    moved = nbytes * (q - 1) / q  # n/2 + n/4 + ... over the log2(q) rounds
    t = 2 * steps * ab.alpha_s + 2 * moved * ab.beta_s_per_byte + moved * ab.gamma_s_per_byte
    if q < p:
        t += 2 * ab.message_s(nbytes) + nbytes * ab.gamma_s_per_byte
    return t


def binary_tree(p: int, nbytes: float, ab: AlphaBeta) -> float:
    """Reduce to the root up a binary tree, one round per level, then broadcast down. A
    parent's port carries both children's whole buffers, so a level with a two-child parent
    costs alpha + 2 n beta each way (plus 2 n gamma to add them up)."""
    t = 0.0
    for parents_children in _tree_levels(p):
        fanin = max(parents_children)
        t += 2 * ab.message_s(fanin * nbytes) + fanin * nbytes * ab.gamma_s_per_byte
    return t


def _tree_levels(p: int):
    """For each level of the heap-ordered binary tree (children of i: 2i+1, 2i+2), the number
    of children of each parent that has any."""
    depth = (p).bit_length() - 1 if p > 1 else 0
    for level in range(depth):
        parents = range(2**level - 1, min(2 ** (level + 1) - 1, p))
        yield [sum(1 for c in (2 * i + 1, 2 * i + 2) if c < p) for i in parents if 2 * i + 1 < p]


def hierarchical_ring(nodes: int, per_node: int, nbytes: float, intra: AlphaBeta, inter: AlphaBeta,
                      nic_sharing: float = 1.0) -> float:
    """Intra-node reduce-scatter and all-gather rings (L ranks, chunks n/L), and between them
    L simultaneous inter-node rings over N nodes on chunks n/(L N). nic_sharing > 1 when the
    L rings share fewer NICs: each then gets 1/nic_sharing of a NIC."""
    L, N = per_node, nodes
    t = 2 * (L - 1) * intra.message_s(nbytes / L) + (L - 1) * nbytes / L * intra.gamma_s_per_byte if L > 1 else 0.0
    if N > 1:
        piece = nbytes / (L * N)
        t += 2 * (N - 1) * (inter.alpha_s + piece * inter.beta_s_per_byte * nic_sharing)
        t += (N - 1) * piece * inter.gamma_s_per_byte
    return t


def parameter_server(p: int, segment_bytes, ab: AlphaBeta) -> float:
    """Push then pull; segment i is served by rank i mod p. A round lasts as long as its busiest
    port: a server's port carries (p-1) copies of what it serves, a worker's everything it
    does not serve."""
    if p <= 1:
        return 0.0
    seg = np.asarray(segment_bytes, dtype=float)
    served = np.bincount(np.arange(len(seg)) % p, weights=seg, minlength=p)
    busiest = max((p - 1) * served.max(), (seg.sum() - served).max())
    return 2 * ab.message_s(busiest) + (p - 1) * served.max() * ab.gamma_s_per_byte


# --- alpha and beta read off a topology -------------------------------------------------

def round_alpha_beta(topology, src_rank, dst_rank, world_size: int) -> AlphaBeta:
    """alpha and beta of one communication pattern on a topology: the largest path latency,
    and 1 / the smallest fair share any flow gets (a link's bandwidth over the flows of the
    pattern crossing it). On an uncontended pattern beta is 1 / the path bandwidth; where
    flows share a NIC or an oversubscribed spine, the sharing is in beta."""
    gpu = topology.gpu_of_rank(world_size)
    src, dst = gpu[np.asarray(src_rank)], gpu[np.asarray(dst_rank)]
    indptr, links = topology.routes(src, dst)
    flows_on_link = np.bincount(links, minlength=len(topology.bandwidth_bytes_per_s))
    share = topology.bandwidth_bytes_per_s[links] / flows_on_link[links]
    lengths = np.diff(indptr)
    slowest = np.minimum.reduceat(share, indptr[:-1][lengths > 0]).min()
    return AlphaBeta(float(topology.path_latency_s(src, dst).max()), 1.0 / float(slowest))


def path_alpha_beta(topology, src_rank, dst_rank, world_size: int) -> AlphaBeta:
    """alpha and beta of the farthest and slowest of these paths, each taken alone (for
    formulas that count the sharing of ports themselves)."""
    gpu = topology.gpu_of_rank(world_size)
    src, dst = gpu[np.asarray(src_rank)], gpu[np.asarray(dst_rank)]
    return AlphaBeta(float(topology.path_latency_s(src, dst).max()),
                     1.0 / float(topology.path_bandwidth_bytes_per_s(src, dst).min()))


def for_topology(algorithm: str, topology, world_size: int, nbytes: float, segments=None) -> float | None:
    """The closed form for this algorithm with alpha and beta taken from its pattern on the
    topology (exact on uncontended networks with even chunks, an estimate elsewhere)."""
    p = world_size
    if p <= 1:
        return 0.0
    ranks = np.arange(p)
    if algorithm == "ring":
        return ring(p, nbytes, round_alpha_beta(topology, ranks, (ranks + 1) % p, p))
    if algorithm == "halving-doubling":
        q = 1 << (p.bit_length() - 1)
        abs_ = [round_alpha_beta(topology, ranks[:q], ranks[:q] ^ d, p) for d in (1 << k for k in range(q.bit_length() - 1))]
        worst = AlphaBeta(max(a.alpha_s for a in abs_), max(a.beta_s_per_byte for a in abs_))
        return halving_doubling(p, nbytes, worst)
    if algorithm == "tree":  # the fan-in of a parent's port is in the formula
        children = ranks[1:]
        return binary_tree(p, nbytes, path_alpha_beta(topology, children, (children - 1) // 2, p))
    if algorithm == "hierarchical-ring":
        node = topology.node_of_rank(p)
        per_node = np.bincount(node)
        per_node = per_node[per_node > 0]
        if len(set(per_node.tolist())) != 1:
            return None
        L, N = int(per_node[0]), len(per_node)
        order = np.argsort(node, kind="stable")  # ranks grouped by node, local index within
        local = order.reshape(N, L)
        intra = round_alpha_beta(topology, local.ravel(), np.roll(local, -1, axis=1).ravel(), p) if L > 1 else AlphaBeta(0, 0)
        inter = round_alpha_beta(topology, local.ravel(), np.roll(local, -1, axis=0).ravel(), p) if N > 1 else AlphaBeta(0, 0)
        return hierarchical_ring(N, L, nbytes, intra, inter)
    if algorithm == "parameter-server":
        from .schedules import chunk_bounds

        if segments is None:
            seg_bytes = np.diff(chunk_bounds(int(nbytes), p))
        else:  # segments are (start, count) in elements; the closed form wants bytes
            counts = np.asarray([c for _, c in segments], dtype=float)
            seg_bytes = nbytes * counts / counts.sum()
        src, dst = np.meshgrid(ranks, ranks)  # the port loads are in the formula itself
        off = src != dst
        return parameter_server(p, seg_bytes, path_alpha_beta(topology, src[off], dst[off], p))
    return None
