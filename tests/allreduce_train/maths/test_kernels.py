"""How the model and the optimizer call CuPy's fused kernels (allreduce_train.maths.kernels),
checked on the CPU: NumPy functions with the kernels' signatures and formulas stand in
for them (an ElementwiseKernel writes its outputs in place, inputs first), so a kernel
given its arguments in the wrong order, or the wrong activation's, gives a different
gradient or update. The CUDA C itself compiles only on a GPU: bench/gpu_check.py checks it
against the unfused operations there; NVRTC, where it is installed, compiles it without one."""

from __future__ import annotations

import ctypes
import ctypes.util
import pathlib
from types import SimpleNamespace

import numpy as np
import pytest

from allreduce_train.maths import kernels, optim
from allreduce_train.maths.model import MLP


def _relu(b, z):
    y = z + b
    z[...] = np.where((y > 0) | np.isnan(y), y, 0)


def _sigmoid(b, z):
    z[...] = 1 / (1 + np.exp(-(z + b)))


def _tanh(b, z):
    z[...] = np.tanh(z + b)


def _sgd(g, lr, wd, p):
    p[...] = p - lr * (g + wd * p)


def _sgd_momentum(g, lr, momentum, wd, p, v):
    v[...] = momentum * v + (g + wd * p)
    p[...] = p - lr * v


def _adagrad(g, lr, wd, eps, p, s):
    d = g + wd * p
    s[...] = s + d * d
    p[...] = p - lr * (d / (np.sqrt(s) + eps))


def _scale(f):
    def backward(a, delta):
        delta[...] = delta * f(a)

    return backward


STAND_IN = kernels.Kernels(
    {"relu": _relu, "sigmoid": _sigmoid, "tanh": _tanh},
    {
        "relu": _scale(lambda a: (a > 0).astype(a.dtype)),
        "sigmoid": _scale(lambda a: a * (1 - a)),
        "tanh": _scale(lambda a: 1 - a * a),
    },
    _sgd,
    _sgd_momentum,
    _adagrad,
)


def test_every_activation_has_its_kernels():
    from allreduce_train.maths.model import ACTIVATIONS

    assert set(kernels._FORWARD) == set(kernels._BACKWARD) == set(ACTIVATIONS)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_the_model_with_the_kernels_computes_its_gradient_without_them(activation):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 7)).astype(np.float32)
    y = rng.integers(0, 5, 16)
    nudge = rng.standard_normal(MLP((7, 9, 8, 5)).nparams).astype(np.float32) * 0.1
    grads = []
    for fused in (None, STAND_IN):
        model = MLP((7, 9, 8, 5), activation, kernels=fused)
        model.init("he", 0)
        model.params += nudge  # biases not zero: their add is part of the fused kernel
        model.loss_and_grad(x, y, 1 / 16)
        grads.append(model.grads.copy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    assert np.abs(grads[0]).max() > 0


def test_a_nan_still_reaches_the_gradient_through_fused_relu():
    model = MLP((3, 4, 2), "relu", kernels=STAND_IN)
    model.init("he", 0)
    model.params[-1] = np.nan  # an output bias
    model.loss_and_grad(np.ones((2, 3), np.float32), np.array([0, 1]), 0.5)
    assert not np.isfinite(model.grads).all()


@pytest.mark.parametrize("name,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adagrad", 0.0)])
def test_the_optimizer_with_its_kernel_makes_the_update_without_it(name, momentum):
    cfg = SimpleNamespace(optimizer=name, lr=0.05, momentum_value=momentum, weight_decay=1e-2)
    finals = []
    for fused in (None, STAND_IN):
        rng = np.random.default_rng(0)
        params = rng.standard_normal(1000).astype(np.float32)
        grads = np.zeros_like(params)
        opt = optim.make(cfg, params, grads, np, 1, fused)
        for _ in range(4):
            grads[...] = rng.standard_normal(1000).astype(np.float32)
            opt.step()
        finals.append((params.copy(), {k: v.copy() for k, v in opt.state.items()}))
    np.testing.assert_allclose(finals[1][0], finals[0][0], rtol=1e-6, atol=1e-7)
    for key, value in finals[0][1].items():
        np.testing.assert_allclose(finals[1][1][key], value, rtol=1e-6, atol=1e-7)


def nvrtc():
    """libnvrtc (the nvidia-cuda-nvrtc-cu12 wheel, or a CUDA toolkit's), or None."""
    try:
        import nvidia.cuda_nvrtc as wheel

        found = sorted(pathlib.Path(wheel.__path__[0], "lib").glob("libnvrtc.so.*"))
        path = str(found[0]) if found else None
    except ImportError:
        path = ctypes.util.find_library("nvrtc")
    return None if path is None else ctypes.CDLL(path)


def compile_cuda(lib, source: str) -> tuple[int, str]:
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"k.cu", 0, None, None) == 0
    opts = (ctypes.c_char_p * 1)(b"--gpu-architecture=compute_70")
    rc = lib.nvrtcCompileProgram(prog, 1, opts)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return rc, log.value.decode()


def elementwise_source(ins: str, outs: str, body: str, ctype: str) -> str:
    """A kernel of `body` bound as CuPy's ElementwiseKernel binds it: T the dtype, each input
    a const reference to its element, each output a reference."""
    names = lambda params: [p.split()[1] for p in params.split(", ")]  # noqa: E731
    args = ", ".join(f"T* _{n}" for n in names(ins) + names(outs))
    refs = [f"const T& {n} = _{n}[i];" for n in names(ins)] + [
        f"T& {n} = _{n}[i];" for n in names(outs)
    ]
    return (
        f"typedef {ctype} T;\n"
        f'extern "C" __global__ void k({args}) {{\n'
        f"  int i = blockIdx.x * blockDim.x + threadIdx.x;\n  {' '.join(refs)}\n  {body};\n}}\n"
    )  # fmt: skip


def kernel_bodies():
    yield from (("T b", "T z", body) for body in kernels._FORWARD.values())
    yield from (("T a", "T delta", body) for body in kernels._BACKWARD.values())
    yield "T g, T lr, T wd", "T p", kernels._SGD
    yield "T g, T lr, T momentum, T wd", "T p, T v", kernels._SGD_MOMENTUM
    yield "T g, T lr, T wd, T eps", "T p, T s", kernels._ADAGRAD


@pytest.mark.parametrize("ctype", ["float", "double"])
def test_the_kernels_cuda_c_compiles(ctype):
    """NVRTC compiles without a GPU: every body, in both dtypes; a typo fails (the teeth)."""
    lib = nvrtc()
    if lib is None:
        pytest.skip("no NVRTC (pip install nvidia-cuda-nvrtc-cu12 compiles the kernels here)")
    for ins, outs, body in kernel_bodies():
        rc, log = compile_cuda(lib, elementwise_source(ins, outs, body, ctype))
        assert rc == 0, (body, log)
    rc, _ = compile_cuda(lib, elementwise_source("T a", "T delta", "delta = (a > 0", ctype))
    assert rc != 0
