"""PyTorch DDP's gradient buckets, the one plan that the step simulation and training share.

A *segment* is one of DDP's parameters: one tensor of gradients (a layer's weight, its
bias, a norm's scale; this project's MLP: each layer's W, then its b). DDP all-reduces the
gradients in buckets, each launched once all of its gradients are ready; its plan
(torch/csrc/distributed/c10d/reducer.cpp, compute_bucket_assignment_by_size, as
Reducer::rebuild_buckets calls it after the first iteration) is:

- the tensors in the order their gradients become ready: the reverse of registration for a
  model whose backward runs its layers in reverse (every sequential model);
- a tensor joins the open bucket, and the bucket closes once its size reaches the limit
  (bucket.size >= limit): so a bucket overshoots by at most its last tensor, and a tensor
  larger than the limit closes the bucket it joins (alone, when that bucket was empty);
- the limits are a list, advanced after each bucket closes and held at the last:
  [first_bucket_bytes_cap, bucket_bytes_cap] = [1 MiB (dist._DEFAULT_FIRST_BUCKET_BYTES),
  bucket_cap_mb = 25 MiB];
- what is left open at the end is the last bucket.

One dtype and one device here (DDP buckets each (dtype, device) apart), no sparse
gradients (DDP gives each its own bucket).
"""

from __future__ import annotations

from collections.abc import Sequence

MIB = 1 << 20
DEFAULT_CAP_BYTES = 25 * MIB  # DistributedDataParallel(bucket_cap_mb=25)
DEFAULT_FIRST_CAP_BYTES = 1 * MIB  # torch.distributed._DEFAULT_FIRST_BUCKET_BYTES


def plan(
    segment_bytes_in_order: Sequence[int],
    cap_bytes: int = DEFAULT_CAP_BYTES,
    first_cap_bytes: int | None = DEFAULT_FIRST_CAP_BYTES,
) -> list[list[int]]:
    """The buckets, in launch order, as lists of indices into segment_bytes_in_order, which
    lists the segments' sizes in bytes in the order their gradients become ready (for DDP
    on a sequential model: parameters in reverse order of registration). first_cap_bytes
    None: every bucket capped at cap_bytes. Every index appears once, in order."""
    if cap_bytes <= 0 or (first_cap_bytes is not None and first_cap_bytes <= 0):
        raise ValueError(f"bucket caps must be positive, got {first_cap_bytes}, {cap_bytes}")
    limits = [cap_bytes] if first_cap_bytes is None else [first_cap_bytes, cap_bytes]
    which, size, out, open_ = 0, 0, [], []
    for index, nbytes in enumerate(segment_bytes_in_order):
        if nbytes < 0:
            raise ValueError(f"segment {index} has {nbytes} bytes")
        open_.append(index)
        size += nbytes
        if size >= limits[which]:
            out.append(open_)
            open_, size = [], 0
            which = min(which + 1, len(limits) - 1)
    if open_:
        out.append(open_)
    return out


def ready_order(tensor_bytes_by_layer: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(layer, tensor) in the order their gradients become ready in a sequential backward:
    the last layer first and, in a layer, its tensors in reverse order of registration
    (DDP's reverse of model.parameters())."""
    return [
        (layer, t)
        for layer in range(len(tensor_bytes_by_layer) - 1, -1, -1)
        for t in range(len(tensor_bytes_by_layer[layer]) - 1, -1, -1)
    ]
