"""Helpers shared by the oracle tests (``test_oracle_noise``, ``test_oracle_rounding``)."""

from __future__ import annotations

import numpy as np

from compare import Recipe, data, weights
from implementations import numpy_manual


def initial_point(recipe: Recipe):
    """``(problem, params, X, Y)`` at ``recipe``'s state 0: its initial weights on its dtype's
    grid (float64 values of the dtype, as the oracles receive a state) and its training rows."""
    dataset = data.load(recipe)
    problem = recipe.problem(dataset)
    grid = numpy_manual.numpy_dtype(recipe.dtype)
    params = {
        name: np.asarray(values, grid).astype(np.float64)
        for name, values in weights.initial_params(recipe, problem.network).items()
    }
    return problem, params, dataset.X_train, dataset.Y_train
