"""The mutant catalogue (``compare.mutants``): every mutant builds, each is caught where it says,
a stale edit is an error, and an edit that changes nothing is reported as NOT caught.

Mutants run in this process (``isolate=False``, as ``run_mutant`` always runs them) for a few
steps, with the oracles off: the comparisons alone must catch every bug, at step 0 or 1. A
representative few (one or more per implementation, the update-rule bugs among them) run in the
default test run; the whole catalogue, in float64 and float32, is marked ``slow``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import implementations
from compare import mutants
from compare.recipe import Recipe

pytest.importorskip("torch")
pytest.importorskip("jax")

#: Enough updates for a bug that first shows at step 1 (a stale gradient, a skipped update).
STEPS = 3
TESTED_DTYPES = ("float64", "float32")

#: Quick to run, the update rule's bugs among them: NumPy's (judged against JAX on the tutorial
#: recipe, one compilation per dtype), torch's and torch_nn's. A mutant of JAX or Flax costs a
#: compilation of its own module (seconds), so those run with the slow ones.
FAST = (
    "update-sign",
    "stale-gradient",
    "derivative-at-Z",
    "skipped-updates",
    "adamw-as-adam-l2",
    "default-lr",
    "torch-nn-no-zero-grad",
    "torch-nn-untransposed-weight",
    "torch-nn-mean-for-sum",
)

#: Spells a keyword's value another way: the same optimizer, so the check must let it through.
NO_OP = mutants.Mutant(
    name="no-op",
    description="maximize=False written as maximize=bool(0)",
    framework="torch",
    find="maximize=False,",
    replace="maximize=bool(0),",
)

#: Reorders a product: the same IEEE result in the NumPy reference.
NUMPY_NO_OP = mutants.Mutant(
    name="numpy-no-op",
    description="A (1 - A) written as (1 - A) A",
    framework="numpy",
    find="return A * (1 - A)",
    replace="return (1 - A) * A",
)


def _params(names):
    return [pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in names]


def _assert_caught_as_expected(result: mutants.MutantResult) -> None:
    mutant = result.mutant
    assert result.error is None, f"{mutant.name} did not train: {result.error}"
    assert result.caught, (
        f"{mutant.name} escaped in {result.dtype}: every comparison with {mutant.reference} passed"
    )
    step, quantity = mutant.expected
    assert result.caught_at is not None, f"{mutant.name} was caught by no comparison"
    assert result.caught_at[0] == step, (
        f"{mutant.name} in {result.dtype}: first caught at step {result.caught_at[0]} "
        f"({result.caught_at[1]}), expected step {step}"
    )
    assert quantity in result.failing_at(step), (
        f"{mutant.name} in {result.dtype}: {quantity} does not fail at step {step}; "
        f"failing there: {result.failing_at(step)}"
    )
    assert result.as_expected


# -- the catalogue --------------------------------------------------------------------------------


@pytest.mark.parametrize("mutant", mutants.CATALOGUE, ids=lambda m: m.name)
def test_every_mutant_builds_from_an_edit_that_matches_once(mutant):
    module = mutants.build(mutant)
    assert module is not implementations.load(mutant.framework)
    assert mutant.framework == module.NAME
    implementations.validate(module)


@pytest.mark.parametrize("mutant", mutants.CATALOGUE, ids=lambda m: m.name)
def test_every_mutant_says_what_it_needs(mutant):
    assert mutant.kind in mutants.KINDS
    assert mutant.expected is not None and mutant.expected[0] in (0, 1), (
        f"{mutant.name} must be caught at step 0 or 1"
    )
    assert set(mutant.dtypes) >= {"float64", "float32"}
    assert mutant.reference == ("jax" if mutant.framework == "numpy" else "numpy")
    recipe = mutant.recipe(7, "float32")
    assert (recipe.steps, recipe.dtype) == (7, "float32")
    if mutant.recipe_changes:
        assert mutant.why, f"{mutant.name} changes the tutorial's recipe without saying why"
        assert recipe != Recipe(steps=7, dtype="float32")
    if mutant.kind == "convention":
        assert mutant.convention, f"{mutant.name} must say which library does which"


def test_the_catalogue_covers_every_implementation_and_the_issue_lists():
    names = [m.name for m in mutants.CATALOGUE]
    assert len(set(names)) == len(names), "duplicate names"
    assert {m.framework for m in mutants.CATALOGUE} == set(implementations.NAMES)
    required = {
        # update-rule bugs (issue 8)
        "default-lr", "skipped-updates", "stale-gradient", "update-sign",
        "optimizer-state-dropped", "adam-no-bias-correction", "eps-inside-sqrt",
        "flax-lr-inside-momentum", "adamw-as-adam-l2", "adamw-decay-not-times-lr",
        "nesterov-swapped",
        # convention mix-ups (issue 10)
        "gelu-tanh-default", "torch-nn-softmax-before-cross-entropy", "torch-nn-mean-for-sum",
        "bias-grad-wrong-axis", "flax-adam-decay-decoupled",
        # the idiomatic tier (issue 11)
        "torch-nn-untransposed-weight", "torch-nn-no-zero-grad", "torch-nn-default-init",
        "flax-nnx-default-init",
    }  # fmt: skip
    assert required <= set(names), f"missing: {sorted(required - set(names))}"
    update_code = {m.framework for m in mutants.CATALOGUE if m.kind in ("update", "convention")}
    assert update_code >= {"numpy", "torch", "jax", "torch_nn", "flax_nnx"}
    assert mutants.get("eps-inside-sqrt").framework == "jax"
    with pytest.raises(KeyError, match="no mutant"):
        mutants.get("no-such-bug")


def test_building_a_mutant_leaves_the_shipped_module_alone():
    original = implementations.load("numpy")
    mutant = mutants.build(mutants.get("loss-typo"))
    A, Y = np.full((1, 2, 3), 0.25), np.zeros((1, 2, 3))
    assert original.half_mse(A, Y)[0] == pytest.approx(0.25**2 / 2)
    assert mutant.half_mse(A, Y)[0] == pytest.approx(0.25 * 2 / 2), "the edit was not taken"
    assert implementations.load("numpy") is original


# -- stale and harmless mutants -------------------------------------------------------------------


def test_a_mutant_that_no_longer_applies_raises_mutant_error():
    stale = dataclasses.replace(NO_OP, name="stale", find="this text is not in the source")
    with pytest.raises(mutants.MutantError, match="stale no longer applies"):
        mutants.build(stale)
    twice = dataclasses.replace(NO_OP, name="twice", find="return ")  # matches many times
    with pytest.raises(mutants.MutantError, match="twice no longer applies"):
        mutants.build(twice)
    later_edit = dataclasses.replace(NO_OP, name="stale-later", also=(("not in the source", ""),))
    with pytest.raises(mutants.MutantError):
        mutants.build(later_edit)


def test_a_stale_mutant_is_reported_as_an_error_not_a_catch():
    stale = dataclasses.replace(NO_OP, name="stale", find="this text is not in the source")
    result = mutants.run_mutant(stale, "float64", STEPS, oracles=False)
    assert result.result is None and not result.caught
    assert "no longer applies" in result.error
    assert mutants.exit_code([result]) == 1


@pytest.mark.parametrize(
    "no_op", [NO_OP, pytest.param(NUMPY_NO_OP, marks=pytest.mark.slow)], ids=lambda m: m.name
)
@pytest.mark.parametrize("dtype", TESTED_DTYPES)
def test_a_no_op_mutant_is_not_caught(no_op, dtype):
    result = mutants.run_mutant(no_op, dtype, STEPS, oracles=False)
    assert result.error is None, result.error
    assert result.result.verdict == "pass"
    assert not result.caught and result.caught_at is None and not result.as_expected
    assert mutants.exit_code([result]) == 1
    assert mutants.catch_counts([result]) == {dtype: (0, 1)}


# -- each mutant caught where it says -------------------------------------------------------------


@pytest.mark.parametrize("dtype", TESTED_DTYPES)
@pytest.mark.parametrize("name", _params([m.name for m in mutants.CATALOGUE]))
def test_each_mutant_is_caught_at_its_step_and_quantity(name, dtype):
    _assert_caught_as_expected(mutants.run_mutant(mutants.get(name), dtype, STEPS, oracles=False))


def test_run_catalogue_counts_per_dtype_and_skips_where_an_edit_is_no_bug():
    no_bug_in_bfloat16 = dataclasses.replace(
        mutants.get("adamw-as-adam-l2"), dtypes=("float64", "float32")
    )
    chosen = [mutants.get("default-lr"), no_bug_in_bfloat16, NO_OP]
    seen = []
    results = mutants.run_catalogue(
        chosen, STEPS, ("float32", "bfloat16"), oracles=False, progress=seen.append
    )
    assert seen == results
    assert [(r.mutant.name, r.dtype) for r in results] == [
        ("default-lr", "float32"),
        ("adamw-as-adam-l2", "float32"),
        ("no-op", "float32"),
        ("default-lr", "bfloat16"),
        ("no-op", "bfloat16"),
    ]
    assert mutants.catch_counts(results) == {"float32": (2, 3), "bfloat16": (1, 2)}
    assert mutants.exit_code(results) == 1
    assert mutants.exit_code(results[:2]) == 0


def test_the_effect_of_a_caught_mutant_is_read_from_its_check():
    result = mutants.run_mutant(mutants.get("default-lr"), "float64", STEPS, oracles=False)
    effect = mutants.effect(result)
    assert (effect.mutant, effect.dtype, effect.steps) == ("default-lr", "float64", STEPS)
    assert (effect.first_step, effect.quantity) == (result.caught_at[0], result.caught_at[1])
    assert effect.max_abs > 0 and effect.max_rel > 0
    # lr 1e-3 instead of 0.1: the mutant's loss falls far less in three steps.
    assert effect.final_loss > effect.reference_loss
    assert result.result.summaries["torch"]["final_loss"] == effect.final_loss


@pytest.mark.slow
def test_the_run_uses_the_check_with_oracles_by_default():
    result = mutants.run_mutant(mutants.get("skipped-updates"), "float64", 2)
    assert result.caught
    assert result.result.precision.oracles, "crosscheck run's oracles ran"


# -- a finding about the engine, kept as a test that flips when it is fixed -----------------------


def test_a_training_loop_bug_showing_after_step_1_is_caught_in_float32():
    every_fourth = dataclasses.replace(
        mutants.get("skipped-updates"),
        name="skip-every-fourth",
        replace="            if k < steps and k % 4 != 3:  # the last state is the trained model",
    )
    float64 = mutants.run_mutant(every_fourth, "float64", 20, oracles=False)
    assert float64.caught, "float64's independent comparisons catch it"
    assert mutants.run_mutant(every_fourth, "float32", 20, oracles=False).caught
