"""Agreement facts: streaming comparisons of two series, near ties, non-finite values, precision.

Two values agree when ``|a - b| <= atol + rtol * |b|``, ``b`` the reference's value: the
convention of ``numpy.testing.assert_allclose`` and ``torch.testing.assert_close``. The
tolerances and their reasoning live in ``compare.tolerances``; which quantity is compared how
lives in ``compare.quantities``; the verdict lives in ``compare.check``.

Records arrive in chunks of states while the frameworks train, so every fact here is built by
an accumulator that sees each chunk once and keeps only a few numbers (greatest errors and
where, the first failure, counts, a log-spaced growth curve, a fixed number of plot bins):
nothing grows with the number of steps. This module returns facts; it never formats text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from compare import tolerances

#: Error levels whose first crossing the drift report names.
DRIFT_THRESHOLDS = (1e-6, 1e-4, 1e-2)

#: Per-state series kept for plots are cut into at most this many bins, whatever the length.
PLOT_POINTS = 1000


@dataclass(frozen=True)
class Comparison:
    """How one framework's series of one quantity compares with the reference's.

    Attributes:
        framework: The framework compared.
        against: The reference framework.
        mode: ``"independent"``: each framework followed its own trajectory; ``"synced"``: each
            took one step from the reference's state of every step.
        quantity: A ``compare.quantities`` name (``"loss"``, ``"grad:W1"``, ``"state:m:W1"``,
            ``"test_predictions"``, ...).
        max_abs: Greatest ``|a - b|`` over every step and element.
        max_rel: Greatest ``|a - b| / |b|`` (``inf`` where ``b`` is 0 and ``a`` is not).
        worst_step: Step of ``max_abs``. A per-state quantity's step is the state ``k`` (in
            synced mode, for the state after the step, the step ``k`` whose update made it); a
            final quantity's is the number of steps (the trained model).
        worst_index: Element index (within the step) of ``max_abs``.
        first_failing_step: First step where some element breaks the tolerance, or ``None``.
        first_failing_index: Element index of the first failure, or ``None``.
        mismatched: Number of elements, over every step, that break the tolerance.
        total: Number of elements compared.
        rtol: Relative tolerance used.
        atol: The largest absolute tolerance used (a scaled rule's grows with the reference's
            running magnitude; a next-state rule's is per element, see ``compare.tolerances``).
        gating: Whether a failure here fails the verdict; a non-gating failure is drift that is
            reported (``compare.tolerances.drift_is_verdict``).
        max_ulp: Greatest per-step ``max|a - b|`` in ULPs of the dtype at that step's largest
            reference magnitude (a normwise error; ``None`` for exact quantities).
        growth: ``(step, greatest |a - b| up to that step)`` at log-spaced steps.
        crossings: ``(threshold, first step whose max|a - b| reaches it, or None)`` for
            ``DRIFT_THRESHOLDS``.
        flushed: Elements where one side is 0 and the other a subnormal number of the dtype:
            one framework flushed a subnormal result to zero (agreement, not a failure).
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
    flushed: int = 0

    @property
    def passed(self) -> bool:
        """Every element of every step within tolerance."""
        return self.first_failing_step is None


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
        error = np.where(same, 0.0, np.abs(actual - expected))
    return np.where(np.isnan(error), np.inf, error)


def finite_magnitude(values: np.ndarray) -> np.ndarray:
    """``(n,)``: the largest finite ``|value|`` of each state of an ``(n, ...)`` array (0 if
    none)."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    flat = np.where(np.isfinite(values), values, 0.0).reshape(len(values), -1)
    return flat.max(axis=1, initial=0.0)


class RunningMax:
    """The running maximum of a reference quantity's finite magnitude, state by state."""

    def __init__(self) -> None:
        self.value = 0.0

    def update(self, expected: np.ndarray) -> np.ndarray:
        """``(n,)``: the maximum over every state so far up to each of this chunk's states."""
        if len(expected) == 0:
            return np.zeros(0)
        running = np.maximum.accumulate(np.maximum(finite_magnitude(expected), self.value))
        self.value = float(running[-1])
        return running


def log_spaced_steps(last: int) -> list[int]:
    """0, 1, 2, 5, 10, 20, 50, ... up to ``last``, and ``last`` itself."""
    chosen, decade = {0, last}, 1
    while decade <= last:
        chosen.update(m * decade for m in (1, 2, 5) if m * decade <= last)
        decade *= 10
    return sorted(step for step in chosen if step >= 0)


class BinnedSeries:
    """A per-state series cut into at most ``points`` bins of equal width, for plots.

    Each bin keeps the greatest value of its states (``"max"``: spikes stay visible) or its first
    state's value (``"first"``: a decimated curve). Bins no state reached hold NaN.
    """

    def __init__(self, states: int, points: int | None = None, reduce: str = "max") -> None:
        points = PLOT_POINTS if points is None else points
        self.width = max(1, -(-states // points))
        count = -(-states // self.width)
        self.steps = np.arange(count) * self.width
        self.values = np.full(count, np.nan)
        self.reduce = reduce

    def add(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Fold the values of ``steps`` into their bins."""
        if len(steps) == 0:
            return
        bins = np.asarray(steps, dtype=np.int64) // self.width
        values = np.asarray(values, dtype=np.float64)
        if self.reduce == "first":
            fresh = np.isnan(self.values[bins])
            first = np.unique(bins, return_index=True)[1]
            chosen = first[fresh[first]]
            self.values[bins[chosen]] = values[chosen]
            return
        current = np.where(np.isnan(self.values), -np.inf, self.values)
        np.maximum.at(current, bins, np.where(np.isnan(values), np.inf, values))
        self.values = np.where(np.isneginf(current), np.nan, current)


class SeriesAccumulator:
    """Compares one framework's series of one quantity with the reference's, chunk by chunk.

    Chunks must arrive in step order. Memory is a few numbers plus ``PLOT_POINTS`` bins.
    """

    def __init__(
        self, dtype: str | None, last_step: int, *, exact: bool = False, per_state: bool = True
    ) -> None:
        """
        Args:
            dtype: The compute dtype (for ULPs and subnormals); ignored when ``exact``.
            last_step: The last step this series will hold (for the growth curve and bins).
            exact: Compared exactly (no ULPs, growth or crossings).
            per_state: A series over the steps (else one value: no growth or crossings).
        """
        self.dtype = dtype
        self.exact = exact
        self.per_state = per_state
        self.tiny = 0.0 if exact or dtype is None else tolerances.TINY[dtype]
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.worst_step: int | None = None
        self.worst_index: tuple[int, ...] = ()
        self.first_failing_step: int | None = None
        self.first_failing_index: tuple[int, ...] | None = None
        self.mismatched = 0
        self.total = 0
        self.flushed = 0
        self.max_atol = 0.0
        self.max_ulp = 0.0
        self.reached = 0.0
        self.last_seen: int | None = None
        self.growth: list[tuple[int, float]] = []
        self._checkpoints = log_spaced_steps(max(last_step, 0))
        self._next_checkpoint = 0
        self.crossings: dict[float, int | None] = dict.fromkeys(DRIFT_THRESHOLDS)
        self.bins = BinnedSeries(last_step + 1)

    def add(
        self,
        steps: np.ndarray,
        actual: np.ndarray,
        expected: np.ndarray,
        atol: np.ndarray | float,
        rtol: float,
    ) -> None:
        """Compare one chunk.

        Args:
            steps: ``(n,)``: the step of each row.
            actual: ``(n, ...)``: the framework's values.
            expected: ``(n, ...)``: the reference's values.
            atol: The absolute tolerance: a number, one per step ``(n,)``, or per element.
            rtol: The relative tolerance.
        """
        steps = np.asarray(steps, dtype=np.int64)
        n = len(steps)
        if n == 0:
            return
        actual = np.asarray(actual, dtype=np.float64)
        expected = np.asarray(expected, dtype=np.float64)
        error = absolute_error(actual, expected)
        atol = np.asarray(atol, dtype=np.float64)
        if atol.ndim == 1 and expected.ndim > 1:
            atol = atol.reshape((n,) + (1,) * (expected.ndim - 1))
        finite = np.isfinite(expected)
        magnitude = np.abs(np.where(finite, expected, 0.0))
        with np.errstate(invalid="ignore", over="ignore"):
            allowed = atol + rtol * magnitude
        # A non-finite reference value is matched only by the identical value. An infinite
        # atol marks an element the dtype may overflow computing (compare.term_bounds): any
        # value, finite or not, is an honest outcome there.
        unjudged = np.isposinf(atol)
        failing = ~((error == 0) | (finite & (error <= allowed)) | unjudged)
        judged_atol = np.where(unjudged, 0.0, atol)
        self.max_atol = max(self.max_atol, float(np.max(judged_atol)) if atol.size else 0.0)
        element_shape = expected.shape[1:]
        flat_error = error.reshape(n, -1)
        per_step = flat_error.max(axis=1, initial=0.0)
        self._worst(steps, flat_error, element_shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            relative = np.where(error == 0, 0.0, error / np.abs(expected))
        if relative.size:
            self.max_rel = max(self.max_rel, float(_nan_is_inf(relative).max()))
        flat_failing = failing.reshape(n, -1)
        if self.first_failing_step is None:
            rows = np.flatnonzero(flat_failing.any(axis=1))
            if rows.size:
                row = int(rows[0])
                flat = int(np.argmax(flat_failing[row]))
                self.first_failing_step = int(steps[row])
                self.first_failing_index = _index(flat, element_shape)
        self.mismatched += int(failing.sum())
        self.total += int(failing.size)
        if self.tiny:
            self.flushed += _flushed(actual, expected, self.tiny)
        if not self.exact:
            self._ulps(per_step, finite_magnitude(expected))
        if not self.exact and self.per_state:
            self._growth(steps, per_step)
        self.bins.add(steps, per_step)
        self.last_seen = int(steps[-1])

    def _worst(self, steps: np.ndarray, flat_error: np.ndarray, element_shape: tuple) -> None:
        if flat_error.size == 0:
            if self.worst_step is None:
                self.worst_step = int(steps[0])
            return
        row, flat = np.unravel_index(int(np.argmax(flat_error)), flat_error.shape)
        largest = float(flat_error[row, flat])
        if self.worst_step is None or largest > self.max_abs:
            self.max_abs = largest
            self.worst_step = int(steps[row])
            self.worst_index = _index(int(flat), element_shape)

    def _ulps(self, per_step: np.ndarray, scale: np.ndarray) -> None:
        dtype = self.dtype or "float64"
        with np.errstate(invalid="ignore"):
            ulps = per_step / tolerances.ulp_scale(scale, dtype)
        if ulps.size:
            self.max_ulp = max(self.max_ulp, float(_nan_is_inf(ulps).max()))

    def _growth(self, steps: np.ndarray, per_step: np.ndarray) -> None:
        for threshold, crossed in self.crossings.items():
            if crossed is None:
                hits = np.flatnonzero(per_step >= threshold)
                if hits.size:
                    self.crossings[threshold] = int(steps[hits[0]])
        reached = np.maximum.accumulate(np.maximum(per_step, self.reached))
        checkpoints = self._checkpoints
        while self._next_checkpoint < len(checkpoints):
            checkpoint = checkpoints[self._next_checkpoint]
            if checkpoint > steps[-1]:
                break
            position = int(np.searchsorted(steps, checkpoint, side="right")) - 1
            value = reached[position] if position >= 0 else self.reached
            self.growth.append((checkpoint, float(value)))
            self._next_checkpoint += 1
        self.reached = float(reached[-1])

    def facts(self) -> dict[str, object]:
        """The fact fields of ``Comparison``, from ``max_abs`` on (not ``gating``)."""
        growth: tuple[tuple[int, float], ...] = ()
        crossings: tuple[tuple[float, int | None], ...] = ()
        if not self.exact and self.per_state:
            growth = tuple(self.growth)
            if self.last_seen is not None and (not growth or growth[-1][0] < self.last_seen):
                growth += ((self.last_seen, self.reached),)
            crossings = tuple(self.crossings.items())
        return {
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "worst_step": 0 if self.worst_step is None else self.worst_step,
            "worst_index": self.worst_index,
            "first_failing_step": self.first_failing_step,
            "first_failing_index": self.first_failing_index,
            "mismatched": self.mismatched,
            "total": self.total,
            "atol": self.max_atol,
            "max_ulp": None if self.exact else self.max_ulp,
            "growth": growth,
            "crossings": crossings,
            "flushed": self.flushed,
        }


def merge_facts(primary: dict[str, object], extra: dict[str, object]) -> dict[str, object]:
    """The facts of one comparison made of two series of the same quantity: ``primary``'s
    growth, crossings and ULPs, and the worst error, first failure and counts of both.

    Args:
        primary: ``SeriesAccumulator.facts()`` of the main series.
        extra: ``SeriesAccumulator.facts()`` of a second check of the same quantity (compared
            exactly, say); its failures fail the comparison.
    """
    merged = dict(primary)
    if extra["total"] == 0:
        return merged
    if extra["max_abs"] > primary["max_abs"]:
        for key in ("max_abs", "worst_step", "worst_index"):
            merged[key] = extra[key]
    merged["max_rel"] = max(primary["max_rel"], extra["max_rel"])
    first, other = primary["first_failing_step"], extra["first_failing_step"]
    if other is not None and (first is None or other < first):
        merged["first_failing_step"] = other
        merged["first_failing_index"] = extra["first_failing_index"]
    for key in ("mismatched", "total", "flushed"):
        merged[key] = primary[key] + extra[key]
    return merged


def _nan_is_inf(values: np.ndarray) -> np.ndarray:
    """NaN (an error against a non-finite value) counts as the largest error, infinity."""
    return np.where(np.isnan(values), np.inf, values)


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


def _flushed(actual: np.ndarray, expected: np.ndarray, tiny: float) -> int:
    """Elements where one side is exactly 0 and the other a nonzero subnormal."""
    with np.errstate(invalid="ignore"):
        one = (actual == 0) & (expected != 0) & (np.abs(expected) < tiny)
        other = (expected == 0) & (actual != 0) & (np.abs(actual) < tiny)
    return int(np.count_nonzero(one | other))


class NonfiniteTracker:
    """The first state at which a framework's loss, parameters or gradients hold NaN or inf."""

    def __init__(self) -> None:
        self.first: int | None = None

    def add(self, steps: np.ndarray, records: dict[str, np.ndarray], quantities) -> None:
        """Look at one chunk's ``quantities`` (names of records with a leading state axis)."""
        if self.first is not None or len(steps) == 0:
            return
        bad = np.zeros(len(steps), dtype=bool)
        for quantity in quantities:
            values = np.asarray(records[quantity], dtype=np.float64).reshape(len(steps), -1)
            bad |= ~np.isfinite(values).all(axis=1)
        found = np.flatnonzero(bad)
        if found.size:
            self.first = int(steps[found[0]])


def nonfinite_facts(first_steps: dict[str, int | None]) -> dict[str, object]:
    """``{"first_nonfinite_step": {framework: step or None}, "agree": all the same}``."""
    return {
        "first_nonfinite_step": dict(first_steps),
        "agree": len(set(first_steps.values())) <= 1,
    }


def top1_margins(outputs: np.ndarray) -> np.ndarray:
    """``(rows,)``: the gap between each row's largest and second-largest output."""
    ordered = np.sort(np.asarray(outputs, dtype=np.float64), axis=-1)
    if ordered.shape[-1] < 2:
        return np.full(ordered.shape[:-1], np.inf)
    return ordered[..., -1] - ordered[..., -2]


def near_tie_rows(outputs: np.ndarray, rule: tolerances.Rule) -> np.ndarray:
    """``(rows,)``: rows whose top-1 margin is within what ``rule`` accepts as rounding."""
    outputs = np.asarray(outputs, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        scale = np.abs(outputs).max(axis=-1)
        return top1_margins(outputs) <= tolerances.near_tie_margin(scale, rule)


def classes_of_own_weights(
    outputs: np.ndarray, weights_outputs: np.ndarray, rule: tolerances.Rule
) -> np.ndarray:
    """``(rows,)``: rows whose class is the one the model's own weights give: the class of
    ``weights_outputs`` (a float64 forward of the same weights), or any class where that row
    is a near tie under ``rule`` (one forward in the dtype may round it either way).

    Args:
        outputs: A framework's trained model's test outputs ``(rows, outputs)``.
        weights_outputs: The float64 forward of that model's final weights on the same rows.
        rule: The independent rule, which decides what a near tie is.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    weights_outputs = np.asarray(weights_outputs, dtype=np.float64)
    same = np.argmax(outputs, axis=-1) == np.argmax(weights_outputs, axis=-1)
    return same | near_tie_rows(weights_outputs, rule)


def near_tie_facts(
    reference: str, outputs: dict[str, np.ndarray], rule: tolerances.Rule
) -> dict[str, dict[str, object]]:
    """Per framework: its smallest test top-1 margin and every test row whose class differs
    from the reference's, each flagged ``near_tie`` (``near_tie_rows`` of the reference's
    outputs under ``rule``).

    Args:
        reference: The reference framework.
        outputs: Framework -> its trained model's test outputs ``(rows, outputs)``.
        rule: The independent rule, which decides what a near tie is.
    """
    expected = outputs[reference]
    reference_classes = np.argmax(expected, axis=-1)
    reference_margins = top1_margins(expected)
    ties = near_tie_rows(expected, rule)
    facts = {}
    for name, actual in outputs.items():
        classes = np.argmax(actual, axis=-1)
        margins = top1_margins(actual)
        difference = absolute_error(actual, expected).max(axis=-1, initial=0.0)
        rows = np.flatnonzero(classes != reference_classes)
        finite = np.where(np.isfinite(margins), margins, np.inf)
        smallest = int(np.argmin(finite)) if np.isfinite(finite).any() else None
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


def environment_changes(readings: dict[str, list[tuple[str, dict]]]) -> list[str]:
    """One line per precision switch whose reading differs from the framework's first one.

    Args:
        readings: Framework -> ``(when, switches)`` in the order they were read.
    """
    changes = []
    for name, series in readings.items():
        if not series:
            continue
        _, first = series[0]
        for when, state in series[1:]:
            for key in sorted(set(first) | set(state)):
                if first.get(key) != state.get(key):
                    changes.append(
                        f"{name}: {key} was {first.get(key)!r} at the start, "
                        f"{state.get(key)!r} {when}"
                    )
    return changes


@dataclass
class PrecisionFacts:
    """What decides and explains the numbers of one run, beyond the per-quantity comparisons.

    Attributes:
        mode: ``"independent"``, ``"synced"`` or ``"both"``.
        dtype: The compute dtype.
        nonfinite: ``nonfinite_facts`` of the frameworks that trained.
        near_ties: ``near_tie_facts`` (empty when no framework but the reference trained).
        environment: Framework -> its precision switches at the start.
        environment_changes: One line per switch that changed during the run (empty: none).
        oracles: Framework -> its ``compare.oracle.OracleResult`` list.
        amplification: Framework -> how many times its float64 independent drift exceeds what
            its measured one-step differences add up to (``tolerances.amplification``), for
            the frameworks checked in both modes in float64.
        drift_reported: The frameworks whose float64 drift is reported, not judged, because
            their trajectory is measured to amplify rounding
            (``tolerances.drift_is_amplified_rounding``), or, with no synced step, because it
            first exceeded the tolerance at or after ``amplifying_from``.
        amplifying_from: Float64 with no synced step: the first state at which one correct
            step from the reference's state may move a parameter beyond the independent
            tolerance (``tolerances.step_outgrows_independent``), or ``None``.
    """

    mode: str
    dtype: str
    nonfinite: dict[str, object]
    near_ties: dict[str, dict[str, object]]
    environment: dict[str, dict[str, object]]
    environment_changes: list[str]
    oracles: dict[str, list] = field(default_factory=dict)
    amplification: dict[str, float] = field(default_factory=dict)
    drift_reported: tuple[str, ...] = ()
    amplifying_from: int | None = None

    @property
    def failed_oracles(self) -> list[tuple[str, object]]:
        """``(framework, result)`` of every oracle check that failed."""
        return [
            (name, result)
            for name, results in self.oracles.items()
            for result in results
            if not result.passed
        ]

    @property
    def passed(self) -> bool:
        """Every oracle passed and no precision switch changed during the run."""
        return not self.failed_oracles and not self.environment_changes
