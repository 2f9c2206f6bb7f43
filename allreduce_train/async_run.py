"""A --mode async run: replicas and servers (downpour.py) from the start to the run
directory's last file.

At the start, as in a sync run: config.json (with the `downpour` layout), every replica's
step file and every server's event file, the first writes agreed by all ranks. Then every
rank starts at once (a barrier: the wall clock is everyone's) and no collective is called
until the end: replica 0 (rank 0) alone evaluates its own copy of the weights where an
evaluation falls due (every --eval-every batches of the run, else at each epoch's end,
counting R batches per step of its own) and appends it to evaluations.jsonl, so `netsim
compare` reads an async run as a sync one. At the end every rank takes the servers' final
shards, the test set is scored by all ranks, and rank 0 writes checkpoint.npz (weights and
the servers' optimizer state), the records (links.csv, updates.jsonl), summary.json and the
report. No checkpoints mid-run and no --resume yet (config.py refuses them).
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np

from netsim.record import rundir, serverfile
from netsim.record.recorder import Recorder
from netsim.report import downpour as report

from . import checkpoint, console, data, train
from .comm import WatchChannel, World
from .downpour import Layout, Replica, Server
from .run import append_evaluation, config_record, first_writes
from .watchdog import Watchdog


def run_async(cfg, world: World, backend, dataset, run_dir: str, transport) -> dict:
    spe = len(dataset.y_train) // cfg.global_batch
    widths = cfg.widths_for(dataset.nfeatures, dataset.nclasses)
    nparams = sum(a * b + b for a, b in zip(widths, widths[1:]))
    layout = Layout(cfg, world.world_size, nparams, cfg.steps or cfg.epochs * spe)
    dog = Watchdog(
        WatchChannel(world), world.rank, world.world_size, cfg.stall_warn, cfg.comm_timeout
    )
    is_replica = world.rank < layout.replicas
    role = (Replica if is_replica else Server)(
        cfg, world.rank, layout, backend, dataset, transport, dog
    )
    description = describe(cfg, world, backend, dataset, role.model, layout, run_dir, spe)

    def open_records():
        if not cfg.record:
            return None
        if is_replica:
            return Recorder(
                rundir.step_file(run_dir, world.rank), world.rank, spe, cfg.global_batch
            )
        return serverfile.ServerLog(
            serverfile.path(run_dir, world.rank), world.rank, world.rank - layout.replicas,
            role.lo_hi, role.model.dtype.itemsize)  # fmt: skip

    records = first_writes(world, run_dir, description, open_records)
    if is_replica:
        role.recorder = records
    else:
        role.log = records
    world.log(console.banner(description))
    world.log(
        f"  async    Downpour SGD: replicas 0-{layout.replicas - 1}, servers "
        f"{', '.join(map(str, layout.servers))}; fetch every {cfg.fetch_every}, push every "
        f"{cfg.push_every} steps; {layout.total} batches dealt round-robin"
    )
    world.barrier()
    dog.start()
    start = time.perf_counter()
    try:
        if is_replica:
            meter = Meter(role, dataset, run_dir, start, spe) if world.is_root else None
            for step in range(role.steps):
                role.step(step)
                if meter is not None:
                    meter.after(step)
            role.finish()
            if role.recorder is not None:
                role.recorder.close()
        else:
            role.serve()
            if role.log is not None:
                role.log.close()
        train_s = time.perf_counter() - start
        dog.enter(None, "the end of the run")
        totals, records, states = finish(cfg, world, backend, dataset, role, layout, train_s)
        dog.leave()
    finally:
        dog.close()
    if world.is_root:
        write_results(cfg, run_dir, description, role, totals, records, states)
    return totals


def describe(cfg, world, backend, dataset, model, layout, run_dir, spe) -> dict:
    """config.json: a sync run's, with the async run's batches per rank and `downpour`."""
    shim = SimpleNamespace(
        cfg=cfg, world=world, dataset=dataset, model=model, backend=backend,
        steps_per_epoch=spe, total_steps=layout.total, node_of_rank=train.node_of_rank(cfg, world),
        gradient_path="; pushes and fetches through host memory" if backend.on_gpu else "",
    )  # fmt: skip
    d = config_record(shim, run_dir)
    d["local_batch_by_rank"] = [cfg.global_batch] * layout.replicas + [0] * cfg.servers
    d["downpour"] = layout.record()
    return d


def finish(cfg, world, backend, dataset, role, layout, train_s):
    """The end, on every rank: the servers' weights everywhere, the test set scored, every
    rank's totals and records to rank 0."""
    is_server = isinstance(role, Server)
    shards = world.allgather(role.shard if is_server else None)
    params = np.concatenate([shards[s] for s in layout.servers])
    role.model.params[...] = backend.xp.asarray(params)
    states = world.gather(role.optimizer.state if is_server else None)
    ds, n = dataset, len(dataset.y_test)
    rows = np.arange(n)[data.local_slice(n, world.world_size, world.rank)]
    mine = train.score(role.model, ds, rows, backend.xp, role.model.dtype.type)
    correct, loss, count = world.sum_(mine)
    mine = (
        (role.steps, role.samples, role.loss_sum, role.compute_s, role.comm_s)
        if not is_server
        else (0, 0, 0.0, role.busy_s, 0.0)
    )
    per_rank = world.allgather(mine)
    wall = max(world.allgather(train_s))
    records = world.gather(_my_records(role, world)) if cfg.record else None
    digests = world.allgather_u64(train.digest(params))
    if len(set(digests.tolist())) != 1:  # the allgather itself failed us: a bug, or hardware
        raise train.ReplicasDiverged("the final weights differ between ranks")
    samples = sum(r[1] for r in per_rank)
    totals = {
        "complete": True,
        "mode": "async",
        "world_size": world.world_size,
        "steps": layout.total,
        "steps_by_rank": [r[0] for r in per_rank],
        "global_batch": cfg.global_batch,
        "wall_s": wall,
        "samples_per_s": samples / wall if wall else None,
        "first_step": 0,
        "test_accuracy": correct / count,
        "test_loss": loss / count,
        "train_loss": sum(r[2] for r in per_rank) / samples if samples else None,
        "buffer_bytes": layout.bounds[-1].item() * role.model.dtype.itemsize,
        "compute_s_by_rank": [r[3] for r in per_rank],  # a server's: its busy time
        "comm_s_by_rank": [r[4] for r in per_rank],
        "weights_blake2b": f"{int(digests[0]):016x}",
        "replicas_identical": True,  # every rank holds the servers' weights now
    }
    return totals, records, states


def _my_records(role, world):
    if isinstance(role, Server):
        return None if role.log is None else serverfile.read(role.log.path)[1]
    return rundir.read_steps(os.path.dirname(role.recorder.path), world.rank)


class Meter:
    """Replica 0's view while the run goes: its own copy evaluated where an evaluation falls
    due (into evaluations.jsonl, with the wall time), and a line per epoch."""

    def __init__(self, role: Replica, dataset, run_dir: str, start: float, spe: int):
        self.role, self.dataset, self.run_dir, self.start, self.spe = (
            role, dataset, run_dir, start, spe)  # fmt: skip
        self.every = role.cfg.eval_every or spe
        self.mark = (0.0, 0, 0.0, 0.0, start)  # loss, samples, compute, comm, time

    def after(self, step: int) -> None:
        r, role = self.role.layout.replicas, self.role
        done, before = (step + 1) * r, step * r  # the run's batches, as replica 0 sees them
        if step == role.steps - 1 or done // self.every == before // self.every:
            return
        wall = time.perf_counter() - self.start
        correct, loss, count = train.score(
            role.model, self.dataset, np.arange(len(self.dataset.y_test)), role.backend.xp,
            role.dtype)  # fmt: skip
        append_evaluation(self.run_dir, done - 1, done / self.spe, wall, correct / count,
                          loss / count)  # fmt: skip
        loss0, samples0, compute0, comm0, t0 = self.mark
        samples = role.samples - samples0
        busy = role.compute_s - compute0 + role.comm_s - comm0
        print(
            f"epoch {done / self.spe:6.2f}  batch {done - 1:7d}  replica 0: train loss "
            f"{(role.loss_sum - loss0) / max(samples, 1):.4f}  test loss {loss / count:.4f}  "
            f"test acc {correct / count:.4f}  {samples / (time.perf_counter() - t0):,.0f} "
            f"samples/s  fetch+push {(role.comm_s - comm0) / max(busy, 1e-12):4.0%}",
            flush=True,
        )
        self.mark = (role.loss_sum, role.samples, role.compute_s, role.comm_s, time.perf_counter())


def write_results(cfg, run_dir, description, role, totals, records, states) -> None:
    """Rank 0, at the end: the final evaluation, checkpoint.npz, the merged records, the
    summary and the report."""
    layout = role.layout
    spe = description["steps_per_epoch"]
    append_evaluation(run_dir, layout.total - 1, layout.total / spe, totals["wall_s"],
                      totals["test_accuracy"], totals["test_loss"])  # fmt: skip
    servers = [states[s] for s in layout.servers]
    optimizer = SimpleNamespace(
        state={k: np.concatenate([st[k] for st in servers]) for k in servers[0]}
    )
    step_totals = SimpleNamespace(
        steps=layout.total, samples=sum(totals["steps_by_rank"]) * cfg.global_batch,
        compute_s=sum(totals["compute_s_by_rank"][: layout.replicas]),
        comm_s=sum(totals["comm_s_by_rank"]), loss_sum=0.0, skipped=[],
    )  # fmt: skip
    shim = SimpleNamespace(
        backend=role.backend, totals=step_totals, model=role.model, cfg=cfg, optimizer=optimizer
    )
    checkpoint.write(os.path.join(run_dir, "checkpoint.npz"), shim)
    text = ""
    if records is not None:
        merged = report.merge(description, records[: layout.replicas], records[layout.replicas :])
        report.write_outputs(run_dir, merged)
        totals["traffic"] = report.summarize(description, merged, totals["wall_s"])
        text = report.text(description, totals["traffic"], totals["wall_s"])
    rundir.write_json(os.path.join(run_dir, "summary.json"), totals)
    print(final_line(totals, layout), flush=True)
    if text:
        print(text, flush=True)


def final_line(s: dict, layout: Layout) -> str:
    return (
        f"done: {s['steps']} batches on {layout.replicas} replica"
        f"{'s' * (layout.replicas > 1)} in {s['wall_s']:.2f} s, {s['samples_per_s']:,.0f} "
        f"samples/s; test accuracy {s['test_accuracy']:.4f}, test loss {s['test_loss']:.4f} "
        f"(the servers' final weights, blake2b {s['weights_blake2b']})"
    )
