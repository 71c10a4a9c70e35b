"""Agreement: the per-dtype tolerance table and the comparison of trajectories.

Two values agree when ``|a - b| <= atol + rtol * |b|``, ``b`` the reference's value: the
convention of ``numpy.testing.assert_allclose`` and ``torch.testing.assert_close``. This module
returns facts (greatest errors, where they occurred, the first step that fails); it never
formats text. ``compare.report`` does that.

Every series compared has a leading step axis, so "where" is a step plus an element index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compare.harness import RunResult


@dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * |b|``."""

    rtol: float
    atol: float


#: Default tolerances by compute dtype. ``rtol`` is the square root of the dtype's machine
#: epsilon: half the digits. Two correct implementations differ only by rounding (sums taken in
#: another order, fused multiply-adds), and even after thousands of steps that rounding, however
#: amplified by training, stays far inside half the digits in float64 (observed on the reference
#: recipe: 2e-12 relative at worst); a wrong formula moves the leading digits (a missing
#: sigmoid factor changes a gradient by 100%). ``atol = rtol * 1e-3`` lets values a thousand
#: times below the O(1) scale of this problem's losses, weights and outputs (gradient elements
#: that pass through zero) be judged absolutely instead of by a relative error that blows up.
TOLERANCES: dict[str, Tolerance] = {
    dtype: Tolerance(rtol=float(np.sqrt(eps)), atol=float(np.sqrt(eps)) * 1e-3)
    for dtype, eps in {
        "float64": np.finfo(np.float64).eps,
        "float32": np.finfo(np.float32).eps,
        "float16": np.finfo(np.float16).eps,
        "bfloat16": 2.0**-7,  # bfloat16 keeps 8 significant bits (NumPy has no finfo for it)
    }.items()
}

#: Class predictions and accuracies must match exactly: they are what the user sees.
EXACT = Tolerance(rtol=0.0, atol=0.0)


@dataclass(frozen=True)
class Comparison:
    """How one framework's series of one quantity compares with the reference's.

    Attributes:
        framework: The framework compared.
        against: The reference framework.
        mode: ``"independent"``: each framework followed its own trajectory.
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
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    same_nonfinite = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        abs_error = np.where(same_nonfinite, 0.0, np.abs(actual - expected))
        abs_error = np.where(np.isnan(abs_error), np.inf, abs_error)
        rel_error = np.where(abs_error == 0, 0.0, abs_error / np.abs(expected))
    allowed = tolerance.atol + tolerance.rtol * np.abs(expected)
    failing = ~(abs_error <= np.where(np.isnan(allowed), np.inf, allowed))
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
