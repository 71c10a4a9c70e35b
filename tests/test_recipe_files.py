"""Recipe files: TOML and JSON, relative paths, round trips, and the shipped examples."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from compare import data, weights
from compare.recipe import Recipe, RecipeError, load_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

VARIED = [
    Recipe(),
    Recipe(
        dataset="digits",
        standardize=True,
        hidden=(32,),
        activations=("relu", "identity"),
        biases=True,
        loss="cross-entropy",
        optimizer="adam",
        lr=0.01,
        batch_size=64,
        steps=300,
    ),
    Recipe(test_size=0.25, init_scheme="glorot", optimizer="momentum", nesterov=True, lr=1e-3),
    Recipe(optimizer="adamw", eps=1e-7, dtype="bfloat16", hidden=(), split_seed=0),
    Recipe(
        X_train=[[0.1 + 0.2, -1e-300], [3.0, 4.5e10]],
        Y_train=[[0.01, 0.99], [0.5, 0.5]],
        X_test=[[1.0, 2.0]],
        Y_test=[[0.0, 1.0]],
        weights={"W1": [[0.15, 0.25], [0.2, 0.3]], "W2": [[1.0, 2.0], [3.0, 4.0]]},
        loss="half-sse",
    ),
    Recipe(data_path="/data/my.csv", test_path="/data/test.csv", weights_path="/w/init.npz"),
]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("recipe", VARIED, ids=range(len(VARIED)))
def test_toml_and_json_files_read_back_to_the_same_recipe(recipe, tmp_path):
    toml_file = write(tmp_path / "r.toml", recipe.to_toml())
    assert tomllib.loads(recipe.to_toml()) == recipe.to_dict()
    assert load_file(toml_file) == recipe
    json_file = write(tmp_path / "r.json", json.dumps(recipe.to_dict()))
    assert load_file(json_file) == recipe


def test_a_reports_recipe_block_is_a_recipe_file(tmp_path):
    recipe = VARIED[1]
    report = {"schema": "crosscheck-report/2", "verdict": "pass", "recipe": recipe.to_dict()}
    assert load_file(write(tmp_path / "report.json", json.dumps(report))) == recipe


def test_files_a_recipe_names_are_found_beside_it_from_any_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    write(folder / "data" / "train.csv", "x1,x2,label\n0,1,0\n1,0,1\n1,1,1\n0,0,0\n")
    write(folder / "data" / "test.csv", "x1,x2,label\n0.5,0.5,1\n")
    np.savez(folder / "init.npz", W1=np.ones((2, 3)), W2=np.ones((3, 2)))
    recipe_file = write(
        folder / "recipes" / "mine.toml",
        '[data]\npath = "../data/train.csv"\ntest_path = "../data/test.csv"\n'
        '[network]\nhidden = [3]\n[init]\nfile = "../init.npz"\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_file(Path("..") / "project" / "recipes" / "mine.toml")
    assert Path(recipe.data_path) == (folder / "data" / "train.csv").resolve()
    assert Path(recipe.test_path) == (folder / "data" / "test.csv").resolve()
    assert Path(recipe.weights_path) == (folder / "init.npz").resolve()
    dataset = data.load(recipe)
    assert dataset.X_train.shape == (4, 2) and dataset.X_test.shape == (1, 2)
    params = weights.initial_params(recipe, recipe.problem(dataset).network)
    np.testing.assert_array_equal(params["W1"], np.ones((2, 3)))
    assert load_file(recipe_file) == recipe


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("r.yaml", "", "must end in .toml or .json"),
        ("r.toml", "[train\nsteps = 3", "cannot parse recipe file"),
        ("r.json", "{", "cannot parse recipe file"),
        ("r.json", "[1, 2]", "must hold a table of sections"),
        ("r.toml", "[train]\nsteps = 0\n", "r.toml: steps must be a positive integer, got 0"),
        ("r.toml", "[train]\nlr = nan\n", "r.toml: lr must be a positive finite number"),
        ("r.toml", "[network]\nlr = 0.1\n", "unknown key 'lr' in [network]"),
        ("r.toml", "[model]\n", "unknown recipe section 'model'"),
    ],
)
def test_a_bad_file_is_refused_with_one_line(tmp_path, name, text, expected):
    path = write(tmp_path / name, text)
    with pytest.raises(RecipeError) as caught:
        load_file(path)
    assert expected in str(caught.value) and "\n" not in str(caught.value), str(caught.value)


def test_a_missing_file_is_refused_with_one_line(tmp_path):
    with pytest.raises(RecipeError, match=r"cannot read recipe file .*missing\.toml"):
        load_file(tmp_path / "missing.toml")


def test_the_tutorial_example_is_the_default_recipe():
    assert load_file(EXAMPLES / "tutorial.toml") == Recipe()


def test_the_digits_example_is_the_done_means_command():
    expected = Recipe(
        dataset="digits",
        standardize=True,
        hidden=(32,),
        activations=("relu", "identity"),
        biases=True,
        loss="cross-entropy",
        optimizer="adam",
        lr=0.01,
        batch_size=64,
        steps=300,
    )
    assert load_file(EXAMPLES / "digits-relu-adam.toml") == expected


def test_the_wine_example_uses_tanh_and_momentum():
    recipe = load_file(EXAMPLES / "wine-tanh-momentum.toml")
    assert recipe.dataset == "wine" and recipe.standardize
    assert recipe.activations[0] == "tanh" and recipe.optimizer == "momentum"
    assert recipe.nesterov and recipe.init_scheme == "glorot"


def test_the_inline_example_is_mazurs_worked_example():
    recipe = load_file(EXAMPLES / "mazur-inline.toml")
    dataset = data.load(recipe)
    network = recipe.problem(dataset).network
    params = weights.initial_params(recipe, network)
    assert network.widths == (2, 2, 2) and network.biases and network.loss == "half-sse"
    assert not dataset.classification, "targets 0.01, 0.99 are regression targets"

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    hidden = sigmoid(dataset.X_train @ params["W1"] + params["b1"])
    output = sigmoid(hidden @ params["W2"] + params["b2"])
    np.testing.assert_allclose(hidden, [[0.593269992, 0.596884378]], rtol=1e-9)
    np.testing.assert_allclose(output, [[0.75136507, 0.772928465]], rtol=1e-8)
    total_error = np.sum((output - dataset.Y_train) ** 2) / 2
    assert total_error == pytest.approx(0.298371109, rel=1e-9), "Mazur's E_total"
