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

from compare.agreement import Comparison, PrecisionFacts, Tolerance
from compare.harness import RunResult

if TYPE_CHECKING:
    from compare.baseline import Change
    from compare.mutants import MutantResult

#: Identifies a report file (and lets ``--report`` overwrite only its own earlier reports).
SCHEMA = "crosscheck.report/1"

#: Written at the top of JUnit XML and Markdown outputs, so reruns may replace their own files.
JUNIT_SCHEMA = "crosscheck.junit/1"
MARKDOWN_SCHEMA = "crosscheck.markdown/1"


def verdict(comparisons: list[Comparison], facts: PrecisionFacts | None = None) -> str:
    """``"pass"`` when every comparison that decides the verdict passed (drift that is only
    reported does not; see ``Comparison.gating``) and, given ``facts``, every oracle passed and
    no precision switch changed during the run; else ``"fail"``."""
    passed = all(c.passed for c in comparisons if c.gating)
    return "pass" if passed and (facts is None or facts.passed) else "fail"


def first_failure(comparisons: list[Comparison]) -> Comparison | None:
    """The failing comparison whose first failing step is earliest (ties: listed order).

    Only comparisons that decide the verdict count (``Comparison.gating``). The test-set
    quantities have a single "step", the trained model, so they come after every per-step
    series (their step 0 is the end of training, not its start).
    """
    failing = [c for c in comparisons if not c.passed and c.gating]
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
    result: RunResult,
    comparisons: list[Comparison],
    environment: dict[str, str | None],
    facts: PrecisionFacts | None = None,
) -> dict:
    """The full result as JSON-ready data (the schema in DESIGN.md).

    Given ``facts``, the document also holds ``"mode"``, ``"precision"`` (non-finite steps,
    near ties, each framework's precision switches and any change to them) and ``"oracles"``.
    """
    document = {
        "schema": SCHEMA,
        "verdict": verdict(comparisons, facts),
        "recipe": result.recipe.to_dict(),
        "network": {
            "widths": list(result.network.widths),
            "activations": list(result.network.activations),
        },
        "environment": environment,
        "reference": result.reference,
        "dtype": result.recipe.dtype,
        "frameworks": _json_ready(summary(result)),
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
                "gating": c.gating,
                "max_ulp": None if c.max_ulp is None else _json_number(c.max_ulp),
                "growth": [[step, _json_number(error)] for step, error in c.growth],
                "crossings": {f"{level:g}": step for level, step in c.crossings},
            }
            for c in comparisons
        ],
    }
    if facts is not None:
        document["mode"] = facts.mode
        document["precision"] = _json_ready(
            {
                "nonfinite": facts.nonfinite,
                "near_ties": facts.near_ties,
                "switches": facts.environment,
                "switches_changed": facts.environment_changes,
            }
        )
        document["oracles"] = _json_ready(facts.oracles)
    return document


def _json_ready(value):
    """``value`` with every float made JSON-safe (NaN and infinities become strings)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, float):
        return _json_number(value)
    return value


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


def verdict_line(
    result: RunResult, comparisons: list[Comparison], facts: PrecisionFacts | None = None
) -> str:
    """The one-line verdict that ends the terminal report."""
    failure = first_failure(comparisons)
    others = [name for name in result.runs if name != result.reference]
    if failure is None and facts is not None and not facts.passed:
        if facts.environment_changes:
            return (
                f"FAIL: a precision switch changed during the run: {facts.environment_changes[0]}"
            )
        name, record = facts.failed_oracles[0]
        return (
            f"FAIL: {name}'s gradient fails the {record['check']} oracle at step {record['step']}"
        )
    if failure is None and not others:
        return f"PASS: only {result.reference} ran, so there was nothing to compare it with."
    if failure is None:
        reported = sum(not c.passed for c in comparisons)
        return (
            f"PASS: {', '.join(others)} "
            f"{'agrees' if len(others) == 1 else 'agree'} with {result.reference} on all "
            f"{len(comparisons)} comparisons at every one of {result.recipe.steps} steps"
            + (
                f" ({reported} beyond tolerance reported as drift or near-ties, not failures)."
                if reported
                else "."
            )
        )
    failed = sum(not c.passed and c.gating for c in comparisons)
    return f"FAIL ({failed} of {len(comparisons)} comparisons): {failure_message(failure)}"


def render(
    console: Console,
    result: RunResult,
    comparisons: list[Comparison],
    tolerance: Tolerance,
    facts: PrecisionFacts | None = None,
) -> None:
    """Print the summary table, one agreement table per mode, the precision facts (drift,
    non-finite values, near ties, oracles, precision switches) when given, and the verdict.

    ``tolerance`` is the independent mode's (predictions and accuracies are always exact);
    synced comparisons carry their own, printed in their table's title.
    """
    recipe = result.recipe
    console.print(
        f"crosscheck run: {recipe.dataset}, {result.network.describe()}, {recipe.steps} steps, "
        f"lr {recipe.lr:g}, {recipe.dtype}, reference {result.reference}"
        + (f", mode {facts.mode}" if facts is not None else "")
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
    titles = {
        "independent": (
            f"Agreement with {result.reference} at every step"
            + (", each framework on its own trajectory" if facts is not None else ""),
            f"agree: |a - b| <= atol + rtol*|b| (b: {result.reference}), "
            f"rtol {tolerance.rtol:.3g}, atol {tolerance.atol:.3g}; predictions, accuracies: exact"
            + ("; drift: beyond tolerance, reported only" if _has_drift(comparisons) else ""),
        ),
        "synced": _synced_title(result, comparisons),
    }
    for mode, (title, caption) in titles.items():
        rows = [c for c in comparisons if c.mode == mode]
        if rows:
            console.print(_agreement_table(title, caption, rows))
    if facts is not None:
        render_precision(console, result, comparisons, facts)
    line = verdict_line(result, comparisons, facts)
    console.print(
        line,
        style="bold green" if verdict(comparisons, facts) == "pass" else "bold red",
        highlight=False,
        soft_wrap=True,
    )


def _has_drift(comparisons: list[Comparison]) -> bool:
    return any(not c.gating for c in comparisons if c.mode == "independent")


def _synced_title(result: RunResult, comparisons: list[Comparison]) -> tuple[str, str]:
    synced = [c for c in comparisons if c.mode == "synced"]
    rtol = f"{synced[0].rtol:.3g}" if synced else "?"
    return (
        f"Synced: every framework's loss and gradients at {result.reference}'s weights of every "
        "step (no accumulated drift)",
        f"agree: |a - b| <= atol + rtol*|b|, rtol {rtol}, atol per quantity (its column)",
    )


def _status(c: Comparison) -> str:
    if c.passed:
        return "[green]ok[/green]"
    if c.gating:
        return "[bold red]FAIL[/bold red]"
    final = c.quantity in ("test_predictions", "test_accuracy")
    return "[yellow]near-tie[/yellow]" if final else "[yellow]drift[/yellow]"


def _agreement_table(title: str, caption: str, comparisons: list[Comparison]) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    columns = ["framework", "quantity", "max abs", "max rel", "ULP", "worst at"]
    if any(c.mode == "synced" for c in comparisons):
        columns.append("atol")
    columns += ["first failing", "mismatched", "status"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("framework", "quantity") else "right")
    for c in comparisons:
        cells = [
            c.framework,
            c.quantity,
            f"{c.max_abs:.2e}",
            f"{c.max_rel:.2e}",
            "" if c.max_ulp is None else f"{c.max_ulp:.3g}",
            _where(c.worst_step, c.worst_index),
        ]
        if "atol" in columns:
            cells.append(f"{c.atol:.2g}")
        cells += [
            "none" if c.passed else _where(c.first_failing_step, c.first_failing_index),
            f"{c.mismatched}/{c.total}",
            _status(c),
        ]
        table.add_row(*cells)
    return table


def _step(step: int | None) -> str:
    return "never" if step is None else str(step)


def render_precision(
    console: Console, result: RunResult, comparisons: list[Comparison], facts: PrecisionFacts
) -> None:
    """Print how independent drift grows, non-finite values, near ties, oracles and switches."""
    drifting = [
        c
        for c in comparisons
        if c.mode == "independent" and c.growth and len(c.growth) > 1 and c.max_ulp is not None
    ]
    if drifting:
        drift = Table(
            title="Drift of the independent trajectories: greatest |a - b| up to a step, "
            "and the first step to reach each level",
            title_justify="left",
        )
        columns = ["framework", "quantity", "step 1", "step 10", "step 100", "step 1000"]
        columns += ["last step", "reaches 1e-6", "1e-4", "1e-2"]
        for column in columns:
            drift.add_column(
                column, justify="left" if column in ("framework", "quantity") else "right"
            )
        for c in drifting:
            at = dict(c.growth)
            crossing = dict(c.crossings)
            drift.add_row(
                c.framework,
                c.quantity,
                *(f"{at[s]:.1e}" if s in at else "" for s in (1, 10, 100, 1000)),
                f"{c.growth[-1][1]:.1e}",
                *(_step(crossing.get(level)) for level in (1e-6, 1e-4, 1e-2)),
            )
        console.print(drift)
    first = facts.nonfinite["first_nonfinite_step"]
    if any(step is not None for step in first.values()):
        where = ", ".join(f"{name} at step {_step(step)}" for name, step in first.items())
        agree = "they agree" if facts.nonfinite["agree"] else "they DISAGREE"
        console.print(f"Non-finite values (NaN/Inf) first appear: {where}; {agree}.")
    else:
        console.print("Non-finite values: none in any framework.")
    margins = []
    for name, tie in facts.near_ties.items():
        margin = tie["smallest_margin"]
        margins.append(f"{name} {margin:.2g}" if margin is not None else f"{name} n/a")
        for row in tie["disagreements"]:
            kind = "on a near-tie (rounding decides it)" if row["near_tie"] else "NOT a near-tie"
            console.print(
                f"  {name} predicts class {row['class']} for test row {row['row']}, "
                f"{result.reference} class {row['reference_class']}: {kind}; margin "
                f"{row['reference_margin']:.2g}, output difference {row['output_difference']:.2g}"
            )
    console.print(f"Smallest top-1 margin on the test rows: {', '.join(margins)}.")
    if facts.oracles:
        oracles = Table(
            title="Gradient oracles (float64, each framework against its own loss)",
            title_justify="left",
        )
        for column in ("framework", "check", "steps", "result", "status"):
            oracles.add_column(column, justify="left" if column != "steps" else "right")
        for name, records in facts.oracles.items():
            for check in dict.fromkeys(r["check"] for r in records):
                rows = [r for r in records if r["check"] == check]
                if check == "taylor":
                    outcome = "order " + ", ".join(
                        "inconclusive" if r["inconclusive"] else f"{r['observed_order']:.3f}"
                        for r in rows
                    )
                elif rows[0]["error"] is not None:
                    worst = max(rows, key=lambda r: r["error"])
                    outcome = (
                        f"|error| <= {worst['error']:.1e} (|gradient| {worst['gradient_norm']:.1e})"
                    )
                else:
                    outcome = "agrees" if all(r["passed"] for r in rows) else "disagrees"
                oracles.add_row(
                    name,
                    check,
                    ",".join(str(r["step"]) for r in rows),
                    outcome,
                    "[green]ok[/green]"
                    if all(r["passed"] for r in rows)
                    else "[bold red]FAIL[/bold red]",
                )
        console.print(oracles)
    for name, switches in facts.environment.items():
        shown = ", ".join(f"{key}={value}" for key, value in switches.items())
        console.print(f"Precision switches of {name}: {shown}", highlight=False, soft_wrap=True)
    if facts.environment_changes:
        for change in facts.environment_changes:
            console.print(f"[bold red]changed during the run:[/bold red] {change}")
    else:
        console.print("Precision switches unchanged during the run.")


# CI outputs: JUnit XML and Markdown -----------------------------------------------------------


def check_description(c: Comparison) -> str:
    """How ``c`` was judged: ``"exact"`` or ``"rtol 1.5e-08, atol 1.5e-11"``."""
    if c.rtol == 0 and c.atol == 0:
        return "exact"
    return f"rtol {c.rtol:.2g}, atol {c.atol:.2g}"


def to_junit_xml(suite: str, comparisons: Sequence[Comparison]) -> str:
    """JUnit XML: one test case per framework x mode x quantity; a failure carries its message.

    A comparison that is only reported (drift, a near-tie; ``Comparison.gating`` false) is a
    passing case: it does not fail the run, so it must not fail the CI job either.

    Args:
        suite: The test suite's name, e.g. ``"crosscheck run"``.
        comparisons: The comparisons, one test case each.
    """
    failures = sum(not c.passed and c.gating for c in comparisons)
    counts = {"tests": str(len(comparisons)), "failures": str(failures), "errors": "0"}
    root = ET.Element("testsuites", name="crosscheck", **counts)
    root.append(ET.Comment(f" {JUNIT_SCHEMA} "))
    testsuite = ET.SubElement(root, "testsuite", name=suite, skipped="0", **counts)
    for c in comparisons:
        case = ET.SubElement(
            testsuite, "testcase", classname=f"crosscheck.{c.framework}.{c.mode}", name=c.quantity
        )
        if not c.passed and c.gating:
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
                "ok" if c.passed else ("**FAIL**" if c.gating else "drift"),
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
