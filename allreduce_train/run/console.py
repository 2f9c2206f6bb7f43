"""What rank 0 prints: the start banner, one line per epoch (and, on a terminal, a progress
line every few seconds within a long one), the final summary.

Communication is counted as docs/ARCHITECTURE.md defines it: the training's comm_s is the
wait after backward (t_comm to t_comm_end), the exposed communication, so that a step is
compute + exposed; with buckets overlapped with backward, the time they were in flight
under backward is hidden, known from the records (summary.json's traffic)."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter

from netsim import algorithms
from netsim.report.text import nbytes

from ..config.config import SGD_MOMENTUM


def banner(d: dict) -> str:
    cfg, ds = d["config"], d["dataset"]
    hosts = ", ".join(f"{h} x{n}" for h, n in Counter(d["hostnames"]).items())
    batches = sorted(set(d["local_batch_by_rank"]))
    per_rank = "-".join(map(str, batches)) if len(batches) > 1 else str(batches[0])
    algorithm = algorithms.get(cfg["allreduce"]).label
    batch = f"global batch {cfg['global_batch']} ({per_rank} per rank)"
    if cfg.get("mode") == "async":
        algorithm = "Downpour SGD against parameter servers"
        batch = f"batch {cfg['global_batch']} per replica step"
    return "\n".join(
        [
            f"allreduce_train: {d['world_size']} rank{'s' * (d['world_size'] > 1)} on {d['nodes']} "
            f"node{'s' * (d['nodes'] > 1)} ({hosts}); {d['mpi_library']}",
            f"  device   {d['device']}",
            f"  model    {'-'.join(map(str, d['layers']))} {cfg['activation']}, {cfg['loss']} "
            f"loss, {d['nparams']:,} parameters ({nbytes(d['buffer_bytes'])} {cfg['dtype']}), "
            f"{algorithm}",
            *(
                [f"  auto     {cfg['allreduce_choice']['why']}"]
                if cfg.get("allreduce_choice")
                else []
            ),
            *(
                [bucket_line(d["buckets"], d.get("overlap"))]
                if len(d.get("buckets") or ()) > 1
                else []
            ),
            f"  data     {ds['name']}: {ds['train_samples']:,} train / {ds['test_samples']:,} "
            f"test; {batch}, "
            f"{d['steps_per_epoch']} steps per epoch, {d['total_steps']} steps",
            f"  optim    {optimizer(cfg)}, weight decay {cfg['weight_decay']:g}, seed "
            f"{cfg['seed']}",
            f"  records  {d['run_dir']}",
            *([resumed_line(d["resumed_from"], d["total_steps"])] if d.get("resumed_from") else []),
        ]
    )


def bucket_line(buckets: list[dict], overlap: bool | None) -> str:
    """The banner's line of a gradient all-reduced in buckets: how many, their sizes in
    launch order, and whether they go during backward."""
    sizes = ", ".join(nbytes(b["bytes"]) for b in buckets)
    how = "overlapped with backward" if overlap else "all-reduced after backward"
    return f"  buckets  {len(buckets)} ({sizes}; in launch order), {how}"


def resumed_line(resumed: dict, total: int) -> str:
    """The banner's line of a resumed run: where it goes on from (steps numbered from 0)."""
    done = resumed["step"]
    return (
        f"  resumed  from {resumed['checkpoint']} ({done:,} steps done, to step {done - 1}); "
        f"this run takes steps {done} to {total - 1}"
    )


def optimizer(cfg: dict) -> str:
    if cfg.get("optimizer") == "adagrad":
        return f"Adagrad lr {cfg['lr']:g}"
    momentum = cfg["momentum"]
    if momentum is None:
        momentum = SGD_MOMENTUM if cfg.get("mode", "sync") == "sync" else 0.0
    return f"SGD lr {cfg['lr']:g}, momentum {momentum:g}"


def epoch_line(
    step: int,
    steps_per_epoch: int,
    train_loss: float,
    test_loss: float,
    accuracy: float,
    samples_per_s: float,
    comm_share: float,
) -> str:
    """The line after `step` (numbered from 0, as every file numbers it), the epoch's last.
    comm_share: the exposed communication's share of the step time (the training's comm_s
    is the wait after backward, so compute + comm is the step; time hidden under backward
    is not in it)."""
    epoch = step // steps_per_epoch + 1
    return (
        f"epoch {epoch:>3}  step {step:>6}  train loss {train_loss:.4f}  "
        f"test loss {test_loss:.4f}  test acc {accuracy:.4f}  "
        f"{samples_per_s:>9,.0f} samples/s  comm {comm_share:>4.0%}"
    )


def this_run(s: dict, unit: str, units: str) -> str:
    """How many steps (or batches) this run took; a resumed run's are not all of them."""
    first, n = s.get("first_step", 0), s["steps"] - s.get("first_step", 0)
    head = f"{n:,} {unit if n == 1 else units}"
    if first:
        head += f" ({units} {first} to {s['steps'] - 1}, resumed after {unit} {first - 1})"
    return head


def final_report(s: dict) -> str:
    if s.get("mode") == "async":
        r = len(s["steps_by_rank"]) - s["servers"]
        return (
            f"done: {this_run(s, 'batch', 'batches')} on {r} replica{'s' * (r > 1)} in "
            f"{s['wall_s']:.2f} s, "
            f"{s['samples_per_s']:,.0f} samples/s; test accuracy {s['test_accuracy']:.4f}, test "
            f"loss {s['test_loss']:.4f} (the servers' final weights, blake2b "
            f"{s['weights_blake2b']})"
        )
    p = s["world_size"]
    aside = s["wall_s"] - s.get("steps_wall_s", s["wall_s"])  # evaluations, checkpoints
    lines = [
        f"done: {this_run(s, 'step', 'steps')} in {s['wall_s']:.2f} s"
        + (f" ({aside:.2f} s of it evaluations and checkpoints)" if aside >= 0.005 else "")
        + f", {s['samples_per_s']:,.0f} samples/s; "
        f"test accuracy {s['test_accuracy']:.4f}, test loss {s['test_loss']:.4f}"
    ]
    lines.append(per_step_line(s))
    lines.append(
        f"  replicas: bit-identical on {p} rank{'s' * (p > 1)} (weights blake2b "
        f"{s['weights_blake2b']})"
    )
    skipped = s.get("nonfinite_skipped_steps")
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (", ..." if len(skipped) > 10 else "")
        lines.append(
            f"  skipped {len(skipped)} step{'s' * (len(skipped) > 1)} whose gradient was not "
            f"finite: {shown}"
        )
    return "\n".join(lines)


def per_step_line(s: dict) -> str:
    """Compute and communication per step, mean over ranks. comm_s_by_rank is the exposed
    communication (the wait after backward); the hidden time under backward comes from the
    records (s["traffic"]), and where there is some the line says both."""
    p, steps = s["world_size"], max(s["steps"], 1)
    compute = sum(s["compute_s_by_rank"]) / p / steps
    exposed = sum(s["comm_s_by_rank"]) / p / steps
    head = f"  per step (mean over ranks): compute {compute * 1e3:.2f} ms, "
    hidden = (s.get("traffic") or {}).get("hidden_s")
    if not hidden:
        return head + f"all-reduce {exposed * 1e3:.2f} ms ({s['comm_share']:.0%} of step time)"
    return head + (
        f"communication {(exposed + hidden) * 1e3:.2f} ms of which {hidden * 1e3:.2f} ms hidden "
        f"under backward, {exposed * 1e3:.2f} ms exposed ({s['comm_share']:.0%} of step time)"
    )


PROGRESS_S = 3.0  # seconds between progress lines within an epoch
# Processes that launch ranks and pass their output on through pipes: the terminal, if any,
# is their outermost one's standard output.
LAUNCHERS = ("hydra_pmi_proxy", "mpiexec", "mpiexec.hydra", "mpirun", "orted", "prted",
             "prterun", "srun", "slurmstepd")  # fmt: skip


def terminal() -> bool:
    """Whether this process's output reaches a terminal: its own standard output, or under a
    launcher (whose ranks write into pipes) the launcher's. Linux's /proc; elsewhere, or when
    it cannot tell, no."""
    if sys.stdout.isatty():
        return True
    pid = os.getpid()
    try:
        for _ in range(8):
            out = os.readlink(f"/proc/{pid}/fd/1")
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{parent}/comm", encoding="utf-8") as f:
                above = f.read().strip()
            if not out.startswith(("pipe:", "socket:")) or above not in LAUNCHERS:
                return out.startswith(("/dev/pts/", "/dev/tty", "/dev/console"))
            pid = parent
    except (OSError, ValueError, IndexError):
        pass
    return False


class Progress:
    """Rank 0's progress line within an epoch that takes more than `every_s` seconds: the
    step, the rate and the estimated time left, every `every_s` seconds. Rank 0 alone
    decides, from its own clock: `step` asks nothing of the other ranks."""

    def __init__(self, first: int, total: int, steps_per_epoch: int, global_batch: int,
                 every_s: float = PROGRESS_S, clock=time.perf_counter):  # fmt: skip
        self.total, self.spe, self.batch, self.every_s, self.clock = (
            total, steps_per_epoch, global_batch, every_s, clock)  # fmt: skip
        self.epoch_start(first)

    def epoch_start(self, first: int) -> None:
        """An epoch (or the run) goes on from step `first`, now."""
        self.first, self.since = first, self.clock()
        self.last = self.since

    def step(self, step: int) -> str | None:
        """After step `step` (numbered from 0): a progress line when one is due, else None."""
        done = step + 1
        if done % self.spe == 0 or done == self.total:  # the epoch's own line follows
            self.epoch_start(done)
            return None
        now = self.clock()
        if now - self.last < self.every_s:
            return None
        self.last = now
        per_step = (now - self.since) / (done - self.first)
        epoch_end = min(self.total, (step // self.spe + 1) * self.spe)
        run = duration((self.total - done) * per_step)
        left = f"the run ends in {run}"
        if epoch_end < self.total:
            left = f"epoch ends in {duration((epoch_end - done) * per_step)}, the run in {run}"
        return (
            f"  epoch {step // self.spe + 1:>3}  step {step:>6} of 0-{self.total - 1}  "
            f"{self.batch / per_step:>9,.0f} samples/s  {left}"
        )


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '2 h 07 min'."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
