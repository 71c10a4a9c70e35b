"""The JAX implementation (``implementations.jax_grad``) against the contract's formulas.

The formulas are written a second time here in plain NumPy (forward, losses, torch's update
rules), and gradients are checked against central differences of that NumPy loss, so these
tests do not lean on JAX to judge JAX. Where the hand-written NumPy reference
(``implementations.numpy_manual``) meets the new contract, every record is compared with it too.

JAX compilation dominates the time: the networks are tiny, and each test reuses one shape.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import math

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("optax")

import jax
import jax.numpy as jnp
from scipy.special import erf

from implementations import jax_grad
from implementations.contract import (
    ACTIVATIONS,
    BCE_LOG_FLOOR,
    LEAKY_RELU_SLOPE,
    LOSSES,
    Batches,
    Network,
    Optimizer,
    Problem,
    initial_state,
    params_of,
)

# ----------------------------------------------------------------------------------------------
# The contract's formulas, in NumPy.

NP_ACTIVATIONS = {
    "sigmoid": lambda Z: 1 / (1 + np.exp(-Z)),
    "tanh": np.tanh,
    "relu": lambda Z: np.where(Z > 0, Z, 0.0),
    "leaky_relu": lambda Z: np.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z),
    "gelu": lambda Z: 0.5 * Z * (1 + erf(Z / math.sqrt(2))),
    "gelu_tanh": lambda Z: 0.5 * Z * (1 + np.tanh(math.sqrt(2 / math.pi) * (Z + 0.044715 * Z**3))),
    "identity": lambda Z: Z,
}


def np_forward(net: Network, params: dict, X: np.ndarray) -> np.ndarray:
    A = X
    for layer, activation in enumerate(net.activations, start=1):
        Z = A @ params[f"W{layer}"] + (params[f"b{layer}"] if net.biases else 0.0)
        A = NP_ACTIVATIONS[activation](Z)
    return A


def np_loss(name: str, A: np.ndarray, Y: np.ndarray) -> float:
    R, O = Y.shape  # noqa: E741  (the contract's names)
    if name == "half-mse":
        return np.sum((A - Y) ** 2) / (2 * R * O)
    if name == "mse":
        return np.sum((A - Y) ** 2) / (R * O)
    if name == "half-sse":
        return np.sum((A - Y) ** 2) / 2
    if name == "cross-entropy":
        shifted = A - A.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
        return -np.sum(Y * log_softmax) / R
    with np.errstate(divide="ignore"):
        log_a = np.maximum(np.log(A), BCE_LOG_FLOOR)
        log_1a = np.maximum(np.log1p(-A), BCE_LOG_FLOOR)
    return -np.sum(Y * log_a + (1 - Y) * log_1a) / (R * O)


def np_loss_at(net: Network, params: dict, X: np.ndarray, Y: np.ndarray) -> float:
    return np_loss(net.loss, np_forward(net, params, X), Y)


def central_differences(net, params, X, Y, h=1e-6) -> dict[str, np.ndarray]:
    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            shifted = {k: v.copy() for k, v in params.items()}
            shifted[name][index] = value[index] + h
            plus = np_loss_at(net, shifted, X, Y)
            shifted[name][index] = value[index] - h
            minus = np_loss_at(net, shifted, X, Y)
            grad[index] = (plus - minus) / (2 * h)
        grads[name] = grad
    return grads


def np_update(opt: Optimizer, net: Network, state: dict, grads: dict) -> dict:
    """torch's update rules as the contract writes them: one point's state ``k`` -> ``k + 1``."""
    out = dict(state)
    step = state.get("state:step", 0.0)
    t = step + 1
    for name, quantity in net.param_quantities.items():
        p, g = state[quantity], grads[f"grad:{name}"]
        if opt.name == "adamw":
            p = p * (1 - opt.lr * opt.weight_decay)
        else:
            g = g + opt.weight_decay * p
        if opt.name == "sgd":
            p = p - opt.lr * g
        elif opt.name == "momentum":
            buf = state[f"state:momentum:{name}"]
            buf = g if step == 0 else opt.momentum * buf + (1 - opt.dampening) * g
            out[f"state:momentum:{name}"] = buf
            p = p - opt.lr * (g + opt.momentum * buf if opt.nesterov else buf)
        else:
            m = opt.beta1 * state[f"state:m:{name}"] + (1 - opt.beta1) * g
            v = opt.beta2 * state[f"state:v:{name}"] + (1 - opt.beta2) * g**2
            out[f"state:m:{name}"], out[f"state:v:{name}"] = m, v
            m_hat, v_hat = m / (1 - opt.beta1**t), v / (1 - opt.beta2**t)
            p = p - opt.lr * m_hat / (np.sqrt(v_hat) + opt.eps)
        out[quantity] = p
    if "state:step" in state:
        out["state:step"] = t
    return out


# ----------------------------------------------------------------------------------------------
# Problems. N = 7 rows in batches of 3: sizes 3, 3, 1, so step 2 has a partial batch.

ROWS = 7
RNG = np.random.default_rng(2024)
X = RNG.normal(size=(ROWS, 3))
Y = np.eye(2)[RNG.integers(0, 2, ROWS)]

#: Large eps so that eps inside or outside the square root differ visibly.
OPTIMIZERS = {
    "sgd-l2": Optimizer("sgd", lr=0.1, weight_decay=0.05),
    "momentum-dampening-l2": Optimizer(
        "momentum", lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.05
    ),
    "nesterov": Optimizer("momentum", lr=0.1, momentum=0.8, nesterov=True),
    "adam-l2": Optimizer("adam", lr=0.05, beta1=0.8, eps=1e-3, weight_decay=0.05),
    "adamw": Optimizer("adamw", lr=0.05, beta2=0.99, eps=1e-3, weight_decay=0.1),
}


def output_activation(loss: str, index: int) -> str:
    if loss == "cross-entropy":
        return "identity"
    if loss == "binary-cross-entropy":
        return "sigmoid"
    return ACTIVATIONS[(index + 5) % len(ACTIVATIONS)]


#: Every optimizer x every loss, biases on for half of them (each optimizer and each loss meets
#: both), and the two hidden activations cycling so that every activation meets every
#: optimizer and every loss: a pairwise design, since each case costs one XLA compilation.
MATRIX = [
    (index, optimizer, loss, (o + k) % 2 == 1)
    for index, ((o, optimizer), (k, loss)) in enumerate(
        itertools.product(enumerate(OPTIMIZERS), enumerate(LOSSES))
    )
]


def matrix_problem(index: int, optimizer: str, loss: str, biases: bool) -> Problem:
    hidden = (ACTIVATIONS[index % len(ACTIVATIONS)], ACTIVATIONS[(index + 3) % len(ACTIVATIONS)])
    net = Network((3, 4, 3, 2), (*hidden, output_activation(loss, index)), biases, loss)
    return Problem(net, OPTIMIZERS[optimizer], "float64", Batches(ROWS, 3, seed=index))


def draw_params(net: Network, points: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        name: 0.5 * rng.normal(size=(points, *shape)) for name, shape in net.param_shapes.items()
    }


def run(problem: Problem, params: dict, steps: int, chunk: int | None = None) -> dict:
    """Train and glue the chunks back together: quantity -> (steps + 1, P, ...)."""
    chunks: list[tuple[int, dict]] = []
    jax_grad.train(
        problem,
        initial_state(problem, params),
        X,
        Y,
        steps,
        chunk=chunk or steps + 1,
        sink=lambda start, records: chunks.append((start, records)),
    )
    starts = [start for start, _ in chunks]
    assert starts == sorted(starts) and starts[0] == 0, f"chunks out of order: {starts}"
    return {q: np.concatenate([r[q] for _, r in chunks]) for q in chunks[0][1]}


@functools.cache
def trained(problem: Problem, points: int, seed: int, steps: int = 7) -> dict:
    """``run`` of ``points`` points drawn from ``seed``, kept for the tests that share it (the
    arrays are read, never written)."""
    return run(problem, draw_params(problem.network, points, seed), steps)


def numpy_manual_module():
    """``implementations.numpy_manual`` if it meets the new contract (its rewrite is under way)."""
    from implementations import numpy_manual

    if "problem" not in inspect.signature(numpy_manual.train).parameters:
        return None
    return numpy_manual


def point(records: dict, k: int, p: int, names) -> dict:
    return {q: records[q][k, p] for q in names}


# ----------------------------------------------------------------------------------------------
# The matrix: every record at every step against the formulas (and numpy_manual when ready).


@pytest.mark.parametrize(
    ("index", "optimizer", "loss", "biases"),
    MATRIX,
    ids=[f"{o}-{loss}-{'biases' if b else 'nobias'}" for _, o, loss, b in MATRIX],
)
def test_every_record_follows_the_contract_formulas(index, optimizer, loss, biases):
    problem = matrix_problem(index, optimizer, loss, biases)
    net, steps, points = problem.network, 3, 2
    records = run(problem, draw_params(net, points, seed=index), steps)
    assert set(records) == set(problem.record_names()), "records hold the wrong quantities"
    for name in problem.record_names():
        leading = (steps + 1, points)
        assert records[name].shape[:2] == leading, f"{name} shaped {records[name].shape}"
    assert records["train_correct"].dtype == np.int64
    for k, p in itertools.product(range(steps + 1), range(points)):
        rows = problem.batches.indices(k)
        state = point(records, k, p, problem.state_names())
        params = params_of(net, state)
        where = f"{problem.network.describe()}, {optimizer}, state {k}, point {p}"
        np.testing.assert_allclose(
            records["loss"][k, p],
            np_loss_at(net, params, X[rows], Y[rows]),
            rtol=1e-12,
            err_msg=f"loss at {where}",
        )
        expected_correct = np.sum(
            np.argmax(np_forward(net, params, X[rows]), 1) == np.argmax(Y[rows], 1)
        )
        assert records["train_correct"][k, p] == expected_correct, f"train_correct at {where}"
        numeric = central_differences(net, params, X[rows], Y[rows])
        for name in net.param_names:
            np.testing.assert_allclose(
                records[f"grad:{name}"][k, p],
                numeric[name],
                rtol=1e-6,
                atol=1e-8,
                err_msg=f"grad:{name} against central differences at {where}",
            )
        if "state:step" in state:
            assert state["state:step"] == k, f"state:step at {where}"
        if k < steps:
            grads = {f"grad:{n}": records[f"grad:{n}"][k, p] for n in net.param_names}
            expected = np_update(problem.optimizer, net, state, grads)
            for quantity in problem.state_names():
                np.testing.assert_allclose(
                    records[quantity][k + 1, p],
                    expected[quantity],
                    rtol=1e-12,
                    atol=1e-15,
                    err_msg=f"{quantity} after the update from {where}",
                )

    reference = numpy_manual_module()
    if reference is None:
        pytest.skip("numpy_manual does not meet the new contract yet; formulas checked only")
    expected_chunks: list[tuple[int, dict]] = []
    reference.train(
        problem,
        initial_state(problem, draw_params(net, points, seed=index)),
        X,
        Y,
        steps,
        chunk=steps + 1,
        sink=lambda start, recs: expected_chunks.append((start, recs)),
    )
    expected = {q: np.concatenate([r[q] for _, r in expected_chunks]) for q in records}
    for quantity in problem.record_names():
        np.testing.assert_allclose(
            records[quantity],
            expected[quantity],
            rtol=1e-10,
            atol=1e-13,
            err_msg=f"{quantity}: jax against numpy_manual",
        )


# ----------------------------------------------------------------------------------------------
# Points, chunks and the synced step.

ADAM_FULL = Problem(
    Network((3, 4, 2), ("tanh", "sigmoid"), True, "half-mse"),
    Optimizer("adam", lr=0.05, eps=1e-3, weight_decay=0.01),
    "float64",
    Batches(ROWS),
)
MOMENTUM_MINIBATCH = Problem(
    Network((3, 4, 2), ("relu", "identity"), True, "cross-entropy"),
    Optimizer("momentum", lr=0.1, momentum=0.9, dampening=0.2),
    "float64",
    Batches(ROWS, 3, seed=5),
)


@pytest.mark.parametrize("problem", [ADAM_FULL, MOMENTUM_MINIBATCH], ids=["adam", "momentum"])
def test_points_train_as_if_alone(problem):
    params = draw_params(problem.network, 2, seed=1)
    together = trained(problem, 2, seed=1)
    for p in range(2):
        alone = run(problem, {n: v[p : p + 1] for n, v in params.items()}, 7)
        for quantity, values in alone.items():
            np.testing.assert_allclose(
                together[quantity][:, p],
                values[:, 0],
                rtol=1e-13,
                atol=1e-15,
                err_msg=f"point {p}'s {quantity} changes when trained beside another",
            )


def test_chunking_changes_nothing_and_compiles_once():
    problem = MOMENTUM_MINIBATCH
    whole = trained(problem, 2, seed=1)  # 8 states in one chunk
    before = jax_grad._train_chunk._cache_size()
    chunks, progress = [], []
    jax_grad.train(
        problem,
        initial_state(problem, draw_params(problem.network, 2, seed=1)),
        X,
        Y,
        7,
        chunk=3,
        sink=lambda start, records: chunks.append((start, records)),
        progress=progress.append,
    )
    # The last, shorter chunk runs the full chunk length (its extra states are dropped): one
    # compilation, not one per chunk length.
    assert jax_grad._train_chunk._cache_size() - before == 1, "compiled more than once"
    assert [(start, r["loss"].shape[0]) for start, r in chunks] == [(0, 3), (3, 3), (6, 2)]
    assert progress[-1] == 8 and progress == sorted(progress), f"progress: {progress}"
    for quantity, values in whole.items():
        np.testing.assert_array_equal(
            np.concatenate([r[quantity] for _, r in chunks]),
            values,
            err_msg=f"{quantity} changes with the chunk size",
        )


def test_step_pads_the_number_of_states_to_a_compiled_size_and_drops_the_padding():
    """Steps from 5, 3 and 1 states compile one size (8): the padding copies of the last state
    are dropped, and every state gets the numbers it gets among others."""
    problem = dataclasses.replace(ADAM_FULL, batches=Batches(rows=ROWS, size=0, seed=5))
    records = trained(problem, 1, seed=3)
    states = {q: records[q][:5, 0] for q in problem.state_names()}
    before = jax_grad._step_points._cache_size()
    results = [
        jax_grad.step(problem, {q: v[:points] for q, v in states.items()}, X, Y, None)
        for points in (5, 3, 1)
    ]
    assert jax_grad._step_points._cache_size() - before == 1, "compiled once per size asked"
    for (got, after), points in zip(results, (5, 3, 1), strict=True):
        for quantity, values in {**got, **after}.items():
            assert len(values) == points, f"{quantity}: {len(values)} states for {points}"
        for quantity in problem.record_names():
            np.testing.assert_allclose(
                got[quantity],
                records[quantity][:points, 0],
                rtol=1e-13,
                atol=1e-15,
                err_msg=f"{quantity} of a padded step differs from the training loop's",
            )


@pytest.mark.parametrize("problem", [ADAM_FULL, MOMENTUM_MINIBATCH], ids=["adam", "momentum"])
def test_step_from_unrelated_states_matches_train(problem):
    """States of different steps (so different ``state:step`` counts) stepped at once."""
    records = trained(problem, 1, seed=7)
    ks = [3, 0, 2, 1]
    states = {q: np.stack([records[q][k, 0] for k in ks]) for q in problem.state_names()}
    # Minibatches: step 2's batch is the partial one, so the rows are ragged (3, 3, 1, 3).
    rows = None if problem.batches.full else [problem.batches.indices(k) for k in ks]
    got, after = jax_grad.step(problem, states, X, Y, rows)
    for i, k in enumerate(ks):
        for quantity in problem.record_names():
            np.testing.assert_allclose(
                got[quantity][i],
                records[quantity][k, 0],
                rtol=1e-13,
                atol=1e-15,
                err_msg=f"step() records {quantity} at state {k} unlike train",
            )
        for quantity in problem.state_names():
            np.testing.assert_allclose(
                after[quantity][i],
                records[quantity][k + 1, 0],
                rtol=1e-13,
                atol=1e-15,
                err_msg=f"step() from state {k}: {quantity} unlike train's state {k + 1}",
            )


def test_step_takes_rows_as_a_points_by_rows_array():
    problem = MOMENTUM_MINIBATCH
    records = trained(problem, 1, seed=7)
    ks = [0, 1, 3]  # full batches of 3 rows each
    states = {q: np.stack([records[q][k, 0] for k in ks]) for q in problem.state_names()}
    rows = np.stack([problem.batches.indices(k) for k in ks])
    assert rows.shape == (3, 3)
    _, after = jax_grad.step(problem, states, X, Y, rows)
    for i, k in enumerate(ks):
        np.testing.assert_allclose(
            after["weight:W1"][i], records["weight:W1"][k + 1, 0], rtol=1e-13, atol=1e-15
        )


def test_loss_and_grads_and_predict_at_points():
    problem = ADAM_FULL
    net = problem.network
    params = draw_params(net, 2, seed=9)
    losses, grads = jax_grad.loss_and_grads(problem, params, X, Y)
    outputs = jax_grad.predict(problem, params, X)
    assert losses.shape == (2,) and outputs.shape == (2, ROWS, 2)
    assert set(grads) == {f"grad:{name}" for name in net.param_names}
    for p in range(2):
        point_params = {name: values[p] for name, values in params.items()}
        np.testing.assert_allclose(outputs[p], np_forward(net, point_params, X), rtol=1e-13)
        np.testing.assert_allclose(losses[p], np_loss_at(net, point_params, X, Y), rtol=1e-13)
        numeric = central_differences(net, point_params, X, Y)
        for name in net.param_names:
            np.testing.assert_allclose(
                grads[f"grad:{name}"][p], numeric[name], rtol=1e-6, atol=1e-9
            )


# ----------------------------------------------------------------------------------------------
# Conventions that ports get wrong.


def one_layer(activation: str, loss: str = "half-sse") -> Problem:
    return Problem(
        Network((3, 2), (activation,), False, loss), Optimizer(), "float64", Batches(ROWS)
    )


def test_gelu_is_exact_and_gelu_tanh_the_approximation():
    params = {"W1": np.array([[[1.5, -2.0], [0.3, 0.7], [-1.1, 0.4]]])}
    exact = jax_grad.predict(one_layer("gelu"), params, X)[0]
    approximate = jax_grad.predict(one_layer("gelu_tanh"), params, X)[0]
    Z = X @ params["W1"][0]
    np.testing.assert_allclose(exact, NP_ACTIVATIONS["gelu"](Z), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(approximate, NP_ACTIVATIONS["gelu_tanh"](Z), rtol=1e-13, atol=1e-16)
    assert np.max(np.abs(exact - approximate)) > 1e-5, "gelu and gelu_tanh must differ"


@pytest.mark.parametrize(("activation", "slope"), [("relu", 0.0), ("leaky_relu", LEAKY_RELU_SLOPE)])
def test_derivative_at_exactly_zero(activation, slope):
    """Zero weights put every Z at exactly 0: dA/dZ there is relu's 0 and leaky_relu's slope
    (torch's convention; ``jax.nn.leaky_relu`` would give 1)."""
    _, grads = jax_grad.loss_and_grads(one_layer(activation), {"W1": np.zeros((1, 3, 2))}, X, Y)
    # L = sum((A - Y)^2) / 2 with A = 0: dL/dA = -Y, dL/dZ = -Y * slope, dL/dW = X^T dL/dZ.
    np.testing.assert_allclose(grads["grad:W1"][0], X.T @ (-Y * slope), rtol=1e-14, atol=0)


def test_binary_cross_entropy_clamps_saturated_logs_with_finite_gradients():
    problem = one_layer("sigmoid", "binary-cross-entropy")
    X_far = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    Y_wrong = np.array([[0.0, 1.0], [1.0, 0.0]])
    params = {"W1": np.full((1, 3, 2), 800.0)}  # sigmoid(+-800) is exactly 1.0 or 0.0
    losses, grads = jax_grad.loss_and_grads(problem, params, X_far, Y_wrong)
    # Every element's wrong-side log is log(0) or log(1 - 1) = -inf, clamped to -100; the
    # right-side log is log(1) = 0. Mean over R * O = 4 elements of 100 or 0.
    assert losses[0] == pytest.approx(-BCE_LOG_FLOOR * 2 / 4, rel=1e-15)
    assert np.all(np.isfinite(grads["grad:W1"])), "a clamped log sent nan or inf back"


def test_optimizer_conventions_are_explicit():
    """adamw's decay is the recipe's (never optax's default 1e-4), eps_root is 0, and the L2
    decay of adam comes before the moments."""
    net = Network((3, 2), ("identity",), False, "half-sse")
    params = {"W1": np.ones((1, 3, 2))}
    for optimizer in (
        Optimizer("adamw", lr=0.1, weight_decay=0.0),
        Optimizer("adamw", lr=0.1, weight_decay=0.3),
        Optimizer("adam", lr=0.1, weight_decay=0.3, eps=0.5),
    ):
        problem = Problem(net, optimizer, "float64", Batches(ROWS))
        records = run(problem, params, 1)
        state = point(records, 0, 0, problem.state_names())
        grads = {"grad:W1": records["grad:W1"][0, 0]}
        expected = np_update(optimizer, net, state, grads)
        np.testing.assert_allclose(
            records["weight:W1"][1, 0], expected["weight:W1"], rtol=1e-14, err_msg=str(optimizer)
        )


# ----------------------------------------------------------------------------------------------
# Dtypes.


@pytest.mark.parametrize(
    ("dtype", "rtol"), [("float32", 1e-5), ("float16", 5e-2), ("bfloat16", 2e-1)]
)
def test_lower_precisions_compute_natively_and_stay_close(dtype, rtol):
    """Plain SGD, so the comparison measures the dtype's rounding (Adam's (1 - beta2) g^2
    underflows in float16, which would measure that instead)."""
    assert jax.config.jax_enable_x64, "importing jax_grad turns x64 on"
    assert jax_grad.precision_environment()["jax_enable_x64"] is True
    problem = Problem(ADAM_FULL.network, Optimizer("sgd", lr=0.5), "float64", Batches(ROWS))
    low = Problem(problem.network, problem.optimizer, dtype, problem.batches)
    params = draw_params(problem.network, 1, seed=4)
    exact = run(problem, params, 2)
    rounded = run(low, params, 2)
    for quantity, values in rounded.items():
        assert values.dtype in (np.float64, np.int64), f"{quantity} handed back as {values.dtype}"
        assert np.all(np.isfinite(values)), f"{quantity} not finite in {dtype}"
        np.testing.assert_allclose(
            values, exact[quantity], rtol=rtol, atol=rtol, err_msg=f"{quantity} in {dtype}"
        )
    assert not np.array_equal(rounded["loss"], exact["loss"]), f"{dtype} computed in float64"
    # Computed natively: every number handed back is one the dtype can hold.
    for quantity in ("loss", "grad:W1", "weight:W2"):
        values = rounded[quantity]
        held = np.asarray(values.astype(jnp.dtype(dtype)), dtype=np.float64)
        np.testing.assert_array_equal(held, values, err_msg=f"{quantity} not a {dtype} number")


# ----------------------------------------------------------------------------------------------
# The oracle and the explain view.

TUTORIAL = Problem(
    Network((3, 2, 2), ("sigmoid", "sigmoid")), Optimizer(), "float64", Batches(ROWS)
)


def one_point(net: Network, seed: int = 0) -> dict[str, np.ndarray]:
    return {name: values[0] for name, values in draw_params(net, 1, seed).items()}


def test_gradient_check_passes_a_correct_model_and_keeps_the_global_rng():
    np.random.seed(1234)
    before = np.random.get_state()
    result = jax_grad.gradient_check(
        TUTORIAL, one_point(TUTORIAL.network), X, Y, step=1e-6, atol=1e-9, rtol=1e-6
    )
    after = np.random.get_state()
    assert result["passed"], result["detail"]
    assert result["checker"] == "jax.test_util.check_grads"
    assert 0 <= result["error"] < 1e-8, result
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


@jax.custom_vjp
def sigmoid_half_backward(Z):
    return jax.nn.sigmoid(Z)


def _sigmoid_forward(Z):
    A = jax.nn.sigmoid(Z)
    return A, A


def _sigmoid_half_backward(A, cotangent):
    return (0.5 * cotangent * A * (1 - A),)  # the planted bug: half the derivative


sigmoid_half_backward.defvjp(_sigmoid_forward, _sigmoid_half_backward)


def test_gradient_check_fails_a_planted_wrong_gradient(monkeypatch):
    monkeypatch.setitem(jax_grad.ACTIVATIONS, "sigmoid", sigmoid_half_backward)
    result = jax_grad.gradient_check(
        TUTORIAL, one_point(TUTORIAL.network), X, Y, step=1e-6, atol=1e-9, rtol=1e-6
    )
    assert not result["passed"], "a halved derivative passed jax.test_util.check_grads"
    assert result["error"] > 1e-4, result
    assert "check_grads" in result["detail"]


def test_autodiff_view_names_the_jaxpr():
    params = one_point(TUTORIAL.network)
    view = jax_grad.autodiff_view(TUTORIAL, params, X, Y)
    assert view["inputs"] == ("W1", "W2", "X", "Y")
    assert view["jaxpr"] in view["text"] and "logistic" in view["jaxpr"]
    losses, grads = jax_grad.loss_and_grads(TUTORIAL, {k: v[None] for k, v in params.items()}, X, Y)
    assert view["loss"] == pytest.approx(losses[0], rel=1e-15)
    for name in ("W1", "W2"):
        np.testing.assert_allclose(view["grads"][name], grads[f"grad:{name}"][0], rtol=1e-15)
    by_name = {}
    for variable, names in view["names"].items():
        for name in names.split(", "):
            by_name[name] = variable
    for name in ("W1", "W2", "X", "Y", "Z1", "A1", "A2", "dL_dW1", "dL_dW2", "delta2"):
        assert name in by_name, f"no jaxpr variable named {name}: {view['names']}"
    # The variable named A1 is the one the first logistic defines, and A2 the second's.
    logistic = [
        line.split(":")[0].strip() for line in view["jaxpr"].splitlines() if "logistic" in line
    ]
    assert [by_name["A1"], by_name["A2"]] == logistic[:2], (logistic, view["names"])
    assert f"{by_name['A1']} = A1" in view["text"], "the printed legend does not name A1"


def test_a_bfloat16_cross_entropy_step_over_many_points_gives_each_point_its_own_loss():
    """Regression: with the log-sum-exp in bfloat16, XLA's CPU kernel under jit(vmap) over 253 or
    more points gave point 252 + j the loss of point j. Each point's batched loss must be the
    loss of that point stepped alone (batched matrix products may differ in the last bit only)."""
    from compare import Recipe, data, weights
    from implementations.contract import initial_state

    recipe = Recipe(
        hidden=(3,), activations=("identity", "identity"), loss="cross-entropy", dtype="bfloat16"
    )
    dataset = data.load(recipe)
    problem = recipe.problem(dataset)
    params = weights.initial_params(recipe, problem.network)
    points = 260
    rng = np.random.default_rng(0)
    state = initial_state(
        problem,
        {
            n: v[None] * (1 + 0.5 * rng.standard_normal((points, *v.shape)))
            for n, v in params.items()
        },
    )
    X, Y = np.asarray(dataset.X_train), np.asarray(dataset.Y_train)
    batched = np.asarray(jax_grad.step(problem, state, X, Y, None)[0]["loss"], np.float64)
    checked = [*range(8), *range(248, points)]
    alone = np.array(
        [
            float(
                jax_grad.step(problem, {q: v[p : p + 1] for q, v in state.items()}, X, Y, None)[0][
                    "loss"
                ][0]
            )
            for p in checked
        ]
    )
    np.testing.assert_allclose(batched[checked], alone, rtol=2**-7)


#: Seeds and weight scales of ``_saturated_bfloat16_steps`` where XLA's excess precision showed
#: (one point a clamp off, 3.9 in the loss, each): it depends on XLA's fusion choices.
EXCESS_PRECISION_CASES = ((0, 2.0), (2, 1.0), (2, 2.0))


def _saturated_bfloat16_steps(module, seed: int, scale: float) -> float:
    """The largest loss difference, in bfloat16 units of the reference's loss, between
    ``module`` and the NumPy reference stepping 256 bfloat16 states of a sigmoid layer at once,
    outputs saturated against their targets (where the float32 sigmoid is above 0.998 it rounds
    to 1.0, whose clamped log is -100)."""
    from implementations import numpy_manual

    rng = np.random.default_rng(seed)
    points, rows, inputs, outputs = 256, 8, 13, 3
    network = Network((inputs, outputs), ("sigmoid",), loss="binary-cross-entropy")
    optimizer = Optimizer("adamw", lr=0.001, weight_decay=1e-4)
    problem = Problem(network, optimizer, "bfloat16", Batches(40, rows, seed=0))
    state = initial_state(problem, {"W1": rng.normal(0, scale, (points, inputs, outputs))})
    X = rng.normal(0, 1, (40, inputs))
    Y = np.eye(outputs)[rng.integers(0, outputs, 40)]
    batch = np.stack([rng.choice(40, rows, replace=False) for _ in range(points)])
    records, _ = module.step(problem, state, X, Y, batch)
    expected, _ = numpy_manual.step(problem, state, X, Y, batch)
    unit = 2.0 ** (np.floor(np.log2(expected["loss"])) - 7)
    return float(np.max(np.abs(records["loss"] - expected["loss"]) / unit))


def test_bfloat16_activations_reach_the_loss_rounded_whatever_xla_fuses():
    # XLA's excess precision let one of 285 points see its sigmoid unrounded (0.998 instead of
    # 1.0): a loss of 0.727 against 4.656 (wine, step 1852 of a false alarm). COMPILER_OPTIONS
    # turns it off.
    for seed, scale in EXCESS_PRECISION_CASES:
        assert _saturated_bfloat16_steps(jax_grad, seed, scale) <= 2


def test_the_saturated_bfloat16_case_catches_excess_precision():
    from compare import testing

    allowed = testing.mutate(
        jax_grad,
        [('COMPILER_OPTIONS = {"xla_allow_excess_precision": False}', "COMPILER_OPTIONS = {}")],
        "excess-precision",
    )
    worst = max(_saturated_bfloat16_steps(allowed, *case) for case in EXCESS_PRECISION_CASES)
    assert worst > 2


def test_flax_bfloat16_activations_reach_the_loss_rounded_whatever_xla_fuses():
    # Flax's jits take jax_grad's COMPILER_OPTIONS too; without them the same cases differ.
    from compare import testing
    from implementations import flax_nnx

    for seed, scale in EXCESS_PRECISION_CASES:
        assert _saturated_bfloat16_steps(flax_nnx, seed, scale) <= 2
    allowed = testing.mutate(
        flax_nnx,
        [("jax.jit, compiler_options=COMPILER_OPTIONS", "jax.jit")],
        "flax-excess-precision",
    )
    worst = max(_saturated_bfloat16_steps(allowed, *case) for case in EXCESS_PRECISION_CASES)
    assert worst > 2


@pytest.mark.parametrize("module", ["jax_grad", "flax_nnx"])
@pytest.mark.parametrize("loss", ["cross-entropy", "mse", "half-sse"])
def test_a_float16_loss_whose_terms_overflow_but_mean_does_not_is_finite(loss, module):
    # The contract computes 16-bit losses on outputs widened to float32 and rounds once: a
    # float16 (A - Y)^2 of |A - Y| = 300 is inf, the mean of such rows is not.
    import importlib

    from implementations import numpy_manual

    rows = 64
    network = Network((1, 2), ("identity",), loss=loss)
    problem = Problem(network, Optimizer("sgd", lr=0.1), "float16", Batches(rows, 0, seed=0))
    X, Y = np.ones((rows, 1)), np.tile([[1.0, 0.0]], (rows, 1))
    W = np.array([[[-300.0, 0.0]]])  # squared errors 301^2 (inf in float16) and 0
    implementation = importlib.import_module(f"implementations.{module}")
    losses, grads = implementation.loss_and_grads(problem, {"W1": W}, X, Y)
    expected, expected_grads = numpy_manual.loss_and_grads(problem, {"W1": W}, X, Y)
    if loss == "half-sse":  # a sum of squares past 65504: inf in the contract too
        assert not np.isfinite(expected).any() and not np.isfinite(losses).any()
        return
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(losses, expected, rtol=2**-10)
    np.testing.assert_allclose(grads["grad:W1"], expected_grads["grad:W1"], rtol=2**-9)


@pytest.mark.parametrize("problem", [ADAM_FULL, MOMENTUM_MINIBATCH], ids=["adam", "momentum"])
def test_step_in_slices_of_points_gives_each_state_its_own_numbers(problem, monkeypatch):
    """A step from many states runs them in slices (``STEP_SLICE_BYTES``), one after another:
    every state, its rows and its update count, lands at its own place as in one ``vmap``."""
    records = trained(problem, 1, seed=7)
    ks = [3, 0, 2, 1, 6, 4, 5]
    states = {q: np.stack([records[q][k, 0] for k in ks]) for q in problem.state_names()}
    rows = None if problem.batches.full else [problem.batches.indices(k) for k in ks]
    found = {}
    for label, budget in (("whole", 2**40), ("slices", 1)):
        monkeypatch.setattr(jax_grad, "STEP_SLICE_BYTES", budget)
        found[label] = jax_grad.step(problem, states, X, Y, rows)
    assert jax_grad._step_slice(problem.network, ROWS, 8, 8) == 1  # the budget of 1 byte
    for whole, sliced in zip(found["whole"], found["slices"], strict=True):
        for quantity, values in whole.items():
            np.testing.assert_allclose(
                sliced[quantity], values, rtol=1e-13, atol=1e-15, err_msg=quantity
            )
    for i, k in enumerate(ks):
        np.testing.assert_allclose(
            found["slices"][1]["weight:W1"][i],
            records["weight:W1"][k + 1, 0],
            rtol=1e-13,
            atol=1e-15,
            err_msg=f"the step from state {k} in slices is not train's state {k + 1}",
        )


def test_step_slices_fill_about_the_budget_of_activations():
    net = Network((64, 64, 10), ("sigmoid", "sigmoid"), False, "half-mse")
    assert jax_grad._step_slice(net, 1777, 8, 32) == 1  # 1 MB of activations a point
    assert jax_grad._step_slice(net, 100, 8, 32) == 16  # 59 kB a point: 17 fit
    assert jax_grad._step_slice(net, 100, 8, 4) == 4  # never more than the points


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="Linux only")
def test_release_drops_the_memory_mappings_of_compiled_code():
    """Each compiled executable holds memory mappings (about 330 for one check); ``release``
    (``jax.clear_caches``) gives them back, so a process checking hundreds of recipes in
    threads does not reach ``vm.max_map_count``."""

    def mappings() -> int:
        with open("/proc/self/maps") as maps:
            return sum(1 for _ in maps)

    jax_grad.release()
    before = mappings()
    for width in (5, 6, 7):  # widths no other test compiles
        net = Network((4, width, 3), ("tanh", "sigmoid"), biases=True, loss="mse")
        problem = Problem(net, Optimizer("sgd", lr=0.1), "float64", Batches(rows=0))
        params = {name: np.full((1, *shape), 0.1) for name, shape in net.param_shapes.items()}
        jax_grad.loss_and_grads(problem, params, np.ones((2, 4)), np.ones((2, 3)))
    compiled = mappings()
    jax_grad.release()
    assert compiled > before and mappings() < compiled, (before, compiled, mappings())
