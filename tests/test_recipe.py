"""The recipe: every setting validated (one-line refusals), defaults resolved, dict round trips,
``replace`` and the contract objects it builds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from compare.recipe import Recipe, RecipeError
from implementations.contract import Batches, Network, Optimizer

INLINE = {"X_train": [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], "Y_train": [0, 1, 1]}
MAZUR_WEIGHTS = {
    "W1": [[0.15, 0.25], [0.20, 0.30]],
    "b1": [0.35, 0.35],
    "W2": [[0.40, 0.50], [0.45, 0.55]],
    "b2": [0.60, 0.60],
}


def refusal(**settings) -> str:
    """The one line a recipe with ``settings`` is refused with."""
    with pytest.raises(RecipeError) as caught:
        Recipe(**settings)
    message = str(caught.value)
    assert "\n" not in message and message, f"not one line: {message!r}"
    return message


def test_defaults_are_the_tutorials():
    recipe = Recipe()
    assert (recipe.dataset, recipe.test_size, recipe.split_seed, recipe.standardize) == (
        "iris",
        20,
        4,
        False,
    )
    assert recipe.hidden == (2,) and recipe.activations == ("sigmoid",)
    assert (recipe.biases, recipe.loss) == (False, "half-mse")
    assert (recipe.init_scheme, recipe.init_seed, recipe.init_scale) == ("normal", 10, 0.5)
    assert (recipe.optimizer, recipe.lr, recipe.weight_decay) == ("sgd", 0.1, 0.0)
    assert (recipe.batch_size, recipe.steps, recipe.dtype) == (0, 5000, "float64")
    assert recipe.network(4, 3) == Network((4, 2, 3), ("sigmoid", "sigmoid"), False, "half-mse")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"dataset": "mnist"}, "dataset must be one of iris, wine"),
        ({"dataset": "iris", "data_path": "a.csv"}, "give the data one way"),
        ({"data_path": "a.csv", **INLINE}, "give the data one way"),
        ({"data_path": "a.txt"}, "a .csv or .npz file"),
        ({"data_path": "  "}, "a file name"),
        ({"test_path": "t.csv"}, "given with a CSV data file"),
        ({"data_path": "a.npz", "test_path": "t.csv"}, "given with a CSV data file"),
        ({"data_path": "a.csv", "test_path": "t.npz"}, "a .csv file"),
        ({"X_train": [[1.0]]}, "needs both X_train and Y_train"),
        ({"X_train": [[1.0, 2.0], [3.0]], "Y_train": [0, 1]}, "rectangular table of numbers"),
        ({"X_train": [[1.0, math.nan]], "Y_train": [0]}, "finite numbers only"),
        ({"X_train": [["a", "b"]], "Y_train": [0]}, "rectangular table of numbers"),
        ({"X_train": [], "Y_train": []}, "non-empty"),
        ({"X_train": [1.0, 2.0], "Y_train": [0, 1]}, "a list of rows"),
        ({"X_train": [[1.0], [2.0]], "Y_train": [0.0, 1.0]}, "labels, which must be integers"),
        ({"X_train": [[1.0], [2.0]], "Y_train": [0, -1]}, "must be non-negative"),
        ({"X_train": [[1.0], [2.0]], "Y_train": [0]}, "X_train has 2 rows but Y_train has 1"),
        ({**INLINE, "X_test": [[1.0, 1.0]]}, "needs both X_test and Y_test"),
        ({**INLINE, "X_test": [[1.0]], "Y_test": [0]}, "X_test has 1 columns but X_train has 2"),
        ({**INLINE, "X_test": [[1.0, 1.0], [0.0, 0.0]], "Y_test": [0]}, "X_test has 2 rows"),
        (
            {**INLINE, "X_test": [[1.0, 1.0]], "Y_test": [[0.0, 1.0]]},
            "both be labels or both target",
        ),
        (
            {"X_train": [[1.0]], "Y_train": [[1.0, 0.0]], "X_test": [[1.0]], "Y_test": [[1.0]]},
            "Y_test has 1 columns but Y_train has 2",
        ),
        ({"X_test": [[1.0]], "Y_test": [0]}, "needs inline X_train"),
        ({"test_size": -1}, "test_size must be at least 0 rows"),
        ({"test_size": 1.5}, "a row count or a fraction in (0, 1)"),
        ({"test_size": 0.0}, "a row count or a fraction in (0, 1)"),
        ({"test_size": math.nan}, "a row count or a fraction"),
        ({"test_size": True}, "a row count or a fraction"),
        ({"test_size": "20"}, "a row count or a fraction"),
        ({"split_seed": -1}, "split_seed must be an integer in [0, 2**32)"),
        ({"split_seed": 2**32}, "split_seed must be an integer in [0, 2**32)"),
        ({"split_seed": 4.0}, "split_seed must be an integer"),
        ({"split_seed": True}, "split_seed must be an integer"),
        ({"standardize": "yes"}, "standardize must be true or false"),
        ({"standardize": 1}, "standardize must be true or false"),
        ({"hidden": (0,)}, "hidden must be a list of positive integer widths"),
        ({"hidden": (-2,)}, "hidden must be a list of positive integer widths"),
        ({"hidden": (2.5,)}, "hidden must be a list of positive integer widths"),
        ({"hidden": "2"}, "hidden must be a list of positive integer widths"),
        ({"activations": ("softmax",)}, "activation must be one of sigmoid, tanh"),
        ({"activations": ()}, "activations must be a list of activation names"),
        ({"activations": ("relu", "relu", "relu")}, "one per layer (2)"),
        ({"biases": 1}, "biases must be true or false"),
        ({"loss": "hinge"}, "loss must be one of half-mse"),
        ({"loss": "cross-entropy"}, "output activation must be identity, not sigmoid"),
        (
            {"loss": "binary-cross-entropy", "activations": ("relu", "identity")},
            "output activation must be sigmoid, not identity",
        ),
        ({"init_scheme": "xavier"}, "init_scheme must be one of normal, uniform"),
        ({"init_seed": -1}, "init_seed must be an integer in [0, 2**32)"),
        ({"init_seed": 2**32}, "init_seed must be an integer in [0, 2**32)"),
        ({"init_seed": 10.0}, "init_seed must be an integer"),
        ({"init_scale": 0.0}, "init_scale must be a positive finite number"),
        ({"init_scale": -0.5}, "init_scale must be a positive finite number"),
        ({"init_scale": math.nan}, "init_scale must be a positive finite number"),
        ({"init_scale": math.inf}, "init_scale must be a positive finite number"),
        ({"weights_path": "w.txt"}, "weights file must be a .npz file"),
        ({"weights_path": "w.npz", "init_seed": 3}, "init_seed does not apply"),
        ({"weights_path": "w.npz", "init_scheme": "he"}, "init_scheme does not apply"),
        ({"weights_path": "w.npz", "weights": {"W1": [[1.0]]}}, "a file or inline, not both"),
        ({"weights": {"W1": [[1.0, 1.0]], "W3": [[1.0]]}}, "unknown initial parameter 'W3'"),
        ({"weights": {"V1": [[1.0]]}}, "unknown initial parameter 'V1'"),
        ({"weights": {"W1": [[1.0, 1.0]], "W2": [[1.0], [1.0]], "b1": [0.0, 0.0]}}, "no biases"),
        ({"weights": {"W1": [[1.0, 1.0]]}}, "lack W2"),
        ({"weights": {"W1": [[1.0, 1.0, 1.0]], "W2": [[1.0], [1.0]]}}, "W1 must be shaped (?, 2)"),
        ({"weights": {"W1": [[1.0, 1.0]], "W2": [[1.0]]}}, "W2 must be shaped (2, ?)"),
        ({"weights": {"W1": [[1.0, math.inf]], "W2": [[1.0], [1.0]]}}, "finite numbers only"),
        (
            {"weights": {**MAZUR_WEIGHTS, "b1": [0.35]}, "biases": True},
            "b1 must be shaped (2,)",
        ),
        ({"weights": [[1.0, 2.0]]}, "unknown initial parameter"),
        ({"weights": "W1"}, "must map parameter names"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, momentum, adam, adamw"),
        ({"lr": 0.0}, "lr must be a positive finite number"),
        ({"lr": -0.1}, "lr must be a positive finite number"),
        ({"lr": math.nan}, "lr must be a positive finite number, got nan"),
        ({"lr": math.inf}, "lr must be a positive finite number"),
        ({"lr": "0.1"}, "lr must be a positive finite number"),
        ({"lr": True}, "lr must be a positive finite number"),
        ({"momentum": 0.9}, "momentum applies to the momentum optimizer, not sgd"),
        ({"nesterov": True, "optimizer": "adam"}, "nesterov applies to the momentum optimizer"),
        ({"beta1": 0.9, "optimizer": "momentum"}, "beta1 applies to the adam and adamw"),
        ({"eps": 1e-8}, "eps applies to the adam and adamw optimizer, not sgd"),
        ({"optimizer": "momentum", "momentum": -0.1}, "momentum must be a number in [0, 1)"),
        ({"optimizer": "momentum", "momentum": 1.0}, "momentum must be a number in [0, 1)"),
        ({"optimizer": "momentum", "momentum": math.nan}, "momentum must be a number in [0, 1)"),
        ({"optimizer": "momentum", "dampening": 1.5}, "dampening must be a number in [0, 1]"),
        ({"optimizer": "momentum", "nesterov": "yes"}, "nesterov must be true or false"),
        (
            {"optimizer": "momentum", "nesterov": True, "dampening": 0.5},
            "nesterov must be used with a positive momentum and zero dampening",
        ),
        (
            {"optimizer": "momentum", "nesterov": True, "momentum": 0.0},
            "nesterov must be used with a positive momentum",
        ),
        ({"optimizer": "adam", "beta1": 1.0}, "beta1 must be a number in [0, 1)"),
        ({"optimizer": "adam", "beta1": -0.1}, "beta1 must be a number in [0, 1)"),
        ({"optimizer": "adamw", "beta2": math.nan}, "beta2 must be a number in [0, 1)"),
        ({"optimizer": "adam", "eps": 0.0}, "eps must be a positive finite number"),
        ({"optimizer": "adam", "eps": -1e-8}, "eps must be a positive finite number"),
        ({"weight_decay": -0.01}, "weight_decay must be a non-negative finite number"),
        ({"weight_decay": math.inf}, "weight_decay must be a non-negative finite number"),
        ({"optimizer": "adamw", "weight_decay": math.nan}, "weight_decay must be a non-negative"),
        ({"batch_size": -1}, "batch_size must be a non-negative integer"),
        ({"batch_size": 2.5}, "batch_size must be a non-negative integer"),
        ({"batch_seed": -1}, "batch_seed must be a non-negative integer"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"steps": 1.5}, "steps must be a positive integer"),
        ({"steps": True}, "steps must be a positive integer"),
        ({"dtype": "float8"}, "dtype must be one of float64, float32, float16, bfloat16"),
    ],
)
def test_a_bad_setting_is_refused_with_one_line_naming_it(settings, expected):
    message = refusal(**settings)
    assert expected in message, f"{settings} refused with {message!r}, expected {expected!r}"


@pytest.mark.parametrize(
    "settings",
    [
        {"dataset": "digits"},
        {"data_path": "my.CSV", "test_path": "test.csv"},
        {"data_path": "my.npz"},
        INLINE,
        {**INLINE, "X_test": [[0.0, 0.0]], "Y_test": [1]},
        {"X_train": [[0.05, 0.1]], "Y_train": [[0.01, 0.99]]},
        {"test_size": 0},
        {"test_size": 0.25},
        {"test_size": 149},
        {"split_seed": 2**32 - 1},
        {"standardize": True},
        {"hidden": ()},
        {"hidden": (5, 5), "activations": ("tanh", "relu", "identity")},
        {"hidden": 32},
        {"activations": "relu,identity"},
        {"loss": "binary-cross-entropy"},
        {"loss": "cross-entropy", "activations": ("relu", "identity")},
        {"loss": "half-sse", "biases": True},
        {"init_scheme": "uniform", "init_scale": 0.1},
        {"init_scheme": "glorot", "init_seed": 0},
        {"weights_path": "w.npz"},
        {"weights": MAZUR_WEIGHTS, "biases": True},
        {"weights": {"W1": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "W2": [[1.0], [2.0]]}},
        {"optimizer": "momentum", "momentum": 0.0, "dampening": 1.0},
        {"optimizer": "momentum", "nesterov": True},
        {"optimizer": "adam", "beta1": 0.0, "beta2": 0.5, "eps": 1e-3, "weight_decay": 0.1},
        {"optimizer": "adamw", "weight_decay": 0},
        {"batch_size": 1, "batch_seed": 7},
        {"steps": 1, "dtype": "bfloat16"},
        {"lr": 1},
    ],
)
def test_a_good_setting_is_accepted_and_round_trips(settings):
    recipe = Recipe(**settings)
    document = json.loads(json.dumps(recipe.to_dict()))
    assert Recipe.from_dict(document) == recipe, f"{settings} did not round-trip: {document}"
    assert hash(Recipe.from_dict(document)) == hash(recipe)


def test_context_defaults_are_resolved_so_the_recipe_states_the_numbers_used():
    adamw = Recipe(optimizer="adamw")
    assert adamw.weight_decay == 1e-2, "adamw's default decay must be torch's 1e-2, made explicit"
    assert adamw.to_dict()["train"]["weight_decay"] == 1e-2
    assert (adamw.beta1, adamw.beta2, adamw.eps) == (0.9, 0.999, 1e-8)
    assert adamw.momentum is None and "momentum" not in adamw.to_dict()["train"]
    assert Recipe(optimizer="adam").weight_decay == 0.0
    momentum = Recipe(optimizer="momentum")
    assert (momentum.momentum, momentum.dampening, momentum.nesterov) == (0.9, 0.0, False)
    assert momentum.beta1 is None and "beta1" not in momentum.to_dict()["train"]
    assert Recipe(init_scheme="he").init_scale == 1.0
    assert Recipe(init_scheme="uniform").init_scale == 0.5
    assert Recipe(data_path="x.csv").dataset is None
    explicit = Recipe(weights_path="w.npz")
    assert (explicit.init_scheme, explicit.init_seed, explicit.init_scale) == (None, None, None)
    assert Recipe(optimizer="adamw") == Recipe(optimizer="adamw", weight_decay=0.01)


def test_inline_values_are_stored_as_plain_hashable_tuples():
    recipe = Recipe(
        X_train=np.array([[1, 2], [3, 4]]),
        Y_train=np.array([0, 1]),
        weights={"W2": np.ones((2, 1)), "W1": np.zeros((2, 2))},
    )
    assert recipe.X_train == ((1.0, 2.0), (3.0, 4.0))
    assert isinstance(recipe.X_train[0][0], float) and isinstance(recipe.Y_train[0], int)
    assert [name for name, _ in recipe.weights] == ["W1", "W2"], "layer order, input side first"
    assert hash(recipe) == hash(Recipe.from_dict(recipe.to_dict()))
    assert "X_train" not in repr(recipe), "inline arrays would flood the repr"


def test_to_dict_has_the_four_sections_of_the_file_schema():
    document = Recipe().to_dict()
    assert list(document) == ["data", "network", "init", "train"]
    assert document["data"] == {
        "dataset": "iris",
        "test_size": 20,
        "split_seed": 4,
        "standardize": False,
    }
    assert document["network"] == {
        "hidden": [2],
        "activations": ["sigmoid"],
        "biases": False,
        "loss": "half-mse",
    }
    assert document["init"] == {"scheme": "normal", "seed": 10, "scale": 0.5}
    assert document["train"] == {
        "optimizer": "sgd",
        "lr": 0.1,
        "weight_decay": 0.0,
        "batch_size": 0,
        "batch_seed": 0,
        "steps": 5000,
        "dtype": "float64",
    }
    explicit = Recipe(weights=MAZUR_WEIGHTS, biases=True).to_dict()["init"]
    assert explicit == MAZUR_WEIGHTS
    assert Recipe(weights_path="/w/init.npz").to_dict()["init"] == {"file": "/w/init.npz"}
    data = Recipe(data_path="/d/my.csv", test_path="/d/t.csv").to_dict()["data"]
    assert (data["path"], data["test_path"]) == ("/d/my.csv", "/d/t.csv")


def test_from_dict_takes_a_partial_document_and_refuses_unknown_names():
    recipe = Recipe.from_dict({"train": {"steps": 7}, "network": {"hidden": [3]}})
    assert recipe == Recipe(steps=7, hidden=(3,))
    assert Recipe.from_dict({}) == Recipe()
    with pytest.raises(RecipeError, match="unknown recipe section 'model'"):
        Recipe.from_dict({"model": {}})
    with pytest.raises(RecipeError, match=r"unknown key 'lr' in \[network\] \(it belongs in"):
        Recipe.from_dict({"network": {"lr": 0.1}})
    with pytest.raises(RecipeError, match=r"unknown key 'colour' in \[data\]$"):
        Recipe.from_dict({"data": {"colour": "red"}})
    with pytest.raises(RecipeError, match=r"unknown key 'W0' in \[init\]"):
        Recipe.from_dict({"init": {"W0": [[1.0]]}})
    with pytest.raises(RecipeError, match=r"section \[train\] must be a table"):
        Recipe.from_dict({"train": 5})
    with pytest.raises(RecipeError, match="a recipe must be a table of sections"):
        Recipe.from_dict([1, 2])
    with pytest.raises(RecipeError, match="a file or inline, not both"):
        Recipe.from_dict({"init": {"file": "w.npz", "W1": [[1.0, 1.0]], "W2": [[1.0], [1.0]]}})


def test_replace_resets_what_a_change_replaces():
    inline = Recipe(**INLINE, X_test=[[0.0, 0.0]], Y_test=[1])
    to_file = inline.replace(data_path="d.csv")
    assert (to_file.X_train, to_file.X_test, to_file.dataset) == (None, None, None)
    assert Recipe(data_path="d.csv", test_path="t.csv").replace(dataset="wine").test_path is None
    assert Recipe().replace(data_path="d.csv").dataset is None
    assert Recipe(data_path="d.csv").replace(test_path="t.csv").data_path == "d.csv"

    assert Recipe().replace(optimizer="adamw").weight_decay == 1e-2
    adam = Recipe(optimizer="adam", beta1=0.8, weight_decay=0.5)
    assert adam.replace(lr=0.01).beta1 == 0.8, "a change of lr keeps the optimizer's settings"
    assert adam.replace(optimizer="sgd").beta1 is None
    assert adam.replace(optimizer="adamw").weight_decay == 1e-2
    assert adam.replace(optimizer="adamw", beta1=0.7).beta1 == 0.7
    assert adam.replace(optimizer="adam").beta1 == 0.8, "the same optimizer keeps its settings"

    scaled = Recipe(init_scale=0.3)
    assert scaled.replace(init_seed=1).init_scale == 0.3
    assert scaled.replace(init_scheme="he").init_scale == 1.0
    assert scaled.replace(init_scheme="he", init_scale=2.0).init_scale == 2.0
    explicit = Recipe(weights_path="w.npz")
    redrawn = explicit.replace(init_seed=3)
    assert (redrawn.weights_path, redrawn.init_scheme, redrawn.init_seed) == (None, "normal", 3)
    assert Recipe().replace(weights_path="w.npz").init_seed is None

    with pytest.raises(RecipeError, match="unknown recipe setting 'learning_rate'"):
        Recipe().replace(learning_rate=0.1)
    with pytest.raises(RecipeError, match="lr must be a positive finite number"):
        Recipe().replace(lr=math.nan)


def test_the_recipe_builds_the_contract_objects():
    recipe = Recipe(
        hidden=(5, 4),
        activations=("tanh", "relu", "identity"),
        biases=True,
        loss="cross-entropy",
        optimizer="adamw",
        lr=0.01,
        beta2=0.99,
        batch_size=16,
        batch_seed=3,
        dtype="float32",
    )
    assert recipe.network(6, 3) == Network(
        (6, 5, 4, 3), ("tanh", "relu", "identity"), True, "cross-entropy"
    )
    assert recipe.optimizer_rule() == Optimizer(
        "adamw", lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=1e-2
    )
    assert Recipe(optimizer="momentum", nesterov=True).optimizer_rule() == Optimizer(
        "momentum", lr=0.1, momentum=0.9, nesterov=True
    )
    assert recipe.batches(100) == Batches(rows=100, size=16, seed=3)

    class Loaded:  # what compare.data.load returns, reduced to what problem() reads
        X_train = np.zeros((40, 6))
        Y_train = np.zeros((40, 3))

    problem = recipe.problem(Loaded())
    assert problem.network.widths == (6, 5, 4, 3)
    assert problem.optimizer.name == "adamw" and problem.dtype == "float32"
    assert problem.batches == Batches(rows=40, size=16, seed=3)
    assert problem.state_names()[-1] == "state:v:b3"


def test_adam_in_float16_needs_an_eps_float16_can_hold():
    # 1e-8 is 0 in float16: Adam would divide a vanished second moment by nothing.
    with pytest.raises(RecipeError, match="eps 1e-08 is below float16's smallest normal"):
        Recipe(dtype="float16", optimizer="adam")
    with pytest.raises(RecipeError, match="float16"):
        Recipe(dtype="float16", optimizer="adamw", eps=1e-5)
    assert Recipe(dtype="float16", optimizer="adam", eps=1e-4).eps == 1e-4
    assert Recipe(dtype="bfloat16", optimizer="adam").eps == 1e-8  # float32's exponent range


def test_binary_cross_entropy_in_float16_is_refused_with_what_to_use_instead():
    # 1e-12, the derivative's floor, is 0 in float16: a saturated output divides by zero.
    with pytest.raises(RecipeError, match=r"cannot be computed in float16.*float32 or bfloat16"):
        Recipe(dtype="float16", loss="binary-cross-entropy", activations=("sigmoid",))
    for dtype in ("float64", "float32", "bfloat16"):
        Recipe(dtype=dtype, loss="binary-cross-entropy", activations=("sigmoid",))
    Recipe(dtype="float16", loss="half-mse", activations=("sigmoid",))
