"""The per-dtype tolerance rules, ULPs and the growth facts, on hand-made series."""

import math

import numpy as np
import pytest

from compare import agreement, tolerances

DTYPES = ("float64", "float32", "float16", "bfloat16")


@pytest.mark.parametrize("dtype", DTYPES)
def test_rules_are_derived_from_machine_epsilon(dtype):
    eps = tolerances.EPS[dtype]
    independent = tolerances.independent(dtype)
    synced = tolerances.synced(dtype, rows=130)
    assert independent.rtol == pytest.approx(math.sqrt(eps)), "independent rtol is sqrt(eps)"
    assert independent.atol == pytest.approx(independent.rtol * 1e-3)
    expected = min(8 * math.sqrt(130) * eps, math.sqrt(eps))
    assert synced.rtol == pytest.approx(expected), "synced rtol is 8 sqrt(n) eps, at most sqrt(eps)"
    assert synced.rtol <= independent.rtol, "synced is never looser than independent"


def test_synced_atol_scales_with_the_quantity():
    rule = tolerances.synced("float32", rows=100)
    tolerance = rule.for_series(np.array([[0.5, -2.0, np.nan], [1e-9, 0.0, np.inf]]))
    assert tolerance.atol == pytest.approx(rule.rtol * 2.0), "atol = rtol * max finite |b|"


def test_an_rtol_override_carries_atol_with_it():
    assert tolerances.independent("float32", rtol=1e-12).atol == pytest.approx(1e-15)
    assert tolerances.independent("float32", rtol=1e-12, atol=0.5).atol == 0.5
    assert tolerances.synced("float32", 130, rtol=1e-12).for_series(np.ones(3)).atol == 1e-12


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_ulp_scale_matches_numpy_spacing(dtype):
    values = np.array([1.0, 0.75, 3.0e-3, 123.0, 1e-30 if dtype != "float16" else 1e-6])
    expected = np.spacing(values.astype(dtype)).astype(np.float64)
    np.testing.assert_array_equal(tolerances.ulp_scale(values, dtype), expected)


def test_drift_decides_the_verdict_only_where_rounding_cannot_reach_it():
    assert tolerances.drift_is_verdict("float64", "both")
    assert not tolerances.drift_is_verdict("float32", "both")
    assert tolerances.drift_is_verdict("float32", "independent")


def test_growth_reports_the_steps_where_the_error_crosses_each_level():
    expected = np.zeros((1000, 2))
    actual = expected.copy()
    actual[:, 0] = 1e-8 * 1.02 ** np.arange(1000)  # exponential drift, as training amplifies
    facts = agreement.error_growth(actual, expected, "float32")
    crossings = dict(facts["crossings"])
    first = {level: int(np.argmax(actual[:, 0] >= level)) for level in (1e-6, 1e-4, 1e-2)}
    assert crossings == first, f"crossings {crossings}, expected {first}"
    steps = [step for step, _ in facts["growth"]]
    assert steps[:4] == [0, 1, 2, 5] and steps[-1] == 999, f"log-spaced steps, got {steps}"
    errors = [error for _, error in facts["growth"]]
    assert errors == sorted(errors), "growth is the running maximum, so it never falls"


def test_growth_of_series_that_agree_never_crosses():
    series = np.ones((50, 3))
    facts = agreement.error_growth(series, series, "float64")
    assert all(step is None for _, step in facts["crossings"])
    assert facts["max_ulp"] == 0.0


def test_error_in_ulps_is_relative_to_the_steps_largest_value():
    expected = np.array([[1.0, 1e-9]])
    actual = np.array([[1.0 + 3 * np.spacing(np.float32(1.0)), 0.0]], dtype=np.float64)
    facts = agreement.error_growth(actual, expected, "float32")
    assert facts["max_ulp"] == pytest.approx(3.0), "3 float32 ULPs of the largest element"


def test_a_nonfinite_value_on_one_side_only_is_an_infinite_error():
    expected = np.array([[1.0], [np.nan], [np.inf]])
    assert list(agreement.max_abs_by_step(expected, expected)) == [0.0, 0.0, 0.0]
    actual = np.array([[1.0], [2.0], [np.inf]])
    assert list(agreement.max_abs_by_step(actual, expected)) == [0.0, np.inf, 0.0]


def test_near_tie_rows_are_those_the_tolerance_cannot_order():
    outputs = np.array([[0.5, 0.5 - 1e-9, 0.1], [0.9, 0.1, 0.0]])
    ties = agreement.near_tie_rows(outputs, tolerances.Tolerance(rtol=1e-6, atol=0.0))
    assert list(ties) == [True, False]
    assert agreement.top1_margins(outputs)[1] == pytest.approx(0.8)
