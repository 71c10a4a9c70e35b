"""``crosscheck mutants``'s report: one row per mutant and dtype, and the catch count per dtype.

It words what ``compare.mutants`` found (each result's ``CheckResult``); whether a mutant was
caught is that result's verdict, not decided here.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

from compare.mutants import catch_counts
from compare.present import markdown, tables, text

COLUMNS = ("mutant", "in", "dtype", "bug", "caught", "first step", "quantity", "mode", "check")


def rows(results: Sequence) -> list[list[str]]:
    """One row per result: name, framework, dtype, bug, caught, first failing step, quantity,
    mode, and how it was judged."""
    found = []
    for result in results:
        mutant, failure = result.mutant, result.first_failure
        comparisons = list(result.comparisons)
        if result.error is not None:
            caught, step, quantity, mode, how = "ERROR", "-", "-", "-", result.error
        elif not result.caught:
            caught, step, quantity, mode, how = "ESCAPED", "-", "-", "-", "-"
        elif failure is None:  # failed through an oracle or a precision switch
            caught, step, quantity, mode = "yes", "-", "-", "-"
            how = text.verdict_line(result.result).removeprefix("FAIL: ")
        else:
            failed = sum(not c.passed and c.gating for c in comparisons)
            caught = f"yes ({failed}/{len(comparisons)})"
            step, quantity, mode = str(failure.first_failing_step), failure.quantity, failure.mode
            how = f"{text.check_description(failure)} vs {failure.against}"
        where = [step, quantity, mode, how]
        found.append(
            [mutant.name, mutant.framework, result.dtype, mutant.description, caught, *where]
        )
    return found


def counts_line(results: Sequence) -> str:
    """``"Mutants caught: 9 of 9 in float64; 9 of 9 in float32."``, naming any that escaped."""
    parts = [
        f"{caught} of {total} in {dtype}"
        for dtype, (caught, total) in catch_counts(results).items()
    ]
    line = "Mutants caught: " + "; ".join(parts) + "."
    missed = [f"{r.mutant.name} ({r.dtype})" for r in results if not r.caught]
    return line if not missed else f"{line} Not caught: {', '.join(missed)}."


#: The columns of the narrower table for terminals too narrow for every column.
NARROW_COLUMNS = ("mutant", "in", "dtype", "caught", "first step", "quantity", "mode")


def render_mutants(console: Console, results: Sequence) -> None:
    """Print the mutants table, why some recipes differ, and the catch counts."""
    found = rows(results)
    title = (
        "Mutants: deliberate bugs run through the cross-check (caught: failing comparisons / all)"
    )
    kept = [COLUMNS.index(name) for name in NARROW_COLUMNS]
    tables.show(
        console,
        tables.table(
            title,
            COLUMNS,
            found,
            left=("mutant", "in", "dtype", "bug", "caught", "quantity", "mode", "check"),
            wrap=("bug", "check"),
        ),
        tables.table(
            title + "; crosscheck mutants --list describes each bug",
            NARROW_COLUMNS,
            [[row[i] for i in kept] for row in found],
            left=("mutant", "in", "dtype", "caught", "quantity", "mode"),
        ),
    )
    for mutant in {result.mutant.name: result.mutant for result in results}.values():
        if mutant.why:
            console.print(f"{mutant.name}: {mutant.why}.")
    caught = all(result.caught for result in results)
    console.print(counts_line(results), style="bold green" if caught else "bold red")


def render_catalogue(console: Console, catalogue: Sequence) -> None:
    """``crosscheck mutants --list``: every mutant, where it is planted, what it does, and
    where the check should catch it."""
    rows = []
    for mutant in catalogue:
        expected = "-" if mutant.expected is None else f"step {mutant.expected[0]}, "
        expected += "" if mutant.expected is None else mutant.expected[1]
        bug = f"in {mutant.framework}, {mutant.kind}: {mutant.description}"
        bug += f" ({mutant.convention})" if mutant.convention else ""
        rows.append([mutant.name, bug, expected])
    tables.show(
        console,
        tables.table(
            "The mutant catalogue: deliberate bugs and convention mix-ups",
            ("mutant", "bug", "caught at"),
            rows,
            left=("mutant", "bug", "caught at"),
            wrap=("bug", "caught at"),
        ),
    )


def mutants_markdown(results: Sequence) -> str:
    """The mutants table in Markdown."""
    verdict = "pass" if all(result.caught for result in results) else "fail"
    body = markdown.table(COLUMNS, rows(results))
    return markdown.document("crosscheck mutants", verdict, counts_line(results), body)
