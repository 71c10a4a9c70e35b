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
