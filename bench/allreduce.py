"""Our all-reduces, and auto's pick, against MPI_Allreduce: time and busbw per buffer size.

    python bench/allreduce.py [--ranks 2,4] [--sizes 4K,16K,...,64M] [--rounds 11]
                              [--algorithms ring,recursive-doubling,...,auto,mpi]

The driver (plain python) starts `mpirun -n p python bench/allreduce.py --worker ...` once
per rank count, with a hard timeout. The worker checks every algorithm once per size, then
times them in interleaved rounds, so that machine noise hits all alike, and writes JSON.
`auto` is what `--allreduce auto` would run for this buffer, its transport included
(netsim.calibration.choose on this host's calibration, or the built-in estimate, weighing
messages and shared memory), picked on rank 0 and broadcast. A name with
`/shm` (ring/shm, auto/shm) runs that schedule through the node's shared memory
(--transport shm: peers' buffers read in an MPI-3 window, adds fused with the reads).
Bandwidths follow nccl-tests: algbw = buffer bytes / time, busbw = algbw * 2(p-1)/p. The
machine's copy bandwidth (one core, NumPy, in cache and out of it) is printed beside them:
a one-node all-reduce cannot beat it by much. (Past 300 lines: the driver, the worker and
the table they make are one benchmark.)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import launch
from launch import mpirun_argv  # $MPIEXEC, else the mpirun beside this Python

ALGORITHMS = "ring,halving-doubling,recursive-doubling,tree,parameter-server,auto,mpi"
DEFAULT_SIZES = "4K,16K,64K,256K,1M,4M,16M,64M"
WARMUP_ITERS = 3
ROUND_BYTES = 256 << 20  # each timed round moves about this many buffer bytes...
MAX_ITERS = 100  # ...in at most this many iterations (small buffers: latency-bound anyway)


def parse_nbytes(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def iterations_for(nbytes: int) -> int:
    return max(1, min(MAX_ITERS, ROUND_BYTES // nbytes))


# --- worker: runs under mpirun ------------------------------------------------------------


def check(allreduce, buf, nelems: int, rank: int, world_size: int) -> bool:
    """Rank r contributes (i mod 13) + r at index i; the sum is p*(i mod 13) + p(p-1)/2.
    Small integers are exact in float32, so the comparison is exact, and rank-dependent
    inputs catch a collective that merely scales its own buffer by p."""
    pattern = (np.arange(nelems) % 13).astype(np.float32)
    buf[...] = pattern + np.float32(rank)
    allreduce(buf)
    return bool(
        np.array_equal(buf, world_size * pattern + np.float32(world_size * (world_size - 1) // 2))
    )


def timed_round(allreduce, buf, iters: int, world, wtime) -> float:
    """Seconds per all-reduce in one round: the slowest rank's elapsed time / iters."""
    world.barrier()
    t0 = wtime()
    for _ in range(iters):
        allreduce(buf)
    return float(world.max_(np.array([wtime() - t0]))[0]) / iters


def picked(world, nelems: int) -> tuple[str, int, str]:
    """(algorithm, channels, transport) --allreduce auto would run here (on the CPU, with
    --transport auto), agreed from rank 0."""
    from netsim.calibration import choose

    if world.is_root:
        specs, source = choose.machine_specs()
        c = choose.choose(specs["mpi"], world.world_size, nelems, 4, source=source,
                          shm=specs.get("shm"))  # fmt: skip
        return world.bcast((c.algorithm, c.channels, c.transport))
    return world.bcast(None)


def executor(name: str, auto, nelems: int, world, transport, memory):
    """(the all-reduce, the buffer it sums) for a bench name: ALGORITHM or ALGORITHM/shm, each
    with " xC" after it for C channels (ring/shm x4), as auto's choices are named."""
    from types import SimpleNamespace

    from allreduce_train.exchange import factory
    from allreduce_train.exchange.schedule import make_allreduce
    from allreduce_train.maths.backend import Backend
    from netsim import algorithms

    base, how, count = parts(name)
    algorithm, channels = (auto[0], auto[1]) if base == "auto" else (base, int(count or 1))
    if name == "auto":  # what --allreduce auto runs, its transport included
        how = auto[2]
    if how == "shm":
        cfg = SimpleNamespace(allreduce=algorithm, channels=channels, transport="shm")
        nodes = [0] * world.world_size
        path = factory.make(cfg, world, Backend(np, "cpu"), memory.grads, transport,
                            node_of_rank=nodes, segments=None, memory=memory)  # fmt: skip
        (one,), (view,) = path.executors, path.views  # one bucket: the whole buffer
        return one, view
    run = make_allreduce(algorithms.get(algorithm), world.world_size, world.rank, nelems,
                         transport, np, np.float32, channels=channels)  # fmt: skip
    return run, np.zeros(nelems, dtype=np.float32)


def bench_size(nbytes: int, rounds: int, names: list[str], world, transport) -> dict:
    from types import SimpleNamespace

    from allreduce_train.comm import wtime
    from allreduce_train.exchange import factory
    from allreduce_train.maths.backend import Backend

    nelems = nbytes // 4
    auto = picked(world, nelems)
    memory = None
    if any(a.endswith("/shm") for a in names) or "auto" in names and auto[2] == "shm":
        memory = factory.gradient_memory(SimpleNamespace(allreduce="ring", transport="shm"),
                                         world, Backend(np, "cpu"), nelems, np.float32,
                                         [0] * world.world_size)  # fmt: skip
    algs = {a: executor(a, auto, nelems, world, transport, memory) for a in names}
    ok = {a: check(f, buf, nelems, world.rank, world.world_size) for a, (f, buf) in algs.items()}
    wrong = world.max_(np.array([not ok[a] for a in names], dtype=np.float64))
    ok = {a: not w for a, w in zip(names, wrong)}  # wrong on any rank is wrong
    # Zeros stay zeros under summation: no overflow or denormals after many iterations.
    for f, buf in algs.values():
        buf[...] = 0
        for _ in range(WARMUP_ITERS):
            f(buf)
    iters = iterations_for(nbytes)
    times_s = {a: [] for a in names}
    for r in range(rounds):
        # Rotate which algorithm leads, so none always follows another's cache state.
        for a in names[r % len(names) :] + names[: r % len(names)]:
            f, buf = algs[a]
            times_s[a].append(timed_round(f, buf, iters, world, wtime))
    label = auto[0] if auto[1] == 1 else f"{auto[0]} x{auto[1]}"
    label += "/shm" * (auto[2] == "shm")
    return {"nbytes": nbytes, "iters": iters, "ok": ok, "times_s": times_s, "auto": label}


def worker(args) -> None:
    from allreduce_train.comm import MpiTransport, World, install_abort_hook

    install_abort_hook()
    world = World.create()
    transport = MpiTransport(world)
    names = args.algorithms.split(",")
    results = [
        bench_size(parse_nbytes(s), args.rounds, names, world, transport)
        for s in args.sizes.split(",")
    ]
    if world.is_root:
        with open(args.out, "w") as f:
            json.dump({"world_size": world.world_size, "sizes": results}, f)


# --- driver: plain python -------------------------------------------------------------------


def run_world(world_size: int, args) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        argv = mpirun_argv(
            world_size,
            [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                "--sizes",
                args.sizes,
                "--rounds",
                str(args.rounds),
                "--algorithms",
                args.algorithms,
                "--out",
                out,
            ],
        )
        try:
            proc = launch.run(argv, args.timeout_s)  # a hang is killed, every rank with it
        except subprocess.TimeoutExpired:
            print(f"p={world_size}: timed out after {args.timeout_s:.0f} s: {shlex.join(argv)}")
            return None
        if proc.returncode != 0 or not os.path.exists(out):
            print(f"p={world_size}: exit code {proc.returncode}\n{proc.stderr[-2000:]}")
            return None
        with open(out) as f:
            return json.load(f)


def gbytes_per_s(nbytes: float, time_s: float) -> float:
    return nbytes / time_s / 1e9


SHORT = {"halving-doubling": "hd", "recursive-doubling": "rd", "parameter-server": "ps"}


def parts(name: str) -> tuple[str, str, str]:
    """A bench name's (algorithm, transport or "", channels or ""): ring/shm x4 is
    ("ring", "shm", "4"), as auto's choices are named."""
    name, _, count = name.partition(" x")
    base, _, how = name.partition("/")
    return base, how, count


def joined(base: str, how: str, count: str) -> str:
    return base + "/" * bool(how) + how + " x" * bool(count) + count


def short(name: str) -> str:
    """A column's name: recursive-doubling/shm x2 as rd/shm x2."""
    base, how, count = parts(name)
    return joined(SHORT.get(base, base), how, count)


def long_names(text: str) -> str:
    """--algorithms with the columns' short names spelled out and each checked (InputError:
    one line naming what is wrong), before any mpirun starts."""
    from netsim import algorithms
    from netsim.errors import InputError

    full, names = {v: k for k, v in SHORT.items()}, []
    for name in text.split(","):
        name = name.strip()
        base, how, count = parts(name)
        base = full.get(base, base)
        algorithm = None if base == "auto" else algorithms.get(base)  # unknown: InputError
        if how not in ("", "shm") or (how and algorithm is not None and not algorithm.scheduled):
            raise InputError(f"{name!r}: only a schedule of ours (or auto) runs through /shm")
        if algorithm is not None and (algorithm.needs_gpu or not algorithm.runs_over_mpi):
            raise InputError(f"{name!r}: not an all-reduce this benchmark runs on CPUs over MPI")
        if " x" in name and (base == "auto" or not count.isdigit() or int(count) < 1):
            raise InputError(f"{name!r}: channels are ' xC' after a schedule, C >= 1")
        names.append(joined(base, how, count))
    return ",".join(names)


def print_table(result: dict, rounds: int, wall_s: float) -> None:
    p = result["world_size"]
    from netsim import algorithms

    bus_factor = algorithms.busbw(1.0, p)
    names = list(result["sizes"][0]["times_s"])
    print(
        f"\np = {p}: us per all-reduce (slowest rank), median of {rounds} rounds; x/mpi = busbw "
        f"ratio against MPI_Allreduce (>1: faster); busbw = algbw * {bus_factor:.2f}, GB/s  "
        f"[{wall_s:.0f} s, load average {os.getloadavg()[0]:.1f}]"
    )
    width = {a: max(9, len(short(a)) + 1) for a in names}  # a column each, wide enough
    cols = "".join(f"{short(a):>{width[a]}}" for a in names)
    ratios = [a for a in names if "mpi" in names and (a in ("ring", "auto") or "/" in a)]
    print(
        f"{'size':>8} {'iters':>5}{cols} {'mpi_busbw':>9}"
        + "".join(f" {short(a) + '/mpi':>{width[a] + 3}}" for a in ratios)
        + f"  {'auto picked':<22} {'fastest':<18} check"
    )
    for s in result["sizes"]:
        nbytes, med = s["nbytes"], {a: statistics.median(s["times_s"][a]) for a in names}
        fastest = min((a for a in names if a != "mpi" and not a.startswith("auto")),
                      key=med.get, default="-")  # fmt: skip
        wrong = [a for a, v in s["ok"].items() if not v]
        check = "ok" if not wrong else "WRONG: " + ",".join(wrong)
        mpi = f"{gbytes_per_s(nbytes, med['mpi']) * bus_factor:>9.3f}" if "mpi" in med else ""
        print(
            f"{size_label(nbytes):>8} {s['iters']:>5}"
            + "".join(f"{med[a] * 1e6:>{width[a]}.1f}" for a in names)
            + f" {mpi}"
            + "".join(f" {med['mpi'] / med[a]:>{width[a] + 3}.2f}" for a in ratios)
            + f"  {s['auto']:<22} {fastest:<18} {check}"
        )


def copy_bandwidth(nbytes: int, repeats: int = 20) -> float:
    """Bytes a second one core copies with NumPy (read + write of nbytes), best of repeats:
    the memory limit a one-node all-reduce works against."""
    src, dst = np.ones(nbytes // 4, np.float32), np.empty(nbytes // 4, np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return nbytes / best


def size_label(nbytes: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return f"{nbytes >> shift} {unit}"
    return f"{nbytes} B"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", default="2,4", help="comma-separated rank counts")
    ap.add_argument(
        "--sizes", default=DEFAULT_SIZES, help="float32 buffer sizes in bytes (K, M suffixes)"
    )
    ap.add_argument("--rounds", type=int, default=11, help="timed rounds per algorithm and size")
    ap.add_argument(
        "--algorithms", default=ALGORITHMS, help="comma-separated (auto: --allreduce auto's pick)"
    )
    ap.add_argument("--timeout-s", type=float, default=300, help="hard limit per mpirun")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    from netsim.errors import InputError

    try:
        args.algorithms = long_names(args.algorithms)
    except InputError as exc:
        ap.error(f"--algorithms: {exc}")
    print(
        f"all-reduce bench: netsim schedules over MPI point to point, and auto's pick, vs "
        f"MPI_Allreduce; float32, sum; {os.cpu_count()} CPUs; one core copies "
        f"{copy_bandwidth(1 << 20) / 1e9:.1f} GB/s in cache (1 MiB), "
        f"{copy_bandwidth(64 << 20, 5) / 1e9:.1f} GB/s from memory (64 MiB)"
    )
    failed = 0
    for p in (int(r) for r in args.ranks.split(",")):
        start_s = time.perf_counter()
        result = run_world(p, args)
        if result is not None:
            print_table(result, args.rounds, time.perf_counter() - start_s)
        failed += result is None
    sys.exit(1 if failed else 0)  # a rank count that did not run is a failed benchmark


if __name__ == "__main__":
    main()
