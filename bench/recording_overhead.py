"""What recording costs: the default job's step time with and without per-step records.

    python bench/recording_overhead.py [--ranks 4] [--runs 6] [--block 20] [--whole-runs 5]
        [-- JOB OPTIONS]

Two measurements, both printed:

in-run (the figure to quote): one `mpirun -n P` of the default job whose training steps
    alternate, in blocks of --block steps, between recording on (the executor's readings
    and the step file's commit of every step's record, exactly as `python -m
    allreduce_train` does) and off (nothing read, taken or written, as with --no-record).
    Both kinds of block share the process placement, the caches and the machine's state,
    so the noise between launches (on this 2-core VM running 4 ranks, +-20% from one to the
    next) cancels. Per run: the median step period (one step's start
    to the next one's, the record write included; the first three periods of a block left
    out) of on-blocks / that of off-blocks - 1, on the slowest rank; runs alternate which
    kind comes first. Quoted: the median over --runs runs, with their range and quartiles
    (here medians of batches of 10 runs spread over about a point: quote many runs), and
    where the time goes (median compute, all-reduce, update, and between steps, over ranks).

whole runs: `python -m allreduce_train` launched alternately with recording on and with
    --no-record; wall time of the training loop per step, median of the pairs' ratios.
    What a user sees, but each launch lands differently on the cores, so it needs many
    pairs to resolve a few per cent (--whole-runs, 0 to skip).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import launch  # noqa: E402
from launch import mpirun_argv  # noqa: E402 ($MPIEXEC, else the mpirun beside this Python)


def worker(block: int, steps: int, off_first: bool, job: list[str]) -> None:
    """Under mpirun: train with recording switched on and off block by block."""
    from allreduce_train.__main__ import setup
    from allreduce_train.comm import MpiTransport, World
    from allreduce_train.sync.trainer import Trainer

    world = World.create()
    cfg, dataset, backend, run_dir, _ = setup(world, job)
    trainer = Trainer(cfg, world, backend, dataset, MpiTransport(world))
    recorder = trainer.new_recorder(run_dir)
    periods = {True: [], False: []}
    parts = {True: [], False: []}  # compute, all-reduce, update, after the step (record write)
    world.barrier()
    last = end = split = None
    for step in range(steps):
        on = ((step // block) % 2 == 0) != off_first
        if step % block == 0:  # as run() records, or --no-record
            trainer.record_into(recorder if on else None)
        start = time.perf_counter_ns()
        # Only periods wholly inside a block, past its first two steps (the switch itself
        # counts the messages again, which a real run does once).
        if last is not None and step % block > 2:
            periods[on].append(start - last)
            parts[on].append((*split, start - end))
        last = start
        t0, t1, t2, t3 = trainer.step(step)
        split, end = (t1 - t0, t2 - t1, t3 - t2), t3
    recorder.close()
    mine = [
        [
            statistics.median(periods[k]),
            *(statistics.median(p[i] for p in parts[k]) for i in range(4)),
        ]
        for k in (True, False)
    ]
    every = world.gather(mine)
    if world.is_root:  # the slowest rank's medians
        on, off = (max(e[k][0] for e in every) for k in (0, 1))
        split = {
            k: [statistics.median(e[i][j] for e in every) / 1e9 for j in range(1, 5)]
            for i, k in ((0, "on"), (1, "off"))
        }
        print(
            json.dumps({"on_s": on / 1e9, "off_s": off / 1e9, "ratio": on / off, "split_s": split}),
            flush=True,
        )


def in_run(ranks: int, runs: int, block: int, steps: int, job: list[str]) -> list[dict]:
    out = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            argv = mpirun_argv(
                ranks,
                [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker",
                    "--block",
                    str(block),
                    "--steps",
                    str(steps),
                    *(["--off-first"] if i % 2 else []),
                    "--",
                    "--run-dir",
                    os.path.join(tmp, "run"),
                    *job,
                ],
            )
            done = checked(argv)
            out.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(
            f"in-run {i + 1}/{runs}: on {out[-1]['on_s'] * 1e3:.3f} ms, off "
            f"{out[-1]['off_s'] * 1e3:.3f} ms, {out[-1]['ratio'] - 1:+.1%}",
            flush=True,
        )
    return out


def checked(argv: list[str]):
    """argv run to its end (a hang is killed, every rank with it); its failure is an error."""
    done = launch.run(argv, 600, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"exit code {done.returncode}: {' '.join(argv)}\n{done.stderr[-2000:]}")
    return done


def whole_run(ranks: int, record: bool, job: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        argv = mpirun_argv(
            ranks,
            [
                sys.executable,
                "-m",
                "allreduce_train",
                "--run-dir",
                run_dir,
                *job,
                *([] if record else ["--no-record"]),
            ],
        )
        checked(argv)
        with open(os.path.join(run_dir, "summary.json")) as f:
            s = json.load(f)
    return s["wall_s"] / s["steps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument(
        "--runs", type=int, default=6, help="in-run measurements (default: %(default)s)"
    )
    ap.add_argument("--block", type=int, default=20, help="steps per block (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=3000, help="steps per in-run measurement")
    ap.add_argument(
        "--whole-runs", type=int, default=5, help="pairs of whole runs (default: %(default)s)"
    )
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--off-first", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("job", nargs="*", help="allreduce_train options (after --)")
    args = ap.parse_args()
    if args.worker:
        return worker(args.block, args.steps, args.off_first, args.job)
    name = f"the job with {' '.join(args.job)}" if args.job else "the default job"
    results = in_run(args.ranks, args.runs, args.block, args.steps, args.job)
    ratios = [r["ratio"] - 1 for r in results]
    pairs = []
    for i in range(args.whole_runs):
        order = (True, False) if i % 2 == 0 else (False, True)
        t = {record: whole_run(args.ranks, record, args.job) for record in order}
        pairs.append(t)
        print(
            f"whole runs {i + 1}/{args.whole_runs}: on {t[True] * 1e3:.3f} ms/step, "
            f"off {t[False] * 1e3:.3f} ms/step, {t[True] / t[False] - 1:+.1%}",
            flush=True,
        )
    print(f"\n{name} on {args.ranks} ranks")
    print(f"  in-run, {args.runs} runs of {args.steps} steps in blocks of {args.block}:")
    print(
        "    step period, recording on:   "
        f"{statistics.median(r['on_s'] for r in results) * 1e3:8.3f} ms"
    )
    print(
        "    step period, recording off:  "
        f"{statistics.median(r['off_s'] for r in results) * 1e3:8.3f} ms"
    )
    quartiles = (
        statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
    )
    print(
        f"    recording overhead:          {statistics.median(ratios):+8.1%}   (runs "
        f"{min(ratios):+.1%} .. {max(ratios):+.1%}, quartiles {quartiles[0]:+.1%} .. "
        f"{quartiles[2]:+.1%}; {sum(r < 0.03 for r in ratios)} of {len(ratios)} under +3%)"
    )
    for kind in ("on", "off"):
        split = [statistics.median(r["split_s"][kind][j] for r in results) * 1e6 for j in range(4)]
        print(
            f"    median per step, recording {kind + ':':4} compute {split[0]:6.1f} us, "
            f"all-reduce {split[1]:6.1f} us, update {split[2]:5.1f} us, between steps "
            f"{split[3]:5.1f} us"
        )
    if pairs:
        whole = sorted(p[True] / p[False] - 1 for p in pairs)
        print(f"  whole runs, {len(pairs)} pairs, wall time per step:")
        print(
            f"    recording on / --no-record:  {statistics.median(whole):+8.1%}   "
            f"(pairs {whole[0]:+.1%} .. {whole[-1]:+.1%})"
        )


if __name__ == "__main__":
    main()
