"""The ``crosscheck`` command: arguments -> recipe -> harness -> comparison -> report -> exit code.

Exit codes (documented in the README):

* 0: every framework agrees with the reference;
* 1: a disagreement (the verdict line names the first one);
* 2: bad input, an output that cannot be written, or a framework that is not installed; one
  line on standard error says what is wrong, never a traceback;
* 3: a framework crashed while training (its worker's last error line is shown);
* 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import implementations
from compare import (
    agreement,
    baseline,
    drift_plot,
    environment,
    examples,
    explain,
    files,
    harness,
    mutants,
    plots,
    report,
    tolerances,
)
from compare.recipe import DATASETS, Recipe, RecipeError
from implementations.contract import ACTIVATIONS, DTYPES

EXIT_AGREE, EXIT_DISAGREE, EXIT_BAD_INPUT, EXIT_CRASHED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(Exception):
    """Bad input from the user; the message is the one line printed."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:
        raise UsageError(message)


def _comma_list(convert, what: str):
    def parse(text: str):
        items = [item.strip() for item in text.split(",")]
        try:
            return tuple(convert(item) for item in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a comma list, got {text!r}") from None

    return parse


def _choice_list(choices: Sequence[str], what: str):
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {unknown[0] if unknown else text!r}; "
                f"choose from {', '.join(choices)}"
            )
        return items

    return parse


def _test_size(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"test size must be a row count or a fraction, got {text!r}"
        ) from None


def _finite_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The options that make a recipe; defaults are the tutorial's (see ``Recipe``)."""
    defaults = Recipe()
    group = parser.add_argument_group("recipe (defaults: the tutorial's)")
    group.add_argument(
        "--dataset",
        choices=DATASETS,
        default=defaults.dataset,
        help="scikit-learn bundled data set (default: %(default)s)",
    )
    group.add_argument(
        "--test-size",
        type=_test_size,
        default=defaults.test_size,
        help="test rows, or a fraction in (0, 1) (default: %(default)s)",
    )
    group.add_argument(
        "--split-seed",
        type=int,
        default=defaults.split_seed,
        help="train_test_split random_state (default: %(default)s)",
    )
    group.add_argument(
        "--hidden",
        type=_comma_list(int, "hidden widths"),
        default=defaults.hidden,
        metavar="W[,W...]",
        help="hidden layer widths, e.g. 8 or 5,5 (default: 2)",
    )
    group.add_argument(
        "--activation",
        dest="activations",
        type=_choice_list(ACTIVATIONS, "activation"),
        default=defaults.activations,
        metavar="NAME[,NAME...]",
        help=f"one of {', '.join(ACTIVATIONS)} for every layer, or one per layer "
        "(default: sigmoid)",
    )
    group.add_argument(
        "--init-seed",
        type=int,
        default=defaults.init_seed,
        help="seed of the NumPy draw of initial weights (default: %(default)s)",
    )
    group.add_argument(
        "--init-scale",
        type=_finite_float,
        default=defaults.init_scale,
        help="standard deviation of the initial weights (default: %(default)s)",
    )
    group.add_argument(
        "--lr", type=_finite_float, default=defaults.lr, help="learning rate (default: %(default)s)"
    )
    group.add_argument(
        "--steps",
        type=int,
        default=defaults.steps,
        help="gradient-descent steps (default: %(default)s)",
    )
    group.add_argument(
        "--dtype",
        choices=DTYPES,
        default=defaults.dtype,
        help="dtype every framework computes in (default: %(default)s)",
    )


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """Build the recipe the parsed options describe (``RecipeError`` if they cannot train)."""
    return Recipe(
        dataset=args.dataset,
        test_size=args.test_size,
        split_seed=args.split_seed,
        hidden=args.hidden,
        activations=args.activations,
        init_seed=args.init_seed,
        init_scale=args.init_scale,
        lr=args.lr,
        steps=args.steps,
        dtype=args.dtype,
    )


def _add_run_parser(commands) -> None:
    run = commands.add_parser(
        "run",
        help="train every framework on one recipe and compare them at every step",
        description="Train the frameworks from the same initial weights and compare losses, "
        "gradients, weights and accuracy at every step. Exit 0 when they agree, "
        "1 when they do not, 2 on bad input.",
    )
    add_recipe_options(run)
    comparison = run.add_argument_group("comparison")
    comparison.add_argument(
        "--frameworks",
        type=_choice_list(implementations.NAMES, "framework"),
        default=implementations.NAMES,
        metavar="NAME[,NAME...]",
        help="frameworks to run; the reference always runs too "
        f"(default: {','.join(implementations.NAMES)})",
    )
    comparison.add_argument(
        "--reference",
        choices=implementations.NAMES,
        default="numpy",
        help="the framework the others are compared with (default: %(default)s)",
    )
    comparison.add_argument(
        "--mode",
        choices=tolerances.MODES,
        default="both",
        help="independent: each framework trains on its own and whole trajectories are compared; "
        "synced: every framework evaluates the loss and gradients at the reference's weights of "
        "every step (no accumulated drift), plus gradient oracles; both: the verdict rests on "
        "the synced gradients, the oracles and the final test predictions, and on per-step "
        "drift only in float64 (default: %(default)s)",
    )
    comparison.add_argument(
        "--rtol", type=_finite_float, help="relative tolerance (default: per dtype, see the README)"
    )
    comparison.add_argument(
        "--atol", type=_finite_float, help="absolute tolerance (default: per dtype, see the README)"
    )
    output = run.add_argument_group("output")
    output.add_argument("--report", type=Path, metavar="PATH", help="write the full result as JSON")
    output.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="draw PNGs into DIR (created if missing): loss and accuracy, gradient "
        "differences, confusion matrices, and how the error grows",
    )
    output.add_argument(
        "--junit-xml", type=Path, metavar="PATH", help="write JUnit XML: a case per comparison"
    )
    output.add_argument(
        "--markdown", type=Path, metavar="PATH", help="write a Markdown summary (CI job summary)"
    )
    output.add_argument(
        "--force",
        action="store_true",
        help="let --report, --junit-xml and --markdown replace files crosscheck did not write",
    )
    output.add_argument(
        "--in-process",
        action="store_true",
        help="train the frameworks one after another in this process instead "
        "of in parallel worker processes",
    )
    run.set_defaults(handler=_run)


def build_parser() -> argparse.ArgumentParser:
    """The ``crosscheck`` argument parser with its subcommands."""
    parser = _Parser(
        prog="crosscheck",
        description="Train one small network in NumPy (by hand), PyTorch and JAX and prove, "
        "step by step, that they agree.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_parser(commands)
    examples.add_parser(commands)
    explain.add_parser(commands)
    mutants.add_parsers(commands)
    baseline.add_parsers(commands)
    return parser


def _tolerance(args: argparse.Namespace, dtype: str) -> agreement.Tolerance:
    """The independent mode's tolerance; given ``--rtol`` alone, atol follows it."""
    rule = tolerances.independent(dtype, args.rtol, args.atol)
    if rule.rtol < 0 or rule.atol < 0:
        raise UsageError(f"tolerances must be non-negative, got rtol {rule.rtol}, atol {rule.atol}")
    return agreement.Tolerance(rtol=rule.rtol, atol=rule.atol)


def _plain_output() -> bool:
    """No colour or progress bars: not a terminal, or NO_COLOR / CI set."""
    return bool(os.environ.get("NO_COLOR") or os.environ.get("CI")) or not sys.stderr.isatty()


class _LazyProgress:
    """A progress bar per framework on standard error, shown only once a run passes a second."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._started = time.monotonic()
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def __call__(self, framework: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        if self._progress is None:
            if time.monotonic() - self._started < 1.0:
                return
            self._progress = Progress(
                TextColumn("{task.description:>6}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
        if framework not in self._tasks:
            self._tasks[framework] = self._progress.add_task(framework, total=total)
        self._progress.update(self._tasks[framework], completed=done)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _run(args: argparse.Namespace, console: Console) -> int:
    recipe = recipe_from_args(args)
    tolerance = _tolerance(args, recipe.dtype)
    if recipe.dtype == "bfloat16" and importlib.util.find_spec("ml_dtypes") is None:
        raise UsageError("bfloat16 needs ml_dtypes (installed with JAX): pip install ml_dtypes")
    if args.report is not None:
        files.check_writable(args.report, schema=report.SCHEMA, force=args.force)
    if args.plots is not None:
        plots.prepare(args.plots)
    if args.junit_xml is not None:
        files.check_writable(args.junit_xml, schema=report.JUNIT_SCHEMA, force=args.force)
    if args.markdown is not None:
        files.check_writable(args.markdown, schema=report.MARKDOWN_SCHEMA, force=args.force)
    progress = _LazyProgress(enabled=not _plain_output())
    try:
        result = harness.run(
            recipe,
            args.frameworks,
            args.reference,
            progress=progress,
            isolate=not args.in_process,
            synced=args.mode in ("synced", "both"),
        )
    finally:
        progress.close()
    comparisons, facts = _compare_modes(args, result, tolerance)
    report.render(console, result, comparisons, tolerance, facts)
    if args.report is not None:
        document = report.to_json(result, comparisons, environment.describe(), facts)
        files.write_atomic(args.report, json.dumps(document, indent=2) + "\n")
        console.print(f"report written to {args.report}", highlight=False)
    if args.plots is not None:
        written = plots.write(result, args.plots, tolerance)
        written += drift_plot.plot_drift(comparisons, args.plots)
        console.print(f"plots written: {', '.join(map(str, written))}", highlight=False)
    if args.junit_xml is not None:
        files.write_atomic(args.junit_xml, report.to_junit_xml("crosscheck run", comparisons))
    if args.markdown is not None:
        files.write_atomic(args.markdown, report.run_markdown(result, comparisons))
    return EXIT_AGREE if report.verdict(comparisons, facts) == "pass" else EXIT_DISAGREE


def _compare_modes(
    args: argparse.Namespace, result: harness.RunResult, tolerance: agreement.Tolerance
) -> tuple[list[agreement.Comparison], agreement.PrecisionFacts]:
    """The comparisons of the modes ``--mode`` asks for, and the run's precision facts."""
    synced = result.synced
    comparisons = []
    if args.mode in ("independent", "both"):
        rule = tolerances.ToleranceRule(tolerance.rtol, tolerance.atol)
        comparisons += agreement.compare_independent(result, rule, args.mode)
    if synced is not None:
        rows = len(result.dataset.X_train)
        rule = tolerances.synced(result.recipe.dtype, rows, args.rtol, args.atol)
        comparisons += agreement.compare_synced(result, synced, rule)
    return comparisons, agreement.precision_facts(result, synced, args.mode, tolerance)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``crosscheck`` command; returns the exit code."""
    console = Console(
        no_color=_plain_output(), highlight=False, width=None if sys.stdout.isatty() else 120
    )
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args, console)
    except (
        UsageError,
        RecipeError,
        files.OutputError,
        implementations.FrameworkUnavailable,
    ) as error:
        print(f"crosscheck: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except harness.WorkerError as error:
        print(f"crosscheck: error: {error}", file=sys.stderr)
        return EXIT_CRASHED
    except KeyboardInterrupt:
        print("crosscheck: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
