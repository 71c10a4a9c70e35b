"""``crosscheck explain``: one training step, term by term, in all three frameworks.

For one step it shows the forward pass (Z and A of every layer), the backward pass the NumPy
implementation writes by hand (one named chain-rule factor per line, with its formula), the
autograd graph PyTorch recorded for the loss, the jaxpr JAX traced for the gradient function,
each framework's gradients, and whether they agree.

Computing and printing are separate: ``explain`` returns an ``Explanation`` (data only),
``document`` arranges it into blocks, and ``to_text`` / ``to_markdown`` format the blocks. The
framework-specific work (walking ``grad_fn``, ``jax.make_jaxpr``) lives in the implementations
(``autograd_graph``, ``gradient_jaxpr``), which hand back NumPy arrays and text, so this module
imports no framework; one that is not installed is reported in the output, not raised.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass, field, replace

import numpy as np
from rich.console import Console

import implementations
from compare import agreement, examples
from compare.recipe import Recipe
from implementations import numpy_manual
from implementations.contract import Network

#: Width the plain-text output is laid out for.
WIDTH = 100

#: Arrays with more elements than this print NumPy-style, first and last rows only.
SUMMARY_THRESHOLD = 60

#: What each autograd node does, for the reader of the graph (matched by name prefix).
NODE_MEANINGS = {
    "DivBackward": "divide by 2N",
    "SumBackward": "sum over every element",
    "PowBackward": "square the error",
    "SubBackward": "subtract the target: A - Y",
    "SigmoidBackward": "A = sigmoid(Z); backward: times A (1 - A)",
    "MmBackward": "Z = A_prev @ W; backward: times W^T and A_prev^T",
    "AccumulateGrad": "stores the gradient in",
}


@dataclass
class Factor:
    """One named value of the forward or backward pass.

    Attributes:
        name: What it is called in the chain rule, e.g. ``"dL/dA2"``.
        formula: How it is computed from the values above it.
        value: The array.
        note: Anything the reader should know (e.g. "element by element").
    """

    name: str
    formula: str
    value: np.ndarray
    note: str = ""


@dataclass
class FrameworkView:
    """What one autodiff framework built and computed.

    Attributes:
        framework: Registry name.
        unavailable: Why it could not run (not installed), else ``None``.
        loss: The loss it computed.
        grads: ``{"W1": dL/dW1, ...}``.
        graph: Torch: ``GraphNode`` tuples from ``autograd_graph``; JAX: the jaxpr lines.
        inputs: JAX: the jaxpr's inputs in order.
    """

    framework: str
    unavailable: str | None = None
    loss: float = float("nan")
    grads: dict[str, np.ndarray] = field(default_factory=dict)
    graph: list = field(default_factory=list)
    inputs: tuple[str, ...] = ()


@dataclass
class Agreement:
    """How one framework's value of one quantity compares with NumPy's (``compare_series``)."""

    quantity: str
    framework: str
    facts: dict[str, object]
    tolerance: agreement.Tolerance

    @property
    def passed(self) -> bool:
        """Every element within tolerance."""
        return self.facts["first_failing_step"] is None


@dataclass
class Explanation:
    """Everything ``crosscheck explain`` shows, computed.

    Attributes:
        title: What is explained (the recipe or example).
        problem: The problem (network, initial weights, data, lr).
        step: The step explained: the gradient at the weights before update ``step``.
        rows: Rows of the batch used (the first ``rows`` of the problem's rows).
        total_rows: Rows the problem trains on.
        dtype: The dtype everything computed in.
        weights: The weights at ``step``.
        forward: Forward-pass values, input first.
        loss: NumPy's loss.
        backward: NumPy's chain-rule factors, output side first.
        grads: NumPy's gradients, ``{"W1": ...}``.
        views: ``"torch"`` and ``"jax"``.
        agreements: One per framework and quantity.
    """

    title: str
    problem: examples.Problem
    step: int
    rows: int
    total_rows: int
    dtype: str
    weights: dict[str, np.ndarray]
    forward: list[Factor]
    loss: float
    backward: list[Factor]
    grads: dict[str, np.ndarray]
    views: dict[str, FrameworkView]
    agreements: list[Agreement]


def _activation_formula(activation: str, layer: int) -> tuple[str, str]:
    """``(forward rule, derivative rule)`` of an activation, for layer ``layer``."""
    if activation == "sigmoid":
        return f"sigmoid(Z{layer})", f"sigmoid'(Z{layer}) = A{layer} (1 - A{layer})"
    return f"Z{layer} (identity: no activation)", f"1 everywhere (identity: A{layer} = Z{layer})"


def check_request(problem: examples.Problem, step: int, rows: int | None, dtype: str) -> None:
    """Raise ``ValueError`` (one line) unless ``explain`` can show this step, rows and dtype."""
    if not 0 <= step < problem.steps:
        raise ValueError(f"step must be in [0, {problem.steps}) (the recipe's steps), got {step}")
    if rows is not None and not 1 <= rows <= len(problem.X):
        raise ValueError(f"rows must be in [1, {len(problem.X)}], got {rows}")
    if dtype not in numpy_manual.DTYPES:
        raise ValueError(f"explain computes in {', '.join(numpy_manual.DTYPES)}, not {dtype}")


def explain(
    problem: examples.Problem,
    *,
    title: str,
    step: int = 0,
    rows: int | None = None,
    dtype: str = "float64",
) -> Explanation:
    """Compute one training step of ``problem`` in every framework, factor by factor.

    Args:
        problem: What is trained.
        title: What to call it in the output.
        step: Which step: the weights are those after ``step`` full-batch NumPy updates.
        rows: Use only the first ``rows`` rows of the batch for the step shown (all by default).
        dtype: The dtype every framework computes in.

    Raises:
        ValueError: as ``check_request``.
    """
    check_request(problem, step, rows, dtype)
    total_rows = len(problem.X)
    rows = total_rows if rows is None else rows
    net = problem.network
    weights = problem.weights
    if step > 0:
        trajectory = numpy_manual.train(
            net, problem.weights, problem.X, problem.Y, problem.lr, step, dtype
        )
        weights = trajectory.final_weights()
    X = np.asarray(problem.X[:rows], dtype=dtype)
    Y = np.asarray(problem.Y[:rows], dtype=dtype)
    W = {name: np.asarray(w, dtype=dtype) for name, w in weights.items()}

    layers = numpy_manual.forward(net, W, X)
    gradients = numpy_manual.backward(net, W, X, Y, layers)
    loss = float(numpy_manual.loss(layers[-1].A, Y))
    grads = {name: g.dL_dW for name, g in zip(net.param_names, gradients, strict=True)}
    views = {
        "torch": _framework_view("torch", net, W, X, Y, dtype),
        "jax": _framework_view("jax", net, W, X, Y, dtype),
    }
    tolerance = agreement.TOLERANCES[dtype]
    agreements = []
    for view in views.values():
        if view.unavailable:
            continue
        pairs = [("loss", view.loss, loss)]
        pairs += [(f"dL/d{name}", view.grads[name], grads[name]) for name in net.param_names]
        for quantity, actual, expected in pairs:
            facts = agreement.compare_series(
                np.asarray(actual)[None], np.asarray(expected)[None], tolerance
            )
            agreements.append(Agreement(quantity, view.framework, facts, tolerance))
    return Explanation(
        title=title,
        problem=replace(problem, X=X, Y=Y),
        step=step,
        rows=rows,
        total_rows=total_rows,
        dtype=dtype,
        weights=W,
        forward=_forward_factors(net, X, W, layers),
        loss=loss,
        backward=_backward_factors(net, W, layers, gradients),
        grads=grads,
        views=views,
        agreements=agreements,
    )


def _forward_factors(net: Network, X, W, layers) -> list[Factor]:
    factors = [Factor("A0", "X, the inputs: one row per example", X)]
    for index, (layer, activation) in enumerate(zip(layers, net.activations, strict=True)):
        number = index + 1
        factors.append(
            Factor(f"W{number}", "the weights at this step, shaped (in, out)", W[f"W{number}"])
        )
        factors.append(Factor(f"Z{number}", f"A{index} @ W{number}", layer.Z))
        forward_rule, _ = _activation_formula(activation, number)
        factors.append(Factor(f"A{number}", forward_rule, layer.A))
    return factors


def _backward_factors(net: Network, W, layers, gradients) -> list[Factor]:
    last = len(layers)
    factors = [Factor(f"dL/dA{last}", f"(A{last} - Y) / N", gradients[-1].dL_dA)]
    for index in reversed(range(last)):
        number = index + 1
        gradient = gradients[index]
        if number < last:
            factors.append(
                Factor(
                    f"dL/dA{number}",
                    f"delta{number + 1} @ W{number + 1}^T",
                    gradients[number].dL_dA_prev,
                )
            )
        _, derivative = _activation_formula(net.activations[index], number)
        factors.append(Factor(f"dA{number}/dZ{number}", derivative, gradient.dA_dZ))
        factors.append(
            Factor(
                f"delta{number} = dL/dZ{number}",
                f"dL/dA{number} * dA{number}/dZ{number}",
                gradient.delta,
                note="element by element",
            )
        )
        factors.append(Factor(f"dL/dW{number}", f"A{index}^T @ delta{number}", gradient.dL_dW))
    return factors


def _framework_view(name: str, net: Network, W, X, Y, dtype: str) -> FrameworkView:
    try:
        module = implementations.load(name)
    except implementations.FrameworkUnavailable as error:
        return FrameworkView(name, unavailable=str(error))
    if name == "torch":
        nodes, loss, grads = module.autograd_graph(net, W, X, Y, dtype)
        return FrameworkView(name, loss=loss, grads=grads, graph=nodes)
    jaxpr, inputs, loss, grads = module.gradient_jaxpr(net, W, X, Y, dtype)
    return FrameworkView(name, loss=loss, grads=grads, graph=jaxpr.splitlines(), inputs=inputs)


# Arranging: an Explanation becomes a list of blocks, which each output format lays out.
@dataclass
class Block:
    """One piece of the document.

    ``kind`` is ``"heading"``, ``"text"`` (prose, wrapped), ``"value"`` (a header line and an
    array printed under it) or ``"code"`` (preformatted lines).
    """

    kind: str
    text: str
    body: str = ""


def _array_text(value: np.ndarray) -> str:
    value = np.asarray(value)
    if value.ndim == 0:
        return f"{float(value):.10g}"
    with np.printoptions(
        precision=6, threshold=SUMMARY_THRESHOLD, edgeitems=3, linewidth=WIDTH - 4
    ):
        return np.array2string(value)


def _shape(value: np.ndarray) -> str:
    return "(" + ", ".join(map(str, np.shape(value))) + ")"


def _value(factor: Factor) -> Block:
    note = f"; {factor.note}" if factor.note else ""
    header = f"{factor.name} = {factor.formula}    shape {_shape(factor.value)}{note}"
    return Block("value", header, _array_text(factor.value))


def _graph_lines(nodes) -> list[str]:
    """The autograd graph as an indented tree, one node per line, with what each node does."""
    lines = []
    explained: set[str] = set()
    for node in nodes:
        indent = "  " * node.depth
        if node.name is None:
            lines.append(f"{indent}(no gradient: an input such as X or Y)")
            continue
        # Each kind of node is explained once, where it first appears, to keep lines short.
        meaning = next(
            (text for prefix, text in NODE_MEANINGS.items() if node.name.startswith(prefix)), ""
        )
        if node.name in explained and not node.weight:
            meaning = ""
        explained.add(node.name)
        if node.weight:
            meaning = f"{meaning} {node.weight}.grad"
        again = " (listed above)" if node.repeated else ""
        lines.append(f"{indent}{node.name}{again}  # {meaning}" if meaning else indent + node.name)
    return lines


def _agreement_line(item: Agreement) -> str:
    facts = item.facts
    if item.passed:
        verdict = "agree"
        detail = f"largest difference {facts['max_abs']:.1e} (relative {facts['max_rel']:.1e})"
    else:
        verdict = "DIFFER"
        detail = (
            f"{facts['mismatched']} of {facts['total']} elements outside tolerance; largest "
            f"difference {facts['max_abs']:.2e} at {facts['worst_index']}"
        )
    return f"{item.quantity:<8} {item.framework:<5} vs numpy: {verdict:<6} {detail}"


def document(explanation: Explanation) -> list[Block]:
    """Arrange an explanation into headings, prose, values and code, in reading order."""
    e = explanation
    net = e.problem.network
    last = len(net.widths) - 1
    batch = (
        f"Batch: all {e.rows} row{'s' if e.rows > 1 else ''}; X is {_shape(e.problem.X)}, "
        f"Y is {_shape(e.problem.Y)}."
    )
    if e.rows < e.total_rows:
        batch = (
            f"Batch: the first {e.rows} of {e.total_rows} rows; X is {_shape(e.problem.X)}, Y is "
            f"{_shape(e.problem.Y)}. The loss and gradients below are for these rows only "
            f"(training uses all {e.total_rows})."
        )
    blocks = [
        Block("heading", f"crosscheck explain: {e.title}"),
        Block(
            "text",
            f"Network {net.describe()}; step {e.step} of {e.problem.steps}, lr {e.problem.lr:g}, "
            f"{e.dtype}. Step {e.step}'s gradient is taken at the weights before update "
            f"{e.step}.",
        ),
        Block(
            "text",
            f"{batch} Conventions: Z_l = A_(l-1) @ W_l, A_l = "
            f"activation(Z_l), A0 = X; loss L = sum((A{last} - Y)^2) / (2 N) with "
            f"N = Y.size = {e.problem.Y.size}. Arrays over {SUMMARY_THRESHOLD} elements show "
            "their first and last rows only.",
        ),
        Block("heading", "1. Forward pass (NumPy)"),
        *(_value(f) for f in e.forward),
        Block("value", f"L = sum((A{last} - Y)^2) / (2 N)", f"{e.loss:.10g}"),
        Block("heading", "2. Backward pass by hand (NumPy): the chain rule, one factor per line"),
        Block(
            "text",
            "Each factor is computed from the ones above it, from the loss back towards the "
            "input. The gradients are the dL/dW lines.",
        ),
        *(_value(f) for f in e.backward),
    ]
    torch_view, jax_view = e.views["torch"], e.views["jax"]
    blocks.append(Block("heading", "3. What PyTorch built: the autograd graph of the loss"))
    if torch_view.unavailable:
        blocks.append(Block("text", f"PyTorch not run: {torch_view.unavailable}"))
    else:
        blocks.append(
            Block(
                "text",
                "The forward pass recorded one backward node per operation. Read from the loss "
                "(loss.grad_fn) towards the weights, following each node's next_functions; "
                "loss.backward() runs these nodes in this order, each applying its local "
                "derivative, the same factors as section 2.",
            )
        )
        blocks.append(Block("code", "loss.grad_fn", "\n".join(_graph_lines(torch_view.graph))))
        blocks.append(Block("text", "Gradients autograd stored in W.grad:"))
        blocks += [
            Block("value", f"{name}.grad    shape {_shape(g)}", _array_text(g))
            for name, g in torch_view.grads.items()
        ]
    blocks.append(Block("heading", "4. What JAX built: the jaxpr of jax.grad(loss)"))
    if jax_view.unavailable:
        blocks.append(Block("text", f"JAX not run: {jax_view.unavailable}"))
    else:
        names = ", ".join(jax_view.inputs)
        outputs = ", ".join(f"dL/d{name}" for name in jax_view.inputs if name in e.grads)
        blocks.append(
            Block(
                "text",
                "jax.make_jaxpr traces the gradient function into JAX's intermediate language: "
                "the forward pass, then the backward pass jax.grad derived, one primitive per "
                f"line (dot_general is a matrix product, logistic the sigmoid). Its inputs, in "
                f"order: {names}; its outputs, in order: {outputs}.",
            )
        )
        blocks.append(Block("code", "jax.make_jaxpr(jax.grad(loss))", "\n".join(jax_view.graph)))
        blocks.append(Block("text", "Gradients from jax.value_and_grad:"))
        blocks += [
            Block("value", f"dL/d{name}    shape {_shape(g)}", _array_text(g))
            for name, g in jax_view.grads.items()
        ]
    blocks.append(Block("heading", "5. Do the three agree?"))
    if e.agreements:
        tolerance = e.agreements[0].tolerance
        blocks.append(
            Block(
                "text",
                f"Each framework against NumPy, element by element: |a - b| <= atol + rtol |b| "
                f"with rtol {tolerance.rtol:.1e}, atol {tolerance.atol:.1e} ({e.dtype}).",
            )
        )
        blocks.append(Block("code", "", "\n".join(_agreement_line(a) for a in e.agreements)))
        failed = [a for a in e.agreements if not a.passed]
        names = list(dict.fromkeys(a.framework for a in e.agreements))
        blocks.append(
            Block(
                "text",
                f"{'All three agree' if len(names) == 2 else 'They agree'}: numpy, "
                f"{', '.join(names)}."
                if not failed
                else f"They do NOT agree: {len(failed)} of {len(e.agreements)} comparisons differ.",
            )
        )
    else:
        blocks.append(Block("text", "Nothing to compare: neither PyTorch nor JAX could run."))
    return blocks


def to_text(blocks: list[Block]) -> str:
    """Plain text laid out for a terminal of ``WIDTH`` columns."""
    lines: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            if lines:
                lines.append("")
            underline = "=" if not lines else "-"
            lines += [block.text, underline * min(len(block.text), WIDTH)]
        elif block.kind == "text":
            lines += textwrap.wrap(block.text, WIDTH)
        elif block.kind == "value":
            lines.append(block.text)
            lines += textwrap.indent(block.body, "    ").splitlines()
        else:
            if block.text:
                lines.append(block.text)
            lines += textwrap.indent(block.body, "    ").splitlines()
    return "\n".join(lines) + "\n"


def to_markdown(blocks: list[Block]) -> str:
    """A Markdown document: headings, paragraphs, and values and code in fenced blocks."""
    parts: list[str] = []
    first = True
    for block in blocks:
        if block.kind == "heading":
            parts.append(f"{'#' if first else '##'} {block.text}")
            first = False
        elif block.kind == "text":
            parts.append(block.text)
        elif block.kind == "value":
            parts.append(f"`{block.text}`\n\n```text\n{block.body}\n```")
        else:
            title = f"`{block.text}`\n\n" if block.text else ""
            parts.append(f"{title}```text\n{block.body}\n```")
    return "\n\n".join(parts) + "\n"


def add_parser(commands) -> None:
    """Register ``crosscheck explain``."""
    from compare.cli import add_recipe_options

    parser = commands.add_parser(
        "explain",
        help="show one training step term by term: the chain rule by hand, torch's graph, jax's",
        description="Explain one training step: the forward pass, the backward pass written out "
        "as the chain rule (NumPy), the autograd graph PyTorch built, the jaxpr JAX built, "
        "their gradients and whether they agree. Explains the reference recipe unless recipe "
        "options or --example say otherwise.",
    )
    add_recipe_options(parser)
    shown = parser.add_argument_group("what to explain")
    shown.add_argument(
        "--example",
        metavar="NAME",
        help=f"explain a worked example instead of a recipe ({', '.join(examples.EXAMPLES)})",
    )
    shown.add_argument(
        "--step",
        type=int,
        default=0,
        metavar="K",
        help="explain step K: the gradient at the weights after K updates (default: 0)",
    )
    shown.add_argument(
        "--rows",
        type=int,
        metavar="N",
        help="use only the first N rows of the batch for the step shown (default: all)",
    )
    shown.add_argument(
        "--markdown", action="store_true", help="write a Markdown document instead of plain text"
    )
    parser.set_defaults(handler=_explain)


def _explain(args: argparse.Namespace, console: Console) -> int:
    from compare.cli import EXIT_AGREE, EXIT_DISAGREE, UsageError, recipe_from_args

    recipe = recipe_from_args(args)
    if args.example is not None:
        if replace(recipe, dtype=Recipe().dtype) != Recipe():
            raise UsageError(
                "--example takes its network and data from the example; drop the "
                "recipe options other than --dtype"
            )
        try:
            example = examples.lookup(args.example)
        except KeyError as error:
            raise UsageError(error.args[0]) from None
        title, problem = example.name, example.problem()
    else:
        title = f"{recipe.dataset} recipe"
        problem = examples.problem_from_recipe(recipe)
    try:
        check_request(problem, args.step, args.rows, recipe.dtype)
    except ValueError as error:
        raise UsageError(str(error)) from None
    explanation = explain(problem, title=title, step=args.step, rows=args.rows, dtype=recipe.dtype)
    blocks = document(explanation)
    text = to_markdown(blocks) if args.markdown else to_text(blocks)
    sys.stdout.write(text)
    return EXIT_AGREE if all(a.passed for a in explanation.agreements) else EXIT_DISAGREE
