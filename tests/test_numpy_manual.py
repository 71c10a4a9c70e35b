"""The NumPy reference on its own: gradients against finite differences, optimizers against
formulas written out here (and torch.optim where torch is installed), and its numerics at
extreme inputs.

Every other implementation is judged against this one (tests/test_contract.py), so it is
judged here against sources that share no code with it. The ``*_catches_*`` tests feed each
check a planted bug and assert that it fails, so no check here passes vacuously.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from implementations import numpy_manual as nm
from implementations.contract import (
    ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    LOSSES,
    Batches,
    Network,
    Optimizer,
    Problem,
    initial_state,
    params_of,
)

#: Central differences of step ``h`` are accurate to ``O(h^2)`` truncation plus ``eps L / h``
#: rounding: about 1e-10 here, far inside these tolerances and far outside a wrong factor.
STEP = 1e-6
RTOL = 1e-6
ATOL = 1e-8


def make_problem(activations, loss, biases, optimizer=None, widths=None, dtype="float64"):
    widths = widths or {1: (3, 2), 2: (3, 4, 2), 3: (3, 4, 3, 2)}[len(activations)]
    network = Network(widths, tuple(activations), biases, loss)
    return Problem(network, optimizer or Optimizer(), dtype, Batches(5))


def make_data(problem: Problem, seed: int = 0, rows: int = 5):
    rng = np.random.default_rng(seed)
    net = problem.network
    X = rng.normal(size=(rows, net.widths[0]))
    if net.loss == "cross-entropy":
        Y = np.eye(net.widths[-1])[rng.integers(0, net.widths[-1], size=rows)]
    elif net.loss == "binary-cross-entropy":
        Y = rng.uniform(size=(rows, net.widths[-1]))
    else:
        Y = rng.normal(size=(rows, net.widths[-1]))
    params = {n: rng.normal(scale=0.7, size=(1, *s)) for n, s in net.param_shapes.items()}
    return params, X, Y


def central_differences(problem: Problem, params, X, Y) -> dict[str, np.ndarray]:
    """dL/dp of every parameter element by ``(L(p + h) - L(p - h)) / 2h``, from the loss alone."""
    numeric = {}
    for name, value in params.items():
        gradient = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            losses = []
            for sign in (1, -1):
                moved = dict(params)
                moved[name] = value.copy()
                moved[name][index] += sign * STEP
                losses.append(nm.loss_and_grads(problem, moved, X, Y)[0][0])
            gradient[index] = (losses[0] - losses[1]) / (2 * STEP)
        numeric[name] = gradient
    return numeric


def assert_gradient_matches_central_differences(problem: Problem, params, X, Y) -> None:
    _, grads = nm.loss_and_grads(problem, params, X, Y)
    numeric = central_differences(problem, params, X, Y)
    net = problem.network.describe()
    for name, expected in numeric.items():
        analytic = grads[f"grad:{name}"]
        scale = max(np.abs(expected).max(), 1e-3)
        np.testing.assert_allclose(
            analytic,
            expected,
            rtol=RTOL,
            atol=ATOL * scale,
            err_msg=f"grad:{name} disagrees with central differences on {net}",
        )


def network_cases() -> list:
    """Every activation x every loss x biases on/off, with the output activation each loss
    requires (for the squared errors, the activation itself, so its derivative is exercised
    at the output too)."""
    cases = []
    for loss in LOSSES:
        for activation in ACTIVATIONS:
            output = {"cross-entropy": "identity", "binary-cross-entropy": "sigmoid"}.get(
                loss, activation
            )
            for biases in (False, True):
                case_id = f"{activation}-{loss}-{'biases' if biases else 'no-biases'}"
                cases.append(pytest.param((activation, output), loss, biases, id=case_id))
    return cases


@pytest.mark.parametrize(("activations", "loss", "biases"), network_cases())
def test_gradient_matches_central_differences(activations, loss, biases):
    problem = make_problem(activations, loss, biases)
    params, X, Y = make_data(problem, seed=len(activations[0]) + len(loss))
    assert_gradient_matches_central_differences(problem, params, X, Y)


def test_gradient_of_a_deeper_network_matches_central_differences():
    problem = make_problem(("gelu_tanh", "leaky_relu", "tanh"), "mse", True)
    params, X, Y = make_data(problem, seed=3, rows=7)
    assert_gradient_matches_central_differences(problem, params, X, Y)


def test_cross_entropy_gradient_holds_for_targets_that_do_not_sum_to_one():
    """The derivative is ``(softmax sum(Y) - Y) / R``, not only the one-hot shortcut."""
    problem = make_problem(("tanh", "identity"), "cross-entropy", True)
    params, X, _ = make_data(problem, seed=4)
    Y = np.random.default_rng(4).uniform(0, 2, size=(5, 2))
    assert_gradient_matches_central_differences(problem, params, X, Y)


def test_the_central_difference_check_catches_a_halved_derivative(monkeypatch):
    problem = make_problem(("sigmoid", "sigmoid"), "half-mse", True)
    params, X, Y = make_data(problem, seed=5)
    rule = nm.ACTIVATIONS["sigmoid"]
    halved = dataclasses.replace(rule, derivative=lambda Z, A: rule.derivative(Z, A) / 2)
    monkeypatch.setitem(nm.ACTIVATIONS, "sigmoid", halved)
    with pytest.raises(AssertionError, match="central differences"):
        assert_gradient_matches_central_differences(problem, params, X, Y)


def test_the_central_difference_check_catches_a_bias_gradient_summed_over_the_wrong_axis(
    monkeypatch,
):
    problem = make_problem(("tanh", "identity"), "half-mse", True)
    params, X, Y = make_data(problem, seed=6)
    monkeypatch.setattr(nm, "sum_rows", lambda values: np.mean(values, axis=-2))
    with pytest.raises(AssertionError, match="grad:b"):
        assert_gradient_matches_central_differences(problem, params, X, Y)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_derivative_matches_central_differences_of_its_forward_rule(activation):
    rule = nm.ACTIVATIONS[activation]
    Z = np.linspace(-4, 4, 81) + 0.013  # avoids the kink at exactly 0
    A = rule.function(Z)
    numeric = (rule.function(Z + STEP) - rule.function(Z - STEP)) / (2 * STEP)
    np.testing.assert_allclose(rule.derivative(Z, A), numeric, rtol=1e-7, atol=1e-9)


def test_derivatives_at_exactly_zero_follow_the_contract():
    zero = np.zeros(1)
    assert nm.relu_derivative(zero, nm.relu(zero))[0] == 0.0
    assert nm.leaky_relu_derivative(zero, nm.leaky_relu(zero))[0] == LEAKY_RELU_SLOPE


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_and_derivative_match_torch(activation):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    torch_rule = {
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "leaky_relu": lambda z: functional.leaky_relu(z, LEAKY_RELU_SLOPE),
        "gelu": functional.gelu,
        "gelu_tanh": lambda z: functional.gelu(z, approximate="tanh"),
        "identity": lambda z: z,
    }[activation]
    Z = np.array([-30.0, -3.0, -1.0, -1e-3, 0.0, 1e-3, 0.5, 2.0, 30.0])
    Z_torch = torch.tensor(Z, requires_grad=True)
    A_torch = torch_rule(Z_torch)
    A_torch.sum().backward()
    rule = nm.ACTIVATIONS[activation]
    A = rule.function(Z)
    np.testing.assert_allclose(A, A_torch.detach().numpy(), rtol=4e-16, atol=1e-300)
    # The libraries' tanh and exp may differ in the last bit, and 1 - A^2 near saturation
    # magnifies that: allow a few hundred roundings in the derivative.
    np.testing.assert_allclose(rule.derivative(Z, A), Z_torch.grad.numpy(), rtol=5e-14, atol=1e-300)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_16_bit_activations_run_in_float32_and_round_once(activation, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    low = nm.numpy_dtype(dtype)
    Z = np.linspace(-6, 6, 97).astype(low)
    rule = nm.ACTIVATIONS[activation]
    A = rule.function(Z)
    assert A.dtype == low, f"{activation} returned {A.dtype} for {dtype} input"
    expected = rule.function(Z.astype(np.float32)).astype(low)
    np.testing.assert_array_equal(A, expected, err_msg=f"{activation} in {dtype}")


# --- Losses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_and_its_derivative_match_torch(loss):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    rng = np.random.default_rng(7)
    if loss == "binary-cross-entropy":
        # Saturated outputs too: exactly 0 and 1 (log clamped at -100, derivative floor 1e-12).
        A = np.array([[[0.0, 1.0, 0.3], [1e-20, 1 - 1e-16, 0.9]]])
        Y = np.array([[1.0, 0.0, 0.2], [0.0, 1.0, 1.0]])
    else:
        A = rng.normal(scale=3, size=(1, 4, 3))
        Y = (
            np.eye(3)[rng.integers(0, 3, size=4)]
            if loss == "cross-entropy"
            else rng.normal(size=(4, 3))
        )
    A_torch = torch.tensor(A[0], requires_grad=True)
    Y_torch = torch.tensor(Y)
    value = {
        "half-mse": lambda a, y: functional.mse_loss(a, y) / 2,
        "mse": functional.mse_loss,
        "half-sse": lambda a, y: functional.mse_loss(a, y, reduction="sum") / 2,
        "cross-entropy": functional.cross_entropy,
        "binary-cross-entropy": functional.binary_cross_entropy,
    }[loss](A_torch, Y_torch)
    value.backward()
    rule = nm.LOSSES[loss]
    with np.errstate(**nm.NONFINITE_IS_DATA):  # log(0) at the saturated outputs
        function, derivative = rule.function(A, Y), rule.derivative(A, Y)
    np.testing.assert_allclose(function[0], value.item(), rtol=1e-15, err_msg=loss)
    np.testing.assert_allclose(
        derivative[0], A_torch.grad.numpy(), rtol=1e-15, atol=1e-300, err_msg=loss
    )


def test_binary_cross_entropy_at_saturated_outputs_is_finite_and_clamped():
    A = np.array([[[0.0, 1.0]]])
    Y = np.array([[1.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(**nm.NONFINITE_IS_DATA):
            value = nm.binary_cross_entropy(A, Y)
            derivative = nm.binary_cross_entropy_derivative(A, Y)
    assert value[0] == 100.0, f"each wrong, saturated output costs -log floor = 100, got {value}"
    floor = float(np.float32(1e-12))  # torch's EPSILON is a float32 constant
    np.testing.assert_array_equal(derivative, [[[-1 / floor / 2, 1 / floor / 2]]])


def test_log_sum_exp_is_stable_at_extreme_logits():
    Z = np.array([[[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            log_probabilities = nm.log_softmax(Z)
            value = nm.cross_entropy(Z, np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    np.testing.assert_allclose(log_probabilities[0, 0], [0.0, -1000.0, -2000.0])
    np.testing.assert_allclose(log_probabilities[0, 1], np.log(np.full(3, 1 / 3)))
    np.testing.assert_allclose(value, [(2000.0 + np.log(3)) / 2], rtol=1e-15)


SATURATED = np.array([-800.0, -50.0, -40.5, 40.5, 50.0, 800.0])


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_sigmoid_is_finite_and_exact_at_saturated_inputs(dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning is a failure
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is exact
            values = nm.sigmoid(SATURATED.astype(nm.numpy_dtype(dtype))).astype(np.float64)
    E = np.exp(-np.abs(SATURATED))
    exact = np.where(SATURATED >= 0, 1 / (1 + E), E / (1 + E))
    np.testing.assert_allclose(
        values,
        exact,
        rtol=4 * {"float64": 2.3e-16, "float32": 1.2e-7, "float16": 1e-3, "bfloat16": 8e-3}[dtype],
        # Below the dtype's smallest normal number the result may flush to zero.
        atol={"float64": 0.0, "float32": 1.2e-38, "float16": 6.2e-5, "bfloat16": 1.2e-38}[dtype],
        err_msg=f"{dtype} sigmoid wrong at saturated inputs",
    )
    assert values[-1] == 1.0 and values[0] == 0.0, f"{dtype} limits: {values}"


# --- Optimizers --------------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": Optimizer("sgd", lr=0.1),
    "sgd-l2": Optimizer("sgd", lr=0.1, weight_decay=0.05),
    "momentum": Optimizer("momentum", lr=0.1, momentum=0.9),
    "momentum-dampening-l2": Optimizer(
        "momentum", lr=0.1, momentum=0.8, dampening=0.3, weight_decay=0.05
    ),
    "nesterov": Optimizer("momentum", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": Optimizer("adam", lr=0.01),
    "adam-l2": Optimizer("adam", lr=0.01, beta1=0.7, beta2=0.95, eps=1e-4, weight_decay=0.1),
    "adamw": Optimizer("adamw", lr=0.01, weight_decay=0.1),
    "adamw-no-decay": Optimizer("adamw", lr=0.02, beta1=0.5, eps=1e-3),
}


def textbook_updates(opt: Optimizer, p: np.ndarray, gradients: list[np.ndarray]) -> list:
    """The parameter after each update, from the formulas in torch.optim's documentation,
    written independently of the implementation (no shared code, no shared order)."""
    p = p.copy()
    buf = m = v = np.zeros_like(p)
    after = []
    for t, grad in enumerate(gradients, start=1):
        if opt.name == "adamw":
            p = p - opt.lr * opt.weight_decay * p
            g = grad
        else:
            g = grad + opt.weight_decay * p
        if opt.name == "sgd":
            p = p - opt.lr * g
        elif opt.name == "momentum":
            buf = g if t == 1 else opt.momentum * buf + (1 - opt.dampening) * g
            p = p - opt.lr * (g + opt.momentum * buf if opt.nesterov else buf)
        else:
            m = opt.beta1 * m + (1 - opt.beta1) * g
            v = opt.beta2 * v + (1 - opt.beta2) * g**2
            m_hat = m / (1 - opt.beta1**t)
            v_hat = v / (1 - opt.beta2**t)
            p = p - opt.lr * m_hat / (np.sqrt(v_hat) + opt.eps)
        after.append(p)
    return after


def implementation_updates(opt: Optimizer, p: np.ndarray, gradients: list[np.ndarray]) -> list:
    """The same updates through ``numpy_manual.update`` (a one-weight network)."""
    network = Network((p.shape[0], p.shape[1]), ("identity",))
    problem = Problem(network, opt, "float64", Batches(1))
    state = initial_state(problem, {"W1": p[None]})
    after = []
    for grad in gradients:
        state, _ = nm.update(problem, state, {"W1": grad[None]})
        after.append(state["weight:W1"][0])
    return after


def assert_updates_match_textbook(opt: Optimizer) -> None:
    rng = np.random.default_rng(8)
    p = rng.normal(size=(3, 2))
    gradients = [rng.normal(size=(3, 2)) for _ in range(4)]
    expected = textbook_updates(opt, p, gradients)
    for t, (actual, wanted) in enumerate(
        zip(implementation_updates(opt, p, gradients), expected, strict=True), start=1
    ):
        np.testing.assert_allclose(
            actual, wanted, rtol=1e-13, err_msg=f"{opt.name} update {t} differs from the textbook"
        )


@pytest.mark.parametrize("label", OPTIMIZERS)
def test_update_matches_the_formulas_written_out(label):
    assert_updates_match_textbook(OPTIMIZERS[label])


def test_the_formula_check_catches_a_missing_bias_correction(monkeypatch):
    real = nm.adam_update

    def uncorrected(p, grad, m, v, t, opt, kept):
        # beta^inf = 0: both corrections become 1, i.e. none is applied.
        return real(p, grad, m, v, np.full_like(t, np.inf), opt, kept)

    monkeypatch.setattr(nm, "adam_update", uncorrected)
    with pytest.raises(AssertionError, match="textbook"):
        assert_updates_match_textbook(OPTIMIZERS["adam"])


def test_the_formula_check_catches_eps_inside_the_square_root(monkeypatch):
    def eps_inside(p, grad, m, v, t, opt, kept):
        m = opt.beta1 * m + (1 - opt.beta1) * grad
        v = opt.beta2 * v + (1 - opt.beta2) * grad * grad
        m_hat, v_hat = m / (1 - opt.beta1**t), v / (1 - opt.beta2**t)
        return {"m": m, "v": v, "p_next": p - opt.lr * m_hat / np.sqrt(v_hat + opt.eps)}

    monkeypatch.setattr(nm, "adam_update", eps_inside)
    with pytest.raises(AssertionError, match="textbook"):
        assert_updates_match_textbook(OPTIMIZERS["adam-l2"])


def tiny_training_problem(opt: Optimizer, dtype: str = "float64"):
    network = Network((3, 4, 2), ("tanh", "identity"), True, "mse")
    problem = Problem(network, opt, dtype, Batches(7))
    rng = np.random.default_rng(9)
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    params = {n: rng.normal(size=s) for n, s in network.param_shapes.items()}
    return problem, params, X, Y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("label", OPTIMIZERS)
def test_training_matches_torch_optim(label, dtype):
    torch = pytest.importorskip("torch")
    opt = OPTIMIZERS[label]
    problem, params, X, Y = tiny_training_problem(opt, dtype)
    records = {}
    state = initial_state(problem, {n: w[None] for n, w in params.items()})
    nm.train(problem, state, X, Y, 5, chunk=6, sink=lambda start, r: records.update(r))
    torch_dtype = getattr(torch, dtype)
    tensors = [torch.tensor(params[n], dtype=torch_dtype, requires_grad=True) for n in params]
    settings = {"lr": opt.lr, "weight_decay": opt.weight_decay}
    if opt.name in ("sgd", "momentum"):
        optimizer = torch.optim.SGD(
            tensors,
            momentum=opt.momentum,
            dampening=opt.dampening,
            nesterov=opt.nesterov,
            **settings,
        )
    else:
        adam = torch.optim.Adam if opt.name == "adam" else torch.optim.AdamW
        optimizer = adam(tensors, betas=(opt.beta1, opt.beta2), eps=opt.eps, **settings)
    X_t, Y_t = torch.tensor(X, dtype=torch_dtype), torch.tensor(Y, dtype=torch_dtype)
    # float32: torch fuses some multiply-adds (module docstring), and a parameter that is a
    # small sum of larger updates keeps only the updates' absolute rounding.
    rtol = {"float64": 1e-13, "float32": 2e-6}[dtype]
    for k in range(6):
        for name, tensor in zip(params, tensors, strict=True):
            quantity = ("weight:" if name.startswith("W") else "bias:") + name
            expected = tensor.detach().double().numpy()
            np.testing.assert_allclose(
                records[quantity][k, 0],
                expected,
                rtol=rtol,
                atol=rtol * max(1.0, np.abs(expected).max()),
                err_msg=f"{label} {dtype}: {quantity} at state {k} differs from torch.optim",
            )
        optimizer.zero_grad()
        W1, b1, W2, b2 = tensors
        torch.nn.functional.mse_loss(torch.tanh(X_t @ W1 + b1) @ W2 + b2, Y_t).backward()
        optimizer.step()


@pytest.mark.parametrize("label", ["momentum", "nesterov", "adam-l2", "adamw"])
def test_step_applies_each_points_own_step_count(label):
    """One point at its first update and one at its fourth, stepped together, each get what
    they get alone: torch's first-step momentum rule and Adam's bias correction are per point."""
    problem, params, X, Y = tiny_training_problem(OPTIMIZERS[label])
    records = {}
    state = initial_state(problem, {n: w[None] for n, w in params.items()})
    nm.train(problem, state, X, Y, 4, chunk=5, sink=lambda start, r: records.update(r))
    names = problem.state_names()
    together = {q: records[q][[0, 3], 0] for q in names}
    _, joint = nm.step(problem, together, X, Y, None)
    for point, k in enumerate((0, 3)):
        _, alone = nm.step(problem, {q: records[q][[k], 0] for q in names}, X, Y, None)
        for quantity in names:
            np.testing.assert_array_equal(
                joint[quantity][point], alone[quantity][0], err_msg=f"{label}: {quantity} of k={k}"
            )
            np.testing.assert_array_equal(
                joint[quantity][point],
                records[quantity][k + 1, 0],
                err_msg=f"{label}: step from state {k} is not train's state {k + 1}",
            )


# --- Training, dtypes and the contract's edges ---------------------------------------------------


def iris_tutorial():
    """The tutorial's data and weights, drawn as compare.data and compare.weights draw them."""
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    bunch = datasets.load_iris()
    X = np.asarray(bunch.data, dtype=np.float64)
    Y = np.eye(3)[bunch.target]
    X_train, _, Y_train, _ = train_test_split(X, Y, test_size=20, random_state=4)
    rng = np.random.RandomState(10)
    W1 = rng.normal(scale=0.5, size=(4, 2))
    W2 = rng.normal(scale=0.5, size=(2, 3))
    network = Network((4, 2, 3), ("sigmoid", "sigmoid"))
    return network, {"W1": W1[None], "W2": W2[None]}, X_train, Y_train


def test_the_tutorial_reaches_its_published_final_loss():
    """Iris 4-2-3, sigmoid, half-MSE, SGD lr 0.1, 5000 full-batch steps: 0.06095271245."""
    network, params, X, Y = iris_tutorial()
    problem = Problem(network, Optimizer("sgd", lr=0.1), "float64", Batches(len(X)))
    last = {}
    nm.train(
        problem,
        initial_state(problem, params),
        X,
        Y,
        5000,
        chunk=1024,
        sink=lambda s, r: last.update(r),
    )
    assert round(float(last["loss"][-1, 0]), 11) == 0.06095271245, last["loss"][-1, 0]


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_training_below_float64_computes_in_that_dtype(dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    network, params, X, Y = iris_tutorial()
    # Not Adam: its default eps of 1e-8 is 0 in float16, so a second moment that underflows
    # divides by zero there, in torch as here (a true result, but not this test's subject).
    optimizer = Optimizer("momentum", lr=0.1, momentum=0.9)
    problem = Problem(network, optimizer, dtype, Batches(len(X), size=32))
    records = {}
    nm.train(
        problem,
        initial_state(problem, params),
        X,
        Y,
        20,
        chunk=21,
        sink=lambda s, r: records.update(r),
    )
    low = nm.numpy_dtype(dtype)
    for quantity, values in records.items():
        assert values.dtype == (np.int64 if quantity == "train_correct" else np.float64)
        assert np.all(np.isfinite(values)), f"{dtype}: {quantity} not finite"
        if quantity not in ("train_correct", "state:step"):
            # Every value handed back is a number of the compute dtype, widened exactly.
            np.testing.assert_array_equal(
                values.astype(low).astype(np.float64), values, err_msg=quantity
            )
    assert records["loss"][-1, 0] < records["loss"][0, 0], f"{dtype}: the loss did not fall"


def test_a_diverging_run_records_inf_and_nan_without_warnings():
    problem, params, X, Y = tiny_training_problem(Optimizer("sgd", lr=1e6))
    records = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nm.train(
            problem,
            initial_state(problem, {n: w[None] for n, w in params.items()}),
            X,
            Y,
            40,
            chunk=41,
            sink=lambda s, r: records.update(r),
        )
    assert not np.all(np.isfinite(records["loss"])), "lr 1e6 should overflow"


def test_train_refuses_a_chunk_of_zero_and_step_refuses_misshapen_rows():
    problem, params, X, Y = tiny_training_problem(Optimizer())
    state = initial_state(problem, {n: w[None] for n, w in params.items()})
    with pytest.raises(ValueError, match="chunk"):
        nm.train(problem, state, X, Y, 3, chunk=0, sink=lambda s, r: None)
    with pytest.raises(ValueError, match="rows"):
        nm.step(problem, state, X, Y, np.zeros((2, 3), dtype=int))


# --- gradient_check and autodiff_view -------------------------------------------------------


def test_gradient_check_passes_the_hand_written_gradient():
    problem, params, X, Y = tiny_training_problem(Optimizer())
    result = nm.gradient_check(problem, params, X, Y, step=1e-6, atol=1e-7, rtol=1e-4)
    assert result["checker"] == "scipy.optimize.check_grad"
    assert result["passed"], result["detail"]
    assert 0 <= result["error"] < 1e-5, result
    assert "atol" in result["detail"] and "rtol" in result["detail"], result["detail"]


def test_gradient_check_catches_a_halved_derivative(monkeypatch):
    problem, params, X, Y = tiny_training_problem(Optimizer())
    rule = nm.ACTIVATIONS["tanh"]
    halved = dataclasses.replace(rule, derivative=lambda Z, A: rule.derivative(Z, A) / 2)
    monkeypatch.setitem(nm.ACTIVATIONS, "tanh", halved)
    result = nm.gradient_check(problem, params, X, Y, step=1e-6, atol=1e-7, rtol=1e-4)
    assert not result["passed"], result["detail"]


@pytest.mark.parametrize("label", ["sgd-l2", "nesterov", "adam-l2", "adamw"])
def test_autodiff_view_factors_are_the_chain_rule_and_the_update(label):
    opt = OPTIMIZERS[label]
    problem, params, X, Y = tiny_training_problem(opt)
    view = nm.autodiff_view(problem, params, X, Y)
    assert {"title", "text", "loss", "grads", "factors"} <= set(view)
    factors = view["factors"]
    losses, grads = nm.loss_and_grads(problem, {n: w[None] for n, w in params.items()}, X, Y)
    assert view["loss"] == losses[0]
    for name in problem.network.param_names:
        np.testing.assert_array_equal(view["grads"][name], grads[f"grad:{name}"][0])
    inputs = [X] + [f["A"] for f in factors["forward"][:-1]]
    for layer, A_prev in zip(factors["layers"], inputs, strict=True):
        np.testing.assert_allclose(layer["delta"], layer["dL_dA"] * layer["dA_dZ"], rtol=1e-15)
        np.testing.assert_allclose(layer["dL_dW"], A_prev.T @ layer["delta"], rtol=1e-14)
        np.testing.assert_allclose(layer["dL_db"], layer["delta"].sum(axis=0), rtol=1e-14)
    np.testing.assert_array_equal(factors["loss"]["dL_dA"], factors["layers"][-1]["dL_dA"])
    update = factors["update"]
    assert update["optimizer"] == opt.name
    _, following = nm.step(
        problem, initial_state(problem, {n: w[None] for n, w in params.items()}), X, Y, None
    )
    for name, values in update["values"].items():
        quantity = ("weight:" if name.startswith("W") else "bias:") + name
        np.testing.assert_array_equal(values["p_next"], following[quantity][0])
        for line_name, _ in update["lines"]:
            assert line_name in values, f"{opt.name}: no value for the line {line_name}"
    for text in ("dL/dA2", "delta1", "dL/dW1", "dL/db2", "p_next"):
        assert text in view["text"], f"{text} missing from the text:\n{view['text']}"


def test_autodiff_view_shows_a_later_steps_optimizer_state():
    problem, params, X, Y = tiny_training_problem(OPTIMIZERS["adam"])
    records = {}
    nm.train(
        problem,
        initial_state(problem, {n: w[None] for n, w in params.items()}),
        X,
        Y,
        3,
        chunk=4,
        sink=lambda s, r: records.update(r),
    )
    state = {q: records[q][3:4, 0] for q in problem.state_names()}
    view = nm.autodiff_view(problem, params_of(problem.network, state), X, Y, state=state)
    assert view["factors"]["update"]["t"] == 4.0
    bias_correction1 = view["factors"]["update"]["values"]["W1"]["bias_correction1"]
    assert bias_correction1 == pytest.approx(1 - 0.9**4)


def test_precision_environment_names_the_error_state_and_blas():
    environment = nm.precision_environment()
    assert set(environment) == {"numpy.errstate", "numpy.blas"}
    assert environment["numpy.errstate"]["over"] in (
        "warn",
        "ignore",
        "raise",
        "call",
        "print",
        "log",
    )


def test_progress_counts_states_up_to_the_last_one():
    problem, params, X, Y = tiny_training_problem(Optimizer())
    calls: list[int] = []
    state = initial_state(problem, {n: w[None] for n, w in params.items()})
    nm.train(problem, state, X, Y, 250, chunk=64, sink=lambda s, r: None, progress=calls.append)
    assert calls == sorted(set(calls)), f"progress not strictly increasing: {calls}"
    assert calls[-1] == 251, f"progress ended at {calls[-1]}, not at all 251 states"


@pytest.mark.parametrize("batch_size", [0, 2], ids=["full batch", "minibatches"])
def test_step_in_slices_of_points_is_the_step_of_all_at_once(batch_size, monkeypatch):
    """More points than fit ``STEP_SLICE_BYTES`` are stepped slice by slice, each slice with its
    own points' rows and update counts: the numbers are exactly those of one call."""
    problem, params, X, Y = tiny_training_problem(OPTIMIZERS["adam"])
    if batch_size:
        problem = dataclasses.replace(
            problem, batches=Batches(rows=len(X), size=batch_size, seed=3)
        )
    records = {}
    state = initial_state(problem, {n: w[None] for n, w in params.items()})
    nm.train(problem, state, X, Y, 6, chunk=7, sink=lambda start, r: records.update(r))
    ks = [4, 0, 5, 2, 1]
    states = {q: records[q][ks, 0] for q in problem.state_names()}
    rows = None if problem.batches.full else np.stack([problem.batches.indices(k) for k in ks])
    whole = nm.step(problem, states, X, Y, rows)
    monkeypatch.setattr(nm, "STEP_SLICE_BYTES", 1)
    assert nm._step_slice(problem, len(X), 8) == 1
    sliced = nm.step(problem, states, X, Y, rows)
    for one, other in zip(whole, sliced, strict=True):
        assert one.keys() == other.keys()
        for quantity, values in one.items():
            np.testing.assert_array_equal(other[quantity], values, err_msg=quantity)
    for i, k in enumerate(ks):
        np.testing.assert_array_equal(sliced[0]["loss"][i], records["loss"][k, 0])
        np.testing.assert_array_equal(sliced[1]["weight:W1"][i], records["weight:W1"][k + 1, 0])
