"""Markdown summaries (``--markdown PATH``), fit for a CI job summary page.

Each starts with a schema comment (so a rerun may replace its own file), then the verdict as
a heading, the first failure, and tables. The same phrases as the terminal (``text``).
"""

from __future__ import annotations

from collections.abc import Sequence

from compare.agreement import Comparison
from compare.present import text

#: Written in a comment at the top, so a rerun may replace its own earlier file.
SCHEMA = "crosscheck.markdown/1"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A Markdown table's lines (pipes in cells escaped), followed by a blank line."""

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return [line(header), line(["---"] * len(header)), *(line(row) for row in rows), ""]


def comparison_rows(comparisons: Sequence[Comparison]) -> list[list[str]]:
    """One row per comparison: framework, quantity, mode, against, differences, status."""
    return [
        [
            c.framework,
            f"`{c.quantity}`",
            c.mode,
            text.against(c),
            text.scientific(c.max_abs),
            text.scientific(c.max_rel),
            "none" if c.passed else text.where(c.first_failing_step, c.first_failing_index),
            f"{c.mismatched}/{c.total}",
            {"FAIL": "**FAIL**"}.get(text.status(c), text.status(c)),
        ]
        for c in comparisons
    ]


COMPARISON_COLUMNS = (
    "framework",
    "quantity",
    "mode",
    "against",
    "max abs",
    "max rel",
    "first failing",
    "mismatched",
    "status",
)


def document(title: str, verdict: str, verdict_line: str, body: Sequence[str]) -> str:
    """A summary: schema comment, ``### title: PASS`` heading, the verdict line, ``body``."""
    lines = [f"<!-- {SCHEMA} -->", f"### {title}: {verdict.upper()}", "", verdict_line, ""]
    return "\n".join([*lines, *body]).rstrip("\n") + "\n"


def run_markdown(result, title: str = "crosscheck run") -> str:
    """The summary of a ``CheckResult`` (``crosscheck run``'s, or ``title``'s): recipe, trained
    models, comparisons, failed oracles."""
    body = [f"Recipe: {text.recipe_line(result)}", ""]
    body += table(
        ["framework", "final loss", "train accuracy", "test accuracy", "seconds"],
        [
            [
                name,
                f"{row['final_loss']:.10g}",
                f"{row['train_accuracy']:.4f}",
                f"{row['test_accuracy']:.4f}",
                f"{row['seconds']:.2f}",
            ]
            for name, row in result.summaries.items()
        ],
    )
    body += table(COMPARISON_COLUMNS, comparison_rows(result.comparisons))
    oracles = [
        [oracle.framework, oracle.checker, oracle.state, text.oracle_outcome(oracle)]
        for oracle in text.failed_oracles(result)
    ]
    if oracles:
        body += ["Failed gradient oracles:", ""]
        body += table(["framework", "oracle", "step", "measured (threshold)"], oracles)
    for change in result.precision.environment_changes:
        body += [f"Precision switch changed during the run: {change}", ""]
    return document(title, result.verdict, text.verdict_line(result), body)
