"""Worked examples: small training problems written out as data, run through all three frameworks.

An example is a ``Problem``: a network, explicit initial weights, inputs, targets, a learning
rate and a number of steps. It runs through the same contract as ``crosscheck run``
(``train`` and ``predict`` of every implementation), never through special code, and
``crosscheck example NAME`` shows the numbers a learner checks by hand: the prediction, the
error, every gradient, the weights after the first update and the prediction after it.
``crosscheck explain --example NAME`` explains the same problem term by term.

The tutorial's weights w1..w6 map onto our weight matrices, shaped (in, out) so that
``Z = A_prev @ W``, as follows (``W1[i, j]`` connects input ``i + 1`` to hidden neuron
``j + 1``)::

    W1 = [[w1, w3],     w1: input 1 -> hidden 1    w3: input 1 -> hidden 2
          [w2, w4]]     w2: input 2 -> hidden 1    w4: input 2 -> hidden 2
    W2 = [[w5],         w5: hidden 1 -> output
          [w6]]         w6: hidden 2 -> output

which reproduces the tutorial's forward pass: with inputs (2, 3), h1 = 2 w1 + 3 w2 = 0.85,
h2 = 2 w3 + 3 w4 = 0.48 and the prediction 0.85 w5 + 0.48 w6 = 0.191.

This module computes (``run``) and renders (``render``) separately; it imports no framework.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace

import numpy as np
from rich.console import Console
from rich.table import Table, box
from rich.text import Text

import implementations
from compare import agreement
from compare.recipe import Recipe
from implementations import numpy_manual
from implementations.contract import Network, Trajectory

#: How many rows of predictions the example table shows (the rest are summarised).
SHOWN_ROWS = 3


@dataclass(frozen=True)
class Problem:
    """Everything one training run needs, explicitly: what ``explain`` and ``run`` consume.

    Attributes:
        description: One line saying where the numbers come from.
        network: Widths and activations.
        weights: The initial weights, ``{"W1": (in, out), ...}``.
        X: Inputs, one row per example.
        Y: Targets, shaped like the network's output.
        lr: Learning rate.
        steps: Gradient-descent updates.
        weight_labels: Optional names for single weights, ``(label, weight, index)``, e.g.
            ``("w1", "W1", (0, 0))``; the example table uses them in place of ``W1[0, 0]``.
    """

    description: str
    network: Network
    weights: dict[str, np.ndarray]
    X: np.ndarray
    Y: np.ndarray
    lr: float
    steps: int
    weight_labels: tuple[tuple[str, str, tuple[int, int]], ...] = ()

    def labelled_weights(self) -> list[tuple[str, str, tuple[int, int]]]:
        """``(label, weight, index)`` for every single weight, the labels given or generated."""
        if self.weight_labels:
            return list(self.weight_labels)
        return [
            (f"{name}[{i}, {j}]", name, (i, j))
            for name, shape in self.network.param_shapes.items()
            for i in range(shape[0])
            for j in range(shape[1])
        ]


def problem_from_recipe(recipe: Recipe) -> Problem:
    """The problem ``crosscheck run`` trains for ``recipe``: its training rows and initial draw."""
    from compare import data, weights

    dataset = data.load(recipe)
    net = recipe.network(dataset.X_train.shape[1], dataset.Y_train.shape[1])
    return Problem(
        description=f"{recipe.dataset}: {len(dataset.X_train)} training rows, initial weights "
        f"drawn with seed {recipe.init_seed}, scale {recipe.init_scale:g}",
        network=net,
        weights=weights.initial_weights(net, recipe.init_seed, recipe.init_scale),
        X=dataset.X_train,
        Y=dataset.Y_train,
        lr=recipe.lr,
        steps=recipe.steps,
    )


@dataclass(frozen=True)
class Example:
    """A named worked example: explicit numbers, or a recipe drawn as ``crosscheck run`` does."""

    name: str
    summary: str
    source: Problem | Recipe

    def problem(self) -> Problem:
        """The explicit problem (loads the data set for a recipe)."""
        if isinstance(self.source, Recipe):
            return problem_from_recipe(self.source)
        return self.source


TUTORIAL_2_2_1 = Problem(
    description="the tutorial's 2-2-1 network, one example: inputs (2, 3), target 1",
    network=Network(widths=(2, 2, 1), activations=("identity", "identity")),
    # (in, out) layout: W1[i, j] feeds hidden neuron j + 1 from input i + 1 (module docstring).
    weights={"W1": np.array([[0.11, 0.12], [0.21, 0.08]]), "W2": np.array([[0.14], [0.15]])},
    X=np.array([[2.0, 3.0]]),
    Y=np.array([[1.0]]),
    lr=0.05,
    steps=1,
    weight_labels=(
        ("w1", "W1", (0, 0)),
        ("w2", "W1", (1, 0)),
        ("w3", "W1", (0, 1)),
        ("w4", "W1", (1, 1)),
        ("w5", "W2", (0, 0)),
        ("w6", "W2", (1, 0)),
    ),
)

EXAMPLES: dict[str, Example] = {
    example.name: example
    for example in (
        Example(
            "tutorial-2-2-1",
            "the tutorial's 2-2-1 network without activations, one step on one example",
            TUTORIAL_2_2_1,
        ),
        Example(
            "tutorial-2-2-1-sigmoid",
            "the same network and numbers with a sigmoid after each layer",
            replace(
                TUTORIAL_2_2_1,
                description=TUTORIAL_2_2_1.description + ", sigmoid activations",
                network=Network(widths=(2, 2, 1), activations=("sigmoid", "sigmoid")),
            ),
        ),
        Example(
            "iris-4-2-3",
            "the reference recipe: iris, 4-2-3 with sigmoids, 5000 steps (what `run` trains)",
            Recipe(),
        ),
    )
}


@dataclass
class ExampleResult:
    """What every framework computed on one problem.

    Attributes:
        problem: The problem run.
        dtype: The dtype every framework computed in.
        trajectories: Framework -> its training record.
        outputs: Framework -> network outputs at every recorded state shown: ``"before"`` (the
            initial weights), ``"after 1"`` (after the first update) and ``"after N"`` for the
            last state when ``N > 1``.
        unavailable: Framework -> why it could not run (not installed).
        comparisons: Framework -> ``compare_series`` facts over every number shown.
    """

    problem: Problem
    dtype: str
    trajectories: dict[str, Trajectory] = field(default_factory=dict)
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    comparisons: dict[str, dict[str, object]] = field(default_factory=dict)


def _states_shown(steps: int) -> list[int]:
    return [0, 1] if steps == 1 else [0, 1, steps]


def run(
    problem: Problem, dtype: str = "float64", frameworks=implementations.NAMES
) -> ExampleResult:
    """Train ``problem`` with every framework in this process and compare with the first one.

    A framework that is not installed is recorded in ``unavailable`` rather than raised.
    """
    result = ExampleResult(problem=problem, dtype=dtype)
    for name in frameworks:
        try:
            module = implementations.load(name)
        except implementations.FrameworkUnavailable as error:
            result.unavailable[name] = str(error)
            continue
        trajectory = module.train(
            problem.network, problem.weights, problem.X, problem.Y, problem.lr, problem.steps, dtype
        )
        result.trajectories[name] = trajectory
        result.outputs[name] = {
            _state_name(state): module.predict(
                problem.network,
                {w: trajectory.weights[w][state] for w in problem.network.param_names},
                problem.X,
                dtype,
            )
            for state in _states_shown(problem.steps)
        }
    names = list(result.trajectories)
    if names:
        reference = names[0]
        for name in names[1:]:
            result.comparisons[name] = agreement.compare_series(
                _everything(result, name),
                _everything(result, reference),
                agreement.TOLERANCES[dtype],
            )
    return result


def _state_name(state: int) -> str:
    return "before" if state == 0 else f"after {state}"


def _everything(result: ExampleResult, framework: str) -> np.ndarray:
    """Every number one framework computed, flattened into one step-less series."""
    trajectory = result.trajectories[framework]
    parts = [trajectory.losses]
    parts += [trajectory.grads[name].ravel() for name in result.problem.network.param_names]
    parts += [trajectory.weights[name].ravel() for name in result.problem.network.param_names]
    parts += [outputs.ravel() for outputs in result.outputs[framework].values()]
    return np.concatenate(parts)[None]


def _number(value: float) -> str:
    return f"{value:.10g}"


def rows(result: ExampleResult) -> list[tuple[str, list[float]]]:
    """The example table: ``(quantity, one value per framework)``, in reading order."""
    problem = result.problem
    names = list(result.trajectories)
    shown = min(SHOWN_ROWS, len(problem.X))
    single = problem.Y.size == 1

    def outputs(state: str, what: str, minus_target: bool) -> list[tuple[str, list[float]]]:
        lines = []
        for r in range(shown):
            for j in range(problem.Y.shape[1]):
                label = what if single else f"{what} (row {r}, output {j})"
                target = problem.Y[r, j] if minus_target else 0.0
                lines.append((label, [result.outputs[n][state][r, j] - target for n in names]))
        return lines

    table = outputs("before", "prediction", False)
    table += outputs("before", "error = prediction - target", True)
    table.append(("loss = sum(error^2) / (2 N)", [result.trajectories[n].losses[0] for n in names]))
    labelled = problem.labelled_weights()
    for label, weight, index in labelled:
        table.append(
            (f"dL/d{label}", [result.trajectories[n].grads[weight][(0, *index)] for n in names])
        )
    for label, weight, index in labelled:
        table.append(
            (
                f"{label} after step 1",
                [result.trajectories[n].weights[weight][(1, *index)] for n in names],
            )
        )
    table += outputs("after 1", "prediction after step 1", False)
    table.append(("loss after step 1", [result.trajectories[n].losses[1] for n in names]))
    if problem.steps > 1:
        last = f"after {problem.steps}"
        table += outputs(last, f"prediction {last} steps", False)
        table.append((f"loss {last} steps", [result.trajectories[n].losses[-1] for n in names]))
    return table


def render(console: Console, name: str, result: ExampleResult) -> None:
    """Print the example: what it is, the table of numbers per framework, and the agreement."""
    problem = result.problem
    console.print(f"crosscheck example {name}\n{problem.description}", soft_wrap=True, markup=False)
    console.print(
        f"network {problem.network.describe()}, lr {problem.lr:g}, {problem.steps} step"
        f"{'s' if problem.steps > 1 else ''}, {len(problem.X)} example"
        f"{'s' if len(problem.X) > 1 else ''}, {result.dtype}; "
        f"N = Y.size = {problem.Y.size}",
        soft_wrap=True,
        markup=False,
    )
    if problem.weight_labels:
        named = [
            f"{label} = {w}[{i}, {j}] = {problem.weights[w][i, j]:g}"
            for label, w, (i, j) in problem.weight_labels
        ]
        lines = [", ".join(named[k : k + 3]) for k in range(0, len(named), 3)]
        console.print(
            "initial weights: "
            + ",\n                 ".join(lines)
            + "\n(W is shaped (in, out): W1[i, j] feeds hidden neuron j+1 from input i+1)",
            soft_wrap=True,
            markup=False,
        )
    console.print("step 1 updates every weight w to w - lr dL/dw", markup=False)
    if len(problem.X) > SHOWN_ROWS:
        console.print(f"predictions: the first {SHOWN_ROWS} of {len(problem.X)} rows")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("quantity")
    for framework in result.trajectories:
        table.add_column(framework, justify="right")
    for quantity, values in rows(result):
        table.add_row(Text(quantity), *(_number(v) for v in values))
    console.print(table)
    names = list(result.trajectories)
    for framework, facts in result.comparisons.items():
        verdict = "agrees with" if facts["first_failing_step"] is None else "DIFFERS from"
        console.print(
            f"{framework} {verdict} {names[0]} on all {facts['total']} numbers computed: "
            f"largest difference {facts['max_abs']:.2g}, {facts['mismatched']} outside tolerance",
            soft_wrap=True,
            markup=False,
        )
    for framework, message in result.unavailable.items():
        console.print(f"{framework}: not run: {message}", soft_wrap=True, markup=False)


def add_parser(commands) -> None:
    """Register ``crosscheck example``."""
    parser = commands.add_parser(
        "example",
        help="run a built-in worked example through every framework and show the numbers",
        description="Run a worked example (explicit weights, inputs and targets) through NumPy, "
        "PyTorch and JAX, and show the prediction, the error, every gradient, the updated "
        "weights and the prediction after the update.",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the example to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the worked examples")
    parser.add_argument(
        "--dtype",
        choices=numpy_manual.DTYPES,
        default="float64",
        help="dtype every framework computes in (default: %(default)s)",
    )
    parser.set_defaults(handler=_example)


def lookup(name: str) -> Example:
    """The example called ``name``; ``KeyError`` with a one-line message if there is none."""
    if name not in EXAMPLES:
        raise KeyError(f"unknown example {name!r}; choose from {', '.join(EXAMPLES)}")
    return EXAMPLES[name]


def _example(args: argparse.Namespace, console: Console) -> int:
    from compare.cli import EXIT_AGREE, EXIT_DISAGREE, UsageError

    if args.list:
        for example in EXAMPLES.values():
            console.print(f"{example.name:<24} {example.summary}", soft_wrap=True)
        return EXIT_AGREE
    if args.name is None:
        raise UsageError("name an example, or use --list to see them")
    try:
        example = lookup(args.name)
    except KeyError as error:
        raise UsageError(error.args[0]) from None
    result = run(example.problem(), args.dtype)
    render(console, example.name, result)
    agree = all(facts["first_failing_step"] is None for facts in result.comparisons.values())
    return EXIT_AGREE if agree else EXIT_DISAGREE
