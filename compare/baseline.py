"""Baselines: what a run must reproduce later, stored as JSON, and the check of a rerun against it.

A baseline holds the full recipe, the environment it ran in, and per framework the loss and
gradient norms at checkpoints, the final weights, and the training and test results. Every
stored quantity has the same shape in the file, ``{"steps": [...], "values": [...]}``: values
with a leading axis over the listed training steps, so a rerun is compared with
``agreement.compare_series`` exactly as frameworks are compared with each other, and a failure
names the training step and element that moved.

JSON only, never pickle: a baseline is data a CI job reads, never code it runs. Files are written
atomically (``files.write_atomic``) and never replaced without ``--force``.

The computing functions return data; ``add_parsers`` registers ``record`` and ``check``, whose
handlers print through ``compare.report``.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

import implementations
from compare import agreement, environment, files, harness, report
from compare.agreement import Comparison, Tolerance
from compare.recipe import Recipe, RecipeError

SCHEMA_NAME = "crosscheck.baseline"
SCHEMA_VERSION = 1
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_VERSION}"

#: Checkpoints per series: the first step, the last, and evenly spaced ones between.
CHECKPOINTS = 10

#: Quantities compared exactly: what the user sees (classes and the fractions right).
EXACT_QUANTITIES = ("train_accuracy", "test_accuracy", "test_predictions")


class BaselineError(ValueError):
    """A baseline file that cannot be used; the message is one line for the user."""


def checkpoints(last: int) -> list[int]:
    """``CHECKPOINTS + 1`` evenly spaced steps from 0 to ``last`` (fewer when ``last`` is small)."""
    return sorted({int(s) for s in np.linspace(0, last, CHECKPOINTS + 1).round()})


def full_series(result: harness.RunResult, framework: str) -> dict[str, tuple[np.ndarray, object]]:
    """Every quantity a baseline may store: name -> (training steps, values over those steps).

    Weight states and the loss run over steps ``0..steps``, gradients over ``0..steps-1``; the
    test-set results exist only for the trained model, at step ``steps``.
    """
    trajectory = result.runs[framework].trajectory
    steps = trajectory.steps
    states, updates, last = np.arange(steps + 1), np.arange(steps), np.array([steps])
    series: dict[str, tuple[np.ndarray, object]] = {"loss": (states, trajectory.losses)}
    for name in result.network.param_names:
        norms = np.linalg.norm(trajectory.grads[name], axis=(-2, -1))
        series[f"grad_norm:{name}"] = (updates, norms)
    for name in result.network.param_names:
        series[f"weight:{name}"] = (states, trajectory.weights[name])
    series["train_accuracy"] = (states, result.train_accuracy(framework))
    series["test_accuracy"] = (last, np.array([result.test_accuracy(framework)]))
    series["test_predictions"] = (last, result.test_predictions(framework)[None])
    return series


def _recorded_steps(quantity: str, steps: int) -> list[int]:
    if quantity.startswith("weight:") or quantity.startswith("test_"):
        return [steps]  # final weights and the trained model's test results
    if quantity.startswith("grad_norm:"):
        return checkpoints(steps - 1)
    return checkpoints(steps)


def record(
    result: harness.RunResult, tolerance: Tolerance, env: dict[str, str | None]
) -> dict[str, object]:
    """The baseline document of ``result``: JSON-ready data.

    Args:
        result: The run to store.
        tolerance: The baseline's own tolerance, which ``check`` uses unless overridden.
        env: The environment it ran in (``environment.describe()``).
    """
    frameworks = {}
    for name in result.runs:
        stored = {}
        for quantity, (available, values) in full_series(result, name).items():
            wanted = _recorded_steps(quantity, result.recipe.steps)
            stored[quantity] = {
                "steps": wanted,
                "values": np.asarray(values)[np.searchsorted(available, wanted)].tolist(),
            }
        frameworks[name] = stored
    return {
        "schema": SCHEMA,
        "recipe": result.recipe.to_dict(),
        "reference": result.reference,
        "tolerance": {"rtol": tolerance.rtol, "atol": tolerance.atol},
        "environment": env,
        "frameworks": frameworks,
    }


@dataclass(frozen=True)
class Baseline:
    """A baseline file, read and validated.

    Attributes:
        path: Where it was read from.
        recipe: The recipe it was recorded with.
        reference: The reference framework of that run.
        tolerance: Its own tolerance.
        environment: The environment it was recorded in.
        frameworks: Framework -> quantity -> (training steps, values).
    """

    path: Path
    recipe: Recipe
    reference: str
    tolerance: Tolerance
    environment: dict[str, str | None]
    frameworks: dict[str, dict[str, tuple[list[int], np.ndarray]]]


def load(path: Path) -> Baseline:
    """Read and validate a baseline.

    Raises:
        BaselineError: missing, unreadable, not JSON (e.g. truncated), not a baseline, written
            by a newer crosscheck, or damaged.
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
            f"{path} is not a crosscheck baseline: invalid JSON at line {error.lineno} "
            f"({error.msg}); was it cut short?"
        ) from None
    schema = document.get("schema") if isinstance(document, dict) else None
    match = re.fullmatch(rf"{re.escape(SCHEMA_NAME)}/(\d+)", schema or "")
    if match is None:
        raise BaselineError(f"{path} is not a crosscheck baseline (no {SCHEMA_NAME} schema)")
    if int(match.group(1)) > SCHEMA_VERSION:
        raise BaselineError(
            f"{path} was written by a newer crosscheck (schema {schema}; this one reads "
            f"{SCHEMA}); upgrade crosscheck or record the baseline again"
        )
    try:
        return _parse(path, document)
    except RecipeError as error:
        raise BaselineError(f"{path} holds a bad recipe: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise BaselineError(f"{path} is damaged: {_describe(error)}") from None


def _describe(error: Exception) -> str:
    return f"missing {error}" if isinstance(error, KeyError) else str(error)


def _parse(path: Path, document: dict) -> Baseline:
    recipe = Recipe.from_dict(document["recipe"])
    reference = document["reference"]
    tolerance = Tolerance(
        rtol=float(document["tolerance"]["rtol"]), atol=float(document["tolerance"]["atol"])
    )
    if not (tolerance.rtol >= 0 and tolerance.atol >= 0):
        raise ValueError(f"tolerances must be non-negative, got {tolerance}")
    stored = document["frameworks"]
    if not isinstance(stored, dict) or reference not in stored:
        raise ValueError(f"no results for its reference framework {reference!r}")
    frameworks = {}
    for name, quantities in stored.items():
        if name not in implementations.NAMES:
            raise ValueError(f"unknown framework {name!r}")
        frameworks[name] = {}
        for quantity, series in quantities.items():
            steps = [int(step) for step in series["steps"]]
            values = np.asarray(series["values"], dtype=np.float64)
            if values.ndim == 0 or len(values) != len(steps):
                raise ValueError(f"{name} {quantity}: {len(steps)} steps but not as many values")
            frameworks[name][quantity] = (steps, values)
    environment_ = document.get("environment")
    return Baseline(
        path=path,
        recipe=recipe,
        reference=reference,
        tolerance=tolerance,
        environment=environment_ if isinstance(environment_, dict) else {},
        frameworks=frameworks,
    )


@dataclass(frozen=True)
class Change:
    """The first element of one quantity that moved: where, from what, to what."""

    framework: str
    quantity: str
    step: int
    index: tuple[int, ...]
    recorded: float
    now: float


def compare(
    baseline: Baseline, result: harness.RunResult, tolerance: Tolerance | None = None
) -> tuple[list[Comparison], list[Change]]:
    """Compare a rerun of ``baseline.recipe`` with the baseline, quantity by quantity.

    Args:
        baseline: What was recorded.
        result: The rerun.
        tolerance: Overrides the baseline's own for the floating-point quantities.

    Returns:
        One comparison per stored framework x quantity (``against="baseline"``, steps are
        training steps), and for each failing one the first element that moved.

    Raises:
        BaselineError: the baseline does not fit its recipe (steps or shapes the run lacks).
    """
    tolerance = tolerance or baseline.tolerance
    comparisons, changes = [], []
    for framework, quantities in baseline.frameworks.items():
        current = full_series(result, framework)
        for quantity, (steps, recorded) in quantities.items():
            if quantity not in current:
                raise BaselineError(f"{baseline.path}: unknown quantity {quantity!r}")
            available, values = current[quantity]
            positions = np.searchsorted(available, steps)
            if np.any(positions >= len(available)) or np.any(available[positions] != steps):
                raise BaselineError(
                    f"{baseline.path} does not match its recipe: {framework} {quantity} lists "
                    f"steps the recipe does not train"
                )
            now = np.asarray(values, dtype=np.float64)[positions]
            if now.shape != recorded.shape:
                raise BaselineError(
                    f"{baseline.path} does not match its recipe: {framework} {quantity} is "
                    f"shaped {recorded.shape[1:]} there, {now.shape[1:]} in the rerun"
                )
            used = agreement.EXACT if quantity in EXACT_QUANTITIES else tolerance
            facts = agreement.compare_series(now, recorded, used)
            facts["worst_step"] = steps[facts["worst_step"]]
            first = facts["first_failing_step"]
            if first is not None:
                index = facts["first_failing_index"]
                changes.append(
                    Change(
                        framework,
                        quantity,
                        steps[first],
                        index,
                        float(recorded[first][index]),
                        float(now[first][index]),
                    )
                )
                facts["first_failing_step"] = steps[first]
            comparisons.append(
                Comparison(
                    framework=framework,
                    against="baseline",
                    mode="baseline",
                    quantity=quantity,
                    rtol=used.rtol,
                    atol=used.atol,
                    **facts,
                )
            )
    return comparisons, changes


def environment_changes(
    recorded: dict[str, str | None], current: dict[str, str | None]
) -> list[tuple[str, str | None, str | None]]:
    """``(name, recorded, now)`` for every environment entry that differs."""
    names = list(dict.fromkeys([*recorded, *current]))
    return [
        (name, recorded.get(name), current.get(name))
        for name in names
        if recorded.get(name) != current.get(name)
    ]


def recipe_differences(baseline: Recipe, given: dict[str, object]) -> list[str]:
    """``"steps is 5000 there, 300 here"`` for each setting in ``given`` that differs."""
    recorded = baseline.to_dict()
    ours = Recipe(**{**baseline.to_dict(), **given}).to_dict()
    return [
        f"{name.replace('_', ' ')} is {recorded[name]!r} there, {ours[name]!r} here"
        for name in given
        if ours[name] != recorded[name]
    ]


# The commands ---------------------------------------------------------------------------------


def add_parsers(commands) -> None:
    """Register ``crosscheck record`` and ``crosscheck check``."""
    from compare import cli

    record_parser = commands.add_parser(
        "record",
        help="run a recipe and store what later runs must reproduce",
        description="Run a recipe and write a JSON baseline: the recipe, the environment, loss "
        "and gradient norms at checkpoints, final weights, test predictions and accuracies per "
        "framework. Exit 0 when written, 1 when the frameworks disagree (nothing written), "
        "2 on bad input.",
    )
    record_parser.add_argument("baseline", type=Path, metavar="BASELINE.json")
    cli.add_recipe_options(record_parser)
    _add_framework_options(record_parser, cli)
    _add_tolerance_options(
        record_parser, "stored as the baseline's own; default: per dtype, as for run"
    )
    record_parser.add_argument("--force", action="store_true", help="replace an existing baseline")
    record_parser.set_defaults(handler=_record)

    check_parser = commands.add_parser(
        "check",
        help="rerun a baseline's recipe and compare with what it recorded",
        description="Rerun the recipe stored in a baseline and compare every stored quantity. "
        "Prints what changed, where, by how much, and which library versions differ. "
        "Exit 0 when everything matches, 1 when something changed, 2 on bad input.",
    )
    check_parser.add_argument("baseline", type=Path, metavar="BASELINE.json")
    _add_tolerance_options(check_parser, "default: the one stored in the baseline")
    cli.add_recipe_options(check_parser)
    # Recipe options on check only assert what the baseline holds: none is set unless given.
    recipe_names = {f.name for f in fields(Recipe)}
    check_parser.set_defaults(**dict.fromkeys(recipe_names))
    for group in check_parser._action_groups:
        if group.title and group.title.startswith("recipe"):
            group.title = "recipe (optional; each one given must match the baseline's)"
    for action in check_parser._actions:
        if action.dest in recipe_names:
            action.help = re.sub(r" \(default.*\)$", "", action.help or "")
            action.help += " (must match the baseline's)"
    _add_ci_outputs(check_parser)
    check_parser.add_argument(
        "--in-process",
        action="store_true",
        help="train the frameworks one after another in this process",
    )
    check_parser.set_defaults(handler=_check)


def _add_framework_options(parser, cli) -> None:
    parser.add_argument(
        "--frameworks",
        type=cli._choice_list(implementations.NAMES, "framework"),
        default=implementations.NAMES,
        metavar="NAME[,NAME...]",
        help=f"frameworks to run (default: {','.join(implementations.NAMES)})",
    )
    parser.add_argument(
        "--reference",
        choices=implementations.NAMES,
        default="numpy",
        help="the framework the others are compared with (default: %(default)s)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="train the frameworks one after another in this process",
    )


def _add_tolerance_options(parser, what: str) -> None:
    from compare import cli

    parser.add_argument("--rtol", type=cli._finite_float, help=f"relative tolerance ({what})")
    parser.add_argument("--atol", type=cli._finite_float, help=f"absolute tolerance ({what})")


def _add_ci_outputs(parser) -> None:
    parser.add_argument(
        "--junit-xml", type=Path, metavar="PATH", help="also write JUnit XML (one case per check)"
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write a Markdown summary"
    )
    parser.add_argument(
        "--force", action="store_true", help="let the outputs replace files they did not write"
    )


def _train(args, recipe: Recipe, frameworks, reference: str) -> harness.RunResult:
    from compare import cli

    progress = cli._LazyProgress(enabled=not cli._plain_output())
    try:
        return harness.run(
            recipe, frameworks, reference, progress=progress, isolate=not args.in_process
        )
    finally:
        progress.close()


def _record(args: argparse.Namespace, console) -> int:
    from compare import cli

    if args.baseline.exists() and not args.force:
        raise files.OutputError(
            f"refusing to overwrite baseline {args.baseline}: it exists (use --force)"
        )
    files.check_writable(args.baseline, schema=SCHEMA, force=True)
    recipe = cli.recipe_from_args(args)
    tolerance = cli._tolerance(args, recipe.dtype)
    result = _train(args, recipe, args.frameworks, args.reference)
    comparisons = agreement.compare_run(result, tolerance)
    report.render(console, result, comparisons, tolerance)
    if report.verdict(comparisons) != "pass":
        console.print(f"baseline not written: the frameworks disagree ({args.baseline})")
        return cli.EXIT_DISAGREE
    document = record(result, tolerance, environment.describe())
    files.write_atomic(args.baseline, json.dumps(document, indent=1) + "\n")
    console.print(
        f"baseline written to {args.baseline}: {', '.join(result.runs)}, "
        f"{recipe.steps} steps, rtol {tolerance.rtol:.3g}, atol {tolerance.atol:.3g}",
        highlight=False,
    )
    return cli.EXIT_AGREE


def _check(args: argparse.Namespace, console) -> int:
    from compare import cli

    try:
        baseline = load(args.baseline)
        given = {f.name: getattr(args, f.name) for f in fields(Recipe)}
        differences = recipe_differences(
            baseline.recipe, {k: v for k, v in given.items() if v is not None}
        )
        if differences:
            raise BaselineError(
                f"{args.baseline} was recorded for a different recipe: {'; '.join(differences)}"
            )
        tolerance = Tolerance(
            rtol=baseline.tolerance.rtol if args.rtol is None else args.rtol,
            atol=baseline.tolerance.atol if args.atol is None else args.atol,
        )
        if tolerance.rtol < 0 or tolerance.atol < 0:
            raise cli.UsageError(f"tolerances must be non-negative, got {tolerance}")
        if args.junit_xml is not None:
            files.check_writable(args.junit_xml, schema=report.JUNIT_SCHEMA, force=args.force)
        if args.markdown is not None:
            files.check_writable(args.markdown, schema=report.MARKDOWN_SCHEMA, force=args.force)
        frameworks = list(baseline.frameworks)
        result = _train(args, baseline.recipe, frameworks, baseline.reference)
        comparisons, changes = compare(baseline, result, tolerance)
    except BaselineError as error:
        raise cli.UsageError(str(error)) from None
    env_changes = environment_changes(baseline.environment, environment.describe())
    report.render_baseline_check(console, str(args.baseline), comparisons, changes, env_changes)
    if args.junit_xml is not None:
        files.write_atomic(args.junit_xml, report.to_junit_xml("crosscheck check", comparisons))
    if args.markdown is not None:
        files.write_atomic(
            args.markdown,
            report.baseline_markdown(str(args.baseline), comparisons, changes, env_changes),
        )
    return cli.EXIT_AGREE if report.verdict(comparisons) == "pass" else cli.EXIT_DISAGREE
