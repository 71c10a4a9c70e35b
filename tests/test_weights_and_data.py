"""The shared starting point: the tutorial's data split and its one draw of initial weights."""

from __future__ import annotations

import numpy as np

from compare import data, weights
from compare.recipe import Recipe


def test_initial_weights_are_the_tutorials_global_seed_draw():
    recipe = Recipe()
    net = recipe.network(4, 3)
    state = np.random.get_state()
    try:
        np.random.seed(10)
        expected_W1 = np.random.normal(scale=0.5, size=(4, 2))
        expected_W2 = np.random.normal(scale=0.5, size=(2, 3))
    finally:
        np.random.set_state(state)
    drawn = weights.initial_weights(net, recipe.init_seed, recipe.init_scale)
    np.testing.assert_array_equal(drawn["W1"], expected_W1)
    np.testing.assert_array_equal(drawn["W2"], expected_W2)


def test_drawing_weights_leaves_the_global_generator_alone():
    state = np.random.get_state()
    weights.initial_weights(Recipe().network(4, 3), 10, 0.5)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) for a, b in zip(state[1:2], after[1:2], strict=True))
    assert state[2:] == after[2:]


def test_iris_split_is_the_tutorials():
    dataset = data.load(Recipe())
    assert dataset.X_train.shape == (130, 4) and dataset.X_test.shape == (20, 4)
    assert dataset.Y_train.shape == (130, 3)
    np.testing.assert_array_equal(dataset.Y_train.sum(axis=1), 1.0)
    assert dataset.class_names == ("setosa", "versicolor", "virginica")
