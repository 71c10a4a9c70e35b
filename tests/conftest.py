"""Shared fixtures: the reference recipe's run, computed once per test session."""

from __future__ import annotations

import pytest

from compare import agreement, harness
from compare.recipe import Recipe


@pytest.fixture(scope="session")
def reference_run() -> harness.RunResult:
    """The tutorial's recipe, all three frameworks, trained as `crosscheck run` trains them."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    return harness.run(Recipe())


@pytest.fixture(scope="session")
def reference_comparisons(reference_run) -> list[agreement.Comparison]:
    """Every comparison of the reference run at the default float64 tolerance."""
    return agreement.compare_run(reference_run)
