"""``crosscheck explain``: one training step term by term, beside torch's graph and JAX's jaxpr.

Parses the recipe options (or ``--example NAME``, whose recipe the options then modify, as
``--recipe FILE``'s would), ``--step K`` and ``--rows N``, computes the explanation with
``compare.explain``, prints the document (``compare.present.explain``) and writes it as Markdown
to ``--markdown PATH`` when asked. Exit 0 when the frameworks agree, 1 when they do not, 2 on
bad input (a step outside the recipe, an unknown example, ...).
"""

from __future__ import annotations

import argparse

from rich.console import Console

from compare import examples, explain, files
from compare.cli import options
from compare.cli.recipe_options import add_recipe_options, recipe_from_args, typed_settings
from compare.present import explain as present

#: The outputs ``explain`` can write.
OUTPUTS = ("markdown",)


def register(commands) -> None:
    """Add ``crosscheck explain`` to the sub-parsers ``commands``."""
    parser = commands.add_parser(
        "explain",
        help="take one training step apart: the chain rule by hand beside torch's autograd "
        "graph and JAX's jaxpr",
        description="Explain one training step: the forward pass, the loss and its derivative, "
        "the backward pass written out as the chain rule (NumPy), the optimizer's update line "
        "by line, the autograd graph PyTorch built, the jaxpr JAX built, and whether they "
        "agree. Steps count from 0: step K takes its gradient at state K (the parameters "
        "before update K). Explains the reference recipe unless recipe options or --example "
        "say otherwise.",
    )
    add_recipe_options(parser)
    shown = parser.add_argument_group("what to explain")
    shown.add_argument(
        "--example",
        metavar="NAME",
        help="explain a worked example (crosscheck example --list); recipe options given "
        f"change its recipe ({', '.join(examples.EXAMPLES)})",
    )
    shown.add_argument(
        "--step",
        type=int,
        default=0,
        metavar="K",
        help="explain step K, counted from 0: its loss and gradient at state K (after K "
        "updates) and its update into state K+1 (default: 0)",
    )
    shown.add_argument(
        "--rows",
        type=options.positive_int,
        metavar="N",
        help="show the step on the first N rows of its batch only (default: the whole batch)",
    )
    options.add_output_options(parser, OUTPUTS)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace, console: Console) -> int:
    """Build the recipe, check the request, explain, print, write the Markdown."""
    title = None
    if args.example is not None:
        if getattr(args, "recipe_file", None) is not None:
            raise options.UsageError("give --example or --recipe, not both")
        try:
            example = examples.lookup(args.example)
        except examples.UnknownExample as error:
            raise options.UsageError(str(error)) from None
        typed = typed_settings(args)
        recipe = example.recipe.replace(**typed) if typed else example.recipe
        title = example.name
    else:
        recipe = recipe_from_args(args)
    options.check_outputs(args, OUTPUTS)
    try:
        explanation = explain.explain(recipe, title=title, step=args.step, rows=args.rows)
    except explain.ExplainError as error:
        raise options.UsageError(str(error)) from None
    width = console.width
    console.print(
        present.to_text(present.explanation_blocks(explanation, width), width),
        markup=False,
        highlight=False,
        soft_wrap=True,
        end="",
    )
    if args.markdown is not None:
        document = present.to_markdown(present.explanation_blocks(explanation))
        files.write_atomic(args.markdown, document)
        console.print(f"Markdown written to {args.markdown}", markup=False, highlight=False)
    return options.Exit.AGREE if explanation.verdict == "pass" else options.Exit.DISAGREE
