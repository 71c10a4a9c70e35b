"""Baselines: what a run must reproduce later, stored as JSON, and the comparison of a rerun.

A baseline is recorded from a ``CheckResult`` that passed (``compare.check.check`` with
``trajectories=kept_states(steps)``, the states it stores, or ``True``): the recipe, how it was
checked (frameworks, reference, mode, the tolerances given), the environment, and per
framework every per-step quantity at ``CHECKPOINTS + 1`` evenly spaced steps plus the trained
model's test outputs, classes and accuracies. Every stored series has the same form,
``{"steps": [...], "values": [...]}``: values with a leading axis over the listed steps, so a
rerun is compared by ``agreement.SeriesAccumulator`` exactly as frameworks are compared with
each other, and a change is named by framework, quantity, training step and element.

Checking a baseline reruns its recipe through ``check`` (so the frameworks must still agree
with each other) and compares EVERY stored framework with its own rerun. JSON only, never
pickle: a baseline is data a CI job reads, never code it runs. Library layer: nothing here
parses arguments or prints.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compare import agreement, quantities, tolerances
from compare.agreement import Comparison
from compare.recipe import Recipe, RecipeError
from compare.tolerances import EXACT, Tolerance

SCHEMA_NAME = "crosscheck.baseline"
SCHEMA_VERSION = 2
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"

#: Checkpoints per series: the first step, the last, and evenly spaced ones between.
CHECKPOINTS = 10


class BaselineError(ValueError):
    """A baseline that cannot be used; the message is one line for the user."""


def checkpoints(last: int) -> list[int]:
    """``CHECKPOINTS + 1`` evenly spaced steps from 0 to ``last`` (fewer when ``last`` is
    small)."""
    return sorted({int(s) for s in np.linspace(0, last, CHECKPOINTS + 1).round()})


def default_tolerance(
    dtype: str, rtol: float | None = None, atol: float | None = None
) -> Tolerance:
    """The tolerance a rerun is held to unless the user gives one: the independent mode's for
    ``dtype`` (a rerun is one framework against itself, along the same trajectory)."""
    rule = tolerances.independent(dtype, rtol, atol)
    return Tolerance(rule.rtol, rule.atol)


def kept_states(steps: int) -> list[int]:
    """The states a baseline needs of a run of ``steps`` updates: the checkpoints of the states
    (``0 .. steps``) and of the per-update records (``0 .. steps - 1``). ``check(...,
    trajectories=kept_states(steps))`` keeps only these, so recording a baseline takes memory
    that does not grow with the steps."""
    return sorted(set(checkpoints(steps)) | set(checkpoints(max(steps - 1, 0))))


def final_values(outputs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The trained model's results (``quantities.final()``) from its test outputs: the
    outputs, the class of each row, the fraction of rows classified right."""
    outputs = np.asarray(outputs, dtype=np.float64)
    classes = np.argmax(outputs, axis=-1) if outputs.size else np.zeros(0, dtype=np.int64)
    accuracy = float(np.mean(classes == labels)) if len(labels) else 0.0
    values = dict(zip(quantities.final(), (outputs, classes, np.array(accuracy)), strict=True))
    return values


def stored_series(result) -> dict[str, dict[str, tuple[list[int], np.ndarray]]]:
    """What a baseline stores of ``result``: framework -> quantity -> (steps, values).

    Every per-state quantity of independent mode (``quantities.per_state``) at the checkpoints
    of its rows, and the trained model's results at the last step.

    Raises:
        ValueError: ``result`` holds no trajectories (``check(..., trajectories=kept_states(
            steps))``).
    """
    if result.trajectories is None:
        raise ValueError(
            "a baseline needs the kept states: check(..., trajectories=kept_states(steps))"
        )
    problem = result.problem
    labels = np.asarray(result.dataset.labels_test)
    all_steps = np.asarray(result.trajectory_steps)
    stored: dict[str, dict[str, tuple[list[int], np.ndarray]]] = {}
    for framework, records in result.trajectories.items():
        stored[framework] = {}
        for quantity in quantities.per_state(problem, quantities.INDEPENDENT):
            rows = len(records[quantities.source(quantity)])
            steps = all_steps[:rows]
            values = quantities.values(quantity, records, steps, problem.batches)
            # The checkpoints of the quantity's own last step (per-update records stop one
            # short), found by step: the result may hold every state or only ``kept_states``.
            wanted = checkpoints(int(steps[-1])) if rows else []
            chosen = np.flatnonzero(np.isin(steps, wanted))
            stored[framework][quantity] = (
                [int(step) for step in steps[chosen]],
                np.asarray(values, dtype=np.float64)[chosen],
            )
        final = final_values(result.test_outputs[framework], labels)
        for quantity, values in final.items():
            stored[framework][quantity] = ([result.steps], np.asarray(values)[None])
    return stored


def record(
    result,
    environment: Mapping[str, str | None],
    rtol: float | None = None,
    atol: float | None = None,
) -> dict[str, Any]:
    """The baseline document of ``result``: JSON-ready data.

    Args:
        result: A ``CheckResult`` that passed, with trajectories.
        environment: What it ran on (``compare.environment.describe()``).
        rtol, atol: The tolerances given to ``check`` (``None``: the engine's defaults); the
            rerun is checked with the same ones, and, resolved for the dtype, they are the
            baseline's own tolerance against a rerun.

    Raises:
        ValueError: the result did not pass, or holds no trajectories.
    """
    if result.verdict != "pass":
        raise ValueError("a baseline is recorded only from a run whose frameworks agree")
    tolerance = default_tolerance(result.dtype, rtol, atol)
    return {
        "schema": SCHEMA,
        "recipe": result.recipe.to_dict(),
        "reference": result.reference,
        "frameworks": list(result.frameworks),
        "mode": result.mode,
        "check": {"rtol": rtol, "atol": atol},
        "tolerance": {"rtol": tolerance.rtol, "atol": tolerance.atol},
        "environment": dict(environment),
        "results": {
            framework: {
                quantity: {"steps": steps, "values": values.tolist()}
                for quantity, (steps, values) in series.items()
            }
            for framework, series in stored_series(result).items()
        },
    }


def dumps(document: Mapping[str, Any]) -> str:
    """The baseline as JSON text (strict: no NaN), ending in a newline."""
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


@dataclass(frozen=True)
class Baseline:
    """A baseline file, read and validated.

    Attributes:
        path: Where it was read from.
        recipe: The recipe it was recorded with.
        reference: The reference framework of that run.
        frameworks: Every framework of that run, reference first.
        mode: The comparison mode it was checked in.
        check_rtol, check_atol: The tolerances given to ``check`` (``None``: defaults).
        tolerance: Its own tolerance against a rerun.
        environment: What it was recorded on.
        results: Framework -> quantity -> (steps, values).
    """

    path: Path
    recipe: Recipe
    reference: str
    frameworks: tuple[str, ...]
    mode: str
    check_rtol: float | None
    check_atol: float | None
    tolerance: Tolerance
    environment: dict[str, str | None]
    results: dict[str, dict[str, tuple[list[int], np.ndarray]]]


def load(path: Path) -> Baseline:
    """Read and validate a baseline.

    Raises:
        BaselineError: missing, unreadable, not JSON (e.g. cut short), not a baseline, of
            another schema version, or damaged; the message says which, in one line.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BaselineError(f"cannot read baseline {path}: {error}") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        raise BaselineError(
            f"{path} is not a crosscheck baseline: invalid JSON at line "
            f"{getattr(error, 'lineno', '?')} ({getattr(error, 'msg', error)}); was it cut short?"
        ) from None
    schema = document.get("schema") if isinstance(document, dict) else None
    match = re.fullmatch(rf"{re.escape(SCHEMA_NAME)}/(\d+)", str(schema or ""))
    if match is None:
        raise BaselineError(f"{path} is not a crosscheck baseline (no {SCHEMA_NAME} schema)")
    version = int(match.group(1))
    if version > SCHEMA_VERSION:
        raise BaselineError(
            f"{path} was written by a newer crosscheck (schema {schema}; this one reads "
            f"{SCHEMA}); upgrade crosscheck or record the baseline again"
        )
    if version < SCHEMA_VERSION:
        raise BaselineError(
            f"{path} was written by an older crosscheck (schema {schema}; this one reads "
            f"{SCHEMA}); record the baseline again with crosscheck record"
        )
    try:
        return _parse(path, document)
    except RecipeError as error:
        raise BaselineError(f"{path} holds a bad recipe: {error}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        problem = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise BaselineError(f"{path} is damaged: {problem}") from None


def _optional_tolerance(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"tolerances must be finite and non-negative, got {value}")
    return value


def _parse(path: Path, document: dict) -> Baseline:
    recipe = Recipe.from_dict(document["recipe"])
    reference = document["reference"]
    frameworks = tuple(document["frameworks"])
    if not isinstance(reference, str) or reference not in frameworks:
        raise ValueError(f"its reference {reference!r} is not among its frameworks")
    rtol = _optional_tolerance(document["tolerance"]["rtol"])
    atol = _optional_tolerance(document["tolerance"]["atol"])
    if rtol is None or atol is None:
        raise ValueError("its tolerance needs both rtol and atol")
    stored = document["results"]
    if not isinstance(stored, dict) or set(stored) != set(frameworks):
        raise ValueError("it does not hold results for exactly its frameworks")
    results: dict[str, dict[str, tuple[list[int], np.ndarray]]] = {}
    for name, series in stored.items():
        results[name] = {}
        for quantity, entry in series.items():
            steps = [int(step) for step in entry["steps"]]
            values = np.asarray(entry["values"], dtype=np.float64)
            if values.ndim == 0 or len(values) != len(steps):
                raise ValueError(f"{name} {quantity}: {len(steps)} steps but not as many values")
            results[name][quantity] = (steps, values)
    environment = document.get("environment")
    return Baseline(
        path=path,
        recipe=recipe,
        reference=reference,
        frameworks=frameworks,
        mode=str(document["mode"]),
        check_rtol=_optional_tolerance(document["check"]["rtol"]),
        check_atol=_optional_tolerance(document["check"]["atol"]),
        tolerance=Tolerance(rtol, atol),
        environment=environment if isinstance(environment, dict) else {},
        results=results,
    )


@dataclass(frozen=True)
class Change:
    """The first element of one stored quantity that moved: where, from what, to what."""

    framework: str
    quantity: str
    step: int
    index: tuple[int, ...]
    recorded: float
    now: float


@dataclass(frozen=True)
class BaselineCheck:
    """A rerun of a baseline's recipe, compared with the baseline.

    Attributes:
        baseline: What was recorded.
        rerun: The rerun's ``CheckResult`` (its frameworks compared with each other).
        comparisons: One per stored framework x quantity (``against="baseline"``,
            ``mode="baseline"``; steps are training steps).
        changes: For each failing comparison, the first element that moved.
        environment_changes: ``(name, recorded, now)`` for every environment entry that
            differs (reported; the numbers decide).
    """

    baseline: Baseline
    rerun: Any
    comparisons: list[Comparison]
    changes: list[Change]
    environment_changes: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``"pass"`` when the rerun's frameworks agree and every stored quantity of every
        framework is reproduced."""
        reproduced = all(c.passed for c in self.comparisons)
        return "pass" if self.rerun.verdict == "pass" and reproduced else "fail"

    @property
    def first_change(self) -> Comparison | None:
        """The failing comparison whose first failing step is earliest."""
        failing = [c for c in self.comparisons if not c.passed]
        return min(failing, key=lambda c: c.first_failing_step) if failing else None


def compare(
    baseline: Baseline,
    rerun,
    tolerance: Tolerance | None = None,
    environment: Mapping[str, str | None] | None = None,
) -> BaselineCheck:
    """Compare every stored framework's quantities with the rerun's.

    Args:
        baseline: What was recorded.
        rerun: ``check`` of ``baseline.recipe`` with the baseline's frameworks, reference and
            mode, ``trajectories=kept_states(steps)`` (or ``True``).
        tolerance: Overrides the baseline's own for the floating-point quantities (classes
            and accuracies are compared exactly).
        environment: The rerun's environment, compared with the recorded one.

    Raises:
        BaselineError: the baseline does not fit its recipe (steps, quantities or shapes the
            rerun lacks).
    """
    tolerance = tolerance or baseline.tolerance
    now_stored = stored_series(rerun)
    comparisons, changes = [], []
    for framework, stored in baseline.results.items():
        if framework not in now_stored:
            raise BaselineError(f"{baseline.path}: the rerun has no {framework}")
        for quantity, (steps, recorded) in stored.items():
            now = _rerun_values(baseline, now_stored[framework], framework, quantity, steps)
            if now.shape != recorded.shape:
                raise BaselineError(
                    f"{baseline.path} does not match its recipe: {framework} {quantity} is "
                    f"shaped {recorded.shape[1:]} there, {now.shape[1:]} in the rerun"
                )
            exact = quantities.is_exact(quantity)
            used = EXACT if exact else tolerance
            accumulator = agreement.SeriesAccumulator(None, steps[-1], exact=exact)
            accumulator.add(np.asarray(steps), now, recorded, used.atol, used.rtol)
            facts = accumulator.facts()
            first = facts["first_failing_step"]
            if first is not None:
                row = steps.index(first)
                index = facts["first_failing_index"]
                changes.append(
                    Change(
                        framework,
                        quantity,
                        first,
                        index,
                        float(recorded[row][index]),
                        float(now[row][index]),
                    )
                )
            comparisons.append(
                Comparison(
                    framework=framework,
                    against="baseline",
                    mode="baseline",
                    quantity=quantity,
                    rtol=used.rtol,
                    **facts,
                )
            )
    return BaselineCheck(
        baseline,
        rerun,
        comparisons,
        changes,
        environment_changes(baseline.environment, environment or {}),
    )


def _rerun_values(
    baseline: Baseline,
    now: Mapping[str, tuple[list[int], np.ndarray]],
    framework: str,
    quantity: str,
    steps: Sequence[int],
) -> np.ndarray:
    if quantity not in now:
        raise BaselineError(
            f"{baseline.path} does not match its recipe: the rerun of {framework} has no {quantity}"
        )
    available, values = now[quantity]
    if list(available) != list(steps):
        raise BaselineError(
            f"{baseline.path} does not match its recipe: {framework} {quantity} is stored at "
            "steps the rerun does not record"
        )
    return np.asarray(values, dtype=np.float64)


def environment_changes(
    recorded: Mapping[str, str | None], current: Mapping[str, str | None]
) -> list[tuple[str, str | None, str | None]]:
    """``(name, recorded, now)`` for every environment entry that differs."""
    if not current:
        return []
    names = list(dict.fromkeys([*recorded, *current]))
    return [
        (name, recorded.get(name), current.get(name))
        for name in names
        if recorded.get(name) != current.get(name)
    ]


def recipe_differences(recorded: Recipe, wanted: Recipe) -> list[str]:
    """``"steps is 5000 there, 300 here"`` for each setting that differs."""
    there, here = _flat(recorded.to_dict()), _flat(wanted.to_dict())
    return [
        f"{name.rsplit('.', 1)[-1].replace('_', ' ')} is {there.get(name)!r} there, "
        f"{here.get(name)!r} here"
        for name in dict.fromkeys([*there, *here])
        if there.get(name) != here.get(name)
    ]


def _flat(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
