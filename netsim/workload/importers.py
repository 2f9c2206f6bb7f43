"""Workloads from elsewhere: ASTRA-sim 1.0 and SimAI workload files, our own run
directories, and a PyTorch module (torch optional).

ASTRA-sim 1.0 (and SimAI, which extends its header): a text file whose first line is the
parallelism (DATA, HYBRID_TRANSFORMER, ...; SimAI adds `key: value` pairs after it), the
second the number of layers, then one line per layer of at least 12 fields: name,
reserved, forward compute, forward collective, its bytes, input-gradient compute, its
collective and bytes, weight-gradient compute, its collective and bytes, and the update's
delay. Compute is in cycles (ASTRA-sim's tick, 1 ns at its 1 GHz default: cycle_s), sizes
in bytes. Data parallelism is the weight-gradient ALLREDUCE: its bytes over the gradient's
itemsize are the layer's parameters; the forward and input-gradient collectives (model
parallelism) are not modelled here and are counted in the workload's source line.

A run directory of ours: the MLP of config.json (layer l: W of widths[l] x widths[l+1]
and b, as allreduce_train's flat buffer holds them) with the measured compute, the median
over steps and ranks of each step's compute_s, split over the layers by their FLOPs
(forward 2ab, backward 4ab per sample), at the run's per-rank batch.

A PyTorch module (from_torch; netsim.workload.catalog finds one that the command line
names): a forward or backward of the user's that fails is one line naming it (InputError,
the user's exception its cause); what ours raises keeps its traceback.
"""

from __future__ import annotations

import math
import statistics

from netsim.errors import InputError
from netsim.record import rundir

from .workload import ITEMSIZE, Layer, Workload, WorkloadError

ASTRA_PARALLELISM = ("DATA", "HYBRID", "MODEL", "MICRO", "TRANSFORMER")
ASTRA_COLLECTIVES = ("NONE", "ALLREDUCE", "ALLGATHER", "REDUCESCATTER", "ALLTOALL")


def is_astra(path: str) -> bool:
    try:
        with open(path, errors="replace") as f:
            first = f.readline().split()
    except OSError:
        return False
    return bool(first) and first[0].upper().startswith(ASTRA_PARALLELISM)


def from_astra(path: str, dtype: str = "float32", cycle_s: float = 1e-9) -> Workload:
    name = path.rsplit("/", 1)[-1]
    try:
        with open(path, errors="replace") as f:
            lines = [line.split() for line in f if line.strip()]
    except OSError as exc:
        raise WorkloadError(f"cannot read workload {path}: {exc.strerror or exc}") from None

    def bad(lineno: int, problem: str) -> WorkloadError:
        return WorkloadError(f"{name} line {lineno}: {problem}")

    if len(lines) < 2:
        raise bad(1, "an ASTRA-sim workload has a parallelism line, a layer count and layers")
    try:
        count = int(lines[1][0])
    except ValueError:
        raise bad(2, f"the layer count must be an integer, got {lines[1][0]!r}") from None
    if count < 1 or len(lines) - 2 != count:
        raise bad(2, f"the file says {count} layers and has {len(lines) - 2} layer lines")
    itemsize = ITEMSIZE[dtype]
    layers, foreign = [], 0
    for i, fields in enumerate(lines[2:], start=3):
        if len(fields) < 12:
            raise bad(i, f"a layer has at least 12 fields, got {len(fields)}")
        try:
            fwd, ig, wg = (float(fields[k]) for k in (2, 5, 8))
            sizes = [int(fields[k]) for k in (4, 7, 10)]
        except ValueError:
            raise bad(i, "compute times and sizes must be numbers") from None
        kinds = [fields[k].upper() for k in (3, 6, 9)]
        for kind in kinds:
            if kind not in ASTRA_COLLECTIVES:
                raise bad(i, f"unknown collective {kind!r} ({', '.join(ASTRA_COLLECTIVES)})")
        if min(fwd, ig, wg) < 0 or min(sizes) < 0:
            raise bad(i, "compute times and sizes must not be negative")
        foreign += sum(1 for k, s in zip(kinds[:2], sizes[:2]) if k != "NONE" and s > 0)
        grad = sizes[2] if kinds[2] == "ALLREDUCE" else 0
        if kinds[2] not in ("NONE", "ALLREDUCE") and sizes[2] > 0:
            foreign += 1
        if grad % itemsize:
            raise bad(i, f"the gradient's {grad} bytes are not whole {dtype} elements")
        tensors = (grad // itemsize,) if grad else ()
        layers.append(
            Layer(fields[0], tensors, forward_s=fwd * cycle_s, backward_s=(ig + wg) * cycle_s)
        )
    note = f"; {foreign} model-parallel collectives not modelled" if foreign else ""
    source = f"ASTRA-sim/SimAI workload {name} ({' '.join(lines[0][:1])}){note}"
    return Workload(name, tuple(layers), dtype=dtype, source=source)


def from_run_dir(path: str) -> Workload:
    config, records, _ = rundir.load(path)
    widths = config.get("layers")
    if not widths or "downpour" in config:
        raise WorkloadError(f"{path}: not a sync run of the MLP (no layers in config.json)")
    computes = [r["compute_s"] for rank in records for r in rank]
    if not computes:
        raise WorkloadError(f"{path}: no step recorded, so no measured compute")
    step_s = statistics.median(computes)
    p = config["world_size"]
    batch = max(1, config["config"].get("global_batch", p) // p)
    dtype = config["config"].get("dtype", "float32")
    pairs = list(zip(widths, widths[1:]))
    total = sum(6 * a * b for a, b in pairs)
    layers = tuple(
        Layer(
            f"layer{i} ({a}x{b})",
            (a * b, b),
            forward_s=step_s * 2 * a * b / total,
            backward_s=step_s * 4 * a * b / total,
        )
        for i, (a, b) in enumerate(pairs)
    )
    return Workload(
        f"mlp {'-'.join(map(str, widths))}",
        layers,
        dtype=dtype,
        batch=batch,
        source=f"run {path}: median compute {step_s * 1e3:.3f} ms per step at {batch} per rank",
    )


def import_torch():
    try:
        import torch
    except ImportError:
        raise InputError("a PyTorch workload needs torch (pip install torch)") from None
    return torch


def one_line(exc: BaseException) -> str:
    """An exception of the user's code as one short line: its type and first line."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def from_torch(module, example=None, batch: int = 1, measure: bool = False, repeat: int = 5):
    """A PyTorch module's layers: every submodule owning parameters, in the order
    module.parameters() lists them (DDP's parameters), each tensor one segment. Compute:
    with an example input (a batch of `batch` samples), FLOPs of convolutions and linear
    layers from the output shapes a forward pass shows (2 x weights x output positions per
    sample); with measure, the forward and backward of that batch timed on its device
    (median of `repeat`) and split over the layers by those FLOPs. Without an example,
    2 x weights per sample (one position per weight: exact for an MLP). A forward or
    backward that fails raises InputError, the user's exception its cause."""
    torch = import_torch()
    kind = type(module).__name__
    owners, seen = [], set()
    for name, sub in module.named_modules():
        own = [p for p in sub.parameters(recurse=False) if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            owners.append((name or kind, sub, own))
    if not owners:
        raise InputError(f"PyTorch {kind} has no parameters to train, so no gradient")
    shapes = {}
    if example is not None:
        hooks = [
            sub.register_forward_hook(
                lambda m, i, out, key=key: shapes.__setitem__(key, _shape(out))
            )
            for key, (_, sub, _) in enumerate(owners)
        ]
        try:
            with torch.no_grad():
                _run(f"the forward of {kind}", example, module, example)
        finally:
            for h in hooks:
                h.remove()
    flops = []
    for key, (_, sub, _own) in enumerate(owners):
        weight = getattr(sub, "weight", None)
        matmul = isinstance(sub, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))
        n = weight.numel() if matmul and weight is not None else 0
        flops.append(2.0 * n * _positions(sub, shapes.get(key), batch))
    if measure:
        if example is None:
            raise InputError("measuring a PyTorch model's compute needs an example input")
        fwd_s, bwd_s = _time(torch, module, example, repeat)
        total = sum(flops) or 1.0
        layers = [
            Layer(
                n,
                tuple(p.numel() for p in own),
                forward_s=fwd_s * f / total,
                backward_s=bwd_s * f / total,
            )
            for (n, _, own), f in zip(owners, flops)
        ]
    else:
        layers = [
            Layer(n, tuple(p.numel() for p in own), forward_flops=f)
            for (n, _, own), f in zip(owners, flops)
        ]
    dtype = {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(
        owners[0][2][0].dtype, "float32"
    )
    return Workload(kind, tuple(layers), dtype=dtype, batch=batch, source=f"PyTorch {kind}")


def _run(what: str, example, call, *args):
    """call(*args), the user's forward or backward: what it raises is one line naming it."""
    try:
        return call(*args)
    except Exception as exc:
        shape = tuple(getattr(example, "shape", ()))
        raise InputError(f"{what} on an input of shape {shape} failed: {one_line(exc)}") from exc


def _shape(out):
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return tuple(out.shape) if hasattr(out, "shape") else None


def _positions(module, shape, batch: int) -> int:
    """Output positions per sample of a layer: elements per sample over output features
    (channels, dimension 1, of a convolution; the last dimension of anything else)."""
    if shape is None or len(shape) < 2:
        return 1
    per_sample = math.prod(shape) // max(batch, 1)
    conv = type(module).__name__.startswith(("Conv", "LazyConv"))
    features = shape[1] if conv else shape[-1]
    return max(1, per_sample // max(features, 1))


def _time(torch, module, example, repeat: int) -> tuple[float, float]:
    import time

    sync = torch.cuda.synchronize if example.is_cuda else (lambda: None)
    kind = type(module).__name__
    forward, backward = [], []
    for _ in range(repeat + 1):  # the first warms up
        sync()
        t0 = time.perf_counter()
        out = _run(f"the forward of {kind}", example, module, example)
        out = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise InputError(f"{kind}'s output is not a tensor with a gradient: nothing to time")
        loss = out.float().sum()
        sync()
        t1 = time.perf_counter()
        _run(f"the backward of {kind}", example, loss.backward)
        sync()
        t2 = time.perf_counter()
        forward.append(t1 - t0)
        backward.append(t2 - t1)
        module.zero_grad(set_to_none=True)
    return statistics.median(forward[1:]), statistics.median(backward[1:])
