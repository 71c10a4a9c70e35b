"""Property-based tests (hypothesis) of the option parsing and of the comparison."""

from __future__ import annotations

import argparse

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from compare import agreement, cli
from compare.recipe import DATASETS, Recipe, RecipeError
from implementations.contract import ACTIVATIONS, DTYPES

TOLERANCE = agreement.TOLERANCES["float64"]

OPTIONS = [
    "--dataset",
    "--test-size",
    "--split-seed",
    "--hidden",
    "--activation",
    "--init-seed",
    "--init-scale",
    "--lr",
    "--steps",
    "--dtype",
]


PARSER = cli.build_parser()


def _recipe(argv: list[str]) -> Recipe:
    return cli.recipe_from_args(PARSER.parse_args(["run", *argv]))


# Option parsing -----------------------------------------------------------------------------


@given(option=st.sampled_from(OPTIONS), text=st.text(max_size=20))
def test_any_option_value_gives_a_recipe_or_a_one_line_error(option, text):
    try:
        recipe = _recipe([f"{option}={text}"])
    except (cli.UsageError, RecipeError) as error:
        assert "\n" not in str(error), f"a multi-line error: {error}"
    else:
        assert isinstance(recipe, Recipe)


@given(
    dataset=st.sampled_from(DATASETS),
    hidden=st.lists(st.integers(1, 64), min_size=1, max_size=4),
    activation=st.sampled_from(ACTIVATIONS),
    init_seed=st.integers(0, 2**32 - 1),
    init_scale=st.floats(1e-6, 1e3),
    lr=st.floats(1e-9, 1e3),
    steps=st.integers(1, 10**7),
    dtype=st.sampled_from(DTYPES),
)
def test_valid_options_parse_to_the_recipe_they_describe(
    dataset, hidden, activation, init_seed, init_scale, lr, steps, dtype
):
    argv = [
        f"--dataset={dataset}",
        f"--hidden={','.join(map(str, hidden))}",
        f"--activation={activation}",
        f"--init-seed={init_seed}",
        f"--init-scale={init_scale!r}",
        f"--lr={lr!r}",
        f"--steps={steps}",
        f"--dtype={dtype}",
    ]
    expected = Recipe(
        dataset=dataset,
        hidden=tuple(hidden),
        activations=(activation,),
        init_seed=init_seed,
        init_scale=init_scale,
        lr=lr,
        steps=steps,
        dtype=dtype,
    )
    recipe = _recipe(argv)
    assert recipe == expected
    assert Recipe.from_dict(recipe.to_dict()) == recipe, "the recipe does not round-trip"


@given(steps=st.integers(max_value=0), lr=st.floats(max_value=0, allow_nan=False))
def test_non_positive_steps_and_learning_rates_are_refused(steps, lr):
    for argv in ([f"--steps={steps}"], [f"--lr={lr!r}"]):
        try:
            _recipe(argv)
        except (cli.UsageError, RecipeError):
            continue
        raise AssertionError(f"{argv} was accepted")


@given(widths=st.lists(st.integers(-5, 5), min_size=1, max_size=3))
def test_hidden_widths_must_all_be_positive(widths):
    argv = [f"--hidden={','.join(map(str, widths))}"]
    if all(w >= 1 for w in widths):
        assert _recipe(argv).hidden == tuple(widths)
    else:
        try:
            _recipe(argv)
        except (cli.UsageError, RecipeError, argparse.ArgumentError):
            return
        raise AssertionError(f"{argv} was accepted")


# The comparison -------------------------------------------------------------------------------

SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
ANY_FLOATS = hnp.arrays(np.float64, SHAPES, elements=st.floats(allow_nan=True))
FINITE = hnp.arrays(np.float64, SHAPES, elements=st.floats(-1e6, 1e6))


@given(ANY_FLOATS)
def test_identical_arrays_always_agree(values):
    facts = agreement.compare_series(values, values.copy(), TOLERANCE)
    assert facts["first_failing_step"] is None
    assert facts["mismatched"] == 0
    assert facts["max_abs"] == 0.0


@given(expected=FINITE, data=st.data())
@settings(max_examples=200)
def test_one_perturbation_beyond_tolerance_fails_at_its_step_and_index(expected, data):
    position = tuple(data.draw(st.integers(0, side - 1)) for side in expected.shape)
    allowed = TOLERANCE.atol + TOLERANCE.rtol * abs(expected[position])
    factor = data.draw(st.floats(2, 1e6))
    sign = data.draw(st.sampled_from([-1.0, 1.0]))
    actual = expected.copy()
    actual[position] += sign * factor * allowed
    assume(actual[position] != expected[position])
    facts = agreement.compare_series(actual, expected, TOLERANCE)
    assert facts["first_failing_step"] == position[0]
    assert facts["first_failing_index"] == position[1:]
    assert facts["mismatched"] == 1
    assert (facts["worst_step"], facts["worst_index"]) == (position[0], position[1:])


@given(expected=FINITE, data=st.data())
def test_perturbations_within_half_the_tolerance_agree(expected, data):
    allowed = TOLERANCE.atol + TOLERANCE.rtol * np.abs(expected)
    fractions = data.draw(hnp.arrays(np.float64, expected.shape, elements=st.floats(-0.5, 0.5)))
    actual = expected + fractions * allowed
    facts = agreement.compare_series(actual, expected, TOLERANCE)
    assert facts["first_failing_step"] is None, facts


@given(expected=FINITE, data=st.data())
def test_a_nan_where_the_reference_is_finite_always_fails(expected, data):
    position = tuple(data.draw(st.integers(0, side - 1)) for side in expected.shape)
    actual = expected.copy()
    actual[position] = np.nan
    facts = agreement.compare_series(actual, expected, TOLERANCE)
    assert facts["first_failing_step"] == position[0]
    assert facts["first_failing_index"] == position[1:]
