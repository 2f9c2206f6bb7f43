"""Runs side by side: test accuracy against running time and against bytes moved, and the
steps, time and bytes each took to reach a target accuracy (`python -m netsim compare`): the
classic "running time against accuracy" study, with the network's bill beside it.

A run's evaluations are its evaluations.jsonl (rank 0, one line per test evaluation: the
step after which it ran, the wall time since training began, accuracy, loss); its bytes
are its step records' bytes_sent, summed over ranks and steps up to each evaluation (an
async run's: every message of the replica steps that took a batch up to the evaluated one).
Its method is its --compress (none, fp16, ...). The target is --target, or by default the
lowest final accuracy among the runs, which every run has reached by its end. The steps to
it are the evaluated step + 1 (steps count from 0): the steps the run needed.

With a modelled cluster (--topology, --ranks), each synchronous run's time to the target
there: the steps it needed here times the step it would take there (netsim.sim.predict's
step_there: its recorded steps replayed, each bucket's collectives, compressed as the run
compressed them, on that network; backward, the update and the compression's compute as
measured here); `predict_row` adds it, given the step.
"""

from __future__ import annotations

import json
import os

import numpy as np

from netsim.errors import InputError
from netsim.record import rundir

from . import downpour, traffic

DEFAULT_TARGET = "the lowest final accuracy among the runs, which each reached"


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
    """One run's curve and its figures (and, with a target, the steps, time and bytes to it)."""
    return _row(run_dir, target)[0]


def _row(run_dir: str, target: float | None) -> tuple[dict, tuple | None]:
    """(the run's row, what a prediction replays: (config, merged traffic, records), None for
    an async run)."""
    config, records, totals = rundir.load(run_dir)
    cfg = config["config"]
    replayed = None
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
        replayed = (config, merged, records)
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
        "compress": cfg.get("compress") or "none",
        "steps": curve[-1]["step"] + 1,
        "curve": curve,
        "final_accuracy": curve[-1]["test_accuracy"],
        "best_accuracy": max(r["test_accuracy"] for r in curve),
        "wall_s": curve[-1]["wall_s"],
        "bytes": curve[-1]["bytes"],
    }
    if target is not None:
        to_target(out, target)
    return out, replayed


def to_target(row: dict, target: float) -> dict:
    """The row's first evaluation at or above `target`: its step, the steps the run needed
    (step + 1), the wall time and the bytes so far (None: never reached)."""
    reached = next((r for r in row["curve"] if r["test_accuracy"] >= target), None)
    row["target"] = target
    row["to_target"] = None if reached is None else {
        "step": reached["step"], "steps": reached["step"] + 1, "wall_s": reached["wall_s"],
        "bytes": reached["bytes"],
    }  # fmt: skip
    return row


def compare(run_dirs: list[str], target: float | None, there=None) -> list[dict]:
    """The rows of the runs against `target` (None: DEFAULT_TARGET's); with `there`, a
    function of (config, merged traffic, step records) giving a run's step on a modelled
    cluster (netsim.sim.predict.step_there, bound to one), each synchronous run's time to
    the target there."""
    if target is not None and not 0 < target <= 1:
        raise InputError(f"--target is an accuracy in (0, 1], got {target:g}")
    loaded = [_row(d, target) for d in run_dirs]
    rows = [row for row, _ in loaded]
    if target is None:
        target = min(row["final_accuracy"] for row in rows)
        for row in rows:
            to_target(row, target)["target_from"] = DEFAULT_TARGET
    for row, replayed in loaded if there is not None else ():
        if replayed is None:
            row["predicted"] = {"error": "an async run: its steps are not replayed"}
        else:
            predict_row(row, there(*replayed))
    return rows


def time_to_accuracy(steps: int | None, step_s: float) -> float | None:
    """The time to a target accuracy on a modelled cluster: the steps the run needed here to
    reach it, times the step predicted there (None: the run never reached it)."""
    return None if steps is None else steps * step_s


def predict_row(row: dict, step: dict) -> dict:
    """The row's time to its target on a modelled cluster, given the step predicted there
    (netsim.sim.predict.step_there's: its topology, world_size, step_time_s): the steps it
    needed here x that step, exactly; and its whole run's steps x that step."""
    reached = row.get("to_target")
    steps = None if reached is None else reached["steps"]
    measured = step.get("measured", {}).get("step_time_s", step.get("measured_step_time_s"))
    row["predicted"] = {
        "topology": step["topology"],
        "ranks": step["world_size"],
        "step_s": step["step_time_s"],
        "compress_s": step.get("compress_s", 0.0),
        # the buckets' collectives alone on that network (the whole buffer's all-reduce)
        "network_s": (
            sum(b["network_s"] for b in step["buckets"])
            if "buckets" in step
            else step["allreduce_time_s_median"]
        ),
        "exposed_comm_s": step.get("exposed_comm_s"),
        "compute_scale": step.get("compute_scale", 1.0),
        "measured_step_s": measured,
        "steps_to_target": steps,
        "time_to_target_s": time_to_accuracy(steps, step["step_time_s"]),
        "time_s": time_to_accuracy(row["steps"], step["step_time_s"]),
    }
    return row


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
    lines = []
    if target is not None:
        how = rows[0].get("target_from", "--target")
        lines.append(f"target accuracy {target:.4g} ({how})")
    head = (
        f"{'run':<34} {'method':<12} {'steps':>6} {'accuracy':>8} {'best':>6} {'time s':>8} "
        f"{'bytes':>10}"
    )
    if target is not None:
        head += f" | to target: {'steps':>6} {'time s':>8} {'bytes':>10}"
    lines.append(head)
    for r in rows:
        line = (
            f"{r['label'][:34]:<34} {r.get('compress', 'none')[:12]:<12} {r['steps']:>6} "
            f"{r['final_accuracy']:>8.4f} {r['best_accuracy']:>6.3f} {r['wall_s']:>8.2f} "
            f"{_bytes(r['bytes']):>10}"
        )
        if target is not None:
            t = r["to_target"]
            line += (
                " | "
                + " " * len("to target:")
                + " "
                + (
                    f"{'not reached':>26}"
                    if t is None
                    else f"{t['steps']:>6} {t['wall_s']:>8.2f} {_bytes(t['bytes']):>10}"
                )
            )
        lines.append(line)
    lines += predicted_lines(rows)
    if note(rows):
        lines.append(note(rows))
    return "\n".join(lines)


def predicted_lines(rows: list[dict]) -> list[str]:
    """Each run's time to the target on the modelled cluster, beside its step here."""
    first = next((r["predicted"] for r in rows if "step_s" in r.get("predicted", {})), None)
    if first is None:
        return [f"predicted: {r['predicted']['error']}" for r in rows if "predicted" in r][:1]
    scaled = [r["predicted"].get("compute_scale", 1.0) for r in rows if "step_s" in r.get(
        "predicted", {})]  # fmt: skip
    compute = (
        "compute as measured here"
        if all(x == 1.0 for x in scaled)
        else "compute scaled to the topology's GPU as a workload's is ("
        + ", ".join(f"x{x:.3g}" for x in scaled)
        + " of what it took here)"
    )
    lines = [
        f'predicted on {first["ranks"]:,} ranks of "{first["topology"]}": time to the target '
        "there = the steps each run needed here x its step there",
        "  (its recorded steps replayed there: each bucket's collectives, compressed as the "
        f"run compressed them, on that network; backward, the update and the compression's "
        f"{compute})",
        f"{'run':<34} {'method':<12} {'step here':>10} {'step there':>10} {'network':>10} "
        f"{'compress':>10} | to target: {'steps':>6} {'time there':>11}  "
        f"{'whole run there':>15}",
    ]
    for r in rows:
        o = r.get("predicted")
        head = f"{r['label'][:34]:<34} {r.get('compress', 'none')[:12]:<12} "
        if o is None or "error" in o:
            lines.append(head + (o or {}).get("error", "-"))
            continue
        t = o["time_to_target_s"]
        lines.append(
            head + f"{_ms(o['measured_step_s']):>10} {_ms(o['step_s']):>10} "
            f"{_ms(o['network_s']):>10} {_ms(o['compress_s']):>10} | {' ' * len('to target:')} "
            + (f"{'not reached':>18}" if t is None else f"{o['steps_to_target']:>6} {_s(t):>11}")
            + f"  {_s(o['time_s']):>15}"
        )
    return lines


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.3f} ms"


def _s(seconds) -> str:
    """Seconds, or milliseconds below one."""
    if seconds is None:
        return "-"
    return f"{seconds:,.2f} s" if seconds >= 1 else f"{seconds * 1e3:,.1f} ms"


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
