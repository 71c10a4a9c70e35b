"""The network in JAX: a pure loss function, gradients from ``jax.value_and_grad``.

No derivative is written here. Training is one jitted ``jax.lax.scan`` over the steps, whose
carry is the weights and whose outputs are the per-step records, so the whole trajectory is
computed by XLA in one call. ``loss_and_grads`` is the same ``value_and_grad`` under
``jax.vmap``.

JAX computes in float32 unless ``jax_enable_x64`` is on, so importing this module turns it on;
import it before any JAX array exists (the registry imports it lazily, on first use). Every
array is then built with an explicit dtype.
"""

from __future__ import annotations

import time
from functools import partial

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (x64 must be on before any JAX array exists)
import numpy as np  # noqa: E402

from implementations.contract import (  # noqa: E402
    Network,
    Params,
    Progress,
    Trajectory,
    check_params,
)

NAME = "jax"

#: Dtypes this implementation computes natively in (XLA's CPU backend covers all four).
DTYPES = ("float64", "float32", "float16", "bfloat16")

ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda Z: Z,
}


def forward(net: Network, params: dict[str, jax.Array], X: jax.Array) -> jax.Array:
    """The network output ``A_L``; ``Z = A_prev @ W``, ``A = activation(Z)`` per layer."""
    A = X
    for name, activation in zip(net.param_names, net.activations, strict=True):
        Z = A @ params[name]
        A = ACTIVATIONS[activation](Z)
    return A


def loss(A_out: jax.Array, Y: jax.Array) -> jax.Array:
    """``sum((A_out - Y) ** 2) / (2 * Y.size)``."""
    return jnp.sum((A_out - Y) ** 2) / (2 * Y.size)


def _loss_with_output(params, net, X, Y):
    A_out = forward(net, params, X)
    return loss(A_out, Y), A_out


def _arrays(net: Network, params: Params, X: np.ndarray, Y: np.ndarray | None, dtype: str):
    if dtype not in DTYPES:
        raise ValueError(f"{NAME} does not compute in {dtype}; it supports {', '.join(DTYPES)}")
    check_params(net, params)
    params = {name: jnp.asarray(np.asarray(w), dtype=dtype) for name, w in params.items()}
    X = jnp.asarray(np.asarray(X), dtype=dtype)
    Y = None if Y is None else jnp.asarray(np.asarray(Y), dtype=dtype)
    return params, X, Y


@partial(jax.jit, static_argnames=("net", "steps"))
def _train(net: Network, params, X, Y, lr, steps: int):
    value_and_grad = jax.value_and_grad(_loss_with_output, has_aux=True)

    def step(params, _):
        (step_loss, A_out), grads = value_and_grad(params, net, X, Y)
        updated = jax.tree.map(lambda W, dW: W - lr * dW, params, grads)
        return updated, (step_loss, grads, params, jnp.argmax(A_out, axis=-1))

    final, (losses, grads, history, predictions) = jax.lax.scan(step, params, length=steps)
    # The trained model's loss and predictions: the state after the last update.
    final_loss, final_output = _loss_with_output(final, net, X, Y)
    return final, final_loss, jnp.argmax(final_output, axis=-1), losses, grads, history, predictions


@partial(jax.jit, static_argnames=("net",))
def _batched_loss_and_grads(net: Network, params_batch, X, Y):
    def loss_at(params):
        return loss(forward(net, params, X), Y)

    return jax.vmap(jax.value_and_grad(loss_at))(params_batch)


def loss_and_grads(
    net: Network, params_batch: Params, X: np.ndarray, Y: np.ndarray, dtype: str = "float64"
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Loss ``(B,)`` and gradients ``{name: (B, in, out)}`` at a batch of parameter points."""
    params, X, Y = _arrays(net, params_batch, X, Y, dtype)
    losses, grads = _batched_loss_and_grads(net, params, X, Y)
    return np.asarray(losses, dtype=np.float64), {
        name: np.asarray(grads[name], dtype=np.float64) for name in net.param_names
    }


def predict(net: Network, params: Params, X: np.ndarray, dtype: str = "float64") -> np.ndarray:
    """The network output ``A_L`` for the rows of ``X``, computed in ``dtype``."""
    params, X, _ = _arrays(net, params, X, None, dtype)
    return np.asarray(jax.jit(forward, static_argnums=0)(net, params, X), dtype=np.float64)


def precision_environment() -> dict[str, object]:
    """The configuration that decides JAX's precision: x64, matmul precision, backend, flags."""
    import os

    return {
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "jax.default_backend": jax.default_backend(),
        "jax.device_count": jax.device_count(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
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
    """Full-batch gradient descent as one jitted ``lax.scan``, recording every step.

    ``progress`` is called once, at the end: the scan runs as a single XLA computation.
    """
    started = time.perf_counter()
    params, X, Y = _arrays(net, params, X, Y, dtype)
    lr = jnp.asarray(lr, dtype=dtype)
    final, final_loss, final_predictions, losses, grads, history, predictions = jax.device_get(
        _train(net, params, X, Y, lr, steps)
    )
    if progress is not None:
        progress(steps)

    def with_final(records, last):
        return np.concatenate([np.asarray(records, np.float64), np.asarray(last, np.float64)[None]])

    return Trajectory(
        framework=NAME,
        dtype=dtype,
        losses=with_final(losses, final_loss),
        grads={name: np.asarray(grads[name], dtype=np.float64) for name in net.param_names},
        weights={name: with_final(history[name], final[name]) for name in net.param_names},
        train_predictions=np.concatenate([predictions, final_predictions[None]]).astype(np.int64),
        seconds=time.perf_counter() - started,
    )


def gradient_jaxpr(
    net: Network, params: Params, X: np.ndarray, Y: np.ndarray, dtype: str = "float64"
) -> tuple[str, tuple[str, ...], float, dict[str, np.ndarray]]:
    """The jaxpr JAX builds for the gradient function, and the gradients it computes.

    ``jax.make_jaxpr(jax.grad(loss))`` traces the gradient function into JAX's intermediate
    language: the forward pass, then the backward pass that ``jax.grad`` derived, one primitive
    per line. X and Y are passed as arguments (not closed over) so they appear as named inputs
    rather than as constants.

    Returns:
        ``(jaxpr, inputs, loss, grads)``: the jaxpr as text; the names of its inputs in order
        (the weights as JAX flattens the dict, then ``"X"``, ``"Y"``); the loss; the gradients
        from ``jax.value_and_grad`` as float64 NumPy arrays.
    """
    params, X, Y = _arrays(net, params, X, Y, dtype)

    def loss_of(params, X, Y):
        return loss(forward(net, params, X), Y)

    jaxpr = jax.make_jaxpr(jax.grad(loss_of))(params, X, Y)
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    inputs = (*(path[0].key for path, _ in flat), "X", "Y")
    step_loss, grads = jax.value_and_grad(loss_of)(params, X, Y)
    return (
        str(jaxpr),
        inputs,
        float(step_loss),
        {name: np.asarray(grads[name], dtype=np.float64) for name in net.param_names},
    )
