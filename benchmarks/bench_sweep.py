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

Prints every measurement, then the two ratios and whether the first meets its target. The
sweep's cost is whatever the engine does today: until ``check`` batches seeds (one ``train``
call with a point per seed per framework) a sweep is N checks spread over the Dask workers, and
the ratio says so honestly. Exit status 0 when the sweep meets the 10x target.

Usage: ``python benchmarks/bench_sweep.py [--seeds 1000] [--sample 10] [--repeats 3]
[--workers N] [--steps 5000] [--frameworks numpy,torch,jax]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1000, help="seeds in the sweep")
    parser.add_argument("--sample", type=int, default=10, help="seeds run one at a time")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the bare loops")
    parser.add_argument("--workers", type=int, help="Dask workers (default: one per core)")
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
    return 0 if ratio <= TARGET_RATIO and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
