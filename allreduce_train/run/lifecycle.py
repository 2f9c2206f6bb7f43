"""One run, whatever trains in it: the lifecycle every role goes through.

    describe        config.json, and every rank's record file opened (agreed)
    banner          rank 0's start lines
    train           the role's own steps (sync.trainer's all-reduce loop, downpour's
                    replicas and servers), with the Run's services: the watchdog, the stop
                    signals, `cut` (a checkpoint at a step every rank agreed on)
    finish          totals, records and the final snapshot gathered (collectives), then
                    rank 0 writes checkpoint.npz, the merged records, summary.json, the
                    report (run.outputs.RunDirectory)

A role supplies its step, its totals, its records and its state (a checkpoint.Snapshot);
the lifecycle owns the order, the files and the failures. SIGINT and SIGTERM are caught
for the whole of `train`: a role reads `stops.caught` at the cuts it can agree on, and
`cut` with the agreed signal writes the checkpoint and ends every rank (Interrupted).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Protocol

from ..comm import WatchChannel, World
from ..guard.watchdog import Watchdog
from . import console
from .checkpoint import Snapshot
from .outputs import RunDirectory, describe


@dataclass
class Totals:
    """Sums over a rank's training steps (evaluation and checks excluded): what a role's
    summary and epoch lines are made of, sync and async alike."""

    steps: int = 0
    samples: int = 0
    compute_s: float = 0.0
    comm_s: float = 0.0
    loss_sum: float = 0.0
    skipped: list = field(default_factory=list)  # steps whose update --nonfinite skip skipped

    def add(self, samples: int, loss_sum: float, compute_s: float, comm_s: float) -> None:
        """One step more: its samples and their loss sum (0 and 0.0 for a step whose loss
        is not the model's), its compute and its communication."""
        self.steps += 1
        self.samples += samples
        self.loss_sum += loss_sum
        self.compute_s += compute_s
        self.comm_s += comm_s


class Role(Protocol):
    """What a rank's role in the run supplies to the lifecycle."""

    device: str  # the device line: the backend and how the gradient travels
    model: object  # its model (config.json records its layers)
    dataset: object
    watchdog: object  # the lifecycle hands it the live one before train

    def record_into(self, records) -> None:
        """Record every later step into `records` (its open_records' file; None: none)."""

    def describe(self) -> dict:
        """Its own keys of config.json (collective if it must be)."""

    def banner(self, description: dict) -> str:
        """Rank 0's start lines."""

    def open_records(self, run_dir: str):
        """This rank's record file, open (None: --no-record)."""

    def train(self, run: Run) -> float:
        """Every step this rank takes, with the run's services; returns its wall seconds."""

    def snapshot(self) -> Snapshot | None:
        """Collective: the state at this moment, every rank agreeing on it; rank 0's is the
        snapshot (None elsewhere)."""

    def finish(self, wall_s: float) -> tuple[dict, list | None]:
        """Collective, after train: summary.json's totals and every rank's records (on rank
        0; None elsewhere, and without records)."""


class Interrupted(Exception):
    """SIGINT or SIGTERM, agreed by every rank after the same step, checkpoint written."""

    def __init__(self, signum: int, step: int, path: str):
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} after step {step}: checkpoint {path}; go on with --resume "
            f"{os.path.dirname(os.path.dirname(path))}"
        )
        self.code = 128 + signum


class Stops:
    """SIGINT and SIGTERM caught while a run trains: `caught` holds their numbers, and the
    roles agree on them where they can (the process does not end at the signal)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.caught: list[int] = []

    def __enter__(self) -> Stops:
        self._handlers = {s: signal.signal(s, self._catch) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._handlers.items():
            signal.signal(s, handler)

    def _catch(self, signum, frame) -> None:
        self.caught.append(signum)

    @property
    def flag(self) -> int:
        """The first signal caught, or 0."""
        return self.caught[0] if self.caught else 0


class Run:
    """The services a role's `train` is given."""

    def __init__(self, cfg, world: World, out: RunDirectory, role: Role, dog, stops: Stops):
        self.cfg, self.world, self.out, self.role, self.watchdog, self.stops = (
            cfg, world, out, role, dog, stops)  # fmt: skip

    def cut(self, step: int, stop: int = 0) -> str:
        """Collective: a checkpoint after `step`, which every rank has agreed on; with `stop`
        (the agreed signal) every rank then ends (Interrupted). Returns its path."""
        self.watchdog.enter(step, "the checkpoint")
        path = self.out.checkpoint(self.role.snapshot(), self.cfg.keep_checkpoints)
        self.watchdog.leave()
        if stop:
            raise Interrupted(stop, step, path)
        return path


def run(cfg, world: World, role: Role, run_dir: str, resumed: dict | None = None) -> dict:
    """The run of `role` on this rank, from config.json to the report; returns the totals."""
    out = RunDirectory(world, run_dir)
    description = describe(cfg, world, run_dir, role.device, role.dataset, role.model,
                           **role.describe())  # fmt: skip
    if resumed is not None:
        description["resumed_from"] = resumed
    records = out.first_writes(description, lambda: role.open_records(run_dir))
    world.log(role.banner(description))
    role.record_into(records)
    dog = Watchdog(
        WatchChannel(world), world.rank, world.world_size, cfg.stall_warn, cfg.comm_timeout
    )
    role.watchdog = dog
    try:  # the watchdog sees the end's collectives too
        with Stops() as stops:
            wall_s = role.train(Run(cfg, world, out, role, dog.start(), stops))
        if records is not None:
            records.close()
        dog.enter(None, "the end of the run")
        totals, merged = role.finish(wall_s)
        snapshot = role.snapshot()
        dog.leave()
    finally:
        dog.close()
    if world.is_root:
        report = out.finish(description, totals, snapshot, merged, cfg.traced_steps)
        world.log(console.final_report(totals))
        if report:
            world.log(report)
    return totals
