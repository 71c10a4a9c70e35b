"""Benchmark: `crosscheck run` against three bare training loops of the same recipe.

Times, in fresh processes and alternating so that machine noise hits both alike:

* ``crosscheck run`` on the reference recipe: all three frameworks, every step recorded and
  compared, the report printed;
* ``benchmarks/bare_loops.py``: the same recipe trained by three bare idiomatic loops, one
  after another, nothing recorded or compared; once with the libraries' default thread
  settings and once with ``OMP_NUM_THREADS=1`` (what crosscheck's workers use), and the ratio
  is taken against the faster of the two, so the harness gets no credit for a thread setting.

Both include their imports (torch and scikit-learn take seconds to import): that is what a user
waits for either way. Prints every repeat, the medians and their ratio (target: at most 1.0).
Exit status 0 when the target is met, 1 when it is not.

Usage: ``python benchmarks/bench_run.py [--repeats N] [--in-process]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _time(command: list[str], extra_environment: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "CI": "1", **extra_environment},
        cwd=HERE.parent,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="also time `crosscheck run --in-process` (frameworks in turn)",
    )
    args = parser.parse_args()
    run = [sys.executable, "-m", "compare", "run"]
    bare = [sys.executable, str(HERE / "bare_loops.py")]
    commands = {
        "crosscheck run": (run, {}),
        "bare loops": (bare, {}),
        "bare loops, OMP_NUM_THREADS=1": (bare, {"OMP_NUM_THREADS": "1"}),
    }
    if args.in_process:
        commands["crosscheck run --in-process"] = ([*run, "--in-process"], {})
    times: dict[str, list[float]] = {name: [] for name in commands}
    for repeat in range(args.repeats):
        for name, (command, extra_environment) in commands.items():
            times[name].append(_time(command, extra_environment))
            print(f"repeat {repeat + 1}: {name:<32} {times[name][-1]:6.2f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"\nmedian of {args.repeats} on {os.cpu_count()} cores:")
    for name, median in medians.items():
        print(f"  {name:<32} {median:6.2f} s")
    bare_best = min(medians["bare loops"], medians["bare loops, OMP_NUM_THREADS=1"])
    ratio = medians["crosscheck run"] / bare_best
    print(f"ratio crosscheck run / faster bare loops: {ratio:.2f} (target <= 1.0)")
    if args.in_process:
        in_process = medians["crosscheck run --in-process"] / bare_best
        print(f"ratio crosscheck run --in-process / faster bare loops: {in_process:.2f}")
    return 0 if ratio <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
