"""The data: scikit-learn's bundled data sets, one-hot targets, and the train/test split.

Only the split's ``random_state`` draws random numbers here. Nothing is downloaded: every data
set named in ``compare.recipe.DATASETS`` ships inside scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compare.recipe import Recipe, RecipeError


@dataclass(frozen=True)
class Dataset:
    """A split data set with one-hot targets (float64) and integer labels."""

    name: str
    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def labels_train(self) -> np.ndarray:
        """Class index of every training row."""
        return self.Y_train.argmax(axis=1)

    @property
    def labels_test(self) -> np.ndarray:
        """Class index of every test row."""
        return self.Y_test.argmax(axis=1)


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n,)`` integer labels -> ``(n, n_classes)`` float64 one-hot rows."""
    return np.eye(n_classes)[labels]


def load(recipe: Recipe) -> Dataset:
    """Load ``recipe.dataset`` and split it as ``train_test_split(X, Y, test_size, random_state)``.

    Raises:
        RecipeError: the split cannot be made (e.g. more test rows than the data set has).
    """
    # Imported here, not at the top: scikit-learn takes seconds to import, and the harness
    # starts the framework workers first so that their imports overlap this one.
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    bunch = getattr(datasets, f"load_{recipe.dataset}")()
    class_names = tuple(str(name) for name in bunch.target_names)
    X = np.asarray(bunch.data, dtype=np.float64)
    Y = one_hot(bunch.target, len(class_names))
    try:
        X_train, X_test, Y_train, Y_test = train_test_split(
            X, Y, test_size=recipe.test_size, random_state=recipe.split_seed
        )
    except ValueError as error:
        raise RecipeError(f"cannot split {recipe.dataset} ({len(X)} rows): {error}") from error
    return Dataset(recipe.dataset, X_train, Y_train, X_test, Y_test, class_names)
