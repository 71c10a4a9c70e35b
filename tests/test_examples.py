"""``crosscheck example``: the tutorial's numbers, checked against a hand computation here."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from compare import examples, harness
from compare.cli import main
from compare.recipe import Recipe

pytest.importorskip("torch")
pytest.importorskip("jax")

FRAMEWORKS = ("numpy", "torch", "jax")

# The tutorial's numbers: w1..w6, inputs (2, 3), target 1, learning rate 0.05.
W = {"w1": 0.11, "w2": 0.21, "w3": 0.12, "w4": 0.08, "w5": 0.14, "w6": 0.15}
I1, I2, TARGET, LR = 2.0, 3.0, 1.0, 0.05


def row(output: str, label: str) -> list[float]:
    """The numbers (one per framework) on the table row called ``label``."""
    pattern = re.compile(r"^\s*" + re.escape(label) + r"\s{2,}(\S+)\s+(\S+)\s+(\S+)\s*$")
    for line in output.splitlines():
        match = pattern.match(line)
        if match:
            return [float(value) for value in match.groups()]
    raise AssertionError(f"no row {label!r} in the example output:\n{output}")


def hand_computation(activation) -> dict[str, float]:
    """The tutorial's forward pass, gradients and update, written out with plain arithmetic.

    ``activation(z)`` returns ``(a, da/dz)``. Hidden neuron 1 is fed by w1 (input 1) and w2
    (input 2), neuron 2 by w3 and w4; w5 and w6 lead from the hidden neurons to the output.
    """

    def forward(w):
        h1, dh1 = activation(I1 * w["w1"] + I2 * w["w2"])
        h2, dh2 = activation(I1 * w["w3"] + I2 * w["w4"])
        out, dout = activation(h1 * w["w5"] + h2 * w["w6"])
        return h1, h2, dh1, dh2, out, dout

    h1, h2, dh1, dh2, out, dout = forward(W)
    error = out - TARGET
    delta_out = error * dout  # dL/d(output pre-activation), L = error^2 / 2
    grads = {
        "w5": delta_out * h1,
        "w6": delta_out * h2,
        "w1": delta_out * W["w5"] * dh1 * I1,
        "w2": delta_out * W["w5"] * dh1 * I2,
        "w3": delta_out * W["w6"] * dh2 * I1,
        "w4": delta_out * W["w6"] * dh2 * I2,
    }
    updated = {name: W[name] - LR * grads[name] for name in W}
    new_out = forward(updated)[4]
    numbers = {"prediction": out, "error": error, "loss": error**2 / 2, "new": new_out}
    numbers.update({f"dL/d{name}": g for name, g in grads.items()})
    numbers.update({f"{name} after": w for name, w in updated.items()})
    return numbers


def identity(z):
    return z, 1.0


def sigmoid(z):
    a = 1 / (1 + math.exp(-z))
    return a, a * (1 - a)


@pytest.mark.parametrize(
    ("example", "activation"),
    [("tutorial-2-2-1", identity), ("tutorial-2-2-1-sigmoid", sigmoid)],
)
def test_tutorial_numbers_match_the_hand_computation(capsys, example, activation):
    assert main(["example", example]) == 0, "the three frameworks should agree"
    output = capsys.readouterr().out
    expected = hand_computation(activation)
    shown = {
        "prediction": row(output, "prediction"),
        "error": row(output, "error = prediction - target"),
        "loss": row(output, "loss = sum(error^2) / (2 N)"),
        "new": row(output, "prediction after step 1"),
    }
    for name in W:
        shown[f"dL/d{name}"] = row(output, f"dL/d{name}")
        shown[f"{name} after"] = row(output, f"{name} after step 1")
    for quantity, values in shown.items():
        for framework, value in zip(FRAMEWORKS, values, strict=True):
            assert value == pytest.approx(expected[quantity], rel=1e-9, abs=1e-12), (
                f"{example}: {framework}'s {quantity} is {value}, by hand {expected[quantity]}"
            )


def test_tutorial_numbers_are_the_tutorials(capsys):
    """The published numbers: prediction 0.191, and about 0.26 after one step."""
    main(["example", "tutorial-2-2-1"])
    output = capsys.readouterr().out
    assert row(output, "prediction") == pytest.approx([0.191] * 3)
    assert row(output, "prediction after step 1") == pytest.approx([0.26] * 3, abs=0.005)


def test_list_names_every_example(capsys):
    assert main(["example", "--list"]) == 0
    output = capsys.readouterr().out
    for name in ("tutorial-2-2-1", "tutorial-2-2-1-sigmoid", "iris-4-2-3"):
        assert name in output, f"--list should name {name}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["example", "no-such-example"], "unknown example"), (["example"], "name an example")],
)
def test_bad_example_arguments_exit_2_with_one_line(capsys, argv, message):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, f"expected one line, got {error!r}"


def test_a_recipe_example_trains_what_run_trains():
    """An example given as a recipe runs the same data and initial weights as `crosscheck run`."""
    example = examples.Example("short-iris", "three steps of the reference recipe", Recipe(steps=3))
    result = examples.run(example.problem())
    reference = harness.run(Recipe(steps=3), ["numpy"], isolate=False)
    expected = reference.runs["numpy"].trajectory
    for framework, trajectory in result.trajectories.items():
        np.testing.assert_allclose(
            trajectory.losses, expected.losses, rtol=1e-12, err_msg=framework
        )
        for name, grads in expected.grads.items():
            np.testing.assert_allclose(
                trajectory.grads[name], grads, rtol=1e-10, atol=1e-15, err_msg=f"{framework} {name}"
            )
    assert all(facts["first_failing_step"] is None for facts in result.comparisons.values())
    labels = [quantity for quantity, _ in examples.rows(result)]
    assert "dL/dW1[3, 1]" in labels and "loss after 3 steps" in labels
