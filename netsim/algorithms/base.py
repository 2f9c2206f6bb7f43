"""The Algorithm interface: an all-reduce algorithm whole, its schedule, its count of the
elements every rank sends, and its closed-form time."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .compose import _pieces, pipelined, side_by_side
from .cost import schedule_time_s
from .rounds import Schedule, check


class Algorithm(ABC):
    """An all-reduce algorithm, whole: what it sends (its schedule), how many elements each
    rank sends (counted from the algorithm's definition, not from the schedule, so the two
    check each other), and how long it takes (a closed form on a topology). Each algorithm
    module defines one subclass and one instance of it; `netsim.algorithms.get` finds it by
    name.

    schedule and elements_sent take the same context, and an algorithm ignores what it does
    not use: node_of_rank (rank r's node; None: all on one node), segments ((start, count)
    pairs tiling the buffer, one per layer; None: one per rank), channels (copies side by
    side on slices of the buffer) and chunks (the buffer pipelined in that many pieces,
    pipelined()). A subclass defines one channel of one piece (channel_schedule,
    channel_elements_sent); one that lays its channels out itself (the ring) overrides
    channelled and channelled_elements. time_s takes the segments, the element size and the
    channels; its nodes are the topology's, as it places the ranks.
    """

    name: str  # as users choose it: --allreduce, --algorithm
    label: str  # as reports name it
    formula: str | None  # the elements each rank sends, as people write it
    scheduled = True  # its messages are a schedule of ours: recorded, counted, simulated
    runs_over_mpi = True  # training can use it (in-network reduction cannot: the switches add)
    needs_gpu = False  # training can use it only on GPU buffers (NCCL)

    def schedule(
        self,
        world_size: int,
        nelems: int,
        node_of_rank=None,
        segments=None,
        channels: int = 1,
        chunks: int = 1,
    ) -> Schedule | None:
        """The rounds of one all-reduce of nelems elements on world_size ranks."""
        check(world_size, nelems, channels, chunks)
        pieces = [
            (self.channelled(world_size, n, node_of_rank, segs, channels), lo)
            for lo, n, segs in _pieces(nelems, chunks, segments)
        ]
        if pieces[0][0] is None or chunks == 1:
            return pieces[0][0]
        return pipelined(self.name, world_size, nelems, pieces)

    def elements_sent(
        self,
        world_size: int,
        nelems: int,
        node_of_rank=None,
        segments=None,
        channels: int = 1,
        chunks: int = 1,
    ) -> np.ndarray | None:
        """Elements each rank sends in one all-reduce, indexed by rank."""
        check(world_size, nelems, channels, chunks)
        counts = [
            self.channelled_elements(world_size, n, node_of_rank, segs, channels)
            for _, n, segs in _pieces(nelems, chunks, segments)
        ]
        return None if counts[0] is None else np.sum(counts, axis=0)

    def channelled(self, world_size, nelems, node_of_rank, segments, channels) -> Schedule | None:
        """`channels` of channel_schedule side by side on the slices of the buffer."""
        parts = [
            (self.channel_schedule(world_size, n, node_of_rank, segs), lo)
            for lo, n, segs in _pieces(nelems, channels, segments)
        ]
        if parts[0][0] is None or channels == 1:
            return parts[0][0]
        return side_by_side(self.name, world_size, nelems, parts)

    def channelled_elements(self, world_size, nelems, node_of_rank, segments, channels):
        counts = [
            self.channel_elements_sent(world_size, n, node_of_rank, segs)
            for _, n, segs in _pieces(nelems, channels, segments)
        ]
        return None if counts[0] is None else np.sum(counts, axis=0)

    @abstractmethod
    def channel_schedule(
        self, world_size: int, nelems: int, node_of_rank=None, segments=None
    ) -> Schedule | None:
        """The rounds of one channel: an all-reduce of nelems elements on world_size ranks."""

    @abstractmethod
    def channel_elements_sent(
        self, world_size: int, nelems: int, node_of_rank=None, segments=None
    ) -> np.ndarray | None:
        """Elements each rank sends in one channel of nelems elements."""

    def time_s(
        self,
        topology,
        world_size: int,
        nbytes: float,
        segments=None,
        itemsize: int = 1,
        channels: int = 1,
        chunks: int = 1,
    ) -> float | None:
        """The closed-form time on `topology` (ranks placed as it places them): the
        algorithm's own form (closed_form_s), or, pipelined, its steps one after another
        (cost.schedule_time_s). None where the algorithm has none."""
        if chunks == 1 or not self.scheduled or world_size <= 1:
            return self.closed_form_s(topology, world_size, nbytes, segments, itemsize, channels)
        schedule = self.schedule(
            world_size,
            int(nbytes // itemsize),
            topology.node_of_rank(world_size),
            segments,
            channels,
            chunks,
        )
        return schedule_time_s(schedule, topology, itemsize)

    @abstractmethod
    def closed_form_s(
        self,
        topology,
        world_size: int,
        nbytes: float,
        segments=None,
        itemsize: int = 1,
        channels: int = 1,
    ) -> float | None:
        """The unpipelined closed form, with alpha and beta read off the algorithm's own
        patterns (netsim.algorithms.cost). nbytes is nbytes / itemsize elements: where chunks
        differ by an element, a round lasts as long as its largest. Channels whose patterns
        are the same share the same links, so C of them on n/C take as long as one on n:
        an algorithm that spreads its channels over other links (the ring) says so in its
        own form."""

    def __repr__(self) -> str:
        return f"<algorithm {self.name}>"
