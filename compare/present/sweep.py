"""A sweep's report for people and tools: terminal tables, the JSON file, Markdown, histograms.

Everything here reads the report document that ``compare.sweep.SweepResult.document`` builds
(the same plain data whether it was just computed or read back from a file) and words it; the
verdicts in it are ``compare.check``'s, summed up by ``compare.sweep``. Nothing here decides
anything. matplotlib is imported only when histograms are drawn.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from compare import files
from compare.present import markdown, plots, tables, text

#: Cells whose difference tables the terminal shows in full; beyond it, only the cells that
#: did not pass (the JSON report holds every cell).
FULL_TABLES_UP_TO = 4

#: Worst seeds the terminal and Markdown show per cell (the JSON report holds more).
WORST_SHOWN = 3

#: Test rows named per seed when predictions differ.
ROWS_SHOWN = 3

#: Seeds with differing predictions the terminal and Markdown name per cell.
PREDICTIONS_SHOWN = 5


def dumps(document: Mapping[str, Any]) -> str:
    """The report as strict JSON text (no NaN), indented, ending in a newline."""
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


def _float(value: Any) -> float:
    # Non-finite numbers are stored as the strings "inf" and "nan".
    return float(value)


def where_line(where: str, document: Mapping[str, Any], reused: int) -> str:
    """``"Sweep: 2 cells x 100 seeds = 200 checks of numpy, torch (reference numpy), mode
    both, on a local Dask cluster of 2 worker processes"``, and how many come from the report
    resumed."""
    cells, seeds = document["cells_total"], len(document["seeds"])
    settings = document["settings"]
    line = (
        f"Sweep: {cells} cell{'s' * (cells != 1)} x {seeds} seed{'s' * (seeds != 1)} = "
        f"{cells * seeds} checks of {', '.join(settings['frameworks'])} (reference "
        f"{settings['reference']}), mode {settings['mode']}, on {where}"
    )
    if settings.get("oracles"):
        # The oracles check gradient formulas, which do not depend on the seed.
        line += "; gradient oracles on each cell's first seed"
    if reused:
        line += f"; {reused} already in the report, not checked again"
    return line + "."


def verdict_line(document: Mapping[str, Any]) -> str:
    """The line that ends the report: every cell agrees, or which cells do not and where."""
    cells = document["cells"]
    seeds = len(document["seeds"])
    verdict = document["verdict"]
    if verdict == "pass":
        return (
            f"PASS: every framework agrees with {document['settings']['reference']} in all "
            f"{len(cells)} cell{'s' * (len(cells) != 1)} at every one of {seeds} "
            f"seed{'s' * (seeds != 1)}."
        )
    failing = [cell for cell in cells if cell["verdict"] == "fail"]
    if failing:
        first = failing[0]
        seed = first["failing_seeds"][0]
        failure = next(r for r in first["per_seed"] if r["seed"] == seed)["first_failure"]
        return (
            f"FAIL: {len(failing)} of {len(cells)} cells disagree; first: {first['label']} at "
            f"{len(first['failing_seeds'])} of {first['seeds']['done']} seeds, seed {seed}: "
            f"{_failure_text(failure)}."
        )
    broken = [cell for cell in cells if cell["verdict"] == "error"]
    if broken:
        crash = broken[0]["crashes"][0]
        return (
            f"ERROR: {len(broken)} of {len(cells)} cells could not be checked at every seed; "
            f"first: {broken[0]['label']} seed {crash['seed']}: {crash['message']}"
        )
    return f"INCOMPLETE: {sum(c['verdict'] != 'pass' for c in cells)} cells have seeds to run."


def _failure_text(failure: Mapping[str, Any] | None) -> str:
    if failure is None:
        return "a gradient oracle failed or a precision switch changed (see the JSON report)"
    return (
        f"{failure['framework']} {failure['quantity']} ({failure['mode']}) first fails at step "
        f"{failure['first_failing_step']}, greatest difference "
        f"{text.number(_float(failure['max_abs']))}"
    )


def _seed_text(entry: Mapping[str, Any]) -> str:
    if entry["verdict"] == "fail":
        return f"seed {entry['seed']} FAILS: {_failure_text(entry['first_failure'])}"
    if entry["quantity"] is None:
        return f"seed {entry['seed']}: no differences"
    ratio = _float(entry["times_median"])
    times = "where the median seed has none" if math.isinf(ratio) else f"{ratio:.3g}x the median"
    return (
        f"seed {entry['seed']}: {entry['framework']} {entry['quantity']} ({entry['mode']}) "
        f"{text.number(_float(entry['max_abs']))}, {times}"
    )


def _differing_seeds(cell: Mapping[str, Any]) -> int:
    """Seeds at which some framework's trained model classifies a test row otherwise."""
    return len({entry["seed"] for entry in cell["prediction_differences"]})


def _prediction_lines(cell: Mapping[str, Any]) -> list[str]:
    """One line per seed and framework whose trained model classifies a test row otherwise
    (the first ``PREDICTIONS_SHOWN``, then how many more)."""
    entries = cell["prediction_differences"]
    lines = []
    for entry in entries[:PREDICTIONS_SHOWN]:
        rows = entry["rows"]
        named = ", ".join(
            f"row {row['row']} class {row['class']} vs {row['reference_class']} "
            f"({'near tie' if row['near_tie'] else 'NOT a near tie'})"
            for row in rows[:ROWS_SHOWN]
        )
        more = f" and {len(rows) - ROWS_SHOWN} more" if len(rows) > ROWS_SHOWN else ""
        lines.append(f"seed {entry['seed']}, {entry['framework']}: {named}{more}")
    if len(entries) > PREDICTIONS_SHOWN:
        lines.append(f"and {len(entries) - PREDICTIONS_SHOWN} more (the JSON report lists all)")
    return lines


def _status(verdict: str) -> str:
    return {
        "pass": "[green]pass[/green]",
        "fail": "[bold red]FAIL[/bold red]",
        "error": "[bold red]ERROR[/bold red]",
    }.get(verdict, verdict)


def _exactly_equal(facts: Mapping[str, Any]) -> bool:
    """Every seed's difference is exactly 0."""
    return _float(facts["max"]) == 0


def _difference_rows(cell: Mapping[str, Any]) -> list[list[str]]:
    """One row per framework, mode and quantity with a difference at some seed."""
    rows = []
    for framework, modes in cell["errors"].items():
        for mode, by_quantity in modes.items():
            for quantity, facts in by_quantity.items():
                if _exactly_equal(facts):
                    continue
                failed = facts["failed_seeds"]
                rows.append(
                    [
                        framework,
                        mode,
                        quantity,
                        text.scientific(_float(facts["min"])),
                        text.scientific(_float(facts["median"])),
                        text.scientific(_float(facts["p90"])),
                        text.scientific(_float(facts["max"])),
                        str(facts["worst_seed"]),
                        str(len(failed)) if failed else "-",
                    ]
                )
    return rows


DIFFERENCE_COLUMNS = (
    "framework",
    "mode",
    "quantity",
    "min",
    "median",
    "p90",
    "max",
    "worst seed",
    "beyond tol",
)


def _equal_count(cell: Mapping[str, Any]) -> int:
    """Comparisons of ``cell`` whose difference is exactly 0 at every seed."""
    return sum(
        _exactly_equal(facts)
        for modes in cell["errors"].values()
        for by_quantity in modes.values()
        for facts in by_quantity.values()
    )


def render(console: Console, document: Mapping[str, Any]) -> None:
    """The sweep's report: the cells, the spread of the differences across seeds, the worst
    seeds, the seeds whose predictions differ, crashes, and the verdict line."""
    cells = document["cells"]
    rows = [
        [
            str(cell["index"]),
            cell["label"],
            f"{cell['seeds']['done']}/{cell['seeds']['asked']}",
            str(cell["seeds"]["failed"]),
            str(_differing_seeds(cell)),
            str(cell["seeds"]["errors"]),
            _status(cell["verdict"]),
        ]
        for cell in cells
    ]
    tables.show(
        console,
        tables.table(
            "Cells (each seed judged by the same rules as crosscheck run)",
            ("#", "cell", "seeds done", "failed", "predictions differ", "errors", "verdict"),
            rows,
            left=("cell",),
        ),
    )
    full = len(cells) <= FULL_TABLES_UP_TO
    for cell in cells:
        if not cell["errors"] or (not full and cell["verdict"] == "pass"):
            continue
        tables.show(
            console,
            tables.table(
                f"Cell {cell['index']} ({cell['label']}): greatest |a - b| of each seed, "
                f"spread over {cell['seeds']['done']} seeds",
                DIFFERENCE_COLUMNS,
                _difference_rows(cell),
                left=("framework", "mode", "quantity"),
                caption=f"{_equal_count(cell)} more comparisons are exactly equal at every seed.",
            ),
        )
        for entry in cell["worst_seeds"][:WORST_SHOWN]:
            console.print(f"  worst {_seed_text(entry)}")
        for line in _prediction_lines(cell):
            console.print(f"  predictions differ: {line}")
    if not full:
        shown = sum(cell["verdict"] != "pass" for cell in cells)
        console.print(
            f"{len(cells) - shown} passing cells not shown in full; the JSON report holds every "
            "cell's differences."
        )
    for cell in cells:
        for crash in cell["crashes"]:
            console.print(
                f"[bold red]{cell['label']} seed {crash['seed']} {crash['kind']}:[/bold red] "
                f"{crash['message']}"
            )
    console.print(verdict_line(document))


def to_markdown(document: Mapping[str, Any]) -> str:
    """A Markdown summary: the cells, then per cell the spread of the differences and the
    worst seeds."""
    body = markdown.table(
        ["#", "cell", "seeds done", "failed", "predictions differ", "errors", "verdict"],
        [
            [
                cell["index"],
                cell["label"],
                f"{cell['seeds']['done']}/{cell['seeds']['asked']}",
                cell["seeds"]["failed"],
                _differing_seeds(cell),
                cell["seeds"]["errors"],
                "**FAIL**" if cell["verdict"] == "fail" else cell["verdict"],
            ]
            for cell in document["cells"]
        ],
    )
    for cell in document["cells"]:
        if not cell["errors"]:
            continue
        body += [f"#### Cell {cell['index']}: {cell['label']} ({cell['verdict']})", ""]
        body += markdown.table(list(DIFFERENCE_COLUMNS), _difference_rows(cell))
        body += [f"{_equal_count(cell)} more comparisons are exactly equal at every seed.", ""]
        body += [f"- worst {_seed_text(entry)}" for entry in cell["worst_seeds"][:WORST_SHOWN]]
        body += [f"- predictions differ: {line}" for line in _prediction_lines(cell)]
        body += [""]
    return markdown.document("crosscheck sweep", document["verdict"], verdict_line(document), body)


def plot_names(document: Mapping[str, Any]) -> list[str]:
    """The file of each cell's histograms: ``sweep_cell_<index>.png``."""
    return [f"sweep_cell_{cell['index']}.png" for cell in document["cells"]]


def prepare_plots(folder: Path, cells: int) -> None:
    """Check, before the sweep runs, that no file the histograms would replace is anything
    but an earlier PNG (``compare.present.plots.prepare`` checks the folder).

    Raises:
        files.OutputError: such a file is in the way.
    """
    for index in range(cells):
        path = folder / f"sweep_cell_{index}.png"
        if path.exists() and not plots.is_png(path):
            raise files.OutputError(f"refusing to overwrite {path}: it is not a PNG image")


def write_plots(document: Mapping[str, Any], folder: Path) -> list[Path]:
    """Per cell, one PNG of histograms: for every mode and quantity with a difference at some
    seed, how the greatest ``|a - b|`` of each seed spreads over the seeds, one outline per
    framework (log scale; seeds with no difference at all counted in the panel's title). A
    cell whose every comparison is exactly equal at every seed gets no picture. Returns the
    paths written.

    Raises:
        files.OutputError: the folder or a file cannot be written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise files.OutputError(
            f"cannot create plot folder {folder}: {error.strerror or error}"
        ) from error
    written = []
    for cell, name in zip(document["cells"], plot_names(document), strict=True):
        panels = _panels(cell)
        if not panels:
            continue
        figure = _cell_figure(cell, panels, document["settings"]["reference"])
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        files.write_atomic(folder / name, buffer.getvalue())
        written.append(folder / name)
    return written


def _panels(cell: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Mapping[str, Any]]]:
    """(mode, quantity) -> framework -> its facts, for every pair with a difference at some
    seed."""
    panels: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for framework, modes in cell["errors"].items():
        for mode, by_quantity in modes.items():
            for quantity, facts in by_quantity.items():
                panels.setdefault((mode, quantity), {})[framework] = facts
    return {
        key: by_framework
        for key, by_framework in panels.items()
        if not all(_exactly_equal(facts) for facts in by_framework.values())
    }


def _short(framework: str) -> str:
    """A plugin's file name rather than its whole path, for the small print of a picture."""
    return Path(framework).name if framework.endswith(".py") else framework


def _cell_figure(cell: Mapping[str, Any], panels: Mapping, reference: str):
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    figure = Figure(figsize=(max(3.6 * columns, 7.5), 2.9 * rows + 0.6), layout="constrained")
    axes_list = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, ((mode, quantity), by_framework) in zip(axes_list, panels.items(), strict=False):
        zeros = []
        for framework, facts in by_framework.items():
            histogram = facts["histogram"]
            if histogram["counts"]:
                axes.stairs(
                    histogram["counts"],
                    histogram["edges"],
                    label=_short(framework),
                    color=plots.style(framework).get("color"),
                    linewidth=1.5,
                )
            if histogram["zeros"]:
                zeros.append(f"{_short(framework)} {histogram['zeros']}")
        axes.set_xscale("log")
        # Minor ticks unlabelled: a narrow range would crowd them into one smear.
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.legend(fontsize="small")
        title = f"{quantity} ({mode})"
        if zeros:
            title += f"\nseeds exactly equal: {', '.join(zeros)}"
        axes.set_title(title, fontsize="small")
        axes.set_xlabel(f"greatest |a - {_short(reference)}| of a seed")
        axes.set_ylabel("seeds")
        axes.grid(True, alpha=0.3)
    for axes in axes_list[len(panels) :]:
        axes.set_visible(False)
    equal = _equal_count(cell)
    figure.suptitle(
        f"Cell {cell['index']} ({cell['label']}): differences across {cell['seeds']['done']} "
        f"seeds"
        + (f"\n({equal} comparisons exactly equal at every seed not shown)" if equal else "")
    )
    return figure
