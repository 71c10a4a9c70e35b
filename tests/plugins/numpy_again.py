"""An honest second implementation at no cost, loaded as a plugin by path: the NumPy reference
under another name. It agrees with the reference to the last bit, so the command-line tests can
run a real two-framework check without importing torch or JAX."""

from __future__ import annotations

from implementations import numpy_manual as reference

NAME = "numpy_again"
DTYPES = reference.DTYPES
SUPPORTS = reference.SUPPORTS
train = reference.train
step = reference.step
loss_and_grads = reference.loss_and_grads
predict = reference.predict
gradient_check = reference.gradient_check
precision_environment = reference.precision_environment
