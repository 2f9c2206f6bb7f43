"""`predict --workload` and `sweep --workload`: a training step of a workload. Their options
(add_options, which __main__.py's parsers call) and what they do with the parsed arguments
(netsim.commands hands them over). The arguments end here: netsim.sim.step is handed
values."""

from __future__ import annotations

import argparse
import sys

from netsim import algorithms
from netsim.errors import InputError
from netsim.options import MAX_ACCUMULATE, MAX_BATCH, integer, real
from netsim.record import rundir
from netsim.sim import step as steps
from netsim.sim import step_text
from netsim.workload import catalog, fileformat
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
    "input_shape": None,
    "measure": False,
    "save_workload": None,
}


def add_options(c):
    """predict's and sweep's options of a workload's step (__main__.py's parsers)."""
    w = c.add_argument_group(
        "a training step of a workload",
        "forward, then backward layer by layer, each DDP bucket's all-reduce issued "
        "when its gradients are ready (docs/ARCHITECTURE.md defines the figures)",
    )
    w.add_argument(
        "--workload",
        metavar="W",
        help=f"a built-in ({', '.join(catalog.BUILTINS)}), a workload file (TOML or "
        "JSON), an ASTRA-sim 1.0 / SimAI workload file, a run directory of ours, or a "
        "PyTorch model, torch:MODULE:CALLABLE: MODULE a dotted module or a .py file, "
        "CALLABLE() builds the nn.Module (e.g. torch:torchvision.models:resnet50, "
        "torch:./mynet.py:Net; needs torch)",
    )
    w.add_argument(
        "--seq-len",
        type=integer(1, catalog.MAX_SEQ_LEN),
        metavar="N",
        help="tokens per sample of a built-in sequence model (default: its context); of a "
        "torch: model, its example input: N token ids (int64 zeros) per sample",
    )
    w.add_argument(
        "--input-shape",
        type=_shape,
        metavar="D,D",
        help="a torch: model's example input, one sample's shape (e.g. 3,224,224), float32 "
        "zeros, whose forward gives the layers' FLOPs (without it or --seq-len: 2 x "
        "weights per sample, exact only for an MLP)",
    )
    w.add_argument(
        "--measure",
        action="store_true",
        help="a torch: model's forward and backward of its example timed here, on the "
        "device the model is on (median of 5), instead of FLOPs on the topology's GPU",
    )
    w.add_argument(
        "--batch",
        type=integer(1, MAX_BATCH),
        metavar="B",
        help="samples per GPU per micro-step, and a torch: model's example batch "
        "(default: the workload's; a torch: model's, 1)",
    )
    w.add_argument(
        "--step-ms",
        type=real(0, low_open=True),
        metavar="MS",
        help="the measured forward + backward of one micro-step on one GPU: the "
        "layers' compute is scaled to it (default: the workload's times or FLOPs)",
    )
    w.add_argument(
        "--efficiency",
        type=real(0, 1, low_open=True),
        metavar="E",
        help="the share of the device's peak FLOPs that the layers achieve (default: "
        "the workload's [compute] efficiency, else 0.4)",
    )
    w.add_argument(
        "--precision",
        choices=("fp16", "bf16", "tf32", "fp32"),
        help="the math the layers' FLOPs run at, which picks the device's peak (mixed "
        "precision: fp16 or bf16; default: the workload's, else its dtype's)",
    )
    w.add_argument(
        "--bucket-mb",
        type=real(0),
        metavar="MB",
        help="DDP's bucket_cap_mb, MiB (default: 25); 0: the whole gradient in one bucket",
    )
    w.add_argument(
        "--first-bucket-mb",
        type=real(0, low_open=True),
        metavar="MB",
        help="the first bucket's cap, MiB (default: 1, DDP's)",
    )
    w.add_argument(
        "--overlap",
        choices=("on", "off"),
        help="on: a bucket's all-reduce starts when its gradients are ready; off: "
        "after the whole backward (default: on)",
    )
    w.add_argument(
        "--accumulate",
        type=integer(1, MAX_ACCUMULATE),
        metavar="K",
        help="gradient accumulation: K micro-steps per step, one all-reduce (default: 1)",
    )
    w.add_argument(
        "--grad-dtype",
        choices=("float32", "float16", "bfloat16"),
        help="the gradients' dtype (default: the workload's)",
    )
    w.add_argument(
        "--collectives",
        choices=("auto", "nccl", "simulate"),
        help="the all-reduce's model: NCCL's on a GPU topology, or the simulator with "
        "--algorithm (default: auto, NCCL's where the topology has a gpu and is not "
        "calibrated)",
    )
    w.add_argument("--csv", metavar="CSV", help="also write the rows as CSV")
    w.add_argument(
        "--save-workload",
        metavar="FILE",
        help="also write the workload as simulated (with --batch and --precision) as a "
        "workload file, TOML or JSON by its suffix, which --workload reads back (without "
        "torch)",
    )
    return c


def _shape(text: str) -> tuple[int, ...]:
    """--input-shape: one sample's dimensions, comma-separated positive integers."""
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1 or max(dims) > catalog.MAX_INPUT_ELEMENTS:
        raise argparse.ArgumentTypeError(
            f"one sample's dimensions, comma-separated positive integers (e.g. 3,224,224), "
            f"got {text!r}"
        )
    return dims


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
    workload = catalog.resolve(
        args.workload, args.seq_len, args.input_shape, args.batch, args.measure
    )
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
    _check_save(args, check_output)
    workload, how, forward, backward, plan, itemsize = _setup(args, topo)
    algorithm = algorithms.get(args.algorithm)
    timer = steps.Timer(topo, ranks, how, algorithm, itemsize, args.channels, args.chunks)
    out = steps.step(workload, timer, forward, backward, **plan)
    print(rundir.dumps(out, indent=2) if args.json else step_text.step_text(out))
    _outputs(args, write, workload, lambda tmp: _text(tmp, step_text.step_csv(out)),
             lambda tmp: step_text.step_plot(tmp, out))  # fmt: skip
    return 0


def sweep(args, topo, sizes: list[int], check_output, write) -> int:
    if args.csv and not args.csv.lower().endswith(".csv"):
        raise InputError(f"--csv wants a .csv file name, got {args.csv!r}")
    check_output("--csv", args.csv)
    _check_save(args, check_output)
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
    _outputs(args, write, workload, lambda tmp: _text(tmp, step_text.step_sweep_csv(rows)),
             lambda tmp: step_text.step_sweep_plot(tmp, rows))  # fmt: skip
    return 0


def _text(path: str, content: str) -> None:
    with open(path, "w") as f:
        f.write(content)


def _check_save(args, check_output) -> None:
    """--save-workload names a .toml or .json file that can be written."""
    path = args.save_workload
    if path and not path.lower().endswith((".toml", ".json")):
        raise InputError(f"--save-workload wants a .toml or .json file name, got {path!r}")
    check_output("--save-workload", path)


def _outputs(args, write, workload, csv, plot) -> None:
    stream = sys.stderr if args.json else sys.stdout  # JSON stays JSON
    if args.save_workload:
        as_json = args.save_workload.lower().endswith(".json")
        content = (fileformat.to_json if as_json else fileformat.to_toml)(workload)
        write("--save-workload", args.save_workload, lambda tmp: _text(tmp, content))
        print(f"wrote {args.save_workload}", file=stream)
    if args.csv:
        write("--csv", args.csv, csv)
        print(f"wrote {args.csv}", file=stream)
    if args.plot:
        write("--plot", args.plot, plot)
        print(f"wrote {args.plot}", file=stream)
