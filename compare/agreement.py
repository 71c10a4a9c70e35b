"""Agreement: the comparison of trajectories (independent and synced) and the precision facts.

The tolerances and their reasoning live in ``compare.tolerances``; ``TOLERANCES`` here is the
independent mode's table, kept under its old name.

Two values agree when ``|a - b| <= atol + rtol * |b|``, ``b`` the reference's value: the
convention of ``numpy.testing.assert_allclose`` and ``torch.testing.assert_close``. This module
returns facts (greatest errors, where they occurred, the first step that fails); it never
formats text. ``compare.report`` does that.

Every series compared has a leading step axis, so "where" is a step plus an element index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compare import tolerances
from compare.harness import RunResult
from compare.tolerances import EXACT, Tolerance  # defined there; callers also use them from here

#: Default independent-mode tolerances by compute dtype: ``rtol = sqrt(eps)``, ``atol = rtol *
#: 1e-3``. The reasoning, and the synced mode's tighter rule, live in ``compare.tolerances``.
TOLERANCES: dict[str, Tolerance] = {
    dtype: Tolerance(rule.rtol, rule.atol)
    for dtype in tolerances.EPS
    for rule in [tolerances.independent(dtype)]
}


@dataclass(frozen=True)
class Comparison:
    """How one framework's series of one quantity compares with the reference's.

    Attributes:
        framework: The framework compared.
        against: The reference framework.
        mode: ``"independent"``: each framework followed its own trajectory; ``"synced"``: each
            evaluated the loss and gradients at the reference's weights of every step.
        quantity: ``"loss"``, ``"grad:W1"``, ``"weight:W1"``, ``"train_accuracy"``,
            ``"test_outputs"``, ``"test_predictions"`` or ``"test_accuracy"``.
        max_abs: Greatest ``|a - b|`` over every step and element.
        max_rel: Greatest ``|a - b| / |b|`` (``inf`` where ``b`` is 0 and ``a`` is not).
        worst_step: Step of ``max_abs``.
        worst_index: Element index (within the step) of ``max_abs``.
        first_failing_step: First step where some element breaks the tolerance, or ``None``.
        first_failing_index: Element index of the first failure, or ``None``.
        mismatched: Number of elements, over every step, that break the tolerance.
        total: Number of elements compared.
        rtol: Relative tolerance used.
        atol: Absolute tolerance used.
        gating: Whether a failure here fails the verdict; a non-gating failure is drift that
            is reported (``compare.tolerances.drift_is_verdict``).
        max_ulp: Greatest per-step ``max|a - b|`` in ULPs of the dtype at that step's largest
            reference magnitude (a normwise error; ``None`` for exact quantities).
        growth: ``(step, greatest |a - b| up to that step)`` at log-spaced steps: how the error
            grows.
        crossings: ``(threshold, first step whose max|a - b| reaches it, or None)`` for 1e-6,
            1e-4 and 1e-2.
    """

    framework: str
    against: str
    mode: str
    quantity: str
    max_abs: float
    max_rel: float
    worst_step: int
    worst_index: tuple[int, ...]
    first_failing_step: int | None
    first_failing_index: tuple[int, ...] | None
    mismatched: int
    total: int
    rtol: float
    atol: float
    gating: bool = True
    max_ulp: float | None = None
    growth: tuple[tuple[int, float], ...] = ()
    crossings: tuple[tuple[float, int | None], ...] = ()

    @property
    def passed(self) -> bool:
        """Every element of every step within tolerance."""
        return self.first_failing_step is None


def compare_series(
    actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance
) -> dict[str, object]:
    """Compare two arrays shaped ``(steps, ...)`` element by element.

    Non-finite values agree only with the identical value (NaN with NaN, +inf with +inf): two
    frameworks that overflow at the same element agree there, one that overflows alone fails.

    Returns:
        The fact fields of ``Comparison`` from ``max_abs`` to ``total``.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    abs_error = absolute_error(actual, expected)
    same = abs_error == 0
    finite = np.isfinite(expected)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        rel_error = np.where(abs_error == 0, 0.0, abs_error / np.abs(expected))
        allowed = tolerance.atol + tolerance.rtol * np.abs(np.where(finite, expected, 0.0))
    # A non-finite reference value is matched only by the identical value.
    failing = ~(same | (finite & (abs_error <= allowed)))
    steps = abs_error.shape[0]
    per_step = abs_error.reshape(steps, -1)
    worst = np.unravel_index(int(np.argmax(per_step)), per_step.shape) if steps else (0, 0)
    failing_flat = failing.reshape(steps, -1)
    failing_steps = np.flatnonzero(failing_flat.any(axis=1))
    first_step = int(failing_steps[0]) if failing_steps.size else None
    element_shape = abs_error.shape[1:]
    first_index = None
    if first_step is not None:
        flat = int(np.argmax(failing_flat[first_step]))
        first_index = tuple(int(i) for i in np.unravel_index(flat, element_shape))
    return {
        "max_abs": float(per_step.max()) if per_step.size else 0.0,
        "max_rel": float(rel_error.max()) if rel_error.size else 0.0,
        "worst_step": int(worst[0]),
        "worst_index": tuple(int(i) for i in np.unravel_index(int(worst[1]), element_shape)),
        "first_failing_step": first_step,
        "first_failing_index": first_index,
        "mismatched": int(failing.sum()),
        "total": int(failing.size),
    }


def absolute_error(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``|a - b|`` element by element; 0 where both hold the same non-finite value, else inf.

    Raises:
        ValueError: the shapes differ.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    with np.errstate(invalid="ignore", over="ignore"):
        abs_error = np.where(same, 0.0, np.abs(actual - expected))
    return np.where(np.isnan(abs_error), np.inf, abs_error)


def max_abs_by_step(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``(steps,)``: the greatest ``absolute_error`` at each step of two ``(steps, ...)`` series."""
    abs_error = absolute_error(actual, expected)
    return abs_error.reshape(abs_error.shape[0], -1).max(axis=1, initial=0.0)


def quantities(result: RunResult, framework: str) -> dict[str, tuple[np.ndarray, bool]]:
    """Every compared series of one framework: name -> (series with a step axis, exact?)."""
    run = result.runs[framework]
    trajectory = run.trajectory
    series: dict[str, tuple[np.ndarray, bool]] = {"loss": (trajectory.losses, False)}
    for name in result.network.param_names:
        series[f"grad:{name}"] = (trajectory.grads[name], False)
    for name in result.network.param_names:
        series[f"weight:{name}"] = (trajectory.weights[name], False)
    series["train_accuracy"] = (result.train_accuracy(framework), True)
    series["test_outputs"] = (run.test_outputs[None], False)
    series["test_predictions"] = (result.test_predictions(framework)[None], True)
    series["test_accuracy"] = (np.array([result.test_accuracy(framework)]), True)
    return series


def compare_run(result: RunResult, tolerance: Tolerance | None = None) -> list[Comparison]:
    """Compare every framework of ``result`` with its reference, quantity by quantity.

    Args:
        result: What the harness computed.
        tolerance: For the floating-point quantities; defaults to ``TOLERANCES[dtype]``.
            Predictions and accuracies are always compared exactly.
    """
    tolerance = tolerance or TOLERANCES[result.recipe.dtype]
    reference = quantities(result, result.reference)
    comparisons = []
    for framework in result.runs:
        if framework == result.reference:
            continue
        for quantity, (series, exact) in quantities(result, framework).items():
            used = EXACT if exact else tolerance
            facts = compare_series(series, reference[quantity][0], used)
            comparisons.append(
                Comparison(
                    framework=framework,
                    against=result.reference,
                    mode="independent",
                    quantity=quantity,
                    rtol=used.rtol,
                    atol=used.atol,
                    **facts,
                )
            )
    return comparisons


#: Error levels whose first crossing the drift report names.
DRIFT_THRESHOLDS = (1e-6, 1e-4, 1e-2)


def log_spaced_steps(steps: int) -> list[int]:
    """0, 1, 2, 5, 10, 20, 50, ... below ``steps``, and always the last step."""
    chosen, decade = {0, steps - 1}, 1
    while decade < steps:
        chosen.update(m * decade for m in (1, 2, 5) if m * decade < steps)
        decade *= 10
    return sorted(step for step in chosen if step >= 0)


def error_growth(actual: np.ndarray, expected: np.ndarray, dtype: str) -> dict[str, object]:
    """How the error of one series grows over its steps.

    Returns:
        ``max_ulp``, ``growth`` and ``crossings``, the fields of ``Comparison``.
    """
    error = max_abs_by_step(actual, expected)
    magnitudes = np.abs(np.asarray(expected, dtype=np.float64)).reshape(len(error), -1)
    scale = np.where(np.isfinite(magnitudes), magnitudes, 0.0).max(axis=1, initial=0.0)
    ulps = error / tolerances.ulp_scale(scale, dtype)
    # The running maximum: the drift a run has reached by each step, which only grows.
    reached = np.maximum.accumulate(error) if error.size else error
    crossings = []
    for threshold in DRIFT_THRESHOLDS:
        crossed = np.flatnonzero(error >= threshold)
        crossings.append((threshold, int(crossed[0]) if crossed.size else None))
    return {
        "max_ulp": float(ulps.max()) if ulps.size else 0.0,
        "growth": tuple((step, float(reached[step])) for step in log_spaced_steps(len(error))),
        "crossings": tuple(crossings),
    }


def _comparison(
    framework: str,
    reference: str,
    mode: str,
    quantity: str,
    actual: np.ndarray,
    expected: np.ndarray,
    tolerance: Tolerance,
    dtype: str | None,
    gating: bool,
) -> Comparison:
    facts = compare_series(actual, expected, tolerance)
    growth = {} if dtype is None else error_growth(actual, expected, dtype)
    return Comparison(
        framework=framework,
        against=reference,
        mode=mode,
        quantity=quantity,
        rtol=tolerance.rtol,
        atol=tolerance.atol,
        gating=gating,
        **facts,
        **growth,
    )


#: Independent quantities that judge the trained model rather than the path to it.
FINAL_QUANTITIES = ("test_predictions", "test_accuracy")


def compare_independent(
    result: RunResult, rule: tolerances.ToleranceRule, mode: str = "independent"
) -> list[Comparison]:
    """Compare every framework's own trajectory with the reference's, quantity by quantity.

    Args:
        result: What the harness computed.
        rule: The independent-mode tolerance rule for floating-point quantities (predictions
            and accuracies are always exact).
        mode: The mode ``crosscheck run`` was asked for; in ``"both"`` per-step drift below
            float64 is reported without failing the verdict (``tolerances.drift_is_verdict``).

    The final test predictions and accuracy decide the verdict in every mode, unless the test
    outputs agree within tolerance and every row whose class differs sits on a near-tie
    (``near_tie_rows``): then the models are the same to tolerance, rounding broke a tie, and
    the difference is reported, as drift is.
    """
    dtype = result.recipe.dtype
    drift_gates = tolerances.drift_is_verdict(dtype, mode)
    reference = quantities(result, result.reference)
    ties = near_tie_rows(
        result.runs[result.reference].test_outputs, rule.for_series(reference["test_outputs"][0])
    )
    comparisons = []
    for framework in result.runs:
        if framework == result.reference:
            continue
        differing = result.test_predictions(framework) != result.test_predictions(result.reference)
        outputs = compare_series(
            result.runs[framework].test_outputs[None],
            reference["test_outputs"][0],
            rule.for_series(reference["test_outputs"][0]),
        )
        only_ties = bool(np.all(ties[differing])) and outputs["first_failing_step"] is None
        for quantity, (series, exact) in quantities(result, framework).items():
            expected = reference[quantity][0]
            # A final class that differs only on near-ties is rounding deciding a coin toss.
            final = quantity in FINAL_QUANTITIES and not only_ties
            comparisons.append(
                _comparison(
                    framework,
                    result.reference,
                    "independent",
                    quantity,
                    series,
                    expected,
                    EXACT if exact else rule.for_series(expected),
                    None if exact else dtype,
                    gating=drift_gates or final,
                )
            )
    return comparisons


def compare_synced(
    result: RunResult, synced: dict[str, dict], rule: tolerances.ToleranceRule
) -> list[Comparison]:
    """Compare every framework's loss and gradients at the reference's weights of every step.

    Args:
        result: What the harness computed (for the reference and the dtype).
        synced: ``harness.synced``'s output: framework -> ``{"losses", "grads", ...}``.
        rule: The synced-mode tolerance rule.
    """
    dtype = result.recipe.dtype
    expected = synced[result.reference]
    comparisons = []
    for framework, evaluated in synced.items():
        if framework == result.reference:
            continue
        pairs = {"loss": (evaluated["losses"], expected["losses"])}
        for name in result.network.param_names:
            pairs[f"grad:{name}"] = (evaluated["grads"][name], expected["grads"][name])
        for quantity, (actual, reference_series) in pairs.items():
            comparisons.append(
                _comparison(
                    framework,
                    result.reference,
                    "synced",
                    quantity,
                    actual,
                    reference_series,
                    rule.for_series(reference_series),
                    dtype,
                    gating=True,
                )
            )
    return comparisons


def first_nonfinite_step(trajectory) -> int | None:
    """The first weight state ``k`` whose loss, weights or gradient hold a NaN or an infinity."""
    bad = ~np.isfinite(trajectory.losses)
    for series in trajectory.weights.values():
        bad |= ~np.isfinite(series).reshape(len(series), -1).all(axis=1)
    for series in trajectory.grads.values():
        bad[:-1] |= ~np.isfinite(series).reshape(len(series), -1).all(axis=1)
    found = np.flatnonzero(bad)
    return int(found[0]) if found.size else None


def nonfinite_facts(result: RunResult) -> dict[str, object]:
    """Per framework the first step that produced NaN/Inf, and whether all agree on it."""
    steps = {name: first_nonfinite_step(run.trajectory) for name, run in result.runs.items()}
    return {"first_nonfinite_step": steps, "agree": len(set(steps.values())) == 1}


def top1_margins(outputs: np.ndarray) -> np.ndarray:
    """``(rows,)``: the gap between each row's largest and second-largest output."""
    ordered = np.sort(np.asarray(outputs, dtype=np.float64), axis=-1)
    if ordered.shape[-1] < 2:
        return np.full(ordered.shape[:-1], np.inf)
    return ordered[..., -1] - ordered[..., -2]


def near_tie_rows(outputs: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """``(rows,)``: rows whose top-1 margin is within what the tolerance accepts as rounding.

    Two outputs each allowed ``atol + rtol * |b|`` of error can swap order when they are
    closer than twice that: on such a row the class is decided by rounding, not by the model.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        allowed = tolerance.atol + tolerance.rtol * np.abs(outputs).max(axis=-1)
        return top1_margins(outputs) <= 2 * allowed


def near_tie_facts(
    result: RunResult, tolerance: Tolerance | None = None
) -> dict[str, dict[str, object]]:
    """Per framework: its smallest test top-1 margin and every test row whose class differs
    from the reference's, each flagged ``near_tie`` (``near_tie_rows`` of the reference's
    outputs; ``tolerance`` defaults to the dtype's independent one)."""
    reference = result.runs[result.reference].test_outputs
    reference_classes = np.argmax(reference, axis=-1)
    reference_margins = top1_margins(reference)
    ties = near_tie_rows(reference, tolerance or TOLERANCES[result.recipe.dtype])
    facts = {}
    for name, run in result.runs.items():
        classes = np.argmax(run.test_outputs, axis=-1)
        margins = top1_margins(run.test_outputs)
        with np.errstate(invalid="ignore"):
            difference = np.abs(run.test_outputs - reference).max(axis=-1)
        rows = np.flatnonzero(classes != reference_classes)
        finite = np.where(np.isfinite(margins), margins, np.inf)
        smallest = int(np.argmin(finite)) if finite.size and np.isfinite(finite).any() else None
        facts[name] = {
            "smallest_margin": None if smallest is None else float(margins[smallest]),
            "smallest_margin_row": smallest,
            "disagreements": [
                {
                    "row": int(row),
                    "class": int(classes[row]),
                    "reference_class": int(reference_classes[row]),
                    "reference_margin": float(reference_margins[row]),
                    "output_difference": float(difference[row]),
                    "near_tie": bool(ties[row]),
                }
                for row in rows
            ],
        }
    return facts


@dataclass
class PrecisionFacts:
    """What decides and explains the numbers of one run, beyond the per-quantity comparisons.

    Attributes:
        mode: ``"independent"``, ``"synced"`` or ``"both"``.
        dtype: The compute dtype.
        nonfinite: ``nonfinite_facts``.
        near_ties: ``near_tie_facts``.
        environment: Framework -> its precision switches as training began.
        environment_changes: One line per switch that changed during the run (empty: none).
        oracles: Framework -> the oracle records (``compare.oracle.check_points``).
    """

    mode: str
    dtype: str
    nonfinite: dict[str, object]
    near_ties: dict[str, dict[str, object]]
    environment: dict[str, dict[str, object]]
    environment_changes: list[str]
    oracles: dict[str, list[dict[str, object]]]

    @property
    def failed_oracles(self) -> list[tuple[str, dict[str, object]]]:
        """``(framework, record)`` of every oracle check that failed."""
        return [
            (name, record)
            for name, records in self.oracles.items()
            for record in records
            if not record["passed"]
        ]

    @property
    def passed(self) -> bool:
        """Every oracle passed and no precision switch changed during the run."""
        return not self.failed_oracles and not self.environment_changes


def precision_facts(
    result: RunResult,
    synced: dict[str, dict] | None,
    mode: str,
    tolerance: Tolerance | None = None,
) -> PrecisionFacts:
    """Gather non-finite steps, near ties, precision switches and oracles of one run.

    The switches are read in every worker before and after each job; any difference between
    those readings (within a job, or between the training and the synced job of the same
    framework) is a change during the run. ``tolerance`` (the independent one) decides which
    test rows are near-ties.
    """
    environment, changes = {}, []
    for name, run in result.runs.items():
        readings = {"training": run.trajectory.precision}
        if synced is not None:
            readings["synced evaluation"] = synced[name]["precision"]
        first = run.trajectory.precision.get("before", {})
        environment[name] = first
        for job, reading in readings.items():
            for when in ("before", "after"):
                state = reading.get(when, {})
                for key in sorted(set(first) | set(state)):
                    if first.get(key) != state.get(key):
                        changes.append(
                            f"{name}: {key} was {first.get(key)!r} when training began, "
                            f"{state.get(key)!r} {when} the {job}"
                        )
    return PrecisionFacts(
        mode=mode,
        dtype=result.recipe.dtype,
        nonfinite=nonfinite_facts(result),
        near_ties=near_tie_facts(result, tolerance),
        environment=environment,
        environment_changes=changes,
        oracles={} if synced is None else {n: s["oracles"] for n, s in synced.items()},
    )
