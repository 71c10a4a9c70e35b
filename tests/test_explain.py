"""``crosscheck explain``: every chain-rule factor, both frameworks' views, and the verdicts."""

from __future__ import annotations

import numpy as np
import pytest

import implementations
from compare import examples, explain
from compare.cli import main
from compare.recipe import Recipe
from implementations import numpy_manual


def explain_output(capsys, argv: list[str], expected_exit: int = 0) -> str:
    assert main(["explain", *argv]) == expected_exit, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "layers"),
    [([], 2), (["--example", "tutorial-2-2-1"], 2), (["--hidden", "5,5", "--rows", "4"], 3)],
    ids=["reference", "tutorial", "deeper"],
)
def test_explain_shows_every_factor_and_agreement(capsys, argv, layers):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    output = explain_output(capsys, argv)
    names = [f"L = sum((A{layers} - Y)^2) / (2 N)"]
    for layer in range(1, layers + 1):
        names += [f"Z{layer} = A{layer - 1} @ W{layer}", f"A{layer} = "]
        names += [f"dA{layer}/dZ{layer} = ", f"delta{layer} = dL/dZ{layer} = "]
        names += [f"dL/dW{layer} = A{layer - 1}^T @ delta{layer}", f"W{layer}.grad"]
        if layer < layers:
            names.append(f"dL/dA{layer} = delta{layer + 1} @ W{layer + 1}^T")
    names += [f"dL/dA{layers} = (A{layers} - Y) / N", "MmBackward0", "AccumulateGrad"]
    names += ["dot_general", "{ lambda", "All three agree"]
    for name in names:
        assert name in output, f"explain {' '.join(argv)} does not show {name!r}"
    for quantity in ["loss", *(f"dL/dW{layer}" for layer in range(1, layers + 1))]:
        for framework in ("torch", "jax"):
            line = f"{quantity:<8} {framework:<5} vs numpy: agree"
            assert line in output, f"no agreement line {line!r}"


def test_explain_reads_at_100_columns(capsys):
    output = explain_output(capsys, [])
    long = [line for line in output.splitlines() if len(line) > explain.WIDTH]
    assert not long, f"lines over {explain.WIDTH} columns: {long}"


def test_markdown_is_a_document(capsys):
    output = explain_output(capsys, ["--example", "tutorial-2-2-1", "--markdown"])
    assert output.startswith("# crosscheck explain: tutorial-2-2-1")
    assert "## 2. Backward pass by hand" in output and "```text" in output
    assert output.count("```") % 2 == 0, "every fenced block should be closed"


def test_explained_step_uses_the_weights_after_that_many_updates():
    problem = examples.problem_from_recipe(Recipe(steps=10))
    explanation = explain.explain(problem, title="iris", step=3)
    trained = numpy_manual.train(
        problem.network, problem.weights, problem.X, problem.Y, problem.lr, 4
    )
    for name, weights in explanation.weights.items():
        np.testing.assert_array_equal(weights, trained.weights[name][3], err_msg=name)
        np.testing.assert_allclose(
            explanation.grads[name], trained.grads[name][3], rtol=1e-12, err_msg=name
        )


def test_a_wrong_gradient_is_reported(capsys, monkeypatch):
    """Feed the checker a torch whose W1 gradient is off by 1%: explain must say so."""
    pytest.importorskip("torch")
    torch_module = implementations.load("torch")
    real = torch_module.autograd_graph

    def off_by_one_percent(*args, **kwargs):
        nodes, loss, grads = real(*args, **kwargs)
        return nodes, loss, {**grads, "W1": grads["W1"] * 1.01}

    monkeypatch.setattr(torch_module, "autograd_graph", off_by_one_percent)
    output = explain_output(capsys, ["--example", "tutorial-2-2-1"], expected_exit=1)
    assert "dL/dW1   torch vs numpy: DIFFER" in output
    assert "They do NOT agree" in output


def test_a_missing_framework_is_reported_not_raised(capsys, monkeypatch):
    real_load = implementations.load

    def load(name):
        if name == "jax":
            raise implementations.FrameworkUnavailable("jax is not installed (test)")
        return real_load(name)

    monkeypatch.setattr(implementations, "load", load)
    output = explain_output(capsys, ["--example", "tutorial-2-2-1"])
    assert "JAX not run: jax is not installed (test)" in output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--step", "1", "--example", "tutorial-2-2-1"], "step must be in [0, 1)"),
        (["--rows", "0"], "rows must be in [1, 130]"),
        (["--example", "nope"], "unknown example"),
        (["--example", "tutorial-2-2-1", "--hidden", "3"], "--example takes its network"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert main(["explain", *argv]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error, f"expected one line, got {error!r}"
