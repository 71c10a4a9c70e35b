"""The teaching documents: ``crosscheck explain`` and ``crosscheck example``, as text or Markdown.

``explanation_blocks`` and ``example_blocks`` arrange the facts that ``compare.explain`` and
``compare.examples`` computed into a list of ``Block``s (headings, prose, labelled values,
code, tables) in reading order; ``to_text`` lays blocks out for a terminal of a given width
and ``to_markdown`` writes them as a Markdown document. Both formats carry the same words and
numbers, so the terminal and ``--markdown PATH`` never say different things.

A labelled value is written as a header line, ``label = formula    shape (r, c)``, with the
array printed under it, indented; a reader (and a test) finds every value under its label.

This module words and lays out; it computes nothing that decides a verdict (that is
``compare.check``'s ``verdict``, and ``Explanation.verdict`` adds the views' agreement).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from compare.agreement import Comparison
from compare.examples import STEP_CONVENTION, ExampleResult
from compare.explain import Explanation, Value
from compare.present import markdown, text
from implementations.contract import param_quantity

#: The widest the documents are laid out, whatever the terminal.
MAX_WIDTH = 100

#: Arrays with more elements than this print NumPy-style, first and last rows only.
SUMMARY_THRESHOLD = 60

#: An example network with at most this many parameters lists them all where it starts.
SMALL_NETWORK = 40

#: Significant digits of the numbers in example tables.
DIGITS = 10


@dataclass
class Block:
    """One piece of a document.

    ``kind`` is ``"heading"``, ``"text"`` (prose, wrapped), ``"value"`` (``text`` is the header
    line, ``body`` the array under it), ``"code"`` (``text`` an optional caption, ``body``
    preformatted lines) or ``"table"`` (``header`` and ``rows`` of cells).
    """

    kind: str
    text: str = ""
    body: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def array_text(value, width: int = MAX_WIDTH) -> str:
    """An array with 6 significant digits per element, aligned in columns (NumPy's own layout,
    first and last rows only, for a large or wide one), or a number in 10 digits."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return f"{float(array):.10g}"
    cells = [f"{x:.6g}" for x in array.ravel()]
    cell = max(len(c) for c in cells) if cells else 0
    columns = array.shape[-1] if array.ndim else 1
    if array.ndim > 2 or array.size > SUMMARY_THRESHOLD or columns * (cell + 1) + 3 > width:
        with np.printoptions(
            precision=6, threshold=SUMMARY_THRESHOLD, edgeitems=3, linewidth=width
        ):
            return np.array2string(array)
    rows = [cells[i : i + columns] for i in range(0, len(cells), columns)]
    lines = [" ".join(c.rjust(cell) for c in row) for row in rows]
    if array.ndim == 1:
        return f"[{lines[0]}]"
    return "\n".join(
        ("[[" if i == 0 else " [") + line + ("]]" if i == len(lines) - 1 else "]")
        for i, line in enumerate(lines)
    )


def shape_text(value) -> str:
    """``(2, 3)``, ``(2,)``; ``()`` for a number."""
    return str(tuple(int(n) for n in np.shape(value)))


def value_block(value: Value, width: int = MAX_WIDTH) -> Block:
    """``label = formula    shape (r, c); note`` with the value under it."""
    note = f"; {value.note}" if value.note else ""
    header = f"{value.label} = {value.formula}    shape {shape_text(value.value)}{note}"
    return Block("value", header, array_text(value.value, width - 4))


# crosscheck explain -------------------------------------------------------------------------


def explanation_blocks(e: Explanation, width: int = MAX_WIDTH) -> list[Block]:
    """Arrange an explanation into a document, in reading order."""
    blocks = [Block("heading", f"crosscheck explain: {e.title}"), *_setting(e)]
    blocks += _forward_blocks(e, width)
    blocks += _loss_blocks(e, width)
    blocks += _backward_blocks(e, width)
    blocks += _update_blocks(e, width)
    blocks += _torch_blocks(e, width)
    blocks += _jax_blocks(e, width)
    blocks += _agreement_blocks(e)
    return blocks


def _setting(e: Explanation) -> list[Block]:
    net, opt = e.problem.network, e.problem.optimizer
    shown = len(e.rows)
    batch = len(e.batch_rows)
    total = e.problem.batches.rows
    if shown < batch:
        rows = (
            f"The first {shown} of the {batch} rows of batch {e.step}: the loss and gradients "
            f"below are those of these rows only (training uses the whole batch)."
        )
    elif batch < total:
        rows = f"Batch {e.step}: {batch} of the {total} training rows, in the recipe's order."
    else:
        rows = f"Batch {e.step}: all {total} training row{'s' if total != 1 else ''}."
    return [
        Block(
            "text",
            f"Network {net.describe()}; optimizer {opt.name}, lr {opt.lr:g}; {e.problem.dtype}. "
            f"Step {e.step} of the recipe's {e.recipe.steps} (steps 0 to {e.recipe.steps - 1}).",
        ),
        Block(
            "text",
            f"{STEP_CONVENTION} Shown: step {e.step}, from state {e.step} to state {e.step + 1}.",
        ),
        Block(
            "text",
            f"{rows} Conventions: Z_l = A_(l-1) @ W_l{' + b_l' if net.biases else ''}, "
            f"A_l = activation_l(Z_l), A0 = X; R = {_count(e.link.rows, 'row')}, "
            f"O = {_count(e.link.outputs, 'output')}. Arrays over {SUMMARY_THRESHOLD} elements "
            "show their first and last rows only.",
        ),
    ]


def _forward_blocks(e: Explanation, width: int) -> list[Block]:
    return [
        Block("heading", f"1. Forward pass at state {e.step} (NumPy)"),
        *(value_block(v, width) for v in e.forward),
        Block("value", f"L = {e.link.formula}    ({e.link.name})", f"{e.loss:.10g}"),
    ]


def _loss_blocks(e: Explanation, width: int) -> list[Block]:
    link = e.link
    last = e.problem.network.layers
    blocks = [
        Block("heading", f"2. The loss ({link.name}) and its own derivative"),
        Block(
            "text",
            f"The loss is L = {link.formula}, so dL/dA{last} = {link.derivative}: the first "
            "factor of the chain rule, where the backward pass starts.",
        ),
    ]
    if link.constants:
        explained = "; ".join(f"{_number(c.value)} is {constant_text(c)}" for c in link.constants)
        blocks.append(
            Block(
                "text",
                f"torch and JAX build the same derivative from the numbers they recorded: "
                f"{link.autodiff_form}, which is {link.same_as}. The numbers: {explained}. "
                "Sections 5 and 6 mark each line where one of them appears.",
            )
        )
    return blocks


def _backward_blocks(e: Explanation, width: int) -> list[Block]:
    blocks = [
        Block("heading", f"3. Backward pass by hand (NumPy): the chain rule at state {e.step}"),
        Block(
            "text",
            "One factor per line, from the loss back towards the input; each is computed from "
            "the ones above it. The gradients are the dL/dW and dL/db lines.",
        ),
    ]
    for layer in e.layers:
        blocks.append(Block("text", f"Layer {layer.layer} ({layer.activation}):"))
        blocks += [value_block(v, width) for v in layer.values]
    return blocks


def _update_blocks(e: Explanation, width: int) -> list[Block]:
    update = e.update
    settings = ", ".join(
        f"{name} {value}" if isinstance(value, bool) else f"{name} {value:g}"
        for name, value in update.settings.items()
    )
    count = "" if update.t is None else f", t = {update.t:g}: the update's number counted from 1"
    blocks = [
        Block(
            "heading",
            f"4. The update of step {e.step}: state {e.step} -> state {e.step + 1} "
            f"({update.optimizer}{count})",
        ),
        Block(
            "text",
            f"Settings: {settings}. For every parameter p with gradient grad, line by line as "
            "torch.optim computes it; the last line, p_next, is the parameter at state "
            f"{e.step + 1}.",
        ),
    ]
    first = next(iter(update.before), None)
    for parameter, before in update.before.items():
        buffers = [kind for kind in before if kind not in ("p", "grad")]
        blocks.append(
            Block(
                "text",
                f"{parameter}: p = {parameter} and grad = dL/d{parameter} at state {e.step}"
                + (f"; the optimizer's {', '.join(buffers)} at state {e.step}" if buffers else "")
                + ":",
            )
        )
        kept = "zeros before the first update" if e.step == 0 else "as the last update left it"
        for kind in buffers:
            label = f"{kind} ({parameter}) at state {e.step}"
            blocks.append(value_block(Value(label, kept, before[kind]), width))
        shared = []
        for line in update.lines:
            if line.parameter != parameter:
                continue
            if parameter != first and np.ndim(line.value) == 0:
                # One number per update (Adam's bias corrections, its step size): shown once.
                shared.append(line.name)
                continue
            label = f"{line.name} ({parameter})"
            blocks.append(value_block(Value(label, line.formula, line.value), width))
        if shared:
            blocks.append(Block("text", f"({', '.join(shared)}: as for {first}.)"))
    return blocks


def _torch_blocks(e: Explanation, width: int) -> list[Block]:
    view = e.views.get("torch")
    if view is None:
        return []
    blocks = [Block("heading", "5. What PyTorch built: the autograd graph of the loss")]
    if view.unavailable:
        return [*blocks, Block("text", f"PyTorch not run: {view.unavailable}")]
    blocks.append(
        Block(
            "text",
            "The forward pass recorded one backward node per operation. Read from the loss "
            "(loss.grad_fn) towards the parameters, following each node's next_functions; "
            "loss.backward() runs these nodes in this order, each applying its local derivative "
            "(the factors of section 3). Inputs that need no gradient are X, Y and constants.",
        )
    )
    blocks.append(Block("code", "loss.grad_fn", "\n".join(view.graph)))
    blocks.append(Block("text", f"PyTorch's loss {view.loss:.10g}; the gradients in .grad:"))
    blocks += [
        value_block(Value(f"{name}.grad", f"dL/d{name}", g), width)
        for name, g in view.grads.items()
    ]
    return blocks


def _jax_blocks(e: Explanation, width: int) -> list[Block]:
    view = e.views.get("jax")
    if view is None:
        return []
    blocks = [Block("heading", "6. What JAX built: the jaxpr of jax.grad(loss)")]
    if view.unavailable:
        return [*blocks, Block("text", f"JAX not run: {view.unavailable}")]
    named = sorted(set(view.names.values()))
    blocks.append(
        Block(
            "text",
            "jax.make_jaxpr traces the gradient function into JAX's intermediate language: the "
            "forward pass, then the backward pass jax.grad derived, one primitive per line "
            "(dot_general is a matrix product, logistic the sigmoid). A line whose variable "
            "holds a value of sections 1 to 3 says so at its end"
            + (f" ({len(named)} named)" if named else "")
            + "; numbers that are the loss's constants are marked too.",
        )
    )
    blocks.append(Block("code", "jax.make_jaxpr(jax.grad(loss))", "\n".join(view.graph)))
    if view.names:
        legend = "\n".join(f"{var:>4} = {name}" for var, name in view.names.items())
        blocks.append(Block("code", "The jaxpr's variables, named", legend))
    blocks.append(Block("text", f"JAX's loss {view.loss:.10g}; the gradients jax.grad returned:"))
    blocks += [
        value_block(Value(f"dL/d{name} (jax)", "jax.grad", g), width)
        for name, g in view.grads.items()
    ]
    return blocks


def agreement_line(c: Comparison) -> str:
    """``grad:W1   torch vs numpy: agree   largest difference 0.00e+00 (allowed 2.2e-14)``."""
    allowed = c.atol
    if c.passed:
        verdict = "agree"
        detail = (
            f"largest difference {text.scientific(c.max_abs)} "
            f"(rtol {c.rtol:.2g}, atol {allowed:.2g})"
        )
    else:
        verdict = "DIFFER"
        detail = (
            f"{c.mismatched} of {c.total} elements outside rtol {c.rtol:.2g}, atol {allowed:.2g};"
            f" largest difference {text.scientific(c.max_abs)}"
            + (f" at element {c.worst_index}" if c.worst_index else "")
        )
    return f"{c.quantity:<9} {c.framework:<5} vs {c.against}: {verdict:<6} {detail}"


def _agreement_blocks(e: Explanation) -> list[Block]:
    blocks = [Block("heading", "7. Do they agree?")]
    if e.shown:
        blocks.append(
            Block(
                "text",
                f"The values shown above, at step {e.step}: each framework's loss and gradients "
                "against NumPy's, element by element, |a - b| <= atol + rtol |b|, by the synced "
                "rule of compare.check.",
            )
        )
        blocks.append(Block("code", "", "\n".join(agreement_line(c) for c in e.shown)))
    else:
        blocks.append(Block("text", "No autodiff framework could run: nothing to compare."))
    if e.step == 0:
        scope = "step 0, from NumPy's initial state"
    else:
        scope = f"each of steps 0 to {e.step} from NumPy's state of that step"
    blocks.append(
        Block(
            "text",
            "Every step up to this one, this step's whole update included, judged by "
            f"compare.check in synced mode (each framework takes {scope}): "
            f"{text.verdict_line(e.check)}",
        )
    )
    blocks.append(
        Block(
            "text",
            "Verdict: they agree." if e.verdict == "pass" else "Verdict: they do NOT agree.",
        )
    )
    return blocks


# crosscheck example -------------------------------------------------------------------------


def example_list(examples) -> list[tuple[str, str]]:
    """``(name, summary)`` of every example, for ``--list``."""
    return [(example.name, example.summary) for example in examples]


def example_blocks(result: ExampleResult) -> list[Block]:
    """Arrange an example's numbers into a document: what it is, one table per stage, the
    verdict."""
    example, problem, check = result.example, result.problem, result.check
    net, opt = problem.network, problem.optimizer
    source = example.source
    cited = source.citation + (f" ({source.url})" if source.url else "")
    blocks = [
        Block("heading", f"crosscheck example {example.name}"),
        Block("text", f"{example.summary[:1].upper()}{example.summary[1:]}. Source: {cited}."),
        Block(
            "text",
            f"Network {net.describe()}; {opt.name}, lr {opt.lr:g}; {check.recipe.steps} "
            f"update{'s' if check.recipe.steps != 1 else ''} on {result.total_rows} row"
            f"{'s' if result.total_rows != 1 else ''}; {check.dtype}. {STEP_CONVENTION}",
        ),
    ]
    labelled = [label for label in example.labels]
    if labelled:
        initial = _initial_values(result)
        named = ", ".join(
            f"{label} = {name}[{', '.join(map(str, index))}] = {initial[(name, index)]:g}"
            for label, name, index in labelled
        )
        blocks.append(
            Block(
                "text",
                f"Initial parameters: {named}. W is shaped (in, out): W1[i, j] feeds hidden "
                "neuron j+1 from input i+1.",
            )
        )
    elif problem.network.size <= SMALL_NETWORK:
        reference = check.trajectories[check.reference]
        shapes = problem.network.param_shapes
        initial = "; ".join(
            f"{name} = {_nested(np.reshape(np.asarray(reference[param_quantity(name)])[0], shape))}"
            for name, shape in shapes.items()
        )
        blocks.append(Block("text", f"Initial parameters: {initial}."))
    if result.shown_rows < result.total_rows:
        blocks.append(
            Block("text", f"Outputs: the first {result.shown_rows} of {result.total_rows} rows.")
        )
    for note in source.notes:
        blocks.append(Block("text", f"Note: {note}"))
    frameworks = list(check.trajectories)
    published = any(row.published is not None for _, rows in result.sections for row in rows)
    header = ["quantity", *frameworks, *(["published"] if published else [])]
    for heading, rows in result.sections:
        blocks.append(Block("heading", heading.capitalize()))
        cells = []
        for row in rows:
            line = [row.label, *(_digits(row.values[name]) for name in frameworks)]
            if published:
                line.append("" if row.published is None else f"{row.published:.10g}")
            cells.append(line)
        blocks.append(Block("table", header=header, rows=cells))
    blocks.append(Block("heading", "Verdict"))
    blocks.append(Block("text", text.verdict_line(check)))
    return blocks


def _initial_values(result: ExampleResult) -> dict[tuple[str, tuple[int, ...]], float]:
    reference = result.check.trajectories[result.check.reference]
    values = {}
    for _, name, index in result.example.labels:
        quantity = param_quantity(name)
        shape = result.problem.network.param_shapes[name]
        values[(name, index)] = float(np.reshape(np.asarray(reference[quantity])[0], shape)[index])
    return values


def constant_text(c) -> str:
    """``2 R O = 2 x 130 x 3, the loss's divisor`` (a ``compare.explain.Constant``)."""
    if c.expression == _number(c.value):
        return c.meaning
    worked = f" = {c.arithmetic}" if c.arithmetic else ""
    return f"{c.expression}{worked}, {c.meaning}"


def _nested(array: np.ndarray) -> str:
    """``[[0.5, -0.3], [0.2, 0.4]]``: an array as nested lists of its numbers (``%g``)."""
    if array.ndim == 0:
        return f"{float(array):g}"
    return "[" + ", ".join(_nested(item) for item in array) + "]"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def _digits(value: float) -> str:
    return f"{value:.{DIGITS}g}"


def _number(value: float) -> str:
    return f"{value:g}"


# Layout -------------------------------------------------------------------------------------


def to_text(blocks: Sequence[Block], width: int = MAX_WIDTH) -> str:
    """Plain text for a terminal ``width`` columns wide (at most ``MAX_WIDTH``)."""
    width = max(40, min(width, MAX_WIDTH))
    lines: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            if lines:
                lines.append("")
            underline = "=" if not lines else "-"
            lines += [block.text, underline * min(len(block.text), width)]
        elif block.kind == "text":
            lines += textwrap.wrap(
                block.text, width, break_long_words=False, break_on_hyphens=False
            )
        elif block.kind == "value":
            lines += textwrap.wrap(
                block.text, width, subsequent_indent="  ", break_long_words=False
            )
            lines += textwrap.indent(block.body, "    ").splitlines()
        elif block.kind == "table":
            lines += table_text(block.header, block.rows, width)
        else:
            if block.text:
                lines.append(block.text)
            lines += textwrap.indent(block.body, "    ").splitlines()
    return "\n".join(lines) + "\n"


def table_text(header: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list[str]:
    """A table with one line per row when it fits in ``width`` columns, else stacked: each row
    a block of ``column: value`` lines. Nothing is ever cut."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    if sum(widths) + 2 * (len(widths) - 1) <= width:

        def line(cells: Sequence[str]) -> str:
            first = str(cells[0]).ljust(widths[0])
            rest = [str(cell).rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True)]
            return "  ".join([first, *rest]).rstrip()

        return [line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)]
    lines = []
    for row in rows:
        lines.append(str(row[0]))
        lines += [
            f"    {name}: {cell}" for name, cell in zip(header[1:], row[1:], strict=True) if cell
        ]
    return lines


def to_markdown(blocks: Sequence[Block]) -> str:
    """A Markdown document: the schema comment that lets a rerun replace it, headings,
    paragraphs, values and code in fenced blocks, tables as pipe tables."""
    parts: list[str] = [f"<!-- {markdown.SCHEMA} -->"]
    first = True
    for block in blocks:
        if block.kind == "heading":
            parts.append(f"{'#' if first else '##'} {block.text}")
            first = False
        elif block.kind == "text":
            parts.append(block.text)
        elif block.kind == "value":
            parts.append(f"`{block.text}`\n\n```text\n{block.body}\n```")
        elif block.kind == "table":
            parts.append("\n".join(markdown.table(block.header, block.rows)).rstrip())
        else:
            caption = f"`{block.text}`\n\n" if block.text else ""
            parts.append(f"{caption}```text\n{block.body}\n```")
    return "\n\n".join(parts) + "\n"
