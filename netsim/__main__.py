"""python -m netsim report | predict | sweep | replay | calibrate: see --help of each.

Bad input (a file that is not what it should be, a value out of range: InputError) is one
line on stderr and exit code 2; anything else is a bug of ours and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import algorithms
from .cluster import topology
from .errors import InputError
from .record import rundir
from .report import summary, text, traffic
from .sim import calibrate, measure, predict


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise InputError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m netsim", description="Reports on the traffic of collectives.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser("report", help="traffic and synchronisation report of a run directory",
                       description="Prints who sent how much to whom and who waited for whom, per "
                                   "step, from the per-rank records of a run (finished or not).")
    r.add_argument("run_dir", metavar="RUN_DIR")
    r.add_argument("--plots", action="store_true",
                   help="also write PNG plots into RUN_DIR (needs the plot extra: matplotlib)")
    r.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")

    def modelled(name, help_text, description):
        c = sub.add_parser(name, help=help_text, description=description)
        c.add_argument("--topology", required=True, metavar="T",
                       help=f"a TOML file or a preset ({', '.join(topology.presets())})")
        c.add_argument("--json", action="store_true", help="print the figures as JSON")
        return c

    def sized(c):
        c.add_argument("--params", type=int, required=True, metavar="N", help="parameters in the gradient buffer")
        c.add_argument("--dtype", default="float32", choices=("float32", "float64"))
        c.add_argument("--compute-ms", type=float, default=0.0, metavar="MS",
                       help="compute time per step before the all-reduce (default: 0)")
        return c

    c = sized(modelled("predict", "one training step's all-reduce on a modelled cluster",
                       "Simulates the all-reduce of a gradient buffer on a topology and gives its "
                       "closed-form time beside."))
    c.add_argument("--algorithm", default="ring", choices=algorithms.SCHEDULED)
    c.add_argument("--ranks", type=int, metavar="P", help="ranks (default: every GPU of the topology)")
    c = sized(modelled("sweep", "a scaling table: ranks 2..N, algorithms side by side",
                       "Weak scaling: the same compute per rank at every size; efficiency is compute "
                       "time over step time."))
    c.add_argument("--algorithms", default=",".join(algorithms.SCHEDULED), metavar="A,B")
    c.add_argument("--ranks", metavar="P,Q", help="rank counts (default: powers of two up to every GPU)")
    c.add_argument("--plot", metavar="PNG", help="also draw the table (plot extra)")
    c = modelled("replay", "a recorded run's compute and messages on a modelled cluster",
                 "Maps each recorded step (its per-rank compute times and the run's buffer) onto "
                 "the topology and compares predicted with measured times.")
    c.add_argument("run_dir", metavar="RUN_DIR")
    c.add_argument("--algorithm", choices=algorithms.SCHEDULED,
                   help="replay with another algorithm (default: the run's)")
    c = sub.add_parser("calibrate", help="measure this machine's MPI and fit a topology of it",
                       description="Runs ping-pong and ring all-reduce sweeps under mpirun "
                                   "(python -m allreduce_train.probe), fits latency, bandwidths and "
                                   "processor costs of one node whose GPUs are the ranks, prints the "
                                   "residuals of the fit and writes the topology as TOML.")
    c.add_argument("--ranks", default="2,3,4", metavar="P,Q",
                   help="rank counts for the all-reduce (ping-pong at the smallest; default: %(default)s)")
    c.add_argument("--rounds", type=int, default=3, metavar="N", help="timed rounds per size and pass (default: 3)")
    c.add_argument("--passes", type=int, default=5, metavar="N",
                   help="times over all rank counts in turn: the machine's state changes from run "
                        "to run, so more passes beat more rounds (default: 5)")
    c.add_argument("--sizes", type=measure.byte_sizes, default=measure.ALLREDUCE_SIZES, metavar="B,B",
                   help="all-reduce buffer sizes, K/M suffixes (default: 64K,256K,...,64M)")
    c.add_argument("--pingpong-sizes", type=measure.byte_sizes, default=measure.PINGPONG_SIZES,
                   metavar="B,B", help="ping-pong message sizes, or none (default: 8 B .. 64 MiB)")
    c.add_argument("--timeout-s", type=float, default=300, metavar="S", help="hard limit per mpirun (default: 300)")
    c.add_argument("--out", default="this-machine.toml", metavar="FILE",
                   help="the topology written (default: %(default)s)")
    c.add_argument("--name", default="this machine", help="the topology's name (default: %(default)s)")
    c.add_argument("--save-measurements", metavar="JSON", help="also keep the measurements")
    c.add_argument("--from-measurements", metavar="JSON",
                   help="fit saved measurements instead of measuring (--save-measurements)")
    c.add_argument("--json", action="store_true", help="print parameters and residuals as JSON")
    return p


def main(argv=None) -> int:
    try:
        args = parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except InputError as exc:
        print(f"netsim: error: {exc}", file=sys.stderr)
        return 2


def _report(args) -> int:
    config, records, totals = rundir.load(args.run_dir)
    merged = traffic.merge(config, records, complete=totals is not None)
    figures = summary.summarize(config, merged)
    print(json.dumps(figures, indent=2) if args.json else text.text(config, merged, figures))
    if args.plots:
        from .report import plots

        for path in plots.write_plots(args.run_dir, config, merged):
            print(f"wrote {path}")
    return 0


def _predict(args) -> int:
    topo = topology.load(args.topology)
    ranks = topo.gpus if args.ranks is None else args.ranks
    out = predict.predict(topo, algorithms.get(args.algorithm), ranks, args.params, _itemsize(args),
                          args.compute_ms / 1e3)
    print(json.dumps(out, indent=2) if args.json else predict.prediction_text(out))
    return 0


def _sweep(args) -> int:
    topo = topology.load(args.topology)
    _check_directory("--plot", args.plot)
    names = [a.strip() for a in args.algorithms.split(",")]
    unknown = [a for a in names if a not in algorithms.SCHEDULED]
    if unknown:
        raise InputError(f"--algorithms: unknown {', '.join(unknown)} (choose from {', '.join(algorithms.SCHEDULED)})")
    sizes = _sizes(args.ranks, topo.gpus)
    rows = predict.sweep(topo, [algorithms.get(a) for a in names], sizes, args.params, _itemsize(args),
                         args.compute_ms / 1e3)
    print(json.dumps(rows, indent=2) if args.json else predict.sweep_text(topo, rows, args))
    if args.plot:
        from .report import plots

        print(f"wrote {plots.write_sweep_plot(args.plot, topo, rows)}")
    return 0


def _replay(args) -> int:
    topo = topology.load(args.topology)
    config, records, totals = rundir.load(args.run_dir)
    merged = traffic.merge(config, records, complete=totals is not None)
    algorithm = algorithms.get(args.algorithm) if args.algorithm else merged.algorithm
    out = predict.replay(config, merged, topo, algorithm)
    measured = summary.summarize(config, merged)
    out["measured"] = {k: measured.get(k) for k in predict.COMPARED}
    # the error of a prediction only where it predicts what was measured
    out["errors"] = predict.errors(measured, out) if algorithm is merged.algorithm else {}
    print(json.dumps(out, indent=2) if args.json else predict.replay_text(out))
    return 0


def _itemsize(args) -> int:
    return 4 if args.dtype == "float32" else 8


def _sizes(text, gpus: int) -> list[int]:
    if text:
        try:
            sizes = sorted({int(v) for v in text.split(",")})
        except ValueError:
            raise InputError(f"--ranks wants comma-separated integers, got {text!r}") from None
        if sizes[0] < 2 or sizes[-1] > gpus:
            raise InputError(f"--ranks must lie in 2..{gpus} (the topology's GPUs), got {text}")
        return sizes
    return [2**k for k in range(1, gpus.bit_length()) if 2**k <= gpus] + ([gpus] if gpus & (gpus - 1) else [])


def _check_directory(option: str, path: str | None) -> None:
    """An output path's directory exists (checked before the work, not after it)."""
    if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise InputError(f"{option}: no such directory: {os.path.dirname(os.path.abspath(path))}")


def _calibrate(args) -> int:
    for option, path in (("--out", args.out), ("--save-measurements", args.save_measurements)):
        _check_directory(option, path)
    if args.from_measurements:
        try:
            with open(args.from_measurements) as f:
                measurements = json.load(f)
        except OSError as exc:
            raise InputError(f"--from-measurements: cannot read {args.from_measurements}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"--from-measurements: {args.from_measurements} is not JSON: {exc}") from None
    else:
        try:
            ranks = sorted({int(v) for v in args.ranks.split(",")})
        except ValueError:
            raise InputError(f"--ranks wants comma-separated integers, got {args.ranks!r}") from None
        if ranks[0] < 2:
            raise InputError(f"--ranks must be at least 2 (the probe needs two ranks), got {args.ranks}")
        if args.rounds < 1 or args.passes < 1:
            raise InputError("--rounds and --passes must be positive")
        log = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
        measurements = measure.measure(ranks, args.rounds, args.passes, args.pingpong_sizes, args.sizes,
                                         args.timeout_s, log)
        if args.save_measurements:
            with open(args.save_measurements, "w") as f:
                json.dump(measurements, f)
    result = calibrate.fit(measurements, args.name)
    with open(args.out, "w") as f:
        f.write(calibrate.toml_text(result, measurements))
    if args.json:
        print(json.dumps({"topology": result.spec, "parameters": result.parameters, "residuals": result.rows,
                          "median_abs_error": result.median_abs_error, "machine": result.facts,
                          "disturbed_rounds": result.disturbed, "out": args.out}, indent=2))
    else:
        print(f"{calibrate.text(result)}\nwrote {args.out}")
    return 0


COMMANDS = {"report": _report, "predict": _predict, "sweep": _sweep, "replay": _replay, "calibrate": _calibrate}


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python -m netsim report RUN | head`: the reader left, not an error
        sys.stderr.close()
        sys.exit(0)
