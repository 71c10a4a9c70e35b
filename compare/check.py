"""``check``: cross-check the frameworks on one recipe and reach THE verdict.

This is the library's one owner of the verdict: ``crosscheck run``, ``record``/``check``
(baselines), ``mutants``, the pytest matrix, ``example`` and ``explain`` all judge through it,
and a notebook gets the same verdict with ``from compare import Recipe, check``.

What decides the verdict (the reasoning of every number is in ``compare.tolerances``):

* **Independent mode**: each framework trains alone; its every state is compared with the
  reference's. In float64 every per-state quantity must agree, unless every synced and own
  step agreed and the run measures its trajectory amplifying their rounding
  (``tolerances.drift_is_amplified_rounding``); below float64 the drift is reported
  (``Comparison.gating`` false) and the trained model's test predictions and accuracy must
  agree, unless every test row whose class differs sits on a near tie and the test outputs
  agree within tolerance (rounding broke a tie), or, below float64, each model's class on
  those rows is the one its own weights give (the weights drifted apart, which is reported):
  a ``predict`` that disagrees with its weights fails in every dtype.
* **Synced mode**: each framework takes one full step from the reference's state ``k``, for
  every ``k``; its loss, gradients and correct count at ``k`` and its state after the step
  (parameters and optimizer state) must agree with the reference's. A wrong derivative or a
  wrong update fails at step 0 or 1 in every dtype, with no accumulated drift. A loss or
  gradient element whose terms cancel is allowed the rounding of its terms
  (``compare.term_bounds``, from the reference's state ``k``; another framework's own states
  get theirs when it steps from them), and the next state follows that allowance. The state a
  step records at ``k`` must be the state it was given, exactly but for a subnormal read as
  zero (``tolerances.given_state``; folded into the state's synced comparison), so a record
  one step off fails in every dtype. Every training framework also steps from each of its own
  states: its training loop must agree with its ``step``.
* **Oracles**: every framework's gradient passes the Taylor test and its library's
  finite-difference check at a few of the reference's states (``compare.oracle``).
* **Precision switches**: no framework's precision switches change during the run.

The harness streams records in chunks (``compare.harness``); ``_Judge`` folds each chunk into
accumulators (``compare.agreement``) and drops it, so memory does not grow with the steps.

**Seeds** (``check_seeds``): one harness run trains every seed's initial weights side by side,
as the ``P`` points of each framework's ``train`` (``implementations.contract``); the synced and
own-step jobs step from every seed's state at once. The one ``_Judge`` keeps every fact per
seed: its accumulators take each chunk with its seed axis and keep each seed's greatest error,
first failure, counts, growth and bins apart (``agreement.SeriesAccumulator`` with ``points``),
so one call per chunk and quantity serves every seed, and each seed's ``CheckResult`` is what
``check`` finds for that seed alone; ``check`` is ``check_seeds`` with one seed. The oracles
check gradient formulas, which do not depend on the seed, so they run for the first seed (or
first few, ``oracle_seeds``); ``CheckResult.oracle_seeds`` says which seeds they checked.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np

import implementations
from compare import (
    agreement,
    data,
    harness,
    oracle,
    quantities,
    term_bounds,
    tolerances,
    weights,
)
from compare.agreement import Comparison, PrecisionFacts
from compare.quantities import INDEPENDENT, SYNCED
from compare.recipe import Recipe, RecipeError
from implementations.contract import Network, Problem, initial_state

#: The frameworks ``check`` compares unless told otherwise.
DEFAULT_FRAMEWORKS = ("numpy", "torch", "jax")


class CheckError(RecipeError):
    """An argument of ``check`` that cannot be used; the message is one line for the user."""


@dataclass
class PlotSeries:
    """Small per-step summaries for plots: at most ``agreement.PLOT_POINTS`` bins per series.

    Attributes:
        steps: ``(bins,)``: the first state of each bin.
        loss: Framework -> ``(bins,)``: its loss at the bin's first state (NaN: none there).
        differences: ``(mode, framework, against)`` -> quantity -> ``(bins,)``: the greatest
            ``|a - b|`` of the bin's states (``Comparison``'s keys).
    """

    steps: np.ndarray
    loss: dict[str, np.ndarray]
    differences: dict[tuple[str, str, str], dict[str, np.ndarray]]


@dataclass
class CheckResult:
    """Everything one check found, and its verdict.

    Attributes:
        recipe: What was trained.
        reference: The framework the others are compared with.
        frameworks: Every framework, the reference first.
        mode: ``"independent"``, ``"synced"`` or ``"both"``.
        dtype: The compute dtype.
        verdict: ``"pass"`` or ``"fail"``.
        comparisons: One per mode, framework and quantity.
        precision: Non-finite steps, near ties, precision switches and oracles.
        summaries: Framework -> ``{final_loss, train_accuracy, test_accuracy, seconds}`` of
            every framework that trained (in synced mode, the reference alone).
        test_outputs: Framework -> its trained model's test outputs ``(rows, outputs)``.
        dataset: The data (``compare.data.Dataset``).
        network: The network.
        problem: The problem the implementations were given.
        steps: Number of updates.
        record_every: Every K-th state (and the one after it) was compared.
        tolerances: ``"independent"``, ``"synced"``, ``"next-state"`` -> the rule's numbers:
            ``rtol``, ``atol`` (fixed part), ``scale`` (times the reference's running maximum),
            ``floor`` (the dtype's smallest normal) and ``gradient_floor`` (gradients' floor,
            ``compare.tolerances.flush_floor``). A next-state atol adds a per-element allowance.
        trajectories: Framework -> record -> whole per-state array (first axis the states
            ``trajectory_steps``; per-update records one row shorter), or ``None``.
        trajectory_steps: The state of each row of ``trajectories``.
        series_for_plots: ``PlotSeries``.
        workers: Framework -> the process id its worker ran in.
        stats: What the harness held at most (``harness.RunStats``).
        oracle_seeds: The seeds of the run (``check_seeds``) whose gradients the oracles
            checked; empty when the oracles were off. This seed's ``precision.oracles`` are
            empty unless it is one of them.
        batch_seeds: How many seeds were trained side by side in the run (1 for ``check``); a
            summary's ``seconds`` is this seed's share of its framework's training time.
    """

    recipe: Recipe
    reference: str
    frameworks: tuple[str, ...]
    mode: str
    dtype: str
    verdict: str
    comparisons: list[Comparison]
    precision: PrecisionFacts
    summaries: dict[str, dict[str, float]]
    test_outputs: dict[str, np.ndarray]
    dataset: object
    network: Network
    problem: Problem
    steps: int
    record_every: int
    tolerances: dict[str, dict[str, float]]
    trajectories: dict[str, dict[str, np.ndarray]] | None
    trajectory_steps: np.ndarray | None
    series_for_plots: PlotSeries
    workers: dict[str, int] = field(default_factory=dict)
    stats: harness.RunStats | None = None
    oracle_seeds: tuple[int, ...] = ()
    batch_seeds: int = 1

    @property
    def oracles_checked(self) -> bool:
        """The oracles checked this seed's gradients (``oracle_seeds``)."""
        return self.recipe.init_seed in self.oracle_seeds

    @property
    def passed(self) -> bool:
        """The verdict is ``"pass"``."""
        return self.verdict == "pass"

    @property
    def first_layer_saturation(self) -> float | None:
        """The share of first-layer pre-activations, at the initial parameters on the training
        rows, where the activation is saturated (``data.first_layer_saturation``): large on
        unscaled data, where gradients vanish and 16-bit runs flush them. ``None`` for an
        activation that does not saturate on both sides."""
        params = weights.initial_params(self.recipe, self.network)
        return data.first_layer_saturation(
            self.dataset.X_train, params["W1"], params.get("b1"), self.network.activations[0]
        )

    @property
    def first_failure(self) -> Comparison | None:
        """The failing comparison that decides the verdict and fails earliest.

        Per-state quantities come before those of the trained model (whose step is the end of
        training); ties keep the listed order. ``None`` when every comparison that decides the
        verdict passed (the verdict may still fail on ``precision``: an oracle or a switch).
        """
        failing = [c for c in self.comparisons if c.gating and not c.passed]
        if not failing:
            return None
        return min(failing, key=lambda c: (quantities.is_final(c.quantity), c.first_failing_step))


def verdict(comparisons: Sequence[Comparison], precision: PrecisionFacts) -> str:
    """THE verdict: ``"pass"`` when every comparison that decides it passed, every oracle passed
    and no precision switch changed; else ``"fail"``."""
    passed = all(c.passed for c in comparisons if c.gating)
    return "pass" if passed and precision.passed else "fail"


def _tolerance_argument(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise CheckError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _frameworks(frameworks: Sequence[str], reference: str) -> tuple[str, ...]:
    if isinstance(frameworks, str):
        frameworks = (frameworks,)
    names = tuple(dict.fromkeys([reference, *frameworks]))
    if len(names) < 2:
        raise CheckError(
            f"only {reference} would run, so there is nothing to compare it with: "
            "name a second framework"
        )
    return names


def check(
    recipe: Recipe,
    frameworks: Sequence[str] = DEFAULT_FRAMEWORKS,
    reference: str = "numpy",
    mode: str = "both",
    rtol: float | None = None,
    atol: float | None = None,
    *,
    progress: harness.Progress | None = None,
    trajectories: bool | Sequence[int] = False,
    record_every: int = 1,
    oracles: bool = True,
    modules: Mapping[str, ModuleType] | None = None,
    isolate: bool = True,
    chunk: int | None = None,
) -> CheckResult:
    """Cross-check ``frameworks`` on ``recipe`` against ``reference`` and reach the verdict.

    ``check_seeds`` with the recipe's own initial weights (its ``init_seed``, or its explicit
    weights) as the one seed.

    Args:
        recipe: What to train.
        frameworks: Specs of the frameworks (registry names, plugin paths, modules); the
            reference is added if missing.
        reference: The framework the others are compared with.
        mode: ``"independent"``, ``"synced"`` or ``"both"`` (see the module docstring).
        rtol: Overrides the default relative tolerance of per-state comparisons.
        atol: Overrides the default absolute tolerance (never below the dtype's smallest
            normal number).
        progress: Called as ``progress(framework, states_done, states_total)``.
        trajectories: Keep every framework's whole trajectory (``CheckResult.trajectories``;
            ``compare.trajectories.write`` saves them; memory then grows with the steps), or,
            given states, only the records at those states (what a baseline keeps).
        record_every: Compare and keep every K-th state (and the one after it).
        oracles: Run the gradient oracles.
        modules: Implementations to use instead of the registry's, by name (run in threads of
            this process: how mutants and tests hand in a deliberately wrong one).
        isolate: Run every registered framework in a worker process of its own (else threads).
        chunk: States per chunk (default: ``harness.chunk_size``); changes no fact.

    Raises:
        CheckError: a bad argument (one line).
        RecipeError: the recipe cannot be trained as asked (data, weights; ``harness.Unsupported``:
            outside what an implementation covers).
        implementations.FrameworkUnavailable: a framework is not installed.
        implementations.PluginError: a plugin cannot be used.
        harness.TooLarge: the run would not fit in memory.
        harness.WorkerError: a worker crashed.
        KeyboardInterrupt: Ctrl-C (the workers are killed first).
    """
    return check_seeds(
        recipe,
        None,
        frameworks,
        reference,
        mode,
        rtol,
        atol,
        progress=progress,
        trajectories=trajectories,
        record_every=record_every,
        oracles=oracles,
        modules=modules,
        isolate=isolate,
        chunk=chunk,
    )[0]


def check_seeds(
    recipe: Recipe,
    seeds: Sequence[int] | None,
    frameworks: Sequence[str] = DEFAULT_FRAMEWORKS,
    reference: str = "numpy",
    mode: str = "both",
    rtol: float | None = None,
    atol: float | None = None,
    *,
    progress: harness.Progress | None = None,
    trajectories: bool | Sequence[int] = False,
    record_every: int = 1,
    oracles: bool = True,
    oracle_seeds: Sequence[int] | None = None,
    modules: Mapping[str, ModuleType] | None = None,
    isolate: bool = True,
    chunk: int | None = None,
) -> list[CheckResult]:
    """Cross-check ``recipe`` at every seed of ``seeds`` in one run, each seed's result what
    ``check(recipe.replace(init_seed=seed), ...)`` finds.

    Every framework trains all the seeds' initial weights side by side (one ``train`` call,
    one point per seed) and steps from all of their states at once; each seed is judged
    alone. Memory grows with the number of seeds (the chunks hold fewer states); a run too
    large for the machine is refused up front (``harness.TooLarge``).

    Args:
        recipe: What to train; its ``init_seed`` is replaced by each seed.
        seeds: Initial-weight seeds (integers in ``[0, 2**32)``, no repeats), or ``None`` for
            the recipe's own initial weights (its seed or its explicit weights) alone.
        oracle_seeds: The seeds (among ``seeds``) whose gradients the oracles check; default:
            the first. They check gradient formulas, which do not depend on the seed, so one
            seed is enough; ``CheckResult.oracle_seeds`` names them.
        frameworks, reference, mode, rtol, atol, progress, trajectories, record_every, oracles,
        modules, isolate, chunk: As ``check``.

    Returns:
        One ``CheckResult`` per seed, in the order of ``seeds``.

    Raises:
        As ``check``.
    """
    if not isinstance(recipe, Recipe):
        raise CheckError(f"check takes a compare.Recipe, got {type(recipe).__name__}")
    if mode not in tolerances.MODES:
        raise CheckError(f"unknown mode {mode!r}; choose from {', '.join(tolerances.MODES)}")
    rtol = _tolerance_argument("rtol", rtol)
    atol = _tolerance_argument("atol", atol)
    if isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 1:
        raise CheckError(f"record_every must be a positive integer, got {record_every!r}")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise CheckError(f"chunk must be a positive integer, got {chunk!r}")
    seeds = _seed_list(recipe, seeds)
    points = _oracle_points(seeds, oracle_seeds) if oracles else ()
    names = _frameworks(frameworks, reference)
    modules = dict(modules or {})
    for name in names:
        if name not in modules:
            implementations.check_available(name)
    with harness.Workers(names, modules=modules, isolate=isolate) as workers:
        # The workers import their frameworks while this process loads the data.
        dataset = data.load(recipe)
        problem = recipe.problem(dataset)
        if seeds is None:
            drawn = weights.initial_params(recipe, problem.network)
            params = {name: value[None] for name, value in drawn.items()}
            recipes = [recipe]
        else:
            params = weights.initial_params_batch(recipe, problem.network, seeds)
            recipes = [recipe.replace(init_seed=seed) for seed in seeds]
        initial = initial_state(problem, params)
        others = names[1:]
        plan = harness.Plan(
            problem=problem,
            initial=initial,
            X=np.asarray(dataset.X_train, dtype=np.float64),
            Y=np.asarray(dataset.Y_train, dtype=np.float64),
            X_test=np.asarray(dataset.X_test, dtype=np.float64),
            steps=recipe.steps,
            reference=reference,
            frameworks=names,
            trainers=names if mode != SYNCED else (reference,),
            independent=others if mode != SYNCED else (),
            synced=others if mode != INDEPENDENT else (),
            chunk=chunk or harness.chunk_size(problem, len(recipes)),
            record_every=record_every,
            oracle_states=tuple(oracle.states_to_check(recipe.steps, record_every))
            if oracles
            else (),
            oracle_points=points,
        )
        harness.check_memory(plan, trajectories is True, workers.processes)
        judge = _Judge(plan, mode, rtol, atol, trajectories)
        stats = harness.run(workers, plan, judge, progress)
        pids = {name: handle.pid for name, handle in workers.handles.items()}
    results = judge.results(recipes, dataset, pids)
    with_oracles = tuple(recipes[point].init_seed for point in points)
    for result in results:
        result.stats = stats
        result.oracle_seeds = with_oracles
        result.batch_seeds = len(recipes)
    undecided = [
        point
        for point, result in enumerate(results)
        if judge.first_step_agreed(point) and _drift_undecided(result)
    ]
    if undecided:
        # Float64 drift that failed after the first step, with no synced step to tell a wrong
        # step from amplified rounding: take every step from the reference's states too.
        again = check_seeds(
            recipe,
            None if seeds is None else [seeds[point] for point in undecided],
            names,
            reference,
            "both",
            rtol,
            atol,
            progress=progress,
            trajectories=trajectories,
            record_every=record_every,
            oracles=False,
            modules=modules,
            isolate=isolate,
            chunk=chunk,
        )
        for point, diagnosed in zip(undecided, again, strict=True):
            results[point] = _diagnosed(results[point], diagnosed)
    return results


def _drift_undecided(result: CheckResult) -> bool:
    """Float64, mode ``independent``: whether the run failed on drift alone, first after the
    first step (nothing at state 0, no oracle, no precision switch), where one step's rounding
    may have been amplified by the trajectory: only a synced step can tell (``_diagnosed``).
    (A first step beyond its synced bounds, ``_Judge.first_step_agreed``, needs no more: it
    fails as it is.)"""
    failed = [c for c in result.comparisons if c.gating and not c.passed]
    return (
        result.mode == INDEPENDENT
        and result.dtype == "float64"
        and result.verdict == "fail"
        and result.precision.passed
        and all(c.first_failing_step is not None and c.first_failing_step >= 1 for c in failed)
    )


def _diagnosed(independent: CheckResult, both: CheckResult) -> CheckResult:
    """The mode ``both`` run ``both`` of a recipe whose independent run ``independent`` failed
    on drift (``_drift_undecided``), with the independent run's oracles: its verdict decides
    (a wrong step fails its synced comparisons; drift that its measured one-step differences
    explain is reported, ``tolerances.drift_is_amplified_rounding``)."""
    failed = {c.framework for c in independent.comparisons if c.gating and not c.passed}
    precision = dataclasses.replace(
        both.precision,
        oracles=independent.precision.oracles,
        synced_diagnosis=tuple(name for name in independent.frameworks if name in failed),
    )
    return dataclasses.replace(
        both,
        precision=precision,
        verdict=verdict(both.comparisons, precision),
        oracle_seeds=independent.oracle_seeds,
    )


def _oracle_points(seeds: list[int] | None, oracle_seeds: Sequence[int] | None) -> tuple:
    """The points (positions in ``seeds``) of the seeds the oracles check."""
    if oracle_seeds is None:
        return (0,)
    if seeds is None:
        seeds = []
    if isinstance(oracle_seeds, (str, bytes)) or not isinstance(oracle_seeds, Sequence):
        raise CheckError(f"oracle_seeds must be a list of seeds, got {oracle_seeds!r:.60}")
    unknown = [seed for seed in oracle_seeds if seed not in seeds]
    if unknown:
        raise CheckError(f"oracle seed {unknown[0]!r:.60} is not one of the seeds checked")
    return tuple(sorted({seeds.index(seed) for seed in oracle_seeds}))


def _seed_list(recipe: Recipe, seeds: Sequence[int] | None) -> list[int] | None:
    if seeds is None:
        return None
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds:
        raise CheckError(f"seeds must be a non-empty list of integers, got {seeds!r:.60}")
    if recipe.explicit_weights:
        raise CheckError("the recipe gives explicit initial weights, so there is no seed to vary")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise CheckError(f"a seed must be an integer, got {seed!r:.60}")
        if not 0 <= seed < 2**32:
            raise CheckError(f"a seed must be in [0, 2**32), got {seed}")
    if len(set(seeds)) != len(seeds):
        raise CheckError("seeds must not repeat")
    return [int(seed) for seed in seeds]


def trained_model_comparisons(
    framework: str,
    reference: str,
    actual_outputs: np.ndarray,
    expected_outputs: np.ndarray,
    labels: np.ndarray,
    rule: tolerances.Rule,
    *,
    dtype: str,
    drift_gates: bool,
    step: int,
    weights_outputs: tuple[np.ndarray, np.ndarray] | None = None,
) -> list[Comparison]:
    """Compare a trained model's test outputs, classes and accuracy with the reference's.

    The outputs decide the verdict when drift does (``drift_gates``); the classes and accuracy
    always do, with two exceptions, both reported as drift is:

    * every test row whose class differs sits on a near tie of the reference's outputs
      (``agreement.near_tie_rows``) *and* the outputs agree within ``rule``: the models are the
      same to tolerance and rounding broke a tie;
    * drift does not decide (below float64) and on every such row each model's class is the
      one its own trained weights give (``agreement.classes_of_own_weights``, from
      ``weights_outputs``): the classes differ because the weights drifted apart, and the
      weights' drift is reported, not judged, there. A ``predict`` that disagrees with its own
      weights still fails in every dtype; a wrong update fails the synced step.

    Args:
        framework: The framework compared.
        reference: The reference framework.
        actual_outputs: Its model's test outputs ``(rows, outputs)``.
        expected_outputs: The reference model's.
        labels: The test rows' classes.
        rule: The independent rule (also what a near tie is).
        dtype: The compute dtype.
        drift_gates: Whether per-state drift decides the verdict (``drift_is_verdict``).
        step: The number of steps (the trained model's step).
        weights_outputs: The float64 forward of the framework's and the reference's final
            weights on the test rows, or ``None`` (only the near-tie exception applies).
    """
    actual_outputs = np.asarray(actual_outputs, dtype=np.float64)
    expected_outputs = np.asarray(expected_outputs, dtype=np.float64)
    classes = (np.argmax(actual_outputs, axis=-1), np.argmax(expected_outputs, axis=-1))
    values = {
        "test_outputs": (actual_outputs, expected_outputs),
        "test_predictions": classes,
        "test_accuracy": tuple(np.array(np.mean(c == labels)) for c in classes),
    }
    facts = {}
    for q in quantities.final():
        exact = quantities.is_exact(q)
        accumulator = agreement.SeriesAccumulator(dtype, step, exact=exact, per_state=False)
        actual, expected = values[q]
        accumulator.add(
            np.array([step]),
            np.asarray(actual, dtype=np.float64)[None],
            np.asarray(expected, dtype=np.float64)[None],
            0.0 if exact else rule.atol_at(0.0),
            0.0 if exact else rule.rtol,
        )
        facts[q] = accumulator.facts()
    differing = classes[0] != classes[1]
    ties = agreement.near_tie_rows(expected_outputs, rule)
    outputs_agree = facts["test_outputs"]["first_failing_step"] is None
    explained = bool(differing.any() and np.all(ties[differing])) and outputs_agree
    if weights_outputs is not None and not drift_gates and differing.any():
        own = agreement.classes_of_own_weights(actual_outputs, weights_outputs[0], rule)
        theirs = agreement.classes_of_own_weights(expected_outputs, weights_outputs[1], rule)
        explained = explained or bool(np.all((own & theirs)[differing]))
    return [
        Comparison(
            framework=framework,
            against=reference,
            mode=INDEPENDENT,
            quantity=q,
            rtol=0.0 if quantities.is_exact(q) else rule.rtol,
            gating=(not explained) if quantities.is_exact(q) else drift_gates,
            **facts[q],
        )
        for q in quantities.final()
    ]


class _Judge:
    """The consumer of the harness's records: the accumulators of every comparison, each with
    the plan's point (seed) axis.

    Every record arrives ``(n, P, ...)`` (``harness.Consumer``); each accumulator keeps every
    fact per point (``agreement.SeriesAccumulator``), so one call per chunk and quantity
    serves every seed, and ``results`` gives each seed the ``CheckResult`` it would get alone.
    """

    def __init__(
        self,
        plan: harness.Plan,
        mode: str,
        rtol: float | None,
        atol: float | None,
        keep_trajectories: bool | Sequence[int],
    ) -> None:
        self.plan = plan
        self.problem = problem = plan.problem
        self.points = points = plan.points
        self.mode = mode
        self.dtype = dtype = problem.dtype
        batches = problem.batches
        largest_batch = batches.rows if batches.full else min(batches.size, batches.rows)
        self.rules = {
            "independent": tolerances.independent(dtype, rtol, atol),
            "synced": tolerances.synced(dtype, largest_batch, rtol, atol),
            "next-state": tolerances.next_state(dtype, rtol, atol),
        }
        input_scale = float(np.max(np.abs(plan.X), initial=0.0))
        self.flush_floor = tolerances.flush_floor(
            dtype, largest_batch, input_scale, problem.network.widths
        )
        self.accumulators: dict[tuple[str, str, str], agreement.SeriesAccumulator] = {}
        # (framework, against, state quantity) -> a step's recorded state against the state it
        # was given; folded into the synced next-state comparison of that quantity.
        self.given: dict[tuple[str, str, str], agreement.SeriesAccumulator] = {}
        self.given_atol = tolerances.given_state(dtype).atol_at(0.0)
        floats = [q for q in quantities.records_at_state(problem) if not quantities.is_exact(q)]
        self.scales = {q: agreement.RunningMax(points) for q in floats}
        self.own_running = {
            name: {q: agreement.RunningMax(points) for q in floats} for name in plan.trainers
        }
        self.own_scales: dict[str, tuple[np.ndarray, dict]] = {}
        self.nonfinite = {name: agreement.NonfiniteTracker(points) for name in plan.trainers}
        self.loss_bins = {
            name: agreement.BinnedSeries(plan.steps + 1, reduce="first", seeds=points)
            for name in plan.trainers
        }
        # Framework -> ``(P,)``: each point's loss at the last state.
        self.final_loss: dict[str, np.ndarray] = {}
        # Framework -> parameter -> ``(P, ...)``: each point's trained parameters.
        self.final_params: dict[str, dict[str, np.ndarray]] = {}
        self.finished: dict[str, dict] = {}
        # Point -> framework -> its oracle results (only the plan's oracle points have any).
        self.oracles: dict[int, dict[str, list]] = {}
        self.readings: dict[str, list[tuple[str, dict]]] = {name: [] for name in plan.frameworks}
        self.kept: dict[str, dict[str, list]] | None = (
            {name: {q: [] for q in problem.record_names()} for name in plan.trainers}
            if keep_trajectories is not False
            else None
        )
        # The states kept (None: all of them).
        self.kept_only = (
            None
            if isinstance(keep_trajectories, bool)
            else np.unique(np.asarray(list(keep_trajectories), dtype=np.int64))
        )
        self.kept_steps: list[np.ndarray] = []
        # Float64 runs with no synced step: the first state at which one correct step may move
        # a parameter beyond the independent tolerance (``_note_onset``), and the reference's
        # last state of the previous chunk with its scales, to pair with the next chunk's first.
        self.watch_onset = dtype == "float64" and bool(plan.independent) and not plan.synced
        self.onset = np.full(self.points or 1, -1, dtype=np.int64)  # per point; -1: none
        self.last_reference: tuple[np.ndarray, dict, dict] | None = None
        # The first step starts from the shared initial state: the reference's records at
        # states 0 and 1 with its scales at 0, and whether each framework's state 1 is what its
        # update makes of its measured gradient (``_first_step``).
        self.first_step_reference: tuple[dict, dict, dict] | None = None
        self.first_step_ok: dict[str, np.ndarray] = {}  # framework -> (P,)
        self.weights_outputs: dict[str, np.ndarray] | None = None
        self.watched = (
            "loss",
            *(q for q in problem.record_names() if quantities.parameter(q) is not None),
        )

    def _rule(self, name: str, quantity: str) -> tolerances.Rule:
        """The rule ``name`` for ``quantity``, its floor raised for row sums (gradients)."""
        rule = self.rules[name]
        if quantities.kind_of(quantity).row_sum:
            return dataclasses.replace(rule, floor=max(rule.floor, self.flush_floor))
        return rule

    def _accumulator(self, mode: str, framework: str, against: str, quantity: str):
        key = (mode, framework, against, quantity)
        if key not in self.accumulators:
            last = self.plan.steps
            if mode == SYNCED and quantities.synced_role(quantity) == quantities.NEXT_STATE:
                last = max(self.plan.steps - 1, 0)
            self.accumulators[key] = agreement.SeriesAccumulator(
                self.dtype,
                last,
                exact=quantities.is_exact(quantity),
                per_state=not quantities.is_final(quantity),
                points=self.points,
            )
        return self.accumulators[key]

    # -- the harness's callbacks ----------------------------------------------------------------

    def reference_chunk(self, steps: np.ndarray, records: dict) -> dict:
        # Each synced record's atol scales with the running maximum of the reference's magnitude
        # (causal: see compare.tolerances), computed once here in state order.
        scales = {q: running.update(records[q]) for q, running in self.scales.items()}
        if self.watch_onset and (self.onset < 0).any():
            self._note_onset(steps, records, scales)
        annotations = {("scale", q): values for q, values in scales.items()}
        if self.plan.synced:
            # And is at least what the rounding of the terms summed at state k allows
            # (compare.term_bounds), from the reference's state k alone.
            annotations.update(self._term_bounds(steps, records))
        return annotations

    def _note_onset(self, steps: np.ndarray, records: dict, scales: dict) -> None:
        """Find the first state ``k + 1`` whose step from the reference's state ``k`` may move a
        parameter element beyond the independent tolerance (the synced next-state allowance
        against the independent rule: ``tolerances.step_outgrows_independent``)."""
        problem = self.problem
        parameters = tuple(problem.network.param_quantities.values())
        if self.last_reference is not None:
            last_steps, last_records, last_scales = self.last_reference
            steps = np.concatenate([last_steps, steps])
            records = {q: np.concatenate([last_records[q], records[q]]) for q in last_records}
            scales = {q: np.concatenate([last_scales[q], scales[q]]) for q in last_scales}
        self.last_reference = (
            steps[-1:],
            {q: np.array(v[-1:]) for q, v in records.items()},
            {q: np.array(v[-1:]) for q, v in scales.items()},
        )
        pairs = np.nonzero(np.diff(steps) == 1)[0]
        if not len(pairs):
            return
        before = {q: v[pairs] for q, v in records.items()}
        outgrown = np.zeros((len(pairs), self.onset.size), dtype=bool)
        first = np.nonzero(steps[pairs] == 0)[0]
        if len(first):
            at = pairs[first[0]]
            self.first_step_reference = (
                {q: v[at] for q, v in records.items()},
                {q: v[at + 1] for q, v in records.items()},
                {q: v[at] for q, v in scales.items()},
            )
        for q in quantities.next_state(problem):
            if quantities.is_exact(q):
                continue
            gradient = quantities.gradient_of(q)
            grad_rule = self._rule("synced", gradient)
            grad = before[gradient]
            scale = scales[gradient][pairs]
            scale = scale.reshape(scale.shape + (1,) * (grad.ndim - scale.ndim))
            with np.errstate(invalid="ignore", over="ignore"):
                allowance = self._step_allowance(
                    q,
                    before,
                    records[q][pairs + 1],
                    grad_rule.atol_at(scale) + grad_rule.rtol * np.abs(grad),
                )
                if q in parameters:
                    outgrown |= tolerances.step_outgrows_independent(
                        allowance, grad, records[q][pairs + 1], self.rules["independent"], lead=2
                    )
        found = (self.onset < 0) & outgrown.any(axis=0)
        first = np.argmax(outgrown, axis=0)
        self.onset[found] = steps[pairs[first[found]]] + 1

    def _step_allowance(
        self, q: str, before: dict, after: np.ndarray, grad_allowed: np.ndarray
    ) -> np.ndarray:
        """``tolerances.update_allowance`` of the next-state quantity ``q`` for steps from the
        records ``before`` (state ``k``: gradient, parameter, step count, buffers) to ``after``
        (its value at ``k + 1``), the gradient allowed ``grad_allowed``."""
        problem = self.problem
        parameter = quantities.parameter(q)
        return tolerances.update_allowance(
            problem.optimizer,
            quantities.buffer(q),
            self.dtype,
            grad=before[quantities.gradient_of(q)],
            grad_allowed=grad_allowed,
            param=before[problem.network.param_quantities[parameter]],
            change=np.abs(after - before[q]),
            count=before.get(quantities.STEP_COUNT),
            buffers={
                buffer: before[name]
                for buffer, name in quantities.optimizer_buffers(problem, parameter).items()
            },
        )

    def _term_bounds(self, steps: np.ndarray, records: dict) -> dict:
        """``("terms", q)`` -> ``(n, ...)``: the allowance of the loss and every gradient
        element at the states ``steps`` held in ``records`` (``compare.term_bounds``)."""
        plan, points = self.plan, self.onset.size
        # The states of every point side by side: ``(n, P, ...)`` as ``n * P`` states, each
        # point at state k on step k's batch.
        flat = {
            q: np.asarray(records[q]).reshape((-1, *np.shape(records[q])[2:]))
            for q in self.problem.network.param_quantities.values()
        }
        found = term_bounds.state_bounds(
            self.problem, flat, plan.X, plan.Y, np.repeat(np.asarray(steps), points)
        )
        return {
            ("terms", q): term_bounds.allowance(bound).reshape(
                (len(steps), points, *bound.shape[1:])
            )
            for q, bound in found.items()
        }

    def framework_chunk(self, framework: str, steps: np.ndarray, records: dict) -> None:
        self.nonfinite[framework].add(steps, records, self.watched)
        self.loss_bins[framework].add(steps, records["loss"])
        if self.plan.synced:
            # The framework's own running maxima, for the step from its own states (the
            # previous chunk's last state kept: the first own step may start there).
            running = {
                q: tracker.update(records[q]) for q, tracker in self.own_running[framework].items()
            }
            previous = self.own_scales.get(framework)
            if previous is not None and len(previous[0]):
                steps = np.concatenate([previous[0][-1:], steps])
                running = {q: np.concatenate([previous[1][q][-1:], v]) for q, v in running.items()}
            self.own_scales[framework] = (steps, running)
        if len(steps) and steps[-1] == self.plan.steps:
            self.final_loss[framework] = np.array(records["loss"][-1], dtype=np.float64)
            self.final_params[framework] = {
                name: np.array(records[q][-1])
                for name, q in self.problem.network.param_quantities.items()
            }
        if self.kept is not None:
            chosen = slice(None) if self.kept_only is None else np.isin(steps, self.kept_only)
            for q, kept in self.kept[framework].items():
                kept.append(np.array(records[q][chosen]))
            if framework == self.plan.reference:
                self.kept_steps.append(np.array(steps[chosen]))

    def independent(self, framework: str, steps: np.ndarray, actual: dict, expected: dict) -> None:
        batches = self.problem.batches
        if self.watch_onset:
            self._first_step(framework, steps, actual, expected)
        for q in quantities.per_state(self.problem, INDEPENDENT):
            rule = self._rule("independent", q)
            exact = quantities.is_exact(q)
            a = quantities.values(q, actual, steps, batches)
            b = quantities.values(q, expected, steps, batches)
            self._accumulator(INDEPENDENT, framework, self.plan.reference, q).add(
                steps,
                a,
                b,
                self._count_atol(q, steps, a, b, expected) if exact else rule.atol_at(0.0),
                0.0 if exact else rule.rtol,
            )

    def _first_step(self, framework: str, steps: np.ndarray, actual: dict, expected: dict) -> None:
        """Whether ``framework``'s state 1 is within what a correct update makes of its state-0
        gradient: its first step starts from the shared initial state, so its gradient's
        difference from the reference's is measured there (and judged by the independent rule at
        state 0), and the update may move each element of state 1 by its response to that
        difference (``tolerances.update_allowance`` with the measured difference, where it
        exceeds the synced gradient tolerance). A wrong update or learning rate fails here
        however far the later drift may legitimately go."""
        if self.first_step_reference is None:
            return
        at = np.nonzero(steps == 0)[0], np.nonzero(steps == 1)[0]
        if not len(at[0]) or not len(at[1]):
            return
        i, j = int(at[0][0]), int(at[1][0])
        before, after, scales = self.first_step_reference
        problem, rule, ok = self.problem, self.rules["next-state"], True
        # Every array below is ``(P, ...)``: the points stand where update_allowance's states do.
        points = self.onset.size
        ok = np.ones(points, dtype=bool)
        for q in quantities.next_state(problem):
            a, b = np.asarray(actual[q][j], float), np.asarray(after[q], float)
            if quantities.is_exact(q):
                ok &= (a == b).reshape(points, -1).all(axis=1)
                continue
            gradient = quantities.gradient_of(q)
            grad_rule = self._rule("synced", gradient)
            grad = np.asarray(before[gradient], float)
            scale = np.asarray(scales[gradient], float)
            scale = scale.reshape(scale.shape + (1,) * (grad.ndim - scale.ndim))
            with np.errstate(invalid="ignore", over="ignore"):
                measured = np.abs(np.asarray(actual[gradient][i], float) - grad)
                tau = grad_rule.atol_at(scale) + grad_rule.rtol * np.abs(grad)
                allowance = self._step_allowance(
                    q, before, b, np.maximum(tau, np.nan_to_num(measured, nan=0.0))
                )
                allowed = np.maximum(rule.floor, rule.atol + np.nan_to_num(allowance, nan=0.0))
                error = agreement.absolute_error(a, b)  # 0 where both are non-finite
                close = (error == 0) | (error <= allowed + rule.rtol * np.abs(b))
                ok &= close.reshape(points, -1).all(axis=1)
        self.first_step_ok[framework] = ok

    def first_step_agreed(self, point: int) -> bool:
        """Whether every framework's first step checked by ``_first_step`` at ``point`` was
        within its synced bounds (true where none was checked)."""
        return all(bool(ok[point]) for ok in self.first_step_ok.values())

    def synced_records(
        self, framework: str, steps: np.ndarray, actual: dict, expected: dict
    ) -> None:
        scales = {q: expected[("scale", q)] for q in self.scales}
        self._step_records(framework, self.plan.reference, steps, actual, expected, scales)

    def synced_next(
        self, framework: str, steps: np.ndarray, actual: dict, expected: dict, before: dict
    ) -> None:
        scales = {q: before[("scale", q)] for q in self.scales}
        self._step_next(framework, self.plan.reference, steps, actual, expected, before, scales)

    def own_step(
        self,
        framework: str,
        steps: np.ndarray,
        actual: dict,
        actual_next: dict,
        expected: dict,
        expected_next: dict,
    ) -> None:
        chunk_steps, running = self.own_scales[framework]
        at = np.searchsorted(chunk_steps, steps)
        scales = {q: values[at] for q, values in running.items()}
        if framework != self.plan.reference:
            # The reference's records carry their term allowances; another framework's own
            # states get theirs here, from those states alone.
            expected = {**expected, **self._term_bounds(steps, expected)}
        self._step_records(framework, framework, steps, actual, expected, scales)
        self._step_next(framework, framework, steps, actual_next, expected_next, expected, scales)

    def _step_records(
        self,
        framework: str,
        against: str,
        steps: np.ndarray,
        actual: dict,
        expected: dict,
        scales: dict,
    ) -> None:
        """One step's records at state ``k`` against ``against``'s records at ``k``."""
        batches = self.problem.batches
        for q in self.problem.state_names():
            # The state a step records at k is the state it was given, exactly, in every dtype
            # (the given state is already a number of the dtype; a subnormal may read as zero):
            # a step that records another state (one step off) fails here even where one
            # update is below the tolerance.
            key = (framework, against, q)
            if key not in self.given:
                self.given[key] = agreement.SeriesAccumulator(
                    self.dtype, self.plan.steps, points=self.points
                )
            self.given[key].add(steps, actual[q], expected[q], self.given_atol, 0.0)
        for q in quantities.records_at_state(self.problem):
            rule = self._rule("synced", q)
            exact = quantities.is_exact(q)
            a = quantities.values(q, actual, steps, batches)
            b = quantities.values(q, expected, steps, batches)
            self._accumulator(SYNCED, framework, against, q).add(
                steps,
                a,
                b,
                self._count_atol(q, steps, a, b, expected)
                if exact
                else self._record_atol(rule, q, scales[q], expected),
                0.0 if exact else rule.rtol,
            )

    def _count_atol(
        self, quantity: str, steps: np.ndarray, actual: np.ndarray, expected: np.ndarray, records
    ) -> np.ndarray | float:
        """An exact per-state quantity's atol: 0, except for a share of the batch's rows (the
        training accuracy) at the states where the two differ, where it is the share of the
        batch's rows that are near ties at ``records``' state (``_near_tie_counts``) plus half
        a row. Only those rows' classes may be decided by the rounding of one forward pass
        (``agreement.near_tie_rows``: the rule the test classes follow); a correct count that
        differs by more rows is a wrong count or a wrong forward and still fails. Counts are
        integers: any allowance in ``[ties, ties + 1)`` rows accepts the same counts, and the
        half row keeps the division by the batch's rows from rounding a difference of exactly
        ``ties`` rows above it."""
        if quantities.kind_of(quantity).record is None or self.dtype != "float64":
            # Below float64 the count is reported, never gating (``tolerances.synced_gates``;
            # independent drift is reported): the forwards would change no verdict.
            return 0.0
        differ = np.asarray(actual) != np.asarray(expected)
        if not differ.any():
            return 0.0
        at = np.nonzero(differ)  # (state, point) pairs, or states without a point axis
        ties = self._near_tie_counts(np.asarray(steps)[at[0]], at, records)
        rows = quantities.batch_rows(self.problem.batches, np.asarray(steps)[at[0]])
        atol = np.zeros(differ.shape)
        atol[at] = (ties + 0.5) / rows
        return atol

    def _near_tie_counts(self, steps: np.ndarray, at: tuple, records: dict) -> np.ndarray:
        """``(m,)``: at each of ``m`` states (``records``' parameters indexed by ``at``, each
        on its step's batch), how many of the batch's rows are near ties
        (``agreement.near_tie_rows`` under the independent rule) in the float64 forward of
        that state's weights by the NumPy reference, one forward per batch for all the states
        on it (every state on the whole training set in full-batch training), in groups that
        hold at most ``term_bounds.GROUP_ELEMENTS`` activations."""
        from implementations import numpy_manual  # NumPy only, loaded when counts differ

        problem = dataclasses.replace(self.problem, dtype="float64")
        batches = problem.batches
        params = {
            name: np.asarray(records[q])[at] for name, q in problem.network.param_quantities.items()
        }
        counts = np.zeros(len(steps), dtype=np.int64)
        groups = [np.arange(len(steps))] if batches.full else None
        if groups is None:
            groups = [np.flatnonzero(steps == step) for step in np.unique(steps)]
        # At most ``term_bounds.GROUP_ELEMENTS`` activations held at once.
        size = max(1, term_bounds.GROUP_ELEMENTS // (batches.rows * max(problem.network.widths)))
        groups = [group[i : i + size] for group in groups for i in range(0, len(group), size)]
        for group in groups:
            X = self.plan.X[batches.indices(int(steps[group[0]]))]
            with np.errstate(all="ignore"):
                outputs = numpy_manual.predict(
                    problem, {name: v[group] for name, v in params.items()}, X
                )
            counts[group] = agreement.near_tie_rows(outputs, self.rules["independent"]).sum(-1)
        return counts

    @staticmethod
    def _record_atol(
        rule: tolerances.Rule, quantity: str, scale: np.ndarray, records: dict
    ) -> np.ndarray:
        """A synced record's atol at its states: the rule's (from the running maximum), per
        element at least the allowance of its terms' rounding where the records carry one."""
        atol = rule.atol_at(scale)
        terms = records.get(("terms", quantity))
        if terms is None:
            return atol
        return np.maximum(atol.reshape(atol.shape + (1,) * (terms.ndim - atol.ndim)), terms)

    def _step_next(
        self,
        framework: str,
        against: str,
        steps: np.ndarray,
        actual: dict,
        expected: dict,
        before: dict,
        scales: dict,
    ) -> None:
        """One step's next state against ``against``'s state ``k + 1``; ``before`` holds its
        records at ``k`` (state and gradient), from which the allowance is derived."""
        problem, rule = self.problem, self.rules["next-state"]
        for q in quantities.next_state(problem):
            accumulator = self._accumulator(SYNCED, framework, against, q)
            if quantities.is_exact(q):
                accumulator.add(steps, actual[q], expected[q], 0.0, 0.0)
                continue
            gradient = quantities.gradient_of(q)
            grad_rule = self._rule("synced", gradient)
            grad = before[gradient]
            grad_atol = self._record_atol(grad_rule, gradient, scales[gradient], before)
            grad_atol = grad_atol.reshape(grad_atol.shape + (1,) * (grad.ndim - grad_atol.ndim))
            with np.errstate(invalid="ignore", over="ignore"):
                allowance = self._step_allowance(
                    q, before, expected[q], grad_atol + grad_rule.rtol * np.abs(grad)
                )
            atol = np.maximum(rule.floor, rule.atol + np.where(np.isnan(allowance), 0.0, allowance))
            # Where the gradient may overflow the dtype (an infinite atol), so may the step.
            atol = np.where(np.isposinf(grad_atol), np.inf, atol)
            accumulator.add(steps, actual[q], expected[q], atol, rule.rtol)

    def trained(self, framework: str, facts: dict) -> None:
        self.finished[framework] = facts

    def oracle(self, framework: str, state: int, point: int, results: list) -> None:
        found = self.oracles.setdefault(point, {name: [] for name in self.plan.frameworks})
        found[framework].extend(results)

    def environment(self, framework: str, when: str, switches: dict) -> None:
        self.readings[framework].append((when, switches))

    # -- the verdict ----------------------------------------------------------------------------

    def _comparison(
        self, mode: str, framework: str, against: str, quantity: str, gating: bool, point: int
    ) -> Comparison:
        accumulator = self.accumulators[(mode, framework, against, quantity)]
        facts = accumulator.facts(point)
        given = self.given.get((framework, against, quantity)) if mode == SYNCED else None
        if given is not None:
            facts = agreement.merge_facts(facts, given.facts(point))
        if quantities.is_exact(quantity):
            rtol = 0.0
        elif mode == INDEPENDENT:
            rtol = self.rules["independent"].rtol
        elif quantities.synced_role(quantity) == quantities.RECORD:
            rtol = self.rules["synced"].rtol
        else:
            rtol = self.rules["next-state"].rtol
        return Comparison(
            framework=framework,
            against=against,
            mode=mode,
            quantity=quantity,
            rtol=rtol,
            gating=gating,
            **facts,
        )

    def _gating(self, mode: str, quantity: str) -> bool:
        if mode == INDEPENDENT:
            return tolerances.drift_is_verdict(self.dtype, self.mode)
        if quantities.synced_role(quantity) == quantities.RECORD:
            return tolerances.synced_gates(self.dtype, quantities.is_exact(quantity))
        return True

    def _per_state(self, mode: str, framework: str, against: str, point: int) -> list[Comparison]:
        return [
            self._comparison(mode, framework, against, q, self._gating(mode, q), point)
            for q in quantities.per_state(self.problem, mode)
            if (mode, framework, against, q) in self.accumulators
        ]

    def results(
        self, recipes: Sequence[Recipe], dataset, workers: dict[str, int]
    ) -> list[CheckResult]:
        """One ``CheckResult`` per point, ``recipes[p]`` the recipe of point ``p``: what the
        point's facts alone decide."""
        plan = self.plan
        labels_train = np.asarray(dataset.labels_train)
        labels_test = np.asarray(dataset.labels_test)
        outputs = {name: self.finished[name]["test_outputs"] for name in plan.trainers}
        # Every point's accuracies at once: ``(P,)`` per trainer.
        accuracy = {
            name: (
                np.mean(np.argmax(self.finished[name]["train_outputs"], -1) == labels_train, -1),
                np.mean(np.argmax(outputs[name], -1) == labels_test, -1),
            )
            for name in plan.trainers
        }
        shared = {
            "environment": {
                name: readings[0][1] if readings else {} for name, readings in self.readings.items()
            },
            "environment_changes": agreement.environment_changes(self.readings),
            "tolerances": {
                name: {
                    "rtol": r.rtol,
                    "atol": r.atol,
                    "scale": r.scale,
                    "floor": r.floor,
                    "gradient_floor": max(r.floor, self.flush_floor),
                }
                for name, r in self.rules.items()
            },
        }
        trajectories, trajectory_steps = self._trajectories()
        return [
            self._result(
                point,
                recipe,
                dataset,
                workers,
                outputs={name: values[point] for name, values in outputs.items()},
                accuracy={name: (a[point], b[point]) for name, (a, b) in accuracy.items()},
                shared=shared,
                trajectories=None
                if trajectories is None
                else {
                    name: {q: values[:, point] for q, values in kept.items()}
                    for name, kept in trajectories.items()
                },
                trajectory_steps=trajectory_steps,
            )
            for point, recipe in enumerate(recipes)
        ]

    def _result(
        self,
        point: int,
        recipe: Recipe,
        dataset,
        workers: dict[str, int],
        *,
        outputs: dict[str, np.ndarray],
        accuracy: dict[str, tuple[float, float]],
        shared: dict,
        trajectories: dict | None,
        trajectory_steps: np.ndarray | None,
    ) -> CheckResult:
        plan, problem = self.plan, self.problem
        reference = plan.reference
        comparisons: list[Comparison] = []
        expected_outputs = outputs[reference]
        synced: list[Comparison] = []
        for framework in plan.synced:
            synced += self._per_state(SYNCED, framework, reference, point)
        if plan.synced:
            for framework in plan.trainers:
                synced += self._per_state(SYNCED, framework, framework, point)
        amplification, drift_reported = self._amplification(synced, point)
        weights_outputs: dict[str, np.ndarray] = {}
        for framework in plan.independent:
            drift_gates = tolerances.drift_is_verdict(self.dtype, self.mode)
            drifted = self._per_state(INDEPENDENT, framework, reference, point)
            if framework in drift_reported or self._drift_past_onset(framework, drifted, point):
                drift_reported += () if framework in drift_reported else (framework,)
                drift_gates = False
                drifted = [dataclasses.replace(c, gating=False) for c in drifted]
            if not drift_gates and not weights_outputs:
                weights_outputs = {
                    name: values[point] for name, values in self._weights_outputs().items()
                }
            comparisons += drifted
            comparisons += trained_model_comparisons(
                framework,
                reference,
                outputs[framework],
                expected_outputs,
                np.asarray(dataset.labels_test),
                self.rules["independent"],
                dtype=self.dtype,
                drift_gates=drift_gates,
                step=plan.steps,
                weights_outputs=(weights_outputs[framework], weights_outputs[reference])
                if weights_outputs
                else None,
            )
        comparisons += synced
        precision = PrecisionFacts(
            mode=self.mode,
            dtype=self.dtype,
            nonfinite=agreement.nonfinite_facts(
                {name: tracker.first(point) for name, tracker in self.nonfinite.items()}
            ),
            near_ties=agreement.near_tie_facts(plan.reference, outputs, self.rules["independent"])
            if len(outputs) > 1
            else {},
            environment=shared["environment"],
            environment_changes=shared["environment_changes"],
            oracles=self.oracles.get(point, {name: [] for name in plan.frameworks}),
            amplification=amplification,
            drift_reported=drift_reported,
            amplifying_from=(
                int(self.onset[point]) if self.watch_onset and self.onset[point] >= 0 else None
            ),
        )
        summaries = {
            name: {
                "final_loss": float(self.final_loss[name][point]),
                "train_accuracy": float(accuracy[name][0]),
                "test_accuracy": float(accuracy[name][1]),
                # Each point's share of the time its framework took to train them all.
                "seconds": float(self.finished[name]["seconds"]) / self.points,
            }
            for name in plan.trainers
        }
        any_bins = next(iter(self.loss_bins.values()))
        differences: dict[tuple[str, str, str], dict[str, np.ndarray]] = {}
        for (mode, framework, against, q), accumulator in self.accumulators.items():
            if not quantities.is_final(q):
                # Series of steps (one fewer than states) are binned with their own width: read
                # each at the bin holding the loss bins' first states, so all share one x axis.
                values = accumulator.bins.values[:, point]
                at = np.minimum(any_bins.steps // accumulator.bins.width, len(values) - 1)
                differences.setdefault((mode, framework, against), {})[q] = values[at]
        series = PlotSeries(
            steps=any_bins.steps,
            loss={name: bins.values[:, point] for name, bins in self.loss_bins.items()},
            differences=differences,
        )
        return CheckResult(
            recipe=recipe,
            reference=plan.reference,
            frameworks=plan.frameworks,
            mode=self.mode,
            dtype=self.dtype,
            verdict=verdict(comparisons, precision),
            comparisons=comparisons,
            precision=precision,
            summaries=summaries,
            test_outputs=outputs,
            dataset=dataset,
            network=problem.network,
            problem=problem,
            steps=plan.steps,
            record_every=plan.record_every,
            tolerances=shared["tolerances"],
            trajectories=trajectories,
            trajectory_steps=trajectory_steps,
            series_for_plots=series,
            workers=workers,
        )

    def _drift_past_onset(self, framework: str, drifted: list[Comparison], point: int) -> bool:
        """Float64 with no synced step: whether ``framework``'s first step agreed within the
        synced bounds (``_first_step``) and every drifted quantity first failed at or after the
        state from which one correct step may already exceed the independent tolerance
        (``self.onset``). Those differences cannot be told from amplified rounding without a
        synced step, so they are reported; drift before it is judged."""
        failing = [c.first_failing_step for c in drifted if c.gating and not c.passed]
        onset = int(self.onset[point])
        return (
            self.watch_onset
            and onset >= 0
            and bool(self.first_step_ok.get(framework, np.zeros(point + 1, bool))[point])
            and bool(failing)
            and all(step is not None and step >= onset for step in failing)
        )

    def _amplification(
        self, synced: list[Comparison], point: int
    ) -> tuple[dict[str, float], tuple[str, ...]]:
        """Per framework checked both ways in float64, how far its trajectory amplified the
        one-step differences (``tolerances.amplification``, over the parameters), and the
        frameworks whose drift is therefore reported (``drift_is_amplified_rounding``), at
        point ``point``."""
        plan = self.plan
        if self.dtype != "float64" or not plan.synced:
            return {}, ()
        parameters = set(self.problem.network.param_quantities.values())
        amplification, reported = {}, []
        for framework in plan.independent:
            if framework not in plan.synced:
                continue
            mine = [c for c in synced if c.framework in (framework, plan.reference)]
            steps_agree = all(c.passed for c in mine if c.gating)
            one_step = max(
                (c.max_abs for c in mine if c.framework == framework and c.quantity in parameters),
                default=0.0,
            )
            drift = max(
                (
                    float(self.accumulators[key].max_abs[point])
                    for key in ((INDEPENDENT, framework, plan.reference, q) for q in parameters)
                    if key in self.accumulators
                ),
                default=0.0,
            )
            amplification[framework] = tolerances.amplification(drift, one_step, plan.steps)
            if tolerances.drift_is_amplified_rounding(
                self.dtype, amplification[framework], steps_agree
            ):
                reported.append(framework)
        return amplification, tuple(reported)

    def _weights_outputs(self) -> dict[str, np.ndarray]:
        """Every trainer's final weights' test outputs ``(P, rows, outputs)``, computed by the
        NumPy reference's forward in float64 (what the weights themselves predict, free of any
        framework's rounding). Any network of the contract is one the NumPy reference computes.

        One float64 forward of the test rows per trainer for every point, in this process
        (NumPy only; imported here, when the rule needs it: float64 runs that judge their drift
        never load it), computed once."""
        if self.weights_outputs is None:
            from implementations import numpy_manual

            exact = dataclasses.replace(self.problem, dtype="float64")
            with np.errstate(all="ignore"):
                self.weights_outputs = {
                    name: numpy_manual.predict(exact, params, self.plan.X_test)
                    for name, params in self.final_params.items()
                }
        return self.weights_outputs

    def _trajectories(self):
        """Framework -> record -> ``(states, P, ...)``, and the states, or ``None``s."""
        if self.kept is None:
            return None, None
        steps = np.concatenate(self.kept_steps)
        # Per-update records (gradients) drop the last state's row: no update follows it.
        drop_last = len(steps) > 0 and steps[-1] == self.plan.steps
        whole = {}
        for framework, kept in self.kept.items():
            whole[framework] = {}
            for q, pieces in kept.items():
                array = np.concatenate(pieces)
                if drop_last and quantities.is_per_update(q):
                    array = array[:-1]
                whole[framework][q] = array
        return whole, steps


class _CallableModule(types.ModuleType):
    """``compare.check`` names both this module and its ``check`` function, and which one
    ``from compare import check`` finds depends on what was imported first; calling the module
    calls the function, so either works."""

    def __call__(self, *args, **kwargs) -> CheckResult:
        return check(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
