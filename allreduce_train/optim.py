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
"""

from __future__ import annotations


class SGD:
    def __init__(
        self, params, grads, xp, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
    ):
        self.params, self.grads, self.xp = params, grads, xp
        self.lr, self.momentum, self.weight_decay = (
            params.dtype.type(v) for v in (lr, momentum, weight_decay)
        )
        self.velocity = xp.zeros_like(params) if momentum else None
        self.scratch = xp.empty_like(params)
        self.state = {} if self.velocity is None else {"velocity": self.velocity}

    def step(self) -> None:
        g, scratch, xp = self.grads, self.scratch, self.xp
        if self.weight_decay:
            g += xp.multiply(self.params, self.weight_decay, out=scratch)
        if self.velocity is not None:
            self.velocity *= self.momentum
            self.velocity += g
            g = self.velocity
        self.params -= xp.multiply(g, self.lr, out=scratch)


class Adagrad:
    EPS = 1e-10

    def __init__(self, params, grads, xp, lr: float, weight_decay: float = 0.0):
        self.params, self.grads, self.xp = params, grads, xp
        self.lr, self.weight_decay = (params.dtype.type(v) for v in (lr, weight_decay))
        self.sum_sq = xp.zeros_like(params)
        self.scratch = xp.empty_like(params)
        self.state = {"sum_sq": self.sum_sq}

    def step(self) -> None:
        g, scratch, xp = self.grads, self.scratch, self.xp
        if self.weight_decay:
            g += xp.multiply(self.params, self.weight_decay, out=scratch)
        self.sum_sq += xp.multiply(g, g, out=scratch)
        xp.sqrt(self.sum_sq, out=scratch)
        scratch += self.params.dtype.type(self.EPS)
        xp.divide(g, scratch, out=scratch)
        self.params -= xp.multiply(scratch, self.lr, out=scratch)


def make(cfg, params, grads, xp):
    """The optimizer the configuration names, on these buffers (a whole model or a shard)."""
    if cfg.optimizer == "adagrad":
        return Adagrad(params, grads, xp, cfg.lr, cfg.weight_decay)
    return SGD(params, grads, xp, cfg.lr, cfg.momentum_value, cfg.weight_decay)
