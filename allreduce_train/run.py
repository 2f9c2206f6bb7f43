"""A training run: its Trainer stepped through the epochs, the progress rank 0 prints, and
what the run directory gets (config.json at the start; the checkpoint, the merged records,
summary.json and the traffic report at the end).
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from netsim.record import rundir
from netsim.report import files, summary, text, traffic

from . import checkpoint, console, data
from .backend import Backend
from .collectives import Transport
from .comm import Agreement, WatchChannel, World, library_version
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
    state: dict | None = None,
) -> dict:
    trainer = Trainer(cfg, world, backend, dataset, transport)
    if state is not None:
        trainer.restore(state)
    description = config_record(trainer, run_dir)
    if state is not None:
        description["resumed_from"] = {"checkpoint": state["path"], "step": state["step"]}
    recorder = first_writes(
        world, run_dir, description, lambda: trainer.new_recorder(run_dir) if cfg.record else None
    )
    world.log(console.banner(description))
    trainer.record_into(recorder)
    trainer.verify_replicas(-1)  # same seed, same init: prove it before spending time
    dog = trainer.watchdog = Watchdog(
        WatchChannel(world), world.rank, world.world_size, cfg.stall_warn, cfg.comm_timeout
    ).start()
    last = trainer.total_steps - 1
    try:  # the watchdog sees the end's collectives too
        wall_s, meter = train_loop(trainer, dataset, run_dir, Agreement(world))
        if trainer.recorder is not None:
            trainer.recorder.close()
        dog.enter(last, "the end of the run")
        if cfg.eval_every and trainer.total_steps % cfg.eval_every:
            meter.evaluate(last)
        digest = trainer.verify_replicas(last)
        totals = summarize(trainer, wall_s, meter, digest)
        # Every rank's records to rank 0 over MPI: node-local run directories work too.
        records = world.gather(rundir.read_steps(run_dir, world.rank)) if cfg.record else None
        dog.leave()
    finally:
        dog.close()
    if world.is_root:
        checkpoint.write(os.path.join(run_dir, "checkpoint.npz"), trainer)
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


def first_writes(world: World, run_dir: str, description: dict, open_records):
    """config.json (rank 0) and this rank's record file (`open_records()`, returned): a full
    or read-only disk shows here, and every rank agrees on it (OutputError on all)."""
    error, records = None, None
    try:
        if world.is_root:
            rundir.write_json(os.path.join(run_dir, "config.json"), description)
        records = open_records()
    except OSError as exc:
        error = f"rank {world.rank}: {exc.filename}: {exc.strerror}"
    error = world.agree_on_error(error)
    if error is not None:
        raise OutputError(error)
    return records


class OutputError(Exception):
    """The run directory cannot be written: raised on every rank at once (exits.OUTPUT)."""


class Interrupted(Exception):
    """SIGINT or SIGTERM, agreed by every rank after the same step, checkpoint written."""

    def __init__(self, signum: int, step: int, path: str):
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} after step {step}: checkpoint {path}; go on with --resume "
            f"{os.path.dirname(os.path.dirname(path))}"
        )
        self.code = 128 + signum


def train_loop(trainer: Trainer, dataset: data.Dataset, run_dir: str, agreement: Agreement):
    """Every step from the first not done, with the checks, evaluations and checkpoints
    between; returns its wall time and the progress meter. SIGINT and SIGTERM stop it after
    a step that every rank agrees on, with a checkpoint: the ranks compare their flags about
    every AGREE_S seconds (a step count fixed after the second step: a small collective
    every step cost the default job 5-30% here)."""
    cfg, dog, world = trainer.cfg, trainer.watchdog, trainer.world
    meter = EpochMeter(trainer, run_dir)
    caught = []
    handlers = {s: signal.signal(s, lambda n, f: caught.append(n)) for s in _STOPS}
    wall_start, first, every = time.perf_counter(), trainer.totals.steps, 0
    try:
        for step in range(first, trainer.total_steps):
            if step % trainer.steps_per_epoch == 0 or step == first:
                order = data.epoch_order(
                    len(dataset.y_train), cfg.seed, step // trainer.steps_per_epoch
                )
            trainer.step(step, order)
            between_steps(trainer, meter, step)
            done, flag = step + 1, caught[0] if caught else 0
            if every <= 1:  # the first steps, and steps of AGREE_S or more: agree now
                stop = agreement.now(flag)
            else:  # short steps: a compare every `every` steps, read `every` steps later
                stop = agreement.post(flag) if (done - first) % every == 0 else 0
            if done - first == 2:  # the same count on every rank: rank 0's clock decides
                per_step = world.bcast((time.perf_counter() - wall_start) / 2)
                every = max(1, min(1000, round(AGREE_S / max(per_step, 1e-6))))
            if stop and done == trainer.total_steps:
                stop = 0  # the last step: the run ends as it would have, whole
            if stop or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
                dog.enter(step, "the checkpoint")
                trainer.verify_replicas(step)  # every rank here, every replica the same
                path = None
                if world.is_root:
                    path = checkpoint.save(run_dir, trainer, cfg.keep_checkpoints)
                path = world.bcast(path)
                dog.leave()
                if stop:
                    raise Interrupted(stop, step, path)
    finally:
        agreement.close()
        for s, handler in handlers.items():
            signal.signal(s, handler)
    return time.perf_counter() - wall_start, meter


_STOPS = (signal.SIGINT, signal.SIGTERM)
AGREE_S = 0.1


def between_steps(trainer: Trainer, meter: EpochMeter, step: int) -> None:
    """The weight check, the evaluation and the epoch's line, where they fall due."""
    cfg, dog, done = trainer.cfg, trainer.watchdog, step + 1
    if cfg.check_every and done % cfg.check_every == 0:
        dog.enter(step, "the weight check")
        trainer.verify_replicas(step)
        dog.leave()
    end_of_epoch = done % trainer.steps_per_epoch == 0 or done == trainer.total_steps
    if (cfg.eval_every and done % cfg.eval_every == 0) or (not cfg.eval_every and end_of_epoch):
        dog.enter(step, "the evaluation")
        meter.evaluate(step)
        dog.leave()
    if end_of_epoch:
        dog.enter(step, "the epoch's figures")
        meter.end_epoch(step)
        dog.leave()


class EpochMeter:
    """Per-epoch progress: rank 0 prints one line, with figures agreed over all ranks."""

    def __init__(self, trainer: Trainer, run_dir: str):
        self.trainer, self.run_dir = trainer, run_dir
        self.accuracy = self.test_loss = float("nan")
        self.start = self.run_start = time.perf_counter()
        self.mark = Totals(**vars(trainer.totals))  # a resumed run's start

    def evaluate(self, step: int) -> None:
        """Test accuracy and loss after `step`, and (rank 0) a line of evaluations.jsonl with
        the time since training began: the running time against accuracy of the classic
        studies (python -m netsim compare)."""
        tr = self.trainer
        wall = tr.world.max_(np.array([time.perf_counter() - self.run_start]))[0]
        self.accuracy, self.test_loss = tr.evaluate()
        if tr.world.is_root and self.run_dir is not None:
            epoch = (step + 1) / tr.steps_per_epoch
            append_evaluation(self.run_dir, step, epoch, wall, self.accuracy, self.test_loss)

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


def append_evaluation(run_dir, step, epoch, wall_s, accuracy, loss) -> None:
    """A line of evaluations.jsonl (read by netsim compare), sync and async runs alike."""
    row = {"step": step, "epoch": epoch, "wall_s": wall_s, "test_accuracy": accuracy,
           "test_loss": loss}  # fmt: skip
    path = os.path.join(run_dir, "evaluations.jsonl")
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(rundir.dumps(row) + "\n")
    except OSError as exc:  # a full disk: name the file (one line, exit 9)
        raise OSError(exc.errno, exc.strerror, path) from None


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
        "device": trainer.backend.description + trainer.gradient_path,
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
        "samples_per_s": (t.steps - trainer.start_step) * cfg.global_batch / wall,
        "first_step": trainer.start_step,  # > 0: resumed from a checkpoint
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
