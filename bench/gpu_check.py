"""The GPU path checked on a GPU, in one run: issue 16's figures (prints them; exit 1 if a
check fails).

    python bench/gpu_check.py [--device gpu] [--ranks 4] [--out DIR]
    python bench/gpu_check.py --device cpu        # the same script on the CPU: a dry run

1. accuracy: the default job on 1 and --ranks ranks sharing the GPU, against the CPU run's
   test accuracy (within 0.02).
2. weights: 20 steps on the GPU and on the CPU from the same seed, one rank: the final
   weights agree within 1e-4 relative (max |gpu - cpu| / max |cpu|, float32).
3. step time of 784-1024-1024-10 at batch 256 (one rank, synthetic data), ours against
   PyTorch on the same device (goal: ours <= 1.3x PyTorch's; torch optional).
4. all-reduce bandwidth of GPU buffers, 1-256 MiB: staged through pinned host memory (the
   default path, staging.StagedAllreduce; p = 1, 2, --ranks sharing the GPU), on the GPU
   buffers through MPI where the MPI is CUDA-aware, and NCCL (p = the GPUs there are,
   NCCL needs one per rank), medians of 5 rounds.
5. fused kernels (allreduce_train.maths.kernels) against the unfused CuPy operations: time per
   call of the SGD update (1.86 M parameters) and of a hidden layer's bias + ReLU and ReLU
   backward (batch 256 x 1024), and their results within 1e-5 relative. Skipped on the CPU.

Needs mpich, mpi4py, numpy, scikit-learn, and on a GPU cupy (the cuda12 / cuda13 extra);
torch 2.13.0 for part 3. Each part says why when it cannot run, and the rest go on. Past
300 lines on purpose: GPU time comes in one short lease, so this is one script to run once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # launch and allreduce_train from this checkout
SIZES_MIB = (1, 4, 16, 64, 256)
LARGE = ["--dataset", "synthetic", "--features", "784", "--layers", "784,1024,1024,10"]


def train(ranks: int, run_dir: Path, *args: str, timeout: float = 600) -> dict | None:
    """One training run; its summary.json, or None (its output's tail printed)."""
    from launch import mpirun_argv

    argv = [sys.executable, "-m", "allreduce_train", "--run-dir", str(run_dir), *args]
    proc = subprocess.run(
        mpirun_argv(ranks, argv), cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        print(f"  run failed (exit {proc.returncode}): {(proc.stdout + proc.stderr)[-600:]}")
        return None
    return json.loads((run_dir / "summary.json").read_text())


def accuracy(device: str, ranks: int, out: Path) -> bool:
    cpu = train(1, out / "acc-cpu", "--device", "cpu")
    if cpu is None:
        return False
    ok = True
    for p in (1, ranks):
        mine = train(p, out / f"acc-{device}-p{p}", "--device", device)
        if mine is None:
            return False
        diff = abs(mine["test_accuracy"] - cpu["test_accuracy"])
        ok &= diff <= 0.02
        print(
            f"  p = {p}: test accuracy {mine['test_accuracy']:.4f} on {device}, "
            f"{cpu['test_accuracy']:.4f} on cpu (|diff| {diff:.4f}, <= 0.02: {diff <= 0.02})"
        )
        copies = mine["traffic"].get("copies")
        if copies:  # the report's line: what staging copied, and how long it took
            print(
                f"    copies per step, rank 0: {copies['d2h_bytes_per_step_by_rank'][0]:.0f} B "
                f"each way; median {copies['d2h_s_median_by_rank'][0] * 1e6:.1f} us to the "
                f"host, {copies['h2d_s_median_by_rank'][0] * 1e6:.1f} us back"
            )
    return ok


def weights(device: str, out: Path) -> bool:
    runs = []
    for d, name in (("cpu", "w-cpu"), (device, f"w-{device}-test")):
        if train(1, out / name, "--device", d, "--steps", "20", *LARGE) is None:
            return False
        with np.load(out / name / "checkpoint.npz") as z:
            runs.append(z["params"].astype(np.float64))
    rel = float(np.max(np.abs(runs[1] - runs[0])) / np.max(np.abs(runs[0])))
    print(f"  20 steps, 784-1024-1024-10: max |{device} - cpu| / max |cpu| = {rel:.2e}")
    return rel <= 1e-4


def torch_step_s(device: str, steps: int = 200) -> float | None:
    try:
        import torch
    except ImportError:
        print("  torch is not installed: no PyTorch figure (pip install torch==2.13.0)")
        return None
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    widths = [784, 1024, 1024, 10]
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < 2 else [])
    model = torch.nn.Sequential(*layers).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(4096, 784, device=dev)
    y = torch.randint(10, (4096,), device=dev)
    loss_fn, times = torch.nn.CrossEntropyLoss(), []
    for _ in range(steps):
        rows = torch.randint(4096, (256,), device=dev)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[rows]), y[rows]).backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[20:])


def step_time(device: str, out: Path) -> bool:
    args = [*LARGE, "--device", device, "--global-batch", "256", "--steps", "300"]
    mine = train(1, out / "step", *args, "--eval-every", "301", "--check-every", "0")
    if mine is None:
        return False
    ours = 256 / mine["samples_per_s"]
    theirs = torch_step_s(device)
    line = f"  784-1024-1024-10, batch 256, one rank: ours {ours * 1e3:.3f} ms per step"
    if theirs is None:
        print(line)
        return True
    print(
        f"{line}, PyTorch {theirs * 1e3:.3f} ms: ours / torch = {ours / theirs:.2f} (goal <= 1.3)"
    )
    return ours / theirs <= 1.3


def bandwidth(device: str, ranks: int, out: Path) -> bool:
    from allreduce_train.comm import cuda_aware
    from launch import mpirun_argv

    gpus = 0
    if device == "gpu":
        import cupy

        gpus = cupy.cuda.runtime.getDeviceCount()
    modes = [("staged", p) for p in sorted({1, 2, ranks})]
    if gpus and cuda_aware():
        modes += [("direct", p) for p in sorted({2, ranks})]
    elif gpus:
        print("  (this MPI is not CUDA-aware: no figures on the GPU buffers through MPI)")
    modes += [("nccl", p) for p in sorted({1, gpus}) if p >= 1] if gpus else []
    print(f"  {'mode':>7} {'p':>2} " + " ".join(f"{m:>5} MiB" for m in SIZES_MIB) + "   (GB/s)")
    print("  (busbw; at p = 1 algbw: the staging copies alone, device to host and back)")
    for mode, p in modes:
        result = out / f"bw-{mode}-p{p}.json"
        argv = [
            sys.executable,
            __file__,
            "--worker",
            mode,
            "--device",
            device,
            "--out",
            str(result),
        ]
        proc = subprocess.run(mpirun_argv(p, argv), cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  {mode} p = {p} failed: {(proc.stdout + proc.stderr)[-400:]}")
            return False
        busbw = json.loads(result.read_text())
        print(f"  {mode:>7} {p:>2} " + " ".join(f"{b:9.2f}" for b in busbw))
    return True


def worker(mode: str, device: str, out: str) -> None:
    """Under mpirun: busbw of the all-reduce of GPU (or, dry, host) buffers per size."""
    from allreduce_train.comm import MpiTransport, World, wtime
    from allreduce_train.exchange import schedule as collectives
    from allreduce_train.exchange import staging
    from allreduce_train.exchange.nccl import NcclAllreduce
    from allreduce_train.maths import backend
    from netsim import algorithms

    world = World.create()
    dev = backend.select(device, world.local_rank, world.local_size)
    xp, p, figures = dev.xp, world.world_size, []
    for mib in SIZES_MIB:
        n = (mib << 20) // 4
        buf = xp.zeros(n, dtype=np.float32)
        transport = MpiTransport(world)
        if mode == "nccl":
            run = NcclAllreduce(world, xp, np.float32)
        elif mode == "direct":  # CUDA-aware MPI on the GPU buffer, adds on the GPU
            ring = collectives.make_allreduce(algorithms.RING, p, world.rank, n, transport, xp,
                                              np.float32)  # fmt: skip
            run = staging.DirectAllreduce(ring, dev.synchronize)
        elif dev.on_gpu:  # training's own path: pieces copied as the rounds need them
            host = dev.host_mirror(buf)
            ring = collectives.make_allreduce(algorithms.RING, p, world.rank, n, transport, np,
                                              np.float32)  # fmt: skip
            staged = staging.StagedAllreduce(ring, dev.copier(), buf, host)

            def run(b, staged=staged, host=host):
                staged(host)
                dev.synchronize()

        else:  # the dry run: the ring on the host buffer itself
            run = collectives.make_allreduce(algorithms.RING, p, world.rank, n, transport, np,
                                             np.float32)  # fmt: skip

        run(buf)
        rounds = []
        for _ in range(5):
            world.barrier()
            t0 = wtime()
            for _ in range(5):
                run(buf)
            rounds.append(float(world.max_(np.array([wtime() - t0]))[0]) / 5)
        algbw = n * 4 / statistics.median(rounds) / 1e9
        figures.append(algorithms.busbw(algbw, p) if p > 1 else algbw)  # p = 1: algbw
    if world.is_root:
        Path(out).write_text(json.dumps(figures))


def fused(device: str) -> bool:
    """Each fused kernel against the CuPy operations it replaces: same result, time per call
    (each called in place on the same arrays, as training does)."""
    if device != "gpu":
        print("  on the CPU there are no kernels to fuse: skipped")
        return True
    import cupy

    from allreduce_train.maths import kernels
    from allreduce_train.maths.model import MLP

    k, rng, f32, ok = kernels.make(cupy), cupy.random.default_rng(0), np.float32, True

    def timed(fn, arrays, calls=200):
        fn(*arrays)
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        for _ in range(calls):
            fn(*arrays)
        end.record()
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) / calls * 1e3  # us

    def sgd(p, g, v):  # optim.SGD's operations on CuPy
        g += p * f32(1e-4)
        v *= f32(0.9)
        v += g
        p -= v * f32(0.01)

    def normal(*shape):
        return rng.standard_normal(shape, dtype=f32)

    n, act = MLP((784, 1024, 1024, 10)).nparams, (256, 1024)
    cases = [
        ("SGD momentum + weight decay", [normal(n), normal(n), normal(n)],
         lambda p, g, v: k.sgd_momentum(g, f32(0.01), f32(0.9), f32(1e-4), p, v), sgd),
        ("bias + ReLU, 256 x 1024", [normal(*act), normal(act[1])],
         lambda z, b: k.bias_activation["relu"](b, z),
         lambda z, b: cupy.maximum(cupy.add(z, b, out=z), 0, out=z)),
        ("ReLU backward, 256 x 1024", [normal(*act), normal(*act)],
         lambda delta, a: k.activation_backward["relu"](a, delta),
         lambda delta, a: cupy.multiply(delta, a > 0, out=delta)),
    ]  # fmt: skip
    for name, arrays, fast, slow in cases:
        mine, theirs = [x.copy() for x in arrays], [x.copy() for x in arrays]
        fast(*mine)
        slow(*theirs)
        rel = float(cupy.abs(mine[0] - theirs[0]).max() / cupy.abs(theirs[0]).max())
        t_fast, t_slow = timed(fast, mine), timed(slow, theirs)
        ok &= rel <= 1e-5
        print(f"  {name}: fused {t_fast:.1f} us, unfused {t_slow:.1f} us "
              f"({t_slow / t_fast:.2f}x); max rel diff {rel:.1e}")  # fmt: skip
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    ap.add_argument("--ranks", type=int, default=4, help="ranks sharing the GPU (default 4)")
    ap.add_argument("--out", help="where the runs go (default: a temporary directory)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.device, args.out)
        return 0
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, part in [
        ("1. accuracy", lambda: accuracy(args.device, args.ranks, out)),
        ("2. weights", lambda: weights(args.device, out)),
        ("3. step time", lambda: step_time(args.device, out)),
        ("4. all-reduce bandwidth", lambda: bandwidth(args.device, args.ranks, out)),
        ("5. fused kernels", lambda: fused(args.device)),
    ]:
        print(f"{name} ({args.device})", flush=True)
        t0 = time.monotonic()
        results[name] = part()
        print(
            f"  {'ok' if results[name] else 'FAILED'} in {time.monotonic() - t0:.0f} s", flush=True
        )
    print("gpu check:", ", ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
