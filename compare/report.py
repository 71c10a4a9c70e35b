"""Turns a run's facts into what people and tools read: a terminal table, JSON, a verdict.

It formats and arranges; it computes nothing (the facts come from ``compare.agreement`` and the
summary numbers from ``compare.harness.RunResult``).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from compare.agreement import Comparison, Tolerance
from compare.harness import RunResult

if TYPE_CHECKING:
    from compare.baseline import Change
    from compare.mutants import MutantResult

#: Identifies a report file (and lets ``--report`` overwrite only its own earlier reports).
SCHEMA = "crosscheck.report/1"

#: Written at the top of JUnit XML and Markdown outputs, so reruns may replace their own files.
JUNIT_SCHEMA = "crosscheck.junit/1"
MARKDOWN_SCHEMA = "crosscheck.markdown/1"


def verdict(comparisons: list[Comparison]) -> str:
    """``"pass"`` when every comparison passed, else ``"fail"``."""
    return "pass" if all(c.passed for c in comparisons) else "fail"


def first_failure(comparisons: list[Comparison]) -> Comparison | None:
    """The failing comparison whose first failing step is earliest (ties: listed order).

    The test-set quantities have a single "step", the trained model, so they come after every
    per-step series (their step 0 is the end of training, not its start).
    """
    failing = [c for c in comparisons if not c.passed]
    return (
        min(failing, key=lambda c: (c.quantity.startswith("test_"), c.first_failing_step))
        if failing
        else None
    )


def summary(result: RunResult) -> dict[str, dict[str, float]]:
    """Per framework: final loss, train and test accuracy of the trained model, seconds."""
    return {
        name: {
            "final_loss": float(run.trajectory.losses[-1]),
            "train_accuracy": float(result.train_accuracy(name)[-1]),
            "test_accuracy": result.test_accuracy(name),
            "seconds": run.trajectory.seconds,
        }
        for name, run in result.runs.items()
    }


def _json_number(value: float) -> float | str:
    # JSON has no NaN or infinity; write them as strings rather than emit invalid JSON.
    return value if math.isfinite(value) else str(value)


def to_json(
    result: RunResult, comparisons: list[Comparison], environment: dict[str, str | None]
) -> dict:
    """The full result as JSON-ready data (the schema in DESIGN.md)."""
    return {
        "schema": SCHEMA,
        "verdict": verdict(comparisons),
        "recipe": result.recipe.to_dict(),
        "network": {
            "widths": list(result.network.widths),
            "activations": list(result.network.activations),
        },
        "environment": environment,
        "reference": result.reference,
        "dtype": result.recipe.dtype,
        "frameworks": summary(result),
        "comparisons": [
            {
                "framework": c.framework,
                "against": c.against,
                "mode": c.mode,
                "quantity": c.quantity,
                "max_abs": _json_number(c.max_abs),
                "max_rel": _json_number(c.max_rel),
                "worst_step": c.worst_step,
                "worst_index": list(c.worst_index),
                "first_failing_step": c.first_failing_step,
                "first_failing_index": (
                    None if c.first_failing_index is None else list(c.first_failing_index)
                ),
                "mismatched": c.mismatched,
                "total": c.total,
                "rtol": c.rtol,
                "atol": c.atol,
            }
            for c in comparisons
        ],
    }


def _where(step: int, index: tuple[int, ...]) -> str:
    return f"step {step}" + (f" {index}" if index else "")


def failure_message(c: Comparison) -> str:
    """One line naming the framework, quantity, first failing step and element, and sizes."""
    return (
        f"{c.framework} {c.quantity} differs from {c.against} first at "
        f"{_where(c.first_failing_step, c.first_failing_index)}; "
        f"mismatched {c.mismatched} / {c.total}; greatest absolute difference {c.max_abs:.3g} "
        f"at {_where(c.worst_step, c.worst_index)} (rtol {c.rtol:.3g}, atol {c.atol:.3g})"
    )


def verdict_line(result: RunResult, comparisons: list[Comparison]) -> str:
    """The one-line verdict that ends the terminal report."""
    failure = first_failure(comparisons)
    others = [name for name in result.runs if name != result.reference]
    if failure is None:
        return (
            f"PASS: {', '.join(others) or 'nothing'} "
            f"{'agrees' if len(others) == 1 else 'agree'} with {result.reference} on all "
            f"{len(comparisons)} comparisons at every one of {result.recipe.steps} steps."
        )
    failed = sum(not c.passed for c in comparisons)
    return f"FAIL ({failed} of {len(comparisons)} comparisons): {failure_message(failure)}"


def render(
    console: Console, result: RunResult, comparisons: list[Comparison], tolerance: Tolerance
) -> None:
    """Print the summary table, the agreement table and the verdict."""
    recipe = result.recipe
    console.print(
        f"crosscheck run: {recipe.dataset}, {result.network.describe()}, {recipe.steps} steps, "
        f"lr {recipe.lr:g}, {recipe.dtype}, reference {result.reference}"
    )
    models = Table(title="Trained models", title_justify="left")
    for column in ("framework", "final loss", "train accuracy", "test accuracy", "seconds"):
        models.add_column(column, justify="left" if column == "framework" else "right")
    for name, row in summary(result).items():
        models.add_row(
            name,
            f"{row['final_loss']:.10g}",
            f"{row['train_accuracy']:.4f}",
            f"{row['test_accuracy']:.4f}",
            f"{row['seconds']:.2f}",
        )
    console.print(models)
    table = Table(
        title=f"Agreement with {result.reference} at every step",
        title_justify="left",
        caption=(
            f"agree: |a - b| <= atol + rtol*|b| (b: {result.reference}), "
            f"rtol {tolerance.rtol:.3g}, atol {tolerance.atol:.3g}; predictions, accuracies: exact"
        ),
        caption_justify="left",
    )
    for column in (
        "framework",
        "quantity",
        "max abs",
        "max rel",
        "worst at",
        "first failing",
        "mismatched",
        "status",
    ):
        table.add_column(column, justify="left" if column in ("framework", "quantity") else "right")
    for c in comparisons:
        table.add_row(
            c.framework,
            c.quantity,
            f"{c.max_abs:.2e}",
            f"{c.max_rel:.2e}",
            _where(c.worst_step, c.worst_index),
            "none" if c.passed else _where(c.first_failing_step, c.first_failing_index),
            f"{c.mismatched}/{c.total}",
            "[green]ok[/green]" if c.passed else "[bold red]FAIL[/bold red]",
        )
    console.print(table)
    line = verdict_line(result, comparisons)
    console.print(
        line,
        style="bold green" if verdict(comparisons) == "pass" else "bold red",
        highlight=False,
        soft_wrap=True,
    )


# CI outputs: JUnit XML and Markdown -----------------------------------------------------------


def check_description(c: Comparison) -> str:
    """How ``c`` was judged: ``"exact"`` or ``"rtol 1.5e-08, atol 1.5e-11"``."""
    if c.rtol == 0 and c.atol == 0:
        return "exact"
    return f"rtol {c.rtol:.2g}, atol {c.atol:.2g}"


def to_junit_xml(suite: str, comparisons: Sequence[Comparison]) -> str:
    """JUnit XML: one test case per framework x quantity; a failure carries its message.

    Args:
        suite: The test suite's name, e.g. ``"crosscheck run"``.
        comparisons: The comparisons, one test case each.
    """
    failures = sum(not c.passed for c in comparisons)
    counts = {"tests": str(len(comparisons)), "failures": str(failures), "errors": "0"}
    root = ET.Element("testsuites", name="crosscheck", **counts)
    root.append(ET.Comment(f" {JUNIT_SCHEMA} "))
    testsuite = ET.SubElement(root, "testsuite", name=suite, skipped="0", **counts)
    for c in comparisons:
        case = ET.SubElement(
            testsuite, "testcase", classname=f"crosscheck.{c.framework}", name=c.quantity
        )
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=failure_message(c), type="mismatch")
            failure.text = (
                f"{c.framework} {c.quantity} against {c.against} ({c.mode}): "
                f"max abs {c.max_abs:.6g}, max rel {c.max_rel:.6g}, "
                f"worst at {_where(c.worst_step, c.worst_index)}, "
                f"{c.mismatched} of {c.total} elements outside {check_description(c)}"
            )
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(row) for row in rows), ""]


def comparisons_markdown(
    title: str, comparisons: Sequence[Comparison], intro: Sequence[str] = ()
) -> str:
    """A Markdown summary fit for a CI job summary: verdict, ``intro`` lines, the comparisons."""
    comparisons = list(comparisons)
    outcome = verdict(comparisons).upper()
    failure = first_failure(comparisons)
    lines = [f"<!-- {MARKDOWN_SCHEMA} -->", f"### {title}: {outcome}", "", *intro, ""]
    if failure is not None:
        lines += [f"**First failure:** {failure_message(failure)}", ""]
    lines += _markdown_table(
        ["framework", "quantity", "against", "max abs", "max rel", "first failing", "status"],
        [
            [
                c.framework,
                f"`{c.quantity}`",
                c.against,
                f"{c.max_abs:.2e}",
                f"{c.max_rel:.2e}",
                "none" if c.passed else _where(c.first_failing_step, c.first_failing_index),
                "ok" if c.passed else "**FAIL**",
            ]
            for c in comparisons
        ],
    )
    return "\n".join(lines)


def run_markdown(result: RunResult, comparisons: Sequence[Comparison]) -> str:
    """``crosscheck run``'s Markdown summary: the recipe, the trained models, the comparisons."""
    recipe = result.recipe
    intro = [
        f"{recipe.dataset}, {result.network.describe()}, {recipe.steps} steps, "
        f"lr {recipe.lr:g}, {recipe.dtype}, reference {result.reference}",
        "",
        *_markdown_table(
            ["framework", "final loss", "train accuracy", "test accuracy"],
            [
                [
                    name,
                    f"{row['final_loss']:.10g}",
                    f"{row['train_accuracy']:.4f}",
                    f"{row['test_accuracy']:.4f}",
                ]
                for name, row in summary(result).items()
            ],
        ),
    ]
    return comparisons_markdown("crosscheck run", comparisons, intro)


def render_comparisons(console: Console, title: str, comparisons: Sequence[Comparison]) -> None:
    """Print ``comparisons`` as a table (no verdict line)."""
    table = Table(title=title, title_justify="left")
    for column in ("framework", "quantity", "max abs", "max rel", "first failing", "status"):
        table.add_column(column, justify="left" if column in ("framework", "quantity") else "right")
    for c in comparisons:
        table.add_row(
            c.framework,
            c.quantity,
            f"{c.max_abs:.2e}",
            f"{c.max_rel:.2e}",
            "none" if c.passed else _where(c.first_failing_step, c.first_failing_index),
            "[green]ok[/green]" if c.passed else "[bold red]FAIL[/bold red]",
        )
    console.print(table)


# Fault injection ------------------------------------------------------------------------------


def mutant_rows(results: Sequence[MutantResult]) -> list[list[str]]:
    """One row per mutant: name, framework, bug, caught, first failing step, quantity, check."""
    rows = []
    for result in results:
        mutant, failure = result.mutant, result.first_failure
        if result.error is not None:
            caught, step, quantity, check = "ERROR", "-", "-", result.error
        elif failure is None:
            caught, step, quantity, check = "ESCAPED", "-", "-", "-"
        else:
            failed = sum(not c.passed for c in result.comparisons)
            caught = f"yes ({failed}/{len(result.comparisons)})"
            step, quantity = str(failure.first_failing_step), failure.quantity
            exact = failure.rtol == 0 and failure.atol == 0
            check = f"{'exact' if exact else 'tolerance'} vs {failure.against}"
        rows.append(
            [mutant.name, mutant.framework, mutant.description, caught, step, quantity, check]
        )
    return rows


_MUTANT_COLUMNS = ("mutant", "in", "bug", "caught", "first step", "quantity", "check")


def mutants_verdict(results: Sequence[MutantResult]) -> str:
    """``"9 of 9 mutants caught."``, naming any that escaped."""
    missed = [r.mutant.name for r in results if not r.caught]
    line = f"{len(results) - len(missed)} of {len(results)} mutants caught."
    return line if not missed else f"{line} Not caught: {', '.join(missed)}."


def render_mutants(console: Console, results: Sequence[MutantResult]) -> None:
    """Print the mutants table and the verdict line."""
    tolerances = sorted(
        {check_description(c) for r in results for c in r.comparisons if c.rtol or c.atol}
    )
    table = Table(
        title="Mutants: deliberate backprop bugs run through the cross-check "
        f"(caught: failing comparisons / all; tolerance: {'; '.join(tolerances) or 'none'})",
        title_justify="left",
    )
    for column in _MUTANT_COLUMNS:
        table.add_column(
            column,
            justify="right" if column == "first step" else "left",
            no_wrap=column in ("mutant", "in", "first step", "quantity"),
        )
    for row in mutant_rows(results):
        table.add_row(*row)
    console.print(table)
    for result in results:
        if result.mutant.why:
            console.print(f"{result.mutant.name}: {result.mutant.why}.", highlight=False)
    caught = all(r.caught for r in results)
    console.print(
        mutants_verdict(results), style="bold green" if caught else "bold red", highlight=False
    )


def mutants_markdown(results: Sequence[MutantResult]) -> str:
    """The mutants table in Markdown."""
    lines = [f"<!-- {MARKDOWN_SCHEMA} -->", "### crosscheck mutants", ""]
    lines += _markdown_table(_MUTANT_COLUMNS, mutant_rows(results))
    lines += [mutants_verdict(results), ""]
    return "\n".join(lines)


# Baselines ------------------------------------------------------------------------------------


def _change_rows(changes: Sequence[Change]) -> list[list[str]]:
    return [
        [
            ch.framework,
            ch.quantity,
            _where(ch.step, ch.index),
            f"{ch.recorded:.17g}",
            f"{ch.now:.17g}",
            f"{ch.now - ch.recorded:+.3g}",
        ]
        for ch in changes
    ]


_CHANGE_COLUMNS = ("framework", "quantity", "first changed at", "recorded", "now", "by")


def _environment_rows(env_changes: Sequence[tuple[str, str | None, str | None]]) -> list[list]:
    return [[name, str(recorded), str(now)] for name, recorded, now in env_changes]


def baseline_verdict(baseline: str, comparisons: Sequence[Comparison]) -> str:
    """The one-line verdict of ``crosscheck check``."""
    failure = first_failure(list(comparisons))
    if failure is None:
        return f"PASS: all {len(comparisons)} stored quantities of {baseline} reproduced."
    failed = sum(not c.passed for c in comparisons)
    return f"FAIL ({failed} of {len(comparisons)} quantities changed): {failure_message(failure)}"


def render_baseline_check(
    console: Console,
    baseline: str,
    comparisons: Sequence[Comparison],
    changes: Sequence[Change],
    env_changes: Sequence[tuple[str, str | None, str | None]],
) -> None:
    """Print the comparison with a baseline: the table, what changed, versions, the verdict."""
    render_comparisons(console, f"Against baseline {baseline}", comparisons)
    if changes:
        table = Table(title="What changed (first element out of tolerance)", title_justify="left")
        for column in _CHANGE_COLUMNS:
            table.add_column(column, justify="left" if column in _CHANGE_COLUMNS[:2] else "right")
        for row in _change_rows(changes):
            table.add_row(*row)
        console.print(table)
    if env_changes:
        table = Table(title="Environment differs from the baseline's", title_justify="left")
        for column in ("", "recorded", "now"):
            table.add_column(column)
        for row in _environment_rows(env_changes):
            table.add_row(*row)
        console.print(table)
    else:
        console.print("Environment: the same versions as when the baseline was recorded.")
    passed = verdict(list(comparisons)) == "pass"
    console.print(
        baseline_verdict(baseline, comparisons),
        style="bold green" if passed else "bold red",
        highlight=False,
        soft_wrap=True,
    )


def baseline_markdown(
    baseline: str,
    comparisons: Sequence[Comparison],
    changes: Sequence[Change],
    env_changes: Sequence[tuple[str, str | None, str | None]],
) -> str:
    """``crosscheck check``'s Markdown summary."""
    intro = [f"Rerun of the recipe stored in `{baseline}`.", ""]
    if changes:
        intro += _markdown_table(_CHANGE_COLUMNS, _change_rows(changes))
    if env_changes:
        intro += ["Environment differs from the baseline's:", ""]
        intro += _markdown_table(["", "recorded", "now"], _environment_rows(env_changes))
    return comparisons_markdown("crosscheck check", comparisons, intro)
