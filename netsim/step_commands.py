"""`predict --workload` and `sweep --workload`: a training step of a workload, given the
parsed arguments (netsim.commands hands them over; the syntax is in __main__.py). The
arguments end here: netsim.sim.step is handed values."""

from __future__ import annotations

import sys

from netsim import algorithms
from netsim.errors import InputError
from netsim.record import rundir
from netsim.sim import step as steps
from netsim.sim import step_text
from netsim.workload import catalog
from netsim.workload.workload import ITEMSIZE

MIB = 1 << 20
# options that mean something only for a workload's step, with their defaults
WORKLOAD_ONLY = {
    "seq_len": None,
    "batch": None,
    "step_ms": None,
    "efficiency": None,
    "precision": None,
    "bucket_mb": None,
    "first_bucket_mb": None,
    "overlap": None,
    "accumulate": None,
    "grad_dtype": None,
    "collectives": None,
    "csv": None,
}


def check(args) -> bool:
    """Whether this is a workload's step (--workload) or a buffer's all-reduce (--params):
    one of them, and no option of the other."""
    if args.workload is None:
        given = [k for k, v in WORKLOAD_ONLY.items() if getattr(args, k) != v]
        if getattr(args, "plot", None) and args.command == "predict":
            given.append("plot")
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise InputError(f"{flag} is an option of --workload (a training step)")
        if args.params is None:
            raise InputError("--params N (a buffer) or --workload W (a training step) is needed")
        return False
    if args.params is not None:
        raise InputError("--params and --workload are two questions; ask one")
    if args.compute_ms:
        raise InputError("--compute-ms is --params' compute; a workload's is --step-ms")
    if args.dtype is not None:
        raise InputError("--dtype is --params' buffer; a workload's gradients take --grad-dtype")
    return True


def _setup(args, topo):
    workload = catalog.resolve(args.workload, args.seq_len)
    if args.batch is not None:
        workload = workload.with_(batch=args.batch)
    if args.precision is not None:
        workload = workload.with_(compute={**workload.compute, "precision": args.precision})
    how = steps.collectives(topo, args.collectives or "auto")
    if how == "nccl" and args.chunks != 1:
        raise InputError("--chunks is the simulator's; NCCL's model pipelines as NCCL does")
    step_s = None if args.step_ms is None else args.step_ms / 1e3
    forward, backward = steps.compute_times(workload, topo.spec.get("gpu"), args.efficiency, step_s)
    mb = 25.0 if args.bucket_mb is None else args.bucket_mb
    first = 1.0 if args.first_bucket_mb is None else args.first_bucket_mb
    plan = {
        "grad_dtype": args.grad_dtype,
        "cap_bytes": int(mb * MIB) or None,  # int(), as DDP's bucket_cap_mb * 1024 * 1024
        "first_cap_bytes": int(first * MIB) or 1,
        "overlap": (args.overlap or "on") == "on",
        "accumulate": args.accumulate or 1,
    }
    itemsize = ITEMSIZE[args.grad_dtype or workload.dtype]
    return workload, how, forward, backward, plan, itemsize


def predict(args, topo, ranks: int, check_output, write) -> int:
    if args.algorithm == "downpour":
        raise InputError("--algorithm downpour has no workload step; its options are its own")
    for option, path, suffix in (("--plot", args.plot, ".png"), ("--csv", args.csv, ".csv")):
        if path and not path.lower().endswith(suffix):
            raise InputError(f"{option} wants a {suffix} file name, got {path!r}")
        check_output(option, path)
    workload, how, forward, backward, plan, itemsize = _setup(args, topo)
    algorithm = algorithms.get(args.algorithm)
    timer = steps.Timer(topo, ranks, how, algorithm, itemsize, args.channels, args.chunks)
    out = steps.step(workload, timer, forward, backward, **plan)
    print(rundir.dumps(out, indent=2) if args.json else step_text.step_text(out))
    _outputs(args, write, lambda tmp: _text(tmp, step_text.step_csv(out)),
             lambda tmp: step_text.step_plot(tmp, out))  # fmt: skip
    return 0


def sweep(args, topo, sizes: list[int], check_output, write) -> int:
    if args.csv and not args.csv.lower().endswith(".csv"):
        raise InputError(f"--csv wants a .csv file name, got {args.csv!r}")
    check_output("--csv", args.csv)
    workload, how, forward, backward, plan, itemsize = _setup(args, topo)
    names = [a.strip() for a in (args.algorithms or "ring").split(",")]
    if how == "nccl":
        if args.algorithms:
            raise InputError("--algorithms is the simulator's (--collectives simulate)")
        names = ["ring"]  # unused: NCCL's model picks
    rows = []
    for p in sizes:
        for name in names:
            algorithm = algorithms.get(name)
            timer = steps.Timer(topo, p, how, algorithm, itemsize, args.channels, args.chunks)
            rows.append(steps.step(workload, timer, forward, backward, **plan))
    print(rundir.dumps(rows, indent=2) if args.json else step_text.step_sweep_text(rows))
    _outputs(args, write, lambda tmp: _text(tmp, step_text.step_sweep_csv(rows)),
             lambda tmp: step_text.step_sweep_plot(tmp, rows))  # fmt: skip
    return 0


def _text(path: str, content: str) -> None:
    with open(path, "w") as f:
        f.write(content)


def _outputs(args, write, csv, plot) -> None:
    stream = sys.stderr if args.json else sys.stdout  # JSON stays JSON
    if args.csv:
        write("--csv", args.csv, csv)
        print(f"wrote {args.csv}", file=stream)
    if args.plot:
        write("--plot", args.plot, plot)
        print(f"wrote {args.plot}", file=stream)
