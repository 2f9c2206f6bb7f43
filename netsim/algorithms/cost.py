"""The vocabulary of the closed forms: alpha-beta-gamma costs, and alpha and beta read off a
topology for one communication pattern. Each algorithm's own closed form lives in its module.

A message of m bytes between two ranks costs alpha + m * beta (alpha: the path's latency,
beta: 1 / its bandwidth); reducing m bytes costs m * gamma (Hockney's model, as used by
Thakur, Rabenseifner & Gropp 2005 and Patarasuk & Yuan 2009). The forms are written for the
rounds our schedules actually take, so they are exact on an uncontended network when the
chunks divide evenly (the simulator's tests hold it to 1e-9); otherwise they bound the
largest chunk, and where flows share links they are an estimate that only the simulator
refines.
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


NONE = AlphaBeta(0.0, 0.0)  # a pattern with no transfers


def largest(nbytes: float, parts: int, itemsize: int = 1) -> float:
    """Bytes of the largest of `parts` near-equal chunks of nbytes / itemsize elements
    (chunk_bounds: the sizes differ by at most one element)."""
    return math.ceil(nbytes / itemsize / parts) * itemsize


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
    return AlphaBeta(
        float(topology.path_latency_s(src, dst).max()),
        1.0 / float(topology.path_bandwidth_bytes_per_s(src, dst).min()),
    )


def schedule_time_s(schedule, topology, itemsize: int = 1) -> float:
    """A schedule's rounds one after another, each as long as its farthest path's latency
    plus its busiest link's bytes at that link's bandwidth: the closed form of any schedule,
    exact where a round's transfers are one size (then it is round_alpha_beta's alpha + m *
    beta), and otherwise a lower bound of the round run in lock step, which a pipelined
    step mixing big NVLink pieces with small NIC pieces needs (charging the largest piece at
    the slowest share would not bound it). The simulator lets ranks run ahead of a round
    and may beat the sum."""
    p, total, seen = schedule.world_size, 0.0, {}
    gpu = topology.gpu_of_rank(p)
    for r in schedule.rounds:
        if not len(r.src):
            continue
        key = r.src.tobytes() + b"|" + r.dst.tobytes()
        if key not in seen:
            src, dst = gpu[r.src], gpu[r.dst]
            seen[key] = (
                topology.routes(src, dst),
                float(topology.path_latency_s(src, dst).max()),
            )
        (indptr, links), alpha = seen[key]
        per_flow = np.broadcast_to(np.asarray(r.count, dtype=float) * itemsize, (len(r.src),))
        loads = np.bincount(
            links,
            weights=np.repeat(per_flow, np.diff(indptr)),
            minlength=len(topology.bandwidth_bytes_per_s),
        )
        total += alpha + busiest_link_s(loads, topology)
    return total


def link_bytes(schedule, topology, itemsize: int = 1) -> np.ndarray:
    """Bytes each link of the topology carries over the whole schedule: every transfer's
    bytes on every link of its route. A pattern (a round's src and dst) is routed once and
    its rounds' counts summed first, so a ring's 2(p-1) rounds on C channels route C times.
    busiest_link_s(link_bytes) is the time no schedule of these bytes can beat, and the
    time of a deep pipeline, whose links are all busy at once."""
    gpu = topology.gpu_of_rank(schedule.world_size)
    sums: dict[tuple[int, int], list] = {}
    for r in schedule.rounds:
        if len(r.src):
            entry = sums.setdefault((id(r.src), id(r.dst)), [r.src, r.dst, 0])
            least, largest, _ = r.span  # chunks of one size: a scalar, not an array per round
            entry[2] = entry[2] + (largest if least == largest else r.count)
    loads = np.zeros(len(topology.bandwidth_bytes_per_s))
    for src, dst, count in sums.values():
        indptr, links = topology.routes(gpu[src], gpu[dst])
        per_flow = np.broadcast_to(np.asarray(count, dtype=float) * itemsize, (len(src),))
        np.add.at(loads, links, np.repeat(per_flow, np.diff(indptr)))
    return loads


def busiest_link_s(loads: np.ndarray, topology) -> float:
    """The time the busiest link needs for its bytes."""
    return float((loads / topology.bandwidth_bytes_per_s).max(initial=0.0))
