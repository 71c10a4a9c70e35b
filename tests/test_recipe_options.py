"""The recipe options of the command line: every option reaches its setting, a recipe file's
values hold unless an option is typed, and bad numbers are refused with one line."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from compare.cli.recipe_options import (
    OPTION_FIELDS,
    add_recipe_options,
    recipe_from_args,
    typed_settings,
)
from compare.recipe import Recipe, RecipeError, load_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class Refused(Exception):
    """What the test parser raises instead of printing usage and exiting."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        raise Refused(message)


def parse(*argv: str) -> argparse.Namespace:
    parser = Parser()
    add_recipe_options(parser)
    return parser.parse_args(argv)


def recipe(*argv: str) -> Recipe:
    return recipe_from_args(parse(*argv))


def test_no_option_is_the_tutorial():
    assert recipe() == Recipe()
    assert typed_settings(parse()) == {}
    assert typed_settings(parse("--steps", "5000", "--no-biases", "--recipe", "r.toml")) == {
        "steps": 5000,
        "biases": False,
    }, "typed values, even the defaults, and only them"


def test_every_recipe_setting_but_the_inline_arrays_has_an_option():
    inline = {"X_train", "Y_train", "X_test", "Y_test", "weights"}
    settings = {field.name for field in dataclasses.fields(Recipe)} - inline
    assert settings == set(OPTION_FIELDS.values())


@pytest.mark.parametrize(
    ("argv", "setting", "value"),
    [
        (["--dataset", "wine"], "dataset", "wine"),
        (["--data", "my.csv"], "data_path", "my.csv"),
        (["--data", "my.csv", "--test-data", "t.csv"], "test_path", "t.csv"),
        (["--test-size", "30"], "test_size", 30),
        (["--test-size", "0.25"], "test_size", 0.25),
        (["--test-size", "0"], "test_size", 0),
        (["--split-seed", "5"], "split_seed", 5),
        (["--standardize"], "standardize", True),
        (["--hidden", "5,4"], "hidden", (5, 4)),
        (["--hidden", "none"], "hidden", ()),
        (["--activation", "relu,identity"], "activations", ("relu", "identity")),
        (["--activation", "tanh"], "activations", ("tanh",)),
        (["--biases"], "biases", True),
        (["--loss", "mse"], "loss", "mse"),
        (["--init-scheme", "he"], "init_scheme", "he"),
        (["--init-seed", "3"], "init_seed", 3),
        (["--init-scale", "0.25"], "init_scale", 0.25),
        (["--weights", "w.npz"], "weights_path", "w.npz"),
        (["--optimizer", "adam"], "optimizer", "adam"),
        (["--lr", "0.01"], "lr", 0.01),
        (["--optimizer", "momentum", "--momentum", "0.5"], "momentum", 0.5),
        (["--optimizer", "momentum", "--dampening", "0.1"], "dampening", 0.1),
        (["--optimizer", "momentum", "--nesterov"], "nesterov", True),
        (["--optimizer", "adam", "--beta1", "0.8"], "beta1", 0.8),
        (["--optimizer", "adam", "--beta2", "0.99"], "beta2", 0.99),
        (["--optimizer", "adam", "--eps", "1e-6"], "eps", 1e-6),
        (["--weight-decay", "0.001"], "weight_decay", 0.001),
        (["--batch-size", "16"], "batch_size", 16),
        (["--batch-seed", "2"], "batch_seed", 2),
        (["--steps", "7"], "steps", 7),
        (["--dtype", "float32"], "dtype", "float32"),
    ],
)
def test_each_option_sets_its_setting(argv, setting, value):
    got = getattr(recipe(*argv), setting)
    assert got == value and type(got) is type(value), f"{argv} gave {setting}={got!r}"


def test_the_done_means_command_is_the_digits_example():
    command = (
        "--dataset digits --standardize --hidden 32 --activation relu,identity --biases "
        "--loss cross-entropy --optimizer adam --lr 0.01 --batch-size 64 --steps 300"
    )
    typed = recipe(*command.split())
    assert typed == load_file(EXAMPLES / "digits-relu-adam.toml")


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_typed_options_beat_the_file_and_the_rest_of_the_file_holds(tmp_path):
    path = write(
        tmp_path / "r.toml",
        "[data]\nsplit_seed = 7\nstandardize = true\n[network]\nbiases = true\n"
        "[train]\nsteps = 10\nlr = 0.5\n",
    )
    from_file = recipe("--recipe", path)
    assert (from_file.steps, from_file.lr, from_file.split_seed) == (10, 0.5, 7)
    overridden = recipe("--recipe", path, "--steps", "5000", "--no-biases", "--split-seed", "4")
    assert overridden.steps == 5000, "a typed value equal to the default must still win"
    assert overridden.biases is False and overridden.split_seed == 4
    assert (overridden.lr, overridden.standardize) == (0.5, True), "untyped file values hold"


def test_a_typed_data_source_or_init_replaces_the_files(tmp_path):
    path = write(
        tmp_path / "r.toml",
        "[data]\nX_train = [[0.0, 1.0]]\nY_train = [[1.0]]\ntest_size = 0\n"
        "[init]\nW1 = [[1.0, 1.0], [1.0, 1.0]]\nW2 = [[1.0], [1.0]]\n"
        "[train]\noptimizer = 'adam'\nbeta1 = 0.8\n",
    )
    typed = recipe(
        "--recipe", path, "--dataset", "wine", "--init-seed", "3", "--optimizer", "momentum"
    )
    assert typed.dataset == "wine" and typed.X_train is None
    assert typed.weights is None and (typed.init_scheme, typed.init_seed) == ("normal", 3)
    assert typed.beta1 is None and typed.momentum == 0.9, "momentum's own defaults"
    kept = recipe("--recipe", path, "--lr", "0.01")
    assert kept.beta1 == 0.8 and kept.weights is not None and kept.X_train is not None
    with pytest.raises(RecipeError, match="give the data one way"):
        recipe("--dataset", "wine", "--data", "my.csv")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--lr", "nan"], "expected a finite number, got 'nan'"),
        (["--lr", "inf"], "expected a finite number, got 'inf'"),
        (["--init-scale=-inf"], "expected a finite number"),
        (["--momentum", "NaN"], "expected a finite number"),
        (["--weight-decay", "x"], "expected a number, got 'x'"),
        (["--test-size", "nan"], "a row count or a fraction"),
        (["--steps", "1.5"], "expected a whole number, got '1.5'"),
        (["--hidden", "2,x"], "whole numbers separated by commas"),
        (["--data", ""], "needs a file name"),
        (["--dataset", "mnist"], "invalid choice"),
        (["--optimizer", "rmsprop"], "invalid choice"),
    ],
)
def test_a_bad_option_is_refused_by_the_parser_with_one_line(argv, expected):
    with pytest.raises(Refused) as caught:
        parse(*argv)
    assert expected in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--steps", "0"], "steps must be a positive integer, got 0"),
        (["--lr", "-1"], "lr must be a positive finite number"),
        (["--activation", "softmax"], "activation must be one of"),
        (["--momentum", "0.9"], "momentum applies to the momentum optimizer, not sgd"),
        (["--loss", "cross-entropy"], "output activation must be identity"),
        (["--recipe", "nowhere.toml"], "cannot read recipe file"),
    ],
)
def test_a_value_the_recipe_refuses_is_one_recipe_error_line(argv, expected):
    with pytest.raises(RecipeError) as caught:
        recipe(*argv)
    assert expected in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_importing_the_options_imports_no_heavy_library():
    code = (
        "import sys, compare.cli.recipe_options; "
        "print(sorted(m for m in ('sklearn', 'torch', 'jax', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
