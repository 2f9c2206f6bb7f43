"""SGD (optional momentum) and Adagrad, both with weight decay, in place on the flat buffer.

The update follows PyTorch's SGD (Sutskever et al. 2013 form of momentum):
    g <- g + weight_decay * p
    v <- momentum * v + g          (v starts at zero; skipped when momentum is 0)
    p <- p - lr * v
Adagrad (Duchi et al. 2011; the servers' optimizer of DistBelief's Downpour), as PyTorch's
with its defaults (no learning-rate decay, the sum starting at 0, eps 1e-10):
    g <- g + weight_decay * p;  s <- s + g*g;  p <- p - lr * g / (sqrt(s) + eps)
`state` names an optimizer's arrays (what a checkpoint keeps). Every operation writes into
an existing buffer, so a step allocates nothing: with a 7 MB model a temporary per
operation would be a fresh page-faulted 7 MB each time.

On NumPy the update runs on the cores the rank owns (`threads`, the backend's share): the
buffers are cut once into that many contiguous slices, and each slice is updated by its own
thread (NumPy's ufuncs release the GIL), the calling thread taking the first. Every element
sees the same operations in the same order, so the result is bit-identical whatever the
thread count. Below MIN_PER_THREAD elements a slice is not worth a thread's wake-up.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

MIN_PER_THREAD = 1 << 16  # elements; a 256 KiB float32 slice takes ~20 us, a wake-up ~10 us


class _Sliced:
    """Runs an update on `threads` slices of equal-length flat buffers at once."""

    def __init__(self, xp, n: int, threads: int):
        threads = max(1, min(threads, n // MIN_PER_THREAD)) if xp.__name__ == "numpy" else 1
        cuts = [n * k // threads // 64 * 64 for k in range(threads)] + [n]  # cache-line aligned
        self.slices = [slice(lo, hi) for lo, hi in zip(cuts, cuts[1:])]
        self.pool = ThreadPoolExecutor(threads - 1, "optimizer") if threads > 1 else None

    def views(self, *arrays):
        """Per slice, the tuple of each array's view (None stays None)."""
        return [tuple(None if a is None else a[s] for a in arrays) for s in self.slices]

    def run(self, update, parts) -> None:
        if self.pool is None:
            update(*parts[0])
            return
        futures = [self.pool.submit(update, *part) for part in parts[1:]]
        update(*parts[0])
        for f in futures:
            f.result()  # an exception in a slice is raised here, with its traceback


class SGD:
    def __init__(
        self,
        params,
        grads,
        xp,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        threads: int = 1,
    ):
        self.params, self.grads, self.xp = params, grads, xp
        self.lr, self.momentum, self.weight_decay = (
            params.dtype.type(v) for v in (lr, momentum, weight_decay)
        )
        self.velocity = xp.zeros_like(params) if momentum else None
        self.scratch = xp.empty_like(params)
        self.state = {} if self.velocity is None else {"velocity": self.velocity}
        self.sliced = _Sliced(xp, params.size, threads)
        self.parts = self.sliced.views(params, grads, self.velocity, self.scratch)

    def step(self) -> None:
        self.sliced.run(self._update, self.parts)

    def _update(self, p, g, v, scratch) -> None:
        xp = self.xp
        if self.weight_decay:
            g += xp.multiply(p, self.weight_decay, out=scratch)
        if v is not None:
            v *= self.momentum
            v += g
            g = v
        p -= xp.multiply(g, self.lr, out=scratch)


class Adagrad:
    EPS = 1e-10

    def __init__(self, params, grads, xp, lr: float, weight_decay: float = 0.0, threads: int = 1):
        self.params, self.grads, self.xp = params, grads, xp
        self.lr, self.weight_decay = (params.dtype.type(v) for v in (lr, weight_decay))
        self.sum_sq = xp.zeros_like(params)
        self.scratch = xp.empty_like(params)
        self.state = {"sum_sq": self.sum_sq}
        self.sliced = _Sliced(xp, params.size, threads)
        self.parts = self.sliced.views(params, grads, self.sum_sq, self.scratch)

    def step(self) -> None:
        self.sliced.run(self._update, self.parts)

    def _update(self, p, g, sum_sq, scratch) -> None:
        xp = self.xp
        if self.weight_decay:
            g += xp.multiply(p, self.weight_decay, out=scratch)
        sum_sq += xp.multiply(g, g, out=scratch)
        xp.sqrt(sum_sq, out=scratch)
        scratch += p.dtype.type(self.EPS)
        xp.divide(g, scratch, out=scratch)
        p -= xp.multiply(scratch, self.lr, out=scratch)


def make(cfg, params, grads, xp, threads: int = 1):
    """The optimizer the configuration names, on these buffers (a whole model or a shard),
    its element-wise update on `threads` cores."""
    if cfg.optimizer == "adagrad":
        return Adagrad(params, grads, xp, cfg.lr, cfg.weight_decay, threads)
    return SGD(params, grads, xp, cfg.lr, cfg.momentum_value, cfg.weight_decay, threads)
