"""The async role in the run's lifecycle (run.lifecycle): a Downpour replica or a parameter
server (downpour.ranks), from the start to the run directory's last file.

At the start, as in a sync run: config.json (with the `downpour` layout), every replica's
step file and every server's event file, the first writes agreed by all ranks. Then every
rank starts at once (a barrier: the wall clock is everyone's) and no collective is called
but at a cut: replica 0 (rank 0) alone evaluates its own copy of the weights where an
evaluation falls due (every --eval-every batches of the run, else at each epoch's end,
counting R batches per step of its own) and appends it to evaluations.jsonl, so `netsim
compare` reads an async run as a sync one. At the end every rank takes the servers' final
shards, the test set is scored by all ranks, and the lifecycle writes checkpoint.npz
(weights and the servers' optimizer state), the records (links.csv, updates.jsonl),
summary.json and the report.

Checkpoints mid-run fall at cuts (cuts: every replica after its first k steps, every push
before applied), every --checkpoint-every steps of each replica and at SIGINT or SIGTERM
(server 0 agrees on the step; no collective while the replicas train). At a cut every rank
meets in the lifecycle's `Run.cut`: the servers' shards joined on every rank and their
optimizer state on rank 0, which writes it, with every replica's step; then every replica
takes the joined weights as its own, as a run resumed from that checkpoint starts with, so
that both go on from the same state (one replica fetching and pushing every step: already
its own, and a resumed run is bit for bit the run that never stopped). With a signal every
rank then ends (Interrupted). `--resume` cuts the checkpoint's weights and optimizer state
into the servers' shards and starts every replica at its step.
"""

from __future__ import annotations

import time

import numpy as np

from netsim.record import rundir, serverfile
from netsim.record.recorder import Recorder

from ..exits import ReplicasDiverged
from ..maths import data
from ..maths.evaluate import digest, score
from ..maths.model import nparams
from ..run import console
from ..run.checkpoint import Snapshot
from ..run.lifecycle import Run
from .ranks import Layout, Replica, Server


class AsyncRole:
    """This rank's part of a Downpour run (a Replica or a Server), as the lifecycle sees it."""

    def __init__(self, cfg, world, backend, dataset, transport, state: dict | None = None):
        """state: the checkpoint a resumed run goes on from (checkpoint.read), or None."""
        self.cfg, self.world, self.backend, self.dataset = cfg, world, backend, dataset
        self.spe = len(dataset.y_train) // cfg.global_batch
        widths = cfg.widths_for(dataset.nfeatures, dataset.nclasses)
        total = cfg.steps or cfg.epochs * self.spe  # the run's batches, dealt round-robin
        first = None if state is None else state["replica_steps"]
        self.layout = layout = Layout(cfg, world.world_size, nparams(widths), total, first)
        self.is_replica = world.rank < layout.replicas
        kind = Replica if self.is_replica else Server
        self.part = kind(cfg, world.rank, layout, backend, dataset, transport, None)
        self.model = self.part.model
        # the totals of the runs before (a checkpoint's are the whole training's)
        self.before = np.zeros(4) if state is None else np.array(state["totals"], np.float64)
        if state is not None:
            self.part.restore(state["params"] if self.is_replica else state)
        self.joined = None  # the servers' weights at the last snapshot
        self.device = backend.description + (
            "; pushes and fetches through host memory" if backend.on_gpu else ""
        )
        self.records = None

    def describe(self) -> dict:
        layout, cfg = self.layout, self.cfg
        return {
            "local_batch_by_rank": [cfg.global_batch] * layout.replicas + [0] * cfg.servers,
            "steps_per_epoch": self.spe,
            "total_steps": layout.total,
            "node_of_rank": self.world.node_of_rank(cfg.ranks_per_node),
            "downpour": layout.record(),
        }

    def banner(self, description: dict) -> str:
        layout, cfg = self.layout, self.cfg
        return console.banner(description) + (
            f"\n  async    Downpour SGD: replicas 0-{layout.replicas - 1}, servers "
            f"{', '.join(map(str, layout.servers))}; fetch every {cfg.fetch_every}, push every "
            f"{cfg.push_every} steps; {layout.total} batches dealt round-robin"
        )

    def open_records(self, run_dir: str):
        if not self.cfg.record:
            return None
        rank, part = self.world.rank, self.part
        if self.is_replica:
            return Recorder(rundir.step_file(run_dir, rank), rank, self.spe, self.cfg.global_batch)
        return serverfile.ServerLog(
            serverfile.path(run_dir, rank), rank, rank - self.layout.replicas, part.lo_hi,
            part.model.dtype.itemsize)  # fmt: skip

    def record_into(self, records) -> None:
        self.records = records
        if self.is_replica:
            self.part.recorder = records
        else:
            self.part.log = records

    def train(self, run: Run) -> float:
        self.part.dog, self.out = run.watchdog, run.out
        self.world.barrier()
        start = time.perf_counter()
        part, layout, stops = self.part, self.layout, run.stops
        if self.is_replica:
            meter = Meter(part, self.dataset, run.out, start, self.spe)
            cut_at, stop, ending = None, 0, False  # the cut agreed ahead; the run ending
            for step in range(part.first, part.steps):
                part.step(step)
                if self.world.is_root:
                    meter.after(step)
                done = step + 1
                if cut_at is None and not ending and layout.can_cut(done):
                    signal = part.cuts.notice() or stops.flag  # the notice taken in any case
                    if signal or layout.cuts_after(done):
                        k, stop = part.cuts.ask(done, signal, run.watchdog)  # -1: no cut
                        ending, cut_at = k < 0, None if k < 0 else k
                if done == cut_at:
                    cut_at = None
                    part.cuts.cut()
                    self.cut(run, done, stop)
            part.finish()
        else:
            try:
                while part.serve(stops):
                    self.cut(run, 0, 0)
            finally:  # (a stop at a cut ends the run here too: Interrupted)
                part.close()
        return time.perf_counter() - start

    def cut(self, run: Run, done: int, stop: int) -> None:
        """Collective, every replica after its first `done` steps (rank 0's say): the
        checkpoint, then (a stop) the end, or every replica on the servers' weights."""
        run.watchdog.enter(None, "the cut")  # (the servers learn its step here)
        done, stop = self.world.bcast((done, stop))
        run.watchdog.leave()
        run.cut(done * self.layout.replicas - 1, stop)  # (the run's last batch done)
        if self.is_replica:
            self.part.restore(self.joined)

    def _params(self) -> np.ndarray:
        """Collective: the servers' shards joined, on every rank."""
        shards = self.world.allgather(self.part.shard if not self.is_replica else None)
        return np.concatenate([shards[s] for s in self.layout.servers])

    def snapshot(self) -> Snapshot | None:
        """Collective: the servers' shards (joined on every rank: `joined`) and optimizer
        state, and every replica's steps done, on rank 0."""
        self.joined = params = self._params()
        part = self.part
        states = self.world.gather(part.done if self.is_replica else part.optimizer.state)
        t = part.totals if self.is_replica else None
        mine = [t.samples, t.compute_s, t.comm_s, t.loss_sum] if t is not None else 0
        totals = self.world.sum_(np.array(mine, dtype=np.float64) * np.ones(4))
        if not self.world.is_root:
            return None
        replicas = states[: self.layout.replicas]
        servers = [states[s] for s in self.layout.servers]
        cfg = self.cfg
        return Snapshot(
            step=sum(replicas),  # the run's batches done
            params=params,
            optimizer={k: np.concatenate([st[k] for st in servers]) for k in servers[0]},
            layers=tuple(self.model.widths),
            config=cfg.to_dict(),
            fingerprint=cfg.fingerprint(),
            totals=tuple((totals + self.before).tolist()),
            replica_steps=replicas,
        )

    def finish(self, wall_s: float) -> tuple[dict, list | None]:
        """The servers' weights everywhere, the test set scored, every rank's totals and
        records to rank 0, and (rank 0) the final evaluation line."""
        world, cfg, layout, part = self.world, self.cfg, self.layout, self.part
        params = self._params()
        part.model.params[...] = self.backend.xp.asarray(params)
        n = len(self.dataset.y_test)
        rows = np.arange(n)[data.local_slice(n, world.world_size, world.rank)]
        mine = score(part.model, self.dataset, rows, self.backend.xp, part.model.dtype.type)
        correct, loss, count = world.sum_(mine)
        mine = (
            (
                part.steps,
                part.totals.samples,
                part.totals.loss_sum,
                part.totals.compute_s,
                part.totals.comm_s,
            )
            if self.is_replica
            else (0, 0, 0.0, part.busy_s, 0.0)
        )
        per_rank = world.allgather(mine)
        wall = max(world.allgather(wall_s))
        records = world.gather(self._my_records()) if cfg.record else None
        digests = world.allgather_u64(digest(params))
        if len(set(digests.tolist())) != 1:  # the allgather itself failed us: a bug, or hardware
            raise ReplicasDiverged("the final weights differ between ranks")
        samples = sum(r[1] for r in per_rank)
        totals = {
            "complete": True,
            "mode": "async",
            "world_size": world.world_size,
            "servers": cfg.servers,
            "steps": layout.total,
            "steps_by_rank": [r[0] for r in per_rank],
            "global_batch": cfg.global_batch,
            "wall_s": wall,
            "samples_per_s": samples / wall if wall else None,
            "first_step": sum(layout.first),  # > 0: resumed (the batches done before)
            "test_accuracy": correct / count,
            "test_loss": loss / count,
            "train_loss": sum(r[2] for r in per_rank) / samples if samples else None,
            "buffer_bytes": layout.bounds[-1].item() * part.model.dtype.itemsize,
            "compute_s_by_rank": [r[3] for r in per_rank],  # a server's: its busy time
            "comm_s_by_rank": [r[4] for r in per_rank],
            "weights_blake2b": f"{int(digests[0]):016x}",
            "replicas_identical": True,  # every rank holds the servers' weights now
        }
        if world.is_root:
            self.out.evaluation(layout.total - 1, layout.total / self.spe, wall,
                                totals["test_accuracy"], totals["test_loss"])  # fmt: skip
        return totals, records

    def _my_records(self):
        if self.records is None:
            return None
        if not self.is_replica:
            return serverfile.read(self.records.path)[1]
        return rundir.read_steps(self.out.path, self.world.rank)


class Meter:
    """Replica 0's view while the run goes: its own copy evaluated where an evaluation falls
    due (into evaluations.jsonl, with the wall time), and a line per epoch."""

    def __init__(self, role: Replica, dataset, out, start: float, spe: int):
        self.role, self.dataset, self.out, self.start, self.spe = (
            role, dataset, out, start, spe)  # fmt: skip
        self.every = role.cfg.eval_every or spe
        self.mark = (0.0, 0, 0.0, 0.0, start)  # loss, samples, compute, comm, time

    def after(self, step: int) -> None:
        r, role = self.role.layout.replicas, self.role
        done, before = (step + 1) * r, step * r  # the run's batches, as replica 0 sees them
        if step == role.steps - 1 or done // self.every == before // self.every:
            return
        wall = time.perf_counter() - self.start
        correct, loss, count = score(
            role.model, self.dataset, np.arange(len(self.dataset.y_test)), role.backend.xp,
            role.dtype)  # fmt: skip
        self.out.evaluation(done - 1, done / self.spe, wall, correct / count, loss / count)
        loss0, samples0, compute0, comm0, t0 = self.mark
        t = role.totals
        samples = t.samples - samples0
        busy = t.compute_s - compute0 + t.comm_s - comm0
        print(
            f"epoch {done / self.spe:6.2f}  batch {done - 1:7d}  replica 0: train loss "
            f"{(t.loss_sum - loss0) / max(samples, 1):.4f}  test loss {loss / count:.4f}  "
            f"test acc {correct / count:.4f}  {samples / (time.perf_counter() - t0):,.0f} "
            f"samples/s  fetch+push {(t.comm_s - comm0) / max(busy, 1e-12):4.0%}",
            flush=True,
        )
        self.mark = (t.loss_sum, t.samples, t.compute_s, t.comm_s, time.perf_counter())
