"""Each implementation's gradients against finite differences, independently of the others."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime, check_grad

import implementations
from compare import data, weights
from compare.recipe import Recipe
from implementations.contract import Network

NETWORKS = {
    "tutorial 4-2-3 sigmoid": Recipe(),
    "4-5-5-3 sigmoid": Recipe(hidden=(5, 5), init_seed=3),
    "4-3-3 sigmoid, identity": Recipe(hidden=(3,), activations=("sigmoid", "identity")),
}


def _problem(recipe: Recipe):
    dataset = data.load(recipe)
    net = recipe.network(dataset.X_train.shape[1], dataset.Y_train.shape[1])
    params = weights.initial_weights(net, recipe.init_seed, recipe.init_scale)
    return net, params, dataset.X_train, dataset.Y_train


def _flat(params: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([w.ravel() for w in params.values()])


def _unflat(net: Network, vector: np.ndarray) -> dict[str, np.ndarray]:
    params, start = {}, 0
    for name, (rows, cols) in net.param_shapes.items():
        params[name] = vector[start : start + rows * cols].reshape(rows, cols)
        start += rows * cols
    return params


def _load(name: str):
    try:
        return implementations.load(name)
    except implementations.FrameworkUnavailable as error:
        pytest.skip(str(error))


@pytest.mark.parametrize("recipe", NETWORKS.values(), ids=NETWORKS.keys())
@pytest.mark.parametrize("framework", implementations.NAMES)
def test_gradient_matches_central_differences(framework, recipe):
    module = _load(framework)
    net, params, X, Y = _problem(recipe)

    def loss(vector):
        batch = {n: w[None] for n, w in _unflat(net, vector).items()}
        return module.loss_and_grads(net, batch, X, Y, "float64")[0][0]

    def gradient(vector):
        batch = {n: w[None] for n, w in _unflat(net, vector).items()}
        grads = module.loss_and_grads(net, batch, X, Y, "float64")[1]
        return _flat({n: g[0] for n, g in grads.items()})

    point = _flat(params)
    # Central differences (scipy's '3-point' scheme) are accurate to O(h^2), about 1e-10 here.
    numeric = approx_fprime(point, loss, 1e-6 * np.ones_like(point))
    analytic = gradient(point)
    scale = np.abs(analytic).max()
    np.testing.assert_allclose(
        analytic,
        numeric,
        rtol=1e-5,
        atol=1e-7 * scale,
        err_msg=f"{framework} gradient disagrees with finite differences on {net.describe()}",
    )
    # scipy's own checker (forward differences, error O(h)) agrees to 1e-5 of the gradient's size.
    assert check_grad(loss, gradient, point, epsilon=1e-8) < 1e-5 * np.linalg.norm(analytic)


@pytest.mark.parametrize("framework", implementations.NAMES)
def test_batched_loss_and_grads_equal_one_point_at_a_time(framework):
    module = _load(framework)
    net, params, X, Y = _problem(Recipe())
    points = [{n: w * factor for n, w in params.items()} for factor in (1.0, -0.5, 2.0)]
    batch = {n: np.stack([p[n] for p in points]) for n in net.param_names}
    losses, grads = module.loss_and_grads(net, batch, X, Y, "float64")
    for index, point in enumerate(points):
        single = {n: w[None] for n, w in point.items()}
        loss, grad = module.loss_and_grads(net, single, X, Y, "float64")
        np.testing.assert_allclose(losses[index], loss[0], rtol=1e-14)
        for name in net.param_names:
            np.testing.assert_allclose(grads[name][index], grad[name][0], rtol=1e-12, atol=1e-18)


def test_the_finite_difference_check_catches_a_wrong_gradient():
    """The check above can fail: a gradient missing the sigmoid derivative does not pass it."""
    module = implementations.load("numpy")
    net, params, X, Y = _problem(Recipe())
    point = _flat(params)

    def loss(vector):
        return module.loss_and_grads(
            net, {n: w[None] for n, w in _unflat(net, vector).items()}, X, Y
        )[0][0]

    def wrong_gradient(vector):
        p = _unflat(net, vector)
        layers = module.forward(net, p, X)
        delta2 = (layers[1].A - Y) / Y.size  # forgot dA2/dZ2
        return _flat(
            {
                "W1": X.T @ ((delta2 @ p["W2"].T) * layers[0].A * (1 - layers[0].A)),
                "W2": layers[0].A.T @ delta2,
            }
        )

    numeric = approx_fprime(point, loss, 1e-6 * np.ones_like(point))
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(wrong_gradient(point), numeric, rtol=1e-5)
