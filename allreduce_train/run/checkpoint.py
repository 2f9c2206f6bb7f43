"""Checkpoints: what a run needs to go on from a step as if it had never stopped.

A checkpoint holds the parameters, the optimizer's velocity, the number of steps done, the
running totals, the configuration it was trained with and a format version. The data
position and every random draw are functions of (seed, epoch, step) (data.epoch_order,
the initial weights), so the step count is the whole of the RNG state: a resumed run
computes exactly what the uninterrupted one would have.

Rank 0 writes, after every rank has agreed on the step (the weight check before it: all
replicas bit-identical), into RUN_DIR/checkpoints/step-NNNNNNNN.npz, atomically (temporary
file, fsync, rename, fsync of the directory); the last `keep` stay. A file is named by the
number of the last step it holds, steps numbered from 0 as everywhere (ARCHITECTURE's
Definitions): step-00000009.npz holds 10 steps done (its `step`, a count, says 10).
`--resume RUN_DIR` takes the newest one that loads; a damaged newest (a kill mid-write
leaves at most a temporary file, which is never picked; a disk may still leave one empty or
cut short) falls back to the one before, and when none loads the error is one line naming
each.

An async run's (--mode async, downpour.role) `step` counts the run's batches done, as its
--steps does: after a cut, where every replica has taken exactly its first k steps, that is
k x R (replica r takes batches r, r+R, ...: batches 0..kR-1 are done); at the end, all of
them. Beside it `replica_steps` holds every replica's own steps done (k each at a cut; at
the end, as many as each took), which a resume starts each replica from; a sync run's is
empty. The parameters and optimizer state are the servers' shards joined.
"""

from __future__ import annotations

import glob
import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np

from netsim.record import rundir

from ..config.config import SGD_MOMENTUM
from ..exits import CHECKPOINT, UsageError

FORMAT = 1
# What the maths depends on: a resume must keep these (the rest may change: how long to
# train, how often to check, the rank count, the all-reduce algorithm, records, ...).
MATHS = (
    "dataset", "data_dir", "samples", "features", "classes", "test_fraction", "layers",
    "activation", "loss", "init", "dtype", "lr", "optimizer", "momentum", "weight_decay",
    "global_batch", "seed", "mode", "fetch_every", "push_every",
)  # fmt: skip


# a new directory; a fault is not carried; quiet is this terminal's choice; the transport
# is picked anew for this world and device (it changes no bit of the sum)
NEVER_INHERITED = ("run_dir", "resume", "inject", "quiet", "transport")


@dataclass
class Snapshot:
    """What a checkpoint holds, as plain host data: a role's state at a cut every rank
    agreed on (sync: a step; async: the same step of every replica, the servers' shards
    joined). `step` counts steps done (async: the run's batches done; `replica_steps`,
    every replica's own steps done)."""

    step: int
    params: np.ndarray
    optimizer: dict[str, np.ndarray]  # velocity (SGD), sum_sq (Adagrad), of the whole buffer
    layers: tuple[int, ...]
    config: dict  # Config.to_dict()
    fingerprint: str
    totals: tuple[float, float, float, float] = (0, 0.0, 0.0, 0.0)  # samples, compute, comm, loss
    skipped: list = field(default_factory=list)  # steps --nonfinite skip skipped
    replica_steps: list = field(default_factory=list)  # async: each replica's; sync: none


class CheckpointError(UsageError):
    """A checkpoint that cannot be used (exit code exits.CHECKPOINT)."""

    code = CHECKPOINT


def directory(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def save(run_dir: str, snapshot: Snapshot, keep: int) -> str:
    """The snapshot as RUN_DIR/checkpoints/step-NNNNNNNN.npz (the last `keep` stay); returns
    its path."""
    os.makedirs(directory(run_dir), exist_ok=True)
    path = os.path.join(directory(run_dir), name(snapshot.step))
    write(path, snapshot)
    fd = os.open(directory(run_dir), os.O_RDONLY)  # the rename itself survives a crash
    try:
        os.fsync(fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, directory(run_dir)) from None
    finally:
        os.close(fd)
    for old in sorted(glob.glob(os.path.join(directory(run_dir), "step-*.npz")))[:-keep]:
        os.unlink(old)
    return path


def name(steps_done: int) -> str:
    """A checkpoint's file name: the number of its last step (from 0), 8 digits."""
    return f"step-{steps_done - 1:08d}.npz"


def write(path: str, snapshot: Snapshot) -> None:
    s = snapshot
    arrays = {
        "format": np.array(FORMAT),
        "params": s.params,
        "step": np.array(s.step),
        "layers": np.array(s.layers),
        "fingerprint": np.array(s.fingerprint),
        "config": np.array(json.dumps(s.config)),
        "totals": np.array(s.totals, dtype=np.float64),
        "skipped": np.array(s.skipped, dtype=np.int64),
        "replica_steps": np.array(s.replica_steps, dtype=np.int64),
        **s.optimizer,
    }
    with rundir.atomic(path, "wb") as f:
        np.savez(f, **arrays)


def latest(run_dir: str) -> dict:
    """The newest checkpoint of run_dir that loads, as a dict of arrays and values."""
    found = sorted(glob.glob(os.path.join(directory(run_dir), "step-*.npz")), reverse=True)
    final = os.path.join(run_dir, "checkpoint.npz")
    if os.path.isfile(final):  # the end of a finished run: newer than any periodic one
        found.insert(0, final)
    if not found:
        raise CheckpointError(
            f"--resume {run_dir}: no checkpoint there (train with --checkpoint-every N)"
        )
    problems = []
    for path in found:
        try:
            return read(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            why = "empty" if os.path.isfile(path) and not os.path.getsize(path) else str(exc)
            problems.append(f"{os.path.basename(path)}: {why or type(exc).__name__}")
    raise CheckpointError(f"--resume {run_dir}: no checkpoint loads ({'; '.join(problems)})")


def read(path: str) -> dict:
    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) != FORMAT:
            raise ValueError(f"format {int(z['format'])}, this version reads {FORMAT}")
        state = {k: z[k] for k in z.files}
    state["path"] = path
    state["step"] = int(state["step"])
    state["config"] = json.loads(str(state["config"]))
    state["replica_steps"] = state["replica_steps"].tolist() if "replica_steps" in state else []
    return state


def check_async(state: dict, run_dir: str, replicas: int, world_size: int) -> None:
    """An async run goes on from `state` (of `run_dir`) only on as many replicas (the
    batches are dealt round-robin by replica) and from a checkpoint that says where each
    replica stood."""
    steps, where = state["replica_steps"], f"--resume {run_dir}"
    if not steps:
        raise CheckpointError(
            f"{where}: its checkpoint holds no replica's step (written before async runs "
            "could resume); train it anew"
        )
    if len(steps) != replicas:
        servers = world_size - replicas
        raise CheckpointError(
            f"{where}: its async run had {len(steps)} replica{'s' * (len(steps) > 1)}, this "
            f"one would have {replicas} (world size {world_size}, --servers {servers}): the "
            f"batches are dealt by replica, so it goes on with as many (mpirun -n "
            f"{len(steps) + servers})"
        )


def resolved(key: str, value, saved: dict, layers=None):
    """What a maths setting of the checkpoint's configuration `saved` meant: a default left
    to the run (None) as the run resolved it (the layers from the data, `layers`: the
    checkpoint's widths; SGD's momentum; the initialisation for the activation)."""
    if isinstance(value, list):
        value = tuple(value)
    if value is not None:
        return value
    if key == "layers" and layers is not None:
        return tuple(int(w) for w in layers)
    if key == "momentum":
        sync_sgd = saved.get("optimizer", "sgd") == "sgd" and saved.get("mode", "sync") == "sync"
        return SGD_MOMENTUM if sync_sgd else 0.0
    if key == "init":
        return "he" if saved.get("activation") == "relu" else "xavier"
    return value


def resumed_config(saved: dict, given: dict, defaults: dict, layers=None) -> dict:
    """The configuration of a resumed run: the checkpoint's, with what the user gave in its
    place where the maths allows (how long, how often to check or checkpoint, the rank
    count, the algorithm, ...). A maths setting given with another value than the one the
    checkpointed run resolved it to (`layers`: the checkpoint's widths) is refused, naming
    it; given with that value, it is the same run. --steps and --epochs are one setting,
    how long: either given replaces both. A run whose all-reduce auto picked picks again
    (the rank count may differ)."""
    out = dict(given)
    for key, value in saved.items():
        if key in defaults and key not in NEVER_INHERITED and given[key] == defaults[key]:
            out[key] = tuple(value) if isinstance(value, list) else value
    if saved.get("allreduce_choice") and given["allreduce"] == defaults["allreduce"]:
        out["allreduce"], out["channels"] = given["allreduce"], given["channels"]  # auto anew
    if (given["steps"], given["epochs"]) != (defaults["steps"], defaults["epochs"]):
        out["steps"], out["epochs"] = given["steps"], given["epochs"]
    for key in MATHS:
        was = saved.get(key)
        if isinstance(was, list):
            was = tuple(was)
        meant = resolved(key, was, saved, layers)
        if given[key] != defaults[key] and given[key] != was and given[key] != meant:
            raise CheckpointError(
                f"--resume: --{key.replace('_', '-')} was {show(meant)} when the checkpoint "
                f"was written; a resumed run keeps it (got {show(given[key])})"
            )
        out[key] = was
    return out


def show(value) -> str:
    """A setting as the command line writes it."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
