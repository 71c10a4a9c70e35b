"""Synced and independent comparison in every dtype, non-finite runs, near ties, switches."""

from dataclasses import replace

import numpy as np
import pytest

import implementations
from compare import agreement, harness, report, tolerances
from compare.recipe import Recipe

pytest.importorskip("torch")
pytest.importorskip("jax")

STEPS = 40


def _run(**recipe):
    result = harness.run(Recipe(steps=STEPS, **recipe), isolate=False)
    return result, harness.synced(result, isolate=False, oracle_points=0)


@pytest.fixture(scope="module")
def float32_run():
    return _run(dtype="float32")


@pytest.fixture(scope="module")
def float64_run():
    return _run(dtype="float64")


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16", "bfloat16"])
def test_synced_gradients_agree_at_tight_tolerance_in_every_dtype(dtype, float32_run, float64_run):
    runs = {"float32": float32_run, "float64": float64_run}
    result, synced = runs[dtype] if dtype in runs else _run(dtype=dtype)
    rule = tolerances.synced(dtype, len(result.dataset.X_train))
    comparisons = agreement.compare_synced(result, synced, rule)
    assert {c.quantity for c in comparisons} == {"loss", "grad:W1", "grad:W2"}
    for c in comparisons:
        assert c.mode == "synced"
        assert c.passed, report.failure_message(c)


@pytest.mark.parametrize("framework", implementations.NAMES)
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_every_framework_computes_natively_in_the_dtype(framework, dtype, float32_run):
    result, _ = float32_run
    module = implementations.load(framework)
    points = {k: w[:2] for k, w in result.runs["numpy"].trajectory.weights.items()}
    X, Y = result.dataset.X_train, result.dataset.Y_train
    low, _ = module.loss_and_grads(result.network, points, X, Y, dtype)
    high, _ = module.loss_and_grads(result.network, points, X, Y, "float64")
    error = np.abs(low - high) / high
    eps = tolerances.EPS[dtype]
    assert np.all(error > 0), f"{framework} {dtype} loss equals float64's: not computed natively"
    assert np.all(error < 64 * eps), f"{framework} {dtype} loss off by {error} (eps {eps})"


def test_synced_mode_catches_a_wrong_gradient(float32_run):
    result, synced = float32_run
    broken = {name: dict(record) for name, record in synced.items()}
    broken["torch"]["grads"] = dict(broken["torch"]["grads"])
    broken["torch"]["grads"]["W2"] = broken["torch"]["grads"]["W2"] * (1 + 1e-4)
    rule = tolerances.synced("float32", len(result.dataset.X_train))
    failing = [c for c in agreement.compare_synced(result, broken, rule) if not c.passed]
    assert [(c.framework, c.quantity) for c in failing] == [("torch", "grad:W2")]
    assert failing[0].first_failing_step == 0 and failing[0].gating


def test_float32_drift_is_reported_in_both_mode_and_fails_in_independent_mode(float32_run):
    result, _ = float32_run
    strict = tolerances.independent("float32", rtol=1e-12)
    both = agreement.compare_independent(result, strict, "both")
    independent = agreement.compare_independent(result, strict, "independent")
    drift = [c for c in both if not c.passed]
    assert drift and not any(c.gating for c in drift), "per-step float32 drift is not failed"
    assert report.verdict(both) == "pass"
    assert report.verdict(independent) == "fail"
    first = report.first_failure(independent)
    assert first.first_failing_step is not None and first.quantity.startswith(("grad:", "loss"))


def test_float64_drift_still_decides_in_both_mode(float64_run):
    result, _ = float64_run
    strict = tolerances.independent("float64", rtol=1e-17, atol=0.0)
    comparisons = agreement.compare_independent(result, strict, "both")
    assert report.verdict(comparisons) == "fail", "float64 trajectories must match in both mode"


def test_overflowing_run_records_where_each_framework_went_nonfinite():
    result, synced = _run(activations=("identity",), lr=1e3)
    facts = agreement.precision_facts(result, synced, "both")
    steps = facts.nonfinite["first_nonfinite_step"]
    assert set(steps) == set(implementations.NAMES)
    assert all(step is not None for step in steps.values()), f"no NaN/Inf recorded: {steps}"
    assert facts.nonfinite["agree"], f"frameworks overflow at different steps: {steps}"
    document = report.to_json(
        result, agreement.compare_independent(result, tolerances.independent("float64")), {}, facts
    )
    assert document["precision"]["nonfinite"]["first_nonfinite_step"] == steps


def test_nonfinite_disagreement_is_reported(float32_run):
    result, _ = float32_run
    broken = replace(result, runs=dict(result.runs))
    trajectory = replace(
        result.runs["jax"].trajectory, losses=result.runs["jax"].trajectory.losses.copy()
    )
    trajectory.losses[7] = np.nan
    broken.runs["jax"] = replace(result.runs["jax"], trajectory=trajectory)
    facts = agreement.nonfinite_facts(broken)
    assert facts["first_nonfinite_step"]["jax"] == 7 and not facts["agree"]


def test_a_prediction_flip_on_a_near_tie_is_flagged_and_not_failed(float32_run):
    result, _ = float32_run
    outputs = result.runs["numpy"].test_outputs.copy()
    top = np.argsort(outputs[3])[-2:]
    outputs[3, top] = outputs[3, top[1]]  # row 3: its two best classes tie exactly
    outputs[3, top[0]] -= 1e-9
    runs = dict(result.runs)
    runs["numpy"] = replace(result.runs["numpy"], test_outputs=outputs)
    flipped = outputs.copy()
    flipped[3, top[0]] += 2e-9  # the other framework sees the tie the other way round
    runs["torch"] = replace(result.runs["torch"], test_outputs=flipped)
    tied = replace(result, runs=runs)
    rule = tolerances.independent("float32")
    comparisons = agreement.compare_independent(tied, rule, "both")
    predictions = next(
        c for c in comparisons if c.framework == "torch" and c.quantity == "test_predictions"
    )
    assert not predictions.passed and not predictions.gating, "near-tie flips are reported"
    facts = agreement.near_tie_facts(tied, rule.for_series(outputs))
    (row,) = facts["torch"]["disagreements"]
    assert row["row"] == 3 and row["near_tie"]
    assert facts["numpy"]["smallest_margin"] == pytest.approx(1e-9, rel=1e-3)
    # A flip far from a tie is a different model and fails.
    far = outputs.copy()
    far[5] = 0.0
    far[5, (np.argmax(outputs[5]) + 1) % 3] = 1.0
    runs["torch"] = replace(result.runs["torch"], test_outputs=far)
    comparisons = agreement.compare_independent(replace(result, runs=runs), rule, "both")
    assert report.verdict(comparisons) == "fail"


def test_precision_switches_are_recorded_and_a_change_fails(float32_run):
    result, synced = float32_run
    facts = agreement.precision_facts(result, synced, "both")
    assert facts.environment["torch"]["torch.float32_matmul_precision"] == "highest"
    assert facts.environment["jax"]["jax_enable_x64"] is True
    assert "numpy.blas" in facts.environment["numpy"]
    assert facts.environment_changes == [] and facts.passed
    changed = {name: dict(record) for name, record in synced.items()}
    after = dict(changed["torch"]["precision"]["after"], **{"torch.num_threads": 99})
    changed["torch"]["precision"] = {
        "before": changed["torch"]["precision"]["before"],
        "after": after,
    }
    facts = agreement.precision_facts(result, changed, "both")
    assert (
        len(facts.environment_changes) == 1 and "torch.num_threads" in facts.environment_changes[0]
    )
    assert report.verdict([], facts) == "fail"


def test_synced_evaluation_runs_in_worker_processes():
    result = harness.run(Recipe(steps=5, dtype="float32"), ("numpy", "jax"), isolate=False)
    synced = harness.synced(result, isolate=True, oracle_points=1)
    assert set(synced) == {"numpy", "jax"}
    assert synced["jax"]["grads"]["W1"].shape == (5, 4, 2)
    assert [r["step"] for r in synced["jax"]["oracles"]] == [0, 0]
    assert synced["jax"]["precision"]["before"]["jax_enable_x64"] is True
