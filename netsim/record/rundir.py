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
rounds ([phase, index, posted_ns, completed_ns] per round of the schedule); d2h_bytes,
h2d_bytes, d2h_s, h2d_s: a GPU gradient's copies to host memory and back around the
collective (0 where none). Units are in the names; bytes are payload bytes of the
collective's point-to-point messages.

(Past 300 lines: the run directory's one contract, its writer's helpers and its reader's
checks of every file in it, config.json's fields included.)
"""

from __future__ import annotations

import contextlib
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
    """Strict JSON (dumps), written whole or not at all (atomic)."""
    with atomic(path) as f:
        f.write(dumps(obj, indent=2) + "\n")


@contextlib.contextmanager
def atomic(path: str, mode: str = "w", **options):
    """A file written whole or not at all: into a temporary file beside `path`, flushed to
    disk, then renamed over it. On any failure (a full disk, a read-only directory) the
    temporary file is removed, the old `path` (if any) is left as it was, and the error goes
    on to the caller."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {}), **options) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a write: say which file
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


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
    """(config, step records per rank, summary or None if the run did not finish).

    A damaged run is read as far as it can be: config gains `damage`, one line per file that
    is damaged, missing or short of the steps the run recorded (empty for a sound run), and
    each rank's records are those before its file's damage."""
    if not os.path.isdir(run_dir):
        raise RunDirError(f"{run_dir}: no such directory")
    config_path = os.path.join(run_dir, "config.json")
    config = _read_json(config_path, run_dir)
    _check_config(config_path, config)
    damage = []
    summary_path = os.path.join(run_dir, "summary.json")
    summary = None
    if os.path.exists(summary_path):
        try:
            summary = _read_json(summary_path, run_dir)
        except RunDirError as exc:  # the run ended; what its ranks recorded is still there
            damage.append(str(exc))
    records = [_rank_records(run_dir, rank, config, damage) for rank in range(config["world_size"])]
    if os.path.exists(summary_path) and config["config"].get("record", True):
        steps = (summary or {}).get("steps", config.get("total_steps"))
        if not _count(steps, 0):
            damage.append(f"{summary_path}: steps is {steps!r}, not a count")
        elif _count(first := (summary or {}).get("first_step", 0), 0) and first <= steps:
            steps -= first  # a resumed run records from the checkpoint's step on
        expected = [steps] * config["world_size"]
        if "downpour" in config:  # async: each replica its own steps, none for servers
            expected = _async_steps(config)
        for rank, recs in enumerate(records):
            path, steps = step_file(run_dir, rank), expected[rank]
            if _count(steps, 0) and len(recs) < steps and not any(path in d for d in damage):
                missing = "missing" if not os.path.exists(path) else "truncated"
                damage.append(f"{path}: {missing}, holds {len(recs)} of the run's {steps} steps")
    config["damage"] = damage
    return config, records, summary


def _async_steps(config: dict) -> list[int]:
    lay = config["downpour"]
    steps = lay.get("steps_by_replica") if isinstance(lay, dict) else None
    servers = lay.get("servers") if isinstance(lay, dict) else None
    if not (
        isinstance(steps, list)
        and isinstance(servers, list)
        and len(steps) + len(servers) == config["world_size"]
        and all(_count(n, 0) for n in steps)
    ):
        raise RunDirError(f"{config.get('run_dir')}: config.json's downpour layout is damaged")
    return steps + [0] * len(servers)


def _rank_records(run_dir: str, rank: int, config: dict, damage: list) -> list[dict]:
    path = step_file(run_dir, rank)
    if not os.path.exists(path):  # a rank that died before its first step
        return []
    try:
        records, problem = stepfile.scan(path)
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror or exc}") from None
    p = config["world_size"]
    for k, rec in enumerate(records):
        if any(not (src < p and dst < p) for src, dst, *_ in rec["links"] or ()):
            problem = f"{path}: step {rec['step']} sends to ranks outside a world of {p}"
            records = records[:k]
            break
    if problem is not None:
        damage.append(f"{problem}; {len(records)} steps readable before it")
    return records


def _check_config(path: str, config: dict) -> None:
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise RunDirError(f"{path}: missing {', '.join(missing)}")
    p, cfg, nodes = config["world_size"], config["config"], config["node_of_rank"]
    offsets, segments = config.get("clock_offsets_s"), config.get("segments")
    valid = {
        "world_size": _count(p, 1),
        "config": isinstance(cfg, dict)
        and isinstance(cfg.get("allreduce"), str)
        and isinstance(cfg.get("dtype"), str)
        and _count(cfg.get("channels", 1), 1),
        "nparams": _count(config["nparams"], 0),
        "buffer_bytes": _count(config["buffer_bytes"], 0),
        "node_of_rank": isinstance(nodes, list)
        and len(nodes) == p
        and all(_count(n, 0) for n in nodes),
        "clock_offsets_s": offsets is None
        or (isinstance(offsets, list) and len(offsets) == p and all(map(_number, offsets))),
        "total_steps": _count(config.get("total_steps", 0), 0),
        "segments": segments is None or _segments(segments, config["nparams"]),
        "buckets": _buckets(config.get("buckets"), config["buffer_bytes"]),
        "overlap": isinstance(config.get("overlap", False), bool),
        "allreduce_choice": _choice(cfg.get("allreduce_choice") if isinstance(cfg, dict) else None),
    }
    bad = [k for k, ok in valid.items() if not ok]
    if bad:
        raise RunDirError(f"{path}: not a run's configuration (bad {', '.join(bad)})")


def _buckets(buckets, nbytes) -> bool:
    """None, or [{offset, bytes, layer}, ...]: spans of the gradient, every byte in one."""
    if buckets is None:
        return True
    if not isinstance(buckets, list) or not buckets:
        return False
    spans = []
    for b in buckets:
        if not (isinstance(b, dict) and all(_count(b.get(k), 0) for k in ("offset", "bytes"))):
            return False
        if not _count(b.get("layer", 0), 0):
            return False
        spans.append((b["offset"], b["bytes"]))
    end = 0
    for offset, size in sorted(spans):
        if offset != end:
            return False
        end += size
    return end == nbytes


def _choice(choice) -> bool:
    """None, or --allreduce auto's pick: its per-bucket picks, if any, each an algorithm's
    name and a channel count."""
    if choice is None:
        return True
    if not isinstance(choice, dict):
        return False
    picks = choice.get("buckets")
    return picks is None or (
        isinstance(picks, list)
        and all(
            isinstance(c, dict) and isinstance(c.get("algorithm"), str)
            and _count(c.get("channels", 1), 1)
            for c in picks
        )
    )  # fmt: skip


def _segments(segments, nparams) -> bool:
    """[[start, count], ...], one after another, covering the parameters."""
    end = 0
    for segment in segments if isinstance(segments, list) else [None]:
        if not (isinstance(segment, list) and len(segment) == 2 and segment[0] == end):
            return False
        if not _count(segment[1], 0):
            return False
        end += segment[1]
    return end == nparams


def _count(value, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def network(run_dir: str) -> dict | None:
    """network.json ({"emulated": ..., "links": [...]}), or None for a run on real hosts."""
    path = os.path.join(run_dir, "network.json")
    if not os.path.exists(path):
        return None
    value = _read_json(path, run_dir)
    emulated, links = value.get("emulated"), value.get("links")
    if not (
        isinstance(emulated, dict)
        and _count(emulated.get("nodes"), 1)
        and _count(emulated.get("ranks_per_node"), 1)
        and _number(emulated.get("node_mbit_per_s"))
        and isinstance(links, list)
        and all(map(_link, links))
    ):
        raise RunDirError(f"{path}: not an emulated network's description")
    return value


def _link(link) -> bool:
    """A capped link's counters as network.json holds them."""
    return (
        isinstance(link, dict)
        and isinstance(link.get("link"), str)
        and all(_count(link.get(k), 0) for k in ("bytes", "packets", "drops"))
    )


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
