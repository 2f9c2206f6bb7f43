"""The one writer of a run directory, for sync and async runs alike, taking plain data.

config.json        at the start (rank 0), with every rank's record file opened at the
                   same moment: a full or read-only disk shows there, agreed by all
evaluations.jsonl  a line per evaluation (rank 0): what `netsim compare` reads
checkpoints/       a checkpoint.Snapshot at every cut (rank 0)
checkpoint.npz     the last snapshot, at the end
steps.jsonl, links.csv, timeline.json, ...
                   the records every rank gathered to rank 0, merged by netsim.report
                   (traffic for an all-reduce run, downpour for an async one)
summary.json       the totals, with the traffic's summary
"""

from __future__ import annotations

import os
import time

from netsim.record import rundir
from netsim.report import downpour, files, summary, text, traffic

from ..comm import World, library_version
from . import checkpoint


class OutputError(Exception):
    """The run directory cannot be written: raised on every rank at once (exits.OUTPUT)."""


def describe(cfg, world: World, run_dir: str, device: str, dataset, model, **more) -> dict:
    """What config.json records: the configuration and what it resolved to on this world
    (collective: the clocks are measured against rank 0's). `more`: the role's own keys."""
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
        "device": device,
        "dataset": {
            "name": dataset.name,
            "train_samples": len(dataset.y_train),
            "test_samples": len(dataset.y_test),
            "features": dataset.nfeatures,
            "classes": dataset.nclasses,
        },
        "layers": list(model.widths),
        "nparams": model.nparams,
        "buffer_bytes": model.nparams * model.dtype.itemsize,
        "segments": model.layer_segments,
        "clock_offsets_s": offsets.tolist(),
        "clock_error_s": errors.tolist(),
        **more,
    }


class RunDirectory:
    """A run directory, written through one object on every rank (rank 0 writes; what every
    rank must agree on, it agrees on here)."""

    def __init__(self, world: World, path: str):
        self.world, self.path = world, path

    def first_writes(self, description: dict, open_records):
        """config.json (rank 0) and this rank's record file (`open_records()`, returned): a
        full or read-only disk shows here, and every rank agrees on it (OutputError on all)."""
        error, records = None, None
        try:
            if self.world.is_root:
                rundir.write_json(os.path.join(self.path, "config.json"), description)
            records = open_records()
        except OSError as exc:
            error = f"rank {self.world.rank}: {exc.filename}: {exc.strerror}"
        error = self.world.agree_on_error(error)
        if error is not None:
            raise OutputError(error)
        return records

    def evaluation(self, step: int, epoch: float, wall_s: float, accuracy, loss) -> None:
        """A line of evaluations.jsonl (rank 0 only; netsim compare reads it)."""
        row = {"step": step, "epoch": epoch, "wall_s": wall_s, "test_accuracy": accuracy,
               "test_loss": loss}  # fmt: skip
        path = os.path.join(self.path, "evaluations.jsonl")
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(rundir.dumps(row) + "\n")
        except OSError as exc:  # a full disk: name the file (one line, exit 9)
            raise OSError(exc.errno, exc.strerror, path) from None

    def checkpoint(self, snapshot: checkpoint.Snapshot | None, keep: int) -> str:
        """Collective: rank 0 saves the snapshot (None elsewhere); every rank gets its path."""
        path = checkpoint.save(self.path, snapshot, keep) if self.world.is_root else None
        return self.world.bcast(path)

    def finish(self, description: dict, totals: dict, snapshot, records, traced_steps=()) -> str:
        """Rank 0, at the end: checkpoint.npz, the merged records (`records`: every rank's,
        None without records) and their files (timeline.json draws `traced_steps`),
        summary.json; returns the traffic report."""
        checkpoint.write(os.path.join(self.path, "checkpoint.npz"), snapshot)
        report = ""
        if records is not None:
            if description["config"]["mode"] == "async":
                layout = description["downpour"]
                nreplicas = layout["replicas"]
                merged = downpour.merge(description, records[:nreplicas], records[nreplicas:])
                downpour.write_outputs(self.path, merged)
                totals["traffic"] = downpour.summarize(description, merged, totals["wall_s"])
                report = downpour.text(description, totals["traffic"], totals["wall_s"])
            else:
                merged = traffic.merge(description, records, complete=True)
                files.write_outputs(self.path, description, merged, traced_steps)
                totals["traffic"] = summary.summarize(description, merged)
                report = text.text(description, merged, totals["traffic"])
        rundir.write_json(os.path.join(self.path, "summary.json"), totals)
        return report
