"""Agreement facts: streaming comparisons of two series, near ties, non-finite values, precision.

Two values agree when ``|a - b| <= atol + rtol * |b|``, ``b`` the reference's value: the
convention of ``numpy.testing.assert_allclose`` and ``torch.testing.assert_close``. The
tolerances and their reasoning live in ``compare.tolerances``; which quantity is compared how
lives in ``compare.quantities``; the verdict lives in ``compare.check``.

Records arrive in chunks of states while the frameworks train, so every fact here is built by
an accumulator that sees each chunk once and keeps only a few numbers (greatest errors and
where, the first failure, counts, a log-spaced growth curve, a fixed number of plot bins):
nothing grows with the number of steps. The accumulators also take a point axis after the
states: the seeds of a sweep, each with facts of its own, kept as arrays so that one call per
chunk serves every seed (exactly the facts each seed's series alone would give). This module
returns facts; it never formats text.
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
    """``|a - b|`` element by element; 0 where both are non-finite, inf where one is.

    Once a value has overflowed, whether it is inf, -inf or NaN depends on the order of the
    operations that met it (``inf - inf``, ``0 * inf``): measured, float64 digits diverging
    under momentum, every framework's loss non-finite from the same step, and 40 steps later
    JAX's NaN where NumPy's and torch's were inf. Where each trajectory first became
    non-finite is judged by the finite values before it (``nonfinite_facts`` report it).

    Raises:
        ValueError: the shapes differ.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
    same = (actual == expected) | (~np.isfinite(actual) & ~np.isfinite(expected))
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.where(same, 0.0, np.abs(actual - expected))
    return np.where(np.isnan(error), np.inf, error)


def finite_magnitude(values: np.ndarray, keep: int = 1) -> np.ndarray:
    """The largest finite ``|value|`` over every axis after the first ``keep`` (0 if none):
    ``(n,)``, one per state, of an ``(n, ...)`` array; ``(n, P)``, one per state and point,
    of an ``(n, P, ...)`` one with ``keep=2``."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    flat = np.where(np.isfinite(values), values, 0.0).reshape((*values.shape[:keep], -1))
    return flat.max(axis=-1, initial=0.0)


def _pointed(values: np.ndarray, points: int | None) -> np.ndarray:
    """``(n, P, ...)`` values as they are, or ``(n, ...)`` ones (``points`` None) as one point.

    Every accumulator here keeps a point axis: the seeds of a sweep (``compare.check``) are
    the points of one accumulator, each with its own facts, so one call per chunk serves them
    all; a single series is the case ``P == 1``, through the same code.
    """
    values = np.asarray(values, dtype=np.float64)
    return values[:, None] if points is None else values


class RunningMax:
    """The running maximum of a reference quantity's finite magnitude, state by state (and
    point by point, given ``points``)."""

    def __init__(self, points: int | None = None) -> None:
        self.points = points
        self.values = np.zeros(1 if points is None else points)

    @property
    def value(self) -> float:
        """The maximum so far of a single series (``points`` None)."""
        return float(self.values[0])

    def update(self, expected: np.ndarray) -> np.ndarray:
        """The maximum over every state so far up to each of this chunk's states: ``(n,)`` of
        ``(n, ...)`` values (``points`` None), ``(n, P)`` of ``(n, P, ...)`` values."""
        expected = _pointed(expected, self.points)
        if len(expected) == 0:
            return np.zeros((0,) if self.points is None else (0, self.points))
        magnitude = finite_magnitude(expected, keep=2)
        running = np.maximum.accumulate(np.maximum(magnitude, self.values), axis=0)
        self.values = running[-1].copy()
        return running[:, 0] if self.points is None else running


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
    state's value (``"first"``: a decimated curve). Bins no state reached hold NaN. Given
    ``seeds``, every seed has a series of its own: ``values`` is ``(bins, seeds)``.
    """

    def __init__(
        self, states: int, points: int | None = None, reduce: str = "max", seeds: int | None = None
    ) -> None:
        points = PLOT_POINTS if points is None else points
        self.width = max(1, -(-states // points))
        count = -(-states // self.width)
        self.steps = np.arange(count) * self.width
        self.seeds = seeds
        self.table = np.full((count, 1 if seeds is None else seeds), np.nan)
        self.reduce = reduce

    @property
    def values(self) -> np.ndarray:
        """``(bins,)``, or ``(bins, seeds)`` given ``seeds``."""
        return self.table[:, 0] if self.seeds is None else self.table

    def add(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Fold the values of ``steps`` (``(n,)``, or ``(n, seeds)``) into their bins."""
        if len(steps) == 0:
            return
        bins = np.asarray(steps, dtype=np.int64) // self.width
        values = _pointed(values, self.seeds)
        if self.reduce == "first":
            # Each bin's first state of this chunk fills it where it is still empty.
            first = np.unique(bins, return_index=True)[1]
            current = self.table[bins[first]]
            self.table[bins[first]] = np.where(np.isnan(current), values[first], current)
            return
        # Only the bins this chunk reaches (a few of ``PLOT_POINTS``, each ``seeds`` wide).
        low, high = int(bins.min()), int(bins.max()) + 1
        window = self.table[low:high]
        current = np.where(np.isnan(window), -np.inf, window)
        np.maximum.at(current, bins - low, np.where(np.isnan(values), np.inf, values))
        self.table[low:high] = np.where(current == -np.inf, np.nan, current)


#: A seed's step or index not found yet (no failure, no crossing).
_NONE = -1


class SeriesAccumulator:
    """Compares one framework's series of one quantity with the reference's, chunk by chunk.

    With ``points`` (the seeds of a sweep), every chunk holds ``(n, P, ...)`` values and every
    fact is kept per point, as ``P`` separate accumulators would keep it: ``facts(p)`` is
    exactly what an accumulator fed point ``p`` alone finds. Without, a chunk is ``(n, ...)``.
    Chunks must arrive in step order. Memory is a few numbers per point plus ``PLOT_POINTS``
    bins.
    """

    def __init__(
        self,
        dtype: str | None,
        last_step: int,
        *,
        exact: bool = False,
        per_state: bool = True,
        points: int | None = None,
    ) -> None:
        """
        Args:
            dtype: The compute dtype (for ULPs and subnormals); ignored when ``exact``.
            last_step: The last step this series will hold (for the growth curve and bins).
            exact: Compared exactly (no ULPs, growth or crossings).
            per_state: A series over the steps (else one value: no growth or crossings).
            points: The points (seeds) of every chunk, after its state axis; ``None``: none.
        """
        self.dtype = dtype
        self.exact = exact
        self.per_state = per_state
        self.points = points
        count = 1 if points is None else points
        self.tiny = 0.0 if exact or dtype is None else tolerances.TINY[dtype]
        self.element_shape: tuple[int, ...] = ()
        self.max_abs = np.zeros(count)
        self.max_rel = np.zeros(count)
        self.worst_step = np.full(count, _NONE, dtype=np.int64)
        self.worst_flat = np.full(count, _NONE, dtype=np.int64)
        self.first_failing_step = np.full(count, _NONE, dtype=np.int64)
        self.first_failing_flat = np.full(count, _NONE, dtype=np.int64)
        self.mismatched = np.zeros(count, dtype=np.int64)
        self.total = 0
        self.flushed = np.zeros(count, dtype=np.int64)
        self.max_atol = np.zeros(count)
        self.max_ulp = np.zeros(count)
        self.reached = np.zeros(count)
        self.last_seen: int | None = None
        self.growth: list[tuple[int, np.ndarray]] = []
        self._checkpoints = log_spaced_steps(max(last_step, 0))
        self._next_checkpoint = 0
        self.crossings = {
            threshold: np.full(count, _NONE, dtype=np.int64) for threshold in DRIFT_THRESHOLDS
        }
        self.bins = BinnedSeries(last_step + 1, seeds=points)

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
            actual: ``(n, ...)``, or ``(n, P, ...)`` given ``points``: the framework's values.
            expected: Shaped as ``actual``: the reference's values.
            atol: The absolute tolerance: a number, one per step ``(n,)``, one per step and
                point ``(n, P)`` (given ``points``), or one per element (``actual``'s shape).
            rtol: The relative tolerance.
        """
        steps = np.asarray(steps, dtype=np.int64)
        n = len(steps)
        if n == 0:
            return
        actual = _pointed(actual, self.points)
        expected = _pointed(expected, self.points)
        if actual.shape != expected.shape:
            raise ValueError(f"shapes differ: {actual.shape} vs {expected.shape}")
        atol = np.asarray(atol, dtype=np.float64)
        if self.points is None and atol.ndim >= 1:
            atol = atol[:, None]
        if 1 <= atol.ndim < expected.ndim:
            atol = atol.reshape(atol.shape + (1,) * (expected.ndim - atol.ndim))
        points = expected.shape[1]
        self.element_shape = expected.shape[2:]
        # The elements first: ``(E, n, P)`` views, and every array computed from them laid out
        # so, since the reductions over the elements (a few, for a small network) are then
        # elementwise passes over contiguous ``(n, P)`` slabs, not a thousand short rows: a
        # thousand seeds cost a few passes over the chunk.
        a = np.moveaxis(actual.reshape(n, points, -1), 2, 0)
        b = np.moveaxis(expected.reshape(n, points, -1), 2, 0)
        tolerance = atol if atol.ndim == 0 else np.moveaxis(atol.reshape(*atol.shape[:2], -1), 2, 0)
        error = np.empty(a.shape)
        with np.errstate(invalid="ignore", over="ignore"):
            np.abs(np.subtract(a, b, out=error), out=error)
        per_step = error.max(axis=0, initial=0.0)
        if np.isfinite(per_step).all() and (atol.size == 0 or np.min(atol) >= 0):
            # Both sides finite everywhere (a NaN or infinity on either side makes its
            # difference non-finite) and atol >= 0: the general rule below reduces to
            # ``error > allowed`` and every value here is what it computes, in fewer passes.
            magnitude = np.abs(b, out=np.empty(a.shape))
            allowed = rtol * magnitude
            allowed += tolerance
            failing = error > allowed
            with np.errstate(invalid="ignore", divide="ignore"):
                # 0 / 0 (equal zeros) is NaN here and 0 there: fmax skips NaN.
                relative = error / magnitude
            flushed = 0
            if self.tiny and np.any((error > 0) & (error < self.tiny)):
                flushed = _flushed(a, b, self.tiny)
        else:
            error = absolute_error(a, b)
            per_step = error.max(axis=0, initial=0.0)
            finite = np.isfinite(b)
            magnitude = np.abs(np.where(finite, b, 0.0))
            with np.errstate(invalid="ignore", over="ignore"):
                allowed = tolerance + rtol * magnitude
            # A non-finite reference value is matched only by a non-finite value (of any kind:
            # ``absolute_error``), a finite one by a finite one within tolerance. An infinite
            # atol marks an element the dtype may overflow computing (compare.term_bounds): any
            # value, finite or not, is an honest outcome there.
            unjudged = np.isposinf(tolerance)
            failing = ~((error == 0) | (finite & (error <= allowed)) | unjudged)
            with np.errstate(invalid="ignore", divide="ignore"):
                relative = _nan_is_inf(np.where(error == 0, 0.0, error / np.abs(b)))
            flushed = _flushed(a, b, self.tiny) if self.tiny else 0
        judged_atol = np.where(np.isposinf(atol), 0.0, atol)  # the unjudged are not reported
        self.max_atol = np.maximum(self.max_atol, _largest_per_point(judged_atol, points))
        self._worst(steps, error, per_step)
        largest = np.fmax.reduce(relative, axis=0, initial=0.0)
        self.max_rel = np.fmax(self.max_rel, largest.max(axis=0))
        counts = failing.sum(axis=0)
        self._first_failure(steps, failing, counts > 0)
        self.mismatched += counts.sum(axis=0)
        self.total += n * error.shape[0]
        self.flushed += flushed
        if not self.exact:
            self._ulps(per_step, magnitude.max(axis=0, initial=0.0))
        if not self.exact and self.per_state:
            self._growth(steps, per_step)
        self.bins.add(steps, per_step if self.points is not None else per_step[:, 0])
        self.last_seen = int(steps[-1])

    def _worst(self, steps: np.ndarray, error: np.ndarray, per_step: np.ndarray) -> None:
        """``error``: ``(E, n, P)``; ``per_step``: ``(n, P)``, its greatest over the elements."""
        if error.shape[0] == 0:
            self.worst_step[self.worst_step == _NONE] = steps[0]
            return
        # Each point's first row holding its greatest error, then that row's first element:
        # the first greatest in (step, element) order, as a point judged alone finds it.
        each = np.arange(error.shape[2])
        row = np.argmax(per_step, axis=0)
        largest = per_step[row, each]
        better = (self.worst_step == _NONE) | (largest > self.max_abs)
        if better.any():
            flat = np.argmax(error[:, row, each], axis=0)
            self.max_abs = np.where(better, largest, self.max_abs)
            self.worst_step = np.where(better, steps[row], self.worst_step)
            self.worst_flat = np.where(better, flat, self.worst_flat)

    def _first_failure(self, steps: np.ndarray, failing: np.ndarray, rows: np.ndarray) -> None:
        """``failing``: ``(E, n, P)``; ``rows``: ``(n, P)``, whether any element fails."""
        pending = self.first_failing_step == _NONE
        if not pending.any():
            return
        found = np.flatnonzero(pending & rows.any(axis=0))
        if found.size:
            row = np.argmax(rows[:, found], axis=0)
            self.first_failing_step[found] = steps[row]
            self.first_failing_flat[found] = np.argmax(failing[:, row, found], axis=0)

    def _ulps(self, per_step: np.ndarray, scale: np.ndarray) -> None:
        dtype = self.dtype or "float64"
        with np.errstate(invalid="ignore"):
            ulps = per_step / tolerances.ulp_scale(scale, dtype)
        if ulps.size:
            self.max_ulp = np.maximum(self.max_ulp, _nan_is_inf(ulps).max(axis=0))

    def _growth(self, steps: np.ndarray, per_step: np.ndarray) -> None:
        for threshold, crossed in self.crossings.items():
            pending = crossed == _NONE
            if not pending.any():
                continue
            hits = per_step >= threshold
            found = np.flatnonzero(pending & hits.any(axis=0))
            if found.size:
                crossed[found] = steps[np.argmax(hits[:, found], axis=0)]
        reached = np.maximum.accumulate(np.maximum(per_step, self.reached), axis=0)
        checkpoints = self._checkpoints
        while self._next_checkpoint < len(checkpoints):
            checkpoint = checkpoints[self._next_checkpoint]
            if checkpoint > steps[-1]:
                break
            position = int(np.searchsorted(steps, checkpoint, side="right")) - 1
            value = reached[position] if position >= 0 else self.reached
            self.growth.append((checkpoint, value.copy()))
            self._next_checkpoint += 1
        self.reached = reached[-1].copy()

    def passed(self) -> np.ndarray:
        """``(P,)`` (``(1,)`` without points): every element of every step within tolerance."""
        return self.first_failing_step == _NONE

    def facts(self, point: int | None = None) -> dict[str, object]:
        """The fact fields of ``Comparison``, from ``max_abs`` on (not ``gating``), of point
        ``point`` (given ``points``; else the one series)."""
        if (point is None) != (self.points is None):
            raise ValueError("facts takes a point exactly when the accumulator has points")
        p = 0 if point is None else point
        growth: tuple[tuple[int, float], ...] = ()
        crossings: tuple[tuple[float, int | None], ...] = ()
        if not self.exact and self.per_state:
            growth = tuple((step, float(values[p])) for step, values in self.growth)
            if self.last_seen is not None and (not growth or growth[-1][0] < self.last_seen):
                growth += ((self.last_seen, float(self.reached[p])),)
            crossings = tuple(
                (threshold, _step_or_none(crossed[p]))
                for threshold, crossed in self.crossings.items()
            )
        first = _step_or_none(self.first_failing_step[p])
        worst_step = int(self.worst_step[p])
        return {
            "max_abs": float(self.max_abs[p]),
            "max_rel": float(self.max_rel[p]),
            "worst_step": 0 if worst_step == _NONE else worst_step,
            "worst_index": ()
            if self.worst_flat[p] == _NONE
            else _index(int(self.worst_flat[p]), self.element_shape),
            "first_failing_step": first,
            "first_failing_index": None
            if first is None
            else _index(int(self.first_failing_flat[p]), self.element_shape),
            "mismatched": int(self.mismatched[p]),
            "total": int(self.total),
            "atol": float(self.max_atol[p]),
            "max_ulp": None if self.exact else float(self.max_ulp[p]),
            "growth": growth,
            "crossings": crossings,
            "flushed": int(self.flushed[p]),
        }


def _step_or_none(step: np.integer) -> int | None:
    return None if step == _NONE else int(step)


def _largest_per_point(atol: np.ndarray, points: int) -> np.ndarray:
    """``(P,)``: each point's largest absolute tolerance of ``atol`` (a number, or ``(n, P or
    1, ...)``); 0 where it has no element."""
    if atol.ndim == 0:
        return np.full(points, float(atol))
    if atol.size == 0:
        return np.zeros(points)
    largest = atol.reshape(atol.shape[0], atol.shape[1], -1).max(axis=2).max(axis=0)
    return np.broadcast_to(largest, (points,))


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


def _flushed(actual: np.ndarray, expected: np.ndarray, tiny: float) -> np.ndarray:
    """``(P,)``: per point of ``(E, n, P)`` values, the elements where one side is exactly 0
    and the other a nonzero subnormal."""
    with np.errstate(invalid="ignore"):
        one = (actual == 0) & (expected != 0) & (np.abs(expected) < tiny)
        other = (expected == 0) & (actual != 0) & (np.abs(actual) < tiny)
    return (one | other).sum(axis=0).sum(axis=0)


class NonfiniteTracker:
    """The first state at which a framework's loss, parameters or gradients hold NaN or inf,
    per point (seed) of its records."""

    def __init__(self, points: int = 1) -> None:
        self.steps = np.full(points, _NONE, dtype=np.int64)

    def first(self, point: int = 0) -> int | None:
        """Point ``point``'s first non-finite state, or ``None``."""
        return _step_or_none(self.steps[point])

    def add(self, steps: np.ndarray, records: dict[str, np.ndarray], quantities) -> None:
        """Look at one chunk's ``quantities`` (names of records shaped ``(n, P, ...)``)."""
        pending = self.steps == _NONE
        if not pending.any() or len(steps) == 0:
            return
        bad = np.zeros((len(steps), len(self.steps)), dtype=bool)
        for quantity in quantities:
            values = np.asarray(records[quantity], dtype=np.float64)
            bad |= ~np.isfinite(values.reshape((*bad.shape, -1))).all(axis=2)
        found = np.flatnonzero(pending & bad.any(axis=0))
        if found.size:
            self.steps[found] = np.asarray(steps)[np.argmax(bad[:, found], axis=0)]


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
        synced_diagnosis: Float64, mode ``independent``: the frameworks whose drift failed after
            the first step, which drift alone cannot tell from rounding that the trajectory
            amplifies, so the run was repeated in mode ``both`` to decide it (every step of each
            framework also taken from the reference's state and judged); the result is then that
            run's, with this run's oracles. Empty: no such repeat.
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
    synced_diagnosis: tuple[str, ...] = ()

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
