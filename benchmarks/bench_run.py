"""Benchmark: `crosscheck run` against three bare training loops of the same recipe.

For each recipe it times, in fresh processes and alternating so that machine noise hits both
alike:

* ``crosscheck run`` with the recipe's options: all three frameworks, every step compared in
  both modes (independent trajectories and the synced step), the report printed;
* ``benchmarks/bare_loops.py``: the same recipe trained by three bare idiomatic loops, one after
  another, nothing recorded or compared, with ``OMP_NUM_THREADS=1`` (what crosscheck's workers
  use) and with the libraries' default threads; the ratio is taken against the faster.

Both include their imports (torch and scikit-learn take seconds to import): that is what a user
waits for either way. Peak memory is the largest sum of resident memory over the whole process
tree (crosscheck's workers included), sampled every 20 ms.

Suites (``--suites``):

* ``main``: the tutorial (iris 4-2-3), digits 64-2-10 and digits 64-64-10, 5,000 steps each;
* ``steps``: the tutorial at 1k, 5k, 50k and 100k steps: memory must not grow with the steps;
* ``width``: iris with 2, 16, 64 and 256 hidden units.

``--quick`` runs one repeat of shorter versions (the tutorial; 1k and 10k steps; widths 2 and
64), a smoke test of the benchmark in a few minutes.

Prints every repeat, then per recipe the medians, the wall-time ratio and the peak-memory ratio,
and per growth suite how wall time and peak memory grow against its first recipe. Exit status 0
when every ratio meets its target (wall <= 1.0, memory <= 2.0).

Usage: ``python benchmarks/bench_run.py [--repeats N] [--suites main,steps,width] [--quick]``
or ``--recipes tutorial,digits-64-2-10,...`` for named recipes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


def _options(dataset: str = "iris", hidden: int = 2, steps: int = 5000) -> list[str]:
    """Command-line options shared by ``crosscheck run`` and ``bare_loops.py``."""
    options = []
    if dataset != "iris":
        options += ["--dataset", dataset]
    if hidden != 2:
        options += ["--hidden", str(hidden)]
    if steps != 5000:
        options += ["--steps", str(steps)]
    return options


#: Recipe name -> options of both commands. Bare loops cover the tutorial's family (sigmoid, no
#: biases, half-MSE, full-batch SGD), so these recipes stay in it.
RECIPES = {
    "tutorial": _options(),
    "digits-64-2-10": _options("digits"),
    "digits-64-64-10": _options("digits", hidden=64),
    **{f"iris-{steps // 1000}k": _options(steps=steps) for steps in (1000, 10000, 50000, 100000)},
    **{f"iris-width-{width}": _options(hidden=width) for width in (16, 32, 64, 256)},
}

#: Suite name -> recipes, in order; a growth suite's first recipe is what the others are
#: measured against.
SUITES = {
    "main": ("tutorial", "digits-64-2-10", "digits-64-64-10"),
    "steps": ("iris-1k", "tutorial", "iris-50k", "iris-100k"),
    "width": ("tutorial", "iris-width-16", "iris-width-64", "iris-width-256"),
}
QUICK_SUITES = {
    "main": ("tutorial",),
    "steps": ("iris-1k", "iris-10k"),
    "width": ("tutorial", "iris-width-64"),
}
GROWTH = ("steps", "width")


def measure(command: list[str], extra_environment: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GB, summed over the process tree) of a command."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "CI": "1", **extra_environment},
        cwd=HERE.parent,
    )
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}")
    return seconds, peak / 1e9


def compare_recipe(name: str, repeats: int) -> dict[str, float]:
    """Time ``crosscheck run`` and the bare loops on recipe ``name``, interleaved; print every
    repeat and the medians; return the medians and ratios."""
    options = RECIPES[name]
    run = [sys.executable, "-m", "compare", "run", *options]
    bare = [sys.executable, str(HERE / "bare_loops.py"), *options]
    commands = {
        "crosscheck run": (run, {}),
        "bare loops": (bare, {}),
        "bare loops, OMP_NUM_THREADS=1": (bare, {"OMP_NUM_THREADS": "1"}),
    }
    wall: dict[str, list[float]] = {label: [] for label in commands}
    memory: dict[str, list[float]] = {label: [] for label in commands}
    for repeat in range(repeats):
        for label, (command, extra) in commands.items():
            seconds, peak = measure(command, extra)
            wall[label].append(seconds)
            memory[label].append(peak)
            print(
                f"{name} repeat {repeat + 1}: {label:<32} {seconds:7.2f} s {peak:6.2f} GB",
                flush=True,
            )
    median_wall = {label: statistics.median(v) for label, v in wall.items()}
    median_memory = {label: statistics.median(v) for label, v in memory.items()}
    bare_label = min(("bare loops", "bare loops, OMP_NUM_THREADS=1"), key=median_wall.get)
    wall_ratio = median_wall["crosscheck run"] / median_wall[bare_label]
    memory_ratio = median_memory["crosscheck run"] / median_memory[bare_label]
    print(f"\n{name}: median of {repeats} on {os.cpu_count()} cores")
    for label in commands:
        print(f"  {label:<32} {median_wall[label]:7.2f} s {median_memory[label]:6.2f} GB")
    print(
        f"  ratio run / {bare_label}: wall {wall_ratio:.2f} (target <= 1.0), "
        f"peak memory {memory_ratio:.2f} (target <= 2.0)\n",
        flush=True,
    )
    return {
        "run_wall": median_wall["crosscheck run"],
        "run_memory": median_memory["crosscheck run"],
        "bare_wall": median_wall[bare_label],
        "bare_memory": median_memory[bare_label],
        "wall_ratio": wall_ratio,
        "memory_ratio": memory_ratio,
    }


def growth_lines(suite: str, names: list[str], results: dict[str, dict[str, float]]) -> list[str]:
    """How wall time and peak memory grow along a growth suite, against its first recipe."""
    first = results[names[0]]
    lines = [f"{suite} growth (against {names[0]}):"]
    for name in names:
        r = results[name]
        lines.append(
            f"  {name:<18} run {r['run_wall']:7.2f} s {r['run_memory']:5.2f} GB "
            f"(x{r['run_wall'] / first['run_wall']:.1f} time, "
            f"x{r['run_memory'] / first['run_memory']:.2f} memory)  "
            f"bare {r['bare_wall']:7.2f} s {r['bare_memory']:5.2f} GB  "
            f"ratios wall {r['wall_ratio']:.2f} memory {r['memory_ratio']:.2f}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--suites", default="main", help=f"comma list of {', '.join(SUITES)}")
    parser.add_argument("--recipes", help=f"comma list of named recipes: {', '.join(RECIPES)}")
    parser.add_argument("--quick", action="store_true", help="one repeat of shorter suites")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    if args.recipes:
        suites = {"recipes": tuple(args.recipes.split(","))}
    else:
        table = QUICK_SUITES if args.quick else SUITES
        chosen = args.suites.split(",")
        unknown = [name for name in chosen if name not in table]
        if unknown:
            parser.error(f"unknown suite {unknown[0]}; choose from {', '.join(table)}")
        suites = {name: table[name] for name in chosen}
    unknown = [name for names in suites.values() for name in names if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]}; choose from {', '.join(RECIPES)}")
    results: dict[str, dict[str, float]] = {}
    for names in suites.values():
        for name in names:
            if name not in results:
                results[name] = compare_recipe(name, repeats)
    summary = [
        f"{name:<18} wall {r['wall_ratio']:.2f}  peak memory {r['memory_ratio']:.2f}"
        for name, r in results.items()
    ]
    for suite, names in suites.items():
        if suite in GROWTH:
            summary += growth_lines(suite, list(names), results)
    print("summary (run / bare loops; targets wall <= 1.0, memory <= 2.0):")
    print("\n".join(summary))
    all_met = all(r["wall_ratio"] <= 1.0 and r["memory_ratio"] <= 2.0 for r in results.values())
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
