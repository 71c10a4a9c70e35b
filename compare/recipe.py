"""The recipe: everything that decides what is trained, with the tutorial's values as defaults.

A ``Recipe`` holds plain values only (numbers, strings, tuples), so it is hashable, compares by
value and round-trips through JSON and TOML. It is validated on construction: a bad value is
refused with one ``RecipeError`` line before any data is loaded or framework imported.

Settings that only mean something in a context are ``None`` outside it and take the context's
default inside it, resolved on construction so that the recipe always states the numbers used:

* the data comes from exactly one source: a bundled ``dataset`` (``iris`` when nothing else
  is given), a file (``data_path``, CSV or NPZ, see ``compare.data``), or inline arrays
  (``X_train``, ``Y_train``, optionally ``X_test``, ``Y_test``);
* the initial weights are either drawn (``init_scheme``, ``init_seed``, ``init_scale``; the
  scale's default depends on the scheme, see ``compare.weights``) or explicit (``weights_path``
  to an NPZ file, or inline ``weights``), never both;
* each optimizer hyperparameter applies to some optimizers only (``momentum``, ``dampening``,
  ``nesterov``: ``momentum``; ``beta1``, ``beta2``, ``eps``: ``adam`` and ``adamw``), is
  ``None`` for the others and refused if given for them. ``weight_decay`` applies to all; its
  default is torch's: 0 for ``sgd``, ``momentum`` and ``adam``, 1e-2 for ``adamw``.

The file schema (``to_dict``, ``from_dict``, ``load_file``) has four sections, ``[data]``,
``[network]``, ``[init]`` and ``[train]``; ``SECTIONS`` maps each key to its field.

This module reads files but imports nothing heavier than NumPy: the CLI imports it to parse
options before anything slow starts.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from implementations.contract import (
    ACTIVATIONS,
    DTYPES,
    LOSSES,
    OPTIMIZERS,
    Batches,
    Network,
    Optimizer,
    Problem,
)

#: float16's smallest normal number; Adam's eps must not be below it in float16.
FLOAT16_TINY = 6.103515625e-05


class RecipeError(ValueError):
    """A recipe setting that cannot be trained; the message is one line for the user."""


#: Data sets bundled with scikit-learn that a recipe may name.
DATASETS = ("iris", "wine", "breast_cancer", "digits")

#: Initial-weight schemes (exact definitions in ``compare.weights``).
INIT_SCHEMES = ("normal", "uniform", "glorot", "he", "lecun")

#: ``init_scale`` when not given: the normal draw's standard deviation and the uniform draw's
#: limit are the tutorial's 0.5; for the fan-based schemes the scale is a gain on their formula.
DEFAULT_INIT_SCALE = {"normal": 0.5, "uniform": 0.5, "glorot": 1.0, "he": 1.0, "lecun": 1.0}

#: Losses that accept any real targets (regression); the others need class or [0, 1] targets.
SQUARED_ERROR_LOSSES = ("half-mse", "mse", "half-sse")

#: Hyperparameter -> (the optimizers it applies to, its default there). torch's defaults.
OPTIMIZER_SETTINGS: dict[str, tuple[tuple[str, ...], Any]] = {
    "momentum": (("momentum",), 0.9),
    "dampening": (("momentum",), 0.0),
    "nesterov": (("momentum",), False),
    "beta1": (("adam", "adamw"), 0.9),
    "beta2": (("adam", "adamw"), 0.999),
    "eps": (("adam", "adamw"), 1e-8),
    "weight_decay": (OPTIMIZERS, None),  # None: WEIGHT_DECAY_DEFAULT[optimizer]
}

#: ``weight_decay`` when not given: torch's defaults (``AdamW``'s 1e-2; optax's ``adamw`` would
#: use 1e-4, which is why the recipe always states the number).
WEIGHT_DECAY_DEFAULT = {"sgd": 0.0, "momentum": 0.0, "adam": 0.0, "adamw": 1e-2}

#: File schema: section -> {key in the file: ``Recipe`` field}. ``[init]`` also takes the
#: explicit parameters themselves (``W1``, ``b1``, ...), gathered into ``Recipe.weights``.
SECTIONS: dict[str, dict[str, str]] = {
    "data": {
        "dataset": "dataset",
        "path": "data_path",
        "test_path": "test_path",
        "X_train": "X_train",
        "Y_train": "Y_train",
        "X_test": "X_test",
        "Y_test": "Y_test",
        "test_size": "test_size",
        "split_seed": "split_seed",
        "standardize": "standardize",
    },
    "network": {
        "hidden": "hidden",
        "activations": "activations",
        "biases": "biases",
        "loss": "loss",
    },
    "init": {"scheme": "init_scheme", "seed": "init_seed", "scale": "init_scale"},
    "train": {
        name: name
        for name in (
            "optimizer",
            "lr",
            "momentum",
            "dampening",
            "nesterov",
            "beta1",
            "beta2",
            "eps",
            "weight_decay",
            "batch_size",
            "batch_seed",
            "steps",
            "dtype",
        )
    },
}
# ``[init] file`` names the NPZ of explicit parameters (kept out of SECTIONS["init"] so that
# the loop over drawn-weight keys stays a loop over drawn-weight keys).
_INIT_FILE_KEY = "file"
_PARAM_NAME = re.compile(r"^[Wb]([1-9][0-9]*)$")

#: Seeds must fit NumPy's legacy generator and scikit-learn's ``random_state``.
_SEED_LIMIT = 2**32

_DATA_SOURCES = ("dataset", "data_path", "X_train")
_DRAWN_INIT = ("init_scheme", "init_seed", "init_scale")
_EXPLICIT_INIT = ("weights", "weights_path")

#: Nested tuples of numbers: a matrix ``((1.0, 2.0), ...)`` or labels ``(0, 2, 1)``.
Table = tuple


@dataclass(frozen=True)
class Recipe:
    """What to train and how. Every default is the backpropagation tutorial's.

    Attributes:
        dataset: A scikit-learn bundled data set (``DATASETS``); ``iris`` unless ``data_path``
            or ``X_train`` gives the data instead.
        data_path: A CSV or NPZ file of features and targets (format in ``compare.data``).
        test_path: A CSV test set laid out like the CSV ``data_path``.
        X_train: Inline training inputs, one tuple per row.
        Y_train: Inline training targets: integer class labels, or a target matrix.
        X_test: Inline test inputs (with ``Y_test``); no split is made then.
        Y_test: Inline test targets, of the same kind as ``Y_train``.
        test_size: Test rows (an int; 0: no test rows) or a fraction in (0, 1), as
            ``train_test_split`` takes it; ignored when an explicit test set is given.
        split_seed: ``random_state`` of ``train_test_split``.
        standardize: Scale each input to zero mean and unit variance (scikit-learn's
            ``StandardScaler`` fitted on the training rows only).
        hidden: Hidden layer widths, input side first; ``(2,)`` is the tutorial's 4-2-3.
        activations: One activation for every layer, or one per layer.
        biases: Whether every layer adds a bias.
        loss: One of ``implementations.contract.LOSSES``.
        init_scheme: How initial weights are drawn (``INIT_SCHEMES``; default ``normal``).
        init_seed: Seed of the one NumPy draw of initial weights (default 10).
        init_scale: The scheme's scale (``DEFAULT_INIT_SCALE``; see ``compare.weights``).
        weights_path: An NPZ file of explicit initial parameters (``W1``, ``b1``, ...).
        weights: Inline explicit initial parameters: ``((name, nested tuple), ...)``; a
            mapping from name to array is accepted and converted.
        optimizer: One of ``implementations.contract.OPTIMIZERS``.
        lr: Learning rate.
        momentum: ``momentum``'s coefficient (default 0.9).
        dampening: ``momentum``'s dampening (default 0).
        nesterov: ``momentum``'s Nesterov form (default off).
        beta1: Adam's first-moment decay (default 0.9).
        beta2: Adam's second-moment decay (default 0.999).
        eps: Adam's epsilon, added outside the square root (default 1e-8).
        weight_decay: L2 coefficient, or ``adamw``'s decoupled decay (``WEIGHT_DECAY_DEFAULT``).
        batch_size: Rows per update; 0 is full-batch training.
        batch_seed: Seed of the minibatch order (``implementations.contract.Batches``).
        steps: Number of updates.
        dtype: The dtype every framework computes in.
    """

    dataset: str | None = None
    data_path: str | None = None
    test_path: str | None = None
    X_train: Table | None = field(default=None, repr=False)
    Y_train: Table | None = field(default=None, repr=False)
    X_test: Table | None = field(default=None, repr=False)
    Y_test: Table | None = field(default=None, repr=False)
    test_size: int | float = 20
    split_seed: int = 4
    standardize: bool = False
    hidden: tuple[int, ...] = (2,)
    activations: tuple[str, ...] = ("sigmoid",)
    biases: bool = False
    loss: str = "half-mse"
    init_scheme: str | None = None
    init_seed: int | None = None
    init_scale: float | None = None
    weights_path: str | None = None
    weights: tuple[tuple[str, Table], ...] | None = field(default=None, repr=False)
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float | None = None
    dampening: float | None = None
    nesterov: bool | None = None
    beta1: float | None = None
    beta2: float | None = None
    eps: float | None = None
    weight_decay: float | None = None
    batch_size: int = 0
    batch_seed: int = 0
    steps: int = 5000
    dtype: str = "float64"

    def __post_init__(self) -> None:
        self._check_data()
        self._check_network()
        self._check_init()
        self._check_train()

    # -- validation, one group of fields at a time ------------------------------------------

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _check_data(self) -> None:
        given = [name for name in _DATA_SOURCES if getattr(self, name) is not None]
        if len(given) > 1:
            raise RecipeError(
                f"give the data one way: {' or '.join(given)}, not both "
                "(dataset, a data file, or inline X_train/Y_train)"
            )
        if not given:
            self._set("dataset", "iris")
        if self.dataset is not None:
            _require(self.dataset in DATASETS, "dataset", self.dataset, _one_of(DATASETS))
        if self.data_path is not None:
            self._set("data_path", _file_name("data file", self.data_path, (".csv", ".npz")))
        if self.test_path is not None:
            self._set("test_path", _file_name("test data file", self.test_path, (".csv",)))
            _require(
                self.data_path is not None and self.data_path.lower().endswith(".csv"),
                "a test data file",
                self.test_path,
                "given with a CSV data file (an NPZ holds its test set as X_test, Y_test; "
                "inline data takes X_test, Y_test)",
            )
        self._set("X_train", _table("X_train", self.X_train, labels=False))
        self._set("Y_train", _table("Y_train", self.Y_train, labels=True))
        self._set("X_test", _table("X_test", self.X_test, labels=False))
        self._set("Y_test", _table("Y_test", self.Y_test, labels=True))
        if (self.X_train is None) != (self.Y_train is None):
            raise RecipeError("inline data needs both X_train and Y_train")
        if (self.X_test is None) != (self.Y_test is None):
            raise RecipeError("an inline test set needs both X_test and Y_test")
        if self.X_test is not None and self.X_train is None:
            raise RecipeError("an inline test set (X_test, Y_test) needs inline X_train, Y_train")
        if self.X_train is not None:
            _check_inline_data(self.X_train, self.Y_train, self.X_test, self.Y_test)
        if _is_int(self.test_size):
            self._set("test_size", int(self.test_size))
            _require(self.test_size >= 0, "test_size", self.test_size, "at least 0 rows")
        else:
            _require(
                _is_real(self.test_size) and 0 < self.test_size < 1,
                "test_size",
                self.test_size,
                "a row count or a fraction in (0, 1)",
            )
            self._set("test_size", float(self.test_size))
        self._set("split_seed", _seed("split_seed", self.split_seed))
        _require(_is_bool(self.standardize), "standardize", self.standardize, "true or false")
        self._set("standardize", bool(self.standardize))

    def _check_network(self) -> None:
        hidden = self.hidden
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = (hidden,)
        _require(
            isinstance(hidden, tuple | list) and all(_is_int(w) and w >= 1 for w in hidden),
            "hidden",
            hidden,
            "a list of positive integer widths",
        )
        self._set("hidden", tuple(int(w) for w in hidden))
        activations = self.activations
        if isinstance(activations, str):
            activations = tuple(a.strip() for a in activations.split(","))
        _require(
            isinstance(activations, tuple | list)
            and len(activations) > 0
            and all(isinstance(a, str) for a in activations),
            "activations",
            activations,
            "a list of activation names",
        )
        self._set("activations", tuple(activations))
        for name in self.activations:
            _require(name in ACTIVATIONS, "activation", name, _one_of(ACTIVATIONS))
        layers = len(self.hidden) + 1
        _require(
            len(self.activations) in (1, layers),
            "activations",
            ",".join(self.activations),
            f"one name for every layer, or one per layer ({layers})",
        )
        _require(_is_bool(self.biases), "biases", self.biases, "true or false")
        self._set("biases", bool(self.biases))
        _require(self.loss in LOSSES, "loss", self.loss, _one_of(LOSSES))
        try:
            # The contract owns the activation/loss rules; widths 1 stand in for the data's.
            self.network(1, 1)
        except ValueError as error:
            raise RecipeError(str(error)) from None

    def _check_init(self) -> None:
        explicit = [name for name in _EXPLICIT_INIT if getattr(self, name) is not None]
        if len(explicit) > 1:
            raise RecipeError("give explicit initial weights one way: a file or inline, not both")
        if explicit:
            drawn = [name for name in _DRAWN_INIT if getattr(self, name) is not None]
            if drawn:
                raise RecipeError(
                    f"explicit initial weights are not drawn, so {drawn[0]} does not apply; "
                    "give either weights or init_scheme/init_seed/init_scale"
                )
            if self.weights_path is not None:
                self._set("weights_path", _file_name("weights file", self.weights_path, (".npz",)))
            else:
                self._set("weights", _inline_weights(self.weights, self.hidden, self.biases))
            return
        scheme = "normal" if self.init_scheme is None else self.init_scheme
        _require(scheme in INIT_SCHEMES, "init_scheme", scheme, _one_of(INIT_SCHEMES))
        self._set("init_scheme", scheme)
        self._set("init_seed", _seed("init_seed", 10 if self.init_seed is None else self.init_seed))
        scale = DEFAULT_INIT_SCALE[scheme] if self.init_scale is None else self.init_scale
        _require(_is_real(scale) and scale > 0, "init_scale", scale, "a positive finite number")
        self._set("init_scale", float(scale))

    def _check_train(self) -> None:
        _require(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, _one_of(OPTIMIZERS))
        _require(_is_real(self.lr) and self.lr > 0, "lr", self.lr, "a positive finite number")
        self._set("lr", float(self.lr))
        for name, (applies_to, default) in OPTIMIZER_SETTINGS.items():
            value = getattr(self, name)
            if self.optimizer not in applies_to:
                if value is not None:
                    raise RecipeError(
                        f"{name} applies to the {' and '.join(applies_to)} optimizer, "
                        f"not {self.optimizer}"
                    )
                continue
            if value is None:
                value = WEIGHT_DECAY_DEFAULT[self.optimizer] if default is None else default
            self._set(name, _optimizer_setting(name, value))
        if self.optimizer == "momentum" and self.nesterov:
            # torch.optim.SGD refuses the same combination.
            _require(
                self.momentum > 0 and self.dampening == 0,
                "nesterov",
                True,
                "used with a positive momentum and zero dampening (torch's rule)",
            )
        _require(
            _is_int(self.batch_size) and self.batch_size >= 0,
            "batch_size",
            self.batch_size,
            "a non-negative integer (0: full batch)",
        )
        self._set("batch_size", int(self.batch_size))
        _require(
            _is_int(self.batch_seed) and self.batch_seed >= 0,
            "batch_seed",
            self.batch_seed,
            "a non-negative integer",
        )
        self._set("batch_seed", int(self.batch_seed))
        _require(_is_int(self.steps) and self.steps >= 1, "steps", self.steps, "a positive integer")
        self._set("steps", int(self.steps))
        _require(self.dtype in DTYPES, "dtype", self.dtype, _one_of(DTYPES))
        if self.dtype == "float16" and self.eps is not None and self.eps < FLOAT16_TINY:
            # Adam divides by sqrt(v) + eps; a second moment that underflows to 0 then divides
            # by (almost) nothing and every framework overflows in its own way.
            raise RecipeError(
                f"eps {self.eps:g} is below float16's smallest normal number ({FLOAT16_TINY:.1e}),"
                " so Adam can divide by zero: give --eps 1e-4 or more, or compute in float32"
            )
        if self.dtype == "float16" and self.loss == "binary-cross-entropy":
            # The contract's derivative (A - Y) / max(A (1 - A), 1e-12) needs a floor float16
            # cannot hold: 1e-12 rounds to 0, so wherever a sigmoid output rounds to exactly 1
            # (z above 8.3) or 0 (z below -17) it divides by zero, and frameworks overflow to inf
            # or NaN each in their own way. torch refuses it too: its amp docs ("Prefer
            # binary_cross_entropy_with_logits over binary_cross_entropy") say that
            # binary_cross_entropy and BCELoss raise an error in autocast regions, because their
            # backward can produce gradients that float16 cannot represent.
            raise RecipeError(
                "binary-cross-entropy cannot be computed in float16: its derivative "
                "(A - Y) / max(A (1 - A), 1e-12) divides by zero wherever a sigmoid output "
                "rounds to 0 or 1 (1e-12 is 0 in float16), and torch's autocast refuses BCELoss "
                "in float16 for that reason; compute in float32 or bfloat16"
            )

    # -- what the recipe builds ---------------------------------------------------------------

    @property
    def explicit_weights(self) -> bool:
        """The initial parameters are given (file or inline), not drawn."""
        return self.weights_path is not None or self.weights is not None

    def network(self, n_inputs: int, n_outputs: int) -> Network:
        """The network this recipe trains on data with the given widths."""
        layers = len(self.hidden) + 1
        activations = self.activations * layers if len(self.activations) == 1 else self.activations
        return Network(
            widths=(n_inputs, *self.hidden, n_outputs),
            activations=activations,
            biases=self.biases,
            loss=self.loss,
        )

    def optimizer_settings(self) -> dict[str, Any]:
        """The optimizer's hyperparameters that apply to it, with the numbers used."""
        settings = {"lr": self.lr}
        for name, (applies_to, _default) in OPTIMIZER_SETTINGS.items():
            if self.optimizer in applies_to:
                settings[name] = getattr(self, name)
        return settings

    def optimizer_rule(self) -> Optimizer:
        """The update rule (``implementations.contract.Optimizer``)."""
        return Optimizer(name=self.optimizer, **self.optimizer_settings())

    def batches(self, n_train_rows: int) -> Batches:
        """The rows of every step, for a training set of ``n_train_rows`` rows."""
        return Batches(rows=int(n_train_rows), size=self.batch_size, seed=self.batch_seed)

    def problem(self, dataset) -> Problem:
        """Everything an implementation needs besides the arrays, for a loaded data set.

        Args:
            dataset: A ``compare.data.Dataset`` (anything with ``X_train`` and ``Y_train``).
        """
        n_rows, n_inputs = np.shape(dataset.X_train)
        return Problem(
            network=self.network(n_inputs, np.shape(dataset.Y_train)[1]),
            optimizer=self.optimizer_rule(),
            dtype=self.dtype,
            batches=self.batches(n_rows),
        )

    # -- changes and files --------------------------------------------------------------------

    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes`` applied, validated like a new recipe.

        Settings that belong to what a change replaces are reset unless given too: a new data
        source drops the old one (and its test set); drawing settings drop explicit weights and
        explicit weights drop drawing settings; another ``init_scheme`` takes its own default
        scale; another ``optimizer`` takes its own defaults for every hyperparameter but ``lr``.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise RecipeError(f"unknown recipe setting {unknown[0]!r}")
        values = {name: getattr(self, name) for name in names}
        resets: set[str] = set()
        if any(changes.get(name) is not None for name in _DATA_SOURCES):
            resets |= {*_DATA_SOURCES, "Y_train", "X_test", "Y_test", "test_path"}
        if any(changes.get(name) is not None for name in _DRAWN_INIT):
            resets |= set(_EXPLICIT_INIT)
        if any(changes.get(name) is not None for name in _EXPLICIT_INIT):
            resets |= {*_DRAWN_INIT, *_EXPLICIT_INIT}
        if changes.get("init_scheme") not in (None, self.init_scheme):
            resets.add("init_scale")
        if changes.get("optimizer") not in (None, self.optimizer):
            resets |= set(OPTIMIZER_SETTINGS)
        for name in resets - set(changes):
            values[name] = None
        values.update(changes)
        return Recipe(**values)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The recipe in the file schema, JSON-ready: ``{"data": ..., "network": ...,
        "init": ..., "train": ...}``, every number the one used (defaults resolved)."""
        data: dict[str, Any] = {}
        for key, name in SECTIONS["data"].items():
            value = getattr(self, name)
            if value is not None:
                data[key] = _plain(value)
        network = {key: _plain(getattr(self, name)) for key, name in SECTIONS["network"].items()}
        if self.weights_path is not None:
            init: dict[str, Any] = {_INIT_FILE_KEY: self.weights_path}
        elif self.weights is not None:
            init = {name: _plain(values) for name, values in self.weights}
        else:
            init = {key: getattr(self, name) for key, name in SECTIONS["init"].items()}
        train = {
            key: getattr(self, name)
            for key, name in SECTIONS["train"].items()
            if getattr(self, name) is not None
        }
        return {"data": data, "network": network, "init": init, "train": train}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Recipe:
        """A recipe from the file schema (``to_dict``'s form); missing keys take defaults.

        Raises:
            RecipeError: an unknown section or key (named), or a bad value.
        """
        if not isinstance(document, Mapping):
            raise RecipeError(f"a recipe must be a table of sections, got {document!r:.60}")
        values: dict[str, Any] = {}
        for section, content in document.items():
            if section not in SECTIONS:
                raise RecipeError(
                    f"unknown recipe section {section!r}; expected {_one_of(tuple(SECTIONS))}"
                )
            if not isinstance(content, Mapping):
                raise RecipeError(f"recipe section [{section}] must be a table of settings")
            for key, value in content.items():
                values.update(_section_value(section, key, value, values))
        return cls(**values)

    def to_toml(self) -> str:
        """The recipe as a TOML recipe file (``load_file`` reads it back to an equal recipe)."""
        lines = []
        for section, settings in self.to_dict().items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in settings.items())
            lines.append("")
        return "\n".join(lines)


def load_file(path: str | os.PathLike) -> Recipe:
    """Read a recipe file: TOML (``.toml``) or JSON (``.json``).

    A JSON report of ``crosscheck run`` is accepted too: its ``recipe`` block is the recipe.
    The files a recipe names (``[data] path``, ``test_path``, ``[init] file``) are taken
    relative to the recipe file's folder.

    Raises:
        RecipeError: the file cannot be read or parsed, or holds a bad recipe.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise RecipeError(f"a recipe file must end in .toml or .json, got {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise RecipeError(f"cannot read recipe file {str(path)!r}: {error.strerror}") from None
    try:
        document = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RecipeError(f"cannot parse recipe file {str(path)!r}: {error}") from None
    if (
        suffix == ".json"
        and isinstance(document, dict)
        and isinstance(document.get("recipe"), dict)
    ):
        document = document["recipe"]
    if not isinstance(document, dict):
        raise RecipeError(f"recipe file {str(path)!r} must hold a table of sections")
    resolve_paths(document, path.resolve().parent)
    try:
        return Recipe.from_dict(document)
    except RecipeError as error:
        raise RecipeError(f"{path.name}: {error}") from None


def resolve_paths(document: dict, folder: Path) -> None:
    """Make the files a recipe document names (``[data] path``, ``test_path``, ``[init] file``)
    absolute, relative to ``folder`` (the recipe file's): in place."""
    for section, key in (("data", "path"), ("data", "test_path"), ("init", _INIT_FILE_KEY)):
        content = document.get(section)
        if isinstance(content, dict) and isinstance(content.get(key), str) and content[key]:
            content[key] = os.path.normpath(folder / Path(content[key]).expanduser())


# -- helpers ----------------------------------------------------------------------------------


def _section_value(section: str, key: str, value: Any, values: dict[str, Any]) -> dict[str, Any]:
    """The ``Recipe`` field(s) one file key sets."""
    if section == "init":
        if key == _INIT_FILE_KEY:
            return {"weights_path": value}
        if _PARAM_NAME.match(key):
            weights = dict(values.get("weights") or {})
            weights[key] = value
            return {"weights": weights}
    name = SECTIONS[section].get(key)
    if name is None:
        home = [other for other, keys in SECTIONS.items() if key in keys]
        hint = f" (it belongs in [{home[0]}])" if home else ""
        raise RecipeError(f"unknown key {key!r} in [{section}]{hint}")
    return {name: value}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _one_of(choices: tuple[str, ...]) -> str:
    return "one of " + ", ".join(choices)


def _require(ok: bool, what: str, value: Any, expected: str) -> None:
    if not ok:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise RecipeError(f"{what} must be {expected}, got {shown}")


def _seed(what: str, value: Any) -> int:
    _require(_is_int(value) and 0 <= value < _SEED_LIMIT, what, value, "an integer in [0, 2**32)")
    return int(value)


def _file_name(what: str, value: Any, suffixes: tuple[str, ...]) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    _require(isinstance(value, str) and value.strip() != "", what, value, "a file name")
    _require(value.lower().endswith(suffixes), what, value, f"a {' or '.join(suffixes)} file")
    return value


def _optimizer_setting(name: str, value: Any) -> float | bool:
    if name == "nesterov":
        _require(_is_bool(value), name, value, "true or false")
        return bool(value)
    if name == "eps":
        _require(_is_real(value) and value > 0, name, value, "a positive finite number")
    elif name == "weight_decay":
        _require(_is_real(value) and value >= 0, name, value, "a non-negative finite number")
    elif name == "dampening":
        _require(_is_real(value) and 0 <= value <= 1, name, value, "a number in [0, 1]")
    else:  # momentum, beta1, beta2: torch accepts [0, 1); 1 would never forget.
        _require(_is_real(value) and 0 <= value < 1, name, value, "a number in [0, 1)")
    return float(value)


def _table(what: str, value: Any, labels: bool) -> Table | None:
    """Inline array -> nested tuples (hashable, JSON-ready), refusing what cannot train."""
    if value is None:
        return None
    try:
        array = np.asarray(value)
    except ValueError:
        array = np.asarray([], dtype=object)
    if array.dtype.kind not in "iuf" or array.size == 0:
        raise RecipeError(f"{what} must be a non-empty rectangular table of numbers")
    if array.ndim == 1 and labels:
        if array.dtype.kind == "f":
            raise RecipeError(
                f"a flat {what} holds class labels, which must be integers; give a target "
                "matrix (one list per row) for real-valued targets"
            )
        if array.min() < 0:
            raise RecipeError(f"{what} class labels must be non-negative, got {int(array.min())}")
        return tuple(int(v) for v in array)
    if array.ndim != 2:
        expected = "a list of rows, or a list of integer labels" if labels else "a list of rows"
        raise RecipeError(f"{what} must be {expected}, got {array.ndim} dimensions")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise RecipeError(f"{what} must hold finite numbers only (no NaN or inf)")
    return tuple(tuple(float(v) for v in row) for row in array)


def _check_inline_data(X_train: Table, Y_train: Table, X_test: Table | None, Y_test) -> None:
    if len(X_train) != len(Y_train):
        raise RecipeError(f"X_train has {len(X_train)} rows but Y_train has {len(Y_train)}")
    if X_test is None:
        return
    if len(X_test) != len(Y_test):
        raise RecipeError(f"X_test has {len(X_test)} rows but Y_test has {len(Y_test)}")
    if len(X_test[0]) != len(X_train[0]):
        raise RecipeError(f"X_test has {len(X_test[0])} columns but X_train has {len(X_train[0])}")
    train_labels, test_labels = not isinstance(Y_train[0], tuple), not isinstance(Y_test[0], tuple)
    if train_labels != test_labels:
        raise RecipeError("Y_train and Y_test must both be labels or both target matrices")
    if not train_labels and len(Y_test[0]) != len(Y_train[0]):
        raise RecipeError(f"Y_test has {len(Y_test[0])} columns but Y_train has {len(Y_train[0])}")


def _inline_weights(weights: Any, hidden: tuple[int, ...], biases: bool) -> tuple:
    """Inline explicit parameters -> ``((name, nested tuple), ...)`` in layer order.

    Checks what is known before the data is: names, and every width but the data's input and
    output widths (``compare.weights`` checks the rest once the data is loaded).
    """
    if isinstance(weights, Mapping):
        pairs = list(weights.items())
    elif isinstance(weights, tuple | list) and all(
        isinstance(pair, tuple | list) and len(pair) == 2 for pair in weights
    ):
        pairs = [tuple(pair) for pair in weights]
    else:
        raise RecipeError("weights must map parameter names (W1, b1, ...) to arrays")
    layers = len(hidden) + 1
    checked = {}
    for name, values in pairs:
        match = _PARAM_NAME.match(str(name))
        if not match or int(match.group(1)) > layers:
            names = ", ".join(f"W{layer}" for layer in range(1, layers + 1))
            raise RecipeError(f"unknown initial parameter {name!r}; this network has {names}")
        if name.startswith("b") and not biases:
            raise RecipeError(f"initial {name} given but the recipe has no biases (set biases)")
        array = np.asarray(_table(name, values, labels=False) if name[0] == "W" else values)
        if name[0] == "b":
            _require(
                array.ndim == 1 and array.dtype.kind in "iuf" and array.size > 0,
                name,
                values,
                "a list of numbers",
            )
            _require(bool(np.all(np.isfinite(array))), name, values, "finite numbers")
        layer = int(match.group(1))
        fan_in = hidden[layer - 2] if layer > 1 else None
        fan_out = hidden[layer - 1] if layer <= len(hidden) else None
        expected = (fan_in, fan_out) if name[0] == "W" else (fan_out,)
        for got, want in zip(array.shape, expected, strict=True):
            if want is not None and got != want:
                shape = ", ".join("?" if w is None else str(w) for w in expected)
                shape += "," if len(expected) == 1 else ""
                raise RecipeError(f"{name} must be shaped ({shape}), got {array.shape}")
        checked[name] = (
            tuple(float(v) for v in array) if name[0] == "b" else _table(name, array, labels=False)
        )
    missing = [f"W{layer}" for layer in range(1, layers + 1) if f"W{layer}" not in checked]
    if missing:
        raise RecipeError(f"explicit initial weights lack {missing[0]}")
    order = [f"{kind}{layer}" for layer in range(1, layers + 1) for kind in "Wb"]
    return tuple((name, checked[name]) for name in order if name in checked)


def _plain(value: Any) -> Any:
    """Nested tuples -> nested lists (JSON and TOML have lists)."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string literal is a valid TOML basic string.
        return json.dumps(value)
    return "[" + ", ".join(_toml_value(item) for item in value) + "]"
