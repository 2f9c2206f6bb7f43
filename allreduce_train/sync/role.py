"""The sync role in the run's lifecycle (run.lifecycle): every rank a Trainer, all stepping
together, the checks, evaluations and checkpoints between steps where they fall due.

On a terminal, rank 0 alone prints a progress line every few seconds within a long epoch
(run.console.Progress, from its own clock: nothing is exchanged for it). SIGINT and SIGTERM
stop the loop after a step every rank agrees on, with a checkpoint: the
ranks compare their flags about every AGREE_S seconds (a step count fixed after the second
step: a small collective every step cost the default job 5-30% here).
"""

from __future__ import annotations

import time

import numpy as np

from netsim.record import rundir

from ..comm import Agreement
from ..maths import data
from ..run import console
from ..run.checkpoint import Snapshot
from ..run.lifecycle import Run, Totals
from .trainer import Trainer

AGREE_S = 0.1


class SyncRole:
    """A Trainer, as the lifecycle sees it."""

    def __init__(self, trainer: Trainer):
        self.trainer = tr = trainer
        self.model, self.dataset, self.world, self.cfg = tr.model, tr.dataset, tr.world, tr.cfg
        self.device = tr.backend.description + tr.exchange.description
        self.watchdog = tr.watchdog

    def describe(self) -> dict:
        tr, world = self.trainer, self.world
        return {
            "local_batch_by_rank": [
                data.local_count(self.cfg.global_batch, world.world_size, r)
                for r in range(world.world_size)
            ],
            "steps_per_epoch": tr.steps_per_epoch,
            "total_steps": tr.total_steps,
            "node_of_rank": tr.node_of_rank,
            # the gradient's buckets in launch order: where each lies (bytes) and the layer
            # whose backward completes it; overlap: all-reduced during backward
            "buckets": [
                {"offset": b.lo * tr.model.dtype.itemsize,
                 "bytes": (b.hi - b.lo) * tr.model.dtype.itemsize, "layer": b.layer}
                for b in tr.buckets
            ],
            "overlap": tr.exchange.overlap,
        }  # fmt: skip

    def banner(self, description: dict) -> str:
        return console.banner(description)

    def open_records(self, run_dir: str):
        self.run_dir = run_dir
        return self.trainer.new_recorder(run_dir) if self.cfg.record else None

    def record_into(self, recorder) -> None:
        self.trainer.record_into(recorder)

    def train(self, run: Run) -> float:
        """Every step from the first not done, with the checks, evaluations and checkpoints
        between; returns its wall time."""
        tr, cfg, world, stops = self.trainer, self.cfg, self.world, run.stops
        tr.watchdog = self.watchdog = dog = run.watchdog
        tr.verify_replicas(-1)  # same seed, same init: prove it before spending time
        self.meter = meter = EpochMeter(tr, run.out)
        agreement = Agreement(world)
        wall_start, first, every = time.perf_counter(), tr.totals.steps, 0
        progress = None  # rank 0's lines within a long epoch: its own clock, no collective
        if world.is_root and not cfg.quiet and console.terminal():
            progress = console.Progress(first, tr.total_steps, tr.steps_per_epoch, cfg.global_batch)
        try:
            for step in range(first, tr.total_steps):
                tr.step(step)
                self.between_steps(step)
                if progress is not None and (line := progress.step(step)) is not None:
                    world.log(line)
                done = step + 1
                if every <= 1:  # the first steps, and steps of AGREE_S or more: agree now
                    stop = agreement.now(stops.flag)
                else:  # short steps: a compare every `every` steps, read `every` steps later
                    stop = agreement.post(stops.flag) if (done - first) % every == 0 else 0
                if done - first == 2:  # the same count on every rank: rank 0's clock decides
                    per_step = world.bcast((time.perf_counter() - wall_start) / 2)
                    every = max(1, min(1000, round(AGREE_S / max(per_step, 1e-6))))
                if stop and done == tr.total_steps:
                    stop = 0  # the last step: the run ends as it would have, whole
                if stop or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
                    cut_start = time.perf_counter()
                    try:
                        run.cut(step, stop)
                    finally:
                        meter.aside_s += time.perf_counter() - cut_start
        finally:
            agreement.close()
        dog.enter(tr.total_steps - 1, "the end of the run")
        if cfg.eval_every and tr.total_steps % cfg.eval_every:
            meter.evaluate(tr.total_steps - 1)
        dog.leave()
        return time.perf_counter() - wall_start

    def between_steps(self, step: int) -> None:
        """The weight check, the evaluation and the epoch's line, where they fall due."""
        tr, cfg, dog, done = self.trainer, self.cfg, self.watchdog, step + 1
        if cfg.check_every and done % cfg.check_every == 0:
            dog.enter(step, "the weight check")
            tr.verify_replicas(step)
            dog.leave()
        end_of_epoch = done % tr.steps_per_epoch == 0 or done == tr.total_steps
        if (cfg.eval_every and done % cfg.eval_every == 0) or (not cfg.eval_every and end_of_epoch):
            dog.enter(step, "the evaluation")
            self.meter.evaluate(step)
            dog.leave()
        if end_of_epoch:
            dog.enter(step, "the epoch's figures")
            self.meter.end_epoch(step)
            dog.leave()

    def snapshot(self) -> Snapshot | None:
        """Every replica bit-identical (checked), then rank 0's state."""
        tr = self.trainer
        tr.verify_replicas(tr.totals.steps - 1)
        return tr.snapshot() if self.world.is_root else None

    def finish(self, wall_s: float) -> tuple[dict, list | None]:
        tr, world, cfg = self.trainer, self.world, self.cfg
        digest = tr.verify_replicas(tr.total_steps - 1)
        t = tr.totals
        per_rank = world.allgather((t.compute_s, t.comm_s, wall_s, wall_s - self.meter.aside_s))
        wall, steps_wall = max(r[2] for r in per_rank), max(r[3] for r in per_rank)
        compute, comm = sum(r[0] for r in per_rank), sum(r[1] for r in per_rank)
        totals = {
            "complete": True,
            "world_size": world.world_size,
            "steps": t.steps,
            "global_batch": cfg.global_batch,
            "wall_s": wall,
            # the steps' own wall time: less the evaluations and checkpoints between them,
            # which a training loop timed elsewhere (PyTorch DDP's, bench/torch_ddp.py) leaves
            # out; samples_per_s is the training's rate over it
            "steps_wall_s": steps_wall,
            "samples_per_s": (t.steps - tr.start_step) * cfg.global_batch / steps_wall,
            "first_step": tr.start_step,  # > 0: resumed from a checkpoint
            "test_accuracy": self.meter.accuracy,
            "test_loss": self.meter.test_loss,
            "allreduce": cfg.allreduce,
            "buffer_bytes": tr.model.nparams * tr.model.dtype.itemsize,
            "compute_s_by_rank": [r[0] for r in per_rank],
            "comm_s_by_rank": [r[1] for r in per_rank],
            "comm_share": comm / (compute + comm) if compute + comm else 0.0,
            "weights_blake2b": f"{digest:016x}",
            "replicas_identical": True,
            "nonfinite_skipped_steps": t.skipped,  # --nonfinite skip: steps not applied
        }
        # Every rank's records to rank 0 over MPI: node-local run directories work too.
        records = world.gather(rundir.read_steps(self.run_dir, world.rank)) if cfg.record else None
        return totals, records


class EpochMeter:
    """Per-epoch progress: rank 0 prints one line, with figures agreed over all ranks."""

    def __init__(self, trainer: Trainer, out):
        self.trainer, self.out = trainer, out
        self.accuracy = self.test_loss = float("nan")
        self.start = self.run_start = time.perf_counter()
        self.mark = Totals(**vars(trainer.totals))  # a resumed run's start
        # seconds this rank spent on evaluations and checkpoints (SyncRole.train adds the
        # latter): time between steps, left out of every samples/s
        self.aside_s = self.aside_at_start = 0.0

    def evaluate(self, step: int) -> None:
        """Test accuracy and loss after `step`, and (rank 0) a line of evaluations.jsonl with
        the time since training began: the running time against accuracy of the classic
        studies (python -m netsim compare)."""
        tr, start = self.trainer, time.perf_counter()
        wall = tr.world.max_(np.array([start - self.run_start]))[0]
        self.accuracy, self.test_loss = tr.evaluate()
        if tr.world.is_root:
            epoch = (step + 1) / tr.steps_per_epoch
            self.out.evaluation(step, epoch, wall, self.accuracy, self.test_loss)
        self.aside_s += time.perf_counter() - start

    def end_epoch(self, step: int) -> None:
        tr, t, m = self.trainer, self.trainer.totals, self.mark
        steps_s = time.perf_counter() - self.start - (self.aside_s - self.aside_at_start)
        steps_wall = tr.world.max_(np.array([steps_s]))[0]
        loss, samples, compute, comm = tr.world.sum_(
            np.array(
                [
                    t.loss_sum - m.loss_sum,
                    t.samples - m.samples,
                    t.compute_s - m.compute_s,
                    t.comm_s - m.comm_s,
                ]
            )
        )
        tr.world.log(
            console.epoch_line(
                step,
                tr.steps_per_epoch,
                loss / samples,
                self.test_loss,
                self.accuracy,
                samples / steps_wall,
                comm / (compute + comm),
            )
        )
        self.mark = Totals(**vars(t))
        self.start, self.aside_at_start = time.perf_counter(), self.aside_s
