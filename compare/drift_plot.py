"""The drift plot: how each framework's error against the reference grows over the steps.

One PNG per comparison mode, one panel per quantity (the loss and each gradient; the weights
too in independent mode), one line per framework, the error on a log scale. It draws the short
``growth`` series that ``compare.agreement`` records (the greatest ``|a - b|`` reached by each
of a few log-spaced steps), so it computes nothing. matplotlib is imported only here, with the
headless Agg backend, and only when a plot is asked for.
"""

from __future__ import annotations

import math
from pathlib import Path

from compare.agreement import DRIFT_THRESHOLDS, Comparison


def plot_drift(comparisons: list[Comparison], directory: Path) -> list[Path]:
    """Write ``drift-<mode>.png`` for every mode present; return the paths written.

    Args:
        comparisons: The run's comparisons (only those with a growth series of more than one
            step are drawn).
        directory: Created if missing.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'crosscheck[plots]'``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for mode in ("independent", "synced"):
        series = [c for c in comparisons if c.mode == mode and len(c.growth) > 1]
        if not series:
            continue
        quantities = list(dict.fromkeys(c.quantity for c in series))
        figure, axes = plt.subplots(
            1, len(quantities), figsize=(4 * len(quantities), 3.6), squeeze=False
        )
        for axis, quantity in zip(axes[0], quantities, strict=True):
            for c in (c for c in series if c.quantity == quantity):
                steps = [step for step, _ in c.growth]
                # A zero error has no place on a log axis; draw it at the axis floor instead.
                errors = [error if error > 0 else math.nan for _, error in c.growth]
                axis.plot(steps, errors, marker="o", markersize=3, label=c.framework)
            for level in DRIFT_THRESHOLDS:
                axis.axhline(level, color="grey", linewidth=0.6, linestyle=":")
            axis.set_xscale("symlog", linthresh=1)
            axis.set_xlim(0, max(step for step, _ in series[0].growth))
            axis.set_yscale("log")
            axis.set_title(quantity)
            axis.set_xlabel("training step")
            axis.set_ylabel(f"greatest |difference| from {series[0].against} so far")
            axis.legend()
        figure.suptitle(
            "Independent trajectories: how far each framework drifts from the reference"
            if mode == "independent"
            else "Synced: error of one step, every framework at the reference's weights"
        )
        figure.tight_layout()
        path = directory / f"drift-{mode}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written
