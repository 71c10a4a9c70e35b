"""``crosscheck explain``: every value under its own label (against arithmetic written out
here), every activation, loss and optimizer with its formula, torch's constants and JAX's
variables named, the step convention, the agreement lines and the exit statuses."""

from __future__ import annotations

import contextlib
import functools
import io
import re

import numpy as np
import pytest
from teaching_helpers import wrong_learning_rate

import implementations
from compare import data, examples, explain, weights
from compare.cli import main
from compare.present import explain as present
from compare.recipe import Recipe
from implementations.contract import initial_state

pytest.importorskip("torch")
pytest.importorskip("jax")


@functools.cache
def explain_output(*argv: str) -> tuple[int, str]:
    """``crosscheck explain ARGV``: its exit status and what it printed (once per module)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["explain", *argv])
    assert not err.getvalue(), err.getvalue()
    return status, out.getvalue()


def value(text: str, label: str) -> np.ndarray:
    """The numbers printed under the one value whose header starts ``label = ``."""
    lines = text.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith(f"{label} = ")]
    assert len(headers) == 1, f"{len(headers)} values labelled {label!r}:\n{text}"
    body = []
    for line in lines[headers[0] + 1 :]:
        if line.startswith("    "):
            body.append(line)
        elif not line.startswith("  "):  # a wrapped header goes on with two spaces
            break
    numbers = re.findall(r"-?\d+\.?\d*(?:e[+-]?\d+)?", " ".join(body))
    return np.array([float(n) for n in numbers])


def assert_values(text: str, expected: dict[str, np.ndarray], what: str) -> None:
    for label, wanted in expected.items():
        shown = value(text, label)
        wanted = np.ravel(np.asarray(wanted, dtype=np.float64))
        # The document prints 6 significant digits.
        np.testing.assert_allclose(
            shown, wanted, rtol=1e-5, atol=1e-9, err_msg=f"{what}: the value under {label!r}"
        )


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Mazur's 2-2-2: sigmoids, biases, half-sse, sgd lr 0.5 (the numbers of compare.examples). ------
X_MAZUR, Y_MAZUR = np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
W1_MAZUR, B1_MAZUR = np.array([[0.15, 0.25], [0.20, 0.30]]), np.array([0.35, 0.35])
W2_MAZUR, B2_MAZUR = np.array([[0.40, 0.50], [0.45, 0.55]]), np.array([0.60, 0.60])


def test_every_factor_of_a_step_is_under_its_own_label():
    status, text = explain_output("--example", "mazur-2-2-2")
    assert status == 0, text
    Z1 = X_MAZUR @ W1_MAZUR + B1_MAZUR
    A1 = sigmoid(Z1)
    Z2 = A1 @ W2_MAZUR + B2_MAZUR
    A2 = sigmoid(Z2)
    dL_dA2 = A2 - Y_MAZUR  # L = sum((A2 - Y)^2) / 2
    dA2_dZ2 = A2 * (1 - A2)
    delta2 = dL_dA2 * dA2_dZ2
    dL_dA1 = delta2 @ W2_MAZUR.T
    dA1_dZ1 = A1 * (1 - A1)
    delta1 = dL_dA1 * dA1_dZ1
    dL_dW1, dL_dW2 = X_MAZUR.T @ delta1, A1.T @ delta2
    expected = {
        "A0": X_MAZUR,
        "W1": W1_MAZUR,
        "b1": B1_MAZUR,
        "Z1": Z1,
        "A1": A1,
        "W2": W2_MAZUR,
        "b2": B2_MAZUR,
        "Z2": Z2,
        "A2": A2,
        "dL/dA2": dL_dA2,
        "dA2/dZ2": dA2_dZ2,
        "delta2": delta2,
        "dL/dW2": dL_dW2,
        "dL/db2": delta2.sum(axis=0),
        "dL/dA1": dL_dA1,
        "dA1/dZ1": dA1_dZ1,
        "delta1": delta1,
        "dL/dW1": dL_dW1,
        "dL/db1": delta1.sum(axis=0),
        "g (W1)": dL_dW1,
        "p_next (W1)": W1_MAZUR - 0.5 * dL_dW1,
        "p_next (b1)": B1_MAZUR - 0.5 * delta1.sum(axis=0),
        "p_next (W2)": W2_MAZUR - 0.5 * dL_dW2,
        "W1.grad": dL_dW1,
        "b2.grad": delta2.sum(axis=0),
        "dL/dW2 (jax)": dL_dW2,
        "dL/db1 (jax)": delta1.sum(axis=0),
    }
    assert_values(text, expected, "mazur-2-2-2, step 0")
    assert np.sum(dL_dA2**2) / 2 == pytest.approx(0.298371109, abs=1e-9)
    loss_line = next(line for line in text.splitlines() if line.startswith("L = "))
    assert "sum((A2 - Y)^2) / 2" in loss_line, loss_line


RELU_X = np.array([[1.0, -2.0], [0.5, 1.0]])
RELU_Y = np.eye(2)
RELU_INITIAL = {
    "W1": np.array([[0.5, -0.3], [0.2, 0.4]]),
    "b1": np.array([0.1, -0.1]),
    "W2": np.array([[0.3, -0.2], [-0.1, 0.4]]),
    "b2": np.array([0.05, -0.05]),
}


def relu_network(p):
    """relu then logits into a softmax cross-entropy, mean over the 2 rows, by hand."""
    Z1 = RELU_X @ p["W1"] + p["b1"]
    A1 = np.maximum(Z1, 0)
    Z2 = A1 @ p["W2"] + p["b2"]
    delta2 = (softmax(Z2) - RELU_Y) / 2
    dA1_dZ1 = (Z1 > 0).astype(float)
    delta1 = (delta2 @ p["W2"].T) * dA1_dZ1
    grads = {
        "W1": RELU_X.T @ delta1,
        "b1": delta1.sum(axis=0),
        "W2": A1.T @ delta2,
        "b2": delta2.sum(axis=0),
    }
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "dA1/dZ1": dA1_dZ1, "delta1": delta1}, grads


def adam(p, m, v, g, t, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8):
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return p - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps), m, v


def test_the_update_of_a_later_step_is_under_its_own_labels():
    """Step 1 of the relu/softmax/Adam example: state 1 comes from Adam's first update, and
    the second update's moments, bias corrections, step size and result are each labelled."""
    status, text = explain_output("--example", "relu-softmax-adam", "--step", "1")
    assert status == 0, text
    _, g0 = relu_network(RELU_INITIAL)
    state1 = {}
    for name, p in RELU_INITIAL.items():
        zeros = np.zeros_like(p)
        state1[name] = adam(p, zeros, zeros, g0[name], t=1)
    params1 = {name: s[0] for name, s in state1.items()}
    forward, g1 = relu_network(params1)
    p2, m2, v2 = adam(params1["W1"], state1["W1"][1], state1["W1"][2], g1["W1"], t=2)
    expected = {
        "W1": params1["W1"],
        "b2": params1["b2"],
        "Z1": forward["Z1"],
        "A1": forward["A1"],
        "Z2": forward["Z2"],
        "dA1/dZ1": forward["dA1/dZ1"],
        "delta1": forward["delta1"],
        "dL/dW1": g1["W1"],
        "dL/db1": g1["b1"],
        "m (W1) at state 1": state1["W1"][1],
        "v (W1) at state 1": state1["W1"][2],
        "v (b2) at state 1": state1["b2"][2],
        "g (W1)": g1["W1"],
        "m (W1)": m2,
        "v (W1)": v2,
        "bias_correction1 (W1)": 1 - 0.9**2,
        "bias_correction2 (W1)": 1 - 0.999**2,
        "step_size (W1)": 0.1 / (1 - 0.9**2),
        "sqrt_v_hat (W1)": np.sqrt(v2) / np.sqrt(1 - 0.999**2),
        "p_next (W1)": p2,
    }
    assert_values(text, expected, "relu-softmax-adam, step 1")
    assert "Shown: step 1, from state 1 to state 2." in " ".join(text.split())


# Every activation, loss and optimizer with its formula. ------------------------------------
ACTIVATION_FORMULAS = {
    "sigmoid": ("1 / (1 + exp(-Z{n}))", "A{n} (1 - A{n})"),
    "tanh": ("tanh(Z{n})", "1 - A{n}^2"),
    "relu": ("max(Z{n}, 0)", "1 if Z{n} > 0 else 0"),
    "leaky_relu": ("Z{n} if Z{n} > 0 else 0.01 Z{n}", "1 if Z{n} > 0 else 0.01"),
    "gelu": ("erf(Z{n} / sqrt 2)", "exp(-Z{n}^2 / 2) / sqrt(2 pi)"),
    "gelu_tanh": ("0.044715 Z{n}^3", "0.134145 Z{n}^2"),
    "identity": ("identity(Z{n}) = Z{n}", "identity'(Z{n}) = 1"),
}
LOSS_FORMULAS = {
    "half-mse": ("sum((A{n} - Y)^2) / (2 R O)", "(A{n} - Y) / (R O)"),
    "mse": ("sum((A{n} - Y)^2) / (R O)", "2 (A{n} - Y) / (R O)"),
    "half-sse": ("sum((A{n} - Y)^2) / 2", "A{n} - Y"),
    "cross-entropy": ("-sum(Y log_softmax(A{n})) / R", "(softmax(A{n}) - Y) / R"),
    "binary-cross-entropy": ("log1p(-A{n})", "(A{n} - Y) / max(A{n} (1 - A{n}), 1e-12)"),
}
OPTIMIZER_LINES = {
    "sgd": ("g (W1) = grad + weight_decay * p", "p_next (W1) = p - lr * g"),
    "momentum": (
        "buf (W1) = g at the first update, else momentum * buf + (1 - dampening) * g",
        "direction (W1) = g + momentum * buf if nesterov",
        "p_next (W1) = p - lr * direction",
    ),
    "adam": (
        "m (W1) = beta1 * m + (1 - beta1) * g",
        "v (W1) = beta2 * v + (1 - beta2) * g^2",
        "bias_correction1 (W1) = 1 - beta1^t",
        "bias_correction2 (W1) = 1 - beta2^t",
        "denom (W1) = sqrt_v_hat + eps",
        "p_next (W1) = p - step_size * m / denom",
    ),
    "adamw": (
        "p_decayed (W1) = p * (1 - lr * weight_decay)",
        "m (W1) = beta1 * m + (1 - beta1) * grad",
        "p_next (W1) = p_decayed - step_size * m / denom",
    ),
}
X3, LABELS3 = ((1.0, -2.0), (0.5, 1.0), (0.2, 0.3)), (0, 1, 1)
SMALL = {"X_train": X3, "Y_train": LABELS3, "X_test": X3, "Y_test": LABELS3, "steps": 2}
COVERING = [
    Recipe(
        hidden=(3, 3, 3),
        activations=("tanh", "relu", "leaky_relu", "sigmoid"),
        loss="binary-cross-entropy",
        optimizer="adam",
        lr=0.01,
        **SMALL,
    ),
    Recipe(
        hidden=(3, 3),
        activations=("gelu", "gelu_tanh", "identity"),
        biases=True,
        loss="cross-entropy",
        optimizer="adamw",
        lr=0.01,
        **SMALL,
    ),
    Recipe(hidden=(2,), activations=("identity",), loss="mse", optimizer="momentum", **SMALL),
    Recipe(hidden=(2,), loss="half-mse", **SMALL),
    Recipe(hidden=(2,), activations=("sigmoid", "identity"), loss="half-sse", **SMALL),
]


@functools.cache
def covering_documents() -> list[tuple[Recipe, str]]:
    """The explain document of every covering recipe, step 1 (NumPy against torch: the
    formulas are NumPy's, and JAX's tracing of five networks would only add time)."""
    documents = []
    for recipe in COVERING:
        e = explain.explain(recipe, step=1, frameworks=("torch",))
        assert e.verdict == "pass", f"{recipe}: {present.text.verdict_line(e.check)}"
        documents.append((recipe, present.to_text(present.explanation_blocks(e))))
    return documents


def header(text: str, start: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert len(lines) == 1, f"{len(lines)} lines start {start!r}"
    return lines[0]


def test_every_activation_loss_and_optimizer_appears_with_its_formula():
    covered = {"activations": set(), "losses": set(), "optimizers": set()}
    for recipe, text in covering_documents():
        net = recipe.network(2, 2)
        for n, activation in enumerate(net.activations, start=1):
            forward, derivative = (f.format(n=n) for f in ACTIVATION_FORMULAS[activation])
            assert forward in header(text, f"A{n} = {activation}(Z{n}) = "), activation
            assert derivative in header(text, f"dA{n}/dZ{n} = {activation}'(Z{n}) = "), activation
            covered["activations"].add(activation)
        formula, derivative = (f.format(n=net.layers) for f in LOSS_FORMULAS[net.loss])
        assert formula in header(text, "L = "), net.loss
        assert derivative in header(text, f"dL/dA{net.layers} = "), net.loss
        covered["losses"].add(net.loss)
        for line in OPTIMIZER_LINES[recipe.optimizer]:
            assert line in text, f"{recipe.optimizer}: no line {line!r}"
        covered["optimizers"].add(recipe.optimizer)
    assert covered == {
        "activations": set(ACTIVATION_FORMULAS),
        "losses": set(LOSS_FORMULAS),
        "optimizers": set(OPTIMIZER_LINES),
    }


def test_each_optimizer_shows_its_state_before_the_update():
    for recipe, text in covering_documents():
        kinds = {"sgd": (), "momentum": ("momentum",), "adam": ("m", "v"), "adamw": ("m", "v")}
        for kind in kinds[recipe.optimizer]:
            assert f"{kind} (W1) at state 1 = as the last update left it" in text, recipe.optimizer


# torch's constants, JAX's variables, the link between their forms and NumPy's. ---------------


def test_torch_labels_its_constants_and_jax_its_variables():
    status, text = explain_output()
    assert status == 0, text
    torch_part = text[text.index("5. What PyTorch built") : text.index("6. What JAX built")]
    jax_part = text[text.index("6. What JAX built") : text.index("7. Do they agree?")]
    assert "(constant 780 = 2 R O = 2 x 130 x 3, the loss's divisor)" in torch_part
    assert "an input such as X or Y" not in text
    assert "(X, the input rows" in torch_part and "(Y, the targets" in torch_part
    jaxpr = [line for line in jax_part.splitlines() if " = " in line and "#" in line]

    def marked(primitive: str, note: str) -> bool:
        return any(f"= {primitive} " in line and note in line for line in jaxpr)

    assert marked("div", "780.0 = 2 R O = 2 x 130 x 3, the loss's divisor")
    assert marked("mul", "2.0 = the square's derivative")
    assert marked("sub", "= A2 - Y")
    for name in ("Z1", "A1", "A2", "dA2/dZ2", "delta2", "delta1", "dL/dW1", "dL/dW2"):
        assert any(line.endswith(f"= {name}") or f"= {name};" in line for line in jaxpr), name
    flat = " ".join(text.split())
    assert "2.0 (A2 - Y) / 780, which is (A2 - Y) / 390 = (A2 - Y) / (R O)" in flat


def test_the_step_shown_is_taken_at_the_state_of_that_step():
    """``--step 3``: the parameters shown are the reference's after 3 updates (state 3), and
    the update's result is state 4; computed here by the NumPy implementation itself."""
    recipe = Recipe(steps=10)
    e = explain.explain(recipe, step=3, frameworks=("torch",))
    numpy_module = implementations.load("numpy")
    dataset = data.load(recipe)
    problem = recipe.problem(dataset)
    params = weights.initial_params(recipe, problem.network)
    records = {}
    numpy_module.train(
        problem,
        initial_state(problem, {k: v[None] for k, v in params.items()}),
        dataset.X_train,
        dataset.Y_train,
        5,
        chunk=10,
        sink=lambda start, chunk: records.update(
            {start + i: {q: a[i] for q, a in chunk.items()} for i in range(len(chunk["loss"]))}
        ),
    )
    shown = {v.label: v.value for v in e.forward}
    np.testing.assert_array_equal(shown["W1"], records[3]["weight:W1"][0])
    np.testing.assert_array_equal(shown["W2"], records[3]["weight:W2"][0])
    np.testing.assert_allclose(e.grads["W1"], records[3]["grad:W1"][0], rtol=1e-12)
    p_next = next(
        line.value for line in e.update.lines if line.parameter == "W2" and line.name == "p_next"
    )
    np.testing.assert_allclose(p_next, records[4]["weight:W2"][0], rtol=1e-12)
    text = " ".join(present.to_text(present.explanation_blocks(e)).split())
    assert "Steps count from 0: step k takes its loss and gradient at state k" in text
    assert "Shown: step 3, from state 3 to state 4." in text


# Verdicts and exit statuses. -----------------------------------------------------------------


def test_a_wrong_view_gradient_is_reported_and_exits_1(monkeypatch):
    """A torch whose autodiff view's W1 gradient is off by 1%: explain must say so."""
    torch_module = implementations.load("torch")
    real = torch_module.autodiff_view

    def off_by_one_percent(*args, **kwargs):
        view = real(*args, **kwargs)
        return {**view, "grads": {**view["grads"], "W1": view["grads"]["W1"] * 1.01}}

    monkeypatch.setattr(torch_module, "autodiff_view", off_by_one_percent)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["explain", "--example", "tutorial-2-2-1"]) == 1
    text = out.getvalue()
    assert re.search(r"grad:W1 +torch vs numpy: DIFFER", text), text
    assert re.search(r"grad:W2 +torch vs numpy: agree", text), text
    assert "Verdict: they do NOT agree." in text


def test_a_wrong_update_fails_the_check(monkeypatch):
    """A torch whose updates use 1.5 times the learning rate: ``check`` (synced) catches it at
    the step explained even though the gradients shown agree."""
    e = explain.explain(
        examples.lookup("tutorial-2-2-1").recipe, modules={"torch": wrong_learning_rate()}
    )
    assert all(c.passed for c in e.shown)
    assert e.check.verdict == "fail" and e.verdict == "fail"
    assert e.check.first_failure.framework == "torch"
    assert e.check.first_failure.quantity.startswith("weight:")


def test_a_missing_framework_is_reported_not_raised(monkeypatch):
    real = implementations.check_available

    def no_jax(spec):
        if spec == "jax":
            raise implementations.FrameworkUnavailable("jax is not installed (test)")
        return real(spec)

    monkeypatch.setattr(implementations, "check_available", no_jax)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["explain", "--example", "tutorial-2-2-1"]) == 0
    assert "JAX not run: jax is not installed (test)" in out.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--step", "5000"], "--step 5000 is out of range: steps count from 0"),
        (["--step", "-1"], "K must be in [0, 4999]"),
        (["--example", "tutorial-2-2-1", "--step", "1"], "K must be in [0, 0]"),
        (["--rows", "131"], "--rows 131 is out of range: a batch has 130 rows"),
        (["--rows", "0"], "must be at least 1"),
        (["--example", "nope"], "unknown example 'nope'"),
        (["--example", "tutorial-2-2-1", "--recipe", "x.toml"], "not both"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert main(["explain", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err, captured.err
    assert not captured.out


def test_markdown_writes_the_document(tmp_path):
    path = tmp_path / "explain.md"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["explain", "--example", "tutorial-2-2-1", "--markdown", str(path)])
    assert status == 0
    document = path.read_text()
    assert document.startswith("<!-- crosscheck.markdown/1 -->\n")
    assert "\n# crosscheck explain: tutorial-2-2-1\n" in document
    assert "\n## 3. Backward pass by hand (NumPy): the chain rule at state 0\n" in document
    assert "`dL/dW2 = A1^T @ delta2    shape (2, 1)`\n\n```text\n[[-0.68765]\n [-0.38832]]" in (
        document
    )
    assert document.count("```") % 2 == 0, "every fenced block should be closed"
    assert "dL/dW2 = A1^T @ delta2" in out.getvalue(), "the terminal gets the document too"


def test_prose_fits_an_80_column_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["explain", "--example", "tutorial-2-2-1"]) == 0
    prose = [line for line in out.getvalue().splitlines() if not line.startswith("    ")]
    assert prose and all(len(line) <= 80 for line in prose), [
        line for line in prose if len(line) > 80
    ]
