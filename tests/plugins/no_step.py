"""A plugin that breaks the contract: it has no ``step``."""

from __future__ import annotations

from implementations import numpy_manual as reference

NAME = "no_step"
DTYPES = reference.DTYPES
train = reference.train
loss_and_grads = reference.loss_and_grads
predict = reference.predict
