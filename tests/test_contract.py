"""The shared contract suite: every registered implementation against the NumPy reference.

Each test is parametrised over ``implementations.NAMES`` and runs in float64, where every
implementation must agree with NumPy (written by hand) at every recorded state. An
implementation that cannot be loaded here (its framework is not installed) is skipped, and so
is a combination its ``SUPPORTS`` does not declare. The problems are tiny (a handful of rows,
3 to 7 steps) so that the suite stays fast for every implementation.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import implementations
from implementations import numpy_manual
from implementations.contract import (
    ACTIVATIONS,
    LOSSES,
    Batches,
    Network,
    Optimizer,
    Problem,
    Support,
    initial_state,
    params_of,
)

NAMES = implementations.NAMES

#: float64 agreement: relative to each element, or to the quantity's largest value (so that an
#: element that cancels to almost nothing is judged on the quantity's scale). Honest
#: implementations differ by a few float64 roundings (~1e-15) over these few steps; a wrong
#: factor, a missing bias correction or an update in the wrong order differs by orders more.
RTOL = 1e-9
SCALE_ATOL = 1e-11

#: Optimizer settings of the test matrix, each exercising its non-default switches.
OPTIMIZERS = {
    "sgd": Optimizer("sgd", lr=0.1, weight_decay=0.01),
    "momentum": Optimizer("momentum", lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "nesterov": Optimizer("momentum", lr=0.05, momentum=0.9, nesterov=True),
    "adam": Optimizer("adam", lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.01),
    "adamw": Optimizer("adamw", lr=0.01, weight_decay=0.1),
}


def load(name: str):
    """The implementation registered as ``name``, or a skip if its framework is missing."""
    try:
        return implementations.load(name)
    except (implementations.FrameworkUnavailable, ImportError) as error:
        pytest.skip(f"{name} cannot be loaded here: {error}")


def require_support(module, problem: Problem) -> None:
    """Skip a combination the implementation does not declare."""
    missing = getattr(module, "SUPPORTS", Support()).missing(problem)
    if missing:
        pytest.skip(f"{module.NAME} does not support {', '.join(missing)}")


def output_activation(loss: str, hidden: str) -> str:
    """The output activation a loss requires (cross-entropy: logits; BCE: probabilities)."""
    return {"cross-entropy": "identity", "binary-cross-entropy": "sigmoid"}.get(loss, hidden)


def make_data(
    rows: int, inputs: int, outputs: int, loss: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(rows, inputs)`` and targets that suit ``loss``: one-hot rows for
    cross-entropy, values in [0, 1] for binary cross-entropy, any reals for squared errors."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, inputs))
    if loss == "cross-entropy":
        Y = np.eye(outputs)[rng.integers(0, outputs, size=rows)]
    elif loss == "binary-cross-entropy":
        Y = rng.uniform(size=(rows, outputs))
    else:
        Y = rng.normal(size=(rows, outputs))
    return X, Y


def make_initial(problem: Problem, seed: int, points: int = 1, scale: float = 0.5):
    """State 0 of ``points`` independent networks drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    params = {
        name: rng.normal(scale=scale, size=(points, *shape))
        for name, shape in problem.network.param_shapes.items()
    }
    return initial_state(problem, params)


def train_records(module, problem, initial, X, Y, steps, chunk=None) -> dict[str, np.ndarray]:
    """Run ``module.train`` and join its chunks, checking the sink contract on the way."""
    chunk = chunk or steps + 1
    chunks: list[tuple[int, dict[str, np.ndarray]]] = []

    def sink(start: int, records: dict[str, np.ndarray]) -> None:
        # Copy: an implementation may reuse its buffers once a chunk is handed over.
        chunks.append((start, {q: np.array(v, copy=True) for q, v in records.items()}))

    module.train(problem, initial, X, Y, steps, chunk=chunk, sink=sink)
    expected_start = 0
    for start, records in chunks:
        lengths = {len(v) for v in records.values()}
        assert start == expected_start, (
            f"{module.NAME}: chunk starts at {start}, not at state {expected_start}"
        )
        assert len(lengths) == 1, f"{module.NAME}: arrays of one chunk differ in length {lengths}"
        length = lengths.pop()
        assert 1 <= length <= chunk, f"{module.NAME}: a chunk of {length} states (chunk={chunk})"
        expected_start += length
    assert expected_start == steps + 1, f"{module.NAME}: {expected_start} states for {steps} steps"
    return {q: np.concatenate([r[q] for _, r in chunks]) for q in chunks[0][1]}


@functools.cache
def reference_records(problem, seed, points, rows, steps) -> dict[str, np.ndarray]:
    """NumPy's records of a problem (cached: several tests compare against the same run)."""
    X, Y = make_data(
        rows, problem.network.widths[0], problem.network.widths[-1], problem.network.loss, seed
    )
    initial = make_initial(problem, seed, points)
    return train_records(numpy_manual, problem, initial, X, Y, steps)


def first_step_beyond(actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> str:
    """A description of where ``actual`` first leaves ``expected`` (axis 0 = state)."""
    bad = ~np.isclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return "agree"
    index = np.unravel_index(np.argmax(bad), bad.shape)
    return (
        f"first disagreement at state {index[0]}, index {index[1:]}: "
        f"{actual[index]!r} vs numpy's {expected[index]!r}"
    )


def assert_records_agree(
    actual, expected, context: str, rtol: float = RTOL, scale_atol: float = SCALE_ATOL
) -> None:
    """Every quantity of ``actual`` agrees with ``expected`` at every state: within ``rtol`` of
    each element or ``scale_atol`` of the quantity's largest value; ``train_correct`` exactly."""
    assert set(actual) == set(expected), (
        f"{context}: records {sorted(actual)} differ from numpy's {sorted(expected)}"
    )
    for quantity, reference in expected.items():
        value = actual[quantity]
        assert value.shape == reference.shape, (
            f"{context}: {quantity} shaped {value.shape}, numpy's {reference.shape}"
        )
        if quantity == "train_correct":
            np.testing.assert_array_equal(value, reference, err_msg=f"{context}: {quantity}")
            continue
        finite = np.abs(reference[np.isfinite(reference)])
        atol = scale_atol * (finite.max() if finite.size else 0.0)
        assert np.allclose(value, reference, rtol=rtol, atol=atol, equal_nan=True), (
            f"{context}: {quantity}: {first_step_beyond(value, reference, rtol, atol)}"
        )


def matrix_problem(optimizer: str, loss: str, biases: bool) -> Problem:
    """A three-layer network whose two hidden activations cycle through every activation as
    the matrix's cells go by, so the matrix covers each activation in several cells (and as
    the output activation of the squared-error losses) without a problem of its own."""
    cell = list(OPTIMIZERS).index(optimizer) * len(LOSSES) * 2 + LOSSES.index(loss) * 2 + biases
    first, second = ACTIVATIONS[cell % 7], ACTIVATIONS[(cell + 3) % 7]
    network = Network((3, 4, 3, 2), (first, second, output_activation(loss, first)), biases, loss)
    return Problem(network, OPTIMIZERS[optimizer], "float64", Batches(6))


def test_the_matrix_covers_every_activation_in_every_position():
    hidden, output = set(), set()
    for optimizer in OPTIMIZERS:
        for loss in LOSSES:
            for biases in (False, True):
                activations = matrix_problem(optimizer, loss, biases).network.activations
                hidden.update(activations[:-1])
                output.add(activations[-1])
    assert hidden == set(ACTIVATIONS), (
        f"hidden activations never tested: {set(ACTIVATIONS) - hidden}"
    )
    assert output == set(ACTIVATIONS), (
        f"output activations never tested: {set(ACTIVATIONS) - output}"
    )


@pytest.mark.parametrize("biases", [False, True], ids=["no-biases", "biases"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", NAMES)
def test_every_optimizer_loss_and_bias_agrees_with_numpy_at_every_step(
    name, optimizer, loss, biases
):
    module = load(name)
    problem = matrix_problem(optimizer, loss, biases)
    require_support(module, problem)
    X, Y = make_data(6, 3, 2, loss, seed=1)
    actual = train_records(module, problem, make_initial(problem, seed=1), X, Y, steps=4)
    expected = reference_records(problem, 1, 1, 6, 4)
    context = f"{name}, {optimizer}, {problem.network.describe()}"
    assert_records_agree(actual, expected, context)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", NAMES)
def test_derivative_at_exactly_zero_follows_the_contract(name, activation):
    """relu'(0) = 0 and leaky_relu'(0) = slope: a zero input row and zero biases put every
    layer's Z at exactly 0, where only the convention decides the bias gradient."""
    module = load(name)
    network = Network((2, 3, 2), (activation, activation), True, "half-sse")
    problem = Problem(network, OPTIMIZERS["sgd"], "float64", Batches(3))
    require_support(module, problem)
    X = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    Y = np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]])
    params = {"W1": np.full((1, 2, 3), 0.3), "b1": np.zeros((1, 3))}
    params |= {"W2": np.full((1, 3, 2), -0.2), "b2": np.zeros((1, 2))}
    losses, grads = module.loss_and_grads(problem, params, X, Y)
    expected_losses, expected = numpy_manual.loss_and_grads(problem, params, X, Y)
    np.testing.assert_allclose(losses, expected_losses, rtol=RTOL, err_msg=f"{name} loss")
    for quantity in expected:
        np.testing.assert_allclose(
            grads[quantity],
            expected[quantity],
            rtol=RTOL,
            atol=1e-300,
            err_msg=f"{name}: {quantity} at Z = 0 breaks the {activation} derivative convention",
        )


@pytest.mark.parametrize("name", NAMES)
def test_minibatches_with_a_partial_last_batch_agree(name):
    module = load(name)
    network = Network((3, 4, 3), ("tanh", "identity"), True, "cross-entropy")
    # 10 rows in batches of 4: 4, 4, 2 per epoch; 7 steps cross two epoch boundaries.
    problem = Problem(network, OPTIMIZERS["adam"], "float64", Batches(10, size=4, seed=3))
    require_support(module, problem)
    X, Y = make_data(10, 3, 3, "cross-entropy", seed=3)
    actual = train_records(module, problem, make_initial(problem, seed=3), X, Y, steps=7)
    assert_records_agree(actual, reference_records(problem, 3, 1, 10, 7), f"{name}, minibatches")


@pytest.mark.parametrize("name", NAMES)
def test_points_are_independent_networks(name):
    """Three networks trained together give what each gives alone (up to the rounding of a
    batched matrix product, which may block its sums differently)."""
    module = load(name)
    network = Network((3, 4, 2), ("gelu", "identity"), True, "mse")
    problem = Problem(network, OPTIMIZERS["adam"], "float64", Batches(6, size=4, seed=1))
    require_support(module, problem)
    X, Y = make_data(6, 3, 2, "mse", seed=4)
    together = make_initial(problem, seed=4, points=3)
    joint = train_records(module, problem, together, X, Y, steps=4)
    for point in range(3):
        alone = {q: v[point : point + 1] for q, v in together.items()}
        single = train_records(module, problem, alone, X, Y, steps=4)
        assert_records_agree(
            {q: v[:, point : point + 1] for q, v in joint.items()},
            single,
            f"{name}: point {point} trained with two others vs alone",
            rtol=1e-12,
            scale_atol=1e-13,
        )


@pytest.mark.parametrize("name", NAMES)
def test_chunk_size_does_not_change_the_records(name):
    module = load(name)
    network = Network((3, 4, 2), ("sigmoid", "sigmoid"), False, "half-mse")
    problem = Problem(network, OPTIMIZERS["momentum"], "float64", Batches(6, size=4, seed=2))
    require_support(module, problem)
    X, Y = make_data(6, 3, 2, "half-mse", seed=5)
    initial = make_initial(problem, seed=5)
    whole = train_records(module, problem, initial, X, Y, steps=6)
    for chunk in (1, 3, 4):
        chunked = train_records(module, problem, initial, X, Y, steps=6, chunk=chunk)
        for quantity, values in whole.items():
            np.testing.assert_allclose(
                chunked[quantity],
                values,
                rtol=1e-14,
                atol=1e-300,
                err_msg=f"{name}: {quantity} changes with chunk={chunk}",
            )


def states_at(records: dict[str, np.ndarray], problem: Problem, steps: list[int]):
    """The recorded states of ``steps`` (of a one-point run) as ``P = len(steps)`` points."""
    return {q: records[q][steps, 0] for q in problem.state_names()}


@pytest.mark.parametrize("batch_size", [0, 4], ids=["full-batch", "minibatches"])
@pytest.mark.parametrize("optimizer", ["momentum", "adamw"])
@pytest.mark.parametrize("name", NAMES)
def test_step_from_state_k_gives_trains_state_k_plus_1(name, optimizer, batch_size):
    """``step`` from every recorded state at once (P unrelated states, each with its own step
    count) gives the records at those states and the states ``train`` recorded next."""
    module = load(name)
    network = Network((3, 4, 2), ("tanh", "sigmoid"), True, "binary-cross-entropy")
    batches = Batches(12, size=batch_size, seed=7)
    problem = Problem(network, OPTIMIZERS[optimizer], "float64", batches)
    require_support(module, problem)
    X, Y = make_data(12, 3, 2, "binary-cross-entropy", seed=6)
    steps = 6
    records = train_records(module, problem, make_initial(problem, seed=6), X, Y, steps)
    ks = list(range(steps))
    rows = None if batches.full else np.stack([batches.indices(k) for k in ks])
    stepped, next_states = module.step(problem, states_at(records, problem, ks), X, Y, rows)
    recorded = {q: v[ks, 0] for q, v in records.items()}
    assert_records_agree(stepped, recorded, f"{name}: step's records at states 0..{steps - 1}")
    following = states_at(records, problem, [k + 1 for k in ks])
    assert_records_agree(next_states, following, f"{name}: step's next states vs train's")


@pytest.mark.parametrize("name", NAMES)
def test_train_correct_counts_rows_whose_top_output_is_the_top_target(name):
    module = load(name)
    network = Network((3, 5, 3), ("relu", "identity"), True, "cross-entropy")
    problem = Problem(network, OPTIMIZERS["sgd"], "float64", Batches(9))
    require_support(module, problem)
    X, Y = make_data(9, 3, 3, "cross-entropy", seed=8)
    records = train_records(module, problem, make_initial(problem, seed=8), X, Y, steps=3)
    for k in range(4):
        outputs = module.predict(
            problem, params_of(network, {q: v[k] for q, v in records.items()}), X
        )
        expected = np.sum(outputs.argmax(-1) == Y.argmax(-1), axis=-1)
        np.testing.assert_array_equal(
            records["train_correct"][k], expected, err_msg=f"{name}: train_correct at state {k}"
        )
    assert_records_agree(records, reference_records(problem, 8, 1, 9, 3), f"{name}, correct")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("name", NAMES)
def test_records_have_the_contracts_names_shapes_and_dtypes(name, optimizer):
    module = load(name)
    network = Network((3, 4, 2), ("tanh", "identity"), True, "mse")
    problem = Problem(network, OPTIMIZERS[optimizer], "float64", Batches(5))
    require_support(module, problem)
    X, Y = make_data(5, 3, 2, "mse", seed=9)
    records = train_records(module, problem, make_initial(problem, seed=9, points=2), X, Y, 3, 2)
    assert set(records) == set(problem.record_names()), (
        f"{name}: records {sorted(records)}, expected {problem.record_names()}"
    )
    shapes = network.param_shapes
    for quantity, values in records.items():
        kind, _, rest = quantity.partition(":")
        if quantity in ("loss", "train_correct", "state:step"):
            expected = (4, 2)
        else:
            expected = (4, 2, *shapes[rest.rsplit(":", 1)[-1]])
        assert values.shape == expected, f"{name}: {quantity} shaped {values.shape}, not {expected}"
        dtype = np.int64 if quantity == "train_correct" else np.float64
        assert values.dtype == dtype, f"{name}: {quantity} is {values.dtype}, not {dtype}"
        assert kind in ("loss", "train_correct", "grad", "weight", "bias", "state"), quantity


@pytest.mark.parametrize("name", NAMES)
def test_predict_and_loss_and_grads_agree_with_numpy(name):
    module = load(name)
    network = Network((3, 4, 2), ("gelu_tanh", "sigmoid"), True, "binary-cross-entropy")
    problem = Problem(network, OPTIMIZERS["sgd"], "float64", Batches(7))
    require_support(module, problem)
    X, Y = make_data(7, 3, 2, "binary-cross-entropy", seed=10)
    params = params_of(network, make_initial(problem, seed=10, points=3, scale=1.0))
    outputs = module.predict(problem, params, X)
    assert outputs.shape == (3, 7, 2) and outputs.dtype == np.float64, (
        f"{name}: predict gave {outputs.shape} {outputs.dtype}, not (3, 7, 2) float64"
    )
    np.testing.assert_allclose(
        outputs, numpy_manual.predict(problem, params, X), rtol=RTOL, err_msg=f"{name} predict"
    )
    losses, grads = module.loss_and_grads(problem, params, X, Y)
    expected_losses, expected_grads = numpy_manual.loss_and_grads(problem, params, X, Y)
    assert losses.shape == (3,), f"{name}: losses shaped {losses.shape}, not (3,)"
    np.testing.assert_allclose(losses, expected_losses, rtol=RTOL, err_msg=f"{name} losses")
    assert set(grads) == set(expected_grads), f"{name}: gradients named {sorted(grads)}"
    for quantity, expected in expected_grads.items():
        np.testing.assert_allclose(
            grads[quantity], expected, rtol=RTOL, atol=1e-14, err_msg=f"{name} {quantity}"
        )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_a_saturated_network_trains_to_finite_numbers_without_warnings(name, dtype):
    """Sigmoids at +-hundreds and BCE at outputs of exactly 0 and 1 stay finite and silent."""
    module = load(name)
    network = Network((2, 2, 1), ("sigmoid", "sigmoid"), False, "binary-cross-entropy")
    problem = Problem(network, OPTIMIZERS["sgd"], dtype, Batches(2))
    require_support(module, problem)
    state = initial_state(
        problem, {"W1": np.full((1, 2, 2), 100.0), "W2": np.array([[[-100.0], [100.0]]])}
    )
    X = np.array([[1.0, 2.0], [-3.0, 8.0]])
    Y = np.array([[1.0], [0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = train_records(module, problem, state, X, Y, steps=3)
    for quantity, values in records.items():
        assert np.all(np.isfinite(values)), f"{name} {dtype}: {quantity} not finite: {values}"


# --- Property: random small problems, every implementation agrees with NumPy in float64. ------


@st.composite
def problems(draw):
    """A random small problem: depth, widths, activations, loss, biases, optimizer, batches."""
    inputs = draw(st.integers(1, 4))
    hidden = draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    outputs = draw(st.integers(1, 3))
    loss = draw(st.sampled_from(LOSSES))
    widths = (inputs, *hidden, outputs)
    activations = [draw(st.sampled_from(ACTIVATIONS)) for _ in hidden]
    activations.append(output_activation(loss, draw(st.sampled_from(ACTIVATIONS))))
    name = draw(st.sampled_from(("sgd", "momentum", "adam", "adamw")))
    nesterov = name == "momentum" and draw(st.booleans())
    optimizer = Optimizer(
        name,
        lr=draw(st.floats(1e-3, 0.3)),
        momentum=draw(st.floats(0.05, 0.95)) if name == "momentum" else 0.0,
        dampening=0.0 if nesterov or name != "momentum" else draw(st.floats(0.0, 0.5)),
        nesterov=nesterov,
        beta1=draw(st.floats(0.0, 0.95)),
        beta2=draw(st.floats(0.5, 0.9999)),
        eps=draw(st.sampled_from((1e-8, 1e-6, 1e-3))),
        weight_decay=draw(st.sampled_from((0.0, 0.01, 0.1))),
    )
    rows = draw(st.integers(1, 8))
    batches = Batches(rows, size=draw(st.integers(0, rows)), seed=draw(st.integers(0, 99)))
    network = Network(widths, tuple(activations), draw(st.booleans()), loss)
    return Problem(network, optimizer, "float64", batches), draw(st.integers(0, 2**16))


def near_tie_rows(outputs: np.ndarray) -> np.ndarray:
    """Per state and point, rows whose two largest outputs lie within float64 noise: their
    top output may honestly differ between implementations."""
    if outputs.shape[-1] < 2:
        return np.zeros(outputs.shape[:-2], dtype=np.int64)
    top_two = np.sort(outputs, axis=-1)[..., -2:]
    gap = top_two[..., 1] - top_two[..., 0]
    return np.sum(gap <= 1e-9 * (1 + np.abs(top_two[..., 1])), axis=-1)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "numpy"])
@settings(max_examples=12, deadline=None)
@given(drawn=problems())
def test_random_small_problems_agree_with_numpy(name, drawn):
    module = load(name)
    problem, seed = drawn
    require_support(module, problem)
    net = problem.network
    X, Y = make_data(problem.batches.rows, net.widths[0], net.widths[-1], net.loss, seed)
    initial = make_initial(problem, seed)
    actual = train_records(module, problem, initial, X, Y, steps=3)
    expected = train_records(numpy_manual, problem, initial, X, Y, steps=3)
    # train_correct may honestly differ where a row's top two outputs tie within rounding.
    allowed = np.stack(
        [
            near_tie_rows(
                numpy_manual.predict(
                    problem, params_of(net, {q: v[k] for q, v in expected.items()}), X
                )
            )
            for k in range(4)
        ]
    )
    assert np.all(np.abs(actual["train_correct"] - expected["train_correct"]) <= allowed), (
        f"{name}: train_correct {actual['train_correct'].ravel()} vs numpy's "
        f"{expected['train_correct'].ravel()} on {net.describe()}, {problem.optimizer}"
    )
    actual = {q: v for q, v in actual.items() if q != "train_correct"}
    expected = {q: v for q, v in expected.items() if q != "train_correct"}
    assert_records_agree(actual, expected, f"{name} on {net.describe()}, {problem.optimizer}")
