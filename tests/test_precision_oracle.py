"""The gradient oracles pass on the real implementations and fail on a wrong gradient."""

from types import SimpleNamespace

import numpy as np
import pytest

import implementations
from compare import oracle, tolerances, weights
from implementations.contract import Network

NET = Network((4, 2, 3), ("sigmoid", "sigmoid"))
X = np.random.RandomState(0).uniform(0.1, 7.9, size=(30, 4))
Y = np.eye(3)[np.arange(30) % 3]
INITIAL = weights.initial_weights(NET, seed=10, scale=0.5)


def _load(framework):
    if framework != "numpy":
        pytest.importorskip(framework)
    return implementations.load(framework)


@pytest.mark.parametrize("framework", implementations.NAMES)
def test_oracles_pass_on_every_implementation(framework):
    records = oracle.check_points(framework, _load(framework), NET, {0: INITIAL}, X, Y)
    checks = {record["check"]: record for record in records}
    library = {
        "numpy": "scipy.optimize.check_grad",
        "torch": "torch.autograd.gradcheck",
        "jax": "jax.test_util.check_grads",
    }[framework]
    assert set(checks) == {library, "taylor"}, f"{framework} ran {sorted(checks)}"
    for record in records:
        assert record["passed"], f"{framework} oracle failed: {record}"
    assert checks["taylor"]["observed_order"] == pytest.approx(2.0, abs=0.05)


def _scaled_gradients(module, factor):
    """A module whose loss is right and whose gradient is ``factor`` times too large."""

    def loss_and_grads(net, params, X, Y, dtype="float64"):
        losses, grads = module.loss_and_grads(net, params, X, Y, dtype)
        return losses, {name: g * factor for name, g in grads.items()}

    return SimpleNamespace(loss_and_grads=loss_and_grads)


def test_taylor_test_sees_a_one_percent_gradient_error():
    wrong = _scaled_gradients(implementations.load("numpy"), 1.01)
    record = oracle.taylor_test(wrong, NET, INITIAL, X, Y)
    assert not record["passed"], f"a 1% gradient error passed the Taylor test: {record}"
    assert record["observed_order"] == pytest.approx(1.0, abs=0.1), "the order drops to 1"


def test_scipy_check_grad_sees_a_one_percent_gradient_error():
    wrong = _scaled_gradients(implementations.load("numpy"), 1.01)
    (record, _) = oracle.check_points("numpy", wrong, NET, {0: INITIAL}, X, Y)
    assert record["check"] == "scipy.optimize.check_grad" and not record["passed"], record


def test_torch_gradcheck_sees_a_wrong_backward():
    torch = pytest.importorskip("torch")
    module = implementations.load("torch")

    class HalfDerivativeSigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, Z):
            A = torch.sigmoid(Z)
            ctx.save_for_backward(A)
            return A

        @staticmethod
        def backward(ctx, grad):
            (A,) = ctx.saved_tensors
            return grad * A * (1 - A) * 0.5  # the bug: half the derivative

    def forward(net, weights, X):
        A = X
        for W in weights:
            A = HalfDerivativeSigmoid.apply(A @ W)
        return A

    wrong = SimpleNamespace(forward=forward, loss=module.loss)
    record = oracle.FINITE_DIFFERENCE_CHECKS["torch"](wrong, NET, INITIAL, X, Y)
    assert record["check"] == "torch.autograd.gradcheck" and not record["passed"], record


def test_jax_check_grads_sees_a_wrong_backward():
    jax = pytest.importorskip("jax")
    module = implementations.load("jax")

    @jax.custom_vjp
    def sigmoid(Z):
        return jax.nn.sigmoid(Z)

    def sigmoid_forward(Z):
        A = jax.nn.sigmoid(Z)
        return A, A

    def sigmoid_backward(A, grad):
        return (grad * A * (1 - A) * 0.5,)  # the bug: half the derivative

    sigmoid.defvjp(sigmoid_forward, sigmoid_backward)

    def forward(net, params, X):
        A = X
        for name in net.param_names:
            A = sigmoid(A @ params[name])
        return A

    wrong = SimpleNamespace(forward=forward, loss=module.loss)
    record = oracle.FINITE_DIFFERENCE_CHECKS["jax"](wrong, NET, INITIAL, X, Y)
    assert record["check"] == "jax.test_util.check_grads" and not record["passed"], record


def test_taylor_test_is_inconclusive_not_failed_where_the_network_is_saturated():
    saturated = {name: w * 1e3 for name, w in INITIAL.items()}
    record = oracle.taylor_test(implementations.load("numpy"), NET, saturated, X, Y)
    assert record["passed"], record
    if record["inconclusive"]:
        assert np.isnan(record["observed_order"])


def test_sample_steps_start_at_the_initial_weights_and_skip_nonfinite_states():
    series = {"W1": np.ones((11, 2, 2))}
    assert oracle.sample_steps(series, 4) == [0, 3, 7, 10]
    assert oracle.sample_steps(series, 1) == [0]
    series["W1"][7] = np.nan
    assert oracle.sample_steps(series, 4) == [0, 3, 10]


def test_finite_difference_tolerances_are_looser_than_any_framework_comparison():
    assert tolerances.independent("float64").rtol < tolerances.FINITE_DIFFERENCE_RTOL
