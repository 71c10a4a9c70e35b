"""The ``crosscheck`` command: ``main`` parses, dispatches to one module per command, and maps
what went wrong to an exit status.

Exit statuses (the README's table):

* 0: every framework agrees with the reference (``mutants``: every mutant caught);
* 1: a disagreement (the verdict line names the first one);
* 2: bad input, an output that cannot be written, a framework that is not installed, a plugin
  that fails to import or breaks the contract, a run refused as too large; one line on
  standard error, never a traceback, and nothing trained;
* 3: a framework crashed in its worker (its last error line is shown), or crosscheck itself
  failed (an internal error: one line naming the error; ``CROSSCHECK_TRACEBACK=1`` prints the
  traceback for a bug report);
* 130: interrupted (Ctrl-C); no output file is left half-written.

A command is a module ``compare.cli.<name>`` (``COMMANDS``) with ``register(commands)``: it adds
its parser to the ``argparse`` sub-parsers and sets ``handler=`` a function
``(args, console) -> int``. Shared options, types and the console live in
``compare.cli.options``; nothing outside this package imports it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata

from compare.cli import options

#: The commands, in the order ``--help`` lists them; a module that does not exist yet is
#: skipped.
COMMANDS = ("run", "sweep", "record", "check", "mutants", "explain", "example")


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean bad input (exit 2); each message is the one line printed.

    Imported here rather than at the top, so that importing ``compare.cli.options`` (every
    command module does) stays light.
    """
    import implementations
    from compare import files
    from compare.baseline import BaselineError
    from compare.harness import TooLarge
    from compare.recipe import RecipeError

    return (
        options.UsageError,
        RecipeError,
        files.OutputError,
        BaselineError,
        TooLarge,
        implementations.FrameworkUnavailable,
        implementations.PluginError,
        implementations.UnknownFramework,
    )


def version() -> str:
    """The installed crosscheck's version."""
    try:
        return metadata.version("crosscheck")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def command_names() -> list[str]:
    """The commands this installation has (``COMMANDS`` whose module exists)."""
    return [name for name in COMMANDS if importlib.util.find_spec(f"{__name__}.{name}")]


def build_parser() -> options.Parser:
    """The ``crosscheck`` parser with every command's sub-parser."""
    parser = options.Parser(
        prog="crosscheck",
        description="Train one network in NumPy (by hand), PyTorch, JAX and your own "
        "implementations, and prove step by step that they agree.",
    )
    parser.add_argument("--version", action="version", version=f"crosscheck {version()}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=options.Parser
    )
    for name in command_names():
        importlib.import_module(f"{__name__}.{name}").register(commands)
    return parser


def _unknown_command(argv: Sequence[str], known: Sequence[str]) -> str | None:
    """The message for a first word that is no command, naming the nearest ones."""
    first = next((word for word in argv if not word.startswith("-")), None)
    if first is None or first in known:
        return None
    nearest = difflib.get_close_matches(first, known, n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(nearest)}?" if nearest else ""
    return f"unknown command {first!r}{hint} (commands: {', '.join(known)})"


def one_line(error: BaseException) -> str:
    """``error``'s message as one line (its last non-empty line, for a multi-line message)."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``crosscheck`` command; returns the exit status."""
    from compare.harness import WorkerError

    argv = list(sys.argv[1:] if argv is None else argv)
    console = options.make_console()
    bad_input = bad_input_errors()
    try:
        unknown = _unknown_command(argv, command_names())
        if unknown is not None:
            raise options.UsageError(unknown)
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as finished:  # --help and --version print and finish here
            return int(finished.code or 0)
        return int(args.handler(args, console))
    except bad_input as error:
        print(f"crosscheck: error: {one_line(error)}", file=sys.stderr)
        return options.Exit.BAD_INPUT
    except WorkerError as error:
        print(f"crosscheck: error: {one_line(error)}", file=sys.stderr)
        return options.Exit.CRASHED
    except KeyboardInterrupt:
        print("crosscheck: interrupted", file=sys.stderr)
        return options.Exit.INTERRUPTED
    except Exception as error:  # a bug in crosscheck (or a library it calls), not the input
        if os.environ.get("CROSSCHECK_TRACEBACK"):
            traceback.print_exc()
        print(
            f"crosscheck: internal error: {type(error).__name__}: {one_line(error)} "
            "(a bug: CROSSCHECK_TRACEBACK=1 shows the traceback for a report)",
            file=sys.stderr,
        )
        return options.Exit.CRASHED
