"""Schedules made of schedules: channels side by side on slices of the buffer, and pieces
of the buffer pipelined one round behind another."""

from __future__ import annotations

import numpy as np

from .rounds import Schedule, chunk_bounds, make_round, tiling

# --- channels ------------------------------------------------------------------------------
#
# C channels run C copies of an algorithm side by side on the C near-equal slices of the
# buffer (chunk_bounds(n, C)), as NCCL's channels do: round k of the schedule is round k of
# every channel (rounds depend on the ranks, not on the length, so they match). The bytes
# are the same as with one channel; what channels change is which links carry them: a ring
# whose channels leave each node through different NICs (ring.rail_orders) uses them all.


def side_by_side(algorithm: str, world_size: int, nelems: int, parts) -> Schedule:
    """One schedule of the channels' schedules `parts` ([(schedule of a slice, its first
    element)]): round k of each, shifted to its slice, in one round."""
    rounds = []
    for group in zip(*(s.rounds for s, _ in parts)):
        first = group[0]
        flags = {bool(r.reduce) if np.ndim(r.reduce) == 0 else None for r in group}
        rounds.append(
            make_round(
                first.phase,
                first.index,
                first.reduce
                if len(flags) == 1 and None not in flags
                else np.concatenate([r.adds for r in group]),
                np.concatenate([r.src for r in group]),
                np.concatenate([r.dst for r in group]),
                np.concatenate([r.start + at for r, (_, at) in zip(group, parts)]),
                np.concatenate([r.count for r in group]),
            )
        )
    return Schedule(algorithm, world_size, nelems, tuple(rounds))


PIPELINE = "pipeline"  # the phase of a pipelined round (pipelined): its index is the step


def pipelined(algorithm: str, world_size: int, nelems: int, pieces) -> Schedule:
    """The pieces' schedules ([(schedule of a piece, its first element)]) run chunk by
    chunk, as NCCL pipelines its trees and rings: piece j goes through every round one step
    behind piece j-1, so step s holds round s - j of every piece j. A tree's reduce of one
    piece then travels up while an earlier piece is broadcast down, and the phases of a
    hierarchical algorithm overlap: R rounds become R + K - 1 steps for K pieces, with the
    same bytes. A step's transfers may reduce or copy (Round.reduce per transfer)."""
    rounds = [s.rounds for s, _ in pieces]
    nrounds = len(rounds[0])
    if not nrounds:  # one rank: nothing to pipeline
        return Schedule(algorithm, world_size, nelems, ())
    steps = []
    for step in range(nrounds + len(pieces) - 1):
        group = [
            (rs[step - j], at)
            for j, (rs, (_, at)) in enumerate(zip(rounds, pieces))
            if 0 <= step - j < nrounds
        ]
        steps.append(
            make_round(
                PIPELINE,
                step,
                np.concatenate([r.adds for r, _ in group]),
                np.concatenate([r.src for r, _ in group]),
                np.concatenate([r.dst for r, _ in group]),
                np.concatenate([r.start + at for r, at in group]),
                np.concatenate([r.count for r, _ in group]),
            )
        )
    return Schedule(algorithm, world_size, nelems, tuple(steps))


def _pieces(nelems: int, parts: int, segments):
    """(first element, length, segments within) of the `parts` near-equal slices."""
    bounds = chunk_bounds(nelems, parts)
    return [
        (int(lo), int(hi - lo), in_slice(segments, nelems, int(lo), int(hi)))
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]


def in_slice(segments, nelems: int, lo: int, hi: int):
    """Segments ((start, count) pairs tiling the buffer of nelems) cut to [lo, hi), shifted
    to start at 0: they tile the slice (None stays None; the whole buffer stays as it is)."""
    if segments is None or (lo, hi) == (0, nelems):
        return segments
    tiling(segments, nelems)
    out = []
    for start, count in segments:
        a, b = max(start, lo), min(start + count, hi)
        if a < b or (count == 0 and lo <= start < hi):
            out.append((a - lo, max(b - a, 0)))
    return out or [(0, hi - lo)]
