"""The optimizers' update on several threads: bit-identical to one thread, and PyTorch's maths."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from allreduce_train.maths import optim

N = 3 * optim.MIN_PER_THREAD + 123  # enough for three slices, none a multiple of 64


def config(name: str, momentum: float = 0.9, weight_decay: float = 1e-2):
    return SimpleNamespace(
        optimizer=name, lr=0.05, momentum_value=momentum, weight_decay=weight_decay
    )


def trajectory(cfg, threads: int, steps: int = 4, n: int = N):
    rng = np.random.default_rng(0)
    params = rng.standard_normal(n).astype(np.float32)
    grads = np.zeros_like(params)
    opt = optim.make(cfg, params, grads, np, threads)
    for _ in range(steps):
        grads[...] = rng.standard_normal(n).astype(np.float32)
        opt.step()
    return params, opt


@pytest.mark.parametrize("name,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adagrad", 0.0)])
@pytest.mark.parametrize("threads", [2, 3, 5])
def test_threads_give_the_one_thread_result_to_the_bit(name, momentum, threads):
    one, _ = trajectory(config(name, momentum), 1)
    many, opt = trajectory(config(name, momentum), threads)
    assert len(opt.sliced.slices) == min(threads, N // optim.MIN_PER_THREAD)
    assert opt.sliced.slices[0].start == 0 and opt.sliced.slices[-1].stop == N
    assert all(s.stop == t.start for s, t in zip(opt.sliced.slices, opt.sliced.slices[1:]))
    assert all(s.start % 64 == 0 for s in opt.sliced.slices)
    assert one.tobytes() == many.tobytes()


@pytest.mark.parametrize("name", ["sgd", "adagrad"])
def test_the_block_size_does_not_change_a_bit(name, monkeypatch):
    whole, _ = trajectory(config(name), 1)
    monkeypatch.setattr(optim, "BLOCK", 1000)  # not a multiple of 64 either
    blocked, opt = trajectory(config(name), 2)
    assert sum(len(b) for b in opt.sliced.blocks) > 100
    assert whole.tobytes() == blocked.tobytes()


def test_small_buffers_stay_on_the_calling_thread():
    _, opt = trajectory(config("sgd"), 8, n=1000)
    assert len(opt.sliced.slices) == 1 and opt.sliced.pool is None


def test_the_update_really_runs_on_several_threads():
    seen = set()
    _, opt = trajectory(config("sgd"), 3, steps=0)
    update = opt._update
    together = threading.Barrier(3, timeout=30)  # the slices run at once, on three threads

    def spy(*views):
        if threading.get_ident() not in seen:
            seen.add(threading.get_ident())
            together.wait()  # (a pool reusing a thread for two slices would break it)
        update(*views)

    opt._update = spy
    opt.step()
    assert len(seen) == 3


@pytest.mark.slow  # importing torch: about 5 s the first time
@pytest.mark.parametrize("name", ["sgd", "adagrad"])
def test_the_update_is_pytorchs(name):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    start = rng.standard_normal(N).astype(np.float32)
    grads_seq = [rng.standard_normal(N).astype(np.float32) for _ in range(3)]
    params, grads = start.copy(), np.empty_like(start)
    cfg = config(name, momentum=0.9 if name == "sgd" else 0.0)
    opt = optim.make(cfg, params, grads, np, 2)
    p = torch.nn.Parameter(torch.from_numpy(start.copy()))
    kwargs = {"lr": 0.05, "weight_decay": 1e-2}
    theirs = (
        torch.optim.SGD([p], momentum=0.9, **kwargs)
        if name == "sgd"
        else torch.optim.Adagrad([p], **kwargs)
    )
    for g in grads_seq:
        grads[...] = g
        opt.step()
        p.grad = torch.from_numpy(g.copy())
        theirs.step()
    np.testing.assert_allclose(params, p.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_an_error_in_a_slice_is_raised_with_its_traceback():
    _, opt = trajectory(config("sgd"), 2, steps=0)

    def broken(p, *rest):
        if p is opt.parts[1][0][0]:  # thread 1's first block
            raise RuntimeError("slice 1 failed")

    opt._update = broken
    with pytest.raises(RuntimeError, match="slice 1 failed"):
        opt.step()
