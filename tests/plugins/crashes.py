"""A plugin that imports and meets the contract, then crashes while training."""

from __future__ import annotations

from implementations import numpy_manual as reference

NAME = "crashes"
DTYPES = reference.DTYPES


def train(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
    raise RuntimeError("out of cheese")


def step(problem, states, X, Y, rows):
    raise RuntimeError("out of cheese")


def loss_and_grads(problem, params, X, Y):
    return reference.loss_and_grads(problem, params, X, Y)


def predict(problem, params, X):
    return reference.predict(problem, params, X)
