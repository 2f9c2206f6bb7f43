"""Training throughput (samples/s) at p = 1, 2, 4 ranks, and optionally PyTorch DDP beside it.

    python bench/throughput.py [--ranks 1,2,4] [--rounds 3] [--torch]

Runs `python -m allreduce_train` (under mpirun for p > 1) for a fixed number of steps, with
a fixed batch per rank (weak scaling: global batch = per-rank batch * p). Reports the
median over rounds of summary.json's samples_per_s, the per-step compute / all-reduce split
from the step records (warm-up steps left out), and the speed-up over p = 1 in the same
run. Rounds go round-robin over every configuration, so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import launch
from launch import mpirun_argv  # $MPIEXEC, else the mpirun beside this Python

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_WORKER = os.path.join(REPO, "bench", "torch_ddp.py")


@dataclass(frozen=True)
class Model:
    name: str
    data_args: tuple[str, ...]
    layers: str
    batch_per_rank: int


MODELS = {
    "small": Model("small", ("--dataset", "digits"), "64,128,128,10", 32),
    "large": Model(
        "large", ("--dataset", "synthetic", "--features", "784"), "784,1024,1024,10", 64
    ),
}


def run(argv: list[str], timeout_s: float) -> bool:
    try:
        proc = launch.run(argv, timeout_s, cwd=REPO)  # a hang is killed, every rank with it
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout_s:.0f} s: {shlex.join(argv)}", flush=True)
        return False
    if proc.returncode != 0:
        print(
            f"  exit code {proc.returncode}: "
            f"{shlex.join(argv)}\n{(proc.stdout + proc.stderr)[-1500:]}",
            flush=True,
        )
    return proc.returncode == 0


# --- our training program -------------------------------------------------------------------


def ours_argv(model: Model, p: int, steps: int, allreduce: str, run_dir: str) -> list[str]:
    # Cross-rank weight checks and test evaluation run only after the last step, so that the
    # timed loop is training steps alone, as in the torch baseline.
    cli = [
        sys.executable,
        "-m",
        "allreduce_train",
        *model.data_args,
        "--layers",
        model.layers,
        "--global-batch",
        str(model.batch_per_rank * p),
        "--steps",
        str(steps),
        "--allreduce",
        allreduce,
        "--check-every",
        "0",
        "--eval-every",
        str(steps + 1),
        "--run-dir",
        run_dir,
    ]
    return cli if p == 1 else mpirun_argv(p, cli)


def step_means_s(run_dir: str, p: int, warmup_steps: int) -> tuple[float, float]:
    """Mean compute_s and comm_s per step, over ranks and post-warm-up steps."""
    from netsim.record import rundir

    compute_s, comm_s = [], []
    for rank in range(p):
        records = rundir.read_steps(run_dir, rank)
        steady = records[warmup_steps:] or records
        compute_s += [r["compute_s"] for r in steady]
        comm_s += [r["comm_s"] for r in steady]
    return statistics.fmean(compute_s), statistics.fmean(comm_s)


def run_ours(model: Model, p: int, args, tmp: str) -> dict | None:
    run_dir = tempfile.mkdtemp(dir=tmp)
    steps = getattr(args, f"{model.name}_steps")
    if not run(ours_argv(model, p, steps, args.allreduce, run_dir), args.timeout_s):
        return None
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    compute_s, comm_s = step_means_s(run_dir, p, args.warmup_steps)
    return {
        "samples_per_s": summary["samples_per_s"],
        "compute_s": compute_s,
        "comm_s": comm_s,
        "nparams": config["nparams"],
        "buffer_bytes": config["buffer_bytes"],
    }


# --- PyTorch DDP baseline -------------------------------------------------------------------


def torch_available() -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import torch.distributed as d; assert d.is_gloo_available()"],
        capture_output=True,
    )
    return probe.returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torch(model: Model, p: int, args, tmp: str) -> dict | None:
    out = os.path.join(tempfile.mkdtemp(dir=tmp), "result.json")
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(p),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        TORCH_WORKER,
        "--layers",
        model.layers,
        "--batch-per-rank",
        str(model.batch_per_rank),
        "--steps",
        str(getattr(args, f"{model.name}_steps")),
        "--warmup-steps",
        str(args.warmup_steps),
        "--out",
        out,
    ]
    if not run(argv, args.timeout_s):
        return None
    with open(out) as f:
        return json.load(f)


# --- report -------------------------------------------------------------------------------


def median_of(runs: list[dict], key: str) -> float:
    values = [r[key] for r in runs if r is not None]
    return statistics.median(values) if values else float("nan")


def print_model(model: Model, ranks: list[int], ours: dict, theirs: dict, args) -> None:
    known = [r for runs in ours.values() for r in runs if r is not None]
    size = (
        f"{known[0]['nparams']:,} parameters, {known[0]['buffer_bytes'] / 2**20:.1f} MiB"
        if known
        else "?"
    )
    print(
        f"\n{model.name} MLP {model.layers.replace(',', '-')} ({size}); {model.batch_per_rank} "
        f"samples per rank per step; {getattr(args, f'{model.name}_steps')} steps; all-reduce "
        f"{args.allreduce}; median of {args.rounds} rounds"
    )
    header = (
        f"{'p':>2} {'global_batch':>12} {'samples_per_s':>13} {'speedup':>7} {'efficiency':>10} "
        f"{'compute_ms':>10} {'comm_ms':>8} {'comm_share':>10}"
    )
    if theirs:
        header += (
            f" {'torch_samples_per_s':>19} {'torch_speedup':>13} {'torch_step_ms':>13} "
            f"{'ours/torch':>10}"
        )
    print(header)
    base = median_of(ours[ranks[0]], "samples_per_s") if ranks[0] == 1 else float("nan")
    torch_base = (
        median_of(theirs[ranks[0]], "samples_per_s") if theirs and ranks[0] == 1 else float("nan")
    )
    for p in ranks:
        sps, compute_s, comm_s = (
            median_of(ours[p], k) for k in ("samples_per_s", "compute_s", "comm_s")
        )
        line = (
            f"{p:>2} {model.batch_per_rank * p:>12} {sps:>13,.0f} {sps / base:>7.2f} "
            f"{sps / base / p:>10.0%} {compute_s * 1e3:>10.2f} {comm_s * 1e3:>8.2f} "
            f"{comm_s / (compute_s + comm_s):>10.0%}"
        )
        if theirs:
            tsps, tstep_s = (
                median_of(theirs[p], "samples_per_s"),
                median_of(theirs[p], "step_s_mean"),
            )
            line += (
                f" {tsps:>19,.0f} {tsps / torch_base:>13.2f} {tstep_s * 1e3:>13.2f} "
                f"{sps / tsps:>10.2f}"
            )
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--ranks", default="1,2,4", help="comma-separated rank counts (speedup is against 1)"
    )
    ap.add_argument("--models", default="small,large", help=f"any of {', '.join(MODELS)}")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--small-steps", type=int, default=400)
    ap.add_argument("--large-steps", type=int, default=150)
    ap.add_argument(
        "--warmup-steps", type=int, default=10, help="left out of the compute/comm split"
    )
    ap.add_argument("--allreduce", default="auto", help="auto (the default), ring, mpi, ...")
    ap.add_argument("--torch", action="store_true", help="also run the PyTorch DDP (gloo) baseline")
    ap.add_argument("--timeout-s", type=float, default=120, help="hard limit per training run")
    args = ap.parse_args()
    ranks, models = (
        [int(p) for p in args.ranks.split(",")],
        [MODELS[m] for m in args.models.split(",")],
    )
    if args.torch and not torch_available():
        print(
            "torch (with gloo) is not installed in this interpreter: skipping the DDP baseline "
            "(pip install torch==2.13.0)"
        )
        args.torch = False
    print(
        f"throughput bench: {os.cpu_count()} CPUs; p ranks share them (p > CPUs is oversubscribed)"
    )
    ours = {(m.name, p): [] for m in models for p in ranks}
    theirs = {(m.name, p): [] for m in models for p in ranks} if args.torch else {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds} ...", flush=True)
            for m in models:
                for p in ranks:
                    ours[m.name, p].append(run_ours(m, p, args, tmp))
                    if args.torch:
                        theirs[m.name, p].append(run_torch(m, p, args, tmp))
    print(
        f"done; load average over the last 5 min {os.getloadavg()[1]:.1f} on {os.cpu_count()} CPUs"
    )
    for m in models:
        print_model(
            m,
            ranks,
            {p: ours[m.name, p] for p in ranks},
            {p: theirs[m.name, p] for p in ranks} if args.torch else {},
            args,
        )


if __name__ == "__main__":
    main()
