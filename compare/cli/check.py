"""``crosscheck check BASELINE.json``: rerun a baseline's recipe through ``compare.check`` and
compare every stored framework with its rerun (``compare.baseline``)."""

from __future__ import annotations

import argparse

from rich.console import Console

from compare import baseline, environment, files
from compare.check import check
from compare.cli import options
from compare.cli.recipe_options import add_recipe_options, recipe_from_args, typed_settings
from compare.present import baseline as present_baseline
from compare.present import junit
from compare.tolerances import Tolerance

#: The outputs ``check`` can write.
OUTPUTS = ("junit-xml", "markdown")


def register(commands) -> None:
    """Add ``crosscheck check`` to the sub-parsers ``commands``."""
    parser = commands.add_parser(
        "check",
        help="rerun a baseline's recipe and compare with what it recorded",
        description="Rerun the recipe stored in a baseline with the same frameworks, then "
        "compare every stored quantity of every framework. Prints what changed, where, by how "
        "much, and which library versions differ. Recipe options are optional: each one given "
        "must match the baseline's recipe. Exit 0 when everything is reproduced, 1 when "
        "something changed or the frameworks no longer agree, 2 on bad input.",
    )
    parser.add_argument("baseline", type=options.output_path, metavar="BASELINE.json")
    options.add_tolerance_options(parser, "the baseline's own, stored when it was recorded")
    add_recipe_options(parser)
    options.add_execution_options(parser)
    options.add_output_options(parser, OUTPUTS)
    parser.set_defaults(handler=handle)


def _given_recipe(args: argparse.Namespace, recorded):
    """The recipe the options given describe on top of the baseline's, or ``None`` if none
    was given."""
    if getattr(args, "recipe_file", None) is not None:
        return recipe_from_args(args)  # the file, then the options typed
    typed = typed_settings(args)
    return recorded.replace(**typed) if typed else None


def handle(args: argparse.Namespace, console: Console) -> int:
    """Load and validate the baseline, rerun, compare, print, write the outputs."""
    options.check_outputs(args, OUTPUTS, others={"BASELINE.json": args.baseline})
    recorded = baseline.load(args.baseline)
    wanted = _given_recipe(args, recorded.recipe)
    if wanted is not None:
        differences = baseline.recipe_differences(recorded.recipe, wanted)
        if differences:
            raise options.UsageError(
                f"{args.baseline} was recorded for a different recipe: {'; '.join(differences)}"
            )
    tolerance = Tolerance(
        recorded.tolerance.rtol if args.rtol is None else args.rtol,
        recorded.tolerance.atol if args.atol is None else args.atol,
    )
    with options.progress_bars() as progress:
        rerun = check(
            recorded.recipe,
            frameworks=recorded.frameworks,
            reference=recorded.reference,
            mode=recorded.mode,
            rtol=recorded.check_rtol,
            atol=recorded.check_atol,
            progress=progress,
            trajectories=baseline.kept_states(recorded.recipe.steps),
            isolate=not args.in_process,
        )
    result = baseline.compare(recorded, rerun, tolerance, environment.describe())
    present_baseline.render_baseline_check(console, result)
    comparisons = [*rerun.comparisons, *result.comparisons]
    if args.junit_xml is not None:
        xml = junit.to_junit_xml("crosscheck check", comparisons, junit.check_failures(rerun))
        files.write_atomic(args.junit_xml, xml)
    if args.markdown is not None:
        files.write_atomic(args.markdown, present_baseline.baseline_markdown(result))
    return options.Exit.AGREE if result.verdict == "pass" else options.Exit.DISAGREE
