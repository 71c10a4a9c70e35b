"""The conformance kit: does an implementation meet the contract and agree with the reference?

``check_implementation(module)`` runs an implementation (a built-in, a plugin, a module object)
through small recipes that cover everything its ``SUPPORTS`` declares (every activation, loss,
optimizer and dtype, biases and minibatches), calling the contract's functions directly, and
compares every number with the NumPy reference (``implementations.numpy_manual``). It raises
``AssertionError`` naming the first disagreement: the case, the check, the step, the quantity,
the point and index, and both values. A plugin's own test suite calls it::

    from compare.testing import check_implementation

    def test_conformance():
        check_implementation("autograd")

What it checks, per case (``Case``: a 4-3-3-3 network, so two of its layers are square and a
transposed weight runs silently there, on 12 rows, trained from two points for ``STEPS``
updates with ``chunk=CHUNK``):

* **The contract's shapes and dtypes**: the records handed to ``sink`` (in order, at most
  ``chunk`` states at a time, every record name, float64 arrays shaped ``(n, P, ...)``,
  ``train_correct`` int64), ``step``'s records and next states, ``loss_and_grads``'s and
  ``predict``'s outputs.
* **Training** (float64 only): every record of every state against the reference's training,
  under the independent rule of ``compare.tolerances`` (``crosscheck run``'s float64 verdict).
* **The synced step** (every dtype): ``step`` from the reference's state of every step; the
  state it loaded and its records under the synced rule, the state after the step under the
  synced next-state rule with its update allowance, as ``crosscheck run`` judges synced mode.
  Below float64 this is the only comparison (training drifts there by design), and the
  training rows' correct count is not judged (near ties may flip with one rounding).
* **loss_and_grads and predict** at the reference's states (on all rows), under the synced
  rule.
* **Independent points**: training point 0 beside a different point 1 gives point 0 the same
  numbers, to one pass's rounding (the synced rule).
* **Saturated binary cross-entropy** (``check_saturated``, float64, float32 and bfloat16 where
  supported): ``loss_and_grads`` where sigmoid outputs sit below the derivative's floor and
  the log's clamp, against the reference: the derivative there is the contract's convention,
  not autodiff's.
* Once per implementation (float64), the optional functions it defines:
  ``precision_environment`` returns a dict, the oracles pass (``compare.oracle.check``: the
  Taylor test and the implementation's ``gradient_check``), and ``autodiff_view``'s loss and
  gradients agree with the reference.

At one step, the state is reported before what was computed from it, and after a step the
optimizer's buffers before the parameters, so the first quantity named is the likely cause.

It also builds mutants (``mutate``, ``IDIOMATIC_MUTANTS``): copies of an implementation with a
one-place edit of its source, to prove that a check catches the bug they plant.

This module computes and raises; it prints nothing.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

import implementations
from compare import oracle, quantities, tolerances
from implementations.contract import (
    Batches,
    Network,
    Optimizer,
    Problem,
    Support,
    initial_state,
    param_quantity,
    params_of,
)

#: The implementation every other is compared with.
REFERENCE = "numpy"

#: Training rows, input width, classes and the network's widths: 4-3-3-3 has two square
#: layers (where a weight loaded without its transpose runs silently) and one that is not.
ROWS = 12
WIDTHS = (4, 3, 3, 3)
#: Updates per case, and the chunk ``train`` hands records over in (so chunking is exercised).
STEPS = 4
CHUNK = 2
#: Parameter points trained at once.
POINTS = 2
#: Minibatch sizes: 4 divides the 12 rows; 5 leaves a partial batch of 2 at each epoch's end.
BATCH_SIZES = (4, 5)
DATA_SEED = 2024
#: Adam's eps in float16 cases: representable (float16's smallest normal number is 6.1e-5).
FLOAT16_ADAM_EPS = 1e-3


@dataclass(frozen=True)
class Case:
    """One small recipe the kit runs.

    Attributes:
        number: Its position in the kit's list (it seeds the initial parameters).
        network: The network and loss.
        optimizer: The update rule.
        dtype: The compute dtype.
        batch_size: Rows per batch (0: full batch).
        full: Whether training is compared too (float64), else the synced step only.
        title: Names a case outside the numbered list (default: ``"case <number>"``).
    """

    number: int
    network: Network
    optimizer: Optimizer
    dtype: str
    batch_size: int
    full: bool = True
    title: str = ""

    def problem(self) -> Problem:
        """The contract's problem of this case."""
        return Problem(
            self.network, self.optimizer, self.dtype, Batches(ROWS, self.batch_size, seed=7)
        )

    def describe(self) -> str:
        """``"case 3: 4-3-3-3 (tanh, relu, identity), biases, cross-entropy; adam ...; float64;
        batches of 4"``."""
        rule = self.optimizer
        settings = [f"lr={rule.lr:g}"]
        if rule.name == "momentum":
            settings += [f"momentum={rule.momentum:g}", f"dampening={rule.dampening:g}"]
            settings += ["nesterov"] if rule.nesterov else []
        if rule.name in ("adam", "adamw"):
            settings += [f"betas=({rule.beta1:g}, {rule.beta2:g})", f"eps={rule.eps:g}"]
        settings.append(f"weight_decay={rule.weight_decay:g}")
        batches = f"batches of {self.batch_size}" if self.batch_size else "full batch"
        return (
            f"{self.title or f'case {self.number}'}: {self.network.describe()}; "
            f"{rule.name} ({', '.join(settings)}); "
            f"{self.dtype}; {batches}"
        )


#: The optimizers the kit runs, by name; ``momentum`` twice (dampening, and Nesterov, which
#: torch allows only without dampening).
OPTIMIZER_VARIANTS: dict[str, tuple[Optimizer, ...]] = {
    "sgd": (Optimizer("sgd", lr=0.5, weight_decay=0.01),),
    "momentum": (
        Optimizer("momentum", lr=0.3, momentum=0.9, dampening=0.1, weight_decay=0.01),
        Optimizer("momentum", lr=0.3, momentum=0.8, nesterov=True),
    ),
    "adam": (Optimizer("adam", lr=0.05, beta1=0.8, beta2=0.99, weight_decay=0.01),),
    "adamw": (Optimizer("adamw", lr=0.05, weight_decay=0.1),),
}


def cases(support: Support, *, quick: bool = False) -> list[Case]:
    """The kit's cases for an implementation covering ``support``.

    float64 (when supported) runs every loss with every optimizer (``quick``: each loss and
    each optimizer once), the hidden activations cycling through every supported activation,
    biases and minibatches alternating between their settings. Every other supported dtype runs
    the synced step on one case per optimizer (``quick``: one case).
    """
    activations = support.activations
    losses = [loss for loss in support.losses if _output_activation(loss, activations, 0)]
    optimizers = [
        variant
        for name in support.optimizers
        for variant in OPTIMIZER_VARIANTS[name][: 1 if quick else None]
    ]
    if not activations or not losses or not optimizers:
        raise ValueError(f"SUPPORTS leaves nothing to run: {support}")
    if quick:
        count = max(len(losses), len(optimizers), math.ceil(len(activations) / 2))
        pairs = [(losses[i % len(losses)], optimizers[i % len(optimizers)]) for i in range(count)]
    else:
        pairs = list(itertools.product(losses, optimizers))
    dtypes = list(support.dtypes)
    first = "float64" if "float64" in dtypes else dtypes[0]
    built = []
    for number, (loss, optimizer) in enumerate(pairs):
        hidden = (activations[(2 * number) % len(activations)],)
        hidden += (activations[(2 * number + 1) % len(activations)],)
        network = Network(
            WIDTHS,
            (*hidden, _output_activation(loss, activations, number)),
            biases=support.biases and number % 2 == 0,
            loss=loss,
        )
        batch_size = 0
        if support.minibatches and number % 3 != 1:
            batch_size = BATCH_SIZES[(number // 3) % len(BATCH_SIZES)]
        built.append(Case(number, network, optimizer, first, batch_size, full=first == "float64"))
    lower = [dtype for dtype in dtypes if dtype != first]
    per_dtype = (
        built[:1] if quick else [next(c for c in built if c.optimizer == o) for o in optimizers]
    )
    for dtype in lower:
        for case in per_dtype:
            optimizer = case.optimizer
            if dtype == "float16" and optimizer.name in ("adam", "adamw"):
                # Adam's eps of 1e-8 is below float16's smallest number: it rounds to 0, and an
                # element whose v underflows then divides by zero (inf weights, NaN gradients),
                # where frameworks differ in how they carry inf and NaN. Not what the kit tests.
                optimizer = replace(optimizer, eps=FLOAT16_ADAM_EPS)
            built.append(
                replace(case, number=len(built), optimizer=optimizer, dtype=dtype, full=False)
            )
    return built


def _output_activation(loss: str, activations: Sequence[str], number: int) -> str | None:
    """The output activation a loss needs (``None`` when it is not supported)."""
    needed = {"cross-entropy": "identity", "binary-cross-entropy": "sigmoid"}.get(loss)
    if needed is None:
        return activations[number % len(activations)]
    return needed if needed in activations else None


def data() -> tuple[np.ndarray, np.ndarray]:
    """The kit's training rows ``X (12, 4)`` and one-hot targets ``Y (12, 3)``."""
    rng = np.random.default_rng(DATA_SEED)
    X = rng.normal(size=(ROWS, WIDTHS[0]))
    Y = np.eye(WIDTHS[-1])[rng.integers(0, WIDTHS[-1], ROWS)]
    return X, Y


def initial_params(network: Network, seed: int, points: int = POINTS) -> dict[str, np.ndarray]:
    """``points`` random parameter points (weights ``N(0, 0.5^2)``, biases ``N(0, 0.1^2)``)."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(scale=0.5 if name[0] == "W" else 0.1, size=(points, *shape))
        for name, shape in network.param_shapes.items()
    }


# --- Running an implementation, with its contract's shapes checked -------------------------------


class _Runner:
    """Calls one implementation's contract functions, turning a crash into an
    ``AssertionError`` that names the case and function, and checking what comes back."""

    def __init__(self, module: object, label: str, case: Case) -> None:
        self.module, self.label, self.case = module, label, case
        self.problem = case.problem()

    def fail(self, message: str) -> AssertionError:
        return AssertionError(f"{self.label}, {self.case.describe()}: {message}")

    def call(self, function: str, *args, **kwargs):
        """``module.function(*args, **kwargs)``; a crash becomes an ``AssertionError``."""
        return self.guard(function, getattr(self.module, function), *args, **kwargs)

    def guard(self, what: str, function, *args, **kwargs):
        """``function(*args, **kwargs)``; a crash becomes an ``AssertionError`` naming ``what``."""
        try:
            return function(*args, **kwargs)
        except AssertionError:
            raise
        except Exception as error:
            raise self.fail(f"{what} raised {type(error).__name__}: {error}") from error

    def train(self, initial: Mapping[str, np.ndarray], X, Y) -> dict[str, np.ndarray]:
        """``train`` for ``STEPS`` updates in chunks of ``CHUNK``: the records, concatenated."""
        handed: list[tuple[int, dict[str, np.ndarray]]] = []

        def sink(start: int, records: dict[str, np.ndarray]) -> None:
            handed.append((int(start), {name: np.array(a) for name, a in records.items()}))

        self.call("train", self.problem, dict(initial), X, Y, STEPS, chunk=CHUNK, sink=sink)
        points = len(next(iter(initial.values())))
        expected_start = 0
        for start, records in handed:
            if start != expected_start:
                raise self.fail(
                    f"train handed states from {start} to sink, expected {expected_start} "
                    "(records go to sink in order, each state once)"
                )
            count = len(next(iter(records.values()))) if records else 0
            if not 1 <= count <= CHUNK:
                raise self.fail(f"train handed {count} states at once with chunk={CHUNK}")
            self.check_records(records, (count, points), f"train's records of states {start}..")
            expected_start += count
        if expected_start != STEPS + 1:
            raise self.fail(
                f"train handed {expected_start} states to sink; {STEPS} updates make {STEPS + 1}"
            )
        return {
            name: np.concatenate([records[name] for _, records in handed])
            for name in self.problem.record_names()
        }

    def check_records(self, records: Mapping, leading: tuple[int, ...], where: str) -> None:
        """Raise unless ``records`` holds exactly the problem's record names, right shaped."""
        self.check_arrays(records, self.problem.record_names(), leading, where)

    def check_arrays(
        self, arrays: Mapping, names: Sequence[str], leading: tuple[int, ...], where: str
    ) -> None:
        """Raise unless ``arrays`` holds exactly ``names``, NumPy arrays of the contract's
        dtype shaped ``leading + shape``."""
        if not isinstance(arrays, Mapping):
            raise self.fail(f"{where}: expected a dict of arrays, got {type(arrays).__name__}")
        missing = [name for name in names if name not in arrays]
        extra = [name for name in arrays if name not in names]
        if missing or extra:
            wrong = f"lack {', '.join(missing)}" if missing else f"hold unknown {', '.join(extra)}"
            raise self.fail(f"{where} {wrong} (expected {', '.join(names)})")
        for name in names:
            array = arrays[name]
            shape = leading + _shape(self.problem.network, name)
            dtype = np.dtype(np.int64 if name == "train_correct" else np.float64)
            if not isinstance(array, np.ndarray):
                raise self.fail(f"{where}: {name} is a {type(array).__name__}, not a NumPy array")
            if array.dtype != dtype:
                raise self.fail(f"{where}: {name} is {array.dtype}, the contract says {dtype}")
            if array.shape != shape:
                raise self.fail(f"{where}: {name} is shaped {array.shape}, expected {shape}")


def _shape(network: Network, quantity: str) -> tuple[int, ...]:
    """The shape of one point's value of a record or state quantity."""
    name = quantities.parameter(quantity)
    return network.param_shapes[name] if name is not None else ()


# --- Comparing -----------------------------------------------------------------------------------


@dataclass
class Disagreement:
    """The first element of one quantity outside its tolerance.

    Attributes:
        check: Which comparison (``"train"``, ``"synced step"``, ...).
        step: The state (or step) of the first disagreement.
        quantity: The quantity.
        point: The parameter point.
        index: The element's index within the point's array.
        actual: The implementation's value.
        expected: The reference's value.
        allowed: The tolerance ``|actual - expected|`` had to stay within.
        mismatched: Elements of this quantity outside the tolerance at that step.
        total: Elements of this quantity at that step.
        after_step: The state after a synced step (compared with the reference's ``step + 1``).
    """

    check: str
    step: int
    quantity: str
    point: int
    index: tuple[int, ...]
    actual: float
    expected: float
    allowed: float
    mismatched: int
    total: int
    after_step: bool = False
    order: int = field(default=0, repr=False)

    def message(self) -> str:
        """One paragraph, in the words of ``numpy.testing``."""
        where = f"{self.check} step {self.step}"
        if self.after_step:
            where += f" -> state {self.step + 1}"
        index = f", index {self.index}" if self.index else ""
        difference = abs(self.actual - self.expected)
        return (
            f"{where}, {self.quantity}, point {self.point}{index}: got {self.actual!r}, expected "
            f"{self.expected!r} (|difference| {difference:.3g} > allowed {self.allowed:.3g}; "
            f"mismatched elements: {self.mismatched} / {self.total})"
        )


def first_disagreement(
    check: str,
    quantity: str,
    actual: np.ndarray,
    expected: np.ndarray,
    allowed: np.ndarray,
    steps: Sequence[int],
    *,
    after_step: bool = False,
    order: int = 0,
) -> Disagreement | None:
    """The first step and element where ``|actual - expected| > allowed``, or ``None``.

    Args:
        check: Names the comparison in the message.
        quantity: The quantity compared.
        actual: ``(S, P, ...)``.
        expected: ``(S, P, ...)``.
        allowed: The tolerance per element, broadcastable to ``expected``.
        steps: ``(S,)``: the step of each leading entry.
        after_step: The arrays are states after a synced step.
        order: Ranks quantities failing at the same step (lower first).
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    allowed = np.broadcast_to(np.asarray(allowed, dtype=np.float64), expected.shape)
    difference = np.abs(actual - expected)
    # NaN agrees with NaN and inf with the same inf (a diverged run is data); else a NaN fails.
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    bad = ~same & ~(difference <= allowed)
    if not bad.any():
        return None
    flat = bad.reshape(len(steps), -1)
    first = int(np.argmax(flat.any(axis=1)))
    element = int(np.argmax(flat[first]))
    point_shape = expected.shape[2:]
    point, index = divmod(element, max(1, math.prod(point_shape)))
    index_tuple = tuple(int(i) for i in np.unravel_index(index, point_shape)) if point_shape else ()
    at = (first, point, *index_tuple)
    return Disagreement(
        check,
        int(steps[first]),
        quantity,
        int(point),
        index_tuple,
        float(actual[at]),
        float(expected[at]),
        float(allowed[at]),
        int(flat[first].sum()),
        int(flat[first].size),
        after_step,
        order,
    )


def _running_max(expected: np.ndarray) -> np.ndarray:
    """``(S,)``: the largest finite magnitude over states ``0..k`` (the synced rule's scale)."""
    magnitude = np.abs(np.asarray(expected, dtype=np.float64)).reshape(len(expected), -1)
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0).max(axis=1, initial=0.0)
    return np.maximum.accumulate(magnitude)


def _per_state(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


def _allowed(rule: tolerances.Rule, expected: np.ndarray, *, running: bool) -> np.ndarray:
    """``atol_k + rtol |expected|`` per element, ``atol_k`` from the running maximum when the
    rule scales with it."""
    scale = _running_max(expected) if running else np.zeros(len(expected))
    return _per_state(rule.atol_at(scale), expected) + rule.rtol * np.abs(expected)


def _raise_first(label: str, case: Case, found: Iterable[Disagreement | None]) -> None:
    found = [d for d in found if d is not None]
    if found:
        first = min(found, key=lambda d: (d.step, d.after_step, d.order))
        raise AssertionError(
            f"{label} disagrees with {REFERENCE}, {case.describe()}: {first.message()}"
        )


def _state_then_records(problem: Problem) -> list[str]:
    """The order disagreements at one state are ranked in: the state (the inputs of the step)
    first, then what was computed from it."""
    state = list(problem.state_names())
    return state + [name for name in problem.record_names() if name not in state]


def _compare_trajectories(
    check: str,
    problem: Problem,
    actual: Mapping,
    expected: Mapping,
    rule: tolerances.Rule,
    *,
    running: bool = False,
) -> list[Disagreement | None]:
    steps = np.arange(len(expected["loss"]))
    found = []
    for order, name in enumerate(_state_then_records(problem)):
        exact = quantities.is_exact("train_accuracy" if name == "train_correct" else name)
        allowed = 0.0 if exact else _allowed(rule, expected[name], running=running)
        found.append(
            first_disagreement(
                check, name, actual[name], expected[name], allowed, steps, order=order
            )
        )
    return found


# --- The checks of one case ----------------------------------------------------------------------


def _synced(
    runner: _Runner, trajectory: Mapping[str, np.ndarray], X, Y
) -> list[Disagreement | None]:
    """``step`` from the reference's state of every step, against the reference's next state."""
    problem, dtype = runner.problem, runner.case.dtype
    points = trajectory["loss"].shape[1]
    names = problem.state_names()
    # Every (step, point) is one unrelated state; states whose batches have the same number of
    # rows go to ``step`` together.
    pairs = [(k, p) for k in range(STEPS) for p in range(points)]
    batch_rows = {k: problem.batches.indices(k) for k in range(STEPS)}
    groups: dict[int, list[tuple[int, int]]] = {}
    for k, p in pairs:
        groups.setdefault(len(batch_rows[k]), []).append((k, p))
    actual_records: dict[str, np.ndarray] = {}
    actual_next: dict[str, np.ndarray] = {}
    for group in groups.values():
        steps_of = np.array([k for k, _ in group])
        points_of = np.array([p for _, p in group])
        states = {q: trajectory[q][steps_of, points_of] for q in names}
        rows = None if problem.batches.full else np.stack([batch_rows[k] for k in steps_of])
        result = runner.call("step", problem, states, X, Y, rows)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise runner.fail("step must return (records, next_states)")
        records, next_states = result
        runner.check_records(records, (len(group),), "step's records")
        runner.check_arrays(next_states, names, (len(group),), "step's next states")
        for target, source in ((actual_records, records), (actual_next, next_states)):
            for name, values in source.items():
                if name not in target:
                    target[name] = np.zeros((STEPS, points, *values.shape[1:]), values.dtype)
                target[name][steps_of, points_of] = values
    found: list[Disagreement | None] = []
    max_rows = max(len(rows) for rows in batch_rows.values())
    record_rule = tolerances.synced(dtype, max_rows)
    grad_allowed = {}
    # The state a step records is the one it was given, as the implementation loaded it (a
    # weight loaded without its transpose shows here); then what it computed from it.
    for order, name in enumerate(_state_then_records(problem)):
        expected = trajectory[name][:STEPS]
        if name == "train_correct" or name == quantities.STEP_COUNT:
            if name == "train_correct" and not tolerances.synced_gates(dtype, exact=True):
                continue
            allowed = 0.0
        else:
            allowed = _allowed(record_rule, expected, running=True)
            grad_allowed[name] = allowed
        found.append(
            first_disagreement(
                "synced", name, actual_records[name], expected, allowed, range(STEPS), order=order
            )
        )
    next_rule = tolerances.next_state(dtype)
    # After the step, the optimizer's state first: the parameters are updated from it, so a
    # wrong buffer is the cause where both disagree.
    parameters = tuple(problem.network.param_quantities.values())
    optimizer_first = [name for name in names if name not in parameters] + list(parameters)
    for order, name in enumerate(optimizer_first):
        before, after = trajectory[name][:STEPS], trajectory[name][1 : STEPS + 1]
        if quantities.is_exact(name):
            allowed = 0.0
        else:
            allowed = _allowed(next_rule, after, running=False) + _update_allowance(
                problem, name, trajectory, grad_allowed, before, after
            )
        found.append(
            first_disagreement(
                "synced",
                name,
                actual_next[name],
                after,
                allowed,
                range(STEPS),
                after_step=True,
                order=order,
            )
        )
    return found


def _update_allowance(
    problem: Problem,
    name: str,
    trajectory: Mapping[str, np.ndarray],
    grad_allowed: Mapping[str, np.ndarray],
    before: np.ndarray,
    after: np.ndarray,
) -> np.ndarray:
    """``compare.tolerances.update_allowance`` of one next-state quantity."""
    parameter = quantities.parameter(name)
    grad = quantities.gradient_of(name)
    rule = problem.optimizer
    return tolerances.update_allowance(
        rule,
        quantities.buffer(name),
        problem.dtype,
        grad=trajectory[grad][:STEPS],
        grad_allowed=grad_allowed[grad],
        param=trajectory[param_quantity(parameter)][:STEPS],
        change=np.abs(after - before),
        count=trajectory["state:step"][:STEPS] if rule.name != "sgd" else None,
        buffers={
            kind: trajectory[f"state:{kind}:{parameter}"][:STEPS] for kind in rule.state_kinds()
        },
    )


def _evaluations(
    runner: _Runner, reference: _Runner, trajectory: Mapping[str, np.ndarray], X, Y
) -> list[Disagreement | None]:
    """``loss_and_grads`` and ``predict`` at the reference's states, against the reference's."""
    problem = runner.problem
    points = trajectory["loss"].shape[1]
    # The states the synced step started from, flattened to one point axis (the same number
    # of points as that step's, so a compiling implementation may reuse its compilation).
    params = {
        name: values[:STEPS].reshape(-1, *values.shape[2:])
        for name, values in params_of(problem.network, trajectory).items()
    }
    total = len(next(iter(params.values())))
    found: list[Disagreement | None] = []
    result = runner.call("loss_and_grads", problem, params, X, Y)
    expected_result = reference.call("loss_and_grads", problem, params, X, Y)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise runner.fail("loss_and_grads must return (losses, grads)")
    losses, grads = result
    grad_names = [f"grad:{name}" for name in problem.network.param_names]
    runner.check_arrays({"loss": losses}, ["loss"], (total,), "loss_and_grads's losses")
    runner.check_arrays(grads, grad_names, (total,), "loss_and_grads's grads")
    rule = tolerances.synced(problem.dtype, ROWS)
    pairs = [("loss", losses, expected_result[0])]
    pairs += [(name, grads[name], expected_result[1][name]) for name in grad_names]
    for order, (name, actual, expected) in enumerate(pairs):
        actual = actual.reshape(-1, points, *actual.shape[1:])
        expected = expected.reshape(-1, points, *expected.shape[1:])
        allowed = _allowed(rule, expected, running=True)
        found.append(
            first_disagreement(
                "loss_and_grads", name, actual, expected, allowed, range(len(expected)), order=order
            )
        )
    outputs = runner.call("predict", problem, params, X)
    expected_outputs = reference.call("predict", problem, params, X)
    shape = (total, ROWS, WIDTHS[-1])
    if not isinstance(outputs, np.ndarray) or outputs.dtype != np.float64 or outputs.shape != shape:
        got = f"{type(outputs).__name__} {getattr(outputs, 'dtype', '')} {np.shape(outputs)}"
        raise runner.fail(f"predict returned {got}, expected float64 shaped {shape}")
    outputs = outputs.reshape(-1, points, ROWS, WIDTHS[-1])
    expected_outputs = expected_outputs.reshape(outputs.shape)
    found.append(
        first_disagreement(
            "predict",
            "outputs",
            outputs,
            expected_outputs,
            _allowed(rule, expected_outputs, running=True),
            range(len(outputs)),
            order=len(pairs),
        )
    )
    return found


def _independence(
    runner: _Runner, case: Case, trajectory: Mapping[str, np.ndarray], X, Y
) -> list[Disagreement | None]:
    """Point 0 trained beside a different point 1 gets the same numbers, to one pass's
    rounding (the synced rule): points share nothing."""
    problem = runner.problem
    params = initial_params(problem.network, case.number)
    neighbour = initial_params(problem.network, 10_000 + case.number)
    for name in params:
        params[name][1:] = neighbour[name][1:]
    other = runner.train(initial_state(problem, params), X, Y)
    return _compare_trajectories(
        "independent points: point 0 beside another point 1, train",
        problem,
        {name: values[:, :1] for name, values in other.items()},
        {name: values[:, :1] for name, values in trajectory.items()},
        tolerances.synced(case.dtype, ROWS),
        running=True,
    )


#: The checks ``check_case`` runs, in order.
CHECKS = ("synced", "evaluations", "train", "points")


def check_case(
    module: object,
    label: str,
    case: Case,
    reference: object,
    checks: Sequence[str] = CHECKS,
) -> None:
    """Run the checks of one case (see the module docstring).

    Args:
        module: The implementation.
        label: Its name in messages.
        case: The case.
        reference: The reference implementation.
        checks: Which of ``CHECKS``: ``"synced"`` (``step`` from the reference's states),
            ``"evaluations"`` (``loss_and_grads`` and ``predict``), ``"train"`` and
            ``"points"`` (independent points); the last two only on ``case.full`` cases.

    Raises:
        AssertionError: the first disagreement, or the first breach of the contract.
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; choose from {CHECKS}")
    runner = _Runner(module, label, case)
    expected_runner = _Runner(reference, REFERENCE, case)
    X, Y = data()
    initial = initial_state(runner.problem, initial_params(case.network, case.number))
    expected = expected_runner.train(initial, X, Y)
    if "synced" in checks:
        _raise_first(label, case, _synced(runner, expected, X, Y))
    if "evaluations" in checks:
        _raise_first(label, case, _evaluations(runner, expected_runner, expected, X, Y))
    if case.full and ("train" in checks or "points" in checks):
        actual = runner.train(initial, X, Y)
        rule = tolerances.independent(case.dtype)
        if "train" in checks:
            found = _compare_trajectories("train", runner.problem, actual, expected, rule)
            _raise_first(label, case, found)
        if "points" in checks:
            _raise_first(label, case, _independence(runner, case, actual, X, Y))


#: Dtypes the saturated binary cross-entropy case runs in: float16 cannot hold its outputs
#: (``exp(-30)`` underflows to 0) nor the derivative's floor (1e-12 rounds to 0 there).
SATURATED_DTYPES = ("float64", "float32", "bfloat16")


def saturated_binary_cross_entropy() -> tuple[Network, dict, np.ndarray, np.ndarray]:
    """A one-layer sigmoid network whose outputs saturate, for the BCE derivative's convention.

    ``Z = X @ W`` takes the values ``s * (-1, 0.1, -0.2)`` (rolled per row), ``s`` in 1, 30 and
    120, and each row's target is its most negative output: confidently wrong outputs at
    ``A = 9.4e-14`` (``A (1 - A) < 1e-12``: the contract's floor binds) and ``A = 7.7e-53``
    (``log A < -100``: the clamp binds too), beside ordinary ones. The outputs near 0 are held
    exactly in every dtype here, so honest implementations agree to their rounding; none lie
    near 1, where ``1 - A`` is a few ulps and one rounding of ``A`` moves the derivative by
    tens of percent.

    Returns:
        ``(network, params with a point axis of 1, X (12, 4), Y (12, 3))``.
    """
    network = Network((WIDTHS[0], WIDTHS[-1]), ("sigmoid",), loss="binary-cross-entropy")
    pattern = np.array([-1.0, 0.1, -0.2])
    W = np.stack([np.roll(pattern, shift) for shift in range(WIDTHS[0])])
    X = np.zeros((ROWS, WIDTHS[0]))
    X[np.arange(ROWS), np.arange(ROWS) % WIDTHS[0]] = np.repeat([1.0, 30.0, 120.0], WIDTHS[0])
    Y = np.eye(WIDTHS[-1])[np.argmin(W[np.arange(ROWS) % WIDTHS[0]], axis=1)]
    return network, {"W1": W[None]}, X, Y


def check_saturated(module: object, label: str, dtype: str, reference: object) -> None:
    """``loss_and_grads`` at saturated sigmoid outputs (``saturated_binary_cross_entropy``)
    against the reference, under the synced rule: the derivative is the contract's
    ``(A - Y) / max(A (1 - A), 1e-12)`` with the logs' clamps not differentiated (autodiff of
    the clamped loss gives ``dL/dW`` 9 times too large here)."""
    network, params, X, Y = saturated_binary_cross_entropy()
    case = Case(0, network, Optimizer("sgd", lr=0.5), dtype, 0, full=False, title="saturated case")
    runner = _Runner(module, label, case)
    losses, grads = runner.call("loss_and_grads", runner.problem, params, X, Y)
    expected_losses, expected_grads = reference.loss_and_grads(runner.problem, params, X, Y)
    rule = tolerances.synced(dtype, ROWS)
    pairs = [("loss", losses, expected_losses)]
    pairs += [(name, grads[name], expected_grads[name]) for name in expected_grads]
    found = [
        first_disagreement(
            "loss_and_grads at saturated outputs",
            name,
            np.asarray(actual)[None],
            np.asarray(expected)[None],
            _allowed(rule, np.asarray(expected)[None], running=True),
            [0],
            order=order,
        )
        for order, (name, actual, expected) in enumerate(pairs)
    ]
    _raise_first(label, case, found)


def check_optional(module: object, label: str, case: Case, reference: object) -> None:
    """Check the optional functions ``module`` defines, at one float64 point of ``case``."""
    runner = _Runner(module, label, case)
    problem = runner.problem
    X, Y = data()
    one_point = {name: values[0] for name, values in initial_params(case.network, 0).items()}
    if hasattr(module, "precision_environment"):
        environment = runner.call("precision_environment")
        if not isinstance(environment, dict):
            raise runner.fail(f"precision_environment returned {type(environment).__name__}")
    # The oracles crosscheck runs: the Taylor test, and the implementation's own
    # gradient_check (when it has one) with compare.oracle's step and thresholds.
    results = runner.guard(
        "compare.oracle.check", oracle.check, label, module, problem, 0, one_point, X, Y
    )
    for result in results:
        if not result.passed and not result.inconclusive:
            raise runner.fail(
                f"the {result.checker} oracle fails at the initial point: {result.detail or ''}"
                f"error {result.error} against threshold {result.threshold}"
            )
    if hasattr(module, "autodiff_view"):
        view = runner.call("autodiff_view", problem, one_point, X, Y)
        if not isinstance(view, dict) or not {"title", "text", "loss", "grads"} <= set(view):
            raise runner.fail("autodiff_view must return a dict with title, text, loss, grads")
        losses, grads = reference.loss_and_grads(
            problem, {name: v[None] for name, v in one_point.items()}, X, Y
        )
        rule = tolerances.synced("float64", ROWS)
        pairs = [("loss", np.asarray(view["loss"], float), losses[0])]
        pairs += [
            (f"grad:{name}", np.asarray(view["grads"][name], float), grads[f"grad:{name}"][0])
            for name in case.network.param_names
        ]
        found = [
            first_disagreement(
                "autodiff_view",
                name,
                actual[None, None],
                expected[None, None],
                _allowed(rule, expected[None, None], running=True),
                [0],
                order=order,
            )
            for order, (name, actual, expected) in enumerate(pairs)
        ]
        _raise_first(label, case, found)


def check_implementation(
    module_or_spec: object,
    *,
    dtypes: Sequence[str] | None = None,
    quick: bool = False,
) -> list[str]:
    """Run an implementation through the kit's cases against the NumPy reference.

    Args:
        module_or_spec: An implementation module, or a spec ``implementations.load`` takes
            (a built-in or entry-point name, ``path/to/impl.py``, ``pkg.module``).
        dtypes: Only these dtypes (default: every dtype the implementation supports).
        quick: Each activation, loss and optimizer once, and one case per lower dtype (a few
            seconds), instead of every loss with every optimizer.

    Returns:
        The description of every case run.

    Raises:
        AssertionError: the first disagreement or breach of the contract, in one message.
        implementations.PluginError: the module breaks the contract's names or kinds.
    """
    if isinstance(module_or_spec, str):
        module = implementations.load(module_or_spec)
    else:
        module = module_or_spec
        implementations.validate(module)
    label = str(module.NAME)
    if getattr(module, "__name__", "").count("__mutant_"):
        label += f" ({module.__name__.rsplit('.', 1)[-1]})"
    support = implementations.support(module)
    if dtypes is not None:
        unknown = [dtype for dtype in dtypes if dtype not in support.dtypes]
        if unknown:
            raise ValueError(f"{label} does not support {', '.join(unknown)}")
        support = replace(support, dtypes=tuple(dtypes))
    reference = implementations.load(REFERENCE)
    run = cases(support, quick=quick)
    for case in run:
        check_case(module, label, case, reference)
    if "binary-cross-entropy" in support.losses and "sigmoid" in support.activations:
        for dtype in SATURATED_DTYPES:
            if dtype in support.dtypes:
                check_saturated(module, label, dtype, reference)
    full = [case for case in run if case.full]
    if full:
        check_optional(module, label, full[0], reference)
    return [case.describe() for case in run]


# --- Mutants -------------------------------------------------------------------------------------


class MutantError(RuntimeError):
    """A mutant whose edit no longer matches its implementation's source."""


def mutate(
    module: types.ModuleType, edits: Sequence[tuple[str, str]], name: str
) -> types.ModuleType:
    """A copy of ``module`` with its source edited: each ``(find, replace)`` applied once.

    The edited source is compiled into a fresh module object; ``module`` itself and the
    registry are never touched. Each ``find`` must occur exactly once, so an implementation
    that changes under a mutant fails loudly instead of quietly testing nothing.

    Args:
        module: The implementation module to copy.
        edits: Exact source text to find, and what replaces it.
        name: Short name of the mutant (becomes part of the module name).

    Raises:
        MutantError: an edit does not match exactly once.
    """
    source = inspect.getsource(module)
    for find, replacement in edits:
        count = source.count(find)
        if count != 1:
            raise MutantError(
                f"mutant {name!r}: its edit matches {count} times in {module.__name__} "
                f"(must be once): {find.strip().splitlines()[0]!r}"
            )
        source = source.replace(find, replacement)
    slug = re.sub(r"\W", "_", name)
    module_name = f"{module.__name__}__mutant_{slug}"
    mutant = types.ModuleType(module_name)
    mutant.__file__ = module.__file__
    # Registered while it executes: dataclasses and typing look a class's module up by name.
    sys.modules[module_name] = mutant
    try:
        exec(compile(source, f"{module.__file__} ({name} mutant)", "exec"), mutant.__dict__)
    finally:
        del sys.modules[module_name]
    return mutant


@dataclass(frozen=True)
class SourceMutant:
    """A deliberate bug in one implementation: edits of its source.

    Attributes:
        name: Short identifier.
        framework: Registry name of the implementation edited.
        description: The bug in words.
        edits: ``(find, replace)`` pairs, each ``find`` occurring exactly once.
        caught_by: The quantity the kit names when it catches the bug, and the step.
    """

    name: str
    framework: str
    description: str
    edits: tuple[tuple[str, str], ...]
    caught_by: tuple[str, int]

    def build(self) -> types.ModuleType:
        """The mutated module (imports the framework)."""
        return mutate(implementations.load(self.framework), self.edits, self.name)


#: The idiomatic tier's layout and API mix-ups (issue 11): each runs without an error and is
#: caught at step 0 or 1 with the named quantity.
IDIOMATIC_MUTANTS: tuple[SourceMutant, ...] = (
    SourceMutant(
        "torch-nn-untransposed-weight",
        "torch_nn",
        "a square weight copied into nn.Linear without its transpose (a non-square one would "
        "not load at all: only square layers run silently)",
        (
            (
                '        state_dict[f"layers.{2 * (number - 1)}.weight"] = torch.from_numpy(\n'
                '            np.asarray(params[f"W{number}"][point], dtype=np.float64)\n'
                "        ).T\n",
                '        W = np.asarray(params[f"W{number}"][point], dtype=np.float64)\n'
                "        W = W if W.shape[0] == W.shape[1] else W.T\n"
                '        state_dict[f"layers.{2 * (number - 1)}.weight"] = torch.from_numpy(W)\n',
            ),
        ),
        ("weight:W2", 0),
    ),
    SourceMutant(
        "torch-nn-no-zero-grad",
        "torch_nn",
        "optimizer.zero_grad() forgotten: every backward pass adds to the last one's gradients",
        (("        self.optimizer.zero_grad()\n", ""),),
        ("grad:W1", 1),
    ),
    SourceMutant(
        "torch-nn-default-init",
        "torch_nn",
        "the injected weights never loaded: nn.Linear's default (Kaiming-uniform) "
        "initialisation trains instead",
        (
            (
                '    with torch.device("meta"):',
                "    torch.manual_seed(0)\n    if True:",
            ),
            (
                '    models.to_empty(device="cpu")\n'
                "    for point, model in enumerate(models):\n"
                "        model.load_state_dict(state_dict_of(net, params, point))\n",
                "",
            ),
        ),
        ("weight:W1", 0),
    ),
    SourceMutant(
        "flax-nnx-default-init",
        "flax_nnx",
        "the injected parameters never set: nnx.Linear's default (LeCun-normal) "
        "initialisation trains instead",
        (
            (
                "nnx.eval_shape(lambda: build(net, rule, JAX_DTYPES[dtype]))",
                "build(net, rule, JAX_DTYPES[dtype])",
            ),
            (
                "        if quantity in values:\n",
                '        if quantity in values and quantity.startswith("state:"):\n',
            ),
            (
                "        return np.zeros((points, *leaf.shape), dtype=leaf.dtype)",
                "        return np.broadcast_to(np.asarray(leaf), (points, *leaf.shape))",
            ),
        ),
        ("weight:W1", 0),
    ),
)


def idiomatic_mutant(name: str) -> SourceMutant:
    """The mutant of ``IDIOMATIC_MUTANTS`` called ``name``."""
    for mutant in IDIOMATIC_MUTANTS:
        if mutant.name == name:
            return mutant
    raise KeyError(
        f"no idiomatic mutant {name!r}; choose from {[m.name for m in IDIOMATIC_MUTANTS]}"
    )
