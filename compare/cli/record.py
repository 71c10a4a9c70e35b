"""``crosscheck record BASELINE.json``: run a recipe through ``compare.check`` and, when the
frameworks agree, store what later runs must reproduce (``compare.baseline``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from compare import baseline, environment, files
from compare.check import check
from compare.cli import options
from compare.cli.recipe_options import add_recipe_options, recipe_from_args
from compare.present import junit, markdown, terminal
from compare.tolerances import MODES

#: The outputs ``record`` can write besides the baseline.
OUTPUTS = ("junit-xml", "markdown")


def register(commands) -> None:
    """Add ``crosscheck record`` to the sub-parsers ``commands``."""
    parser = commands.add_parser(
        "record",
        help="run a recipe and store what later runs must reproduce",
        description="Run a recipe as crosscheck run does and, when the frameworks agree, write "
        "a JSON baseline: the recipe, how it was checked, the environment, and per framework "
        "every quantity at 11 checkpoints plus the trained model's test results. Exit 0 when "
        "written, 1 when the frameworks disagree (nothing written), 2 on bad input.",
    )
    parser.add_argument("baseline", type=options.output_path, metavar="BASELINE.json")
    add_recipe_options(parser)
    options.add_framework_options(parser)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="both",
        help="the comparison mode, as for run (default: %(default)s)",
    )
    options.add_tolerance_options(
        parser, "derived from the dtype; stored in the baseline and used again by check"
    )
    options.add_execution_options(parser)
    options.add_output_options(parser, OUTPUTS)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, console: Console) -> int:
    """Check the inputs, run, and write the baseline only when the frameworks agree."""
    recipe = recipe_from_args(args)
    frameworks, reference = options.frameworks_from_args(args)
    path: Path = args.baseline
    if path.exists() and not args.force:
        raise files.OutputError(f"refusing to overwrite baseline {path}: it exists (use --force)")
    files.check_writable(path, schema=baseline.SCHEMA, force=True)
    options.check_outputs(args, OUTPUTS, others={"BASELINE.json": path})
    with options.progress_bars() as progress:
        result = check(
            recipe,
            frameworks=frameworks,
            reference=reference,
            mode=args.mode,
            rtol=args.rtol,
            atol=args.atol,
            progress=progress,
            trajectories=baseline.kept_states(recipe.steps),
            isolate=not args.in_process,
        )
    terminal.render_report(console, result, "crosscheck record")
    if args.junit_xml is not None:
        files.write_atomic(args.junit_xml, junit.check_result_xml("crosscheck record", result))
    if args.markdown is not None:
        files.write_atomic(args.markdown, markdown.run_markdown(result, "crosscheck record"))
    if result.verdict != "pass":
        console.print(f"baseline not written: the frameworks disagree ({path})")
        terminal.render_verdict(console, result)
        return options.Exit.DISAGREE
    document = baseline.record(result, environment.describe(), args.rtol, args.atol)
    files.write_atomic(path, baseline.dumps(document))
    tolerance = document["tolerance"]
    console.print(
        f"baseline written to {path}: {', '.join(result.frameworks)}, {recipe.steps} steps, "
        f"rtol {tolerance['rtol']:.3g}, atol {tolerance['atol']:.3g}"
    )
    terminal.render_verdict(console, result)
    return options.Exit.AGREE
