"""A multi-layer perceptron whose parameters live in ONE buffer and gradients in another.

Layer weights and biases are views into the flat `params`; their gradients are views into
the flat `grads`. Backward writes each layer's gradient straight into its view (matmul
with out=), so the all-reduce receives one contiguous buffer with no packing, and the
optimizer updates all layers in a handful of whole-buffer operations (as llm.c does).

Shapes: x is (batch, features); layer l maps width[l] -> width[l+1] with W of shape
(width[l], width[l+1]) and b of shape (width[l+1],). Hidden layers use the activation;
the output layer is linear and the loss takes its logits. An output layer of ONE unit is a
binary classifier: its logit z gives P(class 1) = sigmoid(z), and the losses are their
one-unit forms (BINARY_LOSSES).
"""

from __future__ import annotations

import math
import sys

import numpy as np

# --- activations: f applied in place, and f' expressed through the output a = f(z), so
# backward needs only the activations forward already keeps.


def _relu(z):
    return _xp_of(z).maximum(z, 0, out=z)


def _relu_grad(a):
    return a > 0


def _sigmoid(z):
    xp = _xp_of(z)
    z *= -1
    xp.exp(z, out=z)
    z += 1
    return xp.reciprocal(z, out=z)


def _sigmoid_grad(a):
    return a * (1 - a)


def _tanh(z):
    return _xp_of(z).tanh(z, out=z)


def _tanh_grad(a):
    return 1 - a * a


ACTIVATIONS = {
    "relu": (_relu, _relu_grad),
    "sigmoid": (_sigmoid, _sigmoid_grad),
    "tanh": (_tanh, _tanh_grad),
}


# --- losses: the SUM over the batch of per-sample losses, and d(sum)/d(logits). Sums, not
# means: a rank's sum over its shard adds exactly to the global batch's, whatever the split.


def softmax_cross_entropy(logits, labels):
    """-log softmax(z)[y] computed as logsumexp(z) - z[y] with z shifted by its maximum, so
    neither exp overflows nor a vanishing probability turns into log(0)."""
    xp = _xp_of(logits)
    z = logits - logits.max(axis=1, keepdims=True)
    rows = xp.arange(len(labels))
    log_norm = xp.log(xp.exp(z).sum(axis=1, keepdims=True))
    loss = (log_norm[:, 0] - z[rows, labels]).sum()
    z -= log_norm
    xp.exp(z, out=z)  # z now holds the softmax probabilities
    z[rows, labels] -= 1
    return float(loss), z


def mean_squared_error(logits, labels):
    """Half the squared distance to the one-hot target, per sample (the loss of the classic
    parallel back-propagation studies); gradient logits - target."""
    diff = logits.copy()
    diff[_xp_of(logits).arange(len(labels)), labels] -= 1
    return 0.5 * float((diff * diff).sum()), diff


LOSSES = {"cross-entropy": softmax_cross_entropy, "mse": mean_squared_error}


# --- the same losses for ONE output unit, logits (batch, 1), labels 0 or 1: sigmoid(z) is
# P(class 1), which is softmax over the logits (0, z), so cross-entropy is the logistic loss.


def _stable_sigmoid(z):
    """sigmoid(z) from exp(-|z|) only, which never overflows."""
    xp = _xp_of(z)
    e = xp.exp(-xp.abs(z))
    return (xp.where(z >= 0, 1, e) / (1 + e)).astype(z.dtype, copy=False)


def logistic_loss(logits, labels):
    """-log P(y) = softplus(z) - y z, as max(z, 0) - y z + log1p(exp(-|z|)) so that no exp
    overflows; gradient sigmoid(z) - y."""
    xp = _xp_of(logits)
    y = labels.astype(logits.dtype)[:, None]
    loss = (xp.maximum(logits, 0) - logits * y + xp.log1p(xp.exp(-xp.abs(logits)))).sum()
    return float(loss), _stable_sigmoid(logits) - y


def sigmoid_squared_error(logits, labels):
    """0.5 (sigmoid(z) - y)^2 (a sigmoid output unit with squared error, as in the
    DistBelief-in-Akka XOR demo); gradient (s - y) s (1 - s)."""
    s = _stable_sigmoid(logits)
    diff = s - labels.astype(logits.dtype)[:, None]
    return 0.5 * float((diff * diff).sum()), diff * s * (1 - s)


BINARY_LOSSES = {"cross-entropy": logistic_loss, "mse": sigmoid_squared_error}


# --- initialisation (on the host from one seeded generator, so every rank and every
# backend starts from the same bits).


def he_normal(rng, fan_in, fan_out):
    """He et al. 2015: keeps activation variance through ReLU layers."""
    return rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)


def xavier_uniform(rng, fan_in, fan_out):
    """Glorot & Bengio 2010: keeps variance through tanh/sigmoid layers."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out))


INITS = {"he": he_normal, "xavier": xavier_uniform}


class MLP:
    def __init__(
        self,
        widths,
        activation="relu",
        loss="cross-entropy",
        xp=np,
        dtype=np.float32,
        kernels=None,
        grads=None,
    ):
        """kernels: CuPy's fused element-wise kernels (allreduce_train.maths.kernels), which do a
        hidden layer's bias add and activation, and its derivative times the delta, in one
        kernel each; None: array operations (NumPy, or CuPy unfused). grads: the flat buffer
        the gradients are to live in (a shared-memory window's, for the exchange to read
        from), else one of its own."""
        if len(widths) < 2 or min(widths) < 1:
            raise ValueError(f"an MLP needs at least two positive widths, got {list(widths)}")
        self.widths = tuple(int(w) for w in widths)
        self.xp, self.dtype = xp, np.dtype(dtype)
        self.activation, self.activation_grad = ACTIVATIONS[activation]
        self.fused = None if kernels is None else (
            kernels.bias_activation[activation], kernels.activation_backward[activation]
        )  # fmt: skip
        self.binary = self.widths[-1] == 1  # one output unit: P(class 1) = sigmoid(logit)
        self.loss = (BINARY_LOSSES if self.binary else LOSSES)[loss]
        shapes = [s for a, b in zip(self.widths, self.widths[1:]) for s in ((a, b), (b,))]
        sizes = [math.prod(s) for s in shapes]
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.nparams = int(offsets[-1])
        self.params = xp.zeros(self.nparams, dtype=self.dtype)
        if grads is None:
            grads = xp.zeros(self.nparams, dtype=self.dtype)
        elif grads.shape != (self.nparams,) or grads.dtype != self.dtype:
            raise ValueError(f"grads of {grads.shape} {grads.dtype}, need ({self.nparams},)")
        self.grads = grads

        def views(flat):
            return [flat[lo:hi].reshape(s) for lo, hi, s in zip(offsets, offsets[1:], shapes)]

        p, g = views(self.params), views(self.grads)
        self.weights, self.biases = p[0::2], p[1::2]
        self.weight_grads, self.bias_grads = g[0::2], g[1::2]

    @property
    def nlayers(self) -> int:
        return len(self.weights)

    @property
    def layer_segments(self) -> list[tuple[int, int]]:
        """(start, count) of each layer's weights and biases in the flat buffers: the shards
        of a parameter server sharded by layer."""
        return layer_segments(self.widths)

    def init(self, scheme: str, seed: int) -> None:
        rng = np.random.default_rng(seed)
        host = np.zeros(self.nparams, dtype=np.float64)
        lo = 0
        for a, b in zip(self.widths, self.widths[1:]):
            host[lo : lo + a * b] = INITS[scheme](rng, a, b).ravel()
            lo += a * b + b  # biases start at zero
        self.params[...] = self.xp.asarray(host.astype(self.dtype))

    def forward(self, x, keep=False):
        """Logits for x; with keep, also the input of every layer (for backward)."""
        inputs = []
        a = x
        for layer, (w, b) in enumerate(zip(self.weights, self.biases)):
            inputs.append(a)
            z = a @ w
            if layer == self.nlayers - 1:
                z += b
                a = z
            elif self.fused is not None:
                self.fused[0](b, z)  # z <- f(z + b), one kernel
                a = z
            else:
                z += b
                a = self.activation(z)
        return (a, inputs) if keep else a

    def loss_and_grad(self, x, labels, scale: float, ready=None) -> float:
        """Writes scale * d(sum of losses)/d(params) into `grads`; returns the loss sum.

        scale is 1/global_batch: folding it into the output delta scales every layer's
        gradient at no extra pass over the buffer. ready: called with each layer's index
        once its gradients are written (the last layer first), for the exchange to start
        the buckets it completes while backward goes on."""
        logits, inputs = self.forward(x, keep=True)
        loss, delta = self.loss(logits, labels)
        delta *= self.dtype.type(scale)
        for layer in range(self.nlayers - 1, -1, -1):
            a = inputs[layer]
            self.xp.matmul(a.T, delta, out=self.weight_grads[layer])
            delta.sum(axis=0, out=self.bias_grads[layer])
            if ready is not None:
                ready(layer)
            if layer > 0:
                delta = delta @ self.weights[layer].T
                if self.fused is not None:
                    self.fused[1](a, delta)  # delta <- delta * f'(a), one kernel
                else:
                    delta *= self.activation_grad(a)
        return loss

    def predict(self, x):
        return self.classify(self.forward(x))

    def classify(self, logits):
        """The predicted classes of these logits: z > 0 (P(class 1) > 1/2) for one output
        unit, the largest logit otherwise."""
        if self.binary:
            return (logits[:, 0] > 0).astype(np.int64)
        return logits.argmax(axis=1)


def _xp_of(a):
    # NumPy or CuPy, whichever owns the array (cupy.get_array_module without importing cupy).
    return np if isinstance(a, np.ndarray) else sys.modules[type(a).__module__.split(".")[0]]


def nparams(widths) -> int:
    """Parameters of an MLP of these widths: each layer's weights and biases."""
    return sum(a * b + b for a, b in zip(widths, widths[1:]))


def layer_segments(widths) -> list[tuple[int, int]]:
    """(start, count) of each layer's weights and biases in the flat buffer of an MLP of
    these widths."""
    sizes = [a * b + b for a, b in zip(widths, widths[1:])]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [(int(s), int(n)) for s, n in zip(starts, sizes)]
