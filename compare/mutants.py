"""Fault injection: a catalogue of realistic, silent bugs, each run through ``compare.check``.

A mutant is one shipped implementation with one small edit: the exact text of a line (or a
few) replaced by a buggy version, as a mutation-testing tool would. The edited source is
compiled into a fresh module object of its own (``compare.testing.mutate``); the shipped files
and the registry's modules are never touched. Every edit must match its implementation's
source exactly once, so a change to an implementation that makes a mutant stale fails loudly
(``MutantError``) instead of quietly testing nothing.

Design rules:

* **One verdict.** A mutant trains beside a correct implementation (its reference) and is
  judged by ``compare.check.check`` exactly as ``crosscheck run`` judges frameworks; it is
  caught when that verdict is ``"fail"``. Nothing here decides agreement. Hand-written NumPy
  bugs are judged against JAX (autodiff cannot share them); bugs planted in a framework
  implementation are judged against the NumPy reference.
* **Silent bugs only.** Every mutant runs without an error on its recipe; a mutant that
  crashes is reported (``MutantResult.error``) and counts as not caught, because a bug that
  crashes needs no cross-check.
* **The smallest recipe that reaches the bug.** Each mutant names the recipe settings it needs
  (an Adam bug needs ``optimizer = "adam"``; a transposed weight needs a square layer) and why.
* **A catalogue of how frameworks differ.** A mutant that mixes up two libraries' conventions
  says which library does which (``Mutant.convention``); ``crosscheck mutants --list`` shows
  them, and a run says where each was caught (``MutantResult.caught_at``).
* **Where it must be caught.** Each mutant states the step and a quantity at which the check
  first catches it (``Mutant.expected``): step 0 or 1 for every mutant, in float32 (where only
  the synced whole-step check decides) as in float64.

This module computes and returns facts; ``compare.cli.mutants`` is the command and
``compare.present.mutants`` prints.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

import implementations
from compare import testing
from compare.agreement import Comparison
from compare.check import CheckResult, check
from compare.recipe import Recipe
from implementations.contract import DTYPES

#: Updates each mutant trains for by default. Every mutant is caught at step 0 or 1 by the
#: synced check; a few more steps let float64's independent comparisons and the trained
#: model's predictions show the bug's effect too, and keep the whole catalogue quick.
STEPS = 20

#: The dtypes ``run_catalogue`` runs every mutant in unless told otherwise.
DEFAULT_DTYPES = ("float64", "float32")

#: What kind of bug a mutant plants (``Mutant.kind``).
KINDS = ("derivative", "loss", "update", "convention", "idiomatic", "precision")


class MutantError(testing.MutantError):
    """A mutant that cannot be built: an edit no longer matches its implementation's source
    exactly once."""


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: ``find`` replaced by ``replace`` (and each of ``also``) in one
    implementation's source.

    Attributes:
        name: Short identifier (``--only`` takes it).
        description: The bug in words.
        framework: Registry name of the implementation edited.
        find: Exact source text to replace; must occur exactly once.
        replace: The buggy text.
        also: Further ``(find, replace)`` edits of the same bug, each matching exactly once.
        recipe_changes: Recipe settings the bug needs to be reachable at all (over
            ``Recipe()``'s tutorial defaults).
        why: Why the recipe differs from the tutorial's (empty when it does not).
        kind: One of ``KINDS``.
        convention: For a mix-up of two libraries' conventions: which library does which
            (empty for a plain bug).
        expected: ``(step, quantity)``: where the check is expected to catch it first (the
            earliest failing step, and a quantity failing there), or ``None``.
        dtypes: The dtypes in which the edit is a bug at all (a cast to bfloat16 changes
            nothing in a bfloat16 run); ``run_catalogue`` skips the others.
    """

    name: str
    description: str
    framework: str
    find: str
    replace: str
    also: tuple[tuple[str, str], ...] = ()
    recipe_changes: Mapping[str, object] = field(default_factory=dict)
    why: str = ""
    kind: str = "derivative"
    convention: str = ""
    expected: tuple[int, str] | None = None
    dtypes: tuple[str, ...] = DTYPES

    @property
    def edits(self) -> tuple[tuple[str, str], ...]:
        """Every ``(find, replace)`` edit, the first one first."""
        return ((self.find, self.replace), *self.also)

    @property
    def reference(self) -> str:
        """The correct implementation this mutant is compared with."""
        return "jax" if self.framework == "numpy" else "numpy"

    def recipe(self, steps: int = STEPS, dtype: str = "float64") -> Recipe:
        """The tutorial recipe with this mutant's changes, ``steps`` updates, in ``dtype``."""
        return Recipe(**{**self.recipe_changes, "steps": steps, "dtype": dtype})


# ---------------------------------------------------------------------------------------------
# The catalogue. Recipes: the smallest change of the tutorial (iris, 4-2-3 sigmoid, half-MSE,
# SGD lr 0.1, full batch) that reaches each bug.

#: Adam's usual learning rate; iris's 0.1 would make Adam's first steps needlessly large.
ADAM = {"optimizer": "adam", "lr": 0.01}
ADAMW = {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01}
MOMENTUM = {"optimizer": "momentum", "momentum": 0.9}
#: A 4-3-3 network: W2 is 3x3, the only shape where a transposed weight runs silently.
SQUARE = {"hidden": (3,)}
SQUARE_WHY = "hidden width 3 makes W2 square (3x3), the only shape where this bug runs silently"

NUMPY_MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="loss-typo",
        description="a one-character typo: (A - Y) * 2 for (A - Y) ** 2 in the half-MSE loss",
        framework="numpy",
        find="return np.sum((A - Y) ** 2, axis=(-2, -1)) / (2 * rows * outputs)",
        replace="return np.sum((A - Y) * 2, axis=(-2, -1)) / (2 * rows * outputs)",
        kind="loss",
        expected=(0, "loss"),
    ),
    Mutant(
        name="missing-activation-derivative",
        description="delta = dL/dA: the activation's derivative factor dA/dZ left out",
        framework="numpy",
        find="delta = dL_dA * dA_dZ  #",
        replace="delta = dL_dA  #",
        expected=(0, "grad:W1"),
    ),
    Mutant(
        name="derivative-at-Z",
        description="sigmoid derivative taken at Z instead of A: Z (1 - Z) for A (1 - A)",
        framework="numpy",
        find="return A * (1 - A)",
        replace="return Z * (1 - Z)",
        expected=(0, "grad:W1"),
    ),
    Mutant(
        name="rows-normaliser",
        description="half-MSE's gradient divided by the rows R, not the elements R O, of Y",
        framework="numpy",
        find="return (A - Y) / (rows * outputs)",
        replace="return (A - Y) / rows",
        expected=(0, "grad:W1"),
    ),
    Mutant(
        name="transposed-weight",
        description="W2 for W2^T when backpropagating from the output layer to the hidden one",
        framework="numpy",
        # Written out layer by layer (as the tutorial does) the bug is one line, dA1 = dZ2 @ W2;
        # in this loop it takes a condition to hit the output layer alone.
        find="dL_dA_prev = matmul(delta, np.swapaxes(W, -1, -2))",
        replace=(
            "dL_dA_prev = matmul(delta, W if index == len(layers) - 1 else np.swapaxes(W, -1, -2))"
        ),
        recipe_changes=SQUARE,
        why=SQUARE_WHY,
        expected=(0, "grad:W1"),
    ),
    Mutant(
        name="bias-grad-wrong-axis",
        description="the bias gradient summed over the outputs (axis -1) instead of the rows",
        framework="numpy",
        find="dL_db = sum_rows(delta) if net.biases else None",
        replace="dL_db = np.sum(delta, axis=-1) if net.biases else None",
        recipe_changes={"hidden": (3,), "biases": True, "test_size": 147},
        why="biases, and 3 training rows into layers 3 wide: the only shape where summing over "
        "the wrong axis still gives a bias-shaped gradient (on more rows it fails loudly)",
        kind="convention",
        convention="column-major code (X shaped features x samples, as in deeplearning.ai's "
        "courses) sums db over axis=1; row-major, batch-first code (torch, Keras, JAX, this "
        "contract) sums over the rows, axis 0",
        expected=(0, "grad:b1"),
    ),
    Mutant(
        name="update-sign",
        description="gradient ascent: p + lr g for p - lr g in the SGD update",
        framework="numpy",
        find="p_next = kept(p - opt.lr * g)  # p <- p - lr g",
        replace="p_next = kept(p + opt.lr * g)  # p <- p - lr g",
        kind="update",
        expected=(0, "weight:W1"),
    ),
    Mutant(
        name="stale-gradient",
        description="each update applies the previous step's gradient (the first one its own)",
        framework="numpy",
        find="                    state, _ = update(problem, state, evaluation.grads)\n",
        replace=(
            "                    state, _ = update(problem, state, (previous if k else evaluation)"
            ".grads)\n                previous = evaluation\n"
        ),
        kind="update",
        expected=(1, "weight:W1"),
    ),
    Mutant(
        name="adam-no-bias-correction",
        description="Adam without its bias corrections: m and v used as they are, not m / "
        "(1 - beta1^t) and v / (1 - beta2^t)",
        framework="numpy",
        find="bias_correction1 = 1 - opt.beta1**t",
        replace="bias_correction1 = np.ones_like(t)",
        also=(("bias_correction2 = 1 - opt.beta2**t", "bias_correction2 = np.ones_like(t)"),),
        recipe_changes=ADAM,
        why="the bug is in Adam's update",
        kind="convention",
        convention="torch.optim.Adam, optax.adam, Keras Adam and the paper all correct both "
        "moments; RMSProp-style code and hand-written Adam ports often omit it, which makes the "
        "first step (1 - beta1) / sqrt(1 - beta2) = 3.2 times as large",
        expected=(0, "weight:W1"),
    ),
    Mutant(
        name="adamw-decay-not-times-lr",
        description="AdamW's decoupled decay p (1 - wd) instead of p (1 - lr wd)",
        framework="numpy",
        find="kept(p * (1 - opt.lr * wd))",
        replace="kept(p * (1 - wd))",
        recipe_changes=ADAMW,
        why="the bug is in AdamW's decoupled decay, so it needs adamw and a weight decay",
        kind="convention",
        convention="torch.optim.AdamW, optax.adamw and Keras AdamW multiply the decay by the "
        "learning rate (p <- p - lr wd p); the AdamW paper (Loshchilov and Hutter) multiplies "
        "it by the schedule factor only, so its wd means lr x torch's",
        expected=(0, "weight:W1"),
    ),
    Mutant(
        name="nesterov-swapped",
        description="Nesterov and classical momentum swapped: buf for g + mu buf when nesterov",
        framework="numpy",
        find="direction = kept(g + mu * buf_next) if opt.nesterov else buf_next",
        replace="direction = buf_next if opt.nesterov else kept(g + mu * buf_next)",
        recipe_changes={**MOMENTUM, "nesterov": True},
        why="the bug is in SGD's Nesterov branch",
        kind="convention",
        convention="torch.optim.SGD(nesterov=True), optax.sgd(nesterov=True) and Keras SGD use "
        "the reformulated Nesterov step p <- p - lr (g + mu buf); classical momentum is "
        "p <- p - lr buf; all three default to classical",
        expected=(0, "weight:W1"),
    ),
)

TORCH_MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="default-lr",
        description="the learning rate not passed on: torch.optim.SGD's default lr=1e-3 trains",
        framework="torch",
        find="            lr=optimizer.lr,\n            momentum=momentum,\n",
        replace="            momentum=momentum,\n",
        kind="convention",
        convention="default learning rates differ: torch.optim.SGD 1e-3, Keras SGD 1e-2, "
        "optax.sgd none (required)",
        expected=(0, "weight:W1"),
    ),
    Mutant(
        name="skipped-updates",
        description="optimizer.step() only every other step (a gradient-accumulation leftover): "
        "every odd update is skipped",
        framework="torch",
        find="            if k < steps:  # the last state is the trained model",
        replace="            if k < steps and k % 2 == 0:  # the last state is the trained model",
        kind="update",
        expected=(1, "weight:W1"),
    ),
    Mutant(
        name="adamw-as-adam-l2",
        description="torch.optim.Adam(weight_decay) for AdamW: L2 decay added to the gradient "
        "where AdamW's decoupled decay belongs",
        framework="torch",
        find="return torch.optim.AdamW(tensors, **settings)",
        replace="return torch.optim.Adam(tensors, **settings)",
        recipe_changes=ADAMW,
        why="the bug is in AdamW's decoupled decay, so it needs adamw and a weight decay",
        kind="convention",
        convention="torch.optim.Adam(weight_decay) and optax.chain(add_decayed_weights, adam) "
        "add wd p to the gradient (L2, rescaled by Adam's denominator); torch.optim.AdamW, "
        "optax.adamw and Keras AdamW decay the weights directly, p <- p - lr wd p (and so does "
        "Keras 3's Adam(weight_decay), unlike torch's)",
        expected=(0, "weight:W1"),
    ),
)

JAX_MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="eps-inside-sqrt",
        description="Adam's eps inside the square root: sqrt(v_hat + eps) for sqrt(v_hat) + eps "
        "(optax's eps_root given the eps)",
        framework="jax",
        find="                eps=opt.eps,\n                eps_root=0.0,\n",
        replace="                eps=0.0,\n                eps_root=opt.eps,\n",
        recipe_changes=ADAM,
        why="the bug is in Adam's update",
        kind="convention",
        # eps = 1e-8 is 0 in float16 (its smallest subnormal is 6e-8): both forms are sqrt(v).
        dtypes=("float64", "float32", "bfloat16"),
        convention="torch.optim.Adam and optax.adam(eps_root=0) add eps outside the square "
        "root of the corrected v; optax's eps_root adds it inside; Keras and TF1 add it to the "
        "uncorrected sqrt(v) (the paper's eps-hat)",
        expected=(0, "weight:W1"),
    ),
    Mutant(
        name="gelu-tanh-default",
        description="jax.nn.gelu's default, the tanh approximation, for the exact (erf) GELU",
        framework="jax",
        find='"gelu": rounded_once(partial(jax.nn.gelu, approximate=False)),',
        replace='"gelu": rounded_once(jax.nn.gelu),',
        recipe_changes={"activations": ("gelu", "sigmoid")},
        why="the bug is in the GELU, so the hidden layer uses it",
        kind="convention",
        convention="torch.nn.GELU / F.gelu default to the exact erf form (approximate='none'); "
        "jax.nn.gelu and flax default to the tanh approximation (approximate=True)",
        # The two forms differ by at most 5e-4 (near |Z| = 2): float32's synced loss tolerance
        # absorbs that in the loss, not in its gradient.
        expected=(0, "grad:W1"),
    ),
    Mutant(
        name="optimizer-state-dropped",
        description="the new optax state discarded (functional state not threaded through): "
        "the momentum buffer is never updated",
        framework="jax",
        find="    updates, opt_state = transformation.update(grads, opt_state, params)\n",
        replace="    updates, _ = transformation.update(grads, opt_state, params)\n",
        recipe_changes=MOMENTUM,
        why="the bug loses the optimizer's state, so it needs one: SGD with momentum",
        kind="update",
        expected=(0, "state:momentum:W1"),
    ),
    Mutant(
        name="off-by-one-record",
        description="state k recorded after its own update: every record one step ahead",
        framework="jax",
        find="    return records, optax.apply_updates(params, updates), opt_state\n",
        replace=(
            "    params = optax.apply_updates(params, updates)\n"
            "    records.update({param_quantity(name): params[name] for name in net.param_names})"
            "\n    return records, params, opt_state\n"
        ),
        kind="update",
        # Caught by the step from its own states: the record of state k holds state k + 1's
        # parameters, and the loss computed from them is not the loss recorded at k.
        expected=(0, "loss"),
    ),
    Mutant(
        name="hidden-bfloat16-cast",
        description="a bfloat16 cast (autocast left on) hidden in every activation",
        framework="jax",
        find="A = ACTIVATIONS[activation](Z)",
        replace="A = ACTIVATIONS[activation](Z.astype(jnp.bfloat16))",
        kind="precision",
        expected=(0, "loss"),
        dtypes=("float64", "float32"),
    ),
    Mutant(
        name="stop-gradient",
        description="stop_gradient on each layer's input: no gradient reaches W1",
        framework="jax",
        find='Z = A @ params[f"W{layer}"]',
        replace='Z = jax.lax.stop_gradient(A) @ params[f"W{layer}"]',
        expected=(0, "grad:W1"),
    ),
)


def _idiomatic(name: str, **changes: object) -> Mutant:
    """One of the idiomatic tier's mutants (``compare.testing.IDIOMATIC_MUTANTS``, whose owner
    keeps them beside the conformance kit), as a catalogue entry."""
    try:
        source = testing.idiomatic_mutant(name)
    except KeyError:
        # Renamed or removed there: a mutant that no longer applies, reported as such when run
        # (MutantError), rather than a catalogue that cannot even be listed.
        missing = f"<compare.testing.IDIOMATIC_MUTANTS has no {name}>"
        return Mutant(name, "missing from compare.testing", "torch_nn", missing, "", **changes)
    (find, replace), *also = source.edits
    quantity, step = source.caught_by
    return Mutant(
        name=name,
        description=source.description,
        framework=source.framework,
        find=find,
        replace=replace,
        also=tuple(also),
        kind="idiomatic",
        expected=(step, quantity),
        **changes,
    )


IDIOMATIC_MUTANTS: tuple[Mutant, ...] = (
    _idiomatic(
        "torch-nn-untransposed-weight",
        recipe_changes=SQUARE,
        why=SQUARE_WHY,
        convention="torch nn.Linear stores its weight (out, in) and computes A @ W.T; Flax "
        "nnx.Linear / Dense and Keras Dense store the kernel (in, out) and compute A @ W",
    ),
    _idiomatic(
        "torch-nn-no-zero-grad",
        convention="torch accumulates into .grad until optimizer.zero_grad(); JAX and Flax "
        "return fresh gradients from every grad call",
    ),
    _idiomatic(
        "torch-nn-default-init",
        convention="each library's default initialisation differs: torch nn.Linear "
        "Kaiming-uniform(a=sqrt 5) with a uniform bias, Flax LeCun-normal kernel with zero "
        "bias, Keras Glorot-uniform with zero bias",
    ),
    _idiomatic(
        "flax-nnx-default-init",
        convention="each library's default initialisation differs: torch nn.Linear "
        "Kaiming-uniform(a=sqrt 5) with a uniform bias, Flax LeCun-normal kernel with zero "
        "bias, Keras Glorot-uniform with zero bias",
    ),
    Mutant(
        name="torch-nn-mean-for-sum",
        description="nn.MSELoss()'s default mean reduction where the loss is a sum (half-SSE)",
        framework="torch_nn",
        find='sse = nn.MSELoss(reduction="sum")',
        replace="sse = nn.MSELoss()",
        recipe_changes={"loss": "half-sse"},
        why="the bug is in the half-SSE loss, a sum over the batch",
        kind="convention",
        convention="torch losses and Keras losses default to the mean over elements; the "
        "textbook E = 1/2 sum (t - o)^2 and optax's per-element losses (l2_loss, "
        "squared_error) leave the reduction to you",
        expected=(0, "loss"),
    ),
    Mutant(
        name="torch-nn-softmax-before-cross-entropy",
        description="an nn.Softmax output layer before nn.CrossEntropyLoss, which applies its "
        "own log-softmax",
        framework="torch_nn",
        find="self.layers = nn.Sequential(*layers)",
        replace="self.layers = nn.Sequential(*layers, nn.Softmax(dim=-1))",
        recipe_changes={"loss": "cross-entropy", "activations": ("sigmoid", "identity")},
        why="the bug is in how the logits reach cross-entropy, so the recipe uses it (with the "
        "identity output layer it requires)",
        kind="convention",
        convention="torch nn.CrossEntropyLoss, optax.softmax_cross_entropy and Keras "
        "CategoricalCrossentropy(from_logits=True) take logits; Keras' default "
        "from_logits=False and a model ending in Softmax take probabilities",
        expected=(0, "loss"),
    ),
    Mutant(
        name="flax-lr-inside-momentum",
        description="the learning rate inside the momentum velocity: chain(scale(-lr), "
        "trace(mu)), so buf <- mu buf - lr g and p <- p + buf",
        framework="flax_nnx",
        find="l2, optax.sgd(rule.lr, momentum=rule.momentum, nesterov=rule.nesterov)",
        replace=(
            "l2, optax.scale(-rule.lr), optax.trace(decay=rule.momentum, nesterov=rule.nesterov)"
        ),
        recipe_changes=MOMENTUM,
        why="the bug is in SGD's momentum buffer",
        kind="convention",
        convention="torch.optim.SGD and optax.sgd keep the velocity of gradients, buf <- mu buf "
        "+ g, p <- p - lr buf; Keras SGD and Sutskever et al. keep it of steps, v <- mu v - lr g, "
        "p <- p + v: the same parameters for a constant lr, a buffer -lr times torch's, and a "
        "different trajectory once lr changes",
        expected=(0, "state:momentum:W1"),
    ),
    Mutant(
        name="flax-adam-decay-decoupled",
        description="optax.adamw for torch.optim.Adam(weight_decay): decoupled decay where "
        "torch's Adam adds L2 to the gradient",
        framework="flax_nnx",
        find='    if rule.name == "adam":\n',
        replace='    if rule.name == "adam" and rule.weight_decay == 0:\n',
        recipe_changes={**ADAM, "weight_decay": 0.01},
        why="the bug is in Adam's weight decay, so it needs adam and a weight decay",
        kind="convention",
        convention="torch.optim.Adam(weight_decay) adds wd p to the gradient (L2); "
        "torch.optim.AdamW and optax.adamw decay the weights directly (decoupled)",
        expected=(0, "weight:W1"),
    ),
)

#: Every mutant, spread over the five built-in implementations.
CATALOGUE: tuple[Mutant, ...] = NUMPY_MUTANTS + TORCH_MUTANTS + JAX_MUTANTS + IDIOMATIC_MUTANTS


def get(name: str) -> Mutant:
    """The mutant of ``CATALOGUE`` called ``name``.

    Raises:
        KeyError: no mutant has that name.
    """
    for mutant in CATALOGUE:
        if mutant.name == name:
            return mutant
    raise KeyError(f"no mutant {name!r}; choose from {', '.join(m.name for m in CATALOGUE)}")


def build(mutant: Mutant) -> types.ModuleType:
    """Compile ``mutant``'s edited copy of its implementation into a new module object.

    Raises:
        implementations.FrameworkUnavailable: the framework is not installed.
        MutantError: an edit does not match the source exactly once.
    """
    original = implementations.load(mutant.framework)  # also flips JAX's x64 switch first
    try:
        return testing.mutate(original, mutant.edits, mutant.name)
    except testing.MutantError as error:
        raise MutantError(f"mutant {mutant.name} no longer applies: {error}") from None


@dataclass(frozen=True)
class MutantResult:
    """What the check made of one mutant in one dtype.

    Attributes:
        mutant: The mutant run.
        dtype: The dtype it ran in.
        result: The check of the mutant against its reference (``None`` when it did not train).
        error: Set when the mutant could not be built or crashed instead of training (it is
            then not caught).
    """

    mutant: Mutant
    dtype: str
    result: CheckResult | None = None
    error: str | None = None

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        """Every comparison of the mutant with its reference (and with itself)."""
        return () if self.result is None else tuple(self.result.comparisons)

    @property
    def first_failure(self) -> Comparison | None:
        """The failing comparison that decides the verdict and fails earliest, or ``None``."""
        return None if self.result is None else self.result.first_failure

    @property
    def caught(self) -> bool:
        """The check's verdict on the mutant was ``"fail"``."""
        return self.error is None and self.result is not None and self.result.verdict == "fail"

    @property
    def caught_at(self) -> tuple[int, str, str] | None:
        """``(step, quantity, mode)`` of the first failure, or ``None`` (not caught, or caught
        by an oracle or a precision switch rather than a comparison)."""
        failure = self.first_failure
        if not self.caught or failure is None:
            return None
        return failure.first_failing_step, failure.quantity, failure.mode

    def failing_at(self, step: int) -> tuple[str, ...]:
        """The quantities whose verdict-deciding comparisons first fail at ``step``."""
        return tuple(
            dict.fromkeys(
                c.quantity
                for c in self.comparisons
                if c.gating and not c.passed and c.first_failing_step == step
            )
        )

    @property
    def as_expected(self) -> bool:
        """Caught no later than ``mutant.expected``'s step, with its quantity failing there."""
        if self.mutant.expected is None or self.caught_at is None:
            return False
        step, quantity = self.mutant.expected
        return self.caught_at[0] == step and quantity in self.failing_at(step)


@dataclass(frozen=True)
class Effect:
    """How far a mutant's run ends from its reference's: the measured effect of the bug.

    Attributes:
        mutant: The mutant's name.
        dtype: The dtype.
        steps: Updates trained.
        first_step: The first failing step (``None``: no comparison failed).
        quantity: The quantity failing first there.
        max_abs: That comparison's greatest ``|mutant - reference|``.
        max_rel: Its greatest relative difference.
        final_loss: The mutant's loss at the last state.
        reference_loss: The reference's loss at the last state.
        test_accuracy: The mutant's trained model's test accuracy.
        reference_test_accuracy: The reference's.
    """

    mutant: str
    dtype: str
    steps: int
    first_step: int | None
    quantity: str | None
    max_abs: float | None
    max_rel: float | None
    final_loss: float | None
    reference_loss: float | None
    test_accuracy: float | None
    reference_test_accuracy: float | None


def effect(result: MutantResult) -> Effect:
    """The measured effect of ``result``'s bug, read from its check."""
    failure = result.first_failure
    summaries = {} if result.result is None else result.result.summaries
    own = summaries.get(result.mutant.framework, {})
    reference = summaries.get(result.mutant.reference, {})
    return Effect(
        mutant=result.mutant.name,
        dtype=result.dtype,
        steps=0 if result.result is None else result.result.steps,
        first_step=None if failure is None else failure.first_failing_step,
        quantity=None if failure is None else failure.quantity,
        max_abs=None if failure is None else failure.max_abs,
        max_rel=None if failure is None else failure.max_rel,
        final_loss=own.get("final_loss"),
        reference_loss=reference.get("final_loss"),
        test_accuracy=own.get("test_accuracy"),
        reference_test_accuracy=reference.get("test_accuracy"),
    )


def run_mutant(
    mutant: Mutant,
    dtype: str = "float64",
    steps: int = STEPS,
    *,
    oracles: bool = True,
) -> MutantResult:
    """Train ``mutant`` beside its reference on its recipe in ``dtype`` and check them.

    The check is ``compare.check.check`` with ``crosscheck run``'s defaults (both modes, the
    default tolerances); the mutant module runs in this process (a module object built here
    cannot be loaded by a worker), and so does its reference.

    Args:
        mutant: The mutant.
        dtype: The compute dtype.
        steps: Updates to train.
        oracles: Run the gradient oracles (as ``crosscheck run`` does); off, only the
            comparisons decide, which is quicker and shows that they alone catch the bug.

    Returns:
        The result; a mutant that cannot be built (``MutantError``) or crashes has ``error``
        set.

    Raises:
        implementations.FrameworkUnavailable: a framework it needs is not installed.
    """
    try:
        module = build(mutant)
    except MutantError as error:
        return MutantResult(mutant, dtype, error=str(error))
    try:
        # Bugs overflow and divide by zero; that is for the check to judge, not to warn about.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            result = check(
                mutant.recipe(steps, dtype),
                frameworks=(mutant.framework,),
                reference=mutant.reference,
                modules={mutant.framework: module},
                isolate=False,
                oracles=oracles,
            )
    except implementations.FrameworkUnavailable:
        raise
    except Exception as error:  # a crashing mutant is a result to report, not a failure here
        return MutantResult(mutant, dtype, error=f"{type(error).__name__}: {error}")
    return MutantResult(mutant, dtype, result)


def run_catalogue(
    mutants: Sequence[Mutant] = CATALOGUE,
    steps: int = STEPS,
    dtypes: Sequence[str] = DEFAULT_DTYPES,
    *,
    oracles: bool = True,
    progress: Callable[[MutantResult], None] | None = None,
) -> list[MutantResult]:
    """``run_mutant`` for each of ``mutants`` in each of ``dtypes`` where it is a bug
    (``Mutant.dtypes``), dtype by dtype.

    Args:
        mutants: The mutants to run.
        steps: Updates each trains.
        dtypes: The dtypes to run them in.
        oracles: Passed to ``run_mutant``.
        progress: Called with each result as it is ready.
    """
    results = []
    for dtype in dtypes:
        for mutant in mutants:
            if dtype not in mutant.dtypes:
                continue
            result = run_mutant(mutant, dtype, steps, oracles=oracles)
            results.append(result)
            if progress is not None:
                progress(result)
    return results


def catch_counts(results: Sequence[MutantResult]) -> dict[str, tuple[int, int]]:
    """Dtype -> ``(mutants caught, mutants run)``, dtypes in the order first run."""
    counts: dict[str, tuple[int, int]] = {}
    for result in results:
        caught, total = counts.get(result.dtype, (0, 0))
        counts[result.dtype] = (caught + result.caught, total + 1)
    return counts


def exit_code(results: Sequence[MutantResult]) -> int:
    """0 when every mutant was caught, 1 when any escaped or crashed."""
    return 0 if all(result.caught for result in results) else 1
