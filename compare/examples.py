"""Worked examples: small problems with known numbers, as data, judged by ``compare.check``.

An example is a ``Recipe`` (inline inputs, targets and initial parameters, or a data set and a
seeded draw) plus what a learner needs to follow it by hand: names for single weights (the
tutorial's ``w1 .. w6``), where the numbers come from, and the numbers the source prints.
``run`` trains it through ``compare.check`` (the one runner and the one verdict; there is no
second comparison here) and lays out the numbers a learner checks: the outputs, the error, the
loss and every gradient at step 0, every parameter and optimizer buffer after update 0, and
the outputs and loss after the last update, one value per framework.

Steps count from 0, as everywhere in crosscheck: step ``k`` takes its loss and gradient at
state ``k`` (the parameters before update ``k``) and its update turns state ``k`` into state
``k + 1``; a recipe of ``steps`` updates ends at state ``steps``.

The tutorial's weights ``w1 .. w6`` map onto our matrices, shaped ``(in, out)`` so that
``Z = A_prev @ W``: ``W1[i, j]`` connects input ``i + 1`` to hidden neuron ``j + 1``, so::

    W1 = [[w1, w3],     w1: input 1 -> hidden 1    w3: input 1 -> hidden 2
          [w2, w4]]     w2: input 2 -> hidden 1    w4: input 2 -> hidden 2
    W2 = [[w5],         w5: hidden 1 -> output
          [w6]]         w6: hidden 2 -> output

which reproduces its forward pass: inputs (2, 3) give h1 = 2 w1 + 3 w2 = 0.85,
h2 = 2 w3 + 3 w4 = 0.48 and the prediction 0.85 w5 + 0.48 w6 = 0.191.

This module computes; ``compare.present.explain`` words and lays out. It imports no framework:
the implementations are loaded through the registry (or given as ``modules``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

import implementations
from compare import data, quantities
from compare.check import CheckResult, check
from compare.recipe import Recipe
from implementations.contract import Problem, param_quantity

#: What ``run`` compares unless told otherwise.
DEFAULT_FRAMEWORKS = ("numpy", "torch", "jax")

#: Output rows shown per state (the rest are summarised by the loss).
SHOWN_ROWS = 3

#: The convention every example and ``explain`` states, word for word.
STEP_CONVENTION = (
    "Steps count from 0: step k takes its loss and gradient at state k (the parameters before "
    "update k), and its update turns state k into state k + 1."
)

#: ``(label, parameter, index)``: a name for one element of a parameter, e.g. the tutorial's
#: ``("w1", "W1", (0, 0))``.
Label = tuple[str, str, tuple[int, ...]]


@dataclass(frozen=True)
class Source:
    """Where an example's numbers come from.

    Attributes:
        citation: Author and title, or what the example is.
        url: A link to it, if it is published.
        published: Numbers the source prints, ``(row label, value)`` with the row labels of
            ``ExampleResult.rows``, shown beside the frameworks' so a learner can compare.
        notes: Where the source and crosscheck differ on purpose, one sentence each.
    """

    citation: str
    url: str | None = None
    published: tuple[tuple[str, float], ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Example:
    """A named worked example.

    Attributes:
        name: What ``crosscheck example NAME`` calls it.
        summary: One line for ``--list``.
        recipe: What is trained (inline data and parameters, or a data set and a draw).
        source: Where the numbers come from.
        labels: Names for single parameter elements (the tutorial's ``w1 .. w6``); the rest are
            named ``W1[0, 1]``, ``b1[0]``.
    """

    name: str
    summary: str
    recipe: Recipe
    source: Source
    labels: tuple[Label, ...] = ()

    def element_labels(self, problem: Problem) -> list[Label]:
        """``(label, parameter, index)`` for every parameter element: the named ones first, in
        the order given (the tutorial's ``w1 .. w6``), then the rest in parameter order, named
        ``W1[i, j]`` and ``b1[j]``."""
        named = {(name, tuple(index)) for _, name, index in self.labels}
        rest = [
            (f"{name}[{', '.join(map(str, index))}]", name, index)
            for name, shape in problem.network.param_shapes.items()
            for index in np.ndindex(*shape)
            if (name, index) not in named
        ]
        return [*self.labels, *rest]


#: The tutorial's weights, laid out (in, out) as the module docstring shows.
_TUTORIAL_WEIGHTS = {"W1": ((0.11, 0.12), (0.21, 0.08)), "W2": ((0.14,), (0.15,))}
_TUTORIAL_LABELS: tuple[Label, ...] = (
    ("w1", "W1", (0, 0)),
    ("w2", "W1", (1, 0)),
    ("w3", "W1", (0, 1)),
    ("w4", "W1", (1, 1)),
    ("w5", "W2", (0, 0)),
    ("w6", "W2", (1, 0)),
)


def _tutorial(activation: str) -> Recipe:
    """The 2-2-1 exercise: inputs (2, 3), target 1, one update of lr 0.05; the test set is the
    training row, so the trained model's output is the prediction after the update."""
    row, target = ((2.0, 3.0),), ((1.0,),)
    return Recipe(
        X_train=row,
        Y_train=target,
        X_test=row,
        Y_test=target,
        hidden=(2,),
        activations=(activation,),
        loss="half-mse",
        weights=_TUTORIAL_WEIGHTS,
        optimizer="sgd",
        lr=0.05,
        steps=1,
    )


_TUTORIAL_SOURCE = Source(
    citation="the classic 2-2-1 hand exercise: w1..w6 = 0.11, 0.21, 0.12, 0.08, 0.14, 0.15, "
    "inputs (2, 3), target 1, no activation, E = 1/2 (target - output)^2, learning rate 0.05",
    url="https://ask.ghassem.com/612/update-weights-backpropagation-algorithm-numerical-example",
)

#: Matt Mazur's 2-2-2 network: w1..w8 and the biases b1 (hidden) and b2 (output).
_MAZUR_LABELS: tuple[Label, ...] = (
    ("w1", "W1", (0, 0)),
    ("w2", "W1", (1, 0)),
    ("w3", "W1", (0, 1)),
    ("w4", "W1", (1, 1)),
    ("b1 (h1)", "b1", (0,)),
    ("b1 (h2)", "b1", (1,)),
    ("w5", "W2", (0, 0)),
    ("w6", "W2", (1, 0)),
    ("w7", "W2", (0, 1)),
    ("w8", "W2", (1, 1)),
    ("b2 (o1)", "b2", (0,)),
    ("b2 (o2)", "b2", (1,)),
)

_MAZUR = Recipe(
    X_train=((0.05, 0.10),),
    Y_train=((0.01, 0.99),),
    X_test=((0.05, 0.10),),
    Y_test=((0.01, 0.99),),
    hidden=(2,),
    activations=("sigmoid",),
    biases=True,
    loss="half-sse",
    weights={
        "W1": ((0.15, 0.25), (0.20, 0.30)),
        "b1": (0.35, 0.35),
        "W2": ((0.40, 0.50), (0.45, 0.55)),
        "b2": (0.60, 0.60),
    },
    optimizer="sgd",
    lr=0.5,
    steps=1,
)

_MAZUR_SOURCE = Source(
    citation='Matt Mazur, "A Step by Step Backpropagation Example" (2015)',
    url="https://mattmazur.com/2015/03/17/a-step-by-step-backpropagation-example/",
    published=(
        ("output (row 0, output 0) at state 0", 0.75136507),
        ("output (row 0, output 1) at state 0", 0.772928465),
        ("loss at state 0", 0.298371109),
        ("w5 at state 1", 0.35891648),
        ("w6 at state 1", 0.408666186),
        ("w7 at state 1", 0.511301270),
        ("w8 at state 1", 0.561370121),
        ("w1 at state 1", 0.149780716),
        ("w2 at state 1", 0.19956143),
        ("w3 at state 1", 0.24975114),
        ("w4 at state 1", 0.29950229),
    ),
    notes=(
        "The post updates w1..w8 but leaves the biases as they are; crosscheck updates the "
        "biases too (every framework's optimizer does), so its loss after the update is lower "
        "than the post's 0.291027924.",
    ),
)

#: The third kind of example: biases, a relu that is dead on one row, logits into a softmax
#: cross-entropy, and Adam, whose first update moves every parameter by almost exactly lr.
_RELU_ADAM = Recipe(
    X_train=((1.0, -2.0), (0.5, 1.0)),
    Y_train=(0, 1),
    X_test=((1.0, -2.0), (0.5, 1.0)),
    Y_test=(0, 1),
    hidden=(2,),
    activations=("relu", "identity"),
    biases=True,
    loss="cross-entropy",
    weights={
        "W1": ((0.5, -0.3), (0.2, 0.4)),
        "b1": (0.1, -0.1),
        "W2": ((0.3, -0.2), (-0.1, 0.4)),
        "b2": (0.05, -0.05),
    },
    optimizer="adam",
    lr=0.1,
    steps=2,
)

_RELU_ADAM_SOURCE = Source(
    citation="crosscheck's own: two rows, two classes; hidden unit 2 is dead (Z < 0) on row "
    "0 only, so its relu passes row 1's gradient alone; Adam's first update is "
    "lr * m_hat / (sqrt(v_hat) + eps) = lr * g / (|g| + eps), so every parameter moves by "
    "almost exactly lr = 0.1, whatever the size of its gradient",
)

EXAMPLES: dict[str, Example] = {
    example.name: example
    for example in (
        Example(
            "tutorial-2-2-1",
            "the classic 2-2-1 exercise without activations, one step on one example",
            _tutorial("identity"),
            _TUTORIAL_SOURCE,
            _TUTORIAL_LABELS,
        ),
        Example(
            "tutorial-2-2-1-sigmoid",
            "the same network and numbers with a sigmoid after each layer",
            _tutorial("sigmoid"),
            Source(citation=_TUTORIAL_SOURCE.citation + ", here with sigmoid activations"),
            _TUTORIAL_LABELS,
        ),
        Example(
            "mazur-2-2-2",
            "Matt Mazur's 2-2-2 network: sigmoids, biases, E = 1/2 sum (t - o)^2, one step",
            _MAZUR,
            _MAZUR_SOURCE,
            _MAZUR_LABELS,
        ),
        Example(
            "relu-softmax-adam",
            "2-2-2 with biases, relu, softmax cross-entropy and Adam, two steps on two rows",
            _RELU_ADAM,
            _RELU_ADAM_SOURCE,
        ),
        Example(
            "iris-4-2-3",
            "the reference recipe: iris, 4-2-3 with sigmoids, 5000 steps (what `run` trains)",
            Recipe(),
            Source(
                citation="the backpropagation tutorial the reference recipe comes from (see "
                "the README): iris, weights drawn with np.random.seed(10), lr 0.1, 5000 steps, "
                "test accuracy 0.8"
            ),
        ),
    )
}


class UnknownExample(KeyError):
    """No example has that name; ``str()`` is the one-line message."""

    def __str__(self) -> str:
        return str(self.args[0])


def lookup(name: str) -> Example:
    """The example called ``name``.

    Raises:
        UnknownExample: there is none (the message lists them).
    """
    if name not in EXAMPLES:
        raise UnknownExample(f"unknown example {name!r}; choose from {', '.join(EXAMPLES)}")
    return EXAMPLES[name]


@dataclass(frozen=True)
class Row:
    """One line of an example's table.

    Attributes:
        label: What the number is, with the state or step it belongs to
            (``"dL/dw5 at step 0"``, ``"w5 at state 1"``).
        values: Framework -> its value.
        published: The source's printed number, if it prints one.
    """

    label: str
    values: dict[str, float]
    published: float | None = None


@dataclass
class ExampleResult:
    """What every framework computed on an example, and ``check``'s verdict on it.

    Attributes:
        example: The example.
        problem: The problem trained (network, optimizer, dtype, batches).
        check: ``compare.check``'s result: the verdict and every comparison.
        sections: ``(heading, rows)`` in reading order: step 0 at state 0, update 0 into
            state 1, and the last state when there is more than one update.
        shown_rows: Output rows shown per state, of ``total_rows``.
        total_rows: Training rows.
    """

    example: Example
    problem: Problem
    check: CheckResult
    sections: list[tuple[str, list[Row]]] = field(default_factory=list)
    shown_rows: int = 0
    total_rows: int = 0

    @property
    def verdict(self) -> str:
        """``check``'s verdict: ``"pass"`` or ``"fail"``."""
        return self.check.verdict


def run(
    example: Example,
    *,
    frameworks: Sequence[str] = DEFAULT_FRAMEWORKS,
    reference: str = "numpy",
    dtype: str | None = None,
    modules: Mapping[str, ModuleType] | None = None,
    isolate: bool = True,
    oracles: bool = True,
    progress: Callable | None = None,
) -> ExampleResult:
    """Train ``example`` with every framework through ``compare.check`` and lay out its numbers.

    Args:
        example: The example.
        frameworks: Implementations to compare (the reference runs too).
        reference: The one the others are judged against.
        dtype: Compute in this dtype instead of the example's.
        modules: Framework name -> module to use instead of the registry's (a mutant, a test's
            broken implementation); passed on to ``check``.
        isolate: Train each framework in its own worker process (``check``'s ``isolate``).
        oracles: Run ``check``'s gradient oracles (they judge too, but show no number here).
        progress: ``check``'s progress callback.

    Raises:
        Whatever ``check`` raises (``RecipeError``, ``FrameworkUnavailable``, ``WorkerError``).
    """
    recipe = example.recipe if dtype is None else example.recipe.replace(dtype=dtype)
    names = tuple(dict.fromkeys((reference, *frameworks)))
    if not isolate:
        # Threads that import torch and JAX at the same time can break CPython's compiler
        # ("AST constructor recursion depth mismatch"); import them here, one at a time.
        for name in names:
            if name not in (modules or {}):
                implementations.load(name)
    result = check(
        recipe,
        frameworks=names,
        reference=reference,
        trajectories=True,
        modules=dict(modules) if modules else None,
        isolate=isolate,
        oracles=oracles,
        progress=progress,
    )
    dataset = data.load(recipe)
    problem = recipe.problem(dataset)
    names = list(result.trajectories)
    outputs = _outputs(problem, result, dataset.X_train, names, modules or {})
    sections = _sections(example, problem, dataset.Y_train, result, outputs, names)
    return ExampleResult(
        example=example,
        problem=problem,
        check=result,
        sections=sections,
        shown_rows=min(SHOWN_ROWS, len(dataset.X_train)),
        total_rows=len(dataset.X_train),
    )


def shown_states(steps: int) -> list[int]:
    """The states an example table shows: 0, 1 and the last."""
    return sorted({0, 1, steps})


def _value(trajectory: Mapping[str, np.ndarray], quantity: str, state: int, shape) -> np.ndarray:
    """One framework's ``quantity`` at ``state``, shaped ``shape`` (a point axis of 1 dropped)."""
    return np.reshape(np.asarray(trajectory[quantity])[state], shape)


def _outputs(
    problem: Problem,
    result: CheckResult,
    X: np.ndarray,
    names: Sequence[str],
    modules: Mapping[str, ModuleType],
) -> dict[str, dict[int, np.ndarray]]:
    """Each framework's network outputs on the training rows at every state shown, computed by
    its own ``predict`` at its own parameters."""
    net = problem.network
    outputs: dict[str, dict[int, np.ndarray]] = {}
    for name in names:
        module = modules.get(name) or implementations.load(name)
        trajectory = result.trajectories[name]
        outputs[name] = {}
        for state in shown_states(problem_steps(result)):
            params = {
                p: _value(trajectory, param_quantity(p), state, shape)[None]
                for p, shape in net.param_shapes.items()
            }
            outputs[name][state] = np.asarray(module.predict(problem, params, X))[0]
    return outputs


def problem_steps(result: CheckResult) -> int:
    """The number of updates the checked recipe made."""
    return result.recipe.steps


def _sections(
    example: Example,
    problem: Problem,
    Y: np.ndarray,
    result: CheckResult,
    outputs: dict[str, dict[int, np.ndarray]],
    names: Sequence[str],
) -> list[tuple[str, list[Row]]]:
    net = problem.network
    published = dict(example.source.published)
    steps = problem_steps(result)
    shown = min(SHOWN_ROWS, len(Y))
    single = Y.size == 1
    squared_error = net.loss in ("half-mse", "mse", "half-sse")
    labels = example.element_labels(problem)

    def row(label: str, values: dict[str, float]) -> Row:
        return Row(label, values, published.get(label))

    def at(name: str, quantity: str, state: int, index=()) -> float:
        kind = quantities.parameter(quantity)
        shape = net.param_shapes[kind] if kind is not None else ()
        return float(_value(result.trajectories[name], quantity, state, shape)[index])

    def output_rows(state: int) -> list[Row]:
        what = "logit" if net.loss == "cross-entropy" else "output"
        out = []
        for r in range(shown):
            for j in range(Y.shape[1]):
                label = "prediction" if single else f"{what} (row {r}, output {j})"
                out.append(row(f"{label} at state {state}", _each(names, outputs, state, r, j)))
        return out

    first = output_rows(0)
    if squared_error:
        for r in range(shown):
            for j in range(Y.shape[1]):
                label = "error = prediction - target" if single else f"error (row {r}, output {j})"
                values = {n: outputs[n][0][r, j] - Y[r, j] for n in names}
                first.append(row(f"{label} at state 0", values))
    first.append(row("loss at state 0", {n: at(n, "loss", 0) for n in names}))
    for label, name, index in labels:
        values = {n: at(n, f"grad:{name}", 0, index) for n in names}
        first.append(row(f"dL/d{label} at step 0", values))
    sections = [("step 0, at state 0 (the initial parameters)", first)]

    after = []
    for label, name, index in labels:
        after.append(
            row(f"{label} at state 1", {n: at(n, param_quantity(name), 1, index) for n in names})
        )
    for kind in problem.optimizer.state_kinds():
        for label, name, index in labels:
            quantity = f"state:{kind}:{name}"
            values = {n: at(n, quantity, 1, index) for n in names}
            after.append(row(f"{kind} of {label} at state 1", values))
    after += output_rows(1)
    after.append(row("loss at state 1", {n: at(n, "loss", 1) for n in names}))
    sections.append((f"update 0 ({_optimizer_words(problem)}): state 1", after))

    if steps > 1:
        last = output_rows(steps)
        last.append(row(f"loss at state {steps}", {n: at(n, "loss", steps) for n in names}))
        sections.append((f"after all {steps} updates: state {steps}", last))
    return sections


def _each(names, outputs, state: int, r: int, j: int) -> dict[str, float]:
    return {n: float(outputs[n][state][r, j]) for n in names}


def _optimizer_words(problem: Problem) -> str:
    opt = problem.optimizer
    return f"{opt.name}, lr {opt.lr:g}"
