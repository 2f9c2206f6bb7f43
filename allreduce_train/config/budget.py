"""Memory a configuration needs, estimated before anything is allocated, so that a width or
a dataset too large for the node is one line at start instead of a MemoryError (or the OOM
killer, after a minute of swapping) mid-run."""

from __future__ import annotations

import os

from ..exits import UsageError
from ..maths import model
from .config import DEFAULT_HIDDEN, Config

# (samples, features, classes, bytes a value) of the datasets that come in a known size
KNOWN = {
    "digits": (1797, 64, 10, 8),
    "mnist": (70000, 784, 10, 1),
    "fashion-mnist": (70000, 784, 10, 1),
}
MODEL_COPIES = 3  # params, grads, the all-reduce's scratch (up to a buffer); + velocity or sum_sq
ACTIVATION_COPIES = 3  # pre-activations, activations, their gradients


def rank_bytes(cfg: Config, world_size: int) -> int:
    """What one rank holds in host memory: its dataset, its model with the optimizer's state
    (and, on a GPU, the gradient's host mirror), and the activations of its share of the
    batch. (A GPU's own memory is not checked here.)"""
    if cfg.dataset == "synthetic":
        samples = cfg.samples + max(1, round(cfg.samples * cfg.test_fraction))
        features, classes, item = cfg.features, cfg.classes, 4
    elif cfg.dataset == "xor":  # --samples rows of two uint8 features, and the four points
        samples, features, classes, item = cfg.samples + 4, 2, 2, 1
    else:
        samples, features, classes, item = KNOWN[cfg.dataset]
    widths = cfg.layers or (features, *DEFAULT_HIDDEN, classes)
    nparams = model.nparams(widths)
    itemsize = 8 if cfg.dtype == "float64" else 4
    rows = -(-cfg.global_batch // world_size)
    return (
        samples * (features * item + 8)
        + (
            MODEL_COPIES
            + (cfg.momentum_value > 0 or cfg.optimizer == "adagrad")
            + (cfg.device == "gpu")
        )
        * nparams
        * itemsize
        + ACTIVATION_COPIES * rows * sum(widths) * itemsize
    )


def available_bytes() -> int:
    """MemAvailable (Linux), else all physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check(cfg: Config, world_size: int, local_size: int, available: int | None = None) -> None:
    """UsageError when the ranks on this node would need more memory than it has free."""
    per_rank = rank_bytes(cfg, world_size)
    need, have = per_rank * local_size, available_bytes() if available is None else available
    if need > have:
        gib = 2**30
        raise UsageError(
            f"this configuration needs about {need / gib:.1f} GiB on this node ({local_size} "
            f"rank{'s' * (local_size > 1)} x {per_rank / gib:.1f} GiB: data, model with its "
            f"optimizer state, activations), more than the {have / gib:.1f} GiB available"
        )
