"""The data: bundled data sets, your own files, inline arrays; the split; standardising.

A recipe's data comes from one source (``compare.recipe``):

* a scikit-learn bundled data set (``iris``, ``wine``, ``breast_cancer``, ``digits``; nothing is
  downloaded);
* a CSV file: one row per sample, numbers separated by commas, ``#`` comment lines and blank
  lines skipped. Without a header line the last column is the integer class label. With a
  header line (any non-numeric cell in the first row makes it one) a column named ``label``
  holds integer class labels, or the columns whose names start with ``target`` hold a target
  matrix; every other column is an input. An explicit test set (``test_path``) is a second
  CSV file laid out the same way;
* an NPZ file with arrays ``X_train`` and ``Y_train`` and optionally ``X_test`` and
  ``Y_test`` (read with ``allow_pickle=False``);
* inline ``X_train``, ``Y_train`` (``X_test``, ``Y_test``) in the recipe.

Targets are integer class labels (made one-hot, classes in increasing label order) or a target
matrix. A target matrix whose rows are all one-hot is a classification; any other is a
regression (``[0.01, 0.99]``), which only the squared-error losses accept
(``binary-cross-entropy`` also accepts targets in [0, 1]).

Without an explicit test set the rows are split as ``train_test_split(X, Y, test_size,
random_state=split_seed)`` (``test_size`` 0: every row trains); the split is the only random
draw here. ``standardize`` fits scikit-learn's ``StandardScaler`` on the training rows only and
applies it to both sets.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compare.recipe import SQUARED_ERROR_LOSSES, Recipe, RecipeError

#: An activation's slope under this fraction of its greatest slope counts as saturated.
SATURATED_SLOPE_FRACTION = 0.01

#: |z| beyond which each saturating activation's slope is below ``SATURATED_SLOPE_FRACTION``
#: of its maximum: sigmoid' = s(1 - s) ~ e^-|z| against 1/4; tanh' = 1 - tanh^2 ~ 4 e^-2|z|
#: against 1. Relu-like activations and identity do not saturate on both sides.
SATURATION_THRESHOLD = {
    "sigmoid": math.log(1 / (0.25 * SATURATED_SLOPE_FRACTION)),
    "tanh": 0.5 * math.log(4 / SATURATED_SLOPE_FRACTION),
}

_NPZ_ARRAYS = ("X_train", "Y_train", "X_test", "Y_test")


@dataclass(frozen=True)
class Dataset:
    """A split data set: float64 inputs and targets, as every framework receives them.

    Attributes:
        name: The data set's name, or the data file's name, or ``"inline"``.
        X_train: Training inputs ``(N, in)`` (standardised if the recipe says so).
        Y_train: Training targets ``(N, O)``: one-hot rows, or a regression target matrix.
        X_test: Test inputs ``(M, in)`` (``M`` may be 0).
        Y_test: Test targets ``(M, O)``.
        class_names: One name per output for a classification; ``()`` for a regression.
        standardized: The inputs were standardised.
        unscaled_max_abs: The largest ``|x|`` among the training inputs before any scaling.
    """

    name: str
    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    class_names: tuple[str, ...]
    standardized: bool = False
    unscaled_max_abs: float = 0.0

    @property
    def classification(self) -> bool:
        """The targets are one-hot classes (``class_names`` names them), not regression."""
        return len(self.class_names) > 0

    @property
    def labels_train(self) -> np.ndarray:
        """Class index of every training row (the top target for a regression)."""
        return self.Y_train.argmax(axis=1)

    @property
    def labels_test(self) -> np.ndarray:
        """Class index of every test row (the top target for a regression)."""
        return self.Y_test.argmax(axis=1)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n,)`` integer labels -> ``(n, n_classes)`` float64 one-hot rows."""
    return np.eye(n_classes)[labels]


def load(recipe: Recipe) -> Dataset:
    """The data set a recipe trains on: loaded, checked against its loss, split, scaled.

    Raises:
        RecipeError: a file cannot be read or is malformed (one line naming the file and,
            for CSV, the line), the targets do not suit the loss, or the split cannot be made.
    """
    if recipe.dataset is not None:
        name, X, Y_raw, X_test, Y_test_raw, names = _bundled(recipe.dataset)
    elif recipe.data_path is not None:
        name = Path(recipe.data_path).name
        if recipe.data_path.lower().endswith(".npz"):
            X, Y_raw, X_test, Y_test_raw = _read_npz(recipe.data_path)
        else:
            X, Y_raw = read_csv(recipe.data_path)
            X_test, Y_test_raw = read_csv(recipe.test_path) if recipe.test_path else (None, None)
        names = None
    else:
        name = "inline"
        X, Y_raw = np.array(recipe.X_train, dtype=np.float64), np.array(recipe.Y_train)
        X_test = None if recipe.X_test is None else np.array(recipe.X_test, dtype=np.float64)
        Y_test_raw = None if recipe.Y_test is None else np.array(recipe.Y_test)
        names = None
    Y, Y_test, class_names = _targets(name, Y_raw, Y_test_raw, names)
    for what, inputs, targets in (("training", X, Y), ("test", X_test, Y_test)):
        if inputs is not None and len(inputs) != len(targets):
            raise RecipeError(
                f"{name}: the {what} set has {len(inputs)} input rows but {len(targets)} targets"
            )
    if X_test is not None and X_test.shape[1] != X.shape[1]:
        raise RecipeError(
            f"{name}: the test set has {X_test.shape[1]} inputs but the training set {X.shape[1]}"
        )
    _check_targets_suit_loss(
        name,
        recipe.loss,
        Y if Y_test is None else np.vstack([Y, Y_test]),
        classification=bool(class_names),
    )
    if X_test is None:
        X_train, X_test, Y_train, Y_test = _split(name, X, Y, recipe)
    else:
        X_train, Y_train = X, Y
    unscaled_max_abs = float(np.max(np.abs(X_train)))
    if recipe.standardize:
        X_train, X_test = _standardize(X_train, X_test)
    return Dataset(
        name=name,
        X_train=np.ascontiguousarray(X_train, dtype=np.float64),
        Y_train=np.ascontiguousarray(Y_train, dtype=np.float64),
        X_test=np.ascontiguousarray(X_test, dtype=np.float64),
        Y_test=np.ascontiguousarray(Y_test, dtype=np.float64),
        class_names=class_names,
        standardized=recipe.standardize,
        unscaled_max_abs=unscaled_max_abs,
    )


def first_layer_saturation(
    X: np.ndarray, W1: np.ndarray, b1: np.ndarray | None, activation: str
) -> float | None:
    """The fraction of first-layer pre-activations ``Z1 = X @ W1 (+ b1)`` where the activation
    is saturated (slope under ``SATURATED_SLOPE_FRACTION`` of its greatest).

    Unscaled inputs (wine's proline in the thousands, digits' 64 pixels up to 16) put most
    sigmoid units there at the usual initial weights: their gradients vanish and low-precision
    runs flush them to zero. A large fraction is worth a ``--standardize`` hint.

    Args:
        X: Inputs ``(R, in)``, as the network receives them.
        W1: First-layer weights ``(in, out)``, one point.
        b1: First-layer bias ``(out,)`` or None.
        activation: The first layer's activation.

    Returns:
        The fraction in [0, 1], or None for an activation that does not saturate on both sides
        (relu, leaky_relu, gelu, gelu_tanh, identity) or an empty ``X``.
    """
    threshold = SATURATION_THRESHOLD.get(activation)
    if threshold is None or len(X) == 0:
        return None
    Z1 = np.asarray(X, dtype=np.float64) @ np.asarray(W1, dtype=np.float64)
    if b1 is not None:
        Z1 = Z1 + b1
    return float(np.mean(np.abs(Z1) > threshold))


def read_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a CSV data file (format in the module docstring).

    Returns:
        ``(X, targets)``: float64 inputs ``(N, in)``, and int64 labels ``(N,)`` or a float64
        target matrix ``(N, O)``.

    Raises:
        RecipeError: the file is missing or malformed; the message names the line.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [
                (number, [cell.strip() for cell in row])
                for number, row in enumerate(csv.reader(handle), start=1)
                if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")
            ]
    except OSError as error:
        raise RecipeError(f"cannot read data file {str(path)!r}: {error.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise RecipeError(f"cannot read data file {str(path)!r}: {error}") from None
    if not rows:
        raise RecipeError(f"{path.name} holds no rows")
    header = None if all(_is_number(cell) for cell in rows[0][1]) else rows[0][1]
    body = rows[1:] if header is not None else rows
    if not body:
        raise RecipeError(f"{path.name} has a header line but no rows")
    width = len(rows[0][1])
    if header is None:
        if width < 2:
            raise RecipeError(f"{path.name}: each row needs inputs and a label, got 1 column")
        label_columns, target_columns = [width - 1], []
    else:
        names = [name.lower() for name in header]
        label_columns = [i for i, name in enumerate(names) if name == "label"]
        target_columns = [i for i, name in enumerate(names) if name.startswith("target")]
        if len(label_columns) + bool(target_columns) != 1 or len(label_columns) > 1:
            raise RecipeError(
                f"{path.name}: the header needs one 'label' column or 'target...' columns "
                f"(not both), got {', '.join(header)}"
            )
    output_columns = label_columns or target_columns
    input_columns = [i for i in range(width) if i not in output_columns]
    if not input_columns:
        raise RecipeError(f"{path.name}: no input columns")
    X = np.empty((len(body), len(input_columns)))
    targets = np.empty((len(body), len(output_columns)))
    for row_index, (line, cells) in enumerate(body):
        if len(cells) != width:
            raise RecipeError(
                f"{path.name} line {line}: {len(cells)} columns, expected {width} like line "
                f"{rows[0][0]}"
            )
        values = []
        for cell in cells:
            if not _is_number(cell) or not math.isfinite(float(cell)):
                raise RecipeError(f"{path.name} line {line}: {cell!r} is not a finite number")
            values.append(float(cell))
        X[row_index] = [values[i] for i in input_columns]
        targets[row_index] = [values[i] for i in output_columns]
        if label_columns and not float(values[label_columns[0]]).is_integer():
            raise RecipeError(
                f"{path.name} line {line}: label {cells[label_columns[0]]!r} is not an integer"
            )
    if label_columns:
        return X, targets[:, 0].astype(np.int64)
    return X, targets


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bundled(dataset: str):
    # Imported here, not at the top: scikit-learn takes seconds to import, and the harness
    # starts the framework workers first so that their imports overlap this one.
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{dataset}")()
    names = tuple(str(name) for name in bunch.target_names)
    X = np.asarray(bunch.data, dtype=np.float64)
    return dataset, X, np.asarray(bunch.target, dtype=np.int64), None, None, names


def _read_npz(path: str):
    try:
        with np.load(path, allow_pickle=False) as archive:
            unknown = sorted(set(archive.files) - set(_NPZ_ARRAYS))
            if unknown:
                raise RecipeError(
                    f"{Path(path).name}: unknown array {unknown[0]!r}; expected "
                    f"{', '.join(_NPZ_ARRAYS)}"
                )
            arrays = {name: archive[name] for name in archive.files}
    except RecipeError:
        raise
    except FileNotFoundError:
        raise RecipeError(f"data file {path!r} not found") from None
    except (OSError, ValueError) as error:
        raise RecipeError(f"cannot read data file {path!r}: {error}") from None
    name = Path(path).name
    for required in ("X_train", "Y_train"):
        if required not in arrays:
            raise RecipeError(f"{name} lacks {required}")
    if ("X_test" in arrays) != ("Y_test" in arrays):
        raise RecipeError(f"{name}: a test set needs both X_test and Y_test")
    X = _inputs(name, "X_train", arrays["X_train"])
    X_test = _inputs(name, "X_test", arrays["X_test"]) if "X_test" in arrays else None
    return X, arrays["Y_train"], X_test, arrays.get("Y_test")


def _inputs(source: str, what: str, array: np.ndarray) -> np.ndarray:
    if array.dtype.kind not in "iuf" or array.ndim != 2 or array.size == 0:
        raise RecipeError(f"{source}: {what} must be a non-empty 2-D array of numbers")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise RecipeError(f"{source}: {what} must hold finite numbers only")
    return array


def _targets(source, Y, Y_test, names):
    """Labels or target matrices -> ``(Y, Y_test, class_names)``, float64 matrices."""
    Y = np.asarray(Y)
    Y_test = None if Y_test is None else np.asarray(Y_test)
    kinds = {
        _target_kind(source, what, array)
        for what, array in (("Y_train", Y), ("Y_test", Y_test))
        if array is not None
    }
    if len(kinds) > 1:
        raise RecipeError(f"{source}: Y_train and Y_test must both be labels or both matrices")
    if kinds == {"labels"}:
        together = Y if Y_test is None else np.concatenate([Y, Y_test])
        classes = np.unique(together)
        if names is None:
            names = tuple(str(label) for label in classes)
        else:  # a bundled data set: classes are 0 .. K-1, named by scikit-learn
            classes = np.arange(len(names))

        def encode(labels):
            return one_hot(np.searchsorted(classes, labels), len(classes))

        return encode(Y), None if Y_test is None else encode(Y_test), names
    Y = Y.astype(np.float64)
    if Y_test is not None:
        Y_test = Y_test.astype(np.float64)
        if Y_test.shape[1] != Y.shape[1]:
            raise RecipeError(
                f"{source}: Y_test has {Y_test.shape[1]} columns but Y_train {Y.shape[1]}"
            )
    together = Y if Y_test is None else np.vstack([Y, Y_test])
    is_one_hot = np.all((together == 0) | (together == 1)) and np.all(together.sum(axis=1) == 1)
    names = tuple(str(column) for column in range(Y.shape[1])) if is_one_hot else ()
    return Y, Y_test, names


def _target_kind(source: str, what: str, array: np.ndarray) -> str:
    if array.ndim == 1 and array.dtype.kind in "iu":
        if array.size and array.min() < 0:
            raise RecipeError(f"{source}: {what} class labels must be non-negative")
        return "labels"
    if array.ndim == 2 and array.dtype.kind in "iuf" and array.shape[1] > 0:
        if not np.all(np.isfinite(array)):
            raise RecipeError(f"{source}: {what} must hold finite numbers only")
        return "matrix"
    raise RecipeError(
        f"{source}: {what} must be integer class labels (1-D) or a target matrix (2-D), got "
        f"a {array.ndim}-D {array.dtype} array"
    )


def _check_targets_suit_loss(source: str, loss: str, Y: np.ndarray, classification: bool) -> None:
    if loss in SQUARED_ERROR_LOSSES or classification:
        return
    if loss == "binary-cross-entropy":
        if np.all((Y >= 0) & (Y <= 1)):
            return
        raise RecipeError(
            f"{source}: binary-cross-entropy needs targets in [0, 1]; use a squared-error loss "
            f"({', '.join(SQUARED_ERROR_LOSSES)}) for these"
        )
    raise RecipeError(
        f"{source}: {loss} needs class targets (labels or one-hot rows), these are regression "
        f"targets; use a squared-error loss ({', '.join(SQUARED_ERROR_LOSSES)})"
    )


def _split(source: str, X: np.ndarray, Y: np.ndarray, recipe: Recipe):
    if recipe.test_size == 0:
        return X, X[:0], Y, Y[:0]
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(X, Y, test_size=recipe.test_size, random_state=recipe.split_seed)
    except ValueError as error:
        raise RecipeError(f"cannot split {source} ({len(X)} rows): {error}") from None


def _standardize(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train)
    # StandardScaler refuses an empty array; an empty test set stays empty.
    return scaler.transform(X_train), scaler.transform(X_test) if len(X_test) else X_test
