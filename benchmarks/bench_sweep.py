"""Benchmark: a seed sweep against one seed's bare loops and against the seeds run one by one.

Issue 9's target: ``crosscheck sweep --seeds 1000`` of the tutorial recipe (5,000 steps, three
frameworks, every step compared in both modes) in at most 10x the wall time of ONE seed's three
bare training loops (``benchmarks/bare_loops.py``), about 100x faster than running the seeds
one at a time with ``crosscheck run``. It measures, in fresh processes with their imports (what
a user waits for):

* ``crosscheck sweep --seeds N`` (the JSON report written to a temporary folder), its wall time
  and peak memory (summed over the process tree: Dask workers and framework workers included);
* one seed's three bare loops, the median of ``--repeats`` runs;
* ``crosscheck run --init-seed S`` for a sample of ``--sample`` seeds one after another; the
  one-at-a-time cost of the N seeds is the sample's mean times N (stated as an extrapolation).

Prints every measurement, then the two ratios and whether the first meets its target. A sweep
checks each task's seeds with one ``compare.check.check_seeds`` run (every framework trains the
seeds side by side, each seed judged alone). With ``--profile`` it then runs ``check_seeds`` on
the N seeds once more in this process (frameworks in threads) and says where the time went:
each framework's training, its synced steps (from the reference's states) and its own steps,
and the judge (every seed's accumulators). Exit status 0 when the sweep meets the 10x target.

Usage: ``python benchmarks/bench_sweep.py [--seeds 1000] [--sample 10] [--repeats 3]
[--workers N] [--in-process] [--steps 5000] [--frameworks numpy,torch,jax] [--profile]``
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent

#: The issue's target: the sweep in at most this many times one seed's bare loops.
TARGET_RATIO = 10.0


def measure(command: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak resident memory (GB, summed over the process tree) and exit status."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "CI": "1"},
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
        time.sleep(0.05)
    return time.perf_counter() - started, peak / 1e9, process.returncode


def profile(seeds: int, steps: int, frameworks: list[str]) -> dict[str, float]:
    """Seconds by part of one ``check_seeds`` run of ``seeds`` seeds in this process: the
    frameworks in threads, every part timed where it runs. The parts overlap in wall time
    (threads), so they are shares of the work, not of the wall time."""
    sys.path.insert(0, str(HERE.parent))
    # One OpenMP thread, as crosscheck's framework workers and Dask's workers run: with the
    # frameworks in threads of one process, torch's default intra-op threads spin against the
    # others (measured here under load: torch's training 30-60x slower than with one thread),
    # which says nothing about a sweep.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import importlib

    from compare import worker
    from compare.recipe import Recipe

    # The module, not the function ``compare.check`` may name.
    check = importlib.import_module("compare.check")

    spent: dict[str, float] = defaultdict(float)
    lock = threading.Lock()

    def timed(owner, name, label):
        original = getattr(owner, name)

        @functools.wraps(original)
        def wrapper(self, *args, **kwargs):
            started = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                with lock:
                    spent[label(self, args)] += time.perf_counter() - started

        setattr(owner, name, wrapper)

    # A worker's own steps run inside its training loop's sink, synced steps too (served while
    # it trains): its training time is its ``seconds`` summed over the seeds, which excludes them.
    timed(worker.Worker, "_own_step", lambda w, a: f"{w.name}: own steps")
    timed(worker.Worker, "_synced", lambda w, a: f"{w.name}: synced steps")
    timed(worker.Worker, "_oracle", lambda w, a: f"{w.name}: oracles")
    for method in ("reference_chunk", "framework_chunk", "independent", "synced_records"):
        timed(check._Judge, method, lambda j, a: "judge (every seed's accumulators)")
    for method in ("synced_next", "own_step", "trained"):
        timed(check._Judge, method, lambda j, a: "judge (every seed's accumulators)")
    timed(check._Judge, "results", lambda j, a: "judge: every seed's CheckResult")
    started = time.perf_counter()
    results = check.check_seeds(Recipe(steps=steps), list(range(seeds)), frameworks, isolate=False)
    wall = time.perf_counter() - started
    for name, summary in results[0].summaries.items():
        spent[f"{name}: training"] = summary["seconds"] * seeds
    spent["wall"] = wall
    return dict(spent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="seeds in the sweep")
    parser.add_argument("--sample", type=int, default=10, help="seeds run one at a time")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the bare loops")
    parser.add_argument("--workers", type=int, help="Dask workers (default: one per core)")
    parser.add_argument(
        "--in-process", action="store_true", help="run the sweep without Dask (--in-process)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="then say where the time of the seeds goes"
    )
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--frameworks", default="numpy,torch,jax")
    args = parser.parse_args()
    recipe = ["--steps", str(args.steps), "--frameworks", args.frameworks]
    print(f"{os.cpu_count()} cores; tutorial recipe, {args.steps} steps, {args.frameworks}")

    bare = []
    only = ",".join(
        name for name in args.frameworks.split(",") if name in ("numpy", "torch", "jax")
    )
    for repeat in range(args.repeats):
        seconds, peak, _ = measure(
            [
                sys.executable,
                str(HERE / "bare_loops.py"),
                "--steps",
                str(args.steps),
                "--only",
                only,
            ]
        )
        bare.append(seconds)
        print(
            f"bare loops, one seed, repeat {repeat + 1}: {seconds:7.2f} s {peak:6.2f} GB",
            flush=True,
        )
    bare_seconds = statistics.median(bare)

    one_by_one = []
    for seed in range(args.sample):
        command = [sys.executable, "-m", "compare", "run", *recipe, "--init-seed", str(seed)]
        seconds, peak, status = measure(command)
        one_by_one.append(seconds)
        print(f"crosscheck run --init-seed {seed}: {seconds:7.2f} s {peak:6.2f} GB exit {status}")
    one_seed = statistics.mean(one_by_one)

    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "compare", "sweep", "--seeds", str(args.seeds), *recipe]
        command += ["--report", str(Path(folder) / "sweep.json")]
        if args.workers:
            command += ["--workers", str(args.workers)]
        if args.in_process:
            command += ["--in-process"]
        sweep_seconds, sweep_peak, status = measure(command)
    print(
        f"crosscheck sweep --seeds {args.seeds}: {sweep_seconds:7.2f} s {sweep_peak:6.2f} GB "
        f"exit {status}",
        flush=True,
    )

    ratio = sweep_seconds / bare_seconds
    extrapolated = one_seed * args.seeds
    print(f"\none seed's three bare loops (median of {args.repeats}): {bare_seconds:.2f} s")
    print(f"one seed by crosscheck run (mean of {args.sample}): {one_seed:.2f} s")
    print(
        f"ratio sweep / one seed's bare loops: {ratio:.1f}x (target <= {TARGET_RATIO:g}x; "
        f"{args.seeds} seeds)"
    )
    print(
        f"ratio seeds one at a time / sweep: {extrapolated / sweep_seconds:.1f}x "
        f"({args.seeds} x {one_seed:.2f} s = {extrapolated:.0f} s, extrapolated from "
        f"{args.sample} seeds)"
    )
    print(f"sweep per seed: {sweep_seconds / args.seeds:.3f} s; exit status of the sweep {status}")
    if args.profile:
        print(f"\nwhere the time of check_seeds on {args.seeds} seeds goes (in-process, threads):")
        parts = profile(args.seeds, args.steps, args.frameworks.split(","))
        wall = parts.pop("wall")
        for part, seconds in sorted(parts.items(), key=lambda item: -item[1]):
            print(f"  {part:40s} {seconds:8.2f} s")
        print(f"  {'wall time':40s} {wall:8.2f} s")
    return 0 if ratio <= TARGET_RATIO and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
