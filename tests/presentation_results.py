"""Made-to-measure ``CheckResult`` objects for the presentation tests.

Each comparison's facts are computed by the library's own accumulator from arrays the test
chooses (so a test knows every number: the greatest absolute and relative difference, the
first failing step and element), and the verdict by ``compare.check.verdict``, the library's
rule. Nothing trains: the presentation is tested on facts that are known exactly.
"""

from __future__ import annotations

import numpy as np

from compare import agreement, data
from compare.agreement import Comparison, PrecisionFacts
from compare.check import CheckResult, PlotSeries, verdict
from compare.oracle import OracleResult
from compare.recipe import Recipe

RECIPE = Recipe(steps=3)


def comparison(
    actual,
    expected,
    *,
    framework: str = "torch",
    quantity: str = "grad:W1",
    mode: str = "synced",
    rtol: float = 1e-8,
    atol: float = 1e-11,
    gating: bool = True,
    exact: bool = False,
) -> Comparison:
    """The comparison of two ``(steps, ...)`` series, its facts from ``SeriesAccumulator``."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    steps = np.arange(len(expected))
    accumulator = agreement.SeriesAccumulator("float64", len(expected) - 1, exact=exact)
    accumulator.add(steps, actual, expected, 0.0 if exact else atol, 0.0 if exact else rtol)
    return Comparison(
        framework=framework,
        against="numpy",
        mode=mode,
        quantity=quantity,
        rtol=0.0 if exact else rtol,
        gating=gating,
        **accumulator.facts(),
    )


#: A gradient that agrees; and one that first fails at step 2, element (1, 0), where the
#: absolute difference is 0.5 and the relative 0.5 / 4 (and the relative error is larger
#: elsewhere: 0.01 / 0.001 = 10 at step 1, element (0, 1), whose absolute error is small).
EXPECTED = np.array(
    [
        [[1.0, 2.0], [3.0, 4.0]],
        [[1.0, 1e-3], [3.0, 4.0]],
        [[1.0, 2.0], [4.0, 4.0]],
    ]
)
AGREEING = EXPECTED * (1 + 1e-12)
FAILING = EXPECTED.copy()
FAILING[2, 1, 0] += 0.5
FAILING[1, 0, 1] += 0.01


def oracle(framework: str = "torch", *, passed: bool = True, checker: str = "checker") -> object:
    """An oracle record: a finite-difference check whose error and threshold are known."""
    return OracleResult(
        framework=framework,
        checker=checker,
        state=2,
        step=1e-6,
        threshold=3.5e-7,
        error=1.2e-8 if passed else 9.8e-6,
        passed=passed,
    )


def precision(
    oracles: dict | None = None, changes: list[str] | None = None, near_ties: dict | None = None
) -> PrecisionFacts:
    """Precision facts with no non-finite value and the given oracles, changes, near ties."""
    return PrecisionFacts(
        mode="both",
        dtype="float64",
        nonfinite=agreement.nonfinite_facts({"numpy": None, "torch": None}),
        near_ties=near_ties or {},
        environment={"numpy": {"threads": 1}, "torch": {"threads": 1, "tf32": False}},
        environment_changes=changes or [],
        oracles=oracles or {},
    )


_DATASET = None


def dataset():
    """The tutorial's iris split (loaded once)."""
    global _DATASET
    if _DATASET is None:
        _DATASET = data.load(RECIPE)
    return _DATASET


def result(comparisons, facts: PrecisionFacts | None = None, **changes) -> CheckResult:
    """A ``CheckResult`` of numpy against torch holding ``comparisons`` and ``facts``; its
    verdict is the library's."""
    facts = facts or precision()
    split = dataset()
    problem = RECIPE.problem(split)
    outputs = split.Y_test.shape[1]
    fields = {
        "recipe": RECIPE,
        "reference": "numpy",
        "frameworks": ("numpy", "torch"),
        "mode": "both",
        "dtype": "float64",
        "verdict": verdict(comparisons, facts),
        "comparisons": list(comparisons),
        "precision": facts,
        "summaries": {
            name: {
                "final_loss": 0.123456789012,
                "train_accuracy": 0.7,
                "test_accuracy": 0.8,
                "seconds": 1.5,
            }
            for name in ("numpy", "torch")
        },
        "test_outputs": {
            name: np.eye(outputs)[split.labels_test] * 0.9 for name in ("numpy", "torch")
        },
        "dataset": split,
        "network": problem.network,
        "problem": problem,
        "steps": RECIPE.steps,
        "record_every": 1,
        "tolerances": {},
        "trajectories": None,
        "trajectory_steps": None,
        "series_for_plots": PlotSeries(
            steps=np.arange(4),
            loss={
                "numpy": np.array([0.3, 0.2, 0.15, 0.1]),
                "torch": np.array([0.3, 0.2, 0.15, 0.1]),
            },
            differences={
                ("synced", "torch", "numpy"): {"grad:W1": np.array([0.0, 1e-17, 2e-17, 0.0])}
            },
        ),
    }
    fields.update(changes)
    return CheckResult(**fields)
