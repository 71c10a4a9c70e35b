"""The network by hand in NumPy: forward pass, then backpropagation written out factor by factor.

No autodiff of any kind lives here: every derivative is a line of NumPy below the forward rule it
differentiates, and every chain-rule factor has a name (``dL_dA``, ``dA_dZ``, ``delta``,
``dL_dW``) so that the backward pass reads as the chain rule does. ``backward`` returns those
factors per layer, which is what ``crosscheck explain`` shows a learner.

The same code serves one parameter point (weights ``(in, out)``) and a batch of them (weights
``(B, in, out)``): ``@`` broadcasts over the leading axis and transposes use ``swapaxes(-1, -2)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from implementations.contract import Network, Params, Progress, Trajectory, check_params

NAME = "numpy"

#: Dtypes this implementation computes natively in. NumPy has float16; bfloat16 is the
#: ``ml_dtypes`` scalar type (installed with JAX), looked up by name when first asked for.
DTYPES = ("float64", "float32", "float16", "bfloat16")

#: A diverging run (a learning rate of 1e3) overflows to inf and then NaN. That is a result the
#: harness records and compares (the first non-finite step of each framework), not a warning
#: for the user, just as torch and JAX propagate inf and NaN silently.
NONFINITE_IS_DATA = {"over": "ignore", "invalid": "ignore"}


# Each activation: the forward rule, and right below it the derivative dA/dZ, written in terms of
# Z and A (the sigmoid's derivative is cheapest from its output: s'(z) = s(z) (1 - s(z))).
def sigmoid(Z: np.ndarray) -> np.ndarray:
    """Logistic sigmoid, stable at saturated inputs and computed in ``Z``'s own dtype.

    ``exp(-|z|)`` never overflows, and the two branches are the same function:
    ``1 / (1 + e^-z)`` for ``z >= 0`` and ``e^z / (1 + e^z)`` for ``z < 0``. (scipy's ``expit``
    would do for float32 and float64, but it has no float16 or bfloat16 loop.)
    """
    E = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1 / (1 + E), E / (1 + E)).astype(Z.dtype, copy=False)


def sigmoid_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """dA/dZ of the sigmoid, from its output A."""
    return A * (1 - A)


def identity(Z: np.ndarray) -> np.ndarray:
    """No activation: A = Z."""
    return Z


def identity_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """dA/dZ of the identity: ones."""
    return np.ones_like(Z)


ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_derivative),
    "identity": (identity, identity_derivative),
}


@dataclass
class Layer:
    """Forward values of one layer: ``Z = A_prev @ W``, ``A = activation(Z)``."""

    Z: np.ndarray
    A: np.ndarray


@dataclass
class LayerGradient:
    """The chain-rule factors of one layer, named as in the backward pass.

    ``dL_dA`` is dL/dA of this layer's output; ``dA_dZ`` the activation's derivative;
    ``delta = dL_dA * dA_dZ`` is dL/dZ; ``dL_dW = A_prev^T @ delta``; and
    ``dL_dA_prev = delta @ W^T`` flows on to the layer below.
    """

    dL_dA: np.ndarray
    dA_dZ: np.ndarray
    delta: np.ndarray
    dL_dW: np.ndarray
    dL_dA_prev: np.ndarray


def accumulator(dtype: np.dtype) -> np.dtype:
    """The dtype sums are accumulated in: float32 for the 16-bit types, else ``dtype`` itself.

    torch's and XLA's CPU kernels sum float16 and bfloat16 in float32 and round the result
    once; summing 390 squared errors in bfloat16 itself (8 significant bits) would lose whole
    digits and make NumPy the odd one out for a reason that is no bug of anyone's.
    """
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B`` accumulated in ``accumulator`` precision, rounded to the operands' dtype."""
    dtype = np.result_type(A, B)
    wide = accumulator(dtype)
    return np.matmul(A.astype(wide, copy=False), B.astype(wide, copy=False)).astype(
        dtype, copy=False
    )


def forward(net: Network, params: Params, X: np.ndarray) -> list[Layer]:
    """Run the network; returns one ``Layer`` per weight matrix, input side first."""
    layers = []
    A = X
    for name, activation in zip(net.param_names, net.activations, strict=True):
        activate, _ = ACTIVATIONS[activation]
        Z = matmul(A, params[name])
        A = activate(Z)
        layers.append(Layer(Z=Z, A=A))
    return layers


def loss(A_out: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """``sum((A_out - Y) ** 2) / (2 * Y.size)``, over the last two axes (so batches work)."""
    squared = (A_out - Y) ** 2
    total = np.sum(squared, axis=(-2, -1), dtype=accumulator(squared.dtype))
    return total.astype(squared.dtype, copy=False) / (2 * Y.size)


def backward(
    net: Network, params: Params, X: np.ndarray, Y: np.ndarray, layers: list[Layer]
) -> list[LayerGradient]:
    """Backpropagate the loss through ``layers`` (from ``forward``); one entry per layer."""
    # The loss's own derivative: L = sum((A_L - Y)^2) / (2 N)  =>  dL/dA_L = (A_L - Y) / N.
    dL_dA = (layers[-1].A - Y) / Y.size
    gradients = []
    for index in reversed(range(len(layers))):
        layer = layers[index]
        A_prev = layers[index - 1].A if index > 0 else X
        W = params[net.param_names[index]]
        _, derivative = ACTIVATIONS[net.activations[index]]
        dA_dZ = derivative(layer.Z, layer.A)
        delta = dL_dA * dA_dZ  # dL/dZ = dL/dA * dA/dZ, element by element
        # Z = A_prev @ W  =>  dL/dW = A_prev^T dL/dZ  and  dL/dA_prev = dL/dZ W^T
        dL_dW = matmul(np.swapaxes(A_prev, -1, -2), delta)
        dL_dA_prev = matmul(delta, np.swapaxes(W, -1, -2))
        gradients.append(
            LayerGradient(dL_dA=dL_dA, dA_dZ=dA_dZ, delta=delta, dL_dW=dL_dW, dL_dA_prev=dL_dA_prev)
        )
        dL_dA = dL_dA_prev
    gradients.reverse()
    return gradients


def _cast(net: Network, params: Params, X: np.ndarray, Y: np.ndarray, dtype: str):
    if dtype not in DTYPES:
        raise ValueError(f"{NAME} does not compute in {dtype}; it supports {', '.join(DTYPES)}")
    check_params(net, params)
    dtype = numpy_dtype(dtype)
    cast = {name: np.array(w, dtype=dtype) for name, w in params.items()}
    return cast, np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)


def numpy_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype named ``dtype``; ``bfloat16`` comes from ``ml_dtypes``."""
    if dtype == "bfloat16":
        import ml_dtypes  # optional: installed with JAX; only bfloat16 needs it

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def loss_and_grads(
    net: Network, params_batch: Params, X: np.ndarray, Y: np.ndarray, dtype: str = "float64"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Loss ``(B,)`` and gradients ``{name: (B, in, out)}`` at a batch of parameter points."""
    params, X, Y = _cast(net, params_batch, X, Y, dtype)
    with np.errstate(**NONFINITE_IS_DATA):
        layers = forward(net, params, X)
        gradients = backward(net, params, X, Y, layers)
        losses = loss(layers[-1].A, Y)
    grads = {
        name: g.dL_dW.astype(np.float64) for name, g in zip(net.param_names, gradients, strict=True)
    }
    return losses.astype(np.float64), grads


def predict(net: Network, params: Params, X: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """The network output ``A_L`` for the rows of ``X``, computed in ``dtype``."""
    params, X, _ = _cast(net, params, X, np.zeros(0), dtype)
    with np.errstate(**NONFINITE_IS_DATA):
        return forward(net, params, X)[-1].A.astype(np.float64)


def precision_environment() -> dict[str, object]:
    """The switches that decide NumPy's precision here: floating-point error state, BLAS threads."""
    from threadpoolctl import threadpool_info  # installed with scikit-learn

    # Only NumPy's own BLAS: scipy loads a second copy once its checkers are imported.
    pools = [pool for pool in threadpool_info() if "numpy" in pool.get("filepath", "")]
    return {
        "numpy.errstate": dict(sorted(np.geterr().items())),
        "numpy.blas": ", ".join(f"{p['internal_api']} ({p['num_threads']} threads)" for p in pools),
    }


def train(
    net: Network,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    lr: float,
    steps: int,
    dtype: str = "float64",
    progress: Progress | None = None,
) -> Trajectory:
    """Full-batch gradient descent for ``steps`` updates, recording every step."""
    started = time.perf_counter()
    params, X, Y = _cast(net, params, X, Y, dtype)
    lr = np.asarray(lr, dtype=X.dtype)
    losses = np.empty(steps + 1)
    predictions = np.empty((steps + 1, X.shape[0]), dtype=np.int64)
    weights = {n: np.empty((steps + 1, *w.shape)) for n, w in params.items()}
    grads = {n: np.empty((steps, *w.shape)) for n, w in params.items()}
    report_every = max(1, steps // 100)
    with np.errstate(**NONFINITE_IS_DATA):
        for step in range(steps + 1):
            layers = forward(net, params, X)
            losses[step] = loss(layers[-1].A, Y)
            predictions[step] = np.argmax(layers[-1].A, axis=-1)
            for name, w in params.items():
                weights[name][step] = w
            if step == steps:
                break  # the last state is the trained model: no update follows it
            gradients = backward(net, params, X, Y, layers)
            for name, gradient in zip(net.param_names, gradients, strict=True):
                grads[name][step] = gradient.dL_dW
                params[name] = params[name] - lr * gradient.dL_dW
            if progress is not None and (step + 1) % report_every == 0:
                progress(step + 1)
    return Trajectory(
        framework=NAME,
        dtype=dtype,
        losses=losses,
        grads=grads,
        weights=weights,
        train_predictions=predictions,
        seconds=time.perf_counter() - started,
    )
