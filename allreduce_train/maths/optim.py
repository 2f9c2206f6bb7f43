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
buffers are cut once into that many contiguous slices, each updated by its own thread
(NumPy's ufuncs release the GIL), the calling thread taking the first; and each slice is
walked in blocks of BLOCK elements, every operation of the update done on one block before
the next, so the arrays of a block stay in the core's cache between operations (the
temporary too: one block-sized scratch per thread). Measured on the 1.86 M-parameter MLP:
SGD with momentum 3.2 ms in whole-array passes, 2.4 ms in blocks of 64 Ki (bench/optimizer.py
has the figures against PyTorch). Every element sees the same operations in the same order,
so the result is bit-identical whatever the thread count or block size. Below
MIN_PER_THREAD elements a slice is not worth a thread's wake-up. CuPy: the whole update in
one fused kernel on the whole buffer (allreduce_train.maths.kernels; the GPU has no use for the
blocks), or without the kernels one kernel per operation.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

MIN_PER_THREAD = 1 << 16  # elements; a 256 KiB float32 slice takes ~20 us, a wake-up ~10 us
BLOCK = 1 << 16  # elements: four float32 arrays of a block (1 MiB) fit a core's L2 here


class _Blocks:
    """Runs an update over flat buffers the length of `like`: `threads` slices at once, each
    slice block by block, with a block-sized scratch array of its own."""

    def __init__(self, xp, like, threads: int):
        numpy, n = xp.__name__ == "numpy", like.size
        threads = max(1, min(threads, n // MIN_PER_THREAD)) if numpy else 1
        cuts = [n * k // threads // 64 * 64 for k in range(threads)] + [n]  # cache-line aligned
        block = BLOCK if numpy else max(n, 1)
        self.blocks = [
            [slice(i, min(i + block, hi)) for i in range(lo, hi, block)]
            for lo, hi in zip(cuts, cuts[1:])
        ]
        self.scratch = [xp.empty(min(block, hi - lo), like.dtype) for lo, hi in zip(cuts, cuts[1:])]
        self.pool = ThreadPoolExecutor(threads - 1, "optimizer") if threads > 1 else None

    @property
    def slices(self) -> list[slice]:
        """Each thread's part of the buffers."""
        return [slice(b[0].start, b[-1].stop) for b in self.blocks]

    def views(self, *arrays):
        """Per thread, per block: each array's view (None stays None), then the scratch's."""
        return [
            [
                (*(None if a is None else a[b] for a in arrays), scratch[: b.stop - b.start])
                for b in blocks
            ]
            for blocks, scratch in zip(self.blocks, self.scratch)
        ]

    def run(self, update, parts) -> None:
        def walk(blocks):
            for block in blocks:
                update(*block)

        if self.pool is None:
            walk(parts[0])
            return
        futures = [self.pool.submit(walk, part) for part in parts[1:]]
        walk(parts[0])
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
        kernels=None,
    ):
        self.params, self.grads, self.xp = params, grads, xp
        self.lr, self.momentum, self.weight_decay = (
            params.dtype.type(v) for v in (lr, momentum, weight_decay)
        )
        self.velocity = xp.zeros_like(params) if momentum else None
        self.state = {} if self.velocity is None else {"velocity": self.velocity}
        self.kernels = kernels
        if kernels is None:  # (the fused kernel needs no slices, nor their scratch)
            self.sliced = _Blocks(xp, params, threads)
            self.parts = self.sliced.views(params, grads, self.velocity)

    def step(self) -> None:
        k, p, g = self.kernels, self.params, self.grads
        if k is None:
            self.sliced.run(self._update, self.parts)
        elif self.velocity is None:
            k.sgd(g, self.lr, self.weight_decay, p)
        else:
            k.sgd_momentum(g, self.lr, self.momentum, self.weight_decay, p, self.velocity)

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

    def __init__(
        self,
        params,
        grads,
        xp,
        lr: float,
        weight_decay: float = 0.0,
        threads: int = 1,
        kernels=None,
    ):
        self.params, self.grads, self.xp, self.kernels = params, grads, xp, kernels
        self.lr, self.weight_decay = (params.dtype.type(v) for v in (lr, weight_decay))
        self.sum_sq = xp.zeros_like(params)
        self.state = {"sum_sq": self.sum_sq}
        if kernels is None:
            self.sliced = _Blocks(xp, params, threads)
            self.parts = self.sliced.views(params, grads, self.sum_sq)

    def step(self) -> None:
        if self.kernels is None:
            self.sliced.run(self._update, self.parts)
        else:
            eps = self.params.dtype.type(self.EPS)
            self.kernels.adagrad(
                self.grads, self.lr, self.weight_decay, eps, self.params, self.sum_sq
            )

    def _update(self, p, g, sum_sq, scratch) -> None:
        xp = self.xp
        if self.weight_decay:
            g += xp.multiply(p, self.weight_decay, out=scratch)
        sum_sq += xp.multiply(g, g, out=scratch)
        xp.sqrt(sum_sq, out=scratch)
        scratch += p.dtype.type(self.EPS)
        xp.divide(g, scratch, out=scratch)
        p -= xp.multiply(scratch, self.lr, out=scratch)


def make(cfg, params, grads, xp, threads: int = 1, kernels=None):
    """The optimizer the configuration names, on these buffers (a whole model or a shard),
    its element-wise update on `threads` cores, or in one of CuPy's fused `kernels`."""
    if cfg.optimizer == "adagrad":
        return Adagrad(params, grads, xp, cfg.lr, cfg.weight_decay, threads, kernels)
    return SGD(params, grads, xp, cfg.lr, cfg.momentum_value, cfg.weight_decay, threads, kernels)
