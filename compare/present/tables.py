"""Terminal tables that never cut a number or a name.

A rich table that is wider than the console shrinks its columns and cuts or breaks what no
longer fits ("1.2e-0…"). Here every table is built with ``table`` and printed through
``show``: when the console is wide enough for every cell on one line (prose columns wrapping
only at spaces), it is printed as a table; when it is not, a narrower version with fewer
columns, if the caller gave one and it fits; else the full rows are printed stacked, one block
per row, ``column: value`` per line. An 80-column terminal shows every number and name whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    caption: str | None = None,
    left: Sequence[str] = (),
    wrap: Sequence[str] = (),
) -> Table:
    """A table with ``columns`` (right-aligned but for ``left``) holding ``rows``.

    Cells may hold rich markup (``[green]ok[/green]``). Only the ``wrap`` columns (prose, such
    as a bug's description) may wrap, and only at spaces (``fit`` sees to that); every other
    cell is printed on one line, whole.
    """
    built = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in columns:
        built.add_column(
            column,
            justify="left" if column in left or column in wrap else "right",
            no_wrap=column not in wrap,
            overflow="fold",
        )
    for row in rows:
        built.add_row(*map(_cell_text, row))
    return built


def _natural_width(console: Console, renderable) -> Measurement:
    # Measured against an unlimited width: rich clamps a measurement to the width it is given.
    return Measurement.get(console, console.options.update_width(1_000_000), renderable)


def _level(widths: Sequence[int], total: int) -> list[int]:
    """Cap the largest of ``widths`` at one level so that they sum to ``total``, as rich
    narrows wrapping columns (widest first)."""
    level = max(widths)
    while level > 0 and sum(min(width, level) for width in widths) > total:
        level -= 1
    return [min(width, level) for width in widths]


def fit(console: Console, built: Table) -> RenderableType:
    """``built`` when it fits the console with every word of every cell whole, else the same
    rows ``stacked``.

    A table wider than the console keeps its one-line columns and narrows its ``wrap``
    columns (setting their widths, so rich has nothing left to decide) as long as each stays
    at least as wide as its longest word.
    """
    excess = _natural_width(console, built).maximum - console.width
    if excess <= 0:
        return built
    wrapping = [column for column in built.columns if not column.no_wrap]
    if wrapping:
        cells = [[Text(str(column.header)), *map(_cell_text, column.cells)] for column in wrapping]
        longest = [max(_natural_width(console, c).maximum for c in texts) for texts in cells]
        words = [max(_natural_width(console, c).minimum for c in texts) for texts in cells]
        narrowed = _level(longest, sum(longest) - excess)
        if all(width >= word for width, word in zip(narrowed, words, strict=True)):
            for column, width in zip(wrapping, narrowed, strict=True):
                column.width = width
            return built
    return stacked(built)


def _cell_text(value: object) -> Text:
    # emoji=False: a quantity such as state:m:W1 holds ":m:", which rich reads as an emoji code.
    return value if isinstance(value, Text) else Text.from_markup(str(value), emoji=False)


def stacked(built: Table) -> Group:
    """``built``'s rows as blocks of ``column: value`` lines, each block led by a dash."""
    lines: list[RenderableType] = []
    if built.title:
        lines.append(Text(str(built.title), style="bold"))
    headers = [str(column.header) for column in built.columns]
    cells = [list(column.cells) for column in built.columns]
    for row in range(built.row_count):
        values = [cells[column][row] for column in range(len(headers))]
        for position, (header, value) in enumerate(zip(headers, values, strict=True)):
            lines.append(_markup(value, f"{'-' if position == 0 else ' '} {header}: "))
    if built.caption:
        lines.append(Text(str(built.caption), style="dim"))
    return Group(*lines)


def _markup(value: object, prefix: str) -> Text:
    return Text(prefix) + _cell_text(value)


def show(console: Console, built: Table, *narrower: Table) -> None:
    """Print ``built`` as a table if it fits, else the first of the ``narrower`` versions (fewer
    columns) that fits, else ``built`` stacked: every cell whole in any case."""
    for candidate in (built, *narrower):
        shown = fit(console, candidate)
        if shown is candidate:
            console.print(candidate)
            return
    console.print(stacked(built))
