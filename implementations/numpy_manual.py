"""The network by hand in NumPy: forward pass, backpropagation and optimizer, written out.

No autodiff of any kind lives here. Design rules:

* Every derivative is a line of NumPy right below the forward rule it differentiates (as in
  micrograd), and every chain-rule factor has a name (``dL_dA``, ``dA_dZ``, ``delta``,
  ``dL_dW``, ``dL_db``, ``dL_dA_prev``), so the backward pass reads as the chain rule does.
  ``autodiff_view`` hands those factors to ``crosscheck explain``.
* Every optimizer update is written out line by line, each formula beside its line, in the order
  ``torch.optim``'s single-tensor code (``_single_tensor_sgd``, ``_single_tensor_adam``)
  computes it, so that rounding happens at the same places. (torch's vectorised CPU kernels
  fuse ``a + alpha * b`` and ``lerp`` into one fused multiply-add, which NumPy cannot express:
  measured on AVX-512, about one element in ten then differs in its last bit. Tolerances, not
  this module, absorb that.)
* One code path serves every point at once: parameters carry a leading point axis ``P``
  (``W`` is ``(P, in, out)``, ``b`` is ``(P, out)``); ``@`` broadcasts over it and transposes
  use ``swapaxes(-1, -2)``. ``train`` and ``step`` call the same ``evaluate`` and ``update``,
  so a bug in one is a bug in both.
* Arithmetic runs in the requested dtype. For float16 and bfloat16, sums, matrix products and
  each elementwise rule run in float32 and are rounded once to the 16-bit type, as torch's and
  XLA's CPU kernels do (``working_dtype``); every stored tensor (activations, gradients,
  optimizer state, parameters) is held in the 16-bit type, as both frameworks hold it.
* Overflow is data: a diverging run's inf and NaN are recorded and compared, not warned about.

Inputs are float64 NumPy arrays; everything handed back is float64 (``train_correct`` int64).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

from implementations.contract import (
    BCE_GRAD_EPS,
    BCE_LOG_FLOOR,
    LEAKY_RELU_SLOPE,
    Optimizer,
    Params,
    Problem,
    Progress,
    Sink,
    State,
    Support,
    check_params,
    grad_quantity,
    initial_state,
    params_of,
)
from implementations.contract import DTYPES as CONTRACT_DTYPES

NAME = "numpy"

#: Dtypes computed natively. bfloat16 is ``ml_dtypes``' type (installed with JAX), looked up by
#: name only when asked for.
DTYPES = CONTRACT_DTYPES

#: Everything the contract names.
SUPPORTS = Support()

#: A diverging run (a learning rate of 1e3) overflows to inf and then NaN, and a saturated
#: binary cross-entropy takes log(0). Those are results the harness records and compares, not
#: warnings for the user, just as torch and JAX propagate inf and NaN silently.
NONFINITE_IS_DATA = {"over": "ignore", "invalid": "ignore", "divide": "ignore"}

#: torch's ``binary_cross_entropy_backward`` divides by ``max(A (1 - A), EPSILON)``, so a
#: saturated output gives a large, finite derivative instead of a division by zero. ``EPSILON``
#: is ``constexpr float EPSILON = 1e-12`` in aten/src/ATen/native/Loss.cpp: the contract's
#: ``BCE_GRAD_EPS`` rounded to float32, 9.99999996e-13 once widened (measured: torch's float64
#: derivative at A = 0, Y = 1 is ``-1 / 9.99999996e-13 / n``).
BCE_DERIVATIVE_FLOOR = float(np.float32(BCE_GRAD_EPS))


def numpy_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype named ``dtype``; ``bfloat16`` comes from ``ml_dtypes``."""
    if dtype not in DTYPES:
        raise ValueError(f"{NAME} does not compute in {dtype}; it supports {', '.join(DTYPES)}")
    if dtype == "bfloat16":
        import ml_dtypes  # optional: installed with JAX; only bfloat16 needs it

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def working_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype sums and elementwise rules run in: float32 for the 16-bit types, else ``dtype``.

    torch's and XLA's CPU kernels compute float16 and bfloat16 in float32 and round the result
    once; summing 390 squared errors in bfloat16 itself (8 significant bits) would lose whole
    digits and make NumPy the odd one out for a reason that is no bug of anyone's.
    """
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def elementwise(rule: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Run ``rule`` in ``working_dtype`` of its first argument and round the result once."""

    @functools.wraps(rule)
    def in_working_precision(*arrays: np.ndarray) -> np.ndarray:
        dtype = arrays[0].dtype
        wide = working_dtype(dtype)
        if wide == dtype and all(getattr(a, "dtype", None) == dtype for a in arrays[1:]):
            # Nothing to widen (float32, float64): the rule itself, without a conversion's
            # Python overhead on every call of every step.
            result = np.asarray(rule(*arrays))
            return result if result.dtype == dtype else result.astype(dtype)
        result = rule(*(np.asarray(a).astype(wide, copy=False) for a in arrays))
        return np.asarray(result).astype(dtype, copy=False)

    return in_working_precision


def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B`` accumulated in ``working_dtype`` precision, rounded to the operands' dtype."""
    if A.dtype == B.dtype and A.dtype.itemsize >= 4:
        return np.matmul(A, B)  # nothing to widen: no conversions
    dtype = np.result_type(A, B)
    wide = working_dtype(dtype)
    return np.matmul(A.astype(wide, copy=False), B.astype(wide, copy=False)).astype(
        dtype, copy=False
    )


def sum_rows(values: np.ndarray) -> np.ndarray:
    """Sum over the row axis (``-2``) in ``working_dtype`` precision, rounded once."""
    return np.sum(values, axis=-2, dtype=working_dtype(values.dtype)).astype(values.dtype)


# ---------------------------------------------------------------------------------------------
# Activations: each forward rule, and right below it the derivative dA/dZ, written in terms of
# Z and A (the sigmoid's and tanh's derivatives are cheapest from their outputs).


@elementwise
def sigmoid(Z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-Z))``, stable at saturated inputs.

    ``exp(-|z|)`` never overflows, and the two branches are the same function:
    ``1 / (1 + e^-z)`` for ``z >= 0`` and ``e^z / (1 + e^z)`` for ``z < 0``.
    """
    # The same numbers as ``E = exp(-|Z|); where(Z >= 0, 1, E) / (1 + E)``, written in place on
    # two buffers, and without a masked operation (``where=``, ``np.where``): a mask that
    # follows the signs of Z costs a mispredicted branch per element, several times the exp.
    E = np.abs(Z)
    np.negative(E, out=E)
    np.exp(E, out=E)
    one_plus_E = 1 + E
    # The numerator max(E, [z >= 0]) is exactly 1 where z >= 0 (0 < E <= 1) and exactly E
    # elsewhere (E >= 0); a NaN input stays NaN (maximum propagates it).
    np.maximum(E, Z >= 0, out=E)
    np.divide(E, one_plus_E, out=E)  # z >= 0: 1 / (1 + e^-z); z < 0: e^z / (1 + e^z)
    return E


@elementwise
def sigmoid_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``A (1 - A)``."""
    return A * (1 - A)


@elementwise
def tanh(Z: np.ndarray) -> np.ndarray:
    """``tanh(Z)``."""
    return np.tanh(Z)


@elementwise
def tanh_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``1 - A^2``."""
    return 1 - A * A


@elementwise
def relu(Z: np.ndarray) -> np.ndarray:
    """``max(Z, 0)`` (NaN stays NaN)."""
    return np.maximum(Z, 0)


@elementwise
def relu_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """1 where ``Z > 0``, else 0: at exactly 0 the derivative is 0, as in torch and JAX."""
    return (Z > 0).astype(Z.dtype)


@elementwise
def leaky_relu(Z: np.ndarray) -> np.ndarray:
    """``Z`` where ``Z > 0``, else ``slope * Z``."""
    return np.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z)


@elementwise
def leaky_relu_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """1 where ``Z > 0``, else ``slope``: at exactly 0 the slope, as torch's kernel
    (``self > 0 ? grad : grad * negval``). ``jax.nn.leaky_relu`` gives 1 there."""
    return np.where(Z > 0, 1, LEAKY_RELU_SLOPE).astype(Z.dtype)


#: Constants of torch's GELU kernels (aten/src/ATen/native/cpu/Activation.cpp).
SQRT_HALF = 1 / math.sqrt(2)  # M_SQRT1_2: Phi(z) = (1 + erf(z / sqrt(2))) / 2
NORMAL_DENSITY = 1 / math.sqrt(2 * math.pi)  # phi(z) = exp(-z^2 / 2) / sqrt(2 pi)
SQRT_2_OVER_PI = math.sqrt(2 / math.pi)  # the tanh approximation's inner scale
GELU_TANH_CUBIC = 0.044715  # and its cubic coefficient


@elementwise
def gelu(Z: np.ndarray) -> np.ndarray:
    """Exact GELU, ``Z Phi(Z)``: torch's ``gelu`` default (``approximate='none'``)."""
    return Z * 0.5 * (1 + erf(Z * SQRT_HALF))


@elementwise
def gelu_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``Phi(Z) + Z phi(Z)``."""
    Phi = 0.5 * (1 + erf(Z * SQRT_HALF))
    phi = NORMAL_DENSITY * np.exp(-0.5 * Z * Z)
    return Phi + Z * phi


@elementwise
def gelu_tanh(Z: np.ndarray) -> np.ndarray:
    """``0.5 Z (1 + tanh(sqrt(2/pi) (Z + 0.044715 Z^3)))``: ``jax.nn.gelu``'s default and torch's
    ``gelu(approximate='tanh')``."""
    Z_cube = Z * Z * Z
    inner = SQRT_2_OVER_PI * (Z + GELU_TANH_CUBIC * Z_cube)
    return 0.5 * Z * (1 + np.tanh(inner))


@elementwise
def gelu_tanh_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``0.5 (1 + tanh(u)) + 0.5 Z (1 - tanh(u)^2) du/dZ`` with
    ``u = sqrt(2/pi) (Z + 0.044715 Z^3)`` and ``du/dZ = sqrt(2/pi) (1 + 3 * 0.044715 Z^2)``."""
    Z_square = Z * Z
    tanh_inner = np.tanh(SQRT_2_OVER_PI * (Z + GELU_TANH_CUBIC * (Z_square * Z)))
    dinner_dZ = SQRT_2_OVER_PI * (1 + 3 * GELU_TANH_CUBIC * Z_square)
    return 0.5 * (1 + tanh_inner) + 0.5 * Z * (1 - tanh_inner * tanh_inner) * dinner_dZ


def identity(Z: np.ndarray) -> np.ndarray:
    """``Z``: no activation."""
    return Z


def identity_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Ones."""
    return np.ones_like(Z)


@dataclass(frozen=True)
class Rule:
    """A function and its derivative, with both formulas as text for ``explain``."""

    function: Callable[..., np.ndarray]
    derivative: Callable[..., np.ndarray]
    formula: str
    derivative_formula: str


#: Activation name -> its rule (``function(Z) -> A``, ``derivative(Z, A) -> dA/dZ``).
ACTIVATIONS: dict[str, Rule] = {
    "sigmoid": Rule(sigmoid, sigmoid_derivative, "1 / (1 + exp(-Z))", "A (1 - A)"),
    "tanh": Rule(tanh, tanh_derivative, "tanh(Z)", "1 - A^2"),
    "relu": Rule(relu, relu_derivative, "max(Z, 0)", "1 if Z > 0 else 0"),
    "leaky_relu": Rule(
        leaky_relu,
        leaky_relu_derivative,
        f"Z if Z > 0 else {LEAKY_RELU_SLOPE} Z",
        f"1 if Z > 0 else {LEAKY_RELU_SLOPE}",
    ),
    "gelu": Rule(
        gelu,
        gelu_derivative,
        "Z Phi(Z), Phi(Z) = (1 + erf(Z / sqrt 2)) / 2",
        "Phi(Z) + Z exp(-Z^2 / 2) / sqrt(2 pi)",
    ),
    "gelu_tanh": Rule(
        gelu_tanh,
        gelu_tanh_derivative,
        "Z (1 + tanh(u)) / 2, u = sqrt(2/pi) (Z + 0.044715 Z^3)",
        "(1 + tanh(u)) / 2 + Z (1 - tanh(u)^2) sqrt(2/pi) (1 + 0.134145 Z^2) / 2",
    ),
    "identity": Rule(identity, identity_derivative, "Z", "1"),
}


# ---------------------------------------------------------------------------------------------
# Losses: each one on the last layer's output A (P, R, O) and targets Y (R, O) or (P, R, O), and
# right below it its derivative dL/dA. They run in working precision and round once, as torch's
# fused loss kernels do.


@elementwise
def half_mse(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``sum((A - Y)^2) / (2 R O)``: the tutorial's loss."""
    rows, outputs = A.shape[-2:]
    return np.sum((A - Y) ** 2, axis=(-2, -1)) / (2 * rows * outputs)


@elementwise
def half_mse_derivative(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``(A - Y) / (R O)``."""
    rows, outputs = A.shape[-2:]
    return (A - Y) / (rows * outputs)


@elementwise
def mse(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``sum((A - Y)^2) / (R O)``: torch ``MSELoss``, Keras ``MeanSquaredError``."""
    rows, outputs = A.shape[-2:]
    return np.sum((A - Y) ** 2, axis=(-2, -1)) / (rows * outputs)


@elementwise
def mse_derivative(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``2 (A - Y) / (R O)``, as torch's ``mse_loss_backward`` (``norm = 2 / numel``)."""
    rows, outputs = A.shape[-2:]
    return (2 / (rows * outputs)) * (A - Y)


@elementwise
def half_sse(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``sum((A - Y)^2) / 2``: the textbook ``E = 1/2 sum (t - o)^2`` of the batch."""
    return np.sum((A - Y) ** 2, axis=(-2, -1)) / 2


@elementwise
def half_sse_derivative(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``A - Y``."""
    return A - Y


def log_softmax(Z: np.ndarray) -> np.ndarray:
    """``Z - log(sum(exp(Z)))`` along the last axis, by the log-sum-exp trick.

    Shifting every row by its largest logit makes that logit 0, so no ``exp`` overflows and the
    sum is at least 1, so its log is finite; the shift cancels exactly in the result.
    """
    shifted = Z - np.max(Z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


@elementwise
def cross_entropy(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``-sum(Y log_softmax(A)) / R``: softmax cross-entropy from logits, mean over rows."""
    rows = A.shape[-2]
    return -np.sum(Y * log_softmax(A), axis=(-2, -1)) / rows


@elementwise
def cross_entropy_derivative(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``(softmax(A) sum(Y) - Y) / R`` per row; with one-hot or probability targets (rows of
    ``Y`` summing to 1) this is the familiar ``(softmax(A) - Y) / R``."""
    rows = A.shape[-2]
    softmax = np.exp(log_softmax(A))
    return (softmax * np.sum(Y, axis=-1, keepdims=True) - Y) / rows


@elementwise
def binary_cross_entropy(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``-sum(Y log A + (1 - Y) log1p(-A)) / (R O)``, each log clamped below at -100, written as
    torch's ``binary_cross_entropy`` kernel writes it (``log1p(-A)``, exact for tiny ``A`` where
    ``log(1 - A)`` loses digits)."""
    rows, outputs = A.shape[-2:]
    log_A = np.maximum(np.log(A), BCE_LOG_FLOOR)
    log_1_minus_A = np.maximum(np.log1p(-A), BCE_LOG_FLOOR)
    return np.sum((Y - 1) * log_1_minus_A - Y * log_A, axis=(-2, -1)) / (rows * outputs)


@elementwise
def binary_cross_entropy_derivative(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``(A - Y) / max(A (1 - A), 1e-12) / (R O)``, as torch's ``binary_cross_entropy_backward``
    (the clamp of the forward's logs is not differentiated: torch does not either)."""
    rows, outputs = A.shape[-2:]
    return (A - Y) / np.maximum((1 - A) * A, BCE_DERIVATIVE_FLOOR) / (rows * outputs)


#: Loss name -> its rule (``function(A, Y) -> (P,)``, ``derivative(A, Y) -> dL/dA``).
LOSSES: dict[str, Rule] = {
    "half-mse": Rule(half_mse, half_mse_derivative, "sum((A - Y)^2) / (2 R O)", "(A - Y) / (R O)"),
    "mse": Rule(mse, mse_derivative, "sum((A - Y)^2) / (R O)", "2 (A - Y) / (R O)"),
    "half-sse": Rule(half_sse, half_sse_derivative, "sum((A - Y)^2) / 2", "A - Y"),
    "cross-entropy": Rule(
        cross_entropy,
        cross_entropy_derivative,
        "-sum(Y log_softmax(A)) / R",
        "(softmax(A) - Y) / R  (rows of Y summing to 1)",
    ),
    "binary-cross-entropy": Rule(
        binary_cross_entropy,
        binary_cross_entropy_derivative,
        "-sum(Y max(log A, -100) + (1 - Y) max(log1p(-A), -100)) / (R O)",
        "(A - Y) / max(A (1 - A), 1e-12) / (R O)",
    ),
}


# ---------------------------------------------------------------------------------------------
# The network: forward pass, then the backward pass, factor by factor.


@dataclass
class Layer:
    """Forward values of one layer: ``Z = A_prev @ W (+ b)``, ``A = activation(Z)``."""

    Z: np.ndarray
    A: np.ndarray


@dataclass
class LayerGradient:
    """The chain-rule factors of one layer, named as in the backward pass.

    ``dL_dA`` is dL/dA of this layer's output; ``dA_dZ`` the activation's derivative;
    ``delta = dL_dA * dA_dZ`` is dL/dZ; ``dL_dW = A_prev^T @ delta``; ``dL_db`` the sum of
    ``delta`` over the rows (``None`` without biases); and ``dL_dA_prev = delta @ W^T`` flows on
    to the layer below (``None`` for the first layer unless asked for: nothing lies below it).
    """

    dL_dA: np.ndarray
    dA_dZ: np.ndarray
    delta: np.ndarray
    dL_dW: np.ndarray
    dL_db: np.ndarray | None
    dL_dA_prev: np.ndarray | None


def forward(problem: Problem, params: Params, X: np.ndarray) -> list[Layer]:
    """Run the network on ``X`` (``(R, in)``, or ``(P, R, in)``: rows per point).

    Args:
        problem: Says the layers and activations.
        params: ``{"W1": (P, in, out), "b1": (P, out), ...}`` in the compute dtype.
        X: Inputs in the compute dtype.

    Returns:
        One ``Layer`` per dense layer, input side first; arrays ``(P, R, out)``.
    """
    net = problem.network
    layers = []
    A = X
    for layer, activation in enumerate(net.activations, start=1):
        Z = matmul(A, params[f"W{layer}"])
        if net.biases:
            Z = Z + params[f"b{layer}"][..., None, :]  # b (P, out) is added to every row
        A = ACTIVATIONS[activation].function(Z)
        layers.append(Layer(Z=Z, A=A))
    return layers


def backward(
    problem: Problem,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    layers: list[Layer],
    *,
    input_gradient: bool = False,
) -> list[LayerGradient]:
    """Backpropagate the loss through ``layers`` (from ``forward``); one entry per layer,
    input side first. ``dL/dX`` (the first layer's ``dL_dA_prev``) feeds no parameter: it is
    computed only when ``input_gradient`` asks (for ``explain``); training skips its matrix
    product, the largest of a step on wide inputs."""
    net = problem.network
    # The loss's own derivative, dL/dA of the last layer (for cross-entropy, whose output
    # activation is the identity, this is already dL/dZ).
    dL_dA = LOSSES[net.loss].derivative(layers[-1].A, Y)
    gradients = []
    for index in reversed(range(len(layers))):
        layer = layers[index]
        A_prev = layers[index - 1].A if index > 0 else X
        W = params[f"W{index + 1}"]
        dA_dZ = ACTIVATIONS[net.activations[index]].derivative(layer.Z, layer.A)
        delta = dL_dA * dA_dZ  # dL/dZ = dL/dA * dA/dZ, element by element
        # Z = A_prev @ W + b  =>  dL/dW = A_prev^T dL/dZ,  dL/db = sum over rows of dL/dZ,
        # and dL/dA_prev = dL/dZ W^T
        dL_dW = matmul(np.swapaxes(A_prev, -1, -2), delta)
        dL_db = sum_rows(delta) if net.biases else None
        dL_dA_prev = matmul(delta, np.swapaxes(W, -1, -2)) if index > 0 or input_gradient else None
        gradients.append(
            LayerGradient(
                dL_dA=dL_dA,
                dA_dZ=dA_dZ,
                delta=delta,
                dL_dW=dL_dW,
                dL_db=dL_db,
                dL_dA_prev=dL_dA_prev,
            )
        )
        dL_dA = dL_dA_prev
    gradients.reverse()
    return gradients


def loss(problem: Problem, A_out: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """The loss of each point, ``(P,)``, from the last layer's output."""
    return LOSSES[problem.network.loss].function(A_out, Y)


@dataclass
class Evaluation:
    """What one state computes on one batch: the forward pass, the loss, the backward pass."""

    layers: list[Layer]
    gradients: list[LayerGradient]
    losses: np.ndarray
    grads: dict[str, np.ndarray]

    @property
    def outputs(self) -> np.ndarray:
        """The last layer's output ``(P, R, O)``."""
        return self.layers[-1].A


def evaluate(
    problem: Problem,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    input_gradient: bool = False,
) -> Evaluation:
    """Forward pass, loss and backward pass at ``params`` on the rows ``X``, ``Y``
    (``input_gradient``: also ``dL/dX``, see ``backward``)."""
    layers = forward(problem, params, X)
    gradients = backward(problem, params, X, Y, layers, input_gradient=input_gradient)
    grads: dict[str, np.ndarray] = {}
    for layer, gradient in enumerate(gradients, start=1):
        grads[f"W{layer}"] = gradient.dL_dW
        if gradient.dL_db is not None:
            grads[f"b{layer}"] = gradient.dL_db
    return Evaluation(layers, gradients, loss(problem, layers[-1].A, Y), grads)


# ---------------------------------------------------------------------------------------------
# The optimizers: torch.optim's arithmetic, one line per tensor operation. ``p`` is a
# parameter, ``grad`` its gradient, ``t`` the update's number counted from 1. Every line's
# result is ``kept`` in the parameter's dtype, as torch keeps every tensor; scalars that vary
# per point (bias corrections) are computed in float64, as torch computes them in Python.


def lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """``start + weight (end - start)``, written as torch's ``lerp`` kernel writes it."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


Kept = Callable[[np.ndarray], np.ndarray]


def sgd_update(
    p: np.ndarray, grad: np.ndarray, opt: Optimizer, kept: Kept
) -> dict[str, np.ndarray]:
    """``torch.optim.SGD`` without momentum."""
    g = kept(grad + opt.weight_decay * p) if opt.weight_decay != 0 else grad  # L2: g + wd p
    p_next = kept(p - opt.lr * g)  # p <- p - lr g
    return {"g": g, "p_next": p_next}


def momentum_update(
    p: np.ndarray,
    grad: np.ndarray,
    buf: np.ndarray,
    first: np.ndarray,
    opt: Optimizer,
    kept: Kept,
) -> dict[str, np.ndarray]:
    """``torch.optim.SGD(momentum=mu, dampening, nesterov)``; ``first`` marks the points whose
    update is their first (torch then copies the gradient into the buffer, without dampening)."""
    mu = opt.momentum
    g = kept(grad + opt.weight_decay * p) if opt.weight_decay != 0 else grad  # L2: g + wd p
    # buf <- g at a point's first update, else mu buf + (1 - dampening) g
    buf_next = np.where(first, g, kept(kept(buf * mu) + (1 - opt.dampening) * g))
    direction = kept(g + mu * buf_next) if opt.nesterov else buf_next  # Nesterov: g + mu buf
    p_next = kept(p - opt.lr * direction)  # p <- p - lr direction
    return {"g": g, "buf": buf_next, "direction": direction, "p_next": p_next}


def adam_update(
    p: np.ndarray,
    grad: np.ndarray,
    m: np.ndarray,
    v: np.ndarray,
    t: np.ndarray,
    opt: Optimizer,
    kept: Kept,
) -> dict[str, np.ndarray]:
    """``torch.optim.Adam`` (L2 decay) and ``torch.optim.AdamW`` (decoupled decay), as
    ``_single_tensor_adam`` computes them; ``t`` is float64, broadcastable to ``p``."""
    decoupled = opt.name == "adamw"
    wd = opt.weight_decay
    wide = p.dtype
    p_decayed = kept(p * (1 - opt.lr * wd)) if decoupled and wd != 0 else p  # p (1 - lr wd)
    g = kept(grad + wd * p) if not decoupled and wd != 0 else grad  # Adam's L2: g + wd p
    m_next = kept(lerp(m, g, 1 - opt.beta1))  # m <- beta1 m + (1 - beta1) g
    v_next = kept(kept(v * opt.beta2) + (1 - opt.beta2) * g * g)  # v <- beta2 v + (1 - beta2) g^2
    bias_correction1 = 1 - opt.beta1**t  # 1 - beta1^t, in float64
    bias_correction2 = 1 - opt.beta2**t  # 1 - beta2^t, in float64
    # m_hat = m / bias_correction1 is folded into the step size, v_hat's correction into the
    # denominator, as torch folds them: lr m_hat / (sqrt(v_hat) + eps), eps outside the root.
    step_size = opt.lr / bias_correction1  # lr / (1 - beta1^t)
    sqrt_v_hat = kept(kept(np.sqrt(v_next)) / np.sqrt(bias_correction2).astype(wide))
    denom = kept(sqrt_v_hat + opt.eps)  # sqrt(v_hat) + eps
    p_next = kept(p_decayed - step_size.astype(wide) * m_next / denom)  # p - step_size m / denom
    return {
        "p_decayed": p_decayed,
        "g": g,
        "m": m_next,
        "v": v_next,
        "bias_correction1": bias_correction1,
        "bias_correction2": bias_correction2,
        "step_size": step_size,
        "sqrt_v_hat": sqrt_v_hat,
        "denom": denom,
        "p_next": p_next,
    }


#: Update values that are one number per point (float64, like torch's Python floats).
PER_POINT_SCALARS = ("bias_correction1", "bias_correction2", "step_size")

#: Optimizer name -> its update, one ``(value name, formula)`` per line, for ``explain``.
UPDATE_FORMULAS: dict[str, tuple[tuple[str, str], ...]] = {
    "sgd": (("g", "grad + weight_decay * p"), ("p_next", "p - lr * g")),
    "momentum": (
        ("g", "grad + weight_decay * p"),
        ("buf", "g at the first update, else momentum * buf + (1 - dampening) * g"),
        ("direction", "g + momentum * buf if nesterov, else buf"),
        ("p_next", "p - lr * direction"),
    ),
    "adam": (
        ("g", "grad + weight_decay * p"),
        ("m", "beta1 * m + (1 - beta1) * g"),
        ("v", "beta2 * v + (1 - beta2) * g^2"),
        ("bias_correction1", "1 - beta1^t"),
        ("bias_correction2", "1 - beta2^t"),
        ("step_size", "lr / bias_correction1"),
        ("sqrt_v_hat", "sqrt(v) / sqrt(bias_correction2)"),
        ("denom", "sqrt_v_hat + eps"),
        ("p_next", "p - step_size * m / denom"),
    ),
    "adamw": (
        ("p_decayed", "p * (1 - lr * weight_decay)"),
        ("m", "beta1 * m + (1 - beta1) * grad"),
        ("v", "beta2 * v + (1 - beta2) * grad^2"),
        ("bias_correction1", "1 - beta1^t"),
        ("bias_correction2", "1 - beta2^t"),
        ("step_size", "lr / bias_correction1"),
        ("sqrt_v_hat", "sqrt(v) / sqrt(bias_correction2)"),
        ("denom", "sqrt_v_hat + eps"),
        ("p_next", "p_decayed - step_size * m / denom"),
    ),
}


def update(
    problem: Problem, state: State, grads: Mapping[str, np.ndarray]
) -> tuple[State, dict[str, dict[str, np.ndarray]]]:
    """One optimizer update of every point: state ``k`` and its gradients -> state ``k + 1``.

    Args:
        problem: The optimizer and network.
        state: State ``k`` in the compute dtype (``state:step`` float64, ``(P,)``).
        grads: Parameter name -> gradient at state ``k``, in the compute dtype.

    Returns:
        The next state, and per parameter the update's named values (``UPDATE_FORMULAS``).
    """
    opt = problem.optimizer
    param_quantities, state_names = _names(problem)
    count = state.get("state:step")  # updates already applied, per point (float64)
    next_state: State = {}
    values: dict[str, dict[str, np.ndarray]] = {}
    for name, quantity in param_quantities:
        dtype = state[quantity].dtype
        wide = working_dtype(dtype)

        def kept(x: np.ndarray, dtype=dtype, wide=wide) -> np.ndarray:
            return np.asarray(x).astype(dtype, copy=False).astype(wide, copy=False)

        def per_point(x: np.ndarray, ndim=state[quantity].ndim) -> np.ndarray:
            return np.reshape(x, (-1,) + (1,) * (ndim - 1))  # (P,) -> (P, 1, ...)

        # Without copies where nothing widens: no update writes into its inputs.
        p = state[quantity].astype(wide, copy=False)
        grad = grads[name].astype(wide, copy=False)
        if opt.name == "sgd":
            named = sgd_update(p, grad, opt, kept)
        elif opt.name == "momentum":
            buf = state[f"state:momentum:{name}"].astype(wide, copy=False)
            named = momentum_update(p, grad, buf, per_point(count == 0), opt, kept)
            next_state[f"state:momentum:{name}"] = named["buf"].astype(dtype, copy=False)
        else:
            m = state[f"state:m:{name}"].astype(wide, copy=False)
            v = state[f"state:v:{name}"].astype(wide, copy=False)
            named = adam_update(p, grad, m, v, per_point(count + 1), opt, kept)
            next_state[f"state:m:{name}"] = named["m"].astype(dtype, copy=False)
            next_state[f"state:v:{name}"] = named["v"].astype(dtype, copy=False)
        next_state[quantity] = named["p_next"].astype(dtype, copy=False)
        values[name] = named
    if count is not None:
        next_state["state:step"] = count + 1
    # The contract's order: parameters, then the optimizer's state.
    ordered = {q: next_state[q] for q in state_names}
    return ordered, values


@functools.lru_cache(maxsize=256)
def _names(problem: Problem) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """``(parameter name, quantity)`` pairs and the state's quantity names, computed once per
    problem: the contract's properties rebuild them on every access, which every step of a
    small network would pay for."""
    return tuple(problem.network.param_quantities.items()), problem.state_names()


# ---------------------------------------------------------------------------------------------
# The contract: NumPy float64 in and out, the compute dtype inside.


def _native_state(problem: Problem, states: Mapping[str, np.ndarray]) -> State:
    """The state's quantities in the compute dtype (``state:step`` stays float64)."""
    dtype = numpy_dtype(problem.dtype)
    check_params(problem.network, params_of(problem.network, states))
    missing = [q for q in problem.state_names() if q not in states]
    if missing:
        raise ValueError(f"the state lacks {', '.join(missing)}")
    return {
        q: np.asarray(states[q], dtype=np.float64 if q == "state:step" else dtype)
        for q in problem.state_names()
    }


def _record(state: State, evaluation: Evaluation, labels: np.ndarray) -> State:
    """What ``train`` records at one state: every ``problem.record_names()`` quantity, in the
    compute dtype as computed (not copied: whoever keeps them converts them, once).

    ``labels`` are the batch's top targets, ``argmax(Y)``: the targets do not change between
    steps, so their argmax is taken once, not once per step (``contract.correct_count``'s rule).
    """
    record: State = {"loss": evaluation.losses}
    for name, grad in evaluation.grads.items():
        record[grad_quantity(name)] = grad
    record["train_correct"] = np.sum(np.argmax(evaluation.outputs, axis=-1) == labels, axis=-1)
    record.update(state)
    return record


def _record_dtype(quantity: str) -> np.dtype:
    """Records leave as float64, ``train_correct`` as int64."""
    return np.dtype(np.int64 if quantity == "train_correct" else np.float64)


def train(
    problem: Problem,
    initial: State,
    X: np.ndarray,
    Y: np.ndarray,
    steps: int,
    *,
    chunk: int,
    sink: Sink,
    progress: Progress | None = None,
) -> None:
    """Train ``P`` points from ``initial`` for ``steps`` updates; records go to ``sink`` in chunks.

    Args:
        problem: Network, optimizer, dtype and batch order.
        initial: State 0 (``contract.initial_state``), float64 with point axis ``P``.
        X: Training inputs ``(N, in)``, float64.
        Y: Training targets ``(N, O)``, float64.
        steps: Number of updates; ``steps + 1`` states are recorded.
        chunk: At most this many states per ``sink`` call.
        sink: ``sink(start, records)`` with arrays ``(stop - start, P, ...)``.
        progress: Called with the number of states recorded so far.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    state = _native_state(problem, initial)
    dtype = numpy_dtype(problem.dtype)
    X_all, Y_all = np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)
    labels_all = np.argmax(Y_all, axis=-1)
    names = problem.record_names()
    param_quantities = _names(problem)[0]
    full = problem.batches.full
    report_every = max(1, (steps + 1) // 100)
    with np.errstate(**NONFINITE_IS_DATA):
        for start in range(0, steps + 1, chunk):
            stop = min(start + chunk, steps + 1)
            records: State | None = None
            for offset, rows in enumerate(problem.batches.chunk(start, stop)):
                k = start + offset
                X_k, Y_k = (X_all, Y_all) if full else (X_all[rows], Y_all[rows])
                params = {name: state[quantity] for name, quantity in param_quantities}
                evaluation = evaluate(problem, params, X_k, Y_k)
                record = _record(state, evaluation, labels_all if full else labels_all[rows])
                if records is None:  # one preallocated array per quantity, per chunk
                    records = {
                        q: np.empty((stop - start, *record[q].shape), dtype=_record_dtype(q))
                        for q in names
                    }
                for quantity in names:  # converted to float64 as it is stored: one copy
                    records[quantity][offset] = record[quantity]
                if k < steps:  # the last state is the trained model: no update follows it
                    state, _ = update(problem, state, evaluation.grads)
                if progress is not None and (k + 1) % report_every == 0:
                    progress(k + 1)
            sink(start, records)
            if progress is not None and stop % report_every != 0:
                progress(stop)  # a chunk's end, unless just reported


def step(
    problem: Problem,
    states: State,
    X: np.ndarray,
    Y: np.ndarray,
    rows: np.ndarray | None,
) -> tuple[State, State]:
    """One full training step from each of ``P`` unrelated states.

    Args:
        problem: Network, optimizer and dtype.
        states: ``P`` states (float64, point axis first), each with its own ``state:step``.
        X: Training inputs ``(N, in)``, float64.
        Y: Training targets ``(N, O)``, float64.
        rows: ``None`` (every point uses all rows) or ``(P, R)`` ints: each point's batch.

    Returns:
        ``(records, next_states)``: what ``train`` records at these states (arrays ``(P, ...)``)
        and the states after one update, float64.
    """
    state = _native_state(problem, states)
    dtype = numpy_dtype(problem.dtype)
    X_all, Y_all = np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)
    labels = np.argmax(Y_all, axis=-1)
    if rows is not None:
        rows = np.asarray(rows)
        points = len(next(iter(state.values())))
        if rows.ndim != 2 or rows.shape[0] != points:
            raise ValueError(f"rows must be shaped ({points}, R), got {rows.shape}")
        X_all, Y_all, labels = X_all[rows], Y_all[rows], labels[rows]  # (P, R, ...)
    points = len(next(iter(state.values())))
    size = _step_slice(problem, X_all.shape[-2], X_all.dtype.itemsize)
    if points <= size:
        return _step_slice_of(problem, state, X_all, Y_all, labels)
    # Slices of points, one after another, each with its own rows where the points have their
    # own; the points share nothing, so each gets the numbers it gets alone.
    parts = []
    for start in range(0, points, size):
        part = slice(start, start + size)
        inputs = (X_all, Y_all, labels)
        if rows is not None:
            inputs = tuple(x[part] for x in inputs)
        parts.append(_step_slice_of(problem, {q: v[part] for q, v in state.items()}, *inputs))
    return tuple(
        {q: np.concatenate([p[i][q] for p in parts]) for q in parts[0][i]} for i in range(2)
    )


#: Bytes of one layer stack's activations ``step`` computes at once, about: more points than
#: fit are stepped in slices (``_step_slice``).
STEP_SLICE_BYTES = 2**20


def _step_slice(problem: Problem, rows: int, itemsize: int) -> int:
    """Points ``step`` evaluates at once: as many as keep every layer's activations (every row
    and unit past the input) near ``STEP_SLICE_BYTES``, at least one.

    Each forward and backward rule is a pass over whole arrays; while they fit in cache the
    passes run from it, past it every pass streams from memory (digits 64-2-10, measured per
    state: 500 us in slices of 4 to 8 points, 900 us in one call of 16 to 32).
    """
    per_point = itemsize * max(rows, 1) * sum(problem.network.widths[1:])
    return max(1, STEP_SLICE_BYTES // max(per_point, 1))


def _step_slice_of(
    problem: Problem, state: State, X: np.ndarray, Y: np.ndarray, labels: np.ndarray
) -> tuple[State, State]:
    """``step``'s arithmetic on one slice of points (inputs already in the compute dtype)."""
    with np.errstate(**NONFINITE_IS_DATA):
        evaluation = evaluate(problem, params_of(problem.network, state), X, Y)
        records = {
            q: value.astype(_record_dtype(q))
            for q, value in _record(state, evaluation, labels).items()
        }
        next_state, _ = update(problem, state, evaluation.grads)
    return records, {q: value.astype(np.float64) for q, value in next_state.items()}


def _native_params(problem: Problem, params: Params) -> dict[str, np.ndarray]:
    check_params(problem.network, params)
    dtype = numpy_dtype(problem.dtype)
    return {name: np.asarray(params[name], dtype=dtype) for name in problem.network.param_names}


def loss_and_grads(
    problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Loss ``(P,)`` and gradients ``{"grad:W1": (P, in, out), ...}`` on all rows of ``X``."""
    native = _native_params(problem, params)
    dtype = numpy_dtype(problem.dtype)
    with np.errstate(**NONFINITE_IS_DATA):
        evaluation = evaluate(problem, native, np.asarray(X, dtype), np.asarray(Y, dtype))
    grads = {grad_quantity(name): g.astype(np.float64) for name, g in evaluation.grads.items()}
    return evaluation.losses.astype(np.float64), grads


def predict(problem: Problem, params: Params, X: np.ndarray) -> np.ndarray:
    """The network output ``(P, R, O)`` for the rows of ``X``, computed in the problem's dtype."""
    native = _native_params(problem, params)
    with np.errstate(**NONFINITE_IS_DATA):
        layers = forward(problem, native, np.asarray(X, dtype=numpy_dtype(problem.dtype)))
    return layers[-1].A.astype(np.float64)


def precision_environment() -> dict[str, object]:
    """The switches that decide NumPy's precision here: floating-point error state, BLAS threads."""
    from threadpoolctl import threadpool_info  # installed with scikit-learn

    # Only NumPy's own BLAS: scipy loads a second copy once its checkers are imported.
    pools = [pool for pool in threadpool_info() if "numpy" in pool.get("filepath", "")]
    return {
        "numpy.errstate": dict(sorted(np.geterr().items())),
        "numpy.blas": ", ".join(f"{p['internal_api']} ({p['num_threads']} threads)" for p in pools),
    }


def _one_point(problem: Problem, params: Params) -> dict[str, np.ndarray]:
    """Parameters without a point axis (a leading axis of length 1 is dropped)."""
    shapes = problem.network.param_shapes
    point = {}
    for name, shape in shapes.items():
        array = np.asarray(params[name], dtype=np.float64)
        point[name] = array[0] if array.shape == (1, *shape) else array
    check_params(problem.network, point, point_axis=False)
    return point


def gradient_check(
    problem: Problem,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    step: float,
    atol: float,
    rtol: float,
) -> dict[str, object]:
    """``scipy.optimize.check_grad`` of the hand-written gradient against forward differences of
    the loss, at one point in float64, judged per element.

    ``check_grad`` returns only the 2-norm of ``gradient - approx_fprime(w, loss, step)`` over
    every parameter, which grows with the parameter count while the oracle's threshold bounds
    one element. So its difference vector is formed here exactly as ``check_grad`` forms it
    (the same ``approx_fprime`` call), and judged element by element: passes when the greatest
    ``|forward difference - gradient|`` is at most ``atol + rtol * max |gradient|``. The 2-norm
    ``check_grad`` would return is given in the detail.
    """
    from scipy.optimize import approx_fprime

    problem64 = dataclasses.replace(problem, dtype="float64")
    point = _one_point(problem, params)
    shapes = problem.network.param_shapes
    sizes = [math.prod(shape) for shape in shapes.values()]
    X64, Y64 = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)

    def unflatten(flat: np.ndarray) -> dict[str, np.ndarray]:
        pieces = np.split(flat, np.cumsum(sizes)[:-1])
        return {n: v.reshape(1, *s) for (n, s), v in zip(shapes.items(), pieces, strict=True)}

    def loss_at(flat: np.ndarray) -> float:
        # The forward pass and loss only: the differences need no gradient.
        return float(loss(problem64, forward(problem64, unflatten(flat), X64)[-1].A, Y64)[0])

    def gradient_at(flat: np.ndarray) -> np.ndarray:
        grads = evaluate(problem64, unflatten(flat), X64, Y64).grads
        return np.concatenate([grads[n].ravel() for n in shapes])

    flat = np.concatenate([point[n].ravel() for n in shapes])
    with np.errstate(**NONFINITE_IS_DATA):
        gradient = gradient_at(flat)
        difference = gradient - approx_fprime(flat, loss_at, step)  # as check_grad forms it
    error = float(np.max(np.abs(difference), initial=0.0))
    norm_of_difference = float(np.sqrt(np.sum(np.abs(difference**2))))  # check_grad's figure
    largest = float(np.max(np.abs(gradient), initial=0.0))
    allowed = atol + rtol * largest
    passed = bool(error <= allowed)
    return {
        "checker": "scipy.optimize.check_grad",
        "passed": passed,
        "error": error,
        "detail": (
            f"greatest |forward difference - gradient| per element = {error:.3g} "
            f"{'<=' if passed else '>'} {allowed:.3g} (atol {atol:.3g} + rtol {rtol:.3g} "
            f"x max |gradient| {largest:.3g}), step {step:.3g}; check_grad's 2-norm over "
            f"{len(flat)} parameters {norm_of_difference:.3g}"
        ),
    }


def autodiff_view(
    problem: Problem,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    state: Mapping[str, np.ndarray] | None = None,
) -> dict[str, object]:
    """Every named factor of one training step at one point, for ``crosscheck explain``.

    Args:
        problem: Network, optimizer and dtype.
        params: One point's parameters (no point axis, or a point axis of length 1).
        X: The batch's inputs ``(R, in)``, float64.
        Y: The batch's targets ``(R, O)``, float64.
        state: Optionally the whole state to step from (quantity keys, point axis of length 1),
            so that a later step's optimizer state is shown; default: ``params`` with the
            optimizer's initial state.

    Returns:
        ``{"title", "text", "loss", "grads", "factors"}``; ``grads`` maps parameter names to
        arrays; ``factors`` holds float64 arrays without the point axis:

        * ``"forward"``: per layer ``{"layer", "activation", "formula", "Z", "A"}``;
        * ``"loss"``: ``{"name", "formula", "derivative_formula", "value", "dL_dA"}``;
        * ``"layers"``: per layer, input side first, ``{"layer", "activation",
          "derivative_formula", "dL_dA", "dA_dZ", "delta", "dL_dW", "dL_db", "dL_dA_prev"}``
          (``dL_db`` is ``None`` without biases);
        * ``"update"``: ``{"optimizer", "t", "lines": UPDATE_FORMULAS[optimizer],
          "values": {parameter: {value name: array}}}``.
    """
    net = problem.network
    if state is None:
        start = initial_state(problem, {n: w[None] for n, w in _one_point(problem, params).items()})
    else:
        start = {q: np.asarray(state[q], dtype=np.float64) for q in problem.state_names()}
    native = _native_state(problem, start)
    dtype = numpy_dtype(problem.dtype)
    X_n, Y_n = np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)
    with np.errstate(**NONFINITE_IS_DATA):
        evaluation = evaluate(problem, params_of(net, native), X_n, Y_n, input_gradient=True)
        _, update_values = update(problem, native, evaluation.grads)

    def plain(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else np.asarray(x, dtype=np.float64)[0]

    forward_factors = [
        {
            "layer": number,
            "activation": activation,
            "formula": ACTIVATIONS[activation].formula,
            "Z": plain(layer.Z),
            "A": plain(layer.A),
        }
        for number, (activation, layer) in enumerate(
            zip(net.activations, evaluation.layers, strict=True), start=1
        )
    ]
    loss_rule = LOSSES[net.loss]
    loss_value = float(evaluation.losses.astype(np.float64)[0])
    layer_factors = [
        {
            "layer": number,
            "activation": activation,
            "derivative_formula": ACTIVATIONS[activation].derivative_formula,
            "dL_dA": plain(g.dL_dA),
            "dA_dZ": plain(g.dA_dZ),
            "delta": plain(g.delta),
            "dL_dW": plain(g.dL_dW),
            "dL_db": plain(g.dL_db),
            "dL_dA_prev": plain(g.dL_dA_prev),
        }
        for number, (activation, g) in enumerate(
            zip(net.activations, evaluation.gradients, strict=True), start=1
        )
    ]
    t = float(native["state:step"][0]) + 1 if "state:step" in native else None
    factors = {
        "forward": forward_factors,
        "loss": {
            "name": net.loss,
            "formula": loss_rule.formula,
            "derivative_formula": loss_rule.derivative_formula,
            "value": loss_value,
            "dL_dA": plain(evaluation.gradients[-1].dL_dA),
        },
        "layers": layer_factors,
        "update": {
            "optimizer": problem.optimizer.name,
            "t": t,
            "lines": UPDATE_FORMULAS[problem.optimizer.name],
            "values": {
                name: {
                    key: float(np.ravel(value)[0]) if key in PER_POINT_SCALARS else plain(value)
                    for key, value in named.items()
                }
                for name, named in update_values.items()
            },
        },
    }
    grads = {name: plain(g) for name, g in evaluation.grads.items()}
    return {
        "title": f"NumPy by hand: the chain rule, factor by factor ({problem.dtype})",
        "text": "\n".join(_view_lines(problem, factors)),
        "loss": loss_value,
        "grads": grads,
        "factors": factors,
    }


def _numbered(formula: str, layer: int) -> str:
    """A formula with ``Z`` and ``A`` named for ``layer``: ``A (1 - A)`` -> ``A2 (1 - A2)``."""
    return re.sub(r"\b([ZA])\b", rf"\g<1>{layer}", formula)


def _shape(x: np.ndarray | None) -> str:
    return "" if x is None else f"  {tuple(np.shape(x))}"


def _view_lines(problem: Problem, factors: dict) -> list[str]:
    """The factors as ready-to-print lines: each name, its formula and its shape."""
    net = problem.network
    last = net.layers
    lines = ["forward:"]
    for f in factors["forward"]:
        n = f["layer"]
        bias = f" + b{n}" if net.biases else ""
        lines.append(f"  Z{n} = A{n - 1} @ W{n}{bias}{_shape(f['Z'])}")
        lines.append(f"  A{n} = {f['activation']}(Z{n}) = {_numbered(f['formula'], n)}")
    loss_factor = factors["loss"]
    loss_formula = _numbered(loss_factor["formula"], last)
    lines.append(f"  L = {loss_formula} = {loss_factor['value']:.10g}  ({net.loss})")
    lines.append("backward (output side first):")
    lines.append(
        f"  dL/dA{last} = {_numbered(loss_factor['derivative_formula'], last)}"
        f"{_shape(loss_factor['dL_dA'])}"
    )
    for f in reversed(factors["layers"]):
        n = f["layer"]
        derivative = _numbered(f["derivative_formula"], n)
        lines.append(f"  dA{n}/dZ{n} = {derivative}{_shape(f['dA_dZ'])}")
        lines.append(f"  delta{n} = dL/dA{n} * dA{n}/dZ{n}{_shape(f['delta'])}")
        lines.append(f"  dL/dW{n} = A{n - 1}^T @ delta{n}{_shape(f['dL_dW'])}")
        if f["dL_db"] is not None:
            lines.append(f"  dL/db{n} = sum of delta{n} over rows{_shape(f['dL_db'])}")
        if n > 1:
            lines.append(f"  dL/dA{n - 1} = delta{n} @ W{n}^T{_shape(f['dL_dA_prev'])}")
    update_factor = factors["update"]
    t = update_factor["t"]
    lines.append(
        f"update ({update_factor['optimizer']}"
        + (f", t = {t:g}" if t is not None else "")
        + "), for every parameter p with gradient grad:"
    )
    for name, formula in update_factor["lines"]:
        lines.append(f"  {name} = {formula}")
    return lines
