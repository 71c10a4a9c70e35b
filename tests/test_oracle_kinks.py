"""The gradient oracles at a relu kink: where a pre-activation sits at 0 (common on the 16-bit
weight grids) the loss has no derivative, and a failed Taylor order or finite difference there
is reported inconclusive with the count; a wrong relu gradient away from the kink still fails."""

from __future__ import annotations

import numpy as np

import implementations
from compare import oracle, testing
from implementations.contract import Batches, Network, Optimizer, Problem

#: The reference's relu derivative with the slip of leaky_relu's slope for relu's 0.
WRONG_RELU = (
    "    return (Z > 0).astype(Z.dtype)\n",
    "    return np.where(Z > 0, 1.0, 0.25).astype(Z.dtype)\n",
)


def _case(at_kink: bool):
    network = Network((2, 2, 1), ("relu", "identity"), loss="half-mse")
    problem = Problem(network, Optimizer("sgd"), "float64", Batches(3))
    X = np.array([[1.0, -2.0], [3.0, -1.0], [-2.0, 1.0]])
    Y = np.array([[0.5], [1.0], [0.7]])
    # Row 0's first pre-activation 1 * 2 - 2 * 1 is exactly 0 at the kinked weights (0.6 else),
    # and the Taylor test's direction moves it up, onto relu's other side.
    W1 = np.array([[2.0, 0.5], [1.0 if at_kink else 0.7, -0.3]])
    params = {"W1": W1, "W2": np.array([[0.8], [-0.6]])}
    return problem, params, X, Y


def test_kinks_counts_pre_activations_at_or_across_zero_and_nothing_else():
    problem, params, X, _ = _case(at_kink=True)
    point = oracle.flatten(problem, params)[None]
    assert oracle.kinks(problem, point, X) == 1
    problem, params, X, _ = _case(at_kink=False)
    point = oracle.flatten(problem, params)[None]
    assert oracle.kinks(problem, point, X) == 0
    # Across 0 between the points, or within reach of it at the first.
    moved = point.copy()
    moved[0, 2] = 1.2  # W1[1, 0]: row 0's first pre-activation goes from 0.6 past 0 to -0.4
    assert oracle.kinks(problem, np.vstack([point, moved]), X) == 1
    assert oracle.kinks(problem, point, X, reach=0.31) == 1  # 0.6 within 0.31 * max|x| = 0.62
    assert oracle.kinks(problem, point, X, reach=0.1) == 0


def test_an_honest_gradient_at_a_kink_is_inconclusive_with_the_reason():
    problem, params, X, Y = _case(at_kink=True)
    numpy = implementations.load("numpy")
    taylor = next(
        r for r in oracle.check("numpy", numpy, problem, 0, params, X, Y) if r.checker == "taylor"
    )
    assert taylor.passed and taylor.inconclusive
    assert taylor.facts["kinks"] == 1 and "kink" in taylor.reason


def test_a_wrong_relu_gradient_away_from_the_kink_still_fails():
    problem, params, X, Y = _case(at_kink=False)
    wrong = testing.mutate(implementations.load("numpy"), [WRONG_RELU], "relu-slope")
    results = oracle.check("numpy", wrong, problem, 0, params, X, Y)
    assert results and not any(r.passed for r in results), [(r.checker, r.error) for r in results]
    assert all(r.facts["kinks"] == 0 for r in results)
