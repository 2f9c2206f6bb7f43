"""One data-parallel training step of a workload on a modelled cluster, bucket by bucket.

Every rank runs the same layers on its own micro-batch. With gradient accumulation (K
micro-steps per step, DDP's no_sync on all but the last) the first K - 1 forward and
backward passes all-reduce nothing. In the last, the forward runs its layers, then the
backward runs them in reverse; a layer's gradients are ready when its backward ends. The
gradients go into PyTorch DDP's buckets (netsim.workload.buckets.plan: the plan training
uses) in the order they become ready, and a bucket's all-reduce is issued once all of its
gradients are: at that moment, or when the bucket before it has finished, since NCCL runs
one communicator's calls one after another on its stream. With overlap off, every bucket
waits for the backward's end (as a training loop that all-reduces after backward does).
That rule alone is `stream`, which `netsim replay` also runs a recorded run's buckets
through (netsim.sim.predict.replay_buckets).

A bucket's all-reduce takes what the collectives' model says for its bytes on these ranks:
NCCL's own model on a GPU topology (netsim.sim.nccl: the algorithm and protocol NCCL would
pick), the simulator on a calibrated machine (netsim.sim.predict with the algorithm asked
for: the same figure `predict --params` gives). Each bucket's time is the collective alone
on the network (the buckets do not overlap one another).

The figures (defined once, docs/ARCHITECTURE.md, "Definitions"): compute, the step's
forward and backward passes; step, the last rank's end of its last all-reduce or of its
compute, whichever is later; exposed communication, step - compute (the part of the step
in which the rank's compute waits on communication); hidden communication, the
all-reduces' busy time (the sum of their times) minus the exposed part: what ran under
compute. Not modelled: the optimizer's update, the data loader, the copies into and out of
DDP's buckets, and compute slowed by the NCCL kernels running beside it (they share the
GPU's memory bandwidth and SMs): each makes the real step longer than this one.
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.algorithms import Algorithm
from netsim.errors import InputError
from netsim.workload import buckets as bucket_plan
from netsim.workload.workload import ITEMSIZE, Workload

from . import nccl
from . import predict as prediction


@dataclass
class Timer:
    """A bucket's all-reduce time by its bytes, each size computed once."""

    topology: object
    ranks: int
    how: str  # "nccl" or "simulate"
    algorithm: Algorithm | None = None
    itemsize: int = 4
    channels: int | None = None
    chunks: int = 1

    def __post_init__(self):
        self._seen: dict[int, float] = {}

    @property
    def label(self) -> str:
        if self.ranks == 1:
            return "none (one rank)"
        if self.how == "nccl":
            return f"{nccl.library(self.topology)}'s model"
        return f"simulated {self.algorithm.name}"

    def __call__(self, nbytes: int) -> float:
        if self.ranks == 1 or nbytes == 0:
            return 0.0
        if nbytes not in self._seen:
            self._seen[nbytes] = self._time(nbytes)
        return self._seen[nbytes]

    def _time(self, nbytes: int) -> float:
        if self.how == "nccl":
            return nccl.estimates(self.topology, self.ranks, nbytes, channels=self.channels)[
                0
            ].time_s
        nelems = -(-nbytes // self.itemsize)
        out = prediction.predict(
            self.topology,
            self.algorithm,
            self.ranks,
            nelems,
            self.itemsize,
            channels=self.channels,
            chunks=self.chunks,
        )
        return out["allreduce_time_s_median"]


def collectives(topology, how: str = "auto") -> str:
    """auto: NCCL's model on a GPU topology (one with `gpu`, not calibrated), else the
    simulator."""
    if how != "auto":
        if how == "nccl" and topology.spec.get("gpu") is None:
            raise InputError(
                f'--collectives nccl needs a topology with a gpu; "{topology.name}" has none'
            )
        return how
    gpu = topology.spec.get("gpu") is not None and "compute" not in topology.spec
    return "nccl" if gpu else "simulate"


def compute_times(workload: Workload, gpu=None, efficiency=None, step_s=None):
    """(forward, backward) per layer for one micro-step; step_s: the measured single-GPU
    forward + backward of a micro-step, which the layers' times are scaled to (keeping
    their shares)."""
    rate = None
    by_flops = all(layer.forward_s is None for layer in workload.layers)
    if step_s is not None and by_flops and workload.peak_flops(gpu) is None:
        rate = 1e12  # no device: the FLOPs' shares alone, scaled to step_s below
    forward, backward = workload.times(gpu, efficiency, rate)
    if step_s is not None:
        total = sum(forward) + sum(backward)
        if total <= 0:
            raise InputError(f"workload {workload.name!r} has no compute to scale to --step-ms")
        forward = [f * step_s / total for f in forward]
        backward = [b * step_s / total for b in backward]
    return forward, backward


def stream(
    ready: list[float], took: list[float], backward_end: float, overlap: bool = True, free=0.0
) -> list[tuple[float, float, float]]:
    """The buckets' all-reduces on the one stream, in launch order: bucket k is issued at
    ready[k] (with overlap off, at backward_end) or when bucket k - 1 ends, whichever is
    later, and takes took[k]; free: when the stream is first free. (ready, start, end) of
    each. The workload's step below and the replay of a recorded run (netsim.sim.predict)
    both run their buckets through it."""
    out = []
    for r, t in zip(ready, took):
        r = r if overlap else backward_end
        begin = max(r, free)
        free = begin + t
        out.append((r, begin, free))
    return out


def step(
    workload: Workload,
    timer: Timer,
    forward: list[float],
    backward: list[float],
    grad_dtype: str | None = None,
    cap_bytes: int | None = bucket_plan.DEFAULT_CAP_BYTES,
    first_cap_bytes: int | None = bucket_plan.DEFAULT_FIRST_CAP_BYTES,
    overlap: bool = True,
    accumulate: int = 1,
) -> dict:
    """One step. cap_bytes None: the whole gradient in one bucket (no bucketing)."""
    dtype = grad_dtype or workload.dtype
    itemsize = ITEMSIZE[dtype]
    layers = workload.layers
    f_s, b_s = sum(forward), sum(backward)
    start = (accumulate - 1) * (f_s + b_s)  # the micro-steps that all-reduce nothing
    # a layer's gradients are ready when its backward ends; the last layer's first
    ready_of_layer = [0.0] * len(layers)
    t = start + f_s
    for i in range(len(layers) - 1, -1, -1):
        t += backward[i]
        ready_of_layer[i] = t
    compute_end = t
    order = bucket_plan.ready_order([layer.tensors for layer in layers])
    sizes = [layers[i].tensors[k] * itemsize for i, k in order]
    if cap_bytes is None:
        plan = [list(range(len(order)))] if order else []
    else:
        plan = bucket_plan.plan(sizes, cap_bytes, first_cap_bytes)
    nbytes = [sum(sizes[m] for m in members) for members in plan]
    took = [timer(n) for n in nbytes]
    ready = [ready_of_layer[order[members[-1]][0]] for members in plan]
    on_stream = stream(ready, took, compute_end, overlap, start)
    rows = [
        {
            "bucket": index,
            "bytes": nbytes[index],
            "tensors": len(members),
            "layers": [layers[order[members[-1]][0]].name, layers[order[members[0]][0]].name],
            "ready_s": ready_s,
            "start_s": begin,
            "end_s": end,
            "allreduce_s": took[index],
        }
        for index, (members, (ready_s, begin, end)) in enumerate(zip(plan, on_stream))
    ]
    compute_s = accumulate * (f_s + b_s)
    step_s = max(compute_end, on_stream[-1][2] if on_stream else start)
    busy = sum(r["allreduce_s"] for r in rows)
    exposed = step_s - compute_s
    p = timer.ranks
    samples = accumulate * workload.batch
    return {
        "workload": workload.name,
        "source": workload.source,
        "params": workload.params,
        "gradient_dtype": dtype,
        "gradient_bytes": sum(sizes),
        "batch_per_gpu": workload.batch,
        "accumulate": accumulate,
        "world_size": p,
        "topology": timer.topology.name,
        "collectives": timer.label,
        "bucket_cap_bytes": cap_bytes,
        "first_bucket_cap_bytes": first_cap_bytes if cap_bytes is not None else None,
        "overlap": overlap,
        "forward_s": accumulate * f_s,
        "backward_s": accumulate * b_s,
        "compute_s": compute_s,
        "step_time_s": step_s,
        "exposed_comm_s": exposed,
        "hidden_comm_s": max(0.0, busy - exposed),  # 0, not -1e-17, when nothing is hidden
        "comm_busy_s": busy,
        "samples_per_s": samples * p / step_s if step_s > 0 else None,
        "single_gpu_samples_per_s": samples / compute_s if compute_s > 0 else None,
        "scaling_efficiency": compute_s / step_s if step_s > 0 else 1.0,
        "buckets": rows,
    }
