"""The recipe options every command that trains takes, and the recipe they describe.

``add_recipe_options`` adds one option per recipe setting plus ``--recipe FILE``;
``recipe_from_args`` builds the ``Recipe``: the file's values (or the tutorial's defaults),
then only the options the user actually typed. Every option defaults to ``None`` so that a
typed value, even one equal to the default, is told apart from an absent one.

Argument types only parse (and refuse non-finite numbers); ``compare.recipe`` owns every rule
about which values are allowed, so a rule reads the same from the command line as from a file.
Imports nothing heavier than NumPy: the parser is built before anything slow starts.
"""

from __future__ import annotations

import argparse
import math

from compare.recipe import DATASETS, INIT_SCHEMES, Recipe, load_file
from implementations.contract import ACTIVATIONS, DTYPES, LOSSES, OPTIMIZERS

#: argparse destination -> ``Recipe`` field, for every option that sets one.
OPTION_FIELDS = {
    "dataset": "dataset",
    "data_path": "data_path",
    "test_path": "test_path",
    "test_size": "test_size",
    "split_seed": "split_seed",
    "standardize": "standardize",
    "hidden": "hidden",
    "activations": "activations",
    "biases": "biases",
    "loss": "loss",
    "init_scheme": "init_scheme",
    "init_seed": "init_seed",
    "init_scale": "init_scale",
    "weights_path": "weights_path",
    "optimizer": "optimizer",
    "lr": "lr",
    "momentum": "momentum",
    "dampening": "dampening",
    "nesterov": "nesterov",
    "beta1": "beta1",
    "beta2": "beta2",
    "eps": "eps",
    "weight_decay": "weight_decay",
    "batch_size": "batch_size",
    "batch_seed": "batch_seed",
    "steps": "steps",
    "dtype": "dtype",
}


def finite_float(text: str) -> float:
    """A finite number (``nan`` and ``inf`` refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def whole_number(text: str) -> int:
    """An integer, written without a fraction."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def rows_or_fraction(text: str) -> int | float:
    """A row count (``20``) or a fraction (``0.2``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(
            f"test size must be a row count or a fraction in (0, 1), got {text!r}"
        )
    return value


def widths(text: str) -> tuple[int, ...]:
    """``8`` or ``5,5``; ``none`` (or nothing) for no hidden layer."""
    if text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"hidden widths must be whole numbers separated by commas, got {text!r}"
        ) from None


def names(text: str) -> tuple[str, ...]:
    """``relu,identity`` -> ``("relu", "identity")`` (the recipe checks each name)."""
    return tuple(item.strip() for item in text.split(","))


def file_name(text: str) -> str:
    """A file name (not empty)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a file name, got an empty one")
    return text


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--recipe FILE`` and one option per recipe setting; help shows the defaults."""
    tutorial = Recipe()
    group = parser.add_argument_group(
        "recipe (defaults: the tutorial's; --recipe FILE, then the options given override it)"
    )
    group.add_argument(
        "--recipe",
        dest="recipe_file",
        type=file_name,
        metavar="FILE",
        help="a recipe file (.toml or .json; a JSON report's recipe block works too)",
    )
    group.add_argument(
        "--dataset",
        choices=DATASETS,
        help=f"scikit-learn bundled data set (default: {tutorial.dataset})",
    )
    group.add_argument(
        "--data",
        dest="data_path",
        type=file_name,
        metavar="FILE",
        help="your own data: a CSV (inputs, then a label column, or a header with 'label' or "
        "'target...' columns) or an NPZ (X_train, Y_train[, X_test, Y_test])",
    )
    group.add_argument(
        "--test-data",
        dest="test_path",
        type=file_name,
        metavar="FILE",
        help="an explicit CSV test set laid out like --data (no split is made then)",
    )
    group.add_argument(
        "--test-size",
        type=rows_or_fraction,
        help=f"test rows, or a fraction in (0, 1); 0: no test rows (default: {tutorial.test_size})",
    )
    group.add_argument(
        "--split-seed",
        type=whole_number,
        help=f"train_test_split random_state (default: {tutorial.split_seed})",
    )
    group.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        help="scale every input to zero mean, unit variance, fitted on the training rows "
        "(default: off)",
    )
    group.add_argument(
        "--hidden",
        type=widths,
        metavar="W[,W...]",
        help="hidden layer widths, e.g. 8 or 5,5, or none (default: 2)",
    )
    group.add_argument(
        "--activation",
        dest="activations",
        type=names,
        metavar="NAME[,NAME...]",
        help=f"one of {', '.join(ACTIVATIONS)} for every layer, or one per layer "
        f"(default: {','.join(tutorial.activations)})",
    )
    group.add_argument(
        "--biases",
        action=argparse.BooleanOptionalAction,
        help="give every layer a bias (default: off)",
    )
    group.add_argument("--loss", choices=LOSSES, help=f"the loss (default: {tutorial.loss})")
    group.add_argument(
        "--init-scheme",
        choices=INIT_SCHEMES,
        help=f"how the initial weights are drawn (default: {tutorial.init_scheme})",
    )
    group.add_argument(
        "--init-seed",
        type=whole_number,
        help=f"seed of the one NumPy draw of initial weights (default: {tutorial.init_seed})",
    )
    group.add_argument(
        "--init-scale",
        type=finite_float,
        help="normal: standard deviation; uniform: limit; glorot, he, lecun: gain "
        f"(default: {tutorial.init_scale} for normal and uniform, 1 for the others)",
    )
    group.add_argument(
        "--weights",
        dest="weights_path",
        type=file_name,
        metavar="FILE.npz",
        help="explicit initial parameters W1, b1, ... shaped (in, out) and (out,) "
        "(missing biases are zero)",
    )
    group.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help=f"the update rule, torch's formulas (default: {tutorial.optimizer})",
    )
    group.add_argument("--lr", type=finite_float, help=f"learning rate (default: {tutorial.lr})")
    group.add_argument(
        "--momentum", type=finite_float, help="momentum's coefficient (default: 0.9)"
    )
    group.add_argument("--dampening", type=finite_float, help="momentum's dampening (default: 0)")
    group.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        help="momentum's Nesterov form (default: off)",
    )
    group.add_argument("--beta1", type=finite_float, help="adam's beta1 (default: 0.9)")
    group.add_argument("--beta2", type=finite_float, help="adam's beta2 (default: 0.999)")
    group.add_argument(
        "--eps", type=finite_float, help="adam's epsilon, outside the square root (default: 1e-8)"
    )
    group.add_argument(
        "--weight-decay",
        type=finite_float,
        help="L2 decay, or adamw's decoupled decay (default: 0; adamw: 0.01, torch's)",
    )
    group.add_argument(
        "--batch-size",
        type=whole_number,
        help="rows per update; 0: the full batch (default: 0)",
    )
    group.add_argument(
        "--batch-seed",
        type=whole_number,
        help=f"seed of the minibatch order (default: {tutorial.batch_seed})",
    )
    group.add_argument("--steps", type=whole_number, help=f"updates (default: {tutorial.steps})")
    group.add_argument(
        "--dtype",
        choices=DTYPES,
        help=f"dtype every framework computes in (default: {tutorial.dtype})",
    )


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The recipe the parsed options describe: ``--recipe``'s file (or the tutorial), then
    every option the user typed, applied with ``Recipe.replace`` (so ``--data`` replaces a
    file's ``dataset``, ``--optimizer adamw`` takes adamw's defaults, and so on).

    Raises:
        RecipeError: the file cannot be read, or the result cannot train (one line).
    """
    recipe_file = getattr(args, "recipe_file", None)
    recipe = load_file(recipe_file) if recipe_file is not None else Recipe()
    typed = typed_settings(args)
    return recipe.replace(**typed) if typed else recipe


def typed_settings(args: argparse.Namespace) -> dict[str, object]:
    """The recipe settings the user typed (``Recipe`` field -> value); ``--recipe`` excluded."""
    return {
        field: getattr(args, dest)
        for dest, field in OPTION_FIELDS.items()
        if getattr(args, dest, None) is not None
    }
