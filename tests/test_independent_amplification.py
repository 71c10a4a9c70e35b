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
