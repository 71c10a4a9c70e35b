"""``check`` catches planted bugs where they happen: a wrong derivative, update-rule bugs in
every dtype, a bug in a training loop alone, and a gradient every framework shares.

Each bug lives in a private copy of the NumPy implementation (``numpy_copy``), handed to
``check`` through ``modules=``, so these tests need neither torch nor JAX.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import sys

import numpy as np
import pytest

from compare import quantities, term_bounds, tolerances
from compare.check import check
from compare.recipe import Recipe
from compare.term_bounds import allowance
from implementations import numpy_manual

_copies = itertools.count()

#: The dtypes whose update bugs the synced step must catch at step 0 or 1.
LOW_PRECISION = ("float32", "float16", "bfloat16")


def numpy_copy():
    """A fresh, independent copy of the NumPy implementation, for planting one bug in."""
    name = f"crosscheck_numpy_copy_{next(_copies)}"
    spec = importlib.util.spec_from_file_location(name, numpy_manual.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def wrong_derivative():
    """The sigmoid's derivative taken from Z instead of A: ``Z (1 - Z)``."""
    module = numpy_copy()
    rule = module.ACTIVATIONS["sigmoid"]
    module.ACTIVATIONS = {
        **module.ACTIVATIONS,
        "sigmoid": dataclasses.replace(rule, derivative=lambda Z, A: Z * (1 - Z)),
    }
    return module


def _with_optimizer(module, changes):
    honest = module.update

    def update(problem, state, grads):
        optimizer = dataclasses.replace(problem.optimizer, **changes(problem.optimizer))
        return honest(dataclasses.replace(problem, optimizer=optimizer), state, grads)

    module.update = update
    return module


def wrong_learning_rate():
    """Half the learning rate (a mean where the reference sums, or the reverse)."""
    return _with_optimizer(numpy_copy(), lambda opt: {"lr": opt.lr / 2})


def wrong_sign():
    """Gradient ascent: ``p + lr g``."""
    return _with_optimizer(numpy_copy(), lambda opt: {"lr": -opt.lr})


def skipped_update():
    """W2 left out of the optimizer's parameters: it and its buffers never change."""
    module = numpy_copy()
    honest = module.update

    def update(problem, state, grads):
        next_state, values = honest(problem, state, grads)
        for q in next_state:
            if quantities.parameter(q) == "W2":
                next_state[q] = state[q]
        return next_state, values

    module.update = update
    return module


def stale_momentum():
    """The step uses the momentum buffer from before this gradient was added to it."""
    module = numpy_copy()
    honest = module.momentum_update

    def momentum_update(p, grad, buf, first, opt, kept):
        named = honest(p, grad, buf, first, opt, kept)
        named["p_next"] = kept(p - opt.lr * buf)
        return named

    module.momentum_update = momentum_update
    return module


def no_bias_correction():
    """Adam without its bias corrections (``1 - beta^t`` taken as 1)."""
    module = numpy_copy()
    honest = module.adam_update

    def adam_update(p, grad, m, v, t, opt, kept):
        return honest(p, grad, m, v, t * 0 + 1e9, opt, kept)

    module.adam_update = adam_update
    return module


def stale_gradient_in_training_loop():
    """The training loop applies the previous step's gradient; ``step`` is right."""
    module = numpy_copy()
    honest_train, honest_update = module.train, module.update

    def train(problem, initial, X, Y, steps, *, chunk, sink, progress=None):
        previous = {}

        def stale(problem, state, grads):
            used = previous.get("grads", grads)
            previous["grads"] = grads
            return honest_update(problem, state, used)

        def sink_outside_the_loop(start, records):
            module.update = honest_update
            try:
                sink(start, records)
            finally:
                module.update = stale

        module.update = stale
        try:
            honest_train(
                problem,
                initial,
                X,
                Y,
                steps,
                chunk=chunk,
                sink=sink_outside_the_loop,
                progress=progress,
            )
        finally:
            module.update = honest_update

    module.train = train
    return module


def _run(recipe, mutant, mode="synced", **options):
    return check(
        recipe,
        frameworks=("numpy", "mutant"),
        mode=mode,
        modules={"mutant": mutant},
        oracles=options.pop("oracles", False),
        isolate=False,
        **options,
    )


def _failures(result, framework="mutant", against="numpy"):
    return {
        c.quantity: c
        for c in result.comparisons
        if c.framework == framework and c.against == against and c.mode == "synced" and not c.passed
    }


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_wrong_derivative_fails_synced_grad_W1_at_step_0(dtype):
    result = _run(Recipe(steps=6, dtype=dtype), wrong_derivative(), mode="both")
    assert result.verdict == "fail"
    failed = _failures(result)
    assert "grad:W1" in failed, f"synced grad:W1 should fail; failures: {sorted(failed)}"
    assert failed["grad:W1"].first_failing_step == 0
    assert failed["grad:W1"].gating
    # The loss at state 0 does not depend on the derivative: it must still agree there.
    loss = next(c for c in result.comparisons if c.mode == "synced" and c.quantity == "loss")
    assert loss.passed, "the loss is computed before any derivative and must agree"


def _update_recipe(dtype, optimizer):
    settings = {"optimizer": optimizer, "lr": 0.5}
    if optimizer == "momentum":
        settings["momentum"] = 0.9
    if optimizer == "adam":
        # eps = 1e-8 is below float16's smallest number: every framework divides by zero there.
        settings.update(lr=0.05, eps=1e-3 if dtype == "float16" else 1e-8)
    return Recipe(steps=4, dtype=dtype, **settings)


UPDATE_BUGS = {
    "wrong learning rate": (wrong_learning_rate, "sgd"),
    "wrong sign": (wrong_sign, "sgd"),
    "skipped update": (skipped_update, "sgd"),
    "stale momentum": (stale_momentum, "momentum"),
    "no bias correction": (no_bias_correction, "adam"),
}


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("bug", sorted(UPDATE_BUGS))
def test_update_rule_bugs_fail_the_synced_step_at_step_0_or_1(bug, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    make, optimizer = UPDATE_BUGS[bug]
    result = _run(_update_recipe(dtype, optimizer), make())
    failed = {
        q: c
        for q, c in _failures(result).items()
        if quantities.synced_role(q) == quantities.NEXT_STATE and c.gating
    }
    assert result.verdict == "fail", f"{bug} in {dtype} passed the synced step"
    assert failed, f"{bug} in {dtype}: no state after the step failed"
    first = min(c.first_failing_step for c in failed.values())
    assert first <= 1, f"{bug} in {dtype} first fails at step {first}, not 0 or 1"


@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_an_honest_copy_passes_every_update_recipe(optimizer, dtype):
    """The recipes above are not failing by themselves (control for the test above)."""
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    result = _run(_update_recipe(dtype, optimizer), numpy_copy(), mode="both")
    assert result.verdict == "pass", [c for c in result.comparisons if not c.passed]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_bug_in_a_training_loop_alone_fails_its_own_step_at_step_1(dtype):
    """A stale gradient moves step k by ``lr |g_k - g_(k-1)|``, one step's change of the
    gradient: visible in float32, below a float16 weight's rounding unit."""
    result = _run(Recipe(steps=8, dtype=dtype, lr=0.5), stale_gradient_in_training_loop(), "both")
    assert result.verdict == "fail"
    own = _failures(result, framework="mutant", against="mutant")
    assert own, "the training loop's states must disagree with the framework's own step"
    assert min(c.first_failing_step for c in own.values()) == 1
    # Its step is right, so the steps from the reference's states agree.
    assert not _failures(result), "the mutant's step() is honest; synced-from-reference passes"


def step_recording_the_next_state():
    """``step`` records the state after its update where the state it was given belongs."""
    module = numpy_copy()
    honest_step = module.step

    def step(problem, states, X, Y, rows):
        records, next_states = honest_step(problem, states, X, Y, rows)
        return {**records, **{q: next_states[q] for q in problem.state_names()}}, next_states

    module.step = step
    return module


@pytest.mark.parametrize("dtype", ["float64", *LOW_PRECISION])
def test_a_step_recording_another_state_fails_at_step_0_in_every_dtype(dtype):
    """A small learning rate keeps one update below a float16 weight's tolerance: only the
    exact check of the recorded state against the given one can see the shift."""
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    result = _run(Recipe(steps=6, dtype=dtype, lr=1e-3), step_recording_the_next_state())
    assert result.verdict == "fail"
    failed = _failures(result)
    weights = [c for q, c in failed.items() if q.startswith("weight:")]
    assert weights, f"no weight's synced comparison failed: {sorted(failed)}"
    assert all(c.gating and c.max_abs > 0 for c in weights)
    assert min(c.first_failing_step for c in weights) == 0


def test_a_gradient_every_framework_shares_fails_the_oracles():
    shared = wrong_derivative()
    result = check(
        Recipe(steps=10),
        frameworks=("shared", "copy"),
        reference="shared",
        modules={"shared": shared, "copy": shared},
        isolate=False,
    )
    assert all(c.passed for c in result.comparisons), "the two copies agree exactly"
    assert result.verdict == "fail", "a gradient that disagrees with its own loss must fail"
    failed = result.precision.failed_oracles
    assert {r.checker for _, r in failed} == {"taylor", "scipy.optimize.check_grad"}
    taylor = next(r for _, r in failed if r.checker == "taylor")
    assert taylor.error == pytest.approx(1.0, abs=0.2), "a wrong gradient leaves an O(h) term"
    assert taylor.threshold == pytest.approx(1.75)
    fd = next(r for _, r in failed if r.checker != "taylor")
    assert fd.error > fd.threshold > 0 and fd.step > 0, "the threshold and step are shown"


def _scaled_gradient(delta):
    module = numpy_copy()
    honest = module.evaluate

    def evaluate(problem, params, X, Y):
        found = honest(problem, params, X, Y)
        found.grads["W1"] = found.grads["W1"] * (1 + delta)
        return found

    module.evaluate = evaluate
    return module


def test_every_fact_of_a_failing_comparison_holds_its_own_value():
    delta, steps = 1e-3, 12
    result = _run(Recipe(steps=steps), _scaled_gradient(delta), trajectories=True)
    kept = result.trajectories["numpy"]
    # The file keeps one gradient per update; synced mode compares the last state's too.
    last = {name: kept[q][-1:] for name, q in result.network.param_quantities.items()}
    _, final = numpy_manual.loss_and_grads(
        result.problem, last, result.dataset.X_train, result.dataset.Y_train
    )
    grads = np.concatenate([kept["grad:W1"], final["grad:W1"]])
    synced = next(
        c
        for c in result.comparisons
        if c.mode == "synced" and c.against == "numpy" and c.quantity == "grad:W1"
    )
    error = np.abs(grads) * delta
    assert synced.total == grads.size
    worst = np.unravel_index(np.argmax(error), error.shape)
    assert synced.max_abs == pytest.approx(error.max(), rel=1e-9)
    assert (synced.worst_step, synced.worst_index) == (
        int(worst[0]),
        tuple(int(i) for i in worst[1:]),
    )
    assert synced.max_rel == pytest.approx(delta, rel=1e-6), "max_rel is relative, not absolute"
    assert synced.max_abs != pytest.approx(synced.max_rel, rel=1e-3, abs=0), "max_abs != max_rel"
    rule = result.tolerances["synced"]
    running = np.maximum.accumulate(np.abs(grads).reshape(len(grads), -1).max(axis=1))
    # Each element's atol is at least the rounding of its terms (compare.term_bounds).
    states = {q: kept[q] for q in result.network.param_quantities.values()}
    X, Y = np.asarray(result.dataset.X_train), np.asarray(result.dataset.Y_train)
    bounds = term_bounds.state_bounds(result.problem, states, X, Y, np.arange(steps + 1))
    atol = np.maximum(rule["scale"] * running[:, None, None], allowance(bounds["grad:W1"]))
    allowed = atol + rule["rtol"] * np.abs(grads)
    failing = error > allowed
    assert synced.first_failing_step == int(np.argwhere(failing.any(axis=(1, 2)))[0, 0]) == 0
    assert synced.first_failing_index == tuple(int(i) for i in np.argwhere(failing[0])[0])
    assert synced.mismatched == int(failing.sum())
    assert synced.rtol == rule["rtol"]
    assert synced.atol == pytest.approx(atol.max(), rel=1e-12, abs=0)
    assert synced.gating
    assert result.first_failure.first_failing_step == 0
    assert result.first_failure.quantity == "grad:W1"
    assert result.first_failure.framework == "mutant"


def step_reading_subnormals_as_zero():
    """An honest ``step`` whose CPU treats subnormal inputs as zero (DAZ), as XLA's does."""
    module = numpy_copy()
    honest_step = module.step

    def step(problem, states, X, Y, rows):
        tiny = np.finfo(np.float32).tiny
        flushed = {q: np.where(np.abs(v) < tiny, 0.0, v) for q, v in states.items()}
        return honest_step(problem, flushed, X, Y, rows)

    module.step = step
    return module


def test_a_step_reading_a_subnormal_state_as_zero_is_no_false_alarm():
    """Unscaled wine saturates the sigmoids: Adam's float32 ``m`` holds subnormals by step 1
    (issue 8: JAX recorded m = 1.0e-39 given to it as 0, and the exact check failed)."""
    recipe = Recipe(
        dataset="wine",
        hidden=(16, 8),
        activations=("sigmoid", "sigmoid", "sigmoid"),
        loss="half-sse",
        biases=False,
        standardize=False,
        optimizer="adam",
        lr=0.01,
        steps=2,
        dtype="float32",
        init_seed=620,
        split_seed=895,
    )
    result = _run(recipe, step_reading_subnormals_as_zero(), "synced")
    flushed = sum(c.flushed for c in result.comparisons if c.quantity.startswith("state:"))
    assert flushed > 0, "the recipe must put subnormals in the optimizer state"
    assert result.verdict == "pass", f"a flushed subnormal is the same state: {_failures(result)}"


#: Issue 8: identity layers and momentum on iris; the float64 trajectory amplifies rounding
#: (frameworks part from 1e-15 at step 150 to 2e-3 by step 300, every synced step agreeing).
CHAOTIC = Recipe(
    hidden=(4, 4),
    activations=("identity", "identity", "sigmoid"),
    loss="half-sse",
    biases=False,
    optimizer="momentum",
    lr=0.01,
    momentum=0.5,
    weight_decay=1e-4,
    steps=300,
    init_seed=318,
    split_seed=772,
)


def update_rounding_up():
    """An honest update whose weights round one ULP up: a different summation order's worth."""
    module = numpy_copy()
    honest = module.update

    def update(problem, state, grads):
        state, named = honest(problem, state, grads)
        weights = problem.network.param_quantities.values()
        return {q: np.nextafter(v, np.inf) if q in weights else v for q, v in state.items()}, named

    module.update = update
    return module


def test_float64_drift_on_a_trajectory_that_amplifies_rounding_is_reported():
    result = _run(CHAOTIC, update_rounding_up(), "both")
    drifted = [c for c in result.comparisons if c.mode == "independent" and not c.passed]
    assert drifted, "the recipe must drift past half the digits"
    assert result.precision.drift_reported == ("mutant",)
    assert result.precision.amplification["mutant"] > 1e3
    assert not any(c.gating for c in drifted), "amplified rounding is reported, as below float64"
    assert result.verdict == "pass", [c.quantity for c in result.comparisons if not c.passed]


def test_float64_drift_still_decides_where_a_step_disagrees():
    """A learning rate 1e-6 off moves one step by far more than rounding: the synced step fails,
    so the drift it causes is not excused as amplification."""
    mutant = _with_optimizer(update_rounding_up(), lambda opt: {"lr": opt.lr * (1 + 1e-6)})
    result = _run(CHAOTIC, mutant, "both")
    assert result.precision.drift_reported == ()
    assert any(c.gating for c in result.comparisons if c.mode == "independent" and not c.passed)
    assert result.verdict == "fail"


def test_amplification_is_drift_over_the_linear_sum_of_one_step_errors():
    assert tolerances.amplification(0.0, 0.0, 10) == 0.0
    assert tolerances.amplification(1e-12, 1e-16, 100) == pytest.approx(100.0)
    assert tolerances.amplification(1e-3, 0.0, 5) == math.inf
    assert not tolerances.drift_is_amplified_rounding("float64", 1e6, steps_agree=False)
    assert not tolerances.drift_is_amplified_rounding("float64", 5.0, steps_agree=True)
    assert tolerances.drift_is_amplified_rounding("float64", 1e6, steps_agree=True)


def _zero_step_where_v_hat_exceeds(limit):
    """Adam that leaves an element in place where ``v / (1 - beta2^t)`` exceeds ``limit``: at
    float16's largest number that is optax's honest float16 arithmetic (``v_hat = inf``,
    step ``m_hat / inf = 0``); below it, a bug."""
    module = numpy_copy()
    honest = module.adam_update

    def adam_update(p, grad, m, v, t, opt, kept):
        named = honest(p, grad, m, v, t, opt, kept)
        v_hat = np.asarray(named["v"], dtype=np.float64) / named["bias_correction2"]
        named["p_next"] = np.where(v_hat > limit, p, named["p_next"]).astype(p.dtype)
        return named

    module.adam_update = adam_update
    return module


def test_a_float16_adam_step_of_zero_where_v_hat_overflows_passes_and_below_fails():
    """Measured false alarm: unscaled breast_cancer, float16, eps 1e-4, t = 3, v = 202: v_hat
    = 67400 > 65504, JAX's step 0, NumPy's 0.0097. The same zero step where v_hat is a hundred
    times smaller (it fits) fails."""
    recipe = Recipe(
        dataset="breast_cancer",
        hidden=[],
        activations=["identity"],
        loss="cross-entropy",
        standardize=False,
        optimizer="adam",
        lr=0.01,
        eps=1e-4,
        steps=4,
        dtype="float16",
        init_seed=918,
        split_seed=570,
        batch_size=32,
        batch_seed=87,
        init_scheme="uniform",
    )
    largest = float(np.finfo(np.float16).max)
    honest = _run(recipe, _zero_step_where_v_hat_exceeds(largest))
    assert honest.verdict == "pass", [c for c in honest.comparisons if not c.passed]
    planted = _run(recipe, _zero_step_where_v_hat_exceeds(largest / 100))
    assert "weight:W1" in _failures(planted), sorted(_failures(planted))


def _mse_derivative_doubled_first(factor=1.0):
    """The mse derivative in torch's order, ``(2 (A - Y)) / (R O)``: ``2 (A - Y)`` rounds (and
    may overflow) in the dtype before the division; ``factor`` plants a wrong gradient."""
    module = numpy_copy()
    rule = module.LOSSES["mse"]

    def derivative(A, Y):
        rows, outputs = A.shape[-2:]
        doubled = (A - Y) * A.dtype.type(2)
        return doubled / A.dtype.type(rows * outputs / factor)

    module.LOSSES = {**module.LOSSES, "mse": dataclasses.replace(rule, derivative=derivative)}
    return module


def test_an_mse_gradient_inf_where_2_residual_overflows_passes_and_a_wrong_one_fails():
    """Measured false alarm: float32 unscaled digits, nesterov diverging, step 23: |A - Y| of
    1.9e38 fits, 2 |A - Y| does not, torch's grad:W1 is inf. That order passes; the same order
    with a gradient 1e-4 too large fails."""
    recipe = Recipe(
        dataset="digits",
        hidden=[],
        activations=["identity"],
        loss="mse",
        standardize=False,
        optimizer="momentum",
        lr=0.05,
        momentum=0.5,
        nesterov=True,
        weight_decay=0.0001,
        steps=25,
        dtype="float32",
        init_seed=442,
        split_seed=598,
    )
    with np.errstate(over="ignore", invalid="ignore"):
        honest = _run(recipe, _mse_derivative_doubled_first())
        planted = _run(recipe, _mse_derivative_doubled_first(1 + 1e-4))
    assert honest.verdict == "pass", [c for c in honest.comparisons if not c.passed]
    assert "grad:W1" in _failures(planted), sorted(_failures(planted))
