"""The gradient oracles at binary cross-entropy's convention: where the contract's derivative is
not the loss's (saturated sigmoid outputs below the 1e-12 floor), they report inconclusive with
the reason and the count; everywhere else they still fail a wrong gradient."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import implementations
from compare import oracle, testing
from compare.present import text
from implementations.contract import Batches, Network, Optimizer, Problem

#: The reference with the classic BCE slip: ``(A - Y) / (1 - A)``, the factor ``A`` forgotten.
WRONG_DERIVATIVE = (
    "    return (A - Y) / np.maximum((1 - A) * A, BCE_DERIVATIVE_FLOOR) / (rows * outputs)\n",
    "    return (A - Y) / np.maximum(1 - A, BCE_DERIVATIVE_FLOOR) / (rows * outputs)\n",
)


def _problem(network: Network) -> Problem:
    return Problem(network, Optimizer("sgd"), "float64", Batches(testing.ROWS))


def _unsaturated():
    network = Network(testing.WIDTHS, ("tanh", "tanh", "sigmoid"), loss="binary-cross-entropy")
    params = {name: values[0] for name, values in testing.initial_params(network, 0).items()}
    return _problem(network), params, *testing.data()


def _saturated():
    network, params, X, Y = testing.saturated_binary_cross_entropy()
    return _problem(network), {name: values[0] for name, values in params.items()}, X, Y


def _wrong():
    return testing.mutate(implementations.load("numpy"), [WRONG_DERIVATIVE], "bce-no-A")


def test_a_wrong_bce_gradient_at_an_unsaturated_state_fails_both_oracles():
    problem, params, X, Y = _unsaturated()
    results = oracle.check("numpy", _wrong(), problem, 0, params, X, Y)
    assert [r.checker for r in results] == ["taylor", "scipy.optimize.check_grad"]
    for result in results:
        assert not result.passed and not result.inconclusive, f"{result.checker} let it pass"
        assert result.facts["convention_departures"] == 0


def test_the_right_bce_gradient_at_an_unsaturated_state_passes_both_oracles():
    problem, params, X, Y = _unsaturated()
    for result in oracle.check("numpy", implementations.load("numpy"), problem, 0, params, X, Y):
        assert result.passed and not result.inconclusive, f"{result.checker}: {result}"


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_an_honest_saturated_state_is_inconclusive_with_the_reason_and_count(name):
    pytest.importorskip({"numpy": "numpy", "torch": "torch", "jax": "jax"}[name])
    problem, params, X, Y = _saturated()
    results = oracle.check(name, implementations.load(name), problem, 0, params, X, Y)
    assert len(results) == 2
    for result in results:
        assert result.inconclusive and result.passed, f"{result.checker}: {result}"
        count = result.facts["convention_departures"]
        assert count >= 4, count  # the rows at s = 30 and 120 and their saturated outputs
        assert f"not the loss's derivative at {count} outputs" in result.reason
        line = text.oracle_line(result)
        assert "inconclusive: binary cross-entropy's gradient is by convention" in line, line


def test_departures_count_outputs_below_the_floor_and_nothing_for_other_losses():
    problem, params, X, _ = _saturated()
    module = implementations.load("numpy")
    points = oracle.taylor_points(problem, params)
    departing = oracle.convention_departures(module, problem, points, X)
    A = module.predict(problem, {name: value[None] for name, value in params.items()}, X)[0]
    assert np.array_equal(departing, A * (1 - A) < 1e-12)  # the Taylor steps move no output across
    mse = dataclasses.replace(problem, network=dataclasses.replace(problem.network, loss="mse"))
    assert not oracle.convention_departures(module, mse, points, X).any()
