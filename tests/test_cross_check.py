"""The three frameworks agree at every step of the tutorial's recipe, and the check bites."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import implementations
from compare import agreement, harness, report
from compare.recipe import Recipe
from implementations import numpy_manual


def _by_quantity(comparisons, framework):
    return {c.quantity: c for c in comparisons if c.framework == framework}


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_every_quantity_agrees_at_every_step(reference_run, reference_comparisons, framework):
    found = _by_quantity(reference_comparisons, framework)
    names = reference_run.network.param_names
    expected = {
        "loss",
        "train_accuracy",
        "test_outputs",
        "test_predictions",
        "test_accuracy",
        *(f"grad:{n}" for n in names),
        *(f"weight:{n}" for n in names),
    }
    assert set(found) == expected
    for comparison in found.values():
        assert comparison.passed, report.failure_message(comparison)
        assert comparison.against == "numpy" and comparison.mode == "independent"
    steps = reference_run.recipe.steps
    assert found["grad:W1"].total == steps * 4 * 2, "every step's gradient must be compared"
    assert found["weight:W2"].total == (steps + 1) * 2 * 3
    # float64 agreement is far tighter than the tolerance: rounding only.
    assert found["grad:W1"].max_abs < 1e-15 and found["weight:W1"].max_abs < 1e-13


@pytest.mark.parametrize("framework", implementations.NAMES)
def test_all_three_reproduce_the_tutorials_test_accuracy(reference_run, framework):
    assert reference_run.test_accuracy(framework) == pytest.approx(0.8)
    trajectory = reference_run.runs[framework].trajectory
    assert trajectory.steps == 5000
    assert trajectory.losses[-1] == pytest.approx(0.0609527124, rel=1e-8)
    assert trajectory.losses[0] > trajectory.losses[-1], "training must lower the loss"


def test_in_process_and_isolated_runs_give_the_same_trajectories(reference_run):
    in_process = harness.run(Recipe(steps=200), isolate=False)
    for name, run in in_process.runs.items():
        isolated = reference_run.runs[name].trajectory
        np.testing.assert_array_equal(run.trajectory.losses, isolated.losses[:201])
        for param in in_process.network.param_names:
            np.testing.assert_array_equal(run.trajectory.grads[param], isolated.grads[param][:200])


def _numpy_copy(name: str):
    """A private copy of the NumPy implementation, to break without touching the real one."""
    spec = importlib.util.spec_from_file_location(name, numpy_manual.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_wrong_sigmoid_derivative_is_caught_at_step_0_in_the_gradients():
    wrong = _numpy_copy("wrong_sigmoid_derivative")
    # The classic slip: dA/dZ written as A instead of A * (1 - A).
    wrong.ACTIVATIONS["sigmoid"] = (wrong.sigmoid, lambda Z, A: A)
    result = harness.run(
        Recipe(steps=50), ["numpy", "torch"], modules={"numpy": numpy_manual, "torch": wrong}
    )
    found = _by_quantity(agreement.compare_run(result), "torch")
    assert not found["grad:W2"].passed and found["grad:W2"].first_failing_step == 0
    assert not found["grad:W1"].passed and found["grad:W1"].first_failing_step == 0
    # The loss at step 0 is computed from the shared initial weights, so it still agrees there;
    # the wrong update shows in the weights and the loss from step 1 on.
    assert found["loss"].first_failing_step == 1
    assert found["weight:W1"].first_failing_step == 1
    assert report.verdict(list(found.values())) == "fail"
    line = report.verdict_line(result, list(found.values()))
    assert "torch grad:W1 differs from numpy first at step 0" in line


def test_a_tiny_error_in_the_update_is_caught_at_the_first_step_it_touches():
    wrong = _numpy_copy("learning_rate_off_by_a_millionth")
    real_train = wrong.train
    wrong.train = lambda net, params, X, Y, lr, *args, **kwargs: real_train(
        net, params, X, Y, lr * (1 + 1e-6), *args, **kwargs
    )
    result = harness.run(
        Recipe(steps=20), ["numpy", "jax"], modules={"numpy": numpy_manual, "jax": wrong}
    )
    found = _by_quantity(agreement.compare_run(result), "jax")
    # Step 0's gradients are taken at the shared initial weights, so they still agree.
    assert found["grad:W1"].first_failing_step > 0
    assert found["weight:W1"].first_failing_step == 1
    assert found["weight:W1"].first_failing_index is not None


def test_compare_series_names_the_step_and_element_of_a_planted_error():
    expected = np.random.default_rng(0).normal(size=(10, 4, 2))
    actual = expected.copy()
    actual[3, 1, 0] += 1e-3
    actual[7, 2, 1] += 1e-2
    facts = agreement.compare_series(actual, expected, agreement.TOLERANCES["float64"])
    assert facts["first_failing_step"] == 3 and facts["first_failing_index"] == (1, 0)
    assert facts["worst_step"] == 7 and facts["worst_index"] == (2, 1)
    assert facts["mismatched"] == 2 and facts["total"] == 80
    assert facts["max_abs"] == pytest.approx(1e-2)


def test_compare_series_uses_the_assert_allclose_rule():
    expected = np.array([[1.0, 0.0]])
    tolerance = agreement.Tolerance(rtol=1e-3, atol=1e-6)
    inside = agreement.compare_series(expected + np.array([[9e-4, 9e-7]]), expected, tolerance)
    outside = agreement.compare_series(expected + np.array([[0, 2e-6]]), expected, tolerance)
    assert inside["first_failing_step"] is None
    assert outside["first_failing_step"] == 0 and outside["first_failing_index"] == (1,)
    assert outside["max_rel"] == np.inf  # relative to an exact zero


def test_non_finite_values_agree_only_with_the_same_value():
    expected = np.array([[np.nan, np.inf, 1.0]])
    same = agreement.compare_series(expected.copy(), expected, agreement.EXACT)
    assert same["first_failing_step"] is None
    different = agreement.compare_series(
        np.array([[np.nan, 1.0, np.nan]]), expected, agreement.EXACT
    )
    assert different["mismatched"] == 2
