"""From every rank's raw step records to who sent what to whom, and who waited for whom.

Input: the run's description (config.json) and each rank's step records. Each record holds
this rank's clock readings at step start, collective entry, collective exit and step end,
and per round of the schedule when it was posted and completed. The clock offsets measured
at start-up put all ranks on rank 0's clock; then, per step:

  exposed_s, hidden_s (docs/ARCHITECTURE.md, Definitions): the part of the step this rank's
      compute waited on communication (collective entry to exit: after backward, until the
      last bucket's sum is there), and the time buckets were in flight outside that wait,
      under backward; comm_s is their sum. A run without buckets, or without overlap,
      hides nothing: exposed_s is comm_s.
  wait_s (the synchronisation stall)  max over ranks of entry time - this rank's entry time,
      capped at exposed_s: the time this rank waited after backward only because others
      arrived later.
  transfer_s = exposed_s - wait_s: the rest of the wait, the all-reduce's own (so that
      compute + transfer + stall is the step).
  per round, peer_not_ready_s: how long after this rank posted the round its partners in
      that round (those it sends to or receives from) posted theirs; the rest of the round's
      time is its transfer. Late arrivals ripple round by round through a ring; this shows where.
      A bucketed run has each bucket's rounds, from its own schedule (its algorithm, its size).
  caused_wait_s: the rank that entered the collective last is charged with the waits of all
      the others in that step: the rank that made others wait.
  buckets: per step, rank and bucket (launch order) when its gradient was ready, when its
      all-reduce started and ended (on the global clock), its bytes, and the part of its
      time outside the rank's exposed wait (hidden under backward).
  compress_s: a compressed run's (--compress) own compute, per step and rank (and per
      bucket): its rounds of phase "compress" (exchange.compress records compute round j
      of a bucket as ("compress", j), before its collective j and after the last). They
      are compute of the exchange, inside the bucket's span, not rounds of a schedule. A
      compressed bucket's rounds are those of netsim.algorithms.compression's plan for it
      (`bucket_collectives`: the all-reduce of the bucket on the narrow type, top-k's ring
      all-gather, PowerSGD's all-reduces), each checked against its collective's schedule;
      a collective other than the bucket's own all-reduce names its phases after what it
      carries ("P reduce-scatter", "values and indices all-gather"), so that PowerSGD's
      three all-reduces' rounds stay apart.

The clock offsets, the stall and the blame are those of the design (docs/ARCHITECTURE.md).

(Past 300 lines: one merge of the records onto one clock; the stall, the rounds and the
buckets are read off the same rows with the same offsets, and a round must land on the
global clock exactly as its bucket does, to nest in it.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from netsim import algorithms
from netsim.algorithms import compression as methods
from netsim.errors import InputError
from netsim.record import rundir

COMPRESS = "compress"  # the phase of a compression's compute round (exchange.compress's)

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
class Buckets:
    """A bucketed run's buckets: `layout[b]` {offset, bytes, layer (None where config.json
    does not say), algorithm} in launch order; per (step, rank, bucket) arrays: ready, start,
    end on the global clock (s), hidden_s (its time outside the rank's exposed wait), and its
    tally bytes_sent, bytes_recv, messages (NaN where the collective hides them)."""

    layout: list[dict]
    overlap: bool
    ready: np.ndarray
    start: np.ndarray
    end: np.ndarray
    hidden_s: np.ndarray
    bytes_sent: np.ndarray
    bytes_recv: np.ndarray
    messages: np.ndarray
    compress_s: np.ndarray | None = None  # (S, p, B): the compression's compute (0: none)

    def __len__(self) -> int:
        return len(self.layout)


@dataclass(eq=False)
class Traffic:
    world_size: int
    algorithm: algorithms.Algorithm  # the run's (config.json's --allreduce)
    node_of_rank: np.ndarray  # (p,)
    steps: np.ndarray  # (S,) step numbers recorded on every rank
    steps_by_rank: list[int]  # records found per rank (differ only for a crashed run)
    complete: bool  # the run ended (summary.json) and no file of it is damaged
    observable: bool  # False for MPI_Allreduce: bytes and rounds unknown
    table: dict[str, np.ndarray]  # name -> (S, p): compute_s, comm_s, exposed_s, hidden_s, ...
    round_labels: list[tuple[str, int]] = field(default_factory=list)
    round_bucket: list[int] | None = None  # per round label, its bucket (a bucketed run)
    peer_not_ready_s: np.ndarray | None = None  # (S, p, rounds), NaN where a rank had no message
    round_transfer_s: np.ndarray | None = None
    links: np.ndarray | None = None  # (L, 6): step, src, dst, bytes, messages, bucket
    # t_start, t_comm, t_comm_end, t_end: (S, p) on the global clock
    times: dict[str, np.ndarray] = field(default_factory=dict)
    # per rank, per step: [[phase, index, posted, completed, bucket]] on the global clock
    raw_rounds: list | None = None
    schedule: algorithms.Schedule | None = None  # the run's schedule of one all-reduce
    schedules: list = field(default_factory=list)  # one per bucket (one: the run's schedule)
    buckets: Buckets | None = None  # None: records without buckets (before step file 5)
    damage: list[str] = field(default_factory=list)  # rundir.load's, one line per file
    compression: str = methods.NONE  # config's --compress, as written
    plans: list | None = None  # per bucket, a compressed run's collectives (compression's)

    @property
    def nodes(self) -> int:
        return len(set(self.node_of_rank.tolist()))

    @property
    def nbuckets(self) -> int:
        """How many buckets the gradient was all-reduced in (1: unbucketed)."""
        return len(self.buckets) if self.buckets is not None else 1

    def bucket_of_round(self, k: int) -> dict:
        """{"bucket": b} for round label k of a run in more than one bucket, else nothing:
        what the rounds' rows in summary.json and steps.jsonl add."""
        return {"bucket": self.round_bucket[k]} if self.nbuckets > 1 else {}

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
    # records without buckets (older step files, hand-made ones): all exposed, none hidden
    for k, default in (("exposed_s", "comm_s"), ("hidden_s", None)):
        table[k] = np.array(
            [[rec.get(k, rec[default] if default else 0.0) for rec in row] for row in rows],
            dtype=float,
        ).reshape(len(rows), p)
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
        np.clip(enter.max(axis=1, keepdims=True) - enter, 0, table["exposed_s"])
        if len(rows)
        else np.zeros((0, p))
    )
    table["transfer_s"] = table["exposed_s"] - table["wait_s"]
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
    traffic.buckets = _buckets(config, rows, offsets, times)
    traffic.compression = str(compression(config))
    traffic.table["compress_s"] = (
        traffic.buckets.compress_s.sum(axis=2) if traffic.buckets is not None
        else np.zeros((len(rows), p))
    )  # fmt: skip
    if observable:
        traffic.links = _links(common, rows)
        if traffic.compression != methods.NONE and traffic.buckets is not None:
            layout = traffic.buckets.layout
            traffic.plans, traffic.schedules = [], []
            for b in range(len(layout)):
                plan, algorithm, context = bucket_collectives(config, layout, b)
                traffic.plans.append(plan)
                traffic.schedules.append(_joined(plan, algorithm, p, context))
            traffic.schedule = traffic.schedules[0] if len(layout) == 1 else None
        elif traffic.buckets is None:
            traffic.schedule = algorithm.schedule(
                p, config["nparams"], **rundir.allreduce_context(config)
            )
            traffic.schedules = [traffic.schedule]
        else:
            layout = traffic.buckets.layout
            traffic.schedules = [
                a.schedule(p, n, **context)
                for a, n, context in (
                    bucket_allreduce(config, layout, b) for b in range(len(layout))
                )
            ]
            traffic.schedule = traffic.schedules[0] if len(traffic.buckets) == 1 else None
        _rounds(traffic, rows, offsets)
    return traffic


def bucket_algorithm(config: dict, b: int, nbuckets: int) -> tuple[algorithms.Algorithm, int]:
    """(algorithm, channels) bucket b of nbuckets ran: --allreduce auto's pick for its size
    (config.json's allreduce_choice), else the run's."""
    cfg = config["config"]
    picks = (cfg.get("allreduce_choice") or {}).get("buckets")
    if picks and len(picks) == nbuckets:
        return algorithms.get(picks[b]["algorithm"]), picks[b].get("channels", 1)
    return algorithms.get(cfg["allreduce"]), cfg.get("channels", 1)


def bucket_allreduce(config: dict, layout: list[dict], b: int) -> tuple:
    """(algorithm, nelems, context) of bucket b's all-reduce as the factory gave it to its
    executor: its elements, and the layer segments clipped to it, relative to it."""
    algorithm, channels = bucket_algorithm(config, b, len(layout))
    itemsize = config["buffer_bytes"] // config["nparams"]
    lo, n = layout[b]["offset"] // itemsize, layout[b]["bytes"] // itemsize
    parts = [
        (max(s, lo) - lo, min(s + c, lo + n) - max(s, lo)) for s, c in config.get("segments") or ()
    ]
    parts = [(s, c) for s, c in parts if c > 0] or None
    return algorithm, n, {"node_of_rank": config["node_of_rank"], "segments": parts,
                          "channels": channels}  # fmt: skip


def compression(config: dict) -> methods.Compression:
    """The run's --compress (config.json's, as parsed and written; none before it existed)."""
    try:
        return methods.parse(config["config"].get("compress") or methods.NONE)
    except InputError as exc:
        raise rundir.RunDirError(f"config.json: {exc}") from None


def bucket_tensors(config: dict, lo: int, n: int) -> list[tuple[int, tuple[int, ...]]]:
    """The tensors of the bucket of elements [lo, lo + n), (count, shape as DDP views it),
    in buffer order, as the factory gives them to the compression: layer i of the MLP
    (config.json's layers, widths a -> b; its segment) holds W, (b, a) to DDP, then b."""
    widths, segments = config.get("layers"), config.get("segments")
    if not widths or not segments or len(segments) != len(widths) - 1:
        return [(n, (n,))]  # no layers said: one vector (all a method but PowerSGD needs)
    out = []
    for (start, count), a, b in zip(segments, widths, widths[1:]):
        if count != (a + 1) * b:
            raise rundir.RunDirError(
                f"config.json: layer segment {[start, count]} is not a {a} -> {b} layer's"
            )
        out += [(start, a * b, (b, a)), (start + a * b, b, (b,))]
    return [(count, shape) for start, count, shape in out if lo <= start < lo + n]


def bucket_collectives(config: dict, layout: list[dict], b: int, world_size=None) -> tuple:
    """(plan, algorithm, context) of bucket b on world_size ranks (default: the run's): the
    collectives netsim.algorithms.compression defines for it under the run's --compress
    (none: the all-reduce of the bucket), each all-reduce by the bucket's algorithm in its
    context (allreduce_context's: node_of_rank, segments, channels)."""
    algorithm, n, context = bucket_allreduce(config, layout, b)
    itemsize = config["buffer_bytes"] // config["nparams"]
    lo = layout[b]["offset"] // itemsize
    method = compression(config)
    tensors = bucket_tensors(config, lo, n)
    if method.method == methods.POWERSGD and sum(c for c, _ in tensors) != n:
        raise rundir.RunDirError(
            f"config.json: bucket {b} is not whole tensors of its layers (PowerSGD's)"
        )
    dtype = config["config"].get("dtype") or {4: "float32", 8: "float64"}.get(itemsize, "float32")
    plan = methods.collectives(method, tensors, world_size or config["world_size"], dtype)
    return plan, algorithm, context


def qualified(collective: methods.Collective, phase: str) -> str:
    """A round's phase as the reports name it: the bucket's own all-reduce's as its schedule
    names it, another collective's after what it carries (PowerSGD's "P reduce-scatter")."""
    return phase if collective.what == "gradient" else f"{collective.what} {phase}"


def _joined(plan, algorithm, p: int, context: dict) -> algorithms.Schedule:
    """A compressed bucket's collectives' schedules as one, in order, phases qualified."""
    parts = methods.schedules(plan, algorithm, p, **context)
    rounds = tuple(
        dataclasses.replace(r, phase=qualified(c, r.phase))
        for c, schedule in zip(plan, parts)
        for r in schedule.rounds
    )
    name = ", ".join(dict.fromkeys(schedule.algorithm for schedule in parts))
    return algorithms.Schedule(name, p, sum(c.nelems for c in plan), rounds)


def _buckets(config: dict, rows, offsets, times) -> Buckets | None:
    """The buckets of a run whose records have them (every record the same buckets)."""
    if not rows or any(rec.get("buckets") is None for row in rows for rec in row):
        return None
    nb = len(rows[0][0]["buckets"])
    for row in rows:
        for rank, rec in enumerate(row):
            if len(rec["buckets"]) != nb:
                raise rundir.RunDirError(
                    f"rank {rank}'s step {rec['step']} has {len(rec['buckets'])} buckets, "
                    f"step {rows[0][0]['step']} of rank 0 {nb}"
                )

    def each(key, per=1.0):
        return np.array(
            [[[np.nan if b[key] is None else b[key] for b in rec["buckets"]] for rec in row]
             for row in rows], dtype=float,
        ).reshape(len(rows), len(offsets), nb) / per  # fmt: skip

    # on the global clock as the rounds are (_rounds), to the bit: a round nests in its bucket
    ready, start, end = (each(k, 1e9) + offsets[None, :, None] for k in ("ready_ns", "start_ns",
                                                                       "end_ns"))  # fmt: skip
    lo, hi = times["t_comm"][:, :, None], times["t_comm_end"][:, :, None]
    waited = np.clip(np.minimum(end, hi) - np.maximum(start, lo), 0, None)
    described = config.get("buckets") or []
    layout = [
        {
            "offset": b["offset"],
            "bytes": b["bytes"],
            "layer": described[k].get("layer") if len(described) == nb else None,
            "algorithm": bucket_algorithm(config, k, nb)[0].name,
        }
        for k, b in enumerate(rows[0][0]["buckets"])
    ]
    return Buckets(
        layout,
        bool(config.get("overlap", False)),
        ready,
        start,
        end,
        np.clip(end - start, 0, None) - waited,
        each("bytes_sent"),
        each("bytes_recv"),
        each("messages"),
        np.array(
            [[[compress_ns(b) for b in rec["buckets"]] for rec in row] for row in rows],
            dtype=float,
        ).reshape(len(rows), len(offsets), nb)
        / 1e9,
    )


def compress_ns(bucket: dict) -> int:
    """A bucket's compression compute in one step: its rounds of phase "compress"."""
    return sum(t1 - t0 for phase, _, t0, t1 in bucket.get("rounds") or () if phase == COMPRESS)


def _links(common, rows) -> np.ndarray:
    """step, src, dst, bytes, messages, bucket: each bucket's own tally where the records
    have one, else the step's (bucket 0)."""
    out = []
    for s, row in zip(common, rows):
        for rec in row:
            per_bucket = rec.get("buckets") or []
            if per_bucket and all(b["links"] is not None for b in per_bucket):
                out += [[s, *link, k] for k, b in enumerate(per_bucket) for link in b["links"]]
            else:
                out += [[s, *link, 0] for link in rec["links"]]
    return np.array(out, dtype=np.int64).reshape(-1, 6)


def _blame(enter: np.ndarray, wait: np.ndarray) -> np.ndarray:
    caused = np.zeros_like(wait)
    if len(enter):
        last = enter.argmax(axis=1)
        caused[np.arange(len(enter)), last] = wait.sum(axis=1)
    return caused


def _rounds(traffic: Traffic, rows, offsets) -> None:
    """Each round's peer-not-ready time and transfer; a bucketed run's rounds are those of
    every bucket's schedule in turn (round_bucket says whose)."""
    labels, owner, position = [], [], {}
    for b, schedule in enumerate(traffic.schedules):
        for r in schedule.rounds:
            position[(b, r.phase, r.index)] = len(labels)
            labels.append((r.phase, r.index))
            owner.append(b)
    nsteps, p, nrounds = len(rows), traffic.world_size, len(labels)
    posted = np.full((nsteps, p, nrounds), np.nan)
    completed = np.full((nsteps, p, nrounds), np.nan)
    raw = [[[] for _ in rows] for _ in range(p)]
    for s, row in enumerate(rows):
        for rank, rec in enumerate(row):
            for b, phase, index, t_post, t_done in _recorded_rounds(rec, rank, traffic.plans):
                if phase == COMPRESS:  # compute of the exchange, in no schedule
                    times = (t_post / 1e9 + offsets[rank], t_done / 1e9 + offsets[rank])
                    raw[rank][s].append([phase, index, *times, b])
                    continue
                k = position.get((b, phase, index))
                if k is None:
                    which = traffic.schedules[b].algorithm
                    where = f"bucket {b}'s schedule ({which})" if traffic.buckets else (
                        f"schedule of config.json's {which}")  # fmt: skip
                    raise rundir.RunDirError(
                        f"rank {rank}'s step {rec['step']} has round {phase} {index}, which the "
                        f"{where} does not"
                    )
                posted[s, rank, k] = t_post / 1e9 + offsets[rank]
                completed[s, rank, k] = t_done / 1e9 + offsets[rank]
                raw[rank][s].append([phase, index, posted[s, rank, k], completed[s, rank, k], b])
    partners_posted = np.full_like(posted, -np.inf)
    rounds = [r for schedule in traffic.schedules for r in schedule.rounds]
    for k, rnd in enumerate(rounds):
        for a, b in zip(rnd.src, rnd.dst):  # each transfer makes a and b partners in round k
            partners_posted[:, a, k] = np.fmax(partners_posted[:, a, k], posted[:, b, k])
            partners_posted[:, b, k] = np.fmax(partners_posted[:, b, k], posted[:, a, k])
    duration = completed - posted
    with np.errstate(invalid="ignore"):
        not_ready = np.clip(partners_posted - posted, 0, duration)
    traffic.round_labels = labels
    traffic.round_bucket = owner if traffic.buckets is not None else None
    traffic.peer_not_ready_s = not_ready
    traffic.round_transfer_s = duration - not_ready
    traffic.raw_rounds = raw


def _recorded_rounds(rec: dict, rank: int, plans=None):
    """(bucket, phase, index, posted_ns, completed_ns) of each round a record has; a
    compressed bucket's (plans: each bucket's collectives) with its phases qualified by the
    collective they belong to, the one after the compute round ("compress", j) being the
    plan's collective j."""
    if rec.get("buckets") is None:
        return [(0, *r) for r in rec["rounds"] or ()]
    out = []
    for b, bucket in enumerate(rec["buckets"]):
        plan, j = plans[b] if plans else None, None
        for phase, index, *times in bucket["rounds"] or ():
            if phase == COMPRESS:
                j = index
            elif plan is not None:
                if j is None or j >= len(plan):
                    raise rundir.RunDirError(
                        f"rank {rank}'s step {rec['step']} has round {phase} {index} in bucket "
                        f"{b} outside its {len(plan)} collectives"
                    )
                phase = qualified(plan[j], phase)
            out.append((b, phase, index, *times))
    return out
