"""Fused element-wise kernels for CuPy: what the model and the optimizer do element by
element, each in one GPU kernel instead of one per array operation.

On the GPU every array operation is a kernel launch (~5 us) and a pass over memory. The
model's bias add and activation (two kernels), its activation derivative and the multiply
into the delta (two, and a boolean temporary for ReLU), and the optimizer's update (five or
six) each become one kernel here, reading every element once. On NumPy the same steps stay
array operations (model.py, optim.py), cache-blocked where it pays; these are their
formulas, written once more in CUDA C, and bench/gpu_check.py measures them against the
unfused CuPy operations and checks they agree (within float32 rounding: the GPU compiler
contracts a multiply and an add into one fused multiply-add).

`make(cupy)` builds them (compiled at first use, cached by CuPy); it takes the module so
that only backend.py imports CuPy.
"""

from __future__ import annotations

from dataclasses import dataclass

# f(z + b) in place, and delta * f'(z) through the output a = f(z), as model.ACTIVATIONS,
# NaN kept as NumPy keeps it (maximum propagates it; NaN * 0 is NaN), so that a non-finite
# gradient is still seen
_FORWARD = {
    "relu": "T y = z + b; z = (y > (T)0 || y != y) ? y : (T)0",
    "sigmoid": "z = (T)1 / ((T)1 + exp(-(z + b)))",
    "tanh": "z = tanh(z + b)",
}
_BACKWARD = {
    "relu": "delta = delta * (T)(a > (T)0)",
    "sigmoid": "delta = delta * (a * ((T)1 - a))",
    "tanh": "delta = delta * ((T)1 - a * a)",
}
# optim.py's updates (PyTorch's maths): weight decay, momentum, Adagrad's sum of squares
_SGD = "T d = g + wd * p; p = p - lr * d"
_SGD_MOMENTUM = "T d = g + wd * p; v = momentum * v + d; p = p - lr * v"
_ADAGRAD = "T d = g + wd * p; s = s + d * d; p = p - lr * (d / (sqrt(s) + eps))"


@dataclass(frozen=True)
class Kernels:
    bias_activation: dict  # name -> k(b, z): z <- f(z + b), b broadcast over the rows
    activation_backward: dict  # name -> k(a, delta): delta <- delta * f'(a)
    sgd: object  # k(g, lr, wd, p)
    sgd_momentum: object  # k(g, lr, momentum, wd, p, v)
    adagrad: object  # k(g, lr, wd, eps, p, s)


def make(cupy) -> Kernels:
    ek = cupy.ElementwiseKernel
    return Kernels(
        {n: ek("T b", "T z", body, f"bias_{n}") for n, body in _FORWARD.items()},
        {n: ek("T a", "T delta", body, f"{n}_backward") for n, body in _BACKWARD.items()},
        ek("T g, T lr, T wd", "T p", _SGD, "sgd"),
        ek("T g, T lr, T momentum, T wd", "T p, T v", _SGD_MOMENTUM, "sgd_momentum"),
        ek("T g, T lr, T wd, T eps", "T p, T s", _ADAGRAD, "adagrad"),
    )
