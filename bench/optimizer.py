"""The optimizer's element-wise update, ours against PyTorch's, at 1 and 2 threads.

    python bench/optimizer.py [--rounds 9] [--steps 50] [--threads 1,2]

One update step of SGD with momentum 0.9 (and Adagrad) on the parameters of the
784-1024-1024-10 MLP (1,863,690 float32), median over interleaved rounds of `--steps`
steps each. Ours: allreduce_train.optim with `threads` slices; PyTorch: torch.optim.SGD /
Adagrad (foreach, its default) under torch.set_num_threads(threads). Without torch the
comparison is skipped with a message. ours/torch > 1: ours is faster.
"""

from __future__ import annotations

import argparse
import statistics
import time
from types import SimpleNamespace

import numpy as np

from allreduce_train.maths import optim

WIDTHS = (784, 1024, 1024, 10)
NPARAMS = sum(a * b + b for a, b in zip(WIDTHS, WIDTHS[1:]))


def ours(name: str, threads: int):
    rng = np.random.default_rng(0)
    params = rng.standard_normal(NPARAMS).astype(np.float32)
    grads = rng.standard_normal(NPARAMS).astype(np.float32) * np.float32(1e-3)
    cfg = SimpleNamespace(optimizer=name, lr=0.01, momentum_value=0.9, weight_decay=0.0)
    return optim.make(cfg, params, grads, np, threads).step


def theirs(name: str, threads: int):
    import torch

    torch.set_num_threads(threads)
    p = torch.nn.Parameter(torch.randn(NPARAMS))
    p.grad = torch.randn(NPARAMS) * 1e-3
    opt = (
        torch.optim.SGD([p], lr=0.01, momentum=0.9)
        if name == "sgd"
        else torch.optim.Adagrad([p], lr=0.01)
    )

    def step():
        torch.set_num_threads(threads)
        opt.step()

    return step


def timed(step, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        have_torch = False
        print("torch is not installed: ours only (pip install torch==2.13.0 to compare)")
    print(f"optimizer update of {NPARAMS:,} float32 parameters (784-1024-1024-10), ms per step")
    print(f"{'optimizer':<10} {'threads':>7} {'ours_ms':>8} {'torch_ms':>9} {'ours/torch':>10}")
    for name in ("sgd", "adagrad"):
        for threads in (int(t) for t in args.threads.split(",")):
            sides = {"ours": ours(name, threads)}
            if have_torch:
                sides["torch"] = theirs(name, threads)
            for step in sides.values():
                timed(step, 3)  # warm: pages touched, pools started
            times = {k: [] for k in sides}
            for r in range(args.rounds):
                for k in list(sides)[:: 1 if r % 2 == 0 else -1]:
                    times[k].append(timed(sides[k], args.steps))
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            torch_ms = f"{med['torch']:>9.3f}" if have_torch else f"{'-':>9}"
            ratio = f"{med['torch'] / med['ours']:>10.2f}" if have_torch else f"{'-':>10}"
            print(f"{name:<10} {threads:>7} {med['ours']:>8.3f} {torch_ms} {ratio}")


if __name__ == "__main__":
    main()
