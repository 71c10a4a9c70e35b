"""``crosscheck example``: run a worked example through every framework and show its numbers.

``--list`` names the examples; ``NAME`` runs one through ``compare.check`` (``compare.examples``)
and prints the table of numbers a learner checks by hand (``compare.present.explain``), and
writes it as Markdown to ``--markdown PATH`` when asked. Exit 0 when the frameworks agree, 1
when they do not, 2 on bad input.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from compare import examples, files
from compare.cli import options
from compare.present import explain as present
from implementations.contract import DTYPES

#: The outputs ``example`` can write.
OUTPUTS = ("markdown",)


def register(commands) -> None:
    """Add ``crosscheck example`` to the sub-parsers ``commands``."""
    parser = commands.add_parser(
        "example",
        help="run a worked example through every framework and show every number",
        description="Run a worked example (explicit weights, inputs and targets, or the "
        "reference recipe) through NumPy, PyTorch and JAX with the same check as crosscheck "
        "run, and show the outputs, the loss and every gradient at step 0, every parameter "
        "and optimizer buffer after the first update, and the outputs after the last. Exit 0 "
        "when the frameworks agree, 1 when they do not.",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="the example to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list the worked examples")
    parser.add_argument(
        "--dtype", choices=DTYPES, help="compute in this dtype (default: the example's, float64)"
    )
    options.add_framework_options(parser)
    parser.add_argument(
        "--no-oracles",
        dest="oracles",
        action="store_false",
        help="skip the gradient oracles (each framework's own finite-difference checker and "
        "the Taylor test); the numbers shown do not depend on them",
    )
    options.add_execution_options(parser)
    options.add_output_options(parser, OUTPUTS)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, console: Console) -> int:
    """List the examples, or run one, print its numbers and exit by ``check``'s verdict."""
    if args.list:
        entries = present.example_list(examples.EXAMPLES.values())
        width = max(len(name) for name, _ in entries)
        for name, summary in entries:
            console.print(
                f"{name:<{width}}  {summary}", markup=False, highlight=False, soft_wrap=True
            )
        return options.Exit.AGREE
    if args.name is None:
        raise options.UsageError("name an example, or use --list to see them")
    try:
        example = examples.lookup(args.name)
    except examples.UnknownExample as error:
        raise options.UsageError(str(error)) from None
    frameworks, reference = options.frameworks_from_args(args)
    options.check_outputs(args, OUTPUTS)
    with options.progress_bars() as progress:
        result = examples.run(
            example,
            frameworks=frameworks,
            reference=reference,
            dtype=args.dtype,
            isolate=not args.in_process,
            oracles=args.oracles,
            progress=progress,
        )
    blocks = present.example_blocks(result)
    console.print(
        present.to_text(blocks, console.width),
        markup=False,
        highlight=False,
        soft_wrap=True,
        end="",
    )
    if args.markdown is not None:
        files.write_atomic(args.markdown, present.to_markdown(blocks))
        console.print(f"Markdown written to {args.markdown}", markup=False, highlight=False)
    return options.Exit.AGREE if result.verdict == "pass" else options.Exit.DISAGREE
