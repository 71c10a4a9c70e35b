"""crosscheck's network, loss and optimizers written with HIPS autograd.

A complete crosscheck implementation (``implementations.contract``) in one module: the forward
pass and the loss in ``autograd.numpy``, their gradient from ``autograd.grad``, and the four
optimizers written out with ``autograd.numpy`` after the contract's (torch's) formulas.

Every function works on all ``P`` parameter points at once: a weight is ``(P, in, out)``, and
``X @ W`` broadcasts ``(R, in) @ (P, in, out)`` to ``(P, R, out)``. The points share nothing:
the loss differentiated is the *sum* of the points' losses, whose gradient with respect to one
point's parameters is that point's own gradient.

It computes in float64 and float32 (``DTYPES``): arrays are cast at the start and every
constant is built in the array's dtype, so autograd's backward pass stays in it too.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections.abc import Callable, Mapping

import autograd
import autograd.numpy as anp
import autograd.scipy.special as special
import numpy as np
from autograd.extend import defvjp, primitive

from implementations.contract import (
    BCE_GRAD_EPS,
    BCE_LOG_FLOOR,
    LEAKY_RELU_SLOPE,
    Network,
    Optimizer,
    Params,
    Problem,
    Progress,
    Sink,
    State,
    grad_quantity,
)

NAME = "autograd"

#: autograd differentiates NumPy code, so it computes in NumPy's float64 and float32.
DTYPES = ("float64", "float32")

# SUPPORTS is left out: this module covers every activation, loss and optimizer, biases and
# minibatches (the contract's default), in the dtypes above.


# --- The network -------------------------------------------------------------------------------


def _ones_like(Z):
    return anp.ones(Z.shape, dtype=Z.dtype)


#: Activation name -> function of ``Z``. Each keeps ``Z``'s dtype; relu's derivative at 0 is
#: 0 and leaky_relu's the slope, as the contract says.
ACTIVATIONS: dict[str, Callable] = {
    # scipy's expit never overflows, unlike 1/(1+e^-z), and keeps its relative accuracy near 0,
    # unlike (tanh(z/2) + 1)/2 (9.4e-14 at z = -30 off by 1e-3, which a saturated BCE's log shows).
    "sigmoid": special.expit,
    "tanh": anp.tanh,
    "relu": lambda Z: Z * (Z > 0),
    "leaky_relu": lambda Z: Z * anp.where(Z > 0, _ones_like(Z), LEAKY_RELU_SLOPE * _ones_like(Z)),
    "gelu": lambda Z: 0.5 * Z * (1 + special.erf(Z / math.sqrt(2))),
    "gelu_tanh": lambda Z: 0.5 * Z * (1 + anp.tanh(math.sqrt(2 / math.pi) * (Z + 0.044715 * Z**3))),
    "identity": lambda Z: Z,
}


def forward(net: Network, params: Mapping, X) -> anp.ndarray:
    """The network's output ``(P, R, O)``; ``X`` is ``(R, in)`` or ``(P, R, in)``."""
    A = X
    for layer, activation in enumerate(net.activations, start=1):
        Z = A @ params[f"W{layer}"]
        if net.biases:
            Z = Z + params[f"b{layer}"][:, None, :]
        A = ACTIVATIONS[activation](Z)
    return A


def losses(net: Network, A, Y) -> anp.ndarray:
    """Each point's loss ``(P,)`` of outputs ``A (P, R, O)`` against targets ``Y``."""
    rows, outputs = A.shape[-2], A.shape[-1]
    squares = anp.sum((A - Y) ** 2, axis=(-2, -1))
    if net.loss == "half-mse":
        return squares / (2 * rows * outputs)
    if net.loss == "mse":
        return squares / (rows * outputs)
    if net.loss == "half-sse":
        return squares / 2
    if net.loss == "cross-entropy":  # A are logits
        log_softmax = A - special.logsumexp(A, axis=-1, keepdims=True)
        return -anp.sum(Y * log_softmax, axis=(-2, -1)) / rows
    if net.loss == "binary-cross-entropy":  # A are probabilities
        terms = binary_cross_entropy_terms(A, anp.broadcast_to(Y, A.shape))
        return anp.sum(terms, axis=(-2, -1)) / (rows * outputs)
    raise ValueError(f"unknown loss {net.loss!r}")


def _clamped_logs(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) is -inf, then clamped
        return np.maximum(np.log(A), BCE_LOG_FLOOR), np.maximum(np.log1p(-A), BCE_LOG_FLOOR)


@primitive
def binary_cross_entropy_terms(A: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Each element's ``-(Y max(log A, -100) + (1 - Y) max(log1p(-A), -100))``, the logs clamped
    as torch's ``BCELoss`` does; its derivative (``defvjp`` below) is the contract's, torch's
    ``(A - Y) / max(A (1 - A), 1e-12)``, where autograd of the clamped logs would give 0 and
    an unbounded ``1 / A``."""
    log_A, log_not_A = _clamped_logs(A)
    return -(Y * log_A + (1 - Y) * log_not_A)


defvjp(
    binary_cross_entropy_terms,
    lambda ans, A, Y: lambda g: g * (A - Y) / np.maximum((1 - A) * A, BCE_GRAD_EPS),
    lambda ans, A, Y: lambda g: g * np.subtract(*_clamped_logs(A)[::-1]),
)


def evaluate(net: Network, params: dict, X, Y) -> tuple[np.ndarray, dict, np.ndarray]:
    """Each point's loss, its gradient (autograd's) and its correct count, at ``params``."""

    def total_loss(params: dict):
        return anp.sum(losses(net, forward(net, params, X), Y))

    grads = autograd.grad(total_loss)(params)
    A = forward(net, params, X)
    loss = losses(net, A, Y)
    correct = np.sum(np.argmax(A, axis=-1) == np.argmax(Y, axis=-1), axis=-1)
    return loss, grads, correct


# --- The optimizers (the contract's formulas: torch.optim's) -----------------------------------


def update(rule: Optimizer, params: dict, grads: dict, state: dict) -> tuple[dict, dict]:
    """One update of every point: the new parameters and optimizer state.

    ``state`` holds ``"step"`` ``(P,)`` (updates already applied) and each parameter's buffers
    under ``"momentum"``, ``"m"``, ``"v"``.
    """
    lr, decay = rule.lr, rule.weight_decay
    new_params: dict = {}
    new_state: dict = {}
    step = state.get("step")
    for name, p in params.items():
        g = grads[name]
        first = None if step is None else _per_point(step == 0, p)
        if rule.name != "adamw":
            g = g + decay * p  # L2 decay, as torch's SGD(weight_decay) and Adam(weight_decay)
        if rule.name == "sgd":
            new_params[name] = p - lr * g
        elif rule.name == "momentum":
            previous = state["momentum"][name]
            # torch copies the gradient into the buffer at the first update (no dampening).
            buffer = anp.where(first, g, rule.momentum * previous + (1 - rule.dampening) * g)
            direction = g + rule.momentum * buffer if rule.nesterov else buffer
            new_params[name] = p - lr * direction
            new_state.setdefault("momentum", {})[name] = buffer
        else:
            if rule.name == "adamw":
                p = p * (1 - lr * decay)  # decoupled decay, before the Adam step
            # The bias corrections in float64, as torch computes them (in Python floats):
            # in float32, 1 - 0.999^t loses five digits to cancellation at small t.
            t = np.asarray(step, dtype=np.float64) + 1
            correction1 = _per_point(1 - rule.beta1**t, p)
            correction2 = _per_point(1 - rule.beta2**t, p)
            m = rule.beta1 * state["m"][name] + (1 - rule.beta1) * g
            v = rule.beta2 * state["v"][name] + (1 - rule.beta2) * g**2
            m_hat = m / correction1
            v_hat = v / correction2
            new_params[name] = p - lr * m_hat / (anp.sqrt(v_hat) + rule.eps)  # eps outside
            new_state.setdefault("m", {})[name] = m
            new_state.setdefault("v", {})[name] = v
    if step is not None:
        new_state["step"] = step + 1
    return new_params, new_state


def _per_point(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``(P,)`` reshaped to broadcast against ``like`` ``(P, ...)``, in ``like``'s dtype."""
    values = np.asarray(values)
    shaped = values.reshape(values.shape + (1,) * (like.ndim - 1))
    return shaped if shaped.dtype == bool else shaped.astype(like.dtype)


# --- The contract's edge: quantity names and float64 NumPy arrays ------------------------------


def _unpack(problem: Problem, state: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
    """Parameters and optimizer state from a contract state, in the compute dtype."""
    dtype = np.dtype(problem.dtype)
    net, rule = problem.network, problem.optimizer
    params = {
        name: np.asarray(state[quantity], dtype=dtype)
        for name, quantity in net.param_quantities.items()
    }
    optimizer_state: dict = {}
    if rule.name != "sgd":
        optimizer_state["step"] = np.asarray(state["state:step"], dtype=np.float64)
        for kind in rule.state_kinds():
            optimizer_state[kind] = {
                name: np.asarray(state[f"state:{kind}:{name}"], dtype=dtype)
                for name in net.param_names
            }
    return params, optimizer_state


def _pack(problem: Problem, params: dict, optimizer_state: dict) -> dict[str, np.ndarray]:
    """A contract state (float64 arrays) from parameters and optimizer state."""
    net, rule = problem.network, problem.optimizer
    state = {quantity: _float64(params[name]) for name, quantity in net.param_quantities.items()}
    if rule.name != "sgd":
        state["state:step"] = _float64(optimizer_state["step"])
        for kind in rule.state_kinds():
            for name in net.param_names:
                state[f"state:{kind}:{name}"] = _float64(optimizer_state[kind][name])
    return state


def _float64(array) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def _records(problem: Problem, params, optimizer_state, loss, grads, correct) -> dict:
    """What the contract records at one state: the state, then what was computed there."""
    return {
        "loss": _float64(loss),
        **{grad_quantity(name): _float64(grads[name]) for name in problem.network.param_names},
        "train_correct": np.asarray(correct, dtype=np.int64),
        **_pack(problem, params, optimizer_state),
    }


# --- The contract's functions -------------------------------------------------------------------


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
    """Train every point of ``initial`` for ``steps`` updates, handing records to ``sink``."""
    dtype = np.dtype(problem.dtype)
    X, Y = np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)
    params, optimizer_state = _unpack(problem, initial)
    for start in range(0, steps + 1, chunk):
        stop = min(start + chunk, steps + 1)
        chunk_records: list[dict] = []
        for step_number, rows in zip(
            range(start, stop), problem.batches.chunk(start, stop), strict=True
        ):
            loss, grads, correct = evaluate(problem.network, params, X[rows], Y[rows])
            chunk_records.append(_records(problem, params, optimizer_state, loss, grads, correct))
            if step_number < steps:
                params, optimizer_state = update(problem.optimizer, params, grads, optimizer_state)
        sink(start, {name: np.stack([r[name] for r in chunk_records]) for name in chunk_records[0]})
        if progress is not None:
            progress(stop)


def step(
    problem: Problem, states: State, X: np.ndarray, Y: np.ndarray, rows: np.ndarray | None
) -> tuple[dict[str, np.ndarray], State]:
    """One training step from each of ``P`` unrelated states: its records and the next states."""
    dtype = np.dtype(problem.dtype)
    X, Y = np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)
    if rows is not None:  # each point's own batch: (P, R, in)
        X, Y = X[rows], Y[rows]
    params, optimizer_state = _unpack(problem, states)
    loss, grads, correct = evaluate(problem.network, params, X, Y)
    records = _records(problem, params, optimizer_state, loss, grads, correct)
    params, optimizer_state = update(problem.optimizer, params, grads, optimizer_state)
    return records, _pack(problem, params, optimizer_state)


def loss_and_grads(
    problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The loss ``(P,)`` and gradients ``{grad:W1: (P, in, out), ...}`` on all of ``X``."""
    dtype = np.dtype(problem.dtype)
    native = {name: np.asarray(values, dtype=dtype) for name, values in params.items()}
    loss, grads, _ = evaluate(
        problem.network, native, np.asarray(X, dtype=dtype), np.asarray(Y, dtype=dtype)
    )
    return _float64(loss), {grad_quantity(name): _float64(g) for name, g in grads.items()}


def predict(problem: Problem, params: Params, X: np.ndarray) -> np.ndarray:
    """The network output ``(P, R, O)`` for every parameter point."""
    dtype = np.dtype(problem.dtype)
    native = {name: np.asarray(values, dtype=dtype) for name, values in params.items()}
    return _float64(forward(problem.network, native, np.asarray(X, dtype=dtype)))


def precision_environment() -> dict[str, object]:
    """What decides this implementation's arithmetic: NumPy's version and its BLAS (``@``)."""
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return {
        "numpy": np.__version__,
        "autograd": importlib.metadata.version("autograd"),
        "numpy.blas": f"{blas.get('name', '?')} {blas.get('version', '')}".strip(),
    }
