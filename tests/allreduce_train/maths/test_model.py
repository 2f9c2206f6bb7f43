"""The MLP and SGD: gradients against finite differences, flat-buffer layout, updates."""

import itertools

import numpy as np
import pytest

from allreduce_train.maths.model import ACTIVATIONS, BINARY_LOSSES, INITS, LOSSES, MLP
from allreduce_train.maths.optim import SGD


def numeric_grad(model, x, y, eps=1e-6):
    grad = np.zeros(model.nparams)
    for i in range(model.nparams):
        old = model.params[i]
        model.params[i] = old + eps
        plus, _ = model.loss(model.forward(x), y)
        model.params[i] = old - eps
        minus, _ = model.loss(model.forward(x), y)
        model.params[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("activation,loss", list(itertools.product(ACTIVATIONS, LOSSES)))
def test_gradients_match_finite_differences(activation, loss):
    rng = np.random.default_rng(7)
    model = MLP([5, 7, 6, 4], activation, loss, dtype=np.float64)
    model.init("xavier", seed=3)
    model.params += rng.normal(0, 0.1, model.nparams)  # non-zero biases too
    x, y = rng.standard_normal((9, 5)), rng.integers(0, 4, 9)
    scale = 1 / 9
    loss_sum = model.loss_and_grad(x, y, scale)
    assert loss_sum == pytest.approx(model.loss(model.forward(x), y)[0])
    expected = numeric_grad(model, x, y) * scale
    np.testing.assert_allclose(model.grads, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("loss", list(BINARY_LOSSES))
def test_one_output_unit_gradients_match_finite_differences(activation, loss):
    rng = np.random.default_rng(11)
    model = MLP([3, 4, 1], activation, loss, dtype=np.float64)
    assert model.loss is BINARY_LOSSES[loss]
    model.init("xavier", seed=5)
    model.params += rng.normal(0, 0.5, model.nparams)
    x, y = rng.standard_normal((8, 3)), np.array([0, 1, 1, 0, 1, 0, 0, 1])
    loss_sum = model.loss_and_grad(x, y, 1 / 8)
    assert loss_sum == pytest.approx(model.loss(model.forward(x), y)[0])
    np.testing.assert_allclose(model.grads, numeric_grad(model, x, y) / 8, rtol=1e-6, atol=1e-9)


def test_one_output_unit_losses_are_logistic_and_sigmoid_squared_error():
    z, y = np.array([[-2.0], [0.0], [3.0]]), np.array([1, 0, 1])
    p = 1 / (1 + np.exp(-z[:, 0]))
    loss, grad = BINARY_LOSSES["cross-entropy"](z, y)
    assert loss == pytest.approx(-np.log(np.where(y == 1, p, 1 - p)).sum())
    # the same as softmax cross-entropy over the logits (0, z): one unit is two classes
    assert loss == pytest.approx(LOSSES["cross-entropy"](np.hstack([0 * z, z]), y)[0])
    np.testing.assert_allclose(grad[:, 0], p - y)
    loss, grad = BINARY_LOSSES["mse"](z, y)
    assert loss == pytest.approx(0.5 * ((p - y) ** 2).sum())
    np.testing.assert_allclose(grad[:, 0], (p - y) * p * (1 - p))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_output_unit_losses_are_stable_for_huge_logits(dtype):
    z, y = np.array([[1e4], [-1e4], [1e4]], dtype=dtype), np.array([1, 0, 0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        loss, grad = BINARY_LOSSES["cross-entropy"](z, y)
        assert loss == pytest.approx(1e4) and grad.dtype == dtype
        np.testing.assert_array_equal(grad[:, 0], [0, 0, 1])
        loss, grad = BINARY_LOSSES["mse"](z, y)
        assert loss == pytest.approx(0.5) and np.isfinite(grad).all() and grad.dtype == dtype


def test_predict_is_sign_of_one_logit_and_argmax_of_several():
    binary = MLP([2, 1], dtype=np.float64)
    binary.weights[0][:, 0] = [1.0, -1.0]
    x = np.array([[2.0, 1.0], [1.0, 2.0], [1.0, 1.0]])
    np.testing.assert_array_equal(binary.predict(x), [1, 0, 0])  # z = 0 is P = 1/2: class 0
    several = MLP([2, 2], dtype=np.float64)
    several.weights[0][...] = np.eye(2)
    np.testing.assert_array_equal(several.predict(x), [0, 1, 0])


def test_parameters_and_gradients_are_views_into_one_buffer():
    model = MLP([3, 4, 2])
    assert model.nparams == 3 * 4 + 4 + 4 * 2 + 2
    for view in model.weights + model.biases:
        assert view.base is model.params
    for view in model.weight_grads + model.bias_grads:
        assert view.base is model.grads
    model.params[:] = np.arange(model.nparams)
    assert model.weights[1][0, 0] == 3 * 4 + 4  # layer 2 starts after layer 1's W and b
    x, y = np.ones((2, 3), np.float32), np.array([0, 1])
    model.loss_and_grad(x, y, 0.5)
    assert np.any(model.grads != 0)


def test_float32_by_default_float64_on_request():
    assert MLP([2, 2]).params.dtype == np.float32
    model = MLP([2, 2], dtype=np.float64)
    assert model.params.dtype == model.grads.dtype == np.float64


def test_init_is_deterministic_and_scaled():
    a, b = MLP([400, 300, 10]), MLP([400, 300, 10])
    a.init("he", 1), b.init("he", 1)
    np.testing.assert_array_equal(a.params, b.params)
    assert a.weights[0].std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert not a.biases[0].any()
    a.init("xavier", 1)
    limit = np.sqrt(6 / 700)
    assert np.abs(a.weights[0]).max() <= limit and a.weights[0].std() == pytest.approx(
        limit / np.sqrt(3), rel=0.02
    )
    assert set(INITS) == {"he", "xavier"}


@pytest.mark.parametrize("widths", [[3], [], [3, 0, 2]])
def test_bad_widths_rejected(widths):
    with pytest.raises(ValueError):
        MLP(widths)


def test_cross_entropy_is_stable_for_huge_logits():
    loss, grad = LOSSES["cross-entropy"](np.array([[1e4, 0.0], [0.0, 1e4]]), np.array([0, 0]))
    assert np.isfinite(loss) and loss == pytest.approx(1e4)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("momentum,weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.5, 0.01)])
def test_sgd_matches_reference_formula(momentum, weight_decay):
    rng = np.random.default_rng(0)
    params, grads = rng.standard_normal(50), np.zeros(50)
    ref_p, ref_v = params.copy(), np.zeros(50)
    opt = SGD(params, grads, np, lr=0.1, momentum=momentum, weight_decay=weight_decay)
    for _ in range(5):
        g = rng.standard_normal(50)
        grads[:] = g
        opt.step()
        g = g + weight_decay * ref_p
        ref_v = momentum * ref_v + g if momentum else g
        ref_p = ref_p - 0.1 * ref_v
    np.testing.assert_allclose(params, ref_p, rtol=1e-12)
