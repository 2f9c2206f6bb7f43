"""PyTorch DistributedDataParallel (gloo) baseline for bench/throughput.py; one process per rank.

    python -m torch.distributed.run --nproc-per-node P --master-addr 127.0.0.1 \
        --master-port PORT bench/torch_ddp.py --layers 784,1024,1024,10 --batch-per-rank 64 \
        --steps 150 --out result.json

The same MLP (ReLU, cross-entropy, SGD lr 0.05 momentum 0.9) on random inputs: throughput
only, so the data need not be learnable. Timed like `python -m allreduce_train` times its
loop: every step from the first, wall clock of the slowest rank, samples over all ranks.

Buckets: DDP's defaults unless --bucket-cap-mb is given. Left unset, DDP caps buckets at 25
MiB and the first at 1 MiB (the plan `python -m allreduce_train` makes by default); an
explicit bucket_cap_mb, even 25, caps the first bucket at the same size, which makes one
bucket of a model under 25 MiB. The result lists the buckets DDP ended with (its rebuilt
ones, in the order gradients became ready), in MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

POOL_ROWS_PER_RANK = 4096  # random rows each rank samples its batches from


def mlp(widths: list[int]) -> nn.Sequential:
    layers = []
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def batches(widths: list[int], batch: int, steps: int, rank: int):
    """Rows gathered by a random permutation, as the project gathers its shard each step."""
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(POOL_ROWS_PER_RANK, widths[0], generator=gen)
    y = torch.randint(widths[-1], (POOL_ROWS_PER_RANK,), generator=gen)
    per_epoch = POOL_ROWS_PER_RANK // batch
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(POOL_ROWS_PER_RANK, generator=gen)
        rows = order[(step % per_epoch) * batch : (step % per_epoch + 1) * batch]
        yield x[rows], y[rows]


def train(model, widths: list[int], batch: int, steps: int, rank: int) -> list[float]:
    """Seconds per step on this rank."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    step_s = []
    for x, y in batches(widths, batch, steps, rank):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()  # DDP all-reduces gradient buckets during backward
        optimizer.step()
        step_s.append(time.perf_counter() - t0)
    return step_s


def bucket_sizes_mib(model) -> list[float] | None:
    """The sizes of DDP's buckets after its rebuild; None where this torch does not say."""
    try:
        logged = model._get_ddp_logging_data()  # private, but the only place DDP tells
        sizes = logged.get("rebuilt_bucket_sizes") or logged["bucket_sizes"]
        return [round(int(b) / 2**20, 2) for b in str(sizes).split(",")]
    except (AttributeError, KeyError, ValueError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description="PyTorch DDP (gloo) MLP throughput")
    ap.add_argument("--layers", required=True, help="layer widths, input to output")
    ap.add_argument("--batch-per-rank", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--warmup-steps", type=int, default=10, help="left out of step_s_mean")
    ap.add_argument(
        "--bucket-cap-mb", type=float, help="DDP's bucket_cap_mb (default: DDP's, 25 and 1)"
    )
    ap.add_argument("--out", required=True, help="JSON written by rank 0")
    args = ap.parse_args()
    widths = [int(w) for w in args.layers.split(",")]
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    # Ranks share the machine's cores, as the project's NumPy ranks do (backend._numpy).
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // world_size))
    torch.manual_seed(0)
    model = DistributedDataParallel(mlp(widths), bucket_cap_mb=args.bucket_cap_mb)
    dist.barrier()
    wall_start_s = time.perf_counter()
    step_s = train(model, widths, args.batch_per_rank, args.steps, rank)
    wall_s = torch.tensor([time.perf_counter() - wall_start_s], dtype=torch.float64)
    dist.all_reduce(wall_s, op=dist.ReduceOp.MAX)
    steady = step_s[args.warmup_steps :] or step_s
    step_s_mean = torch.tensor([sum(steady) / len(steady)], dtype=torch.float64)
    dist.all_reduce(step_s_mean)
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "world_size": world_size,
                    "steps": args.steps,
                    "wall_s": wall_s.item(),
                    "samples_per_s": args.steps * args.batch_per_rank * world_size / wall_s.item(),
                    "step_s_mean": step_s_mean.item() / world_size,
                    "threads_per_rank": torch.get_num_threads(),
                    "buckets_mib": bucket_sizes_mib(model),
                    "torch": torch.__version__,
                },
                f,
            )
    # Leave without tearing gloo down: with torch 2.13 about one run in ten aborted in the
    # teardown ("terminate called without an active exception", SIGABRT), after the results
    # were written. The barrier makes sure every rank is done with the group first.
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
