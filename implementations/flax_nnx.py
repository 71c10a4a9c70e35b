"""The network as a Flax user writes it: an ``nnx.Module`` of ``nnx.Linear`` layers, an optax
loss, an ``nnx.Optimizer`` over an optax transformation, and a train step of
``nnx.value_and_grad`` then ``optimizer.update(model, grads)``.

Design rules:

* ``MLP``, ``LOSSES``, ``make_tx``, ``build``, ``evaluate`` and ``train_step`` are plain Flax
  code, what a user writes for one network. The rest of the module only runs them for many
  points and many steps at once: ``nnx.split`` turns the model and optimizer into a pure
  state, which ``jax.vmap`` maps over the point axis and ``jax.lax.scan`` over runs of steps
  inside one ``jax.jit`` call (Flax's functional API, which it recommends for composing with
  JAX transforms; one ``nnx.jit`` call per step costs about 0.3 ms of Python).
* ``nnx.Linear``'s kernel is ``(in, out)``, the shared layout: weights need no transpose. The
  model is built with ``nnx.Rngs`` as nnx requires, but abstractly (``nnx.eval_shape``): the
  initialiser is traced, never run, and ``load`` sets every parameter from the injected
  values.
* The optax transformations follow torch's formulas, as the contract does: ``eps_root=0`` (eps
  outside the square root), torch's L2 decay as ``add_decayed_weights`` *before* the update
  rule, AdamW's decoupled decay passed explicitly (optax's default of 1e-4 is never used), and
  torch's momentum with dampening (``dampened_trace``) where optax's ``trace`` has none.
* JAX computes in float32 unless ``jax_enable_x64`` is on, so importing this module turns it on
  before any JAX array exists (the registry imports it lazily, on first use).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (x64 must be on before any JAX array exists)
import jax.test_util  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from implementations.contract import (  # noqa: E402
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
    initial_state,
)
from implementations.jax_grad import (  # noqa: E402  (one rule for both JAX sides)
    COMPILER_OPTIONS,
    rounded_once,
)

NAME = "flax_nnx"

#: Dtypes this implementation computes natively in (XLA's CPU backend covers all four).
DTYPES = ("float64", "float32", "float16", "bfloat16")

JAX_DTYPES = {
    "float64": jnp.float64,
    "float32": jnp.float32,
    "float16": jnp.float16,
    "bfloat16": jnp.bfloat16,
}


def leaky_relu(Z: jax.Array) -> jax.Array:
    """``Z`` above zero, ``LEAKY_RELU_SLOPE * Z`` at and below it.

    Not ``nnx.leaky_relu`` (``jax.nn.leaky_relu``): that is ``where(Z >= 0, ...)``, whose
    derivative at exactly 0 is 1 where torch and the contract take the slope, and an exact 0
    does happen (a zero-initialised weight column, an all-zero input row).
    """
    return jnp.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z)


#: Activation name -> the function nnx exports for it (leaky_relu aside, see above), wrapped
#: by ``rounded_once`` so that float16 and bfloat16 compute in float32 and round once, as the
#: contract and torch's CPU kernels do (nnx's functions are ``jax.nn``'s, which round after every
#: operation); the sigmoid's and tanh's derivatives come from the rounded output, as torch's.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": rounded_once(nnx.sigmoid, lambda A: (1 - A) * A),
    "tanh": rounded_once(nnx.tanh, lambda A: 1 - A * A),
    "relu": rounded_once(nnx.relu),
    "leaky_relu": rounded_once(leaky_relu),
    "gelu": rounded_once(functools.partial(nnx.gelu, approximate=False)),
    "gelu_tanh": rounded_once(functools.partial(nnx.gelu, approximate=True)),
    "identity": lambda Z: Z,
}


class MLP(nnx.Module):
    """Dense layers, each an ``nnx.Linear`` followed by its activation."""

    def __init__(self, net: Network, dtype: jnp.dtype, *, rngs: nnx.Rngs) -> None:
        self.layers = nnx.List(
            nnx.Linear(
                inputs, outputs, use_bias=net.biases, dtype=dtype, param_dtype=dtype, rngs=rngs
            )
            for inputs, outputs in zip(net.widths[:-1], net.widths[1:], strict=True)
        )
        self.activations = net.activations

    def __call__(self, X: jax.Array) -> jax.Array:
        for linear, activation in zip(self.layers, self.activations, strict=True):
            X = ACTIVATIONS[activation](linear(X))
        return X


@jax.custom_vjp
def binary_cross_entropy_terms(A: jax.Array, Y: jax.Array) -> jax.Array:
    """Each element's binary cross-entropy of probabilities ``A``, each log clamped below at -100
    as torch's ``BCELoss`` does (``optax.sigmoid_binary_cross_entropy`` takes logits instead).

    Its derivative is torch's, ``(A - Y) / max(A (1 - A), 1e-12)`` (the contract's), stated with
    ``jax.custom_vjp``: autodiff of the clamped logs would give 0 where a clamp binds and an
    unbounded ``1 / A`` where ``A (1 - A) < 1e-12``.
    """
    log_A = jnp.maximum(jnp.log(A), jnp.asarray(BCE_LOG_FLOOR, A.dtype))
    log_not_A = jnp.maximum(jnp.log1p(-A), jnp.asarray(BCE_LOG_FLOOR, A.dtype))
    return -(Y * log_A + (1 - Y) * log_not_A)


def _bce_forward(A: jax.Array, Y: jax.Array):
    return binary_cross_entropy_terms(A, Y), (A, Y)


def _bce_backward(residuals, cotangent: jax.Array):
    A, Y = residuals
    floor = jnp.asarray(BCE_GRAD_EPS, A.dtype)
    log_A = jnp.maximum(jnp.log(A), jnp.asarray(BCE_LOG_FLOOR, A.dtype))
    log_not_A = jnp.maximum(jnp.log1p(-A), jnp.asarray(BCE_LOG_FLOOR, A.dtype))
    return cotangent * (A - Y) / jnp.maximum((1 - A) * A, floor), cotangent * (log_not_A - log_A)


binary_cross_entropy_terms.defvjp(_bce_forward, _bce_backward)


def binary_cross_entropy(A: jax.Array, Y: jax.Array) -> jax.Array:
    """Mean binary cross-entropy of probabilities ``A`` (``binary_cross_entropy_terms``)."""
    return jnp.mean(binary_cross_entropy_terms(A, Y))


#: Loss name -> the loss of outputs ``A`` against targets ``Y`` (formulas in the contract).
LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "half-mse": lambda A, Y: optax.l2_loss(A, Y).mean(),  # l2_loss is (A - Y)^2 / 2
    "mse": lambda A, Y: optax.squared_error(A, Y).mean(),
    "half-sse": lambda A, Y: optax.l2_loss(A, Y).sum(),
    "cross-entropy": lambda A, Y: optax.softmax_cross_entropy(A, Y).mean(),
    "binary-cross-entropy": binary_cross_entropy,
}


def widened_loss(name: str, A: jax.Array, Y: jax.Array) -> jax.Array:
    """``LOSSES[name]``; in float16 and bfloat16 on the outputs widened to float32, its value
    rounded once to the dtype, as the contract says and as ``torch.autocast`` runs losses: a
    float16 ``(A - Y)^2`` overflows once ``|A - Y| > 256`` where the mean is finite."""
    if jnp.dtype(A.dtype).itemsize >= 4:
        return LOSSES[name](A, Y)
    return LOSSES[name](A.astype(jnp.float32), Y.astype(jnp.float32)).astype(A.dtype)


class DampenedTraceState(NamedTuple):
    """State of ``dampened_trace``: updates applied so far and the momentum buffer."""

    count: jax.Array
    trace: optax.Params


def dampened_trace(
    momentum: float, dampening: float, nesterov: bool
) -> optax.GradientTransformation:
    """torch's SGD momentum buffer with dampening, which ``optax.trace`` lacks.

    ``buf <- g`` at the first update (torch applies no dampening then), else
    ``buf <- momentum * buf + (1 - dampening) * g``; the update is ``g + momentum * buf`` with
    Nesterov, else ``buf``.
    """

    def init(params: optax.Params) -> DampenedTraceState:
        return DampenedTraceState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        first = state.count == 0
        trace = jax.tree.map(
            lambda g, buf: jnp.where(first, g, momentum * buf + (1 - dampening) * g),
            updates,
            state.trace,
        )
        if nesterov:
            updates = jax.tree.map(lambda g, buf: g + momentum * buf, updates, trace)
        else:
            updates = trace
        return updates, DampenedTraceState(optax.safe_increment(state.count), trace)

    return optax.GradientTransformation(init, update)


def make_tx(rule: Optimizer) -> optax.GradientTransformation:
    """The optax transformation computing torch's update of ``rule``, every default explicit."""
    # torch's L2 decay adds weight_decay * p to the gradient before anything else sees it.
    l2 = optax.add_decayed_weights(rule.weight_decay)
    if rule.name == "sgd":
        return optax.chain(l2, optax.sgd(rule.lr))
    if rule.name == "momentum":
        if rule.dampening == 0:
            # optax.trace is torch's buffer without dampening: buf <- g + mu buf from zeros, so
            # the first update gives buf = g as torch's does.
            return optax.chain(
                l2, optax.sgd(rule.lr, momentum=rule.momentum, nesterov=rule.nesterov)
            )
        return optax.chain(
            l2,
            dampened_trace(rule.momentum, rule.dampening, rule.nesterov),
            optax.scale_by_learning_rate(rule.lr),
        )
    if rule.name == "adam":
        return optax.chain(
            l2, optax.adam(rule.lr, b1=rule.beta1, b2=rule.beta2, eps=rule.eps, eps_root=0.0)
        )
    return optax.adamw(
        rule.lr,
        b1=rule.beta1,
        b2=rule.beta2,
        eps=rule.eps,
        eps_root=0.0,
        weight_decay=rule.weight_decay,
    )


def build(net: Network, rule: Optimizer, dtype: jnp.dtype) -> tuple[MLP, nnx.Optimizer]:
    """The model and its optimizer, as nnx builds them (parameters from ``nnx.Rngs``)."""
    model = MLP(net, dtype, rngs=nnx.Rngs(0))
    return model, nnx.Optimizer(model, make_tx(rule), wrt=nnx.Param)


def evaluate(
    model: MLP, X: jax.Array, Y: jax.Array, loss: str
) -> tuple[jax.Array, nnx.State, jax.Array]:
    """The loss, its gradient (an ``nnx.State`` shaped like the parameters) and the number of
    rows whose top output is the top target."""

    def loss_of(model: MLP) -> tuple[jax.Array, jax.Array]:
        A = model(X)
        return widened_loss(loss, A, Y), A

    (value, A), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)
    correct = jnp.sum(jnp.argmax(A, axis=-1) == jnp.argmax(Y, axis=-1))
    return value, grads, correct


def train_step(
    model: MLP, optimizer: nnx.Optimizer, X: jax.Array, Y: jax.Array, loss: str
) -> tuple[jax.Array, nnx.State, jax.Array]:
    """One update; returns what ``evaluate`` computed at the state before it."""
    value, grads, correct = evaluate(model, X, Y, loss)
    optimizer.update(model, grads)
    return value, grads, correct


# --- The edge: contract quantities <-> the nnx state of (model, optimizer) -----------------------

_LAYER = re.compile(r"layers/(\d+)/(kernel|bias)")
#: optax's name of each optimizer-state buffer -> the contract's.
_BUFFERS = {"trace": "momentum", "mu": "m", "nu": "v"}


def _path(keys: tuple) -> str:
    return jax.tree_util.keystr(keys, simple=True, separator="/")


def _param_name(path: str) -> str:
    layer, kind = _LAYER.search(path).groups()
    return f"{'W' if kind == 'kernel' else 'b'}{int(layer) + 1}"


def quantity_of(path: str) -> str | None:
    """The contract's quantity held at one leaf of ``nnx.split((model, optimizer))``'s state
    (``None`` for optax's own update counts, which repeat ``state:step``)."""
    top = path.split("/", 1)[0]
    if top == "0":  # the model
        name = _param_name(path)
        return ("weight:" if name[0] == "W" else "bias:") + name
    if path == "1/step/value":  # nnx.Optimizer's count of updates
        return "state:step"
    for optax_name, kind in _BUFFERS.items():
        if f"/{optax_name}/" in path:
            return f"state:{kind}:{_param_name(path)}"
    return None


def load(template, values: Mapping[str, np.ndarray], points: int):
    """The nnx state of ``points`` points: every leaf of the (abstract) template replaced by the
    quantity it holds (``quantity_of``), given with a leading point axis, in the leaf's dtype.

    This is where the injected parameters replace nnx's initialisation. The kernel is
    ``(in, out)``, the shared layout, so it goes in as it is (no transpose).
    """

    def leaf_value(keys: tuple, leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        quantity = quantity_of(_path(keys))
        if quantity is None:  # optax's own counts of updates (bias correction, first update)
            quantity = "state:step"
        if quantity in values:
            return np.asarray(np.asarray(values[quantity], dtype=np.float64), dtype=leaf.dtype)
        return np.zeros((points, *leaf.shape), dtype=leaf.dtype)  # sgd keeps no count

    return jax.tree_util.tree_map_with_path(leaf_value, template)


def records_of(state, names: tuple[str, ...]) -> dict[str, jax.Array]:
    """The quantities ``names`` read from a state (``load``'s inverse)."""
    records = {}
    for keys, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        quantity = quantity_of(_path(keys))
        if quantity in names:
            records[quantity] = leaf
    return records


def grad_records(grads: nnx.State) -> dict[str, jax.Array]:
    """``{"grad:W1": ..., "grad:b1": ...}`` from ``nnx.value_and_grad``'s gradient state."""
    return {
        f"grad:{_param_name(_path(keys))}": leaf
        for keys, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]
    }


class Program:
    """The jitted, point-vectorised functions of one network, optimizer and dtype.

    Training runs in pieces of ``length`` steps, each one ``jax.lax.scan`` over a block of
    equal-sized batches; a piece cut short (the end of a chunk, of a run of equal-sized
    batches, or the last state, which is recorded but not updated) is padded with inactive
    steps whose update is discarded. So one shape per batch size is ever compiled.
    """

    #: Steps one ``jax.lax.scan`` call runs at most.
    SCAN_LENGTH = 32

    def __init__(self, net: Network, rule: Optimizer, dtype: str) -> None:
        self.net, self.rule, self.dtype = net, rule, dtype
        # Built abstractly (shapes and dtypes only): nnx's initialiser is traced, never run,
        # since load overwrites every parameter it would draw.
        model, optimizer = nnx.eval_shape(lambda: build(net, rule, JAX_DTYPES[dtype]))
        self.graphdef, self.template = nnx.split((model, optimizer))
        self.state_names = (*net.param_quantities.values(), *rule.state_names(net))
        graphdef, state_names = self.graphdef, self.state_names

        def one_step(state, X, Y):
            model, optimizer = nnx.merge(graphdef, state)
            before = records_of(state, state_names)
            value, grads, correct = train_step(model, optimizer, X, Y, net.loss)
            _, after = nnx.split((model, optimizer))
            return after, {"loss": value, **grad_records(grads), "train_correct": correct, **before}

        shared_batch = jax.vmap(one_step, in_axes=(0, None, None))

        def run(state, X, Y, rows, active):  # rows (L, R): every point on the same batches
            def body(state, step):
                step_rows, step_active = step
                after, records = shared_batch(state, X[step_rows], Y[step_rows])
                state = jax.tree.map(
                    lambda new, old: jnp.where(step_active, new, old), after, state
                )
                return state, records

            return jax.lax.scan(body, state, (rows, active))

        def step_each(state, X, Y, rows):  # rows (P, R): each point on its own batch
            return jax.vmap(one_step)(state, X[rows], Y[rows])

        # Without XLA's excess precision, as in jax_grad (``COMPILER_OPTIONS``): the contract
        # rounds every 16-bit activation before the loss reads it.
        compile_ = functools.partial(jax.jit, compiler_options=COMPILER_OPTIONS)
        self.run = compile_(run)
        self.step_each = compile_(step_each)
        self.predict = compile_(
            jax.vmap(lambda state, X: nnx.merge(graphdef, state)[0](X), in_axes=(0, None))
        )

    def state(self, values: Mapping[str, np.ndarray]):
        """The nnx state of every point of a contract state."""
        points = len(next(iter(values.values())))
        return load(self.template, values, points)

    def array(self, X: np.ndarray) -> np.ndarray:
        """``X`` in the compute dtype."""
        return np.asarray(np.asarray(X, dtype=np.float64), dtype=JAX_DTYPES[self.dtype])


@functools.lru_cache(maxsize=32)
def program(net: Network, rule: Optimizer, dtype: str) -> Program:
    """The compiled functions of a network, optimizer and dtype, built once per process."""
    return Program(net, rule, dtype)


def _numpy(records: Mapping[str, jax.Array]) -> dict[str, np.ndarray]:
    return {
        name: np.asarray(array).astype(np.int64 if name == "train_correct" else np.float64)
        for name, array in records.items()
    }


def _pieces(rows: list[np.ndarray], updates: int, length: int):
    """Cut a chunk's batches into blocks of ``length`` equal-sized batches.

    Yields ``(rows (length, R), active (length,), used)``: the first ``used`` steps of the
    block are real and only those marked active update (the chunk's steps from ``updates`` on
    are recorded without an update).
    """
    start = 0
    while start < len(rows):
        size = len(rows[start])
        stop = start
        while stop < len(rows) and stop - start < length and len(rows[stop]) == size:
            stop += 1
        used = stop - start
        block = rows[start:stop] + [rows[stop - 1]] * (length - used)
        active = np.arange(start, start + length) < min(stop, updates)
        yield np.stack(block), active, used
        start = stop


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
    compiled = program(problem.network, problem.optimizer, problem.dtype)
    state = compiled.state(initial)
    X_all, Y_all = compiled.array(X), compiled.array(Y)
    length = min(Program.SCAN_LENGTH, chunk, steps + 1)
    for start in range(0, steps + 1, chunk):
        stop = min(start + chunk, steps + 1)
        updates = min(stop, steps) - start  # the state `steps` is recorded but not updated
        pieces = []
        for rows, active, used in _pieces(problem.batches.chunk(start, stop), updates, length):
            state, records = compiled.run(state, X_all, Y_all, jnp.asarray(rows), active)
            pieces.append({name: array[:used] for name, array in _numpy(records).items()})
        sink(start, {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]})
        if progress is not None:
            progress(stop)


def step(
    problem: Problem, states: State, X: np.ndarray, Y: np.ndarray, rows: np.ndarray | None
) -> tuple[dict[str, np.ndarray], State]:
    """One training step from each of ``P`` unrelated states: its records and the next states."""
    compiled = program(problem.network, problem.optimizer, problem.dtype)
    points = len(states[problem.network.param_quantities["W1"]])
    if rows is None:
        rows = np.broadcast_to(np.arange(len(X)), (points, len(X)))
    after, records = compiled.step_each(
        compiled.state(states), compiled.array(X), compiled.array(Y), np.asarray(rows)
    )
    return _numpy(records), _numpy(records_of(after, compiled.state_names))


def loss_and_grads(
    problem: Problem, params: Params, X: np.ndarray, Y: np.ndarray
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The loss ``(P,)`` and gradients ``{grad:W1: (P, in, out), ...}`` on all of ``X``."""
    records, _ = step(problem, initial_state(problem, params), X, Y, None)
    return records["loss"], {name: v for name, v in records.items() if name.startswith("grad:")}


def predict(problem: Problem, params: Params, X: np.ndarray) -> np.ndarray:
    """The network output ``(P, R, O)`` for every parameter point."""
    compiled = program(problem.network, problem.optimizer, problem.dtype)
    state = compiled.state(initial_state(problem, params))
    return np.asarray(compiled.predict(state, compiled.array(X)), dtype=np.float64)


def release() -> None:
    """Drop the compiled programs (``program``'s cache) and JAX's executables (the contract's
    ``release``, as ``jax_grad.release``)."""
    program.cache_clear()
    jax.clear_caches()


def precision_environment() -> dict[str, object]:
    """The switches that decide JAX's arithmetic: x64, default matmul precision, backend."""
    return {
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "jax.default_backend": jax.default_backend(),
    }


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
    """``jax.test_util.check_grads`` (reverse mode) of the model's loss at one point, float64."""
    net = problem.network
    problem64 = dataclasses.replace(problem, dtype="float64")
    compiled = program(net, problem.optimizer, "float64")
    one_point = {name: np.asarray(params[name])[None] for name in net.param_names}
    state = jax.tree.map(lambda leaf: leaf[0], compiled.state(initial_state(problem64, one_point)))
    model, _ = nnx.merge(compiled.graphdef, state)
    graphdef, param_state = nnx.split(model)
    X_all, Y_all = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)

    @jax.jit
    def loss_of(state: nnx.State) -> jax.Array:
        return LOSSES[net.loss](nnx.merge(graphdef, state)(X_all), Y_all)

    try:
        jax.test_util.check_grads(
            loss_of, (param_state,), order=1, modes=("rev",), atol=atol, rtol=rtol, eps=step
        )
    except AssertionError as error:
        return {
            "checker": "jax.test_util.check_grads",
            "passed": False,
            "error": None,
            "detail": str(error).strip().splitlines()[0],
        }
    return {
        "checker": "jax.test_util.check_grads",
        "passed": True,
        "error": None,
        "detail": f"check_grads passed (reverse mode, eps={step:g})",
    }
