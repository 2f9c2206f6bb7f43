"""Measuring this machine for calibration: ping-pong, and our ring all-reduce through MPI
messages and through the node's shared memory (allreduce_train's --transport mpi and shm).

allreduce_train.probe runs under mpirun (launch finds it) as a subprocess per rank count
(so netsim never imports MPI); `passes` times over the rank counts in turn. Rounds in which
the ranks had less than MIN_CPU_SHARE of the cores (another process was running) are left
out; each point is the median of the rest. netsim.calibration.fitting fits a topology to the result.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import launch
from netsim.algorithms import busbw
from netsim.errors import InputError

PROBE = "allreduce_train.probe"
PINGPONG_SIZES = (8, 64, 512, 4 << 10, 32 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20)
# 4 KiB, 16 KiB, ..., 64 MiB: the small ones pin the cost per round, which decides what
# --allreduce auto picks below 1 MiB
ALLREDUCE_SIZES = tuple(4 << 10 << 2 * k for k in range(8))
MIN_CPU_SHARE = 0.9  # a round in which the ranks had less of the cores was disturbed


class CalibrationError(InputError):
    """A measurement that could not be made or a file that cannot be fitted: one line."""


def machine() -> dict:
    """What is read, not fitted: the cores this process may run on, and the last-level
    cache (Linux sysfs; None where it cannot be read)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cache, level = None, 0
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            lvl, size = int((index / "level").read_text()), (index / "size").read_text().strip()
            kib = (
                int(size.removesuffix("K"))
                if size.endswith("K")
                else int(size.removesuffix("M")) * 1024
            )
        except (OSError, ValueError):
            continue
        if lvl > level:
            cache, level = kib << 10, lvl
    return {"cores": cores, "cache_bytes": cache, "host": platform.node()}


def probe_argv(
    world_size: int, out: str, pingpong_sizes, allreduce_sizes, rounds: int, shm_sizes=()
) -> list[str]:
    def sizes(s):
        return ",".join(map(str, s)) or "none"

    return launch.mpirun_argv(
        world_size,
        [
            sys.executable,
            "-m",
            PROBE,
            "--out",
            out,
            "--pingpong-sizes",
            sizes(pingpong_sizes),
            "--allreduce-sizes",
            sizes(allreduce_sizes),
            "--shm-sizes",
            sizes(shm_sizes),
            "--rounds",
            str(rounds),
        ],
    )


def run_probe(
    world_size: int,
    pingpong_sizes=(),
    allreduce_sizes=ALLREDUCE_SIZES,
    rounds: int = 5,
    timeout_s: float = 120,
    shm_sizes=(),
) -> dict:
    """One `mpirun -n P python -m allreduce_train.probe`; its JSON. A hang is killed with its
    whole process group after timeout_s."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "probe.json")
        argv = probe_argv(world_size, out, pingpong_sizes, allreduce_sizes, rounds, shm_sizes)
        # the probe lives beside netsim: found even where the project is not installed
        root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        }
        try:
            proc = launch.run(argv, timeout_s, env=env)
        except OSError as exc:
            raise CalibrationError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
        except subprocess.TimeoutExpired:
            raise CalibrationError(f"timed out after {timeout_s:g} s: {shlex.join(argv)}") from None
        stdout, stderr = proc.stdout, proc.stderr
        if proc.returncode != 0 or not os.path.exists(out):
            last = ((stderr + stdout).strip().splitlines() or ["no output"])[-1]
            raise CalibrationError(
                f"mpirun -n {world_size} python -m {PROBE} failed "
                f"(exit code {proc.returncode}): {last}"
            )
        with open(out) as f:
            return json.load(f)


def measure(
    ranks=(2, 3, 4),
    rounds: int = 3,
    passes: int = 5,
    pingpong_sizes=PINGPONG_SIZES,
    allreduce_sizes=ALLREDUCE_SIZES,
    timeout_s: float = 120,
    log=None,
    shm_sizes=None,
) -> dict:
    """Ping-pong at the smallest rank count, the ring all-reduce at every one, through MPI
    messages (`allreduce`) and through shared memory (`allreduce_shm`, at shm_sizes: None
    is allreduce_sizes, () none); `passes` times over all rank counts in turn, so that a
    busy spell of the machine lands on all of them alike instead of on one. Every round of
    every pass is kept."""
    shm_sizes = allreduce_sizes if shm_sizes is None else shm_sizes
    runs = []
    for k in range(passes):
        for i, p in enumerate(sorted(ranks)):
            if log:
                log(f"probe: pass {k + 1}/{passes}, {p} ranks")
            runs.append(
                run_probe(
                    p,
                    pingpong_sizes if i == 0 else (),
                    allreduce_sizes,
                    rounds,
                    timeout_s,
                    shm_sizes,
                )
            )
    return {
        "machine": machine(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "runs": runs,
    }


def pooled(
    measurements: dict, min_cpu_share: float = MIN_CPU_SHARE, kind: str = "allreduce"
) -> tuple[dict, dict]:
    """({nbytes: one-way seconds of every round}, {(p, nbytes): all-reduce seconds of every
    round}) over all runs of a measurement file, less the rounds in which the ranks had
    less than min_cpu_share of the cores (another process was running: that is not the
    machine we model). Where every round of a size was disturbed, all are kept. kind: the
    all-reduces through messages (allreduce) or shared memory (allreduce_shm; a file of
    an older probe has none)."""
    pingpong, allreduce = {}, {}
    try:
        for run in measurements["runs"]:
            for e in run["pingpong"]:
                pingpong.setdefault(int(e["nbytes"]), []).append(_rounds(e, "one_way_s"))
            for e in run["allreduce"] if kind == "allreduce" else run.get(kind, []):
                allreduce.setdefault((int(run["world_size"]), int(e["nbytes"])), []).append(
                    _rounds(e, "times_s")
                )
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(
            f"not a measurement file of `netsim calibrate` ({type(exc).__name__}: {exc})"
        ) from None

    def undisturbed(rounds):
        times = [t for part in rounds for t, share in part if share >= min_cpu_share]
        return times or [t for part in rounds for t, _ in part]

    return (
        {n: undisturbed(r) for n, r in sorted(pingpong.items())},
        {k: undisturbed(r) for k, r in sorted(allreduce.items())},
    )


def disturbed_rounds(measurements: dict, min_cpu_share: float = MIN_CPU_SHARE) -> tuple[int, int]:
    """(rounds with less than min_cpu_share of the cores, all rounds)."""
    shares = [
        s
        for run in measurements["runs"]
        for e in run["pingpong"] + run["allreduce"] + run.get("allreduce_shm", [])
        for s in e.get("cpu_share", [1.0] * len(e.get("times_s", e.get("one_way_s", []))))
    ]
    return sum(s < min_cpu_share for s in shares), len(shares)


def _rounds(entry: dict, key: str) -> list[tuple[float, float]]:
    times = [float(t) for t in entry[key]]
    shares = entry.get("cpu_share", [1.0] * len(times))  # older files: all undisturbed
    if not times or len(shares) != len(times):
        raise ValueError(f"{key} rounds")
    return list(zip(times, shares))


def measured_report(world_size: int, nbytes: int, times_s) -> dict:
    """A measured all-reduce in the schema of predict.predict (and report.summary.summarize), so
    that predict.errors compares the two."""
    t = float(np.median(times_s))
    algbw = nbytes / t
    return {
        "world_size": world_size,
        "algorithm": "ring",
        "buffer_bytes": nbytes,
        "allreduce_time_s_median": t,
        "algbw_bytes_per_s": algbw,
        "busbw_bytes_per_s": busbw(algbw, world_size),
        "rounds": len(times_s),
        "spread": (max(times_s) - min(times_s)) / t,
    }
