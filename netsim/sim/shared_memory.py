"""A schedule as a node's shared memory runs it: what a topology whose `[compute]
shared_memory = true` (allreduce_train's `--transport shm`, and the path `netsim calibrate`
fits beside the messages') charges that messages do not.

Through shared memory a transfer is no message: the receiver reads the sender's slice
itself, in place. In a round where a rank overwrites (adds into, or copies into) a slice
that a peer of its node reads from it in the same round (a pairwise exchange: recursive
doubling's partners swap whole buffers and both add), it cannot write in place while the
peer reads; it keeps the result in a scratch, says "read", waits until the peer has read,
and copies the scratch into place (allreduce_train.exchange.shm). That is one more round:
a counter's trip, the copy of those bytes, a round's overhead. `as_run` returns the
schedule with that round after each such round: the same pairs moving the held spans,
without adding. A ring, halving-doubling and a tree never overwrite what they send in the
same round, so their schedules are unchanged. (Measured here, p = 2, 64 KiB: recursive
doubling through shared memory 56-70 us, the ring 48-56 us; without the copy the model
had recursive doubling 22% faster, with it 27% slower.)

And a round's overhead is charged per peer, not per transfer (`round_messages`): a rank
posts messages one after another, but through shared memory it waits on each peer's
counter once and then reads what the round takes from it, one slice or several (channels).
(The fitted overhead, from the ring's one transfer a round, is that wait: the counter, the
core given away and taken back where ranks outnumber cores, the NumPy call.) Transfers to
other nodes stay messages, each its own. Measured here (the ring through shared memory at
1, 2 and 4 channels: 1, 2, 4 slices a round from one peer, the same rounds): at p = 2,
16 KiB, 20, 23 and 29 us for 2 rounds, about 10 us a round and 1.5 us a further slice; at
p = 4, 244, 265 and 291 us for 6 rounds, 40 us a round and 2.6 us a slice. Charged per
transfer, 4 channels came out 3.7x the time of one (p = 2, 4 KiB); charged per peer, the
same, within those 1.5-2.6 us a slice of what runs. Waiting on more peers does cost more:
the default job's parameter server by layer (one rank reads three peers a round) ran
15-20% slower than halving-doubling (one peer a round, four rounds) at p = 4, where
charging the round once had predicted it 5% faster. But not a whole wait each: while a
rank waits on its first peer the others get there, and a further wait is mostly a look at
a counter that has moved. Measured (2026-12-06, three quiet runs of bench/allreduce.py at
p = 4, 16 KiB): halving-doubling 150, 241 and 146 us for 4 rounds of one peer, the
parameter server with even shards 130, 248 and 123 us for 2 rounds of 3: a further peer
cost 0.37, 0.53 and 0.34 of a round's first wait. FURTHER_PEER is their median. Against
the first two runs (p = 3, 4, 16 KiB - 16 MiB, seven schedules through shared memory) the
pick among them came out 1.06x and 1.09x the fastest measured, against 1.11x and 1.18x
with a whole wait per peer, which had the even parameter server at the ring's time.

And a round with fewer readers shares the cores less (`round_sharing`): a tree's rounds,
where one or two of 4 ranks read and the others wait on their counters. Measured here
(2026-12-06, p = 4, 64 KiB, one quiet run): about 30-40 us a round whatever the readers,
the tree's 4 rounds 133 us, halving-doubling's 4 (all reading) 163, the ring's 6 (all)
216, the double binary tree's 6 (on one node a chain, one reader a round) 171: fewer
readers help, but the waiting ranks are not free. So a round is charged between the two:
1 + (S - 1) * (readers / ranks) of the overhead and the add, S the full sharing (the
fitted cost where all read). Against four runs of bench/allreduce.py (p = 3, 4, 16 KiB -
16 MiB, five to seven schedules through shared memory), the median |log error| of the
predicted ratios between schedules fell from 0.10-0.20 to 0.06-0.10 and the pick among
them came out 1.02-1.05x the fastest measured, against 1.06-1.11x. Tried before it and
not kept: a round charged as if the waiting ranks were free (the double binary tree at
2 channels, two readers a round, became every pick and measured 1.1-2.0x the fastest),
and readers of one buffer each reading at their own rate (no shared sender port: no pick
changed).
"""

from __future__ import annotations

import numpy as np

from netsim.algorithms import Schedule
from netsim.algorithms.rounds import make_round

# What a wait on a further peer in one round costs, as a share of the round's first wait
# (the fitted overhead): measured on the development VM, p = 4, 16 KiB, where the overhead
# is most of the time, the parameter server (2 rounds, each rank reading 3 peers) against
# halving-doubling (4 rounds of one peer): 0.34, 0.37 and 0.53 in three runs, the median
# taken (docstring above).
FURTHER_PEER = 0.37


def as_run(schedule: Schedule, topology) -> Schedule:
    """The schedule as it runs on the topology: itself, unless the topology's transfers
    inside a node read peers' memory; then with, after every round where some rank
    overwrites a slice that a peer of its node reads from it in that round, a round
    copying the held spans into place."""
    if not topology.shared_memory:
        return schedule
    node_of_rank = topology.node_of_rank(schedule.world_size)
    rounds = []
    for rnd in schedule.rounds:
        rounds.append(rnd)
        held = overwrites_what_peers_read(rnd, node_of_rank)
        if held.any():
            kept = (rnd.src[held], rnd.dst[held], rnd.start[held], rnd.count[held])
            rounds.append(make_round(rnd.phase, rnd.index, False, *kept))
    if len(rounds) == len(schedule.rounds):
        return schedule
    return Schedule(schedule.algorithm, schedule.world_size, schedule.nelems, tuple(rounds))


def round_messages(topology, src: np.ndarray, dst: np.ndarray, world_size: int) -> float:
    """What a round's overhead is charged for: the most messages one rank sends, or
    receives, in it; through shared memory, inside a node, the waits on the peers one rank
    reads from, or is read by (however many slices it reads from each), the first a whole
    overhead and each further one FURTHER_PEER of it; to and from other nodes one per
    message, as ever."""
    if not topology.shared_memory:
        return int(max(np.bincount(src).max(initial=1), np.bincount(dst).max(initial=1)))
    node = topology.node_of_rank(world_size)
    apart = node[src] != node[dst]
    pairs = np.unique(np.stack([src[~apart], dst[~apart]]), axis=1)  # (reader's peer, reader)

    def per_rank(ranks):
        return np.bincount(ranks, minlength=world_size)

    def waits(messages, peers):
        return messages + np.where(peers > 0, 1 + FURTHER_PEER * (peers - 1), 0)

    sent = waits(per_rank(src[apart]), per_rank(pairs[0]))
    got = waits(per_rank(dst[apart]), per_rank(pairs[1]))
    return max(float(np.maximum(sent, got).max(initial=0)), 1.0)


def round_sharing(topology, src: np.ndarray, dst: np.ndarray, world_size: int) -> float:
    """How many ranks share a core while the round runs, on its busiest node: through
    messages all of the node's (topology.core_sharing: MPI's waits spin); through shared
    memory s = 1 + (S - 1) * w / n, S that full sharing, n the node's ranks and w those
    that work in the round, its readers (and both ends of a message to another node). A
    round that all read costs what the calibration fitted; one with fewer readers less,
    but not unshared: a rank waiting on a counter yields its core, and still takes part
    of it."""
    each = topology.core_sharing_by_node(world_size)
    if not topology.shared_memory or each.max() == 1:
        return int(each.max())
    node = topology.node_of_rank(world_size)
    apart = node[src] != node[dst]
    working = np.unique(np.concatenate([dst, src[apart]]))
    ranks = np.bincount(node, minlength=len(each))  # per node: its ranks, those working
    busy = np.bincount(node[working], minlength=len(each))
    return float((1 + (each - 1) * busy / np.maximum(ranks, 1)).max())


def overwrites_what_peers_read(rnd, node_of_rank: np.ndarray) -> np.ndarray:
    """Per transfer i of the round: does its receiver also send, in this round, a span
    overlapping [start[i], start[i] + count[i]) to a rank of its own node (who reads it
    from the receiver's buffer while the receiver would write it)?"""
    src, dst, start = rnd.src, rnd.dst, rnd.start
    end = start + rnd.count
    held = np.zeros(len(src), dtype=bool)
    if not len(src):
        return held
    node = np.asarray(node_of_rank)
    order = np.argsort(src, kind="stable")
    by_src = src[order]
    first = np.searchsorted(by_src, dst, side="left")  # receiver i's own sends: order[first:last]
    last = np.searchsorted(by_src, dst, side="right")
    for k in range(int((last - first).max())):  # a rank sends a few transfers a round
        at = first + k
        valid = at < last
        j = order[np.minimum(at, len(src) - 1)]
        same_node = node[dst[j]] == node[dst]
        overlaps = (start[j] < end) & (start < end[j])
        held |= valid & same_node & overlaps
    return held
