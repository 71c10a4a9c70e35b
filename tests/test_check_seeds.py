"""``check_seeds``: many initial-weight seeds in one run, each judged as ``check`` judges it
alone; the point axis through the worker, the memory bound and the oracles of a batch."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import sys

import numpy as np
import pytest

from compare import harness, weights
from compare.check import CheckError, check, check_seeds
from compare.recipe import Recipe
from implementations import numpy_manual

#: Out of order on purpose: a batch that sorted or mixed its seeds would give another seed's
#: facts.
SEEDS = (3, 10, 7)
_counter = itertools.count()


def _numpy_copy_scaled(delta):
    """A NumPy copy (an in-process module) whose W1 gradient is off by a factor 1 + delta."""
    name = f"crosscheck_seeds_copy_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, numpy_manual.__file__)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    honest = module.evaluate

    def evaluate(problem, params, X, Y):
        found = honest(problem, params, X, Y)
        found.grads["W1"] = found.grads["W1"] * (1 + delta)
        return found

    module.evaluate = evaluate
    return module


def _facts(result) -> dict:
    """What a check found about its seed: everything but timings, process ids and run stats."""
    summaries = {
        name: {key: value for key, value in summary.items() if key != "seconds"}
        for name, summary in result.summaries.items()
    }
    precision = dataclasses.replace(result.precision, oracles={})
    return {
        "verdict": result.verdict,
        "comparisons": result.comparisons,
        "first_failure": result.first_failure,
        "summaries": summaries,
        "precision": precision,
        "test_outputs": {k: v.tolist() for k, v in result.test_outputs.items()},
        "recipe": result.recipe,
    }


def _alone_and_batched(recipe, frameworks, modules=None, **options):
    batch = check_seeds(
        recipe, list(SEEDS), frameworks, modules=modules, isolate=False, chunk=4, **options
    )
    alone = [
        check(recipe.replace(init_seed=seed), frameworks, modules=modules, isolate=False, **options)
        for seed in SEEDS
    ]
    return batch, alone


@pytest.mark.parametrize(("dtype", "batch_size"), [("float64", 0), ("float32", 0), ("float64", 40)])
def test_each_seed_of_a_batch_gets_exactly_what_check_finds_for_it_alone(dtype, batch_size):
    """NumPy computes a batch of seeds bit for bit as each seed alone, so every fact (verdict,
    max_abs, worst and first failing step, counts, growth, summaries) must be identical; the
    planted bug (a W1 gradient off by 1e-3) makes every fact nonzero and every seed fail.
    Minibatches of 40 rows end each epoch with a shorter one: steps grouped by batch length."""
    recipe = Recipe(steps=8, dtype=dtype, batch_size=batch_size)
    modules = {"scaled": _numpy_copy_scaled(1e-3)}
    batch, alone = _alone_and_batched(recipe, ("numpy", "scaled"), modules=modules)
    assert [r.recipe.init_seed for r in batch] == list(SEEDS), "results in the order of seeds"
    for seed, batched, single in zip(SEEDS, batch, alone, strict=True):
        assert batched.verdict == "fail", f"seed {seed}: the scaled gradient went unnoticed"
        failure = batched.first_failure
        where = (failure.quantity, failure.first_failing_step)
        assert where == ("grad:W1", 0), f"seed {seed}: {failure}"
        got, expected = _facts(batched), _facts(single)
        for key in expected:
            assert got[key] == expected[key], f"seed {seed}, {dtype}: the batch's {key} differs"
    errors = [{c.quantity: c.max_abs for c in r.comparisons} for r in alone]
    assert errors[0] != errors[1] != errors[2], "the seeds must differ, or a mix-up would pass"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_honest_frameworks_judge_each_seed_of_a_batch_as_alone_up_to_batched_rounding(dtype):
    """torch and JAX may round a batched matrix product differently from a single one in the
    last bit (the contract allows it), so a difference may move by that much; every verdict,
    failure, count and summary is the seed's own."""
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    recipe = Recipe(steps=10, dtype=dtype)
    batch, alone = _alone_and_batched(recipe, ("numpy", "torch", "jax"), oracles=False)
    for seed, batched, single in zip(SEEDS, batch, alone, strict=True):
        assert batched.verdict == single.verdict == "pass", f"seed {seed}"
        assert len(batched.comparisons) == len(single.comparisons)
        for got, expected in zip(batched.comparisons, single.comparisons, strict=True):
            what = f"seed {seed} {dtype} {expected.framework} {expected.mode} {expected.quantity}"
            assert (got.framework, got.against, got.mode, got.quantity) == (
                expected.framework,
                expected.against,
                expected.mode,
                expected.quantity,
            ), what
            assert (got.first_failing_step, got.mismatched, got.total, got.gating) == (
                expected.first_failing_step,
                expected.mismatched,
                expected.total,
                expected.gating,
            ), what
            assert abs(got.max_abs - expected.max_abs) <= max(expected.atol, 1e-300), what
        for name, summary in single.summaries.items():
            for key in ("final_loss", "train_accuracy", "test_accuracy"):
                assert batched.summaries[name][key] == pytest.approx(summary[key], rel=1e-5), (
                    f"seed {seed} {name} {key}"
                )


def test_the_oracles_check_the_first_seed_or_the_ones_named_and_say_so():
    recipe = Recipe(steps=4)
    options = {"frameworks": ("numpy", "copy"), "modules": {"copy": numpy_manual}}
    first = check_seeds(recipe, list(SEEDS), isolate=False, **options)
    assert [r.oracles_checked for r in first] == [True, False, False]
    assert all(r.oracle_seeds == (3,) for r in first)
    assert first[0].precision.oracles["numpy"], "the first seed's oracles ran"
    assert not any(first[1].precision.oracles.values()), "a seed without oracles shows none"
    named = check_seeds(recipe, list(SEEDS), isolate=False, oracle_seeds=[7], **options)
    assert [r.oracles_checked for r in named] == [False, False, True]
    ran = [bool(r.precision.oracles["numpy"]) for r in named]
    assert ran == [False, False, True], "the named seed's result holds its oracles"
    off = check_seeds(recipe, list(SEEDS), isolate=False, oracles=False, **options)
    assert not any(r.oracles_checked for r in off) and off[0].oracle_seeds == ()
    assert check(recipe, isolate=False, **options).oracles_checked, "check runs its oracles"


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ([], "non-empty list"),
        ([1, 1], "must not repeat"),
        ([-1], "[0, 2**32)"),
        (["1"], "must be an integer"),
        (3, "non-empty list"),
    ],
)
def test_bad_seeds_are_refused_in_one_line_before_anything_runs(seeds, message):
    with pytest.raises(CheckError) as refused:
        check_seeds(Recipe(steps=2), seeds, ("numpy", "copy"), modules={"copy": numpy_manual})
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_batch_of_seeds_is_chunked_by_its_size_and_refused_when_it_cannot_fit(monkeypatch):
    recipe = Recipe(steps=5000)
    problem = recipe.problem(__import__("compare.data").data.load(recipe))
    one, many = harness.chunk_size(problem, 1), harness.chunk_size(problem, 1000)
    assert many < one, "a chunk of 1000 seeds must hold fewer states"
    assert harness.state_bytes(problem, 1000) * many <= harness.CHUNK_BYTES
    monkeypatch.setattr(harness, "available_memory", lambda: 2 * 2**30)

    def started(framework, done, total):
        raise AssertionError("a batch too large for memory started training")

    with pytest.raises(harness.TooLarge) as refused:
        check_seeds(
            recipe,
            list(range(5000)),
            ("numpy", "copy"),
            modules={"copy": numpy_manual},
            isolate=False,
            progress=started,
        )
    message = str(refused.value)
    assert "many seeds" in message and "comparisons" in message and "\n" not in message


def test_the_worker_hands_every_seed_its_own_records():
    """The point axis survives the worker: records, synced and own steps keep each seed's
    trajectory (no seed's record is another's)."""
    recipe = Recipe(steps=6)
    batch = check_seeds(
        recipe,
        list(SEEDS),
        ("numpy", "copy"),
        modules={"copy": numpy_manual},
        isolate=False,
        trajectories=True,
        oracles=False,
        chunk=3,
    )
    network = batch[0].network
    drawn = weights.initial_params_batch(recipe, network, SEEDS)
    for point, result in enumerate(batch):
        kept = result.trajectories["numpy"]["weight:W1"]
        np.testing.assert_array_equal(kept[0], drawn["W1"][point], f"seed {SEEDS[point]}")
        assert result.passed
        own = [c for c in result.comparisons if c.against == c.framework == "copy"]
        assert own and all(c.total > 0 for c in own), "own steps compared for every seed"


def _numpy_copy_wrong_at(initial_W1, delta):
    """A NumPy copy (an in-process module) whose W1 gradient is off by a factor 1 + delta at
    one state only: where W1 is ``initial_W1`` (one seed's initial weights), so the bug lives
    in that seed alone, batched or not."""
    module = _numpy_copy_scaled(0.0)
    honest = module.evaluate

    def evaluate(problem, params, X, Y, **options):
        found = honest(problem, params, X, Y, **options)
        W1 = np.asarray(params["W1"], dtype=np.float64)
        hit = (W1.reshape(len(W1), -1) == initial_W1.ravel()).all(axis=1)
        assert hit.shape == found.grads["W1"].shape[:1], "one flag per point"
        scale = np.where(hit, 1 + delta, 1.0).reshape((-1,) + (1,) * (W1.ndim - 1))
        found.grads["W1"] = found.grads["W1"] * scale.astype(found.grads["W1"].dtype)
        return found

    module.evaluate = evaluate
    return module


def test_a_bug_planted_in_one_seed_fails_that_seed_only_with_the_facts_it_has_alone():
    """The judge keeps each seed's facts apart: a wrong gradient at one seed's initial state
    fails that seed (at step 0, as it fails alone) and no other, and every seed's facts are
    the ones its own run finds."""
    recipe = Recipe(steps=8)
    network = recipe.problem(__import__("compare.data").data.load(recipe)).network
    planted = SEEDS[1]
    initial = weights.initial_params(recipe.replace(init_seed=planted), network)["W1"]
    modules = {"planted": _numpy_copy_wrong_at(np.asarray(initial, dtype=np.float64), 1e-3)}
    batch, alone = _alone_and_batched(recipe, ("numpy", "planted"), modules=modules)
    assert [r.verdict for r in batch] == ["pass", "fail", "pass"], "only the planted seed fails"
    failure = batch[1].first_failure
    assert (failure.quantity, failure.first_failing_step) == ("grad:W1", 0), failure
    for seed, batched, single in zip(SEEDS, batch, alone, strict=True):
        got, expected = _facts(batched), _facts(single)
        for key in expected:
            assert got[key] == expected[key], f"seed {seed}: the batch's {key} differs"
