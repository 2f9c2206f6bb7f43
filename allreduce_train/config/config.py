"""The configuration of one run: a frozen dataclass, validated once, fingerprinted.

Every rank builds its Config from its own command line; the fingerprint (a hash of all
fields) is compared across ranks before any work, so ranks started with different
arguments or different code versions fail at once instead of training different models.
(Past 300 lines: every option's check is here, beside its field, so that a bad value is
one line wherever the Config is built; split, the checks would drift from the fields.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from ..exits import UsageError
from . import specs

DEFAULT_HIDDEN = (128, 128)
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "gpu")
TRANSPORTS = ("auto", "mpi", "shm")
NONFINITE = ("stop", "skip")
MODES = ("sync", "async")
OVERLAP = ("auto", "on", "off")
OPTIMIZERS = ("sgd", "adagrad")
SGD_MOMENTUM = 0.9  # --momentum's default for SGD (Adagrad has none)
MAX_CHANNELS = 64


@dataclass(frozen=True)
class Config:
    # data
    dataset: str = "digits"
    data_dir: str | None = None
    samples: int = 16384  # synthetic: training samples
    features: int = 784  # synthetic: input width
    classes: int = 10  # synthetic: number of classes
    test_fraction: float = 0.2  # digits and synthetic: held-out share
    # model; layers None means (features of the data, *DEFAULT_HIDDEN, classes)
    layers: tuple[int, ...] | None = None
    activation: str | None = None  # None: sigmoid for xor (the blog's 2-2-1 net), else relu
    loss: str = "cross-entropy"
    init: str | None = None  # None: he for relu, xavier for sigmoid/tanh
    dtype: str = "float32"
    # optimisation
    lr: float = 0.05
    optimizer: str = "sgd"  # sgd, or adagrad (Downpour's on the servers; Duchi et al. 2011)
    momentum: float | None = None  # None: SGD_MOMENTUM for sgd, none for adagrad
    weight_decay: float = 0.0
    global_batch: int = 64
    epochs: int = 20
    steps: int | None = None  # if set, train exactly this many steps instead of epochs
    seed: int = 0
    # parallelism and reporting
    allreduce: str = "auto"  # netsim's model picks, per machine (autoselect.py); or a name
    device: str = "auto"
    cuda_aware_mpi: bool = False  # GPU buffers straight to MPI (else staged through the host)
    run_dir: str | None = None  # None: runs/<date>-<time>-p<world size>
    eval_every: int = 0  # steps between evaluations; 0: at the end of every epoch
    check_every: int = 50  # steps between cross-rank weight checksum checks; 0: only at the end
    record: bool = True  # per-step records and reports (off only to measure their cost)
    quiet: bool = False  # no progress lines within an epoch (only a terminal gets them anyway)
    trace_steps: str = "1-3"  # steps drawn in timeline.json: "A-B,C", or "none"
    ranks_per_node: int | None = None  # pretend nodes of this many ranks (default: real hosts)
    mode: str = "sync"  # sync: the all-reduce; async: Downpour SGD against parameter servers
    servers: int = 1  # async: the last S ranks serve the parameters, in balanced shards
    fetch_every: int = 1  # async: a replica fetches the parameters every n_fetch steps
    push_every: int = 1  # async: and pushes its accumulated gradient every n_push steps
    # rings (or trees, ...) side by side on slices of the buffer, as NCCL's; None: 1, or
    # what --allreduce auto picks
    channels: int | None = None
    # a schedule's transfers between ranks of one node: mpi (messages) or shm (read from the
    # peer's memory in a shared window, on the CPU); between nodes they are always messages.
    # auto: netsim's model picks (autoselect.py; mpi on a GPU or for a library's all-reduce)
    transport: str = "auto"
    allreduce_choice: dict | None = None  # set by --allreduce auto: what it picked, and why
    # gradient buckets, as DDP's (netsim.workload.buckets.plan): a bucket closes once it holds
    # this many MiB (None: DDP's 25; 0: one bucket of the whole gradient), the first at
    # first_bucket_mb (None: DDP's 1); overlap: each bucket all-reduced as soon as backward
    # has written it (auto: on when there is more than one bucket)
    bucket_mb: float | None = None
    first_bucket_mb: float | None = None
    overlap: str = "auto"
    # each bucket compressed before it travels: none, fp16, bf16, topk:RATIO, powersgd:RANK
    # (netsim.algorithms.compression: what each sends; exchange.compress: how it runs)
    compress: str = "none"
    straggler: str | None = None  # "RANK:SECONDS" extra compute per step, or "RANK:xFACTOR"
    # failures
    comm_timeout: float = 300.0  # seconds without progress in a collective that end the job
    stall_warn: float = 60.0  # seconds of waiting that get a warning naming the late ranks
    nonfinite: str = "stop"  # a NaN/Inf loss or gradient: stop the run, or skip the step
    inject: str | None = None  # "kind=K,rank=R,step=S[,secs=T]": a fault on purpose (faults.py)
    checkpoint_every: int = 0  # steps (async: a replica's) between checkpoints; 0: at the end
    keep_checkpoints: int = 2  # the newest K stay
    resume: str | None = None  # a run directory whose newest checkpoint this run goes on from

    def __post_init__(self):
        from netsim import algorithms

        from ..maths import data, model

        def need(ok: bool, message: str):
            if not ok:
                raise UsageError(message)

        need(
            self.dataset in data.DATASETS,
            f"unknown dataset {self.dataset!r} (choose from {', '.join(data.DATASETS)})",
        )
        if self.activation is None:  # resolved once: config.json and checkpoints say which
            object.__setattr__(self, "activation", "sigmoid" if self.dataset == "xor" else "relu")
        need(self.activation in model.ACTIVATIONS, f"unknown activation {self.activation!r}")
        need(self.loss in model.LOSSES, f"unknown loss {self.loss!r}")
        need(self.init is None or self.init in model.INITS, f"unknown init {self.init!r}")
        need(
            self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}"
        )
        need(
            self.allreduce == "auto" or self.allreduce in algorithms.ALGORITHMS,
            f"unknown all-reduce {self.allreduce!r}",
        )
        if self.channels is None and self.allreduce != "auto":  # auto picks its own
            object.__setattr__(self, "channels", 1)
        need(
            self.allreduce == "auto" or algorithms.ALGORITHMS[self.allreduce].runs_over_mpi,
            f"{self.allreduce} is simulated only: the switches add, and MPI here has none "
            f"that do (python -m netsim nccl --algorithm {self.allreduce} models it)",
        )
        need(self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}")
        need(
            self.transport in TRANSPORTS,
            f"--transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}",
        )
        need(
            self.transport != "shm" or self.allreduce == "auto"
            or algorithms.ALGORITHMS[self.allreduce].scheduled,
            f"--transport shm: --allreduce {self.allreduce} is the library's own and moves its "
            "own bytes; shared memory runs the schedules (ring, tree, ...)",
        )  # fmt: skip
        need(0 < self.lr < math.inf, f"--lr must be positive and finite, got {self.lr:g}")
        need(0 <= self.seed < 2**32, f"--seed must be in [0, 2**32), got {self.seed}")
        need(
            self.optimizer in OPTIMIZERS,
            f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
        )
        need(
            self.momentum is None or 0 <= self.momentum < 1,
            f"--momentum must be in [0, 1), got {self.momentum}",
        )
        need(
            self.optimizer == "sgd" or not self.momentum,
            "--momentum is SGD's: Adagrad scales each parameter's step by its gradients' history"
            " and has no momentum",
        )
        need(self.mode in MODES, f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for name in ("servers", "fetch_every", "push_every"):
            value = getattr(self, name)
            need(value >= 1, f"--{name.replace('_', '-')} must be positive, got {value}")
        if self.mode == "async":
            every = self.checkpoint_every
            need(
                every % self.push_every == 0 and every % self.fetch_every == 0,
                f"--checkpoint-every {every}: --mode async checkpoints where every replica "
                f"pushes and fetches, so N must be a multiple of --push-every "
                f"{self.push_every} and --fetch-every {self.fetch_every}",
            )
            need(
                self.nonfinite == "stop",
                "--nonfinite skip: --mode async stops at a non-finite gradient (a replica "
                "cannot skip an update the others never wait for)",
            )
            need(not self.cuda_aware_mpi, "--cuda-aware-mpi: --mode async has no all-reduce")
            need(
                self.bucket_mb is None and self.first_bucket_mb is None and self.overlap == "auto",
                "--bucket-mb, --first-bucket-mb and --overlap bucket the all-reduce; --mode "
                "async pushes and fetches per server shard instead",
            )
        for name in ("bucket_mb", "first_bucket_mb"):
            value = getattr(self, name)
            need(
                value is None or 0 <= value < math.inf,
                f"--{name.replace('_', '-')} must be >= 0 and finite, got {value}",
            )
        need(
            self.first_bucket_mb is None or self.first_bucket_mb > 0,
            f"--first-bucket-mb must be positive, got {self.first_bucket_mb}",
        )
        self._check_compress(need)
        need(
            self.overlap in OVERLAP,
            f"--overlap must be one of {', '.join(OVERLAP)}, got {self.overlap!r}",
        )
        need(
            0 <= self.weight_decay < math.inf,
            f"--weight-decay must be >= 0 and finite, got {self.weight_decay:g}",
        )
        need(self.global_batch >= 1, f"--global-batch must be positive, got {self.global_batch}")
        need(self.epochs >= 1, f"--epochs must be positive, got {self.epochs}")
        need(self.steps is None or self.steps >= 1, f"--steps must be positive, got {self.steps}")
        need(
            0 < self.test_fraction < 1,
            f"--test-fraction must be in (0, 1), got {self.test_fraction:g}",
        )
        need(self.samples >= 1, f"--samples must be positive, got {self.samples}")
        need(self.features >= 1, f"--features must be positive, got {self.features}")
        need(self.classes >= 2, f"--classes must be at least 2, got {self.classes}")
        need(self.eval_every >= 0, f"--eval-every must be >= 0, got {self.eval_every}")
        need(self.check_every >= 0, f"--check-every must be >= 0, got {self.check_every}")
        need(
            self.ranks_per_node is None or self.ranks_per_node >= 1,
            f"--ranks-per-node must be positive, got {self.ranks_per_node}",
        )
        need(
            self.channels is None or 1 <= self.channels <= MAX_CHANNELS,
            f"--channels must be 1 to {MAX_CHANNELS} (NCCL's most), got {self.channels}",
        )
        for name in ("comm_timeout", "stall_warn"):
            value = getattr(self, name)
            need(
                0 <= value < 1e9,  # NaN fails too
                f"--{name.replace('_', '-')} must be seconds >= 0 (0: never), got {value:g}",
            )
        need(
            self.nonfinite in NONFINITE,
            f"--nonfinite must be one of {', '.join(NONFINITE)}, got {self.nonfinite!r}",
        )
        _ = self.injection
        need(
            self.checkpoint_every >= 0,
            f"--checkpoint-every must be >= 0, got {self.checkpoint_every}",
        )
        need(
            self.keep_checkpoints >= 1,
            f"--keep-checkpoints must be >= 1, got {self.keep_checkpoints}",
        )
        _ = self.traced_steps, self.straggler_spec  # parsed, or a UsageError naming the option
        if self.layers is not None:
            need(
                len(self.layers) >= 2 and min(self.layers) >= 1,
                "--layers needs at least two positive widths, got "
                f"{','.join(map(str, self.layers))}",
            )

    def _check_compress(self, need) -> None:
        """--compress parsed (and written as parsed: config.json's, the fingerprint's), and
        what it cannot go with; with it, --transport auto is messages."""
        from netsim import algorithms

        method = self.compression
        object.__setattr__(self, "compress", str(method))
        if method.method == "none":
            return
        need(
            self.mode == "sync",
            f"--compress {method}: --mode async pushes to parameter servers; compression is "
            "of the all-reduce's buckets (--mode sync)",
        )
        need(
            self.allreduce == "auto" or algorithms.ALGORITHMS[self.allreduce].scheduled,
            f"--compress {method}: --allreduce {self.allreduce} is the library's own; the "
            "compressed collectives run on our schedules (ring, tree, ...), which record them",
        )
        need(
            self.transport != "shm",
            f"--compress {method}: its collectives move buffers of their own as messages; "
            "--transport shm sums the gradient in place in shared memory (use mpi or auto)",
        )
        object.__setattr__(self, "transport", "mpi")  # auto: messages, nothing to pick

    @property
    def compression(self):
        """--compress as netsim.algorithms.compression.Compression (method, parameter)."""
        return specs.compress(self.compress)

    @property
    def traced_steps(self) -> frozenset[int]:
        return specs.trace_steps(self.trace_steps)

    @property
    def straggler_spec(self) -> tuple[int, float, float] | None:
        """(rank, extra seconds per step, compute slowdown factor), or None."""
        return None if self.straggler is None else specs.straggler(self.straggler)

    @property
    def injection(self):
        """The --inject fault (faults.Injection), or None."""
        from ..guard import faults

        if self.inject is None:
            return None
        try:
            return faults.parse(self.inject)
        except ValueError as exc:
            raise UsageError(
                f"--inject wants kind=K,rank=R,step=S[,secs=T] (K: {', '.join(faults.KINDS)}):"
                f" {exc}"
            ) from None

    @property
    def momentum_value(self) -> float:
        if self.momentum is None:  # Downpour's servers run plain SGD
            return SGD_MOMENTUM if self.optimizer == "sgd" and self.mode == "sync" else 0.0
        return self.momentum

    def replicas_of(self, world_size: int) -> int:
        """Ranks that train: all in sync mode, all but the servers in async mode."""
        return world_size - self.servers if self.mode == "async" else world_size

    @property
    def init_scheme(self) -> str:
        return self.init or ("he" if self.activation == "relu" else "xavier")

    def check_world(self, world_size: int) -> None:
        if self.injection and self.injection.rank >= world_size:
            raise UsageError(
                f"--inject names rank {self.injection.rank} but the world has {world_size}"
            )
        if self.straggler_spec and self.straggler_spec[0] >= world_size:
            raise UsageError(
                f"--straggler names rank {self.straggler_spec[0]} but the world has "
                f"{world_size} rank{'s' * (world_size > 1)}"
            )
        if self.mode == "async" and world_size <= self.servers:
            raise UsageError(
                f"--mode async with --servers {self.servers} needs at least one more rank, a "
                f"replica; the world has {world_size} (e.g. mpirun -n {self.servers + 1})"
            )
        if self.mode == "sync" and self.global_batch < world_size:
            raise UsageError(
                f"--global-batch {self.global_batch} is smaller than the {world_size} "
                f"ranks: every rank needs at least one sample per step"
            )

    def check_dataset(self, nfeatures: int, nclasses: int, ntrain: int) -> None:
        self.widths_for(nfeatures, nclasses)
        if self.global_batch > ntrain:
            raise UsageError(
                f"--global-batch {self.global_batch} exceeds the {ntrain} training "
                f"samples of {self.dataset}"
            )
        # Steps are numbered from 0: a step the run never takes is refused where it is named
        # (--trace-steps' default may pass the end of a short run: it is only a default).
        total = self.steps or self.epochs * (ntrain // self.global_batch)
        last = f"the run has {total} step{'s' * (total > 1)}, 0 to {total - 1}"
        if self.injection and self.injection.step >= total:
            raise UsageError(f"--inject step={self.injection.step} would never strike: {last}")
        beyond = sorted(s for s in self.traced_steps if s >= total)
        if beyond and self.trace_steps != Config.trace_steps:
            raise UsageError(
                f"--trace-steps {self.trace_steps}: step {beyond[0]} cannot be drawn: {last}"
            )

    def widths_for(self, nfeatures: int, nclasses: int) -> tuple[int, ...]:
        """The layer widths for data of this shape; a mismatch is a usage error."""
        if self.layers is None:
            if self.dataset == "xor":  # the DistBelief-in-Akka demo's net: one sigmoid output
                return (nfeatures, 2, 1)
            return (nfeatures, *DEFAULT_HIDDEN, nclasses)
        if self.layers[0] != nfeatures:
            raise UsageError(
                f"--layers starts with {self.layers[0]} but dataset {self.dataset} "
                f"has {nfeatures} features"
            )
        if self.layers[-1] != nclasses and not (nclasses == 2 and self.layers[-1] == 1):
            binary = " (end with 2, or 1 for one sigmoid unit: P(class 1))" * (nclasses == 2)
            raise UsageError(
                f"--layers ends with {self.layers[-1]} but dataset {self.dataset} "
                f"has {nclasses} classes{binary}"
            )
        return self.layers

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
