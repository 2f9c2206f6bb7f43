"""The run directory: the contract between a training run (writer) and netsim (reader).

    config.json            the run's configuration, world and model (rank 0, at start)
    steps-rank<R>.bin      every rank's step records, stored as made (record.stepfile)
    summary.json           totals (rank 0, at the end; its absence means the run did not end)
    checkpoint.npz         final parameters and optimizer state (rank 0, at the end)
    steps.jsonl, links.csv, timeline.json   the merged records (rank 0, at the end:
                           netsim.report.files)
    network.json           an emulated cluster's network and its links' qdisc counters
                           (python -m launch.emulate, after the run)

Step records: step, epoch, samples, loss (mean over this rank's samples), compute_s,
comm_s, this rank's clock at step start, collective entry and exit, step end (t_start_ns,
t_comm_ns, t_comm_end_ns, t_end_ns: integer nanoseconds of perf_counter), bytes_sent,
bytes_recv, messages, links ([src, dst, bytes, messages] per peer this rank sent to) and
rounds ([phase, index, posted_ns, completed_ns] per round of the schedule). Units are in
the names; bytes are payload bytes of the collective's point-to-point messages.
"""

from __future__ import annotations

import json
import math
import os
import time

from netsim.errors import InputError

from . import stepfile


class RunDirError(InputError):
    """A run directory that cannot be read: one line naming the file and the problem."""


def step_file(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, f"steps-rank{rank}.bin")


def create(run_dir: str | None, world_size: int) -> str:
    """Make a new run directory and return its path. An explicit one may exist but must not
    already hold a run: data already written is never overwritten."""
    if run_dir is not None:
        if os.path.exists(step_file(run_dir, 0)) or os.path.exists(
            os.path.join(run_dir, "config.json")
        ):
            raise FileExistsError(
                f"--run-dir {run_dir} already holds a run; choose a new directory"
            )
        os.makedirs(run_dir, exist_ok=True)
        return run_dir
    stem = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + f"-p{world_size}")
    for attempt in range(1000):
        path = stem if attempt == 0 else f"{stem}-{attempt}"
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot find a free run directory name near {stem}")


def finite(obj):
    """obj with every NaN or infinite float (numpy's too) as None, dicts and lists within."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


def dumps(obj, **options) -> str:
    """Strict JSON, the project's one way to write it: a non-finite float is null (json's
    default would write NaN or Infinity, which strict parsers refuse)."""
    return json.dumps(finite(obj), allow_nan=False, **options)


def write_json(path: str, obj) -> None:
    """Strict JSON (dumps), written whole or not at all (temporary file, then rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def read_steps(run_dir: str, rank: int) -> list[dict]:
    """A rank's step records; a last record cut short by a crash is left out."""
    return stepfile.read(step_file(run_dir, rank))


def allreduce_context(config: dict) -> dict:
    """The context of a run's all-reduce as config.json records it, for its algorithm's
    schedule and byte count: node_of_rank, segments (per layer) and channels."""
    return {
        "node_of_rank": config["node_of_rank"],
        "segments": config.get("segments"),
        "channels": config["config"].get("channels", 1),
    }


_REQUIRED = ("world_size", "config", "nparams", "buffer_bytes", "node_of_rank")


def load(run_dir: str) -> tuple[dict, list[list[dict]], dict | None]:
    """(config, step records per rank, summary or None if the run did not finish)."""
    if not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir}: no such directory")
    config = _read_json(os.path.join(run_dir, "config.json"), run_dir)
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise RunDirError(f"{run_dir}/config.json: missing {', '.join(missing)}")
    records = []
    for rank in range(config["world_size"]):
        if not os.path.exists(step_file(run_dir, rank)):  # a rank that died before its first step
            records.append([])
            continue
        try:
            records.append(read_steps(run_dir, rank))
        except OSError as exc:
            raise RunDirError(
                f"{step_file(run_dir, rank)}: cannot read: {exc.strerror or exc}"
            ) from None
    summary_path = os.path.join(run_dir, "summary.json")
    summary = _read_json(summary_path, run_dir) if os.path.exists(summary_path) else None
    return config, records, summary


def network(run_dir: str) -> dict | None:
    """network.json ({"emulated": ..., "links": [...]}), or None for a run on real hosts."""
    path = os.path.join(run_dir, "network.json")
    if not os.path.exists(path):
        return None
    value = _read_json(path, run_dir)
    if not isinstance(value.get("emulated"), dict) or not isinstance(value.get("links"), list):
        raise RunDirError(f"{path}: not an emulated network's description")
    return value


def _read_json(path: str, run_dir: str) -> dict:
    if not os.path.exists(path):
        raise RunDirError(f"{run_dir}: not a run directory (no {os.path.basename(path)})")
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{path}: expected a JSON object")
    return value
