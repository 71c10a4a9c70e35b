"""The gradient oracles where rounding, not the gradient, shapes what they measure.

* Outputs saturated toward their targets: the loss is held only to the rounding its outputs
  carry in (``eps |A - Y|`` for a sigmoid at ``A ~ 1``), far above ``eps |L|``; the Taylor floor
  and the finite-difference threshold count it (``oracle.output_rounding``), and a gradient off
  by 1% still fails both.
* A remainder whose ``h^2`` and ``h^3`` terms cancel near the largest steps above the rounding
  floor (wine, bfloat16 weights): the order read with the ``h^3`` term cancelled is 2 for the
  right gradient and 1 for a gradient off by 1%.
"""

from __future__ import annotations

import numpy as np
import pytest
from oracle_helpers import initial_point

import implementations
from compare import Recipe, oracle, testing, tolerances
from implementations.contract import Batches, Network, Optimizer, Problem

#: The half-sse derivative scaled by 1.01: every gradient element 1% too large.
SCALED_HALF_SSE = ("    return A - Y\n", "    return 1.01 * (A - Y)\n")

#: The mse derivative scaled by 1.01.
SCALED_MSE = (
    "    return (2 / (rows * outputs)) * (A - Y)\n",
    "    return (2.02 / (rows * outputs)) * (A - Y)\n",
)


def _saturated_sigmoid():
    """32 rows, one sigmoid output, every target 1 and every pre-activation at least 14
    (``1 - A <= 8e-7``): the float32 breast_cancer state's saturation, in miniature."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 30))
    w = rng.normal(size=(30, 1))
    X = X * np.sign(X @ w)  # every row on the positive side
    w = w * 14.0 / np.min(np.abs(X @ w))
    params = {"W1": w.astype(np.float32).astype(np.float64), "b1": np.zeros(1)}
    network = Network((30, 1), ("sigmoid",), biases=True, loss="half-sse")
    problem = Problem(network, Optimizer("sgd"), "float32", Batches(32))
    return problem, params, X, np.ones((32, 1))


def _by_checker(results):
    return {r.checker: r for r in results}


def test_saturated_outputs_carry_more_rounding_into_the_loss_than_eps_times_it():
    problem, params, X, Y = _saturated_sigmoid()
    carried = oracle.output_rounding(problem, params, X, Y)
    A = 1 / (1 + np.exp(-(X @ params["W1"] + params["b1"])))
    # half-sse: dL/dA = A - Y, so eps * sum |A - Y| |A|.
    assert carried == pytest.approx(oracle.EPS64 * np.sum(np.abs(A - Y) * A), rel=1e-6)
    loss = float(np.sum((A - Y) ** 2) / 2)
    assert carried > 1e3 * oracle.EPS64 * loss


def test_an_honest_gradient_at_saturated_outputs_passes_both_oracles():
    problem, params, X, Y = _saturated_sigmoid()
    results = _by_checker(
        oracle.check("numpy", implementations.load("numpy"), problem, 0, params, X, Y)
    )
    assert set(results) == {"taylor", "scipy.optimize.check_grad"}
    for result in results.values():
        assert result.passed and not result.inconclusive, (result.checker, result.error)
    assert results["scipy.optimize.check_grad"].facts["output_rounding"] > 0


def test_a_gradient_off_by_one_percent_at_saturated_outputs_fails_both_oracles():
    problem, params, X, Y = _saturated_sigmoid()
    wrong = testing.mutate(implementations.load("numpy"), [SCALED_HALF_SSE], "half-sse-1.01")
    results = _by_checker(oracle.check("numpy", wrong, problem, 0, params, X, Y))
    for result in results.values():
        assert not result.passed and not result.inconclusive, (result.checker, result.error)


def test_the_noise_floor_and_the_finite_difference_rounding_add_the_output_term():
    twenty = tolerances.TAYLOR_OUTPUT_ROUNDINGS
    assert tolerances.taylor_noise_floor(1.0, 0.0) == pytest.approx(twenty * oracle.EPS64)
    assert tolerances.taylor_noise_floor(1.0, 1e-10) == pytest.approx(
        twenty * (oracle.EPS64 + 1e-10)
    )
    # The measured noise replaces one rounding of the loss where it is larger.
    assert tolerances.taylor_noise_floor(1.0, 1e-10, 1e-12) == pytest.approx(
        twenty * (1e-12 + 1e-10)
    )
    noisy = tolerances.finite_difference_plan(1e-10, 1e-8, 32, output_rounding=2e-22, noise=1e-20)
    expected = tolerances.LOSS_ROUNDINGS * (1e-20 + 2e-22)
    assert noisy["rounding"] * noisy["step"] / 2 == pytest.approx(expected)
    plain = tolerances.finite_difference_plan(1e-10, 1e-8, 32)
    carried = tolerances.finite_difference_plan(1e-10, 1e-8, 32, output_rounding=2e-22)
    expected = tolerances.LOSS_ROUNDINGS * (oracle.EPS64 * 1e-10 * np.sqrt(32) + 2e-22)
    assert carried["rounding"] * carried["step"] / 2 == pytest.approx(expected)
    assert carried["atol"] > plain["atol"]


def _wine_bfloat16():
    """State 0 of a bfloat16 wine run (raw features up to 1680) whose Taylor remainder changes
    sign between ``h = 6.3e-4`` and ``3.1e-4``."""
    pytest.importorskip("ml_dtypes")
    recipe = Recipe(
        dataset="wine",
        hidden=[4, 2],
        activations=["identity", "identity", "sigmoid"],
        loss="mse",
        biases=False,
        standardize=False,
        optimizer="adamw",
        lr=0.001,
        steps=20,
        dtype="bfloat16",
        init_seed=144,
        split_seed=242,
        weight_decay=0.0,
        batch_size=16,
        batch_seed=84,
        init_scheme="lecun",
    )
    return initial_point(recipe)


def test_a_remainder_whose_cubic_term_cancels_its_square_passes_on_the_cubic_free_order():
    problem, params, X, Y = _wine_bfloat16()
    taylor = oracle.taylor_test(implementations.load("numpy"), problem, params, X, Y)
    least = 2 - tolerances.TAYLOR_ORDER_TOLERANCE
    # The plain order failed here (1.22) under a floor of a thousand roundings of the loss;
    # with the measured noise it reads smaller steps, and the cubic-free one passes too.
    assert taylor["cubic_free_order"] >= least
    assert taylor["passed"] and not taylor["inconclusive"]


def test_a_gradient_off_by_one_percent_fails_the_cubic_free_order_too():
    problem, params, X, Y = _wine_bfloat16()
    wrong = testing.mutate(implementations.load("numpy"), [SCALED_MSE], "mse-1.01")
    taylor = oracle.taylor_test(wrong, problem, params, X, Y)
    assert not taylor["passed"]
    assert taylor["cubic_free_order"] < 1.25 and taylor["observed_order"] < 1.25
    result = next(
        r for r in oracle.check("numpy", wrong, problem, 0, params, X, Y) if r.checker == "taylor"
    )
    assert not result.passed and not result.inconclusive
