"""The network in JAX: a pure loss function, gradients from ``jax.value_and_grad``, updates
from optax.

Design rules:

* No derivative is written here but where the contract fixes one by convention (binary
  cross-entropy's floor) or by its rounding (the sigmoid's and tanh's from their 16-bit output,
  ``rounded_once``). ``loss_of_params`` is a pure function of the parameters;
  ``jax.value_and_grad`` differentiates it. Activations come from ``jax.nn`` (in float16 and
  bfloat16 computed in float32 and rounded once, ``rounded_once``) and the
  cross-entropy from ``optax.softmax_cross_entropy``; the update is optax's ``sgd`` / ``adam``
  / ``adamw``, each convention set explicitly so that the mathematics is the contract's (torch's
  formulas, ``implementations.contract.Optimizer``). Where optax and torch round in a
  different order, the comment at the transformation says how.
* One training step (``training_step``) serves ``train``, ``step`` and the benchmarks, so an
  update bug shows in all of them.
* Points: every function is written for one parameter point and mapped over the leading point
  axis with ``jax.vmap``. ``train`` is ``vmap`` over a jitted ``lax.scan`` of ``chunk`` steps, so
  a batch of seeds trains as one XLA computation, and a shared ``X`` against many weight
  matrices is one large matrix product.
* Minibatches: a partial last batch makes the shapes ragged, and ``lax.scan`` needs one shape.
  Each step's rows are padded to the batch size with a 0/1 row weight, and every sum over
  rows is weighted and divided by the true row count, so padding changes no number (the
  padded rows contribute exact zeros).
* NumPy at the boundary: arrays come in as float64 NumPy, are cast once to the requested
  dtype, and records go back as float64 (``int64`` for ``train_correct``). Inside, the optax
  state is converted to and from the contract's names (``state:step`` from optax's ``count``,
  ``state:m``/``state:v`` from ``mu``/``nu``, ``state:momentum`` from ``trace``) at the jit
  boundary, so ``train``, ``step`` and a resumed run all start from a contract ``State``.
* JAX computes in float32 unless ``jax_enable_x64`` is on, so importing this module turns it on;
  import it before any JAX array exists (the registry imports it lazily, on first use). Every
  array is built with an explicit dtype. Never draws random numbers.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (x64 must be on before any JAX array exists)
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

from implementations.contract import (  # noqa: E402
    BCE_GRAD_EPS,
    BCE_LOG_FLOOR,
    DTYPES,
    LEAKY_RELU_SLOPE,
    Network,
    Optimizer,
    Params,
    Problem,
    Progress,
    Sink,
    State,
    Support,
    check_params,
    grad_quantity,
    param_quantity,
)

NAME = "jax"

#: XLA's CPU backend computes in all four dtypes natively.
SUPPORTS = Support()

__all__ = [
    "DTYPES",
    "NAME",
    "SUPPORTS",
    "autodiff_view",
    "gradient_check",
    "loss_and_grads",
    "precision_environment",
    "predict",
    "step",
    "train",
]


#: Options of every compilation here. XLA may skip the rounding of a 16-bit intermediate that is
#: widened again right after (``xla_allow_excess_precision``, on by default): a bfloat16 sigmoid
#: output fed to the loss's float32 ``log1p`` then reaches it unrounded. Whether that happens
#: depends on XLA's fusion choices, so it changed with the number of points stepped at once
#: (measured: wine, binary cross-entropy in bfloat16, one state of 285 stepped together got
#: ``sigmoid(6.24)`` = 0.99805 where the rounded value is 1.0, whose log is clamped at -100:
#: a loss of 0.727 against 4.656 alone and in torch). The contract rounds every activation
#: to the dtype, so excess precision is off in the jits that train, step, evaluate and predict.
#: (The oracles' jits compute in float64, and the libraries' checkers trace them inside jits of
#: their own, where XLA takes compiler options only at the top level.)
COMPILER_OPTIONS = {"xla_allow_excess_precision": False}


def leaky_relu(Z: jax.Array) -> jax.Array:
    """``Z`` above zero, ``LEAKY_RELU_SLOPE * Z`` at and below it.

    Not ``jax.nn.leaky_relu``: that is ``where(Z >= 0, ...)``, whose derivative at exactly 0 is
    1, while torch (and the contract) take the slope there. The values are the same.
    """
    return jnp.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z)


def rounded_once(
    function: Callable[[jax.Array], jax.Array],
    derivative_from_output: Callable[[jax.Array], jax.Array] | None = None,
) -> Callable[[jax.Array], jax.Array]:
    """``function`` as the contract computes it in float16 and bfloat16: in float32, rounded once.

    ``jax.nn.sigmoid`` on bfloat16 rounds after its negate, exp, add and divide, so about one
    value in five is an ulp off torch's CPU kernel (float32 inside, one rounding), and in a
    saturated bfloat16 run that ulp flips a term. In 16 bits the returned function widens ``Z``
    to float32, applies ``function`` and rounds the result once; its derivative
    (``jax.custom_jvp``) is the upstream gradient times ``dA/dZ``, both in float32, rounded once.
    ``dA/dZ`` comes from the rounded output through ``derivative_from_output`` where torch's
    backward uses the saved output (sigmoid, tanh), and otherwise from ``jax.jvp`` of
    ``function`` at ``Z`` in float32, as torch's backward uses the input (gelu, relu). float32
    and float64 get ``function`` itself: no conversions.
    """

    @jax.custom_jvp
    def in_float32(Z: jax.Array) -> jax.Array:
        return function(Z.astype(jnp.float32)).astype(Z.dtype)

    @in_float32.defjvp
    def in_float32_jvp(primals, tangents):
        (Z,), (Z_dot,) = primals, tangents
        wide_Z, wide_Z_dot = Z.astype(jnp.float32), Z_dot.astype(jnp.float32)
        if derivative_from_output is None:
            wide_A, wide_A_dot = jax.jvp(function, (wide_Z,), (wide_Z_dot,))
            A = wide_A.astype(Z.dtype)
        else:
            A = function(wide_Z).astype(Z.dtype)
            wide_A_dot = wide_Z_dot * derivative_from_output(A.astype(jnp.float32))
        return A, wide_A_dot.astype(Z.dtype)

    def activation(Z: jax.Array) -> jax.Array:
        return function(Z) if jnp.dtype(Z.dtype).itemsize >= 4 else in_float32(Z)

    activation.__name__ = getattr(function, "__name__", "activation")
    activation.__doc__ = function.__doc__
    return activation


#: Activation name -> function of ``Z``, each rounded once in 16 bits (``rounded_once``).
#: ``jax.nn.gelu`` defaults to the tanh approximation, so both forms pass ``approximate``
#: explicitly (the exact form is torch's default). The sigmoid's and tanh's derivatives are
#: written from the output, in the order torch's backward kernels multiply.
ACTIVATIONS = {
    "sigmoid": rounded_once(jax.nn.sigmoid, lambda A: (1 - A) * A),
    "tanh": rounded_once(jax.nn.tanh, lambda A: 1 - A * A),
    "relu": rounded_once(jax.nn.relu),
    "leaky_relu": rounded_once(leaky_relu),
    "gelu": rounded_once(partial(jax.nn.gelu, approximate=False)),
    "gelu_tanh": rounded_once(partial(jax.nn.gelu, approximate=True)),
    "identity": lambda Z: Z,
}


def forward_layers(
    net: Network,
    params: Mapping[str, jax.Array],
    X: jax.Array,
    taps: Mapping[str, jax.Array] | None = None,
) -> list[tuple[jax.Array, jax.Array]]:
    """``(Z_l, A_l)`` of every layer: ``Z = A_prev @ W (+ b)``, ``A = activation(Z)``.

    ``taps`` adds a (zero) array to ``Z{l}`` or ``A{l}`` by name, so that the gradient with
    respect to a tap is ``dL/dZ_l`` or ``dL/dA_l`` (``autodiff_view`` names jaxpr variables with
    them); training never passes it.
    """
    taps = taps or {}
    layers = []
    A = X
    for layer, activation in enumerate(net.activations, start=1):
        Z = A @ params[f"W{layer}"]
        if net.biases:
            Z = Z + params[f"b{layer}"]
        Z = Z + taps[f"Z{layer}"] if f"Z{layer}" in taps else Z
        A = ACTIVATIONS[activation](Z)
        A = A + taps[f"A{layer}"] if f"A{layer}" in taps else A
        layers.append((Z, A))
    return layers


def forward(net: Network, params: Mapping[str, jax.Array], X: jax.Array) -> jax.Array:
    """The network output ``A_L``."""
    return forward_layers(net, params, X)[-1][1]


def clamped_log(P: jax.Array) -> jax.Array:
    """``max(log(P), BCE_LOG_FLOOR)``, as torch's ``BCELoss`` clamps each log (never
    differentiated: ``binary_cross_entropy_terms`` gives its own derivative)."""
    return jnp.maximum(jnp.log(P), jnp.asarray(BCE_LOG_FLOOR, P.dtype))


def clamped_log1p_neg(A: jax.Array) -> jax.Array:
    """``max(log1p(-A), BCE_LOG_FLOOR)``: torch's ``BCELoss`` writes ``log(1 - A)`` this way,
    exact where ``A`` is tiny."""
    return jnp.maximum(jnp.log1p(-A), jnp.asarray(BCE_LOG_FLOOR, A.dtype))


@jax.custom_vjp
def binary_cross_entropy_terms(A: jax.Array, Y: jax.Array) -> jax.Array:
    """Each element's ``-(Y max(log A, -100) + (1 - Y) max(log1p(-A), -100))``, whose derivative
    is the contract's, not autodiff's.

    The contract takes torch's backward, ``(A - Y) / max(A (1 - A), BCE_GRAD_EPS)``, which is
    the derivative of the unclamped loss floored at saturation. Differentiating the clamped logs
    gives something else where it matters: 0 where a clamp binds and an unbounded ``1 / A``
    where ``A (1 - A) < BCE_GRAD_EPS`` (at ``A = 9.4e-14``, ``Y = 1``, ``dL/dZ`` 10 times
    torch's; ``compare.testing.check_saturated``). ``jax.custom_vjp`` is JAX's way to state a
    derivative by convention; the forward values are the clamped logs, unchanged.
    """
    return -(Y * clamped_log(A) + (1 - Y) * clamped_log1p_neg(A))


def _binary_cross_entropy_forward(A: jax.Array, Y: jax.Array):
    return binary_cross_entropy_terms(A, Y), (A, Y)


def _binary_cross_entropy_backward(residuals, cotangent: jax.Array):
    A, Y = residuals
    # torch's binary_cross_entropy_backward: grad * (A - Y) / max((1 - A) A, EPSILON).
    dL_dA = cotangent * (A - Y) / jnp.maximum((1 - A) * A, jnp.asarray(BCE_GRAD_EPS, A.dtype))
    # Y enters linearly; the clamps are constant pieces. (Targets are data, never trained.)
    dL_dY = cotangent * (clamped_log1p_neg(A) - clamped_log(A))
    return dL_dA, dL_dY


binary_cross_entropy_terms.defvjp(_binary_cross_entropy_forward, _binary_cross_entropy_backward)


def _accumulator(dtype: jnp.dtype) -> jnp.dtype:
    # 16-bit sums and the mean's division run in float32 and round once to the dtype, as
    # torch's CPU reductions (opmath) and jnp.sum do; in float16, 2 * R * O itself overflows
    # past 65504, which a float16 divisor could not hold.
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else dtype


def loss(
    name: str,
    A: jax.Array,
    Y: jax.Array,
    row_weight: jax.Array | None = None,
    rows: jax.Array | int | None = None,
) -> jax.Array:
    """The contract's loss ``name`` of outputs ``A (R, O)`` against targets ``Y (R, O)``.

    Args:
        name: One of ``contract.LOSSES``.
        A: The last layer's output (logits for ``cross-entropy``).
        Y: Targets.
        row_weight: ``(R,)`` 1 for a real row, 0 for padding (``None``: every row is real).
        rows: The true number of rows, the ``R`` of the formulas (default: ``A.shape[0]``).
    """
    outputs = A.shape[-1]
    rows = A.shape[0] if rows is None else rows
    # Every loss runs on the outputs widened to float32 for the 16-bit types and rounds once
    # below, as the contract's elementwise rule and torch's CPU kernels (opmath) do: a float16
    # (A - Y)^2 overflows once |A - Y| > 256 where the contract's loss is finite. In bfloat16
    # itself XLA's CPU log-sum-exp under jit(vmap) over 253 or more points returned point j's
    # loss for point 252 + j (jax 0.10.2; tests/test_jax_grad.py keeps the regression test).
    dtype, work = A.dtype, _accumulator(A.dtype)
    A, Y = A.astype(work), Y.astype(work)
    if name in ("half-mse", "mse", "half-sse"):
        per_element = (A - Y) ** 2
    elif name == "cross-entropy":
        per_element = optax.softmax_cross_entropy(A, Y)[:, None]
    elif name == "binary-cross-entropy":
        per_element = binary_cross_entropy_terms(A, Y)
    else:
        raise ValueError(f"unknown loss {name!r}")
    if row_weight is not None:
        per_element = per_element * row_weight[:, None]
    accumulator = work
    total = jnp.sum(per_element, dtype=accumulator)
    per_row = {
        "half-mse": 2 * outputs,
        "mse": outputs,
        "cross-entropy": 1,
        "binary-cross-entropy": outputs,
    }
    # A Python number when the rows are known when tracing (the jaxpr then shows the constant).
    divisor = jnp.asarray(2 if name == "half-sse" else rows * per_row[name], dtype=accumulator)
    return (total / divisor).astype(dtype)


def correct(A: jax.Array, Y: jax.Array, row_weight: jax.Array | None = None) -> jax.Array:
    """Rows whose top output is the top target (ties: the first index, as ``np.argmax``)."""
    hits = (jnp.argmax(A, axis=-1) == jnp.argmax(Y, axis=-1)).astype(jnp.int32)
    if row_weight is not None:
        hits = hits * (row_weight > 0).astype(jnp.int32)
    return jnp.sum(hits)


def loss_of_params(
    params: Mapping[str, jax.Array],
    net: Network,
    X: jax.Array,
    Y: jax.Array,
    row_weight: jax.Array | None = None,
    rows: jax.Array | int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The loss at ``params`` on a batch, and the network output (the pure function that
    ``jax.value_and_grad`` differentiates, with the output as auxiliary data)."""
    A = forward(net, params, X)
    return loss(net.loss, A, Y, row_weight, rows), A


# ----------------------------------------------------------------------------------------------
# The update: optax, configured to torch's formulas.


class TorchMomentumState(NamedTuple):
    """State of ``torch_momentum``: the updates applied so far and the momentum buffer."""

    count: jax.Array
    trace: optax.Updates


def torch_momentum(
    momentum: float, dampening: float, nesterov: bool
) -> optax.GradientTransformation:
    """torch ``SGD``'s momentum buffer, for the case ``optax.trace`` does not cover: dampening.

    torch: ``buf <- g`` at the first update (no dampening then), else
    ``buf <- mu * buf + (1 - dampening) * g``; the update is ``g + mu * buf`` with Nesterov,
    else ``buf``. ``optax.trace`` computes ``g + mu * buf`` and has no dampening, so it is used
    only when ``dampening == 0``, where both rules give ``buf = g`` at the first update exactly.
    The first update is told by ``count`` (torch tells it by a missing buffer).
    """

    def init(params: optax.Params) -> TorchMomentumState:
        return TorchMomentumState(
            count=jnp.zeros([], jnp.int32), trace=optax.tree.zeros_like(params)
        )

    def update(
        updates: optax.Updates, state: TorchMomentumState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, TorchMomentumState]:
        del params
        first = state.count == 0

        def buffer(g: jax.Array, buf: jax.Array) -> jax.Array:
            return jnp.where(first, g, momentum * buf + (1 - dampening) * g)

        trace = jax.tree.map(buffer, updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, buf: g + momentum * buf, updates, trace)
        else:
            updates = trace
        return updates, TorchMomentumState(count=optax.safe_increment(state.count), trace=trace)

    return optax.GradientTransformation(init, update)


def optax_optimizer(opt: Optimizer) -> optax.GradientTransformation:
    """The optax transformation whose mathematics is the contract's ``opt`` (torch's formulas).

    Hyperparameters are Python floats: JAX treats them as weakly typed, so they take the
    parameters' dtype, as torch's Python-number hyperparameters do. Every optax default that
    differs from torch is passed explicitly.

    * L2 decay (``sgd``, ``momentum``, ``adam``): torch adds ``weight_decay * p`` to the gradient
      before anything else, so ``optax.add_decayed_weights`` comes first in the chain
      (``g + wd * p``, the same rounding as torch's ``grad.add(param, alpha=wd)``).
    * ``sgd``: ``p + (-lr * g)`` (``optax.apply_updates``) against torch's
      ``p.add_(g, alpha=-lr)``: the same two roundings.
    * ``momentum``: ``optax.sgd(momentum=mu, nesterov=...)`` is ``optax.trace``:
      ``buf <- g + mu * buf`` (torch: ``buf.mul_(mu).add_(g)``, the same sum) and Nesterov's
      ``g + mu * buf`` as torch. The learning rate is given as a constant schedule only so
      that optax keeps the update count (``ScaleByScheduleState.count``, the contract's
      ``state:step``); the arithmetic is ``scale(-lr)``'s. With dampening, ``torch_momentum``.
    * ``adam``: ``optax.adam(eps=eps, eps_root=0)``: eps outside the square root, as torch.
      optax: ``m <- (1 - b1) g + b1 m`` (torch: ``m.lerp_(g, 1 - b1)``, i.e.
      ``m + (1 - b1)(g - m)``, a different rounding); ``v <- (1 - b2) g^2 + b2 v`` (torch:
      ``b2 v + (1 - b2) g g``, the same); then ``-lr * (m / bc1) / (sqrt(v / bc2) + eps)`` with
      ``bc = 1 - b^t`` computed in float64 and cast to the dtype (torch:
      ``p.addcdiv_(m, sqrt(v) / sqrt(bc2) + eps, value=-lr / bc1)``: the same quotient, rounded
      in another order).
    * ``adamw``: ``optax.adamw(weight_decay=wd)``, never its default 1e-4 (torch's is 1e-2):
      ``p + (-lr * (adam + wd * p))``, decay multiplied by lr as torch does; torch rounds
      ``p * (1 - lr * wd)`` first, then adds the Adam step.
    """
    if opt.name == "adamw":
        return optax.adamw(
            learning_rate=opt.lr,
            b1=opt.beta1,
            b2=opt.beta2,
            eps=opt.eps,
            eps_root=0.0,
            weight_decay=opt.weight_decay,
            mu_dtype=None,
            nesterov=False,
        )
    l2_decay = optax.add_decayed_weights(opt.weight_decay)
    if opt.name == "sgd":
        return optax.chain(l2_decay, optax.sgd(learning_rate=opt.lr, momentum=None))
    if opt.name == "adam":
        return optax.chain(
            l2_decay,
            optax.adam(
                learning_rate=opt.lr,
                b1=opt.beta1,
                b2=opt.beta2,
                eps=opt.eps,
                eps_root=0.0,
                mu_dtype=None,
                nesterov=False,
            ),
        )
    if opt.dampening == 0:
        return optax.chain(
            l2_decay,
            optax.sgd(
                learning_rate=optax.constant_schedule(opt.lr),
                momentum=opt.momentum,
                nesterov=opt.nesterov,
            ),
        )
    return optax.chain(
        l2_decay,
        torch_momentum(opt.momentum, opt.dampening, opt.nesterov),
        optax.scale_by_learning_rate(opt.lr),
    )


#: The optax states that hold a piece of the contract's optimizer state.
_STATEFUL = (
    optax.ScaleByAdamState,
    optax.TraceState,
    optax.ScaleByScheduleState,
    TorchMomentumState,
)


#: The ones among them that count updates (each count is the contract's ``state:step``).
_COUNTING = (optax.ScaleByAdamState, optax.ScaleByScheduleState, TorchMomentumState)


def _is_stateful(node: object) -> bool:
    return isinstance(node, _STATEFUL)


def to_optax_state(
    net: Network,
    transformation: optax.GradientTransformation,
    params: Mapping[str, jax.Array],
    state: Mapping[str, jax.Array],
) -> optax.OptState:
    """The optax state of one point, filled from a contract state (``state:step`` as int32).

    Every ``count`` optax keeps is ``state:step``; ``mu``/``nu`` are ``state:m``/``state:v``;
    ``trace`` is ``state:momentum``.
    """

    def buffers(kind: str) -> dict[str, jax.Array]:
        return {name: state[f"state:{kind}:{name}"] for name in net.param_names}

    def fill(node: object) -> object:
        if isinstance(node, optax.ScaleByAdamState):
            return node._replace(count=state["state:step"], mu=buffers("m"), nu=buffers("v"))
        if isinstance(node, optax.TraceState):
            return node._replace(trace=buffers("momentum"))
        if isinstance(node, TorchMomentumState):
            return node._replace(count=state["state:step"], trace=buffers("momentum"))
        if isinstance(node, optax.ScaleByScheduleState):
            return node._replace(count=state["state:step"])
        return node

    return jax.tree.map(fill, transformation.init(dict(params)), is_leaf=_is_stateful)


def from_optax_state(net: Network, opt_state: optax.OptState) -> dict[str, jax.Array]:
    """The contract's names for one point's optax state (the inverse of ``to_optax_state``)."""
    named: dict[str, jax.Array] = {}

    def take(kind: str, tree: Mapping[str, jax.Array]) -> None:
        named.update({f"state:{kind}:{name}": tree[name] for name in net.param_names})

    for node in jax.tree.leaves(opt_state, is_leaf=_is_stateful):
        if not _is_stateful(node):
            continue
        # Not hasattr(node, "count"): every NamedTuple has a count method.
        if isinstance(node, _COUNTING):
            named.setdefault("state:step", node.count)
        if isinstance(node, optax.ScaleByAdamState):
            take("m", node.mu)
            take("v", node.nu)
        elif isinstance(node, TorchMomentumState | optax.TraceState):
            take("momentum", node.trace)
    return named


def training_step(
    net: Network,
    transformation: optax.GradientTransformation,
    params: dict[str, jax.Array],
    opt_state: optax.OptState,
    X: jax.Array,
    Y: jax.Array,
    row_weight: jax.Array | None = None,
    rows: jax.Array | int | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array], optax.OptState]:
    """One point's training step: the records at this state, then the updated state.

    Returns:
        ``(records, params, opt_state)``: ``loss``, ``grad:*``, ``train_correct`` and the
        state's own quantities at the state given; the parameters and optax state after the
        update.
    """
    (step_loss, A), grads = jax.value_and_grad(loss_of_params, has_aux=True)(
        params, net, X, Y, row_weight, rows
    )
    records = {
        "loss": step_loss,
        **{grad_quantity(name): grads[name] for name in net.param_names},
        "train_correct": correct(A, Y, row_weight),
        **{param_quantity(name): params[name] for name in net.param_names},
        **from_optax_state(net, opt_state),
    }
    updates, opt_state = transformation.update(grads, opt_state, params)
    return records, optax.apply_updates(params, updates), opt_state


def _point_state(
    net: Network, params: Mapping[str, jax.Array], opt_state: optax.OptState
) -> dict[str, jax.Array]:
    return {
        **{param_quantity(name): params[name] for name in net.param_names},
        **from_optax_state(net, opt_state),
    }


def _split_state(
    net: Network, transformation: optax.GradientTransformation, state: Mapping[str, jax.Array]
) -> tuple[dict[str, jax.Array], optax.OptState]:
    params = {name: state[param_quantity(name)] for name in net.param_names}
    return params, to_optax_state(net, transformation, params, state)


def _as_records(records: Mapping[str, jax.Array], point_axis: int) -> dict[str, jax.Array]:
    # Records leave the computation as float64 (train_correct int64), point axis where the
    # contract wants it; converting inside jit keeps the NumPy edge a plain copy.
    out = {}
    for quantity, values in records.items():
        values = jnp.moveaxis(values, 0, point_axis) if point_axis else values
        out[quantity] = values.astype(jnp.int64 if quantity == "train_correct" else jnp.float64)
    return out


@partial(jax.jit, compiler_options=COMPILER_OPTIONS, static_argnames=("net", "opt", "length"))
def _train_chunk(
    net: Network,
    opt: Optimizer,
    state: dict[str, jax.Array],
    X: jax.Array,
    Y: jax.Array,
    batches: tuple[jax.Array, jax.Array, jax.Array] | None,
    length: int,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """``length`` training steps of every point: ``vmap`` over one point's ``lax.scan``.

    ``batches`` is ``None`` (full batch: every step uses all of ``X``) or, per step, the padded
    row indices ``(length, B)``, their 0/1 weights ``(length, B)`` and true row counts
    ``(length,)``, shared by every point.
    """
    transformation = optax_optimizer(opt)

    def run_point(point: dict[str, jax.Array]):
        def body(carry, batch):
            params, opt_state = carry
            if batch is None:
                records, params, opt_state = training_step(
                    net, transformation, params, opt_state, X, Y
                )
            else:
                index, row_weight, rows = batch
                records, params, opt_state = training_step(
                    net, transformation, params, opt_state, X[index], Y[index], row_weight, rows
                )
            return (params, opt_state), records

        carry, records = jax.lax.scan(
            body, _split_state(net, transformation, point), batches, length=length
        )
        return _point_state(net, *carry), records

    final, records = jax.vmap(run_point)(state)
    return final, _as_records(records, point_axis=1)


#: Bytes of one layer stack's activations that a step computes at once, about: the points of a
#: step are evaluated ``vmap``-ed in slices of this size, one slice after another
#: (``_step_points``).
STEP_SLICE_BYTES = 2**20


def _step_slice(net: Network, rows: int, itemsize: int, points: int) -> int:
    """Points ``_step_points`` evaluates side by side: a power of two whose activations (every
    row and unit past the input) fill about ``STEP_SLICE_BYTES``, between 1 and ``points``.

    ``vmap`` over all the points at once would make every elementwise pass and every matrix
    product stream arrays of all the points from memory: on digits 64-64-10 (1 MB of
    activations a point) that measured 4.7 ms a state against 1.9 ms one point at a time, and on
    64-2-10 182 us against 171 us in slices of four.
    """
    per_point = itemsize * max(rows, 1) * sum(net.widths[1:])
    fits = max(1, STEP_SLICE_BYTES // max(per_point, 1))
    return int(min(points, 2 ** (int(fits).bit_length() - 1)))


@partial(jax.jit, compiler_options=COMPILER_OPTIONS, static_argnames=("net", "opt", "slice_points"))
def _step_points(
    net: Network,
    opt: Optimizer,
    state: dict[str, jax.Array],
    X: jax.Array,
    Y: jax.Array,
    batches: tuple[jax.Array, jax.Array, jax.Array] | None,
    slice_points: int | None = None,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """One training step from each of ``P`` states; ``batches`` as ``_train_chunk``'s, but one
    per point: ``(P, R)`` indices and weights, ``(P,)`` row counts.

    The points share nothing: they are ``vmap``-ed ``slice_points`` at a time (``None``: all
    at once), the slices one after another (``lax.map``), so that each slice's activations
    stay in cache (``_step_slice``)."""
    transformation = optax_optimizer(opt)

    def one(point, batch):
        params, opt_state = _split_state(net, transformation, point)
        if batch is None:
            records, params, opt_state = training_step(net, transformation, params, opt_state, X, Y)
        else:
            index, row_weight, rows = batch
            records, params, opt_state = training_step(
                net, transformation, params, opt_state, X[index], Y[index], row_weight, rows
            )
        return records, _point_state(net, params, opt_state)

    points = len(next(iter(state.values())))
    if slice_points is None or slice_points >= points:
        records, next_states = jax.vmap(one)(state, batches)
    else:
        records, next_states = jax.lax.map(
            lambda pair: one(*pair), (state, batches), batch_size=slice_points
        )
    return _as_records(records, point_axis=0), next_states


@partial(jax.jit, compiler_options=COMPILER_OPTIONS, static_argnames=("net",))
def _loss_and_grads_points(net: Network, params, X, Y):
    def one(point):
        (value, _), grads = jax.value_and_grad(loss_of_params, has_aux=True)(point, net, X, Y)
        return value, grads

    return jax.vmap(one)(params)


@partial(jax.jit, compiler_options=COMPILER_OPTIONS, static_argnames=("net",))
def _predict_points(net: Network, params, X):
    return jax.vmap(lambda point: forward(net, point, X))(params)


# ----------------------------------------------------------------------------------------------
# The NumPy edge.


def _dtype(problem: Problem) -> jnp.dtype:
    if problem.dtype not in DTYPES:
        raise ValueError(f"{NAME} does not compute in {problem.dtype}; it supports {DTYPES}")
    return jnp.dtype(problem.dtype)


def _device_state(problem: Problem, state: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """A contract state (NumPy, float64) in the compute dtype; ``state:step`` as int32 counts."""
    dtype = _dtype(problem)
    check_params(
        problem.network, {n: state[q] for n, q in problem.network.param_quantities.items()}
    )
    out = {}
    for quantity in problem.state_names():
        values = np.asarray(state[quantity])
        if quantity == "state:step":
            out[quantity] = jnp.asarray(np.rint(values), dtype=jnp.int32)
        else:
            out[quantity] = jnp.asarray(values, dtype=dtype)
    return out


def _host(arrays: Mapping[str, jax.Array]) -> dict[str, np.ndarray]:
    fetched = jax.device_get(dict(arrays))
    return {
        quantity: np.asarray(values, dtype=np.int64 if quantity == "train_correct" else np.float64)
        for quantity, values in fetched.items()
    }


def _padded_rows(
    row_lists: list[np.ndarray], width: int, dtype: jnp.dtype
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Ragged row lists as ``(n, width)`` indices padded with row 0, their 0/1 weights and the
    true row counts."""
    index = np.zeros((len(row_lists), width), dtype=np.int32)
    weight = np.zeros((len(row_lists), width), dtype=np.float64)
    for i, rows in enumerate(row_lists):
        index[i, : len(rows)] = rows
        weight[i, : len(rows)] = 1.0
    counts = np.array([len(rows) for rows in row_lists], dtype=np.int32)
    return (
        jnp.asarray(index, dtype=jnp.int32),
        jnp.asarray(weight, dtype=dtype),
        jnp.asarray(counts, dtype=jnp.int32),
    )


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
    """Train ``P`` points for ``steps`` updates, handing the records to ``sink`` chunk by chunk.

    Each chunk of states is one call of a jitted ``vmap``-over-``lax.scan``, compiled once per
    chunk length (full chunks and the last, shorter one). While ``sink`` takes one chunk, XLA
    already computes the next. The last state is recorded like the others; the update that the
    scan computes after it is discarded.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    dtype = _dtype(problem)
    net, batches = problem.network, problem.batches
    state = _device_state(problem, initial)
    X = jnp.asarray(np.asarray(X), dtype=dtype)
    Y = jnp.asarray(np.asarray(Y), dtype=dtype)
    total = steps + 1
    pending: tuple[int, dict[str, jax.Array]] | None = None
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        # A shorter last chunk would compile the scan anew (about a second); it runs the full
        # chunk length instead and keeps the states it was asked for. The states past the last
        # are never handed over.
        length = chunk if total > chunk else stop - start
        rows = (
            None
            if batches.full
            else _padded_rows(batches.chunk(start, start + length), batches.size, dtype)
        )
        state, records = _train_chunk(net, problem.optimizer, state, X, Y, rows, length)
        if length > stop - start:
            records = {q: v[: stop - start] for q, v in records.items()}
        if pending is not None:
            sink(pending[0], _host(pending[1]))
            if progress is not None:
                progress(start)
        pending = (start, records)
    if pending is not None:
        sink(pending[0], _host(pending[1]))
    if progress is not None:
        progress(total)


#: A step from ``P`` states may run as many as ``STEP_PADDING * P`` to reuse a compiled size.
STEP_PADDING = 32

#: (problem, X shape, row shape) -> the numbers of states the step was compiled for.
_STEP_SIZES: dict[tuple, set[int]] = {}


def _step_size(key: tuple, points: int) -> int:
    """The number of states to run a step from ``points`` states as (see ``step``)."""
    if points == 0:
        return 0
    compiled = _STEP_SIZES.setdefault(key, set())
    reusable = [size for size in compiled if points <= size <= STEP_PADDING * points]
    size = min(reusable) if reusable else 1 << (points - 1).bit_length()
    compiled.add(size)
    return size


def step(
    problem: Problem,
    states: State,
    X: np.ndarray,
    Y: np.ndarray,
    rows: np.ndarray | None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One full training step from each of ``P`` unrelated states, each with its own
    ``state:step``: the records at those states and the states after the update.

    ``rows`` is ``None`` (every point uses all of ``X``) or ``(P, R)`` row indices. A list of
    ``P`` index arrays of different lengths is accepted too (padded like ``train``'s partial
    batches), for states whose batches differ in size.
    """
    dtype = _dtype(problem)
    check_params(
        problem.network, {n: states[q] for n, q in problem.network.param_quantities.items()}
    )
    points = len(states[problem.state_names()[0]])
    # Each new number of states compiles the step anew (about a second): pad it by repeating
    # the last state, to a size compiled before (up to ``STEP_PADDING`` times as many states)
    # or else to a power of two, so that a run compiles it once or twice. The points share
    # nothing, so the copies change no other point's numbers; they are dropped.
    width = None if rows is None else max((np.size(r) for r in rows), default=0)
    shape_key = (problem, np.shape(X), width)  # rows may be ragged: their widest pads all
    padded = _step_size(shape_key, points)
    filler = np.full(padded - points, points - 1, dtype=np.int64)
    order = np.concatenate([np.arange(points), filler])
    state = _device_state(problem, {q: np.asarray(states[q])[order] for q in problem.state_names()})
    X = jnp.asarray(np.asarray(X), dtype=dtype)
    Y = jnp.asarray(np.asarray(Y), dtype=dtype)
    batches = None
    if rows is not None:
        row_lists = [np.asarray(point_rows, dtype=np.int64).ravel() for point_rows in rows]
        if len(row_lists) != points:
            raise ValueError(f"rows names {len(row_lists)} batches for {points} states")
        row_lists = [row_lists[i] for i in order]
        batches = _padded_rows(row_lists, max(len(r) for r in row_lists), dtype)
    rows_each = len(X) if batches is None else batches[0].shape[1]
    slice_points = _step_slice(problem.network, rows_each, jnp.dtype(dtype).itemsize, padded)
    records, next_states = _step_points(
        problem.network, problem.optimizer, state, X, Y, batches, slice_points
    )
    records, next_states = _host(records), _host(next_states)
    return (
        {q: v[:points] for q, v in records.items()},
        {q: v[:points] for q, v in next_states.items()},
    )


def _device_params(
    problem: Problem, params: Params, point_axis: bool = True
) -> dict[str, jax.Array]:
    check_params(problem.network, params, point_axis=point_axis)
    dtype = _dtype(problem)
    return {
        name: jnp.asarray(np.asarray(params[name]), dtype=dtype)
        for name in problem.network.param_names
    }


def loss_and_grads(
    problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The loss ``(P,)`` and gradients ``{"grad:W1": (P, in, out), ...}`` at ``P`` parameter
    points on all of ``X``, without any update."""
    dtype = _dtype(problem)
    device = _device_params(problem, params)
    X = jnp.asarray(np.asarray(X), dtype=dtype)
    Y = jnp.asarray(np.asarray(Y), dtype=dtype)
    losses, grads = jax.device_get(_loss_and_grads_points(problem.network, device, X, Y))
    return np.asarray(losses, dtype=np.float64), {
        grad_quantity(name): np.asarray(grads[name], dtype=np.float64)
        for name in problem.network.param_names
    }


def predict(problem: Problem, params: Params, X: np.ndarray) -> np.ndarray:
    """The network output ``(P, R, O)`` for ``P`` parameter points, computed in the problem's
    dtype, as float64."""
    device = _device_params(problem, params)
    X = jnp.asarray(np.asarray(X), dtype=_dtype(problem))
    return np.asarray(jax.device_get(_predict_points(problem.network, device, X)), dtype=np.float64)


def release() -> None:
    """Drop every compiled executable (``jax.clear_caches``; the contract's ``release``): each
    holds memory mappings, which a process checking hundreds of recipes would exhaust."""
    jax.clear_caches()


def precision_environment() -> dict[str, object]:
    """The configuration that decides JAX's precision: x64, matmul precision, backend, flags."""
    return {
        "jax": jax.__version__,
        "optax": optax.__version__,
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "jax.default_backend": jax.default_backend(),
        "jax.device_count": jax.device_count(),
        "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
    }


# ----------------------------------------------------------------------------------------------
# The oracle and the explain view.


def _one_point(net: Network, params: Params) -> dict[str, np.ndarray]:
    """One point's parameters: no point axis, or a point axis of length 1 (dropped)."""
    point = {}
    for name, shape in net.param_shapes.items():
        values = np.asarray(params[name])
        point[name] = values[0] if values.shape == (1, *shape) else values
    check_params(net, point, point_axis=False)
    return point


def _rules(net: Network) -> tuple[Callable[..., jax.Array], ...]:
    """The activation functions ``net`` uses, as they are now: part of every oracle jit's key,
    so that a swapped rule (a test's planted bug) gets a trace of its own."""
    return tuple(ACTIVATIONS[activation] for activation in net.activations)


@partial(jax.jit, static_argnames=("net", "rules"))
def _oracle_loss(net: Network, rules: tuple, point: dict[str, jax.Array], X, Y) -> jax.Array:
    """One point's loss, jitted once per network and data shape (not once per call)."""
    del rules  # the key only: ``forward`` reads ``ACTIVATIONS`` when it traces
    return loss_of_params(point, net, X, Y)[0]


@partial(jax.jit, static_argnames=("net", "rules"))
def _oracle_central_differences(
    net: Network, rules: tuple, point: dict[str, jax.Array], shifts: jax.Array, X, Y, step
) -> jax.Array:
    """Central differences ``(L(w + step e_i) - L(w - step e_i)) / (2 step)`` for each row of
    ``shifts`` (``(B, n)``: ``e_i`` flattened, zero rows allowed), every point at once."""
    del rules
    flat_sizes = [math.prod(net.param_shapes[name]) for name in net.param_names]
    offsets = np.cumsum([0, *flat_sizes])

    def loss_at(shift: jax.Array, sign: float) -> jax.Array:
        moved = {
            name: point[name]
            + sign * step * shift[offsets[i] : offsets[i + 1]].reshape(net.param_shapes[name])
            for i, name in enumerate(net.param_names)
        }
        return loss_of_params(moved, net, X, Y)[0]

    def one(shift: jax.Array) -> jax.Array:
        return (loss_at(shift, 1.0) - loss_at(shift, -1.0)) * (0.5 / step)

    return jax.vmap(one)(shifts)


@partial(jax.jit, static_argnames=("net", "rules"))
def _oracle_gradient(net: Network, rules: tuple, point: dict[str, jax.Array], X, Y) -> jax.Array:
    """The gradient at one point, flattened in ``param_names`` order."""
    del rules
    grads = jax.grad(lambda p: loss_of_params(p, net, X, Y)[0])(point)
    return jnp.concatenate([jnp.ravel(grads[name]) for name in net.param_names])


#: Perturbed points per call of ``_oracle_central_differences`` (every call has this many, the
#: last padded with zero shifts, so one compilation serves any parameter count), and the
#: elements of one layer's activations over them that a call may hold.
FINITE_DIFFERENCE_BATCH = 256
FINITE_DIFFERENCE_ELEMENTS = 2**22


def gradient_check(
    problem: Problem,
    params: Params,
    X: np.ndarray,
    Y: np.ndarray,
    *,
    step: float,
    atol: float,
    rtol: float,
) -> dict[str, Any]:
    """JAX's own finite-difference checker, ``jax.test_util.check_grads``, at one point.

    Runs in float64 whatever the problem's dtype: ``check_grads(order=1, modes=("rev",))``
    compares the VJP with a central difference of step ``step`` along one random direction
    (its own ``np.random.RandomState(0)``), both scaled by a random cotangent ``c``, within
    ``atol + rtol * |expected|``. NumPy's global random state is saved and restored around it,
    whatever the installed JAX version draws from. Its pass or fail is the verdict; its error
    along a random (not unit) direction is no per-element figure, so the error reported beside
    it is measured per element, with the same step: central differences along every
    coordinate, all perturbed points evaluated through ``vmap``. Every function is jitted once
    per network and data shape, not once per call.

    Returns:
        ``{"checker", "passed", "error", "detail"}``; ``error`` is the greatest
        ``|central difference - gradient|`` over the parameters' elements, the figure the
        oracle's per-element threshold bounds.
    """
    net = problem.network
    rules = _rules(net)
    point = {
        name: jnp.asarray(values, dtype=jnp.float64)
        for name, values in _one_point(net, params).items()
    }
    X = jnp.asarray(np.asarray(X), dtype=jnp.float64)
    Y = jnp.asarray(np.asarray(Y), dtype=jnp.float64)

    def loss_at(p: dict[str, jax.Array]) -> jax.Array:
        return _oracle_loss(net, rules, p, X, Y)

    saved = np.random.get_state()
    try:
        check_grads(loss_at, (point,), order=1, modes=("rev",), eps=step, atol=atol, rtol=rtol)
        passed, failure = True, ""
    except AssertionError as error:
        passed, failure = False, " ".join(str(error).split())
    finally:
        np.random.set_state(saved)

    analytical = np.asarray(_oracle_gradient(net, rules, point, X, Y))
    size = len(analytical)
    batch = min(
        FINITE_DIFFERENCE_BATCH,
        size,
        max(1, FINITE_DIFFERENCE_ELEMENTS // (len(X) * max(net.widths))),
    )
    numerical = np.empty(size)
    for first in range(0, size, batch):
        count = min(batch, size - first)
        shifts = np.zeros((batch, size))
        shifts[np.arange(count), np.arange(first, first + count)] = 1.0
        central = _oracle_central_differences(net, rules, point, shifts, X, Y, step)
        numerical[first : first + count] = np.asarray(central)[:count]
    error = float(np.max(np.abs(numerical - analytical), initial=0.0))
    detail = (
        f"check_grads (central differences along a random direction, eps={step:g}, "
        f"atol={atol:g}, rtol={rtol:g}): {'passed' if passed else 'failed'}; per element, "
        f"greatest |central difference - gradient| over {size} parameters {error:.3g}"
    )
    if failure:
        detail += f"; check_grads: {failure}"
    return {
        "checker": "jax.test_util.check_grads",
        "passed": passed,
        "error": error,
        "detail": detail,
    }


#: A top-level equation's left-hand side in jaxpr text: ``    e:f64[2,2] f:f64[] = ...``.
_EQUATION = re.compile(r"^ {4}([a-z_]+:\S+(?: [a-z_]+:\S+)*) = ")
_HEADER = re.compile(r"\{ lambda ([^;]*); ([^.]*)\. let")


def _printed_names(jaxpr: Any, text: str) -> dict[Any, str]:
    """Each variable of ``jaxpr`` -> its name in ``text`` (JAX's printer names them in order of
    appearance: a, b, ..., z, ba, ...). Empty if the text does not line up with the jaxpr."""
    header = _HEADER.search(text)
    lines = [match.group(1) for line in text.splitlines() if (match := _EQUATION.match(line))]
    if header is None or len(lines) != len(jaxpr.eqns):
        return {}
    defined = [*header.group(1).split(), *header.group(2).split()]
    variables = [*jaxpr.constvars, *jaxpr.invars]
    for line, eqn in zip(lines, jaxpr.eqns, strict=True):
        tokens = line.split()
        if len(tokens) != len(eqn.outvars):
            return {}
        defined.extend(tokens)
        variables.extend(eqn.outvars)
    if len(defined) != len(variables):
        return {}
    return {
        var: token.split(":")[0]
        for var, token in zip(variables, defined, strict=True)
        if not token.startswith("_")
    }


def _evaluate(closed: Any, args: list[jax.Array]) -> dict[Any, jax.Array]:
    """Every variable's value when ``closed`` (a ClosedJaxpr) runs on ``args``, one primitive
    at a time (what ``jax.core.eval_jaxpr`` does, keeping the environment)."""
    jaxpr = closed.jaxpr
    env = dict(zip(jaxpr.constvars, closed.consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(var: Any) -> Any:
        return var.val if hasattr(var, "val") else env[var]

    for eqn in jaxpr.eqns:
        # get_bind_params returns the parameters (JAX >= 0.7) or (subfuns, parameters) (older).
        bound = eqn.primitive.get_bind_params(eqn.params)
        subfuns, bind_params = bound if isinstance(bound, tuple) else ((), bound)
        out = eqn.primitive.bind(*subfuns, *map(read, eqn.invars), **bind_params)
        env.update(zip(eqn.outvars, out if eqn.primitive.multiple_results else [out], strict=True))
    return env


def _factor_names(net: Network) -> list[str]:
    """The names ``_named_values`` gives, forward pass first, then the backward pass."""
    layers = range(1, net.layers + 1)
    forward = [f"{kind}{layer}" for layer in layers for kind in ("Z", "A", "dA_dZ")]
    backward = [f"{kind}{layer}" for layer in reversed(layers) for kind in ("dL_dA", "delta")]
    return forward + backward


def _named_values(
    net: Network, point: Mapping[str, jax.Array], X: jax.Array, Y: jax.Array
) -> dict[str, jax.Array]:
    """The forward quantities (``Z1``, ``A1``, ...) and chain-rule factors (``dA_dZ1``,
    ``dL_dA2``, ``delta2``, ...) of one point, by name; the factors come from zero taps."""
    named: dict[str, jax.Array] = {}
    taps = {}
    layers = forward_layers(net, point, X)
    for layer, ((Z, A), activation) in enumerate(zip(layers, net.activations, strict=True), 1):
        named[f"Z{layer}"], named[f"A{layer}"] = Z, A
        taps[f"Z{layer}"], taps[f"A{layer}"] = jnp.zeros_like(Z), jnp.zeros_like(A)
        named[f"dA_dZ{layer}"] = jax.jvp(ACTIVATIONS[activation], (Z,), (jnp.ones_like(Z),))[1]
    tap_grads = jax.grad(lambda t: loss(net.loss, forward_layers(net, point, X, t)[-1][1], Y))(taps)
    for layer in range(net.layers, 0, -1):
        named[f"dL_dA{layer}"] = tap_grads[f"A{layer}"]
        named[f"delta{layer}"] = tap_grads[f"Z{layer}"]
    return named


def autodiff_view(problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray) -> dict[str, Any]:
    """The jaxpr JAX builds for the gradient function, with its variables named.

    ``jax.make_jaxpr(jax.grad(loss))`` traces the gradient function into JAX's intermediate
    language: the forward pass, then the backward pass that ``jax.grad`` derived, one primitive
    per line. X and Y are arguments (not closed over) so they appear as named inputs. Each
    variable whose value equals a forward quantity (``Z1``, ``A1``, ...) or a chain-rule factor
    (``dL_dA2``, ``dA_dZ2``, ``delta2`` = dL/dZ2, the gradients ``dL_dW1``, ...) is named after
    it, found by running the jaxpr one primitive at a time and comparing values.

    Args:
        params: One point's parameters (no point axis, or a point axis of length 1).

    Returns:
        ``{"title", "text", "loss", "grads" {name: array}, "jaxpr" (text), "inputs" (names of
        its input variables in order: the weights as JAX flattens the dict, then "X", "Y"),
        "names" {jaxpr variable: quantity name}}``.
    """
    net = problem.network
    dtype = _dtype(problem)
    point = {
        name: jnp.asarray(values, dtype=dtype) for name, values in _one_point(net, params).items()
    }
    X = jnp.asarray(np.asarray(X), dtype=dtype)
    Y = jnp.asarray(np.asarray(Y), dtype=dtype)

    def loss_at(p, X, Y):
        return loss_of_params(p, net, X, Y)[0]

    closed = jax.make_jaxpr(jax.grad(loss_at))(point, X, Y)
    text = str(closed)
    flat, _ = jax.tree_util.tree_flatten_with_path(point)
    inputs = (*(path[0].key for path, _ in flat), "X", "Y")
    value, grads = jax.value_and_grad(loss_at)(point, X, Y)

    printed = _printed_names(closed.jaxpr, text)
    names: dict[str, str] = {}
    if printed:
        for var, name in zip(closed.jaxpr.invars, inputs, strict=True):
            names[printed[var]] = name
        for var, name in zip(closed.jaxpr.outvars, inputs, strict=False):
            if not hasattr(var, "val") and var in printed:  # a literal output has no name
                names[printed[var]] = f"dL_d{name}"
        defined = [v for eqn in closed.jaxpr.eqns for v in eqn.outvars if v in printed]
        # Both run as one XLA computation each: primitive by primitive, the compilations of
        # each tiny op would take seconds.
        values = jax.jit(lambda args: [_evaluate(closed, args)[v] for v in defined])(
            [*jax.tree.leaves(point), X, Y]
        )
        named = jax.jit(partial(_named_values, net))(point, X, Y)
        tolerance = 8 * float(jnp.finfo(dtype).eps)
        for name in _factor_names(net):  # jit hands the dict back sorted; this is layer order
            target = np.asarray(named[name], dtype=np.float64)
            for var, candidate in zip(defined, values, strict=True):
                candidate = np.asarray(candidate, dtype=np.float64)
                if candidate.shape == target.shape and np.allclose(
                    candidate, target, rtol=tolerance, atol=0.0
                ):
                    label = printed[var]
                    names[label] = f"{names[label]}, {name}" if label in names else name
                    break

    order = {label: position for position, label in enumerate(printed.values())}
    legend = [f"  {var:>3} = {names[var]}" for var in sorted(names, key=order.__getitem__)]
    lines = [text, "", "Variables named after the forward pass and the chain rule:", *legend]
    return {
        "title": "What JAX built: the jaxpr of jax.grad(loss)",
        "text": "\n".join(lines),
        "loss": float(value),
        "grads": {name: np.asarray(grads[name], dtype=np.float64) for name in net.param_names},
        "jaxpr": text,
        "inputs": inputs,
        "names": names,
    }
