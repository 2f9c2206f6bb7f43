"""All-reduce algorithms, each whole in its own module: its schedule, the elements each rank
sends, and its closed-form time. May import NumPy and netsim.errors, nothing else of ours:
it knows nothing of MPI, GPUs, files or clusters (a topology is only asked for latencies,
bandwidths and routes), so every other part can use it. Also here, and not an all-reduce
(nor in ALGORITHMS): downpour.py, the messages of asynchronous Downpour SGD counted from
its definition; compression.py, what a bucket compressed (fp16, bf16, top-k, PowerSGD)
sends: its collectives, the ring all-gather among them.

A schedule says, round by round, which rank sends which slice of the flat buffer to whom,
and whether the receiver adds the slice into its own buffer (reduce) or overwrites its
slice with it (copy). It is written once and executed three times: in one process
(`reference.execute`, the oracle), over MPI (allreduce_train's executor), and on a
modelled network (`netsim.sim.simulate`); so measured and modelled runs are the same traffic
by construction. Every scheduled algorithm is a sum and leaves all ranks bit-identical: each
piece's sum is formed on one rank, in one order, then copied, except in recursive doubling,
where two partners form a + b and b + a, equal because IEEE addition is commutative. Rounds
model time: one Round per communication step. For p ranks, n elements, N nodes of L ranks
and even chunks (each module gives the exact counts):

    algorithm           rounds            elements each rank sends (and receives)
    ring                2(p-1)            2(p-1)/p * n
    halving-doubling    2 log2 p          2(p-1)/p * n        (p a power of two)
    recursive-doubling  log2 p            log2 p * n          (p a power of two)
    tree                2 floor(log2 p)   n on a leaf .. 3n on a parent of two
    double-binary-tree  2 (L-1+log2 N)    per half n/2 to the parent and to each child
    hierarchical-ring   2(L-1) + 2(N-1)   2(L-1)/L * n inside a node + 2(N-1)/N * n/L between
    parameter-server    2                 2(p-1)/p * n        (one even segment per rank)
    mpi, nccl           the library's     not observable      (MPI_Allreduce, ncclAllReduce:
                                                              no schedule)
    nvls, nvls-tree,    none: the switches add (in_network.py; simulated only, not over
    collnet             MPI): per link, the bytes their definitions say

Every algorithm also runs as C channels side by side on slices of the buffer, and pipelined
in K chunks (compose.py): the same bytes, other links and overlapping rounds.

Files: rounds.py (what schedules are made of), compose.py (channels, pipelining), base.py
(the Algorithm interface), cost.py (the closed forms' vocabulary), bandwidth.py (busbw,
nccl-tests' bus bandwidth, which every figure of netsim uses), reference.py (the oracle),
one module per algorithm. To add an algorithm: a module with an `Algorithm` subclass and its
instance, listed in ALGORITHMS below. Training, the reports, the simulator, the closed forms
and their tests all find it there.
"""

from __future__ import annotations

from netsim.errors import InputError

from .bandwidth import busbw  # noqa: F401
from .base import Algorithm  # noqa: F401
from .double_tree import DOUBLE_BINARY_TREE
from .halving_doubling import HALVING_DOUBLING
from .hierarchical_ring import HIERARCHICAL_RING
from .in_network import COLLNET, NVLS, NVLS_TREE
from .mpi import MPI, NCCL
from .parameter_server import PARAMETER_SERVER
from .recursive_doubling import RECURSIVE_DOUBLING
from .reference import execute  # noqa: F401
from .ring import RING
from .rounds import ALL_GATHER, REDUCE_SCATTER, Round, Schedule, chunk_bounds  # noqa: F401
from .tree import TREE

# By the name users choose them with (--allreduce, --algorithm), in the order they are listed.
ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        RING,
        HALVING_DOUBLING,
        RECURSIVE_DOUBLING,
        TREE,
        DOUBLE_BINARY_TREE,
        HIERARCHICAL_RING,
        PARAMETER_SERVER,
        MPI,
        NCCL,
        NVLS,
        NVLS_TREE,
        COLLNET,
    )
}
SCHEDULED = tuple(name for name, a in ALGORITHMS.items() if a.scheduled)  # what netsim simulates


def get(name: str) -> Algorithm:
    algorithm = ALGORITHMS.get(name)
    if algorithm is None:
        raise InputError(
            f"unknown all-reduce algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}"
        )
    return algorithm
