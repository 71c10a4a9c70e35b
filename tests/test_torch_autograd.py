"""The PyTorch implementation (autograd + torch.optim) against arithmetic written here and
against the NumPy reference.

The contract's formulas are written out once more below in plain NumPy float64 (losses and
their gradients for one dense layer, every optimizer update), so that these tests do not rest
on the implementation they check. Networks are tiny and runs a few steps long.
"""

from __future__ import annotations

import importlib
import math
import subprocess
import sys

import numpy as np
import pytest

from implementations import numpy_manual
from implementations.contract import (
    ACTIVATIONS,
    LOSSES,
    Batches,
    Network,
    Optimizer,
    Problem,
    initial_state,
)

torch = pytest.importorskip("torch")
torch_autograd = pytest.importorskip("implementations.torch_autograd")

#: Rounding-level agreement in float64: relative to each element, or to the quantity's
#: largest value (an element that cancels to almost nothing is judged on the quantity's scale).
RTOL = 1e-10
SCALE_ATOL = 1e-12

#: One setting per optimizer, each with its non-default switches on.
OPTIMIZERS = {
    "sgd": Optimizer("sgd", lr=0.1, weight_decay=0.01),
    "momentum": Optimizer("momentum", lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    # No decay here: torch's foreach Nesterov path then adds the buffer into p.grad in place,
    # which the records must not see (torch_autograd.FOREACH).
    "nesterov": Optimizer("momentum", lr=0.05, momentum=0.8, nesterov=True),
    "adam": Optimizer("adam", lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01),
    "adamw": Optimizer("adamw", lr=0.01, beta1=0.85, beta2=0.995, eps=1e-7, weight_decay=0.1),
}


def assert_close(actual, expected, what: str, rtol: float = RTOL) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, not {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=SCALE_ATOL * scale, err_msg=what)


def output_activation(loss: str, hidden: str = "tanh") -> str:
    return {"cross-entropy": "identity", "binary-cross-entropy": "sigmoid"}.get(loss, hidden)


def data(rows: int, inputs: int, outputs: int, loss: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, inputs))
    if loss == "cross-entropy":
        Y = np.eye(outputs)[rng.integers(0, outputs, size=rows)]
    elif loss == "binary-cross-entropy":
        Y = rng.uniform(size=(rows, outputs))
    else:
        Y = rng.normal(size=(rows, outputs))
    return X, Y


def draw_params(net: Network, points: int, seed: int = 1, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    return {n: rng.normal(scale=scale, size=(points, *s)) for n, s in net.param_shapes.items()}


def run(module, problem, initial, X, Y, steps, chunk=None, progress=None):
    """``module.train``'s chunks joined, checking that they arrive in order."""
    chunks = []
    module.train(
        problem,
        initial,
        X,
        Y,
        steps,
        chunk=chunk or steps + 1,
        sink=lambda start, records: chunks.append((start, records)),
        progress=progress,
    )
    starts = [start for start, _ in chunks]
    lengths = [len(records["loss"]) for _, records in chunks]
    assert starts == list(np.cumsum([0, *lengths[:-1]])), f"chunks start at {starts}"
    return {q: np.concatenate([r[q] for _, r in chunks]) for q in chunks[0][1]}


# ---------------------------------------------------------------------------------------------
# The contract's formulas in NumPy float64, written independently of both implementations.


def activation_formula(name: str, Z: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return {
        "sigmoid": lambda: 1 / (1 + np.exp(-Z)),
        "tanh": lambda: np.tanh(Z),
        "relu": lambda: np.maximum(Z, 0),
        "leaky_relu": lambda: np.where(Z > 0, Z, 0.01 * Z),
        "gelu": lambda: 0.5 * Z * (1 + erf(Z / math.sqrt(2))),
        "gelu_tanh": lambda: (
            0.5 * Z * (1 + np.tanh(math.sqrt(2 / math.pi) * (Z + 0.044715 * Z**3)))
        ),
        "identity": lambda: Z,
    }[name]()


def one_layer_loss_and_grads(loss: str, W, b, X, Y):
    """Loss and gradients of ``A = out(X @ W + b)`` per point, by the contract's formulas
    (``out`` is the identity, or the sigmoid for binary cross-entropy)."""
    rows, outputs = Y.shape
    Z = X @ W + b[:, None, :]
    if loss == "cross-entropy":
        shifted = Z - Z.max(axis=-1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        value = -(Y * log_softmax).sum(axis=(-2, -1)) / rows
        dL_dZ = (np.exp(log_softmax) - Y) / rows
    elif loss == "binary-cross-entropy":
        A = 1 / (1 + np.exp(-Z))
        value = -(Y * np.log(A) + (1 - Y) * np.log1p(-A)).sum(axis=(-2, -1)) / (rows * outputs)
        dL_dZ = (A - Y) / (rows * outputs)  # the sigmoid's A (1 - A) cancels the log's
    else:
        divisor = {"half-mse": 2 * rows * outputs, "mse": rows * outputs, "half-sse": 2}[loss]
        value = ((Z - Y) ** 2).sum(axis=(-2, -1)) / divisor
        dL_dZ = 2 * (Z - Y) / divisor
    return value, X.T @ dL_dZ, dL_dZ.sum(axis=-2)


def contract_update(opt: Optimizer, p, g, buffers: dict, t_before):
    """One update by the contract's ``Optimizer`` docstring: (p_next, buffers_next).
    ``t_before`` (per point, broadcast) is state:step before the update."""
    if opt.name == "adamw":
        p = p * (1 - opt.lr * opt.weight_decay)
    else:
        g = g + opt.weight_decay * p
    if opt.name == "sgd":
        return p - opt.lr * g, {}
    if opt.name == "momentum":
        buf = np.where(
            t_before == 0, g, opt.momentum * buffers["momentum"] + (1 - opt.dampening) * g
        )
        direction = g + opt.momentum * buf if opt.nesterov else buf
        return p - opt.lr * direction, {"momentum": buf}
    t = t_before + 1
    m = opt.beta1 * buffers["m"] + (1 - opt.beta1) * g
    v = opt.beta2 * buffers["v"] + (1 - opt.beta2) * g**2
    m_hat, v_hat = m / (1 - opt.beta1**t), v / (1 - opt.beta2**t)
    return p - opt.lr * m_hat / (np.sqrt(v_hat) + opt.eps), {"m": m, "v": v}


# ---------------------------------------------------------------------------------------------
# The forward pass, the losses and their gradients.


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_activation_is_the_contracts_function(activation):
    net = Network((3, 4), (activation,))
    problem = Problem(net, Optimizer(), "float64", Batches(6))
    X, _ = data(6, 3, 4, "mse", seed=2)
    X[0, 0] = 0.0  # an exact zero among the inputs
    params = draw_params(net, points=2, scale=1.0)
    outputs = torch_autograd.predict(problem, params, X)
    assert_close(outputs, activation_formula(activation, X @ params["W1"]), activation, 1e-13)


@pytest.mark.parametrize("loss", LOSSES)
def test_each_loss_and_its_gradient_follow_the_contracts_formula(loss):
    net = Network((3, 4), (output_activation(loss, "identity"),), biases=True, loss=loss)
    problem = Problem(net, Optimizer(), "float64", Batches(5))
    X, Y = data(5, 3, 4, loss, seed=3)
    params = draw_params(net, points=3)
    losses, grads = torch_autograd.loss_and_grads(problem, params, X, Y)
    value, dW, db = one_layer_loss_and_grads(loss, params["W1"], params["b1"], X, Y)
    assert_close(losses, value, f"{loss}: loss")
    assert_close(grads["grad:W1"], dW, f"{loss}: grad:W1")
    assert_close(grads["grad:b1"], db, f"{loss}: grad:b1 (summed over the rows)")


def test_binary_cross_entropy_clamps_each_log_at_minus_100():
    net = Network((1, 1), ("sigmoid",), loss="binary-cross-entropy")
    problem = Problem(net, Optimizer(), "float64", Batches(1))
    # sigmoid(-800) is 0 in float64: log(A) would be -inf; the contract clamps it at -100.
    losses, _ = torch_autograd.loss_and_grads(
        problem, {"W1": np.array([[[800.0]]])}, [[-1.0]], [[1.0]]
    )
    assert losses.tolist() == [100.0], f"saturated BCE should be 100, got {losses}"


# ---------------------------------------------------------------------------------------------
# The updates: torch.optim against the contract's formulas, from states with their own counts.


@pytest.mark.parametrize("setting", OPTIMIZERS)
def test_step_updates_each_point_by_the_contract_formula_with_its_own_count(setting):
    opt = OPTIMIZERS[setting]
    net = Network((3, 2, 2), ("tanh", "identity"), biases=True, loss="mse")
    problem = Problem(net, opt, "float64", Batches(5))
    X, Y = data(5, 3, 2, "mse", seed=4)
    points = 5
    states = initial_state(problem, draw_params(net, points))
    rng = np.random.default_rng(5)
    for quantity in opt.state_names(net):
        states[quantity] = rng.uniform(0.1, 1.0, size=states[quantity].shape)
    if opt.state_names(net):
        # Two points at their first update (torch's first-step rules), the rest at others.
        states["state:step"] = np.array([0.0, 3.0, 0.0, 1.0, 250.0])
    records, following = torch_autograd.step(problem, states, X, Y, None)
    assert set(following) == set(problem.state_names())
    for name in net.param_names:
        p = states[f"weight:{name}" if name.startswith("W") else f"bias:{name}"]
        count = states.get("state:step", np.zeros(points)).reshape((points,) + (1,) * (p.ndim - 1))
        buffers = {kind: states[f"state:{kind}:{name}"] for kind in opt.state_kinds()}
        expected_p, expected_buffers = contract_update(
            opt, p, records[f"grad:{name}"], buffers, count
        )
        quantity = "weight:" + name if name.startswith("W") else "bias:" + name
        assert_close(following[quantity], expected_p, f"{setting}: {quantity} after the update")
        for kind, expected in expected_buffers.items():
            assert_close(following[f"state:{kind}:{name}"], expected, f"{setting}: {kind}:{name}")
        assert_close(records[quantity], p, f"{setting}: the record holds the state stepped from")
    if opt.state_names(net):
        assert following["state:step"].tolist() == [1.0, 4.0, 1.0, 2.0, 251.0]


def test_optimizer_settings_are_all_explicit():
    """The recipe's numbers reach torch.optim, never torch's defaults (AdamW's decay 1e-2)."""
    leaf = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    adamw = torch_autograd.make_optimizer(
        Optimizer("adamw", lr=0.3, weight_decay=0.0, eps=1e-5), [leaf]
    )
    group = adamw.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["eps"]) == (0.3, 0.0, 1e-5)
    assert (group["amsgrad"], group["maximize"], group["foreach"]) == (
        False,
        False,
        torch_autograd.FOREACH,
    )
    sgd = torch_autograd.make_optimizer(
        Optimizer("sgd", lr=0.2, momentum=0.9, nesterov=True), [leaf]
    )
    assert sgd.param_groups[0]["momentum"] == 0.0, "plain sgd must not pick up momentum"
    with pytest.raises(ValueError, match="momentum > 0"):
        torch_autograd.make_optimizer(Optimizer("momentum", momentum=0.0), [leaf])


# ---------------------------------------------------------------------------------------------
# train and step: one code path, points independent, chunks in order.


@pytest.mark.parametrize("setting", ["momentum", "adam"])
@pytest.mark.parametrize("batch_size", [0, 3])
def test_step_from_each_state_of_train_gives_its_records_and_next_state(setting, batch_size):
    opt = OPTIMIZERS[setting]
    net = Network((3, 3, 2), ("relu", "sigmoid"), biases=True, loss="half-mse")
    problem = Problem(net, opt, "float64", Batches(6, size=batch_size, seed=2))
    X, Y = data(6, 3, 2, "half-mse", seed=6)
    steps = 5
    records = run(torch_autograd, problem, initial_state(problem, draw_params(net, 1)), X, Y, steps)
    # Every state of the run at once, each with its own state:step and its own batch.
    states = {q: records[q][:steps, 0] for q in problem.state_names()}
    rows = None if batch_size == 0 else np.stack([problem.batches.indices(k) for k in range(5)])
    stepped, following = torch_autograd.step(problem, states, X, Y, rows)
    for quantity, value in stepped.items():
        assert_close(value, records[quantity][:steps, 0], f"step's {quantity} at states 0..4")
    for quantity, value in following.items():
        assert_close(value, records[quantity][1:, 0], f"step's next {quantity} = train's k + 1")


def test_points_train_as_separate_runs_even_with_different_counts():
    opt = OPTIMIZERS["adam"]
    net = Network((3, 4, 2), ("gelu", "identity"), biases=True, loss="cross-entropy")
    problem = Problem(net, opt, "float64", Batches(6, size=4, seed=1))
    X, Y = data(6, 3, 2, "cross-entropy", seed=7)
    together = initial_state(problem, draw_params(net, 4))
    rng = np.random.default_rng(8)
    for quantity in opt.state_names(net):
        together[quantity] = rng.uniform(0.0, 0.1, size=together[quantity].shape)
    together["state:step"] = np.array([4.0, 0.0, 2.0, 4.0])  # two share a count, two do not
    joint = run(torch_autograd, problem, together, X, Y, steps=4)
    for point in range(4):
        alone = {q: v[point : point + 1] for q, v in together.items()}
        single = run(torch_autograd, problem, alone, X, Y, steps=4)
        for quantity, values in single.items():
            assert_close(
                joint[quantity][:, point : point + 1],
                values,
                f"point {point}'s {quantity} trained together vs alone",
                rtol=1e-12,
            )


def test_records_come_in_chunks_in_order_with_the_contracts_shapes_and_dtypes():
    opt = OPTIMIZERS["momentum"]
    net = Network((3, 2, 2), ("sigmoid", "sigmoid"), biases=True, loss="binary-cross-entropy")
    problem = Problem(net, opt, "float64", Batches(4))
    X, Y = data(4, 3, 2, "binary-cross-entropy", seed=9)
    initial = initial_state(problem, draw_params(net, 2))
    seen = []
    chunked = run(torch_autograd, problem, initial, X, Y, steps=6, chunk=3, progress=seen.append)
    whole = run(torch_autograd, problem, initial, X, Y, steps=6)
    assert list(chunked) == list(problem.record_names())
    assert seen == sorted(seen) and seen[-1] == 7, f"progress {seen}"
    for quantity, value in chunked.items():
        np.testing.assert_array_equal(value, whole[quantity], err_msg=f"chunk=3 {quantity}")
        dtype = np.int64 if quantity == "train_correct" else np.float64
        assert value.dtype == dtype, f"{quantity} is {value.dtype}"
    assert chunked["weight:W1"].shape == (7, 2, 3, 2)
    assert chunked["bias:b2"].shape == chunked["state:momentum:b2"].shape == (7, 2, 2)
    assert chunked["state:step"][:, 0].tolist() == list(range(7))
    assert not chunked["state:momentum:W1"][0].any(), "the buffer is zeros before any update"


def test_progress_reaches_every_state_of_a_long_run():
    net = Network((1, 1), ("identity",))
    problem = Problem(net, Optimizer(), "float64", Batches(2))
    initial = initial_state(problem, {"W1": np.ones((1, 1, 1))})
    seen = []
    run(torch_autograd, problem, initial, np.ones((2, 1)), np.ones((2, 1)), 250, 100, seen.append)
    assert seen == sorted(seen) and seen[-1] == 251, f"progress went {seen[:3]} ... {seen[-3:]}"
    assert len(seen) >= 3, "progress should be reported during the run, not only at its end"


def test_train_correct_counts_rows_whose_top_output_is_the_top_target():
    net = Network((2, 2), ("identity",))
    problem = Problem(net, Optimizer("sgd", lr=0.0), "float64", Batches(4, size=2, seed=1))
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 2.0]])
    Y = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    # Two points (as many as states, so a mix-up of the two axes could not hide).
    W = np.array([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    records = run(torch_autograd, problem, initial_state(problem, {"W1": W}), X, Y, steps=1)
    top_target = Y.argmax(axis=1)
    expected = [
        [int(np.sum((X[rows] @ W[p]).argmax(axis=1) == top_target[rows])) for p in range(2)]
        for rows in (problem.batches.indices(k) for k in range(2))
    ]
    assert expected == [[1, 2], [1, 0]], "the batch order changed: pick a seed that tells"
    assert records["train_correct"].tolist() == expected


# ---------------------------------------------------------------------------------------------
# Against the NumPy reference, every optimizer x loss x biases, every step.


@pytest.mark.parametrize("biases", [False, True], ids=["no-biases", "biases"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("setting", OPTIMIZERS)
def test_agrees_with_numpy_at_every_step(setting, loss, biases):
    net = Network((3, 4, 2), ("tanh", output_activation(loss)), biases, loss)
    problem = Problem(net, OPTIMIZERS[setting], "float64", Batches(7, size=3, seed=3))
    X, Y = data(7, 3, 2, loss, seed=10)
    initial = initial_state(problem, draw_params(net, 2, seed=11))
    ours = run(torch_autograd, problem, initial, X, Y, steps=5, chunk=4)
    reference = run(numpy_manual, problem, initial, X, Y, steps=5)
    for quantity, expected in reference.items():
        assert_close(ours[quantity], expected, f"{setting}, {loss}: {quantity}", rtol=1e-9)


def test_loss_and_grads_and_predict_agree_with_numpy():
    net = Network((3, 5, 5, 2), ("gelu_tanh", "leaky_relu", "identity"), True, "cross-entropy")
    problem = Problem(net, Optimizer(), "float64", Batches(6))
    X, Y = data(6, 3, 2, "cross-entropy", seed=12)
    params = draw_params(net, 4)
    losses, grads = torch_autograd.loss_and_grads(problem, params, X, Y)
    expected_losses, expected_grads = numpy_manual.loss_and_grads(problem, params, X, Y)
    assert_close(losses, expected_losses, "loss", 1e-12)
    for quantity, expected in expected_grads.items():
        assert_close(grads[quantity], expected, quantity, 1e-12)
    outputs = torch_autograd.predict(problem, params, X)
    assert_close(outputs, numpy_manual.predict(problem, params, X), "predict", 1e-12)


# ---------------------------------------------------------------------------------------------
# Lower precision, the gradient check, the autodiff view, the environment.


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_low_precision_runs_natively_and_stays_near_float64(dtype):
    net = Network((3, 4, 2), ("tanh", "identity"), biases=True, loss="mse")
    float64 = Problem(net, OPTIMIZERS["adam"], "float64", Batches(6))
    problem = Problem(net, OPTIMIZERS["adam"], dtype, Batches(6))
    X, Y = data(6, 3, 2, "mse", seed=13)
    initial = initial_state(problem, draw_params(net, 1))
    low = run(torch_autograd, problem, initial, X, Y, steps=3)
    high = run(torch_autograd, float64, initial, X, Y, steps=3)
    as_dtype = getattr(torch, dtype)
    for quantity in ("weight:W1", "state:m:W2", "grad:b1"):
        values = torch.from_numpy(low[quantity])
        # Computed and stored in dtype: every value handed back is one of dtype's numbers.
        assert torch.equal(values.to(as_dtype).double(), values), f"{dtype} {quantity} not native"
    eps = float(torch.finfo(as_dtype).eps)
    np.testing.assert_allclose(low["loss"], high["loss"], rtol=50 * eps, err_msg=f"{dtype} loss")


def test_a_diverged_run_records_nan_as_data_where_numpy_does():
    """torch's BCE refuses NaN probabilities; a diverged run must still record them."""
    net = Network((3, 2), ("sigmoid",), biases=True, loss="binary-cross-entropy")
    problem = Problem(net, Optimizer("sgd", lr=1e4), "float16", Batches(4))
    X, Y = data(4, 3, 2, "binary-cross-entropy", seed=17)
    initial = initial_state(problem, draw_params(net, 1))
    ours = run(torch_autograd, problem, initial, 100 * X, Y, steps=4)
    reference = run(numpy_manual, problem, initial, 100 * X, Y, steps=4)
    for quantity in ("loss", "grad:W1", "weight:W1"):
        nan = np.isnan(ours[quantity])
        assert nan.any(), f"{quantity}: expected the run to diverge"
        np.testing.assert_array_equal(nan, np.isnan(reference[quantity]), err_msg=quantity)


def test_a_learning_rate_beyond_float16_is_refused_in_one_line():
    net = Network((2, 2), ("identity",))
    problem = Problem(net, Optimizer("sgd", lr=1e6), "float16", Batches(2))
    initial = initial_state(problem, {"W1": np.ones((1, 2, 2))})
    with pytest.raises(ValueError, match=r"cannot apply sgd with lr 1e\+06 to float16"):
        run(torch_autograd, problem, initial, np.ones((2, 2)), np.ones((2, 2)), steps=1)


def test_unknown_dtype_is_refused():
    problem = Problem(Network((2, 2), ("identity",)), Optimizer(), "int8", Batches(1))
    with pytest.raises(ValueError, match="does not compute in int8"):
        torch_autograd.predict(problem, {"W1": np.zeros((1, 2, 2))}, np.zeros((1, 2)))


class HalvedTanhGradient(torch.autograd.Function):
    """tanh with a planted bug: its backward returns half the true derivative."""

    @staticmethod
    def forward(ctx, Z):
        A = torch.tanh(Z)
        ctx.save_for_backward(A)
        return A

    @staticmethod
    def backward(ctx, grad):
        (A,) = ctx.saved_tensors
        return grad * (1 - A * A) / 2


def tanh_problem():
    net = Network((3, 3, 2), ("tanh", "identity"), biases=True, loss="half-mse")
    problem = Problem(net, Optimizer(), "float32", Batches(5))
    X, Y = data(5, 3, 2, "half-mse", seed=14)
    params = {n: v[0] for n, v in draw_params(net, 1).items()}
    return problem, params, X, Y


def test_gradient_check_passes_a_correct_model_and_reports_its_error():
    problem, params, X, Y = tanh_problem()
    result = torch_autograd.gradient_check(problem, params, X, Y, step=1e-6, atol=1e-7, rtol=1e-5)
    assert result["checker"] == "torch.autograd.gradcheck"
    assert result["passed"], result["detail"]
    assert 0 < result["error"] < 1e-8, f"float64 central differences: {result['error']}"


def test_gradient_check_fails_a_planted_wrong_gradient(monkeypatch):
    problem, params, X, Y = tanh_problem()
    monkeypatch.setitem(torch_autograd.ACTIVATIONS, "tanh", HalvedTanhGradient.apply)
    result = torch_autograd.gradient_check(problem, params, X, Y, step=1e-6, atol=1e-7, rtol=1e-5)
    assert not result["passed"], "a halved tanh derivative passed torch.autograd.gradcheck"
    assert result["error"] > 1e-4, f"error figure {result['error']} hides the wrong gradient"
    assert "failed" in result["detail"]


def test_autodiff_view_walks_the_graph_from_the_loss_to_each_parameter():
    net = Network((3, 2, 2), ("sigmoid", "sigmoid"), biases=True, loss="half-mse")
    problem = Problem(net, Optimizer(), "float64", Batches(5))
    X, Y = data(5, 3, 2, "half-mse", seed=15)
    params = {n: v[0] for n, v in draw_params(net, 1).items()}
    view = torch_autograd.autodiff_view(problem, params, X, Y)
    nodes = view["nodes"]
    assert nodes[0].depth == 0 and nodes[0].name == "DivBackward0", nodes[0]
    assert sorted(n.weight for n in nodes if n.weight) == ["W1", "W2", "b1", "b2"]
    assert {n.name for n in nodes if n.weight} == {"AccumulateGrad"}
    entering = {n.input: n.value for n in nodes if n.name is None}
    assert entering == {"X": None, "Y": None, "constant": 2 * 5 * 2.0}, entering
    assert "(constant 20 = 2 R O" in view["text"]
    assert "MmBackward0" in view["text"] and "W1.grad" in view["text"]
    losses, grads = torch_autograd.loss_and_grads(
        problem, {n: v[None] for n, v in params.items()}, X, Y
    )
    assert view["loss"] == pytest.approx(losses[0], rel=1e-15)
    for name, grad in view["grads"].items():
        assert_close(grad, grads[f"grad:{name}"][0], f"autodiff_view grad {name}", 1e-15)


def test_importing_changes_no_global_torch_state():
    script = (
        "import torch\n"
        "before = (torch.get_default_dtype(), torch.get_num_threads(), torch.is_grad_enabled(),"
        " torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision())\n"
        "import implementations.torch_autograd as m\n"
        "after = (torch.get_default_dtype(), torch.get_num_threads(), torch.is_grad_enabled(),"
        " torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision())\n"
        "assert before == after, (before, after)\n"
        "assert m.precision_environment()['torch.default_dtype'] == 'torch.float32'\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr


def test_precision_switches_are_plain_python_values():
    """The switches travel to the harness pickled: a torch type among them (``torch.__version__``
    is a ``TorchVersion``) would import torch into the harness process to unpickle it."""
    for name, value in torch_autograd.precision_environment().items():
        assert type(value).__module__ == "builtins", f"{name} is a {type(value)}"


@pytest.mark.parametrize("module", ["torch_autograd", "torch_nn"])
@pytest.mark.parametrize("loss", ["cross-entropy", "mse"])
def test_a_float16_loss_whose_sum_overflows_but_mean_does_not_is_finite(loss, module):
    # Unscaled breast_cancer gave 549 rows of cross-entropy summing to 214768 (> 65504, float16's
    # largest) and a mean of 391: the contract sums and divides in float32 and rounds once, so
    # the loss is 391 where a float16 sum rounded before the division is inf.
    rows = 2000
    network = Network((1, 2), ("identity",), loss=loss)
    problem = Problem(network, Optimizer("sgd", lr=0.1), "float16", Batches(rows, 0, seed=0))
    X, Y = np.ones((rows, 1)), np.tile([[1.0, 0.0]], (rows, 1))
    W = np.array([[[-30.0, 30.0]]])  # per row: cross-entropy 60, squared errors 31^2 + 30^2
    losses, grads = importlib.import_module(f"implementations.{module}").loss_and_grads(
        problem, {"W1": W}, X, Y
    )
    expected, expected_grads = numpy_manual.loss_and_grads(problem, {"W1": W}, X, Y)
    row_sum = 60.0 if loss == "cross-entropy" else 31.0**2 + 30.0**2
    assert row_sum * rows > 65504 and np.isfinite(expected).all()
    np.testing.assert_allclose(losses, expected, rtol=2**-10)
    np.testing.assert_allclose(grads["grad:W1"], expected_grads["grad:W1"], rtol=2**-9)


@pytest.mark.parametrize("module", ["torch_autograd", "torch_nn"])
def test_a_float16_cross_entropy_with_logits_65504_apart_is_not_nan(module):
    # Unscaled breast_cancer at step 2: logits 37884 and -37000, target 0 on the second. In
    # float32, as the contract computes the loss, its log-softmax is -74884 and weighs 0; torch's
    # float16 kernel rounds it to -inf first, and 0 * -inf is NaN.
    problem = Problem(
        Network((1, 2), ("identity",), loss="cross-entropy"),
        Optimizer("sgd", lr=0.1),
        "float16",
        Batches(4, 0, seed=0),
    )
    X, Y = np.ones((4, 1)), np.tile([[1.0, 0.0]], (4, 1))
    W = np.array([[[37000.0, -37000.0]]])
    losses, grads = importlib.import_module(f"implementations.{module}").loss_and_grads(
        problem, {"W1": W}, X, Y
    )
    expected, expected_grads = numpy_manual.loss_and_grads(problem, {"W1": W}, X, Y)
    assert np.array_equal(losses, expected) and expected[0] == 0
    np.testing.assert_array_equal(grads["grad:W1"], expected_grads["grad:W1"])
