"""What Downpour SGD's messages are, counted from its definition (--mode async).

Not an all-reduce (it is not in ALGORITHMS): R replicas and S parameter servers, the flat
buffer of n elements in S balanced shards (rounds.chunk_bounds), shard s on rank R + s.
After step k of its n_r steps a replica pushes (k+1) % n_push == 0 or k == n_r - 1, one
message of shard s to server s; then fetches if (k+1) % n_fetch == 0 and k < n_r - 1: a
0-byte request to every server, each answering with its shard. These counts are the oracle
of the measured bytes (tests hold a run's recorded links equal to `link_bytes`), of the
report's figures and of the simulated pattern (netsim.sim.downpour). The rule itself,
`pushes_after` and `fetches_after`, is what training's replicas follow step by step
(allreduce_train.downpour); the counts are it summed.
"""

from __future__ import annotations

from .rounds import chunk_bounds


def pushes_after(step: int, steps: int, push_every: int) -> bool:
    """Whether a replica that takes `steps` steps pushes after its step `step` (from 0)."""
    return (step + 1) % push_every == 0 or step == steps - 1


def fetches_after(step: int, steps: int, fetch_every: int) -> bool:
    """Whether a replica that takes `steps` steps fetches after its step `step` (from 0)."""
    return (step + 1) % fetch_every == 0 and step != steps - 1


def pushes(steps: int, push_every: int) -> int:
    """Pushes of a replica that takes `steps` steps: every n_push-th, and after its last."""
    return steps // push_every + (steps % push_every != 0)


def fetches(steps: int, fetch_every: int) -> int:
    """Fetches of a replica that takes `steps` steps: every n_fetch-th, never after its last."""
    return max(steps - 1, 0) // fetch_every


def push_step(index: int, steps: int, push_every: int) -> int:
    """The step after which a replica's push number `index` (from 0) goes."""
    return min((index + 1) * push_every, steps) - 1


def fetch_step(index: int, fetch_every: int) -> int:
    """The step after which a replica's fetch number `index` (from 0) goes."""
    return (index + 1) * fetch_every - 1


def link_bytes(
    nelems: int, itemsize: int, servers: int, steps_by_replica, fetch_every: int, push_every: int
) -> dict[tuple[int, int], tuple[int, int]]:
    """(src, dst) -> (payload bytes, messages) over a whole run, per directed link: replica
    r -> server R + s carries its pushes of shard s and its 0-byte fetch requests; server ->
    replica the shard once per fetch."""
    bounds = chunk_bounds(nelems, servers)
    replicas = len(steps_by_replica)
    out = {}
    for r, steps in enumerate(steps_by_replica):
        npush, nfetch = pushes(steps, push_every), fetches(steps, fetch_every)
        for s in range(servers):
            shard = int(bounds[s + 1] - bounds[s]) * itemsize
            out[(r, replicas + s)] = (npush * shard, npush + nfetch)
            out[(replicas + s, r)] = (nfetch * shard, nfetch)
    return out
