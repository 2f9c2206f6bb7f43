"""The command line of `python -m allreduce_train`: every option, its default (the Config's)
and its help. A bad argument is one line (UsageError), never a usage block; no rank exits on
its own, and only rank 0 prints --help. (Past 300 lines: one declaration per option, with
its help; a split would split --help's groups.)
"""

from __future__ import annotations

import argparse

from ..exits import UsageError
from .config import (
    DEFAULT_HIDDEN,
    DEVICES,
    DTYPES,
    MODES,
    NONFINITE,
    OPTIMIZERS,
    OVERLAP,
    SGD_MOMENTUM,
    TRANSPORTS,
    Config,
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (no usage block), no rank exits on its own,
    and only rank 0 prints --help."""

    def __init__(self, *args, speak: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.speak = speak

    def error(self, message):
        raise UsageError(message)

    def print_help(self, file=None):
        if self.speak:
            super().print_help(file)

    def exit(self, status=0, message=None):  # only --help gets here: errors raise above
        raise HelpShown


class HelpShown(Exception):
    pass


def parser(speak: bool = True) -> argparse.ArgumentParser:
    from netsim import algorithms

    from .. import exits
    from ..maths import data, model

    d = Config()
    p = _Parser(
        speak=speak,
        prog="python -m allreduce_train",
        description="Train an MLP with data parallelism: every MPI rank holds a replica, "
        "computes gradients on its share of the global batch, and an all-reduce "
        "averages them. Run under mpirun, e.g. `mpirun -n 4 python -m "
        "allreduce_train`. Each run writes per-step traffic and timing records "
        "to a run directory.",
        epilog="exit codes: "
        + "; ".join(f"{code} {meaning}" for code, meaning in exits.MEANING.items()),
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default=d.dataset,
        metavar="NAME",
        help=f"{', '.join(data.DATASETS)} (default: %(default)s)",
    )
    g.add_argument(
        "--data-dir",
        metavar="DIR",
        help="mnist: directory with the IDX files (gzipped or not) or mnist.npz; "
        f"fashion-mnist: its IDX files (default: {data.FASHION_MNIST_DIR})",
    )
    g.add_argument(
        "--samples",
        type=int,
        default=d.samples,
        metavar="N",
        help="synthetic: training samples (default: %(default)s)",
    )
    g.add_argument(
        "--features",
        type=int,
        default=d.features,
        metavar="N",
        help="synthetic: input features (default: %(default)s)",
    )
    g.add_argument(
        "--classes",
        type=int,
        default=d.classes,
        metavar="N",
        help="synthetic: classes (default: %(default)s)",
    )
    g.add_argument(
        "--test-fraction",
        type=float,
        default=d.test_fraction,
        metavar="F",
        help="digits, synthetic: share held out for testing (default: %(default)s)",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--layers",
        type=_widths,
        metavar="W,W,...",
        help="all layer widths, input to output, e.g. 64,128,128,10 "
        f"(default: features,{','.join(map(str, DEFAULT_HIDDEN))},classes)",
    )
    g.add_argument(
        "--activation",
        choices=list(model.ACTIVATIONS),
        help="hidden-layer activation (default: sigmoid for xor, relu otherwise)",
    )
    g.add_argument(
        "--loss",
        default=d.loss,
        choices=list(model.LOSSES),
        help="softmax cross-entropy, or mean squared error to one-hot targets "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--init",
        choices=list(model.INITS),
        help="weight initialisation (default: he for relu, xavier otherwise)",
    )
    g.add_argument("--dtype", default=d.dtype, choices=DTYPES, help="(default: %(default)s)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=d.lr, help="learning rate (default: %(default)s)")
    g.add_argument(
        "--optimizer",
        default=d.optimizer,
        choices=OPTIMIZERS,
        help="sgd, or adagrad (as PyTorch's); with --mode async the servers run it "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--momentum",
        type=float,
        help=f"SGD's momentum (default: {SGD_MOMENTUM}, and 0 with --mode async as "
        "Downpour's servers; Adagrad has none)",
    )
    g.add_argument(
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        metavar="WD",
        help="L2 penalty added to the gradient (default: %(default)s)",
    )
    g.add_argument(
        "--global-batch",
        type=int,
        default=d.global_batch,
        metavar="B",
        help="samples per step over ALL ranks, split as evenly as possible (default: %(default)s)",
    )
    g.add_argument(
        "--epochs", type=int, default=d.epochs, metavar="N", help="(default: %(default)s)"
    )
    g.add_argument(
        "--steps", type=int, metavar="N", help="train exactly N steps instead of --epochs"
    )
    g.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="seeds the data split, the order of samples and the initial weights "
        "(default: %(default)s)",
    )
    g = p.add_argument_group("parallelism and records")
    g.add_argument(
        "--allreduce",
        default=d.allreduce,
        choices=["auto", *algorithms.ALGORITHMS],
        help="gradient all-reduce: a schedule executed point to point and recorded, "
        "or mpi (the library's MPI_Allreduce, for comparison); auto: the schedule netsim's "
        "model predicts fastest for this buffer and these ranks on this machine (python -m "
        "netsim calibrate measures it once; a built-in estimate until then); nvls, nvls-tree "
        "and collnet need switches that add and are simulated only (python -m netsim nccl) "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--channels",
        type=int,
        default=None,
        metavar="C",
        help="run the all-reduce as C channels side by side on slices of the gradient, each "
        "ring leaving every node through another NIC, as NCCL's channels (default: 1; with "
        "--allreduce auto, its pick)",
    )
    g.add_argument(
        "--transport",
        default=d.transport,
        choices=TRANSPORTS,
        help="how a schedule's transfers between ranks of one node travel: mpi sends "
        "messages; shm reads the peer's gradient in a shared-memory window, its adds fused "
        "with the reads (on the CPU); auto: the one netsim's model predicts faster on this "
        "machine's calibration (mpi on a GPU or for MPI_Allreduce). Between nodes they are "
        "always messages (default: %(default)s)",
    )
    g.add_argument(
        "--bucket-mb",
        type=float,
        default=None,
        metavar="MB",
        help="all-reduce the gradient in buckets of about MB MiB, cut at parameter boundaries "
        "last layer first, as PyTorch DDP's bucket_cap_mb; 0: one bucket of the whole "
        "gradient (default: 25, DDP's)",
    )
    g.add_argument(
        "--first-bucket-mb",
        type=float,
        default=None,
        metavar="MB",
        help="the first bucket's cap, which DDP keeps small so that communication starts "
        "early in backward (default: 1, DDP's)",
    )
    g.add_argument(
        "--overlap",
        default=d.overlap,
        choices=OVERLAP,
        help="on: each bucket's all-reduce starts as soon as backward has written it and runs "
        "while backward goes on (a communication thread); off: all of them after backward; "
        "auto: on when there is more than one bucket (default: %(default)s)",
    )
    g.add_argument(
        "--compress",
        default=d.compress,
        metavar="METHOD",
        help="compress each bucket before it travels, as PyTorch DDP's communication hooks: "
        "fp16 or bf16 (the all-reduce on that type), topk:RATIO (the RATIO largest share of "
        "each rank's gradient plus its residual, error feedback, by an all-gather of values "
        "and indices), powersgd:RANK (rank-RANK factors of each weight matrix all-reduced, "
        "error feedback; biases as they are); none: as it is (default: %(default)s)",
    )
    g.add_argument(
        "--device",
        default=d.device,
        choices=DEVICES,
        help="auto: a GPU through CuPy when there is one, else the CPU (default: %(default)s)",
    )
    g.add_argument(
        "--cuda-aware-mpi",
        action="store_true",
        help="on a GPU, hand MPI the GPU buffers themselves (the MPI must be CUDA-aware; the "
        "PyPI mpich wheel is not); default: stage them through pinned host memory",
    )
    g.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where the records go; must not hold a run already "
        "(default: runs/<date>-<time>-p<ranks>)",
    )
    g.add_argument(
        "--eval-every",
        type=int,
        default=d.eval_every,
        metavar="N",
        help="steps between test evaluations; 0: at the end of every epoch (default: %(default)s)",
    )
    g.add_argument(
        "--check-every",
        type=int,
        default=d.check_every,
        metavar="N",
        help="steps between checks that all ranks hold bit-identical weights; "
        "0: only at start and end (default: %(default)s)",
    )
    g = p.add_argument_group("asynchronous training: Downpour SGD (DistBelief, Dean et al. 2012)")
    g.add_argument(
        "--mode",
        default=d.mode,
        choices=MODES,
        help="sync: every rank a replica, gradients all-reduced every step; async: the last "
        "--servers ranks hold the parameters in shards and apply each replica's gradient as it "
        "comes, the other ranks are replicas that never wait for each other (default: %(default)s)",
    )
    g.add_argument(
        "--servers",
        type=int,
        default=d.servers,
        metavar="S",
        help="async: parameter-server ranks, each serving a balanced slice (default: %(default)s)",
    )
    g.add_argument(
        "--fetch-every",
        type=int,
        default=d.fetch_every,
        metavar="N",
        help="async: a replica fetches the parameters every N steps (n_fetch; default: "
        "%(default)s)",
    )
    g.add_argument(
        "--push-every",
        type=int,
        default=d.push_every,
        metavar="N",
        help="async: and pushes its gradient, summed over N steps, every N (n_push; default: "
        "%(default)s)",
    )
    g = p.add_argument_group("traffic and synchronisation records")
    g.add_argument(
        "--trace-steps",
        default=d.trace_steps,
        metavar="STEPS",
        help="steps drawn in timeline.json, e.g. 1-3,100, or none (default: %(default)s)",
    )
    g.add_argument(
        "--ranks-per-node",
        type=int,
        metavar="K",
        help="group ranks into nodes of K for the intra/inter-node split (default: the real hosts)",
    )
    g.add_argument(
        "--straggler",
        metavar="RANK:DELAY",
        help="slow one rank's compute on purpose: RANK:SECONDS extra per step "
        "(2:0.2) or RANK:xFACTOR (2:x1.5)",
    )
    g.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="keep no per-step records and print no traffic report (only to "
        "measure what recording costs)",
    )
    g.add_argument(
        "--quiet",
        action="store_true",
        help="no progress lines within an epoch (rank 0 prints one every few seconds, with "
        "the rate and an estimate of the time left, only when the output is a terminal)",
    )
    g = p.add_argument_group("failures")
    g.add_argument(
        "--comm-timeout",
        type=float,
        default=d.comm_timeout,
        metavar="SECONDS",
        help="end the job when a collective makes no progress this long, naming the ranks "
        "that do not answer; 0: wait for ever (default: %(default)g)",
    )
    g.add_argument(
        "--stall-warn",
        type=float,
        default=d.stall_warn,
        metavar="SECONDS",
        help="warn, naming the late ranks, when a collective waits this long; 0: never "
        "(default: %(default)g)",
    )
    g.add_argument(
        "--nonfinite",
        default=d.nonfinite,
        choices=NONFINITE,
        help="a NaN or infinite loss or gradient: stop naming the step and ranks (exit 5), or "
        "skip the step's update and count it (default: %(default)s)",
    )
    g.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        metavar="N",
        help="write a checkpoint every N steps (and on SIGINT or SIGTERM); 0: only at the end. "
        "--mode async counts each replica's own steps (N x R batches of R replicas), N a "
        "multiple of --push-every and --fetch-every (default: %(default)s)",
    )
    g.add_argument(
        "--keep-checkpoints",
        type=int,
        default=d.keep_checkpoints,
        metavar="K",
        help="how many of the newest checkpoints stay (default: %(default)s)",
    )
    g.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="go on from RUN_DIR's newest checkpoint, with its settings, on any rank count "
        "(--mode async: as many replicas), into a new run directory",
    )
    g.add_argument(
        "--inject",
        metavar="kind=K,rank=R,step=S",
        help="a fault on purpose, in rank R's step S: K is exception, exit, kill, stop, "
        "sleep (,secs=T) or nan",
    )
    return p


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
