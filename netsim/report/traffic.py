"""From every rank's raw step records to who sent what to whom, and who waited for whom.

Input: the run's description (config.json) and each rank's step records. Each record holds
this rank's clock readings at step start, collective entry, collective exit and step end,
and per round of the schedule when it was posted and completed. The clock offsets measured
at start-up put all ranks on rank 0's clock; then, per step:

  wait_s (the synchronisation stall)  max over ranks of entry time - this rank's entry time,
      capped at comm_s: the time this rank spent in the collective only because others
      arrived later.
  transfer_s = comm_s - wait_s.
  per round, peer_not_ready_s: how long after this rank posted the round its partners in
      that round (those it sends to or receives from) posted theirs; the rest of the round's
      time is its transfer. Late arrivals ripple round by round through a ring; this shows where.
  caused_wait_s: the rank that entered the collective last is charged with the waits of all
      the others in that step: the rank that made others wait.

The clock offsets, the stall and the blame are those of the design (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from netsim import algorithms
from netsim.record import rundir

_PER_RANK = (
    "epoch",
    "compute_s",
    "comm_s",
    "samples",
    "loss",
    "bytes_sent",
    "bytes_recv",
    "messages",
    "d2h_bytes",  # a GPU gradient staged through host memory: its copies each way
    "h2d_bytes",
    "d2h_s",
    "h2d_s",
)


@dataclass(eq=False)
class Traffic:
    world_size: int
    algorithm: algorithms.Algorithm  # the run's (config.json's --allreduce)
    node_of_rank: np.ndarray  # (p,)
    steps: np.ndarray  # (S,) step numbers recorded on every rank
    steps_by_rank: list[int]  # records found per rank (differ only for a crashed run)
    complete: bool  # the run ended (summary.json) and no file of it is damaged
    observable: bool  # False for MPI_Allreduce: bytes and rounds unknown
    table: dict[str, np.ndarray]  # name -> (S, p): compute_s, comm_s, wait_s, transfer_s, ...
    round_labels: list[tuple[str, int]] = field(default_factory=list)
    peer_not_ready_s: np.ndarray | None = None  # (S, p, rounds), NaN where a rank had no message
    round_transfer_s: np.ndarray | None = None
    links: np.ndarray | None = None  # (L, 5): step, src, dst, bytes, messages
    # t_start, t_comm, t_comm_end, t_end: (S, p) on the global clock
    times: dict[str, np.ndarray] = field(default_factory=dict)
    # per rank, per step: [[phase, index, posted, completed]] on the global clock
    raw_rounds: list | None = None
    schedule: algorithms.Schedule | None = None  # the run's schedule (None for MPI_Allreduce)
    damage: list[str] = field(default_factory=list)  # rundir.load's, one line per file

    @property
    def nodes(self) -> int:
        return len(set(self.node_of_rank.tolist()))

    def link_matrix(self) -> np.ndarray:
        """Bytes sent from row rank to column rank over all recorded steps."""
        m = np.zeros((self.world_size, self.world_size), dtype=np.int64)
        if self.links is not None and len(self.links):
            np.add.at(m, (self.links[:, 1], self.links[:, 2]), self.links[:, 3])
        return m

    def intra_inter_bytes(self) -> tuple[int, int]:
        m = self.link_matrix()
        same = self.node_of_rank[:, None] == self.node_of_rank[None, :]
        return int(m[same].sum()), int(m[~same].sum())


def merge(config: dict, records: list[list[dict]], complete: bool) -> Traffic:
    p = config["world_size"]
    if len(records) != p:
        raise ValueError(f"{len(records)} ranks' records for a world of {p}")
    offsets = np.asarray(config.get("clock_offsets_s") or [0.0] * p)
    common = (
        sorted(set.intersection(*(set(r["step"] for r in recs) for recs in records))) if p else []
    )
    by_step = [{r["step"]: r for r in recs} for recs in records]
    rows = [[by_step[rank][s] for rank in range(p)] for s in common]
    table = {
        k: np.array(
            [[rec[k] if rec[k] is not None else np.nan for rec in row] for row in rows], dtype=float
        ).reshape(len(rows), p)
        for k in _PER_RANK
    }
    # raw clock readings are integer nanoseconds of each rank's own clock
    times = {
        k: np.array([[rec[k + "_ns"] for rec in row] for row in rows], dtype=float).reshape(
            len(rows), p
        )
        / 1e9
        + offsets
        for k in ("t_start", "t_comm", "t_comm_end", "t_end")
    }
    enter = times["t_comm"]
    table["wait_s"] = (
        np.clip(enter.max(axis=1, keepdims=True) - enter, 0, table["comm_s"])
        if len(rows)
        else np.zeros((0, p))
    )
    table["transfer_s"] = table["comm_s"] - table["wait_s"]
    table["caused_wait_s"] = _blame(enter, table["wait_s"])
    observable = all(rec["bytes_sent"] is not None for row in rows for rec in row)
    algorithm = algorithms.get(config["config"]["allreduce"])
    traffic = Traffic(
        p,
        algorithm,
        np.asarray(config["node_of_rank"]),
        np.array(common, dtype=np.int64),
        [len(r) for r in records],
        complete and not config.get("damage"),
        observable,
        table,
        times=times,
        damage=list(config.get("damage", [])),
    )
    if observable:
        traffic.links = np.array(
            [[s, *link] for s, row in zip(common, rows) for rec in row for link in rec["links"]],
            dtype=np.int64,
        ).reshape(-1, 5)
        traffic.schedule = algorithm.schedule(
            p, config["nparams"], **rundir.allreduce_context(config)
        )
        _rounds(traffic, traffic.schedule, rows, offsets)
    return traffic


def _blame(enter: np.ndarray, wait: np.ndarray) -> np.ndarray:
    caused = np.zeros_like(wait)
    if len(enter):
        last = enter.argmax(axis=1)
        caused[np.arange(len(enter)), last] = wait.sum(axis=1)
    return caused


def _rounds(traffic: Traffic, schedule: algorithms.Schedule, rows, offsets) -> None:
    labels = [(r.phase, r.index) for r in schedule.rounds]
    position = {label: k for k, label in enumerate(labels)}
    nsteps, p, nrounds = len(rows), traffic.world_size, len(labels)
    posted = np.full((nsteps, p, nrounds), np.nan)
    completed = np.full((nsteps, p, nrounds), np.nan)
    for s, row in enumerate(rows):
        for rank, rec in enumerate(row):
            for phase, index, t_post, t_done in rec["rounds"]:
                k = position.get((phase, index))
                if k is None:
                    raise rundir.RunDirError(
                        f"rank {rank}'s step {rec['step']} has round {phase} {index}, which the "
                        f"schedule of config.json's {schedule.algorithm} does not"
                    )
                posted[s, rank, k] = t_post / 1e9 + offsets[rank]
                completed[s, rank, k] = t_done / 1e9 + offsets[rank]
    partners_posted = np.full_like(posted, -np.inf)
    for k, rnd in enumerate(schedule.rounds):
        for a, b in zip(rnd.src, rnd.dst):  # each transfer makes a and b partners in round k
            partners_posted[:, a, k] = np.fmax(partners_posted[:, a, k], posted[:, b, k])
            partners_posted[:, b, k] = np.fmax(partners_posted[:, b, k], posted[:, a, k])
    duration = completed - posted
    with np.errstate(invalid="ignore"):
        not_ready = np.clip(partners_posted - posted, 0, duration)
    traffic.round_labels = labels
    traffic.peer_not_ready_s = not_ready
    traffic.round_transfer_s = duration - not_ready
    traffic.raw_rounds = [
        [
            [
                [ph, ix, tp / 1e9 + offsets[rank], td / 1e9 + offsets[rank]]
                for ph, ix, tp, td in rec["rounds"]
            ]
            for rec in (row[rank] for row in rows)
        ]
        for rank in range(p)
    ]
