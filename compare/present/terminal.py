"""``crosscheck run``'s terminal report of a ``CheckResult``.

In order: the recipe line, the trained models, one agreement table per comparison mode, the
precision facts (drift of the independent trajectories, non-finite values, near ties, the
gradient oracles with their thresholds, the precision switches), and the verdict line, which
names the first failure. Tables go through ``compare.present.tables``, so nothing is cut on a
narrow terminal.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

from compare.agreement import Comparison
from compare.present import tables, text

#: What each comparison mode's table shows, by mode (``{reference}`` is filled in).
MODE_TITLES = {
    "independent": "Independent: every framework trains on its own; compared with {reference} "
    "at every step",
    "synced": "Synced: every framework takes each step from {reference}'s state (loss, "
    "gradients and the update), so nothing accumulates",
}

#: The title of a mode's comparisons of each framework with its own training run.
OWN_TITLE = (
    "Own steps ({mode}): every framework's step from its own states against its own training, "
    "so a bug in a training loop alone shows too"
)


def comparison_tables(result_comparisons, reference: str) -> list[tuple[str, list[Comparison]]]:
    """The agreement tables, in order: per mode, the comparisons with the reference, then each
    framework's comparisons with its own training (``(title, comparisons)``)."""
    found = []
    for mode in dict.fromkeys(c.mode for c in result_comparisons):
        in_mode = [c for c in result_comparisons if c.mode == mode]
        others = [c for c in in_mode if c.against != c.framework]
        own = [c for c in in_mode if c.against == c.framework]
        if others:
            title = MODE_TITLES.get(mode, f"Mode {mode}").format(reference=reference)
            found.append((title, others))
        if own:
            found.append((OWN_TITLE.format(mode=mode), own))
    return found


_STATUS_MARKUP = {
    "ok": "[green]ok[/green]",
    "FAIL": "[bold red]FAIL[/bold red]",
    "drift": "[yellow]drift[/yellow]",
    "near-tie": "[yellow]near-tie[/yellow]",
}


def status_cell(c: Comparison) -> str:
    """``text.status`` in colour."""
    return _STATUS_MARKUP[text.status(c)]


def step_at(step: int | None, index: Sequence[int] | None) -> str:
    """A compact ``where`` for table cells: ``"12 (1, 0)"``; ``"-"`` for none."""
    if step is None:
        return "-"
    return f"{step} ({', '.join(map(str, index))})" if index else str(step)


def render_check(console: Console, result, command: str = "crosscheck run") -> None:
    """Print the whole report of one ``CheckResult``, ending with the verdict line."""
    render_report(console, result, command)
    render_verdict(console, result)


#: From this share of saturated first-layer pre-activations on, the report suggests
#: ``--standardize``.
SATURATION_NOTE = 0.5


def render_report(console: Console, result, command: str = "crosscheck run") -> None:
    """Print everything but the verdict line: the recipe, the models, the tables, the facts.

    ``command`` names what ran, on the first line.
    """
    console.print(f"{command}: {text.recipe_line(result)}")
    render_models(console, result)
    for title, comparisons in comparison_tables(result.comparisons, result.reference):
        render_comparisons(console, title, comparisons)
    render_precision(console, result)


def render_models(console: Console, result) -> None:
    """The trained models: final loss, train and test accuracy, seconds, per framework."""
    rows = [
        [
            name,
            f"{row['final_loss']:.10g}",
            f"{row['train_accuracy']:.4f}",
            f"{row['test_accuracy']:.4f}",
            f"{row['seconds']:.2f}",
        ]
        for name, row in result.summaries.items()
    ]
    columns = ("framework", "final loss", "train accuracy", "test accuracy", "seconds")
    tables.show(console, tables.table("Trained models", columns, rows, left=("framework",)))


def render_comparisons(console: Console, title: str, comparisons: Sequence[Comparison]) -> None:
    """One agreement table: a row per framework and quantity.

    The tolerance goes into the caption when every inexact row shares it, else into columns.
    """
    inexact = [c for c in comparisons if c.rtol or c.atol]
    # A tolerance shared by every inexact row goes into the caption, one that varies into a
    # column of its own (the synced atol scales with each quantity's magnitude).
    shared = {
        name: values.pop() if len(values) == 1 else None
        for name, values in (
            ("rtol", {c.rtol for c in inexact}),
            ("atol", {c.atol for c in inexact}),
        )
    }
    varying = [name for name, value in shared.items() if value is None and inexact]
    several = len({text.against(c) for c in comparisons}) > 1
    columns = ["framework", *(["against"] if several else []), "quantity", "max abs", "max rel"]
    # Subnormals flushed to zero agree (compare.tolerances); a column only where some were.
    flushed = any(c.flushed for c in comparisons)
    columns += ["ULP", "worst at", "first failing", "mismatched"]
    columns += [*(["flushed"] if flushed else []), *varying, "status"]
    rows = []
    for c in comparisons:
        row = [
            c.framework,
            *([text.against(c)] if several else []),
            c.quantity,
            text.scientific(c.max_abs),
            text.scientific(c.max_rel),
            "" if c.max_ulp is None else text.number(c.max_ulp),
            step_at(c.worst_step, c.worst_index),
            "none" if c.passed else step_at(c.first_failing_step, c.first_failing_index),
            f"{c.mismatched}/{c.total}",
            *([str(c.flushed)] if flushed else []),
        ]
        row += [text.number(getattr(c, name)) for name in varying]
        rows.append([*row, status_cell(c)])
    caption = "agree: |a - b| <= atol + rtol*|b|, b the reference"
    for name, value in shared.items():
        if value is not None:
            caption += f"; {name} {text.number(value)}"
        elif inexact:
            caption += f"; {name}: its column"
    if any(c.rtol == 0 and c.atol == 0 for c in comparisons):
        caption += "; exact where rtol and atol are 0 (classes, accuracies)"
    if any(text.status(c) in ("drift", "near-tie") for c in comparisons):
        caption += "; drift, near-tie: beyond tolerance, reported, not a failure"
    left = ("framework", "against", "quantity")
    full = tables.table(
        title,
        columns,
        rows,
        caption=caption + "; worst at, first failing: step (element)",
        left=left,
    )
    # For a narrow terminal: the differences, the first failure and the status only.
    compact_columns = [name for name in COMPACT_COLUMNS if name in columns]
    kept = [columns.index(name) for name in compact_columns]
    compact = tables.table(
        title,
        compact_columns,
        [[row[i] for i in kept] for row in rows],
        caption=caption + "; first failing: step (element); --report has every column",
        left=left,
    )
    tables.show(console, full, compact)


#: The columns of an agreement table on a narrow terminal.
COMPACT_COLUMNS = (
    "framework",
    "against",
    "quantity",
    "max abs",
    "max rel",
    "first failing",
    "status",
)


def render_precision(console: Console, result) -> None:
    """Drift growth, non-finite values, near ties, oracles and precision switches."""
    render_drift(console, result.comparisons)
    facts = result.precision
    first = facts.nonfinite.get("first_nonfinite_step", {})
    if any(step is not None for step in first.values()):
        where = ", ".join(
            f"{name} at step {'never' if step is None else step}" for name, step in first.items()
        )
        agree = "they agree" if facts.nonfinite.get("agree") else "they DISAGREE"
        console.print(f"Non-finite values (NaN/Inf) first appear: {where}; {agree}.")
    else:
        console.print("Non-finite values: none in any framework.")
    saturation = result.first_layer_saturation
    if saturation is not None and saturation >= SATURATION_NOTE and not result.recipe.standardize:
        console.print(
            f"Note: {saturation:.0%} of the first layer's inputs Z1 saturate "
            f"{result.network.activations[0]} at the initial weights (unscaled data): "
            "gradients there vanish; --standardize scales the inputs."
        )
    if facts.amplifying_from is not None and facts.drift_reported:
        console.print(
            f"Note: from state {facts.amplifying_from} on, one correct step may move a parameter "
            "beyond the independent tolerance (e.g. Adam normalising gradients far below its "
            f"eps), so the drift of {', '.join(facts.drift_reported)} that began there is "
            "reported, not judged. --mode both (the default) steps every framework from the "
            "reference's states and judges each step."
        )
    if facts.synced_diagnosis:
        console.print(
            f"Note: in independent mode the drift of {', '.join(facts.synced_diagnosis)} failed "
            "after the first step, which drift alone cannot tell from rounding the trajectory "
            "amplifies, so the run was repeated in mode both: every step of each framework was "
            "also taken from the reference's state and judged, and this is that run's verdict."
        )
    if result.mode == "independent" and result.dtype != "float64":
        console.print(
            f"Note: in {result.dtype}, independent mode judges non-finite values, each model's "
            "classes against its own weights and the gradient oracles; the drift above is "
            "reported, not judged, so a wrong update can pass here. --mode both (the default) "
            "also steps every framework from the reference's states, which catches it."
        )
    render_near_ties(console, result)
    render_oracles(console, facts.oracles)
    for name, switches in facts.environment.items():
        shown = ", ".join(f"{key}={value}" for key, value in switches.items())
        console.print(f"Precision switches of {name}: {shown or 'none reported'}")
    if facts.environment_changes:
        for change in facts.environment_changes:
            console.print(f"[bold red]changed during the run:[/bold red] {change}")
    else:
        console.print("Precision switches unchanged during the run.")


#: Steps at which the drift table shows the error reached so far.
DRIFT_STEPS = (1, 10, 100, 1000)


def render_drift(console: Console, comparisons: Sequence[Comparison]) -> None:
    """How the independent trajectories' error grows: the greatest |a - b| reached by a few
    steps, and the first step to reach each level."""
    drifting = [
        c
        for c in comparisons
        if c.mode == "independent" and len(c.growth) > 1 and c.max_ulp is not None
    ]
    if not drifting:
        return
    levels = [level for level, _ in drifting[0].crossings]
    last = max(c.growth[-1][0] for c in drifting)
    shown_steps = [step for step in DRIFT_STEPS if step < last]
    columns = ["framework", "quantity", *(f"step {s}" for s in shown_steps), f"step {last}"]
    columns += [f"{level:.0e} at" for level in levels]
    rows = []
    for c in drifting:
        reached = dict(c.growth)
        crossing = dict(c.crossings)
        rows.append(
            [
                c.framework,
                c.quantity,
                *(f"{reached[s]:.1e}" if s in reached else "" for s in shown_steps),
                f"{c.growth[-1][1]:.1e}",
                *(
                    "never" if crossing.get(level) is None else str(crossing[level])
                    for level in levels
                ),
            ]
        )
    tables.show(
        console,
        tables.table(
            "Drift of the independent trajectories: the greatest |a - b| reached by each step, "
            "and the first step to reach each level",
            columns,
            rows,
            left=("framework", "quantity"),
        ),
    )


def render_near_ties(console: Console, result) -> None:
    """The smallest top-1 margin per framework, and each test row whose class differs."""
    margins = []
    for name, tie in result.precision.near_ties.items():
        margin = tie.get("smallest_margin")
        margins.append(f"{name} {text.number(margin, 2)}" if margin is not None else f"{name} n/a")
        for row in tie.get("disagreements", ()):
            kind = "a near-tie (rounding decides it)" if row["near_tie"] else "NOT a near-tie"
            console.print(
                f"  {name} predicts class {row['class']} for test row {row['row']}, "
                f"{result.reference} class {row['reference_class']}: {kind}; margin "
                f"{text.number(row['reference_margin'], 2)}, output difference "
                f"{text.number(row['output_difference'], 2)}"
            )
    if margins:
        console.print(f"Smallest top-1 margin on the test rows: {', '.join(margins)}.")


def render_oracles(console: Console, oracles: dict[str, list]) -> None:
    """The gradient oracles: per framework and checker, the steps checked, what was measured
    against its threshold (the worst check shown), and the outcome."""
    rows = []
    for name, results in oracles.items():
        for checker in dict.fromkeys(oracle.checker for oracle in results):
            chosen = [oracle for oracle in results if oracle.checker == checker]
            failed = [oracle for oracle in chosen if not oracle.passed]
            shown = failed[0] if failed else max(chosen, key=_closeness)
            rows.append(
                [
                    name,
                    checker,
                    ",".join(str(oracle.state) for oracle in chosen),
                    text.oracle_outcome(shown),
                    "[bold red]FAIL[/bold red]" if failed else "[green]ok[/green]",
                ]
            )
    if not rows:
        return
    tables.show(
        console,
        tables.table(
            "Gradient oracles (float64; each framework's gradient against its own loss)",
            ("framework", "oracle", "steps", "measured (threshold)", "status"),
            rows,
            left=("framework", "oracle", "measured (threshold)"),
            wrap=("measured (threshold)",),
        ),
    )


def _closeness(oracle) -> float:
    """How near a passing check came to its threshold (shown as the worst case)."""
    if oracle.error is None or not oracle.threshold:
        return 0.0
    if oracle.checker == "taylor":  # a larger order is better
        return oracle.threshold / oracle.error if oracle.error else float("inf")
    return oracle.error / oracle.threshold


def render_verdict(console: Console, result) -> None:
    """The verdict line, green or red."""
    console.print(
        text.verdict_line(result),
        style="bold green" if result.verdict == "pass" else "bold red",
        soft_wrap=True,
    )
