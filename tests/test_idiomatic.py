"""The idiomatic tier (``torch_nn``: nn.Linear + torch.optim; ``flax_nnx``: nnx.Linear + optax)
against the NumPy reference in float64, and the layout mix-ups planted in it.

torch_nn runs every optimizer x every loss x biases on/off x full batch / minibatches: training
compared at every step, and the synced step from the reference's states. flax_nnx compiles each
network once (about a second of XLA per case), so it runs every optimizer x every loss, with
biases and minibatches arranged so that every optimizer meets all four of their combinations,
comparing training at every step; the conformance kit (tests/test_plugins.py) covers its synced
step, loss_and_grads and predict.
"""

from __future__ import annotations

import itertools
import re

import pytest

import implementations
from compare import testing
from implementations.contract import LOSSES, Network, Optimizer, initial_state

OPTIMIZERS = [variant for variants in testing.OPTIMIZER_VARIANTS.values() for variant in variants]
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "gelu_tanh", "identity")


def _module(name: str):
    try:
        return implementations.load(name)
    except implementations.FrameworkUnavailable as error:
        pytest.skip(str(error))


def _case(number: int, loss: str, optimizer, biases: bool, batch_size: int) -> testing.Case:
    output = {"cross-entropy": "identity", "binary-cross-entropy": "sigmoid"}.get(
        loss, ACTIVATIONS[number % len(ACTIVATIONS)]
    )
    hidden = (
        ACTIVATIONS[(2 * number) % len(ACTIVATIONS)],
        ACTIVATIONS[(2 * number + 1) % len(ACTIVATIONS)],
    )
    network = Network(testing.WIDTHS, (*hidden, output), biases=biases, loss=loss)
    return testing.Case(number, network, optimizer, "float64", batch_size)


def _id(case: testing.Case) -> str:
    rule = case.optimizer
    name = rule.name + ("-nesterov" if rule.nesterov else "")
    batches = f"batch{case.batch_size}" if case.batch_size else "full"
    return f"{name}-{case.network.loss}-{'biases' if case.network.biases else 'nobias'}-{batches}"


TORCH_MATRIX = [
    _case(number, loss, optimizer, biases, batch_size)
    for number, (loss, optimizer, biases, batch_size) in enumerate(
        itertools.product(LOSSES, OPTIMIZERS, (False, True), (0, 5))
    )
]


def _flax_matrix() -> list[testing.Case]:
    cases = []
    for number, (loss_index, optimizer_index) in enumerate(
        itertools.product(range(len(LOSSES)), range(len(OPTIMIZERS)))
    ):
        # Over the losses, each optimizer meets all four (biases, minibatches) combinations.
        biases = (loss_index + optimizer_index) % 2 == 0
        minibatches = (loss_index // 2 + optimizer_index) % 2 == 0
        # Batches of 4 divide the 12 rows: one batch shape, one compilation per case (the
        # partial batches of 5 are the kit's, in tests/test_plugins.py).
        batch_size = 4 if minibatches else 0
        cases.append(
            _case(number, LOSSES[loss_index], OPTIMIZERS[optimizer_index], biases, batch_size)
        )
    return cases


FLAX_MATRIX = _flax_matrix()


def test_flax_matrix_covers_every_combination_per_optimizer():
    for optimizer in OPTIMIZERS:
        settings = {
            (case.network.biases, case.batch_size > 0)
            for case in FLAX_MATRIX
            if case.optimizer == optimizer
        }
        assert len(settings) == 4, f"{optimizer.name} misses a biases/minibatch combination"
    assert {case.network.loss for case in FLAX_MATRIX} == set(LOSSES)


@pytest.mark.parametrize("case", TORCH_MATRIX, ids=_id)
def test_torch_nn_agrees_with_numpy_at_every_step(case):
    testing.check_case(
        _module("torch_nn"),
        "torch_nn",
        case,
        implementations.load("numpy"),
        checks=("synced", "train"),
    )


@pytest.mark.parametrize("case", FLAX_MATRIX, ids=_id)
def test_flax_nnx_trains_as_numpy_does_at_every_step(case):
    testing.check_case(
        _module("flax_nnx"), "flax_nnx", case, implementations.load("numpy"), checks=("train",)
    )


def test_flax_nnx_step_from_given_states_agrees_with_numpy():
    """The synced step with per-point batches of two sizes, and Adam's state loaded in."""
    case = _case(0, "cross-entropy", OPTIMIZERS[3], True, 5)
    testing.check_case(
        _module("flax_nnx"),
        "flax_nnx",
        case,
        implementations.load("numpy"),
        checks=("synced", "evaluations"),
    )


@pytest.mark.parametrize("mutant", testing.IDIOMATIC_MUTANTS, ids=lambda m: m.name)
def test_layout_mixups_are_caught_at_step_0_or_1_with_the_quantity_named(mutant):
    _module(mutant.framework)
    quantity, step = mutant.caught_by
    with pytest.raises(AssertionError) as raised:
        testing.check_implementation(mutant.build(), quick=True)
    message = str(raised.value)
    assert re.search(rf"step {step}\b[^,]*, {re.escape(quantity)}, point \d", message), message
    assert step in (0, 1)


def test_mutant_edits_match_the_shipped_source():
    """A mutant whose edit no longer matches its implementation fails loudly (MutantError)."""
    broken = testing.SourceMutant(
        "stale", "numpy", "no such line", (("no such line", ""),), ("", 0)
    )
    with pytest.raises(testing.MutantError, match="matches 0 times"):
        broken.build()


def test_torch_nn_converts_the_layout_only_at_its_edge():
    """nn.Linear holds (out, in): the module's weight is the transpose of the shared one."""
    torch_nn = _module("torch_nn")
    network = Network((4, 3), ("sigmoid",), biases=True)
    params = testing.initial_params(network, 0, points=1)
    (model,) = torch_nn.build_models(network, params, "float64")
    assert tuple(model.layers[0].weight.shape) == (3, 4)
    assert (model.layers[0].weight.detach().numpy() == params["W1"][0].T).all()


def test_flax_nnx_adamw_decay_is_explicit():
    """optax.adamw's default weight decay (1e-4) is never used: the recipe's 0 stays 0."""
    flax_nnx = _module("flax_nnx")
    network = Network((4, 3), ("identity",))
    params = testing.initial_params(network, 1, points=1)
    problem = testing.Case(0, network, Optimizer("adamw", lr=0.1), "float64", 0).problem()
    X, Y = testing.data()
    torch_nn = _module("torch_nn")
    states = initial_state(problem, params)
    _, flax_next = flax_nnx.step(problem, states, X, Y, None)
    _, torch_next = torch_nn.step(problem, states, X, Y, None)
    difference = abs(flax_next["weight:W1"] - torch_next["weight:W1"]).max()
    assert difference < 1e-14, f"flax and torch AdamW differ by {difference} with no decay"


@pytest.mark.parametrize("name", ["torch_nn", "flax_nnx"])
def test_leaky_relu_derivative_at_exactly_zero_is_the_slope(name):
    """A zero column of W2 gives Z2 = 0 exactly in that unit, where jax.nn.leaky_relu's
    derivative is 1 and the contract's (torch's) the slope: grad:W2's column shows which."""
    module = _module(name)
    network = Network((4, 3, 3, 3), ("tanh", "leaky_relu", "identity"), loss="mse")
    X, Y = testing.data()
    params = testing.initial_params(network, 2, points=1)
    params["W2"][:, :, 0] = 0.0
    problem = testing.Case(0, network, Optimizer("sgd"), "float64", 0).problem()
    _, grads = module.loss_and_grads(problem, params, X, Y)
    _, expected = implementations.load("numpy").loss_and_grads(problem, params, X, Y)
    column = expected["grad:W2"][0, :, 0]
    assert (abs(column) > 1e-6).any(), "the unit at Z = 0 must carry a gradient"
    difference = abs(grads["grad:W2"][0, :, 0] - column).max()
    assert difference <= 1e-15 * abs(column).max(), (
        f"{name}'s leaky_relu derivative at Z = 0 is not the slope: grad:W2[:, 0] "
        f"{grads['grad:W2'][0, :, 0]} against {column}"
    )
