"""python -m netsim report | compare | predict | sweep | nccl | replay | calibrate: --help of each.

Bad input (a file that is not what it should be, a value out of range: InputError) is one
line on stderr and exit code 2; anything else is a bug of ours and keeps its traceback.
(It runs past 300 lines: the syntax of every subcommand, each option with its help.)
"""

from __future__ import annotations

import argparse
import sys

from . import algorithms, commands, step_commands
from .calibration import choose, measure
from .cluster import topology
from .errors import InputError
from .options import (
    MAX_CHANNELS,
    MAX_CHUNKS,
    MAX_PARAMS,
    MAX_TIMEOUT_S,
    byte_sizes,
    count,
    integer,
    real,
)
from .sim import nccl, nccl_tables


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise InputError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m netsim", description="Reports on the traffic of collectives.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser(
        "report",
        help="traffic and synchronisation report of a run directory",
        description="Prints who sent how much to whom and who waited for whom, per "
        "step, from the per-rank records of a run (finished or not).",
    )
    r.set_defaults(run=commands.report)
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument(
        "--plots",
        action="store_true",
        help="also write PNG plots into RUN_DIR (needs the plot extra: matplotlib)",
    )
    r.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")
    r = sub.add_parser(
        "compare",
        help="runs side by side: test accuracy against time and bytes, time to a target",
        description="For each run directory: its method (--compress), its test evaluations "
        "against the wall time since training began and the bytes its all-reduces moved, "
        "and the steps, time and bytes at which it first reached the target; with "
        "--topology, its time to the target on that cluster: the steps it needed here "
        "times its step replayed there.",
    )
    r.set_defaults(run=commands.compare)
    r.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    r.add_argument(
        "--target",
        type=real(0.0, 1.0, low_open=True),
        help="an accuracy, e.g. 0.9 (default: the lowest final accuracy among the runs, "
        "which every run reached)",
    )
    r.add_argument(
        "--topology",
        metavar="T",
        help="also predict each run's time to the target on this cluster, a TOML file or a "
        f"preset ({', '.join(topology.presets())})",
    )
    r.add_argument(
        "--ranks",
        type=integer(1),
        metavar="P",
        help="with --topology: ranks there (default: every GPU of the topology)",
    )
    r.add_argument(
        "--compute",
        choices=("here", "scaled"),
        default="here",
        help="with --topology: each step's compute as measured here, or scaled to the "
        "topology's GPU as a workload's is (the MLP's FLOPs at 40%% of its peak; the "
        "compression's compute alike) (default: %(default)s)",
    )
    r.add_argument("--plot", metavar="PNG", help="draw accuracy against time (plot extra)")
    r.add_argument("--json", action="store_true", help="print the rows as JSON")

    def modelled(name, command, help_text, description):
        c = sub.add_parser(name, help=help_text, description=description)
        c.set_defaults(run=command)
        c.add_argument(
            "--topology",
            required=True,
            metavar="T",
            help=f"a TOML file or a preset ({', '.join(topology.presets())})",
        )
        c.add_argument("--json", action="store_true", help="print the figures as JSON")
        return c

    def sized(c):
        c.add_argument(
            "--params",
            type=count(1, MAX_PARAMS),
            metavar="N",
            help="parameters in the gradient buffer, e.g. 25557032, 1e8 or 1.5B (or --workload)",
        )
        c.add_argument(
            "--dtype", choices=("float32", "float64"), help="the buffer's (default: float32)"
        )
        c.add_argument(
            "--compute-ms",
            type=real(0),
            default=0.0,
            metavar="MS",
            help="compute time per step before the all-reduce (default: 0)",
        )
        c.add_argument(
            "--channels",
            type=integer(1, MAX_CHANNELS),
            metavar="C",
            help="channels side by side on slices of the buffer (default: as many as "
            "NCCL's graph search would run on the topology; 1 on a calibrated machine)",
        )
        c.add_argument(
            "--chunks",
            type=integer(1, MAX_CHUNKS),
            default=1,
            metavar="K",
            help="pipeline the buffer in K pieces, so that an algorithm's phases overlap "
            "as NCCL's do (default: %(default)s, the textbook algorithm)",
        )
        return step_commands.add_options(c)

    c = sized(
        modelled(
            "predict",
            commands.predict,
            "one training step's all-reduce on a modelled cluster",
            "Simulates the all-reduce of a gradient buffer on a topology and gives its "
            "closed-form time beside; --algorithm downpour: asynchronous Downpour SGD, its "
            "parameter servers' incast and its steady step time.",
        )
    )
    c.add_argument("--algorithm", default="ring", choices=(*algorithms.SCHEDULED, "downpour"))
    c.add_argument("--plot", metavar="PNG", help="--workload: draw the step's buckets (plot extra)")
    c.add_argument(
        "--ranks", type=int, metavar="P", help="ranks (default: every GPU of the topology)"
    )
    for flag, n, does in (
        ("--servers", "S", "the last S ranks serve the parameters (default: 1)"),
        ("--fetch-every", "N", "a replica fetches the parameters every N steps (default: 1)"),
        ("--push-every", "N", "a replica pushes its gradient every N steps (default: 1)"),
    ):
        c.add_argument(flag, type=integer(1), metavar=n, help=f"downpour: {does}")
    c = sized(
        modelled(
            "sweep",
            commands.sweep,
            "a scaling table: ranks 2..N, algorithms side by side",
            "Weak scaling: the same compute per rank at every size; efficiency is compute "
            "time over step time.",
        )
    )
    c.add_argument(
        "--algorithms",
        metavar="A,B",
        help=f"(default: {','.join(algorithms.SCHEDULED)}; with --workload, ring, when it "
        "simulates)",
    )
    c.add_argument(
        "--ranks", metavar="P,Q", help="rank counts (default: powers of two up to every GPU)"
    )
    c.add_argument("--plot", metavar="PNG", help="also draw the table (plot extra)")
    c = modelled(
        "nccl",
        commands.nccl,
        "what nccl-tests' all_reduce_perf would measure on a modelled cluster",
        "NCCL's own tuning model (latency per hop, protocol shares and ceilings, from "
        "its source) on netsim's links: per size, the algorithm and protocol NCCL would "
        "pick, its time, algbw and busbw. Needs the topology's gpu.",
    )
    c.add_argument(
        "--ranks", type=int, metavar="P", help="ranks (default: every GPU of the topology)"
    )
    c.add_argument(
        "--sizes",
        type=byte_sizes,
        metavar="B,B",
        help="buffer sizes, K/M/G suffixes (default: 8,1K,64K,1M,16M,256M,1G,8G)",
    )
    c.add_argument(
        "-b", "--minbytes", type=_one_size, metavar="B",
        help="nccl-tests' sweep: from B bytes (with -e and -f; instead of --sizes)",
    )  # fmt: skip
    c.add_argument("-e", "--maxbytes", type=_one_size, metavar="B", help="up to B bytes")
    c.add_argument(
        "-f", "--stepfactor", type=integer(2, 1 << 20), metavar="F",
        help="each size F times the last (default: 2, as nccl-tests)",
    )  # fmt: skip
    c.add_argument("--csv", metavar="CSV", help="also write the rows as CSV")
    c.add_argument(
        "--algorithm",
        default="auto",
        choices=("auto", *nccl.ALGORITHMS),
        help="NCCL_ALGO: auto picks the fastest NCCL's model predicts (default: auto)",
    )
    c.add_argument(
        "--protocol",
        default="auto",
        choices=("auto", *nccl_tables.PROTOCOLS),
        help="NCCL_PROTO (default: auto)",
    )
    c.add_argument(
        "--channels",
        type=integer(1, MAX_CHANNELS),
        metavar="C",
        help="channels (default: NCCL's count)",
    )
    c.add_argument(
        "--gpus-per-thread",
        type=integer(1),
        default=1,
        metavar="G",
        help="GPUs one process drives (nccl-tests -g G): G kernel launches per call (default: 1)",
    )
    c.add_argument(
        "--all", action="store_true", help="every algorithm and protocol, not only the pick"
    )
    c = modelled(
        "replay",
        commands.replay,
        "a recorded run's compute and messages on a modelled cluster",
        "Maps each recorded step (its per-rank compute times and the run's buffer) onto "
        "the topology and compares predicted with measured times.",
    )
    c.add_argument("run_dir", metavar="RUN_DIR")
    c.add_argument(
        "--algorithm",
        choices=algorithms.SCHEDULED,
        help="replay with another algorithm (default: the run's)",
    )
    c.add_argument(
        "--ranks",
        type=integer(1),
        metavar="P",
        help="a bucketed run on P modelled ranks, each running as the run's slowest "
        "(default: the run's ranks)",
    )
    c.add_argument(
        "--overlap",
        choices=("on", "off"),
        help="a bucketed run with its all-reduces overlapping backward, or all after it: "
        "what overlap saves on that cluster (default: as the run did)",
    )
    c = sub.add_parser(
        "calibrate",
        help="measure this machine's MPI and fit a topology of it",
        description="Runs ping-pong and ring all-reduce sweeps under mpirun "
        f"(python -m {measure.PROBE}), fits latency, bandwidths and "
        "processor costs of one node whose GPUs are the ranks, prints the "
        "residuals of the fit and writes the topology as TOML.",
    )
    c.set_defaults(run=commands.calibrate)
    c.add_argument(
        "--ranks",
        default="2,3,4",
        metavar="P,Q",
        help="rank counts for the all-reduce (ping-pong at the smallest; default: %(default)s)",
    )
    c.add_argument(
        "--rounds",
        type=integer(1),
        default=3,
        metavar="N",
        help="timed rounds per size and pass (default: 3)",
    )
    c.add_argument(
        "--passes",
        type=integer(1),
        default=5,
        metavar="N",
        help="times over all rank counts in turn: the machine's state changes from run "
        "to run, so more passes beat more rounds (default: 5)",
    )
    c.add_argument(
        "--sizes",
        type=byte_sizes,
        default=measure.ALLREDUCE_SIZES,
        metavar="B,B",
        help="all-reduce buffer sizes, K/M suffixes (default: 4K,16K,...,64M)",
    )
    c.add_argument(
        "--pingpong-sizes",
        type=byte_sizes,
        default=measure.PINGPONG_SIZES,
        metavar="B,B",
        help="ping-pong message sizes, or none (default: 8 B .. 64 MiB)",
    )
    c.add_argument(
        "--timeout-s",
        type=real(0, MAX_TIMEOUT_S, low_open=True),
        default=300,
        metavar="S",
        help="hard limit per mpirun (default: 300)",
    )
    c.add_argument(
        "--out",
        default=str(choose.cache_file()),
        metavar="FILE",
        help="the topology written; the default is where --allreduce auto looks for this "
        "host's (default: %(default)s; $NETSIM_CACHE_DIR moves it)",
    )
    c.add_argument(
        "--name", default="this machine", help="the topology's name (default: %(default)s)"
    )
    c.add_argument("--save-measurements", metavar="JSON", help="also keep the measurements")
    c.add_argument(
        "--from-measurements",
        metavar="JSON",
        help="fit saved measurements instead of measuring (--save-measurements)",
    )
    c.add_argument("--json", action="store_true", help="print parameters and residuals as JSON")
    return p


def _one_size(text: str) -> int:
    """One byte count of --sizes' form (8, 4K, 64M, 1G)."""
    (n,) = byte_sizes(text) or (0,)
    return n


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
        return args.run(args)
    except InputError as exc:  # one line whatever a key or a path holds (a newline shows as \n)
        line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(exc))
        print(f"netsim: error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, during calibrate's runs say: one line, not a trace
        print("netsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python -m netsim report RUN | head`: the reader left, not an error
        sys.stderr.close()
        sys.exit(0)
