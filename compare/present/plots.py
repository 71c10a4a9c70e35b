"""Pictures of a ``CheckResult`` (``crosscheck run --plots DIR``): PNG files a newcomer can read.

* ``loss.png``: every framework's loss step by step, overlaid; where the frameworks agree
  their lines lie on top of each other;
* ``differences_<mode>.png``: per comparison mode, one panel per quantity, how far each
  framework is from the reference at every step (the greatest ``|a - b|``, log scale);
* ``confusion_matrix.png``: for classification data, which class each framework's trained
  model predicts for each true class of the test rows.

One convention for every picture: matplotlib's object-oriented ``Figure`` on the Agg canvas
(headless, no pyplot state), one colour and line style per framework, steps on the x axis
counted as everywhere else (state ``k`` before update ``k``), file names in ``snake_case``,
each file checked before the run (``prepare``) and written atomically. It draws what the
result holds (``series_for_plots``, ``comparisons``, ``test_outputs``); it computes no
verdict. matplotlib is imported only when plots are drawn.
"""

from __future__ import annotations

import importlib.util
import io
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from compare import files

#: A PNG's first bytes: a file in the way that has them is an earlier plot, and may be replaced.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Files ``write`` may produce (``differences_<mode>.png`` per mode present).
FILENAMES = (
    "loss.png",
    "differences_independent.png",
    "differences_synced.png",
    "confusion_matrix.png",
)

#: One look per framework, so overlaid identical lines stay distinguishable.
STYLES = {
    "numpy": {"color": "tab:blue", "linestyle": "-", "linewidth": 3.0, "alpha": 0.6},
    "torch": {"color": "tab:orange", "linestyle": "--", "linewidth": 1.8},
    "jax": {"color": "tab:green", "linestyle": ":", "linewidth": 1.8},
    "torch_nn": {"color": "tab:red", "linestyle": "-.", "linewidth": 1.5},
    "flax_nnx": {"color": "tab:purple", "linestyle": (0, (3, 1, 1, 1)), "linewidth": 1.5},
}


def style(framework: str) -> dict:
    """The line style of ``framework`` (plugins share a dash-dot grey)."""
    return STYLES.get(framework, {"color": "tab:gray", "linestyle": "-.", "linewidth": 1.2})


def prepare(folder: Path) -> None:
    """Check, before any training, that the plots can be written into ``folder``.

    Nothing is created yet (``write`` creates the folder), so a run that is refused or
    interrupted leaves nothing behind.

    Raises:
        files.OutputError: matplotlib is missing, ``folder`` is a file, the nearest existing
            folder above it is not writable, or a file the plots would replace is not a PNG.
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise files.OutputError(
            "--plots needs matplotlib; install it with: pip install -c constraints.txt "
            "'crosscheck[plots]'"
        )
    if folder.exists() and not folder.is_dir():
        raise files.OutputError(f"cannot write plots to {folder}: it is not a folder")
    existing = next(parent for parent in (folder, *folder.absolute().parents) if parent.exists())
    if not existing.is_dir():
        raise files.OutputError(f"cannot create plot folder {folder}: {existing} is a file")
    if not os.access(existing, os.W_OK):
        raise files.OutputError(f"cannot write plots to {folder}: {existing} is not writable")
    for name in FILENAMES:
        path = folder / name
        if path.exists() and not is_png(path):
            raise files.OutputError(f"refusing to overwrite {path}: it is not a PNG image")


def is_png(path: Path) -> bool:
    """Whether ``path`` starts like a PNG image."""
    try:
        with path.open("rb") as stream:
            return stream.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError:
        return False


def write(result, folder: Path) -> list[Path]:
    """Draw every plot of ``result`` into ``folder`` (checked by ``prepare``); return the paths.

    Raises:
        files.OutputError: the folder or a file cannot be written.
    """
    series = result.series_for_plots
    figures = {"loss.png": _loss(result, series)}
    by_mode: dict[str, dict[str, dict]] = {}
    for (mode, framework, against), values in series.differences.items():
        label = f"{framework} vs its own training" if against == framework else framework
        if values:
            by_mode.setdefault(mode, {})[label] = (framework, values)
    for mode, lines in by_mode.items():
        figures[f"differences_{mode}.png"] = _differences(result, series, mode, lines)
    if result.dataset.class_names and len(result.dataset.labels_test):
        figures["confusion_matrix.png"] = _confusion_matrices(result)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise files.OutputError(
            f"cannot create plot folder {folder}: {error.strerror or error}"
        ) from error
    written = []
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        files.write_atomic(folder / name, buffer.getvalue())
        written.append(folder / name)
    return written


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _steps_axis(axes) -> None:
    axes.set_xlabel("training step k (state k is before update k)")
    axes.grid(True, alpha=0.3)


def _loss(result, series):
    figure = _figure(8, 4.8)
    axes = figure.subplots()
    for name, values in series.loss.items():
        shown = np.asarray(values, dtype=np.float64)
        axes.plot(series.steps[: len(shown)], shown, label=name, **style(name))
    axes.set_title("Loss while training (lower is better)")
    axes.set_ylabel(f"loss ({result.network.loss}) on step k's batch")
    _steps_axis(axes)
    axes.legend(title="framework")
    figure.suptitle(
        f"{result.dataset.name}, network {result.network.describe()}, {result.dtype}\n"
        "the curves overlap where the frameworks agree"
    )
    return figure


def _differences(result, series, mode: str, lines: Mapping[str, tuple[str, Mapping]]):
    """One panel per quantity; one line per compared pair (``lines``: label -> (framework,
    quantity -> binned greatest |a - b|))."""
    steps = np.asarray(series.steps)
    quantities = list(dict.fromkeys(q for _, values in lines.values() for q in values))
    columns = min(3, len(quantities))
    rows = -(-len(quantities) // columns)
    figure = _figure(4.2 * columns, 3.4 * rows)
    panels = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, quantity in zip(panels, quantities, strict=False):
        exactly_equal, drawn = False, False
        for label, (framework, values) in lines.items():
            if quantity not in values:
                continue
            difference = np.asarray(values[quantity], dtype=np.float64)
            exactly_equal |= bool(np.any(difference == 0))
            if not np.any(difference > 0):
                continue
            # A log axis cannot show 0: such steps are gaps, said in the title.
            shown = np.where(difference > 0, difference, np.nan)
            own = label != framework
            look = {**style(framework), **({"alpha": 0.5, "linewidth": 0.8} if own else {})}
            axes.plot(steps[: len(shown)], shown, label=label, **look)
            drawn = True
        if drawn:
            axes.set_yscale("log")
            axes.legend(fontsize="small")
            title = quantity + ("\n(gaps: exactly equal)" if exactly_equal else "")
        else:
            axes.text(
                0.5,
                0.5,
                "exactly equal\nat every step",
                ha="center",
                va="center",
                transform=axes.transAxes,
            )
            title = quantity
        if len(steps):
            axes.set_xlim(0, max(int(steps[-1]), 1))
        axes.set_title(title)
        axes.set_ylabel("greatest |a - b| in the step")
        _steps_axis(axes)
    for axes in panels[len(quantities) :]:
        axes.set_visible(False)
    figure.suptitle(
        f"{mode.capitalize()} mode: how far each framework is from {result.reference} (log scale)"
    )
    return figure


def _confusion_matrices(result):
    dataset = result.dataset
    classes = len(dataset.class_names)
    truth = np.asarray(dataset.labels_test)
    frameworks = list(result.test_outputs)
    size = 3.2 + 0.25 * classes
    figure = _figure(size * len(frameworks) + 1, size)
    panels = figure.subplots(1, len(frameworks), squeeze=False)[0]
    for axes, name in zip(panels, frameworks, strict=True):
        predicted = np.argmax(np.asarray(result.test_outputs[name]), axis=-1)
        counts = np.bincount(truth * classes + predicted, minlength=classes * classes)
        counts = counts.reshape(classes, classes)
        axes.imshow(counts, cmap="Blues")
        for (i, j), count in np.ndenumerate(counts):
            light = count > counts.max() / 2
            axes.text(j, i, str(count), ha="center", va="center", color="white" if light else "k")
        ticks = np.arange(classes)
        axes.set_xticks(ticks, dataset.class_names, rotation=45, ha="right")
        axes.set_yticks(ticks, dataset.class_names)
        axes.set_xlabel("class the model predicts")
        axes.set_ylabel("true class")
        right = float(np.mean(truth == predicted))
        axes.set_title(f"{name}: {right:.1%} right (the diagonal)")
    figure.suptitle(
        f"Test rows of {dataset.name}: which class each trained model predicts "
        f"({result.recipe.steps} steps)"
    )
    return figure
