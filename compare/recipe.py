"""The recipe: everything that decides what is trained, with the tutorial's values as defaults.

A ``Recipe`` is validated on construction, so a bad value is refused with one ``RecipeError``
line before any data is loaded or framework imported. It holds only plain values, so
``to_dict``/``from_dict`` round-trip it through JSON (reports and baselines store it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from implementations.contract import ACTIVATIONS, DTYPES, Network


class RecipeError(ValueError):
    """A recipe setting that cannot be trained; the message is one line for the user."""


#: Data sets bundled with scikit-learn that a recipe may name.
DATASETS = ("iris", "wine", "breast_cancer", "digits")


@dataclass(frozen=True)
class Recipe:
    """What to train and how. Defaults reproduce the backpropagation tutorial.

    Attributes:
        dataset: A scikit-learn bundled data set (``DATASETS``).
        test_size: Test rows (an int) or fraction (a float in (0, 1)), as ``train_test_split``.
        split_seed: ``random_state`` of ``train_test_split``.
        hidden: Hidden layer widths, input side first; ``(2,)`` is the tutorial's 4-2-3.
        activations: One activation for every layer, or one per weight layer.
        init_seed: Seed of the one NumPy draw of initial weights.
        init_scale: Standard deviation of that normal draw.
        lr: Gradient-descent learning rate.
        steps: Number of full-batch updates.
        dtype: The dtype every framework computes in.
    """

    dataset: str = "iris"
    test_size: int | float = 20
    split_seed: int = 4
    hidden: tuple[int, ...] = (2,)
    activations: tuple[str, ...] = ("sigmoid",)
    init_seed: int = 10
    init_scale: float = 0.5
    lr: float = 0.1
    steps: int = 5000
    dtype: str = "float64"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(self.hidden))
        object.__setattr__(self, "activations", tuple(self.activations))
        if self.dataset not in DATASETS:
            raise RecipeError(
                f"unknown data set {self.dataset!r}; choose from {', '.join(DATASETS)}"
            )
        _require(
            _is_int(self.split_seed) and self.split_seed >= 0,
            "split seed",
            self.split_seed,
            "a non-negative integer",
        )
        _require(
            _is_int(self.init_seed) and 0 <= self.init_seed < 2**32,
            "init seed",
            self.init_seed,
            "an integer in [0, 2**32)",
        )
        if _is_int(self.test_size):
            _require(self.test_size >= 1, "test size", self.test_size, "at least 1 row")
        else:
            _require(
                _is_real(self.test_size) and 0 < self.test_size < 1,
                "test size",
                self.test_size,
                "a row count or a fraction in (0, 1)",
            )
        _require(
            all(_is_int(w) and w >= 1 for w in self.hidden),
            "hidden widths",
            ",".join(map(str, self.hidden)),
            "positive integers",
        )
        _require(
            _is_real(self.init_scale) and self.init_scale > 0,
            "init scale",
            self.init_scale,
            "a positive finite number",
        )
        _require(
            _is_real(self.lr) and self.lr > 0, "learning rate", self.lr, "a positive finite number"
        )
        _require(_is_int(self.steps) and self.steps >= 1, "steps", self.steps, "a positive integer")
        if self.dtype not in DTYPES:
            raise RecipeError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        unknown = [a for a in self.activations if a not in ACTIVATIONS]
        if unknown or not self.activations:
            raise RecipeError(
                f"unknown activation {unknown[0] if unknown else '(none)'!r}; "
                f"choose from {', '.join(ACTIVATIONS)}"
            )
        layers = len(self.hidden) + 1
        _require(
            len(self.activations) in (1, layers),
            "activations",
            ",".join(self.activations),
            f"one name, or one per layer ({layers})",
        )

    def network(self, n_inputs: int, n_outputs: int) -> Network:
        """The network this recipe trains on data with the given widths."""
        layers = len(self.hidden) + 1
        activations = self.activations * layers if len(self.activations) == 1 else self.activations
        return Network(widths=(n_inputs, *self.hidden, n_outputs), activations=activations)

    def to_dict(self) -> dict:
        """Every setting, JSON-ready (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> Recipe:
        """Rebuild a recipe from ``to_dict`` output; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RecipeError(f"unknown recipe setting {unknown[0]!r}")
        return cls(**values)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok: bool, what: str, value, expected: str) -> None:
    if not ok:
        raise RecipeError(f"{what} must be {expected}, got {value!r}")
