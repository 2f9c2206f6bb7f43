"""What recording costs: the default job with and without per-step records.

    python bench/recording_overhead.py [--ranks 4] [--rounds 7]

Runs `mpirun -n P python -m allreduce_train` (the README's default job) alternately with
recording on and with --no-record, and prints the median wall time per step of each, their
ratio, and the recorder's self-timed share (time spent writing records / step time). Rounds
alternate which variant goes first so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from netsim.measure import mpiexec  # the launcher choice of calibration and the other benches


def one_run(ranks: int, record: bool, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = os.path.join(tmp, "run")
        argv = [*mpiexec(), "-n", str(ranks), sys.executable, "-m", "allreduce_train",
                "--run-dir", run_dir, *extra, *([] if record else ["--no-record"])]
        subprocess.run(argv, cwd=REPO, check=True, capture_output=True, timeout=300)
        with open(os.path.join(run_dir, "summary.json")) as f:
            return json.load(f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("extra", nargs="*", help="more allreduce_train options (after --)")
    args = ap.parse_args()
    per_step = {True: [], False: []}
    self_timed = []
    for i in range(args.rounds):
        for record in ((True, False) if i % 2 == 0 else (False, True)):
            s = one_run(args.ranks, record, args.extra)
            per_step[record].append(s["wall_s"] / s["steps"])
            if record:
                busy = (sum(s["compute_s_by_rank"]) + sum(s["comm_s_by_rank"])) / args.ranks
                self_timed.append(sum(s["record_s_by_rank"]) / args.ranks / busy)
        print(f"round {i + 1}/{args.rounds}", flush=True)
    on, off = (statistics.median(per_step[k]) for k in (True, False))
    job = f"the job with {' '.join(args.extra)}" if args.extra else "the default job"
    print(f"\n{job} on {args.ranks} ranks; median of {args.rounds} rounds")
    print(f"  wall time per step, recording on:  {on * 1e3:8.3f} ms")
    print(f"  wall time per step, --no-record:   {off * 1e3:8.3f} ms")
    print(f"  recording overhead (on/off - 1):   {on / off - 1:+8.1%}")
    print(f"  self-timed record writing share:   {statistics.median(self_timed):8.1%} of compute + comm time")


if __name__ == "__main__":
    main()
