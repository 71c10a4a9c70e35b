"""The loss's measured noise (``tolerances.measured_noise``, ``oracle.loss_noise``) in the
oracles' thresholds.

* Softmax cross-entropy at confident rows: ``log(1 + s)`` per row holds the loss only to about
  ``eps`` a row, far above ``eps |L|``; the finite-difference threshold counts the measured
  noise, the honest gradient passes, a gradient off by 1% still fails.
* A loss mostly saturated to exact values (wine, raw features, bfloat16 sigmoid, mse): its noise
  is far below a thousand roundings of the loss, so the Taylor test reads the order at steps
  where the expansion has settled; a wrong gradient still fails.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle_helpers import initial_point

import implementations
from compare import Recipe, oracle, testing, tolerances
from implementations import numpy_manual
from implementations.contract import Batches, Network, Optimizer, Problem

#: The cross-entropy derivative scaled by 1.01.
SCALED_CROSS_ENTROPY = (
    "    return (softmax * np.sum(Y, axis=-1, keepdims=True) - Y) / rows\n",
    "    return 1.01 * (softmax * np.sum(Y, axis=-1, keepdims=True) - Y) / rows\n",
)

#: The mse derivative doubled.
DOUBLED_MSE = (
    "    return (2 / (rows * outputs)) * (A - Y)\n",
    "    return (4 / (rows * outputs)) * (A - Y)\n",
)


def test_measured_noise_reads_the_deviation_of_noise_and_not_a_smooth_function():
    spacing = tolerances.NOISE_SPACING
    x = spacing * np.arange(tolerances.NOISE_POINTS)
    smooth = 3.0 + 2.0 * x + 5.0 * x**2 + 7.0 * x**3
    # A smooth function reads no more than its own rounding (eps * 3 = 6.7e-16).
    assert tolerances.measured_noise(smooth) < 2 * oracle.EPS64 * 3.0
    readings = [
        tolerances.measured_noise(smooth + 1e-12 * np.random.default_rng(seed).normal(size=x.size))
        for seed in range(50)
    ]
    assert 0.7e-12 < np.median(readings) < 1.6e-12


def _confident_softmax():
    """32 rows, 3 classes, logits of each row's class at least 10 above the others'
    (``|L| = 7.8e-6``): the well-trained float64 wine cross-entropy state, in miniature."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 6))
    W = rng.normal(size=(6, 3))
    top = np.sort(X @ W, axis=1)
    margin = top[:, -1] - top[:, -2]
    keep = np.argsort(margin)[-32:]
    X, W = X[keep], W * 10.0 / np.min(margin[keep])
    Y = np.eye(3)[np.argmax(X @ W, axis=1)]
    network = Network((6, 3), ("identity",), biases=True, loss="cross-entropy")
    problem = Problem(network, Optimizer("sgd"), "float64", Batches(32))
    return problem, {"W1": W, "b1": np.zeros(3)}, X, Y


def test_softmax_cross_entropy_at_confident_rows_is_noisier_than_eps_times_the_loss():
    problem, params, X, Y = _confident_softmax()
    module = implementations.load("numpy")
    noise = oracle.loss_noise(module, problem, params, X, Y)
    loss = float(numpy_manual.cross_entropy(X @ params["W1"] + params["b1"], Y))
    own = oracle.EPS64 * loss * np.sqrt(Y.size) + oracle.output_rounding(problem, params, X, Y)
    assert noise > 100 * own
    # Without the measured noise the plan's threshold fails the honest gradient.
    kappa = oracle.curvature(module, problem, params, X, Y)
    for measured, passes in ((0.0, False), (noise, True)):
        plan = tolerances.finite_difference_plan(loss, kappa, Y.size, 0.0, measured)
        found = module.gradient_check(
            problem, params, X, Y, step=plan["step"], atol=plan["atol"], rtol=plan["rtol"]
        )
        assert found["passed"] is passes, (measured, found["error"], plan["atol"])


def test_an_honest_confident_softmax_passes_both_oracles_and_one_off_by_one_percent_fails():
    problem, params, X, Y = _confident_softmax()
    honest = oracle.check("numpy", implementations.load("numpy"), problem, 0, params, X, Y)
    for result in honest:
        assert result.passed and not result.inconclusive, (result.checker, result.error)
        assert result.facts["loss_noise"] > 0
    wrong = testing.mutate(implementations.load("numpy"), [SCALED_CROSS_ENTROPY], "ce-1.01")
    for result in oracle.check("numpy", wrong, problem, 0, params, X, Y):
        assert not result.passed and not result.inconclusive, (result.checker, result.error)


def _wine_raw_sigmoid():
    """State 0 of a bfloat16 wine run on raw features (up to 1680), no hidden layer, sigmoid
    outputs, mse: most outputs saturated to exact 0 or 1 in float64."""
    pytest.importorskip("ml_dtypes")
    recipe = Recipe(
        dataset="wine",
        hidden=[],
        activations=["sigmoid"],
        loss="mse",
        biases=True,
        standardize=False,
        optimizer="adam",
        lr=0.01,
        steps=10,
        dtype="bfloat16",
        init_seed=675,
        split_seed=527,
    )
    return initial_point(recipe)


def test_a_loss_saturated_to_exact_values_reads_the_order_below_a_thousand_roundings():
    problem, params, X, Y = _wine_raw_sigmoid()
    taylor = oracle.taylor_test(implementations.load("numpy"), problem, params, X, Y)
    # The measured noise is below one rounding of the loss (0.51): the floor is 20 of those.
    assert taylor["loss_noise"] < oracle.EPS64 * taylor["loss"]
    assert taylor["noise_floor"] < 1e3 * oracle.EPS64 * taylor["loss"] / 10
    assert taylor["passed"] and not taylor["inconclusive"]
    assert taylor["observed_order"] >= 2 - tolerances.TAYLOR_ORDER_TOLERANCE


def test_a_doubled_gradient_of_the_saturated_loss_still_fails():
    problem, params, X, Y = _wine_raw_sigmoid()
    wrong = testing.mutate(implementations.load("numpy"), [DOUBLED_MSE], "mse-2")
    taylor = oracle.taylor_test(wrong, problem, params, X, Y)
    assert not taylor["passed"] and taylor["order"] < 1.25
