"""python -m allreduce_train.probe: what the MPI of this machine costs, measured for netsim.

    mpirun -n P python -m allreduce_train.probe --out probe.json [--pingpong-sizes 8,...,64M]
        [--allreduce-sizes 4K,...,64M] [--shm-sizes 4K,...,64M] [--rounds 7]

Three measurements, written by rank 0 as JSON (`netsim.calibration.fitting` fits a topology to
them):

- ping-pong between ranks 0 and 1: per round, `iters` round trips of Send/Recv; one-way
  time = round trip / 2. Meant for 2 ranks: more would poll idly and take cores from it.
- our ring all-reduce (the schedule executor the training uses, over comm.MpiTransport): per
  round, barrier, `iters` all-reduces, the slowest rank's elapsed time / iters.
- the same ring through the node's shared memory (exchange.shm, what `--transport shm`
  runs: peers' slices read from an MPI-3 window, the adds fused with the reads), timed
  alike (`allreduce_shm`); its rounds alternate with the message ring's, so that both see
  the same spells of load.

Every size gets untimed warm-up repetitions first (page faults, MPI's first touch of a
buffer), then `--rounds` timed rounds that take the sizes in turn, so that a burst of load
from elsewhere spoils one round of many sizes rather than every round of one. A round
repeats the operation `iters` times (about 64 MiB of traffic, at most 200). The JSON keeps
every round (its time, and `cpu_share`: the share of the machine's cores the ranks had
during it), not only the median; `netsim.calibration.fitting` takes the medians.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from types import SimpleNamespace

import numpy as np

from netsim.algorithms import RING
from netsim.calibration.measure import ALLREDUCE_SIZES, PINGPONG_SIZES
from netsim.options import byte_sizes
from netsim.record import rundir

from .comm import MpiTransport, World, install_abort_hook, library_version, wtime
from .exchange import factory
from .exchange.protocol import Transport
from .exchange.schedule import make_allreduce
from .exchange.shm import SharedMemoryAllreduce
from .maths.backend import Backend

WARMUP = 2
ROUND_BYTES = 64 << 20  # a timed round moves about this many bytes per message/buffer...
MAX_ITERS = 200  # ...in at most this many repetitions (small sizes are latency anyway)
_TAG = 7101


class ProbeError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    """A bad argument raises (every rank parses, rank 0 says it); --help from rank 0 only."""

    speak = True

    def error(self, message):
        raise ProbeError(message)

    def print_help(self, file=None):
        if self.speak:
            super().print_help(file)


def parser(speak: bool = True) -> argparse.ArgumentParser:
    p = _Parser(prog="python -m allreduce_train.probe", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="JSON file rank 0 writes")
    p.add_argument(
        "--pingpong-sizes",
        type=byte_sizes,
        default=PINGPONG_SIZES,
        metavar="B,B",
        help="message sizes (K, M suffixes), or none (default: 8 B .. 64 MiB)",
    )
    p.add_argument(
        "--allreduce-sizes",
        type=byte_sizes,
        default=ALLREDUCE_SIZES,
        metavar="B,B",
        help="float32 buffer sizes, or none (default: 4 KiB .. 64 MiB)",
    )
    p.add_argument(
        "--shm-sizes",
        type=byte_sizes,
        default=ALLREDUCE_SIZES,
        metavar="B,B",
        help="float32 buffer sizes of the shared-memory ring, or none (default: 4 KiB .. 64 MiB)",
    )
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per size (default: 7)")
    p.speak = speak
    return p


def parse(argv, world_size: int, speak: bool = True) -> argparse.Namespace:
    args = parser(speak).parse_args(argv)
    if args.rounds < 1:
        raise ProbeError(f"--rounds must be positive, got {args.rounds}")
    if world_size < 2:
        raise ProbeError(f"needs at least 2 ranks (mpirun -n 2 or more), got {world_size}")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise ProbeError(f"--out: no such directory: {os.path.dirname(os.path.abspath(args.out))}")
    return args


def iterations(nbytes: int) -> int:
    return max(1, min(MAX_ITERS, ROUND_BYTES // nbytes))


def timed_round(world: World, work, iters: int) -> tuple[float, float]:
    """(seconds per repetition: barrier, `iters` times work(), the slowest rank's elapsed
    time / iters; the share of the cores the ranks had meanwhile). MPI polls while it
    waits, so undisturbed ranks use every core they are given: a share well below 1 means
    another process on the machine took part of them, and calibrate leaves that round out."""
    world.barrier()
    cpu0, t0 = time.process_time(), wtime()
    for _ in range(iters):
        work()
    cpu_s = world.sum_(np.array([time.process_time() - cpu0]))[0]
    wall_s = world.max_(np.array([wtime() - t0]))[0]
    return float(wall_s) / iters, float(
        cpu_s / (wall_s * min(world.world_size, os.cpu_count() or 1))
    )


def pingpong(world: World, transport: Transport, nbytes: int):
    """One round trip between ranks 0 and 1 (the other ranks do nothing); halved by caller.
    One send or one receive per exchange, waited for as the executors wait (comm._wait)."""
    buf = np.zeros(nbytes, dtype=np.uint8)
    exchange = transport.exchange

    def work():
        if world.rank == 0:
            exchange([(1, buf)], [], _TAG)
            exchange([], [(1, buf)], _TAG)
        elif world.rank == 1:
            exchange([], [(0, buf)], _TAG)
            exchange([(0, buf)], [], _TAG)

    return work


def ring_allreduce(world: World, transport: Transport, nbytes: int):
    run = make_allreduce(RING, world.world_size, world.rank, nbytes // 4, transport, np, np.float32)
    buf = np.zeros(nbytes // 4, dtype=np.float32)  # zeros stay zeros: no overflow, no denormals
    return lambda: run(buf)


def shm_ring_allreduce(world: World, transport: Transport, nbytes: int):
    """The ring through shared memory (one window per size, every rank of the host in it);
    its buffer starts at zeros, as the message ring's."""
    nelems, everyone = nbytes // 4, [0] * world.world_size
    shm = SimpleNamespace(allreduce="ring", transport="shm")
    memory = factory.gradient_memory(shm, world, Backend(np, "cpu"), nelems, np.float32, everyone)
    if memory.peers is None:  # cannot happen with every rank on one node of the window
        raise ProbeError("no shared-memory window over the ranks")
    schedule = RING.schedule(world.world_size, nelems)
    run = SharedMemoryAllreduce(schedule, world.rank, memory.peers, transport, np.float32)
    return lambda: run(memory.grads)


def measure(world: World, works: list, sizes, rounds: int) -> list[tuple[list, list]]:
    """Per size: (seconds of every round, cores share of every round); rounds are the outer
    loop (see the module docstring)."""
    for work in works:
        for _ in range(WARMUP):
            work()
    out = [([], []) for _ in works]
    for _ in range(rounds):
        for (times, shares), work, nbytes in zip(out, works, sizes):
            t, share = timed_round(world, work, iterations(nbytes))
            times.append(t)
            shares.append(share)
    return out


def main(argv=None) -> int:
    install_abort_hook()
    world = World.create()
    try:
        args = parse(argv, world.world_size, world.is_root)
    except ProbeError as exc:
        world.log(f"allreduce_train.probe: error: {exc}")
        return 2
    transport = MpiTransport(world)
    pp = measure(
        world,
        [pingpong(world, transport, n) for n in args.pingpong_sizes],
        args.pingpong_sizes,
        args.rounds,
    )
    # the two rings' rounds alternate (one measure over both): a busy spell hits both alike
    both = measure(
        world,
        [ring_allreduce(world, transport, n) for n in args.allreduce_sizes]
        + [shm_ring_allreduce(world, transport, n) for n in args.shm_sizes],
        [*args.allreduce_sizes, *args.shm_sizes],
        args.rounds,
    )
    ar, shm = both[: len(args.allreduce_sizes)], both[len(args.allreduce_sizes) :]
    result = {
        "world_size": world.world_size,
        "algorithm": "ring",
        "dtype": "float32",
        "mpi_library": library_version(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "pingpong": [
            {
                "nbytes": n,
                "iters": iterations(n),
                "one_way_s": [t / 2 for t in times],
                "cpu_share": shares,
            }
            for n, (times, shares) in zip(args.pingpong_sizes, pp)
        ],
        "allreduce": [
            {"nbytes": n, "iters": iterations(n), "times_s": times, "cpu_share": shares}
            for n, (times, shares) in zip(args.allreduce_sizes, ar)
        ],
        "allreduce_shm": [
            {"nbytes": n, "iters": iterations(n), "times_s": times, "cpu_share": shares}
            for n, (times, shares) in zip(args.shm_sizes, shm)
        ],
    }
    transport.free()
    if world.is_root:
        with open(args.out, "w") as f:
            f.write(rundir.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
