"""Every tolerance crosscheck judges by, per dtype and per comparison, with its reasoning.

Two values agree when ``|a - b| <= atol + rtol * |b|``, ``b`` the reference's value: the
convention of ``numpy.testing.assert_allclose`` and ``torch.testing.assert_close``. Every default
below derives from the dtype's machine epsilon ``eps`` (the gap between 1 and the next number:
2.2e-16 in float64, 1.2e-7 in float32, 9.8e-4 in float16, 7.8e-3 in bfloat16) and its smallest
normal number ``tiny`` (2.2e-308, 1.2e-38, 6.1e-5, 1.2e-38), so one rule serves every dtype.

**No tolerance below what the dtype represents.** Below ``tiny`` a dtype has no relative
precision left (its subnormal numbers are evenly spaced), and XLA and some torch kernels flush
subnormal results to zero while NumPy keeps them. So every atol is at least ``tiny``: a subnormal
value that one framework flushed to zero agrees, and ``compare.agreement`` counts such elements
(``Comparison.flushed``) so the report can say so. This applies to a user's ``--atol`` too.

A flushed *intermediate* moves what is computed from it. A gradient element is a sum over the
batch's rows of the layer's input times the backpropagated ``delta``; where ``delta`` is
subnormal (saturated sigmoids on unscaled data: wine, breast_cancer) and one framework flushes
it, the element moves by up to ``tiny`` per row times the row's input (measured: 4.5e-38 on
wine in float32, whose features reach 1680, against a ``tiny`` of 1.2e-38). So a gradient's
floor is ``flush_floor``: the flushing precision's ``tiny`` times the rows, the largest input
(at least 1: a hidden layer's input is an activation) and, per layer the delta passes back
through, the largest width. In float32 on wine that is 3e-33, thirty orders below a gradient
that moves a weight. Flushing happens in the precision the CPU computes in, which is float32
for float16 and bfloat16 too (``FLUSH_TINY``), so the floor stays invisible there.

**Synced mode, at the reference's state k** (loss, gradients, correct count): every framework
computes from the *same* state, so two correct implementations differ only by the rounding of
one forward and one backward pass. A gradient element is a sum over the batch's ``n`` rows, and
the rounding error of such a sum grows like ``sqrt(n) * eps`` relative to the sum of its terms'
magnitudes (the probabilistic bound; the worst case is ``n * eps``):

* ``rtol = 8 * sqrt(max(n, 16)) * eps``. The factor 8 covers the few roundings per term before
  the sum (the matmul, the activation and its derivative, the loss derivative). The floor of 16
  terms is the small-sum floor: with one training row the row sum is no sum at all, yet every
  element of a hidden layer's gradient is still a sum over the next layer's units and a chain of
  a dozen roundings (measured: torch and NumPy differ by 2.3e-17 on a one-row grad:W1 whose
  unfloored tolerance was 1.8e-17). On the tutorial (n = 130) rtol is 1.1e-5 in float32 and
  2.0e-14 in float64; the measured worst disagreement is five times inside. rtol is capped at
  ``sqrt(eps)``, the independent mode's: in float16 and bfloat16 the formula would pass a 70%
  error, while every framework sums those types in float32 and rounds once, so their one-step
  errors are a few units of the dtype.
* ``atol = rtol * m_k``, ``m_k`` the *running maximum* of the quantity's reference magnitude over
  states ``0..k``. A gradient element that passes through zero is the small difference of large
  terms, so its rounding error is set by the size of those terms, not by its own tiny value
  (measured: errors of 1.5e-8 on float32 elements of 1e-5, pure cancellation). The terms are not
  recorded, but the quantity's own largest magnitude so far is a lower estimate of their scale:
  as training converges the gradient shrinks by cancellation while the per-row terms stay as
  large as they were. The maximum is causal (states up to ``k`` only) so that the verdict on
  state ``k`` is final as soon as ``k`` arrives, which streaming needs; at the end of a run it
  equals the whole-series maximum that a stored run would use, so it never judges later states
  more strictly than that, and it judges states before a later peak more strictly, not less.
* **The terms' own rounding** (``compare.term_bounds``): the running maximum is only a lower
  estimate of the terms. Where they are far above every gradient so far (identity layers on a
  diverging run, unscaled inputs whose ``Z = X W`` and ``A - Y`` cancel, half precision), the
  judge bounds each element's rounding by a running-error pass at the reference's state ``k``
  (magnitudes of every term, forward and backward) and the atol of a loss or gradient element
  is at least that bound's allowance. Where an element's terms exceed the dtype's largest
  number the dtype may overflow computing it, and whether it gives inf, -inf, NaN or a number
  depends on the order of its sums: such an element (and the step that uses it) is not judged
  (an infinite atol, ``compare.agreement``).

**Synced mode, the state after the step** (parameters and optimizer state at ``k + 1``, from the
reference's state ``k``): the update propagates whatever the gradient was allowed to differ by,
``tau = atol_k + rtol * |g|`` per element, and adds a few roundings of its own. The allowance per
element is derived from the optimizer's formula (``update_allowance``):

* SGD: ``p - lr * g`` moves by ``lr * tau``; momentum adds ``mu`` times the buffer's error (the
  buffer itself moves by ``(1 - dampening) * tau``, by ``tau`` at the first update).
* Adam divides ``m_hat`` by ``sqrt(v_hat) + eps``. Where ``|g|`` is far above ``tau`` the update
  is smooth in ``g`` and moves by its Lipschitz constant times ``tau`` (a small fraction of
  ``lr``); where ``|g|`` is at the rounding-noise level the normalised update can change sign,
  so it may move by up to twice its largest possible size (``lr`` at the first step). The
  allowance is the smaller of the two bounds, element by element, so an element whose gradient
  is rounding noise does not false-alarm, while a wrong learning rate, a skipped or stale
  update, a wrong sign or a missing bias correction moves every other element by a multiple of
  ``lr`` and fails at step 0 or 1.
* Plus the step's own rounding: ``rtol = 2 * eps`` on the result (each implementation rounds
  each new value once), and ``8 * eps`` times the magnitude of the update's terms (the change
  ``|p_{k+1} - p_k|``; ``beta1 |m| + (1 - beta1) |g|`` for a buffer, ...): the update is a
  handful of roundings (two in SGD, up to eight in Adam's normalised step), which two
  implementations may order differently. Charging them to the update's size rather than the
  weight's keeps half precision able to see a wrong update: a float16 weight of 0.5 has a
  rounding unit of 5e-4, and an SGD step of 0.1 x 0.05 spans ten of them.
* Where the arithmetic leaves the dtype's normal range: each term of a buffer's update may be
  flushed to zero below the CPU's ``tiny`` (``BUFFER_TERMS``); Adam's ``v`` may be rounded to
  one subnormal quantum or to zero, where the update is steep in ``v``
  (``_adam_underflow_allowance``); and ``g^2`` may overflow in an implementation that rounds
  every operation to the dtype (optax in float16 for ``|g| >= 256``) while one that computes
  in float32 and rounds once holds a finite ``v``: ``v`` is not judged there, and the step may
  be anything up to its largest size.

**Independent mode** (each framework follows its own trajectory): rounding differences feed back
into the weights at every step and training amplifies them, so ``rtol = sqrt(eps)`` (half the
digits) and ``atol = rtol * 1e-3``, which judges values a thousand times below the O(1) scale of
losses, weights and outputs absolutely. A wrong formula moves the leading digits and still fails.
In float64 the amplified rounding stays far inside half the digits (2e-12 relative at worst on
the tutorial), so per-state drift decides the verdict there, unless the run measures its own
trajectory amplifying rounding (``drift_is_amplified_rounding``: every synced and own step
agreed, and the drift is more than ``AMPLIFIED`` times what those steps' measured differences
can add up to on a stable trajectory); that drift, and the trained model's, is then reported
as it is below float64, with the amplification a precision fact. With no synced step (mode
``independent``) there is no such measurement, but the reference's own records bound what one
correct step may do: the synced next-state allowance (``update_allowance``) of its step from
state ``k``. Where that exceeds the independent tolerance at ``k + 1`` for some parameter
element (``step_outgrows_independent``), a single correct step may already part two trajectories
beyond it, and the independent rule cannot tell a wrong step from rounding from that state on:
Adam's normalised update at gradient elements far below its ``eps`` multiplies their rounding
by ``lr / eps`` (measured: unscaled breast_cancer, tanh units saturated, grad:W1 elements of
6e-6 that JAX and NumPy round 9e-15 apart, so W1 parts by 7e-9 after one AdamW step of lr 0.01,
against an independent tolerance of 1.6e-10 on those weights; unscaled wine, grad:b1 5e-19
apart becoming 1.4e-14 in b1, then growing 25-fold a step while every gradient still agreed to
1e-18). Drift that first exceeds the tolerance at or after that state is then reported, with the
state a precision fact (``amplifying_from``); drift before it is judged, so a wrong formula or
update that shows in the first steps still fails, and ``--mode both`` judges every step.
Drift can also outgrow the tolerance before that state, where no single step can but the
trajectory multiplies each step's rounding (measured: unscaled breast_cancer, saturated gelu and
tanh units, Adam: the frameworks' differences grew 10 to 20-fold a step from the first, and a
gradient failed at state 5 against an onset of 22; mode ``both`` measured an amplification of
1e11 and passed every step). Such a run, whose first step agreed, is repeated in mode ``both``
(``compare.check``'s ``synced_diagnosis``): its synced steps decide, so a wrong step there fails
at the step where it is wrong.

Below float64 the drift does not decide: in float32 the tutorial's weights already differ by 3.1e-4
relative against ``sqrt(eps)`` = 3.45e-4, and longer runs cross it. So ``both`` mode judges float32
and half precision by the synced step and the trained model's test predictions, and only *reports*
the drift (``drift_is_verdict``); test classes that differ only on near ties (``near_tie_margin``)
while the test outputs agree are reported, not failed. The trained model's classes are a consequence
of its weights, so where the weights' drift is reported their classes' is too: below float64 a test
row whose class differs from the reference's is reported when each model's class is the one a
float64 forward of its own final weights gives (near ties of that forward aside), and fails when it
is not (a ``predict`` at odds with its weights; measured in the false-alarm sweep: five 16-bit runs
of 49 to 3,903 steps whose classes moved with the drifted weights on clear rows, up to 5 of 20,
every one the class of its own weights).

Counts, classes and accuracies are compared exactly (``EXACT``); in synced mode below float64 the
training rows' correct count is reported, not judged, because a training row on a near tie may
flip with the rounding of one pass and its outputs are not recorded to tell (``synced_gates``).
In float64, where the count is judged, the judge tells from the weights: at a state where two
correct counts differ, a float64 forward of the reference's weights at that state on its batch
counts the rows on a near tie (``near_tie_margin`` under the independent rule, the test classes'
rule), and the counts may differ by at most that many rows (plus half a row, so that the division
by the batch's rows cannot round a difference of exactly that many above it; counts are integers).
Only a near tie's class is decided by one pass's rounding; a count off by more rows, on rows with
a clear top output, is a wrong count or a wrong forward and fails. Measured: unscaled
breast_cancer with saturated sigmoid outputs, where NumPy's outputs of 547 of the 549 rows were a
0 and a subnormal (1.6e-316, 1.9e-320, ...) where torch gives exactly 0 twice, a tie ``argmax``
gives to the first class: 12 to 20 rows' classes moved at the first states (a 0.0255 accuracy
difference at state 0 from identical weights).

``rtol`` and ``atol`` given by the user override the defaults of the per-state comparisons; given
``rtol`` alone, atol follows it by the same rule as the default.

This module only computes numbers; it imports no framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from implementations.contract import Optimizer

#: Machine epsilon of every dtype. bfloat16 keeps 8 significant bits (NumPy has no ``finfo``
#: for it without ml_dtypes).
EPS: dict[str, float] = {
    "float64": float(np.finfo(np.float64).eps),
    "float32": float(np.finfo(np.float32).eps),
    "float16": float(np.finfo(np.float16).eps),
    "bfloat16": 2.0**-7,
}

#: Smallest normal number of every dtype (bfloat16 has float32's exponent range).
TINY: dict[str, float] = {
    "float64": float(np.finfo(np.float64).tiny),
    "float32": float(np.finfo(np.float32).tiny),
    "float16": float(np.finfo(np.float16).tiny),
    "bfloat16": float(np.finfo(np.float32).tiny),
}

#: Largest finite number of every dtype (bfloat16: 3.39e38, just below float32's).
LARGEST: dict[str, float] = {
    "float64": float(np.finfo(np.float64).max),
    "float32": float(np.finfo(np.float32).max),
    "float16": float(np.finfo(np.float16).max),
    "bfloat16": (2 - 2.0**-7) * 2.0**127,
}

#: The smallest normal number of the precision each dtype is computed in on a CPU, below which
#: flush-to-zero (FTZ/DAZ) acts: float16 and bfloat16 are computed in float32 and rounded.
FLUSH_TINY: dict[str, float] = {
    "float64": TINY["float64"],
    "float32": TINY["float32"],
    "float16": TINY["float32"],
    "bfloat16": TINY["float32"],
}

#: Significant bits (the implicit leading bit included) of every dtype, for errors in ULPs.
PRECISION_BITS: dict[str, int] = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}

#: Smallest normal exponent (``frexp`` convention, mantissa in [0.5, 1)), for ULPs near zero.
MIN_EXPONENT: dict[str, int] = {"float64": -1021, "float32": -125, "float16": -13, "bfloat16": -125}

#: Synced records: rounding steps per term before the sum over rows.
SYNCED_SAFETY = 8.0

#: Synced records: the small-sum floor on the number of terms (see the module docstring).
SYNCED_MIN_TERMS = 16

#: Synced next state: roundings of one update, times eps, times its terms' magnitude.
UPDATE_ROUNDINGS = 8.0

#: Synced next state: the terms of an optimizer buffer's update (each may be flushed).
BUFFER_TERMS = 2

#: Synced next state: rtol in units of eps (each implementation rounds the result once).
RESULT_ROUNDINGS = 2.0

#: Independent mode: atol is this fraction of rtol (quantities here are of order one).
INDEPENDENT_ATOL_SCALE = 1e-3

#: Comparison modes, and the one ``check`` uses by default.
MODES = ("independent", "synced", "both")


@dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * |b|``."""

    rtol: float
    atol: float


#: Class predictions, accuracies and counts must match exactly: they are what the user sees.
EXACT = Tolerance(rtol=0.0, atol=0.0)


@dataclass(frozen=True)
class Rule:
    """How a comparison sets its tolerance at each state.

    ``atol_k = max(floor, atol + scale * m_k)``, ``m_k`` the running maximum of the reference's
    finite magnitudes over states ``0..k`` (``scale == 0``: a fixed atol).

    Attributes:
        rtol: Relative tolerance.
        atol: Fixed part of the absolute tolerance.
        scale: Multiplies the running maximum (``rtol`` for the synced rule, else 0).
        floor: The dtype's smallest normal number (0 for exact comparisons).
    """

    rtol: float
    atol: float
    scale: float = 0.0
    floor: float = 0.0

    def atol_at(self, running_max: np.ndarray | float) -> np.ndarray:
        """The absolute tolerance given the running maximum of each state."""
        return np.maximum(self.floor, self.atol + self.scale * np.asarray(running_max, float))

    @property
    def exact(self) -> bool:
        """Nothing but identical values agree."""
        return self.rtol == 0 and self.atol == 0 and self.scale == 0 and self.floor == 0


EXACT_RULE = Rule(0.0, 0.0)


def flush_floor(dtype: str, rows: int, input_scale: float, widths: tuple[int, ...]) -> float:
    """The atol floor of a gradient: how far flushing subnormal intermediates can move it.

    Args:
        dtype: The compute dtype.
        rows: Rows of the largest batch (the terms of the sum).
        input_scale: The largest ``|X|`` of the training inputs.
        widths: The network's widths, input first.
    """
    layers = len(widths) - 1
    envelope = float(max(widths)) ** max(layers - 1, 0)
    return FLUSH_TINY[dtype] * rows * max(1.0, input_scale) * envelope


def independent(dtype: str, rtol: float | None = None, atol: float | None = None) -> Rule:
    """Independent mode: ``rtol = sqrt(eps)``, ``atol = rtol * 1e-3`` unless given."""
    rtol = math.sqrt(EPS[dtype]) if rtol is None else rtol
    atol = rtol * INDEPENDENT_ATOL_SCALE if atol is None else atol
    return Rule(rtol, atol, 0.0, TINY[dtype])


def synced_rtol(dtype: str, rows: int) -> float:
    """``min(8 sqrt(max(rows, 16)) eps, sqrt(eps))``: one pass's rounding of a sum of ``rows``."""
    eps = EPS[dtype]
    return min(SYNCED_SAFETY * math.sqrt(max(rows, SYNCED_MIN_TERMS)) * eps, math.sqrt(eps))


def synced(dtype: str, rows: int, rtol: float | None = None, atol: float | None = None) -> Rule:
    """Synced mode at the reference's state: ``synced_rtol``, ``atol = rtol * m_k``.

    Args:
        dtype: The compute dtype.
        rows: Rows of the largest batch: the length of the sum behind every gradient element.
        rtol: Overrides the derived rtol (atol then follows it, scaled).
        atol: A fixed atol instead of the scaled one.
    """
    rtol = synced_rtol(dtype, rows) if rtol is None else rtol
    if atol is not None:
        return Rule(rtol, atol, 0.0, TINY[dtype])
    return Rule(rtol, 0.0, rtol, TINY[dtype])


def next_state(dtype: str, rtol: float | None = None, atol: float | None = None) -> Rule:
    """Synced mode after the step: ``rtol = 2 eps`` (or the user's), the fixed atol 0 (or the
    user's), to which ``update_allowance`` adds its per-element allowance; floored at ``tiny``."""
    rtol = RESULT_ROUNDINGS * EPS[dtype] if rtol is None else rtol
    return Rule(rtol, 0.0 if atol is None else atol, 0.0, TINY[dtype])


def given_state(dtype: str) -> Rule:
    """A step's recorded state at ``k`` against the state it was given: identical, but for a
    subnormal given value that the framework read as zero. Denormals-are-zero (DAZ) acts on
    inputs as flush-to-zero does on results (measured: JAX in float32 records Adam's ``m`` of
    1.0e-39 given to it as 0 on unscaled wine), so the floor is the flushing precision's
    ``tiny`` and nothing else: a record one update off moves a normal number."""
    return Rule(0.0, 0.0, 0.0, FLUSH_TINY[dtype])


def update_allowance(
    optimizer: Optimizer,
    buffer: str,
    dtype: str,
    *,
    grad: np.ndarray,
    grad_allowed: np.ndarray,
    param: np.ndarray,
    change: np.ndarray,
    count: np.ndarray | None,
    buffers: dict[str, np.ndarray],
) -> np.ndarray:
    """How far one correct step may move an element of the next state, given the gradient's
    allowed error and the step's own rounding (see the module docstring).

    Args:
        optimizer: The update rule.
        buffer: ``"param"`` (the parameter), ``"momentum"``, ``"m"`` or ``"v"``.
        dtype: The compute dtype.
        grad: ``(n, ...)``: the reference's gradient at state ``k``.
        grad_allowed: ``(n, ...)``: the gradient's tolerance per element, ``atol_k + rtol |g|``.
        param: ``(n, ...)``: the parameter at state ``k``.
        change: ``(n, ...)``: ``|reference's next value - its value at k|`` of this quantity.
        count: ``(n,)``: ``state:step`` at ``k`` (updates already applied), or ``None`` (sgd).
        buffers: The parameter's optimizer buffers at ``k`` (``"momentum"``, ``"m"``, ``"v"``).

    Returns:
        ``(n, ...)``: the allowed ``|a - b|`` per element, before the rtol and the floor.
    """
    eps = EPS[dtype]
    lr, decay = optimizer.lr, optimizer.weight_decay
    l2 = 0.0 if optimizer.name == "adamw" else decay
    # A buffer's update sums BUFFER_TERMS terms (mu buf + g, b1 m + (1 - b1) g, b2 v +
    # (1 - b2) g^2); each one below the flushing precision's tiny may be flushed to zero (and
    # the buffer at k read as zero), so the buffer may lose that much per term (measured: JAX
    # in float32 on unscaled wine, v = 5.1e-39 read as 0 and (1 - b2) g^2 = 1.1e-38 flushed,
    # so v = 0 where NumPy holds 1.6e-38, above the tiny floor of 1.2e-38).
    flushed = BUFFER_TERMS * FLUSH_TINY[dtype]
    grad, param = np.abs(grad), np.abs(param)
    # The gradient the rule uses, g + l2 p, carries the gradient's allowance and one rounding.
    used = grad + l2 * param
    tau = grad_allowed + eps * used
    steps = _per_element(count, grad) if count is not None else None
    if optimizer.name == "sgd":
        return lr * tau + UPDATE_ROUNDINGS * eps * change
    if optimizer.name == "momentum":
        previous = np.abs(buffers["momentum"])
        first = steps == 0  # torch copies the gradient into the buffer at the first update
        buffer_error = np.where(first, tau, (1 - optimizer.dampening) * tau)
        if buffer == "momentum":
            terms = np.where(first, used, optimizer.momentum * previous + used)
            return buffer_error + UPDATE_ROUNDINGS * eps * terms + flushed
        moved = tau + optimizer.momentum * buffer_error if optimizer.nesterov else buffer_error
        return lr * moved + UPDATE_ROUNDINGS * eps * change
    beta1, beta2 = optimizer.beta1, optimizer.beta2
    m0, v0 = np.abs(buffers["m"]), np.abs(buffers["v"])
    # g^2 of v's update may exceed the dtype's largest number while v itself does not: an
    # implementation that rounds every operation to the dtype (optax in float16: 256^2 >
    # 65504) then holds v = inf, one that computes the update in float32 and rounds once
    # (torch's CPU kernels, the NumPy reference) a finite v. Both are the dtype's honest
    # arithmetic: v is not judged there, and the step, m / (sqrt(v) + eps), may be 0.
    squared_overflows = used**2 > LARGEST[dtype]
    if buffer == "m":
        rounded = UPDATE_ROUNDINGS * eps * (beta1 * m0 + (1 - beta1) * used)
        return (1 - beta1) * tau + rounded + flushed
    if buffer == "v":
        propagated = (1 - beta2) * (2 * used * tau + tau**2)
        rounded = UPDATE_ROUNDINGS * eps * (beta2 * v0 + (1 - beta2) * used**2)
        allowance = propagated + rounded + flushed
        return np.where(squared_overflows, np.inf, allowance)
    # AdamW's decoupled decay p (1 - lr wd) is one more rounding of a weight-sized value.
    decayed = eps * param if optimizer.name == "adamw" and decay else 0.0
    allowance = _adam_update_allowance(optimizer, steps + 1, m0, v0, used, tau)
    overflows = squared_overflows | _adam_corrected_v_overflows(
        optimizer, steps + 1, v0, used, tau, dtype
    )
    allowance = np.where(
        overflows,
        np.maximum(allowance, _adam_largest_update(optimizer, steps + 1, m0, v0)),
        allowance,
    )
    underflow = _adam_underflow_allowance(optimizer, steps + 1, m0, v0, used, tau, dtype)
    return allowance + underflow + UPDATE_ROUNDINGS * eps * change + decayed


def _adam_corrected_v_overflows(
    optimizer: Optimizer,
    t: np.ndarray,
    v0: np.ndarray,
    g: np.ndarray,
    tau: np.ndarray,
    dtype: str,
) -> np.ndarray:
    """Where the bias-corrected ``v_hat = v_1 / B2`` may exceed the dtype's largest number
    while ``v_1`` itself does not.

    ``B2 = 1 - b2^t`` is small in the first steps (0.003 at t = 3 with b2 = 0.999), so
    ``v_hat`` is up to ``1 / B2`` times ``v_1``. An implementation that rounds every operation
    to the dtype (optax in float16: ``nu / (1 - b2^t)`` in float16) then holds ``v_hat = inf``
    and its update ``m_hat / (sqrt(inf) + eps)`` is 0, while one that computes the update in
    float32 and rounds once (the NumPy reference, torch's CPU kernels) moves the element by up
    to ``lr``. Both are the dtype's honest arithmetic (measured: float16 unscaled breast_cancer,
    t = 3, ``v_1 = 202``, ``v_hat = 67400 > 65504``: JAX's step 0, NumPy's 0.0097), so there
    the update may be anything from 0 to its largest size (``_adam_largest_update``). ``v_1``
    is taken at the top of the gradient's interval, ``|g| + tau``, and its update and the
    division each round by ``UPDATE_ROUNDINGS`` units (``B2`` itself rounded to the dtype).
    """
    beta2 = optimizer.beta2
    B2 = 1 - beta2**t
    v1 = beta2 * v0 + (1 - beta2) * (g + tau) ** 2
    return v1 * (1 + 2 * UPDATE_ROUNDINGS * EPS[dtype]) / B2 > LARGEST[dtype]


def _adam_underflow_allowance(
    optimizer: Optimizer,
    t: np.ndarray,
    m0: np.ndarray,
    v0: np.ndarray,
    g: np.ndarray,
    tau: np.ndarray,
    dtype: str,
) -> np.ndarray:
    """How far the rounding of ``v`` near zero may move Adam's update.

    ``v`` is rounded to the dtype with an absolute error of up to one quantum near zero: the
    subnormal spacing (``tiny * eps``: 6e-8 in float16, whose ``(1 - b2) g^2`` underflows
    there for ``|g| < 0.008``), or ``tiny`` itself where the CPU flushes subnormals (float32,
    and the float32 arithmetic of the 16-bit types). Two correct implementations may hold
    ``v`` and ``v + quantum``; near zero the update ``S m / (sqrt(v / B2) + eps)`` is steep
    in ``v`` (measured: float16, eps 1e-4, ``v`` of 0 against 6e-8 moved a weight by 0.054
    at the first step, ``|m / eps|`` against ``|m / sqrt(v_hat)|``), and the size bound of
    ``_adam_update_allowance`` assumes ``v`` did not underflow. So the allowance adds
    ``S |m_1| (1 / D(v_1 - q) - 1 / D(v_1 + q))``, ``D(v) = sqrt(max(v, 0) / B2) + eps``,
    which vanishes where ``v_1`` is many quanta above zero.
    """
    lr, eps = optimizer.lr, optimizer.eps
    beta1, beta2 = optimizer.beta1, optimizer.beta2
    quantum = max(TINY[dtype] * EPS[dtype], FLUSH_TINY[dtype])
    B1, B2 = 1 - beta1**t, 1 - beta2**t
    v1 = beta2 * v0 + (1 - beta2) * g**2
    m1 = beta1 * m0 + (1 - beta1) * (g + tau)

    def denominator(v: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(v, 0.0) / B2) + eps

    return lr / B1 * m1 * (1 / denominator(v1 - quantum) - 1 / denominator(v1 + quantum))


def _per_element(count: np.ndarray, like: np.ndarray) -> np.ndarray:
    count = np.asarray(count, dtype=np.float64)
    return count.reshape(count.shape + (1,) * (np.ndim(like) - count.ndim))


def _adam_update_allowance(
    optimizer: Optimizer,
    t: np.ndarray,
    m0: np.ndarray,
    v0: np.ndarray,
    g: np.ndarray,
    tau: np.ndarray,
) -> np.ndarray:
    """Bound on ``|u(x) - u(g)|`` over ``|x - g| <= tau``, ``u`` Adam's update of one element.

    ``u(x) = lr * N(x) / (sqrt(v_hat(x)) + eps)`` with ``N = (b1 m0 + (1 - b1) x) / B1``,
    ``v_hat = (b2 v0 + (1 - b2) x^2) / B2``, ``B1 = 1 - b1^t``, ``B2 = 1 - b2^t``.

    * Lipschitz: ``|du/dx| <= lr ((1 - b1)/B1 / D + |N| sqrt((1 - b2)/B2) / D^2)``, with
      ``D >= D_min``, the denominator at the interval's smallest ``|x|``, and ``|N|`` at its
      largest, since ``|d sqrt(v_hat)/dx| <= sqrt((1 - b2)/B2)``.
    * Size: ``|u| <= lr sqrt(B2)/B1 (b1 |m0| / (sqrt(b2 v0) + eps sqrt(B2)) + (1 - b1) /
      sqrt(1 - b2))`` anywhere, so two updates differ by at most twice that (``2 lr`` at t = 1).
    """
    lr, eps = optimizer.lr, optimizer.eps
    beta1, beta2 = optimizer.beta1, optimizer.beta2
    alpha, beta = 1 - beta1, 1 - beta2
    B1, B2 = 1 - beta1**t, 1 - beta2**t
    a, c = beta1 * m0, beta2 * v0
    nearest = np.maximum(g - tau, 0.0)
    d_min = np.sqrt((c + beta * nearest**2) / B2) + eps
    n_max = (a + alpha * (g + tau)) / B1
    lipschitz = lr * (alpha / B1 / d_min + n_max * np.sqrt(beta / B2) / d_min**2)
    return np.minimum(lipschitz * tau, 2 * _adam_largest_update(optimizer, t, m0, v0))


def _adam_largest_update(
    optimizer: Optimizer, t: np.ndarray, m0: np.ndarray, v0: np.ndarray
) -> np.ndarray:
    """The largest ``|u|`` of Adam's update of one element, whatever its gradient
    (``_adam_update_allowance``'s size bound)."""
    lr, eps = optimizer.lr, optimizer.eps
    beta1, beta2 = optimizer.beta1, optimizer.beta2
    B1, B2 = 1 - beta1**t, 1 - beta2**t
    a, c = beta1 * m0, beta2 * v0
    return (
        lr
        * np.sqrt(B2)
        / B1
        * (a / (np.sqrt(c) + eps * np.sqrt(B2)) + (1 - beta1) / math.sqrt(1 - beta2))
    )


def drift_is_verdict(dtype: str, mode: str) -> bool:
    """Whether per-state independent differences decide the verdict (else they are reported).

    Only in float64, in every mode (DESIGN.md). Below float64 two correct frameworks' own
    trajectories part by rounding from the first step on, which training amplifies: measured in
    the false-alarm sweep, bfloat16 runs in independent mode failed at step 0 on gradients that
    are pure cancellation (0.0046 on grad:W2) and on one training row's class out of 1,777. The
    trained model's classes still decide there (near ties aside), and the synced whole step is
    what catches a wrong formula or update below float64. ``mode`` is kept for callers.
    """
    del mode
    return dtype == "float64"


#: A trajectory amplifies rounding when its independent drift exceeds this many times what the
#: measured one-step differences could add up to without amplification (see ``amplification``).
AMPLIFIED = 10.0


def amplification(drift: float, one_step: float, steps: int) -> float:
    """How many times the independent drift exceeds the linear accumulation of one-step errors.

    Two correct trainers part by their steps' rounding ``delta_j`` (what the synced step
    measures at the reference's states: the largest is ``one_step``), carried forward by the
    training map's Jacobians: ``e_k = sum_j J_(k-1) ... J_(j+1) delta_j``. Where the map does not
    expand (every ``||J|| <= 1``, a stable trajectory) ``e_k <= k * one_step``; a drift above
    that is the trajectory amplifying perturbations, a fact of the run, not of a framework
    (measured: iris, identity layers, momentum 0.5 in float64 parted from 1e-15 at step 150 to
    2e-3 by step 300 while every synced step agreed to 1e-16: ``4e8`` times). ``inf`` when the
    steps agree exactly yet the trajectories part; 0 when nothing drifted.
    """
    if drift == 0:
        return 0.0
    bound = max(steps, 1) * one_step
    return math.inf if bound == 0 else drift / bound


def drift_is_amplified_rounding(dtype: str, amplified_by: float, steps_agree: bool) -> bool:
    """Whether float64 drift is reported rather than judged: every synced and own step of the
    framework agreed (``steps_agree``: each step is the reference's, to rounding, so a wrong
    formula or update would have failed there) and the drift exceeds ``AMPLIFIED`` times what
    those steps' differences add up to (``amplification``): rounding amplified by an unstable
    trajectory, which a longer mantissa only delays. Below float64 drift is reported anyway."""
    return dtype == "float64" and steps_agree and amplified_by > AMPLIFIED


def step_outgrows_independent(
    allowance: np.ndarray, grad: np.ndarray, next_values: np.ndarray, rule: Rule, lead: int = 1
) -> np.ndarray:
    """Per step (the first axis): whether one correct step may move some parameter element
    further than the independent tolerance allows, so that the independent rule can no longer
    tell rounding from a wrong step (see the module docstring).

    Args:
        allowance: ``(n, ...)``: ``update_allowance`` of the parameter, the synced bound on how
            far one correct step from the reference's state ``k`` may move each element.
        grad: ``(n, ...)``: the reference's gradient at ``k``. An element whose gradient is
            exactly zero is left out: an exact zero is structural (a dead relu unit, a constant
            input column), zero in every correct implementation, so it parts nothing.
        next_values: ``(n, ...)``: the reference's parameter at ``k + 1``.
        rule: The independent rule.
        lead: The leading axes kept (2: steps and points), the rest reduced.
    """
    allowed = rule.atol_at(0.0) + rule.rtol * np.abs(next_values)
    exceeds = (np.nan_to_num(allowance, nan=0.0) > allowed) & (grad != 0)
    return exceeds.reshape((*exceeds.shape[:lead], -1)).any(axis=-1)


def synced_gates(dtype: str, exact: bool) -> bool:
    """Whether a synced record comparison decides the verdict: always for floating-point values;
    for the training rows' correct count only in float64 (see the module docstring)."""
    return not exact or dtype == "float64"


def near_tie_margin(outputs_scale: np.ndarray, rule: Rule) -> np.ndarray:
    """The top-1 margin at or below which a test row's class is decided by rounding: two outputs
    each allowed ``atol + rtol |b|`` of error can swap order when closer than twice that."""
    return 2 * (rule.atol_at(0.0) + rule.rtol * np.asarray(outputs_scale, dtype=np.float64))


def ulp_scale(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of ``dtype``'s numbers (one ULP) at each of ``values``' magnitudes.

    Below the smallest normal number the spacing is constant (the subnormal spacing).
    """
    _, exponent = np.frexp(np.abs(np.asarray(values, dtype=np.float64)))
    exponent = np.maximum(exponent, MIN_EXPONENT[dtype])
    return np.ldexp(1.0, exponent - PRECISION_BITS[dtype])


# ---------------------------------------------------------------------------------------------
# Gradient oracles (``compare.oracle``), always in float64.

#: The Taylor test passes when the remainder shrinks at least as fast as ``h^(2 - this)``. A
#: correct gradient leaves ``O(h^2)`` (or faster, ``O(h^3)``, where the loss has no curvature
#: along the direction: better, not a bug); a wrong one leaves an ``O(h)`` term, order 1.
TAYLOR_ORDER_TOLERANCE = 0.25

#: Taylor remainders below this many times the noise of one loss evaluation are noise and not
#: used (see ``taylor_noise_floor``).
TAYLOR_OUTPUT_ROUNDINGS = 20.0

#: The loss's noise is measured (``measured_noise``) from the loss at ``NOISE_POINTS`` points
#: ``NOISE_SPACING`` apart along the Taylor direction, by their differences of these orders.
NOISE_POINTS = 8
NOISE_SPACING = 1e-7
NOISE_ORDERS = (3, 4, 5, 6)

#: A remainder with its ``h^3`` term removed, ``8 R(h/2) - R(h)``, carries the rounding of nine
#: remainders (see ``compare.oracle.taylor_test``).
CUBIC_FREE_NOISE = 9.0

#: A finite difference of step ``h`` errs by truncation ``h/2 * kappa`` (forward differences,
#: ``kappa`` the curvature; central differences err less, by ``h^2/6`` times the third
#: derivative) plus rounding ``2 * eps_L / h`` (``eps_L`` the rounding error of one loss
#: evaluation). The threshold is this many times that bound: the curvature is estimated by power
#: iteration from gradients along a few directions, which may underestimate it by a small factor.
FINITE_DIFFERENCE_SAFETY = 10.0

#: The rounding error of one float64 loss evaluation, in units of ``eps * |L| * sqrt(terms)``
#: (a sum of ``rows x outputs`` terms, each a few roundings).
LOSS_ROUNDINGS = 4.0

#: A relative part of the finite-difference tolerance, for checkers' own arithmetic on large
#: gradients: far below any error a wrong derivative makes.
FINITE_DIFFERENCE_RTOL = 1e-6

#: Finite-difference steps are kept in this range whatever the curvature estimate says.
FINITE_DIFFERENCE_STEPS = (1e-10, 1e-3)


def measured_noise(losses: np.ndarray) -> float:
    """The noise (standard deviation) of one loss evaluation, measured from ``losses`` at
    ``NOISE_POINTS`` equally spaced points ``NOISE_SPACING`` apart (Moré and Wild's ECnoise,
    "Estimating computational noise", SIAM J. Sci. Comput. 33, 2011).

    The ``k``-th difference of values ``f_j = s(x_j) + e_j`` (``s`` smooth, ``e_j`` the rounding
    noise, uncorrelated with deviation ``sigma``) is ``s^(k) delta^k`` plus noise of mean
    square ``(2k)! / (k!)^2 sigma^2``; at ``delta = 1e-7`` and ``k >= 3`` the smooth part is
    ``1e-21 s^(3)`` or less, so ``sqrt((k!)^2 / (2k)! * mean(diff^k f)^2)`` reads ``sigma``.
    The largest reading over ``NOISE_ORDERS`` (a reading of a smooth part can only add).

    Why measured rather than derived: the rounding of a loss is that of the terms it computes,
    which can be far larger than the loss. Softmax cross-entropy takes ``log(sum exp(z - max
    z))`` per row; a well-trained row's sum is ``1 + s`` with ``s`` tiny, held to ``eps``
    absolute, so each row's loss is off by about ``eps``, not ``eps |L|`` (measured: wine,
    float64, gelu/identity, cross-entropy, 32 rows, states 935 and 1403 of a run, ``|L| =
    1.2e-4`` and ``5.6e-5``: noise ``2e-17`` both, where ``eps |L| sqrt(terms)`` is ``2.6e-19``
    and ``1.2e-19`` and the outputs' term ``1.8e-19`` and ``9.4e-20``; forward differences at
    the step those implied were off by ``2.3e-9`` and ``1.7e-9`` against ``2.0e-9`` and
    ``9.9e-10``). Conversely a loss whose rows are mostly saturated to exact ``0`` or ``1`` is
    held far better than a thousand roundings (wine, bfloat16 unscaled, sigmoid, mse: ``|L| =
    0.51``, remainders flat at ``1e-16`` for the smallest steps, noise ``5e-17``).
    """
    values = np.asarray(losses, dtype=np.float64)
    readings = []
    for k in NOISE_ORDERS:
        differences = np.diff(values, n=k)
        gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
        readings.append(math.sqrt(gamma * float(np.mean(differences**2))))
    return max(readings)


def taylor_noise_floor(loss: float, output_rounding: float = 0.0, noise: float = 0.0) -> float:
    """The remainder below which a Taylor remainder is rounding noise, not a Taylor term.

    ``TAYLOR_OUTPUT_ROUNDINGS`` times the noise of one loss evaluation: the larger of the
    measured ``noise`` (``measured_noise``) and one rounding of the loss (``eps |L|``: the
    least a float64 result carries, and what a loss flat to rounding at the measuring spacing,
    whose measured noise reads 0, still carries at the Taylor steps), plus ``output_rounding``,
    the rounding the network's outputs carry into one loss (``compare.oracle.output_rounding``:
    ``eps * sum |dL/dA| |A|``). That second term is the one a saturated output makes far larger
    than the loss's own rounding: binary cross-entropy's ``log1p(-A)`` at ``1 - A = 6.4e-9``
    turns the rounding of ``A`` (``2.2e-16``) into ``3.4e-8`` of that term (measured: digits,
    bfloat16 weights, relu/relu/sigmoid, states 81 and 121 of a run: remainders flat at
    ``1e-10`` and ``4e-12`` as ``h`` halves from ``3e-4`` and ``2e-5`` down, where ``eps |L|``
    is ``1.5e-16`` and the output term ``4.1e-10`` and ``6.3e-12``; the orders read there were
    0.67 and -0.62). A remainder differences two losses, so its noise is at most twice that of
    one; a remainder ten times its noise reads each halving's order within
    ``log2(41/9) - 2 = 0.19``, inside ``TAYLOR_ORDER_TOLERANCE``: hence 20.

    Not a fixed thousand roundings of the loss (the rule before): that was too high where the
    loss's rows are saturated to exact values (wine, bfloat16 unscaled features up to 1680,
    sigmoid, mse, ``|L| = 0.51``: floor ``1.2e-13`` against a measured noise of ``5e-17``; it
    kept only the three largest steps, where ``h |X v|`` reaches 3.5 and the expansion has not
    settled, orders 1.27, 1.50, 1.70 -> 1.495 at every state; the next steps read 1.83, 1.91,
    1.97), and too low where the loss's terms cancel (``measured_noise``).
    """
    eps = EPS["float64"]
    return TAYLOR_OUTPUT_ROUNDINGS * (max(noise, eps * abs(loss)) + output_rounding)


def finite_difference_plan(
    loss: float, curvature: float, terms: int, output_rounding: float = 0.0, noise: float = 0.0
) -> dict[str, float]:
    """The step and thresholds of a finite-difference check at a point.

    The step balances truncation against rounding, ``h = 2 sqrt(eps_L / kappa)``; the threshold
    is ``FINITE_DIFFERENCE_SAFETY`` times the error that step implies.

    ``eps_L``, the rounding of one loss evaluation, is ``LOSS_ROUNDINGS`` times the loss's own
    rounding, ``eps |L| sqrt(terms)`` or the measured ``noise`` where larger, plus the
    rounding its inputs carry in, ``output_rounding`` (``eps * sum |dL/dA| |A|`` over the
    outputs ``A``). Where outputs
    saturate toward their targets the loss is far smaller than its terms' rounding: a sigmoid
    output at ``1 - A = 8.6e-7`` holds ``A - Y`` only to ``eps`` absolute, so ``(A - Y)^2 / 2``
    only to ``eps |A - Y| = 1.9e-22``, not ``eps (A - Y)^2`` (measured: breast_cancer, float32
    weights, sigmoid, half-sse, 32 rows, state 2 of a run: ``eps |L| = 5.1e-26``, output term
    ``1.9e-22``; forward differences at step ``2e-8`` off by ``8.5e-15`` against a bound of
    ``4.3e-15`` that omitted it). Likewise binary cross-entropy's ``log1p(-A)`` at
    ``1 - A = 6.4e-9``, ``Y = 0`` (digits, bfloat16 weights: output term ``1.1e-10``, forward
    differences off by ``2.2e-4`` against ``2.5e-6``; the error fell as ``1/h`` when the step
    grew, rounding's signature, where a kink's would not).

    Args:
        loss: ``|L|`` at the point.
        curvature: Estimate of the largest second derivative of the loss.
        terms: Rows times outputs: the terms summed in one loss.
        output_rounding: ``eps * sum |dL/dA| |A|`` at the point (0: not known).
        noise: The loss's measured noise at the point (``measured_noise``; 0: not known). The
            loss's own rounding is the larger of it and ``eps |L| sqrt(terms)``: where the
            loss's terms cancel (softmax cross-entropy's ``log(1 + s)`` per row) it is far
            larger (see ``measured_noise``).

    Returns:
        ``{"step", "atol", "rtol", "truncation", "rounding"}``.
    """
    eps = EPS["float64"]
    rounding_of_loss = LOSS_ROUNDINGS * (
        max(eps * max(abs(loss), eps) * math.sqrt(max(terms, 1)), noise) + output_rounding
    )
    kappa = max(curvature, rounding_of_loss)
    low, high = FINITE_DIFFERENCE_STEPS
    step = min(max(2 * math.sqrt(rounding_of_loss / kappa), low), high)
    truncation = step / 2 * kappa
    rounding = 2 * rounding_of_loss / step
    return {
        "step": step,
        "atol": FINITE_DIFFERENCE_SAFETY * (truncation + rounding),
        "rtol": FINITE_DIFFERENCE_RTOL,
        "truncation": truncation,
        "rounding": rounding,
    }
