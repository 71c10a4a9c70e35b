"""The cross-check as a pytest matrix: frameworks x dtypes x recipes, one test each.

Run it in your own CI, spread over cores with pytest-xdist::

    pytest --pyargs compare.matrix -n auto                        # everything
    pytest --pyargs compare.matrix -n auto -m "not slow"          # skip the full-length recipes
    pytest --pyargs compare.matrix -k "torch and float32"         # one slice

Every case is marked ``crosscheck``; the full 5000-step recipes are also marked ``slow``
(``compare.pytest_plugin`` registers both markers). Test ids read
``framework-dtype-recipe`` (``torch-float64-tutorial``), so ``-k`` selects by any of them.
Each case trains in the test's own process (no worker processes), so xdist's workers are the
only parallelism and a failure's traceback points at the comparison that failed.

The recipes below are the ones crosscheck guarantees; add your own by writing a test module
that imports ``check_agreement`` and parametrises it over your recipes.
"""

from __future__ import annotations

import pytest

import implementations
from compare import agreement, harness, report
from compare.recipe import Recipe

#: Name -> recipe; each case sets its own dtype and, for the quick ones, fewer steps.
RECIPES: dict[str, Recipe] = {
    "tutorial": Recipe(),
    "deep": Recipe(hidden=(5, 5), init_seed=3),
    "linear-output": Recipe(hidden=(3,), activations=("sigmoid", "identity")),
}

#: Steps of the quick cases; the full ones train each recipe's own (the tutorial's 5000).
QUICK_STEPS = 300

#: Compared with the NumPy reference.
FRAMEWORKS = tuple(name for name in implementations.NAMES if name != "numpy")

DTYPES = ("float64", "float32")


def check_agreement(recipe: Recipe, framework: str, reference: str = "numpy") -> None:
    """Train ``framework`` and ``reference`` on ``recipe``; fail with the first mismatch.

    Skips when ``framework`` is not installed.
    """
    try:
        implementations.check_available(framework)
    except implementations.FrameworkUnavailable as error:
        pytest.skip(str(error))
    result = harness.run(recipe, [framework], reference, isolate=False)
    comparisons = agreement.compare_run(result)
    failing = [c for c in comparisons if not c.passed]
    assert not failing, "\n".join(report.failure_message(c) for c in failing)


def _cases():
    for recipe_name, recipe in RECIPES.items():
        for length in ("quick", "full"):
            steps = QUICK_STEPS if length == "quick" else recipe.steps
            marks = [pytest.mark.crosscheck] + ([pytest.mark.slow] if length == "full" else [])
            for dtype in DTYPES:
                for framework in FRAMEWORKS:
                    name = recipe_name if length == "quick" else f"{recipe_name}-full"
                    yield pytest.param(
                        framework,
                        Recipe(**{**recipe.to_dict(), "dtype": dtype, "steps": steps}),
                        id=f"{framework}-{dtype}-{name}",
                        marks=marks,
                    )


@pytest.mark.parametrize(("framework", "recipe"), list(_cases()))
def test_framework_agrees_with_numpy(framework: str, recipe: Recipe) -> None:
    """``framework`` matches the NumPy reference at every step of ``recipe``."""
    check_agreement(recipe, framework)
