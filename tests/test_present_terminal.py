"""Terminal output: tables never cut a number or a name; colour follows the terminal and the
environment (NO_COLOR, CI), tested on a console that believes it is a terminal, so the test
can fail."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from compare.cli import options
from compare.present import tables

LONG_ROWS = [
    ["torch_nn", "state:momentum:W12", "1.2345e-05", "4.5678e-07", "4999 (63, 9)", "ok"],
    ["flax_nnx", "test_predictions", "0.00e+00", "0.00e+00", "0", "FAIL"],
]
COLUMNS = ("framework", "quantity", "max abs", "max rel", "worst at", "status")


def _printed(width: int, built) -> str:
    stream = io.StringIO()
    console = Console(file=stream, width=width, force_terminal=True, color_system=None)
    tables.show(console, built)
    return stream.getvalue()


@pytest.mark.parametrize("width", [40, 60, 80, 100, 200])
def test_no_cell_is_ever_cut_or_broken(width):
    printed = _printed(width, tables.table("Agreement", COLUMNS, LONG_ROWS, left=COLUMNS[:2]))
    lines = printed.splitlines()
    for row in LONG_ROWS:
        for cell in row:
            assert any(cell in line for line in lines), f"{cell!r} cut at width {width}:\n{printed}"
    assert "…" not in printed
    assert max(len(line.rstrip()) for line in lines) <= width


def test_a_wide_enough_console_gets_a_table_and_a_narrow_one_stacked_rows():
    built = tables.table("Agreement", COLUMNS, LONG_ROWS, left=COLUMNS[:2])
    assert "┃ framework" in _printed(200, built)
    stacked = _printed(60, tables.table("Agreement", COLUMNS, LONG_ROWS, left=COLUMNS[:2]))
    assert "- framework: torch_nn" in stacked and "  max abs: 1.2345e-05" in stacked


def test_prose_columns_wrap_at_spaces_and_keep_every_word():
    bug = "a rather long description of the bug that needs several lines at eighty columns"
    rows = [["loss-typo", "numpy", bug, "yes (1/9)", "0"]]
    columns = ("mutant", "in", "bug", "caught", "first step")
    printed = _printed(80, tables.table("Mutants", columns, rows, left=columns[:3], wrap=("bug",)))
    assert "┃ mutant" in printed, "a table whose prose can wrap should stay a table"
    for word in bug.split():
        assert f" {word} " in printed or f" {word}\n" in printed or f"{word} │" in printed, word
    assert "loss-typo" in printed and "yes (1/9)" in printed


def _console_output(environ: dict[str, str], terminal: bool) -> str:
    stream = io.StringIO()
    console = options.make_console(stream, environ=environ, force_terminal=terminal)
    console.print("[bold red]FAIL[/bold red] and [green]ok[/green]")
    return stream.getvalue()


def test_a_terminal_gets_colour():
    assert "\x1b[" in _console_output({"TERM": "xterm-256color"}, terminal=True)


@pytest.mark.parametrize(
    "environ",
    [{"NO_COLOR": "1"}, {"CI": "true"}, {"CI": "1"}],
    ids=["NO_COLOR", "CI=true", "CI=1"],
)
def test_no_color_and_ci_turn_every_escape_code_off_even_on_a_terminal(environ):
    printed = _console_output({"TERM": "xterm-256color", **environ}, terminal=True)
    assert "\x1b[" not in printed and "FAIL and ok" in printed


def test_ci_false_keeps_colour():
    assert "\x1b[" in _console_output({"TERM": "xterm-256color", "CI": "false"}, terminal=True)


def test_piped_output_is_plain_and_honours_columns():
    assert "\x1b[" not in _console_output({"TERM": "xterm-256color"}, terminal=False)
    piped = options.make_console(io.StringIO(), environ={"COLUMNS": "80"}, force_terminal=False)
    assert piped.width == 80
    default = options.make_console(io.StringIO(), environ={}, force_terminal=False)
    assert default.width == options.PIPED_WIDTH


def test_progress_bars_are_off_when_output_is_plain(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert not options.plain_output({}, Terminal())
    assert options.plain_output({"CI": "true"}, Terminal())
    assert options.plain_output({"NO_COLOR": "x"}, Terminal())
    assert options.plain_output({}, io.StringIO())
