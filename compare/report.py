"""Turns a run's facts into what people and tools read: a terminal table, JSON, a verdict.

It formats and arranges; it computes nothing (the facts come from ``compare.agreement`` and the
summary numbers from ``compare.harness.RunResult``).
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from compare.agreement import Comparison, Tolerance
from compare.harness import RunResult

#: Identifies a report file (and lets ``--report`` overwrite only its own earlier reports).
SCHEMA = "crosscheck.report/1"


def verdict(comparisons: list[Comparison]) -> str:
    """``"pass"`` when every comparison passed, else ``"fail"``."""
    return "pass" if all(c.passed for c in comparisons) else "fail"


def first_failure(comparisons: list[Comparison]) -> Comparison | None:
    """The failing comparison whose first failing step is earliest (ties: listed order)."""
    failing = [c for c in comparisons if not c.passed]
    return min(failing, key=lambda c: c.first_failing_step) if failing else None


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
