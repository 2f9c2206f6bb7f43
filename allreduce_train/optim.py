"""SGD with optional momentum and weight decay, in place on the flat parameter buffer.

The update follows PyTorch's SGD (Sutskever et al. 2013 form of momentum):
    g <- g + weight_decay * p
    v <- momentum * v + g          (v starts at zero; skipped when momentum is 0)
    p <- p - lr * v
Every operation writes into an existing buffer, so a step allocates nothing: with a 7 MB
model a temporary per operation would be a fresh page-faulted 7 MB each time.
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

    def step(self) -> None:
        g, scratch, xp = self.grads, self.scratch, self.xp
        if self.weight_decay:
            g += xp.multiply(self.params, self.weight_decay, out=scratch)
        if self.velocity is not None:
            self.velocity *= self.momentum
            self.velocity += g
            g = self.velocity
        self.params -= xp.multiply(g, self.lr, out=scratch)
