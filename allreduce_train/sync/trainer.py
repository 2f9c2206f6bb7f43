"""One rank's replica and its step: shard, forward/backward, all-reduce, update; and the
checks and evaluation the run asks of it (netsim-free maths beside its one all-reduce).

Each step every rank computes the gradient of (1/B) * (sum of losses over its rows of the
global batch B); the all-reduce sums these, which is exactly the gradient of the global
batch's mean loss whatever the split, so p ranks compute what one rank would.
"""

from __future__ import annotations

import time

import numpy as np

from netsim.record import rundir
from netsim.record.recorder import Recorder

from ..comm import PATIENCE, World
from ..config.config import Config
from ..exchange import buckets, factory
from ..exchange.protocol import Transport
from ..exits import NonFinite, ReplicasDiverged
from ..guard.faults import Straggler
from ..guard.watchdog import Watchdog
from ..maths import data, model, optim
from ..maths.backend import Backend
from ..maths.evaluate import digest, score
from ..maths.model import MLP
from ..run.checkpoint import Snapshot
from ..run.lifecycle import Totals

MAX_SKIPS_IN_A_ROW = 10


class Trainer:
    """One rank's replica, its data and its all-reduce over `transport`."""

    def __init__(
        self,
        cfg: Config,
        world: World,
        backend: Backend,
        dataset: data.Dataset,
        transport: Transport,
    ):
        self.cfg, self.world, self.backend, self.dataset = cfg, world, backend, dataset
        self.dtype = np.dtype(cfg.dtype).type
        cfg.check_world(world.world_size)
        cfg.check_dataset(dataset.nfeatures, dataset.nclasses, len(dataset.y_train))
        widths = cfg.widths_for(dataset.nfeatures, dataset.nclasses)
        self.steps_per_epoch = len(dataset.y_train) // cfg.global_batch
        self.total_steps = cfg.steps or cfg.epochs * self.steps_per_epoch
        self.node_of_rank = world.node_of_rank(cfg.ranks_per_node)
        # Where the gradient lives (a node's shared-memory window, for the exchange to read
        # peers' slices directly) is decided before the model is made, so that its buffer
        # is the window's; then the gradient path (exchange.factory): `exchange.buffer` is
        # what it sums, the gradient itself or its pinned host mirror, which then holds the
        # sum too.
        memory = factory.gradient_memory(
            cfg, world, backend, model.nparams(widths), self.dtype, self.node_of_rank
        )
        self.model = MLP(widths, cfg.activation, cfg.loss, backend.xp, self.dtype, backend.kernels,
                         grads=memory.grads)  # fmt: skip
        self.model.init(cfg.init_scheme, cfg.seed)
        self.optimizer = optim.make(
            cfg, self.model.params, self.model.grads, backend.xp, backend.threads, backend.kernels
        )
        # The gradient in buckets (one, or DDP's), each with its executor (auto: the one
        # picked for its size), all-reduced as backward writes them (overlap) or after it.
        self.buckets = buckets.plan(
            widths, np.dtype(cfg.dtype).itemsize, cfg.bucket_mb, cfg.first_bucket_mb
        )
        per_bucket = (cfg.allreduce_choice or {}).get("buckets")
        exchange = factory.make(
            cfg, world, backend, self.model.grads, transport,
            node_of_rank=self.node_of_rank, segments=self.model.layer_segments, memory=memory,
            spans=[(b.lo, b.hi) for b in self.buckets], widths=widths,
            algorithms_by_bucket=per_bucket and [(c["algorithm"], c["channels"])
                                                 for c in per_bucket],
        )  # fmt: skip
        self.exchange = buckets.BucketedExchange(
            exchange, self.buckets, buckets.overlapping(cfg.overlap, len(self.buckets)),
            time.perf_counter_ns, backend.synchronize if backend.on_gpu else None, PATIENCE,
        )  # fmt: skip
        self.mine = data.local_slice(cfg.global_batch, world.world_size, world.rank)
        self.batches = data.Batches(len(dataset.y_train), cfg.seed, cfg.global_batch)
        self.straggler = Straggler.of(cfg.straggler_spec, world.rank)
        self.injection = cfg.injection
        self.start_step = 0  # the first step this run trains (restore: the checkpoint's)
        self.skips_in_a_row = 0  # --nonfinite skip: past MAX_SKIPS_IN_A_ROW the run stops
        self.totals = Totals()
        self.recorder = None  # what record_into gave: every step's record goes there
        self.watchdog = Watchdog(None, world.rank, 1, 0, 0)  # run() gives a live one

    def new_recorder(self, run_dir: str) -> Recorder:
        """This rank's step file in run_dir, open for record_into."""
        samples = data.local_count(self.cfg.global_batch, self.world.world_size, self.world.rank)
        return Recorder(
            rundir.step_file(run_dir, self.world.rank),
            self.world.rank,
            self.steps_per_epoch,
            samples,
        )

    def record_into(self, recorder: Recorder | None) -> None:
        """Record every later step into `recorder` (None: record nothing)."""
        self.recorder = recorder
        self.exchange.record_into(recorder)

    def snapshot(self) -> Snapshot:
        """This replica's state after its steps so far, on the host (a checkpoint's)."""
        host = self.backend.xp.asnumpy if self.backend.on_gpu else (lambda a: a)
        t, cfg = self.totals, self.cfg
        return Snapshot(
            step=t.steps,
            params=host(self.model.params),
            optimizer={name: host(a) for name, a in self.optimizer.state.items()},
            layers=tuple(self.model.widths),
            config=cfg.to_dict(),
            fingerprint=cfg.fingerprint(),
            totals=(t.samples, t.compute_s, t.comm_s, t.loss_sum),
            skipped=list(t.skipped),
        )

    def restore(self, state: dict) -> None:
        """Go on from a checkpoint (checkpoint.read): weights, velocity, totals, step."""
        xp = self.backend.xp
        self.model.params[...] = xp.asarray(state["params"])
        for name, array in self.optimizer.state.items():
            array[...] = xp.asarray(state[name])
        t = self.totals
        t.steps = self.start_step = state["step"]
        t.samples, t.compute_s, t.comm_s, t.loss_sum = state["totals"].tolist()
        t.samples = int(t.samples)
        t.skipped = state["skipped"].tolist()

    # --- one step ---------------------------------------------------------------------

    def step(self, step: int) -> tuple[int, int, int, int]:
        """One training step; returns its clock readings (perf_counter_ns, the recorder's
        clock): start, all-reduce entry and exit, end. Recording, its record is committed."""
        # Clock readings in integer nanoseconds, stored as they are in the step file.
        t0 = time.perf_counter_ns()
        loss_sum, n = self.local_gradient(step, self.exchange.ready)
        if self.straggler is not None:  # a deliberately slow rank: its compute takes longer
            self.straggler.slow(t0)
        if self.injection is not None and self.injection.kind != "nan":
            self.injection.strike(self.world.rank, step, None)
        t1 = time.perf_counter_ns()
        self.watchdog.where = (step, "the all-reduce", t1)  # tuples: no cost to speak of
        self.exchange.wait()  # every bucket's sum in place (with overlap, begun in backward)
        t2 = time.perf_counter_ns()
        self.watchdog.where = (step, None, t2)
        if self.backend.finite(self.exchange.buffer):  # NaN, Inf, or a norm past the dtype's
            self.optimizer.step()
            self.skips_in_a_row, counted = 0, n
        else:  # every rank holds the same sum, so every rank gets here, or none
            self.nonfinite(step, loss_sum / n)
            counted = 0  # a skipped step's loss is not the model's: left out of the means
        self.backend.synchronize()
        t3 = time.perf_counter_ns()
        self.totals.add(counted, loss_sum if counted else 0.0,
                        ((t1 - t0) + (t3 - t2)) / 1e9, (t2 - t1) / 1e9)  # fmt: skip
        if self.recorder is not None:
            # Straight into the step file, whose open frame holds the all-reduce's readings
            # already: raw clock readings, which netsim puts on one clock with the start-up
            # offsets. No dict, no copies: on the default job every 100 ns here is 0.2% of a step.
            self.recorder.commit(step, loss_sum / n, t0, t1, t2, t3)
        return t0, t1, t2, t3

    def local_gradient(self, step: int, ready=None) -> tuple[float, int]:
        """This rank's gradient of its rows of the step's batch, into the model's gradient
        buffer (which the all-reduce then sums, or stages); returns the rows' loss sum and
        count. ready(layer): called as backward finishes each layer (the buckets)."""
        xp, b = self.backend.xp, self.cfg.global_batch
        x, y = self.dataset.rows("train", self.batches.rows(step)[self.mine], self.dtype)
        if self.injection is not None and self.injection.kind == "nan":
            # NaN into the first layer's gradient once backward has written it, before its
            # bucket leaves (with overlap, the buckets of the layers above are in flight)
            first = self.model.grads[: self.model.layer_segments[0][1]]
            strike, rank, inner = self.injection.strike, self.world.rank, ready

            def ready(layer):
                if layer == 0:
                    strike(rank, step, first)
                if inner is not None:
                    inner(layer)

        loss_sum = self.model.loss_and_grad(xp.asarray(x), xp.asarray(y), 1.0 / b, ready)
        return loss_sum, len(y)

    def nonfinite(self, step: int, loss: float) -> None:
        """The averaged gradient is not finite: find whose local one was (recomputed: the
        weights have not moved), then stop (NonFinite) or skip the update."""
        self.local_gradient(step)
        mine = (self.backend.finite(self.model.grads), float(loss))
        seen = self.world.allgather(mine)
        bad = [r for r, (finite, _) in enumerate(seen) if not finite]
        if self.cfg.nonfinite == "skip":
            self.totals.skipped.append(step)
            self.skips_in_a_row += 1
            if self.skips_in_a_row < MAX_SKIPS_IN_A_ROW:
                return
        if self.cfg.nonfinite == "skip":
            raise NonFinite(
                f"step {step}: {MAX_SKIPS_IN_A_ROW} steps in a row had a non-finite gradient "
                "(--nonfinite skip): the weights themselves have diverged; a smaller --lr may "
                "avoid it"
            )
        losses = ", ".join(f"{seen[r][1]:.4g}" for r in bad)
        if len(bad) == 1:
            whose = f"rank {bad[0]}'s local gradient was not finite (its loss {losses})"
        elif bad:
            ranks = ", ".join(map(str, bad))
            whose = f"the local gradients of ranks {ranks} were not finite (losses {losses})"
        elif self.cfg.compression.method == "fp16":
            whose = (
                "every local gradient was finite: their float16 sum overflowed (--compress "
                "fp16: its largest value is 65504; bf16 keeps float32's range)"
            )
        else:
            whose = "every local gradient was finite: their sum overflowed"
        raise NonFinite(
            f"step {step}: the averaged gradient is not finite: {whose} (--nonfinite skip "
            "skips such steps; a smaller --lr may avoid them)"
        )

    # --- checks and evaluation ------------------------------------------------------------

    def weights_digest(self) -> int:
        host = (
            self.backend.xp.asnumpy(self.model.params) if self.backend.on_gpu else self.model.params
        )
        return digest(host)

    def verify_replicas(self, step: int) -> int:
        """Every rank compares a hash of its weights with everyone's; any difference is fatal."""
        digests = self.world.allgather_u64(self.weights_digest())
        bad = [r for r in range(self.world.world_size) if digests[r] != digests[0]]
        if bad:
            raise ReplicasDiverged(
                f"weights diverged after step {step}: rank{'s' * (len(bad) > 1)} "
                f"{', '.join(map(str, bad))} differ{'s' * (len(bad) == 1)} from rank 0"
            )
        return int(digests[0])

    def evaluate(self) -> tuple[float, float]:
        """Test accuracy and mean loss; each rank scores its slice of the test set."""
        ds, xp = self.dataset, self.backend.xp
        rows = np.arange(len(ds.y_test))[
            data.local_slice(len(ds.y_test), self.world.world_size, self.world.rank)
        ]
        total = self.world.sum_(score(self.model, ds, rows, xp, self.dtype))
        return total[0] / total[2], total[1] / total[2]
