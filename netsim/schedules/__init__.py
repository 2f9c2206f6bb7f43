"""Collective algorithms as pure schedules: written once, executed over MPI and simulated.

A schedule says, round by round, which rank sends which slice of the flat buffer to whom,
and whether the receiver adds the slice into its own buffer (reduce) or overwrites its
slice with it (copy). It knows nothing of MPI, GPUs or time, so
`allreduce_train.collectives` can run it over MPI and `netsim` can replay the very same
traffic on a modelled network. Every algorithm is a sum, leaves all ranks bit-identical
(each piece's sum is formed on one rank, in one order, then copied), and is chosen by name
through `build` (the keys of ALGORITHMS). Rounds model time: one Round per communication
step, its transfers all reduce or all copy. For p ranks, n elements, N nodes of L ranks and
even chunks (the function docstrings give the exact counts):

    algorithm           rounds            elements each rank sends (and receives)
    ring                2(p-1)            2(p-1)/p * n
    halving-doubling    2 log2 p          2(p-1)/p * n        (p a power of two)
    tree                2 floor(log2 p)   n on a leaf .. 3n on a parent of two
    hierarchical-ring   2(L-1) + 2(N-1)   2(L-1)/L * n inside a node + 2(N-1)/N * n/L between
    parameter-server    2                 2(p-1)/p * n        (one even segment per rank)

Files: base.py (Round, Schedule, chunk_bounds and the ring machinery every
algorithm shares), one module per algorithm, and `build` here.
"""

from __future__ import annotations

import inspect

from .base import ALL_GATHER, REDUCE_SCATTER, Round, Schedule, chunk_bounds  # noqa: F401 (the API)
from .halving_doubling import halving_doubling
from .parameter_server import parameter_server
from .ring import hierarchical_ring, ring
from .tree import binary_tree


def build(algorithm: str, world_size: int, nelems: int, *, node_of_rank=None,
          segments=None) -> Schedule:
    """The schedule of the algorithm named `algorithm` (a key of ALGORITHMS). Context an
    algorithm does not take is ignored: node_of_rank (None: all ranks on one node) only
    shapes the hierarchical ring, segments (None: one per rank) the parameter server."""
    make = ALGORITHMS.get(algorithm)
    if make is None:
        raise ValueError(f"unknown all-reduce algorithm {algorithm!r}; choose one of "
                         f"{', '.join(ALGORITHMS)}")
    context = {"node_of_rank": node_of_rank, "segments": segments}
    wanted = inspect.signature(make).parameters
    return make(world_size, nelems, **{k: v for k, v in context.items() if k in wanted})


# Schedules by the name a user chooses them with (--allreduce); the training program and
# the simulator both look algorithms up here (through `build`, which passes each the
# context it takes).
ALGORITHMS = {
    "ring": ring,
    "halving-doubling": halving_doubling,
    "tree": binary_tree,
    "hierarchical-ring": hierarchical_ring,
    "parameter-server": parameter_server,
}
