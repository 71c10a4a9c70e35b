"""The cross-check as a pytest matrix: frameworks x dtypes x recipes, one test each.

Run it in your own CI, spread over cores with pytest-xdist::

    pytest --pyargs compare.matrix -n auto                        # everything
    pytest --pyargs compare.matrix -n auto -m "not slow"          # skip the full-length recipes
    pytest --pyargs compare.matrix -k "torch and float32"         # one slice

Every case is judged by ``compare.check.check``, the same verdict as ``crosscheck run``, and
marked ``crosscheck``; the full-length recipes are also marked ``slow``
(``compare.pytest_plugin`` registers both markers). Test ids read ``framework-dtype-recipe``
(``torch-float64-tutorial``), so ``-k`` selects by any of them. Each case trains in the test's
own process (no worker processes), so xdist's workers are the only parallelism.

Add your own recipes (or your own implementation, as a path or module spec) by writing a test
that calls ``check_agreement``. This module is a front end, like the CLI: it may use the
presentation's phrases for its failure messages; the library never imports it.
"""

from __future__ import annotations

import pytest

import implementations
from compare.check import CheckResult, check
from compare.present import text
from compare.recipe import Recipe

#: Name -> recipe; each case sets its own dtype and, for the quick ones, fewer steps.
RECIPES: dict[str, Recipe] = {
    "tutorial": Recipe(),
    "deep": Recipe(hidden=(5, 5), init_seed=3),
    "linear-output": Recipe(hidden=(3,), activations=("sigmoid", "identity")),
    "adam-biases": Recipe(biases=True, optimizer="adam", lr=0.01, steps=1000),
}

#: Steps of the quick cases; the full ones train each recipe's own (the tutorial's 5000).
QUICK_STEPS = 100

#: Compared with the NumPy reference: every built-in implementation.
FRAMEWORKS = tuple(name for name in implementations.NAMES if name != "numpy")

DTYPES = ("float64", "float32")


def check_agreement(recipe: Recipe, framework: str, reference: str = "numpy") -> CheckResult:
    """Check ``framework`` against ``reference`` on ``recipe``; fail with the verdict line and
    every failing comparison. Returns the ``CheckResult`` of a pass.

    Skips when a built-in framework is not installed.
    """
    for name in (reference, framework):
        if name in implementations.NAMES:
            try:
                implementations.check_available(name)
            except implementations.FrameworkUnavailable as error:
                pytest.skip(str(error))
    result = check(recipe, frameworks=(reference, framework), reference=reference, isolate=False)
    failing = [c for c in result.comparisons if not c.passed and c.gating]
    assert result.verdict == "pass", "\n".join(
        [text.verdict_line(result), *(text.failure_message(c) for c in failing)]
    )
    return result


def cases():
    """Every case of the matrix: ``pytest.param(framework, recipe)`` with its id and marks."""
    for recipe_name, recipe in RECIPES.items():
        for length in ("quick", "full"):
            steps = min(QUICK_STEPS, recipe.steps) if length == "quick" else recipe.steps
            marks = [pytest.mark.crosscheck] + ([pytest.mark.slow] if length == "full" else [])
            name = recipe_name if length == "quick" else f"{recipe_name}-full"
            for dtype in DTYPES:
                for framework in FRAMEWORKS:
                    yield pytest.param(
                        framework,
                        recipe.replace(dtype=dtype, steps=steps),
                        id=f"{framework}-{dtype}-{name}",
                        marks=marks,
                    )


@pytest.mark.parametrize(("framework", "recipe"), list(cases()))
def test_framework_agrees_with_numpy(framework: str, recipe: Recipe) -> None:
    """``framework`` agrees with the NumPy reference on ``recipe``, by ``check``'s verdict."""
    check_agreement(recipe, framework)
