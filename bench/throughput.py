"""Training throughput (samples/s) at p = 1, 2, 4 ranks, PyTorch DDP beside it, and overlap.

    python bench/throughput.py [--ranks 1,2,4] [--rounds 3] [--torch]
    python bench/throughput.py --models large,deep --overlap off,on --torch   # buckets, overlap

Runs `python -m allreduce_train` (under mpirun for p > 1) for a fixed number of steps, with
a fixed batch per rank (weak scaling: global batch = per-rank batch * p). Reports the
median over rounds of summary.json's samples_per_s, the per-step compute / all-reduce split
from the step records (warm-up steps left out), and the speed-up over p = 1 in the same
run. Rounds go round-robin over every configuration, every other round in reverse order, so
machine noise hits all alike. The 784-input models train on Fashion-MNIST where its files
are (--data-dir, default Debian's dataset-fashion-mnist), else on synthetic data of its
shape (--data); throughput does not depend on which.

With --overlap (off,on) our training runs once per bucket plan (--buckets, MiB/first MiB;
default DDP's 25/1 and a smaller 4/1) and overlap setting; a plan that cuts a model's
gradient into the same buckets as an earlier plan is said so and not run again. Per model,
plan and p the table sets overlap off and on side by side: samples/s, their ratio to PyTorch
DDP over gloo (with DDP's default buckets, bench/torch_ddp.py) and to each other, and from
the step records the median over post-warm-up steps and ranks of compute, communication
(comm = exposed + hidden) and exposed ms per step, and of the hidden share, hidden_s /
comm_s.

Past 300 lines: one bench, one alternation loop over every configuration of ours and of
DDP, and its two tables read the same runs; apart, the loop and the launches would be
written twice.
"""

from __future__ import annotations

import argparse
import functools
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
    layers: str
    batch_per_rank: int
    steps: int  # default --<name>-steps

    @property
    def widths(self) -> list[int]:
        return [int(w) for w in self.layers.split(",")]


MODELS = {
    "small": Model("small", "64,128,128,10", 32, 400),  # sklearn's digits
    "large": Model("large", "784,1024,1024,10", 64, 150),
    "deep": Model("deep", "784,1024,1024,1024,1024,1024,10", 64, 60),
}


def data_args(model: Model, args) -> list[str]:
    if model.widths[0] == 64:
        return ["--dataset", "digits"]
    if args.data == "fashion-mnist":
        return ["--dataset", "fashion-mnist", "--data-dir", args.data_dir]
    return ["--dataset", "synthetic", "--features", str(model.widths[0])]


def pick_data(args) -> None:
    """--data auto: Fashion-MNIST where its four IDX files are, else synthetic."""
    from allreduce_train.maths import data

    found = all(data._idx_path(args.data_dir, stem) for stem in data._IDX_FILES.values())
    if args.data == "auto":
        args.data = "fashion-mnist" if found else "synthetic"
        if not found:
            print(
                f"no Fashion-MNIST in {args.data_dir} (apt-get install dataset-fashion-mnist, "
                f"or --data-dir): the 784-input models train on synthetic data"
            )


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


def steps_of(model: Model, args) -> int:
    return getattr(args, f"{model.name}_steps")


# --- our training program -------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A bucket plan: --bucket-mb and --first-bucket-mb."""

    mb: float
    first_mb: float

    @property
    def label(self) -> str:
        return f"{self.mb:g}/{self.first_mb:g}"

    def cli(self) -> list[str]:
        return ["--bucket-mb", f"{self.mb:g}", "--first-bucket-mb", f"{self.first_mb:g}"]

    def sizes_mib(self, model: Model) -> list[float]:
        from allreduce_train.exchange.buckets import plan

        return [(b.hi - b.lo) * 4 / 2**20 for b in plan(model.widths, 4, self.mb, self.first_mb)]


def parse_plan(text: str) -> Plan:
    mb, _, first = text.partition("/")
    return Plan(float(mb), float(first or 1))


def ours_argv(model: Model, p: int, args, run_dir: str, extra: list[str]) -> list[str]:
    # Cross-rank weight checks and test evaluation run only after the last step, so that the
    # timed loop is training steps alone, as in the torch baseline.
    steps = steps_of(model, args)
    cli = [
        sys.executable,
        "-m",
        "allreduce_train",
        *data_args(model, args),
        "--layers",
        model.layers,
        "--global-batch",
        str(model.batch_per_rank * p),
        "--steps",
        str(steps),
        "--allreduce",
        args.allreduce,
        "--check-every",
        "0",
        "--eval-every",
        str(steps + 1),
        "--run-dir",
        run_dir,
        *extra,
    ]
    return cli if p == 1 else mpirun_argv(p, cli)


def step_stats(run_dir: str, p: int, warmup_steps: int) -> dict:
    """Means (for the scaling table) and medians (for the overlap table) over ranks and
    post-warm-up steps of the step records' times, in seconds; hidden_share is the median of
    hidden_s / comm_s over the steps that communicated at all."""
    from netsim.record import rundir

    records = []
    for rank in range(p):
        steps = rundir.read_steps(run_dir, rank)
        records += steps[warmup_steps:] or steps
    shares = [r["hidden_s"] / r["comm_s"] for r in records if r["comm_s"] > 0]
    out = {"hidden_share": statistics.median(shares) if shares else float("nan")}
    for key in ("compute_s", "comm_s", "exposed_s", "hidden_s"):
        values = [r[key] for r in records]
        out[key] = statistics.fmean(values)
        out[f"{key}_median"] = statistics.median(values)
    return out


def run_ours(model: Model, p: int, args, tmp: str, extra: list[str]) -> dict | None:
    run_dir = tempfile.mkdtemp(dir=tmp)
    if not run(ours_argv(model, p, args, run_dir, extra), args.timeout_s):
        return None
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    return {
        "samples_per_s": summary["samples_per_s"],
        "nparams": config["nparams"],
        "buffer_bytes": config["buffer_bytes"],
        "buckets": len(config.get("buckets") or [None]),
        "overlap": config.get("overlap"),
        **step_stats(run_dir, p, args.warmup_steps),
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
        str(steps_of(model, args)),
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


def describe(model: Model, runs: list[dict], args) -> str:
    known = [r for r in runs if r is not None]
    size = (
        f"{known[0]['nparams']:,} parameters, {known[0]['buffer_bytes'] / 2**20:.1f} MiB"
        if known
        else "?"
    )
    data = data_args(model, args)[1]
    return (
        f"\n{model.name} MLP {model.layers.replace(',', '-')} ({size}); {data}; "
        f"{model.batch_per_rank} samples per rank per step; {steps_of(model, args)} steps; "
        f"all-reduce {args.allreduce}; median of {args.rounds} rounds"
    )


def print_model(model: Model, ranks: list[int], ours: dict, theirs: dict, args) -> None:
    print(describe(model, [r for runs in ours.values() for r in runs], args))
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


def pair(values: list[float], fmt: str, width: int) -> str:
    """Values for overlap off, on (in --overlap's order), as 'a / b', right-aligned."""
    return " / ".join(format(v, fmt) for v in values).rjust(width)


def print_overlap(model: Model, ranks: list[int], plans, ours: dict, theirs: dict, args):
    """One row per p and bucket plan: overlap off and on side by side, and DDP."""
    overlaps = args.overlap
    print(describe(model, [r for runs in ours.values() for r in runs], args))
    for plan, same_as in plans:
        sizes = ", ".join(f"{s:.1f}" for s in plan.sizes_mib(model))
        line = f"  buckets {plan.label} MiB: {len(plan.sizes_mib(model))} ({sizes} MiB)"
        print(line + (f": the same as {same_as.label}, not run again" if same_as else ""))
    ddp_runs = [r for runs in theirs.values() for r in runs if r is not None]
    if ddp_runs:
        sizes = ", ".join(f"{s:.1f}" for s in ddp_runs[0].get("buckets_mib") or ())
        print(
            f"  DDP gloo: its default buckets (bucket_cap_mb 25, first 1 MiB): {sizes or '?'} MiB"
        )
    cols = "/".join(overlaps)
    header = f"{'p':>2} {'buckets':>7} {'n':>2}"
    if theirs:
        header += f" {'ddp_sps':>8}"
    header += "".join(f" {ov + '_sps':>8}" for ov in overlaps)
    if theirs:
        header += "".join(f" {ov + '/ddp':>7}" for ov in overlaps)
    if len(overlaps) == 2:
        header += f" {overlaps[1] + '/' + overlaps[0]:>6}"
    header += (
        f" {'compute_ms ' + cols:>18} {'comm_ms ' + cols:>15} {'exposed_ms ' + cols:>18}"
        f" {'hidden ' + cols:>14}"
    )
    print(header)
    for p in ranks:
        tsps = median_of(theirs.get(p, []), "samples_per_s")
        for plan, same_as in plans:
            if same_as:
                continue
            runs = [ours[p, plan, ov] for ov in overlaps]
            known = [r for rs in runs for r in rs if r is not None]
            sps = [median_of(rs, "samples_per_s") for rs in runs]
            line = f"{p:>2} {plan.label:>7} {known[0]['buckets'] if known else '?':>2}"
            if theirs:
                line += f" {tsps:>8,.0f}"
            line += "".join(f" {s:>8,.0f}" for s in sps)
            if theirs:
                line += "".join(f" {s / tsps:>7.2f}" for s in sps)
            if len(overlaps) == 2:
                line += f" {sps[1] / sps[0]:>6.2f}"
            ms = [[median_of(rs, f"{k}_median") * 1e3 for rs in runs] for k in (
                "compute_s", "comm_s", "exposed_s")]  # fmt: skip
            line += (
                f" {pair(ms[0], '.1f', 18)} {pair(ms[1], '.1f', 15)} {pair(ms[2], '.1f', 18)}"
                f" {pair([median_of(rs, 'hidden_share') for rs in runs], '.0%', 14)}"
            )
            print(line)


def main() -> None:
    from allreduce_train.maths import data

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--ranks", default="1,2,4", help="comma-separated rank counts (speedup is against 1)"
    )
    ap.add_argument("--models", default="small,large", help=f"any of {', '.join(MODELS)}")
    ap.add_argument("--rounds", type=int, default=3)
    for m in MODELS.values():
        ap.add_argument(f"--{m.name}-steps", type=int, default=m.steps)
    ap.add_argument(
        "--warmup-steps", type=int, default=10, help="left out of the compute/comm split"
    )
    ap.add_argument("--allreduce", default="auto", help="auto (the default), ring, mpi, ...")
    ap.add_argument("--torch", action="store_true", help="also run the PyTorch DDP (gloo) baseline")
    ap.add_argument(
        "--overlap",
        help="e.g. off,on: run ours once per --overlap setting and bucket plan, and print "
        "the overlap table instead of the scaling one",
    )
    ap.add_argument(
        "--buckets",
        default="25/1,4/1",
        help="with --overlap: bucket plans, MiB/first MiB (default: DDP's 25/1, and 4/1)",
    )
    ap.add_argument(
        "--data",
        choices=("auto", "fashion-mnist", "synthetic"),
        default="auto",
        help="the 784-input models' data (auto: fashion-mnist where --data-dir has it)",
    )
    ap.add_argument("--data-dir", default=data.FASHION_MNIST_DIR, help="Fashion-MNIST's files")
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
    pick_data(args)
    args.overlap = args.overlap.split(",") if args.overlap else None
    # Per model, its bucket plans, each with the earlier plan that cuts the same buckets.
    plans = {}
    for m in models:
        plans[m.name] = []
        for text in args.buckets.split(",") if args.overlap else ():
            plan = parse_plan(text)
            same = [q for q, s in plans[m.name] if not s and q.sizes_mib(m) == plan.sizes_mib(m)]
            plans[m.name].append((plan, same[0] if same else None))
    print(
        f"throughput bench: {os.cpu_count()} CPUs; p ranks share them (p > CPUs is oversubscribed);"
        f" load average {os.getloadavg()[0]:.1f} (1 min), {os.getloadavg()[1]:.1f} (5 min)"
    )
    jobs = []  # (key into the results, the run: a function of the temporary directory)
    for m in models:
        for p in ranks:
            if args.overlap:
                for plan, same_as in plans[m.name]:
                    for ov in [] if same_as else args.overlap:
                        extra = [*plan.cli(), "--overlap", ov]
                        jobs.append(((m.name, p, plan, ov), functools.partial(
                            run_ours, m, p, args, extra=extra)))  # fmt: skip
            else:
                jobs.append(((m.name, p), functools.partial(run_ours, m, p, args, extra=[])))
            if args.torch:
                jobs.append((("torch", m.name, p), functools.partial(run_torch, m, p, args)))
    results = {key: [] for key, _ in jobs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds} ...", flush=True)
            for key, job in jobs if r % 2 == 0 else reversed(jobs):
                results[key].append(job(tmp=tmp))
    print(
        f"done; load average over the last 5 min {os.getloadavg()[1]:.1f} on {os.cpu_count()} CPUs"
    )
    for m in models:
        theirs = {p: results["torch", m.name, p] for p in ranks} if args.torch else {}
        if args.overlap:
            ours = {k[1:]: v for k, v in results.items() if k[0] == m.name}
            print_overlap(m, ranks, plans[m.name], ours, theirs, args)
        else:
            print_model(m, ranks, {p: results[m.name, p] for p in ranks}, theirs, args)


if __name__ == "__main__":
    main()
