"""Sweeps: one recipe cross-checked over many seeds and a grid of recipe settings.

A sweep is a base recipe, a grid (recipe field -> values: every combination is a *cell*) and
seeds (the initial-weight seed, ``init_seed``, of every cell). Each seed of each cell is judged
by ``compare.check``, the one owner of the verdict, exactly as ``crosscheck run`` judges one
recipe: this module adds no rule of its own. It gathers the per-seed facts (plain data), and
sums them up per cell: the verdict, the worst difference of every framework and quantity with
its seed, the distribution of the differences across seeds (min, median, p90, max and a
histogram), the worst seeds, and the seeds whose trained models classify a test row
differently (each flagged when rounding decided a near tie).

Design rules:

* **One evaluation function.** ``evaluate_cell(recipe, seeds, ...)`` turns a cell's seeds into
  per-seed records with one ``compare.check.check_seeds`` call: every framework trains the
  task's seeds side by side (one ``train`` call, a point per seed), and each seed is judged
  alone, exactly as ``check`` judges it. The gradient oracles run for each cell's first seed
  (they check gradient formulas, which do not depend on the seed), whichever task holds it, so
  a report does not depend on how the seeds were cut into tasks; a record says whether they
  checked its seed (``oracles_checked``).
* **Plain data.** A per-seed record is JSON-ready (dicts, lists, numbers, strings; non-finite
  numbers as the strings ``"inf"``, ``"nan"``), so it pickles between machines and reads back
  from a report unchanged. Everything in a report is computed from these records, so a sweep
  resumed from its report ends with the report an uninterrupted sweep writes (``comparable``
  drops the timings that differ).
* **Tasks, not threads.** A cell's seeds are cut into tasks (by default one per worker, each
  seed batch as large as ``MAX_SEEDS_PER_TASK``); tasks run in this process one after another
  (``client=None``) or on ``dask.distributed`` (``client``), one task per Dask worker thread. A
  task whose worker dies is run again by Dask; a task whose check cannot finish (a crashed
  framework, a run refused as too large) makes error records of its seeds, which a resumed
  sweep runs again.
* Library layer: returns data, prints nothing, imports no rich, argparse or matplotlib;
  ``dask.distributed`` is imported only to run on it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import implementations
from compare import tolerances
from compare.jsonable import json_number, json_ready
from compare.recipe import Recipe, RecipeError, resolve_paths

#: Identifies a sweep report (``--report``), and lets a later sweep resume from it.
SCHEMA = "crosscheck.sweep/1"

#: Recipe fields a grid may vary. ``init_seed`` is the seed axis; inline data and explicit
#: weights are tables, not settings to sweep.
GRID_FIELDS = tuple(
    f.name
    for f in fields(Recipe)
    if f.name
    not in ("init_seed", "X_train", "Y_train", "X_test", "Y_test", "weights", "weights_path")
)

#: Seeds must fit NumPy's legacy generator (``compare.weights``).
SEED_LIMIT = 2**32

#: Seeds per task, at most. A task is one ``check_seeds`` run that trains its seeds side by side,
#: so its cost grows far slower than its seeds: a task should hold as many as a worker's share
#: of a cell. A larger batch is chunked into fewer states per chunk (``harness.chunk_size``), or
#: refused up front when it cannot fit (``harness.TooLarge``).
MAX_SEEDS_PER_TASK = 1000

#: Times Dask runs a task again after it raised (a worker that dies is handled by Dask itself).
RETRIES = 2

#: Seconds between two writes of the report while a cell is still running (every finished
#: cell is written at once).
CHECKPOINT_SECONDS = 5.0

#: Histogram bins per decade of the differences (log-spaced: they span many decades).
BINS_PER_DECADE = 4

#: How many of the worst seeds a cell lists.
WORST_SEEDS = 10

#: The kinds of an error record (a seed whose check did not finish): a framework crashed, or
#: the run was refused before training (too large, a framework or plugin that cannot be used).
CRASHED = "crashed"
REFUSED = "refused"

#: Keys of a report that hold timings or bookkeeping of how it was produced (``comparable``).
TIMING_KEYS = ("seconds", "timings")


class SweepError(RecipeError):
    """A sweep that cannot run as asked (bad grid, seeds, sweep file, report or cluster); the
    message is one line for the user."""


# -- what to sweep ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How every cell is judged: ``check``'s arguments other than the recipe.

    Attributes:
        frameworks: Specs of the frameworks, the reference first.
        reference: The framework the others are compared with.
        mode: ``"independent"``, ``"synced"`` or ``"both"``.
        rtol: Overrides the default relative tolerance (``None``: the dtype's).
        atol: Overrides the default absolute tolerance (``None``: the dtype's).
        oracles: Run the gradient oracles (as ``crosscheck run`` does by default).
    """

    frameworks: tuple[str, ...] = ("numpy", "torch", "jax")
    reference: str = "numpy"
    mode: str = "both"
    rtol: float | None = None
    atol: float | None = None
    oracles: bool = True

    def __post_init__(self) -> None:
        frameworks = tuple(dict.fromkeys((self.reference, *self.frameworks)))
        object.__setattr__(self, "frameworks", frameworks)
        if len(frameworks) < 2:
            raise SweepError(f"a sweep compares at least two frameworks, got {frameworks}")
        if self.mode not in tolerances.MODES:
            raise SweepError(
                f"mode must be one of {', '.join(tolerances.MODES)}, got {self.mode!r}"
            )
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and not (
                _is_number(value) and math.isfinite(value) and value >= 0
            ):
                raise SweepError(f"{name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what a resumed sweep must share with the report it resumes."""
        return {
            "frameworks": list(self.frameworks),
            "reference": self.reference,
            "mode": self.mode,
            "rtol": self.rtol,
            "atol": self.atol,
            "oracles": self.oracles,
        }


@dataclass(frozen=True)
class Cell:
    """One recipe of the grid, checked at every seed of the sweep.

    Attributes:
        index: Position in the grid (0 first).
        changes: The grid's value of every grid field, in the grid's order.
        recipe: The base recipe with ``changes`` applied (its ``init_seed`` is replaced by
            each seed).
        seeds: The seeds to check.
    """

    index: int
    changes: tuple[tuple[str, Any], ...]
    recipe: Recipe
    seeds: tuple[int, ...]

    @property
    def label(self) -> str:
        """``"dtype=float32 hidden=8"``; ``"base recipe"`` for a sweep without a grid."""
        if not self.changes:
            return "base recipe"
        return " ".join(f"{name}={_value_text(value)}" for name, value in self.changes)

    @property
    def identity(self) -> str:
        """What makes two cells the same: the recipe in the file schema without its seed."""
        return recipe_identity(self.recipe)


def recipe_identity(recipe: Recipe) -> str:
    """A short hash of ``recipe`` without its ``init_seed`` (the sweep's seed axis).

    Two recipes have the same identity exactly when they train the same networks for every
    seed, whether the recipe was built here or read back from a report.
    """
    document = recipe_document(recipe)
    text = json.dumps(document, sort_keys=True, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recipe_document(recipe: Recipe) -> dict[str, Any]:
    """``recipe.to_dict()`` without ``[init] seed``, JSON-ready: a cell's recipe in a report
    (itself a valid recipe file; each seed is the ``init_seed``)."""
    document = json_ready(recipe.to_dict())
    document["init"].pop("seed", None)
    return document


@dataclass(frozen=True)
class Sweep:
    """A base recipe, a grid of recipe settings and seeds; validated on construction.

    Attributes:
        base: The recipe every cell starts from.
        grid: ``((field, (value, ...)), ...)``: every combination is a cell, the first field
            varying slowest. Values are what the ``Recipe`` field takes (``hidden``: a width
            or a tuple of widths; ``activations``: a name, ``"relu,identity"`` or a tuple).
        seeds: The initial-weight seeds of every cell (``init_seed``), in order.
        settings: How every cell is judged.

    Raises:
        SweepError: an unknown or repeated grid field, no values, a bad seed, explicit
            initial weights (no seed to sweep), or two cells that are the same recipe.
        RecipeError: a grid value the recipe refuses (one line naming it).
    """

    base: Recipe = field(default_factory=Recipe)
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    seeds: tuple[int, ...] = (0,)
    settings: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        if self.base.explicit_weights:
            raise SweepError(
                "the base recipe gives explicit initial weights, so there is no seed to sweep; "
                "drop --weights (or [init] file) to draw them"
            )
        object.__setattr__(self, "seeds", check_seeds(self.seeds))
        grid = self.grid.items() if isinstance(self.grid, Mapping) else self.grid
        checked: list[tuple[str, tuple[Any, ...]]] = []
        for name, values in grid:
            if name not in GRID_FIELDS:
                raise SweepError(_grid_field_message(name))
            if name in (seen for seen, _ in checked):
                raise SweepError(f"grid field {name} is given twice; list all its values once")
            values = tuple(values) if isinstance(values, list | tuple) else (values,)
            values = tuple(_freeze(value) for value in values)
            if not values:
                raise SweepError(f"grid field {name} has no values")
            checked.append((name, tuple(dict.fromkeys(values))))
        object.__setattr__(self, "grid", tuple(checked))
        seen: dict[str, str] = {}
        for cell in self.cells():
            if cell.identity in seen:
                raise SweepError(
                    f"grid cells {seen[cell.identity]} and {cell.label} are the same recipe"
                )
            seen[cell.identity] = cell.label

    def cells(self) -> list[Cell]:
        """Every cell, in grid order.

        Raises:
            RecipeError: a combination the recipe refuses, naming the cell.
        """
        names = [name for name, _ in self.grid]
        cells = []
        for index, values in enumerate(itertools.product(*(v for _, v in self.grid))):
            changes = tuple(zip(names, values, strict=True))
            try:
                recipe = self.base.replace(**dict(changes))
            except RecipeError as error:
                where = " ".join(f"{n}={_value_text(v)}" for n, v in changes)
                raise RecipeError(f"grid cell {where}: {error}") from None
            cells.append(Cell(index, changes, recipe, self.seeds))
        return cells

    @property
    def size(self) -> int:
        """Number of checks: cells times seeds."""
        return math.prod(len(values) for _, values in self.grid) * len(self.seeds)


def check_seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
    """``N`` -> ``(0, ..., N - 1)``; a list of seeds -> a tuple without repeats.

    Raises:
        SweepError: no seeds, or a seed that is not an integer in ``[0, 2**32)``.
    """
    if _is_int(seeds):
        if seeds < 1:
            raise SweepError(f"the number of seeds must be at least 1, got {seeds}")
        return tuple(range(int(seeds)))
    if isinstance(seeds, str) or not isinstance(seeds, Sequence) or not seeds:
        raise SweepError(f"seeds must be a count or a non-empty list of seeds, got {seeds!r:.60}")
    for seed in seeds:
        if not (_is_int(seed) and 0 <= seed < SEED_LIMIT):
            raise SweepError(f"a seed must be an integer in [0, 2**32), got {seed!r:.60}")
    return tuple(dict.fromkeys(int(seed) for seed in seeds))


def load_sweep_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sweep file: a TOML recipe file (its sections the base recipe) with a ``[sweep]``
    table.

    ``[sweep]`` takes ``seeds`` (a count or a list), ``frameworks``, ``reference``, ``mode``,
    ``rtol``, ``atol``, ``oracles`` and a ``[sweep.grid]`` table of ``field = [values]``;
    each is optional. Paths in the recipe sections are taken relative to the file's folder,
    as ``compare.recipe.load_file`` takes them.

    Returns:
        ``{"base": Recipe, "grid": {field: [values]}, "seeds": ..., "settings": {...}}``; only
        the settings the file gives.

    Raises:
        SweepError: the file cannot be read or parsed, or an unknown ``[sweep]`` key.
        RecipeError: a bad recipe section.
    """
    path = Path(path)
    if path.suffix.lower() != ".toml":
        raise SweepError(f"a sweep file must end in .toml, got {str(path)!r}")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SweepError(f"cannot read sweep file {str(path)!r}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SweepError(f"cannot parse sweep file {str(path)!r}: {error}") from None
    table = document.pop("sweep", {})
    if not isinstance(table, dict):
        raise SweepError(f"{path.name}: [sweep] must be a table")
    known = ("seeds", "grid", "frameworks", "reference", "mode", "rtol", "atol", "oracles")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise SweepError(f"{path.name}: unknown key {unknown[0]!r} in [sweep]; expected {known}")
    grid = table.get("grid", {})
    if not isinstance(grid, dict):
        raise SweepError(f"{path.name}: [sweep.grid] must be a table of field = [values]")
    resolve_paths(document, path.resolve().parent)
    try:
        base = Recipe.from_dict(document)
    except RecipeError as error:
        raise RecipeError(f"{path.name}: {error}") from None
    settings = {key: table[key] for key in known[2:] if key in table}
    if "frameworks" in settings:
        settings["frameworks"] = tuple(settings["frameworks"])
    loaded: dict[str, Any] = {"base": base, "grid": grid, "settings": settings}
    if "seeds" in table:
        loaded["seeds"] = table["seeds"]
    return loaded


# -- one cell: the checks and their records ----------------------------------------------------


def evaluate_cell(
    recipe: Recipe,
    seeds: Sequence[int],
    frameworks: Sequence[str],
    reference: str,
    mode: str,
    rtol: float | None,
    atol: float | None,
    *,
    oracles: bool = True,
    oracle_seeds: Sequence[int] | None = None,
    modules: Mapping[str, ModuleType] | None = None,
    isolate: bool = True,
) -> list[dict[str, Any]]:
    """Check ``recipe`` at each of ``seeds`` and return one plain-data record per seed.

    One ``compare.check.check_seeds`` run: every framework trains the seeds side by side, and
    each seed's ``CheckResult`` is what ``check(recipe.replace(init_seed=seed))`` finds. The
    oracles check ``oracle_seeds`` only (those among ``seeds``; default: the first).

    Args:
        recipe: The cell's recipe.
        seeds: The initial-weight seeds to check.
        frameworks, reference, mode, rtol, atol, oracles, modules, isolate: As ``check``.
        oracle_seeds: The seeds whose gradients the oracles check, if among ``seeds`` (the
            sweep passes its cell's first seed); default: the first of ``seeds``.

    Returns:
        ``seed_record`` of every seed, or ``error_record`` of every seed when the batch's check
        crashed or was refused.
    """
    # Looked up at call time, so tests can count the calls.
    from compare.check import check_seeds as check_batch

    started = time.perf_counter()
    try:
        results = check_batch(
            recipe,
            list(seeds),
            frameworks=frameworks,
            reference=reference,
            mode=mode,
            rtol=rtol,
            atol=atol,
            oracles=oracles,
            oracle_seeds=None
            if oracle_seeds is None
            else [seed for seed in oracle_seeds if seed in seeds],
            modules=modules,
            isolate=isolate,
        )
    except _stopping_errors() as error:
        return [error_record(seed, error) for seed in seeds]
    finally:
        if not isolate:
            # Cells in threads of one process: drop what the frameworks compiled for this
            # cell, or a few hundred cells exhaust the process's memory mappings.
            implementations.release()
    # Each seed's share of the batch's wall time.
    seconds = (time.perf_counter() - started) / len(seeds)
    return [seed_record(seed, result, seconds) for seed, result in zip(seeds, results, strict=True)]


def _stopping_errors() -> tuple[type[BaseException], ...]:
    """The errors that end one seed's check but not the sweep."""
    import implementations
    from compare.harness import TooLarge, WorkerError

    return (
        WorkerError,
        TooLarge,
        implementations.FrameworkUnavailable,
        implementations.PluginError,
    )


def seed_record(seed: int, result, seconds: float) -> dict[str, Any]:
    """The facts of one seed's ``CheckResult`` as plain data.

    Keys: ``seed``; ``verdict`` (``check``'s); ``first_failure`` (or ``None``); ``errors``
    (framework -> mode -> quantity -> greatest ``|a - b|``); ``failures`` (every comparison
    beyond its tolerance, with ``gating``: whether it counted against the verdict);
    ``failed_oracles``; ``oracles_checked`` (whether the oracles checked this seed: they run
    for a batch's first seed); ``switches_changed``; ``prediction_differences`` (framework -> the
    test rows it classifies differently from the reference, each with ``near_tie``);
    ``summaries`` (framework -> final loss and accuracies); ``seconds`` (this seed's share of
    its batch's wall time).
    """
    errors: dict[str, dict[str, dict[str, Any]]] = {}
    failures = []
    for c in result.comparisons:
        # A framework's steps from its own training states are compared with itself: keep them
        # apart from its comparison with the reference.
        mode = c.mode if c.against != c.framework else f"{c.mode} (own training)"
        errors.setdefault(c.framework, {}).setdefault(mode, {})[c.quantity] = json_number(
            float(c.max_abs)
        )
        if not c.passed:
            failures.append(_comparison_facts(c))
    first = result.first_failure
    differences = {
        name: [
            {key: row[key] for key in ("row", "class", "reference_class", "near_tie")}
            for row in facts.get("disagreements", ())
        ]
        for name, facts in result.precision.near_ties.items()
        if name != result.reference and facts.get("disagreements")
    }
    return {
        "seed": int(seed),
        "verdict": result.verdict,
        "first_failure": None if first is None else _comparison_facts(first),
        "errors": errors,
        "failures": failures,
        "failed_oracles": [
            {"framework": name, "checker": oracle.checker, "state": int(oracle.state)}
            for name, oracle in result.precision.failed_oracles
        ],
        "oracles_checked": bool(result.oracles_checked),
        "switches_changed": list(result.precision.environment_changes),
        "prediction_differences": differences,
        "summaries": {
            name: {
                key: json_number(float(value))
                for key, value in summary.items()
                if key in ("final_loss", "train_accuracy", "test_accuracy")
            }
            for name, summary in result.summaries.items()
        },
        "seconds": float(seconds),
    }


def _comparison_facts(c) -> dict[str, Any]:
    return {
        "framework": c.framework,
        "mode": c.mode,
        "quantity": c.quantity,
        "first_failing_step": c.first_failing_step,
        "max_abs": json_number(float(c.max_abs)),
        "mismatched": int(c.mismatched),
        "total": int(c.total),
        "gating": bool(c.gating),
    }


def error_record(seed: int, error: BaseException) -> dict[str, Any]:
    """A seed whose check did not finish: ``{"seed", "verdict": "error", "kind", "message"}``.

    ``kind`` is ``CRASHED`` (a framework's worker failed, or the Dask task was lost) or
    ``REFUSED`` (the run was refused before training: too large, a framework or plugin that
    cannot be used). Error records are reported but not kept for a resumed sweep, which runs
    their seeds again.
    """
    from compare.harness import WorkerError

    crashed = isinstance(error, WorkerError) or not isinstance(error, _stopping_errors())
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return {
        "seed": int(seed),
        "verdict": "error",
        "kind": CRASHED if crashed else REFUSED,
        "message": lines[-1] if lines else type(error).__name__,
    }


# -- the whole sweep --------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """Some seeds of one cell, run as one unit (one Dask task).

    Attributes:
        cell: The cell.
        seeds: Its seeds this task checks.
    """

    cell: Cell
    seeds: tuple[int, ...]


@dataclass
class SweepResult:
    """A sweep's records so far, and everything a report says about them.

    Attributes:
        sweep: The sweep.
        records: Cell identity -> seed -> its record (``seed_record``), finished seeds only.
        errors: Cell identity -> seed -> its ``error_record``.
        reused: Seeds whose records came from an earlier report.
        seconds: Wall time of this run of the sweep.
    """

    sweep: Sweep
    records: dict[str, dict[int, dict]] = field(default_factory=dict)
    errors: dict[str, dict[int, dict]] = field(default_factory=dict)
    reused: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.cells = self.sweep.cells()
        for cell in self.cells:
            self.records.setdefault(cell.identity, {})
            self.errors.setdefault(cell.identity, {})

    def add(self, cell: Cell, records: Sequence[dict]) -> None:
        """Fold the records of one task in (an error record replaces nothing finished)."""
        for record in records:
            seed = int(record["seed"])
            if record["verdict"] == "error":
                self.errors[cell.identity][seed] = record
            else:
                self.records[cell.identity][seed] = record
                self.errors[cell.identity].pop(seed, None)

    def pending(self, cell: Cell) -> tuple[int, ...]:
        """The seeds of ``cell`` not finished yet."""
        done = self.records[cell.identity]
        return tuple(seed for seed in cell.seeds if seed not in done)

    def finished(self, cell: Cell) -> bool:
        """Every seed of ``cell`` has a record."""
        return not self.pending(cell)

    @property
    def done(self) -> int:
        """Finished checks (seeds of every cell)."""
        return sum(len(records) for records in self.records.values())

    def cell_verdict(self, cell: Cell) -> str:
        """``"fail"`` when some seed failed, ``"error"`` when some seed could not be checked,
        ``"incomplete"`` when some seed is still to run, else ``"pass"``."""
        records = self.records[cell.identity].values()
        if any(record["verdict"] == "fail" for record in records):
            return "fail"
        if self.errors[cell.identity]:
            return "error"
        return "pass" if self.finished(cell) else "incomplete"

    @property
    def verdict(self) -> str:
        """The sweep's: ``"pass"`` only when every cell passed (else as ``cell_verdict``,
        the first of fail, error, incomplete that some cell has)."""
        verdicts = {self.cell_verdict(cell) for cell in self.cells}
        for verdict in ("fail", "error", "incomplete"):
            if verdict in verdicts:
                return verdict
        return "pass"

    @property
    def error_kinds(self) -> set[str]:
        """The kinds of every error record (``CRASHED``, ``REFUSED``)."""
        return {record["kind"] for errors in self.errors.values() for record in errors.values()}

    def cell_summary(self, cell: Cell) -> dict[str, Any]:
        """What the report says of one cell (``summarize_cell``)."""
        done = self.records[cell.identity]
        ordered = [done[seed] for seed in cell.seeds if seed in done]
        errors = self.errors[cell.identity]
        return {
            "index": cell.index,
            "id": cell.identity,
            "label": cell.label,
            "changes": {name: json_ready(value) for name, value in cell.changes},
            "recipe": recipe_document(cell.recipe),
            "verdict": self.cell_verdict(cell),
            "seeds": {
                "asked": len(cell.seeds),
                "done": len(ordered),
                "failed": sum(record["verdict"] == "fail" for record in ordered),
                "errors": len(errors),
            },
            **summarize_cell(ordered),
            "oracle_seeds": [record["seed"] for record in ordered if record.get("oracles_checked")],
            "crashes": [errors[seed] for seed in cell.seeds if seed in errors],
            "per_seed": ordered,
        }

    def document(self, environment: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON report (``SCHEMA``): settings, grid, seeds, and every cell's summary and
        per-seed records."""
        sweep = self.sweep
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "settings": sweep.settings.to_dict(),
            "base_recipe": recipe_document(sweep.base),
            "grid": {name: [json_ready(v) for v in values] for name, values in sweep.grid},
            "seeds": list(sweep.seeds),
            "cells_total": len(self.cells),
            "cells_passed": sum(self.cell_verdict(cell) == "pass" for cell in self.cells),
            "environment": dict(environment or {}),
            "cells": [self.cell_summary(cell) for cell in self.cells],
            "timings": {
                "seconds": self.seconds,
                "seeds_checked": self.done - self.reused,
                "seeds_reused": self.reused,
            },
        }


def resume(sweep: Sweep, previous: Mapping[str, Any] | None) -> SweepResult:
    """A ``SweepResult`` holding the finished records of ``previous`` (an earlier report of
    this sweep) for the cells and seeds ``sweep`` still has.

    Raises:
        SweepError: ``previous`` is not a sweep report, or judged with other settings.
    """
    result = SweepResult(sweep)
    if previous is None:
        return result
    if not isinstance(previous, Mapping) or previous.get("schema") != SCHEMA:
        raise SweepError("the report to resume from is not a crosscheck sweep report")
    if previous.get("settings") != sweep.settings.to_dict():
        raise SweepError(
            f"the report holds a sweep judged with other settings ({_settings_text(previous)}); "
            "resume with the same frameworks, reference, mode and tolerances, or start over"
        )
    by_identity = {cell.identity: cell for cell in result.cells}
    for summary in previous.get("cells", ()):
        cell = by_identity.get(summary.get("id")) if isinstance(summary, Mapping) else None
        if cell is None:
            continue
        wanted = set(cell.seeds)
        kept = [r for r in summary.get("per_seed", ()) if r.get("seed") in wanted]
        result.add(cell, [r for r in kept if r.get("verdict") in ("pass", "fail")])
    result.reused = result.done
    return result


def _settings_text(previous: Mapping[str, Any]) -> str:
    settings = previous.get("settings") or {}
    return ", ".join(f"{key} {value}" for key, value in settings.items())


def tasks(result: SweepResult, seeds_per_task: int | None = None, workers: int = 1) -> list[Task]:
    """The tasks still to run: each cell's pending seeds in blocks.

    Args:
        result: The sweep so far.
        seeds_per_task: Seeds per task; default: one task per worker and cell (its seeds
            trained side by side), at most ``MAX_SEEDS_PER_TASK`` seeds.
        workers: Workers that will run the tasks.
    """
    planned = []
    for cell in result.cells:
        pending = result.pending(cell)
        if not pending:
            continue
        size = seeds_per_task or max(1, min(MAX_SEEDS_PER_TASK, -(-len(pending) // workers)))
        for start in range(0, len(pending), size):
            planned.append(Task(cell, pending[start : start + size]))
    return planned


def run(
    sweep: Sweep,
    *,
    client=None,
    previous: Mapping[str, Any] | None = None,
    checkpoint: Callable[[SweepResult], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    seeds_per_task: int | None = None,
    retries: int = RETRIES,
    modules: Mapping[str, ModuleType] | None = None,
    isolate: bool | None = None,
) -> SweepResult:
    """Check every seed of every cell of ``sweep`` that ``previous`` has not finished.

    Args:
        sweep: What to check.
        client: A ``dask.distributed.Client`` to run the tasks on (``dask_client``), or
            ``None`` to run them here, one after another.
        previous: An earlier report of this sweep (``SweepResult.document``): its finished
            seeds are not checked again.
        checkpoint: Called with the result after every finished cell, after a finished task
            at most every ``CHECKPOINT_SECONDS``, and once at the end, interrupted or not (to
            write the report).
        progress: Called as ``progress(checks_done, checks_total)``.
        seeds_per_task: Seeds per task (default: see ``tasks``).
        retries: Times Dask runs a task again after it raised.
        modules: Implementations to use instead of the registry's (only without ``client``:
            a module does not travel to another process).
        isolate: Run every framework in a worker process of its own. Default: yes here; no on
            Dask, whose worker process runs one task at a time and keeps the frameworks
            imported from one seed to the next.

    Raises:
        SweepError: a bad argument, or a report of another sweep.
        KeyboardInterrupt: Ctrl-C (the report written so far stays; Dask tasks are cancelled).
    """
    started = time.perf_counter()
    if modules and client is not None:
        raise SweepError("modules= runs in this process only; run the sweep without a client")
    result = resume(sweep, previous)
    workers = 1 if client is None else max(1, len(client.scheduler_info().get("workers", {})))
    planned = tasks(result, seeds_per_task, workers)
    total = sweep.size
    settings = sweep.settings
    arguments = (
        settings.frameworks,
        settings.reference,
        settings.mode,
        settings.rtol,
        settings.atol,
    )
    last_written = time.monotonic()

    def finish(task: Task, records: list[dict]) -> None:
        nonlocal last_written
        result.add(task.cell, records)
        result.seconds = time.perf_counter() - started
        if progress is not None:
            progress(result.done, total)
        due = time.monotonic() - last_written >= CHECKPOINT_SECONDS
        if checkpoint is not None and (due or result.finished(task.cell)):
            checkpoint(result)
            last_written = time.monotonic()

    if progress is not None:
        progress(result.done, total)
    try:
        if client is None:
            for task in planned:
                records = evaluate_cell(
                    task.cell.recipe,
                    task.seeds,
                    *arguments,
                    oracles=settings.oracles,
                    oracle_seeds=task.cell.seeds[:1],
                    modules=modules,
                    isolate=True if isolate is None else isolate,
                )
                finish(task, records)
        else:
            _run_on_dask(client, planned, arguments, settings.oracles, isolate, retries, finish)
    finally:
        # Also on Ctrl-C: every finished seed is in the report, for the sweep to resume.
        result.seconds = time.perf_counter() - started
        if checkpoint is not None:
            checkpoint(result)
    return result


def _run_on_dask(client, planned, arguments, oracles, isolate, retries, finish) -> None:
    """Submit every task, fold each in as it finishes; a task that failed after its retries
    (its worker died too often, or it raised) becomes error records of its seeds."""
    from distributed import as_completed

    futures = {
        client.submit(
            evaluate_cell,
            task.cell.recipe,
            task.seeds,
            *arguments,
            oracles=oracles,
            oracle_seeds=task.cell.seeds[:1],
            isolate=False if isolate is None else isolate,
            retries=retries,
            pure=False,
        ): task
        for task in planned
    }
    try:
        for future in as_completed(futures):
            task = futures.pop(future)
            try:
                records = future.result()
            except Exception as error:  # lost after retries: reported, and run again on resume
                records = [error_record(seed, error) for seed in task.seeds]
            finish(task, records)
    finally:
        if futures:
            client.cancel(list(futures))


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``dask.distributed.Client``: on the cluster at ``scheduler`` (``tcp://HOST:PORT``),
    or on a local cluster of ``workers`` processes (default: one per core) with one thread
    each, started here and closed on exit.

    One task per worker process at a time: a task checks its seeds with the frameworks in
    threads of that process (``isolate=False``), so the cores are not oversubscribed by a
    process per framework, and the frameworks are imported once per worker, not once per seed.
    Dask's nanny starts every worker with one OpenMP/BLAS thread (its ``pre-spawn-environ``),
    as crosscheck starts its own framework workers, so a local cluster and a remote one compute
    the same numbers.

    Raises:
        SweepError: ``dask.distributed`` is not installed, or the scheduler cannot be reached.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SweepError(
            "sweeps run on dask.distributed; install it with: pip install -c constraints.txt "
            "'crosscheck[sweep]' (or run the sweep here with --in-process)"
        ) from None
    import logging

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as error:
            raise SweepError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
        try:
            yield client
        finally:
            client.close()
        return
    with (
        LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


# -- what a cell's records say ----------------------------------------------------------------


def summarize_cell(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-cell facts from its per-seed records (in seed order).

    Returns:
        ``failing_seeds``; ``errors``: framework -> mode -> quantity -> ``{max, worst_seed,
        min, median, p90, failed_seeds, histogram}`` (``median`` and ``p90`` are observed
        values: inverted-CDF quantiles; ``histogram``: ``distribution``); ``worst_seeds``
        (``worst_seeds``); ``prediction_differences``: one entry per seed and framework whose
        trained model classifies some test row differently from the reference's.
    """
    series: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
    failed: dict[tuple[str, str, str], list[int]] = {}
    for record in records:
        for framework, modes in record["errors"].items():
            for mode, errors in modes.items():
                for quantity, value in errors.items():
                    series.setdefault((framework, mode, quantity), []).append(
                        (record["seed"], float(value))
                    )
        for failure in record["failures"]:
            key = (failure["framework"], failure["mode"], failure["quantity"])
            failed.setdefault(key, []).append(record["seed"])
    errors: dict[str, dict[str, dict[str, Any]]] = {}
    medians = {}
    for (framework, mode, quantity), points in series.items():
        values = np.array([value for _, value in points])
        worst = int(np.argmax(values))
        facts = distribution(values)
        medians[(framework, mode, quantity)] = facts["median"]
        errors.setdefault(framework, {}).setdefault(mode, {})[quantity] = {
            "max": json_number(float(values[worst])),
            "worst_seed": points[worst][0],
            **{key: json_number(facts[key]) for key in ("min", "median", "p90")},
            "failed_seeds": failed.get((framework, mode, quantity), []),
            "histogram": facts["histogram"],
        }
    return {
        "failing_seeds": [r["seed"] for r in records if r["verdict"] == "fail"],
        "errors": errors,
        "worst_seeds": worst_seeds(records, medians),
        "prediction_differences": [
            {"seed": r["seed"], "framework": name, "rows": rows}
            for r in records
            for name, rows in r["prediction_differences"].items()
        ],
    }


def distribution(values: np.ndarray) -> dict[str, Any]:
    """Min, median, p90, max of ``values`` (non-negative differences, ``inf`` allowed) and a
    histogram: ``{"edges": [...], "counts": [...], "zeros": n, "nonfinite": n}`` with
    ``BINS_PER_DECADE`` log-spaced bins per decade spanning the positive finite values (zeros
    and non-finite values counted apart)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    positive = values[finite & (values > 0)]
    if positive.size:
        low = math.floor(math.log10(positive.min()) * BINS_PER_DECADE)
        high = max(math.ceil(math.log10(positive.max()) * BINS_PER_DECADE), low + 1)
        edges = 10.0 ** (np.arange(low, high + 1) / BINS_PER_DECADE)
        # The outermost edges are nudged so rounding of 10**k never drops the extremes.
        edges[0] = min(edges[0], positive.min())
        edges[-1] = max(edges[-1], positive.max())
        counts = np.histogram(positive, bins=edges)[0]
    else:
        edges, counts = np.zeros(0), np.zeros(0, dtype=np.int64)
    return {
        "min": float(values.min()),
        "median": float(np.quantile(values, 0.5, method="inverted_cdf")),
        "p90": float(np.quantile(values, 0.9, method="inverted_cdf")),
        "max": float(values.max()),
        "histogram": {
            "edges": [float(edge) for edge in edges],
            "counts": [int(count) for count in counts],
            "zeros": int(np.sum(values == 0)),
            "nonfinite": int(np.sum(~finite)),
        },
    }


def worst_seeds(
    records: Sequence[Mapping[str, Any]], medians: Mapping[tuple[str, str, str], float]
) -> list[dict[str, Any]]:
    """Up to ``WORST_SEEDS`` seeds, failing seeds first, then by how far their greatest
    difference stands above the median seed's (``times_median``, over every framework, mode
    and quantity; ``inf`` where the median seed had no difference at all).

    Each entry: ``seed``, ``verdict``, ``first_failure``, and the comparison that makes it
    stand out: ``framework``, ``mode``, ``quantity``, ``max_abs``, ``median``,
    ``times_median``.
    """
    ranked = []
    for record in records:
        standout = (0.0, None, 0.0)
        for framework, modes in record["errors"].items():
            for mode, errors in modes.items():
                for quantity, value in errors.items():
                    value = float(value)
                    median = medians[(framework, mode, quantity)]
                    if value == 0:
                        ratio = 0.0
                    elif median > 0:
                        ratio = value / median
                    else:
                        ratio = math.inf
                    if standout[1] is None or ratio > standout[0]:
                        standout = (ratio, (framework, mode, quantity), value)
        ranked.append((record, *standout))
    ranked.sort(key=lambda item: (item[0]["verdict"] != "fail", -item[1], item[0]["seed"]))
    chosen = []
    for record, ratio, where, value in ranked[:WORST_SEEDS]:
        framework, mode, quantity = where if where is not None else (None, None, None)
        chosen.append(
            {
                "seed": record["seed"],
                "verdict": record["verdict"],
                "first_failure": record["first_failure"],
                "framework": framework,
                "mode": mode,
                "quantity": quantity,
                "max_abs": json_number(value),
                "median": None if where is None else json_number(medians[where]),
                "times_median": json_number(ratio),
            }
        )
    return chosen


def comparable(document: Any) -> Any:
    """``document`` without its timings (every ``TIMING_KEYS`` key, at any depth): two reports
    of the same sweep are equal this way however they were run (resumed, local or on a
    cluster)."""
    if isinstance(document, Mapping):
        return {k: comparable(v) for k, v in document.items() if k not in TIMING_KEYS}
    if isinstance(document, list):
        return [comparable(item) for item in document]
    return document


# -- helpers ------------------------------------------------------------------------------------


def _grid_field_message(name: str) -> str:
    if name == "init_seed":
        return "init_seed is the seed axis of a sweep: give --seeds N or --seed-list instead"
    return f"unknown grid field {name!r}; choose from {', '.join(GRID_FIELDS)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _freeze(value: Any) -> Any:
    """Lists (from TOML or JSON) as tuples, so grid values are hashable like recipe values."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _value_text(value: Any) -> str:
    if isinstance(value, tuple):
        return "-".join(_value_text(item) for item in value) if value else "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
