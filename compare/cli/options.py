"""The command line's shared plumbing, written once: exit codes, the parser class, argument
types, option groups, the console, progress bars and output paths.

Every command module (``run``, ``record``, ``check``, ``mutants``, ``explain``, ``example``,
``sweep``) builds its parser from the groups here and checks its inputs through them, so a
given option means, parses and fails the same way in every command. Bad input raises
``UsageError`` (one line); ``compare.cli.main`` turns it into exit status 2. Nothing here
trains, compares or formats a result; nothing outside ``compare.cli`` imports this module.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import implementations
from compare import files
from compare.check import DEFAULT_FRAMEWORKS
from compare.present import json_report, junit, markdown, plots, trajectories


class Exit(IntEnum):
    """The exit statuses of every command (documented in the README)."""

    AGREE = 0
    DISAGREE = 1
    BAD_INPUT = 2
    CRASHED = 3
    INTERRUPTED = 130


class UsageError(ValueError):
    """Bad input from the user; the message is the one line printed."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error raises ``UsageError`` (one line, exit 2, no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


# Argument types --------------------------------------------------------------------------------


def tolerance(text: str) -> float:
    """``--rtol`` / ``--atol``: a finite, non-negative number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"a tolerance must be a finite non-negative number, got {text!r}"
        )
    return value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def output_path(text: str) -> Path:
    """A path to write to; an empty one is refused (``--plots ""`` would mean the folder here)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a path, got an empty one")
    return Path(text)


def comma_list(text: str) -> tuple[str, ...]:
    """``a,b,c`` -> ``("a", "b", "c")``; at least one item."""
    items = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def choices_of(choices: Sequence[str], what: str):
    """An argument type for a comma list whose items must be among ``choices``."""

    def parse(text: str) -> tuple[str, ...]:
        items = comma_list(text)
        unknown = [item for item in items if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {unknown[0]!r}; choose from {', '.join(choices)}"
            )
        return items

    return parse


# Frameworks ------------------------------------------------------------------------------------

#: The reference unless ``--reference`` names another.
DEFAULT_REFERENCE = "numpy"


def add_framework_options(parser: argparse.ArgumentParser) -> None:
    """``--frameworks`` and ``--reference`` (names, ``path/to/impl.py`` or ``pkg.module``)."""
    group = parser.add_argument_group("frameworks")
    group.add_argument(
        "--frameworks",
        type=comma_list,
        default=DEFAULT_FRAMEWORKS,
        metavar="SPEC[,SPEC...]",
        help="implementations to compare: built-in names "
        f"({', '.join(implementations.NAMES)}), installed plugins, path/to/impl.py or "
        f"pkg.module; the reference always runs too (default: {','.join(DEFAULT_FRAMEWORKS)})",
    )
    group.add_argument(
        "--reference",
        default=DEFAULT_REFERENCE,
        metavar="SPEC",
        help="the implementation the others are compared with (default: %(default)s)",
    )


def frameworks_from_args(args: argparse.Namespace) -> tuple[tuple[str, ...], str]:
    """The frameworks to run (reference first) and the reference, each checked before training.

    Built-ins are looked up without importing their framework; a plugin (a file, a module or
    an entry point) is imported and checked against the contract, so a broken one is refused
    here, in one line, rather than in a worker after the others trained.

    Raises:
        UsageError: fewer than two frameworks to compare.
        implementations.UnknownFramework, implementations.FrameworkUnavailable,
        implementations.PluginError: a spec that cannot be used.
    """
    reference = args.reference
    frameworks = tuple(dict.fromkeys((reference, *args.frameworks)))
    if len(frameworks) < 2:
        raise UsageError(
            f"--frameworks {reference} compares nothing: {reference} is the reference; name a "
            f"second framework to compare with it, e.g. --frameworks {reference},torch"
        )
    for spec in frameworks:
        if spec in implementations.NAMES:
            implementations.check_available(spec)
        else:
            implementations.load(spec)
    return frameworks, reference


# Tolerances, execution, progress ----------------------------------------------------------------


def add_tolerance_options(parser: argparse.ArgumentParser, default: str) -> None:
    """``--rtol`` and ``--atol`` (finite, non-negative); ``default`` says what applies without
    them."""
    group = parser.add_argument_group("tolerance: |a - b| <= atol + rtol*|b|, b the reference")
    group.add_argument(
        "--rtol", type=tolerance, metavar="R", help=f"relative tolerance (default: {default})"
    )
    group.add_argument(
        "--atol", type=tolerance, metavar="A", help=f"absolute tolerance (default: {default})"
    )


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """``--in-process``: train in this process instead of one worker process per framework."""
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="train the frameworks one after another in this process instead of one worker "
        "process each (slower; for debugging)",
    )


def colour_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment turns colour and progress bars off: ``NO_COLOR`` set (any
    value, https://no-color.org) or ``CI`` set to anything but an empty, ``0`` or ``false``."""
    environ = os.environ if environ is None else environ
    ci = environ.get("CI", "").strip().lower()
    return bool(environ.get("NO_COLOR")) or ci not in ("", "0", "false", "no")


def plain_output(environ: Mapping[str, str] | None = None, stream: IO[str] | None = None) -> bool:
    """No colour and no progress bars: ``colour_disabled``, or ``stream`` (default: standard
    error, where the bars go) not a terminal."""
    stream = sys.stderr if stream is None else stream
    return colour_disabled(environ) or not (hasattr(stream, "isatty") and stream.isatty())


#: Width of output that goes to a file or a pipe, unless ``COLUMNS`` says otherwise.
PIPED_WIDTH = 120


def make_console(
    stream: IO[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    force_terminal: bool | None = None,
) -> Console:
    """The console a command prints to (standard output by default).

    Colour is on only on a terminal and when ``colour_disabled`` is false; off, no escape
    code at all is written (not even bold). The width is ``COLUMNS`` when set, else the
    terminal's, else ``PIPED_WIDTH`` for a file or a pipe.

    Args:
        stream: Where to print.
        environ: The environment to read (default: ``os.environ``).
        force_terminal: Treat ``stream`` as a terminal (or not) whatever it is.
    """
    environ = os.environ if environ is None else environ
    stream = sys.stdout if stream is None else stream
    terminal = stream.isatty() if force_terminal is None else force_terminal
    colour = terminal and not colour_disabled(environ)
    columns = environ.get("COLUMNS", "").strip()
    width = int(columns) if columns.isdigit() and int(columns) > 0 else None
    if width is None and not terminal:
        width = PIPED_WIDTH
    return Console(
        file=stream,
        width=width,
        force_terminal=terminal,
        color_system="auto" if colour else None,
        no_color=not colour,
        highlight=False,
        _environ=dict(environ),
    )


class ProgressBars:
    """A bar per framework on standard error, shown only once a run passes a second.

    Called as ``progress(framework, done, total)`` (the library's progress callback); a no-op
    when output is plain (``plain_output``).
    """

    #: Seconds before the bars appear: short runs print no bars at all.
    DELAY = 1.0

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._started = time.monotonic()
        self._progress: Progress | None = None
        self._tasks: dict[str, int] = {}

    def __call__(self, framework: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._progress is None:
            if time.monotonic() - self._started < self.DELAY:
                return
            self._progress = Progress(
                TextColumn("{task.description:>8}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
        if framework not in self._tasks:
            self._tasks[framework] = self._progress.add_task(framework, total=total)
        self._progress.update(self._tasks[framework], completed=done, total=total)

    def close(self) -> None:
        """Remove the bars (they are transient) and stop their refresh thread."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def progress_bars() -> Iterator[ProgressBars]:
    """``ProgressBars`` for the duration of a run, closed even on Ctrl-C or an error."""
    bars = ProgressBars(enabled=not plain_output())
    try:
        yield bars
    finally:
        bars.close()


# Outputs ---------------------------------------------------------------------------------------

#: Output option -> (argparse destination, metavar, help, the schema that marks its files).
OUTPUTS: dict[str, tuple[str, str, str, str | None]] = {
    "report": ("report", "PATH", "write the full result as JSON", json_report.SCHEMA),
    "junit-xml": (
        "junit_xml",
        "PATH",
        "write JUnit XML: one test case per comparison, a failure carrying its message",
        junit.SCHEMA,
    ),
    "markdown": (
        "markdown",
        "PATH",
        "write a Markdown summary (a CI job summary)",
        markdown.SCHEMA,
    ),
    "plots": ("plots", "DIR", "draw PNG plots into DIR (created if missing)", None),
    "trajectories": (
        "trajectories",
        "FILE.npz",
        'write every framework\'s per-step records to an .npz, keys "framework/quantity"',
        trajectories.SCHEMA,
    ),
}


def add_output_options(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """The output options ``names`` (keys of ``OUTPUTS``), each ``--NAME PATH``, and ``--force``.

    Every output is checked before any training (``check_outputs``) and written atomically; a
    file already there is replaced only when it is the same kind of crosscheck output, or with
    ``--force``.
    """
    group = parser.add_argument_group("outputs (checked before training, written atomically)")
    for name in names:
        destination, metavar, help_text, _ = OUTPUTS[name]
        group.add_argument(
            f"--{name}", dest=destination, type=output_path, metavar=metavar, help=help_text
        )
    group.add_argument(
        "--force",
        action="store_true",
        help="let the outputs replace files that crosscheck did not write",
    )


def check_outputs(
    args: argparse.Namespace, names: Sequence[str], others: Mapping[str, Path] | None = None
) -> None:
    """Refuse, before anything trains, outputs that cannot be written or would collide.

    Args:
        args: The parsed options (``add_output_options`` added ``names``).
        names: The output options the command has.
        others: Further paths the command writes, by the option that names them (a baseline),
            checked for collisions only.

    Raises:
        UsageError: two outputs name the same path.
        files.OutputError: a path cannot be written, or holds something that is not the same
            kind of crosscheck output and ``--force`` is not given.
    """
    given = {f"--{name}": getattr(args, OUTPUTS[name][0]) for name in names}
    given = {option: path for option, path in given.items() if path is not None}
    given.update(others or {})
    seen: dict[Path, str] = {}
    for option, path in given.items():
        resolved = Path(os.path.abspath(path))
        if resolved in seen:
            raise UsageError(
                f"{seen[resolved]} and {option} both name {path}; give each output its own path"
            )
        seen[resolved] = option
    for name in names:
        destination, _, _, schema = OUTPUTS[name]
        path = getattr(args, destination)
        if path is None:
            continue
        if name == "plots":
            plots.prepare(path)
        else:
            files.check_writable(path, schema=schema, force=args.force)
