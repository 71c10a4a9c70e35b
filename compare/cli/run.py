"""``crosscheck run``: train the frameworks on one recipe, judge them with ``compare.check``,
print the report, write the outputs asked for, exit 0 (agree) or 1 (disagree)."""

from __future__ import annotations

import argparse

from rich.console import Console

from compare import environment, files
from compare.check import check
from compare.cli import options
from compare.cli.recipe_options import add_recipe_options, recipe_from_args
from compare.present import json_report, junit, markdown, plots, terminal, trajectories
from compare.tolerances import MODES

#: The outputs ``run`` can write (``options.OUTPUTS``).
OUTPUTS = ("report", "junit-xml", "markdown", "plots", "trajectories")


def register(commands) -> None:
    """Add ``crosscheck run`` to the sub-parsers ``commands``."""
    parser = commands.add_parser(
        "run",
        help="train every framework on one recipe and compare them at every step",
        description="Train the frameworks from the same initial weights on the same batches "
        "and compare losses, gradients, weights, optimizer state and predictions at every "
        "step. Exit 0 when they agree, 1 when they do not, 2 on bad input, 3 when a framework "
        "crashes.",
    )
    add_recipe_options(parser)
    options.add_framework_options(parser)
    comparison = parser.add_argument_group("comparison")
    comparison.add_argument(
        "--mode",
        choices=MODES,
        default="both",
        help="independent: each framework trains on its own and the trajectories are "
        "compared; synced: at every step each framework evaluates the loss, gradients and one "
        "full update from the reference's state, so a wrong derivative or update fails at "
        "step 0 or 1 in any dtype; both: the two together (default: %(default)s)",
    )
    comparison.add_argument(
        "--no-oracles",
        dest="oracles",
        action="store_false",
        help="skip the gradient oracles (each framework's own finite-difference checker and "
        "the Taylor test)",
    )
    comparison.add_argument(
        "--record-every",
        type=options.positive_int,
        default=1,
        metavar="K",
        help="compare (and keep) every K-th state and the one after it, for very long runs "
        "(default: every state)",
    )
    options.add_tolerance_options(parser, "derived from the dtype, see the README")
    options.add_execution_options(parser)
    options.add_output_options(parser, OUTPUTS)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, console: Console) -> int:
    """Check everything that can be checked, run, print, write the outputs."""
    recipe = recipe_from_args(args)
    frameworks, reference = options.frameworks_from_args(args)
    options.check_outputs(args, OUTPUTS)
    with options.progress_bars() as progress:
        result = check(
            recipe,
            frameworks=frameworks,
            reference=reference,
            mode=args.mode,
            rtol=args.rtol,
            atol=args.atol,
            progress=progress,
            trajectories=args.trajectories is not None,
            record_every=args.record_every,
            oracles=args.oracles,
            isolate=not args.in_process,
        )
    terminal.render_report(console, result)
    write_outputs(args, result, console)
    terminal.render_verdict(console, result)  # last, so that a CI log ends with it
    return options.Exit.AGREE if result.verdict == "pass" else options.Exit.DISAGREE


def write_outputs(args: argparse.Namespace, result, console: Console) -> None:
    """Write every output ``args`` names (each checked before the run), atomically."""
    if args.report is not None:
        document = json_report.to_json(result, environment.describe())
        files.write_atomic(args.report, json_report.dumps(document))
        console.print(f"report written to {args.report}")
    if args.junit_xml is not None:
        files.write_atomic(args.junit_xml, junit.check_result_xml("crosscheck run", result))
        console.print(f"JUnit XML written to {args.junit_xml}")
    if args.markdown is not None:
        files.write_atomic(args.markdown, markdown.run_markdown(result))
        console.print(f"Markdown summary written to {args.markdown}")
    if args.trajectories is not None:
        files.write_atomic(args.trajectories, trajectories.to_npz(result))
        console.print(f"trajectories written to {args.trajectories}")
    if args.plots is not None:
        written = plots.write(result, args.plots)
        console.print(f"plots written: {', '.join(map(str, written))}")
