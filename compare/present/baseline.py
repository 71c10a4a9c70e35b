"""``crosscheck check``'s report of a ``compare.baseline.BaselineCheck``: the rerun's own
agreement, the comparison with the baseline, what changed, the environment, the verdict."""

from __future__ import annotations

from rich.console import Console

from compare.present import markdown, tables, terminal, text


def change_rows(check) -> list[list[str]]:
    """One row per changed quantity: framework, quantity, where, recorded, now, by how much."""
    return [
        [
            change.framework,
            change.quantity,
            text.where(change.step, change.index),
            f"{change.recorded:.17g}",
            f"{change.now:.17g}",
            f"{change.now - change.recorded:+.3g}",
        ]
        for change in check.changes
    ]


CHANGE_COLUMNS = ("framework", "quantity", "first changed at", "recorded", "now", "by")


def verdict_line(check) -> str:
    """The one line that ends ``crosscheck check``."""
    path = check.baseline.path
    stored = len(check.comparisons)
    frameworks = ", ".join(check.baseline.results)
    if check.verdict == "pass":
        return (
            f"PASS: all {stored} stored quantities of {frameworks} in {path} reproduced, and "
            "the frameworks agree."
        )
    first = check.first_change
    if first is not None:
        failed = sum(not c.passed for c in check.comparisons)
        return (
            f"FAIL ({failed} of {stored} stored quantities changed): {text.failure_message(first)}"
        )
    return f"FAIL: the rerun's frameworks no longer agree: {text.verdict_line(check.rerun)}"


def render_baseline_check(console: Console, check) -> None:
    """Print the rerun's agreement tables, the baseline comparison, the changes, the
    environment and the verdict."""
    rerun = check.rerun
    console.print(f"crosscheck check {check.baseline.path}: {text.recipe_line(rerun)}")
    for title, comparisons in terminal.comparison_tables(rerun.comparisons, rerun.reference):
        terminal.render_comparisons(console, title, comparisons)
    terminal.render_comparisons(
        console,
        f"Against the baseline {check.baseline.path}: every framework's rerun at the stored steps",
        check.comparisons,
    )
    if check.changes:
        tables.show(
            console,
            tables.table(
                "What changed (the first element out of tolerance)",
                CHANGE_COLUMNS,
                change_rows(check),
                left=("framework", "quantity"),
            ),
        )
    if check.environment_changes:
        console.print(
            "The environment differs from the baseline's (reported, not a failure: the numbers "
            "decide):"
        )
        tables.show(
            console,
            tables.table(
                None,
                ("", "recorded", "now"),
                [[name, str(then), str(now)] for name, then, now in check.environment_changes],
                left=("", "recorded", "now"),
            ),
        )
    else:
        console.print("Environment: the same versions as when the baseline was recorded.")
    console.print(
        verdict_line(check),
        style="bold green" if check.verdict == "pass" else "bold red",
        soft_wrap=True,
    )


def baseline_markdown(check) -> str:
    """``crosscheck check``'s Markdown summary."""
    body = [f"Rerun of the recipe stored in `{check.baseline.path}`.", ""]
    body += markdown.table(
        markdown.COMPARISON_COLUMNS,
        markdown.comparison_rows([*check.rerun.comparisons, *check.comparisons]),
    )
    if check.changes:
        body += ["What changed:", ""]
        body += markdown.table(CHANGE_COLUMNS, change_rows(check))
    if check.environment_changes:
        body += ["The environment differs from the baseline's:", ""]
        body += markdown.table(
            ["", "recorded", "now"],
            [[name, str(then), str(now)] for name, then, now in check.environment_changes],
        )
    return markdown.document("crosscheck check", check.verdict, verdict_line(check), body)
