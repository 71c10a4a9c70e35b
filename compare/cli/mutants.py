"""``crosscheck mutants``: run the catalogue of deliberate bugs (``compare.mutants``) through
``compare.check`` and show that each is caught; exit 0 only when every one is."""

from __future__ import annotations

import argparse

from rich.console import Console

from compare import files, mutants
from compare.cli import options
from compare.present import mutants as present_mutants
from implementations.contract import DTYPES

#: The outputs ``mutants`` can write.
OUTPUTS = ("markdown",)


def register(commands) -> None:
    """Add ``crosscheck mutants`` to the sub-parsers ``commands``."""
    parser = commands.add_parser(
        "mutants",
        help="plant realistic bugs and show that the cross-check catches each one",
        description="Run a catalogue of deliberately wrong implementations through the same "
        "check as crosscheck run. Exit 0 when every mutant is caught, 1 when any escapes, 2 on "
        "bad input.",
    )
    names = [mutant.name for mutant in mutants.CATALOGUE]
    parser.add_argument(
        "--only",
        type=options.choices_of(names, "mutant"),
        metavar="NAME[,NAME...]",
        help="run only these mutants (default: all; --list names them)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the catalogue and exit without running it"
    )
    parser.add_argument(
        "--steps",
        type=options.positive_int,
        default=mutants.STEPS,
        help="steps each mutant trains (default: %(default)s)",
    )
    parser.add_argument(
        "--dtype",
        dest="dtypes",
        type=options.choices_of(DTYPES, "dtype"),
        default=mutants.DEFAULT_DTYPES,
        metavar="DTYPE[,DTYPE...]",
        help="run every mutant in each of these dtypes where it is a bug "
        f"(default: {','.join(mutants.DEFAULT_DTYPES)})",
    )
    parser.add_argument(
        "--no-oracles",
        dest="oracles",
        action="store_false",
        help="judge by the comparisons alone (quicker; shows that they catch every bug)",
    )
    options.add_output_options(parser, OUTPUTS)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, console: Console) -> int:
    """List, or run the chosen mutants in every dtype, print, write the outputs."""
    chosen = [m for m in mutants.CATALOGUE if args.only is None or m.name in args.only]
    if args.list:
        present_mutants.render_catalogue(console, chosen)
        return options.Exit.AGREE
    options.check_outputs(args, OUTPUTS)
    results = mutants.run_catalogue(chosen, args.steps, args.dtypes, oracles=args.oracles)
    present_mutants.render_mutants(console, results)
    if args.markdown is not None:
        files.write_atomic(args.markdown, present_mutants.mutants_markdown(results))
    return options.Exit.AGREE if all(r.caught for r in results) else options.Exit.DISAGREE
