"""A training run: its Trainer stepped through the epochs, the progress rank 0 prints, and
what the run directory gets (config.json at the start; the checkpoint, the merged records,
summary.json and the traffic report at the end).
"""

from __future__ import annotations

import os
import time

import numpy as np

from netsim.record import rundir
from netsim.report import files, summary, text, traffic

from . import console, data
from .backend import Backend
from .collectives import Transport
from .comm import WatchChannel, World, library_version
from .config import Config
from .train import Totals, Trainer
from .watchdog import Watchdog


def run(
    cfg: Config,
    world: World,
    backend: Backend,
    dataset: data.Dataset,
    run_dir: str,
    transport: Transport,
) -> dict:
    trainer = Trainer(cfg, world, backend, dataset, transport)
    description = config_record(trainer, run_dir)
    error, recorder = None, None
    try:  # the first writes: a full or read-only disk shows here, and all ranks agree on it
        if world.is_root:
            rundir.write_json(os.path.join(run_dir, "config.json"), description)
        if cfg.record:
            recorder = trainer.new_recorder(run_dir)
    except OSError as exc:
        error = f"rank {world.rank}: {exc.filename}: {exc.strerror}"
    error = world.agree_on_error(error)
    if error is not None:
        raise OutputError(error)
    world.log(console.banner(description))
    trainer.record_into(recorder)
    trainer.verify_replicas(-1)  # same seed, same init: prove it before spending time
    dog = trainer.watchdog = Watchdog(
        WatchChannel(world), world.rank, world.world_size, cfg.stall_warn, cfg.comm_timeout
    ).start()
    try:
        wall_s, meter = train_loop(trainer, dataset)
    finally:
        dog.close()
    if trainer.recorder is not None:
        trainer.recorder.close()
    if cfg.eval_every and trainer.total_steps % cfg.eval_every:
        meter.accuracy, meter.test_loss = trainer.evaluate()
    digest = trainer.verify_replicas(trainer.total_steps - 1)
    totals = summarize(trainer, wall_s, meter, digest)
    # Every rank's records to rank 0 over MPI: run directories on node-local disks work too.
    records = world.gather(rundir.read_steps(run_dir, world.rank)) if cfg.record else None
    if world.is_root:
        save_checkpoint(os.path.join(run_dir, "checkpoint.npz"), trainer)
        report = ""
        if records is not None:
            merged = traffic.merge(description, records, complete=True)
            files.write_outputs(run_dir, description, merged, cfg.traced_steps)
            totals["traffic"] = summary.summarize(description, merged)
            report = text.text(description, merged, totals["traffic"])
        rundir.write_json(os.path.join(run_dir, "summary.json"), totals)
        world.log(console.final_report(totals))
        if report:
            world.log(report)
    return totals


class OutputError(Exception):
    """The run directory cannot be written: raised on every rank at once (exits.OUTPUT)."""


def train_loop(trainer: Trainer, dataset: data.Dataset) -> tuple[float, EpochMeter]:
    """Every step, with the checks and evaluations between; returns its wall time and the
    progress meter."""
    cfg, dog = trainer.cfg, trainer.watchdog
    meter = EpochMeter(trainer)
    wall_start = time.perf_counter()
    for step in range(trainer.total_steps):
        if step % trainer.steps_per_epoch == 0:
            order = data.epoch_order(
                len(dataset.y_train), cfg.seed, step // trainer.steps_per_epoch
            )
        trainer.step(step, order)
        done = step + 1
        if cfg.check_every and done % cfg.check_every == 0:
            dog.enter(step, "the weight check")
            trainer.verify_replicas(step)
            dog.leave()
        end_of_epoch = done % trainer.steps_per_epoch == 0 or done == trainer.total_steps
        if (cfg.eval_every and done % cfg.eval_every == 0) or (not cfg.eval_every and end_of_epoch):
            dog.enter(step, "the evaluation")
            meter.accuracy, meter.test_loss = trainer.evaluate()
            dog.leave()
        if end_of_epoch:
            dog.enter(step, "the epoch's figures")
            meter.end_epoch(step)
            dog.leave()
    return time.perf_counter() - wall_start, meter


class EpochMeter:
    """Per-epoch progress: rank 0 prints one line, with figures agreed over all ranks."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.accuracy = self.test_loss = float("nan")
        self.start = time.perf_counter()
        self.mark = Totals()

    def end_epoch(self, step: int) -> None:
        tr, t, m = self.trainer, self.trainer.totals, self.mark
        wall = tr.world.max_(np.array([time.perf_counter() - self.start]))[0]
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
                samples / wall,
                comm / (compute + comm),
            )
        )
        self.mark = Totals(**vars(t))
        self.start = time.perf_counter()


def config_record(trainer: Trainer, run_dir: str) -> dict:
    """What config.json records: the configuration and what it resolved to on this world."""
    cfg, world, ds, model = trainer.cfg, trainer.world, trainer.dataset, trainer.model
    offsets, errors = world.clock_offsets(time.perf_counter)
    return {
        "config": cfg.to_dict(),
        "fingerprint": cfg.fingerprint(),
        "run_dir": run_dir,
        "world_size": world.world_size,
        "hostnames": list(world.hostnames),
        "pid_by_rank": world.allgather(os.getpid()),  # mpiexec names a dead rank by its PID
        "nodes": len(set(world.hostnames)),
        "mpi_library": library_version(),
        "device": trainer.backend.description,
        "dataset": {
            "name": ds.name,
            "train_samples": len(ds.y_train),
            "test_samples": len(ds.y_test),
            "features": ds.nfeatures,
            "classes": ds.nclasses,
        },
        "layers": list(model.widths),
        "nparams": model.nparams,
        "buffer_bytes": model.nparams * model.dtype.itemsize,
        "local_batch_by_rank": [
            data.local_count(cfg.global_batch, world.world_size, r) for r in range(world.world_size)
        ],
        "steps_per_epoch": trainer.steps_per_epoch,
        "total_steps": trainer.total_steps,
        "node_of_rank": trainer.node_of_rank,
        "segments": trainer.model.layer_segments,
        "clock_offsets_s": offsets.tolist(),
        "clock_error_s": errors.tolist(),
    }


def summarize(trainer: Trainer, wall_s: float, meter: EpochMeter, digest: int) -> dict:
    t, world, cfg = trainer.totals, trainer.world, trainer.cfg
    per_rank = world.allgather((t.compute_s, t.comm_s))
    wall = max(world.allgather(wall_s))
    compute, comm = sum(r[0] for r in per_rank), sum(r[1] for r in per_rank)
    return {
        "complete": True,
        "world_size": world.world_size,
        "steps": t.steps,
        "global_batch": cfg.global_batch,
        "wall_s": wall,
        "samples_per_s": t.steps * cfg.global_batch / wall,
        "test_accuracy": meter.accuracy,
        "test_loss": meter.test_loss,
        "allreduce": cfg.allreduce,
        "buffer_bytes": trainer.model.nparams * trainer.model.dtype.itemsize,
        "compute_s_by_rank": [r[0] for r in per_rank],
        "comm_s_by_rank": [r[1] for r in per_rank],
        "comm_share": comm / (compute + comm) if compute + comm else 0.0,
        "weights_blake2b": f"{digest:016x}",
        "replicas_identical": True,
        "nonfinite_skipped_steps": t.skipped,  # --nonfinite skip: steps not applied
    }


def save_checkpoint(path: str, trainer: Trainer) -> None:
    xp = trainer.backend.xp
    host = (lambda a: xp.asnumpy(a)) if trainer.backend.on_gpu else (lambda a: a)
    arrays = {
        "params": host(trainer.model.params),
        "step": np.array(trainer.totals.steps),
        "layers": np.array(trainer.model.widths),
        "fingerprint": np.array(trainer.cfg.fingerprint()),
    }
    if trainer.optimizer.velocity is not None:
        arrays["velocity"] = host(trainer.optimizer.velocity)
    with rundir.atomic(path, "wb") as f:
        np.savez(f, **arrays)
