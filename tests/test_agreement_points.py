"""The accumulators' point (seed) axis: one accumulator fed ``(n, P, ...)`` chunks keeps, for
every point, exactly the facts an accumulator fed that point's series alone keeps (what lets
``check_seeds`` judge a thousand seeds with one call per chunk and quantity)."""

from __future__ import annotations

import numpy as np
import pytest

from compare import agreement, tolerances

STEPS = 14
POINTS = 5
#: Chunks of states, uneven on purpose: per-point facts must carry across chunk boundaries.
CHUNKS = ((0, 4), (4, 5), (5, 11), (11, STEPS))


def _series(dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, P, 3, 2)`` reference and framework values, each point with facts of its own:
    failures at different steps and elements (two in one step for point 3, a tie of greatest
    errors for point 1), a NaN and an inf, flushed subnormals, growth through the drift
    thresholds at different steps, and point 0 agreeing everywhere."""
    rng = np.random.default_rng(42)
    expected = rng.normal(size=(STEPS, POINTS, 3, 2))
    actual = expected.copy()
    # Point 1: the same greatest error at steps 3 and 9 (the first must be named), failing.
    expected[3, 1, 2, 1] = expected[9, 1, 0, 0] = 0.25
    actual[3, 1, 2, 1] = actual[9, 1, 0, 0] = 0.75
    # Point 2: drift that grows through every threshold, failing from step 6.
    growth = np.logspace(-9, -1, STEPS)
    actual[:, 2] = expected[:, 2] + growth[:, None, None]
    # Point 3: two failures in step 8 (the first element must be named), a NaN against a finite
    # value at step 12, and a flushed subnormal.
    actual[8, 3, 1, 1] += 1e-3
    actual[8, 3, 0, 1] += 1e-3
    actual[12, 3, 2, 0] = np.nan
    tiny = tolerances.TINY[dtype]
    expected[2, 3, 0, 0], actual[2, 3, 0, 0] = tiny / 4, 0.0
    # Point 4: an inf in the reference matched exactly, then one it is not matched with.
    expected[5, 4, 1, 0] = actual[5, 4, 1, 0] = np.inf
    expected[10, 4, 2, 1] = np.inf
    return expected, actual


def _atol(kind: str, expected: np.ndarray) -> np.ndarray | float:
    if kind == "number":
        return 1e-6
    if kind == "per step":
        return np.linspace(1e-7, 1e-6, STEPS)
    if kind == "per step and point":
        return np.linspace(1e-7, 1e-6, STEPS * POINTS).reshape(STEPS, POINTS)
    return 1e-7 + 1e-6 * np.abs(np.nan_to_num(expected, posinf=0.0))


def _per_point_atol(atol, point: int):
    if np.ndim(atol) >= 2:
        return np.asarray(atol)[:, point]
    return atol


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("kind", ["number", "per step", "per step and point", "per element"])
def test_each_point_of_an_accumulator_has_the_facts_of_its_series_alone(kind, exact):
    expected, actual = _series("float32")
    atol = 0.0 if exact else _atol(kind, expected)
    rtol = 0.0 if exact else 1e-6
    steps = np.arange(STEPS)
    together = agreement.SeriesAccumulator("float32", STEPS - 1, exact=exact, points=POINTS)
    alone = [agreement.SeriesAccumulator("float32", STEPS - 1, exact=exact) for _ in range(POINTS)]
    for start, stop in CHUNKS:
        part = slice(start, stop)
        chunk_atol = atol[part] if np.ndim(atol) else atol
        together.add(steps[part], actual[part], expected[part], chunk_atol, rtol)
        for point, accumulator in enumerate(alone):
            accumulator.add(
                steps[part],
                actual[part, point],
                expected[part, point],
                _per_point_atol(chunk_atol, point),
                rtol,
            )
    found = [together.facts(point) for point in range(POINTS)]
    for point, accumulator in enumerate(alone):
        assert found[point] == accumulator.facts(), f"point {point} ({kind}, exact {exact})"
        bins = together.bins.values[:, point]
        np.testing.assert_array_equal(bins, accumulator.bins.values, f"point {point}'s bins")
    # The points differ, so a fact taken from another point cannot pass.
    firsts = [f["first_failing_step"] for f in found]
    assert firsts[0] is None and len(set(firsts[1:])) == POINTS - 1, firsts
    assert (found[1]["worst_step"], found[1]["worst_index"]) == (3, (2, 1))
    assert len({(f["max_abs"], f["worst_step"]) for f in found}) == POINTS
    if not exact:
        assert found[3]["first_failing_index"] == (0, 1) and found[3]["flushed"] == 1
        crossings = [dict(f["crossings"]) for f in found]
        assert crossings[2][1e-6] != crossings[2][1e-2] != crossings[1][1e-2]
        assert len({f["atol"] for f in found}) == (1 if kind in ("number", "per step") else POINTS)


def test_running_maxima_binned_series_and_nonfinite_states_are_kept_per_point():
    expected, actual = _series("float64")
    steps = np.arange(STEPS)
    running = agreement.RunningMax(POINTS)
    alone = [agreement.RunningMax() for _ in range(POINTS)]
    loss = expected[:, :, 0, 0].copy()
    loss[:3, 2] = np.nan  # point 2's first bins start empty: filled later by first values
    binned = agreement.BinnedSeries(STEPS, points=4, reduce="first", seeds=POINTS)
    binned_alone = [agreement.BinnedSeries(STEPS, points=4, reduce="first") for _ in loss.T]
    tracker = agreement.NonfiniteTracker(POINTS)
    for start, stop in CHUNKS:
        part = slice(start, stop)
        together = running.update(expected[part])
        for point, each in enumerate(alone):
            np.testing.assert_array_equal(together[:, point], each.update(expected[part, point]))
        binned.add(steps[part], loss[part])
        for point, each in enumerate(binned_alone):
            each.add(steps[part], loss[part, point])
        tracker.add(steps[part], {"grad": actual[part]}, ("grad",))
    for point in range(POINTS):
        np.testing.assert_array_equal(binned.values[:, point], binned_alone[point].values)
    assert [alone[p].value for p in range(POINTS)] == running.values.tolist()
    assert [tracker.first(p) for p in range(POINTS)] == [None, None, None, 12, 5]


def test_facts_take_a_point_exactly_when_the_accumulator_has_points():
    with pytest.raises(ValueError):
        agreement.SeriesAccumulator("float64", 3, points=2).facts()
    with pytest.raises(ValueError):
        agreement.SeriesAccumulator("float64", 3).facts(0)


def _naive_facts(actual, expected, atol, rtol, tiny) -> dict:
    """The facts of one whole ``(steps, ...)`` series by the definitions, in one pass over
    everything (no chunks, no point axis, no fast path): what the accumulator must find."""
    error = agreement.absolute_error(actual, expected)
    atol = np.asarray(atol, dtype=np.float64)
    if atol.ndim == 1:
        atol = atol.reshape((-1,) + (1,) * (expected.ndim - 1))
    finite = np.isfinite(expected)
    with np.errstate(invalid="ignore", over="ignore"):
        allowed = atol + rtol * np.abs(np.where(finite, expected, 0.0))
    failing = ~((error == 0) | (finite & (error <= allowed)))
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(error == 0, 0.0, error / np.abs(expected))
    worst = np.unravel_index(int(np.argmax(error)), error.shape)
    failures = np.argwhere(failing)
    with np.errstate(invalid="ignore"):
        flushed = ((actual == 0) & (expected != 0) & (np.abs(expected) < tiny)) | (
            (expected == 0) & (actual != 0) & (np.abs(actual) < tiny)
        )
    return {
        "max_abs": float(error.max()),
        "max_rel": float(np.where(np.isnan(relative), np.inf, relative).max()),
        "worst_step": int(worst[0]),
        "worst_index": tuple(int(i) for i in worst[1:]),
        "first_failing_step": int(failures[0][0]) if len(failures) else None,
        "first_failing_index": tuple(int(i) for i in failures[0][1:]) if len(failures) else None,
        "mismatched": int(failing.sum()),
        "flushed": int(flushed.sum()) if tiny else 0,
        "atol": float(np.max(atol)),
    }


@pytest.mark.parametrize("kind", ["number", "per step", "per element"])
def test_every_point_finds_what_the_definitions_give(kind):
    """Against the definitions computed directly (not through another accumulator, which would
    share any mistake of the accumulator's own arithmetic, fast path included): the chunks
    without a NaN or infinity take the fast path, the others the general one."""
    dtype = "float32"
    expected, actual = _series(dtype)
    atol = _atol(kind, expected)
    steps = np.arange(STEPS)
    together = agreement.SeriesAccumulator(dtype, STEPS - 1, points=POINTS)
    for start, stop in CHUNKS:
        part = slice(start, stop)
        chunk_atol = atol[part] if np.ndim(atol) else atol
        together.add(steps[part], actual[part], expected[part], chunk_atol, 1e-6)
    for point in range(POINTS):
        facts = together.facts(point)
        point_atol = atol[:, point] if np.ndim(atol) > 1 else atol
        naive = _naive_facts(
            actual[:, point], expected[:, point], point_atol, 1e-6, tolerances.TINY[dtype]
        )
        assert {key: facts[key] for key in naive} == naive, f"point {point} ({kind})"


def test_non_finite_values_of_different_kinds_agree_finite_against_non_finite_does_not():
    """After an overflow, inf, -inf or NaN depends on the order of operations (inf - inf):
    any two non-finite values agree; a finite value never matches a non-finite one."""
    reference = np.array([np.inf, np.nan, -np.inf, np.inf, 1.0, np.nan])
    framework = np.array([np.nan, np.inf, np.inf, 1.0, np.nan, np.nan])
    error = agreement.absolute_error(framework, reference)
    assert error.tolist() == [0.0, 0.0, 0.0, np.inf, np.inf, 0.0]
    for chosen, fails_at in (([0, 1, 2, 5], None), ([0, 3], 1), ([4], 0)):
        accumulator = agreement.SeriesAccumulator("float64", len(chosen))
        steps = np.arange(len(chosen))
        accumulator.add(steps, framework[chosen], reference[chosen], 1e-6, 1e-6)
        assert accumulator.facts()["first_failing_step"] == fails_at, chosen
