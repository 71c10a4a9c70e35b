"""The contract every implementation meets, in NumPy terms only.

Conventions, fixed once here and followed by every implementation:

* A network is a stack of dense layers without biases. Layer ``l`` (counted from 1) computes
  ``Z_l = A_{l-1} @ W_l`` and ``A_l = activation_l(Z_l)``, with ``A_0 = X``. Weights are shaped
  ``(in, out)``, so a batch of rows flows left to right.
* The loss is the tutorial's half mean squared error over every element of the target matrix:
  ``L = sum((A_L - Y) ** 2) / (2 * Y.size)``.
* Training is plain full-batch gradient descent: ``W_l <- W_l - lr * dL/dW_l``.
* Steps are counted from 0. Step ``k``'s gradient is taken at the weights *before* update ``k``.
  A trajectory of ``steps`` updates therefore holds ``steps + 1`` weight states (state ``k`` is
  the weights before update ``k``; the last state is the trained model) and ``steps`` gradients.
* Every array that crosses this boundary is a NumPy array. Implementations compute natively in
  the requested dtype and hand back float64 copies, so the harness compares in float64.

Each implementation module exports ``NAME`` (its registry name) and three functions:

* ``train(net, params, X, Y, lr, steps, dtype, progress=None) -> Trajectory``
* ``loss_and_grads(net, params_batch, X, Y, dtype) -> (losses, grads)``: loss and gradients at a
  batch of parameter points at once (leading axis ``B`` on every weight), for oracles and for
  comparing frameworks at the same point.
* ``predict(net, params, X, dtype) -> outputs``: the network output ``A_L`` in float64.

This module must not import any framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: Activations every implementation provides, by name.
ACTIVATIONS = ("sigmoid", "identity")

#: Dtypes an implementation may be asked to compute in.
DTYPES = ("float64", "float32", "float16", "bfloat16")

#: Called by ``train`` with the number of steps completed so far.
Progress = Callable[[int], None]

Params = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Network:
    """The shape of a dense network: layer widths and one activation per layer.

    Attributes:
        widths: Input width, hidden widths, output width, e.g. ``(4, 2, 3)``.
        activations: One activation name per weight layer (``len(widths) - 1`` of them).
    """

    widths: tuple[int, ...]
    activations: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.widths) < 2:
            raise ValueError("a network needs at least an input and an output width")
        if any(int(w) != w or w < 1 for w in self.widths):
            raise ValueError(f"layer widths must be positive integers, got {self.widths}")
        if len(self.activations) != len(self.widths) - 1:
            raise ValueError(
                f"{len(self.widths) - 1} layers need {len(self.widths) - 1} activations, "
                f"got {len(self.activations)}"
            )
        unknown = sorted(set(self.activations) - set(ACTIVATIONS))
        if unknown:
            raise ValueError(f"unknown activation {unknown[0]!r}; choose from {ACTIVATIONS}")

    @property
    def param_names(self) -> tuple[str, ...]:
        """``("W1", "W2", ...)``: the weight names, input side first."""
        return tuple(f"W{layer}" for layer in range(1, len(self.widths)))

    @property
    def param_shapes(self) -> dict[str, tuple[int, int]]:
        """Weight name -> ``(in, out)`` shape."""
        return {
            name: (self.widths[i], self.widths[i + 1]) for i, name in enumerate(self.param_names)
        }

    def describe(self) -> str:
        """``"4-2-3 (sigmoid, sigmoid)"``."""
        return "-".join(map(str, self.widths)) + f" ({', '.join(self.activations)})"


@dataclass
class Trajectory:
    """Everything one framework computed while training, as float64 NumPy arrays.

    Attributes:
        framework: Registry name of the implementation that produced it.
        dtype: The dtype the framework computed in.
        losses: ``(steps + 1,)``: the loss at weight state ``k``; the last entry is the loss of
            the trained model.
        grads: Weight name -> ``(steps, in, out)``: the gradient at weight state ``k``.
        weights: Weight name -> ``(steps + 1, in, out)``: weight state ``k``.
        train_predictions: ``(steps + 1, n_train)``: top-1 class of every training row at
            weight state ``k``.
        seconds: Wall time of ``train``.
        precision: The framework's precision switches before and after training
            (``{"before": {...}, "after": {...}}``), filled in by ``compare.worker``.
    """

    framework: str
    dtype: str
    losses: np.ndarray
    grads: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    train_predictions: np.ndarray
    seconds: float = 0.0
    precision: dict[str, dict[str, object]] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Number of gradient-descent updates recorded."""
        return len(self.losses) - 1

    def final_weights(self) -> dict[str, np.ndarray]:
        """The trained model's weights."""
        return {name: w[-1] for name, w in self.weights.items()}


def check_params(net: Network, params: Params) -> None:
    """Raise ``ValueError`` unless ``params`` holds exactly ``net``'s weights, right shaped.

    A leading batch axis is allowed (as ``loss_and_grads`` takes).
    """
    if list(params) != list(net.param_names):
        raise ValueError(f"expected weights {net.param_names}, got {tuple(params)}")
    for name, shape in net.param_shapes.items():
        if tuple(np.shape(params[name])[-2:]) != shape:
            raise ValueError(f"{name} must be shaped {shape}, got {np.shape(params[name])}")
