"""Float64 in independent mode alone, where Adam multiplies the rounding of gradient elements far
below its eps by ``lr / eps``: one correct step already parts the trajectories beyond the
independent tolerance, so drift that begins there is reported (``amplifying_from``), while the
first step, which starts from the shared initial state, is still judged by the synced bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from compare import Recipe, check

WRONG_LR = str(Path(__file__).parent / "plugins" / "wrong_lr.py")

#: A false alarm of the benchmark (unscaled breast_cancer, tanh units saturated, AdamW): JAX's
#: W1 parted from NumPy's by 7e-9 after one step, against a tolerance of 1.6e-10.
SATURATED_ADAM = Recipe(
    dataset="breast_cancer",
    hidden=(16,),
    activations=("tanh", "sigmoid"),
    loss="binary-cross-entropy",
    standardize=False,
    optimizer="adamw",
    lr=0.01,
    weight_decay=0.01,
    init_scheme="glorot",
    steps=6,
    init_seed=356,
    split_seed=95,
)


def test_drift_from_a_step_that_may_outgrow_the_tolerance_is_reported():
    pytest.importorskip("jax")
    result = check(
        SATURATED_ADAM, ("numpy", "jax"), mode="independent", oracles=False, isolate=False
    )
    drifted = [c for c in result.comparisons if c.mode == "independent" and not c.passed]
    assert drifted and all(not c.gating for c in drifted), [
        (c.quantity, c.gating, c.first_failing_step) for c in drifted
    ]
    assert result.precision.amplifying_from == 1
    assert result.precision.drift_reported == ("jax",)
    assert result.verdict == "pass"


def test_a_wrong_learning_rate_still_fails_there():
    result = check(
        SATURATED_ADAM, ("numpy", WRONG_LR), mode="independent", oracles=False, isolate=False
    )
    assert result.precision.amplifying_from == 1
    assert result.precision.drift_reported == ()
    assert result.verdict == "fail"
    assert result.first_failure.first_failing_step == 1


def test_standardized_data_keeps_every_state_judged():
    result = check(
        SATURATED_ADAM.replace(standardize=True),
        ("numpy", WRONG_LR),
        mode="independent",
        oracles=False,
        isolate=False,
    )
    assert result.precision.amplifying_from is None
    assert result.verdict == "fail"


def test_each_seed_of_a_batch_has_its_own_onset_and_first_step():
    """Seeds checked side by side (``check_seeds``) reach what each reaches alone: the onset and
    the first-step check are per seed (a judge that shared them across seeds fails here)."""
    pytest.importorskip("jax")
    from compare import check_seeds

    recipe = SATURATED_ADAM.replace(lr=0.001)  # where the seeds' onsets differ
    seeds = [356, 123, 7]
    together = check_seeds(
        recipe, seeds, ("numpy", "jax"), mode="independent", oracles=False, isolate=False
    )
    alone = [
        check(
            recipe.replace(init_seed=seed),
            ("numpy", "jax"),
            mode="independent",
            oracles=False,
            isolate=False,
        )
        for seed in seeds
    ]
    for seed, batched, single in zip(seeds, together, alone, strict=True):
        assert batched.precision.amplifying_from == single.precision.amplifying_from, seed
        assert batched.precision.drift_reported == single.precision.drift_reported, seed
        assert batched.verdict == single.verdict, seed
    assert len({r.precision.amplifying_from for r in alone}) > 1, "the seeds should differ"


#: A false alarm of the benchmark: unscaled breast_cancer, saturated gelu and tanh units, Adam.
#: Every step is correct (mode both passes it, measuring an amplification of about 1e11), yet
#: the frameworks' rounding grows 10 to 20-fold a step from the first, so torch's grad:W2 parted
#: from NumPy's beyond the independent tolerance at state 5, long before one correct step alone
#: could (``amplifying_from`` 22).
CHAOTIC_ADAM = Recipe(
    dataset="breast_cancer",
    hidden=(4, 3),
    activations=("gelu", "gelu", "tanh"),
    loss="half-mse",
    biases=False,
    standardize=False,
    optimizer="adam",
    lr=0.01,
    steps=12,
    init_seed=497,
    split_seed=723,
)


def test_drift_before_the_onset_is_decided_by_a_synced_run():
    result = check(CHAOTIC_ADAM, ("numpy", "torch"), mode="independent", isolate=False)
    assert result.precision.synced_diagnosis == ("torch",)
    assert result.mode == "both"
    drifted = [c for c in result.comparisons if c.mode == "independent" and not c.passed]
    assert drifted and all(not c.gating for c in drifted)
    assert all(c.passed for c in result.comparisons if c.mode == "synced")
    assert result.precision.drift_reported == ("torch",)
    assert result.precision.oracles["torch"], "the independent run's oracles are kept"
    assert result.verdict == "pass"
    # The report says why the result is mode both's.
    from rich.console import Console

    from compare.present import json_report, terminal

    document = json_report.to_json(result, {})
    assert document["precision"]["synced_diagnosis"] == ["torch"]
    assert document["mode"] == "both"
    console = Console(record=True, width=200)
    terminal.render_precision(console, result)
    assert "so the run was repeated in mode both" in console.export_text()


def test_a_bug_from_the_fourth_step_on_fails_the_synced_run():
    """An Adam learning rate 2% too large from t = 4 on (step 3): the first step agrees, the
    drift fails later, and the synced run it triggers names the wrong step."""
    from compare import testing
    from implementations import numpy_manual

    late = testing.mutate(
        numpy_manual,
        [
            (
                "step_size = opt.lr / bias_correction1",
                "step_size = opt.lr * np.where(t >= 4, 1.02, 1.0) / bias_correction1",
            )
        ],
        "late_wrong_lr",
    )
    result = check(
        CHAOTIC_ADAM,
        ("numpy", "late"),
        mode="independent",
        oracles=False,
        modules={"late": late},
        isolate=False,
    )
    assert result.precision.synced_diagnosis == ("late",)
    assert result.verdict == "fail"
    first = result.first_failure
    assert (first.mode, first.framework, first.first_failing_step) == ("synced", "late", 3), first
