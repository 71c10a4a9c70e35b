"""Helpers shared by the teaching tests (``test_explain``, ``test_examples``): a deliberately
wrong implementation to hand in through ``modules=``."""

from __future__ import annotations

import dataclasses
import types

import implementations


def wrong_learning_rate(factor: float = 1.5) -> types.ModuleType:
    """The NumPy implementation with every update taken at ``factor`` times the learning rate
    (its gradients, loss and views are right): an update-rule bug."""
    real = implementations.load("numpy")
    module = types.ModuleType("wrong_learning_rate")
    module.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})

    def faster(problem):
        optimizer = dataclasses.replace(problem.optimizer, lr=problem.optimizer.lr * factor)
        return dataclasses.replace(problem, optimizer=optimizer)

    module.train = lambda problem, *args, **kwargs: real.train(faster(problem), *args, **kwargs)
    module.step = lambda problem, *args, **kwargs: real.step(faster(problem), *args, **kwargs)
    return module
