"""Runs side by side: test accuracy against running time and against bytes moved, and the
time and bytes each took to reach a target accuracy (`python -m netsim compare`): the
classic "running time against accuracy" study, with the network's bill beside it.

A run's evaluations are its evaluations.jsonl (rank 0, one line per test evaluation: the
step after which it ran, the wall time since training began, accuracy, loss); its bytes
are its step records' bytes_sent, summed over ranks and steps up to each evaluation (an
async run's: every message of the replica steps that took a batch up to the evaluated one).
"""

from __future__ import annotations

import json
import os

import numpy as np

from netsim.errors import InputError
from netsim.record import rundir

from . import downpour, traffic


def evaluations(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "evaluations.jsonl")
    if not os.path.isfile(path):
        raise InputError(
            f"{run_dir}: no evaluations.jsonl (no test evaluation was recorded: a run older "
            "than this version, or one stopped before its first evaluation)"
        )
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                rows.append({k: row[k] for k in ("step", "wall_s", "test_accuracy")})
            except (json.JSONDecodeError, KeyError, TypeError):
                if line.endswith("\n"):  # a last line cut short by a crash is left out
                    raise InputError(f"{path}: line {number} is not an evaluation") from None
    if not rows:
        raise InputError(f"{path}: no evaluation in it")
    return rows


def run_row(run_dir: str, target: float | None) -> dict:
    """One run's curve and its figures."""
    config, records, totals = rundir.load(run_dir)
    cfg = config["config"]
    if "downpour" in config:  # async: the bytes of every replica step up to that batch
        _, merged, _ = downpour.load(run_dir)
        upto = downpour.bytes_upto(merged)
        lay = config["downpour"]
        how = f"async {lay['replicas']}+{len(lay['servers'])}"
        if (lay["fetch_every"], lay["push_every"]) != (1, 1):
            how += f" n{lay['fetch_every']}/{lay['push_every']}"
    else:
        merged = traffic.merge(config, records, complete=totals is not None)
        sent = merged.table["bytes_sent"].sum(axis=1)  # per step, all ranks
        upto = dict(zip(merged.steps.tolist(), np.cumsum(sent).tolist())).get
        how = cfg.get("allreduce", "?") + ("/shm" if cfg.get("transport") == "shm" else "")
    curve = []
    for row in evaluations(run_dir):
        moved = upto(row["step"])
        curve.append({**row, "bytes": None if moved is None or np.isnan(moved) else int(moved)})
    out = {
        "run_dir": run_dir,
        "label": f"{os.path.basename(os.path.normpath(run_dir))}: p={config['world_size']} {how}",
        "world_size": config["world_size"],
        "dataset": cfg.get("dataset"),
        "allreduce": cfg.get("allreduce"),
        "curve": curve,
        "final_accuracy": curve[-1]["test_accuracy"],
        "best_accuracy": max(r["test_accuracy"] for r in curve),
        "wall_s": curve[-1]["wall_s"],
        "bytes": curve[-1]["bytes"],
    }
    if target is not None:
        reached = next((r for r in curve if r["test_accuracy"] >= target), None)
        out["target"] = target
        out["to_target"] = None if reached is None else {
            "step": reached["step"], "wall_s": reached["wall_s"], "bytes": reached["bytes"]
        }  # fmt: skip
    return out


def compare(run_dirs: list[str], target: float | None) -> list[dict]:
    if target is not None and not 0 < target <= 1:
        raise InputError(f"--target is an accuracy in (0, 1], got {target:g}")
    return [run_row(d, target) for d in run_dirs]


def note(rows: list[dict]) -> str | None:
    """A warning when the runs did not learn the same data: their accuracies (and the time
    to one target) measure different tasks."""
    datasets = {r.get("dataset") for r in rows}
    if len(datasets) < 2:
        return None
    which = ", ".join(f"{os.path.basename(os.path.normpath(r['run_dir']))} {r.get('dataset')}"
                      for r in rows)  # fmt: skip
    against = " or against one target" if rows[0].get("target") is not None else ""
    return (
        f"note: these runs trained on different datasets ({which}): their accuracies do not "
        f"compare with each other{against}"
    )


def text(rows: list[dict]) -> str:
    target = rows[0].get("target")
    head = f"{'run':<40} {'accuracy':>8} {'best':>6} {'time s':>8} {'bytes':>10}"
    if target is not None:
        head += f" | to {target:g}: {'step':>6} {'time s':>8} {'bytes':>10}"
    lines = [head]
    for r in rows:
        line = (
            f"{r['label'][:40]:<40} {r['final_accuracy']:>8.4f} {r['best_accuracy']:>6.3f} "
            f"{r['wall_s']:>8.2f} {_bytes(r['bytes']):>10}"
        )
        if target is not None:
            t, pad = r["to_target"], " " * len(f"to {target:g}:")
            line += f" | {pad} " + (
                f"{'not reached':>26}"
                if t is None
                else f"{t['step']:>6} {t['wall_s']:>8.2f} {_bytes(t['bytes']):>10}"
            )
        lines.append(line)
    if note(rows):
        lines.append(note(rows))
    return "\n".join(lines)


def _bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def plot(path: str, rows: list[dict]) -> None:
    """Accuracy against wall time (and against bytes, where recorded), one line per run
    (plots.compare_figure)."""
    from .plots import DPI, compare_figure

    compare_figure(rows).savefig(path, dpi=DPI)
