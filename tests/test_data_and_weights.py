"""The shared starting point: the data (bundled, CSV, NPZ, inline), the split, standardising,
the saturation fact, the initial parameters (every scheme, explicit ones) and the batches."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import datasets
from sklearn.model_selection import train_test_split

from compare import data, weights
from compare.recipe import Recipe, RecipeError
from implementations.contract import Network


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


# -- bundled data sets and the split ----------------------------------------------------------


def test_iris_split_is_the_tutorials():
    dataset = data.load(Recipe())
    iris = datasets.load_iris()
    X_train, X_test, Y_train, Y_test = train_test_split(
        iris.data, np.eye(3)[iris.target], test_size=20, random_state=4
    )
    np.testing.assert_array_equal(dataset.X_train, X_train)
    np.testing.assert_array_equal(dataset.X_test, X_test)
    np.testing.assert_array_equal(dataset.Y_train, Y_train)
    np.testing.assert_array_equal(dataset.Y_test, Y_test)
    np.testing.assert_array_equal(dataset.labels_test, np.argmax(Y_test, axis=1))
    assert dataset.class_names == ("setosa", "versicolor", "virginica")
    assert dataset.classification and dataset.name == "iris"
    assert dataset.X_train.dtype == np.float64 and dataset.Y_train.dtype == np.float64


def test_the_split_seed_and_test_size_decide_the_split():
    tutorial = data.load(Recipe())
    reseeded = data.load(Recipe(split_seed=5))
    assert not np.array_equal(tutorial.X_test, reseeded.X_test), "--split-seed was ignored"
    assert data.load(Recipe(test_size=30)).X_test.shape == (30, 4)
    assert data.load(Recipe(test_size=0.2)).X_test.shape == (30, 4)
    everything = data.load(Recipe(test_size=0))
    assert everything.X_train.shape == (150, 4) and everything.X_test.shape == (0, 4)
    assert everything.Y_test.shape == (0, 3)
    with pytest.raises(RecipeError) as error:
        data.load(Recipe(test_size=150))
    assert "cannot split iris (150 rows)" in one_line(error)


@pytest.mark.parametrize(
    ("name", "inputs", "classes"),
    [("wine", 13, 3), ("breast_cancer", 30, 2), ("digits", 64, 10)],
)
def test_every_bundled_data_set_loads(name, inputs, classes):
    dataset = data.load(Recipe(dataset=name))
    assert dataset.X_train.shape[1] == inputs and dataset.Y_train.shape[1] == classes
    assert len(dataset.class_names) == classes and dataset.X_test.shape == (20, inputs)


def test_standardize_fits_on_the_training_rows_only():
    raw = data.load(Recipe(dataset="wine"))
    scaled = data.load(Recipe(dataset="wine", standardize=True))
    mean, std = raw.X_train.mean(axis=0), raw.X_train.std(axis=0)
    np.testing.assert_allclose(scaled.X_train, (raw.X_train - mean) / std, rtol=1e-12)
    np.testing.assert_allclose(scaled.X_test, (raw.X_test - mean) / std, rtol=1e-12)
    everything = np.vstack([raw.X_train, raw.X_test])
    leaked = (raw.X_test - everything.mean(axis=0)) / everything.std(axis=0)
    assert not np.allclose(scaled.X_test, leaked), "the test rows leaked into the scaler"
    assert scaled.standardized and not raw.standardized
    assert scaled.unscaled_max_abs == raw.unscaled_max_abs == raw.X_train.max()


def test_unscaled_wine_saturates_the_first_layer_and_standardised_wine_does_not():
    for standardize, low, high in ((False, 0.9, 1.0), (True, 0.0, 0.05)):
        recipe = Recipe(dataset="wine", hidden=(8,), standardize=standardize)
        dataset = data.load(recipe)
        params = weights.initial_params(recipe, recipe.problem(dataset).network)
        fraction = data.first_layer_saturation(dataset.X_train, params["W1"], None, "sigmoid")
        assert low <= fraction <= high, f"standardize={standardize}: {fraction}"


def test_saturation_counts_pre_activations_past_each_activations_threshold():
    X = np.array([[1.0], [-1.0]])
    W1 = np.array([[7.0, 1.0, 2.0]])
    # Z1 = [[7, 1, 2], [-7, -1, -2]]; sigmoid saturates past 5.99, tanh past 2.99 (+1 bias: 3).
    assert data.first_layer_saturation(X, W1, None, "sigmoid") == pytest.approx(2 / 6)
    assert data.first_layer_saturation(X, W1, np.array([0.0, 0.0, 1.0]), "tanh") == 3 / 6
    assert data.first_layer_saturation(X, W1, None, "relu") is None
    assert data.first_layer_saturation(X[:0], W1, None, "sigmoid") is None


# -- your own data ----------------------------------------------------------------------------


def write(path, text):
    path.write_text(text)
    return str(path)


def test_a_csv_without_header_ends_each_row_with_its_label(tmp_path):
    path = write(tmp_path / "d.csv", "# a comment\n1,2,0\n\n3,4,1\n5,6,1\n7,8,0\n")
    dataset = data.load(Recipe(data_path=path, test_size=0))
    np.testing.assert_array_equal(dataset.X_train, [[1, 2], [3, 4], [5, 6], [7, 8]])
    np.testing.assert_array_equal(dataset.labels_train, [0, 1, 1, 0])
    assert dataset.class_names == ("0", "1") and dataset.name == "d.csv"


def test_a_csv_header_names_the_label_or_target_columns(tmp_path):
    labelled = write(tmp_path / "l.csv", "label,a,b\n5,1,2\n1,3,4\n5,5,6\n")
    dataset = data.load(Recipe(data_path=labelled, test_size=0))
    np.testing.assert_array_equal(dataset.X_train, [[1, 2], [3, 4], [5, 6]])
    assert dataset.class_names == ("1", "5"), "classes in increasing label order"
    np.testing.assert_array_equal(dataset.Y_train, [[0, 1], [1, 0], [0, 1]])
    targets = write(tmp_path / "t.csv", "x1,target1,x2,target2\n0.05,0.01,0.1,0.99\n1,0.5,2,0.5\n")
    regression = data.load(Recipe(data_path=targets, test_size=0))
    np.testing.assert_array_equal(regression.X_train, [[0.05, 0.1], [1, 2]])
    np.testing.assert_array_equal(regression.Y_train, [[0.01, 0.99], [0.5, 0.5]])
    assert not regression.classification and regression.class_names == ()


def test_a_csv_test_file_is_the_test_set_and_no_split_is_made(tmp_path):
    train = write(
        tmp_path / "train.csv", "a,b,label\n" + "".join(f"{i},{i},{i % 3}\n" for i in range(9))
    )
    test = write(tmp_path / "test.csv", "a,b,label\n100,100,2\n")
    dataset = data.load(Recipe(data_path=train, test_path=test))
    assert dataset.X_train.shape == (9, 2), "every training row stays (test_size ignored)"
    np.testing.assert_array_equal(dataset.X_test, [[100, 100]])
    np.testing.assert_array_equal(dataset.Y_test, [[0, 0, 1]])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,2,0\n3,4\n", "d.csv line 2: 2 columns, expected 3"),
        ("1,2,0\n3,x,1\n", "d.csv line 2: 'x' is not a finite number"),
        ("1,2,0\n3,nan,1\n", "d.csv line 2: 'nan' is not a finite number"),
        ("1,2,0\n3,4,1.5\n", "d.csv line 2: label '1.5' is not an integer"),
        ("1,2,0\n3,4,-1\n", "class labels must be non-negative"),
        ("a,b,c\n1,2,0\n", "needs one 'label' column or 'target...' columns"),
        ("a,label,target\n1,2,0\n", "needs one 'label' column or 'target...' columns"),
        ("label,target\n1,2\n", "needs one 'label' column"),
        ("x,label\n", "has a header line but no rows"),
        ("label\n1\n", "no input columns"),
        ("# nothing\n", "holds no rows"),
        ("1\n2\n", "each row needs inputs and a label"),
    ],
)
def test_a_malformed_csv_is_refused_with_one_line_naming_the_line(tmp_path, text, expected):
    path = write(tmp_path / "d.csv", text)
    with pytest.raises(RecipeError) as error:
        data.load(Recipe(data_path=path, test_size=0))
    assert expected in one_line(error)


def test_a_missing_data_file_is_refused(tmp_path):
    for name in ("gone.csv", "gone.npz"):
        with pytest.raises(RecipeError) as error:
            data.load(Recipe(data_path=str(tmp_path / name)))
        assert name in one_line(error)


def test_an_npz_holds_labels_or_a_target_matrix_and_optionally_a_test_set(tmp_path):
    X = np.arange(20.0).reshape(10, 2)
    np.savez(tmp_path / "labels.npz", X_train=X, Y_train=np.arange(10) % 2)
    split = data.load(Recipe(data_path=str(tmp_path / "labels.npz"), test_size=3))
    assert split.X_train.shape == (7, 2) and split.Y_test.shape == (3, 2)
    np.savez(
        tmp_path / "both.npz",
        X_train=X,
        Y_train=np.tile([0.25, 0.75], (10, 1)),
        X_test=X[:2],
        Y_test=np.tile([0.5, 0.5], (2, 1)),
    )
    given = data.load(Recipe(data_path=str(tmp_path / "both.npz")))
    assert given.X_train.shape == (10, 2) and given.X_test.shape == (2, 2)
    assert not given.classification


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"X": np.ones((2, 2)), "y": np.zeros(2, int)}, "unknown array 'X'"),
        ({"X_train": np.ones((2, 2))}, "lacks Y_train"),
        (
            {"X_train": np.ones((3, 2)), "Y_train": np.zeros(2, int)},
            "the training set has 3 input rows but 2 targets",
        ),
        (
            {
                "X_train": np.ones((2, 2)),
                "Y_train": np.zeros(2, int),
                "X_test": np.ones((1, 2)),
                "Y_test": np.zeros((2, 1)),
            },
            "Y_train and Y_test must both be labels",
        ),
        (
            {
                "X_train": np.ones((2, 2)),
                "Y_train": np.zeros(2, int),
                "X_test": np.ones((1, 2)),
                "Y_test": np.zeros(3, int),
            },
            "the test set has 1 input rows but 3 targets",
        ),
        ({"X_train": np.ones(2), "Y_train": np.zeros(2, int)}, "X_train must be a non-empty 2-D"),
        ({"X_train": np.ones((2, 2)), "Y_train": np.zeros(2)}, "must be integer class labels"),
        (
            {"X_train": np.ones((2, 2)), "Y_train": np.zeros(2, int), "X_test": np.ones((1, 2))},
            "needs both X_test and Y_test",
        ),
        (
            {
                "X_train": np.ones((2, 2)),
                "Y_train": np.zeros(2, int),
                "X_test": np.ones((1, 3)),
                "Y_test": np.zeros(1, int),
            },
            "the test set has 3 inputs but the training set 2",
        ),
        ({"X_train": np.array([[1, None]]), "Y_train": np.zeros(1, int)}, "cannot read data"),
    ],
)
def test_a_bad_npz_is_refused_with_one_line(tmp_path, arrays, expected):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(RecipeError) as error:
        data.load(Recipe(data_path=str(tmp_path / "d.npz"), test_size=0))
    assert expected in one_line(error)


def test_inline_data_with_labels_or_targets():
    labels = data.load(Recipe(X_train=[[0, 1], [1, 0]], Y_train=[2, 0], test_size=0))
    np.testing.assert_array_equal(labels.Y_train, [[0, 1], [1, 0]])
    assert labels.class_names == ("0", "2") and labels.name == "inline"
    given = data.load(
        Recipe(X_train=[[0, 1]], Y_train=[[0.01, 0.99]], X_test=[[1, 1]], Y_test=[[0.5, 0.5]])
    )
    np.testing.assert_array_equal(given.X_test, [[1, 1]])
    np.testing.assert_array_equal(given.Y_train, [[0.01, 0.99]])


def test_the_targets_must_suit_the_loss():
    regression = {"X_train": [[0.0], [1.0]], "Y_train": [[0.01, 0.99], [0.2, 0.8]], "test_size": 0}
    ce = Recipe(**regression, loss="cross-entropy", activations=("relu", "identity"))
    with pytest.raises(RecipeError) as error:
        data.load(ce)
    assert "cross-entropy needs class targets" in one_line(error)
    assert data.load(Recipe(**regression, loss="binary-cross-entropy")).Y_train.shape == (2, 2)
    beyond = {**regression, "Y_train": [[2.0], [-1.0]]}
    with pytest.raises(RecipeError) as error:
        data.load(Recipe(**beyond, loss="binary-cross-entropy"))
    assert "needs targets in [0, 1]" in one_line(error)
    for loss in ("half-mse", "mse", "half-sse"):
        assert data.load(Recipe(**beyond, loss=loss)).Y_train.shape == (2, 1)
    one_hot = {**regression, "Y_train": [[0.0, 1.0], [1.0, 0.0]]}
    assert data.load(Recipe(**one_hot, loss="cross-entropy", activations=("relu", "identity")))


# -- initial parameters -----------------------------------------------------------------------


def test_initial_weights_are_the_tutorials_global_seed_draw():
    recipe = Recipe()
    state = np.random.get_state()
    try:
        np.random.seed(10)
        expected_W1 = np.random.normal(scale=0.5, size=(4, 2))
        expected_W2 = np.random.normal(scale=0.5, size=(2, 3))
    finally:
        np.random.set_state(state)
    drawn = weights.initial_params(recipe, recipe.network(4, 3))
    assert list(drawn) == ["W1", "W2"]
    np.testing.assert_array_equal(drawn["W1"], expected_W1)
    np.testing.assert_array_equal(drawn["W2"], expected_W2)
    assert drawn["W1"][0, 0] == expected_W1[0, 0]


def test_drawing_weights_leaves_the_global_generator_alone():
    state = np.random.get_state()
    weights.initial_params(Recipe(), Recipe().network(4, 3))
    after = np.random.get_state()
    assert np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_the_seed_and_scale_decide_the_draw_and_biases_start_at_zero():
    net = Recipe().network(4, 3)
    tutorial = weights.initial_params(Recipe(), net)
    assert not np.array_equal(
        weights.initial_params(Recipe(init_seed=11), net)["W1"], tutorial["W1"]
    )
    doubled = weights.initial_params(Recipe(init_scale=1.0), net)
    np.testing.assert_allclose(doubled["W1"], 2 * tutorial["W1"], rtol=1e-15)
    with_biases = weights.initial_params(Recipe(biases=True), Recipe(biases=True).network(4, 3))
    assert list(with_biases) == ["W1", "b1", "W2", "b2"]
    np.testing.assert_array_equal(with_biases["W2"], tutorial["W2"], err_msg="biases shifted")
    np.testing.assert_array_equal(with_biases["b1"], np.zeros(2))


FAN_IN, FAN_OUT = 400, 300


@pytest.mark.parametrize(
    ("scheme", "scale", "law", "spread"),
    [
        ("normal", None, "normal", 0.5),
        ("normal", 0.1, "normal", 0.1),
        ("uniform", None, "uniform", 0.5),
        ("uniform", 0.2, "uniform", 0.2),
        ("glorot", None, "uniform", np.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("glorot", 2.0, "uniform", 2 * np.sqrt(6 / (FAN_IN + FAN_OUT))),
        ("he", None, "normal", np.sqrt(2 / FAN_IN)),
        ("he", 0.5, "normal", 0.5 * np.sqrt(2 / FAN_IN)),
        ("lecun", None, "normal", np.sqrt(1 / FAN_IN)),
    ],
)
def test_every_scheme_draws_its_documented_law(scheme, scale, law, spread):
    recipe = Recipe(init_scheme=scheme, init_scale=scale, hidden=(FAN_OUT,))
    W = weights.initial_params(recipe, recipe.network(FAN_IN, 2))["W1"]
    assert W.shape == (FAN_IN, FAN_OUT)
    # The sample standard deviation of n = 120,000 draws is within 1% of the law's with
    # overwhelming probability (its relative standard error is about 1 / sqrt(2n) = 0.2%).
    assert abs(W.mean()) < 0.01 * spread
    if law == "normal":
        assert W.std() == pytest.approx(spread, rel=0.01), f"{scheme}: std {W.std()}"
        assert np.abs(W).max() > 3.5 * spread, "a normal draw has tails"
    else:
        assert np.abs(W).max() <= spread, f"{scheme}: a draw beyond the limit {spread}"
        assert np.abs(W).max() > 0.999 * spread, f"{scheme}: the draw does not reach its limit"
        assert W.std() == pytest.approx(spread / np.sqrt(3), rel=0.01)


def test_a_seed_sweep_stacks_the_single_draws():
    recipe = Recipe(biases=True)
    net = recipe.network(4, 3)
    batch = weights.initial_params_batch(recipe, net, [10, 3, 7])
    assert batch["W1"].shape == (3, 4, 2) and batch["b2"].shape == (3, 3)
    for point, seed in enumerate([10, 3, 7]):
        single = weights.initial_params(recipe.replace(init_seed=seed), net)
        for name in net.param_names:
            np.testing.assert_array_equal(batch[name][point], single[name])
    with pytest.raises(RecipeError, match="no seed to sweep"):
        weights.initial_params_batch(Recipe(weights_path="w.npz"), net, [1])


def test_explicit_weights_from_a_file(tmp_path):
    net = Network((4, 2, 3), ("sigmoid", "sigmoid"), biases=True)
    W1, W2, b2 = np.arange(8.0).reshape(4, 2), np.ones((2, 3)), np.array([1.0, 2.0, 3.0])
    np.savez(tmp_path / "w.npz", W1=W1, W2=W2, b2=b2)
    params = weights.initial_params(Recipe(weights_path=str(tmp_path / "w.npz"), biases=True), net)
    assert list(params) == ["W1", "b1", "W2", "b2"]
    np.testing.assert_array_equal(params["W1"], W1)
    np.testing.assert_array_equal(params["b1"], np.zeros(2), err_msg="a missing bias is 0")
    np.testing.assert_array_equal(params["b2"], b2)


@pytest.mark.parametrize(
    ("arrays", "biases", "expected"),
    [
        (
            {"W1": np.ones((2, 4)), "W2": np.ones((2, 3))},
            False,
            "W1 must be shaped (4, 2) for a 4-2-3 network, got (2, 4); it looks transposed",
        ),
        ({"W1": np.ones((4, 2)), "W2": np.ones((2, 4))}, False, "W2 must be shaped (2, 3)"),
        ({"W1": np.ones((4, 2))}, False, "lacks W2, shaped (2, 3)"),
        ({"W1": np.ones((4, 2)), "W2": np.ones((2, 3)), "W3": np.ones(1)}, False, "gives 'W3'"),
        ({"W1": np.ones((4, 2)), "W2": np.ones((2, 3)), "b1": np.ones(2)}, False, "no biases"),
        (
            {"W1": np.ones((4, 2)), "W2": np.ones((2, 3)), "b1": np.ones(3)},
            True,
            "b1 must be shaped (2,)",
        ),
        ({"W1": np.full((4, 2), np.nan), "W2": np.ones((2, 3))}, False, "finite numbers only"),
        ({"W1": np.array([["a"] * 2] * 4), "W2": np.ones((2, 3))}, False, "must hold numbers"),
        ({"W1": np.array([[None] * 2] * 4), "W2": np.ones((2, 3))}, False, "cannot read weights"),
    ],
)
def test_wrong_explicit_weights_are_refused_with_one_line(tmp_path, arrays, biases, expected):
    np.savez(tmp_path / "w.npz", **arrays)
    recipe = Recipe(weights_path=str(tmp_path / "w.npz"), biases=biases)
    with pytest.raises(RecipeError) as error:
        weights.initial_params(recipe, recipe.network(4, 3))
    assert expected in one_line(error)


def test_a_missing_weights_file_is_refused(tmp_path):
    recipe = Recipe(weights_path=str(tmp_path / "gone.npz"))
    with pytest.raises(RecipeError) as error:
        weights.initial_params(recipe, recipe.network(4, 3))
    assert "gone.npz" in one_line(error)


def test_inline_weights_are_checked_against_the_datas_widths():
    recipe = Recipe(weights={"W1": [[1.0, 2.0], [3.0, 4.0]], "W2": [[1.0], [2.0]]})
    params = weights.initial_params(recipe, recipe.network(2, 1))
    np.testing.assert_array_equal(params["W1"], [[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(RecipeError) as error:
        weights.initial_params(recipe, recipe.network(4, 1))
    assert "W1 must be shaped (4, 2)" in one_line(error)


# -- batches ----------------------------------------------------------------------------------


def test_the_recipes_batches_visit_every_row_once_an_epoch_and_keep_the_last_partial_batch():
    batches = Recipe(batch_size=4, batch_seed=1).batches(10)
    epoch = [batches.indices(step) for step in range(3)]
    assert [len(rows) for rows in epoch] == [4, 4, 2]
    assert sorted(np.concatenate(epoch)) == list(range(10))
    other = Recipe(batch_size=4, batch_seed=2).batches(10)
    assert not np.array_equal(other.indices(0), batches.indices(0)), "--batch-seed was ignored"
    assert Recipe().batches(10).full
