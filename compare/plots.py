"""Pictures of a run (``crosscheck run --plots DIR``): PNG files a newcomer can read.

* ``loss_accuracy.png``: the loss and the training accuracy of every framework, step by step,
  overlaid (when the frameworks agree their lines lie on top of each other);
* ``gradient_difference.png``: at every step, the greatest difference between each framework's
  gradient and the reference's, on a log scale;
* ``confusion_matrix.png``: for the classification data sets, which class the reference's
  trained model predicts for each true class, on the training and the test rows.

It draws what ``RunResult`` holds and what ``compare.agreement`` derives from it; it trains and
compares nothing itself. matplotlib is imported only when plots are asked for, and drawn
through its object-oriented ``Figure`` API on the Agg canvas: headless, no pyplot state.
Files are checked before the run (``prepare``) and written atomically; a file in the way that
is not a PNG is never overwritten.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np

from compare import agreement, files
from compare.harness import RunResult

#: The files written, in order.
FILENAMES = ("loss_accuracy.png", "gradient_difference.png", "confusion_matrix.png")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: One look per framework, so overlaid identical lines stay distinguishable.
_STYLES = {
    "numpy": {"color": "tab:blue", "linestyle": "-", "linewidth": 3.0, "alpha": 0.6},
    "torch": {"color": "tab:orange", "linestyle": "--", "linewidth": 1.8},
    "jax": {"color": "tab:green", "linestyle": ":", "linewidth": 1.8},
}


def _style(framework: str) -> dict:
    return _STYLES.get(framework, {"linestyle": "-."})


def prepare(folder: Path) -> None:
    """Check, before any training, that the plots can be written to ``folder``; create it.

    Raises:
        files.OutputError: matplotlib is missing, ``folder`` is not a folder or cannot be
            created, or a file the plots would replace is not a PNG.
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise files.OutputError(
            "--plots needs matplotlib; install it with: pip install -c constraints.txt "
            "'crosscheck[plots]'"
        )
    if folder.exists() and not folder.is_dir():
        raise files.OutputError(f"cannot write plots to {folder}: it is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise files.OutputError(
            f"cannot create plot folder {folder}: {error.strerror or error}"
        ) from error
    for name in FILENAMES:
        path = folder / name
        if path.exists() and not _is_png(path):
            raise files.OutputError(f"refusing to overwrite {path}: it is not a PNG image")


def _is_png(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return stream.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE
    except OSError:
        return False


def write(result: RunResult, folder: Path, tolerance: agreement.Tolerance) -> list[Path]:
    """Draw every plot of ``result`` into ``folder`` (checked by ``prepare``); returns the paths.

    ``tolerance`` is the one the run was judged by; the gradient plot marks its ``atol``.

    Raises:
        files.OutputError: a file cannot be written.
    """
    figures = {
        "loss_accuracy.png": _loss_accuracy(result),
        "gradient_difference.png": _gradient_difference(result, tolerance),
    }
    if result.dataset.class_names:
        figures["confusion_matrix.png"] = _confusion_matrices(result)
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
    axes.set_xlabel("training step (one full-batch gradient-descent update each)")
    axes.grid(True, alpha=0.3)


def _loss_accuracy(result: RunResult):
    figure = _figure(11, 4.2)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for name, run in result.runs.items():
        steps = np.arange(len(run.trajectory.losses))
        loss_axes.plot(steps, run.trajectory.losses, label=name, **_style(name))
        accuracy_axes.plot(steps, result.train_accuracy(name), label=name, **_style(name))
    loss_axes.set_title("Loss while training (lower is better)")
    loss_axes.set_ylabel("loss: half the mean squared error")
    accuracy_axes.set_title("Accuracy on the training rows")
    accuracy_axes.set_ylabel("fraction of training rows classified right")
    accuracy_axes.set_ylim(-0.02, 1.02)
    for axes in (loss_axes, accuracy_axes):
        _steps_axis(axes)
        axes.legend(title="framework")
    figure.suptitle(
        f"{result.recipe.dataset}, network {result.network.describe()}: the three frameworks' "
        "curves overlap where they agree"
    )
    return figure


def _gradient_difference(result: RunResult, tolerance: agreement.Tolerance):
    figure = _figure(10, 4.8)
    axes = figure.subplots()
    reference = result.runs[result.reference].trajectory
    exact_zero = False
    for name, run in result.runs.items():
        if name == result.reference:
            continue
        for weight, linestyle in zip(
            result.network.param_names, ("-", "--", ":", "-."), strict=False
        ):
            difference = agreement.max_abs_by_step(
                run.trajectory.grads[weight], reference.grads[weight]
            )
            exact_zero |= bool(np.any(difference == 0))
            axes.plot(
                np.arange(len(difference)),
                np.where(difference > 0, difference, np.nan),  # log scale: 0 cannot be drawn
                label=f"{name}, dL/d{weight}",
                color=_style(name).get("color"),
                linestyle=linestyle,
                linewidth=0.8,
                alpha=0.8,
            )
    axes.set_yscale("log")
    axes.axhline(
        tolerance.atol,
        color="tab:red",
        linewidth=1.0,
        label=f"atol = {tolerance.atol:.1e}:\na difference below it always passes",
    )
    axes.set_ylabel(f"largest |gradient - {result.reference}'s gradient|")
    _steps_axis(axes)
    note = "; gaps: exactly equal there" if exact_zero else ""
    axes.set_title(
        f"How far each framework's gradients are from {result.reference}'s\n"
        f"(log scale; far below the red line: they agree to rounding{note})"
    )
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure


def _confusion_matrices(result: RunResult):
    dataset = result.dataset
    reference = result.runs[result.reference]
    classes = len(dataset.class_names)
    panels = (
        ("training rows", dataset.labels_train, reference.trajectory.train_predictions[-1]),
        ("test rows", dataset.labels_test, result.test_predictions(result.reference)),
    )
    size = 4 + 0.3 * classes
    figure = _figure(2 * size + 1, size)
    for axes, (title, truth, predicted) in zip(figure.subplots(1, 2), panels, strict=True):
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
        accuracy = float(np.mean(truth == predicted))
        axes.set_title(f"{title}: {accuracy:.1%} right (the diagonal)")
    figure.suptitle(
        f"Which class the trained {result.reference} model predicts, {dataset.name} "
        f"({result.recipe.steps} steps)"
    )
    return figure
