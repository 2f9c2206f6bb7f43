"""Downpour SGD (Dean et al., NIPS 2012): model replicas and parameter servers, --mode async.

Of W ranks the last S are servers and ranks 0..R-1 (R = W - S) are replicas. The flat
parameter buffer is cut into S balanced shards (netsim.algorithms.rounds.chunk_bounds);
server s holds shard s and its optimizer state. Every rank starts from the same weights
(the seed's), so no fetch is needed before the first step. A replica, without waiting for
any other replica, repeats: the gradient of its next batch on its own copy of the weights,
added to what it has not pushed yet; every n_push steps (and after its last) it PUSHES
that sum, shard s to server s; then every n_fetch steps (not after its last) it FETCHES
every shard (a 0-byte request, answered by the shard). A server answers whichever
replica's message is in, each replica's in the order sent: a fetch gets the shard as it
is, a push is applied at once by SGD or Adagrad. It waits on no one replica, so one that
stops (even halfway through a message) holds up no other until the run needs it too, at a
cut or at the end. Between fetches a replica keeps computing on its copy, as DistBelief's
did.

The data is the sequential run's, dealt round-robin: the run's G batches (--steps, or
--epochs times the steps of an epoch) are the batches one process would take, and replica
r takes batches r, r+R, r+2R, ... So with one replica and n_fetch = n_push = 1 every update
is the sequential run's (tests/allreduce_train/test_downpour.py holds them bit-identical);
with more, which weights each gradient was computed on depends on timing, and only that.

A server's staleness of a push: the updates its shard applied since that replica last
fetched it. Messages between two ranks keep their order (MPI's non-overtaking rule), so a
replica's DONE after its last push means every push of it has been applied; a server
stops once all R replicas are done.

A cut (a checkpoint every rank agrees on) falls where every replica has taken the same
steps and pushed them all; `cuts` says how the ranks agree on it without waiting meanwhile.

(Past 300 lines: the replica and the server are the two ends of one protocol, its tags and
its order, read together.)
"""

from __future__ import annotations

import math
import time
from collections import namedtuple

import numpy as np

from netsim.algorithms import downpour
from netsim.algorithms.rounds import chunk_bounds
from netsim.record import serverfile

from .. import exits
from ..guard.faults import Straggler
from ..maths import data, optim
from ..maths.model import MLP
from ..run.lifecycle import Totals
from .cuts import ASK, CUT, STOP, Asking, Coordinator

FETCH, PUSH, DONE = 7101, 7102, 7103  # tags: a replica's message says what it is
Label = namedtuple("Label", "phase index")  # a round label, as recorder.count reads it
_EMPTY = np.empty(0, dtype=np.uint8)


class Layout:
    """Who is what, and which batches are whose: the same on every rank."""

    def __init__(self, cfg, world_size: int, nparams: int, total_batches: int, first=None):
        """first: every replica's first step (a resumed run's: the checkpoint's), else 0."""
        self.replicas = world_size - cfg.servers
        self.servers = list(range(self.replicas, world_size))
        self.bounds = chunk_bounds(nparams, cfg.servers)
        self.total = total_batches
        self.fetch_every, self.push_every = cfg.fetch_every, cfg.push_every
        self.first = list(first) if first else [0] * self.replicas
        self.checkpoint_every = cfg.checkpoint_every
        self._align = math.lcm(cfg.fetch_every, cfg.push_every)
        self._cuts = (max(self.first), min(map(self.steps_of, range(self.replicas))))

    def steps_of(self, replica: int) -> int:
        """How many steps replica `replica` takes: the batches r, r+R, ... below the total."""
        return len(range(replica, self.total, self.replicas))

    def can_cut(self, done: int) -> bool:
        """Whether a cut may fall after every replica's first `done` steps: on a push and a
        fetch, after every replica's first step of this run and before its last."""
        return done % self._align == 0 and self._cuts[0] < done < self._cuts[1]

    def cuts_after(self, done: int) -> bool:
        """Whether --checkpoint-every asks for a cut after every replica's first `done`."""
        every = self.checkpoint_every
        return bool(every) and done % every == 0 and self.can_cut(done)

    def shard(self, server_rank: int) -> tuple[int, int]:
        s = server_rank - self.replicas
        return int(self.bounds[s]), int(self.bounds[s + 1])

    def pushes_after(self, step: int, steps: int) -> bool:
        return downpour.pushes_after(step, steps, self.push_every)

    def fetches_after(self, step: int, steps: int) -> bool:
        return downpour.fetches_after(step, steps, self.fetch_every)

    def record(self) -> dict:
        """What config.json records of the layout (netsim reads it)."""
        return {
            "replicas": self.replicas,
            "servers": self.servers,
            "shard_bounds": self.bounds.tolist(),
            # the steps each replica takes in this run (a resumed one: from its first on)
            "steps_by_replica": [self.steps_of(r) - self.first[r] for r in range(self.replicas)],
            "first_step_by_replica": self.first,
            "fetch_every": self.fetch_every,
            "push_every": self.push_every,
        }


def new_model(cfg, dataset, backend) -> MLP:
    widths = cfg.widths_for(dataset.nfeatures, dataset.nclasses)
    model = MLP(widths, cfg.activation, cfg.loss, backend.xp, np.dtype(cfg.dtype), backend.kernels)
    model.init(cfg.init_scheme, cfg.seed)
    return model


class Replica:
    """Rank r < R: its steps, each recorded into its step file with a push round and a
    fetch round where they fall (rounds ("push", 0) and ("fetch", 0))."""

    def __init__(self, cfg, rank: int, layout: Layout, backend, dataset, transport, dog):
        self.cfg, self.rank, self.layout = cfg, rank, layout
        self.backend, self.dataset, self.transport, self.dog = backend, dataset, transport, dog
        self.model = new_model(cfg, dataset, backend)
        self.dtype = self.model.dtype.type
        self.host_params = backend.host_mirror(self.model.params)
        backend.to_host(self.model.params, self.host_params)
        self.host_grads = backend.host_mirror(self.model.grads)
        self.pending = None if cfg.push_every == 1 else np.zeros_like(self.host_grads)
        pushed = self.host_grads if self.pending is None else self.pending
        b, servers = layout.bounds, layout.servers
        self.push_sends = [(s, pushed[b[i] : b[i + 1]]) for i, s in enumerate(servers)]
        self.fetch_sends = [(s, _EMPTY) for s in servers]
        self.fetch_recvs = [(s, self.host_params[b[i] : b[i + 1]]) for i, s in enumerate(servers)]
        push = (Label("push", 0), self.push_sends, [])
        fetch = (Label("fetch", 0), self.fetch_sends, self.fetch_recvs)
        self.messages = {(p, f): tuple(m for m, on in ((push, p), (fetch, f)) if on)
                         for p in (False, True) for f in (False, True)}  # fmt: skip
        self.steps = layout.steps_of(rank)
        self.first = self.done = layout.first[rank]  # steps taken: its first, then done
        self.cuts = Asking(layout, transport)
        self.batches = data.Batches(len(dataset.y_train), cfg.seed, cfg.global_batch)
        self.straggler = Straggler.of(cfg.straggler_spec, rank)
        self.recorder = None
        self.totals = Totals()
        self._bound = None  # the (push, fetch) pattern the recorder was last bound to

    def restore(self, params: np.ndarray) -> None:
        """Its weights become `params` (a checkpoint's, or the servers' at a cut)."""
        self.host_params[...] = params
        self.backend.from_host(self.host_params, self.model.params)

    def batch(self, step: int) -> int:
        """The run's batch number that step `step` of this replica takes."""
        return step * self.layout.replicas + self.rank

    def step(self, step: int) -> None:
        clock, cfg = time.perf_counter_ns, self.cfg
        t0 = clock()
        b = cfg.global_batch
        x, y = self.dataset.rows("train", self.batches.rows(self.batch(step)), self.dtype)
        xp = self.backend.xp
        loss_sum = self.model.loss_and_grad(xp.asarray(x), xp.asarray(y), 1.0 / b)
        self.backend.to_host(self.model.grads, self.host_grads)
        if self.straggler is not None:  # a deliberately slow replica: its compute takes longer
            self.straggler.slow(t0)
        inject = cfg.injection
        if inject is not None:
            inject.strike(self.rank, step, self.host_grads)
        grads = self.host_grads
        if not self.backend.finite(grads):
            raise exits.Fatal(
                exits.NONFINITE,
                f"replica {self.rank}'s gradient of its step {step} is not finite (its loss "
                f"{loss_sum / len(y):.4g}); a smaller --lr may avoid it",
            )
        if self.pending is not None:
            self.pending += grads
        steps = self.steps
        push, fetch = self.layout.pushes_after(step, steps), self.layout.fetches_after(step, steps)
        t1 = clock()
        rec = self.recorder
        if rec is not None:
            if (push, fetch) != self._bound:  # the recorder counts a step's messages anew
                rec.bind(self.messages[(push, fetch)])
                self._bound = (push, fetch)
            readings = rec.readings()
        k = 0
        if push or fetch:
            if rec is not None:
                readings[0] = t1
        if push:
            self.dog.where = (step, "the push", t1)
            self.transport.exchange(self.push_sends, [], PUSH)
            if self.pending is not None:
                self.pending[...] = 0
            k += 1
            if rec is not None:
                readings[k] = clock()
        if fetch:
            self.dog.where = (step, "the fetch", clock())
            self.transport.exchange(self.fetch_sends, self.fetch_recvs, FETCH)
            self.backend.from_host(self.host_params, self.model.params)
            k += 1
            if rec is not None:
                readings[k] = clock()
        t2 = clock()
        self.dog.where = (step, None, t2)
        self.totals.add(len(y), loss_sum, (t1 - t0) / 1e9, (t2 - t1) / 1e9)
        if rec is not None:
            readings = None  # a view of the step file's map, which the commit may grow
            rec.commit(step, loss_sum / len(y), t0, t1, t2, t2)
        self.done = step + 1

    def finish(self) -> None:
        """Every server hears that this replica is done (after its last push, in order)."""
        self.transport.exchange([(s, _EMPTY) for s in self.layout.servers], [], DONE)


class Server:
    """Rank R + s: shard s of the parameters and of the optimizer's state; answers every
    message until all replicas are done, each event into its server file. It waits on no
    one replica: a receive of any tag is posted from each (comm.Inbox), whichever message
    is in is answered, and a fetch's answer is a copy of the shard sent without waiting
    (the replica's to take when it will), so a replica that stops, even halfway through a
    message, holds up its own messages only."""

    def __init__(self, cfg, rank: int, layout: Layout, backend, dataset, transport, dog):
        self.cfg, self.rank, self.layout, self.transport, self.dog = (
            cfg, rank, layout, transport, dog)  # fmt: skip
        self.model = new_model(cfg, dataset, backend)  # the whole model: for the evaluation
        lo, hi = self.lo_hi = layout.shard(rank)
        host = backend.xp.asnumpy(self.model.params) if backend.on_gpu else self.model.params
        self.shard = np.array(host[lo:hi])
        self.grad = np.empty_like(self.shard)
        self.optimizer = optim.make(cfg, self.shard, self.grad, np, backend.threads)
        self.version = 0  # updates applied
        self.fetched_at = np.zeros(layout.replicas, dtype=np.int64)  # version at last fetch
        # every replica's fetches and pushes so far (resumed: on the rule's grid before it)
        first = np.array(layout.first, dtype=np.int64)
        self.counts = np.stack([first // layout.fetch_every, first // layout.push_every])
        self.busy_s = 0.0
        self.log = None  # a serverfile.ServerLog, or None (--no-record)
        self.cuts = Coordinator(rank, layout, transport)
        # what each sender's message comes into: a push, or ASK's and STOP's two integers
        senders = [*range(layout.replicas), *(layout.servers[1:] if self.cuts.is_first else ())]
        self.inbound = {src: np.zeros(max(self.shard.nbytes, 16), np.uint8) for src in senders}
        self.inbox = None  # the receives, posted when it first serves
        self.replies = {}  # replica -> (the copy it fetched, the wait for its send)

    def restore(self, state: dict) -> None:
        """Its shard of a checkpoint's parameters and optimizer state."""
        lo, hi = self.lo_hi
        self.shard[...] = state["params"][lo:hi]
        for name, array in self.optimizer.state.items():
            array[...] = state[name][lo:hi]

    def serve(self, stops) -> bool:
        """Every message in turn until all replicas are done (False) or have cut (True)."""
        clock, replicas, agree = time.perf_counter_ns, self.layout.replicas, self.cuts
        if self.inbox is None:
            self.inbox = self.transport.inbox(self.inbound)
        inbox = self.inbox
        while len(agree.finished) < replicas:
            agree.caught(stops.flag)  # a signal here: server 0 hears of it
            self.dog.where = (None, "waiting for the replicas", clock())
            src, tag, nbytes = inbox.next()
            t_recv = clock()
            self.dog.where = (None, None, t_recv)
            message = self.inbound[src][:nbytes]
            if tag == FETCH:
                inbox.again(src)
                self.reply(src)
                self.fetched_at[src] = self.version
                kind, staleness = serverfile.FETCH, 0
            elif tag == PUSH:
                if nbytes != self.grad.nbytes:
                    raise RuntimeError(f"server {self.rank}: a push of {nbytes} bytes from {src}")
                self.grad[...] = message.view(self.grad.dtype)
                inbox.again(src)
                staleness = self.version - int(self.fetched_at[src])
                self.optimizer.step()
                kind = serverfile.PUSH
                self.version += 1
            elif tag == DONE:  # (its last message: its receive is not posted again)
                agree.done(src)
                continue
            elif tag in (CUT, ASK, STOP):  # the cut's agreement
                numbers = message.view(np.int64).copy()
                inbox.again(src)
                if agree.receive(src, tag, numbers):  # every replica at the cut, pushes applied
                    self.dog.where = (None, None, clock())
                    return True
                continue
            else:
                raise RuntimeError(f"server {self.rank}: a message of tag {tag} from rank {src}")
            t_done = clock()
            self.busy_s += (t_done - t_recv) / 1e9
            index = int(self.counts[kind, src])
            self.counts[kind, src] += 1
            if self.log is not None:
                version = self.version - (kind == serverfile.PUSH)
                self.log.log(kind, src, index, version, staleness, t_recv, t_done)
        self.dog.where = (None, None, clock())
        return False

    def reply(self, replica: int) -> None:
        """The shard as it is now, to `replica`, not waited for: a copy, as the shard changes
        with the next push. Its previous answer was taken before it asked again."""
        copy, wait = self.replies.get(replica, (None, None))
        if wait is not None:
            wait()
        copy = np.empty_like(self.shard) if copy is None else copy
        copy[...] = self.shard
        self.replies[replica] = (copy, self.transport.isend([(replica, copy)], FETCH))

    def close(self, patience_s: float = 1.0) -> None:
        """The run ends: the receives no message came for cancelled, the answers' sends
        completed (taken before their replicas' DONE or CUT; should the run end otherwise,
        one to a stopped replica is left after patience_s)."""
        if self.inbox is not None:
            self.inbox.close(patience_s)
            self.inbox = None
        for _, wait in self.replies.values():
            wait(patience_s)
        self.replies = {}
