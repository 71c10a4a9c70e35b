"""``crosscheck sweep``: cross-check one recipe over many seeds and a grid of recipe settings,
on a local Dask cluster or an existing one, and exit 0 only when every cell agrees.

Parses the seeds (``--seeds``, ``--seed-list``), the grid (``--grid FIELD=V,V``, each value
typed as the recipe option of that field types it), a sweep file (``--sweep FILE``), the base
recipe (every recipe option), how cells are judged (as ``crosscheck run``) and where they run;
``compare.sweep`` runs them and ``compare.present.sweep`` reports. The JSON report is written
as cells finish; a sweep started again with the same ``--report`` skips what it holds.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rich.console import Console

from compare import environment, files
from compare import sweep as sweeps
from compare.cli import options
from compare.cli.recipe_options import (
    add_recipe_options,
    file_name,
    finite_float,
    names,
    recipe_from_args,
    rows_or_fraction,
    typed_settings,
    whole_number,
    widths,
)
from compare.present import sweep as present
from compare.tolerances import MODES

#: The outputs of ``options.OUTPUTS`` a sweep writes (its JSON report is its own: ``--report``).
OUTPUTS = ("markdown", "plots")


def boolean(text: str) -> bool:
    """``true``/``false`` (also ``yes``/``no``, ``on``/``off``, ``1``/``0``)."""
    words = {"true": True, "yes": True, "on": True, "1": True}
    words.update({"false": False, "no": False, "off": False, "0": False})
    try:
        return words[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}") from None


#: How ``--grid`` reads each field's values: the recipe option's own argument type (the
#: recipe then checks each value as it checks that option's).
GRID_TYPES = {
    "dataset": str,
    "data_path": file_name,
    "test_path": file_name,
    "test_size": rows_or_fraction,
    "split_seed": whole_number,
    "standardize": boolean,
    "hidden": widths,
    "activations": names,
    "biases": boolean,
    "loss": str,
    "init_scheme": str,
    "init_scale": finite_float,
    "optimizer": str,
    "lr": finite_float,
    "momentum": finite_float,
    "dampening": finite_float,
    "nesterov": boolean,
    "beta1": finite_float,
    "beta2": finite_float,
    "eps": finite_float,
    "weight_decay": finite_float,
    "batch_size": whole_number,
    "batch_seed": whole_number,
    "steps": whole_number,
    "dtype": str,
}

#: Fields whose one value is a list: its items are joined by ``-`` in ``--grid``
#: (``hidden=2,5-5`` is two cells, one hidden layer of 2 and two of 5).
LIST_FIELDS = ("hidden", "activations")

#: Other spellings ``--grid`` accepts for a field: its option's name.
GRID_ALIASES = {"activation": "activations", "data": "data_path", "test_data": "test_path"}


def grid_option(text: str) -> tuple[str, tuple]:
    """``--grid FIELD=V1,V2``: the recipe field and its values, each typed as the field's
    recipe option types it.

    Raises:
        argparse.ArgumentTypeError: no ``=``, an unknown field, or a value its type refuses.
    """
    name, separator, values = text.partition("=")
    name = name.strip().replace("-", "_")
    name = GRID_ALIASES.get(name, name)
    if not separator or not name or not values.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE[,VALUE...], got {text!r}")
    if name == "init_seed":
        raise argparse.ArgumentTypeError(
            "init_seed is the seed axis of a sweep: give --seeds N or --seed-list instead"
        )
    if name not in GRID_TYPES:
        raise argparse.ArgumentTypeError(
            f"unknown grid field {name!r}; choose from {', '.join(GRID_TYPES)}"
        )
    parse = GRID_TYPES[name]
    parsed = []
    for value in (item.strip() for item in values.split(",")):
        if name in LIST_FIELDS:
            value = value.replace("-", ",")
        try:
            parsed.append(parse(value))
        except argparse.ArgumentTypeError as error:
            raise argparse.ArgumentTypeError(f"{name}: {error}") from None
    return name, tuple(parsed)


def seed_list(text: str) -> tuple[int, ...]:
    """``--seed-list 0,5,7``: whole numbers."""
    try:
        return tuple(int(item) for item in options.comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, got {text!r}"
        ) from None


def register(commands) -> None:
    """Add ``crosscheck sweep`` to the sub-parsers ``commands``."""
    parser = commands.add_parser(
        "sweep",
        help="cross-check a recipe over many seeds and a grid of settings (on Dask)",
        description="Cross-check every cell of a grid of recipes at every seed, each seed "
        "judged by the same rules as crosscheck run, on a local Dask cluster (default) or an "
        "existing one (--scheduler). Reports per cell the verdict, the worst difference of "
        "every framework and quantity with its seed, how the differences spread over the "
        "seeds, the worst seeds, and the seeds whose trained models classify a test row "
        "differently. Exit 0 when every cell agrees, 1 when one does not, 2 on bad input, 3 "
        "when a check crashed, 130 when interrupted (run it again with the same --report to "
        "resume).",
    )
    what = parser.add_argument_group("what to sweep")
    seeds = what.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        type=options.positive_int,
        metavar="N",
        help="check the initial-weight seeds 0 .. N-1 (default: the recipe's --init-seed)",
    )
    seeds.add_argument(
        "--seed-list", type=seed_list, metavar="S[,S...]", help="check exactly these seeds"
    )
    what.add_argument(
        "--grid",
        type=grid_option,
        action="append",
        default=[],
        metavar="FIELD=V[,V...]",
        help="a recipe setting and its values, e.g. dtype=float32,float64 or hidden=2,8,5-5 "
        "(a list value joins its items with '-'); repeat for more fields: every combination "
        "is a cell",
    )
    what.add_argument(
        "--sweep",
        dest="sweep_file",
        type=file_name,
        metavar="FILE.toml",
        help="a sweep file: a recipe file (the base recipe) with a [sweep] table of seeds, "
        "frameworks, reference, mode, rtol, atol, oracles and [sweep.grid]; options given "
        "override it",
    )
    add_recipe_options(parser)
    options.add_framework_options(parser)
    comparison = parser.add_argument_group("comparison (as crosscheck run)")
    comparison.add_argument(
        "--mode", choices=MODES, help="independent, synced or both (default: both)"
    )
    comparison.add_argument(
        "--no-oracles",
        dest="oracles",
        action="store_const",
        const=False,
        help="skip the gradient oracles",
    )
    options.add_tolerance_options(parser, "derived from the dtype, as crosscheck run")
    # Unset options take the sweep file's values, then the defaults (see settings_from_args).
    parser.set_defaults(frameworks=None, reference=None, mode=None, oracles=None)
    where = parser.add_argument_group("where the cells run")
    where.add_argument(
        "--workers",
        type=options.positive_int,
        metavar="N",
        help="worker processes of the local Dask cluster, one thread each (default: one per core)",
    )
    where.add_argument(
        "--scheduler",
        metavar="tcp://HOST:PORT",
        help="run on the existing Dask cluster of this scheduler instead of a local one",
    )
    where.add_argument(
        "--seeds-per-task",
        type=options.positive_int,
        metavar="N",
        help=f"seeds of a cell checked by one task, trained side by side (default: one task per "
        f"worker and cell, at most {sweeps.MAX_SEEDS_PER_TASK})",
    )
    options.add_execution_options(parser)
    report = parser.add_argument_group("the sweep report (resumable)")
    report.add_argument(
        "--report",
        type=options.output_path,
        metavar="PATH",
        help="write the JSON report as cells finish; if PATH holds a report of this sweep, "
        "its finished seeds are not checked again",
    )
    report.add_argument(
        "--restart",
        action="store_true",
        help="check every seed again, ignoring what --report already holds",
    )
    options.add_output_options(parser, OUTPUTS)
    parser.set_defaults(handler=handle)


def sweep_from_args(args: argparse.Namespace) -> sweeps.Sweep:
    """The sweep the options describe: the sweep file (if any), then the options given.

    Raises:
        options.UsageError: options that contradict each other.
        RecipeError, sweeps.SweepError: a bad recipe, grid, seed or sweep file (one line).
    """
    loaded = sweeps.load_sweep_file(args.sweep_file) if args.sweep_file else {}
    if args.sweep_file and args.recipe_file:
        raise options.UsageError(
            "--sweep and --recipe both give the base recipe; put it in the sweep file, or "
            "give --recipe with --grid and --seeds"
        )
    base = loaded.get("base")
    if base is None:
        base = recipe_from_args(args)
    else:
        typed = typed_settings(args)
        base = base.replace(**typed) if typed else base
    chosen_seeds = args.seeds if args.seeds is not None else args.seed_list
    if chosen_seeds is not None and args.init_seed is not None:
        raise options.UsageError(
            "--init-seed and --seeds/--seed-list both choose the seeds; give one of them"
        )
    if chosen_seeds is None:
        chosen_seeds = loaded.get("seeds", (base.init_seed,))
    grid = dict(loaded.get("grid", {}))
    for name, values in args.grid:
        if name in grid and name not in loaded.get("grid", {}):
            raise options.UsageError(f"--grid {name} is given twice; list all its values once")
        grid[name] = values
    return sweeps.Sweep(
        base=base,
        grid=tuple(grid.items()),
        seeds=sweeps.check_seeds(chosen_seeds),
        settings=settings_from_args(args, loaded.get("settings", {})),
    )


def settings_from_args(args: argparse.Namespace, from_file: dict) -> sweeps.Settings:
    """How cells are judged: each option given, else the sweep file's value, else the
    default; the frameworks are checked as ``crosscheck run`` checks them.

    Raises:
        options.UsageError, implementations.FrameworkUnavailable,
        implementations.PluginError, implementations.UnknownFramework: as ``run``.
    """
    chosen = {}
    for name in ("frameworks", "reference", "mode", "rtol", "atol", "oracles"):
        value = getattr(args, name)
        chosen[name] = from_file.get(name) if value is None else value
    frameworks, reference = options.frameworks_from_args(
        argparse.Namespace(
            frameworks=chosen["frameworks"] or options.DEFAULT_FRAMEWORKS,
            reference=chosen["reference"] or options.DEFAULT_REFERENCE,
        )
    )
    return sweeps.Settings(
        frameworks=frameworks,
        reference=reference,
        mode=chosen["mode"] or "both",
        rtol=chosen["rtol"],
        atol=chosen["atol"],
        oracles=True if chosen["oracles"] is None else bool(chosen["oracles"]),
    )


def previous_report(args: argparse.Namespace, sweep: sweeps.Sweep) -> dict | None:
    """The report at ``--report`` to resume from, or ``None`` (none there, or ``--restart``).

    Raises:
        options.UsageError: it holds a sweep judged with other settings.
    """
    path = args.report
    if path is None or args.restart or not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # not a report (files.check_writable refused it unless --force)
    if not isinstance(document, dict) or document.get("schema") != sweeps.SCHEMA:
        return None
    try:
        sweeps.resume(sweep, document)
    except sweeps.SweepError as error:
        raise options.UsageError(f"{path}: {error} (--restart starts over)") from None
    return document


def handle(args: argparse.Namespace, console: Console) -> int:
    """Check the inputs and outputs, run the sweep, report, and map the verdict to the exit
    status."""
    sweep = sweep_from_args(args)
    if args.in_process and (args.scheduler or args.workers):
        raise options.UsageError("--in-process runs here, without Dask: drop --scheduler/--workers")
    if args.scheduler and args.workers:
        raise options.UsageError(
            "--workers sizes the local cluster; the cluster of --scheduler has its own workers"
        )
    options.check_outputs(args, OUTPUTS, others={"--report": args.report} if args.report else {})
    if args.report is not None:
        files.check_writable(args.report, schema=sweeps.SCHEMA, force=args.force)
    if args.plots is not None:
        present.prepare_plots(args.plots, len(sweep.cells()))
    previous = previous_report(args, sweep)
    described = environment.describe()

    def checkpoint(result: sweeps.SweepResult) -> None:
        if args.report is not None:
            files.write_atomic(args.report, present.dumps(result.document(described)))

    with options.progress_bars() as bars:

        def progress(done: int, total: int) -> None:
            bars("checks", done, total)

        if args.in_process:
            # The frameworks train in threads of this process: one OpenMP thread each, as
            # crosscheck's framework workers and Dask's workers run (set before any framework
            # is imported). torch's default intra-op threads spin against the other frameworks'
            # threads: measured on two loaded cores, its batched training ran 30 to 60 times
            # slower than with one thread.
            os.environ.setdefault("OMP_NUM_THREADS", "1")
            where = "this process, each cell's seeds trained side by side"
            console.print(present.where_line(where, _outline(sweep), _reused(sweep, previous)))
            result = sweeps.run(
                sweep,
                previous=previous,
                checkpoint=checkpoint,
                progress=progress,
                seeds_per_task=args.seeds_per_task,
                isolate=False,
            )
        else:
            with sweeps.dask_client(args.scheduler, args.workers) as client:
                count = len(client.scheduler_info().get("workers", {}))
                where = (
                    f"the Dask cluster at {args.scheduler} ({count} workers)"
                    if args.scheduler
                    else f"a local Dask cluster of {count} worker processes"
                )
                console.print(present.where_line(where, _outline(sweep), _reused(sweep, previous)))
                result = sweeps.run(
                    sweep,
                    client=client,
                    previous=previous,
                    checkpoint=checkpoint,
                    progress=progress,
                    seeds_per_task=args.seeds_per_task,
                )
    document = result.document(described)
    present.render(console, document)
    if args.report is not None:
        console.print(f"report written to {args.report}")
    if args.markdown is not None:
        files.write_atomic(args.markdown, present.to_markdown(document))
        console.print(f"Markdown summary written to {args.markdown}")
    if args.plots is not None:
        written = present.write_plots(document, Path(args.plots))
        console.print(f"plots written: {', '.join(map(str, written))}")
    return exit_status(result)


def _outline(sweep: sweeps.Sweep) -> dict:
    """What ``where_line`` needs, before any record exists."""
    return {
        "cells_total": len(sweep.cells()),
        "seeds": list(sweep.seeds),
        "settings": sweep.settings.to_dict(),
    }


def _reused(sweep: sweeps.Sweep, previous: dict | None) -> int:
    return sweeps.resume(sweep, previous).done if previous is not None else 0


def exit_status(result: sweeps.SweepResult) -> int:
    """0 every cell agrees; 1 some cell disagrees; 3 a check crashed; 2 a check was refused
    (too large, a framework that cannot be used)."""
    verdict = result.verdict
    if verdict == "pass":
        return options.Exit.AGREE
    if verdict == "error":
        crashed = sweeps.CRASHED in result.error_kinds
        return options.Exit.CRASHED if crashed else options.Exit.BAD_INPUT
    return options.Exit.DISAGREE
