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

Prints every repeat, then per recipe the medians, the wall-time ratio and the peak-memory
ratio. Exit status 0 when every ratio meets its target (wall <= 1.0, memory <= 2.0).

Usage: ``python benchmarks/bench_run.py [--repeats N] [--recipes tutorial,digits,...]``
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

#: Recipe name -> (crosscheck options, bare_loops options). Bare loops cover the tutorial's
#: family (sigmoid, no biases, half-MSE, full-batch SGD), so these recipes stay in it.
RECIPES = {
    "tutorial": ([], []),
    "iris-50k": (["--steps", "50000"], ["--steps", "50000"]),
    "digits-64-2-10": (["--dataset", "digits"], ["--dataset", "digits"]),
    "digits-64-64-10": (
        ["--dataset", "digits", "--hidden", "64"],
        ["--dataset", "digits", "--hidden", "64"],
    ),
    "iris-width-256": (["--hidden", "256"], ["--hidden", "256"]),
    "iris-1k": (["--steps", "1000"], ["--steps", "1000"]),
    "iris-100k": (["--steps", "100000"], ["--steps", "100000"]),
}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recipes", default="tutorial,digits-64-2-10")
    args = parser.parse_args()
    names = args.recipes.split(",")
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        parser.error(f"unknown recipe {unknown[0]}; choose from {', '.join(RECIPES)}")
    all_met = True
    for name in names:
        run_options, bare_options = RECIPES[name]
        run = [sys.executable, "-m", "compare", "run", *run_options]
        bare = [sys.executable, str(HERE / "bare_loops.py"), *bare_options]
        commands = {
            "crosscheck run": (run, {}),
            "bare loops": (bare, {}),
            "bare loops, OMP_NUM_THREADS=1": (bare, {"OMP_NUM_THREADS": "1"}),
        }
        wall: dict[str, list[float]] = {label: [] for label in commands}
        memory: dict[str, list[float]] = {label: [] for label in commands}
        for repeat in range(args.repeats):
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
        print(f"\n{name}: median of {args.repeats} on {os.cpu_count()} cores")
        for label in commands:
            print(f"  {label:<32} {median_wall[label]:7.2f} s {median_memory[label]:6.2f} GB")
        print(
            f"  ratio run / {bare_label}: wall {wall_ratio:.2f} (target <= 1.0), "
            f"peak memory {memory_ratio:.2f} (target <= 2.0)\n",
            flush=True,
        )
        all_met &= wall_ratio <= 1.0 and memory_ratio <= 2.0
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
