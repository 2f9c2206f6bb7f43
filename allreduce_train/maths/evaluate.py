"""How a replica's weights are judged: scored on test rows, and hashed so that ranks can
compare their replicas without sending them."""

from __future__ import annotations

import hashlib

import numpy as np

from .data import Dataset
from .model import MLP


def score(model: MLP, dataset: Dataset, rows, xp, dtype) -> np.ndarray:
    """[correct, loss sum, count] of the model on the test rows `rows`."""
    x, y = dataset.rows("test", rows, dtype)
    logits = model.forward(xp.asarray(x))
    loss, _ = model.loss(logits, xp.asarray(y))
    correct = int((model.classify(logits) == xp.asarray(y)).sum())
    return np.array([correct, loss, len(y)], dtype=np.float64)


def digest(host: np.ndarray) -> int:
    """A 64-bit hash of an array's bytes: equal weights, equal digests."""
    return int.from_bytes(
        hashlib.blake2b(memoryview(host).cast("B"), digest_size=8).digest(), "little"
    )
