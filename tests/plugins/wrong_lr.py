"""A deliberately wrong implementation, loaded as a plugin by path: the NumPy reference with a
learning rate 2% too large. Every gradient at a given state is right; only the update is
wrong, which is the kind of bug the synced step must catch in every dtype."""

from __future__ import annotations

import dataclasses

from implementations import numpy_manual as reference

NAME = "wrong_lr"
DTYPES = reference.DTYPES
SUPPORTS = reference.SUPPORTS

#: How much too large the learning rate is.
FACTOR = 1.02


def _wrong(problem):
    optimizer = dataclasses.replace(problem.optimizer, lr=problem.optimizer.lr * FACTOR)
    return dataclasses.replace(problem, optimizer=optimizer)


def train(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
    return reference.train(
        _wrong(problem), initial, X, Y, steps, chunk=chunk, sink=sink, progress=progress
    )


def step(problem, states, X, Y, rows):
    return reference.step(_wrong(problem), states, X, Y, rows)


def loss_and_grads(problem, params, X, Y):
    return reference.loss_and_grads(problem, params, X, Y)


def predict(problem, params, X):
    return reference.predict(problem, params, X)
