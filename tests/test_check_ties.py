"""The training accuracy at a state is judged with the rows a forward's rounding may decide:
an honest framework whose saturated outputs round differently passes, a wrong count fails.

The frameworks are private copies of the NumPy implementation (``test_check_bugs.numpy_copy``)
handed to ``check`` through ``modules=``, so these tests need neither torch nor JAX.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compare.check import check
from compare.recipe import Recipe
from tests.test_check_bugs import numpy_copy

#: Unscaled breast_cancer through leaky_relu layers: the sigmoid outputs of almost every row
#: saturate to 0 in float64 (``exp`` of a large negative input: subnormals or zero), so each
#: row's two outputs tie or nearly tie at the very first state.
SATURATED = {
    "dataset": "breast_cancer",
    "hidden": [4, 64],
    "activations": ["leaky_relu", "leaky_relu", "sigmoid"],
    "loss": "mse",
    "biases": False,
    "standardize": False,
    "optimizer": "momentum",
    "lr": 0.05,
    "steps": 4,
    "dtype": "float64",
    "init_seed": 584,
    "split_seed": 986,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 0.01,
}


def flushing_sigmoid():
    """An honest sigmoid whose subnormal outputs are flushed to zero (as a library that flushes
    denormals computes them): the outputs move by less than the smallest normal number, and a
    row whose outputs are a zero and a subnormal becomes a tie that ``argmax`` breaks by the
    first index."""
    module = numpy_copy()
    rule = module.ACTIVATIONS["sigmoid"]
    honest = rule.function
    tiny = np.finfo(np.float64).tiny

    def function(Z):
        A = honest(Z)
        return np.where(np.abs(A) < tiny, 0.0, A)

    module.ACTIVATIONS = {
        **module.ACTIVATIONS,
        "sigmoid": dataclasses.replace(rule, function=function),
    }
    return module


def correct_count_off_by(rows):
    """Every state's correct count ``rows`` higher than the outputs give."""
    module = numpy_copy()
    honest = module._record

    def record(state, evaluation, labels):
        found = honest(state, evaluation, labels)
        return {**found, "train_correct": found["train_correct"] + rows}

    module._record = record
    return module


def _run(recipe, mutant, mode="both"):
    return check(
        recipe,
        frameworks=("numpy", "mutant"),
        mode=mode,
        modules={"mutant": mutant},
        oracles=False,
        isolate=False,
    )


def _accuracy(result, mode):
    return next(
        c
        for c in result.comparisons
        if c.framework == "mutant" and c.mode == mode and c.quantity == "train_accuracy"
    )


@pytest.mark.parametrize("batch_size", [0, 64])
def test_saturated_outputs_rounded_apart_do_not_fail_the_training_accuracy(batch_size):
    result = _run(Recipe(**SATURATED, batch_size=batch_size), flushing_sigmoid())
    for mode in ("independent", "synced"):
        accuracy = _accuracy(result, mode)
        # The counts do differ (the flushed ties pick the first class) ...
        assert accuracy.max_abs > 0, f"{mode}: the planted rounding must move the count"
        # ... by rows on near ties only.
        assert accuracy.passed, f"{mode}: {accuracy}"
    assert result.verdict == "pass", [c for c in result.comparisons if not c.passed]


@pytest.mark.parametrize("batch_size", [0, 16])
def test_a_correct_count_off_by_a_few_rows_fails_where_no_row_ties(batch_size):
    recipe = Recipe(steps=4, dtype="float64", batch_size=batch_size)
    result = _run(recipe, correct_count_off_by(3))
    assert result.verdict == "fail"
    for mode in ("independent", "synced"):
        accuracy = _accuracy(result, mode)
        assert not accuracy.passed and accuracy.gating, f"{mode}: {accuracy}"
        assert accuracy.first_failing_step == 0


def test_a_correct_count_off_by_more_rows_than_tie_fails_on_saturated_outputs():
    """Even with almost every row a near tie, a count beyond the batch's near ties fails:
    the allowance counts the tied rows, it does not waive the comparison."""
    recipe = Recipe(**SATURATED)
    rows = 549  # the batch (every training row): more than any count of near ties in it
    result = _run(recipe, correct_count_off_by(rows))
    assert result.verdict == "fail"
    assert not _accuracy(result, "synced").passed
