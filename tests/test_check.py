"""``check``: the public entry point, its arguments, and the rules of THE verdict."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import compare
from compare import agreement, harness, tolerances, trajectories
from compare.check import CheckError, check, trained_model_comparisons
from compare.recipe import Recipe
from implementations import numpy_manual

TINY = Recipe(steps=5)


def _pair(recipe=TINY, **options):
    """numpy against itself through ``modules=``: every fact is exact agreement."""
    return check(
        recipe,
        frameworks=("numpy", "copy"),
        modules={"copy": numpy_manual},
        isolate=False,
        **options,
    )


@pytest.mark.parametrize("first", ["", "from compare.check import CheckResult;"])
def test_the_front_door_is_cheap_and_check_works_whatever_was_imported_first(first):
    code = (
        "import sys, compare; assert 'numpy' not in sys.modules, 'import compare is not cheap';"
        + first
        + "from compare import Recipe, check\n"
        "try:\n    check(Recipe(steps=1), frameworks=('numpy',))\n"
        "except ValueError as error:\n    print(type(error).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "CheckError"


@pytest.mark.slow
def test_the_tutorial_passes_in_every_framework():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    result = compare.check(compare.Recipe(steps=200))
    assert result.verdict == "pass", result.first_failure
    assert set(result.summaries) == {"numpy", "torch", "jax"}
    modes = {(c.mode, c.framework, c.against) for c in result.comparisons}
    assert ("synced", "torch", "numpy") in modes and ("independent", "jax", "numpy") in modes
    assert all(result.precision.oracles[name] for name in ("numpy", "torch", "jax"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rtol": float("nan")}, "rtol must be a finite number"),
        ({"rtol": float("inf")}, "rtol must be a finite number"),
        ({"atol": -1e-3}, "atol must be a finite number"),
        ({"atol": float("inf")}, "atol must be a finite number"),
        ({"rtol": "1e-3"}, "rtol must be a number"),
        ({"mode": "both ways"}, "unknown mode"),
        ({"record_every": 0}, "record_every must be a positive integer"),
        ({"frameworks": ("numpy",)}, "nothing to compare"),
        ({"frameworks": ()}, "name a second framework"),
        ({"recipe": {"steps": 5}}, "check takes a compare.Recipe, got dict"),
    ],
)
def test_bad_arguments_are_refused_in_one_line_before_anything_runs(options, message):
    with pytest.raises(CheckError) as refused:
        check(options.pop("recipe", TINY), **options)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_identical_implementations_agree_on_everything():
    result = _pair(Recipe(steps=5, optimizer="adam", biases=True))
    assert result.verdict == "pass"
    assert all(c.max_abs == 0 and c.passed for c in result.comparisons)
    quantities_seen = {c.quantity for c in result.comparisons}
    assert {"bias:b1", "grad:b2", "state:m:W1", "state:v:b2", "state:step"} <= quantities_seen
    steps = 5
    loss = next(c for c in result.comparisons if c.mode == "independent" and c.quantity == "loss")
    assert loss.total == steps + 1, "every state is compared"
    w1 = next(
        c
        for c in result.comparisons
        if c.mode == "synced" and c.against == "numpy" and c.quantity == "weight:W1"
    )
    # Every update's next state, and the state each step recorded against the one it was given.
    assert w1.total == steps * 4 * 2 + (steps + 1) * 4 * 2, "every state is compared"


def test_below_float64_drift_is_reported_and_the_synced_step_decides():
    result = _pair(Recipe(steps=5, dtype="float32"))
    gating = {(c.mode, c.quantity): c.gating for c in result.comparisons if c.against == "numpy"}
    assert not gating[("independent", "weight:W1")], "float32 drift is reported, not judged"
    assert not gating[("independent", "test_outputs")]
    assert gating[("independent", "test_predictions")], "the trained model's classes decide"
    assert gating[("synced", "grad:W1")] and gating[("synced", "weight:W1")]
    assert not gating[("synced", "train_accuracy")], "a training row may sit on a near tie"
    float64 = _pair(Recipe(steps=5))
    assert all(c.gating for c in float64.comparisons if c.quantity != "train_accuracy")
    independent = _pair(Recipe(steps=5, dtype="float32"), mode="independent")
    judged = {c.quantity for c in independent.comparisons if c.gating}
    assert judged == {"test_predictions", "test_accuracy"}, "below float64 drift is reported"


def _outputs():
    # Row 0 is a near tie (margin 1e-9), rows 1 and 2 are clear.
    return np.array([[0.5, 0.5 + 1e-9, 0.1], [0.9, 0.1, 0.0], [0.0, 0.2, 0.8]])


def _model(actual, expected=None, dtype="float32", drift_gates=False, weights_outputs=None):
    expected = _outputs() if expected is None else expected
    return {
        c.quantity: c
        for c in trained_model_comparisons(
            "torch",
            "numpy",
            actual,
            expected,
            np.array([1, 0, 2]),
            tolerances.independent(dtype),
            dtype=dtype,
            drift_gates=drift_gates,
            step=7,
            weights_outputs=weights_outputs,
        )
    }


def test_a_class_flipped_on_a_near_tie_is_reported_when_the_outputs_agree():
    flipped = _outputs()
    flipped[0, 0] += 2e-9  # the tie breaks the other way, the outputs move by 2e-9
    found = _model(flipped)
    assert not found["test_predictions"].passed and not found["test_predictions"].gating
    assert not found["test_accuracy"].gating
    assert found["test_outputs"].passed
    assert found["test_predictions"].worst_step == 7


def test_the_near_tie_rule_requires_the_test_outputs_to_agree():
    flipped = _outputs()
    flipped[0, 0] += 2e-9
    flipped[2, 2] += 0.1  # another row's outputs disagree: the models are not the same
    found = _model(flipped)
    assert not found["test_outputs"].passed
    assert found["test_predictions"].gating, "a flipped tie with disagreeing outputs must fail"


def test_a_class_that_differs_on_a_clear_row_fails():
    moved = _outputs()
    moved[1] = [0.1, 0.9, 0.0]
    found = _model(moved)
    assert found["test_predictions"].gating and not found["test_predictions"].passed
    assert found["test_predictions"].first_failing_index == (1,)
    assert found["test_accuracy"].max_abs == pytest.approx(1 / 3)


def test_a_class_the_drifted_weights_give_is_reported_below_float64_and_judged_in_float64():
    """Issue 8: after a long 16-bit run the weights drift apart (reported, not judged), and a
    clear row's class moves with them: each model's class is its own weights' class."""
    drifted = _outputs()
    drifted[1] = [0.1, 0.9, 0.0]
    weights = (drifted + 0.01, _outputs())  # the float64 forward of each model's own weights
    found = _model(drifted, weights_outputs=weights)
    assert not found["test_predictions"].passed and not found["test_predictions"].gating
    assert not found["test_accuracy"].gating
    judged = _model(drifted, dtype="float64", drift_gates=True, weights_outputs=weights)
    assert judged["test_predictions"].gating, "where drift decides, the classes decide"


def test_a_class_its_own_weights_do_not_give_fails_in_every_dtype():
    """A ``predict`` that disagrees with the trained weights is no drift."""
    wrong = _outputs()
    wrong[1] = [0.1, 0.9, 0.0]
    found = _model(wrong, weights_outputs=(_outputs(), _outputs()))
    assert found["test_predictions"].gating and not found["test_predictions"].passed
    reference_wrong = _model(
        wrong, weights_outputs=(wrong, np.array([[0.5, 0.6, 0.1], [0.1, 0.9, 0.0], [0, 0, 1.0]]))
    )
    assert reference_wrong["test_predictions"].gating, "the reference's predict is held too"


def predict_reversing_the_classes():
    """The NumPy implementation with a ``predict`` that reverses the outputs' order."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("crosscheck_reversed", numpy_manual.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    honest = module.predict
    module.predict = lambda problem, params, X: honest(problem, params, X)[..., ::-1]
    return module


@pytest.mark.parametrize("mode", ["independent", "both"])
def test_a_wrong_predict_fails_below_float64(mode):
    result = check(
        Recipe(steps=5, dtype="float32"),
        frameworks=("numpy", "wrong"),
        modules={"wrong": predict_reversing_the_classes()},
        mode=mode,
        oracles=False,
        isolate=False,
    )
    failed = [c.quantity for c in result.comparisons if c.gating and not c.passed]
    assert result.verdict == "fail" and "test_predictions" in failed, failed


def test_agreeing_classes_are_judged():
    found = _model(_outputs())
    assert found["test_predictions"].gating and found["test_predictions"].passed


def test_a_failed_oracle_or_a_changed_switch_fails_the_verdict():
    passing = [
        agreement.Comparison(
            "torch", "numpy", "synced", "loss", 0, 0, 0, (), None, None, 0, 1, 0, 0
        )
    ]
    facts = agreement.PrecisionFacts("both", "float64", {}, {}, {}, [], {})
    from compare.check import verdict
    from compare.oracle import OracleResult

    assert verdict(passing, facts) == "pass"
    facts.oracles = {"torch": [OracleResult("torch", "taylor", 0, None, 1.75, 1.0, False)]}
    assert verdict(passing, facts) == "fail"
    facts.oracles = {}
    facts.environment_changes = ["torch: threads was 1 at the start, 2 after training"]
    assert verdict(passing, facts) == "fail"


def test_a_diverging_run_agrees_on_where_it_overflowed():
    result = _pair(Recipe(steps=40, activations=("identity",), lr=10.0))
    steps = result.precision.nonfinite["first_nonfinite_step"]
    assert steps["numpy"] == steps["copy"] is not None, steps
    assert result.precision.nonfinite["agree"]
    assert result.verdict == "pass", "identical NaNs agree"


def test_trajectories_hold_every_state_and_every_update(tmp_path):
    steps = 7
    result = _pair(Recipe(steps=steps, optimizer="momentum", momentum=0.9), trajectories=True)
    path = trajectories.write(tmp_path / "run.npz", result)
    found = trajectories.read(path)
    assert found["numpy/loss"].shape == (steps + 1,)
    assert found["numpy/weight:W1"].shape == (steps + 1, 4, 2)
    assert found["copy/grad:W1"].shape == (steps, 4, 2)
    assert found["numpy/state:momentum:W2"].shape == (steps + 1, 2, 3)
    assert list(found["steps"]) == list(range(steps + 1))
    assert found["numpy/loss"][-1] == result.summaries["numpy"]["final_loss"]
    initial = numpy_manual_initial(result)
    assert np.array_equal(found["numpy/weight:W1"][0], initial["W1"])


def numpy_manual_initial(result):
    from compare import weights

    return weights.initial_params(result.recipe, result.network)


def test_record_every_compares_every_kth_state_and_the_one_after_it():
    result = _pair(Recipe(steps=20), record_every=5, trajectories=True)
    kept = [0, 1, 5, 6, 10, 11, 15, 16, 20]
    assert list(result.trajectory_steps) == kept
    loss = next(c for c in result.comparisons if c.mode == "independent" and c.quantity == "loss")
    assert loss.total == len(kept)
    synced = next(
        c
        for c in result.comparisons
        if c.mode == "synced" and c.against == "numpy" and c.quantity == "weight:W1"
    )
    # Next states of the steps from 0, 5, 10, 15 (20 is the last state), and the recorded
    # state of each step from 0, 5, 10, 15, 20 against the state it was given.
    assert synced.total == 4 * 8 + 5 * 8


def test_a_run_too_large_for_memory_is_refused_up_front(monkeypatch):
    monkeypatch.setattr(harness, "available_memory", lambda: 50 * 2**20)

    def started(framework, done, total):
        raise AssertionError("a run too large for memory started training")

    with pytest.raises(harness.TooLarge) as refused:
        _pair(Recipe(steps=2_000_000), trajectories=True, progress=started)
    message = str(refused.value)
    assert "--record-every" in message and "GB" in message and "\n" not in message


@pytest.mark.parametrize(
    ("dtype", "optimizer"),
    [
        ("float32", "momentum"),
        pytest.param("float32", "adam", marks=pytest.mark.slow),
        pytest.param("float16", "momentum", marks=pytest.mark.slow),
        pytest.param("float16", "adam", marks=pytest.mark.slow),
        pytest.param("bfloat16", "momentum", marks=pytest.mark.slow),
        pytest.param("bfloat16", "adam", marks=pytest.mark.slow),
    ],
)
def test_honest_frameworks_agree_at_every_step_below_float64(dtype, optimizer):
    """No false alarm from the synced step's tolerances in the dtypes where they are tight."""
    pytest.importorskip("torch")
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    settings = {"momentum": 0.9} if optimizer == "momentum" else {"eps": 1e-3}
    recipe = Recipe(steps=25, dtype=dtype, optimizer=optimizer, lr=0.05, biases=True, **settings)
    result = check(recipe, frameworks=("numpy", "torch"), oracles=False)
    assert result.verdict == "pass", result.first_failure
