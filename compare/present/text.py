"""The phrases every output shares: where a difference is, how it was judged, the verdict line.

Terminal tables, Markdown, JUnit XML and the JSON report all word a ``Comparison`` the same way
through these functions, so a failure reads the same in a CI log, a job summary and a test
report. They format facts; they decide nothing (``CheckResult.verdict`` is the verdict, and
``Comparison.passed`` / ``gating`` say what failed and whether it counts).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from compare import quantities
from compare.agreement import Comparison


def number(value: float | None, digits: int = 3) -> str:
    """``value`` in ``digits`` significant digits (``"nan"``, ``"inf"`` as such; ``None`` as
    ``"-"``)."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def scientific(value: float) -> str:
    """``value`` as ``1.23e-05``: the form of the difference columns."""
    return f"{value:.2e}" if math.isfinite(value) else str(value)


def where(step: int | None, index: Sequence[int] | None) -> str:
    """``"step 3, element (1, 0)"``; ``"step 3"`` for a scalar quantity."""
    if step is None:
        return "-"
    if not index:
        return f"step {step}"
    return f"step {step}, element ({', '.join(str(i) for i in index)})"


def check_description(c: Comparison) -> str:
    """How ``c`` was judged: ``"exact"`` or ``"rtol 1.5e-08, atol 1.5e-11"``."""
    if c.rtol == 0 and c.atol == 0:
        return "exact"
    return f"rtol {c.rtol:.3g}, atol {c.atol:.3g}"


def status(c: Comparison) -> str:
    """``"ok"``, ``"FAIL"`` (counts against the verdict), or why a difference beyond tolerance
    is only reported: ``"near-tie"`` for the trained model's classes (or accuracy) that differ
    only where rounding decides a tie or where drifted weights moved them (each model's class
    is its own weights'), ``"drift"`` for floating-point values that rounding moved apart over
    independent training (below float64, or on a trajectory measured to amplify rounding)."""
    if c.passed:
        return "ok"
    if c.gating:
        return "FAIL"
    return (
        "near-tie"
        if quantities.is_final(c.quantity) and quantities.is_exact(c.quantity)
        else "drift"
    )


def against(c: Comparison) -> str:
    """What ``c`` compared its framework with: the reference's name, or ``"its own
    training"`` for a framework's one-step evaluation checked against its own training run."""
    return "its own training" if c.against == c.framework else c.against


def failure_message(c: Comparison) -> str:
    """One line naming the framework, quantity, mode, first failing step and element, how many
    elements fail, and the greatest difference against what was allowed."""
    return (
        f"{c.framework} {c.quantity} ({c.mode}) differs from {against(c)} first at "
        f"{where(c.first_failing_step, c.first_failing_index)}: {c.mismatched} of {c.total} "
        f"elements outside {check_description(c)}; greatest absolute difference "
        f"{number(c.max_abs)} at {where(c.worst_step, c.worst_index)} "
        f"(relative {number(c.max_rel)})"
    )


def recipe_line(result) -> str:
    """The run's recipe in one line: data, network, optimizer, steps, dtype, reference, mode."""
    recipe = result.recipe
    batch = f"batch {recipe.batch_size}" if recipe.batch_size else "full batch"
    return (
        f"{result.dataset.name}, {result.network.describe()}, {recipe.optimizer} lr {recipe.lr:g}, "
        f"{batch}, {recipe.steps} steps, {result.dtype}, reference {result.reference}, "
        f"mode {result.mode}"
    )


def failed_oracles(result) -> list:
    """Every ``compare.oracle.OracleResult`` of ``result`` that failed, framework by
    framework."""
    return [oracle for _, oracle in result.precision.failed_oracles]


def verdict_line(result) -> str:
    """The one line that ends ``crosscheck run``'s report.

    A failure names the first failing comparison (framework, quantity, mode, step, element);
    a failed verdict without one names the failed oracle or the precision switch that changed.
    """
    others = [name for name in result.frameworks if name != result.reference]
    failure = result.first_failure
    if result.verdict == "pass":
        reported = sum(not c.passed for c in result.comparisons)
        verb = "agrees" if len(others) == 1 else "agree"
        line = (
            f"PASS: {', '.join(others)} {verb} with {result.reference} on all "
            f"{len(result.comparisons)} comparisons, mode {result.mode}, {result.dtype}, "
            f"{result.recipe.steps} steps"
        )
        if reported:
            line += f" ({reported} beyond tolerance reported as drift or near-ties, not failures)"
        return line + "."
    failed = sum(not c.passed and c.gating for c in result.comparisons)
    if failure is not None:
        return (
            f"FAIL ({failed} of {len(result.comparisons)} comparisons): {failure_message(failure)}"
        )
    oracles = failed_oracles(result)
    if oracles:
        return f"FAIL: {oracle_line(oracles[0])}"
    changes = result.precision.environment_changes
    if changes:
        return f"FAIL: a precision switch changed during the run: {changes[0]}"
    return "FAIL: the check failed without a failing comparison, oracle or switch (a bug)"


def oracle_outcome(oracle) -> str:
    """What one ``OracleResult`` measured, against the threshold it was held to."""
    if oracle.inconclusive:
        return f"inconclusive: {oracle.reason or 'nothing could be judged'}"
    if oracle.checker == "taylor":
        return f"remainder order {number(oracle.error)} (needs at least {number(oracle.threshold)})"
    if oracle.error is None:
        return ("agrees" if oracle.passed else "disagrees") + (
            f" ({oracle.detail})" if oracle.detail else ""
        )
    step = "" if oracle.step is None else f", finite-difference step {number(oracle.step, 2)}"
    return f"|error| {number(oracle.error, 2)} (allowed {number(oracle.threshold, 2)}{step})"


def oracle_line(oracle) -> str:
    """One line: whose gradient, which oracle, at which state, and what it measured."""
    verb = "passes" if oracle.passed else "fails"
    return (
        f"{oracle.framework}'s gradient {verb} the {oracle.checker} oracle at step "
        f"{oracle.state}: {oracle_outcome(oracle)}"
    )
