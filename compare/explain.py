"""``crosscheck explain``'s facts: one training step, term by term, in every framework.

For step ``k`` of a recipe this computes what the explain document shows: the forward pass;
the loss and its own derivative, with the constants that torch's graph and JAX's jaxpr carry
(``2.0`` and ``780`` for the tutorial's half-MSE) linked to NumPy's ``(A2 - Y) / (R O)``; the
chain-rule factors the NumPy implementation writes by hand, one per line, for every layer
(biases' gradients included); the optimizer's update of step ``k`` line by line with its
state (momentum buffer, Adam's moments, bias corrections, the step count); the autograd graph
torch recorded, its constants labelled; the jaxpr JAX traced, its variables named after
``A1``, ``A2``, ``delta2``, ...; and whether the frameworks agree.

Steps count from 0: step ``k`` takes its loss and gradient at state ``k`` (the parameters
before update ``k``) on batch ``k``, and its update turns state ``k`` into state ``k + 1``
(``compare.examples.STEP_CONVENTION``).

Judging is ``compare.check``'s: ``explain`` checks the recipe cut to ``k + 1`` updates in
synced mode, so every framework's loss, gradients and whole update are compared with the
reference's at every step up to ``k`` (the verdict), and the reference's state ``k`` comes out
of that same run. The values the views show (each implementation's ``autodiff_view``, a code
path of its own) are compared with NumPy's at step ``k`` by the same synced rule
(``compare.tolerances.synced``) and the same comparison record (``compare.agreement``).

This module returns data; ``compare.present.explain`` words and lays it out. It imports no
framework: implementations come from the registry or are given as ``modules``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

import implementations
from compare import data, quantities
from compare.agreement import Comparison, RunningMax, SeriesAccumulator
from compare.check import CheckResult, check
from compare.recipe import Recipe
from compare.tolerances import synced
from implementations.contract import Problem, grad_quantity, param_quantity

#: The frameworks explained: the hand-written reference and the two autodiff systems.
FRAMEWORKS = ("numpy", "torch", "jax")

#: What every view is judged against.
REFERENCE = "numpy"


class ExplainError(ValueError):
    """A step or row count ``explain`` cannot show; the message is one line."""


@dataclass(frozen=True)
class Value:
    """One named value of the step.

    Attributes:
        label: Its name in the chain rule: ``"Z1"``, ``"dL/dA2"``, ``"delta1 = dL/dZ1"``.
        formula: How it is computed from the values above it.
        value: The array (float64), or a number.
        note: What the reader should know besides (``"element by element"``).
    """

    label: str
    formula: str
    value: np.ndarray
    note: str = ""


@dataclass(frozen=True)
class LayerFactors:
    """The backward pass through one layer, in the order the chain rule applies it.

    Attributes:
        layer: The layer's number (1 = nearest the input).
        activation: Its activation's name.
        values: ``dL/dA``, ``dA/dZ``, ``delta``, ``dL/dW`` and ``dL/db`` (with biases); the
            layer beneath starts from its own ``dL/dA = delta @ W^T``.
    """

    layer: int
    activation: str
    values: list[Value]


@dataclass(frozen=True)
class Constant:
    """A number the autodiff frameworks carry in their graphs, and what it is.

    Attributes:
        value: The number (``780.0``).
        expression: It in the recipe's terms (``"2 R O"``).
        arithmetic: The expression worked out (``"2 x 130 x 3"``), or ``""``.
        meaning: What it does (``"the loss's divisor"``).
        operation: The primitive that applies it (``"div"``, ``"mul"``), by which a jaxpr
            line's literal is told apart from another constant of the same value; ``""``: any.
        in_torch: Whether torch's graph carries it as an input (a divisor does; the square's
            2 lives inside ``MseLossBackward``).
    """

    value: float
    expression: str
    arithmetic: str
    meaning: str
    operation: str = ""
    in_torch: bool = True


@dataclass(frozen=True)
class LossLink:
    """The loss, its derivative, and how the frameworks' forms of it are the same thing.

    Attributes:
        name: The loss's name.
        formula: NumPy's formula of the loss.
        derivative: NumPy's formula of ``dL/dA`` of the last layer.
        rows: ``R``, the rows of the batch shown.
        outputs: ``O``, the network's outputs.
        constants: The numbers torch's graph and JAX's jaxpr carry.
        autodiff_form: The derivative as autodiff builds it from those numbers
            (``"2.0 (A2 - Y) / 780"``).
        same_as: Why that is NumPy's derivative (``"(A2 - Y) / 390 = (A2 - Y) / (R O)"``).
    """

    name: str
    formula: str
    derivative: str
    rows: int
    outputs: int
    constants: tuple[Constant, ...]
    autodiff_form: str
    same_as: str


@dataclass(frozen=True)
class UpdateLine:
    """One line of the optimizer's update of one parameter.

    Attributes:
        parameter: ``"W1"``, ``"b1"``, ...
        name: The value's name in the NumPy implementation (``"m"``, ``"denom"``,
            ``"p_next"``).
        formula: How it is computed.
        value: The array, or a number (the bias corrections and Adam's step size are one
            number per step).
    """

    parameter: str
    name: str
    formula: str
    value: np.ndarray | float


@dataclass(frozen=True)
class Update:
    """The optimizer's update of the step explained: state ``k`` -> state ``k + 1``.

    Attributes:
        optimizer: Its name.
        t: The update's number counted from 1, as Adam's bias corrections use it (``None``
            for plain SGD, which keeps no count).
        settings: Hyperparameter -> value (lr, momentum, beta1, ...).
        before: Parameter -> ``{"p": value at state k, "grad": its gradient, buffer: value at
            state k}``.
        lines: Every line of the update, parameter by parameter, in the order computed.
    """

    optimizer: str
    t: float | None
    settings: dict[str, float | bool]
    before: dict[str, dict[str, np.ndarray]]
    lines: list[UpdateLine]


@dataclass
class View:
    """What one autodiff framework built and computed (its ``autodiff_view``).

    Attributes:
        framework: Registry name.
        title: The view's own title.
        unavailable: Why it could not run (not installed, no ``autodiff_view``), else ``None``.
        loss: The loss it computed.
        grads: Parameter -> gradient.
        graph: The graph's lines (torch: the autograd graph, constants labelled; JAX: the
            jaxpr, each named variable's line marked with its name).
        names: JAX: jaxpr variable -> what it is (``"A2"``, ``"delta1"``); torch: empty.
        constants: The ``Constant``s found in the graph, in order of first appearance.
    """

    framework: str
    title: str = ""
    unavailable: str | None = None
    loss: float = math.nan
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    graph: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    constants: list[Constant] = field(default_factory=list)


@dataclass
class Explanation:
    """Everything ``crosscheck explain`` shows, computed.

    Attributes:
        title: What is explained (a recipe, or an example's name).
        recipe: The recipe explained (its full length, not the cut checked).
        problem: Its problem (network, optimizer, dtype, batches).
        step: The step explained.
        batch_rows: The training rows of batch ``step``.
        rows: The rows shown, the first ``len(rows)`` of ``batch_rows``.
        forward: ``A0 = X``, then ``Z`` and ``A`` of every layer.
        loss: The loss's value on the rows shown.
        link: The loss, its derivative and the frameworks' constants.
        layers: The backward pass, output layer first.
        grads: NumPy's gradients, parameter -> array.
        update: The optimizer's update of step ``step``.
        views: ``"torch"`` and ``"jax"``: what each built.
        shown: The views' loss and gradients against NumPy's, at step ``step``, one
            ``Comparison`` per framework and quantity.
        check: ``compare.check``'s result on the recipe cut to ``step + 1`` updates (synced).
    """

    title: str
    recipe: Recipe
    problem: Problem
    step: int
    batch_rows: np.ndarray
    rows: np.ndarray
    forward: list[Value]
    loss: float
    link: LossLink
    layers: list[LayerFactors]
    grads: dict[str, np.ndarray]
    update: Update
    views: dict[str, View]
    shown: list[Comparison]
    check: CheckResult

    @property
    def verdict(self) -> str:
        """``"pass"`` when ``check`` passes and every value shown agrees, else ``"fail"``."""
        shown_ok = all(c.passed for c in self.shown)
        return "pass" if self.check.verdict == "pass" and shown_ok else "fail"


def check_request(recipe: Recipe, step: int, rows: int | None, batch_rows: int) -> None:
    """Refuse, in one line, a step or row count that ``explain`` cannot show.

    Args:
        recipe: The recipe.
        step: The step asked for.
        rows: The rows asked for (``None``: the whole batch).
        batch_rows: Rows in the recipe's batches.

    Raises:
        ExplainError: ``step`` is not one of the recipe's updates, or ``rows`` is not in
            ``[1, batch_rows]``.
    """
    if not 0 <= step < recipe.steps:
        raise ExplainError(
            f"--step {step} is out of range: steps count from 0 and this recipe makes "
            f"{recipe.steps} update{'s' if recipe.steps != 1 else ''}, so K must be in "
            f"[0, {recipe.steps - 1}]"
        )
    if rows is not None and not 1 <= rows <= batch_rows:
        raise ExplainError(f"--rows {rows} is out of range: a batch has {batch_rows} rows")


def explain(
    recipe: Recipe,
    *,
    title: str | None = None,
    step: int = 0,
    rows: int | None = None,
    frameworks: Sequence[str] = FRAMEWORKS,
    modules: Mapping[str, ModuleType] | None = None,
    isolate: bool = False,
) -> Explanation:
    """Compute step ``step`` of ``recipe`` term by term in every framework.

    Args:
        recipe: What is trained.
        title: What to call it (default: the data set's name and "recipe").
        step: The step: its loss and gradient at state ``step``, its update into
            ``step + 1``.
        rows: Show the step on the first ``rows`` rows of its batch only (the loss and
            gradients shown are then those of these rows; ``check`` judges the whole batches).
        frameworks: The frameworks whose views are shown besides NumPy's.
        modules: Framework name -> module to use instead of the registry's.
        isolate: Run ``check``'s frameworks in worker processes (default: in this one, which
            imports them for the views anyway).

    Raises:
        ExplainError: as ``check_request``.
        RecipeError, FrameworkUnavailable, WorkerError: as ``compare.check``.
    """
    modules = dict(modules or {})
    dataset = data.load(recipe)
    problem = recipe.problem(dataset)
    check_request(recipe, step, rows, _batch_size(problem))
    names = tuple(dict.fromkeys((REFERENCE, *frameworks)))
    missing = _unavailable(names[1:], modules)
    running = tuple(name for name in names if name not in missing)
    if len(running) < 2 and missing:
        # Nothing left to compare with: the one line says what to install.
        raise implementations.FrameworkUnavailable(next(iter(missing.values())))
    if not isolate:
        # Threads that import torch and JAX at the same time can break CPython's compiler
        # ("AST constructor recursion depth mismatch"); import them here, one at a time.
        for name in running:
            if name not in modules:
                implementations.load(name)
    result = check(
        recipe.replace(steps=step + 1),
        frameworks=running,
        reference=REFERENCE,
        mode="synced",
        trajectories=True,
        oracles=False,
        modules=modules or None,
        isolate=isolate,
    )
    reference = result.trajectories[REFERENCE]
    state = {q: _at(problem, reference, q, step) for q in problem.state_names()}
    params = {name: state[param_quantity(name)][0] for name in problem.network.param_names}
    batch_rows = problem.batches.indices(step)
    shown_rows = batch_rows if rows is None else batch_rows[:rows]
    X = dataset.X_train[shown_rows]
    Y = dataset.Y_train[shown_rows]

    numpy_module = modules.get(REFERENCE) or implementations.load(REFERENCE)
    factors_view = numpy_module.autodiff_view(problem, params, X, Y, state=state)
    factors = factors_view["factors"]
    link = loss_link(
        problem,
        len(shown_rows),
        factors["loss"]["formula"],
        factors["loss"]["derivative_formula"],
    )
    views = {
        name: View(name, unavailable=missing[name])
        if name in missing
        else _view(name, modules, problem, params, X, Y, link)
        for name in names[1:]
    }
    grads = {name: np.asarray(g, dtype=np.float64) for name, g in factors_view["grads"].items()}
    shown = _shown_agreement(problem, reference, step, len(shown_rows), factors_view, views)
    return Explanation(
        title=title or f"{dataset.name} recipe",
        recipe=recipe,
        problem=problem,
        step=step,
        batch_rows=batch_rows,
        rows=shown_rows,
        forward=_forward(problem, X, params, factors),
        loss=float(factors["loss"]["value"]),
        link=link,
        layers=_layers(problem, factors),
        grads=grads,
        update=_update(problem, state, grads, factors["update"]),
        views=views,
        shown=shown,
        check=result,
    )


def _unavailable(names: Sequence[str], modules: Mapping[str, ModuleType]) -> dict[str, str]:
    """Framework -> why it cannot run (not installed), for those that cannot: their sections
    say so, and the others are explained and judged without them."""
    missing = {}
    for name in names:
        if name in modules:
            continue
        try:
            implementations.check_available(name)
        except implementations.FrameworkUnavailable as error:
            missing[name] = str(error)
    return missing


def _batch_size(problem: Problem) -> int:
    batches = problem.batches
    return batches.rows if batches.full else batches.size


def _at(
    problem: Problem, trajectory: Mapping[str, np.ndarray], quantity: str, state: int
) -> np.ndarray:
    """A state quantity at ``state``, with the contract's point axis of one: ``(1, ...)``."""
    name = quantities.parameter(quantity)
    shape = problem.network.param_shapes[name] if name is not None else ()
    return np.asarray(trajectory[quantity], dtype=np.float64)[state].reshape(1, *shape)


def _in_terms_of(formula: str, layer: int | None) -> str:
    """A rule written in ``Z`` and ``A`` for layer ``layer``: ``A (1 - A)`` -> ``A1 (1 - A1)``."""
    if layer is None:
        return formula
    return re.sub(r"\b([ZA])\b", lambda m: f"{m.group(1)}{layer}", formula)


def _forward(problem: Problem, X: np.ndarray, params, factors: dict) -> list[Value]:
    net = problem.network
    values = [Value("A0", "X, the input rows", X)]
    for f in factors["forward"]:
        n = f["layer"]
        values.append(
            Value(f"W{n}", "the weights at this state, shaped (in, out)", params[f"W{n}"])
        )
        bias = ""
        if net.biases:
            values.append(
                Value(f"b{n}", "the biases at this state, shaped (out,)", params[f"b{n}"])
            )
            bias = f" + b{n}"
        values.append(Value(f"Z{n}", f"A{n - 1} @ W{n}{bias}", np.asarray(f["Z"])))
        rule = _in_terms_of(f["formula"], n)
        values.append(Value(f"A{n}", f"{f['activation']}(Z{n}) = {rule}", np.asarray(f["A"])))
    return values


def _layers(problem: Problem, factors: dict) -> list[LayerFactors]:
    net = problem.network
    last = net.layers
    loss_derivative = _in_terms_of(factors["loss"]["derivative_formula"], last)
    out = []
    for f in reversed(factors["layers"]):
        n = f["layer"]
        incoming = loss_derivative if n == last else f"delta{n + 1} @ W{n + 1}^T"
        values = [
            Value(f"dL/dA{n}", incoming, np.asarray(f["dL_dA"])),
            Value(
                f"dA{n}/dZ{n}",
                f"{f['activation']}'(Z{n}) = " + _in_terms_of(f["derivative_formula"], n),
                np.asarray(f["dA_dZ"]),
            ),
            Value(
                f"delta{n} = dL/dZ{n}",
                f"dL/dA{n} * dA{n}/dZ{n}",
                np.asarray(f["delta"]),
                note="element by element",
            ),
            Value(f"dL/dW{n}", f"A{n - 1}^T @ delta{n}", np.asarray(f["dL_dW"])),
        ]
        if f["dL_db"] is not None:
            values.append(
                Value(f"dL/db{n}", f"delta{n} summed over the rows", np.asarray(f["dL_db"]))
            )
        out.append(LayerFactors(n, f["activation"], values))
    return out


def loss_link(problem: Problem, rows: int, formula: str, derivative: str) -> LossLink:
    """The loss of ``problem`` on ``rows`` rows, its derivative, and the constants that the
    autodiff frameworks' graphs carry for it, each explained.

    Args:
        problem: The problem.
        rows: ``R``, the rows of the batch shown.
        formula: The loss's formula in ``A`` and ``Y`` (the NumPy implementation's).
        derivative: ``dL/dA`` in ``A`` and ``Y`` (the NumPy implementation's).
    """
    net = problem.network
    loss, last, outputs = net.loss, net.layers, net.widths[-1]
    A = f"A{last}"
    size = rows * outputs
    ro = f"{rows} x {outputs}"
    square = Constant(
        2.0, "2", "", "the square's derivative, d/dA (A - Y)^2 = 2 (A - Y)", "mul", in_torch=False
    )
    if loss == "half-mse":
        divisor = Constant(2.0 * size, "2 R O", f"2 x {ro}", "the loss's divisor", "div")
        constants = (square, divisor)
        form = f"2.0 ({A} - Y) / {_number(2.0 * size)}"
        same = f"({A} - Y) / {_number(size)} = ({A} - Y) / (R O), NumPy's dL/d{A}"
    elif loss == "mse":
        constants = (square, Constant(float(size), "R O", ro, "the loss's divisor", "div"))
        form = f"2.0 ({A} - Y) / {_number(size)}"
        same = f"2 ({A} - Y) / (R O), NumPy's dL/d{A}"
    elif loss == "half-sse":
        divisor = Constant(
            2.0, "2", "", "the loss's divisor, the 1/2 of E = 1/2 sum (t - o)^2", "div"
        )
        constants = (square, divisor)
        form = f"2.0 ({A} - Y) / 2"
        same = f"{A} - Y, NumPy's dL/d{A} (the two 2s cancel)"
    elif loss == "cross-entropy":
        constants = (Constant(float(rows), "R", str(rows), "the mean over the rows", "div"),)
        form = f"(softmax({A}) - Y) / {rows}"
        same = f"(softmax({A}) - Y) / R, NumPy's dL/d{A} (rows of Y summing to 1)"
    else:
        constants = (
            Constant(float(size), "R O", ro, "the mean over every element", "div"),
            Constant(-100.0, "-100", "", "the floor each log is clamped at", in_torch=False),
        )
        form = f"({A} - Y) / ({A} (1 - {A})) / {_number(size)}"
        same = f"NumPy's dL/d{A} = (A - Y) / (A (1 - A)) / (R O)"
    return LossLink(
        name=loss,
        formula=_in_terms_of(formula, last),
        derivative=_in_terms_of(derivative, last),
        rows=rows,
        outputs=outputs,
        constants=constants,
        autodiff_form=form,
        same_as=same,
    )


def _number(value: float) -> str:
    return f"{value:g}"


def _update(problem: Problem, state, grads, update: dict) -> Update:
    opt = problem.optimizer
    settings: dict[str, float | bool] = {"lr": opt.lr}
    if opt.name == "momentum":
        settings.update(momentum=opt.momentum, dampening=opt.dampening, nesterov=opt.nesterov)
    if opt.name in ("adam", "adamw"):
        settings.update(beta1=opt.beta1, beta2=opt.beta2, eps=opt.eps)
    settings["weight_decay"] = opt.weight_decay
    before: dict[str, dict[str, np.ndarray]] = {}
    lines: list[UpdateLine] = []
    for name in problem.network.param_names:
        before[name] = {"p": state[param_quantity(name)][0], "grad": grads[name]}
        for kind in opt.state_kinds():
            before[name][kind] = state[f"state:{kind}:{name}"][0]
        values = update["values"][name]
        for value_name, formula in update["lines"]:
            if value_name in values:
                lines.append(UpdateLine(name, value_name, formula, values[value_name]))
    return Update(opt.name, update["t"], settings, before, lines)


def _view(
    name: str,
    modules: Mapping[str, ModuleType],
    problem: Problem,
    params,
    X: np.ndarray,
    Y: np.ndarray,
    link: LossLink,
) -> View:
    """One framework's ``autodiff_view``; one that is missing is reported, not raised."""
    try:
        module = modules.get(name) or implementations.load(name)
    except implementations.FrameworkUnavailable as error:
        return View(name, unavailable=str(error))
    if not hasattr(module, "autodiff_view"):
        return View(name, unavailable=f"{name} provides no autodiff_view")
    raw = module.autodiff_view(problem, params, X, Y)
    grads = {
        p: np.asarray(g, dtype=np.float64).reshape(problem.network.param_shapes[p])
        for p, g in raw["grads"].items()
    }
    view = View(name, title=raw.get("title", name), loss=float(raw["loss"]), grads=grads)
    if "jaxpr" in raw:
        view.names = {var: _chain_rule_name(n) for var, n in (raw.get("names") or {}).items()}
        view.graph, view.constants = _named_jaxpr(
            str(raw["jaxpr"]), view.names, link.constants, f"A{problem.network.layers}"
        )
    elif "nodes" in raw and hasattr(module, "graph_lines"):
        view.graph, view.constants = _torch_graph(module, raw["nodes"], link.constants)
    else:
        view.graph = str(raw.get("text", "")).splitlines()
    return view


def _chain_rule_name(name: str) -> str:
    """An implementation's name for a value in this document's notation: ``dL_dA2`` ->
    ``dL/dA2``, ``dA_dZ1`` -> ``dA1/dZ1`` (several names, comma-separated, each converted)."""
    names = []
    for part in name.split(", "):
        part = re.sub(r"^dA_dZ(\d+)$", r"dA\1/dZ\1", part)
        names.append(re.sub(r"^dL_d", "dL/d", part))
    return ", ".join(names)


#: A jaxpr equation's first line, ``    e:f64[1,2] = add c d``: the variables it defines and
#: its primitive.
_EQUATION = re.compile(r"^\s+((?:[a-z_]+:\S+\s)+)=\s+([a-z_]+)")

#: A floating-point literal in a jaxpr line (``780.0``, ``780.0:f64[]``, ``1e-08``); integers
#: (shapes, axes) never match.
_LITERAL = re.compile(r"(?<![\w.])(-?\d+\.\d*(?:e[+-]?\d+)?|-?\d+e[+-]?\d+)(?![\w.])")


def _named_jaxpr(
    jaxpr: str, names: Mapping[str, str], constants: Sequence[Constant], output: str
) -> tuple[list[str], list[Constant]]:
    """The jaxpr's lines, each equation that defines a named variable marked with its name (and
    the one that subtracts Y from ``output``, the network's output, marked as the error), each
    literal that is one of the loss's constants marked with what it is; and the constants found,
    in order of first appearance."""
    found: list[Constant] = []
    lines = []
    by_name = {name: var for var, joined in names.items() for name in joined.split(", ")}
    for line in jaxpr.splitlines():
        notes = []
        match = _EQUATION.match(line)
        if match:
            defined = [token.split(":", 1)[0] for token in match.group(1).split()]
            notes += [f"{var} = {names[var]}" for var in defined if var in names]
            operands = [token.split(":", 1)[0] for token in line[match.end() :].split()]
            if match.group(2) == "sub" and operands == [by_name.get(output), by_name.get("Y")]:
                # The output's error, which the squared-error losses square and the 2.0 scales.
                notes += [f"{var} = {output} - Y" for var in defined if var not in names]
            for text in _LITERAL.findall(line[match.end() :]):
                constant = _constant(float(text), match.group(2), constants)
                if constant is not None:
                    notes.append(f"{text} = {_described(constant)}")
                    if constant not in found:
                        found.append(constant)
        lines.append(f"{line}    # {'; '.join(dict.fromkeys(notes))}" if notes else line)
    return lines, found


def _constant(value: float, operation: str, constants: Sequence[Constant]) -> Constant | None:
    """The constant of this value applied by ``operation`` (one of any operation otherwise)."""
    matching = [c for c in constants if math.isclose(value, c.value, rel_tol=1e-12)]
    for constant in matching:
        if constant.operation == operation:
            return constant
    return next((c for c in matching if not c.operation), None)


def _torch_graph(
    module: ModuleType, nodes: Sequence, constants: Sequence[Constant]
) -> tuple[list[str], list[Constant]]:
    """torch's graph lines, laid out by the implementation's own ``graph_lines``, each constant
    entering the graph labelled as the loss's constant it is."""
    entering = [c for c in constants if c.in_torch]
    found: list[Constant] = []
    values = [n.value for n in nodes if getattr(n, "input", None) == "constant"]
    for value in values:
        for constant in entering:
            if math.isclose(float(value), constant.value, rel_tol=1e-12) and constant not in found:
                found.append(constant)
    note = f" = {_described(found[0])}" if len(found) == 1 else ""
    return list(module.graph_lines(nodes, note)), found


def _described(constant: Constant) -> str:
    """``2 R O = 2 x 130 x 3, the loss's divisor``; ``the square's derivative, ...`` for a
    constant that is its own expression."""
    if constant.expression == _number(constant.value):
        return constant.meaning
    worked = f" = {constant.arithmetic}" if constant.arithmetic else ""
    return f"{constant.expression}{worked}, {constant.meaning}"


def _shown_agreement(
    problem: Problem,
    reference: Mapping[str, np.ndarray],
    step: int,
    rows: int,
    numpy_view: dict,
    views: Mapping[str, View],
) -> list[Comparison]:
    """Each view's loss and gradients against NumPy's at step ``step``, by the synced rule
    ``compare.check`` uses: rtol from the dtype and the batch's rows, atol from the running
    maximum of the reference's magnitude over states ``0..step``."""
    rule = synced(problem.dtype, rows)
    expected = {"loss": np.asarray(numpy_view["loss"], dtype=np.float64)}
    for name, grad in numpy_view["grads"].items():
        expected[grad_quantity(name)] = np.asarray(grad, dtype=np.float64).reshape(
            problem.network.param_shapes[name]
        )
    scale: dict[str, float] = {}
    for quantity, value in expected.items():
        running = RunningMax()
        history = np.asarray(reference[quantity], dtype=np.float64)[: step + 1]
        running.update(history.reshape(step + 1, -1))
        # The rows shown may be fewer than the batch's: their own magnitude counts too.
        scale[quantity] = max(running.value, float(np.max(np.abs(value), initial=0.0)))
    comparisons = []
    for view in views.values():
        if view.unavailable:
            continue
        actual = {"loss": np.asarray(view.loss)}
        actual.update({grad_quantity(p): g for p, g in view.grads.items()})
        for quantity, value in expected.items():
            accumulator = SeriesAccumulator(problem.dtype, step)
            accumulator.add(
                np.array([step]),
                np.asarray(actual[quantity])[None],
                value[None],
                rule.atol_at(np.array([scale[quantity]])),
                rule.rtol,
            )
            comparisons.append(
                Comparison(
                    framework=view.framework,
                    against=REFERENCE,
                    mode="synced",
                    quantity=quantity,
                    rtol=rule.rtol,
                    **accumulator.facts(),
                )
            )
    return comparisons
